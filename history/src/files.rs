//! The file checker: linearizability of reads, writes, compare-and-swaps, creates and deletes,
//! file by file (P-compositionality: a history is linearizable iff each object's is).
//!
//! The model is [`FileSpec`], a register holding a file's contents and `content_generation`,
//! written as a stateright `SequentialSpec`. The search is the Wing–Gong algorithm with
//! Lowe's memoization (as porcupine and Knossos do it), cross-checked in the property tests
//! against stateright's `semantics::LinearizabilityTester` ([`check_exhaustive`]), whose
//! search has no memo and is exponential on histories that are not linearizable. Operations
//! whose outcome is unknown (an `Effect::Unknown` failure, or never completed) may take
//! effect at any point after their invocation or not at all, as Jepsen treats `:info`
//! operations. Only reads served by the cell are judged here; cached reads are the cache
//! checker's (docs/reliability.md, "History checkers").

use crate::model::{History, Nanos, Op, Operation, Outcome, ReadSource, Ret, Value};
use crate::verdict::{CheckerResult, Verdict, Violation};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use std::collections::{BTreeMap, HashMap, HashSet};
use warren_proto::error::ErrorCode;

/// A value interned per file, so the search clones integers rather than strings.
type ValueId = u32;

/// What the model knows of a file's existence and contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Contents {
    /// Nothing (a slice checked from an arbitrary state, see [`minimal_slice`]).
    Unknown,
    Absent,
    /// Present, with these contents if known.
    Present(Option<ValueId>),
}

/// The sequential specification of one Warren file: a register with a generation that
/// rises by one with each write and starts at 0 when the file is created
/// (docs/design.md, 3. "Nodes, metadata and ACL files").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileSpec {
    contents: Contents,
    /// `None`: unknown.
    generation: Option<u64>,
}

/// An operation on one file, as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileOp {
    Read,
    Write {
        value: ValueId,
        if_generation: Option<u64>,
    },
    /// `Open` with create.
    Create {
        value: ValueId,
    },
    /// `Open` without create.
    Open,
    Delete,
}

/// Its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileRet {
    Read {
        value: Option<ValueId>,
        generation: Option<u64>,
    },
    Written {
        generation: Option<u64>,
    },
    /// `GENERATION_MISMATCH`.
    Mismatch,
    Opened {
        created: bool,
    },
    /// `Open` without create: `NOT_FOUND`.
    Absent,
    Deleted,
}

impl FileSpec {
    fn absent() -> Self {
        FileSpec {
            contents: Contents::Absent,
            generation: None,
        }
    }

    fn present(value: ValueId, generation: u64) -> Self {
        FileSpec {
            contents: Contents::Present(Some(value)),
            generation: Some(generation),
        }
    }

    fn unknown() -> Self {
        FileSpec {
            contents: Contents::Unknown,
            generation: None,
        }
    }

    /// Requires the file to exist (learning so if unknown).
    fn require_present(&mut self) -> bool {
        match self.contents {
            Contents::Absent => false,
            Contents::Unknown => {
                self.contents = Contents::Present(None);
                true
            }
            Contents::Present(_) => true,
        }
    }

    fn require_absent(&mut self) -> bool {
        match self.contents {
            Contents::Present(_) => false,
            _ => {
                *self = FileSpec::absent();
                true
            }
        }
    }

    /// Requires the generation to be `g` (learning it if unknown).
    fn require_generation(&mut self, g: u64) -> bool {
        match self.generation {
            Some(known) => known == g,
            None => {
                self.generation = Some(g);
                true
            }
        }
    }

