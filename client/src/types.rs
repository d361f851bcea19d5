//! The client's domain types — node metadata, lock modes, sequencers, events, event masks,
//! `Locate` answers — and their conversions from and to the wire types in `warren_proto::pb`.
//!
//! Replies are converted with `TryFrom`, which fails with [`Error::Protocol`] when a
//! required field is missing or an enum value is unknown: a bad reply is an error, never a
//! panic. Nothing here does I/O.

use crate::error::Error;
use std::fmt;
use std::ops::{BitOr, BitOrAssign};
use std::str::FromStr;
use warren_proto::pb;

/// The text names of a domain enum, from one table of variants and names: `as_str`
/// (documented with the given line) and `Display`. With `wire`, the enum mirrors the wire
/// enum of the same name and variants: also `from_wire` (an unknown value is a protocol
/// error naming `what`) and `From<Self>` for the wire enum.
macro_rules! named_enum {
    ($name:ident, $doc:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            #[doc = $doc]
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
    ($name:ident, $doc:literal, { $($variant:ident => $text:literal),+ $(,)? }, wire $what:literal) => {
        named_enum!($name, $doc, { $($variant => $text),+ });

        impl $name {
            fn from_wire(raw: i32) -> Result<Self, Error> {
                match pb::$name::try_from(raw) {
                    $(Ok(pb::$name::$variant) => Ok($name::$variant),)+
                    _ => Err(Error::Protocol(format!(concat!("unknown ", $what, " {}"), raw))),
                }
            }
        }

        impl From<$name> for pb::$name {
            fn from(value: $name) -> Self {
                match value {
                    $($name::$variant => pb::$name::$variant,)+
                }
            }
        }
    };
}

/// Whether a node is a file or a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A file: whole-file contents, lockable.
    File,
    /// A directory: holds children, lockable, no contents.
    Directory,
}

named_enum!(
    NodeKind,
    "`\"file\"` or `\"directory\"`.",
    { File => "file", Directory => "directory" },
    wire "node kind"
);

/// Names of the ACL files (in `/ls/<deployment>/acl/`) that govern a node. An empty name
/// restricts nobody.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AclNames {
    /// Who may open the node for reading.
    pub read: String,
    /// Who may open the node for writing (and lock it, and delete it).
    pub write: String,
    /// Who may change the node's ACL names.
    pub change_acl: String,
}

impl From<pb::AclNames> for AclNames {
    fn from(acl: pb::AclNames) -> Self {
        AclNames {
            read: acl.read,
            write: acl.write,
            change_acl: acl.change_acl,
        }
    }
}

impl From<AclNames> for pb::AclNames {
    fn from(acl: AclNames) -> Self {
        pb::AclNames {
            read: acl.read,
            write: acl.write,
            change_acl: acl.change_acl,
        }
    }
}

/// A node's metadata (docs/design.md §3). Every generation number only ever grows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stat {
    /// File or directory.
    pub kind: NodeKind,
    /// Greater than that of any earlier node of the same name: tells a re-created node from
    /// the one it replaced.
    pub instance: u64,
    /// Files: +1 per write. The value `Handle::set_contents_if` compares against.
    pub content_generation: u64,
    /// +1 each time the lock goes from free to held.
    pub lock_generation: u64,
    /// +1 per ACL change.
    pub acl_generation: u64,
    /// xxh3-64 of the contents (0 for directories).
    pub checksum: u64,
    /// The ACL files governing the node.
    pub acl: AclNames,
    /// Deleted when no client has it open.
    pub ephemeral: bool,
    /// Number of children (directories).
    pub child_count: u64,
    /// Length of the contents in bytes.
    pub length: u64,
    /// The cell that holds the node (for a directory: the cell of its children). Empty
    /// from a server that does not say.
    pub cell: String,
}

impl TryFrom<pb::Stat> for Stat {
    type Error = Error;
    fn try_from(s: pb::Stat) -> Result<Self, Error> {
        Ok(Stat {
            kind: NodeKind::from_wire(s.kind)?,
            instance: s.instance,
            content_generation: s.content_generation,
            lock_generation: s.lock_generation,
            acl_generation: s.acl_generation,
            checksum: s.checksum,
            acl: s.acl.map(AclNames::from).unwrap_or_default(),
            ephemeral: s.ephemeral,
            child_count: s.child_count,
            length: s.length,
            cell: s.cell,
        })
    }
}

