//! The async layer around [`Master`]: the gRPC service, the group-commit writer that makes
//! every change durable before anyone sees it, the ticker that drives time, and
//! [`run`], the one entry point (`run(listener, options, shutdown)`, like mini-redis).
//!
//! Ordering rule: every reply waits until the store has made durable all changes the
//! master had applied when the reply was produced. Changes are handed to the writer in
//! the master's critical section, so they commit in the order they were applied; the
//! writer batches whatever has queued up into one transaction (group commit).
//!
//! Partitioning (docs/partitioning.md): a data cell (`CellOptions.meta` given) watches the
//! partition map in the meta cell and hands each new map to the master; a call routed with a
//! newer map epoch waits (≤ 1 s) for it. The steps that cross cells run here, after the
//! master's part is durable: creating a child anchor, unlinking the entry of a deleted
//! anchor, reading ACL files held elsewhere (then running the call again), and a janitor
//! that finishes interrupted steps at start and every second.

use crate::admin;
use crate::core::{AnchorJob, CallNotes, CoreConfig, Master, Reply, WaiterId, Wake};
use crate::edge;
use crate::peers::Peers;
use crate::store::{Mutation, PendingUnlink, Store, StoreError};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use warren_client::map::MapWatcher;
use warren_proto::pb;
use warren_proto::pb::warren_server::Warren;
use warren_proto::WarrenError;
use warren_router::Route;

/// How a cell runs.
#[derive(Clone, Debug)]
pub struct CellOptions {
    pub core: CoreConfig,
    /// Address clients should be told to use (Locate); defaults to the listener's address.
    pub advertise: Option<String>,
    /// How often time-driven work runs (KeepAlive replies, expiry, lock timeouts).
    pub tick: Duration,
    /// This replica's id within its cell (etcd store; empty for the embedded store).
    pub replica: String,
    /// The meta cell's replicas: given, this is a data cell that serves only the slots the
    /// partition map (watched there) gives it (docs/partitioning.md).
    pub meta: Vec<String>,
}

impl CellOptions {
    pub fn new(core: CoreConfig) -> Self {
        CellOptions {
            core,
            advertise: None,
            tick: Duration::from_millis(50),
            replica: String::new(),
            meta: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Startup(String),
    #[error("serving gRPC failed: {0}")]
    Serve(String),
}

#[derive(Clone, Debug, Default)]
struct Durable {
    seq: u64,
    failed: Option<String>,
    /// The failure was etcd refusing a write because another replica is master.
    fenced: bool,
}

type WakeTx = oneshot::Sender<Result<(Wake, u64), Status>>;

pub(crate) struct State {
    pub(crate) master: Master,
    waiters: HashMap<WaiterId, WakeTx>,
    /// Sequence number of the last batch of mutations handed to the writer.
    applied: u64,
    pub(crate) closing: bool,
}

/// Shared by the service, the ticker and the admin endpoint.
pub(crate) struct Shared {
    state: Mutex<State>,
    writer: mpsc::UnboundedSender<(u64, Vec<Mutation>)>,
    durable: watch::Receiver<Durable>,
    /// A data cell's view of the partition map in the meta cell.
    watcher: Option<MapWatcher>,
    /// This master's internal sessions at other cells.
    peers: Peers,
    /// The meta cell's replicas (empty: this is the meta cell or an unpartitioned one).
    meta: Vec<String>,
}

/// The crash hook of the partitioning tests (`WARREN_FAULT`, read once per process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// Abort right after an entry marked anchor-pending is committed.
    AbortAfterEntry,
    /// Abort right after an anchor's removal and its pending unlink are committed.
    AbortAfterAnchorDelete,
}

fn fault() -> Fault {
    static FAULT: OnceLock<Fault> = OnceLock::new();
    *FAULT.get_or_init(|| match std::env::var("WARREN_FAULT").as_deref() {
        Ok("abort-after-entry") => Fault::AbortAfterEntry,
        Ok("abort-after-anchor-delete") => Fault::AbortAfterAnchorDelete,
        Ok("") | Err(_) => Fault::None,
        Ok(other) => {
            tracing::warn!(
                fault = other,
                "WARREN_FAULT is not abort-after-entry or abort-after-anchor-delete; ignored"
            );
            Fault::None
        }
    })
}

fn maybe_abort(at: Fault) {
    if at != Fault::None && fault() == at {
        tracing::error!(?at, "WARREN_FAULT: aborting the process");
        std::process::abort();
    }
}

/// How many times a call is run again after reading ACL files held by other cells.
const ACL_ROUNDS: usize = 3;
/// How long a `Delete` waits for the entry of a removed anchor to be unlinked before it
/// replies anyway (the unlink is durable; the janitor finishes it).
const UNLINK_WAIT: Duration = Duration::from_secs(4);

/// A snapshot for `/status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CellStatus {
    pub name: String,
    pub deployment: String,
    /// This replica's id (empty for a single-replica cell).
    pub replica: String,
    pub epoch: u64,
    /// `master` or `standby`.
    pub role: &'static str,
    /// The master's address, if known.
    pub master: String,
    pub store: &'static str,
    /// `ok`, or what is wrong with the store (etcd unreachable, …).
    pub store_health: String,
    /// The master accepts all operations (not recovering from a failover).
    pub serving: bool,
    pub sessions: usize,
    pub nodes: usize,
    pub handles: usize,
    pub held_locks: usize,
    /// Proxy sessions (counted in `sessions` too).
    pub proxy_sessions: usize,
    /// Client sub-sessions registered by proxies, orphans included (not in `sessions`).
    pub sub_sessions: usize,
    /// Sub-sessions whose proxy session ended, waiting to be claimed.
    pub orphans: usize,
    /// Epoch of the partition map in force (0: none).
    pub map_epoch: u64,
    /// Slots this cell owns in that map.
    pub slots: u32,
    /// False while a data cell waits for its first partition map.
    pub map_loaded: bool,
}

