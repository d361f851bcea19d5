//! What saved `warren loadtest run` reports prove about each capacity figure: a clean run
//! gives a floor, an overloaded one a ceiling, and why a run proves nothing goes to the notes.
//!
//! # Capacity figures: measured or assumed
//!
//! Each figure starts from a built-in default (the `DEFAULT_*` constants, measured with
//! `warren loadtest` on a 2-core machine with the load generator on the same cores,
//! docs/performance.md; replace them with your own measurements via `--from`). A
//! `warren loadtest run` report only proves what the run achieved, averaged over the units
//! of the tier it ran against:
//! - a **clean** run (no lost acknowledged writes, no injected faults or reshard, no jeopardy, expiry or
//!   session moved, error ratio ≤ [`Criteria::max_error_ratio`], p99 ≤
//!   [`Criteria::p99_slo_ms`], no dropped arrivals) gives a **floor**: one unit sustains at
//!   least this much. The sessions figure also needs the run (ramp + window) to last one
//!   client lease, so that every session had to renew.
//! - a run past its SLO for an operation kind (p99, errors, dropped arrivals) or whose
//!   sessions saw jeopardy gives a **ceiling** for the figures of that kind: at that load per
//!   unit the tier was already overloaded, so capacity at the SLO is at most this.
//!
//! The figure used is `max(floor, min(default, ceiling))`: the best floor over all runs wins
//! over a smaller default, a ceiling lowers a larger default, and a floor below the default
//! is kept for information only (a light run does not show that a unit can do less). Each
//! resource of the plan also says how many units the floors alone would justify
//! (`needed_on_proven`, `proxies_on_proven`, `cells_on_proven`).
//!
//! Per-cell figures need the number of cells the run spread its load over: direct runs give
//! it (`sessions_per_client` − 1); runs through proxies count the `--metrics` endpoints whose
//! role is `cell` (so every data cell must be scraped; a scraped meta cell only makes the
//! figure more conservative). Uncached reads per cell are only measured by direct runs.

use super::capacity::{Bound, Capacity, Figure, Resource, Source, Tier};
use super::render::{count_of, num};
use super::{fraction, non_negative, positive, PlanError};
use crate::metrics::EndpointReport;
use crate::report::{OpReport, Report};
use serde::Serialize;
use std::collections::BTreeMap;

/// When a run counts as proof.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Criteria {
    /// An operation kind whose p99 is above this (ms) was overloaded. Default 100 ms.
    pub p99_slo_ms: f64,
    /// An operation kind (or the session calls) with more failures than this fraction of
    /// its calls was overloaded. Default 0.001 (0.1%).
    pub max_error_ratio: f64,
    /// A run's sessions figure counts only if ramp + window lasted at least this long (s):
    /// one client lease, so every session had to renew. Default 12 s.
    pub min_session_window_s: f64,
}

impl Default for Criteria {
    fn default() -> Criteria {
        Criteria {
            p99_slo_ms: 100.0,
            max_error_ratio: 0.001,
            min_session_window_s: 12.0,
        }
    }
}

impl Criteria {
    fn validate(&self) -> Result<(), PlanError> {
        positive("the p99 SLO (ms)", self.p99_slo_ms)?;
        fraction("the maximum error ratio", self.max_error_ratio)?;
        non_negative("the minimum session window (s)", self.min_session_window_s)
    }
}

impl Capacity {
    /// Capacity from `(name, report)` pairs with the default [`Criteria`] (p99 ≤ 100 ms,
    /// errors ≤ 0.1%).
    pub fn from_reports(reports: &[(String, Report)]) -> Capacity {
        Capacity::from_reports_with(reports, &Criteria::default())
            .expect("the default criteria are valid")
    }

    /// Capacity from `(name, report)` pairs: see the module documentation for the rules.
    pub fn from_reports_with(
        reports: &[(String, Report)],
        criteria: &Criteria,
    ) -> Result<Capacity, PlanError> {
        criteria.validate()?;
        let mut notes = Vec::new();
        let mut floors: BTreeMap<Resource, Bound> = BTreeMap::new();
        let mut ceilings: BTreeMap<Resource, Bound> = BTreeMap::new();
        for (file, run) in reports {
            for e in evaluate(file, run, criteria, &mut notes) {
                let (source, bounds, tighter): (_, _, fn(f64, f64) -> bool) = match e.overloaded {
                    // The best floor wins: the most any clean run sustained.
                    None => (
                        Source::Run {
                            file: file.clone(),
                            run: e.run,
                        },
                        &mut floors,
                        |new, old| new > old,
                    ),
                    // The lowest ceiling wins: the least load that overloaded a run.
                    Some(why) => (
                        Source::Overloaded {
                            file: file.clone(),
                            run: e.run,
                            why,
                        },
                        &mut ceilings,
                        |new, old| new < old,
                    ),
                };
                if bounds
                    .get(&e.resource)
                    .is_none_or(|b| tighter(e.value, b.value))
                {
                    bounds.insert(
                        e.resource,
                        Bound {
                            value: e.value,
                            source,
                        },
                    );
                }
            }
        }
        let mut cap = Capacity::builtin();
        for r in Resource::ALL {
            let floor = floors.remove(&r);
            let ceiling = ceilings.remove(&r);
            if let (Some(l), Some(u)) = (&floor, &ceiling) {
                if l.value > u.value {
                    notes.push(format!(
                        "{}: a clean run achieved {} {} per {} ({}) but another was overloaded at \
                         {} ({}); different machines or noise? Using the clean run's figure",
                        r.label(),
                        num(l.value),
                        r.unit(),
                        r.tier(),
                        l.source,
                        num(u.value),
                        u.source
                    ));
                }
            }
            *cap.figure_mut(r) = Figure::resolve(r, floor, ceiling);
        }
        cap.notes = notes;
        Ok(cap)
    }

