//! A stateright model of the slot-move protocol (docs/design.md §12), checked exhaustively
//! by breadth-first search: the real [`Job`] core (its `next_action`, `on_result`, `abort`,
//! `resume`) drives abstract cells, so the checker checks the code the meta cell's driver
//! runs, not a copy of it.
//!
//! # What is modelled
//!
//! - **The source cell** ([`SOURCE`]), per slot: its durable data — a register holding a
//!   content version and a lock (holder and lock generation) — its durable handed-off mark
//!   and drop, and its volatile freeze (lost when the source restarts, ended by a timeout
//!   that may fire at any moment). It serves a slot as long as it has not handed it off
//!   (whatever its own, possibly stale, view of the map says). Writes and lock calls wait
//!   while the slot is frozen; reads do not.
//! - **The target cells** (`b`, and `c` for odd slots when [`ReshardModel::two_targets`]):
//!   the copy they hold per slot, staged until the map gives them the slot, then served.
//! - **The meta cell**: the map (owner per slot, epoch) and the job. The job's record is
//!   persisted after every step; a crash of the meta master restarts the job from its
//!   record (read back from its JSON) with [`Job::resume`].
//! - **The router and clients**: clients write, read, acquire and release the lock of a
//!   slot at the owner by the router's view of the map; a cell that does not serve the slot
//!   answers WRONG_CELL and the router reads the map. Acknowledged writes and lock
//!   generations, and what each client believes it holds, are the history the properties
//!   judge.
//! - **Steps**: each call of the job is one atomic step, which succeeds; or fails before
//!   reaching the cell; or is performed by the cell with its answer lost; or is performed
//!   and then the meta master crashes before recording it. Around them: source and target
//!   restarts, freeze timeouts, an operator's abort and client calls, in any order, within
//!   budgets that keep the state space finite.
//!
//! # Properties
//!
//! Always: one server per slot; no acknowledged write or lock generation lost at the
//! slot's server; at most one client believing it holds a slot's lock; what clients read
//! never older than what they saw; the cells receive only calls the protocol allows (no
//! copy onto a served copy, no release or drop of a slot the wrong cell owns); a finished
//! job leaves no freeze behind and every slot at exactly one owner, as its record says.
//! Eventually: the job finishes. Sometimes: it ends Done, Partial and Aborted; a slot moves
//! while a client holds its lock.
//!
//! **Freeze bounded** is checked in this form: the source's timeout is what bounds a
//! freeze, and the model lets it fire at any moment (within the budget); the job must
//! never depend on a freeze having lasted (a hand-off under an ended freeze is refused,
//! which the no-lost-write property checks), and it must end every freeze it took itself
//! (a finished job holds none, even when no timeout fires).
//!
//! # Not modelled
//!
//! - Messages are not reordered or duplicated beyond what a failed or repeated call does,
//!   with one exception, [`ReshardModel::late_freezes`]: a FreezeSlots whose caller gave up
//!   reaches the source later. The proto's freeze carries no token the hand-off could name,
//!   so the source must refuse a hand-off for a slot changed since the last export made
//!   under its freeze; [`Bug::HandOffChecksOnlyFreeze`] shows the write lost without that.
//!   Other late calls (a late export or import) are not modelled.
//! - Digests are exact and a copy round is one atomic export and import, so a final round
//!   under a freeze always matches; a copy cut at `max_bytes` is not modelled.
//! - One job and one source; the cells' stores are durable; one master per cell (no split
//!   brain between two meta masters); a target restart loses nothing, so it is a step only
//!   with [`Bug::StagedInMemory`] (the time a target is down is what failed calls stand for).
//! - Time is abstract: the backoff waits run, the throttle is off, and no clock bounds a
//!   freeze (see above). Lock-delay, sessions, handles, ephemeral nodes and watches are not
//!   modelled: the lock is a holder and a generation.
//! - Termination: stateright's `eventually` judges paths that end; a livelock would be a
//!   cycle, which it does not report. The budgets make every path finite, and the job's
//!   counters (rounds, attempts, failed calls) only grow, so the search ending shows the
//!   job ends on every path it explored.
//!
//! # Size
//!
//! [`ReshardModel::small`] runs with `cargo test` (tests/model_check.rs; warren-reshard and
//! stateright are optimised in dev builds); [`ReshardModel::large`] with
//! `cargo test -p warren-reshard --release --test model_check -- --ignored`. Each prints
//! the states it explored and its time.
//!
//! [`Bug`] plants known mistakes in the cells or the driver, so tests can show the checker
//! finds them.

