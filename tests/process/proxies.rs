//! Proxy failover with real processes (docs/design.md §10, docs/proxy.md "Proxy failover"): one
//! `warren cell` and two `warren proxy` processes in front of it; the proxy that several
//! clients use is killed with SIGKILL. Each client moves to the other proxy within its
//! grace period, which claims it at the cell: its session, locks, handles and ephemeral
//! file survive, and a watcher on the surviving proxy never sees a lock free or the
//! ephemeral file gone — not while the clients move, not when the dead proxy's session at
//! the cell expires, and not when the claim window for its client sessions ends.
//!
//! Also: writes to files a killed proxy had cached wait only for the client leases it
//! could have granted (its hold-back, docs/design.md §10 "A dead proxy"), not for its whole
//! lease at the cell, and no longer than a short grace once its clients were claimed by
//! the other proxy.

use crate::metrics::metric;
use crate::{bin, expect_event};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warren_client::{
    ClientOptions, ErrorCode, Event, EventMask, EventStream, Handle, LockMode, OpenOptions,
    Sequencer, Session,
};
use warren_testkit::WarrenProcess;

/// Client grace period.
const GRACE: Duration = Duration::from_secs(15);
/// Lease the cell grants proxy sessions (`--proxy-lease`).
const PROXY_LEASE: Duration = Duration::from_secs(5);
/// How long the cell keeps a dead proxy session's client sessions (`--claim-window`).
const CLAIM_WINDOW: Duration = Duration::from_secs(20);

/// A `warren proxy` process and the address it printed (`proxies: ADDR`).
struct ProxyProcess {
    process: WarrenProcess,
    addr: String,
}

async fn proxy(cell: &str) -> ProxyProcess {
    let process = WarrenProcess::spawn_proxy(bin(), cell, "2s").await;
    let addr = process.proxy_addr();
    ProxyProcess { process, addr }
}

/// A session that sits at proxy `home` and prefers it (its search order starts there).
/// Sessions are created at a proxy chosen per connect and ordered by their id, so this
/// creates sessions (closing the misfits) until one fits: a quarter do with two proxies.
async fn session_at(proxies: &[String], home: &str, cache: bool) -> Session {
    for _ in 0..100 {
        let s = Session::connect_with(
            ClientOptions::proxies(proxies.to_vec())
                .grace_period(GRACE)
                .cache(cache),
        )
        .await
        .expect("connect through the proxies");
        if s.master() == home && s.search_order().first().map(String::as_str) == Some(home) {
            return s;
        }
        s.close().await.expect("close a session we do not need");
    }
    panic!("no session out of 100 sat at and preferred {home}");
}

/// Everything already delivered on `events`.
fn drain(events: &mut EventStream) -> Vec<Event> {
    std::iter::from_fn(|| events.try_recv()).collect()
}

/// One client of the dead proxy.
struct Client {
    name: &'static str,
    session: Session,
    events: EventStream,
    /// Events seen so far.
    seen: Vec<Event>,
}

/// What the watcher observed.
#[derive(Default)]
struct Watch {
    rounds: u64,
    /// Longest time between the starts of two consecutive rounds.
    max_gap: Duration,
    violations: Vec<String>,
}

/// Checks, every 100 ms until `stop`: another session's `TryAcquire` of the exclusive lock
/// and (exclusively) of the shared lock fails with `LOCK_HELD`, and the ephemeral file
/// can be opened. Any other outcome is a violation.
fn watcher(
    w: Session,
    x: Handle,
    s: Handle,
    stop: Arc<AtomicBool>,
    watch: Arc<Mutex<Watch>>,
) -> tokio::task::JoinHandle<(Session, Handle, Handle)> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<Instant> = None;
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            let now = Instant::now();
            let at = started.elapsed();
            let mut bad = Vec::new();
            for (what, h) in [("exclusive lock /x", &x), ("shared lock /s", &s)] {
                match h.try_acquire(LockMode::Exclusive).await {
                    Err(e) if e.code() == Some(ErrorCode::LockHeld) => {}
                    Ok(seq) => bad.push(format!("{at:?}: took the {what}: {seq}")),
                    Err(e) => bad.push(format!("{at:?}: TryAcquire of the {what}: {e}")),
                }
            }
            match w.open("/e", OpenOptions::new().read()).await {
                Ok((h, _)) => h.close().await,
                Err(e) => bad.push(format!("{at:?}: open of the ephemeral /e: {e}")),
            }
            let mut watch = watch.lock().unwrap();
            watch.rounds += 1;
            if let Some(prev) = last {
                watch.max_gap = watch.max_gap.max(now - prev);
            }
            last = Some(now);
            watch.violations.extend(bad);
        }
        (w, x, s)
    })
}

