//! The bug the deterministic simulation plants to show its checkers catch it
//! (docs/reliability.md, "Deterministic simulation"): an exclusive lock granted while it
//! is held, at the same lock generation. Only in builds with the feature `sim`, and off
//! unless the thread that runs a simulation turns it on: a simulation runs every host on
//! the one thread that drives it, so other simulations (other test threads) and every
//! other cell are unaffected.

use std::cell::Cell;

thread_local! {
    static DOUBLE_GRANT: Cell<bool> = const { Cell::new(false) };
}

/// Turns the double grant on or off for the cells this thread runs.
pub fn set_double_grant(on: bool) {
    DOUBLE_GRANT.with(|d| d.set(on));
}

/// Whether this thread's cells grant an exclusive lock that is already held.
pub(crate) fn double_grant() -> bool {
    DOUBLE_GRANT.with(Cell::get)
}
