//! The cell's half of a reshard (docs/resharding.md): what a slot holds here, exporting it
//! (source), staging it (target), freezing its writes, the hand-off that is the commit
//! point, installing staged slots once the map gives them to this cell, and dropping what
//! a source gave up.
//!
//! A slot `k` is the set of directories `D` with `slot(D) = k`; moving it moves each such
//! directory's **anchor part** (its children, lock, ACL names, generations, ephemeral flag)
//! and the **entry part** of each of its children (what the parent lists). A node record
//! here carries the parts this cell holds: a file only an entry; a directory its entry
//! unless `anchor` is set, and its anchor if this cell owns the directory's own slot or
//! `anchor` is set (docs/partitioning.md, "Directories split over two cells").
//!
//! The source keeps serving a slot until the hand-off; the target keeps what it is sent in
//! a staging table (durable, never served) until a map giving it the slot is in force, and
//! then installs it in one step. The job (`warren-reshard`) decides what happens when; this
//! module only makes each step safe on its own:
//! - a hand-off succeeds only while the job's freeze holds, the slots are exactly what the
//!   target confirmed (their digest), and no cache invalidation of them is outstanding;
//! - after a hand-off the source never serves the slot again (a durable mark), whatever
//!   map it has;
//! - the target never serves a staged slot before the map gives it the slot.

use super::{path, Master, WaiterKind, Wake};
use crate::core::HashMap;
use crate::store::{HandedOff, Mutation, NodeKind, NodeRecord, SessionId, SessionRecord};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tokio::time::Instant;
use warren_proto::WarrenError;
use warren_reshard::MoveCounts;
use warren_router::{slot_of_dir, PartitionMap};

/// Which parts of a node a slot carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parts {
    pub entry: bool,
    pub anchor: bool,
}

/// Whether a node instance from another cell (an import, a staged record read back) is
/// one a cell can have assigned: installing a node moves this cell's instance counter past
/// its instance, and nothing is past the largest.
fn instance_assignable(instance: u64) -> bool {
    instance < u64::MAX
}

/// One node's parts in one slot, as exported and staged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedNode {
    /// The cell it comes from (whose handle numbers its lock holders use).
    pub source: String,
    pub parts: Parts,
    /// The record (for an entry alone: without lock holders, which live with the anchor).
    pub rec: NodeRecord,
    pub contents: Vec<u8>,
    /// The sessions holding the node's lock or a handle on it, so the target knows them.
    pub sessions: Vec<SessionRecord>,
    /// Tokens of the handles open on the node (with its lock): the target opens them
    /// again at install, so their event subscriptions carry on.
    #[serde(default)]
    pub handles: Vec<Vec<u8>>,
    /// A lock-delay in progress (a holder's session failed): how much of it is left, in
    /// milliseconds; the target keeps the lock from new holders that long.
    #[serde(default)]
    pub lock_delay_left_ms: u64,
    /// The handles whose Acquires were waiting for the lock, in queue order (the target
    /// keeps their places for them: [`PLACE_HOLD`]).
    #[serde(default)]
    pub waiting: Vec<(u64, u64)>,
}

impl StagedNode {
    /// What must be equal at source and target: the node, not who has it open (handles
    /// come and go without a write; one opened after the final copy is recreated at the
    /// target on its first use).
    fn digest(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(self.source.as_bytes());
        h.update(&encode(&(self.parts, &self.rec)));
        h.update(&self.contents);
        h.digest()
    }
}

/// What an export sends: changed parts, and parts the target has that the source no
/// longer holds. `full`: everything the slots hold (the target drops what it staged
/// before).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Bundle {
    /// Handle keys of the source and of the cells it received slots from, so that handles
    /// minted there on moved nodes keep working at the target.
    pub keys: BTreeMap<String, [u8; 32]>,
    pub full: bool,
    pub nodes: Vec<(u32, String, StagedNode)>,
    pub removed: Vec<(u32, String)>,
}

/// Digests of staged parts by (slot, path): what the target has, sent back with the next
/// export so only differences travel.
pub type Have = BTreeMap<(u32, String), u64>;

/// What [`Master::export_slots`] reports besides the bundle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exported {
    pub nodes: u64,
    pub bytes: u64,
    pub removed: u64,
    pub digest: u64,
    pub total_nodes: u64,
    pub frozen: bool,
    /// Cut at `max_bytes`: export again for the rest.
    pub more: bool,
}

/// What [`Master::import_slots`] reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub have: Have,
    pub digest: u64,
    pub total_nodes: u64,
}

/// A slot's writes held by a job until `until`.
#[derive(Clone, Debug)]
pub(super) struct Freeze {
    job: String,
    until: Instant,
}

/// The reshard state of a master: frozen and moving slots (in memory: a restart ends them)
/// and what is staged here for slots it will receive (durable, in the store's staged table).
#[derive(Default)]
pub(super) struct ReshardState {
    frozen: HashMap<u32, Freeze>,
    /// Slots being exported by a job: their reads are not cacheable, so that no cached
    /// copy outlives the hand-off.
    /// Slot → the job and when it last exported it; forgotten after [`MOVING_IDLE`]
    /// without an export (a job that was given up).
    moving: HashMap<u32, (String, Instant)>,
    staged: BTreeMap<(u32, String), StagedNode>,
}

/// The writer the invalidation barrier exempts for the reshard job's own writes: no
/// session has this id (ids are random 128-bit numbers).
const SYSTEM_WRITER: SessionId = [0; 16];

/// Marks a handle number minted by another cell.
const FOREIGN: u64 = 1 << 63;

