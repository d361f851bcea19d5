//! The lock checkers.
//!
//! - **Mutual exclusion, judged at a sequencer-fenced resource** ([`check_exclusion`]): a
//!   resource outside Warren accepts a write fenced by a sequencer `(lock, instance,
//!   generation)` iff it has accepted none with a higher `(instance, generation)`. Then the
//!   accepted writes of one exclusive hold are never interleaved with another's, and the only
//!   way two holders can both get writes in is for Warren to have given them the same
//!   generation: two sessions' accepted exclusive writes at one generation (or an exclusive
//!   and a shared one) is a violation. This holds whatever the holders believe, so it covers
//!   holders whose lease lapsed without their knowing.
//! - **Generations only increase** ([`check_generations`]), per lock, as observed in
//!   `Acquire` and `GetSequencer` results in real-time order.
//!
//! See docs/reliability.md, "History checkers".

use crate::model::{History, LockMode, Nanos, Op, Operation, Ret};
use crate::verdict::{CheckerResult, Verdict, Violation};
use std::collections::BTreeMap;

/// A sequencer's position: instance first (a re-created node has a higher one), then the
/// lock generation.
type Position = (u64, u64);

/// The `Acquire`/`GetSequencer` by `session` that returned `(lock, position)`, if recorded:
/// it shows where the holder got its sequencer.
fn grant<'h>(
    history: &'h History,
    session: &str,
    lock: &str,
    position: Position,
) -> Option<&'h Operation> {
    history.ops.iter().find(|o| {
        o.session == session
            && matches!(&o.op, Op::Acquire { lock: l, .. } | Op::GetSequencer { lock: l } if l == lock)
            && matches!(o.ok(), Some(Ret::Lock { instance, generation }) if (*instance, *generation) == position)
    })
}

/// Mutual exclusion at every fenced resource.
pub fn check_exclusion(history: &History) -> CheckerResult {
    struct Decision<'h> {
        seq: u64,
        accepted: bool,
        lock: &'h str,
        position: Position,
        mode: LockMode,
        op: &'h Operation,
    }
    let mut resources: BTreeMap<&str, Vec<Decision>> = BTreeMap::new();
    for o in &history.ops {
        if let (
            Op::FencedWrite {
                resource,
                lock,
                instance,
                generation,
                mode,
            },
            Some(Ret::Fenced { accepted, seq }),
        ) = (&o.op, o.ok())
        {
            resources.entry(resource).or_default().push(Decision {
                seq: *seq,
                accepted: *accepted,
                lock,
                position: (*instance, *generation),
                mode: *mode,
                op: o,
            });
        }
    }
    let mut violations = Vec::new();
    let mut accepted_total = 0;
    for (resource, decisions) in resources.iter_mut() {
        decisions.sort_by_key(|d| d.seq);
        let mut highest: Option<&Decision> = None;
        // (lock, position) → the first accepted write of each (session, mode) there.
        let mut holders: BTreeMap<(&str, Position), Vec<&Decision>> = BTreeMap::new();
        for d in decisions.iter() {
            let should_accept = highest.is_none_or(|h| d.position >= h.position);
            if d.accepted != should_accept {
                return CheckerResult {
                    checker: "locks".into(),
                    verdict: Verdict::Invalid(format!(
                        "resource {resource} broke its own rule at decision {} (#{}): it {} a \
                         write at {:?} when the highest accepted was {:?}; the harness's \
                         resource must accept a fenced write iff no higher (instance, \
                         generation) was accepted before",
                        d.seq,
                        d.op.id,
                        if d.accepted { "accepted" } else { "rejected" },
                        d.position,
                        highest.map(|h| h.position),
                    )),
                    judged: String::new(),
                    notes: Vec::new(),
                };
            }
            if !d.accepted {
                continue;
            }
            accepted_total += 1;
            if highest.is_none_or(|h| d.position > h.position) {
                highest = Some(d);
            }
            let seen = holders.entry((d.lock, d.position)).or_default();
            let conflict = seen.iter().find(|h| {
                (h.op.session != d.op.session || h.mode != d.mode)
                    && (h.mode == LockMode::Exclusive || d.mode == LockMode::Exclusive)
            });
            if let Some(first) = conflict {
                let mut ops = vec![first.op.clone(), d.op.clone()];
                for holder in [first, &d] {
                    ops.extend(grant(history, &holder.op.session, d.lock, d.position).cloned());
                }
                violations.push(Violation::new(
                    format!(
                        "lock {} held by two at once: resource {resource} accepted writes \
                         fenced by instance {} generation {} from session {} ({:?}) and from \
                         session {} ({:?}); one generation is one hold",
                        d.lock,
                        d.position.0,
                        d.position.1,
                        first.op.session,
                        first.mode,
                        d.op.session,
                        d.mode
                    ),
                    ops,
                ));
                continue;
            }
            if !seen
                .iter()
                .any(|h| h.op.session == d.op.session && h.mode == d.mode)
            {
                seen.push(d);
            }
        }
    }
    CheckerResult {
        checker: "locks".into(),
        verdict: Verdict::from_violations(violations),
        judged: format!(
            "{} fenced resources, {} accepted writes",
            resources.len(),
            accepted_total
        ),
        notes: Vec::new(),
    }
}

