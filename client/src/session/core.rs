//! The session's sans-IO state machine: inputs in, commands out, no sockets, no clock of
//! its own (every input comes with the instant it happened).
//!
//! It owns everything about keeping a session alive that can be decided without I/O:
//! the state (Safe → Jeopardy → Safe | Expired, SPEC §4), the epoch the client knows, the
//! local lease (send time + granted lease / (1 + ρ), only ever moving forward), the grace
//! period, the highest event `seq` received (the next KeepAlive's `ack_seq`, and the
//! de-duplication watermark; it restarts at 0 in every epoch), and the retry rules after a
//! failed KeepAlive or `Locate`.
//!
//! The I/O layer (`session::driver`) feeds it [`Input`]s — the timer it asked for
//! ([`SessionCore::next_timer`]), KeepAlive replies and failures, the results of looking for
//! the master, what calls learned (a newer epoch, `SESSION_EXPIRED`) — and executes the
//! [`Command`]s it returns, in order: send the next KeepAlive, look for the master, drop
//! or flush cached nodes, hold or release or fail application calls, deliver events,
//! recreate handles at a new master, stop.
//! Exactly one KeepAlive (or master search) is outstanding at a time: every
//! [`Command::SendKeepAlive`] or [`Command::FindMaster`] replaces the previous one.

use crate::types::{Event, Notification, SessionState};
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::pb;

/// Added to the granted lease to get a KeepAlive's gRPC deadline while safe: the server
/// holds the call until about 1 s before the lease ends, so the deadline must comfortably
/// outlast the lease.
pub(crate) const KEEPALIVE_DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// A KeepAlive's deadline in jeopardy. The master no longer holds it (our lease at the
/// master is ending or, after a fail-over, a fail-over event is waiting), so a reply is
/// prompt; a silent connection is given up soon and the master looked for elsewhere.
pub(crate) const JEOPARDY_KEEPALIVE_DEADLINE: Duration = Duration::from_secs(2);

/// Leases longer than this are treated as this long. The spec caps leases at 60 s; the clamp
/// only guards the lease arithmetic against a confused server (a shorter local lease is
/// always safe).
const MAX_LEASE: Duration = Duration::from_secs(300);

/// A reply with no new event that came back faster than this is suspicious (normally the
/// server holds a KeepAlive for most of a lease) ...
const QUICK_REPLY: Duration = Duration::from_millis(50);
/// ... so the next KeepAlive waits this long, instead of spinning against the server.
const QUICK_REPLY_PAUSE: Duration = Duration::from_millis(100);

/// First retry delay after a failure; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay (before jitter).
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why a KeepAlive failed, as far as the state machine cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No reply: connection refused or broken, or the deadline passed.
    Transport,
    /// `NOT_MASTER` naming the master: the I/O layer has already switched to it.
    Redirected,
    /// `NOT_MASTER` from a replica that does not know the master.
    MasterUnknown,
    /// `STALE_EPOCH{epoch}`: a new master took over with this epoch.
    StaleEpoch(u64),
    /// The master answered with an error that a retry may cure (`OVERLOADED`, or anything
    /// unexpected).
    Refused,
    /// `SESSION_EXPIRED`: the master says the session is gone.
    Expired,
}

/// Everything that can happen to a session.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Input {
    /// The timer from [`SessionCore::next_timer`] fired (any input also checks it).
    Tick,
    /// The KeepAlive sent at `sent_at` was answered.
    KeepAliveReply {
        /// When the request was sent: the local lease counts from here.
        sent_at: Instant,
        /// The reply.
        reply: pb::KeepAliveResponse,
    },
    /// The outstanding KeepAlive failed.
    KeepAliveFailed(Failure),
    /// [`Command::FindMaster`] found the master (the I/O layer now talks to it).
    MasterFound,
    /// [`Command::FindMaster`] asked every endpoint and none led to a master.
    MasterNotFound,
    /// An application call was told `STALE_EPOCH{epoch}`.
    NewerEpoch(u64),
    /// An application call was told `SESSION_EXPIRED`.
    ExpiredByMaster,
    /// The application is closing the session (`CloseSession` is on its way): when the
    /// master then says the session is gone, it was closed, not expired.
    Closing,
    /// The application closed the session.
    Close,
}

