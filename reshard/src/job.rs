//! The reshard job as a sans-IO state machine (docs/design.md §12): which slot calls to make
//! next, and what their answers mean. The meta cell's master runs it; this module only
//! decides, it performs nothing and reads no clock (the driver passes `now_ms`).
//!
//! # The driver's loop
//!
//! ```text
//! loop {
//!     match job.next_action(now_ms) {
//!         Action::Finished => break,
//!         Action::Wait { ms } => sleep(ms),          // no on_result
//!         action => {
//!             let outcome = perform(action);         // the slot calls, or the map write
//!             job.on_result(outcome, now_ms)?;
//!         }
//!     }
//!     persist(job.to_json());                        // before the next action
//! }
//! ```
//!
//! A new meta master reads the record and calls [`Job::resume`] first; an operator's abort
//! is applied between steps with [`Job::abort`] (then persisted). [`Job::next_action`]
//! changes nothing durable, so persisting after each [`Job::on_result`] (and after `abort`
//! and `resume`) is enough: every durable decision — above all the hand-off intent
//! ([`SlotState::HandingOff`]) and the map-commit intent ([`SlotState::HandedOff`]) — is
//! made in `on_result` and is on disk before the call it leads to is sent.
//!
//! # Per slot
//!
//! Pending → Copying (first copy round) → CatchingUp (copy rounds until the lag gate or the
//! round limit) → Frozen (the source holds writes) → HandingOff (the final round matched
//! under the freeze) → HandedOff (the source gave the slot up: the commit point) → Committed
//! (the map gives it to the target) → Done (the source dropped its copy). A freeze that
//! ended before the hand-off sends the slot back to Pending for another attempt, or to
//! Aborted after `max_slot_attempts`; an abort or too many failed calls before the hand-off
//! release it (the source stays authoritative). From HandingOff on the slot always finishes.
//!
//! The job's JSON ([`Job::to_json`]) is the durable record the meta cell keeps under
//! `/ls/<d>/warren/reshard/job` and what `warren ctl reshard status` shows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::plan::Plan;

/// The layout of [`Job`]'s JSON.
pub const JOB_FORMAT: u32 = 1;

/// The job's tuning knobs. Every field has a default; the JSON may omit any of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobOptions {
    /// Slots moved together (one freeze, hand-off and map commit per source and target).
    pub slots_per_batch: u32,
    /// The lag gate: freeze only once a copy round changed at most this many nodes …
    pub lag_gate_nodes: u64,
    /// … and sent at most this many content bytes.
    pub lag_gate_bytes: u64,
    /// Catch-up rounds after the first copy before freezing anyway (the final catch-up is
    /// then bounded by the freeze timeout).
    pub max_catchup_rounds: u32,
    /// How long the source holds writes for a freeze before serving again by itself.
    pub freeze_timeout_ms: u64,
    /// Attempts per slot before a slot whose freeze keeps ending is given up.
    pub max_slot_attempts: u32,
    /// Copy throttle over the whole job (0: none). The final catch-up under a freeze is
    /// never throttled: it would lengthen the write pause.
    pub max_bytes_per_sec: u64,
    /// Failed calls in a row, before the hand-off, after which the step's slots are
    /// released and given up. After the hand-off the job retries for ever: it must finish.
    pub max_step_errors: u32,
    /// The wait after the first failed call; doubled after each further one …
    pub retry_backoff_ms: u64,
    /// … up to this.
    pub max_retry_backoff_ms: u64,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            slots_per_batch: 16,
            lag_gate_nodes: 64,
            lag_gate_bytes: 256 * 1024,
            max_catchup_rounds: 8,
            freeze_timeout_ms: 2000,
            max_slot_attempts: 3,
            max_bytes_per_sec: 0,
            max_step_errors: 20,
            retry_backoff_ms: 100,
            max_retry_backoff_ms: 5000,
        }
    }
}

impl JobOptions {
    /// Checks the options, naming the first bad field.
    pub fn validate(&self) -> Result<(), JobError> {
        let positive = [
            ("slots_per_batch", u64::from(self.slots_per_batch)),
            ("freeze_timeout_ms", self.freeze_timeout_ms),
            ("max_slot_attempts", u64::from(self.max_slot_attempts)),
            ("max_step_errors", u64::from(self.max_step_errors)),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(JobError::Option {
                    field,
                    problem: "must be at least 1".into(),
                });
            }
        }
        if self.max_retry_backoff_ms < self.retry_backoff_ms {
            return Err(JobError::Option {
                field: "max_retry_backoff_ms",
                problem: format!(
                    "is {} ms, less than retry_backoff_ms ({} ms)",
                    self.max_retry_backoff_ms, self.retry_backoff_ms
                ),
            });
        }
        Ok(())
    }
}

