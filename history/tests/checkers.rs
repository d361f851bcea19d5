//! Each checker on hand-built histories: valid ones it must accept (concurrent overlapping
//! operations, unknown outcomes) and planted bugs it must catch (a lock granted twice, a
//! generation going back, a stale read, an acknowledged write dropped, a stale cached read,
//! a session served after lease + grace, one expired while reachable); the JSON-lines form
//! and the report.

use warren_history::{
    check_all, files, locks, sessions, writes, History, LockMode, Op, Outcome, ReadSource,
    Recorder, Ret, SessionBounds, Value, Verdict,
};
use warren_proto::error::ErrorCode;

const S: u64 = 1_000_000_000;

fn v(s: &str) -> Value {
    Value::from(s)
}

fn create(path: &str, value: &str) -> Op {
    Op::Open {
        path: path.into(),
        create: Some(v(value)),
    }
}

fn write(path: &str, value: &str) -> Op {
    Op::Write {
        path: path.into(),
        value: v(value),
        if_generation: None,
    }
}

fn cas(path: &str, value: &str, generation: u64) -> Op {
    Op::Write {
        path: path.into(),
        value: v(value),
        if_generation: Some(generation),
    }
}

fn read(path: &str) -> Op {
    Op::Read {
        path: path.into(),
        source: ReadSource::Cell,
    }
}

fn cached(path: &str, source: ReadSource) -> Op {
    Op::Read {
        path: path.into(),
        source,
    }
}

fn final_read(path: &str) -> Op {
    Op::FinalRead { path: path.into() }
}

fn created() -> Outcome {
    Outcome::Ok(Ret::Opened { created: true })
}

fn written(generation: u64) -> Outcome {
    Outcome::Ok(Ret::Written {
        generation: Some(generation),
    })
}

fn saw(value: &str) -> Outcome {
    Outcome::Ok(Ret::Read {
        value: Some(v(value)),
        generation: None,
    })
}

fn saw_at(value: &str, generation: u64) -> Outcome {
    Outcome::Ok(Ret::Read {
        value: Some(v(value)),
        generation: Some(generation),
    })
}

fn absent() -> Outcome {
    Outcome::Ok(Ret::Read {
        value: None,
        generation: None,
    })
}

fn done() -> Outcome {
    Outcome::Ok(Ret::Done)
}

fn unknown() -> Outcome {
    Outcome::failed(ErrorCode::OutcomeUnknown)
}

fn violations(verdict: &Verdict) -> usize {
    match verdict {
        Verdict::Violated(v) => v.len(),
        Verdict::Pass => 0,
        Verdict::Invalid(why) => panic!("expected a judgement, got Invalid: {why}"),
    }
}

/// A file created with "a" at generation 0 by client c0.
fn with_file(path: &str) -> Recorder {
    let mut r = Recorder::new("seed-1");
    r.call("c0", "s0", create(path, "a"), 0, 5, created());
    r
}

// ---------------------------------------------------------------- files

#[test]
fn files_accepts_sequential_and_concurrent_histories() {
    let mut r = with_file("/ls/f");
    r.call("c1", "s1", write("/ls/f", "b"), 10, 20, written(1));
    r.call("c2", "s2", read("/ls/f"), 25, 30, saw_at("b", 1));
    // Two overlapping writes and reads overlapping both: c then b is a valid order.
    r.call("c1", "s1", write("/ls/f", "c"), 40, 80, written(2));
    r.call("c2", "s2", write("/ls/f", "d"), 45, 60, written(3));
    r.call("c3", "s3", read("/ls/f"), 50, 90, saw("d"));
    r.call("c3", "s3", read("/ls/f"), 91, 95, saw("d"));
    r.call("c4", "s4", cas("/ls/f", "e", 3), 100, 110, written(4));
    r.call(
        "c5",
        "s5",
        cas("/ls/f", "x", 3),
        105,
        120,
        Outcome::failed(ErrorCode::GenerationMismatch),
    );
    r.call("c5", "s5", read("/ls/f"), 121, 122, saw_at("e", 4));
    let result = files::check(&r.finish());
    assert_eq!(result.verdict, Verdict::Pass, "{result:?}");
}

