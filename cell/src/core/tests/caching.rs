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

/// A reply that delivered an invalidation was lost on the way (simulation seed 2929,
/// docs/reliability.md): the cacher's next KeepAlive, in jeopardy, acknowledges nothing.
/// Its lease grows to a full one although the invalidation is unacknowledged (rule (b)
/// would otherwise let it run out while the reply repeating the event is on its way), and
/// the write waiting for it waits no longer than the lease it had then: not released at
/// once, since a jeopardy KeepAlive may be an old one delivered late.
#[test]
fn a_keepalive_in_jeopardy_renews_the_lease_and_bounds_the_writes_waiting_on_it() {
    let mut t = T::new();
    let (a, b) = (t.session(0.0), t.session(0.0));
    let ow = t.file(&a, "/ls/local/f", b"v1", 0.0);
    let ob = t.open_ok(&b, "/ls/local/f", intent::READ, 0, None, 0.0);
    let (_, _, cacheable) = t.m.get_contents(&b, &ob.handle, t.at(0.5)).unwrap();
    assert!(cacheable);
    waiter(t.m.keepalive(&b, 0, t.at(1.0)));
    t.wakes();
    // a keeps its own session alive throughout.
    waiter(t.m.keepalive(&a, 0, t.at(1.0)));
    // The write waits; the reply carrying the invalidation (lease to t=14) is lost.
    let w = waiter(t.m.set_contents(&a, &ow.handle, b"v2", None, t.at(2.0)));
    assert_eq!(
        t.wakes().len(),
        1,
        "the held KeepAlive carried the invalidation"
    );
    // Without the mark, a KeepAlive acknowledging nothing releases nothing, and the lease
    // is not extended: the reply repeats the event with what is left (t=3 → 14).
    let r = done(t.m.keepalive(&b, 0, t.at(3.0)));
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.lease, secs(11.0));
    // In jeopardy: a full lease, the event still repeated.
    let r = done(t.m.keepalive_holding_back(&b, 0, secs(0.0), true, t.at(3.5)));
    assert_eq!(r.events.len(), 1, "the event is delivered again");
    assert_eq!(r.lease, LEASE);
    // The write still waits, but only until t=14, the end of the lease b had.
    let at = released(&mut t, w, 3.5, 16.0);
    assert!((13.99..=14.06).contains(&at), "released at {at}");
    done(t.m.set_contents(&a, &ow.handle, b"v2", None, t.at(at)));
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
    let released_at = released(&mut t, w, 20.0, 20.0 + 12.0 + 1.0);
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

/// A proxy session `p` that caches `/ls/local/f` for its client 1.
fn proxy_caching(t: &mut T) -> Ctx {
    let a = t.session(0.0);
    t.file(&a, "/ls/local/f", b"v1", 0.0);
    // Only the proxy caches it.
    t.m.close_session(&a, false, t.at(0.0)).unwrap();
    let p = t.proxy(0.0);
    let c1 = for_client(&p, 1, "carol");
    let oc = t.open_ok(&c1, "/ls/local/f", intent::READ, 0, None, 0.0);
    let (_, _, cacheable) = t.m.get_contents(&c1, &oc.handle, t.at(0.0)).unwrap();
    assert!(cacheable);
    p
}

/// A direct session created at `at` with a write handle on `/ls/local/f`.
fn writer(t: &mut T, at: f64) -> (Ctx, Vec<u8>) {
    let a = t.session(at);
    let o = t.open_ok(&a, "/ls/local/f", intent::WRITE, 0, None, at);
    (a, o.handle)
}

/// Ticks from `from` in steps of 10 ms until `w` is woken; returns when.
fn released(t: &mut T, w: WaiterId, from: f64, limit: f64) -> f64 {
    let mut now = from;
    while now < limit {
        now += 0.01;
        t.m.tick(t.at(now));
        if t.wakes()
            .iter()
            .any(|(id, x)| *id == w && matches!(x, Wake::Retry))
        {
            return now;
        }
    }
    panic!("the write was not released by t={limit}");
}

