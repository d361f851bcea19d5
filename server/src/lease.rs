//! The server side of a session's lease (docs/design.md §6), one table for both tiers that hold
//! sessions: a cell's master (sessions and proxy sessions) and a proxy (its client
//! sessions). Sans-IO: instants are passed in, nothing here sleeps or spawns.
//!
//! What it owns, per session ([`Lease`]): when the lease ends, the held KeepAlive
//! (long-poll), the event queue with its strictly increasing `seq` and the acknowledgement
//! that trims it, rule (b)'s "everything delivered was acknowledged", and when to answer a
//! held KeepAlive ([`Lease::reply_due`]: `reply_before_end` minus up to 10% jitter before
//! the lease ends). Across sessions: the [`Tombstones`] of ended sessions, so that a late
//! call is told the session expired. What differs stays in each core: when a lease may be
//! extended (a cell's failover rules, a proxy's nesting inside its upstream sessions and
//! starving clients), and what an event is.

use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::WarrenError;

/// Identifies a parked KeepAlive at its server.
pub type WaiterId = u64;

/// How a session id appears in messages and logs: its first 4 bytes in hex. One form for
/// every server, since a proxy recognizes a cell's message about a session by it.
pub fn short_id(id: &[u8]) -> String {
    id.iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + "…"
}

/// An event as queued for a session: the queue numbers events and reads the number back.
pub trait Sequenced {
    /// The event's `seq` on its session's queue.
    fn seq(&self) -> u64;
}

/// A KeepAlive answer: the lease left, counted from when the KeepAlive arrived, and every
/// event not yet acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepAliveReply<E> {
    pub lease: Duration,
    pub events: Vec<E>,
    pub epoch: u64,
}

/// A KeepAlive the server holds (long-poll).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldKeepAlive {
    pub waiter: WaiterId,
    /// When to answer it if nothing happens first; `None`: only when something happens (a
    /// proxy holds a starving client's KeepAlive until a cell lets its lease grow).
    pub until: Option<Instant>,
    /// When it arrived: its reply's lease is counted from here, so that the client's local
    /// lease (its send time + that lease) never outlasts the server's.
    pub received: Instant,
}

/// One session's lease at its server: its end, its event queue and its held KeepAlive.
#[derive(Debug)]
pub struct Lease<E> {
    /// When the lease ends here. Each core decides when it may grow.
    pub end: Instant,
    events: VecDeque<E>,
    next_seq: u64,
    acked: u64,
    /// Highest seq ever delivered. While `acked < delivered_upto` the lease is not extended
    /// (rule (b) of docs/design.md §6: a session that never acknowledges expires within one lease).
    delivered_upto: u64,
    held: Option<HeldKeepAlive>,
}

impl<E: Sequenced> Lease<E> {
    /// A lease ending at `end`, with nothing queued; the first event gets seq 1.
    pub fn new(end: Instant) -> Self {
        Lease {
            end,
            events: VecDeque::new(),
            next_seq: 1,
            acked: 0,
            delivered_upto: 0,
            held: None,
        }
    }

    /// The seq of the last event ever queued (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// A KeepAlive may acknowledge only events that were queued.
    pub fn check_ack(&self, ack_seq: u64) -> Result<(), WarrenError> {
        if ack_seq >= self.next_seq {
            return Err(WarrenError::invalid_argument(format!(
                "KeepAlive acknowledges event {ack_seq}, but only events up to {} were sent",
                self.last_seq()
            )));
        }
        Ok(())
    }

    /// Acknowledges the events up to `ack_seq`. `None` if that acknowledges nothing new;
    /// otherwise the events it took off the queue (oldest first).
    pub fn acknowledge(&mut self, ack_seq: u64) -> Option<Vec<E>> {
        if ack_seq <= self.acked {
            return None;
        }
        self.acked = ack_seq;
        let mut done = Vec::new();
        while self.events.front().is_some_and(|e| e.seq() <= ack_seq) {
            done.extend(self.events.pop_front());
        }
        Some(done)
    }

