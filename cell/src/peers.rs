//! A cell's own sessions at the other cells of its deployment (principal
//! [`CELL_PRINCIPAL`]), for the steps of docs/partitioning.md that cross cells: creating a
//! child anchor, unlinking an entry, reading an ACL file held elsewhere.
//!
//! Anchors and entries are reached with `OpenRequest.target` and `CreateSpec.instance`,
//! which the client library does not expose, so those calls go through a small raw session
//! ([`PeerSession`]): `CreateSession`, a KeepAlive loop that acknowledges everything at
//! once (so a cell's writes never wait on this session's invalidations), and the few calls
//! the steps need. Its lease and acknowledgements are the client library's shared
//! [`warren_client::lease`] types: the session counts as dead once its local lease (send
//! time + lease / (1 + ρ)) ends unrenewed — no grace period: a new one is made on demand. ACL files are read through a `warren_client::Session` with a handle kept
//! open per file: its cache makes repeated checks local, and coherent (a write of an ACL
//! file is acknowledged only after that cache dropped its copy).
//!
//! Sessions are made lazily, one per cell, from the addresses in the partition map, and made
//! again when they have expired or the cell's addresses changed.

use crate::core::CELL_PRINCIPAL;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use warren_client::lease::{AckWatermark, Lease};
use warren_client::rpc::Rpc;
use warren_client::transport::{master_via, Conn};
use warren_client::{ClientOptions, OpenOptions};
use warren_proto::pb;
use warren_proto::{ErrorCode, WarrenError};

/// Bound on each call to another cell.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on one call including its retries (new epoch, new master, failover).
const CALL_BUDGET: Duration = Duration::from_secs(4);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unreachable(cell: &str, why: impl std::fmt::Display) -> WarrenError {
    WarrenError::new(
        ErrorCode::FailoverInProgress,
        format!("cell {cell} could not be reached: {why}"),
    )
}

struct PeerState {
    conn: Conn,
    session_id: Vec<u8>,
    secret: Vec<u8>,
    /// The master epoch the session knows and the events it has received (all of them
    /// acknowledged by the next KeepAlive).
    acks: AckWatermark,
}

impl PeerState {
    /// The context of a call (map epoch 0: set per call).
    fn ctx(&self) -> pb::SessionContext {
        pb::SessionContext {
            session_id: self.session_id.clone(),
            secret: self.secret.clone(),
            epoch: self.acks.epoch(),
            ..Default::default()
        }
    }
}

/// One raw session at another cell.
pub(crate) struct PeerSession {
    cell: String,
    addrs: Vec<String>,
    state: Arc<Mutex<PeerState>>,
    dead: Arc<AtomicBool>,
    keepalive: tokio::task::JoinHandle<()>,
}

