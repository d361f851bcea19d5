//! The cell's durable state and the [`Store`] trait its backends implement.
//!
//! What is recorded (docs/design.md §9): nodes with their metadata and contents, sessions, held
//! locks (inside each node record) and the ephemeral flag of every node, plus the cell's
//! meta record (epoch, handle-MAC secret, instance counter). Handles and caches are not
//! recorded: a new master rebuilds them from clients.
//!
//! The master applies a change in memory, hands the resulting [`Mutation`]s to the store
//! in order, and replies to the client only once the store says they are durable.

pub mod embedded;
pub mod etcd;
pub mod fenced;
pub mod memory;

use serde::{Deserialize, Serialize};

/// A 128-bit session id.
pub type SessionId = [u8; 16];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    File,
    Directory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockMode {
    Exclusive,
    Shared,
}

/// ACL file names (in `/ls/<deployment>/acl/`); empty means unrestricted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclNames {
    pub read: String,
    pub write: String,
    pub change_acl: String,
}

/// Who holds a lock: a session and the handle it acquired through. A handle is named by
/// the epoch of the master that created it and its number in that epoch, so a holder
/// recorded before a failover can be matched when the client recreates its handle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub session: SessionId,
    pub handle_epoch: u64,
    pub handle: u64,
    pub mode: LockMode,
    /// Lock-delay the holder's handle asked for, applied if its session dies holding it.
    pub lock_delay_ms: u64,
}

/// A node's metadata as recorded (docs/design.md §3): what clients see in its stat besides the
/// counts derived from its children and contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    pub kind: NodeKind,
    pub instance: u64,
    pub content_generation: u64,
    pub lock_generation: u64,
    pub acl_generation: u64,
    pub checksum: u64,
    pub acl: AclNames,
    pub ephemeral: bool,
}

/// A node's metadata and lock state. Contents are stored separately (they can be 256 KiB;
/// lock operations should not rewrite them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Full path, `/ls/<deployment>/…`.
    pub path: String,
    /// Flattened: the record's JSON has the metadata fields at its top level, as records
    /// written before [`NodeMeta`] was split out do.
    #[serde(flatten)]
    pub meta: NodeMeta,
    #[serde(default)]
    pub holders: Vec<LockHolder>,
    /// A directory's child anchor whose entry lives in another cell (docs/partitioning.md,
    /// "Directories split over two cells"): it is no child of a local parent node, and
    /// removing it leaves a [`PendingUnlink`] for the entry.
    #[serde(default)]
    pub anchor: bool,
    /// A directory's entry whose child anchor (in another cell) may not exist yet: set when
    /// the entry is created, cleared once the anchor cell has confirmed the anchor.
    #[serde(default)]
    pub anchor_pending: Option<PendingAnchor>,
}

/// What the child anchor of an entry marked anchor-pending is to be created with (besides
/// the entry's path, instance and ACL names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAnchor {
    /// The directory was created ephemeral: its anchor is (the entry never is).
    #[serde(default)]
    pub ephemeral: bool,
}

/// A child anchor removed here whose entry (in its parent's cell) is still to be removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUnlink {
    pub path: String,
    /// The instance of the removed anchor (and of its entry).
    pub instance: u64,
}

/// A session as recorded (JSON; fields added later default when absent, so records
/// written before them still load).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: SessionId,
    pub secret: [u8; 16],
    pub principal: String,
    /// A proxy's upstream session (`CreateSession{proxy: true}`): granted the proxy lease,
    /// may act for client sub-sessions and claim them.
    #[serde(default)]
    pub proxy: bool,
    /// A client sub-session: the proxy session it was registered by or last claimed by
    /// (docs/design.md §10). `None` for sessions created with `CreateSession`.
    #[serde(default)]
    pub parent: Option<SessionId>,
    /// Sub-sessions: the master epoch in which this sub-session was (re-)registered. A
    /// handle minted before `(registered_epoch, registered_handle)` belongs to an earlier
    /// life of the same client session and is never recreated.
    #[serde(default)]
    pub registered_epoch: u64,
    /// Sub-sessions: the first handle number of `registered_epoch` this life may own.
    #[serde(default)]
    pub registered_handle: u64,
}

