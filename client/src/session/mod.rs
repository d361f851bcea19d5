//! Sessions: connecting (find the master with `Locate`, `CreateSession`), the driver that
//! executes the session state machine (KeepAlives, looking for the master, the cache, the
//! call gate, events), and the retry rules every application call shares.
//!
//! The decisions live in the sans-IO [`core::SessionCore`] (built on the shared [`lease`]
//! types); this module only executes its commands. The states (docs/design.md §6):
//!
//! ```text
//!                KeepAlive reply extends the local lease
//!                  ┌────────┐
//!                  ▼        │
//!   connect ──▶  SAFE ──────┘
//!                 │  ▲
//!   local lease   │  │ a KeepAlive reply within the grace period
//!   ends, no      │  │ (events: Safe; calls resume, caching resumes)
//!   reply         ▼  │
//!              JEOPARDY ── grace period (45 s) ends ──▶ EXPIRED
//!   (events: Jeopardy;                      (events: Expired; every call but
//!    cache emptied and off;                  Handle::close fails SESSION_EXPIRED)
//!    calls wait; look for the master)
//!
//!   SESSION_EXPIRED from the master, in any state ──▶ EXPIRED
//!   Session::close, in any state ──▶ CLOSED
//! ```

pub(crate) mod core;
pub(crate) mod gate;
pub mod lease;

use self::core::{Command, Failure, Input, SessionCore};
use self::gate::CallGate;
use crate::cache::{Cache, ServerHandle, Ticket};
use crate::error::Error;
use crate::handle::{Handle, OpenInfo};
use crate::options::{ClientOptions, OpenOptions};
use crate::path::expand_path;
use crate::proxies::{client_key, proxy_order};
use crate::rpc::Rpc;
use crate::transport::{self, Conn};
use crate::types::{
    required_stat, CacheStats, Event, LocateInfo, NodeKind, Sequencer, SessionId, SessionState,
};
use futures::future::BoxFuture;
use futures::StreamExt;
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use warren_proto::pb;
use warren_proto::{Effect, ErrorCode, WarrenError};

/// How many `STALE_EPOCH` answers in a row one call accepts (each names a newer epoch; more
/// than a few in a row means something is wrong).
const MAX_STALE_EPOCH_RETRIES: u32 = 8;
/// First pause between retries of a call; doubles per attempt up to [`CALL_RETRY_MAX`].
const CALL_RETRY_BASE: Duration = Duration::from_millis(50);
/// Longest pause between retries of a call (before jitter).
const CALL_RETRY_MAX: Duration = Duration::from_secs(1);
/// The longest lease a master grants (docs/design.md §16), bounding retries of a call that cannot
/// reach the master while its session nevertheless stays safe.
const LONGEST_LEASE: Duration = Duration::from_secs(60);
/// How many handles are recreated at once after a fail-over.
const RECREATE_CONCURRENCY: usize = 16;
/// `Locate` timeout while looking for the master (a replica answers it at once).
const LOCATE_TIMEOUT: Duration = Duration::from_secs(2);

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data
/// consistent, so a panic elsewhere must not make the session unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Warren session: a lease kept alive in the background, the handles opened in it, the
/// events they deliver, and a consistent cache. Cheap to clone; all clones are the same
/// session.
///
/// # States
///
/// ```text
///   connect ──▶ SAFE ──(local lease ends, no reply)──▶ JEOPARDY ──(grace ends)──▶ EXPIRED
///                 ▲                                        │
///                 └─────(KeepAlive reply within grace)─────┘
/// ```
///
/// - **Safe**: one KeepAlive is always outstanding; each reply extends the *local lease*
///   (send time + granted lease / (1 + ρ), [`ClientOptions::clock_drift`]), which ends
///   before the master's. Reads may be answered from the cache.
/// - **Jeopardy**: the local lease ended without a reply. The library empties and disables
///   the cache, delivers [`Event::Jeopardy`], and holds every application call back (they
///   wait: none fails, none sees stale data) while it keeps looking for the master (each
///   endpoint in turn, with backoff) for the grace period
///   ([`ClientOptions::grace_period`], 45 s by default).
/// - A reply within the grace period: **safe** again, [`Event::Safe`], held calls proceed.
///   If the master failed over meanwhile, an [`Event::MasterFailover`] follows (the cache
///   was flushed; events may have been lost; handles keep working).
/// - Otherwise **expired**: [`Event::Expired`], and every call on the session and its
///   handles fails with `SESSION_EXPIRED`, except [`Handle::close`], which never fails.
///
/// When the last clone (and the last [`Handle`], which holds one) is dropped, the KeepAlive
/// loop stops and the master lets the session expire after its lease. Call
/// [`close`](Session::close) to end it at once (releasing locks and ephemeral nodes).
#[derive(Clone)]
pub struct Session {
    owner: Arc<Owner>,
    /// Direct mode over a partitioned deployment: this is the home session (at the meta
    /// cell) and the router holds the per-cell sessions ([`crate::routed`]).
    router: Option<Arc<crate::routed::Router>>,
}

/// Stops the driver when the last `Session` clone goes.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
    }
}

/// State shared by the session's clones, its handles and its driver.
pub(crate) struct Shared {
    options: ClientOptions,
    id: SessionId,
    pub(crate) secret: Vec<u8>,
    deployment: String,
    /// The state machine. Lock order: `core` before `cache` and `subscribers`.
    core: Mutex<SessionCore>,
    cache: Mutex<Cache>,
    /// Holds calls back in jeopardy, fails them once the session is over.
    gate: CallGate,
    /// The master we talk to; replaced on redirects and when the driver finds it elsewhere.
    conn: Mutex<Conn>,
    /// One sender per [`EventStream`]; emptied when the session ends, which ends the streams.
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Event>>>,
    /// KeepAlive and master-search commands produced outside the driver (by calls that
    /// learnt of a newer epoch), for the driver to execute.
    driver_tx: mpsc::UnboundedSender<Command>,
    /// Set to stop the driver.
    stop: watch::Sender<bool>,
    /// The endpoints in the order master searches try them: as given for a cell; for
    /// proxies, the session's ring order ([`proxy_order`]), its preferred proxy first.
    search_order: Vec<String>,
    /// Distinguishes calls' retry jitter.
    calls: AtomicU64,
    /// Seed for jitter (from the session id).
    jitter_seed: u64,
    /// Every server handle opened in this session that may still be in use, for
    /// [`Command::RecreateHandles`].
    open_handles: Mutex<Vec<Weak<ServerHandle>>>,
    /// Where [`Command::Moved`] goes: the router of the partitioned session this is a
    /// cell session of (direct mode), which re-opens the handle at its new cell.
    moved_to: Mutex<Option<mpsc::UnboundedSender<MovedHandle>>>,
}

