//! Authorization with authenticated principals (docs/security.md, "Authorization"): the
//! caller rule as the master applies it, sessions bound to the principal they were
//! created for, handles bound to their session, locking behind the write ACL, and the
//! reserved subtree for operators only.

use super::*;

/// A master whose proxy set is `warren:proxy-1` and whose operators add `ops`.
fn secured() -> T {
    let t0 = Instant::now();
    let mut cfg = CoreConfig::new("c0", "local");
    cfg.callers = CallerRules {
        proxies: ["warren:proxy-1".to_string()].into(),
        operators: ["ops".to_string()].into(),
    };
    let m = Master::recover(cfg, Snapshot::default(), t0, 7).unwrap();
    let mut t = T { m, t0 };
    t.m.take_output();
    t
}

/// A session created by a caller the transport authenticated as `who` (asserting
/// nothing), whose calls carry that principal.
fn session_for(t: &mut T, who: &str) -> Ctx {
    let c =
        t.m.create_session_as(Some(who), "", false, t.at(0.0))
            .unwrap();
    Ctx {
        authenticated: Some(who.into()),
        ..ctx_of(&c)
    }
}

/// The same session id and secret, presented under `who`'s certificate.
fn presented_by(c: &Ctx, who: &str) -> Ctx {
    Ctx {
        authenticated: Some(who.into()),
        ..c.clone()
    }
}

fn denied<T: std::fmt::Debug>(r: Result<T, WarrenError>, needles: &[&str]) {
    let e = r.expect_err("refused");
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
    for n in needles {
        assert!(e.message.contains(n), "{:?} lacks {n:?}", e.message);
    }
}

#[test]
fn a_session_is_refused_under_another_principal_and_served_under_its_own() {
    let mut t = secured();
    let alice = session_for(&mut t, "alice");
    assert_eq!(t.m.sessions[&alice.session].rec.principal, "alice");
    let f = t.file(&alice, "/ls/local/f", b"x", 0.0);
    // bob presents alice's id and secret with his certificate: refused, on every call.
    let bob = presented_by(&alice, "bob");
    denied(
        t.m.get_contents(&bob, &f.handle, t.at(1.0)),
        &["\"alice\"", "\"bob\""],
    );
    denied(
        t.open(&bob, "/ls/local/f", intent::READ, 0, None, 1.0),
        &["\"alice\"", "\"bob\""],
    );
    denied(t.m.keepalive(&bob, 0, t.at(1.0)), &["\"alice\""]);
    denied(t.m.close_session(&bob, false, t.at(1.0)), &["\"alice\""]);
    // Under alice's own certificate, and on a plaintext connection (asserted principals
    // are trusted there, as before TLS), the session works.
    assert_eq!(
        t.m.get_contents(&alice, &f.handle, t.at(1.0)).unwrap().0,
        b"x"
    );
    let plain = Ctx {
        authenticated: None,
        ..alice.clone()
    };
    assert_eq!(
        t.m.get_contents(&plain, &f.handle, t.at(1.0)).unwrap().0,
        b"x"
    );
}

#[test]
fn a_client_certificate_asserts_only_itself_and_makes_no_proxy_session() {
    let mut t = secured();
    denied(
        t.m.create_session_as(Some("alice"), "bob", false, t.at(0.0)),
        &["\"alice\"", "\"bob\""],
    );
    denied(
        t.m.create_session_as(Some("alice"), OPERATOR_PRINCIPAL, false, t.at(0.0)),
        &["\"alice\""],
    );
    denied(
        t.m.create_session_as(Some("alice"), "", true, t.at(0.0)),
        &["\"alice\"", "proxy session", "--proxy-principal"],
    );
    // Asserting itself is fine; the proxy may assert its session's principal.
    t.m.create_session_as(Some("alice"), "alice", false, t.at(0.0))
        .unwrap();
    let p =
        t.m.create_session_as(Some("warren:proxy-1"), "proxy:p1", true, t.at(0.0))
            .unwrap();
    assert_eq!(t.m.sessions[&p.id].rec.principal, "proxy:p1");
    // Without authentication, today's rule: anything asserted is taken.
    let m =
        t.m.create_session_as(None, "mallory", true, t.at(0.0))
            .unwrap();
    assert_eq!(t.m.sessions[&m.id].rec.principal, "mallory");
}