#[test]
fn files_treats_unknown_outcomes_as_maybe_applied_but_not_as_anything_goes() {
    // An unknown write may show up...
    let mut r = with_file("/ls/f");
    r.call("c1", "s1", write("/ls/f", "b"), 10, 20, unknown());
    r.call("c2", "s2", read("/ls/f"), 30, 40, saw("b"));
    assert_eq!(files::check(r.history()).verdict, Verdict::Pass);
    // ... or not, or later than its failure (it is in flight for ever) ...
    let mut r = with_file("/ls/f");
    r.call("c1", "s1", write("/ls/f", "b"), 10, 20, unknown());
    r.call("c2", "s2", read("/ls/f"), 30, 40, saw("a"));
    r.call("c2", "s2", read("/ls/f"), 50, 60, saw("b"));
    let id = r.invoke("c3", "s3", write("/ls/f", "c"), 70); // never completes
    r.call("c2", "s2", read("/ls/f"), 80, 90, saw("b"));
    r.call("c2", "s2", read("/ls/f"), 95, 99, saw("c"));
    assert!(r.history().ops[id as usize].completed.is_none());
    assert_eq!(files::check(r.history()).verdict, Verdict::Pass);
    // ... but once seen it cannot be unseen.
    r.call("c2", "s2", read("/ls/f"), 100, 110, saw("a"));
    let result = files::check(&r.finish());
    assert_eq!(violations(&result.verdict), 1, "{result:?}");
}

#[test]
fn files_catches_a_stale_read_with_a_small_slice() {
    let mut r = with_file("/ls/f");
    // A long correct prefix, then the bug.
    let mut t = 10;
    for i in 0..200 {
        r.call(
            "c1",
            "s1",
            write("/ls/f", &format!("v{i}")),
            t,
            t + 5,
            written(i + 1),
        );
        r.call(
            "c2",
            "s2",
            read("/ls/f"),
            t + 6,
            t + 8,
            saw(&format!("v{i}")),
        );
        t += 10;
    }
    let w = r.call("c1", "s1", write("/ls/f", "new"), t, t + 5, written(201));
    let stale = r.call("c2", "s2", read("/ls/f"), t + 10, t + 12, saw("v199"));
    let result = files::check(&r.finish());
    let Verdict::Violated(v) = &result.verdict else {
        panic!("expected a violation: {result:?}")
    };
    assert_eq!(v.len(), 1);
    let ids = v[0].op_ids();
    assert!(ids.contains(&w) && ids.contains(&stale), "{}", v[0]);
    assert!(ids.len() <= 3, "slice too big: {}", v[0]);
    assert!(v[0].explanation.contains("/ls/f"), "{}", v[0].explanation);
}

#[test]
fn files_checks_generations_and_compare_and_swap() {
    // A CAS that succeeded against a generation the file no longer had.
    let mut r = with_file("/ls/f");
    r.call("c1", "s1", write("/ls/f", "b"), 10, 20, written(1));
    r.call("c2", "s2", cas("/ls/f", "c", 0), 30, 40, written(1));
    assert_eq!(violations(&files::check(&r.finish()).verdict), 1);
    // A read reporting a generation that does not match its contents.
    let mut r = with_file("/ls/f");
    r.call("c1", "s1", write("/ls/f", "b"), 10, 20, written(1));
    r.call("c2", "s2", read("/ls/f"), 30, 40, saw_at("b", 0));
    assert_eq!(violations(&files::check(&r.finish()).verdict), 1);
    // A mismatch when the generation did match.
    let mut r = with_file("/ls/f");
    r.call(
        "c2",
        "s2",
        cas("/ls/f", "c", 0),
        30,
        40,
        Outcome::failed(ErrorCode::GenerationMismatch),
    );
    assert_eq!(violations(&files::check(&r.finish()).verdict), 1);
}

