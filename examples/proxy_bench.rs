//! The proxy benchmark (issue 5): how well one `warren proxy` absorbs client KeepAlives
//! (SPEC §6, §11, §13), what an idle client session costs it in memory, and what the
//! proxy adds to read and write latency compared with talking to the cell directly.
//!
//! It launches real processes from the release binary (`target/release/warren`, found
//! next to this example or given with `--bin`): one cell on an embedded store in a
//! temporary directory and one proxy in front of it, each with its own admin endpoint.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example proxy_bench -- \
//!     [--sessions-steps 1000,5000,10000,20000] [--connections 64] [--window 15s] \
//!     [--ramp 11s] [--create-concurrency 500] [--ops 2000] [--latency-with-sessions]
//! ```
//!
//! **Phase 1, KeepAlive absorption.** Client sessions are opened *through the proxy* in
//! steps, multiplexed round-robin over `--connections` gRPC channels. Each speaks the raw
//! protocol (`CreateSession`, then `KeepAlive{ctx, ack_seq}` in a loop, acknowledging the
//! highest event seq it saw) with the proxy's default 12 s client lease. Each step's new
//! sessions are created evenly over `--ramp` (default 11 s, about one KeepAlive period),
//! at most `--create-concurrency` at once, so their KeepAlives stay spread over the
//! period instead of all falling due together. Once a step is ramped, the bench scrapes
//! the cell's and the proxy's `/metrics` at the start and the end of `--window`
//! (≥ 13 s, so every session sends at least one KeepAlive in it) and reports the
//! KeepAlive rates at the proxy and at the cell, their ratio (the *reduction factor*),
//! the cell's session count, the processes' CPU use and the proxy's RSS. A session is
//! counted in **jeopardy** when a KeepAlive reply arrives after its local lease (send
//! time of the KeepAlive that granted it + lease / 1.01) had already ended.
//!
//! **Phase 2, latency.** The idle sessions are closed (unless `--latency-with-sessions`),
//! then three library sessions (`warren_client::Session`) talk to the cell directly and
//! three through the proxy: a *writer* and a *reader* with the client cache on, and one
//! with it off (so every read reaches the server: through the proxy that read is a hit in
//! the proxy's shared cache). Per round and route: one uncached read; one write by the
//! writer to a file the reader caches (it must invalidate the reader's copy, and through
//! the proxy the proxy's) followed by the reader's read of it (a miss everywhere); and one
//! write to a file nobody reads. Rounds alternate between the routes, `--ops` measured
//! rounds after 100 warm-up ones; the bench prints p50/p90/p99 direct, through the proxy,
//! and the ratio (HDR histograms, µs resolution).
//!
//! The summary goes to stdout as markdown; progress goes to stderr. Both processes are
//! killed at the end, on error, on panic and on Ctrl-C. Traffic stays on 127.0.0.1.

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{watch, Semaphore};
use tonic::transport::Channel;
use warren_client::{ClientOptions, Handle, OpenOptions, Session};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;

/// ρ, the clock drift the client library assumes (SPEC §12).
const RHO: f64 = 0.01;

#[derive(Parser, Debug)]
#[command(about = "Proxy KeepAlive absorption, memory and latency benchmark (issue 5)")]
struct Args {
    /// The `warren` binary. Default: `warren` next to this example's directory
    /// (`target/release/warren` for `cargo run --release --example proxy_bench`).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Total client sessions at each step, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,20000")]
    sessions_steps: Vec<usize>,
    /// gRPC connections (tonic channels) the client sessions share, round-robin.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// How long each step is measured once ramped (e.g. `15s`; at least 13 s).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    window: Duration,
    /// Over how long each step's new sessions are created (spreads their KeepAlives).
    #[arg(long, default_value = "11s", value_parser = parse_duration)]
    ramp: Duration,
    /// Most CreateSession calls in flight at once.
    #[arg(long, default_value_t = 500)]
    create_concurrency: usize,
    /// Operations per latency measurement (after 100 unmeasured warm-up operations).
    #[arg(long, default_value_t = 2000)]
    ops: u64,
    /// Keep the idle sessions running during the latency phase (default: close them).
    #[arg(long)]
    latency_with_sessions: bool,
    /// Skip the latency phase.
    #[arg(long)]
    no_latency: bool,
    /// Log filter for the cell and proxy processes (their stderr goes to files in the
    /// temporary directory, printed if they fail).
    #[arg(long, default_value = "warn")]
    server_log: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 15s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

// ------------------------------------------------------------------ processes

/// A child process that is killed when dropped (normal end, error, panic).
struct Proc {
    name: &'static str,
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Proc {
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Picks a free port on 127.0.0.1 (bind to port 0, note it, let it go).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Starts `bin args…` and waits until it printed `PREFIX ADDR` and `ready` on stdout;
/// returns the process and ADDR.
async fn launch(
    name: &'static str,
    bin: &PathBuf,
    args: &[String],
    prefix: &str,
    log: PathBuf,
    log_filter: &str,
) -> anyhow::Result<(Proc, String)> {
    let stderr = std::fs::File::create(&log).with_context(|| format!("creating {log:?}"))?;
    let mut child = Command::new(bin)
        .args(args)
        .env("WARREN_LOG", log_filter)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} {}", bin.display(), args.join(" ")))?;
    let pid = child.id().context("child has no pid")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let proc = Proc {
        name,
        child,
        pid,
        log,
    };
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = None;
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(prefix) {
                let a = rest.trim();
                // `cells: main=ADDR`
                let a = a.rsplit('=').next().unwrap_or(a);
                addr = Some(a.to_string());
            } else if line.trim() == "ready" {
                return Ok::<bool, std::io::Error>(true);
            }
        }
        Ok(false)
    })
    .await;
    match waited {
        Ok(Ok(true)) if addr.is_some() => {}
        other => bail!(
            "{name} did not become ready ({other:?}); its stderr ends with:\n{}",
            proc.stderr_tail()
        ),
    }
    // Keep draining stdout so the child never blocks writing to it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((proc, addr.expect("checked")))
}

