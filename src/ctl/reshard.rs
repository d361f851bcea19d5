//! `warren ctl reshard …`: the operator's commands for moving slots between the cells of a
//! live deployment (docs/design.md §12, docs/operations.md "Resharding").
//!
//! - `plan` is a dry run: it reads the map in force from the meta cell, proposes the next
//!   map (the weighted, minimum-movement rebalancer, or the diff against `--to MAP.json`),
//!   asks each source cell what its moving slots hold (`Reshard.SlotStats`) and prints the
//!   plan ([`super::reshard_output`]) or its JSON; `--out FILE` saves the JSON.
//! - `apply PLAN` checks the saved plan against the map in force and starts the meta cell's
//!   job with it (`Reshard.ApplyPlan`).
//! - `status [--watch]` and `abort` show and stop that job (`JobStatus`, `AbortJob`).
//!
//! Every command talks to the meta cell named by `--meta` (default: `warren dev`'s,
//! [`DEFAULT_META`]); `--endpoint`/`--proxies` are not used. The map is read with an
//! ordinary session there; the Reshard calls go to the master among the replicas given (a
//! standby's `NOT_MASTER` names the master, which is followed), and `SlotStats` to the
//! master among each source cell's replicas from the map.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;
use warren_client::reshard::{at_master, slot_counts, CallError, CountsError};
use warren_client::{admin, ClientOptions, ErrorCode, Session};
use warren_config::parse_duration_or_seconds;
use warren_proto::pb;
use warren_reshard::{Plan, PlanError};
use warren_router::{diff, rebalance, CellChange, MapError, PartitionMap, Proposal, Weight};

use super::failure::Failure;
use super::output::{print_line, Output};
use super::reshard_output::{self, Estimate};

/// `warren dev`'s meta cell (at its default `--base-port`): where the reshard commands go
/// unless `--meta` says otherwise.
pub const DEFAULT_META: &str = "127.0.0.1:7100";

/// How often `status --watch` asks again.
const WATCH_PERIOD: Duration = Duration::from_millis(500);
/// `status --watch` gives up after this many failed polls in a row (10 s of them).
const WATCH_MAX_FAILURES: u32 = 20;

/// The meta cell, for every reshard command and the commands that find a deployment's
/// members (`endpoint`, `session list`, `lock list`).
#[derive(Clone, Debug, Args)]
pub struct MetaArg {
    /// The meta cell's replicas, tried in order (a standby names its master, which is
    /// followed); not --endpoint, which these commands do not use.
    #[arg(
        long,
        default_value = DEFAULT_META,
        value_delimiter = ',',
        value_name = "HOST:PORT[,HOST:PORT…]"
    )]
    pub meta: Vec<String>,
}

/// `warren ctl reshard …`.
#[derive(Debug, Subcommand)]
pub enum ReshardCommand {
    /// Dry run: propose the next map and print which slots move, what they hold and an
    /// estimated time. Changes nothing.
    #[command(after_help = ESTIMATE_HELP)]
    Plan(PlanArgs),
    /// Start the meta cell's reshard job with a plan saved by `plan --out`.
    Apply(ApplyArgs),
    /// Print the current (or last) reshard job.
    Status {
        #[command(flatten)]
        meta: MetaArg,
        /// Ask again every 500 ms until the job is neither running nor aborting (or Ctrl-C).
        #[arg(long)]
        watch: bool,
    },
    /// Stop the running reshard job at its next safe point; prints the job's state.
    Abort {
        #[command(flatten)]
        meta: MetaArg,
    },
}

/// The estimate's model, in `plan --help`.
const ESTIMATE_HELP: &str = "The estimated time is a model, not a measurement: 12 ms per \
moving slot (the job's round trips per slot) plus the bytes of the moving slots at the copy \
rate (--max-bytes-per-sec if given, else an assumed 50 MB/s). Slots moved by one batch in \
parallel, catch-up of writes made meanwhile and the cells' load are not modelled.";

