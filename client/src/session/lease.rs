//! The client side of a Warren lease, sans-IO: the arithmetic and bookkeeping every
//! KeepAlive loop on the client side shares — the library's sessions
//! ([`crate::Session`]), the proxy's session at each cell, a cell's sessions at other
//! cells, and the load tester's simulated clients. Each of them drives these types from
//! its own I/O loop; none keeps lease arithmetic, jeopardy timers, ack watermarks, ρ or a
//! grace period of its own.
//!
//! - [`LocalLease`]: how long the client may consider its session alive. A KeepAlive (or
//!   `CreateSession`) **sent** at `t` and answered with `lease_ms` extends it to
//!   `t + lease_ms / (1 + ρ)` — counted from the send time, not from the reply, because the
//!   master counts the lease from when it *received* the request (docs/design.md §6). It only
//!   moves forward.
//! - [`Lease`]: a local lease with jeopardy and the grace period: **safe** while the local
//!   lease runs; in **jeopardy** once it ended without a reply; **expired** if the grace
//!   period passes too. A reply that extends the lease past now within the grace period
//!   makes it safe again. [`Lease::next_deadline`] is the one timer a driver arms.
//! - [`AckWatermark`]: the master epoch the client knows and the highest event `seq`
//!   received in it — the next KeepAlive's `ack_seq` and the de-duplication watermark;
//!   numbering restarts at 0 in every epoch.
//! - [`Backoff`]: the retry delay after consecutive failures: exponential, capped at a
//!   quarter of the lease (a new master keeps a restored session only for about a lease),
//!   with jitter deterministic per session.
//!
//! Time is `tokio::time::Instant` and is always passed in, so tests run on paused time.

use std::time::Duration;
use tokio::time::Instant;
use warren_proto::pb;

/// Leases longer than this are treated as this long. The spec caps leases at 60 s; the
/// clamp only guards the lease arithmetic against a confused server (a shorter local lease
/// is always safe).
pub const MAX_LEASE: Duration = Duration::from_secs(300);

/// Added to the granted lease to get a KeepAlive's gRPC deadline while safe: the server
/// holds the call until about 1 s before the lease ends, so the deadline must comfortably
/// outlast the lease.
pub const KEEPALIVE_DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// A KeepAlive's deadline in jeopardy. The master no longer holds it (our lease at the
/// master is ending or, after a fail-over, a fail-over event is waiting), so a reply is
/// prompt; a silent connection is given up soon and the master looked for elsewhere.
pub const JEOPARDY_KEEPALIVE_DEADLINE: Duration = Duration::from_secs(2);

/// First retry delay after a failure; doubles per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay (before jitter).
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The local length of a granted lease: `granted / (1 + clock_drift)` (clamped to
/// [`MAX_LEASE`]), so that a local lease ends no later than the master's even if the
/// client's clock runs slow by up to ρ. A ρ that makes no sense gives zero (always safe).
pub fn local_length(granted: Duration, clock_drift: f64) -> Duration {
    let granted = granted.min(MAX_LEASE);
    Duration::try_from_secs_f64(granted.as_secs_f64() / (1.0 + clock_drift))
        .unwrap_or(Duration::ZERO)
}

/// The end of the client's local lease: the latest `send time + granted / (1 + ρ)` of any
/// answered `CreateSession` or KeepAlive. Only moves forward.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalLease {
    end: Instant,
    /// The lease most recently granted (not divided by 1 + ρ).
    granted: Duration,
    /// ρ: the allowed clock-rate drift between client and master.
    clock_drift: f64,
}

impl LocalLease {
    /// The local lease of a call sent at `sent_at` that was granted `granted`.
    pub fn new(sent_at: Instant, granted: Duration, clock_drift: f64) -> LocalLease {
        let mut lease = LocalLease {
            end: sent_at,
            granted: Duration::ZERO,
            clock_drift,
        };
        lease.extend(sent_at, granted);
        lease
    }

