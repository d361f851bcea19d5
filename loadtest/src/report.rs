//! The report: pure functions from what a run recorded to the figures it prints and writes
//! as JSON (plain key names: `ops.read.p99_ms`, `errors`, `sessions.jeopardy`,
//! `absorption_factor`, `acked_lost`, …), and reading such JSON back (`warren loadtest plan
//! --from`): a field the file lacks takes its default, a field this version does not know
//! is ignored, and a float written as `null` (how serde_json writes NaN and ±∞) reads as NaN.

use crate::metrics::{Absorption, EndpointReport};
use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Reads a float that may have been written as `null`: serde_json writes NaN and ±∞ that
/// way, so a report with a non-finite figure (e.g. a counter scraped as NaN) reads back, as
/// NaN.
pub(crate) fn float_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A latency histogram in µs, 1 µs to 1 h, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Latency percentiles of one operation, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Percentiles {
    #[serde(deserialize_with = "float_or_null")]
    pub p50_ms: f64,
    #[serde(deserialize_with = "float_or_null")]
    pub p90_ms: f64,
    #[serde(deserialize_with = "float_or_null")]
    pub p99_ms: f64,
    #[serde(deserialize_with = "float_or_null")]
    pub p999_ms: f64,
    #[serde(deserialize_with = "float_or_null")]
    pub max_ms: f64,
    #[serde(deserialize_with = "float_or_null")]
    pub mean_ms: f64,
}

/// p50/p90/p99/p99.9/max/mean of a histogram of µs, in ms (all 0 when it is empty).
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        p50_ms: ms(h.value_at_quantile(0.5)),
        p90_ms: ms(h.value_at_quantile(0.9)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1000.0,
    }
}

/// Operations per second over `secs` (0 for an empty window).
pub fn throughput(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

/// One operation kind's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpReport {
    /// Operations that completed successfully.
    pub count: u64,
    /// Operations that failed (by code in the report's `errors_by_code`).
    pub errors: u64,
    /// Lock operations that found the lock held (TryAcquire → LOCK_HELD): not errors.
    pub busy: u64,
    /// Successful operations per second over the measured window.
    #[serde(deserialize_with = "float_or_null")]
    pub throughput_per_s: f64,
    /// Latency of successful operations, from the *intended* send time to the reply.
    #[serde(flatten)]
    pub latency: Percentiles,
}

/// The columns of the per-operation table, in the terminal summary and on the HTML page:
/// the operation's name, then the figures of [`OpReport::table_figures`].
pub const OP_TABLE_HEADER: [&str; 9] = [
    "op", "ok", "errors", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
];

impl OpReport {
    /// One row of the per-operation table after the name (see [`OP_TABLE_HEADER`]): the
    /// counts, ops/s to 0.1 and the latencies in ms to 0.001.
    pub fn table_figures(&self) -> [String; 8] {
        let l = &self.latency;
        [
            self.count.to_string(),
            self.errors.to_string(),
            format!("{:.1}", self.throughput_per_s),
            format!("{:.3}", l.p50_ms),
            format!("{:.3}", l.p90_ms),
            format!("{:.3}", l.p99_ms),
            format!("{:.3}", l.p999_ms),
            format!("{:.3}", l.max_ms),
        ]
    }

    pub fn new(h: &Histogram<u64>, errors: u64, busy: u64, secs: f64) -> OpReport {
        let count = h.len();
        OpReport {
            count,
            errors,
            busy,
            throughput_per_s: throughput(count, secs),
            latency: percentiles(h),
        }
    }
}

/// What the simulated sessions went through.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionOutcomes {
    /// Sessions asked for (`--sessions`).
    pub target: u64,
    /// Sessions created.
    pub created: u64,
    /// CreateSession calls that failed.
    pub create_errors: u64,
    /// Times a session's local lease ran out before a KeepAlive reply came (a session may
    /// count more than once).
    pub jeopardy: u64,
    /// Of `jeopardy`, the episodes that began in the measured window (the rest began while
    /// the sessions were created, or after the window: the drain, the read-back, waiting
    /// for a turn to close).
    pub jeopardy_in_window: u64,
    /// Of `jeopardy`, the episodes that began while the sessions were created (the ramp,
    /// until the last one was); the others began after the window.
    #[serde(default)]
    pub jeopardy_in_ramp: u64,
    /// Safe events: jeopardy episodes that ended with a KeepAlive reply, so the session
    /// survived (the client library's `Event::Safe`). A count of episodes, not of sessions
    /// in a state (the timeline's [`SessionStates::current`] is that).
    pub safe: u64,
    /// Sessions the server declared expired, or whose grace period ran out locally.
    pub expired: u64,
    /// KeepAlive replies received.
    pub keepalives: u64,
    /// KeepAlive calls that failed.
    pub keepalive_errors: u64,
    /// Times a session moved to another proxy after its proxy failed.
    pub moved: u64,
    /// Clients whose sessions all closed cleanly at the end.
    pub closed: u64,
}

/// One operation kind over one interval of the timeline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IntervalOp {
    /// Operations that completed successfully in the interval.
    pub count: u64,
    /// Operations that failed in the interval.
    pub errors: u64,
    /// `count` per second of the interval.
    #[serde(deserialize_with = "float_or_null")]
    pub throughput_per_s: f64,
    /// Latency percentiles of the interval's successful operations (null when there were
    /// none).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// p99.9 of the same (left out of the JSON when there were none, as in reports written
    /// before it was recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p999_ms: Option<f64>,
    /// Arrivals whose intended send time fell in the interval: the offered (asked) load,
    /// sent or dropped, against `count`, the achieved. Left out of the JSON when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub offered: u64,
}

/// `skip_serializing_if` for counters that older reports did not have.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl IntervalOp {
    /// Offered arrivals per second of an interval of `secs`.
    pub fn offered_per_s(&self, secs: f64) -> f64 {
        throughput(self.offered, secs)
    }

    /// The figures of an interval of `secs` whose successful operations are in `h`.
    pub fn new(h: &Histogram<u64>, errors: u64, secs: f64) -> IntervalOp {
        let (p50_ms, p99_ms, p999_ms) = if h.is_empty() {
            (None, None, None)
        } else {
            let p = percentiles(h);
            (Some(p.p50_ms), Some(p.p99_ms), Some(p.p999_ms))
        };
        IntervalOp {
            count: h.len(),
            errors,
            throughput_per_s: throughput(h.len(), secs),
            p50_ms,
            p99_ms,
            p999_ms,
            offered: 0,
        }
    }
}

/// The simulated sessions' states at one instant. (A state, not an event: the whole-run
/// [`SessionOutcomes::safe`] counts Safe *events*, jeopardy episodes that ended well.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionStates {
    /// Live sessions whose lease is current (not in jeopardy). Reports written before this
    /// name called it `safe`, which now means only the Safe event.
    #[serde(alias = "safe")]
    pub current: u64,
    /// Live sessions in jeopardy right now (local lease run out, no KeepAlive reply yet).
    pub jeopardy: u64,
    /// Sessions expired so far (cumulative).
    pub expired: u64,
}

