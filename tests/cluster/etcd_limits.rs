//! A cell whose etcd limits exceed etcd's own (`--etcd-max-txn-ops 10000` against an etcd
//! on its default `--max-txn-ops 128`, or an etcd with a small `--max-request-bytes`): the
//! store splits what etcd refuses and keeps writing, and a cell meets such an etcd at its
//! election and serves a write burst with no failed write and no re-election
//! (docs/operations.md, "etcd limits").

use crate::harness::{file, free_port, Raw, Replicas};
use etcd_client::Client;
use std::time::Duration;
use warren_cell::store::etcd::{cell_prefix, EtcdStore};
use warren_cell::store::memory::MemoryStore;
use warren_cell::store::{Mutation, SessionRecord, Store};
use warren_proto::pb;
use warren_testkit::etcd::{http_request, EtcdCluster};

/// etcd's default `--max-txn-ops`.
const ETCD_DEFAULT_TXN_OPS: usize = 128;
/// A `--max-request-bytes` well below the 1 MiB the store writes per transaction; its
/// gRPC receive limit (this + 512 KiB) is below 1 MiB too.
const SMALL_REQUEST_BYTES: usize = 400_000;

fn session(i: u16) -> Mutation {
    Mutation::PutSession(SessionRecord {
        id: [
            (i >> 8) as u8,
            i as u8,
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            9,
            10,
            11,
            12,
            13,
            14,
        ],
        secret: [7; 16],
        principal: format!("p{i}"),
        ..Default::default()
    })
}

/// 1,000 sessions and 20 files of 100 KB: over both of etcd's limits in one batch.
fn big_batch() -> Vec<Mutation> {
    let mut batch: Vec<Mutation> = (0..1000).map(session).collect();
    for i in 0..20u8 {
        batch.push(Mutation::PutContents {
            path: format!("/ls/local/big{i}"),
            data: vec![i; 100_000],
        });
    }
    batch
}

#[tokio::test]
async fn a_store_above_etcds_limits_splits_what_etcd_refuses() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start_with_limits(1, ETCD_DEFAULT_TXN_OPS, SMALL_REQUEST_BYTES).await;
    let c = Client::connect(etcd.endpoints(), None).await.unwrap();
    // No probe: the first commit meets both limits and must still apply everything.
    let store =
        EtcdStore::new(c, cell_prefix("local", "c9"), None).with_limits(10_000, 1024 * 1024);
    let reference = MemoryStore::new();
    store.commit(big_batch()).await.unwrap();
    reference.commit(big_batch()).await.unwrap();
    let (ops, bytes) = store.limits();
    assert_eq!(ops, ETCD_DEFAULT_TXN_OPS, "lowered to etcd's default first");
    assert!(
        bytes < SMALL_REQUEST_BYTES,
        "byte budget lowered below etcd's: {bytes}"
    );
    let mut got = store.load().await.unwrap();
    let mut want = reference.load().await.unwrap();
    got.contents.sort();
    want.contents.sort();
    got.sessions.sort_by_key(|s| s.id);
    want.sessions.sort_by_key(|s| s.id);
    assert_eq!(got.sessions.len(), 1000);
    assert_eq!(got, want);
}

