//! One chaos session (docs/reliability.md, "Chaos"): start the deployment, set up the files,
//! start the clients, apply the seeded schedule (each fault in a task of its own: apply,
//! hold, heal), heal everything, stop the clients, read every file once more, and judge
//! the history with every checker of warren-history. The report goes to `--out`:
//! `history.jsonl`, `report.txt`, `report.json`.

use crate::cluster::Cluster;
use crate::schedule::{self, Fault, Kind, Link, Proc, Target, DATA_CELLS};
use crate::workload::{self, Log, Shared};
use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren_history::{check_all, History, Nanos, Op, Report, SessionBounds};

/// What a session is asked to do.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    pub faults: usize,
    /// Limit the kinds dealt (all when empty).
    pub kinds: Vec<Kind>,
    pub bin: PathBuf,
    pub out: PathBuf,
    /// Clients through the proxies, and direct ones.
    pub proxied: usize,
    pub direct: usize,
    /// Plain writes besides compare-and-swaps (see [`Shared::plain_writes`]).
    pub plain_writes: bool,
    /// A planted bug (`WARREN_PLANT` in every cell; needs a `fault-injection` build).
    pub plant: Option<String>,
    /// Time to run with no faults first, and to settle after the last heal.
    pub warmup: Duration,
    pub cooldown: Duration,
}

/// One fault as applied.
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    pub fault: Fault,
    /// What the role resolved to (`c1/r0`, `etcd/m2`, a link…).
    pub resolved: String,
    /// On the history's clock.
    pub applied_ns: Nanos,
    pub healed_ns: Option<Nanos>,
    /// Why it could not be applied or healed, if so.
    pub error: Option<String>,
}

/// The longest unavailability after one fault kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Unavailability {
    pub faults: usize,
    /// The longest gap (ms) with no successful write (write or CAS) by any client, within
    /// each fault's window (its start to 5 s after its heal), counted from its start.
    pub writes_ms: u64,
    /// The same for reads.
    pub reads_ms: u64,
    /// The same for lock acquisitions.
    pub acquires_ms: u64,
}

#[derive(Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub replay: String,
    pub plant: Option<String>,
    pub schedule: Vec<Fault>,
    pub applied: Vec<Applied>,
    pub faults_by_kind: BTreeMap<String, (usize, usize)>,
    pub unavailability: BTreeMap<String, Unavailability>,
    pub duration_s: f64,
    pub history: Report,
}

