//! The session checker (docs/design.md, 6. "Sessions and leases"):
//! - **none outlives its lease + grace**: no operation of a session succeeds when invoked
//!   after the last moment the session could have been alive. A `CreateSession` or
//!   `KeepAlive` that completed at `c` with lease `l` keeps the session alive at most until
//!   `c + (l + grace)·(1 + ρ)`: the master counts `l` from when it received the call, at
//!   most `c`, on a clock whose rate may differ by ρ; one of unknown outcome counts with the
//!   longest lease a master grants, and one that never completed keeps the session
//!   unjudgeable from its invocation on.
//! - **none expires while its client could reach a live master or proxy**: an expiry the
//!   client observed (the `Expired` event, or a `SESSION_EXPIRED` error) is a violation when,
//!   from the session's last successful KeepAlive to the expiry, the client was never cut
//!   off from every live master and proxy for as long as `tolerated_gap`, by the harness's
//!   [`Reachability`](crate::Reachability) records. A KeepAlive whose lease was over by
//!   the time its reply arrived renewed nothing, and does not count as the last one. One
//!   answered while the client was cut off (a proxy's, from its own lease at a cell it
//!   cannot reach) does not end that cut-off: it is counted from where it began.
//!
//! See docs/reliability.md, "History checkers".

use crate::model::{History, Nanos, Op, Operation, Outcome, Ret};
use crate::verdict::{CheckerResult, Verdict, Violation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use warren_proto::error::ErrorCode;

/// The deployment's session parameters the checker judges against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionBounds {
    /// The clients' grace period (45 s by default).
    pub grace_ns: Nanos,
    /// ρ, the bound on the relative drift of two clocks' rates (0.01 by default).
    pub rho: f64,
    /// The longest lease a master grants, for KeepAlives of unknown outcome.
    pub max_lease_ns: Nanos,
    /// The longest span during which a client cut off from every live master and proxy
    /// must keep its session: the design promises survival of a failover or a dead proxy
    /// within the grace period, but a partition from a live master longer than a lease
    /// expires the session legitimately. The harness sets it to what its fault schedule
    /// promises (docs/reliability.md, "History checkers").
    pub tolerated_gap_ns: Nanos,
    /// Per client, a tolerated cut-off other than `tolerated_gap_ns`: a client of a proxy
    /// that promises its cells a hold-back holds leases cut short by the proxy's cover
    /// there (docs/proxy.md, "A dead proxy"), so a shorter cut-off can end its session.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tolerated_gap_of: BTreeMap<String, Nanos>,
}

impl SessionBounds {
    /// The defaults of docs/design.md, 16: lease 12 s, grace 45 s, ρ = 1 %; a cut-off
    /// shorter than the lease less a second (the KeepAlive reply's margin) never expires a
    /// session.
    pub fn defaults() -> Self {
        SessionBounds {
            grace_ns: 45_000_000_000,
            rho: 0.01,
            max_lease_ns: 12_000_000_000,
            tolerated_gap_ns: 11_000_000_000,
            tolerated_gap_of: BTreeMap::new(),
        }
    }

    fn stretch(&self, ns: Nanos) -> Nanos {
        (ns as f64 * (1.0 + self.rho)).ceil() as Nanos
    }
}

/// A call that may have extended the session's lease, and the latest the session could
/// live because of it.
struct Extension<'h> {
    op: &'h Operation,
    alive_until: Nanos,
}

