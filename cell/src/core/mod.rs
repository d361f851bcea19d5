//! The master's state machine: sessions, handles, the namespace, locks, events and
//! cache invalidation, as plain code with no sockets and no tokio tasks (sans-IO, like
//! openraft's engine).
//!
//! Every operation takes the current time and returns either a result or
//! [`Reply::Wait`] with a [`WaiterId`]; the changes it made to durable state and the
//! waiters it woke are collected in an [`Output`] that the async layer drains with
//! [`Master::take_output`]: it commits the mutations to the store, in order, and only
//! then delivers the replies. Time passes only through [`Master::tick`].

pub mod path;
pub mod token;

use crate::store::{
    AclNames, LockHolder, LockMode, MetaRecord, Mutation, NodeKind, NodeRecord, PendingAnchor,
    PendingUnlink, SessionId, SessionRecord, Snapshot,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use token::TokenKey;
use tokio::time::Instant;
use warren_proto::pb::HandleBody;
use warren_proto::{ErrorCode, WarrenError};
use warren_router::{PartitionMap, Route};

/// The principal cells use for their internal sessions at other cells: only it may create
/// child anchors (`Open` target `ANCHOR` with create) and open entries (target `ENTRY`).
pub const CELL_PRINCIPAL: &str = "warren:cell";

/// How long an ephemeral child anchor created for another cell's entry survives with no
/// handle open, so that the client whose `Open` created it can reach it and open it.
pub const EPHEMERAL_ANCHOR_GRACE: Duration = Duration::from_secs(10);

/// Settings the master logic needs (a slice of the cell's configuration).
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub cell: String,
    pub deployment: String,
    /// Lease granted to sessions (SPEC default 12 s).
    pub lease: Duration,
    /// Lease granted to proxy sessions (`CreateSession{proxy: true}`; default 20 s, at
    /// least `lease`): a proxy must collect its clients' acknowledgements within it.
    pub proxy_lease: Duration,
    /// How long the client sub-sessions of an ended proxy session keep their locks,
    /// handles and ephemeral opens, waiting for another proxy to claim them (default 60 s).
    pub claim_window: Duration,
    /// A held KeepAlive is answered this long before the lease ends (default 1 s).
    pub reply_before_end: Duration,
    /// Upper bound for a handle's lock-delay (≤ 60 s).
    pub max_lock_delay: Duration,
    /// Largest file contents accepted, in bytes (≤ 256 KiB).
    pub max_file_size: usize,
    /// After a failover, ephemeral nodes that no handle has reopened by then are deleted
    /// (SPEC §5 step 9; default 60 s).
    pub ephemeral_cleanup: Duration,
    /// The meta cell's replicas. Given, this is a data cell: its partition map comes from
    /// the meta cell ([`Master::set_map`]) and it serves nothing but session calls until
    /// the first map arrives. Empty: the meta cell, or the only cell of an unpartitioned
    /// deployment; its map is the file `/ls/<d>/warren/map` in its own namespace, if any.
    pub meta: Vec<String>,
}

impl CoreConfig {
    /// Defaults of SPEC §12 for a cell `cell` in deployment `deployment`.
    pub fn new(cell: &str, deployment: &str) -> Self {
        CoreConfig {
            cell: cell.to_string(),
            deployment: deployment.to_string(),
            lease: warren_config::defaults::LEASE,
            proxy_lease: warren_config::defaults::PROXY_LEASE,
            claim_window: warren_config::defaults::CLAIM_WINDOW,
            reply_before_end: warren_config::defaults::KEEPALIVE_REPLY_BEFORE_END,
            max_lock_delay: warren_config::defaults::LOCK_DELAY_LIMIT,
            max_file_size: warren_config::defaults::FILE_SIZE_LIMIT,
            ephemeral_cleanup: warren_config::defaults::EPHEMERAL_CLEANUP,
            meta: Vec::new(),
        }
    }
}

/// Identifies an operation that is waiting (a held KeepAlive, a waiting Acquire, a write
/// blocked on cache invalidation).
pub type WaiterId = u64;

/// A handle is named by the epoch that created it and its number in that epoch.
pub type HandleKey = (u64, u64);

/// Bits of `Open.intent`.
pub mod intent {
    pub const READ: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const CHANGE_ACL: u32 = 4;
    pub const ALL: u32 = 7;
}

/// Bits of `Open.events`.
pub mod mask {
    pub const CONTENTS_MODIFIED: u32 = 1;
    pub const CHILD_CHANGED: u32 = 2;
    pub const MASTER_FAILOVER: u32 = 4;
    pub const HANDLE_INVALID: u32 = 8;
    pub const LOCK_ACQUIRED: u32 = 16;
    pub const CONFLICTING_LOCK: u32 = 32;
    pub const ALL: u32 = 63;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    ContentsModified,
    ChildChanged,
    MasterFailover,
    HandleInvalid,
    LockAcquired,
    ConflictingLock,
    /// Drop any cached copy of `path`, then acknowledge.
    Invalidate,
    /// To a proxy session: the client session the event is tagged with was claimed by
    /// another proxy session.
    SessionClaimed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildChange {
    None,
    Added,
    Removed,
    Modified,
}

/// An event queued for a session, delivered in KeepAlive replies until acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub kind: EventKind,
    /// Token of the handle the event is for (empty for session-wide events).
    pub handle: Vec<u8>,
    pub path: String,
    pub child: String,
    pub change: ChildChange,
    /// On a proxy session's queue: the client sub-session the event is for (`None`: for
    /// the proxy session itself).
    pub client: Option<SessionId>,
}

/// What a node looks like to clients (SPEC §2 metadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatView {
    pub kind: NodeKind,
    pub instance: u64,
    pub content_generation: u64,
    pub lock_generation: u64,
    pub acl_generation: u64,
    pub checksum: u64,
    pub acl: AclNames,
    pub ephemeral: bool,
    pub child_count: u64,
    pub length: u64,
}

/// Names a lock at one moment: a sequencer is current while the lock is still held in
/// `mode` at `lock_generation` on node `instance`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencerView {
    pub path: String,
    pub mode: LockMode,
    pub instance: u64,
    pub lock_generation: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepAliveReply {
    /// Lease remaining, from now.
    pub lease: Duration,
    pub events: Vec<Event>,
    pub epoch: u64,
}

#[derive(Clone, Debug)]
pub struct SessionCreated {
    pub id: SessionId,
    pub secret: [u8; 16],
    pub lease: Duration,
    pub epoch: u64,
    pub deployment: String,
}

#[derive(Clone, Debug)]
pub struct CreateArgs {
    pub kind: NodeKind,
    pub ephemeral: bool,
    pub contents: Vec<u8>,
    /// `None`: inherit the parent's ACL names.
    pub acl: Option<AclNames>,
    pub exclusive: bool,
    /// Target `ANCHOR` only: the instance of the directory's entry, which the anchor takes.
    pub instance: u64,
}

/// Which part of a directory split over two cells an `Open` means (`OpenRequest.target`,
/// docs/partitioning.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// The node, routed by the slot of its parent; a directory whose child anchor is in
    /// another cell answers `WRONG_CELL{directory}`.
    #[default]
    Node,
    /// The child anchor of the directory, routed by its own slot.
    Anchor,
    /// The entry of the directory in its parent's cell, never redirected (cells only).
    Entry,
}

#[derive(Clone, Debug)]
pub struct OpenArgs {
    pub path: String,
    pub intent: u32,
    pub events: u32,
    pub lock_delay: Duration,
    pub create: Option<CreateArgs>,
    pub read: bool,
    pub target: Target,
}

/// A child anchor this cell must (still) have created in cell `owner` for the entry
/// `path` it holds: the server does it through its internal session there, then calls
/// [`Master::anchor_created`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorJob {
    pub path: String,
    pub instance: u64,
    pub acl: AclNames,
    pub ephemeral: bool,
    /// The cell owning the directory's own slot (this cell's own name if the map moved
    /// the slot here meanwhile: then there is nothing to create).
    pub owner: String,
    /// The `Open` that produced this job created the entry.
    pub created: bool,
}

/// What the server must do for the call the master just ran, besides replying (see
/// [`Master::take_notes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallNotes {
    /// An `Open` met (or created) an entry whose anchor is not confirmed yet: create it,
    /// then run the call again.
    pub anchor: Option<AnchorJob>,
    /// ACL files held by other cells that the call's checks need: read them there, then
    /// run the call again with them supplied ([`Master::supply_acls`]).
    pub acl_needed: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct OpenOk {
    pub handle: Vec<u8>,
    pub stat: StatView,
    pub contents: Option<Vec<u8>>,
    pub cacheable: bool,
    pub created: bool,
}

#[derive(Clone, Debug)]
pub struct DirEntryView {
    pub name: String,
    pub stat: StatView,
    /// A directory whose child anchor is in another cell: that cell (its `Stat.cell`).
    pub anchor_cell: Option<String>,
}

/// The session part of a request, already parsed at the edge.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub session: SessionId,
    pub secret: [u8; 16],
    pub epoch: u64,
    /// Set by a proxy on its proxy session: the call is made for this client session.
    pub client: Option<ClientCtx>,
}

/// The client part of a proxy's request (`SessionContext.client_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCtx {
    pub session: SessionId,
    pub secret: [u8; 16],
    pub principal: String,
    /// `SessionContext.proxy_dropped_copies`: on a write, the proxy holds no copy of the
    /// written file for anyone but the writer, so it need not be invalidated.
    pub proxy_dropped_copies: bool,
}

/// Either done now, or parked until a [`Wake`] for the waiter arrives.
#[derive(Debug)]
pub enum Reply<T> {
    Done(T),
    Wait(WaiterId),
}

/// Delivered to a parked operation.
#[derive(Debug)]
pub enum Wake {
    KeepAlive(Result<KeepAliveReply, WarrenError>),
    Acquire(Result<SequencerView, WarrenError>),
    /// The invalidations a write was waiting for are done: run the write again.
    Retry,
}

/// What the async layer must do after an operation: persist `mutations` (in order,
/// atomically), then deliver `wakes`.
#[derive(Debug, Default)]
pub struct Output {
    pub mutations: Vec<Mutation>,
    pub wakes: Vec<(WaiterId, Wake)>,
}

/// Counts for `/status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MasterStatus {
    pub cell: String,
    pub deployment: String,
    pub epoch: u64,
    pub sessions: usize,
    pub nodes: usize,
    pub handles: usize,
    pub held_locks: usize,
    /// Sessions created with `CreateSession{proxy: true}` (counted in `sessions` too).
    pub proxy_sessions: usize,
    /// Client sub-sessions registered by proxies, orphans included (not in `sessions`).
    pub sub_sessions: usize,
    /// Sub-sessions whose proxy session ended, waiting to be claimed.
    pub orphans: usize,
    /// Epoch of the partition map in force (0: none, an unpartitioned cell).
    pub map_epoch: u64,
    /// Slots this cell owns in that map.
    pub slots: u32,
    /// A data cell has a map; other cells always count as loaded.
    pub map_loaded: bool,
}

struct Node {
    rec: NodeRecord,
    contents: Vec<u8>,
    children: BTreeSet<String>,
    /// Open handles on this node (this instance).
    handles: BTreeSet<HandleKey>,
    lock_waiters: VecDeque<LockWaiter>,
    /// No new holder before this (lock-delay after a holder's session failed).
    delay_until: Option<Instant>,
}

#[derive(Clone, Debug)]
struct LockWaiter {
    id: WaiterId,
    session: SessionId,
    handle: HandleKey,
    mode: LockMode,
    deadline: Option<Instant>,
}

struct Session {
    rec: SessionRecord,
    lease_end: Instant,
    events: VecDeque<Event>,
    next_seq: u64,
    acked: u64,
    /// Highest seq ever delivered. While `acked < delivered_upto` the lease is not extended
    /// (rule (b) of SPEC §4: a session that never acknowledges expires within one lease).
    delivered_upto: u64,
    /// The outstanding KeepAlive.
    keepalive: Option<HeldKeepAlive>,
    handles: BTreeSet<HandleKey>,
    /// Paths this session may have cached.
    cached: HashSet<String>,
    /// Invalidations sent and not yet acknowledged: seq → path.
    pending_invalidations: BTreeMap<u64, String>,
    /// A proxy session: its live client sub-sessions.
    subs: BTreeSet<SessionId>,
    /// A sub-session whose proxy session ended: when it ends unless claimed.
    orphan_until: Option<Instant>,
}

/// A KeepAlive the master holds (long-poll).
#[derive(Clone, Copy)]
struct HeldKeepAlive {
    waiter: WaiterId,
    /// When to answer it if nothing happens first.
    until: Instant,
    /// When it arrived: its reply's lease is counted from here.
    received: Instant,
}

struct Handle {
    session: SessionId,
    path: String,
    instance: u64,
    intent: u32,
    events: u32,
    lock_delay_ms: u64,
    token: Vec<u8>,
    sequencer: Option<SequencerView>,
    /// Opened with target `ENTRY` (a cell unlinking an entry): no ACL check on `Delete`.
    entry: bool,
}

