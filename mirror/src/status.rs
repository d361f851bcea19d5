//! What the agent tells its operator (docs/mirror.md, "Metrics and status"; docs/metrics.md,
//! "Mirror"): the changes waiting to be applied and their age (the lag), the counters, the
//! last success and the last error, rendered as Prometheus metrics and as the `/status`
//! JSON of the admin endpoint (`warren_server::admin`), whose `/readyz` fails while the
//! mirror is behind, failing or has not finished its first sweep.

use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use warren_server::metrics::{Metric, TierMetrics};

/// The mirror's metrics, as docs/metrics.md lists them.
pub static METRICS: TierMetrics = TierMetrics::new(&[
    Metric::gauge(
        "warren_mirror_lag_seconds",
        "age of the oldest source change not yet applied to the target (0 when none waits)",
    )
    .from_zero(),
    Metric::gauge(
        "warren_mirror_sweep_age_seconds",
        "time since the last successful full sweep (compare of both trees by checksum); since the start before the first",
    )
    .from_zero(),
    Metric::gauge(
        "warren_mirror_last_success_timestamp_seconds",
        "Unix time of the last successful sweep or applied change (0: none yet)",
    )
    .from_zero(),
    Metric::gauge(
        "warren_mirror_pending_changes",
        "source and target paths waiting to be compared and applied",
    )
    .from_zero(),
    Metric::gauge(
        "warren_mirror_behind",
        "1 while /status says behind (lag over --max-lag, or the sweep overdue), else 0",
    )
    .from_zero(),
    Metric::gauge(
        "warren_mirror_failing",
        "1 while the last attempt failed (connecting, sweeping or applying; retried with backoff), else 0",
    )
    .from_zero(),
    Metric::gauge(
        "warren_mirror_target_writes_kept",
        "paths written directly in the target and kept (--on-target-write report)",
    )
    .from_zero(),
    Metric::counter(
        "warren_mirror_changes_applied_total",
        "changes made in the target, by kind (mkdir, write, set_acl, delete)",
    ),
    Metric::counter(
        "warren_mirror_sweeps_total",
        "full sweeps, by result (ok, error)",
    ),
    Metric::counter(
        "warren_mirror_divergences_total",
        "paths where a sweep or a change found the target different from the source",
    )
    .from_zero(),
    Metric::counter(
        "warren_mirror_target_writes_total",
        "writes made directly in the target that the mirror found, by action (overwritten, reported)",
    ),
    Metric::counter(
        "warren_mirror_errors_total",
        "failures, by stage (connect, sweep, apply); each is logged and retried",
    )
    .from_zero(),
    Metric::seconds(
        "warren_mirror_apply_delay_seconds",
        "from the agent learning of a source change to the target holding it",
    ),
]);

/// A change waiting to be applied.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dirty {
    /// When the agent first learnt of it (the lag counts from here).
    pub first_seen: Instant,
    /// Compare the whole subtree below the path (a node added or removed), not just it.
    pub deep: bool,
    /// Bumped by every later event for the path, so a change that arrives while the path
    /// is being applied is not forgotten.
    pub generation: u64,
    /// A path that failed on its own is retried no sooner than this (its own backoff, so
    /// it holds up nothing else); a new event for it clears it.
    pub retry_at: Option<Instant>,
    /// Failures of this path in a row.
    pub attempts: u32,
}

/// The longest a path that keeps failing waits between attempts.
const MAX_PATH_BACKOFF: Duration = Duration::from_secs(30);

/// Which deployment a change was seen in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Target,
}

/// The state both the driver and the admin pages see.
pub struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the driver when a change is queued.
    pub(crate) wake: tokio::sync::Notify,
    started: Instant,
    /// Over this lag (or with the sweep this late) the mirror is "behind".
    max_lag: Duration,
    sweep_interval: Duration,
    describe: Describe,
}