/// `reshard plan`'s arguments.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub meta: MetaArg,
    /// A cell to add, with its replicas' addresses (the cell must be running: `warren cell
    /// --meta …`, or `warren dev --add-cell`). Repeatable.
    #[arg(
        long = "add-cell",
        value_name = "NAME=HOST:PORT[,HOST:PORT…]",
        conflicts_with = "to"
    )]
    pub add_cell: Vec<String>,
    /// A cell to drain and drop from the map. Repeatable.
    #[arg(long = "remove-cell", value_name = "NAME", conflicts_with = "to")]
    pub remove_cell: Vec<String>,
    /// A cell's relative capacity (a whole number; default 1 for every cell kept or added;
    /// 0 keeps a cell in the map owning nothing). Repeatable.
    #[arg(long, value_name = "NAME=W", conflicts_with = "to")]
    pub weight: Vec<String>,
    /// The target map itself (a partition map's JSON, as `warren ctl map show --json`
    /// prints it; its epoch is ignored) instead of --add-cell/--remove-cell/--weight.
    #[arg(long, value_name = "MAP.json")]
    pub to: Option<PathBuf>,
    /// Also save the plan's JSON to FILE, for `warren ctl reshard apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The copy rate the estimate assumes, in bytes per second (default 50 MB/s); give the
    /// limit you will pass to `apply`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_bytes_per_sec: Option<u64>,
}

/// `reshard apply`'s arguments.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub meta: MetaArg,
    /// The plan file `warren ctl reshard plan --out FILE` wrote.
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,
    /// Copy at most N bytes per second (default: no limit), so client traffic keeps its
    /// share.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_bytes_per_sec: Option<u64>,
    /// Slots committed together, each batch one new map (default: the job's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub slots_per_batch: Option<u32>,
    /// How long writes to a freezing slot may wait before that slot's move is abandoned
    /// and the source serves it again (e.g. `2s`, `500ms`; default 2 s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_or_seconds)]
    pub freeze_timeout: Option<Duration>,
}

/// Checks what can be checked without a server (so bad input fails the same with or
/// without one).
pub(crate) fn check_args(command: &ReshardCommand) -> Result<(), Failure> {
    match command {
        ReshardCommand::Plan(a) => {
            meta_endpoints(&a.meta)?;
            Change::parse(&a.add_cell, &a.remove_cell, &a.weight)?;
        }
        ReshardCommand::Apply(a) => {
            meta_endpoints(&a.meta)?;
            freeze_timeout_ms(a.freeze_timeout)?;
        }
        ReshardCommand::Status { meta, .. } | ReshardCommand::Abort { meta } => {
            meta_endpoints(meta)?;
        }
    }
    Ok(())
}

/// Runs a reshard command.
pub(crate) async fn run(
    command: ReshardCommand,
    out: Output,
    options: impl Fn(Vec<String>) -> ClientOptions,
) -> Result<ExitCode, Failure> {
    check_args(&command)?;
    match command {
        ReshardCommand::Plan(a) => plan(a, out, options).await,
        ReshardCommand::Apply(a) => apply(a, out, options).await,
        ReshardCommand::Status { meta, watch } => status(&meta_endpoints(&meta)?, watch, out).await,
        ReshardCommand::Abort { meta } => abort(&meta_endpoints(&meta)?, out).await,
    }
}

/// `--meta`'s addresses, trimmed; none is an error.
fn meta_endpoints(meta: &MetaArg) -> Result<Vec<String>, Failure> {
    let endpoints = super::addresses(&meta.meta);
    if endpoints.is_empty() {
        return Err(Failure::invalid(
            "no meta cell: give --meta HOST:PORT (the meta cell's replicas)",
        ));
    }
    Ok(endpoints)
}