/// Resident set size of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// User + system CPU time of a process, in seconds (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`; utime and stime are fields 14 and 15 overall.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

// ------------------------------------------------------------------ /metrics

/// One scrape of a Prometheus text endpoint (fetched and parsed by the load tester's
/// scraper, `warren_loadtest::metrics::scrape`).
#[derive(Clone, Debug, Default)]
struct Scrape {
    at: Option<Instant>,
    exposition: warren_loadtest::metrics::Exposition,
}

impl Scrape {
    /// `name` summed over its label sets (0 when absent).
    fn get(&self, name: &str) -> f64 {
        self.exposition.get(name).unwrap_or(0.0)
    }
}

async fn scrape(admin: &str) -> anyhow::Result<Scrape> {
    let (exposition, at) = warren_loadtest::metrics::scrape(admin).await?;
    Ok(Scrape {
        at: Some(at),
        exposition,
    })
}

// ------------------------------------------------------------------ idle sessions

/// What the idle client sessions saw, shared by all their tasks.
struct Fleet {
    created: AtomicU64,
    create_errors: AtomicU64,
    keepalive_replies: AtomicU64,
    keepalive_errors: AtomicU64,
    expired: AtomicU64,
    events: AtomicU64,
    /// Replies that came after the session's local lease had ended (before `stopping`).
    jeopardy: AtomicU64,
    /// The same, once the sessions are being closed.
    jeopardy_teardown: AtomicU64,
    /// Set when the sessions start closing.
    stopping: AtomicBool,
    /// Smallest (local lease end − reply arrival) seen, in µs (negative: jeopardy).
    min_slack_us: AtomicI64,
    /// The same, once the sessions are being closed.
    min_slack_teardown_us: AtomicI64,
    /// Slack of every reply, in ms.
    slack_ms: Mutex<Histogram<u64>>,
    /// Errors by gRPC code / Warren code.
    errors: Mutex<BTreeMap<String, u64>>,
    closed: AtomicU64,
    close_errors: AtomicU64,
    /// How long closing all the sessions took, in ms.
    close_ms: AtomicU64,
}

impl Fleet {
    fn new() -> Self {
        Fleet {
            created: AtomicU64::new(0),
            create_errors: AtomicU64::new(0),
            keepalive_replies: AtomicU64::new(0),
            keepalive_errors: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            events: AtomicU64::new(0),
            jeopardy: AtomicU64::new(0),
            jeopardy_teardown: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            min_slack_us: AtomicI64::new(i64::MAX),
            min_slack_teardown_us: AtomicI64::new(i64::MAX),
            slack_ms: Mutex::new(Histogram::new_with_bounds(1, 120_000, 3).expect("bounds")),
            errors: Mutex::new(BTreeMap::new()),
            closed: AtomicU64::new(0),
            close_errors: AtomicU64::new(0),
            close_ms: AtomicU64::new(0),
        }
    }

    fn error(&self, what: &str, status: &tonic::Status) {
        let key = format!(
            "{what}: {:?} {}",
            status.code(),
            without_ids(status.message())
        );
        *self
            .errors
            .lock()
            .expect("errors lock")
            .entry(key)
            .or_insert(0) += 1;
    }
}