/// The new-master procedure in progress (SPEC §5 steps 4–9).
struct Recovery {
    /// Sessions that have not yet acknowledged their fail-over event: session → its seq.
    /// While any remain, only KeepAlive is served (steps 4–6).
    awaiting: HashMap<SessionId, u64>,
    /// Ephemeral nodes no handle has reopened since the failover.
    unclaimed_ephemeral: HashSet<String>,
    /// When unclaimed ephemeral nodes are deleted (step 9).
    cleanup_at: Instant,
    /// Locks recorded by the previous master: session → (path, holder handle). Released
    /// (with lock-delay) if the session ends without reclaiming them.
    restored_holds: HashMap<SessionId, Vec<(String, HandleKey)>>,
}

enum WaiterKind {
    KeepAlive(SessionId),
    Acquire(String),
    Barrier(String),
}

/// The master of one cell.
pub struct Master {
    cfg: CoreConfig,
    meta: MetaRecord,
    key: TokenKey,
    rng: StdRng,
    now: Instant,
    nodes: HashMap<String, Node>,
    sessions: HashMap<SessionId, Session>,
    handles: HashMap<HandleKey, Handle>,
    next_handle: u64,
    /// Handles of earlier epochs closed in this epoch; never recreated again (SPEC §5 step 8).
    closed_old_handles: HashSet<HandleKey>,
    /// path → sessions that may cache it (its data, stat, or its absence).
    cachers: HashMap<String, HashSet<SessionId>>,
    /// path → sessions told to drop it that have not acknowledged. Non-empty: uncachable.
    invalidating: HashMap<String, HashSet<SessionId>>,
    /// path → writes waiting for `invalidating[path]` to drain.
    barriers: HashMap<String, Vec<WaiterId>>,
    waiters: HashMap<WaiterId, WaiterKind>,
    next_waiter: WaiterId,
    recovery: Option<Recovery>,
    /// Orphaned sub-sessions by the time they end unless claimed.
    orphans: BTreeSet<(Instant, SessionId)>,
    /// Ended sub-sessions, remembered (with their secret) until the given time so that
    /// late calls and claims answer `SESSION_EXPIRED`.
    tombstones: HashMap<SessionId, ([u8; 16], Instant)>,
    /// The same, oldest first, for sweeping.
    tombstone_order: VecDeque<(Instant, SessionId)>,
    /// The partition map in force (`None`: unpartitioned, or a data cell that has not
    /// loaded one yet).
    map: Option<Arc<PartitionMap>>,
    /// Ephemeral anchors just created for another cell's entry: not deleted for lack of
    /// handles before the given time.
    fresh_anchors: HashMap<String, Instant>,
    /// Contents of ACL files held by other cells, supplied for the current call (`None`:
    /// the file does not exist).
    acl_supply: HashMap<String, Option<Vec<u8>>>,
    /// ACL files held by other cells that the current call needed and was not supplied.
    acl_needed: RefCell<BTreeSet<String>>,
    /// See [`CallNotes::anchor`].
    anchor_job: Option<AnchorJob>,
    /// Entries marked anchor-pending (so the janitor need not scan every node).
    pending_entries: BTreeSet<String>,
    out: Output,
}

fn hex(id: &[u8]) -> String {
    id.iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + "…"
}

/// ACL names are file names in `/ls/<deployment>/acl/`: each must be a valid component
/// (empty means unrestricted).
fn check_acl_names(acl: &AclNames) -> Result<(), WarrenError> {
    for name in [&acl.read, &acl.write, &acl.change_acl] {
        if !name.is_empty() {
            path::check_component(name, name)?;
        }
    }
    Ok(())
}

fn checksum(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

fn mode_name(m: LockMode) -> &'static str {
    match m {
        LockMode::Exclusive => "exclusive",
        LockMode::Shared => "shared",
    }
}

