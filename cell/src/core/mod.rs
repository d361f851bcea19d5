//! The master's state machine: sessions, handles, the namespace, locks, events and
//! cache invalidation, as plain code with no sockets and no tokio tasks (sans-IO, like
//! openraft's engine).
//!
//! Every operation takes the current time and returns either a result or
//! [`Reply::Wait`] with a [`WaiterId`]; the changes it made to durable state and the
//! waiters it woke are collected in an [`Output`] that the async layer drains with
//! [`Master::take_output`]: it commits the mutations to the store, in order, and only
//! then delivers the replies. Time passes only through [`Master::tick`].
//!
//! This file holds the [`Master`] itself, its configuration and what every operation
//! returns; each concern's operations live in a submodule of their own (all of them
//! `impl Master` blocks over the same state).

pub mod path;
pub mod token;

mod acl;
mod caching;
mod caller;
mod events;
mod handles;
mod inspect;
mod keepalive;
mod locks;
mod map_guard;
mod nodes;
mod open;
mod partition;
mod reads;
mod recover;
pub mod reshard;
mod sessions;
mod sub_sessions;
mod time;
mod writes;

pub use caching::{DESERTED_GRACE, HOLD_BACK_MARGIN};
pub use caller::{Caller, CallerRules};
pub use events::{mask, ChildChange, Event, EventKind};
pub use handles::intent;
pub use inspect::{HeldLockView, LockPartyView, LockView, SessionTableView, SessionView};
pub use keepalive::KeepAliveReply;
pub use locks::SequencerView;
pub use nodes::StatView;
pub use open::{CreateArgs, OpenArgs, OpenOk, Target};
pub use partition::{AnchorJob, CallNotes};
pub use reads::DirEntryView;
pub use sessions::{ClientCtx, Ctx, SessionCreated};

use crate::store::{MetaRecord, Mutation, SessionId};
use handles::Handle;
use nodes::Node;
use rand::rngs::StdRng;
use recover::Recovery;
use sessions::Session;
use std::cell::RefCell;
use std::collections::BTreeSet;

/// The master's hash maps and sets. In `sim` builds their hasher has fixed keys, so their
/// iteration order — which orders some of the master's output — is the same in every run
/// of a seed (docs/reliability.md, "Deterministic simulation"); in every other build,
/// std's randomly keyed one.
#[cfg(feature = "sim")]
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, FixedState>;
#[cfg(feature = "sim")]
pub(crate) type HashSet<T> = std::collections::HashSet<T, FixedState>;
/// The fixed-key hasher of `sim` builds (SipHash with zero keys).
#[cfg(feature = "sim")]
pub(crate) type FixedState =
    std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;
#[cfg(not(feature = "sim"))]
pub(crate) use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use time::WaiterKind;
use token::TokenKey;
use tokio::time::Instant;
use warren_proto::WarrenError;
use warren_router::PartitionMap;
use warren_server::lease::Tombstones;

/// The principal cells use for their internal sessions at other cells: only it may create
/// child anchors (`Open` target `ANCHOR` with create) and open entries (target `ENTRY`).
pub const CELL_PRINCIPAL: &str = "warren:cell";

/// The principal of the map code path's sessions at the meta cell (`warren ctl deployment
/// init`, `warren ctl map repair`, `warren dev`, the test harnesses): only it and
/// [`CELL_PRINCIPAL`] may write the partition map (docs/partitioning.md, "Who may write the
/// map"). Defined by the client library, which opens those sessions.
pub const OPERATOR_PRINCIPAL: &str = warren_client::admin::OPERATOR_PRINCIPAL;

/// How long an ephemeral child anchor created for another cell's entry survives with no
/// handle open, so that the client whose `Open` created it can reach it and open it.
pub const EPHEMERAL_ANCHOR_GRACE: Duration = Duration::from_secs(10);

/// Settings the master logic needs (a slice of the cell's configuration).
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub cell: String,
    pub deployment: String,
    /// Lease granted to sessions (default 12 s).
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
    /// (docs/design.md §9 step 9; default 60 s).
    pub ephemeral_cleanup: Duration,
    /// The meta cell's replicas. Given, this is a data cell: its partition map comes from
    /// the meta cell ([`Master::set_map`]) and it serves nothing but session calls until
    /// the first map arrives. Empty: the meta cell, or the only cell of an unpartitioned
    /// deployment; its map is the file `/ls/<d>/warren/map` in its own namespace, if any.
    pub meta: Vec<String>,
    /// Who may act as a proxy and who is an operator, for calls with an authenticated
    /// principal (docs/security.md, "Authorization").
    pub callers: CallerRules,
}

