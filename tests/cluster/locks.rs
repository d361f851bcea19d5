//! Locks across repeated master kills: a workload of two contenders taking an exclusive
//! lock and using it at a resource fenced by sequencers, while the master is SIGKILLed
//! ten times. At no time may two clients hold the lock (the fenced resource never
//! accepts two holders for one lock generation, nor a generation lower than one it has
//! seen), and lock generations only increase. The same run measures failover time as a
//! client sees it: SIGKILL of the master → first successful write.

use crate::harness::{file, werr, Raw, Replicas};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warren_proto::pb;
use warren_proto::ErrorCode;
use warren_testkit::etcd::EtcdCluster;

/// A resource that does what a real server protected by Warren should: check each
/// request's sequencer with the cell and refuse anything older than what it has seen.
#[derive(Default)]
struct FencedResource {
    /// lock generation → the contender it accepted requests from.
    holders: BTreeMap<u64, usize>,
    highest: u64,
    accepted: u64,
    rejected: u64,
    violations: Vec<String>,
}

#[tokio::test]
async fn no_two_holders_across_ten_master_kills() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start(3).await;
    let all = etcd.endpoints().join(",");
    let mut cell = Replicas::start(vec![all.clone(), all.clone(), all], &[]).await;
    cell.master(Duration::from_secs(20)).await;
    let mut setup = Raw::connect(&cell.addrs).await;
    setup
        .open("/ls/local/lock", 2, file(b"", false), false)
        .await
        .unwrap();
    // Close it: an idle session that never sends KeepAlives would hold every new master
    // in its KeepAlive-only phase for up to a lease (correct, but not what we measure).
    setup
        .call(|mut c, ctx| async move {
            c.close_session(pb::CloseSessionRequest {
                ctx,
                expired: false,
            })
            .await
        })
        .await
        .unwrap();

    let resource = Arc::new(Mutex::new(FencedResource::default()));
    let checker = Arc::new(tokio::sync::Mutex::new(Raw::connect(&cell.addrs).await));
    let checker_ka = checker.lock().await.keep_alive_loop();
    let stop = Arc::new(AtomicBool::new(false));
    let mut contenders = Vec::new();
    for who in 0..2usize {
        let (addrs, resource, checker, stop) = (
            cell.addrs.clone(),
            resource.clone(),
            checker.clone(),
            stop.clone(),
        );
        contenders.push(tokio::spawn(async move {
            let mut me = Raw::connect(&addrs).await;
            let ka = me.keep_alive_loop();
            let h = me
                .open("/ls/local/lock", 2, None, false)
                .await
                .unwrap()
                .handle;
            let mut last_gen = 0;
            while !stop.load(Ordering::Relaxed) {
                let hh = h.clone();
                let got = me
                    .call(|mut c, ctx| {
                        let h = hh.clone();
                        async move {
                            c.acquire(pb::AcquireRequest {
                                ctx,
                                handle: h,
                                mode: 1,
                                timeout_ms: 1000,
                            })
                            .await
                        }
                    })
                    .await;
                let seq = match got {
                    Ok(r) => r.sequencer.unwrap(),
                    Err(st) if werr(&st).map(|e| e.code) == Some(ErrorCode::LockHeld) => continue,
                    Err(st) => panic!("contender {who}: acquire failed: {st:?}"),
                };
                assert!(
                    seq.lock_generation > last_gen,
                    "contender {who}: generation went from {last_gen} to {}",
                    seq.lock_generation
                );
                last_gen = seq.lock_generation;
                for _ in 0..3 {
                    let s = seq.clone();
                    let current = checker
                        .lock()
                        .await
                        .call(|mut c, ctx| {
                            let s = s.clone();
                            async move {
                                c.check_sequencer(pb::CheckSequencerRequest {
                                    ctx,
                                    sequencer: Some(s),
                                })
                                .await
                            }
                        })
                        .await
                        .unwrap()
                        .current;
                    {
                        let mut r = resource.lock().unwrap();
                        if !current || seq.lock_generation < r.highest {
                            r.rejected += 1;
                        } else {
                            r.highest = seq.lock_generation;
                            r.accepted += 1;
                            if let Some(prev) = r.holders.insert(seq.lock_generation, who) {
                                if prev != who {
                                    let v = format!(
                                        "generation {} accepted from contenders {prev} and {who}",
                                        seq.lock_generation
                                    );
                                    r.violations.push(v);
                                }
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                let hh = h.clone();
                me.call(|mut c, ctx| {
                    let h = hh.clone();
                    async move { c.release(pb::ReleaseRequest { ctx, handle: h }).await }
                })
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(20 + 37 * who as u64)).await;
            }
            ka.abort();
            me.failovers
        }));
    }

    // Ten kills of whichever replica is master; after each, time until a write succeeds.
    let mut probe = Raw::connect(&cell.addrs).await;
    let probe_ka = probe.keep_alive_loop();
    let mut failover_ms = Vec::new();
    for kill in 0..10 {
        let (m, _) = cell.master(Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let killed_at = Instant::now();
        cell.kill(m).await;
        let p = format!("/ls/local/probe-{kill}");
        probe
            .call(|mut c, ctx| {
                let p = p.clone();
                async move {
                    c.open(pb::OpenRequest {
                        target: 0,
                        ctx,
                        path: p,
                        intent: 2,
                        events: 0,
                        lock_delay_ms: 0,
                        create: file(b"x", false),
                        read: false,
                    })
                    .await
                }
            })
            .await
            .unwrap();
        failover_ms.push(killed_at.elapsed().as_millis() as u64);
        cell.start_one(m).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut contender_failovers = Vec::new();
    for c in contenders {
        contender_failovers.push(
            tokio::time::timeout(Duration::from_secs(60), c)
                .await
                .expect("contender stuck")
                .expect("contender panicked"),
        );
    }
    probe_ka.abort();
    checker_ka.abort();

    let r = resource.lock().unwrap();
    failover_ms.sort();
    eprintln!(
        "failover (SIGKILL → first successful write) over {} kills: min {} ms, median {} ms, max {} ms; all: {:?}",
        failover_ms.len(),
        failover_ms[0],
        failover_ms[failover_ms.len() / 2],
        failover_ms[failover_ms.len() - 1],
        failover_ms
    );
    eprintln!(
        "fenced resource: {} accepted, {} rejected, {} lock generations, contenders saw {:?} failovers",
        r.accepted,
        r.rejected,
        r.holders.len(),
        contender_failovers
    );
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(
        r.holders.len() >= 10,
        "too little progress: {} generations",
        r.holders.len()
    );
    assert!(
        contender_failovers.iter().all(|f| *f >= 5),
        "contenders did not live through the kills: {contender_failovers:?}"
    );
    assert!(
        failover_ms[failover_ms.len() / 2] < 10_000,
        "median failover {} ms",
        failover_ms[failover_ms.len() / 2]
    );
}