    /// Applies `op` if `ret` is a result it can have in this state; false (and the state
    /// unspecified) otherwise.
    fn step(&mut self, op: &FileOp, ret: &FileRet) -> bool {
        match (op, ret) {
            (FileOp::Read, FileRet::Read { value, generation }) => match value {
                None => self.require_absent(),
                Some(v) => {
                    let contents_ok = match self.contents {
                        Contents::Absent => false,
                        Contents::Present(Some(known)) => known == *v,
                        Contents::Present(None) | Contents::Unknown => {
                            self.contents = Contents::Present(Some(*v));
                            true
                        }
                    };
                    contents_ok && generation.is_none_or(|g| self.require_generation(g))
                }
            },
            (
                FileOp::Write {
                    value,
                    if_generation,
                },
                FileRet::Written { generation },
            ) => {
                if !self.require_present() {
                    return false;
                }
                if let Some(e) = if_generation {
                    if !self.require_generation(*e) {
                        return false;
                    }
                }
                let next = self.generation.map(|g| g + 1);
                match (next, generation) {
                    (Some(n), Some(g)) if n != *g => return false,
                    (_, Some(g)) => self.generation = Some(*g),
                    (n, None) => self.generation = n,
                }
                self.contents = Contents::Present(Some(*value));
                true
            }
            (
                FileOp::Write {
                    if_generation: Some(e),
                    ..
                },
                FileRet::Mismatch,
            ) => self.require_present() && self.generation != Some(*e),
            (FileOp::Create { value }, FileRet::Opened { created: true }) => {
                if !self.require_absent() {
                    return false;
                }
                *self = FileSpec::present(*value, 0);
                true
            }
            (FileOp::Create { .. } | FileOp::Open, FileRet::Opened { created: false }) => {
                self.require_present()
            }
            (FileOp::Open, FileRet::Absent) => self.require_absent(),
            (FileOp::Delete, FileRet::Deleted) => {
                if !self.require_present() {
                    return false;
                }
                *self = FileSpec::absent();
                true
            }
            _ => false,
        }
    }
}

impl SequentialSpec for FileSpec {
    type Op = FileOp;
    type Ret = FileRet;

    /// Only called for operations whose outcome is unknown (their result is ignored): the
    /// operation takes effect if it can. "It did not" is the search leaving it out.
    fn invoke(&mut self, op: &FileOp) -> FileRet {
        let ret = match op {
            FileOp::Read => FileRet::Read {
                value: None,
                generation: None,
            },
            FileOp::Write { if_generation, .. } => {
                match (if_generation, self.generation, self.contents) {
                    (_, _, Contents::Absent) => return FileRet::Mismatch,
                    (Some(e), Some(g), _) if *e != g => return FileRet::Mismatch,
                    _ => FileRet::Written { generation: None },
                }
            }
            FileOp::Create { .. } => FileRet::Opened { created: true },
            FileOp::Open => return FileRet::Absent,
            FileOp::Delete => FileRet::Deleted,
        };
        let before = *self;
        if !self.step(op, &ret) {
            *self = before;
        }
        ret
    }

    fn is_valid_step(&mut self, op: &FileOp, ret: &FileRet) -> bool {
        self.step(op, ret)
    }
}

/// One operation of one file's sub-history.
#[derive(Clone, Debug)]
struct FileEvent {
    id: u64,
    invoked: Nanos,
    /// `None`: the outcome is unknown; it may take effect at any time after `invoked`.
    completed: Option<Nanos>,
    op: FileOp,
    /// `None` exactly when `completed` is.
    ret: Option<FileRet>,
}

impl FileEvent {
    fn mutates(&self) -> bool {
        !matches!(self.op, FileOp::Read | FileOp::Open)
            && !matches!(self.ret, Some(FileRet::Mismatch))
    }
}

/// Per file: its sub-history, with values interned.
struct FileHistory {
    path: String,
    events: Vec<FileEvent>,
    initial: FileSpec,
    values: Vec<Value>,
}

fn intern(values: &mut Vec<Value>, index: &mut HashMap<Value, ValueId>, v: &Value) -> ValueId {
    *index.entry(v.clone()).or_insert_with(|| {
        values.push(v.clone());
        (values.len() - 1) as ValueId
    })
}

