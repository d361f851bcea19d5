//! The namespace: nodes in memory, their stat, creating and removing them (telling
//! watchers and the parent), and deleting ephemeral nodes nobody holds open.

use super::path;
use super::{locks::LockWaiter, mask, ChildChange, EventKind, HandleKey, Master, Wake};
use crate::store::{AclNames, Mutation, NodeKind, NodeMeta, NodeRecord, PendingUnlink};
use std::collections::{BTreeSet, VecDeque};
use tokio::time::Instant;
use warren_proto::WarrenError;

/// What a node looks like to clients (docs/design.md §3 metadata): its recorded metadata and the
/// counts derived from its children and contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatView {
    pub meta: NodeMeta,
    pub child_count: u64,
    pub length: u64,
}

pub(super) struct Node {
    pub(super) rec: NodeRecord,
    pub(super) contents: Vec<u8>,
    pub(super) children: BTreeSet<String>,
    /// Open handles on this node (this instance).
    pub(super) handles: BTreeSet<HandleKey>,
    pub(super) lock_waiters: VecDeque<LockWaiter>,
    /// No new holder before this (lock-delay after a holder's session failed).
    pub(super) delay_until: Option<Instant>,
    /// Acquires that were waiting at the cell this node moved from, in their order
    /// (docs/resharding.md): until `places_until`, the lock goes to them first, in turn,
    /// as their routers send them here again.
    pub(super) places: VecDeque<HandleKey>,
    pub(super) places_until: Option<Instant>,
}

impl Node {
    /// A node as loaded or created: no children linked yet, no handles, no waiters.
    pub(super) fn new(rec: NodeRecord, contents: Vec<u8>) -> Node {
        Node {
            rec,
            contents,
            children: BTreeSet::new(),
            handles: BTreeSet::new(),
            lock_waiters: VecDeque::new(),
            delay_until: None,
            places: VecDeque::new(),
            places_until: None,
        }
    }
}

/// The record of a node just created: every generation 0, no holder, no checksum, neither
/// a child anchor nor an entry waiting for one (callers set what differs).
pub(super) fn fresh_record(
    p: &str,
    kind: NodeKind,
    instance: u64,
    acl: AclNames,
    ephemeral: bool,
) -> NodeRecord {
    NodeRecord {
        path: p.to_string(),
        meta: NodeMeta {
            kind,
            instance,
            content_generation: 0,
            lock_generation: 0,
            acl_generation: 0,
            checksum: 0,
            acl,
            ephemeral,
        },
        holders: Vec::new(),
        anchor: false,
        anchor_pending: None,
    }
}

pub(super) fn checksum(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

impl Master {
    pub(super) fn stat_of(&self, path: &str) -> Option<StatView> {
        let n = self.nodes.get(path)?;
        Some(StatView {
            meta: n.rec.meta.clone(),
            child_count: n.children.len() as u64,
            length: n.contents.len() as u64,
        })
    }

    pub(super) fn create_node(
        &mut self,
        p: &str,
        kind: NodeKind,
        ephemeral: bool,
        contents: Vec<u8>,
        acl: AclNames,
    ) {
        let mut rec = fresh_record(p, kind, self.meta.next_instance, acl, ephemeral);
        if kind == NodeKind::File {
            rec.meta.checksum = checksum(&contents);
        }
        self.insert_node(rec, contents);
    }

    /// Adds a new node (its instance already chosen; the instance counter moves past it),
    /// links it into its parent unless it is an anchor, and tells the parent's watchers.
    pub(super) fn insert_node(&mut self, rec: NodeRecord, contents: Vec<u8>) {
        let p = rec.path.clone();
        let kind = rec.meta.kind;
        let linked = !rec.anchor;
        if rec.anchor_pending.is_some() {
            self.pending_entries.insert(p.clone());
        }
        self.meta.next_instance = self.meta.next_instance.max(rec.meta.instance + 1);
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
        self.nodes.insert(p.clone(), Node::new(rec, contents));
        if !linked {
            return;
        }
        self.child_changed(&p, ChildChange::Added);
        if kind == NodeKind::File {
            self.own_map_written(&p);
        }
    }

    /// Deletes an ephemeral node once no handle holds it open (and, for a directory, once
    /// it is empty), then its ephemeral parents likewise.
    pub(super) fn maybe_delete_ephemeral(&mut self, p: &str) {
        let Some(n) = self.nodes.get(p) else { return };
        if !n.rec.meta.ephemeral || !n.handles.is_empty() || !n.children.is_empty() {
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
    pub(super) fn remove_node(&mut self, p: &str, by: Option<HandleKey>) {
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
                instance: n.rec.meta.instance,
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
        self.child_changed(p, ChildChange::Removed);
    }

    /// Node `p` was added to its parent, removed from it, or modified (its contents,
    /// ACL): the parent's list of children follows, and its watchers are told.
    pub(super) fn child_changed(&mut self, p: &str, change: ChildChange) {
        let Some(parent) = path::parent(p) else {
            return;
        };
        let child = path::name(p);
        if let Some(n) = self.nodes.get_mut(parent) {
            match change {
                ChildChange::Added => {
                    n.children.insert(child.to_string());
                }
                ChildChange::Removed => {
                    n.children.remove(child);
                }
                ChildChange::Modified | ChildChange::None => {}
            }
        }
        self.notify_handles(
            parent,
            mask::CHILD_CHANGED,
            EventKind::ChildChanged,
            child,
            change,
            None,
        );
    }
}