#[test]
fn only_a_proxy_principal_acts_for_clients_and_claims_them_with_their_principal() {
    let mut t = secured();
    let c =
        t.m.create_session_as(Some("warren:proxy-1"), "proxy:p1", true, t.at(0.0))
            .unwrap();
    let proxy = Ctx {
        authenticated: Some("warren:proxy-1".into()),
        ..ctx_of(&c)
    };
    // The proxy acts for client 1 (alice): registered with the principal it forwards.
    let a1 = for_client(&proxy, 1, "alice");
    let f = t.file(&a1, "/ls/local/f", b"x", 0.0);
    assert_eq!(t.m.sessions[&cid(1)].rec.principal, "alice");
    // Forwarding another principal for that client session is refused.
    denied(
        t.m.get_contents(&for_client(&proxy, 1, "bob"), &f.handle, t.at(1.0)),
        &["\"alice\"", "\"bob\""],
    );
    t.m.get_contents(&a1, &f.handle, t.at(1.0)).unwrap();
    // The same proxy session presented under a client certificate: it may not act for a
    // client (whatever the session), nor claim one.
    let impostor = presented_by(&a1, "alice");
    denied(
        t.m.get_contents(&impostor, &f.handle, t.at(1.0)),
        &["\"alice\"", "ctx.client_session", "proxy_principals"],
    );
    let own = session_for(&mut t, "alice");
    denied(
        t.m.claim_session(&own, cid(1), csecret(1), "alice", None, t.at(1.0)),
        &["\"alice\"", "ClaimSession", "--proxy-principal"],
    );
    // A second proxy identity in the set claims it.
    let c2 =
        t.m.create_session_as(Some("warren:proxy-1"), "proxy:p2", true, t.at(1.0))
            .unwrap();
    let p2 = Ctx {
        authenticated: Some("warren:proxy-1".into()),
        ..ctx_of(&c2)
    };
    assert_eq!(
        t.m.claim_session(&p2, cid(1), csecret(1), "alice", None, t.at(1.0))
            .unwrap()
            .as_deref(),
        Some("alice")
    );
}

#[test]
fn a_handle_from_one_session_is_refused_in_another_and_a_forged_one_everywhere() {
    let mut t = secured();
    let alice = session_for(&mut t, "alice");
    let alice2 = session_for(&mut t, "alice");
    let f = t.file(&alice, "/ls/local/f", b"x", 0.0);
    // Another session of the same principal: the handle is not its own.
    assert_eq!(
        t.m.get_contents(&alice2, &f.handle, t.at(1.0))
            .unwrap_err()
            .code,
        ErrorCode::HandleInvalid
    );
    // A handle altered in any byte fails its MAC, even in the session that opened it.
    for i in 0..f.handle.len() {
        let mut forged = f.handle.clone();
        forged[i] ^= 1;
        assert_eq!(
            t.m.get_contents(&alice, &forged, t.at(1.0))
                .unwrap_err()
                .code,
            ErrorCode::HandleInvalid,
            "byte {i}"
        );
    }
    assert_eq!(
        t.m.get_contents(&alice, &f.handle, t.at(1.0)).unwrap().0,
        b"x"
    );
}

#[test]
fn locking_needs_the_write_acl_of_the_effective_principal() {
    let mut t = secured();
    let alice = session_for(&mut t, "alice");
    t.file(&alice, "/ls/local/acl/writers", b"alice\n", 0.0);
    let mut create = file(b"").unwrap();
    create.acl = Some(AclNames {
        read: String::new(),
        write: "writers".into(),
        change_acl: "writers".into(),
    });
    t.open_ok(&alice, "/ls/local/l", intent::READ, 0, Some(create), 0.0);
    let bob = session_for(&mut t, "bob");
    denied(
        t.open(&bob, "/ls/local/l", intent::WRITE, 0, None, 1.0),
        &["\"bob\"", "/ls/local/acl/writers"],
    );
    // A handle without write intent cannot lock.
    let r = t.open_ok(&bob, "/ls/local/l", intent::READ, 0, None, 1.0);
    assert_eq!(
        t.m.try_acquire(&bob, &r.handle, LockMode::Exclusive, t.at(1.0))
            .unwrap_err()
            .code,
        ErrorCode::PermissionDenied
    );
    let w = t.open_ok(&alice, "/ls/local/l", intent::WRITE, 0, None, 1.0);
    t.m.try_acquire(&alice, &w.handle, LockMode::Exclusive, t.at(1.0))
        .unwrap();
}

