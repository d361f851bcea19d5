//! The demand, the load model and the sizing rules: from a [`Demand`] and a
//! [`Capacity`], the recommended numbers of proxies and cells ([`plan_with`]), with the load
//! and utilisation of every resource and what the result rests on.
//!
//! # The model
//!
//! Demand is `clients`, `read_rate`, `write_rate` and `lock_rate` (totals per second for the
//! whole fleet). The load is assumed to spread **evenly** over the units of a tier (clients
//! over proxies by consistent hashing, directories over cells by the partition map); skew is
//! what the headroom is for.
//!
//! Per proxy, with `P` proxies:
//! - `sessions` = clients / P (each client holds one session at one proxy);
//! - `reads` = read_rate / P (every read passes through its proxy, hit or miss);
//! - `writes` = (write_rate + lock_rate) / P (forwarded to a cell; one lock operation, a
//!   TryAcquire and its Release, is counted as one write).
//!
//! Per cell, with `C` cells:
//! - `writes` = (write_rate + lock_rate) / C;
//! - `reads` = read_rate × `read_miss_ratio` / C (reads the proxies' shared cache misses;
//!   default 5%, an assumption: it depends on how often the files read change);
//! - `keepalives` = P / `upstream_keepalive_interval_s` + write_rate / C × P ×
//!   `keepalives_per_write_per_proxy`. Every proxy holds one upstream session at every cell
//!   and renews it about every 5.5 s (measured, docs/performance.md), whatever the number of
//!   cells, so that part does not shrink as cells are added. A write to a file a proxy caches
//!   wakes that proxy's held KeepAlive at the cell with the invalidation, and the proxy
//!   acknowledges it on a later KeepAlive (docs/proxy.md): 2 KeepAlives per write per proxy by
//!   default, assuming every proxy caches every file written (hot files). The 4 s debug run in
//!   docs/loadtest.md saw about 2.5 KeepAlives at the cells per write or lock operation
//!   through one proxy, in a window where first KeepAlives dominate.
//!
//! Sizing, with headroom `h` (default 0.5):
//! - proxies = max(2, ceil(demand_r × (1 + h) / capacity_r) for each proxy resource r,
//!   ceil(demand_r / capacity_r) + 1 for each r). The last term is the N+1 check: with one
//!   proxy dead, the others take its clients and must still carry the load at no more than
//!   capacity (no headroom asked of that state).
//! - cells = max(1, the smallest C with load_r(C) × (1 + h) ≤ capacity_r for each cell
//!   resource r), computed for the recommended number of proxies. Cells are not counted
//!   N+1: a cell survives the loss of its master through its own replicas.
//!   If the part of a cell's KeepAlive load that comes from the proxies' upstream sessions
//!   alone exceeds its capacity, no number of cells helps: the plan says so
//!   (`feasible: false`).

use super::capacity::{Basis, Capacity, Figure, Resource, Tier};
use super::render::{count_of, num};
use super::{fraction, non_negative, positive, PlanError};
use serde::Serialize;

/// Headroom when `--headroom` is not given: 50% above the demand.
pub const DEFAULT_HEADROOM: f64 = 0.5;
/// At least two proxies, so that one can fail (N+1).
pub const MIN_PROXIES: u64 = 2;
/// At least one cell.
pub const MIN_CELLS: u64 = 1;

/// What the fleet asks for, in total.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Demand {
    /// Client sessions (one per client).
    pub clients: u64,
    /// Reads per second.
    pub read_rate: f64,
    /// Writes per second.
    pub write_rate: f64,
    /// Lock operations (acquire + release) per second.
    pub lock_rate: f64,
}

/// The model's parameters (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Model {
    /// Fraction of reads the proxies' shared cache misses; those reach a cell. Default 0.05.
    pub read_miss_ratio: f64,
    /// Seconds between a proxy's KeepAlives on its upstream session at each cell. Default
    /// 5.5 (docs/performance.md: a 20 s upstream lease renewed every ~5.5 s).
    pub upstream_keepalive_interval_s: f64,
    /// KeepAlives one write causes at its cell per proxy (the invalidation wakes the
    /// proxy's held KeepAlive; the acknowledgement follows on another). Default 2, which
    /// assumes every proxy caches every file written.
    pub keepalives_per_write_per_proxy: f64,
}