/// One sample of the timeline: the interval `(t_s - dt_s, t_s]` of the measured window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimelineSample {
    /// Seconds since the measured window started, at the end of the interval.
    #[serde(deserialize_with = "float_or_null")]
    pub t_s: f64,
    /// The interval's length in seconds (1, give or take the scheduler).
    #[serde(deserialize_with = "float_or_null")]
    pub dt_s: f64,
    /// Per operation kind: `read`, `write`, `lock`.
    pub ops: BTreeMap<String, IntervalOp>,
    /// Session states at `t_s`.
    pub sessions: SessionStates,
    /// Calls made again in the interval after a retryable failure (all operation kinds).
    /// Left out of the JSON when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: u64,
    /// Session calls (CreateSession, KeepAlive, CloseSession) that failed in the interval;
    /// the operations' failures are in `ops`. Left out of the JSON when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub session_errors: u64,
}

/// The whole report, as written by `--json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// `proxies` or `cells`.
    pub target: String,
    pub addresses: Vec<String>,
    pub connections: u64,
    pub files: u64,
    /// The directories the files are spread over (`--dirs`); null (and left out of the
    /// JSON) at the default, [`crate::workload::DIRS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirs: Option<u64>,
    #[serde(deserialize_with = "float_or_null")]
    pub zipf: f64,
    /// Requested total rates, per second.
    #[serde(deserialize_with = "float_or_null")]
    pub read_rate: f64,
    #[serde(deserialize_with = "float_or_null")]
    pub write_rate: f64,
    #[serde(deserialize_with = "float_or_null")]
    pub lock_rate: f64,
    /// Seconds spent creating the sessions before the measured window.
    #[serde(deserialize_with = "float_or_null")]
    pub ramp_s: f64,
    /// The measured window, in seconds (operations run only in it).
    #[serde(deserialize_with = "float_or_null")]
    pub duration_s: f64,
    /// Per operation kind: `read`, `write`, `lock`.
    pub ops: BTreeMap<String, OpReport>,
    /// All successful operations.
    pub ops_total: u64,
    /// All successful operations per second.
    #[serde(deserialize_with = "float_or_null")]
    pub throughput_per_s: f64,
    /// All failed operations and session calls (CreateSession, KeepAlive, CloseSession).
    pub errors: u64,
    /// Failures by `CALL:CODE` (Warren error code, or the gRPC code when there is none).
    pub errors_by_code: BTreeMap<String, u64>,
    /// The first error message seen for each key of `errors_by_code`.
    pub error_examples: BTreeMap<String, String>,
    /// Arrivals that were dropped because too many operations were already in flight.
    pub dropped: u64,
    /// Handles opened (lazily, on a session's first operation on a file).
    pub opens: u64,
    /// Calls made again after a retryable failure (a failover, a dead proxy).
    pub retries: u64,
    /// The longest any operation waited, successful or not, from its intended send time
    /// to its outcome, in ms: what a failover cost the unluckiest caller.
    #[serde(deserialize_with = "float_or_null")]
    pub longest_wait_ms: f64,
    /// Sessions each simulated client holds: 1 through proxies; direct to the cells, one at
    /// the meta cell and one at each data cell.
    pub sessions_per_client: u64,
    /// The faults injected (`--kill`, `--restart`) and when they took effect.
    pub faults: Vec<crate::fault::FaultRecord>,
    pub sessions: SessionOutcomes,
    /// Client KeepAlives at the proxies ÷ KeepAlives reaching the cells over the window
    /// (null without `--metrics`, or when no KeepAlive reached a cell).
    pub absorption_factor: Option<f64>,
    pub keepalives: Option<Absorption>,
    /// Each scraped admin endpoint's rates over the window.
    pub endpoints: Vec<EndpointReport>,
    /// Acknowledged writes that the files do not reflect when read back after the window
    /// (see [`crate::lost`]). `acked_lost_checked` is false when the read-back could not be
    /// done (operations still in flight, a read failed); `acked_lost` is then 0 and a note
    /// says why.
    pub acked_lost: u64,
    /// A file without the flag reads as checked: only an explicit `false` says the
    /// read-back was not done (as `plan` has always read it).
    #[serde(default = "absent_means_checked")]
    pub acked_lost_checked: bool,
    /// Things the reader should know (e.g. why a figure is missing).
    pub notes: Vec<String>,
    /// One sample a second from the start of the measured window until the operations in
    /// flight at its end have finished (operations count in the interval they completed in).
    pub timeline: Vec<TimelineSample>,
    /// Each server process's memory and CPU over the measured window, when the load test
    /// launched the deployment (`--deploy`; see [`crate::procstat`]); absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessReport>,
    /// The load generator's own CPU over the measured window (`member` is `loadtest`): what
    /// measuring costs, so that a reader can tell it apart from what is measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_generator: Option<ProcessReport>,
    /// The lock check over the run ([`crate::fence`]): acquisitions, overlapping holders,
    /// stale sequencers. Left out of the JSON when no lock was acquired.
    #[serde(skip_serializing_if = "crate::fence::LockChecks::is_empty")]
    pub locks: crate::fence::LockChecks,
    /// With `--reshard`: the move and what the clients saw of it ([`crate::reshard`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reshard: Option<crate::reshard::ReshardReport>,
    /// When, by which build and command line, against what shape of deployment
    /// (docs/loadtest.md, "Run metadata"). Absent from reports written before it existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    /// The deployment's members the run knows by name (`meta`, `c1`…, `p1`…) and their
    /// addresses: every member of a launched deployment; the targets of a `--target` run.
    /// The member table joins them with `endpoints` and `processes`
    /// ([`Report::member_rows`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberInfo>,
}

/// A run's metadata: what a capacity planner needs to read the figures later.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    /// When the command started, UTC, RFC 3339 (`2026-12-07T04:13:22Z`).
    pub started_at: String,
    /// The build: crate version, and the commit when it was built from git (what the
    /// `warren` binary was built from: its `version`).
    pub version: String,
    /// The command line, each argument quoted for a POSIX shell where it needs it.
    pub command: String,
    pub deployment: DeploymentShape,
}

impl RunInfo {
    /// The metadata of a run starting now, of the command line `args` (the program's name
    /// first), by the build `version`, against a deployment of `shape`.
    pub fn starting_now(args: &[String], version: String, deployment: DeploymentShape) -> RunInfo {
        RunInfo {
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            version,
            command: shell_words(args),
            deployment,
        }
    }
}

