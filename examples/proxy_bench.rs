//! The proxy benchmark of issue 5 as a thin scenario over the load tester
//! (`warren_loadtest`; there is one load tester): for each step of client sessions, idle
//! (KeepAlives only) through one proxy in front of one cell, a `warren loadtest run` on a
//! deployment it launches from the release binary (`dev:cells=1,proxies=1`), and one
//! markdown row: the KeepAlive absorption factor (client KeepAlives at the proxy ÷
//! KeepAlives at the cells, from their `/metrics`), jeopardy and expiries. Latency direct
//! vs through the proxy is `warren loadtest compare` (docs/loadtest.md).
//!
//! ```text
//! cargo build --release
//! cargo run --release --example proxy_bench -- [--bin target/release/warren] \
//!     [--sessions-steps 1000,5000,10000,20000] [--connections 64] [--window 15s] [--ramp 11s]
//! ```

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use warren_loadtest::deploy::{DeploySpec, Deployment};
use warren_loadtest::run::parse_duration;
use warren_loadtest::{Config, Target};

#[derive(Parser, Debug)]
#[command(about = "Proxy KeepAlive absorption per number of sessions (issue 5)")]
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
    println!("| sessions | created | absorption factor | KeepAlives at the proxy / at the cell | jeopardy | expired |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for &sessions in &args.sessions_steps {
        let dir = tempfile::tempdir()?;
        let spec = DeploySpec {
            cells: 1,
            proxies: 1,
            lease: None,
        };
        let deployment = Deployment::start_with(&bin, &spec, dir.path()).await?;
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
            zipf: 1.0,
            metrics: deployment.admin_addrs(),
            progress: true,
            faults: Vec::new(),
        };
        let report = warren_loadtest::run(cfg).await;
        deployment.stop().await?;
        let r = report?;
        let (at_proxy, at_cell) = r
            .keepalives
            .as_ref()
            .map_or((0.0, 0.0), |k| (k.client_at_proxies, k.at_cells));
        println!(
            "| {sessions} | {} | {} | {at_proxy:.0} / {at_cell:.0} | {} | {} |",
            r.sessions.created,
            r.absorption_factor
                .map_or_else(|| "∞".to_string(), |f| format!("{f:.0}")),
            r.sessions.jeopardy,
            r.sessions.expired,
        );
    }
    Ok(())
}
