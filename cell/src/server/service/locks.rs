//! Locks and sequencers: Acquire (parked at the master while it waits for the lock,
//! counted in `warren_cell_lock_waiters`), TryAcquire, Release, and GetSequencer,
//! SetSequencer and CheckSequencer.

use super::{Answer, Service};
use crate::core::{Master, Reply, Wake};
use crate::edge;
use crate::server::metrics::LockWait;
use std::time::Duration;
use warren_proto::pb;

pub(super) async fn acquire(s: &Service, r: pb::AcquireRequest) -> Answer<pb::AcquireResponse> {
    let mode = edge::lock_mode(r.mode)?;
    let timeout = (r.timeout_ms > 0).then(|| Duration::from_millis(r.timeout_ms));
    let (ctx, master) = s.session(&r).await?;
    let mut wait = LockWait::default();
    let seq = master
        .run_parked(|m, now| {
            let reply = m.acquire(&ctx, &r.handle, mode, timeout, now);
            if matches!(reply, Ok(Reply::Wait(_))) {
                wait.begin();
            }
            reply
        })
        .await?
        .reply(|wake| match wake {
            Wake::Acquire(res) => Ok(res),
            other => Err(other),
        })?;
    Ok(pb::AcquireResponse {
        sequencer: Some(edge::sequencer_out(&seq)),
    })
}

pub(super) async fn try_acquire(
    s: &Service,
    r: pb::TryAcquireRequest,
) -> Answer<pb::AcquireResponse> {
    let mode = edge::lock_mode(r.mode)?;
    let seq = s
        .run(&r, |m, ctx, now| m.try_acquire(ctx, &r.handle, mode, now))
        .await?;
    Ok(pb::AcquireResponse {
        sequencer: Some(edge::sequencer_out(&seq)),
    })
}

pub(super) async fn release(s: &Service, r: pb::ReleaseRequest) -> Answer<pb::ReleaseResponse> {
    let was_held = s.on_handle(&r, Master::release).await?;
    Ok(pb::ReleaseResponse { was_held })
}

pub(super) async fn get_sequencer(
    s: &Service,
    r: pb::GetSequencerRequest,
) -> Answer<pb::GetSequencerResponse> {
    let seq = s.on_handle(&r, Master::get_sequencer).await?;
    Ok(pb::GetSequencerResponse {
        sequencer: Some(edge::sequencer_out(&seq)),
    })
}

pub(super) async fn set_sequencer(
    s: &Service,
    r: pb::SetSequencerRequest,
) -> Answer<pb::SetSequencerResponse> {
    let seq = edge::sequencer_in(r.sequencer.as_ref())?;
    s.run(&r, |m, ctx, now| m.set_sequencer(ctx, &r.handle, seq, now))
        .await?;
    Ok(pb::SetSequencerResponse {})
}

pub(super) async fn check_sequencer(
    s: &Service,
    r: pb::CheckSequencerRequest,
) -> Answer<pb::CheckSequencerResponse> {
    let seq = edge::sequencer_in(r.sequencer.as_ref())?;
    let current = s
        .run(&r, |m, ctx, now| m.check_sequencer(ctx, &seq, now))
        .await?;
    Ok(pb::CheckSequencerResponse { current })
}
