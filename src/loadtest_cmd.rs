//! `warren loadtest`: a simulated fleet against a deployment (docs/design.md §15). The work lives in
//! the `warren-loadtest` crate; this parses the command line, launches a deployment for
//! `--deploy` (and injects its faults), and prints the reports.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use warren_loadtest::deploy::{DeploySpec, Deployment, Member};
use warren_loadtest::fault::{Action, Fault, Injector};
use warren_loadtest::procstat::MemberProcess;
use warren_loadtest::report::{DeploymentShape, MemberInfo, RunInfo};
use warren_loadtest::reshard::ReshardSpec;
use warren_loadtest::run::parse_duration;
use warren_loadtest::{Config, Report, Target};

#[derive(Args, Debug)]
pub struct LoadtestArgs {
    #[command(subcommand)]
    command: LoadtestCommand,
    /// Mutual TLS to the target deployment: --cacert, --cert, --key (docs/security.md).
    /// Not with --deploy, which makes its own certificates with `tls=on`.
    #[command(flatten)]
    tls: crate::tls_cmd::ClientTlsArgs,
    /// Worker threads of the load generator's runtime, 1–256 (default: one per core). One
    /// saves the futex wake-ups of idle workers (docs/performance.md, "Cached reads: CPU
    /// per read against a bare tonic server"), but on a busy machine a process with one
    /// thread gets a smaller share of the CPU, and runs with very many sessions need the
    /// cores for their KeepAlives.
    #[arg(long, global = true, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
}

#[derive(Subcommand, Debug)]
enum LoadtestCommand {
    /// Run a workload: N client sessions over C connections, each with its KeepAlive loop,
    /// and open-loop (Poisson) reads, writes and lock operations on /loadtest/d*/f* with
    /// Zipf popularity; prints a summary (and writes JSON with --json, HTML with --html).
    /// With --deploy it launches a deployment first, and can kill and restart its members.
    Run(RunArgs),
    /// The same workload direct to the cells and through the proxies, one after the other
    /// in one run; prints both and their ratios.
    Compare(CompareArgs),
    /// From measured capacity (--from RESULT.json …, or built-in figures), how many proxies
    /// and cells a fleet needs, with headroom, and which resource binds.
    Plan(PlanArgs),
    /// A bare tonic server of the Warren protocol that answers every read with the same
    /// empty file: the yardstick for a proxy's CPU per cached read
    /// (docs/performance.md). Prints one JSON line of CPU per read after each span of reads.
    #[command(hide = true)]
    Echo(EchoArgs),
    /// A bare tonic forwarder of the Warren protocol: every call passed on unchanged to one
    /// server: the floor of one more gRPC hop, for a proxy's forwarded writes
    /// (docs/performance.md).
    #[command(hide = true)]
    Forward(ForwardArgs),
}

#[derive(Args, Debug)]
struct ForwardArgs {
    /// Where to serve (HOST:PORT; port 0 picks one, printed on stderr).
    #[arg(long, value_name = "HOST:PORT")]
    listen: String,
    /// The server every call is passed to (a cell's gRPC HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    upstream: String,
    /// HTTP/2 connections to the upstream server, used in turn.
    #[arg(long, default_value_t = 1, value_name = "N")]
    channels: usize,
    /// Send on hyper's HTTP/2 connections directly, not through tonic `Channel`s (which
    /// hand each call to a buffer task first).
    #[arg(long)]
    bare_h2: bool,
    /// Serve on a one-thread runtime (no call handed between worker threads).
    #[arg(long)]
    current_thread: bool,
}

#[derive(Args, Debug)]
struct EchoArgs {
    /// Where to serve (HOST:PORT; port 0 picks one, printed on stderr).
    #[arg(long, value_name = "HOST:PORT")]
    listen: String,
    /// A file that will hold the PID of the load generator, whose CPU is then measured
    /// over the same spans of reads.
    #[arg(long, value_name = "FILE")]
    watch_pid_file: Option<PathBuf>,
}

