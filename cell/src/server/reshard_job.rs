//! The reshard job's driver at the meta cell (docs/resharding.md): one task per meta master
//! term runs the job's state machine (`warren_reshard::Job`), performing each action — the
//! slot calls at the data cells' masters, the map commit in its own namespace — and
//! recording the job after every step in `/ls/<d>/warren/reshard/job`, so that whichever
//! meta master is current resumes it. `ApplyPlan`, `JobStatus` and `AbortJob` reach the
//! task through a channel: the task is the only writer of the record.
//!
//! The task ends with its term (a deposed master stops driving at once); every action is
//! safe to repeat, and the hand-off at the source is the commit point, so a step in flight
//! when a master dies is simply done again by the next one.

use super::node::Node;
use super::term::Shared;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tonic::Status;
use warren_client::reshard::{at_master, CallError};
use warren_proto::pb;
use warren_proto::{ErrorCode, WarrenError};
use warren_reshard::job::{Action, CopyReport, Group, Job, JobOptions, Outcome};
use warren_reshard::{Plan, PlanError};
use warren_router::PartitionMap;

/// Where the job is recorded, under the deployment's reserved subtree.
pub fn job_path(deployment: &str) -> String {
    format!("/ls/{deployment}/{}/reshard/job", warren_router::RESERVED)
}

/// What `ApplyPlan` and `AbortJob` ask of the task.
enum Command {
    Apply {
        plan: Box<Plan>,
        options: JobOptions,
        reply: oneshot::Sender<Result<String, WarrenError>>,
    },
    Abort {
        reply: oneshot::Sender<Result<Job, WarrenError>>,
    },
}

/// The handle a term keeps on its job task.
pub(crate) struct Runner {
    commands: mpsc::Sender<Command>,
    /// The job as last recorded (`None`: no job has run, or the record does not parse —
    /// then `problem` says why).
    job: watch::Receiver<Option<Job>>,
    problem: watch::Receiver<Option<String>>,
    task: JoinHandle<()>,
}

impl Runner {
    /// Starts the task of a meta master's term.
    pub(crate) fn start(shared: Weak<Shared>) -> Runner {
        let (commands, rx) = mpsc::channel(16);
        let (job_tx, job) = watch::channel(None);
        let (problem_tx, problem) = watch::channel(None);
        let driver = Driver {
            shared,
            job_tx,
            problem_tx,
            have: HashMap::new(),
            digests: HashMap::new(),
        };
        // The record is read before any call can ask for it, so that a status call at the
        // start of a term shows the job being resumed, never "no job".
        let loaded = driver.load();
        match &loaded {
            Ok(job) => {
                publish(&driver.job_tx, job.clone());
            }
            Err(e) => {
                tracing::error!(error = %e.message, "reshard job record");
                driver.problem_tx.send_replace(Some(e.message.clone()));
            }
        }
        let task = tokio::spawn(driver.run(rx, loaded.ok().flatten()));
        Runner {
            commands,
            job,
            problem,
            task,
        }
    }

    pub(crate) fn stop(&self) {
        self.task.abort();
        // A deposed meta master no longer drives the job: its gauge must not hold an alert.
        metrics::gauge!(SLOTS_REMAINING).set(0.0);
    }
}

/// The gauge of the slots the recorded job still has to move (docs/metrics.md), which the
/// "reshard stuck" alert watches (deploy/prometheus/warren-rules.yml).
const SLOTS_REMAINING: &str = "warren_cell_reshard_slots_remaining";

