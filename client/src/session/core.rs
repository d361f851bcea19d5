//! The session's sans-IO core: everything about keeping a session alive that can be decided
//! without a socket or a clock of its own — the epoch the client knows, the local lease
//! (SPEC §4: send time + granted lease / (1 + ρ), only ever moving forward), the highest event
//! `seq` received (the next KeepAlive's `ack_seq`), de-duplication of re-sent events, and what
//! to do after a failed KeepAlive (retry after a backoff, or give the session up).
//!
//! Inputs are plain values with explicit instants; outputs say what the I/O layer
//! (`session::keepalive_loop`) must do. Jeopardy, safe and the grace-period state machine
//! (next issue) grow here.

use crate::types::{Event, Notification};
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::pb;

/// Added to the granted lease to get a KeepAlive's gRPC deadline: the server holds the call
/// until about 1 s before the lease ends, so the deadline must comfortably outlast the lease.
pub(crate) const KEEPALIVE_DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// Leases longer than this are treated as this long. The spec caps leases at 60 s; the clamp
/// only guards the lease arithmetic against a confused server (a shorter local lease is
/// always safe).
const MAX_LEASE: Duration = Duration::from_secs(300);

/// A reply with no new event that came back faster than this is suspicious (normally the
/// server holds a KeepAlive for most of a lease) ...
const QUICK_REPLY: Duration = Duration::from_millis(50);
/// ... so the next KeepAlive waits this long, instead of spinning against the server.
const QUICK_REPLY_PAUSE: Duration = Duration::from_millis(100);

/// First retry delay after a failed KeepAlive; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay (before jitter).
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Where the session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// KeepAlives are flowing (or being retried).
    Live,
    /// The session is gone: every call fails with `SESSION_EXPIRED`.
    Expired,
    /// The application closed the session.
    Closed,
}

/// Why a KeepAlive failed, as far as the core cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No reply: connection refused or broken, or the deadline passed.
    Transport,
    /// `NOT_MASTER`: the I/O layer has already switched to the new master.
    Redirected,
    /// `STALE_EPOCH{epoch}`: the master restarted with this epoch.
    StaleEpoch(u64),
    /// The master answered with an error that a retry may cure (`FAILOVER_IN_PROGRESS`,
    /// `OVERLOADED`, or anything unexpected).
    Refused,
    /// `SESSION_EXPIRED`: the master says the session is gone.
    Expired,
}

/// What to do after a failed KeepAlive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureStep {
    /// Send the next KeepAlive after this delay.
    RetryAfter(Duration),
    /// Give the session up: deliver [`Event::Expired`] and stop.
    Expire,
}

/// What a KeepAlive reply produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplyOutcome {
    /// New application events, oldest first, each delivered once.
    pub events: Vec<Event>,
    /// Paths whose cached copies must be dropped before the next KeepAlive acknowledges them.
    pub invalidations: Vec<String>,
    /// Wait this long before sending the next KeepAlive (normally zero).
    pub next_after: Duration,
}

/// The pure state of one session.
#[derive(Clone, Debug)]
pub(crate) struct SessionCore {
    /// The master epoch the client knows; carried by every call.
    epoch: u64,
    /// The lease most recently granted; sets the KeepAlive deadline.
    granted: Duration,
    /// End of the local lease. Only moves forward.
    lease_end: Instant,
    /// Highest event `seq` received: the next `ack_seq`, and the de-duplication watermark.
    highest_seq: u64,
    /// Consecutive failed KeepAlives, for the backoff.
    failures: u32,
    phase: Phase,
    /// ρ: allowed clock-rate drift between client and master.
    clock_drift: f64,
    /// How long past the local lease the library keeps trying before giving up.
    grace: Duration,
    /// Spreads retries of different sessions apart (derived from the session id).
    jitter_seed: u64,
}

impl SessionCore {
    /// A session that `CreateSession` (sent at `sent_at`) just granted `lease` at `epoch`.
    pub(crate) fn new(
        epoch: u64,
        lease: Duration,
        sent_at: Instant,
        clock_drift: f64,
        grace: Duration,
        jitter_seed: u64,
    ) -> Self {
        let mut core = SessionCore {
            epoch,
            granted: Duration::ZERO,
            lease_end: sent_at,
            highest_seq: 0,
            failures: 0,
            phase: Phase::Live,
            clock_drift,
            grace,
            jitter_seed,
        };
        core.extend_lease(sent_at, lease);
        core
    }

