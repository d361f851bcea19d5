//! The recorded history: what a client did, when, and what came back.
//!
//! One [`Operation`] per client call (invocation time, completion time, outcome), plus the
//! facts the harness knows and the clients do not: when each client could reach a live
//! master or proxy ([`Reachability`]), which files existed before recording began
//! ([`InitialFile`]), and the run's seed. Times are monotonic nanoseconds from ONE clock
//! (the simulation's, or the chaos harness's), never wall clock.
//!
//! On disk a history is JSON lines, one [`Record`] per line ([`History::to_json_lines`],
//! [`History::from_json_lines`]), so a real-process run can write it as it goes and a
//! checker can read it back. See docs/reliability.md, "History checkers".

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use warren_proto::error::{Effect, ErrorCode};

/// Nanoseconds on the history's one monotonic clock.
pub type Nanos = u64;

/// A file's contents as the checkers see them. Harnesses write a value unique per file
/// (Jepsen's practice), so that a read names the write it saw. Duplicates stay correct but
/// weaken the lost-write and cache checkers: a read is credited to the latest write of its
/// value, so a duplicate can hide a stale read, never invent one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Value(pub String);

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value(s.to_string())
    }
}

/// Where a read was served from. The file checker judges only [`ReadSource::Cell`] reads for
/// linearizability; the cache checker judges all of them (docs/reliability.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadSource {
    /// Answered by the cell's master (directly, or forwarded by a proxy).
    Cell,
    /// Answered from the client library's cache.
    ClientCache,
    /// Answered from a proxy's shared cache.
    ProxyCache,
}

/// A lock mode, as in a sequencer (`x` exclusive, `s` shared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    Exclusive,
    Shared,
}

/// What the client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `CreateSession`; ok result: [`Ret::Lease`].
    CreateSession,
    /// `KeepAlive`; ok result: [`Ret::Lease`].
    KeepAlive,
    /// The client library reported its session expired (the `Expired` event): an
    /// observation at one instant, recorded with `completed == invoked` and result
    /// [`Ret::Done`].
    SessionExpired,
    /// `Open` of a file, creating it with `create` as its contents if it is absent; ok
    /// result: [`Ret::Opened`]. An `Open` without create that found nothing fails
    /// `NOT_FOUND`, which the file checker reads as "absent".
    Open { path: String, create: Option<Value> },
    /// `GetContentsAndStat`; ok result: [`Ret::Read`].
    Read { path: String, source: ReadSource },
    /// `SetContents`, a compare-and-swap when `if_generation` is set (`GENERATION_MISMATCH`
    /// otherwise); ok result: [`Ret::Written`].
    Write {
        path: String,
        value: Value,
        if_generation: Option<u64>,
    },
    /// `Delete`; ok result: [`Ret::Done`].
    Delete { path: String },
    /// `Acquire`/`TryAcquire`; ok result: [`Ret::Lock`].
    Acquire { lock: String, mode: LockMode },
    /// `Release`; ok result: [`Ret::Done`].
    Release { lock: String },
    /// `GetSequencer`; ok result: [`Ret::Lock`].
    GetSequencer { lock: String },
    /// A write to a resource outside Warren that checks sequencers (docs/design.md, 5.
    /// "Sequencers"): it accepts a write fenced by `(lock, instance, generation)` if and only
    /// if it has accepted no write with a higher generation. Ok result: [`Ret::Fenced`].
    FencedWrite {
        resource: String,
        lock: String,
        instance: u64,
        generation: u64,
        mode: LockMode,
    },
    /// The final read of a file, made once the faults are healed, for the lost-write
    /// checker; ok result: [`Ret::Read`].
    FinalRead { path: String },
}