/// What the I/O layer must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Send a KeepAlive carrying `epoch` and acknowledging `ack_seq` after waiting `after`,
    /// with this gRPC deadline. Replaces (supersedes) whatever is outstanding.
    SendKeepAlive {
        /// The master epoch to put in the request.
        epoch: u64,
        /// Every event up to this `seq` has been handled.
        ack_seq: u64,
        /// Wait this long first.
        after: Duration,
        /// Give up on the reply after this long.
        deadline: Duration,
    },
    /// After waiting `after`, ask the endpoints (`Locate`, round-robin) who the master is
    /// and connect to it; report [`Input::MasterFound`] or [`Input::MasterNotFound`].
    /// Replaces whatever is outstanding.
    FindMaster {
        /// Wait this long first.
        after: Duration,
    },
    /// Drop every cached copy of this node (data, stat, listing, absence, shared handles).
    Invalidate(String),
    /// Drop everything cached; keep caching.
    FlushCache,
    /// Drop everything cached and cache nothing until [`Command::EnableCache`].
    DisableCache,
    /// Cache again.
    EnableCache,
    /// Publish the session's state to application calls: `Safe` lets them run,
    /// `Jeopardy` holds new ones back, `Expired` and `Closed` fail them with
    /// `SESSION_EXPIRED`.
    SetState(SessionState),
    /// Hand this event to every subscriber.
    Deliver(Event),
    /// Use every open handle once (any cheap call) so that the new master recreates it
    /// now: its event subscriptions resume, and the ephemeral nodes it holds are claimed
    /// before the new master deletes unclaimed ones (SPEC §5 step 9).
    RecreateHandles,
    /// Stop the KeepAlive loop: the session is over.
    Stop,
}

