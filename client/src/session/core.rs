//! The session's sans-IO state machine: inputs in, commands out, no sockets, no clock of
//! its own (every input comes with the instant it happened).
//!
//! It owns everything about keeping a library session alive that can be decided without
//! I/O: the state (Safe → Jeopardy → Safe | Expired, docs/design.md §6, or Closed), and the retry
//! rules after a failed KeepAlive or `Locate`. The lease arithmetic (send time + granted
//! lease / (1 + ρ), only ever moving forward), the jeopardy and grace-period deadlines, the
//! epoch and event watermark (the next KeepAlive's `ack_seq`; it restarts at 0 in every
//! epoch) and the backoff are the shared [`lease`](super::lease) types, which the proxy, a
//! cell's peer sessions and the load tester drive too; this machine adds what only the
//! library does with them: the cache, the call gate, events, closing.
//!
//! The I/O layer (`session::driver`) feeds it [`Input`]s — the timer it asked for
//! ([`SessionCore::next_timer`]), KeepAlive replies and failures, the results of looking for
//! the master, what calls learned (a newer epoch, `SESSION_EXPIRED`) — and executes the
//! [`Command`]s it returns, in order: send the next KeepAlive, look for the master, drop
//! or flush cached nodes, hold or release or fail application calls, deliver events,
//! recreate handles at a new master, stop.
//! Exactly one KeepAlive (or master search) is outstanding at a time: every
//! [`Command::SendKeepAlive`] or [`Command::FindMaster`] replaces the previous one.

use super::lease::{AckWatermark, Backoff, Lease, LeaseState};
use crate::types::{Event, Notification, SessionState};
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::pb;

/// A reply with no new event that came back faster than this is suspicious (normally the
/// server holds a KeepAlive for most of a lease) ...
const QUICK_REPLY: Duration = Duration::from_millis(50);
/// ... so the next KeepAlive waits this long, instead of spinning against the server.
const QUICK_REPLY_PAUSE: Duration = Duration::from_millis(100);

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
        /// The local lease has ended: ask for an answer at once
        /// (`KeepAliveRequest.jeopardy`).
        jeopardy: bool,
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
    /// before the new master deletes unclaimed ones (docs/design.md §9 step 9).
    RecreateHandles,
    /// A reshard moved the node of this session's handle `handle` to the cell `cell`
    /// (a `SLOT_MOVED` event): in direct mode over a partitioned deployment the router
    /// re-opens the handles on it there (docs/client.md "After a reshard").
    Moved {
        handle: Vec<u8>,
        path: String,
        cell: String,
    },
    /// Stop the KeepAlive loop: the session is over.
    Stop,
}