pub fn check(history: &History, bounds: &SessionBounds) -> CheckerResult {
    let mut sessions: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for o in &history.ops {
        if !o.session.is_empty() {
            sessions.entry(&o.session).or_default().push(o);
        }
    }
    let mut reach: BTreeMap<&str, Vec<(Nanos, Nanos)>> = BTreeMap::new();
    for r in &history.reachability {
        reach.entry(&r.client).or_default().push((r.from, r.to));
    }
    for spans in reach.values_mut() {
        spans.sort_unstable();
    }
    let mut violations = Vec::new();
    let (mut judged_ops, mut expiries) = (0usize, 0usize);
    for (session, ops) in &sessions {
        let mut extensions: Vec<Extension> = ops
            .iter()
            .filter(|o| matches!(o.op, Op::CreateSession | Op::KeepAlive))
            .filter_map(|o| {
                let alive_until = match (&o.outcome, o.completed) {
                    (Outcome::Ok(Ret::Lease { lease_ns }), Some(c)) => {
                        c.saturating_add(bounds.stretch(lease_ns + bounds.grace_ns))
                    }
                    (Outcome::Incomplete, _) => Nanos::MAX,
                    (outcome, Some(c)) if outcome.is_indeterminate() => {
                        c.saturating_add(bounds.stretch(bounds.max_lease_ns + bounds.grace_ns))
                    }
                    _ => return None,
                };
                Some(Extension { op: o, alive_until })
            })
            .collect();
        extensions.sort_by_key(|e| e.op.invoked);
        // 1. Nothing succeeds after the session's last possible moment.
        for x in ops.iter().filter(|o| o.ok().is_some()) {
            if matches!(x.op, Op::SessionExpired) {
                continue;
            }
            let latest = extensions
                .iter()
                .take_while(|e| e.op.invoked < x.end())
                .filter(|e| e.op.id != x.id)
                .max_by_key(|e| e.alive_until);
            let Some(latest) = latest else { continue };
            judged_ops += 1;
            if x.invoked > latest.alive_until {
                violations.push(Violation::new(
                    format!(
                        "session {session} outlived its lease + grace: #{} ({}) succeeded, \
                         invoked at {}, but the session could be alive only until {} (#{} \
                         completed at {}, plus its lease and the {} ns grace, stretched by ρ \
                         = {})",
                        x.id,
                        x.op.name(),
                        x.invoked,
                        latest.alive_until,
                        latest.op.id,
                        latest.op.end(),
                        bounds.grace_ns,
                        bounds.rho
                    ),
                    vec![latest.op.clone(), (*x).clone()],
                ));
                break; // one violation per session says it
            }
        }
        // 2. No expiry while the client could reach a live master or proxy.
        let expiry = ops
            .iter()
            .filter(|o| {
                matches!(o.op, Op::SessionExpired) && o.ok().is_some()
                    || o.code() == Some(ErrorCode::SessionExpired)
            })
            .min_by_key(|o| o.end());
        let Some(expiry) = expiry else { continue };
        expiries += 1;
        let observed = expiry.end();
        let last_alive = ops
            .iter()
            .filter(|o| {
                matches!(o.op, Op::CreateSession | Op::KeepAlive)
                    && renewed(o)
                    && o.end() <= observed
            })
            .max_by_key(|o| o.end());
        let Some(last_alive) = last_alive else {
            continue;
        };
        let spans = reach
            .get(expiry.client.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let from = cut_off_since(spans, last_alive.end());
        let gap = longest_gap(spans, from, observed);
        let tolerated = bounds
            .tolerated_gap_of
            .get(expiry.client.as_str())
            .copied()
            .unwrap_or(bounds.tolerated_gap_ns);
        if gap < tolerated {
            violations.push(Violation::new(
                format!(
                    "session {session} expired (observed by #{} at {}) though its client {} \
                     was never cut off from every live master and proxy for as long as {} ns \
                     since {from} (its last successful KeepAlive #{} at {}, or the start of \
                     the cut-off that KeepAlive was answered in) (longest cut-off: {gap} ns)",
                    expiry.id,
                    observed,
                    expiry.client,
                    tolerated,
                    last_alive.id,
                    last_alive.end()
                ),
                vec![(*last_alive).clone(), (*expiry).clone()],
            ));
        }
    }
    let mut notes = Vec::new();
    if expiries > 0 && history.reachability.is_empty() {
        notes.push(
            "the history records no reachability, so every client counts as cut off and \
             no expiry can be judged unjustified"
                .to_string(),
        );
    }
    CheckerResult {
        checker: "sessions".into(),
        verdict: Verdict::from_violations(violations),
        judged: format!(
            "{} sessions, {} successful operations against their lease + grace, {} expiries",
            sessions.len(),
            judged_ops,
            expiries
        ),
        notes,
    }
}

/// Whether a successful `CreateSession` or `KeepAlive` renewed the client's lease: the
/// client counts the lease a reply brings from when it sent the call, so a reply whose
/// lease was over when it arrived (held by a server, or slow on the way) left the client
/// in jeopardy, and its session's fate is decided by the renewal before it.
fn renewed(o: &Operation) -> bool {
    match o.ok() {
        Some(Ret::Lease { lease_ns }) => o.invoked.saturating_add(*lease_ns) > o.end(),
        Some(_) => true,
        None => false,
    }
}

/// Where a window that opens at `at` starts being judged: `at` if the client could reach
/// a live master or proxy then, otherwise where the cut-off `at` falls in began (the end
/// of the last span before it, or 0). A renewal during a cut-off comes from a proxy that
/// cannot reach its cell, and it grants no more than the proxy's own lease there, which
/// the proxy last renewed before the cut-off began: it does not start the cut-off anew.
fn cut_off_since(spans: &[(Nanos, Nanos)], at: Nanos) -> Nanos {
    if spans.iter().any(|&(a, b)| a <= at && at <= b) {
        return at;
    }
    spans
        .iter()
        .map(|&(_, b)| b)
        .filter(|&b| b < at)
        .max()
        .unwrap_or(0)
}

/// The longest span within `[from, to]` covered by none of `spans` (sorted by start).
fn longest_gap(spans: &[(Nanos, Nanos)], from: Nanos, to: Nanos) -> Nanos {
    let mut covered_until = from;
    let mut longest = 0;
    for &(a, b) in spans {
        if b < covered_until {
            continue;
        }
        if a >= to {
            break;
        }
        if a > covered_until {
            longest = longest.max(a - covered_until);
        }
        covered_until = covered_until.max(b);
    }
    if covered_until < to {
        longest = longest.max(to - covered_until);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::{cut_off_since, longest_gap};

    #[test]
    fn a_window_opening_in_a_cut_off_starts_where_the_cut_off_began() {
        let spans = [(0, 10), (20, 30), (40, 50)];
        assert_eq!(cut_off_since(&spans, 25), 25);
        assert_eq!(cut_off_since(&spans, 30), 30);
        assert_eq!(cut_off_since(&spans, 35), 30);
        assert_eq!(cut_off_since(&spans, 60), 50);
        assert_eq!(cut_off_since(&[(20, 30)], 5), 0);
        assert_eq!(cut_off_since(&[], 5), 0);
    }

    #[test]
    fn gaps_are_measured_inside_the_window() {
        assert_eq!(longest_gap(&[], 10, 30), 20);
        assert_eq!(longest_gap(&[(0, 100)], 10, 30), 0);
        assert_eq!(longest_gap(&[(0, 12), (15, 16), (25, 40)], 10, 30), 9);
        assert_eq!(longest_gap(&[(0, 12)], 10, 30), 18);
        assert_eq!(longest_gap(&[(20, 40)], 10, 30), 10);
    }
}
