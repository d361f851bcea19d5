//! The session state machine driven directly, with paused tokio time and no network: each
//! test feeds inputs at chosen instants and asserts the exact commands that come out. The
//! call-gate tests execute the `SetState` commands against a real [`CallGate`] to show
//! application calls held back in jeopardy, released on safe, failed on expiry.

use super::*;
use crate::session::gate::CallGate;
use crate::session::lease::{
    BACKOFF_BASE, BACKOFF_MAX, JEOPARDY_KEEPALIVE_DEADLINE, KEEPALIVE_DEADLINE_MARGIN, MAX_LEASE,
};
use tokio::time::advance;

const LEASE: Duration = Duration::from_secs(12);
const GRACE: Duration = Duration::from_secs(45);
const EPOCH: u64 = 7;

fn core_at(t0: Instant) -> SessionCore {
    SessionCore::new(EPOCH, LEASE, t0, 0.01, GRACE, 42)
}

fn local(lease: Duration) -> Duration {
    lease.div_f64(1.01)
}

fn ka(epoch: u64, ack_seq: u64, after: Duration, deadline: Duration) -> Command {
    Command::SendKeepAlive {
        epoch,
        ack_seq,
        after,
        deadline,
        jeopardy: false,
    }
}

/// The KeepAlive a session in jeopardy sends: a short deadline, and it asks for an answer
/// at once.
fn ka_jeopardy(ack_seq: u64) -> Command {
    Command::SendKeepAlive {
        epoch: EPOCH,
        ack_seq,
        after: Duration::ZERO,
        deadline: JEOPARDY_KEEPALIVE_DEADLINE,
        jeopardy: true,
    }
}

/// The KeepAlive a safe session sends right after a reply.
fn ka_safe(ack_seq: u64) -> Command {
    ka(
        EPOCH,
        ack_seq,
        Duration::ZERO,
        LEASE + KEEPALIVE_DEADLINE_MARGIN,
    )
}

fn event(seq: u64, t: pb::EventType, path: &str) -> pb::Event {
    pb::Event {
        seq,
        r#type: t as i32,
        handle: vec![1, 2],
        path: path.into(),
        child: String::new(),
        child_change: 0,
        ..Default::default()
    }
}

fn reply(lease_ms: u64, events: Vec<pb::Event>) -> pb::KeepAliveResponse {
    pb::KeepAliveResponse {
        lease_ms,
        events,
        epoch: EPOCH,
    }
}

fn got_reply(sent_at: Instant, r: pb::KeepAliveResponse) -> Input {
    Input::KeepAliveReply { sent_at, reply: r }
}

fn modified(path: &str) -> Event {
    Event::ContentsModified { path: path.into() }
}

const JEOPARDY: [Command; 3] = [
    Command::DisableCache,
    Command::SetState(SessionState::Jeopardy),
    Command::Deliver(Event::Jeopardy),
];
const SAFE: [Command; 3] = [
    Command::EnableCache,
    Command::SetState(SessionState::Safe),
    Command::Deliver(Event::Safe),
];
const EXPIRED: [Command; 4] = [
    Command::DisableCache,
    Command::SetState(SessionState::Expired),
    Command::Deliver(Event::Expired),
    Command::Stop,
];

fn concat(parts: &[&[Command]]) -> Vec<Command> {
    parts.iter().flat_map(|p| p.iter().cloned()).collect()
}

/// Puts a fresh session into jeopardy at its local-lease end; returns that instant.
async fn into_jeopardy(c: &mut SessionCore, t0: Instant) -> Instant {
    let end = t0 + local(LEASE);
    advance(end - Instant::now()).await;
    let out = c.handle(Instant::now(), Input::Tick);
    assert_eq!(out, concat(&[&JEOPARDY, &[ka_jeopardy(0)]]));
    end
}

// ---------------------------------------------------------------- lease and states

