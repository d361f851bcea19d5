//! `warren loadtest run`: N raw-protocol sessions over C gRPC channels to the proxies, each
//! with its KeepAlive loop, and open-loop Poisson reads, writes and lock operations on
//! `/loadtest/f{i}` with Zipf popularity. Latency is measured from each operation's
//! *intended* send time, so a slow server cannot hide its slowness by slowing the load down
//! (no coordinated omission).

use crate::lost::{self, AckedWrites, ReadBack};
use crate::metrics::{self, EndpointScrapes};
use crate::report::{
    latency_histogram, IntervalOp, OpReport, Report, SessionOutcomes, SessionStates, TimelineSample,
};
use crate::workload::{Arrivals, Files};
use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use warren_client::{ClientOptions, OpenOptions, Session};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::{ErrorCode, WarrenError};

/// ρ, the clock drift the sessions assume (SPEC §12).
const RHO: f64 = 0.01;
/// How long a session in jeopardy waits before it counts itself expired (SPEC §12).
const GRACE: Duration = Duration::from_secs(45);
/// Most CreateSession (and CloseSession) calls in flight at once.
const CREATE_CONCURRENCY: usize = 500;
/// Most operations in flight at once; arrivals beyond it are dropped and counted.
const MAX_IN_FLIGHT: u64 = 20_000;
/// Most files the read-back after the window reads at once.
const READ_BACK_CONCURRENCY: usize = 32;

/// Where the load goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Through these proxies (gRPC `HOST:PORT`s).
    Proxies(Vec<String>),
    /// Directly to the cells of the deployment whose meta cell is at this address.
    Cells(String),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect()
        };
        if let Some(v) = s.strip_prefix("proxies=") {
            let addrs = list(v);
            if addrs.is_empty() {
                return Err("proxies= needs at least one HOST:PORT".into());
            }
            Ok(Target::Proxies(addrs))
        } else if let Some(v) = s.strip_prefix("cells=") {
            let addrs = list(v);
            match addrs.as_slice() {
                [one] => Ok(Target::Cells(one.clone())),
                _ => Err("cells= takes the meta cell's HOST:PORT".into()),
            }
        } else {
            Err(format!(
                "`{s}`: give proxies=HOST:PORT[,…] or cells=META_HOST:PORT"
            ))
        }
    }
}

/// A run's settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub target: Target,
    pub sessions: u64,
    pub connections: u64,
    /// The measured window (operations run only in it).
    pub duration: Duration,
    /// Over how long the sessions are created, before the window.
    pub ramp: Duration,
    pub read_rate: f64,
    pub write_rate: f64,
    pub lock_rate: f64,
    pub files: u64,
    pub zipf: f64,
    /// Admin addresses whose `/metrics` are scraped before the ramp and after the window.
    pub metrics: Vec<String>,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// Operation kinds, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    Lock,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Lock => "lock",
        }
    }
}

/// Everything the tasks record, shared.
struct Stats {
    hist: [Mutex<Histogram<u64>>; 3],
    /// The current timeline interval's latencies; the sampler takes and resets them.
    interval_hist: [Mutex<Histogram<u64>>; 3],
    op_errors: [AtomicU64; 3],
    busy: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// The first message seen for each key of `errors`.
    examples: Mutex<BTreeMap<String, String>>,
    dropped: AtomicU64,
    opens: AtomicU64,
    in_flight: AtomicU64,
    created: AtomicU64,
    create_errors: AtomicU64,
    jeopardy: AtomicU64,
    /// Sessions in jeopardy right now.
    jeopardy_now: AtomicU64,
    safe: AtomicU64,
    expired: AtomicU64,
    keepalives: AtomicU64,
    keepalive_errors: AtomicU64,
    closed: AtomicU64,
    /// Sessions whose task has ended (closed, expired or failed to close).
    ended: AtomicU64,
    /// Each write's sequence number, and the acknowledged ones (the `acked_lost` check).
    writes: AckedWrites,
}