/// One cell, on the embedded store, with short leases.
async fn cell(data: &std::path::Path) -> WarrenProcess {
    WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "main",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
            "--lease",
            "2s",
            "--proxy-lease",
            "5s",
            "--claim-window",
            "20s",
        ],
    )
    .await
}

fn signal(process: &WarrenProcess, sig: &str) {
    let pid = process.pid().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_of_a_killed_proxy_keep_their_locks_and_ephemeral_files_at_the_next_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let cell = cell(dir.path()).await;
    let front = format!("main={}", cell.addr());
    let mut pa = proxy(&front).await;
    let pb = proxy(&front).await;
    let (a, b) = (pa.addr.clone(), pb.addr.clone());
    let list = vec![a.clone(), b.clone()];

    // The clients of proxy A: an exclusive lock (and a watch on its file), a shared lock
    // with two holders, an ephemeral file.
    let mut clients = Vec::new();
    for name in ["x", "s1", "s2", "e"] {
        let session = session_at(&list, &a, true).await;
        assert_eq!(session.search_order(), [a.as_str(), b.as_str()]);
        clients.push(Client {
            name,
            events: session.events(),
            session,
            seen: Vec::new(),
        });
    }
    let (xh, _) = clients[0]
        .session
        .open("/x", OpenOptions::new().write().create_file(b"x0".to_vec()))
        .await
        .unwrap();
    let seq_x = xh.acquire(LockMode::Exclusive, None).await.unwrap();
    let (x_watch, _) = clients[0]
        .session
        .open("/x", OpenOptions::new().read().events(EventMask::ALL))
        .await
        .unwrap();
    let mut shared: Vec<(Handle, Sequencer)> = Vec::new();
    for c in &clients[1..3] {
        let (h, _) = c
            .session
            .open("/s", OpenOptions::new().write().create_file(Vec::new()))
            .await
            .unwrap();
        let seq = h.acquire(LockMode::Shared, None).await.unwrap();
        shared.push((h, seq));
    }
    let (eh, _) = clients[3]
        .session
        .open(
            "/e",
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"e0".to_vec())
                .ephemeral(),
        )
        .await
        .unwrap();
    assert_eq!(eh.contents().await.unwrap().0, b"e0");

    // The watcher sits at proxy B (and prefers it), with its cache off: every check asks.
    let w = session_at(&list, &b, false).await;
    let mut w_events = w.events();
    let (wx, _) = w.open("/x", OpenOptions::new().write()).await.unwrap();
    let (ws, _) = w.open("/s", OpenOptions::new().write()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watch = Arc::new(Mutex::new(Watch::default()));
    let watching = watcher(w, wx, ws, stop.clone(), watch.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let w = watch.lock().unwrap();
        assert!(w.rounds >= 2, "the watcher is not checking");
        assert!(
            w.violations.is_empty(),
            "before the kill: {:?}",
            w.violations
        );
    }

    pa.process.kill9().await;
    let killed = Instant::now();
    // Each client's first successful call after the kill (an uncached round trip).
    let mut firsts = Vec::new();
    for c in &clients {
        let (session, seq, b) = (c.session.clone(), seq_x.clone(), b.clone());
        firsts.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            loop {
                match session.check_sequencer(&seq).await {
                    Ok(current) => {
                        let took = killed.elapsed();
                        assert!(current, "the exclusive lock's sequencer went stale");
                        assert_eq!(session.master(), b, "the call did not go to proxy B");
                        return (took, failures);
                    }
                    Err(e) => failures.push(e.to_string()),
                }
                assert!(
                    killed.elapsed() < GRACE,
                    "no successful call within the grace period: {failures:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let mut took = Vec::new();
    for (c, first) in clients.iter().zip(firsts) {
        let (t, failures) = first.await.expect("measuring task");
        eprintln!(
            "{}: first successful call through proxy B {t:?} after the kill ({} failed before)",
            c.name,
            failures.len()
        );
        took.push(t);
    }
    for c in &mut clients {
        c.seen = expect_event(c.name, &mut c.events, GRACE, |e| {
            matches!(e, Event::MasterFailover)
        })
        .await;
        assert!(
            !c.seen.contains(&Event::Expired),
            "{}: {:?}",
            c.name,
            c.seen
        );
        assert_eq!(c.session.master(), b, "{} is not at proxy B", c.name);
        assert!(c.session.is_live(), "{}", c.name);
        eprintln!("{}: events {:?}", c.name, c.seen);
    }

    // Locks are still held, by the same holdings.
    assert_eq!(xh.get_sequencer().await.unwrap(), seq_x);
    for (h, seq) in &shared {
        assert_eq!(&h.get_sequencer().await.unwrap(), seq);
    }
    // Handles work: reads and writes through them, at proxy B.
    assert_eq!(eh.contents().await.unwrap().0, b"e0");
    eh.set_contents(b"e1".to_vec()).await.unwrap();
    assert_eq!(eh.contents().await.unwrap().0, b"e1");
    assert_eq!(x_watch.contents().await.unwrap().0, b"x0");
    xh.set_contents(b"x1".to_vec()).await.unwrap();
    assert_eq!(x_watch.contents().await.unwrap().0, b"x1");
    // The recreated watch still fires.
    let seen = expect_event("x", &mut clients[0].events, Duration::from_secs(5), |e| {
        matches!(e, Event::ContentsModified { .. })
    })
    .await;
    clients[0].seen.extend(seen);

    // Keep watching past the end of the dead proxy's session at the cell and past the
    // claim window of its client sessions: the claimed sessions must not be released with
    // the orphans that were never claimed.
    let watch_until = PROXY_LEASE + CLAIM_WINDOW + Duration::from_secs(2);
    tokio::time::sleep(watch_until.saturating_sub(killed.elapsed())).await;
    stop.store(true, Ordering::SeqCst);
    let (w, wx, ws) = tokio::time::timeout(Duration::from_secs(20), watching)
        .await
        .expect("the watcher stopped")
        .expect("the watcher panicked");
    let watch = std::mem::take(&mut *watch.lock().unwrap());
    eprintln!(
        "watcher: {} rounds over {:?} after the kill, longest gap {:?}",
        watch.rounds,
        killed.elapsed(),
        watch.max_gap
    );
    assert!(watch.violations.is_empty(), "{:#?}", watch.violations);
    assert!(
        watch.max_gap < Duration::from_secs(1),
        "the watcher went {:?} without checking",
        watch.max_gap
    );
    // (A jeopardy from a stalled machine would be no failure of what is tested here; an
    // expiry, or another fail-over, would be.)
    let w_seen = drain(&mut w_events);
    assert!(
        !w_seen
            .iter()
            .any(|e| matches!(e, Event::Expired | Event::MasterFailover)),
        "the watcher's session saw {w_seen:?}"
    );

    // Still the same holders; nobody's session ended.
    assert_eq!(xh.get_sequencer().await.unwrap(), seq_x);
    assert_eq!(eh.contents().await.unwrap().0, b"e1");
    for c in &mut clients {
        let later = drain(&mut c.events);
        assert!(
            !later
                .iter()
                .any(|e| matches!(e, Event::Expired | Event::MasterFailover)),
            "{}: {later:?}",
            c.name
        );
        assert!(c.session.is_live(), "{}", c.name);
    }
    // The holders release (they still held their locks); then the watcher can take them.
    assert!(xh.release().await.unwrap(), "x no longer held its lock");
    for (h, _) in &shared {
        assert!(h.release().await.unwrap(), "a shared holder lost its lock");
    }
    let taken = wx.try_acquire(LockMode::Exclusive).await.unwrap();
    assert!(taken.lock_generation > seq_x.lock_generation);
    ws.try_acquire(LockMode::Exclusive).await.unwrap();
    // The ephemeral file goes when its holder closes it.
    // (Through a proxy too: `close` returns once the cell has ended the session.)
    clients[3].session.close().await.unwrap();
    let gone = w.open("/e", OpenOptions::new().read()).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::NotFound), "{gone}");
    took.sort();
    eprintln!(
        "kill → first successful call through proxy B: min {:?}, max {:?}",
        took[0],
        took[took.len() - 1]
    );
    drop(pb);
    drop(cell);
}

/// A proxy that goes silent (SIGSTOP: a frozen VM, not a crash) and wakes up after its
/// clients moved on and its own session at the cell expired. Its clients go into jeopardy,
/// reach the other proxy within their grace period and keep everything; the woken proxy
/// must not take them back (a claim of its own would move them away from the proxy they
/// now use, which would drop them) nor end them at the cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_that_wakes_up_after_its_clients_moved_on_leaves_them_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cell = cell(dir.path()).await;
    let front = format!("main={}", cell.addr());
    let pa = proxy(&front).await;
    let pb = proxy(&front).await;
    let (a, b) = (pa.addr.clone(), pb.addr.clone());
    let list = vec![a.clone(), b.clone()];
    let x = session_at(&list, &a, true).await;
    let mut x_events = x.events();
    let (xh, _) = x
        .open("/x", OpenOptions::new().write().create_file(b"x0".to_vec()))
        .await
        .unwrap();
    let seq_x = xh.acquire(LockMode::Exclusive, None).await.unwrap();
    let e = session_at(&list, &a, true).await;
    let mut e_events = e.events();
    let (eh, _) = e
        .open(
            "/e",
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"e0".to_vec())
                .ephemeral(),
        )
        .await
        .unwrap();
    let s = session_at(&list, &a, true).await;
    let mut s_events = s.events();
    let (sh, _) = s
        .open("/s", OpenOptions::new().write().create_file(Vec::new()))
        .await
        .unwrap();
    let seq_s = sh.acquire(LockMode::Shared, None).await.unwrap();
    let w = session_at(&list, &b, false).await;
    let (wx, _) = w.open("/x", OpenOptions::new().write()).await.unwrap();
    let (ws, _) = w.open("/s", OpenOptions::new().write()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watch = Arc::new(Mutex::new(Watch::default()));
    let watching = watcher(w, wx, ws, stop.clone(), watch.clone());

    signal(&pa.process, "-STOP");
    let paused = Instant::now();
    for (name, session, events) in [
        ("x", &x, &mut x_events),
        ("e", &e, &mut e_events),
        ("s", &s, &mut s_events),
    ] {
        let got = expect_event(name, events, GRACE, |e| matches!(e, Event::MasterFailover)).await;
        eprintln!("{name}: {got:?} by {:?} after the pause", paused.elapsed());
        assert_eq!(got.first(), Some(&Event::Jeopardy), "{name}: {got:?}");
        assert!(!got.contains(&Event::Expired), "{name}: {got:?}");
        assert_eq!(session.master(), b, "{name}");
    }
    // Wake proxy A once its session at the cell has expired: the claims (about 6 s into
    // the pause) delivered it events, which extended its lease once more (5 s).
    tokio::time::sleep(
        (Duration::from_secs(7) + PROXY_LEASE + Duration::from_secs(1))
            .saturating_sub(paused.elapsed()),
    )
    .await;
    signal(&pa.process, "-CONT");
    let woke = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::SeqCst);
    let (_w, _wx, _ws) = tokio::time::timeout(Duration::from_secs(20), watching)
        .await
        .expect("the watcher stopped")
        .expect("the watcher panicked");
    let watch = std::mem::take(&mut *watch.lock().unwrap());
    eprintln!(
        "watcher: {} rounds, longest gap {:?}; A woke {:?} after the pause",
        watch.rounds,
        watch.max_gap,
        woke - paused
    );
    assert!(watch.violations.is_empty(), "{:#?}", watch.violations);
    for (name, session, events) in [
        ("x", &x, &mut x_events),
        ("e", &e, &mut e_events),
        ("s", &s, &mut s_events),
    ] {
        let later = drain(events);
        assert!(
            !later
                .iter()
                .any(|e| matches!(e, Event::Expired | Event::MasterFailover)),
            "{name} after proxy A woke: {later:?}"
        );
        assert!(session.is_live(), "{name}");
        assert_eq!(session.master(), b, "{name}");
    }
    assert_eq!(xh.get_sequencer().await.unwrap(), seq_x);
    assert_eq!(sh.get_sequencer().await.unwrap(), seq_s);
    eh.set_contents(b"e1".to_vec()).await.unwrap();
    assert_eq!(eh.contents().await.unwrap().0, b"e1");
    assert!(xh.release().await.unwrap());
    assert!(sh.release().await.unwrap());
    // Proxy A serves again, with a new session at the cell.
    let fresh = Session::connect_with(ClientOptions::proxies(vec![a.clone()]))
        .await
        .unwrap();
    let (fh, _) = fresh
        .open("/e", OpenOptions::new().read().read_contents())
        .await
        .unwrap();
    assert_eq!(fh.contents().await.unwrap().0, b"e1");
}

