//! `warren loadtest run`: N simulated clients on raw-protocol sessions over C gRPC channels,
//! each session with its KeepAlive loop, and open-loop Poisson reads, writes and lock
//! operations on `/loadtest/d{i mod 32}/f{i}` with Zipf popularity. Latency is measured from
//! each operation's *intended* send time, so a slow server cannot hide its slowness by
//! slowing the load down (no coordinated omission).
//!
//! Through proxies a client holds one session, at one proxy, and when its proxy fails
//! looks for another in the client library's order: its session's consistent-hash ring
//! order ([`warren_client::ProxyRing`]), each round from the first. Direct to the cells
//! (`cells=META`) a client holds a session at the meta cell and one at every data cell, and
//! routes each file by the partition map, as the library's direct mode does. Each session's
//! lease, jeopardy, grace period, acknowledgements and retry backoff are the client
//! library's shared [`warren_client::lease`] types, with the library's default ρ and grace
//! period. An operation that meets a failover (no master, a dead proxy, a stale epoch) is
//! retried for up to [`OP_PATIENCE`] from its intended time, so the report shows how long
//! clients waited.

use crate::fault::{Fault, FaultRecord, Injector};
use crate::fence::{LockLedger, Verdict};
use crate::h2conn::H2Channel;
use crate::lost::{self, AckedWrites, ReadBack};
use crate::metrics::{self, EndpointScrapes};
use crate::procstat;
use crate::report::{
    latency_histogram, IntervalOp, MemberInfo, OpReport, Report, SessionOutcomes, SessionStates,
    TimelineSample,
};
use crate::reshard::{Phases, ReshardReport, ReshardSpec};
use crate::workload::{Arrivals, Files};
use anyhow::{bail, Context};
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use warren_client::lease::{AckWatermark, Backoff, Lease, Passed};
use warren_client::map::MapWatcher;
use warren_client::transport::is_unreachable;
use warren_client::{ClientOptions, OpenOptions, ProxyRing, Session};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::{ErrorCode, WarrenError};
use warren_router::Route;

/// Most CreateSession (and CloseSession) calls in flight at once.
const CREATE_CONCURRENCY: usize = 500;
/// Most operations in flight at once; arrivals beyond it are dropped and counted.
const MAX_IN_FLIGHT: u64 = 20_000;
/// How long an operation that meets a failover keeps retrying, from its intended time
/// (the grace period a client library would wait in jeopardy).
pub const OP_PATIENCE: Duration = ClientOptions::DEFAULT_GRACE_PERIOD;
/// Most files the read-back after the window reads at once.
const READ_BACK_CONCURRENCY: usize = 32;
/// Most files the set-up creates at once.
const SETUP_CONCURRENCY: usize = 64;
/// With `--reshard`: locks taken before the window by the first clients and held until
/// the move has ended, then checked (sequencer still current, released as held).
pub const HELD_LOCKS: u64 = 32;
/// The most files a run may use (`--files`): their creation, their handles and the
/// acknowledged writes' record must fit one load generator.
pub const MAX_FILES: u64 = 1_000_000;

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
    /// The directories the files are spread over (`--dirs`).
    pub dirs: u64,
    pub zipf: f64,
    /// Admin addresses whose `/metrics` are scraped before the ramp and after the window.
    pub metrics: Vec<String>,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// Faults to inject during the window (needs an [`Injector`], see [`run_with`]).
    pub faults: Vec<Fault>,
    /// Seeds the arrivals' gaps and the choice of client and file for each (`--seed`), so
    /// that two runs send the same sequence of operations; `None`: from entropy. The
    /// servers' timing, and so the outcome, still varies.
    pub seed: Option<u64>,
    /// A reshard to run during the window (needs an [`Injector`] that can add a cell, and
    /// the proxies as target): [`crate::reshard`].
    pub reshard: Option<ReshardSpec>,
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
    /// Arrivals of each kind so far, sent or dropped: the offered load.
    offered: [AtomicU64; 3],
    busy: AtomicU64,
    /// Calls made again after a retryable failure.
    retries: AtomicU64,
    /// The longest any operation waited, successful or not, from its intended time (µs).
    longest_wait_us: AtomicU64,
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
    /// Jeopardy episodes that began in the measured window.
    jeopardy_in_window: AtomicU64,
    /// Whether the measured window is on.
    in_window: AtomicBool,
    /// Jeopardy episodes that began while the sessions were created (the ramp).
    jeopardy_in_ramp: AtomicU64,
    /// Whether the sessions are being created.
    ramping: AtomicBool,
    /// Once the run ends: when the sessions start closing, and over how long (the ramp).
    /// They close at the rate they were created, each keeping its KeepAlives up until its
    /// time: all at once, the closes on top of the KeepAlives of the sessions still open
    /// overloaded the proxy (docs/performance.md, "Memory per session at the proxy, and
    /// 150k sessions").
    close_pace: std::sync::OnceLock<(Instant, Duration, u64)>,
    /// How many sessions took their place in the paced close so far.
    close_rank: AtomicU64,
    safe: AtomicU64,
    expired: AtomicU64,
    keepalives: AtomicU64,
    keepalive_errors: AtomicU64,
    /// Sessions moved to another proxy after a transport failure.
    moved: AtomicU64,
    closed: AtomicU64,
    /// Sessions whose task has ended (closed, expired or failed to close).
    ended: AtomicU64,
    /// Each write's sequence number, and the acknowledged ones (the `acked_lost` check).
    writes: AckedWrites,
    /// Who holds each lock, as the clients see it (the lock check).
    locks: LockLedger,
    /// With a reshard: the figures split at the move's start and end.
    phases: Option<Phases>,
}

impl Stats {
    fn new(writes: AckedWrites, phases: Option<Phases>) -> Stats {
        Stats {
            hist: std::array::from_fn(|_| Mutex::new(latency_histogram())),
            interval_hist: std::array::from_fn(|_| Mutex::new(latency_histogram())),
            op_errors: std::array::from_fn(|_| AtomicU64::new(0)),
            offered: std::array::from_fn(|_| AtomicU64::new(0)),
            busy: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            longest_wait_us: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            examples: Mutex::new(BTreeMap::new()),
            dropped: AtomicU64::new(0),
            opens: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            created: AtomicU64::new(0),
            create_errors: AtomicU64::new(0),
            jeopardy: AtomicU64::new(0),
            jeopardy_now: AtomicU64::new(0),
            jeopardy_in_window: AtomicU64::new(0),
            in_window: AtomicBool::new(false),
            jeopardy_in_ramp: AtomicU64::new(0),
            ramping: AtomicBool::new(true),
            close_pace: std::sync::OnceLock::new(),
            close_rank: AtomicU64::new(0),
            safe: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            keepalives: AtomicU64::new(0),
            keepalive_errors: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            writes,
            locks: LockLedger::default(),
            phases,
        }
    }

    /// A failed call, made now.
    fn error(&self, call: &str, status: &tonic::Status) {
        self.error_since(call, status, Instant::now());
    }

