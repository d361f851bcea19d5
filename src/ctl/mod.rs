//! `warren ctl`: the operator and user command line, a thin layer over `warren-client`.
//!
//! ```text
//! warren ctl [--endpoint HOST:PORT[,HOST:PORT…] | --proxies HOST:PORT,…] [-w simple|table|json] [--grace DURATION] CMD
//! ```
//!
//! The endpoint defaults to `$WARREN_ENDPOINT`, else `127.0.0.1:7201` (the first proxy of
//! `warren dev`). `--proxies` (or `$WARREN_PROXIES`) names proxies instead: the session keeps to
//! the first in its own consistent-hash order and moves on if that proxy dies. The session's principal is `$WARREN_PRINCIPAL` (empty: anonymous). Paths may be
//! full (`/ls/local/a`) or short (`/a`, in the connected deployment). `--grace` (or
//! `$WARREN_GRACE`) sets the session's grace period: how long it keeps looking for the
//! master after its lease ends before giving up (default 45s). Every `DURATION` (`--grace`,
//! `lock --hold`) is a number with a unit (`500ms`, `5s`, `2m`, `1h`, `1m 30s`) or a plain
//! number of seconds (`5`, `1.5`), read by `warren_config::parse_duration_or_seconds`.
//!
//! | command | does | prints (text) |
//! |---|---|---|
//! | `mkdir PATH [--ephemeral]` | creates a directory; fails if it exists | nothing |
//! | `put PATH VALUE [--if-generation N] [--ephemeral]` | writes VALUE (`-`: stdin), creating the file if missing; with `--if-generation` only if the file's content generation is N | nothing |
//! | `cat PATH` | reads the file (a directory is INVALID_ARGUMENT: list it with `ls`) | its contents, nothing added |
//! | `cat --prefix DIR` / `get --prefix DIR` | reads every file under DIR, at any depth | per file, its full path on a line, then its contents and a newline |
//! | `stat PATH` | reads the metadata, and which cell holds the node | `key: value` lines (below) |
//! | `ls PATH [-r]` | lists a directory (`-r`: every node under it, by its path under it) | one child per line, sorted; directories end in `/` |
//! | `rm PATH [-r [-y]]` | deletes the node (a directory only when empty; `-r`: with everything under it, after a confirmation on the terminal, or `-y`) | nothing |
//! | `lock PATH [--shared] [--try] [--hold DURATION]` | opens with write intent, acquires (waits, or fails at once with `--try`), holds for DURATION (default: until Ctrl-C), releases | the sequencer once held; session events on stderr (below) |
//! | `check-sequencer SEQUENCER` | asks whether the sequencer is current | `current` (exit 0) or `stale` (exit 1) |
//! | `watch PATH [--count N]` | opens with every event bit; stops after N events (default: at Ctrl-C) | one event per line |
//! | `status` | `Locate` on the first endpoint that answers | `key: value` lines |
//! | `endpoint status\|health [--meta …] [--admin-offset N]` | every member: the meta cell, the data cells' replicas (from the map), `--proxies` | a row per member (docs/ctl.md) |
//! | `session list [--meta …]` / `lock list PATH [--meta …]` | `Reshard.SessionTable` at every cell's master (operators only over TLS) | a row per session / the lock's holders and waiters (docs/ctl.md) |
//! | `version` | this binary's version and commit | `version:`, `commit:` lines |
//! | `acl get PATH` | reads the node's ACL names (files in `/ls/<d>/acl/`) | `path:`, `read:`, `write:`, `change_acl:` lines (`(none)` for an empty name: unrestricted) |
//! | `acl set PATH [--read NAME] [--write NAME] [--change-acl NAME] [--file NAME=P1,P2 …]` | writes each `--file` ACL file (one principal per line, created if missing), then changes the names given (the others stay) | as `acl get`, after the change |
//! | `deployment init --meta HOST:PORT[,…] --cell NAME=HOST:PORT[,HOST:PORT…] [--cell …] [--slots S]` | writes the deployment's first partition map (epoch 1; S slots, default 4096, spread evenly over the cells in the order given) to `/ls/<deployment>/warren/map` on the meta cell (`--meta` is the endpoint; `--endpoint`/`--proxies` are ignored); never replaces a map (`ALREADY_EXISTS`) | `initialised deployment D: map epoch 1, S slots over N cells` |
//! | `map show` | reads and checks `/ls/<deployment>/warren/map` | `deployment:`, `map_epoch:`, `slots:` lines, then one line per cell (below) |
//! | `map repair --meta HOST:PORT[,…] [--from-cell ADMIN_HOST:PORT,…] [--from MAP.json]` | when the stored map file does not parse: takes the newest map the cells hold in memory (their admin `/map` pages) or the file gives, raises its epoch above every epoch seen (the cells' `/status`, the meta cell's, the garbage's) and writes it at the meta cell (`--meta` is the endpoint); refuses when the stored map parses (docs/operations.md) | `repaired the partition map of deployment D: map epoch E, from SOURCE (epoch K); the stored file was unreadable: …` |
//! | `reshard plan [--add-cell NAME=HOST:PORT[,…]] [--remove-cell NAME] [--weight NAME=W] [--to MAP.json] [--out FILE] [--max-bytes-per-sec N]` | a dry run: proposes the next map, asks the source cells what the moving slots hold; `--out` saves the plan | per-cell slots now and proposed, the moves as runs with their counts, totals, `estimated time: …` (module [`reshard`]) |
//! | `reshard apply PLAN [--max-bytes-per-sec N] [--slots-per-batch N] [--freeze-timeout DURATION]` | checks the plan against the map in force, starts the meta cell's job | the job id and how to follow it |
//! | `reshard status [--watch]` / `reshard abort` | the current (or last) job; stops it | the job (status), its `job`/`state`/`message` (abort) |
//! | `backup now [--cell NAME \| --all] [--meta …]` / `backup list\|verify --from DEST [--set ID]` | backups (module [`backup`], docs/backup.md): taken by the cell masters; listed and verified at the destination, with no cell | the backup's fields / a row per backup |
//!
//! The `reshard` commands talk to the meta cell given by their `--meta HOST:PORT[,…]`
//! (default `127.0.0.1:7100`, `warren dev`'s), not to `--endpoint`/`--proxies`; see
//! docs/operations.md "Resharding".
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
//! `-w table` prints bordered tables (docs/ctl.md). `-w json` (or `--json`) prints one compact
//! JSON value per line instead, for every command (`mkdir`, `put`, `rm` and `cat` print their
//! result as an object; docs/ctl.md), for `stat` (an object with
//! `path` and the stat fields by name: `kind` `"file"`/`"directory"`, `instance`,
//! `content_generation`, `lock_generation`, `acl_generation`, `checksum` (the text's hex string), `acl`
//! `{read, write, change_acl}`, `ephemeral`, `child_count`, `length`, `cell`), `ls` (an array of
//! `{name, stat}`), `status` (an object with the keys above), `lock` (`{sequencer, path,
//! mode, instance, lock_generation}`), `watch` (`{event, path?, child?, change?}` per event)
//! and `check-sequencer` (`{sequencer, current}`); `deployment init`, `map show` and
//! `map repair` print the map's stored JSON (format in `warren_router::map`); `reshard plan`
//! the plan's JSON (pretty-printed, as `--out` saves it), `reshard apply` `{job}`,
//! `reshard status` and `reshard abort` the job's JSON as the meta cell returns it (`null`:
//! no job ever ran).
//!
//! Exit status: 0 on success; 1 for a stale sequencer or an unhealthy member (`endpoint
//! health`); 2 for an error, reported on stderr as exactly `error: CODE: message` (with `-w
//! json`: `{"error":{"code":CODE,"message":message}}`) with CODE from the error table (`NOT_FOUND`, `LOCK_HELD`,
//! `TOO_LARGE`, …), `UNREACHABLE` when no server could be reached so nothing was sent
//! (`error: UNREACHABLE: cannot reach 127.0.0.1:7201: …`), `OUTCOME_UNKNOWN` when the call
//! was lost after it may have been sent; 130 when Ctrl-C interrupts `lock` before the lock is
//! held. Usage errors are clap's (exit 2).
//!
//! `deployment init` and `map repair` run as principal `warren:operator` (the only one, with
//! the cells', the meta cell accepts map writes from), whatever `$WARREN_PRINCIPAL` says.
//! Other writes to the reserved subtree `/ls/<d>/warren/` need an operator principal too
//! (docs/security.md, "Authorization"): on a plaintext connection, set
//! `WARREN_PRINCIPAL=warren:operator`; over TLS, the certificate must name an operator.
//!
//! Note: ctl's session ends when the command does, so a node created `--ephemeral` is
//! deleted as soon as ctl exits (useful with `lock`/`watch` in another terminal only for
//! nodes they hold open).

