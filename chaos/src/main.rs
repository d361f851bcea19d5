//! `warren-chaos`: one seeded chaos session against a real deployment on 127.0.0.1; writes
//! its history and report to `--out` and exits non-zero on any violation
//! (docs/reliability.md, "Chaos").

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use warren_chaos::run::{run, Config};
use warren_chaos::schedule::parse_kinds;

#[derive(Parser, Debug)]
#[command(
    name = "warren-chaos",
    about = "A seeded chaos session against a real Warren deployment on etcd (docs/reliability.md, \"Chaos\")"
)]
struct Args {
    /// The seed of the fault schedule (the same seed replays the same schedule).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// How many faults to apply.
    #[arg(long, default_value_t = 120)]
    faults: usize,
    /// Deal only these fault kinds, comma separated (default: every kind).
    #[arg(long)]
    kinds: Option<String>,
    /// The `warren` binary to run.
    #[arg(long, default_value = "target/release/warren")]
    bin: PathBuf,
    /// Where the history and the report go.
    #[arg(long, default_value = "chaos-out")]
    out: PathBuf,
    /// Clients through the proxies.
    #[arg(long, default_value_t = 4)]
    proxied: usize,
    /// Direct clients (partitioned sessions by the meta cell).
    #[arg(long, default_value_t = 2)]
    direct: usize,
    /// Every write a compare-and-swap: no plain writes, which the client library re-sends
    /// after a transport failure (one call can then take effect twice).
    #[arg(long)]
    no_plain_writes: bool,
    /// A planted bug in every cell (`double-grant`, `drop-write`, `stale-cache`); needs a
    /// `warren` built with the `fault-injection` feature.
    #[arg(long)]
    plant: Option<String>,
    /// Seconds of load before the first fault.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds of load after the last heal, before the final reads.
    #[arg(long, default_value_t = 10)]
    cooldown: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = Args::parse();
    // The in-process clients' own logs, for looking into a violation: off unless
    // `WARREN_CHAOS_LOG` names a filter (`warren_client=debug`); they go to stderr.
    if let Ok(filter) = std::env::var("WARREN_CHAOS_LOG") {
        match tracing_subscriber::EnvFilter::try_new(&filter) {
            Ok(f) => tracing_subscriber::fmt()
                .with_env_filter(f)
                .with_writer(std::io::stderr)
                .init(),
            Err(e) => {
                eprintln!("warren-chaos: WARREN_CHAOS_LOG={filter:?} is not a log filter: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let kinds = match a.kinds.as_deref().map(parse_kinds).transpose() {
        Ok(k) => k.unwrap_or_default(),
        Err(e) => {
            eprintln!("warren-chaos: --kinds: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = Config {
        seed: a.seed,
        faults: a.faults,
        kinds,
        bin: a.bin,
        out: a.out.clone(),
        proxied: a.proxied,
        direct: a.direct,
        plain_writes: !a.no_plain_writes,
        plant: a.plant,
        warmup: Duration::from_secs(a.warmup),
        cooldown: Duration::from_secs(a.cooldown),
    };
    match run(cfg).await {
        Ok(r) => {
            println!("{}", r.to_text());
            println!("report: {}", a.out.join("report.txt").display());
            if r.violations() > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("warren-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}
