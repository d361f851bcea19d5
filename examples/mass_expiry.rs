//! Mass expiry after a proxy dies: what the cells' claim and expiry of a dead proxy's
//! client sessions cost everyone else's KeepAlives (docs/performance.md, "Mass expiry
//! after a proxy dies").
//!
//! On a deployment it launches from the release binary (`dev:cells=N,proxies=2`, embedded
//! stores, default leases: client 12 s, proxy 20 s, claim window 60 s), it
//! 1. creates `--victims` client sessions on proxy p1, each with a read handle at a data
//!    cell (so each is a sub-session of p1's session there), kept alive by KeepAlives;
//! 2. starts the **observers**: `--observers` client sessions on proxy p2 (each with a
//!    handle too) and `--cell-observers` sessions straight at each data cell, each in a
//!    KeepAlive loop that records how late every reply is;
//! 3. after a baseline, `kill -9`s p1. Of its clients, `--move-percent` move to p2 when
//!    their KeepAlive fails (same session, p2 claims it at every cell), retrying a refused
//!    or failed KeepAlive there as the client library does ([`move_to`]); the rest vanish.
//!    About one proxy lease later the cells orphan all of p1's sub-sessions; one claim
//!    window after that they end every orphan not claimed;
//! 4. runs until `--after` past the kill and prints, per observer kind and phase, the
//!    KeepAlive lateness: count, p50, p99, max, replies later than 100 ms; and how many
//!    moves were adopted or lost, and how long after the kill (p50, p99, the last).
//!
//! **Lateness.** A server holds a KeepAlive and answers it `reply_before_end` (1 s) plus
//! up to 10 % jitter before the session's lease ends. The lease ends `lease_ms` (of the
//! previous reply) after the previous request was received, so a reply is due by
//! `send time of the previous request + its lease_ms − reply_before_end` (taking the send
//! time for the receive time makes the due time earlier, so lateness is overstated by one
//! loopback trip, never understated). **Lateness = arrival of the reply − that due time**;
//! ≤ 0 is on time (typically −100…0 ms: the jitter). A reply carrying events comes early
//! by design and counts as on time. A reply more than `reply_before_end` late arrived
//! after the client's local lease had (about) ended: that is jeopardy.
//!
//! ```text
//! cargo build --release --bin warren --example mass_expiry
//! target/release/examples/mass_expiry --victims 50000 [--move-percent 50] [--observers 500] \
//!     [--cell-observers 100] [--cells 2] [--connections 32] [--after 95s] [--seed 1]
//! ```

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use warren_client::lease::{self, Backoff, JEOPARDY_KEEPALIVE_DEADLINE, KEEPALIVE_DEADLINE_MARGIN};
use warren_client::{ClientOptions, OpenOptions, Session};
use warren_loadtest::deploy::{DeploySpec, Deployment, Member};
use warren_loadtest::run::parse_duration;
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::{ErrorCode, WarrenError};

#[derive(Parser, Debug)]
#[command(
    about = "KeepAlive lateness of everyone else while cells claim or expire a dead proxy's sessions"
)]
struct Args {
    /// The `warren` binary. Default: `warren` next to this example's directory.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Client sessions on the proxy that is killed, each with a handle at a cell.
    #[arg(long, default_value_t = 50_000)]
    victims: usize,
    /// Percent of the victims that move to the surviving proxy (claimed there); the rest
    /// are never heard of again (they expire at the cells after the claim window).
    #[arg(long, default_value_t = 50)]
    move_percent: u8,
    /// Observed client sessions on the surviving proxy.
    #[arg(long, default_value_t = 500)]
    observers: usize,
    /// Observed sessions straight at each data cell.
    #[arg(long, default_value_t = 100)]
    cell_observers: usize,
    /// Data cells of the deployment.
    #[arg(long, default_value_t = 2)]
    cells: u16,
    /// gRPC connections to each server.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Baseline measured before the kill (after the victims are set up).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    baseline: Duration,
    /// How long to measure after the kill: past the proxy lease (20 s) plus the claim
    /// window (60 s), when the cells end the unclaimed orphans.
    #[arg(long, default_value = "95s", value_parser = parse_duration)]
    after: Duration,
    /// Victims created per second (a gentle ramp: the point is the expiry, not the ramp).
    #[arg(long, default_value_t = 2000)]
    ramp_rate: u32,
    /// Files the handles are spread over (`/mass{i}/f`; each directory is its own slot).
    #[arg(long, default_value_t = 64)]
    files: usize,
}

