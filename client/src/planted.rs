//! The bug the deterministic simulation plants in the client cache to show its cache
//! checker catches it (docs/reliability.md, "Deterministic simulation"): an invalidation
//! from the master acknowledged but not applied, once, so the cache keeps serving the old
//! value after the write it should have dropped it for. Only in builds with the feature
//! `sim`, and off unless the thread that runs a simulation turns it on: a simulation runs
//! every host on the one thread that drives it, so other simulations (other test threads)
//! and every other session are unaffected.

use std::cell::Cell;

thread_local! {
    /// Invalidations still to skip on this thread.
    static SKIP_INVALIDATIONS: Cell<u32> = const { Cell::new(0) };
}

/// Makes this thread's sessions skip the next `n` invalidations they receive (0: none).
pub fn set_skip_invalidations(n: u32) {
    SKIP_INVALIDATIONS.with(|s| s.set(n));
}

/// Whether this invalidation is to be skipped (counts it off when it is).
pub(crate) fn skip_invalidation() -> bool {
    SKIP_INVALIDATIONS.with(|s| {
        let n = s.get();
        if n > 0 {
            s.set(n - 1);
        }
        n > 0
    })
}