    /// The session's phase.
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// The master epoch to put in the next call.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Adopts the epoch a `STALE_EPOCH` error named.
    pub(crate) fn adopt_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The `ack_seq` for the next KeepAlive.
    pub(crate) fn ack_seq(&self) -> u64 {
        self.highest_seq
    }

    /// The gRPC deadline for the next KeepAlive.
    pub(crate) fn keepalive_deadline(&self) -> Duration {
        self.granted + KEEPALIVE_DEADLINE_MARGIN
    }

    /// When the local lease ends.
    #[cfg(test)]
    pub(crate) fn lease_end(&self) -> Instant {
        self.lease_end
    }

    /// How much of the local lease is left at `now` (zero once it has ended).
    pub(crate) fn lease_remaining(&self, now: Instant) -> Duration {
        self.lease_end.saturating_duration_since(now)
    }

    fn extend_lease(&mut self, sent_at: Instant, lease: Duration) {
        let lease = lease.min(MAX_LEASE);
        if lease.is_zero() {
            return;
        }
        self.granted = lease;
        // Divide by (1 + ρ) so the local lease ends before the master's even if our clock
        // runs slow by up to ρ. `try_` because ρ comes from configuration.
        let local = Duration::try_from_secs_f64(lease.as_secs_f64() / (1.0 + self.clock_drift))
            .unwrap_or(Duration::ZERO);
        if let Some(end) = sent_at.checked_add(local) {
            self.lease_end = self.lease_end.max(end);
        }
    }

    /// A KeepAlive sent at `sent_at` was answered at `received_at`.
    pub(crate) fn on_reply(
        &mut self,
        sent_at: Instant,
        received_at: Instant,
        reply: &pb::KeepAliveResponse,
    ) -> ReplyOutcome {
        self.failures = 0;
        if reply.epoch > self.epoch {
            self.epoch = reply.epoch;
        }
        // `lease_ms` is measured from when the reply was sent, which is after `sent_at`:
        // counting from `sent_at` keeps the local lease on the safe side.
        self.extend_lease(sent_at, Duration::from_millis(reply.lease_ms));

        let mut out = ReplyOutcome::default();
        let mut fresh: Vec<&pb::Event> = reply
            .events
            .iter()
            .filter(|e| e.seq > self.highest_seq)
            .collect();
        fresh.sort_by_key(|e| e.seq);
        fresh.dedup_by_key(|e| e.seq);
        for e in fresh {
            self.highest_seq = e.seq;
            match Notification::try_from(e) {
                Ok(Notification::App(event)) => out.events.push(event),
                Ok(Notification::Invalidate(path)) => out.invalidations.push(path),
                // Acknowledged anyway: a malformed event must not stall the session's
                // event stream by being re-sent forever.
                Err(err) => tracing::warn!(seq = e.seq, %err, "dropping malformed event"),
            }
        }
        let new_anything = !out.events.is_empty() || !out.invalidations.is_empty();
        if !new_anything && received_at.saturating_duration_since(sent_at) < QUICK_REPLY {
            out.next_after = QUICK_REPLY_PAUSE;
        }
        out
    }

    /// A KeepAlive failed at `now`.
    pub(crate) fn on_failure(&mut self, now: Instant, failure: Failure) -> FailureStep {
        if failure == Failure::Expired {
            return FailureStep::Expire;
        }
        if let Failure::StaleEpoch(epoch) = failure {
            self.epoch = epoch;
        }
        let give_up_at = self
            .lease_end
            .checked_add(self.grace)
            .unwrap_or(self.lease_end);
        if now >= give_up_at {
            return FailureStep::Expire;
        }
        self.failures = self.failures.saturating_add(1);
        let redirect = matches!(failure, Failure::Redirected | Failure::StaleEpoch(_));
        if redirect && self.failures == 1 {
            return FailureStep::RetryAfter(Duration::ZERO);
        }
        FailureStep::RetryAfter(self.backoff())
    }

    /// Exponential backoff with up to 50% jitter, deterministic per (session, attempt).
    fn backoff(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(16);
        let base = BACKOFF_BASE
            .saturating_mul(1u32 << doublings)
            .min(BACKOFF_MAX);
        let noise = splitmix64(self.jitter_seed ^ u64::from(self.failures)) % 1000;
        base + base.mul_f64(noise as f64 / 2000.0)
    }

    /// Marks the session expired. True if it was live (so `Expired` must be delivered).
    pub(crate) fn expire(&mut self) -> bool {
        let was_live = self.phase == Phase::Live;
        if was_live {
            self.phase = Phase::Expired;
        }
        was_live
    }

