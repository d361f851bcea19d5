//! Three replicas of a cell over a three-member etcd cluster, as production runs them.

use crate::harness::{file, locate, werr, Raw, Replicas};
use std::time::{Duration, Instant};
use warren_proto::pb;
use warren_proto::ErrorCode;
use warren_testkit::bridge::Bridge;
use warren_testkit::etcd::EtcdCluster;

/// Writes `n` files `/ls/local/w/<tag>-<i>` through `raw`; returns what was acknowledged.
async fn write_files(raw: &mut Raw, tag: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut acked = Vec::new();
    for i in 0..n {
        let path = format!("/ls/local/w/{tag}-{i}");
        let value = format!("{tag} {i}").into_bytes();
        if raw.open(&path, 2, file(&value, false), false).await.is_ok() {
            acked.push((path, value));
        }
    }
    acked
}

async fn read(raw: &mut Raw, path: &str) -> Vec<u8> {
    raw.open(path, 1, None, true)
        .await
        .unwrap_or_else(|e| panic!("acknowledged {path} is gone: {e:?}"))
        .contents
}

async fn mkdir(raw: &mut Raw, path: &str) {
    let dir = pb::CreateSpec {
        instance: 0,
        kind: pb::NodeKind::Directory as i32,
        ephemeral: false,
        initial_contents: vec![],
        acl: None,
        exclusive: false,
    };
    raw.open(path, 2, Some(dir), false).await.unwrap();
}

#[tokio::test]
async fn a_standby_takes_over_when_the_master_is_killed() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start(3).await;
    let all = etcd.endpoints().join(",");
    let mut cell = Replicas::start(vec![all.clone(), all.clone(), all], &[]).await;
    let (m1, e1) = cell.master(Duration::from_secs(20)).await;

    let mut holder = Raw::connect(&cell.addrs).await;
    mkdir(&mut holder, "/ls/local/w").await;
    let acked = write_files(&mut holder, "before", 50).await;
    assert_eq!(acked.len(), 50);
    // An exclusive lock and an ephemeral file.
    let lock = holder
        .open("/ls/local/l", 2, file(b"", false), false)
        .await
        .unwrap()
        .handle;
    let l2 = lock.clone();
    holder
        .call(|mut c, ctx| {
            let h = l2.clone();
            async move {
                c.try_acquire(pb::TryAcquireRequest {
                    ctx,
                    handle: h,
                    mode: 1,
                })
                .await
            }
        })
        .await
        .unwrap();
    let eph = holder
        .open("/ls/local/e", 2, file(b"me", true), false)
        .await
        .unwrap()
        .handle;
    let ka = holder.keep_alive_loop();

    let killed_at = Instant::now();
    cell.kill(m1).await;
    let (m2, e2) = cell.master(Duration::from_secs(20)).await;
    eprintln!(
        "master r{m1} killed; r{m2} serving at epoch {e2} after {:?}",
        killed_at.elapsed()
    );
    assert_ne!(m1, m2);
    assert!(e2 > e1, "epoch {e2} after {e1}");

    // The holder's session survived: its old handles work again (recreated by the new master).
    let h = eph.clone();
    holder
        .call(|mut c, ctx| {
            let h = h.clone();
            async move { c.get_stat(pb::GetStatRequest { ctx, handle: h }).await }
        })
        .await
        .unwrap();
    assert!(holder.failovers >= 1, "the holder never saw the failover");
    let h = lock.clone();
    let seq = holder
        .call(|mut c, ctx| {
            let h = h.clone();
            async move {
                c.get_sequencer(pb::GetSequencerRequest { ctx, handle: h })
                    .await
            }
        })
        .await
        .unwrap();
    assert_eq!(
        seq.sequencer.unwrap().lock_generation,
        1,
        "the lock is still the holder's"
    );
    // Another client: the lock is held, the ephemeral file is there, every write is there.
    let mut other = Raw::connect(&cell.addrs).await;
    let h = other
        .open("/ls/local/l", 2, None, false)
        .await
        .unwrap()
        .handle;
    let r = other
        .call(|mut c, ctx| {
            let h = h.clone();
            async move {
                c.try_acquire(pb::TryAcquireRequest {
                    ctx,
                    handle: h,
                    mode: 1,
                })
                .await
            }
        })
        .await;
    assert_eq!(werr(&r.unwrap_err()).unwrap().code, ErrorCode::LockHeld);
    assert_eq!(read(&mut other, "/ls/local/e").await, b"me");
    for (path, value) in &acked {
        assert_eq!(&read(&mut other, path).await, value, "{path}");
    }
    ka.abort();
}

