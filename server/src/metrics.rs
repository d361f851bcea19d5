//! The process-wide Prometheus recorder every tier's admin endpoint renders, how a tier
//! describes its metrics ([`TierMetrics`], a table of [`Metric`]s), and the RPC counters and latency
//! histograms both tiers record the same way ([`observed`], `docs/metrics.md`).
//!
//! One recorder per process: `warren dev` runs cells and proxies in one process, and each
//! of their `/metrics` pages shows the whole process's registry (the `tier` label tells
//! the RPCs of the two tiers apart).

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::{Once, OnceLock, RwLock};
use std::time::Instant;

/// Histogram buckets (seconds) for every `*_seconds` histogram: 100 µs … 10 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed as the global `metrics` recorder on
/// first use. Histograms render as Prometheus histograms (buckets), not summaries.
pub fn prometheus() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(SECONDS_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test binary, an embedding
        // program); then this handle renders what this recorder sees, which is nothing.
        if metrics::set_global_recorder(recorder).is_ok() {
            describe_rpc();
        }
        handle
    })
}

/// A tier's own metrics (a `static` table of [`Metric`]s), described (`# HELP`) on the
/// process-wide recorder the first time the tier asks for it ([`TierMetrics::prometheus`]).
pub struct TierMetrics {
    table: &'static [Metric],
    described: Once,
}

impl TierMetrics {
    pub const fn new(table: &'static [Metric]) -> TierMetrics {
        TierMetrics {
            table,
            described: Once::new(),
        }
    }

    /// [`prometheus`], with this tier's metrics described.
    pub fn prometheus(&self) -> &'static PrometheusHandle {
        let handle = prometheus();
        self.described.call_once(|| describe(self.table));
        handle
    }
}

fn describe_rpc() {
    describe(&[
        Metric::counter(
            "warren_rpc_total",
            "gRPC calls answered, by tier (cell or proxy), method and Warren error code (OK for success)",
        ),
        Metric::seconds(
            "warren_rpc_duration_seconds",
            "time to answer a gRPC call, by tier and method (long-polls KeepAlive and Acquire are not timed)",
        ),
    ]);
}

/// One metric a tier records, as `docs/metrics.md` lists it: what [`describe`] tells the
/// recorder about it.
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricKind,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Present (at 0) from the first scrape rather than from its first record, so that
    /// rates (and the load tester's absorption factor) work from the start.
    pub from_zero: bool,
}

/// What kind of metric a [`Metric`] is.
pub enum MetricKind {
    Counter,
    Gauge,
    /// A histogram of durations in seconds ([`SECONDS_BUCKETS`]).
    Seconds,
}

impl Metric {
    pub const fn counter(name: &'static str, help: &'static str) -> Metric {
        Metric::new(name, MetricKind::Counter, help)
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Metric {
        Metric::new(name, MetricKind::Gauge, help)
    }

    pub const fn seconds(name: &'static str, help: &'static str) -> Metric {
        Metric::new(name, MetricKind::Seconds, help)
    }

    const fn new(name: &'static str, kind: MetricKind, help: &'static str) -> Metric {
        Metric {
            name,
            kind,
            help,
            from_zero: false,
        }
    }

    /// This metric, present (at 0) from the first scrape.
    pub const fn from_zero(self) -> Metric {
        Metric {
            from_zero: true,
            ..self
        }
    }
}

/// Describes `table` (`# HELP`, and the unit of histograms) on the global recorder, and
/// starts at 0 those that are [`Metric::from_zero`].
fn describe(table: &[Metric]) {
    for m in table {
        match m.kind {
            MetricKind::Counter => {
                metrics::describe_counter!(m.name, m.help);
                if m.from_zero {
                    metrics::counter!(m.name).increment(0);
                }
            }
            MetricKind::Gauge => {
                metrics::describe_gauge!(m.name, m.help);
                if m.from_zero {
                    metrics::gauge!(m.name).increment(0.0);
                }
            }
            MetricKind::Seconds => {
                metrics::describe_histogram!(m.name, metrics::Unit::Seconds, m.help);
            }
        }
    }
}

/// Records one answered RPC in `warren_rpc_total{tier,method,code}` and, except for the
/// long-polls (`KeepAlive`, `Acquire`), `warren_rpc_duration_seconds{tier,method}`.
/// Returns the code's name (`OK`, a Warren error code, or `TRANSPORT` for a status that
/// carries none).
pub fn observe_rpc<T>(
    tier: &'static str,
    method: &'static str,
    started: Instant,
    r: &Result<T, tonic::Status>,
) -> &'static str {
    let code = match r {
        Ok(_) => "OK",
        Err(s) => warren_proto::WarrenError::from_status(s).map_or("TRANSPORT", |e| e.code_name()),
    };
    let timed = method != "KeepAlive" && method != "Acquire";
    if code == "OK" {
        if let Some((count, time)) = ok_handles(tier, method, timed) {
            count.increment(1);
            if let Some(time) = time {
                time.record(started.elapsed().as_secs_f64());
            }
            return code;
        }
    }
    metrics::counter!("warren_rpc_total", "tier" => tier, "method" => method, "code" => code)
        .increment(1);
    if timed {
        metrics::histogram!("warren_rpc_duration_seconds", "tier" => tier, "method" => method)
            .record(started.elapsed().as_secs_f64());
    }
    code
}

/// The handles of `warren_rpc_total{tier,method,code="OK"}` and
/// `warren_rpc_duration_seconds{tier,method}`, looked up in the recorder once per method
/// rather than on every call (a lookup builds the key's label list and hashes it: a
/// noticeable part of a proxy's cache hit). `None` until the process-wide recorder
/// ([`prometheus`]) is installed, so that no handle is kept from before it. No histogram
/// for a method that is not `timed` (one that would render as an empty series).
fn ok_handles(
    tier: &'static str,
    method: &'static str,
    timed: bool,
) -> Option<(metrics::Counter, Option<metrics::Histogram>)> {
    type Handles = (metrics::Counter, Option<metrics::Histogram>);
    static KEPT: OnceLock<RwLock<HashMap<(&'static str, &'static str), Handles>>> = OnceLock::new();
    HANDLE.get()?;
    let kept = KEPT.get_or_init(Default::default);
    if let Some(h) = kept
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(tier, method))
    {
        return Some(h.clone());
    }
    let h = (
        metrics::counter!("warren_rpc_total", "tier" => tier, "method" => method, "code" => "OK"),
        timed.then(|| {
            metrics::histogram!("warren_rpc_duration_seconds", "tier" => tier, "method" => method)
        }),
    );
    kept.write()
        .unwrap_or_else(|p| p.into_inner())
        .insert((tier, method), h.clone());
    Some(h)
}

/// Runs one call of `tier`, counted and timed as `method` ([`observe_rpc`]).
///
/// A combinator, not an `async fn`: an `async fn` keeps its argument future twice (as its
/// argument and as the local it awaits), and the future of a held KeepAlive lives for most
/// of a lease (docs/performance.md, "Memory per session at the proxy").
pub fn observed<T, F>(
    tier: &'static str,
    method: &'static str,
    call: F,
) -> futures::future::Map<F, impl FnOnce(Result<T, tonic::Status>) -> Result<T, tonic::Status>>
where
    F: std::future::Future<Output = Result<T, tonic::Status>>,
{
    use futures::FutureExt;
    let started = Instant::now();
    call.map(move |r| {
        observe_rpc(tier, method, started, &r);
        r
    })
}
