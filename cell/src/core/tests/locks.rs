//! Locks: conflicts, shared and exclusive modes, acquire timeouts, lock-delay and
//! sequencers.

use super::*;

#[test]
fn conflicting_lock_request_is_told_to_the_holder() {
    let mut t = T::new();
    let (a, b) = (t.session(0.0), t.session(0.0));
    t.file(&a, "/ls/local/l", b"", 0.0);
    let ha = t.open_ok(
        &a,
        "/ls/local/l",
        intent::WRITE,
        mask::CONFLICTING_LOCK,
        None,
        0.0,
    );
    let hb = t.open_ok(&b, "/ls/local/l", intent::WRITE, 0, None, 0.0);
    t.m.try_acquire(&a, &ha.handle, LockMode::Exclusive, t.at(0.0))
        .unwrap();
    let w = waiter(t.m.acquire(&b, &hb.handle, LockMode::Shared, None, t.at(1.0)));
    let Reply::Done(r) = t.m.keepalive(&a, 0, t.at(1.0)).unwrap() else {
        panic!()
    };
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].kind, EventKind::ConflictingLock);
    assert_eq!(r.events[0].handle, ha.handle);
    // Releasing grants the waiter.
    t.m.release(&a, &ha.handle, t.at(2.0)).unwrap();
    let wakes = t.wakes();
    assert!(
        wakes
            .iter()
            .any(|(id, x)| *id == w
                && matches!(x, Wake::Acquire(Ok(s)) if s.mode == LockMode::Shared))
    );
}

#[test]
fn shared_and_exclusive_locks_and_acquire_timeout() {
    let mut t = T::new();
    let (a, b, c) = (t.session(0.0), t.session(0.0), t.session(0.0));
    t.file(&a, "/ls/local/l", b"", 0.0);
    let ha = t.open_ok(&a, "/ls/local/l", intent::WRITE, 0, None, 0.0);
    let hb = t.open_ok(&b, "/ls/local/l", intent::WRITE, 0, None, 0.0);
    let hc = t.open_ok(&c, "/ls/local/l", intent::WRITE, 0, None, 0.0);
    t.m.try_acquire(&a, &ha.handle, LockMode::Shared, t.at(0.0))
        .unwrap();
    t.m.try_acquire(&b, &hb.handle, LockMode::Shared, t.at(0.0))
        .unwrap();
    assert_eq!(
        t.m.try_acquire(&c, &hc.handle, LockMode::Exclusive, t.at(0.0))
            .unwrap_err()
            .code,
        ErrorCode::LockHeld
    );
    let w = waiter(t.m.acquire(
        &c,
        &hc.handle,
        LockMode::Exclusive,
        Some(secs(5.0)),
        t.at(1.0),
    ));
    t.m.tick(t.at(5.9));
    assert!(t.wakes().is_empty());
    t.m.tick(t.at(6.0));
    let wakes = t.wakes();
    assert!(
        matches!(&wakes[..], [(id, Wake::Acquire(Err(e)))] if *id == w && e.code == ErrorCode::LockHeld),
        "{wakes:?}"
    );
    // Exclusive granted once both shared holders release.
    let w = waiter(t.m.acquire(&c, &hc.handle, LockMode::Exclusive, None, t.at(7.0)));
    t.m.release(&a, &ha.handle, t.at(7.0)).unwrap();
    assert!(t.wakes().is_empty());
    t.m.release(&b, &hb.handle, t.at(7.0)).unwrap();
    assert!(t
        .wakes()
        .iter()
        .any(|(id, x)| *id == w && matches!(x, Wake::Acquire(Ok(_)))));
}

#[test]
fn lock_delay_after_the_holders_session_dies_but_not_after_a_clean_release() {
    let mut t = T::new();
    let (a, b) = (t.session(0.0), t.session(0.0));
    t.file(&a, "/ls/local/l", b"", 0.0);
    let args = OpenArgs {
        path: "/ls/local/l".into(),
        intent: intent::WRITE,
        events: 0,
        lock_delay: secs(10.0),
        create: None,
        read: false,
        target: Target::Node,
    };
    let ha = done(t.m.open(&a, &args, t.at(0.0)));
    let hb = t.open_ok(&b, "/ls/local/l", intent::WRITE, 0, None, 0.0);
    t.m.try_acquire(&a, &ha.handle, LockMode::Exclusive, t.at(0.0))
        .unwrap();
    // Keep b alive; let a's lease (ending at t=12) run out.
    let _ = t.m.keepalive(&b, 0, t.at(11.0));
    t.m.tick(t.at(12.05));
    t.wakes();
    assert_eq!(t.m.status().sessions, 1);
    let e =
        t.m.try_acquire(&b, &hb.handle, LockMode::Exclusive, t.at(12.1))
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::LockHeld);
    assert!(e.message.contains("lock-delay"), "{}", e.message);
    let w = waiter(t.m.acquire(&b, &hb.handle, LockMode::Exclusive, None, t.at(12.1)));
    t.m.tick(t.at(22.0));
    assert!(
        !t.wakes().iter().any(|(id, _)| *id == w),
        "granted inside the lock-delay"
    );
    t.m.tick(t.at(22.06));
    assert!(t
        .wakes()
        .iter()
        .any(|(id, x)| *id == w && matches!(x, Wake::Acquire(Ok(_)))));
    // A clean release (or close) imposes no delay.
    t.m.release(&b, &hb.handle, t.at(23.0)).unwrap();
    let c = t.session(23.0);
    let hc = t.open_ok(&c, "/ls/local/l", intent::WRITE, 0, None, 23.0);
    t.m.try_acquire(&c, &hc.handle, LockMode::Exclusive, t.at(23.0))
        .unwrap();
}

#[test]
fn sequencer_goes_stale_after_reacquisition_and_fences_a_handle() {
    let mut t = T::new();
    let (a, b) = (t.session(0.0), t.session(0.0));
    t.file(&a, "/ls/local/l", b"", 0.0);
    let ha = t.open_ok(&a, "/ls/local/l", intent::WRITE, 0, None, 0.0);
    let hb = t.open_ok(&b, "/ls/local/l", intent::ALL, 0, None, 0.0);
    let s1 =
        t.m.try_acquire(&a, &ha.handle, LockMode::Exclusive, t.at(0.0))
            .unwrap();
    assert_eq!(t.m.get_sequencer(&a, &ha.handle, t.at(0.0)).unwrap(), s1);
    assert!(t.m.check_sequencer(&b, &s1, t.at(0.0)).unwrap());
    t.m.set_sequencer(&b, &hb.handle, s1.clone(), t.at(0.0))
        .unwrap();
    t.m.get_stat(&b, &hb.handle, t.at(0.0)).unwrap();
    t.m.release(&a, &ha.handle, t.at(1.0)).unwrap();
    assert!(!t.m.check_sequencer(&b, &s1, t.at(1.0)).unwrap());
    let s2 =
        t.m.try_acquire(&a, &ha.handle, LockMode::Exclusive, t.at(1.0))
            .unwrap();
    assert_eq!(s2.lock_generation, s1.lock_generation + 1);
    assert!(!t.m.check_sequencer(&b, &s1, t.at(1.0)).unwrap());
    assert!(t.m.check_sequencer(&b, &s2, t.at(1.0)).unwrap());
    // b's handle carries the stale sequencer: its calls now fail.
    let e = t.m.get_stat(&b, &hb.handle, t.at(1.0)).unwrap_err();
    assert_eq!(e.code, ErrorCode::GenerationMismatch);
}
