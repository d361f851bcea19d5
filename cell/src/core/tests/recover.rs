//! Takeover: a fresh store, a restart, the failover procedure (docs/design.md §9) and the leases
//! restored sessions get.

use super::*;

#[test]
fn fresh_store_has_root_and_acl_dir_and_epoch_one() {
    let t0 = Instant::now();
    let mut m =
        Master::recover(CoreConfig::new("c0", "local"), Snapshot::default(), t0, 1).unwrap();
    assert_eq!(m.epoch(), 1);
    let out = m.take_output();
    let nodes: Vec<_> = out
        .mutations
        .iter()
        .filter_map(|x| match x {
            Mutation::PutNode(n) => Some(n.path.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(nodes, vec!["/ls/local", "/ls/local/acl"]);
}

/// Runs the old master, then recovers a new one from everything it persisted.
#[test]
fn new_master_runs_the_failover_procedure() {
    let t0 = Instant::now();
    let at = |s: f64| t0 + secs(s);
    let mut cfg = CoreConfig::new("c0", "local");
    cfg.ephemeral_cleanup = secs(60.0);
    let mut m = Master::recover(cfg.clone(), Snapshot::default(), t0, 7).unwrap();
    let a = ctx_of(&m.create_session("a", t0).unwrap());
    let b = ctx_of(&m.create_session("b", t0).unwrap());
    let fa = done(m.open(
        &a,
        &open_args("/ls/local/f", intent::ALL, 0.0, file(b"data")),
        t0,
    ));
    m.try_acquire(&a, &fa.handle, LockMode::Exclusive, t0)
        .unwrap();
    let ea = done(m.open(
        &a,
        &open_args("/ls/local/ea", intent::ALL, 0.0, ephemeral()),
        t0,
    ));
    done(m.open(
        &b,
        &open_args("/ls/local/g", intent::ALL, 0.0, file(b"")),
        t0,
    ));
    let gb = done(m.open(&b, &open_args("/ls/local/g", intent::WRITE, 5.0, None), t0));
    m.try_acquire(&b, &gb.handle, LockMode::Shared, t0).unwrap();
    done(m.open(
        &b,
        &open_args("/ls/local/eb", intent::ALL, 0.0, ephemeral()),
        t0,
    ));
    let snap = snapshot_of(m.take_output().mutations);

    // The new master: epoch 2, sessions and locks back, everything but KeepAlive refused.
    let mut m2 = Master::recover(cfg, snap, t0, 8).unwrap();
    assert_eq!(m2.epoch(), 2);
    let st = m2.status();
    assert_eq!((st.sessions, st.held_locks), (2, 2));
    assert!(m2.recovering());
    let a2 = Ctx {
        epoch: 2,
        ..a.clone()
    };
    assert_eq!(
        m2.get_contents(&a, &fa.handle, t0).unwrap_err().code,
        ErrorCode::StaleEpoch
    );
    assert_eq!(
        m2.get_contents(&a2, &fa.handle, t0).unwrap_err().code,
        ErrorCode::FailoverInProgress
    );
    assert_eq!(
        m2.create_session("c", t0).unwrap_err().code,
        ErrorCode::FailoverInProgress
    );
    // a's KeepAlive brings the fail-over event at once; a acknowledges it.
    let Reply::Done(r) = m2.keepalive(&a2, 0, at(0.5)).unwrap() else {
        panic!("not at once")
    };
    assert_eq!(
        r.events.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![EventKind::MasterFailover]
    );
    let _ = m2.keepalive(&a2, r.events[0].seq, at(0.6)).unwrap();
    assert!(m2.recovering(), "b has not acknowledged yet");
    // b never comes back: once its (restored, full) lease runs out the master serves all.
    m2.tick(at(11.9));
    assert!(m2.recovering());
    let _ = m2.keepalive(&a2, r.events[0].seq, at(11.0));
    m2.tick(at(12.1));
    assert!(!m2.recovering());
    // a's old handles are recreated on use; its lock is still its own.
    let (data, _, _) = m2.get_contents(&a2, &fa.handle, at(12.2)).unwrap();
    assert_eq!(data, b"data");
    m2.get_stat(&a2, &ea.handle, at(12.2)).unwrap();
    let c = ctx_of(&m2.create_session("c", at(12.2)).unwrap());
    let fc = done(m2.open(
        &c,
        &open_args("/ls/local/f", intent::WRITE, 0.0, None),
        at(12.2),
    ));
    assert_eq!(
        m2.try_acquire(&c, &fc.handle, LockMode::Exclusive, at(12.2))
            .unwrap_err()
            .code,
        ErrorCode::LockHeld
    );
    // b's shared lock was released when b expired, but only after its lock-delay (5 s).
    let gc = done(m2.open(
        &c,
        &open_args("/ls/local/g", intent::WRITE, 0.0, None),
        at(12.2),
    ));
    let e = m2
        .try_acquire(&c, &gc.handle, LockMode::Exclusive, at(12.3))
        .unwrap_err();
    assert!(e.message.contains("lock-delay"), "{}", e.message);
    m2.tick(at(17.2));
    m2.try_acquire(&c, &gc.handle, LockMode::Exclusive, at(17.2))
        .unwrap();
    // Step 9: after the interval, b's ephemeral file (never reopened) goes; a's stays.
    let mut now = 17.2;
    let mut step = 0;
    while now < 61.0 {
        now += 0.5;
        step += 1;
        if step % 10 == 0 {
            let _ = m2.keepalive(&a2, 0, at(now));
            let _ = m2.keepalive(&c, 0, at(now));
        }
        m2.tick(at(now));
    }
    assert_eq!(
        m2.open(&c, &open_args("/ls/local/eb", 0, 0.0, None), at(now))
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    done(m2.open(&c, &open_args("/ls/local/ea", 0, 0.0, None), at(now)));
    // A recreated handle, once closed, is not recreated by a replayed request.
    m2.close(&a2, &fa.handle, at(now)).unwrap();
    assert_eq!(
        m2.get_stat(&a2, &fa.handle, at(now)).unwrap_err().code,
        ErrorCode::HandleInvalid
    );
    m2.close(&a2, &fa.handle, at(now)).unwrap();
    assert_eq!(
        m2.get_contents(&a2, &fa.handle, at(now)).unwrap_err().code,
        ErrorCode::HandleInvalid
    );
    // Its lock went with it (a clean close: no lock-delay).
    m2.try_acquire(&c, &fc.handle, LockMode::Exclusive, at(now))
        .unwrap();
}

#[test]
fn a_fresh_store_needs_no_recovery_and_a_restart_without_sessions_serves_at_once() {
    let t0 = Instant::now();
    let mut m =
        Master::recover(CoreConfig::new("c0", "local"), Snapshot::default(), t0, 1).unwrap();
    assert!(!m.recovering());
    let snap = snapshot_of(m.take_output().mutations);
    let m2 = Master::recover(CoreConfig::new("c0", "local"), snap, t0, 2).unwrap();
    assert_eq!(m2.epoch(), 2);
    assert!(!m2.recovering());
}

#[test]
fn the_longest_lease_ever_granted_is_what_restored_sessions_get() {
    let t0 = Instant::now();
    let mut long = CoreConfig::new("c0", "local");
    long.lease = secs(30.0);
    let mut m = Master::recover(long, Snapshot::default(), t0, 1).unwrap();
    m.create_session("a", t0).unwrap();
    let snap = snapshot_of(m.take_output().mutations);
    // Restarted with a shorter configured lease: sessions still get 30 s.
    let mut m2 = Master::recover(CoreConfig::new("c0", "local"), snap, t0, 2).unwrap();
    m2.tick(t0 + secs(29.0));
    assert_eq!(m2.status().sessions, 1);
    m2.tick(t0 + secs(30.1));
    assert_eq!(m2.status().sessions, 0);
}

/// A store whose meta record holds the largest epoch (only a corrupt one can) is refused
/// with an error naming the cell and the fix, not an overflow (found by the fuzz target
/// `store_records`, docs/fuzzing.md).
#[test]
fn a_stored_epoch_at_its_maximum_is_refused_not_overflowed() {
    let t0 = Instant::now();
    let mut m =
        Master::recover(CoreConfig::new("c0", "local"), Snapshot::default(), t0, 1).unwrap();
    let mut snap = snapshot_of(m.take_output().mutations);
    snap.meta.as_mut().expect("a meta record").epoch = u64::MAX;
    let err = Master::recover(CoreConfig::new("c0", "local"), snap.clone(), t0, 1)
        .err()
        .expect("refused");
    assert_eq!(err.code, ErrorCode::Internal);
    assert!(err.message.contains("largest there is"), "{}", err.message);
    // One below the largest still recovers, to the largest.
    snap.meta.as_mut().expect("a meta record").epoch = u64::MAX - 1;
    let m = Master::recover(CoreConfig::new("c0", "local"), snap, t0, 1).unwrap();
    assert_eq!(m.epoch(), u64::MAX);
}