/// A `warren cell` (2 s client leases, 5 s proxy leases) and two `warren proxy` processes
/// in front of it (2 s client leases), each with `--admin`: the cell, its admin address,
/// and each proxy with its address and admin address.
async fn counted(
    dir: &std::path::Path,
) -> (WarrenProcess, String, Vec<(WarrenProcess, String, String)>) {
    let cell_admin = format!("127.0.0.1:{}", crate::free_port());
    let cell = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "main",
            "--listen",
            "127.0.0.1:0",
            "--data",
            dir.to_str().unwrap(),
            "--admin",
            &cell_admin,
            "--lease",
            "2s",
            "--proxy-lease",
            "5s",
        ],
    )
    .await;
    let front = format!("main={}", cell.addr());
    let mut proxies = Vec::new();
    for _ in 0..2 {
        let admin = format!("127.0.0.1:{}", crate::free_port());
        let p = WarrenProcess::spawn(
            bin(),
            &[
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--cell",
                &front,
                "--admin",
                &admin,
                "--client-lease",
                "2s",
                "--lease-margin",
                "500ms",
                "--keepalive-reply-before-end",
                "500ms",
            ],
        )
        .await;
        let addr = p.proxy_addr();
        proxies.push((p, addr, admin));
    }
    (cell, cell_admin, proxies)
}

