//! Tests of the master state machine with synthetic time: each test drives the core
//! with explicit instants and asserts the exact replies, wakes and mutations.

use super::*;
use crate::store::Snapshot;
use warren_proto::ErrorCode;

const LEASE: Duration = Duration::from_secs(12);

struct T {
    m: Master,
    t0: Instant,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

impl T {
    fn new() -> T {
        let t0 = Instant::now();
        let m =
            Master::recover(CoreConfig::new("c0", "local"), Snapshot::default(), t0, 7).unwrap();
        let mut t = T { m, t0 };
        t.m.take_output();
        t
    }
    fn at(&self, s: f64) -> Instant {
        self.t0 + secs(s)
    }
    fn session(&mut self, at: f64) -> Ctx {
        let c = self.m.create_session("alice", self.at(at)).unwrap();
        Ctx {
            session: c.id,
            secret: c.secret,
            epoch: c.epoch,
            client: None,
        }
    }
    fn open(
        &mut self,
        ctx: &Ctx,
        path: &str,
        intent: u32,
        events: u32,
        create: Option<CreateArgs>,
        at: f64,
    ) -> Result<Reply<OpenOk>, WarrenError> {
        let a = OpenArgs {
            path: path.to_string(),
            intent,
            events,
            lock_delay: Duration::ZERO,
            create,
            read: false,
            target: Target::Node,
        };
        self.m.open(ctx, &a, self.at(at))
    }
    fn open_ok(
        &mut self,
        ctx: &Ctx,
        path: &str,
        intent: u32,
        events: u32,
        create: Option<CreateArgs>,
        at: f64,
    ) -> OpenOk {
        match self.open(ctx, path, intent, events, create, at).unwrap() {
            Reply::Done(o) => o,
            Reply::Wait(_) => panic!("open of {path} unexpectedly waited"),
        }
    }
    fn file(&mut self, ctx: &Ctx, path: &str, data: &[u8], at: f64) -> OpenOk {
        self.open_ok(ctx, path, intent::ALL, 0, file(data), at)
    }
    fn wakes(&mut self) -> Vec<(WaiterId, Wake)> {
        self.m.take_output().wakes
    }
}

fn file(data: &[u8]) -> Option<CreateArgs> {
    Some(CreateArgs {
        kind: NodeKind::File,
        ephemeral: false,
        contents: data.to_vec(),
        acl: None,
        exclusive: false,
        instance: 0,
    })
}

fn done<T: std::fmt::Debug>(r: Result<Reply<T>, WarrenError>) -> T {
    match r.unwrap() {
        Reply::Done(t) => t,
        Reply::Wait(w) => panic!("waited ({w})"),
    }
}

fn waiter<T: std::fmt::Debug>(r: Result<Reply<T>, WarrenError>) -> WaiterId {
    match r.unwrap() {
        Reply::Wait(w) => w,
        Reply::Done(t) => panic!("expected to wait, got {t:?}"),
    }
}

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

#[test]
fn metadata_numbers_move_as_spec_says() {
    let mut t = T::new();
    let a = t.session(0.0);
    let o = t.file(&a, "/ls/local/f", b"one", 0.0);
    assert!(o.created);
    let s0 = o.stat.clone();
    assert_eq!(
        (s0.content_generation, s0.lock_generation, s0.acl_generation),
        (0, 0, 0)
    );
    assert_eq!(s0.checksum, xxhash_rust::xxh3::xxh3_64(b"one"));
    assert_eq!(s0.length, 3);
    let s1 = done(t.m.set_contents(&a, &o.handle, b"two", None, t.at(1.0)));
    assert_eq!(s1.content_generation, 1);
    assert_eq!(s1.instance, s0.instance);
    assert_ne!(s1.checksum, s0.checksum);
    // CAS with the wrong generation fails and changes nothing.
    let e =
        t.m.set_contents(&a, &o.handle, b"x", Some(0), t.at(1.0))
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::GenerationMismatch);
    let s2 = done(t.m.set_contents(&a, &o.handle, b"three", Some(1), t.at(1.0)));
    assert_eq!(s2.content_generation, 2);
    let acl = AclNames {
        read: "readers".into(),
        ..Default::default()
    };
    let s3 = done(t.m.set_acl(&a, &o.handle, &acl, t.at(1.0)));
    assert_eq!((s3.acl_generation, s3.content_generation), (1, 2));
    // Lock generation: +1 each time the lock goes free -> held, not per shared holder.
    let seq =
        t.m.try_acquire(&a, &o.handle, LockMode::Shared, t.at(1.0))
            .unwrap();
    assert_eq!(seq.lock_generation, 1);
    let o2 = t.open_ok(&a, "/ls/local/f", intent::WRITE, 0, None, 1.0);
    let seq2 =
        t.m.try_acquire(&a, &o2.handle, LockMode::Shared, t.at(1.0))
            .unwrap();
    assert_eq!(seq2.lock_generation, 1);
    assert!(t.m.release(&a, &o.handle, t.at(1.0)).unwrap());
    assert!(t.m.release(&a, &o2.handle, t.at(1.0)).unwrap());
    let seq3 =
        t.m.try_acquire(&a, &o.handle, LockMode::Exclusive, t.at(1.0))
            .unwrap();
    assert_eq!(seq3.lock_generation, 2);
    // A recreated node has a greater instance.
    t.m.release(&a, &o.handle, t.at(1.0)).unwrap();
    done(t.m.delete(&a, &o.handle, t.at(2.0)));
    let o3 = t.file(&a, "/ls/local/f", b"", 2.0);
    assert!(o3.stat.instance > s0.instance);
    // Parent child count.
    let root = t.open_ok(&a, "/ls/local", intent::READ, 0, None, 2.0);
    assert_eq!(root.stat.child_count, 2); // acl, f
}

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
    assert_eq!(s.content_generation, 1);
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

/// A client following SPEC §4 (local lease = send time + granted / (1 + ρ), next
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

/// Acknowledges everything queued for `ctx`, returning the application events
/// (not invalidations) it had not seen before.
fn settle(t: &mut T, ctx: &Ctx, seen: &mut Vec<Event>) {
    let s = &t.m.sessions[&ctx.session];
    let last = s.next_seq - 1;
    let from = seen.last().map_or(0, |e| e.seq);
    seen.extend(
        s.events
            .iter()
            .filter(|e| e.seq > from && e.kind != EventKind::Invalidate)
            .cloned(),
    );
    t.m.acknowledge(ctx.session, last);
}

/// Runs a write, letting `others` acknowledge invalidations until it goes through.
fn write<R: std::fmt::Debug>(
    t: &mut T,
    others: &[(&Ctx, &mut Vec<Event>)],
    mut f: impl FnMut(&mut Master) -> Result<Reply<R>, WarrenError>,
) -> R {
    let _ = others;
    for _ in 0..3 {
        match f(&mut t.m).unwrap() {
            Reply::Done(r) => return r,
            Reply::Wait(_) => {}
        }
        // Acknowledge for everyone: the test harness plays each client library.
        let ids: Vec<SessionId> = t.m.sessions.keys().copied().collect();
        for id in ids {
            let last = t.m.sessions[&id].next_seq - 1;
            t.m.acknowledge(id, last);
        }
    }
    panic!("write never went through")
}