impl Op {
    /// The operation's name in the report.
    pub fn name(&self) -> &'static str {
        match self {
            Op::CreateSession => "create_session",
            Op::KeepAlive => "keep_alive",
            Op::SessionExpired => "session_expired",
            Op::Open { .. } => "open",
            Op::Read { .. } => "read",
            Op::Write {
                if_generation: Some(_),
                ..
            } => "cas",
            Op::Write { .. } => "write",
            Op::Delete { .. } => "delete",
            Op::Acquire { .. } => "acquire",
            Op::Release { .. } => "release",
            Op::GetSequencer { .. } => "get_sequencer",
            Op::FencedWrite { .. } => "fenced_write",
            Op::FinalRead { .. } => "final_read",
        }
    }

    /// The file this operation reads or changes, if any.
    pub fn file(&self) -> Option<&str> {
        match self {
            Op::Open { path, .. }
            | Op::Read { path, .. }
            | Op::Write { path, .. }
            | Op::Delete { path }
            | Op::FinalRead { path } => Some(path),
            _ => None,
        }
    }
}

/// What came back from a call that succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ret", rename_all = "snake_case")]
pub enum Ret {
    Done,
    /// The lease the reply granted, counted by the master from when it received the call.
    Lease {
        lease_ns: Nanos,
    },
    /// `created`: this `Open` created the file.
    Opened {
        created: bool,
    },
    /// A file's contents (`None`: absent) and, when known, its `content_generation`.
    Read {
        value: Option<Value>,
        generation: Option<u64>,
    },
    /// The `content_generation` the write produced, when known.
    Written {
        generation: Option<u64>,
    },
    /// The lock as held: the node's instance and the lock's generation.
    Lock {
        instance: u64,
        generation: u64,
    },
    /// The resource's decision, and its place in the resource's own order of decisions.
    Fenced {
        accepted: bool,
        seq: u64,
    },
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Ok(Ret),
    /// Failed with a code from the error table, and the table's effect: whether it may
    /// have taken effect (docs/protocol.md, "Errors").
    Failed {
        #[serde(with = "code_name")]
        code: ErrorCode,
        #[serde(with = "effect_name")]
        effect: Effect,
    },
    /// Never completed (the run ended, or the client was killed, first): it may take
    /// effect at any time after its invocation, like Jepsen's `:info`.
    Incomplete,
}

impl Outcome {
    /// A failure with the effect the error table gives its code.
    pub fn failed(code: ErrorCode) -> Self {
        Outcome::Failed {
            code,
            effect: warren_proto::error::effect(code),
        }
    }

    /// Whether the operation may have taken effect without the caller knowing its result.
    pub fn is_indeterminate(&self) -> bool {
        match self {
            Outcome::Ok(_) => false,
            Outcome::Failed { effect, .. } => *effect != Effect::NotApplied,
            Outcome::Incomplete => true,
        }
    }
}

/// One client call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Unique within the history; the report names operations by it.
    pub id: u64,
    /// The client (process or simulated host) that made the call.
    pub client: String,
    /// The session it was made on (empty before `CreateSession` returned).
    pub session: String,
    #[serde(flatten)]
    pub op: Op,
    pub invoked: Nanos,
    /// `None` exactly when the outcome is [`Outcome::Incomplete`].
    pub completed: Option<Nanos>,
    pub outcome: Outcome,
}

impl Operation {
    /// The completion time, or `Nanos::MAX` for an operation that never completed.
    pub fn end(&self) -> Nanos {
        self.completed.unwrap_or(Nanos::MAX)
    }

    /// The successful result, if the call succeeded.
    pub fn ok(&self) -> Option<&Ret> {
        match &self.outcome {
            Outcome::Ok(r) => Some(r),
            _ => None,
        }
    }

