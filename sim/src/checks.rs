//! What one simulated run records and the invariants checked over it: the fenced
//! resource (at most one holder accepted per lock generation at a time, older generations
//! fenced out), lock generations (each granted to one client, never decreasing for a
//! client), and acknowledged writes (reads see them; none lost at the end).
//!
//! These are the slice's own small assertions. The shared history checkers
//! (linearizability per file, cache and session checks) are being written in their own
//! crate; this module is to be switched to them once they land (docs/reliability.md,
//! "Deterministic simulation").

use std::collections::BTreeMap;
use std::time::Duration;

/// Everything the hosts of one run share: the event log, the fenced resource and the
/// histories the checks read. One thread runs a whole simulation, so it lives in a
/// `RefCell` shared by the hosts' tasks.
#[derive(Default)]
pub struct Record {
    /// Every event, in the order it happened: what the trace digest hashes.
    pub log: Vec<String>,
    /// Invariant violations found, each with what shows it.
    pub violations: Vec<String>,
    pub resource: Resource,
    /// Per file, the values written to it in order, with their outcome.
    pub writes: BTreeMap<String, Vec<Write>>,
    /// Per client, the lock generations it was granted, in order.
    pub grants: BTreeMap<usize, Vec<u64>>,
    /// Workload clients that have finished.
    pub finished: usize,
    /// Counts of operations by outcome, for the report.
    pub ops: BTreeMap<&'static str, u64>,
}

impl Record {
    /// Logs what a host did (at the simulated time of the host running).
    pub fn event(&mut self, host: &str, what: impl std::fmt::Display) {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        self.event_at(at, host, what);
    }

    /// Logs an event at `at` (the driver's, between steps, where no host runs).
    pub fn event_at(&mut self, at: Duration, host: &str, what: impl std::fmt::Display) {
        self.log
            .push(format!("{:>9.3} {host:<8} {what}", at.as_secs_f64()));
    }

    pub fn violation(&mut self, what: String) {
        self.event("CHECK", format!("VIOLATION {what}"));
        self.violations.push(what);
    }

    pub fn count(&mut self, outcome: &'static str) {
        *self.ops.entry(outcome).or_default() += 1;
    }

    /// The last value acknowledged for `path` (its index in the file's history).
    pub fn last_acked(&self, path: &str) -> Option<usize> {
        self.writes
            .get(path)?
            .iter()
            .rposition(|w| w.outcome == Outcome::Acked)
    }

    /// Checks a read of `path` that returned `value`, issued when `acked_before` was the
    /// last acknowledged write: it must return that write or a later attempted one.
    pub fn check_read(&mut self, who: &str, path: &str, acked_before: Option<usize>, value: &[u8]) {
        let history = self.writes.get(path).map(Vec::as_slice).unwrap_or(&[]);
        let found = history.iter().position(|w| w.value == value);
        let ok = match (acked_before, found) {
            (None, _) => true,
            (Some(a), Some(f)) => f >= a,
            (Some(_), None) => false,
        };
        if !ok {
            let expected =
                acked_before.map(|a| String::from_utf8_lossy(&history[a].value).into_owned());
            self.violation(format!(
                "{who} read {path} = {:?}, older than the write acknowledged before the read began ({expected:?})",
                String::from_utf8_lossy(value)
            ));
        }
    }

    /// The end-of-run checks over the lock grants (the resource checks as it goes).
    pub fn check_grants(&mut self) {
        let mut owner: BTreeMap<u64, usize> = BTreeMap::new();
        let mut found = Vec::new();
        for (&client, gens) in &self.grants {
            for pair in gens.windows(2) {
                if pair[1] < pair[0] {
                    found.push(format!(
                        "client{client} was granted lock generation {} after {}: generations went back",
                        pair[1], pair[0]
                    ));
                }
            }
            for &g in gens {
                if let Some(other) = owner.insert(g, client) {
                    if other != client {
                        found.push(format!(
                            "lock generation {g} was granted to both client{other} and client{client}"
                        ));
                    }
                }
            }
        }
        for v in found {
            self.violation(v);
        }
    }
}

/// One write's outcome as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not yet answered.
    Pending,
    Acked,
    /// Failed before anything was sent, or refused: it did not take effect.
    Failed,
    /// Failed after it may have been sent: it may or may not have taken effect.
    Unknown,
}

#[derive(Clone, Debug)]
pub struct Write {
    pub value: Vec<u8>,
    pub outcome: Outcome,
}

/// The "resource" a lock protects, fenced by sequencers the way a storage server would:
/// it remembers the highest lock generation it accepted and refuses older ones. It lives
/// in the simulation's memory, reached without the network, so an old holder cut off from
/// the cell always reaches it — the strictest case for the check.
#[derive(Default)]
pub struct Resource {
    /// The highest lock generation accepted.
    highest: u64,
    /// The holders inside their critical section, by client, with their generation.
    inside: BTreeMap<usize, u64>,
    pub accepted: u64,
    pub fenced: u64,
}

impl Resource {
    /// `client` enters (or works in) its critical section under lock generation `gen`.
    /// `Err`: a violation (another holder accepted at the same generation, inside now).
    /// `Ok(false)`: fenced out (an older generation).
    pub fn enter(&mut self, client: usize, gen: u64) -> Result<bool, String> {
        if gen < self.highest {
            self.fenced += 1;
            self.inside.remove(&client);
            return Ok(false);
        }
        if gen > self.highest {
            // Every older holder is fenced out from now on.
            self.highest = gen;
            self.inside.retain(|_, g| *g >= gen);
        }
        self.accepted += 1;
        self.inside.insert(client, gen);
        let others: Vec<usize> = self
            .inside
            .iter()
            .filter(|(c, g)| **c != client && **g == gen)
            .map(|(c, _)| *c)
            .collect();
        if let Some(other) = others.first() {
            return Err(format!(
                "the fenced resource accepted client{client} while client{other} was inside, both at lock generation {gen}"
            ));
        }
        Ok(true)
    }

    /// `client` leaves its critical section.
    pub fn leave(&mut self, client: usize) {
        self.inside.remove(&client);
    }
}

/// The lease, grace period and call timeout of the simulated deployment: short, so that
/// expiries and fail-overs happen within a run of a few tens of simulated seconds.
pub const LEASE: Duration = Duration::from_secs(4);
pub const GRACE: Duration = Duration::from_secs(4);
pub const RPC_TIMEOUT: Duration = Duration::from_secs(2);