/// The servers' `reply_before_end` with default settings (cells and proxies alike).
const REPLY_BEFORE_END: Duration = warren_config::defaults::KEEPALIVE_REPLY_BEFORE_END;
/// The client lease, grace period and clock drift of the deployment (defaults).
const LEASE: Duration = warren_config::defaults::LEASE;
const GRACE_PERIOD: Duration = warren_config::defaults::GRACE_PERIOD;
const CLOCK_DRIFT: f64 = warren_config::defaults::CLOCK_DRIFT;
/// Victims set up at once.
const SETUP_CONCURRENCY: usize = 128;
const DEPLOYMENT: &str = "local";

/// A client session as the raw protocol sees it.
#[derive(Clone)]
struct Sess {
    ctx: pb::SessionContext,
    acked: u64,
}

/// Lateness samples: (when the reply arrived; lateness in µs, negative when early).
#[derive(Default)]
struct Samples(Mutex<Vec<(Instant, i64)>>);

async fn channels(addr: &str, n: usize) -> anyhow::Result<Vec<WarrenClient<Channel>>> {
    let mut v = Vec::new();
    for _ in 0..n {
        let ch = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        v.push(WarrenClient::new(ch).max_decoding_message_size(16 << 20));
    }
    Ok(v)
}

async fn create(c: &mut WarrenClient<Channel>) -> anyhow::Result<Sess> {
    let r = c
        .create_session(pb::CreateSessionRequest {
            principal: String::new(),
            proxy: false,
        })
        .await?
        .into_inner();
    Ok(Sess {
        ctx: pb::SessionContext {
            session_id: r.session_id,
            secret: r.secret,
            epoch: r.epoch,
            ..Default::default()
        },
        acked: 0,
    })
}

async fn open(c: &mut WarrenClient<Channel>, s: &Sess, path: &str) -> anyhow::Result<()> {
    c.open(pb::OpenRequest {
        ctx: Some(s.ctx.clone()),
        path: format!("/ls/{DEPLOYMENT}{path}"),
        intent: pb::Intent::Read as u32,
        ..Default::default()
    })
    .await
    .with_context(|| format!("Open {path}"))?;
    Ok(())
}

/// One KeepAlive; adopts a new epoch (from the reply, or from `STALE_EPOCH`, which a
/// proxy answers when it adopts a session that moved to it: then it is sent again) and
/// acknowledges what it delivered next time.
async fn keep_alive(
    c: &mut WarrenClient<Channel>,
    s: &mut Sess,
) -> Result<pb::KeepAliveResponse, tonic::Status> {
    let mut tries = 0;
    let r = loop {
        let r = c
            .keep_alive(pb::KeepAliveRequest {
                ctx: Some(s.ctx.clone()),
                ack_seq: s.acked,
                ..Default::default()
            })
            .await;
        match r {
            Ok(r) => break r.into_inner(),
            Err(st) => match WarrenError::from_status(&st) {
                Some(e) if e.code == ErrorCode::StaleEpoch && tries < 3 => {
                    tries += 1;
                    s.ctx.epoch = e.epoch;
                    s.acked = 0;
                }
                _ => return Err(st),
            },
        }
    };
    if r.epoch != s.ctx.epoch {
        s.ctx.epoch = r.epoch;
        s.acked = 0;
    }
    if let Some(last) = r.events.last() {
        s.acked = last.seq;
    }
    Ok(r)
}

/// How the moves went: adopted, lost, when each was adopted (µs after the kill).
#[derive(Default)]
struct Moves {
    ok: AtomicU64,
    lost: AtomicU64,
    /// Victims whose local lease at p1 had already ended at the kill, and how many of
    /// those were lost.
    lapsed: AtomicU64,
    lost_lapsed: AtomicU64,
    last_ms: AtomicU64,
    took: Samples,
}