#[tokio::test(start_paused = true)]
async fn starts_safe_with_one_keepalive_and_a_timer_at_the_local_lease_end() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    assert_eq!(c.state(), SessionState::Safe);
    assert_eq!(c.start(), vec![ka_safe(0)]);
    assert_eq!(c.lease_end(), t0 + local(LEASE));
    assert_eq!(c.next_timer(), Some(t0 + local(LEASE)));
    assert_eq!(c.lease_remaining(t0), local(LEASE));
}

#[tokio::test(start_paused = true)]
async fn jeopardy_exactly_at_local_lease_expiry() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    c.start();
    let end = t0 + local(LEASE);
    // One millisecond before: nothing happens.
    advance(end - t0 - Duration::from_millis(1)).await;
    assert_eq!(c.handle(Instant::now(), Input::Tick), vec![]);
    assert_eq!(c.state(), SessionState::Safe);
    // At the end of the local lease, exactly: jeopardy, and a fresh KeepAlive with a
    // short deadline replaces the unanswered one.
    advance(Duration::from_millis(1)).await;
    assert_eq!(Instant::now(), end);
    assert_eq!(
        c.handle(Instant::now(), Input::Tick),
        concat(&[&JEOPARDY, &[ka_jeopardy(0)]])
    );
    assert_eq!(c.state(), SessionState::Jeopardy);
    assert_eq!(c.next_timer(), Some(end + GRACE));
    // A second tick changes nothing.
    assert_eq!(c.handle(Instant::now(), Input::Tick), vec![]);
}

#[tokio::test(start_paused = true)]
async fn replies_keep_the_session_safe() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    c.start();
    // The master holds the KeepAlive ~11 s and grants a lease counted from when it got it.
    advance(Duration::from_secs(11)).await;
    assert_eq!(
        c.handle(Instant::now(), got_reply(t0, reply(23_000, vec![]))),
        vec![ka(
            EPOCH,
            0,
            Duration::ZERO,
            Duration::from_secs(23) + KEEPALIVE_DEADLINE_MARGIN
        )]
    );
    assert_eq!(c.lease_end(), t0 + local(Duration::from_secs(23)));
    // Past the first lease's end, still safe: no jeopardy.
    advance(Duration::from_secs(2)).await;
    assert_eq!(c.handle(Instant::now(), Input::Tick), vec![]);
    assert_eq!(c.state(), SessionState::Safe);
}

#[tokio::test(start_paused = true)]
async fn safe_when_a_reply_arrives_within_grace() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    c.start();
    let end = into_jeopardy(&mut c, t0).await;
    // 30 s into the grace period the master answers (say a new master, with a full lease).
    advance(Duration::from_secs(30)).await;
    let sent = Instant::now() - Duration::from_millis(5);
    let out = c.handle(Instant::now(), got_reply(sent, reply(12_000, vec![])));
    assert_eq!(out, concat(&[&SAFE, &[ka_safe(0)]]));
    assert_eq!(c.state(), SessionState::Safe);
    assert_eq!(c.next_timer(), Some(sent + local(LEASE)));
    assert!(c.next_timer() > Some(end + Duration::from_secs(30)));
}

#[tokio::test(start_paused = true)]
async fn a_reply_whose_lease_has_already_ended_does_not_make_it_safe() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    c.start();
    into_jeopardy(&mut c, t0).await;
    advance(Duration::from_secs(5)).await;
    // Sent 4 s ago with a 2 s lease: over before it arrived.
    let sent = Instant::now() - Duration::from_secs(4);
    let out = c.handle(Instant::now(), got_reply(sent, reply(2_000, vec![])));
    assert_eq!(out, vec![ka_jeopardy(0)]);
    assert_eq!(c.state(), SessionState::Jeopardy);
}

