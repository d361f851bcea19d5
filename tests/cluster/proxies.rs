//! A cell master killed behind the proxies (docs/design.md §9, §6; docs/proxy.md "Lease nesting"):
//! three etcd members, two replicas of the cell and two `warren proxy` processes in front
//! of them, all real processes. The master is SIGKILLed twice:
//!
//! 1. the standby takes over faster than the proxies' nested client leases run out: the
//!    client holding a lock gets `MasterFailover` and never goes into jeopardy;
//! 2. the standby is paused (SIGSTOP) until that client's lease has run out: it goes into
//!    jeopardy, and comes back `Safe` with `MasterFailover` once the standby takes over.
//!
//! Throughout, a client with nothing at the cell sees no event at all (its lease is not
//! nested in the proxy's session at the cell), and no lock changes hands: a third client's
//! `TryAcquire` never succeeds, and the holder's lock generation is the same at the end.

use crate::harness::{bin, locate, Replicas};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warren_client::{
    ClientOptions, ErrorCode, Event, EventMask, EventStream, Handle, LockMode, OpenOptions,
    Session, SessionState,
};
use warren_testkit::etcd::EtcdCluster;
use warren_testkit::WarrenProcess;

/// Client grace period.
const GRACE: Duration = Duration::from_secs(15);
/// The lease the proxies grant clients. With `--lease-margin 500ms` and
/// `--keepalive-reply-before-end 500ms` a proxy keeps its own session at the cell at least
/// 4 + 0.5 + 0.5 = 5 s ahead, so when the master dies a client with state there keeps its
/// lease for at least 4.5 s: longer than a failover with a 2 s etcd lease (about 2.3 s).
const CLIENT_LEASE: &str = "4s";

/// A `warren proxy` process and the address it printed (`proxies: ADDR`).
struct ProxyProcess {
    _process: WarrenProcess,
    addr: String,
}

async fn proxy(cell: &str) -> ProxyProcess {
    let process = WarrenProcess::spawn_proxy(bin(), cell, CLIENT_LEASE).await;
    let addr = process.proxy_addr();
    ProxyProcess {
        _process: process,
        addr,
    }
}

/// A session created at proxy `at` whose search order starts with `prefers`. Sessions are
/// created at a proxy chosen per connect and ordered by their id, so this creates sessions
/// (closing the misfits) until one fits: a quarter do with two proxies.
async fn session_where(proxies: &[String], at: &str, prefers: &str) -> Session {
    for _ in 0..100 {
        let s = Session::connect_with(ClientOptions::proxies(proxies.to_vec()).grace_period(GRACE))
            .await
            .expect("connect through the proxies");
        if s.master() == at && s.search_order().first().map(String::as_str) == Some(prefers) {
            return s;
        }
        s.close().await.expect("close a session we do not need");
    }
    panic!("no session out of 100 sat at {at} and preferred {prefers}");
}

fn signal(process: &WarrenProcess, sig: &str) {
    let pid = process.pid().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill {sig} {pid}");
}

/// Waits until replica `standby` follows the serving master `master` (so that it will
/// campaign when the master dies).
async fn standby_ready(cell: &Replicas, standby: usize, master: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = locate(&cell.addrs[standby]).await {
            if !l.is_master && l.master == cell.addrs[master] {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "replica r{standby} does not follow r{master}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Collects events until one matches `want`; returns them with the time each arrived
/// (since `from`).
async fn until_event(
    name: &str,
    events: &mut EventStream,
    from: Instant,
    within: Duration,
    want: impl Fn(&Event) -> bool,
) -> Vec<(Event, Duration)> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => {
                let hit = want(&e);
                seen.push((e, from.elapsed()));
                if hit {
                    return seen;
                }
            }
            _ => panic!("{name}: no matching event within {within:?}; saw {seen:?}"),
        }
    }
}

fn drain(events: &mut EventStream) -> Vec<Event> {
    std::iter::from_fn(|| events.try_recv()).collect()
}

