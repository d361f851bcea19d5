//! Cache invalidation: which sessions may cache which paths, the invalidations a
//! modification sends, and the barrier that parks a write until they are acknowledged —
//! or, for a proxy session, until its hold-back says its copies are gone, or at once when
//! every client it had here went to another proxy (docs/design.md §10, "A dead proxy").

use super::{ChildChange, EventKind, Master, WaiterId, WaiterKind, Wake};
use crate::store::SessionId;
use std::time::Duration;
use tokio::time::Instant;
use warren_server::lease::short_id;

/// Added to a proxy session's hold-back deadline (its lease end when the invalidation was
/// sent, minus its hold-back) before the cell stops waiting for its acknowledgement. The
/// proxy's own arithmetic (a local lease, `/ (1 + ρ)`) already makes its copies end by the
/// deadline itself; this covers what that arithmetic does not see, such as a read the
/// proxy began answering from its cache an instant before its cover ended.
pub const HOLD_BACK_MARGIN: Duration = Duration::from_millis(500);

/// How long a deserted proxy session (every client it had here was claimed by another
/// one) may leave an invalidation unacknowledged before it is ended. A live proxy
/// acknowledges one that no client of it holds within a round trip.
pub const DESERTED_GRACE: Duration = Duration::from_millis(500);

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
                // Judged before the event is queued: queuing it answers a held KeepAlive,
                // which extends the lease in a reply that carries the invalidation.
                let copies_end = self.proxy_copies_end(sid);
                if let Some(seq) = self.push_event(
                    sid,
                    EventKind::Invalidate,
                    Vec::new(),
                    path,
                    "",
                    ChildChange::None,
                ) {
                    metrics::counter!("warren_cell_invalidations_sent_total").increment(1);
                    match copies_end {
                        CopiesEnd::Never => {}
                        CopiesEnd::Deserted => {
                            self.deserted_checks
                                .insert((self.now + DESERTED_GRACE, sid));
                        }
                        CopiesEnd::Gone => continue,
                        CopiesEnd::At(t) => {
                            self.invalidation_deadlines.insert((t, sid, seq));
                        }
                    }
                    self.sessions
                        .get_mut(&sid)
                        .expect("live")
                        .pending_invalidations
                        .insert(seq, path.to_string());
                    self.invalidating
                        .entry(path.to_string())
                        .or_default()
                        .insert(sid);
                }
            }
        }
        self.invalidating.contains_key(path)
    }

    /// When the copies a session may hold stop mattering, whether it acknowledges or not.
    /// Only a proxy session that promised a hold-back, or that every client left, ends
    /// before its lease; any other session's copies last until it acknowledges or its
    /// lease ends.
    fn proxy_copies_end(&self, sid: SessionId) -> CopiesEnd {
        let Some(s) = self.sessions.get(&sid) else {
            return CopiesEnd::Gone;
        };
        if !s.rec.proxy {
            return CopiesEnd::Never;
        }
        if s.deserted && s.subs.is_empty() && s.handles.is_empty() {
            return CopiesEnd::Deserted;
        }
        if s.hold_back.is_zero() {
            return CopiesEnd::Never;
        }
        // The proxy's covers were all counted from lease ends no later than this one (a
        // reply sent from now on carries this invalidation, which the proxy applies before
        // taking the reply's lease), and each ends `hold_back` before its lease end.
        match s.lease.end.checked_sub(s.hold_back) {
            Some(t) if t + HOLD_BACK_MARGIN > self.now => CopiesEnd::At(t + HOLD_BACK_MARGIN),
            _ => CopiesEnd::Gone,
        }
    }

    /// A proxy session's KeepAlive carried `SessionContext.hold_back_ms`. A session keeps
    /// the smallest it was told (covers already counted with a smaller one may reach
    /// further); zero withdraws the promise.
    pub(super) fn note_hold_back(&mut self, sid: SessionId, hold_back: Duration) {
        let Some(s) = self.sessions.get_mut(&sid).filter(|s| s.rec.proxy) else {
            return;
        };
        s.hold_back = if hold_back.is_zero() || s.hold_back.is_zero() {
            hold_back
        } else {
            s.hold_back.min(hold_back)
        };
    }

    /// Invalidations whose deadline has come: a proxy session's hold-back (the proxy and
    /// its clients can no longer hold the copies), or the lease a client in jeopardy had
    /// when its lease was extended without them. The writes stop waiting for them. The
    /// event stays queued: a session that comes back applies it before anything else.
    pub(super) fn release_lapsed_invalidations(&mut self, now: Instant) {
        while let Some(&(t, sid, seq)) = self.invalidation_deadlines.first() {
            if t > now {
                break;
            }
            self.invalidation_deadlines.pop_first();
            let Some(path) = self
                .sessions
                .get_mut(&sid)
                .and_then(|s| s.pending_invalidations.remove(&seq))
            else {
                continue; // acknowledged, or the session ended
            };
            tracing::info!(
                session = %short_id(&sid),
                %path,
                "a session did not acknowledge an invalidation before its copies ended (a proxy's hold-back, or the lease a client in jeopardy had)"
            );
            metrics::counter!("warren_cell_invalidations_lapsed_total").increment(1);
            self.invalidation_done(&path, sid);
        }
    }

    /// The earliest hold-back deadline, for [`Master::next_deadline`].
    pub(super) fn next_invalidation_deadline(&self) -> Option<Instant> {
        self.invalidation_deadlines.first().map(|(t, _, _)| *t)
    }

    /// Deserted proxy sessions (see [`Master::end_deserted`]) whose grace has run out with
    /// an invalidation still unacknowledged are ended.
    pub(super) fn end_deserted_proxies(&mut self, now: Instant) {
        while let Some(&(t, sid)) = self.deserted_checks.first() {
            if t > now {
                break;
            }
            self.deserted_checks.pop_first();
            if matches!(self.proxy_copies_end(sid), CopiesEnd::Deserted)
                && !self.sessions[&sid].pending_invalidations.is_empty()
            {
                self.end_deserted(sid);
            }
        }
    }

    /// The earliest check of a deserted proxy session, for [`Master::next_deadline`].
    pub(super) fn next_deserted_check(&self) -> Option<Instant> {
        self.deserted_checks.first().map(|(t, _)| *t)
    }

    /// A proxy session every client left (each was claimed by another proxy session) and
    /// that holds nothing of its own has left an invalidation unacknowledged for
    /// [`DESERTED_GRACE`]: nobody reads through it here, so it is ended rather than waited
    /// for. Ending it also fences a proxy that is alive but cut off: its next call or
    /// KeepAlive here fails, and it flushes what it cached from this cell before it serves
    /// anything from a new session.
    fn end_deserted(&mut self, sid: SessionId) {
        tracing::info!(
            session = %short_id(&sid),
            "a proxy session whose clients all moved to another proxy has an invalidation outstanding; ending it"
        );
        metrics::counter!("warren_cell_deserted_proxy_sessions_ended_total").increment(1);
        self.end_session(
            sid,
            true,
            warren_proto::WarrenError::session_expired(
                "every client of this proxy session moved to another proxy session",
            ),
        );
    }

    /// The writes waiting on `sid`'s unacknowledged invalidations stop waiting when its
    /// lease, as it stands now, ends (see [`Master::keepalive_holding_back`]: its lease is
    /// about to be extended without them).
    pub(super) fn bound_invalidations_by_lease(&mut self, sid: SessionId) {
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        let end = s.lease.end;
        let seqs: Vec<u64> = s.pending_invalidations.keys().copied().collect();
        for seq in seqs {
            self.invalidation_deadlines.insert((end, sid, seq));
        }
        self.release_lapsed_invalidations(self.now);
    }

    /// `sid` caches nothing from here any more (it ended): it is no cacher of anything, and
    /// the invalidations it has not acknowledged are done.
    pub(super) fn stop_caching(&mut self, sid: SessionId) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let cached: Vec<String> = s.cached.drain().collect();
        let pending: Vec<String> = std::mem::take(&mut s.pending_invalidations)
            .into_values()
            .collect();
        for p in cached {
            if let Some(set) = self.cachers.get_mut(&p) {
                set.remove(&sid);
                if set.is_empty() {
                    self.cachers.remove(&p);
                }
            }
        }
        for p in pending {
            self.invalidation_done(&p, sid);
        }
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
        // A planted bug (`WARREN_PLANT=stale-cache`, docs/reliability.md, "Chaos"; only in
        // `fault-injection` builds): cached copies are left as they are.
        if crate::server::plant::armed(crate::server::plant::Plant::StaleCache) {
            return None;
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

/// See [`Master::proxy_copies_end`].
enum CopiesEnd {
    /// Until acknowledged or the session's lease ends.
    Never,
    /// Until this time (a proxy's hold-back).
    At(Instant),
    /// Already: a proxy whose hold-back has run out since it was last extended.
    Gone,
    /// A deserted proxy session: ended after [`DESERTED_GRACE`] unless it acknowledges.
    Deserted,
}
