//! `warren ctl`: the operator and user command line, a thin layer over `warren-client`.
//!
//! ```text
//! warren ctl [--endpoint HOST:PORT[,HOST:PORT…] | --proxies HOST:PORT,…] [--json] [--grace DURATION] CMD
//! ```
//!
//! The endpoint defaults to `$WARREN_ENDPOINT`, else `127.0.0.1:7201` (the first proxy of
//! `warren dev`). `--proxies` (or `$WARREN_PROXIES`) names proxies instead: the session keeps to
//! the first in its own consistent-hash order and moves on if that proxy dies. The session's principal is `$WARREN_PRINCIPAL` (empty: anonymous). Paths may be
//! full (`/ls/local/a`) or short (`/a`, in the connected deployment). `--grace` (or
//! `$WARREN_GRACE`) sets the session's grace period: how long it keeps looking for the
//! master after its lease ends before giving up (default 45s; `DURATION` is a number with
//! `ms`, `s`, `m` or `h`, or plain seconds).
//!
//! | command | does | prints (text) |
//! |---|---|---|
//! | `mkdir PATH [--ephemeral]` | creates a directory; fails if it exists | nothing |
//! | `put PATH VALUE [--if-generation N] [--ephemeral]` | writes VALUE (`-`: stdin), creating the file if missing; with `--if-generation` only if the file's content generation is N | nothing |
//! | `cat PATH` | reads the file | its contents, nothing added |
//! | `stat PATH` | reads the metadata, and which cell holds the node | `key: value` lines (below) |
//! | `ls PATH` | lists a directory | one child per line, sorted; directories end in `/` |
//! | `rm PATH` | deletes the node (a directory only when empty) | nothing |
//! | `lock PATH [--shared] [--try] [--hold SECONDS]` | opens with write intent, acquires (waits, or fails at once with `--try`), holds for SECONDS (default: until Ctrl-C), releases | the sequencer once held; session events on stderr (below) |
//! | `check-sequencer SEQUENCER` | asks whether the sequencer is current | `current` (exit 0) or `stale` (exit 1) |
//! | `watch PATH [--count N]` | opens with every event bit; stops after N events (default: at Ctrl-C) | one event per line |
//! | `status` | `Locate` on the first endpoint that answers | `key: value` lines |
//! | `deployment init --meta HOST:PORT[,…] --cell NAME=HOST:PORT[,HOST:PORT…] [--cell …] [--slots S]` | writes the deployment's first partition map (epoch 1; S slots, default 4096, spread evenly over the cells in the order given) to `/ls/<deployment>/warren/map` on the meta cell (`--meta` is the endpoint; `--endpoint`/`--proxies` are ignored); never replaces a map (`ALREADY_EXISTS`) | `initialised deployment D: map epoch 1, S slots over N cells` |
//! | `map show` | reads and checks `/ls/<deployment>/warren/map` | `deployment:`, `map_epoch:`, `slots:` lines, then one line per cell (below) |
//!
//! Text formats:
//!
//! ```text
//! $ warren ctl stat /a
//! path: /ls/local/a
//! cell: c2
//! kind: file
//! instance: 3
//! content_generation: 2
//! lock_generation: 0
//! acl_generation: 0
//! checksum: 0x9a5d1e4f2b3c8d70
//! acl_read: (none)
//! acl_write: (none)
//! acl_change_acl: (none)
//! ephemeral: false
//! child_count: 0
//! length: 5
//! $ warren ctl lock /a --hold 10
//! /ls/local/a:x:3:1
//! $ warren ctl watch /d --count 2
//! contents_modified /ls/local/d
//! child_changed /ls/local/d added x
//! $ warren ctl --endpoint 127.0.0.1:7100 status
//! endpoint: 127.0.0.1:7100
//! cell: local-0
//! master: 127.0.0.1:7100
//! epoch: 1
//! map_epoch: 0
//! deployment: local
//! is_master: true
//! serving: true
//! role: master
//! replica:
//! store_health: ok
//! $ warren ctl map show
//! deployment: local
//! map_epoch: 1
//! slots: 64
//! cell a: 32 slots (ranges 0-31) replicas 127.0.0.1:7001
//! cell b: 32 slots (ranges 32-63) replicas 127.0.0.1:7002,127.0.0.1:7012
//! ```
//!
//! (`cell`: the cell holding the node — for a directory split over two cells, the one holding
//! its children (docs/partitioning.md); `(none)`: no ACL file, nobody is restricted;
//! `checksum` is xxh3-64 as 16 hex digits.)
//! Event lines are `NAME PATH`, and for children `child_changed PATH added|removed|modified
//! CHILD`; names: `contents_modified`, `child_changed`, `master_failover` (no path),
//! `handle_invalid`, `lock_acquired`, `conflicting_lock`, and the session's own `jeopardy`
//! and `safe` (no path).
//!
//! `lock` prints the session's events on **stderr** as they happen, one word per line, so a
//! person (or a test) can watch a fail-over: `jeopardy` (the lease ran out; looking for the
//! master), `safe` (found it in time), `failover` (a new master took over; the lock is
//! still held), `expired` (the session, and with it the lock, is lost; exit 2).
//!
//! `--json` prints one compact JSON value per line instead, for `stat` (an object with
//! `path` and the stat fields by name: `kind` `"file"`/`"directory"`, `instance`,
//! `content_generation`, `lock_generation`, `acl_generation`, `checksum` (a number), `acl`
//! `{read, write, change_acl}`, `ephemeral`, `child_count`, `length`, `cell`), `ls` (an array of
//! `{name, stat}`), `status` (an object with the keys above), `lock` (`{sequencer, path,
//! mode, instance, lock_generation}`), `watch` (`{event, path?, child?, change?}` per event)
//! and `check-sequencer` (`{sequencer, current}`); `deployment init` and `map show` print the
//! map's stored JSON (format in `warren_router::map`).
//!
//! Exit status: 0 on success; 1 for a stale sequencer; 2 for an error, reported on stderr as
//! exactly `error: CODE: message` with CODE from the error table (`NOT_FOUND`, `LOCK_HELD`,
//! `TOO_LARGE`, …) or `UNAVAILABLE` when no server could be reached (`error: UNAVAILABLE:
//! cannot reach 127.0.0.1:7201: …`); 130 when Ctrl-C interrupts `lock` before the lock is
//! held. Usage errors are clap's (exit 2).
//!
//! Note: ctl's session ends when the command does, so a node created `--ephemeral` is
//! deleted as soon as ctl exits (useful with `lock`/`watch` in another terminal only for
//! nodes they hold open).

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;
use warren_client::{
    ClientOptions, DirEntry, Error, ErrorCode, Event, EventMask, EventStream, LocateInfo, LockMode,
    OpenOptions, Sequencer, Session, Stat,
};
use warren_router::PartitionMap;