/// Splits the history by file and turns each operation into what the model checks:
/// failures that did not take effect and say nothing of the file are dropped; an unknown
/// outcome becomes an operation that may or may not have happened.
fn split_by_file(history: &History) -> BTreeMap<String, FileHistory> {
    let mut files: BTreeMap<String, (FileHistory, HashMap<Value, ValueId>)> = BTreeMap::new();
    for o in &history.ops {
        let Some(path) = o.op.file() else { continue };
        let (fh, index) = files.entry(path.to_string()).or_insert_with(|| {
            let mut values = Vec::new();
            let mut index = HashMap::new();
            let initial = match history.initial_of(path) {
                Some(f) => {
                    FileSpec::present(intern(&mut values, &mut index, &f.value), f.generation)
                }
                None => FileSpec::absent(),
            };
            (
                FileHistory {
                    path: path.to_string(),
                    events: Vec::new(),
                    initial,
                    values,
                },
                index,
            )
        });
        let mut val = |v: &Value| intern(&mut fh.values, index, v);
        let op = match &o.op {
            Op::Read {
                source: ReadSource::Cell,
                ..
            }
            | Op::FinalRead { .. } => FileOp::Read,
            Op::Read { .. } => continue,
            Op::Write {
                value,
                if_generation,
                ..
            } => FileOp::Write {
                value: val(value),
                if_generation: *if_generation,
            },
            Op::Open {
                create: Some(v), ..
            } => FileOp::Create { value: val(v) },
            Op::Open { create: None, .. } => FileOp::Open,
            Op::Delete { .. } => FileOp::Delete,
            _ => continue,
        };
        let ret = match &o.outcome {
            Outcome::Ok(Ret::Read { value, generation }) => Some(FileRet::Read {
                value: value.as_ref().map(&mut val),
                generation: *generation,
            }),
            Outcome::Ok(Ret::Written { generation }) => Some(FileRet::Written {
                generation: *generation,
            }),
            Outcome::Ok(Ret::Opened { created }) => Some(FileRet::Opened { created: *created }),
            Outcome::Ok(_) => Some(FileRet::Deleted),
            Outcome::Failed {
                code: ErrorCode::GenerationMismatch,
                ..
            } if matches!(
                op,
                FileOp::Write {
                    if_generation: Some(_),
                    ..
                }
            ) =>
            {
                Some(FileRet::Mismatch)
            }
            Outcome::Failed {
                code: ErrorCode::NotFound,
                ..
            } if op == FileOp::Open => Some(FileRet::Absent),
            Outcome::Failed {
                code: ErrorCode::AlreadyExists,
                ..
            } if matches!(op, FileOp::Create { .. }) => Some(FileRet::Opened { created: false }),
            outcome if outcome.is_indeterminate() => None,
            _ => continue,
        };
        if ret.is_none() && matches!(op, FileOp::Read | FileOp::Open) {
            continue; // an unknown read changes nothing
        }
        fh.events.push(FileEvent {
            id: o.id,
            invoked: o.invoked,
            completed: if ret.is_some() { o.completed } else { None },
            op,
            ret,
        });
    }
    files.into_iter().map(|(k, (fh, _))| (k, fh)).collect()
}

/// The answer of a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Search {
    Linearizable,
    NotLinearizable,
    /// The step budget ran out first.
    GaveUp,
}

/// The most steps one search of one file may take before giving up (never a hang; about
/// 15 s in a debug build). A correct history of thousands of operations on one file needs
/// thousands of steps; what exhausts it is a history that is NOT linearizable with many
/// operations of unknown outcome pending on the file, where the search tries every subset
/// of them (docs/reliability.md, "History checkers", what the checkers cannot see).
const SEARCH_STEPS: u64 = 10_000_000;

