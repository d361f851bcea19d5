//! Nodes, metadata, reads and writes, ACLs, ephemeral nodes and events.

use super::fixture::{code, Target};
use std::time::Duration;
use warren_client::{AclNames, ChildChange, ErrorCode, Event, EventMask, NodeKind, OpenOptions};

#[tokio::test]
async fn files_and_metadata_move_exactly_as_the_spec_says() {
    let t = Target::start().await;
    let s = t.session().await;
    let (f, info) = s
        .open(
            "/f",
            OpenOptions::new()
                .read()
                .write()
                .change_acl()
                .create_file(b"one".to_vec()),
        )
        .await
        .unwrap();
    assert!(info.created);
    let st0 = info.stat;
    assert_eq!(st0.kind, NodeKind::File);
    assert_eq!(
        (
            st0.content_generation,
            st0.lock_generation,
            st0.acl_generation
        ),
        (0, 0, 0)
    );
    assert_eq!(st0.length, 3);
    let (data, st) = f.contents().await.unwrap();
    assert_eq!((data.as_slice(), st.clone()), (&b"one"[..], st0.clone()));
    let st1 = f.set_contents(b"two".to_vec()).await.unwrap();
    assert_eq!(st1.content_generation, 1);
    assert_ne!(st1.checksum, st0.checksum);
    assert_eq!(st1.instance, st0.instance);
    // Compare-and-swap.
    assert_eq!(
        code(f.set_contents_if(b"x".to_vec(), 0).await),
        ErrorCode::GenerationMismatch
    );
    assert_eq!(f.contents().await.unwrap().0, b"two");
    let st2 = f.set_contents_if(b"three".to_vec(), 1).await.unwrap();
    assert_eq!(st2.content_generation, 2);
    // ACL generation.
    let st3 = f
        .set_acl(AclNames {
            read: "r".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((st3.acl_generation, st3.acl.read.as_str()), (1, "r"));
    assert_eq!(f.stat().await.unwrap(), st3);
    // Delete and recreate: a greater instance, generations start again.
    f.delete().await.unwrap();
    assert_eq!(code(f.stat().await), ErrorCode::HandleInvalid);
    f.close().await;
    let (g, info) = s
        .open("/f", OpenOptions::new().write().create_file(Vec::new()))
        .await
        .unwrap();
    assert!(info.stat.instance > st0.instance);
    g.close().await;
    s.close().await.unwrap();
}

#[tokio::test]
async fn directories_list_children_and_delete_only_when_empty() {
    let t = Target::start().await;
    let s = t.session().await;
    let (d, info) = s
        .open("/d", OpenOptions::new().read().write().create_dir())
        .await
        .unwrap();
    assert_eq!(info.stat.kind, NodeKind::Directory);
    for n in ["b", "a", "c"] {
        let (h, _) = s
            .open(
                &format!("/d/{n}"),
                OpenOptions::new()
                    .write()
                    .create_file(n.as_bytes().to_vec()),
            )
            .await
            .unwrap();
        h.close().await;
    }
    let (sub, _) = s
        .open("/d/sub", OpenOptions::new().write().create_dir())
        .await
        .unwrap();
    let names: Vec<String> = d
        .read_dir()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["a", "b", "c", "sub"]);
    assert_eq!(d.stat().await.unwrap().child_count, 4);
    // Not empty.
    assert_eq!(code(d.delete().await), ErrorCode::NotEmpty);
    // Creating in a missing directory.
    assert_eq!(
        code(
            s.open(
                "/nope/x",
                OpenOptions::new().write().create_file(Vec::new())
            )
            .await
        ),
        ErrorCode::NotFound
    );
    // Opening a missing node without create.
    assert_eq!(
        code(s.open("/d/zzz", OpenOptions::new().read()).await),
        ErrorCode::NotFound
    );
    // Exclusive create of an existing node.
    assert_eq!(
        code(
            s.open(
                "/d/a",
                OpenOptions::new()
                    .write()
                    .create_file(Vec::new())
                    .exclusive()
            )
            .await
        ),
        ErrorCode::AlreadyExists
    );
    // A directory where a file is.
    assert_eq!(
        code(
            s.open("/d/a", OpenOptions::new().write().create_dir())
                .await
        ),
        ErrorCode::AlreadyExists
    );
    sub.delete().await.unwrap();
    for n in ["a", "b", "c"] {
        let (h, _) = s
            .open(&format!("/d/{n}"), OpenOptions::new().write())
            .await
            .unwrap();
        h.delete().await.unwrap();
    }
    assert_eq!(d.stat().await.unwrap().child_count, 0);
    d.delete().await.unwrap();
}

#[tokio::test]
async fn read_at_open_and_full_paths() {
    let t = Target::start().await;
    let s = t.session().await;
    assert_eq!(s.deployment(), "local");
    let (h, _) = s
        .open(
            "/ls/local/x",
            OpenOptions::new().write().create_file(b"hello".to_vec()),
        )
        .await
        .unwrap();
    h.close().await;
    let (_, info) = s
        .open("/x", OpenOptions::new().read().read_contents())
        .await
        .unwrap();
    assert_eq!(info.contents.as_deref(), Some(&b"hello"[..]));
    assert!(info.cacheable);
}

#[tokio::test]
async fn ephemeral_nodes_go_when_no_handle_holds_them() {
    let t = Target::start().await;
    let a = t.session().await;
    let b = t.session().await;
    let (ha, info) = a
        .open(
            "/e",
            OpenOptions::new()
                .write()
                .create_file(b"x".to_vec())
                .ephemeral(),
        )
        .await
        .unwrap();
    assert!(info.stat.ephemeral);
    let (hb, _) = b.open("/e", OpenOptions::new().read()).await.unwrap();
    ha.close().await;
    // Still held by b.
    let (hb2, _) = b.open("/e", OpenOptions::new().read()).await.unwrap();
    hb.close().await;
    hb2.close().await;
    assert_eq!(
        code(a.open("/e", OpenOptions::new().read()).await),
        ErrorCode::NotFound
    );
    // Ending the session ends its ephemeral files too.
    let (_keep, _) = a
        .open(
            "/e2",
            OpenOptions::new()
                .write()
                .create_file(Vec::new())
                .ephemeral(),
        )
        .await
        .unwrap();
    a.close().await.unwrap();
    assert_eq!(
        code(b.open("/e2", OpenOptions::new().read()).await),
        ErrorCode::NotFound
    );
    // And so does a session that dies (its lease runs out): see locks::lock_delay_applies_when_the_holder_dies.
}

#[tokio::test]
async fn close_never_fails() {
    let t = Target::start().await;
    let mut raw = t.raw().await;
    let h = raw
        .open("/ls/local/c", 2, crate::fixture::file_spec(b""))
        .await
        .unwrap()
        .handle;
    let close = |handle: Vec<u8>, ctx| warren_proto::pb::CloseRequest { ctx, handle };
    // Twice, forged, empty, and with no session context at all: all succeed.
    raw.client.close(close(h.clone(), raw.ctx())).await.unwrap();
    raw.client.close(close(h.clone(), raw.ctx())).await.unwrap();
    raw.client
        .close(close(vec![1, 2, 3], raw.ctx()))
        .await
        .unwrap();
    raw.client
        .close(close(Vec::new(), raw.ctx()))
        .await
        .unwrap();
    raw.client.close(close(h.clone(), None)).await.unwrap();
    // The closed handle is closed; the session and the node are unharmed.
    assert_eq!(
        crate::fixture::raw_code(raw.read(&h).await),
        warren_proto::ErrorCode::HandleInvalid
    );
    let s = t.session().await;
    let (h3, _) = s.open("/c", OpenOptions::new().read()).await.unwrap();
    h3.close().await;
}

#[tokio::test]
async fn acl_files_are_checked_at_open_and_delete() {
    let t = Target::start().await;
    let admin = t.session_as("root").await;
    let (acl, _) = admin
        .open(
            "/acl/ops",
            OpenOptions::new().write().create_file(b"alice\n".to_vec()),
        )
        .await
        .unwrap();
    acl.close().await;
    let names = AclNames {
        read: String::new(),
        write: "ops".into(),
        change_acl: "ops".into(),
    };
    // root may create (parent unrestricted) a directory governed by ops.
    let (d, _) = admin
        .open(
            "/secure",
            OpenOptions::new().read().create_dir().acl(names.clone()),
        )
        .await
        .unwrap();
    let alice = t.session_as("alice").await;
    let bob = t.session_as("bob").await;
    let (f, info) = alice
        .open(
            "/secure/f",
            OpenOptions::new().write().create_file(Vec::new()),
        )
        .await
        .unwrap();
    assert_eq!(
        info.stat.acl, names,
        "ACL names are inherited from the parent"
    );
    let (fb, _) = bob
        .open("/secure/f", OpenOptions::new().read())
        .await
        .unwrap();
    assert_eq!(
        code(bob.open("/secure/f", OpenOptions::new().write()).await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(
            bob.open(
                "/secure/g",
                OpenOptions::new().write().create_file(Vec::new())
            )
            .await
        ),
        ErrorCode::PermissionDenied
    );
    assert_eq!(code(fb.delete().await), ErrorCode::PermissionDenied);
    f.delete().await.unwrap();
    d.close().await;
}

/// Collects events until `n` have arrived or `timeout` passes.
async fn collect(
    stream: &mut warren_client::EventStream,
    n: usize,
    timeout: Duration,
) -> Vec<Event> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, stream.recv()).await {
            Ok(Some(e)) => out.push(e),
            _ => break,
        }
    }
    out
}

