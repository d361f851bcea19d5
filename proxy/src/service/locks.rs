//! Sequencers: `SetSequencer` (after which the handle's reads must reach the cell) and
//! `CheckSequencer` (asked as the proxy itself). Acquire/TryAcquire/Release/GetSequencer are
//! plain forwards in the trait impl.

use super::*;

pub(super) async fn set_sequencer(
    svc: &Service,
    r: pb::SetSequencerRequest,
) -> Answer<pb::SetSequencerResponse> {
    let (who, cell, body) = svc.session_and_cell(&r).await?;
    // Reads through this handle must reach the cell from now on (it checks the
    // sequencer), even if the call below fails half-way.
    svc.handle_info(&who, &r.handle, cell, body.as_ref());
    svc.shared
        .with_core(|c| c.sequencer_set(&who.id, &r.handle));
    let (reply, _) = svc
        .send_on_handle(&who, cell, Retry::Idempotent, &r)
        .await?;
    Ok(reply)
}

pub(super) async fn check_sequencer(
    svc: &Service,
    r: pb::CheckSequencerRequest,
) -> Answer<pb::CheckSequencerResponse> {
    // Checked as the proxy itself: whether a sequencer is current does not depend on
    // who asks, and the client may have nothing open at that cell.
    svc.session(r.ctx()).await?;
    let path = r
        .sequencer
        .as_ref()
        .map(|s| s.path.clone())
        .unwrap_or_default();
    // Routed as the node (the parent's slot); a directory's lock lives at its child
    // anchor, to which its entry's cell redirects.
    let r = &r;
    let routed = svc
        .routed(&path, false, |a| async move {
            svc.forward(
                Via::attempt(&a, None, Retry::Idempotent),
                r,
                |mut c, r| async move { c.check_sequencer(r).await },
            )
            .await
        })
        .await?;
    routed.answer
}

/// `Acquire`, forwarded as it is, counted while it waits ([`InFlight`]).
pub(super) async fn acquire(svc: &Service, r: pb::AcquireRequest) -> Answer<pb::AcquireResponse> {
    let _in_flight = InFlight::acquire();
    forward_by_handle(svc, r).await
}