/// The first proxy of `warren dev` (at its default `--base-port`); the endpoint when neither
/// `--endpoint` nor `WARREN_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:7201";

/// Exit status for errors.
const EXIT_ERROR: u8 = 2;
/// Exit status of `check-sequencer` for a stale sequencer.
const EXIT_STALE: u8 = 1;
/// Exit status when Ctrl-C interrupts a command before it did its work (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

/// `warren ctl`: arguments common to every command, and the command.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Servers to contact, tried in order (proxies or cells).
    #[arg(
        long,
        global = true,
        env = "WARREN_ENDPOINT",
        default_value = DEFAULT_ENDPOINT,
        value_delimiter = ',',
        value_name = "HOST:PORT[,HOST:PORT…]"
    )]
    pub endpoint: Vec<String>,
    /// Proxies to use instead of --endpoint: the session keeps to the first in its own
    /// order (a consistent-hash ring over the list) and moves to the next if it dies.
    #[arg(
        long,
        global = true,
        env = "WARREN_PROXIES",
        value_delimiter = ',',
        value_name = "HOST:PORT[,HOST:PORT…]"
    )]
    pub proxies: Vec<String>,
    /// Print JSON (stat, ls, status, lock, watch, check-sequencer, deployment init, map show).
    #[arg(long, global = true)]
    pub json: bool,
    /// The session's grace period: how long to keep looking for the master after the
    /// lease ends (e.g. `45s`, `500ms`, `2m`; plain numbers are seconds).
    #[arg(
        long,
        global = true,
        env = "WARREN_GRACE",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pub grace: Option<Duration>,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The `warren ctl` commands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Create a directory (fails if the node exists).
    Mkdir {
        /// The directory (`/a/b` or `/ls/<deployment>/a/b`).
        path: String,
        /// Create it ephemeral: deleted once no client has it open (so, when ctl exits).
        #[arg(long)]
        ephemeral: bool,
    },
    /// Write a file, creating it if missing.
    Put {
        /// The file.
        path: String,
        /// The new contents; `-` reads them from stdin.
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Only write if the file's content generation is N (GENERATION_MISMATCH otherwise);
        /// the file must exist.
        #[arg(long, value_name = "N", conflicts_with = "ephemeral")]
        if_generation: Option<u64>,
        /// If the file is created, create it ephemeral (deleted when ctl exits).
        #[arg(long)]
        ephemeral: bool,
    },
    /// Print a file's contents, nothing added.
    Cat {
        /// The file.
        path: String,
    },
    /// Print a node's metadata.
    Stat {
        /// The node.
        path: String,
    },
    /// List a directory.
    Ls {
        /// The directory.
        path: String,
    },
    /// Delete a node (a directory only when empty).
    Rm {
        /// The node.
        path: String,
    },
    /// Acquire a lock, print its sequencer, hold it, release it.
    Lock {
        /// The node to lock (must exist; opened with write intent).
        path: String,
        /// Acquire in shared (reader) mode instead of exclusive.
        #[arg(long)]
        shared: bool,
        /// Fail with LOCK_HELD at once instead of waiting.
        #[arg(long = "try")]
        try_only: bool,
        /// Hold this many seconds (fractions allowed), then release; default: until Ctrl-C.
        #[arg(long, value_name = "SECONDS")]
        hold: Option<f64>,
    },
    /// Exit 0 if the sequencer is current, 1 if stale.
    CheckSequencer {
        /// `<path>:<x|s>:<instance>:<lock_generation>`, as printed by `lock`.
        sequencer: String,
    },
    /// Print a node's events, one per line.
    Watch {
        /// The node.
        path: String,
        /// Stop after N events; default: at Ctrl-C.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Show which server is master, its epoch and deployment.
    Status,
    /// Create and manage the deployment (its partition map).
    Deployment {
        #[command(subcommand)]
        command: DeploymentCommand,
    },
    /// Inspect the partition map.
    Map {
        #[command(subcommand)]
        command: MapCommand,
    },
}

