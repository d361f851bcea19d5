//! `--reshard add-cell@T`: a reshard under load, and what the clients saw of it
//! (docs/loadtest.md, "Measuring a reshard"; docs/design.md §12).
//!
//! At T into the measured window the run starts one more data cell of the deployment it
//! launched ([`crate::deploy::Deployment::add_cell`]), plans the move to it with
//! [`plan_add_cell`] (the weighted minimum-movement rebalancer and the source cells'
//! `SlotStats`, as `warren ctl reshard plan --add-cell` does), starts the meta cell's job
//! with `Reshard.ApplyPlan` and follows it with `JobStatus` until it ends.
//!
//! [`Phases`] splits what the clients recorded at the move's start and end: an operation
//! belongs to the move if it was in flight at any moment of `[start, end]` (intended before
//! the end, finished after the start), to *before* if it finished before the start and to
//! *after* if it was intended after the end. [`ReshardReport`] is the report's section.

use crate::fence::LockChecks;
use crate::report::{latency_histogram, percentiles};
use anyhow::{anyhow, bail, Context};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use warren_client::reshard::{at_master, slot_counts, CallError, CountsError};
use warren_client::{admin, Session};
use warren_proto::pb;
use warren_reshard::job::JobStatus;
use warren_reshard::{MoveCounts, Plan};
use warren_router::{rebalance, Weight};

/// How often the job's status is asked for while it runs.
pub const POLL_PERIOD: Duration = Duration::from_millis(100);
/// How long after the window the run waits for a job that is still going.
pub const PATIENCE_AFTER_WINDOW: Duration = Duration::from_secs(300);
/// Failed `JobStatus` polls in a row after which the run stops following the job (the
/// meta cell may fail over meanwhile: 10 s of them).
const MAX_POLL_FAILURES: u32 = 100;

/// `add-cell@T`: add a data cell at T into the measured window and move its share of the
/// slots to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReshardSpec {
    pub at: Duration,
    /// Slots committed together, each batch one new map (0: the job's default, 16).
    pub slots_per_batch: u32,
}

const SPEC_SYNTAX: &str = "add-cell@TIME, e.g. add-cell@10s (TIME from the start of the \
                           measured window)";

impl FromStr for ReshardSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<ReshardSpec, String> {
        let Some((what, at)) = s.trim().split_once('@') else {
            return Err(format!("--reshard {s:?} has no @TIME: write {SPEC_SYNTAX}"));
        };
        if what.trim() != "add-cell" {
            return Err(format!(
                "--reshard {s:?}: {:?} is not a reshard this load test can run; write \
                 {SPEC_SYNTAX}",
                what.trim()
            ));
        }
        let at = crate::run::parse_duration(at.trim())
            .map_err(|e| format!("--reshard {s:?}: the time {e}; write {SPEC_SYNTAX}"))?;
        Ok(ReshardSpec {
            at,
            slots_per_batch: 0,
        })
    }
}

impl std::fmt::Display for ReshardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "add-cell@{}", warren_config::format_duration(self.at))
    }
}

/// A Reshard call's failure, named.
fn call_error(e: CallError, who: &str, what: &str) -> anyhow::Error {
    let code = e.code().as_str_name();
    match e {
        CallError::Warren(e) => anyhow!("{who} refused to {what}: {code}: {}", e.message),
        CallError::Unreachable { attempts, .. } => {
            anyhow!(
                "{code}: cannot reach {who} to {what}: {}",
                attempts.join("; ")
            )
        }
    }
}

