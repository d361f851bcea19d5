//! Partitioning (docs/partitioning.md): the partition map in force, whether this cell
//! serves a path, directories split over two cells (anchor jobs, pending unlinks), and
//! what the server must do after a call ([`CallNotes`]).

use super::path;
use super::{
    acl::check_acl_names, nodes::fresh_record, CreateArgs, Master, OpenArgs, WaiterId,
    EPHEMERAL_ANCHOR_GRACE,
};
use crate::store::{AclNames, Mutation, NodeKind, NodeRecord, PendingUnlink, SessionId};
use std::sync::Arc;
use tokio::time::Instant;
use warren_proto::{ErrorCode, WarrenError};
use warren_router::{PartitionMap, Route};

/// The answer while a call waits on another cell (the partition map, an ACL file, a child
/// anchor): `FAILOVER_IN_PROGRESS`, which clients retry, saying what is awaited.
pub(super) fn retry_shortly(awaited: std::fmt::Arguments) -> WarrenError {
    WarrenError::new(
        ErrorCode::FailoverInProgress,
        format!("{awaited}; retry shortly"),
    )
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

impl AnchorJob {
    /// The job for entry `rec` if it is marked anchor-pending, its anchor to be created in
    /// `owner` (not by the call that created the entry: see [`AnchorJob::created`]).
    pub(super) fn for_entry(rec: &NodeRecord, owner: &str) -> Option<AnchorJob> {
        let pending = rec.anchor_pending.as_ref()?;
        Some(AnchorJob {
            path: rec.path.clone(),
            instance: rec.meta.instance,
            acl: rec.meta.acl.clone(),
            ephemeral: pending.ephemeral,
            owner: owner.to_string(),
            created: false,
        })
    }
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

impl Master {
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
        self.install_staged();
        true
    }

    /// Where the map lives: `/ls/<d>/warren/map` (in the meta cell).
    pub(super) fn map_file(&self) -> String {
        format!(
            "{}/{}/map",
            path::root_of(&self.cfg.deployment),
            warren_router::RESERVED
        )
    }

    /// The meta cell (or an unpartitioned cell) reads its map whenever the map file in its
    /// own namespace is created or written: from then on it serves only the reserved
    /// subtree. A map that does not parse is ignored (with an error log).
    pub(super) fn own_map_written(&mut self, p: &str) {
        if self.is_data_cell() || p != self.map_file() {
            return;
        }
        let Some(n) = self.nodes.get(p) else { return };
        if n.rec.meta.kind != NodeKind::File {
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
    pub(super) fn need_map(&self) -> Result<(), WarrenError> {
        if self.map_loaded() {
            return Ok(());
        }
        Err(retry_shortly(format_args!(
            "cell {} has not loaded the partition map yet (it reads {} from the meta cell at {})",
            self.cfg.cell,
            self.map_file(),
            self.cfg.meta.join(",")
        )))
    }

    /// `None` if this cell serves `path` (`anchor`: the directory's own slot, else its
    /// parent's) under its map, or with no map; otherwise the owner (`meta` for the
    /// reserved subtree at a data cell).
    pub(super) fn owner_elsewhere(
        &self,
        p: &str,
        anchor: bool,
    ) -> Result<Option<String>, WarrenError> {
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
    pub(super) fn serve_check(&self, p: &str, anchor: bool) -> Result<(), WarrenError> {
        if let Some(h) = self.handed_off_for(p, anchor) {
            return Err(WarrenError::wrong_cell(h.map_epoch, h.to.clone()));
        }
        match self.owner_elsewhere(p, anchor)? {
            None => Ok(()),
            Some(owner) => Err(WarrenError::wrong_cell(self.map_epoch(), owner)),
        }
    }

    /// The ownership check of a call on a handle of node `p`: a directory whose own slot
    /// this cell owns is served (its anchor); otherwise by its parent's slot.
    pub(super) fn node_check(&self, p: &str) -> Result<(), WarrenError> {
        if self.map.is_none() {
            return Ok(());
        }
        let dir = self
            .nodes
            .get(p)
            .is_some_and(|n| n.rec.meta.kind == NodeKind::Directory);
        if dir {
            if let Some(h) = self.handed_off_for(p, true) {
                if self.owner_elsewhere(p, false)?.is_none()
                    && self.handed_off_for(p, false).is_none()
                {
                    return Ok(());
                }
                return Err(WarrenError::wrong_cell(h.map_epoch, h.to.clone()));
            }
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

    /// Forgets what an earlier call noted for the server (at the start of a call that can
    /// note something).
    pub(super) fn clear_notes(&mut self) {
        self.anchor_job = None;
        self.acl_needed.borrow_mut().clear();
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

    /// The entry `p` (instance `instance`) has its child anchor: clears the mark.
    pub fn anchor_created(&mut self, p: &str, instance: u64) {
        let Some(n) = self.nodes.get_mut(p) else {
            return;
        };
        if n.rec.meta.instance != instance || n.rec.anchor_pending.is_none() {
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
            if n.rec.anchor_pending.is_none() {
                continue;
            }
            let owner = match self.owner_elsewhere(p, true) {
                Ok(Some(owner)) => owner,
                Ok(None) if self.map.is_some() => self.cfg.cell.clone(),
                _ => continue,
            };
            jobs.extend(AnchorJob::for_entry(&n.rec, &owner));
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
            .is_some_and(|n| n.rec.meta.instance == u.instance && !n.rec.anchor);
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

    /// The error an `Open` gets while the child anchor of entry `p` (in `owner`) is not
    /// confirmed; the server creates it and runs the `Open` again, so clients see this only
    /// when `owner` could not be reached.
    pub(super) fn anchor_pending_error(&self, p: &str, owner: &str) -> WarrenError {
        retry_shortly(format_args!(
            "{p} is a directory whose child anchor in cell {owner} is still being created"
        ))
    }

    /// Creates the child anchor `a.path` for the entry of instance `c.instance` in the
    /// parent's cell (`Open` target `ANCHOR` with create, from that cell): no parent check,
    /// the entry's instance; refused while this cell still has to unlink that instance's
    /// entry (the directory was deleted). `Some(waiter)`: parked on invalidations.
    pub(super) fn create_anchor(
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
            anchor,
            ..fresh_record(&a.path, NodeKind::Directory, c.instance, acl, c.ephemeral)
        };
        self.insert_node(rec, Vec::new());
        if c.ephemeral {
            self.fresh_anchors
                .insert(a.path.clone(), self.now + EPHEMERAL_ANCHOR_GRACE);
        }
        Ok(None)
    }

    /// Ephemeral anchors whose grace ended: deleted now if still unused.
    pub(super) fn end_anchor_graces(&mut self, now: Instant) {
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
    }
}