impl Default for Model {
    fn default() -> Model {
        Model {
            read_miss_ratio: 0.05,
            upstream_keepalive_interval_s: 5.5,
            keepalives_per_write_per_proxy: 2.0,
        }
    }
}

impl Model {
    fn validate(&self) -> Result<(), PlanError> {
        fraction("the read miss ratio", self.read_miss_ratio)?;
        positive(
            "the upstream KeepAlive interval (s)",
            self.upstream_keepalive_interval_s,
        )?;
        non_negative(
            "the KeepAlives per write per proxy",
            self.keepalives_per_write_per_proxy,
        )
    }
}

/// One resource at the recommended size.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourcePlan {
    pub tier: Tier,
    /// `sessions`, `reads`, `writes` or `keepalives`.
    pub resource: &'static str,
    /// What `demand`, `per_unit` and `capacity_each` count.
    pub unit: &'static str,
    /// The whole tier's load (for cell KeepAlives: at the recommended numbers of proxies
    /// and cells).
    pub demand: f64,
    /// The load on one unit at the recommended size.
    pub per_unit: f64,
    /// One unit's capacity (the figure the plan uses).
    pub capacity_each: f64,
    /// Units this resource alone needs with headroom; `null` when no number suffices.
    pub needed: Option<u64>,
    /// Proxies only: units this resource alone needs so that one may fail.
    pub needed_one_down: Option<u64>,
    /// `per_unit / capacity_each` at the recommended size.
    pub utilisation: f64,
    /// Proxies only: utilisation with one proxy down.
    pub utilisation_one_down: Option<f64>,
    pub basis: Basis,
    /// Where `capacity_each` came from.
    pub source: String,
    /// The most a clean run achieved per unit, if any did.
    pub proven: Option<f64>,
    /// `needed` (and `needed_one_down`) on `proven` instead; `null` without a floor.
    pub needed_on_proven: Option<u64>,
}

/// The recommendation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub proxies: u64,
    /// The proxy resource with the highest utilisation (`none` without any proxy load).
    pub proxy_binding: String,
    /// What set the number of proxies: `headroom`, `failover` (one proxy down) or `minimum`.
    pub proxy_rule: String,
    pub cells: u64,
    /// The cell resource with the highest utilisation (`none` without any cell load).
    pub cell_binding: String,
    /// What set the number of cells: `headroom` or `minimum`.
    pub cell_rule: String,
    /// False when some resource cannot be kept within capacity by any number of units.
    pub feasible: bool,
    /// Proxies on the floors of clean runs alone (`null` unless every proxy resource with
    /// demand has one).
    pub proxies_on_proven: Option<u64>,
    /// Cells on the floors of clean runs alone (same condition).
    pub cells_on_proven: Option<u64>,
    pub headroom: f64,
    pub demand: Demand,
    pub model: Model,
    pub resources: Vec<ResourcePlan>,
    /// The model's assumptions, in words.
    pub assumptions: Vec<String>,
    /// What the reader should know: assumed figures, runs not used, ceilings, …
    pub notes: Vec<String>,
}

/// One tier of a [`Plan`] as the notes and the summary read it: its size and what set it.
pub(super) struct TierOutcome<'a> {
    pub tier: Tier,
    /// The recommended number of proxies or cells.
    pub units: u64,
    /// The resource with the highest utilisation (`none` without any load).
    pub binding: &'a str,
    /// What set `units`: `headroom`, `failover` or `minimum`.
    pub rule: &'a str,
    /// `units` on the floors of clean runs alone.
    pub on_proven: Option<u64>,
}

impl Plan {
    /// The proxy tier, then the cell tier.
    pub(super) fn tiers(&self) -> [TierOutcome<'_>; 2] {
        [
            TierOutcome {
                tier: Tier::Proxy,
                units: self.proxies,
                binding: &self.proxy_binding,
                rule: &self.proxy_rule,
                on_proven: self.proxies_on_proven,
            },
            TierOutcome {
                tier: Tier::Cell,
                units: self.cells,
                binding: &self.cell_binding,
                rule: &self.cell_rule,
                on_proven: self.cells_on_proven,
            },
        ]
    }
}