/// Publishes the job as last recorded: to status calls and the status page, and as
/// [`SLOTS_REMAINING`].
fn publish(tx: &watch::Sender<Option<Job>>, job: Option<Job>) {
    let remaining = job.as_ref().map_or(0, |j| {
        j.slots()
            .iter()
            .filter(|p| {
                !matches!(
                    p.state,
                    warren_reshard::job::SlotState::Done
                        | warren_reshard::job::SlotState::Aborted { .. }
                )
            })
            .count()
    });
    metrics::gauge!(SLOTS_REMAINING).set(remaining as f64);
    tx.send_replace(job);
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The runner of the meta master `node` serves, or why there is none.
fn runner_of(node: &Arc<Node>) -> Result<Arc<Shared>, Status> {
    let shared = node.master()?;
    if shared.reshard.get().is_none() {
        return Err(WarrenError::invalid_argument(format!(
            "cell {} is a data cell; reshard jobs run at the meta cell (give `warren ctl reshard` its --meta)",
            node.cell
        ))
        .into());
    }
    Ok(shared)
}

pub(super) async fn apply(
    node: &Arc<Node>,
    req: pb::ApplyPlanRequest,
) -> Result<pb::ApplyPlanResponse, Status> {
    let plan =
        Plan::from_json(&req.plan).map_err(|e| WarrenError::invalid_argument(e.to_string()))?;
    let mut options = JobOptions::default();
    if req.slots_per_batch > 0 {
        options.slots_per_batch = req.slots_per_batch;
    }
    if req.freeze_timeout_ms > 0 {
        options.freeze_timeout_ms = req.freeze_timeout_ms;
    }
    options.max_bytes_per_sec = req.max_bytes_per_sec;
    options
        .validate()
        .map_err(|e| WarrenError::invalid_argument(e.to_string()))?;
    let shared = runner_of(node)?;
    let runner = shared.reshard.get().expect("checked");
    let (reply, rx) = oneshot::channel();
    runner
        .commands
        .send(Command::Apply {
            plan: Box::new(plan),
            options,
            reply,
        })
        .await
        .map_err(|_| WarrenError::not_master(""))?;
    let job = rx.await.map_err(|_| WarrenError::not_master(""))??;
    Ok(pb::ApplyPlanResponse { job })
}

/// The job as last recorded, for the HTML status page (`None`: not the meta cell's
/// master, or no job has run).
pub(crate) fn current_job(node: &Node) -> Option<Job> {
    let shared = node.master().ok()?;
    let runner = shared.reshard.get()?;
    let job = runner.job.borrow().clone();
    job
}

pub(super) async fn status(node: &Arc<Node>) -> Result<pb::JobStatusResponse, Status> {
    let shared = runner_of(node)?;
    let runner = shared.reshard.get().expect("checked");
    if let Some(problem) = runner.problem.borrow().clone() {
        return Err(WarrenError::invalid_argument(problem).into());
    }
    let job = runner.job.borrow().clone();
    Ok(pb::JobStatusResponse {
        job: match job {
            Some(job) => serde_json::to_vec(&job.status(now_ms())).unwrap_or_default(),
            None => Vec::new(),
        },
    })
}

pub(super) async fn abort(node: &Arc<Node>) -> Result<pb::AbortJobResponse, Status> {
    let shared = runner_of(node)?;
    let runner = shared.reshard.get().expect("checked");
    let (reply, rx) = oneshot::channel();
    runner
        .commands
        .send(Command::Abort { reply })
        .await
        .map_err(|_| WarrenError::not_master(""))?;
    let job = rx.await.map_err(|_| WarrenError::not_master(""))??;
    Ok(pb::AbortJobResponse {
        job: serde_json::to_vec(&job.status(now_ms())).unwrap_or_default(),
    })
}

/// The task: the job, and what the driver keeps between steps (lost with the task; a new
/// one starts with full copies).
struct Driver {
    shared: Weak<Shared>,
    job_tx: watch::Sender<Option<Job>>,
    problem_tx: watch::Sender<Option<String>>,
    /// The target's digests after the last import, per (source, target, slots).
    have: HashMap<(String, String, Vec<u32>), Vec<u8>>,
    /// The source's digest of the last round, per (source, target, slots).
    digests: HashMap<(String, String, Vec<u32>), u64>,
}

impl Driver {
    fn shared(&self) -> Result<Arc<Shared>, WarrenError> {
        self.shared
            .upgrade()
            .ok_or_else(|| WarrenError::not_master("the term ended"))
    }

    fn deployment(&self) -> Result<String, WarrenError> {
        Ok(self.shared()?.lock().master.config().deployment.clone())
    }

    fn map(&self) -> Result<Arc<PartitionMap>, WarrenError> {
        self.shared()?.lock().master.map().cloned().ok_or_else(|| {
            WarrenError::new(
                ErrorCode::NotFound,
                "the deployment has no partition map; run `warren ctl deployment init` first",
            )
        })
    }

    /// Reads the job's record (at the start of the term).
    fn load(&self) -> Result<Option<Job>, WarrenError> {
        let p = job_path(&self.deployment()?);
        let shared = self.shared()?;
        let st = shared.lock();
        let Some(bytes) = st.master.file_contents(&p) else {
            return Ok(None);
        };
        Job::from_json(bytes).map(Some).map_err(|e| {
            WarrenError::invalid_argument(format!(
                "the reshard job record at {p} is unreadable ({e}); a new `warren ctl reshard apply` replaces it"
            ))
        })
    }

    /// Records the job (durably, before the next step) and shows it to status calls.
    async fn persist(&self, job: &Job) -> Result<(), WarrenError> {
        let p = job_path(&self.deployment()?);
        let json = job.to_json();
        let shared = self.shared()?;
        shared
            .write(|m, now| m.write_reserved(&p, json.as_bytes(), now))
            .await
            .map_err(|s| {
                WarrenError::from_status(&s)
                    .unwrap_or_else(|| WarrenError::internal(s.message().to_string()))
            })?;
        publish(&self.job_tx, Some(job.clone()));
        self.problem_tx.send_replace(None);
        Ok(())
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, mut job: Option<Job>) {
        if let Some(j) = job.as_mut() {
            if !j.state().is_finished() {
                tracing::info!(job = j.id(), "resuming the reshard job");
                j.resume(now_ms());
                if let Err(e) = self.persist(j).await {
                    tracing::error!(error = %e.message, "cannot record the resumed reshard job");
                }
            }
            publish(&self.job_tx, Some(j.clone()));
        }
        loop {
            while let Ok(cmd) = commands.try_recv() {
                self.command(cmd, &mut job).await;
            }
            let action = match job.as_mut() {
                Some(j) => j.next_action(now_ms()),
                None => Action::Finished,
            };
            match action {
                Action::Finished => match commands.recv().await {
                    Some(cmd) => self.command(cmd, &mut job).await,
                    None => return,
                },
                Action::Wait { ms } => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                        cmd = commands.recv() => match cmd {
                            Some(cmd) => self.command(cmd, &mut job).await,
                            None => return,
                        },
                    }
                }
                action => {
                    let j = job.as_ref().expect("an action comes from a job");
                    let outcome = self.perform(j, &action).await;
                    let j = job.as_mut().expect("still there");
                    if let Err(e) = j.on_result(outcome, now_ms()) {
                        tracing::error!(error = %e, "the reshard job refused an outcome");
                    }
                    if let Err(e) = self.persist(j).await {
                        // The term is ending or the store failed: the next master resumes.
                        tracing::error!(error = %e.message, "cannot record the reshard job; stopping");
                        return;
                    }
                }
            }
        }
    }

    async fn command(&mut self, cmd: Command, job: &mut Option<Job>) {
        match cmd {
            Command::Apply {
                plan,
                options,
                reply,
            } => {
                let r = self.start(*plan, options, job).await;
                let _ = reply.send(r);
            }
            Command::Abort { reply } => {
                let r = match job.as_mut() {
                    None => Err(WarrenError::new(
                        ErrorCode::NotFound,
                        "no reshard job has run in this deployment; nothing to abort",
                    )),
                    Some(j) => match j.abort(now_ms()) {
                        Err(e) => Err(WarrenError::invalid_argument(e.to_string())),
                        Ok(()) => self.persist(j).await.map(|()| j.clone()),
                    },
                };
                let _ = reply.send(r);
            }
        }
    }

    /// `ApplyPlan`: refuses a plan that does not apply to the map in force, a second job,
    /// and a plan naming a cell that does not answer; otherwise records the new job.
    async fn start(
        &mut self,
        plan: Plan,
        options: JobOptions,
        job: &mut Option<Job>,
    ) -> Result<String, WarrenError> {
        if let Some(j) = job.as_ref().filter(|j| !j.state().is_finished()) {
            return Err(WarrenError::invalid_argument(format!(
                "reshard job {} is {}; wait for it (`warren ctl reshard status --watch`) or stop it (`warren ctl reshard abort`) first",
                j.id(),
                format!("{:?}", j.state()).to_lowercase()
            )));
        }
        let map = self.map()?;
        plan.check_against(&map).map_err(|e| match e {
            PlanError::Stale { .. } | PlanError::WrongSource { .. } => {
                WarrenError::new(ErrorCode::GenerationMismatch, e.to_string())
            }
            e => WarrenError::invalid_argument(e.to_string()),
        })?;
        let mut cells: Vec<&str> = plan
            .moves
            .iter()
            .flat_map(|m| [m.from.as_str(), m.to.as_str()])
            .collect();
        cells.sort_unstable();
        cells.dedup();
        for cell in cells {
            let replicas = replicas(&plan, &map, cell);
            at_master(&replicas, |mut c| async move {
                c.slot_stats(pb::SlotStatsRequest { slots: vec![0] }).await
            })
            .await
            .map_err(|e| {
                WarrenError::new(
                    ErrorCode::FailoverInProgress,
                    format!(
                        "cell {cell} ({}) does not answer: {}; nothing was started",
                        replicas.join(","),
                        call_error(e)
                    ),
                )
            })?;
        }
        let now = now_ms();
        let id = format!("reshard-{now}");
        let new = Job::new(&id, plan, options, now)
            .map_err(|e| WarrenError::invalid_argument(e.to_string()))?;
        self.have.clear();
        self.digests.clear();
        self.persist(&new).await?;
        tracing::info!(job = %id, slots = new.slots().len(), "reshard job started");
        *job = Some(new);
        Ok(id)
    }

    async fn perform(&mut self, job: &Job, action: &Action) -> Outcome {
        match self.try_perform(job, action).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(action = %describe(action), %error, "a reshard step failed; the job retries it");
                Outcome::Failed { error }
            }
        }
    }

    async fn try_perform(&mut self, job: &Job, action: &Action) -> Result<Outcome, String> {
        let plan = job.plan();
        let map = self.map().map_err(|e| e.message)?;
        let cell = |name: &str| replicas(plan, &map, name);
        let id = job.id().to_string();
        match action {
            Action::Copy {
                groups,
                final_round,
            } => {
                let mut reports = Vec::new();
                for g in groups {
                    reports.push(
                        self.copy(&id, g, *final_round, &cell(&g.source), &cell(&g.target))
                            .await?,
                    );
                }
                Ok(Outcome::Copied { reports })
            }
            Action::Freeze {
                source,
                slots,
                timeout_ms,
            } => {
                let req = pb::FreezeSlotsRequest {
                    job: id,
                    slots: slots.clone(),
                    timeout_ms: *timeout_ms,
                };
                call(&cell(source), source, |mut c| {
                    let req = req.clone();
                    async move { c.freeze_slots(req).await }
                })
                .await?;
                Ok(Outcome::Done)
            }
            Action::HandOff {
                source,
                to,
                slots,
                map_epoch,
            } => {
                let digest = self
                    .digests
                    .get(&(source.clone(), to.clone(), slots.clone()))
                    .copied()
                    .unwrap_or(0);
                let req = pb::HandOffSlotsRequest {
                    job: id,
                    slots: slots.clone(),
                    to: to.clone(),
                    map_epoch: *map_epoch,
                    digest,
                };
                let r = call(&cell(source), source, |mut c| {
                    let req = req.clone();
                    async move { c.hand_off_slots(req).await }
                })
                .await?;
                Ok(Outcome::HandedOff {
                    handed_off: r.handed_off,
                    reason: r.reason,
                })
            }
            Action::CommitMap { slots } => {
                let targets: BTreeMap<u32, &str> =
                    plan.moves.iter().map(|m| (m.slot, m.to.as_str())).collect();
                let done = slots
                    .iter()
                    .all(|s| map.owner_of_slot(*s) == targets.get(s).copied());
                if done {
                    return Ok(Outcome::MapCommitted {
                        map_epoch: map.map_epoch(),
                    });
                }
                super::fault::crash_if_armed(super::fault::CrashPoint::BeforeMapCommit);
                let next = plan.next_map(&map, slots).map_err(|e| e.to_string())?;
                let json = next.to_json();
                let p = format!("/ls/{}/{}/map", map.deployment(), warren_router::RESERVED);
                let shared = self.shared().map_err(|e| e.message)?;
                shared
                    .write(|m, now| m.write_reserved(&p, json.as_bytes(), now))
                    .await
                    .map_err(|s| s.message().to_string())?;
                tracing::info!(
                    map_epoch = next.map_epoch(),
                    slots = slots.len(),
                    "reshard: a batch's map is in force"
                );
                Ok(Outcome::MapCommitted {
                    map_epoch: next.map_epoch(),
                })
            }
            Action::Drop { source, slots } => {
                let req = pb::DropSlotsRequest {
                    job: id,
                    slots: slots.clone(),
                    map_epoch: map.map_epoch(),
                };
                call(&cell(source), source, |mut c| {
                    let req = req.clone();
                    async move { c.drop_slots(req).await }
                })
                .await?;
                Ok(Outcome::Done)
            }
            Action::Release {
                source,
                target,
                slots,
            } => {
                for who in [source, target] {
                    let req = pb::ReleaseSlotsRequest {
                        job: id.clone(),
                        slots: slots.clone(),
                    };
                    call(&cell(who), who, |mut c| {
                        let req = req.clone();
                        async move { c.release_slots(req).await }
                    })
                    .await?;
                }
                self.have
                    .remove(&(source.clone(), target.clone(), slots.clone()));
                Ok(Outcome::Done)
            }
            Action::Wait { .. } | Action::Finished => Ok(Outcome::Done),
        }
    }

    /// One copy round of one group: exports at the source (what differs from the target's
    /// digests; all of it after a full round or a restart) and imports at the target, in
    /// pieces of at most [`PIECE_BYTES`] unless it is the final round.
    async fn copy(
        &mut self,
        job: &str,
        g: &Group,
        final_round: bool,
        source: &[String],
        target: &[String],
    ) -> Result<CopyReport, String> {
        let key = (g.source.clone(), g.target.clone(), g.slots.clone());
        let mut report = CopyReport::default();
        for _ in 0..10_000 {
            let have = self.have.get(&key).cloned().unwrap_or_default();
            let req = pb::ExportSlotsRequest {
                job: job.to_string(),
                slots: g.slots.clone(),
                have,
                max_bytes: if final_round { 0 } else { PIECE_BYTES },
            };
            let exported = call(source, &g.source, |mut c| {
                let req = req.clone();
                async move { c.export_slots(req).await }
            })
            .await?;
            let req = pb::ImportSlotsRequest {
                job: job.to_string(),
                slots: g.slots.clone(),
                bundle: exported.bundle,
            };
            let imported = match call(target, &g.target, |mut c| {
                let req = req.clone();
                async move { c.import_slots(req).await }
            })
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    // What the target holds is unknown now: the next round copies all.
                    self.have.remove(&key);
                    return Err(e);
                }
            };
            self.have.insert(key.clone(), imported.have);
            report.nodes += exported.nodes;
            report.bytes += exported.bytes;
            report.changed += exported.nodes + exported.removed;
            report.source_digest = exported.digest;
            report.target_digest = imported.digest;
            report.source_frozen = exported.frozen;
            if !exported.more {
                self.digests.insert(key, exported.digest);
                return Ok(report);
            }
        }
        Err(format!(
            "the export of slots {:?} from {} did not end",
            g.slots, g.source
        ))
    }
}

