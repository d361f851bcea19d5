//! The checkers' own oracle: a correct sequential model of Warren, driven by random
//! concurrent clients, that records the history its clients would see. The property tests
//! check that every such history is accepted and that single corruptions of it are caught;
//! the timing example measures the file checker on one; a simulation harness can use it to
//! test the checkers themselves before trusting their verdicts on a real run.
//!
//! Every operation takes effect atomically at a random instant strictly between its
//! invocation and its completion (its linearization point), against one model state: files
//! (a register with a content generation), exclusive locks with generations, and one
//! sequencer-fenced resource per lock. Some calls fail without effect, some have an unknown
//! outcome (applied or not, at random) and some never complete; some lock holders lose
//! their hold without being told and go on writing to the fenced resource with their old
//! sequencer. Whatever the interleaving, the history is linearizable per file, loses no
//! acknowledged write, and respects every lock and session property, so the checkers must
//! accept it.

use crate::model::{History, LockMode, Nanos, Op, Outcome, ReadSource, Ret, Value};
use crate::recorder::Recorder;
use crate::sessions::SessionBounds;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use warren_proto::error::ErrorCode;

pub const MS: Nanos = 1_000_000;
pub const S: Nanos = 1_000 * MS;
pub const LEASE: Nanos = 12 * S;

/// The shape of a generated run.
#[derive(Clone, Debug)]
pub struct Shape {
    pub clients: usize,
    pub files: usize,
    pub locks: usize,
    pub ops_per_client: usize,
    /// Per mil of mutations with an unknown outcome / never completed / refused.
    pub unknown_permil: u32,
    pub incomplete_permil: u32,
    pub refused_permil: u32,
}

impl Shape {
    pub fn small() -> Self {
        Shape {
            clients: 4,
            files: 2,
            locks: 1,
            ops_per_client: 30,
            unknown_permil: 60,
            incomplete_permil: 15,
            refused_permil: 50,
        }
    }
}

/// The session bounds the generated runs respect.
pub fn bounds() -> SessionBounds {
    SessionBounds {
        grace_ns: 45 * S,
        rho: 0.01,
        max_lease_ns: LEASE,
        tolerated_gap_ns: 11 * S,
        tolerated_gap_of: Default::default(),
    }
}

#[derive(Clone, Debug)]
struct FileState {
    value: Option<Value>,
    generation: u64,
}

#[derive(Clone, Debug, Default)]
struct LockState {
    holder: Option<usize>,
    generation: u64,
    /// The fenced resource: highest accepted generation, and its decision counter.
    highest: u64,
    seq: u64,
}

#[derive(Clone, Debug, Default)]
struct Client {
    /// (lock, generation) the client believes it holds.
    holds: Option<(usize, u64)>,
    /// The last content generation it saw per file (for compare-and-swaps).
    seen: BTreeMap<usize, u64>,
    done: usize,
    written: usize,
    stopped: bool,
}