/// Converts a required `Stat` field of a reply; `what` names the reply for the error.
pub(crate) fn required_stat(stat: Option<pb::Stat>, what: &str) -> Result<Stat, Error> {
    stat.ok_or_else(|| Error::Protocol(format!("{what} reply has no stat")))?
        .try_into()
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DirEntry {
    /// The child's name (one path component, not a path).
    pub name: String,
    /// The child's metadata.
    pub stat: Stat,
}

impl TryFrom<pb::DirEntry> for DirEntry {
    type Error = Error;
    fn try_from(e: pb::DirEntry) -> Result<Self, Error> {
        if e.name.is_empty() {
            return Err(Error::Protocol("directory entry has no name".into()));
        }
        let stat = required_stat(e.stat, "directory entry")?;
        Ok(DirEntry { name: e.name, stat })
    }
}

/// Reader/writer lock modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// One holder, no readers (writer mode).
    Exclusive,
    /// Any number of holders, no exclusive holder (reader mode).
    Shared,
}

named_enum!(
    LockMode,
    "`\"exclusive\"` or `\"shared\"`.",
    { Exclusive => "exclusive", Shared => "shared" },
    wire "lock mode"
);

impl LockMode {
    /// The letter used in a sequencer's text form: `x` or `s`.
    pub fn letter(self) -> char {
        match self {
            LockMode::Exclusive => 'x',
            LockMode::Shared => 's',
        }
    }
}

/// Names one holding of a lock: the node, the mode, the node's instance and the lock
/// generation at acquisition. Pass it to a server that acts under the lock, which checks it
/// with `Session::check_sequencer` (or `Handle::set_sequencer`) to refuse stale holders.
///
/// Text form (`Display` / `FromStr`): `<path>:<x|s>:<instance>:<lock_generation>`, e.g.
/// `/ls/local/jobs/leader:x:3:17`. Paths never contain `:`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sequencer {
    /// The locked node's full path (`/ls/<deployment>/…`).
    pub path: String,
    /// The mode the lock was acquired in.
    pub mode: LockMode,
    /// The node's instance when the lock was acquired.
    pub instance: u64,
    /// The node's lock generation when the lock was acquired.
    pub lock_generation: u64,
}

impl fmt::Display for Sequencer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.path,
            self.mode.letter(),
            self.instance,
            self.lock_generation
        )
    }
}

impl FromStr for Sequencer {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "sequencer {s:?} {why}; expected <path>:<x|s>:<instance>:<lock_generation>"
            ))
        };
        let parts: Vec<&str> = s.split(':').collect();
        let [path, mode, instance, generation] = parts[..] else {
            return Err(bad("does not have four ':'-separated fields"));
        };
        if !path.starts_with('/') {
            return Err(bad("has a path that does not start with '/'"));
        }
        let mode = match mode {
            "x" => LockMode::Exclusive,
            "s" => LockMode::Shared,
            _ => return Err(bad("has a mode that is neither 'x' nor 's'")),
        };
        let instance = instance
            .parse()
            .map_err(|_| bad("has an instance that is not a number"))?;
        let lock_generation = generation
            .parse()
            .map_err(|_| bad("has a lock generation that is not a number"))?;
        Ok(Sequencer {
            path: path.to_string(),
            mode,
            instance,
            lock_generation,
        })
    }
}

impl TryFrom<pb::Sequencer> for Sequencer {
    type Error = Error;
    fn try_from(s: pb::Sequencer) -> Result<Self, Error> {
        if s.path.is_empty() {
            return Err(Error::Protocol("sequencer has no path".into()));
        }
        if s.path.contains(':') {
            return Err(Error::Protocol(format!(
                "sequencer path {:?} contains ':'",
                s.path
            )));
        }
        Ok(Sequencer {
            mode: LockMode::from_wire(s.mode)?,
            path: s.path,
            instance: s.instance,
            lock_generation: s.lock_generation,
        })
    }
}

impl From<&Sequencer> for pb::Sequencer {
    fn from(s: &Sequencer) -> Self {
        pb::Sequencer {
            path: s.path.clone(),
            mode: pb::LockMode::from(s.mode) as i32,
            instance: s.instance,
            lock_generation: s.lock_generation,
        }
    }
}

/// Converts a required `Sequencer` field of a reply.
pub(crate) fn required_sequencer(s: Option<pb::Sequencer>, what: &str) -> Result<Sequencer, Error> {
    s.ok_or_else(|| Error::Protocol(format!("{what} reply has no sequencer")))?
        .try_into()
}

