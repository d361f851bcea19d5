//! The admin HTTP pages (served by `warren_server::admin`): `/metrics` (Prometheus text
//! from the `metrics` crate), `/healthz`, `/readyz` (the master has loaded its state and
//! serves) and `/status` (JSON: name, epoch, role, sessions, nodes, map epoch, slots owned,
//! …). `/readyz` is 200 only on a master that serves all operations (standbys, recovering
//! masters and data cells that have not loaded their partition map yet answer 503).

use crate::server::{CellStatus, Node};
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Once;

pub(crate) use warren_server::admin::serve;

/// The process-wide Prometheus recorder ([`warren_server::metrics::prometheus`]: one per
/// process, shared with any proxy in it), with the cell's metrics described (`# HELP`).
pub fn prometheus() -> &'static PrometheusHandle {
    static DESCRIBED: Once = Once::new();
    warren_server::metrics::prometheus_describing(&DESCRIBED, describe)
}

/// The cell's metrics as `docs/metrics.md` lists them.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "warren_cell_sessions",
        "live sessions at this master (all kinds)"
    );
    describe_gauge!(
        "warren_cell_proxy_sessions",
        "live proxy sessions at this master"
    );
    describe_gauge!(
        "warren_cell_sub_sessions",
        "client sessions a proxy holds here on behalf of its clients"
    );
    describe_gauge!(
        "warren_cell_orphan_sessions",
        "client sessions whose proxy session ended, waiting to be claimed by another proxy"
    );
    describe_gauge!(
        "warren_cell_nodes",
        "files and directories in the cell's namespace"
    );
    describe_gauge!(
        "warren_cell_epoch",
        "master epoch (bumped by every new master)"
    );
    describe_gauge!(
        "warren_cell_map_epoch",
        "epoch of the partition map this master routes with (0: none; a single cell)"
    );
    describe_counter!(
        "warren_keepalives_received_total",
        "KeepAlive calls received by this cell (from clients and proxies)"
    );
    describe_counter!(
        "warren_cell_failovers_total",
        "master terms started in this process (new-master procedures run; the first start counts)"
    );
    describe_counter!(
        "warren_cell_elections_won_total",
        "etcd elections this replica won (replicated cells only)"
    );
    describe_counter!(
        "warren_cell_depositions_total",
        "times this replica stopped serving as master (replicated cells only)"
    );
    describe_counter!(
        "warren_cell_wrong_cell_total",
        "calls answered WRONG_CELL (the path belongs to another cell, or the caller's map is stale)"
    );
    describe_counter!(
        "warren_cell_invalidations_sent_total",
        "cache invalidation events queued to sessions that cached a changed file"
    );
    describe_gauge!(
        "warren_cell_lock_waiters",
        "Acquire calls waiting for a lock right now"
    );
    describe_counter!(
        "warren_cell_lock_waits_total",
        "Acquire calls that had to wait for a lock"
    );
    describe_histogram!(
        "warren_store_commit_seconds",
        Unit::Seconds,
        "time to commit one group of mutations to the store"
    );
    describe_counter!(
        "warren_store_mutations_total",
        "mutations committed to the store"
    );
    // Counters start at 0 (not absent), so rates and the absorption factor work from the
    // first scrape.
    for name in [
        "warren_keepalives_received_total",
        "warren_cell_failovers_total",
        "warren_cell_elections_won_total",
        "warren_cell_depositions_total",
        "warren_cell_wrong_cell_total",
        "warren_cell_invalidations_sent_total",
        "warren_cell_lock_waits_total",
        "warren_store_mutations_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("warren_cell_lock_waiters").increment(0.0);
}

impl warren_server::admin::Pages for Node {
    type Status = CellStatus;

    fn recorder(&self) -> &'static PrometheusHandle {
        prometheus()
    }

    fn readiness(&self) -> Result<(), String> {
        let st = self.status();
        if st.role == "master" && st.serving && st.map_loaded {
            Ok(())
        } else if st.role == "master" && st.serving {
            Err("the partition map is not loaded yet (it is read from the meta cell)".into())
        } else if st.role == "master" {
            Err("recovering from a failover".into())
        } else {
            Err(format!("standby; master is {:?}", st.master))
        }
    }

    fn status_snapshot(&self) -> CellStatus {
        self.status()
    }
}