use std::collections::BTreeMap;

use stateright::{Model, Property};

use crate::job::{Action, CopyReport, Job, JobOptions, JobState, Outcome, SlotState};
use crate::plan::{MoveCounts, Plan, PlannedMove, PLAN_FORMAT};

/// The cell every slot moves from.
pub const SOURCE: &str = "a";

/// A planted mistake, to show the checker is not vacuous.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// None: the protocol as designed.
    None,
    /// The source hands a slot off without checking that the job's freeze still holds.
    HandOffIgnoresFreeze,
    /// The target serves a staged copy before the map gives it the slot.
    TargetServesStaged,
    /// The target keeps staged copies in memory only: a restart loses them.
    StagedInMemory,
    /// The driver writes the map before asking the source for the hand-off.
    MapBeforeHandOff,
    /// The source hands a slot off if the job's freeze holds, without checking that the slot
    /// is unchanged since the final round's export: a late FreezeSlots (delivered after the
    /// job gave up on it) re-freezes a slot that took writes after its freeze ended.
    HandOffChecksOnlyFreeze,
    /// A copy carries the slot's data but not its lock, and the digests do not cover locks
    /// (with digests that do, the final round never matches and the hand-off never comes).
    CopyLosesLock,
}

/// The model's bounds and variant.
#[derive(Clone, Debug)]
pub struct ReshardModel {
    /// Slots moved (0..slots).
    pub slots: u32,
    /// Odd slots go to `c`, even ones to `b` (two groups per batch); else all to `b`.
    pub two_targets: bool,
    pub options: JobOptions,
    /// Clients (each may hold locks).
    pub clients: u8,
    /// Client calls in all.
    pub client_ops: u8,
    /// Whether clients read (reads check that nobody sees a value older than what they saw).
    pub reads: bool,
    /// Restarts of the meta master, the source and the target, in all.
    pub crashes: u8,
    /// Freeze timeouts firing.
    pub timeouts: u8,
    /// Calls of the job that fail (before or after the cell performed them).
    pub failures: u8,
    /// Operator aborts (0 or 1).
    pub aborts: u8,
    /// FreezeSlots calls whose caller gives up (a deadline) but which the source performs
    /// later, at any moment.
    pub late_freezes: u8,
    pub bug: Bug,
}

impl ReshardModel {
    /// The configuration `cargo test` checks (debug build, under two minutes).
    pub fn small() -> ReshardModel {
        ReshardModel {
            slots: 2,
            two_targets: false,
            options: model_options(),
            clients: 2,
            client_ops: 2,
            reads: true,
            crashes: 1,
            timeouts: 1,
            failures: 1,
            aborts: 1,
            late_freezes: 0,
            bug: Bug::None,
        }
    }

    /// The larger configuration, for a release build (see `tests/model_check.rs`): two
    /// targets (two groups per batch) and two crashes; reads are left to the small one. About
    /// 27 million states: 14 minutes and 8.2 GB of memory on a busy 2-core machine.
    pub fn large() -> ReshardModel {
        ReshardModel {
            two_targets: true,
            crashes: 2,
            reads: false,
            ..ReshardModel::small()
        }
    }

    pub fn with_bug(self, bug: Bug) -> ReshardModel {
        ReshardModel { bug, ..self }
    }

    fn target_of(&self, slot: u32) -> &'static str {
        if self.two_targets && slot % 2 == 1 {
            "c"
        } else {
            "b"
        }
    }

    fn plan(&self) -> Plan {
        let cells: BTreeMap<String, Vec<String>> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), vec![format!("127.0.0.1:{}", 7001 + i)]))
            .collect();
        Plan {
            format: PLAN_FORMAT,
            deployment: "model".into(),
            from_epoch: 1,
            slot_count: self.slots,
            cells,
            moves: (0..self.slots)
                .map(|slot| PlannedMove {
                    slot,
                    from: SOURCE.into(),
                    to: self.target_of(slot).into(),
                    counts: MoveCounts::default(),
                })
                .collect(),
            totals: MoveCounts::default(),
        }
    }
}

