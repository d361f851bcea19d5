//! The cell's metrics (`docs/metrics.md`): their descriptions (`# HELP`) on the
//! process-wide Prometheus recorder (shared with any proxy in the process), and what
//! records them — the master's counts published every tick, `WRONG_CELL` answers, lock
//! waits, store commits and master terms.

use metrics_exporter_prometheus::PrometheusHandle;
use tonic::Status;
use warren_proto::{ErrorCode, WarrenError};
use warren_server::metrics::{Metric, TierMetrics};

/// The process-wide Prometheus recorder ([`warren_server::metrics::prometheus`]: one per
/// process, shared with any proxy in it), with the cell's metrics described (`# HELP`).
pub(crate) fn prometheus() -> &'static PrometheusHandle {
    METRICS.prometheus()
}

/// The cell's metrics as `docs/metrics.md` lists them. Counters start at 0 (not absent),
/// so rates and the load tester's absorption factor work from the first scrape.
static METRICS: TierMetrics = TierMetrics::new(&[
    Metric::gauge(
        "warren_cell_sessions",
        "live sessions at this master (all kinds)",
    ),
    Metric::gauge(
        "warren_cell_proxy_sessions",
        "live proxy sessions at this master",
    ),
    Metric::gauge(
        "warren_cell_sub_sessions",
        "client sessions a proxy holds here on behalf of its clients",
    ),
    Metric::gauge(
        "warren_cell_orphan_sessions",
        "client sessions whose proxy session ended, waiting to be claimed by another proxy",
    ),
    Metric::gauge(
        "warren_cell_nodes",
        "files and directories in the cell's namespace",
    ),
    Metric::gauge(
        "warren_cell_epoch",
        "master epoch (bumped by every new master)",
    ),
    Metric::gauge(
        "warren_cell_map_epoch",
        "epoch of the partition map this master routes with (0: none; a single cell)",
    ),
    Metric::counter(
        "warren_keepalives_received_total",
        "KeepAlive calls received by this cell (from clients and proxies)",
    )
    .from_zero(),
    Metric::counter(
        "warren_cell_failovers_total",
        "master terms started in this process (new-master procedures run; the first start counts)",
    )
    .from_zero(),
    Metric::counter(
        "warren_cell_elections_won_total",
        "etcd elections this replica won (replicated cells only)",
    )
    .from_zero(),
    Metric::counter(
        "warren_cell_depositions_total",
        "times this replica stopped serving as master (replicated cells only)",
    )
    .from_zero(),
    Metric::counter(
        "warren_cell_step_down_requests_total",
        "step-down requests this standby wrote for a master that neither it nor a client could reach (replicated cells only)",
    )
    .from_zero(),
    Metric::counter(
        "warren_cell_etcd_limit_refusals_total",
        "etcd transactions refused for etcd's --max-txn-ops or --max-request-bytes (at the election probe or a commit); the store lowered its limit and split the batch",
    )
    .from_zero(),
    Metric::gauge(
        "warren_cell_etcd_max_txn_ops",
        "operations per etcd transaction in force (the cell's --etcd-max-txn-ops, lowered to etcd's --max-txn-ops if that is smaller; 0 on the embedded store)",
    )
    .from_zero(),
    Metric::counter(
        "warren_cell_wrong_cell_total",
        "calls answered WRONG_CELL (the path belongs to another cell, or the caller's map is stale)",
    )
    .from_zero(),
    Metric::counter(
        "warren_cell_invalidations_sent_total",
        "cache invalidation events queued to sessions that cached a changed file",
    )
    .from_zero(),
    Metric::counter(
        "warren_cell_invalidations_lapsed_total",
        "invalidations a proxy session left unacknowledged past its hold-back; the cell stopped waiting for them",
    )
    .from_zero(),
    Metric::counter(
        "warren_cell_deserted_proxy_sessions_ended_total",
        "proxy sessions ended because every client they had here moved to another proxy and they left an invalidation unacknowledged",
    )
    .from_zero(),
    Metric::gauge(
        "warren_cell_lock_waiters",
        "Acquire calls waiting for a lock right now",
    )
    .from_zero(),
    Metric::gauge(
        "warren_cell_reshard_slots_remaining",
        "slots the reshard job recorded at this meta master still has to move (0: no job, or it finished)",
    )
    .from_zero(),
    Metric::counter(
        "warren_cell_lock_waits_total",
        "Acquire calls that had to wait for a lock",
    )
    .from_zero(),
    Metric::gauge(
        "warren_cell_backup_last_success_timestamp_seconds",
        "when this master last wrote a backup (Unix time; 0: none since the process started)",
    )
    .from_zero(),
    Metric::gauge(
        "warren_cell_backup_every_seconds",
        "how often this master takes a backup ([backup] every; 0: no backups configured, or not master)",
    )
    .from_zero(),
    Metric::gauge(
        "warren_cell_backup_last_duration_seconds",
        "how long the last successful backup took (reading the store and writing it)",
    )
    .from_zero(),
    Metric::gauge(
        "warren_cell_backup_last_size_bytes",
        "size of the last successful backup's data object",
    )
    .from_zero(),
    Metric::counter(
        "warren_cell_backups_total",
        "backups this process wrote (scheduled and on demand)",
    )
    .from_zero(),
    Metric::counter(
        "warren_cell_backup_failures_total",
        "backups this process attempted that failed (store read or destination write)",
    )
    .from_zero(),
    Metric::seconds(
        "warren_store_commit_seconds",
        "time to commit one group of mutations to the store",
    ),
    Metric::counter(
        "warren_store_mutations_total",
        "mutations committed to the store",
    )
    .from_zero(),
]);

