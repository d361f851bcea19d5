//! The proxy's `warren.v1.Warren` service: each call either answered from the proxy's own
//! state (sessions, KeepAlives, cached reads) or forwarded to the cell that owns it on
//! behalf of the client session (SPEC §6). Errors come from the one table; whatever a
//! cell answers is passed through unchanged, so a client sees what it would see direct.

use crate::core::{ClientId, Effect, HandleInfo, Known, Reply};
use crate::upstream::{self, Link};
use crate::{ProxyError, Shared};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use warren_proto::framing::{framing_errors_into_table, MAX_MESSAGE_BYTES};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::pb::warren_server::{Warren, WarrenServer};
use warren_proto::{ErrorCode, WarrenError};

const READ: u32 = 1;

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ProxyError> {
    let svc = WarrenServer::new(Service { shared }).max_decoding_message_size(MAX_MESSAGE_BYTES);
    // TCP_NODELAY on accepted connections: without it a held KeepAlive reply can sit
    // behind Nagle + delayed ACK for ~40 ms, and every write waiting on it with it.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .layer(tower::util::MapResponseLayer::new(
            framing_errors_into_table,
        ))
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, stop)
        .await
        .map_err(|e| ProxyError::Serve(e.to_string()))
}

struct Service {
    shared: Arc<Shared>,
}

/// A client session, as a forwarded call carries it.
#[derive(Clone)]
struct Who {
    id: ClientId,
    secret: [u8; 16],
    principal: String,
}

fn bytes16(b: &[u8], field: &str) -> Result<[u8; 16], WarrenError> {
    b.try_into().map_err(|_| {
        WarrenError::invalid_argument(format!("ctx.{field} must be 16 bytes, got {}", b.len()))
    })
}

/// The session part of a client request, as the cell's edge parses it.
fn parse_ctx(c: Option<&pb::SessionContext>) -> Result<(ClientId, [u8; 16], u64), WarrenError> {
    let c = c.ok_or_else(|| {
        WarrenError::invalid_argument("the request has no session context (field ctx)")
    })?;
    let id = bytes16(&c.session_id, "session_id")?;
    let secret = bytes16(&c.secret, "secret")?;
    if !c.client_session.is_empty() || !c.client_secret.is_empty() || !c.client_principal.is_empty()
    {
        return Err(WarrenError::invalid_argument(
            "ctx.client_session is only for proxies talking to cells; this is a proxy",
        ));
    }
    Ok((id, secret, c.epoch))
}

fn hex(id: &[u8]) -> String {
    id.iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + "…"
}

/// How a forwarded call may be retried.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Safe to send again after a transport failure (reads, Close, lock queries).
    Idempotent,
    /// Not after a transport failure: the first attempt may have been applied.
    Once,
}

impl Service {
    /// Checks (or adopts) the client session of a request.
    async fn session(&self, ctx: Option<&pb::SessionContext>) -> Result<Who, Status> {
        let (id, secret, epoch) = parse_ctx(ctx)?;
        let known = self
            .shared
            .with_core(|c| c.check(&id, &secret, epoch, Instant::now()))?;
        if let Known::Unknown = known {
            let new_epoch = self.adopt(id, secret, epoch).await?;
            // The client now adopts the new epoch (its event numbering restarts) and
            // retries; its next KeepAlive brings the fail-over event.
            return Err(WarrenError::stale_epoch(new_epoch, epoch).into());
        }
        let (principal, _) = self
            .shared
            .with_core(|c| c.identity(&id))
            .ok_or_else(|| WarrenError::session_expired("the session has expired"))?;
        Ok(Who {
            id,
            secret,
            principal,
        })
    }