/// Job options for the model: small numbers, so every path is short. The lag gate is 0
/// (a round that changed anything is followed by another, up to one catch-up round), two
/// attempts per slot, two failed calls before giving up.
pub fn model_options() -> JobOptions {
    JobOptions {
        slots_per_batch: 2,
        lag_gate_nodes: 0,
        lag_gate_bytes: 0,
        max_catchup_rounds: 1,
        freeze_timeout_ms: 2000,
        max_slot_attempts: 2,
        max_bytes_per_sec: 0,
        max_step_errors: 2,
        retry_backoff_ms: 100,
        max_retry_backoff_ms: 100,
    }
}

/// A slot's data at a cell: its content version and its lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Register {
    pub version: u8,
    pub holder: Option<u8>,
    pub lock_generation: u8,
}

/// Who the map says owns a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    Source,
    Target,
}

/// One slot across the cells, the map, the router and the history.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SlotWorld {
    /// Source, durable.
    pub source: Register,
    pub handed_off: bool,
    pub dropped: bool,
    /// Source, volatile: frozen by the job.
    pub frozen: bool,
    /// Source, volatile: the slot as the last export under a freeze saw it. A hand-off needs
    /// the slot frozen and unchanged since (docs/design.md §12).
    pub frozen_export: Option<Register>,
    /// The freeze in force came from a late FreezeSlots (it ends by its timeout).
    pub late_frozen: bool,
    /// Target: staged, or served once the map gives it the slot.
    pub target: Option<Register>,
    /// Meta cell, durable.
    pub owner: Owner,
    /// The router's view of the map.
    pub view: Owner,
    /// History: the last acknowledged version and lock generation.
    pub acked_version: u8,
    pub acked_lock_generation: u8,
    /// A client's lock call has been acknowledged at the source (and is still held) when the
    /// slot was handed off: the lock moved.
    pub lock_moved_held: bool,
}

/// A client's beliefs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientWorld {
    /// Per slot: an acquire was acknowledged and no release since.
    pub holds: Vec<bool>,
    /// Per slot: the newest version this client saw.
    pub seen: Vec<u8>,
}

/// The whole system in one state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct World {
    pub job: Job,
    pub now_ms: u64,
    pub map_epoch: u64,
    pub slots: Vec<SlotWorld>,
    pub clients: Vec<ClientWorld>,
    pub crashes: u8,
    pub timeouts: u8,
    pub failures: u8,
    pub aborts: u8,
    pub late_freezes: u8,
    /// A FreezeSlots in the network, its caller gone: the slots it freezes.
    pub late_freeze: Option<Vec<u32>>,
    pub client_ops: u8,
    /// Something a property must never see (a call the protocol forbids, a client seeing
    /// time go back); the first one is kept.
    pub violation: Option<String>,
}

/// A client call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientOp {
    Write,
    Read,
    Acquire,
    Release,
}

/// One step of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// The job's next action, performed and answered (a Wait advances the clock).
    Job,
    /// The call fails before reaching the cell.
    JobCallFails,
    /// The cell performs the call; the answer is lost.
    JobAnswerLost,
    /// The cell performs the call; the meta master dies before recording the answer.
    JobCrashAfterCall,
    /// A FreezeSlots times out at the caller but stays in the network.
    JobFreezeDelayed,
    /// The delayed FreezeSlots reaches the source.
    DeliverLateFreeze,
    /// The meta master dies between steps.
    MetaRestart,
    SourceRestart,
    TargetRestart,
    FreezeTimeout {
        slot: u32,
    },
    Abort,
    Client {
        client: u8,
        slot: u32,
        op: ClientOp,
    },
    /// A client was answered WRONG_CELL: the router reads the map.
    RefreshView {
        slot: u32,
    },
}

impl ReshardModel {
    /// A slot's digest: its version and its lock (unless the lock is planted away).
    fn digest(&self, r: &Register) -> u64 {
        let lock = u64::from(r.lock_generation) * 10 + r.holder.map_or(0, |h| u64::from(h) + 1);
        u64::from(r.version) * 100
            + if self.bug == Bug::CopyLosesLock {
                0
            } else {
                lock
            }
    }

    fn source_serves(&self, s: &SlotWorld) -> bool {
        !s.handed_off
    }

    /// The target serves a slot the map gives it, with whatever it holds (nothing, if its
    /// copy was lost).
    fn target_serves(&self, s: &SlotWorld) -> bool {
        s.owner == Owner::Target || (self.bug == Bug::TargetServesStaged && s.target.is_some())
    }