    /// The error code, if the call failed.
    pub fn code(&self) -> Option<ErrorCode> {
        match &self.outcome {
            Outcome::Failed { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} [{} .. {}] client {} session {} {}",
            self.id,
            self.invoked,
            match self.completed {
                Some(c) => c.to_string(),
                None => "never".to_string(),
            },
            self.client,
            if self.session.is_empty() {
                "-"
            } else {
                &self.session
            },
            self.op.name()
        )?;
        match &self.op {
            Op::Open { path, create } => {
                write!(f, " {path}")?;
                if let Some(v) = create {
                    write!(f, " create={v}")?;
                }
            }
            Op::Read { path, source } => write!(f, " {path} from {source:?}")?,
            Op::Write {
                path,
                value,
                if_generation,
            } => {
                write!(f, " {path} := {value}")?;
                if let Some(g) = if_generation {
                    write!(f, " if generation {g}")?;
                }
            }
            Op::Delete { path } | Op::FinalRead { path } => write!(f, " {path}")?,
            Op::Acquire { lock, mode } => write!(f, " {lock} {mode:?}")?,
            Op::Release { lock } | Op::GetSequencer { lock } => write!(f, " {lock}")?,
            Op::FencedWrite {
                resource,
                lock,
                instance,
                generation,
                mode,
            } => write!(
                f,
                " at {resource} with {lock}:{}:{instance}:{generation}",
                if *mode == LockMode::Exclusive {
                    "x"
                } else {
                    "s"
                }
            )?,
            Op::CreateSession | Op::KeepAlive | Op::SessionExpired => {}
        }
        match &self.outcome {
            Outcome::Ok(r) => match r {
                Ret::Done => write!(f, " -> ok"),
                Ret::Lease { lease_ns } => write!(f, " -> lease {lease_ns} ns"),
                Ret::Opened { created } => write!(f, " -> opened (created: {created})"),
                Ret::Read { value, generation } => {
                    match value {
                        Some(v) => write!(f, " -> {v}")?,
                        None => write!(f, " -> absent")?,
                    }
                    match generation {
                        Some(g) => write!(f, " (generation {g})"),
                        None => Ok(()),
                    }
                }
                Ret::Written { generation } => match generation {
                    Some(g) => write!(f, " -> ok (generation {g})"),
                    None => write!(f, " -> ok"),
                },
                Ret::Lock {
                    instance,
                    generation,
                } => write!(f, " -> held (instance {instance}, generation {generation})"),
                Ret::Fenced { accepted, seq } => write!(
                    f,
                    " -> {} (decision {seq})",
                    if *accepted { "accepted" } else { "rejected" }
                ),
            },
            Outcome::Failed { code, effect } => write!(
                f,
                " -> {} ({})",
                code.as_str_name(),
                if *effect == Effect::NotApplied {
                    "not applied"
                } else {
                    "may have taken effect"
                }
            ),
            Outcome::Incomplete => write!(f, " -> never completed"),
        }
    }
}

/// A span during which `client` could reach a live master or proxy (from the fault
/// schedule: no partition between them, the process running and not paused).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reachability {
    pub client: String,
    pub from: Nanos,
    pub to: Nanos,
}

/// A file that existed, with these contents, before the first recorded operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialFile {
    pub path: String,
    pub value: Value,
    pub generation: u64,
}

/// One line of a history file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// The seed that replays the run: opaque to the checkers, copied into the report.
    Seed {
        seed: String,
    },
    Initial(InitialFile),
    Reachable(Reachability),
    Operation(Operation),
}

/// A recorded run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub seed: Option<String>,
    pub initial: Vec<InitialFile>,
    pub reachability: Vec<Reachability>,
    pub ops: Vec<Operation>,
}

/// A history that cannot be judged: the message names the line or operation and the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    #[error("history line {line}: {message}")]
    Parse { line: usize, message: String },
    #[error("operation #{id}: {message}")]
    Operation { id: u64, message: String },
    #[error("{0}")]
    Other(String),
}

