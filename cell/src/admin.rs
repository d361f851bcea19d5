//! The admin HTTP pages (served by `warren_server::admin`): `/metrics` (Prometheus text
//! from the `metrics` crate), `/healthz`, `/readyz` (the master has loaded its state and
//! serves) and `/status` (JSON: name, epoch, role, sessions, nodes, map epoch, slots owned,
//! …). `/readyz` is 200 only on a master that serves all operations (standbys, recovering
//! masters and data cells that have not loaded their partition map yet answer 503). `/map`
//! is the master's partition map in force (404 at a standby or without one): a data cell
//! keeps the last good map it read, so `warren ctl map repair` can recover from it a map
//! whose stored file no longer parses. `/debug/sessions` is the master's session and lock
//! tables (`crate::core::SessionTableView`), for `warren ctl session list` and `lock list`.

use crate::server::{metrics, CellStatus, Node};
use metrics_exporter_prometheus::PrometheusHandle;

pub(crate) use warren_server::admin::serve;

impl warren_server::admin::Pages for Node {
    type Status = CellStatus;

    fn recorder(&self) -> &'static PrometheusHandle {
        metrics::prometheus()
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

    fn debug_sessions(&self) -> Result<String, String> {
        let shared = self
            .master()
            .map_err(|_| "this replica is a standby; ask the cell's master".to_string())?;
        let table = shared
            .lock()
            .master
            .session_table(tokio::time::Instant::now());
        serde_json::to_string(&table).map_err(|e| format!("cannot render the session table: {e}"))
    }

    fn partition_map(&self) -> Result<String, String> {
        let shared = self
            .master()
            .map_err(|_| "this replica is a standby; ask the cell's master".to_string())?;
        let st = shared.lock();
        match st.master.map() {
            Some(map) => Ok(map.to_json()),
            None => Err(format!(
                "cell {} has no partition map in force",
                st.master.config().cell
            )),
        }
    }
}
