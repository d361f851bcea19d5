//! Cache invalidation: writes wait for cachers to acknowledge (at most one lease), and
//! cacheable absence.

use super::*;

#[test]
fn write_waits_for_a_caching_session_to_acknowledge() {
    let mut t = T::new();
    let (a, b, c) = (t.session(0.0), t.session(0.0), t.session(0.0));
    let ow = t.file(&a, "/ls/local/f", b"v1", 0.0);
    let ob = t.open_ok(&b, "/ls/local/f", intent::READ, 0, None, 0.0);
    let (_, _, cacheable) = t.m.get_contents(&b, &ob.handle, t.at(0.5)).unwrap();
    assert!(cacheable);
    // b has a KeepAlive outstanding.
    let ka = waiter(t.m.keepalive(&b, 0, t.at(1.0)));
    t.wakes();
    // a's write must wait; b's KeepAlive returns at once with the invalidation.
    let w = waiter(t.m.set_contents(&a, &ow.handle, b"v2", None, t.at(2.0)));
    let wakes = t.wakes();
    assert_eq!(wakes.len(), 1);
    let (id, Wake::KeepAlive(Ok(reply))) = &wakes[0] else {
        panic!("{wakes:?}")
    };
    assert_eq!(*id, ka);
    assert_eq!(reply.events.len(), 1);
    assert_eq!(reply.events[0].kind, EventKind::Invalidate);
    assert_eq!(reply.events[0].path, "/ls/local/f");
    // Rule (b): the reply that delivers the invalidation extends b's lease to a full lease
    // from now (t=2), reported from when the KeepAlive arrived (t=1).
    assert_eq!(reply.lease, LEASE + secs(1.0));
    // Meanwhile the node is uncachable and still shows the old value (the write is not acknowledged).
    assert!(t.m.is_uncachable("/ls/local/f"));
    let oc = t.open_ok(&c, "/ls/local/f", intent::READ, 0, None, 2.5);
    assert!(!oc.cacheable);
    let (data, _, cacheable) = t.m.get_contents(&c, &oc.handle, t.at(2.5)).unwrap();
    assert_eq!((data.as_slice(), cacheable), (&b"v1"[..], false));
    // b acknowledges in its next KeepAlive: the write is released.
    let seq = reply.events[0].seq;
    let _ = t.m.keepalive(&b, seq, t.at(3.0)).unwrap();
    let wakes = t.wakes();
    assert!(
        wakes
            .iter()
            .any(|(id, w2)| *id == w && matches!(w2, Wake::Retry)),
        "{wakes:?}"
    );
    let s = done(t.m.set_contents(&a, &ow.handle, b"v2", None, t.at(3.0)));
    assert_eq!(s.meta.content_generation, 1);
    assert!(!t.m.is_uncachable("/ls/local/f"));
}

#[test]
fn a_silent_caching_session_delays_a_write_by_at_most_its_lease() {
    let mut t = T::new();
    let b = t.session(0.0);
    let ob = t.file(&b, "/ls/local/f", b"v1", 0.0);
    t.m.get_contents(&b, &ob.handle, t.at(0.0)).unwrap();
    let a = t.session(19.0);
    let ow = t.open_ok(&a, "/ls/local/f", intent::WRITE, 0, None, 19.0);
    // b keeps its lease fresh up to t=5 and then falls silent.
    let _ = t.m.keepalive(&b, 0, t.at(5.0)).unwrap();
    t.m.tick(t.at(12.0 - 1.0 + 0.01)); // the held KeepAlive is answered ~1 s before the end
    assert_eq!(t.wakes().len(), 1);
    // b's lease now ends at t=23.01. The write at t=20 waits...
    let w = waiter(t.m.set_contents(&a, &ow.handle, b"v2", None, t.at(20.0)));
    let mut released_at = None;
    let mut now = 20.0;
    while now < 20.0 + 12.0 + 1.0 {
        now += 0.05;
        t.m.tick(t.at(now));
        if t.wakes()
            .iter()
            .any(|(id, x)| *id == w && matches!(x, Wake::Retry))
        {
            released_at = Some(now);
            break;
        }
    }
    let released_at = released_at.expect("the write was never released");
    // ...until b's lease has expired, never longer than one lease.
    assert!(
        released_at - 20.0 <= 12.0 + 0.1,
        "released after {}",
        released_at - 20.0
    );
    let e = t.m.keepalive(&b, 0, t.at(released_at)).unwrap_err();
    assert_eq!(e.code, ErrorCode::SessionExpired);
    done(t.m.set_contents(&a, &ow.handle, b"v2", None, t.at(released_at)));
}

#[test]
fn absence_is_cacheable_only_when_the_master_will_invalidate_it() {
    let mut t = T::new();
    let (a, b) = (t.session(0.0), t.session(0.0));
    let e = t
        .open(&b, "/ls/local/n", intent::READ, 0, None, 0.0)
        .unwrap_err();
    assert_eq!((e.code, e.cacheable), (ErrorCode::NotFound, true));
    // a's create of the path waits for b to drop its cached absence; meanwhile another
    // reader's NOT_FOUND must not be cached (nothing would invalidate it).
    let w = waiter(t.open(&a, "/ls/local/n", intent::WRITE, 0, file(b""), 1.0));
    let c = t.session(1.0);
    let e = t
        .open(&c, "/ls/local/n", intent::READ, 0, None, 1.0)
        .unwrap_err();
    assert_eq!((e.code, e.cacheable), (ErrorCode::NotFound, false));
    let last = t.m.sessions[&b.session].lease.last_seq();
    t.m.keepalive(&b, last, t.at(1.5)).unwrap();
    assert!(t
        .wakes()
        .iter()
        .any(|(id, x)| *id == w && matches!(x, Wake::Retry)));
}