    /// Capacity from `(file name, JSON text)` pairs, the files `warren loadtest run --json`
    /// wrote (the caller reads them). Fields this version does not know are ignored; missing
    /// ones take their defaults (see [`crate::report`]).
    pub fn from_json(
        files: &[(String, String)],
        criteria: &Criteria,
    ) -> Result<Capacity, PlanError> {
        let mut reports = Vec::with_capacity(files.len());
        for (name, text) in files {
            let report: Report = serde_json::from_str(text).map_err(|e| PlanError::BadReport {
                file: name.clone(),
                message: e.to_string(),
            })?;
            reports.push((name.clone(), report));
        }
        Capacity::from_reports_with(&reports, criteria)
    }
}

/// One figure one run shows.
struct Evidence {
    resource: Resource,
    /// Per unit (per proxy, per cell).
    value: f64,
    /// What the run did, in words.
    run: String,
    /// `Some(why)`: the run was overloaded at this load (a ceiling); `None`: a floor.
    overloaded: Option<String>,
}

/// What one run shows about each figure; why it shows nothing goes to `notes`.
fn evaluate(file: &str, run: &Report, c: &Criteria, notes: &mut Vec<String>) -> Vec<Evidence> {
    let mut out = Vec::new();
    let secs = run.duration_s;
    if !(secs.is_finite() && secs > 0.0) {
        notes.push(format!(
            "{file}: not used: no measured window (duration_s = {secs})"
        ));
        return out;
    }
    if !run.faults.is_empty() {
        notes.push(format!(
            "{file}: not used: {} fault(s) were injected during it (a failover test, not a \
             capacity test)",
            run.faults.len()
        ));
        return out;
    }
    if let Some(r) = &run.reshard {
        notes.push(format!(
            "{file}: not used: a reshard ({}) ran during it (a reshard test, not a capacity \
             test)",
            r.spec
        ));
        return out;
    }
    if run.acked_lost > 0 {
        notes.push(format!(
            "{file}: not used: {} acknowledged write(s) were lost — a correctness failure, not \
             a capacity limit",
            run.acked_lost
        ));
        return out;
    }
    let zero = OpReport::default();
    let op = |k: &str| run.ops.get(k).unwrap_or(&zero);
    let (read, write, lock) = (op("read"), op("write"), op("lock"));
    let s = &run.sessions;

    // Trouble with the sessions: the proxies (or the cells behind them) failed their first
    // duty, so none of the run's rates is proof.
    let op_errors: u64 = run.ops.values().map(|o| o.errors).sum();
    let session_errors = run.errors.saturating_sub(op_errors);
    let session_calls = s.created + s.keepalives + session_errors;
    let mut trouble = Vec::new();
    if s.jeopardy > 0 {
        trouble.push(format!("{} jeopardy episode(s)", s.jeopardy));
    }
    if s.expired > 0 {
        trouble.push(format!("{} session(s) expired", s.expired));
    }
    if s.moved > 0 {
        trouble.push(format!("{} session(s) moved to another proxy", s.moved));
    }
    if session_calls > 0 && session_errors as f64 > c.max_error_ratio * session_calls as f64 {
        trouble.push(format!(
            "{session_errors} failed session call(s) of {session_calls}"
        ));
    }
    let trouble = (!trouble.is_empty()).then(|| trouble.join(", "));

    // Is an operation kind past its SLO?
    let kind_trouble = |name: &str, o: &OpReport| -> Option<String> {
        let calls = o.count + o.errors;
        let mut why = Vec::new();
        if o.count > 0 && o.latency.p99_ms > c.p99_slo_ms {
            why.push(format!(
                "{name} p99 {:.1} ms > SLO {} ms",
                o.latency.p99_ms, c.p99_slo_ms
            ));
        }
        if calls > 0 && o.errors as f64 > c.max_error_ratio * calls as f64 {
            why.push(format!("{} of {calls} {name}s failed", o.errors));
        }
        if run.dropped > 0 {
            why.push(format!(
                "{} arrivals dropped with 20,000 operations in flight",
                run.dropped
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    };
    let read_trouble = kind_trouble("read", read);
    let write_trouble = match (kind_trouble("write", write), kind_trouble("lock", lock)) {
        (Some(w), Some(l)) if w == l => Some(w),
        (Some(w), Some(l)) => Some(format!("{w}; {l}")),
        (w, l) => w.or(l),
    };
    let read_rate = read.count as f64 / secs;
    let write_ops = write.count + lock.count + lock.busy;
    let write_rate = write_ops as f64 / secs;

    // A rate: a ceiling if its kind was overloaded, else a floor if the sessions were fine.
    let rate = |out: &mut Vec<Evidence>,
                notes: &mut Vec<String>,
                resource: Resource,
                total: f64,
                units: usize,
                what: &str,
                kind: &Option<String>| {
        if total <= 0.0 || units == 0 {
            return;
        }
        let run_text = format!(
            "{} {what}/s ÷ {} over a {:.0} s window",
            num(total),
            count_of(units as u64, resource.tier()),
            secs
        );
        let value = total / units as f64;
        match (kind, &trouble) {
            (Some(why), _) => out.push(Evidence {
                resource,
                value,
                run: run_text,
                overloaded: Some(why.clone()),
            }),
            (None, Some(t)) => notes.push(format!(
                "{file}: its {} figure is not used as proof: {t}",
                resource.label()
            )),
            (None, None) => out.push(Evidence {
                resource,
                value,
                run: run_text,
                overloaded: None,
            }),
        }
    };

    let proxies = if run.target == "proxies" {
        run.addresses.len()
    } else {
        0
    };
    if run.target == "proxies" && proxies == 0 {
        notes.push(format!("{file}: no proxy addresses: no per-proxy figures"));
    }
    if proxies > 0 {
        if s.created > 0 {
            let value = s.created as f64 / proxies as f64;
            let run_text = format!(
                "{} sessions ÷ {} (ramp {:.0} s + window {:.0} s)",
                num(s.created as f64),
                count_of(proxies as u64, Tier::Proxy),
                run.ramp_s,
                secs
            );
            if let Some(t) = &trouble {
                out.push(Evidence {
                    resource: Resource::ProxySessions,
                    value,
                    run: run_text,
                    overloaded: Some(t.clone()),
                });
            } else if run.ramp_s + secs < c.min_session_window_s {
                notes.push(format!(
                    "{file}: its sessions figure is not used: ramp + window ({:.1} s) is shorter \
                     than one client lease ({} s), so not every session had to renew",
                    run.ramp_s + secs,
                    c.min_session_window_s
                ));
            } else {
                out.push(Evidence {
                    resource: Resource::ProxySessions,
                    value,
                    run: run_text,
                    overloaded: None,
                });
            }
        }
        rate(
            &mut out,
            notes,
            Resource::ProxyReads,
            read_rate,
            proxies,
            "reads",
            &read_trouble,
        );
        rate(
            &mut out,
            notes,
            Resource::ProxyWrites,
            write_rate,
            proxies,
            "writes+locks",
            &write_trouble,
        );
    }

    // Cells: how many the load was spread over.
    let cell_endpoints: Vec<&EndpointReport> =
        run.endpoints.iter().filter(|e| e.role == "cell").collect();
    let cells = if run.target == "cells" && run.sessions_per_client > 1 {
        (run.sessions_per_client - 1) as usize
    } else {
        cell_endpoints.len()
    };
    if cells == 0 && (read.count > 0 || write_ops > 0) {
        let why = if run.endpoints.iter().any(|e| e.role == "proxy+cell") {
            "its --metrics endpoint is one registry for proxies and cells (warren dev), which \
             does not say how many cells there were"
        } else {
            "it does not say how many cells served the load (give every data cell's admin \
             address to --metrics)"
        };
        notes.push(format!("{file}: no per-cell figures: {why}"));
    }
    if cells > 0 {
        rate(
            &mut out,
            notes,
            Resource::CellWrites,
            write_rate,
            cells,
            "writes+locks",
            &write_trouble,
        );
        if run.target == "cells" {
            rate(
                &mut out,
                notes,
                Resource::CellReads,
                read_rate,
                cells,
                "uncached reads",
                &read_trouble,
            );
        }
    }
    // KeepAlives reaching one cell: each `cell` endpoint is one cell. Only ever a floor:
    // an overloaded run does not say the KeepAlives were the cause.
    let best = cell_endpoints
        .iter()
        .filter_map(|e| e.cell_keepalives_per_s.map(|v| (v, e)))
        .filter(|(v, _)| v.is_finite() && *v > 0.0)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((v, e)) = best {
        if let Some(t) = &trouble {
            notes.push(format!(
                "{file}: its cell keepalives figure is not used as proof: {t}"
            ));
        } else {
            out.push(Evidence {
                resource: Resource::CellKeepAlives,
                value: v,
                run: format!("{} KeepAlives/s reaching the cell at {}", num(v), e.admin),
                overloaded: None,
            });
        }
    }
    if !run.acked_lost_checked && write.count > 0 {
        notes.push(format!(
            "{file}: acked_lost was not checked in this run (see its notes)"
        ));
    }
    out
}

#[cfg(test)]
mod tests;
