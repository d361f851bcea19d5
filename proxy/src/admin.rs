//! The proxy's admin HTTP pages (served by `warren_server::admin`): `/metrics` (Prometheus
//! text from the `metrics` crate), `/healthz`, `/readyz` (a live session at every cell; with
//! `--meta`: the partition map loaded and a live session at the meta cell) and `/status`
//! (JSON; to a browser the HTML status page of [`warren_server::status_page`]: the map in
//! hand, every cell's replicas as `Locate` answers, and this proxy with its client
//! sessions and upstream links. A proxy shows no reshard job: that is the meta cell's page).

use crate::Shared;
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::BTreeMap;
use warren_server::admin::PageFuture;
use warren_server::metrics::{Metric, TierMetrics};
use warren_server::status_page::{MapView, ProxyView, StatusPage, Upstream};

pub(crate) use warren_server::admin::serve;

/// The process-wide Prometheus recorder ([`warren_server::metrics::prometheus`]: one per
/// process, shared with any cell in it), with the proxy's metrics described (`# HELP`).
pub fn prometheus() -> &'static PrometheusHandle {
    METRICS.prometheus()
}

/// The proxy's metrics as `docs/metrics.md` lists them. Some start at 0 (not absent), so
/// rates work from the first scrape.
static METRICS: TierMetrics = TierMetrics::new(&[
    Metric::gauge(
        "warren_proxy_client_sessions",
        "client sessions living in the proxy",
    ),
    Metric::gauge(
        "warren_proxy_upstream_sessions",
        "cells where the proxy holds a live proxy session",
    ),
    Metric::gauge(
        "warren_proxy_held_keepalives",
        "client KeepAlives parked (long-poll) at the proxy",
    ),
    Metric::gauge(
        "warren_proxy_clients_waiting_for_a_cell",
        "clients whose lease cannot grow until a cell answers (lease nesting)",
    ),
    Metric::gauge(
        "warren_proxy_cached_paths",
        "files in the shared cache",
    ),
    Metric::gauge(
        "warren_proxy_cached_bytes",
        "bytes of contents in the shared cache",
    ),
    Metric::gauge(
        "warren_proxy_map_epoch",
        "epoch of the partition map in hand (0: none, or no --meta)",
    ),
    Metric::gauge(
        "warren_proxy_acquires_in_flight",
        "Acquire calls forwarded and not answered yet (lock waits)",
    )
    .from_zero(),
    Metric::counter(
        "warren_proxy_keepalives_received_total",
        "KeepAlives received from clients",
    ),
    Metric::counter(
        "warren_proxy_keepalives_sent_total",
        "KeepAlives the proxy sent to each cell for its own session",
    ),
    Metric::counter(
        "warren_proxy_cover_refreshes_total",
        "KeepAlives the proxy sent to each cell to move its hold-back cover past a client's lease, for that client's first copy from the cell",
    ),
    Metric::counter(
        "warren_proxy_sessions_created_total",
        "client sessions created at the proxy",
    )
    .from_zero(),
    Metric::counter(
        "warren_proxy_fresh_adoptions_total",
        "clients of a dead proxy taken on afresh: they held nothing and no cell knew them",
    )
    .from_zero(),
    Metric::counter(
        "warren_proxy_adoptions_total",
        "clients of another proxy adopted here (claimed at every cell, or taken on afresh)",
    )
    .from_zero(),
    Metric::gauge(
        "warren_proxy_adoptions_pending",
        "adoptions of another proxy's clients queued or claiming now (at most 64 claim at a time)",
    )
    .from_zero(),
    Metric::counter(
        "warren_proxy_adoptions_refused_total",
        "adoptions refused with OVERLOADED because the queue was full",
    )
    .from_zero(),
    Metric::counter(
        "warren_proxy_upstream_sessions_created_total",
        "proxy sessions created at each cell (more than one per cell means one was lost)",
    ),
    Metric::counter(
        "warren_proxy_claims_total",
        "ClaimSession calls made (adopting a dead proxy's clients)",
    )
    .from_zero(),
    Metric::counter(
        "warren_proxy_cache_hits_total",
        "reads answered from the shared cache",
    ),
    Metric::counter(
        "warren_proxy_cache_misses_total",
        "cacheable reads the shared cache could not answer",
    ),
    Metric::counter(
        "warren_proxy_cache_invalidations_total",
        "invalidations applied to the shared cache",
    ),
    Metric::counter(
        "warren_proxy_invalidations_relayed_total",
        "invalidation events relayed to clients",
    ),
    Metric::counter(
        "warren_proxy_events_relayed_total",
        "other events relayed to clients",
    ),
    Metric::counter(
        "warren_proxy_wrong_cell_total",
        "WRONG_CELL answers to routed calls, by kind (directory: split-directory redirect; stale: a map older on one side; moved: a handle's node moved in a reshard)",
    ),
    Metric::counter(
        "warren_proxy_moved_claims_total",
        "client sessions claimed at the cell a reshard moved one of their handles to",
    )
    .from_zero(),
]);