/// What a pending operation will do at its linearization point.
#[derive(Clone, Debug)]
enum Plan {
    Apply,
    /// Failed without effect.
    Refuse(ErrorCode),
    /// Unknown outcome: applied or not; the client sees OUTCOME_UNKNOWN.
    Unknown {
        applied: bool,
    },
    /// Never completes: applied or not.
    Never {
        applied: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Client invokes its next operation.
    Invoke(usize),
    /// Operation id takes effect.
    Apply(u64),
    /// Operation id returns.
    Complete(u64),
}

struct Pending {
    client: usize,
    plan: Plan,
    completes: Nanos,
    outcome: Option<Outcome>,
}

/// The path of generated file `i`.
pub fn file(i: usize) -> String {
    format!("/ls/d/f{i}")
}

/// The path of generated lock `i`.
pub fn lock(i: usize) -> String {
    format!("/ls/d/lock{i}")
}

/// Generates a correct history of `shape` from `seed`.
pub fn generate(seed: u64, shape: &Shape) -> History {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rec = Recorder::new(format!("model-{seed}"));
    let mut files: Vec<FileState> = (0..shape.files)
        .map(|i| {
            let v = Value(format!("init-{i}"));
            rec.initial(&file(i), v.clone(), 0);
            FileState {
                value: Some(v),
                generation: 0,
            }
        })
        .collect();
    let mut locks: Vec<LockState> = vec![LockState::default(); shape.locks];
    let mut clients: Vec<Client> = vec![Client::default(); shape.clients];
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut queue: BinaryHeap<Reverse<(Nanos, Event)>> = BinaryHeap::new();
    let name = |c: usize| format!("c{c}");
    let session = |c: usize| format!("s{c}");
    let mut end = 0;

    for (c, client) in clients.iter_mut().enumerate() {
        let t = rng.gen_range(0..5 * MS);
        rec.call(
            &name(c),
            &session(c),
            Op::CreateSession,
            t,
            t + MS,
            Outcome::Ok(Ret::Lease { lease_ns: LEASE }),
        );
        client.done = 0;
        queue.push(Reverse((t + MS + 1, Event::Invoke(c))));
    }

    while let Some(Reverse((now, event))) = queue.pop() {
        end = end.max(now);
        match event {
            Event::Invoke(c) => {
                let cl = &mut clients[c];
                if cl.stopped || cl.done >= shape.ops_per_client {
                    continue;
                }
                cl.done += 1;
                let op = choose(&mut rng, cl, c, shape);
                let mutating = matches!(
                    op,
                    Op::Write { .. }
                        | Op::Delete { .. }
                        | Op::Open {
                            create: Some(_),
                            ..
                        }
                );
                let roll = rng.gen_range(0..1000);
                let plan = if mutating && roll < shape.unknown_permil {
                    Plan::Unknown {
                        applied: rng.gen_bool(0.5),
                    }
                } else if mutating && roll < shape.unknown_permil + shape.incomplete_permil {
                    Plan::Never {
                        applied: rng.gen_bool(0.5),
                    }
                } else if matches!(op, Op::Read { .. } | Op::Write { .. })
                    && roll > 1000 - shape.refused_permil
                {
                    Plan::Refuse(ErrorCode::NotMaster)
                } else {
                    Plan::Apply
                };
                let duration = rng.gen_range(MS..6 * MS);
                let at = rng.gen_range(now + 1..now + duration);
                let id = rec.invoke(&name(c), &session(c), op, now);
                queue.push(Reverse((at, Event::Apply(id))));
                pending.insert(
                    id,
                    Pending {
                        client: c,
                        plan,
                        completes: now + duration,
                        outcome: None,
                    },
                );
            }
            Event::Apply(id) => {
                let p = pending.get_mut(&id).expect("pending");
                let op = rec.history().ops[id as usize].op.clone();
                let c = p.client;
                let applied = match p.plan {
                    Plan::Apply => true,
                    Plan::Refuse(_) => false,
                    Plan::Unknown { applied } | Plan::Never { applied } => applied,
                };
                let result = if applied {
                    apply(&op, c, &mut files, &mut locks, &mut rng)
                } else {
                    Outcome::failed(ErrorCode::NotMaster)
                };
                p.outcome = Some(match &p.plan {
                    Plan::Apply => result,
                    Plan::Refuse(code) => Outcome::failed(*code),
                    Plan::Unknown { .. } => Outcome::failed(ErrorCode::OutcomeUnknown),
                    Plan::Never { .. } => Outcome::Incomplete,
                });
                if matches!(p.plan, Plan::Never { .. }) {
                    clients[c].stopped = true;
                } else {
                    queue.push(Reverse((p.completes, Event::Complete(id))));
                }
            }
            Event::Complete(id) => {
                let p = pending.remove(&id).expect("pending");
                let outcome = p.outcome.expect("applied before completion");
                let cl = &mut clients[p.client];
                // What the client learns.
                let o = &rec.history().ops[id as usize];
                match (&o.op, &outcome) {
                    (Op::Acquire { .. }, Outcome::Ok(Ret::Lock { generation, .. })) => {
                        let l = lock_index(&o.op);
                        cl.holds = Some((l, *generation));
                    }
                    (Op::Release { .. }, _) => cl.holds = None,
                    (Op::GetSequencer { .. }, Outcome::Failed { .. }) => cl.holds = None,
                    (
                        Op::Read { path, .. },
                        Outcome::Ok(Ret::Read {
                            generation: Some(g),
                            ..
                        }),
                    )
                    | (
                        Op::Write { path, .. },
                        Outcome::Ok(Ret::Written {
                            generation: Some(g),
                        }),
                    ) => {
                        cl.seen.insert(file_index(path), *g);
                    }
                    _ => {}
                }
                rec.complete(id, p.completes, outcome);
                let gap = rng.gen_range(0..3 * MS);
                queue.push(Reverse((p.completes + gap, Event::Invoke(p.client))));
            }
        }
    }
    // The final reads, once everything has settled, by a client of its own.
    let mut t = end + S;
    rec.call(
        "final",
        "sf",
        Op::CreateSession,
        t,
        t + MS,
        Outcome::Ok(Ret::Lease { lease_ns: LEASE }),
    );
    for (i, f) in files.iter().enumerate() {
        t += 2 * MS;
        rec.call(
            "final",
            "sf",
            Op::FinalRead { path: file(i) },
            t,
            t + MS,
            Outcome::Ok(Ret::Read {
                value: f.value.clone(),
                generation: f.value.as_ref().map(|_| f.generation),
            }),
        );
    }
    for c in 0..shape.clients {
        rec.reachable(&name(c), 0, t + 100 * S);
    }
    rec.finish()
}

fn file_index(path: &str) -> usize {
    path.trim_start_matches("/ls/d/f")
        .parse()
        .expect("a generated path")
}

fn lock_index(op: &Op) -> usize {
    let l = match op {
        Op::Acquire { lock, .. } | Op::Release { lock } | Op::GetSequencer { lock } => lock,
        Op::FencedWrite { lock, .. } => lock,
        _ => unreachable!("not a lock operation"),
    };
    l.trim_start_matches("/ls/d/lock")
        .parse()
        .expect("a generated lock")
}

/// The client's next call, from what it knows.
fn choose(rng: &mut StdRng, cl: &mut Client, c: usize, shape: &Shape) -> Op {
    if cl.done % 8 == 0 {
        return Op::KeepAlive;
    }
    if shape.locks > 0 {
        if let Some((l, generation)) = cl.holds {
            match rng.gen_range(0..10) {
                0..=3 => {
                    return Op::FencedWrite {
                        resource: format!("db{l}"),
                        lock: lock(l),
                        instance: 1,
                        generation,
                        mode: LockMode::Exclusive,
                    }
                }
                4 => return Op::Release { lock: lock(l) },
                5 => return Op::GetSequencer { lock: lock(l) },
                _ => {}
            }
        } else if rng.gen_range(0..8) == 0 {
            return Op::Acquire {
                lock: lock(rng.gen_range(0..shape.locks)),
                mode: LockMode::Exclusive,
            };
        }
    }
    let f = rng.gen_range(0..shape.files);
    let path = file(f);
    let mut fresh = || {
        cl.written += 1;
        Value(format!("c{c}-{}", cl.written))
    };
    match rng.gen_range(0..100) {
        0..=44 => Op::Read {
            path,
            source: match rng.gen_range(0..3) {
                0 => ReadSource::Cell,
                1 => ReadSource::ClientCache,
                _ => ReadSource::ProxyCache,
            },
        },
        45..=74 => Op::Write {
            path,
            value: fresh(),
            if_generation: None,
        },
        75..=93 => {
            let g = cl.seen.get(&f).copied().unwrap_or(0);
            Op::Write {
                path,
                value: fresh(),
                if_generation: Some(g),
            }
        }
        94..=96 => Op::Delete { path },
        _ => Op::Open {
            path,
            create: Some(fresh()),
        },
    }
}

/// Applies `op` to the model at its linearization point; returns what the client sees.
fn apply(
    op: &Op,
    c: usize,
    files: &mut [FileState],
    locks: &mut [LockState],
    rng: &mut StdRng,
) -> Outcome {
    let ok = Outcome::Ok;
    match op {
        Op::KeepAlive | Op::CreateSession => ok(Ret::Lease { lease_ns: LEASE }),
        Op::Read { path, .. } | Op::FinalRead { path } => {
            let f = &files[file_index(path)];
            match &f.value {
                // A handle's read of a deleted file.
                None => Outcome::failed(ErrorCode::HandleInvalid),
                Some(v) => ok(Ret::Read {
                    value: Some(v.clone()),
                    generation: Some(f.generation),
                }),
            }
        }
        Op::Write {
            path,
            value,
            if_generation,
        } => {
            let f = &mut files[file_index(path)];
            if f.value.is_none() {
                return Outcome::failed(ErrorCode::HandleInvalid);
            }
            if if_generation.is_some_and(|g| g != f.generation) {
                return Outcome::failed(ErrorCode::GenerationMismatch);
            }
            f.value = Some(value.clone());
            f.generation += 1;
            ok(Ret::Written {
                generation: Some(f.generation),
            })
        }
        Op::Delete { path } => {
            let f = &mut files[file_index(path)];
            if f.value.is_none() {
                return Outcome::failed(ErrorCode::HandleInvalid);
            }
            f.value = None;
            ok(Ret::Done)
        }
        Op::Open {
            path,
            create: Some(v),
        } => {
            let f = &mut files[file_index(path)];
            if f.value.is_some() {
                return ok(Ret::Opened { created: false });
            }
            *f = FileState {
                value: Some(v.clone()),
                generation: 0,
            };
            ok(Ret::Opened { created: true })
        }
        Op::Acquire { .. } => {
            let l = &mut locks[lock_index(op)];
            if l.holder.is_some() {
                return Outcome::failed(ErrorCode::LockHeld);
            }
            l.holder = Some(c);
            l.generation += 1;
            ok(Ret::Lock {
                instance: 1,
                generation: l.generation,
            })
        }
        Op::Release { .. } | Op::GetSequencer { .. } => {
            let l = &mut locks[lock_index(op)];
            if l.holder != Some(c) {
                // The hold lapsed without the client knowing.
                return Outcome::failed(ErrorCode::HandleInvalid);
            }
            if matches!(op, Op::Release { .. }) {
                l.holder = None;
                ok(Ret::Done)
            } else {
                ok(Ret::Lock {
                    instance: 1,
                    generation: l.generation,
                })
            }
        }
        Op::FencedWrite { generation, .. } => {
            let l = &mut locks[lock_index(op)];
            // Now and then the holder's lease lapses: the lock frees behind its back.
            if l.holder == Some(c) && rng.gen_range(0..6) == 0 {
                l.holder = None;
            }
            let accepted = *generation >= l.highest;
            if accepted {
                l.highest = *generation;
            }
            l.seq += 1;
            ok(Ret::Fenced {
                accepted,
                seq: l.seq,
            })
        }
        Op::SessionExpired | Op::Open { create: None, .. } => {
            unreachable!("the model does not generate {op:?}")
        }
    }
}