impl Master {
    /// Builds the master from what the store holds, as a new master does at takeover
    /// (SPEC §5 steps 1 and 3): bumps and records the epoch, rebuilds sessions (each with a
    /// full lease from now) and locks. A store that holds nothing is initialised with the
    /// deployment root and its `acl` directory.
    pub fn recover(
        cfg: CoreConfig,
        snap: Snapshot,
        now: Instant,
        seed: u64,
    ) -> Result<Master, WarrenError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = Output::default();
        let fresh = snap.meta.is_none();
        let meta = match snap.meta {
            Some(mut m) => {
                if m.deployment != cfg.deployment || m.cell != cfg.cell {
                    return Err(WarrenError::invalid_argument(format!(
                        "the store holds cell {:?} of deployment {:?}, but this process is configured as cell {:?} of deployment {:?}; point --data at the right directory or fix --name",
                        m.cell, m.deployment, cfg.cell, cfg.deployment
                    )));
                }
                m.epoch += 1;
                m
            }
            None => MetaRecord {
                epoch: 1,
                secret: rng.gen(),
                next_instance: 1,
                deployment: cfg.deployment.clone(),
                cell: cfg.cell.clone(),
                max_lease_granted_ms: 0,
                max_proxy_lease_granted_ms: 0,
                pending_unlinks: Vec::new(),
            },
        };
        let mut meta = meta;
        // The previous master may have granted up to this lease; ours may be longer.
        let restored_lease = Duration::from_millis(meta.max_lease_granted_ms).max(cfg.lease);
        meta.max_lease_granted_ms = restored_lease.as_millis() as u64;
        let restored_proxy_lease =
            Duration::from_millis(meta.max_proxy_lease_granted_ms).max(cfg.proxy_lease);
        meta.max_proxy_lease_granted_ms = restored_proxy_lease.as_millis() as u64;
        out.mutations.push(Mutation::PutMeta(meta.clone()));
        let key = TokenKey::new(meta.secret);
        let mut m = Master {
            cfg,
            meta,
            key,
            rng,
            now,
            nodes: HashMap::new(),
            sessions: HashMap::new(),
            handles: HashMap::new(),
            next_handle: 1,
            closed_old_handles: HashSet::new(),
            cachers: HashMap::new(),
            invalidating: HashMap::new(),
            barriers: HashMap::new(),
            waiters: HashMap::new(),
            next_waiter: 1,
            recovery: None,
            orphans: BTreeSet::new(),
            tombstones: HashMap::new(),
            tombstone_order: VecDeque::new(),
            map: None,
            fresh_anchors: HashMap::new(),
            acl_supply: HashMap::new(),
            acl_needed: RefCell::new(BTreeSet::new()),
            anchor_job: None,
            pending_entries: BTreeSet::new(),
            out,
        };
        let mut contents: HashMap<String, Vec<u8>> = snap.contents.into_iter().collect();
        let mut paths: Vec<String> = Vec::new();
        for rec in snap.nodes {
            paths.push(rec.path.clone());
            let data = contents.remove(&rec.path).unwrap_or_default();
            m.nodes.insert(
                rec.path.clone(),
                Node {
                    rec,
                    contents: data,
                    children: BTreeSet::new(),
                    handles: BTreeSet::new(),
                    lock_waiters: VecDeque::new(),
                    delay_until: None,
                },
            );
        }
        m.pending_entries = m
            .nodes
            .iter()
            .filter(|(_, n)| n.rec.anchor_pending.is_some())
            .map(|(p, _)| p.clone())
            .collect();
        for p in &paths {
            // A child anchor is no child of a local node: its entry is in another cell.
            if m.nodes[p].rec.anchor {
                continue;
            }
            if let Some(parent) = path::parent(p) {
                if let Some(n) = m.nodes.get_mut(parent) {
                    n.children.insert(path::name(p).to_string());
                }
            }
        }
        // The meta cell (or an unpartitioned one) reads its map from its own namespace.
        let own_map = m.map_file();
        m.own_map_written(&own_map);
        // Step 3: sessions and locks from the store, each session with the longest lease
        // the previous master may have granted, counted from now.
        // (Sub-sessions have no lease of their own: they live as long as their proxy
        // session, or an orphan for the claim window.)
        let restored: Vec<SessionId> = snap.sessions.iter().map(|r| r.id).collect();
        for rec in snap.sessions {
            let lease_end = now
                + if rec.proxy {
                    restored_proxy_lease
                } else {
                    restored_lease
                };
            m.sessions.insert(rec.id, Session::new(rec, lease_end));
        }
        // Sub-sessions rejoin their proxy session; those whose proxy session was not
        // restored are orphans from now.
        let mut orphaned = Vec::new();
        for sid in &restored {
            let Some(parent) = m.sessions[sid].rec.parent else {
                continue;
            };
            match m.sessions.get_mut(&parent) {
                Some(p) if p.rec.parent.is_none() => {
                    p.subs.insert(*sid);
                }
                _ => orphaned.push(*sid),
            }
        }
        for sid in orphaned {
            m.make_orphan(sid);
        }
        let mut recovery = Recovery {
            awaiting: HashMap::new(),
            unclaimed_ephemeral: HashSet::new(),
            cleanup_at: now + m.cfg.ephemeral_cleanup,
            restored_holds: HashMap::new(),
        };
        for (p, n) in &m.nodes {
            if n.rec.ephemeral {
                recovery.unclaimed_ephemeral.insert(p.clone());
            }
            for h in &n.rec.holders {
                recovery
                    .restored_holds
                    .entry(h.session)
                    .or_default()
                    .push((p.clone(), (h.handle_epoch, h.handle)));
            }
        }
        // Holders whose session did not survive (closed or expired as far as the store
        // knows) are released now, as their session's end would have.
        let orphans: Vec<(String, SessionId, HandleKey)> = m
            .nodes
            .iter()
            .flat_map(|(p, n)| {
                n.rec
                    .holders
                    .iter()
                    .map(move |h| (p.clone(), h.session, (h.handle_epoch, h.handle)))
            })
            .filter(|(_, sid, _)| !m.sessions.contains_key(sid))
            .collect();
        for (p, sid, k) in orphans {
            m.drop_holder(&p, sid, k, true);
        }
        // Step 5: every session is told of the failover (its cache may be stale, events
        // may have been lost); steps 4 and 6: only KeepAlive until each acknowledges.
        // A sub-session's event is queued on its proxy session, tagged with its id; only
        // top-level sessions are awaited, each until it acknowledges the last event queued
        // for it (its own and its sub-sessions'). Orphans get none (nobody to deliver to).
        for sid in restored {
            let target = m.sessions[&sid].rec.parent.unwrap_or(sid);
            let ev = EventKind::MasterFailover;
            if let Some(seq) = m.push_event(sid, ev, Vec::new(), "", "", ChildChange::None) {
                recovery.awaiting.insert(target, seq);
            }
        }
        if !fresh {
            tracing::info!(
                epoch = m.meta.epoch,
                sessions = recovery.awaiting.len(),
                orphans = m.orphans.len(),
                ephemeral = recovery.unclaimed_ephemeral.len(),
                "new master: waiting for sessions to acknowledge the failover"
            );
            m.recovery = Some(recovery);
        }
        if fresh {
            let root = path::root_of(&m.cfg.deployment);
            m.create_node(
                &root,
                NodeKind::Directory,
                false,
                Vec::new(),
                AclNames::default(),
            );
            m.create_node(
                &format!("{root}/acl"),
                NodeKind::Directory,
                false,
                Vec::new(),
                AclNames::default(),
            );
        }
        Ok(m)
    }

    pub fn epoch(&self) -> u64 {
        self.meta.epoch
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn status(&self) -> MasterStatus {
        let (mut proxies, mut subs) = (0, 0);
        for s in self.sessions.values() {
            if s.rec.parent.is_some() {
                subs += 1;
            } else if s.rec.proxy {
                proxies += 1;
            }
        }
        MasterStatus {
            cell: self.cfg.cell.clone(),
            deployment: self.cfg.deployment.clone(),
            epoch: self.meta.epoch,
            sessions: self.sessions.len() - subs,
            proxy_sessions: proxies,
            sub_sessions: subs,
            orphans: self.orphans.len(),
            nodes: self.nodes.len(),
            handles: self.handles.len(),
            held_locks: self
                .nodes
                .values()
                .filter(|n| !n.rec.holders.is_empty())
                .count(),
            map_epoch: self.map_epoch(),
            slots: self.map.as_ref().map_or(0, |m| {
                m.slot_counts().get(&self.cfg.cell).copied().unwrap_or(0)
            }),
            map_loaded: self.map_loaded(),
        }
    }

    // ------------------------------------------------------------------ partitioning

    /// Whether this is a data cell (its map comes from the meta cell).
    pub fn is_data_cell(&self) -> bool {
        !self.cfg.meta.is_empty()
    }

    /// The partition map in force, if any.
    pub fn map(&self) -> Option<&Arc<PartitionMap>> {
        self.map.as_ref()
    }

    /// The epoch of the map in force (0: none).
    pub fn map_epoch(&self) -> u64 {
        self.map.as_ref().map_or(0, |m| m.map_epoch())
    }

    /// A data cell has loaded a map; other cells need none.
    pub fn map_loaded(&self) -> bool {
        !self.is_data_cell() || self.map.is_some()
    }

    /// Installs a partition map (a data cell's, from the meta cell's watcher). A map of
    /// another deployment, or not newer than the one in force, is ignored. Returns whether
    /// it was installed.
    pub fn set_map(&mut self, map: Arc<PartitionMap>) -> bool {
        if map.deployment() != self.cfg.deployment {
            tracing::error!(
                map = map.deployment(),
                deployment = %self.cfg.deployment,
                "the partition map names another deployment; keeping the previous one"
            );
            return false;
        }
        if self.map_epoch() >= map.map_epoch() {
            return false;
        }
        tracing::info!(
            cell = %self.cfg.cell,
            map_epoch = map.map_epoch(),
            slots = map.slot_counts().get(&self.cfg.cell).copied().unwrap_or(0),
            "partition map in force"
        );
        self.map = Some(map);
        true
    }

    /// Where the map lives: `/ls/<d>/warren/map` (in the meta cell).
    fn map_file(&self) -> String {
        format!(
            "{}/{}/map",
            path::root_of(&self.cfg.deployment),
            warren_router::RESERVED
        )
    }

    /// The meta cell (or an unpartitioned cell) reads its map whenever the map file in its
    /// own namespace is created or written: from then on it serves only the reserved
    /// subtree. A map that does not parse is ignored (with an error log).
    fn own_map_written(&mut self, p: &str) {
        if self.is_data_cell() || p != self.map_file() {
            return;
        }
        let Some(n) = self.nodes.get(p) else { return };
        if n.rec.kind != NodeKind::File {
            return;
        }
        match PartitionMap::from_json(&n.contents) {
            Ok(map) => {
                let epoch = map.map_epoch();
                if !self.set_map(Arc::new(map)) && self.map_epoch() >= epoch {
                    tracing::warn!(
                        written = epoch,
                        in_force = self.map_epoch(),
                        "the partition map file holds an epoch not newer than the map in force; ignored"
                    );
                }
            }
            Err(e) => tracing::error!(
                error = %e,
                path = p,
                "the partition map file does not parse; keeping the previous map"
            ),
        }
    }

    /// Refuses everything but session calls while a data cell has no map.
    fn need_map(&self) -> Result<(), WarrenError> {
        if self.map_loaded() {
            return Ok(());
        }
        Err(WarrenError::new(
            ErrorCode::FailoverInProgress,
            format!(
                "cell {} has not loaded the partition map yet (it reads {} from the meta cell at {}); retry shortly",
                self.cfg.cell,
                self.map_file(),
                self.cfg.meta.join(",")
            ),
        ))
    }

    /// `None` if this cell serves `path` (`anchor`: the directory's own slot, else its
    /// parent's) under its map, or with no map; otherwise the owner (`meta` for the
    /// reserved subtree at a data cell).
    fn owner_elsewhere(&self, p: &str, anchor: bool) -> Result<Option<String>, WarrenError> {
        let Some(map) = &self.map else {
            return Ok(None);
        };
        let route = map
            .route(p, anchor)
            .map_err(|e| WarrenError::invalid_argument(format!("cannot route {p}: {e}")))?;
        Ok(match route {
            Route::Meta if self.is_data_cell() => Some("meta".to_string()),
            Route::Meta => None,
            Route::Cell { cell, .. } if cell == self.cfg.cell => None,
            Route::Cell { cell, .. } => Some(cell.to_string()),
        })
    }

    /// `WRONG_CELL{map epoch, owner}` unless this cell serves `path` (see
    /// [`Master::owner_elsewhere`]).
    fn serve_check(&self, p: &str, anchor: bool) -> Result<(), WarrenError> {
        match self.owner_elsewhere(p, anchor)? {
            None => Ok(()),
            Some(owner) => Err(WarrenError::wrong_cell(self.map_epoch(), owner)),
        }
    }

    /// The ownership check of a call on a handle of node `p`: a directory whose own slot
    /// this cell owns is served (its anchor); otherwise by its parent's slot.
    fn node_check(&self, p: &str) -> Result<(), WarrenError> {
        if self.map.is_none() {
            return Ok(());
        }
        let dir = self
            .nodes
            .get(p)
            .is_some_and(|n| n.rec.kind == NodeKind::Directory);
        if dir {
            match self.owner_elsewhere(p, true)? {
                None => return Ok(()),
                Some(owner) => {
                    if self.owner_elsewhere(p, false)?.is_none() {
                        return Ok(());
                    }
                    return Err(WarrenError::wrong_cell(self.map_epoch(), owner));
                }
            }
        }
        self.serve_check(p, false)
    }

    /// Hands over (and clears) what the last call needs the server to do.
    pub fn take_notes(&mut self) -> CallNotes {
        CallNotes {
            anchor: self.anchor_job.take(),
            acl_needed: std::mem::take(&mut *self.acl_needed.borrow_mut())
                .into_iter()
                .collect(),
        }
    }

    /// Supplies the contents of ACL files held by other cells (path → contents, `None`:
    /// the file does not exist) for the calls that follow, until replaced.
    pub fn supply_acls(&mut self, files: HashMap<String, Option<Vec<u8>>>) {
        self.acl_supply = files;
    }

    /// Fails the call if an ACL check needed a file held by another cell that was not
    /// supplied: called before a call changes anything (the server then reads the files
    /// and runs the call again).
    fn acls_complete(&self) -> Result<(), WarrenError> {
        let needed = self.acl_needed.borrow();
        if needed.is_empty() {
            return Ok(());
        }
        Err(WarrenError::new(
            ErrorCode::FailoverInProgress,
            format!(
                "the ACL check needs {} held by another cell, which could not be read yet; retry shortly",
                needed.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ))
    }

    /// The entry `p` (instance `instance`) has its child anchor: clears the mark.
    pub fn anchor_created(&mut self, p: &str, instance: u64) {
        let Some(n) = self.nodes.get_mut(p) else {
            return;
        };
        if n.rec.instance != instance || n.rec.anchor_pending.is_none() {
            return;
        }
        n.rec.anchor_pending = None;
        self.out.mutations.push(Mutation::PutNode(n.rec.clone()));
        self.pending_entries.remove(p);
    }

    /// Entries whose child anchor is not confirmed yet (for the janitor). Empty without a
    /// map.
    pub fn pending_anchors(&self) -> Vec<AnchorJob> {
        let mut jobs = Vec::new();
        for p in &self.pending_entries {
            let Some(n) = self.nodes.get(p) else { continue };
            let Some(pending) = &n.rec.anchor_pending else {
                continue;
            };
            let owner = match self.owner_elsewhere(p, true) {
                Ok(Some(owner)) => owner,
                Ok(None) if self.map.is_some() => self.cfg.cell.clone(),
                _ => continue,
            };
            jobs.push(AnchorJob {
                path: p.clone(),
                instance: n.rec.instance,
                acl: n.rec.acl.clone(),
                ephemeral: pending.ephemeral,
                owner,
                created: false,
            });
        }
        jobs
    }

    /// Anchors removed here whose entries are still to be removed (for the janitor).
    pub fn pending_unlinks(&self) -> Vec<PendingUnlink> {
        self.meta.pending_unlinks.clone()
    }

    /// The entry of a removed anchor is gone from its parent's cell: drops the record.
    pub fn unlink_done(&mut self, u: &PendingUnlink) {
        let before = self.meta.pending_unlinks.len();
        self.meta.pending_unlinks.retain(|x| x != u);
        if self.meta.pending_unlinks.len() != before {
            self.out
                .mutations
                .push(Mutation::PutMeta(self.meta.clone()));
        }
    }

    /// Removes the entry of `u` held here (the map now puts the parent's slot in this cell)
    /// if it is still that instance, and drops the record.
    pub fn unlink_local(&mut self, u: &PendingUnlink) {
        let here = self
            .nodes
            .get(&u.path)
            .is_some_and(|n| n.rec.instance == u.instance && !n.rec.anchor);
        if here {
            self.start_invalidation(&u.path, None, None);
            if let Some(parent) = path::parent(&u.path) {
                let parent = parent.to_string();
                self.start_invalidation(&parent, None, None);
            }
            self.remove_node(&u.path, None);
        }
        self.unlink_done(u);
    }

    /// Drains what the last operations produced.
    pub fn take_output(&mut self) -> Output {
        std::mem::take(&mut self.out)
    }

    // ------------------------------------------------------------------ sessions

    /// `CreateSession`: an ordinary session, granted the lease.
    pub fn create_session(
        &mut self,
        principal: &str,
        now: Instant,
    ) -> Result<SessionCreated, WarrenError> {
        self.new_session(principal, false, now)
    }

    /// `CreateSession{proxy: true}`: a proxy's upstream session, granted the proxy lease;
    /// it may act for client sub-sessions and claim them (SPEC §6).
    pub fn create_proxy_session(
        &mut self,
        principal: &str,
        now: Instant,
    ) -> Result<SessionCreated, WarrenError> {
        self.new_session(principal, true, now)
    }

    fn lease_of(&self, rec: &SessionRecord) -> Duration {
        if rec.proxy {
            self.cfg.proxy_lease
        } else {
            self.cfg.lease
        }
    }

    fn new_session(
        &mut self,
        principal: &str,
        proxy: bool,
        now: Instant,
    ) -> Result<SessionCreated, WarrenError> {
        self.now = now;
        if principal.len() > 255 {
            return Err(WarrenError::invalid_argument(
                "principal name is longer than 255 bytes",
            ));
        }
        if self.recovering() {
            return Err(WarrenError::failover_in_progress());
        }
        let id: SessionId = self.rng.gen();
        let secret: [u8; 16] = self.rng.gen();
        let rec = SessionRecord {
            id,
            secret,
            principal: principal.to_string(),
            proxy,
            ..SessionRecord::default()
        };
        let lease = self.lease_of(&rec);
        self.out.mutations.push(Mutation::PutSession(rec.clone()));
        self.sessions.insert(id, Session::new(rec, now + lease));
        Ok(SessionCreated {
            id,
            secret,
            lease,
            epoch: self.meta.epoch,
            deployment: self.cfg.deployment.clone(),
        })
    }

    /// Whether the new-master procedure still holds back everything but KeepAlive.
    pub fn recovering(&self) -> bool {
        self.recovery
            .as_ref()
            .is_some_and(|r| !r.awaiting.is_empty())
    }

    /// [`Master::check_session`] for any call but KeepAlive: also refused while the
    /// sessions have not all acknowledged the failover (SPEC §5 step 4). Returns the
    /// session the call acts as: the caller's own, or the client sub-session a proxy
    /// session names in `ctx.client`, which must be registered already.
    fn check(&mut self, ctx: &Ctx) -> Result<SessionId, WarrenError> {
        self.check_as(ctx, false)
    }

    /// [`Master::check`]; with `register` (only `Open`) an unknown client session is
    /// registered as a sub-session of the calling proxy session.
    fn check_as(&mut self, ctx: &Ctx, register: bool) -> Result<SessionId, WarrenError> {
        self.need_map()?;
        self.check_any(ctx, register)
    }

    /// [`Master::check_as`] without the partition map's readiness (session calls).
    fn check_any(&mut self, ctx: &Ctx, register: bool) -> Result<SessionId, WarrenError> {
        let sid = self.check_session(ctx)?;
        if ctx.client.is_some() && !self.sessions[&sid].rec.proxy {
            return Err(WarrenError::invalid_argument(format!(
                "ctx.client_session may only be set on a proxy session (CreateSession with proxy = true); session {} is not one",
                hex(&sid)
            )));
        }
        if self.recovering() {
            return Err(WarrenError::failover_in_progress());
        }
        match &ctx.client {
            None => Ok(sid),
            Some(c) => self.client_session(sid, c, register),
        }
    }

    /// The client sub-session `c` named by proxy session `proxy` (SPEC §6, docs/proxy.md).
    fn client_session(
        &mut self,
        proxy: SessionId,
        c: &ClientCtx,
        register: bool,
    ) -> Result<SessionId, WarrenError> {
        if let Some(s) = self.sessions.get(&c.session) {
            let Some(parent) = s.rec.parent else {
                return Err(WarrenError::invalid_argument(format!(
                    "ctx.client_session {} names a session of this cell, not a client session",
                    hex(&c.session)
                )));
            };
            if s.rec.secret != c.secret {
                return Err(WarrenError::permission_denied(format!(
                    "wrong client_secret for client session {}",
                    hex(&c.session)
                )));
            }
            if parent != proxy {
                return Err(WarrenError::permission_denied(format!(
                    "client session {} is held by another proxy session; ClaimSession first",
                    hex(&c.session)
                )));
            }
            return Ok(c.session);
        }
        if self.tombstoned(&c.session).is_some() {
            return Err(WarrenError::session_expired(format!(
                "client session {} has ended at this cell",
                hex(&c.session)
            )));
        }
        if !register {
            return Err(WarrenError::session_expired(format!(
                "client session {} is unknown at this cell (only Open registers one) or has ended",
                hex(&c.session)
            )));
        }
        if c.principal.len() > 255 {
            return Err(WarrenError::invalid_argument(
                "ctx.client_principal is longer than 255 bytes",
            ));
        }
        let rec = SessionRecord {
            id: c.session,
            secret: c.secret,
            principal: c.principal.clone(),
            proxy: false,
            parent: Some(proxy),
            registered_epoch: self.meta.epoch,
            registered_handle: self.next_handle,
        };
        self.out.mutations.push(Mutation::PutSession(rec.clone()));
        self.sessions.insert(c.session, Session::new(rec, self.now));
        self.sessions
            .get_mut(&proxy)
            .expect("checked")
            .subs
            .insert(c.session);
        Ok(c.session)
    }

    /// The secret of an ended sub-session still remembered (for one claim window).
    fn tombstoned(&self, sid: &SessionId) -> Option<[u8; 16]> {
        self.tombstones
            .get(sid)
            .filter(|(_, until)| *until > self.now)
            .map(|(secret, _)| *secret)
    }

    /// `ClaimSession`: moves client session `client` (its handles, locks and ephemeral
    /// opens) to the calling proxy session. `Some(principal)`: the cell held state for it
    /// (now the caller's), registered with that principal; `None`: it never registered
    /// here (and nothing is registered by this).
    pub fn claim_session(
        &mut self,
        ctx: &Ctx,
        client: SessionId,
        client_secret: [u8; 16],
        client_principal: &str,
        only_from: Option<SessionId>,
        now: Instant,
    ) -> Result<Option<String>, WarrenError> {
        self.now = now;
        if ctx.client.is_some() {
            return Err(WarrenError::invalid_argument(
                "ClaimSession names the client session in its own client_session field; ctx.client_session must be empty",
            ));
        }
        self.need_map()?;
        let sid = self.check_session(ctx)?;
        if !self.sessions[&sid].rec.proxy {
            return Err(WarrenError::invalid_argument(format!(
                "ClaimSession is only for proxy sessions (CreateSession with proxy = true); session {} is not one",
                hex(&sid)
            )));
        }
        if self.recovering() {
            return Err(WarrenError::failover_in_progress());
        }
        if client_principal.len() > 255 {
            return Err(WarrenError::invalid_argument(
                "client_principal is longer than 255 bytes",
            ));
        }
        let Some(s) = self.sessions.get(&client) else {
            return match self.tombstoned(&client) {
                Some(secret) if secret != client_secret => Err(WarrenError::permission_denied(
                    format!("wrong client_secret for client session {}", hex(&client)),
                )),
                Some(_) => Err(WarrenError::session_expired(format!(
                    "client session {} has ended at this cell",
                    hex(&client)
                ))),
                None => Ok(None),
            };
        };
        let Some(old) = s.rec.parent else {
            return Err(WarrenError::invalid_argument(format!(
                "client_session {} names a session of this cell, not a client session",
                hex(&client)
            )));
        };
        if s.rec.secret != client_secret {
            return Err(WarrenError::permission_denied(format!(
                "wrong client_secret for client session {}",
                hex(&client)
            )));
        }
        if old == sid {
            return Ok(Some(s.rec.principal.clone()));
        }
        if only_from.is_some_and(|from| from != old) {
            return Err(WarrenError::permission_denied(format!(
                "client session {} is held by another proxy session; not claimed",
                hex(&client)
            )));
        }
        let s = self.sessions.get_mut(&client).expect("present");
        s.rec.parent = Some(sid);
        let rec = s.rec.clone();
        let principal = rec.principal.clone();
        if let Some(t) = s.orphan_until.take() {
            self.orphans.remove(&(t, client));
        }
        self.out.mutations.push(Mutation::PutSession(rec));
        if self
            .sessions
            .get_mut(&old)
            .is_some_and(|o| o.subs.remove(&client))
        {
            self.queue_event(
                old,
                Some(client),
                EventKind::SessionClaimed,
                Vec::new(),
                "",
                "",
                ChildChange::None,
            );
        }
        self.sessions
            .get_mut(&sid)
            .expect("checked")
            .subs
            .insert(client);
        tracing::info!(
            client = %hex(&client),
            from = %hex(&old),
            to = %hex(&sid),
            "client session claimed by another proxy session"
        );
        Ok(Some(principal))
    }

    /// Validates the session part of a request: epoch, session, secret, lease.
    fn check_session(&mut self, ctx: &Ctx) -> Result<SessionId, WarrenError> {
        if ctx.epoch != self.meta.epoch {
            if ctx.epoch < self.meta.epoch {
                return Err(WarrenError::stale_epoch(self.meta.epoch, ctx.epoch));
            }
            return Err(WarrenError::invalid_argument(format!(
                "request names master epoch {}, but this master's epoch is {}",
                ctx.epoch, self.meta.epoch
            )));
        }
        let Some(s) = self.sessions.get(&ctx.session) else {
            return Err(WarrenError::session_expired(format!(
                "session {} is unknown or has expired",
                hex(&ctx.session)
            )));
        };
        if s.rec.secret != ctx.secret {
            return Err(WarrenError::permission_denied(format!(
                "wrong secret for session {}",
                hex(&ctx.session)
            )));
        }
        if s.rec.parent.is_some() {
            return Err(WarrenError::invalid_argument(format!(
                "session {} is a client session registered by a proxy; its calls go through that proxy (ctx.client_session on the proxy's session)",
                hex(&ctx.session)
            )));
        }
        if self.now > s.lease_end {
            self.expire_session(ctx.session);
            return Err(WarrenError::session_expired(format!(
                "session {} has expired (its lease ran out)",
                hex(&ctx.session)
            )));
        }
        Ok(ctx.session)
    }

    /// `KeepAlive`: acknowledges events up to `ack_seq`, supersedes the outstanding
    /// KeepAlive, and either answers now (events pending, or the lease is near its end) or
    /// parks until ~`reply_before_end` before the lease ends.
    pub fn keepalive(
        &mut self,
        ctx: &Ctx,
        ack_seq: u64,
        now: Instant,
    ) -> Result<Reply<KeepAliveReply>, WarrenError> {
        self.now = now;
        if ctx.client.is_some() {
            return Err(WarrenError::invalid_argument(
                "KeepAlive takes no ctx.client_session: a client session has no lease at the cell; it lives as long as its proxy session",
            ));
        }
        let sid = self.check_session(ctx)?;
        let s = &self.sessions[&sid];
        if ack_seq >= s.next_seq {
            return Err(WarrenError::invalid_argument(format!(
                "KeepAlive acknowledges event {ack_seq}, but only events up to {} were sent",
                s.next_seq - 1
            )));
        }
        self.acknowledge(sid, ack_seq);
        if let Some(held) = self.sessions.get_mut(&sid).and_then(|s| s.keepalive.take()) {
            self.answer_keepalive(sid, held);
        }
        let early = self.cfg.reply_before_end + self.jitter();
        let s = &self.sessions[&sid];
        let hold_until = s.lease_end.checked_sub(early).unwrap_or(now);
        if !s.events.is_empty() || hold_until <= now {
            return Ok(Reply::Done(self.keepalive_reply(sid, now)));
        }
        let w = self.new_waiter(WaiterKind::KeepAlive(sid));
        self.sessions.get_mut(&sid).expect("checked").keepalive = Some(HeldKeepAlive {
            waiter: w,
            until: hold_until,
            received: now,
        });
        Ok(Reply::Wait(w))
    }

    fn jitter(&mut self) -> Duration {
        let max = (self.cfg.reply_before_end / 10).as_millis() as u64;
        Duration::from_millis(if max == 0 {
            0
        } else {
            self.rng.gen_range(0..=max)
        })
    }

    fn acknowledge(&mut self, sid: SessionId, ack_seq: u64) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if ack_seq <= s.acked {
            return;
        }
        s.acked = ack_seq;
        while s.events.front().is_some_and(|e| e.seq <= ack_seq) {
            s.events.pop_front();
        }
        let rest = s.pending_invalidations.split_off(&(ack_seq + 1));
        let done = std::mem::replace(&mut s.pending_invalidations, rest);
        for (_, p) in done {
            self.invalidation_done(&p, sid);
        }
        self.failover_acknowledged(sid, Some(ack_seq));
    }

    /// Step 6: a session acknowledged its fail-over event (or ended: `ack` is `None`).
    fn failover_acknowledged(&mut self, sid: SessionId, ack: Option<u64>) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        if let Some(seq) = r.awaiting.get(&sid) {
            if ack.is_none_or(|a| a >= *seq) {
                r.awaiting.remove(&sid);
                if r.awaiting.is_empty() {
                    tracing::info!(
                        epoch = self.meta.epoch,
                        "every session acknowledged the failover; serving all operations"
                    );
                }
            }
        }
    }

    /// Answers a held KeepAlive now.
    fn answer_keepalive(&mut self, sid: SessionId, held: HeldKeepAlive) {
        self.waiters.remove(&held.waiter);
        let reply = self.keepalive_reply(sid, held.received);
        self.out
            .wakes
            .push((held.waiter, Wake::KeepAlive(Ok(reply))));
    }

    /// Builds a reply, now, for a KeepAlive that arrived at `received`, extending the lease
    /// if it may be extended. The lease in the reply is counted from `received`, so that
    /// the client's local lease (its send time + that lease, SPEC §4) can never outlast
    /// the master's, however long the request was held.
    fn keepalive_reply(&mut self, sid: SessionId, received: Instant) -> KeepAliveReply {
        let now = self.now;
        let lease = self.lease_of(&self.sessions[&sid].rec);
        let s = self.sessions.get_mut(&sid).expect("live session");
        if s.acked >= s.delivered_upto && s.lease_end < now + lease {
            s.lease_end = now + lease;
        }
        if let Some(last) = s.events.back() {
            s.delivered_upto = s.delivered_upto.max(last.seq);
        }
        KeepAliveReply {
            lease: s.lease_end.saturating_duration_since(received),
            events: s.events.iter().cloned().collect(),
            epoch: self.meta.epoch,
        }
    }

    /// Queues an event for session `sid`; a sub-session's goes on its proxy session's
    /// queue, tagged with its id (and nowhere while it is an orphan). Returns the seq it
    /// got on the queue it went to.
    fn push_event(
        &mut self,
        sid: SessionId,
        kind: EventKind,
        handle: Vec<u8>,
        path: &str,
        child: &str,
        change: ChildChange,
    ) -> Option<u64> {
        let s = self.sessions.get(&sid)?;
        let (target, client) = match s.rec.parent {
            None => (sid, None),
            Some(_) if s.orphan_until.is_some() => return None,
            Some(p) => (p, Some(sid)),
        };
        self.queue_event(target, client, kind, handle, path, child, change)
    }

    /// Appends an event to `target`'s own queue and answers its held KeepAlive.
    #[allow(clippy::too_many_arguments)]
    fn queue_event(
        &mut self,
        target: SessionId,
        client: Option<SessionId>,
        kind: EventKind,
        handle: Vec<u8>,
        path: &str,
        child: &str,
        change: ChildChange,
    ) -> Option<u64> {
        let s = self.sessions.get_mut(&target)?;
        let seq = s.next_seq;
        s.next_seq += 1;
        s.events.push_back(Event {
            seq,
            kind,
            handle,
            path: path.to_string(),
            child: child.to_string(),
            change,
            client,
        });
        if let Some(held) = s.keepalive.take() {
            self.answer_keepalive(target, held);
        }
        Some(seq)
    }

    /// Sends a handle event to every handle open on `path` whose mask has `bit`, except `skip`.
    fn notify_handles(
        &mut self,
        path: &str,
        bit: u32,
        kind: EventKind,
        child: &str,
        change: ChildChange,
        skip: Option<HandleKey>,
    ) {
        let Some(n) = self.nodes.get(path) else {
            return;
        };
        let targets: Vec<(SessionId, Vec<u8>)> = n
            .handles
            .iter()
            .filter(|k| Some(**k) != skip)
            .filter_map(|k| self.handles.get(k))
            .filter(|h| h.events & bit != 0)
            .map(|h| (h.session, h.token.clone()))
            .collect();
        for (sid, tok) in targets {
            self.push_event(sid, kind, tok, path, child, change);
        }
    }

    /// `CloseSession`: ends the session, or, with `ctx.client`, only that client
    /// sub-session (`expired`: it expired at its proxy, so its locks are released with
    /// their lock-delay, as for any failed session).
    pub fn close_session(
        &mut self,
        ctx: &Ctx,
        expired: bool,
        now: Instant,
    ) -> Result<(), WarrenError> {
        self.now = now;
        let sid = self.check_any(ctx, false)?;
        let failed = ctx.client.is_some() && expired;
        self.end_session(
            sid,
            failed,
            WarrenError::session_expired("the session was closed"),
        );
        Ok(())
    }

    /// A proxy session ended: `sid` keeps its state for the claim window.
    fn make_orphan(&mut self, sid: SessionId) {
        let until = self.now + self.cfg.claim_window;
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if let Some(old) = s.orphan_until.replace(until) {
            self.orphans.remove(&(old, sid));
        }
        self.orphans.insert((until, sid));
    }

    fn expire_session(&mut self, sid: SessionId) {
        tracing::info!(session = %hex(&sid), "session expired");
        self.end_session(
            sid,
            true,
            WarrenError::session_expired("the session expired"),
        );
    }

    /// Ends a session: releases its locks (with lock-delay if it `failed`), closes its
    /// handles (deleting ephemeral nodes nobody else holds), stops it caching.
    fn end_session(&mut self, sid: SessionId, failed: bool, why: WarrenError) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let ka = s.keepalive.take();
        let subs = std::mem::take(&mut s.subs);
        let parent = s.rec.parent;
        let secret = s.rec.secret;
        if let Some(t) = s.orphan_until.take() {
            self.orphans.remove(&(t, sid));
        }
        let handles: Vec<HandleKey> = s.handles.iter().copied().collect();
        let cached: Vec<String> = s.cached.drain().collect();
        let pending: Vec<String> = std::mem::take(&mut s.pending_invalidations)
            .into_values()
            .collect();
        if let Some(held) = ka {
            self.waiters.remove(&held.waiter);
            self.out
                .wakes
                .push((held.waiter, Wake::KeepAlive(Err(why.clone()))));
        }
        for p in cached {
            if let Some(set) = self.cachers.get_mut(&p) {
                set.remove(&sid);
                if set.is_empty() {
                    self.cachers.remove(&p);
                }
            }
        }
        for p in pending {
            self.invalidation_done(&p, sid);
        }
        for k in handles {
            self.close_handle(k, failed);
        }
        // Locks recorded by the previous master and never reclaimed through a handle.
        let restored = self
            .recovery
            .as_mut()
            .and_then(|r| r.restored_holds.remove(&sid))
            .unwrap_or_default();
        for (p, k) in restored {
            if self.drop_holder(&p, sid, k, failed) {
                self.grant_waiters(&p);
            }
        }
        self.failover_acknowledged(sid, None);
        self.sessions.remove(&sid);
        self.out.mutations.push(Mutation::DeleteSession(sid));
        // A proxy session's sub-sessions outlive it for the claim window.
        if !subs.is_empty() {
            tracing::info!(
                session = %hex(&sid),
                clients = subs.len(),
                "proxy session ended; its client sessions wait to be claimed"
            );
        }
        for c in subs {
            self.make_orphan(c);
        }
        // An ended sub-session is remembered for a claim window.
        if let Some(p) = parent {
            if let Some(ps) = self.sessions.get_mut(&p) {
                ps.subs.remove(&sid);
            }
            let until = self.now + self.cfg.claim_window;
            self.tombstones.insert(sid, (secret, until));
            self.tombstone_order.push_back((until, sid));
        }
    }

    // ------------------------------------------------------------------ time

    /// Advances time: answers KeepAlives that were held long enough, expires sessions whose
    /// lease ran out, times out Acquires, and grants locks whose lock-delay ended.
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
        let due: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.keepalive.is_some_and(|h| h.until <= now) && s.lease_end >= now)
            .map(|(id, _)| *id)
            .collect();
        for sid in due {
            if let Some(held) = self.sessions.get_mut(&sid).and_then(|s| s.keepalive.take()) {
                self.answer_keepalive(sid, held);
            }
        }
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.rec.parent.is_none() && now > s.lease_end)
            .map(|(id, _)| *id)
            .collect();
        for sid in expired {
            self.expire_session(sid);
        }
        // Orphans nobody claimed within the claim window end as failed sessions.
        while let Some(&(until, sid)) = self.orphans.first() {
            if until > now {
                break;
            }
            self.orphans.pop_first();
            tracing::info!(
                session = %hex(&sid),
                "client session not claimed within the claim window; it ends"
            );
            self.end_session(
                sid,
                true,
                WarrenError::session_expired("the client session was not claimed in time"),
            );
        }
        while self.tombstone_order.front().is_some_and(|(t, _)| *t <= now) {
            let (t, sid) = self.tombstone_order.pop_front().expect("front");
            if self.tombstones.get(&sid).is_some_and(|(_, u)| *u == t) {
                self.tombstones.remove(&sid);
            }
        }
        let mut timed_out = Vec::new();
        let mut delayed = Vec::new();
        for (p, n) in &self.nodes {
            for w in &n.lock_waiters {
                if w.deadline.is_some_and(|d| d <= now) {
                    timed_out.push((p.clone(), w.id));
                }
            }
            if n.delay_until.is_some_and(|d| d <= now) {
                delayed.push(p.clone());
            }
        }
        for (p, id) in timed_out {
            if let Some(n) = self.nodes.get_mut(&p) {
                n.lock_waiters.retain(|w| w.id != id);
            }
            if self.waiters.remove(&id).is_some() {
                self.out.wakes.push((
                    id,
                    Wake::Acquire(Err(WarrenError::lock_held(format!(
                        "the lock on {p} was not acquired before the deadline"
                    )))),
                ));
            }
            self.grant_waiters(&p);
        }
        for p in delayed {
            if let Some(n) = self.nodes.get_mut(&p) {
                n.delay_until = None;
            }
            self.grant_waiters(&p);
        }
        // Ephemeral anchors whose grace ended: deleted now if still unused.
        let ended: Vec<String> = self
            .fresh_anchors
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for p in ended {
            self.fresh_anchors.remove(&p);
            self.maybe_delete_ephemeral(&p);
        }
        // Step 9: ephemeral nodes nobody reopened since the failover.
        let due = self
            .recovery
            .as_mut()
            .filter(|r| now >= r.cleanup_at)
            .map(|r| std::mem::take(&mut r.unclaimed_ephemeral))
            .unwrap_or_default();
        if !due.is_empty() {
            let mut due: Vec<String> = due.into_iter().collect();
            // Deepest first, so ephemeral directories empty out before they are considered.
            due.sort_by_key(|p| std::cmp::Reverse(p.len()));
            tracing::info!(
                count = due.len(),
                "deleting ephemeral nodes not reopened since the failover"
            );
            for p in due {
                self.maybe_delete_ephemeral(&p);
            }
        }
    }

    /// The earliest time at which [`Master::tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let s = self
            .sessions
            .values()
            .filter(|s| s.rec.parent.is_none())
            .map(|s| {
                s.keepalive
                    .map_or(s.lease_end, |h| h.until.min(s.lease_end))
            })
            .min();
        let n = self
            .nodes
            .values()
            .flat_map(|n| {
                n.lock_waiters
                    .iter()
                    .filter_map(|w| w.deadline)
                    .chain(n.delay_until)
            })
            .min();
        let c = self
            .recovery
            .as_ref()
            .filter(|r| !r.unclaimed_ephemeral.is_empty())
            .map(|r| r.cleanup_at);
        let o = self.orphans.first().map(|(t, _)| *t);
        let a = self.fresh_anchors.values().min().copied();
        [s, n, c, o, a].into_iter().flatten().min()
    }

    /// The caller of a parked operation went away (its RPC was cancelled).
    pub fn cancel(&mut self, w: WaiterId) {
        match self.waiters.remove(&w) {
            Some(WaiterKind::KeepAlive(sid)) => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    if s.keepalive.is_some_and(|h| h.waiter == w) {
                        s.keepalive = None;
                    }
                }
            }
            Some(WaiterKind::Acquire(p)) => {
                if let Some(n) = self.nodes.get_mut(&p) {
                    n.lock_waiters.retain(|x| x.id != w);
                }
                self.grant_waiters(&p);
            }
            Some(WaiterKind::Barrier(p)) => {
                if let Some(v) = self.barriers.get_mut(&p) {
                    v.retain(|x| *x != w);
                }
            }
            None => {}
        }
    }

    fn new_waiter(&mut self, kind: WaiterKind) -> WaiterId {
        let w = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.insert(w, kind);
        w
    }

    // ------------------------------------------------------------------ caching

    /// Records that `sid` may cache `path`; false (uncachable) while invalidations of it
    /// are outstanding.
    /// A sub-session's reads are cached by its proxy session, so that is the one recorded.
    fn register_cacher(&mut self, sid: SessionId, path: &str) -> bool {
        if self.invalidating.contains_key(path) {
            return false;
        }
        let sid = self
            .sessions
            .get(&sid)
            .and_then(|s| s.rec.parent)
            .unwrap_or(sid);
        self.cachers
            .entry(path.to_string())
            .or_default()
            .insert(sid);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.cached.insert(path.to_string());
        }
        true
    }

    /// Tells every session that may cache `path` (except `writer`, whose own library
    /// drops its copy when it writes, and `also_exempt`, a writer's proxy that dropped its
    /// copies) to drop it. Every registration ends. Returns whether acknowledgements are
    /// outstanding.
    fn start_invalidation(
        &mut self,
        path: &str,
        writer: Option<SessionId>,
        also_exempt: Option<SessionId>,
    ) -> bool {
        if let Some(set) = self.cachers.remove(path) {
            for sid in set {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.cached.remove(path);
                }
                if Some(sid) == writer || Some(sid) == also_exempt {
                    continue;
                }
                if let Some(seq) = self.push_event(
                    sid,
                    EventKind::Invalidate,
                    Vec::new(),
                    path,
                    "",
                    ChildChange::None,
                ) {
                    self.sessions
                        .get_mut(&sid)
                        .expect("live")
                        .pending_invalidations
                        .insert(seq, path.to_string());
                    self.invalidating
                        .entry(path.to_string())
                        .or_default()
                        .insert(sid);
                    metrics::counter!("warren_cell_invalidations_sent_total").increment(1);
                }
            }
        }
        self.invalidating.contains_key(path)
    }

    fn invalidation_done(&mut self, path: &str, sid: SessionId) {
        let Some(set) = self.invalidating.get_mut(path) else {
            return;
        };
        set.remove(&sid);
        if set.is_empty() {
            self.invalidating.remove(path);
            for w in self.barriers.remove(path).unwrap_or_default() {
                if self.waiters.remove(&w).is_some() {
                    self.out.wakes.push((w, Wake::Retry));
                }
            }
        }
    }

    /// Before a modification of `paths` by `writer`: invalidates cached copies and, if any
    /// session has yet to acknowledge, parks the write (it is retried on [`Wake::Retry`]).
    fn barrier(&mut self, writer: SessionId, paths: &[&str]) -> Option<WaiterId> {
        self.barrier_exempting(writer, None, paths)
    }

    /// [`Self::barrier`], not invalidating `also_exempt` either (the writer's proxy, when it
    /// says it dropped its copies: `SessionContext.proxy_dropped_copies`).
    fn barrier_exempting(
        &mut self,
        writer: SessionId,
        also_exempt: Option<SessionId>,
        paths: &[&str],
    ) -> Option<WaiterId> {
        let mut blocked = None;
        for p in paths {
            if self.start_invalidation(p, Some(writer), also_exempt) {
                blocked = Some(p.to_string());
            }
        }
        let p = blocked?;
        let w = self.new_waiter(WaiterKind::Barrier(p.clone()));
        self.barriers.entry(p).or_default().push(w);
        Some(w)
    }

    /// Paths currently uncachable (for tests and status).
    pub fn is_uncachable(&self, path: &str) -> bool {
        self.invalidating.contains_key(path)
    }

    // ------------------------------------------------------------------ handles

    fn stat_of(&self, path: &str) -> Option<StatView> {
        let n = self.nodes.get(path)?;
        Some(StatView {
            kind: n.rec.kind,
            instance: n.rec.instance,
            content_generation: n.rec.content_generation,
            lock_generation: n.rec.lock_generation,
            acl_generation: n.rec.acl_generation,
            checksum: n.rec.checksum,
            acl: n.rec.acl.clone(),
            ephemeral: n.rec.ephemeral,
            child_count: n.children.len() as u64,
            length: n.contents.len() as u64,
        })
    }

    /// Resolves a handle token for `sid`: authenticates it, recreates a handle from an
    /// earlier epoch on first use (SPEC §5 step 8), checks that its node still exists and
    /// that a sequencer set on it is still current.
    fn resolve(&mut self, sid: SessionId, token: &[u8]) -> Result<HandleKey, WarrenError> {
        let body = self.key.verify(token)?;
        if body.cell != self.cfg.cell {
            return Err(WarrenError::handle_invalid(format!(
                "the handle was made by cell {:?}; this is cell {:?}",
                body.cell, self.cfg.cell
            )));
        }
        if body.session_id.as_slice() != sid.as_slice() {
            return Err(WarrenError::handle_invalid(
                "the handle belongs to another session",
            ));
        }
        let k = (body.epoch, body.number);
        if !self.handles.contains_key(&k) {
            if body.epoch >= self.meta.epoch || self.closed_old_handles.contains(&k) {
                return Err(WarrenError::handle_invalid(format!(
                    "the handle on {} is closed",
                    body.path
                )));
            }
            self.recreate_handle(sid, k, &body, token)?;
        }
        let h = &self.handles[&k];
        if self
            .nodes
            .get(&h.path)
            .is_none_or(|n| n.rec.instance != h.instance)
        {
            return Err(WarrenError::handle_invalid(format!(
                "{} was deleted after this handle was opened",
                h.path
            )));
        }
        if let Some(seq) = &h.sequencer {
            if !self.sequencer_current(seq) {
                return Err(WarrenError::generation_mismatch(format!(
                    "the sequencer set on this handle ({} {} lock generation {}) is no longer current",
                    seq.path,
                    mode_name(seq.mode),
                    seq.lock_generation
                )));
            }
        }
        Ok(k)
    }

    fn recreate_handle(
        &mut self,
        sid: SessionId,
        k: HandleKey,
        body: &HandleBody,
        token: &[u8],
    ) -> Result<(), WarrenError> {
        if let Some(s) = self.sessions.get(&sid) {
            if k < (s.rec.registered_epoch, s.rec.registered_handle) {
                return Err(WarrenError::handle_invalid(format!(
                    "the handle on {} was opened before client session {} was registered again; it is not recreated",
                    body.path,
                    hex(&sid)
                )));
            }
        }
        let Some(n) = self.nodes.get_mut(&body.path) else {
            return Err(WarrenError::handle_invalid(format!(
                "{} no longer exists",
                body.path
            )));
        };
        if n.rec.instance != body.instance {
            return Err(WarrenError::handle_invalid(format!(
                "{} was deleted and recreated since this handle was opened",
                body.path
            )));
        }
        n.handles.insert(k);
        if let Some(r) = self.recovery.as_mut() {
            r.unclaimed_ephemeral.remove(&body.path);
        }
        self.handles.insert(
            k,
            Handle {
                session: sid,
                path: body.path.clone(),
                instance: body.instance,
                intent: body.intent,
                events: body.events,
                lock_delay_ms: body.lock_delay_ms,
                token: token.to_vec(),
                sequencer: None,
                entry: false,
            },
        );
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.handles.insert(k);
        }
        Ok(())
    }

    /// The common start of every call on a handle: time, session, handle, its path.
    fn on_handle(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        now: Instant,
    ) -> Result<(SessionId, HandleKey, String), WarrenError> {
        self.now = now;
        let sid = self.check(ctx)?;
        let k = self.resolve(sid, token)?;
        let p = self.handles[&k].path.clone();
        self.node_check(&p)?;
        Ok((sid, k, p))
    }

    fn need_intent(&self, k: HandleKey, bit: u32, what: &str) -> Result<(), WarrenError> {
        let h = &self.handles[&k];
        if h.intent & bit == 0 {
            let name = match bit {
                intent::READ => "read",
                intent::WRITE => "write",
                _ => "change-ACL",
            };
            return Err(WarrenError::permission_denied(format!(
                "{what} needs a handle opened with {name} intent; {} was opened without it",
                h.path
            )));
        }
        Ok(())
    }

    /// Checks `principal` against ACL file `name` (SPEC §2: files in /ls/<dep>/acl/).
    fn acl_allows(
        &self,
        principal: &str,
        name: &str,
        what: &str,
        path: &str,
    ) -> Result<(), WarrenError> {
        if name.is_empty() {
            return Ok(());
        }
        let file = format!("{}/acl/{name}", path::root_of(&self.cfg.deployment));
        // A file held by another cell is read there by the server and supplied; until
        // then the check is noted as incomplete (the call then changes nothing, see
        // `acls_complete`).
        let contents: Option<&[u8]> = if self.owner_elsewhere(&file, false)?.is_some() {
            match self.acl_supply.get(&file) {
                Some(c) => c.as_deref(),
                None => {
                    self.acl_needed.borrow_mut().insert(file);
                    return Ok(());
                }
            }
        } else {
            self.nodes.get(&file).map(|n| n.contents.as_slice())
        };
        let Some(contents) = contents else {
            return Err(WarrenError::permission_denied(format!(
                "{what} on {path} is governed by ACL file {file}, which does not exist"
            )));
        };
        let text = String::from_utf8_lossy(contents);
        if text
            .lines()
            .map(str::trim)
            .any(|l| !l.is_empty() && l == principal)
        {
            return Ok(());
        }
        Err(WarrenError::permission_denied(format!(
            "principal {principal:?} may not {what} {path}: it is not listed in ACL file {file}"
        )))
    }

    fn check_open_acl(
        &self,
        principal: &str,
        acl: &AclNames,
        want: u32,
        path: &str,
    ) -> Result<(), WarrenError> {
        if want & intent::READ != 0 {
            self.acl_allows(principal, &acl.read, "read", path)?;
        }
        if want & intent::WRITE != 0 {
            self.acl_allows(principal, &acl.write, "write", path)?;
        }
        if want & intent::CHANGE_ACL != 0 {
            self.acl_allows(principal, &acl.change_acl, "change the ACL of", path)?;
        }
        Ok(())
    }

    fn create_node(
        &mut self,
        p: &str,
        kind: NodeKind,
        ephemeral: bool,
        contents: Vec<u8>,
        acl: AclNames,
    ) {
        let instance = self.meta.next_instance;
        let rec = NodeRecord {
            path: p.to_string(),
            kind,
            instance,
            content_generation: 0,
            lock_generation: 0,
            acl_generation: 0,
            checksum: if kind == NodeKind::File {
                checksum(&contents)
            } else {
                0
            },
            acl,
            ephemeral,
            holders: Vec::new(),
            anchor: false,
            anchor_pending: None,
        };
        self.insert_node(rec, contents);
    }

    /// Adds a new node (its instance already chosen; the instance counter moves past it),
    /// links it into its parent unless it is an anchor, and tells the parent's watchers.
    fn insert_node(&mut self, rec: NodeRecord, contents: Vec<u8>) {
        let p = rec.path.clone();
        let kind = rec.kind;
        let linked = !rec.anchor;
        if rec.anchor_pending.is_some() {
            self.pending_entries.insert(p.clone());
        }
        self.meta.next_instance = self.meta.next_instance.max(rec.instance + 1);
        self.out
            .mutations
            .push(Mutation::PutMeta(self.meta.clone()));
        self.out.mutations.push(Mutation::PutNode(rec.clone()));
        if kind == NodeKind::File {
            self.out.mutations.push(Mutation::PutContents {
                path: p.clone(),
                data: contents.clone(),
            });
        }
        self.nodes.insert(
            p.clone(),
            Node {
                rec,
                contents,
                children: BTreeSet::new(),
                handles: BTreeSet::new(),
                lock_waiters: VecDeque::new(),
                delay_until: None,
            },
        );
        if !linked {
            return;
        }
        if let Some(parent) = path::parent(&p) {
            let child = path::name(&p).to_string();
            if let Some(n) = self.nodes.get_mut(parent) {
                n.children.insert(child.clone());
            }
            let parent = parent.to_string();
            self.notify_handles(
                &parent,
                mask::CHILD_CHANGED,
                EventKind::ChildChanged,
                &child,
                ChildChange::Added,
                None,
            );
        }
        if kind == NodeKind::File {
            self.own_map_written(&p);
        }
    }

    /// The error an `Open` gets while the child anchor of entry `p` (in `owner`) is not
    /// confirmed; the server creates it and runs the `Open` again, so clients see this only
    /// when `owner` could not be reached.
    fn anchor_pending_error(&self, p: &str, owner: &str) -> WarrenError {
        WarrenError::new(
            ErrorCode::FailoverInProgress,
            format!(
                "{p} is a directory whose child anchor in cell {owner} is still being created; retry shortly"
            ),
        )
    }

    /// `Open`: validates, checks where the node lives and the ACLs, creates the node if
    /// asked (after invalidating cached absence and the parent's listing), and returns a
    /// new handle. With a partition map it also splits directories over two cells
    /// (docs/partitioning.md): see [`Target`] and [`CallNotes::anchor`].
    pub fn open(
        &mut self,
        ctx: &Ctx,
        a: &OpenArgs,
        now: Instant,
    ) -> Result<Reply<OpenOk>, WarrenError> {
        self.now = now;
        self.anchor_job = None;
        self.acl_needed.borrow_mut().clear();
        let sid = self.check_as(ctx, true)?;
        path::validate(&a.path, &self.cfg.deployment)?;
        if a.intent & !intent::ALL != 0 {
            return Err(WarrenError::invalid_argument(format!(
                "intent bits {:#x} are not defined",
                a.intent
            )));
        }
        if a.events & !mask::ALL != 0 {
            return Err(WarrenError::invalid_argument(format!(
                "event mask bits {:#x} are not defined",
                a.events
            )));
        }
        if a.lock_delay > self.cfg.max_lock_delay {
            return Err(WarrenError::invalid_argument(format!(
                "lock-delay {:?} is longer than the {:?} limit",
                a.lock_delay, self.cfg.max_lock_delay
            )));
        }
        let principal = self.sessions[&sid].rec.principal.clone();
        let is_cell = principal == CELL_PRINCIPAL;
        match (a.target, &a.create) {
            (Target::Entry, _) if !is_cell => {
                return Err(WarrenError::permission_denied(format!(
                    "Open with target ENTRY is for cells only (principal {CELL_PRINCIPAL:?}); open {} with target NODE",
                    a.path
                )))
            }
            (Target::Entry, Some(_)) => {
                return Err(WarrenError::invalid_argument(
                    "Open with target ENTRY cannot create; entries are created with target NODE",
                ))
            }
            (Target::Anchor, Some(_)) if !is_cell => {
                return Err(WarrenError::permission_denied(format!(
                    "only cells (principal {CELL_PRINCIPAL:?}) create child anchors; open {} with target ANCHOR and no create, or with target NODE to create it",
                    a.path
                )))
            }
            (Target::Anchor, Some(c)) if c.kind != NodeKind::Directory => {
                return Err(WarrenError::invalid_argument(
                    "a child anchor is a directory: create.kind must be DIRECTORY",
                ))
            }
            (Target::Anchor, Some(c)) if c.instance == 0 => {
                return Err(WarrenError::invalid_argument(
                    "creating a child anchor needs create.instance: the instance of the directory's entry",
                ))
            }
            (Target::Node, Some(c)) if c.instance != 0 => {
                return Err(WarrenError::invalid_argument(
                    "create.instance is only for target ANCHOR (cells creating a child anchor)",
                ))
            }
            _ => {}
        }
        self.serve_check(&a.path, a.target == Target::Anchor)?;
        let mut created = false;
        if let Some(n) = self.nodes.get(&a.path) {
            if a.target == Target::Anchor && n.rec.kind != NodeKind::Directory {
                return Err(WarrenError::invalid_argument(format!(
                    "{} is a file; only directories have child anchors (open it with target NODE)",
                    a.path
                )));
            }
            match &a.create {
                Some(c) if a.target == Target::Anchor && c.instance != n.rec.instance => {
                    return Err(WarrenError::already_exists(format!(
                        "{} exists here as instance {}, not as the anchor of instance {} asked for",
                        a.path, n.rec.instance, c.instance
                    )));
                }
                Some(_) if a.target == Target::Anchor => {}
                Some(c) => {
                    if c.exclusive {
                        return Err(WarrenError::already_exists(format!(
                            "{} already exists",
                            a.path
                        )));
                    }
                    if c.kind != n.rec.kind {
                        let what = if n.rec.kind == NodeKind::File {
                            "file"
                        } else {
                            "directory"
                        };
                        return Err(WarrenError::already_exists(format!(
                            "{} already exists as a {what}",
                            a.path
                        )));
                    }
                }
                None => {}
            }
            if a.target == Target::Node && n.rec.kind == NodeKind::Directory {
                if let Some(owner) = self.owner_elsewhere(&a.path, true)? {
                    if let Some(pending) = &n.rec.anchor_pending {
                        self.anchor_job = Some(AnchorJob {
                            path: a.path.clone(),
                            instance: n.rec.instance,
                            acl: n.rec.acl.clone(),
                            ephemeral: pending.ephemeral,
                            owner: owner.clone(),
                            created: false,
                        });
                        return Err(self.anchor_pending_error(&a.path, &owner));
                    }
                    return Err(WarrenError::directory_elsewhere(
                        self.map_epoch(),
                        owner,
                        &a.path,
                    ));
                }
            }
            if a.target != Target::Entry {
                self.check_open_acl(&principal, &n.rec.acl, a.intent, &a.path)?;
            }
            self.acls_complete()?;
        } else {
            let Some(c) = &a.create else {
                let cacheable = self.register_cacher(sid, &a.path);
                let mut e = WarrenError::not_found(format!("{} does not exist", a.path));
                e.cacheable = cacheable;
                return Err(e);
            };
            if a.target == Target::Anchor {
                if let Some(w) = self.create_anchor(sid, a, c)? {
                    return Ok(Reply::Wait(w));
                }
            } else {
                let parent = path::parent(&a.path)
                    .ok_or_else(|| {
                        WarrenError::invalid_argument("the deployment root cannot be created")
                    })?
                    .to_string();
                let Some(pn) = self.nodes.get(&parent) else {
                    return Err(WarrenError::not_found(format!(
                        "cannot create {}: parent directory {parent} does not exist",
                        a.path
                    )));
                };
                if pn.rec.kind != NodeKind::Directory {
                    return Err(WarrenError::invalid_argument(format!(
                        "cannot create {}: {parent} is a file, not a directory",
                        a.path
                    )));
                }
                match c.kind {
                    NodeKind::File if c.contents.len() > self.cfg.max_file_size => {
                        return Err(WarrenError::too_large(format!(
                            "initial contents of {} bytes exceed the {}-byte file limit",
                            c.contents.len(),
                            self.cfg.max_file_size
                        )))
                    }
                    NodeKind::Directory if !c.contents.is_empty() => {
                        return Err(WarrenError::invalid_argument(
                            "a directory cannot have contents",
                        ));
                    }
                    _ => {}
                }
                let acl = c.acl.clone().unwrap_or_else(|| pn.rec.acl.clone());
                check_acl_names(&acl)?;
                self.acl_allows(&principal, &pn.rec.acl.write, "create a node in", &parent)?;
                self.check_open_acl(&principal, &acl, a.intent, &a.path)?;
                self.acls_complete()?;
                // A directory whose own slot is in another cell: its entry here, its child
                // anchor there (created by the server before the client is redirected).
                let elsewhere = if c.kind == NodeKind::Directory {
                    self.owner_elsewhere(&a.path, true)?
                } else {
                    None
                };
                if let Some(w) = self.barrier(sid, &[&a.path, &parent]) {
                    return Ok(Reply::Wait(w));
                }
                self.start_invalidation(&a.path, Some(sid), None);
                if let Some(owner) = elsewhere {
                    let instance = self.meta.next_instance;
                    let rec = NodeRecord {
                        path: a.path.clone(),
                        kind: NodeKind::Directory,
                        instance,
                        content_generation: 0,
                        lock_generation: 0,
                        acl_generation: 0,
                        checksum: 0,
                        acl: acl.clone(),
                        // The entry is never ephemeral; its anchor may be.
                        ephemeral: false,
                        holders: Vec::new(),
                        anchor: false,
                        anchor_pending: Some(PendingAnchor {
                            ephemeral: c.ephemeral,
                        }),
                    };
                    self.insert_node(rec, Vec::new());
                    self.anchor_job = Some(AnchorJob {
                        path: a.path.clone(),
                        instance,
                        acl,
                        ephemeral: c.ephemeral,
                        owner: owner.clone(),
                        created: true,
                    });
                    return Err(self.anchor_pending_error(&a.path, &owner));
                }
                self.create_node(&a.path, c.kind, c.ephemeral, c.contents.clone(), acl);
            }
            created = true;
        }
        let (instance, kind) = {
            let n = &self.nodes[&a.path];
            (n.rec.instance, n.rec.kind)
        };
        let number = self.next_handle;
        self.next_handle += 1;
        let k = (self.meta.epoch, number);
        let token = self.key.mint(&HandleBody {
            cell: self.cfg.cell.clone(),
            epoch: self.meta.epoch,
            number,
            path: a.path.clone(),
            instance,
            intent: a.intent,
            events: a.events,
            lock_delay_ms: a.lock_delay.as_millis() as u64,
            session_id: sid.to_vec(),
        });
        self.handles.insert(
            k,
            Handle {
                session: sid,
                path: a.path.clone(),
                instance,
                intent: a.intent,
                events: a.events,
                lock_delay_ms: a.lock_delay.as_millis() as u64,
                token: token.clone(),
                sequencer: None,
                entry: a.target == Target::Entry,
            },
        );
        self.nodes
            .get_mut(&a.path)
            .expect("exists")
            .handles
            .insert(k);
        self.sessions.get_mut(&sid).expect("live").handles.insert(k);
        let cacheable = self.register_cacher(sid, &a.path);
        let contents =
            (a.read && kind == NodeKind::File).then(|| self.nodes[&a.path].contents.clone());
        Ok(Reply::Done(OpenOk {
            handle: token,
            stat: self.stat_of(&a.path).expect("exists"),
            contents,
            cacheable,
            created,
        }))
    }

    /// Creates the child anchor `a.path` for the entry of instance `c.instance` in the
    /// parent's cell (`Open` target `ANCHOR` with create, from that cell): no parent check,
    /// the entry's instance; refused while this cell still has to unlink that instance's
    /// entry (the directory was deleted). `Some(waiter)`: parked on invalidations.
    fn create_anchor(
        &mut self,
        sid: SessionId,
        a: &OpenArgs,
        c: &CreateArgs,
    ) -> Result<Option<WaiterId>, WarrenError> {
        let gone = PendingUnlink {
            path: a.path.clone(),
            instance: c.instance,
        };
        if self.meta.pending_unlinks.contains(&gone) {
            return Err(WarrenError::not_found(format!(
                "{} (instance {}) was deleted in this cell and its entry is being unlinked from its parent's cell; the anchor is not created again (a new mkdir gets a new instance)",
                a.path, c.instance
            )));
        }
        if !c.contents.is_empty() {
            return Err(WarrenError::invalid_argument(
                "a directory cannot have contents",
            ));
        }
        let acl = c.acl.clone().unwrap_or_default();
        check_acl_names(&acl)?;
        // The entry is elsewhere unless the map puts the parent's slot here too.
        let anchor = self.owner_elsewhere(&a.path, false)?.is_some();
        if let Some(w) = self.barrier(sid, &[&a.path]) {
            return Ok(Some(w));
        }
        self.start_invalidation(&a.path, Some(sid), None);
        let rec = NodeRecord {
            path: a.path.clone(),
            kind: NodeKind::Directory,
            instance: c.instance,
            content_generation: 0,
            lock_generation: 0,
            acl_generation: 0,
            checksum: 0,
            acl,
            ephemeral: c.ephemeral,
            holders: Vec::new(),
            anchor,
            anchor_pending: None,
        };
        self.insert_node(rec, Vec::new());
        if c.ephemeral {
            self.fresh_anchors
                .insert(a.path.clone(), self.now + EPHEMERAL_ANCHOR_GRACE);
        }
        Ok(None)
    }

    /// `Close`: never fails. Releases a lock the handle holds (no lock-delay: this is a
    /// clean release) and deletes an ephemeral node nobody else holds open.
    ///
    /// The only errors are the retryable ones (`STALE_EPOCH`, `FAILOVER_IN_PROGRESS`): the
    /// close must then be sent again, not forgotten.
    pub fn close(&mut self, ctx: &Ctx, token: &[u8], now: Instant) -> Result<(), WarrenError> {
        self.now = now;
        let sid = match self.check(ctx) {
            Ok(sid) => sid,
            Err(e) if e.is_retryable() => return Err(e),
            Err(_) => return Ok(()),
        };
        let Ok(body) = self.key.verify(token) else {
            return Ok(());
        };
        if body.session_id.as_slice() != sid.as_slice() || body.cell != self.cfg.cell {
            return Ok(());
        }
        let k = (body.epoch, body.number);
        if self.handles.contains_key(&k) {
            self.close_handle(k, false);
        } else if body.epoch < self.meta.epoch && !self.closed_old_handles.contains(&k) {
            // Closed without being used since the failover: recreate it so that closing it
            // has its usual effects (its lock released, its ephemeral node deleted), and
            // remember it so a replay cannot recreate it again.
            if self.recreate_handle(sid, k, &body, token).is_ok() {
                self.close_handle(k, false);
            }
            self.closed_old_handles.insert(k);
        }
        Ok(())
    }

    fn close_handle(&mut self, k: HandleKey, failed: bool) {
        let Some(h) = self.handles.remove(&k) else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(&h.session) {
            s.handles.remove(&k);
        }
        if k.0 < self.meta.epoch {
            self.closed_old_handles.insert(k);
        }
        let live = self
            .nodes
            .get(&h.path)
            .is_some_and(|n| n.rec.instance == h.instance);
        if !live {
            return;
        }
        let n = self.nodes.get_mut(&h.path).expect("live");
        n.handles.remove(&k);
        let waiting: Vec<WaiterId> = n
            .lock_waiters
            .iter()
            .filter(|w| w.handle == k)
            .map(|w| w.id)
            .collect();
        n.lock_waiters.retain(|w| w.handle != k);
        for w in waiting {
            if self.waiters.remove(&w).is_some() {
                self.out.wakes.push((
                    w,
                    Wake::Acquire(Err(WarrenError::handle_invalid(
                        "the handle was closed while waiting",
                    ))),
                ));
            }
        }
        self.drop_holder(&h.path, h.session, k, failed);
        self.grant_waiters(&h.path);
        self.maybe_delete_ephemeral(&h.path);
    }

    /// Deletes an ephemeral node once no handle holds it open (and, for a directory, once
    /// it is empty), then its ephemeral parents likewise.
    fn maybe_delete_ephemeral(&mut self, p: &str) {
        let Some(n) = self.nodes.get(p) else { return };
        if !n.rec.ephemeral || !n.handles.is_empty() || !n.children.is_empty() {
            return;
        }
        if self.fresh_anchors.get(p).is_some_and(|t| *t > self.now) {
            return;
        }
        self.fresh_anchors.remove(p);
        // No writer is waiting on this, so the invalidation is not awaited; a later write
        // of these paths still waits for the acknowledgements.
        self.start_invalidation(p, None, None);
        if let Some(parent) = path::parent(p) {
            let parent = parent.to_string();
            self.start_invalidation(&parent, None, None);
        }
        self.remove_node(p, None);
        if let Some(parent) = path::parent(p) {
            let parent = parent.to_string();
            self.maybe_delete_ephemeral(&parent);
        }
    }

    /// Removes a node from memory and the store, telling its watchers and its parent's.
    fn remove_node(&mut self, p: &str, by: Option<HandleKey>) {
        self.notify_handles(
            p,
            mask::HANDLE_INVALID,
            EventKind::HandleInvalid,
            "",
            ChildChange::None,
            by,
        );
        let Some(n) = self.nodes.remove(p) else {
            return;
        };
        self.fresh_anchors.remove(p);
        self.pending_entries.remove(p);
        if n.rec.anchor {
            // The entry in the parent's cell goes next (docs/partitioning.md): recorded in
            // the same commit as the removal, dropped once the entry is gone.
            self.meta.pending_unlinks.push(PendingUnlink {
                path: p.to_string(),
                instance: n.rec.instance,
            });
            self.out
                .mutations
                .push(Mutation::PutMeta(self.meta.clone()));
        }
        for w in n.lock_waiters {
            if self.waiters.remove(&w.id).is_some() {
                self.out.wakes.push((
                    w.id,
                    Wake::Acquire(Err(WarrenError::handle_invalid(format!("{p} was deleted")))),
                ));
            }
        }
        self.out.mutations.push(Mutation::DeleteNode {
            path: p.to_string(),
        });
        if n.rec.anchor {
            return;
        }
        if let Some(parent) = path::parent(p) {
            let child = path::name(p).to_string();
            if let Some(pn) = self.nodes.get_mut(parent) {
                pn.children.remove(&child);
            }
            let parent = parent.to_string();
            self.notify_handles(
                &parent,
                mask::CHILD_CHANGED,
                EventKind::ChildChanged,
                &child,
                ChildChange::Removed,
                None,
            );
        }
    }

    // ------------------------------------------------------------------ reads

    pub fn get_contents(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        now: Instant,
    ) -> Result<(Vec<u8>, StatView, bool), WarrenError> {
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        self.need_intent(k, intent::READ, "reading contents")?;
        let n = &self.nodes[&p];
        if n.rec.kind != NodeKind::File {
            return Err(WarrenError::invalid_argument(format!(
                "{p} is a directory; use ReadDir"
            )));
        }
        let data = n.contents.clone();
        let cacheable = self.register_cacher(sid, &p);
        Ok((data, self.stat_of(&p).expect("exists"), cacheable))
    }

    pub fn get_stat(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        now: Instant,
    ) -> Result<(StatView, bool), WarrenError> {
        let (sid, _, p) = self.on_handle(ctx, token, now)?;
        let cacheable = self.register_cacher(sid, &p);
        Ok((self.stat_of(&p).expect("exists"), cacheable))
    }

    /// `ReadDir`: the names (cacheable, invalidated when children come and go) and each
    /// child's stat as of now (informational; child stats are cached under their own paths).
    pub fn read_dir(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        now: Instant,
    ) -> Result<(Vec<DirEntryView>, StatView, bool), WarrenError> {
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        self.need_intent(k, intent::READ, "listing a directory")?;
        let n = &self.nodes[&p];
        if n.rec.kind != NodeKind::Directory {
            return Err(WarrenError::invalid_argument(format!(
                "{p} is a file, not a directory"
            )));
        }
        let entries = n
            .children
            .iter()
            .filter_map(|c| {
                let cp = format!("{p}/{c}");
                self.stat_of(&cp).map(|stat| DirEntryView {
                    name: c.clone(),
                    anchor_cell: if stat.kind == NodeKind::Directory {
                        self.owner_elsewhere(&cp, true).ok().flatten()
                    } else {
                        None
                    },
                    stat,
                })
            })
            .collect();
        let cacheable = self.register_cacher(sid, &p);
        Ok((entries, self.stat_of(&p).expect("exists"), cacheable))
    }

    // ------------------------------------------------------------------ writes

    pub fn set_contents(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        data: &[u8],
        if_generation: Option<u64>,
        now: Instant,
    ) -> Result<Reply<StatView>, WarrenError> {
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        self.need_intent(k, intent::WRITE, "SetContents")?;
        let n = &self.nodes[&p];
        if n.rec.kind != NodeKind::File {
            return Err(WarrenError::invalid_argument(format!(
                "{p} is a directory; only files have contents"
            )));
        }
        if data.len() > self.cfg.max_file_size {
            return Err(WarrenError::too_large(format!(
                "contents of {} bytes exceed the {}-byte file limit",
                data.len(),
                self.cfg.max_file_size
            )));
        }
        if let Some(g) = if_generation {
            if n.rec.content_generation != g {
                return Err(WarrenError::generation_mismatch(format!(
                    "{p} is at content generation {}, not {g}",
                    n.rec.content_generation
                )));
            }
        }
        // The proxy that forwards a client's write may say it holds no copy for anyone
        // else (then its session, the cacher of record for its clients, is spared).
        let proxy = ctx
            .client
            .as_ref()
            .filter(|c| c.proxy_dropped_copies)
            .map(|_| ctx.session);
        if let Some(w) = self.barrier_exempting(sid, proxy, &[&p]) {
            return Ok(Reply::Wait(w));
        }
        let n = self.nodes.get_mut(&p).expect("exists");
        n.rec.content_generation += 1;
        n.rec.checksum = checksum(data);
        n.contents = data.to_vec();
        let rec = n.rec.clone();
        self.out.mutations.push(Mutation::PutNode(rec));
        self.out.mutations.push(Mutation::PutContents {
            path: p.clone(),
            data: data.to_vec(),
        });
        self.notify_handles(
            &p,
            mask::CONTENTS_MODIFIED,
            EventKind::ContentsModified,
            "",
            ChildChange::None,
            Some(k),
        );
        self.notify_parent_modified(&p);
        self.own_map_written(&p);
        Ok(Reply::Done(self.stat_of(&p).expect("exists")))
    }

    fn notify_parent_modified(&mut self, p: &str) {
        if let Some(parent) = path::parent(p) {
            let parent = parent.to_string();
            self.notify_handles(
                &parent,
                mask::CHILD_CHANGED,
                EventKind::ChildChanged,
                path::name(p),
                ChildChange::Modified,
                None,
            );
        }
    }

    pub fn set_acl(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        acl: &AclNames,
        now: Instant,
    ) -> Result<Reply<StatView>, WarrenError> {
        self.now = now;
        let sid = self.check(ctx)?;
        let k = self.resolve(sid, token)?;
        let p = self.handles[&k].path.clone();
        self.node_check(&p)?;
        self.need_intent(k, intent::CHANGE_ACL, "SetAcl")?;
        check_acl_names(acl)?;
        if let Some(w) = self.barrier(sid, &[&p]) {
            return Ok(Reply::Wait(w));
        }
        let n = self.nodes.get_mut(&p).expect("exists");
        n.rec.acl = acl.clone();
        n.rec.acl_generation += 1;
        self.out.mutations.push(Mutation::PutNode(n.rec.clone()));
        self.notify_parent_modified(&p);
        Ok(Reply::Done(self.stat_of(&p).expect("exists")))
    }

    /// `Delete`: only a node with no children; checks the write ACL (not on a handle a
    /// cell opened with target `ENTRY`: the user's ACL was checked at the anchor). Deleting
    /// a child anchor whose entry is in another cell returns the [`PendingUnlink`] recorded
    /// with it: the server removes the entry there next.
    pub fn delete(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        now: Instant,
    ) -> Result<Reply<Option<PendingUnlink>>, WarrenError> {
        self.acl_needed.borrow_mut().clear();
        self.anchor_job = None;
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        let Some(parent) = path::parent(&p).map(str::to_string) else {
            return Err(WarrenError::invalid_argument(
                "the deployment root cannot be deleted",
            ));
        };
        let principal = self.sessions[&sid].rec.principal.clone();
        let n = &self.nodes[&p];
        if !self.handles[&k].entry {
            self.acl_allows(&principal, &n.rec.acl.write, "delete", &p)?;
        }
        if !n.children.is_empty() {
            return Err(WarrenError::not_empty(format!(
                "{p} has {} children; delete them first",
                n.children.len()
            )));
        }
        self.acls_complete()?;
        let anchor = n.rec.anchor;
        if let Some(w) = self.barrier(sid, &[&p, &parent]) {
            return Ok(Reply::Wait(w));
        }
        self.remove_node(&p, Some(k));
        Ok(Reply::Done(anchor.then(|| {
            self.meta
                .pending_unlinks
                .last()
                .cloned()
                .expect("removing an anchor records its unlink")
        })))
    }

    // ------------------------------------------------------------------ locks

    fn grantable(n: &Node, mode: LockMode, now: Instant) -> bool {
        if n.delay_until.is_some_and(|d| d > now) {
            return false;
        }
        match mode {
            LockMode::Exclusive => n.rec.holders.is_empty(),
            LockMode::Shared => n.rec.holders.iter().all(|h| h.mode == LockMode::Shared),
        }
    }

    fn grant(&mut self, p: &str, sid: SessionId, k: HandleKey, mode: LockMode) -> SequencerView {
        let delay = self.handles.get(&k).map_or(0, |h| h.lock_delay_ms);
        let n = self.nodes.get_mut(p).expect("exists");
        let was_free = n.rec.holders.is_empty();
        if was_free {
            n.rec.lock_generation += 1;
        }
        n.rec.holders.push(LockHolder {
            session: sid,
            handle_epoch: k.0,
            handle: k.1,
            mode,
            lock_delay_ms: delay,
        });
        let seq = SequencerView {
            path: p.to_string(),
            mode,
            instance: n.rec.instance,
            lock_generation: n.rec.lock_generation,
        };
        self.out.mutations.push(Mutation::PutNode(n.rec.clone()));
        if was_free {
            // The stat (lock generation) changed. Nobody waits on this (see
            // maybe_delete_ephemeral); the acquirer learns the new generation from its reply.
            self.start_invalidation(p, Some(sid), None);
        }
        self.notify_handles(
            p,
            mask::LOCK_ACQUIRED,
            EventKind::LockAcquired,
            "",
            ChildChange::None,
            Some(k),
        );
        seq
    }

    /// Grants queued Acquires in order while they are compatible.
    fn grant_waiters(&mut self, p: &str) {
        loop {
            let now = self.now;
            let Some(n) = self.nodes.get_mut(p) else {
                return;
            };
            let Some(front) = n.lock_waiters.front() else {
                return;
            };
            if !Self::grantable(n, front.mode, now) {
                return;
            }
            let w = n.lock_waiters.pop_front().expect("front");
            if self.waiters.remove(&w.id).is_none() {
                continue;
            }
            let seq = self.grant(p, w.session, w.handle, w.mode);
            self.out.wakes.push((w.id, Wake::Acquire(Ok(seq))));
        }
    }

    fn drop_holder(&mut self, p: &str, sid: SessionId, k: HandleKey, failed: bool) -> bool {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(p) else {
            return false;
        };
        let Some(i) = n
            .rec
            .holders
            .iter()
            .position(|h| (h.handle_epoch, h.handle) == k && h.session == sid)
        else {
            return false;
        };
        let h = n.rec.holders.remove(i);
        if failed && h.lock_delay_ms > 0 {
            let until = now + Duration::from_millis(h.lock_delay_ms);
            n.delay_until = Some(n.delay_until.map_or(until, |d| d.max(until)));
        }
        self.out.mutations.push(Mutation::PutNode(n.rec.clone()));
        true
    }

    fn lock_prelude(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        mode: LockMode,
        now: Instant,
    ) -> Result<(SessionId, HandleKey, String, Option<SequencerView>), WarrenError> {
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        self.need_intent(k, intent::WRITE, "locking")?;
        let n = &self.nodes[&p];
        if let Some(h) = n
            .rec
            .holders
            .iter()
            .find(|h| (h.handle_epoch, h.handle) == k)
        {
            if h.mode != mode {
                return Err(WarrenError::invalid_argument(format!(
                    "this handle already holds the lock on {p} in {} mode",
                    mode_name(h.mode)
                )));
            }
            let seq = SequencerView {
                path: p.clone(),
                mode,
                instance: n.rec.instance,
                lock_generation: n.rec.lock_generation,
            };
            return Ok((sid, k, p, Some(seq)));
        }
        if n.lock_waiters.iter().any(|w| w.handle == k) {
            return Err(WarrenError::invalid_argument(format!(
                "an Acquire on this handle of {p} is already waiting"
            )));
        }
        Ok((sid, k, p, None))
    }

    fn why_not(&self, p: &str, mode: LockMode) -> String {
        let n = &self.nodes[p];
        if let Some(d) = n.delay_until.filter(|d| *d > self.now) {
            return format!(
                "{p} is in lock-delay for another {} ms after its holder's session failed",
                d.duration_since(self.now).as_millis()
            );
        }
        if !n.rec.holders.is_empty() {
            let held = mode_name(n.rec.holders[0].mode);
            return format!(
                "{p} is held in {held} mode by {} holder(s)",
                n.rec.holders.len()
            );
        }
        format!("{p} has earlier waiters for a {} lock", mode_name(mode))
    }

    fn conflicting(&mut self, p: &str, k: HandleKey) {
        let holders: Vec<HandleKey> = self.nodes[p]
            .rec
            .holders
            .iter()
            .map(|h| (h.handle_epoch, h.handle))
            .collect();
        for hk in holders {
            let Some(h) = self.handles.get(&hk) else {
                continue;
            };
            if hk != k && h.events & mask::CONFLICTING_LOCK != 0 {
                let (sid, tok) = (h.session, h.token.clone());
                self.push_event(
                    sid,
                    EventKind::ConflictingLock,
                    tok,
                    p,
                    "",
                    ChildChange::None,
                );
            }
        }
    }

    /// `Acquire`: waits (FIFO) until the lock can be granted, or until `timeout`.
    pub fn acquire(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        mode: LockMode,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<Reply<SequencerView>, WarrenError> {
        let (sid, k, p, held) = self.lock_prelude(ctx, token, mode, now)?;
        if let Some(seq) = held {
            return Ok(Reply::Done(seq));
        }
        let n = &self.nodes[&p];
        if n.lock_waiters.is_empty() && Self::grantable(n, mode, now) {
            return Ok(Reply::Done(self.grant(&p, sid, k, mode)));
        }
        if timeout == Some(Duration::ZERO) {
            return Err(WarrenError::lock_held(self.why_not(&p, mode)));
        }
        self.conflicting(&p, k);
        let id = self.new_waiter(WaiterKind::Acquire(p.clone()));
        self.nodes
            .get_mut(&p)
            .expect("exists")
            .lock_waiters
            .push_back(LockWaiter {
                id,
                session: sid,
                handle: k,
                mode,
                deadline: timeout.map(|t| now + t),
            });
        Ok(Reply::Wait(id))
    }

    /// `TryAcquire`: the lock now, or `LOCK_HELD` saying why not.
    pub fn try_acquire(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        mode: LockMode,
        now: Instant,
    ) -> Result<SequencerView, WarrenError> {
        let (sid, k, p, held) = self.lock_prelude(ctx, token, mode, now)?;
        if let Some(seq) = held {
            return Ok(seq);
        }
        let n = &self.nodes[&p];
        if n.lock_waiters.is_empty() && Self::grantable(n, mode, now) {
            return Ok(self.grant(&p, sid, k, mode));
        }
        self.conflicting(&p, k);
        Err(WarrenError::lock_held(self.why_not(&p, mode)))
    }

    /// `Release`: idempotent; says whether the handle held the lock.
    pub fn release(&mut self, ctx: &Ctx, token: &[u8], now: Instant) -> Result<bool, WarrenError> {
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        let was = self.drop_holder(&p, sid, k, false);
        self.grant_waiters(&p);
        Ok(was)
    }

    pub fn get_sequencer(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        now: Instant,
    ) -> Result<SequencerView, WarrenError> {
        let (_, k, p) = self.on_handle(ctx, token, now)?;
        let n = &self.nodes[&p];
        let Some(h) = n
            .rec
            .holders
            .iter()
            .find(|h| (h.handle_epoch, h.handle) == k)
        else {
            return Err(WarrenError::invalid_argument(format!(
                "this handle does not hold the lock on {p}"
            )));
        };
        Ok(SequencerView {
            path: p.clone(),
            mode: h.mode,
            instance: n.rec.instance,
            lock_generation: n.rec.lock_generation,
        })
    }

    /// `SetSequencer`: later calls on the handle fail once `seq` is stale.
    pub fn set_sequencer(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        seq: SequencerView,
        now: Instant,
    ) -> Result<(), WarrenError> {
        self.now = now;
        path::validate(&seq.path, &self.cfg.deployment)?;
        let sid = self.check(ctx)?;
        let k = self.resolve(sid, token)?;
        let p = self.handles[&k].path.clone();
        self.node_check(&p)?;
        self.node_check(&seq.path)?;
        if !self.sequencer_current(&seq) {
            return Err(WarrenError::generation_mismatch(format!(
                "the sequencer for {} (lock generation {}) is not current",
                seq.path, seq.lock_generation
            )));
        }
        self.handles.get_mut(&k).expect("resolved").sequencer = Some(seq);
        Ok(())
    }

    pub fn check_sequencer(
        &mut self,
        ctx: &Ctx,
        seq: &SequencerView,
        now: Instant,
    ) -> Result<bool, WarrenError> {
        self.now = now;
        self.check(ctx)?;
        path::validate(&seq.path, &self.cfg.deployment)?;
        self.node_check(&seq.path)?;
        // A directory's lock lives with its child anchor: here is only its entry.
        let dir = self
            .nodes
            .get(&seq.path)
            .is_some_and(|n| n.rec.kind == NodeKind::Directory);
        if dir {
            if let Some(owner) = self.owner_elsewhere(&seq.path, true)? {
                return Err(WarrenError::directory_elsewhere(
                    self.map_epoch(),
                    owner,
                    &seq.path,
                ));
            }
        }
        Ok(self.sequencer_current(seq))
    }

    fn sequencer_current(&self, seq: &SequencerView) -> bool {
        self.nodes.get(&seq.path).is_some_and(|n| {
            n.rec.instance == seq.instance
                && n.rec.lock_generation == seq.lock_generation
                && !n.rec.holders.is_empty()
                && n.rec.holders.iter().all(|h| h.mode == seq.mode)
        })
    }
}

impl Session {
    fn new(rec: SessionRecord, lease_end: Instant) -> Self {
        Session {
            rec,
            lease_end,
            events: VecDeque::new(),
            next_seq: 1,
            acked: 0,
            delivered_upto: 0,
            keepalive: None,
            handles: BTreeSet::new(),
            cached: HashSet::new(),
            pending_invalidations: BTreeMap::new(),
            subs: BTreeSet::new(),
            orphan_until: None,
        }
    }
}

#[cfg(test)]
mod partition_tests;
#[cfg(test)]
mod tests;