/// `warren ctl deployment …`.
#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// Write the deployment's first partition map (epoch 1) to the meta cell; fails if the
    /// deployment already has one.
    Init {
        /// The meta cell (its replicas, tried in order); the endpoint for this command.
        #[arg(
            long,
            required = true,
            value_delimiter = ',',
            value_name = "HOST:PORT[,HOST:PORT…]"
        )]
        meta: Vec<String>,
        /// A cell and its replica addresses; repeat for each cell. Slots are spread evenly
        /// over the cells in the order given.
        #[arg(
            long = "cell",
            required = true,
            value_name = "NAME=HOST:PORT[,HOST:PORT…]"
        )]
        cells: Vec<String>,
        /// S, the slot count, fixed for the life of the deployment.
        #[arg(long, default_value_t = warren_router::DEFAULT_SLOTS, value_name = "S")]
        slots: u32,
    },
}

/// `warren ctl map …`.
#[derive(Debug, Subcommand)]
pub enum MapCommand {
    /// Print the partition map: per-cell slot counts and ranges, replicas, map epoch.
    Show,
}

/// A failure to report: `error: CODE: message`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            code: e.code_name(),
            message: e.message(),
        }
    }
}

impl Failure {
    fn invalid(message: impl Into<String>) -> Self {
        Failure {
            code: "INVALID_ARGUMENT",
            message: message.into(),
        }
    }

    fn io(what: &str, e: std::io::Error) -> Self {
        Failure {
            code: "INTERNAL",
            message: format!("{what}: {e}"),
        }
    }
}

/// Runs `warren ctl`; the exit status follows the module doc.
pub async fn run(args: CtlArgs) -> ExitCode {
    match execute(args).await {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}: {}", f.code, f.message);
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// How `lock` and `watch` print.
#[derive(Clone, Copy)]
struct Output {
    json: bool,
}

async fn execute(args: CtlArgs) -> Result<ExitCode, Failure> {
    // `deployment init` talks to the meta cell named by `--meta`, directly.
    let meta = match &args.command {
        CtlCommand::Deployment {
            command: DeploymentCommand::Init { meta, .. },
        } => Some(meta),
        _ => None,
    };
    let via_proxies = meta.is_none() && args.proxies.iter().any(|p| !p.trim().is_empty());
    let endpoints: Vec<String> = if let Some(meta) = meta {
        meta
    } else if via_proxies {
        &args.proxies
    } else {
        &args.endpoint
    }
    .iter()
    .map(|e| e.trim().to_string())
    .filter(|e| !e.is_empty())
    .collect();
    if endpoints.is_empty() {
        return Err(Failure::invalid(
            "no endpoint: give --endpoint HOST:PORT or set WARREN_ENDPOINT",
        ));
    }
    let out = Output { json: args.json };
    let mut options = ClientOptions::new(endpoints.clone())
        .via_proxies(via_proxies)
        .principal(std::env::var("WARREN_PRINCIPAL").unwrap_or_default());
    if let Some(grace) = args.grace {
        options = options.grace_period(grace);
    }
    if let CtlCommand::Status = args.command {
        let info = warren_client::locate(&endpoints, options.rpc_timeout).await?;
        print_line(&status_text(&info, out.json))?;
        return Ok(ExitCode::SUCCESS);
    }
    // Check arguments before connecting, so bad input fails the same with or without a
    // server.
    match &args.command {
        CtlCommand::CheckSequencer { sequencer } => {
            sequencer.parse::<Sequencer>()?;
        }
        CtlCommand::Lock {
            hold: Some(seconds),
            ..
        } => {
            hold_duration(*seconds)?;
        }
        CtlCommand::Deployment {
            command: DeploymentCommand::Init { cells, slots, .. },
        } => {
            // The deployment name comes from the meta cell; any valid one checks the rest.
            initial_map("local", &parse_cells(cells)?, *slots)?;
        }
        _ => {}
    }
    // Read stdin before connecting, so a slow pipe cannot eat into the session's lease.
    let stdin_value = match &args.command {
        CtlCommand::Put { value, .. } if value == "-" => Some(read_stdin().await?),
        _ => None,
    };
    let session = Session::connect_with(options).await?;
    let result = dispatch(&session, args.command, stdin_value, out).await;
    // Ends the session at once: locks are released, ephemeral nodes go.
    let _ = session.close().await;
    result
}

async fn read_stdin() -> Result<Vec<u8>, Failure> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut buf)
        .await
        .map_err(|e| Failure::invalid(format!("cannot read VALUE from stdin: {e}")))?;
    Ok(buf)
}