impl Stats {
    fn new(writes: AckedWrites) -> Stats {
        Stats {
            hist: std::array::from_fn(|_| Mutex::new(latency_histogram())),
            interval_hist: std::array::from_fn(|_| Mutex::new(latency_histogram())),
            op_errors: std::array::from_fn(|_| AtomicU64::new(0)),
            busy: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            examples: Mutex::new(BTreeMap::new()),
            dropped: AtomicU64::new(0),
            opens: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            created: AtomicU64::new(0),
            create_errors: AtomicU64::new(0),
            jeopardy: AtomicU64::new(0),
            jeopardy_now: AtomicU64::new(0),
            safe: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            keepalives: AtomicU64::new(0),
            keepalive_errors: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            writes,
        }
    }

    fn error(&self, call: &str, status: &tonic::Status) {
        let key = format!("{call}:{}", code_of(status));
        self.examples
            .lock()
            .expect("examples lock")
            .entry(key.clone())
            .or_insert_with(|| status.message().chars().take(200).collect());
        *self
            .errors
            .lock()
            .expect("errors lock")
            .entry(key)
            .or_insert(0) += 1;
    }

    fn total_errors(&self) -> u64 {
        self.errors.lock().expect("errors lock").values().sum()
    }
}

/// The Warren error code of a status, or its gRPC code.
fn code_of(status: &tonic::Status) -> String {
    WarrenError::from_status(status).map_or_else(
        || format!("{:?}", status.code()),
        |e| e.code_name().to_string(),
    )
}

fn is_code(status: &tonic::Status, code: ErrorCode) -> bool {
    WarrenError::from_status(status).is_some_and(|e| e.code == code)
}

/// One simulated client session.
struct Sim {
    client: WarrenClient<Channel>,
    ctx: pb::SessionContext,
    /// The deployment the session is in (full paths are `/ls/DEPLOYMENT/…`).
    deployment: String,
    /// Handles this session opened, by file index.
    handles: Mutex<HashMap<u64, Vec<u8>>>,
}

