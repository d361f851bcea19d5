//! Property tests: every history of the reference model (a correct Warren with random
//! concurrent clients, unknown outcomes, incomplete calls and lapsed lock holders) passes
//! every checker, and one random corruption of it, chosen where it is observable, is caught
//! by the checker that owns the property.

use proptest::prelude::*;
use warren_history::reference::{self, Shape, MS, S};
use warren_history::{
    check_all, files, locks, sessions, writes, History, LockMode, Nanos, Op, Operation, Outcome,
    ReadSource, Ret, Value,
};

fn shape() -> impl Strategy<Value = Shape> {
    shape_with_locks(0..3)
}

fn shape_with_locks(locks: std::ops::Range<usize>) -> impl Strategy<Value = Shape> {
    (2usize..6, 1usize..4, locks, 10usize..40).prop_map(|(clients, files, locks, ops)| Shape {
        clients,
        files,
        locks,
        ops_per_client: ops,
        ..Shape::small()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The file checker's memoized search and stateright's exhaustive tester agree on small
    /// histories, correct or with one read's result replaced by any value of the file.
    #[test]
    fn the_search_agrees_with_stateright(
        seed in any::<u64>(),
        clients in 2usize..5,
        ops in 3usize..9,
        corrupt in any::<Option<(prop::sample::Index, prop::sample::Index)>>(),
    ) {
        let shape = Shape { clients, files: 1, locks: 0, ops_per_client: ops, ..Shape::small() };
        let mut h = reference::generate(seed, &shape);
        if let Some((which, value)) = corrupt {
            let reads: Vec<usize> = (0..h.ops.len())
                .filter(|&i| matches!(h.ops[i].op, Op::Read { source: ReadSource::Cell, .. }) && h.ops[i].ok().is_some())
                .collect();
            let mut values: Vec<Value> = h.ops.iter().filter_map(|o| match &o.op {
                Op::Write { value, .. } => Some(value.clone()),
                _ => None,
            }).collect();
            values.push(Value::from("init-0"));
            if !reads.is_empty() {
                let r = reads[which.index(reads.len())];
                set_read(&mut h, r, values[value.index(values.len())].clone());
            }
        }
        let ours = files::check_per_file(&h);
        let theirs = files::check_exhaustive(&h);
        prop_assert_eq!(ours.len(), theirs.len());
        for (path, answer) in &ours {
            prop_assert_eq!(*answer, Some(theirs[path]), "{}", path);
        }
    }

    #[test]
    fn every_correct_history_passes(seed in any::<u64>(), shape in shape()) {
        let h = reference::generate(seed, &shape);
        let report = check_all(&h, &reference::bounds());
        prop_assert!(report.passed(), "{}", report.to_text());
        // And it survives its file form.
        let back = History::from_json_lines(&h.to_json_lines()).unwrap();
        prop_assert_eq!(back, h);
    }

    #[test]
    fn a_stale_read_is_caught(seed in any::<u64>(), shape in shape(), pick in any::<prop::sample::Index>()) {
        let mut h = reference::generate(seed, &shape);
        let Some((read, stale)) = stale_candidate(&h, &pick, |op| matches!(op, Op::Read { .. })) else {
            return Ok(());
        };
        set_read(&mut h, read, stale);
        let cell = matches!(h.ops[read].op, Op::Read { source: ReadSource::Cell, .. });
        let caught = writes::check_caches(&h).verdict;
        prop_assert!(caught.violations().iter().any(|v| v.op_ids().contains(&h.ops[read].id)), "{:?}", caught);
        if cell {
            // The file checker's slice is small and holds the read that broke it.
            let verdict = files::check(&h).verdict;
            let v = verdict.violations();
            prop_assert_eq!(v.len(), 1, "{:?}", verdict);
            prop_assert!(v[0].op_ids().contains(&h.ops[read].id), "{}", v[0]);
            prop_assert!(v[0].ops.len() < 20, "{}", v[0]);
        }
    }

    #[test]
    fn a_dropped_write_is_caught(seed in any::<u64>(), shape in shape(), pick in any::<prop::sample::Index>()) {
        let mut h = reference::generate(seed, &shape);
        let Some((read, stale)) = stale_candidate(&h, &pick, |op| matches!(op, Op::FinalRead { .. })) else {
            return Ok(());
        };
        set_read(&mut h, read, stale);
        prop_assert!(!writes::check_lost_writes(&h).verdict.is_pass());
        prop_assert!(!files::check(&h).verdict.is_pass());
    }

    #[test]
    fn a_lock_granted_twice_is_caught(seed in any::<u64>(), shape in shape_with_locks(1..3), pick in any::<prop::sample::Index>()) {
        let mut h = reference::generate(seed, &shape);
        let accepted: Vec<usize> = (0..h.ops.len())
            .filter(|&i| matches!(h.ops[i].ok(), Some(Ret::Fenced { accepted: true, .. })))
            .collect();
        if accepted.is_empty() {
            return Ok(());
        }
        let a = accepted[pick.index(accepted.len())];
        grant_twice(&mut h, a);
        prop_assert!(!locks::check_exclusion(&h).verdict.is_pass());
    }

    #[test]
    fn a_generation_going_back_is_caught(seed in any::<u64>(), shape in shape_with_locks(1..3), pick in any::<prop::sample::Index>()) {
        let mut h = reference::generate(seed, &shape);
        // An acquire invoked after another acquire of the same lock completed: by another
        // session, or by the same one after it released the lock successfully. (The same
        // session after a release of unknown outcome may still hold the lock, and is then
        // answered with the same generation: the checker accepts that.)
        let acquires: Vec<usize> = (0..h.ops.len())
            .filter(|&i| matches!(h.ops[i].op, Op::Acquire { .. }) && h.ops[i].ok().is_some())
            .collect();
        let released_between = |x: usize, y: usize| {
            let Op::Acquire { lock, .. } = &h.ops[x].op else { return false };
            h.ops.iter().any(|o| {
                matches!(&o.op, Op::Release { lock: l } if l == lock)
                    && o.ok().is_some()
                    && o.session == h.ops[x].session
                    && o.invoked >= h.ops[x].invoked
                    && o.end() <= h.ops[y].invoked
            })
        };
        let pairs: Vec<(usize, usize)> = acquires.iter().flat_map(|&x| acquires.iter().map(move |&y| (x, y)))
            .filter(|&(x, y)| h.ops[x].op == h.ops[y].op && h.ops[x].end() < h.ops[y].invoked)
            .filter(|&(x, y)| h.ops[x].session != h.ops[y].session || released_between(x, y))
            .collect();
        if pairs.is_empty() {
            return Ok(());
        }
        let (x, y) = pairs[pick.index(pairs.len())];
        let back = h.ops[x].outcome.clone();
        h.ops[y].outcome = back;
        prop_assert!(!locks::check_generations(&h).verdict.is_pass());
    }

    #[test]
    fn a_session_served_late_or_expired_while_reachable_is_caught(
        seed in any::<u64>(), shape in shape(), pick in any::<prop::sample::Index>(), late in any::<bool>()
    ) {
        let mut h = reference::generate(seed, &shape);
        let served: Vec<usize> = (0..h.ops.len())
            .filter(|&i| h.ops[i].client != "final" && h.ops[i].ok().is_some()
                && !matches!(h.ops[i].op, Op::CreateSession | Op::KeepAlive))
            .collect();
        if served.is_empty() {
            return Ok(());
        }
        let i = served[pick.index(served.len())];
        let last = h.ops.iter().map(Operation::end).filter(|&e| e != Nanos::MAX).max().unwrap();
        if late {
            // Served long after its session's last KeepAlive could keep it alive.
            h.ops[i].invoked = last + 60 * S;
            h.ops[i].completed = Some(last + 60 * S + MS);
        } else {
            // Expired while its client could reach the master throughout.
            let o = h.ops[i].clone();
            h.ops.push(Operation {
                id: h.ops.len() as u64,
                op: Op::SessionExpired,
                invoked: o.end(),
                completed: Some(o.end()),
                outcome: Outcome::Ok(Ret::Done),
                ..o
            });
        }
        prop_assert!(!sessions::check(&h, &reference::bounds()).verdict.is_pass());
    }
}

/// A successful read (chosen by `keep`) and a value that is certainly stale for it: written
/// by an acknowledged write that completed before another acknowledged change of the same
/// file was invoked, itself acknowledged before the read was invoked.
fn stale_candidate(
    h: &History,
    pick: &prop::sample::Index,
    keep: impl Fn(&Op) -> bool,
) -> Option<(usize, Value)> {
    let mut candidates = Vec::new();
    for (r, read) in h.ops.iter().enumerate() {
        if !keep(&read.op) || read.ok().is_none() {
            continue;
        }
        let path = read.op.file().expect("a read names its file");
        let changes: Vec<&Operation> = h
            .ops
            .iter()
            .filter(|o| o.op.file() == Some(path) && o.ok().is_some())
            .filter(|o| {
                matches!(o.op, Op::Write { .. } | Op::Delete { .. })
                    || matches!(o.ok(), Some(Ret::Opened { created: true }))
            })
            .collect();
        for old in &changes {
            let Op::Write { value, .. } = &old.op else {
                continue;
            };
            // Only values no other operation might have written (the model never repeats).
            let later = changes
                .iter()
                .any(|w| w.invoked > old.end() && w.end() < read.invoked);
            if later {
                candidates.push((r, value.clone()));
            }
        }
    }
    if candidates.is_empty() {
        None
    } else {
        Some(candidates.swap_remove(pick.index(candidates.len())))
    }
}

fn set_read(h: &mut History, read: usize, value: Value) {
    h.ops[read].outcome = Outcome::Ok(Ret::Read {
        value: Some(value),
        generation: None,
    });
}

/// Inserts the bug: another client is granted the hold behind accepted fenced write `a`,
/// and its own fenced write at that generation is accepted right after `a`'s.
fn grant_twice(h: &mut History, a: usize) {
    let o = h.ops[a].clone();
    let (
        Op::FencedWrite {
            lock,
            generation,
            resource,
            instance,
            ..
        },
        Some(Ret::Fenced { seq, .. }),
    ) = (&o.op, o.ok())
    else {
        unreachable!("chosen among accepted fenced writes")
    };
    // Later decisions of that resource move one place down.
    for x in h.ops.iter_mut() {
        if let (Op::FencedWrite { resource: r, .. }, Outcome::Ok(Ret::Fenced { seq: s, .. })) =
            (&x.op, &mut x.outcome)
        {
            if r == resource && *s > *seq {
                *s += 1;
            }
        }
    }
    let next = h.ops.len() as u64;
    let intruder = |id, op, outcome| Operation {
        id,
        client: "intruder".into(),
        session: "s-intruder".into(),
        op,
        invoked: o.invoked,
        completed: o.completed,
        outcome,
    };
    h.ops.push(intruder(
        next,
        Op::Acquire {
            lock: lock.clone(),
            mode: LockMode::Exclusive,
        },
        Outcome::Ok(Ret::Lock {
            instance: *instance,
            generation: *generation,
        }),
    ));
    h.ops.push(intruder(
        next + 1,
        o.op.clone(),
        Outcome::Ok(Ret::Fenced {
            accepted: true,
            seq: seq + 1,
        }),
    ));
}
