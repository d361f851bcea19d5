//! The capacity of one proxy and one cell: the resources the plan sizes for
//! ([`Resource`], in two [`Tier`]s), their built-in default figures (the `DEFAULT_*`
//! constants, measured on docs/performance.md's 2-core machine), and each figure the plan
//! uses with the evidence behind it ([`Figure`]: `max(floor, min(default, ceiling))`, see the
//! `evidence` module for where floors and ceilings come from).

use super::PlanError;
use serde::Serialize;
use std::fmt;

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

    pub(super) fn label(self) -> String {
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
    pub(super) fn resolve(r: Resource, floor: Option<Bound>, ceiling: Option<Bound>) -> Figure {
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

    pub(super) fn validate(&self) -> Result<(), PlanError> {
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