/// Where the job is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    /// An operator asked to stop: slots not yet handed off are being released, slots
    /// handed off are being finished.
    Aborting,
    /// Every slot moved.
    Done,
    /// Finished, but some slots were given up (their sources kept them).
    Partial,
    /// Stopped by an operator; the message says which slots moved.
    Aborted,
    /// Could not run at all (see [`Job::fail`]).
    Failed {
        reason: String,
    },
}

impl JobState {
    /// The job has ended: it makes no more calls.
    pub fn is_finished(&self) -> bool {
        !matches!(self, JobState::Running | JobState::Aborting)
    }
}

/// Where one slot is (see the module documentation for the order).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    Pending,
    Copying,
    CatchingUp,
    Frozen,
    HandingOff,
    HandedOff,
    Committed,
    Done,
    /// Given up before its hand-off: the source kept it.
    Aborted {
        reason: String,
    },
}

impl SlotState {
    /// In the batch being moved.
    fn is_active(&self) -> bool {
        !matches!(
            self,
            SlotState::Pending | SlotState::Done | SlotState::Aborted { .. }
        )
    }

    /// In the batch and not yet at the commit point: can still be released.
    fn before_hand_off(&self) -> bool {
        matches!(
            self,
            SlotState::Copying | SlotState::CatchingUp | SlotState::Frozen
        )
    }
}

/// One slot's progress, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotProgress {
    pub slot: u32,
    pub from: String,
    pub to: String,
    pub state: SlotState,
    /// Attempts started (a freeze that ends before the hand-off ends an attempt).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub attempts: u32,
    /// Copy rounds in this attempt.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub rounds: u32,
    /// Content bytes and nodes sent for this slot, over all rounds and attempts (a round's
    /// figures are reported per source and target, and shared evenly by its slots).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub nodes: u64,
    /// The lag: nodes and bytes the last round had to send (None: no round yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_nodes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// When the source acknowledged the freeze of this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_at_ms: Option<u64>,
    /// Freeze to map commit: how long writes to the slot waited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_pause_ms: Option<u64>,
    /// A ReleaseSlots is owed to the source and the target (the slot was given up after
    /// copying or freezing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub release_owed: bool,
    /// The last thing that went wrong for this slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// The record is rewritten after every step of a job (finding 5, docs/reliability.md): a
// slot's fields that still hold their defaults are left out of it, and read back as
// those defaults.
fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// One copy round's worth of slots: those of one source going to one target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Group {
    pub source: String,
    pub target: String,
    pub slots: Vec<u32>,
}

/// What the driver does next. Every call action is safe to repeat (the job repeats one
/// after a crash or a failed call), as each variant says.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// One copy round per group: ExportSlots at the source, ImportSlots at the target,
    /// answered by [`Outcome::Copied`] with one report per group, in order. Repeatable: a
    /// round sends what differs. `final_round`: the sources are frozen; this round decides
    /// the hand-off (the driver should not cut it at a byte limit).
    Copy {
        groups: Vec<Group>,
        final_round: bool,
    },
    /// FreezeSlots at the source, answered by [`Outcome::Done`]. Repeatable: a new freeze
    /// by the same job restarts the timeout.
    Freeze {
        source: String,
        slots: Vec<u32>,
        timeout_ms: u64,
    },
    /// HandOffSlots at the source: the commit point, answered by [`Outcome::HandedOff`].
    /// Repeatable: slots already handed off by this job answer true.
    HandOff {
        source: String,
        to: String,
        slots: Vec<u32>,
        map_epoch: u64,
    },
    /// Write `plan.next_map(map in force, slots)` at the meta cell, answered by
    /// [`Outcome::MapCommitted`]. Repeatable: if the map in force already gives these
    /// slots to their targets, write nothing and report its epoch.
    CommitMap { slots: Vec<u32> },
    /// DropSlots at the source (after the map commit), answered by [`Outcome::Done`].
    /// Repeatable: a slot already dropped deletes nothing.
    Drop { source: String, slots: Vec<u32> },
    /// ReleaseSlots at the source (ends the freeze) and at the target (drops the staged
    /// copy), answered by [`Outcome::Done`] once both answered. Repeatable. Only for slots
    /// never handed off.
    Release {
        source: String,
        target: String,
        slots: Vec<u32>,
    },
    /// Call [`Job::next_action`] again after this long (a retry backoff or the throttle);
    /// no [`Job::on_result`].
    Wait { ms: u64 },
    /// The job has ended; no [`Job::on_result`].
    Finished,
}

