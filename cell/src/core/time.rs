//! Time and waiters: [`Master::tick`] (held KeepAlives, expiries, timeouts, lock-delays,
//! clean-ups), the next deadline, and cancelling a parked operation.

use super::{sessions::hex, Master, WaiterId, Wake};
use crate::store::SessionId;
use tokio::time::Instant;
use warren_proto::WarrenError;

pub(super) enum WaiterKind {
    KeepAlive(SessionId),
    Acquire(String),
    Barrier(String),
}

impl Master {
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

    pub(super) fn new_waiter(&mut self, kind: WaiterKind) -> WaiterId {
        let w = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.insert(w, kind);
        w
    }
}
