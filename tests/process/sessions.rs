//! End to end: application sessions through the client library survive a restart of
//! the cell process (a failover on the embedded store), with the real binary and SIGKILL.

use crate::{bin, expect_event, free_port};
use std::time::{Duration, Instant};
use warren_client::{ClientOptions, ErrorCode, Event, EventMask, LockMode, OpenOptions, Session};
use warren_testkit::WarrenProcess;

async fn cell(data: &str, listen: &str, extra: &[&str]) -> WarrenProcess {
    let mut args = vec!["cell", "--name", "c0", "--listen", listen, "--data", data];
    args.extend_from_slice(extra);
    WarrenProcess::spawn(bin(), &args).await
}

/// The failover scenario with the defaults users run: 12 s lease, 45 s grace.
/// The cell is down for 15 s, longer than the local lease, so every client goes into
/// jeopardy and must come back safe within its grace period.
#[tokio::test]
async fn sessions_locks_ephemeral_files_and_caches_survive_a_cell_restart_with_default_timings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut c = cell(data, &listen, &[]).await;
    let eps = vec![listen.clone()];
    let (a, b, d) = (
        Session::connect(&eps).await.unwrap(),
        Session::connect(&eps).await.unwrap(),
        Session::connect(&eps).await.unwrap(),
    );
    let (mut ea, mut eb, mut ed) = (a.events(), b.events(), d.events());
    // a: an exclusive lock and an open watch; b: a shared lock and cached data;
    // d: an ephemeral file.
    let (xa, _) = a
        .open("/x", OpenOptions::new().write().create_file(Vec::new()))
        .await
        .unwrap();
    let seq_x = xa.acquire(LockMode::Exclusive, None).await.unwrap();
    let (wa, _) = a
        .open("/x", OpenOptions::new().read().events(EventMask::ALL))
        .await
        .unwrap();
    let (sb, _) = b
        .open("/s", OpenOptions::new().write().create_file(Vec::new()))
        .await
        .unwrap();
    sb.acquire(LockMode::Shared, None).await.unwrap();
    let (data_b, _) = b
        .open(
            "/data",
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"v1".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(data_b.contents().await.unwrap().0, b"v1");
    assert_eq!(data_b.contents().await.unwrap().0, b"v1");
    assert!(
        b.cache_stats().hits >= 1,
        "b's second read was not served from its cache"
    );
    let (ed_h, _) = d
        .open(
            "/e",
            OpenOptions::new()
                .write()
                .create_file(b"d".to_vec())
                .ephemeral(),
        )
        .await
        .unwrap();

    c.kill9().await;
    let down = Instant::now();
    // Every client's local lease ends: jeopardy.
    for (name, ev) in [("a", &mut ea), ("b", &mut eb), ("d", &mut ed)] {
        expect_event(name, ev, Duration::from_secs(14), |e| {
            matches!(e, Event::Jeopardy)
        })
        .await;
        eprintln!("{name}: jeopardy after {:?}", down.elapsed());
    }
    assert_eq!(
        b.cache_stats().entries,
        0,
        "b's cache was not emptied on jeopardy"
    );
    // Calls made now wait (they must not fail, and must not see stale data).
    let blocked = tokio::spawn(async move { (data_b.contents().await, data_b) });
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(down.elapsed())).await;
    assert!(
        !blocked.is_finished(),
        "a call returned while the session was in jeopardy"
    );
    let _c2 = cell(data, &listen, &[]).await;
    for (name, ev) in [("a", &mut ea), ("b", &mut eb), ("d", &mut ed)] {
        let seen = expect_event(name, ev, Duration::from_secs(40), |e| {
            matches!(e, Event::Safe)
        })
        .await;
        assert!(
            !seen.iter().any(|e| matches!(e, Event::Expired)),
            "{name}: {seen:?}"
        );
        let seen = expect_event(name, ev, Duration::from_secs(10), |e| {
            matches!(e, Event::MasterFailover)
        })
        .await;
        eprintln!("{name}: safe, then failover; events {seen:?}");
    }
    let (got, data_b) = tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.unwrap().0, b"v1");
    // Locks are still held by the same clients.
    let e = Session::connect(&eps).await.unwrap();
    let (xe, _) = e.open("/x", OpenOptions::new().write()).await.unwrap();
    assert_eq!(
        xe.try_acquire(LockMode::Exclusive)
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::LockHeld)
    );
    let (se, _) = e.open("/s", OpenOptions::new().write()).await.unwrap();
    assert_eq!(
        se.try_acquire(LockMode::Exclusive)
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::LockHeld)
    );
    assert!(
        e.check_sequencer(&seq_x).await.unwrap(),
        "a's sequencer is still current"
    );
    assert_eq!(xa.get_sequencer().await.unwrap(), seq_x);
    // The ephemeral file is still there; handles work again; the watch still fires.
    assert_eq!(
        e.open("/e", OpenOptions::new().read().read_contents())
            .await
            .unwrap()
            .1
            .contents
            .unwrap(),
        b"d"
    );
    ed_h.stat().await.unwrap();
    wa.stat().await.unwrap();
    let (xw, _) = e.open("/x", OpenOptions::new().write()).await.unwrap();
    drop(xw);
    // Caches were flushed: b reads the new value after e writes.
    let (de, _) = e.open("/data", OpenOptions::new().write()).await.unwrap();
    de.set_contents(b"v2".to_vec()).await.unwrap();
    assert_eq!(data_b.contents().await.unwrap().0, b"v2");
}