/// The message with session ids (hex, possibly shortened with `…`) replaced by `<id>`,
/// so that errors group by kind.
fn without_ids(s: &str) -> String {
    let words: Vec<String> = s
        .split(' ')
        .map(|w| {
            let hex = w.trim_end_matches('…');
            if hex.len() >= 6 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                "<id>".to_string()
            } else {
                w.to_string()
            }
        })
        .collect();
    words.join(" ").chars().take(120).collect()
}

/// One idle client session: create it, then KeepAlive forever (until `stop`), acking
/// every event; on `stop`, close it (at most `closers` closes at once).
async fn idle_session(
    mut client: WarrenClient<Channel>,
    fleet: Arc<Fleet>,
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
            fleet.create_errors.fetch_add(1, Ordering::Relaxed);
            fleet.error("CreateSession", &status);
            return;
        }
    };
    fleet.created.fetch_add(1, Ordering::Relaxed);
    let local = |sent: Instant, lease_ms: u64| {
        sent + Duration::from_secs_f64(lease_ms as f64 / 1000.0 / (1.0 + RHO))
    };
    let mut lease_end = local(sent, reply.lease_ms);
    let mut ctx = pb::SessionContext {
        session_id: reply.session_id,
        secret: reply.secret,
        epoch: reply.epoch,
        ..Default::default()
    };
    let mut ack_seq = 0u64;
    // Our turn to close: after `stop`, once fewer than `closers` closes are in flight.
    // KeepAlives go on until then, so no session expires while it waits for its turn.
    let close_turn = async {
        let _ = stop.wait_for(|s| *s).await;
        closers.acquire_owned().await
    };
    tokio::pin!(close_turn);
    let _permit = loop {
        let sent = Instant::now();
        let request = pb::KeepAliveRequest {
            ctx: Some(ctx.clone()),
            ack_seq,
        };
        let result = tokio::select! {
            r = client.keep_alive(request) => r,
            p = &mut close_turn => break p,
        };
        let now = Instant::now();
        match result {
            Ok(r) => {
                let r = r.into_inner();
                fleet.keepalive_replies.fetch_add(1, Ordering::Relaxed);
                let slack_us = if now > lease_end {
                    if fleet.stopping.load(Ordering::Relaxed) {
                        fleet.jeopardy_teardown.fetch_add(1, Ordering::Relaxed);
                    } else {
                        fleet.jeopardy.fetch_add(1, Ordering::Relaxed);
                    }
                    -i64::try_from((now - lease_end).as_micros()).unwrap_or(i64::MAX)
                } else {
                    i64::try_from((lease_end - now).as_micros()).unwrap_or(i64::MAX)
                };
                if fleet.stopping.load(Ordering::Relaxed) {
                    fleet
                        .min_slack_teardown_us
                        .fetch_min(slack_us, Ordering::Relaxed);
                } else {
                    fleet.min_slack_us.fetch_min(slack_us, Ordering::Relaxed);
                    if slack_us > 0 {
                        let _ = fleet
                            .slack_ms
                            .lock()
                            .expect("slack lock")
                            .record((slack_us / 1000).max(1) as u64);
                    }
                }
                lease_end = lease_end.max(local(sent, r.lease_ms));
                if r.epoch > ctx.epoch {
                    ctx.epoch = r.epoch;
                }
                for e in &r.events {
                    fleet.events.fetch_add(1, Ordering::Relaxed);
                    ack_seq = ack_seq.max(e.seq);
                }
            }
            Err(status) => {
                fleet.keepalive_errors.fetch_add(1, Ordering::Relaxed);
                fleet.error("KeepAlive", &status);
                let expired = warren_proto::WarrenError::from_status(&status)
                    .is_some_and(|e| e.code == warren_proto::ErrorCode::SessionExpired);
                if expired {
                    fleet.expired.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    p = &mut close_turn => break p,
                }
            }
        }
    };
    let closed = client
        .close_session(pb::CloseSessionRequest {
            ctx: Some(ctx),
            expired: false,
        })
        .await;
    match closed {
        Ok(_) => {
            fleet.closed.fetch_add(1, Ordering::Relaxed);
        }
        Err(status) => {
            fleet.close_errors.fetch_add(1, Ordering::Relaxed);
            fleet.error("CloseSession", &status);
        }
    }
}

// ------------------------------------------------------------------ steps

struct StepResult {
    sessions: usize,
    created: u64,
    ramp_secs: f64,
    window_secs: f64,
    proxy_ka_rate: f64,
    proxy_ka_count: f64,
    cell_ka_rate: f64,
    cell_ka_count: f64,
    proxy_upstream_ka_count: f64,
    proxy_client_sessions: f64,
    proxy_upstream_sessions: f64,
    cell_sessions: f64,
    cell_sub_sessions: f64,
    proxy_rss: u64,
    cell_rss: u64,
    proxy_cpu: f64,
    cell_cpu: f64,
    bench_cpu: f64,
    jeopardy_so_far: u64,
}

