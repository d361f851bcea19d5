//! Proxy sessions and their client sub-sessions (docs/design.md §10): registration, forwarding,
//! tagging, claims, orphans and failover.

use super::*;

/// `c` (a proxy acting for a client), saying the proxy dropped its copies of what the call
/// writes (`SessionContext.proxy_dropped_copies`).
fn dropped_copies(c: &Ctx) -> Ctx {
    let mut c = c.clone();
    if let Some(cl) = c.client.as_mut() {
        cl.proxy_dropped_copies = true;
    }
    c
}

fn code<T: std::fmt::Debug>(r: Result<T, WarrenError>) -> ErrorCode {
    r.unwrap_err().code
}

/// A KeepAlive from `ctx` acknowledging everything queued for it so far.
fn keep_alive(m: &mut Master, ctx: &Ctx, now: Instant) {
    let last = m.sessions[&ctx.session].lease.last_seq();
    let _ = m.keepalive(ctx, last, now).unwrap();
}

fn put_session(muts: &[Mutation]) -> Option<SessionRecord> {
    muts.iter().rev().find_map(|m| match m {
        Mutation::PutSession(r) => Some(r.clone()),
        _ => None,
    })
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
        authenticated: None,
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
        HashSet::from_iter([a.session, p.session])
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
    assert!(!t.m.sessions[&p.session].lease.has_events());
    // carol's own write, too, waits for the proxy session (whose cache serves all its
    // clients) to drop its copy of what she read.
    t.m.get_contents(&c, &o.handle, t.at(3.0)).unwrap();
    let w = waiter(t.m.set_contents(&c, &o.handle, b"v3", None, t.at(3.5)));
    let last = t.m.sessions[&p.session].lease.last_seq();
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
    let last = t.m.sessions[&p1.session].lease.last_seq();
    assert_eq!(
        t.m.sessions[&p1.session]
            .lease
            .events()
            .next()
            .unwrap()
            .kind,
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
            .lease
            .events()
            .map(|e| e.kind)
            .collect::<Vec<_>>(),
        vec![EventKind::SessionClaimed]
    );
    let st = t.m.status();
    assert_eq!((st.sub_sessions, st.orphans), (1, 0));
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
    assert!(t.m.tombstones.is_empty());
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
    assert_eq!(m2.sessions[&p1.session].lease.end, at(20.0));
    // Only the proxy session is awaited, until it acknowledges the last event queued for it.
    let last = m2.sessions[&p1.session].lease.last_seq();
    assert_eq!(last, 3);
    let awaiting = &m2.recovery.as_ref().unwrap().awaiting;
    assert_eq!(awaiting.iter().collect::<Vec<_>>(), [(&p1.session, &last)]);
    let p1b = Ctx {
        epoch: 2,
        ..p1.clone()
    };
    let Reply::Done(r) = m2.keepalive(&p1b, 0, at(0.5)).unwrap() else {
        panic!("not at once")
    };
    assert!(r.events.iter().all(|e| e.kind == EventKind::MasterFailover));
    let tags: HashSet<Option<SessionId>> = r.events.iter().map(|e| e.client).collect();
    assert_eq!(tags, HashSet::from_iter([None, Some(cid(1)), Some(cid(2))]));
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

/// Client `n` (of up to 65,536: more than [`for_client`]'s 256) of proxy session `p`.
fn numbered_client(p: &Ctx, n: u16) -> Ctx {
    let mut id = [0xc1; 16];
    id[0] = (n >> 8) as u8;
    id[1] = n as u8;
    Ctx {
        client: Some(ClientCtx {
            session: id,
            secret: [0x11; 16],
            principal: "client".into(),
            proxy_dropped_copies: false,
        }),
        ..p.clone()
    }
}

/// The ticker's index of sessions with a lease is exactly the sessions without a parent.
fn assert_leased_index(m: &Master) {
    let want: BTreeSet<SessionId> = m
        .sessions
        .iter()
        .filter(|(_, s)| s.rec.parent.is_none())
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(m.leased, want);
}

#[test]
fn the_ticker_follows_leased_sessions_through_a_proxys_mass_of_clients() {
    const CLIENTS: u16 = 2000;
    let mut t = T::new();
    let p1 = t.proxy(0.0);
    let p2 = t.proxy(0.0);
    let alice = t.session(0.0);
    t.file(&alice, "/ls/local/f", b"", 0.0);
    for n in 0..CLIENTS {
        t.open_ok(
            &numbered_client(&p1, n),
            "/ls/local/f",
            intent::READ,
            0,
            None,
            1.0,
        );
    }
    assert_leased_index(&t.m);
    let st = t.m.status();
    assert_eq!(
        (st.sessions, st.proxy_sessions, st.sub_sessions),
        (3, 2, usize::from(CLIENTS))
    );
    // alice and p2 hold KeepAlives; p1 (the proxy that will die) sends none. The next
    // deadline is alice's reply, 1–1.1 s before her lease (granted at 0 s) ends at 12 s:
    // none of the 2,000 sub-sessions has a deadline of its own.
    let Reply::Wait(wa) = t.m.keepalive(&alice, 0, t.at(2.0)).unwrap() else {
        panic!("alice's KeepAlive was not held");
    };
    let Reply::Wait(_) = t.m.keepalive(&p2, 0, t.at(2.0)).unwrap() else {
        panic!("p2's KeepAlive was not held");
    };
    let due = t.m.next_deadline().unwrap();
    assert!(due >= t.at(10.9) && due <= t.at(11.0), "{:?}", due - t.t0);
    t.m.tick(due);
    assert!(t.wakes().iter().any(|(w, _)| *w == wa));

    // p2's held KeepAlive falls due and is answered; both keep alive.
    t.m.tick(t.at(19.0));
    let at = t.at(19.0);
    keep_alive(&mut t.m, &p2, at);
    keep_alive(&mut t.m, &alice, at);
    // p1's lease runs out: its clients are orphans; the index loses p1 only.
    t.m.tick(t.at(20.5));
    assert_leased_index(&t.m);
    let st = t.m.status();
    assert_eq!(
        (st.sessions, st.proxy_sessions, st.sub_sessions, st.orphans),
        (2, 1, usize::from(CLIENTS), usize::from(CLIENTS))
    );
    // p2 claims ten of them at 30 s; the others end when the claim window does. The
    // ticker runs every half second; alice and p2 send a KeepAlive every 5 s.
    let mut now: f64 = 20.5;
    while now < 81.0 {
        now += 0.5;
        let at = t.at(now);
        if now == 30.0 {
            for n in 0..10 {
                let c = numbered_client(&p2, n);
                let id = c.client.as_ref().unwrap().session;
                t.m.claim_session(&p2, id, [0x11; 16], "client", None, at)
                    .unwrap();
            }
        }
        if now % 5.0 == 0.0 {
            keep_alive(&mut t.m, &p2, at);
            keep_alive(&mut t.m, &alice, at);
        }
        t.m.tick(at);
        if now == 80.0 {
            assert_eq!(t.m.status().orphans, usize::from(CLIENTS) - 10);
        }
    }
    assert_leased_index(&t.m);
    let st = t.m.status();
    assert_eq!(
        (st.sessions, st.proxy_sessions, st.sub_sessions, st.orphans),
        (2, 1, 10, 0)
    );
    // A claimed client is p2's now: it opens through p2.
    t.open_ok(
        &numbered_client(&p2, 3),
        "/ls/local/f",
        intent::READ,
        0,
        None,
        81.0,
    );
}
