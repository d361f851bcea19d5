//! Locks: `Acquire` (FIFO waiters, timeouts), `TryAcquire`, `Release`, lock-delay after a
//! failed holder, `ConflictingLock` events, and sequencers.

use super::path;
use super::{
    intent, mask, ChildChange, Ctx, EventKind, HandleKey, Master, Node, Reply, WaiterId,
    WaiterKind, Wake,
};
use crate::store::{LockHolder, LockMode, Mutation, NodeKind, NodeRecord, SessionId};
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::WarrenError;

/// Names a lock at one moment: a sequencer is current while the lock is still held in
/// `mode` at `lock_generation` on node `instance`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencerView {
    pub path: String,
    pub mode: LockMode,
    pub instance: u64,
    pub lock_generation: u64,
}

impl SequencerView {
    /// The lock on node `rec` (at `p`) as held now in `mode`.
    fn of(p: &str, mode: LockMode, rec: &NodeRecord) -> SequencerView {
        SequencerView {
            path: p.to_string(),
            mode,
            instance: rec.meta.instance,
            lock_generation: rec.meta.lock_generation,
        }
    }
}

/// An `Acquire` that cannot be granted now: its session, handle and node.
struct Blocked {
    session: SessionId,
    handle: HandleKey,
    path: String,
}

/// The holder of node `n`'s lock through handle `k`, if it holds it.
fn holder_of(n: &Node, k: HandleKey) -> Option<&LockHolder> {
    n.rec
        .holders
        .iter()
        .find(|h| (h.handle_epoch, h.handle) == k)
}

#[derive(Clone, Debug)]
pub(super) struct LockWaiter {
    pub(super) id: WaiterId,
    pub(super) session: SessionId,
    pub(super) handle: HandleKey,
    pub(super) mode: LockMode,
    pub(super) deadline: Option<Instant>,
}

pub(super) fn mode_name(m: LockMode) -> &'static str {
    match m {
        LockMode::Exclusive => "exclusive",
        LockMode::Shared => "shared",
    }
}

/// Whether a place kept for a moved waiter stops handle `k` from taking the lock now:
/// while places are kept, only the first of them may.
fn place_blocks(n: &Node, k: HandleKey, now: Instant) -> bool {
    n.places_until.is_some_and(|t| t > now) && n.places.front().is_some_and(|f| *f != k)
}

/// Where handle `k`'s Acquire goes in the queue: a moved waiter back in its kept place
/// (before every waiter with a later place or none), anyone else at the end.
fn queue_position(n: &Node, k: HandleKey) -> usize {
    let Some(mine) = n.places.iter().position(|p| *p == k) else {
        return n.lock_waiters.len();
    };
    n.lock_waiters
        .iter()
        .position(|w| {
            n.places
                .iter()
                .position(|p| *p == w.handle)
                .is_none_or(|i| i > mine)
        })
        .unwrap_or(n.lock_waiters.len())
}

impl Master {
    pub(super) fn grantable(n: &Node, mode: LockMode, now: Instant) -> bool {
        if n.delay_until.is_some_and(|d| d > now) {
            return false;
        }
        match mode {
            // The planted bug of the simulation's checker test (docs/reliability.md,
            // "Deterministic simulation"): an exclusive lock granted while held.
            #[cfg(feature = "sim")]
            LockMode::Exclusive if crate::planted::double_grant() => true,
            // The same bug planted in a real process (`WARREN_PLANT=double-grant`,
            // docs/reliability.md, "Chaos"; only in `fault-injection` builds).
            LockMode::Exclusive
                if crate::server::plant::armed(crate::server::plant::Plant::DoubleGrant) =>
            {
                true
            }
            LockMode::Exclusive => n.rec.holders.is_empty(),
            LockMode::Shared => n.rec.holders.iter().all(|h| h.mode == LockMode::Shared),
        }
    }

    pub(super) fn grant(
        &mut self,
        p: &str,
        sid: SessionId,
        k: HandleKey,
        mode: LockMode,
    ) -> SequencerView {
        let delay = self.handles.get(&k).map_or(0, |h| h.lock_delay_ms);
        let n = self.nodes.get_mut(p).expect("exists");
        n.places.retain(|x| *x != k);
        let was_free = n.rec.holders.is_empty();
        if was_free {
            n.rec.meta.lock_generation += 1;
        }
        n.rec.holders.push(LockHolder {
            session: sid,
            handle_epoch: k.0,
            handle: k.1,
            mode,
            lock_delay_ms: delay,
        });
        let seq = SequencerView::of(p, mode, &n.rec);
        self.out.mutations.push(Mutation::PutNode(n.rec.clone()));
        if was_free {
            // The stat (lock generation) changed. Nobody waits on this (see
            // maybe_delete_ephemeral); the acquirer learns the new generation from its reply.
            self.start_invalidation(p, Some(sid), None);
        }
        self.notify_handles(
            p,
            mask::LOCK_ACQUIRED,
            EventKind::LockAcquired,
            "",
            ChildChange::None,
            Some(k),
        );
        seq
    }