async fn dispatch(
    session: &Session,
    command: CtlCommand,
    stdin_value: Option<Vec<u8>>,
    out: Output,
) -> Result<ExitCode, Failure> {
    match command {
        CtlCommand::Mkdir { path, ephemeral } => {
            let mut opts = OpenOptions::new().write().create_dir().exclusive();
            if ephemeral {
                opts = opts.ephemeral();
            }
            let (handle, _) = session.open(&path, opts).await?;
            handle.close().await;
        }
        CtlCommand::Put {
            path,
            value,
            if_generation,
            ephemeral,
        } => {
            let data = stdin_value.unwrap_or_else(|| value.into_bytes());
            put(session, &path, data, if_generation, ephemeral).await?;
        }
        CtlCommand::Cat { path } => {
            let opts = OpenOptions::new().read().read_contents();
            let (handle, info) = session.open(&path, opts).await?;
            handle.close().await;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&info.contents.unwrap_or_default())
                .and_then(|()| stdout.flush())
                .map_err(|e| Failure::io("cannot write to stdout", e))?;
        }
        CtlCommand::Stat { path } => {
            let (handle, info) = session.open(&path, OpenOptions::new()).await?;
            let full = handle.path().to_string();
            handle.close().await;
            print_line(&stat_text(&full, &info.stat, out.json))?;
        }
        CtlCommand::Ls { path } => {
            let (handle, _) = session.open(&path, OpenOptions::new().read()).await?;
            let entries = handle.read_dir().await;
            handle.close().await;
            let mut entries = entries?;
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            if out.json || !entries.is_empty() {
                print_line(&ls_text(&entries, out.json))?;
            }
        }
        CtlCommand::Rm { path } => {
            let (handle, _) = session.open(&path, OpenOptions::new().write()).await?;
            let deleted = handle.delete().await;
            handle.close().await;
            deleted?;
        }
        CtlCommand::Lock {
            path,
            shared,
            try_only,
            hold,
        } => {
            let mode = if shared {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            };
            let hold = hold.map(hold_duration).transpose()?;
            return lock(session, &path, mode, try_only, hold, out).await;
        }
        CtlCommand::CheckSequencer { sequencer } => {
            let parsed: Sequencer = sequencer.parse()?;
            let current = session.check_sequencer(&parsed).await?;
            let line = if out.json {
                json!({"sequencer": parsed.to_string(), "current": current}).to_string()
            } else if current {
                "current".to_string()
            } else {
                "stale".to_string()
            };
            print_line(&line)?;
            if !current {
                return Ok(ExitCode::from(EXIT_STALE));
            }
        }
        CtlCommand::Watch { path, count } => watch(session, &path, count, out).await?,
        CtlCommand::Status => {
            let info = session.locate().await?;
            print_line(&status_text(&info, out.json))?;
        }
        CtlCommand::Deployment {
            command: DeploymentCommand::Init { cells, slots, .. },
        } => deployment_init(session, &parse_cells(&cells)?, slots, out).await?,
        CtlCommand::Map {
            command: MapCommand::Show,
        } => {
            let (map, stored) = read_map(session, &map_path(session.deployment())).await?;
            if out.json {
                print_line(stored.trim_end())?;
            } else {
                print_line(&map_text(&map))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a deployment's partition map lives: in the reserved subtree, on the meta cell.
pub(crate) fn map_path(deployment: &str) -> String {
    format!("/ls/{deployment}/warren/map")
}

/// The `--cell NAME=HOST:PORT[,HOST:PORT…]` arguments, in order.
fn parse_cells(args: &[String]) -> Result<Vec<(String, Vec<String>)>, Failure> {
    args.iter()
        .map(|arg| {
            let Some((name, addrs)) = arg.split_once('=') else {
                return Err(Failure::invalid(format!(
                    "--cell {arg:?} has no '='; write NAME=HOST:PORT[,HOST:PORT…], e.g. a=10.0.0.1:7000"
                )));
            };
            let addrs = addrs
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            Ok((name.trim().to_owned(), addrs))
        })
        .collect()
}

/// The first map of `deployment`: epoch 1, `slots` spread evenly over `cells`. An invalid
/// cell name, address or slot count is INVALID_ARGUMENT, naming it.
pub(crate) fn initial_map(
    deployment: &str,
    cells: &[(String, Vec<String>)],
    slots: u32,
) -> Result<PartitionMap, Failure> {
    PartitionMap::even(deployment, cells, slots)
        .map_err(|e| Failure::invalid(format!("cannot make the partition map: {e}")))
}

/// `deployment init`: write the first map, exclusively, into the meta cell.
async fn deployment_init(
    session: &Session,
    cells: &[(String, Vec<String>)],
    slots: u32,
    out: Output,
) -> Result<(), Failure> {
    let map = write_initial_map(session, cells, slots).await?;
    if out.json {
        print_line(&map.to_json())
    } else {
        print_line(&format!(
            "initialised deployment {}: map epoch {}, {} slots over {} cells",
            map.deployment(),
            map.map_epoch(),
            map.slot_count(),
            map.cells().len()
        ))
    }
}

/// Writes the first map of the session's deployment (epoch 1, `slots` spread evenly over
/// `cells`) into the meta cell the session is connected to, exclusively: an existing map is
/// never replaced (`ALREADY_EXISTS`). Returns the map written. (`deployment init`, and
/// `warren dev` on its first run.)
pub(crate) async fn write_initial_map(
    session: &Session,
    cells: &[(String, Vec<String>)],
    slots: u32,
) -> Result<PartitionMap, Failure> {
    let deployment = session.deployment().to_owned();
    let map = initial_map(&deployment, cells, slots)?;
    let path = map_path(&deployment);
    let dir = path.trim_end_matches("/map");
    // Not exclusive: the reserved directory may already exist (for example made by hand).
    let (handle, _) = session
        .open(dir, OpenOptions::new().write().create_dir())
        .await?;
    handle.close().await;
    let json = map.to_json();
    let opts = OpenOptions::new().write().create_file(json).exclusive();
    match session.open(&path, opts).await {
        Ok((handle, _)) => handle.close().await,
        Err(e) if e.code() == Some(ErrorCode::AlreadyExists) => {
            let existing = match read_map(session, &path).await {
                Ok((existing, _)) => format!("map epoch {}", existing.map_epoch()),
                Err(f) => format!("map epoch unknown: {}", f.message),
            };
            return Err(Failure {
                code: "ALREADY_EXISTS",
                message: format!(
                    "deployment {deployment} is already initialised ({existing}); \
                     init never replaces a map: see it with `warren ctl map show`"
                ),
            });
        }
        Err(e) => return Err(e.into()),
    }
    Ok(map)
}

/// Reads and checks the partition map at `path`: the map and its stored text.
pub(crate) async fn read_map(
    session: &Session,
    path: &str,
) -> Result<(PartitionMap, String), Failure> {
    let opts = OpenOptions::new().read().read_contents();
    let (handle, info) = match session.open(path, opts).await {
        Ok(opened) => opened,
        Err(e) if e.code() == Some(ErrorCode::NotFound) => {
            return Err(Failure {
                code: "NOT_FOUND",
                message: format!("no partition map at {path}; run warren ctl deployment init"),
            })
        }
        Err(e) => return Err(e.into()),
    };
    handle.close().await;
    let stored = info.contents.unwrap_or_default();
    let map = PartitionMap::from_json(&stored).map_err(|e| Failure {
        code: "INTERNAL",
        message: format!("the partition map at {path} is corrupt: {e}"),
    })?;
    Ok((map, String::from_utf8_lossy(&stored).into_owned()))
}

/// `map show`'s text.
fn map_text(map: &PartitionMap) -> String {
    let mut lines = vec![
        format!("deployment: {}", map.deployment()),
        format!("map_epoch: {}", map.map_epoch()),
        format!("slots: {}", map.slot_count()),
    ];
    for (cell, count) in map.slot_counts() {
        let ranges: Vec<String> = map
            .slot_ranges(&cell)
            .iter()
            .map(|r| format!("{}-{}", r.start(), r.end()))
            .collect();
        let ranges = if ranges.is_empty() {
            "none".to_owned()
        } else {
            ranges.join(",")
        };
        let replicas = map.replicas(&cell).unwrap_or_default().join(",");
        lines.push(format!(
            "cell {cell}: {count} slots (ranges {ranges}) replicas {replicas}"
        ));
    }
    lines.join("\n")
}

/// `put`: create-or-overwrite, or compare-and-swap with `if_generation`.
async fn put(
    session: &Session,
    path: &str,
    data: Vec<u8>,
    if_generation: Option<u64>,
    ephemeral: bool,
) -> Result<(), Failure> {
    if let Some(generation) = if_generation {
        let (handle, _) = session.open(path, OpenOptions::new().write()).await?;
        let written = handle.set_contents_if(data, generation).await;
        handle.close().await;
        written?;
        return Ok(());
    }
    let mut opts = OpenOptions::new().write().create_file(data.clone());
    if ephemeral {
        opts = opts.ephemeral();
    }
    let (handle, info) = session.open(path, opts).await?;
    let written = if info.created {
        Ok(())
    } else {
        handle.set_contents(data).await.map(|_| ())
    };
    handle.close().await;
    Ok(written?)
}

fn hold_duration(seconds: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        Failure::invalid(format!(
            "--hold {seconds}: give a non-negative number of seconds"
        ))
    })
}

/// The stderr line `lock` prints for a session event, if it is one it reports.
fn session_event_line(event: &Event) -> Option<&'static str> {
    match event {
        Event::Jeopardy => Some("jeopardy"),
        Event::Safe => Some("safe"),
        Event::MasterFailover => Some("failover"),
        Event::Expired => Some("expired"),
        _ => None,
    }
}