    /// The register the slot's server holds, if a cell serves it.
    fn served<'a>(&self, s: &'a SlotWorld) -> Option<&'a Register> {
        if self.source_serves(s) {
            Some(&s.source)
        } else if self.target_serves(s) {
            Some(s.target.as_ref().unwrap_or(&EMPTY))
        } else {
            None
        }
    }

    /// Performs `action` at the cells (and the map); returns the answer.
    fn perform(&self, w: &mut World, action: &Action) -> Outcome {
        match action {
            Action::Copy {
                groups,
                final_round: _,
            } => {
                let reports = groups
                    .iter()
                    .map(|g| {
                        let mut report = CopyReport {
                            source_frozen: true,
                            ..CopyReport::default()
                        };
                        for &slot in &g.slots {
                            let s = &mut w.slots[slot as usize];
                            if s.owner == Owner::Target || s.handed_off {
                                violate(
                                    &mut w.violation,
                                    format!("copy of slot {slot} after its hand-off"),
                                );
                            }
                            let changed = s.target != Some(s.source);
                            report.changed += u64::from(changed);
                            report.nodes += u64::from(changed);
                            report.bytes += 100 * u64::from(changed);
                            report.source_frozen &= s.frozen;
                            s.frozen_export = s.frozen.then_some(s.source);
                            report.source_digest =
                                report.source_digest * 1000 + self.digest(&s.source);
                            let copied = if self.bug == Bug::CopyLosesLock {
                                Register {
                                    version: s.source.version,
                                    ..Register::default()
                                }
                            } else {
                                s.source
                            };
                            s.target = Some(copied);
                            report.target_digest =
                                report.target_digest * 1000 + self.digest(&copied);
                        }
                        report
                    })
                    .collect();
                Outcome::Copied { reports }
            }
            Action::Freeze { slots, .. } => {
                for &slot in slots {
                    freeze(&mut w.slots[slot as usize], false);
                }
                Outcome::Done
            }
            Action::HandOff { slots, .. } => {
                if self.bug == Bug::MapBeforeHandOff {
                    self.commit(w, slots);
                }
                let all_frozen = slots.iter().all(|&slot| {
                    let s = &w.slots[slot as usize];
                    let unchanged = s.frozen_export == Some(s.source)
                        || self.bug == Bug::HandOffChecksOnlyFreeze;
                    s.handed_off || (s.frozen && unchanged)
                });
                if all_frozen || self.bug == Bug::HandOffIgnoresFreeze {
                    for &slot in slots {
                        let s = &mut w.slots[slot as usize];
                        if !s.handed_off && s.source.holder.is_some() {
                            s.lock_moved_held = true;
                        }
                        s.handed_off = true;
                        thaw(s);
                    }
                    Outcome::HandedOff {
                        handed_off: true,
                        reason: String::new(),
                    }
                } else {
                    Outcome::HandedOff {
                        handed_off: false,
                        reason: "a freeze ended".into(),
                    }
                }
            }
            Action::CommitMap { slots } => {
                self.commit(w, slots);
                Outcome::MapCommitted {
                    map_epoch: w.map_epoch,
                }
            }
            Action::Drop { slots, .. } => {
                for &slot in slots {
                    let s = &mut w.slots[slot as usize];
                    if !s.handed_off {
                        violate(
                            &mut w.violation,
                            format!("drop of slot {slot}, which the source still serves"),
                        );
                    }
                    s.dropped = true;
                    s.source = Register::default();
                }
                Outcome::Done
            }
            Action::Release { slots, .. } => {
                for &slot in slots {
                    let s = &mut w.slots[slot as usize];
                    if s.handed_off || s.owner == Owner::Target {
                        violate(
                            &mut w.violation,
                            format!("release of slot {slot} after its hand-off"),
                        );
                    } else {
                        thaw(s);
                        s.target = None;
                    }
                }
                Outcome::Done
            }
            Action::Wait { .. } | Action::Finished => unreachable!("not a call"),
        }
    }

    /// The meta cell writes the map giving `slots` to their targets (nothing if it already
    /// does).
    fn commit(&self, w: &mut World, slots: &[u32]) {
        let mut changed = false;
        for &slot in slots {
            let s = &mut w.slots[slot as usize];
            changed |= s.owner != Owner::Target;
            s.owner = Owner::Target;
        }
        if changed {
            w.map_epoch += 1;
        }
    }

    fn client_op(&self, w: &mut World, client: u8, slot: u32, op: ClientOp) {
        let c = client as usize;
        let i = slot as usize;
        let at_source = w.slots[i].view == Owner::Source;
        let s = &mut w.slots[i];
        let reg = if at_source {
            &mut s.source
        } else {
            s.target.get_or_insert_with(Register::default)
        };
        let client_world = &mut w.clients[c];
        match op {
            ClientOp::Write => {
                reg.version += 1;
                s.acked_version = reg.version;
                if reg.version <= client_world.seen[i] {
                    violate(
                        &mut w.violation,
                        format!(
                            "client {client} wrote slot {slot} at version {} after seeing {}",
                            reg.version, client_world.seen[i]
                        ),
                    );
                }
                client_world.seen[i] = reg.version;
            }
            ClientOp::Read => {
                if reg.version < client_world.seen[i] {
                    violate(
                        &mut w.violation,
                        format!(
                            "client {client} read slot {slot} at version {} after seeing {}",
                            reg.version, client_world.seen[i]
                        ),
                    );
                }
                client_world.seen[i] = client_world.seen[i].max(reg.version);
            }
            ClientOp::Acquire => {
                reg.holder = Some(client);
                reg.lock_generation += 1;
                if reg.lock_generation <= s.acked_lock_generation {
                    violate(
                        &mut w.violation,
                        format!(
                            "slot {slot}'s lock generation went back to {}",
                            reg.lock_generation
                        ),
                    );
                }
                s.acked_lock_generation = reg.lock_generation;
                client_world.holds[i] = true;
            }
            ClientOp::Release => {
                reg.holder = None;
                client_world.holds[i] = false;
            }
        }
        w.client_ops -= 1;
    }

    /// Whether a client call can be made now: the router's cell serves the slot, a write or
    /// lock call is not held by a freeze, and the lock call makes sense.
    fn client_enabled(&self, w: &World, client: u8, slot: u32, op: ClientOp) -> bool {
        let s = &w.slots[slot as usize];
        let reg = match s.view {
            Owner::Source if self.source_serves(s) => &s.source,
            Owner::Target if self.target_serves(s) => s.target.as_ref().unwrap_or(&EMPTY),
            _ => return false,
        };
        let waits = s.view == Owner::Source && s.frozen;
        match op {
            ClientOp::Read => true,
            ClientOp::Write => !waits,
            ClientOp::Acquire => !waits && reg.holder.is_none(),
            ClientOp::Release => !waits && reg.holder == Some(client),
        }
    }
}

