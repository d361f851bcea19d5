//! Sessions (the "lease" concern): `Locate`, `CreateSession`, the long-poll `KeepAlive`
//! answered from the proxy's own client-session table, `CloseSession` (ended at the cells
//! first); adopting the client of a dead proxy is [`super::adopt`].

use super::*;
use crate::core::{Effect, Reply};
use tokio::sync::oneshot;

/// The principal the transport authenticated for the call being handled (a verified
/// client certificate), if any.
pub(super) fn authenticated() -> Option<String> {
    warren_server::auth::caller().map(|p| p.principal)
}

impl Service {
    /// [`Service::session`] for a context already parsed: the check and the client's
    /// principal under one take of the core's lock.
    pub(super) async fn checked(&self, (id, secret, epoch, fresh): Ctx) -> Result<Who, Status> {
        // A session no cell knows is taken on with the principal the client's certificate
        // names, if it has one.
        let fresh = match fresh {
            Some(asserted) => Some(crate::permission::session_principal(
                authenticated().as_deref(),
                &asserted,
            )?),
            None => None,
        };
        let (known, principal) = self.shared.with_core(|c| {
            let known = c.check(&id, &secret, epoch, Instant::now())?;
            Ok::<_, WarrenError>((known, c.identity(&id).map(|(p, _)| p)))
        })?;
        if let Known::Unknown = known {
            let new_epoch = self.adopt(id, secret, epoch, fresh).await?;
            // The client now adopts the new epoch (its event numbering restarts) and
            // retries; its next KeepAlive brings the fail-over event.
            return Err(WarrenError::stale_epoch(new_epoch, epoch).into());
        }
        let principal =
            principal.ok_or_else(|| WarrenError::session_expired("the session has expired"))?;
        crate::permission::may_use_session(authenticated().as_deref(), &id, &principal)?;
        Ok(Who {
            id,
            secret,
            principal,
        })
    }

    /// The session check of a KeepAlive, done before its future is made: the client's id,
    /// or what the call fails with (a session to adopt first fails `STALE_EPOCH` once it is
    /// adopted), boxed, so that the held call's future need not make room for it.
    fn check_keepalive(
        &self,
        ctx: Option<&pb::SessionContext>,
    ) -> Result<ClientId, futures::future::BoxFuture<'_, Status>> {
        let failed = |s: Status| -> futures::future::BoxFuture<'_, Status> {
            Box::pin(std::future::ready(s))
        };
        if self.shared.closing() {
            return Err(failed(WarrenError::not_master("").into()));
        }
        let (id, secret, epoch, fresh) = parse_ctx(ctx).map_err(|e| failed(e.into()))?;
        let authenticated = authenticated();
        let fresh = match fresh {
            Some(asserted) => Some(
                crate::permission::session_principal(authenticated.as_deref(), &asserted)
                    .map_err(|e| failed(e.into()))?,
            ),
            None => None,
        };
        match self.shared.with_core(|c| {
            let known = c.check(&id, &secret, epoch, Instant::now())?;
            if let (Some(_), Some((owner, _))) = (&authenticated, c.identity(&id)) {
                crate::permission::may_use_session(authenticated.as_deref(), &id, &owner)?;
            }
            Ok::<_, WarrenError>(known)
        }) {
            Ok(Known::Yes) => Ok(id),
            Ok(Known::Unknown) => Err(Box::pin(async move {
                match self.adopt(id, secret, epoch, fresh).await {
                    // The client now adopts the new epoch and retries (as in
                    // `Service::checked`).
                    Ok(new_epoch) => WarrenError::stale_epoch(new_epoch, epoch).into(),
                    Err(e) => e.into(),
                }
            })),
            Err(e) => Err(failed(e.into())),
        }
    }
}

pub(super) async fn locate(svc: &Service, _: pb::LocateRequest) -> Answer<pb::LocateResponse> {
    let serving = svc.shared.ready();
    Ok(pb::LocateResponse {
        cell: String::new(),
        master: svc.shared.advertised.clone(),
        epoch: 0,
        map_epoch: svc.shared.map_epoch(),
        deployment: svc.shared.deployment.get().cloned().unwrap_or_default(),
        is_master: true,
        serving,
        role: "proxy".into(),
        replica: svc.shared.cfg.id.clone(),
        store_health: if serving {
            "ok".into()
        } else if svc.shared.routed() {
            "the partition map is not loaded or the meta cell is unreachable".into()
        } else {
            "a cell is unreachable".into()
        },
    })
}