/// The plan that adds cell `cell` (replicas `addrs`) to the deployment whose meta cell is
/// at `meta` with a weight of 1 like every other cell: the map in force, the rebalancer's
/// minimum-movement proposal, and each move's counts from its source cell's `SlotStats` —
/// what `warren ctl reshard plan --add-cell CELL=ADDRS` saves.
pub async fn plan_add_cell(meta: &[String], cell: &str, addrs: &[String]) -> anyhow::Result<Plan> {
    let session = Session::connect_with(admin::operator_options(meta.iter().cloned()))
        .await
        .with_context(|| format!("cannot open a session at the meta cell {}", meta.join(",")))?;
    let read = admin::read_map(&session).await;
    let _ = session.close().await;
    let (map, _) = read.map_err(|e| {
        anyhow!(
            "cannot read the partition map at the meta cell: {}: {}",
            e.code_name(),
            e.message()
        )
    })?;
    if map.cells().contains_key(cell) {
        bail!(
            "cell {cell} is already in the partition map (epoch {})",
            map.map_epoch()
        );
    }
    let target: BTreeMap<String, Weight> = map
        .cells()
        .keys()
        .cloned()
        .chain([cell.to_string()])
        .map(|c| (c, 1))
        .collect();
    let addresses = BTreeMap::from([(cell.to_string(), addrs.to_vec())]);
    let proposal = rebalance(&map, &target, &addresses)
        .map_err(|e| anyhow!("cannot propose the next map: {e}"))?;
    let mut plan = Plan::from_proposal(&map, &proposal);
    let counts = slot_counts(&map, &plan).await.map_err(|e| match e {
        CountsError::Call { cell, error, .. } => {
            call_error(error, &format!("cell {cell}"), "count its moving slots")
        }
        CountsError::Stale {
            cell,
            answered,
            plan,
        } => anyhow!(
            "cell {cell} answered at map epoch {answered}, but the plan was made against \
             epoch {plan}: the map changed while planning"
        ),
    })?;
    plan.set_counts(&counts);
    Ok(plan)
}

/// Starts the meta cell's reshard job with `plan` (`Reshard.ApplyPlan` at its master;
/// `slots_per_batch` 0: the job's default). Returns the job's id.
pub async fn apply(meta: &[String], plan: &Plan, slots_per_batch: u32) -> anyhow::Result<String> {
    let request = pb::ApplyPlanRequest {
        plan: plan.to_json().into_bytes(),
        max_bytes_per_sec: 0,
        slots_per_batch,
        freeze_timeout_ms: 0,
    };
    let reply = at_master(meta, |mut c| {
        let request = request.clone();
        async move { c.apply_plan(request).await }
    })
    .await
    .map_err(|e| call_error(e, "the meta cell", "start the reshard job"))?;
    Ok(reply.job)
}

/// The reshard job's status at the meta cell's master (`JobStatus`); `None` if no job ever
/// ran.
pub async fn job_status(meta: &[String]) -> anyhow::Result<Option<JobStatus>> {
    let reply = at_master(meta, |mut c| async move {
        c.job_status(pb::JobStatusRequest {}).await
    })
    .await
    .map_err(|e| call_error(e, "the meta cell", "read the reshard job"))?;
    if reply.job.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&reply.job)
        .map(Some)
        .with_context(|| {
            format!(
                "the meta cell's job status is not a JobStatus: {}",
                String::from_utf8_lossy(&reply.job)
            )
        })
}

/// Polls the job until it has ended (or `give_up` passes, or the polls keep failing):
/// its last status, and whether it ended.
pub async fn follow(
    meta: &[String],
    job: &str,
    give_up: Instant,
) -> anyhow::Result<(JobStatus, bool)> {
    let mut failures = 0;
    let mut last: Option<JobStatus> = None;
    loop {
        match job_status(meta).await {
            Ok(Some(s)) if s.id == job => {
                failures = 0;
                let ended = s.state.is_finished();
                last = Some(s);
                if ended {
                    return Ok((last.expect("just set"), true));
                }
            }
            Ok(Some(s)) => bail!("the meta cell runs job {}, not ours ({job})", s.id),
            Ok(None) => bail!("the meta cell has no reshard job, though it started {job}"),
            Err(e) => {
                failures += 1;
                if failures >= MAX_POLL_FAILURES {
                    return Err(e.context(format!("{failures} JobStatus calls in a row failed")));
                }
            }
        }
        if Instant::now() >= give_up {
            return last
                .map(|s| (s, false))
                .ok_or_else(|| anyhow!("no status of job {job} before giving up"));
        }
        tokio::time::sleep(POLL_PERIOD).await;
    }
}

/// Where an event falls against the move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Before = 0,
    During = 1,
    After = 2,
}

/// Most operation kinds a [`Phases`] records (read, write, lock).
pub const KINDS: usize = 3;