impl StepResult {
    fn reduction(&self) -> String {
        if self.cell_ka_count > 0.0 {
            format!("{:.0}", self.proxy_ka_rate / self.cell_ka_rate)
        } else {
            "∞ (no cell KeepAlive in the window)".into()
        }
    }
}

/// KeepAlives at the cell from the first window's start to the last one's end (a longer
/// span than one window, so the cell's rate is less coarse than a handful per window).
struct Overall {
    cell_ka_count: f64,
    secs: f64,
}

/// Everything the steps need.
struct Bench {
    args: Args,
    cell: Proc,
    proxy: Proc,
    cell_addr: String,
    proxy_addr: String,
    cell_admin: String,
    proxy_admin: String,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

async fn run_steps(
    b: &Bench,
    fleet: &Arc<Fleet>,
    stop: &watch::Receiver<bool>,
    closers: &Arc<Semaphore>,
) -> anyhow::Result<(Vec<StepResult>, Overall)> {
    let a = &b.args;
    let mut clients = Vec::with_capacity(a.connections);
    for _ in 0..a.connections.max(1) {
        clients.push(WarrenClient::new(
            warren_loadtest::run::channel(&b.proxy_addr).await?,
        ));
    }
    let creators = Arc::new(Semaphore::new(a.create_concurrency.max(1)));
    let mut results = Vec::new();
    let mut first_cell: Option<Scrape> = None;
    let mut last_cell = Scrape::default();
    let mut total = 0usize;
    let me = std::process::id();
    for &target in &a.sessions_steps {
        if target < total {
            bail!("--sessions-steps must not decrease ({target} after {total})");
        }
        let new = target - total;
        eprintln!("step {target}: creating {new} sessions over {:?}", a.ramp);
        let ramp_start = Instant::now();
        for i in 0..new {
            let at = ramp_start + a.ramp.mul_f64(i as f64 / new.max(1) as f64);
            tokio::time::sleep_until(at.into()).await;
            let permit = creators.clone().acquire_owned().await?;
            let client = clients[(total + i) % clients.len()].clone();
            tokio::spawn(idle_session(
                client,
                fleet.clone(),
                permit,
                stop.clone(),
                closers.clone(),
            ));
        }
        total = target;
        // Wait for the creates still in flight.
        let deadline = Instant::now() + Duration::from_secs(60);
        while fleet.created.load(Ordering::Relaxed) + fleet.create_errors.load(Ordering::Relaxed)
            < total as u64
        {
            if Instant::now() > deadline {
                bail!("session creation did not finish within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ramp_secs = ramp_start.elapsed().as_secs_f64();
        let created = fleet.created.load(Ordering::Relaxed);
        eprintln!(
            "step {target}: {created} sessions up after {ramp_secs:.1} s; measuring for {:?}",
            a.window
        );

        let cpu0 = (
            cpu_seconds(b.proxy.pid),
            cpu_seconds(b.cell.pid),
            cpu_seconds(me),
        );
        let p0 = scrape(&b.proxy_admin).await?;
        let c0 = scrape(&b.cell_admin).await?;
        first_cell.get_or_insert_with(|| c0.clone());
        tokio::time::sleep(a.window).await;
        let p1 = scrape(&b.proxy_admin).await?;
        let c1 = scrape(&b.cell_admin).await?;
        let cpu1 = (
            cpu_seconds(b.proxy.pid),
            cpu_seconds(b.cell.pid),
            cpu_seconds(me),
        );
        let pdt = (p1.at.expect("set") - p0.at.expect("set")).as_secs_f64();
        let cdt = (c1.at.expect("set") - c0.at.expect("set")).as_secs_f64();
        let proxy_ka_count = p1.get("warren_proxy_keepalives_received_total")
            - p0.get("warren_proxy_keepalives_received_total");
        let cell_ka_count =
            c1.get("warren_keepalives_received_total") - c0.get("warren_keepalives_received_total");
        let r = StepResult {
            sessions: target,
            created,
            ramp_secs,
            window_secs: pdt,
            proxy_ka_rate: proxy_ka_count / pdt,
            proxy_ka_count,
            cell_ka_rate: cell_ka_count / cdt,
            cell_ka_count,
            proxy_upstream_ka_count: p1.get("warren_proxy_keepalives_sent_total")
                - p0.get("warren_proxy_keepalives_sent_total"),
            proxy_client_sessions: p1.get("warren_proxy_client_sessions"),
            proxy_upstream_sessions: p1.get("warren_proxy_upstream_sessions"),
            cell_sessions: c1.get("warren_cell_sessions"),
            cell_sub_sessions: c1.get("warren_cell_sub_sessions"),
            proxy_rss: rss_bytes(b.proxy.pid),
            cell_rss: rss_bytes(b.cell.pid),
            proxy_cpu: (cpu1.0 - cpu0.0) / pdt,
            cell_cpu: (cpu1.1 - cpu0.1) / pdt,
            bench_cpu: (cpu1.2 - cpu0.2) / pdt,
            jeopardy_so_far: fleet.jeopardy.load(Ordering::Relaxed),
        };
        eprintln!(
            "step {target}: proxy {:.0} KA/s ({} in {:.1} s), cell {:.2} KA/s ({}), reduction {}, \
             cell sessions {}, proxy client sessions {}, proxy RSS {:.1} MiB, CPU proxy {:.0}% \
             cell {:.0}% bench {:.0}%, jeopardy {}",
            r.proxy_ka_rate,
            r.proxy_ka_count,
            r.window_secs,
            r.cell_ka_rate,
            r.cell_ka_count,
            r.reduction(),
            r.cell_sessions,
            r.proxy_client_sessions,
            mib(r.proxy_rss),
            r.proxy_cpu * 100.0,
            r.cell_cpu * 100.0,
            r.bench_cpu * 100.0,
            r.jeopardy_so_far,
        );
        last_cell = c1;
        results.push(r);
    }
    let first_cell = first_cell.unwrap_or_default();
    let overall = Overall {
        cell_ka_count: last_cell.get("warren_keepalives_received_total")
            - first_cell.get("warren_keepalives_received_total"),
        secs: match (first_cell.at, last_cell.at) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        },
    };
    Ok((results, overall))
}

// ------------------------------------------------------------------ latency

/// Unmeasured operations of each kind before the measured ones.
const WARMUP: u64 = 100;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds")
}

/// Latency histograms (µs) of one route (direct or through the proxy).
struct Route {
    hit_read: Histogram<u64>,
    miss_read: Histogram<u64>,
    invalidating_write: Histogram<u64>,
    write: Histogram<u64>,
}

async fn timed<T, F: std::future::Future<Output = Result<T, warren_client::Error>>>(
    h: Option<&mut Histogram<u64>>,
    f: F,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let v = f.await?;
    if let Some(h) = h {
        h.saturating_record(start.elapsed().as_micros().max(1) as u64);
    }
    Ok(v)
}

async fn open_file(s: &Session, path: &str) -> anyhow::Result<Handle> {
    let (h, _) = s
        .open(
            path,
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"initial".to_vec()),
        )
        .await
        .with_context(|| format!("opening {path}"))?;
    Ok(h)
}

/// The sessions of one route (direct or through the proxy).
struct RouteSessions {
    /// Client cache on: does every write.
    writer: Session,
    /// Client cache on: reads the file `writer` keeps changing.
    reader: Session,
    /// Client cache off: every read reaches the server.
    uncached: Session,
}

impl RouteSessions {
    async fn connect(options: ClientOptions) -> anyhow::Result<Self> {
        Ok(RouteSessions {
            writer: Session::connect_with(options.clone()).await?,
            reader: Session::connect_with(options.clone()).await?,
            uncached: Session::connect_with(options.cache(false)).await?,
        })
    }