pub(super) async fn create_session(
    svc: &Service,
    r: pb::CreateSessionRequest,
) -> Answer<pb::CreateSessionResponse> {
    if r.proxy {
        return Err(WarrenError::invalid_argument(
            "this is a proxy: proxy sessions are made at cells",
        )
        .into());
    }
    let principal = crate::permission::session_principal(authenticated().as_deref(), &r.principal)?;
    if principal.len() > 255 {
        return Err(
            WarrenError::invalid_argument("principal name is longer than 255 bytes").into(),
        );
    }
    let deployment = svc
        .shared
        .deployment()
        .await
        .ok_or_else(WarrenError::failover_in_progress)?;
    let (id, secret, lease, epoch) = svc
        .shared
        .with_core(|c| c.create_session(&principal, Instant::now()));
    metrics::counter!("warren_proxy_sessions_created_total").increment(1);
    Ok(pb::CreateSessionResponse {
        session_id: id.to_vec(),
        secret: secret.to_vec(),
        lease_ms: lease.as_millis() as u64,
        epoch,
        deployment,
    })
}

/// `KeepAlive`: answered from the proxy's own table, or held until there is something to
/// answer. Not an `async fn`: that would keep the whole request in the future for as long
/// as the call is held — most of a lease, for every client session. The session is
/// checked first, and only the client's id and the acknowledged seq go into the future
/// (docs/performance.md, "Memory per session at the proxy").
pub(super) fn keep_alive(
    svc: &Service,
    r: pb::KeepAliveRequest,
) -> impl Future<Output = Answer<pb::KeepAliveResponse>> + Send + '_ {
    let (ack_seq, jeopardy) = (r.ack_seq, r.jeopardy);
    let checked = svc.check_keepalive(r.ctx.as_ref());
    drop(r);
    async move {
        let id = match checked {
            Ok(id) => id,
            Err(failed) => return Err(failed.await),
        };
        let (tx, rx) = oneshot::channel();
        let parked = svc.shared.with_state(|st| {
            match st
                .core
                .keepalive_with(&id, ack_seq, jeopardy, Instant::now())
            {
                Ok(Reply::Done(reply)) => Ok(Err(reply)),
                Ok(Reply::Wait(w)) => {
                    st.senders.insert(w, tx);
                    Ok(Ok(w))
                }
                Err(e) => Err(e),
            }
        })?;
        let waiter = match parked {
            Err(reply) => return Ok(ka_reply(reply)),
            Ok(waiter) => waiter,
        };
        let mut guard = Parked {
            shared: &svc.shared,
            waiter,
            done: false,
        };
        let result = rx.await;
        guard.done = true;
        match result {
            Ok(Ok(reply)) => Ok(ka_reply(reply)),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(WarrenError::internal("the proxy dropped the KeepAlive").into()),
        }
    }
}

pub(super) async fn close_session(
    svc: &Service,
    r: pb::CloseSessionRequest,
) -> Answer<pb::CloseSessionResponse> {
    let who = svc.session(r.ctx()).await?;
    // End it at its cells first, and only then here (which answers its parked KeepAlive
    // with SESSION_EXPIRED): the client library stops waiting for this reply once it
    // learns that the session is over, so it must not learn that before its locks and
    // ephemeral files are gone. In a task of its own, so that a caller that goes away
    // cannot leave them held at a cell with nobody left here to end them.
    let ended: Vec<usize> = svc.shared.with_core(|c| c.cells_of(&who.id));
    if !ended.is_empty() {
        let (shared, w, cells) = (svc.shared.clone(), who.clone(), ended.clone());
        let _ = tokio::spawn(async move {
            end_at_cells(&shared, w.id, w.secret, &w.principal, &cells, false).await
        })
        .await;
    }
    let ((), effects) = svc
        .shared
        .with_core_fx(|c| c.close_session(&who.id, Instant::now()));
    for e in effects {
        match e {
            Effect::EndAtCells {
                client,
                secret,
                principal,
                mut cells,
                expired,
            } => {
                if client == who.id {
                    cells.retain(|c| !ended.contains(c));
                }
                end_at_cells(&svc.shared, client, secret, &principal, &cells, expired).await
            }
            Effect::AckUpstream(cell) | Effect::RefreshCover(cell) => {
                svc.shared.cell(cell).kick.notify_one()
            }
            Effect::FollowMoved { .. } => run_effect(&svc.shared, e).await,
        }
    }
    Ok(pb::CloseSessionResponse {})
}