    /// A session this proxy does not know: a client arriving from another proxy (SPEC §6
    /// proxy failover). Claims it at every cell, then takes it on.
    async fn adopt(&self, id: ClientId, secret: [u8; 16], epoch: u64) -> Result<u64, WarrenError> {
        let deadline = Instant::now() + self.shared.cfg.forward_patience;
        let mut cells = BTreeSet::new();
        let mut principal = String::new();
        let mut expired = false;
        for up in &self.shared.cells {
            let Some(link) = up.current(deadline).await else {
                return Err(WarrenError::failover_in_progress());
            };
            match upstream::claim(&link, &id, &secret, "", None).await {
                Ok(r) => {
                    if r.known {
                        cells.insert(up.ix);
                        if principal.is_empty() {
                            principal = r.principal;
                        }
                    }
                }
                Err(e) if e.code == ErrorCode::SessionExpired => expired = true,
                Err(e) if e.code == ErrorCode::PermissionDenied => {
                    return Err(WarrenError::permission_denied(format!(
                        "wrong secret for session {}",
                        hex(&id)
                    )))
                }
                Err(e) if e.is_retryable() => return Err(WarrenError::failover_in_progress()),
                Err(e) => return Err(e),
            }
        }
        // A session no cell knows is indistinguishable from a made-up one: as a cell
        // would, call it expired. (So a client that had opened nothing anywhere loses its
        // empty session when its proxy dies; see docs/proxy.md.)
        if expired || cells.is_empty() {
            return Err(WarrenError::session_expired(format!(
                "session {} is unknown or has expired",
                hex(&id)
            )));
        }
        Ok(self
            .shared
            .with_core(|c| c.adopt(id, secret, principal, epoch, cells, Instant::now())))
    }

    /// Forwards a call to cell `cell` on behalf of `who`, on the proxy's current session
    /// there, riding out a failover of the cell for up to `forward_patience`.
    async fn forward<R, F, Fut>(
        &self,
        cell: usize,
        who: Option<&Who>,
        retry: Retry,
        call: F,
    ) -> Result<R, Status>
    where
        F: Fn(WarrenClient<Channel>, pb::SessionContext) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let up = &self.shared.cells[cell];
        let deadline = Instant::now() + self.shared.cfg.forward_patience;
        let mut link: Option<Link> = None;
        loop {
            let l = match link.take() {
                Some(l) => l,
                None => up
                    .current(deadline)
                    .await
                    .ok_or_else(WarrenError::failover_in_progress)?,
            };
            let ctx = l.ctx(who.map(|w| (&w.id, &w.secret, w.principal.as_str())));
            let status = match call(l.client.clone(), ctx).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) => s,
            };
            let e = WarrenError::from_status(&status);
            let wait_newer = |l: Link| async move {
                up.suspect.notify_one();
                up.newer_than(l.serial, deadline).await
            };
            match e.as_ref().map(|e| e.code) {
                Some(ErrorCode::StaleEpoch | ErrorCode::NotMaster) => {
                    link = Some(
                        wait_newer(l)
                            .await
                            .ok_or_else(WarrenError::failover_in_progress)?,
                    );
                }
                Some(ErrorCode::FailoverInProgress) => {
                    if Instant::now() >= deadline {
                        return Err(status);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(ErrorCode::SessionExpired) if status.message().contains(&hex(&l.session)) => {
                    // The proxy's own session at the cell is gone: a new one is made and
                    // the client claimed onto it.
                    link = Some(
                        wait_newer(l)
                            .await
                            .ok_or_else(WarrenError::failover_in_progress)?,
                    );
                }
                Some(ErrorCode::SessionExpired) => {
                    // The client's session at the cell ended: it lost what it held there.
                    if let Some(w) = who {
                        self.shared.with_core(|c| c.expire_client(&w.id));
                    }
                    return Err(status);
                }
                Some(_) => return Err(status),
                None => {
                    // A transport failure: the master may be gone.
                    if retry == Retry::Once {
                        up.suspect.notify_one();
                        return Err(Status::unavailable(format!(
                            "the connection to cell {} failed during the call: {}",
                            up.name,
                            status.message()
                        )));
                    }
                    link = Some(
                        wait_newer(l)
                            .await
                            .ok_or_else(WarrenError::failover_in_progress)?,
                    );
                }
            }
        }
    }

    /// The cell a handle-based call goes to. A client that never opened anything at that
    /// cell cannot hold a handle there: `HANDLE_INVALID`, as the cell would say to a
    /// session that did not open the handle.
    fn handle_cell(
        &self,
        who: &Who,
        token: &[u8],
    ) -> Result<(usize, Option<pb::HandleBody>), Status> {
        let (cell, body) = self.shared.cell_of_handle(token);
        if !self.shared.with_core(|c| c.is_registered(&who.id, cell)) {
            return Err(WarrenError::handle_invalid(if body.is_some() {
                "the handle was not opened by this session"
            } else {
                "the handle bytes are not a Warren handle (truncated or corrupted)"
            })
            .into());
        }
        Ok((cell, body))
    }

    fn handle_info(&self, who: &Who, token: &[u8], cell: usize, body: Option<&pb::HandleBody>) {
        if let Some(b) = body {
            let info = HandleInfo {
                cell,
                path: b.path.clone(),
                instance: b.instance,
                intent: b.intent,
                sequencer: false,
                unconfirmed: false,
            };
            self.shared.with_core(|c| {
                if c.handle(&who.id, token).is_none() {
                    c.add_handle(&who.id, token.to_vec(), info);
                } else {
                    c.confirm_handle(&who.id, token);
                }
            });
        }
    }

    /// A cached read: the handle must be one the cell gave this client (not closed), with
    /// the intent the cell would demand, and no sequencer (the cell checks those).
    fn cached<T>(
        &self,
        who: &Who,
        token: &[u8],
        need_read: bool,
        get: impl FnOnce(&crate::cache::Entry, u64) -> Option<T>,
    ) -> Result<T, Option<crate::cache::Ticket>> {
        self.shared.with_core(|c| {
            let info = match c.handle(&who.id, token) {
                Some(h)
                    if !h.sequencer && !h.unconfirmed && (!need_read || h.intent & READ != 0) =>
                {
                    h.clone()
                }
                _ => {
                    c.cache.note_miss();
                    return Err(Some(c.cache.ticket()));
                }
            };
            let ticket = c.cache.ticket();
            let hit = c.cache.get(&info.path).and_then(|e| get(e, info.instance));
            match hit {
                Some(v) => {
                    c.note_cacher(&who.id, &info.path, None);
                    Ok(v)
                }
                None => Err(Some(ticket)),
            }
        })
    }
}