/// A reshard moved the node of a session's handle (a `SLOT_MOVED` event), as the session
/// tells its router.
#[derive(Clone, Debug)]
pub(crate) struct MovedHandle {
    /// The handle's token, as this session's cell made it.
    pub handle: Vec<u8>,
    pub path: String,
    /// The cell the node went to.
    pub cell: String,
}

/// How a call may be retried.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallPolicy {
    /// Bound on each attempt (`None`: wait as long as the session lives).
    pub timeout: Option<Duration>,
    /// Whether sending it twice is harmless, so that it may be re-sent after a transport
    /// failure (when it may or may not have been applied).
    pub idempotent: bool,
}

/// What a master granted a session: its epoch, and the lease counted from `sent_at`.
struct Granted {
    epoch: u64,
    lease: Duration,
    sent_at: Instant,
}

impl Session {
    /// Connects to the first of `endpoints` (`HOST:PORT`) that leads to a master, with
    /// default options.
    pub async fn connect<S: AsRef<str>>(endpoints: &[S]) -> Result<Session, Error> {
        Self::connect_with(ClientOptions::new(endpoints.iter().map(|e| e.as_ref()))).await
    }

    /// Connects with `options`: finds the master with `Locate`, creates the session and
    /// starts keeping it alive. While a new master is still recovering from a fail-over it
    /// refuses new sessions (`FAILOVER_IN_PROGRESS`); this retries for up to the longer of
    /// the call timeout and the grace period.
    ///
    /// Through proxies ([`ClientOptions::proxies`]) the proxies are tried in a ring order
    /// keyed by a value random per call, so fresh clients spread over them; the session
    /// is created at the first that answers.
    pub async fn connect_with(options: ClientOptions) -> Result<Session, Error> {
        if options.partitioned {
            return Box::pin(crate::routed::connect(options)).await;
        }
        options.validate()?;
        let timeout = options.rpc_timeout;
        let patience = timeout.max(options.grace_period);
        let first_order = if options.via_proxies {
            proxy_order(&options.endpoints, &client_key())
        } else {
            options.endpoints.clone()
        };
        // HTTP/2 PINGs to a cell, none to a proxy (transport::dial_with).
        let pings = !options.via_proxies;
        let (mut conn, _) =
            transport::find_master(&first_order, timeout, pings, options.tls.as_ref()).await?;
        let started = Instant::now();
        // Spreads the retries of many clients reconnecting after a fail-over.
        let salt = connect_salt();
        let mut attempt = 0u32;
        let (reply, sent_at) = loop {
            attempt = attempt.saturating_add(1);
            let request = pb::CreateSessionRequest {
                principal: options.principal.clone(),
                proxy: false,
            };
            let sent_at = Instant::now();
            let mut client = conn.client.clone();
            let status = match tokio::time::timeout(timeout, client.create_session(request)).await {
                Ok(Ok(reply)) => break (reply.into_inner(), sent_at),
                Ok(Err(status)) => status,
                Err(_) => return Err(Error::timed_out(&conn.addr, timeout)),
            };
            let err = Error::from_status(&status, &conn.addr);
            let elapsed = started.elapsed();
            match err.warren().map(|w| (w.code, w.master.clone())) {
                Some((ErrorCode::NotMaster, master)) if elapsed < patience => {
                    tokio::time::sleep(retry_pause(attempt, salt)).await;
                    conn = if master.is_empty() {
                        transport::find_master(&first_order, timeout, pings, options.tls.as_ref())
                            .await?
                            .0
                    } else {
                        transport::dial_as(&master, timeout, pings, options.tls.as_ref()).await?
                    };
                }
                Some((ErrorCode::FailoverInProgress, _)) if elapsed < patience => {
                    tokio::time::sleep(retry_pause(attempt, salt)).await;
                }
                _ => return Err(err),
            }
        };

        let id = SessionId::try_from(reply.session_id.as_slice())?;
        if reply.secret.len() != warren_proto::SESSION_ID_LEN {
            return Err(Error::Protocol(format!(
                "session secret has {} bytes, expected {}",
                reply.secret.len(),
                warren_proto::SESSION_ID_LEN
            )));
        }
        if reply.deployment.is_empty() {
            return Err(Error::Protocol(
                "CreateSession reply names no deployment".into(),
            ));
        }
        let granted = Granted {
            epoch: reply.epoch,
            lease: Duration::from_millis(reply.lease_ms),
            sent_at,
        };
        Ok(Session::start(
            options,
            conn,
            id,
            reply.secret,
            reply.deployment,
            granted,
        ))
    }