/// Removes a parked KeepAlive from the core if the call goes away before it is answered.
struct Parked<'a> {
    shared: &'a Shared,
    waiter: u64,
    done: bool,
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        if !self.done {
            let w = self.waiter;
            self.shared.with_state(|st| {
                st.senders.remove(&w);
                st.core.cancel(w);
            });
        }
    }
}

fn ka_reply(r: crate::core::KeepAliveReply) -> pb::KeepAliveResponse {
    pb::KeepAliveResponse {
        lease_ms: r.lease.as_millis() as u64,
        events: r.events,
        epoch: r.epoch,
    }
}

/// Executes an effect the core asked for (in the background).
pub(crate) async fn run_effect(shared: &Arc<Shared>, e: Effect) {
    match e {
        Effect::EndAtCells {
            client,
            secret,
            principal,
            cells,
            expired,
        } => end_at_cells(shared, client, secret, &principal, &cells, expired).await,
        Effect::FollowMoved {
            client,
            handle,
            cell,
            from,
        } => super::moved::follow_moved(shared, client, &handle, &cell, from).await,
        Effect::AckUpstream(_) | Effect::RefreshCover(_) => {}
    }
}

async fn end_at_cells(
    shared: &Shared,
    client: ClientId,
    secret: [u8; 16],
    principal: &str,
    cells: &[usize],
    expired: bool,
) {
    let deadline = Instant::now() + shared.cfg.forward_patience;
    for &ix in cells {
        let up = shared.cell(ix);
        let Some(link) = up.current(deadline).await else {
            continue;
        };
        let mut c = link.client.clone();
        let r = c
            .close_session(pb::CloseSessionRequest {
                ctx: Some(link.ctx(Some((&client, &secret, principal)))),
                expired,
            })
            .await;
        if let Err(s) = r {
            tracing::debug!(cell = %up.name, %s, "ending a client session at the cell failed");
        }
    }
}

/// `ClaimSession` is how proxies take over sessions at cells; a proxy never serves it.
pub(super) async fn claim_session(
    _: &Service,
    _: pb::ClaimSessionRequest,
) -> Answer<pb::ClaimSessionResponse> {
    Err(WarrenError::invalid_argument(
        "ClaimSession is for proxies talking to cells; this is a proxy",
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `handler` returns, without calling it.
    fn future_size<'a, Q, F: Future>(_: impl Fn(&'a Service, Q) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every client session holds a KeepAlive at the proxy for most of its lease, and that
    /// call's future with it: what the future keeps is memory per session. It was 1,056
    /// bytes while the claim at every cell (adopting a client) was inlined in it and the
    /// request kept whole (docs/performance.md, "Memory per session at the proxy").
    #[test]
    fn a_held_keepalive_keeps_a_small_future() {
        let size = future_size(keep_alive);
        assert!(
            size <= 192,
            "the KeepAlive handler's future is {size} bytes"
        );
        // And the whole call as the service runs it (the caller's identity, the metrics).
        fn whole(
            svc: &Service,
            req: tonic::Request<pb::KeepAliveRequest>,
        ) -> impl Future<Output = Answer<tonic::Response<pb::KeepAliveResponse>>> + '_ {
            warren_server::grpc::call(req, move |m| {
                super::super::observed("KeepAlive", keep_alive(svc, m))
            })
        }
        let size = future_size(whole);
        assert!(size <= 448, "the KeepAlive call's future is {size} bytes");
        eprintln!("the KeepAlive call's future: {size} bytes");
    }
}
