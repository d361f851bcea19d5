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
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;

/// The process-wide Prometheus recorder (installed on first use; every cell in a process
/// shares it).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test binary, an embedding program);
        // then this handle still renders what this recorder sees, which is nothing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
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