fn ok<T>(t: T) -> Result<Response<T>, Status> {
    Ok(Response::new(t))
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
pub(crate) async fn run_effect(shared: &Shared, e: Effect) {
    if let Effect::EndAtCells {
        client,
        secret,
        principal,
        cells,
        expired,
    } = e
    {
        end_at_cells(shared, client, secret, &principal, &cells, expired).await;
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
        let up = &shared.cells[ix];
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

/// A call that names a handle and is simply forwarded to the handle's cell on behalf of the
/// client session (writes, locks, sequencers): check the session, route by the handle,
/// forward with the client's context.
macro_rules! forward_by_handle {
    ($self:ident, $req:ident, $method:ident, $retry:expr) => {{
        let r = $req.into_inner();
        let who = $self.session(r.ctx.as_ref()).await?;
        let (cell, _) = $self.handle_cell(&who, &r.handle)?;
        let reply = $self
            .forward(cell, Some(&who), $retry, |mut c, ctx| {
                let mut r = r.clone();
                r.ctx = Some(ctx);
                async move { c.$method(r).await }
            })
            .await?;
        ok(reply)
    }};
}

#[tonic::async_trait]
impl Warren for Service {
    async fn locate(
        &self,
        _req: Request<pb::LocateRequest>,
    ) -> Result<Response<pb::LocateResponse>, Status> {
        let serving = self.shared.ready();
        ok(pb::LocateResponse {
            cell: String::new(),
            master: self.shared.advertised.clone(),
            epoch: 0,
            map_epoch: 0,
            deployment: self.shared.deployment.get().cloned().unwrap_or_default(),
            is_master: true,
            serving,
            role: "proxy".into(),
            replica: self.shared.cfg.id.clone(),
            store_health: if serving {
                "ok".into()
            } else {
                "a cell is unreachable".into()
            },
        })
    }

    async fn create_session(
        &self,
        req: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let r = req.into_inner();
        if r.proxy {
            return Err(WarrenError::invalid_argument(
                "this is a proxy: proxy sessions are made at cells",
            )
            .into());
        }
        if r.principal.len() > 255 {
            return Err(
                WarrenError::invalid_argument("principal name is longer than 255 bytes").into(),
            );
        }
        let deployment = self
            .shared
            .deployment()
            .await
            .ok_or_else(WarrenError::failover_in_progress)?;
        let (id, secret, lease, epoch) = self
            .shared
            .with_core(|c| c.create_session(&r.principal, Instant::now()));
        metrics::counter!("warren_proxy_sessions_created_total").increment(1);
        ok(pb::CreateSessionResponse {
            session_id: id.to_vec(),
            secret: secret.to_vec(),
            lease_ms: lease.as_millis() as u64,
            epoch,
            deployment,
        })
    }

    async fn keep_alive(
        &self,
        req: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let r = req.into_inner();
        let who = self.session(r.ctx.as_ref()).await?;
        let (tx, rx) = oneshot::channel();
        let parked = self.shared.with_state(|st| {
            match st.core.keepalive(&who.id, r.ack_seq, Instant::now()) {
                Ok(Reply::Done(reply)) => Ok(Err(reply)),
                Ok(Reply::Wait(w)) => {
                    st.senders.insert(w, tx);
                    Ok(Ok(w))
                }
                Err(e) => Err(e),
            }
        })?;
        match parked {
            Err(reply) => ok(ka_reply(reply)),
            Ok(waiter) => {
                let mut guard = Parked {
                    shared: &self.shared,
                    waiter,
                    done: false,
                };
                let result = rx.await;
                guard.done = true;
                match result {
                    Ok(Ok(reply)) => ok(ka_reply(reply)),
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err(WarrenError::internal("the proxy dropped the KeepAlive").into()),
                }
            }
        }
    }

    async fn close_session(
        &self,
        req: Request<pb::CloseSessionRequest>,
    ) -> Result<Response<pb::CloseSessionResponse>, Status> {
        let r = req.into_inner();
        let who = self.session(r.ctx.as_ref()).await?;
        // End it at its cells first, and only then here (which answers its parked KeepAlive
        // with SESSION_EXPIRED): the client library stops waiting for this reply once it
        // learns that the session is over, so it must not learn that before its locks and
        // ephemeral files are gone. In a task of its own, so that a caller that goes away
        // cannot leave them held at a cell with nobody left here to end them.
        let ended: Vec<usize> = self.shared.with_core(|c| c.cells_of(&who.id));
        if !ended.is_empty() {
            let (shared, w, cells) = (self.shared.clone(), who.clone(), ended.clone());
            let _ = tokio::spawn(async move {
                end_at_cells(&shared, w.id, w.secret, &w.principal, &cells, false).await
            })
            .await;
        }
        let ((), effects) = self
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
                    end_at_cells(&self.shared, client, secret, &principal, &cells, expired).await
                }
                Effect::AckUpstream(cell) => self.shared.cells[cell].kick.notify_one(),
            }
        }
        ok(pb::CloseSessionResponse {})
    }

    async fn open(
        &self,
        req: Request<pb::OpenRequest>,
    ) -> Result<Response<pb::OpenResponse>, Status> {
        let r = req.into_inner();
        let who = self.session(r.ctx.as_ref()).await?;
        let cell = self.shared.cell_of_path(&r.path);
        let ticket = self.shared.with_core(|c| {
            c.registered(&who.id, cell);
            c.cache.ticket()
        });
        let result = self
            .forward(cell, Some(&who), Retry::Once, |mut c, ctx| {
                let mut r = r.clone();
                r.ctx = Some(ctx);
                async move { c.open(r).await }
            })
            .await;
        match result {
            Ok(mut reply) => {
                let body = crate::decode_handle(&reply.handle);
                self.handle_info(&who, &reply.handle, cell, body.as_ref());
                if reply.cacheable {
                    let path = body.map(|b| b.path).unwrap_or_else(|| r.path.clone());
                    let stat = reply.stat.clone();
                    let contents = r.read.then(|| reply.contents.clone());
                    reply.cacheable = self.shared.with_core(|c| {
                        if !c.note_cacher(&who.id, &path, Some(ticket)) {
                            return false;
                        }
                        if let Some(stat) = stat {
                            c.cache.fill(&path, ticket, |e| {
                                if let Some(data) = contents {
                                    e.contents = Some((data, stat.clone()));
                                }
                                e.stat = Some(stat);
                            });
                        }
                        true
                    });
                }
                ok(reply)
            }
            Err(status) => {
                // A cacheable absence: the client may cache it only if we will relay its
                // invalidation.
                if let Some(e) = WarrenError::from_status(&status) {
                    if e.code == ErrorCode::NotFound && e.cacheable {
                        let path = r.path.clone();
                        let still = self
                            .shared
                            .with_core(|c| c.note_cacher(&who.id, &path, Some(ticket)));
                        if !still {
                            let mut e = e;
                            e.cacheable = false;
                            return Err(e.into());
                        }
                    }
                }
                Err(status)
            }
        }
    }

    async fn close(
        &self,
        req: Request<pb::CloseRequest>,
    ) -> Result<Response<pb::CloseResponse>, Status> {
        // Never fails (SPEC §3): whatever is wrong with the request, the answer is OK.
        let r = req.into_inner();
        let Ok(who) = self.session(r.ctx.as_ref()).await else {
            return ok(pb::CloseResponse {});
        };
        self.shared
            .with_core(|c| c.remove_handle(&who.id, &r.handle));
        if let Ok((cell, _)) = self.handle_cell(&who, &r.handle) {
            let _ = self
                .forward(cell, Some(&who), Retry::Idempotent, |mut c, ctx| {
                    let mut r = r.clone();
                    r.ctx = Some(ctx);
                    async move { c.close(r).await }
                })
                .await;
        }
        ok(pb::CloseResponse {})
    }

    async fn get_contents_and_stat(
        &self,
        req: Request<pb::GetContentsAndStatRequest>,
    ) -> Result<Response<pb::GetContentsAndStatResponse>, Status> {
        let r = req.into_inner();
        let who = self.session(r.ctx.as_ref()).await?;
        let ticket = match self.cached(&who, &r.handle, true, |e, instance| {
            e.contents
                .as_ref()
                .filter(|(_, s)| s.instance == instance)
                .cloned()
        }) {
            Ok((contents, stat)) => {
                return ok(pb::GetContentsAndStatResponse {
                    contents,
                    stat: Some(stat),
                    cacheable: true,
                })
            }
            Err(t) => t,
        };
        let (cell, body) = self.handle_cell(&who, &r.handle)?;
        let mut reply = self
            .forward(cell, Some(&who), Retry::Idempotent, |mut c, ctx| {
                let mut r = r.clone();
                r.ctx = Some(ctx);
                async move { c.get_contents_and_stat(r).await }
            })
            .await?;
        self.handle_info(&who, &r.handle, cell, body.as_ref());
        if let (true, Some(b), Some(t)) = (reply.cacheable, body, ticket) {
            let data = reply.contents.clone();
            let stat = reply.stat.clone();
            reply.cacheable = self.shared.with_core(|c| {
                if !c.note_cacher(&who.id, &b.path, Some(t)) {
                    return false;
                }
                if let Some(stat) = stat {
                    c.cache.fill(&b.path, t, |e| {
                        e.stat = Some(stat.clone());
                        e.contents = Some((data, stat));
                    });
                }
                true
            });
        }
        ok(reply)
    }

    async fn get_stat(
        &self,
        req: Request<pb::GetStatRequest>,
    ) -> Result<Response<pb::GetStatResponse>, Status> {
        let r = req.into_inner();
        let who = self.session(r.ctx.as_ref()).await?;
        let ticket = match self.cached(&who, &r.handle, false, |e, instance| {
            e.stat
                .as_ref()
                .or(e.contents.as_ref().map(|(_, s)| s))
                .filter(|s| s.instance == instance)
                .cloned()
        }) {
            Ok(stat) => {
                return ok(pb::GetStatResponse {
                    stat: Some(stat),
                    cacheable: true,
                })
            }
            Err(t) => t,
        };
        let (cell, body) = self.handle_cell(&who, &r.handle)?;
        let mut reply = self
            .forward(cell, Some(&who), Retry::Idempotent, |mut c, ctx| {
                let mut r = r.clone();
                r.ctx = Some(ctx);
                async move { c.get_stat(r).await }
            })
            .await?;
        self.handle_info(&who, &r.handle, cell, body.as_ref());
        if let (true, Some(b), Some(t)) = (reply.cacheable, body, ticket) {
            let stat = reply.stat.clone();
            reply.cacheable = self.shared.with_core(|c| {
                if !c.note_cacher(&who.id, &b.path, Some(t)) {
                    return false;
                }
                if let Some(stat) = stat {
                    c.cache.fill(&b.path, t, |e| e.stat = Some(stat));
                }
                true
            });
        }
        ok(reply)
    }

    async fn read_dir(
        &self,
        req: Request<pb::ReadDirRequest>,
    ) -> Result<Response<pb::ReadDirResponse>, Status> {
        let r = req.into_inner();
        let who = self.session(r.ctx.as_ref()).await?;
        let ticket = match self.cached(&who, &r.handle, true, |e, instance| {
            e.dir
                .as_ref()
                .filter(|(_, s)| s.instance == instance)
                .cloned()
        }) {
            Ok((entries, stat)) => {
                return ok(pb::ReadDirResponse {
                    entries,
                    cacheable: true,
                    stat: Some(stat),
                })
            }
            Err(t) => t,
        };
        let (cell, body) = self.handle_cell(&who, &r.handle)?;
        let mut reply = self
            .forward(cell, Some(&who), Retry::Idempotent, |mut c, ctx| {
                let mut r = r.clone();
                r.ctx = Some(ctx);
                async move { c.read_dir(r).await }
            })
            .await?;
        self.handle_info(&who, &r.handle, cell, body.as_ref());
        if let (true, Some(b), Some(t)) = (reply.cacheable, body, ticket) {
            let entries = reply.entries.clone();
            let stat = reply.stat.clone();
            reply.cacheable = self.shared.with_core(|c| {
                if !c.note_cacher(&who.id, &b.path, Some(t)) {
                    return false;
                }
                if let Some(stat) = stat {
                    c.cache.fill(&b.path, t, |e| e.dir = Some((entries, stat)));
                }
                true
            });
        }
        ok(reply)
    }

    async fn set_contents(
        &self,
        req: Request<pb::SetContentsRequest>,
    ) -> Result<Response<pb::SetContentsResponse>, Status> {
        forward_by_handle!(self, req, set_contents, Retry::Once)
    }

    async fn set_acl(
        &self,
        req: Request<pb::SetAclRequest>,
    ) -> Result<Response<pb::SetAclResponse>, Status> {
        forward_by_handle!(self, req, set_acl, Retry::Once)
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        forward_by_handle!(self, req, delete, Retry::Once)
    }

    async fn acquire(
        &self,
        req: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        forward_by_handle!(self, req, acquire, Retry::Once)
    }

    async fn try_acquire(
        &self,
        req: Request<pb::TryAcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        forward_by_handle!(self, req, try_acquire, Retry::Once)
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        forward_by_handle!(self, req, release, Retry::Once)
    }

    async fn get_sequencer(
        &self,
        req: Request<pb::GetSequencerRequest>,
    ) -> Result<Response<pb::GetSequencerResponse>, Status> {
        forward_by_handle!(self, req, get_sequencer, Retry::Idempotent)
    }

    async fn set_sequencer(
        &self,
        req: Request<pb::SetSequencerRequest>,
    ) -> Result<Response<pb::SetSequencerResponse>, Status> {
        let r = req.into_inner();
        let who = self.session(r.ctx.as_ref()).await?;
        let (cell, body) = self.handle_cell(&who, &r.handle)?;
        // Reads through this handle must reach the cell from now on (it checks the
        // sequencer), even if the call below fails half-way.
        self.handle_info(&who, &r.handle, cell, body.as_ref());
        self.shared
            .with_core(|c| c.sequencer_set(&who.id, &r.handle));
        let reply = self
            .forward(cell, Some(&who), Retry::Idempotent, |mut c, ctx| {
                let mut r = r.clone();
                r.ctx = Some(ctx);
                async move { c.set_sequencer(r).await }
            })
            .await?;
        ok(reply)
    }

    async fn check_sequencer(
        &self,
        req: Request<pb::CheckSequencerRequest>,
    ) -> Result<Response<pb::CheckSequencerResponse>, Status> {
        let r = req.into_inner();
        // Checked as the proxy itself: whether a sequencer is current does not depend on
        // who asks, and the client may have nothing open at that cell.
        self.session(r.ctx.as_ref()).await?;
        let path = r
            .sequencer
            .as_ref()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        let cell = self.shared.cell_of_path(&path);
        let reply = self
            .forward(cell, None, Retry::Idempotent, |mut c, ctx| {
                let mut r = r.clone();
                r.ctx = Some(ctx);
                async move { c.check_sequencer(r).await }
            })
            .await?;
        ok(reply)
    }

    async fn claim_session(
        &self,
        _req: Request<pb::ClaimSessionRequest>,
    ) -> Result<Response<pb::ClaimSessionResponse>, Status> {
        Err(WarrenError::invalid_argument(
            "ClaimSession is for proxies talking to cells; this is a proxy",
        )
        .into())
    }
}