#[tokio::test]
async fn the_master_survives_the_loss_of_the_etcd_leader() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let mut etcd = EtcdCluster::start(3).await;
    let all = etcd.endpoints().join(",");
    let cell = Replicas::start(vec![all.clone(), all], &[]).await;
    let (m1, e1) = cell.master(Duration::from_secs(20)).await;
    let mut writer = Raw::connect(&cell.addrs).await;
    mkdir(&mut writer, "/ls/local/w").await;
    let ka = writer.keep_alive_loop();
    let mut acked = write_files(&mut writer, "a", 30).await;
    let leader = etcd.wait_for_leader(Duration::from_secs(10)).await;
    etcd.kill(leader).await;
    acked.extend(write_files(&mut writer, "b", 60).await);
    let (m2, e2) = cell.master(Duration::from_secs(20)).await;
    assert_eq!(
        (m2, e2),
        (m1, e1),
        "the cell changed master when only etcd's leader died"
    );
    assert_eq!(writer.failovers, 0, "the session saw a failover");
    assert_eq!(
        acked.len(),
        90,
        "writes failed while etcd elected a new leader"
    );
    for (path, value) in &acked {
        assert_eq!(&read(&mut writer, path).await, value, "{path}");
    }
    ka.abort();
}

#[tokio::test]
async fn a_master_cut_off_from_etcd_stops_serving_before_another_serves() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start(3).await;
    // Replica 0 reaches etcd only through bridges we can blackhole.
    let mut bridges = Vec::new();
    for i in 0..3 {
        bridges.push(Bridge::start(etcd.client_addr(i)).await);
    }
    let via_bridges = bridges
        .iter()
        .map(|b| format!("http://{}", b.addr()))
        .collect::<Vec<_>>()
        .join(",");
    let direct = etcd.endpoints().join(",");
    let mut cell = Replicas::new(vec![via_bridges, direct.clone(), direct], &[]);
    cell.start_one(0).await;
    let (m, _) = cell.master(Duration::from_secs(20)).await;
    assert_eq!(m, 0);
    cell.start_one(1).await;
    cell.start_one(2).await;
    let mut client = Raw::connect(&cell.addrs).await;
    let ka = client.keep_alive_loop();

    for b in &bridges {
        b.blackhole();
    }
    let cut_at = Instant::now();
    // Watch all three: never two serving masters at once; the old one goes first.
    let mut old_stopped = None;
    let mut new_serving = None;
    while new_serving.is_none() {
        assert!(cut_at.elapsed() < Duration::from_secs(30), "no new master");
        for i in [1, 2] {
            if let Some(l) = locate(&cell.addrs[i]).await {
                if l.is_master && l.serving {
                    new_serving = Some((i, cut_at.elapsed()));
                }
            }
        }
        let old = locate(&cell.addrs[0])
            .await
            .expect("the old master's process is alive");
        if old.is_master {
            assert!(
                new_serving.is_none(),
                "two masters: the cut-off one still serves while r{:?} does",
                new_serving
            );
        } else if old_stopped.is_none() {
            old_stopped = Some(cut_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let old_stopped = old_stopped.expect("the old master never stopped");
    let (new, new_at) = new_serving.unwrap();
    eprintln!("cut off at 0; r0 stopped serving at {old_stopped:?}; r{new} serving at {new_at:?}");
    assert!(old_stopped < new_at);
    // A write sent to the old master now is refused, naming the new master.
    let mut direct_old =
        warren_proto::pb::warren_client::WarrenClient::connect(format!("http://{}", cell.addrs[0]))
            .await
            .unwrap();
    let r = direct_old
        .open(pb::OpenRequest {
            target: 0,
            ctx: Some(client.ctx.clone()),
            path: "/ls/local/x".into(),
            intent: 2,
            events: 0,
            lock_delay_ms: 0,
            create: file(b"late", false),
            read: false,
        })
        .await;
    let e = werr(&r.unwrap_err()).expect("a Warren error");
    assert_eq!(e.code, ErrorCode::NotMaster);
    // The client moves to the new master and keeps its session.
    let h = client
        .open("/ls/local/x", 2, file(b"new", false), false)
        .await
        .unwrap();
    assert!(!h.handle.is_empty());
    assert!(client.failovers >= 1);
    ka.abort();
}

/// Through the client library, given all three replica addresses: a session with a lock,
/// an ephemeral file and cached data rides out the master's death, sees the fail-over
/// event (and jeopardy → safe only if the failover outlasted its local lease), and keeps
/// everything.
#[tokio::test]
async fn library_clients_follow_the_master_to_a_standby() {
    use warren_client::{ErrorCode as Code, Event, LockMode, OpenOptions, Session};
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start(3).await;
    let all = etcd.endpoints().join(",");
    let mut cell = Replicas::start(vec![all.clone(), all.clone(), all], &[]).await;
    let (m1, e1) = cell.master(Duration::from_secs(20)).await;
    let s = Session::connect(&cell.addrs).await.unwrap();
    let mut events = s.events();
    let (l, _) = s
        .open("/l", OpenOptions::new().write().create_file(Vec::new()))
        .await
        .unwrap();
    let seq = l.acquire(LockMode::Exclusive, None).await.unwrap();
    let (e, _) = s
        .open(
            "/e",
            OpenOptions::new()
                .write()
                .create_file(b"mine".to_vec())
                .ephemeral(),
        )
        .await
        .unwrap();
    let (d, _) = s
        .open(
            "/d",
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"v1".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(d.contents().await.unwrap().0, b"v1");
    cell.kill(m1).await;
    let (_, e2) = cell.master(Duration::from_secs(20)).await;
    assert!(e2 > e1);
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|x| matches!(x, Event::MasterFailover)) {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("no fail-over event")
            .unwrap();
        seen.push(ev);
    }
    eprintln!("library session saw {seen:?}");
    assert!(!seen.iter().any(|x| matches!(x, Event::Expired)));
    if seen.iter().any(|x| matches!(x, Event::Jeopardy)) {
        assert!(
            seen.iter().any(|x| matches!(x, Event::Safe)),
            "jeopardy without safe: {seen:?}"
        );
    }
    // Everything is still there and still ours.
    assert_eq!(l.get_sequencer().await.unwrap(), seq);
    e.stat().await.unwrap();
    let other = Session::connect(&cell.addrs).await.unwrap();
    let (lo, _) = other.open("/l", OpenOptions::new().write()).await.unwrap();
    assert_eq!(
        lo.try_acquire(LockMode::Exclusive)
            .await
            .unwrap_err()
            .code(),
        Some(Code::LockHeld)
    );
    let (_, info) = other
        .open("/e", OpenOptions::new().read().read_contents())
        .await
        .unwrap();
    assert_eq!(info.contents.unwrap(), b"mine");
    // The cache was flushed and is coherent again: another client's write is seen.
    let (dw, _) = other.open("/d", OpenOptions::new().write()).await.unwrap();
    dw.set_contents(b"v2".to_vec()).await.unwrap();
    assert_eq!(d.contents().await.unwrap().0, b"v2");
}

/// A master that is paused (a long GC pause, a frozen VM) cannot tell it was deposed. When
/// it wakes with a write in hand, the write must still be refused: by its own lease check,
/// or, if the write gets there first, by etcd's fence on its election key.
#[tokio::test]
async fn a_paused_master_that_wakes_up_cannot_write() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start(3).await;
    let all = etcd.endpoints().join(",");
    let cell = Replicas::start(vec![all.clone(), all.clone(), all], &[]).await;
    let (m1, e1) = cell.master(Duration::from_secs(20)).await;
    let client = Raw::connect(&cell.addrs).await;
    let ctx = client.ctx.clone();
    let pid = cell.procs[m1].as_ref().unwrap().pid().unwrap().to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stop.success());
    // A standby takes over while the old master sleeps.
    let deadline = Instant::now() + Duration::from_secs(20);
    let m2 = loop {
        let mut found = None;
        for (i, a) in cell.addrs.iter().enumerate() {
            if i == m1 {
                continue;
            }
            if let Some(l) = locate(a).await {
                if l.is_master && l.serving && l.epoch > e1 {
                    found = Some(i);
                }
            }
        }
        if let Some(i) = found {
            break i;
        }
        assert!(Instant::now() < deadline, "no standby took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // A write reaches the sleeping master's socket; then it wakes.
    let addr = cell.addrs[m1].clone();
    let write = tokio::spawn(async move {
        let mut c =
            warren_proto::pb::warren_client::WarrenClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
        c.open(pb::OpenRequest {
            target: 0,
            ctx: Some(ctx),
            path: "/ls/local/zombie".into(),
            intent: 2,
            events: 0,
            lock_delay_ms: 0,
            create: file(b"from the past", false),
            read: false,
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cont = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    assert!(cont.success());
    let r = tokio::time::timeout(Duration::from_secs(10), write)
        .await
        .expect("the woken master never answered")
        .unwrap();
    let e = werr(&r.expect_err("a deposed master accepted a write")).expect("a Warren error");
    eprintln!("write to the woken master: {e}");
    // Refused by whichever guard fired first: its own lease check or etcd's fence.
    assert_eq!(e.code, ErrorCode::NotMaster, "{e}");
    // Nothing of it landed; the new master is still master. (The first session expired
    // meanwhile: nothing kept it alive during the pause.)
    let mut client = Raw::connect(&cell.addrs).await;
    let e = client
        .open("/ls/local/zombie", 1, None, false)
        .await
        .unwrap_err();
    assert_eq!(werr(&e).unwrap().code, ErrorCode::NotFound);
    let (m, _) = cell.master(Duration::from_secs(5)).await;
    assert_eq!(m, m2);
}

/// `warren ctl status` against each replica says who it is, who the master is, the epoch,
/// and how its store (etcd) is doing.
#[tokio::test]
async fn ctl_status_shows_roles_master_epoch_and_etcd_health() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let mut etcd = EtcdCluster::start(1).await;
    let all = etcd.endpoints().join(",");
    let cell = Replicas::start(vec![all.clone(), all], &[]).await;
    let (m, epoch) = cell.master(Duration::from_secs(20)).await;
    let status = |addr: String| async move {
        let out = tokio::process::Command::new(crate::harness::bin())
            .args(["ctl", "--endpoint", &addr, "--json", "status"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // Standbys learn the master from etcd every 200 ms.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(cell.addrs[1 - m].clone()).await;
        if s["master"] == cell.addrs[m].as_str() {
            assert_eq!(
                (s["role"].as_str(), s["replica"].as_str()),
                (Some("standby"), Some(format!("r{}", 1 - m).as_str()))
            );
            assert_eq!(s["store_health"], "ok");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby never learned the master: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = status(cell.addrs[m].clone()).await;
    assert_eq!(
        (
            s["role"].as_str(),
            s["epoch"].as_u64(),
            s["serving"].as_bool()
        ),
        (Some("master"), Some(epoch), Some(true))
    );
    assert_eq!(s["master"], cell.addrs[m].as_str());
    // With etcd gone, the standby says so, and the master stops serving within its lease.
    etcd.kill(0).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sb = status(cell.addrs[1 - m].clone()).await;
        let sm = status(cell.addrs[m].clone()).await;
        if sb["store_health"] != "ok" && sm["role"] == "standby" {
            eprintln!("standby health: {}", sb["store_health"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd loss not reported: {sb} {sm}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