/// Publishes the core's counts as gauges and counters.
pub(crate) fn update_metrics(shared: &Shared) {
    let (counts, ka, inv, ev, cache) = shared.with_core(|c| {
        (
            c.counts(),
            c.keepalives_received,
            c.invalidations_relayed,
            c.events_relayed,
            c.cache.counters,
        )
    });
    metrics::gauge!("warren_proxy_client_sessions").set(counts.client_sessions as f64);
    metrics::gauge!("warren_proxy_held_keepalives").set(counts.held_keepalives as f64);
    metrics::gauge!("warren_proxy_clients_waiting_for_a_cell").set(counts.starving as f64);
    metrics::gauge!("warren_proxy_cached_paths").set(counts.cached_paths as f64);
    metrics::gauge!("warren_proxy_cached_bytes").set(counts.cached_bytes as f64);
    let upstream = shared
        .all_cells()
        .iter()
        .filter(|u| u.link.borrow().is_some())
        .count();
    metrics::gauge!("warren_proxy_upstream_sessions").set(upstream as f64);
    metrics::gauge!("warren_proxy_map_epoch").set(shared.map_epoch() as f64);
    metrics::counter!("warren_proxy_keepalives_received_total").absolute(ka);
    metrics::counter!("warren_proxy_invalidations_relayed_total").absolute(inv);
    metrics::counter!("warren_proxy_events_relayed_total").absolute(ev);
    metrics::counter!("warren_proxy_cache_hits_total").absolute(cache.hits);
    metrics::counter!("warren_proxy_cache_misses_total").absolute(cache.misses);
    metrics::counter!("warren_proxy_cache_invalidations_total").absolute(cache.invalidations);
}

impl warren_server::admin::Pages for Shared {
    type Status = serde_json::Value;

    fn recorder(&self) -> &'static PrometheusHandle {
        prometheus()
    }

    fn refresh_metrics(&self) {
        update_metrics(self);
    }

    fn readiness(&self) -> Result<(), String> {
        if self.ready() {
            Ok(())
        } else if self.routed() {
            Err(
                "the partition map is not loaded or there is no live session at the meta cell \
                 yet (see /status)"
                    .into(),
            )
        } else {
            Err("not every cell has a live proxy session yet (see /status)".into())
        }
    }

    fn status_snapshot(&self) -> serde_json::Value {
        self.status()
    }

    fn status_page(&self) -> Option<PageFuture<'_>> {
        let map = self.map();
        let counts = self.with_core(|c| c.counts());
        let links = self.all_cells();
        let mut ask: BTreeMap<String, Vec<String>> =
            links.iter().map(|u| (u.name.clone(), u.addrs())).collect();
        if let Some(m) = &map {
            ask.extend(m.cells().clone());
        }
        let me = ProxyView {
            name: self.cfg.id.clone(),
            addr: self.advertised.clone(),
            client_sessions: counts.client_sessions as u64,
            clients_waiting: counts.starving as u64,
            upstream: links
                .iter()
                .map(|u| Upstream {
                    cell: u.name.clone(),
                    connected: u.link.borrow().is_some(),
                    error: crate::lock(&u.error).clone(),
                })
                .collect(),
        };
        let page = StatusPage {
            served_by: format!("proxy {} at {}", me.name, me.addr),
            deployment: self.deployment.get().cloned().unwrap_or_default(),
            map: map.as_ref().map(|m| MapView {
                map_epoch: m.map_epoch(),
                slots: m.slot_owners().to_vec(),
            }),
            proxies: vec![me],
            ..StatusPage::default()
        };
        Some(Box::pin(async move {
            let mut page = page;
            page.cells = warren_server::status_probe::locate_cells(&ask).await;
            page
        }))
    }
}