/// A raw session (no library): it holds what it holds and never speaks again.
async fn silent_holder(addr: &str) -> warren_proto::pb::SessionContext {
    use warren_proto::pb;
    let mut c = pb::warren_client::WarrenClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let s = c
        .create_session(pb::CreateSessionRequest {
            principal: "gone".into(),
            proxy: false,
        })
        .await
        .unwrap()
        .into_inner();
    let ctx = pb::SessionContext {
        session_id: s.session_id,
        secret: s.secret,
        epoch: s.epoch,
        map_epoch: 0,
        ..Default::default()
    };
    let spec = |eph: bool| {
        Some(pb::CreateSpec {
            instance: 0,
            kind: pb::NodeKind::File as i32,
            ephemeral: eph,
            initial_contents: b"h".to_vec(),
            acl: None,
            exclusive: false,
        })
    };
    let open = |path: &str, delay: u64, eph: bool| pb::OpenRequest {
        target: 0,
        ctx: Some(ctx.clone()),
        path: path.into(),
        intent: 2,
        events: 0,
        lock_delay_ms: delay,
        create: spec(eph),
        read: false,
    };
    let l = c
        .open(open("/ls/local/l", 3000, false))
        .await
        .unwrap()
        .into_inner()
        .handle;
    c.try_acquire(pb::TryAcquireRequest {
        ctx: Some(ctx.clone()),
        handle: l,
        mode: 1,
    })
    .await
    .unwrap();
    c.open(open("/ls/local/eh", 0, true)).await.unwrap();
    ctx
}

/// Short timings (2 s lease, 6 s grace, 4 s ephemeral clean-up, 3 s lock-delay): one holder
/// never comes back; the other does.
#[tokio::test]
async fn a_holder_that_never_returns_loses_its_ephemeral_file_and_lock_after_the_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let extra = ["--lease", "2s", "--ephemeral-cleanup", "4s"];
    let mut c = cell(data, &listen, &extra).await;
    let eps = vec![listen.clone()];
    let opts = || ClientOptions::new(eps.clone()).grace_period(Duration::from_secs(6));
    let survivor = Session::connect_with(opts()).await.unwrap();
    let mut events = survivor.events();
    let (es, _) = survivor
        .open(
            "/es",
            OpenOptions::new()
                .write()
                .create_file(b"s".to_vec())
                .ephemeral(),
        )
        .await
        .unwrap();
    silent_holder(&listen).await;
    c.kill9().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _c2 = cell(data, &listen, &extra).await;
    let restarted = Instant::now();
    expect_event("client", &mut events, Duration::from_secs(10), |e| {
        matches!(e, Event::MasterFailover)
    })
    .await;
    es.stat().await.unwrap();
    let other = Session::connect_with(opts()).await.unwrap();
    let (l, _) = other.open("/l", OpenOptions::new().write()).await.unwrap();
    // The silent holder's session ends one (restored) lease after the restart; its lock
    // then stays unavailable for its lock-delay.
    assert_eq!(
        l.try_acquire(LockMode::Exclusive).await.unwrap_err().code(),
        Some(ErrorCode::LockHeld)
    );
    l.acquire(LockMode::Exclusive, Some(Duration::from_secs(20)))
        .await
        .unwrap();
    let free_after = restarted.elapsed();
    assert!(
        free_after >= Duration::from_millis(4800),
        "lock free after {free_after:?}: lease 2 s + lock-delay 3 s not honoured"
    );
    // Its ephemeral file goes once the clean-up interval has passed; the survivor's stays.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match other.open("/eh", OpenOptions::new().read()).await {
            Err(e) if e.code() == Some(ErrorCode::NotFound) => break,
            Ok((h, _)) => h.close().await,
            Err(e) => panic!("{e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned ephemeral file was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        restarted.elapsed() >= Duration::from_secs(4),
        "deleted before the clean-up interval"
    );
    let (h, info) = other
        .open("/es", OpenOptions::new().read().read_contents())
        .await
        .unwrap();
    assert_eq!(info.contents.unwrap(), b"s");
    h.close().await;
}