#[test]
fn the_reserved_subtree_is_written_by_operators_only() {
    let mut t = secured();
    let op = session_for(&mut t, OPERATOR_PRINCIPAL);
    let ops = session_for(&mut t, "ops");
    let alice = session_for(&mut t, "alice");
    let job = "/ls/local/warren/reshard/job";
    let dir = || {
        Some(CreateArgs {
            kind: NodeKind::Directory,
            ..file(b"").unwrap()
        })
    };
    denied(
        t.open(&alice, "/ls/local/warren", intent::READ, 0, dir(), 0.0),
        &[
            "\"alice\"",
            "create",
            "/ls/local/warren",
            "operator_principals",
        ],
    );
    t.open_ok(&op, "/ls/local/warren", intent::READ, 0, dir(), 0.0);
    t.open_ok(&op, "/ls/local/warren/reshard", intent::READ, 0, dir(), 0.0);
    denied(
        t.open(&alice, job, intent::ALL, 0, file(b"{}"), 0.0),
        &["\"alice\"", "create", job],
    );
    let now = t.at(0.0);
    let made = write(&mut t, &[], |m| {
        m.open(&ops, &open_args(job, intent::ALL, 0.0, file(b"{}")), now)
    });
    // alice may open it (reading is not restricted) but not change it.
    let a = t.open_ok(&alice, job, intent::ALL, 0, None, 1.0);
    denied(
        t.m.set_contents(&alice, &a.handle, b"x", None, t.at(1.0)),
        &["write", job],
    );
    denied(
        t.m.set_acl(&alice, &a.handle, &AclNames::default(), t.at(1.0)),
        &["change the ACL of", job],
    );
    denied(t.m.delete(&alice, &a.handle, t.at(1.0)), &["delete", job]);
    // The configured operator and the cells may.
    let now = t.at(1.0);
    write(&mut t, &[], |m| {
        m.set_contents(&ops, &made.handle, b"{\"v\":2}", None, now)
    });
    let cell = t.m.create_session(CELL_PRINCIPAL, t.at(1.0)).unwrap();
    let cell = ctx_of(&cell);
    let c = t.open_ok(&cell, job, intent::ALL, 0, None, 1.0);
    write(&mut t, &[], |m| {
        m.set_contents(&cell, &c.handle, b"{\"v\":3}", None, now)
    });
    // Elsewhere nothing changes for alice.
    t.file(&alice, "/ls/local/warrens", b"", 1.0);
}

#[test]
fn a_read_is_judged_by_the_read_acl_in_force_not_the_one_at_open() {
    let mut t = secured();
    let alice = session_for(&mut t, "alice");
    let acl_file = t.file(&alice, "/ls/local/acl/readers", b"alice\nbob\n", 0.0);
    let mut create = file(b"secret").unwrap();
    create.acl = Some(AclNames {
        read: "readers".into(),
        write: String::new(),
        change_acl: String::new(),
    });
    let f = t.open_ok(&alice, "/ls/local/f", intent::READ, 0, Some(create), 0.0);
    let bob = session_for(&mut t, "bob");
    let b = t.open_ok(&bob, "/ls/local/f", intent::READ, 0, None, 1.0);
    assert_eq!(
        t.m.get_contents(&bob, &b.handle, t.at(1.0)).unwrap().0,
        b"secret"
    );
    // bob is taken off the ACL: his handle, opened while he was on it, reads no more.
    let now = t.at(2.0);
    write(&mut t, &[], |m| {
        m.set_contents(&alice, &acl_file.handle, b"alice\n", None, now)
    });
    denied(
        t.m.get_contents(&bob, &b.handle, t.at(2.0)),
        &["\"bob\"", "read", "/ls/local/f", "/ls/local/acl/readers"],
    );
    assert_eq!(
        t.m.get_contents(&alice, &f.handle, t.at(2.0)).unwrap().0,
        b"secret"
    );
}