/// The workload, shared by `run` and `compare`.
#[derive(Args, Debug, Clone)]
struct Workload {
    /// Client sessions (simulated clients).
    #[arg(long, default_value_t = 100, value_name = "N")]
    sessions: u64,
    /// gRPC connections the sessions share: in all, over the proxies in turn; direct to
    /// the cells, C to each cell.
    #[arg(long, default_value_t = 8, value_name = "C")]
    connections: u64,
    /// The measured window (operations run only in it), e.g. 30s, 2m.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "D")]
    duration: Duration,
    /// Over how long the sessions are created before the window (spreads their KeepAlives).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "D")]
    ramp: Duration,
    /// Reads per second, in total (Poisson arrivals).
    #[arg(long, default_value_t = 100.0, value_name = "R")]
    read_rate: f64,
    /// Writes per second, in total.
    #[arg(long, default_value_t = 10.0, value_name = "W")]
    write_rate: f64,
    /// Lock operations (TryAcquire + Release) per second, in total.
    #[arg(long, default_value_t = 0.0, value_name = "L")]
    lock_rate: f64,
    /// Number of files, /loadtest/d{i mod D}/f{i} for i < F (at most 1,000,000), created
    /// before the run if absent.
    #[arg(long, default_value_t = 100, value_name = "F")]
    files: u64,
    /// The directories the files are spread over (1–65,536): a directory's files share a
    /// slot, so more directories spread the files over more slots (and cells).
    #[arg(long, default_value_t = warren_loadtest::workload::DIRS, value_name = "D")]
    dirs: u64,
    /// Seed the arrivals and each one's choice of client and file, so that runs send the
    /// same operations in the same order (the servers' timing still varies).
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Zipf exponent of the files' popularity (0: uniform).
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    zipf: f64,
    /// Admin addresses (HOST:PORT) of proxies and cells whose /metrics are scraped before and
    /// after the run, for the KeepAlive absorption factor and each cell's RPC rate. With
    /// --deploy, every member of the deployment unless given.
    #[arg(long, value_delimiter = ',', value_name = "ADMIN_ADDR,…")]
    metrics: Vec<String>,
}