fn kinds(seen: &[(Event, Duration)]) -> Vec<Event> {
    seen.iter().map(|(e, _)| e.clone()).collect()
}

/// What the third client's checks saw.
#[derive(Default)]
struct Checks {
    refused: u64,
    /// Other errors (none expected; counted, reported).
    errors: Vec<String>,
    /// A `TryAcquire` that succeeded: the lock changed hands.
    taken: Vec<String>,
}

/// Every 100 ms until `stop`: `TryAcquire` of the held lock by another session.
fn checker(
    h: Handle,
    stop: Arc<AtomicBool>,
    checks: Arc<Mutex<Checks>>,
) -> tokio::task::JoinHandle<Handle> {
    tokio::spawn(async move {
        let started = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let r = h.try_acquire(LockMode::Exclusive).await;
            {
                let mut c = checks.lock().unwrap();
                match r {
                    Err(e) if e.code() == Some(ErrorCode::LockHeld) => c.refused += 1,
                    Ok(seq) => c.taken.push(format!("{:?}: {seq}", started.elapsed())),
                    Err(e) => c.errors.push(format!("{:?}: {e}", started.elapsed())),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        h
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cell_failover_behind_proxies_reaches_only_the_clients_with_state_there() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start(3).await;
    let all = etcd.endpoints().join(",");
    let mut cell = Replicas::start(
        vec![all.clone(), all],
        &[
            "--lease",
            "2s",
            "--proxy-lease",
            "8s",
            "--claim-window",
            "20s",
            "--etcd-lease",
            "2s",
        ],
    )
    .await;
    let (m1, e1) = cell.master(Duration::from_secs(20)).await;
    let front = format!("c0={}", cell.addrs.join(","));
    let pa = proxy(&front).await;
    let pb = proxy(&front).await;
    let list = vec![pa.addr.clone(), pb.addr.clone()];

    // A holds an exclusive lock and watches its file; B has opened nothing; C checks. A and
    // C share proxy PA, which only A prefers: when C goes into jeopardy it looks for a
    // proxy from the first in its order, PB, and moves there while the cell is away.
    let a = session_where(&list, &pa.addr, &pa.addr).await;
    let mut a_events = a.events();
    let (a_lock, _) = a
        .open("/l", OpenOptions::new().write().create_file(b"v0".to_vec()))
        .await
        .unwrap();
    let seq = a_lock.acquire(LockMode::Exclusive, None).await.unwrap();
    let (a_watch, _) = a
        .open("/l", OpenOptions::new().read().events(EventMask::ALL))
        .await
        .unwrap();
    assert_eq!(a_watch.contents().await.unwrap().0, b"v0");
    let b = Session::connect_with(ClientOptions::proxies(list.clone()).grace_period(GRACE))
        .await
        .unwrap();
    let mut b_events = b.events();
    let c = session_where(&list, &pa.addr, &pb.addr).await;
    let mut c_events = c.events();
    let (c_lock, _) = c.open("/l", OpenOptions::new().write()).await.unwrap();
    eprintln!(
        "A at {}, B at {}, C at {}; master r{m1} epoch {e1}",
        a.master(),
        b.master(),
        c.master()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(Mutex::new(Checks::default()));
    let checking = checker(c_lock, stop.clone(), checks.clone());

    // 1. A fast failover: the standby takes over within A's nested lease.
    let s1 = 1 - m1;
    standby_ready(&cell, s1, m1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    cell.kill(m1).await;
    let seen = until_event("A", &mut a_events, killed, GRACE, |e| {
        *e == Event::MasterFailover
    })
    .await;
    let (m2, e2) = cell.master(Duration::from_secs(20)).await;
    eprintln!(
        "fast failover: r{m1} killed, r{m2} serving at epoch {e2}; A saw {seen:?}; now {:?}",
        killed.elapsed()
    );
    assert_eq!(m2, s1);
    assert!(e2 > e1);
    assert_eq!(
        kinds(&seen),
        [Event::MasterFailover],
        "A: a failover faster than the lease brings no jeopardy"
    );
    assert_eq!(a.state(), SessionState::Safe);
    // The lock is still A's; its handles work at the new master.
    assert_eq!(a_lock.get_sequencer().await.unwrap(), seq);
    assert_eq!(
        a_watch.stat().await.unwrap().lock_generation,
        seq.lock_generation
    );

    // 2. A slow failover: the standby is paused past A's lease.
    cell.start_one(m1).await;
    standby_ready(&cell, m1, m2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let paused = cell.procs[m1].as_ref().expect("restarted");
    signal(paused, "-STOP");
    let killed = Instant::now();
    cell.kill(m2).await;
    let jeopardy = until_event("A", &mut a_events, killed, Duration::from_secs(10), |e| {
        *e == Event::Jeopardy
    })
    .await;
    // Paused on: A's KeepAlives in jeopardy come and go (each gives up after 2 s) while
    // the cell is away, and none may end its session at the proxy.
    tokio::time::sleep(Duration::from_secs(4)).await;
    signal(cell.procs[m1].as_ref().expect("paused"), "-CONT");
    let resumed = killed.elapsed();
    let back = until_event("A", &mut a_events, killed, GRACE, |e| {
        *e == Event::MasterFailover
    })
    .await;
    let (m3, e3) = cell.master(Duration::from_secs(20)).await;
    eprintln!(
        "slow failover: r{m2} killed, r{m1} resumed after {resumed:?}, r{m3} serving at epoch \
         {e3}; A saw {jeopardy:?} then {back:?}"
    );
    assert_eq!(m3, m1);
    assert!(e3 > e2);
    assert_eq!(kinds(&jeopardy), [Event::Jeopardy], "A");
    assert_eq!(
        kinds(&back),
        [Event::Safe, Event::MasterFailover],
        "A: safe again, then the fail-over event"
    );
    assert_eq!(a.state(), SessionState::Safe);

    // No lock changed hands.
    stop.store(true, Ordering::SeqCst);
    let c_lock = tokio::time::timeout(Duration::from_secs(30), checking)
        .await
        .expect("the checker stopped")
        .expect("the checker panicked");
    let checks = std::mem::take(&mut *checks.lock().unwrap());
    eprintln!(
        "C: {} TryAcquires refused with LOCK_HELD, other errors {:?}",
        checks.refused, checks.errors
    );
    assert!(
        checks.taken.is_empty(),
        "the lock changed hands: {:?}",
        checks.taken
    );
    assert!(checks.refused >= 10, "C hardly checked: {}", checks.refused);
    assert_eq!(a_lock.get_sequencer().await.unwrap(), seq);
    // A's watch was recreated at the new master: C's write reaches A as an event.
    c_lock.set_contents(b"v1".to_vec()).await.unwrap();
    let modified = until_event("A", &mut a_events, killed, Duration::from_secs(5), |e| {
        matches!(e, Event::ContentsModified { .. })
    })
    .await;
    assert_eq!(kinds(&modified).len(), 1, "A: {modified:?}");
    assert_eq!(a_watch.contents().await.unwrap().0, b"v1");
    assert!(a_lock.release().await.unwrap(), "A no longer held its lock");
    let taken = c_lock.try_acquire(LockMode::Exclusive).await.unwrap();
    assert!(taken.lock_generation > seq.lock_generation);

    // B, with nothing at the cell, saw nothing of either failover.
    let b_seen = drain(&mut b_events);
    assert!(b_seen.is_empty(), "B saw {b_seen:?}");
    assert_eq!(b.state(), SessionState::Safe);
    assert_eq!(b.epoch(), 1, "B's proxy epoch did not change");
    let c_seen = drain(&mut c_events);
    eprintln!("C, now at {}, saw {c_seen:?}", c.master());
    assert!(!c_seen.contains(&Event::Expired), "C: {c_seen:?}");
    drop((pa, pb));
}
