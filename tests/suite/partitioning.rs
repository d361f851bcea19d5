//! Partitioning properties that are not per-call semantics (docs/design.md §11): enforcement of the
//! map epoch, and how fast a new map reaches every router.

use std::time::{Duration, Instant};
use warren_client::{ClientOptions, ErrorCode, OpenOptions, Session};
use warren_router::{PartitionMap, Route};
use warren_testkit::{Bridge, Deployment, TestCell};

/// The cell of the deployment named `name`.
fn cell<'a>(d: &'a Deployment, name: &str) -> &'a TestCell {
    d.cells()
        .iter()
        .find(|c| c.name() == name)
        .unwrap_or_else(|| panic!("no cell {name}"))
}

/// `map` with `slot` given to `to`, one epoch newer.
fn moved(map: &PartitionMap, slot: u32, to: &str) -> PartitionMap {
    let mut owners = map.slot_owners().to_vec();
    owners[slot as usize] = to.to_string();
    PartitionMap::new(
        map.deployment(),
        map.map_epoch() + 1,
        owners,
        map.cells().clone(),
    )
    .expect("valid map")
}

async fn map_epoch_at(addr: &str) -> u64 {
    warren_client::locate(&[addr.to_string()], Duration::from_secs(2))
        .await
        .map(|l| l.map_epoch)
        .unwrap_or(0)
}

/// A router whose map is older than the cells' sends a call to the slot's old owner: the
/// cell refuses it with `WRONG_CELL{its epoch, new owner}` and serves nothing; the router
/// (here the client library in direct mode, cut off from the meta cell so it cannot learn
/// the new map) retries at the owner the cell named, and succeeds there.
#[tokio::test]
async fn a_call_routed_with_an_old_map_is_refused_never_served_and_retried_at_the_owner() {
    let lease = Duration::from_secs(2);
    let d = Deployment::builder()
        .cells(3)
        .proxies(0)
        .lease(lease)
        .run()
        .await;
    let map = d.map();
    let Route::Cell { cell: old, slot } = map.route("/ls/local/moved", false).unwrap() else {
        panic!("not a data cell path")
    };
    let old = old.to_string();
    let new = map
        .cells()
        .keys()
        .find(|c| **c != old)
        .expect("another cell")
        .clone();

    // The stale router reaches the meta cell through a bridge we can cut.
    let bridge = Bridge::start(d.meta().addr().parse().unwrap()).await;
    let stale = Session::connect_with(
        ClientOptions::meta([bridge.addr().to_string()]).grace_period(Duration::from_secs(60)),
    )
    .await
    .expect("connect");
    assert_eq!(stale.map_epoch(), 1);
    // Its session at the old owner exists before the cut.
    let (warm, _) = stale
        .open(
            "/warm",
            OpenOptions::new().write().create_file(b"w".to_vec()),
        )
        .await
        .unwrap();
    warm.close().await;

    bridge.blackhole();
    // The write of the new map waits for the cut-off watcher's lease at the meta cell to
    // end (it cached the map and cannot acknowledge), then commits.
    let map2 = moved(&map, slot, &new);
    d.write_map(&map2).await;
    for c in d.cells() {
        let addr = c.addr();
        warren_testkit::wait_until(Duration::from_secs(5), "cells load map 2", || {
            let addr = addr.clone();
            async move { map_epoch_at(&addr).await >= 2 }
        })
        .await;
    }
    let nodes_before = cell(&d, &old).handle().status().nodes;

    // A raw call with map epoch 1 at the old owner: refused, naming the new epoch and owner.
    let old_addr = cell(&d, &old).addr();
    let mut raw = crate::fixture::Raw::connect(&old_addr).await;
    raw.ctx.map_epoch = 1;
    let err = raw
        .open(
            "/ls/local/moved",
            3,
            crate::fixture::file_spec(b"raw, stale"),
        )
        .await
        .unwrap_err();
    let w = warren_proto::WarrenError::from_status(&err).expect("a Warren error");
    assert_eq!(
        (w.code, w.map_epoch, w.owner.as_str()),
        (ErrorCode::WrongCell, 2, new.as_str())
    );

    // The stale client: still at map epoch 1 (the meta cell is out of reach), so it goes
    // to the old owner first, is refused, and retries at the owner named.
    assert_eq!(
        stale.map_epoch(),
        1,
        "the client must still hold the old map"
    );
    let (h, info) = stale
        .open(
            "/moved",
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"v1".to_vec()),
        )
        .await
        .expect("retried at the owner");
    assert!(info.created);
    assert_eq!(info.stat.cell, new, "created at the new owner");
    h.close().await;

    // Never served by the old owner: it holds no more nodes than before.
    assert_eq!(cell(&d, &old).handle().status().nodes, nodes_before);
    // A fresh router (current map) finds it, at the new owner.
    let fresh = Session::connect_with(ClientOptions::meta([d.meta().addr()]))
        .await
        .unwrap();
    assert_eq!(fresh.map_epoch(), 2);
    let (h, info) = fresh
        .open("/moved", OpenOptions::new().read().read_contents())
        .await
        .unwrap();
    assert_eq!(info.contents.as_deref(), Some(&b"v1"[..]));
    assert_eq!(info.stat.cell, new);
    h.close().await;
    fresh.close().await.unwrap();
    bridge.unblackhole();
}

/// A new map reaches every router — each data cell, each proxy, each direct-mode client —
/// within a second of the write that commits it (measured from the write's
/// acknowledgement; Warren's own events carry it, docs/design.md §11).
#[tokio::test]
async fn a_map_change_reaches_every_cell_proxy_and_direct_client_within_a_second() {
    let d = Deployment::builder().cells(3).proxies(2).run().await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(
            Session::connect_with(ClientOptions::meta([d.meta().addr()]))
                .await
                .unwrap(),
        );
    }
    let map = d.map();
    // Move the slot of a directory nobody uses, to a cell that does not own it.
    let Route::Cell { cell: owner, slot } = map.route("/ls/local/unused/x", false).unwrap() else {
        panic!("not a data cell path")
    };
    let to = map
        .cells()
        .keys()
        .find(|c| c.as_str() != owner)
        .unwrap()
        .clone();
    let map2 = moved(&map, slot, &to);
    let written = d.write_map(&map2).await;

    let mut pending: Vec<String> = d
        .cells()
        .iter()
        .map(|c| format!("cell {}", c.name()))
        .chain(d.proxy_addrs().iter().map(|p| format!("proxy {p}")))
        .chain((0..clients.len()).map(|i| format!("client {i}")))
        .collect();
    let mut reached = Vec::new();
    let deadline = written + Duration::from_secs(5);
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for who in pending {
            let epoch = if let Some(name) = who.strip_prefix("cell ") {
                map_epoch_at(&cell(&d, name).addr()).await
            } else if let Some(addr) = who.strip_prefix("proxy ") {
                map_epoch_at(addr).await
            } else {
                let i: usize = who["client ".len()..].parse().unwrap();
                clients[i].map_epoch()
            };
            if epoch >= 2 {
                reached.push((who, written.elapsed()));
            } else {
                still.push(who);
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(pending.is_empty(), "never reached map epoch 2: {pending:?}");
    for (who, after) in &reached {
        eprintln!(
            "map epoch 2 reached {who} {:.1} ms after the write",
            after.as_secs_f64() * 1e3
        );
        assert!(
            *after < Duration::from_secs(1),
            "{who} switched {after:?} after the write"
        );
    }
    for c in clients {
        c.close().await.unwrap();
    }
}
