//! Direct mode over a partitioned deployment (docs/design.md §11, docs/partitioning.md): the session
//! routes each call itself.
//!
//! A partitioned [`Session`] is made of plain sessions: a *home* session at the meta cell
//! (which serves the reserved subtree `/ls/<d>/warren`, and whose id, epoch and lease the
//! partitioned session reports), and one session per data cell it has used, created on
//! first use from the replica addresses in the partition map. A [`MapWatcher`] keeps the
//! map current; every call carries its epoch.
//!
//! - `open` routes by the map with the router's retry rules ([`Attempts`], the same rules a
//!   proxy follows): a node by its parent's slot; when that cell answers
//!   `WRONG_CELL{directory}` the path is a directory whose children live elsewhere, and the
//!   open goes to its child anchor there (first reading the map again if it disagrees with
//!   the owner the redirect named); any other `WRONG_CELL` means a map is stale: wait
//!   (≤ [`MAP_WAIT`]) for one at least as new as the cell's and route again — or, if it has
//!   not arrived (the meta cell out of reach), try the owner the cell named, which checks
//!   ownership against its own map — at most [`MAX_ATTEMPTS`](warren_router::MAX_ATTEMPTS) attempts
//!   in all.
//! - Calls on a [`Handle`](crate::Handle) go to the cell whose session opened it. When a
//!   reshard moved its node, that cell answers `WRONG_CELL` (without `directory`): the
//!   handle is re-opened at the owner through this session's session there
//!   ([`Router::reopen`], routed by path like `open`) and takes its place (see
//!   [`crate::handle`]; docs/client.md "After a reshard"). The old cell also tells its
//!   session at the hand-off (`SLOT_MOVED`): the router then re-opens every handle it
//!   tracks on that node at once, so a watcher's events flow from the new cell without
//!   waiting for a call.
//! - Events of every cell session are merged into each [`EventStream`]; the state is the
//!   worst of the cell sessions' states (one expired cell session makes the whole session
//!   expired: its locks and handles there are gone).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use warren_proto::{pb, WarrenError};
use warren_router::{Attempts, Dest, Next, PartitionMap, Route, Target, MAP_WAIT};

use crate::error::Error;
use crate::handle::{Handle, OpenInfo, Place};
use crate::map::{map_path, MapWatcher};
use crate::options::{ClientOptions, OpenOptions};
use crate::session::{lock, EventStream, MovedHandle, Session};
use crate::types::{CacheStats, Event, Sequencer, SessionState};

pub(crate) struct Router {
    /// Options for the per-cell sessions (endpoints replaced per cell).
    cell_options: ClientOptions,
    watcher: MapWatcher,
    home: Session,
    /// (Ordered maps: what iterates them — the session's state, closing, the cell
    /// sessions' list — runs in one order on every run, as the deterministic simulation
    /// replays need.)
    cells: Mutex<BTreeMap<String, Session>>,
    /// Cell sessions carried on at the cell a reshard moved their nodes to, by that cell and
    /// the session's id ([`Router::carry_on`]).
    carried: Mutex<BTreeMap<(String, crate::types::SessionId), Session>>,
    /// Held while a cell session is being made, so that one is made per cell.
    connecting: tokio::sync::Mutex<()>,
    /// One sender per [`EventStream`] of the partitioned session: each cell session made
    /// later is forwarded to them too.
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Event>>>,
    epoch_task: tokio::task::JoinHandle<()>,
    /// The open handles of this session, by their current token (several handles may
    /// share one server handle), so that a `SLOT_MOVED` notice re-opens them at once.
    tracked: Mutex<Tracked>,
    /// Where the cell sessions send their `SLOT_MOVED` notices
    /// ([`crate::handle::spawn_follower`]).
    moved_tx: mpsc::UnboundedSender<MovedHandle>,
    moved_task: tokio::task::JoinHandle<()>,
}

/// Token → the handles using it (weak: a handle dropped without `close` just goes).
#[derive(Default)]
struct Tracked {
    by_token: HashMap<Vec<u8>, Vec<Weak<Place>>>,
    /// Tracked since the last sweep of dropped handles.
    since_sweep: usize,
}

impl Drop for Router {
    fn drop(&mut self) {
        self.epoch_task.abort();
        self.moved_task.abort();
    }
}