/// What one copy round of one group reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CopyReport {
    /// Nodes sent this round.
    pub nodes: u64,
    /// Content bytes sent this round.
    pub bytes: u64,
    /// Nodes changed since the previous round (on the first round: all of them): the lag.
    pub changed: u64,
    /// The digest of the slots' whole state at the source when exported …
    pub source_digest: u64,
    /// … and of what the target holds staged after the import.
    pub target_digest: u64,
    /// The slots were frozen by this job when exported.
    pub source_frozen: bool,
}

/// The answer to an [`Action`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// [`Action::Copy`]: one report per group, in the action's order.
    Copied { reports: Vec<CopyReport> },
    /// [`Action::Freeze`], [`Action::Drop`], [`Action::Release`] succeeded.
    Done,
    /// [`Action::HandOff`]: the source's answer (false: a freeze had ended; nothing
    /// changed, and `reason` says which).
    HandedOff { handed_off: bool, reason: String },
    /// [`Action::CommitMap`]: the map in force now has this epoch.
    MapCommitted { map_epoch: u64 },
    /// Any action: a cell (or the meta cell's store) could not be reached or answered with
    /// an error. The job retries with a backoff (see [`JobOptions::max_step_errors`]).
    Failed { error: String },
}

/// Errors of the job's interface: each names what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("job option {field} {problem}")]
    Option {
        field: &'static str,
        problem: String,
    },
    #[error("the plan moves no slot; there is nothing to do")]
    EmptyPlan,
    #[error("the job record is not valid JSON of format {JOB_FORMAT}: {0}")]
    Malformed(String),
    #[error("the job record has format {0}, this Warren reads format {JOB_FORMAT}")]
    Format(u32),
    #[error("an outcome arrived with no action in flight (call next_action first, and on_result once per call action)")]
    NoActionInFlight,
    #[error("outcome {outcome} does not answer action {action}")]
    OutcomeMismatch { action: String, outcome: String },
    #[error(
        "the job cannot be failed: slots {0:?} are past their hand-off and must be finished first"
    )]
    PastHandOff(Vec<u32>),
}

/// Why an abort was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AbortError {
    #[error("the job finished at {at} ({state}); nothing to abort")]
    Finished { at: String, state: String },
}

/// The action being performed, so its outcome can be read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct InFlight {
    action: Action,
    since_ms: u64,
}

/// A reshard job: the plan, the options and every slot's progress. Its JSON is the durable
/// record (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    format: u32,
    id: String,
    /// Shared, not copied, by the job's clones: the plan never changes during a job (and
    /// the model checker keeps millions of clones).
    #[serde(with = "shared_plan")]
    plan: Arc<Plan>,
    options: JobOptions,
    state: JobState,
    started_ms: u64,
    updated_ms: u64,
    finished_ms: Option<u64>,
    /// What happened, for the operator.
    message: String,
    /// The epoch of the map in force as the job last saw it (the plan's at the start).
    map_epoch: u64,
    /// One per planned move, in the plan's order.
    slots: Vec<SlotProgress>,
    /// Content bytes sent over the whole job (the throttle's numerator).
    bytes_copied: u64,
    /// Failed calls in a row for the current step.
    step_errors: u32,
    last_error: Option<String>,
    /// No call before this time (a backoff after a failed call).
    retry_at_ms: Option<u64>,
    #[serde(skip)]
    in_flight: Option<InFlight>,
}

impl Job {
    /// A job for `plan`, starting its first batch. The plan must already have been checked
    /// against the map in force ([`Plan::check_against`]).
    pub fn new(id: &str, plan: Plan, options: JobOptions, now_ms: u64) -> Result<Job, JobError> {
        options.validate()?;
        if plan.moves.is_empty() {
            return Err(JobError::EmptyPlan);
        }
        let slots = plan
            .moves
            .iter()
            .map(|m| SlotProgress {
                slot: m.slot,
                from: m.from.clone(),
                to: m.to.clone(),
                state: SlotState::Pending,
                attempts: 0,
                rounds: 0,
                bytes: 0,
                nodes: 0,
                lag_nodes: None,
                lag_bytes: None,
                frozen_at_ms: None,
                write_pause_ms: None,
                release_owed: false,
                error: None,
            })
            .collect();
        let mut job = Job {
            format: JOB_FORMAT,
            id: id.to_string(),
            map_epoch: plan.from_epoch,
            plan: Arc::new(plan),
            options,
            state: JobState::Running,
            started_ms: now_ms,
            updated_ms: now_ms,
            finished_ms: None,
            message: "started".into(),
            slots,
            bytes_copied: 0,
            step_errors: 0,
            last_error: None,
            retry_at_ms: None,
            in_flight: None,
        };
        job.settle(now_ms);
        Ok(job)
    }