/// The number a handle minted by `cell` (with number `number`) has here: its own number
/// with the top bit set and 23 bits of the cell name's hash above bit 40, so it can never
/// meet a number this cell mints (they count up from 1) and two cells' numbers meet only
/// if their names' hashes collide in 23 bits and their epochs and numbers are equal. A
/// number already marked foreign (a handle that moved twice) is kept: it names its
/// original cell.
pub fn foreign_number(cell: &str, number: u64) -> u64 {
    if number & FOREIGN != 0 {
        return number;
    }
    let h = xxhash_rust::xxh3::xxh3_64(cell.as_bytes()) & 0x7f_ffff;
    FOREIGN | (h << 40) | (number & ((1 << 40) - 1))
}

/// How long a target keeps the places of Acquires that were waiting at the source, for
/// their routers to send them again (they are told `WRONG_CELL` at the hand-off and follow
/// at once; a proxy within its forwarding patience).
pub const PLACE_HOLD: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a slot stays "moving" (uncacheable) after its last export.
const MOVING_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// The slot holding the entry of stored (valid) path `p`: its parent's, the root's own.
fn entry_slot_of(p: &str, map: &PartitionMap) -> u32 {
    slot_of_dir(
        warren_router::parent_of_valid(p).unwrap_or(p),
        map.slot_count(),
    )
}

/// The waiter key of the writes parked on a frozen slot.
fn freeze_key(slot: u32) -> String {
    format!("\0freeze/{slot}")
}

fn staged_key(slot: u32, p: &str) -> String {
    format!("{slot:05}/{p}")
}

/// JSON: node records flatten their metadata, which compact binary formats cannot encode.
fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("reshard records always encode")
}

/// Encodes what travels between cells as opaque bytes.
pub fn encode_bundle(b: &Bundle) -> Vec<u8> {
    encode(b)
}

pub fn decode_bundle(bytes: &[u8]) -> Result<Bundle, WarrenError> {
    serde_json::from_slice(bytes).map_err(|e| {
        WarrenError::invalid_argument(format!("the reshard bundle does not decode: {e}"))
    })
}

pub fn encode_have(h: &Have) -> Vec<u8> {
    encode(&h.iter().collect::<Vec<_>>())
}

pub fn decode_have(bytes: &[u8]) -> Result<Have, WarrenError> {
    if bytes.is_empty() {
        return Ok(Have::new());
    }
    let v: Vec<((u32, String), u64)> = serde_json::from_slice(bytes).map_err(|e| {
        WarrenError::invalid_argument(format!("the reshard digests do not decode: {e}"))
    })?;
    Ok(v.into_iter().collect())
}

/// The digest of a whole set of parts (sorted by slot and path).
fn digest_of<'a>(parts: impl Iterator<Item = ((u32, &'a str), u64)>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for ((slot, p), d) in parts {
        h.update(&slot.to_le_bytes());
        h.update(p.as_bytes());
        h.update(&[0]);
        h.update(&d.to_le_bytes());
    }
    h.digest()
}