#[test]
fn files_reports_a_search_out_of_steps_instead_of_hanging() {
    // Twelve writes of unknown outcome, then a read no subset of them explains.
    let mut r = with_file("/ls/f");
    for i in 0..12 {
        r.call(
            "c1",
            "s1",
            write("/ls/f", &format!("u{i}")),
            10 + i,
            20 + i,
            unknown(),
        );
    }
    r.call("c2", "s2", read("/ls/f"), 100, 110, saw("never-written"));
    r.call("c0", "s0", create("/ls/fine", "x"), 0, 5, created());
    let h = r.finish();
    match files::check_with_budget(&h, 1_000).verdict {
        Verdict::Invalid(why) => {
            assert!(why.contains("gave up after 1000 steps on 1 files"), "{why}");
            assert!(why.contains("/ls/f") && !why.contains("/ls/fine"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(violations(&files::check(&h).verdict), 1);
}

#[test]
fn files_judges_each_file_on_its_own_and_leaves_cached_reads_to_the_cache_checker() {
    let mut r = with_file("/ls/f");
    r.call("c0", "s0", create("/ls/g", "x"), 0, 5, created());
    r.call("c1", "s1", write("/ls/f", "b"), 10, 20, written(1));
    r.call("c1", "s1", write("/ls/g", "y"), 10, 20, written(1));
    r.call("c2", "s2", read("/ls/g"), 30, 40, saw("x")); // stale, on /ls/g only
    r.call(
        "c2",
        "s2",
        cached("/ls/f", ReadSource::ClientCache),
        30,
        40,
        saw("a"),
    );
    let h = r.finish();
    let result = files::check(&h);
    let Verdict::Violated(v) = &result.verdict else {
        panic!("{result:?}")
    };
    assert_eq!(v.len(), 1);
    assert!(v[0].explanation.contains("/ls/g"));
    assert!(v[0].ops.iter().all(|o| o.op.file() == Some("/ls/g")));
    // The stale cached read of /ls/f is the cache checker's.
    assert_eq!(violations(&writes::check_caches(&h).verdict), 2);
}

#[test]
fn files_knows_creates_deletes_and_initial_files() {
    let mut r = Recorder::new("s");
    r.initial("/ls/i", v("init"), 7);
    r.call("c1", "s1", read("/ls/i"), 0, 1, saw_at("init", 7));
    r.call("c1", "s1", write("/ls/i", "j"), 2, 3, written(8));
    r.call(
        "c1",
        "s1",
        Op::Delete {
            path: "/ls/i".into(),
        },
        4,
        5,
        done(),
    );
    r.call(
        "c2",
        "s2",
        Op::Open {
            path: "/ls/i".into(),
            create: None,
        },
        6,
        7,
        Outcome::failed(ErrorCode::NotFound),
    );
    r.call("c2", "s2", create("/ls/i", "k"), 8, 9, created());
    r.call("c2", "s2", read("/ls/i"), 10, 11, saw_at("k", 0));
    assert_eq!(files::check(r.history()).verdict, Verdict::Pass);
    // A second create that says it created the file while it existed.
    r.call("c3", "s3", create("/ls/i", "z"), 12, 13, created());
    assert_eq!(violations(&files::check(&r.finish()).verdict), 1);
}

// ---------------------------------------------------------------- locks

fn acquire(lock: &str, mode: LockMode) -> Op {
    Op::Acquire {
        lock: lock.into(),
        mode,
    }
}

fn held(generation: u64) -> Outcome {
    Outcome::Ok(Ret::Lock {
        instance: 1,
        generation,
    })
}

fn fenced(generation: u64, mode: LockMode) -> Op {
    Op::FencedWrite {
        resource: "db".into(),
        lock: "/ls/lock".into(),
        instance: 1,
        generation,
        mode,
    }
}

fn decided(accepted: bool, seq: u64) -> Outcome {
    Outcome::Ok(Ret::Fenced { accepted, seq })
}

#[test]
fn locks_accept_fenced_handoffs_and_a_lapsed_holder_being_rejected() {
    let x = LockMode::Exclusive;
    let mut r = Recorder::new("s");
    r.call("a", "sa", acquire("/ls/lock", x), 0, 10, held(1));
    r.call("a", "sa", fenced(1, x), 11, 12, decided(true, 0));
    r.call("a", "sa", fenced(1, x), 13, 14, decided(true, 1));
    // a's lease lapses without a knowing; b takes the lock at generation 2.
    r.call("b", "sb", acquire("/ls/lock", x), 5, 100, held(2));
    // a's write, in flight across the handoff, lands before b's: still fenced correctly.
    r.call("a", "sa", fenced(1, x), 90, 110, decided(true, 2));
    r.call("b", "sb", fenced(2, x), 101, 102, decided(true, 3));
    r.call("a", "sa", fenced(1, x), 103, 104, decided(false, 4));
    // Shared holders share a generation.
    r.call(
        "c",
        "sc",
        acquire("/ls/lock", LockMode::Shared),
        200,
        210,
        held(3),
    );
    r.call(
        "d",
        "sd",
        acquire("/ls/lock", LockMode::Shared),
        205,
        215,
        held(3),
    );
    r.call(
        "c",
        "sc",
        fenced(3, LockMode::Shared),
        220,
        221,
        decided(true, 5),
    );
    r.call(
        "d",
        "sd",
        fenced(3, LockMode::Shared),
        222,
        223,
        decided(true, 6),
    );
    let h = r.finish();
    assert_eq!(locks::check_exclusion(&h).verdict, Verdict::Pass);
    assert_eq!(locks::check_generations(&h).verdict, Verdict::Pass);
}

#[test]
fn locks_catch_a_lock_granted_twice() {
    let x = LockMode::Exclusive;
    let mut r = Recorder::new("s");
    let ga = r.call("a", "sa", acquire("/ls/lock", x), 0, 10, held(1));
    let wa = r.call("a", "sa", fenced(1, x), 11, 12, decided(true, 0));
    // The planted bug: b is granted the same hold.
    let gb = r.call("b", "sb", acquire("/ls/lock", x), 5, 15, held(1));
    let wb = r.call("b", "sb", fenced(1, x), 16, 17, decided(true, 1));
    let h = r.finish();
    let result = locks::check_exclusion(&h);
    let Verdict::Violated(v) = &result.verdict else {
        panic!("{result:?}")
    };
    assert_eq!(v.len(), 1);
    let mut ids = v[0].op_ids();
    ids.sort();
    assert_eq!(ids, vec![ga, wa, gb, wb], "{}", v[0]);
    assert!(v[0].explanation.contains("held by two at once"));
}

#[test]
fn locks_reject_a_resource_that_breaks_its_own_rule() {
    let x = LockMode::Exclusive;
    let mut r = Recorder::new("s");
    r.call("a", "sa", fenced(2, x), 0, 1, decided(true, 0));
    r.call("b", "sb", fenced(1, x), 2, 3, decided(true, 1));
    match locks::check_exclusion(&r.finish()).verdict {
        Verdict::Invalid(why) => assert!(why.contains("broke its own rule"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lock_generations_only_increase() {
    let x = LockMode::Exclusive;
    let seq = |lock: &str| Op::GetSequencer { lock: lock.into() };
    // Concurrent acquires may return in any order; a sequencer repeats its hold's generation.
    let mut r = Recorder::new("s");
    r.call("a", "sa", acquire("/ls/lock", x), 0, 50, held(5));
    r.call("b", "sb", acquire("/ls/lock", x), 10, 40, held(4));
    r.call("a", "sa", seq("/ls/lock"), 60, 61, held(5));
    r.call("c", "sc", acquire("/ls/lock", x), 70, 80, held(6));
    assert_eq!(locks::check_generations(r.history()).verdict, Verdict::Pass);
    // The planted bug: a generation going back after a higher one was observed.
    let back = r.call("d", "sd", acquire("/ls/lock", x), 90, 95, held(5));
    let result = locks::check_generations(&r.finish());
    let Verdict::Violated(v) = &result.verdict else {
        panic!("{result:?}")
    };
    assert_eq!(v.len(), 1);
    assert!(v[0].op_ids().contains(&back));
    assert!(v[0].explanation.contains("went back"));
    // An exclusive acquire after another completed must be strictly higher.
    let mut r = Recorder::new("s");
    r.call("a", "sa", acquire("/ls/lock", x), 0, 10, held(3));
    r.call("b", "sb", acquire("/ls/lock", x), 20, 30, held(3));
    assert_eq!(
        violations(&locks::check_generations(&r.finish()).verdict),
        1
    );
}

/// Chaos seed 11 (CI, 7 December): a `Release` failed `INTERNAL` (effect unknown) as the
/// etcd election key changed, did not take effect, and the holder's next `Acquire` on the
/// same session was answered with the generation it still held. Accepted; the same
/// answer after a release that succeeded, or to another session, is not.
#[test]
fn lock_generations_accept_a_holder_that_still_holds_after_a_release_of_unknown_outcome() {
    let x = LockMode::Exclusive;
    let release = || Op::Release {
        lock: "/ls/lock".into(),
    };
    let history = |release_outcome: Outcome, second_session: &str| {
        let mut r = Recorder::new("s");
        r.call("a", "sa", acquire("/ls/lock", x), 0, 10, held(416));
        r.call("a", "sa", release(), 20, 30, release_outcome);
        r.call(
            "a",
            second_session,
            acquire("/ls/lock", x),
            40,
            50,
            held(416),
        );
        r.finish()
    };
    let unknown = Outcome::failed(ErrorCode::Internal);
    assert_eq!(
        locks::check_generations(&history(unknown.clone(), "sa")).verdict,
        Verdict::Pass
    );
    assert_eq!(
        violations(&locks::check_generations(&history(done(), "sa")).verdict),
        1
    );
    assert_eq!(
        violations(&locks::check_generations(&history(unknown, "sb")).verdict),
        1
    );
}

// ---------------------------------------------------------------- lost writes

#[test]
fn lost_writes_accepts_the_last_or_a_concurrent_write_and_unknown_ones() {
    let mut r = with_file("/ls/f");
    r.call("c1", "s1", write("/ls/f", "b"), 10, 20, written(1));
    r.call("c1", "s1", write("/ls/f", "c"), 30, 50, written(2));
    r.call("c2", "s2", write("/ls/f", "d"), 35, 45, written(3)); // concurrent with c
    r.call("c3", "s3", write("/ls/f", "e"), 60, 70, unknown()); // may have landed
    r.call("h", "sh", final_read("/ls/f"), 100, 110, saw("c"));
    // A second file whose unknown write did land.
    r.call("c0", "s0", create("/ls/g", "x"), 0, 5, created());
    r.call("c3", "s3", write("/ls/g", "y"), 60, 70, unknown());
    r.call("h", "sh", final_read("/ls/g"), 100, 110, saw("y"));
    // A third deleted, absent at the end.
    r.call("c0", "s0", create("/ls/h", "x"), 0, 5, created());
    r.call(
        "c0",
        "s0",
        Op::Delete {
            path: "/ls/h".into(),
        },
        10,
        20,
        done(),
    );
    r.call("h", "sh", final_read("/ls/h"), 100, 110, absent());
    // A fourth never read at the end: noted, not judged.
    r.call("c0", "s0", create("/ls/unread", "x"), 0, 5, created());
    let result = writes::check_lost_writes(&r.finish());
    assert_eq!(result.verdict, Verdict::Pass, "{result:?}");
    assert!(result.notes[0].contains("/ls/unread"), "{:?}", result.notes);
}

#[test]
fn lost_writes_catches_a_dropped_acknowledged_write() {
    let mut r = with_file("/ls/f");
    r.call("c1", "s1", write("/ls/f", "b"), 10, 20, written(1));
    let lost = r.call("c2", "s2", write("/ls/f", "c"), 30, 40, written(2));
    let fin = r.call("h", "sh", final_read("/ls/f"), 100, 110, saw("b"));
    // And a delete undone.
    r.call("c0", "s0", create("/ls/g", "x"), 0, 5, created());
    r.call(
        "c0",
        "s0",
        Op::Delete {
            path: "/ls/g".into(),
        },
        10,
        20,
        done(),
    );
    r.call("h", "sh", final_read("/ls/g"), 100, 110, saw("x"));
    let result = writes::check_lost_writes(&r.finish());
    let Verdict::Violated(v) = &result.verdict else {
        panic!("{result:?}")
    };
    assert_eq!(v.len(), 2);
    let ids = v[0].op_ids();
    assert!(ids.contains(&lost) && ids.contains(&fin), "{}", v[0]);
}

// ---------------------------------------------------------------- caches

#[test]
fn caches_accept_reads_concurrent_with_the_write() {
    let mut r = with_file("/ls/f");
    r.call("c1", "s1", write("/ls/f", "b"), 10, 50, written(1));
    // Invoked before the write was acknowledged: the old value is fine.
    r.call(
        "c2",
        "s2",
        cached("/ls/f", ReadSource::ClientCache),
        40,
        41,
        saw("a"),
    );
    r.call(
        "c3",
        "s3",
        cached("/ls/f", ReadSource::ProxyCache),
        49,
        60,
        saw("a"),
    );
    // After it, the new one.
    r.call(
        "c2",
        "s2",
        cached("/ls/f", ReadSource::ClientCache),
        51,
        52,
        saw("b"),
    );
    // A value written by an operation of unknown outcome may show up at any time.
    r.call("c4", "s4", write("/ls/f", "c"), 60, 70, unknown());
    r.call(
        "c2",
        "s2",
        cached("/ls/f", ReadSource::ClientCache),
        80,
        81,
        saw("c"),
    );
    r.call("c4", "s4", write("/ls/f", "d"), 90, 95, written(2));
    r.call(
        "c2",
        "s2",
        cached("/ls/f", ReadSource::ClientCache),
        96,
        97,
        saw("d"),
    );
    let result = writes::check_caches(&r.finish());
    assert_eq!(result.verdict, Verdict::Pass, "{result:?}");
    assert!(result.judged.starts_with("5 reads"), "{}", result.judged);
}

#[test]
fn caches_catch_a_stale_cached_read() {
    let mut r = with_file("/ls/f");
    let w = r.call("c1", "s1", write("/ls/f", "b"), 10, 20, written(1));
    // The planted bug: a proxy cache not invalidated before the write was acknowledged.
    let stale = r.call(
        "c2",
        "s2",
        cached("/ls/f", ReadSource::ProxyCache),
        30,
        31,
        saw("a"),
    );
    // And a read of something nobody wrote.
    r.call(
        "c2",
        "s2",
        cached("/ls/f", ReadSource::ClientCache),
        32,
        33,
        saw("zzz"),
    );
    let result = writes::check_caches(&r.finish());
    let Verdict::Violated(v) = &result.verdict else {
        panic!("{result:?}")
    };
    assert_eq!(v.len(), 2);
    let ids = v[0].op_ids();
    assert!(ids.contains(&w) && ids.contains(&stale), "{}", v[0]);
    assert!(
        v[0].explanation.contains("ProxyCache"),
        "{}",
        v[0].explanation
    );
    assert!(v[1].explanation.contains("no operation wrote"), "{}", v[1]);
}

// ---------------------------------------------------------------- sessions

fn lease(ns: u64) -> Outcome {
    Outcome::Ok(Ret::Lease { lease_ns: ns })
}

fn bounds() -> SessionBounds {
    SessionBounds {
        grace_ns: 45 * S,
        rho: 0.01,
        max_lease_ns: 12 * S,
        tolerated_gap_ns: 11 * S,
        tolerated_gap_of: Default::default(),
    }
}

#[test]
fn sessions_accept_ops_within_lease_and_grace() {
    let mut r = Recorder::new("s");
    r.call("c", "s1", Op::CreateSession, 0, S, lease(12 * S));
    // Within 1 s + (12 s + 45 s) * 1.01.
    r.call("c", "s1", read("/ls/f"), 58 * S, 58 * S + 1, absent());
    // A KeepAlive that never completed keeps the session unjudgeable after it.
    r.invoke("c", "s2", Op::KeepAlive, 0);
    r.call("c", "s2", read("/ls/f"), 500 * S, 500 * S + 1, absent());
    let result = sessions::check(&r.finish(), &bounds());
    assert_eq!(result.verdict, Verdict::Pass, "{result:?}");
}

#[test]
fn sessions_catch_a_session_served_after_lease_and_grace() {
    let mut r = Recorder::new("s");
    // The session id exists only once CreateSession returns.
    let k = r.invoke("c", "", Op::CreateSession, 0);
    r.complete(k, S, lease(12 * S));
    r.set_session(k, "s1");
    r.call("c", "s1", Op::KeepAlive, 2 * S, 3 * S, lease(12 * S));
    let late = r.call("c", "s1", read("/ls/f"), 62 * S, 62 * S + 1, absent());
    let result = sessions::check(&r.finish(), &bounds());
    let Verdict::Violated(v) = &result.verdict else {
        panic!("{result:?}")
    };
    assert_eq!(v.len(), 1);
    let ids = v[0].op_ids();
    assert!(ids.contains(&late) && !ids.contains(&k), "{}", v[0]);
}

#[test]
fn sessions_catch_an_expiry_while_the_client_could_reach_a_master() {
    let expired_at =
        |r: &mut Recorder, session: &str, t| r.call("c", session, Op::SessionExpired, t, t, done());
    let mut r = Recorder::new("s");
    r.call("c", "s1", Op::CreateSession, 0, S, lease(12 * S));
    r.reachable("c", 0, 20 * S);
    r.reachable("c", 25 * S, 100 * S); // a 5 s cut-off: tolerated
    let e = expired_at(&mut r, "s1", 40 * S);
    let result = sessions::check(r.history(), &bounds());
    let Verdict::Violated(v) = &result.verdict else {
        panic!("{result:?}")
    };
    assert!(v[0].op_ids().contains(&e));
    // Cut off for 30 s: the master could expire it.
    let mut r = Recorder::new("s");
    r.call("c", "s1", Op::CreateSession, 0, S, lease(12 * S));
    r.reachable("c", 0, 5 * S);
    r.reachable("c", 35 * S, 100 * S);
    r.call(
        "c",
        "s1",
        read("/ls/f"),
        40 * S,
        41 * S,
        Outcome::failed(ErrorCode::SessionExpired),
    );
    assert_eq!(
        sessions::check(r.history(), &bounds()).verdict,
        Verdict::Pass
    );
}

/// A KeepAlive reply whose lease was over when it arrived renewed nothing: the window in
/// which the client must have been cut off starts at the renewal before it.
#[test]
fn sessions_judge_an_expiry_from_the_last_keepalive_that_renewed_the_lease() {
    let mut r = Recorder::new("s");
    r.call("c", "s1", Op::CreateSession, 0, S, lease(12 * S));
    r.reachable("c", 0, 2 * S);
    r.reachable("c", 20 * S, 100 * S); // cut off for 18 s
                                       // Sent at 2 s, answered at 19 s with a lease that ended at 14 s.
    r.call("c", "s1", Op::KeepAlive, 2 * S, 19 * S, lease(12 * S));
    r.call("c", "s1", Op::SessionExpired, 30 * S, 30 * S, done());
    assert_eq!(
        sessions::check(r.history(), &bounds()).verdict,
        Verdict::Pass
    );
    // The same reply arriving in time, while the client can reach its server, renews the
    // lease: the 6 s cut-off after it does not justify the expiry.
    let mut r = Recorder::new("s");
    r.call("c", "s1", Op::CreateSession, 0, S, lease(12 * S));
    r.reachable("c", 0, 2 * S);
    r.reachable("c", 12 * S, 14 * S);
    r.reachable("c", 20 * S, 100 * S);
    r.call("c", "s1", Op::KeepAlive, 2 * S, 13 * S, lease(12 * S));
    r.call("c", "s1", Op::SessionExpired, 30 * S, 30 * S, done());
    assert!(matches!(
        sessions::check(r.history(), &bounds()).verdict,
        Verdict::Violated(_)
    ));
}

/// Simulation seeds 1974, 414, 1605 and others: a proxy whose cell was down renewed its
/// client's lease from its own lease at the cell, which it had last renewed before the
/// cell went down; the client's session ended 2.8 s after that renewal, 8 s into the
/// outage. The renewal does not restart the cut-off.
#[test]
fn sessions_count_a_cut_off_from_its_start_through_a_renewal_answered_during_it() {
    let history = |reachable_at_renewal: bool| {
        let mut r = Recorder::new("s");
        r.call("c", "s1", Op::CreateSession, 0, S, lease(12 * S));
        r.reachable("c", 0, 2 * S);
        if reachable_at_renewal {
            r.reachable("c", 12 * S, 14 * S);
        }
        r.reachable("c", 20 * S, 100 * S);
        // Sent at 12 s, answered at 13 s with a lease that runs to 24 s.
        r.call("c", "s1", Op::KeepAlive, 12 * S, 13 * S, lease(12 * S));
        r.call("c", "s1", Op::SessionExpired, 19 * S, 19 * S, done());
        r
    };
    // Cut off from 2 s to 20 s: the expiry at 19 s, 17 s into it, is justified, though
    // only 6 s passed since the renewal.
    assert_eq!(
        sessions::check(history(false).history(), &bounds()).verdict,
        Verdict::Pass
    );
    // Reachable when the renewal came: the cut-off starts at 14 s, 5 s before the expiry.
    assert!(matches!(
        sessions::check(history(true).history(), &bounds()).verdict,
        Verdict::Violated(_)
    ));
}

// ---------------------------------------------------------------- the file and the report

#[test]
fn histories_round_trip_through_json_lines_and_bad_lines_are_named() {
    let mut r = with_file("/ls/f");
    r.reachable("c1", 0, 100);
    r.initial("/ls/i", v("x"), 3);
    r.call("c1", "s1", Op::KeepAlive, 1, 2, lease(12 * S));
    r.call("c1", "s1", write("/ls/f", "b"), 10, 20, unknown());
    r.call(
        "c1",
        "s1",
        cas("/ls/f", "c", 4),
        21,
        22,
        Outcome::failed(ErrorCode::NotMaster),
    );
    r.call("c1", "s1", acquire("/l", LockMode::Shared), 23, 24, held(2));
    r.call(
        "c1",
        "s1",
        fenced(2, LockMode::Shared),
        25,
        26,
        decided(true, 0),
    );
    r.call(
        "c1",
        "s1",
        cached("/ls/f", ReadSource::ProxyCache),
        27,
        28,
        saw_at("b", 1),
    );
    r.invoke(
        "c1",
        "s1",
        Op::Delete {
            path: "/ls/f".into(),
        },
        30,
    );
    let h = r.finish();
    let text = h.to_json_lines();
    assert_eq!(History::from_json_lines(&text).unwrap(), h);
    assert!(
        text.contains("\"code\":\"OUTCOME_UNKNOWN\",\"effect\":\"unknown\""),
        "{text}"
    );

    let bad = format!("{text}{{\"record\":\"operation\",\"id\":1}}\n");
    let err = History::from_json_lines(&bad).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("history line {}", text.lines().count() + 1)),
        "{err}"
    );
    let bad_code = text.replace("OUTCOME_UNKNOWN", "OOPS");
    let err = History::from_json_lines(&bad_code).unwrap_err().to_string();
    assert!(err.contains("unknown error code \"OOPS\""), "{err}");
    let mut twice = h.clone();
    twice.ops[1].id = 0;
    assert!(twice
        .validate()
        .unwrap_err()
        .to_string()
        .contains("used twice"));
    let mut backwards = h;
    backwards.ops[1].completed = Some(0);
    assert!(backwards
        .validate()
        .unwrap_err()
        .to_string()
        .contains("before its invocation"));
}

#[test]
fn the_report_counts_outcomes_and_shows_violations_with_the_seed() {
    let mut r = with_file("/ls/f");
    r.call("c1", "s1", write("/ls/f", "b"), 10, 20, written(1));
    r.call("c1", "s1", write("/ls/f", "c"), 21, 22, unknown());
    r.call(
        "c1",
        "s1",
        write("/ls/f", "d"),
        23,
        24,
        Outcome::failed(ErrorCode::NotMaster),
    );
    r.call("c2", "s2", read("/ls/f"), 30, 40, saw("a")); // stale
    let report = check_all(&r.finish(), &SessionBounds::defaults());
    assert!(!report.passed());
    let w = &report.by_kind["write"];
    assert_eq!((w.ok, w.unknown, w.failed, w.incomplete), (1, 1, 1, 0));
    assert_eq!(report.failures["NOT_MASTER"], 1);
    assert_eq!(violations(&report.checker("files").unwrap().verdict), 1);
    assert_eq!(violations(&report.checker("caches").unwrap().verdict), 1);
    assert!(report.checker("locks").unwrap().verdict.is_pass());
    let text = report.to_text();
    assert!(text.contains("seed seed-1"), "{text}");
    assert!(text.contains("files             VIOLATED (1)"), "{text}");
    assert!(text.contains("replay with seed seed-1"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["seed"], "seed-1");
    assert_eq!(json["checkers"][2]["verdict"]["verdict"], "violated");
}