/// Lock generations only increase, per lock, in real-time order: a result observed after
/// another completed is never lower, and an `Acquire` after an exclusive one completed (or
/// an exclusive `Acquire` after any) is strictly higher, because the lock had to become
/// free and be taken again in between. One exception: the same session acquiring again
/// after a `Release` of unknown outcome that did not take effect still holds the lock, and
/// is answered with the generation it holds (chaos seed 11: a release failed `INTERNAL`
/// as the etcd election key changed, and the holder's next `Acquire` returned its
/// generation again). That is accepted only if no `Release` of the lock by that session
/// succeeded in between.
pub fn check_generations(history: &History) -> CheckerResult {
    #[derive(Clone, Copy)]
    struct Seen<'h> {
        position: Position,
        /// `Some(mode)` for an `Acquire`, `None` for a `GetSequencer`.
        acquired: Option<LockMode>,
        op: &'h Operation,
    }
    fn raise<'h>(slot: Option<Seen<'h>>, s: Seen<'h>) -> Option<Seen<'h>> {
        match slot {
            Some(cur) if cur.position >= s.position => Some(cur),
            _ => Some(s),
        }
    }
    let mut locks: BTreeMap<&str, Vec<Seen>> = BTreeMap::new();
    for o in &history.ops {
        let (lock, acquired) = match &o.op {
            Op::Acquire { lock, mode } => (lock, Some(*mode)),
            Op::GetSequencer { lock } => (lock, None),
            _ => continue,
        };
        if let Some(Ret::Lock {
            instance,
            generation,
        }) = o.ok()
        {
            locks.entry(lock).or_default().push(Seen {
                position: (*instance, *generation),
                acquired,
                op: o,
            });
        }
    }
    // Per (lock, session), the successful releases: (invoked, completed).
    let mut released: BTreeMap<(&str, &str), Vec<(Nanos, Nanos)>> = BTreeMap::new();
    for o in &history.ops {
        if let (Op::Release { lock }, Some(_)) = (&o.op, o.ok()) {
            released
                .entry((lock.as_str(), o.session.as_str()))
                .or_default()
                .push((o.invoked, o.end()));
        }
    }
    // Whether `y` is `x`'s holder acquiring again while it still held the lock: the same
    // session, the same position, and no release of it by that session known to have
    // taken effect between them.
    let still_held = |lock: &str, x: &Operation, y: &Operation| {
        x.session == y.session
            && !x.session.is_empty()
            && released
                .get(&(lock, x.session.as_str()))
                .is_none_or(|rs| !rs.iter().any(|&(a, b)| a >= x.invoked && b <= y.invoked))
    };
    let mut violations = Vec::new();
    let mut observed = 0;
    for (lock, seen) in &locks {
        observed += seen.len();
        let mut by_end = seen.clone();
        by_end.sort_by_key(|s| (s.op.end(), s.op.id));
        let mut by_start = seen.clone();
        by_start.sort_by_key(|s| (s.op.invoked, s.op.id));
        // The highest position completed so far: of any result, of any Acquire, of an
        // exclusive Acquire.
        let mut any: Option<Seen> = None;
        let mut acquire: Option<Seen> = None;
        let mut exclusive: Option<Seen> = None;
        let mut next = 0;
        for y in &by_start {
            while next < by_end.len() && by_end[next].op.end() < y.op.invoked {
                let x = by_end[next];
                any = raise(any, x);
                if x.acquired.is_some() {
                    acquire = raise(acquire, x);
                }
                if x.acquired == Some(LockMode::Exclusive) {
                    exclusive = raise(exclusive, x);
                }
                next += 1;
            }
            let (bound, strict) = match y.acquired {
                Some(LockMode::Exclusive) => (acquire, true),
                Some(LockMode::Shared) => (exclusive, true),
                None => (None, false),
            };
            let broken = match (bound, any) {
                (Some(b), _)
                    if strict
                        && y.position <= b.position
                        && !(y.position == b.position && still_held(lock, b.op, y.op)) =>
                {
                    Some((b, "higher than"))
                }
                (_, Some(a)) if y.position < a.position => Some((a, "at least")),
                _ => None,
            };
            if let Some((x, need)) = broken {
                violations.push(Violation::new(
                    format!(
                        "lock {lock}: generation went back: #{} ({}) returned instance {} \
                         generation {} though it was invoked after #{} ({}) had returned \
                         instance {} generation {}; it must be {need} that",
                        y.op.id,
                        y.op.op.name(),
                        y.position.0,
                        y.position.1,
                        x.op.id,
                        x.op.op.name(),
                        x.position.0,
                        x.position.1
                    ),
                    vec![x.op.clone(), y.op.clone()],
                ));
            }
        }
    }
    CheckerResult {
        checker: "lock_generations".into(),
        verdict: Verdict::from_violations(violations),
        judged: format!("{} locks, {} observed generations", locks.len(), observed),
        notes: Vec::new(),
    }
}
