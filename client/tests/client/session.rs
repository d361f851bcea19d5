//! The client against a real in-process cell (`warren_testkit::Cell`): sessions and their
//! KeepAlives, files and directories, compare-and-swap, locks and sequencers, events,
//! ephemeral nodes, and the errors each misuse gets.

use std::time::Duration;
use warren_client::{
    ChildChange, ClientOptions, ErrorCode, Event, EventMask, LockMode, NodeKind, OpenOptions,
    Sequencer, Session,
};
use warren_testkit::Cell;

async fn session(endpoints: &[String]) -> Session {
    Session::connect(endpoints).await.expect("connect")
}

/// Waits for the next event, failing the test after `within`.
async fn next_event(events: &mut warren_client::EventStream, within: Duration) -> Event {
    tokio::time::timeout(within, events.recv())
        .await
        .expect("an event in time")
        .expect("stream open")
}

#[tokio::test]
async fn files_and_directories() {
    let cell = Cell::builder().run().await;
    let s = session(&cell.endpoints()).await;
    assert_eq!(s.deployment(), "local");
    assert!(s.lease() > Duration::ZERO);

    let (dir, info) = s
        .open("/d", OpenOptions::new().write().create_dir().exclusive())
        .await
        .expect("mkdir");
    assert!(info.created);
    assert_eq!(info.stat.kind, NodeKind::Directory);
    assert_eq!(dir.path(), "/ls/local/d");

    let (f, info) = s
        .open(
            "/d/f",
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"one".to_vec())
                .read_contents(),
        )
        .await
        .expect("create file");
    assert!(info.created);
    assert_eq!(info.contents.as_deref(), Some(&b"one"[..]));
    let (contents, stat) = f.contents().await.expect("read");
    assert_eq!(contents, b"one");
    let generation = stat.content_generation;

    let stat = f.set_contents(b"two".to_vec()).await.expect("write");
    assert!(stat.content_generation > generation);
    let e = f
        .set_contents_if(b"three".to_vec(), generation)
        .await
        .expect_err("stale generation");
    assert_eq!(e.code(), Some(ErrorCode::GenerationMismatch));
    f.set_contents_if(b"three".to_vec(), stat.content_generation)
        .await
        .expect("current generation");
    assert_eq!(f.contents().await.expect("read").0, b"three");

    // Full and short paths name the same node.
    let (again, info) = s
        .open("/ls/local/d/f", OpenOptions::new().read().read_contents())
        .await
        .expect("open by full path");
    assert_eq!(info.contents.as_deref(), Some(&b"three"[..]));
    again.close().await;

    let (root, _) = s
        .open("/d", OpenOptions::new().read())
        .await
        .expect("open dir");
    let entries = root.read_dir().await.expect("ls");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, "f");
    assert_eq!(entries[0].stat.kind, NodeKind::File);

    let e = dir.delete().await.expect_err("not empty");
    assert_eq!(e.code(), Some(ErrorCode::NotEmpty));
    f.delete().await.expect("rm file");
    dir.delete().await.expect("rm dir");
    let e = s
        .open("/d/f", OpenOptions::new().read())
        .await
        .expect_err("deleted");
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    let e = s
        .open("relative", OpenOptions::new())
        .await
        .expect_err("relative path");
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    s.close().await.expect("close");
}

