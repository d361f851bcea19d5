//! The bugs the deterministic simulation plants to show its checkers catch them
//! (docs/reliability.md, "Deterministic simulation"): an exclusive lock granted while it
//! is held, at the same lock generation; and a write acknowledged but dropped (never
//! applied nor stored), one in every few. Only in builds with the feature `sim`, and off
//! unless the thread that runs a simulation turns it on: a simulation runs every host on
//! the one thread that drives it, so other simulations (other test threads) and every
//! other cell are unaffected.

use std::cell::Cell;

thread_local! {
    static DOUBLE_GRANT: Cell<bool> = const { Cell::new(false) };
    /// Drop one write in this many (0: none), and the writes counted since the last drop.
    static DROP_WRITE_EVERY: Cell<u32> = const { Cell::new(0) };
    static WRITES_SINCE_DROP: Cell<u32> = const { Cell::new(0) };
}

/// Turns the double grant on or off for the cells this thread runs.
pub fn set_double_grant(on: bool) {
    DOUBLE_GRANT.with(|d| d.set(on));
}

/// Whether this thread's cells grant an exclusive lock that is already held.
pub(crate) fn double_grant() -> bool {
    DOUBLE_GRANT.with(Cell::get)
}

/// Makes this thread's cells acknowledge but drop one `SetContents` in every `n` (0: none).
pub fn set_drop_write_every(n: u32) {
    DROP_WRITE_EVERY.with(|d| d.set(n));
    WRITES_SINCE_DROP.with(|w| w.set(0));
}

/// Whether this write (one about to be applied) is to be acknowledged and dropped.
pub(crate) fn drop_write() -> bool {
    let every = DROP_WRITE_EVERY.with(Cell::get);
    if every == 0 {
        return false;
    }
    WRITES_SINCE_DROP.with(|w| {
        let n = w.get() + 1;
        w.set(n % every);
        n == every
    })
}
