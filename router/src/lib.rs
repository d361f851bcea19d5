//! Warren's routing layer: which cell holds a node (docs/design.md §11).
//!
//! Pure code, no I/O, no async: a path is checked by the one path grammar and goes to the
//! directory it is anchored in ([`path`]), the directory to a slot by a pinned hash
//! ([`hash`]), and the slot to a cell by the versioned [`PartitionMap`] ([`map`]). What a
//! router does when a cell answers `WRONG_CELL` is [`Attempts`] ([`mod@attempts`]). Cells,
//! proxies and direct-mode clients all check paths and route with this crate, so they
//! always agree on which paths are valid and where a node lives.
//!
//! New maps come from the weighted, minimum-movement [`rebalance()`] (module
//! [`mod@rebalance`]); [`diff`] lists the slots that move between two maps (a reshard plan).

pub mod attempts;
pub mod hash;
pub mod map;
pub mod path;
pub mod rebalance;

pub use attempts::{Attempts, Dest, Next, Target, WrongCell, MAP_WAIT, MAX_ATTEMPTS};
pub use hash::{dir_hash, slot_of_dir};
pub use map::{CellName, MapError, PartitionMap, Route, MAP_FORMAT, MAX_SLOTS};
pub use path::{
    check_component, check_path, component_problem, deployment_of, is_reserved, name_of,
    parent_dir, parent_of_valid, root_of, routing_dir, slot_of_path, validate_path,
    ComponentProblem, PathProblem, RouteError, FULL_PREFIX, MAX_COMPONENT_LEN, MAX_PATH_LEN,
    RESERVED,
};
pub use rebalance::{diff, move_runs, rebalance, CellChange, MoveRun, Proposal, SlotMove, Weight};

/// The slot count of a new deployment unless its operator chooses another (docs/design.md §16).
///
/// Fixed for the life of a deployment: changing it would move nearly every directory.
pub const DEFAULT_SLOTS: u32 = 4096;