#[tokio::test]
async fn the_probe_finds_etcds_limits_and_writes_nothing() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start_with_limits(1, 300, SMALL_REQUEST_BYTES).await;
    let mut c = Client::connect(etcd.endpoints(), None).await.unwrap();
    let prefix = cell_prefix("local", "c9");
    let store = EtcdStore::new(c.clone(), prefix.clone(), None).with_limits(10_000, 1024 * 1024);
    let (ops, bytes) = store.probe_limits().await.unwrap();
    // The exact limit (not etcd's default: the bisection found 300).
    assert_eq!(ops, 300);
    assert!(
        (64 * 1024..SMALL_REQUEST_BYTES).contains(&bytes),
        "byte budget {bytes} not below etcd's {SMALL_REQUEST_BYTES}"
    );
    // Within etcd's limits already: nothing changes.
    let modest = EtcdStore::new(c.clone(), prefix.clone(), None).with_limits(100, 256 * 1024);
    assert_eq!(modest.probe_limits().await.unwrap(), (100, 256 * 1024));
    // Nothing was written under the cell's prefix, and no revision was spent.
    let range = c
        .get(
            prefix.clone(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert_eq!(range.kvs().len(), 0);
    let rev = range.header().unwrap().revision();
    assert_eq!(rev, 1, "the probes changed etcd's revision");
    // The lowered store writes a batch over both limits.
    store.commit(big_batch()).await.unwrap();
    assert_eq!(store.load().await.unwrap().sessions.len(), 1000);
}

async fn metric(admin: &str, name: &str) -> f64 {
    let (code, body) = http_request(admin, "GET", "/metrics", None).await.unwrap();
    assert_eq!(code, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Writers × files each: 1,280 creates (2 keys each), 64 at a time, so group commits hold
/// far more than 128 keys.
const WRITERS: usize = 64;
const FILES_EACH: usize = 20;
/// Ephemeral files of one session, all deleted in one batch when it closes.
const EPHEMERAL: usize = 300;

#[tokio::test]
async fn a_cell_above_etcds_txn_limit_serves_a_write_burst() {
    let _etcd_bin = warren_testkit::require_etcd!();
    // etcd on its defaults: 128 operations, 1.5 MiB per request.
    let etcd = EtcdCluster::start_with_limits(1, ETCD_DEFAULT_TXN_OPS, 3 * 1024 * 1024 / 2).await;
    let admin = format!("127.0.0.1:{}", free_port());
    let cell = Replicas::start(
        etcd.endpoints(),
        &["--etcd-max-txn-ops", "10000", "--admin", &admin],
    )
    .await;
    let (_, epoch) = cell.master(Duration::from_secs(20)).await;

    // One session holds many ephemeral files; closing it deletes them in one batch.
    let mut eph = Raw::connect(&cell.addrs).await;
    for i in 0..EPHEMERAL {
        let path = format!("/ls/local/e{i}");
        eph.open(&path, 2, file(b"e", true), false).await.unwrap();
    }

    // The burst: every writer creates its files as fast as the cell acknowledges them.
    let started = std::time::Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let addrs = cell.addrs.clone();
            tokio::spawn(async move {
                let mut raw = Raw::connect(&addrs).await;
                let (mut acked, mut failed) = (Vec::new(), Vec::new());
                for i in 0..FILES_EACH {
                    let path = format!("/ls/local/w{w}-{i}");
                    let value = vec![w as u8; 512];
                    match raw.open(&path, 2, file(&value, false), false).await {
                        Ok(_) => acked.push((path, value)),
                        Err(st) => failed.push(format!("{path}: {st:?}")),
                    }
                }
                (acked, failed, raw.failovers)
            })
        })
        .collect();
    // Meanwhile the ephemeral files' session ends.
    let ctx = Some(eph.ctx.clone());
    let closed = eph
        .client
        .close_session(pb::CloseSessionRequest {
            ctx,
            expired: false,
        })
        .await;
    let (mut acked, mut failed, mut failovers) = (Vec::new(), Vec::new(), 0);
    for (w, writer) in writers.into_iter().enumerate() {
        // A writer whose session could not even be created (the harness panics) counts
        // all its writes as failed, so a broken cell still yields figures.
        match writer.await {
            Ok((a, f, n)) => {
                acked.extend(a);
                failed.extend(f);
                failovers += n;
            }
            Err(e) => failed.extend((0..FILES_EACH).map(|i| format!("w{w}-{i}: {e}"))),
        }
    }
    let elapsed = started.elapsed();
    let (_, epoch_after) = cell.master(Duration::from_secs(20)).await;
    let elections = metric(&admin, "warren_cell_elections_won_total").await;
    let depositions = metric(&admin, "warren_cell_depositions_total").await;
    eprintln!(
        "write burst: {} acknowledged, {} failed, {failovers} failovers seen by clients, \
         {elections} elections won, {depositions} depositions, epoch {epoch} -> {epoch_after}, \
         {elapsed:?}",
        acked.len(),
        failed.len(),
    );
    closed.expect("closing the session of the ephemeral files");
    assert!(
        failed.is_empty(),
        "writes failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert_eq!(acked.len(), WRITERS * FILES_EACH);
    assert_eq!(failovers, 0, "clients saw a failover");
    // No re-election: the same master, the same epoch, never deposed.
    assert_eq!(epoch_after, epoch);
    assert_eq!(elections, 1.0);
    assert_eq!(depositions, 0.0);
    // The election's probe met etcd's limit before any write.
    assert_eq!(metric(&admin, "warren_cell_etcd_max_txn_ops").await, 128.0);
    assert!(metric(&admin, "warren_cell_etcd_limit_refusals_total").await >= 1.0);

    // Every acknowledged write reads back, and the ephemeral files are gone.
    let mut reader = Raw::connect(&cell.addrs).await;
    for (path, value) in &acked {
        let got = reader.open(path, 1, None, true).await.unwrap().contents;
        assert_eq!(&got, value, "{path}");
    }
    for i in [0, EPHEMERAL / 2, EPHEMERAL - 1] {
        let path = format!("/ls/local/e{i}");
        assert!(
            reader.open(&path, 1, None, false).await.is_err(),
            "{path} outlived its session"
        );
    }
    // And they stay gone after a restart: the cell's state in etcd is whole.
    drop(reader);
    drop(cell);
    let cell = Replicas::start(etcd.endpoints(), &["--etcd-max-txn-ops", "10000"]).await;
    cell.master(Duration::from_secs(20)).await;
    let mut reader = Raw::connect(&cell.addrs).await;
    for (path, value) in acked.iter().step_by(37) {
        assert_eq!(
            &reader.open(path, 1, None, true).await.unwrap().contents,
            value
        );
    }
    assert!(reader.open("/ls/local/e7", 1, None, false).await.is_err());
}
