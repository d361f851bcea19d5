//! The report of one run: its seed, the operations by kind and outcome, and every checker's
//! verdict with the slices that show its violations, as text for a person and JSON for a
//! machine (docs/reliability.md, "History checkers").

use crate::model::{History, Outcome};
use crate::sessions::SessionBounds;
use crate::verdict::{CheckerResult, Verdict};
use crate::{files, locks, sessions, writes};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// How the operations of one kind ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    pub ok: usize,
    /// Failed, certainly without effect (`Effect::NotApplied`).
    pub failed: usize,
    /// Failed, may have taken effect (`Effect::Unknown`).
    pub unknown: usize,
    /// Never completed.
    pub incomplete: usize,
}

/// Everything a run's checkers concluded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The seed that replays the run, as the harness gave it.
    pub seed: Option<String>,
    pub operations: usize,
    /// By operation name (`read`, `cas`, `acquire`…).
    pub by_kind: BTreeMap<String, OutcomeCounts>,
    /// Failures by error code (`NOT_MASTER`…).
    pub failures: BTreeMap<String, usize>,
    pub session_bounds: SessionBounds,
    pub checkers: Vec<CheckerResult>,
}

/// Runs every checker over `history`.
pub fn check_all(history: &History, bounds: &SessionBounds) -> Report {
    let mut by_kind: BTreeMap<String, OutcomeCounts> = BTreeMap::new();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for o in &history.ops {
        let counts = by_kind.entry(o.op.name().to_string()).or_default();
        match &o.outcome {
            Outcome::Ok(_) => counts.ok += 1,
            Outcome::Failed { code, .. } => {
                if o.outcome.is_indeterminate() {
                    counts.unknown += 1;
                } else {
                    counts.failed += 1;
                }
                *failures.entry(code.as_str_name().to_string()).or_default() += 1;
            }
            Outcome::Incomplete => counts.incomplete += 1,
        }
    }
    Report {
        seed: history.seed.clone(),
        operations: history.ops.len(),
        by_kind,
        failures,
        session_bounds: bounds.clone(),
        checkers: vec![
            locks::check_exclusion(history),
            locks::check_generations(history),
            files::check(history),
            writes::check_lost_writes(history),
            writes::check_caches(history),
            sessions::check(history, bounds),
        ],
    }
}

impl Report {
    /// Whether every checker passed.
    pub fn passed(&self) -> bool {
        self.checkers.iter().all(|c| c.verdict.is_pass())
    }

    /// The result of the checker named `name` (`files`, `locks`…).
    pub fn checker(&self, name: &str) -> Option<&CheckerResult> {
        self.checkers.iter().find(|c| c.checker == name)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Report always serializes")
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let seed = self.seed.as_deref().unwrap_or("(none recorded)");
        let _ = writeln!(
            out,
            "history of {} operations, seed {seed}",
            self.operations
        );
        let _ = writeln!(
            out,
            "\n{:<16} {:>8} {:>8} {:>8} {:>10}",
            "operation", "ok", "failed", "unknown", "incomplete"
        );
        for (kind, c) in &self.by_kind {
            let _ = writeln!(
                out,
                "{kind:<16} {:>8} {:>8} {:>8} {:>10}",
                c.ok, c.failed, c.unknown, c.incomplete
            );
        }
        if !self.failures.is_empty() {
            let list: Vec<String> = self
                .failures
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect();
            let _ = writeln!(out, "failures by code: {}", list.join(", "));
        }
        let _ = writeln!(out);
        for c in &self.checkers {
            let verdict = match &c.verdict {
                Verdict::Pass => "pass".to_string(),
                Verdict::Violated(v) => format!("VIOLATED ({})", v.len()),
                Verdict::Invalid(_) => "CANNOT JUDGE".to_string(),
            };
            let _ = writeln!(out, "{:<17} {verdict:<16} {}", c.checker, c.judged);
            for n in &c.notes {
                let _ = writeln!(out, "    note: {n}");
            }
            if let Verdict::Invalid(why) = &c.verdict {
                let _ = writeln!(out, "    {why}");
            }
            for v in c.verdict.violations() {
                let _ = write!(out, "  - {v}");
            }
        }
        if !self.passed() {
            let _ = writeln!(out, "\nreplay with seed {seed}");
        }
        out
    }
}
