//! `KeepAlive`: acknowledging events, holding the KeepAlive until shortly before the lease
//! ends (with jitter), and the reply that extends the lease.

use super::{Ctx, Event, Master, Reply, WaiterId, WaiterKind, Wake};
use crate::store::SessionId;
use rand::Rng;
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::WarrenError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepAliveReply {
    /// Lease remaining, from now.
    pub lease: Duration,
    pub events: Vec<Event>,
    pub epoch: u64,
}

/// A KeepAlive the master holds (long-poll).
#[derive(Clone, Copy)]
pub(super) struct HeldKeepAlive {
    pub(super) waiter: WaiterId,
    /// When to answer it if nothing happens first.
    pub(super) until: Instant,
    /// When it arrived: its reply's lease is counted from here.
    pub(super) received: Instant,
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
        self.now = now;
        if ctx.client.is_some() {
            return Err(WarrenError::invalid_argument(
                "KeepAlive takes no ctx.client_session: a client session has no lease at the cell; it lives as long as its proxy session",
            ));
        }
        let sid = self.check_session(ctx)?;
        let s = &self.sessions[&sid];
        if ack_seq >= s.next_seq {
            return Err(WarrenError::invalid_argument(format!(
                "KeepAlive acknowledges event {ack_seq}, but only events up to {} were sent",
                s.next_seq - 1
            )));
        }
        self.acknowledge(sid, ack_seq);
        if let Some(held) = self.sessions.get_mut(&sid).and_then(|s| s.keepalive.take()) {
            self.answer_keepalive(sid, held);
        }
        let early = self.cfg.reply_before_end + self.jitter();
        let s = &self.sessions[&sid];
        let hold_until = s.lease_end.checked_sub(early).unwrap_or(now);
        if !s.events.is_empty() || hold_until <= now {
            return Ok(Reply::Done(self.keepalive_reply(sid, now)));
        }
        let w = self.new_waiter(WaiterKind::KeepAlive(sid));
        self.sessions.get_mut(&sid).expect("checked").keepalive = Some(HeldKeepAlive {
            waiter: w,
            until: hold_until,
            received: now,
        });
        Ok(Reply::Wait(w))
    }

    pub(super) fn jitter(&mut self) -> Duration {
        let max = (self.cfg.reply_before_end / 10).as_millis() as u64;
        Duration::from_millis(if max == 0 {
            0
        } else {
            self.rng.gen_range(0..=max)
        })
    }

    pub(super) fn acknowledge(&mut self, sid: SessionId, ack_seq: u64) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if ack_seq <= s.acked {
            return;
        }
        s.acked = ack_seq;
        while s.events.front().is_some_and(|e| e.seq <= ack_seq) {
            s.events.pop_front();
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
    /// the client's local lease (its send time + that lease, SPEC §4) can never outlast
    /// the master's, however long the request was held.
    pub(super) fn keepalive_reply(&mut self, sid: SessionId, received: Instant) -> KeepAliveReply {
        let now = self.now;
        let lease = self.lease_of(&self.sessions[&sid].rec);
        let s = self.sessions.get_mut(&sid).expect("live session");
        if s.acked >= s.delivered_upto && s.lease_end < now + lease {
            s.lease_end = now + lease;
        }
        if let Some(last) = s.events.back() {
            s.delivered_upto = s.delivered_upto.max(last.seq);
        }
        KeepAliveReply {
            lease: s.lease_end.saturating_duration_since(received),
            events: s.events.iter().cloned().collect(),
            epoch: self.meta.epoch,
        }
    }

    /// Answers the KeepAlives held until now (of sessions whose lease still runs).
    pub(super) fn answer_due_keepalives(&mut self, now: Instant) {
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
    }
}
