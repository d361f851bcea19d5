//! Sessions: CreateSession (client and proxy sessions), KeepAlive (held by the master as a
//! long-poll until it has events or the lease nears its end), CloseSession, and
//! ClaimSession (a proxy adopting the client sessions of a proxy that died).

use super::Service;
use crate::core::Wake;
use crate::edge;
use crate::server::calls::Outcome;
use tonic::{Request, Status};
use warren_proto::pb;
use warren_proto::WarrenError;

pub(super) async fn create_session(
    s: &Service,
    req: Request<pb::CreateSessionRequest>,
) -> Result<pb::CreateSessionResponse, Status> {
    let r = req.into_inner();
    let c = s
        .node
        .master()?
        .run(|m, now| {
            if r.proxy {
                m.create_proxy_session(&r.principal, now)
            } else {
                m.create_session(&r.principal, now)
            }
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
    req: Request<pb::KeepAliveRequest>,
) -> Result<pb::KeepAliveResponse, Status> {
    let r = req.into_inner();
    let ctx = edge::ctx(r.ctx.as_ref())?;
    let reply = match s
        .node
        .master()?
        .run_parked(|m, now| m.keepalive(&ctx, r.ack_seq, now))
        .await?
    {
        Outcome::Done(reply) => reply,
        Outcome::Woken(Wake::KeepAlive(res)) => res?,
        Outcome::Woken(other) => {
            return Err(WarrenError::internal(format!("unexpected wake {other:?}")).into())
        }
    };
    Ok(pb::KeepAliveResponse {
        lease_ms: reply.lease.as_millis() as u64,
        events: reply.events.iter().map(edge::event).collect(),
        epoch: reply.epoch,
    })
}

pub(super) async fn close_session(
    s: &Service,
    req: Request<pb::CloseSessionRequest>,
) -> Result<pb::CloseSessionResponse, Status> {
    let r = req.into_inner();
    let ctx = edge::ctx(r.ctx.as_ref())?;
    s.node
        .master()?
        .run(|m, now| m.close_session(&ctx, r.expired, now))
        .await?;
    Ok(pb::CloseSessionResponse {})
}

pub(super) async fn claim_session(
    s: &Service,
    req: Request<pb::ClaimSessionRequest>,
) -> Result<pb::ClaimSessionResponse, Status> {
    let r = req.into_inner();
    let ctx = edge::ctx(r.ctx.as_ref())?;
    let client = edge::bytes16(&r.client_session, "client_session")?;
    let secret = edge::bytes16(&r.client_secret, "client_secret")?;
    let only_from = if r.only_from.is_empty() {
        None
    } else {
        Some(edge::bytes16(&r.only_from, "only_from")?)
    };
    let principal = s
        .routed(r.ctx.as_ref())
        .await?
        .run(|m, now| m.claim_session(&ctx, client, secret, &r.client_principal, only_from, now))
        .await?;
    Ok(pb::ClaimSessionResponse {
        known: principal.is_some(),
        principal: principal.unwrap_or_default(),
    })
}