/// A deployment to launch, shared by `run` and `compare`.
#[derive(Args, Debug, Clone)]
struct Deploy {
    /// Launch a deployment of separate processes on loopback first, like `warren dev`:
    /// `dev[:cells=N,proxies=M,tls=on]` (3 cells and 2 proxies by default), on embedded
    /// stores in a temporary directory; it is stopped when the run ends. `tls=on`: mutual
    /// TLS on every hop, with a CA and certificates made for it (the load generator's
    /// principal is warren:loadtest).
    #[arg(long, value_name = "dev[:cells=N,proxies=M,tls=on]")]
    deploy: Option<DeploySpec>,
    /// With --deploy: the session lease of the deployment (its cells' lease and its
    /// proxies' client lease), e.g. 2s for quick fault runs. Default: Warren's 12 s.
    #[arg(long, value_parser = parse_duration, value_name = "D", requires = "deploy")]
    lease: Option<Duration>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Where the load goes: `proxies=HOST:PORT[,…]` (through proxies), or
    /// `cells=META_HOST:PORT` (direct to the cells, routed by the partition map in that meta
    /// cell). With --deploy: `proxies` (the default) or `cells`.
    #[arg(long, value_name = "proxies=ADDR,…|cells=META_ADDR")]
    target: Option<String>,
    #[command(flatten)]
    workload: Workload,
    #[command(flatten)]
    deploy: Deploy,
    /// With --deploy: kill -9 a member at a time into the measured window:
    /// `proxy@30s` (proxy 1), `proxy:2@30s`, `master:c1@30s`, `master:meta@30s`. Repeatable.
    #[arg(long, value_name = "MEMBER@TIME", requires = "deploy")]
    kill: Vec<String>,
    /// With --deploy: start a killed member again (same address and data) at a time into
    /// the measured window, e.g. `master:c1@33s`. Repeatable.
    #[arg(long, value_name = "MEMBER@TIME", requires = "deploy")]
    restart: Vec<String>,
    /// With --deploy (through the proxies): at a time into the measured window, start one
    /// more data cell, plan the move of its share of the slots to it and apply it, follow
    /// the job to its end, and report the move and the clients' latency and errors during
    /// it against before it: `add-cell@10s`.
    #[arg(long, value_name = "add-cell@TIME", requires = "deploy",
          value_parser = parse_reshard)]
    reshard: Option<ReshardSpec>,
    /// With --reshard: slots the job commits together, each batch one new map (default:
    /// the job's, 16).
    #[arg(long, value_name = "N", requires = "reshard",
          value_parser = clap::value_parser!(u32).range(1..))]
    reshard_slots_per_batch: Option<u32>,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write a self-contained HTML report to FILE: the run's metadata, the member
    /// table, and SVG plots over time of offered against achieved rate, latency
    /// percentiles, errors and retries, and session states.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// At the end, remove the run's files and directories under /loadtest/ (and /loadtest
    /// itself when nothing else is left in it), and say how many nodes went. Default: they
    /// stay, so that the next run finds its files already made.
    #[arg(long)]
    cleanup: bool,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// The meta cell (direct runs route by its map). Not with --deploy.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "deploy")]
    meta: Option<String>,
    /// The proxies (proxied runs). Not with --deploy.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "HOST:PORT,…",
        conflicts_with = "deploy"
    )]
    proxies: Vec<String>,
    #[command(flatten)]
    workload: Workload,
    #[command(flatten)]
    deploy: Deploy,
    /// Also write both reports and the ratios as JSON to FILE
    /// (`{"direct": …, "proxies": …, "ratios": …}`, each report with its run metadata).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write a self-contained HTML report to FILE: the run's metadata, the ratios, and
    /// both runs side by side (operations, members, plots over time).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct PlanArgs {
    /// Client sessions the fleet will hold.
    #[arg(long, value_name = "N")]
    clients: u64,
    /// Reads per second the fleet makes, in total.
    #[arg(long, default_value_t = 0.0, value_name = "R")]
    read_rate: f64,
    /// Writes per second, in total.
    #[arg(long, default_value_t = 0.0, value_name = "W")]
    write_rate: f64,
    /// Lock operations per second, in total.
    #[arg(long, default_value_t = 0.0, value_name = "L")]
    lock_rate: f64,
    /// Reports of `warren loadtest run --json` whose figures prove capacity. Repeatable.
    #[arg(long, value_name = "RESULT.json")]
    from: Vec<PathBuf>,
    /// Spare capacity on top of the demand: 0.5 means size for 1.5× the demand.
    #[arg(long, default_value_t = 0.5, value_name = "H")]
    headroom: f64,
    /// Also write the plan as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

async fn echo_cmd(a: EchoArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", a.listen))?;
    eprintln!("echo: serving on {}", listener.local_addr()?);
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    warren_loadtest::echo::serve(listener, a.watch_pid_file, stop).await
}

async fn forward_cmd(a: ForwardArgs) -> anyhow::Result<()> {
    let kind = if a.bare_h2 {
        warren_loadtest::forward::Upstream::BareH2
    } else {
        warren_loadtest::forward::Upstream::Channel
    };
    let current_thread = a.current_thread;
    let serve = async move {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("--listen {}: cannot bind", a.listen))?;
        eprintln!(
            "forward: serving on {}, to {} over {} connection(s) ({kind:?}{})",
            listener.local_addr()?,
            a.upstream,
            a.channels,
            if current_thread { ", one thread" } else { "" }
        );
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        warren_loadtest::forward::serve(listener, &a.upstream, a.channels, kind, stop).await
    };
    if !current_thread {
        return serve.await;
    }
    // Everything (the listener included) on a runtime of its own, on a thread of its own.
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(serve)
    })
    .await?
}