    /// A failed call, of something in progress since `since` (an operation's intended
    /// time).
    fn error_since(&self, call: &str, status: &tonic::Status, since: Instant) {
        let key = format!("{call}:{}", code_of(status));
        if let Some(p) = &self.phases {
            p.error(&key, since);
        }
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

/// A server the simulated clients talk to, and the channels they share to it.
struct Peer {
    /// `p1`… through proxies; `meta` and the map's cell names direct to the cells.
    name: String,
    addr: String,
    channels: Vec<(WarrenClient<H2Channel>, H2Channel)>,
}

/// Where the sessions go and how files route to them.
struct Topology {
    /// Proxies mode: the proxies. Cells mode: the meta cell, then the data cells in the
    /// map's order.
    peers: Vec<Peer>,
    /// Cells mode: each client holds a session at every peer (the meta cell's is its home
    /// session, as the client library's direct mode keeps). Proxies mode: one session, at
    /// one proxy, moving to the next proxy when its proxy fails.
    direct: bool,
    /// Cells mode: for each file, the peer (and so the leg) whose cell holds it.
    file_peer: Vec<usize>,
    /// Proxies mode: the client library's consistent-hash ring over the proxies.
    ring: Option<ProxyRing>,
}

impl Topology {
    /// Through these proxies.
    fn proxies(peers: Vec<Peer>) -> Topology {
        let addrs: Vec<String> = peers.iter().map(|p| p.addr.clone()).collect();
        Topology {
            peers,
            direct: false,
            file_peer: Vec::new(),
            ring: Some(ProxyRing::new(&addrs)),
        }
    }

    /// Proxies mode: the order in which the session `session` looks for a proxy when its
    /// own fails, as indices into `peers` — the client library's order for that session
    /// ([`warren_client::proxy_order`], the session's preferred proxy first). Empty
    /// direct to the cells (a session there stays at its cell).
    fn failover_order(&self, session: &[u8]) -> Vec<usize> {
        let Some(ring) = &self.ring else {
            return Vec::new();
        };
        ring.order(session)
            .iter()
            .filter_map(|addr| self.peers.iter().position(|p| &p.addr == addr))
            .collect()
    }

    /// The leg that serves `file`.
    fn leg_of(&self, file: u64) -> usize {
        if self.direct {
            self.file_peer[file as usize]
        } else {
            0
        }
    }

    /// The channel client `id` uses at `peer`.
    /// (its tonic client, and the connection itself for the hot read path).
    fn client(&self, peer: usize, id: u64) -> (WarrenClient<H2Channel>, H2Channel) {
        let chans = &self.peers[peer].channels;
        let k = if self.direct {
            id as usize
        } else {
            id as usize / self.peers.len()
        };
        chans[k % chans.len()].clone()
    }

    fn addrs(&self) -> Vec<String> {
        self.peers.iter().map(|p| p.addr.clone()).collect()
    }

    /// The peers as the report's members (no admin address: the run does not know it).
    fn members(&self) -> Vec<MemberInfo> {
        self.peers
            .iter()
            .map(|p| MemberInfo {
                name: p.name.clone(),
                role: match (self.direct, p.name.as_str()) {
                    (false, _) => "proxy",
                    (true, "meta") => "meta",
                    (true, _) => "cell",
                }
                .into(),
                addr: p.addr.clone(),
                admin: None,
                store: None,
            })
            .collect()
    }
}

/// Where one of a client's sessions is now.
#[derive(Clone)]
struct Link {
    peer: usize,
    client: WarrenClient<H2Channel>,
    /// `client`'s connection, for the reads made on it directly ([`H2Channel::unary`]).
    conn: H2Channel,
    ctx: pb::SessionContext,
}

/// The clients created so far, which the arrivals pick from.
type Sims = Arc<RwLock<Vec<Arc<Sim>>>>;

/// One simulated client: its sessions (legs) and the handles it opened.
struct Sim {
    /// Its number, 0..sessions.
    id: u64,
    legs: Vec<RwLock<Link>>,
    /// The deployment the client is in (full paths are `/ls/DEPLOYMENT/…`).
    deployment: String,
    /// Handles this client opened, by file index (each at the leg of the file's cell).
    handles: Mutex<HashMap<u64, Vec<u8>>>,
    /// Legs in jeopardy now: the client is in jeopardy while any is.
    jeopardy_legs: AtomicU64,
    expired: AtomicBool,
}

impl Sim {
    /// Where `leg`'s session is now, with the context to send: a client that holds no
    /// handle says so (`holds_nothing`), as the client library does, so that a proxy it
    /// moves to can take it on even if no cell knows it.
    fn link(&self, leg: usize) -> Link {
        let mut l = self.legs[leg].read().expect("link lock").clone();
        l.ctx.holds_nothing = self.handles.lock().expect("handles lock").is_empty();
        l
    }

    /// Takes on a newer master epoch at `leg` (from a KeepAlive reply or a `STALE_EPOCH`
    /// refusal: after a failover, or an adoption by another proxy). Whether it was news.
    fn new_epoch(&self, leg: usize, epoch: u64) -> bool {
        // Almost always no news (every KeepAlive reply carries the epoch): a read lock.
        if epoch <= self.legs[leg].read().expect("link lock").ctx.epoch {
            return false;
        }
        let mut l = self.legs[leg].write().expect("link lock");
        if epoch > l.ctx.epoch {
            l.ctx.epoch = epoch;
            true
        } else {
            false
        }
    }

    /// The epoch a `STALE_EPOCH` refusal names, taken on; whether there was one.
    fn stale_epoch(&self, leg: usize, status: &tonic::Status) -> bool {
        match WarrenError::from_status(status) {
            Some(e) if e.code == ErrorCode::StaleEpoch => self.new_epoch(leg, e.epoch),
            _ => false,
        }
    }
}

/// Runs the load and returns the report.
pub async fn run(cfg: Config) -> anyhow::Result<Report> {
    run_with(cfg, None).await
}

/// Runs the load, injecting `cfg.faults` through `injector`, and returns the report. The
/// injector is the deployment the caller launched: the report also has its processes'
/// memory and CPU over the window ([`crate::procstat`]).
pub async fn run_with(cfg: Config, injector: Option<Arc<dyn Injector>>) -> anyhow::Result<Report> {
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
    if !cfg.faults.is_empty() && injector.is_none() {
        bail!("faults (--kill, --restart) need a deployment the load test launched (--deploy)");
    }
    if let Some(f) = cfg.faults.iter().find(|f| f.at >= cfg.duration) {
        bail!(
            "--{} {}@{:?} is not inside the measured window (--duration {:?})",
            f.action.name(),
            f.member,
            f.at,
            cfg.duration
        );
    }
    if let Some(r) = &cfg.reshard {
        if injector.is_none() {
            bail!(
                "--reshard needs a deployment the load test launched (--deploy dev), to start \
                 the new cell in"
            );
        }
        if matches!(cfg.target, Target::Cells(_)) {
            bail!(
                "--reshard runs only through the proxies (--target proxies): direct clients \
                 here route by the map read at the start and do not follow a reshard"
            );
        }
        if r.at >= cfg.duration {
            bail!(
                "--reshard {r} is not inside the measured window (--duration {:?})",
                cfg.duration
            );
        }
    }
    if cfg.files > MAX_FILES {
        bail!("--files {}: give at most {MAX_FILES}", cfg.files);
    }
    let files = Arc::new(Files::with_dirs(cfg.files, cfg.zipf, cfg.dirs)?);

    let library = match &cfg.target {
        Target::Proxies(a) => ClientOptions::proxies(a.iter().map(String::as_str)),
        Target::Cells(meta) => ClientOptions::meta([meta.as_str()]),
    };
    let topo = Arc::new(topology(&cfg, &files).await?);
    if cfg.progress && cfg.files >= 10_000 {
        eprintln!(
            "creating the {} files (if absent) over {} directories",
            cfg.files, cfg.dirs
        );
    }
    let setup_start = Instant::now();
    let held_paths: Vec<String> = match cfg.reshard {
        Some(_) => (0..HELD_LOCKS.min(cfg.sessions))
            .map(|k| files.extra_path("held", k))
            .collect(),
        None => Vec::new(),
    };
    setup_files(library.clone(), files.clone(), &held_paths).await?;
    let setup_s = setup_start.elapsed().as_secs_f64();

    let stats = Arc::new(Stats::new(
        AckedWrites::new(rand::random(), cfg.files),
        cfg.reshard.as_ref().map(|_| Phases::default()),
    ));
    let sims: Sims = Arc::new(RwLock::new(Vec::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let creators = Arc::new(Semaphore::new(CREATE_CONCURRENCY));

    let bar = progress_bar(&cfg);
    let mut notes = Vec::new();
    if setup_s >= 5.0 {
        notes.push(format!(
            "creating (or finding) the {} files before the run took {setup_s:.1} s",
            cfg.files
        ));
    }

    // Metrics before the ramp: the KeepAlive figures cover the whole run, so every session's
    // first KeepAlive is in them however short the window.
    let mut before = Vec::new();
    for admin in &cfg.metrics {
        before.push(metrics::scrape(admin).await?);
    }

    // Ramp: clients created evenly over --ramp.
    let ramp_start = Instant::now();
    for i in 0..cfg.sessions {
        let at = ramp_start + cfg.ramp.mul_f64(i as f64 / cfg.sessions as f64);
        tokio::time::sleep_until(at).await;
        let permit = creators.clone().acquire_owned().await?;
        tokio::spawn(session_task(
            i,
            topo.clone(),
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
    stats.ramping.store(false, Ordering::Relaxed);
    // The locks held through the reshard, taken now by the first clients.
    let held = if held_paths.is_empty() {
        Vec::new()
    } else {
        match take_held_locks(&sims, &held_paths, &stats).await {
            Ok(h) => h,
            Err(e) => {
                notes.push(format!("the locks to hold through the reshard: {e:#}"));
                Vec::new()
            }
        }
    };

    // The measured window: open-loop arrivals of each kind, and the faults.
    let window_start = Instant::now();
    let window_end = window_start + cfg.duration;
    stats.in_window.store(true, Ordering::Relaxed);
    let (drained_tx, drained_rx) = watch::channel(false);
    let sampler = tokio::spawn(sample(window_start, window_end, stats.clone(), drained_rx));
    let me = || {
        vec![procstat::MemberProcess {
            name: "loadtest".into(),
            pid: Some(std::process::id()),
            starts: 1,
        }]
    };
    let own_at_start = procstat::Snapshot::take(me());
    let processes_at_start = match &injector {
        Some(d) => Some(procstat::Snapshot::take(d.processes().await)),
        None => None,
    };
    let deployment = injector.clone();
    let resharding = match (&cfg.reshard, &injector) {
        (Some(spec), Some(d)) => Some(tokio::spawn(reshard(
            window_start,
            window_end,
            spec.clone(),
            d.clone(),
            stats.clone(),
        ))),
        _ => None,
    };
    let faults = tokio::spawn(inject(window_start, cfg.faults.clone(), injector));
    // Operations still in flight after the window may finish until then (their latency
    // counts); an operation retries for at most OP_PATIENCE.
    let drain_deadline = window_end + OP_PATIENCE + Duration::from_secs(5);
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
                (window_start, window_end, drain_deadline),
                (stats.clone(), sims.clone(), topo.clone()),
                files.clone(),
                cfg.seed
                    .map(|s| s ^ (op as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            )));
        }
    }
    while Instant::now() < window_end {
        tick(&bar, &stats, "run", cfg.sessions);
        tokio::time::sleep_until((Instant::now() + Duration::from_millis(200)).min(window_end))
            .await;
    }
    stats.in_window.store(false, Ordering::Relaxed);
    let load_generator = procstat::window_figures(
        &own_at_start,
        &procstat::Snapshot::take(me()),
        procstat::ticks_per_s(),
    )
    .pop()
    .filter(|g| g.cpu_s.is_some());
    let processes = match (processes_at_start, &deployment) {
        (Some(start), Some(d)) => {
            let end = procstat::Snapshot::take(d.processes().await);
            procstat::window_figures(&start, &end, procstat::ticks_per_s())
        }
        _ => Vec::new(),
    };
    // Let the operations still in flight finish (each arrivals task drives its own until
    // `drain_deadline`).
    while stats.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain_deadline {
        tick(&bar, &stats, "drain", cfg.sessions);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for a in arrivals {
        let _ = a.await;
    }
    let unfinished = stats.in_flight.load(Ordering::Relaxed);
    if unfinished > 0 {
        notes.push(format!(
            "{unfinished} operations were still in flight {:?} after the window and are not \
             counted",
            OP_PATIENCE + Duration::from_secs(5)
        ));
    }
    // The sampler takes its last sample now.
    let _ = drained_tx.send(true);
    // A reshard still going is followed to its end (the sessions stay alive meanwhile), so
    // that the read-back below reads the files where the move left them.
    let mut reshard_report = match resharding {
        Some(task) => {
            if !task.is_finished() {
                bar.set_message("waiting for the reshard job to end");
            }
            let mut r = task.await.context("the reshard task")?;
            if !held.is_empty() {
                let (kept, problems) = check_held_locks(&held, &stats).await;
                r.held_locks = held.len() as u64;
                r.held_locks_kept = kept;
                r.held_lock_problems = problems;
            }
            Some(r)
        }
        None => None,
    };
    let timeline = sampler.await.context("the timeline sampler")?;
    let faults = faults.await.context("the fault injector")?;
    if faults
        .iter()
        .any(|f| f.action == crate::fault::Action::Restart.name() && f.error.is_none())
    {
        notes.push(
            "a member was restarted: its counters began again from 0, so its rates below \
             cover the window only in part (they are left out where a counter went down)"
                .into(),
        );
    }
    for f in &faults {
        if let Some(e) = &f.error {
            notes.push(format!("--{} {} failed: {e}", f.action, f.member));
        }
    }

    // Metrics after the window, while the sessions are still alive.
    let mut endpoints = Vec::new();
    for (admin, (b, at0)) in cfg.metrics.iter().zip(before) {
        let (a, at1) = match metrics::scrape(admin).await {
            Ok(x) => x,
            Err(e) if !faults.is_empty() => {
                notes.push(format!(
                    "no figures from {admin} (a fault may have ended it): {e:#}"
                ));
                continue;
            }
            Err(e) => return Err(e),
        };
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
        match read_back(library, &files, &acked, stats.writes.run).await {
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

    // Close the sessions, at the rate they were created.
    let created = stats.created.load(Ordering::Relaxed);
    let _ = stats
        .close_pace
        .set((Instant::now(), cfg.ramp, created.max(1)));
    let _ = stop_tx.send(true);
    let close_deadline = Instant::now() + cfg.ramp + Duration::from_secs(60);
    while stats.ended.load(Ordering::Relaxed) < created && Instant::now() < close_deadline {
        tick(&bar, &stats, "close", cfg.sessions);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();

    // The report.
    let secs = cfg.duration.as_secs_f64();
    let mut report = Report {
        target: match cfg.target {
            Target::Proxies(_) => "proxies".into(),
            Target::Cells(_) => "cells".into(),
        },
        addresses: topo.addrs(),
        members: topo.members(),
        sessions_per_client: if topo.direct {
            topo.peers.len() as u64
        } else {
            1
        },
        connections: cfg.connections,
        files: cfg.files,
        dirs: (cfg.dirs != crate::workload::DIRS).then_some(cfg.dirs),
        zipf: cfg.zipf,
        read_rate: cfg.read_rate,
        write_rate: cfg.write_rate,
        lock_rate: cfg.lock_rate,
        ramp_s,
        duration_s: secs,
        dropped: stats.dropped.load(Ordering::Relaxed),
        opens: stats.opens.load(Ordering::Relaxed),
        retries: stats.retries.load(Ordering::Relaxed),
        longest_wait_ms: stats.longest_wait_us.load(Ordering::Relaxed) as f64 / 1000.0,
        errors_by_code: stats.errors.lock().expect("errors lock").clone(),
        error_examples: stats.examples.lock().expect("examples lock").clone(),
        sessions: SessionOutcomes {
            target: cfg.sessions,
            created,
            create_errors: stats.create_errors.load(Ordering::Relaxed),
            jeopardy: stats.jeopardy.load(Ordering::Relaxed),
            jeopardy_in_window: stats.jeopardy_in_window.load(Ordering::Relaxed),
            jeopardy_in_ramp: stats.jeopardy_in_ramp.load(Ordering::Relaxed),
            safe: stats.safe.load(Ordering::Relaxed),
            expired: stats.expired.load(Ordering::Relaxed),
            keepalives: stats.keepalives.load(Ordering::Relaxed),
            keepalive_errors: stats.keepalive_errors.load(Ordering::Relaxed),
            moved: stats.moved.load(Ordering::Relaxed),
            closed: stats.closed.load(Ordering::Relaxed),
        },
        acked_lost: acked_lost.unwrap_or(0),
        acked_lost_checked: acked_lost.is_some(),
        faults,
        notes,
        timeline,
        processes,
        load_generator,
        locks: stats.locks.checks(),
        ..Default::default()
    };
    if let (Some(r), Some(p)) = (reshard_report.as_mut(), &stats.phases) {
        p.fill(&[Op::Read.name(), Op::Write.name(), Op::Lock.name()], r);
        if r.end_s.is_some_and(|e| e > secs) {
            report.notes.push(format!(
                "the reshard ended {:.1} s after the measured window: operations ran only in \
                 the window, so the clients' figures during the move cover its first {:.1} s",
                r.end_s.unwrap_or(secs) - secs,
                (secs - r.start_s.unwrap_or(secs)).max(0.0)
            ));
        }
    }
    report.reshard = reshard_report;
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
    // An endpoint whose counters went down restarted in the window (a fault, say): its
    // figures are left out, with a note, rather than failing the report.
    let endpoints: Vec<EndpointScrapes> = endpoints
        .into_iter()
        .filter(|e| match metrics::endpoint_report(e) {
            Ok(r) => {
                report.endpoints.push(r);
                true
            }
            Err(err) => {
                report
                    .notes
                    .push(format!("no figures from {}: {err}", e.admin));
                false
            }
        })
        .collect();
    if !endpoints.is_empty() {
        if topo.direct {
            report.notes.push(
                "direct to the cells: every client KeepAlive reaches a cell (no proxy absorbs \
                 any), so there is no absorption factor; see each cell's KeepAlive rate"
                    .into(),
            );
        } else {
            match metrics::absorption(&endpoints) {
                Ok(a) => {
                    if a.factor.is_none() {
                        report.notes.push(
                            "no KeepAlive reached a cell during the run, so the absorption \
                             factor is unbounded (null): run for longer than a KeepAlive period"
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
    // Each scraped endpoint's own `/status` says which member it is: the member table then
    // names it, also when the run was given addresses (--target) rather than launching.
    for admin in &cfg.metrics {
        let Ok(reply) = crate::http::get(admin, "/status", Duration::from_secs(2)).await else {
            continue;
        };
        if let Some(id) = (reply.status == 200)
            .then(|| Identity::from_status(&reply.body))
            .flatten()
        {
            id.name_member(&mut report.members, admin);
        }
    }
    report.finish_totals();
    Ok(report)
}

/// What an admin endpoint's `/status` page says it is (`warren_server::admin`,
/// `warren_proxy::admin`).
#[derive(Clone, Debug, PartialEq)]
enum Identity {
    /// A cell's replica: its cell's name, its gRPC address when it is the master, and its
    /// store.
    Cell {
        name: String,
        addr: Option<String>,
        store: Option<String>,
    },
    /// A proxy, by its gRPC address.
    Proxy { addr: String },
}

impl Identity {
    /// From the JSON of `/status`; `None` for a page that is neither a cell's nor a
    /// proxy's.
    fn from_status(body: &str) -> Option<Identity> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        if v.get("map_cells").is_some() {
            return Some(Identity::Proxy {
                addr: text("address")?,
            });
        }
        let name = text("name").filter(|n| !n.is_empty())?;
        let addr = text("master").filter(|_| text("role").as_deref() == Some("master"));
        Some(Identity::Cell {
            name,
            addr,
            store: text("store").filter(|s| !s.is_empty()),
        })
    }

    /// Gives the member it is the admin address `admin`: the proxy of that gRPC address,
    /// the cell of that name; a cell the run did not know (through proxies) is added.
    fn name_member(self, members: &mut Vec<MemberInfo>, admin: &str) {
        let known = members.iter_mut().find(|m| match &self {
            Identity::Proxy { addr } => m.role == "proxy" && &m.addr == addr,
            Identity::Cell { name, .. } => m.role != "proxy" && &m.name == name,
        });
        match (known, self) {
            (Some(m), id) => {
                m.admin = Some(admin.to_string());
                if let Identity::Cell { store, .. } = id {
                    m.store = store;
                }
            }
            (None, Identity::Cell { name, addr, store }) => members.push(MemberInfo {
                role: if name == "meta" { "meta" } else { "cell" }.into(),
                name,
                addr: addr.unwrap_or_else(|| "-".into()),
                admin: Some(admin.to_string()),
                store,
            }),
            // A proxy the load did not go through: its endpoint's row stays unnamed.
            (None, Identity::Proxy { .. }) => {}
        }
    }
}

/// The peers and their channels; in cells mode, the map read from the meta cell routes
/// each file to its cell.
async fn topology(cfg: &Config, files: &Files) -> anyhow::Result<Topology> {
    match &cfg.target {
        Target::Proxies(addrs) => {
            // C channels in all, spread over the proxies (at least one each).
            let per = (cfg.connections as usize).div_ceil(addrs.len()).max(1);
            let mut peers = Vec::new();
            for (k, addr) in addrs.iter().enumerate() {
                peers.push(Peer {
                    name: format!("p{}", k + 1),
                    addr: addr.clone(),
                    channels: channels(addr, per).await?,
                });
            }
            Ok(Topology::proxies(peers))
        }
        Target::Cells(meta) => {
            warren_client::locate(std::slice::from_ref(meta), Duration::from_secs(3))
                .await
                .with_context(|| format!("the meta cell at {meta} does not answer"))?;
            let watcher = MapWatcher::start(vec![meta.clone()], "loadtest");
            let map = watcher.wait_for(1, Duration::from_secs(10)).await;
            watcher.close().await;
            let Some(map) = map else {
                bail!(
                    "no partition map from the meta cell at {meta} within 10 s (is it a meta \
                     cell of a partitioned deployment, e.g. warren dev's meta: line?)"
                );
            };
            // C channels to every cell: every client talks to every cell.
            let n = cfg.connections as usize;
            let mut peers = vec![Peer {
                name: "meta".into(),
                addr: meta.clone(),
                channels: channels(meta, n).await?,
            }];
            let mut index = HashMap::new();
            for (name, replicas) in map.cells() {
                let Some(addr) = replicas.first() else {
                    bail!("the map gives cell {name} no address");
                };
                index.insert(name.to_string(), peers.len());
                peers.push(Peer {
                    name: name.to_string(),
                    addr: addr.clone(),
                    channels: channels(addr, n).await?,
                });
            }
            let mut file_peer = Vec::new();
            for i in 0..cfg.files {
                let path = format!("/ls/{}{}", map.deployment(), files.path(i));
                let peer = match map.route(&path, false)? {
                    Route::Cell { cell, .. } => index.get(cell).copied(),
                    Route::Meta => Some(0),
                };
                file_peer.push(peer.with_context(|| {
                    format!("the map routes {path} to a cell it does not list")
                })?);
            }
            Ok(Topology {
                peers,
                direct: true,
                file_peer,
                ring: None,
            })
        }
    }
}

/// `n` connections to `addr` (each an [`H2Channel`]: the load generator's own calls cost
/// less on them than on tonic `Channel`s).
async fn channels(
    addr: &str,
    n: usize,
) -> anyhow::Result<Vec<(WarrenClient<H2Channel>, H2Channel)>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let c = H2Channel::connect(addr).await?;
        let origin = c.origin();
        out.push((WarrenClient::with_origin(c.clone(), origin), c));
    }
    Ok(out)
}

/// A gRPC channel to `addr` (`HOST:PORT`) with `TCP_NODELAY`, connected within 5 s, over
/// TLS if the process has an identity installed; the error names the address.
pub async fn channel(addr: &str) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    warren_client::transport::connect_endpoint(&endpoint)
        .await
        .with_context(|| format!("connecting to {addr}"))
}

/// Creates `/loadtest`, its directories and its files (if absent) with a library session,
/// [`SETUP_CONCURRENCY`] at a time.
async fn setup_files(
    options: ClientOptions,
    files: Arc<Files>,
    extra: &[String],
) -> anyhow::Result<()> {
    let s = Arc::new(
        Session::connect_with(options)
            .await
            .context("connecting the set-up session")?,
    );
    let result = async {
        let create = |s: Arc<Session>, path: String, dir: bool| async move {
            let opts = if dir {
                OpenOptions::new().read().create_dir()
            } else {
                OpenOptions::new().read().create_file(Vec::new())
            };
            let (h, _) = s
                .open(&path, opts)
                .await
                .with_context(|| format!("creating {path}"))?;
            h.close().await;
            Ok::<_, anyhow::Error>(())
        };
        create(s.clone(), "/loadtest".to_string(), true).await?;
        let dirs: Vec<String> = files.dir_paths().collect();
        let paths = (0..files.len())
            .map(|i| (files.path(i), false))
            .chain(extra.iter().map(|p| (p.clone(), false)));
        // The directories first: their files go in them.
        for batch in [
            dirs.into_iter().map(|d| (d, true)).collect::<Vec<_>>(),
            paths.collect(),
        ] {
            let mut tasks = tokio::task::JoinSet::new();
            for (path, dir) in batch {
                if tasks.len() >= SETUP_CONCURRENCY {
                    if let Some(done) = tasks.join_next().await {
                        done.context("a set-up task")??;
                    }
                }
                tasks.spawn(create(s.clone(), path, dir));
            }
            while let Some(done) = tasks.join_next().await {
                done.context("a set-up task")??;
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Ok(s) = Arc::try_unwrap(s) {
        let _ = s.close().await;
    }
    result
}

/// What `--cleanup` did ([`cleanup`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Nodes removed: files, directories, and `/loadtest` itself.
    pub removed: u64,
    /// Directories left because they still hold nodes this run's layout does not name
    /// (an earlier run's with more `--files` or other `--dirs`).
    pub left: Vec<String>,
}

/// `--cleanup`: removes the nodes of `cfg`'s layout under `/loadtest/` through a fresh
/// library session: its files (and the locks held through a reshard), then its
/// directories, then `/loadtest` itself, each when it exists. A directory that still holds
/// other nodes is left, and named. Call it once the run has ended (its sessions closed).
pub async fn cleanup(cfg: &Config) -> anyhow::Result<Cleanup> {
    let files = Files::with_dirs(cfg.files, cfg.zipf, cfg.dirs)?;
    let options = match &cfg.target {
        Target::Proxies(a) => ClientOptions::proxies(a.iter().map(String::as_str)),
        Target::Cells(meta) => ClientOptions::meta([meta.as_str()]),
    };
    let s = Arc::new(
        Session::connect_with(options)
            .await
            .context("connecting the clean-up session")?,
    );
    // Some(true): removed; Some(false): not there; None: a directory not empty.
    let remove = |s: Arc<Session>, path: String| async move {
        let h = match s.open(&path, OpenOptions::new().write()).await {
            Ok((h, _)) => h,
            Err(e) if e.code() == Some(ErrorCode::NotFound) => return Ok((path, Some(false))),
            Err(e) => return Err(anyhow::anyhow!(e).context(format!("opening {path}"))),
        };
        let result = h.delete().await;
        h.close().await;
        match result {
            Ok(()) => Ok((path, Some(true))),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok((path, Some(false))),
            Err(e) if e.code() == Some(ErrorCode::NotEmpty) => Ok((path, None)),
            Err(e) => Err(anyhow::anyhow!(e).context(format!("removing {path}"))),
        }
    };
    let held = match cfg.reshard {
        Some(_) => HELD_LOCKS.min(cfg.sessions),
        None => 0,
    };
    let result = async {
        let mut out = Cleanup::default();
        for batch in [
            (0..files.len())
                .map(|i| files.path(i))
                .chain((0..held).map(|k| files.extra_path("held", k)))
                .collect::<Vec<_>>(),
            files.dir_paths().collect(),
            vec!["/loadtest".to_string()],
        ] {
            let mut tasks = tokio::task::JoinSet::new();
            let mut outcomes = Vec::new();
            for path in batch {
                if tasks.len() >= SETUP_CONCURRENCY {
                    if let Some(done) = tasks.join_next().await {
                        outcomes.push(done.context("a clean-up task")??);
                    }
                }
                tasks.spawn(remove(s.clone(), path));
            }
            while let Some(done) = tasks.join_next().await {
                outcomes.push(done.context("a clean-up task")??);
            }
            for (path, outcome) in outcomes {
                match outcome {
                    Some(true) => out.removed += 1,
                    Some(false) => {}
                    None => out.left.push(path),
                }
            }
        }
        out.left.sort();
        Ok::<_, anyhow::Error>(out)
    }
    .await;
    if let Ok(s) = Arc::try_unwrap(s) {
        let _ = s.close().await;
    }
    result
}

/// Reads each file of `acked` once through a fresh library session: its content generation
/// and the sequence number of this run's write it holds. Returns the reads and, for files
/// whose read failed, what went wrong.
async fn read_back(
    options: ClientOptions,
    files: &Files,
    acked: &BTreeMap<u64, Vec<lost::Ack>>,
    run: u64,
) -> anyhow::Result<(HashMap<u64, ReadBack>, Vec<String>)> {
    if acked.is_empty() {
        return Ok((HashMap::new(), Vec::new()));
    }
    let s = Arc::new(
        Session::connect_with(options)
            .await
            .context("connecting the read-back session")?,
    );
    let turns = Arc::new(Semaphore::new(READ_BACK_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for &file in acked.keys() {
        let (s, turns) = (s.clone(), turns.clone());
        let path = files.path(file);
        tasks.spawn(async move {
            let _turn = turns.acquire_owned().await;
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

/// Carries out the faults at their times; what happened to each.
async fn inject(
    start: Instant,
    mut faults: Vec<Fault>,
    injector: Option<Arc<dyn Injector>>,
) -> Vec<FaultRecord> {
    faults.sort_by_key(|f| f.at);
    let mut out = Vec::new();
    let Some(injector) = injector else {
        return out;
    };
    for f in faults {
        tokio::time::sleep_until(start + f.at).await;
        let result = injector.inject(f.action, &f.member).await;
        let done = start.elapsed().as_secs_f64();
        match &result {
            Ok(()) => {
                tracing::info!(action = f.action.name(), member = %f.member, "fault injected")
            }
            Err(e) => {
                tracing::warn!(action = f.action.name(), member = %f.member, "fault failed: {e:#}")
            }
        }
        out.push(FaultRecord {
            action: f.action.name().into(),
            member: f.member.clone(),
            at_s: f.at.as_secs_f64(),
            done_s: result.is_ok().then_some(done),
            error: result.err().map(|e| format!("{e:#}")),
        });
    }
    out
}

/// Runs the reshard `spec` of the run whose window is `[start, end]`: at `start +
/// spec.at`, adds a cell to `deployment`, plans the move to it, applies the plan and
/// follows the job until it ends (at most [`crate::reshard::PATIENCE_AFTER_WINDOW`] after
/// `end`), marking the move's start and end in `stats.phases`. The section's client figures
/// are filled in later ([`Phases::fill`]).
async fn reshard(
    start: Instant,
    end: Instant,
    spec: ReshardSpec,
    deployment: Arc<dyn Injector>,
    stats: Arc<Stats>,
) -> ReshardReport {
    use crate::reshard::{apply, follow, plan_add_cell, PATIENCE_AFTER_WINDOW};
    let secs = |t: Instant| (t - start).as_secs_f64();
    let mut r = ReshardReport {
        spec: spec.to_string(),
        at_s: spec.at.as_secs_f64(),
        state: "not started".into(),
        ..Default::default()
    };
    let Some(phases) = &stats.phases else {
        r.message = "no phases to record the move in".into();
        return r;
    };
    tokio::time::sleep_until(start + spec.at).await;
    let cell = match deployment.add_cell().await {
        Ok(c) => c,
        Err(e) => {
            r.message = format!("cannot start the new cell: {e:#}");
            return r;
        }
    };
    r.cell.clone_from(&cell.name);
    r.cell_addr.clone_from(&cell.addr);
    r.cell_ready_s = Some(secs(Instant::now()));
    let meta = vec![cell.meta.clone()];
    let plan = match plan_add_cell(&meta, &cell.name, std::slice::from_ref(&cell.addr)).await {
        Ok(p) => p,
        Err(e) => {
            r.message = format!("cannot plan the move to {}: {e:#}", cell.name);
            return r;
        }
    };
    r.slots_planned = plan.moves.len() as u64;
    r.planned = plan.totals;
    let t = Instant::now();
    phases.start(t);
    r.start_s = Some(secs(t));
    let job = match apply(&meta, &plan, spec.slots_per_batch).await {
        Ok(j) => j,
        Err(e) => {
            let t = Instant::now();
            phases.end(t);
            r.end_s = Some(secs(t));
            r.message = format!("{e:#}");
            return r;
        }
    };
    tracing::info!(job, slots = plan.moves.len(), cell = %cell.name, "reshard job started");
    r.job = Some(job.clone());
    match follow(&meta, &job, end + PATIENCE_AFTER_WINDOW).await {
        Ok((status, ended)) => {
            r.set_job(&status, ended);
            if ended {
                let t = Instant::now();
                phases.end(t);
                r.end_s = Some(secs(t));
                r.total_s = r.start_s.map(|s| secs(t) - s);
            } else {
                r.message = format!(
                    "the job had not ended {PATIENCE_AFTER_WINDOW:?} after the window; the run \
                     stopped following it"
                );
            }
        }
        Err(e) => {
            r.state = "unknown".into();
            r.message = format!("cannot follow job {job}: {e:#}");
        }
    }
    r
}

/// A lock held from before the window until after the move.
struct HeldLock {
    sim: Arc<Sim>,
    path: String,
    handle: Vec<u8>,
    sequencer: pb::Sequencer,
}

/// Client k (of the first [`HELD_LOCKS`]) opens `paths[k]` and acquires its lock
/// exclusively. The handle joins the client's handles (under a key no file has), so the
/// client does not claim to hold nothing.
async fn take_held_locks(
    sims: &Sims,
    paths: &[String],
    stats: &Stats,
) -> anyhow::Result<Vec<HeldLock>> {
    let holders: Vec<Arc<Sim>> = sims
        .read()
        .expect("sessions lock")
        .iter()
        .take(paths.len())
        .cloned()
        .collect();
    let mut held = Vec::new();
    for (k, (sim, path)) in holders.into_iter().zip(paths).enumerate() {
        let deadline = Instant::now() + OP_PATIENCE;
        let full = format!("/ls/{}{path}", sim.deployment);
        let (opened, _) = retrying(&sim, 0, stats, deadline, "Open", |l| {
            let mut c = l.client;
            let req = pb::OpenRequest {
                ctx: Some(l.ctx),
                path: full.clone(),
                intent: (pb::Intent::Read as u32) | (pb::Intent::Write as u32),
                ..Default::default()
            };
            async move { c.open(req).await.map(|r| r.into_inner()) }
        })
        .await
        .map_err(|(call, s)| anyhow::anyhow!("{call} {path}: {}", s.message()))?;
        let handle = opened.handle;
        sim.handles
            .lock()
            .expect("handles lock")
            .insert(u64::MAX - k as u64, handle.clone());
        let (acquired, _) = retrying(&sim, 0, stats, deadline, "TryAcquire", |l| {
            let mut c = l.client;
            let req = pb::TryAcquireRequest {
                ctx: Some(l.ctx),
                handle: handle.clone(),
                mode: pb::LockMode::Exclusive as i32,
            };
            async move { c.try_acquire(req).await.map(|r| r.into_inner()) }
        })
        .await
        .map_err(|(call, s)| anyhow::anyhow!("{call} {path}: {}", s.message()))?;
        let sequencer = acquired
            .sequencer
            .with_context(|| format!("TryAcquire {path} answered without a sequencer"))?;
        held.push(HeldLock {
            sim,
            path: path.clone(),
            handle,
            sequencer,
        });
    }
    Ok(held)
}

/// After the move: each held lock's sequencer must still be current (`CheckSequencer`)
/// and its `Release` must find it held by its holder. How many passed both, and what went
/// wrong with the others (the first 10).
async fn check_held_locks(held: &[HeldLock], stats: &Stats) -> (u64, Vec<String>) {
    let mut kept = 0;
    let mut problems = Vec::new();
    for h in held {
        let deadline = Instant::now() + OP_PATIENCE;
        let current = retrying(&h.sim, 0, stats, deadline, "CheckSequencer", |l| {
            let mut c = l.client;
            let req = pb::CheckSequencerRequest {
                ctx: Some(l.ctx),
                sequencer: Some(h.sequencer.clone()),
            };
            async move { c.check_sequencer(req).await.map(|r| r.into_inner().current) }
        })
        .await;
        let released = retrying(&h.sim, 0, stats, deadline, "Release", |l| {
            let mut c = l.client;
            let req = pb::ReleaseRequest {
                ctx: Some(l.ctx),
                handle: h.handle.clone(),
            };
            async move { c.release(req).await.map(|r| r.into_inner().was_held) }
        })
        .await;
        let problem = match (current, released) {
            (Ok((true, _)), Ok((true, _))) => None,
            (Ok((false, _)), _) => Some(format!(
                "{}: the sequencer taken before the move (generation {}) is not current",
                h.path, h.sequencer.lock_generation
            )),
            (_, Ok((false, _))) => Some(format!(
                "{}: the holder's Release found it not held",
                h.path
            )),
            (Err((call, s)), _) | (_, Err((call, s))) => Some(format!(
                "{}: {call} failed: {}: {}",
                h.path,
                code_of(&s),
                s.message()
            )),
        };
        match problem {
            None => kept += 1,
            Some(p) if problems.len() < 10 => problems.push(p),
            Some(_) => {}
        }
    }
    (kept, problems)
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
        stats.jeopardy_now.load(Ordering::Relaxed),
    ));
}

/// Creates a session at `peer` for client `id`.
async fn create(
    topo: &Topology,
    peer: usize,
    id: u64,
) -> Result<(Link, Instant, u64, String), tonic::Status> {
    let (mut client, conn) = topo.client(peer, id);
    let sent = Instant::now();
    let reply = client
        .create_session(pb::CreateSessionRequest {
            principal: String::new(),
            proxy: false,
        })
        .await?
        .into_inner();
    let ctx = pb::SessionContext {
        session_id: reply.session_id,
        secret: reply.secret,
        epoch: reply.epoch,
        ..Default::default()
    };
    Ok((
        Link {
            peer,
            client,
            conn,
            ctx,
        },
        sent,
        reply.lease_ms,
        reply.deployment,
    ))
}

/// One client: create its sessions, KeepAlive each until `stop`, then close them.
async fn session_task(
    id: u64,
    topo: Arc<Topology>,
    stats: Arc<Stats>,
    sims: Sims,
    permit: tokio::sync::OwnedSemaphorePermit,
    stop: watch::Receiver<bool>,
    closers: Arc<Semaphore>,
) {
    let starts: Vec<usize> = if topo.direct {
        (0..topo.peers.len()).collect()
    } else {
        vec![id as usize % topo.peers.len()]
    };
    let mut links = Vec::new();
    let mut leases = Vec::new();
    let mut deployment = String::new();
    for peer in starts {
        match create(&topo, peer, id).await {
            Ok((link, sent, lease_ms, d)) => {
                links.push(link);
                leases.push(Lease::new(
                    sent,
                    Duration::from_millis(lease_ms),
                    ClientOptions::DEFAULT_CLOCK_DRIFT,
                    ClientOptions::DEFAULT_GRACE_PERIOD,
                ));
                deployment = d;
            }
            Err(status) => {
                drop(permit);
                stats.create_errors.fetch_add(1, Ordering::Relaxed);
                stats.error("CreateSession", &status);
                if let Ok(_turn) = closers.acquire().await {
                    close_links(&links, &stats, false).await;
                }
                return;
            }
        }
    }
    drop(permit);
    let sim = Arc::new(Sim {
        id,
        legs: links.into_iter().map(RwLock::new).collect(),
        deployment,
        handles: Mutex::new(HashMap::new()),
        jeopardy_legs: AtomicU64::new(0),
        expired: AtomicBool::new(false),
    });
    sims.write().expect("sessions lock").push(sim.clone());
    stats.created.fetch_add(1, Ordering::Relaxed);

    // The legs KeepAlive until this client's turn to close comes (as a real client's
    // session lives until it is closed), or until the client expires.
    let (own_stop, own_stop_rx) = watch::channel(false);
    let mut legs = tokio::task::JoinSet::new();
    for (leg, lease) in leases.into_iter().enumerate() {
        legs.spawn(keep_alive(
            id,
            leg,
            lease,
            sim.clone(),
            topo.clone(),
            stats.clone(),
            own_stop_rx.clone(),
        ));
    }
    let mut stop = stop;
    let stopped = tokio::select! {
        r = stop.wait_for(|s| *s) => r.is_ok(),
        _ = async { while legs.join_next().await.is_some() {} } => false,
    };
    let turn = if stopped {
        if let Some(&(start, ramp, sessions)) = stats.close_pace.get() {
            let rank = stats.close_rank.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep_until(start + ramp.mul_f64(rank as f64 / sessions as f64)).await;
        }
        closers.acquire().await.ok()
    } else {
        None
    };
    let _ = own_stop.send(true);
    while legs.join_next().await.is_some() {}
    if turn.is_some() && !sim.expired.load(Ordering::Relaxed) {
        let links: Vec<Link> = (0..sim.legs.len()).map(|l| sim.link(l)).collect();
        close_links(&links, &stats, true).await;
    }
    drop(turn);
    stats.ended.fetch_add(1, Ordering::Relaxed);
}

/// Closes sessions (the caller holds a turn of `closers`); counts the client closed when
/// every one closed and `count` is set.
async fn close_links(links: &[Link], stats: &Stats, count: bool) {
    let mut all = true;
    for l in links {
        let r = l
            .client
            .clone()
            .close_session(pb::CloseSessionRequest {
                ctx: Some(l.ctx.clone()),
                expired: false,
            })
            .await;
        if let Err(status) = r {
            all = false;
            stats.error("CloseSession", &status);
        }
    }
    if all && count {
        stats.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether a failed call may succeed if made again: the server's retryable codes (no
/// master yet, a failover under way, a stale epoch, overload) and transport failures (the
/// server went away, as the client library judges it:
/// [`warren_client::transport::is_unreachable`]).
fn retryable(status: &tonic::Status) -> bool {
    match WarrenError::from_status(status) {
        // OUTCOME_UNKNOWN (a proxy lost the call after sending it): it may succeed again;
        // the load's writes are blind, so sending one twice is harmless.
        Some(e) => {
            (e.is_retryable() && e.code != ErrorCode::WrongCell)
                || e.code == ErrorCode::OutcomeUnknown
        }
        None => is_unreachable(status),
    }
}

/// The next proxy to try in a search for one, walking `order` (a session's
/// [`Topology::failover_order`]) from `cursor`, as the client library's search does: each
/// round starts from the session's preferred proxy and tries every proxy in its order.
/// Returns the peer and whether this try ends a round (the next one starts over, after a
/// backoff).
fn next_proxy(order: &[usize], cursor: &mut usize) -> (usize, bool) {
    let peer = order[*cursor % order.len()];
    *cursor += 1;
    let round_done = *cursor >= order.len();
    if round_done {
        *cursor = 0;
    }
    (peer, round_done)
}

/// One leg's KeepAlive loop, until `stop` or the session's end. The session's [`Lease`]
/// says when it is in jeopardy (its local lease ran out without a reply) and when it
/// expired (the grace period ran out too). Through proxies, a transport failure moves the
/// session to the next proxy in the library's order for it ([`next_proxy`]), where the
/// KeepAlive is its claim.
async fn keep_alive(
    id: u64,
    leg: usize,
    mut lease: Lease,
    sim: Arc<Sim>,
    topo: Arc<Topology>,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let first = sim.link(leg);
    let mut acks = AckWatermark::new(first.ctx.epoch);
    let order = topo.failover_order(&first.ctx.session_id);
    // Where this leg's search for a live proxy is in `order` (0: not searching).
    let mut cursor = 0usize;
    // Each leg's retries are spread apart, so failures don't resynchronise the fleet.
    let mut backoff = Backoff::new(id.wrapping_mul(7919) ^ (leg as u64).wrapping_mul(104_729));
    // Entering jeopardy (`on`), or leaving it: `safe` when a KeepAlive reply ended it.
    let jeopardy = |on: bool, safe: bool| {
        if on {
            if sim.jeopardy_legs.fetch_add(1, Ordering::Relaxed) == 0 {
                stats.jeopardy.fetch_add(1, Ordering::Relaxed);
                if stats.in_window.load(Ordering::Relaxed) {
                    stats.jeopardy_in_window.fetch_add(1, Ordering::Relaxed);
                } else if stats.ramping.load(Ordering::Relaxed) {
                    stats.jeopardy_in_ramp.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(p) = &stats.phases {
                    p.jeopardy();
                }
                stats.jeopardy_now.fetch_add(1, Ordering::Relaxed);
            }
        } else if sim.jeopardy_legs.fetch_sub(1, Ordering::Relaxed) == 1 {
            stats.jeopardy_now.fetch_sub(1, Ordering::Relaxed);
            if safe && !sim.expired.load(Ordering::Relaxed) {
                stats.safe.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    // The client expires once, whichever of its legs finds out first.
    let expire = || {
        if !sim.expired.swap(true, Ordering::Relaxed) {
            stats.expired.fetch_add(1, Ordering::Relaxed);
            if let Some(p) = &stats.phases {
                p.expired();
            }
        }
    };
    // Whether this leg counts in jeopardy now.
    let mut in_jeopardy = false;
    // Applies the lease's deadlines; whether the session is over.
    let passed = |p: Passed, in_jeopardy: &mut bool| {
        if p.entered_jeopardy {
            *in_jeopardy = true;
            jeopardy(true, false);
        }
        if p.expired {
            expire();
        }
        p.expired
    };
    let deadline = |lease: &Lease| lease.next_deadline().unwrap_or_else(Instant::now);
    loop {
        if *stop.borrow() || sim.expired.load(Ordering::Relaxed) {
            break;
        }
        if passed(lease.check(Instant::now()), &mut in_jeopardy) {
            break;
        }
        // The link is a copy, moved into the call (its context is the request's).
        let Link {
            peer,
            mut client,
            ctx,
            ..
        } = sim.link(leg);
        // A new epoch (a failover, or an adoption by another proxy) numbers its events
        // afresh.
        acks.adopt_epoch(ctx.epoch);
        let sent = Instant::now();
        let call = client.keep_alive(pb::KeepAliveRequest {
            ctx: Some(ctx),
            ack_seq: acks.ack_seq(),
            // As the client library does (docs/protocol.md): in jeopardy, ask for an
            // answer at once.
            jeopardy: in_jeopardy,
        });
        tokio::pin!(call);
        let result = loop {
            tokio::select! {
                r = &mut call => break Some(r),
                _ = tokio::time::sleep_until(deadline(&lease)) => {
                    if passed(lease.check(Instant::now()), &mut in_jeopardy) {
                        break None;
                    }
                }
                _ = stop.changed() => break None,
            }
        };
        let Some(result) = result else { break };
        match result {
            Ok(r) => {
                let r = r.into_inner();
                stats.keepalives.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                if passed(lease.check(now), &mut in_jeopardy) {
                    break;
                }
                if lease.renewed(now, sent, Duration::from_millis(r.lease_ms)) {
                    in_jeopardy = false;
                    jeopardy(false, true);
                }
                backoff.succeeded();
                cursor = 0;
                sim.new_epoch(leg, r.epoch);
                acks.adopt_epoch(r.epoch);
                acks.take_fresh(r.epoch, &r.events);
            }
            Err(status) => {
                stats.keepalive_errors.fetch_add(1, Ordering::Relaxed);
                stats.error("KeepAlive", &status);
                if is_code(&status, ErrorCode::SessionExpired) {
                    expire();
                    break;
                }
                if sim.stale_epoch(leg, &status) {
                    // A failover or an adoption: on at once with the new epoch.
                    continue;
                }
                backoff.failed();
                if order.len() > 1 && is_unreachable(&status) {
                    // The proxy is gone: on to the next in the session's order, at once,
                    // until a round of the order is done.
                    let (next, round_done) = next_proxy(&order, &mut cursor);
                    let mut l = sim.legs[leg].write().expect("link lock");
                    if l.peer == peer && next != peer {
                        l.peer = next;
                        (l.client, l.conn) = topo.client(next, id);
                        stats.moved.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(l);
                    if !round_done {
                        continue;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.delay(lease.local().granted())) => {}
                    _ = tokio::time::sleep_until(deadline(&lease)) => {}
                    _ = stop.changed() => break,
                }
            }
        }
    }
    if in_jeopardy {
        jeopardy(false, false);
    }
}

/// Open-loop arrivals of `op`: a Poisson process from `start` to `end`. Each arrival starts
/// at its intended time whatever the earlier ones are doing. The operations in flight are
/// driven by this task (not a task each: a spawn per operation cost the load generator
/// more than the operation's call); after `end` it waits for them until `drain_until`, and
/// drops those still going then (they stay counted in `stats.in_flight`).
async fn arrive(
    op: Op,
    arrivals: Arrivals,
    (start, end, drain_until): (Instant, Instant, Instant),
    (stats, sims, topo): (Arc<Stats>, Sims, Arc<Topology>),
    files: Arc<Files>,
    seed: Option<u64>,
) {
    let mut rng = seed.map_or_else(StdRng::from_entropy, StdRng::seed_from_u64);
    let mut ops = FuturesUnordered::new();
    let mut t = start;
    loop {
        t += arrivals.gap(&mut rng);
        if t >= end {
            break;
        }
        stats.offered[op as usize].fetch_add(1, Ordering::Relaxed);
        // Arrivals already due (the loop fell behind the clock, or several fall in one
        // timer tick) go at once, without a timer each.
        if t > Instant::now() {
            let due = tokio::time::sleep_until(t);
            tokio::pin!(due);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut due => break,
                    Some(()) = ops.next(), if !ops.is_empty() => {}
                }
            }
        }
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
        ops.push(timed_op(op, sim, (file, &files), &topo, &stats, t));
    }
    let _ =
        tokio::time::timeout_at(drain_until, async { while ops.next().await.is_some() {} }).await;
}

/// One arrival of [`arrive`]: the operation, its latency from its intended time `t`
/// recorded (or its error counted), and `stats.in_flight` decremented at its end.
async fn timed_op(
    op: Op,
    sim: Arc<Sim>,
    (file, files): (u64, &Files),
    topo: &Topology,
    stats: &Stats,
    t: Instant,
) {
    let result = one_op(op, &sim, topo.leg_of(file), (file, files), stats, t).await;
    let done = Instant::now();
    let us = u64::try_from((done - t).as_micros().max(1)).unwrap_or(u64::MAX);
    stats.longest_wait_us.fetch_max(us, Ordering::Relaxed);
    let i = op as usize;
    if let Some(p) = &stats.phases {
        p.op(i, t, done, result.is_ok().then_some(us));
    }
    match result {
        Ok(()) => {
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
            stats.error_since(&format!("{}/{call}", op.name()), &status, t);
            if is_code(&status, ErrorCode::HandleInvalid) {
                sim.handles.lock().expect("handles lock").remove(&file);
            }
        }
    }
    stats.in_flight.fetch_sub(1, Ordering::Relaxed);
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
    let mut last_offered = [0u64; 3];
    let (mut last_retries, mut last_all_errors) = (0u64, 0u64);
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
        let mut op_errors = 0;
        for (i, op) in [Op::Read, Op::Write, Op::Lock].into_iter().enumerate() {
            let errors = stats.op_errors[i].load(Ordering::Relaxed);
            let offered = stats.offered[i].load(Ordering::Relaxed);
            let mut h = stats.interval_hist[i].lock().expect("histogram lock");
            let mut interval = IntervalOp::new(&h, errors.saturating_sub(last_errors[i]), dt);
            interval.offered = offered.saturating_sub(last_offered[i]);
            op_errors += interval.errors;
            ops.insert(op.name().to_string(), interval);
            h.reset();
            last_errors[i] = errors;
            last_offered[i] = offered;
        }
        let retries = stats.retries.load(Ordering::Relaxed);
        let all_errors = stats.total_errors();
        // Every failure is in the error map, an operation's also in its kind's count: the
        // rest are the session calls'.
        let session_errors = all_errors
            .saturating_sub(last_all_errors)
            .saturating_sub(op_errors);
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
                current: live.saturating_sub(jeopardy),
                jeopardy,
                expired: stats.expired.load(Ordering::Relaxed),
            },
            retries: retries.saturating_sub(last_retries),
            session_errors,
        });
        last_retries = retries;
        last_all_errors = all_errors;
        if done {
            break;
        }
    }
    timeline
}

type OpError = (&'static str, tonic::Status);

/// Makes one call on `leg`'s session (as it is at each attempt: it may move or gain an
/// epoch meanwhile) until it succeeds, fails for good, or the operation has waited until
/// `deadline`.
async fn retrying<T, F, Fut>(
    sim: &Sim,
    leg: usize,
    stats: &Stats,
    deadline: Instant,
    call: &'static str,
    mut f: F,
) -> Result<(T, bool), OpError>
where
    F: FnMut(Link) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut pause = Duration::from_millis(20);
    let mut retried = false;
    loop {
        match f(sim.link(leg)).await {
            Ok(v) => return Ok((v, retried)),
            Err(s)
                if retryable(&s)
                    && !sim.expired.load(Ordering::Relaxed)
                    && Instant::now() + pause < deadline =>
            {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                retried = true;
                if sim.stale_epoch(leg, &s) {
                    continue;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(s) => return Err((call, s)),
        }
    }
}

/// One operation on `file` by `sim` at its session `leg`: a read (GetContentsAndStat, or
/// Open with read-at-open on the client's first use of the file), a write (SetContents),
/// or a lock (TryAcquire exclusive, then Release when it was acquired; LOCK_HELD counts as
/// busy, not an error). `intended` is when it was meant to start.
///
/// A read on a file the client has open is the common case and stays inline; the rest
/// (an Open, a write, a lock) is boxed, so that every operation's task does not carry, and
/// move, the largest one's state.
async fn one_op(
    op: Op,
    sim: &Sim,
    leg: usize,
    (file, files): (u64, &Files),
    stats: &Stats,
    intended: Instant,
) -> Result<(), OpError> {
    let deadline = intended + OP_PATIENCE;
    let cached = sim
        .handles
        .lock()
        .expect("handles lock")
        .get(&file)
        .cloned();
    match (op, cached) {
        (Op::Read, Some(handle)) => {
            // Straight on the connection, not through tonic's client: the same call on
            // the wire, at a fraction of the load generator's CPU (H2Channel::unary).
            retrying(sim, leg, stats, deadline, "GetContentsAndStat", |l| {
                let req = pb::GetContentsAndStatRequest {
                    ctx: Some(l.ctx),
                    handle: handle.clone(),
                };
                async move {
                    l.conn
                        .unary::<_, pb::GetContentsAndStatResponse>(
                            "/warren.v1.Warren/GetContentsAndStat",
                            &req,
                        )
                        .await
                }
            })
            .await?;
            Ok(())
        }
        (op, cached) => {
            Box::pin(other_op(
                op,
                sim,
                leg,
                (file, &files.path(file)),
                stats,
                deadline,
                cached,
            ))
            .await
        }
    }
}

/// [`one_op`] for anything but a read on an open file: opens the file first if `cached`
/// holds no handle for it.
async fn other_op(
    op: Op,
    sim: &Sim,
    leg: usize,
    (file, file_path): (u64, &str),
    stats: &Stats,
    deadline: Instant,
    cached: Option<Vec<u8>>,
) -> Result<(), OpError> {
    let handle = match cached {
        Some(h) => h,
        None => {
            let path = format!("/ls/{}{}", sim.deployment, file_path);
            let (r, _) = retrying(sim, leg, stats, deadline, "Open", |l| {
                let mut c = l.client;
                let req = pb::OpenRequest {
                    ctx: Some(l.ctx),
                    path: path.clone(),
                    intent: (pb::Intent::Read as u32) | (pb::Intent::Write as u32),
                    read: op == Op::Read,
                    ..Default::default()
                };
                async move { c.open(req).await.map(|r| r.into_inner()) }
            })
            .await?;
            stats.opens.fetch_add(1, Ordering::Relaxed);
            // Two first uses of a file by one client may race: keep the first handle and
            // close the other (a library client shares one handle per open too).
            let (handle, spare) = {
                let mut handles = sim.handles.lock().expect("handles lock");
                match handles.entry(file) {
                    std::collections::hash_map::Entry::Occupied(e) => {
                        (e.get().clone(), Some(r.handle.clone()))
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(r.handle.clone());
                        (r.handle.clone(), None)
                    }
                }
            };
            if let Some(spare) = spare {
                let l = sim.link(leg);
                let mut c = l.client;
                let _ = c
                    .close(pb::CloseRequest {
                        ctx: Some(l.ctx),
                        handle: spare,
                    })
                    .await;
            }
            if op == Op::Read {
                // Read at open: the contents came with the handle.
                return Ok(());
            }
            handle
        }
    };
    match op {
        // Read at open above; a read on an open file is `one_op`'s.
        Op::Read => {}
        Op::Write => {
            let (seq, contents) = stats.writes.next_body(file);
            let (r, _) = retrying(sim, leg, stats, deadline, "SetContents", |l| {
                let mut c = l.client;
                let req = pb::SetContentsRequest {
                    ctx: Some(l.ctx),
                    handle: handle.clone(),
                    contents: contents.clone(),
                    ..Default::default()
                };
                async move { c.set_contents(req).await.map(|r| r.into_inner()) }
            })
            .await?;
            // Acknowledged. The cells always send the stat; a reply without one is recorded
            // at generation 0, which only a file still at generation 0 can contradict.
            let generation = r.stat.map_or(0, |st| st.content_generation);
            stats.writes.record(file, seq, generation);
        }
        Op::Lock => {
            let attempts = std::sync::atomic::AtomicU32::new(0);
            let acquire = |l: Link| {
                attempts.fetch_add(1, Ordering::Relaxed);
                let mut c = l.client;
                let req = pb::TryAcquireRequest {
                    ctx: Some(l.ctx),
                    handle: handle.clone(),
                    mode: pb::LockMode::Exclusive as i32,
                };
                async move { c.try_acquire(req).await }
            };
            let release = |l: Link| {
                let mut c = l.client;
                let req = pb::ReleaseRequest {
                    ctx: Some(l.ctx),
                    handle: handle.clone(),
                };
                async move { c.release(req).await }
            };
            match retrying(sim, leg, stats, deadline, "TryAcquire", acquire).await {
                Ok((r, _)) => {
                    let generation = r.into_inner().sequencer.map_or(0, |s| s.lock_generation);
                    let verdict = stats.locks.acquired(file, sim.id, generation);
                    if verdict != Verdict::Fine {
                        tracing::warn!(file, client = sim.id, ?verdict, "the lock check failed");
                        if let Some(p) = &stats.phases {
                            p.lock_finding(matches!(verdict, Verdict::Stale { .. }));
                        }
                    }
                    // Out of the ledger before the Release is sent: the next holder can
                    // only come after it.
                    stats.locks.releasing(file, sim.id);
                    retrying(sim, leg, stats, deadline, "Release", release).await?;
                }
                Err((_, s)) if is_code(&s, ErrorCode::LockHeld) => {
                    stats.busy.fetch_add(1, Ordering::Relaxed);
                    if attempts.load(Ordering::Relaxed) > 1 {
                        // An earlier attempt's reply was lost, so the holder may be this
                        // client: let it go (a Release of a lock another client holds is
                        // refused, harmlessly).
                        let _ = release(sim.link(leg)).await;
                    }
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Parses a duration like `3s`, `500ms`, `2m` or `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    warren_config::parse_duration(s)
        .map_err(|e| format!("`{s}`: {} (e.g. 30s, 500ms, 2m)", e.reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Action;

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

    fn config() -> Config {
        Config {
            target: Target::Proxies(vec!["127.0.0.1:1".into()]),
            sessions: 1,
            connections: 1,
            duration: Duration::from_secs(10),
            ramp: Duration::ZERO,
            read_rate: 1.0,
            write_rate: 0.0,
            lock_rate: 0.0,
            files: 1,
            dirs: 32,
            zipf: 1.0,
            metrics: vec![],
            progress: false,
            faults: vec![],
            seed: None,
            reshard: None,
        }
    }

    #[tokio::test]
    async fn faults_need_an_injector_and_a_time_in_the_window() {
        let mut cfg = config();
        cfg.faults = vec![Fault::parse(Action::Kill, "proxy@3s").unwrap()];
        let err = run(cfg.clone()).await.unwrap_err().to_string();
        assert!(err.contains("--deploy"), "{err}");

        struct Never;
        impl Injector for Never {
            fn inject<'a>(
                &'a self,
                _: Action,
                _: &'a str,
            ) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>
            {
                Box::pin(async { anyhow::bail!("not called") })
            }
        }
        cfg.faults = vec![Fault::parse(Action::Kill, "proxy@10s").unwrap()];
        let err = run_with(cfg, Some(Arc::new(Never)))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not inside the measured window"), "{err}");
    }

    /// The load tester's failover order for a session is the client library's ring order
    /// for it ([`warren_client::proxy_order`]), and its search walks that order from the
    /// preferred proxy, a round at a time — not `(peer + 1) % n`.
    #[test]
    fn failover_follows_the_librarys_ring_order() {
        let addrs: Vec<String> = (1..=5).map(|i| format!("127.0.0.1:{}", 7100 + i)).collect();
        let topo = Topology::proxies(
            addrs
                .iter()
                .enumerate()
                .map(|(k, a)| Peer {
                    name: format!("p{}", k + 1),
                    addr: a.clone(),
                    channels: Vec::new(),
                })
                .collect(),
        );
        let mut differs_from_next_index = false;
        for i in 0u64..200 {
            let mut session = [0u8; 16];
            session[..8].copy_from_slice(&warren_client::lease::splitmix64(i).to_le_bytes());
            let order = topo.failover_order(&session);
            let named: Vec<String> = order.iter().map(|&p| addrs[p].clone()).collect();
            assert_eq!(named, warren_client::proxy_order(&addrs, &session));

            // A search visits that order from the first, then starts a new round.
            let mut cursor = 0;
            let walked: Vec<(usize, bool)> =
                (0..6).map(|_| next_proxy(&order, &mut cursor)).collect();
            let expected: Vec<(usize, bool)> = order
                .iter()
                .enumerate()
                .map(|(k, &p)| (p, k == order.len() - 1))
                .chain([(order[0], false)])
                .collect();
            assert_eq!(walked, expected);
            differs_from_next_index |= order[1] != (order[0] + 1) % addrs.len();
        }
        assert!(
            differs_from_next_index,
            "the ring order is not the list order"
        );
        // Direct to the cells there is no proxy to move to.
        let direct = Topology {
            peers: Vec::new(),
            direct: true,
            file_peer: Vec::new(),
            ring: None,
        };
        assert!(direct.failover_order(b"0123456789abcdef").is_empty());
    }

    /// `/status` pages as a cell and a proxy serve them (trimmed): the member table names
    /// the endpoints by them.
    #[test]
    fn admin_status_pages_name_the_members() {
        let meta = r#"{"name":"meta","epoch":1,"role":"master","master":"127.0.0.1:27300","store":"embedded"}"#;
        let c1 = r#"{"name":"c1","role":"standby","master":"127.0.0.1:27301"}"#;
        let proxy = r#"{"address":"127.0.0.1:27401","map_cells":["c1"],"id":"127.0.0.1:27401"}"#;
        assert_eq!(
            Identity::from_status(meta),
            Some(Identity::Cell {
                name: "meta".into(),
                addr: Some("127.0.0.1:27300".into()),
                store: Some("embedded".into()),
            })
        );
        // A standby's master is another replica: no address of its own.
        assert_eq!(
            Identity::from_status(c1),
            Some(Identity::Cell {
                name: "c1".into(),
                addr: None,
                store: None,
            })
        );
        assert_eq!(
            Identity::from_status(proxy),
            Some(Identity::Proxy {
                addr: "127.0.0.1:27401".into()
            })
        );
        assert_eq!(Identity::from_status("not json"), None);
        assert_eq!(Identity::from_status(r#"{"name":""}"#), None);
        // Through the proxy: p1 is known by its address and gets its admin; the cells are
        // added by name.
        let mut members = vec![MemberInfo {
            name: "p1".into(),
            role: "proxy".into(),
            addr: "127.0.0.1:27401".into(),
            admin: None,
            store: None,
        }];
        for (page, admin) in [(proxy, "a:1"), (meta, "a:2"), (c1, "a:3")] {
            Identity::from_status(page)
                .unwrap()
                .name_member(&mut members, admin);
        }
        assert_eq!(members[1].store.as_deref(), Some("embedded"));
        let rows: Vec<(&str, &str, &str, Option<&str>)> = members
            .iter()
            .map(|m| {
                (
                    m.name.as_str(),
                    m.role.as_str(),
                    m.addr.as_str(),
                    m.admin.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("p1", "proxy", "127.0.0.1:27401", Some("a:1")),
                ("meta", "meta", "127.0.0.1:27300", Some("a:2")),
                ("c1", "cell", "-", Some("a:3")),
            ]
        );
        // Direct to the cells, the map named c1 already: it gets its admin, nothing added.
        let mut members = vec![MemberInfo {
            name: "c1".into(),
            role: "cell".into(),
            addr: "127.0.0.1:27301".into(),
            admin: None,
            store: None,
        }];
        Identity::from_status(c1)
            .unwrap()
            .name_member(&mut members, "a:3");
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].admin.as_deref(), Some("a:3"));
    }

    #[test]
    fn what_is_retried() {
        assert!(retryable(&WarrenError::failover_in_progress().into()));
        assert!(retryable(&tonic::Status::unavailable("connection refused")));
        assert!(is_unreachable(&tonic::Status::unavailable("gone")));
        let wrong: tonic::Status = WarrenError::lock_held("held").into();
        assert!(!retryable(&wrong));
        assert!(!is_unreachable(&wrong));
        assert!(!retryable(&tonic::Status::invalid_argument("bad")));
        // A GOAWAY, as tonic reports it.
        assert!(is_unreachable(&tonic::Status::internal(
            "h2 protocol error: http2 error: connection error received: not a result of an error"
        )));
        assert!(!is_unreachable(&tonic::Status::internal("something else")));
    }
}