/// `args` as one line a POSIX shell reads back as the same words: each argument with a
/// character outside `[A-Za-z0-9_./:=,@%+-]` is single-quoted.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./:=,@%+-".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The deployment's shape, as far as the load test knows it: all of it for one it launched
/// (`--deploy`), what the target and the map say for one it was pointed at (`--target`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeploymentShape {
    /// Whether the load test launched it (`--deploy`).
    pub launched: bool,
    /// Data cells (the meta cell apart); null when not known (a `--target proxies` run).
    pub cells: Option<u64>,
    /// Proxies; null when not known (a `--target cells` run).
    pub proxies: Option<u64>,
    /// The session lease (`12s`); null when not known (a deployment it did not launch).
    pub lease: Option<String>,
    /// The cells' store (`embedded, 1 replica per cell`); null when not known.
    pub store: Option<String>,
    /// Whether the load generator dialled with TLS (`--deploy …,tls=on`, or --cacert/--cert/--key).
    pub tls: bool,
}

impl DeploymentShape {
    /// One line: `launched (--deploy): 3 data cells and a meta cell, 2 proxies, lease 12s,
    /// store embedded…, TLS on`; unknowns say so.
    pub fn describe(&self) -> String {
        let known =
            |v: Option<String>, what: &str| v.unwrap_or_else(|| format!("{what} not known"));
        format!(
            "{}: {}, {}, {}, {}, TLS {}",
            if self.launched {
                "launched by the load test (--deploy)"
            } else {
                "given (--target)"
            },
            known(
                self.cells
                    .map(|n| format!("{n} data cell{} and a meta cell", plural(n))),
                "cells"
            ),
            known(
                self.proxies
                    .map(|n| format!("{n} prox{}", if n == 1 { "y" } else { "ies" })),
                "proxies"
            ),
            known(self.lease.as_ref().map(|l| format!("lease {l}")), "lease"),
            known(self.store.as_ref().map(|s| format!("store {s}")), "store"),
            if self.tls { "on" } else { "off" },
        )
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// One member of the deployment by name, with its addresses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberInfo {
    /// `meta`, `c1`…, `p1`…
    pub name: String,
    /// `meta`, `cell` or `proxy`.
    pub role: String,
    /// Its gRPC `HOST:PORT`.
    pub addr: String,
    /// Its admin HTTP `HOST:PORT`, when known (the one `--metrics` scrapes).
    pub admin: Option<String>,
    /// A cell's store (`embedded`, `etcd`), as its `/status` gives it; null when not
    /// asked (a proxy, a member whose admin endpoint was not given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

/// One row of the member table: a member's name and addresses, the rates its `/metrics`
/// gave over the window and its process's CPU and memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberRow {
    /// The member's name; for a scraped endpoint no member is known by, its admin address.
    pub name: String,
    pub role: String,
    /// gRPC address (`-` when not known).
    pub addr: String,
    /// Admin address (`-` when not known).
    pub admin: String,
    /// RPCs it answered per second: a cell's `warren_rpc_total{tier="cell"}`, a proxy's
    /// `{tier="proxy"}`.
    pub rpc_per_s: Option<f64>,
    /// KeepAlives per second: those reaching a cell; the clients' at a proxy.
    pub keepalives_per_s: Option<f64>,
    pub process: Option<ProcessReport>,
}

/// What the member table's figures cover.
pub const MEMBER_TABLE_TITLE: &str = "members (RPC/s and KeepAlives/s from /metrics over the \
     run; CPU and RSS over the window, with --deploy)";

/// The columns of the member table, in the terminal summary and on the HTML page.
pub const MEMBER_TABLE_HEADER: [&str; 9] = [
    "member",
    "role",
    "address",
    "admin",
    "RPC/s",
    "KeepAlives/s",
    "CPU % core",
    "RSS MiB",
    "CPU µs/op",
];

impl MemberRow {
    /// The row's cells under [`MEMBER_TABLE_HEADER`], `-` for a figure not measured.
    pub fn figures(&self, ops: u64) -> [String; 9] {
        let rate =
            |v: Option<f64>, d: usize| v.map_or_else(|| "-".to_string(), |v| format!("{v:.d$}"));
        let [rss, cpu, per_op] = self
            .process
            .as_ref()
            .map(|p| p.table_figures(ops))
            .unwrap_or_else(|| ["-".into(), "-".into(), "-".into()]);
        [
            self.name.clone(),
            self.role.clone(),
            self.addr.clone(),
            self.admin.clone(),
            rate(self.rpc_per_s, 1),
            // A cell may see well under one KeepAlive a second through proxies.
            rate(self.keepalives_per_s, 2),
            cpu,
            rss,
            per_op,
        ]
    }
}

/// One server process of a deployment the load test launched, over the measured window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessReport {
    /// `meta`, `c1`, …, `p1`, …
    pub member: String,
    /// Its process at the window's end (null if it was not running then).
    pub pid: Option<u32>,
    /// Resident memory (`VmRSS`) at the window's end, in bytes.
    pub rss_bytes: Option<u64>,
    /// CPU time (user + system) used in the window, in seconds; null when it was not the
    /// same process at the window's start and end (killed or restarted by a fault).
    pub cpu_s: Option<f64>,
    /// Seconds between the readings at the window's start and end.
    #[serde(deserialize_with = "float_or_null")]
    pub window_s: f64,
    /// Why a figure is missing (null when both are there).
    pub partial: Option<String>,
}

impl ProcessReport {
    /// CPU used as a share of one core (0.25: a quarter of a core over the window).
    pub fn cpu_share(&self) -> Option<f64> {
        self.cpu_s
            .filter(|_| self.window_s > 0.0)
            .map(|c| c / self.window_s)
    }

    /// A process's figures in the member table ([`MEMBER_TABLE_HEADER`]): RSS in MiB and CPU as % of a core to 0.1, and CPU per
    /// operation in µs to 0.1 when `ops` operations ran; `-` for a figure not measured.
    pub fn table_figures(&self, ops: u64) -> [String; 3] {
        let or_dash = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
        [
            or_dash(self.rss_bytes.map(|b| b as f64 / MIB)),
            or_dash(self.cpu_share().map(|s| s * 100.0)),
            or_dash(self.cpu_s.filter(|_| ops > 0).map(|c| c * 1e6 / ops as f64)),
        ]
    }
}

/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// `acked_lost_checked` of a report that does not have the field.
fn absent_means_checked() -> bool {
    true
}

impl Report {
    /// Fills in the totals from `ops` and the error map.
    pub fn finish_totals(&mut self) {
        self.ops_total = self.ops.values().map(|o| o.count).sum();
        self.throughput_per_s = throughput(self.ops_total, self.duration_s);
        self.errors = self.errors_by_code.values().sum();
    }

    /// The rate asked for of an operation kind (`read`, `write`, `lock`), per second.
    pub fn rate_of(&self, op: &str) -> f64 {
        match op {
            "read" => self.read_rate,
            "write" => self.write_rate,
            "lock" => self.lock_rate,
            _ => 0.0,
        }
    }