/// docs/proxy.md "Upstream acknowledgements": a write to a file that two proxies hold a
/// copy of costs each of them at most one KeepAlive to the cell — the one that carries
/// its clients' acknowledgement of the invalidation and is its next long-poll — not one
/// per step of the acknowledgement. Counted on real processes from their `/metrics`: the
/// proxies' `warren_proxy_keepalives_sent_total` and the cell's
/// `warren_keepalives_received_total`, over 50 writes, each followed by reads through both
/// proxies so that both hold a copy at the next write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_costs_each_proxy_holding_a_copy_at_most_one_keepalive_to_the_cell() {
    const WRITES: u64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let (_cell, cell_admin, proxies) = counted(dir.path()).await;
    let connect = |addr: String, cache: bool| async move {
        Session::connect_with(ClientOptions::proxies(vec![addr]).cache(cache))
            .await
            .expect("connect through a proxy")
    };
    // The writer on proxy A; two caching readers on each proxy (so that A, too, holds a
    // copy for others when its client writes).
    let writer = connect(proxies[0].1.clone(), false).await;
    let (w, _) = writer
        .open("/w", OpenOptions::new().write().create_file(b"0".to_vec()))
        .await
        .unwrap();
    let mut readers = Vec::new();
    for (_, addr, _) in proxies.iter().chain(proxies.iter()) {
        let s = connect(addr.clone(), true).await;
        let (h, _) = s.open("/w", OpenOptions::new().read()).await.unwrap();
        readers.push((s, h));
    }
    // Every reader reads `v`, which the cell must have answered (a cached copy of an older
    // value was invalidated before the write was acknowledged).
    let read_all = |v: u64| {
        let readers = &readers;
        async move {
            for (_, h) in readers {
                assert_eq!(h.contents().await.unwrap().0, v.to_string().into_bytes());
                // A second read, from the library's cache.
                assert_eq!(h.contents().await.unwrap().0, v.to_string().into_bytes());
            }
        }
    };
    read_all(0).await;
    // A few writes first, so that every session is set up at the cell; then one client
    // lease, after which every reader's copy is cacheable (a client's first copy from a
    // cell waits, bounded, for a refresh of the proxy's hold-back cover: docs/proxy.md,
    // "A dead proxy").
    for v in 1..=3 {
        w.set_contents(v.to_string().into_bytes()).await.unwrap();
        read_all(v).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    read_all(3).await;
    let scrape = || async {
        let mut sent = Vec::new();
        let mut relayed = Vec::new();
        for (_, _, admin) in &proxies {
            sent.push(metric(admin, "warren_proxy_keepalives_sent_total").await);
            relayed.push(metric(admin, "warren_proxy_invalidations_relayed_total").await);
        }
        let received = metric(&cell_admin, "warren_keepalives_received_total").await;
        (sent, relayed, received)
    };
    let (sent0, relayed0, received0) = scrape().await;
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for v in 4..4 + WRITES {
        let t = Instant::now();
        w.set_contents(v.to_string().into_bytes()).await.unwrap();
        slowest = slowest.max(t.elapsed());
        read_all(v).await;
    }
    let took = started.elapsed();
    let (sent1, relayed1, received1) = scrape().await;
    let received = received1 - received0;
    eprintln!(
        "{WRITES} writes in {took:?} (slowest {slowest:?}): KeepAlives sent by the proxies \
         {:?}, received by the cell {received}; invalidations relayed {:?}",
        [sent1[0] - sent0[0], sent1[1] - sent0[1]],
        [relayed1[0] - relayed0[0], relayed1[1] - relayed0[1]],
    );
    // Leases are refreshed too: the proxies' leases at the cell are 5 s, each renewed about
    // once a few seconds. 1.2 per write per proxy leaves room for them (and for a slow
    // run), not for the several per write of a KeepAlive per acknowledgement step.
    let bound = 1.2 * WRITES as f64;
    for p in 0..2 {
        assert!(
            relayed1[p] - relayed0[p] >= 2.0 * WRITES as f64,
            "proxy {p} relayed {} invalidations for {WRITES} writes to a file two of its \
             clients had cached: the test does not exercise what it counts",
            relayed1[p] - relayed0[p]
        );
        let sent = sent1[p] - sent0[p];
        assert!(
            sent <= bound,
            "proxy {p} sent {sent} KeepAlives to the cell for {WRITES} writes (at most {bound})"
        );
    }
    assert!(
        received <= 2.0 * bound,
        "the cell received {received} KeepAlives for {WRITES} writes through 2 proxies (at most {})",
        2.0 * bound
    );
}