impl Drop for PeerSession {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// Finds the master among `addrs`.
async fn find_master(cell: &str, addrs: &[String]) -> Result<Conn, WarrenError> {
    let mut last = String::from("no addresses");
    for a in addrs {
        match master_via(a, CALL_TIMEOUT).await {
            Ok((conn, _)) => return Ok(conn),
            Err(e) => last = e.to_string(),
        }
    }
    Err(unreachable(cell, last))
}

impl PeerSession {
    async fn connect(cell: &str, addrs: &[String]) -> Result<Arc<PeerSession>, WarrenError> {
        let started = Instant::now();
        let (conn, reply, sent) = loop {
            let conn = find_master(cell, addrs).await?;
            let mut client = conn.client.clone();
            let req = pb::CreateSessionRequest {
                principal: CELL_PRINCIPAL.into(),
                proxy: false,
            };
            let sent = Instant::now();
            match tokio::time::timeout(CALL_TIMEOUT, client.create_session(req)).await {
                Ok(Ok(r)) => break (conn, r.into_inner(), sent),
                Ok(Err(status)) => {
                    let e = WarrenError::from_status(&status)
                        .unwrap_or_else(|| unreachable(cell, status.message()));
                    if !e.is_retryable() || started.elapsed() > CALL_BUDGET {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => return Err(unreachable(cell, "CreateSession timed out")),
            }
        };
        let state = Arc::new(Mutex::new(PeerState {
            conn,
            session_id: reply.session_id,
            secret: reply.secret,
            acks: AckWatermark::new(reply.epoch),
        }));
        let dead = Arc::new(AtomicBool::new(false));
        let lease = Lease::new(
            sent,
            Duration::from_millis(reply.lease_ms),
            ClientOptions::DEFAULT_CLOCK_DRIFT,
            Duration::ZERO,
        );
        let keepalive = tokio::spawn(keepalive_loop(
            cell.to_string(),
            addrs.to_vec(),
            state.clone(),
            dead.clone(),
            lease,
        ));
        tracing::debug!(cell, "internal session created");
        Ok(Arc::new(PeerSession {
            cell: cell.to_string(),
            addrs: addrs.to_vec(),
            state,
            dead,
            keepalive,
        }))
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// Runs one call with retries on a new epoch, a new master, a failover or a transport
    /// failure, within [`CALL_BUDGET`]. Every call the steps make is safe to repeat.
    async fn call<Q: Rpc>(&self, map_epoch: u64, request: Q) -> Result<Q::Reply, WarrenError> {
        let started = Instant::now();
        loop {
            let (client, ctx) = {
                let st = lock(&self.state);
                let mut ctx = st.ctx();
                ctx.map_epoch = map_epoch;
                (st.conn.client.clone(), ctx)
            };
            let sent = request.with_ctx(ctx).send(client);
            let err = match tokio::time::timeout(CALL_TIMEOUT, sent).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(status)) => WarrenError::from_status(&status),
                Err(_) => None,
            };
            if started.elapsed() > CALL_BUDGET {
                return Err(err.unwrap_or_else(|| unreachable(&self.cell, "no answer in time")));
            }
            match err {
                Some(e) if e.code == ErrorCode::StaleEpoch => {
                    lock(&self.state).acks.adopt_epoch(e.epoch);
                }
                Some(e) if e.code == ErrorCode::NotMaster => self.relocate().await,
                Some(e) if e.code == ErrorCode::FailoverInProgress => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Some(e) if e.code == ErrorCode::SessionExpired => {
                    self.dead.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                Some(e) => return Err(e),
                None => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.relocate().await;
                }
            }
        }
    }

    async fn relocate(&self) {
        if let Ok(conn) = find_master(&self.cell, &self.addrs).await {
            lock(&self.state).conn = conn;
        }
    }

    pub(crate) async fn open(
        &self,
        map_epoch: u64,
        req: pb::OpenRequest,
    ) -> Result<pb::OpenResponse, WarrenError> {
        self.call(map_epoch, req).await
    }

    pub(crate) async fn delete(&self, map_epoch: u64, handle: &[u8]) -> Result<(), WarrenError> {
        let req = pb::DeleteRequest {
            ctx: None,
            handle: handle.to_vec(),
        };
        self.call(map_epoch, req).await.map(|_| ())
    }

    /// Ends the session (`CloseSession`, one try, bounded): a cell restarted later then
    /// has no session of ours to wait for.
    async fn end(&self) {
        self.keepalive.abort();
        let (mut client, ctx) = {
            let st = lock(&self.state);
            (st.conn.client.clone(), st.ctx())
        };
        let req = pb::CloseSessionRequest {
            ctx: Some(ctx),
            expired: false,
        };
        let _ = tokio::time::timeout(CALL_TIMEOUT, client.close_session(req)).await;
    }

    /// Closes a handle (never fails; a handle left open dies with the session).
    pub(crate) async fn close(&self, map_epoch: u64, handle: &[u8]) {
        let req = pb::CloseRequest {
            ctx: None,
            handle: handle.to_vec(),
        };
        let _ = self.call(map_epoch, req).await;
    }
}

/// Keeps a raw session alive, acknowledging every event as soon as it arrives. Marks the
/// session dead once it expired, or once its local lease ended without a renewal.
async fn keepalive_loop(
    cell: String,
    addrs: Vec<String>,
    state: Arc<Mutex<PeerState>>,
    dead: Arc<AtomicBool>,
    mut lease: Lease,
) {
    loop {
        if lease.check(Instant::now()).expired {
            tracing::debug!(%cell, "internal session could not be renewed within its lease");
            dead.store(true, Ordering::Relaxed);
            return;
        }
        let (mut client, req) = {
            let st = lock(&state);
            let req = pb::KeepAliveRequest {
                ctx: Some(st.ctx()),
                ack_seq: st.acks.ack_seq(),
                ..Default::default()
            };
            (st.conn.client.clone(), req)
        };
        let sent = Instant::now();
        // A reply after the local lease ended would come too late anyway.
        let give_up = lease.next_deadline().unwrap_or(sent);
        let err = match tokio::time::timeout_at(give_up, client.keep_alive(req)).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                let now = Instant::now();
                if !lease.check(now).expired {
                    lease.renewed(now, sent, Duration::from_millis(r.lease_ms));
                }
                let mut st = lock(&state);
                st.acks.adopt_epoch(r.epoch);
                st.acks.take_fresh(r.epoch, &r.events);
                continue;
            }
            Ok(Err(status)) => WarrenError::from_status(&status),
            Err(_) => None,
        };
        match err {
            Some(e) if e.code == ErrorCode::SessionExpired => {
                dead.store(true, Ordering::Relaxed);
                return;
            }
            Some(e) if e.code == ErrorCode::StaleEpoch => {
                // A new master: its events are numbered afresh.
                lock(&state).acks.adopt_epoch(e.epoch);
            }
            Some(e) if e.code == ErrorCode::InvalidArgument => {
                // Acknowledged past what the (new) master sent: start over.
                lock(&state).acks.restart();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Ok(conn) = find_master(&cell, &addrs).await {
                    lock(&state).conn = conn;
                }
            }
        }
    }
}