/// Connects a partitioned session (`options.partitioned`): the home session at the meta
/// cell, and the first partition map.
pub(crate) async fn connect(options: ClientOptions) -> Result<Session, Error> {
    options.validate()?;
    let epoch = Arc::new(AtomicU64::new(0));
    let mut plain = options.clone();
    plain.partitioned = false;
    plain.map_epoch = Some(epoch.clone());
    let home = Session::connect_with(plain.clone()).await?;
    let watcher = MapWatcher::start_with(plain.clone());
    let patience = options.rpc_timeout;
    let Some(map) = watcher.wait_for(1, patience).await else {
        home.close().await.ok();
        return Err(Error::Warren(WarrenError::not_found(format!(
            "no partition map at {} in the meta cell ({}) after {patience:?}; run `warren ctl deployment init`",
            map_path(home.deployment()),
            options.endpoints.join(",")
        ))));
    };
    epoch.store(map.map_epoch(), Ordering::Release);
    let mut rx = watcher.subscribe();
    let epoch_task = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let e = rx.borrow().as_ref().map_or(0, |m| m.map_epoch());
            epoch.fetch_max(e, Ordering::AcqRel);
        }
    });
    let (moved_tx, moved_rx) = mpsc::unbounded_channel();
    let router = Arc::new_cyclic(|me| Router {
        cell_options: plain,
        watcher,
        home: home.clone(),
        cells: Mutex::new(BTreeMap::new()),
        carried: Mutex::new(BTreeMap::new()),
        connecting: tokio::sync::Mutex::new(()),
        subscribers: Mutex::new(Vec::new()),
        epoch_task,
        tracked: Mutex::new(Tracked::default()),
        moved_tx,
        moved_task: crate::handle::spawn_follower(me.clone(), moved_rx),
    });
    Ok(home.with_router(router))
}

fn forward(mut events: EventStream, tx: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
}

impl Router {
    pub(crate) fn map(&self) -> Arc<PartitionMap> {
        self.watcher
            .current()
            .expect("a partitioned session is made only once a map is loaded")
    }

    /// The session at `cell`, made on first use from the map's replica addresses.
    async fn session_for(&self, cell: &str, map: &PartitionMap) -> Result<Session, Error> {
        // A cell session that ended ends the whole session (its locks and handles there
        // are gone, and that is final): never replace it silently.
        let existing = |cells: &BTreeMap<String, Session>| -> Option<Result<Session, Error>> {
            let s = cells.get(cell)?;
            Some(if s.plain_state().is_live() {
                Ok(s.clone())
            } else {
                Err(Error::Warren(WarrenError::session_expired(format!(
                    "this session's part at cell {cell} has ended ({}); open a new session",
                    s.plain_state().as_str()
                ))))
            })
        };
        if let Some(s) = existing(&lock(&self.cells)) {
            return s;
        }
        let _connecting = self.connecting.lock().await;
        if let Some(s) = existing(&lock(&self.cells)) {
            return s;
        }
        let Some(addrs) = map.replicas(cell) else {
            return Err(Error::Warren(WarrenError::internal(format!(
                "partition map epoch {} routes to cell {cell}, which it gives no replicas",
                map.map_epoch()
            ))));
        };
        let mut options = self.cell_options.clone();
        options.endpoints = addrs.to_vec();
        let s = Session::connect_with(options).await?;
        self.join(&s);
        lock(&self.cells).insert(cell.to_string(), s.clone());
        Ok(s)
    }

    async fn session_at(&self, dest: &Dest, map: &PartitionMap) -> Result<Session, Error> {
        match dest {
            Dest::Meta => Ok(self.home.clone()),
            Dest::Cell(cell) => self.session_for(cell, map).await,
        }
    }

    /// The session for the next attempt of `plan` on `path`.
    async fn target(&self, path: &str, plan: &mut Attempts) -> Result<Session, Error> {
        let mut map = self.map();
        loop {
            // The meta cell's name is not needed: the home session is the meta cell.
            match plan
                .target(&map, path, None)
                .map_err(|e| Error::Warren(crate::path::route_error(e)))?
            {
                Target::Send(dest) => return self.session_at(&dest, &map).await,
                Target::RefreshMap { min_epoch } => {
                    if let Some(newer) = self.watcher.wait_for(min_epoch, MAP_WAIT).await {
                        map = newer;
                    }
                }
            }
        }
    }

