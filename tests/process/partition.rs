//! Cross-partition directories with real processes (docs/design.md §11, docs/partitioning.md): a cell
//! killed between the two steps of a `mkdir` or an `rm` of a directory whose entry and
//! children live in different cells leaves nothing its janitor does not repair after a
//! restart.

use crate::{bin, free_port, stderr, stdout, warren, warren_env};
use std::time::Duration;
use warren_client::{ClientOptions, ErrorCode, NodeKind, OpenOptions, Session};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_router::{PartitionMap, Route};
use warren_testkit::{wait_until, WarrenProcess};

struct Cluster {
    dir: tempfile::TempDir,
    meta: String,
    addrs: Vec<(String, String)>,
    procs: Vec<Option<WarrenProcess>>,
}

impl Cluster {
    async fn spawn_cell(&self, i: usize, fault: Option<&str>) -> WarrenProcess {
        let (name, addr) = &self.addrs[i];
        let data = self.dir.path().join(name);
        let data = data.to_str().unwrap();
        let args = [
            "cell", "--name", name, "--listen", addr, "--data", data, "--meta", &self.meta,
        ];
        let env: Vec<(&str, &str)> = fault.map(|f| ("WARREN_FAULT", f)).into_iter().collect();
        WarrenProcess::spawn_env(bin(), &args, &env).await
    }

    /// Starts a meta cell and two data cells (each data cell with the given fault hook),
    /// and initialises the map.
    async fn start(faults: [Option<&str>; 2]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let meta = format!("127.0.0.1:{}", free_port());
        let data = dir.path().join("meta");
        let meta_proc = WarrenProcess::spawn(
            bin(),
            &[
                "cell",
                "--name",
                "meta",
                "--listen",
                &meta,
                "--data",
                data.to_str().unwrap(),
            ],
        )
        .await;
        let addrs = (1..=2)
            .map(|i| (format!("c{i}"), format!("127.0.0.1:{}", free_port())))
            .collect();
        let mut c = Cluster {
            dir,
            meta,
            addrs,
            procs: vec![Some(meta_proc)],
        };
        for (i, fault) in faults.into_iter().enumerate() {
            let p = c.spawn_cell(i, fault).await;
            c.procs.push(Some(p));
        }
        let mut args = vec!["ctl", "deployment", "init", "--meta", &c.meta];
        let cells: Vec<String> = c.addrs.iter().map(|(n, a)| format!("{n}={a}")).collect();
        for cell in &cells {
            args.push("--cell");
            args.push(cell);
        }
        let o = warren(&args).await;
        assert!(o.status.success(), "deployment init: {}", stderr(&o));
        c
    }

    fn map(&self) -> PartitionMap {
        PartitionMap::even(
            "local",
            &self
                .addrs
                .iter()
                .map(|(n, a)| (n.clone(), vec![a.clone()]))
                .collect::<Vec<_>>(),
            warren_router::DEFAULT_SLOTS,
        )
        .unwrap()
    }

    fn addr_of(&self, cell: &str) -> String {
        self.addrs
            .iter()
            .find(|(n, _)| n == cell)
            .unwrap()
            .1
            .clone()
    }

    fn index_of(&self, cell: &str) -> usize {
        self.addrs.iter().position(|(n, _)| n == cell).unwrap()
    }

    async fn session(&self) -> Session {
        Session::connect_with(
            ClientOptions::meta([self.meta.clone()]).rpc_timeout(Duration::from_secs(3)),
        )
        .await
        .expect("connect")
    }

    /// Waits until data cell `i`'s process has exited (the fault hook aborted it).
    async fn wait_exit(&mut self, i: usize) {
        let mut p = self.procs[i + 1].take().expect("running");
        let status = tokio::time::timeout(Duration::from_secs(15), p.wait())
            .await
            .expect("the fault hook did not stop the cell");
        assert!(
            !status.success(),
            "the cell should have aborted: {status:?}"
        );
    }
}

