//! The proxy benchmark as a thin scenario over the load tester
//! (`warren_loadtest`; there is one load tester): for each step of client sessions, idle
//! (KeepAlives only) through one proxy in front of one cell, a `warren loadtest run` on a
//! deployment it launches from the release binary (`dev:cells=1,proxies=1`), and one
//! markdown row: the KeepAlive absorption factor (client KeepAlives at the proxy ÷
//! KeepAlives at the cells, from their `/metrics`), the proxy's memory (RSS at the window's
//! end) and CPU and the cell's CPU over the window (the report's `processes`), jeopardy and
//! expiries; at the end, the memory per idle session at the proxy (the RSS difference
//! between the smallest and the largest step ÷ their difference in sessions). Latency
//! direct vs through the proxy is `warren loadtest compare` (docs/loadtest.md).
//!
//! With `--tls`, every hop is mutual TLS (the deployment's `tls=on`), for the cost of TLS
//! against a plaintext run (docs/performance.md, "The cost of TLS").
//!
//! ```text
//! cargo build --release
//! cargo run --release --example proxy_bench -- [--bin target/release/warren] \
//!     [--sessions-steps 1000,5000,10000,20000] [--connections 64] [--window 15s] [--ramp 11s] \
//!     [--tls]
//! ```

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use warren_loadtest::deploy::{DeploySpec, Deployment};
use warren_loadtest::fault::Injector;
use warren_loadtest::report::ProcessReport;
use warren_loadtest::run::parse_duration;
use warren_loadtest::{Config, Target};

#[derive(Parser, Debug)]
#[command(about = "Proxy KeepAlive absorption per number of sessions")]
struct Args {
    /// The `warren` binary. Default: `warren` next to this example's directory.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Client sessions at each step, comma separated (each step on a fresh deployment).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,20000")]
    sessions_steps: Vec<u64>,
    /// gRPC connections the sessions share.
    #[arg(long, default_value_t = 64)]
    connections: u64,
    /// The measured window of each step (at least 13 s: one KeepAlive per session in it).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    window: Duration,
    /// Over how long each step's sessions are created (spreads their KeepAlives).
    #[arg(long, default_value = "11s", value_parser = parse_duration)]
    ramp: Duration,
    /// Mutual TLS on every hop (`--deploy dev:…,tls=on`: certificates made for each step's
    /// deployment; the load generator dials with its own), to set against a plaintext run.
    #[arg(long)]
    tls: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match args.bin {
        Some(b) => b,
        // target/release/examples/proxy_bench → target/release/warren
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .context("no directory above this example")?
            .join("warren"),
    };
    println!(
        "| sessions | created | absorption factor | KeepAlives at the proxy / at the cell | \
         proxy RSS MiB | proxy CPU % of a core | proxy CPU µs per client KeepAlive | \
         cell CPU % of a core | jeopardy | expired |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // (sessions created, proxy RSS in bytes) of each step that measured it.
    let mut proxy_rss: Vec<(u64, u64)> = Vec::new();
    for &sessions in &args.sessions_steps {
        let dir = tempfile::tempdir()?;
        let spec = DeploySpec {
            cells: 1,
            proxies: 1,
            lease: None,
            tls: args.tls,
        };
        let deployment = Deployment::start_with(&bin, &spec, dir.path()).await?;
        if let Some(tls) = deployment.client_tls() {
            warren_tls::install(tls);
        }
        let cfg = Config {
            target: Target::Proxies(deployment.proxy_addrs()),
            sessions,
            connections: args.connections,
            duration: args.window,
            ramp: args.ramp,
            read_rate: 0.0,
            write_rate: 0.0,
            lock_rate: 0.0,
            files: 1,
            dirs: warren_loadtest::workload::DIRS,
            zipf: 1.0,
            metrics: deployment.admin_addrs(),
            progress: true,
            faults: Vec::new(),
            seed: None,
            reshard: None,
        };
        // Shared with the run so that it measures the processes over its window.
        let shared = Arc::new(Mutex::new(Some(deployment)));
        let report =
            warren_loadtest::run_with(cfg, Some(shared.clone() as Arc<dyn Injector>)).await;
        if let Some(d) = shared.lock().await.take() {
            d.stop().await?;
        }
        let r = report?;
        let (at_proxy, at_cell) = r
            .keepalives
            .as_ref()
            .map_or((0.0, 0.0), |k| (k.client_at_proxies, k.at_cells));
        let member = |name: &str| r.processes.iter().find(|p| p.member == name);
        let proxy = member("p1");
        if let Some(rss) = proxy.and_then(|p| p.rss_bytes) {
            proxy_rss.push((r.sessions.created, rss));
        }
        let per_keepalive = proxy
            .and_then(|p| p.cpu_s)
            .filter(|_| at_proxy > 0.0)
            .map_or_else(|| "-".to_string(), |c| format!("{:.1}", c * 1e6 / at_proxy));
        println!(
            "| {sessions} | {} | {} | {at_proxy:.0} / {at_cell:.0} | {} | {} | {per_keepalive} | {} | {} | {} |",
            r.sessions.created,
            r.absorption_factor
                .map_or_else(|| "∞".to_string(), |f| format!("{f:.0}")),
            proxy
                .and_then(|p| p.rss_bytes)
                .map_or_else(|| "-".to_string(), |b| format!("{:.1}", b as f64 / MIB)),
            cpu_percent(proxy),
            cpu_percent(member("c1")),
            r.sessions.jeopardy,
            r.sessions.expired,
        );
    }
    let smallest = proxy_rss.iter().min_by_key(|(n, _)| *n);
    let largest = proxy_rss.iter().max_by_key(|(n, _)| *n);
    match (smallest, largest) {
        (Some(&(n0, rss0)), Some(&(n1, rss1))) if n1 > n0 => println!(
            "\nmemory per idle session at the proxy: {:.1} KiB (RSS {:.1} → {:.1} MiB from {n0} \
             to {n1} sessions)",
            (rss1 as f64 - rss0 as f64) / (n1 - n0) as f64 / 1024.0,
            rss0 as f64 / MIB,
            rss1 as f64 / MIB,
        ),
        _ => println!(
            "\nmemory per idle session at the proxy: needs two steps with different numbers \
             of sessions"
        ),
    }
    Ok(())
}

/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// A member's CPU over the window as % of one core, to 0.1 (`-` when not measured).
fn cpu_percent(p: Option<&ProcessReport>) -> String {
    p.and_then(ProcessReport::cpu_share)
        .map_or_else(|| "-".to_string(), |s| format!("{:.1}", s * 100.0))
}
