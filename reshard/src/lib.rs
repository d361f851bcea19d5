//! Resharding (docs/resharding.md, docs/design.md §12): moving slots between the cells of a
//! live deployment.
//!
//! - [`plan`]: what a reshard will do — the slots that move, from which cell to which, with
//!   what they hold — made before anything changes, and the maps each step commits.
//! - [`job`]: the job that carries a plan out, as a sans-IO state machine: which slot call
//!   to make next (copy, freeze, hand off, commit the map, drop, release), what the answers
//!   mean, abort, resume after a crash, and the status `warren ctl reshard status` shows.
//! - [`model`]: a stateright model of the slot-move protocol — the real [`job::Job`] driving
//!   abstract source and target cells, a client and the map — with crashes, freeze
//!   timeouts, failed calls and aborts, and the properties the protocol must keep. Behind
//!   the `model` feature (off by default, so that the crates that make and run plans do
//!   not link the model checker); this crate's own tests turn it on.
//!
//! Pure code: no I/O, no tokio. The cells (`warren-cell`) run the slot calls and the meta
//! cell's master drives the job; `warren ctl reshard` makes and shows plans.

pub mod job;
#[cfg(feature = "model")]
pub mod model;
pub mod plan;

pub use job::{
    AbortError, Action, CopyReport, Group, Job, JobError, JobOptions, JobState, JobStatus, Outcome,
    SlotProgress, SlotState, SlotStatus, JOB_FORMAT,
};
pub use plan::{MoveCounts, Plan, PlanError, PlannedMove, PLAN_FORMAT};