/// Prints the session's state events on stderr as they come (see the module docs) until
/// the session ends; sets `expired` if it expired.
async fn report_session_events(mut events: EventStream, expired: watch::Sender<bool>) {
    while let Some(event) = events.recv().await {
        if let Some(line) = session_event_line(&event) {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{line}").and_then(|()| stderr.flush());
        }
        if event == Event::Expired {
            expired.send_replace(true);
        }
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `lock`: acquire, print the sequencer, hold, release.
async fn lock(
    session: &Session,
    path: &str,
    mode: LockMode,
    try_only: bool,
    hold: Option<Duration>,
    out: Output,
) -> Result<ExitCode, Failure> {
    // Subscribed before anything else, so every state change is reported.
    let (expired_tx, mut expired) = watch::channel(false);
    let _reporter = AbortOnDrop(tokio::spawn(report_session_events(
        session.events(),
        expired_tx,
    )));
    let (handle, _) = session.open(path, OpenOptions::new().write()).await?;
    let acquired = if try_only {
        handle.try_acquire(mode).await
    } else {
        // On expiry the acquire fails by itself (SESSION_EXPIRED).
        tokio::select! {
            r = handle.acquire(mode, None) => r,
            _ = tokio::signal::ctrl_c() => {
                handle.close().await;
                return Ok(ExitCode::from(EXIT_INTERRUPTED));
            }
        }
    };
    let sequencer = match acquired {
        Ok(s) => s,
        Err(e) => {
            handle.close().await;
            return Err(e.into());
        }
    };
    let line = if out.json {
        json!({
            "sequencer": sequencer.to_string(),
            "path": sequencer.path,
            "mode": sequencer.mode.as_str(),
            "instance": sequencer.instance,
            "lock_generation": sequencer.lock_generation,
        })
        .to_string()
    } else {
        sequencer.to_string()
    };
    print_line(&line)?;

    let sleep = async {
        match hold {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = sleep => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = expired.wait_for(|e| *e) => {
            let message = format!("the session expired while holding the lock on {}; it is lost", handle.path());
            handle.close().await;
            return Err(Failure {
                code: "SESSION_EXPIRED",
                message,
            });
        }
    }
    let released = handle.release().await;
    handle.close().await;
    released?;
    Ok(ExitCode::SUCCESS)
}

/// Parses `--grace`: a number with `ms`, `s`, `m` or `h`, or plain seconds (fractions
/// allowed).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use ms, s, m or h (e.g. 45s)"
            ))
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 45s, 500ms, 2m)"))?;
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("{text:?}: give a non-negative, finite duration"))
}

