//! Two checkers over one question, "is this read older than an acknowledged write?":
//! - **lost writes**: the final read of every file returns every acknowledged write or a
//!   later one;
//! - **caches**: no read, served by a client cache, a proxy cache or the cell, returns a
//!   value older than a write already acknowledged to its writer before the read was invoked.
//!
//! "Older" is judged by real time only: a read of value `x` is stale against an acknowledged
//! change `W` of the same file when every operation that could have produced `x` had
//! completed before `W` was invoked, so any order of the file's changes puts `x` before `W`.
//! A change is a successful write or compare-and-swap, an `Open` that created the file, or a
//! delete (whose "value" is absence); one of unknown outcome could have produced its value at
//! any time. See docs/reliability.md, "History checkers".

use crate::model::{History, Nanos, Op, Operation, Outcome, Ret, Value};
use crate::verdict::{CheckerResult, Verdict, Violation};
use std::collections::{BTreeMap, BTreeSet};

/// A file's state as a read reports it: contents, or `None` for absent.
type State = Option<Value>;

/// When an operation that may have produced a state ended: `None` for the file's initial
/// state (before everything), `Some(Nanos::MAX)` for one of unknown outcome.
type SourceEnd = Option<Nanos>;

/// One file's changes.
#[derive(Default)]
struct FileChanges<'h> {
    /// Every operation that may have produced each state, by state.
    sources: BTreeMap<State, Vec<(SourceEnd, Option<&'h Operation>)>>,
    /// Acknowledged changes sorted by completion, with the running maximum of invocation
    /// (and the change that holds it) over each prefix.
    acked: Vec<(Nanos, Nanos, &'h Operation)>,
}

impl<'h> FileChanges<'h> {
    /// The latest end among the sources of `state`, and the source that has it; `None` if
    /// nothing could have produced it.
    fn latest_source(&self, state: &State) -> Option<(SourceEnd, Option<&'h Operation>)> {
        self.sources
            .get(state)?
            .iter()
            .copied()
            .max_by_key(|(end, _)| *end)
    }

    /// The acknowledged change completed before `t` that was invoked last.
    fn latest_acked_before(&self, t: Nanos) -> Option<(Nanos, &'h Operation)> {
        let n = self
            .acked
            .partition_point(|(completed, _, _)| *completed < t);
        (n > 0).then(|| (self.acked[n - 1].1, self.acked[n - 1].2))
    }
}

fn changes(history: &History) -> BTreeMap<&str, FileChanges<'_>> {
    let mut files: BTreeMap<&str, FileChanges> = BTreeMap::new();
    for o in &history.ops {
        let Some(path) = o.op.file() else { continue };
        let file = files.entry(path).or_default();
        let produced: State = match (&o.op, &o.outcome) {
            (Op::Write { value, .. }, Outcome::Ok(_)) => Some(value.clone()),
            (
                Op::Open {
                    create: Some(value),
                    ..
                },
                Outcome::Ok(Ret::Opened { created: true }),
            ) => Some(value.clone()),
            (Op::Delete { .. }, Outcome::Ok(_)) => None,
            (Op::Write { value, .. }, outcome)
            | (
                Op::Open {
                    create: Some(value),
                    ..
                },
                outcome,
            ) if outcome.is_indeterminate() => {
                file.sources
                    .entry(Some(value.clone()))
                    .or_default()
                    .push((Some(Nanos::MAX), Some(o)));
                continue;
            }
            (Op::Delete { .. }, outcome) if outcome.is_indeterminate() => {
                file.sources
                    .entry(None)
                    .or_default()
                    .push((Some(Nanos::MAX), Some(o)));
                continue;
            }
            _ => continue,
        };
        let completed = o.completed.expect("an acknowledged operation completed");
        file.sources
            .entry(produced)
            .or_default()
            .push((Some(completed), Some(o)));
        file.acked.push((completed, o.invoked, o));
    }
    for (path, file) in files.iter_mut() {
        let initial = history.initial_of(path).map(|f| f.value.clone());
        file.sources.entry(initial).or_default().push((None, None));
        file.acked
            .sort_by_key(|(completed, _, o)| (*completed, o.id));
        let mut best: Option<(Nanos, &Operation)> = None;
        for entry in file.acked.iter_mut() {
            if best.is_none_or(|(inv, _)| entry.1 > inv) {
                best = Some((entry.1, entry.2));
            }
            let (inv, op) = best.expect("set above");
            entry.1 = inv;
            entry.2 = op;
        }
    }
    files
}