#[test]
fn a_silent_proxy_with_a_hold_back_delays_a_write_only_until_its_client_leases_end() {
    let mut t = T::new();
    let p = proxy_caching(&mut t);
    // The proxy promises an 8 s hold-back (a 20 s proxy lease, 12 s client leases). A
    // superseding KeepAlive at t=2 answers the one held since t=1: lease end 2 + 20 = 22.
    let hold = secs(8.0);
    waiter(t.m.keepalive_holding_back(&p, 0, hold, false, t.at(1.0)));
    waiter(t.m.keepalive_holding_back(&p, 0, hold, false, t.at(2.0)));
    t.wakes();
    let (a, wh) = writer(&mut t, 3.0);
    // The write at t=3 waits; the held KeepAlive is answered with the invalidation (and,
    // rule (b), a full lease) — but the proxy never receives it: it died, or is cut off.
    let w = waiter(t.m.set_contents(&a, &wh, b"v2", None, t.at(3.0)));
    assert_eq!(
        t.wakes().len(),
        1,
        "the held KeepAlive carries the invalidation"
    );
    // No cover the proxy took before the invalidation reaches past 22 − 8; it is released
    // then plus the margin, not when the proxy's lease ends (t=23).
    let at = released(&mut t, w, 3.0, 30.0);
    let expect = 22.0 - 8.0 + HOLD_BACK_MARGIN.as_secs_f64();
    assert!(
        (at - expect).abs() < 0.02,
        "released at t={at}, expected {expect}"
    );
    done(t.m.set_contents(&a, &wh, b"v2", None, t.at(at)));
    // The proxy session lives on (its clients' state is kept) and still has the event: a
    // proxy that comes back applies it before anything else. Its late acknowledgement is
    // harmless.
    let reply = done(t.m.keepalive_holding_back(&p, 0, hold, false, t.at(at + 0.1)));
    assert!(reply
        .events
        .iter()
        .any(|e| e.kind == EventKind::Invalidate && e.path == "/ls/local/f"));
    let last = reply.events.last().unwrap().seq;
    waiter(t.m.keepalive_holding_back(&p, last, hold, false, t.at(at + 0.2)));
    assert!(!t.m.is_uncachable("/ls/local/f"));
}

#[test]
fn a_proxy_without_a_hold_back_is_waited_for_until_its_lease_ends() {
    let mut t = T::new();
    let p = proxy_caching(&mut t);
    waiter(t.m.keepalive(&p, 0, t.at(1.0)));
    waiter(t.m.keepalive(&p, 0, t.at(2.0)));
    t.wakes();
    let (a, wh) = writer(&mut t, 3.0);
    let w = waiter(t.m.set_contents(&a, &wh, b"v2", None, t.at(3.0)));
    // The reply carrying the invalidation extended the lease to 3 + 20 = 23.
    let at = released(&mut t, w, 3.0, 30.0);
    assert!((at - 23.0).abs() < 0.02, "released at t={at}");
}

#[test]
fn a_proxy_whose_hold_back_has_run_out_is_not_waited_for() {
    let mut t = T::new();
    let p = proxy_caching(&mut t);
    waiter(t.m.keepalive_holding_back(&p, 0, secs(8.0), false, t.at(1.0)));
    waiter(t.m.keepalive_holding_back(&p, 0, secs(8.0), false, t.at(2.0)));
    t.wakes();
    let (a, wh) = writer(&mut t, 15.0);
    // Lease end 22: the proxy's cover ended by 14, so a write at 15 need not wait.
    done(t.m.set_contents(&a, &wh, b"v2", None, t.at(15.0)));
    // A later, larger hold-back does not stretch what was promised: the smallest is kept.
    let p2 = t.proxy(15.0);
    waiter(t.m.keepalive_holding_back(&p2, 0, secs(8.0), false, t.at(15.0)));
    waiter(t.m.keepalive_holding_back(&p2, 0, secs(4.0), false, t.at(15.5)));
    waiter(t.m.keepalive_holding_back(&p2, 0, secs(9.0), false, t.at(16.0)));
    assert_eq!(t.m.sessions[&p2.session].hold_back, secs(4.0));
}

