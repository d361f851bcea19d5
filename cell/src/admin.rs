//! The admin HTTP pages (served by `warren_server::admin`): `/metrics` (Prometheus text
//! from the `metrics` crate), `/healthz`, `/readyz` (the master has loaded its state and
//! serves) and `/status` (JSON: name, epoch, role, sessions, nodes, map epoch, slots owned,
//! …). `/readyz` is 200 only on a master that serves all operations (standbys, recovering
//! masters and data cells that have not loaded their partition map yet answer 503). `/map`
//! is the master's partition map in force (404 at a standby or without one): a data cell
//! keeps the last good map it read, so `warren ctl map repair` can recover from it a map
//! whose stored file no longer parses. `/debug/sessions` is the master's session and lock
//! tables (`crate::core::SessionTableView`) on a cell without TLS; over mutual TLS only
//! operators may read them, through `Reshard.SessionTable` (docs/security.md, "Who may list
//! sessions"), which is what `warren ctl session list` and `lock list` call.
//! To a browser, the meta cell's `/status` is the HTML status page
//! ([`warren_server::status_page`]): the map, every cell's replicas as `Locate` answers,
//! this cell's sessions and the reshard job.

use crate::server::{metrics, CellStatus, Node};
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::BTreeMap;
use warren_reshard::job::SlotState;
use warren_server::admin::PageFuture;
use warren_server::status_page::{JobView, MapView, SlotMove, StatusPage};

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

    /// Served only on a cell without TLS (`warren_server::admin`): over mutual TLS the
    /// tables are read with the operator-only gRPC call `Reshard.SessionTable` instead.
    fn debug_sessions(&self) -> Result<String, String> {
        self.master()
            .map_err(|_| "this replica is a standby; ask the cell's master".to_string())?;
        session_table_json(self).map_err(|s| s.message().to_string())
    }

    fn status_page(&self) -> Option<PageFuture<'_>> {
        let (mut page, ask) = page_without_replicas(self)?;
        let own = self.status();
        Some(Box::pin(async move {
            page.cells = warren_server::status_probe::locate_cells(&ask).await;
            for c in &mut page.cells {
                if c.name == own.cell {
                    c.sessions = Some(own.sessions as u64);
                    c.proxy_sessions = Some(own.proxy_sessions as u64);
                }
            }
            page
        }))
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

/// The master's session and lock tables as JSON (`crate::core::SessionTableView`), for
/// `/debug/sessions` and `Reshard.SessionTable`; `NOT_MASTER` at a standby.
pub(crate) fn session_table_json(node: &Node) -> Result<String, tonic::Status> {
    let shared = node.master()?;
    let table = shared
        .lock()
        .master
        .session_table(tokio::time::Instant::now());
    serde_json::to_string(&table).map_err(|e| {
        warren_proto::WarrenError::internal(format!("cannot render the session table: {e}")).into()
    })
}

/// The HTML status page's data at a cell (docs/operations.md, "Status page"): served by
/// the meta cell's master (and an unpartitioned cell's), which holds the partition map; a
/// data cell or a standby answers `/status` in JSON only. Returns the page without its
/// cells' replicas, and the replicas to ask `Locate` (this replica for its own cell — a
/// replicated cell's other replicas are not known here — and every data cell's from the
/// map).
fn page_without_replicas(node: &Node) -> Option<(StatusPage, BTreeMap<String, Vec<String>>)> {
    let shared = node.master().ok()?;
    let (map, is_data_cell) = {
        let s = shared.lock();
        (s.master.map().cloned(), s.master.is_data_cell())
    };
    if is_data_cell {
        return None;
    }
    let st = node.status();
    let job = crate::server::current_job(node).map(|job| JobView {
        id: job.id().to_string(),
        state: format!("{:?}", job.state()),
        message: job.message().to_string(),
        slots: job
            .slots()
            .iter()
            .map(|p| SlotMove {
                slot: p.slot,
                from: p.from.clone(),
                to: p.to.clone(),
                state: match &p.state {
                    SlotState::Aborted { reason } => format!("Aborted: {reason}"),
                    other => format!("{other:?}"),
                },
                finished: matches!(p.state, SlotState::Done | SlotState::Aborted { .. }),
            })
            .collect(),
    });
    let mut ask = BTreeMap::new();
    ask.insert(st.cell.clone(), vec![node.advertise.clone()]);
    if let Some(m) = &map {
        ask.extend(m.cells().clone());
    }
    let page = StatusPage {
        served_by: format!(
            "{} cell {} at {}",
            if map.is_some() { "meta" } else { "the" },
            st.cell,
            node.advertise
        ),
        deployment: st.deployment.clone(),
        map: map.as_ref().map(|m| MapView {
            map_epoch: m.map_epoch(),
            slots: m.slot_owners().to_vec(),
        }),
        job,
        ..StatusPage::default()
    };
    Some((page, ask))
}
