//! `warren loadtest`: a simulated fleet against a running deployment (SPEC §11). The work
//! lives in the `warren-loadtest` crate; this parses the command line and prints the report.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use warren_loadtest::run::parse_duration;
use warren_loadtest::{Config, Target};

#[derive(Args, Debug)]
pub struct LoadtestArgs {
    #[command(subcommand)]
    command: LoadtestCommand,
}

#[derive(Subcommand, Debug)]
enum LoadtestCommand {
    /// Run a workload: N sessions over C connections, each with its KeepAlive loop, and
    /// open-loop (Poisson) reads, writes and lock operations on /loadtest/f0.. with Zipf
    /// popularity; prints a summary (and writes JSON with --json, HTML with --html).
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Where the load goes: `proxies=HOST:PORT[,…]` (through proxies), or
    /// `cells=META_HOST:PORT` (directly to the cells; not built yet).
    #[arg(long, value_name = "proxies=ADDR,…|cells=META_ADDR")]
    target: Target,
    /// Client sessions.
    #[arg(long, default_value_t = 100, value_name = "N")]
    sessions: u64,
    /// gRPC connections the sessions share (round-robin; over the proxies in turn).
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
    /// Number of files, /loadtest/f0 … f{F-1}.
    #[arg(long, default_value_t = 100, value_name = "F")]
    files: u64,
    /// Zipf exponent of the files' popularity (0: uniform).
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    zipf: f64,
    /// Session lease (not supported yet: the proxies set their clients' leases, see
    /// `warren proxy --client-lease`).
    #[arg(long, value_parser = parse_duration, value_name = "D")]
    lease: Option<Duration>,
    /// Admin addresses (HOST:PORT) of proxies and cells whose /metrics are scraped before and
    /// after the run, for the KeepAlive absorption factor and each cell's RPC rate.
    #[arg(long, value_delimiter = ',', value_name = "ADMIN_ADDR,…")]
    metrics: Vec<String>,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write a self-contained HTML report to FILE, with SVG plots of latency
    /// percentiles, throughput and session states over time.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

pub async fn run(args: LoadtestArgs) -> ExitCode {
    let LoadtestCommand::Run(a) = args.command;
    if a.lease.is_some() {
        eprintln!(
            "error: --lease is not supported yet: the proxies set their clients' leases \
             (warren proxy --client-lease)"
        );
        return ExitCode::from(2);
    }
    let cfg = Config {
        target: a.target,
        sessions: a.sessions,
        connections: a.connections,
        duration: a.duration,
        ramp: a.ramp,
        read_rate: a.read_rate,
        write_rate: a.write_rate,
        lock_rate: a.lock_rate,
        files: a.files,
        zipf: a.zipf,
        metrics: a.metrics,
        progress: true,
    };
    let result = tokio::select! {
        r = warren_loadtest::run(cfg) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.summary());
    if let Some(path) = a.json {
        let text = match serde_json::to_string_pretty(&report) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: encoding the report: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(&path, text + "\n") {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = a.html {
        if let Err(e) = std::fs::write(&path, warren_loadtest::html::render(&report)) {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
