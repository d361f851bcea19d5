//! Sessions: connecting (find the master with `Locate`, `CreateSession`), the KeepAlive loop
//! that keeps exactly one KeepAlive outstanding and delivers events, the retry rules every
//! call shares (`STALE_EPOCH` → adopt and retry once, `NOT_MASTER` → follow), and event
//! subscriptions.
//!
//! The decisions live in the sans-IO [`core::SessionCore`]; this module only executes them.

pub(crate) mod core;

use self::core::{Failure, FailureStep, Phase, SessionCore};
use crate::error::Error;
use crate::handle::{Handle, OpenInfo};
use crate::options::{ClientOptions, OpenOptions};
use crate::path::expand_path;
use crate::transport::{self, Conn};
use crate::types::{required_stat, Event, LocateInfo, Sequencer, SessionId};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::transport::Channel;
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::ErrorCode;

/// How many `NOT_MASTER` redirects one call follows before failing.
const MAX_REDIRECTS: usize = 3;
/// Pause between retries of a call refused with `FAILOVER_IN_PROGRESS`.
const FAILOVER_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data
/// consistent, so a panic elsewhere must not make the session unusable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Warren session: a lease kept alive in the background, the handles opened in it, and
/// the events they deliver. Cheap to clone; all clones are the same session.
///
/// When the last clone (and the last [`Handle`], which holds one) is dropped, the KeepAlive
/// loop stops and the master lets the session expire after its lease. Call
/// [`close`](Session::close) to end it at once (releasing locks and ephemeral nodes).
#[derive(Clone)]
pub struct Session {
    owner: Arc<Owner>,
}

/// Stops the KeepAlive loop when the last `Session` clone goes.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
    }
}

/// State shared by the session's clones, its handles and its KeepAlive loop.
pub(crate) struct Shared {
    options: ClientOptions,
    id: SessionId,
    secret: Vec<u8>,
    deployment: String,
    core: Mutex<SessionCore>,
    /// The master we talk to; replaced on redirects.
    conn: Mutex<Conn>,
    /// One sender per [`EventStream`]; emptied when the session ends, which ends the streams.
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Event>>>,
    /// Set to stop the KeepAlive loop.
    stop: watch::Sender<bool>,
}

impl Session {
    /// Connects to the first of `endpoints` (`HOST:PORT`) that leads to a master, with
    /// default options.
    pub async fn connect<S: AsRef<str>>(endpoints: &[S]) -> Result<Session, Error> {
        Self::connect_with(ClientOptions::new(endpoints.iter().map(|e| e.as_ref()))).await
    }