    /// Grants queued Acquires in order while they are compatible.
    pub(super) fn grant_waiters(&mut self, p: &str) {
        loop {
            let now = self.now;
            let Some(n) = self.nodes.get_mut(p) else {
                return;
            };
            let Some(front) = n.lock_waiters.front() else {
                return;
            };
            if !Self::grantable(n, front.mode, now) || place_blocks(n, front.handle, now) {
                return;
            }
            let w = n.lock_waiters.pop_front().expect("front");
            if self.waiters.remove(&w.id).is_none() {
                continue;
            }
            let seq = self.grant(p, w.session, w.handle, w.mode);
            self.out.wakes.push((w.id, Wake::Acquire(Ok(seq))));
        }
    }

    pub(super) fn drop_holder(
        &mut self,
        p: &str,
        sid: SessionId,
        k: HandleKey,
        failed: bool,
    ) -> bool {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(p) else {
            return false;
        };
        let Some(i) = n
            .rec
            .holders
            .iter()
            .position(|h| (h.handle_epoch, h.handle) == k && h.session == sid)
        else {
            return false;
        };
        let h = n.rec.holders.remove(i);
        if failed && h.lock_delay_ms > 0 {
            let until = now + Duration::from_millis(h.lock_delay_ms);
            n.delay_until = Some(n.delay_until.map_or(until, |d| d.max(until)));
        }
        self.out.mutations.push(Mutation::PutNode(n.rec.clone()));
        true
    }

    /// The start of `Acquire` and `TryAcquire`: the lock granted now (or already held by
    /// this handle in this mode), or the request that has to wait.
    fn lock_now(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        mode: LockMode,
        now: Instant,
    ) -> Result<Result<SequencerView, Blocked>, WarrenError> {
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        self.need_intent(k, intent::WRITE, "locking")?;
        let n = &self.nodes[&p];
        if let Some(h) = holder_of(n, k) {
            if h.mode != mode {
                return Err(WarrenError::invalid_argument(format!(
                    "this handle already holds the lock on {p} in {} mode",
                    mode_name(h.mode)
                )));
            }
            return Ok(Ok(SequencerView::of(&p, mode, &n.rec)));
        }
        if n.lock_waiters.iter().any(|w| w.handle == k) {
            return Err(WarrenError::invalid_argument(format!(
                "an Acquire on this handle of {p} is already waiting"
            )));
        }
        self.not_frozen(&p)?;
        let n = &self.nodes[&p];
        if n.lock_waiters.is_empty() && Self::grantable(n, mode, now) && !place_blocks(n, k, now) {
            return Ok(Ok(self.grant(&p, sid, k, mode)));
        }
        Ok(Err(Blocked {
            session: sid,
            handle: k,
            path: p,
        }))
    }

    pub(super) fn why_not(&self, p: &str, mode: LockMode) -> String {
        let n = &self.nodes[p];
        if let Some(d) = n.delay_until.filter(|d| *d > self.now) {
            return format!(
                "{p} is in lock-delay for another {} ms after its holder's session failed",
                d.duration_since(self.now).as_millis()
            );
        }
        if !n.rec.holders.is_empty() {
            let held = mode_name(n.rec.holders[0].mode);
            return format!(
                "{p} is held in {held} mode by {} holder(s)",
                n.rec.holders.len()
            );
        }
        format!("{p} has earlier waiters for a {} lock", mode_name(mode))
    }

    pub(super) fn conflicting(&mut self, p: &str, k: HandleKey) {
        let holders: Vec<HandleKey> = self.nodes[p]
            .rec
            .holders
            .iter()
            .map(|h| (h.handle_epoch, h.handle))
            .collect();
        for hk in holders {
            let Some(h) = self.handles.get(&hk) else {
                continue;
            };
            if hk != k && h.events & mask::CONFLICTING_LOCK != 0 {
                let (sid, tok) = (h.session, h.token.clone());
                self.push_event(
                    sid,
                    EventKind::ConflictingLock,
                    tok,
                    p,
                    "",
                    ChildChange::None,
                );
            }
        }
    }