#[test]
fn events_are_delivered_once_after_their_action() {
    let mut t = T::new();
    let (a, b) = (t.session(0.0), t.session(0.0));
    let mut seen = Vec::new();
    let dir_args = Some(CreateArgs {
        kind: NodeKind::Directory,
        ephemeral: false,
        contents: vec![],
        acl: None,
        exclusive: true,
        instance: 0,
    });
    t.open_ok(&a, "/ls/local/d", intent::ALL, 0, dir_args, 0.0);
    let watch_dir = t.open_ok(&b, "/ls/local/d", intent::READ, mask::ALL, None, 0.0);
    let now = t.at(0.0);
    let fargs = OpenArgs {
        path: "/ls/local/d/f".into(),
        intent: intent::ALL,
        events: 0,
        lock_delay: Duration::ZERO,
        create: file(b""),
        read: false,
        target: Target::Node,
    };
    settle(&mut t, &b, &mut seen);
    let f = write(&mut t, &[], |m| m.open(&a, &fargs, now));
    settle(&mut t, &b, &mut seen);
    let watch_f = t.open_ok(&b, "/ls/local/d/f", intent::WRITE, mask::ALL, None, 0.0);
    settle(&mut t, &b, &mut seen);
    let now = t.at(1.0);
    // Events are queued only once the write happened, not while it waited.
    match t.m.set_contents(&a, &f.handle, b"x", None, now).unwrap() {
        Reply::Wait(_) => {
            let s = &t.m.sessions[&b.session];
            assert!(
                s.events.iter().all(|e| e.kind == EventKind::Invalidate),
                "event before its action"
            );
        }
        Reply::Done(_) => panic!("b cached f; the write must wait"),
    }
    settle(&mut t, &b, &mut seen);
    write(&mut t, &[], |m| {
        m.set_contents(&a, &f.handle, b"x", None, now)
    });
    t.m.try_acquire(&a, &f.handle, LockMode::Exclusive, now)
        .unwrap();
    // b's conflicting request: b is told nothing (it is the requester), a's handle has no mask.
    assert_eq!(
        t.m.try_acquire(&b, &watch_f.handle, LockMode::Exclusive, now)
            .unwrap_err()
            .code,
        ErrorCode::LockHeld
    );
    settle(&mut t, &b, &mut seen);
    let kinds: Vec<_> = seen
        .iter()
        .map(|e| (e.kind, e.path.as_str(), e.change))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::ChildChanged, "/ls/local/d", ChildChange::Added),
            (
                EventKind::ContentsModified,
                "/ls/local/d/f",
                ChildChange::None
            ),
            (
                EventKind::ChildChanged,
                "/ls/local/d",
                ChildChange::Modified
            ),
            (EventKind::LockAcquired, "/ls/local/d/f", ChildChange::None),
        ]
    );
    assert_eq!(seen[0].handle, watch_dir.handle);
    assert_eq!(seen[1].handle, watch_f.handle);
    // Acknowledged events are not sent again: the next KeepAlive is held.
    let last = t.m.sessions[&b.session].next_seq - 1;
    let w = waiter(t.m.keepalive(&b, last, t.at(2.1)));
    // Deleting the file: handle-invalid to b's handle on it, child removed to b's dir handle.
    t.m.release(&a, &f.handle, t.at(3.0)).unwrap();
    t.wakes();
    let now = t.at(3.0);
    write(&mut t, &[], |m| m.delete(&a, &f.handle, now));
    let from = seen.len();
    settle(&mut t, &b, &mut seen);
    let kinds: Vec<_> = seen[from..].iter().map(|e| (e.kind, e.change)).collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::HandleInvalid, ChildChange::None),
            (EventKind::ChildChanged, ChildChange::Removed)
        ]
    );
    assert!(seen[from..].iter().all(|e| e.seq > last));
    let _ = w;
}

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