impl State {
    /// Hands the master's output on: mutations to the writer, wakes to their waiters.
    /// Returns the sequence number replies must wait for.
    fn flush(&mut self, writer: &mpsc::UnboundedSender<(u64, Vec<Mutation>)>) -> u64 {
        let out = self.master.take_output();
        if !out.mutations.is_empty() {
            self.applied += 1;
            // A send error means the writer stopped after a store failure; replies then
            // fail in `wait_durable`.
            let _ = writer.send((self.applied, out.mutations));
        }
        for (w, wake) in out.wakes {
            if let Some(tx) = self.waiters.remove(&w) {
                let _ = tx.send(Ok((wake, self.applied)));
            }
        }
        self.applied
    }
}

enum Outcome<T> {
    Done(T),
    Woken(Wake),
}

/// Cancels a parked operation whose caller went away.
struct CancelGuard<'a> {
    shared: &'a Shared,
    waiter: Option<WaiterId>,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.waiter.take() {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            st.waiters.remove(&w);
            st.master.cancel(w);
            st.flush(&self.shared.writer);
        }
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn wait_durable(&self, seq: u64) -> Result<(), Status> {
        let mut rx = self.durable.clone();
        let r = rx.wait_for(|d| d.seq >= seq || d.failed.is_some()).await;
        match r {
            Ok(d) if d.seq >= seq => Ok(()),
            Ok(d) if d.fenced => Err(WarrenError::new(
                warren_proto::ErrorCode::NotMaster,
                format!(
                    "this replica is no longer master; its write was refused: {}",
                    d.failed.clone().unwrap_or_default()
                ),
            )
            .into()),
            Ok(d) => Err(WarrenError::internal(format!(
                "the cell's store failed and the cell is stopping: {}",
                d.failed.clone().unwrap_or_default()
            ))
            .into()),
            Err(_) => Err(WarrenError::internal("the cell's store writer stopped").into()),
        }
    }

    /// Runs `f` on the master; replies only once its effects are durable.
    async fn run<T>(
        &self,
        f: impl FnOnce(&mut Master, Instant) -> Result<T, WarrenError>,
    ) -> Result<T, Status> {
        let (r, seq) = {
            let mut st = self.lock();
            if st.closing {
                return Err(WarrenError::not_master("").into());
            }
            let r = f(&mut st.master, Instant::now());
            (r, st.flush(&self.writer))
        };
        self.wait_durable(seq).await?;
        r.map_err(Status::from)
    }

    /// Like [`Shared::run`], for operations that may park.
    async fn run_parked<T>(
        &self,
        f: impl FnOnce(&mut Master, Instant) -> Result<Reply<T>, WarrenError>,
    ) -> Result<Outcome<T>, Status> {
        let (r, seq, rx) = {
            let mut st = self.lock();
            if st.closing {
                return Err(WarrenError::not_master("").into());
            }
            let r = f(&mut st.master, Instant::now());
            let mut rx = None;
            if let Ok(Reply::Wait(w)) = &r {
                let (tx, r) = oneshot::channel();
                st.waiters.insert(*w, tx);
                rx = Some((*w, r));
            }
            (r, st.flush(&self.writer), rx)
        };
        match r {
            Err(e) => {
                self.wait_durable(seq).await?;
                Err(e.into())
            }
            Ok(Reply::Done(t)) => {
                self.wait_durable(seq).await?;
                Ok(Outcome::Done(t))
            }
            Ok(Reply::Wait(_)) => {
                let (w, rx) = rx.expect("registered above");
                let mut guard = CancelGuard {
                    shared: self,
                    waiter: Some(w),
                };
                let woken = rx.await;
                guard.waiter = None;
                let (wake, seq) =
                    woken.map_err(|_| Status::from(WarrenError::internal("waiter dropped")))??;
                self.wait_durable(seq).await?;
                Ok(Outcome::Woken(wake))
            }
        }
    }

    /// A write that may wait for cache invalidations: retried each time they drain.
    async fn write<T>(
        &self,
        mut f: impl FnMut(&mut Master, Instant) -> Result<Reply<T>, WarrenError>,
    ) -> Result<T, Status> {
        loop {
            match self.run_parked(&mut f).await? {
                Outcome::Done(t) => return Ok(t),
                Outcome::Woken(Wake::Retry) => continue,
                Outcome::Woken(other) => {
                    return Err(WarrenError::internal(format!(
                        "unexpected wake for a write: {other:?}"
                    ))
                    .into())
                }
            }
        }
    }

    /// A call routed with a newer map than this cell's: re-read the map first (≤ 1 s).
    async fn catch_up(&self, map_epoch: u64) {
        let Some(w) = &self.watcher else { return };
        if map_epoch <= self.lock().master.map_epoch() {
            return;
        }
        if let Some(map) = w.wait_for(map_epoch, Duration::from_secs(1)).await {
            self.lock().master.set_map(map);
        }
    }

    /// [`Shared::write`] with the ACL files read so far supplied to the master; also
    /// returns what the master noted for the server.
    async fn write_noted<T>(
        &self,
        acls: &HashMap<String, Option<Vec<u8>>>,
        mut f: impl FnMut(&mut Master, Instant) -> Result<Reply<T>, WarrenError>,
    ) -> (Result<T, Status>, CallNotes) {
        let notes = Mutex::new(CallNotes::default());
        let r = self
            .write(|m, now| {
                m.supply_acls(acls.clone());
                let r = f(m, now);
                *notes.lock().unwrap_or_else(|p| p.into_inner()) = m.take_notes();
                m.supply_acls(HashMap::new());
                r
            })
            .await;
        (r, notes.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    /// The replicas of `cell` in the map in force (`meta`: the meta cell's).
    fn addrs_of(&self, cell: &str) -> Result<Vec<String>, WarrenError> {
        let st = self.lock();
        if let Some(a) = st.master.map().and_then(|m| m.replicas(cell)) {
            return Ok(a.to_vec());
        }
        if cell == "meta" && !self.meta.is_empty() {
            return Ok(self.meta.clone());
        }
        Err(WarrenError::internal(format!(
            "the partition map lists no replicas for cell {cell}"
        )))
    }

    fn map_epoch(&self) -> u64 {
        self.lock().master.map_epoch()
    }

    /// Reads the ACL files `files` (held by other cells) into `acls`.
    async fn read_acls(
        &self,
        files: &[String],
        acls: &mut HashMap<String, Option<Vec<u8>>>,
    ) -> Result<(), WarrenError> {
        for file in files {
            let owner = {
                let st = self.lock();
                let Some(map) = st.master.map() else {
                    return Err(WarrenError::internal("ACL file needed without a map"));
                };
                match map.route(file, false) {
                    Ok(Route::Cell { cell, .. }) => cell.to_string(),
                    Ok(Route::Meta) => "meta".to_string(),
                    Err(e) => return Err(WarrenError::invalid_argument(e.to_string())),
                }
            };
            let addrs = self.addrs_of(&owner)?;
            let data = self.peers.read_acl(&owner, &addrs, file).await?;
            acls.insert(file.clone(), data);
        }
        Ok(())
    }

    /// Step 2 of creating a directory split over two cells: the child anchor at its
    /// owner, then the mark on the entry cleared (committed).
    async fn finish_anchor(&self, job: &AnchorJob) -> Result<(), WarrenError> {
        let epoch = self.map_epoch();
        if job.owner != self.lock().master.config().cell {
            let addrs = self.addrs_of(&job.owner)?;
            let peer = self.peers.session(&job.owner, &addrs).await?;
            let req = pb::OpenRequest {
                path: job.path.clone(),
                create: Some(pb::CreateSpec {
                    kind: pb::NodeKind::Directory as i32,
                    ephemeral: job.ephemeral,
                    acl: Some(edge::acl_out(&job.acl)),
                    instance: job.instance,
                    ..Default::default()
                }),
                target: pb::OpenTarget::Anchor as i32,
                ..Default::default()
            };
            let reply = peer.open(epoch, req).await?;
            peer.close(epoch, &reply.handle).await;
        }
        self.run(|m, _| {
            m.anchor_created(&job.path, job.instance);
            Ok(())
        })
        .await
        .map_err(|s| {
            WarrenError::from_status(&s).unwrap_or_else(|| WarrenError::internal(s.message()))
        })
    }

    /// Step 2 of deleting a directory split over two cells: its entry removed at the
    /// parent's cell (if still that instance), then the record dropped (committed).
    async fn finish_unlink(&self, u: &PendingUnlink) -> Result<(), WarrenError> {
        let (owner, epoch, me) = {
            let st = self.lock();
            let Some(map) = st.master.map() else {
                return Err(WarrenError::internal("no partition map to find the entry"));
            };
            let owner = match map.route(&u.path, false) {
                Ok(Route::Cell { cell, .. }) => cell.to_string(),
                Ok(Route::Meta) => "meta".to_string(),
                Err(e) => return Err(WarrenError::invalid_argument(e.to_string())),
            };
            (owner, map.map_epoch(), st.master.config().cell.clone())
        };
        let done = |s: Status| {
            WarrenError::from_status(&s).unwrap_or_else(|| WarrenError::internal(s.message()))
        };
        if owner == me {
            return self
                .run(|m, _| {
                    m.unlink_local(u);
                    Ok(())
                })
                .await
                .map_err(done);
        }
        let addrs = self.addrs_of(&owner)?;
        let peer = self.peers.session(&owner, &addrs).await?;
        let req = pb::OpenRequest {
            path: u.path.clone(),
            intent: crate::core::intent::WRITE,
            target: pb::OpenTarget::Entry as i32,
            ..Default::default()
        };
        match peer.open(epoch, req).await {
            Ok(reply) => {
                let same = reply
                    .stat
                    .as_ref()
                    .is_some_and(|s| s.instance == u.instance);
                let r = if same {
                    peer.delete(epoch, &reply.handle).await
                } else {
                    Ok(())
                };
                peer.close(epoch, &reply.handle).await;
                match r {
                    Ok(()) => {}
                    // Already gone (a repeated delete).
                    Err(e)
                        if e.code == warren_proto::ErrorCode::NotFound
                            || e.code == warren_proto::ErrorCode::HandleInvalid => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) if e.code == warren_proto::ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
        self.run(|m, _| {
            m.unlink_done(u);
            Ok(())
        })
        .await
        .map_err(done)
    }

    /// Finishes pending anchors and pending unlinks (at start and every second).
    async fn janitor_pass(&self) {
        let (anchors, unlinks) = {
            let st = self.lock();
            if st.master.map().is_none() {
                return;
            }
            (st.master.pending_anchors(), st.master.pending_unlinks())
        };
        for job in anchors {
            if let Err(e) = self.finish_anchor(&job).await {
                tracing::warn!(path = %job.path, owner = %job.owner, error = %e, "janitor: the child anchor could not be created yet");
            } else {
                tracing::info!(path = %job.path, owner = %job.owner, "janitor: child anchor created");
            }
        }
        for u in unlinks {
            if let Err(e) = self.finish_unlink(&u).await {
                tracing::warn!(path = %u.path, error = %e, "janitor: the entry of a deleted directory could not be unlinked yet");
            } else {
                tracing::info!(path = %u.path, "janitor: entry of a deleted directory unlinked");
            }
        }
    }

    fn tick(&self) {
        let mut st = self.lock();
        st.master.tick(Instant::now());
        st.flush(&self.writer);
        let s = st.master.status();
        metrics::gauge!("warren_cell_sessions").set(s.sessions as f64);
        metrics::gauge!("warren_cell_proxy_sessions").set(s.proxy_sessions as f64);
        metrics::gauge!("warren_cell_sub_sessions").set(s.sub_sessions as f64);
        metrics::gauge!("warren_cell_orphan_sessions").set(s.orphans as f64);
        metrics::gauge!("warren_cell_nodes").set(s.nodes as f64);
        metrics::gauge!("warren_cell_epoch").set(s.epoch as f64);
        metrics::gauge!("warren_cell_map_epoch").set(st.master.map_epoch() as f64);
    }

    /// Fails every parked operation so graceful shutdown does not wait on long-polls.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closing = true;
        for (_, tx) in st.waiters.drain() {
            let _ = tx.send(Err(WarrenError::not_master("").into()));
        }
    }
}

/// This replica's part in its cell right now.
pub(crate) enum Role {
    /// Not (yet, or no longer) master: answers `Locate` and `NOT_MASTER{master}`.
    Standby {
        master: String,
        epoch: u64,
    },
    Master(Arc<Shared>),
}

/// One replica of a cell: what the gRPC service and the admin endpoint see. Its role
/// changes as it wins or loses mastership; the service is up from the start, so `Locate`
/// is answered before anything else (SPEC §5 step 2).
pub(crate) struct Node {
    role: std::sync::RwLock<Role>,
    pub(crate) cell: String,
    pub(crate) deployment: String,
    pub(crate) advertise: String,
    pub(crate) replica: String,
    pub(crate) store_kind: &'static str,
    /// Last known health of the store backend (etcd), for `/status`.
    pub(crate) store_health: std::sync::RwLock<String>,
}

impl Node {
    pub(crate) fn new(
        opts: &CellOptions,
        advertise: String,
        store_kind: &'static str,
    ) -> Arc<Node> {
        Arc::new(Node {
            role: std::sync::RwLock::new(Role::Standby {
                master: String::new(),
                epoch: 0,
            }),
            cell: opts.core.cell.clone(),
            deployment: opts.core.deployment.clone(),
            advertise,
            replica: opts.replica.clone(),
            store_kind,
            store_health: std::sync::RwLock::new("ok".into()),
        })
    }

    pub(crate) fn set_role(&self, r: Role) {
        let old = std::mem::replace(
            &mut *self.role.write().unwrap_or_else(|p| p.into_inner()),
            r,
        );
        if let Role::Master(shared) = old {
            shared.close();
        }
    }

    /// The current master term, or `NOT_MASTER` naming the master if known.
    pub(crate) fn master(&self) -> Result<Arc<Shared>, Status> {
        match &*self.role.read().unwrap_or_else(|p| p.into_inner()) {
            Role::Master(s) => Ok(s.clone()),
            Role::Standby { master, .. } => Err(WarrenError::not_master(master.clone()).into()),
        }
    }

    fn locate(&self) -> pb::LocateResponse {
        let mut r = pb::LocateResponse {
            cell: self.cell.clone(),
            deployment: self.deployment.clone(),
            role: "standby".into(),
            replica: self.replica.clone(),
            store_health: self
                .store_health
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            ..Default::default()
        };
        match &*self.role.read().unwrap_or_else(|p| p.into_inner()) {
            Role::Master(shared) => {
                let st = shared.lock();
                r.master = self.advertise.clone();
                r.epoch = st.master.epoch();
                r.is_master = true;
                r.role = "master".into();
                r.serving = !st.closing && !st.master.recovering();
                r.map_epoch = st.master.map_epoch();
            }
            Role::Standby { master, epoch } => {
                r.master = master.clone();
                r.epoch = *epoch;
            }
        }
        r
    }

    pub(crate) fn status(&self) -> CellStatus {
        let health = self
            .store_health
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut st = CellStatus {
            name: self.cell.clone(),
            deployment: self.deployment.clone(),
            replica: self.replica.clone(),
            epoch: 0,
            role: "standby",
            master: String::new(),
            store: self.store_kind,
            store_health: health,
            sessions: 0,
            nodes: 0,
            handles: 0,
            held_locks: 0,
            proxy_sessions: 0,
            sub_sessions: 0,
            orphans: 0,
            serving: false,
            map_epoch: 0,
            slots: 0,
            map_loaded: false,
        };
        match &*self.role.read().unwrap_or_else(|p| p.into_inner()) {
            Role::Master(shared) => {
                let g = shared.lock();
                let s = g.master.status();
                st.role = "master";
                st.master = self.advertise.clone();
                st.epoch = s.epoch;
                st.sessions = s.sessions;
                st.nodes = s.nodes;
                st.handles = s.handles;
                st.held_locks = s.held_locks;
                st.proxy_sessions = s.proxy_sessions;
                st.sub_sessions = s.sub_sessions;
                st.orphans = s.orphans;
                st.serving = !g.closing && !g.master.recovering();
                st.map_epoch = s.map_epoch;
                st.slots = s.slots;
                st.map_loaded = s.map_loaded;
            }
            Role::Standby { master, epoch } => {
                st.master = master.clone();
                st.epoch = *epoch;
            }
        }
        st
    }

    pub(crate) fn is_master(&self) -> bool {
        matches!(
            &*self.role.read().unwrap_or_else(|p| p.into_inner()),
            Role::Master(_)
        )
    }
}

/// What [`run`] hands back once the cell is serving (through `on_ready`).
#[derive(Clone)]
pub struct CellHandle {
    node: Arc<Node>,
}

impl CellHandle {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        CellHandle { node }
    }

    pub fn status(&self) -> CellStatus {
        self.node.status()
    }
}

/// One master term: the master recovered from `store`, its group-commit writer and its
/// ticker. Ends when the store fails (or fences it off) or when it is closed.
pub(crate) struct Term {
    pub(crate) shared: Arc<Shared>,
    writer: tokio::task::JoinHandle<()>,
    ticker: tokio::task::JoinHandle<()>,
    /// Hands each new partition map to the master (data cells).
    map_feed: Option<tokio::task::JoinHandle<()>>,
    janitor: tokio::task::JoinHandle<()>,
}

impl Term {
    /// Runs the new-master procedure's first steps: load, bump the epoch durably, rebuild.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        opts: &CellOptions,
    ) -> Result<Term, CellError> {
        let snapshot = store.load().await?;
        let seed: u64 = rand::random();
        let mut core = opts.core.clone();
        core.meta = opts.meta.clone();
        let mut master = Master::recover(core, snapshot, Instant::now(), seed)
            .map_err(|e| CellError::Startup(e.message))?;
        // The new epoch (and a fresh store's root) must be durable before anything is served.
        let boot = master.take_output();
        store.commit(boot.mutations).await?;
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let (durable_tx, durable_rx) = watch::channel(Durable::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                master,
                waiters: HashMap::new(),
                applied: 0,
                closing: false,
            }),
            writer: writer_tx,
            durable: durable_rx,
            watcher: (!opts.meta.is_empty())
                .then(|| MapWatcher::start(opts.meta.clone(), crate::core::CELL_PRINCIPAL)),
            peers: Peers::default(),
            meta: opts.meta.clone(),
        });
        let writer = tokio::spawn(write_loop(store.clone(), writer_rx, durable_tx));
        let ticker = {
            let shared = shared.clone();
            let period = opts.tick;
            tokio::spawn(async move {
                let mut iv = tokio::time::interval(period);
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    iv.tick().await;
                    shared.tick();
                }
            })
        };
        let map_feed = shared.watcher.as_ref().map(|w| {
            let mut rx = w.subscribe();
            let weak = Arc::downgrade(&shared);
            tokio::spawn(async move {
                loop {
                    let map = rx.borrow_and_update().clone();
                    if let (Some(map), Some(shared)) = (map, weak.upgrade()) {
                        shared.lock().master.set_map(map);
                    }
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            })
        });
        let janitor = tokio::spawn(janitor_loop(Arc::downgrade(&shared)));
        metrics::counter!("warren_cell_failovers_total").increment(1);
        metrics::gauge!("warren_cell_epoch").set(shared.lock().master.status().epoch as f64);
        Ok(Term {
            shared,
            writer,
            ticker,
            map_feed,
            janitor,
        })
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.shared.lock().master.epoch()
    }

    /// Resolves with the store's error once a commit fails (the term is then over).
    pub(crate) async fn failed(&self) -> String {
        let mut rx = self.shared.durable.clone();
        let r = match rx.wait_for(|d| d.failed.is_some()).await {
            Ok(d) => d.failed.clone().unwrap_or_default(),
            Err(_) => "the store writer stopped".into(),
        };
        r
    }

    /// Closes our sessions at the meta cell and the other cells, so that none of them
    /// waits for these sessions' leases after a restart (SPEC §5 step 6). Called at a
    /// graceful stop while this cell still serves — cells of one deployment stopping
    /// together each close theirs before any stops answering — and again (a no-op by
    /// then) when the term ends.
    pub(crate) async fn close_sessions(&self) {
        self.janitor.abort();
        let closing = async {
            if let Some(w) = &self.shared.watcher {
                w.close().await;
            }
        };
        tokio::join!(closing, self.shared.peers.close_all());
    }

    /// Ends the term: parked calls fail, time stops, queued writes finish (or fail).
    pub(crate) async fn end(self) {
        self.shared.close();
        self.ticker.abort();
        self.janitor.abort();
        if let Some(t) = &self.map_feed {
            t.abort();
        }
        self.close_sessions().await;
        drop(self.shared);
        // The writer ends once every holder of the term is gone (in-flight calls finish
        // quickly: parked ones were just failed). Bounded, so a stuck store cannot hang
        // shutdown.
        let mut writer = self.writer;
        if tokio::time::timeout(Duration::from_secs(5), &mut writer)
            .await
            .is_err()
        {
            tracing::warn!(
                "store writer did not finish within 5 s of the term's end; abandoning it"
            );
            writer.abort();
        }
    }
}

