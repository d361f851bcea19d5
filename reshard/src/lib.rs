//! Resharding (docs/resharding.md, docs/design.md §12): moving slots between the cells of a
//! live deployment.
//!
//! - [`plan`]: what a reshard will do — the slots that move, from which cell to which, with
//!   what they hold — made before anything changes, and the maps each step commits.
//!
//! Pure code: no I/O, no tokio. The cells (`warren-cell`) run the slot calls and the meta
//! cell's master drives the job; `warren ctl reshard` makes and shows plans.

pub mod plan;

pub use plan::{MoveCounts, Plan, PlanError, PlannedMove, PLAN_FORMAT};
