//! Resharding under faults with real processes (docs/design.md §12, docs/operations.md
//! "Reshard fault hooks"): a deployment whose meta cell, data cells c1..c3, the added cell
//! c4 and a proxy each run as their own `warren` process, so one of them can die
//! (`kill -9`, or a `WARREN_FAULT` hook that aborts it at a chosen step of a slot move)
//! and be restarted on the same store and port while `warren ctl reshard apply` moves
//! about a quarter of the slots to c4 and a client keeps writing through the proxy.
//!
//! Each test ends with the same checks: every slot has exactly one owner (the job's
//! per-slot states agree with the map in force: a slot is the target's if and only if its
//! move is done), every file read afresh through the proxy holds what the clients were
//! told was written (or, for a write that failed, one of the values it may have left),
//! the cell owning a file serves it and every other data cell answers WRONG_CELL for it,
//! and the locks taken before the move are still held by their holder. The refusals test
//! checks that bad applies change neither the map nor the job record.

use crate::{bin, free_port, stderr, stdout, warren};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warren_client::{ClientOptions, ErrorCode, Handle, LockMode, OpenOptions, Session};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_reshard::Plan;
use warren_router::{PartitionMap, Route};
use warren_testkit::deployment::wait_for_map_at;
use warren_testkit::WarrenProcess;

/// Directories written before the move (their files' slots are the directories' own, so
/// many directories spread the files over the slots).
const DIRS: usize = 96;
/// Files per directory.
const FILES: usize = 3;
/// Locks taken before the move and held throughout, on files whose slots move.
const LOCKS: usize = 3;
/// The data cells (c4 is added by the reshard).
const DATA_CELLS: [&str; 4] = ["c1", "c2", "c3", "c4"];

/// Runs `warren ctl ARGS…`.
async fn ctl(args: &[&str]) -> std::process::Output {
    let mut v = vec!["ctl"];
    v.extend_from_slice(args);
    warren(&v).await
}

fn ok(what: &str, o: &std::process::Output) {
    assert!(o.status.success(), "{what}: {}", stderr(o));
}

/// The values a file may hold: what the last acknowledged write set, plus the values of
/// writes that failed after it (a failed write may or may not have been applied).
type Allowed = BTreeMap<String, Vec<String>>;

/// The processes of one deployment, each restartable on its store and port.
struct Deployment {
    dir: tempfile::TempDir,
    meta: String,
    /// (name, address) of c1..c4.
    cells: Vec<(String, String)>,
    proxy: String,
    procs: BTreeMap<String, WarrenProcess>,
    /// The `WARREN_FAULT` each process was (last) started with.
    faults: BTreeMap<String, String>,
}

impl Deployment {
    /// Starts the meta cell, c1..c3 (initialised as the deployment's cells, map epoch 1),
    /// c4 (a data cell the map does not name yet) and a proxy routing by the map. `faults`
    /// arms a `WARREN_FAULT` hook in the named processes (`meta`, `c1`…`c4`).
    async fn start(faults: &[(&str, &str)]) -> Deployment {
        let addr = || format!("127.0.0.1:{}", free_port());
        let mut d = Deployment {
            dir: tempfile::tempdir().unwrap(),
            meta: addr(),
            cells: DATA_CELLS.iter().map(|n| (n.to_string(), addr())).collect(),
            proxy: addr(),
            procs: BTreeMap::new(),
            faults: faults
                .iter()
                .map(|(p, f)| (p.to_string(), f.to_string()))
                .collect(),
        };
        d.spawn("meta").await;
        for c in &DATA_CELLS[..3] {
            d.spawn(c).await;
        }
        let mut init = vec!["ctl", "deployment", "init", "--meta", &d.meta];
        let specs: Vec<String> = d.cells[..3]
            .iter()
            .map(|(n, a)| format!("{n}={a}"))
            .collect();
        for s in &specs {
            init.extend(["--cell", s]);
        }
        ok("deployment init", &warren(&init).await);
        d.spawn("c4").await;
        for (name, addr) in &d.cells {
            wait_for_map_at(addr, 1, name).await;
        }
        d.spawn("proxy").await;
        d
    }

    fn addr_of(&self, cell: &str) -> String {
        self.cells
            .iter()
            .find(|(n, _)| n == cell)
            .unwrap()
            .1
            .clone()
    }