/// The pure state of one session: its [`Lease`] (local lease, jeopardy, grace period), its
/// [`AckWatermark`] (epoch and event watermark) and its [`Backoff`], from the shared
/// [`lease`](super::lease) module, plus what only the library needs (closing, events,
/// the cache).
#[derive(Clone, Debug)]
pub(crate) struct SessionCore {
    lease: Lease,
    /// The master epoch the client knows (carried by every call) and the highest event
    /// `seq` received in it (the next `ack_seq`, and the de-duplication watermark).
    acks: AckWatermark,
    /// Consecutive failures (KeepAlives or master searches).
    backoff: Backoff,
    /// `CloseSession` has been sent.
    closing: bool,
    /// The application closed the session.
    closed: bool,
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
        SessionCore {
            lease: Lease::new(sent_at, lease, clock_drift, grace),
            acks: AckWatermark::new(epoch),
            backoff: Backoff::new(jitter_seed),
            closing: false,
            closed: false,
        }
    }

    /// The commands that start the session: the first KeepAlive.
    pub(crate) fn start(&mut self) -> Vec<Command> {
        vec![self.keepalive(Duration::ZERO)]
    }

    /// The session's state.
    pub(crate) fn state(&self) -> SessionState {
        match self.lease.state() {
            _ if self.closed => SessionState::Closed,
            LeaseState::Safe => SessionState::Safe,
            LeaseState::Jeopardy => SessionState::Jeopardy,
            LeaseState::Expired => SessionState::Expired,
        }
    }

    /// The master epoch to put in the next call.
    pub(crate) fn epoch(&self) -> u64 {
        self.acks.epoch()
    }

    /// When the local lease ends.
    #[cfg(test)]
    pub(crate) fn lease_end(&self) -> Instant {
        self.lease.local().end()
    }

    /// The lease the master last granted (its length, not what is left of it).
    pub(crate) fn lease_granted(&self) -> Duration {
        self.lease.local().granted()
    }

    /// How much of the local lease is left at `now` (zero once it has ended).
    pub(crate) fn lease_remaining(&self, now: Instant) -> Duration {
        self.lease.local().remaining(now)
    }

    /// When the I/O layer must deliver [`Input::Tick`]: the end of the local lease while
    /// safe, the end of the grace period in jeopardy, never once the session is over.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.lease.next_deadline()
    }

    /// How long calls may keep retrying `FAILOVER_IN_PROGRESS` at most: a new master
    /// refuses them until every restored session has acknowledged the fail-over or
    /// expired, which can take a lease; the grace period bounds it.
    pub(crate) fn grace(&self) -> Duration {
        self.lease.grace()
    }

    /// Handles one input at `now`; returns what to do, in order.
    pub(crate) fn handle(&mut self, now: Instant, input: Input) -> Vec<Command> {
        let mut out = Vec::new();
        if !self.state().is_live() {
            return out;
        }
        // Deadlines first: whatever arrives, a lease that has ended has ended, and a
        // session past its grace period is over (no session outlives lease + grace).
        let entered_jeopardy = self.check_timers(now, &mut out);
        if !self.state().is_live() {
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
                self.backoff.succeeded();
                out.push(self.keepalive(Duration::ZERO));
            }
            Input::MasterNotFound => {
                self.backoff.failed();
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
        self.closed = true;
        self.lease.end();
        out.extend([
            Command::DisableCache,
            Command::SetState(SessionState::Closed),
            Command::Stop,
        ]);
    }

    /// Applies the lease and grace deadlines; returns whether jeopardy began.
    fn check_timers(&mut self, now: Instant, out: &mut Vec<Command>) -> bool {
        let passed = self.lease.check(now);
        if passed.entered_jeopardy {
            tracing::info!(grace = ?self.lease.grace(), "local lease ended: jeopardy");
            out.extend([
                Command::DisableCache,
                Command::SetState(SessionState::Jeopardy),
                Command::Deliver(Event::Jeopardy),
            ]);
        }
        if passed.expired {
            tracing::info!("grace period ended without reaching the master: expired");
            self.expire(out);
        }
        passed.entered_jeopardy
    }

    /// The session is over: expired, or closed if the application was closing it (the
    /// master forgets a closed session, so it says "expired" to the KeepAlive in flight).
    fn expire(&mut self, out: &mut Vec<Command>) {
        if self.closing {
            return self.close(out);
        }
        self.lease.end();
        out.extend([
            Command::DisableCache,
            Command::SetState(SessionState::Expired),
            Command::Deliver(Event::Expired),
            Command::Stop,
        ]);
    }

    /// The next KeepAlive, after `after`.
    fn keepalive(&self, after: Duration) -> Command {
        Command::SendKeepAlive {
            epoch: self.acks.epoch(),
            ack_seq: self.acks.ack_seq(),
            after,
            deadline: self.lease.keepalive_deadline(),
            jeopardy: self.lease.in_jeopardy(),
        }
    }

    /// Moves to `epoch` if it is newer: event numbering restarts (the new master counts
    /// from 1), and the cache is flushed (the new master knows nothing of what we cache, so
    /// nothing would invalidate it). Returns whether it was newer.
    fn adopt_epoch(&mut self, epoch: u64, out: &mut Vec<Command>) -> bool {
        let from = self.acks.epoch();
        if !self.acks.adopt_epoch(epoch) {
            return false;
        }
        tracing::info!(from, to = epoch, "new master epoch");
        out.push(Command::FlushCache);
        true
    }

    fn on_reply(
        &mut self,
        now: Instant,
        sent_at: Instant,
        reply: &pb::KeepAliveResponse,
        out: &mut Vec<Command>,
    ) {
        self.backoff.succeeded();
        let was_safe = self.lease.state() == LeaseState::Safe;
        self.adopt_epoch(reply.epoch, out);
        // `lease_ms` counts from when the master received the request, which is after
        // `sent_at`: counting from `sent_at` keeps the local lease on the safe side.
        if self
            .lease
            .renewed(now, sent_at, Duration::from_millis(reply.lease_ms))
        {
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
        let fresh = self.acks.take_fresh(reply.epoch, &reply.events);
        let fresh_events = !fresh.is_empty();
        for e in fresh {
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
                // In direct mode the router re-opens the handle there at once (so its
                // events flow from the new cell); otherwise, or if that fails, the
                // handle's next call meets WRONG_CELL at the old cell and is followed.
                Ok(Notification::Moved { handle, path, cell }) => {
                    out.push(Command::Moved { handle, path, cell });
                }
                // Acknowledged anyway: a malformed event must not stall the session's
                // event stream by being re-sent forever.
                Err(err) => tracing::warn!(seq = e.seq, %err, "dropping malformed event"),
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
        let first = self.backoff.failed() == 1;
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

    /// The retry delay after the failures so far ([`Backoff`], capped by the lease).
    fn backoff(&self) -> Duration {
        self.backoff.delay(self.lease.local().granted())
    }
}

#[cfg(test)]
mod tests;