/// What the clients recorded, split at the move's start and end (see the module docs).
pub struct Phases {
    /// The move's start and end, once known.
    marks: Mutex<(Option<Instant>, Option<Instant>)>,
    /// Successful operations' latency in µs, by phase and kind.
    hist: [[Mutex<Histogram<u64>>; KINDS]; 3],
    /// Failed operations, by phase and kind.
    errors: [[AtomicU64; KINDS]; 3],
    /// Failed calls (operations and session calls) by `CALL:CODE`, by phase.
    codes: [Mutex<BTreeMap<String, u64>>; 3],
    /// Jeopardy episodes that began in each phase.
    jeopardy: [AtomicU64; 3],
    /// Clients that expired in each phase.
    expired: [AtomicU64; 3],
    /// Lock check findings in each phase: overlaps, stale sequencers.
    overlaps: [AtomicU64; 3],
    stale: [AtomicU64; 3],
}

impl Default for Phases {
    fn default() -> Self {
        Phases {
            marks: Mutex::new((None, None)),
            hist: std::array::from_fn(|_| std::array::from_fn(|_| Mutex::new(latency_histogram()))),
            errors: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            codes: std::array::from_fn(|_| Mutex::new(BTreeMap::new())),
            jeopardy: std::array::from_fn(|_| AtomicU64::new(0)),
            expired: std::array::from_fn(|_| AtomicU64::new(0)),
            overlaps: std::array::from_fn(|_| AtomicU64::new(0)),
            stale: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Phases {
    /// The move starts now (just before `ApplyPlan` is sent).
    pub fn start(&self, at: Instant) {
        self.marks.lock().expect("marks lock").0 = Some(at);
    }

    /// The move has ended (its end was seen at `at`).
    pub fn end(&self, at: Instant) {
        self.marks.lock().expect("marks lock").1 = Some(at);
    }

    /// The phase of something in progress from `from` to `to`.
    pub fn phase(&self, from: Instant, to: Instant) -> Phase {
        let (start, end) = *self.marks.lock().expect("marks lock");
        match (start, end) {
            (None, _) => Phase::Before,
            (Some(s), _) if to < s => Phase::Before,
            (_, Some(e)) if from > e => Phase::After,
            _ => Phase::During,
        }
    }

    /// An operation of kind `kind` intended at `intended` ended at `done`: successfully
    /// after `us` µs, or failed (`None`).
    pub fn op(&self, kind: usize, intended: Instant, done: Instant, us: Option<u64>) {
        let p = self.phase(intended, done) as usize;
        match us {
            Some(us) => self.hist[p][kind]
                .lock()
                .expect("histogram lock")
                .saturating_record(us),
            None => {
                self.errors[p][kind].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A failed call (`CALL:CODE`) of something in progress from `from` until now.
    pub fn error(&self, key: &str, from: Instant) {
        let p = self.phase(from, Instant::now()) as usize;
        *self.codes[p]
            .lock()
            .expect("codes lock")
            .entry(key.to_string())
            .or_insert(0) += 1;
    }

    /// A session went into jeopardy now.
    pub fn jeopardy(&self) {
        let now = Instant::now();
        self.jeopardy[self.phase(now, now) as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A client expired now.
    pub fn expired(&self) {
        let now = Instant::now();
        self.expired[self.phase(now, now) as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The lock check found an overlap (`stale` false) or a stale sequencer now.
    pub fn lock_finding(&self, stale: bool) {
        let now = Instant::now();
        let p = self.phase(now, now) as usize;
        if stale {
            self.stale[p].fetch_add(1, Ordering::Relaxed);
        } else {
            self.overlaps[p].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Fills in `r`'s client figures: per kind (`names[k]` for kind k) before, during and
    /// after the move, the errors and their codes, the session and lock findings.
    pub fn fill(&self, names: &[&str; KINDS], r: &mut ReshardReport) {
        for (k, name) in names.iter().enumerate() {
            let window = |p: Phase| {
                let h = self.hist[p as usize][k].lock().expect("histogram lock");
                WindowOp::new(&h, self.errors[p as usize][k].load(Ordering::Relaxed))
            };
            r.ops.insert(
                (*name).to_string(),
                PhaseOps {
                    before: window(Phase::Before),
                    during: window(Phase::During),
                    after: window(Phase::After),
                },
            );
        }
        let codes = |p: Phase| self.codes[p as usize].lock().expect("codes lock").clone();
        r.errors_before_by_code = codes(Phase::Before);
        r.errors_during_by_code = codes(Phase::During);
        r.errors_after_by_code = codes(Phase::After);
        r.errors_during = r.errors_during_by_code.values().sum();
        let during = Phase::During as usize;
        r.jeopardy_during = self.jeopardy[during].load(Ordering::Relaxed);
        r.expired_during = self.expired[during].load(Ordering::Relaxed);
        r.lock_overlaps_during = self.overlaps[during].load(Ordering::Relaxed);
        r.stale_sequencers_during = self.stale[during].load(Ordering::Relaxed);
    }
}

/// One operation kind over one phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowOp {
    /// Successful operations.
    pub count: u64,
    /// Failed operations.
    pub errors: u64,
    /// Latency of the successful ones from their intended send time (null: none).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl WindowOp {
    pub fn new(h: &Histogram<u64>, errors: u64) -> WindowOp {
        let p = (!h.is_empty()).then(|| percentiles(h));
        WindowOp {
            count: h.len(),
            errors,
            p50_ms: p.as_ref().map(|p| p.p50_ms),
            p99_ms: p.as_ref().map(|p| p.p99_ms),
            max_ms: p.as_ref().map(|p| p.max_ms),
        }
    }
}

/// One operation kind before, during and after the move.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhaseOps {
    pub before: WindowOp,
    pub during: WindowOp,
    pub after: WindowOp,
}

/// Per-slot write pauses (freeze to map commit), over the slots that have one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Pauses {
    pub slots: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl Pauses {
    /// Nearest-rank percentiles of the pauses in `status` (none: `None`).
    pub fn of(status: &JobStatus) -> Option<Pauses> {
        let mut v: Vec<u64> = status
            .slots
            .iter()
            .filter_map(|s| s.write_pause_ms)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Pauses {
            slots: v.len() as u64,
            p50_ms: rank(0.5),
            p99_ms: rank(0.99),
            max_ms: *v.last().expect("not empty"),
        })
    }
}

/// The report's reshard section (`reshard` in the JSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReshardReport {
    /// `add-cell@T`.
    pub spec: String,
    /// The added cell and its address.
    pub cell: String,
    pub cell_addr: String,
    /// Seconds from the window's start: when the reshard was due (T), when the new cell
    /// served, when `ApplyPlan` was sent (the move's start), when the job was seen to have
    /// ended (the move's end; polled every 100 ms).
    #[serde(deserialize_with = "crate::report::float_or_null")]
    pub at_s: f64,
    pub cell_ready_s: Option<f64>,
    pub start_s: Option<f64>,
    pub end_s: Option<f64>,
    /// `end_s - start_s`.
    pub total_s: Option<f64>,
    /// The job's own start to finish (the meta cell's clock).
    pub job_s: Option<f64>,
    pub job: Option<String>,
    /// The job's final state (`done`, `partial`, `aborted`, `failed: …`), `running` if it
    /// had not ended when the run stopped following it, `not started` if it never started.
    pub state: String,
    /// The job's message, or why the reshard could not run.
    pub message: String,
    pub last_error: Option<String>,
    /// Slots the plan moves, slots moved, slots given up.
    pub slots_planned: u64,
    pub slots_moved: u64,
    pub slots_aborted: u64,
    /// What the moving slots held when planned (the sources' `SlotStats`).
    pub planned: MoveCounts,
    pub bytes_copied: u64,
    /// Per-slot write pause (freeze to commit), from the job's status.
    pub write_pause: Option<Pauses>,
    /// Per operation kind: the clients' latency and errors before, during, after the move.
    pub ops: BTreeMap<String, PhaseOps>,
    /// Failed calls during the move (operations and session calls).
    pub errors_during: u64,
    pub errors_before_by_code: BTreeMap<String, u64>,
    pub errors_during_by_code: BTreeMap<String, u64>,
    pub errors_after_by_code: BTreeMap<String, u64>,
    /// Jeopardy episodes that began, and clients that expired, during the move.
    pub jeopardy_during: u64,
    pub expired_during: u64,
    /// The lock check ([`crate::fence`]) during the move.
    pub lock_overlaps_during: u64,
    pub stale_sequencers_during: u64,
    /// Exclusive locks the first clients took before the window and held through the move,
    /// and how many of them were still theirs after it (the sequencer taken before still
    /// current, and the holder's `Release` found it held); what went wrong with the others.
    pub held_locks: u64,
    pub held_locks_kept: u64,
    pub held_lock_problems: Vec<String>,
}

impl ReshardReport {
    /// Whether the move went as it should: the job `done`, slots moved, no failed call,
    /// no jeopardy or expiry and no lock finding during it.
    pub fn clean(&self) -> bool {
        self.state == "done"
            && self.slots_moved > 0
            && self.errors_during == 0
            && self.jeopardy_during == 0
            && self.expired_during == 0
            && self.lock_overlaps_during == 0
            && self.stale_sequencers_during == 0
            && self.held_locks_kept == self.held_locks
    }

    /// Takes in the job's final status (`ended`: it had finished).
    pub fn set_job(&mut self, s: &JobStatus, ended: bool) {
        self.job = Some(s.id.clone());
        self.state = if ended {
            state_name(&s.state)
        } else {
            "running".into()
        };
        self.message = s.message.clone();
        self.last_error = s.last_error.clone();
        self.slots_moved = s.slots_moved as u64;
        self.slots_aborted = s.slots_aborted as u64;
        self.bytes_copied = s.bytes_copied;
        self.job_s = s
            .finished_ms
            .map(|f| f.saturating_sub(s.started_ms) as f64 / 1000.0);
        self.write_pause = Pauses::of(s);
    }

    /// The terminal section (and the HTML's text).
    pub fn summary(&self, lock: &LockChecks, acked_lost: Option<u64>) -> String {
        let mut s = String::new();
        let secs = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} s"));
        let _ = writeln!(
            s,
            "reshard ({}): add cell {} ({}): job {} {} — {} of {} slots moved, {} given up",
            self.spec,
            self.cell,
            self.cell_addr,
            self.job.as_deref().unwrap_or("-"),
            self.state.to_uppercase(),
            self.slots_moved,
            self.slots_planned,
            self.slots_aborted,
        );
        let _ = writeln!(
            s,
            "  due at {:.1} s; cell serving at {}; move from {} to {}: {} in all (the job's own \
             clock: {})",
            self.at_s,
            secs(self.cell_ready_s),
            secs(self.start_s),
            secs(self.end_s),
            secs(self.total_s),
            secs(self.job_s),
        );
        if !self.message.is_empty() {
            let _ = writeln!(s, "  {}", self.message);
        }
        if let Some(e) = &self.last_error {
            let _ = writeln!(s, "  last error: {e}");
        }
        let p = &self.planned;
        let _ = writeln!(
            s,
            "  the moving slots held {} nodes ({} bytes), {} held locks, {} open handles of {} \
             sessions; {} bytes copied",
            p.nodes, p.bytes, p.held_locks, p.open_handles, p.sessions, self.bytes_copied
        );
        match &self.write_pause {
            Some(w) => {
                let _ = writeln!(
                    s,
                    "  write pause per slot ({} slots): p50 {} ms, p99 {} ms, max {} ms",
                    w.slots, w.p50_ms, w.p99_ms, w.max_ms
                );
            }
            None => {
                let _ = writeln!(s, "  write pause per slot: none recorded");
            }
        }
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
        let _ = writeln!(
            s,
            "  {:<6} {:>21} {:>21} {:>21}",
            "op", "before: p50/p99 ms", "during: p50/p99 ms", "after: p50/p99 ms"
        );
        for (name, o) in &self.ops {
            let cell = |w: &WindowOp| {
                format!(
                    "{}/{} ({}{})",
                    ms(w.p50_ms),
                    ms(w.p99_ms),
                    w.count,
                    if w.errors > 0 {
                        format!(", {} err", w.errors)
                    } else {
                        String::new()
                    }
                )
            };
            let _ = writeln!(
                s,
                "  {:<6} {:>21} {:>21} {:>21}",
                name,
                cell(&o.before),
                cell(&o.during),
                cell(&o.after)
            );
        }
        let _ = writeln!(
            s,
            "  during the move: {} failed calls, {} sessions went into jeopardy, {} expired",
            self.errors_during, self.jeopardy_during, self.expired_during
        );
        for (k, n) in &self.errors_during_by_code {
            let _ = writeln!(s, "    {n} × {k}");
        }
        let _ = writeln!(
            s,
            "  checks: {} lock overlaps and {} stale sequencers during the move ({} and {} in \
             the whole run, over {} acquisitions); acked_lost {} (whole run, read back after \
             the move)",
            self.lock_overlaps_during,
            self.stale_sequencers_during,
            lock.overlaps,
            lock.stale_sequencers,
            lock.acquired,
            acked_lost.map_or_else(|| "not checked".to_string(), |n| n.to_string()),
        );
        if self.held_locks > 0 {
            let _ = writeln!(
                s,
                "  locks held through the move: {} of {} still held by their holder after it \
                 (sequencer current, released as held)",
                self.held_locks_kept, self.held_locks
            );
            for p in &self.held_lock_problems {
                let _ = writeln!(s, "    {p}");
            }
        }
        s
    }
}

/// A job state's name as the job's JSON writes it (`failed: REASON` for a failure).
pub fn state_name(s: &warren_reshard::job::JobState) -> String {
    use warren_reshard::job::JobState;
    match s {
        JobState::Running => "running".into(),
        JobState::Aborting => "aborting".into(),
        JobState::Done => "done".into(),
        JobState::Partial => "partial".into(),
        JobState::Aborted => "aborted".into(),
        JobState::Failed { reason } => format!("failed: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_reshard::job::{JobState, SlotState, SlotStatus};

    #[test]
    fn the_spec_parses_strictly() {
        assert_eq!(
            "add-cell@10s".parse::<ReshardSpec>(),
            Ok(ReshardSpec {
                at: Duration::from_secs(10),
                slots_per_batch: 0
            })
        );
        assert_eq!(
            " add-cell@1m30s ".parse::<ReshardSpec>().unwrap().at,
            Duration::from_secs(90)
        );
        assert_eq!(
            "add-cell@500ms".parse::<ReshardSpec>().unwrap().to_string(),
            "add-cell@500ms"
        );
        for (bad, says) in [
            ("add-cell", "has no @TIME"),
            ("add-cell10s", "has no @TIME"),
            ("remove-cell@10s", "\"remove-cell\" is not a reshard"),
            ("@10s", "\"\" is not a reshard"),
            ("add-cell@", "the time"),
            ("add-cell@soon", "the time"),
            ("add-cell@10", "the time"),
        ] {
            let e = bad.parse::<ReshardSpec>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.contains("add-cell@TIME, e.g. add-cell@10s"), "{bad}: {e}");
        }
    }

    #[test]
    fn operations_fall_before_during_or_after_the_move() {
        let ph = Phases::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // No move yet: everything is before it.
        assert_eq!(ph.phase(at(0), at(100)), Phase::Before);
        ph.start(at(10));
        assert_eq!(ph.phase(at(1), at(9)), Phase::Before);
        // In flight at the start, or started during the move (not yet ended).
        assert_eq!(ph.phase(at(9), at(11)), Phase::During);
        assert_eq!(ph.phase(at(50), at(51)), Phase::During);
        ph.end(at(20));
        assert_eq!(ph.phase(at(19), at(25)), Phase::During);
        assert_eq!(ph.phase(at(21), at(22)), Phase::After);
        assert_eq!(ph.phase(at(5), at(30)), Phase::During);

        ph.op(0, at(1), at(2), Some(1000));
        ph.op(0, at(11), at(12), Some(5000));
        ph.op(0, at(12), at(13), None);
        ph.op(2, at(21), at(22), Some(2000));
        ph.error("read/GetContentsAndStat:WRONG_CELL", at(12));
        let mut r = ReshardReport::default();
        ph.fill(&["read", "write", "lock"], &mut r);
        let read = &r.ops["read"];
        assert_eq!(
            (read.before.count, read.during.count, read.during.errors),
            (1, 1, 1)
        );
        // 3 significant digits.
        let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < want / 100.0);
        assert!(near(read.before.p99_ms, 1.0), "{read:?}");
        assert!(near(read.during.p99_ms, 5.0), "{read:?}");
        assert_eq!(r.ops["write"], PhaseOps::default());
        assert_eq!(r.ops["lock"].after.count, 1);
        // The error is stamped now (t0 and a moment), so it falls before the move.
        assert_eq!(r.errors_during, 0);
        assert_eq!(r.errors_before_by_code.len(), 1);
    }

    fn status(pauses: &[Option<u64>]) -> JobStatus {
        JobStatus {
            id: "j1".into(),
            state: JobState::Done,
            started_ms: 1_000,
            updated_ms: 15_500,
            finished_ms: Some(15_500),
            message: "every slot moved".into(),
            map_epoch: 9,
            slots_total: pauses.len(),
            slots_moved: pauses.len(),
            slots_pending: 0,
            slots_aborted: 0,
            bytes_copied: 4096,
            bytes_per_sec: 0,
            eta_ms: None,
            write_pause_max_ms: pauses.iter().flatten().max().copied(),
            last_error: None,
            slots: pauses
                .iter()
                .enumerate()
                .map(|(i, p)| SlotStatus {
                    slot: i as u32,
                    from: "c1".into(),
                    to: "c4".into(),
                    state: SlotState::Done,
                    bytes: 0,
                    nodes: 0,
                    lag_nodes: None,
                    write_pause_ms: *p,
                    attempts: 1,
                    error: None,
                })
                .collect(),
        }
    }

    #[test]
    fn pauses_are_nearest_rank_percentiles_of_the_slots_that_paused() {
        let mut p: Vec<Option<u64>> = (1..=100).map(Some).collect();
        p.push(None);
        let w = Pauses::of(&status(&p)).unwrap();
        assert_eq!((w.slots, w.p50_ms, w.p99_ms, w.max_ms), (100, 50, 99, 100));
        let w = Pauses::of(&status(&[Some(7)])).unwrap();
        assert_eq!((w.p50_ms, w.p99_ms, w.max_ms), (7, 7, 7));
        assert_eq!(Pauses::of(&status(&[None, None])), None);
    }

    #[test]
    fn the_section_says_what_happened() {
        let mut r = ReshardReport {
            spec: "add-cell@10s".into(),
            cell: "c4".into(),
            cell_addr: "127.0.0.1:9".into(),
            at_s: 10.0,
            cell_ready_s: Some(10.4),
            start_s: Some(10.6),
            end_s: Some(25.1),
            total_s: Some(14.5),
            slots_planned: 3,
            ..Default::default()
        };
        r.set_job(&status(&[Some(40), Some(120), Some(80)]), true);
        r.held_locks = 2;
        r.held_locks_kept = 2;
        let ph = Phases::default();
        ph.fill(&["read", "write", "lock"], &mut r);
        assert!(r.clean(), "{r:?}");
        let checks = LockChecks {
            acquired: 50,
            ..Default::default()
        };
        let text = r.summary(&checks, Some(0));
        for want in [
            "reshard (add-cell@10s): add cell c4 (127.0.0.1:9): job j1 DONE — 3 of 3 slots moved, 0 given up",
            "move from 10.6 s to 25.1 s: 14.5 s in all (the job's own clock: 14.5 s)",
            "write pause per slot (3 slots): p50 80 ms, p99 120 ms, max 120 ms",
            "during the move: 0 failed calls, 0 sessions went into jeopardy, 0 expired",
            "over 50 acquisitions); acked_lost 0",
            "locks held through the move: 2 of 2 still held by their holder after it",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        // A job still running when the run stopped following it, errors during the move.
        let mut s = status(&[Some(5), None]);
        s.state = JobState::Running;
        s.finished_ms = None;
        r.set_job(&s, false);
        r.errors_during_by_code
            .insert("write/SetContents:WRONG_CELL".into(), 2);
        r.errors_during = 2;
        assert!(!r.clean());
        let text = r.summary(&checks, None);
        assert!(text.contains("job j1 RUNNING"), "{text}");
        assert!(text.contains("(the job's own clock: -)"), "{text}");
        assert!(text.contains("2 × write/SetContents:WRONG_CELL"), "{text}");
        assert!(text.contains("acked_lost not checked"), "{text}");
        // Failed states carry their reason.
        assert_eq!(
            state_name(&JobState::Failed {
                reason: "no cell".into()
            }),
            "failed: no cell"
        );
    }
}