    /// A call sent at `sent_at` was granted `granted`: the lease runs until at least
    /// `sent_at + granted / (1 + ρ)`. A zero grant changes nothing. Returns whether the end
    /// moved.
    pub fn extend(&mut self, sent_at: Instant, granted: Duration) -> bool {
        let granted = granted.min(MAX_LEASE);
        if granted.is_zero() {
            return false;
        }
        self.granted = granted;
        match sent_at.checked_add(local_length(granted, self.clock_drift)) {
            Some(end) if end > self.end => {
                self.end = end;
                true
            }
            _ => false,
        }
    }

    /// When the local lease ends.
    pub fn end(&self) -> Instant {
        self.end
    }

    /// The lease most recently granted (as the master gave it, at most [`MAX_LEASE`]).
    pub fn granted(&self) -> Duration {
        self.granted
    }

    /// How much is left at `now` (zero once it has ended).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.end.saturating_duration_since(now)
    }

    /// Whether it has ended at `now`.
    pub fn has_ended(&self, now: Instant) -> bool {
        now >= self.end
    }
}

/// Where a [`Lease`] is (docs/design.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// The local lease runs.
    Safe,
    /// The local lease ended without a reply; the grace period runs.
    Jeopardy,
    /// The grace period ended without a reply, or the session was ended.
    Expired,
}

/// What [`Lease::check`] found at an instant. Both may be set by one check: a lease that
/// was safe and is already past its grace period went through jeopardy to expiry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Passed {
    /// The local lease ended: the session is now in jeopardy (or went through it).
    pub entered_jeopardy: bool,
    /// The grace period ended too: the session is now expired.
    pub expired: bool,
}

/// A local lease with jeopardy and the grace period: the client side of docs/design.md §6's states.
#[derive(Clone, Debug)]
pub struct Lease {
    local: LocalLease,
    state: LeaseState,
    /// How long past the local lease the client keeps looking for the master.
    grace: Duration,
    /// End of the grace period, while in jeopardy.
    grace_end: Option<Instant>,
}

impl Lease {
    /// A safe lease from a `CreateSession` sent at `sent_at` that granted `granted`.
    pub fn new(sent_at: Instant, granted: Duration, clock_drift: f64, grace: Duration) -> Lease {
        Lease {
            local: LocalLease::new(sent_at, granted, clock_drift),
            state: LeaseState::Safe,
            grace,
            grace_end: None,
        }
    }

    /// Where the lease is.
    pub fn state(&self) -> LeaseState {
        self.state
    }

    /// The local lease.
    pub fn local(&self) -> &LocalLease {
        &self.local
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// When the driver must call [`check`](Self::check) next: the end of the local lease
    /// while safe, the end of the grace period in jeopardy, never once expired.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            LeaseState::Safe => Some(self.local.end),
            LeaseState::Jeopardy => self.grace_end,
            LeaseState::Expired => None,
        }
    }

    /// Applies the deadlines at `now`: whatever else happens, a local lease that has ended
    /// has ended, and a session past its grace period is over (no session outlives lease +
    /// grace).
    pub fn check(&mut self, now: Instant) -> Passed {
        let mut passed = Passed::default();
        if self.state == LeaseState::Safe && self.local.has_ended(now) {
            passed.entered_jeopardy = true;
            self.state = LeaseState::Jeopardy;
            self.grace_end = Some(self.local.end.checked_add(self.grace).unwrap_or(now));
        }
        if self.state == LeaseState::Jeopardy && self.grace_end.is_none_or(|end| now >= end) {
            passed.expired = true;
            self.end();
        }
        passed
    }

    /// A KeepAlive sent at `sent_at` was answered at `now` with `granted`: the local lease
    /// is extended (also when the reply comes from a master already left behind: the new
    /// master honours the longest lease any predecessor granted). Returns whether this
    /// ended a jeopardy (the lease now runs past `now`). Call [`check`](Self::check) first.
    pub fn renewed(&mut self, now: Instant, sent_at: Instant, granted: Duration) -> bool {
        if self.state == LeaseState::Expired {
            return false;
        }
        self.local.extend(sent_at, granted);
        if self.state == LeaseState::Jeopardy && !self.local.has_ended(now) {
            self.state = LeaseState::Safe;
            self.grace_end = None;
            return true;
        }
        false
    }

    /// The session is over (the master said it expired, or it was closed): no more
    /// deadlines.
    pub fn end(&mut self) {
        self.state = LeaseState::Expired;
        self.grace_end = None;
    }

    /// Whether the local lease has ended and the grace period runs.
    pub fn in_jeopardy(&self) -> bool {
        self.state == LeaseState::Jeopardy
    }

    /// The gRPC deadline of a KeepAlive sent now: the granted lease plus
    /// [`KEEPALIVE_DEADLINE_MARGIN`] while safe (the master holds it for most of the
    /// lease), at most [`JEOPARDY_KEEPALIVE_DEADLINE`] in jeopardy (the request says so, and the
    /// master answers it at once, so silence means it is gone).
    pub fn keepalive_deadline(&self) -> Duration {
        let safe = self.local.granted + KEEPALIVE_DEADLINE_MARGIN;
        match self.state {
            LeaseState::Jeopardy => safe.min(JEOPARDY_KEEPALIVE_DEADLINE),
            _ => safe,
        }
    }
}