#[tokio::test]
async fn locks_and_sequencers() {
    let cell = Cell::builder().run().await;
    let a = session(&cell.endpoints()).await;
    let b = session(&cell.endpoints()).await;
    let create = OpenOptions::new().write().create_file(Vec::new());
    let (ha, _) = a.open("/leader", create.clone()).await.expect("open a");
    let (hb, _) = b.open("/leader", create).await.expect("open b");

    let seq_a = ha
        .acquire(LockMode::Exclusive, Some(Duration::from_secs(1)))
        .await
        .expect("a acquires");
    assert_eq!(seq_a.path, "/ls/local/leader");
    assert_eq!(seq_a.to_string().parse::<Sequencer>(), Ok(seq_a.clone()));
    assert_eq!(ha.get_sequencer().await.expect("get"), seq_a);
    let e = hb
        .try_acquire(LockMode::Exclusive)
        .await
        .expect_err("held by a");
    assert_eq!(e.code(), Some(ErrorCode::LockHeld));
    let e = hb
        .acquire(LockMode::Shared, Some(Duration::from_millis(200)))
        .await
        .expect_err("still held by a");
    assert_eq!(e.code(), Some(ErrorCode::LockHeld));
    assert!(b.check_sequencer(&seq_a).await.expect("check"));

    // b waits; a releases; b gets it and a's sequencer goes stale.
    let waiter = tokio::spawn(async move {
        let s = hb.acquire(LockMode::Exclusive, None).await;
        (hb, s)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ha.release().await.expect("release"));
    let (hb, seq_b) = waiter.await.expect("join");
    let seq_b = seq_b.expect("b acquires");
    assert!(seq_b.lock_generation > seq_a.lock_generation);
    assert!(!a.check_sequencer(&seq_a).await.expect("check"));
    assert!(a.check_sequencer(&seq_b).await.expect("check"));
    assert!(!ha.release().await.expect("a no longer holds it"));

    // Closing b's session frees the lock.
    drop(hb);
    b.close().await.expect("close b");
    ha.try_acquire(LockMode::Exclusive)
        .await
        .expect("free after b's session closed");
    a.close().await.expect("close a");
}

#[tokio::test]
async fn events_arrive_once() {
    let cell = Cell::builder().run().await;
    let watcher = session(&cell.endpoints()).await;
    let writer = session(&cell.endpoints()).await;
    let (w, _) = writer
        .open("/f", OpenOptions::new().write().create_file(b"0".to_vec()))
        .await
        .expect("create");
    let mut events = watcher.events();
    let (_watched, _) = watcher
        .open("/f", OpenOptions::new().read().events(EventMask::ALL))
        .await
        .expect("watch");
    let (_dir, _) = watcher
        .open(
            "/",
            OpenOptions::new().read().events(EventMask::CHILD_CHANGED),
        )
        .await
        .expect("watch root");

    // Writing /f is a contents change of /f and a child change of /.
    w.set_contents(b"1".to_vec()).await.expect("write");
    let mut got = vec![
        next_event(&mut events, Duration::from_secs(5)).await,
        next_event(&mut events, Duration::from_secs(5)).await,
    ];
    got.sort_by_key(|e| e.to_string());
    assert_eq!(
        got,
        vec![
            Event::ChildChanged {
                path: "/ls/local".into(),
                child: "f".into(),
                change: ChildChange::Modified
            },
            Event::ContentsModified {
                path: "/ls/local/f".into()
            },
        ]
    );
    writer
        .open("/g", OpenOptions::new().write().create_file(Vec::new()))
        .await
        .expect("create sibling");
    assert_eq!(
        next_event(&mut events, Duration::from_secs(5)).await,
        Event::ChildChanged {
            path: "/ls/local".into(),
            child: "g".into(),
            change: ChildChange::Added
        }
    );
    // Nothing is delivered twice.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), events.recv())
            .await
            .is_err(),
        "no further events"
    );

    // A second subscriber sees later events too.
    let mut second = watcher.events();
    w.set_contents(b"2".to_vec()).await.expect("write");
    for stream in [&mut events, &mut second] {
        let mut got = vec![
            next_event(stream, Duration::from_secs(5)).await,
            next_event(stream, Duration::from_secs(5)).await,
        ];
        got.retain(|e| matches!(e, Event::ContentsModified { .. }));
        assert_eq!(
            got,
            vec![Event::ContentsModified {
                path: "/ls/local/f".into()
            }]
        );
    }
    watcher.close().await.expect("close");
    assert_eq!(events.recv().await, None, "stream ends with the session");
}

#[tokio::test]
async fn keepalives_outlive_the_lease() {
    let cell = Cell::builder().lease(Duration::from_secs(2)).run().await;
    let s = session(&cell.endpoints()).await;
    let (h, _) = s
        .open("/f", OpenOptions::new().write().create_file(b"x".to_vec()))
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(s.is_live());
    h.set_contents(b"y".to_vec())
        .await
        .expect("session still alive after 2.5 leases");
    s.close().await.expect("close");
}

