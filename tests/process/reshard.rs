//! Resharding from the operator's side with real processes: `warren dev --add-cell` runs
//! one more data cell next to a running `warren dev` (it loads the map and serves nothing
//! until a map gives it slots), `warren ctl reshard plan --add-cell` proposes moving about
//! a quarter of the slots to it, and `warren ctl reshard apply` refuses garbage and stale
//! plans with errors naming the fix.

use crate::{bin, stderr, stdout, warren};
use std::collections::BTreeMap;
use std::time::Duration;
use warren_client::ErrorCode;
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_reshard::Plan;
use warren_router::{rebalance, PartitionMap, Route};
use warren_testkit::WarrenProcess;

/// Runs `warren ctl ARGS…`.
async fn ctl(args: &[&str]) -> std::process::Output {
    let mut v = vec!["ctl"];
    v.extend_from_slice(args);
    warren(&v).await
}

fn ok(what: &str, o: &std::process::Output) {
    assert!(o.status.success(), "{what}: {}", stderr(o));
}

/// A `warren dev` of three cells and two proxies (free ports), and `warren dev
/// --add-cell c4` next to it. Returns both, with c4's address.
async fn dev_and_c4(data: &std::path::Path) -> (WarrenProcess, WarrenProcess, String) {
    let dev = WarrenProcess::spawn_dev(bin(), data, 3, 2).await;
    let meta = dev.meta_addr();
    let c4 = WarrenProcess::spawn(
        bin(),
        &[
            "dev",
            "--add-cell",
            "c4",
            "--data",
            data.to_str().unwrap(),
            "--base-port",
            "0",
            "--meta",
            &meta,
        ],
    )
    .await;
    assert_eq!(c4.banner.len(), 4, "{:?}", c4.banner);
    assert_eq!(c4.banner[0], format!("meta: {meta}"));
    assert_eq!(c4.cells.len(), 1, "{:?}", c4.banner);
    let (name, addr) = c4.cells[0].clone();
    assert_eq!(name, "c4");
    assert!(
        c4.banner[2].starts_with("admin: c4=127.0.0.1:"),
        "{:?}",
        c4.banner
    );
    assert_eq!(
        c4.banner[3],
        format!("next: warren ctl reshard plan --meta {meta} --add-cell c4={addr}")
    );
    assert!(
        data.join("c4").is_dir(),
        "c4's store is under the dev data dir"
    );
    (dev, c4, addr)
}

/// The map in force, through the meta cell.
async fn map_at(meta: &str) -> PartitionMap {
    let o = ctl(&["--endpoint", meta, "map", "show", "--json"]).await;
    ok("map show", &o);
    PartitionMap::from_json(stdout(&o).trim()).expect("a map")
}

/// Opens `path` at the cell at `addr` with a raw session of its own; the error code and
/// the owner a WRONG_CELL names.
async fn raw_open(addr: &str, path: &str) -> Result<(), (Option<ErrorCode>, String)> {
    let mut c = WarrenClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let s = c
        .create_session(pb::CreateSessionRequest::default())
        .await
        .expect("a session at the added cell")
        .into_inner();
    let ctx = pb::SessionContext {
        session_id: s.session_id,
        secret: s.secret,
        epoch: s.epoch,
        ..Default::default()
    };
    let opened = c
        .open(pb::OpenRequest {
            ctx: Some(ctx.clone()),
            path: path.to_string(),
            intent: 1,
            ..Default::default()
        })
        .await;
    let _ = c
        .close_session(pb::CloseSessionRequest {
            ctx: Some(ctx),
            expired: false,
        })
        .await;
    match opened {
        Ok(_) => Ok(()),
        Err(st) => {
            let e = warren_proto::WarrenError::from_status(&st);
            Err((
                e.as_ref().map(|e| e.code),
                e.map(|e| e.owner).unwrap_or_default(),
            ))
        }
    }
}