/// docs/proxy.md "Upstream acknowledgements": a client that never acknowledges an
/// invalidation holds the write up until its lease ends (2 s) — and costs its proxy a
/// KeepAlive to the cell every 50–200 ms meanwhile (so that other events still get
/// through), not one per round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_client_costs_its_proxy_a_bounded_number_of_keepalives_while_a_write_waits() {
    let dir = tempfile::tempdir().unwrap();
    let (_cell, cell_admin, proxies) = counted(dir.path()).await;
    let writer = Session::connect_with(ClientOptions::proxies(vec![proxies[0].1.clone()]))
        .await
        .expect("connect through proxy A");
    let (w, _) = writer
        .open("/w", OpenOptions::new().write().create_file(b"0".to_vec()))
        .await
        .unwrap();
    // A raw session through proxy B that reads /w cacheably, then sends one KeepAlive and
    // never another: the invalidation it gets is never acknowledged.
    let (mut c, ctx) = warren_testkit::proxy::raw_session(&proxies[1].1).await;
    // Its first answer waits, bounded, for a refresh of the proxy's hold-back cover
    // (docs/proxy.md, "A dead proxy"); on a loaded machine it may ask again.
    let h = warren_testkit::proxy::open_until_cacheable(&mut c, &ctx, "/ls/local/w", 40).await;
    assert!(h.cacheable, "the silent reader holds a copy");
    let mut k = c.clone();
    let silent = tokio::spawn(async move {
        let _ = k
            .keep_alive(warren_proto::pb::KeepAliveRequest {
                ctx: Some(ctx),
                ack_seq: 0,
                ..Default::default()
            })
            .await;
    });
    let sent =
        |admin: String| async move { metric(&admin, "warren_proxy_keepalives_sent_total").await };
    let before = sent(proxies[1].2.clone()).await;
    let received0 = metric(&cell_admin, "warren_keepalives_received_total").await;
    let t = Instant::now();
    w.set_contents(b"1".to_vec()).await.unwrap();
    let took = t.elapsed();
    let after = sent(proxies[1].2.clone()).await;
    let received = metric(&cell_admin, "warren_keepalives_received_total").await - received0;
    silent.abort();
    let n = after - before;
    eprintln!("the write took {took:?}; proxy B sent {n} KeepAlives meanwhile, the cell received {received}");
    assert!(
        took >= Duration::from_millis(1000),
        "the write did not wait for the silent reader ({took:?}): the check is not exercised"
    );
    // One every 200 ms at most once the bound has grown (50, 100, then 200 ms), a lease
    // refresh or two, the acknowledgement: about 15 for a 2.5 s wait. A KeepAlive per round
    // trip would be hundreds.
    let bound = took.as_secs_f64() / 0.2 + 8.0;
    assert!(
        n <= bound,
        "proxy B sent {n} KeepAlives to the cell while one write waited {took:?} for its silent client (at most {bound:.0})"
    );
}