/// `watch`: print events until `count` or Ctrl-C.
async fn watch(
    session: &Session,
    path: &str,
    count: Option<u64>,
    out: Output,
) -> Result<(), Failure> {
    // Subscribe before opening, so no event can slip between the two.
    let mut events = session.events();
    let opts = OpenOptions::new().read().events(EventMask::ALL);
    let (handle, _) = session.open(path, opts).await?;
    let mut seen = 0u64;
    let result = loop {
        if count.is_some_and(|n| seen >= n) {
            break Ok(());
        }
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        match event {
            Some(Event::Expired) | None => {
                break Err(Failure {
                    code: "SESSION_EXPIRED",
                    message: format!("the session expired while watching {}", handle.path()),
                })
            }
            Some(event) => {
                if let Err(e) = print_line(&event_text(&event, out.json)) {
                    break Err(e);
                }
                seen += 1;
            }
        }
    };
    handle.close().await;
    result
}

/// Prints `text` and a newline to stdout, flushed (for `lock`, a script waits on it).
fn print_line(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::io("cannot write to stdout", e))
}

fn stat_json(stat: &Stat) -> Value {
    json!({
        "kind": stat.kind.as_str(),
        "instance": stat.instance,
        "content_generation": stat.content_generation,
        "lock_generation": stat.lock_generation,
        "acl_generation": stat.acl_generation,
        "checksum": stat.checksum,
        "acl": {
            "read": stat.acl.read,
            "write": stat.acl.write,
            "change_acl": stat.acl.change_acl,
        },
        "ephemeral": stat.ephemeral,
        "child_count": stat.child_count,
        "cell": stat.cell,
        "length": stat.length,
    })
}

/// `stat`'s output for the node at `path`.
fn stat_text(path: &str, stat: &Stat, json: bool) -> String {
    if json {
        let mut value = stat_json(stat);
        if let Value::Object(map) = &mut value {
            map.insert("path".into(), Value::String(path.to_string()));
        }
        return value.to_string();
    }
    let acl = |name: &str| {
        if name.is_empty() {
            "(none)".to_string()
        } else {
            name.to_string()
        }
    };
    [
        format!("path: {path}"),
        format!("cell: {}", stat.cell),
        format!("kind: {}", stat.kind),
        format!("instance: {}", stat.instance),
        format!("content_generation: {}", stat.content_generation),
        format!("lock_generation: {}", stat.lock_generation),
        format!("acl_generation: {}", stat.acl_generation),
        format!("checksum: {:#018x}", stat.checksum),
        format!("acl_read: {}", acl(&stat.acl.read)),
        format!("acl_write: {}", acl(&stat.acl.write)),
        format!("acl_change_acl: {}", acl(&stat.acl.change_acl)),
        format!("ephemeral: {}", stat.ephemeral),
        format!("child_count: {}", stat.child_count),
        format!("length: {}", stat.length),
    ]
    .join("\n")
}