impl Master {
    /// Whether stored path `p` (valid) is in the reserved subtree, which never moves.
    pub(super) fn stored_reserved(&self, p: &str) -> bool {
        p.strip_prefix("/ls/")
            .and_then(|rest| rest.strip_prefix(self.cfg.deployment.as_str()))
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| {
                rest == warren_router::RESERVED
                    || rest
                        .strip_prefix(warren_router::RESERVED)
                        .is_some_and(|r| r.starts_with('/'))
            })
    }

    fn reshard_map(&self) -> Result<&PartitionMap, WarrenError> {
        self.map.as_deref().ok_or_else(|| {
            super::partition::retry_shortly(format_args!(
                "cell {} has no partition map yet (a reshard needs one)",
                self.cfg.cell
            ))
        })
    }

    /// The slots whose parts record `rec` holds here, by the map in force: `(slot, parts)`
    /// for each slot of `slots` (all slots if `None`) it has a part in.
    fn parts_of(
        &self,
        map: &PartitionMap,
        rec: &NodeRecord,
        slots: Option<&BTreeSet<u32>>,
    ) -> Vec<(u32, Parts)> {
        let p = rec.path.as_str();
        // Stored paths are valid: no need to check them again (this runs for every node
        // of the cell in each export).
        if self.stored_reserved(p) {
            return Vec::new();
        }
        let entry_slot = entry_slot_of(p, map);
        let want = |s: u32| slots.is_none_or(|k| k.contains(&s));
        let dir = rec.meta.kind == NodeKind::Directory;
        let anchor_slot = dir.then(|| slot_of_dir(p, map.slot_count()));
        let has_entry = !rec.anchor;
        let has_anchor =
            anchor_slot.is_some_and(|s| rec.anchor || map.owner_of_slot(s) == Some(&self.cfg.cell));
        let mut out: Vec<(u32, Parts)> = Vec::new();
        if has_entry && want(entry_slot) {
            out.push((
                entry_slot,
                Parts {
                    entry: true,
                    anchor: false,
                },
            ));
        }
        if has_anchor {
            let s = anchor_slot.expect("a directory");
            if want(s) {
                match out.iter_mut().find(|(x, _)| *x == s) {
                    Some((_, parts)) => parts.anchor = true,
                    None => out.push((
                        s,
                        Parts {
                            entry: false,
                            anchor: true,
                        },
                    )),
                }
            }
        }
        out
    }

    /// Per-slot counts of what this cell holds in `slots` (every slot if empty), for a
    /// plan. Slots holding nothing are left out.
    pub fn slot_stats(&self, slots: &[u32]) -> Result<BTreeMap<u32, MoveCounts>, WarrenError> {
        let map = self.reshard_map()?;
        let want: BTreeSet<u32> = slots.iter().copied().collect();
        let want = (!want.is_empty()).then_some(&want);
        let mut counts: BTreeMap<u32, MoveCounts> = BTreeMap::new();
        let mut sessions: BTreeMap<u32, BTreeSet<SessionId>> = BTreeMap::new();
        for n in self.nodes.values() {
            for (slot, parts) in self.parts_of(map, &n.rec, want) {
                let c = counts.entry(slot).or_default();
                let s = sessions.entry(slot).or_default();
                if parts.entry {
                    c.nodes += 1;
                    c.bytes += n.contents.len() as u64;
                    if n.rec.meta.kind == NodeKind::Directory {
                        c.directories += 1;
                    }
                    if n.rec.meta.ephemeral {
                        c.ephemeral_nodes += 1;
                    }
                }
                let lock_here = parts.anchor || n.rec.meta.kind == NodeKind::File;
                if lock_here {
                    if !n.rec.holders.is_empty() {
                        c.held_locks += 1;
                    }
                    s.extend(n.rec.holders.iter().map(|h| h.session));
                    c.open_handles += n.handles.len() as u64;
                    for k in &n.handles {
                        if let Some(h) = self.handles.get(k) {
                            s.insert(h.session);
                        }
                    }
                }
            }
        }
        for (slot, s) in sessions {
            if let Some(c) = counts.get_mut(&slot) {
                c.sessions = s.len() as u64;
            }
        }
        Ok(counts)
    }

    /// Every part this cell holds in `slots`, keyed by (slot, path).
    fn parts_in(
        &self,
        slots: &BTreeSet<u32>,
    ) -> Result<BTreeMap<(u32, String), StagedNode>, WarrenError> {
        let map = self.reshard_map()?;
        let mut out = BTreeMap::new();
        for n in self.nodes.values() {
            for (slot, parts) in self.parts_of(map, &n.rec, Some(slots)) {
                let mut rec = n.rec.clone();
                let lock_here = parts.anchor || rec.meta.kind == NodeKind::File;
                if !lock_here {
                    rec.holders.clear();
                }
                let mut owners: BTreeSet<SessionId> =
                    rec.holders.iter().map(|h| h.session).collect();
                let mut handles = Vec::new();
                if lock_here {
                    for k in &n.handles {
                        if let Some(h) = self.handles.get(k) {
                            owners.insert(h.session);
                            handles.push(h.token.clone());
                        }
                    }
                }
                let sessions = owners
                    .iter()
                    .filter_map(|sid| self.sessions.get(sid).map(|s| s.rec.clone()))
                    .collect();
                let waiting = if lock_here {
                    n.lock_waiters.iter().map(|w| w.handle).collect()
                } else {
                    Vec::new()
                };
                let lock_delay_left_ms = n.delay_until.filter(|_| lock_here).map_or(0, |d| {
                    d.saturating_duration_since(self.now).as_millis() as u64
                });
                out.insert(
                    (slot, rec.path.clone()),
                    StagedNode {
                        source: self.cfg.cell.clone(),
                        parts,
                        contents: n.contents.clone(),
                        rec,
                        sessions,
                        handles,
                        lock_delay_left_ms,
                        waiting,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Source: what `slots` hold here that differs from `have` (the target's digests;
    /// empty: everything). From the first export on, the slots' reads are not cacheable
    /// and every cached copy of them is invalidated, so none outlives a hand-off.
    /// `max_bytes` (0: none) cuts the bundle; what was left out goes in the next export.
    pub fn export_slots(
        &mut self,
        job: &str,
        slots: &[u32],
        have: &Have,
        max_bytes: u64,
    ) -> Result<(Bundle, Exported), WarrenError> {
        let set: BTreeSet<u32> = slots.iter().copied().collect();
        self.check_exportable(&set)?;
        let mut newly = BTreeSet::new();
        for &s in &set {
            if self
                .reshard
                .moving
                .insert(s, (job.to_string(), self.now))
                .is_none()
            {
                newly.insert(s);
            }
        }
        self.drain_cached(&newly);
        let all = self.parts_in(&set)?;
        let mut keys = self.meta.foreign_keys.clone();
        keys.insert(self.cfg.cell.clone(), self.meta.secret);
        let mut bundle = Bundle {
            keys,
            full: have.is_empty(),
            ..Bundle::default()
        };
        let mut info = Exported {
            total_nodes: all.len() as u64,
            ..Exported::default()
        };
        let digests: Vec<((u32, &str), u64)> = all
            .iter()
            .map(|((s, p), n)| ((*s, p.as_str()), n.digest()))
            .collect();
        info.digest = digest_of(digests.iter().copied());
        for (((slot, p), n), (_, d)) in all.iter().zip(&digests) {
            if have.get(&(*slot, p.clone())) == Some(d) {
                continue;
            }
            if max_bytes > 0 && info.bytes > 0 && info.bytes + n.contents.len() as u64 > max_bytes {
                info.more = true;
                break;
            }
            info.nodes += 1;
            info.bytes += n.contents.len() as u64;
            bundle.nodes.push((*slot, p.clone(), n.clone()));
        }
        for key in have.keys() {
            if !all.contains_key(key) {
                bundle.removed.push(key.clone());
            }
        }
        info.removed = bundle.removed.len() as u64;
        info.frozen = set.iter().all(|s| self.frozen_by(*s, job));
        Ok((bundle, info))
    }

    fn check_exportable(&self, slots: &BTreeSet<u32>) -> Result<(), WarrenError> {
        let map = self.reshard_map()?;
        for &s in slots {
            if s >= map.slot_count() {
                return Err(WarrenError::invalid_argument(format!(
                    "slot {s} does not exist (the deployment has {} slots)",
                    map.slot_count()
                )));
            }
            if let Some(h) = self.meta.handed_off.iter().find(|h| h.slot == s) {
                return Err(WarrenError::wrong_cell(h.map_epoch, h.to.clone()));
            }
            if map.owner_of_slot(s) != Some(&self.cfg.cell) {
                return Err(WarrenError::wrong_cell(
                    map.map_epoch(),
                    map.owner_of_slot(s).unwrap_or_default(),
                ));
            }
        }
        Ok(())
    }

    /// Invalidates every cached copy of a path in `slots` (without waiting): one pass over
    /// the cached paths, whatever the number of slots.
    fn drain_cached(&mut self, slots: &BTreeSet<u32>) {
        if slots.is_empty() {
            return;
        }
        let paths: Vec<String> = self
            .cachers
            .keys()
            .filter(|p| self.slots_of_path(p).iter().any(|s| slots.contains(s)))
            .cloned()
            .collect();
        for p in paths {
            self.start_invalidation(&p, None, None);
        }
    }

    /// The slots of `p` (a node, a listing or an absence: a path a call named, so valid)
    /// that a reshard may hold: its parent's, and its own (as a directory). None for the
    /// reserved subtree, which never moves.
    fn slots_of_path(&self, p: &str) -> Vec<u32> {
        let Some(map) = self.map.as_deref() else {
            return Vec::new();
        };
        if self.stored_reserved(p) {
            return Vec::new();
        }
        let entry = entry_slot_of(p, map);
        let own = slot_of_dir(p, map.slot_count());
        if own == entry {
            vec![entry]
        } else {
            vec![entry, own]
        }
    }

    /// Reads of a path in a slot being moved are not cacheable.
    pub(super) fn moving_path(&self, p: &str) -> bool {
        !self.reshard.moving.is_empty()
            && self
                .slots_of_path(p)
                .iter()
                .any(|s| self.reshard.moving.contains_key(s))
    }

    fn frozen_by(&self, slot: u32, job: &str) -> bool {
        self.reshard
            .frozen
            .get(&slot)
            .is_some_and(|f| f.job == job && f.until > self.now)
    }

    /// Target: stages `bundle` for `slots`, which this cell must not own. Returns the
    /// digests of everything staged for them.
    pub fn import_slots(&mut self, slots: &[u32], bundle: Bundle) -> Result<Imported, WarrenError> {
        let map = self.reshard_map()?;
        let set: BTreeSet<u32> = slots.iter().copied().collect();
        for &s in &set {
            if s >= map.slot_count() {
                return Err(WarrenError::invalid_argument(format!(
                    "slot {s} does not exist (the deployment has {} slots)",
                    map.slot_count()
                )));
            }
            if map.owner_of_slot(s) == Some(&self.cfg.cell) {
                return Err(WarrenError::invalid_argument(format!(
                    "cell {} already owns slot {s} at map epoch {}; the plan is stale",
                    self.cfg.cell,
                    map.map_epoch()
                )));
            }
        }
        for (slot, p, n) in &bundle.nodes {
            if !set.contains(slot) {
                return Err(WarrenError::invalid_argument(format!(
                    "the bundle holds {p} of slot {slot}, which this import is not for"
                )));
            }
            if !instance_assignable(n.rec.meta.instance) {
                return Err(WarrenError::invalid_argument(format!(
                    "the bundle holds {p} with instance {}, which no cell assigns (the \
                     instance counter moves past every node's instance)",
                    n.rec.meta.instance
                )));
            }
        }
        let mut learned = false;
        for (cell, key) in &bundle.keys {
            if *cell != self.cfg.cell && self.meta.foreign_keys.get(cell) != Some(key) {
                self.meta.foreign_keys.insert(cell.clone(), *key);
                learned = true;
            }
        }
        if learned {
            self.out
                .mutations
                .push(Mutation::PutMeta(self.meta.clone()));
        }
        if bundle.full {
            self.unstage(&set);
        }
        for key in bundle.removed {
            if set.contains(&key.0) && self.reshard.staged.remove(&key).is_some() {
                self.out.mutations.push(Mutation::DeleteStaged {
                    key: staged_key(key.0, &key.1),
                });
            }
        }
        for (slot, p, n) in bundle.nodes {
            self.out.mutations.push(Mutation::PutStaged {
                key: staged_key(slot, &p),
                value: encode(&n),
            });
            self.reshard.staged.insert((slot, p), n);
        }
        Ok(self.staged_summary(&set))
    }

    fn staged_summary(&self, set: &BTreeSet<u32>) -> Imported {
        let mut have = Have::new();
        for ((slot, p), n) in self.staged_in(set) {
            have.insert((*slot, p.clone()), n.digest());
        }
        Imported {
            digest: digest_of(have.iter().map(|((s, p), d)| ((*s, p.as_str()), *d))),
            total_nodes: have.len() as u64,
            have,
        }
    }

    fn staged_in<'a>(
        &'a self,
        set: &'a BTreeSet<u32>,
    ) -> impl Iterator<Item = (&'a (u32, String), &'a StagedNode)> + 'a {
        self.reshard
            .staged
            .iter()
            .filter(move |((s, _), _)| set.contains(s))
    }

    /// Drops what is staged for `slots`.
    fn unstage(&mut self, set: &BTreeSet<u32>) {
        let keys: Vec<(u32, String)> = self.staged_in(set).map(|(k, _)| k.clone()).collect();
        for k in keys {
            self.reshard.staged.remove(&k);
            self.out.mutations.push(Mutation::DeleteStaged {
                key: staged_key(k.0, &k.1),
            });
        }
    }

    /// Source: writes to `slots` wait until the hand-off, a release or `until`.
    pub fn freeze_slots(
        &mut self,
        job: &str,
        slots: &[u32],
        until: Instant,
    ) -> Result<(), WarrenError> {
        let set: BTreeSet<u32> = slots.iter().copied().collect();
        self.check_exportable(&set)?;
        for s in set {
            if let Some(f) = self.reshard.frozen.get(&s) {
                if f.job != job && f.until > self.now {
                    return Err(WarrenError::invalid_argument(format!(
                        "slot {s} is frozen by another reshard job ({})",
                        f.job
                    )));
                }
            }
            self.reshard.frozen.insert(
                s,
                Freeze {
                    job: job.to_string(),
                    until,
                },
            );
        }
        Ok(())
    }

    /// The frozen slot a write to `paths` must wait for, if any.
    pub(super) fn frozen_slot(&self, paths: &[&str]) -> Option<u32> {
        if self.reshard.frozen.is_empty() {
            return None;
        }
        paths.iter().flat_map(|p| self.slots_of_path(p)).find(|s| {
            self.reshard
                .frozen
                .get(s)
                .is_some_and(|f| f.until > self.now)
        })
    }

    /// Lock calls on a node of a frozen slot are answered `FAILOVER_IN_PROGRESS`, which
    /// clients and proxies retry shortly: a lock changing hands there would change the
    /// slot after its final copy.
    pub(super) fn not_frozen(&self, p: &str) -> Result<(), WarrenError> {
        match self.frozen_slot(&[p]) {
            None => Ok(()),
            Some(slot) => Err(super::partition::retry_shortly(format_args!(
                "slot {slot} is frozen while a reshard moves it (at most the freeze bound)"
            ))),
        }
    }

    /// Parks a write on a frozen slot: it is run again when the freeze ends.
    pub(super) fn park_on_freeze(&mut self, slot: u32) -> super::WaiterId {
        let key = freeze_key(slot);
        let w = self.new_waiter(WaiterKind::Barrier(key.clone()));
        self.barriers.entry(key).or_default().push(w);
        w
    }

    fn unfreeze(&mut self, slot: u32) {
        self.reshard.frozen.remove(&slot);
        for w in self.barriers.remove(&freeze_key(slot)).unwrap_or_default() {
            if self.waiters.remove(&w).is_some() {
                self.out.wakes.push((w, Wake::Retry));
            }
        }
    }

    /// Ends freezes whose time is up: the source serves those slots again by itself; and
    /// forgets slots no job has exported for [`MOVING_IDLE`] (their reads are cacheable
    /// again).
    pub(super) fn end_lapsed_freezes(&mut self, now: Instant) {
        self.reshard
            .moving
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < MOVING_IDLE);
        let lapsed: Vec<u32> = self
            .reshard
            .frozen
            .iter()
            .filter(|(_, f)| f.until <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in lapsed {
            tracing::warn!(
                slot = s,
                "a reshard freeze reached its bound; the slot is served here again"
            );
            self.unfreeze(s);
        }
    }

    /// Source: the commit point. Gives `slots` up to `to` for good if each is still frozen
    /// by `job`, their state is exactly `digest` (what the target confirmed), and no
    /// invalidation of a path in them is outstanding. `Ok(Err(reason))`: nothing changed.
    /// Idempotent: slots already handed off by `job` answer `Ok(Ok(()))`.
    pub fn hand_off(
        &mut self,
        job: &str,
        slots: &[u32],
        to: &str,
        map_epoch: u64,
        digest: u64,
    ) -> Result<Result<(), String>, WarrenError> {
        let set: BTreeSet<u32> = slots.iter().copied().collect();
        let done = set.iter().all(|s| {
            self.meta
                .handed_off
                .iter()
                .any(|h| h.slot == *s && h.job == job)
        });
        if done {
            return Ok(Ok(()));
        }
        self.check_exportable(&set)?;
        if let Some(s) = set.iter().find(|s| !self.frozen_by(**s, job)) {
            return Ok(Err(format!(
                "the freeze of slot {s} ended before the hand-off (its bound passed, or the cell restarted)"
            )));
        }
        let all = self.parts_in(&set)?;
        let now_digest = digest_of(all.iter().map(|((s, p), n)| ((*s, p.as_str()), n.digest())));
        if now_digest != digest {
            return Ok(Err(
                "the slots changed since the final copy (a lock or session changed while frozen)"
                    .to_string(),
            ));
        }
        let outstanding = self
            .invalidating
            .keys()
            .filter(|p| self.slots_of_path(p).iter().any(|s| set.contains(s)))
            .count();
        if outstanding > 0 {
            return Ok(Err(format!(
                "{outstanding} cached copies in the slots are not invalidated yet"
            )));
        }
        for &s in &set {
            self.meta.handed_off.push(HandedOff {
                slot: s,
                to: to.to_string(),
                map_epoch,
                job: job.to_string(),
            });
        }
        self.out
            .mutations
            .push(Mutation::PutMeta(self.meta.clone()));
        // Acquires waiting here would be granted on a copy nobody serves any more; every
        // handle on a moved node is told where it went.
        for (_, p) in all.keys() {
            self.fail_lock_waiters(p, to, map_epoch);
            self.tell_handles_moved(p, to);
        }
        for s in set {
            self.reshard.moving.remove(&s);
            self.unfreeze(s);
        }
        Ok(Ok(()))
    }

    fn tell_handles_moved(&mut self, p: &str, to: &str) {
        let Some(n) = self.nodes.get(p) else { return };
        let targets: Vec<(SessionId, Vec<u8>)> = n
            .handles
            .iter()
            .filter_map(|k| self.handles.get(k))
            .map(|h| (h.session, h.token.clone()))
            .collect();
        for (sid, token) in targets {
            self.push_event(
                sid,
                super::EventKind::SlotMoved,
                token,
                p,
                to,
                super::ChildChange::None,
            );
        }
    }

    fn fail_lock_waiters(&mut self, p: &str, to: &str, map_epoch: u64) {
        let Some(n) = self.nodes.get_mut(p) else {
            return;
        };
        let waiting: Vec<super::WaiterId> = n.lock_waiters.drain(..).map(|w| w.id).collect();
        for w in waiting {
            if self.waiters.remove(&w).is_some() {
                self.out.wakes.push((
                    w,
                    Wake::Acquire(Err(WarrenError::wrong_cell(map_epoch, to))),
                ));
            }
        }
    }

    /// Whether node `p` is in a slot this cell has handed off (its copy here is dead: no
    /// lock grant, ephemeral deletion or cross-cell step may start from it).
    pub(super) fn moved_away(&self, p: &str) -> bool {
        !self.meta.handed_off.is_empty()
            && (self.handed_off_for(p, false).is_some() || self.handed_off_for(p, true).is_some())
    }

    /// The hand-off mark of the slot `p` is routed by (`anchor`: its own slot), if any.
    pub(super) fn handed_off_for(&self, p: &str, anchor: bool) -> Option<&HandedOff> {
        if self.meta.handed_off.is_empty() {
            return None;
        }
        let map = self.map.as_deref()?;
        let slot = if anchor {
            slot_of_dir(p, map.slot_count())
        } else {
            map.slot_of_path(p).ok()?
        };
        self.meta.handed_off.iter().find(|h| h.slot == slot)
    }

    /// Abort before the hand-off. Source: ends `job`'s freezes and marks. Target: drops
    /// what it staged for slots it does not own.
    pub fn release_slots(&mut self, job: &str, slots: &[u32]) {
        let set: BTreeSet<u32> = slots.iter().copied().collect();
        for &s in &set {
            if self.reshard.frozen.get(&s).is_some_and(|f| f.job == job) {
                self.unfreeze(s);
            }
            if self.reshard.moving.get(&s).is_some_and(|(j, _)| j == job) {
                self.reshard.moving.remove(&s);
            }
        }
        let owned: BTreeSet<u32> = match self.map.as_deref() {
            Some(map) => set
                .iter()
                .copied()
                .filter(|s| map.owner_of_slot(*s) == Some(&self.cfg.cell))
                .collect(),
            None => BTreeSet::new(),
        };
        let unowned: BTreeSet<u32> = set.difference(&owned).copied().collect();
        self.unstage(&unowned);
    }

    /// Target: installs what is staged for slots the map in force gives this cell (after
    /// a new map, and at recovery). Parents come before children (path order).
    pub(super) fn install_staged(&mut self) {
        let Some(map) = self.map.clone() else { return };
        let mine: BTreeSet<u32> = self
            .reshard
            .staged
            .keys()
            .map(|(s, _)| *s)
            .filter(|s| map.owner_of_slot(*s) == Some(&self.cfg.cell))
            .collect();
        if mine.is_empty() {
            return;
        }
        let mut items: Vec<((u32, String), StagedNode)> = Vec::new();
        for s in &mine {
            let keys: Vec<(u32, String)> = self
                .reshard
                .staged
                .range((*s, String::new())..)
                .take_while(|((x, _), _)| x == s)
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                let n = self.reshard.staged.remove(&k).expect("listed");
                items.push((k, n));
            }
        }
        items.sort_by(|a, b| a.0 .1.cmp(&b.0 .1));
        let count = items.len();
        for ((slot, p), n) in items {
            // Instances are never reused here: the counter moves past the moved ones.
            self.meta.next_instance = self.meta.next_instance.max(n.rec.meta.instance + 1);
            self.install_part(&p, n);
            self.out.mutations.push(Mutation::DeleteStaged {
                key: staged_key(slot, &p),
            });
        }
        self.out
            .mutations
            .push(Mutation::PutMeta(self.meta.clone()));
        tracing::info!(
            cell = %self.cfg.cell,
            slots = mine.len(),
            parts = count,
            map_epoch = map.map_epoch(),
            "reshard: installed the slots the map gives this cell"
        );
    }

    fn install_part(&mut self, p: &str, n: StagedNode) {
        for s in &n.sessions {
            self.adopt_moved_session(s);
        }
        let existing = self.nodes.contains_key(p);
        let mut rec = n.rec;
        // Holders keep their handles: numbered here as their tokens will be.
        for h in &mut rec.holders {
            h.handle = self.moved_number(&n.source, h.handle);
        }
        match (n.parts.entry, n.parts.anchor, existing) {
            // The other part is here: the two become one node.
            (true, false, true) => {
                let node = self.nodes.get_mut(p).expect("exists");
                node.rec.anchor = false;
                rec = node.rec.clone();
            }
            (false, true, true) => {
                let node = self.nodes.get_mut(p).expect("exists");
                let entry_instance = node.rec.meta.instance;
                rec.anchor = false;
                rec.anchor_pending = node.rec.anchor_pending.clone();
                if rec.meta.instance != entry_instance {
                    tracing::warn!(path = p, "a moved anchor and the entry here disagree on the instance; the anchor's is kept");
                }
                node.rec = rec.clone();
            }
            (entry, anchor, _) => {
                rec.anchor = anchor && !entry;
                if !anchor && rec.meta.kind == NodeKind::Directory {
                    // A directory's lock lives with its anchor, which is elsewhere.
                    rec.holders.clear();
                }
                self.nodes.insert(
                    p.to_string(),
                    super::nodes::Node::new(rec.clone(), n.contents.clone()),
                );
                if rec.meta.kind == NodeKind::File {
                    self.out.mutations.push(Mutation::PutContents {
                        path: p.to_string(),
                        data: n.contents,
                    });
                }
                // Its children are entries of the same slot: installed after it (path
                // order), each linking itself below.
            }
        }
        if !rec.anchor {
            if let Some(parent) = path::parent(p) {
                if let Some(pn) = self.nodes.get_mut(parent) {
                    pn.children.insert(path::name(p).to_string());
                }
            }
        }
        let ephemeral = rec.meta.ephemeral;
        let places: std::collections::VecDeque<_> = n
            .waiting
            .iter()
            .map(|(e, num)| (*e, self.moved_number(&n.source, *num)))
            .collect();
        if let Some(node) = self.nodes.get_mut(p) {
            if n.lock_delay_left_ms > 0 {
                let until = self.now + std::time::Duration::from_millis(n.lock_delay_left_ms);
                node.delay_until = Some(node.delay_until.map_or(until, |d| d.max(until)));
            }
            if !places.is_empty() {
                node.places = places;
                node.places_until = Some(self.now + PLACE_HOLD);
            }
        }
        self.out.mutations.push(Mutation::PutNode(rec));
        for token in &n.handles {
            self.reopen_moved_handle(token);
        }
        // An ephemeral node nobody has open here is deleted once no handle has reopened it
        // within the failover's interval (docs/design.md §9 step 9), as after a failover.
        if ephemeral {
            self.fresh_anchors
                .insert(p.to_string(), self.now + self.cfg.ephemeral_cleanup);
        }
    }

    /// The number here of a handle numbered `number` at `source`, the cell a node moved
    /// from: [`foreign_number`], unless the handle was minted here and the node is coming
    /// back (it arrives marked foreign, naming this cell). Its token then verifies here as
    /// this cell's own, so its lock must be held under the number this cell gave it, or
    /// its holder could neither release nor re-acquire it (chaos finding 6,
    /// docs/reliability.md).
    fn moved_number(&self, source: &str, number: u64) -> u64 {
        let own = number & ((1 << 40) - 1);
        if number & FOREIGN != 0 && foreign_number(&self.cfg.cell, own) == number {
            return own;
        }
        foreign_number(source, number)
    }

    /// Opens here a handle that was open on a moved node at the source (its session came
    /// with it), so that the events it subscribed to reach it from now on.
    fn reopen_moved_handle(&mut self, token: &[u8]) {
        let Ok((body, foreign)) = self.verify_token(token) else {
            return;
        };
        let Ok(sid) = SessionId::try_from(body.session_id.as_slice()) else {
            return;
        };
        let k = super::handles::handle_key(&body, foreign);
        if self.handles.contains_key(&k) || !self.sessions.contains_key(&sid) {
            return;
        }
        let _ = self.recreate_handle(sid, k, &body, token, foreign);
    }

    /// A lock holder's session from the source: known here from now on. A client
    /// sub-session whose proxy session is not here waits as an orphan for the claim window
    /// (its proxy claims it, as after a proxy failover); a top-level session gets a lease.
    fn adopt_moved_session(&mut self, rec: &SessionRecord) {
        if self.sessions.contains_key(&rec.id) {
            return;
        }
        let lease = if rec.proxy {
            self.cfg.proxy_lease
        } else {
            self.cfg.lease
        };
        self.out.mutations.push(Mutation::PutSession(rec.clone()));
        let mut session = super::Session::new(rec.clone(), self.now + lease);
        session.moved_in = true;
        self.insert_session(session);
        match rec.parent {
            Some(parent)
                if self
                    .sessions
                    .get(&parent)
                    .is_some_and(|p| p.rec.parent.is_none()) =>
            {
                self.sessions
                    .get_mut(&parent)
                    .expect("checked")
                    .subs
                    .insert(rec.id);
            }
            Some(_) => self.make_orphan(rec.id),
            None => {}
        }
    }

    /// Source, once a map no longer giving it `slots` is in force: deletes the parts it
    /// held in them (a node keeps the part that stays here), and forgets the hand-off
    /// marks that map covers. Returns the number of parts dropped.
    pub fn drop_slots(&mut self, slots: &[u32]) -> Result<u64, WarrenError> {
        let map = self.reshard_map()?.clone();
        let set: BTreeSet<u32> = slots.iter().copied().collect();
        for &s in &set {
            if map.owner_of_slot(s) == Some(&self.cfg.cell) {
                return Err(WarrenError::invalid_argument(format!(
                    "cell {} still owns slot {s} at map epoch {}; drop only slots a new map gave away",
                    self.cfg.cell,
                    map.map_epoch()
                )));
            }
        }
        let mut dropped = 0;
        let paths: Vec<String> = self.nodes.keys().cloned().collect();
        for p in paths {
            let Some(n) = self.nodes.get(&p) else {
                continue;
            };
            if self.stored_reserved(&p) {
                continue;
            }
            let entry_slot = entry_slot_of(&p, &map);
            let dir = n.rec.meta.kind == NodeKind::Directory;
            let anchor_slot = dir.then(|| slot_of_dir(&p, map.slot_count()));
            let entry_gone = !n.rec.anchor && set.contains(&entry_slot);
            let anchor_gone = anchor_slot.is_some_and(|s| set.contains(&s));
            let keeps_entry = !n.rec.anchor && !entry_gone;
            let keeps_anchor = anchor_slot.is_some_and(|s| {
                !anchor_gone && (n.rec.anchor || map.owner_of_slot(s) == Some(&self.cfg.cell))
            });
            if !entry_gone && !anchor_gone {
                continue;
            }
            dropped += 1;
            if !keeps_entry && !keeps_anchor {
                self.forget_node(&p);
            } else if entry_gone {
                // Only the anchor stays: it is no child of a local node any more.
                let node = self.nodes.get_mut(&p).expect("exists");
                node.rec.anchor = true;
                let rec = node.rec.clone();
                self.out.mutations.push(Mutation::PutNode(rec));
                if let Some(parent) = path::parent(&p) {
                    if let Some(pn) = self.nodes.get_mut(parent) {
                        pn.children.remove(path::name(&p));
                    }
                }
            } else {
                // Only the entry stays: the lock and handles went with the anchor.
                let node = self.nodes.get_mut(&p).expect("exists");
                node.rec.holders.clear();
                node.children.clear();
                let rec = node.rec.clone();
                self.out.mutations.push(Mutation::PutNode(rec));
            }
        }
        let epoch = map.map_epoch();
        let before = self.meta.handed_off.len();
        self.meta
            .handed_off
            .retain(|h| !(set.contains(&h.slot) && h.map_epoch <= epoch));
        if self.meta.handed_off.len() != before {
            self.out
                .mutations
                .push(Mutation::PutMeta(self.meta.clone()));
        }
        Ok(dropped)
    }

    /// Removes a node that moved away: from memory and the store, without events (its
    /// watchers' handles now reach it at its new cell), its handles here invalidated.
    fn forget_node(&mut self, p: &str) {
        let Some(n) = self.nodes.remove(p) else {
            return;
        };
        self.fresh_anchors.remove(p);
        self.pending_entries.remove(p);
        let owner = self
            .map
            .as_deref()
            .and_then(|m| m.cell_for_path(p).ok())
            .unwrap_or_default()
            .to_string();
        for w in n.lock_waiters {
            if self.waiters.remove(&w.id).is_some() {
                self.out.wakes.push((
                    w.id,
                    Wake::Acquire(Err(WarrenError::wrong_cell(
                        self.map_epoch(),
                        owner.clone(),
                    ))),
                ));
            }
        }
        if let Some(parent) = path::parent(p) {
            if let Some(pn) = self.nodes.get_mut(parent) {
                pn.children.remove(path::name(p));
            }
        }
        self.out.mutations.push(Mutation::DeleteNode {
            path: p.to_string(),
        });
    }

    /// The reshard job's own writes at the meta cell (its record, and each batch's map):
    /// writes file `p` in the reserved subtree, creating it and its directories if missing,
    /// behind the invalidation barrier like any write (so every watcher of the map has
    /// dropped its copy before the write is done). The caller has validated `data` (a map
    /// from `Plan::next_map`, epoch + 1); clients' map writes go through the map guard.
    pub fn write_reserved(
        &mut self,
        p: &str,
        data: &[u8],
        now: Instant,
    ) -> Result<super::Reply<()>, WarrenError> {
        self.now = now;
        path::validate(p, &self.cfg.deployment)?;
        if !warren_router::is_reserved(p) || self.is_data_cell() {
            return Err(WarrenError::invalid_argument(format!(
                "{p}: the reshard job writes only in the meta cell's reserved subtree"
            )));
        }
        let parent = path::parent(p).unwrap_or_default().to_string();
        let mut missing = Vec::new();
        let mut dir = parent.as_str();
        while !self.nodes.contains_key(dir) {
            missing.push(dir.to_string());
            match path::parent(dir) {
                Some(up) => dir = up,
                None => break,
            }
        }
        if let Some(w) = self.barrier(SYSTEM_WRITER, &[p, &parent]) {
            return Ok(super::Reply::Wait(w));
        }
        for d in missing.into_iter().rev() {
            self.create_node(
                &d,
                NodeKind::Directory,
                false,
                Vec::new(),
                Default::default(),
            );
        }
        match self.nodes.get(p).map(|n| n.rec.meta.kind) {
            Some(NodeKind::File) => {
                self.replace_contents(p, data, None);
                return Ok(super::Reply::Done(()));
            }
            Some(NodeKind::Directory) => {
                return Err(WarrenError::invalid_argument(format!(
                    "{p} is a directory; the reshard job keeps a file there"
                )))
            }
            None => self.create_node(p, NodeKind::File, false, data.to_vec(), Default::default()),
        }
        self.own_map_written(p);
        Ok(super::Reply::Done(()))
    }

    /// The contents of file `p` here, if it exists (the reshard job's record).
    pub fn file_contents(&self, p: &str) -> Option<&[u8]> {
        self.nodes
            .get(p)
            .filter(|n| n.rec.meta.kind == NodeKind::File)
            .map(|n| n.contents.as_slice())
    }

    /// Recovery: what the store had staged.
    pub(super) fn load_staged(&mut self, staged: Vec<(String, Vec<u8>)>) {
        for (key, value) in staged {
            let parsed = key
                .split_once('/')
                .and_then(|(s, p)| Some((s.parse::<u32>().ok()?, p.to_string())));
            let node: Option<StagedNode> = serde_json::from_slice(&value).ok();
            match (parsed, node) {
                (Some((slot, p)), Some(n))
                    if n.rec.path == p && instance_assignable(n.rec.meta.instance) =>
                {
                    self.reshard.staged.insert((slot, p), n);
                }
                _ => {
                    tracing::error!(
                        key,
                        "a staged reshard record does not decode; it is dropped"
                    );
                    self.out.mutations.push(Mutation::DeleteStaged { key });
                }
            }
        }
    }
}