#[tokio::test]
async fn an_added_cell_serves_nothing_until_a_map_gives_it_slots_and_apply_refuses_bad_plans() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let (mut dev, mut c4, c4_addr) = dev_and_c4(&data).await;
    let meta = dev.meta_addr();

    // c4 has loaded the map, which does not name it.
    let o = ctl(&["--endpoint", &c4_addr, "--json", "status"]).await;
    ok("status at c4", &o);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["cell"], "c4", "{v}");
    assert_eq!(v["map_epoch"], 1, "{v}");
    assert_eq!(v["serving"], true, "{v}");
    let map = map_at(&meta).await;
    assert!(map.replicas("c4").is_none());
    // It serves nothing: every path is another cell's, and it says whose.
    for path in ["/ls/local/a", "/ls/local/d/e/f"] {
        let Route::Cell { cell, .. } = map.route(path, false).unwrap() else {
            panic!("{path} is in a data cell")
        };
        let (code, owner) = raw_open(&c4_addr, path).await.expect_err("not c4's");
        assert_eq!(code, Some(ErrorCode::WrongCell), "{path}");
        assert_eq!(owner, cell, "{path}");
    }
    // The deployment is untouched: clients through a proxy go on as before.
    let ep = dev.proxy_addr();
    ok("mkdir", &ctl(&["--endpoint", &ep, "mkdir", "/a"]).await);
    ok(
        "put",
        &ctl(&["--endpoint", &ep, "put", "/a/f", "kept"]).await,
    );

    // `reshard plan` without a change moves nothing (the map is even), says so, exit 0.
    let o = ctl(&["reshard", "plan", "--meta", &meta]).await;
    ok("reshard plan", &o);
    assert_eq!(
        stdout(&o),
        "deployment local, map epoch 1: the plan moves nothing (every cell already has its \
         share of the 4096 slots)\n"
    );
    // Bad input: exit 2 and `error: INVALID_ARGUMENT: …` naming the fix.
    let to_garbage = dir.path().join("map.json");
    std::fs::write(&to_garbage, "[]").unwrap();
    let to_garbage = to_garbage.to_str().unwrap().to_string();
    let c4_spec = format!("c4={c4_addr}");
    for (args, wants) in [
        (
            vec!["--remove-cell", "c9"],
            "the map in force (epoch 1) has no cell c9",
        ),
        (
            vec!["--weight", "c1=heavy"],
            "the weight \"heavy\" is not a whole number",
        ),
        (vec!["--add-cell", "c4"], "has no '='; write NAME=HOST:PORT"),
        (
            vec![
                "--remove-cell",
                "c1",
                "--remove-cell",
                "c2",
                "--remove-cell",
                "c3",
            ],
            "the plan would leave no cell",
        ),
        (vec!["--to", &to_garbage], "not a partition map"),
        (
            vec!["--add-cell", &c4_spec, "--weight", "c5=2"],
            "no cell c5",
        ),
    ] {
        let mut argv = vec!["reshard", "plan", "--meta", &meta];
        argv.extend(args.iter().copied());
        let o = ctl(&argv).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("error: INVALID_ARGUMENT: ") && stderr(&o).contains(wants),
            "{args:?}: {}",
            stderr(&o)
        );
    }

    // `reshard apply` with garbage: refused before anything is asked of the meta cell.
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"moves\": 3").unwrap();
    let g = garbage.to_str().unwrap();
    let o = ctl(&["reshard", "apply", g, "--meta", &meta]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with(&format!(
            "error: INVALID_ARGUMENT: {g}: the plan is not valid JSON"
        )),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("warren ctl reshard plan --out FILE"),
        "{}",
        stderr(&o)
    );
    let o = ctl(&[
        "reshard",
        "apply",
        "/nonexistent/plan.json",
        "--meta",
        &meta,
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot read the plan /nonexistent/plan.json"),
        "{}",
        stderr(&o)
    );

    // A stale plan: made against epoch 1 (here without SlotStats: the plan's counts do not
    // matter to the check), then the map moves on to epoch 2 (the same owners).
    let target = BTreeMap::from([
        ("c1".to_string(), 1),
        ("c2".to_string(), 1),
        ("c3".to_string(), 1),
        ("c4".to_string(), 1),
    ]);
    let addresses = BTreeMap::from([("c4".to_string(), vec![c4_addr.clone()])]);
    let plan = Plan::from_proposal(&map, &rebalance(&map, &target, &addresses).unwrap());
    let stale = dir.path().join("stale.json");
    std::fs::write(&stale, plan.to_json()).unwrap();
    let next =
        PartitionMap::new("local", 2, map.slot_owners().to_vec(), map.cells().clone()).unwrap();
    // The map written into its file as the operator (the meta cell accepts a valid map of
    // epoch + 1 from that principal only).
    let json = next.to_json();
    ok(
        "write map epoch 2",
        &crate::warren_env(
            &[
                "ctl",
                "--endpoint",
                &meta,
                "put",
                "/ls/local/warren/map",
                &json,
            ],
            &[("WARREN_PRINCIPAL", "warren:operator")],
        )
        .await,
    );
    assert_eq!(map_at(&meta).await.map_epoch(), 2);
    let s = stale.to_str().unwrap();
    let o = ctl(&["reshard", "apply", s, "--meta", &meta]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).trim(),
        format!(
            "error: GENERATION_MISMATCH: {s}: the plan is stale: it was made against map epoch \
             1, and the map in force is epoch 2; make a new plan with `warren ctl reshard plan`"
        )
    );
    let o = ctl(&["--endpoint", &ep, "cat", "/a/f"]).await;
    assert_eq!(stdout(&o), "kept", "{}", stderr(&o));

    // Ctrl-C stops the added cell, then the deployment, each exit 0.
    let status = c4
        .interrupt(Duration::from_secs(20))
        .await
        .expect("c4 stops");
    assert!(status.success(), "exit {status:?}");
    let status = dev
        .interrupt(Duration::from_secs(20))
        .await
        .expect("dev stops");
    assert!(status.success(), "exit {status:?}");
}