impl ResourcePlan {
    /// `r` carrying `demand` over its tier and `per_unit` on each unit, against `fig`; the
    /// sizing (`needed`, `needed_one_down`, …) is left for the tier's rule to fill in.
    fn loaded(r: Resource, fig: &Figure, demand: f64, per_unit: f64) -> ResourcePlan {
        ResourcePlan {
            tier: r.tier(),
            resource: r.name(),
            unit: r.unit(),
            demand,
            per_unit,
            capacity_each: fig.value,
            needed: None,
            needed_one_down: None,
            utilisation: per_unit / fig.value,
            utilisation_one_down: None,
            basis: fig.basis,
            source: fig.source.to_string(),
            proven: fig.floor.as_ref().map(|b| b.value),
            needed_on_proven: None,
        }
    }
}

/// The larger of two unit counts, or `None` if either is unknown (a tier's size on proven
/// figures needs every resource with demand to have one).
fn both_known_max(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a?.max(b?))
}

impl TierOutcome<'_> {
    /// A note when the tier's size rests on an assumed figure above what the runs proved.
    fn rests_on_assumed_figure(&self, resources: &[ResourcePlan]) -> Option<String> {
        let rp = resources
            .iter()
            .find(|r| r.tier == self.tier && r.resource == self.binding)?;
        let (Basis::Assumed, Some(v)) = (rp.basis, rp.proven) else {
            return None;
        };
        Some(format!(
            "{} rest(s) on the assumed {} figure ({} {}), above what your runs proved ({}); {}",
            count_of(self.units, self.tier),
            rp.resource,
            num(rp.capacity_each),
            rp.unit,
            num(v),
            match self.on_proven {
                Some(m) => format!("on measured figures alone: {m}"),
                None => "a heavier run would show whether it holds".into(),
            }
        ))
    }
}

/// `ceil(x)` for a count of units, forgiving floating-point noise just above an integer.
fn units(x: f64) -> u64 {
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    let r = x.round();
    if (x - r).abs() <= 1e-9 * r.max(1.0) {
        r as u64
    } else {
        x.ceil() as u64
    }
}

/// The smallest number of cells `C` with `(fixed + spread / C) × k ≤ cap`; `None` if the
/// fixed part alone is too much.
fn cells_for(fixed: f64, spread: f64, cap: f64, k: f64) -> Option<u64> {
    let room = cap - fixed * k;
    if spread <= 0.0 {
        return (room >= 0.0).then_some(0);
    }
    if room <= 0.0 {
        return None;
    }
    Some(units(spread * k / room))
}

/// [`plan_with`] with the default [`Model`].
pub fn plan(demand: &Demand, capacity: &Capacity, headroom: f64) -> Result<Plan, PlanError> {
    plan_with(demand, capacity, headroom, &Model::default())
}

