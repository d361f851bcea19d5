//! Nodes and handles: metadata numbers, ephemeral files, input validation and ACL
//! files.

use super::*;

#[test]
fn metadata_numbers_move_as_spec_says() {
    let mut t = T::new();
    let a = t.session(0.0);
    let o = t.file(&a, "/ls/local/f", b"one", 0.0);
    assert!(o.created);
    let s0 = o.stat.clone();
    assert_eq!(
        (
            s0.meta.content_generation,
            s0.meta.lock_generation,
            s0.meta.acl_generation
        ),
        (0, 0, 0)
    );
    assert_eq!(s0.meta.checksum, xxhash_rust::xxh3::xxh3_64(b"one"));
    assert_eq!(s0.length, 3);
    let s1 = done(t.m.set_contents(&a, &o.handle, b"two", None, t.at(1.0)));
    assert_eq!(s1.meta.content_generation, 1);
    assert_eq!(s1.meta.instance, s0.meta.instance);
    assert_ne!(s1.meta.checksum, s0.meta.checksum);
    // CAS with the wrong generation fails and changes nothing.
    let e =
        t.m.set_contents(&a, &o.handle, b"x", Some(0), t.at(1.0))
            .unwrap_err();
    assert_eq!(e.code, ErrorCode::GenerationMismatch);
    let s2 = done(t.m.set_contents(&a, &o.handle, b"three", Some(1), t.at(1.0)));
    assert_eq!(s2.meta.content_generation, 2);
    let acl = AclNames {
        read: "readers".into(),
        ..Default::default()
    };
    let s3 = done(t.m.set_acl(&a, &o.handle, &acl, t.at(1.0)));
    assert_eq!((s3.meta.acl_generation, s3.meta.content_generation), (1, 2));
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
    assert!(o3.stat.meta.instance > s0.meta.instance);
    // Parent child count.
    let root = t.open_ok(&a, "/ls/local", intent::READ, 0, None, 2.0);
    assert_eq!(root.stat.child_count, 2); // acl, f
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
    assert!(ha.stat.meta.ephemeral);
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
        (data.as_slice(), stat.meta.content_generation),
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
            authenticated: None,
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
    assert_eq!(f.stat.meta.acl, acl);
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