    /// `Acquire`: waits (FIFO) until the lock can be granted, or until `timeout`.
    pub fn acquire(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        mode: LockMode,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<Reply<SequencerView>, WarrenError> {
        let Blocked {
            session: sid,
            handle: k,
            path: p,
        } = match self.lock_now(ctx, token, mode, now)? {
            Ok(seq) => return Ok(Reply::Done(seq)),
            Err(blocked) => blocked,
        };
        if timeout == Some(Duration::ZERO) {
            return Err(WarrenError::lock_held(self.why_not(&p, mode)));
        }
        self.conflicting(&p, k);
        let id = self.new_waiter(WaiterKind::Acquire(p.clone()));
        let n = self.nodes.get_mut(&p).expect("exists");
        let at = queue_position(n, k);
        n.lock_waiters.insert(
            at,
            LockWaiter {
                id,
                session: sid,
                handle: k,
                mode,
                deadline: timeout.map(|t| now + t),
            },
        );
        // It may be the kept place's turn now (the lock is free, held for it).
        self.grant_waiters(&p);
        Ok(Reply::Wait(id))
    }

    /// `TryAcquire`: the lock now, or `LOCK_HELD` saying why not.
    pub fn try_acquire(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        mode: LockMode,
        now: Instant,
    ) -> Result<SequencerView, WarrenError> {
        let blocked = match self.lock_now(ctx, token, mode, now)? {
            Ok(seq) => return Ok(seq),
            Err(blocked) => blocked,
        };
        self.conflicting(&blocked.path, blocked.handle);
        Err(WarrenError::lock_held(self.why_not(&blocked.path, mode)))
    }

    /// `Release`: idempotent; says whether the handle held the lock.
    pub fn release(&mut self, ctx: &Ctx, token: &[u8], now: Instant) -> Result<bool, WarrenError> {
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        if holder_of(&self.nodes[&p], k).is_some() {
            self.not_frozen(&p)?;
        }
        let was = self.drop_holder(&p, sid, k, false);
        self.grant_waiters(&p);
        Ok(was)
    }

    pub fn get_sequencer(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        now: Instant,
    ) -> Result<SequencerView, WarrenError> {
        let (_, k, p) = self.on_handle(ctx, token, now)?;
        let n = &self.nodes[&p];
        let Some(h) = holder_of(n, k) else {
            return Err(WarrenError::invalid_argument(format!(
                "this handle does not hold the lock on {p}"
            )));
        };
        Ok(SequencerView::of(&p, h.mode, &n.rec))
    }

    /// `SetSequencer`: later calls on the handle fail once `seq` is stale.
    pub fn set_sequencer(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        seq: SequencerView,
        now: Instant,
    ) -> Result<(), WarrenError> {
        path::validate(&seq.path, &self.cfg.deployment)?;
        let (_, k, _) = self.on_handle(ctx, token, now)?;
        self.node_check(&seq.path)?;
        if !self.sequencer_current(&seq) {
            return Err(WarrenError::generation_mismatch(format!(
                "the sequencer for {} (lock generation {}) is not current",
                seq.path, seq.lock_generation
            )));
        }
        self.handles.get_mut(&k).expect("resolved").sequencer = Some(seq);
        Ok(())
    }

    pub fn check_sequencer(
        &mut self,
        ctx: &Ctx,
        seq: &SequencerView,
        now: Instant,
    ) -> Result<bool, WarrenError> {
        self.now = now;
        self.check(ctx)?;
        path::validate(&seq.path, &self.cfg.deployment)?;
        self.node_check(&seq.path)?;
        // A directory's lock lives with its child anchor: here is only its entry.
        let dir = self
            .nodes
            .get(&seq.path)
            .is_some_and(|n| n.rec.meta.kind == NodeKind::Directory);
        if dir {
            if let Some(owner) = self.owner_elsewhere(&seq.path, true)? {
                return Err(WarrenError::directory_elsewhere(
                    self.map_epoch(),
                    owner,
                    &seq.path,
                ));
            }
        }
        Ok(self.sequencer_current(seq))
    }

    pub(super) fn sequencer_current(&self, seq: &SequencerView) -> bool {
        self.nodes.get(&seq.path).is_some_and(|n| {
            n.rec.meta.instance == seq.instance
                && n.rec.meta.lock_generation == seq.lock_generation
                && !n.rec.holders.is_empty()
                && n.rec.holders.iter().all(|h| h.mode == seq.mode)
        })
    }

    /// Times out the Acquires whose deadline passed and ends the lock-delays that ran out, granting the locks that became free.
    pub(super) fn wake_lock_waiters(&mut self, now: Instant) {
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
        // Places kept for moved waiters that did not come back in time are given up.
        let lapsed: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.places_until.is_some_and(|t| t <= now))
            .map(|(p, _)| p.clone())
            .collect();
        for p in lapsed {
            if let Some(n) = self.nodes.get_mut(&p) {
                n.places.clear();
                n.places_until = None;
            }
            self.grant_waiters(&p);
        }
    }
}