/// A directory name under the root whose children live in another cell than its entry.
fn split_dir(map: &PartitionMap) -> (String, String, String) {
    for i in 0..1000 {
        let path = format!("/ls/local/d{i}");
        let Route::Cell { cell: entry, .. } = map.route(&path, false).unwrap() else {
            continue;
        };
        let Route::Cell { cell: anchor, .. } = map.route(&path, true).unwrap() else {
            continue;
        };
        if entry != anchor {
            return (path, entry.to_string(), anchor.to_string());
        }
    }
    panic!("no split directory among 1000 names")
}

/// A raw session at one cell (waiting, up to 30 s, while a restarted cell recovers).
async fn raw_at(addr: &str) -> (WarrenClient<tonic::transport::Channel>, pb::SessionContext) {
    let mut client = WarrenClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let s = loop {
        match client
            .create_session(pb::CreateSessionRequest::default())
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(st) if tokio::time::Instant::now() < deadline => {
                let code = warren_proto::WarrenError::from_status(&st).map(|e| e.code);
                assert_eq!(code, Some(ErrorCode::FailoverInProgress), "{st:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(st) => panic!("no session at {addr}: {st:?}"),
        }
    };
    let ctx = pb::SessionContext {
        session_id: s.session_id,
        secret: s.secret,
        epoch: s.epoch,
        ..Default::default()
    };
    (client, ctx)
}

/// Ends a raw session: it never acknowledges invalidations, so left open it would hold
/// up, for a lease, any write to what it looked at (as Chubby's rules say it must).
async fn close_raw(mut c: WarrenClient<tonic::transport::Channel>, ctx: pb::SessionContext) {
    let _ = c
        .close_session(pb::CloseSessionRequest {
            ctx: Some(ctx),
            expired: false,
        })
        .await;
}

/// Whether the cell at `addr` holds the child anchor of `path` (asked directly, so no
/// router's repair-on-open is involved).
async fn has_anchor(addr: &str, path: &str) -> bool {
    let Ok((mut c, ctx)) = tokio::time::timeout(Duration::from_secs(2), raw_at(addr)).await else {
        return false;
    };
    let found = c
        .open(pb::OpenRequest {
            ctx: Some(ctx.clone()),
            path: path.to_string(),
            intent: 1,
            target: pb::OpenTarget::Anchor as i32,
            ..Default::default()
        })
        .await
        .is_ok();
    close_raw(c, ctx).await;
    found
}

/// The names the cell at `addr` lists under the deployment root (the entries it holds).
async fn root_entries(addr: &str) -> Vec<String> {
    let (mut c, ctx) = raw_at(addr).await;
    let h = c
        .open(pb::OpenRequest {
            ctx: Some(ctx.clone()),
            path: "/ls/local".into(),
            intent: 1,
            ..Default::default()
        })
        .await
        .expect("open root")
        .into_inner()
        .handle;
    let r = c
        .read_dir(pb::ReadDirRequest {
            ctx: Some(ctx.clone()),
            handle: h,
        })
        .await
        .expect("read root")
        .into_inner();
    close_raw(c, ctx).await;
    r.entries.into_iter().map(|e| e.name).collect()
}

#[tokio::test]
async fn a_cell_killed_between_the_steps_of_a_split_mkdir_or_rm_converges_after_restart() {
    let map0 = {
        // Which cell holds the root's children depends only on the slot count and the
        // cells' order, so it is known before the processes start.
        let names = [("c1", vec!["x:1"]), ("c2", vec!["x:2"])];
        PartitionMap::even("local", &names, warren_router::DEFAULT_SLOTS).unwrap()
    };
    let (dir, entry_cell, anchor_cell) = split_dir(&map0);
    let faults = |cell: &str| {
        if cell == entry_cell {
            Some("abort-after-entry")
        } else {
            Some("abort-after-anchor-delete")
        }
    };
    let mut c = Cluster::start([faults("c1"), faults("c2")]).await;
    assert_eq!(
        c.map().route(&dir, true).unwrap(),
        map0.route(&dir, true).unwrap()
    );
    let entry_addr = c.addr_of(&entry_cell);
    let anchor_addr = c.addr_of(&anchor_cell);
    let short = dir.trim_start_matches("/ls/local");

    // mkdir: the entry cell commits the entry, then dies before making the anchor.
    let s = c.session().await;
    let attempt = tokio::time::timeout(
        Duration::from_secs(5),
        s.open(short, OpenOptions::new().read().create_dir()),
    )
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "the mkdir cannot have succeeded: its cell died in the middle"
    );
    let ei = c.index_of(&entry_cell);
    c.wait_exit(ei).await;
    assert!(!has_anchor(&anchor_addr, &dir).await, "no anchor yet");

    // Restarted (without the fault), its janitor makes the anchor by itself.
    let p = c.spawn_cell(ei, None).await;
    c.procs[ei + 1] = Some(p);
    wait_until(
        Duration::from_secs(10),
        "the janitor makes the anchor",
        || {
            let a = anchor_addr.clone();
            let d = dir.clone();
            async move { has_anchor(&a, &d).await }
        },
    )
    .await;
    assert!(root_entries(&entry_addr)
        .await
        .contains(&dir["/ls/local/".len()..].to_string()));
    // And the directory works: children go to the anchor's cell.
    let s = c.session().await;
    let (d, info) = s.open(short, OpenOptions::new().read()).await.unwrap();
    assert_eq!(
        (info.stat.kind, info.stat.cell.as_str()),
        (NodeKind::Directory, anchor_cell.as_str())
    );
    let child = format!("{short}/f");
    let (f, finfo) = s
        .open(
            &child,
            OpenOptions::new().write().create_file(b"x".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(finfo.stat.cell, anchor_cell);
    assert_eq!(d.child_names().await.unwrap(), vec!["f".to_string()]);
    assert_eq!(
        s.open(short, OpenOptions::new().write())
            .await
            .unwrap()
            .0
            .delete()
            .await
            .map_err(|e| e.code()),
        Err(Some(ErrorCode::NotEmpty))
    );
    f.delete().await.unwrap();
    let instance = info.stat.instance;

    // rm: the anchor cell removes the (now empty) anchor, then dies before unlinking
    // the entry.
    let (w, _) = s.open(short, OpenOptions::new().write()).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(20), w.delete()).await;
    let ai = c.index_of(&anchor_cell);
    c.wait_exit(ai).await;
    let name = dir["/ls/local/".len()..].to_string();
    assert!(
        root_entries(&entry_addr).await.contains(&name),
        "the entry is still listed while the anchor cell is down"
    );

    // Restarted, its janitor unlinks the entry: the namespace is consistent again.
    let p = c.spawn_cell(ai, None).await;
    c.procs[ai + 1] = Some(p);
    wait_until(
        Duration::from_secs(10),
        "the janitor unlinks the entry",
        || {
            let a = entry_addr.clone();
            let n = name.clone();
            async move { !root_entries(&a).await.contains(&n) }
        },
    )
    .await;
    assert!(!has_anchor(&anchor_addr, &dir).await);
    let s = c.session().await;
    assert_eq!(
        s.open(short, OpenOptions::new().read())
            .await
            .map(|_| ())
            .map_err(|e| e.code()),
        Err(Some(ErrorCode::NotFound))
    );
    // A new mkdir makes a new directory, with a greater instance.
    let (_, again) = s
        .open(short, OpenOptions::new().read().create_dir().exclusive())
        .await
        .unwrap();
    assert!(again.created);
    assert!(again.stat.instance > instance);
    assert!(has_anchor(&anchor_addr, &dir).await);
    s.close().await.unwrap();
}

/// `warren cell` for the map repair test: `name` at `addr`, admin at `admin`, its store in
/// `dir/name`, a data cell of the meta cell `meta` if given.
async fn spawn_with_admin(
    dir: &std::path::Path,
    name: &str,
    addr: &str,
    admin: &str,
    meta: Option<&str>,
) -> WarrenProcess {
    let data = dir.join(name);
    let mut args = vec![
        "cell",
        "--name",
        name,
        "--listen",
        addr,
        "--admin",
        admin,
        "--data",
        data.to_str().unwrap(),
    ];
    if let Some(meta) = meta {
        args.extend(["--meta", meta]);
    }
    WarrenProcess::spawn(bin(), &args).await
}

/// The `map_epoch` the cell's admin `/status` reports (0 if it does not answer).
async fn status_map_epoch(admin: &str) -> u64 {
    let Ok(r) = warren_loadtest::http::get(admin, "/status", Duration::from_secs(2)).await else {
        return 0;
    };
    serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["map_epoch"].as_u64())
        .unwrap_or(0)
}