enum Move {
    Adopted,
    /// The session is gone (`SESSION_EXPIRED`, another fatal answer, or its grace period
    /// ran out while it was refused).
    Lost(String),
    Stopped,
}

/// A victim moving to the surviving proxy, retrying as the client library does
/// (`client/src/session`): a KeepAlive with the library's deadline (a lease + 5 s while the
/// local lease runs, 2 s in jeopardy); `STALE_EPOCH` adopts the epoch and is re-sent at
/// once; any other refusal (`FAILOVER_IN_PROGRESS`, `OVERLOADED`, …) or a transport
/// failure is retried after the library's backoff (100 ms doubling to 2 s, jittered; the
/// first transport failure at once); `SESSION_EXPIRED` ends it, and so does the end of
/// the grace period. Adopted once a KeepAlive there is answered.
async fn move_to(
    mut c: WarrenClient<Channel>,
    s: &mut Sess,
    local_end: Instant,
    seed: u64,
    stop: &AtomicBool,
) -> Move {
    let grace_end = local_end + GRACE_PERIOD;
    let mut backoff = Backoff::new(lease::splitmix64(seed));
    let mut stale = 0;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() > grace_end {
            return Move::Lost("the grace period ended before the move".into());
        }
        let deadline = if Instant::now() < local_end {
            LEASE + KEEPALIVE_DEADLINE_MARGIN
        } else {
            JEOPARDY_KEEPALIVE_DEADLINE
        };
        let sent = c.keep_alive(pb::KeepAliveRequest {
            ctx: Some(s.ctx.clone()),
            ack_seq: s.acked,
            ..Default::default()
        });
        let st = match tokio::time::timeout(deadline, sent).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                if r.epoch != s.ctx.epoch {
                    s.ctx.epoch = r.epoch;
                    s.acked = 0;
                }
                if let Some(last) = r.events.last() {
                    s.acked = last.seq;
                }
                return Move::Adopted;
            }
            Ok(Err(st)) => st,
            Err(_) => tonic::Status::deadline_exceeded("the KeepAlive timed out"),
        };
        let first = backoff.failed() == 1;
        match WarrenError::from_status(&st) {
            Some(e) if e.code == ErrorCode::StaleEpoch && stale < 8 => {
                stale += 1;
                s.ctx.epoch = e.epoch;
                s.acked = 0;
                continue;
            }
            Some(e) if e.code == ErrorCode::SessionExpired => return Move::Lost(format!("{st:?}")),
            Some(e) if !e.is_retryable() => return Move::Lost(format!("{st:?}")),
            None if first => continue,
            _ => tokio::time::sleep(backoff.delay(LEASE)).await,
        }
    }
    Move::Stopped
}

/// An observer's loop: KeepAlives until `stop`, recording each reply's lateness.
async fn observe(
    mut c: WarrenClient<Channel>,
    mut s: Sess,
    samples: Arc<Samples>,
    jeopardy: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut prev: Option<(Instant, u64)> = None;
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let r = match keep_alive(&mut c, &mut s).await {
            Ok(r) => r,
            Err(_) => {
                jeopardy.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                prev = None;
                continue;
            }
        };
        let now = Instant::now();
        if let Some((psent, lease_ms)) = prev {
            let due = psent + Duration::from_millis(lease_ms) - REPLY_BEFORE_END;
            let late = if now >= due {
                (now - due).as_micros() as i64
            } else {
                -((due - now).as_micros() as i64)
            };
            if r.events.is_empty() {
                samples.0.lock().expect("samples").push((now, late));
            }
            if late > REPLY_BEFORE_END.as_micros() as i64 {
                jeopardy.fetch_add(1, Ordering::Relaxed);
            }
        }
        prev = Some((sent, r.lease_ms));
    }
}

/// The samples from `from` to `to` (ms from the kill, negative before it).
fn summary(name: &str, samples: &Samples, kill: Instant, from_ms: i64, to_ms: i64) -> String {
    let v = samples.0.lock().expect("samples");
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let mut late100 = 0;
    let rel = |t: Instant| {
        if t >= kill {
            (t - kill).as_millis() as i64
        } else {
            -((kill - t).as_millis() as i64)
        }
    };
    for &(_, late) in v
        .iter()
        .filter(|(t, _)| (from_ms..to_ms).contains(&rel(*t)))
    {
        // Early replies count as 0 lateness.
        h.record(late.max(0) as u64).expect("record");
        if late > 100_000 {
            late100 += 1;
        }
    }
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} | {late100} |",
        h.len(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    )
}