/// The settings `/status` repeats.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Describe {
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub subtree: String,
    pub to_subtree: String,
    pub on_target_write: &'static str,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub source: BTreeMap<String, Dirty>,
    pub target: BTreeMap<String, Dirty>,
    pub generation: u64,
    /// A full sweep is wanted (start, session loss, fail-over, an error).
    pub resync: bool,
    pub last_sweep: Option<Instant>,
    pub last_success: Option<SystemTime>,
    pub failing_since: Option<Instant>,
    pub last_error: Option<String>,
    pub sweeps: u64,
    pub divergences: u64,
    pub applied: BTreeMap<&'static str, u64>,
    pub errors: u64,
    pub target_writes_overwritten: u64,
    pub target_writes_reported: u64,
    /// Target writes kept under `report`: path → what was found.
    pub kept: BTreeMap<String, String>,
    /// Paths that cannot be mirrored now (an ACL refuses the agent, a node in the way),
    /// relative → why; retried with backoff until they succeed.
    pub failing_paths: BTreeMap<String, String>,
    pub connected_source: bool,
    pub connected_target: bool,
}

/// `/status`.
#[derive(Debug, serde::Serialize)]
pub struct StatusView {
    /// `in_sync`, `behind`, `failing` or `starting`.
    pub state: &'static str,
    /// One sentence saying what the state means now.
    pub message: String,
    #[serde(flatten)]
    pub settings: Describe,
    pub lag_seconds: f64,
    pub sweep_age_seconds: f64,
    pub last_success_unix: Option<f64>,
    pub pending_changes: usize,
    pub sweeps: u64,
    pub divergences: u64,
    pub changes_applied: BTreeMap<&'static str, u64>,
    pub errors: u64,
    pub last_error: Option<String>,
    pub target_writes_overwritten: u64,
    pub target_writes_reported: u64,
    /// Paths written directly in the target and kept (`report`), with what was found.
    pub target_writes_kept: BTreeMap<String, String>,
    /// Paths that cannot be mirrored now, with why (retried with backoff).
    pub failing_paths: BTreeMap<String, String>,
    pub connected_source: bool,
    pub connected_target: bool,
}