/// Runs the load and returns the report.
pub async fn run(cfg: Config) -> anyhow::Result<Report> {
    let addrs = match &cfg.target {
        Target::Proxies(a) => a.clone(),
        Target::Cells(_) => bail!(
            "--target cells=… (direct to the cells) is not built yet; use \
             --target proxies=HOST:PORT[,…]"
        ),
    };
    if cfg.sessions == 0 {
        bail!("--sessions must be at least 1");
    }
    if cfg.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if cfg.duration.is_zero() {
        bail!("--duration must be more than 0");
    }
    for (flag, r) in [
        ("--read-rate", cfg.read_rate),
        ("--write-rate", cfg.write_rate),
        ("--lock-rate", cfg.lock_rate),
    ] {
        if !(r.is_finite() && r >= 0.0) {
            bail!("{flag} {r}: give a rate ≥ 0 per second");
        }
    }
    let files = Arc::new(Files::new(cfg.files, cfg.zipf)?);

    // The channels, round-robin over the proxies.
    let mut clients = Vec::new();
    for j in 0..cfg.connections {
        let addr = &addrs[(j as usize) % addrs.len()];
        clients.push(WarrenClient::new(channel(addr).await?));
    }
    setup_files(&addrs, cfg.files).await?;

    let stats = Arc::new(Stats::new(AckedWrites::new(rand::random(), cfg.files)));
    let sims: Arc<RwLock<Vec<Arc<Sim>>>> = Arc::new(RwLock::new(Vec::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let creators = Arc::new(Semaphore::new(CREATE_CONCURRENCY));

    let bar = progress_bar(&cfg);
    let mut notes = Vec::new();

    // Metrics before the ramp: the KeepAlive figures cover the whole run, so every session's
    // first KeepAlive is in them however short the window.
    let mut before = Vec::new();
    for admin in &cfg.metrics {
        before.push(metrics::scrape(admin).await?);
    }

    // Ramp: sessions created evenly over --ramp.
    let ramp_start = Instant::now();
    for i in 0..cfg.sessions {
        let at = ramp_start + cfg.ramp.mul_f64(i as f64 / cfg.sessions as f64);
        tokio::time::sleep_until(at).await;
        let permit = creators.clone().acquire_owned().await?;
        let client = clients[(i % cfg.connections) as usize].clone();
        tokio::spawn(session_task(
            client,
            stats.clone(),
            sims.clone(),
            permit,
            stop_rx.clone(),
            creators.clone(),
        ));
        if i % 64 == 0 {
            tick(&bar, &stats, "ramp", cfg.sessions);
        }
    }
    let create_deadline = Instant::now() + Duration::from_secs(60);
    while stats.created.load(Ordering::Relaxed) + stats.create_errors.load(Ordering::Relaxed)
        < cfg.sessions
    {
        if Instant::now() > create_deadline {
            bail!("session creation did not finish within 60 s of the ramp's end");
        }
        tick(&bar, &stats, "ramp", cfg.sessions);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramp_s = ramp_start.elapsed().as_secs_f64();

    // The measured window: open-loop arrivals of each kind.
    let window_start = Instant::now();
    let window_end = window_start + cfg.duration;
    let (drained_tx, drained_rx) = watch::channel(false);
    let sampler = tokio::spawn(sample(window_start, window_end, stats.clone(), drained_rx));
    let mut arrivals = Vec::new();
    for (op, rate) in [
        (Op::Read, cfg.read_rate),
        (Op::Write, cfg.write_rate),
        (Op::Lock, cfg.lock_rate),
    ] {
        if let Some(a) = Arrivals::new(rate) {
            arrivals.push(tokio::spawn(arrive(
                op,
                a,
                window_start,
                window_end,
                stats.clone(),
                sims.clone(),
                files.clone(),
            )));
        }
    }
    while Instant::now() < window_end {
        tick(&bar, &stats, "run", cfg.sessions);
        tokio::time::sleep_until((Instant::now() + Duration::from_millis(200)).min(window_end))
            .await;
    }
    for a in arrivals {
        let _ = a.await;
    }
    // Let the operations still in flight finish (their latency counts).
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while stats.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain_deadline {
        tick(&bar, &stats, "drain", cfg.sessions);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unfinished = stats.in_flight.load(Ordering::Relaxed);
    if unfinished > 0 {
        notes.push(format!(
            "{unfinished} operations were still in flight 30 s after the window and are not counted"
        ));
    }
    // The sampler takes its last sample now.
    let _ = drained_tx.send(true);
    let timeline = sampler.await.context("the timeline sampler")?;

    // Metrics after the window, while the sessions are still alive.
    let mut endpoints = Vec::new();
    for (admin, (b, at0)) in cfg.metrics.iter().zip(before) {
        let (a, at1) = metrics::scrape(admin).await?;
        endpoints.push(EndpointScrapes {
            admin: admin.clone(),
            before: b,
            after: a,
            secs: (at1 - at0).as_secs_f64(),
        });
    }

    // Read back every file with an acknowledged write, through a fresh session, while no
    // operation of the run is in flight any more.
    let acked = stats.writes.take();
    let acked_lost = if unfinished > 0 {
        notes.push(
            "acked_lost is not checked: operations were still in flight, so a file read back \
             could still change"
                .into(),
        );
        None
    } else {
        match read_back(&addrs, &acked, stats.writes.run).await {
            Ok((reads, failed)) => {
                if !failed.is_empty() {
                    notes.push(format!(
                        "acked_lost is not checked: reading back {} of {} written files failed \
                         (first: {})",
                        failed.len(),
                        acked.len(),
                        failed[0]
                    ));
                    None
                } else {
                    let l = lost::lost(&acked, &reads);
                    if l.writes > 0 {
                        notes.push(format!(
                            "{} acknowledged writes to {} files are not in what the files hold \
                             after the run",
                            l.writes, l.files
                        ));
                    }
                    Some(l.writes)
                }
            }
            Err(e) => {
                notes.push(format!("acked_lost is not checked: {e:#}"));
                None
            }
        }
    };

    // Close the sessions.
    let _ = stop_tx.send(true);
    let created = stats.created.load(Ordering::Relaxed);
    let close_deadline = Instant::now() + Duration::from_secs(60);
    while stats.ended.load(Ordering::Relaxed) < created && Instant::now() < close_deadline {
        tick(&bar, &stats, "close", cfg.sessions);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();

    // The report.
    let secs = cfg.duration.as_secs_f64();
    let mut report = Report {
        target: "proxies".into(),
        addresses: addrs,
        connections: cfg.connections,
        files: cfg.files,
        zipf: cfg.zipf,
        read_rate: cfg.read_rate,
        write_rate: cfg.write_rate,
        lock_rate: cfg.lock_rate,
        ramp_s,
        duration_s: secs,
        dropped: stats.dropped.load(Ordering::Relaxed),
        opens: stats.opens.load(Ordering::Relaxed),
        errors_by_code: stats.errors.lock().expect("errors lock").clone(),
        error_examples: stats.examples.lock().expect("examples lock").clone(),
        sessions: SessionOutcomes {
            target: cfg.sessions,
            created,
            create_errors: stats.create_errors.load(Ordering::Relaxed),
            jeopardy: stats.jeopardy.load(Ordering::Relaxed),
            safe: stats.safe.load(Ordering::Relaxed),
            expired: stats.expired.load(Ordering::Relaxed),
            keepalives: stats.keepalives.load(Ordering::Relaxed),
            keepalive_errors: stats.keepalive_errors.load(Ordering::Relaxed),
            closed: stats.closed.load(Ordering::Relaxed),
        },
        acked_lost: acked_lost.unwrap_or(0),
        acked_lost_checked: acked_lost.is_some(),
        notes,
        timeline,
        ..Default::default()
    };
    for (i, op) in [Op::Read, Op::Write, Op::Lock].into_iter().enumerate() {
        let h = stats.hist[i].lock().expect("histogram lock");
        let busy = if op == Op::Lock {
            stats.busy.load(Ordering::Relaxed)
        } else {
            0
        };
        report.ops.insert(
            op.name().into(),
            OpReport::new(&h, stats.op_errors[i].load(Ordering::Relaxed), busy, secs),
        );
    }
    if !endpoints.is_empty() {
        for e in &endpoints {
            report.endpoints.push(metrics::endpoint_report(e)?);
        }
        match metrics::absorption(&endpoints) {
            Ok(a) => {
                if a.factor.is_none() {
                    report.notes.push(
                        "no KeepAlive reached a cell during the run, so the absorption factor \
                         is unbounded (null): run for longer than a KeepAlive period"
                            .into(),
                    );
                }
                report.absorption_factor = a.factor;
                report.keepalives = Some(a);
            }
            Err(e) => report
                .notes
                .push(format!("no KeepAlive absorption factor: {e}")),
        }
        let shared = report
            .endpoints
            .iter()
            .filter(|e| e.role == "proxy+cell")
            .count();
        if shared > 1 {
            report.notes.push(format!(
                "{shared} endpoints expose both proxy and cell counters: they are probably one \
                 process with one metrics registry (warren dev), so its counts are repeated; \
                 the absorption factor is unaffected, but give one admin address of such a \
                 process for per-endpoint rates"
            ));
        }
        if report.ramp_s + secs < 13.0 {
            report.notes.push(
                "the run is shorter than a KeepAlive period (12 s leases): KeepAlive counts \
                 include each session's first KeepAlive and are not a steady-state rate"
                    .into(),
            );
        }
    }
    report.finish_totals();
    Ok(report)
}

async fn channel(addr: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))
}

/// Creates `/loadtest` and its files (if absent) with a library session.
async fn setup_files(addrs: &[String], n: u64) -> anyhow::Result<()> {
    let s = Session::connect_with(ClientOptions::proxies(addrs.iter().map(String::as_str)))
        .await
        .context("connecting the set-up session")?;
    let result = async {
        let (dir, _) = s
            .open("/loadtest", OpenOptions::new().read().create_dir())
            .await
            .context("creating /loadtest")?;
        dir.close().await;
        for i in 0..n {
            let path = Files::path(i);
            let (h, _) = s
                .open(&path, OpenOptions::new().read().create_file(Vec::new()))
                .await
                .with_context(|| format!("creating {path}"))?;
            h.close().await;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = s.close().await;
    result
}

/// Reads each file of `acked` once through a fresh library session: its content generation
/// and the sequence number of this run's write it holds. Returns the reads and, for files
/// whose read failed, what went wrong.
async fn read_back(
    addrs: &[String],
    acked: &BTreeMap<u64, Vec<lost::Ack>>,
    run: u64,
) -> anyhow::Result<(HashMap<u64, ReadBack>, Vec<String>)> {
    if acked.is_empty() {
        return Ok((HashMap::new(), Vec::new()));
    }
    let s = Arc::new(
        Session::connect_with(ClientOptions::proxies(addrs.iter().map(String::as_str)))
            .await
            .context("connecting the read-back session")?,
    );
    let turns = Arc::new(Semaphore::new(READ_BACK_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for &file in acked.keys() {
        let (s, turns) = (s.clone(), turns.clone());
        tasks.spawn(async move {
            let _turn = turns.acquire_owned().await;
            let path = Files::path(file);
            let read = async {
                let (h, _) = s
                    .open(&path, OpenOptions::new().read())
                    .await
                    .with_context(|| format!("opening {path}"))?;
                let got = h
                    .contents()
                    .await
                    .with_context(|| format!("reading {path}"));
                h.close().await;
                let (contents, stat) = got?;
                Ok::<_, anyhow::Error>(ReadBack {
                    generation: stat.content_generation,
                    seq: lost::seq_of(run, &contents),
                })
            }
            .await;
            (file, read)
        });
    }
    let mut reads = HashMap::new();
    let mut failed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a read-back task")? {
            (file, Ok(r)) => {
                reads.insert(file, r);
            }
            (_, Err(e)) => failed.push(format!("{e:#}")),
        }
    }
    if let Ok(s) = Arc::try_unwrap(s) {
        let _ = s.close().await;
    }
    Ok((reads, failed))
}

fn progress_bar(cfg: &Config) -> ProgressBar {
    if !cfg.progress {
        return ProgressBar::hidden();
    }
    let total = (cfg.ramp + cfg.duration).as_millis() as u64;
    let bar = ProgressBar::with_draw_target(Some(total.max(1)), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn tick(bar: &ProgressBar, stats: &Stats, phase: &str, target: u64) {
    if bar.is_hidden() {
        return;
    }
    bar.set_position(bar.elapsed().as_millis() as u64);
    let ops: u64 = stats
        .hist
        .iter()
        .map(|h| h.lock().expect("histogram lock").len())
        .sum();
    bar.set_message(format!(
        "{phase}: sessions {}/{target}, ops {ops}, in flight {}, errors {}, jeopardy {}",
        stats.created.load(Ordering::Relaxed),
        stats.in_flight.load(Ordering::Relaxed),
        stats.total_errors(),
        stats.jeopardy.load(Ordering::Relaxed),
    ));
}

/// One session: create it, KeepAlive until `stop`, then close it.
async fn session_task(
    mut client: WarrenClient<Channel>,
    stats: Arc<Stats>,
    sims: Arc<RwLock<Vec<Arc<Sim>>>>,
    permit: tokio::sync::OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
    closers: Arc<Semaphore>,
) {
    let sent = Instant::now();
    let created = client
        .create_session(pb::CreateSessionRequest {
            principal: String::new(),
            proxy: false,
        })
        .await;
    drop(permit);
    let reply = match created {
        Ok(r) => r.into_inner(),
        Err(status) => {
            stats.create_errors.fetch_add(1, Ordering::Relaxed);
            stats.error("CreateSession", &status);
            return;
        }
    };
    let local_end = |sent: Instant, lease_ms: u64| {
        sent + Duration::from_secs_f64(lease_ms as f64 / 1000.0 / (1.0 + RHO))
    };
    let mut lease_end = local_end(sent, reply.lease_ms);
    let mut ctx = pb::SessionContext {
        session_id: reply.session_id,
        secret: reply.secret,
        epoch: reply.epoch,
        ..Default::default()
    };
    sims.write().expect("sessions lock").push(Arc::new(Sim {
        client: client.clone(),
        ctx: ctx.clone(),
        deployment: reply.deployment.clone(),
        handles: Mutex::new(HashMap::new()),
    }));
    stats.created.fetch_add(1, Ordering::Relaxed);

    let mut ack_seq = 0u64;
    let mut in_jeopardy = false;
    'session: loop {
        if *stop.borrow() {
            break;
        }
        let sent = Instant::now();
        let call = client.keep_alive(pb::KeepAliveRequest {
            ctx: Some(ctx.clone()),
            ack_seq,
        });
        tokio::pin!(call);
        let result = loop {
            tokio::select! {
                r = &mut call => break r,
                _ = tokio::time::sleep_until(lease_end), if !in_jeopardy => {
                    in_jeopardy = true;
                    stats.jeopardy.fetch_add(1, Ordering::Relaxed);
                    stats.jeopardy_now.fetch_add(1, Ordering::Relaxed);
                }
                _ = tokio::time::sleep_until(lease_end + GRACE), if in_jeopardy => {
                    stats.jeopardy_now.fetch_sub(1, Ordering::Relaxed);
                    stats.expired.fetch_add(1, Ordering::Relaxed);
                    stats.ended.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                _ = stop.changed() => break 'session,
            }
        };
        match result {
            Ok(r) => {
                let r = r.into_inner();
                stats.keepalives.fetch_add(1, Ordering::Relaxed);
                if in_jeopardy {
                    in_jeopardy = false;
                    stats.jeopardy_now.fetch_sub(1, Ordering::Relaxed);
                    stats.safe.fetch_add(1, Ordering::Relaxed);
                }
                lease_end = lease_end.max(local_end(sent, r.lease_ms));
                ctx.epoch = ctx.epoch.max(r.epoch);
                for e in &r.events {
                    ack_seq = ack_seq.max(e.seq);
                }
            }
            Err(status) => {
                stats.keepalive_errors.fetch_add(1, Ordering::Relaxed);
                stats.error("KeepAlive", &status);
                if is_code(&status, ErrorCode::SessionExpired) {
                    if in_jeopardy {
                        stats.jeopardy_now.fetch_sub(1, Ordering::Relaxed);
                    }
                    stats.expired.fetch_add(1, Ordering::Relaxed);
                    stats.ended.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => break 'session,
                }
            }
        }
    }
    if in_jeopardy {
        stats.jeopardy_now.fetch_sub(1, Ordering::Relaxed);
    }
    let _turn = closers.acquire_owned().await;
    match client
        .close_session(pb::CloseSessionRequest {
            ctx: Some(ctx),
            expired: false,
        })
        .await
    {
        Ok(_) => {
            stats.closed.fetch_add(1, Ordering::Relaxed);
        }
        Err(status) => stats.error("CloseSession", &status),
    }
    stats.ended.fetch_add(1, Ordering::Relaxed);
}

/// Open-loop arrivals of `op`: a Poisson process from `start` to `end`. Each arrival is
/// spawned at its intended time whatever the earlier ones are doing.
async fn arrive(
    op: Op,
    arrivals: Arrivals,
    start: Instant,
    end: Instant,
    stats: Arc<Stats>,
    sims: Arc<RwLock<Vec<Arc<Sim>>>>,
    files: Arc<Files>,
) {
    let mut rng = StdRng::from_entropy();
    let mut t = start;
    loop {
        t += arrivals.gap(&mut rng);
        if t >= end {
            return;
        }
        tokio::time::sleep_until(t).await;
        let sim = {
            let sims = sims.read().expect("sessions lock");
            if sims.is_empty() {
                None
            } else {
                Some(sims[rng.gen_range(0..sims.len())].clone())
            }
        };
        let Some(sim) = sim else {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if stats.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let file = files.pick(&mut rng);
        let stats = stats.clone();
        tokio::spawn(async move {
            let result = one_op(op, &sim, file, &stats).await;
            let i = op as usize;
            match result {
                Ok(()) => {
                    let us = u64::try_from(t.elapsed().as_micros().max(1)).unwrap_or(u64::MAX);
                    stats.hist[i]
                        .lock()
                        .expect("histogram lock")
                        .saturating_record(us);
                    stats.interval_hist[i]
                        .lock()
                        .expect("histogram lock")
                        .saturating_record(us);
                }
                Err((call, status)) => {
                    stats.op_errors[i].fetch_add(1, Ordering::Relaxed);
                    stats.error(&format!("{}/{call}", op.name()), &status);
                    if is_code(&status, ErrorCode::HandleInvalid) {
                        sim.handles.lock().expect("handles lock").remove(&file);
                    }
                }
            }
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The timeline: one sample a second from `start`; the last interval runs from the last
/// whole second before `end` (the window's end) until `drained` turns true, so the
/// operations that finish in the drain count in it rather than in a near-empty extra second.
async fn sample(
    start: Instant,
    end: Instant,
    stats: Arc<Stats>,
    mut drained: watch::Receiver<bool>,
) -> Vec<TimelineSample> {
    let mut timeline = Vec::new();
    let mut last = start;
    let mut last_errors = [0u64; 3];
    for k in 1u32.. {
        let boundary = start + Duration::from_secs(u64::from(k));
        let done = boundary >= end;
        if done {
            let _ = drained.wait_for(|d| *d).await;
        } else {
            tokio::time::sleep_until(boundary).await;
        }
        let now = Instant::now();
        let dt = (now - last).as_secs_f64();
        last = now;
        let mut ops = BTreeMap::new();
        for (i, op) in [Op::Read, Op::Write, Op::Lock].into_iter().enumerate() {
            let errors = stats.op_errors[i].load(Ordering::Relaxed);
            let mut h = stats.interval_hist[i].lock().expect("histogram lock");
            ops.insert(
                op.name().to_string(),
                IntervalOp::new(&h, errors.saturating_sub(last_errors[i]), dt),
            );
            h.reset();
            last_errors[i] = errors;
        }
        let live = stats
            .created
            .load(Ordering::Relaxed)
            .saturating_sub(stats.ended.load(Ordering::Relaxed));
        let jeopardy = stats.jeopardy_now.load(Ordering::Relaxed);
        timeline.push(TimelineSample {
            t_s: (now - start).as_secs_f64(),
            dt_s: dt,
            ops,
            sessions: SessionStates {
                safe: live.saturating_sub(jeopardy),
                jeopardy,
                expired: stats.expired.load(Ordering::Relaxed),
            },
        });
        if done {
            break;
        }
    }
    timeline
}

type OpError = (&'static str, tonic::Status);

/// One operation on `file` by `sim`: a read (GetContentsAndStat, or Open with read-at-open
/// on the session's first use of the file), a write (SetContents), or a lock (TryAcquire
/// exclusive, then Release when it was acquired; LOCK_HELD counts as busy, not an error).
async fn one_op(op: Op, sim: &Sim, file: u64, stats: &Stats) -> Result<(), OpError> {
    let mut client = sim.client.clone();
    let ctx = Some(sim.ctx.clone());
    let cached = sim
        .handles
        .lock()
        .expect("handles lock")
        .get(&file)
        .cloned();
    let handle = match cached {
        Some(h) => h,
        None => {
            let r = client
                .open(pb::OpenRequest {
                    ctx: ctx.clone(),
                    path: format!("/ls/{}{}", sim.deployment, Files::path(file)),
                    intent: (pb::Intent::Read as u32) | (pb::Intent::Write as u32),
                    read: op == Op::Read,
                    ..Default::default()
                })
                .await
                .map_err(|s| ("Open", s))?
                .into_inner();
            stats.opens.fetch_add(1, Ordering::Relaxed);
            sim.handles
                .lock()
                .expect("handles lock")
                .insert(file, r.handle.clone());
            if op == Op::Read {
                // Read at open: the contents came with the handle.
                return Ok(());
            }
            r.handle
        }
    };
    match op {
        Op::Read => {
            client
                .get_contents_and_stat(pb::GetContentsAndStatRequest { ctx, handle })
                .await
                .map_err(|s| ("GetContentsAndStat", s))?;
        }
        Op::Write => {
            let (seq, contents) = stats.writes.next_body(file);
            let r = client
                .set_contents(pb::SetContentsRequest {
                    ctx,
                    handle,
                    contents,
                    ..Default::default()
                })
                .await
                .map_err(|s| ("SetContents", s))?
                .into_inner();
            // Acknowledged. The cells always send the stat; a reply without one is recorded
            // at generation 0, which only a file still at generation 0 can contradict.
            let generation = r.stat.map_or(0, |st| st.content_generation);
            stats.writes.record(file, seq, generation);
        }
        Op::Lock => {
            let got = client
                .try_acquire(pb::TryAcquireRequest {
                    ctx: ctx.clone(),
                    handle: handle.clone(),
                    mode: pb::LockMode::Exclusive as i32,
                })
                .await;
            match got {
                Ok(_) => {
                    client
                        .release(pb::ReleaseRequest { ctx, handle })
                        .await
                        .map_err(|s| ("Release", s))?;
                }
                Err(s) if is_code(&s, ErrorCode::LockHeld) => {
                    stats.busy.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(s) => return Err(("TryAcquire", s)),
            }
        }
    }
    Ok(())
}

/// Parses a duration like `3s`, `500ms`, `2m` or `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("`{s}`: {e} (e.g. 30s, 500ms, 2m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("fast").unwrap_err().contains("e.g. 30s"));
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            "proxies=a:1, b:2".parse::<Target>(),
            Ok(Target::Proxies(vec!["a:1".into(), "b:2".into()]))
        );
        assert_eq!(
            "cells=m:1".parse::<Target>(),
            Ok(Target::Cells("m:1".into()))
        );
        assert!("proxies=".parse::<Target>().is_err());
        assert!("cells=a:1,b:2".parse::<Target>().is_err());
        assert!("a:1".parse::<Target>().unwrap_err().contains("proxies="));
    }

    #[test]
    fn warren_codes_and_grpc_codes_are_named() {
        let s: tonic::Status = WarrenError::lock_held("held").into();
        assert_eq!(code_of(&s), "LOCK_HELD");
        assert!(is_code(&s, ErrorCode::LockHeld));
        assert_eq!(code_of(&tonic::Status::unavailable("down")), "Unavailable");
    }

    #[tokio::test]
    async fn cells_target_is_refused_clearly() {
        let cfg = Config {
            target: Target::Cells("127.0.0.1:1".into()),
            sessions: 1,
            connections: 1,
            duration: Duration::from_secs(1),
            ramp: Duration::ZERO,
            read_rate: 1.0,
            write_rate: 0.0,
            lock_rate: 0.0,
            files: 1,
            zipf: 1.0,
            metrics: vec![],
            progress: false,
        };
        let err = run(cfg).await.unwrap_err().to_string();
        assert!(err.contains("not built yet"), "{err}");
    }
}
