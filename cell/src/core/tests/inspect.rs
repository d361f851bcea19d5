//! The read-only session and lock tables (`Master::session_table`, `/debug/sessions`).

use super::*;

#[test]
fn the_session_table_shows_principals_leases_handles_holders_and_waiters() {
    let mut t = T::new();
    let a = t.session(0.0);
    let b = ctx_of(&t.m.create_session("bob", t.at(0.0)).unwrap());
    t.file(&a, "/ls/local/l", b"", 0.0);
    let ha = t.open_ok(&a, "/ls/local/l", intent::WRITE, 0, None, 0.0);
    let hb = t.open_ok(&b, "/ls/local/l", intent::WRITE, 0, None, 0.0);
    let before = t.m.session_table(t.at(0.0));
    assert!(before.locks.is_empty(), "no lock held or waited for yet");
    t.m.try_acquire(&a, &ha.handle, LockMode::Exclusive, t.at(0.0))
        .unwrap();
    let _w = waiter(t.m.acquire(&b, &hb.handle, LockMode::Shared, None, t.at(1.0)));

    let table = t.m.session_table(t.at(1.0));
    assert_eq!(
        (table.cell.as_str(), table.epoch),
        ("c0", t.m.status().epoch)
    );
    let principals: Vec<&str> = table
        .sessions
        .iter()
        .map(|s| s.principal.as_str())
        .collect();
    assert_eq!(principals, ["alice", "bob"], "sorted by principal");
    let alice = &table.sessions[0];
    assert_eq!(alice.id.len(), 32);
    assert_eq!(
        (alice.kind, alice.proxy.as_str(), alice.orphan),
        ("client", "", false)
    );
    assert_eq!(
        alice.lease_remaining_ms,
        (LEASE - secs(1.0)).as_millis() as u64
    );
    // Two handles on the node (the one `file` created it through, and the one it locks
    // through): the path once per handle.
    assert_eq!(alice.handles, ["/ls/local/l", "/ls/local/l"]);
    assert_eq!(
        alice.locks,
        [HeldLockView {
            path: "/ls/local/l".into(),
            mode: "exclusive"
        }]
    );
    assert!(table.sessions[1].locks.is_empty());
    let [lock] = &table.locks[..] else {
        panic!("one lock: {:?}", table.locks)
    };
    assert_eq!(lock.path, "/ls/local/l");
    assert_eq!(lock.lock_generation, 1);
    assert_eq!(lock.holders.len(), 1);
    assert_eq!(
        (lock.holders[0].principal.as_str(), lock.holders[0].mode),
        ("alice", "exclusive")
    );
    assert_eq!(lock.holders[0].session, alice.id);
    assert_eq!(
        (lock.waiters[0].principal.as_str(), lock.waiters[0].mode),
        ("bob", "shared")
    );
    // Past the lease end a lease shows 0 left, not a wrapped-around number.
    assert_eq!(
        t.m.session_table(t.at(100.0)).sessions[0].lease_remaining_ms,
        0
    );
}