/// Restart after the grace period: sessions end `Expired` and their locks are released
/// (after their lock-delay).
#[tokio::test]
async fn a_restart_after_the_grace_period_expires_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let extra = ["--lease", "2s"];
    let mut c = cell(data, &listen, &extra).await;
    let eps = vec![listen.clone()];
    let opts = ClientOptions::new(eps.clone()).grace_period(Duration::from_secs(3));
    let s = Session::connect_with(opts).await.unwrap();
    let mut events = s.events();
    let (l, _) = s
        .open(
            "/l",
            OpenOptions::new()
                .write()
                .lock_delay(Duration::from_secs(2))
                .create_file(Vec::new()),
        )
        .await
        .unwrap();
    l.acquire(LockMode::Exclusive, None).await.unwrap();
    c.kill9().await;
    expect_event("client", &mut events, Duration::from_secs(5), |e| {
        matches!(e, Event::Jeopardy)
    })
    .await;
    let seen = expect_event("client", &mut events, Duration::from_secs(10), |e| {
        matches!(e, Event::Expired)
    })
    .await;
    assert!(!seen.iter().any(|e| matches!(e, Event::Safe)), "{seen:?}");
    let _c2 = cell(data, &listen, &extra).await;
    let restarted = Instant::now();
    // Every call on the expired session fails with SESSION_EXPIRED; close does not fail.
    assert_eq!(
        l.stat().await.unwrap_err().code(),
        Some(ErrorCode::SessionExpired)
    );
    assert_eq!(
        s.open("/l", OpenOptions::new().read())
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::SessionExpired)
    );
    l.close().await;
    // Its lock is released once the master lets the dead session go (one lease), after
    // its lock-delay (2 s).
    let t = Session::connect(&eps).await.unwrap();
    let (lt, _) = t.open("/l", OpenOptions::new().write()).await.unwrap();
    lt.acquire(LockMode::Exclusive, Some(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(
        restarted.elapsed() >= Duration::from_millis(3800),
        "lock free after {:?}",
        restarted.elapsed()
    );
}

/// An idle library session straight to a cell costs the cell its KeepAlives and nothing
/// else: a frozen or cut-off master is noticed by the connection's HTTP/2 PINGs, not by
/// calls per session (docs/design.md §9, "A frozen or cut-off master"). A session used to
/// ask its master `Locate` every second while a KeepAlive was held, twelve times the RPCs
/// of its KeepAlives with the default lease.
#[tokio::test]
async fn an_idle_direct_session_sends_its_cell_only_keepalives() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let c = cell(
        dir.path().to_str().unwrap(),
        "127.0.0.1:0",
        &["--admin", &admin, "--lease", "3s"],
    )
    .await;
    let eps = vec![c.addr()];
    let mut sessions = Vec::new();
    for _ in 0..5 {
        sessions.push(Session::connect(&eps).await.expect("connect"));
    }
    let count = |method: &'static str| {
        let admin = admin.clone();
        async move {
            crate::metrics::metric_with(
                &admin,
                "warren_rpc_total",
                &[("tier", "cell"), ("method", method)],
            )
            .await
        }
    };
    let (locates, keepalives) = (count("Locate").await, count("KeepAlive").await);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let locates = count("Locate").await - locates;
    let keepalives = count("KeepAlive").await - keepalives;
    // 5 sessions, 3 s leases, replies about 1 s before each lease ends: about 15
    // KeepAlives in 6 s. Before, also about 30 Locates (one per session per second).
    assert!(
        (5.0..=40.0).contains(&keepalives),
        "{keepalives} KeepAlives from 5 sessions in 6 s"
    );
    assert_eq!(
        locates, 0.0,
        "idle direct sessions asked Locate {locates} times"
    );
    for s in sessions {
        let _ = s.close().await;
    }
}