/// The janitor of one term: finishes pending anchors and unlinks at start and every second.
async fn janitor_loop(shared: Weak<Shared>) {
    let mut iv = tokio::time::interval(Duration::from_secs(1));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        iv.tick().await;
        let Some(s) = shared.upgrade() else { return };
        if s.lock().closing {
            return;
        }
        s.janitor_pass().await;
    }
}

/// Serves the gRPC service for `node` on `listener` until `stop` resolves.
pub(crate) async fn serve_grpc(
    listener: TcpListener,
    node: Arc<Node>,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), CellError> {
    warren_server::grpc::serve(listener, Service { node }, stop)
        .await
        .map_err(|e| CellError::Serve(e.to_string()))
}

/// What every replica runs whatever its role: the gRPC service and the admin endpoint,
/// up from the start (so `Locate` is answered before anything else).
pub(crate) struct Front {
    pub(crate) node: Arc<Node>,
    admin: Option<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
    grpc: tokio::task::JoinHandle<Result<(), CellError>>,
}

impl Front {
    pub(crate) fn start(
        listener: TcpListener,
        admin_listener: Option<TcpListener>,
        opts: &CellOptions,
        store_kind: &'static str,
    ) -> Result<Front, CellError> {
        let local = listener
            .local_addr()
            .map_err(|e| CellError::Startup(e.to_string()))?;
        let advertise = opts.advertise.clone().unwrap_or_else(|| local.to_string());
        let node = Node::new(opts, advertise, store_kind);
        let admin = admin_listener.map(|l| {
            // Install the recorder now, before the first term counts anything.
            admin::prometheus();
            tokio::spawn(admin::serve(l, node.clone()))
        });
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let grpc = tokio::spawn(serve_grpc(listener, node.clone(), async move {
            let _ = stop_rx.await;
        }));
        Ok(Front {
            node,
            admin,
            stop,
            grpc,
        })
    }