fn describe(state: &State) -> String {
    match state {
        Some(v) => v.to_string(),
        None => "absent".to_string(),
    }
}

/// Judges one read returning `state`, invoked at `invoked`, against the file's
/// acknowledged changes; `what` names the read in the explanation.
fn judge(
    file: &FileChanges,
    path: &str,
    read: &Operation,
    state: &State,
    what: &str,
) -> Option<Violation> {
    let Some((source_end, source)) = file.latest_source(state) else {
        return Some(Violation::new(
            format!(
                "file {path}: {what} returned {}, which no operation wrote and the file \
                 never held",
                describe(state)
            ),
            vec![read.clone()],
        ));
    };
    let (w_invoked, w) = file.latest_acked_before(read.invoked)?;
    let older = match source_end {
        None => true,
        Some(end) => end < w_invoked,
    };
    if !older {
        return None;
    }
    let origin = match source {
        None => "the file's initial state".to_string(),
        Some(s) => format!(
            "#{} (the latest operation that could have produced it, completed at {})",
            s.id,
            s.end()
        ),
    };
    let mut ops = vec![read.clone(), w.clone()];
    ops.extend(source.cloned());
    Some(Violation::new(
        format!(
            "file {path}: {what} returned {} from {origin}, older than #{} ({}), which was \
             invoked after that at {} and acknowledged at {} before the read was invoked at {}",
            describe(state),
            w.id,
            w.op.name(),
            w.invoked,
            w.end(),
            read.invoked,
        ),
        ops,
    ))
}

/// The lost-write checker: every file's last successful final read against every
/// acknowledged change completed before that read was invoked.
pub fn check_lost_writes(history: &History) -> CheckerResult {
    let files = changes(history);
    let mut finals: BTreeMap<&str, &Operation> = BTreeMap::new();
    for o in &history.ops {
        if let (Op::FinalRead { path }, Outcome::Ok(_)) = (&o.op, &o.outcome) {
            let e = finals.entry(path).or_insert(o);
            if o.invoked > e.invoked {
                *e = o;
            }
        }
    }
    let mut violations = Vec::new();
    for (path, read) in &finals {
        let Some(Ret::Read { value, .. }) = read.ok() else {
            continue;
        };
        if let Some(v) = judge(&files[path], path, read, value, "the final read") {
            violations.push(v);
        }
    }
    let unread: BTreeSet<&str> = files
        .iter()
        .filter(|(path, f)| !f.acked.is_empty() && !finals.contains_key(*path))
        .map(|(path, _)| *path)
        .collect();
    let mut notes = Vec::new();
    if !unread.is_empty() {
        notes.push(format!(
            "{} files with acknowledged writes have no successful final read, so their \
             writes were not judged: {}",
            unread.len(),
            unread
                .iter()
                .take(10)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    CheckerResult {
        checker: "lost_writes".into(),
        verdict: Verdict::from_violations(violations),
        judged: format!(
            "{} files with a final read, {} acknowledged changes",
            finals.len(),
            finals.keys().map(|p| files[p].acked.len()).sum::<usize>()
        ),
        notes,
    }
}

/// The cache checker: every successful read (from any source) against the acknowledged
/// changes of its file completed before the read was invoked.
pub fn check_caches(history: &History) -> CheckerResult {
    let files = changes(history);
    let mut violations = Vec::new();
    let mut judged = BTreeMap::new();
    for o in &history.ops {
        let (Op::Read { path, source }, Some(Ret::Read { value, .. })) = (&o.op, o.ok()) else {
            continue;
        };
        *judged.entry(*source).or_insert(0usize) += 1;
        let what = format!("read #{} (served from {source:?})", o.id);
        if let Some(v) = judge(&files[path.as_str()], path, o, value, &what) {
            violations.push(v);
        }
    }
    CheckerResult {
        checker: "caches".into(),
        verdict: Verdict::from_violations(violations),
        judged: format!(
            "{} reads ({})",
            judged.values().sum::<usize>(),
            judged
                .iter()
                .map(|(s, n)| format!("{n} from {s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        notes: Vec::new(),
    }
}
