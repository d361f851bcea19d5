//! Warren's history checkers: a recorded history of client operations (with invocation and
//! completion times and outcomes) and the checkers that judge it, shared by the deterministic
//! simulation and the real-process chaos runs. What each checker checks, exactly, and what it
//! cannot see: docs/reliability.md, "History checkers".
//!
//! - [`model`]: the history, its records and their JSON-lines form; [`recorder`]: how a
//!   harness records one;
//! - [`locks`]: mutual exclusion judged at sequencer-fenced resources, and lock generations
//!   that only increase;
//! - [`files`]: per-file linearizability (stateright's Wing–Gong search);
//! - [`writes`]: no acknowledged write lost, and no read staler than an acknowledged write
//!   (the cache checker);
//! - [`sessions`]: no session outlives its lease + grace, none expires while its client
//!   could reach a live master or proxy;
//! - [`report`]: every checker run over one history, as text and JSON;
//! - [`reference`]: a correct model of Warren with random concurrent clients, whose
//!   histories every checker must accept (the checkers' own oracle).

#![forbid(unsafe_code)]

pub mod files;
pub mod locks;
pub mod model;
pub mod recorder;
pub mod reference;
pub mod report;
pub mod sessions;
pub mod verdict;
pub mod writes;

pub use model::{
    History, HistoryError, InitialFile, LockMode, Nanos, Op, Operation, Outcome, Reachability,
    ReadSource, Record, Ret, Value,
};
pub use recorder::Recorder;
pub use report::{check_all, Report};
pub use sessions::SessionBounds;
pub use verdict::{CheckerResult, Verdict, Violation};
