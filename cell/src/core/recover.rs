//! Takeover and failover (docs/design.md §9): building a master from the store, and the new-master
//! procedure that serves only KeepAlive until every session has acknowledged the failover.

use super::path;
use super::token::TokenKey;
use super::{ChildChange, CoreConfig, EventKind, HandleKey, Master, Node, Output, Session};
use crate::core::{HashMap, HashSet};
use crate::store::{
    AclNames, MetaRecord, Mutation, NodeKind, NodeRecord, SessionId, SessionRecord, Snapshot,
};
use rand::rngs::StdRng;
use rand::Rng;
use rand::SeedableRng;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::WarrenError;
use warren_server::lease::Tombstones;

/// The new-master procedure in progress (docs/design.md §9 steps 4–9).
pub(super) struct Recovery {
    /// Sessions that have not yet acknowledged their fail-over event: session → its seq.
    /// While any remain, only KeepAlive is served (steps 4–6).
    pub(super) awaiting: HashMap<SessionId, u64>,
    /// Ephemeral nodes no handle has reopened since the failover.
    pub(super) unclaimed_ephemeral: HashSet<String>,
    /// When unclaimed ephemeral nodes are deleted (step 9).
    pub(super) cleanup_at: Instant,
    /// Locks recorded by the previous master: session → (path, holder handle). Released
    /// (with lock-delay) if the session ends without reclaiming them.
    pub(super) restored_holds: HashMap<SessionId, Vec<(String, HandleKey)>>,
}

