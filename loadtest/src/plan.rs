//! `warren loadtest plan`: measured per-proxy and per-cell capacity in, a recommended number
//! of proxies and cells out, with headroom, the resource that binds each tier, the
//! utilisation of every resource, and where each capacity figure came from.
//!
//! Pure code: the caller reads the `--from` files and passes their text (or [`Report`]s) in.
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
//!
//! # Capacity figures: measured or assumed
//!
//! Each figure starts from a built-in default (the `DEFAULT_*` constants, measured with
//! `warren loadtest` on a 2-core machine with the load generator on the same cores,
//! docs/performance.md; replace them with your own measurements via `--from`). A
//! `warren loadtest run` report only proves what the run achieved, averaged over the units
//! of the tier it ran against:
//! - a **clean** run (no lost acknowledged writes, no injected faults, no jeopardy, expiry or
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

use crate::report::Report;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

/// Client sessions one proxy holds with no spurious jeopardy. Measured (docs/performance.md,
/// "The load tester's figures"): `warren loadtest run --deploy dev:cells=1,proxies=1
/// --sessions 100000 --ramp 60s --duration 60s --read-rate 100 --write-rate 5` held 100,000
/// sessions on one proxy with 0 jeopardy episodes and no error; 150,000 saw 73k jeopardy
/// episodes (CPU, shared with the load generator, binds). 2-core machine, load generator on
/// the same cores. Defaults; replace with your own measurements via `--from`.
pub const DEFAULT_PROXY_SESSIONS: f64 = 100_000.0;
/// Reads one proxy serves per second. Measured (docs/performance.md): `warren loadtest run
/// --deploy dev:cells=1,proxies=1 --sessions 200 --read-rate R --write-rate 0 --files 10`
/// served 10,048 cached reads/s at p99 5.2 ms; at R = 20,000 it served 19,954/s but p99 was
/// 556 ms, past the 100 ms SLO, so 10,000 is the clean figure. 2-core machine, load
/// generator on the same cores. Defaults; replace with your own measurements via `--from`.
pub const DEFAULT_PROXY_READS_PER_S: f64 = 10_000.0;
/// Writes and lock operations one proxy forwards per second. Measured (docs/performance.md):
/// `warren loadtest compare --deploy dev:cells=1,proxies=1 --write-rate 1000 --read-rate 0`
/// forwarded 1,003 writes/s through one proxy at p99 7.6 ms. A floor: the run did not
/// saturate the proxy. 2-core machine, load generator on the same cores. Defaults; replace
/// with your own measurements via `--from`.
pub const DEFAULT_PROXY_WRITES_PER_S: f64 = 1_000.0;
/// Writes and lock operations one cell commits per second. Measured (docs/performance.md) on
/// one embedded-store cell, 2-core machine, load generator on the same cores: `warren
/// loadtest compare --write-rate 1000` sent 997 writes/s direct at p99 4.4 ms (open loop; a
/// floor, the run did not saturate the cell), and the closed-loop `dev_throughput` example
/// reached 8.3k–10.1k writes/s. 2,000 is a conservative figure between the two. Defaults;
/// replace with your own measurements via `--from`.
pub const DEFAULT_CELL_WRITES_PER_S: f64 = 2_000.0;
/// Uncached reads one cell serves per second. docs/performance.md measured 17.9k–22.0k on one
/// cell with the load generator on the same 2 cores; this default is deliberately lower.
/// Defaults; replace with your own measurements via `--from`.
pub const DEFAULT_CELL_READS_PER_S: f64 = 10_000.0;
/// KeepAlives reaching one cell per second that it handles. Measured (docs/performance.md):
/// `warren loadtest run --deploy dev:cells=1,proxies=1 --target cells --sessions 50000` sent
/// 3,859 KeepAlives/s to the data cell from 50,000 direct sessions with 0 jeopardy and no
/// error, the cell using about half a core. A floor: the run did not saturate the cell.
/// 2-core machine, load generator on the same cores. Defaults; replace with your own
/// measurements via `--from`.
pub const DEFAULT_CELL_KEEPALIVES_PER_S: f64 = 3_800.0;

/// Headroom when `--headroom` is not given: 50% above the demand.
pub const DEFAULT_HEADROOM: f64 = 0.5;
/// At least two proxies, so that one can fail (N+1).
pub const MIN_PROXIES: u64 = 2;
/// At least one cell.
pub const MIN_CELLS: u64 = 1;

/// A tier of the deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Proxy,
    Cell,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Proxy => "proxy",
            Tier::Cell => "cell",
        })
    }
}

/// One resource of one unit (a proxy or a cell) that the plan sizes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    ProxySessions,
    ProxyReads,
    ProxyWrites,
    CellWrites,
    CellReads,
    CellKeepAlives,
}

impl Resource {
    /// Every resource, proxy tier first, in report order.
    pub const ALL: [Resource; 6] = [
        Resource::ProxySessions,
        Resource::ProxyReads,
        Resource::ProxyWrites,
        Resource::CellWrites,
        Resource::CellReads,
        Resource::CellKeepAlives,
    ];

    pub fn tier(self) -> Tier {
        match self {
            Resource::ProxySessions | Resource::ProxyReads | Resource::ProxyWrites => Tier::Proxy,
            _ => Tier::Cell,
        }
    }