/// Reads ACL files at one cell with a client-library session (cached, coherent).
struct AclReader {
    addrs: Vec<String>,
    session: warren_client::Session,
    handles: HashMap<String, warren_client::Handle>,
}

type Slot<T> = Arc<tokio::sync::Mutex<Option<T>>>;

/// The internal sessions of one cell master, by cell name.
#[derive(Default)]
pub(crate) struct Peers {
    sessions: Mutex<HashMap<String, Slot<Arc<PeerSession>>>>,
    acl: Mutex<HashMap<String, Slot<AclReader>>>,
}

impl Peers {
    /// The session at `cell` (replicas `addrs`), made if there is none alive.
    pub(crate) async fn session(
        &self,
        cell: &str,
        addrs: &[String],
    ) -> Result<Arc<PeerSession>, WarrenError> {
        let slot = lock(&self.sessions)
            .entry(cell.to_string())
            .or_default()
            .clone();
        let mut g = slot.lock().await;
        if let Some(s) = g.as_ref() {
            if !s.is_dead() && s.addrs == addrs {
                return Ok(s.clone());
            }
        }
        let s = PeerSession::connect(cell, addrs).await?;
        *g = Some(s.clone());
        Ok(s)
    }

    /// Closes every internal session (when the master's term ends), at most ~3 s in all.
    pub(crate) async fn close_all(&self) {
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        let readers: Vec<_> = lock(&self.acl).values().cloned().collect();
        let mut ends = Vec::new();
        for slot in sessions {
            ends.push(tokio::spawn(async move {
                if let Some(s) = slot.lock().await.take() {
                    s.end().await;
                }
            }));
        }
        for slot in readers {
            ends.push(tokio::spawn(async move {
                if let Some(r) = slot.lock().await.take() {
                    let _ = r.session.close().await;
                }
            }));
        }
        let all = futures::future::join_all(ends);
        let _ = tokio::time::timeout(CALL_TIMEOUT, all).await;
    }

    /// The contents of ACL file `file` held by `cell` (`None`: it does not exist).
    pub(crate) async fn read_acl(
        &self,
        cell: &str,
        addrs: &[String],
        file: &str,
    ) -> Result<Option<Vec<u8>>, WarrenError> {
        let slot = lock(&self.acl).entry(cell.to_string()).or_default().clone();
        let mut g = slot.lock().await;
        let stale = g
            .as_ref()
            .is_none_or(|r| !r.session.is_live() || r.addrs != addrs);
        if stale {
            let options = ClientOptions::new(addrs.to_vec())
                .principal(CELL_PRINCIPAL)
                .rpc_timeout(CALL_TIMEOUT)
                .grace_period(Duration::from_secs(5));
            let session = warren_client::Session::connect_with(options)
                .await
                .map_err(|e| unreachable(cell, e))?;
            *g = Some(AclReader {
                addrs: addrs.to_vec(),
                session,
                handles: HashMap::new(),
            });
        }
        let reader = g.as_mut().expect("set above");
        for _ in 0..2 {
            if let Some(h) = reader.handles.get(file) {
                match h.contents().await {
                    Ok((data, _)) => return Ok(Some(data)),
                    Err(e) => {
                        tracing::debug!(file, error = %e, "ACL handle failed; reopening");
                        if let Some(h) = reader.handles.remove(file) {
                            h.close().await;
                        }
                    }
                }
            }
            match reader.session.open(file, OpenOptions::new().read()).await {
                Ok((h, _)) => {
                    reader.handles.insert(file.to_string(), h);
                }
                Err(e) if e.code() == Some(ErrorCode::NotFound) => return Ok(None),
                Err(e) => {
                    return Err(match e.warren() {
                        Some(w) => w.clone(),
                        None => unreachable(cell, e),
                    })
                }
            }
        }
        Err(unreachable(cell, format!("{file} could not be read")))
    }
}