mod acl;
mod backup;
mod deployment;
mod failure;
mod locks;
mod members;
mod nodes;
mod output;
mod repair;
mod reshard;
mod reshard_output;
mod sessions;
mod watch;

use clap::{Args, Subcommand};
use std::process::ExitCode;
use std::time::Duration;
use warren_client::{ClientOptions, LockMode, Sequencer, Session};
use warren_config::parse_duration_or_seconds;

use failure::Failure;
use output::{Format, Output};
pub use reshard::{ReshardCommand, DEFAULT_META};

/// The first proxy of `warren dev` (at its default `--base-port`); the endpoint when neither
/// `--endpoint` nor `WARREN_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:7201";

/// Exit status for errors.
const EXIT_ERROR: u8 = 2;
/// Exit status of `check-sequencer` for a stale sequencer.
const EXIT_STALE: u8 = 1;
/// Exit status of `endpoint health` when a member is unhealthy.
const EXIT_UNHEALTHY: u8 = 1;
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
    /// The form of the output, errors included: `simple` (`key: value` lines), `table`
    /// (bordered tables) or `json` (one JSON value per line; errors as JSON on stderr).
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        value_enum,
        default_value_t = Format::Simple,
        value_name = "FORMAT"
    )]
    pub write_out: Format,
    /// The same as `-w json`.
    #[arg(long, global = true)]
    pub json: bool,
    /// The session's grace period: how long to keep looking for the master after the
    /// lease ends (e.g. `45s`, `500ms`, `2m`; plain numbers are seconds).
    #[arg(
        long,
        global = true,
        env = "WARREN_GRACE",
        value_name = "DURATION",
        value_parser = parse_duration_or_seconds
    )]
    pub grace: Option<Duration>,
    /// Mutual TLS: --cacert, --cert, --key (docs/security.md).
    #[command(flatten)]
    pub tls: crate::tls_cmd::ClientTlsArgs,
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
    /// Print a file's contents, nothing added; with --prefix, every file under a directory.
    Cat {
        /// The file (with --prefix: the directory).
        path: String,
        /// Print every file under the directory PATH (at any depth): its path, then its
        /// contents (etcdctl's `get --prefix`).
        #[arg(long)]
        prefix: bool,
    },
    /// The same as `cat`: etcdctl's name (`get --prefix DIR` prints every file under DIR).
    Get {
        /// The file (with --prefix: the directory).
        path: String,
        /// Every file under the directory PATH, with its contents.
        #[arg(long)]
        prefix: bool,
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
        /// Every node under the directory, at any depth, by its path under it.
        #[arg(short = 'r', long)]
        recursive: bool,
    },
    /// Delete a node (a directory only when empty).
    Rm {
        /// The node.
        path: String,
        /// Delete the directory and everything under it (asks first on a terminal).
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Do not ask before `rm -r` (needed when stdin is not a terminal).
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Acquire a lock, print its sequencer, hold it, release it; `lock list PATH` shows a
    /// lock's holders and waiters instead.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Lock {
        #[command(subcommand)]
        list: Option<LockListCommand>,
        /// The node to lock (must exist; opened with write intent).
        #[arg(required = true)]
        path: Option<String>,
        /// Acquire in shared (reader) mode instead of exclusive.
        #[arg(long)]
        shared: bool,
        /// Fail with LOCK_HELD at once instead of waiting.
        #[arg(long = "try")]
        try_only: bool,
        /// Hold this long (e.g. `10s`, `500ms`; plain numbers are seconds), then release;
        /// default: until Ctrl-C.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_or_seconds)]
        hold: Option<Duration>,
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
    /// Show which server is master, its epoch and deployment (the first endpoint that
    /// answers; `endpoint status` shows every member).
    Status,
    /// Every member of the deployment (meta cell, data cells and their replicas, proxies):
    /// `status` (a row each: role, epochs, sessions, nodes, store, version) or `health`.
    Endpoint {
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// The sessions every cell's master holds.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// This binary's version and the commit it was built from.
    Version,
    /// Show or change a node's ACL names, and write ACL files' principals.
    Acl {
        #[command(subcommand)]
        command: acl::AclCommand,
    },
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
    /// Move slots between the cells of a live deployment: plan (a dry run), apply, status,
    /// abort. Talks to the meta cell (`--meta`), not to `--endpoint`.
    Reshard {
        #[command(subcommand)]
        command: ReshardCommand,
    },
    /// Backups (docs/backup.md): take one now at the cell masters; list and verify what a
    /// destination holds (no cell needed).
    Backup {
        #[command(subcommand)]
        command: backup::BackupCommand,
    },
}

/// Where the deployment's members are: the meta cell, and their admin ports.
#[derive(Debug, Clone, Args)]
pub struct MemberArgs {
    /// The meta cell; the data cells are read from its partition map.
    #[command(flatten)]
    pub meta: reshard::MetaArg,
    /// Each member's admin HTTP port is its gRPC port plus this (80 in `warren dev`'s
    /// layout).
    #[arg(long, default_value_t = members::DEFAULT_ADMIN_OFFSET, value_name = "N")]
    pub admin_offset: u16,
}

/// `warren ctl endpoint …`.
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// A row per member: role, epoch, map epoch, sessions, nodes, store health, version
    /// (`-` where a member does not have or did not give the number). Proxies come from
    /// --proxies.
    Status {
        #[command(flatten)]
        members: MemberArgs,
    },
    /// Whether each member answers and is ready; exit 1 if any is not.
    Health {
        #[command(flatten)]
        members: MemberArgs,
    },
}

