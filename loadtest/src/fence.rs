//! The load test's lock check: the simulated clients' exclusive locks as a sequencer-fenced
//! resource would see them. Every successful `TryAcquire` is an access to the file's
//! resource with the sequencer it returned; the ledger counts
//!
//! - **overlaps**: a client acquired a file's lock while another client still held it, as
//!   the clients saw it (the other had not yet sent its `Release`): a mutual-exclusion
//!   violation, unless the other's session had expired meanwhile (the report says how many
//!   expired);
//! - **stale sequencers**: an acquisition whose lock generation is not above every
//!   generation seen before for that file. Each acquisition of a free lock raises the
//!   generation (docs/design.md §6), so a resource fenced by sequencers would refuse the
//!   later holder, or have let the earlier one in twice. Across a reshard this is the check
//!   that the lock generation travelled with the node (docs/design.md §12).
//!
//! A holder leaves the ledger *before* it sends its `Release`, so the next holder (which
//! the server lets in only after the `Release`) never sees it there.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// What the check found over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockChecks {
    /// Acquisitions checked.
    pub acquired: u64,
    /// Acquisitions while another client held the lock.
    pub overlaps: u64,
    /// Acquisitions whose lock generation was not above the file's last one.
    pub stale_sequencers: u64,
}

impl LockChecks {
    /// Nothing was checked (and so nothing found).
    pub fn is_empty(&self) -> bool {
        *self == LockChecks::default()
    }
}

/// What one acquisition was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    /// Client `other` held the lock.
    Overlap {
        other: u64,
    },
    /// The generation was not above `last`.
    Stale {
        generation: u64,
        last: u64,
    },
}

#[derive(Default)]
struct FileLock {
    holder: Option<u64>,
    /// The highest lock generation an acquisition returned.
    generation: u64,
}

/// Who holds each file's lock, as the clients see it, and the checks' counts.
#[derive(Default)]
pub struct LockLedger {
    files: Mutex<HashMap<u64, FileLock>>,
    checks: Mutex<LockChecks>,
}

impl LockLedger {
    /// Client `client` acquired `file`'s lock exclusively, with lock generation
    /// `generation` (0: the reply had no sequencer, so only the overlap is checked).
    pub fn acquired(&self, file: u64, client: u64, generation: u64) -> Verdict {
        let mut files = self.files.lock().expect("ledger lock");
        let f = files.entry(file).or_default();
        let verdict = match f.holder {
            Some(other) if other != client => Verdict::Overlap { other },
            _ if generation > 0 && generation <= f.generation => Verdict::Stale {
                generation,
                last: f.generation,
            },
            _ => Verdict::Fine,
        };
        f.holder = Some(client);
        f.generation = f.generation.max(generation);
        drop(files);
        let mut c = self.checks.lock().expect("ledger lock");
        c.acquired += 1;
        match verdict {
            Verdict::Overlap { .. } => c.overlaps += 1,
            Verdict::Stale { .. } => c.stale_sequencers += 1,
            Verdict::Fine => {}
        }
        verdict
    }

    /// Client `client` is about to release `file`'s lock (call before sending `Release`).
    pub fn releasing(&self, file: u64, client: u64) {
        let mut files = self.files.lock().expect("ledger lock");
        if let Some(f) = files.get_mut(&file) {
            if f.holder == Some(client) {
                f.holder = None;
            }
        }
    }

    pub fn checks(&self) -> LockChecks {
        self.checks.lock().expect("ledger lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_in_turn_with_rising_generations_are_fine() {
        let l = LockLedger::default();
        assert_eq!(l.acquired(7, 1, 1), Verdict::Fine);
        l.releasing(7, 1);
        assert_eq!(l.acquired(7, 2, 2), Verdict::Fine);
        l.releasing(7, 2);
        // Another file has its own generations.
        assert_eq!(l.acquired(8, 1, 1), Verdict::Fine);
        assert_eq!(
            l.checks(),
            LockChecks {
                acquired: 3,
                overlaps: 0,
                stale_sequencers: 0
            }
        );
    }

    #[test]
    fn a_second_holder_and_an_old_generation_are_counted() {
        let l = LockLedger::default();
        assert_eq!(l.acquired(1, 1, 5), Verdict::Fine);
        // Client 2 acquires before client 1 released.
        assert_eq!(l.acquired(1, 2, 6), Verdict::Overlap { other: 1 });
        l.releasing(1, 1); // not the holder any more: changes nothing
        l.releasing(1, 2);
        // The generation went back (it did not travel with a moved node, say).
        assert_eq!(
            l.acquired(1, 3, 6),
            Verdict::Stale {
                generation: 6,
                last: 6
            }
        );
        l.releasing(1, 3);
        // No sequencer in the reply: only the overlap is checked.
        assert_eq!(l.acquired(1, 4, 0), Verdict::Fine);
        let c = l.checks();
        assert_eq!((c.acquired, c.overlaps, c.stale_sequencers), (4, 1, 1));
    }
}