    /// Runs `call` at the cell holding `path` (`anchor`: its child anchor), following
    /// directory redirects and waiting out stale maps (see the module docs). `call` gets
    /// the session and whether it is aimed at an anchor; the second value of the result is
    /// whether a redirect said the directory was created on the way.
    async fn routed<T, F, Fut>(&self, path: &str, call: F) -> Result<(T, bool), Error>
    where
        F: Fn(Session, bool) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut plan = Attempts::new(false);
        loop {
            let session = self.target(path, &mut plan).await?;
            plan.sending();
            let e = match call(session, plan.anchor()).await {
                Ok(v) => return Ok((v, plan.created(false))),
                Err(e) => e,
            };
            let Some(wrong) = e.warren().and_then(crate::path::wrong_cell) else {
                return Err(e);
            };
            match plan.answered(&wrong) {
                Next::GiveUp => return Err(e),
                // The next target() routes by route(path, true) and checks the owner.
                Next::Anchor { .. } => {}
                Next::Stale { min_epoch, .. } => {
                    let newer = self.watcher.wait_for(min_epoch, MAP_WAIT).await;
                    plan.waited(newer.map_or(0, |m| m.map_epoch()));
                }
            }
        }
    }

    pub(crate) async fn open(
        self: &Arc<Self>,
        path: &str,
        options: OpenOptions,
    ) -> Result<(Handle, OpenInfo), Error> {
        let ((handle, mut info), created) = self
            .routed(path, |session, anchor| {
                let options = if anchor {
                    options.clone().at_anchor()
                } else {
                    options.clone()
                };
                async move { session.plain_open(path.to_string(), options).await }
            })
            .await?;
        info.created |= created;
        Ok((handle.routed_by(self.clone()), info))
    }

    /// Opens `path` again with `options` (without create) at the cell that holds it now,
    /// after its node moved in a reshard: a cell answered `WRONG_CELL` of map epoch
    /// `min_epoch` to a call on a handle, or told that the node went to cell `owner`.
    /// Waits (≤ [`MAP_WAIT`]) for that map — for `owner`, up to the call timeout for a map
    /// that gives it the node, since the hand-off that sent the notice precedes the map —
    /// then routes by path as [`open`](Self::open) does, trying again for a while (up to
    /// the call timeout) while the new owner has not installed the slot yet. Returns the
    /// cell session and the cell's answer; the caller makes it the handle's (it is never
    /// shared with other opens).
    pub(crate) async fn reopen(
        &self,
        path: &str,
        options: &OpenOptions,
        min_epoch: u64,
        owner: Option<&str>,
    ) -> Result<(Session, pb::OpenResponse), Error> {
        let patience = self.cell_options.rpc_timeout;
        self.wait_for_move(path, min_epoch, owner).await;
        let deadline = Instant::now() + patience;
        loop {
            match self.reopen_once(path, options).await {
                Err(e)
                    if e.warren().and_then(crate::path::wrong_cell).is_some()
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// The cell session `from` carried on at the cell that holds `path` now (`anchor`: the
    /// directory's child anchor), after a reshard moved it there: the new cell took `from`
    /// on with the node (its locks and handles on it), so the same session id continues
    /// there ([`Session::continue_at`]) and what it held stays held. Waits for the map as
    /// [`reopen`](Self::reopen) does. One per cell and session, made on first use.
    pub(crate) async fn carry_on(
        &self,
        path: &str,
        anchor: bool,
        min_epoch: u64,
        owner: Option<&str>,
        from: &Session,
    ) -> Result<Session, Error> {
        let patience = self.cell_options.rpc_timeout;
        self.wait_for_move(path, min_epoch, owner).await;
        let map = self.map();
        let cell = match (owner, map.route(path, anchor)) {
            (Some(owner), _) => owner.to_string(),
            (None, Ok(Route::Cell { cell, .. })) => cell.to_string(),
            _ => {
                return Err(Error::Warren(WarrenError::internal(format!(
                    "{path} is in no data cell of map epoch {}",
                    map.map_epoch()
                ))))
            }
        };
        let key = (cell.clone(), from.id());
        // The session may already be there under this id: carried on there before, or
        // born there (a node moved back to the cell whose session opened it). It must be
        // that session, never a second one with the same id: two would share the id's
        // KeepAlives, and the invalidations one of them acknowledged would never reach
        // the other's cache (chaos finding 3, docs/reliability.md).
        let live = || {
            let born_here = lock(&self.cells)
                .get(&cell)
                .filter(|s| s.id() == from.id())
                .cloned();
            born_here
                .or_else(|| lock(&self.carried).get(&key).cloned())
                .filter(|s| s.plain_state().is_live())
        };
        if let Some(s) = live() {
            return Ok(s);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(s) = live() {
            return Ok(s);
        }
        let Some(addrs) = map.replicas(&cell) else {
            return Err(Error::Warren(WarrenError::internal(format!(
                "partition map epoch {} routes to cell {cell}, which it gives no replicas",
                map.map_epoch()
            ))));
        };
        let mut options = self.cell_options.clone();
        options.endpoints = addrs.to_vec();
        // The new cell knows the session once it has installed the slot, which it does when
        // the map reaches it: a little after this router may have seen it.
        let deadline = Instant::now() + patience;
        let s = loop {
            let attempt = Session::continue_at(
                options.clone(),
                from.id(),
                from.shared().secret.clone(),
                from.deployment().to_string(),
            )
            .await;
            match attempt {
                Err(e)
                    if e.code() == Some(warren_proto::ErrorCode::SessionExpired)
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other?,
            }
        };
        self.join(&s);
        tracing::debug!(%cell, session = %from.id(), "a cell session carried on at the cell a reshard moved its node to");
        lock(&self.carried).insert(key, s.clone());
        Ok(s)
    }

    /// Waits for the map a moved node's new owner serves it by: one giving it to `owner`
    /// (up to the call timeout: the hand-off that named it precedes the map), or one at
    /// least `min_epoch` (≤ [`MAP_WAIT`]).
    async fn wait_for_move(&self, path: &str, min_epoch: u64, owner: Option<&str>) {
        match owner {
            Some(owner) => {
                self.wait_for_owner(path, owner, self.cell_options.rpc_timeout)
                    .await
            }
            None => {
                self.watcher.wait_for(min_epoch, MAP_WAIT).await;
            }
        }
    }

    /// Makes cell session `s` part of this session: its `SLOT_MOVED` notices reach the
    /// follower, its events every event stream.
    fn join(&self, s: &Session) {
        s.shared().tell_moved_to(self.moved_tx.clone());
        let mut subscribers = lock(&self.subscribers);
        subscribers.retain(|tx| !tx.is_closed());
        for tx in subscribers.iter() {
            forward(s.plain_events(), tx.clone());
        }
    }

    /// Waits (at most `patience`) until the map in hand gives the node `path` (its entry
    /// or its child anchor) to `cell`.
    async fn wait_for_owner(&self, path: &str, cell: &str, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            let map = self.map();
            let owns = |anchor| matches!(map.route(path, anchor), Ok(Route::Cell { cell: c, .. }) if c == cell);
            let left = deadline.saturating_duration_since(Instant::now());
            if owns(false) || owns(true) || left.is_zero() {
                return;
            }
            self.watcher
                .wait_for(map.map_epoch() + 1, left.min(MAP_WAIT))
                .await;
        }
    }

    /// One routed re-open ([`reopen`](Self::reopen)).
    async fn reopen_once(
        &self,
        path: &str,
        options: &OpenOptions,
    ) -> Result<(Session, pb::OpenResponse), Error> {
        let options = options.clone().reopened();
        let (answer, _) = self
            .routed(path, |session, anchor| {
                let options = if anchor {
                    options.clone().at_anchor()
                } else {
                    options.clone()
                };
                async move {
                    let request =
                        options.to_request(path.to_string(), pb::SessionContext::default())?;
                    let shared = session.shared();
                    let reply = shared.call(shared.policy(true), request).await?;
                    Ok((session, reply))
                }
            })
            .await?;
        Ok(answer)
    }

    pub(crate) async fn check_sequencer(&self, sequencer: &Sequencer) -> Result<bool, Error> {
        let path = self.home.full_path(&sequencer.path)?;
        // A lock on a directory lives with its anchor: `CheckSequencer` at the entry's
        // cell answers WRONG_CELL{directory} like an open does.
        let (current, _) = self
            .routed(&path, |session, _| async move {
                session.plain_check_sequencer(sequencer).await
            })
            .await?;
        Ok(current)
    }

    /// Tracks handle `place` under its current token.
    pub(crate) fn track(&self, place: &Arc<Place>) {
        let token = place.server().token.clone();
        let mut t = lock(&self.tracked);
        t.by_token
            .entry(token)
            .or_default()
            .push(Arc::downgrade(place));
        t.since_sweep += 1;
        // Handles dropped without `close` leave dead entries: sweep them now and then,
        // so the table stays proportional to the open handles.
        if t.since_sweep > 1024 && t.since_sweep > t.by_token.len() {
            t.by_token.retain(|_, v| {
                v.retain(|w| w.strong_count() > 0);
                !v.is_empty()
            });
            t.since_sweep = 0;
        }
    }

    /// Stops tracking handle `place` (closed).
    pub(crate) fn untrack(&self, place: &Arc<Place>) {
        let token = place.server().token.clone();
        self.untrack_at(place, &token);
    }

    fn untrack_at(&self, place: &Arc<Place>, token: &[u8]) {
        let mut t = lock(&self.tracked);
        if let Some(v) = t.by_token.get_mut(token) {
            v.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(place)));
            if v.is_empty() {
                t.by_token.remove(token);
            }
        }
    }

    /// Handle `place` was re-opened: tracked under its new token from now on.
    pub(crate) fn retrack(&self, place: &Arc<Place>, old: &[u8], new: Vec<u8>) {
        self.untrack_at(place, old);
        let mut t = lock(&self.tracked);
        t.by_token
            .entry(new)
            .or_default()
            .push(Arc::downgrade(place));
    }

    /// The live handles using `token`.
    pub(crate) fn tracked_on(&self, token: &[u8]) -> Vec<Arc<Place>> {
        lock(&self.tracked)
            .by_token
            .get(token)
            .map(|v| v.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// [`Router::all`] with each one's cell (`meta` for the home session) and state.
    pub(crate) fn all_named(&self) -> Vec<(String, crate::types::SessionId, SessionState)> {
        let mut all = vec![("meta".to_string(), self.home.id(), self.home.plain_state())];
        all.extend(
            lock(&self.cells)
                .iter()
                .map(|(c, s)| (c.clone(), s.id(), s.plain_state())),
        );
        all.extend(
            lock(&self.carried)
                .iter()
                .map(|((c, _), s)| (c.clone(), s.id(), s.plain_state())),
        );
        all
    }

    /// The home session first, then every cell session.
    fn all(&self) -> Vec<Session> {
        let mut all = vec![self.home.clone()];
        all.extend(lock(&self.cells).values().cloned());
        all.extend(lock(&self.carried).values().cloned());
        all
    }

    /// The worst state of the cell sessions: closed or expired anywhere, then jeopardy.
    pub(crate) fn state(&self) -> SessionState {
        let rank = |s: SessionState| match s {
            SessionState::Safe => 0,
            SessionState::Jeopardy => 1,
            SessionState::Expired => 2,
            SessionState::Closed => 3,
        };
        self.all()
            .iter()
            .map(|s| s.plain_state())
            .max_by_key(|s| rank(*s))
            .unwrap_or(SessionState::Safe)
    }

    pub(crate) fn cache_stats(&self) -> CacheStats {
        let mut total = CacheStats::default();
        for s in self.all() {
            total.add(&s.plain_cache_stats());
        }
        total
    }

    pub(crate) fn events(&self) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subscribers = lock(&self.subscribers);
        for s in self.all() {
            forward(s.plain_events(), tx.clone());
        }
        subscribers.push(tx);
        EventStream::from_rx(rx)
    }

    pub(crate) async fn close(&self) -> Result<(), Error> {
        let mut first = Ok(());
        let all = self.all();
        // Cell sessions first, the home session (which reports the state) last.
        for s in all.iter().skip(1).chain(all.iter().take(1)) {
            if let Err(e) = s.plain_close().await {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        lock(&self.subscribers).clear();
        first
    }

    /// The current map's epoch (0 before the first).
    /// How long a follow of a moved node may wait for its new cell to catch up: the call
    /// timeout.
    pub(crate) fn patience(&self) -> Duration {
        self.cell_options.rpc_timeout
    }

    pub(crate) fn map_epoch(&self) -> u64 {
        self.watcher.map_epoch()
    }
}