/// `warren ctl session …`.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Each session at each cell: principal, proxy, lease left, handles and locks.
    List {
        #[command(flatten)]
        members: MemberArgs,
    },
}

/// `warren ctl lock list PATH`.
#[derive(Debug, Subcommand)]
pub enum LockListCommand {
    /// The lock on PATH: its generation, holders and waiters.
    List {
        /// The node (`/a` or `/ls/<deployment>/a`).
        path: String,
        #[command(flatten)]
        members: MemberArgs,
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
    /// Repair a stored map file that does not parse, from the map the cells hold in memory
    /// or a map file you kept; refused when the stored map parses.
    Repair {
        /// The meta cell (its replicas, tried in order); the endpoint for this command.
        #[arg(
            long,
            required = true,
            value_delimiter = ',',
            value_name = "HOST:PORT[,HOST:PORT…]"
        )]
        meta: Vec<String>,
        /// Admin HTTP addresses of running cells (data cells, or the meta cell before a
        /// restart): each one's `/map` is a candidate, its `/status` map epoch a floor.
        #[arg(
            long = "from-cell",
            value_delimiter = ',',
            value_name = "HOST:PORT[,HOST:PORT…]",
            required_unless_present = "from"
        )]
        from_cell: Vec<String>,
        /// A map JSON file you kept (`warren ctl map show --json`).
        #[arg(long, value_name = "MAP.json")]
        from: Option<std::path::PathBuf>,
    },
}