    /// Starts process `who` (`meta`, `c1`…`c4`, `proxy`) on its port and store, with its
    /// fault hook if it still has one.
    async fn spawn(&mut self, who: &str) {
        let data = self.dir.path().join(who);
        let data = data.to_str().unwrap().to_string();
        let timings = [
            "--lease",
            "2s",
            "--proxy-lease",
            "5s",
            "--claim-window",
            "20s",
        ];
        let args: Vec<String> = match who {
            "meta" => vec![
                "cell", "--name", "meta", "--listen", &self.meta, "--data", &data,
            ]
            .into_iter()
            .chain(timings)
            .map(String::from)
            .collect(),
            "proxy" => [
                "proxy",
                "--listen",
                &self.proxy,
                "--meta",
                &self.meta,
                "--client-lease",
                "2s",
                "--lease-margin",
                "500ms",
                "--keepalive-reply-before-end",
                "500ms",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            cell => {
                let addr = self.addr_of(cell);
                ["cell", "--name", cell, "--listen", &addr, "--data", &data]
                    .into_iter()
                    .chain(["--meta", &self.meta])
                    .chain(timings)
                    .map(String::from)
                    .collect()
            }
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .faults
            .get(who)
            .map(|f| ("WARREN_FAULT", f.as_str()))
            .into_iter()
            .collect();
        let p = WarrenProcess::spawn_env(bin(), &argv, &env).await;
        self.procs.insert(who.to_string(), p);
    }

    /// `kill -9` of `who`.
    async fn kill9(&mut self, who: &str) {
        let mut p = self.procs.remove(who).expect("running");
        p.kill9().await;
    }

    /// Waits (up to `within`) for `who`'s fault hook to abort it; how long that took.
    async fn wait_for_abort(&mut self, who: &str, within: Duration) -> Duration {
        let started = Instant::now();
        let mut p = self.procs.remove(who).expect("running");
        let status = tokio::time::timeout(within, p.wait())
            .await
            .unwrap_or_else(|_| panic!("{who}'s fault hook did not fire within {within:?}"));
        assert!(!status.success(), "{who} should have aborted: {status:?}");
        started.elapsed()
    }

    /// Restarts `who` after it died, without its fault hook.
    async fn restart(&mut self, who: &str) {
        assert!(!self.procs.contains_key(who), "{who} is still running");
        self.faults.remove(who);
        self.spawn(who).await;
    }

    async fn session(&self) -> Session {
        Session::connect_with(
            ClientOptions::proxies([self.proxy.clone()]).rpc_timeout(Duration::from_secs(5)),
        )
        .await
        .expect("a session through the proxy")
    }

    /// The map in force, from the meta cell.
    async fn map(&self) -> PartitionMap {
        let o = ctl(&["--endpoint", &self.meta, "map", "show", "--json"]).await;
        ok("map show", &o);
        PartitionMap::from_json(stdout(&o).trim()).expect("a map")
    }

    /// The job record as stored (`None`: there is none).
    async fn job_record(&self) -> Option<String> {
        let o = ctl(&[
            "--endpoint",
            &self.meta,
            "cat",
            "/ls/local/warren/reshard/job",
        ])
        .await;
        if o.status.success() {
            Some(stdout(&o))
        } else {
            assert!(stderr(&o).contains("NOT_FOUND"), "{}", stderr(&o));
            None
        }
    }

    async fn status(&self) -> serde_json::Value {
        let o = ctl(&["reshard", "status", "--meta", &self.meta, "--json"]).await;
        ok("reshard status", &o);
        serde_json::from_str(stdout(&o).trim()).expect("status JSON")
    }

    /// Polls the job's status until it ends (at most `limit`), riding out a meta cell that
    /// is down or failing over.
    async fn wait_for_job(&self, limit: Duration) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let o = ctl(&["reshard", "status", "--meta", &self.meta, "--json"]).await;
            if o.status.success() {
                let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
                let state = v["state"].as_str().unwrap_or("").to_string();
                if !matches!(state.as_str(), "running" | "aborting") {
                    return v;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the job did not end within {limit:?}: {v}"
                );
            } else {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no job status within {limit:?}: {}",
                    stderr(&o)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls the job's status until some slot moving from `from` is in `state`.
    async fn wait_for_slot_state(&self, from: &str, state: &str, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let v = self.status().await;
            let hit = v["slots"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["from"] == from && s["state"] == state));
            if hit {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no slot of {from} {state} within {limit:?}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `reshard plan --add-cell c4=… --out plan.json`; the plan.
    async fn plan(&self) -> (Plan, String) {
        let add = format!("c4={}", self.addr_of("c4"));
        self.plan_with(&["--add-cell", &add]).await
    }

    /// `reshard plan CHANGE… --out plan.json`; the plan.
    async fn plan_with(&self, change: &[&str]) -> (Plan, String) {
        let file = self.dir.path().join("plan.json");
        let f = file.to_str().unwrap().to_string();
        let mut argv = vec!["reshard", "plan", "--meta", &self.meta, "--out", &f];
        argv.extend_from_slice(change);
        let o = ctl(&argv).await;
        ok("reshard plan", &o);
        (Plan::from_json(&std::fs::read(&file).unwrap()).unwrap(), f)
    }

    /// `reshard apply PLAN ARGS…`, which must start a job.
    async fn apply(&self, plan: &str, args: &[&str]) {
        let mut argv = vec!["reshard", "apply", "--meta", &self.meta, plan];
        argv.extend_from_slice(args);
        ok("reshard apply", &ctl(&argv).await);
    }
}

/// What the clients did: the files and the values they may hold, the locks held.
struct Clients {
    /// The session that wrote the files and holds the locks.
    holder: Session,
    locks: Vec<Handle>,
    allowed: Arc<Mutex<Allowed>>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    writer: tokio::task::JoinHandle<()>,
}

/// Writes the files (through the proxy), takes [`LOCKS`] exclusive locks on files whose
/// slots `plan` moves, and starts a writer that overwrites the files one after another
/// until [`Clients::stop`].
async fn clients(d: &Deployment, plan: &Plan) -> Clients {
    let s = d.session().await;
    let mut allowed = Allowed::new();
    for i in 0..DIRS {
        let dir = format!("/ls/local/d{i}");
        let (h, _) = s
            .open(&dir, OpenOptions::new().write().create_dir())
            .await
            .unwrap_or_else(|e| panic!("mkdir {dir}: {e}"));
        h.close().await;
        for f in 0..FILES {
            let path = format!("{dir}/f{f}");
            let value = format!("{path} v0");
            let (h, _) = s
                .open(&path, OpenOptions::new().write().create_file(value.clone()))
                .await
                .unwrap_or_else(|e| panic!("create {path}: {e}"));
            h.close().await;
            allowed.insert(path, vec![value]);
        }
    }
    let map = d.map().await;
    let moving: BTreeSet<u32> = plan.moves.iter().map(|m| m.slot).collect();
    let in_moving: Vec<String> = allowed
        .keys()
        .filter(|p| moving.contains(&slot_of(&map, p)))
        .cloned()
        .collect();
    assert!(
        in_moving.len() > 10,
        "only {} of the files are in moving slots",
        in_moving.len()
    );
    let mut locks = Vec::new();
    for p in in_moving.iter().take(LOCKS) {
        let (h, _) = s
            .open(p, OpenOptions::new().write())
            .await
            .unwrap_or_else(|e| panic!("open {p}: {e}"));
        h.acquire(LockMode::Exclusive, Some(Duration::from_secs(5)))
            .await
            .unwrap_or_else(|e| panic!("lock {p}: {e}"));
        locks.push(h);
    }
    let allowed = Arc::new(Mutex::new(allowed));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_loop(
        d.session().await,
        allowed.clone(),
        stop.clone(),
        acked.clone(),
    ));
    Clients {
        holder: s,
        locks,
        allowed,
        stop,
        acked,
        writer,
    }
}

/// Overwrites the files round-robin (a write every 10 ms or so) until `stop`. A write that
/// fails leaves its file with two possible values, and that file is not written again (a
/// later acknowledged write could otherwise be overtaken by the failed one).
async fn write_loop(
    s: Session,
    allowed: Arc<Mutex<Allowed>>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) {
    let paths: Vec<String> = allowed.lock().unwrap().keys().cloned().collect();
    let mut failed = BTreeSet::new();
    for k in 1u64.. {
        if stop.load(Ordering::SeqCst) || failed.len() == paths.len() {
            break;
        }
        let path = &paths[(k as usize) % paths.len()];
        if failed.contains(path) {
            continue;
        }
        let value = format!("{path} v{k}");
        let write = async {
            let (h, _) = s.open(path, OpenOptions::new().write()).await?;
            let r = h.set_contents(value.clone()).await;
            h.close().await;
            r
        };
        match tokio::time::timeout(Duration::from_secs(20), write).await {
            Ok(Ok(_)) => {
                allowed.lock().unwrap().insert(path.clone(), vec![value]);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Err(e)) => {
                eprintln!("write of {path} failed: {e}");
                allowed.lock().unwrap().get_mut(path).unwrap().push(value);
                failed.insert(path.clone());
            }
            Err(_) => {
                eprintln!("write of {path} did not finish in 20 s");
                allowed.lock().unwrap().get_mut(path).unwrap().push(value);
                failed.insert(path.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = s.close().await;
}

impl Clients {
    /// Stops the writer; the values each file may hold.
    async fn stop(&mut self) -> Allowed {
        self.stop.store(true, Ordering::SeqCst);
        (&mut self.writer).await.expect("the writer");
        let acked = self.acked.load(Ordering::SeqCst);
        assert!(acked > 0, "the writer had no write acknowledged");
        let allowed = self.allowed.lock().unwrap().clone();
        let failed = allowed.values().filter(|v| v.len() > 1).count();
        eprintln!("writer: {acked} writes acknowledged during the reshard, {failed} failed");
        allowed
    }
}

fn slot_of(map: &PartitionMap, path: &str) -> u32 {
    match map.route(path, false).unwrap() {
        Route::Cell { slot, .. } => slot,
        Route::Meta => panic!("{path} is in a data cell"),
    }
}

fn owner_of(map: &PartitionMap, path: &str) -> String {
    match map.route(path, false).unwrap() {
        Route::Cell { cell, .. } => cell.to_string(),
        Route::Meta => panic!("{path} is in a data cell"),
    }
}

/// A slot's state in the status JSON: `done`, `pending`, `aborted` (with its reason)…
fn slot_state(s: &serde_json::Value) -> (String, String) {
    match &s["state"] {
        serde_json::Value::String(st) => (st.clone(), String::new()),
        serde_json::Value::Object(o) => {
            let (k, v) = o.iter().next().expect("a state");
            (k.clone(), v["reason"].as_str().unwrap_or("").to_string())
        }
        other => panic!("a slot state: {other}"),
    }
}

/// The ended job against the map in force: each planned slot is the target's exactly when
/// its move is done, and no slot is left between the two. The slots per final state.
fn check_single_owner(
    job: &serde_json::Value,
    plan: &Plan,
    map: &PartitionMap,
) -> BTreeMap<String, Vec<u32>> {
    let slots = job["slots"].as_array().expect("per-slot states");
    assert_eq!(slots.len(), plan.moves.len(), "{job}");
    let mut by_state: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (s, m) in slots.iter().zip(&plan.moves) {
        let slot = s["slot"].as_u64().unwrap() as u32;
        assert_eq!(slot, m.slot);
        let (state, _) = slot_state(s);
        assert!(
            matches!(state.as_str(), "done" | "aborted" | "pending"),
            "slot {slot} ended the job in state {state}: {s}"
        );
        let owner = map.owner_of_slot(slot).unwrap();
        let want = if state == "done" { &m.to } else { &m.from };
        assert_eq!(
            owner, want,
            "slot {slot} is {state} in the job but the map gives it to {owner}"
        );
        by_state.entry(state).or_default().push(slot);
    }
    // The map changed only by the job's moves.
    let planned: BTreeSet<u32> = plan.moves.iter().map(|m| m.slot).collect();
    let before = PartitionMap::even(
        "local",
        &[
            ("c1", vec!["x:1"]),
            ("c2", vec!["x:2"]),
            ("c3", vec!["x:3"]),
        ],
        map.slot_count(),
    )
    .unwrap();
    for slot in 0..map.slot_count() {
        if !planned.contains(&slot) {
            assert_eq!(
                map.owner_of_slot(slot),
                before.owner_of_slot(slot),
                "slot {slot} is in no move"
            );
        }
    }
    by_state
}

/// Opens `path` at the cell at `addr` with a raw session of its own (waiting, up to 30 s,
/// while a restarted cell recovers): the error code if refused.
async fn raw_open(addr: &str, path: &str) -> Result<(), Option<ErrorCode>> {
    let mut c = WarrenClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let s = loop {
        match c.create_session(pb::CreateSessionRequest::default()).await {
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
    opened
        .map(|_| ())
        .map_err(|st| warren_proto::WarrenError::from_status(&st).map(|e| e.code))
}

/// The checks every fault test ends with (see the module documentation). Returns the
/// slots per final state.
async fn check_outcome(
    d: &Deployment,
    c: &mut Clients,
    plan: &Plan,
    job: &serde_json::Value,
) -> BTreeMap<String, Vec<u32>> {
    let allowed = c.stop().await;
    let map = d.map().await;
    assert_eq!(
        map.map_epoch(),
        job["map_epoch"].as_u64().unwrap(),
        "the job's map epoch is the map in force: {job}"
    );
    let by_state = check_single_owner(job, plan, &map);
    // Every file, read afresh through the proxy, holds an acknowledged value.
    let s = d.session().await;
    for (path, values) in &allowed {
        let (h, info) = s
            .open(path, OpenOptions::new().read().read_contents())
            .await
            .unwrap_or_else(|e| panic!("open {path} after the reshard: {e}"));
        let got = String::from_utf8(info.contents.expect("contents")).unwrap();
        assert!(
            values.contains(&got),
            "{path} holds {got:?}, not one of {values:?}"
        );
        h.close().await;
    }
    // Each directory lists its files once, and the root lists each directory once.
    let want: Vec<String> = (0..FILES).map(|f| format!("f{f}")).collect();
    for i in 0..DIRS {
        let dir = format!("/ls/local/d{i}");
        let (h, _) = s
            .open(&dir, OpenOptions::new().read())
            .await
            .unwrap_or_else(|e| panic!("open {dir} after the reshard: {e}"));
        let mut names = h.child_names().await.expect("list");
        names.sort();
        assert_eq!(names, want, "{dir}");
        h.close().await;
    }
    let (root, _) = s
        .open("/ls/local", OpenOptions::new().read())
        .await
        .unwrap();
    let mut dirs: Vec<String> = root.child_names().await.expect("list the root");
    dirs.retain(|n| n.starts_with('d'));
    dirs.sort();
    let mut want: Vec<String> = (0..DIRS).map(|i| format!("d{i}")).collect();
    want.sort();
    assert_eq!(dirs, want, "the root's directories");
    root.close().await;
    // The owner serves each file of a sample and every other data cell refuses it: a
    // file in each of the first moved slots and of the first slots kept at their source.
    let moving: BTreeSet<u32> = plan.moves.iter().map(|m| m.slot).collect();
    let mut sample: Vec<&String> = allowed
        .keys()
        .filter(|p| moving.contains(&slot_of(&map, p)))
        .take(12)
        .collect();
    sample.extend(
        allowed
            .keys()
            .filter(|p| !moving.contains(&slot_of(&map, p)))
            .take(4),
    );
    for path in sample {
        let owner = owner_of(&map, path);
        for (cell, addr) in &d.cells {
            let got = raw_open(addr, path).await;
            if *cell == owner {
                assert_eq!(got, Ok(()), "{cell} owns {path} and must serve it");
            } else {
                assert_eq!(
                    got,
                    Err(Some(ErrorCode::WrongCell)),
                    "{cell} does not own {path}"
                );
            }
        }
    }
    // The locks taken before the move are still held: nobody else can take them.
    let other = d.session().await;
    for h in &c.locks {
        let (h2, _) = other
            .open(h.path(), OpenOptions::new().write())
            .await
            .unwrap();
        assert_eq!(
            h2.try_acquire(LockMode::Exclusive)
                .await
                .map(|_| ())
                .map_err(|e| e.code()),
            Err(Some(ErrorCode::LockHeld)),
            "{} is held by its holder",
            h.path()
        );
        h2.close().await;
    }
    let _ = other.close().await;
    let _ = s.close().await;
    let _ = c.holder.close().await;
    by_state
}

/// `kill -9` of the meta master between a hand-off and its map commit (the hook
/// `abort-before-map-commit`): the slots handed off wait for their map, the restarted meta
/// master resumes the job from its record and it ends `done`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_meta_master_killed_between_hand_off_and_map_commit_resumes_the_job() {
    let started = Instant::now();
    let mut d = Deployment::start(&[("meta", "abort-before-map-commit")]).await;
    let (plan, p) = d.plan().await;
    let mut c = clients(&d, &plan).await;
    d.apply(&p, &["--slots-per-batch", "128"]).await;
    d.wait_for_abort("meta", Duration::from_secs(30)).await;
    // The record says a batch is handed off and not yet in the map.
    d.restart("meta").await;
    let job = d.wait_for_job(Duration::from_secs(60)).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["slots_moved"], 1024, "{job}");
    let by_state = check_outcome(&d, &mut c, &plan, &job).await;
    assert_eq!(by_state["done"].len(), 1024);
    assert_eq!(d.map().await.map_epoch(), 1 + 1024 / 128);
    eprintln!("meta master kill: {:?}", started.elapsed());
}

/// A real `kill -9` of the meta master while the job runs (once some batches are done):
/// the restarted meta master resumes the job wherever it was and it ends `done`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_meta_master_killed_by_sigkill_mid_job_resumes_the_job() {
    let started = Instant::now();
    let mut d = Deployment::start(&[]).await;
    let (plan, p) = d.plan().await;
    let mut c = clients(&d, &plan).await;
    d.apply(&p, &["--slots-per-batch", "32"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = d.status().await;
        assert_eq!(v["state"], "running", "the job ended before the kill: {v}");
        if v["slots_moved"].as_u64().unwrap() >= 64 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.kill9("meta").await;
    d.restart("meta").await;
    let job = d.wait_for_job(Duration::from_secs(60)).await;
    assert_eq!(job["state"], "done", "{job}");
    let by_state = check_outcome(&d, &mut c, &plan, &job).await;
    assert_eq!(by_state["done"].len(), 1024);
    assert_eq!(d.map().await.map_epoch(), 1 + 1024 / 32);
    eprintln!("meta master kill -9: {:?}", started.elapsed());
}

/// `kill -9` of a source master during the copy (the hook `abort-on-export` at c1): the job
/// retries the copy until c1 is back and ends `done`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_master_killed_during_the_copy_loses_nothing() {
    let started = Instant::now();
    let mut d = Deployment::start(&[("c1", "abort-on-export")]).await;
    let (plan, p) = d.plan().await;
    let mut c = clients(&d, &plan).await;
    d.apply(&p, &["--slots-per-batch", "128"]).await;
    d.wait_for_abort("c1", Duration::from_secs(30)).await;
    d.restart("c1").await;
    let job = d.wait_for_job(Duration::from_secs(60)).await;
    assert_eq!(job["state"], "done", "{job}");
    let by_state = check_outcome(&d, &mut c, &plan, &job).await;
    assert_eq!(by_state["done"].len(), 1024);
    assert_last_error_names(&job, "c1");
    eprintln!("source kill during copy: {:?}", started.elapsed());
}

/// `kill -9` of a source master with slots frozen (the hook `abort-on-freeze` at c1): the
/// freeze dies with the process (it is in memory), the job copies again from the restarted
/// c1, freezes again and ends `done`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_master_killed_during_a_freeze_loses_nothing() {
    let started = Instant::now();
    let mut d = Deployment::start(&[("c1", "abort-on-freeze")]).await;
    let (plan, p) = d.plan().await;
    let mut c = clients(&d, &plan).await;
    d.apply(&p, &["--slots-per-batch", "128"]).await;
    d.wait_for_abort("c1", Duration::from_secs(30)).await;
    d.restart("c1").await;
    let job = d.wait_for_job(Duration::from_secs(60)).await;
    assert_eq!(job["state"], "done", "{job}");
    let by_state = check_outcome(&d, &mut c, &plan, &job).await;
    assert_eq!(by_state["done"].len(), 1024);
    assert_last_error_names(&job, "c1");
    eprintln!("source kill during freeze: {:?}", started.elapsed());
}

/// `kill -9` of the target master during catch-up (the hook `abort-on-catch-up-import` at
/// c4): what it staged is on disk, the job copies again once it is back and ends `done`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_target_master_killed_during_catch_up_loses_nothing() {
    let started = Instant::now();
    let mut d = Deployment::start(&[("c4", "abort-on-catch-up-import")]).await;
    let (plan, p) = d.plan().await;
    let mut c = clients(&d, &plan).await;
    d.apply(&p, &["--slots-per-batch", "128"]).await;
    d.wait_for_abort("c4", Duration::from_secs(30)).await;
    d.restart("c4").await;
    let job = d.wait_for_job(Duration::from_secs(60)).await;
    assert_eq!(job["state"], "done", "{job}");
    let by_state = check_outcome(&d, &mut c, &plan, &job).await;
    assert_eq!(by_state["done"].len(), 1024);
    assert_last_error_names(&job, "c4");
    eprintln!("target kill during catch-up: {:?}", started.elapsed());
}

/// The job's status says which cell failed a step (the job retried it).
fn assert_last_error_names(job: &serde_json::Value, cell: &str) {
    let last = job["last_error"].as_str().unwrap_or("");
    assert!(
        last.starts_with(&format!("cell {cell}: ")),
        "the job's last error names {cell}: {job}"
    );
}

/// The plan's moves from `cell`, in order.
fn moves_from(plan: &Plan, cell: &str) -> Vec<u32> {
    plan.moves
        .iter()
        .filter(|m| m.from == cell)
        .map(|m| m.slot)
        .collect()
}

/// `reshard abort` while a batch is frozen (its final copy held by `slow-final-export` at
/// c2 past the 1 s freeze bound): the batch before it (c1's slots) stays moved, the frozen
/// batch is released and stays at c2, the rest never starts; the job ends `aborted`,
/// saying which slots moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abort_while_frozen_keeps_what_moved_and_releases_the_rest() {
    let started = Instant::now();
    let d = Deployment::start(&[("c2", "slow-final-export")]).await;
    let (plan, p) = d.plan().await;
    let (c1, c2) = (moves_from(&plan, "c1"), moves_from(&plan, "c2"));
    // The plan's moves are in slot order, and c1's slots come before c2's: one batch each.
    assert_eq!(plan.moves[c1.len()].slot, c2[0]);
    let batch = c1.len().max(c2.len()).to_string();
    let mut c = clients(&d, &plan).await;
    d.apply(&p, &["--slots-per-batch", &batch, "--freeze-timeout", "1s"])
        .await;
    d.wait_for_slot_state("c2", "frozen", Duration::from_secs(30))
        .await;
    let o = ctl(&["reshard", "abort", "--meta", &d.meta]).await;
    ok("reshard abort", &o);
    let job = d.wait_for_job(Duration::from_secs(30)).await;
    assert_eq!(job["state"], "aborted", "{job}");
    let message = job["message"].as_str().unwrap();
    assert!(
        message.starts_with("aborted by the operator: moved slots ["),
        "{message}"
    );
    let by_state = check_outcome(&d, &mut c, &plan, &job).await;
    // c1's batch moved; c2's was frozen and is released; c3's never started.
    let done: BTreeSet<u32> = by_state["done"].iter().copied().collect();
    let aborted: BTreeSet<u32> = by_state["aborted"].iter().copied().collect();
    let c1: BTreeSet<u32> = c1.into_iter().collect();
    assert_eq!(done, c1, "c1's slots moved and only they");
    assert!(
        c2.iter().all(|s| aborted.contains(s)),
        "c2's frozen batch was released: {aborted:?}"
    );
    for s in job["slots"].as_array().unwrap() {
        let (state, reason) = slot_state(s);
        if state == "aborted" {
            assert!(reason.contains("aborted by the operator"), "{s}");
        }
    }
    assert!(by_state.get("pending").is_some_and(|p| !p.is_empty()));
    // The released slots serve writes at their source.
    write_and_read(&d, &plan, "c2").await;
    eprintln!("abort while frozen: {:?}", started.elapsed());
}

/// Writes, through the proxy, a file in a slot `plan` moves from `source`, and reads it back.
async fn write_and_read(d: &Deployment, plan: &Plan, source: &str) {
    let map = d.map().await;
    let slots: BTreeSet<u32> = moves_from(plan, source).into_iter().collect();
    let path = (0..DIRS * FILES)
        .map(|i| format!("/ls/local/d{}/f{}", i / FILES, i % FILES))
        .find(|p| slots.contains(&slot_of(&map, p)))
        .expect("a file in one of the slots");
    assert_eq!(owner_of(&map, &path), source);
    let s = d.session().await;
    let (h, _) = s.open(&path, OpenOptions::new().write()).await.unwrap();
    h.set_contents("after")
        .await
        .expect("a write after the job");
    h.close().await;
    let (h, info) = s
        .open(&path, OpenOptions::new().read().read_contents())
        .await
        .unwrap();
    assert_eq!(info.contents.as_deref(), Some(&b"after"[..]));
    h.close().await;
    let _ = s.close().await;
}

/// A freeze that outlasts its bound (`slow-final-export` at c1 holds the final copy 3 s,
/// `--freeze-timeout 500ms`): c1's hand-offs are refused, each slot is tried
/// `max_slot_attempts` times and given up, the other sources' slots move, the job ends
/// `partial` and c1 serves (and takes writes to) the slots it kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_freeze_that_times_out_is_retried_then_given_up_and_the_source_keeps_serving() {
    let started = Instant::now();
    let d = Deployment::start(&[("c1", "slow-final-export")]).await;
    let (plan, p) = d.plan().await;
    let c1 = moves_from(&plan, "c1");
    let batch = c1.len().to_string();
    let mut c = clients(&d, &plan).await;
    d.apply(
        &p,
        &["--slots-per-batch", &batch, "--freeze-timeout", "500ms"],
    )
    .await;
    let job = d.wait_for_job(Duration::from_secs(60)).await;
    assert_eq!(job["state"], "partial", "{job}");
    let by_state = check_outcome(&d, &mut c, &plan, &job).await;
    let aborted: Vec<u32> = by_state["aborted"].clone();
    assert_eq!(aborted, c1, "c1's slots were given up, and only they");
    assert_eq!(by_state["done"].len(), 1024 - c1.len());
    for s in job["slots"].as_array().unwrap() {
        let (state, reason) = slot_state(s);
        if state == "aborted" {
            assert_eq!(s["attempts"], 3, "{s}");
            assert!(
                reason.contains("the freeze ended before the hand-off 3 times")
                    && reason.contains("freeze timeout 500 ms"),
                "{s}"
            );
        }
    }
    let message = job["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("moved {} slots; gave up slots [", 1024 - c1.len())),
        "{message}"
    );
    write_and_read(&d, &plan, "c1").await;
    eprintln!("freeze timeout: {:?}", started.elapsed());
}

/// Refusals that change nothing: a hand-edited plan naming a cell that is in neither the
/// plan's cells nor the map, and an apply while a cell of the plan is down. Each is
/// refused with an error naming the problem, and the map and the job record stay as they
/// were (here after a finished job, so there is a record to keep).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_refuses_an_unknown_cell_and_a_cell_that_is_down_and_changes_nothing() {
    let started = Instant::now();
    let mut d = Deployment::start(&[]).await;
    // A finished job first: a single slot moved to c4.
    let (mut plan, p) = d.plan().await;
    plan.moves.truncate(1);
    std::fs::write(&p, plan.to_json()).unwrap();
    d.apply(&p, &[]).await;
    let job = d.wait_for_job(Duration::from_secs(30)).await;
    assert_eq!(job["state"], "done", "{job}");
    let record = d.job_record().await.expect("a job record");
    let map = d.map().await;
    assert_eq!(map.map_epoch(), 2);

    // c4 is in the map now, with one slot: the next plan gives it its share.
    let (plan, p) = d.plan_with(&["--weight", "c4=1"]).await;
    assert_eq!(plan.moves.len(), 1023);
    let refused = |o: &std::process::Output, wants: &str| {
        assert!(!o.status.success(), "refused: {}", stdout(o));
        assert!(stderr(o).contains(wants), "{wants:?} in {}", stderr(o));
    };
    // A target that is not in the plan's cells.
    let mut unknown = plan.clone();
    unknown.moves[0].to = "c9".into();
    let f = d.dir.path().join("unknown-target.json");
    std::fs::write(&f, unknown.to_json()).unwrap();
    let o = ctl(&["reshard", "apply", "--meta", &d.meta, f.to_str().unwrap()]).await;
    refused(
        &o,
        &format!(
            "the plan moves slot {} to cell c9, which the plan's cells do not list",
            plan.moves[0].slot
        ),
    );
    // A source that is not in the map.
    let mut unknown = plan.clone();
    unknown.moves[0].from = "c9".into();
    let f = d.dir.path().join("unknown-source.json");
    std::fs::write(&f, unknown.to_json()).unwrap();
    let o = ctl(&["reshard", "apply", "--meta", &d.meta, f.to_str().unwrap()]).await;
    refused(
        &o,
        &format!(
            "the plan moves slot {} from c9, but the map in force gives it to {}",
            plan.moves[0].slot, plan.moves[0].from
        ),
    );
    // A cell of the plan is down.
    d.kill9("c4").await;
    let o = ctl(&["reshard", "apply", "--meta", &d.meta, &p]).await;
    refused(&o, "cell c4 (");
    refused(&o, "does not answer");
    refused(&o, "nothing was started");
    // Nothing changed.
    assert_eq!(d.job_record().await.as_deref(), Some(record.as_str()));
    assert_eq!(d.map().await, map);
    let v = d.status().await;
    assert_eq!(v["id"], job["id"], "{v}");
    assert_eq!(v["state"], "done", "{v}");
    // With c4 back, the same plan applies.
    d.restart("c4").await;
    d.apply(&p, &["--slots-per-batch", "512"]).await;
    let job = d.wait_for_job(Duration::from_secs(30)).await;
    assert_eq!(job["state"], "done", "{job}");
    eprintln!("refusals: {:?}", started.elapsed());
}

/// A lock holder's handle on a node whose slot moved keeps working (docs/design.md §12:
/// handles on moved nodes are recreated at the target transparently), through a proxy and
/// straight to the cells: `GetSequencer` on the holder's handle answers, and the sequencer
/// taken before the move is still current at the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_holders_handle_keeps_working_after_its_slot_moved() {
    let d = Deployment::start(&[]).await;
    let (plan, p) = d.plan().await;
    let mut c = clients(&d, &plan).await;
    let direct = Session::connect_with(
        ClientOptions::meta([d.meta.clone()]).rpc_timeout(Duration::from_secs(5)),
    )
    .await
    .expect("a direct session");
    let map = d.map().await;
    let moving: BTreeSet<u32> = plan.moves.iter().map(|m| m.slot).collect();
    let locked: BTreeSet<&str> = c.locks.iter().map(Handle::path).collect();
    let path = c
        .allowed
        .lock()
        .unwrap()
        .keys()
        .find(|p| moving.contains(&slot_of(&map, p)) && !locked.contains(p.as_str()))
        .cloned()
        .expect("a file in a moving slot");
    let (direct_handle, _) = direct
        .open(&path, OpenOptions::new().write())
        .await
        .unwrap();
    let direct_seq = direct_handle
        .acquire(LockMode::Exclusive, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    let proxied: Vec<_> = {
        let mut v = Vec::new();
        for h in &c.locks {
            v.push(h.get_sequencer().await.unwrap());
        }
        v
    };
    d.apply(&p, &["--slots-per-batch", "512"]).await;
    let job = d.wait_for_job(Duration::from_secs(60)).await;
    assert_eq!(job["state"], "done", "{job}");
    c.stop().await;
    let direct_after = direct_handle.get_sequencer().await;
    let mut proxied_after = Vec::new();
    for h in &c.locks {
        proxied_after.push((h.path().to_string(), h.get_sequencer().await));
    }
    let mut wrong = Vec::new();
    if direct_after.as_ref().ok() != Some(&direct_seq) {
        wrong.push(format!(
            "straight to the cells, {path}: {direct_after:?}, not {direct_seq:?}"
        ));
    }
    for ((path, after), before) in proxied_after.iter().zip(&proxied) {
        if after.as_ref().ok() != Some(before) {
            wrong.push(format!(
                "through the proxy, {path}: {after:?}, not {before:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "GetSequencer on the holder's handle after the move:\n{}",
        wrong.join("\n")
    );
    let _ = direct.close().await;
    let _ = c.holder.close().await;
}