/// The recommended numbers of proxies and cells for `demand` with `headroom` (0.5 = 50%
/// above the demand), on `capacity`.
pub fn plan_with(
    demand: &Demand,
    capacity: &Capacity,
    headroom: f64,
    model: &Model,
) -> Result<Plan, PlanError> {
    non_negative("--read-rate", demand.read_rate)?;
    non_negative("--write-rate", demand.write_rate)?;
    non_negative("--lock-rate", demand.lock_rate)?;
    non_negative("--headroom", headroom)?;
    model.validate()?;
    capacity.validate()?;
    let k = 1.0 + headroom;
    let mut notes = capacity.notes.clone();

    // Proxies.
    let proxy_load = [
        (Resource::ProxySessions, demand.clients as f64),
        (Resource::ProxyReads, demand.read_rate),
        (Resource::ProxyWrites, demand.write_rate + demand.lock_rate),
    ];
    let proxy_need = |d: f64, cap: f64| -> (u64, u64) {
        let one_down = if d > 0.0 { units(d / cap) + 1 } else { 0 };
        (units(d * k / cap), one_down)
    };
    let (mut by_headroom, mut by_failover) = (0, 0);
    for (r, d) in proxy_load {
        let (h, f) = proxy_need(d, capacity.figure(r).value);
        by_headroom = by_headroom.max(h);
        by_failover = by_failover.max(f);
    }
    let proxies = MIN_PROXIES.max(by_headroom).max(by_failover);
    let proxy_rule = if by_headroom == proxies {
        "headroom"
    } else if proxies == MIN_PROXIES {
        "minimum"
    } else {
        "failover"
    };
    let p = proxies as f64;
    let mut resources = Vec::new();
    let mut proxies_on_proven = Some(MIN_PROXIES);
    for (r, d) in proxy_load {
        let fig = capacity.figure(r);
        let (h, f) = proxy_need(d, fig.value);
        let loaded = ResourcePlan::loaded(r, fig, d, d / p);
        let on_proven = loaded.proven.map(|v| {
            let (h, f) = proxy_need(d, v);
            h.max(f)
        });
        if d > 0.0 {
            proxies_on_proven = both_known_max(proxies_on_proven, on_proven);
        }
        resources.push(ResourcePlan {
            needed: Some(h),
            needed_one_down: Some(f),
            utilisation_one_down: Some(d / (p - 1.0) / fig.value),
            needed_on_proven: on_proven,
            ..loaded
        });
    }

    // Cells: (resource, load on each cell whatever their number, load spread over them).
    let cell_load = [
        (
            Resource::CellWrites,
            0.0,
            demand.write_rate + demand.lock_rate,
        ),
        (
            Resource::CellReads,
            0.0,
            demand.read_rate * model.read_miss_ratio,
        ),
        (
            Resource::CellKeepAlives,
            p / model.upstream_keepalive_interval_s,
            demand.write_rate * p * model.keepalives_per_write_per_proxy,
        ),
    ];
    let mut feasible = true;
    let mut by_headroom = 0;
    for (r, fixed, spread) in cell_load {
        let fig = capacity.figure(r);
        match cells_for(fixed, spread, fig.value, k) {
            Some(n) => by_headroom = by_headroom.max(n),
            None => {
                feasible = false;
                notes.push(format!(
                    "infeasible: the {} proxies' upstream sessions alone bring each cell {} \
                     KeepAlives/s ({} × 1/{} s), more than its capacity of {} with {:.0}% \
                     headroom, whatever the number of cells; fewer proxies, a longer upstream \
                     lease, or a measured capacity (--from) would change that",
                    proxies,
                    num(fixed),
                    proxies,
                    model.upstream_keepalive_interval_s,
                    num(fig.value),
                    headroom * 100.0
                ));
            }
        }
    }
    let cells = MIN_CELLS.max(by_headroom);
    let cell_rule = if by_headroom == cells && cells > MIN_CELLS {
        "headroom"
    } else {
        "minimum"
    };
    let c = cells as f64;
    let mut cells_on_proven = Some(MIN_CELLS);
    for (r, fixed, spread) in cell_load {
        let fig = capacity.figure(r);
        let loaded = ResourcePlan::loaded(r, fig, fixed * c + spread, fixed + spread / c);
        let on_proven = loaded.proven.and_then(|v| cells_for(fixed, spread, v, k));
        if fixed + spread > 0.0 {
            cells_on_proven = both_known_max(cells_on_proven, on_proven);
        }
        resources.push(ResourcePlan {
            needed: cells_for(fixed, spread, fig.value, k),
            needed_on_proven: on_proven,
            ..loaded
        });
    }

    let binding = |tier: Tier| -> String {
        resources
            .iter()
            .filter(|r| r.tier == tier && r.utilisation > 0.0)
            .fold(None::<&ResourcePlan>, |best, r| match best {
                Some(b) if b.utilisation >= r.utilisation => Some(b),
                _ => Some(r),
            })
            .map_or("none".to_string(), |r| r.resource.to_string())
    };
    let proxy_binding = binding(Tier::Proxy);
    let cell_binding = binding(Tier::Cell);

    // What rests on assumptions.
    let assumed: Vec<String> = Resource::ALL
        .iter()
        .zip(&resources)
        .filter(|(_, rp)| rp.basis == Basis::Assumed && rp.demand > 0.0)
        .map(|(r, _)| r.label())
        .collect();
    if !assumed.is_empty() {
        notes.push(format!(
            "assumed, not measured by your runs: {} (built-in defaults, measured on \
             docs/performance.md's 2-core machine; replace with your own measurements via \
             --from)",
            assumed.join(", ")
        ));
    }
    for (r, rp) in Resource::ALL.iter().zip(&resources) {
        if rp.basis == Basis::Ceiling && rp.demand > 0.0 {
            notes.push(format!(
                "{}: the figure is a ceiling from an overloaded run ({}); the capacity at the \
                 SLO is lower, so this tier may be short: measure below it",
                r.label(),
                rp.source
            ));
        }
    }
    let assumptions = vec![
        "load spreads evenly over the units of each tier (clients over proxies, directories \
         over cells); skew is what the headroom is for"
            .to_string(),
        "every read passes through a proxy; a lock operation (acquire + release) costs as much \
         as a write, at the proxy and at the cell"
            .to_string(),
        format!(
            "{:.1}% of reads miss the proxies' shared cache and reach a cell",
            model.read_miss_ratio * 100.0
        ),
        format!(
            "each proxy holds one upstream session at every cell and KeepAlives it every {} s; \
             each write brings its cell {} KeepAlive(s) per proxy (invalidation and its \
             acknowledgement; every proxy assumed to cache the file)",
            model.upstream_keepalive_interval_s, model.keepalives_per_write_per_proxy
        ),
        "proxies are sized N+1: with one down, the rest carry the load within capacity; cells \
         are not, a cell survives its master's loss through its own replicas"
            .to_string(),
        "all children of one directory live in one cell: a single hot directory is limited to \
         one cell's capacity, whatever the number of cells"
            .to_string(),
    ];

    let mut plan = Plan {
        proxies,
        proxy_binding,
        proxy_rule: proxy_rule.into(),
        cells,
        cell_binding,
        cell_rule: cell_rule.into(),
        feasible,
        proxies_on_proven,
        cells_on_proven,
        headroom,
        demand: demand.clone(),
        model: model.clone(),
        resources,
        assumptions,
        notes,
    };
    let rests_on_assumed: Vec<String> = plan
        .tiers()
        .iter()
        .filter_map(|t| t.rests_on_assumed_figure(&plan.resources))
        .collect();
    plan.notes.extend(rests_on_assumed);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::test_support::{close, demand, plan_on_builtin, res};
    use crate::plan::{Criteria, Figure};

    #[test]
    fn sessions_bound_fleet() {
        // 250k clients, little traffic: proxies = ceil(250k × 1.5 / 100k) = ceil(3.75) = 4;
        // one down: ceil(2.5) + 1 = 4 as well.
        let p = plan_on_builtin(demand(250_000, 100.0, 10.0, 0.0), 0.5);
        assert_eq!(p.proxies, 4);
        assert_eq!(p.proxy_binding, "sessions");
        assert_eq!(p.proxy_rule, "headroom");
        let s = res(&p, Tier::Proxy, "sessions");
        assert_eq!(s.demand, 250_000.0);
        assert_eq!(s.per_unit, 62_500.0);
        assert_eq!(s.needed, Some(4));
        assert_eq!(s.needed_one_down, Some(4));
        assert!(close(s.utilisation, 0.625));
        assert!(close(
            s.utilisation_one_down.unwrap(),
            250_000.0 / 3.0 / 100_000.0
        ));
        assert_eq!(s.basis, Basis::Assumed);
        assert!(s.source.contains("built-in default"), "{}", s.source);
        // reads: 100/4 = 25 per proxy of 10,000; ceil(100 × 1.5 / 10,000) = ceil(0.015) = 1.
        assert!(close(
            res(&p, Tier::Proxy, "reads").utilisation,
            25.0 / 10_000.0
        ));
        assert_eq!(res(&p, Tier::Proxy, "reads").needed, Some(1));
        // writes: 10/4 = 2.5 per proxy of 1,000; ceil(10 × 1.5 / 1,000) = ceil(0.015) = 1.
        assert!(close(
            res(&p, Tier::Proxy, "writes").utilisation,
            2.5 / 1_000.0
        ));
        assert_eq!(res(&p, Tier::Proxy, "writes").needed, Some(1));
        // Cells: writes 10×1.5/2000 → 1; KeepAlives per cell 4/5.5 + 10×4×2 = 80.727/s of
        // 3,800 (2.12%) beats writes 10/2000 (0.5%): it binds, at the minimum of 1 cell
        // (ceil(80 × 1.5 / (3,800 − 1.5 × 4/5.5)) = ceil(0.0316) = 1).
        assert_eq!(p.cells, 1);
        assert_eq!(p.cell_rule, "minimum");
        assert_eq!(p.cell_binding, "keepalives");
        let ka = res(&p, Tier::Cell, "keepalives");
        assert!(close(ka.per_unit, 4.0 / 5.5 + 80.0));
        assert!(close(ka.utilisation, (4.0 / 5.5 + 80.0) / 3_800.0));
        assert_eq!(ka.needed, Some(1));
        assert!(close(res(&p, Tier::Cell, "reads").per_unit, 5.0));
        assert!(p.feasible);
        // Nothing measured: no proven-only counts.
        assert_eq!(p.proxies_on_proven, None);
        assert_eq!(p.cells_on_proven, None);
        assert!(p
            .notes
            .iter()
            .any(|n| n.contains("assumed, not measured by your runs")));
    }

    #[test]
    fn read_bound_fleet() {
        // 50k reads/s: ceil(50k × 1.5 / 10k) = ceil(7.5) = 8; one down ceil(5) + 1 = 6;
        // sessions 10k × 1.5 / 100k → 1 (one down 2); writes 100 × 1.5 / 1,000 → 1 (one
        // down 2).
        let p = plan_on_builtin(demand(10_000, 50_000.0, 100.0, 0.0), 0.5);
        assert_eq!(p.proxies, 8);
        assert_eq!(p.proxy_binding, "reads");
        assert_eq!(p.proxy_rule, "headroom");
        let r = res(&p, Tier::Proxy, "reads");
        assert_eq!((r.needed, r.needed_one_down), (Some(8), Some(6)));
        // 50k / 8 = 6,250 per proxy of 10,000.
        assert!(close(r.utilisation, 6_250.0 / 10_000.0));
        // 5% of 50k reach the cells: 2,500/s × 1.5 / 10,000 → 1 cell.
        let cr = res(&p, Tier::Cell, "reads");
        assert_eq!(cr.demand, 2_500.0);
        assert_eq!(cr.needed, Some(1));
    }

    #[test]
    fn write_bound_cell_tier() {
        // 500 writes + 7,500 lock ops = 8,000/s: cells ceil(8000 × 1.5 / 2000) = 6.
        // Proxies: ceil(8000 × 1.5 / 1000) = 12, one down ceil(8) + 1 = 9.
        // KeepAlives (only writes invalidate, lock operations do not): 12/5.5 per cell +
        // 500 × 12 × 2 = 12,000 spread: ceil(18,000 / (3,800 − 1.5 × 12/5.5))
        // = ceil(18,000 / 3,796.73) = ceil(4.741) = 5 < 6.
        let p = plan_on_builtin(demand(1_000, 0.0, 500.0, 7_500.0), 0.5);
        assert_eq!(p.proxies, 12);
        assert_eq!(p.proxy_binding, "writes");
        assert_eq!(p.proxy_rule, "headroom");
        let pw = res(&p, Tier::Proxy, "writes");
        assert_eq!((pw.needed, pw.needed_one_down), (Some(12), Some(9)));
        assert_eq!(p.cells, 6);
        assert_eq!(p.cell_binding, "writes");
        assert_eq!(p.cell_rule, "headroom");
        let w = res(&p, Tier::Cell, "writes");
        assert_eq!(w.needed, Some(6));
        assert!(close(w.utilisation, 8_000.0 / 6.0 / 2_000.0));
        let ka = res(&p, Tier::Cell, "keepalives");
        assert_eq!(ka.needed, Some(5));
        // Per cell: 12/5.5 + 12,000/6 = 2,002.18 of 3,800 (52.7%) < writes 8,000/6 = 1,333.3
        // of 2,000 (66.7%).
        assert!(close(ka.per_unit, 12.0 / 5.5 + 12_000.0 / 6.0));
        assert!(close(ka.demand, 6.0 * 12.0 / 5.5 + 12_000.0));
        assert_eq!(res(&p, Tier::Cell, "reads").demand, 0.0);
    }

    #[test]
    fn at_least_two_proxies_and_one_cell() {
        let p = plan_on_builtin(demand(20, 1.0, 0.0, 0.0), 0.5);
        assert_eq!((p.proxies, p.proxy_rule.as_str()), (2, "minimum"));
        assert_eq!(p.proxy_binding, "sessions"); // 20/100k > 1/10k
        assert_eq!((p.cells, p.cell_rule.as_str()), (1, "minimum"));
        // No demand at all: still 2 + 1; nothing binds at the proxies, and the proxies'
        // own upstream KeepAlives are the only cell load.
        let p = plan_on_builtin(Demand::default(), 0.5);
        assert_eq!((p.proxies, p.cells), (2, 1));
        assert_eq!(p.proxy_binding, "none");
        assert_eq!(p.cell_binding, "keepalives");
        assert!(close(res(&p, Tier::Cell, "keepalives").per_unit, 2.0 / 5.5));
    }

    #[test]
    fn failover_check_raises_the_count() {
        // Headroom 10%: ceil(250k × 1.1 / 100k) = 3, but with one of 3 down the other 2
        // would hold 125k each: ceil(2.5) + 1 = 4.
        let p = plan_on_builtin(demand(250_000, 0.0, 0.0, 0.0), 0.1);
        assert_eq!(p.proxies, 4);
        assert_eq!(p.proxy_rule, "failover");
        let s = res(&p, Tier::Proxy, "sessions");
        assert_eq!((s.needed, s.needed_one_down), (Some(3), Some(4)));
        assert!(s.utilisation_one_down.unwrap() <= 1.0);
        // Headroom 0, 200k: 2 by demand, 3 for one down.
        let p = plan_on_builtin(demand(200_000, 0.0, 0.0, 0.0), 0.0);
        assert_eq!((p.proxies, p.proxy_rule.as_str()), (3, "failover"));
        assert!(close(
            res(&p, Tier::Proxy, "sessions")
                .utilisation_one_down
                .unwrap(),
            1.0
        ));
    }

    #[test]
    fn infeasible_cell_keepalives_are_reported() {
        let mut cap = Capacity::builtin();
        cap.cell.keepalives_per_s = Figure::assumed(1.0, "test");
        // 8 proxies (reads 50k → ceil(50k × 1.5 / 10k) = ceil(7.5)) bring each cell 8/5.5 =
        // 1.45 KeepAlives/s > 1.
        let p = plan(&demand(1_000, 50_000.0, 0.0, 0.0), &cap, 0.5).unwrap();
        assert_eq!(p.proxies, 8);
        assert!(!p.feasible);
        assert_eq!(res(&p, Tier::Cell, "keepalives").needed, None);
        assert!(p.notes.iter().any(|n| n.starts_with("infeasible")));
        assert!(p.summary().contains("NOT FEASIBLE"));
    }

    #[test]
    fn bad_inputs_are_refused() {
        let cap = Capacity::builtin();
        let e = plan(&demand(1, -1.0, 0.0, 0.0), &cap, 0.5).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--read-rate must be a finite number ≥ 0, got -1"
        );
        let e = plan(&demand(1, 0.0, f64::NAN, 0.0), &cap, 0.5).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--write-rate must be a finite number ≥ 0, got NaN"
        );
        let e = plan(&demand(1, 0.0, 0.0, f64::INFINITY), &cap, 0.5).unwrap_err();
        assert!(e.to_string().starts_with("--lock-rate must be"));
        let e = plan(&demand(1, 0.0, 0.0, 0.0), &cap, -0.1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--headroom must be a finite number ≥ 0, got -0.1"
        );
        assert!(plan(&demand(1, 0.0, 0.0, 0.0), &cap, f64::NAN).is_err());
        let model = Model {
            read_miss_ratio: 1.5,
            ..Model::default()
        };
        let e = plan_with(&demand(1, 0.0, 0.0, 0.0), &cap, 0.5, &model).unwrap_err();
        assert!(e
            .to_string()
            .contains("read miss ratio must be between 0 and 1"));
        let mut zero = Capacity::builtin();
        zero.proxy.sessions = Figure::assumed(0.0, "oops");
        let e = plan(&demand(1, 0.0, 0.0, 0.0), &zero, 0.5).unwrap_err();
        assert!(e.to_string().contains("proxy sessions"), "{e}");
        let bad = Criteria {
            p99_slo_ms: -5.0,
            ..Criteria::default()
        };
        assert!(Capacity::from_reports_with(&[], &bad).is_err());
    }

    #[test]
    fn unit_counts_forgive_float_noise() {
        assert_eq!(units(3.0000000000000004), 3);
        assert_eq!(units(3.75), 4);
        assert_eq!(units(0.0), 0);
    }
}