    /// Carries on session `id` (with `secret`) at another cell, `options.endpoints`, that
    /// already knows it: a reshard moved a node this session held there (its lock, its
    /// handle), and the new cell took the session on with it (docs/resharding.md). The new
    /// cell answers its first KeepAlive at once; from then on it is driven like any
    /// session, so what it holds there stays held. `SESSION_EXPIRED` if the cell does not
    /// know it.
    pub(crate) async fn continue_at(
        options: ClientOptions,
        id: SessionId,
        secret: Vec<u8>,
        deployment: String,
    ) -> Result<Session, Error> {
        options.validate()?;
        let timeout = options.rpc_timeout;
        let pings = !options.via_proxies;
        let (conn, located) =
            transport::find_master(&options.endpoints, timeout, pings, options.tls.as_ref())
                .await?;
        let sent_at = Instant::now();
        let request = pb::KeepAliveRequest {
            ctx: Some(pb::SessionContext {
                session_id: id.as_bytes().to_vec(),
                secret: secret.clone(),
                epoch: located.epoch,
                ..Default::default()
            }),
            ack_seq: 0,
            jeopardy: false,
        };
        let mut client = conn.client.clone();
        let reply = match tokio::time::timeout(timeout, client.keep_alive(request)).await {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => return Err(Error::from_status(&status, &conn.addr)),
            Err(_) => return Err(Error::timed_out(&conn.addr, timeout)),
        };
        let granted = Granted {
            epoch: reply.epoch,
            lease: Duration::from_millis(reply.lease_ms),
            sent_at,
        };
        Ok(Session::start(
            options, conn, id, secret, deployment, granted,
        ))
    }

    /// A session from what its master granted: its state machine, cache and driver.
    fn start(
        options: ClientOptions,
        conn: Conn,
        id: SessionId,
        secret: Vec<u8>,
        deployment: String,
        granted: Granted,
    ) -> Session {
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&id.as_bytes()[..8]);
        let jitter_seed = u64::from_le_bytes(seed);
        let mut core = SessionCore::new(
            granted.epoch,
            granted.lease,
            granted.sent_at,
            options.clock_drift,
            options.grace_period,
            jitter_seed,
        );
        let first = core.start();
        let (stop, stop_rx) = watch::channel(false);
        let (driver_tx, driver_rx) = mpsc::unbounded_channel();
        let cache = Cache::new(options.cache);
        let search_order = if options.via_proxies {
            proxy_order(&options.endpoints, id.as_bytes())
        } else {
            options.endpoints.clone()
        };
        if options.via_proxies {
            tracing::debug!(session = %id, via = %conn.addr, order = ?search_order, "session created through a proxy");
        }
        let shared = Arc::new(Shared {
            options,
            id,
            secret,
            deployment,
            core: Mutex::new(core),
            cache: Mutex::new(cache),
            gate: CallGate::new(),
            conn: Mutex::new(conn),
            subscribers: Mutex::new(Vec::new()),
            driver_tx,
            stop,
            search_order,
            calls: AtomicU64::new(0),
            jitter_seed,
            open_handles: Mutex::new(Vec::new()),
            moved_to: Mutex::new(None),
        });
        // Its logs name the session (at debug: a deployment's many sessions interleave).
        let span = tracing::debug_span!("session", id = %id);
        tokio::spawn(tracing::Instrument::instrument(
            driver(shared.clone(), stop_rx, driver_rx, first),
            span,
        ));
        tracing::debug!(session = %id, "session started");
        Session {
            owner: Arc::new(Owner { shared }),
            router: None,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.owner.shared
    }

    /// This (home) session, routing through `router`.
    pub(crate) fn with_router(self, router: Arc<crate::routed::Router>) -> Session {
        Session {
            owner: self.owner,
            router: Some(router),
        }
    }

    /// Whether this session routes by a partition map itself (direct mode over a
    /// partitioned deployment, [`ClientOptions::meta`]).
    pub fn is_partitioned(&self) -> bool {
        self.router.is_some()
    }

    /// The partition map epoch a partitioned session routes with (0 otherwise).
    pub fn map_epoch(&self) -> u64 {
        self.router.as_ref().map_or(0, |r| r.map_epoch())
    }

    /// The partition map a partitioned session routes with.
    pub fn partition_map(&self) -> Option<Arc<warren_router::PartitionMap>> {
        self.router.as_ref().map(|r| r.map())
    }

    pub(crate) fn plain_state(&self) -> SessionState {
        lock(&self.shared().core).state()
    }

    pub(crate) fn plain_cache_stats(&self) -> CacheStats {
        lock(&self.shared().cache).stats()
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.shared().id
    }

    /// The deployment this session lives in: the `<deployment>` of `/ls/<deployment>/…`.
    pub fn deployment(&self) -> &str {
        &self.shared().deployment
    }

    /// The master epoch the session currently knows.
    pub fn epoch(&self) -> u64 {
        lock(&self.shared().core).epoch()
    }

    /// What is left of the local lease (zero once it has ended): the time during which the
    /// session is certainly alive at the master.
    pub fn lease(&self) -> Duration {
        lock(&self.shared().core).lease_remaining(Instant::now())
    }

    /// The address of the master the session talks to (through proxies: the proxy).
    pub fn master(&self) -> String {
        lock(&self.shared().conn).addr.clone()
    }

    /// The order in which the session looks for its master when it loses it: the
    /// endpoints as given for a cell (each search starting one further along); through
    /// proxies, [`proxy_order`](crate::proxy_order)`(endpoints, id)`, each search starting
    /// from the first, the session's preferred proxy.
    pub fn search_order(&self) -> &[String] {
        &self.shared().search_order
    }

    /// Where the session is in its life (see [States](Session#states)).
    ///
    /// A partitioned session reports the worst state of its cell sessions.
    pub fn state(&self) -> SessionState {
        match &self.router {
            Some(r) => r.state(),
            None => self.plain_state(),
        }
    }

    /// The plain sessions this session is made of, each with the cell it lives at and its
    /// own state: for a partitioned session its home session at the meta cell first
    /// (named `meta`, as `WRONG_CELL` names it), then one per data cell it has used (by
    /// cell name; a session carried on at another cell after a reshard after those);
    /// otherwise this session alone, with no cell name. [`Session::state`] is the worst of
    /// them, so this says which one expired.
    pub fn cell_sessions(&self) -> Vec<(String, SessionId, SessionState)> {
        match &self.router {
            Some(r) => r.all_named(),
            None => vec![(String::new(), self.id(), self.plain_state())],
        }
    }

    /// Whether the session is still usable: safe, or in jeopardy and possibly coming back.
    pub fn is_live(&self) -> bool {
        self.state().is_live()
    }