    /// Connects with `options`: finds the master with `Locate`, creates the session and
    /// starts its KeepAlive loop.
    pub async fn connect_with(options: ClientOptions) -> Result<Session, Error> {
        options.validate()?;
        let timeout = options.rpc_timeout;
        let (mut conn, _) = transport::find_master(&options.endpoints, timeout).await?;
        let started = Instant::now();
        let mut redirects = 0;
        let (reply, sent_at) = loop {
            let request = pb::CreateSessionRequest {
                principal: options.principal.clone(),
            };
            let sent_at = Instant::now();
            let mut client = conn.client.clone();
            let status = match tokio::time::timeout(timeout, client.create_session(request)).await {
                Ok(Ok(reply)) => break (reply.into_inner(), sent_at),
                Ok(Err(status)) => status,
                Err(_) => return Err(Error::timed_out(&conn.addr, timeout)),
            };
            let err = Error::from_status(&status, &conn.addr);
            match err.warren().map(|w| (w.code, w.master.clone())) {
                Some((ErrorCode::NotMaster, master)) if redirects < MAX_REDIRECTS => {
                    redirects += 1;
                    conn = if master.is_empty() {
                        transport::find_master(&options.endpoints, timeout).await?.0
                    } else {
                        transport::dial(&master, timeout).await?
                    };
                }
                Some((ErrorCode::FailoverInProgress, _)) if started.elapsed() < timeout => {
                    tokio::time::sleep(FAILOVER_RETRY_PAUSE).await;
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
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&id.as_bytes()[..8]);
        let core = SessionCore::new(
            reply.epoch,
            Duration::from_millis(reply.lease_ms),
            sent_at,
            options.clock_drift,
            options.grace_period,
            u64::from_le_bytes(seed),
        );
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            options,
            id,
            secret: reply.secret,
            deployment: reply.deployment,
            core: Mutex::new(core),
            conn: Mutex::new(conn),
            subscribers: Mutex::new(Vec::new()),
            stop,
        });
        tokio::spawn(keepalive_loop(shared.clone(), stop_rx));
        tracing::debug!(session = %id, "session created");
        Ok(Session {
            owner: Arc::new(Owner { shared }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.owner.shared
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

    /// The address of the master the session talks to.
    pub fn master(&self) -> String {
        lock(&self.shared().conn).addr.clone()
    }

    /// Whether the session is still usable (neither expired nor closed).
    pub fn is_live(&self) -> bool {
        lock(&self.shared().core).phase() == Phase::Live
    }

    /// Subscribes to the session's events. Each subscriber gets every event delivered after
    /// it subscribed, exactly once, in order. The stream ends when the session does; after
    /// expiry its last item is [`Event::Expired`].
    pub fn events(&self) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        // Hold the core lock while subscribing so the session cannot end in between
        // (which would leave this subscriber's stream open forever).
        let core = lock(&self.shared().core);
        match core.phase() {
            Phase::Live => lock(&self.shared().subscribers).push(tx),
            Phase::Expired => {
                let _ = tx.send(Event::Expired);
            }
            Phase::Closed => {}
        }
        EventStream { rx }
    }

    /// Expands a short path (`/a/b`) to the full form for this session's deployment.
    pub fn full_path(&self, path: &str) -> Result<String, Error> {
        expand_path(self.deployment(), path)
    }

    /// Opens (and optionally creates) the node at `path` (full or short form).
    pub async fn open(
        &self,
        path: &str,
        options: OpenOptions,
    ) -> Result<(Handle, OpenInfo), Error> {
        let path = self.full_path(path)?;
        // Built once, so bad options fail before anything is sent; each attempt only
        // swaps in the current session context.
        let template = options.to_request(path.clone(), pb::SessionContext::default())?;
        let reply = self
            .shared()
            .call(Some(self.shared().options.rpc_timeout), |mut c, ctx| {
                let request = pb::OpenRequest {
                    ctx: Some(ctx),
                    ..template.clone()
                };
                async move { c.open(request).await }
            })
            .await?;
        if reply.handle.is_empty() {
            return Err(Error::Protocol("Open reply has no handle".into()));
        }
        let stat = required_stat(reply.stat, "Open")?;
        let info = OpenInfo {
            stat,
            contents: options.wants_contents().then_some(reply.contents),
            cacheable: reply.cacheable,
            created: reply.created,
        };
        Ok((Handle::new(self.clone(), reply.handle, path), info))
    }

    /// Whether `sequencer` still names the current holding of its lock.
    pub async fn check_sequencer(&self, sequencer: &Sequencer) -> Result<bool, Error> {
        let mut wire = pb::Sequencer::from(sequencer);
        wire.path = self.full_path(&sequencer.path)?;
        let reply = self
            .shared()
            .call(Some(self.shared().options.rpc_timeout), |mut c, ctx| {
                let request = pb::CheckSequencerRequest {
                    ctx: Some(ctx),
                    sequencer: Some(wire.clone()),
                };
                async move { c.check_sequencer(request).await }
            })
            .await?;
        Ok(reply.current)
    }

    /// Asks the master the session talks to `Locate`.
    pub async fn locate(&self) -> Result<LocateInfo, Error> {
        let conn = lock(&self.shared().conn).clone();
        transport::locate_at(&conn, self.shared().options.rpc_timeout).await
    }

    /// Ends the session: stops the KeepAlive loop and sends `CloseSession`, which releases
    /// its locks and deletes ephemeral nodes only it held open. Later calls fail with
    /// `SESSION_EXPIRED`; event streams end. Closing a session that has already ended
    /// does nothing.
    pub async fn close(&self) -> Result<(), Error> {
        let shared = self.shared();
        if !lock(&shared.core).close() {
            return Ok(());
        }
        shared.stop.send_replace(true);
        lock(&shared.subscribers).clear();
        let conn = lock(&shared.conn).clone();
        let request = pb::CloseSessionRequest {
            ctx: Some(shared.ctx()),
        };
        let timeout = shared.options.rpc_timeout;
        let mut client = conn.client.clone();
        match tokio::time::timeout(timeout, client.close_session(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(Error::from_status(&status, &conn.addr)),
            Err(_) => Err(Error::timed_out(&conn.addr, timeout)),
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id())
            .field("deployment", &self.deployment())
            .field("master", &self.master())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The context every call carries.
    pub(crate) fn ctx(&self) -> pb::SessionContext {
        pb::SessionContext {
            session_id: self.id.as_bytes().to_vec(),
            secret: self.secret.clone(),
            epoch: lock(&self.core).epoch(),
            map_epoch: 0,
        }
    }

    /// The default timeout of ordinary calls.
    pub(crate) fn rpc_timeout(&self) -> Duration {
        self.options.rpc_timeout
    }

    /// Fails with `SESSION_EXPIRED` unless the session is live.
    fn check_live(&self) -> Result<(), Error> {
        match lock(&self.core).phase() {
            Phase::Live => Ok(()),
            Phase::Expired => Err(Error::session_expired("the session has expired")),
            Phase::Closed => Err(Error::session_expired("the session was closed")),
        }
    }

    /// Runs one call with the shared retry rules: `STALE_EPOCH` adopts the epoch and retries
    /// once; `NOT_MASTER` follows the named master (or looks it up) up to
    /// [`MAX_REDIRECTS`] times; `FAILOVER_IN_PROGRESS` retries until the call's timeout;
    /// `SESSION_EXPIRED` ends the session. `make` builds and sends the request for the
    /// current master and context; `timeout` bounds each attempt (`None`: no bound).
    pub(crate) async fn call<R, F, Fut>(
        &self,
        timeout: Option<Duration>,
        mut make: F,
    ) -> Result<R, Error>
    where
        F: FnMut(WarrenClient<Channel>, pb::SessionContext) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let started = Instant::now();
        let mut stale_retried = false;
        let mut redirects = 0;
        // Fires when the session ends, so a call cannot outlive it (an `Acquire` that waits
        // forever fails with `SESSION_EXPIRED` once the session expires).
        let mut ended = self.stop.subscribe();
        loop {
            self.check_live()?;
            let conn = lock(&self.conn).clone();
            let attempt = make(conn.client.clone(), self.ctx());
            let bounded = async {
                match timeout {
                    Some(t) => tokio::time::timeout(t, attempt)
                        .await
                        .map_err(|_| Error::timed_out(&conn.addr, t)),
                    None => Ok(attempt.await),
                }
            };
            let result = tokio::select! {
                r = bounded => r?,
                _ = ended.wait_for(|stopped| *stopped) => {
                    self.check_live()?;
                    return Err(Error::session_expired("the session ended"));
                }
            };
            let status = match result {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) => status,
            };
            let err = Error::from_status(&status, &conn.addr);
            let Some(w) = err.warren() else {
                return Err(err);
            };
            match w.code {
                ErrorCode::StaleEpoch if !stale_retried => {
                    stale_retried = true;
                    tracing::debug!(epoch = w.epoch, "stale epoch; adopting and retrying");
                    lock(&self.core).adopt_epoch(w.epoch);
                }
                ErrorCode::NotMaster if redirects < MAX_REDIRECTS => {
                    redirects += 1;
                    self.redirect(&conn, &w.master).await?;
                }
                ErrorCode::FailoverInProgress
                    if started.elapsed() + FAILOVER_RETRY_PAUSE
                        < timeout.unwrap_or(self.options.rpc_timeout) =>
                {
                    tokio::time::sleep(FAILOVER_RETRY_PAUSE).await;
                }
                ErrorCode::SessionExpired => {
                    self.expire();
                    return Err(err);
                }
                _ => return Err(err),
            }
        }
    }

    /// After `NOT_MASTER` from `failed`: connect to `master`, or look the master up among the
    /// endpoints when `master` is empty, and make it the session's connection.
    async fn redirect(&self, failed: &Conn, master: &str) -> Result<(), Error> {
        let timeout = self.options.rpc_timeout;
        let conn = if master.is_empty() {
            transport::find_master(&self.options.endpoints, timeout)
                .await?
                .0
        } else {
            transport::dial(master, timeout).await?
        };
        tracing::debug!(from = %failed.addr, to = %conn.addr, "following the master");
        *lock(&self.conn) = conn;
        Ok(())
    }

    /// After a transport failure: if the endpoints now point at a different master, switch.
    async fn relocate(&self, failed: &Conn) {
        let timeout = self.options.rpc_timeout;
        if let Ok((conn, _)) = transport::find_master(&self.options.endpoints, timeout).await {
            if conn.addr != failed.addr {
                tracing::debug!(from = %failed.addr, to = %conn.addr, "master moved");
                *lock(&self.conn) = conn;
            }
        }
    }

    /// Hands events to every subscriber, forgetting subscribers that went away.
    fn deliver(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut subscribers = lock(&self.subscribers);
        subscribers.retain(|tx| events.iter().all(|e| tx.send(e.clone()).is_ok()));
    }

    /// Ends the session as expired: tells subscribers, ends their streams, stops the loop.
    fn expire(&self) {
        if !lock(&self.core).expire() {
            return;
        }
        tracing::info!(session = %self.id, "session expired");
        let subscribers = std::mem::take(&mut *lock(&self.subscribers));
        for tx in subscribers {
            let _ = tx.send(Event::Expired);
        }
        self.stop.send_replace(true);
    }
}

/// Keeps exactly one KeepAlive outstanding: sends the next as soon as the previous returns,
/// acknowledging every event received so far, until the session ends or is dropped.
async fn keepalive_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() || lock(&shared.core).phase() != Phase::Live {
            return;
        }
        let (ack_seq, deadline) = {
            let core = lock(&shared.core);
            (core.ack_seq(), core.keepalive_deadline())
        };
        let conn = lock(&shared.conn).clone();
        let request = pb::KeepAliveRequest {
            ctx: Some(shared.ctx()),
            ack_seq,
        };
        let sent_at = Instant::now();
        let mut client = conn.client.clone();
        let call = tokio::time::timeout(deadline, client.keep_alive(request));
        let result = tokio::select! {
            _ = stop.changed() => return,
            r = call => r,
        };
        let pause = match result {
            Ok(Ok(reply)) => {
                let reply = reply.into_inner();
                let outcome = lock(&shared.core).on_reply(sent_at, Instant::now(), &reply);
                // Issue 3's cache drops `outcome.invalidations` here, before the next
                // KeepAlive acknowledges them.
                shared.deliver(outcome.events);
                outcome.next_after
            }
            Ok(Err(status)) => {
                let err = Error::from_status(&status, &conn.addr);
                let failure = match err.warren() {
                    Some(w) if w.code == ErrorCode::SessionExpired => Failure::Expired,
                    Some(w) if w.code == ErrorCode::StaleEpoch => Failure::StaleEpoch(w.epoch),
                    Some(w) if w.code == ErrorCode::NotMaster => {
                        match shared.redirect(&conn, &w.master).await {
                            Ok(()) => Failure::Redirected,
                            Err(_) => Failure::Transport,
                        }
                    }
                    Some(_) => Failure::Refused,
                    None => {
                        shared.relocate(&conn).await;
                        Failure::Transport
                    }
                };
                tracing::debug!(%err, "KeepAlive failed");
                let step = lock(&shared.core).on_failure(Instant::now(), failure);
                match step {
                    FailureStep::RetryAfter(d) => d,
                    FailureStep::Expire => {
                        shared.expire();
                        return;
                    }
                }
            }
            Err(_) => {
                tracing::debug!(addr = %conn.addr, "KeepAlive deadline passed");
                shared.relocate(&conn).await;
                let step = lock(&shared.core).on_failure(Instant::now(), Failure::Transport);
                match step {
                    FailureStep::RetryAfter(d) => d,
                    FailureStep::Expire => {
                        shared.expire();
                        return;
                    }
                }
            }
        };
        if !pause.is_zero() {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// A subscription to a session's events (see [`Session::events`]). Also a
/// [`futures::Stream`].
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl EventStream {
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