    /// Reads a job record. A runner that was not the one writing it calls [`Job::resume`]
    /// before anything else.
    pub fn from_json(json: &[u8]) -> Result<Job, JobError> {
        let job: Job =
            serde_json::from_slice(json).map_err(|e| JobError::Malformed(e.to_string()))?;
        if job.format != JOB_FORMAT {
            return Err(JobError::Format(job.format));
        }
        job.options.validate()?;
        Ok(job)
    }

    /// The job record: compact JSON, since the meta cell rewrites it after every step
    /// (`warren ctl reshard status` shows it readably; pipe `--json` through `jq` to
    /// read it whole).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a job always serialises")
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn options(&self) -> &JobOptions {
        &self.options
    }

    pub fn state(&self) -> &JobState {
        &self.state
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn slots(&self) -> &[SlotProgress] {
        &self.slots
    }

    /// The epoch of the map in force as the job last saw it.
    pub fn map_epoch(&self) -> u64 {
        self.map_epoch
    }

    /// What to do next. Only records which action is in flight (nothing durable): calling
    /// it again without an outcome returns the same action.
    pub fn next_action(&mut self, now_ms: u64) -> Action {
        // A no-op for a job made by new/on_result/abort/resume; it starts the next batch or
        // finishes a record that was not settled (edited by hand).
        self.settle(now_ms);
        let action = self.peek_action(now_ms);
        self.in_flight = match action {
            Action::Wait { .. } | Action::Finished => None,
            _ => Some(InFlight {
                action: action.clone(),
                since_ms: now_ms,
            }),
        };
        action
    }

    /// Takes the answer to the action in flight. An outcome that does not answer it is
    /// refused and changes nothing (the action is made again).
    pub fn on_result(&mut self, outcome: Outcome, now_ms: u64) -> Result<(), JobError> {
        let Some(flight) = self.in_flight.take() else {
            return Err(JobError::NoActionInFlight);
        };
        match (&flight.action, outcome) {
            (action, Outcome::Failed { error }) => self.on_failed(action, error, now_ms),
            (
                Action::Copy {
                    groups,
                    final_round,
                },
                Outcome::Copied { reports },
            ) if reports.len() == groups.len() => {
                self.succeeded();
                for (group, report) in groups.iter().zip(reports) {
                    self.on_copied(group, report, *final_round);
                }
            }
            (Action::Freeze { slots, .. }, Outcome::Done) => {
                self.succeeded();
                for p in self.progress_mut(slots) {
                    if p.state == SlotState::CatchingUp {
                        p.state = SlotState::Frozen;
                        p.frozen_at_ms = Some(flight.since_ms);
                        p.rounds = 0;
                    }
                }
            }
            (Action::HandOff { slots, .. }, Outcome::HandedOff { handed_off, reason }) => {
                self.succeeded();
                let handing: Vec<u32> = self
                    .progress_mut(slots)
                    .filter(|p| p.state == SlotState::HandingOff)
                    .map(|p| p.slot)
                    .collect();
                for slot in handing {
                    if handed_off {
                        self.progress(slot).state = SlotState::HandedOff;
                    } else {
                        self.attempt_failed(
                            slot,
                            &format!("the source refused the hand-off: {reason}"),
                        );
                    }
                }
            }
            (Action::CommitMap { slots }, Outcome::MapCommitted { map_epoch }) => {
                self.succeeded();
                self.map_epoch = self.map_epoch.max(map_epoch);
                for p in self.progress_mut(slots) {
                    if p.state == SlotState::HandedOff {
                        p.state = SlotState::Committed;
                        p.write_pause_ms = p.frozen_at_ms.map(|at| now_ms.saturating_sub(at));
                    }
                }
            }
            (Action::Drop { slots, .. }, Outcome::Done) => {
                self.succeeded();
                for p in self.progress_mut(slots) {
                    if p.state == SlotState::Committed {
                        p.state = SlotState::Done;
                    }
                }
            }
            (Action::Release { slots, .. }, Outcome::Done) => {
                self.succeeded();
                for p in self.progress_mut(slots) {
                    p.release_owed = false;
                }
            }
            (action, outcome) => {
                return Err(JobError::OutcomeMismatch {
                    action: format!("{action:?}"),
                    outcome: format!("{outcome:?}"),
                })
            }
        }
        self.updated_ms = now_ms;
        self.settle(now_ms);
        Ok(())
    }

    /// Stops the job at the next safe point: slots not yet handed off are released (their
    /// sources stay authoritative), slots handed off are finished. Slots never started stay
    /// Pending. Aborting an aborting job is a no-op; a finished one is refused.
    pub fn abort(&mut self, now_ms: u64) -> Result<(), AbortError> {
        if self.state.is_finished() {
            let at = self.finished_ms.unwrap_or(self.updated_ms);
            return Err(AbortError::Finished {
                at: humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at))
                    .to_string(),
                state: match &self.state {
                    JobState::Failed { reason } => format!("failed: {reason}"),
                    other => format!("{other:?}").to_lowercase(),
                },
            });
        }
        if self.state == JobState::Aborting {
            return Ok(());
        }
        self.state = JobState::Aborting;
        self.updated_ms = now_ms;
        // The next step is another one (a release): its failures count afresh, from now.
        self.step_errors = 0;
        self.retry_at_ms = None;
        self.message = "aborting: releasing the slots not yet handed off".into();
        for p in &mut self.slots {
            let started =
                p.state.before_hand_off() || (p.state == SlotState::Pending && p.attempts > 0);
            if started {
                p.state = SlotState::Aborted {
                    reason: "aborted by the operator before its hand-off; the source kept it"
                        .into(),
                };
                p.release_owed = true;
            }
        }
        self.settle(now_ms);
        Ok(())
    }

    /// Makes a job read back from its record safe to run again after its runner died: a step
    /// in flight is forgotten, and each slot restarts where repeating is safe — a copy or a
    /// freeze restarts with a full copy (the old freeze ends by its timeout; a new one is
    /// taken), a hand-off is asked again, a map commit written again, a drop made again.
    pub fn resume(&mut self, now_ms: u64) {
        self.in_flight = None;
        if self.state.is_finished() {
            return;
        }
        self.retry_at_ms = None;
        self.step_errors = 0;
        self.updated_ms = now_ms;
        for p in &mut self.slots {
            if p.state.before_hand_off() {
                p.state = SlotState::Copying;
                p.rounds = 0;
                p.lag_nodes = None;
                p.lag_bytes = None;
                p.frozen_at_ms = None;
            }
        }
        self.settle(now_ms);
    }

    /// Ends a job that cannot run at all (say the plan no longer applies when a new master
    /// picks it up). Slots not yet handed off are given up (a freeze ends by its timeout, a
    /// staged copy stays at the target until the next job to it replaces it); refused while
    /// a slot is past its hand-off: those must be finished, never left half-moved.
    pub fn fail(&mut self, reason: &str, now_ms: u64) -> Result<(), JobError> {
        let past: Vec<u32> = self
            .slots
            .iter()
            .filter(|p| {
                matches!(
                    p.state,
                    SlotState::HandingOff | SlotState::HandedOff | SlotState::Committed
                )
            })
            .map(|p| p.slot)
            .collect();
        if !past.is_empty() {
            return Err(JobError::PastHandOff(past));
        }
        self.in_flight = None;
        for p in &mut self.slots {
            if p.state.before_hand_off() {
                p.state = SlotState::Aborted {
                    reason: format!("the job failed: {reason}"),
                };
            }
            p.release_owed = false;
        }
        self.finish(
            JobState::Failed {
                reason: reason.to_string(),
            },
            now_ms,
        );
        self.message = format!("failed: {reason}");
        Ok(())
    }

    /// Progress for `warren ctl reshard status`.
    pub fn status(&self, now_ms: u64) -> JobStatus {
        let count = |f: fn(&SlotState) -> bool| self.slots.iter().filter(|p| f(&p.state)).count();
        let moved = count(|s| *s == SlotState::Done);
        let aborted = count(|s| matches!(s, SlotState::Aborted { .. }));
        let remaining = self.slots.len() - moved - aborted;
        let end = self.finished_ms.unwrap_or(now_ms);
        let elapsed_ms = end.saturating_sub(self.started_ms);
        let bytes_per_sec = (self.bytes_copied * 1000)
            .checked_div(elapsed_ms)
            .unwrap_or(0);
        let eta_ms = if self.state.is_finished() || remaining == 0 {
            Some(0)
        } else {
            let remaining_bytes: u64 = self
                .slots
                .iter()
                .zip(&self.plan.moves)
                .filter(|(p, _)| !matches!(p.state, SlotState::Done | SlotState::Aborted { .. }))
                .map(|(_, m)| m.counts.bytes)
                .sum();
            if remaining_bytes > 0 && bytes_per_sec > 0 {
                Some(remaining_bytes * 1000 / bytes_per_sec)
            } else if moved + aborted > 0 {
                Some(elapsed_ms * remaining as u64 / (moved + aborted) as u64)
            } else {
                None
            }
        };
        let slots = self
            .slots
            .iter()
            .map(|p| SlotStatus {
                slot: p.slot,
                from: p.from.clone(),
                to: p.to.clone(),
                state: p.state.clone(),
                bytes: p.bytes,
                nodes: p.nodes,
                lag_nodes: p.lag_nodes,
                write_pause_ms: p.write_pause_ms.or_else(|| {
                    // A pause in progress: frozen and not yet committed.
                    match p.state {
                        SlotState::Frozen | SlotState::HandingOff | SlotState::HandedOff => {
                            p.frozen_at_ms.map(|at| now_ms.saturating_sub(at))
                        }
                        _ => None,
                    }
                }),
                attempts: p.attempts,
                error: p.error.clone(),
            })
            .collect::<Vec<_>>();
        JobStatus {
            id: self.id.clone(),
            state: self.state.clone(),
            started_ms: self.started_ms,
            updated_ms: self.updated_ms,
            finished_ms: self.finished_ms,
            message: self.message.clone(),
            map_epoch: self.map_epoch,
            slots_total: self.slots.len(),
            slots_moved: moved,
            slots_pending: remaining,
            slots_aborted: aborted,
            bytes_copied: self.bytes_copied,
            bytes_per_sec,
            eta_ms,
            write_pause_max_ms: slots.iter().filter_map(|s| s.write_pause_ms).max(),
            last_error: self.last_error.clone(),
            slots,
        }
    }

    /// What [`Job::next_action`] would return now, without recording it as in flight (for
    /// status pages and the model checker).
    pub fn peek_action(&self, now_ms: u64) -> Action {
        if self.state.is_finished() {
            return Action::Finished;
        }
        if let Some(at) = self.retry_at_ms.filter(|&at| at > now_ms) {
            return Action::Wait { ms: at - now_ms };
        }
        // The commit point first: a frozen slot's writes are waiting. Then the map, which
        // ends the pause, then the clean-up.
        if let Some(g) = self.first_group(|p| p.state == SlotState::HandingOff) {
            return Action::HandOff {
                source: g.source,
                to: g.target,
                slots: g.slots,
                map_epoch: self.map_epoch + 1,
            };
        }
        let handed: Vec<u32> = self.slots_in(|p| p.state == SlotState::HandedOff);
        if !handed.is_empty() {
            return Action::CommitMap { slots: handed };
        }
        if let Some(g) = self.first_group(|p| p.state == SlotState::Committed) {
            return Action::Drop {
                source: g.source,
                slots: g.slots,
            };
        }
        if let Some(g) = self.first_group(|p| p.release_owed) {
            return Action::Release {
                source: g.source,
                target: g.target,
                slots: g.slots,
            };
        }
        // Freeze every ready group before the final rounds, so a batch's groups share
        // one final round and one map commit.
        let options = &self.options;
        let ready = |p: &SlotProgress| {
            p.state == SlotState::CatchingUp
                && (p.rounds > options.max_catchup_rounds
                    || (p.lag_nodes.unwrap_or(u64::MAX) <= options.lag_gate_nodes
                        && p.lag_bytes.unwrap_or(u64::MAX) <= options.lag_gate_bytes))
        };
        if let Some(g) = self.first_group(ready) {
            return Action::Freeze {
                source: g.source,
                slots: g.slots,
                timeout_ms: self.options.freeze_timeout_ms,
            };
        }
        let frozen = self.groups(|p| p.state == SlotState::Frozen);
        if !frozen.is_empty() {
            return Action::Copy {
                groups: frozen,
                final_round: true,
            };
        }
        let copying =
            self.groups(|p| matches!(p.state, SlotState::Copying | SlotState::CatchingUp));
        if !copying.is_empty() {
            if let Some(ms) = self.throttle_wait(now_ms) {
                return Action::Wait { ms };
            }
            return Action::Copy {
                groups: copying,
                final_round: false,
            };
        }
        // No slot in a batch and no release owed: settle() has started the next batch or
        // finished the job, so the job is finished.
        Action::Finished
    }

    /// How long to wait so that the bytes copied so far stay under the throttle.
    fn throttle_wait(&self, now_ms: u64) -> Option<u64> {
        let rate = self.options.max_bytes_per_sec;
        if rate == 0 {
            return None;
        }
        let earliest = self.started_ms + self.bytes_copied.saturating_mul(1000) / rate;
        (earliest > now_ms).then(|| earliest - now_ms)
    }

    fn slots_in(&self, f: impl Fn(&SlotProgress) -> bool) -> Vec<u32> {
        self.slots.iter().filter(|p| f(p)).map(|p| p.slot).collect()
    }

    /// The slots matching `f`, grouped by (source, target) in (source, target) order.
    fn groups(&self, f: impl Fn(&SlotProgress) -> bool) -> Vec<Group> {
        let mut groups: BTreeMap<(&str, &str), Vec<u32>> = BTreeMap::new();
        for p in self.slots.iter().filter(|p| f(p)) {
            groups
                .entry((p.from.as_str(), p.to.as_str()))
                .or_default()
                .push(p.slot);
        }
        groups
            .into_iter()
            .map(|((source, target), slots)| Group {
                source: source.to_string(),
                target: target.to_string(),
                slots,
            })
            .collect()
    }

    fn first_group(&self, f: impl Fn(&SlotProgress) -> bool) -> Option<Group> {
        self.groups(f).into_iter().next()
    }

    // ---- taking answers -------------------------------------------------------------

    fn progress(&mut self, slot: u32) -> &mut SlotProgress {
        self.slots
            .iter_mut()
            .find(|p| p.slot == slot)
            .expect("actions name only the job's slots")
    }

    fn progress_mut<'a>(
        &'a mut self,
        slots: &'a [u32],
    ) -> impl Iterator<Item = &'a mut SlotProgress> + 'a {
        self.slots
            .iter_mut()
            .filter(move |p| slots.contains(&p.slot))
    }

    fn succeeded(&mut self) {
        self.step_errors = 0;
        self.retry_at_ms = None;
    }

    fn on_copied(&mut self, group: &Group, report: CopyReport, final_round: bool) {
        self.bytes_copied += report.bytes;
        let expected = |s: &SlotState| {
            if final_round {
                *s == SlotState::Frozen
            } else {
                matches!(s, SlotState::Copying | SlotState::CatchingUp)
            }
        };
        let slots: Vec<u32> = self
            .slots
            .iter()
            .filter(|p| group.slots.contains(&p.slot) && expected(&p.state))
            .map(|p| p.slot)
            .collect();
        let n = slots.len() as u64;
        for (i, &slot) in slots.iter().enumerate() {
            // The group's figures, shared evenly; the first slots take the remainder.
            let share = |total: u64| total / n + u64::from((i as u64) < total % n);
            let p = self.progress(slot);
            p.bytes += share(report.bytes);
            p.nodes += share(report.nodes);
            p.rounds += 1;
            p.lag_nodes = Some(report.changed);
            p.lag_bytes = Some(report.bytes);
            if !final_round {
                p.state = SlotState::CatchingUp;
            } else if !report.source_frozen {
                let why = format!(
                    "the freeze ended before the final catch-up (it lasted over {} ms, or the source restarted)",
                    self.options.freeze_timeout_ms
                );
                self.attempt_failed(slot, &why);
            } else if report.source_digest == report.target_digest {
                p.state = SlotState::HandingOff;
            }
            // Frozen with digests that differ: another final round (still bounded by the
            // freeze timeout, after which the source reports the freeze ended).
        }
    }

    /// A freeze ended before the hand-off: another attempt, or give the slot up (at once
    /// when the job is aborting).
    fn attempt_failed(&mut self, slot: u32, why: &str) {
        let max = self.options.max_slot_attempts;
        let timeout = self.options.freeze_timeout_ms;
        let aborting = self.state == JobState::Aborting;
        let p = self.progress(slot);
        p.error = Some(why.to_string());
        p.rounds = 0;
        p.lag_nodes = None;
        p.lag_bytes = None;
        p.frozen_at_ms = None;
        if aborting {
            p.state = SlotState::Aborted {
                reason: format!(
                    "aborted by the operator; its hand-off was refused ({why}); the source kept it"
                ),
            };
            p.release_owed = true;
        } else if p.attempts >= max {
            p.state = SlotState::Aborted {
                reason: format!(
                    "the freeze ended before the hand-off {} times (freeze timeout {timeout} ms); the source kept it. Last: {why}",
                    p.attempts
                ),
            };
            p.release_owed = true;
        } else {
            p.state = SlotState::Pending;
        }
    }

    fn on_failed(&mut self, action: &Action, error: String, now_ms: u64) {
        self.step_errors += 1;
        self.last_error = Some(error.clone());
        let before_hand_off = matches!(
            action,
            Action::Copy { .. } | Action::Freeze { .. } | Action::Release { .. }
        );
        if before_hand_off && self.step_errors >= self.options.max_step_errors {
            let n = self.step_errors;
            self.step_errors = 0;
            self.retry_at_ms = None;
            let slots: Vec<u32> = match action {
                Action::Copy { groups, .. } => groups
                    .iter()
                    .flat_map(|g| g.slots.iter().copied())
                    .collect(),
                Action::Freeze { slots, .. } | Action::Release { slots, .. } => slots.clone(),
                _ => Vec::new(),
            };
            let releasing = matches!(action, Action::Release { .. });
            for p in self.progress_mut(&slots) {
                if releasing {
                    // The freeze ends by its timeout; the staged copy stays at the target
                    // (unserved) until a later job to that cell replaces it.
                    p.release_owed = false;
                    p.error = Some(format!("could not release after {n} tries: {error}"));
                } else if p.state.before_hand_off() {
                    p.state = SlotState::Aborted {
                        reason: format!("{n} calls failed in a row ({error}); the source kept it"),
                    };
                    p.release_owed = true;
                }
            }
            return;
        }
        let shift = (self.step_errors - 1).min(20);
        let backoff = self
            .options
            .retry_backoff_ms
            .saturating_mul(1 << shift)
            .min(self.options.max_retry_backoff_ms);
        self.retry_at_ms = Some(now_ms + backoff);
    }

    /// Starts the next batch or finishes the job once no slot is in flight.
    fn settle(&mut self, now_ms: u64) {
        if self.state.is_finished()
            || self
                .slots
                .iter()
                .any(|p| p.state.is_active() || p.release_owed)
        {
            return;
        }
        let moved = self.slots_in(|p| p.state == SlotState::Done);
        let aborted = self.slots_in(|p| matches!(p.state, SlotState::Aborted { .. }));
        if self.state == JobState::Aborting {
            let kept = self.slots_in(|p| p.state != SlotState::Done);
            self.finish(JobState::Aborted, now_ms);
            self.message = format!(
                "aborted by the operator: moved slots {moved:?}; the sources kept slots {kept:?}"
            );
            return;
        }
        let batch = self.options.slots_per_batch as usize;
        let mut picked = 0;
        for p in &mut self.slots {
            if picked < batch && p.state == SlotState::Pending {
                p.state = SlotState::Copying;
                p.attempts += 1;
                picked += 1;
            }
        }
        if picked > 0 {
            return;
        }
        if aborted.is_empty() {
            self.finish(JobState::Done, now_ms);
            self.message = format!("moved {} slots", moved.len());
        } else {
            self.finish(JobState::Partial, now_ms);
            self.message = format!(
                "moved {} slots; gave up slots {aborted:?} (their sources kept them; see each slot's reason)",
                moved.len()
            );
        }
    }

    fn finish(&mut self, state: JobState, now_ms: u64) {
        self.state = state;
        self.finished_ms = Some(now_ms);
        self.updated_ms = now_ms;
        self.retry_at_ms = None;
    }
}

