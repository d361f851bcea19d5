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
    assert_eq!(e.code(), None);
    assert_eq!(e.code_name(), "UNAVAILABLE");
}