    /// The operation kinds the tables show: each one asked for (a rate above 0) or that
    /// ran; the all-zero row of a kind nobody asked for (`lock` at `--lock-rate 0`) is left
    /// out. The JSON keeps every kind.
    pub fn shown_ops(&self) -> impl Iterator<Item = (&String, &OpReport)> {
        self.ops
            .iter()
            .filter(|(name, o)| self.rate_of(name) > 0.0 || o.count + o.errors + o.busy > 0)
    }

    /// The member table: each known member ([`Report::members`]) with the rates of its
    /// scraped admin endpoint and its process's figures; then any process and any scraped
    /// endpoint no member is known by (an endpoint given with `--metrics` to a `--target`
    /// run: named by its admin address only).
    pub fn member_rows(&self) -> Vec<MemberRow> {
        let mut used_endpoint = vec![false; self.endpoints.len()];
        let mut used_process = vec![false; self.processes.len()];
        let rates = |role: &str, e: &EndpointReport| -> (Option<f64>, Option<f64>) {
            let sum = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
            };
            match role {
                "proxy" => (e.proxy_rpc_per_s, e.client_keepalives_per_s),
                "cell" | "meta" => (e.rpc_per_s, e.cell_keepalives_per_s),
                // One process serving both tiers (warren dev): both tiers' RPCs, and the
                // clients' KeepAlives.
                _ => (
                    sum(e.rpc_per_s, e.proxy_rpc_per_s),
                    e.client_keepalives_per_s.or(e.cell_keepalives_per_s),
                ),
            }
        };
        let mut rows = Vec::new();
        for m in &self.members {
            let mut row = MemberRow {
                name: m.name.clone(),
                role: m.role.clone(),
                addr: m.addr.clone(),
                admin: m.admin.clone().unwrap_or_else(|| "-".into()),
                ..Default::default()
            };
            if let Some(i) = m
                .admin
                .as_ref()
                .and_then(|a| self.endpoints.iter().position(|e| &e.admin == a))
            {
                used_endpoint[i] = true;
                (row.rpc_per_s, row.keepalives_per_s) = rates(&m.role, &self.endpoints[i]);
            }
            if let Some(i) = self.processes.iter().position(|p| p.member == m.name) {
                used_process[i] = true;
                row.process = Some(self.processes[i].clone());
            }
            rows.push(row);
        }
        for (p, _) in self.processes.iter().zip(used_process).filter(|(_, u)| !u) {
            rows.push(MemberRow {
                name: p.member.clone(),
                role: "-".into(),
                addr: "-".into(),
                admin: "-".into(),
                process: Some(p.clone()),
                ..Default::default()
            });
        }
        for (e, _) in self.endpoints.iter().zip(used_endpoint).filter(|(_, u)| !u) {
            let (rpc_per_s, keepalives_per_s) = rates(&e.role, e);
            rows.push(MemberRow {
                name: "-".into(),
                role: e.role.clone(),
                addr: "-".into(),
                admin: e.admin.clone(),
                rpc_per_s,
                keepalives_per_s,
                process: None,
            });
        }
        rows
    }

    /// The readable terminal summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "warren loadtest: {} sessions over {} connections to {} {}; ramp {:.1} s, measured {:.1} s",
            self.sessions.target,
            self.connections,
            self.target,
            self.addresses.join(","),
            self.ramp_s,
            self.duration_s
        );
        if self.sessions_per_client > 1 {
            let _ = writeln!(
                s,
                "direct: each client holds {} sessions (its home session at the meta cell and \
                 one at each data cell) and routes by the partition map",
                self.sessions_per_client
            );
        }
        let _ = writeln!(
            s,
            "workload: read {}/s, write {}/s, lock {}/s (open-loop, Poisson) over {} files in {} directories, Zipf s={}",
            self.read_rate, self.write_rate, self.lock_rate, self.files, self.dirs.unwrap_or(crate::workload::DIRS), self.zipf
        );
        let _ = writeln!(s);
        // Column widths of the terminal table: the name left-aligned, the figures right.
        let row = |s: &mut String, name: &str, figures: &[&str]| {
            let _ = write!(s, "{name:<6}");
            for (figure, width) in figures.iter().zip([9, 7, 9, 9, 9, 9, 9, 9]) {
                let _ = write!(s, " {figure:>width$}");
            }
        };
        let [first, rest @ ..] = OP_TABLE_HEADER;
        row(&mut s, first, &rest);
        s.push('\n');
        for (name, o) in self.shown_ops() {
            let figures = o.table_figures();
            row(&mut s, name, &figures.each_ref().map(String::as_str));
            if o.busy > 0 {
                let _ = write!(s, "  ({} found the lock held)", o.busy);
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "total: {} operations, {:.1}/s; {} handles opened; {} arrivals dropped",
            self.ops_total, self.throughput_per_s, self.opens, self.dropped
        );
        let _ = writeln!(
            s,
            "longest wait: {:.1} ms (any operation, from its intended send time); {} retried calls",
            self.longest_wait_ms, self.retries
        );
        let ss = &self.sessions;
        let _ = writeln!(
            s,
            "\nsessions: {} created ({} create errors), {} KeepAlive replies ({} errors); \
             {} jeopardy episodes ({} in the ramp, {} in the window, {} after it), {} back to \
             safe (Safe events), {} expired; {} moved to another proxy; {} closed",
            ss.created,
            ss.create_errors,
            ss.keepalives,
            ss.keepalive_errors,
            ss.jeopardy,
            ss.jeopardy_in_ramp,
            ss.jeopardy_in_window,
            ss.jeopardy
                .saturating_sub(ss.jeopardy_in_ramp + ss.jeopardy_in_window),
            ss.safe,
            ss.expired,
            ss.moved,
            ss.closed
        );
        for f in &self.faults {
            let _ = write!(s, "fault: {} {} at {:.1} s ", f.action, f.member, f.at_s);
            let _ = match f.outcome() {
                Ok(done) => writeln!(s, "(done at {done:.1} s)"),
                Err(why) => writeln!(s, "FAILED: {why}"),
            };
        }
        if self.errors_by_code.is_empty() {
            let _ = writeln!(s, "errors: none");
        } else {
            let _ = writeln!(s, "errors: {}", self.errors);
            for (k, n) in &self.errors_by_code {
                match self.error_examples.get(k) {
                    Some(m) if !m.is_empty() => {
                        let _ = writeln!(s, "  {n} × {k} (e.g. {m})");
                    }
                    _ => {
                        let _ = writeln!(s, "  {n} × {k}");
                    }
                }
            }
        }
        match (&self.keepalives, self.absorption_factor) {
            (Some(k), Some(f)) => {
                let _ = writeln!(
                    s,
                    "\nKeepAlive absorption factor: {f:.1} ({} client KeepAlives at the proxies, {} reaching the cells)",
                    k.client_at_proxies, k.at_cells
                );
            }
            (Some(k), None) => {
                let _ = writeln!(
                    s,
                    "\nKeepAlive absorption factor: unbounded ({} client KeepAlives at the proxies, none reached a cell in the window)",
                    k.client_at_proxies
                );
            }
            _ => {}
        }
        let _ = writeln!(
            s,
            "acked_lost: {}{}",
            self.acked_lost,
            if self.acked_lost_checked {
                ""
            } else {
                " (not checked: see the notes)"
            }
        );
        let l = &self.locks;
        if self.lock_rate > 0.0 || !l.is_empty() {
            let _ = writeln!(
                s,
                "lock check: {} acquisitions, {} overlapping holders, {} stale sequencers",
                l.acquired, l.overlaps, l.stale_sequencers
            );
        }
        if let Some(r) = &self.reshard {
            s.push('\n');
            s.push_str(&r.summary(
                &self.locks,
                self.acked_lost_checked.then_some(self.acked_lost),
            ));
        }
        let rows = self.member_rows();
        if !rows.is_empty() {
            let _ = writeln!(s, "\n{MEMBER_TABLE_TITLE}:");
            let cells: Vec<[String; 9]> = std::iter::once(MEMBER_TABLE_HEADER.map(String::from))
                .chain(rows.iter().map(|r| r.figures(self.ops_total)))
                .collect();
            let widths: Vec<usize> = (0..9)
                .map(|k| {
                    cells
                        .iter()
                        .map(|c| c[k].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for (i, c) in cells.iter().enumerate() {
                let mut line = String::new();
                for (k, (cell, w)) in c.iter().zip(&widths).enumerate() {
                    // Names and addresses left-aligned, figures right-aligned.
                    let _ = if k < 4 {
                        write!(line, "{cell:<w$}  ")
                    } else {
                        write!(line, "{cell:>w$}  ")
                    };
                }
                let partial = i
                    .checked_sub(1)
                    .and_then(|r| rows[r].process.as_ref())
                    .and_then(|p| p.partial.as_deref());
                if let Some(why) = partial {
                    let _ = write!(line, "(partial: {why})");
                }
                let _ = writeln!(s, "{}", line.trim_end());
            }
        }
        if let Some(g) = &self.load_generator {
            let [_, cpu, per_op] = g.table_figures(self.ops_total);
            let _ = writeln!(
                s,
                "load generator (this process): CPU {cpu} % of a core, {per_op} µs/op"
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

/// `warren loadtest compare`: one figure of the run through the proxies ÷ the same figure
/// of the direct run (null when either is missing or the direct one is 0).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OpRatios {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub throughput: Option<f64>,
}

/// `warren loadtest compare`: the run through the proxies against the direct run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ratios {
    /// Per operation kind, proxies ÷ direct: latency p50 and p99, and throughput.
    pub ops: BTreeMap<String, OpRatios>,
    /// KeepAlives reaching the cells per second, summed over the scraped cells, in each run.
    pub cell_keepalives_per_s_direct: Option<f64>,
    pub cell_keepalives_per_s_proxies: Option<f64>,
    /// Direct ÷ proxies: how many times fewer KeepAlives reach the cells through proxies.
    pub cell_keepalive_reduction: Option<f64>,
    /// RPCs the cells answered per second, summed over the scraped cells, in each run.
    pub cell_rpc_per_s_direct: Option<f64>,
    pub cell_rpc_per_s_proxies: Option<f64>,
    /// Direct ÷ proxies: how many times fewer RPCs reach the cells through proxies.
    pub cell_rpc_reduction: Option<f64>,
    /// Failed calls in each run.
    pub errors_direct: u64,
    pub errors_proxies: u64,
}

/// `a / b`, when both are there and `b` is positive.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

/// A per-cell rate summed over a report's cell endpoints (null when none reports it).
fn cells_sum(r: &Report, rate: fn(&EndpointReport) -> Option<f64>) -> Option<f64> {
    r.endpoints
        .iter()
        .filter(|e| e.role.contains("cell"))
        .filter_map(rate)
        .fold(None, |acc, x| Some(acc.unwrap_or(0.0) + x))
}

impl Ratios {
    /// `proxies` ÷ `direct`, figure by figure.
    pub fn of(proxies: &Report, direct: &Report) -> Ratios {
        let mut ops = BTreeMap::new();
        for (name, p) in &proxies.ops {
            let Some(d) = direct.ops.get(name) else {
                continue;
            };
            let some = |o: &OpReport, v: f64| (o.count > 0).then_some(v);
            ops.insert(
                name.clone(),
                OpRatios {
                    p50: ratio(some(p, p.latency.p50_ms), some(d, d.latency.p50_ms)),
                    p99: ratio(some(p, p.latency.p99_ms), some(d, d.latency.p99_ms)),
                    throughput: ratio(some(p, p.throughput_per_s), some(d, d.throughput_per_s)),
                },
            );
        }
        let ka_d = cells_sum(direct, |e| e.cell_keepalives_per_s);
        let ka_p = cells_sum(proxies, |e| e.cell_keepalives_per_s);
        let rpc_d = cells_sum(direct, |e| e.rpc_per_s);
        let rpc_p = cells_sum(proxies, |e| e.rpc_per_s);
        Ratios {
            ops,
            cell_keepalives_per_s_direct: ka_d,
            cell_keepalives_per_s_proxies: ka_p,
            cell_keepalive_reduction: ratio(ka_d, ka_p),
            cell_rpc_per_s_direct: rpc_d,
            cell_rpc_per_s_proxies: rpc_p,
            cell_rpc_reduction: ratio(rpc_d, rpc_p),
            errors_direct: direct.errors,
            errors_proxies: proxies.errors,
        }
    }

    /// The terminal table.
    pub fn summary(&self) -> String {
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
        let mut s = String::new();
        let _ = writeln!(s, "=== through the proxies ÷ direct to the cells");
        let _ = writeln!(
            s,
            "{:<6} {:>9} {:>9} {:>11}",
            "op", "p50", "p99", "throughput"
        );
        for (name, r) in &self.ops {
            let _ = writeln!(
                s,
                "{:<6} {:>9} {:>9} {:>11}",
                name,
                f(r.p50),
                f(r.p99),
                f(r.throughput)
            );
        }
        let _ = writeln!(
            s,
            "KeepAlives reaching the cells: {}/s direct, {}/s through proxies ({}× fewer)",
            f(self.cell_keepalives_per_s_direct),
            f(self.cell_keepalives_per_s_proxies),
            f(self.cell_keepalive_reduction)
        );
        let _ = writeln!(
            s,
            "RPCs at the cells: {}/s direct, {}/s through proxies ({}× fewer)",
            f(self.cell_rpc_per_s_direct),
            f(self.cell_rpc_per_s_proxies),
            f(self.cell_rpc_reduction)
        );
        let _ = writeln!(
            s,
            "errors: {} direct, {} through proxies",
            self.errors_direct, self.errors_proxies
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_ratios_are_proxies_over_direct() {
        let op = |count, p50, p99, tput| OpReport {
            count,
            throughput_per_s: tput,
            latency: Percentiles {
                p50_ms: p50,
                p99_ms: p99,
                ..Default::default()
            },
            ..Default::default()
        };
        let cell = |ka: f64, rpc: f64| EndpointReport {
            admin: "a".into(),
            role: "cell".into(),
            window_s: 10.0,
            rpc_per_s: Some(rpc),
            proxy_rpc_per_s: None,
            cell_keepalives_per_s: Some(ka),
            client_keepalives_per_s: None,
        };
        let proxy = EndpointReport {
            role: "proxy".into(),
            cell_keepalives_per_s: None,
            rpc_per_s: None,
            client_keepalives_per_s: Some(500.0),
            ..cell(0.0, 0.0)
        };
        let mut direct = Report::default();
        direct.ops.insert("read".into(), op(1000, 2.0, 8.0, 100.0));
        direct.ops.insert("lock".into(), op(0, 0.0, 0.0, 0.0));
        direct.endpoints = vec![cell(300.0, 400.0), cell(100.0, 200.0)];
        direct.errors = 3;
        let mut proxied = Report::default();
        proxied
            .ops
            .insert("read".into(), op(1000, 1.0, 12.0, 100.0));
        proxied.ops.insert("lock".into(), op(5, 1.0, 1.0, 0.5));
        proxied.endpoints = vec![cell(10.0, 50.0), cell(10.0, 50.0), proxy];
        let r = Ratios::of(&proxied, &direct);
        assert_eq!(r.ops["read"].p50, Some(0.5));
        assert_eq!(r.ops["read"].p99, Some(1.5));
        assert_eq!(r.ops["read"].throughput, Some(1.0));
        // No lock ran directly: no ratio, not a division by zero.
        assert_eq!(r.ops["lock"], OpRatios::default());
        // The proxy's endpoint is not a cell and is not summed.
        assert_eq!(r.cell_keepalives_per_s_direct, Some(400.0));
        assert_eq!(r.cell_keepalives_per_s_proxies, Some(20.0));
        assert_eq!(r.cell_keepalive_reduction, Some(20.0));
        assert_eq!(r.cell_rpc_reduction, Some(6.0));
        assert_eq!((r.errors_direct, r.errors_proxies), (3, 0));
        let text = r.summary();
        assert!(text.contains("(20.00× fewer)"), "{text}");
        assert!(
            text.contains("read        0.50      1.50        1.00"),
            "{text}"
        );
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
    }

    #[test]
    fn the_terminal_leaves_out_unasked_kinds_and_names_safe_events() {
        let mut r = sample_report();
        r.ops.insert("write".into(), OpReport::default());
        let text = r.summary();
        // Writes were asked for (10/s): their row stays, zeros and all.
        assert!(text.contains("\nwrite          0"), "{text}");
        assert!(text.contains("\nlock "), "{text}");
        assert!(text.contains("lock check:"), "{text}");
        // No lock asked for, none ran: no lock row and no lock check.
        r.lock_rate = 0.0;
        r.ops.insert("lock".into(), OpReport::default());
        let text = r.summary();
        assert!(!text.contains("\nlock "), "{text}");
        assert!(!text.contains("lock check"), "{text}");
        // The JSON keeps every kind.
        assert!(serde_json::to_value(&r).unwrap()["ops"]["lock"].is_object());
        // Safe means the Safe event, counted as episodes; no "safe N" of sessions.
        assert!(
            text.contains("2 jeopardy episodes (0 in the ramp, 1 in the window, 1 after it), 2 back to safe (Safe events), 0 expired"),
            "{text}"
        );
    }

    #[test]
    fn run_metadata_quotes_the_command_and_describes_the_deployment() {
        let args: Vec<String> = [
            "warren",
            "loadtest",
            "run",
            "--target",
            "proxies=127.0.0.1:7201",
            "--html",
            "my report.html",
            "--x",
            "it's",
            "",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            shell_words(&args),
            r#"warren loadtest run --target proxies=127.0.0.1:7201 --html 'my report.html' --x 'it'\''s' ''"#
        );
        let info =
            RunInfo::starting_now(&args, "0.1.0 (abc1234)".into(), DeploymentShape::default());
        // 2026-12-07T04:13:22Z
        assert_eq!(info.started_at.len(), 20, "{info:?}");
        assert!(info.started_at.ends_with('Z') && info.started_at.as_bytes()[10] == b'T');
        assert_eq!(info.version, "0.1.0 (abc1234)", "{info:?}");
        let given = DeploymentShape {
            proxies: Some(2),
            ..Default::default()
        };
        assert_eq!(
            given.describe(),
            "given (--target): cells not known, 2 proxies, lease not known, store not known, TLS off"
        );
        // Read back from JSON, and absent from an older report.
        let r = Report {
            run: Some(info.clone()),
            ..sample_report()
        };
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.run, Some(info));
        assert_eq!(
            serde_json::from_str::<Report>(REPORT_JSON).unwrap().run,
            None
        );
    }

    #[test]
    fn old_timelines_read_safe_as_current() {
        let t: TimelineSample =
            serde_json::from_str(r#"{"t_s":1,"sessions":{"safe":7,"jeopardy":1}}"#).unwrap();
        assert_eq!(t.sessions.current, 7);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["sessions"]["current"], 7);
        assert!(v["sessions"].get("safe").is_none(), "{v}");
    }

    #[test]
    fn percentiles_of_known_samples() {
        // 1..=1000 µs, once each: every quantile is exact at 3 significant digits.
        let mut h = latency_histogram();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let p = percentiles(&h);
        assert_eq!(p.p50_ms, 0.5);
        assert_eq!(p.p90_ms, 0.9);
        assert_eq!(p.p99_ms, 0.99);
        assert_eq!(p.p999_ms, 0.999);
        assert_eq!(p.max_ms, 1.0);
        assert!((p.mean_ms - 0.5005).abs() < 1e-9);
    }

    #[test]
    fn percentiles_see_the_tail() {
        // 990 fast operations (1 ms) and 10 slow ones (2 s): p99 is fast, p99.9 and max slow.
        let mut h = latency_histogram();
        h.record_n(1000, 990).unwrap();
        h.record_n(2_000_000, 10).unwrap();
        let p = percentiles(&h);
        assert_eq!(p.p50_ms, 1.0);
        assert_eq!(p.p99_ms, 1.0);
        // 3 significant digits: 2 s is recorded within 0.1%.
        assert!((p.p999_ms - 2000.0).abs() <= 2.0, "{p:?}");
        assert!((p.max_ms - 2000.0).abs() <= 2.0, "{p:?}");
    }

    #[test]
    fn empty_histogram_is_all_zero() {
        assert_eq!(percentiles(&latency_histogram()), Percentiles::default());
    }

    #[test]
    fn throughput_and_totals() {
        assert_eq!(throughput(300, 3.0), 100.0);
        assert_eq!(throughput(5, 0.0), 0.0);
        let mut h = latency_histogram();
        for _ in 0..30 {
            h.record(2000).unwrap();
        }
        let mut r = Report {
            duration_s: 3.0,
            ..Default::default()
        };
        r.ops.insert("read".into(), OpReport::new(&h, 2, 0, 3.0));
        r.ops.insert(
            "write".into(),
            OpReport::new(&latency_histogram(), 0, 0, 3.0),
        );
        r.errors_by_code.insert("read:NOT_FOUND".into(), 2);
        r.errors_by_code.insert("KeepAlive:UNAVAILABLE".into(), 1);
        r.finish_totals();
        assert_eq!(r.ops["read"].count, 30);
        assert_eq!(r.ops["read"].throughput_per_s, 10.0);
        assert_eq!(r.ops_total, 30);
        assert_eq!(r.throughput_per_s, 10.0);
        assert_eq!(r.errors, 3);
    }

    #[test]
    fn json_has_plain_keys() {
        let mut h = latency_histogram();
        h.record(1500).unwrap();
        let mut r = Report {
            duration_s: 1.0,
            absorption_factor: Some(42.0),
            ..Default::default()
        };
        r.ops.insert("read".into(), OpReport::new(&h, 0, 0, 1.0));
        r.sessions.jeopardy = 3;
        r.finish_totals();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["ops"]["read"]["p99_ms"], 1.5);
        assert_eq!(v["ops"]["read"]["count"], 1);
        assert_eq!(v["sessions"]["jeopardy"], 3);
        assert_eq!(v["absorption_factor"], 42.0);
        assert_eq!(v["acked_lost"], 0);
        assert_eq!(v["errors"], 0);
        let text = r.summary();
        assert!(text.contains("absorption") || r.keepalives.is_none());
        assert!(text.contains("read"));
    }

    /// A report with every part filled in: the one [`REPORT_JSON`] holds.
    fn sample_report() -> Report {
        use crate::fault::FaultRecord;
        let mut r = Report {
            target: "proxies".into(),
            addresses: vec!["127.0.0.1:7201".into(), "127.0.0.1:7202".into()],
            connections: 4,
            files: 20,
            zipf: 1.0,
            read_rate: 50.0,
            write_rate: 10.0,
            lock_rate: 5.0,
            ramp_s: 1.5,
            duration_s: 3.0,
            dropped: 1,
            opens: 12,
            retries: 2,
            longest_wait_ms: 812.25,
            sessions_per_client: 1,
            absorption_factor: Some(12.5),
            keepalives: Some(Absorption {
                client_at_proxies: 100.0,
                at_cells: 8.0,
                factor: Some(12.5),
            }),
            acked_lost: 0,
            acked_lost_checked: true,
            notes: vec!["a run shorter than one KeepAlive period".into()],
            ..Default::default()
        };
        r.ops.insert(
            "read".into(),
            OpReport {
                count: 150,
                errors: 1,
                busy: 0,
                throughput_per_s: 50.0,
                latency: Percentiles {
                    p50_ms: 0.5,
                    p90_ms: 0.9,
                    p99_ms: 1.25,
                    p999_ms: 2.5,
                    max_ms: 3.0,
                    mean_ms: 0.625,
                },
            },
        );
        r.ops.insert(
            "lock".into(),
            OpReport {
                count: 14,
                busy: 1,
                throughput_per_s: 4.5,
                ..Default::default()
            },
        );
        r.errors_by_code.insert("read/Open:UNAVAILABLE".into(), 1);
        r.error_examples
            .insert("read/Open:UNAVAILABLE".into(), "proxy gone".into());
        r.faults = vec![
            FaultRecord {
                action: "kill".into(),
                member: "proxy:1".into(),
                at_s: 1.0,
                done_s: Some(1.25),
                error: None,
            },
            FaultRecord {
                action: "restart".into(),
                member: "master:c1".into(),
                at_s: 2.0,
                done_s: None,
                error: Some("no such member".into()),
            },
        ];
        r.sessions = SessionOutcomes {
            target: 50,
            created: 50,
            create_errors: 0,
            jeopardy: 2,
            jeopardy_in_window: 1,
            jeopardy_in_ramp: 0,
            safe: 2,
            expired: 0,
            keepalives: 100,
            keepalive_errors: 0,
            moved: 3,
            closed: 50,
        };
        r.endpoints = vec![EndpointReport {
            admin: "127.0.0.1:7281".into(),
            role: "proxy".into(),
            window_s: 4.5,
            rpc_per_s: None,
            proxy_rpc_per_s: Some(60.5),
            cell_keepalives_per_s: None,
            client_keepalives_per_s: Some(22.25),
        }];
        let mut ops = BTreeMap::new();
        ops.insert(
            "read".to_string(),
            IntervalOp {
                count: 50,
                errors: 1,
                throughput_per_s: 50.0,
                p50_ms: Some(0.5),
                p99_ms: Some(1.25),
                p999_ms: None,
                offered: 0,
            },
        );
        ops.insert("lock".to_string(), IntervalOp::default());
        r.timeline = vec![TimelineSample {
            t_s: 1.0,
            dt_s: 1.0,
            ops,
            sessions: SessionStates {
                current: 48,
                jeopardy: 2,
                expired: 0,
            },
            retries: 0,
            session_errors: 0,
        }];
        r.finish_totals();
        r
    }

    /// [`sample_report`] as `warren loadtest run --json` wrote it before `Report` could be
    /// read back (pretty-printed, as `--json` writes it): the shape old files have.
    const REPORT_JSON: &str = r#"{
  "target": "proxies",
  "addresses": [
    "127.0.0.1:7201",
    "127.0.0.1:7202"
  ],
  "connections": 4,
  "files": 20,
  "zipf": 1.0,
  "read_rate": 50.0,
  "write_rate": 10.0,
  "lock_rate": 5.0,
  "ramp_s": 1.5,
  "duration_s": 3.0,
  "ops": {
    "lock": {
      "count": 14,
      "errors": 0,
      "busy": 1,
      "throughput_per_s": 4.5,
      "p50_ms": 0.0,
      "p90_ms": 0.0,
      "p99_ms": 0.0,
      "p999_ms": 0.0,
      "max_ms": 0.0,
      "mean_ms": 0.0
    },
    "read": {
      "count": 150,
      "errors": 1,
      "busy": 0,
      "throughput_per_s": 50.0,
      "p50_ms": 0.5,
      "p90_ms": 0.9,
      "p99_ms": 1.25,
      "p999_ms": 2.5,
      "max_ms": 3.0,
      "mean_ms": 0.625
    }
  },
  "ops_total": 164,
  "throughput_per_s": 54.666666666666664,
  "errors": 1,
  "errors_by_code": {
    "read/Open:UNAVAILABLE": 1
  },
  "error_examples": {
    "read/Open:UNAVAILABLE": "proxy gone"
  },
  "dropped": 1,
  "opens": 12,
  "retries": 2,
  "longest_wait_ms": 812.25,
  "sessions_per_client": 1,
  "faults": [
    {
      "action": "kill",
      "member": "proxy:1",
      "at_s": 1.0,
      "done_s": 1.25,
      "error": null
    },
    {
      "action": "restart",
      "member": "master:c1",
      "at_s": 2.0,
      "done_s": null,
      "error": "no such member"
    }
  ],
  "sessions": {
    "target": 50,
    "created": 50,
    "create_errors": 0,
    "jeopardy": 2,
    "jeopardy_in_window": 1,
    "jeopardy_in_ramp": 0,
    "safe": 2,
    "expired": 0,
    "keepalives": 100,
    "keepalive_errors": 0,
    "moved": 3,
    "closed": 50
  },
  "absorption_factor": 12.5,
  "keepalives": {
    "client_at_proxies": 100.0,
    "at_cells": 8.0,
    "factor": 12.5
  },
  "endpoints": [
    {
      "admin": "127.0.0.1:7281",
      "role": "proxy",
      "window_s": 4.5,
      "rpc_per_s": null,
      "proxy_rpc_per_s": 60.5,
      "cell_keepalives_per_s": null,
      "client_keepalives_per_s": 22.25
    }
  ],
  "acked_lost": 0,
  "acked_lost_checked": true,
  "notes": [
    "a run shorter than one KeepAlive period"
  ],
  "timeline": [
    {
      "t_s": 1.0,
      "dt_s": 1.0,
      "ops": {
        "lock": {
          "count": 0,
          "errors": 0,
          "throughput_per_s": 0.0,
          "p50_ms": null,
          "p99_ms": null
        },
        "read": {
          "count": 50,
          "errors": 1,
          "throughput_per_s": 50.0,
          "p50_ms": 0.5,
          "p99_ms": 1.25
        }
      },
      "sessions": {
        "safe": 48,
        "jeopardy": 2,
        "expired": 0
      }
    }
  ]
}"#;

    #[test]
    fn a_written_report_reads_back() {
        let r = sample_report();
        let pretty = serde_json::to_string_pretty(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&pretty).unwrap(), r);
        let compact = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&compact).unwrap(), r);
        // With the server processes of a deployment the load test launched.
        let r = Report {
            processes: sample_processes(),
            ..sample_report()
        };
        let pretty = serde_json::to_string_pretty(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&pretty).unwrap(), r);
        let compact = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&compact).unwrap(), r);
        // An empty report too (no ops, no timeline, acked_lost_checked false).
        let empty = serde_json::to_string(&Report::default()).unwrap();
        assert_eq!(
            serde_json::from_str::<Report>(&empty).unwrap(),
            Report::default()
        );
    }

    /// Two members measured over a 10 s window, one killed in it.
    fn sample_processes() -> Vec<ProcessReport> {
        vec![
            ProcessReport {
                member: "c1".into(),
                pid: Some(4242),
                rss_bytes: Some(30 << 20),
                cpu_s: Some(1.5),
                window_s: 10.0,
                partial: None,
            },
            ProcessReport {
                member: "p1".into(),
                pid: None,
                rss_bytes: None,
                cpu_s: None,
                window_s: 10.0,
                partial: Some(
                    "nothing to read at the window's end: it was not running (killed, or exited)"
                        .into(),
                ),
            },
        ]
    }

    #[test]
    fn server_processes_have_plain_keys_and_a_row_each_in_the_summary() {
        let r = Report {
            processes: sample_processes(),
            ..sample_report()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["processes"][0]["member"], "c1");
        assert_eq!(v["processes"][0]["rss_bytes"], 30 << 20);
        assert_eq!(v["processes"][0]["cpu_s"], 1.5);
        assert_eq!(v["processes"][0]["window_s"], 10.0);
        assert!(v["processes"][1]["cpu_s"].is_null());
        // A report without them (not --deploy) writes no `processes` key.
        let v = serde_json::to_value(sample_report()).unwrap();
        assert!(v.get("processes").is_none(), "{v}");
        let text = r.summary();
        // 1.5 s over 10 s; 164 operations ran: 1.5 s / 164 = 9146.3 µs each.
        assert!(
            text.contains(
                "\nmembers (RPC/s and KeepAlives/s from /metrics over the run; CPU and RSS \
                 over the window, with --deploy):\n\
                 member  role   address  admin           RPC/s  KeepAlives/s  CPU % core  RSS MiB  CPU µs/op\n\
                 c1      -      -        -                   -             -        15.0     30.0     9146.3\n\
                 p1      -      -        -                   -             -           -        -          -  \
                 (partial: nothing to read at the window's end: it was not running (killed, or exited))\n\
                 -       proxy  -        127.0.0.1:7281   60.5         22.25           -        -          -\n"
            ),
            "{text}"
        );
        // No operations ran: no per-operation figure.
        assert_eq!(r.processes[0].table_figures(0), ["30.0", "15.0", "-"]);
    }

    #[test]
    fn todays_json_shape_loads_and_is_written_byte_for_byte() {
        assert_eq!(
            serde_json::from_str::<Report>(REPORT_JSON).unwrap(),
            sample_report()
        );
        // Written the same, but for the timeline's session state of live sessions with a
        // current lease, now `current` (`safe` names only the Safe event); without the new
        // keys (run, members, offered, p999_ms, retries, session_errors) when they are
        // absent or 0.
        assert_eq!(
            serde_json::to_string_pretty(&sample_report()).unwrap(),
            REPORT_JSON.replace("\"safe\": 48", "\"current\": 48")
        );
    }

    #[test]
    fn partial_json_loads_with_defaults() {
        // Missing fields take their defaults, unknown ones are ignored, and a float written
        // as null (a NaN) reads as NaN.
        let r: Report = serde_json::from_str(
            r#"{"target":"cells","ramp_s":null,"duration_s":4,
                "ops":{"read":{"count":3,"p99_ms":2.5}},
                "keepalives":{"client_at_proxies":null,"at_cells":2},
                "faults":[{"action":"kill","member":"p1","at_s":3.0}],
                "some_future_field":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(r.target, "cells");
        assert!(r.ramp_s.is_nan());
        assert_eq!(r.duration_s, 4.0);
        assert_eq!(r.ops["read"].count, 3);
        assert_eq!(r.ops["read"].errors, 0);
        assert_eq!(r.ops["read"].latency.p99_ms, 2.5);
        assert_eq!(r.ops["read"].latency.p50_ms, 0.0);
        let k = r.keepalives.as_ref().unwrap();
        assert!(k.client_at_proxies.is_nan());
        assert_eq!((k.at_cells, k.factor), (2.0, None));
        assert_eq!(r.faults[0].member, "p1");
        assert_eq!(
            (r.faults[0].done_s, r.faults[0].error.as_deref()),
            (None, None)
        );
        assert!(r.acked_lost_checked);
        assert_eq!(r.sessions, SessionOutcomes::default());
        assert!(r.timeline.is_empty());
        let unchecked: Report = serde_json::from_str(r#"{"acked_lost_checked":false}"#).unwrap();
        assert!(!unchecked.acked_lost_checked);
    }
}
