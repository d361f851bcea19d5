//! The proxy's admin HTTP endpoint (hyper): `/metrics` (Prometheus text from the `metrics`
//! crate), `/healthz`, `/readyz` (a live session at every cell; with `--meta`: the partition
//! map loaded and a live session at the meta cell) and `/status` (JSON).

use crate::Shared;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::sync::{Arc, Once};
use tokio::net::TcpListener;

/// The process-wide Prometheus recorder ([`warren_proto::metrics::prometheus`]: one per
/// process, shared with any cell in it), with the proxy's metrics described (`# HELP`).
pub fn prometheus() -> &'static PrometheusHandle {
    static DESCRIBED: Once = Once::new();
    let handle = warren_proto::metrics::prometheus();
    DESCRIBED.call_once(describe);
    handle
}

/// The proxy's metrics as `docs/metrics.md` lists them.
fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "warren_proxy_client_sessions",
        "client sessions living in the proxy"
    );
    describe_gauge!(
        "warren_proxy_upstream_sessions",
        "cells where the proxy holds a live proxy session"
    );
    describe_gauge!(
        "warren_proxy_held_keepalives",
        "client KeepAlives parked (long-poll) at the proxy"
    );
    describe_gauge!(
        "warren_proxy_clients_waiting_for_a_cell",
        "clients whose lease cannot grow until a cell answers (lease nesting)"
    );
    describe_gauge!("warren_proxy_cached_paths", "files in the shared cache");
    describe_gauge!(
        "warren_proxy_cached_bytes",
        "bytes of contents in the shared cache"
    );
    describe_gauge!(
        "warren_proxy_map_epoch",
        "epoch of the partition map in hand (0: none, or no --meta)"
    );
    describe_gauge!(
        "warren_proxy_acquires_in_flight",
        "Acquire calls forwarded and not answered yet (lock waits)"
    );
    describe_counter!(
        "warren_proxy_keepalives_received_total",
        "KeepAlives received from clients"
    );
    describe_counter!(
        "warren_proxy_keepalives_sent_total",
        "KeepAlives the proxy sent to each cell for its own session"
    );
    describe_counter!(
        "warren_proxy_sessions_created_total",
        "client sessions created at the proxy"
    );
    describe_counter!(
        "warren_proxy_fresh_adoptions_total",
        "clients of a dead proxy taken on afresh: they held nothing and no cell knew them"
    );
    describe_counter!(
        "warren_proxy_upstream_sessions_created_total",
        "proxy sessions created at each cell (more than one per cell means one was lost)"
    );
    describe_counter!(
        "warren_proxy_claims_total",
        "ClaimSession calls made (adopting a dead proxy's clients)"
    );
    describe_counter!(
        "warren_proxy_cache_hits_total",
        "reads answered from the shared cache"
    );
    describe_counter!(
        "warren_proxy_cache_misses_total",
        "cacheable reads the shared cache could not answer"
    );
    describe_counter!(
        "warren_proxy_cache_invalidations_total",
        "invalidations applied to the shared cache"
    );
    describe_counter!(
        "warren_proxy_invalidations_relayed_total",
        "invalidation events relayed to clients"
    );
    describe_counter!(
        "warren_proxy_events_relayed_total",
        "other events relayed to clients"
    );
    describe_counter!(
        "warren_proxy_wrong_cell_total",
        "WRONG_CELL answers to routed calls, by kind (directory: split-directory redirect; stale: a map older on one side)"
    );
    // Counters start at 0 (not absent), so rates work from the first scrape.
    for name in [
        "warren_proxy_sessions_created_total",
        "warren_proxy_claims_total",
        "warren_proxy_fresh_adoptions_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("warren_proxy_acquires_in_flight").increment(0.0);
}

fn reply(code: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

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

async fn handle(
    req: Request<hyper::body::Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET is served here\n",
        ));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            update_metrics(&shared);
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                prometheus().render(),
            )
        }
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            if shared.ready() {
                reply(StatusCode::OK, "text/plain", "ready\n")
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    if shared.routed() {
                        "the partition map is not loaded or there is no live session at the meta cell yet (see /status)\n"
                    } else {
                        "not every cell has a live proxy session yet (see /status)\n"
                    },
                )
            }
        }
        "/status" => {
            let body = serde_json::to_string_pretty(&shared.status())
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            reply(StatusCode::OK, "application/json", body + "\n")
        }
        other => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("no page {other}; try /metrics, /healthz, /readyz or /status\n"),
        ),
    })
}

/// Serves the admin endpoint on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    prometheus();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, shared.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