/// `--freeze-timeout` in milliseconds (0: the job's default); below a millisecond is an
/// error.
fn freeze_timeout_ms(d: Option<Duration>) -> Result<u64, Failure> {
    match d {
        None => Ok(0),
        Some(d) if d.as_millis() == 0 => Err(Failure::invalid(format!(
            "--freeze-timeout {d:?} is under a millisecond; give e.g. 2s or 500ms"
        ))),
        Some(d) => Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

/// Cells' replica addresses, by cell name.
pub(crate) type Addresses = BTreeMap<String, Vec<String>>;

/// What `--add-cell`, `--remove-cell` and `--weight` ask for, parsed (not yet checked
/// against the map: [`Change::target`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// New cells and their replicas.
    pub(crate) add: Addresses,
    pub(crate) remove: BTreeSet<String>,
    pub(crate) weights: BTreeMap<String, Weight>,
}

impl Change {
    /// Parses the flags' values; a malformed one is INVALID_ARGUMENT naming it and the
    /// form it should have.
    pub(crate) fn parse(
        add: &[String],
        remove: &[String],
        weight: &[String],
    ) -> Result<Change, Failure> {
        let mut change = Change::default();
        for arg in add {
            let Some((name, addrs)) = arg.split_once('=') else {
                return Err(Failure::invalid(format!(
                    "--add-cell {arg:?} has no '='; write NAME=HOST:PORT[,HOST:PORT…], e.g. \
                     c4=127.0.0.1:7104"
                )));
            };
            let name = name.trim();
            let addrs: Vec<String> = addrs
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            if name.is_empty() {
                return Err(Failure::invalid(format!(
                    "--add-cell {arg:?} names no cell; write NAME=HOST:PORT[,HOST:PORT…]"
                )));
            }
            if addrs.is_empty() {
                return Err(Failure::invalid(format!(
                    "--add-cell {arg:?} gives cell {name} no replica address; write \
                     NAME=HOST:PORT[,HOST:PORT…]"
                )));
            }
            if change.add.insert(name.to_owned(), addrs).is_some() {
                return Err(Failure::invalid(format!(
                    "--add-cell names cell {name} twice; give all its replicas in one \
                     --add-cell {name}=HOST:PORT,HOST:PORT"
                )));
            }
        }
        for name in remove {
            let name = name.trim();
            if change.add.contains_key(name) {
                return Err(Failure::invalid(format!(
                    "cell {name} is both added (--add-cell) and removed (--remove-cell); \
                     keep one of the two"
                )));
            }
            change.remove.insert(name.to_owned());
        }
        for arg in weight {
            let Some((name, w)) = arg.split_once('=') else {
                return Err(Failure::invalid(format!(
                    "--weight {arg:?} has no '='; write NAME=W, e.g. c1=2"
                )));
            };
            let name = name.trim();
            let w: Weight = w.trim().parse().map_err(|_| {
                Failure::invalid(format!(
                    "--weight {arg:?}: the weight {:?} is not a whole number from 0 to {}; \
                     write NAME=W, e.g. {name}=2",
                    w.trim(),
                    Weight::MAX
                ))
            })?;
            if change.remove.contains(name) {
                return Err(Failure::invalid(format!(
                    "--weight {arg:?}: cell {name} is being removed (--remove-cell); drop \
                     one of the two"
                )));
            }
            if change.weights.insert(name.to_owned(), w).is_some() {
                return Err(Failure::invalid(format!(
                    "--weight gives cell {name} twice; give it once"
                )));
            }
        }
        Ok(change)
    }

    /// The rebalancer's target (every cell of the next map with its weight) and the new
    /// cells' addresses, against the map in force: a removed or weighted cell must exist,
    /// an added one must not, and some cell must remain.
    pub(crate) fn target(
        &self,
        map: &PartitionMap,
    ) -> Result<(BTreeMap<String, Weight>, Addresses), Failure> {
        let cells = || natural(map.cells().keys()).join(",");
        for name in &self.remove {
            if !map.cells().contains_key(name) {
                return Err(Failure::invalid(format!(
                    "--remove-cell {name}: the map in force (epoch {}) has no cell {name}; its \
                     cells are {}",
                    map.map_epoch(),
                    cells()
                )));
            }
        }
        for (name, addrs) in &self.add {
            if let Some(replicas) = map.replicas(name) {
                return Err(Failure::invalid(format!(
                    "--add-cell {name}={}: cell {name} is already in the map (at {}); add a \
                     cell under a new name, or change an existing cell's share with --weight",
                    addrs.join(","),
                    replicas.join(",")
                )));
            }
        }
        for name in self.weights.keys() {
            if !map.cells().contains_key(name) && !self.add.contains_key(name) {
                return Err(Failure::invalid(format!(
                    "--weight {name}=…: no cell {name} in the map in force (its cells are {}) \
                     or among --add-cell; check the name",
                    cells()
                )));
            }
        }
        let target: BTreeMap<String, Weight> = map
            .cells()
            .keys()
            .filter(|c| !self.remove.contains(*c))
            .chain(self.add.keys())
            .map(|c| (c.clone(), self.weights.get(c).copied().unwrap_or(1)))
            .collect();
        if target.is_empty() {
            return Err(Failure::invalid(format!(
                "the plan would leave no cell: --remove-cell removes every cell of the map \
                 ({}); keep one, or add one with --add-cell NAME=HOST:PORT",
                cells()
            )));
        }
        Ok((target, self.add.clone()))
    }
}

/// Cell names in natural order (c2 before c10).
pub(crate) fn natural<'a>(names: impl Iterator<Item = &'a String>) -> Vec<&'a str> {
    let mut v: Vec<&str> = names.map(String::as_str).collect();
    v.sort_by_key(|n| (n.len(), *n));
    v
}