#[test]
fn a_write_waiting_for_a_proxy_goes_ahead_once_all_its_clients_were_claimed() {
    let mut t = T::new();
    let p = proxy_caching(&mut t);
    let (a, wh) = writer(&mut t, 0.0);
    waiter(t.m.keepalive(&p, 0, t.at(1.0)));
    t.wakes();
    let w = waiter(t.m.set_contents(&a, &wh, b"v2", None, t.at(2.0)));
    t.wakes();
    // Client 1 went to another proxy, which claims it: nobody reads through p here any
    // more, so p is ended rather than waited for (its next call fails; a live proxy then
    // flushes what it cached from this cell).
    let p2 = t.proxy(2.5);
    t.m.claim_session(&p2, cid(1), csecret(1), "carol", None, t.at(2.5))
        .unwrap();
    // A live proxy would acknowledge within a round trip; this one is given the grace.
    let at = released(&mut t, w, 2.5, 10.0);
    let expect = 2.5 + DESERTED_GRACE.as_secs_f64();
    assert!(
        (at - expect).abs() < 0.02,
        "released at t={at}, expected {expect}"
    );
    done(t.m.set_contents(&a, &wh, b"v2", None, t.at(at)));
    let e = t.m.keepalive(&p, 0, t.at(at)).unwrap_err();
    assert_eq!(e.code, ErrorCode::SessionExpired);
    // The claimed client keeps its session (and handle) at p2.
    let c1 = for_client(&p2, 1, "carol");
    let oc = t.open_ok(&c1, "/ls/local/f", intent::READ, 0, None, at);
    let (data, _, _) = t.m.get_contents(&c1, &oc.handle, t.at(at)).unwrap();
    assert_eq!(data, b"v2");
}

#[test]
fn a_deserted_proxy_that_acknowledges_in_time_lives_on() {
    let mut t = T::new();
    let p = proxy_caching(&mut t);
    let (a, wh) = writer(&mut t, 0.0);
    waiter(t.m.keepalive(&p, 0, t.at(1.0)));
    let w = waiter(t.m.set_contents(&a, &wh, b"v2", None, t.at(2.0)));
    let seq = match &t.wakes()[..] {
        [(_, Wake::KeepAlive(Ok(r)))] => r.events.last().unwrap().seq,
        other => panic!("{other:?}"),
    };
    let p2 = t.proxy(2.5);
    t.m.claim_session(&p2, cid(1), csecret(1), "carol", None, t.at(2.5))
        .unwrap();
    // Alive: it acknowledges, and hears of the claim; the write goes through at once.
    let r = done(t.m.keepalive(&p, seq, t.at(2.6)));
    assert!(r
        .events
        .iter()
        .any(|e| e.kind == EventKind::SessionClaimed && e.client == Some(cid(1))));
    assert!(t
        .wakes()
        .iter()
        .any(|(id, x)| *id == w && matches!(x, Wake::Retry)));
    // Past the grace it is still there.
    t.m.tick(t.at(3.5));
    waiter(t.m.keepalive(&p, r.events.last().unwrap().seq, t.at(3.6)));
}

#[test]
fn a_proxy_deserted_before_the_write_is_waited_for_only_its_grace() {
    let mut t = T::new();
    let p = proxy_caching(&mut t);
    let (a, wh) = writer(&mut t, 0.0);
    // A proxy that still has a client here is waited for as before...
    let p2 = t.proxy(0.5);
    let c2 = for_client(&p, 2, "dave");
    t.open_ok(&c2, "/ls/local/g", intent::READ, 0, file(b"g"), 0.5);
    t.m.claim_session(&p2, cid(1), csecret(1), "carol", None, t.at(1.0))
        .unwrap();
    let w = waiter(t.m.set_contents(&a, &wh, b"v2", None, t.at(1.5)));
    // ...and released once its last client is claimed too (and the grace has passed).
    t.wakes();
    t.m.claim_session(&p2, cid(2), csecret(2), "dave", None, t.at(2.0))
        .unwrap();
    let at = released(&mut t, w, 2.0, 10.0);
    assert!(at <= 2.0 + DESERTED_GRACE.as_secs_f64() + 0.02, "t={at}");
    done(t.m.set_contents(&a, &wh, b"v2", None, t.at(at)));

    // A proxy whose clients were all claimed before a write: the write does not wait.
    let (q, _, _) = {
        let q = t.proxy(3.0);
        let c3 = for_client(&q, 3, "erin");
        let o = t.open_ok(&c3, "/ls/local/f", intent::READ, 0, None, 3.0);
        t.m.get_contents(&c3, &o.handle, t.at(3.0)).unwrap();
        (q, (), ())
    };
    t.m.claim_session(&p2, cid(3), csecret(3), "erin", None, t.at(3.5))
        .unwrap();
    let w = waiter(t.m.set_contents(&a, &wh, b"v3", None, t.at(4.0)));
    let at = released(&mut t, w, 4.0, 10.0);
    assert!(at <= 4.0 + DESERTED_GRACE.as_secs_f64() + 0.02, "t={at}");
    done(t.m.set_contents(&a, &wh, b"v3", None, t.at(at)));
    assert_eq!(
        t.m.keepalive(&q, 0, t.at(at)).unwrap_err().code,
        ErrorCode::SessionExpired
    );
}
