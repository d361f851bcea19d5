//! `warren`: the one binary. Parses the command line and dispatches to a subcommand;
//! the work lives in the library crates.

mod cell_cmd;
mod ctl;
mod dev;
mod loadtest_cmd;
mod proxy_cmd;
mod runtime;
mod server_cmd;
mod tls_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "warren",
    version,
    about = "Warren: a Chubby-style coordination service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one cell (a master on an embedded store).
    Cell(Box<cell_cmd::CellArgs>),
    /// Run one proxy in front of the given cells.
    Proxy(Box<proxy_cmd::ProxyArgs>),
    /// Run a whole local deployment in one process: a meta cell, data cells and proxies on
    /// embedded stores (for trying Warren out).
    Dev(dev::DevArgs),
    /// Operator and user commands against a running deployment.
    Ctl(ctl::CtlArgs),
    /// Load tests: a simulated fleet of sessions against a running deployment.
    Loadtest(loadtest_cmd::LoadtestArgs),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARREN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Cell(a) => {
            init_tracing();
            runtime::block_on(None, cell_cmd::run(*a))
        }
        // The proxy's runtime has the worker threads its settings give (`--threads`), so
        // they are loaded before the runtime is built.
        Command::Proxy(a) => {
            init_tracing();
            proxy_cmd::run(*a)
        }
        Command::Dev(a) => {
            init_tracing();
            runtime::block_on(None, dev::run(a))
        }
        Command::Ctl(a) => runtime::block_on(None, ctl::run(a)),
        Command::Loadtest(a) => loadtest_cmd::run(a),
    }
}