impl CoreConfig {
    /// Defaults of docs/design.md §16 for a cell `cell` in deployment `deployment`.
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
            callers: CallerRules::default(),
        }
    }
}

/// Identifies an operation that is waiting (a held KeepAlive, a waiting Acquire, a write
/// blocked on cache invalidation).
pub type WaiterId = u64;

/// A handle is named by the epoch that created it and its number in that epoch.
pub type HandleKey = (u64, u64);

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

/// Counts for `/status` (the server's `CellStatus` shows them as they are here).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MasterStatus {
    /// The cell's name (`name` in `/status`).
    #[serde(rename = "name")]
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

/// The master of one cell.
pub struct Master {
    cfg: CoreConfig,
    meta: MetaRecord,
    key: TokenKey,
    rng: StdRng,
    now: Instant,
    nodes: HashMap<String, Node>,
    sessions: HashMap<SessionId, Session>,
    /// The sessions with a lease of their own: every session but client sub-sessions,
    /// which live as long as their proxy session. The ticker scans these (held
    /// KeepAlives, lapsed leases, the next deadline) and not `sessions`, so its cost per
    /// tick does not grow with the clients the proxies hold here (tens of thousands per
    /// proxy; docs/performance.md, "Mass expiry after a proxy dies"). Kept by
    /// [`Master::insert_session`] and [`Master::remove_session`].
    leased: BTreeSet<SessionId>,
    handles: HashMap<HandleKey, Handle>,
    next_handle: u64,
    /// Handles of earlier epochs closed in this epoch; never recreated again (docs/design.md §9 step 8).
    closed_old_handles: HashSet<HandleKey>,
    /// path → sessions that may cache it (its data, stat, or its absence).
    cachers: HashMap<String, HashSet<SessionId>>,
    /// path → sessions told to drop it that have not acknowledged. Non-empty: uncachable.
    invalidating: HashMap<String, HashSet<SessionId>>,
    /// path → writes waiting for `invalidating[path]` to drain.
    barriers: HashMap<String, Vec<WaiterId>>,
    /// (when, proxy session, event seq): an invalidation sent to a proxy session that
    /// promised a hold-back stops being waited for at `when` (docs/design.md §10, "A dead
    /// proxy"). Entries whose invalidation was acknowledged meanwhile are skipped.
    invalidation_deadlines: BTreeSet<(Instant, SessionId, u64)>,
    /// (when, proxy session): a deserted proxy session with an invalidation outstanding is
    /// ended at `when` unless it acknowledged meanwhile (docs/design.md §10).
    deserted_checks: BTreeSet<(Instant, SessionId)>,
    waiters: HashMap<WaiterId, WaiterKind>,
    next_waiter: WaiterId,
    recovery: Option<Recovery>,
    /// Orphaned sub-sessions by the time they end unless claimed.
    orphans: BTreeSet<(Instant, SessionId)>,
    /// Ended sub-sessions, remembered (with their secret) until the given time so that
    /// late calls and claims answer `SESSION_EXPIRED`.
    tombstones: Tombstones<SessionId, [u8; 16]>,
    /// The partition map in force (`None`: unpartitioned, or a data cell that has not
    /// loaded one yet).
    map: Option<Arc<PartitionMap>>,
    /// Ephemeral nodes not deleted for lack of handles before the given time: anchors just
    /// created for another cell's entry, and nodes a reshard just moved here.
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
    /// Frozen, moving and staged slots of reshards (docs/resharding.md).
    reshard: reshard::ReshardState,
    out: Output,
}

impl Master {
    pub fn epoch(&self) -> u64 {
        self.meta.epoch
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn status(&self) -> MasterStatus {
        let subs = self.sessions.len() - self.leased.len();
        let proxies = self
            .leased
            .iter()
            .filter(|id| self.sessions.get(*id).is_some_and(|s| s.rec.proxy))
            .count();
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

    /// Drains what the last operations produced.
    pub fn take_output(&mut self) -> Output {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests;