/// The set of events a handle subscribes to (bits of `OpenRequest.events`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EventMask(u32);

impl EventMask {
    /// No events.
    pub const NONE: EventMask = EventMask(0);
    /// The file's contents were modified.
    pub const CONTENTS_MODIFIED: EventMask = EventMask(pb::EventMask::MaskContentsModified as u32);
    /// A child of the directory was added, removed or modified.
    pub const CHILD_CHANGED: EventMask = EventMask(pb::EventMask::MaskChildChanged as u32);
    /// The cell's master failed over (caches may have missed invalidations).
    pub const MASTER_FAILOVER: EventMask = EventMask(pb::EventMask::MaskMasterFailover as u32);
    /// The handle became invalid.
    pub const HANDLE_INVALID: EventMask = EventMask(pb::EventMask::MaskHandleInvalid as u32);
    /// The node's lock was acquired (by anyone).
    pub const LOCK_ACQUIRED: EventMask = EventMask(pb::EventMask::MaskLockAcquired as u32);
    /// Someone asked for the lock while it is held in a conflicting mode.
    pub const CONFLICTING_LOCK: EventMask = EventMask(pb::EventMask::MaskConflictingLock as u32);
    /// Every event.
    pub const ALL: EventMask = EventMask(
        Self::CONTENTS_MODIFIED.0
            | Self::CHILD_CHANGED.0
            | Self::MASTER_FAILOVER.0
            | Self::HANDLE_INVALID.0
            | Self::LOCK_ACQUIRED.0
            | Self::CONFLICTING_LOCK.0,
    );

    /// The wire bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// A mask from wire bits; unknown bits are dropped.
    pub fn from_bits_truncate(bits: u32) -> Self {
        EventMask(bits & Self::ALL.0)
    }

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: EventMask) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no bit is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for EventMask {
    type Output = EventMask;
    fn bitor(self, rhs: EventMask) -> EventMask {
        EventMask(self.0 | rhs.0)
    }
}

impl BitOrAssign for EventMask {
    fn bitor_assign(&mut self, rhs: EventMask) {
        self.0 |= rhs.0;
    }
}

/// What happened to a child, in [`Event::ChildChanged`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChildChange {
    /// The child was created.
    Added,
    /// The child was deleted.
    Removed,
    /// The child's metadata or contents changed.
    Modified,
}

named_enum!(
    ChildChange,
    "`\"added\"`, `\"removed\"` or `\"modified\"`.",
    { Added => "added", Removed => "removed", Modified => "modified" }
);

/// An event delivered to the application, each exactly once per subscriber.
///
/// Most come from the master (per handle, as chosen by its [`EventMask`], plus
/// [`MasterFailover`](Event::MasterFailover) for the whole session). The library adds the
/// session-state events [`Jeopardy`](Event::Jeopardy), [`Safe`](Event::Safe) and
/// [`Expired`](Event::Expired) (see the state diagram in [`Session`](crate::Session)).
///
/// `Display` gives one line: the [`name`](Event::name), then the path, then for
/// `child_changed` the change and the child, e.g. `child_changed /ls/local/d added x`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A file's contents were modified.
    ContentsModified {
        /// The file.
        path: String,
    },
    /// A child of a directory was added, removed or modified.
    ChildChanged {
        /// The directory.
        path: String,
        /// The child's name.
        child: String,
        /// What happened to it.
        change: ChildChange,
    },
    /// The cell's master failed over. Events may have been lost in between (including any
    /// that happened before the new master recreated the handle), so re-read whatever the
    /// application derives from them; the library has already flushed its cache. Handles
    /// keep working: the new master recreates each on first use, and the library uses
    /// every open handle once right after this event, so that subscriptions resume and
    /// ephemeral nodes stay claimed.
    MasterFailover,
    /// A handle on `path` became invalid (its node was deleted, or it cannot be recreated).
    HandleInvalid {
        /// The handle's node.
        path: String,
    },
    /// The lock on `path` was acquired.
    LockAcquired {
        /// The locked node.
        path: String,
    },
    /// Someone asked for the lock on `path` in a mode that conflicts with its holder.
    ConflictingLock {
        /// The locked node.
        path: String,
    },
    /// The local lease ended without a KeepAlive reply: the library emptied and disabled
    /// its cache and holds application calls back (they wait; none fails and none sees
    /// stale data) while it looks for the master for the grace period. Generated locally.
    /// Followed by [`Safe`](Event::Safe) or [`Expired`](Event::Expired).
    Jeopardy,
    /// The master answered within the grace period: the session survived, held calls
    /// proceed, caching resumes. Generated locally, only after [`Jeopardy`](Event::Jeopardy).
    Safe,
    /// The session is gone (the master said so, or it could not be reached within the
    /// grace period): every later call fails with `SESSION_EXPIRED`. Generated locally;
    /// always the last event.
    Expired,
}