/// One cell on the embedded store whose proxy lease is the default 20 s: a dead proxy used
/// to hold up writes to what it cached for all of it.
async fn cell_with_default_proxy_lease(data: &std::path::Path) -> WarrenProcess {
    WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "main",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
            "--proxy-lease",
            "20s",
        ],
    )
    .await
}

/// Two proxies in front of a cell with a 20 s proxy lease, granting clients `client_lease`.
async fn two_proxies(
    dir: &std::path::Path,
    client_lease: &str,
) -> (WarrenProcess, ProxyProcess, ProxyProcess) {
    let cell = cell_with_default_proxy_lease(dir).await;
    let front = format!("main={}", cell.addr());
    let spawn = |lease: String| {
        let front = front.clone();
        async move {
            let process = WarrenProcess::spawn_proxy_holding_back(bin(), &front, &lease).await;
            let addr = process.proxy_addr();
            ProxyProcess { process, addr }
        }
    };
    let pa = spawn(client_lease.to_string()).await;
    let pb = spawn(client_lease.to_string()).await;
    (cell, pa, pb)
}

/// Opens `path` for reading on `s` and reads it (so that the proxy and the client cache it).
async fn read_cached(s: &Session, path: &str, want: &[u8]) -> Handle {
    let (h, _) = s.open(path, OpenOptions::new().read()).await.unwrap();
    assert_eq!(h.contents().await.unwrap().0, want);
    h
}

