//! The admin HTTP endpoint both tiers serve (hyper, HTTP/1.1, GET only): `/metrics`
//! (Prometheus text), `/healthz`, `/readyz` (200, or 503 with the reason), `/status`
//! (JSON), `/map` (the partition map in force, JSON, or 404 without one: what
//! `warren ctl map repair` recovers a broken stored map from), `/version` and
//! `/debug/sessions` (a cell master's session and lock tables, JSON). What each page says comes
//! from the tier: [`Pages`].

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What a cell or a proxy shows on its admin pages.
pub trait Pages: Send + Sync + 'static {
    /// What `/status` shows, rendered as pretty JSON.
    type Status: serde::Serialize;

    /// The process-wide Prometheus recorder with this tier's metrics described
    /// ([`crate::metrics::TierMetrics::prometheus`]); [`serve`] installs it before the first
    /// request, and `/metrics` renders it.
    fn recorder(&self) -> &'static PrometheusHandle;
    /// Brings what the tier publishes on demand up to date before `/metrics` is rendered.
    fn refresh_metrics(&self) {}
    /// `/readyz`: `Ok` when ready to serve, else why not (one line).
    fn readiness(&self) -> Result<(), String>;
    /// The snapshot `/status` shows.
    fn status_snapshot(&self) -> Self::Status;
    /// `/map`: the partition map in force, in its stored JSON form
    /// (`warren_router::PartitionMap::to_json`), or why there is none (a 404).
    fn partition_map(&self) -> Result<String, String> {
        Err("this server keeps no partition map".into())
    }
    /// `/debug/sessions`: the session and lock tables as JSON (a cell's master: every
    /// session with its principal, proxy, lease end, handles and locks; every lock with its
    /// holders, waiters and generation), or why there are none here (a 404). Read-only; it
    /// names principals, so keep the admin port as private as `/metrics`
    /// (docs/ctl.md, "Sessions and locks").
    fn debug_sessions(&self) -> Result<String, String> {
        Err("this server keeps no session table; ask a cell's master".into())
    }
}

fn status_json<P: Pages>(pages: &P) -> String {
    serde_json::to_string_pretty(&pages.status_snapshot())
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn metrics_text<P: Pages>(pages: &P) -> String {
    pages.refresh_metrics();
    pages.recorder().render()
}

fn reply(code: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn page<P: Pages>(req: &Request<hyper::body::Incoming>, pages: &P) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET is served here\n",
        );
    }
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics_text(pages),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => match pages.readiness() {
            Ok(()) => reply(StatusCode::OK, "text/plain", "ready\n"),
            Err(why) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", why + "\n"),
        },
        "/status" => reply(
            StatusCode::OK,
            "application/json",
            status_json(pages) + "\n",
        ),
        "/map" => match pages.partition_map() {
            Ok(json) => reply(StatusCode::OK, "application/json", json + "\n"),
            Err(why) => reply(StatusCode::NOT_FOUND, "text/plain", why + "\n"),
        },
        "/debug/sessions" => match pages.debug_sessions() {
            Ok(json) => reply(StatusCode::OK, "application/json", json + "\n"),
            Err(why) => reply(StatusCode::NOT_FOUND, "text/plain", why + "\n"),
        },
        // The version of the binary serving this page, for `warren ctl endpoint status`.
        "/version" => reply(
            StatusCode::OK,
            "text/plain",
            concat!(env!("CARGO_PKG_VERSION"), "\n"),
        ),
        other => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("no page {other}; try /metrics, /healthz, /readyz, /status, /map, /version or /debug/sessions\n"),
        ),
    }
}

/// Serves the admin pages on `listener` until the task is aborted.
pub async fn serve<P: Pages>(listener: TcpListener, pages: Arc<P>) {
    pages.recorder();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let pages = pages.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let r = page(&req, &*pages);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
