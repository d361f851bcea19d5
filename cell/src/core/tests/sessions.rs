//! Leases and KeepAlive: held replies, the local lease never lapsing, rule (b), and
//! what a session's expiry releases.

use super::*;

#[test]
fn a_session_that_gets_invalidations_but_never_acks_expires_within_one_lease() {
    let mut t = T::new();
    let (a, b) = (t.session(0.0), t.session(0.0));
    let ow = t.file(&a, "/ls/local/f", b"v1", 0.0);
    let ob = t.open_ok(&b, "/ls/local/f", intent::READ, 0, None, 0.0);
    t.m.get_contents(&b, &ob.handle, t.at(0.0)).unwrap();
    waiter(t.m.keepalive(&b, 0, t.at(1.0)));
    let w = waiter(t.m.set_contents(&a, &ow.handle, b"v2", None, t.at(2.0)));
    t.wakes();
    // b keeps sending KeepAlives but never acknowledges: no further extension.
    for s in [3.0, 6.0, 9.0, 12.0] {
        let r = t.m.keepalive(&b, 0, t.at(s)).unwrap();
        let Reply::Done(reply) = r else {
            panic!("unacked events must be re-sent at once")
        };
        assert_eq!(reply.events.len(), 1);
        assert!(
            reply.lease <= secs(14.0 - s),
            "lease {:?} at {s}",
            reply.lease
        );
    }
    t.m.tick(t.at(14.01));
    assert!(t
        .wakes()
        .iter()
        .any(|(id, x)| *id == w && matches!(x, Wake::Retry)));
}

#[test]
fn keepalive_is_held_until_shortly_before_the_lease_ends_and_superseded_by_a_new_one() {
    let mut t = T::new();
    let a = t.session(0.0);
    let w1 = waiter(t.m.keepalive(&a, 0, t.at(0.0)));
    t.m.tick(t.at(10.0));
    assert!(t.wakes().is_empty(), "answered too early");
    // A second KeepAlive supersedes the first, which returns at once.
    let w2 = waiter(t.m.keepalive(&a, 0, t.at(10.5)));
    let wakes = t.wakes();
    assert!(
        matches!(&wakes[..], [(id, Wake::KeepAlive(Ok(_)))] if *id == w1),
        "{wakes:?}"
    );
    // The superseded reply extended the lease to 10.5 + 12 = 22.5. The held one is answered
    // between 1.1 s and 1 s before that, and extends it again.
    let mut answered = None;
    let mut now = 10.5;
    while now < 23.0 {
        now += 0.01;
        t.m.tick(t.at(now));
        if let Some((_, Wake::KeepAlive(Ok(r)))) = t.wakes().into_iter().find(|(id, _)| *id == w2) {
            answered = Some((now, r));
            break;
        }
    }
    let (at, reply) = answered.expect("never answered");
    assert!((21.39..=21.51).contains(&at), "answered at {at}");
    // A full lease from the answer, reported from when the KeepAlive arrived (t=10.5).
    assert_eq!(reply.lease, secs(at + 12.0 - 10.5));
}

/// A KeepAlive marked `jeopardy` is answered at once with a full lease, even when the
/// lease here runs far beyond the client's: the reply that extended it was lost on the way
/// (simulation seed 623, docs/reliability.md), and a KeepAlive held until near that end
/// would outlast the client's short jeopardy deadline again and again.
#[test]
fn a_keepalive_in_jeopardy_is_answered_at_once_although_the_lease_runs_on() {
    let mut t = T::new();
    let a = t.session(0.0);
    let w1 = waiter(t.m.keepalive(&a, 0, t.at(0.0)));
    // Answered near the lease's end; the master's lease now runs to about 23 s. The
    // client never sees this reply.
    let mut now = 0.0;
    while !t.wakes().iter().any(|(id, _)| *id == w1) {
        now += 0.05;
        assert!(now < 12.0, "the first KeepAlive was never answered");
        t.m.tick(t.at(now));
    }
    // Its local lease ended (≈ 11.9 s): it sends a KeepAlive in jeopardy 0.2 s later.
    let asked = now + 0.2;
    let reply = done(t.m.keepalive_holding_back(&a, 0, secs(0.0), true, t.at(asked)));
    assert_eq!(reply.lease, secs(12.0), "a full lease from when it arrived");
    // The same KeepAlive without the mark is held, as before.
    let held = t.m.keepalive(&a, 0, t.at(asked + 0.1));
    assert!(matches!(held, Ok(Reply::Wait(_))), "{held:?}");
}

/// A client following docs/design.md §6 (local lease = send time + granted / (1 + ρ), next
/// KeepAlive sent on each reply) never sees its local lease lapse while the master holds
/// each KeepAlive until ~1 s before the lease ends.
#[test]
fn the_local_lease_never_lapses_between_held_keepalives() {
    let mut t = T::new();
    let a = t.session(0.0);
    let rho = 0.01;
    let mut sent = 0.0;
    let mut w = waiter(t.m.keepalive(&a, 0, t.at(sent)));
    let mut local_end = 12.0 / (1.0 + rho);
    let mut now = 0.0;
    let mut replies = 0;
    while now < 120.0 {
        now += 0.01;
        t.m.tick(t.at(now));
        for (id, wake) in t.wakes() {
            if id != w {
                continue;
            }
            let Wake::KeepAlive(Ok(r)) = wake else {
                panic!("{wake:?}")
            };
            assert!(
                now <= local_end,
                "reply at {now} came after the local lease ended at {local_end}"
            );
            local_end = sent + r.lease.as_secs_f64() / (1.0 + rho);
            replies += 1;
            sent = now;
            w = waiter(t.m.keepalive(&a, 0, t.at(sent)));
        }
        assert!(
            now <= local_end + 0.011,
            "local lease lapsed at {local_end} (now {now})"
        );
    }
    assert!(replies >= 9, "{replies} replies in 120 s");
}

#[test]
fn session_expiry_deletes_its_ephemeral_files_and_releases_locks() {
    let mut t = T::new();
    let (a, b) = (t.session(0.0), t.session(0.0));
    let eph = ephemeral();
    let ha = t.open_ok(&a, "/ls/local/e", intent::ALL, 0, eph, 0.0);
    t.m.try_acquire(&a, &ha.handle, LockMode::Exclusive, t.at(0.0))
        .unwrap();
    let _ = t.m.keepalive(&b, 0, t.at(11.0));
    t.m.tick(t.at(12.1));
    assert_eq!(
        t.open(&b, "/ls/local/e", 0, 0, None, 12.2)
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    assert_eq!(
        t.m.keepalive(&a, 0, t.at(12.2)).unwrap_err().code,
        ErrorCode::SessionExpired
    );
    assert_eq!(t.m.status().held_locks, 0);
}