#[tokio::test(start_paused = true)]
async fn expired_after_grace() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    c.start();
    let end = into_jeopardy(&mut c, t0).await;
    // The search goes on: failures are retried, never given up before the grace ends.
    advance(Duration::from_secs(20)).await;
    assert_eq!(
        c.handle(Instant::now(), Input::KeepAliveFailed(Failure::Transport)),
        vec![Command::FindMaster {
            after: Duration::ZERO
        }]
    );
    assert!(matches!(
        c.handle(Instant::now(), Input::MasterNotFound).as_slice(),
        [Command::FindMaster { after }] if *after > Duration::ZERO
    ));
    // One millisecond before the grace ends: still in jeopardy.
    advance(end + GRACE - Instant::now() - Duration::from_millis(1)).await;
    assert_eq!(c.handle(Instant::now(), Input::Tick), vec![]);
    advance(Duration::from_millis(1)).await;
    assert_eq!(c.handle(Instant::now(), Input::Tick), EXPIRED.to_vec());
    assert_eq!(c.state(), SessionState::Expired);
    assert_eq!(c.next_timer(), None);
    // Final: nothing more comes out, whatever arrives.
    let late = got_reply(Instant::now(), reply(12_000, vec![]));
    assert_eq!(c.handle(Instant::now(), late), vec![]);
    assert_eq!(c.handle(Instant::now(), Input::Close), vec![]);
}

#[tokio::test(start_paused = true)]
async fn a_reply_after_the_grace_period_is_too_late() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    c.start();
    let end = into_jeopardy(&mut c, t0).await;
    // The timer has not been serviced yet when the reply is handled: expiry wins, so no
    // session outlives lease + grace.
    advance(end + GRACE + Duration::from_millis(3) - Instant::now()).await;
    let out = c.handle(
        Instant::now(),
        got_reply(Instant::now(), reply(12_000, vec![])),
    );
    assert_eq!(out, EXPIRED.to_vec());
}

#[tokio::test(start_paused = true)]
async fn the_master_saying_expired_is_final() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    c.start();
    assert_eq!(
        c.handle(t0, Input::KeepAliveFailed(Failure::Expired)),
        EXPIRED.to_vec()
    );
    let mut c = core_at(t0);
    assert_eq!(c.handle(t0, Input::ExpiredByMaster), EXPIRED.to_vec());
}

#[tokio::test(start_paused = true)]
async fn close_is_once() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    assert_eq!(
        c.handle(t0, Input::Close),
        vec![
            Command::DisableCache,
            Command::SetState(SessionState::Closed),
            Command::Stop
        ]
    );
    assert_eq!(c.handle(t0, Input::Close), vec![]);
    assert_eq!(c.handle(t0, Input::ExpiredByMaster), vec![]);
    assert_eq!(c.state(), SessionState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_master_forgetting_a_closing_session_closes_it() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    assert_eq!(c.handle(t0, Input::Closing), vec![]);
    assert_eq!(c.state(), SessionState::Safe);
    assert_eq!(
        c.handle(t0, Input::KeepAliveFailed(Failure::Expired)),
        vec![
            Command::DisableCache,
            Command::SetState(SessionState::Closed),
            Command::Stop
        ]
    );
}

// ---------------------------------------------------------------- the call gate

