//! Resharding with cells on etcd (docs/resharding.md): a meta cell and three data cells,
//! each a `warren cell --store etcd` process on one etcd cluster, and a `warren proxy`.
//! Files and a held lock are written through the proxy, a fourth cell (also on etcd) is
//! added with `warren ctl reshard plan/apply`, and afterwards every file reads as written,
//! the lock is still held by its holder (its sequencer current), and the staged parts the
//! target kept in etcd are gone once installed.

use crate::harness::{bin, free_port, locate};
use std::collections::BTreeMap;
use std::time::Duration;
use warren_client::{ClientOptions, LockMode, OpenOptions, Session};
use warren_reshard::Plan;
use warren_testkit::etcd::EtcdCluster;
use warren_testkit::WarrenProcess;

async fn cell(etcd: &str, name: &str, meta: Option<&str>) -> (WarrenProcess, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "cell",
        "--store",
        "etcd",
        "--etcd",
        etcd,
        "--name",
        name,
        "--replica",
        "r0",
        "--listen",
        &addr,
    ];
    if let Some(m) = meta {
        args.extend(["--meta", m]);
    }
    let p = WarrenProcess::spawn(bin(), &args).await;
    // Wait until it won its election and serves (a data cell: once it has a map too).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !locate(&addr).await.is_some_and(|l| l.is_master) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cell {name} never became master"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (p, addr)
}

async fn ctl(args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("ctl").args(args).env_remove("WARREN_ENDPOINT");
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("ctl finished in time")
        .expect("ctl ran")
}

fn ok(what: &str, o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reshard_onto_a_cell_on_etcd_moves_files_and_locks() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start(1).await;
    let ep = etcd.endpoints().join(",");
    let (_meta, meta) = cell(&ep, "meta", None).await;
    let mut cells = Vec::new();
    let mut spec = Vec::new();
    for name in ["c1", "c2", "c3"] {
        let (p, addr) = cell(&ep, name, Some(&meta)).await;
        spec.push(format!("{name}={addr}"));
        cells.push(p);
    }
    let mut init = vec!["deployment", "init", "--meta", &meta];
    for s in &spec {
        init.extend(["--cell", s.as_str()]);
    }
    ok("deployment init", &ctl(&init).await);
    let proxy = WarrenProcess::spawn(
        bin(),
        &["proxy", "--listen", "127.0.0.1:0", "--meta", &meta],
    )
    .await;
    let (_c4, c4) = cell(&ep, "c4", Some(&meta)).await;

    let s = Session::connect_with(ClientOptions::proxies([proxy.proxy_addr()]))
        .await
        .expect("a session through the proxy");
    let mut files = BTreeMap::new();
    for d in 0..16 {
        let dir = format!("/ls/local/e{d}");
        let (h, _) = s
            .open(&dir, OpenOptions::new().write().create_dir())
            .await
            .expect("mkdir");
        h.close().await;
        for f in 0..4 {
            let path = format!("{dir}/f{f}");
            let (h, _) = s
                .open(&path, OpenOptions::new().write().create_file(path.clone()))
                .await
                .expect("create");
            h.close().await;
            files.insert(path.clone(), path);
        }
    }
    // A lock in a slot that moves to c4.
    let plan_file = tempfile::NamedTempFile::new().unwrap();
    ok(
        "plan",
        &ctl(&[
            "reshard",
            "plan",
            "--meta",
            &meta,
            "--add-cell",
            &format!("c4={c4}"),
            "--out",
            plan_file.path().to_str().unwrap(),
        ])
        .await,
    );
    let plan = Plan::from_json(&std::fs::read(plan_file.path()).unwrap()).unwrap();
    let map = warren_router::PartitionMap::new(
        "local",
        1,
        vec!["c1".to_string(); plan.slot_count as usize],
        BTreeMap::from([("c1".to_string(), vec!["h:1".to_string()])]),
    )
    .unwrap();
    let locked = files
        .keys()
        .find(|p| {
            let slot = map.slot_of_path(p).unwrap();
            plan.moves.iter().any(|m| m.slot == slot)
        })
        .expect("a file in a moving slot")
        .clone();
    let (holder, _) = s.open(&locked, OpenOptions::new().write()).await.unwrap();
    let seq = holder.acquire(LockMode::Exclusive, None).await.unwrap();

    ok(
        "apply",
        &ctl(&[
            "reshard",
            "apply",
            "--meta",
            &meta,
            "--slots-per-batch",
            "256",
            plan_file.path().to_str().unwrap(),
        ])
        .await,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let status = loop {
        let out = ok(
            "status",
            &ctl(&["reshard", "status", "--meta", &meta, "--json"]).await,
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        if v["state"] != "running" {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job did not end: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status["state"], "done", "{status}");

    for (path, value) in &files {
        let (h, _) = s.open(path, OpenOptions::new().read()).await.unwrap();
        assert_eq!(h.contents().await.unwrap().0, value.as_bytes(), "{path}");
        h.close().await;
    }
    assert!(
        s.check_sequencer(&seq).await.unwrap(),
        "the lock taken before the move is current after it"
    );
    let other = Session::connect_with(ClientOptions::proxies([proxy.proxy_addr()]))
        .await
        .unwrap();
    let (h, _) = other
        .open(&locked, OpenOptions::new().write())
        .await
        .unwrap();
    assert!(
        h.try_acquire(LockMode::Exclusive).await.is_err(),
        "still held"
    );

    // Nothing is left staged in etcd: the target installed it all.
    let mut kv = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .unwrap();
    let staged = kv
        .get(
            "/warren/local/c4/staged/",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(staged.count(), 0, "staged parts left in etcd");
    let nodes = kv
        .get(
            "/warren/local/c4/nodes/",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .unwrap();
    assert!(nodes.count() > 0, "c4 holds the moved nodes in etcd");
    drop(cells);
}
