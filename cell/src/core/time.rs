//! Time and waiters: [`Master::tick`] (held KeepAlives, expiries, timeouts, lock-delays,
//! clean-ups), the next deadline, and cancelling a parked operation.

use super::{Master, WaiterId};
use crate::store::SessionId;
use tokio::time::Instant;

pub(super) enum WaiterKind {
    KeepAlive(SessionId),
    Acquire(String),
    Barrier(String),
}

impl Master {
    /// Advances time: answers KeepAlives that were held long enough, expires sessions whose
    /// lease ran out and orphans nobody claimed, times out Acquires, grants locks whose
    /// lock-delay ended, and deletes ephemeral nodes whose grace ended. Each concern's
    /// step lives with it.
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
        self.answer_due_keepalives(now);
        self.expire_lapsed_sessions(now);
        self.release_lapsed_invalidations(now);
        self.end_deserted_proxies(now);
        self.end_unclaimed_orphans(now);
        self.end_lapsed_freezes(now);
        self.forget_old_tombstones(now);
        self.wake_lock_waiters(now);
        self.end_anchor_graces(now);
        self.delete_unclaimed_ephemeral(now);
    }

    /// The earliest time at which [`Master::tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let s = self
            .leased
            .iter()
            .filter_map(|id| self.sessions.get(id))
            .map(|s| {
                let end = s.lease.end;
                s.lease
                    .held()
                    .and_then(|h| h.until)
                    .map_or(end, |until| until.min(end))
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
        let i = self.next_invalidation_deadline();
        let d = self.next_deserted_check();
        [s, n, c, o, a, i, d].into_iter().flatten().min()
    }

    /// The caller of a parked operation went away (its RPC was cancelled).
    pub fn cancel(&mut self, w: WaiterId) {
        match self.waiters.remove(&w) {
            Some(WaiterKind::KeepAlive(sid)) => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.lease.cancel(w);
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

    pub(super) fn new_waiter(&mut self, kind: WaiterKind) -> WaiterId {
        let w = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.insert(w, kind);
        w
    }
}
