//! The admin HTTP endpoint (hyper): `/metrics` (Prometheus text from the `metrics`
//! crate), `/healthz`, `/readyz` (the master has loaded its state and serves) and
//! `/status` (JSON: name, epoch, role, sessions, nodes, map epoch, slots owned, …). `/readyz`
//! is 200 only on a master that serves all operations (standbys, recovering masters and data
//! cells that have not loaded their partition map yet answer 503).

use crate::server::Node;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::sync::{Arc, Once};
use tokio::net::TcpListener;

/// The process-wide Prometheus recorder ([`warren_proto::metrics::prometheus`]: one per
/// process, shared with any proxy in it), with the cell's metrics described (`# HELP`).
pub fn prometheus() -> &'static PrometheusHandle {
    static DESCRIBED: Once = Once::new();
    let handle = warren_proto::metrics::prometheus();
    DESCRIBED.call_once(describe);
    handle
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

fn reply(code: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    shared: Arc<Node>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET is served here\n",
        ));
    }
    Ok(match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            prometheus().render(),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            let st = shared.status();
            if st.role == "master" && st.serving && st.map_loaded {
                reply(StatusCode::OK, "text/plain", "ready\n")
            } else if st.role == "master" && st.serving {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "the partition map is not loaded yet (it is read from the meta cell)\n",
                )
            } else if st.role == "master" {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "recovering from a failover\n",
                )
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("standby; master is {:?}\n", st.master),
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
pub(crate) async fn serve(listener: TcpListener, shared: Arc<crate::server::Node>) {
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