/// A proposal's map error as the operator's: INVALID_ARGUMENT, the map's message.
fn cannot_propose(e: MapError) -> Failure {
    Failure::invalid(format!("cannot propose the next map: {e}"))
}

/// The target map of `--to FILE`: readable, a valid map, of this deployment and slot count.
pub(crate) fn read_target_map(
    path: &Path,
    current: &PartitionMap,
) -> Result<PartitionMap, Failure> {
    let text = std::fs::read(path).map_err(|e| {
        Failure::invalid(format!(
            "--to {}: cannot read the file: {e}",
            path.display()
        ))
    })?;
    let to = PartitionMap::from_json(&text).map_err(|e| {
        Failure::invalid(format!(
            "--to {}: not a partition map: {e}; write the map's JSON (as `warren ctl map show \
             --json` prints it) with the cells you want",
            path.display()
        ))
    })?;
    if to.deployment() != current.deployment() {
        return Err(Failure::invalid(format!(
            "--to {}: the map is of deployment {}, but the meta cell serves deployment {}; \
             set \"deployment\": \"{}\"",
            path.display(),
            to.deployment(),
            current.deployment(),
            current.deployment()
        )));
    }
    if to.slot_count() != current.slot_count() {
        return Err(Failure::invalid(format!(
            "--to {}: the map has {} slots, but the deployment has {} (fixed for its life); \
             give every one of the {} slots an owner",
            path.display(),
            to.slot_count(),
            current.slot_count(),
            current.slot_count()
        )));
    }
    Ok(to)
}

/// A proposal for an explicit target map: its moves are the diff; each cell's "weight" is
/// the slots it gets (proportional, which is what a weight means).
pub(crate) fn proposal_to(current: &PartitionMap, to: PartitionMap) -> Result<Proposal, Failure> {
    let moves = diff(current, &to).map_err(cannot_propose)?;
    let before = current.slot_counts();
    let after = to.slot_counts();
    let cells = before
        .keys()
        .chain(after.keys())
        .map(|c| {
            let change = CellChange {
                weight: after.get(c).copied(),
                added: !before.contains_key(c),
                before: before.get(c).copied().unwrap_or(0),
                after: after.get(c).copied().unwrap_or(0),
            };
            (c.clone(), change)
        })
        .collect();
    Ok(Proposal {
        map: to,
        moves,
        cells,
    })
}

/// Reads and checks the map in force through a session at the meta cell.
async fn map_in_force(options: ClientOptions) -> Result<PartitionMap, Failure> {
    let session = Session::connect_with(options).await?;
    let read = admin::read_map(&session).await;
    let _ = session.close().await;
    Ok(read?.0)
}

/// The map in force (read with a session made from `options`) and the plan `a` asks for,
/// with the source cells' counts.
pub(crate) async fn make_plan(
    a: &PlanArgs,
    options: ClientOptions,
) -> Result<(PartitionMap, Plan), Failure> {
    let change = Change::parse(&a.add_cell, &a.remove_cell, &a.weight)?;
    let current = map_in_force(options).await?;
    let proposal = match &a.to {
        Some(path) => proposal_to(&current, read_target_map(path, &current)?)?,
        None => {
            let (target, addresses) = change.target(&current)?;
            rebalance(&current, &target, &addresses).map_err(cannot_propose)?
        }
    };
    let mut plan = Plan::from_proposal(&current, &proposal);
    let counts = slot_counts(&current, &plan).await.map_err(counts_failure)?;
    plan.set_counts(&counts);
    Ok((current, plan))
}