/// Proxy A (granting `client_lease`) caches `/f` for readers that know only A, so nobody
/// claims them when A is killed; a writer on proxy B writes `/f` at once after the kill.
/// Returns how long that write took (and checks what a fresh reader then sees).
async fn write_after_a_proxy_kill_with_unclaimed_clients(client_lease: &str) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let (_cell, mut pa, pb) = two_proxies(dir.path(), client_lease).await;
    let writer = Session::connect_with(ClientOptions::proxies(vec![pb.addr.clone()]).cache(false))
        .await
        .unwrap();
    let (wh, _) = writer
        .open("/f", OpenOptions::new().write().create_file(b"v1".to_vec()))
        .await
        .unwrap();
    // Readers that only know proxy A, caching: they cannot move, so nobody claims them and
    // the cell can only go by proxy A's hold-back.
    let mut readers = Vec::new();
    for _ in 0..3 {
        let r = Session::connect_with(
            ClientOptions::proxies(vec![pa.addr.clone()])
                .grace_period(GRACE)
                .cache(true),
        )
        .await
        .unwrap();
        let h = read_cached(&r, "/f", b"v1").await;
        readers.push((r, h));
    }
    // With proxy A alive, a write is acknowledged at once (A relays and acknowledges).
    let t = Instant::now();
    wh.set_contents(b"v2".to_vec()).await.unwrap();
    let live = t.elapsed();
    for (_, h) in &readers {
        assert_eq!(h.contents().await.unwrap().0, b"v2");
    }

    pa.process.kill9().await;
    let killed = Instant::now();
    wh.set_contents(b"v3".to_vec()).await.unwrap();
    let stalled = killed.elapsed();
    eprintln!(
        "write with proxy A alive: {live:?}; first write after A was killed: {stalled:?} \
         (client lease {client_lease}, proxy lease 20 s)"
    );
    let fresh = Session::connect_with(ClientOptions::proxies(vec![pb.addr.clone()]))
        .await
        .unwrap();
    read_cached(&fresh, "/f", b"v3").await;
    stalled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_to_what_a_killed_proxy_cached_wait_only_for_the_client_leases_it_granted() {
    let stalled = write_after_a_proxy_kill_with_unclaimed_clients("3s").await;
    // A's last cover ended at most one client lease (3 s) after the kill; the cell waits
    // that plus its 0.5 s margin, not A's 20 s lease.
    assert!(
        stalled < Duration::from_secs(3 + 1),
        "the write waited {stalled:?}"
    );
}