#[tokio::test]
async fn ephemeral_nodes_go_with_their_session() {
    let cell = Cell::builder().run().await;
    let a = session(&cell.endpoints()).await;
    let b = session(&cell.endpoints()).await;
    let (_h, info) = a
        .open(
            "/e",
            OpenOptions::new()
                .write()
                .create_file(b"x".to_vec())
                .ephemeral(),
        )
        .await
        .expect("create ephemeral");
    assert!(info.stat.ephemeral);
    let (seen, _) = b
        .open("/e", OpenOptions::new().read())
        .await
        .expect("visible while a holds it");
    seen.close().await;
    a.close().await.expect("close a");
    let e = b
        .open("/e", OpenOptions::new().read())
        .await
        .expect_err("gone with a's session");
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn a_closed_session_refuses_calls() {
    let cell = Cell::builder().run().await;
    let s = Session::connect_with(ClientOptions::new(cell.endpoints()).principal("alice"))
        .await
        .expect("connect");
    let (h, _) = s
        .open("/f", OpenOptions::new().write().create_file(Vec::new()))
        .await
        .expect("create");
    s.close().await.expect("close");
    assert!(!s.is_live());
    let e = h.stat().await.expect_err("closed");
    assert_eq!(e.code(), Some(ErrorCode::SessionExpired));
    h.close().await; // never fails
    s.close().await.expect("closing twice is fine");
}

#[tokio::test]
async fn locate_and_unreachable_endpoints() {
    let cell = Cell::builder().run().await;
    let info = warren_client::locate(&cell.endpoints(), Duration::from_secs(5))
        .await
        .expect("locate");
    assert!(info.is_master);
    assert_eq!(info.deployment, "local");
    // A dead endpoint first in the list is skipped.
    let endpoints = vec!["127.0.0.1:1".to_string(), cell.addr()];
    let s = session(&endpoints).await;
    assert_eq!(s.locate().await.expect("locate").epoch, s.epoch());
    s.close().await.expect("close");

    let e = Session::connect(&["127.0.0.1:1"])
        .await
        .expect_err("nothing there");
    // Nothing was sent: the table's UNREACHABLE, not applied.
    assert_eq!(e.code(), Some(warren_proto::ErrorCode::Unreachable), "{e}");
    assert_eq!(e.code_name(), "UNREACHABLE");
    assert!(!e.may_have_taken_effect());
}

#[tokio::test]
async fn the_cache_answers_reads_and_the_master_invalidates_it() {
    let cell = Cell::builder().run().await;
    let reader = session(&cell.endpoints()).await;
    let writer = session(&cell.endpoints()).await;
    let (w, _) = writer
        .open("/f", OpenOptions::new().write().create_file(b"v1".to_vec()))
        .await
        .expect("create");
    let (r, info) = reader
        .open("/f", OpenOptions::new().read())
        .await
        .expect("open");
    assert!(info.cacheable);
    assert_eq!(r.contents().await.expect("read").0, b"v1");
    let before = reader.cache_stats();
    assert_eq!(r.contents().await.expect("read").0, b"v1");
    assert_eq!(r.stat().await.expect("stat").content_generation, 0);
    let after = reader.cache_stats();
    assert_eq!(after.hits, before.hits + 2, "{before:?} → {after:?}");
    assert_eq!(after.misses, before.misses);

    // Another session writes: once its write is acknowledged, no read returns the old
    // value (the master waited for our acknowledgement, sent after we dropped it).
    for i in 2..5 {
        let value = format!("v{i}");
        w.set_contents(value.clone()).await.expect("write");
        assert_eq!(r.contents().await.expect("read").0, value.as_bytes());
    }
    assert!(reader.cache_stats().invalidations >= 3);

    // Our own write drops our copy (write-through), and the next read is fresh.
    let (rw, _) = reader
        .open("/f", OpenOptions::new().read().write())
        .await
        .expect("open rw");
    rw.set_contents(b"mine".to_vec()).await.expect("own write");
    assert_eq!(r.contents().await.expect("read").0, b"mine");
    w.set_contents(b"theirs".to_vec()).await.expect("write");
    assert_eq!(r.contents().await.expect("read").0, b"theirs");
    reader.close().await.expect("close");
    writer.close().await.expect("close");
}

#[tokio::test]
async fn absence_and_listings_are_cached_and_invalidated() {
    let cell = Cell::builder().run().await;
    let a = session(&cell.endpoints()).await;
    let b = session(&cell.endpoints()).await;
    let e = a
        .open("/late", OpenOptions::new().read())
        .await
        .expect_err("missing");
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    let hits = a.cache_stats().hits;
    let e = a
        .open("/late", OpenOptions::new().read())
        .await
        .expect_err("still missing");
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    assert_eq!(
        a.cache_stats().hits,
        hits + 1,
        "absence came from the cache"
    );

    let (root, _) = a.open("/", OpenOptions::new().read()).await.expect("root");
    let names = root.child_names().await.expect("ls");
    assert_eq!(root.child_names().await.expect("ls again"), names);
    assert!(!names.contains(&"late".to_string()));

    // b creates it: a's cached absence and listing are invalidated first.
    let (created, _) = b
        .open(
            "/late",
            OpenOptions::new().write().create_file(b"x".to_vec()),
        )
        .await
        .expect("create");
    let (found, info) = a
        .open("/late", OpenOptions::new().read().read_contents())
        .await
        .expect("now it exists");
    assert_eq!(info.contents.as_deref(), Some(&b"x"[..]));
    assert!(root
        .child_names()
        .await
        .expect("ls")
        .contains(&"late".to_string()));
    found.close().await;
    created.delete().await.expect("delete");
    assert!(!root
        .child_names()
        .await
        .expect("ls")
        .contains(&"late".to_string()));
    a.close().await.expect("close");
    b.close().await.expect("close");
}

#[tokio::test]
async fn identical_read_only_opens_share_one_server_handle() {
    let cell = Cell::builder().run().await;
    let s = session(&cell.endpoints()).await;
    let (w, _) = s
        .open(
            "/e",
            OpenOptions::new()
                .write()
                .create_file(b"e".to_vec())
                .ephemeral(),
        )
        .await
        .expect("create");
    let opts = OpenOptions::new().read();
    let (one, _) = s.open("/e", opts.clone()).await.expect("first");
    let hits = s.cache_stats().hits;
    let (two, info) = s.open("/e", opts.clone()).await.expect("second");
    assert_eq!(s.cache_stats().hits, hits + 1, "the second open was local");
    assert_eq!(s.cache_stats().handles, 1);
    assert!(info.stat.ephemeral);
    // Closing one leaves the other working (and the ephemeral node held).
    w.close().await;
    one.close().await;
    assert_eq!(two.contents().await.expect("still open").0, b"e");
    let other = session(&cell.endpoints()).await;
    let (seen, _) = other
        .open("/e", OpenOptions::new())
        .await
        .expect("held by the shared handle");
    seen.close().await;
    // The last user closes it at the master: the ephemeral node goes.
    two.close().await;
    assert_eq!(s.cache_stats().handles, 0);
    let e = other
        .open("/e", OpenOptions::new())
        .await
        .expect_err("gone");
    assert_eq!(e.code(), Some(ErrorCode::NotFound));

    // A sequencer set on a shared handle binds that handle only.
    let (lock, _) = s
        .open("/l", OpenOptions::new().write().create_file(Vec::new()))
        .await
        .expect("create lock");
    let seq = lock
        .acquire(LockMode::Exclusive, None)
        .await
        .expect("acquire");
    let (a, _) = s.open("/l", opts.clone()).await.expect("a");
    let (b, _) = s.open("/l", opts.clone()).await.expect("b");
    a.set_sequencer(&seq).await.expect("set sequencer");
    lock.release().await.expect("release");
    let e = a.stat().await.expect_err("a's sequencer is stale");
    assert_eq!(e.code(), Some(ErrorCode::GenerationMismatch));
    b.stat().await.expect("b is not bound to it");
    s.close().await.expect("close");
    other.close().await.expect("close");
}

#[tokio::test]
async fn poison_fails_calls_in_flight_and_later_but_close_works() {
    let cell = Cell::builder().run().await;
    let a = session(&cell.endpoints()).await;
    let b = session(&cell.endpoints()).await;
    let create = OpenOptions::new().write().create_file(Vec::new());
    let (ha, _) = a.open("/p", create.clone()).await.expect("open a");
    ha.acquire(LockMode::Exclusive, None)
        .await
        .expect("a holds");
    let (hb, _) = b.open("/p", create).await.expect("open b");
    let hb = std::sync::Arc::new(hb);
    let waiter = {
        let hb = hb.clone();
        tokio::spawn(async move { hb.acquire(LockMode::Exclusive, None).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    hb.poison();
    let e = waiter.await.expect("join").expect_err("poisoned");
    assert_eq!(e.code_name(), "CANCELLED");
    assert!(matches!(e, warren_client::Error::Poisoned(_)));
    let e = hb.stat().await.expect_err("poisoned");
    assert_eq!(e.code_name(), "CANCELLED");
    if let Ok(hb) = std::sync::Arc::try_unwrap(hb) {
        hb.close().await;
    }
    a.close().await.expect("close");
    b.close().await.expect("close");
}

#[tokio::test]
async fn a_session_without_cache_asks_the_master_every_time() {
    let cell = Cell::builder().run().await;
    let s = Session::connect_with(ClientOptions::new(cell.endpoints()).cache(false))
        .await
        .expect("connect");
    let (h, _) = s
        .open(
            "/f",
            OpenOptions::new().read().write().create_file(b"x".to_vec()),
        )
        .await
        .expect("create");
    h.contents().await.expect("read");
    h.contents().await.expect("read");
    let stats = s.cache_stats();
    assert_eq!((stats.entries, stats.hits), (0, 0), "{stats:?}");
    s.close().await.expect("close");
}