    async fn close(self) {
        for s in [self.writer, self.reader, self.uncached] {
            let _ = s.close().await;
        }
    }
}

/// The handles one route's measurements use.
struct RouteFiles {
    /// `hot`, read by the uncached session (written once, by the writer, `hot_w`).
    hot: Handle,
    hot_w: Handle,
    /// `alt`, written by the writer (`alt_w`) and read by the caching reader (`alt_r`)
    /// in turn.
    alt_w: Handle,
    alt_r: Handle,
    /// `cold`, only written.
    cold: Handle,
}

impl RouteFiles {
    /// Opens (creating) this route's files.
    async fn open(tag: &str, s: &RouteSessions) -> anyhow::Result<Self> {
        let hot = format!("/proxy_bench_{tag}_hot");
        let alt = format!("/proxy_bench_{tag}_alt");
        let hot_w = open_file(&s.writer, &hot).await?;
        hot_w.set_contents(payload()).await?;
        let alt_w = open_file(&s.writer, &alt).await?;
        Ok(RouteFiles {
            hot: s.uncached.open(&hot, OpenOptions::new().read()).await?.0,
            hot_w,
            alt_r: s.reader.open(&alt, OpenOptions::new().read()).await?.0,
            alt_w,
            cold: open_file(&s.writer, &format!("/proxy_bench_{tag}_cold")).await?,
        })
    }