/// Executes the `SetState` commands on the gate, as the driver does.
fn publish(gate: &CallGate, commands: &[Command]) {
    for c in commands {
        if let Command::SetState(s) = c {
            gate.set(*s);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn calls_are_held_in_jeopardy_and_released_on_safe() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    let gate = std::sync::Arc::new(CallGate::new());
    c.start();
    assert_eq!(gate.admit().await, Ok(Duration::ZERO), "safe: calls pass");

    let end = t0 + local(LEASE);
    advance(end - t0).await;
    publish(&gate, &c.handle(Instant::now(), Input::Tick));
    assert_eq!(gate.state(), SessionState::Jeopardy);
    let held = {
        let gate = gate.clone();
        tokio::spawn(async move { gate.admit().await })
    };
    tokio::task::yield_now().await;
    // Ten seconds of jeopardy: the call is still waiting, neither failed nor answered.
    advance(Duration::from_secs(10)).await;
    tokio::task::yield_now().await;
    assert!(!held.is_finished(), "a call went through in jeopardy");

    let out = c.handle(
        Instant::now(),
        got_reply(Instant::now(), reply(12_000, vec![])),
    );
    publish(&gate, &out);
    let waited = held.await.expect("join").expect("released, not failed");
    assert_eq!(waited, Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn held_calls_fail_with_session_expired_when_the_grace_ends() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    let gate = std::sync::Arc::new(CallGate::new());
    c.start();
    let end = t0 + local(LEASE);
    advance(end - t0).await;
    publish(&gate, &c.handle(Instant::now(), Input::Tick));
    let held = {
        let gate = gate.clone();
        tokio::spawn(async move { gate.admit().await })
    };
    let in_flight = {
        let gate = gate.clone();
        tokio::spawn(async move { gate.ended().await })
    };
    advance(GRACE).await;
    publish(&gate, &c.handle(Instant::now(), Input::Tick));
    let err = held.await.expect("join").expect_err("expired");
    assert_eq!(err.code(), Some(warren_proto::ErrorCode::SessionExpired));
    let err = in_flight.await.expect("join");
    assert_eq!(err.code(), Some(warren_proto::ErrorCode::SessionExpired));
    // And every later call fails at once.
    assert!(gate.admit().await.is_err());
}

// ---------------------------------------------------------------- events and the cache

#[tokio::test(start_paused = true)]
async fn events_are_acknowledged_and_delivered_once() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    c.start();
    let first = c.handle(
        t0 + Duration::from_secs(1),
        got_reply(
            t0,
            reply(
                12_000,
                vec![
                    event(1, pb::EventType::ContentsModified, "/ls/l/a"),
                    event(2, pb::EventType::ContentsModified, "/ls/l/b"),
                ],
            ),
        ),
    );
    assert_eq!(
        first,
        vec![
            Command::Deliver(modified("/ls/l/a")),
            Command::Deliver(modified("/ls/l/b")),
            ka_safe(2),
        ]
    );
    // The server re-sends what it has not seen acknowledged, plus something new.
    let again = c.handle(
        t0 + Duration::from_secs(1),
        got_reply(
            t0,
            reply(
                12_000,
                vec![
                    event(1, pb::EventType::ContentsModified, "/ls/l/a"),
                    event(2, pb::EventType::ContentsModified, "/ls/l/b"),
                    event(3, pb::EventType::LockAcquired, "/ls/l/c"),
                ],
            ),
        ),
    );
    assert_eq!(
        again,
        vec![
            Command::Deliver(Event::LockAcquired {
                path: "/ls/l/c".into()
            }),
            ka_safe(3),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn out_of_order_and_duplicate_seqs_in_one_reply() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    let out = c.handle(
        t0 + Duration::from_secs(1),
        got_reply(
            t0,
            reply(
                12_000,
                vec![
                    event(5, pb::EventType::ContentsModified, "/ls/l/e"),
                    event(4, pb::EventType::ContentsModified, "/ls/l/d"),
                    event(5, pb::EventType::ContentsModified, "/ls/l/e"),
                ],
            ),
        ),
    );
    assert_eq!(
        out,
        vec![
            Command::Deliver(modified("/ls/l/d")),
            Command::Deliver(modified("/ls/l/e")),
            ka_safe(5),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn invalidations_drop_before_the_acknowledging_keepalive() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    let out = c.handle(
        t0 + Duration::from_secs(1),
        got_reply(
            t0,
            reply(
                12_000,
                vec![
                    event(1, pb::EventType::Invalidate, "/ls/l/a"),
                    event(2, pb::EventType::Unspecified, "/ls/l/a"),
                    event(3, pb::EventType::ContentsModified, ""),
                    event(4, pb::EventType::Invalidate, "/ls/l/b"),
                ],
            ),
        ),
    );
    // Malformed events (2, 3) are acknowledged but not delivered.
    assert_eq!(
        out,
        vec![
            Command::Invalidate("/ls/l/a".into()),
            Command::Invalidate("/ls/l/b".into()),
            ka_safe(4),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failover_event_flushes_the_cache_and_is_delivered() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    let out = c.handle(
        t0 + Duration::from_millis(2),
        got_reply(
            t0,
            reply(12_000, vec![event(1, pb::EventType::MasterFailover, "")]),
        ),
    );
    assert_eq!(
        out,
        vec![
            Command::FlushCache,
            Command::Deliver(Event::MasterFailover),
            Command::RecreateHandles,
            ka_safe(1),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_instant_empty_reply_pauses_the_next_keepalive() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    let out = c.handle(
        t0 + Duration::from_millis(1),
        got_reply(t0, reply(12_000, vec![])),
    );
    assert_eq!(
        out,
        vec![ka(
            EPOCH,
            0,
            QUICK_REPLY_PAUSE,
            LEASE + KEEPALIVE_DEADLINE_MARGIN
        )]
    );
}

// ---------------------------------------------------------------- master location

#[tokio::test(start_paused = true)]
async fn stale_epoch_is_adopted_and_event_numbering_restarts() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    c.handle(
        t0,
        got_reply(
            t0,
            reply(
                12_000,
                vec![event(9, pb::EventType::ContentsModified, "/ls/l/a")],
            ),
        ),
    );
    // The master restarted: epoch 8. Adopt, flush, restart numbering, retry at once.
    assert_eq!(
        c.handle(t0, Input::KeepAliveFailed(Failure::StaleEpoch(8))),
        vec![
            Command::FlushCache,
            ka(8, 0, Duration::ZERO, LEASE + KEEPALIVE_DEADLINE_MARGIN)
        ]
    );
    assert_eq!(c.epoch(), 8);
    // The new master's events start at 1 again; its fail-over event is delivered.
    let out = c.handle(
        t0,
        got_reply(
            t0,
            pb::KeepAliveResponse {
                lease_ms: 12_000,
                events: vec![event(1, pb::EventType::MasterFailover, "")],
                epoch: 8,
            },
        ),
    );
    assert_eq!(
        out,
        vec![
            Command::FlushCache,
            Command::Deliver(Event::MasterFailover),
            Command::RecreateHandles,
            ka(8, 1, Duration::ZERO, LEASE + KEEPALIVE_DEADLINE_MARGIN)
        ]
    );
    // A call that hears of the same epoch again changes nothing.
    assert_eq!(c.handle(t0, Input::NewerEpoch(8)), vec![]);
}

#[tokio::test(start_paused = true)]
async fn a_call_learning_a_newer_epoch_supersedes_the_keepalive() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    assert_eq!(
        c.handle(t0, Input::NewerEpoch(9)),
        vec![
            Command::FlushCache,
            ka(9, 0, Duration::ZERO, LEASE + KEEPALIVE_DEADLINE_MARGIN)
        ]
    );
}

/// Proxy failover (docs/proxy.md): the session's proxy dies, the session goes into
/// jeopardy, the master search finds the next proxy in its order, and that proxy — having
/// claimed the session at the cells — answers the KeepAlive (still at the old epoch) with
/// epoch + 1 and a `MASTER_FAILOVER` numbered 1. The session is safe again, then flushes,
/// delivers the fail-over and recreates its handles, in that order; numbering restarts.
#[tokio::test(start_paused = true)]
async fn a_new_proxy_answering_with_the_next_epoch_and_a_failover_event() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    c.start();
    // The first proxy delivered events 1..=3.
    let events = (1..=3)
        .map(|seq| event(seq, pb::EventType::ContentsModified, "/ls/l/a"))
        .collect();
    let out = c.handle(t0, got_reply(t0, reply(12_000, events)));
    assert_eq!(out.last(), Some(&ka_safe(3)));
    // It dies: the long-poll breaks, the search finds nobody yet.
    assert_eq!(
        c.handle(
            t0 + Duration::from_secs(1),
            Input::KeepAliveFailed(Failure::Transport)
        ),
        vec![Command::FindMaster {
            after: Duration::ZERO
        }]
    );
    let out = c.handle(t0 + Duration::from_secs(2), Input::MasterNotFound);
    assert!(matches!(out[..], [Command::FindMaster { .. }]), "{out:?}");
    // The local lease ends: jeopardy.
    let end = into_jeopardy_after_reply(&mut c, t0, 3).await;
    let out = c.handle(end, Input::KeepAliveFailed(Failure::Transport));
    assert!(matches!(out[..], [Command::FindMaster { .. }]), "{out:?}");
    // The next live proxy in the order answers Locate; the KeepAlive goes there.
    let found = end + Duration::from_secs(1);
    assert_eq!(c.handle(found, Input::MasterFound), vec![ka_jeopardy(3)]);
    // It claimed the session: epoch + 1, and its own numbering, starting at 1.
    let claimed = found + Duration::from_millis(30);
    let out = c.handle(
        claimed,
        got_reply(
            found,
            pb::KeepAliveResponse {
                lease_ms: 12_000,
                events: vec![event(1, pb::EventType::MasterFailover, "")],
                epoch: EPOCH + 1,
            },
        ),
    );
    assert_eq!(
        out,
        concat(&[
            &[Command::FlushCache], // the new epoch
            &SAFE,
            &[
                Command::FlushCache,
                Command::Deliver(Event::MasterFailover),
                Command::RecreateHandles,
                ka(
                    EPOCH + 1,
                    1,
                    Duration::ZERO,
                    LEASE + KEEPALIVE_DEADLINE_MARGIN
                ),
            ],
        ])
    );
    assert_eq!(c.state(), SessionState::Safe);
    assert_eq!(c.epoch(), EPOCH + 1);
    assert_eq!(c.lease_end(), found + local(LEASE));
    // Numbering restarted: 1 is a duplicate now, 2 is new (though below the old 3).
    let out = c.handle(
        claimed,
        got_reply(
            claimed,
            pb::KeepAliveResponse {
                lease_ms: 12_000,
                events: vec![
                    event(1, pb::EventType::MasterFailover, ""),
                    event(2, pb::EventType::ContentsModified, "/ls/l/b"),
                ],
                epoch: EPOCH + 1,
            },
        ),
    );
    assert_eq!(
        out,
        vec![
            Command::Deliver(modified("/ls/l/b")),
            ka(
                EPOCH + 1,
                2,
                Duration::ZERO,
                LEASE + KEEPALIVE_DEADLINE_MARGIN
            ),
        ]
    );
    // A call hearing of the new proxy's epoch changes nothing.
    assert_eq!(c.handle(claimed, Input::NewerEpoch(EPOCH + 1)), vec![]);
}

/// Like [`into_jeopardy`], for a session whose last reply (sent at `t0`) left `ack_seq`
/// to acknowledge.
async fn into_jeopardy_after_reply(c: &mut SessionCore, t0: Instant, ack_seq: u64) -> Instant {
    let end = t0 + local(LEASE);
    advance(end - Instant::now()).await;
    let out = c.handle(Instant::now(), Input::Tick);
    assert_eq!(out, concat(&[&JEOPARDY, &[ka_jeopardy(ack_seq)]]));
    end
}

#[tokio::test(start_paused = true)]
async fn a_late_reply_from_the_old_master_counts_for_the_lease_only() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    c.handle(t0, Input::NewerEpoch(8));
    let out = c.handle(
        t0 + Duration::from_secs(1),
        got_reply(
            t0,
            reply(
                12_000,
                vec![event(3, pb::EventType::ContentsModified, "/ls/l/a")],
            ),
        ),
    );
    assert_eq!(
        out,
        vec![ka(8, 0, Duration::ZERO, LEASE + KEEPALIVE_DEADLINE_MARGIN)]
    );
}

#[tokio::test(start_paused = true)]
async fn transport_failures_look_for_the_master_with_capped_backoff() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    assert_eq!(
        c.handle(t0, Input::KeepAliveFailed(Failure::Transport)),
        vec![Command::FindMaster {
            after: Duration::ZERO
        }]
    );
    let mut last = Duration::ZERO;
    for i in 0..10 {
        let out = c.handle(t0, Input::MasterNotFound);
        let [Command::FindMaster { after }] = out.as_slice() else {
            panic!("attempt {i}: {out:?}");
        };
        assert!(*after >= BACKOFF_BASE, "{after:?}");
        assert!(*after <= BACKOFF_MAX + BACKOFF_MAX / 2, "{after:?}");
        if i < 4 {
            assert!(*after > last, "attempt {i}: {after:?} <= {last:?}");
        }
        last = *after;
    }
    // Found: a KeepAlive at once. A reply resets the backoff.
    assert_eq!(c.handle(t0, Input::MasterFound), vec![ka_safe(0)]);
    c.handle(t0, got_reply(t0, reply(12_000, vec![])));
    assert_eq!(
        c.handle(t0, Input::KeepAliveFailed(Failure::Transport)),
        vec![Command::FindMaster {
            after: Duration::ZERO
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn not_master_follows_or_looks_and_refusals_back_off() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    // NOT_MASTER naming the master: the I/O layer switched; retry at once.
    assert_eq!(
        c.handle(t0, Input::KeepAliveFailed(Failure::Redirected)),
        vec![ka_safe(0)]
    );
    // A second redirect in a row backs off.
    assert!(matches!(
        c.handle(t0, Input::KeepAliveFailed(Failure::Redirected)).as_slice(),
        [Command::SendKeepAlive { after, .. }] if *after > Duration::ZERO
    ));
    // NOT_MASTER from a replica that does not know: look for the master.
    assert!(matches!(
        c.handle(t0, Input::KeepAliveFailed(Failure::MasterUnknown))
            .as_slice(),
        [Command::FindMaster { .. }]
    ));
    assert!(matches!(
        c.handle(t0, Input::KeepAliveFailed(Failure::Refused)).as_slice(),
        [Command::SendKeepAlive { after, .. }] if *after >= BACKOFF_BASE
    ));
}

#[tokio::test(start_paused = true)]
async fn local_lease_only_moves_forward_and_absurd_leases_are_clamped() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    let end = c.lease_end();
    c.handle(
        t0 + Duration::from_secs(1),
        got_reply(t0 + Duration::from_secs(1), reply(1000, vec![])),
    );
    assert_eq!(c.lease_end(), end);
    c.handle(t0, got_reply(t0, reply(u64::MAX, vec![])));
    assert!(c.lease_remaining(t0) <= MAX_LEASE);
    assert_eq!(
        c.handle(t0, Input::KeepAliveFailed(Failure::Refused))
            .first()
            .map(|cmd| matches!(cmd, Command::SendKeepAlive { deadline, .. } if *deadline == MAX_LEASE + KEEPALIVE_DEADLINE_MARGIN)),
        Some(true)
    );
}

#[test]
fn a_slot_moved_event_asks_the_router_to_follow_the_handle_and_is_not_delivered() {
    let t0 = Instant::now();
    let mut c = core_at(t0);
    c.start();
    let mut moved = event(1, pb::EventType::SlotMoved, "/ls/l/a");
    moved.cell = "c2".into();
    let out = c.handle(
        t0 + Duration::from_secs(1),
        got_reply(t0, reply(12_000, vec![moved])),
    );
    assert_eq!(
        out,
        vec![
            Command::Moved {
                handle: vec![1, 2],
                path: "/ls/l/a".into(),
                cell: "c2".into(),
            },
            ka_safe(1),
        ]
    );
}