    /// The name used in `proxy_binding`, `cell_binding` and `resources[].resource`.
    pub fn name(self) -> &'static str {
        match self {
            Resource::ProxySessions => "sessions",
            Resource::ProxyReads | Resource::CellReads => "reads",
            Resource::ProxyWrites | Resource::CellWrites => "writes",
            Resource::CellKeepAlives => "keepalives",
        }
    }

    /// What the figures of this resource count.
    pub fn unit(self) -> &'static str {
        match self {
            Resource::ProxySessions => "sessions",
            Resource::ProxyReads => "reads/s",
            Resource::CellReads => "uncached reads/s",
            Resource::ProxyWrites | Resource::CellWrites => "writes+locks/s",
            Resource::CellKeepAlives => "KeepAlives/s",
        }
    }

    /// The built-in default figure.
    pub fn default_value(self) -> f64 {
        match self {
            Resource::ProxySessions => DEFAULT_PROXY_SESSIONS,
            Resource::ProxyReads => DEFAULT_PROXY_READS_PER_S,
            Resource::ProxyWrites => DEFAULT_PROXY_WRITES_PER_S,
            Resource::CellWrites => DEFAULT_CELL_WRITES_PER_S,
            Resource::CellReads => DEFAULT_CELL_READS_PER_S,
            Resource::CellKeepAlives => DEFAULT_CELL_KEEPALIVES_PER_S,
        }
    }

    /// Where the built-in default comes from.
    pub fn default_note(self) -> &'static str {
        match self {
            Resource::ProxySessions => {
                "docs/performance.md, 2-core machine: 100k sessions on one proxy, 0 jeopardy (150k: jeopardy)"
            }
            Resource::ProxyReads => {
                "docs/performance.md, 2-core machine: 10,048 cached reads/s on one proxy at p99 5.2 ms (20k/s: p99 556 ms)"
            }
            Resource::ProxyWrites => {
                "docs/performance.md, 2-core machine: 1,003 writes/s through one proxy at p99 7.6 ms, not saturated"
            }
            Resource::CellWrites => {
                "docs/performance.md, 2-core machine: between 997 writes/s open-loop at p99 4.4 ms and 8.3k-10.1k closed-loop on one cell"
            }
            Resource::CellReads => {
                "below docs/performance.md's 17.9k-22.0k uncached reads/s on one cell, 2-core machine"
            }
            Resource::CellKeepAlives => {
                "docs/performance.md, 2-core machine: 3,859 KeepAlives/s on one cell from 50k direct sessions, 0 jeopardy, not saturated"
            }
        }
    }

    fn label(self) -> String {
        format!("{} {}", self.tier(), self.name())
    }
}

/// Where a capacity figure came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A built-in default: an assumption until a run replaces it.
    BuiltIn { note: String },
    /// A clean run achieved this per unit: capacity is at least this.
    Run { file: String, run: String },
    /// A run was past its SLO at this load per unit: capacity is at most this.
    Overloaded {
        file: String,
        run: String,
        why: String,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::BuiltIn { note } => write!(f, "built-in default ({note})"),
            Source::Run { file, run } => write!(f, "{file}: {run}"),
            Source::Overloaded { file, run, why } => {
                write!(f, "{file}: {run}; overloaded ({why}), so at most this")
            }
        }
    }
}

/// How much a figure is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// A clean run achieved it: a lower bound on the real capacity.
    Measured,
    /// An overloaded run: an upper bound; capacity at the SLO is lower.
    Ceiling,
    /// A built-in default.
    Assumed,
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Basis::Measured => "measured",
            Basis::Ceiling => "ceiling",
            Basis::Assumed => "assumed",
        })
    }
}

/// A bound on a capacity figure from one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bound {
    pub value: f64,
    pub source: Source,
}

/// One capacity figure per unit: the value the plan uses and the evidence behind it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figure {
    /// The figure the plan uses: `max(floor, min(default, ceiling))`.
    pub value: f64,
    pub basis: Basis,
    /// Where `value` came from.
    pub source: Source,
    /// The built-in default.
    pub default: f64,
    /// The most any clean run achieved per unit.
    pub floor: Option<Bound>,
    /// The least load per unit at which a run was overloaded.
    pub ceiling: Option<Bound>,
}

impl Figure {
    /// The built-in default of `r`, with no evidence.
    pub fn builtin(r: Resource) -> Figure {
        Figure::resolve(r, None, None)
    }

    /// A figure given outright (e.g. by a test, or a flag overriding a figure): an assumption.
    pub fn assumed(value: f64, note: impl Into<String>) -> Figure {
        Figure {
            value,
            basis: Basis::Assumed,
            source: Source::BuiltIn { note: note.into() },
            default: value,
            floor: None,
            ceiling: None,
        }
    }

    /// `max(floor, min(default, ceiling))`.
    fn resolve(r: Resource, floor: Option<Bound>, ceiling: Option<Bound>) -> Figure {
        let default = r.default_value();
        let mut value = default;
        let mut basis = Basis::Assumed;
        let mut source = Source::BuiltIn {
            note: r.default_note().into(),
        };
        if let Some(u) = &ceiling {
            if u.value < value {
                value = u.value;
                basis = Basis::Ceiling;
                source = u.source.clone();
            }
        }
        if let Some(l) = &floor {
            if l.value >= value {
                value = l.value;
                basis = Basis::Measured;
                source = l.source.clone();
            }
        }
        Figure {
            value,
            basis,
            source,
            default,
            floor,
            ceiling,
        }
    }
}

/// Per-proxy capacity.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProxyCapacity {
    /// Client sessions one proxy holds with no spurious jeopardy.
    pub sessions: Figure,
    /// Reads one proxy serves per second (from its cache, or forwarded on a miss).
    pub reads_per_s: Figure,
    /// Writes and lock operations one proxy forwards per second.
    pub writes_per_s: Figure,
}