/// What a cell holds for a slot it has no copy of.
const EMPTY: Register = Register {
    version: 0,
    holder: None,
    lock_generation: 0,
};

/// FreezeSlots arriving at the source (`late`: from a call its caller gave up on).
fn freeze(s: &mut SlotWorld, late: bool) {
    if !s.handed_off {
        s.frozen = true;
        s.late_frozen = late;
    }
}

/// The source's freeze of a slot ends.
fn thaw(s: &mut SlotWorld) {
    s.frozen = false;
    s.late_frozen = false;
    s.frozen_export = None;
}

fn violate(slot: &mut Option<String>, what: String) {
    if slot.is_none() {
        *slot = Some(what);
    }
}

/// The job as a new meta master finds it: read back from its record, resumed.
fn restart_job(job: &Job, now_ms: u64) -> Job {
    let mut job = Job::from_json(job.to_json().as_bytes()).expect("the record reads back");
    job.resume(now_ms);
    job
}

impl Model for ReshardModel {
    type State = World;
    type Action = Step;

    fn init_states(&self) -> Vec<World> {
        let job = Job::new("model", self.plan(), self.options.clone(), 0)
            .expect("the model's plan and options are valid");
        let slot = SlotWorld {
            source: Register::default(),
            handed_off: false,
            dropped: false,
            frozen: false,
            frozen_export: None,
            late_frozen: false,
            target: None,
            owner: Owner::Source,
            view: Owner::Source,
            acked_version: 0,
            acked_lock_generation: 0,
            lock_moved_held: false,
        };
        let client = ClientWorld {
            holds: vec![false; self.slots as usize],
            seen: vec![0; self.slots as usize],
        };
        vec![World {
            job,
            now_ms: 0,
            map_epoch: 1,
            slots: vec![slot; self.slots as usize],
            clients: vec![client; self.clients as usize],
            crashes: self.crashes,
            timeouts: self.timeouts,
            failures: self.failures,
            aborts: self.aborts,
            late_freezes: self.late_freezes,
            late_freeze: None,
            client_ops: self.client_ops,
            violation: None,
        }]
    }