impl Shared {
    pub fn new(describe: Describe, max_lag: Duration, sweep_interval: Duration) -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                resync: true,
                ..Inner::default()
            }),
            wake: tokio::sync::Notify::new(),
            started: Instant::now(),
            max_lag,
            sweep_interval,
            describe,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `path` (relative) as changed on `side`.
    pub(crate) fn mark(&self, side: Side, path: String, deep: bool) {
        let mut inner = self.lock();
        inner.generation += 1;
        let generation = inner.generation;
        let map = match side {
            Side::Source => &mut inner.source,
            Side::Target => &mut inner.target,
        };
        map.entry(path)
            .and_modify(|d| {
                d.deep |= deep;
                d.generation = generation;
                d.retry_at = None;
                d.attempts = 0;
            })
            .or_insert(Dirty {
                first_seen: Instant::now(),
                deep,
                generation,
                retry_at: None,
                attempts: 0,
            });
        drop(inner);
        self.wake.notify_one();
    }

    /// Queues a path that failed as a source change (deep: it may be a directory), keeping
    /// its first-seen time if it is queued already, to be retried after its own backoff
    /// (100 ms doubling to [`MAX_PATH_BACKOFF`]).
    pub(crate) fn requeue(&self, path: String) {
        let mut inner = self.lock();
        inner.generation += 1;
        let generation = inner.generation;
        let d = inner.source.entry(path.clone()).or_insert(Dirty {
            first_seen: Instant::now(),
            deep: true,
            generation,
            retry_at: None,
            attempts: 0,
        });
        d.attempts = d.attempts.saturating_add(1);
        let delay = Duration::from_millis(100)
            .saturating_mul(1 << d.attempts.min(10))
            .min(MAX_PATH_BACKOFF);
        let retry_at = Some(Instant::now() + delay);
        d.retry_at = retry_at;
        // The same path queued by a target event waits as long.
        if let Some(t) = inner.target.get_mut(&path) {
            t.retry_at = retry_at;
        }
    }

    /// When the earliest path waiting out its backoff is due, if any.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        let inner = self.lock();
        inner
            .source
            .values()
            .chain(inner.target.values())
            .filter_map(|d| d.retry_at)
            .min()
    }

    /// Asks for a full sweep.
    pub(crate) fn resync(&self) {
        self.lock().resync = true;
        self.wake.notify_one();
    }

    /// Records a failure at `stage`: counted, logged, shown.
    pub(crate) fn failed(&self, stage: &'static str, error: String) {
        tracing::warn!(stage, %error, "mirror: failed; retrying");
        metrics::counter!("warren_mirror_errors_total", "stage" => stage).increment(1);
        let mut inner = self.lock();
        inner.errors += 1;
        inner.failing_since.get_or_insert_with(Instant::now);
        inner.last_error = Some(format!("{stage}: {error}"));
    }

    /// Records a success (a sweep, or a batch of changes applied). The mirror stays
    /// failing while some path cannot be mirrored.
    pub(crate) fn succeeded(&self) {
        let mut inner = self.lock();
        if inner.failing_paths.is_empty() {
            inner.failing_since = None;
        }
        inner.last_success = Some(SystemTime::now());
    }

    /// Records paths that could not be mirrored this round (`path`, why), and forgets
    /// those in `done` (regions processed) that did not fail again.
    pub(crate) fn path_outcomes(&self, done: impl Fn(&str) -> bool, failed: &[(String, String)]) {
        let mut inner = self.lock();
        inner
            .failing_paths
            .retain(|k, _| !done(k) || failed.iter().any(|(f, _)| f == k));
        for (path, why) in failed {
            inner.failing_paths.insert(path.clone(), why.clone());
        }
        if inner.failing_paths.is_empty() {
            return;
        }
        inner.failing_since.get_or_insert_with(Instant::now);
    }

    /// Whether the last attempt failed, or some path cannot be mirrored.
    fn is_failing(inner: &Inner) -> bool {
        inner.failing_since.is_some() || !inner.failing_paths.is_empty()
    }

    fn lag(&self, inner: &Inner, now: Instant) -> Duration {
        inner
            .source
            .values()
            .map(|d| now.saturating_duration_since(d.first_seen))
            .max()
            .unwrap_or_default()
    }

    fn sweep_age(&self, inner: &Inner, now: Instant) -> Duration {
        now.saturating_duration_since(inner.last_sweep.unwrap_or(self.started))
    }

    /// The `/status` snapshot.
    pub fn status(&self) -> StatusView {
        let now = Instant::now();
        let inner = self.lock();
        let lag = self.lag(&inner, now);
        let sweep_age = self.sweep_age(&inner, now);
        // A sweep is overdue after twice its interval plus the lag allowance.
        let sweep_overdue =
            inner.last_sweep.is_some() && sweep_age > self.sweep_interval * 2 + self.max_lag;
        let (state, message) = if lag > self.max_lag || sweep_overdue {
            let why = if lag > self.max_lag {
                format!(
                    "the oldest source change not yet applied is {:.1} s old (more than --max-lag {:?})",
                    lag.as_secs_f64(),
                    self.max_lag
                )
            } else {
                format!(
                    "the last successful full sweep was {:.1} s ago (every {:?} expected)",
                    sweep_age.as_secs_f64(),
                    self.sweep_interval
                )
            };
            let last = inner
                .last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            ("behind", format!("behind: {why}{last}"))
        } else if Self::is_failing(&inner) {
            let since = inner.failing_since.unwrap_or(now);
            let what = if inner.failing_paths.is_empty() {
                inner.last_error.clone().unwrap_or_default()
            } else {
                format!(
                    "{} path(s) cannot be mirrored (the others are): {}",
                    inner.failing_paths.len(),
                    inner
                        .failing_paths
                        .values()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            };
            (
                "failing",
                format!(
                    "failing for {:.1} s, retrying with backoff: {what}",
                    now.saturating_duration_since(since).as_secs_f64(),
                ),
            )
        } else if inner.last_sweep.is_none() {
            (
                "starting",
                "starting: the first full sweep has not finished yet".to_string(),
            )
        } else if !inner.kept.is_empty() {
            (
                "in_sync",
                format!(
                    "in sync, except {} path(s) written directly in the target and kept (--on-target-write report): {}",
                    inner.kept.len(),
                    inner.kept.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        } else {
            ("in_sync", "in sync".to_string())
        };
        StatusView {
            state,
            message,
            settings: self.describe.clone(),
            lag_seconds: lag.as_secs_f64(),
            sweep_age_seconds: sweep_age.as_secs_f64(),
            last_success_unix: inner
                .last_success
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64()),
            pending_changes: inner.source.len() + inner.target.len(),
            sweeps: inner.sweeps,
            divergences: inner.divergences,
            changes_applied: inner.applied.clone(),
            errors: inner.errors,
            last_error: inner.last_error.clone(),
            target_writes_overwritten: inner.target_writes_overwritten,
            target_writes_reported: inner.target_writes_reported,
            target_writes_kept: inner.kept.clone(),
            failing_paths: inner.failing_paths.clone(),
            connected_source: inner.connected_source,
            connected_target: inner.connected_target,
        }
    }
}

/// Unix seconds of `t`.
fn unix(t: Option<SystemTime>) -> f64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

impl warren_server::admin::Pages for Shared {
    type Status = StatusView;

    fn recorder(&self) -> &'static PrometheusHandle {
        METRICS.prometheus()
    }

    fn refresh_metrics(&self) {
        let status = self.status();
        let last_success = unix(self.lock().last_success);
        metrics::gauge!("warren_mirror_lag_seconds").set(status.lag_seconds);
        metrics::gauge!("warren_mirror_sweep_age_seconds").set(status.sweep_age_seconds);
        metrics::gauge!("warren_mirror_last_success_timestamp_seconds").set(last_success);
        metrics::gauge!("warren_mirror_pending_changes").set(status.pending_changes as f64);
        metrics::gauge!("warren_mirror_behind").set(f64::from(u8::from(status.state == "behind")));
        metrics::gauge!("warren_mirror_failing").set(f64::from(u8::from(
            status.last_error.is_some() && self.lock().failing_since.is_some(),
        )));
        metrics::gauge!("warren_mirror_target_writes_kept")
            .set(status.target_writes_kept.len() as f64);
    }

    fn readiness(&self) -> Result<(), String> {
        let status = self.status();
        match status.state {
            "in_sync" => Ok(()),
            _ => Err(status.message),
        }
    }

    fn status_snapshot(&self) -> StatusView {
        self.status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(max_lag: Duration) -> Shared {
        let describe = Describe {
            from: vec!["a:1".into()],
            to: vec!["b:1".into()],
            subtree: "/s".into(),
            to_subtree: "/s".into(),
            on_target_write: "overwrite",
        };
        Shared::new(describe, max_lag, Duration::from_secs(60))
    }

    #[test]
    fn a_failing_path_waits_its_own_backoff_until_a_new_event() {
        let s = shared(Duration::from_secs(5));
        s.mark(Side::Source, "f".into(), false);
        assert_eq!(s.next_retry(), None);
        s.requeue("f".into());
        let first = s.next_retry().expect("deferred");
        s.requeue("f".into());
        let second = s.next_retry().expect("deferred");
        assert!(second > first, "the backoff grows");
        assert_eq!(s.lock().source["f"].attempts, 2);
        // A new change to the path may have fixed it: try at once.
        s.mark(Side::Source, "f".into(), false);
        assert_eq!(s.next_retry(), None);
        assert_eq!(s.lock().source["f"].attempts, 0);
    }

    #[test]
    fn the_state_says_starting_failing_behind_and_in_sync() {
        let s = shared(Duration::from_millis(1));
        assert_eq!(s.status().state, "starting");
        s.lock().last_sweep = Some(Instant::now());
        assert_eq!(s.status().state, "in_sync");
        s.path_outcomes(|_| true, &[("secret".into(), "PERMISSION_DENIED".into())]);
        let status = s.status();
        assert_eq!(status.state, "failing");
        assert!(
            status.message.contains("PERMISSION_DENIED"),
            "{}",
            status.message
        );
        // A later success elsewhere does not hide it.
        s.succeeded();
        assert_eq!(s.status().state, "failing");
        // Done with it.
        s.path_outcomes(|p| p == "secret", &[]);
        s.succeeded();
        assert_eq!(s.status().state, "in_sync");
        // A change older than --max-lag: behind, whatever else.
        s.mark(Side::Source, "g".into(), false);
        std::thread::sleep(Duration::from_millis(5));
        let status = s.status();
        assert_eq!(status.state, "behind");
        assert!(status.message.contains("--max-lag"), "{}", status.message);
        use warren_server::admin::Pages;
        assert!(s.readiness().is_err());
    }
}