/// The same with the default 12 s client lease (a measurement for docs/performance.md:
/// `cargo test --release --test process -- --ignored default_timings`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow (about 15 s): run for the figures in docs/performance.md"]
async fn writes_to_what_a_killed_proxy_cached_with_default_timings() {
    let stalled = write_after_a_proxy_kill_with_unclaimed_clients("12s").await;
    assert!(
        stalled < Duration::from_secs(12 + 1),
        "the write waited {stalled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_to_what_a_killed_proxy_cached_go_ahead_once_its_clients_were_claimed() {
    const CLIENT_LEASE: Duration = Duration::from_secs(8);
    let dir = tempfile::tempdir().unwrap();
    let (_cell, mut pa, pb) = two_proxies(dir.path(), "8s").await;
    let (a, b) = (pa.addr.clone(), pb.addr.clone());
    let list = vec![a.clone(), b.clone()];
    let writer = Session::connect_with(ClientOptions::proxies(vec![b.clone()]).cache(false))
        .await
        .unwrap();
    let (wh, _) = writer
        .open("/f", OpenOptions::new().write().create_file(b"v1".to_vec()))
        .await
        .unwrap();
    let mut readers = Vec::new();
    for _ in 0..3 {
        let r = session_at(&list, &a, true).await;
        let h = read_cached(&r, "/f", b"v1").await;
        readers.push((r, h));
    }

    pa.process.kill9().await;
    let killed = Instant::now();
    // Each reader moves to proxy B, which claims it at the cell: wait for a successful
    // call of each through B (its cache was flushed, so the call reaches B).
    for (r, h) in &readers {
        loop {
            assert!(killed.elapsed() < GRACE, "a reader never reached proxy B");
            match h.contents().await {
                Ok((data, _)) if r.master() == b => {
                    assert_eq!(data, b"v1");
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    let claimed = killed.elapsed();
    let t = Instant::now();
    wh.set_contents(b"v2".to_vec()).await.unwrap();
    let stalled = t.elapsed();
    eprintln!(
        "readers claimed by proxy B {claimed:?} after the kill; the write then took {stalled:?} \
         (client lease {CLIENT_LEASE:?}, proxy lease 20 s)"
    );
    // Proxy A's session has no client left at the cell: it is ended after a 0.5 s grace,
    // long before any client lease A granted could end (≥ 6 s after the kill).
    assert!(
        stalled < Duration::from_secs(2),
        "the write waited {stalled:?}"
    );
    assert!(
        claimed + stalled < CLIENT_LEASE - Duration::from_secs(2),
        "claims {claimed:?} + write {stalled:?}"
    );
    for (_, h) in &readers {
        assert_eq!(h.contents().await.unwrap().0, b"v2");
    }
}

/// The runtime worker threads of process `pid`: its threads named as tokio names them
/// (`tokio-rt-worker`; older tokio said `tokio-runtime-worker`, which the kernel cuts to
/// 15 bytes). Tokio's blocking pool has the
/// same name but starts its threads only on demand; a proxy in front of a cell given by IP
/// address has none right after `ready` (no name to resolve, no file to read).
fn runtime_workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read the proxy's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| matches!(name.trim(), "tokio-rt-worker" | "tokio-runtime-w"))
        .count()
}

/// `--threads N` (and `WARREN_THREADS`) gives the proxy's runtime N workers, one per core
/// by default; a count that is not 1–256 is refused before anything starts, naming the
/// setting and the fix.
#[tokio::test]
async fn a_proxy_runs_the_worker_threads_it_is_given_and_refuses_bad_counts() {
    let dir = tempfile::tempdir().unwrap();
    let c = cell(dir.path()).await;
    let target = format!("main={}", c.addr());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for (args, env, want) in [
        (vec![], vec![], cores),
        (vec!["--threads", "3"], vec![], 3),
        (vec![], vec![("WARREN_THREADS", "2")], 2),
    ] {
        // The timings of `WarrenProcess::spawn_proxy`, which nest in the cell's 5 s lease.
        let mut all = vec![
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--cell",
            &target,
            "--client-lease",
            "2s",
            "--lease-margin",
            "500ms",
            "--keepalive-reply-before-end",
            "500ms",
        ];
        all.extend(args.iter().copied());
        let p = WarrenProcess::spawn_env(bin(), &all, &env).await;
        let workers = runtime_workers(p.pid().expect("running"));
        assert_eq!(workers, want, "{args:?} {env:?}: {workers} runtime workers");
    }
    for bad in ["0", "257", "many"] {
        let out = crate::warren(&["proxy", "--cell", &target, "--threads", bad]).await;
        assert_eq!(out.status.code(), Some(2), "--threads {bad}");
        let err = crate::stderr(&out);
        assert!(
            err.contains("threads") && err.contains("--threads 1"),
            "--threads {bad}: {err}"
        );
    }
}