impl Event {
    /// A snake-case name: `contents_modified`, `child_changed`, `master_failover`,
    /// `handle_invalid`, `lock_acquired`, `conflicting_lock`, `jeopardy`, `safe` or
    /// `expired`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::ContentsModified { .. } => "contents_modified",
            Event::ChildChanged { .. } => "child_changed",
            Event::MasterFailover => "master_failover",
            Event::HandleInvalid { .. } => "handle_invalid",
            Event::LockAcquired { .. } => "lock_acquired",
            Event::ConflictingLock { .. } => "conflicting_lock",
            Event::Jeopardy => "jeopardy",
            Event::Safe => "safe",
            Event::Expired => "expired",
        }
    }

    /// The node concerned, for events about one node.
    pub fn path(&self) -> Option<&str> {
        match self {
            Event::ContentsModified { path }
            | Event::ChildChanged { path, .. }
            | Event::HandleInvalid { path }
            | Event::LockAcquired { path }
            | Event::ConflictingLock { path } => Some(path),
            Event::MasterFailover | Event::Jeopardy | Event::Safe | Event::Expired => None,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        if let Some(path) = self.path() {
            write!(f, " {path}")?;
        }
        if let Event::ChildChanged { child, change, .. } = self {
            write!(f, " {change} {child}")?;
        }
        Ok(())
    }
}

/// Where a session is in its life (docs/design.md §6; the diagram is in [`Session`](crate::Session)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// The local lease is running: calls go to the master, the cache serves reads.
    Safe,
    /// The local lease ended with no reply: calls wait, the cache is empty and off, the
    /// library looks for the master until the grace period ends.
    Jeopardy,
    /// The session is gone: every call fails with `SESSION_EXPIRED`. Final.
    Expired,
    /// The application closed the session. Final.
    Closed,
}

named_enum!(
    SessionState,
    "`\"safe\"`, `\"jeopardy\"`, `\"expired\"` or `\"closed\"`.",
    { Safe => "safe", Jeopardy => "jeopardy", Expired => "expired", Closed => "closed" }
);

impl SessionState {
    /// Whether the session may still be used (safe, or in jeopardy and possibly coming
    /// back).
    pub fn is_live(self) -> bool {
        matches!(self, SessionState::Safe | SessionState::Jeopardy)
    }
}

/// Counters of a session's client-side cache, for observability (tests use them to show
/// that a cache was flushed). A snapshot: [`Session::cache_stats`](crate::Session::cache_stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Nodes with something cached now (data, stat, listing or absence).
    pub entries: usize,
    /// Server handles open now that a later identical `open` may share.
    pub handles: usize,
    /// Reads and opens answered from the cache.
    pub hits: u64,
    /// Reads and opens that had to ask the master.
    pub misses: u64,
    /// Invalidations received from the master (each drops one node's entry).
    pub invalidations: u64,
    /// Times the whole cache was emptied: jeopardy, a fail-over event, a new epoch, the
    /// session's end.
    pub flushes: u64,
}

impl CacheStats {
    /// Adds `other`'s counts to these (a partitioned session sums its cell sessions').
    pub(crate) fn add(&mut self, other: &CacheStats) {
        self.entries += other.entries;
        self.handles += other.handles;
        self.hits += other.hits;
        self.misses += other.misses;
        self.invalidations += other.invalidations;
        self.flushes += other.flushes;
    }
}

/// What a KeepAlive reply can carry, once decoded: an application event, or an internal
/// cache invalidation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Notification {
    /// For the application.
    App(Event),
    /// Drop any cached copy of this path, then acknowledge.
    Invalidate(String),
    /// A reshard moved the node of `handle` to `cell` (docs/resharding.md).
    Moved {
        handle: Vec<u8>,
        path: String,
        cell: String,
    },
}