    async fn close(self) {
        for h in [self.hot, self.hot_w, self.alt_w, self.alt_r, self.cold] {
            h.close().await;
        }
    }
}

fn payload() -> Vec<u8> {
    vec![b'x'; 100]
}

/// One operation of each kind on one route; records into `r` when `measured`.
async fn one_round(f: &RouteFiles, r: &mut Route, measured: bool) -> anyhow::Result<()> {
    // (a) A read that reaches the server (the reader caches nothing): through the proxy
    // it is a hit in the proxy's shared cache once the proxy holds the file.
    timed(measured.then_some(&mut r.hit_read), f.hot.contents()).await?;
    // (b) The writer writes, then the caching reader reads: each write must invalidate
    // the reader's cached copy (and, through the proxy, the proxy's), so the read misses
    // everywhere and reaches the cell.
    timed(
        measured.then_some(&mut r.invalidating_write),
        f.alt_w.set_contents(payload()),
    )
    .await?;
    timed(measured.then_some(&mut r.miss_read), f.alt_r.contents()).await?;
    // (c) A write to a file nobody reads (nothing to invalidate).
    timed(
        measured.then_some(&mut r.write),
        f.cold.set_contents(payload()),
    )
    .await?;
    Ok(())
}

fn route() -> Route {
    Route {
        hit_read: histogram(),
        miss_read: histogram(),
        invalidating_write: histogram(),
        write: histogram(),
    }
}

struct Latency {
    direct: Route,
    proxy: Route,
    proxy_cache_hits: f64,
    proxy_cache_misses: f64,
}

async fn run_latency(b: &Bench) -> anyhow::Result<Latency> {
    let ops = b.args.ops;
    let direct_sessions =
        RouteSessions::connect(ClientOptions::new([b.cell_addr.as_str()])).await?;
    let proxy_sessions =
        RouteSessions::connect(ClientOptions::proxies([b.proxy_addr.as_str()])).await?;
    let direct_files = RouteFiles::open("direct", &direct_sessions).await?;
    let proxy_files = RouteFiles::open("proxy", &proxy_sessions).await?;
    let (mut direct, mut proxy) = (route(), route());
    let p0 = scrape(&b.proxy_admin).await?;
    eprintln!("latency: {ops} rounds (+{WARMUP} warm-up), direct and proxy interleaved");
    for i in 0..WARMUP + ops {
        let measured = i >= WARMUP;
        // Alternate which route goes first, so neither always follows the other.
        if i % 2 == 0 {
            one_round(&direct_files, &mut direct, measured).await?;
            one_round(&proxy_files, &mut proxy, measured).await?;
        } else {
            one_round(&proxy_files, &mut proxy, measured).await?;
            one_round(&direct_files, &mut direct, measured).await?;
        }
    }
    let p1 = scrape(&b.proxy_admin).await?;
    direct_files.close().await;
    proxy_files.close().await;
    direct_sessions.close().await;
    proxy_sessions.close().await;
    Ok(Latency {
        direct,
        proxy,
        proxy_cache_hits: p1.get("warren_proxy_cache_hits_total")
            - p0.get("warren_proxy_cache_hits_total"),
        proxy_cache_misses: p1.get("warren_proxy_cache_misses_total")
            - p0.get("warren_proxy_cache_misses_total"),
    })
}

// ------------------------------------------------------------------ report

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = mem
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{cores} cores (nproc), `{model}`, {mem_gib:.1} GiB RAM, load average at start {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// A slack in µs as seconds, or "none" when nothing was recorded.
fn secs_or_none(us: i64) -> String {
    if us == i64::MAX {
        "none".into()
    } else {
        format!("{:.3} s", us as f64 / 1e6)
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn report(
    machine: &str,
    b: &Bench,
    steps: &[StepResult],
    overall: &Overall,
    fleet: &Fleet,
    latency: Option<&Latency>,
) {
    let a = &b.args;
    println!("## Proxy benchmark\n");
    println!("Machine: {machine}\n");
    println!(
        "Settings: {} connections, ramp {:?} per step (≤ {} concurrent creates), window {:?}, \
         client lease from the proxy (default 12 s), cell proxy lease default (20 s).\n",
        a.connections, a.ramp, a.create_concurrency, a.window
    );
    println!("### KeepAlive absorption\n");
    println!(
        "| sessions | client KA/s at proxy | KA/s at cell | reduction | cell sessions | \
         proxy RSS | CPU proxy / cell / bench |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for r in steps {
        println!(
            "| {} | {:.0} ({} in {:.1} s) | {:.3} ({} in {:.1} s) | {} | {} (+{} sub) | {:.1} MiB | {:.0}% / {:.0}% / {:.0}% |",
            r.sessions,
            r.proxy_ka_rate,
            r.proxy_ka_count,
            r.window_secs,
            r.cell_ka_rate,
            r.cell_ka_count,
            r.window_secs,
            r.reduction(),
            r.cell_sessions,
            r.cell_sub_sessions,
            mib(r.proxy_rss),
            r.proxy_cpu * 100.0,
            r.cell_cpu * 100.0,
            r.bench_cpu * 100.0,
        );
    }
    println!();
    for r in steps {
        println!(
            "- step {}: {} created, ramp {:.1} s; proxy reports {} client sessions, {} upstream \
             session(s), {} upstream KeepAlives sent in the window; cell RSS {:.1} MiB; \
             jeopardy so far {}",
            r.sessions,
            r.created,
            r.ramp_secs,
            r.proxy_client_sessions,
            r.proxy_upstream_sessions,
            r.proxy_upstream_ka_count,
            mib(r.cell_rss),
            r.jeopardy_so_far
        );
    }
    if overall.secs > 0.0 {
        println!(
            "\nKeepAlives at the cell over the whole phase ({:.1} s, all steps): {} = {:.3}/s, \
             whatever the number of client sessions.",
            overall.secs,
            overall.cell_ka_count,
            overall.cell_ka_count / overall.secs
        );
    }
    if let (Some(first), Some(last)) = (steps.first(), steps.last()) {
        if last.sessions > first.sessions {
            let per = (last.proxy_rss as f64 - first.proxy_rss as f64)
                / (last.sessions - first.sessions) as f64;
            println!(
                "\nMemory per idle client session at the proxy: ({:.1} MiB − {:.1} MiB) ÷ ({} − {}) \
                 = **{:.2} KiB**",
                mib(last.proxy_rss),
                mib(first.proxy_rss),
                last.sessions,
                first.sessions,
                per / 1024.0
            );
        }
    }
    let min_slack = fleet.min_slack_us.load(Ordering::Relaxed);
    let slack = fleet.slack_ms.lock().expect("slack lock");
    println!(
        "\nClient side: {} sessions created ({} create errors), {} KeepAlive replies, {} \
         KeepAlive errors, {} expired, {} events; **jeopardy (reply after the local lease \
         ended) while the steps ran: {}**. Slack between reply and local lease end: min {:.3} s, p1 {:.3} s, p50 \
         {:.3} s.",
        fleet.created.load(Ordering::Relaxed),
        fleet.create_errors.load(Ordering::Relaxed),
        fleet.keepalive_replies.load(Ordering::Relaxed),
        fleet.keepalive_errors.load(Ordering::Relaxed),
        fleet.expired.load(Ordering::Relaxed),
        fleet.events.load(Ordering::Relaxed),
        fleet.jeopardy.load(Ordering::Relaxed),
        if min_slack == i64::MAX {
            f64::NAN
        } else {
            min_slack as f64 / 1e6
        },
        slack.value_at_quantile(0.01) as f64 / 1000.0,
        slack.value_at_quantile(0.5) as f64 / 1000.0,
    );
    drop(slack);
    println!(
        "\nTeardown: {} sessions closed with CloseSession ({} close errors) in {:.1} s, {} at a \
         time; KeepAlive replies after the local lease ended while closing: {} (min slack \
         {}).",
        fleet.closed.load(Ordering::Relaxed),
        fleet.close_errors.load(Ordering::Relaxed),
        fleet.close_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        a.create_concurrency,
        fleet.jeopardy_teardown.load(Ordering::Relaxed),
        secs_or_none(fleet.min_slack_teardown_us.load(Ordering::Relaxed)),
    );
    let errors = fleet.errors.lock().expect("errors lock");
    if !errors.is_empty() {
        println!("\nErrors seen by the idle sessions:\n");
        for (k, n) in errors.iter() {
            println!("- {n} × {k}");
        }
    }
    drop(errors);
    if let Some(l) = latency {
        println!(
            "\n### Latency ({} operations each, after 100 warm-up; idle sessions {})\n",
            a.ops,
            if a.latency_with_sessions {
                "still running"
            } else {
                "closed first"
            }
        );
        println!(
            "| operation | direct p50 | proxy p50 | p50 ratio | direct p90 | proxy p90 | direct p99 \
             | proxy p99 | p99 ratio |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let rows: [(&str, &Histogram<u64>, &Histogram<u64>); 4] = [
            (
                "read, uncached client (proxy: proxy cache hit)",
                &l.direct.hit_read,
                &l.proxy.hit_read,
            ),
            (
                "read just invalidated (miss everywhere)",
                &l.direct.miss_read,
                &l.proxy.miss_read,
            ),
            (
                "write to a file no one reads",
                &l.direct.write,
                &l.proxy.write,
            ),
            (
                "write invalidating a reader's cached copy",
                &l.direct.invalidating_write,
                &l.proxy.invalidating_write,
            ),
        ];
        for (name, d, p) in rows {
            println!(
                "| {name} | {:.3} ms | {:.3} ms | {:.2}× | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.2}× |",
                ms(d, 0.5),
                ms(p, 0.5),
                ms(p, 0.5) / ms(d, 0.5),
                ms(d, 0.9),
                ms(p, 0.9),
                ms(d, 0.99),
                ms(p, 0.99),
                ms(p, 0.99) / ms(d, 0.99),
            );
        }
        println!(
            "\nProxy cache during the latency phase: {} hits, {} misses.",
            l.proxy_cache_hits, l.proxy_cache_misses
        );
    }
}

// ------------------------------------------------------------------ main

async fn run(args: Args) -> anyhow::Result<()> {
    if args.window < Duration::from_secs(13) {
        bail!(
            "--window {:?} is too short: it must be at least 13 s so every session sends a \
             KeepAlive in it",
            args.window
        );
    }
    if args.sessions_steps.is_empty() {
        bail!("--sessions-steps: give at least one step");
    }
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => {
            let exe = std::env::current_exe()?;
            // target/release/examples/proxy_bench → target/release/warren
            exe.parent()
                .and_then(|p| p.parent())
                .map(|p| p.join("warren"))
                .ok_or_else(|| anyhow!("cannot locate the warren binary; pass --bin"))?
        }
    };
    if !bin.exists() {
        bail!(
            "{} does not exist: run `cargo build --release` first or pass --bin",
            bin.display()
        );
    }
    let machine = machine();
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("cell");
    let cell_admin = format!("127.0.0.1:{}", free_port()?);
    let (cell, cell_addr) = launch(
        "cell",
        &bin,
        &[
            "cell".into(),
            "--name".into(),
            "main".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data".into(),
            data.display().to_string(),
            "--admin".into(),
            cell_admin.clone(),
        ],
        "cells:",
        tmp.path().join("cell.log"),
        &args.server_log,
    )
    .await?;
    let proxy_admin = format!("127.0.0.1:{}", free_port()?);
    let (proxy, proxy_addr) = launch(
        "proxy",
        &bin,
        &[
            "proxy".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--cell".into(),
            format!("main={cell_addr}"),
            "--admin".into(),
            proxy_admin.clone(),
        ],
        "proxies:",
        tmp.path().join("proxy.log"),
        &args.server_log,
    )
    .await?;
    eprintln!(
        "cell {cell_addr} (admin {cell_admin}, pid {}), proxy {proxy_addr} (admin {proxy_admin}, pid {})",
        cell.pid, proxy.pid
    );
    let b = Bench {
        args,
        cell,
        proxy,
        cell_addr,
        proxy_addr,
        cell_admin,
        proxy_admin,
    };

    let fleet = Arc::new(Fleet::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let closers = Arc::new(Semaphore::new(b.args.create_concurrency.max(1)));
    let steps = run_steps(&b, &fleet, &stop_rx, &closers).await;
    let (steps, overall) = match steps {
        Ok(s) => s,
        Err(e) => {
            for p in [&b.cell, &b.proxy] {
                eprintln!("{} stderr ends with:\n{}", p.name, p.stderr_tail());
            }
            return Err(e);
        }
    };

    let stop_sessions = || async {
        fleet.stopping.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let _ = stop_tx.send(true);
        let target = fleet.created.load(Ordering::Relaxed) - fleet.expired.load(Ordering::Relaxed);
        let deadline = started + Duration::from_secs(60);
        let done =
            || fleet.closed.load(Ordering::Relaxed) + fleet.close_errors.load(Ordering::Relaxed);
        while done() < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        fleet.close_ms.store(ms, Ordering::Relaxed);
        eprintln!(
            "closed {} idle sessions in {:.1} s ({} close errors)",
            fleet.closed.load(Ordering::Relaxed),
            ms as f64 / 1000.0,
            fleet.close_errors.load(Ordering::Relaxed)
        );
    };
    let latency = if b.args.no_latency {
        None
    } else {
        if !b.args.latency_with_sessions {
            stop_sessions().await;
        }
        let l = run_latency(&b).await;
        match l {
            Ok(l) => Some(l),
            Err(e) => {
                for p in [&b.cell, &b.proxy] {
                    eprintln!("{} stderr ends with:\n{}", p.name, p.stderr_tail());
                }
                return Err(e);
            }
        }
    };
    if !*stop_tx.borrow() {
        stop_sessions().await;
    }
    report(&machine, &b, &steps, &overall, &fleet, latency.as_ref());
    b.proxy.stop().await;
    b.cell.stop().await;
    drop(tmp);
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = tokio::select! {
        r = run(args) => r,
        _ = tokio::signal::ctrl_c() => {
            // Dropping `run` kills the child processes (kill_on_drop).
            Err(anyhow!("interrupted"))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