/// The master epoch the client knows and the highest event `seq` received in it: what the
/// next KeepAlive acknowledges (`ack_seq`), and what de-duplicates re-sent events. A new
/// master numbers its events from 1 again, so a newer epoch restarts the watermark at 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckWatermark {
    epoch: u64,
    highest: u64,
}

impl AckWatermark {
    /// Nothing received yet, at `epoch`.
    pub fn new(epoch: u64) -> AckWatermark {
        AckWatermark { epoch, highest: 0 }
    }

    /// The master epoch to put in the next call.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The `ack_seq` of the next KeepAlive: every event up to it has been received.
    pub fn ack_seq(&self) -> u64 {
        self.highest
    }

    /// Moves to `epoch` if it is newer (event numbering restarts); returns whether it was.
    pub fn adopt_epoch(&mut self, epoch: u64) -> bool {
        if epoch <= self.epoch {
            return false;
        }
        self.epoch = epoch;
        self.highest = 0;
        true
    }

    /// Forgets the events received in this epoch: the master refused `ack_seq` as more
    /// than it sent (`INVALID_ARGUMENT`), so the numbering restarted without our noticing.
    pub fn restart(&mut self) {
        self.highest = 0;
    }

    /// The events of a KeepAlive reply at `epoch` not received before, in `seq` order
    /// without duplicates; the watermark moves past them. A reply from another epoch (a
    /// late one from a master already left behind) delivers nothing: its events are
    /// numbered in the old epoch, and the new master re-sends what matters.
    pub fn take_fresh<'a>(&mut self, epoch: u64, events: &'a [pb::Event]) -> Vec<&'a pb::Event> {
        if epoch != self.epoch {
            return Vec::new();
        }
        let mut fresh: Vec<&pb::Event> = events.iter().filter(|e| e.seq > self.highest).collect();
        fresh.sort_by_key(|e| e.seq);
        fresh.dedup_by_key(|e| e.seq);
        if let Some(last) = fresh.last() {
            self.highest = last.seq;
        }
        fresh
    }
}

/// Consecutive failures and the delay before the next retry: exponential from 100 ms,
/// capped at 2 s and at a quarter of the lease, plus up to 50% jitter deterministic per
/// (seed, attempt) so that different sessions' retries spread apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    seed: u64,
}

impl Backoff {
    /// No failures yet; `seed` spreads this session's retries apart from others' (derive
    /// it from the session id).
    pub fn new(seed: u64) -> Backoff {
        Backoff { failures: 0, seed }
    }

    /// One more failure; returns how many in a row now.
    pub fn failed(&mut self) -> u32 {
        self.failures = self.failures.saturating_add(1);
        self.failures
    }

    /// Progress (a master answered): the backoff starts afresh.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay before the next retry, for a session granted `lease`: a new master keeps
    /// a restored session only for about a lease from its start, so the search must look
    /// several times per lease.
    pub fn delay(&self, lease: Duration) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(16);
        let cap = BACKOFF_MAX.min(lease / 4).max(BACKOFF_BASE);
        let base = BACKOFF_BASE.saturating_mul(1u32 << doublings).min(cap);
        let noise = splitmix64(self.seed ^ u64::from(self.failures)) % 1000;
        base + base.mul_f64(noise as f64 / 2000.0)
    }
}

/// A small, well-mixed hash (SplitMix64's finaliser), for jitter.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests;