impl ChaosReport {
    pub fn violations(&self) -> usize {
        self.history
            .checkers
            .iter()
            .map(|c| c.verdict.violations().len())
            .sum()
    }

    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "warren chaos, seed {}", self.seed);
        let _ = writeln!(s, "replay: {}", self.replay);
        if let Some(p) = &self.plant {
            let _ = writeln!(s, "planted bug: {p}");
        }
        let _ = writeln!(s, "duration: {:.0} s\n\nschedule:", self.duration_s);
        for a in &self.applied {
            let _ = writeln!(
                s,
                "  {}  -> {}{}",
                a.fault,
                a.resolved,
                a.error
                    .as_ref()
                    .map(|e| format!("  [NOT APPLIED/HEALED: {e}]"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            s,
            "\nfaults by kind (applied / scheduled), longest unavailability after each (ms: writes, reads, acquires):"
        );
        for (k, (applied, scheduled)) in &self.faults_by_kind {
            let u = self.unavailability.get(k).cloned().unwrap_or_default();
            let _ = writeln!(
                s,
                "  {k:<20} {applied:>3} / {scheduled:<3}  {:>6} {:>6} {:>6}",
                u.writes_ms, u.reads_ms, u.acquires_ms
            );
        }
        let _ = writeln!(s, "\n{}", self.history.to_text());
        let _ = writeln!(
            s,
            "violations: {}{}",
            self.violations(),
            if self.violations() > 0 {
                format!("  (replay: {})", self.replay)
            } else {
                String::new()
            }
        );
        s
    }
}

/// Runs one session and writes its report; the report, whatever the verdict.
pub async fn run(cfg: Config) -> anyhow::Result<ChaosReport> {
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("create --out {}", cfg.out.display()))?;
    let sched = schedule::schedule(cfg.seed, cfg.faults, &cfg.kinds);
    eprintln!(
        "chaos: seed {} — schedule of {} faults:",
        cfg.seed,
        sched.len()
    );
    for f in &sched {
        eprintln!("  {f}");
    }
    if sched.iter().any(|f| f.kind == Kind::ClockSkew)
        && !Path::new(crate::cluster::LIBFAKETIME).exists()
    {
        bail!(
            "the schedule has clock-skew faults and {} is missing: apt-get install faketime \
             (or leave clock_skew out with --kinds)",
            crate::cluster::LIBFAKETIME
        );
    }
    let env: Vec<(String, String)> = cfg
        .plant
        .iter()
        .map(|p| ("WARREN_PLANT".to_string(), p.clone()))
        .collect();
    eprintln!("chaos: starting etcd, 3 cells × 2 replicas, 2 proxies…");
    let cluster = Arc::new(Cluster::start(&cfg.bin, &env).await?);
    let compactor = cluster.spawn_compactor();
    let seed_name = format!("chaos-{}", cfg.seed);
    let log = Log::new(&seed_name);
    let shared = Arc::new(Shared {
        log: log.clone(),
        fence: Default::default(),
        stop: AtomicBool::new(false),
        proxies: cluster.proxy_endpoints(),
        meta: cluster.meta_endpoints(),
        plain_writes: cfg.plain_writes,
    });
    workload::setup(&shared).await.context("set up the files")?;
    let mut clients = Vec::new();
    for i in 0..cfg.proxied + cfg.direct {
        let (name, direct) = client_name(&cfg, i);
        clients.push(tokio::spawn(workload::client(
            shared.clone(),
            name,
            direct,
            cfg.seed.wrapping_mul(31).wrapping_add(i as u64),
        )));
    }
    tokio::time::sleep(cfg.warmup).await;
    let started = tokio::time::Instant::now();
    let applied = Arc::new(Mutex::new(Vec::<Applied>::new()));
    let reach = Arc::new(Reach::default());
    let mut tasks = Vec::new();
    for f in sched.clone() {
        tokio::time::sleep_until(started + Duration::from_millis(f.at_ms)).await;
        let (cluster, log, applied, reach) =
            (cluster.clone(), log.clone(), applied.clone(), reach.clone());
        let at = log.now();
        tasks.push((
            f.clone(),
            at,
            tokio::spawn(async move {
                let a = apply(&cluster, &log, &reach, f).await;
                eprintln!(
                    "chaos: {}  -> {}{}",
                    a.fault,
                    a.resolved,
                    a.error
                        .as_ref()
                        .map(|e| format!(" [{e}]"))
                        .unwrap_or_default()
                );
                applied.lock().unwrap().push(a);
            }),
        ));
    }
    for (fault, at, t) in tasks {
        if let Err(e) = t.await {
            // A panic in a harness piece (testkit's etcd restart panics when a member does
            // not come back in 30 s): the fault counts, with the reason.
            eprintln!("chaos: a fault task failed: {e}");
            applied.lock().unwrap().push(Applied {
                fault,
                resolved: String::new(),
                applied_ns: at,
                healed_ns: None,
                error: Some(format!("the fault's task failed: {e}")),
            });
        }
    }
    cluster.heal_all().await;
    tokio::time::sleep(cfg.cooldown).await;
    shared.stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(40), c).await;
    }
    let still_down = cluster.down().await;
    if !still_down.is_empty() {
        eprintln!("chaos: still down after healing: {still_down:?}");
    }
    workload::final_reads(&shared).await;
    let end = log.now();
    compactor.abort();
    cluster.shutdown().await;
    let mut applied = std::mem::take(&mut *applied.lock().unwrap());
    applied.sort_by_key(|a| (a.fault.at_ms, a.fault.index));
    // Reachability: a proxied client always has a live proxy (the domains never take both
    // down); a direct client is cut off from a cell's master while a link to one of that
    // cell's replicas is blackholed (recorded conservatively, for either replica).
    let mut cut = reach.cut.lock().unwrap().clone();
    cut.sort_unstable();
    log.with(|r| {
        for i in 0..cfg.proxied + cfg.direct {
            let (n, direct) = client_name(&cfg, i);
            let spans: &[(Nanos, Nanos)] = if direct { &cut } else { &[] };
            let mut from = 0;
            for &(a, b) in spans {
                if a > from {
                    r.reachable(&n, from, a);
                }
                from = from.max(b);
            }
            if end > from {
                r.reachable(&n, from, end);
            }
        }
    });
    let history: History = log.with(|r| std::mem::take(r).finish());
    std::fs::write(cfg.out.join("history.jsonl"), history.to_json_lines())?;
    let bounds = SessionBounds {
        // The clients' grace period and the longest lease (proxy sessions'); a session
        // never expires for a cut-off shorter than the shortest lease less 1 s.
        grace_ns: 20_000_000_000,
        rho: 0.01,
        max_lease_ns: 8_000_000_000,
        tolerated_gap_ns: 3_000_000_000,
        tolerated_gap_of: Default::default(),
    };
    let report = check_all(&history, &bounds);
    let mut faults_by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for a in &applied {
        let e = faults_by_kind
            .entry(a.fault.kind.name().to_string())
            .or_default();
        e.1 += 1;
        if a.error.is_none() {
            e.0 += 1;
        }
    }
    let unavailability = unavailability(&history, &applied);
    let mut replay = format!(
        "warren-chaos --seed {} --faults {} --bin {}",
        cfg.seed,
        cfg.faults,
        cfg.bin.display()
    );
    if !cfg.kinds.is_empty() {
        let k: Vec<&str> = cfg.kinds.iter().map(|k| k.name()).collect();
        replay.push_str(&format!(" --kinds {}", k.join(",")));
    }
    if let Some(p) = &cfg.plant {
        replay.push_str(&format!(" --plant {p}"));
    }
    if !cfg.plain_writes {
        replay.push_str(" --no-plain-writes");
    }
    let r = ChaosReport {
        seed: cfg.seed,
        replay,
        plant: cfg.plant.clone(),
        schedule: sched,
        applied,
        faults_by_kind,
        unavailability,
        duration_s: end as f64 / 1e9,
        history: report,
    };
    std::fs::write(cfg.out.join("report.txt"), r.to_text())?;
    std::fs::write(
        cfg.out.join("report.json"),
        serde_json::to_string_pretty(&r)?,
    )?;
    Ok(r)
}