    /// Queues the event `make(seq)` under the next seq, which it returns. A held KeepAlive
    /// is not answered here: the caller takes it ([`Lease::take_held`]) and answers.
    pub fn push(&mut self, make: impl FnOnce(u64) -> E) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.push_back(make(seq));
        seq
    }

    /// Rule (b): everything delivered so far was acknowledged, so the lease may grow.
    pub fn all_delivered_acknowledged(&self) -> bool {
        self.acked >= self.delivered_upto
    }

    /// Whether events wait to be delivered (or acknowledged).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The queued events, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &E> {
        self.events.iter()
    }

    /// The queued events, oldest first, to change what each core attaches to them.
    pub fn events_mut(&mut self) -> impl Iterator<Item = &mut E> {
        self.events.iter_mut()
    }

    /// Ends the queue, handing over what was still on it.
    pub fn into_events(self) -> VecDeque<E> {
        self.events
    }

    /// The reply to a KeepAlive that arrived at `received`, built now (after the core
    /// extended the lease if it may): every queued event, as `view` shows it, which counts
    /// as delivered from now on.
    pub fn reply<R>(
        &mut self,
        received: Instant,
        epoch: u64,
        view: impl FnMut(&E) -> R,
    ) -> KeepAliveReply<R> {
        if let Some(last) = self.events.back() {
            self.delivered_upto = self.delivered_upto.max(last.seq());
        }
        KeepAliveReply {
            lease: self.end.saturating_duration_since(received),
            events: self.events.iter().map(view).collect(),
            epoch,
        }
    }

    /// When a KeepAlive arriving `now` is to be answered if nothing happens first:
    /// `reply_before_end` minus up to 10% of it (jitter, so that many sessions' replies do
    /// not come at once) before the lease ends. `None`: that is not after `now`.
    pub fn reply_due(
        &self,
        now: Instant,
        reply_before_end: Duration,
        rng: &mut impl Rng,
    ) -> Option<Instant> {
        let early = reply_before_end + jitter(reply_before_end, rng);
        self.end.checked_sub(early).filter(|t| *t > now)
    }

    /// Holds a KeepAlive (replacing none: the caller answered the earlier one).
    pub fn hold(&mut self, held: HeldKeepAlive) {
        self.held = Some(held);
    }

    /// The held KeepAlive, if any.
    pub fn held(&self) -> Option<&HeldKeepAlive> {
        self.held.as_ref()
    }

    /// Takes the held KeepAlive, to answer it.
    pub fn take_held(&mut self) -> Option<HeldKeepAlive> {
        self.held.take()
    }

    /// The held KeepAlive whose answer time has come by `now`, taken to answer it.
    pub fn take_due(&mut self, now: Instant) -> Option<HeldKeepAlive> {
        if self.held?.until.is_some_and(|u| u <= now) {
            return self.held.take();
        }
        None
    }

    /// The caller of KeepAlive `waiter` went away: forgets it if it is the held one, and
    /// says whether it was.
    pub fn cancel(&mut self, waiter: WaiterId) -> bool {
        if self.held.is_some_and(|h| h.waiter == waiter) {
            self.held = None;
            return true;
        }
        false
    }
}

/// Up to 10% of `reply_before_end`, in whole milliseconds.
fn jitter(reply_before_end: Duration, rng: &mut impl Rng) -> Duration {
    let max = (reply_before_end / 10).as_millis() as u64;
    Duration::from_millis(if max == 0 { 0 } else { rng.gen_range(0..=max) })
}

/// Sessions that ended here, each remembered (with what the core keeps of it) until a
/// given time, so that a late call is told the session expired instead of being taken for
/// a session this server never saw.
#[derive(Debug)]
pub struct Tombstones<Id, V> {
    by_id: HashMap<Id, (V, Instant)>,
    /// The same, in the order they were buried: forget times only grow, so sweeping pops
    /// from the front and costs nothing while nothing is due (100k sessions ending at once
    /// must not make every tick walk them all).
    order: VecDeque<(Instant, Id)>,
}

impl<Id, V> Default for Tombstones<Id, V> {
    fn default() -> Self {
        Tombstones {
            by_id: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<Id: Copy + Eq + Hash, V> Tombstones<Id, V> {
    /// Remembers `id` with `value` until `until` (a later burial of the same id wins).
    pub fn bury(&mut self, id: Id, value: V, until: Instant) {
        self.by_id.insert(id, (value, until));
        self.order.push_back((until, id));
    }

    /// What is remembered of `id`, if it ended and is not forgotten by `now`.
    pub fn get(&self, id: &Id, now: Instant) -> Option<&V> {
        self.by_id
            .get(id)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v)
    }

    /// Forgets what is due by `now`.
    pub fn sweep(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(t, _)| *t <= now) {
            let (t, id) = self.order.pop_front().expect("front");
            if self.by_id.get(&id).is_some_and(|(_, u)| *u == t) {
                self.by_id.remove(&id);
            }
        }
    }

    /// Nothing is remembered (and nothing is left to sweep).
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.order.is_empty()
    }
}

#[cfg(test)]
mod tests;