/// CPU ticks so far of the data cells and the surviving proxy, by name.
fn cpu_ticks(d: &Deployment) -> Vec<(String, u64)> {
    d.processes()
        .into_iter()
        .filter(|p| p.name.starts_with('c') || p.name == "p2")
        .filter_map(|p| {
            let u = warren_loadtest::procstat::usage(p.pid?).ok()?;
            Some((p.name, u.cpu_ticks))
        })
        .collect()
}

async fn metric(admin: &str, name: &str) -> Option<f64> {
    let (code, body) = warren_testkit::etcd::http_request(admin, "GET", "/metrics", None)
        .await
        .ok()?;
    if code != 200 {
        return None;
    }
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.move_percent > 100 {
        bail!("--move-percent {} is over 100", args.move_percent);
    }
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .context("no directory above this example")?
            .join("warren"),
    };
    let dir = tempfile::tempdir()?;
    let spec = DeploySpec {
        cells: args.cells,
        proxies: 2,
        lease: None,
        tls: false,
    };
    let mut d = Deployment::start_with(&bin, &spec, dir.path()).await?;
    let result = run(&args, &mut d).await;
    if let Err(e) = &result {
        eprintln!("the run failed: {e:#}");
    }
    if let Err(e) = d.stop().await {
        eprintln!("stopping the deployment: {e:#}");
    }
    result
}

