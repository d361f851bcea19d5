//! `KeepAlive`: acknowledging events, holding the KeepAlive until shortly before the lease
//! ends (with jitter), and the reply that extends the lease.

use super::{Ctx, Event, Master, Reply, WaiterKind, Wake};
use crate::store::SessionId;
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::WarrenError;
use warren_server::lease::{self, HeldKeepAlive, Sequenced};

/// A KeepAlive answer of the master.
pub type KeepAliveReply = lease::KeepAliveReply<Event>;

impl Sequenced for Event {
    fn seq(&self) -> u64 {
        self.seq
    }
}

impl Master {
    /// `KeepAlive`: acknowledges events up to `ack_seq`, supersedes the outstanding
    /// KeepAlive, and either answers now (events pending, or the lease is near its end) or
    /// parks until ~`reply_before_end` before the lease ends.
    pub fn keepalive(
        &mut self,
        ctx: &Ctx,
        ack_seq: u64,
        now: Instant,
    ) -> Result<Reply<KeepAliveReply>, WarrenError> {
        self.keepalive_holding_back(ctx, ack_seq, Duration::ZERO, false, now)
    }

    /// [`Master::keepalive`] from a proxy session that promises to hold back its client
    /// leases and its shared cache `hold_back` before its lease here ends
    /// (`SessionContext.hold_back_ms`; zero: no promise). The cell then stops waiting for
    /// the proxy's acknowledgement of an invalidation at its lease end minus `hold_back`
    /// plus [`super::HOLD_BACK_MARGIN`] (docs/design.md §10, "A dead proxy").
    ///
    /// `jeopardy` (`KeepAliveRequest.jeopardy`): the sender's local lease has ended, so it
    /// is answered at once, whatever lease it is owed. Its client waits only briefly, and
    /// the lease here may run far beyond its own: a reply that extended it may have been
    /// lost in the network (docs/design.md §6). A session (not a proxy's) in jeopardy has
    /// also emptied its cache, so its lease is extended even if events a lost reply
    /// delivered are unacknowledged, and the writes waiting on its invalidations wait no
    /// longer than the lease as it was.
    pub fn keepalive_holding_back(
        &mut self,
        ctx: &Ctx,
        ack_seq: u64,
        hold_back: Duration,
        jeopardy: bool,
        now: Instant,
    ) -> Result<Reply<KeepAliveReply>, WarrenError> {
        self.now = now;
        if ctx.client.is_some() {
            return Err(WarrenError::invalid_argument(
                "KeepAlive takes no ctx.client_session: a client session has no lease at the cell; it lives as long as its proxy session",
            ));
        }
        let sid = self.check_session(ctx)?;
        self.note_hold_back(sid, hold_back);
        self.sessions[&sid].lease.check_ack(ack_seq)?;
        self.acknowledge(sid, ack_seq);
        // In jeopardy a client has emptied its cache (docs/protocol.md), and its lease may
        // grow although a reply that delivered events never reached it. Rule (b) holds
        // the lease back only so that a write never waits on a silent cacher for more
        // than its lease: the writes waiting on this session's invalidations now stop
        // waiting at the end of the lease as it was (the client's own lease, counted from
        // replies it received, ends no later), whether it acknowledges first or not. Not
        // at once: this KeepAlive may be an old one, delivered late, from a client that has
        // since been safe and cached again. A proxy session never says so: its clients'
        // copies are its to account for.
        let emptied = jeopardy && !self.sessions[&sid].rec.proxy;
        if emptied {
            self.bound_invalidations_by_lease(sid);
        }
        if let Some(held) = self
            .sessions
            .get_mut(&sid)
            .and_then(|s| s.lease.take_held())
        {
            self.answer_keepalive(sid, held);
        }
        // A session a reshard moved here is carried on by its client from this first
        // KeepAlive, which must learn its lease at once (docs/resharding.md).
        let carried_on = {
            let s = self.sessions.get_mut(&sid).expect("checked");
            std::mem::take(&mut s.moved_in) && s.rec.parent.is_none()
        };
        let lease = &self.sessions[&sid].lease;
        let due = lease.reply_due(now, self.cfg.reply_before_end, &mut self.rng);
        let Some(until) = due.filter(|_| !lease.has_events() && !carried_on && !jeopardy) else {
            return Ok(Reply::Done(self.reply_extending(sid, now, emptied)));
        };
        let w = self.new_waiter(WaiterKind::KeepAlive(sid));
        let s = self.sessions.get_mut(&sid).expect("checked");
        s.lease.hold(HeldKeepAlive {
            waiter: w,
            until: Some(until),
            received: now,
        });
        Ok(Reply::Wait(w))
    }

    pub(super) fn acknowledge(&mut self, sid: SessionId, ack_seq: u64) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.lease.acknowledge(ack_seq).is_none() {
            return;
        }
        let rest = s.pending_invalidations.split_off(&(ack_seq + 1));
        let done = std::mem::replace(&mut s.pending_invalidations, rest);
        for (_, p) in done {
            self.invalidation_done(&p, sid);
        }
        self.failover_acknowledged(sid, Some(ack_seq));
    }

    /// Answers a held KeepAlive now.
    pub(super) fn answer_keepalive(&mut self, sid: SessionId, held: HeldKeepAlive) {
        self.waiters.remove(&held.waiter);
        let reply = self.keepalive_reply(sid, held.received);
        self.out
            .wakes
            .push((held.waiter, Wake::KeepAlive(Ok(reply))));
    }

    /// Builds a reply, now, for a KeepAlive that arrived at `received`, extending the lease
    /// if it may be extended. The lease in the reply is counted from `received`, so that
    /// the client's local lease (its send time + that lease, docs/design.md §6) can never outlast
    /// the master's, however long the request was held.
    pub(super) fn keepalive_reply(&mut self, sid: SessionId, received: Instant) -> KeepAliveReply {
        self.reply_extending(sid, received, false)
    }

    /// [`Master::keepalive_reply`]; `anyway`: extend the lease even though events it
    /// delivered are unacknowledged (its cache is empty: see `keepalive_holding_back`).
    fn reply_extending(
        &mut self,
        sid: SessionId,
        received: Instant,
        anyway: bool,
    ) -> KeepAliveReply {
        let now = self.now;
        let lease = self.lease_of(&self.sessions[&sid].rec);
        let s = &mut self.sessions.get_mut(&sid).expect("live session").lease;
        if (anyway || s.all_delivered_acknowledged()) && s.end < now + lease {
            s.end = now + lease;
        }
        s.reply(received, self.meta.epoch, Event::clone)
    }

    /// Answers the KeepAlives held until now (of sessions whose lease still runs).
    pub(super) fn answer_due_keepalives(&mut self, now: Instant) {
        let mut due: Vec<(SessionId, HeldKeepAlive)> = Vec::new();
        for id in &self.leased {
            let Some(s) = self.sessions.get_mut(id) else {
                continue;
            };
            if s.lease.end >= now {
                if let Some(held) = s.lease.take_due(now) {
                    due.push((*id, held));
                }
            }
        }
        for (sid, held) in due {
            self.answer_keepalive(sid, held);
        }
    }
}