/// The plan in the job's JSON, as the plan's own JSON.
mod shared_plan {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::plan::Plan;

    pub fn serialize<S: Serializer>(plan: &Arc<Plan>, serializer: S) -> Result<S::Ok, S::Error> {
        plan.as_ref().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<Plan>, D::Error> {
        Plan::deserialize(deserializer).map(Arc::new)
    }
}

/// What `warren ctl reshard status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: String,
    pub state: JobState,
    pub started_ms: u64,
    pub updated_ms: u64,
    pub finished_ms: Option<u64>,
    pub message: String,
    pub map_epoch: u64,
    pub slots_total: usize,
    pub slots_moved: usize,
    /// Not yet moved nor given up (waiting or in the batch being moved).
    pub slots_pending: usize,
    pub slots_aborted: usize,
    pub bytes_copied: u64,
    /// Observed over the job so far.
    pub bytes_per_sec: u64,
    /// From the observed byte rate and the plan's bytes still to move, or, without byte
    /// counts, from the slots finished so far. None until there is a rate.
    pub eta_ms: Option<u64>,
    pub write_pause_max_ms: Option<u64>,
    pub last_error: Option<String>,
    pub slots: Vec<SlotStatus>,
}

/// One slot in [`JobStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotStatus {
    pub slot: u32,
    pub from: String,
    pub to: String,
    pub state: SlotState,
    pub bytes: u64,
    pub nodes: u64,
    /// The last round's changed nodes.
    pub lag_nodes: Option<u64>,
    /// Freeze to map commit (for a slot frozen now: so far).
    pub write_pause_ms: Option<u64>,
    pub attempts: u32,
    pub error: Option<String>,
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