async fn run(args: &Args, d: &mut Deployment) -> anyhow::Result<()> {
    let proxies = d.proxy_addrs();
    let started = Instant::now();
    // The files, through a library session.
    let setup = Session::connect_with(ClientOptions::proxies(proxies.clone())).await?;
    for i in 0..args.files {
        let (h, _) = setup
            .open(&format!("/mass{i}"), OpenOptions::new().read().create_dir())
            .await?;
        h.close().await;
        let (h, _) = setup
            .open(
                &format!("/mass{i}/f"),
                OpenOptions::new().read().create_file(b"x".to_vec()),
            )
            .await?;
        h.close().await;
    }
    setup.close().await?;

    let p2 = Arc::new(channels(&proxies[1], args.connections).await?);
    // The observers' own connections: a library session has a connection of its own, so
    // an observer must not share one with the moving victims (whose KeepAlives, reset
    // when they time out, can make the proxy close a connection they flood).
    let p2_observers = channels(&proxies[1], args.connections).await?;
    let stop = Arc::new(AtomicBool::new(false));
    // Observers.
    let at_proxy = Arc::new(Samples::default());
    let at_cells = Arc::new(Samples::default());
    let jeopardy_proxy = Arc::new(AtomicU64::new(0));
    let jeopardy_cells = Arc::new(AtomicU64::new(0));
    for o in 0..args.observers {
        let mut c = p2_observers[o % p2_observers.len()].clone();
        let s = create(&mut c).await?;
        open(&mut c, &s, &format!("/mass{}/f", o % args.files)).await?;
        tokio::spawn(observe(
            c,
            s,
            at_proxy.clone(),
            jeopardy_proxy.clone(),
            stop.clone(),
        ));
    }
    for addr in d.cell_addrs() {
        let chans = channels(&addr, 4).await?;
        for o in 0..args.cell_observers {
            let mut c = chans[o % chans.len()].clone();
            let s = create(&mut c).await?;
            tokio::spawn(observe(
                c,
                s,
                at_cells.clone(),
                jeopardy_cells.clone(),
                stop.clone(),
            ));
        }
    }
    // Victims on p1.
    let p1 = Arc::new(channels(&proxies[0], args.connections).await?);
    let killed = Arc::new(AtomicBool::new(false));
    let moves = Arc::new(Moves::default());
    let kill_time: Arc<Mutex<Option<Instant>>> = Arc::default();
    let sem = Arc::new(tokio::sync::Semaphore::new(SETUP_CONCURRENCY));
    let mut setups = tokio::task::JoinSet::new();
    let movers = args.victims * usize::from(args.move_percent) / 100;
    let setup_failed = Arc::new(AtomicU64::new(0));
    let mut pace = tokio::time::interval(Duration::from_secs(1) / args.ramp_rate.max(1));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for v in 0..args.victims {
        pace.tick().await;
        let setup_failed = setup_failed.clone();
        let permit = sem.clone().acquire_owned().await?;
        let (p1, p2) = (p1.clone(), p2.clone());
        let path = format!("/mass{}/f", v % args.files);
        let (stop, killed) = (stop.clone(), killed.clone());
        let (moves, kill_at) = (moves.clone(), kill_time.clone());
        let mover = v < movers;
        setups.spawn(async move {
            let mut c = p1[v % p1.len()].clone();
            let set_up = async {
                let s = create(&mut c).await?;
                open(&mut c, &s, &path).await?;
                Ok::<_, anyhow::Error>(s)
            };
            let mut s = match set_up.await {
                Ok(s) => s,
                Err(e) => {
                    if setup_failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("a victim could not be set up: {e:#}");
                    }
                    return Ok(());
                }
            };
            drop(permit);
            tokio::spawn(async move {
                // Alive on p1 until it dies; the local lease of its last reply (send time
                // + lease / (1 + ρ), as the client library reckons it).
                let mut local_end = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    match keep_alive(&mut c, &mut s).await {
                        Ok(r) => {
                            local_end =
                                sent + Duration::from_millis(r.lease_ms).div_f64(1.0 + CLOCK_DRIFT);
                        }
                        Err(_) if killed.load(Ordering::Relaxed) => break,
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
                if !mover || stop.load(Ordering::Relaxed) {
                    return;
                }
                // A victim whose lease at p1 had already run out at the kill (p1, or this
                // process, too loaded to keep 50,000 KeepAlives going) may have been expired
                // by p1 before it died: counted apart from the storm's own losses.
                let killed_at = *kill_at.lock().expect("kill time");
                let lapsed = killed_at.is_some_and(|k| local_end < k);
                if lapsed {
                    moves.lapsed.fetch_add(1, Ordering::Relaxed);
                }
                let c = p2[v % p2.len()].clone();
                match move_to(c, &mut s, local_end, v as u64, &stop).await {
                    Move::Adopted => {
                        moves.ok.fetch_add(1, Ordering::Relaxed);
                        let at = kill_at.lock().expect("kill time").map(|k| k.elapsed());
                        if let Some(at) = at {
                            moves
                                .last_ms
                                .fetch_max(at.as_millis() as u64, Ordering::Relaxed);
                            moves
                                .took
                                .0
                                .lock()
                                .expect("samples")
                                .push((Instant::now(), at.as_micros() as i64));
                        }
                    }
                    Move::Lost(st) => {
                        if lapsed {
                            moves.lost_lapsed.fetch_add(1, Ordering::Relaxed);
                        }
                        if moves.lost.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("the first lost move: {st}");
                        }
                        return;
                    }
                    Move::Stopped => return,
                }
                // Lives on there.
                let mut c = p2[v % p2.len()].clone();
                while !stop.load(Ordering::Relaxed) {
                    if keep_alive(&mut c, &mut s).await.is_err() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            });
            Ok::<_, anyhow::Error>(())
        });
        while setups.len() > 4 * SETUP_CONCURRENCY {
            if let Some(r) = setups.join_next().await {
                r??;
            }
        }
    }
    while let Some(r) = setups.join_next().await {
        r??;
    }
    eprintln!(
        "{} victims on p1, each with a handle ({} could not be set up), in {:.1?}",
        args.victims,
        setup_failed.load(Ordering::Relaxed),
        started.elapsed()
    );

    let kill_at = Instant::now() + args.baseline;
    let cpu0 = cpu_ticks(d);
    tokio::time::sleep_until(kill_at).await;
    let cpu1 = cpu_ticks(d);

    // The kill, then the cells' orphan and session counts each second.
    d.kill(&Member::Proxy(1)).await?;
    *kill_time.lock().expect("kill time") = Some(Instant::now());
    killed.store(true, Ordering::Relaxed);
    eprintln!("killed p1 at {:.1?}", started.elapsed());
    let admins: Vec<String> = d.cell_admin_addrs().into_iter().skip(1).collect();
    let mut orphaned_at = None;
    let mut expired_at = None;
    let mut peak_orphans = 0.0f64;
    let end = kill_at + args.after;
    while Instant::now() < end {
        let mut orphans = 0.0;
        for a in &admins {
            orphans += metric(a, "warren_cell_orphan_sessions")
                .await
                .unwrap_or(0.0);
        }
        let t = (Instant::now() - kill_at).as_secs_f64();
        if orphans > peak_orphans {
            peak_orphans = orphans;
        }
        if orphans > 0.0 && orphaned_at.is_none() {
            orphaned_at = Some(t);
        }
        if orphaned_at.is_some() && orphans == 0.0 && expired_at.is_none() {
            expired_at = Some(t);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cpu2 = cpu_ticks(d);
    stop.store(true, Ordering::Relaxed);
    let hz = warren_loadtest::procstat::ticks_per_s().max(1) as f64;
    for (name, t0) in &cpu0 {
        let at = |snap: &[(String, u64)]| snap.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        let (Some(t1), Some(t2)) = (at(&cpu1), at(&cpu2)) else {
            continue;
        };
        println!(
            "CPU of {name}: baseline {:.1} % of a core, after the kill {:.1} % of a core",
            100.0 * (t1 - t0) as f64 / hz / args.baseline.as_secs_f64(),
            100.0 * (t2 - t1) as f64 / hz / args.after.as_secs_f64(),
        );
    }
    let after_ms = args.after.as_millis() as i64;
    let base_ms = args.baseline.as_millis() as i64;
    let took = {
        let v = moves.took.0.lock().expect("samples");
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for &(_, us) in v.iter() {
            h.record(us.max(0) as u64).expect("record");
        }
        h
    };
    println!(
        "victims {} (moving to p2: {movers}, {} of them with their lease at p1 already over at \
         the kill; adopted {}, lost {} ({} of those lapsed before the kill), still moving at \
         the end {}; \
         time from the kill to adoption p50 {:.1} s, p99 {:.1} s, last {:.1} s), orphans at the \
         cells: first seen {} s after the kill, peak {peak_orphans}, gone at {} s",
        args.victims,
        moves.lapsed.load(Ordering::Relaxed),
        moves.ok.load(Ordering::Relaxed),
        moves.lost.load(Ordering::Relaxed),
        moves.lost_lapsed.load(Ordering::Relaxed),
        movers as u64 - moves.ok.load(Ordering::Relaxed) - moves.lost.load(Ordering::Relaxed),
        took.value_at_quantile(0.5) as f64 / 1e6,
        took.value_at_quantile(0.99) as f64 / 1e6,
        moves.last_ms.load(Ordering::Relaxed) as f64 / 1e3,
        orphaned_at.map_or("-".into(), |t| format!("{t:.0}")),
        expired_at.map_or("-".into(), |t| format!("{t:.0}")),
    );
    println!(
        "jeopardy (a reply > {REPLY_BEFORE_END:?} late, or an error): at the proxy {}, at the cells {}",
        jeopardy_proxy.load(Ordering::Relaxed),
        jeopardy_cells.load(Ordering::Relaxed)
    );
    println!("| KeepAlive lateness | replies | p50 ms | p99 ms | max ms | > 100 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    let expiry_window =
        expired_at.map(|t| ((t * 1000.0) as i64 - 5_000, (t * 1000.0) as i64 + 3_000));
    for (name, s) in [("surviving proxy", &at_proxy), ("cells", &at_cells)] {
        println!(
            "{}",
            summary(&format!("{name}, baseline"), s, kill_at, -base_ms, 0)
        );
        println!(
            "{}",
            summary(&format!("{name}, after the kill"), s, kill_at, 0, after_ms)
        );
        if let Some((a, b)) = expiry_window {
            let what = format!("{name}, around the mass expiry");
            println!("{}", summary(&what, s, kill_at, a, b));
        }
    }
    Ok(())
}