    /// Marks the session closed by the application. True if it was live.
    pub(crate) fn close(&mut self) -> bool {
        let was_live = self.phase == Phase::Live;
        if was_live {
            self.phase = Phase::Closed;
        }
        was_live
    }
}

/// A small, well-mixed hash (SplitMix64's finaliser) for jitter.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(12);
    const GRACE: Duration = Duration::from_secs(45);

    fn core(t0: Instant) -> SessionCore {
        SessionCore::new(7, LEASE, t0, 0.01, GRACE, 42)
    }

    fn event(seq: u64, t: pb::EventType, path: &str) -> pb::Event {
        pb::Event {
            seq,
            r#type: t as i32,
            handle: vec![1, 2],
            path: path.into(),
            child: String::new(),
            child_change: 0,
        }
    }

    fn reply(lease_ms: u64, events: Vec<pb::Event>) -> pb::KeepAliveResponse {
        pb::KeepAliveResponse {
            lease_ms,
            events,
            epoch: 7,
        }
    }

    fn modified(path: &str) -> Event {
        Event::ContentsModified { path: path.into() }
    }

    #[test]
    fn local_lease_is_granted_over_one_plus_rho() {
        let t0 = Instant::now();
        let c = core(t0);
        let expected = LEASE.div_f64(1.01);
        assert_eq!(c.lease_end(), t0 + expected);
        assert_eq!(c.lease_remaining(t0), expected);
        assert_eq!(c.lease_remaining(t0 + LEASE), Duration::ZERO);
        assert_eq!(c.keepalive_deadline(), LEASE + KEEPALIVE_DEADLINE_MARGIN);
    }

    #[test]
    fn local_lease_only_moves_forward() {
        let t0 = Instant::now();
        let mut c = core(t0);
        let end = c.lease_end();
        // A later reply granting a much shorter lease does not pull the end back.
        c.on_reply(
            t0 + Duration::from_secs(1),
            t0 + Duration::from_secs(1),
            &reply(1000, vec![]),
        );
        assert_eq!(c.lease_end(), end);
        // A reply granting a full lease from a later send time extends it.
        let t1 = t0 + Duration::from_secs(11);
        c.on_reply(t1, t1, &reply(12_000, vec![]));
        assert_eq!(c.lease_end(), t1 + LEASE.div_f64(1.01));
    }

    #[test]
    fn absurd_leases_are_clamped() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.on_reply(t0, t0, &reply(u64::MAX, vec![]));
        assert!(c.lease_remaining(t0) <= MAX_LEASE);
        assert_eq!(
            c.keepalive_deadline(),
            MAX_LEASE + KEEPALIVE_DEADLINE_MARGIN
        );
    }

    #[test]
    fn events_are_acknowledged_and_delivered_once() {
        let t0 = Instant::now();
        let mut c = core(t0);
        assert_eq!(c.ack_seq(), 0);
        let first = c.on_reply(
            t0,
            t0 + Duration::from_secs(1),
            &reply(
                12_000,
                vec![
                    event(1, pb::EventType::ContentsModified, "/ls/l/a"),
                    event(2, pb::EventType::ContentsModified, "/ls/l/b"),
                ],
            ),
        );
        assert_eq!(first.events, vec![modified("/ls/l/a"), modified("/ls/l/b")]);
        assert_eq!(first.next_after, Duration::ZERO);
        assert_eq!(c.ack_seq(), 2);

        // The server re-sends what it has not seen acknowledged, plus something new.
        let again = c.on_reply(
            t0,
            t0 + Duration::from_secs(1),
            &reply(
                12_000,
                vec![
                    event(1, pb::EventType::ContentsModified, "/ls/l/a"),
                    event(2, pb::EventType::ContentsModified, "/ls/l/b"),
                    event(3, pb::EventType::LockAcquired, "/ls/l/c"),
                ],
            ),
        );
        assert_eq!(
            again.events,
            vec![Event::LockAcquired {
                path: "/ls/l/c".into()
            }]
        );
        assert_eq!(c.ack_seq(), 3);
    }

    #[test]
    fn out_of_order_and_duplicate_seqs_in_one_reply() {
        let t0 = Instant::now();
        let mut c = core(t0);
        let out = c.on_reply(
            t0,
            t0 + Duration::from_secs(1),
            &reply(
                12_000,
                vec![
                    event(5, pb::EventType::ContentsModified, "/ls/l/e"),
                    event(4, pb::EventType::ContentsModified, "/ls/l/d"),
                    event(5, pb::EventType::ContentsModified, "/ls/l/e"),
                ],
            ),
        );
        assert_eq!(out.events, vec![modified("/ls/l/d"), modified("/ls/l/e")]);
        assert_eq!(c.ack_seq(), 5);
    }

    #[test]
    fn invalidations_and_malformed_events_are_acked_not_delivered() {
        let t0 = Instant::now();
        let mut c = core(t0);
        let out = c.on_reply(
            t0,
            t0 + Duration::from_secs(1),
            &reply(
                12_000,
                vec![
                    event(1, pb::EventType::Invalidate, "/ls/l/a"),
                    event(2, pb::EventType::Unspecified, "/ls/l/a"),
                    event(3, pb::EventType::ContentsModified, ""),
                    event(4, pb::EventType::MasterFailover, ""),
                ],
            ),
        );
        assert_eq!(out.events, vec![Event::MasterFailover]);
        assert_eq!(out.invalidations, vec!["/ls/l/a".to_string()]);
        assert_eq!(c.ack_seq(), 4);
    }

    #[test]
    fn an_instant_empty_reply_pauses_the_next_keepalive() {
        let t0 = Instant::now();
        let mut c = core(t0);
        let out = c.on_reply(t0, t0 + Duration::from_millis(1), &reply(12_000, vec![]));
        assert_eq!(out.next_after, QUICK_REPLY_PAUSE);
        let out = c.on_reply(t0, t0 + Duration::from_secs(11), &reply(12_000, vec![]));
        assert_eq!(out.next_after, Duration::ZERO);
    }

    #[test]
    fn newer_epochs_are_adopted() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.on_reply(
            t0,
            t0,
            &pb::KeepAliveResponse {
                lease_ms: 12_000,
                events: vec![],
                epoch: 9,
            },
        );
        assert_eq!(c.epoch(), 9);
        c.on_reply(
            t0,
            t0,
            &pb::KeepAliveResponse {
                lease_ms: 12_000,
                events: vec![],
                epoch: 8,
            },
        );
        assert_eq!(c.epoch(), 9);
    }

    #[test]
    fn stale_epoch_is_adopted_and_retried_at_once() {
        let t0 = Instant::now();
        let mut c = core(t0);
        assert_eq!(
            c.on_failure(t0, Failure::StaleEpoch(8)),
            FailureStep::RetryAfter(Duration::ZERO)
        );
        assert_eq!(c.epoch(), 8);
        // A second redirect in a row backs off.
        assert!(matches!(
            c.on_failure(t0, Failure::Redirected),
            FailureStep::RetryAfter(d) if d > Duration::ZERO
        ));
    }

    #[test]
    fn transport_failures_back_off_with_a_cap() {
        let t0 = Instant::now();
        let mut c = core(t0);
        let mut last = Duration::ZERO;
        for i in 0..10 {
            let FailureStep::RetryAfter(d) = c.on_failure(t0, Failure::Transport) else {
                panic!("expired on attempt {i}");
            };
            assert!(d >= BACKOFF_BASE, "{d:?}");
            assert!(d <= BACKOFF_MAX + BACKOFF_MAX / 2, "{d:?}");
            if i < 4 {
                assert!(d > last, "attempt {i}: {d:?} <= {last:?}");
            }
            last = d;
        }
        // A reply resets the backoff.
        c.on_reply(t0, t0 + Duration::from_secs(1), &reply(12_000, vec![]));
        assert!(matches!(
            c.on_failure(t0, Failure::Transport),
            FailureStep::RetryAfter(d) if d < BACKOFF_BASE * 2
        ));
    }

    #[test]
    fn failures_past_lease_plus_grace_expire_the_session() {
        let t0 = Instant::now();
        let mut c = core(t0);
        let end = c.lease_end();
        assert!(matches!(
            c.on_failure(end + GRACE - Duration::from_millis(1), Failure::Transport),
            FailureStep::RetryAfter(_)
        ));
        assert_eq!(
            c.on_failure(end + GRACE, Failure::Transport),
            FailureStep::Expire
        );
    }

    #[test]
    fn the_master_saying_expired_is_final() {
        let t0 = Instant::now();
        let mut c = core(t0);
        assert_eq!(c.on_failure(t0, Failure::Expired), FailureStep::Expire);
        assert!(c.expire());
        assert!(!c.expire());
        assert!(!c.close());
        assert_eq!(c.phase(), Phase::Expired);
    }

    #[test]
    fn close_is_once() {
        let mut c = core(Instant::now());
        assert!(c.close());
        assert!(!c.close());
        assert!(!c.expire());
        assert_eq!(c.phase(), Phase::Closed);
    }
}
