//! Sessions: Locate (answered by any replica, master or standby), CreateSession (client
//! and proxy sessions), KeepAlive (held by the master as a long-poll until it has events or
//! the lease nears its end), CloseSession, and ClaimSession (a proxy adopting the client
//! sessions of a proxy that died).

use super::{Answer, Service};
use crate::core::Wake;
use crate::edge;
use crate::server::metrics;
use warren_proto::pb;
use warren_proto::request::WithContext;

/// Also takes in a report that the caller could not reach the master (docs/design.md §9,
/// "A master nobody can reach"): only a standby following that master keeps it.
pub(super) async fn locate(s: &Service, r: pb::LocateRequest) -> Answer<pb::LocateResponse> {
    if !r.unreachable_master.is_empty() {
        s.node
            .report_unreachable(r.unreachable_master, r.unreachable_epoch);
    }
    Ok(s.node.locate())
}

pub(super) async fn create_session(
    s: &Service,
    r: pb::CreateSessionRequest,
) -> Answer<pb::CreateSessionResponse> {
    let c = s
        .node
        .master()?
        .run(|m, now| {
            let caller = warren_server::auth::caller();
            let authenticated = caller.as_ref().map(|p| p.principal.as_str());
            m.create_session_as(authenticated, &r.principal, r.proxy, now)
        })
        .await?;
    Ok(pb::CreateSessionResponse {
        session_id: c.id.to_vec(),
        secret: c.secret.to_vec(),
        lease_ms: c.lease.as_millis() as u64,
        epoch: c.epoch,
        deployment: c.deployment,
    })
}

pub(super) async fn keep_alive(
    s: &Service,
    r: pb::KeepAliveRequest,
) -> Answer<pb::KeepAliveResponse> {
    metrics::keepalive_received();
    let ctx = edge::ctx(r.ctx())?;
    let reply = s
        .node
        .master()?
        .run_parked(|m, now| {
            let hold_back =
                std::time::Duration::from_millis(r.ctx.as_ref().map_or(0, |c| c.hold_back_ms));
            m.keepalive_holding_back(&ctx, r.ack_seq, hold_back, r.jeopardy, now)
        })
        .await?
        .reply(|wake| match wake {
            Wake::KeepAlive(res) => Ok(res),
            other => Err(other),
        })?;
    Ok(pb::KeepAliveResponse {
        lease_ms: reply.lease.as_millis() as u64,
        events: reply.events.iter().map(edge::event).collect(),
        epoch: reply.epoch,
    })
}

pub(super) async fn close_session(
    s: &Service,
    r: pb::CloseSessionRequest,
) -> Answer<pb::CloseSessionResponse> {
    let ctx = edge::ctx(r.ctx())?;
    s.node
        .master()?
        .run(|m, now| m.close_session(&ctx, r.expired, now))
        .await?;
    Ok(pb::CloseSessionResponse {})
}

pub(super) async fn claim_session(
    s: &Service,
    r: pb::ClaimSessionRequest,
) -> Answer<pb::ClaimSessionResponse> {
    let client = edge::bytes16(&r.client_session, "client_session")?;
    let secret = edge::bytes16(&r.client_secret, "client_secret")?;
    let only_from = if r.only_from.is_empty() {
        None
    } else {
        Some(edge::bytes16(&r.only_from, "only_from")?)
    };
    let principal = s
        .run(&r, |m, ctx, now| {
            m.claim_session(ctx, client, secret, &r.client_principal, only_from, now)
        })
        .await?;
    Ok(pb::ClaimSessionResponse {
        known: principal.is_some(),
        principal: principal.unwrap_or_default(),
    })
}