/// Whether `events` (a file's sub-history) is linearizable from `start`: the Wing–Gong
/// search with Lowe's memoization, as in porcupine and Knossos.
///
/// Calls and returns are laid out in time order (at equal times calls first, so operations
/// that touch count as concurrent) in a doubly linked list. The search walks it, linearizing
/// a call when the model accepts its result and the pair (set of operations linearized,
/// model state) has not been seen before, removing it and its return from the list; reaching
/// a return whose call is not yet linearized means backtracking. An operation of unknown
/// outcome returns at the end of time, after everything: linearized there, it is as if it
/// never happened, so "maybe" needs no special case.
///
/// The memo is what keeps a history that is NOT linearizable from costing every
/// interleaving: stateright's tester ([`check_exhaustive`]) has none, and its search is
/// exponential there (a 150-operation history with a stale read ran for minutes).
fn search(events: &[FileEvent], start: FileSpec, budget: &mut u64) -> Search {
    let n = events.len();
    if n == 0 {
        return Search::Linearizable;
    }
    // Entries 0..2n: 2i is op i's call, 2i+1 its return; HEAD and TAIL are sentinels.
    let (head, tail) = (2 * n, 2 * n + 1);
    let time = |e: usize| -> (Nanos, u8) {
        let ev = &events[e / 2];
        if e % 2 == 0 {
            (ev.invoked, 0)
        } else {
            (ev.completed.unwrap_or(Nanos::MAX), 1)
        }
    };
    let mut order: Vec<usize> = (0..2 * n).collect();
    order.sort_by_key(|&e| (time(e), e));
    let mut next = vec![0usize; 2 * n + 2];
    let mut prev = vec![0usize; 2 * n + 2];
    let mut last = head;
    for &e in &order {
        next[last] = e;
        prev[e] = last;
        last = e;
    }
    next[last] = tail;
    prev[tail] = last;
    fn unlink(next: &mut [usize], prev: &mut [usize], e: usize) {
        next[prev[e]] = next[e];
        prev[next[e]] = prev[e];
    }
    fn relink(next: &mut [usize], prev: &mut [usize], e: usize) {
        next[prev[e]] = e;
        prev[next[e]] = e;
    }

    let mut linearized = vec![0u64; n.div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, FileSpec)> = HashSet::new();
    // Each linearized call and the state before it.
    let mut calls: Vec<(usize, FileSpec)> = Vec::new();
    let mut state = start;
    // A node's candidates are the calls before the first return in the list, tried in
    // list order, so an operation of unknown outcome is tried early: measured on the
    // reference model's histories, this beats trying them last by orders of magnitude
    // (a late try revisits every subset of the unknown operations still pending).
    let mut entry = next[head];
    while next[head] != tail {
        if *budget == 0 {
            return Search::GaveUp;
        }
        *budget -= 1;
        if entry != tail && entry % 2 == 0 {
            let i = entry / 2;
            let ev = &events[i];
            let mut after = state;
            let ok = match &ev.ret {
                Some(ret) => after.step(&ev.op, ret),
                None => {
                    after.invoke(&ev.op);
                    true
                }
            };
            if ok {
                linearized[i / 64] |= 1 << (i % 64);
                if seen.insert((linearized.clone(), after)) {
                    calls.push((i, state));
                    state = after;
                    unlink(&mut next, &mut prev, 2 * i);
                    unlink(&mut next, &mut prev, 2 * i + 1);
                    entry = next[head];
                    continue;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            entry = next[entry];
        } else {
            // A return whose call is not linearized: undo the last linearization.
            let Some((i, before)) = calls.pop() else {
                return Search::NotLinearizable;
            };
            state = before;
            linearized[i / 64] &= !(1 << (i % 64));
            relink(&mut next, &mut prev, 2 * i + 1);
            relink(&mut next, &mut prev, 2 * i);
            entry = next[2 * i];
        }
    }
    Search::Linearizable
}

/// For shrinking: "not linearizable" only when the search says so within what is left of
/// `budget` (giving up keeps the larger slice, which is known not linearizable).
fn linearizable(events: &[FileEvent], start: FileSpec, budget: &mut u64) -> bool {
    search(events, start, budget) != Search::NotLinearizable
}

/// The same question answered by stateright's `LinearizabilityTester`, to cross-check
/// [`search`] on small histories.
///
/// Events are fed to the tester in time order (at equal times invocations first). Each
/// completed operation goes to a lane (a tester "thread") free since before its invocation;
/// each unknown one to a lane of its own that it never leaves, as the tester wants an
/// in-flight operation last in its thread (and may or may not linearize it). Real-time
/// order depends only on these events, not on which lane holds what.
fn tester_linearizable(events: &[FileEvent], start: FileSpec) -> bool {
    // (time, 0 = invoke / 1 = return, index)
    let mut points: Vec<(Nanos, u8, usize)> = Vec::with_capacity(events.len() * 2);
    for (i, e) in events.iter().enumerate() {
        points.push((e.invoked, 0, i));
        if let Some(c) = e.completed {
            points.push((c, 1, i));
        }
    }
    points.sort_unstable();
    let mut tester: LinearizabilityTester<usize, FileSpec> = LinearizabilityTester::new(start);
    let mut free: Vec<usize> = Vec::new();
    let mut lanes = 0usize;
    let mut lane_of = vec![0usize; events.len()];
    for (_, kind, i) in points {
        let e = &events[i];
        if kind == 0 {
            let lane = if e.completed.is_some() {
                free.pop()
            } else {
                None
            }
            .unwrap_or_else(|| {
                lanes += 1;
                lanes - 1
            });
            lane_of[i] = lane;
            tester
                .on_invoke(lane, e.op)
                .expect("a lane is only reused once its operation returned");
        } else {
            let lane = lane_of[i];
            tester
                .on_return(lane, e.ret.expect("only completed operations return"))
                .expect("an operation returns on its own lane");
            free.push(lane);
        }
    }
    tester.is_consistent()
}

/// Per file, whether its sub-history is linearizable, by stateright's exhaustive tester:
/// the cross-check of [`check`], which the property tests compare with it. Exponential in
/// the concurrency of a history that is not linearizable, and recursive once per
/// operation: keep it to a few dozen operations per file.
pub fn check_exhaustive(history: &History) -> BTreeMap<String, bool> {
    split_by_file(history)
        .into_values()
        .map(|fh| {
            let ok = tester_linearizable(&fh.events, fh.initial);
            (fh.path, ok)
        })
        .collect()
}

/// Per file, whether its sub-history is linearizable, by [`check`]'s search (`None`: the
/// search gave up).
pub fn check_per_file(history: &History) -> BTreeMap<String, Option<bool>> {
    split_by_file(history)
        .into_values()
        .map(|fh| {
            let answer = match search(&fh.events, fh.initial, &mut SEARCH_STEPS.clone()) {
                Search::Linearizable => Some(true),
                Search::NotLinearizable => Some(false),
                Search::GaveUp => None,
            };
            (fh.path, answer)
        })
        .collect()
}

/// Shrinks a non-linearizable sub-history to a small slice that is still not linearizable,
/// by steps that keep it a proof (docs/reliability.md, "History checkers"):
/// 1. cut it at the earliest time T where the history up to T is not linearizable
///    (operations still running at T become ones of unknown outcome);
/// 2. drop everything before the latest quiescent moment (no operation in flight) after
///    which the rest is not linearizable from ANY state of the file;
/// 3. drop reads and failed compare-and-swaps that the violation does not need.
///
/// Returns the slice and whether it starts from an arbitrary state (step 2 cut something).
fn minimal_slice(events: &[FileEvent], initial: FileSpec, steps: u64) -> (Vec<FileEvent>, bool) {
    let mut budget = steps;
    let truncate = |t: Nanos| -> Vec<FileEvent> {
        events
            .iter()
            .filter(|e| e.invoked <= t)
            .filter_map(|e| match e.completed {
                Some(c) if c <= t => Some(e.clone()),
                _ if e.mutates() => Some(FileEvent {
                    completed: None,
                    ret: None,
                    ..e.clone()
                }),
                _ => None,
            })
            .collect()
    };
    // 1. The earliest T (a completion time) whose truncation is not linearizable.
    let mut ends: Vec<Nanos> = events.iter().filter_map(|e| e.completed).collect();
    ends.sort_unstable();
    ends.dedup();
    let (mut lo, mut hi) = (0usize, ends.len());
    while lo < hi && budget > 0 {
        let mid = (lo + hi) / 2;
        if linearizable(&truncate(ends[mid]), initial, &mut budget) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut slice = if hi < ends.len() {
        truncate(ends[hi])
    } else {
        events.to_vec()
    };
    // 2. The latest quiescent cut after which the rest alone is not linearizable. Only
    //    completed operations straddling a moment D block a cut there: one of unknown
    //    outcome invoked before D took effect before D (its effect is then part of the
    //    arbitrary state the rest starts from) or after it, so the rest keeps it, invoked at
    //    D.
    let mut cuts: Vec<Nanos> = Vec::new();
    let mut by_invocation = slice.clone();
    by_invocation.sort_by_key(|e| e.invoked);
    let mut running_end = 0;
    for (i, e) in by_invocation.iter().enumerate() {
        if i > 0 && running_end < e.invoked {
            cuts.push(e.invoked);
        }
        running_end = running_end.max(e.completed.unwrap_or(0));
    }
    cuts.dedup();
    let after = |slice: &[FileEvent], d: Nanos| -> Vec<FileEvent> {
        slice
            .iter()
            .filter_map(|e| match e.completed {
                _ if e.invoked >= d => Some(e.clone()),
                None => Some(FileEvent {
                    invoked: d,
                    ..e.clone()
                }),
                Some(_) => None,
            })
            .collect()
    };
    let (mut lo, mut hi) = (0usize, cuts.len());
    // The largest index whose suffix is still not linearizable from any state.
    while lo < hi && budget > 0 {
        let mid = (lo + hi).div_ceil(2);
        if mid == 0 {
            break;
        }
        if linearizable(
            &after(&slice, cuts[mid - 1]),
            FileSpec::unknown(),
            &mut budget,
        ) {
            hi = mid - 1;
        } else {
            lo = mid;
        }
    }
    let from_any_state = lo > 0;
    let start = if from_any_state {
        slice = after(&slice, cuts[lo - 1]);
        FileSpec::unknown()
    } else {
        initial
    };
    // 3. Drop the observations the violation does not need.
    let mut i = 0;
    while i < slice.len() && budget > 0 {
        if slice[i].mutates() || slice[i].ret.is_none() {
            i += 1;
            continue;
        }
        let mut without = slice.clone();
        without.remove(i);
        if linearizable(&without, start, &mut budget) {
            i += 1;
        } else {
            slice = without;
        }
    }
    (slice, from_any_state)
}

/// Checks every file's sub-history for linearizability.
pub fn check(history: &History) -> CheckerResult {
    check_with_budget(history, SEARCH_STEPS)
}

/// [`check`] with at most `steps` search steps per file (and a fifth of that to shrink each
/// violation): a file whose search runs out is reported, not judged.
pub fn check_with_budget(history: &History, steps: u64) -> CheckerResult {
    let files = split_by_file(history);
    let by_id: HashMap<u64, &Operation> = history.ops.iter().map(|o| (o.id, o)).collect();
    let judged_ops: usize = files.values().map(|f| f.events.len()).sum();
    let judged = format!("{} files, {} operations", files.len(), judged_ops);
    let mut violations = Vec::new();
    let mut undecided = Vec::new();
    for fh in files.values() {
        match search(&fh.events, fh.initial, &mut steps.clone()) {
            Search::Linearizable => continue,
            Search::GaveUp => {
                undecided.push(fh.path.clone());
                continue;
            }
            Search::NotLinearizable => {}
        }
        let (slice, from_any_state) = minimal_slice(&fh.events, fh.initial, steps / 5);
        let start = if from_any_state {
            "from any state the file could have had at the slice's start (no completed \
             operation was in flight then; one of unknown outcome invoked before counts from \
             that moment)"
                .to_string()
        } else {
            match fh.initial.contents {
                Contents::Present(Some(v)) => format!(
                    "from its initial contents {} (generation {})",
                    fh.values[v as usize],
                    fh.initial.generation.unwrap_or(0)
                ),
                _ => "from the file being absent".to_string(),
            }
        };
        violations.push(Violation::new(
            format!(
                "file {}: not linearizable: no order of these operations that respects real \
                 time explains every result, {start}; operations of unknown outcome, and \
                 those still running when the violation shows, may be in that order or not",
                fh.path
            ),
            slice.iter().map(|e| by_id[&e.id].clone()).collect(),
        ));
    }
    let mut notes = Vec::new();
    let verdict = if !undecided.is_empty() {
        let message = format!(
            "the search gave up after {steps} steps on {} files, which are not \
             judged: {}; split the workload over more files or fewer concurrent clients",
            undecided.len(),
            undecided.join(", ")
        );
        if violations.is_empty() {
            Verdict::Invalid(message)
        } else {
            notes.push(message);
            Verdict::Violated(violations)
        }
    } else {
        Verdict::from_violations(violations)
    };
    CheckerResult {
        checker: "files".into(),
        verdict,
        judged,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_ok(state: FileSpec, op: FileOp, ret: FileRet) -> Option<FileSpec> {
        let mut s = state;
        s.step(&op, &ret).then_some(s)
    }

    #[test]
    fn the_spec_counts_generations_and_checks_cas() {
        let s = FileSpec::present(0, 3);
        let w = FileOp::Write {
            value: 1,
            if_generation: Some(3),
        };
        assert_eq!(
            spec_ok(
                s,
                w,
                FileRet::Written {
                    generation: Some(4)
                }
            ),
            Some(FileSpec::present(1, 4))
        );
        assert_eq!(
            spec_ok(
                s,
                w,
                FileRet::Written {
                    generation: Some(5)
                }
            ),
            None
        );
        assert_eq!(spec_ok(s, w, FileRet::Mismatch), None);
        let stale = FileOp::Write {
            value: 1,
            if_generation: Some(2),
        };
        assert_eq!(spec_ok(s, stale, FileRet::Mismatch), Some(s));
        assert_eq!(
            spec_ok(FileSpec::absent(), w, FileRet::Written { generation: None }),
            None
        );
        assert_eq!(
            spec_ok(
                FileSpec::absent(),
                FileOp::Create { value: 7 },
                FileRet::Opened { created: true }
            ),
            Some(FileSpec::present(7, 0))
        );
        // From an unknown state a read teaches the model the contents.
        assert_eq!(
            spec_ok(
                FileSpec::unknown(),
                FileOp::Read,
                FileRet::Read {
                    value: Some(2),
                    generation: Some(9)
                }
            ),
            Some(FileSpec::present(2, 9))
        );
    }
}