#[tokio::test]
async fn garbage_map_writes_are_refused_and_a_corrupt_stored_map_is_repaired_from_the_cells() {
    use warren_cell::store::{embedded::EmbeddedStore, Mutation, Store};
    let dir = tempfile::tempdir().unwrap();
    let addr = || format!("127.0.0.1:{}", free_port());
    let (meta, meta_admin) = (addr(), addr());
    let cells: Vec<(String, String, String)> =
        (1..=2).map(|i| (format!("c{i}"), addr(), addr())).collect();
    let mut meta_proc = spawn_with_admin(dir.path(), "meta", &meta, &meta_admin, None).await;
    let mut procs = Vec::new();
    for (name, a, admin) in &cells {
        procs.push(spawn_with_admin(dir.path(), name, a, admin, Some(&meta)).await);
    }
    let mut init = vec!["ctl", "deployment", "init", "--meta", &meta];
    let specs: Vec<String> = cells.iter().map(|(n, a, _)| format!("{n}={a}")).collect();
    for s in &specs {
        init.extend(["--cell", s]);
    }
    let o = warren(&init).await;
    assert!(o.status.success(), "deployment init: {}", stderr(&o));
    let admins: Vec<String> = cells.iter().map(|(_, _, a)| a.clone()).collect();
    for a in &admins {
        wait_until(
            Duration::from_secs(30),
            "cells load map epoch 1",
            || async { status_map_epoch(a).await == 1 },
        )
        .await;
    }
    let put = |path: &'static str, value: &'static str| {
        let meta = meta.clone();
        async move {
            let s = Session::connect_with(
                ClientOptions::meta([meta]).rpc_timeout(Duration::from_secs(3)),
            )
            .await
            .expect("connect");
            let (h, _) = s
                .open(path, OpenOptions::new().write().create_file(value))
                .await
                .unwrap_or_else(|e| panic!("create {path}: {e}"));
            h.close().await;
            let _ = s.close().await;
        }
    };
    put("/ls/local/before", "kept").await;

    // Garbage through the ordinary command line is refused, naming the fix (from anyone
    // but the operator for who writes it, from the operator for what it is); the
    // deployment keeps working.
    let o = warren(&["ctl", "--endpoint", &meta, "put", "/warren/map", "garbage"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("error: PERMISSION_DENIED: writing the map refused: "),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("warren ctl map repair"),
        "{}",
        stderr(&o)
    );
    let o = warren_env(
        &["ctl", "--endpoint", &meta, "put", "/warren/map", "garbage"],
        &[("WARREN_PRINCIPAL", "warren:operator")],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("error: INVALID_ARGUMENT: the new contents are not a partition map"),
        "{}",
        stderr(&o)
    );
    put("/ls/local/after-garbage", "still routed").await;
    assert_eq!(status_map_epoch(&admins[0]).await, 1);

    // The meta cell's store goes bad while it is down (garbage naming epoch 3); the data
    // cells keep map epoch 1 in memory.
    meta_proc.kill9().await;
    {
        let store = EmbeddedStore::open(&dir.path().join("meta")).expect("open the meta store");
        store
            .commit(vec![Mutation::PutContents {
                path: "/ls/local/warren/map".into(),
                data: br#"{"map_epoch": 3, "cells": "lost"}"#.to_vec(),
            }])
            .await
            .expect("spoil the map");
    }
    let _meta_proc = spawn_with_admin(dir.path(), "meta", &meta, &meta_admin, None).await;
    let o = warren(&["ctl", "--endpoint", &meta, "map", "show"]).await;
    assert!(
        stderr(&o)
            .starts_with("error: INTERNAL: the partition map at /ls/local/warren/map is corrupt"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("warren ctl map repair"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        status_map_epoch(&admins[0]).await,
        1,
        "the cells keep their map"
    );
    // The restarted meta cell has no map in force; a data cell's /map is the one it keeps.
    let r = warren_loadtest::http::get(&meta_admin, "/map", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.body.trim()),
        (404, "cell meta has no partition map in force")
    );
    let r = warren_loadtest::http::get(&admins[1], "/map", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        PartitionMap::from_json(r.body.trim()).unwrap().map_epoch(),
        1
    );

    // Without a source, the repair says what to give it.
    let o = warren(&[
        "ctl",
        "map",
        "repair",
        "--meta",
        &meta,
        "--from",
        "/nonexistent.json",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no map of deployment local"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--from-cell"), "{}", stderr(&o));

    // The repair takes the cells' map and raises its epoch above the garbage's 3.
    let from = admins.join(",");
    let o = warren(&[
        "ctl",
        "map",
        "repair",
        "--meta",
        &meta,
        "--from-cell",
        &from,
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with(&format!(
            "repaired the partition map of deployment local: map epoch 4, from cell admin {} (epoch 1); the stored file was unreadable: ",
            admins[0]
        )),
        "{}",
        stdout(&o)
    );
    for a in &admins {
        wait_until(
            Duration::from_secs(30),
            "cells load the repaired map",
            || async { status_map_epoch(a).await == 4 },
        )
        .await;
    }
    let o = warren(&["ctl", "--endpoint", &meta, "--json", "map", "show"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let repaired = PartitionMap::from_json(stdout(&o).trim()).unwrap();
    assert_eq!(repaired.map_epoch(), 4);
    let first: Vec<(String, Vec<String>)> = cells
        .iter()
        .map(|(n, a, _)| (n.clone(), vec![a.clone()]))
        .collect();
    let map1 = PartitionMap::even("local", &first, warren_router::DEFAULT_SLOTS).unwrap();
    assert_eq!(repaired.slot_owners(), map1.slot_owners(), "the same slots");
    // Routing works: what was written before is read through the repaired map, and writes
    // go on.
    let s = Session::connect_with(
        ClientOptions::meta([meta.clone()]).rpc_timeout(Duration::from_secs(3)),
    )
    .await
    .unwrap();
    for (path, want) in [
        ("/ls/local/before", "kept"),
        ("/ls/local/after-garbage", "still routed"),
    ] {
        let (h, info) = s
            .open(path, OpenOptions::new().read().read_contents())
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(info.contents.as_deref(), Some(want.as_bytes()));
        h.close().await;
    }
    let _ = s.close().await;
    put("/ls/local/after-repair", "new").await;
    // A map that parses needs no repair.
    let o = warren(&[
        "ctl",
        "map",
        "repair",
        "--meta",
        &meta,
        "--from-cell",
        &from,
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(
            "error: INVALID_ARGUMENT: the stored map parses (epoch 4); nothing to repair"
        ),
        "{}",
        stderr(&o)
    );
    drop(procs);
}