/// Per-cell capacity.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CellCapacity {
    /// Writes and lock operations one cell commits per second.
    pub writes_per_s: Figure,
    /// Uncached reads (and opens) one cell serves per second.
    pub reads_per_s: Figure,
    /// KeepAlives reaching one cell per second (mostly the proxies' upstream sessions).
    pub keepalives_per_s: Figure,
}

/// The capacity of one proxy and one cell, and what was learnt reading the runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Capacity {
    pub proxy: ProxyCapacity,
    pub cell: CellCapacity,
    /// Why a run or a figure was not used, conflicts between runs, …
    pub notes: Vec<String>,
}

impl Default for Capacity {
    fn default() -> Capacity {
        Capacity::builtin()
    }
}

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
    /// The built-in defaults only.
    pub fn builtin() -> Capacity {
        Capacity {
            proxy: ProxyCapacity {
                sessions: Figure::builtin(Resource::ProxySessions),
                reads_per_s: Figure::builtin(Resource::ProxyReads),
                writes_per_s: Figure::builtin(Resource::ProxyWrites),
            },
            cell: CellCapacity {
                writes_per_s: Figure::builtin(Resource::CellWrites),
                reads_per_s: Figure::builtin(Resource::CellReads),
                keepalives_per_s: Figure::builtin(Resource::CellKeepAlives),
            },
            notes: Vec::new(),
        }
    }

    pub fn figure(&self, r: Resource) -> &Figure {
        match r {
            Resource::ProxySessions => &self.proxy.sessions,
            Resource::ProxyReads => &self.proxy.reads_per_s,
            Resource::ProxyWrites => &self.proxy.writes_per_s,
            Resource::CellWrites => &self.cell.writes_per_s,
            Resource::CellReads => &self.cell.reads_per_s,
            Resource::CellKeepAlives => &self.cell.keepalives_per_s,
        }
    }

    pub fn figure_mut(&mut self, r: Resource) -> &mut Figure {
        match r {
            Resource::ProxySessions => &mut self.proxy.sessions,
            Resource::ProxyReads => &mut self.proxy.reads_per_s,
            Resource::ProxyWrites => &mut self.proxy.writes_per_s,
            Resource::CellWrites => &mut self.cell.writes_per_s,
            Resource::CellReads => &mut self.cell.reads_per_s,
            Resource::CellKeepAlives => &mut self.cell.keepalives_per_s,
        }
    }

    /// Capacity from `(name, report)` pairs with the default [`Criteria`] (p99 ≤ 100 ms,
    /// errors ≤ 0.1%).
    pub fn from_reports(reports: &[(String, Report)]) -> Capacity {
        Capacity::from_reports_with(reports, &Criteria::default())
            .expect("the default criteria are valid and a Report always reads back")
    }

    /// Capacity from `(name, report)` pairs: see the module documentation for the rules.
    pub fn from_reports_with(
        reports: &[(String, Report)],
        criteria: &Criteria,
    ) -> Result<Capacity, PlanError> {
        let mut runs = Vec::with_capacity(reports.len());
        for (name, report) in reports {
            let view = serde_json::to_value(report)
                .and_then(serde_json::from_value::<RunView>)
                .map_err(|e| PlanError::BadReport {
                    file: name.clone(),
                    message: e.to_string(),
                })?;
            runs.push((name.clone(), view));
        }
        Capacity::from_runs(&runs, criteria)
    }

    /// Capacity from `(file name, JSON text)` pairs, the files `warren loadtest run --json`
    /// wrote (the caller reads them). Fields this version does not know are ignored; missing
    /// ones count as 0.
    pub fn from_json(
        files: &[(String, String)],
        criteria: &Criteria,
    ) -> Result<Capacity, PlanError> {
        let mut runs = Vec::with_capacity(files.len());
        for (name, text) in files {
            let view: RunView = serde_json::from_str(text).map_err(|e| PlanError::BadReport {
                file: name.clone(),
                message: e.to_string(),
            })?;
            runs.push((name.clone(), view));
        }
        Capacity::from_runs(&runs, criteria)
    }

    fn from_runs(runs: &[(String, RunView)], criteria: &Criteria) -> Result<Capacity, PlanError> {
        criteria.validate()?;
        let mut notes = Vec::new();
        let mut floors: BTreeMap<Resource, Bound> = BTreeMap::new();
        let mut ceilings: BTreeMap<Resource, Bound> = BTreeMap::new();
        for (file, run) in runs {
            for e in evaluate(file, run, criteria, &mut notes) {
                match e.overloaded {
                    None => {
                        let b = Bound {
                            value: e.value,
                            source: Source::Run {
                                file: file.clone(),
                                run: e.run,
                            },
                        };
                        if floors.get(&e.resource).is_none_or(|f| b.value > f.value) {
                            floors.insert(e.resource, b);
                        }
                    }
                    Some(why) => {
                        let b = Bound {
                            value: e.value,
                            source: Source::Overloaded {
                                file: file.clone(),
                                run: e.run,
                                why,
                            },
                        };
                        if ceilings.get(&e.resource).is_none_or(|c| b.value < c.value) {
                            ceilings.insert(e.resource, b);
                        }
                    }
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

    fn validate(&self) -> Result<(), PlanError> {
        for r in Resource::ALL {
            let f = self.figure(r);
            if !(f.value.is_finite() && f.value > 0.0) {
                return Err(PlanError::Invalid {
                    what: format!("the capacity figure for {} ({})", r.label(), f.source),
                    value: format!("{}", f.value),
                    expected: "a finite number > 0",
                });
            }
        }
        Ok(())
    }
}

// ---- Reading runs ----

/// `null` (how serde_json writes NaN) or a value.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The fields of a [`Report`] the planner reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct RunView {
    #[serde(deserialize_with = "nullable")]
    target: String,
    #[serde(deserialize_with = "nullable")]
    addresses: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    ramp_s: f64,
    #[serde(deserialize_with = "nullable")]
    duration_s: f64,
    #[serde(deserialize_with = "nullable")]
    ops: BTreeMap<String, OpView>,
    #[serde(deserialize_with = "nullable")]
    errors: u64,
    #[serde(deserialize_with = "nullable")]
    dropped: u64,
    #[serde(deserialize_with = "nullable")]
    sessions_per_client: u64,
    #[serde(deserialize_with = "nullable")]
    faults: Vec<serde_json::Value>,
    #[serde(deserialize_with = "nullable")]
    sessions: SessionsView,
    #[serde(deserialize_with = "nullable")]
    endpoints: Vec<EndpointView>,
    #[serde(deserialize_with = "nullable")]
    acked_lost: u64,
    acked_lost_checked: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct OpView {
    #[serde(deserialize_with = "nullable")]
    count: u64,
    #[serde(deserialize_with = "nullable")]
    errors: u64,
    #[serde(deserialize_with = "nullable")]
    busy: u64,
    #[serde(deserialize_with = "nullable")]
    p99_ms: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct SessionsView {
    #[serde(deserialize_with = "nullable")]
    created: u64,
    #[serde(deserialize_with = "nullable")]
    jeopardy: u64,
    #[serde(deserialize_with = "nullable")]
    expired: u64,
    #[serde(deserialize_with = "nullable")]
    moved: u64,
    #[serde(deserialize_with = "nullable")]
    keepalives: u64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct EndpointView {
    #[serde(deserialize_with = "nullable")]
    admin: String,
    #[serde(deserialize_with = "nullable")]
    role: String,
    cell_keepalives_per_s: Option<f64>,
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
fn evaluate(file: &str, run: &RunView, c: &Criteria, notes: &mut Vec<String>) -> Vec<Evidence> {
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
    if run.acked_lost > 0 {
        notes.push(format!(
            "{file}: not used: {} acknowledged write(s) were lost — a correctness failure, not \
             a capacity limit",
            run.acked_lost
        ));
        return out;
    }
    let zero = OpView::default();
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
    let kind_trouble = |name: &str, o: &OpView| -> Option<String> {
        let calls = o.count + o.errors;
        let mut why = Vec::new();
        if o.count > 0 && o.p99_ms > c.p99_slo_ms {
            why.push(format!(
                "{name} p99 {:.1} ms > SLO {} ms",
                o.p99_ms, c.p99_slo_ms
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
    let cell_endpoints: Vec<&EndpointView> =
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
    if run.acked_lost_checked == Some(false) && write.count > 0 {
        notes.push(format!(
            "{file}: acked_lost was not checked in this run (see its notes)"
        ));
    }
    out
}

// ---- The plan ----

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

/// Invalid input to the planner.
#[derive(Clone, Debug, PartialEq)]
pub enum PlanError {
    /// A number out of its range.
    Invalid {
        what: String,
        value: String,
        expected: &'static str,
    },
    /// A `--from` file that is not a `warren loadtest run --json` report.
    BadReport { file: String, message: String },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Invalid {
                what,
                value,
                expected,
            } => write!(f, "{what} must be {expected}, got {value}"),
            PlanError::BadReport { file, message } => write!(
                f,
                "{file} is not a `warren loadtest run --json` report: {message}"
            ),
        }
    }
}

impl std::error::Error for PlanError {}

fn invalid(what: &str, value: f64, expected: &'static str) -> PlanError {
    PlanError::Invalid {
        what: what.into(),
        value: format!("{value}"),
        expected,
    }
}

fn non_negative(what: &str, v: f64) -> Result<(), PlanError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(invalid(what, v, "a finite number ≥ 0"))
    }
}

fn positive(what: &str, v: f64) -> Result<(), PlanError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(what, v, "a finite number > 0"))
    }
}

fn fraction(what: &str, v: f64) -> Result<(), PlanError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(what, v, "between 0 and 1"))
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
        let proven = fig.floor.as_ref().map(|b| b.value);
        let on_proven = proven.map(|v| {
            let (h, f) = proxy_need(d, v);
            h.max(f)
        });
        if d > 0.0 {
            proxies_on_proven = match (proxies_on_proven, on_proven) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        resources.push(ResourcePlan {
            tier: Tier::Proxy,
            resource: r.name(),
            unit: r.unit(),
            demand: d,
            per_unit: d / p,
            capacity_each: fig.value,
            needed: Some(h),
            needed_one_down: Some(f),
            utilisation: d / p / fig.value,
            utilisation_one_down: Some(d / (p - 1.0) / fig.value),
            basis: fig.basis,
            source: fig.source.to_string(),
            proven,
            needed_on_proven: on_proven,
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
        let per_unit = fixed + spread / c;
        let proven = fig.floor.as_ref().map(|b| b.value);
        let on_proven = proven.and_then(|v| cells_for(fixed, spread, v, k));
        if fixed + spread > 0.0 {
            cells_on_proven = match (cells_on_proven, on_proven) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        resources.push(ResourcePlan {
            tier: Tier::Cell,
            resource: r.name(),
            unit: r.unit(),
            demand: fixed * c + spread,
            per_unit,
            capacity_each: fig.value,
            needed: cells_for(fixed, spread, fig.value, k),
            needed_one_down: None,
            utilisation: per_unit / fig.value,
            utilisation_one_down: None,
            basis: fig.basis,
            source: fig.source.to_string(),
            proven,
            needed_on_proven: on_proven,
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
    for (tier, bind, n, on_proven) in [
        (Tier::Proxy, &proxy_binding, proxies, proxies_on_proven),
        (Tier::Cell, &cell_binding, cells, cells_on_proven),
    ] {
        let Some(rp) = resources
            .iter()
            .find(|r| r.tier == tier && r.resource == bind.as_str())
        else {
            continue;
        };
        if let (Basis::Assumed, Some(v)) = (rp.basis, rp.proven) {
            notes.push(format!(
                "{} rest(s) on the assumed {} figure ({} {}), above what your runs proved ({}); \
                 {}",
                count_of(n, tier),
                rp.resource,
                num(rp.capacity_each),
                rp.unit,
                num(v),
                match on_proven {
                    Some(m) => format!("on measured figures alone: {m}"),
                    None => "a heavier run would show whether it holds".into(),
                }
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

    Ok(Plan {
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
    })
}

impl Plan {
    /// The readable terminal table: per tier the recommendation, the binding resource, each
    /// resource's load and utilisation, and the source of every figure.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let d = &self.demand;
        let _ = writeln!(
            s,
            "warren loadtest plan: {} clients; {} reads/s, {} writes/s, {} lock ops/s; headroom {:.0}%",
            num(d.clients as f64),
            num(d.read_rate),
            num(d.write_rate),
            num(d.lock_rate),
            self.headroom * 100.0
        );
        if !self.feasible {
            let _ = writeln!(s, "NOT FEASIBLE: see the notes");
        }
        for (tier, n, bind, rule, on_proven) in [
            (
                Tier::Proxy,
                self.proxies,
                &self.proxy_binding,
                &self.proxy_rule,
                self.proxies_on_proven,
            ),
            (
                Tier::Cell,
                self.cells,
                &self.cell_binding,
                &self.cell_rule,
                self.cells_on_proven,
            ),
        ] {
            let rule_text = match rule.as_str() {
                "failover" => "set by the N+1 check: one proxy down",
                "minimum" => "the minimum",
                _ => "set by demand + headroom",
            };
            let proven_text = match on_proven {
                Some(m) => format!("on measured figures alone: {m}"),
                None => "not every figure measured".into(),
            };
            let _ = writeln!(
                s,
                "\n{}: {n}   binding: {bind} ({rule_text}; {proven_text})",
                match tier {
                    Tier::Proxy => "proxies",
                    Tier::Cell => "cells",
                },
            );
            let _ = writeln!(
                s,
                "  {:<11} {:>16} {:>14} {:>14} {:>7} {:>9} {:>6}  {:<13} unit",
                "resource",
                "demand",
                format!("per {tier}"),
                "capacity each",
                "use",
                "one down",
                "needs",
                "basis",
            );
            for r in self.resources.iter().filter(|r| r.tier == tier) {
                let _ = writeln!(
                    s,
                    "  {:<11} {:>16} {:>14} {:>14} {:>7} {:>9} {:>6}  {:<13} {}",
                    r.resource,
                    num(r.demand),
                    num(r.per_unit),
                    num(r.capacity_each),
                    pct(r.utilisation),
                    r.utilisation_one_down.map_or("-".into(), pct),
                    r.needed.map_or("none".into(), |n| n.to_string()),
                    r.basis.to_string(),
                    r.unit
                );
            }
        }
        let _ = writeln!(s, "\nsources:");
        for r in &self.resources {
            let proven = match (r.basis, r.proven) {
                (Basis::Measured, _) | (_, None) => String::new(),
                (_, Some(v)) => format!(" [runs proved ≥ {}]", num(v)),
            };
            let _ = writeln!(s, "  {} {}: {}{proven}", r.tier, r.resource, r.source);
        }
        let _ = writeln!(s, "\nassumptions:");
        for a in &self.assumptions {
            let _ = writeln!(s, "  - {a}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

/// A number for people: thousands separated above 1,000, fewer decimals as it grows.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x.abs() >= 1000.0 {
        let digits = format!("{:.0}", x.abs());
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        if x < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if x.abs() >= 100.0 || x == x.trunc() {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// `1 proxy`, `4 proxies`, `1 cell`, `6 cells`.
fn count_of(n: u64, tier: Tier) -> String {
    match (tier, n) {
        (Tier::Proxy, 1) => "1 proxy".into(),
        (Tier::Proxy, n) => format!("{n} proxies"),
        (Tier::Cell, 1) => "1 cell".into(),
        (Tier::Cell, n) => format!("{n} cells"),
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::EndpointReport;
    use crate::report::{OpReport, Percentiles};

    fn demand(clients: u64, read: f64, write: f64, lock: f64) -> Demand {
        Demand {
            clients,
            read_rate: read,
            write_rate: write,
            lock_rate: lock,
        }
    }

    fn res<'a>(p: &'a Plan, tier: Tier, name: &str) -> &'a ResourcePlan {
        p.resources
            .iter()
            .find(|r| r.tier == tier && r.resource == name)
            .unwrap_or_else(|| panic!("no {tier} {name}"))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn sessions_bound_fleet() {
        // 250k clients, little traffic: proxies = ceil(250k × 1.5 / 100k) = ceil(3.75) = 4;
        // one down: ceil(2.5) + 1 = 4 as well.
        let p = plan(
            &demand(250_000, 100.0, 10.0, 0.0),
            &Capacity::builtin(),
            0.5,
        )
        .unwrap();
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
        let p = plan(
            &demand(10_000, 50_000.0, 100.0, 0.0),
            &Capacity::builtin(),
            0.5,
        )
        .unwrap();
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
        let p = plan(
            &demand(1_000, 0.0, 500.0, 7_500.0),
            &Capacity::builtin(),
            0.5,
        )
        .unwrap();
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
        let p = plan(&demand(20, 1.0, 0.0, 0.0), &Capacity::builtin(), 0.5).unwrap();
        assert_eq!((p.proxies, p.proxy_rule.as_str()), (2, "minimum"));
        assert_eq!(p.proxy_binding, "sessions"); // 20/100k > 1/10k
        assert_eq!((p.cells, p.cell_rule.as_str()), (1, "minimum"));
        // No demand at all: still 2 + 1; nothing binds at the proxies, and the proxies'
        // own upstream KeepAlives are the only cell load.
        let p = plan(&Demand::default(), &Capacity::builtin(), 0.5).unwrap();
        assert_eq!((p.proxies, p.cells), (2, 1));
        assert_eq!(p.proxy_binding, "none");
        assert_eq!(p.cell_binding, "keepalives");
        assert!(close(res(&p, Tier::Cell, "keepalives").per_unit, 2.0 / 5.5));
    }

    #[test]
    fn failover_check_raises_the_count() {
        // Headroom 10%: ceil(250k × 1.1 / 100k) = 3, but with one of 3 down the other 2
        // would hold 125k each: ceil(2.5) + 1 = 4.
        let p = plan(&demand(250_000, 0.0, 0.0, 0.0), &Capacity::builtin(), 0.1).unwrap();
        assert_eq!(p.proxies, 4);
        assert_eq!(p.proxy_rule, "failover");
        let s = res(&p, Tier::Proxy, "sessions");
        assert_eq!((s.needed, s.needed_one_down), (Some(3), Some(4)));
        assert!(s.utilisation_one_down.unwrap() <= 1.0);
        // Headroom 0, 200k: 2 by demand, 3 for one down.
        let p = plan(&demand(200_000, 0.0, 0.0, 0.0), &Capacity::builtin(), 0.0).unwrap();
        assert_eq!((p.proxies, p.proxy_rule.as_str()), (3, "failover"));
        assert!(close(
            res(&p, Tier::Proxy, "sessions")
                .utilisation_one_down
                .unwrap(),
            1.0
        ));
    }

    fn op(count: u64, errors: u64, busy: u64, secs: f64, p99_ms: f64) -> OpReport {
        OpReport {
            count,
            errors,
            busy,
            throughput_per_s: count as f64 / secs,
            latency: Percentiles {
                p50_ms: p99_ms / 4.0,
                p99_ms,
                ..Default::default()
            },
        }
    }

    fn endpoint(admin: &str, role: &str, cell_ka: Option<f64>) -> EndpointReport {
        EndpointReport {
            admin: admin.into(),
            role: role.into(),
            window_s: 41.0,
            rpc_per_s: None,
            proxy_rpc_per_s: None,
            cell_keepalives_per_s: cell_ka,
            client_keepalives_per_s: None,
        }
    }

    /// A clean run through 2 proxies with 1 scraped cell: 300k sessions (150k per proxy),
    /// 50k reads/s (25k per proxy), 100 writes/s + 20 lock ops/s (60 per proxy, 120 per cell),
    /// 3.5 KeepAlives/s at the cell.
    fn clean_report() -> Report {
        let secs = 30.0;
        let mut r = Report {
            target: "proxies".into(),
            addresses: vec!["10.0.0.1:7201".into(), "10.0.0.2:7201".into()],
            ramp_s: 11.0,
            duration_s: secs,
            read_rate: 50_000.0,
            write_rate: 100.0,
            lock_rate: 20.0,
            acked_lost_checked: true,
            ..Default::default()
        };
        r.ops.insert("read".into(), op(1_500_000, 0, 0, secs, 5.0));
        r.ops.insert("write".into(), op(3_000, 0, 0, secs, 8.0));
        r.ops.insert("lock".into(), op(450, 0, 150, secs, 9.0));
        r.sessions.target = 300_000;
        r.sessions.created = 300_000;
        r.sessions.keepalives = 1_000_000;
        r.sessions.closed = 300_000;
        r.endpoints = vec![
            endpoint("10.0.0.1:7281", "proxy", None),
            endpoint("10.0.1.1:7181", "cell", Some(3.5)),
        ];
        r.finish_totals();
        r
    }

    #[test]
    fn capacities_from_a_report() {
        let cap = Capacity::from_reports(&[("big.json".to_string(), clean_report())]);
        assert!(cap.notes.is_empty(), "{:?}", cap.notes);
        // Above the defaults: the measurements win.
        assert_eq!(cap.proxy.sessions.value, 150_000.0);
        assert_eq!(cap.proxy.sessions.basis, Basis::Measured);
        let src = cap.proxy.sessions.source.to_string();
        assert!(
            src.starts_with("big.json: 300,000 sessions ÷ 2 proxies"),
            "{src}"
        );
        assert_eq!(cap.proxy.reads_per_s.value, 25_000.0);
        assert_eq!(cap.proxy.reads_per_s.basis, Basis::Measured);
        // Below the defaults: floors, kept for information; the default stays (60 < 1,000).
        assert_eq!(cap.proxy.writes_per_s.value, 1_000.0);
        assert_eq!(cap.proxy.writes_per_s.basis, Basis::Assumed);
        assert_eq!(cap.proxy.writes_per_s.floor.as_ref().unwrap().value, 60.0);
        assert_eq!(cap.cell.writes_per_s.floor.as_ref().unwrap().value, 120.0);
        assert_eq!(cap.cell.keepalives_per_s.floor.as_ref().unwrap().value, 3.5);
        // Through proxies, uncached reads per cell are not measured.
        assert!(cap.cell.reads_per_s.floor.is_none());

        // 450k clients, 10k reads/s, 10 writes/s: sessions ceil(450k × 1.5 / 150k) = ceil(4.5)
        // = 5; one down ceil(3) + 1 = 4. Reads on the measured 25k: ceil(10k × 1.5 / 25k) = 1,
        // one down 2; writes on the default 1,000: ceil(15 / 1,000) = 1, one down 2.
        let p = plan(&demand(450_000, 10_000.0, 10.0, 0.0), &cap, 0.5).unwrap();
        assert_eq!(p.proxies, 5);
        assert_eq!(p.proxy_binding, "sessions");
        let s = res(&p, Tier::Proxy, "sessions");
        assert_eq!(s.basis, Basis::Measured);
        assert!(s.source.contains("big.json"));
        // On proven figures: reads → 1 (one down: 2), writes → 1 (one down: 2), sessions 5.
        assert_eq!(p.proxies_on_proven, Some(5));
        // Cell reads have demand (500/s) and no floor: no proven-only cell count.
        assert_eq!(p.cells_on_proven, None);
        let w = res(&p, Tier::Proxy, "writes");
        // On the proven 60/s: ceil(15 / 60) = 1 with headroom, ceil(10 / 60) + 1 = 2 one down.
        assert_eq!((w.proven, w.needed_on_proven), (Some(60.0), Some(2)));
        assert!(
            p.summary().contains("[runs proved ≥ 60]"),
            "{}",
            p.summary()
        );

        // The same report read back from its JSON gives the same capacity.
        let json = serde_json::to_string(&clean_report()).unwrap();
        let from_json =
            Capacity::from_json(&[("big.json".to_string(), json)], &Criteria::default()).unwrap();
        assert_eq!(from_json, cap);
    }

    #[test]
    fn the_best_of_several_runs_wins_and_json_may_be_partial() {
        let small = r#"{"target":"proxies","addresses":["a","b"],"ramp_s":11,"duration_s":30,
            "ops":{"read":{"count":300000,"errors":0,"p99_ms":2.0}},
            "sessions":{"created":240000,"keepalives":500000},
            "absorption_factor":null,"some_future_field":[1,2]}"#;
        let big = serde_json::to_string(&clean_report()).unwrap();
        let cap = Capacity::from_json(
            &[
                ("small.json".to_string(), small.to_string()),
                ("big.json".to_string(), big),
            ],
            &Criteria::default(),
        )
        .unwrap();
        // 240k/2 = 120k < 150k: big.json wins.
        assert_eq!(cap.proxy.sessions.value, 150_000.0);
        assert!(cap
            .proxy
            .sessions
            .source
            .to_string()
            .starts_with("big.json"));
        // small.json has no cell endpoint: noted.
        assert!(
            cap.notes
                .iter()
                .any(|n| n.starts_with("small.json: no per-cell figures")),
            "{:?}",
            cap.notes
        );
        let err = Capacity::from_json(
            &[("broken.json".to_string(), "{not json".to_string())],
            &Criteria::default(),
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("broken.json is not a `warren loadtest run"));
    }

    #[test]
    fn troubled_runs_are_not_proof() {
        // Jeopardy: the sessions figure becomes a ceiling (150k, above the 100k default, so
        // the default stays) and no rate of the run is proof (reads: the 10k default stays).
        let mut r = clean_report();
        r.sessions.jeopardy = 3;
        let cap = Capacity::from_reports(&[("j.json".to_string(), r)]);
        assert_eq!(cap.proxy.sessions.value, 100_000.0);
        assert_eq!(cap.proxy.sessions.basis, Basis::Assumed);
        assert!(cap.proxy.sessions.floor.is_none());
        assert_eq!(
            cap.proxy.sessions.ceiling.as_ref().unwrap().value,
            150_000.0
        );
        assert_eq!(cap.proxy.reads_per_s.value, 10_000.0);
        assert_eq!(cap.proxy.reads_per_s.basis, Basis::Assumed);
        assert!(cap.proxy.reads_per_s.floor.is_none());
        assert!(cap.cell.keepalives_per_s.floor.is_none());
        assert!(
            cap.notes
                .iter()
                .any(|n| n.contains("proxy reads figure is not used as proof: 3 jeopardy")),
            "{:?}",
            cap.notes
        );

        // Reads past the SLO at 5k/s per proxy (300k reads / 30 s / 2 proxies): a ceiling
        // below the 10k default caps it.
        let mut r = clean_report();
        r.ops.insert("read".into(), op(300_000, 0, 0, 30.0, 250.0));
        let cap = Capacity::from_reports(&[("slow.json".to_string(), r)]);
        assert_eq!(cap.proxy.reads_per_s.value, 5_000.0);
        assert_eq!(cap.proxy.reads_per_s.basis, Basis::Ceiling);
        let src = cap.proxy.reads_per_s.source.to_string();
        assert!(src.contains("read p99 250.0 ms > SLO 100 ms"), "{src}");
        // The other kinds were fine: still proof.
        assert_eq!(cap.proxy.sessions.value, 150_000.0);
        let p = plan(&demand(1_000, 12_000.0, 0.0, 0.0), &cap, 0.5).unwrap();
        // ceil(12k × 1.5 / 5k) = ceil(3.6) = 4; one down ceil(2.4) + 1 = 4.
        assert_eq!((p.proxies, p.proxy_binding.as_str()), (4, "reads"));
        assert!(p
            .notes
            .iter()
            .any(|n| n.contains("ceiling from an overloaded run")));

        // Errors above 0.1% of the writes: ceiling for the write figures (60 per proxy, below
        // the 1,000 default).
        let mut r = clean_report();
        r.ops.insert("write".into(), op(3_000, 30, 0, 30.0, 8.0));
        let cap = Capacity::from_reports(&[("err.json".to_string(), r)]);
        assert!(cap.proxy.writes_per_s.floor.is_none());
        assert_eq!(cap.proxy.writes_per_s.ceiling.as_ref().unwrap().value, 60.0);
        assert_eq!(cap.proxy.writes_per_s.value, 60.0);
        assert!(cap
            .proxy
            .writes_per_s
            .source
            .to_string()
            .contains("30 of 3030 writes failed"));

        // Lost writes and injected faults: nothing used at all.
        let mut r = clean_report();
        r.acked_lost = 2;
        let cap = Capacity::from_reports(&[("lost.json".to_string(), r)]);
        assert_eq!(cap.proxy, Capacity::builtin().proxy);
        assert!(cap.notes[0].contains("2 acknowledged write(s) were lost"));
        let mut v = serde_json::to_value(clean_report()).unwrap();
        v["faults"] = serde_json::json!([{"action": "kill", "member": "p1", "at_s": 3.0}]);
        let cap =
            Capacity::from_json(&[("f.json".into(), v.to_string())], &Criteria::default()).unwrap();
        assert_eq!(cap.proxy, Capacity::builtin().proxy);
        assert!(cap.notes[0].contains("fault(s) were injected"));

        // Too short to have renewed every session.
        let mut r = clean_report();
        r.ramp_s = 1.0;
        r.duration_s = 3.0;
        let cap = Capacity::from_reports(&[("short.json".to_string(), r)]);
        assert!(cap.proxy.sessions.floor.is_none());
        assert!(cap
            .notes
            .iter()
            .any(|n| n.contains("shorter than one client lease")));
    }

    #[test]
    fn assumed_binding_figure_above_the_proof_is_flagged() {
        // A light run proved 1,000 sessions per proxy; the default (100k) is used, and the
        // plan says how many proxies the proof alone would need: ceil(250k × 1.5 / 1000) = 375.
        let mut r = clean_report();
        r.sessions.created = 2_000;
        r.ops.clear();
        r.endpoints.clear();
        r.finish_totals();
        let cap = Capacity::from_reports(&[("light.json".to_string(), r)]);
        let p = plan(&demand(250_000, 0.0, 0.0, 0.0), &cap, 0.5).unwrap();
        assert_eq!(p.proxies, 4);
        assert_eq!(p.proxies_on_proven, Some(375));
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("assumed sessions figure") && n.contains("alone: 375")),
            "{:?}",
            p.notes
        );
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
    fn json_and_summary() {
        let p = plan(
            &demand(250_000, 100.0, 10.0, 0.0),
            &Capacity::builtin(),
            0.5,
        )
        .unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["proxies"], 4);
        assert_eq!(v["cells"], 1);
        assert_eq!(v["proxy_binding"], "sessions");
        assert_eq!(v["cell_binding"], "keepalives");
        assert_eq!(v["feasible"], true);
        let r0 = &v["resources"][0];
        assert_eq!(r0["tier"], "proxy");
        assert_eq!(r0["resource"], "sessions");
        assert_eq!(r0["demand"], 250_000.0);
        assert_eq!(r0["capacity_each"], 100_000.0);
        assert_eq!(r0["needed"], 4);
        assert_eq!(r0["utilisation"], 0.625);
        assert_eq!(r0["basis"], "assumed");
        assert!(r0["source"].as_str().unwrap().contains("built-in default"));
        assert_eq!(v["resources"][5]["tier"], "cell");
        assert_eq!(
            v["resources"][5]["needed_one_down"],
            serde_json::Value::Null
        );
        let text = p.summary();
        assert!(text.contains("proxies: 4   binding: sessions"), "{text}");
        assert!(text.contains("cells: 1   binding: keepalives"), "{text}");
        assert!(text.contains("250,000"), "{text}");
        assert!(text.contains("62.5%"), "{text}");
        assert!(text.contains("proxy sessions: built-in default (docs/performance.md"));
        // Every default is a measurement now: no placeholder left.
        assert!(
            text.contains("cell keepalives: built-in default (docs/performance.md"),
            "{text}"
        );
        assert!(!text.contains("placeholder"), "{text}");
        assert!(!text.contains("not measured yet"), "{text}");
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(num(250_000.0), "250,000");
        assert_eq!(num(1_234_567.4), "1,234,567");
        assert_eq!(num(999.6), "1000");
        assert_eq!(num(60.0), "60");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(0.727), "0.73");
        assert_eq!(units(3.0000000000000004), 3);
        assert_eq!(units(3.75), 4);
        assert_eq!(units(0.0), 0);
    }
}