/// The cell's own record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRecord {
    /// Current master epoch; strictly increases at every takeover.
    pub epoch: u64,
    /// Key for handle check digits. Generated once, never changes.
    pub secret: [u8; 32],
    /// Next node instance number; instances are never reused.
    pub next_instance: u64,
    pub deployment: String,
    pub cell: String,
    /// The longest lease any master of this cell has granted (ms). A new master extends
    /// every restored session to this, since the previous master may have promised it.
    #[serde(default)]
    pub max_lease_granted_ms: u64,
    /// The same for proxy sessions, which are granted the (longer) proxy lease.
    #[serde(default)]
    pub max_proxy_lease_granted_ms: u64,
    /// Child anchors removed whose entries in other cells are still to be removed; each is
    /// added in the commit that removes its anchor and dropped once the entry is gone.
    #[serde(default)]
    pub pending_unlinks: Vec<PendingUnlink>,
    /// Slots this cell has handed off to another cell in a reshard (docs/resharding.md):
    /// never served here again, whatever the map in force says, until a map at least as
    /// new as the hand-off's is in force.
    #[serde(default)]
    pub handed_off: Vec<HandedOff>,
    /// Handle keys of other cells this cell received slots from (and of the cells those
    /// had received slots from): handles minted there on moved nodes keep working here.
    #[serde(default)]
    pub foreign_keys: std::collections::BTreeMap<String, [u8; 32]>,
    /// Epochs this cell's state never ran in: those a restore jumped over
    /// (docs/backup.md, "Handles"). A handle minted in one of them was made by a master
    /// whose writes were lost with the cell; it is refused, never recreated.
    #[serde(default)]
    pub lost_epochs: Vec<EpochRange>,
}

/// Epochs `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRange {
    pub first: u64,
    pub last: u64,
}

/// A slot given up in a reshard: from the hand-off on, calls for it are answered
/// `WRONG_CELL{map_epoch, to}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedOff {
    pub slot: u32,
    pub to: String,
    /// The map epoch that gives `to` the slot.
    pub map_epoch: u64,
    /// The reshard job that moved it.
    pub job: String,
}

/// One durable change. A batch of them is applied atomically, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    PutMeta(MetaRecord),
    PutNode(NodeRecord),
    /// Contents of the file at `path` (replaces any previous contents).
    PutContents {
        path: String,
        data: Vec<u8>,
    },
    /// Removes the node and its contents.
    DeleteNode {
        path: String,
    },
    PutSession(SessionRecord),
    DeleteSession(SessionId),
    /// A node part staged by a reshard at the slot's new owner, before the map gives it
    /// the slot (docs/resharding.md): `key` is `<slot>/<path>`, `value` opaque to the store.
    PutStaged {
        key: String,
        value: Vec<u8>,
    },
    DeleteStaged {
        key: String,
    },
}

/// Everything a store holds, as loaded by a new master.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: Option<MetaRecord>,
    pub nodes: Vec<NodeRecord>,
    /// path → contents (files only; a file with no entry has empty contents).
    pub contents: Vec<(String, Vec<u8>)>,
    pub sessions: Vec<SessionRecord>,
    /// Staged reshard records, `(key, value)` as [`Mutation::PutStaged`] wrote them.
    pub staged: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("stored record is corrupt ({what}): {detail}")]
    Corrupt { what: String, detail: String },
    /// The store refused the write because this replica is no longer master (etcd fencing).
    #[error("not master any more: {0}")]
    Fenced(String),
}

/// A cell's durable store. Implementations: [`embedded::EmbeddedStore`] (redb, the default)
/// and, later, etcd.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads the whole state. Called once by a new master.
    async fn load(&self) -> Result<Snapshot, StoreError>;
    /// Applies `batch` atomically and durably (fsync or quorum) before returning.
    async fn commit(&self, batch: Vec<Mutation>) -> Result<(), StoreError>;
    /// A short name for status pages: `embedded`, `etcd`, `memory`.
    fn kind(&self) -> &'static str;
}