impl TryFrom<&pb::Event> for Notification {
    type Error = Error;
    fn try_from(e: &pb::Event) -> Result<Self, Error> {
        let path = || {
            if e.path.is_empty() {
                Err(Error::Protocol(format!("event {} has no path", e.seq)))
            } else {
                Ok(e.path.clone())
            }
        };
        let kind = pb::EventType::try_from(e.r#type).map_err(|_| {
            Error::Protocol(format!("event {} has unknown type {}", e.seq, e.r#type))
        })?;
        let event = match kind {
            pb::EventType::ContentsModified => Event::ContentsModified { path: path()? },
            pb::EventType::ChildChanged => {
                let change = match pb::ChildChange::try_from(e.child_change) {
                    Ok(pb::ChildChange::Added) => ChildChange::Added,
                    Ok(pb::ChildChange::Removed) => ChildChange::Removed,
                    Ok(pb::ChildChange::Modified) => ChildChange::Modified,
                    _ => {
                        return Err(Error::Protocol(format!(
                            "event {} has unknown child change {}",
                            e.seq, e.child_change
                        )))
                    }
                };
                if e.child.is_empty() {
                    return Err(Error::Protocol(format!("event {} names no child", e.seq)));
                }
                Event::ChildChanged {
                    path: path()?,
                    child: e.child.clone(),
                    change,
                }
            }
            pb::EventType::MasterFailover => Event::MasterFailover,
            pb::EventType::HandleInvalidEvent => Event::HandleInvalid { path: path()? },
            pb::EventType::LockAcquired => Event::LockAcquired { path: path()? },
            pb::EventType::ConflictingLock => Event::ConflictingLock { path: path()? },
            pb::EventType::Invalidate => return Ok(Notification::Invalidate(path()?)),
            pb::EventType::Unspecified => {
                return Err(Error::Protocol(format!("event {} has no type", e.seq)))
            }
            pb::EventType::SlotMoved => {
                return Ok(Notification::Moved {
                    handle: e.handle.clone(),
                    path: path()?,
                    cell: e.cell.clone(),
                })
            }
            pb::EventType::SessionClaimed => {
                return Err(Error::Protocol(format!(
                    "event {} is SESSION_CLAIMED, which only proxy sessions receive",
                    e.seq
                )))
            }
        };
        Ok(Notification::App(event))
    }
}

/// The answer to `Locate`: who is master of the cell, at which epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LocateInfo {
    /// The address that answered.
    pub endpoint: String,
    /// The cell's name.
    pub cell: String,
    /// The master's address ("" when the answering replica does not know).
    pub master: String,
    /// The master's epoch.
    pub epoch: u64,
    /// The partition map's epoch (0 until partitioning lands).
    pub map_epoch: u64,
    /// The deployment: the `<deployment>` in `/ls/<deployment>/…`.
    pub deployment: String,
    /// Whether the replica that answered is the master.
    pub is_master: bool,
    /// Whether the master accepts all operations (false while it recovers from a failover).
    pub serving: bool,
    /// The answering replica's role: `master` or `standby`.
    pub role: String,
    /// The answering replica's id ("" for a single-replica cell).
    pub replica: String,
    /// The answering replica's view of its store: `ok`, or what is wrong (etcd unreachable…).
    pub store_health: String,
}

impl LocateInfo {
    pub(crate) fn from_wire(endpoint: &str, r: pb::LocateResponse) -> Self {
        LocateInfo {
            endpoint: endpoint.to_string(),
            cell: r.cell,
            master: r.master,
            epoch: r.epoch,
            map_epoch: r.map_epoch,
            deployment: r.deployment,
            is_master: r.is_master,
            serving: r.serving,
            role: r.role,
            replica: r.replica,
            store_health: r.store_health,
        }
    }
}

/// A session's 128-bit id. `Display` gives 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; warren_proto::SESSION_ID_LEN]);

impl SessionId {
    /// The id's bytes, as on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl TryFrom<&[u8]> for SessionId {
    type Error = Error;
    fn try_from(bytes: &[u8]) -> Result<Self, Error> {
        let id = bytes.try_into().map_err(|_| {
            Error::Protocol(format!(
                "session id has {} bytes, expected {}",
                bytes.len(),
                warren_proto::SESSION_ID_LEN
            ))
        })?;
        Ok(SessionId(id))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

#[cfg(test)]
mod tests;