/// Runs the subcommand on a runtime of `--threads` workers.
pub fn run(args: LoadtestArgs) -> ExitCode {
    let deploys = match &args.command {
        LoadtestCommand::Run(a) => a.deploy.deploy.is_some(),
        LoadtestCommand::Compare(a) => a.deploy.deploy.is_some(),
        _ => false,
    };
    if deploys && args.tls.cacert.is_some() {
        eprintln!(
            "error: --cacert/--cert/--key (or WARREN_CACERT…) with --deploy: a deployment \
             --deploy launches makes its own certificates; drop the TLS flags and add tls=on to \
             it (e.g. --deploy dev:cells=1,proxies=1,tls=on), or run against your TLS \
             deployment with --target"
        );
        return ExitCode::from(2);
    }
    if let Err(e) = args.tls.install() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    crate::runtime::block_on(args.threads.map(usize::from), subcommand(args.command))
}

async fn subcommand(command: LoadtestCommand) -> ExitCode {
    let result = match command {
        LoadtestCommand::Run(a) => run_cmd(a).await,
        LoadtestCommand::Compare(a) => compare_cmd(a).await,
        LoadtestCommand::Plan(a) => plan_cmd(a),
        LoadtestCommand::Echo(a) => echo_cmd(a).await,
        LoadtestCommand::Forward(a) => forward_cmd(a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A deployment this command launched: its members, faults, and its directory.
struct Launched {
    deployment: tokio::sync::Mutex<Option<Deployment>>,
    meta: String,
    proxies: Vec<String>,
    admins: Vec<String>,
    /// Every member by name with its gRPC and admin addresses, for the report.
    members: Vec<MemberInfo>,
    /// What was launched (the lease filled in from --lease).
    spec: DeploySpec,
    _dir: tempfile::TempDir,
}

impl Launched {
    async fn start(d: &Deploy) -> anyhow::Result<Option<Arc<Launched>>> {
        let Some(spec) = &d.deploy else {
            return Ok(None);
        };
        let mut spec = spec.clone();
        spec.lease = d.lease.or(spec.lease);
        let dir = tempfile::Builder::new()
            .prefix("warren-loadtest-")
            .tempdir()
            .context("making a directory for the deployment")?;
        eprintln!(
            "launching {} cell(s) and {} proxy(ies){} in {}",
            spec.cells,
            spec.proxies,
            if spec.tls { " with mutual TLS" } else { "" },
            dir.path().display()
        );
        let deployment = Deployment::start(&spec, dir.path()).await?;
        // The run's sessions, checks and scrapes dial with the deployment's client identity.
        if let Some(tls) = deployment.client_tls() {
            warren_tls::install(tls);
        }
        let cell_admins = deployment.cell_admin_addrs();
        let member = |name: String, role: &str, addr: String, admin: Option<&String>| MemberInfo {
            name,
            role: role.into(),
            addr,
            admin: admin.cloned(),
            store: None,
        };
        let mut members = vec![member(
            "meta".into(),
            "meta",
            deployment.meta_addr(),
            cell_admins.first(),
        )];
        for (k, (name, addr)) in deployment
            .cell_names()
            .into_iter()
            .zip(deployment.cell_addrs())
            .enumerate()
        {
            members.push(member(name, "cell", addr, cell_admins.get(k + 1)));
        }
        for (k, (addr, admin)) in deployment
            .proxy_addrs()
            .into_iter()
            .zip(deployment.proxy_admin_addrs())
            .enumerate()
        {
            members.push(member(format!("p{}", k + 1), "proxy", addr, Some(&admin)));
        }
        Ok(Some(Arc::new(Launched {
            members,
            spec,
            meta: deployment.meta_addr(),
            proxies: deployment.proxy_addrs(),
            admins: deployment.admin_addrs(),
            deployment: tokio::sync::Mutex::new(Some(deployment)),
            _dir: dir,
        })))
    }

    async fn stop(&self) {
        if let Some(d) = self.deployment.lock().await.take() {
            if let Err(e) = d.stop().await {
                eprintln!("warning: stopping the deployment: {e:#}");
            }
        }
    }
}

impl Injector for Launched {
    fn inject<'a>(
        &'a self,
        action: Action,
        member: &'a str,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>> {
        self.deployment.inject(action, member)
    }

    fn processes(&self) -> Pin<Box<dyn Future<Output = Vec<MemberProcess>> + Send + '_>> {
        self.deployment.processes()
    }

    fn add_cell(
        &self,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<warren_loadtest::deploy::AddedCell>> + Send + '_>>
    {
        self.deployment.add_cell()
    }
}

/// `--reshard`'s value (see [`ReshardSpec`]).
fn parse_reshard(s: &str) -> Result<ReshardSpec, String> {
    s.parse()
}

/// The workload's settings for `target`.
fn config(w: &Workload, target: Target, metrics: Vec<String>, faults: Vec<Fault>) -> Config {
    Config {
        target,
        sessions: w.sessions,
        connections: w.connections,
        duration: w.duration,
        ramp: w.ramp,
        read_rate: w.read_rate,
        write_rate: w.write_rate,
        lock_rate: w.lock_rate,
        files: w.files,
        dirs: w.dirs,
        zipf: w.zipf,
        metrics,
        progress: true,
        faults,
        seed: w.seed,
        reshard: None,
    }
}

/// The target of `run`: the full form, or with a launched deployment `proxies`/`cells`.
fn target_of(given: Option<&str>, launched: Option<&Launched>) -> anyhow::Result<Target> {
    match (given, launched) {
        (Some(t), None) => t.parse().map_err(anyhow::Error::msg),
        (None, None) => bail!(
            "give --target proxies=HOST:PORT[,…] or --target cells=META_HOST:PORT, or launch a \
             deployment with --deploy dev"
        ),
        (None | Some("proxies"), Some(l)) => Ok(Target::Proxies(l.proxies.clone())),
        (Some("cells"), Some(l)) => Ok(Target::Cells(l.meta.clone())),
        (Some(t), Some(_)) => bail!(
            "--target {t}: with --deploy, give --target proxies or --target cells (the \
             addresses are the launched deployment's)"
        ),
    }
}

/// The faults of `run`, each checked against the deployment `--deploy` will launch (a
/// member it will not have is refused before anything starts).
fn faults(a: &RunArgs) -> anyhow::Result<Vec<Fault>> {
    let spec = a.deploy.deploy.clone().unwrap_or_default();
    let mut out = Vec::new();
    for (action, list) in [(Action::Kill, &a.kill), (Action::Restart, &a.restart)] {
        for s in list {
            let f = Fault::parse(action, s).map_err(anyhow::Error::msg)?;
            let m = f
                .member
                .parse::<Member>()
                .map_err(|e| anyhow::anyhow!("--{} {s}: {e}", action.name()))?;
            member_exists(&m, &spec)
                .map_err(|e| anyhow::anyhow!("--{} {s}: {e}", action.name()))?;
            out.push(f);
        }
    }
    Ok(out)
}

/// `--reshard`, checked before anything is launched: through the proxies, inside the
/// window.
fn check_reshard(a: &RunArgs) -> anyhow::Result<()> {
    let Some(r) = &a.reshard else {
        return Ok(());
    };
    if a.target.as_deref() == Some("cells") {
        bail!(
            "--reshard {r} runs only through the proxies: direct clients here route by the map \
             read at the start and do not follow a reshard; drop --target cells"
        );
    }
    if r.at >= a.workload.duration {
        bail!(
            "--reshard {r} is not inside the measured window (--duration {}): give a time \
             before its end",
            warren_config::format_duration(a.workload.duration)
        );
    }
    Ok(())
}

/// Whether `spec`'s deployment has member `m`: proxies 1..=M, cells `meta` and c1..=cN.
fn member_exists(m: &Member, spec: &DeploySpec) -> Result<(), String> {
    match m {
        Member::Proxy(j) if (1..=spec.proxies).contains(j) => Ok(()),
        Member::Proxy(j) => Err(format!(
            "there is no proxy {j}: the deployment has {} (proxy:1 … proxy:{})",
            spec.proxies, spec.proxies
        )),
        Member::Master(c) if c == "meta" => Ok(()),
        Member::Master(c)
            if c.strip_prefix('c')
                .and_then(|k| k.parse::<u16>().ok())
                .is_some_and(|k| (1..=spec.cells).contains(&k)) =>
        {
            Ok(())
        }
        Member::Master(c) => Err(format!(
            "there is no cell {c}: the deployment has meta and c1 … c{}",
            spec.cells
        )),
    }
}

/// The deployment's shape for the report: all of it for a launched deployment; for a
/// `--target` run what the target and the map gave (`report.members`) and whether the
/// load generator dialled with TLS.
fn deployment_shape(launched: Option<&Launched>, report: &Report, tls: bool) -> DeploymentShape {
    match launched {
        Some(l) => DeploymentShape {
            launched: true,
            cells: Some(u64::from(l.spec.cells)),
            proxies: Some(u64::from(l.spec.proxies)),
            lease: Some(match l.spec.lease {
                Some(d) => warren_config::format_duration(d),
                None => format!(
                    "{} (the default)",
                    warren_config::format_duration(warren_config::defaults::LEASE)
                ),
            }),
            store: Some("embedded, one replica per cell".into()),
            tls: l.spec.tls,
        },
        None => {
            let count = |role: &str| report.members.iter().filter(|m| m.role == role).count();
            // The stores the cells' /status pages gave (--metrics at their admin ports).
            let mut stores: Vec<&str> = report
                .members
                .iter()
                .filter_map(|m| m.store.as_deref())
                .collect();
            stores.sort_unstable();
            stores.dedup();
            DeploymentShape {
                launched: false,
                // Direct to the cells the map named them all; through proxies the cells
                // are behind them, not known here.
                cells: (report.target == "cells").then(|| count("cell") as u64),
                proxies: (report.target == "proxies").then(|| count("proxy") as u64),
                lease: None,
                store: (!stores.is_empty()).then(|| stores.join(", ")),
                tls,
            }
        }
    }
}

async fn run_cmd(a: RunArgs) -> anyhow::Result<()> {
    let command: Vec<String> = std::env::args().collect();
    let started = RunInfo::starting_now(&command, crate::version(), DeploymentShape::default());
    let faults = faults(&a)?;
    check_reshard(&a)?;
    let launched = Launched::start(&a.deploy).await?;
    let result = async {
        let target = target_of(a.target.as_deref(), launched.as_deref())?;
        let metrics = match (&launched, a.workload.metrics.is_empty()) {
            (Some(l), true) => l.admins.clone(),
            _ => a.workload.metrics.clone(),
        };
        let mut cfg = config(&a.workload, target, metrics, faults);
        cfg.reshard = a.reshard.clone().map(|mut r| {
            r.slots_per_batch = a.reshard_slots_per_batch.unwrap_or(0);
            r
        });
        let injector = launched.clone().map(|l| l as Arc<dyn Injector>);
        let report = tokio::select! {
            r = warren_loadtest::run_with(cfg.clone(), injector) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }?;
        // While the deployment still runs: the run's nodes under /loadtest/.
        let cleaned = match a.cleanup {
            true => Some(warren_loadtest::run::cleanup(&cfg).await),
            false => None,
        };
        Ok::<_, anyhow::Error>((report, cleaned))
    }
    .await;
    if let Some(l) = &launched {
        l.stop().await;
    }
    let (mut report, cleaned) = result?;
    if let Some(l) = &launched {
        report.members = l.members.clone();
    }
    let tls = warren_tls::installed().is_some();
    report.run = Some(RunInfo {
        deployment: deployment_shape(launched.as_deref(), &report, tls),
        ..started
    });
    print!("{}", report.summary());
    match cleaned {
        Some(Ok(c)) => {
            println!(
                "cleanup: removed {} node{} under /loadtest/",
                c.removed,
                if c.removed == 1 { "" } else { "s" }
            );
            if !c.left.is_empty() {
                println!(
                    "cleanup: left {} (other nodes are in it: an earlier run's? remove them with \
                     `warren ctl rm`)",
                    c.left.join(", ")
                );
            }
        }
        Some(Err(e)) => eprintln!("warning: --cleanup: {e:#}"),
        None => {}
    }
    let mut written = Vec::new();
    if let Some(path) = &a.json {
        write_json(path, &report)?;
        written.push(("JSON", path));
    }
    if let Some(path) = &a.html {
        std::fs::write(path, warren_loadtest::html::render(&report))
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(("HTML", path));
    }
    for (kind, path) in written {
        let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        println!("{kind} report written to {}", shown.display());
    }
    Ok(())
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("encoding the report")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Both reports of `compare` and their ratios.
#[derive(Serialize)]
struct Comparison {
    direct: Report,
    proxies: Report,
    ratios: warren_loadtest::report::Ratios,
}

async fn compare_cmd(a: CompareArgs) -> anyhow::Result<()> {
    let command: Vec<String> = std::env::args().collect();
    let started = RunInfo::starting_now(&command, crate::version(), DeploymentShape::default());
    let launched = Launched::start(&a.deploy).await?;
    let result = async {
        let (meta, proxies, metrics) = match &launched {
            Some(l) => {
                let metrics = if a.workload.metrics.is_empty() {
                    l.admins.clone()
                } else {
                    a.workload.metrics.clone()
                };
                (l.meta.clone(), l.proxies.clone(), metrics)
            }
            None => {
                let Some(meta) = a.meta.clone() else {
                    bail!("give --meta HOST:PORT and --proxies HOST:PORT,… or --deploy dev");
                };
                if a.proxies.is_empty() {
                    bail!("give --proxies HOST:PORT,… (or --deploy dev)");
                }
                (meta, a.proxies.clone(), a.workload.metrics.clone())
            }
        };
        eprintln!("1/2: direct to the cells (meta cell {meta})");
        let direct = warren_loadtest::run(config(
            &a.workload,
            Target::Cells(meta),
            metrics.clone(),
            Vec::new(),
        ))
        .await
        .context("the direct run")?;
        eprintln!("2/2: through the proxies {}", proxies.join(","));
        let proxied = warren_loadtest::run(config(
            &a.workload,
            Target::Proxies(proxies),
            metrics,
            Vec::new(),
        ))
        .await
        .context("the run through the proxies")?;
        Ok((direct, proxied))
    };
    let result = tokio::select! {
        r = result => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(l) = &launched {
        l.stop().await;
    }
    let (mut direct, mut proxied) = result?;
    // Each side's metadata: the same date, version and command, its own deployment shape.
    let tls = warren_tls::installed().is_some();
    for report in [&mut direct, &mut proxied] {
        if let Some(l) = &launched {
            report.members = l.members.clone();
        }
        report.run = Some(RunInfo {
            deployment: deployment_shape(launched.as_deref(), report, tls),
            ..started.clone()
        });
    }
    let ratios = warren_loadtest::report::Ratios::of(&proxied, &direct);
    print!("{}", comparison_header(&direct, &proxied));
    println!("=== direct to the cells\n{}", direct.summary());
    println!("=== through the proxies\n{}", proxied.summary());
    print!("{}", ratios.summary());
    let mut written = Vec::new();
    if let Some(path) = &a.html {
        std::fs::write(
            path,
            warren_loadtest::html::render_comparison(&direct, &proxied, &ratios),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        written.push(("HTML", path));
    }
    if let Some(path) = &a.json {
        write_json(
            path,
            &Comparison {
                direct,
                proxies: proxied,
                ratios,
            },
        )?;
        written.insert(0, ("JSON", path));
    }
    for (kind, path) in written {
        let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        println!("{kind} report written to {}", shown.display());
    }
    Ok(())
}

/// `compare`'s run metadata for the terminal: when, by which build, the command line, and
/// each side's deployment.
fn comparison_header(direct: &Report, proxied: &Report) -> String {
    let mut s = String::new();
    if let Some(run) = direct.run.as_ref() {
        s.push_str(&format!(
            "run: {} by warren {}\ncommand: {}\n",
            run.started_at, run.version, run.command
        ));
    }
    for (side, r) in [("direct", direct), ("through the proxies", proxied)] {
        if let Some(run) = r.run.as_ref() {
            s.push_str(&format!(
                "deployment, {side}: {}\n",
                run.deployment.describe()
            ));
        }
    }
    s.push('\n');
    s
}

fn plan_cmd(a: PlanArgs) -> anyhow::Result<()> {
    use warren_loadtest::plan;
    let mut reports = Vec::new();
    for path in &a.from {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        reports.push((path.display().to_string(), text));
    }
    let capacity = plan::Capacity::from_json(&reports, &plan::Criteria::default())?;
    let demand = plan::Demand {
        clients: a.clients,
        read_rate: a.read_rate,
        write_rate: a.write_rate,
        lock_rate: a.lock_rate,
    };
    let p = plan::plan(&demand, &capacity, a.headroom).map_err(anyhow::Error::msg)?;
    print!("{}", p.summary());
    if let Some(path) = &a.json {
        write_json(path, &p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_name_only_members_the_deployment_has() {
        let spec: DeploySpec = "dev:cells=2,proxies=3".parse().unwrap();
        let ok = |s: &str| member_exists(&s.parse().unwrap(), &spec);
        assert_eq!(ok("proxy"), Ok(()));
        assert_eq!(ok("proxy:3"), Ok(()));
        assert_eq!(ok("master:meta"), Ok(()));
        assert_eq!(ok("master:c2"), Ok(()));
        assert!(ok("proxy:4").unwrap_err().contains("no proxy 4"));
        assert!(ok("master:c3").unwrap_err().contains("no cell c3"));
        assert!(ok("master:x1").unwrap_err().contains("no cell x1"));
    }

    #[test]
    fn a_given_deployment_is_described_by_what_the_run_knows() {
        let member = |name: &str, role: &str| MemberInfo {
            name: name.into(),
            role: role.into(),
            addr: "127.0.0.1:1".into(),
            admin: None,
            store: None,
        };
        let through = Report {
            target: "proxies".into(),
            members: vec![member("p1", "proxy"), member("p2", "proxy")],
            ..Default::default()
        };
        let shape = deployment_shape(None, &through, true);
        assert_eq!(
            shape,
            DeploymentShape {
                launched: false,
                cells: None,
                proxies: Some(2),
                lease: None,
                store: None,
                tls: true,
            }
        );
        let direct = Report {
            target: "cells".into(),
            members: vec![
                member("meta", "meta"),
                member("c1", "cell"),
                member("c2", "cell"),
            ],
            ..Default::default()
        };
        let shape = deployment_shape(None, &direct, false);
        assert_eq!((shape.cells, shape.proxies), (Some(2), None));
    }

    #[test]
    fn targets_with_and_without_a_deployment() {
        assert_eq!(
            target_of(Some("proxies=a:1"), None).unwrap(),
            Target::Proxies(vec!["a:1".into()])
        );
        assert!(target_of(None, None)
            .unwrap_err()
            .to_string()
            .contains("--deploy"));
        assert!(target_of(Some("cells"), None).is_err());
    }
}