    fn actions(&self, w: &World, actions: &mut Vec<Step>) {
        if w.violation.is_some() {
            return;
        }
        let next = w.job.peek_action(w.now_ms);
        match next {
            Action::Finished => {}
            Action::Wait { .. } => actions.push(Step::Job),
            _ => {
                actions.push(Step::Job);
                if w.failures > 0 {
                    actions.push(Step::JobCallFails);
                    actions.push(Step::JobAnswerLost);
                }
                if w.crashes > 0 {
                    actions.push(Step::JobCrashAfterCall);
                }
                if matches!(next, Action::Freeze { .. })
                    && w.late_freezes > 0
                    && w.late_freeze.is_none()
                {
                    actions.push(Step::JobFreezeDelayed);
                }
            }
        }
        if w.late_freeze.is_some() {
            actions.push(Step::DeliverLateFreeze);
        }
        if w.crashes > 0 {
            if !w.job.state().is_finished() {
                actions.push(Step::MetaRestart);
            }
            if w.slots.iter().any(|s| s.frozen) {
                actions.push(Step::SourceRestart);
            }
            let staged = |s: &SlotWorld| s.target.is_some() && s.owner == Owner::Source;
            if self.bug == Bug::StagedInMemory && w.slots.iter().any(staged) {
                // With durable staging a target restart changes nothing the model holds
                // (failed calls stand for the time it is down), so it is a step only here.
                actions.push(Step::TargetRestart);
            }
        }
        if w.timeouts > 0 {
            for (slot, s) in w.slots.iter().enumerate() {
                if s.frozen {
                    actions.push(Step::FreezeTimeout { slot: slot as u32 });
                }
            }
        }
        if w.aborts > 0 && !w.job.state().is_finished() && *w.job.state() != JobState::Aborting {
            actions.push(Step::Abort);
        }
        for (slot, s) in w.slots.iter().enumerate() {
            let slot = slot as u32;
            let refused = match s.view {
                Owner::Source => !self.source_serves(s),
                Owner::Target => !self.target_serves(s),
            };
            if refused && s.view != s.owner {
                actions.push(Step::RefreshView { slot });
            }
            if w.client_ops == 0 {
                continue;
            }
            for client in 0..self.clients {
                for op in [
                    ClientOp::Write,
                    ClientOp::Read,
                    ClientOp::Acquire,
                    ClientOp::Release,
                ] {
                    if (op != ClientOp::Read || self.reads)
                        && self.client_enabled(w, client, slot, op)
                    {
                        actions.push(Step::Client { client, slot, op });
                    }
                }
            }
        }
    }