#[test]
fn ephemeral_file_is_deleted_when_its_last_handle_closes() {
    let mut t = T::new();
    let (a, b) = (t.session(0.0), t.session(0.0));
    let eph = Some(CreateArgs {
        kind: NodeKind::File,
        ephemeral: true,
        contents: b"me".to_vec(),
        acl: None,
        exclusive: false,
        instance: 0,
    });
    let ha = t.open_ok(&a, "/ls/local/e", intent::ALL, 0, eph, 0.0);
    let hb = t.open_ok(&b, "/ls/local/e", intent::READ, 0, None, 0.0);
    assert!(ha.stat.ephemeral);
    t.m.close(&a, &ha.handle, t.at(1.0)).unwrap();
    assert!(t
        .open(&b, "/ls/local/e", intent::READ, 0, None, 1.0)
        .is_ok());
    t.m.take_output();
    t.m.close(&b, &hb.handle, t.at(1.0)).unwrap();
    // b had a second handle from the check above; close it through session end.
    t.m.close_session(&b, false, t.at(1.0)).unwrap();
    let out = t.m.take_output();
    assert!(out.mutations.contains(&Mutation::DeleteNode {
        path: "/ls/local/e".into()
    }));
    let e = t
        .open(&a, "/ls/local/e", intent::READ, 0, None, 2.0)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

#[test]
fn session_expiry_deletes_its_ephemeral_files_and_releases_locks() {
    let mut t = T::new();
    let (a, b) = (t.session(0.0), t.session(0.0));
    let eph = Some(CreateArgs {
        kind: NodeKind::File,
        ephemeral: true,
        contents: vec![],
        acl: None,
        exclusive: false,
        instance: 0,
    });
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

#[test]
fn bad_input_gets_its_code_and_changes_nothing() {
    let mut t = T::new();
    let a = t.session(0.0);
    let f = t.file(&a, "/ls/local/f", b"keep", 0.0);
    let d = t.open_ok(
        &a,
        "/ls/local/d",
        intent::ALL,
        0,
        Some(CreateArgs {
            kind: NodeKind::Directory,
            ephemeral: false,
            contents: vec![],
            acl: None,
            exclusive: false,
            instance: 0,
        }),
        0.0,
    );
    t.file(&a, "/ls/local/d/x", b"", 0.0);
    t.m.take_output();
    let code = |r: Result<Reply<OpenOk>, WarrenError>| r.unwrap_err().code;
    for p in [
        "/ls/local/../f",
        "/ls/local//f",
        "/ls/local/a b",
        "relative",
        "/ls/other/f",
    ] {
        assert_eq!(
            code(t.open(&a, p, intent::READ, 0, file(b""), 1.0)),
            ErrorCode::InvalidArgument,
            "{p}"
        );
    }
    let long = format!("/ls/local/{}", vec!["abcdefghij"; 400].join("/"));
    assert_eq!(
        code(t.open(&a, &long, intent::READ, 0, None, 1.0)),
        ErrorCode::TooLarge
    );
    assert_eq!(
        code(t.open(&a, "/ls/local/f", 99, 0, None, 1.0)),
        ErrorCode::InvalidArgument
    );
    let big = vec![0u8; 256 * 1024 + 1];
    assert_eq!(
        t.m.set_contents(&a, &f.handle, &big, None, t.at(1.0))
            .unwrap_err()
            .code,
        ErrorCode::TooLarge
    );
    assert_eq!(
        code(t.open(&a, "/ls/local/big", intent::ALL, 0, file(&big), 1.0)),
        ErrorCode::TooLarge
    );
    // Forged and truncated handles.
    let mut forged = f.handle.clone();
    let n = forged.len();
    forged[n / 2] ^= 0xff;
    assert_eq!(
        t.m.get_stat(&a, &forged, t.at(1.0)).unwrap_err().code,
        ErrorCode::HandleInvalid
    );
    assert_eq!(
        t.m.get_stat(&a, &f.handle[..n - 3], t.at(1.0))
            .unwrap_err()
            .code,
        ErrorCode::HandleInvalid
    );
    assert_eq!(
        t.m.get_stat(&a, &[], t.at(1.0)).unwrap_err().code,
        ErrorCode::HandleInvalid
    );
    // Another session's handle.
    let b = t.session(1.0);
    assert_eq!(
        t.m.get_stat(&b, &f.handle, t.at(1.0)).unwrap_err().code,
        ErrorCode::HandleInvalid
    );
    // Wrong secret, stale epoch, unknown session.
    let wrong = Ctx {
        secret: [0; 16],
        ..a.clone()
    };
    assert_eq!(
        t.m.get_stat(&wrong, &f.handle, t.at(1.0)).unwrap_err().code,
        ErrorCode::PermissionDenied
    );
    let stale = Ctx {
        epoch: 0,
        ..a.clone()
    };
    let e = t.m.get_stat(&stale, &f.handle, t.at(1.0)).unwrap_err();
    assert_eq!((e.code, e.epoch), (ErrorCode::StaleEpoch, 1));
    let unknown = Ctx {
        session: [9; 16],
        ..a.clone()
    };
    assert_eq!(
        t.m.get_stat(&unknown, &f.handle, t.at(1.0))
            .unwrap_err()
            .code,
        ErrorCode::SessionExpired
    );
    // Delete of a non-empty directory.
    assert_eq!(
        t.m.delete(&a, &d.handle, t.at(1.0)).unwrap_err().code,
        ErrorCode::NotEmpty
    );
    // Locking without write intent.
    let r = t.open_ok(&a, "/ls/local/f", intent::READ, 0, None, 1.0);
    assert_eq!(
        t.m.try_acquire(&a, &r.handle, LockMode::Exclusive, t.at(1.0))
            .unwrap_err()
            .code,
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        t.m.set_contents(&a, &r.handle, b"x", None, t.at(1.0))
            .unwrap_err()
            .code,
        ErrorCode::PermissionDenied
    );
    // Nothing above changed stored state.
    let out = t.m.take_output();
    assert!(
        out.mutations.iter().all(|m| !matches!(
            m,
            Mutation::PutContents { .. } | Mutation::DeleteNode { .. }
        )),
        "{:?}",
        out.mutations
    );
    let (data, stat, _) = t.m.get_contents(&a, &f.handle, t.at(1.0)).unwrap();
    assert_eq!(
        (data.as_slice(), stat.content_generation),
        (&b"keep"[..], 0)
    );
}

#[test]
fn acl_files_govern_open_and_delete() {
    let mut t = T::new();
    let admin = t.session(0.0);
    let bob = {
        let c = t.m.create_session("bob", t.at(0.0)).unwrap();
        Ctx {
            session: c.id,
            secret: c.secret,
            epoch: c.epoch,
            client: None,
        }
    };
    t.file(&admin, "/ls/local/acl/ops", b"alice\ncarol\n", 0.0);
    let acl = AclNames {
        read: String::new(),
        write: "ops".into(),
        change_acl: "ops".into(),
    };
    let d = CreateArgs {
        kind: NodeKind::Directory,
        ephemeral: false,
        contents: vec![],
        acl: Some(acl.clone()),
        exclusive: true,
        instance: 0,
    };
    t.open_ok(&admin, "/ls/local/secure", intent::READ, 0, Some(d), 0.0);
    // Inherited by children.
    let f = t.file(&admin, "/ls/local/secure/f", b"", 0.0);
    assert_eq!(f.stat.acl, acl);
    // bob may read but not write, create or delete.
    t.open_ok(&bob, "/ls/local/secure/f", intent::READ, 0, None, 1.0);
    let e = t
        .open(&bob, "/ls/local/secure/f", intent::WRITE, 0, None, 1.0)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    assert!(
        e.message.contains("bob") && e.message.contains("/ls/local/acl/ops"),
        "{}",
        e.message
    );
    assert_eq!(
        t.open(&bob, "/ls/local/secure/g", intent::READ, 0, file(b""), 1.0)
            .unwrap_err()
            .code,
        ErrorCode::PermissionDenied
    );
    let rb = t.open_ok(&bob, "/ls/local/secure/f", intent::READ, 0, None, 1.0);
    assert_eq!(
        t.m.delete(&bob, &rb.handle, t.at(1.0)).unwrap_err().code,
        ErrorCode::PermissionDenied
    );
    // alice may.
    let alice = t.session(1.0);
    t.open_ok(&alice, "/ls/local/secure/f", intent::WRITE, 0, None, 1.0);
}

fn ctx_of(c: &SessionCreated) -> Ctx {
    Ctx {
        session: c.id,
        secret: c.secret,
        epoch: c.epoch,
        client: None,
    }
}

fn open_args(
    path: &str,
    intent_bits: u32,
    lock_delay: f64,
    create: Option<CreateArgs>,
) -> OpenArgs {
    OpenArgs {
        path: path.into(),
        intent: intent_bits,
        events: 0,
        lock_delay: secs(lock_delay),
        create,
        read: false,
        target: Target::Node,
    }
}

fn ephemeral() -> Option<CreateArgs> {
    Some(CreateArgs {
        kind: NodeKind::File,
        ephemeral: true,
        contents: vec![],
        acl: None,
        exclusive: false,
        instance: 0,
    })
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

fn snapshot_of(muts: Vec<Mutation>) -> Snapshot {
    let mut meta = None;
    let mut nodes = BTreeMap::new();
    let mut contents = BTreeMap::new();
    let mut sessions = BTreeMap::new();
    for m in muts {
        match m {
            Mutation::PutMeta(x) => meta = Some(x),
            Mutation::PutNode(n) => {
                nodes.insert(n.path.clone(), n);
            }
            Mutation::PutContents { path, data } => {
                contents.insert(path, data);
            }
            Mutation::DeleteNode { path } => {
                nodes.remove(&path);
                contents.remove(&path);
            }
            Mutation::PutSession(s) => {
                sessions.insert(s.id, s);
            }
            Mutation::DeleteSession(id) => {
                sessions.remove(&id);
            }
        }
    }
    Snapshot {
        meta,
        nodes: nodes.into_values().collect(),
        contents: contents.into_iter().collect(),
        sessions: sessions.into_values().collect(),
    }
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
    let last = t.m.sessions[&b.session].next_seq - 1;
    t.m.keepalive(&b, last, t.at(1.5)).unwrap();
    assert!(t
        .wakes()
        .iter()
        .any(|(id, x)| *id == w && matches!(x, Wake::Retry)));
}

// ------------------------------------------------------------------ proxies (SPEC §6)

fn cid(n: u8) -> SessionId {
    [n; 16]
}

fn csecret(n: u8) -> [u8; 16] {
    [n ^ 0x5a; 16]
}

/// Proxy session `p` acting for client session number `n`.
fn for_client(p: &Ctx, n: u8, principal: &str) -> Ctx {
    Ctx {
        client: Some(ClientCtx {
            session: cid(n),
            secret: csecret(n),
            principal: principal.into(),
            proxy_dropped_copies: false,
        }),
        ..p.clone()
    }
}

/// `c` (a proxy acting for a client), saying the proxy dropped its copies of what the call
/// writes (`SessionContext.proxy_dropped_copies`).
fn dropped_copies(c: &Ctx) -> Ctx {
    let mut c = c.clone();
    if let Some(cl) = c.client.as_mut() {
        cl.proxy_dropped_copies = true;
    }
    c
}

#[test]
fn a_write_whose_proxy_dropped_its_copies_spares_that_proxy_but_no_other_cacher() {
    let mut t = T::new();
    let p = t.proxy(0.0);
    let carol = for_client(&p, 1, "carol");
    let o = t.file(&carol, "/ls/local/f", b"v0", 1.0);
    // The open registered the proxy session as the cacher for carol.
    assert!(t.m.cachers["/ls/local/f"].contains(&p.session));
    // A plain write waits for the proxy to acknowledge an invalidation (as before).
    let w = waiter(t.m.set_contents(&carol, &o.handle, b"v1", None, t.at(1.0)));
    assert_eq!(t.m.sessions[&p.session].pending_invalidations.len(), 1);
    let at = t.at(1.0);
    keep_alive(&mut t.m, &p, at);
    assert!(t.wakes().iter().any(|(x, _)| *x == w));
    done(t.m.set_contents(&carol, &o.handle, b"v1", None, t.at(1.0)));

    // Registered again by a read; the proxy says it dropped its copies: the write is done
    // at once, no invalidation goes to the proxy, and its registration ends.
    t.m.get_contents(&carol, &o.handle, t.at(2.0)).unwrap();
    assert!(t.m.cachers["/ls/local/f"].contains(&p.session));
    let flagged = dropped_copies(&carol);
    done(t.m.set_contents(&flagged, &o.handle, b"v2", None, t.at(2.0)));
    assert!(t.m.sessions[&p.session].pending_invalidations.is_empty());
    assert!(!t
        .m
        .cachers
        .get("/ls/local/f")
        .is_some_and(|s| s.contains(&p.session)));
    assert_eq!(t.m.nodes["/ls/local/f"].contents, b"v2");

    // Another cacher (a direct session) is still invalidated, and the write waits for it.
    let other = t.session(3.0);
    let od = t.open_ok(&other, "/ls/local/f", intent::READ, 0, None, 3.0);
    t.m.get_contents(&other, &od.handle, t.at(3.0)).unwrap();
    waiter(t.m.set_contents(&flagged, &o.handle, b"v3", None, t.at(3.0)));
    assert_eq!(t.m.sessions[&other.session].pending_invalidations.len(), 1);
    assert!(t.m.sessions[&p.session].pending_invalidations.is_empty());
}

fn code<T: std::fmt::Debug>(r: Result<T, WarrenError>) -> ErrorCode {
    r.unwrap_err().code
}

/// A KeepAlive from `ctx` acknowledging everything queued for it so far.
fn keep_alive(m: &mut Master, ctx: &Ctx, now: Instant) {
    let last = m.sessions[&ctx.session].next_seq - 1;
    let _ = m.keepalive(ctx, last, now).unwrap();
}

fn put_session(muts: &[Mutation]) -> Option<SessionRecord> {
    muts.iter().rev().find_map(|m| match m {
        Mutation::PutSession(r) => Some(r.clone()),
        _ => None,
    })
}

impl T {
    fn proxy(&mut self, at: f64) -> Ctx {
        ctx_of(&self.m.create_proxy_session("proxy", self.at(at)).unwrap())
    }
}

#[test]
fn a_proxy_session_is_granted_the_proxy_lease_on_create_and_on_every_keepalive() {
    let mut t = T::new();
    let c = t.m.create_proxy_session("proxy", t.at(0.0)).unwrap();
    assert_eq!(c.lease, secs(20.0));
    assert_eq!(t.m.create_session("alice", t.at(0.0)).unwrap().lease, LEASE);
    let p = ctx_of(&c);
    // Without a KeepAlive, alice is gone after 12 s, the proxy session only after 20 s.
    t.m.tick(t.at(15.0));
    let st = t.m.status();
    assert_eq!((st.sessions, st.proxy_sessions), (1, 1));
    // A KeepAlive held until shortly before the lease ends grants 20 s more.
    let w = waiter(t.m.keepalive(&p, 0, t.at(16.0)));
    t.m.tick(t.at(19.5));
    let wakes = t.wakes();
    let Some((_, Wake::KeepAlive(Ok(r)))) = wakes.iter().find(|(id, _)| *id == w) else {
        panic!("{wakes:?}")
    };
    assert_eq!(r.lease, secs(19.5 + 20.0 - 16.0));
    t.m.tick(t.at(39.4));
    assert_eq!(t.m.status().proxy_sessions, 1);
    t.m.tick(t.at(39.6));
    assert_eq!(t.m.status().sessions, 0);
}

#[test]
fn only_open_registers_a_client_session() {
    let mut t = T::new();
    let a = t.session(0.0);
    let f = t.file(&a, "/ls/local/f", b"x", 0.0);
    let p = t.proxy(0.0);
    let c = for_client(&p, 1, "carol");
    t.m.take_output();
    // Unknown here: every call but Open answers SESSION_EXPIRED, Close is a no-op.
    assert_eq!(
        code(t.m.get_stat(&c, &f.handle, t.at(1.0))),
        ErrorCode::SessionExpired
    );
    assert_eq!(
        code(t.m.try_acquire(&c, &f.handle, LockMode::Exclusive, t.at(1.0))),
        ErrorCode::SessionExpired
    );
    assert_eq!(
        code(t.m.close_session(&c, false, t.at(1.0))),
        ErrorCode::SessionExpired
    );
    t.m.close(&c, &f.handle, t.at(1.0)).unwrap();
    assert_eq!(t.m.status().sub_sessions, 0);
    assert!(t.m.take_output().mutations.is_empty());
    // A client session has no KeepAlive at the cell.
    assert_eq!(
        code(t.m.keepalive(&c, 0, t.at(1.0))),
        ErrorCode::InvalidArgument
    );
    // Open registers it as a sub-session of the proxy session, with its secret and
    // principal, durably.
    let o = t.open_ok(&c, "/ls/local/f", intent::READ, 0, None, 2.0);
    let body = t.m.key.verify(&o.handle).unwrap();
    let rec = put_session(&t.m.take_output().mutations).expect("recorded");
    assert_eq!(
        rec,
        SessionRecord {
            id: cid(1),
            secret: csecret(1),
            principal: "carol".into(),
            proxy: false,
            parent: Some(p.session),
            registered_epoch: 1,
            registered_handle: body.number,
        }
    );
    let st = t.m.status();
    assert_eq!(
        (st.sessions, st.proxy_sessions, st.sub_sessions, st.orphans),
        (2, 1, 1, 0)
    );
    // From then on every call works.
    t.m.get_stat(&c, &o.handle, t.at(2.0)).unwrap();
    t.m.close(&c, &o.handle, t.at(2.0)).unwrap();
    assert_eq!(
        code(t.m.get_stat(&c, &o.handle, t.at(2.0))),
        ErrorCode::HandleInvalid
    );
}

#[test]
fn forwarded_calls_act_as_the_client_session() {
    let mut t = T::new();
    let admin = t.session(0.0);
    t.file(&admin, "/ls/local/acl/ops", b"carol\n", 0.0);
    let p = t.proxy(0.0);
    let (carol, dave) = (for_client(&p, 1, "carol"), for_client(&p, 2, "dave"));
    // Created by carol, with carol's rights (the write ACL lists only her).
    let create = Some(CreateArgs {
        kind: NodeKind::File,
        ephemeral: false,
        contents: b"v0".to_vec(),
        acl: Some(AclNames {
            write: "ops".into(),
            ..Default::default()
        }),
        exclusive: false,
        instance: 0,
    });
    let o = t.open_ok(&carol, "/ls/local/f", intent::ALL, 0, create, 1.0);
    assert!(o.created);
    assert_eq!(
        t.m.key.verify(&o.handle).unwrap().session_id,
        cid(1).to_vec()
    );
    assert_eq!(
        code(t.open(&dave, "/ls/local/f", intent::WRITE, 0, None, 1.0)),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(t.open(&p, "/ls/local/f", intent::WRITE, 0, None, 1.0)),
        ErrorCode::PermissionDenied,
        "the proxy session's own principal is not carol's"
    );
    // Her write waits for her proxy session, which cached f for her, to drop it.
    waiter(t.m.set_contents(&carol, &o.handle, b"v1", None, t.at(1.0)));
    let at = t.at(1.0);
    keep_alive(&mut t.m, &p, at);
    done(t.m.set_contents(&carol, &o.handle, b"v1", None, t.at(1.0)));
    t.m.try_acquire(&carol, &o.handle, LockMode::Exclusive, t.at(1.0))
        .unwrap();
    let holders = &t.m.nodes["/ls/local/f"].rec.holders;
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].session, cid(1));
    // The handle is carol's: not the proxy session's own, not another client's.
    assert_eq!(
        code(t.m.get_stat(&p, &o.handle, t.at(1.0))),
        ErrorCode::HandleInvalid
    );
    let d = t.open_ok(&dave, "/ls/local/f", intent::READ, 0, None, 1.0);
    assert_eq!(
        code(t.m.get_stat(&dave, &o.handle, t.at(1.0))),
        ErrorCode::HandleInvalid
    );
    assert_eq!(
        code(t.m.get_stat(&carol, &d.handle, t.at(1.0))),
        ErrorCode::HandleInvalid
    );
    // Nor can carol skip her proxy with her own id and secret.
    let direct = Ctx {
        session: cid(1),
        secret: csecret(1),
        epoch: 1,
        client: None,
    };
    assert_eq!(
        code(t.m.get_stat(&direct, &o.handle, t.at(1.0))),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(t.m.keepalive(&direct, 0, t.at(1.0))),
        ErrorCode::InvalidArgument
    );
    // carol's ephemeral file and lock go when her session is closed; dave and the proxy
    // session are untouched.
    t.open_ok(&carol, "/ls/local/e", intent::ALL, 0, ephemeral(), 1.0);
    t.m.close_session(&carol, false, t.at(2.0)).unwrap();
    assert!(!t.m.nodes.contains_key("/ls/local/e"));
    assert!(t.m.nodes["/ls/local/f"].rec.holders.is_empty());
    let st = t.m.status();
    assert_eq!((st.proxy_sessions, st.sub_sessions), (1, 1));
    t.m.get_stat(&dave, &d.handle, t.at(2.0)).unwrap();
    // Ended: her calls and a new Open answer SESSION_EXPIRED.
    assert_eq!(
        code(t.m.get_stat(&carol, &o.handle, t.at(2.0))),
        ErrorCode::SessionExpired
    );
    assert_eq!(
        code(t.open(&carol, "/ls/local/f", intent::READ, 0, None, 2.0)),
        ErrorCode::SessionExpired
    );
}

#[test]
fn closing_a_client_session_as_expired_releases_its_locks_with_lock_delay() {
    let mut t = T::new();
    let a = t.session(0.0);
    let p = t.proxy(0.0);
    let (carol, dave) = (for_client(&p, 1, "carol"), for_client(&p, 2, "dave"));
    for (c, path) in [(&carol, "/ls/local/f"), (&dave, "/ls/local/g")] {
        let o = done(t.m.open(c, &open_args(path, intent::ALL, 5.0, file(b"")), t.at(0.0)));
        t.m.try_acquire(c, &o.handle, LockMode::Exclusive, t.at(0.0))
            .unwrap();
    }
    let fa = t.open_ok(&a, "/ls/local/f", intent::WRITE, 0, None, 1.0);
    let ga = t.open_ok(&a, "/ls/local/g", intent::WRITE, 0, None, 1.0);
    // Closed: released at once.
    t.m.close_session(&carol, false, t.at(1.0)).unwrap();
    t.m.try_acquire(&a, &fa.handle, LockMode::Exclusive, t.at(1.0))
        .unwrap();
    // Expired at its proxy: released after its lock-delay.
    t.m.close_session(&dave, true, t.at(1.0)).unwrap();
    let e =
        t.m.try_acquire(&a, &ga.handle, LockMode::Exclusive, t.at(1.0))
            .unwrap_err();
    assert!(e.message.contains("lock-delay"), "{}", e.message);
    t.m.tick(t.at(6.1));
    t.m.try_acquire(&a, &ga.handle, LockMode::Exclusive, t.at(6.1))
        .unwrap();
    let st = t.m.status();
    assert_eq!((st.proxy_sessions, st.sub_sessions), (1, 0));
}

#[test]
fn events_for_a_client_session_are_tagged_on_its_proxy_session_which_caches_for_it() {
    let mut t = T::new();
    let a = t.session(0.0);
    let fa = t.file(&a, "/ls/local/f", b"v1", 0.0);
    let p = t.proxy(0.0);
    let c = for_client(&p, 1, "carol");
    let o = t.open_ok(
        &c,
        "/ls/local/f",
        intent::ALL,
        mask::CONTENTS_MODIFIED,
        None,
        0.5,
    );
    let (_, _, cacheable) = t.m.get_contents(&c, &o.handle, t.at(0.5)).unwrap();
    assert!(cacheable);
    // The proxy session, not the client session, is the cacher.
    assert_eq!(
        t.m.cachers["/ls/local/f"],
        HashSet::from([a.session, p.session])
    );
    let ka = waiter(t.m.keepalive(&p, 0, t.at(1.0)));
    t.wakes();
    // a's write waits for the proxy session to drop its copy: INVALIDATE, untagged.
    let w = waiter(t.m.set_contents(&a, &fa.handle, b"v2", None, t.at(2.0)));
    let wakes = t.wakes();
    let [(id, Wake::KeepAlive(Ok(r)))] = &wakes[..] else {
        panic!("{wakes:?}")
    };
    assert_eq!(*id, ka);
    assert_eq!(r.events.len(), 1);
    let inv = &r.events[0];
    assert_eq!(
        (inv.kind, inv.client, inv.path.as_str()),
        (EventKind::Invalidate, None, "/ls/local/f")
    );
    assert!(crate::edge::event(inv).client_session.is_empty());
    // The proxy session's acknowledgement lets the write through.
    let ka = waiter(t.m.keepalive(&p, inv.seq, t.at(2.5)));
    assert!(t
        .wakes()
        .iter()
        .any(|(id, x)| *id == w && matches!(x, Wake::Retry)));
    done(t.m.set_contents(&a, &fa.handle, b"v2", None, t.at(2.5)));
    // carol's handle event arrives on the proxy session's queue, tagged with her id.
    let wakes = t.wakes();
    let Some((_, Wake::KeepAlive(Ok(r)))) = wakes.iter().find(|(id, _)| *id == ka) else {
        panic!("{wakes:?}")
    };
    assert_eq!(r.events.len(), 1);
    let ev = &r.events[0];
    assert_eq!(
        (ev.kind, ev.client, &ev.handle),
        (EventKind::ContentsModified, Some(cid(1)), &o.handle)
    );
    let wire = crate::edge::event(ev);
    assert_eq!(
        (wire.r#type, wire.client_session.as_slice()),
        (
            warren_proto::pb::EventType::ContentsModified as i32,
            cid(1).as_slice()
        )
    );
    // Acknowledged by the proxy session: nothing left for carol or anyone.
    waiter(t.m.keepalive(&p, ev.seq, t.at(3.0)));
    assert!(t.m.sessions[&p.session].events.is_empty());
    // carol's own write, too, waits for the proxy session (whose cache serves all its
    // clients) to drop its copy of what she read.
    t.m.get_contents(&c, &o.handle, t.at(3.0)).unwrap();
    let w = waiter(t.m.set_contents(&c, &o.handle, b"v3", None, t.at(3.5)));
    let last = t.m.sessions[&p.session].next_seq - 1;
    t.m.keepalive(&p, last, t.at(4.0)).unwrap();
    assert!(t
        .wakes()
        .iter()
        .any(|(id, x)| *id == w && matches!(x, Wake::Retry)));
}

#[test]
fn client_fields_are_checked_wrong_secret_other_proxy_and_non_proxy_sessions() {
    let mut t = T::new();
    let a = t.session(0.0);
    let (p1, p2) = (t.proxy(0.0), t.proxy(0.0));
    let c = for_client(&p1, 1, "carol");
    let o = t.file(&c, "/ls/local/f", b"", 0.0);
    // Wrong secret.
    let mut wrong = c.clone();
    wrong.client.as_mut().unwrap().secret = [0; 16];
    assert_eq!(
        code(t.m.get_stat(&wrong, &o.handle, t.at(1.0))),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(t.open(&wrong, "/ls/local/f", intent::READ, 0, None, 1.0)),
        ErrorCode::PermissionDenied
    );
    // Another proxy session, right secret.
    let e =
        t.m.get_stat(&for_client(&p2, 1, "carol"), &o.handle, t.at(1.0))
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    assert!(
        e.message
            .contains("is held by another proxy session; ClaimSession first"),
        "{}",
        e.message
    );
    // An ordinary session may not use client fields or ClaimSession.
    let by_a = for_client(&a, 1, "carol");
    assert_eq!(
        code(t.m.get_stat(&by_a, &o.handle, t.at(1.0))),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(t.open(&by_a, "/ls/local/f", intent::READ, 0, None, 1.0)),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(t.m.claim_session(&a, cid(1), csecret(1), "carol", None, t.at(1.0))),
        ErrorCode::InvalidArgument
    );
    // ClaimSession's own ctx carries no client; KeepAlive never does.
    assert_eq!(
        code(t.m.claim_session(&c, cid(1), csecret(1), "carol", None, t.at(1.0))),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(t.m.keepalive(&c, 0, t.at(1.0))),
        ErrorCode::InvalidArgument
    );
    // A client session id that names an ordinary session.
    let mut alias = for_client(&p1, 1, "carol");
    alias.client.as_mut().unwrap().session = a.session;
    alias.client.as_mut().unwrap().secret = a.secret;
    assert_eq!(
        code(t.open(&alias, "/ls/local/f", intent::READ, 0, None, 1.0)),
        ErrorCode::InvalidArgument
    );
    // Claims: wrong secret, and a session never seen here (nothing registered).
    t.m.take_output();
    assert_eq!(
        code(t.m.claim_session(&p2, cid(1), [0; 16], "carol", None, t.at(1.0))),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        t.m.claim_session(&p2, cid(7), csecret(7), "gus", None, t.at(1.0))
            .unwrap(),
        None
    );
    assert!(t.m.take_output().mutations.is_empty());
    assert_eq!(t.m.status().sub_sessions, 1);
    // None of this moved carol.
    t.m.get_stat(&c, &o.handle, t.at(1.0)).unwrap();
}

#[test]
fn a_claim_moves_a_client_session_and_tells_its_old_proxy_session() {
    let mut t = T::new();
    let (p1, p2) = (t.proxy(0.0), t.proxy(0.0));
    let (c1, c2) = (for_client(&p1, 1, "carol"), for_client(&p2, 1, "carol"));
    let o = t.file(&c1, "/ls/local/f", b"", 0.0);
    t.m.try_acquire(&c1, &o.handle, LockMode::Exclusive, t.at(0.0))
        .unwrap();
    // (carol's lock grant told p1, her proxy session, to drop what it cached of f.)
    let last = t.m.sessions[&p1.session].next_seq - 1;
    assert_eq!(
        t.m.sessions[&p1.session].events[0].kind,
        EventKind::Invalidate
    );
    let ka = waiter(t.m.keepalive(&p1, last, t.at(1.0)));
    t.m.take_output();
    assert_eq!(
        t.m.claim_session(&p2, cid(1), csecret(1), "carol", None, t.at(2.0))
            .unwrap()
            .as_deref(),
        Some("carol")
    );
    let out = t.m.take_output();
    assert_eq!(
        put_session(&out.mutations).expect("recorded").parent,
        Some(p2.session)
    );
    // The old proxy session is told, with an event tagged with the client session.
    let Some((_, Wake::KeepAlive(Ok(r)))) = out.wakes.iter().find(|(id, _)| *id == ka) else {
        panic!("{:?}", out.wakes)
    };
    assert_eq!(r.events.len(), 1);
    assert_eq!(
        (r.events[0].kind, r.events[0].client),
        (EventKind::SessionClaimed, Some(cid(1)))
    );
    let wire = crate::edge::event(&r.events[0]);
    assert_eq!(
        (wire.r#type, wire.client_session),
        (
            warren_proto::pb::EventType::SessionClaimed as i32,
            cid(1).to_vec()
        )
    );
    // Its handle and lock went with it; the old proxy session may no longer act for it.
    let s = t.m.get_sequencer(&c2, &o.handle, t.at(2.0)).unwrap();
    assert_eq!(s.path, "/ls/local/f");
    assert_eq!(t.m.nodes["/ls/local/f"].rec.holders[0].session, cid(1));
    assert_eq!(
        code(t.m.get_stat(&c1, &o.handle, t.at(2.0))),
        ErrorCode::PermissionDenied
    );
    // A claim restricted to another holder (a proxy re-creating its lost session claims
    // back only what its old session held) leaves the session where it is.
    assert_eq!(
        code(t.m.claim_session(
            &p1,
            cid(1),
            csecret(1),
            "carol",
            Some(p1.session),
            t.at(2.5)
        )),
        ErrorCode::PermissionDenied
    );
    assert!(t.m.take_output().mutations.is_empty());
    assert_eq!(t.m.sessions[&cid(1)].rec.parent, Some(p2.session));
    // Claiming again from the same proxy session changes nothing.
    assert_eq!(
        t.m.claim_session(&p2, cid(1), csecret(1), "carol", None, t.at(3.0))
            .unwrap()
            .as_deref(),
        Some("carol")
    );
    let out = t.m.take_output();
    assert!(out.mutations.is_empty() && out.wakes.is_empty());
    assert_eq!(
        t.m.sessions[&p1.session]
            .events
            .iter()
            .map(|e| e.kind)
            .collect::<Vec<_>>(),
        vec![EventKind::SessionClaimed]
    );
    let st = t.m.status();
    assert_eq!((st.sub_sessions, st.orphans), (1, 0));
}

/// Proxy session `p1` with client carol holding a lock (lock-delay 5 s) on
/// `/ls/local/f` and an ephemeral file `/ls/local/e`.
fn carol_with_lock_and_ephemeral(t: &mut T) -> (Ctx, OpenOk) {
    let p1 = t.proxy(0.0);
    let c = for_client(&p1, 1, "carol");
    let o = done(t.m.open(
        &c,
        &open_args("/ls/local/f", intent::ALL, 5.0, file(b"")),
        t.at(0.0),
    ));
    t.m.try_acquire(&c, &o.handle, LockMode::Exclusive, t.at(0.0))
        .unwrap();
    done(t.m.open(
        &c,
        &open_args("/ls/local/e", intent::ALL, 0.0, ephemeral()),
        t.at(0.0),
    ));
    (p1, o)
}

#[test]
fn an_orphan_keeps_its_locks_for_the_claim_window_and_can_be_claimed() {
    let mut t = T::new();
    let (_p1, o) = carol_with_lock_and_ephemeral(&mut t);
    // The proxy session dies (no KeepAlive): carol is an orphan for the claim window.
    t.m.tick(t.at(20.5));
    let st = t.m.status();
    assert_eq!((st.sessions, st.sub_sessions, st.orphans), (0, 1, 1));
    assert_eq!(t.m.next_deadline(), Some(t.at(80.5)));
    // Meanwhile her lock and ephemeral file stay.
    let p2 = t.proxy(30.0);
    let b = t.session(30.0);
    let fb = t.open_ok(&b, "/ls/local/f", intent::WRITE, 0, None, 30.0);
    assert_eq!(
        code(t.m.try_acquire(&b, &fb.handle, LockMode::Exclusive, t.at(30.0))),
        ErrorCode::LockHeld
    );
    assert!(t.m.nodes.contains_key("/ls/local/e"));
    // Another proxy session must claim her before acting for her.
    let c2 = for_client(&p2, 1, "carol");
    assert_eq!(
        code(t.m.get_stat(&c2, &o.handle, t.at(30.0))),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        t.m.claim_session(&p2, cid(1), csecret(1), "carol", None, t.at(30.0))
            .unwrap()
            .as_deref(),
        Some("carol")
    );
    assert_eq!(t.m.status().orphans, 0);
    // Claimed: the end of the window passes; her handle and lock are still hers.
    let mut now = 30.0;
    while now < 100.0 {
        now += 5.0;
        let at = t.at(now);
        keep_alive(&mut t.m, &p2, at);
        keep_alive(&mut t.m, &b, at);
        t.m.tick(at);
    }
    assert_eq!(t.m.status().sub_sessions, 1);
    t.m.get_sequencer(&c2, &o.handle, t.at(now)).unwrap();
    assert!(t.m.nodes.contains_key("/ls/local/e"));
    assert_eq!(
        code(t.m.try_acquire(&b, &fb.handle, LockMode::Exclusive, t.at(now))),
        ErrorCode::LockHeld
    );
}

#[test]
fn an_unclaimed_orphan_ends_as_a_failed_session_after_the_claim_window() {
    let mut t = T::new();
    carol_with_lock_and_ephemeral(&mut t);
    t.m.tick(t.at(20.5));
    let b = t.session(78.0);
    let fb = t.open_ok(&b, "/ls/local/f", intent::WRITE, 0, None, 78.0);
    t.m.tick(t.at(80.4));
    assert_eq!(t.m.status().orphans, 1);
    assert!(t.m.nodes.contains_key("/ls/local/e"));
    // The window ends: carol ends as a failed session.
    t.m.tick(t.at(80.5));
    let st = t.m.status();
    assert_eq!((st.sub_sessions, st.orphans), (0, 0));
    assert!(!t.m.nodes.contains_key("/ls/local/e"));
    let e =
        t.m.try_acquire(&b, &fb.handle, LockMode::Exclusive, t.at(80.6))
            .unwrap_err();
    assert!(e.message.contains("lock-delay"), "{}", e.message);
    t.m.tick(t.at(85.6));
    t.m.try_acquire(&b, &fb.handle, LockMode::Exclusive, t.at(85.6))
        .unwrap();
    // A late claim or call answers SESSION_EXPIRED (a wrong secret still PERMISSION_DENIED).
    let p2 = t.proxy(86.0);
    assert_eq!(
        code(t.m.claim_session(&p2, cid(1), csecret(1), "carol", None, t.at(86.0))),
        ErrorCode::SessionExpired
    );
    assert_eq!(
        code(t.m.claim_session(&p2, cid(1), [0; 16], "carol", None, t.at(86.0))),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(t.open(
            &for_client(&p2, 1, "carol"),
            "/ls/local/f",
            intent::READ,
            0,
            None,
            86.0
        )),
        ErrorCode::SessionExpired
    );
    // One claim window later it is forgotten: nothing is known of it.
    t.m.tick(t.at(141.0));
    let p3 = t.proxy(141.0);
    assert_eq!(
        t.m.claim_session(&p3, cid(1), csecret(1), "carol", None, t.at(141.0))
            .unwrap(),
        None
    );
    assert!(t.m.tombstones.is_empty() && t.m.tombstone_order.is_empty());
}

#[test]
fn a_new_master_tells_sub_sessions_of_the_failover_through_their_proxy_session() {
    let t0 = Instant::now();
    let at = |s: f64| t0 + secs(s);
    let cfg = CoreConfig::new("c0", "local");
    let mut m = Master::recover(cfg.clone(), Snapshot::default(), t0, 7).unwrap();
    let p1 = ctx_of(&m.create_proxy_session("proxy", t0).unwrap());
    let p2 = ctx_of(&m.create_proxy_session("proxy", t0).unwrap());
    let (c1, c2, c3) = (
        for_client(&p1, 1, "carol"),
        for_client(&p1, 2, "dave"),
        for_client(&p2, 3, "erin"),
    );
    let f1 = done(m.open(
        &c1,
        &open_args("/ls/local/f", intent::ALL, 0.0, file(b"x")),
        t0,
    ));
    m.try_acquire(&c1, &f1.handle, LockMode::Exclusive, t0)
        .unwrap();
    done(m.open(&c2, &open_args("/ls/local/f", intent::READ, 0.0, None), t0));
    let g3 = done(m.open(
        &c3,
        &open_args("/ls/local/g", intent::ALL, 0.0, file(b"")),
        t0,
    ));
    m.try_acquire(&c3, &g3.handle, LockMode::Exclusive, t0)
        .unwrap();
    // p2 is closed: erin is an orphan, and her record still names p2.
    m.close_session(&p2, false, t0).unwrap();
    let snap = snapshot_of(m.take_output().mutations);
    assert_eq!(snap.sessions.len(), 4);

    let mut m2 = Master::recover(cfg, snap, t0, 8).unwrap();
    let st = m2.status();
    assert_eq!(
        (st.sessions, st.proxy_sessions, st.sub_sessions, st.orphans),
        (1, 1, 3, 1)
    );
    // The proxy session is restored with the longest proxy lease granted.
    assert_eq!(m2.sessions[&p1.session].lease_end, at(20.0));
    // Only the proxy session is awaited, until it acknowledges the last event queued for it.
    let last = m2.sessions[&p1.session].next_seq - 1;
    assert_eq!(last, 3);
    let awaiting = &m2.recovery.as_ref().unwrap().awaiting;
    assert_eq!(awaiting, &HashMap::from([(p1.session, last)]));
    let p1b = Ctx {
        epoch: 2,
        ..p1.clone()
    };
    let Reply::Done(r) = m2.keepalive(&p1b, 0, at(0.5)).unwrap() else {
        panic!("not at once")
    };
    assert!(r.events.iter().all(|e| e.kind == EventKind::MasterFailover));
    let tags: HashSet<Option<SessionId>> = r.events.iter().map(|e| e.client).collect();
    assert_eq!(tags, HashSet::from([None, Some(cid(1)), Some(cid(2))]));
    assert_eq!(r.events.len(), 3);
    // Acknowledging only some of them is not enough.
    let first = r.events[0].seq;
    let _ = m2.keepalive(&p1b, first, at(0.6)).unwrap();
    assert!(m2.recovering());
    let _ = m2.keepalive(&p1b, last, at(0.7)).unwrap();
    assert!(!m2.recovering());
    // carol's handle is recreated on use; her lock is still hers.
    let c1b = for_client(&p1b, 1, "carol");
    m2.get_sequencer(&c1b, &f1.handle, at(1.0)).unwrap();
    // erin, whose proxy session was not restored, is an orphan from the takeover: her lock
    // is held for one claim window, then released.
    assert_eq!(m2.next_deadline().map(|d| d <= at(60.0)), Some(true));
    let mut now = 1.0;
    while now + 5.0 < 60.0 {
        now += 5.0;
        keep_alive(&mut m2, &p1b, at(now));
        m2.tick(at(now));
    }
    m2.tick(at(59.9));
    assert_eq!(m2.nodes["/ls/local/g"].rec.holders.len(), 1);
    m2.tick(at(60.0));
    keep_alive(&mut m2, &p1b, at(60.0));
    assert!(m2.nodes["/ls/local/g"].rec.holders.is_empty());
    let st = m2.status();
    assert_eq!((st.sub_sessions, st.orphans), (2, 0));
}

#[test]
fn a_re_registered_client_session_never_recreates_handles_of_its_earlier_life() {
    let t0 = Instant::now();
    let at = |s: f64| t0 + secs(s);
    let cfg = CoreConfig::new("c0", "local");
    let mut m = Master::recover(cfg.clone(), Snapshot::default(), t0, 7).unwrap();
    let p = ctx_of(&m.create_proxy_session("proxy", t0).unwrap());
    let c = for_client(&p, 1, "carol");
    let first = done(m.open(
        &c,
        &open_args("/ls/local/f", intent::ALL, 0.0, file(b"x")),
        t0,
    ));
    m.close_session(&c, false, t0).unwrap();
    // After a failover (ended sessions are remembered only in memory), carol registers
    // again, in epoch 2.
    let mut log = m.take_output().mutations;
    let snap = snapshot_of(log.clone());
    let mut m2 = Master::recover(cfg.clone(), snap, t0, 8).unwrap();
    let p2 = Ctx {
        epoch: 2,
        ..p.clone()
    };
    keep_alive(&mut m2, &p2, at(0.5));
    assert!(!m2.recovering());
    let c2 = for_client(&p2, 1, "carol");
    assert_eq!(
        code(m2.get_stat(&c2, &first.handle, at(1.0))),
        ErrorCode::SessionExpired,
        "only Open registers"
    );
    let second = done(m2.open(
        &c2,
        &open_args("/ls/local/f", intent::READ, 0.0, None),
        at(1.0),
    ));
    let e = m2.get_stat(&c2, &first.handle, at(1.0)).unwrap_err();
    assert_eq!(e.code, ErrorCode::HandleInvalid);
    assert!(e.message.contains("registered again"), "{}", e.message);
    m2.get_stat(&c2, &second.handle, at(1.0)).unwrap();
    // Within one epoch too: carol ends, is forgotten after a claim window, registers
    // again in the same epoch, and then the master fails over.
    m2.close_session(&c2, false, at(1.0)).unwrap();
    let mut now = 1.0;
    while now < 65.0 {
        now += 5.0;
        keep_alive(&mut m2, &p2, at(now));
        m2.tick(at(now));
    }
    let third = done(m2.open(
        &c2,
        &open_args("/ls/local/f", intent::READ, 0.0, None),
        at(now),
    ));
    log.extend(m2.take_output().mutations);
    let snap = snapshot_of(log);
    let mut m3 = Master::recover(cfg, snap, at(now), 9).unwrap();
    let p3 = Ctx {
        epoch: 3,
        ..p.clone()
    };
    keep_alive(&mut m3, &p3, at(now));
    let c3 = for_client(&p3, 1, "carol");
    assert_eq!(
        code(m3.get_stat(&c3, &second.handle, at(now))),
        ErrorCode::HandleInvalid
    );
    m3.get_stat(&c3, &third.handle, at(now)).unwrap();
}
