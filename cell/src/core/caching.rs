//! Cache invalidation: which sessions may cache which paths, the invalidations a
//! modification sends, and the barrier that parks a write until they are acknowledged.

use super::{ChildChange, EventKind, Master, WaiterId, WaiterKind, Wake};
use crate::store::SessionId;

impl Master {
    /// Records that `sid` may cache `path`; false (uncachable) while invalidations of it
    /// are outstanding.
    /// A sub-session's reads are cached by its proxy session, so that is the one recorded.
    pub(super) fn register_cacher(&mut self, sid: SessionId, path: &str) -> bool {
        if self.invalidating.contains_key(path) || self.moving_path(path) {
            return false;
        }
        let sid = self
            .sessions
            .get(&sid)
            .and_then(|s| s.rec.parent)
            .unwrap_or(sid);
        self.cachers
            .entry(path.to_string())
            .or_default()
            .insert(sid);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.cached.insert(path.to_string());
        }
        true
    }

    /// Tells every session that may cache `path` (except `writer`, whose own library
    /// drops its copy when it writes, and `also_exempt`, a writer's proxy that dropped its
    /// copies) to drop it. Every registration ends. Returns whether acknowledgements are
    /// outstanding.
    pub(super) fn start_invalidation(
        &mut self,
        path: &str,
        writer: Option<SessionId>,
        also_exempt: Option<SessionId>,
    ) -> bool {
        if let Some(set) = self.cachers.remove(path) {
            for sid in set {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.cached.remove(path);
                }
                if Some(sid) == writer || Some(sid) == also_exempt {
                    continue;
                }
                if let Some(seq) = self.push_event(
                    sid,
                    EventKind::Invalidate,
                    Vec::new(),
                    path,
                    "",
                    ChildChange::None,
                ) {
                    self.sessions
                        .get_mut(&sid)
                        .expect("live")
                        .pending_invalidations
                        .insert(seq, path.to_string());
                    self.invalidating
                        .entry(path.to_string())
                        .or_default()
                        .insert(sid);
                    metrics::counter!("warren_cell_invalidations_sent_total").increment(1);
                }
            }
        }
        self.invalidating.contains_key(path)
    }

    pub(super) fn invalidation_done(&mut self, path: &str, sid: SessionId) {
        let Some(set) = self.invalidating.get_mut(path) else {
            return;
        };
        set.remove(&sid);
        if set.is_empty() {
            self.invalidating.remove(path);
            for w in self.barriers.remove(path).unwrap_or_default() {
                if self.waiters.remove(&w).is_some() {
                    self.out.wakes.push((w, Wake::Retry));
                }
            }
        }
    }

    /// Before a modification of `paths` by `writer`: invalidates cached copies and, if any
    /// session has yet to acknowledge, parks the write (it is retried on [`Wake::Retry`]).
    pub(super) fn barrier(&mut self, writer: SessionId, paths: &[&str]) -> Option<WaiterId> {
        self.barrier_exempting(writer, None, paths)
    }

    /// [`Self::barrier`], not invalidating `also_exempt` either (the writer's proxy, when it
    /// says it dropped its copies: `SessionContext.proxy_dropped_copies`).
    pub(super) fn barrier_exempting(
        &mut self,
        writer: SessionId,
        also_exempt: Option<SessionId>,
        paths: &[&str],
    ) -> Option<WaiterId> {
        if let Some(slot) = self.frozen_slot(paths) {
            return Some(self.park_on_freeze(slot));
        }
        let mut blocked = None;
        for p in paths {
            if self.start_invalidation(p, Some(writer), also_exempt) {
                blocked = Some(p.to_string());
            }
        }
        let p = blocked?;
        let w = self.new_waiter(WaiterKind::Barrier(p.clone()));
        self.barriers.entry(p).or_default().push(w);
        Some(w)
    }

    /// Paths currently uncachable (for tests and status).
    pub fn is_uncachable(&self, path: &str) -> bool {
        self.invalidating.contains_key(path)
    }
}