/// `ls`'s output (entries already sorted); text mode needs at least one entry.
fn ls_text(entries: &[DirEntry], json: bool) -> String {
    if json {
        return Value::Array(
            entries
                .iter()
                .map(|e| json!({"name": e.name, "stat": stat_json(&e.stat)}))
                .collect(),
        )
        .to_string();
    }
    entries
        .iter()
        .map(|e| match e.stat.kind {
            warren_client::NodeKind::Directory => format!("{}/", e.name),
            warren_client::NodeKind::File => e.name.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `status`'s output.
fn status_text(info: &LocateInfo, json: bool) -> String {
    if json {
        return json!({
            "endpoint": info.endpoint,
            "cell": info.cell,
            "master": info.master,
            "epoch": info.epoch,
            "map_epoch": info.map_epoch,
            "deployment": info.deployment,
            "is_master": info.is_master,
            "serving": info.serving,
            "role": info.role,
            "replica": info.replica,
            "store_health": info.store_health,
        })
        .to_string();
    }
    [
        format!("endpoint: {}", info.endpoint),
        format!("cell: {}", info.cell),
        format!("master: {}", info.master),
        format!("epoch: {}", info.epoch),
        format!("map_epoch: {}", info.map_epoch),
        format!("deployment: {}", info.deployment),
        format!("is_master: {}", info.is_master),
        format!("serving: {}", info.serving),
        format!("role: {}", info.role),
        format!("replica: {}", info.replica),
        format!("store_health: {}", info.store_health),
    ]
    .join("\n")
}

/// One `watch` line.
fn event_text(event: &Event, json: bool) -> String {
    if !json {
        return event.to_string();
    }
    let mut value = json!({"event": event.name()});
    if let Value::Object(map) = &mut value {
        if let Some(path) = event.path() {
            map.insert("path".into(), Value::String(path.to_string()));
        }
        if let Event::ChildChanged { child, change, .. } = event {
            map.insert("child".into(), Value::String(child.clone()));
            map.insert("change".into(), Value::String(change.as_str().to_string()));
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use warren_client::{AclNames, ChildChange, NodeKind};

    #[derive(Debug, Parser)]
    #[command(name = "warren")]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(Debug, Subcommand)]
    enum Top {
        Ctl(CtlArgs),
    }

    fn parse(args: &[&str]) -> Result<CtlArgs, clap::Error> {
        let mut argv = vec!["warren", "ctl"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|c| match c.cmd {
            Top::Ctl(a) => a,
        })
    }

    fn stat() -> Stat {
        Stat {
            kind: NodeKind::File,
            instance: 3,
            content_generation: 2,
            lock_generation: 0,
            acl_generation: 0,
            checksum: 0x9a5d_1e4f_2b3c_8d70,
            acl: AclNames {
                read: String::new(),
                write: "admins".into(),
                change_acl: String::new(),
            },
            ephemeral: false,
            child_count: 0,
            length: 5,
            cell: "c1".into(),
        }
    }

    #[test]
    fn parses_the_surface() {
        let a = parse(&["--endpoint", "a:1,b:2", "--json", "stat", "/x"]).expect("parses");
        assert_eq!(a.endpoint, ["a:1", "b:2"]);
        assert!(a.json);
        assert!(matches!(a.command, CtlCommand::Stat { path } if path == "/x"));

        let a = parse(&["put", "/x", "-", "--if-generation", "4"]).expect("parses");
        assert!(matches!(
            a.command,
            CtlCommand::Put { value, if_generation: Some(4), ephemeral: false, .. } if value == "-"
        ));
        let a = parse(&["put", "/x", "-5"]).expect("hyphen values");
        assert!(matches!(a.command, CtlCommand::Put { value, .. } if value == "-5"));
        assert!(parse(&["put", "/x", "v", "--if-generation", "1", "--ephemeral"]).is_err());

        let a = parse(&["lock", "/x", "--shared", "--try", "--hold", "1.5"]).expect("parses");
        assert!(matches!(
            a.command,
            CtlCommand::Lock { shared: true, try_only: true, hold: Some(h), .. } if h == 1.5
        ));
        let a = parse(&["watch", "/x", "--count", "3", "--json"]).expect("global --json");
        assert!(a.json);
        assert!(matches!(
            a.command,
            CtlCommand::Watch { count: Some(3), .. }
        ));
        assert!(parse(&["check-sequencer", "/ls/l/a:x:1:2"]).is_ok());
        assert!(parse(&["status"]).is_ok());
        assert!(parse(&["mkdir", "/d", "--ephemeral"]).is_ok());
        assert!(parse(&["rm", "/d"]).is_ok());
        assert!(parse(&["ls", "/"]).is_ok());
        assert!(parse(&["cat", "/a"]).is_ok());
        assert!(parse(&["frobnicate"]).is_err());
    }

    #[test]
    fn the_default_endpoint_is_the_first_dev_proxy() {
        assert_eq!(DEFAULT_ENDPOINT, "127.0.0.1:7201");
        assert_eq!(
            DEFAULT_ENDPOINT,
            format!(
                "127.0.0.1:{}",
                crate::dev::Layout::new(crate::dev::DEFAULT_BASE_PORT)
                    .proxy(1)
                    .0
            ),
            "ctl's default is where `warren dev` puts its first proxy"
        );
        if std::env::var_os("WARREN_ENDPOINT").is_none() {
            let a = parse(&["status"]).expect("parses");
            assert_eq!(a.endpoint, [DEFAULT_ENDPOINT]);
        }
    }

    #[test]
    fn parses_deployment_and_map_commands() {
        let a = parse(&[
            "deployment",
            "init",
            "--meta",
            "m:1",
            "--cell",
            "a=h:1,h:2",
            "--cell",
            "b=h:3",
        ])
        .expect("parses");
        match a.command {
            CtlCommand::Deployment {
                command: DeploymentCommand::Init { meta, cells, slots },
            } => {
                assert_eq!(meta, ["m:1"]);
                assert_eq!(cells, ["a=h:1,h:2", "b=h:3"]);
                assert_eq!(slots, warren_router::DEFAULT_SLOTS);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&["deployment", "init", "--cell", "a=h:1"]).is_err(),
            "--meta required"
        );
        assert!(
            parse(&["deployment", "init", "--meta", "m:1"]).is_err(),
            "--cell required"
        );
        assert!(parse(&["map", "show", "--json"]).expect("parses").json);
    }

    #[test]
    fn cells_parse_and_the_map_checks_them() {
        let cells = parse_cells(&["a=h:1, h:2".into(), "b=h:3".into()]).expect("parses");
        assert_eq!(
            cells,
            vec![
                ("a".to_owned(), vec!["h:1".to_owned(), "h:2".to_owned()]),
                ("b".to_owned(), vec!["h:3".to_owned()])
            ]
        );
        let f = parse_cells(&["a:h:1".into()]).expect_err("no =");
        assert_eq!(f.code, "INVALID_ARGUMENT");
        assert!(f.message.contains("\"a:h:1\""), "{}", f.message);
        for (cells, names) in [
            (vec!["a=nope"], "\"nope\""),
            (vec!["a=h:1", "a=h:2"], "\"a\" is listed twice"),
            (vec!["A=h:1"], "\"A\""),
            (vec!["a="], "no replica addresses"),
        ] {
            let cells: Vec<String> = cells.into_iter().map(str::to_owned).collect();
            let f = initial_map("d", &parse_cells(&cells).unwrap(), 8).expect_err("invalid");
            assert_eq!(f.code, "INVALID_ARGUMENT");
            assert!(f.message.contains(names), "{}", f.message);
        }
        let f = initial_map("d", &parse_cells(&["a=h:1".into()]).unwrap(), 0).expect_err("0");
        assert!(f.message.contains("0 slots"), "{}", f.message);
    }

    #[test]
    fn map_formats() {
        let map = PartitionMap::even(
            "local",
            &[
                ("a", vec!["127.0.0.1:7001"]),
                ("b", vec!["127.0.0.1:7002", "127.0.0.1:7012"]),
                ("c", vec!["127.0.0.1:7003"]),
            ],
            2,
        )
        .unwrap();
        assert_eq!(
            map_text(&map),
            "deployment: local\nmap_epoch: 1\nslots: 2\n\
             cell a: 1 slots (ranges 0-0) replicas 127.0.0.1:7001\n\
             cell b: 1 slots (ranges 1-1) replicas 127.0.0.1:7002,127.0.0.1:7012\n\
             cell c: 0 slots (ranges none) replicas 127.0.0.1:7003"
        );
        assert_eq!(map_path("local"), "/ls/local/warren/map");
    }

    #[test]
    fn grace_parses_durations() {
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
        for bad in ["", "s", "-1s", "5d", "abc", "NaNs", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let a = parse(&["--grace", "6s", "lock", "/x"]).expect("parses");
        assert_eq!(a.grace, Some(Duration::from_secs(6)));
        let a = parse(&["lock", "/x", "--grace", "250ms"]).expect("global");
        assert_eq!(a.grace, Some(Duration::from_millis(250)));
        assert!(parse(&["--grace", "soon", "status"]).is_err());
    }

    #[test]
    fn session_events_on_stderr() {
        assert_eq!(session_event_line(&Event::Jeopardy), Some("jeopardy"));
        assert_eq!(session_event_line(&Event::Safe), Some("safe"));
        assert_eq!(session_event_line(&Event::MasterFailover), Some("failover"));
        assert_eq!(session_event_line(&Event::Expired), Some("expired"));
        assert_eq!(
            session_event_line(&Event::LockAcquired { path: "/a".into() }),
            None
        );
    }

    #[test]
    fn hold_must_be_a_duration() {
        assert_eq!(hold_duration(1.5).ok(), Some(Duration::from_millis(1500)));
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let f = hold_duration(bad).expect_err("bad hold");
            assert_eq!(f.code, "INVALID_ARGUMENT");
        }
    }

    #[test]
    fn stat_formats() {
        let text = stat_text("/ls/local/a", &stat(), false);
        assert_eq!(
            text,
            "path: /ls/local/a\ncell: c1\nkind: file\ninstance: 3\ncontent_generation: 2\n\
             lock_generation: 0\nacl_generation: 0\nchecksum: 0x9a5d1e4f2b3c8d70\n\
             acl_read: (none)\nacl_write: admins\nacl_change_acl: (none)\nephemeral: false\n\
             child_count: 0\nlength: 5"
        );
        let v: Value =
            serde_json::from_str(&stat_text("/ls/local/a", &stat(), true)).expect("json");
        assert_eq!(v["path"], "/ls/local/a");
        assert_eq!(v["cell"], "c1");
        assert_eq!(v["kind"], "file");
        assert_eq!(v["content_generation"], 2);
        assert_eq!(v["checksum"], 0x9a5d_1e4f_2b3c_8d70u64);
        assert_eq!(v["acl"]["write"], "admins");
        assert_eq!(v["length"], 5);
    }

    #[test]
    fn ls_formats() {
        let entries = vec![
            DirEntry {
                name: "a".into(),
                stat: stat(),
            },
            DirEntry {
                name: "d".into(),
                stat: Stat {
                    kind: NodeKind::Directory,
                    ..stat()
                },
            },
        ];
        assert_eq!(ls_text(&entries, false), "a\nd/");
        let v: Value = serde_json::from_str(&ls_text(&entries, true)).expect("json");
        assert_eq!(v[1]["name"], "d");
        assert_eq!(v[1]["stat"]["kind"], "directory");
        assert_eq!(v[1]["stat"]["cell"], "c1");
        assert_eq!(ls_text(&[], true), "[]");
    }

    #[test]
    fn event_formats() {
        let e = Event::ChildChanged {
            path: "/ls/local/d".into(),
            child: "x".into(),
            change: ChildChange::Added,
        };
        assert_eq!(event_text(&e, false), "child_changed /ls/local/d added x");
        let v: Value = serde_json::from_str(&event_text(&e, true)).expect("json");
        assert_eq!(
            v,
            json!({"event": "child_changed", "path": "/ls/local/d", "child": "x", "change": "added"})
        );
        assert_eq!(
            event_text(&Event::MasterFailover, true),
            r#"{"event":"master_failover"}"#
        );
        assert_eq!(
            event_text(
                &Event::ContentsModified {
                    path: "/ls/local/a".into()
                },
                false
            ),
            "contents_modified /ls/local/a"
        );
    }

    #[test]
    fn status_formats() {
        let info = LocateInfo {
            endpoint: "127.0.0.1:7100".into(),
            cell: "local-0".into(),
            master: "127.0.0.1:7100".into(),
            epoch: 1,
            map_epoch: 0,
            deployment: "local".into(),
            is_master: true,
            serving: true,
            role: "master".into(),
            replica: String::new(),
            store_health: "ok".into(),
        };
        assert_eq!(
            status_text(&info, false),
            "endpoint: 127.0.0.1:7100\ncell: local-0\nmaster: 127.0.0.1:7100\nepoch: 1\n\
             map_epoch: 0\ndeployment: local\nis_master: true\nserving: true\nrole: master\n\
             replica: \nstore_health: ok"
        );
        let v: Value = serde_json::from_str(&status_text(&info, true)).expect("json");
        assert_eq!(v["deployment"], "local");
        assert_eq!(v["serving"], true);
    }

    #[test]
    fn client_errors_keep_their_code() {
        let f = Failure::from(Error::Transport("cannot reach h:1: refused".into()));
        assert_eq!(
            (f.code, f.message.as_str()),
            ("UNAVAILABLE", "cannot reach h:1: refused")
        );
        let f = Failure::from(
            "nonsense"
                .parse::<Sequencer>()
                .expect_err("not a sequencer"),
        );
        assert_eq!(f.code, "INVALID_ARGUMENT");
    }
}