/// The addresses of a comma-separated flag, trimmed, empty ones left out.
pub(crate) fn addresses(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect()
}

/// Runs `warren ctl`; the exit status follows the module doc.
pub async fn run(args: CtlArgs) -> ExitCode {
    let out = Output::new(args.write_out, args.json);
    match execute(args, out).await {
        Ok(code) => code,
        Err(f) => {
            eprintln!("{}", out.error_text(&f));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// `version`'s record: the crate's version and the commit (`git describe` at build time,
/// `unknown` outside a git checkout).
fn version_record() -> output::Record {
    output::Record::default()
        .field("version", env!("CARGO_PKG_VERSION"))
        .field("commit", crate::COMMIT.unwrap_or("unknown"))
}

/// The commands that read the members' admin pages and need no session.
async fn run_members(
    command: &CtlCommand,
    proxies: &[String],
    out: Output,
) -> Option<Result<ExitCode, Failure>> {
    let (members, proxies) = match command {
        CtlCommand::Endpoint {
            command: EndpointCommand::Status { members } | EndpointCommand::Health { members },
        } => (members, proxies),
        CtlCommand::Session {
            command: SessionCommand::List { members },
        }
        | CtlCommand::Lock {
            list: Some(LockListCommand::List { members, .. }),
            ..
        } => (members, &[][..]),
        _ => return None,
    };
    let result = async {
        let meta = addresses(&members.meta.meta);
        failure::check_endpoints(&meta)?;
        failure::check_endpoints(proxies)?;
        let offset = members.admin_offset;
        match command {
            CtlCommand::Endpoint { command } => {
                let map = match members::read_map(&meta, offset).await {
                    Ok(map) => map,
                    Err(f) => {
                        // The members that can be named are still worth a row each.
                        eprintln!("warning: the data cells are not listed: {}", f.message);
                        None
                    }
                };
                let all = members::members(&meta, map.as_ref(), proxies);
                let probes = members::probe_all(&all, offset).await;
                match command {
                    EndpointCommand::Status { .. } => {
                        output::print_line(&members::status_text(&probes, out))?;
                        Ok(ExitCode::SUCCESS)
                    }
                    EndpointCommand::Health { .. } => {
                        output::print_line(&members::health_text(&probes, out))?;
                        Ok(if probes.iter().all(|p| p.healthy) {
                            ExitCode::SUCCESS
                        } else {
                            ExitCode::from(EXIT_UNHEALTHY)
                        })
                    }
                }
            }
            CtlCommand::Session { .. } => {
                sessions::list(&meta, offset, out).await?;
                Ok(ExitCode::SUCCESS)
            }
            CtlCommand::Lock {
                list: Some(LockListCommand::List { path, .. }),
                ..
            } => {
                sessions::lock_list(&meta, offset, path, out).await?;
                Ok(ExitCode::SUCCESS)
            }
            _ => unreachable!("matched above"),
        }
    };
    Some(result.await)
}

async fn execute(args: CtlArgs, out: Output) -> Result<ExitCode, Failure> {
    args.tls.install().map_err(Failure::invalid)?;
    if let CtlCommand::Version = args.command {
        output::print_line(&out.record(&version_record()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let proxies = addresses(&args.proxies);
    if let Some(result) = run_members(&args.command, &proxies, out).await {
        return result;
    }
    // Backups: the cell masters (`now`) or the destination itself (`list`, `verify`).
    if let CtlCommand::Backup { command } = args.command {
        let grace = args.grace;
        let options = move |endpoints: Vec<String>| {
            let options = ClientOptions::new(endpoints)
                .principal(warren_client::admin::OPERATOR_PRINCIPAL.to_string());
            match grace {
                Some(grace) => options.grace_period(grace),
                None => options,
            }
        };
        let endpoints = addresses(&args.endpoint);
        return backup::run(command, endpoints, out, options).await;
    }
    // The reshard commands talk to the meta cell named by their own `--meta`.
    if let CtlCommand::Reshard { command } = args.command {
        let grace = args.grace;
        let options = move |endpoints: Vec<String>| {
            let options = ClientOptions::new(endpoints)
                .principal(std::env::var("WARREN_PRINCIPAL").unwrap_or_default());
            match grace {
                Some(grace) => options.grace_period(grace),
                None => options,
            }
        };
        return reshard::run(command, out, options).await;
    }
    // `deployment init` and `map repair` talk to the meta cell named by `--meta`, directly.
    let meta = match &args.command {
        CtlCommand::Deployment {
            command: DeploymentCommand::Init { meta, .. },
        }
        | CtlCommand::Map {
            command: MapCommand::Repair { meta, .. },
        } => Some(meta),
        _ => None,
    };
    let via_proxies = meta.is_none() && args.proxies.iter().any(|p| !p.trim().is_empty());
    let endpoints = addresses(if let Some(meta) = meta {
        meta
    } else if via_proxies {
        &args.proxies
    } else {
        &args.endpoint
    });
    if endpoints.is_empty() {
        return Err(Failure::invalid(
            "no endpoint: give --endpoint HOST:PORT or set WARREN_ENDPOINT",
        ));
    }
    failure::check_endpoints(&endpoints)?;
    // The map code path writes maps as the operator (the meta cell refuses anyone else).
    let principal = if meta.is_some() {
        warren_client::admin::OPERATOR_PRINCIPAL.to_string()
    } else {
        std::env::var("WARREN_PRINCIPAL").unwrap_or_default()
    };
    let mut options = ClientOptions::new(endpoints.clone())
        .via_proxies(via_proxies)
        .principal(principal);
    if let Some(grace) = args.grace {
        options = options.grace_period(grace);
    }
    if let CtlCommand::Status = args.command {
        let info = match warren_client::locate(&endpoints, options.rpc_timeout).await {
            Ok(info) => info,
            Err(e) => return Err(failure::with_hint(e.into(), &endpoints).await),
        };
        output::print_line(&output::status_text(&info, out))?;
        return Ok(ExitCode::SUCCESS);
    }
    // Check arguments before connecting, so bad input fails the same with or without a
    // server.
    match &args.command {
        CtlCommand::CheckSequencer { sequencer } => {
            sequencer.parse::<Sequencer>()?;
        }
        CtlCommand::Deployment {
            command: DeploymentCommand::Init { cells, slots, .. },
        } => {
            // The deployment name comes from the meta cell; any valid one checks the rest.
            deployment::initial_map("local", &deployment::parse_cells(cells)?, *slots)?;
        }
        _ => {}
    }
    // Read stdin before connecting, so a slow pipe cannot eat into the session's lease.
    let stdin_value = match &args.command {
        CtlCommand::Put { value, .. } if value == "-" => Some(nodes::read_stdin().await?),
        _ => None,
    };
    let session = match Session::connect_with(options).await {
        Ok(s) => s,
        Err(e) => return Err(failure::with_hint(e.into(), &endpoints).await),
    };
    let result = dispatch(&session, args.command, stdin_value, out, &endpoints).await;
    // Ends the session at once: locks are released, ephemeral nodes go.
    let _ = session.close().await;
    result
}

/// Runs one command on a connected session.
async fn dispatch(
    session: &Session,
    command: CtlCommand,
    stdin_value: Option<Vec<u8>>,
    out: Output,
    endpoints: &[String],
) -> Result<ExitCode, Failure> {
    match command {
        CtlCommand::Mkdir { path, ephemeral } => {
            nodes::mkdir(session, &path, ephemeral, out).await?
        }
        CtlCommand::Put {
            path,
            value,
            if_generation,
            ephemeral,
        } => {
            let data = stdin_value.unwrap_or_else(|| value.into_bytes());
            nodes::put(session, &path, data, if_generation, ephemeral, out).await?;
        }
        CtlCommand::Cat { path, prefix } | CtlCommand::Get { path, prefix } => {
            if prefix {
                nodes::cat_prefix(session, &path, out).await?
            } else {
                nodes::cat(session, &path, out).await?
            }
        }
        CtlCommand::Stat { path } => nodes::stat(session, &path, out).await?,
        CtlCommand::Ls { path, recursive } => nodes::ls(session, &path, recursive, out).await?,
        CtlCommand::Rm {
            path,
            recursive,
            yes,
        } => nodes::rm(session, &path, recursive, yes, out).await?,
        CtlCommand::Lock {
            path: Some(path),
            shared,
            try_only,
            hold,
            ..
        } => {
            let mode = if shared {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            };
            return locks::lock(session, &path, mode, try_only, hold, out).await;
        }
        CtlCommand::CheckSequencer { sequencer } => {
            return locks::check_sequencer(session, &sequencer, out).await;
        }
        CtlCommand::Watch { path, count } => watch::watch(session, &path, count, out).await?,
        CtlCommand::Acl { command } => acl::run(session, command, out).await?,
        CtlCommand::Status => {
            let info = session.locate().await?;
            output::print_line(&output::status_text(&info, out))?;
        }
        CtlCommand::Deployment {
            command: DeploymentCommand::Init { cells, slots, .. },
        } => deployment::init(session, &deployment::parse_cells(&cells)?, slots, out).await?,
        CtlCommand::Map {
            command: MapCommand::Show,
        } => deployment::show(session, out).await?,
        CtlCommand::Map {
            command: MapCommand::Repair {
                from_cell, from, ..
            },
        } => repair::repair(session, endpoints, &from_cell, from.as_deref(), out).await?,
        CtlCommand::Reshard { .. }
        | CtlCommand::Backup { .. }
        | CtlCommand::Endpoint { .. }
        | CtlCommand::Session { .. }
        | CtlCommand::Version
        | CtlCommand::Lock { path: None, .. } => {
            unreachable!("these commands run before a session")
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
