//! Takeover and failover (SPEC §5): building a master from the store, and the new-master
//! procedure that serves only KeepAlive until every session has acknowledged the failover.

use super::path;
use super::token::TokenKey;
use super::{ChildChange, CoreConfig, EventKind, HandleKey, Master, Node, Output, Session};
use crate::store::{AclNames, MetaRecord, Mutation, NodeKind, SessionId, Snapshot};
use rand::rngs::StdRng;
use rand::Rng;
use rand::SeedableRng;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::WarrenError;

/// The new-master procedure in progress (SPEC §5 steps 4–9).
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
}