/// The pure state of one session.
#[derive(Clone, Debug)]
pub(crate) struct SessionCore {
    state: SessionState,
    /// The master epoch the client knows; carried by every call.
    epoch: u64,
    /// The lease most recently granted; sets the KeepAlive deadline.
    granted: Duration,
    /// End of the local lease. Only moves forward.
    lease_end: Instant,
    /// End of the grace period, while in jeopardy.
    grace_end: Option<Instant>,
    /// Highest event `seq` received in this epoch: the next `ack_seq`, and the
    /// de-duplication watermark.
    highest_seq: u64,
    /// Consecutive failures (KeepAlives or master searches), for the backoff.
    failures: u32,
    /// ρ: allowed clock-rate drift between client and master.
    clock_drift: f64,
    /// How long past the local lease the library keeps looking for the master.
    grace: Duration,
    /// Spreads retries of different sessions apart (derived from the session id).
    jitter_seed: u64,
    /// `CloseSession` has been sent.
    closing: bool,
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
            state: SessionState::Safe,
            epoch,
            granted: Duration::ZERO,
            lease_end: sent_at,
            grace_end: None,
            highest_seq: 0,
            failures: 0,
            clock_drift,
            grace,
            jitter_seed,
            closing: false,
        };
        core.extend_lease(sent_at, lease);
        core
    }

    /// The commands that start the session: the first KeepAlive.
    pub(crate) fn start(&mut self) -> Vec<Command> {
        vec![self.keepalive(Duration::ZERO)]
    }

    /// The session's state.
    pub(crate) fn state(&self) -> SessionState {
        self.state
    }

    /// The master epoch to put in the next call.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
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

    /// When the I/O layer must deliver [`Input::Tick`]: the end of the local lease while
    /// safe, the end of the grace period in jeopardy, never once the session is over.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        match self.state {
            SessionState::Safe => Some(self.lease_end),
            SessionState::Jeopardy => self.grace_end,
            SessionState::Expired | SessionState::Closed => None,
        }
    }

    /// How long calls may keep retrying `FAILOVER_IN_PROGRESS` at most: a new master
    /// refuses them until every restored session has acknowledged the fail-over or
    /// expired, which can take a lease; the grace period bounds it.
    pub(crate) fn grace(&self) -> Duration {
        self.grace
    }

    /// Handles one input at `now`; returns what to do, in order.
    pub(crate) fn handle(&mut self, now: Instant, input: Input) -> Vec<Command> {
        let mut out = Vec::new();
        if !self.state.is_live() {
            return out;
        }
        // Deadlines first: whatever arrives, a lease that has ended has ended, and a
        // session past its grace period is over (no session outlives lease + grace).
        let entered_jeopardy = self.check_timers(now, &mut out);
        if !self.state.is_live() {
            return out;
        }
        match input {
            Input::Tick => {
                if entered_jeopardy {
                    // Start looking at once: a fresh KeepAlive with a short deadline
                    // supersedes the one the master never answered.
                    out.push(self.keepalive(Duration::ZERO));
                }
            }
            Input::KeepAliveReply { sent_at, reply } => {
                self.on_reply(now, sent_at, &reply, &mut out)
            }
            Input::KeepAliveFailed(failure) => self.on_failure(failure, &mut out),
            Input::MasterFound => {
                // Progress: a master answered. Back-off starts afresh.
                self.failures = 0;
                out.push(self.keepalive(Duration::ZERO));
            }
            Input::MasterNotFound => {
                self.failures = self.failures.saturating_add(1);
                out.push(Command::FindMaster {
                    after: self.backoff(),
                });
            }
            Input::NewerEpoch(epoch) => {
                if self.adopt_epoch(epoch, &mut out) {
                    // The outstanding KeepAlive names the old epoch: supersede it.
                    out.push(self.keepalive(Duration::ZERO));
                }
            }
            Input::ExpiredByMaster => self.expire(&mut out),
            Input::Closing => self.closing = true,
            Input::Close => self.close(&mut out),
        }
        out
    }

    fn close(&mut self, out: &mut Vec<Command>) {
        self.state = SessionState::Closed;
        self.grace_end = None;
        out.extend([
            Command::DisableCache,
            Command::SetState(SessionState::Closed),
            Command::Stop,
        ]);
    }

    /// Applies the lease and grace deadlines; returns whether jeopardy began.
    fn check_timers(&mut self, now: Instant, out: &mut Vec<Command>) -> bool {
        let mut entered = false;
        if self.state == SessionState::Safe && now >= self.lease_end {
            entered = true;
            self.state = SessionState::Jeopardy;
            self.grace_end = Some(self.lease_end.checked_add(self.grace).unwrap_or(now));
            tracing::info!(grace = ?self.grace, "local lease ended: jeopardy");
            out.extend([
                Command::DisableCache,
                Command::SetState(SessionState::Jeopardy),
                Command::Deliver(Event::Jeopardy),
            ]);
        }
        if self.state == SessionState::Jeopardy && self.grace_end.is_none_or(|end| now >= end) {
            tracing::info!("grace period ended without reaching the master: expired");
            self.expire(out);
        }
        entered
    }

    /// The session is over: expired, or closed if the application was closing it (the
    /// master forgets a closed session, so it says "expired" to the KeepAlive in flight).
    fn expire(&mut self, out: &mut Vec<Command>) {
        if self.closing {
            return self.close(out);
        }
        self.state = SessionState::Expired;
        self.grace_end = None;
        out.extend([
            Command::DisableCache,
            Command::SetState(SessionState::Expired),
            Command::Deliver(Event::Expired),
            Command::Stop,
        ]);
    }

    /// The next KeepAlive, after `after`.
    fn keepalive(&self, after: Duration) -> Command {
        let safe_deadline = self.granted + KEEPALIVE_DEADLINE_MARGIN;
        let deadline = match self.state {
            SessionState::Jeopardy => safe_deadline.min(JEOPARDY_KEEPALIVE_DEADLINE),
            _ => safe_deadline,
        };
        Command::SendKeepAlive {
            epoch: self.epoch,
            ack_seq: self.highest_seq,
            after,
            deadline,
        }
    }

    /// Moves to `epoch` if it is newer: event numbering restarts (the new master counts
    /// from 1), and the cache is flushed (the new master knows nothing of what we cache, so
    /// nothing would invalidate it). Returns whether it was newer.
    fn adopt_epoch(&mut self, epoch: u64, out: &mut Vec<Command>) -> bool {
        if epoch <= self.epoch {
            return false;
        }
        tracing::info!(from = self.epoch, to = epoch, "new master epoch");
        self.epoch = epoch;
        self.highest_seq = 0;
        out.push(Command::FlushCache);
        true
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

    fn on_reply(
        &mut self,
        now: Instant,
        sent_at: Instant,
        reply: &pb::KeepAliveResponse,
        out: &mut Vec<Command>,
    ) {
        self.failures = 0;
        let was_safe = self.state == SessionState::Safe;
        self.adopt_epoch(reply.epoch, out);
        // `lease_ms` counts from when the master received the request, which is after
        // `sent_at`: counting from `sent_at` keeps the local lease on the safe side.
        self.extend_lease(sent_at, Duration::from_millis(reply.lease_ms));
        if self.state == SessionState::Jeopardy && self.lease_end > now {
            self.state = SessionState::Safe;
            self.grace_end = None;
            tracing::info!("the master answered within the grace period: safe");
            out.extend([
                Command::EnableCache,
                Command::SetState(SessionState::Safe),
                Command::Deliver(Event::Safe),
            ]);
        }

        // A late reply from a master we have already left behind: its lease still counts
        // (the new master honours the longest lease any predecessor granted), but its
        // events are numbered in the old epoch; the new master re-sends what matters.
        let mut fresh_events = false;
        if reply.epoch == self.epoch {
            let mut fresh: Vec<&pb::Event> = reply
                .events
                .iter()
                .filter(|e| e.seq > self.highest_seq)
                .collect();
            fresh.sort_by_key(|e| e.seq);
            fresh.dedup_by_key(|e| e.seq);
            fresh_events = !fresh.is_empty();
            for e in fresh {
                self.highest_seq = e.seq;
                match Notification::try_from(e) {
                    Ok(Notification::Invalidate(path)) => out.push(Command::Invalidate(path)),
                    Ok(Notification::App(Event::MasterFailover)) => {
                        // Invalidations may have been lost with the old master: drop
                        // everything before acknowledging.
                        out.push(Command::FlushCache);
                        out.push(Command::Deliver(Event::MasterFailover));
                        out.push(Command::RecreateHandles);
                    }
                    Ok(Notification::App(event)) => out.push(Command::Deliver(event)),
                    // Acknowledged anyway: a malformed event must not stall the session's
                    // event stream by being re-sent forever.
                    Err(err) => tracing::warn!(seq = e.seq, %err, "dropping malformed event"),
                }
            }
        }
        let quick = now.saturating_duration_since(sent_at) < QUICK_REPLY;
        let after = if !fresh_events && quick && was_safe {
            QUICK_REPLY_PAUSE
        } else {
            Duration::ZERO
        };
        // Sent at once (normally), so it acknowledges what this reply delivered: the
        // master's writes waiting on our invalidation acknowledgements proceed.
        out.push(self.keepalive(after));
    }

    fn on_failure(&mut self, failure: Failure, out: &mut Vec<Command>) {
        self.failures = self.failures.saturating_add(1);
        let first = self.failures == 1;
        match failure {
            Failure::Expired => self.expire(out),
            Failure::StaleEpoch(epoch) => {
                // A newer epoch is progress (a live master answered): retry at once. The
                // restored session's lease at the new master runs from its start, so
                // every moment counts.
                let after = if self.adopt_epoch(epoch, out) || first {
                    Duration::ZERO
                } else {
                    self.backoff()
                };
                out.push(self.keepalive(after));
            }
            Failure::Redirected => {
                let after = if first {
                    Duration::ZERO
                } else {
                    self.backoff()
                };
                out.push(self.keepalive(after));
            }
            Failure::Refused => out.push(self.keepalive(self.backoff())),
            Failure::Transport | Failure::MasterUnknown => {
                let after = if first {
                    Duration::ZERO
                } else {
                    self.backoff()
                };
                out.push(Command::FindMaster { after });
            }
        }
    }

    /// Exponential backoff with up to 50% jitter, deterministic per (session, attempt).
    /// Capped at [`BACKOFF_MAX`] and at a quarter of the lease: a new master keeps a
    /// restored session only for about a lease from its start, so the search must look
    /// several times per lease.
    fn backoff(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(16);
        let cap = BACKOFF_MAX.min(self.granted / 4).max(BACKOFF_BASE);
        let base = BACKOFF_BASE.saturating_mul(1u32 << doublings).min(cap);
        let noise = splitmix64(self.jitter_seed ^ u64::from(self.failures)) % 1000;
        base + base.mul_f64(noise as f64 / 2000.0)
    }
}

/// A small, well-mixed hash (SplitMix64's finaliser) for jitter.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests;