/// The master's counts, as gauges (every tick).
pub(super) fn publish_master(s: &crate::core::MasterStatus, map_epoch: u64) {
    metrics::gauge!("warren_cell_sessions").set(s.sessions as f64);
    metrics::gauge!("warren_cell_proxy_sessions").set(s.proxy_sessions as f64);
    metrics::gauge!("warren_cell_sub_sessions").set(s.sub_sessions as f64);
    metrics::gauge!("warren_cell_orphan_sessions").set(s.orphans as f64);
    metrics::gauge!("warren_cell_nodes").set(s.nodes as f64);
    metrics::gauge!("warren_cell_epoch").set(s.epoch as f64);
    metrics::gauge!("warren_cell_map_epoch").set(map_epoch as f64);
}

/// A master term started (the new-master procedure ran) with `epoch`.
pub(super) fn term_started(epoch: u64) {
    metrics::counter!("warren_cell_failovers_total").increment(1);
    metrics::gauge!("warren_cell_epoch").set(epoch as f64);
}

/// The writer committed `mutations` in one transaction that began at `started`.
pub(super) fn store_committed(started: std::time::Instant, mutations: usize) {
    metrics::histogram!("warren_store_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("warren_store_mutations_total").increment(mutations as u64);
}

/// A KeepAlive reached this cell.
pub(super) fn keepalive_received() {
    metrics::counter!("warren_keepalives_received_total").increment(1);
}

/// Counts a call answered `WRONG_CELL` in `warren_cell_wrong_cell_total`.
pub(super) fn count_wrong_cell<T>(r: &Result<T, Status>) {
    let wrong_cell = r
        .as_ref()
        .err()
        .and_then(WarrenError::from_status)
        .map(|e| e.code)
        == Some(ErrorCode::WrongCell);
    if wrong_cell {
        metrics::counter!("warren_cell_wrong_cell_total").increment(1);
    }
}

/// Counts an Acquire that waits for its lock: `warren_cell_lock_waiters` while it waits
/// (until it is granted, fails or the caller goes away), `warren_cell_lock_waits_total` once.
#[derive(Default)]
pub(super) struct LockWait(bool);

impl LockWait {
    pub(super) fn begin(&mut self) {
        if !self.0 {
            self.0 = true;
            metrics::counter!("warren_cell_lock_waits_total").increment(1);
            metrics::gauge!("warren_cell_lock_waiters").increment(1.0);
        }
    }
}

impl Drop for LockWait {
    fn drop(&mut self) {
        if self.0 {
            metrics::gauge!("warren_cell_lock_waiters").decrement(1.0);
        }
    }
}

/// A backup was written in `took`, its data object `bytes` long.
pub(super) fn backup_succeeded(took: std::time::Duration, bytes: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    metrics::gauge!("warren_cell_backup_last_success_timestamp_seconds").set(now);
    metrics::gauge!("warren_cell_backup_last_duration_seconds").set(took.as_secs_f64());
    metrics::gauge!("warren_cell_backup_last_size_bytes").set(bytes as f64);
    metrics::counter!("warren_cell_backups_total").increment(1);
}

/// A master's schedule began: backups every `every`, the newest at the destination taken
/// at `last_ms` (ms since the Unix epoch; 0: none), so the last-success gauge survives a
/// restart or failover.
pub(super) fn backup_schedule(every: std::time::Duration, last_ms: u64) {
    metrics::gauge!("warren_cell_backup_every_seconds").set(every.as_secs_f64());
    if last_ms > 0 {
        metrics::gauge!("warren_cell_backup_last_success_timestamp_seconds")
            .set(last_ms as f64 / 1000.0);
    }
}

/// A backup failed.
pub(super) fn backup_failed() {
    metrics::counter!("warren_cell_backup_failures_total").increment(1);
}