#[tokio::test]
async fn every_event_type_is_delivered_once_after_its_action() {
    let t = Target::start().await;
    let a = t.session().await;
    let b = t.session().await;
    let mut events = b.events();
    let (_d, _) = a
        .open("/w", OpenOptions::new().write().create_dir())
        .await
        .unwrap();
    let (_wd, _) = b
        .open("/w", OpenOptions::new().read().events(EventMask::ALL))
        .await
        .unwrap();
    let (f, _) = a
        .open(
            "/w/f",
            OpenOptions::new().read().write().create_file(Vec::new()),
        )
        .await
        .unwrap();
    let (wf, _) = b
        .open(
            "/w/f",
            OpenOptions::new().read().write().events(EventMask::ALL),
        )
        .await
        .unwrap();
    f.set_contents(b"v2".to_vec()).await.unwrap();
    // b holds the lock; a's request conflicts.
    wf.acquire(warren_client::LockMode::Exclusive, None)
        .await
        .unwrap();
    assert_eq!(
        code(f.try_acquire(warren_client::LockMode::Exclusive).await),
        ErrorCode::LockHeld
    );
    wf.release().await.unwrap();
    f.acquire(warren_client::LockMode::Exclusive, None)
        .await
        .unwrap();
    f.release().await.unwrap();
    f.delete().await.unwrap();
    let got = collect(&mut events, 7, Duration::from_secs(10)).await;
    let expect = vec![
        Event::ChildChanged {
            path: "/ls/local/w".into(),
            child: "f".into(),
            change: ChildChange::Added,
        },
        Event::ContentsModified {
            path: "/ls/local/w/f".into(),
        },
        Event::ChildChanged {
            path: "/ls/local/w".into(),
            child: "f".into(),
            change: ChildChange::Modified,
        },
        Event::ConflictingLock {
            path: "/ls/local/w/f".into(),
        },
        Event::LockAcquired {
            path: "/ls/local/w/f".into(),
        },
        Event::HandleInvalid {
            path: "/ls/local/w/f".into(),
        },
        Event::ChildChanged {
            path: "/ls/local/w".into(),
            child: "f".into(),
            change: ChildChange::Removed,
        },
    ];
    assert_eq!(got, expect);
    // Exactly once: nothing more arrives.
    assert!(collect(&mut events, 1, Duration::from_millis(500))
        .await
        .is_empty());
}