    fn next_state(&self, last: &World, step: Step) -> Option<World> {
        let mut w = last.clone();
        match step {
            Step::Job
            | Step::JobCallFails
            | Step::JobAnswerLost
            | Step::JobCrashAfterCall
            | Step::JobFreezeDelayed => {
                let persisted = w.job.clone();
                let action = w.job.next_action(w.now_ms);
                if let Action::Wait { ms } = action {
                    w.now_ms += ms;
                    return Some(w);
                }
                let outcome = match step {
                    Step::JobFreezeDelayed => {
                        w.late_freezes -= 1;
                        if let Action::Freeze { slots, .. } = &action {
                            w.late_freeze = Some(slots.clone());
                        }
                        Outcome::Failed {
                            error: "deadline exceeded".into(),
                        }
                    }
                    Step::JobCallFails => {
                        w.failures -= 1;
                        Outcome::Failed {
                            error: "unreachable".into(),
                        }
                    }
                    Step::JobAnswerLost => {
                        w.failures -= 1;
                        self.perform(&mut w, &action);
                        Outcome::Failed {
                            error: "no answer".into(),
                        }
                    }
                    Step::JobCrashAfterCall => {
                        w.crashes -= 1;
                        self.perform(&mut w, &action);
                        w.job = restart_job(&persisted, w.now_ms);
                        return Some(w);
                    }
                    _ => self.perform(&mut w, &action),
                };
                if let Err(e) = w.job.on_result(outcome, w.now_ms) {
                    violate(&mut w.violation, format!("the job refused an answer: {e}"));
                }
            }
            Step::DeliverLateFreeze => {
                for slot in w.late_freeze.take().unwrap_or_default() {
                    freeze(&mut w.slots[slot as usize], true);
                }
            }
            Step::MetaRestart => {
                w.crashes -= 1;
                w.job = restart_job(&w.job, w.now_ms);
            }
            Step::SourceRestart => {
                w.crashes -= 1;
                for s in &mut w.slots {
                    thaw(s);
                }
            }
            Step::TargetRestart => {
                w.crashes -= 1;
                for s in &mut w.slots {
                    if s.owner == Owner::Source {
                        s.target = None;
                    }
                }
            }
            Step::FreezeTimeout { slot } => {
                w.timeouts -= 1;
                thaw(&mut w.slots[slot as usize]);
            }
            Step::Abort => {
                w.aborts -= 1;
                if let Err(e) = w.job.abort(w.now_ms) {
                    violate(
                        &mut w.violation,
                        format!("an abort of a running job was refused: {e}"),
                    );
                }
            }
            Step::Client { client, slot, op } => self.client_op(&mut w, client, slot, op),
            Step::RefreshView { slot } => {
                let s = &mut w.slots[slot as usize];
                s.view = s.owner;
            }
        }
        Some(w)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("single owner", |m: &ReshardModel, w: &World| {
                w.slots
                    .iter()
                    .all(|s| !(m.source_serves(s) && m.target_serves(s)))
            }),
            Property::always(
                "no lost acknowledged write",
                |m: &ReshardModel, w: &World| {
                    w.slots.iter().all(|s| {
                        m.served(s).is_none_or(|r| {
                            r.version >= s.acked_version
                                && r.lock_generation >= s.acked_lock_generation
                        })
                    })
                },
            ),
            Property::always(
                "at most one exclusive holder",
                |_: &ReshardModel, w: &World| {
                    (0..w.slots.len()).all(|i| w.clients.iter().filter(|c| c.holds[i]).count() <= 1)
                },
            ),
            Property::always(
                "the lock's holder is the client that believes it holds it",
                |m: &ReshardModel, w: &World| {
                    w.slots.iter().enumerate().all(|(i, s)| {
                        m.served(s).is_none_or(|r| {
                            w.clients
                                .iter()
                                .enumerate()
                                .all(|(c, cw)| !cw.holds[i] || r.holder == Some(c as u8))
                        })
                    })
                },
            ),
            Property::always("no protocol violation", |_: &ReshardModel, w: &World| {
                w.violation.is_none()
            }),
            Property::always(
                "a finished job holds no freeze",
                |_: &ReshardModel, w: &World| {
                    !w.job.state().is_finished()
                        || w.slots.iter().all(|s| !s.frozen || s.late_frozen)
                },
            ),
            Property::always(
                "a finished job leaves every slot at exactly one owner",
                |_: &ReshardModel, w: &World| {
                    !w.job.state().is_finished()
                        || w.slots.iter().all(|s| {
                            (s.handed_off && s.owner == Owner::Target && s.target.is_some())
                                || (!s.handed_off && s.owner == Owner::Source)
                        })
                },
            ),
            Property::always(
                "a finished job's record says where each slot is",
                |_: &ReshardModel, w: &World| {
                    !w.job.state().is_finished()
                        || w.job.slots().iter().all(|p| {
                            let s = &w.slots[p.slot as usize];
                            match p.state {
                                SlotState::Done => s.owner == Owner::Target && s.dropped,
                                SlotState::Pending | SlotState::Aborted { .. } => {
                                    s.owner == Owner::Source && !s.handed_off
                                }
                                _ => false,
                            }
                        })
                },
            ),
            Property::eventually("the job finishes", |_: &ReshardModel, w: &World| {
                w.job.state().is_finished()
            }),
            Property::sometimes("a job ends done", |_: &ReshardModel, w: &World| {
                *w.job.state() == JobState::Done
            }),
            Property::sometimes("a job ends partial", |_: &ReshardModel, w: &World| {
                *w.job.state() == JobState::Partial
            }),
            Property::sometimes(
                "a job ends aborted with a slot moved",
                |_: &ReshardModel, w: &World| {
                    *w.job.state() == JobState::Aborted
                        && w.job.slots().iter().any(|p| p.state == SlotState::Done)
                },
            ),
            Property::sometimes(
                "a slot moves with its lock held",
                |_: &ReshardModel, w: &World| {
                    *w.job.state() == JobState::Done && w.slots.iter().any(|s| s.lock_moved_held)
                },
            ),
        ]
    }
}