/// Every data cell serves `Reshard.SlotStats`; those assertions marked (SlotStats) check
/// the counts themselves.
#[tokio::test]
async fn reshard_plan_moves_a_quarter_of_the_slots_to_an_added_cell() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let (mut dev, mut c4, c4_addr) = dev_and_c4(&data).await;
    let meta = dev.meta_addr();
    let ep = dev.proxy_addr();
    let map = map_at(&meta).await;

    // Some files, spread over the slots.
    let mut files = Vec::new();
    for d in 0..8 {
        let dir = format!("/d{d}");
        ok("mkdir", &ctl(&["--endpoint", &ep, "mkdir", &dir]).await);
        for f in 0..4 {
            let path = format!("{dir}/f{f}");
            ok(
                "put",
                &ctl(&["--endpoint", &ep, "put", &path, "0123456789"]).await,
            );
            files.push(format!("/ls/local{path}"));
        }
    }

    let plan_file = dir.path().join("plan.json");
    let p = plan_file.to_str().unwrap();
    let add = format!("c4={c4_addr}");
    let o = ctl(&[
        "reshard",
        "plan",
        "--meta",
        &meta,
        "--add-cell",
        &add,
        "--out",
        p,
    ])
    .await;
    ok("reshard plan", &o);
    let text = stdout(&o);
    // 4096 slots over 4 cells: 1024 each; c1..c3 give up 342, 341, 341.
    assert!(
        text.starts_with("deployment local, map epoch 1: 1024 of 4096 slots move\n"),
        "{text}"
    );
    for line in [
        "\nc1         1366      1024    -342\n",
        "\nc2         1365      1024    -341\n",
        "\nc3         1365      1024    -341\n",
        "\nc4            0      1024   +1024  added\n",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    let header = text
        .lines()
        .find(|l| l.starts_with("slots"))
        .expect("the moves' header");
    for column in [
        "from",
        "to",
        "directories",
        "nodes",
        "bytes",
        "held_locks",
        "ephemeral_nodes",
        "open_handles",
        "sessions",
    ] {
        assert!(header.contains(column), "{column} in {header}");
    }
    let runs: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("slots"))
        .skip(1)
        .take_while(|l| !l.starts_with("total"))
        .collect();
    assert_eq!(runs.len(), 3, "one run from each old cell: {runs:?}");
    for run in &runs {
        let cols: Vec<&str> = run.split_whitespace().collect();
        assert_eq!(cols[2], "c4", "{run}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("estimated time: ") && l.contains("(1024 slots × 12 ms + ")),
        "{text}"
    );
    assert!(text.contains(&format!("plan saved to {p}")), "{text}");

    // The JSON is the saved plan.
    let o = ctl(&[
        "--json",
        "reshard",
        "plan",
        "--meta",
        &meta,
        "--add-cell",
        &add,
    ])
    .await;
    ok("reshard plan --json", &o);
    let plan = Plan::from_json(stdout(&o).as_bytes()).expect("a plan");
    let saved = Plan::from_json(&std::fs::read(&plan_file).unwrap()).expect("the saved plan");
    assert_eq!(plan, saved);
    assert_eq!(plan.moves.len(), 1024);
    assert!(plan.moves.iter().all(|m| m.to == "c4"));
    plan.check_against(&map).expect("fresh");

    // (SlotStats) The files in moving slots are counted, with their bytes.
    let moving: std::collections::BTreeSet<u32> = plan.moves.iter().map(|m| m.slot).collect();
    let in_moving = files
        .iter()
        .filter(|f| match map.route(f, false).unwrap() {
            Route::Cell { slot, .. } => moving.contains(&slot),
            Route::Meta => false,
        })
        .count() as u64;
    assert!(in_moving > 0, "some of the files are in moving slots");
    assert!(
        plan.totals.nodes >= in_moving,
        "{:?} vs {in_moving}",
        plan.totals
    );
    assert!(plan.totals.bytes >= 10 * in_moving, "{:?}", plan.totals);

    let status = c4
        .interrupt(Duration::from_secs(20))
        .await
        .expect("c4 stops");
    assert!(status.success(), "exit {status:?}");
    let status = dev
        .interrupt(Duration::from_secs(20))
        .await
        .expect("dev stops");
    assert!(status.success(), "exit {status:?}");
}

/// Polls `reshard status --json` until the job ends (at most `limit`); its last status.
async fn wait_for_job(meta: &str, limit: Duration) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let o = ctl(&["reshard", "status", "--meta", meta, "--json"]).await;
        ok("reshard status", &o);
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        let state = v["state"].as_str().unwrap_or("").to_string();
        if !matches!(state.as_str(), "running" | "aborting") {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not end within {limit:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whole workflow with data: files written through a proxy before the move are all
/// there, unchanged, after about a quarter of the slots moved to an added cell; the job
/// says it is done with every slot moved; the map gives c4 its share; c4 serves what
/// moved and the cells that gave it up hold nothing of it any more.
#[tokio::test]
async fn apply_moves_a_quarter_of_the_slots_with_their_files_to_an_added_cell() {
    use warren_client::{ClientOptions, OpenOptions, Session};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let (mut dev, mut c4, c4_addr) = dev_and_c4(&data).await;
    let meta = dev.meta_addr();
    let ep = dev.proxy_addr();

    let s = Session::connect_with(ClientOptions::proxies([ep.clone()]))
        .await
        .expect("a session through the proxy");
    let mut files = BTreeMap::new();
    for d in 0..24 {
        let dirp = format!("/ls/local/r{d}");
        let (h, _) = s
            .open(&dirp, OpenOptions::new().write().create_dir())
            .await
            .expect("mkdir");
        h.close().await;
        for f in 0..8 {
            let path = format!("{dirp}/f{f}");
            let value = format!("value of {path}");
            let (h, _) = s
                .open(&path, OpenOptions::new().write().create_file(value.clone()))
                .await
                .expect("create");
            h.close().await;
            files.insert(path, value);
        }
    }

    let plan_file = dir.path().join("plan.json");
    let o = ctl(&[
        "reshard",
        "plan",
        "--meta",
        &meta,
        "--add-cell",
        &format!("c4={c4_addr}"),
        "--out",
        plan_file.to_str().unwrap(),
    ])
    .await;
    ok("reshard plan", &o);
    let plan = Plan::from_json(&std::fs::read(&plan_file).unwrap()).unwrap();
    assert_eq!(plan.moves.len(), 1024);
    let moved_files: usize = plan.moves.iter().map(|m| m.counts.nodes).sum::<u64>() as usize;
    assert!(moved_files > 0, "some of the files are in moving slots");

    let started = std::time::Instant::now();
    let o = ctl(&[
        "reshard",
        "apply",
        "--meta",
        &meta,
        "--slots-per-batch",
        "128",
        plan_file.to_str().unwrap(),
    ])
    .await;
    ok("reshard apply", &o);
    // A second apply while the first runs is refused.
    let again = ctl(&[
        "reshard",
        "apply",
        "--meta",
        &meta,
        plan_file.to_str().unwrap(),
    ])
    .await;
    assert!(!again.status.success());
    let v = wait_for_job(&meta, Duration::from_secs(240)).await;
    let took = started.elapsed();
    assert_eq!(v["state"], "done", "{v}");
    eprintln!("reshard of 1024 slots ({moved_files} nodes) took {took:?}");

    let map = map_at(&meta).await;
    assert_eq!(map.slot_counts()["c4"], 1024);
    assert_eq!(map.map_epoch(), 1 + 1024 / 128);

    // Every file, read afresh through the proxy, is as written.
    for (path, value) in &files {
        let (h, _) = s
            .open(path, OpenOptions::new().read())
            .await
            .unwrap_or_else(|e| panic!("open {path} after the move: {e}"));
        let (got, _) = h.contents().await.expect("read");
        assert_eq!(String::from_utf8_lossy(&got), *value, "{path}");
        h.close().await;
    }
    // The files of moved slots are at c4 now, and only there.
    let mut at_c4 = 0;
    for path in files.keys() {
        let Route::Cell { cell, .. } = map.route(path, false).unwrap() else {
            panic!("{path} is in a data cell")
        };
        if cell == "c4" {
            at_c4 += 1;
            raw_open(&c4_addr, path).await.expect("c4 serves it");
        }
    }
    assert!(at_c4 > 0);
    // Apply after the job is done, with the same (now stale) plan: refused.
    let stale = ctl(&[
        "reshard",
        "apply",
        "--meta",
        &meta,
        plan_file.to_str().unwrap(),
    ])
    .await;
    assert!(!stale.status.success());
    assert!(stderr(&stale).contains("stale"), "{}", stderr(&stale));
    // Abort after the last commit: refused, nothing changes.
    let abort = ctl(&["reshard", "abort", "--meta", &meta]).await;
    assert!(!abort.status.success());
    assert!(
        stderr(&abort).contains("nothing to abort"),
        "{}",
        stderr(&abort)
    );

    s.close().await.ok();
    assert!(c4
        .interrupt(Duration::from_secs(20))
        .await
        .unwrap()
        .success());
    assert!(dev
        .interrupt(Duration::from_secs(20))
        .await
        .unwrap()
        .success());
}