/// `reshard plan`.
async fn plan(
    a: PlanArgs,
    out: Output,
    options: impl Fn(Vec<String>) -> ClientOptions,
) -> Result<ExitCode, Failure> {
    let (current, plan) = make_plan(&a, options(meta_endpoints(&a.meta)?)).await?;
    let estimate = Estimate::of(&plan, a.max_bytes_per_sec);
    if let Some(path) = &a.out {
        if !plan.moves.is_empty() {
            std::fs::write(path, plan.to_json() + "\n").map_err(|e| {
                Failure::invalid(format!(
                    "--out {}: cannot write the plan: {e}",
                    path.display()
                ))
            })?;
        }
    }
    if out.json {
        print_line(&plan.to_json())?;
    } else {
        let mut text = reshard_output::plan_text(&current, &plan, &estimate);
        if let Some(path) = &a.out {
            text.push('\n');
            text.push_str(&if plan.moves.is_empty() {
                format!("nothing to apply: {} not written", path.display())
            } else {
                format!(
                    "plan saved to {p}; start it with `warren ctl reshard apply {p}{meta}`",
                    p = path.display(),
                    meta = meta_flag(&a.meta)
                )
            });
        }
        print_line(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// ` --meta …` when the meta cell is not the default, for commands ctl suggests.
fn meta_flag(meta: &MetaArg) -> String {
    if meta.meta == [DEFAULT_META] {
        String::new()
    } else {
        format!(" --meta {}", meta.meta.join(","))
    }
}

/// The failure to report when the source cells' counts could not be had.
pub(crate) fn counts_failure(e: CountsError) -> Failure {
    match e {
        CountsError::Call {
            cell,
            replicas,
            error,
        } => call_failure(
            error,
            &format!("cell {cell}"),
            &replicas,
            "count its moving slots",
        ),
        CountsError::Stale {
            cell,
            answered,
            plan,
        } => Failure {
            code: ErrorCode::GenerationMismatch.as_str_name(),
            message: format!(
                "cell {cell} answered at map epoch {answered}, but the plan was made against \
                 epoch {plan}: the map changed while planning; run `warren ctl reshard plan` \
                 again"
            ),
        },
    }
}

/// The failure to report for a call to `who` (e.g. `cell c1`, `the meta cell`) at
/// `replicas`, which was to `what`.
pub(crate) fn call_failure(e: CallError, who: &str, replicas: &[String], what: &str) -> Failure {
    let code = e.code().as_str_name();
    match e {
        CallError::Warren(e) => Failure {
            code,
            message: format!("{who}: {}", e.message),
        },
        // UNREACHABLE when nothing was sent, OUTCOME_UNKNOWN when the call was lost.
        CallError::Unreachable { attempts, .. } => Failure {
            code,
            message: format!(
                "cannot reach {who} at {} to {what}: {}",
                replicas.join(","),
                attempts.join("; ")
            ),
        },
    }
}

/// Reads a plan file: unreadable or not a plan is INVALID_ARGUMENT naming the file and the
/// fix.
pub(crate) fn read_plan(path: &Path) -> Result<(Plan, Vec<u8>), Failure> {
    let bytes = std::fs::read(path).map_err(|e| {
        Failure::invalid(format!(
            "cannot read the plan {}: {e}; make one with `warren ctl reshard plan --out FILE`",
            path.display()
        ))
    })?;
    let plan = Plan::from_json(&bytes)
        .map_err(|e| Failure::invalid(format!("{}: {e}", path.display())))?;
    Ok((plan, bytes))
}

/// A plan that does not fit the map in force: stale (the map moved on) is
/// GENERATION_MISMATCH, anything else INVALID_ARGUMENT; the message names the fix.
pub(crate) fn plan_misfit(path: &Path, e: PlanError) -> Failure {
    let code = match e {
        PlanError::Stale { .. } | PlanError::WrongSource { .. } => {
            ErrorCode::GenerationMismatch.as_str_name()
        }
        _ => ErrorCode::InvalidArgument.as_str_name(),
    };
    Failure {
        code,
        message: format!("{}: {e}", path.display()),
    }
}

/// `reshard apply`.
async fn apply(
    a: ApplyArgs,
    out: Output,
    options: impl Fn(Vec<String>) -> ClientOptions,
) -> Result<ExitCode, Failure> {
    let meta = meta_endpoints(&a.meta)?;
    let freeze_timeout_ms = freeze_timeout_ms(a.freeze_timeout)?;
    let (plan, bytes) = read_plan(&a.plan)?;
    let current = map_in_force(options(meta.clone())).await?;
    plan.check_against(&current)
        .map_err(|e| plan_misfit(&a.plan, e))?;
    if plan.moves.is_empty() {
        return Err(Failure::invalid(format!(
            "{}: the plan moves nothing; make one that does with `warren ctl reshard plan`",
            a.plan.display()
        )));
    }
    let request = pb::ApplyPlanRequest {
        plan: bytes,
        max_bytes_per_sec: a.max_bytes_per_sec.unwrap_or(0),
        slots_per_batch: a.slots_per_batch.unwrap_or(0),
        freeze_timeout_ms,
    };
    let reply = at_master(&meta, |mut c| {
        let request = request.clone();
        async move { c.apply_plan(request).await }
    })
    .await
    .map_err(|e| call_failure(e, "the meta cell", &meta, "start the job"))?;
    if out.json {
        print_line(&serde_json::json!({ "job": reply.job }).to_string())?;
    } else {
        print_line(&format!(
            "started reshard job {}: {} slots move from map epoch {}\nfollow it with `warren \
             ctl reshard status --watch{}`",
            reply.job,
            plan.moves.len(),
            plan.from_epoch,
            meta_flag(&a.meta)
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The job's JSON from a `JobStatus`/`AbortJob` answer; `None` when no job ever ran.
pub(crate) fn job_json(bytes: &[u8]) -> Result<Option<Value>, Failure> {
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| Failure {
            code: "INTERNAL",
            message: format!(
                "the meta cell's job record is not JSON ({e}): {}",
                String::from_utf8_lossy(bytes)
            ),
        })
}

/// Whether a job in this JSON is still going (`running` or `aborting`).
pub(crate) fn job_active(job: &Value) -> bool {
    matches!(job["state"].as_str(), Some("running" | "aborting"))
}

/// One `JobStatus` at the meta cell's master: the job, if any, and its raw JSON.
async fn job_status(meta: &[String]) -> Result<Option<(Value, String)>, Failure> {
    let reply = at_master(meta, |mut c| async move {
        c.job_status(pb::JobStatusRequest {}).await
    })
    .await
    .map_err(|e| call_failure(e, "the meta cell", meta, "read the reshard job"))?;
    let raw = String::from_utf8_lossy(&reply.job).into_owned();
    Ok(job_json(&reply.job)?.map(|v| (v, raw)))
}

/// `reshard status [--watch]`.
async fn status(meta: &[String], watch: bool, out: Output) -> Result<ExitCode, Failure> {
    let show = |job: &Option<(Value, String)>| -> Result<(), Failure> {
        match job {
            None if out.json => print_line("null"),
            None => print_line("no reshard job has run in this deployment"),
            Some((_, raw)) if out.json => print_line(raw.trim()),
            Some((v, _)) => print_line(&reshard_output::render_status(v)),
        }
    };
    let first = job_status(meta).await?;
    if !watch || !first.as_ref().is_some_and(|(v, _)| job_active(v)) {
        show(&first)?;
        return Ok(ExitCode::SUCCESS);
    }
    // On a terminal, --watch shows a live progress bar, then the final status.
    let bar = (!out.json && std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .then(|| progress_bar(first.as_ref().map(|(v, _)| v)));
    if bar.is_none() {
        show(&first)?;
    }
    let mut last = first.map(|(v, _)| v);
    let mut failures = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(WATCH_PERIOD) => {}
        }
        let job = match job_status(meta).await {
            Ok(job) => {
                failures = 0;
                job
            }
            // The meta cell may be failing over: keep asking, for a while.
            Err(_) if failures + 1 < WATCH_MAX_FAILURES => {
                failures += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let value = job.as_ref().map(|(v, _)| v.clone());
        match (&bar, &value) {
            (Some(bar), Some(v)) => advance(bar, v),
            _ if value != last => show(&job)?,
            _ => {}
        }
        last = value;
        if !last.as_ref().is_some_and(job_active) {
            if let Some(bar) = bar {
                bar.finish_and_clear();
                show(&job)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// The `status --watch` bar: slots finished (moved or given up) of all, and the job's
/// one-line summary.
fn progress_bar(first: Option<&Value>) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} slots  {msg}",
        )
        .expect("a valid template"),
    );
    if let Some(v) = first {
        advance(&bar, v);
    }
    bar
}

fn advance(bar: &indicatif::ProgressBar, v: &Value) {
    match serde_json::from_value::<warren_reshard::job::JobStatus>(v.clone()) {
        Ok(s) => {
            bar.set_length(s.slots_total as u64);
            bar.set_position((s.slots_moved + s.slots_aborted) as u64);
            bar.set_message(reshard_output::status_line(&s));
        }
        Err(_) => bar.set_message(v.to_string()),
    }
}

/// `reshard abort`.
async fn abort(meta: &[String], out: Output) -> Result<ExitCode, Failure> {
    let reply = at_master(meta, |mut c| async move {
        c.abort_job(pb::AbortJobRequest {}).await
    })
    .await
    .map_err(|e| call_failure(e, "the meta cell", meta, "abort the reshard job"))?;
    let job = job_json(&reply.job)?;
    match job {
        None if out.json => print_line("null")?,
        None => print_line("no reshard job has run in this deployment")?,
        Some(_) if out.json => print_line(String::from_utf8_lossy(&reply.job).trim())?,
        Some(v) => print_line(&reshard_output::abort_text(&v))?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[path = "reshard_tests.rs"]
mod tests;