    /// Stops serving (gracefully: parked calls were already failed by the role change).
    pub(crate) async fn stop(self) -> Result<(), CellError> {
        self.node.set_role(Role::Standby {
            master: String::new(),
            epoch: 0,
        });
        let _ = self.stop.send(());
        let served = self
            .grpc
            .await
            .map_err(|e| CellError::Serve(e.to_string()))?;
        if let Some(a) = self.admin {
            a.abort();
        }
        served
    }
}

/// Starts a single-replica cell on `listener` with `store` (the embedded store: a restart
/// of the process is a failover). Returns when `shutdown` completes (after a graceful
/// stop) or when the store fails. `on_ready` is called once the master has recovered its
/// state and is serving.
pub async fn run(
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    store: Arc<dyn Store>,
    opts: CellOptions,
    on_ready: impl FnOnce(CellHandle) + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CellError> {
    let front = Front::start(listener, admin_listener, &opts, store.kind())?;
    let node = front.node.clone();
    let term = match Term::start(store.clone(), &opts).await {
        Ok(t) => t,
        Err(e) => {
            let _ = front.stop().await;
            return Err(e);
        }
    };
    tracing::info!(cell = %opts.core.cell, epoch = term.epoch(), advertise = %node.advertise, store = store.kind(), "cell master serving");
    node.set_role(Role::Master(term.shared.clone()));
    on_ready(CellHandle { node: node.clone() });
    let failure = tokio::select! {
        _ = shutdown => None,
        f = term.failed() => Some(f),
    };
    if failure.is_none() {
        term.close_sessions().await;
    }
    node.set_role(Role::Standby {
        master: String::new(),
        epoch: term.epoch(),
    });
    term.end().await;
    let served = front.stop().await;
    if let Some(f) = failure {
        tracing::error!(error = %f, "store failed; the cell stopped serving");
        return Err(CellError::Store(StoreError::Io(f)));
    }
    served
}

/// The group-commit writer: one store transaction for everything queued.
async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<(u64, Vec<Mutation>)>,
    durable: watch::Sender<Durable>,
) {
    while let Some((mut seq, mut batch)) = rx.recv().await {
        while let Ok((s, more)) = rx.try_recv() {
            seq = s;
            batch.extend(more);
        }
        let n = batch.len();
        let started = std::time::Instant::now();
        match store.commit(batch).await {
            Ok(()) => {
                metrics::histogram!("warren_store_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("warren_store_mutations_total").increment(n as u64);
                durable.send_modify(|d| d.seq = seq);
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; the cell stops serving");
                let fenced = matches!(e, StoreError::Fenced(_));
                durable.send_modify(|d| {
                    d.failed = Some(e.to_string());
                    d.fenced = fenced;
                });
                return;
            }
        }
    }
}

struct Service {
    node: Arc<Node>,
}

impl Service {
    /// The master, once it has a partition map at least as new as the one the caller
    /// routed with (waiting at most 1 s for it).
    async fn routed(&self, ctx: Option<&pb::SessionContext>) -> Result<Arc<Shared>, Status> {
        let shared = self.node.master()?;
        let want = ctx.map_or(0, |c| c.map_epoch);
        if want > 0 {
            shared.catch_up(want).await;
        }
        Ok(shared)
    }
}

fn observe<T>(method: &'static str, started: std::time::Instant, r: &Result<T, Status>) {
    let code = warren_server::metrics::observe_rpc("cell", method, started, r);
    if code == warren_proto::ErrorCode::WrongCell.as_str_name() {
        metrics::counter!("warren_cell_wrong_cell_total").increment(1);
    }
}

/// Counts an Acquire that waits for its lock: `warren_cell_lock_waiters` while it waits
/// (until it is granted, fails or the caller goes away), `warren_cell_lock_waits_total` once.
#[derive(Default)]
struct LockWait(bool);

impl LockWait {
    fn begin(&mut self) {
        if !self.0 {
            self.0 = true;
            metrics::counter!("warren_cell_lock_waits_total").increment(1);
            metrics::gauge!("warren_cell_lock_waiters").increment(1.0);
        }
    }
}

impl Drop for LockWait {
    fn drop(&mut self) {
        if self.0 {
            metrics::gauge!("warren_cell_lock_waiters").decrement(1.0);
        }
    }
}

macro_rules! rpc {
    ($name:literal, $body:expr) => {{
        let started = std::time::Instant::now();
        let r = $body.await;
        observe($name, started, &r);
        r.map(Response::new)
    }};
}

#[tonic::async_trait]
impl Warren for Service {
    async fn locate(
        &self,
        _req: Request<pb::LocateRequest>,
    ) -> Result<Response<pb::LocateResponse>, Status> {
        rpc!("Locate", async { Ok::<_, Status>(self.node.locate()) })
    }

    async fn create_session(
        &self,
        req: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let r = req.into_inner();
        rpc!("CreateSession", async {
            let c = self
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
            Ok::<_, Status>(pb::CreateSessionResponse {
                session_id: c.id.to_vec(),
                secret: c.secret.to_vec(),
                lease_ms: c.lease.as_millis() as u64,
                epoch: c.epoch,
                deployment: c.deployment,
            })
        })
    }

    async fn keep_alive(
        &self,
        req: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let r = req.into_inner();
        metrics::counter!("warren_keepalives_received_total").increment(1);
        rpc!("KeepAlive", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let reply = match self
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
            Ok::<_, Status>(pb::KeepAliveResponse {
                lease_ms: reply.lease.as_millis() as u64,
                events: reply.events.iter().map(edge::event).collect(),
                epoch: reply.epoch,
            })
        })
    }

    async fn close_session(
        &self,
        req: Request<pb::CloseSessionRequest>,
    ) -> Result<Response<pb::CloseSessionResponse>, Status> {
        let r = req.into_inner();
        rpc!("CloseSession", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            self.node
                .master()?
                .run(|m, now| m.close_session(&ctx, r.expired, now))
                .await?;
            Ok::<_, Status>(pb::CloseSessionResponse {})
        })
    }

    async fn open(
        &self,
        req: Request<pb::OpenRequest>,
    ) -> Result<Response<pb::OpenResponse>, Status> {
        let r = req.into_inner();
        rpc!("Open", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let args = edge::open_args(&r)?;
            let shared = self.routed(r.ctx.as_ref()).await?;
            let mut acls = HashMap::new();
            let (mut acl_rounds, mut anchor_rounds) = (0, 0);
            let ok = loop {
                let (res, notes) = shared
                    .write_noted(&acls, |m, now| m.open(&ctx, &args, now))
                    .await;
                if !notes.acl_needed.is_empty() && acl_rounds < ACL_ROUNDS {
                    acl_rounds += 1;
                    shared.read_acls(&notes.acl_needed, &mut acls).await?;
                    continue;
                }
                if let Some(job) = notes.anchor {
                    if job.created {
                        maybe_abort(Fault::AbortAfterEntry);
                    }
                    if anchor_rounds < 2 {
                        anchor_rounds += 1;
                        if let Err(e) = shared.finish_anchor(&job).await {
                            tracing::warn!(path = %job.path, owner = %job.owner, error = %e, "the child anchor could not be created; the janitor will retry");
                            return Err(WarrenError::new(
                                warren_proto::ErrorCode::FailoverInProgress,
                                format!(
                                    "{} is recorded, but its child anchor in cell {} could not be created yet ({}); this cell keeps trying; retry shortly",
                                    job.path, job.owner, e.message
                                ),
                            )
                            .into());
                        }
                        if job.created {
                            // This Open created the directory: the client opens the anchor
                            // next. (Running the Open again would find the entry, which an
                            // exclusive create must not mistake for someone else's.)
                            let mut e = WarrenError::directory_elsewhere(
                                shared.map_epoch(),
                                &job.owner,
                                &job.path,
                            );
                            e.created = true;
                            return Err(e.into());
                        }
                        continue;
                    }
                }
                break res?;
            };
            Ok::<_, Status>(pb::OpenResponse {
                handle: ok.handle,
                stat: Some(edge::stat(&ok.stat, &self.node.cell)),
                contents: ok.contents.unwrap_or_default(),
                cacheable: ok.cacheable,
                created: ok.created,
            })
        })
    }

    async fn close(
        &self,
        req: Request<pb::CloseRequest>,
    ) -> Result<Response<pb::CloseResponse>, Status> {
        let r = req.into_inner();
        rpc!("Close", async {
            // Close never fails: a malformed context is simply nothing to close.
            if let Ok(ctx) = edge::ctx(r.ctx.as_ref()) {
                self.routed(r.ctx.as_ref())
                    .await?
                    .run(|m, now| m.close(&ctx, &r.handle, now))
                    .await?;
            }
            Ok::<_, Status>(pb::CloseResponse {})
        })
    }

    async fn get_contents_and_stat(
        &self,
        req: Request<pb::GetContentsAndStatRequest>,
    ) -> Result<Response<pb::GetContentsAndStatResponse>, Status> {
        let r = req.into_inner();
        rpc!("GetContentsAndStat", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let (contents, stat, cacheable) = self
                .routed(r.ctx.as_ref())
                .await?
                .run(|m, now| m.get_contents(&ctx, &r.handle, now))
                .await?;
            Ok::<_, Status>(pb::GetContentsAndStatResponse {
                contents,
                stat: Some(edge::stat(&stat, &self.node.cell)),
                cacheable,
            })
        })
    }

    async fn get_stat(
        &self,
        req: Request<pb::GetStatRequest>,
    ) -> Result<Response<pb::GetStatResponse>, Status> {
        let r = req.into_inner();
        rpc!("GetStat", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let (stat, cacheable) = self
                .routed(r.ctx.as_ref())
                .await?
                .run(|m, now| m.get_stat(&ctx, &r.handle, now))
                .await?;
            Ok::<_, Status>(pb::GetStatResponse {
                stat: Some(edge::stat(&stat, &self.node.cell)),
                cacheable,
            })
        })
    }

    async fn read_dir(
        &self,
        req: Request<pb::ReadDirRequest>,
    ) -> Result<Response<pb::ReadDirResponse>, Status> {
        let r = req.into_inner();
        rpc!("ReadDir", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let (entries, stat, cacheable) = self
                .routed(r.ctx.as_ref())
                .await?
                .run(|m, now| m.read_dir(&ctx, &r.handle, now))
                .await?;
            Ok::<_, Status>(pb::ReadDirResponse {
                entries: entries
                    .iter()
                    .map(|e| pb::DirEntry {
                        name: e.name.clone(),
                        stat: Some(edge::stat(
                            &e.stat,
                            e.anchor_cell.as_deref().unwrap_or(&self.node.cell),
                        )),
                    })
                    .collect(),
                cacheable,
                stat: Some(edge::stat(&stat, &self.node.cell)),
            })
        })
    }

    async fn set_contents(
        &self,
        req: Request<pb::SetContentsRequest>,
    ) -> Result<Response<pb::SetContentsResponse>, Status> {
        let r = req.into_inner();
        rpc!("SetContents", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let stat = self
                .routed(r.ctx.as_ref())
                .await?
                .write(|m, now| {
                    m.set_contents(&ctx, &r.handle, &r.contents, r.if_content_generation, now)
                })
                .await?;
            Ok::<_, Status>(pb::SetContentsResponse {
                stat: Some(edge::stat(&stat, &self.node.cell)),
            })
        })
    }

    async fn set_acl(
        &self,
        req: Request<pb::SetAclRequest>,
    ) -> Result<Response<pb::SetAclResponse>, Status> {
        let r = req.into_inner();
        rpc!("SetAcl", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let acl = edge::acl_in(
                r.acl
                    .as_ref()
                    .ok_or_else(|| WarrenError::invalid_argument("SetAcl needs acl"))?,
            );
            let stat = self
                .routed(r.ctx.as_ref())
                .await?
                .write(|m, now| m.set_acl(&ctx, &r.handle, &acl, now))
                .await?;
            Ok::<_, Status>(pb::SetAclResponse {
                stat: Some(edge::stat(&stat, &self.node.cell)),
            })
        })
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = req.into_inner();
        rpc!("Delete", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let shared = self.routed(r.ctx.as_ref()).await?;
            let mut acls = HashMap::new();
            let mut acl_rounds = 0;
            let unlink = loop {
                let (res, notes) = shared
                    .write_noted(&acls, |m, now| m.delete(&ctx, &r.handle, now))
                    .await;
                if !notes.acl_needed.is_empty() && acl_rounds < ACL_ROUNDS {
                    acl_rounds += 1;
                    shared.read_acls(&notes.acl_needed, &mut acls).await?;
                    continue;
                }
                break res?;
            };
            if let Some(u) = unlink {
                // The anchor is gone and the unlink recorded (durably): the entry next.
                maybe_abort(Fault::AbortAfterAnchorDelete);
                match tokio::time::timeout(UNLINK_WAIT, shared.finish_unlink(&u)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(path = %u.path, error = %e, "the entry of the deleted directory could not be unlinked yet; the janitor will finish it")
                    }
                    Err(_) => {
                        tracing::warn!(path = %u.path, "unlinking the entry of the deleted directory is taking long; the janitor will finish it")
                    }
                }
            }
            Ok::<_, Status>(pb::DeleteResponse {})
        })
    }

    async fn acquire(
        &self,
        req: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        let r = req.into_inner();
        rpc!("Acquire", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let mode = edge::lock_mode(r.mode)?;
            let timeout = (r.timeout_ms > 0).then(|| Duration::from_millis(r.timeout_ms));
            let mut wait = LockWait::default();
            let seq = match self
                .routed(r.ctx.as_ref())
                .await?
                .run_parked(|m, now| {
                    let reply = m.acquire(&ctx, &r.handle, mode, timeout, now);
                    if matches!(reply, Ok(Reply::Wait(_))) {
                        wait.begin();
                    }
                    reply
                })
                .await?
            {
                Outcome::Done(s) => s,
                Outcome::Woken(Wake::Acquire(res)) => res?,
                Outcome::Woken(other) => {
                    return Err(WarrenError::internal(format!("unexpected wake {other:?}")).into())
                }
            };
            Ok::<_, Status>(pb::AcquireResponse {
                sequencer: Some(edge::sequencer_out(&seq)),
            })
        })
    }

    async fn try_acquire(
        &self,
        req: Request<pb::TryAcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        let r = req.into_inner();
        rpc!("TryAcquire", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let mode = edge::lock_mode(r.mode)?;
            let seq = self
                .routed(r.ctx.as_ref())
                .await?
                .run(|m, now| m.try_acquire(&ctx, &r.handle, mode, now))
                .await?;
            Ok::<_, Status>(pb::AcquireResponse {
                sequencer: Some(edge::sequencer_out(&seq)),
            })
        })
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let r = req.into_inner();
        rpc!("Release", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let was_held = self
                .routed(r.ctx.as_ref())
                .await?
                .run(|m, now| m.release(&ctx, &r.handle, now))
                .await?;
            Ok::<_, Status>(pb::ReleaseResponse { was_held })
        })
    }

    async fn get_sequencer(
        &self,
        req: Request<pb::GetSequencerRequest>,
    ) -> Result<Response<pb::GetSequencerResponse>, Status> {
        let r = req.into_inner();
        rpc!("GetSequencer", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let seq = self
                .routed(r.ctx.as_ref())
                .await?
                .run(|m, now| m.get_sequencer(&ctx, &r.handle, now))
                .await?;
            Ok::<_, Status>(pb::GetSequencerResponse {
                sequencer: Some(edge::sequencer_out(&seq)),
            })
        })
    }

    async fn set_sequencer(
        &self,
        req: Request<pb::SetSequencerRequest>,
    ) -> Result<Response<pb::SetSequencerResponse>, Status> {
        let r = req.into_inner();
        rpc!("SetSequencer", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let seq = edge::sequencer_in(r.sequencer.as_ref())?;
            self.routed(r.ctx.as_ref())
                .await?
                .run(|m, now| m.set_sequencer(&ctx, &r.handle, seq, now))
                .await?;
            Ok::<_, Status>(pb::SetSequencerResponse {})
        })
    }

    async fn check_sequencer(
        &self,
        req: Request<pb::CheckSequencerRequest>,
    ) -> Result<Response<pb::CheckSequencerResponse>, Status> {
        let r = req.into_inner();
        rpc!("CheckSequencer", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let seq = edge::sequencer_in(r.sequencer.as_ref())?;
            let current = self
                .routed(r.ctx.as_ref())
                .await?
                .run(|m, now| m.check_sequencer(&ctx, &seq, now))
                .await?;
            Ok::<_, Status>(pb::CheckSequencerResponse { current })
        })
    }

    async fn claim_session(
        &self,
        req: Request<pb::ClaimSessionRequest>,
    ) -> Result<Response<pb::ClaimSessionResponse>, Status> {
        let r = req.into_inner();
        rpc!("ClaimSession", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let client = edge::bytes16(&r.client_session, "client_session")?;
            let secret = edge::bytes16(&r.client_secret, "client_secret")?;
            let only_from = if r.only_from.is_empty() {
                None
            } else {
                Some(edge::bytes16(&r.only_from, "only_from")?)
            };
            let principal = self
                .routed(r.ctx.as_ref())
                .await?
                .run(|m, now| {
                    m.claim_session(&ctx, client, secret, &r.client_principal, only_from, now)
                })
                .await?;
            Ok::<_, Status>(pb::ClaimSessionResponse {
                known: principal.is_some(),
                principal: principal.unwrap_or_default(),
            })
        })
    }
}

impl CellOptions {
    /// Options for a cell process from its validated configuration.
    pub fn from_config(c: &warren_config::CellConfig) -> Self {
        let mut core = CoreConfig::new(&c.name, &c.deployment);
        core.lease = c.lease;
        core.proxy_lease = c.proxy_lease;
        core.claim_window = c.claim_window;
        core.reply_before_end = c.keepalive_reply_before_end;
        core.max_lock_delay = c.max_lock_delay;
        core.max_file_size = c.max_file_size;
        core.ephemeral_cleanup = c.ephemeral_cleanup;
        CellOptions {
            replica: c.replica.clone(),
            meta: c.meta.clone(),
            ..CellOptions::new(core)
        }
    }
}