impl Master {
    /// Builds the master from what the store holds, as a new master does at takeover
    /// (docs/design.md §9 steps 1 and 3): bumps and records the epoch, rebuilds sessions (each with a
    /// full lease from now) and locks. A store that holds nothing is initialised with the
    /// deployment root and its `acl` directory.
    pub fn recover(
        cfg: CoreConfig,
        snap: Snapshot,
        now: Instant,
        seed: u64,
    ) -> Result<Master, WarrenError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let fresh = snap.meta.is_none();
        let mut meta = match snap.meta {
            Some(meta) => next_epoch(meta, &cfg)?,
            None => first_meta(&cfg, &mut rng),
        };
        let leases = RestoredLeases::record(&mut meta, &cfg);
        let mut m = Master::empty(cfg, meta, rng, now);
        m.load_nodes(snap.nodes, snap.contents);
        m.load_staged(snap.staged);
        // The meta cell (or an unpartitioned one) reads its map from its own namespace.
        let own_map = m.map_file();
        m.own_map_written(&own_map);
        m.install_staged();
        let restored = m.restore_sessions(snap.sessions, leases, now);
        let mut recovery = m.recovery_of_restored_state(now);
        m.release_holds_of_ended_sessions();
        m.announce_failover(&restored, &mut recovery);
        if fresh {
            m.create_deployment_root();
        } else {
            tracing::info!(
                epoch = m.meta.epoch,
                sessions = recovery.awaiting.len(),
                orphans = m.orphans.len(),
                ephemeral = recovery.unclaimed_ephemeral.len(),
                "new master: waiting for sessions to acknowledge the failover"
            );
            m.recovery = Some(recovery);
        }
        Ok(m)
    }

    /// A master holding nothing yet but its identity; the (updated) meta record is the
    /// first mutation it commits.
    fn empty(cfg: CoreConfig, meta: MetaRecord, rng: StdRng, now: Instant) -> Master {
        let mut out = Output::default();
        out.mutations.push(Mutation::PutMeta(meta.clone()));
        Master {
            cfg,
            key: TokenKey::new(meta.secret),
            meta,
            rng,
            now,
            nodes: HashMap::default(),
            sessions: HashMap::default(),
            leased: BTreeSet::new(),
            handles: HashMap::default(),
            next_handle: 1,
            closed_old_handles: HashSet::default(),
            cachers: HashMap::default(),
            invalidating: HashMap::default(),
            barriers: HashMap::default(),
            invalidation_deadlines: BTreeSet::new(),
            deserted_checks: BTreeSet::new(),
            waiters: HashMap::default(),
            next_waiter: 1,
            recovery: None,
            orphans: BTreeSet::new(),
            tombstones: Tombstones::default(),
            map: None,
            fresh_anchors: HashMap::default(),
            acl_supply: HashMap::default(),
            acl_needed: RefCell::new(BTreeSet::new()),
            anchor_job: None,
            pending_entries: BTreeSet::new(),
            reshard: Default::default(),
            out,
        }
    }

    /// The nodes of the store, linked to their parents (a child anchor is no child of a
    /// local node: its entry is in another cell), with the entries still waiting for their
    /// anchor noted.
    fn load_nodes(&mut self, records: Vec<NodeRecord>, contents: Vec<(String, Vec<u8>)>) {
        let mut contents: HashMap<String, Vec<u8>> = contents.into_iter().collect();
        let mut paths: Vec<String> = Vec::new();
        for rec in records {
            paths.push(rec.path.clone());
            let data = contents.remove(&rec.path).unwrap_or_default();
            self.nodes.insert(rec.path.clone(), Node::new(rec, data));
        }
        self.pending_entries = self
            .nodes
            .iter()
            .filter(|(_, n)| n.rec.anchor_pending.is_some())
            .map(|(p, _)| p.clone())
            .collect();
        for p in &paths {
            if self.nodes[p].rec.anchor {
                continue;
            }
            if let Some(parent) = path::parent(p) {
                if let Some(n) = self.nodes.get_mut(parent) {
                    n.children.insert(path::name(p).to_string());
                }
            }
        }
    }

    /// Step 3: the sessions of the store, each with the longest lease the previous master
    /// may have granted, counted from now. Sub-sessions have no lease of their own: they
    /// rejoin their proxy session, or are orphans from now if it was not restored. Returns
    /// the ids of all of them, in the store's order.
    fn restore_sessions(
        &mut self,
        records: Vec<SessionRecord>,
        leases: RestoredLeases,
        now: Instant,
    ) -> Vec<SessionId> {
        let restored: Vec<SessionId> = records.iter().map(|r| r.id).collect();
        for rec in records {
            let lease = if rec.proxy {
                leases.proxy
            } else {
                leases.session
            };
            self.insert_session(Session::new(rec, now + lease));
        }
        let mut orphaned = Vec::new();
        for sid in &restored {
            let Some(parent) = self.sessions[sid].rec.parent else {
                continue;
            };
            match self.sessions.get_mut(&parent) {
                Some(p) if p.rec.parent.is_none() => {
                    p.subs.insert(*sid);
                }
                _ => orphaned.push(*sid),
            }
        }
        for sid in orphaned {
            self.make_orphan(sid);
        }
        restored
    }

    /// The new-master procedure for what was restored: every ephemeral node is unclaimed
    /// until a handle reopens it, every recorded lock is held for its session until the
    /// session reclaims it or ends.
    fn recovery_of_restored_state(&self, now: Instant) -> Recovery {
        let mut recovery = Recovery {
            awaiting: HashMap::default(),
            unclaimed_ephemeral: HashSet::default(),
            cleanup_at: now + self.cfg.ephemeral_cleanup,
            restored_holds: HashMap::default(),
        };
        for (p, n) in &self.nodes {
            if n.rec.meta.ephemeral {
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
        recovery
    }

    /// Holders whose session did not survive (closed or expired as far as the store
    /// knows) are released now, as their session's end would have.
    fn release_holds_of_ended_sessions(&mut self) {
        let ended: Vec<(String, SessionId, HandleKey)> = self
            .nodes
            .iter()
            .flat_map(|(p, n)| {
                n.rec
                    .holders
                    .iter()
                    .map(move |h| (p.clone(), h.session, (h.handle_epoch, h.handle)))
            })
            .filter(|(_, sid, _)| !self.sessions.contains_key(sid))
            .collect();
        for (p, sid, k) in ended {
            self.drop_holder(&p, sid, k, true);
        }
    }

    /// Step 5: every session is told of the failover (its cache may be stale, events may
    /// have been lost); steps 4 and 6: only KeepAlive until each acknowledges. A
    /// sub-session's event is queued on its proxy session, tagged with its id; only
    /// top-level sessions are awaited, each until it acknowledges the last event queued for
    /// it (its own and its sub-sessions'). Orphans get none (nobody to deliver to).
    fn announce_failover(&mut self, restored: &[SessionId], recovery: &mut Recovery) {
        for &sid in restored {
            let target = self.sessions[&sid].rec.parent.unwrap_or(sid);
            let ev = EventKind::MasterFailover;
            if let Some(seq) = self.push_event(sid, ev, Vec::new(), "", "", ChildChange::None) {
                recovery.awaiting.insert(target, seq);
            }
        }
    }

    /// A store that held nothing: the deployment root and its `acl` directory.
    fn create_deployment_root(&mut self) {
        let root = path::root_of(&self.cfg.deployment);
        for p in [root.clone(), format!("{root}/acl")] {
            self.create_node(
                &p,
                NodeKind::Directory,
                false,
                Vec::new(),
                AclNames::default(),
            );
        }
    }

    /// Whether the new-master procedure still holds back everything but KeepAlive.
    pub fn recovering(&self) -> bool {
        self.recovery
            .as_ref()
            .is_some_and(|r| !r.awaiting.is_empty())
    }

    /// Step 6: a session acknowledged its fail-over event (or ended: `ack` is `None`).
    pub(super) fn failover_acknowledged(&mut self, sid: SessionId, ack: Option<u64>) {
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

    /// Step 9: deletes the ephemeral nodes nobody reopened since the failover, once the clean-up time has come.
    pub(super) fn delete_unclaimed_ephemeral(&mut self, now: Instant) {
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
}

/// Step 1 at a store that holds a cell: the next epoch, refused if the store holds another
/// cell or deployment than configured.
fn next_epoch(mut meta: MetaRecord, cfg: &CoreConfig) -> Result<MetaRecord, WarrenError> {
    if meta.deployment != cfg.deployment || meta.cell != cfg.cell {
        return Err(WarrenError::invalid_argument(format!(
            "the store holds cell {:?} of deployment {:?}, but this process is configured as cell {:?} of deployment {:?}; point --data at the right directory or fix --name",
            meta.cell, meta.deployment, cfg.cell, cfg.deployment
        )));
    }
    // A counter read back from the store: a corrupt record may hold anything.
    meta.epoch = meta.epoch.checked_add(1).ok_or_else(|| {
        WarrenError::internal(format!(
            "the store's meta record of cell {:?} holds epoch {}, the largest there is: no new \
             master epoch can follow it; the store is corrupt, restore the cell from a backup \
             (docs/backup.md)",
            meta.cell, meta.epoch
        ))
    })?;
    Ok(meta)
}

/// The meta record of a cell that never ran: epoch 1 and a new token secret.
fn first_meta(cfg: &CoreConfig, rng: &mut StdRng) -> MetaRecord {
    MetaRecord {
        epoch: 1,
        secret: rng.gen(),
        next_instance: 1,
        deployment: cfg.deployment.clone(),
        cell: cfg.cell.clone(),
        max_lease_granted_ms: 0,
        max_proxy_lease_granted_ms: 0,
        pending_unlinks: Vec::new(),
        handed_off: Vec::new(),
        foreign_keys: Default::default(),
        lost_epochs: Vec::new(),
    }
}

/// The leases restored sessions get: the longest the previous master may have granted, or
/// ours if longer.
#[derive(Clone, Copy)]
struct RestoredLeases {
    session: Duration,
    proxy: Duration,
}

impl RestoredLeases {
    /// Takes the longest leases ever granted from `meta` and records ours there if longer.
    fn record(meta: &mut MetaRecord, cfg: &CoreConfig) -> RestoredLeases {
        let session = Duration::from_millis(meta.max_lease_granted_ms).max(cfg.lease);
        meta.max_lease_granted_ms = session.as_millis() as u64;
        let proxy = Duration::from_millis(meta.max_proxy_lease_granted_ms).max(cfg.proxy_lease);
        meta.max_proxy_lease_granted_ms = proxy.as_millis() as u64;
        RestoredLeases { session, proxy }
    }
}
