//! The admin HTTP endpoint both tiers serve (hyper, HTTP/1.1, GET only): `/metrics`
//! (Prometheus text), `/healthz`, `/readyz` (200, or 503 with the reason), `/status`
//! (JSON; to a browser — `Accept: text/html`, or `/status?html` — the HTML status page of
//! [`crate::status_page`] where the tier has one), `/map` (the partition map in force, JSON,
//! or 404 without one: what `warren ctl map repair` recovers a broken stored map from),
//! `/version` and `/debug/sessions` (a cell master's session and lock tables, JSON; only
//! without TLS, [`SESSIONS_UNDER_TLS`]). What
//! each page says comes
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
    /// names principals, so the plain-HTTP admin port serves it only when the process
    /// serves no TLS (a 403 [`SESSIONS_UNDER_TLS`] otherwise; docs/security.md, "Who may
    /// list sessions").
    fn debug_sessions(&self) -> Result<String, String> {
        Err("this server keeps no session table; ask a cell's master".into())
    }

    /// The HTML status page's data (docs/operations.md, "Status page"), without its rates
    /// (the admin endpoint adds those from the registry); `None`: this server shows no
    /// page (a data cell's replicas, a standby), and `/status` stays JSON for everyone.
    fn status_page(&self) -> Option<PageFuture<'_>> {
        None
    }
}

/// What [`Pages::status_page`] returns: the page's data, gathered asynchronously (it asks
/// other servers).
pub type PageFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = crate::status_page::StatusPage> + Send + 'a>,
>;

/// Whether a `/status` request asks for the HTML page: a browser's `Accept: text/html`, or
/// `?html` in the query (`?json` forces JSON).
fn wants_html<B>(req: &Request<B>) -> bool {
    let query = req.uri().query().unwrap_or("");
    if query.split('&').any(|q| q == "json") {
        return false;
    }
    query.split('&').any(|q| q == "html")
        || req
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"))
}

/// What `/debug/sessions` answers (403) in a process that serves mutual TLS.
pub const SESSIONS_UNDER_TLS: &str = "this cell serves mutual TLS: its session and lock \
    tables are for operators only; use `warren ctl session list` (or `lock list`) with an \
    operator certificate";

/// Seconds between the HTML status page's reloads.
const PAGE_REFRESH_SECS: u32 = 5;

async fn html_page<P: Pages>(
    pages: &P,
    sampler: &crate::status_probe::RateSampler,
    page: PageFuture<'_>,
) -> Response<Full<Bytes>> {
    let mut page = page.await;
    page.refresh_secs = PAGE_REFRESH_SECS;
    page.rates = sampler.rates(|| metrics_text(pages)).await;
    reply(
        StatusCode::OK,
        "text/html; charset=utf-8",
        crate::status_page::render(&page),
    )
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

async fn page<P: Pages>(
    req: &Request<hyper::body::Incoming>,
    pages: &P,
    sampler: &crate::status_probe::RateSampler,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/status" && wants_html(req) && req.method() == Method::GET {
        if let Some(page) = pages.status_page() {
            return html_page(pages, sampler, page).await;
        }
    }
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
        // The admin port cannot tell an operator from anyone else; under mutual TLS the
        // session table is for operators only, over gRPC (docs/security.md).
        "/debug/sessions" if warren_tls::installed().is_some() => reply(
            StatusCode::FORBIDDEN,
            "text/plain",
            format!("{SESSIONS_UNDER_TLS}\n"),
        ),
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
    let sampler = Arc::new(crate::status_probe::RateSampler::default());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let pages = pages.clone();
        let sampler = sampler.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (pages, sampler) = (pages.clone(), sampler.clone());
                async move { Ok::<_, Infallible>(page(&req, &*pages, &sampler).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str, accept: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        if let Some(a) = accept {
            b = b.header(hyper::header::ACCEPT, a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn browsers_get_the_html_page_and_programs_json() {
        let chromium = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(wants_html(&get("/status", Some(chromium))));
        assert!(!wants_html(&get("/status", None)), "curl, ctl, the tests");
        assert!(!wants_html(&get("/status", Some("application/json"))));
        assert!(wants_html(&get("/status?html", None)));
        assert!(!wants_html(&get("/status?json", Some(chromium))));
        assert!(wants_html(&get("/status?x=1&html", None)));
    }
}