    /// Counters of the session's cache, for observability: how much it holds, how often it
    /// answered, how often the master invalidated it, how often it was flushed (jeopardy,
    /// fail-over).
    pub fn cache_stats(&self) -> CacheStats {
        match &self.router {
            Some(r) => r.cache_stats(),
            None => self.plain_cache_stats(),
        }
    }

    /// Subscribes to the session's events. Each subscriber gets every event delivered after
    /// it subscribed, exactly once, in order. The stream ends when the session does; after
    /// expiry its last item is [`Event::Expired`].
    pub fn events(&self) -> EventStream {
        match &self.router {
            Some(r) => r.events(),
            None => self.plain_events(),
        }
    }

    pub(crate) fn plain_events(&self) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        // Hold the core lock while subscribing so the session cannot end in between
        // (which would leave this subscriber's stream open forever).
        let core = lock(&self.shared().core);
        match core.state() {
            SessionState::Safe | SessionState::Jeopardy => {
                lock(&self.shared().subscribers).push(tx)
            }
            SessionState::Expired => {
                let _ = tx.send(Event::Expired);
            }
            SessionState::Closed => {}
        }
        EventStream { rx }
    }

    /// Expands a short path (`/a/b`) to the full form for this session's deployment.
    pub fn full_path(&self, path: &str) -> Result<String, Error> {
        expand_path(self.deployment(), path)
    }

    /// Opens (and optionally creates) the node at `path` (full or short form).
    ///
    /// From the cache, without asking the master: an `open` without create of a node that
    /// an earlier `open` found missing fails with `NOT_FOUND` at once; and an `open` with
    /// at most read intent and no create shares the server handle of an identical `open`
    /// still in use (see the crate docs on handles).
    pub async fn open(
        &self,
        path: &str,
        options: OpenOptions,
    ) -> Result<(Handle, OpenInfo), Error> {
        let path = self.full_path(path)?;
        if let Some(router) = &self.router {
            return Box::pin(router.open(&path, options)).await;
        }
        self.plain_open(path, options).await
    }

    /// `open` at this session's own cell, `path` already expanded.
    pub(crate) async fn plain_open(
        &self,
        path: String,
        options: OpenOptions,
    ) -> Result<(Handle, OpenInfo), Error> {
        // Built once, so bad options fail before anything is sent; each attempt only
        // swaps in the current session context.
        let template = options.to_request(path.clone(), pb::SessionContext::default())?;
        let shared = self.shared();
        let key = options.share_key(&path);
        if !options.creates() {
            shared.admit().await?;
            if shared.cached(|c| c.is_absent(&path)) == Some(true) {
                return Err(Error::Warren(WarrenError::not_found(format!(
                    "{path} does not exist"
                ))));
            }
        }
        if let Some(key) = &key {
            if let Some((server, stat)) = shared.cached(|c| c.share_handle(key)).flatten() {
                let handle = Handle::new(self.clone(), server, path, options.clone());
                let contents = if options.wants_contents() {
                    match handle.contents().await {
                        Ok((data, _)) => Some(data),
                        Err(e) => {
                            handle.close().await;
                            return Err(e);
                        }
                    }
                } else {
                    None
                };
                let info = OpenInfo {
                    stat,
                    contents,
                    cacheable: true,
                    created: false,
                };
                return Ok((handle, info));
            }
        }
        let ticket = shared.ticket();
        let policy = shared.policy(!options.is_exclusive_create());
        let result = shared.call(policy, template).await;
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => {
                // Cache the absence only if the master registered us for it (it then
                // invalidates it before the path is created).
                let cacheable = e.warren().is_some_and(|w| w.cacheable);
                if !options.creates() && e.code() == Some(ErrorCode::NotFound) && cacheable {
                    lock(&shared.cache).fill_absent(ticket, &path);
                }
                // A directory whose children live in another cell was created here (its
                // entry) before the redirect to its anchor: drop what we cached of it and
                // its parent, as for any create (the master no longer counts us).
                if e.warren()
                    .is_some_and(|w| w.code == ErrorCode::WrongCell && w.created)
                {
                    let mut cache = lock(&shared.cache);
                    cache.wrote(&path);
                    if let Some((parent, _)) = path.rsplit_once('/') {
                        cache.wrote(parent);
                    }
                }
                return Err(e);
            }
        };
        if reply.handle.is_empty() {
            return Err(Error::Protocol("Open reply has no handle".into()));
        }
        let stat = required_stat(reply.stat, "Open")?;
        let contents = options.wants_contents().then_some(reply.contents);
        let server = ServerHandle::new(reply.handle, stat.instance);
        shared.register_handle(&server);
        {
            let mut cache = lock(&shared.cache);
            if reply.created {
                // The master stopped counting us as a cacher of the node and its parent
                // when it created it (see the cache's write-through rule).
                cache.wrote(&path);
                if let Some((parent, _)) = path.rsplit_once('/') {
                    cache.wrote(parent);
                }
            } else if reply.cacheable {
                cache.fill_stat(ticket, &path, &stat);
                if let Some(data) = &contents {
                    if stat.kind == NodeKind::File {
                        cache.fill_contents(ticket, &path, data, &stat);
                    }
                }
                if let Some(key) = key {
                    cache.offer_handle(ticket, key, &server);
                }
            }
        }
        let info = OpenInfo {
            stat,
            contents,
            cacheable: reply.cacheable,
            created: reply.created,
        };
        Ok((Handle::new(self.clone(), server, path, options), info))
    }

    /// Whether `sequencer` still names the current holding of its lock.
    pub async fn check_sequencer(&self, sequencer: &Sequencer) -> Result<bool, Error> {
        if let Some(router) = &self.router {
            return Box::pin(router.check_sequencer(sequencer)).await;
        }
        self.plain_check_sequencer(sequencer).await
    }

    pub(crate) async fn plain_check_sequencer(&self, sequencer: &Sequencer) -> Result<bool, Error> {
        let mut wire = pb::Sequencer::from(sequencer);
        wire.path = self.full_path(&sequencer.path)?;
        let request = pb::CheckSequencerRequest {
            ctx: None,
            sequencer: Some(wire),
        };
        let shared = self.shared();
        let reply = shared.call(shared.policy(true), request).await?;
        Ok(reply.current)
    }

    /// Asks the master the session talks to `Locate`.
    pub async fn locate(&self) -> Result<LocateInfo, Error> {
        let conn = lock(&self.shared().conn).clone();
        transport::locate_at(&conn, self.shared().options.rpc_timeout).await
    }

    /// Ends the session: sends `CloseSession`, which releases its locks and deletes
    /// ephemeral nodes only it held open, and stops keeping it alive. Later calls fail with
    /// `SESSION_EXPIRED`; event streams end. Closing a session that has already ended does
    /// nothing. In jeopardy this waits until the session is safe or expired.
    pub async fn close(&self) -> Result<(), Error> {
        match &self.router {
            Some(r) => r.close().await,
            None => self.plain_close().await,
        }
    }

    pub(crate) async fn plain_close(&self) -> Result<(), Error> {
        let shared = self.shared();
        if !lock(&shared.core).state().is_live() {
            return Ok(());
        }
        // The KeepAlives go on until the master has the close (a new master recovering
        // from a fail-over refuses it until our fail-over event is acknowledged).
        shared.observe(Input::Closing);
        let request = pb::CloseSessionRequest {
            ctx: None,
            expired: false,
        };
        let result = shared.call(shared.policy(true), request).await;
        shared.observe(Input::Close);
        match result {
            Ok(_) => Ok(()),
            // Already gone: nothing left to close.
            Err(e) if e.code() == Some(ErrorCode::SessionExpired) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id())
            .field("deployment", &self.deployment())
            .field("master", &self.master())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// The error to report for a call that failed with `err`: when an earlier attempt was sent
/// and may have taken effect (`sent`), a failure that says "not applied" (the session
/// ended, a refusal of the retry) would be wrong about the call, so it becomes
/// `OUTCOME_UNKNOWN`, naming what ended it.
fn unknown_if_sent(sent: bool, err: Error) -> Error {
    if sent && !err.may_have_taken_effect() {
        Error::outcome_unknown(format!(
            "{} ({}), after an attempt that may have taken effect",
            err.message(),
            err.code_name()
        ))
    } else {
        err
    }
}

/// The pause before retry number `attempt` of a call: exponential with up to 50% jitter.
fn retry_pause(attempt: u32, salt: u64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    let base = CALL_RETRY_BASE
        .saturating_mul(1u32 << doublings)
        .min(CALL_RETRY_MAX);
    let noise = lease::splitmix64(salt ^ u64::from(attempt)) % 1000;
    base + base.mul_f64(noise as f64 / 2000.0)
}

impl Shared {
    /// The context every call carries.
    pub(crate) fn ctx(&self) -> pb::SessionContext {
        self.ctx_at(lock(&self.core).epoch())
    }

    fn ctx_at(&self, epoch: u64) -> pb::SessionContext {
        // Holding no handle, the session has nothing at any cell: say so (with the
        // principal), so that if its proxy dies before it opens anything the next proxy
        // can take it on afresh (cells ignore both fields).
        let holds_nothing = lock(&self.open_handles)
            .iter()
            .all(|h| h.strong_count() == 0);
        pb::SessionContext {
            holds_nothing,
            principal: if holds_nothing {
                self.options.principal.clone()
            } else {
                String::new()
            },
            session_id: self.id.as_bytes().to_vec(),
            secret: self.secret.clone(),
            epoch,
            map_epoch: self
                .options
                .map_epoch
                .as_ref()
                .map_or(0, |e| e.load(Ordering::Acquire)),
            ..Default::default()
        }
    }

    /// The default timeout of ordinary calls.
    pub(crate) fn rpc_timeout(&self) -> Duration {
        self.options.rpc_timeout
    }

    /// The policy of a change the master may hold while it invalidates cached copies
    /// (contents, ACL, delete): sent once, and bounded by the default timeout plus a
    /// lease, because a copy held by a client that stopped answering is waited out until
    /// its lease ends (docs/design.md §7). With the default timeout alone, such a write
    /// would fail `OUTCOME_UNKNOWN` though nothing failed but a client elsewhere.
    pub(crate) fn write_policy(&self) -> CallPolicy {
        let lease = lock(&self.core).lease_granted();
        CallPolicy {
            timeout: Some(self.rpc_timeout().saturating_add(lease)),
            idempotent: false,
        }
    }

    /// The policy of an ordinary call: bounded by the default timeout.
    pub(crate) fn policy(&self, idempotent: bool) -> CallPolicy {
        CallPolicy {
            timeout: Some(self.rpc_timeout()),
            idempotent,
        }
    }

    /// Waits while the session is in jeopardy; fails once it is over.
    pub(crate) async fn admit(&self) -> Result<Duration, Error> {
        self.gate.admit().await
    }

    /// Runs `f` on the cache if the cache may answer now: the session is safe and its local
    /// lease has not ended (even if the driver has not yet noticed). `None` otherwise.
    pub(crate) fn cached<T>(&self, f: impl FnOnce(&mut Cache) -> T) -> Option<T> {
        let core = lock(&self.core);
        if core.state() != SessionState::Safe || core.lease_remaining(Instant::now()).is_zero() {
            return None;
        }
        let mut cache = lock(&self.cache);
        Some(f(&mut cache))
    }

    /// A ticket for a read about to be sent (see [`Cache`]).
    pub(crate) fn ticket(&self) -> Ticket {
        lock(&self.cache).ticket()
    }

    /// Runs `f` on the cache, whatever the state (fills, drops, handle counts).
    pub(crate) fn with_cache<T>(&self, f: impl FnOnce(&mut Cache) -> T) -> T {
        f(&mut lock(&self.cache))
    }

    /// Feeds `input` to the state machine and executes the commands it returns: the
    /// immediate ones here, under the core lock (so that effects happen in the order the
    /// machine decided them); KeepAlive, master search and stop are returned for the
    /// driver.
    fn apply(&self, input: Input) -> Vec<Command> {
        let mut core = lock(&self.core);
        let commands = core.handle(Instant::now(), input);
        let mut for_driver = Vec::new();
        for command in commands {
            match command {
                Command::Invalidate(path) => lock(&self.cache).invalidate(&path),
                Command::FlushCache => lock(&self.cache).flush(),
                Command::DisableCache => lock(&self.cache).disable(),
                Command::EnableCache => lock(&self.cache).enable(self.options.cache),
                Command::SetState(state) => self.gate.set(state),
                Command::Deliver(event) => self.deliver(event),
                Command::Moved { handle, path, cell } => {
                    let told = lock(&self.moved_to).as_ref().is_some_and(|tx| {
                        tx.send(MovedHandle {
                            handle,
                            path: path.clone(),
                            cell: cell.clone(),
                        })
                        .is_ok()
                    });
                    if !told {
                        // Its next call meets WRONG_CELL at the old cell and follows it.
                        tracing::debug!(path, cell, "a reshard moved a node this session has open");
                    }
                }
                Command::Stop => {
                    // Ends every event stream (after the last event was queued).
                    lock(&self.subscribers).clear();
                    self.stop.send_replace(true);
                    for_driver.push(Command::Stop);
                }
                c @ (Command::SendKeepAlive { .. }
                | Command::FindMaster { .. }
                | Command::RecreateHandles) => for_driver.push(c),
            }
        }
        for_driver
    }

    /// [`apply`](Self::apply) from outside the driver: what the driver must do is sent to
    /// it.
    fn observe(&self, input: Input) {
        for command in self.apply(input) {
            let _ = self.driver_tx.send(command);
        }
    }

    /// Runs one call with the shared rules. Before each attempt the call passes the gate
    /// (waits in jeopardy, fails once the session is over); an attempt in flight fails when
    /// the session ends. Then:
    ///
    /// - `STALE_EPOCH`: the epoch is adopted (event numbering restarts, the cache is
    ///   flushed) and the call is re-sent;
    /// - `NOT_MASTER`: follow the named master, or look for it among the endpoints;
    /// - `FAILOVER_IN_PROGRESS`: re-sent with backoff for up to the longer of the call
    ///   timeout and the grace period (a new master refuses calls until every restored
    ///   session has acknowledged the fail-over);
    /// - the master not reached: re-sent with backoff if the request never left
    ///   (`UNREACHABLE`: refused, no connection) or the call is idempotent, within the
    ///   call timeout and for as long as the local lease runs (after that the session is in
    ///   jeopardy and the call waits at the gate);
    /// - `UNREACHABLE` (a proxy found no master in its patience and did not send the
    ///   call): re-sent, idempotent or not, as for `FAILOVER_IN_PROGRESS`; `OUTCOME_UNKNOWN`
    ///   (a proxy lost the call after sending it): re-sent as for a master not reached, only
    ///   if the call is idempotent;
    /// - `SESSION_EXPIRED`: the session is over.
    ///
    /// Each attempt sends `request` to the current master with the current context.
    pub(crate) async fn call<Q: Rpc>(
        &self,
        policy: CallPolicy,
        request: Q,
    ) -> Result<Q::Reply, Error> {
        let salt = self.jitter_seed ^ self.calls.fetch_add(1, Ordering::Relaxed);
        let budget = self.options.rpc_timeout;
        let failover_budget = budget.max(lock(&self.core).grace());
        // Time spent retrying, not counting time held back at the gate.
        let mut spent = Duration::ZERO;
        let mut attempt = 0u32;
        let mut stale = 0u32;
        // Whether an attempt already sent may have taken effect: then no later failure
        // may say "not applied" (see `unknown_if_sent`).
        let mut maybe_applied = false;
        loop {
            let held = match self.admit().await {
                Ok(held) => held,
                Err(e) => {
                    let closed = lock(&self.core).state() == SessionState::Closed;
                    return Err(unknown_if_sent(maybe_applied && !closed, e));
                }
            };
            if !held.is_zero() {
                // Held back through a jeopardy: the master is back, start afresh.
                spent = Duration::ZERO;
                attempt = 0;
            }
            let started = Instant::now();
            attempt = attempt.saturating_add(1);
            let conn = lock(&self.conn).clone();
            let sent = request.with_ctx(self.ctx()).send(conn.client.clone());
            let bounded = async {
                match policy.timeout {
                    Some(t) => tokio::time::timeout(t, sent).await.ok(),
                    None => Some(sent.await),
                }
            };
            let result = tokio::select! {
                r = bounded => r,
                // The attempt was in flight: the master may have applied it (unless the
                // application closed the session: then the call is moot).
                e = self.gate.ended() => {
                    let closed = lock(&self.core).state() == SessionState::Closed;
                    return Err(unknown_if_sent(!closed, e));
                }
            };
            let pause = retry_pause(attempt, salt);
            let (err, unreachable) = match result {
                Some(Ok(reply)) => return Ok(reply.into_inner()),
                Some(Err(status)) => (
                    Error::from_status(&status, &conn.addr),
                    crate::transport::is_unreachable(&status),
                ),
                None => (
                    Error::timed_out(&conn.addr, policy.timeout.unwrap_or_default()),
                    true,
                ),
            };
            let earlier = maybe_applied;
            maybe_applied |= err.may_have_taken_effect();
            let Some(w) = err.warren() else {
                spent += started.elapsed();
                // A request that provably never left (`UNREACHABLE`) is safe to send again
                // whatever the call; one that may have been sent only if it is idempotent.
                let resend = policy.idempotent || err.effect() == Effect::NotApplied;
                if unreachable && resend && self.worth_retrying(spent, budget) {
                    tracing::debug!(%err, "call failed; retrying");
                    tokio::time::sleep(pause).await;
                    spent += pause;
                    continue;
                }
                return Err(unknown_if_sent(earlier, err));
            };
            match w.code {
                ErrorCode::StaleEpoch if stale < MAX_STALE_EPOCH_RETRIES => {
                    stale += 1;
                    tracing::debug!(epoch = w.epoch, "stale epoch; adopting and retrying");
                    self.observe(Input::NewerEpoch(w.epoch));
                }
                ErrorCode::NotMaster if self.worth_retrying(spent, budget) => {
                    if let Err(e) = self.redirect(&conn, &w.master).await {
                        tracing::debug!(%e, "no master found yet");
                        tokio::time::sleep(pause).await;
                    }
                    spent += started.elapsed();
                }
                ErrorCode::FailoverInProgress if spent < failover_budget => {
                    tokio::time::sleep(pause).await;
                    spent += started.elapsed();
                }
                // A proxy found no master within its patience and did not send the call
                // (safe to send again, whatever the call): as for a failover under way.
                ErrorCode::Unreachable if spent < failover_budget => {
                    tracing::debug!(%err, "the proxy could not reach the cell; retrying");
                    tokio::time::sleep(pause).await;
                    spent += started.elapsed();
                }
                // A proxy lost an idempotent call after sending it: as for a master not
                // reached. A call that is not idempotent fails (it may have taken effect).
                ErrorCode::OutcomeUnknown
                    if policy.idempotent
                        && self.worth_retrying(spent + started.elapsed(), budget) =>
                {
                    tracing::debug!(%err, "the proxy lost the call; retrying");
                    tokio::time::sleep(pause).await;
                    spent += started.elapsed();
                }
                ErrorCode::SessionExpired => {
                    self.observe(Input::ExpiredByMaster);
                    return Err(unknown_if_sent(earlier, err));
                }
                _ => return Err(unknown_if_sent(earlier, err)),
            }
        }
    }

    /// Whether a call that could not reach the master should try again after `spent`:
    /// within its budget, and beyond it for as long as the local lease runs — once the
    /// lease ends the session is in jeopardy and the call waits at the gate instead of
    /// failing.
    fn worth_retrying(&self, spent: Duration, budget: Duration) -> bool {
        if spent < budget {
            return true;
        }
        if spent >= budget + LONGEST_LEASE {
            // Unreachable for longer than any lease while the session stayed safe: this
            // is not an outage the session will notice; give up.
            return false;
        }
        let core = lock(&self.core);
        core.state() != SessionState::Safe || !core.lease_remaining(Instant::now()).is_zero()
    }

    /// After `NOT_MASTER` from `failed`: connect to `master`, or look the master up among the
    /// endpoints (in the search order) when `master` is empty, and make it the session's
    /// connection.
    async fn redirect(&self, failed: &Conn, master: &str) -> Result<(), Error> {
        let timeout = self.options.rpc_timeout;
        // A replica naming itself is no lead (see `keep_alive`): look the master up.
        let conn = if !master.is_empty() && master != failed.addr {
            transport::dial_as(
                master,
                timeout,
                !self.options.via_proxies,
                self.options.tls.as_ref(),
            )
            .await?
        } else if self.options.via_proxies {
            transport::find_master(
                &self.search_order,
                timeout,
                false,
                self.options.tls.as_ref(),
            )
            .await?
            .0
        } else {
            let timeout = timeout.min(LOCATE_TIMEOUT);
            transport::find_cell_master_as(&self.search_order, timeout, self.options.tls.as_ref())
                .await?
                .0
        };
        tracing::debug!(from = %failed.addr, to = %conn.addr, "following the master");
        *lock(&self.conn) = conn;
        Ok(())
    }

    /// Remembers a new server handle, for recreation after a fail-over.
    /// Sends this session's `SLOT_MOVED` notices to `tx` (the partitioned session's router).
    pub(crate) fn tell_moved_to(&self, tx: mpsc::UnboundedSender<MovedHandle>) {
        *lock(&self.moved_to) = Some(tx);
    }

    pub(crate) fn register_handle(&self, h: &Arc<ServerHandle>) {
        let mut handles = lock(&self.open_handles);
        handles.retain(|w| w.strong_count() > 0);
        handles.push(Arc::downgrade(h));
    }

    /// Hands an event to every subscriber, forgetting subscribers that went away.
    fn deliver(&self, event: Event) {
        lock(&self.subscribers).retain(|tx| tx.send(event.clone()).is_ok());
    }
}

/// Executes the state machine's KeepAlive and master-search commands: one of them is
/// always outstanding, and the timer the machine asks for is always armed. Ends when the
/// machine says stop or the last [`Session`] clone is dropped.
async fn driver(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    first: Vec<Command>,
) {
    let mut queue: VecDeque<Command> = first.into();
    let mut outstanding: Option<BoxFuture<'static, Input>> = None;
    loop {
        while let Some(command) = queue.pop_front() {
            match command {
                Command::SendKeepAlive {
                    epoch,
                    ack_seq,
                    after,
                    deadline,
                    jeopardy,
                } => {
                    outstanding = Some(Box::pin(keepalive(
                        shared.clone(),
                        (epoch, ack_seq, jeopardy),
                        after,
                        deadline,
                    )))
                }
                Command::FindMaster { after } => {
                    outstanding = Some(Box::pin(find_master(shared.clone(), after)))
                }
                Command::RecreateHandles => {
                    tokio::spawn(recreate_handles(shared.clone()));
                }
                Command::Stop => return,
                // Executed by `Shared::apply`.
                _ => {}
            }
        }
        if *stop.borrow_and_update() {
            return;
        }
        let timer = lock(&shared.core).next_timer();
        let input = tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            Some(command) = commands.recv() => {
                queue.push_back(command);
                continue;
            }
            () = sleep_until(timer) => Input::Tick,
            input = next_of(&mut outstanding) => {
                outstanding = None;
                input
            }
        };
        queue.extend(shared.apply(input));
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The outstanding operation's result, or never if there is none.
async fn next_of(outstanding: &mut Option<BoxFuture<'static, Input>>) -> Input {
    match outstanding {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Sends one KeepAlive and turns its outcome into an input.
/// `(epoch, ack_seq, jeopardy)`: what the request carries besides the session.
async fn keepalive(
    shared: Arc<Shared>,
    (epoch, ack_seq, jeopardy): (u64, u64, bool),
    after: Duration,
    deadline: Duration,
) -> Input {
    if !after.is_zero() {
        tokio::time::sleep(after).await;
    }
    let conn = lock(&shared.conn).clone();
    let request = pb::KeepAliveRequest {
        ctx: Some(shared.ctx_at(epoch)),
        ack_seq,
        jeopardy,
    };
    let sent_at = Instant::now();
    let mut client = conn.client.clone();
    // Straight to a cell, a frozen or cut-off master holding this KeepAlive is noticed by
    // the connection's HTTP/2 PINGs (`transport::dial_with`): an unanswered PING fails the
    // connection and this call with it, and the session looks for the master among all the
    // replicas at once (docs/design.md §9, "A frozen or cut-off master"). Nothing per
    // session is sent to the cell meanwhile.
    let outcome = tokio::time::timeout(deadline, client.keep_alive(request)).await;
    // The simulation's history records every KeepAlive (docs/reliability.md,
    // "Deterministic simulation"); inert unless a simulation set an observer.
    #[cfg(feature = "sim")]
    crate::transport::sim::observe_keepalive(shared.id, sent_at, &outcome, &conn.addr);
    let status = match outcome {
        Ok(Ok(reply)) => {
            return Input::KeepAliveReply {
                sent_at,
                reply: reply.into_inner(),
            }
        }
        Ok(Err(status)) => status,
        Err(_) => {
            tracing::debug!(addr = %conn.addr, ?deadline, "KeepAlive got no reply in time");
            return Input::KeepAliveFailed(Failure::Transport);
        }
    };
    let err = Error::from_status(&status, &conn.addr);
    tracing::debug!(%err, "KeepAlive failed");
    let failure = match err.warren() {
        None => Failure::Transport,
        Some(w) => match w.code {
            ErrorCode::SessionExpired => Failure::Expired,
            ErrorCode::StaleEpoch => Failure::StaleEpoch(w.epoch),
            // A replica naming itself (an older server's standby, restarted while its own
            // earlier lease lived on) would send the session back to it: look instead.
            ErrorCode::NotMaster if w.master.is_empty() || w.master == conn.addr => {
                Failure::MasterUnknown
            }
            ErrorCode::NotMaster => {
                let timeout = shared.options.rpc_timeout.min(LOCATE_TIMEOUT);
                match transport::dial_as(
                    &w.master,
                    timeout,
                    !shared.options.via_proxies,
                    shared.options.tls.as_ref(),
                )
                .await
                {
                    Ok(conn) => {
                        *lock(&shared.conn) = conn;
                        Failure::Redirected
                    }
                    Err(_) => Failure::MasterUnknown,
                }
            }
            _ => Failure::Refused,
        },
    };
    Input::KeepAliveFailed(failure)
}

/// After a fail-over: uses each open handle once (`GetStat`), so the new master recreates
/// it now rather than on the application's next call — its events flow again and its
/// ephemeral node is claimed. Errors are left for the application's next call to see.
async fn recreate_handles(shared: Arc<Shared>) {
    let handles: Vec<Arc<ServerHandle>> = lock(&shared.open_handles)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let shared = &shared;
    let touch = |h: Arc<ServerHandle>| async move {
        if h.users() == 0 {
            return; // closed meanwhile
        }
        let request = pb::GetStatRequest {
            ctx: None,
            handle: h.token.clone(),
        };
        let result = shared.call(shared.policy(true), request).await;
        if let Err(e) = result {
            tracing::debug!(%e, "handle not recreated after the fail-over");
        }
    };
    futures::stream::iter(handles)
        .for_each_concurrent(RECREATE_CONCURRENCY, touch)
        .await;
}

/// One round of looking for the master. For a cell, every replica is asked at once
/// ([`transport::find_cell_master`]). Through proxies, `Locate` goes to each in turn from
/// the session's preferred proxy, so the session goes to the earliest live proxy in its
/// order (a proxy answers `Locate` as master).
async fn find_master(shared: Arc<Shared>, after: Duration) -> Input {
    if !after.is_zero() {
        tokio::time::sleep(after).await;
    }
    let endpoints = &shared.search_order;
    let timeout = shared.options.rpc_timeout.min(LOCATE_TIMEOUT);
    if !shared.options.via_proxies {
        // A cell's replicas, all asked at once: one that does not answer (frozen, cut
        // off) costs one timeout, and a master nobody can reach is reported.
        return match transport::find_cell_master_as(endpoints, timeout, shared.options.tls.as_ref())
            .await
        {
            Ok((conn, info)) => {
                tracing::debug!(master = %conn.addr, epoch = info.epoch, "found the master");
                *lock(&shared.conn) = conn;
                Input::MasterFound
            }
            Err(e) => {
                tracing::debug!(%e, "no master found");
                Input::MasterNotFound
            }
        };
    }
    // Through proxies: from the session's preferred proxy, in its order.
    for addr in endpoints {
        match transport::master_via_as(addr, timeout, false, shared.options.tls.as_ref()).await {
            Ok((conn, info)) => {
                tracing::debug!(via = %addr, master = %conn.addr, epoch = info.epoch, "found the master");
                *lock(&shared.conn) = conn;
                return Input::MasterFound;
            }
            Err(e) => tracing::debug!(%addr, %e, "endpoint did not lead to a master"),
        }
    }
    Input::MasterNotFound
}

/// A subscription to a session's events (see [`Session::events`]). Also a
/// [`futures::Stream`].
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl EventStream {
    pub(crate) fn from_rx(rx: mpsc::UnboundedReceiver<Event>) -> Self {
        EventStream { rx }
    }

    /// The next event; `None` once the session has ended and every event was received.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is already waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl futures::Stream for EventStream {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// The salt that spreads the `CreateSession` retries of many clients: the wall clock's
/// nanoseconds and the process id; under the deterministic simulation (feature `sim`,
/// with a salt seed set) the simulation's own sequence, so a run replays from its seed.
fn connect_salt() -> u64 {
    #[cfg(feature = "sim")]
    if let Some(salt) = crate::transport::sim::next_salt() {
        return salt;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
        ^ u64::from(std::process::id())
}