impl History {
    /// Reads a history from JSON lines, one [`Record`] per line (blank lines skipped), and
    /// validates it ([`History::validate`]).
    pub fn from_json_lines(text: &str) -> Result<History, HistoryError> {
        let mut h = History::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = serde_json::from_str(line).map_err(|e| HistoryError::Parse {
                line: i + 1,
                message: format!(
                    "{e}; each line must be one JSON record with a \"record\" field \
                         (seed, initial, reachable or operation)"
                ),
            })?;
            h.push(record);
        }
        h.validate()?;
        Ok(h)
    }

    /// Writes the history as JSON lines (seed, initial files, reachability, operations).
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        let mut line = |r: &Record| {
            out.push_str(&serde_json::to_string(r).expect("a Record always serializes"));
            out.push('\n');
        };
        if let Some(seed) = &self.seed {
            line(&Record::Seed { seed: seed.clone() });
        }
        for f in &self.initial {
            line(&Record::Initial(f.clone()));
        }
        for r in &self.reachability {
            line(&Record::Reachable(r.clone()));
        }
        for o in &self.ops {
            line(&Record::Operation(o.clone()));
        }
        out
    }

    /// Adds one record.
    pub fn push(&mut self, record: Record) {
        match record {
            Record::Seed { seed } => self.seed = Some(seed),
            Record::Initial(f) => self.initial.push(f),
            Record::Reachable(r) => self.reachability.push(r),
            Record::Operation(o) => self.ops.push(o),
        }
    }

    /// Checks what every checker relies on: unique ids, completion never before invocation,
    /// `completed` absent exactly for incomplete operations, and each successful result of
    /// the kind its operation returns.
    pub fn validate(&self) -> Result<(), HistoryError> {
        let mut ids = BTreeSet::new();
        for o in &self.ops {
            let err = |message: String| HistoryError::Operation { id: o.id, message };
            if !ids.insert(o.id) {
                return Err(err(
                    "the id is used twice; give every operation its own id".into()
                ));
            }
            match (&o.outcome, o.completed) {
                (Outcome::Incomplete, Some(_)) => {
                    return Err(err(
                        "an incomplete operation has a completion time; drop `completed` or \
                         record its outcome"
                            .into(),
                    ))
                }
                (Outcome::Ok(_) | Outcome::Failed { .. }, None) => {
                    return Err(err(
                        "a completed operation has no `completed` time; record when it returned"
                            .into(),
                    ))
                }
                (_, Some(c)) if c < o.invoked => {
                    return Err(err(format!(
                        "completed at {c}, before its invocation at {}; both times must come \
                         from one monotonic clock",
                        o.invoked
                    )))
                }
                _ => {}
            }
            if let Outcome::Ok(ret) = &o.outcome {
                let fits = matches!(
                    (&o.op, ret),
                    (Op::CreateSession | Op::KeepAlive, Ret::Lease { .. })
                        | (
                            Op::SessionExpired | Op::Delete { .. } | Op::Release { .. },
                            Ret::Done
                        )
                        | (Op::Open { .. }, Ret::Opened { .. })
                        | (Op::Read { .. } | Op::FinalRead { .. }, Ret::Read { .. })
                        | (Op::Write { .. }, Ret::Written { .. })
                        | (
                            Op::Acquire { .. } | Op::GetSequencer { .. },
                            Ret::Lock { .. }
                        )
                        | (Op::FencedWrite { .. }, Ret::Fenced { .. })
                );
                if !fits {
                    return Err(err(format!(
                        "a successful {} cannot return {ret:?}; see the result each operation \
                         returns in warren_history::Op",
                        o.op.name()
                    )));
                }
            }
        }
        for r in &self.reachability {
            if r.to < r.from {
                return Err(HistoryError::Other(format!(
                    "reachability of client {} ends at {} before it starts at {}",
                    r.client, r.to, r.from
                )));
            }
        }
        Ok(())
    }

    /// The operations by id.
    pub fn by_id(&self) -> BTreeMap<u64, &Operation> {
        self.ops.iter().map(|o| (o.id, o)).collect()
    }

    /// The initial contents of `path`, if it existed before recording began.
    pub fn initial_of(&self, path: &str) -> Option<&InitialFile> {
        self.initial.iter().find(|f| f.path == path)
    }
}

/// `ErrorCode` by its proto name (`NOT_MASTER`), as written in history files.
mod code_name {
    use super::ErrorCode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(code: &ErrorCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(code.as_str_name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ErrorCode, D::Error> {
        let name = String::deserialize(d)?;
        ErrorCode::from_str_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown error code {name:?}; use a name from the error table, e.g. NOT_MASTER"
            ))
        })
    }
}

/// `Effect` as `not_applied` or `unknown`.
mod effect_name {
    use super::Effect;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(effect: &Effect, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match effect {
            Effect::NotApplied => "not_applied",
            _ => "unknown",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Effect, D::Error> {
        match String::deserialize(d)?.as_str() {
            "not_applied" => Ok(Effect::NotApplied),
            "unknown" => Ok(Effect::Unknown),
            other => Err(serde::de::Error::custom(format!(
                "unknown effect {other:?}; use \"not_applied\" or \"unknown\""
            ))),
        }
    }
}