/// The most content bytes one export answer carries outside the final round.
const PIECE_BYTES: u64 = 1024 * 1024;

/// The replicas of `cell`: the plan's addresses (cells it adds are in no map yet), else
/// the map's.
fn replicas(plan: &Plan, map: &PartitionMap, cell: &str) -> Vec<String> {
    plan.cells
        .get(cell)
        .cloned()
        .or_else(|| map.replicas(cell).map(<[String]>::to_vec))
        .unwrap_or_default()
}

/// An action in a log line: its kind, cells and slot count (not every slot).
fn describe(action: &Action) -> String {
    match action {
        Action::Copy {
            groups,
            final_round,
        } => format!(
            "copy ({} groups{})",
            groups.len(),
            if *final_round { ", final" } else { "" }
        ),
        Action::Freeze { source, slots, .. } => format!("freeze {} slots at {source}", slots.len()),
        Action::HandOff {
            source, to, slots, ..
        } => {
            format!("hand-off of {} slots from {source} to {to}", slots.len())
        }
        Action::CommitMap { slots } => format!("map commit of {} slots", slots.len()),
        Action::Drop { source, slots } => format!("drop of {} slots at {source}", slots.len()),
        Action::Release {
            source,
            target,
            slots,
        } => {
            format!("release of {} slots at {source} and {target}", slots.len())
        }
        Action::Wait { ms } => format!("wait {ms} ms"),
        Action::Finished => "finished".into(),
    }
}

fn call_error(e: CallError) -> String {
    match e {
        CallError::Warren(e) => e.message,
        CallError::Unreachable { attempts, .. } => attempts.join("; "),
    }
}

/// One slot call at `cell`'s master; the error as the job records it.
async fn call<T, F, Fut>(replicas: &[String], cell: &str, f: F) -> Result<T, String>
where
    F: FnMut(pb::reshard_client::ReshardClient<tonic::transport::Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    at_master(replicas, f)
        .await
        .map_err(|e| format!("cell {cell}: {}", call_error(e)))
}