/// Client `i`'s name (`p0`… through the proxies, then `d0`… direct) and whether it is
/// direct.
fn client_name(cfg: &Config, i: usize) -> (String, bool) {
    if i >= cfg.proxied {
        (format!("d{}", i - cfg.proxied), true)
    } else {
        (format!("p{i}"), false)
    }
}

/// The spans during which the schedule cut direct clients off from a live master.
#[derive(Default)]
struct Reach {
    cut: Mutex<Vec<(Nanos, Nanos)>>,
}

/// Applies one fault, holds it, heals it.
async fn apply(cluster: &Cluster, log: &Log, reach: &Reach, f: Fault) -> Applied {
    let mut a = Applied {
        fault: f.clone(),
        resolved: String::new(),
        applied_ns: log.now(),
        healed_ns: None,
        error: None,
    };
    let hold = Duration::from_millis(f.hold_ms);
    let r: anyhow::Result<()> = async {
        match (&f.kind, &f.target) {
            (Kind::Pause, Target::Proc(p)) => {
                let key = cluster.resolve(p).await?;
                a.resolved = key.clone();
                a.applied_ns = log.now();
                signal(cluster, &key, true).await?;
                tokio::time::sleep(hold).await;
                signal(cluster, &key, false).await?;
            }
            (Kind::ClockSkew, Target::Proc(p)) => {
                let key = cluster.resolve(p).await?;
                a.resolved = format!("{key} at rate {:+.2}%", f.param as f64 / 100.0);
                a.applied_ns = log.now();
                cluster.kill(&key).await?;
                cluster.restart(&key, Some(f.param)).await?;
                tokio::time::sleep(hold).await;
                cluster.kill(&key).await?;
                cluster.restart(&key, None).await?;
            }
            (_, Target::Proc(p)) => {
                let key = cluster.resolve(p).await?;
                a.resolved = key.clone();
                a.applied_ns = log.now();
                if let Some(m) = key.strip_prefix("etcd/m") {
                    let m: usize = m.parse()?;
                    cluster.etcd_kill(m).await;
                    tokio::time::sleep(hold).await;
                    cluster.etcd_restart(m).await?;
                } else {
                    cluster.kill(&key).await?;
                    tokio::time::sleep(hold).await;
                    cluster.restart(&key, None).await?;
                }
            }
            (Kind::Blackhole | Kind::Delay, Target::Link(l)) => {
                let (bridges, name) = cluster.link(l).await?;
                a.resolved = name;
                a.applied_ns = log.now();
                if f.kind == Kind::Blackhole {
                    bridges.iter().for_each(|b| b.blackhole());
                    tokio::time::sleep(hold).await;
                    bridges.iter().for_each(|b| b.unblackhole());
                    if matches!(l, Link::ToCell { .. }) {
                        reach.cut.lock().unwrap().push((a.applied_ns, log.now()));
                    }
                } else {
                    let burst = Duration::from_millis(f.param as u64);
                    let end = tokio::time::Instant::now() + hold;
                    while tokio::time::Instant::now() < end {
                        bridges.iter().for_each(|b| b.pause());
                        tokio::time::sleep(burst).await;
                        bridges.iter().for_each(|b| b.resume());
                        tokio::time::sleep(burst).await;
                    }
                }
            }
            (kind, Target::Reshard) => {
                a.resolved = reshard(cluster, *kind, &f).await?;
            }
            (kind, target) => bail!("no way to apply {} to {target}", kind.name()),
        }
        Ok(())
    }
    .await;
    if let Err(e) = r {
        a.error = Some(format!("{e:#}"));
    } else {
        a.healed_ns = Some(log.now());
    }
    a
}

