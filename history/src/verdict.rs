//! What a checker concludes: pass, the violations with the few operations that show each, or
//! that the history cannot be judged (and why). See docs/reliability.md, "History checkers".

use crate::model::Operation;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One broken property: a person's explanation and the minimal slice of the history that
/// shows it (the few operations involved, in invocation order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub explanation: String,
    pub ops: Vec<Operation>,
}

impl Violation {
    pub(crate) fn new(explanation: String, mut ops: Vec<Operation>) -> Self {
        ops.sort_by_key(|o| (o.invoked, o.id));
        ops.dedup_by_key(|o| o.id);
        Violation { explanation, ops }
    }

    /// The ids of the operations in the slice.
    pub fn op_ids(&self) -> Vec<u64> {
        self.ops.iter().map(|o| o.id).collect()
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.explanation)?;
        for o in &self.ops {
            writeln!(f, "    {o}")?;
        }
        Ok(())
    }
}

/// A checker's conclusion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Violated(Vec<Violation>),
    /// The history does not give this checker what it needs (the message says what is
    /// missing and how to record it); no judgement either way.
    Invalid(String),
}

impl Verdict {
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass)
    }

    /// The violations, empty unless [`Verdict::Violated`].
    pub fn violations(&self) -> &[Violation] {
        match self {
            Verdict::Violated(v) => v,
            _ => &[],
        }
    }

    pub(crate) fn from_violations(v: Vec<Violation>) -> Verdict {
        if v.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Violated(v)
        }
    }
}

/// One checker's result: its verdict, how much it judged, and what it could not judge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckerResult {
    /// `locks`, `lock_generations`, `files`, `lost_writes`, `caches` or `sessions`.
    pub checker: String,
    pub verdict: Verdict,
    /// What was judged, e.g. "12 files, 3400 operations".
    pub judged: String,
    /// What this checker could not judge in this history, e.g. files without a final read.
    pub notes: Vec<String>,
}
