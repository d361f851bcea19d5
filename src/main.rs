//! `warren`: the one binary. Parses the command line and dispatches to a subcommand;
//! the work lives in the library crates.

mod cell_cmd;
mod ctl;
mod dev;
mod loadtest_cmd;
mod mirror_cmd;
mod proxy_cmd;
mod runtime;
mod server_cmd;
mod tls_cmd;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

/// The commit this binary was built from (`git describe`, build.rs), if known.
const COMMIT: Option<&str> = option_env!("WARREN_GIT_DESCRIBE");

/// This build: the crate version and, when known, the commit (`0.1.0 (a1b2c3d)`).
fn version() -> String {
    match COMMIT {
        Some(c) if !c.is_empty() => format!("{} ({c})", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    }
}

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
    /// Keep a subtree of one deployment in step in another (docs/mirror.md).
    Mirror(Box<mirror_cmd::MirrorArgs>),
    /// Print a shell completion script: `source <(warren completion bash)`, or save it where
    /// your shell loads completions from.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page of `warren` (roff): `warren man | man -l -`; with --out DIR,
    /// write a page per command (warren.1, warren-ctl.1, …) into DIR.
    Man {
        /// Write every command's page into this directory instead.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
    },
}

/// `warren completion SHELL`.
fn completion(shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(shell, &mut Cli::command(), "warren", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// `warren man [--out DIR]`.
fn man(out: Option<std::path::PathBuf>) -> ExitCode {
    let written = match out {
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
        Some(dir) => std::fs::create_dir_all(&dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir)),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the man page: {e}");
            ExitCode::from(2)
        }
    }
}

/// The log filter: `WARREN_LOG`, else `RUST_LOG` (the tracing ecosystem's usual variable),
/// else `info`; same syntax for both (`warn`, `warren_cell=debug,info`, …). A filter that
/// does not parse is reported and `info` used (docs/ctl.md, "Logging").
fn log_filter() -> tracing_subscriber::EnvFilter {
    for var in ["WARREN_LOG", "RUST_LOG"] {
        match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => {
                match tracing_subscriber::EnvFilter::try_new(&value) {
                    Ok(filter) => return filter,
                    Err(e) => {
                        eprintln!(
                            "warning: {var}={value:?} is not a log filter ({e}); logging at info"
                        )
                    }
                }
                break;
            }
            _ => {}
        }
    }
    tracing_subscriber::EnvFilter::new("info")
}

fn init_tracing() {
    let filter = log_filter();
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
        Command::Mirror(a) => {
            init_tracing();
            runtime::block_on(None, mirror_cmd::run(*a))
        }
        Command::Completion { shell } => completion(shell),
        Command::Man { out } => man(out),
    }
}