async fn signal(cluster: &Cluster, key: &str, stop: bool) -> anyhow::Result<()> {
    if let Some(m) = key.strip_prefix("etcd/m") {
        cluster.etcd_signal(m.parse()?, stop).await
    } else {
        cluster.signal(key, stop).await
    }
}

/// The state of the meta cell's reshard job: `running`, `aborting`, `done`, `aborted`…,
/// `none` without one, `?` when the meta cell did not answer.
async fn job_state(cluster: &Cluster, meta: &str) -> String {
    let args: Vec<String> = ["ctl", "reshard", "status", "--meta", meta, "--json"]
        .iter()
        .map(|x| x.to_string())
        .collect();
    let Ok(out) = cluster.ctl(&args).await else {
        return "?".into();
    };
    if !out.status.success() {
        return "?".into();
    }
    match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
        Ok(serde_json::Value::Null) => "none".into(),
        Ok(v) => match &v["state"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => o.keys().next().cloned().unwrap_or("?".into()),
            _ => "?".into(),
        },
        Err(_) => "?".into(),
    }
}

/// Waits up to `within` for the reshard job to be over (or absent); its last state.
async fn job_settled(cluster: &Cluster, meta: &str, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let state = job_state(cluster, meta).await;
        let active = matches!(state.as_str(), "running" | "aborting" | "?");
        if !active || tokio::time::Instant::now() >= deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A reshard moving slots between c1 and c2 (weights alternating 3:1 and 1:3), started,
/// aborted, or interrupted by a meta master kill; once its hold is over, a job still
/// running is aborted.
async fn reshard(cluster: &Cluster, kind: Kind, f: &Fault) -> anyhow::Result<String> {
    let meta = cluster.meta_endpoints().join(",");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    // A job of an earlier fault may still be finishing (or aborting).
    let before = job_settled(cluster, &meta, Duration::from_secs(60)).await;
    if matches!(before.as_str(), "running" | "aborting" | "?") {
        bail!("the previous reshard job is still {before}");
    }
    let dir = tempfile::tempdir()?;
    let plan = dir.path().join("plan.json");
    let plan_s = plan
        .to_str()
        .ok_or_else(|| anyhow!("temp path"))?
        .to_string();
    let (mut w1, mut w2) = if f.index % 2 == 0 {
        ("3", "1")
    } else {
        ("1", "3")
    };
    // The plan goes stale if the map moves between plan and apply: plan again. A plan
    // with nothing to move (the map already has these weights) writes no file: the other
    // weights then.
    let mut last = String::new();
    let mut applied = false;
    for _ in 0..4 {
        let _ = std::fs::remove_file(&plan);
        let out = cluster
            .ctl(&s(&[
                "ctl",
                "reshard",
                "plan",
                "--meta",
                &meta,
                "--weight",
                &format!("{}={w1}", DATA_CELLS[0]),
                "--weight",
                &format!("{}={w2}", DATA_CELLS[1]),
                "--out",
                &plan_s,
            ]))
            .await?;
        if !out.status.success() {
            last = format!(
                "reshard plan: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if !plan.exists() {
            last = format!(
                "reshard plan with weights {w1}:{w2} has nothing to move: {}",
                String::from_utf8_lossy(&out.stdout).trim()
            );
            (w1, w2) = (w2, w1);
            continue;
        }
        let out = cluster
            .ctl(&s(&[
                "ctl",
                "reshard",
                "apply",
                &plan_s,
                "--meta",
                &meta,
                "--slots-per-batch",
                "64",
            ]))
            .await?;
        if out.status.success() {
            applied = true;
            break;
        }
        last = format!(
            "reshard apply: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if !applied {
        bail!("{last}");
    }
    let mut what = format!("weights c1={w1} c2={w2}");
    match kind {
        Kind::ReshardAbort => {
            tokio::time::sleep(Duration::from_millis(f.param as u64)).await;
            let out = cluster
                .ctl(&s(&["ctl", "reshard", "abort", "--meta", &meta, "--json"]))
                .await?;
            what.push_str(&format!(
                ", abort: {}",
                if out.status.success() {
                    "asked".to_string()
                } else {
                    String::from_utf8_lossy(&out.stderr).trim().to_string()
                }
            ));
        }
        Kind::ReshardResume => {
            tokio::time::sleep(Duration::from_millis(f.param as u64)).await;
            let key = cluster
                .resolve(&Proc::Cell {
                    cell: "meta".into(),
                    role: schedule::Role::Master,
                })
                .await?;
            cluster.kill(&key).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            cluster.restart(&key, None).await?;
            what.push_str(&format!(", meta master {key} killed"));
        }
        _ => {}
    }
    let mut state = job_settled(cluster, &meta, Duration::from_millis(f.hold_ms)).await;
    if matches!(state.as_str(), "running" | "?") {
        let _ = cluster
            .ctl(&s(&["ctl", "reshard", "abort", "--meta", &meta]))
            .await;
        what.push_str(&format!(", still {state} at the hold's end: aborted"));
        state = job_settled(cluster, &meta, Duration::from_secs(30)).await;
    }
    what.push_str(&format!(", job {state}"));
    Ok(what)
}

/// The longest gap without a successful write/read/acquire after each fault kind.
fn unavailability(h: &History, applied: &[Applied]) -> BTreeMap<String, Unavailability> {
    let mut oks: [Vec<Nanos>; 3] = Default::default();
    for o in &h.ops {
        if o.ok().is_none() {
            continue;
        }
        let class = match &o.op {
            Op::Write { .. } => 0,
            Op::Read { .. } => 1,
            Op::Acquire { .. } => 2,
            _ => continue,
        };
        oks[class].push(o.end());
    }
    for v in &mut oks {
        v.sort_unstable();
    }
    let gap = |v: &Vec<Nanos>, from: Nanos, to: Nanos| -> u64 {
        let mut last = from;
        let mut longest = 0;
        for &t in v.iter().filter(|&&t| t > from && t <= to) {
            longest = longest.max(t - last);
            last = t;
        }
        longest = longest.max(to.saturating_sub(last));
        longest / 1_000_000
    };
    let mut out: BTreeMap<String, Unavailability> = BTreeMap::new();
    for a in applied.iter().filter(|a| a.error.is_none()) {
        let to = a.healed_ns.unwrap_or(a.applied_ns) + 5_000_000_000;
        let u = out.entry(a.fault.kind.name().to_string()).or_default();
        u.faults += 1;
        u.writes_ms = u.writes_ms.max(gap(&oks[0], a.applied_ns, to));
        u.reads_ms = u.reads_ms.max(gap(&oks[1], a.applied_ns, to));
        u.acquires_ms = u.acquires_ms.max(gap(&oks[2], a.applied_ns, to));
    }
    out
}
