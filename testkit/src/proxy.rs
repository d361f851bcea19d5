//! In-process proxies ([`Proxy::builder`]) in front of test cells, on ephemeral loopback
//! ports: `Proxy::builder().front(&cell).run().await`.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use warren_config::{CellAddrs, ProxyConfig};
use warren_proxy::ProxyError;

/// Entry point for in-process proxies.
pub struct Proxy;

impl Proxy {
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder {
            cells: Vec::new(),
            client_lease: None,
            admin: false,
            id: None,
            meta: Vec::new(),
            hold_back: true,
        }
    }
}

/// Settings of a test proxy.
#[derive(Clone)]
pub struct ProxyBuilder {
    cells: Vec<CellAddrs>,
    client_lease: Option<Duration>,
    admin: bool,
    id: Option<String>,
    meta: Vec<String>,
    /// Whether the proxy holds back (the default, as `warren proxy`).
    hold_back: bool,
}

impl ProxyBuilder {
    /// Routes by the partition map in the meta cell at `addrs`.
    pub fn meta(mut self, addrs: Vec<String>) -> Self {
        self.meta = addrs;
        self
    }
    /// Fronts the cell `name` at `addrs`.
    pub fn cell(mut self, name: &str, addrs: Vec<String>) -> Self {
        self.cells.push(CellAddrs {
            name: name.to_string(),
            addrs,
        });
        self
    }
    /// Fronts a test cell (named `main` unless the builder named it otherwise).
    pub fn front(self, cell: &crate::TestCell) -> Self {
        let name = cell.name().to_string();
        self.cell(&name, cell.endpoints())
    }
    /// Lease granted to clients (the cells' proxy lease must exceed it by the margins).
    /// Short leases scale the KeepAlive reply point and the margin down too.
    pub fn client_lease(mut self, lease: Duration) -> Self {
        self.client_lease = Some(lease);
        self
    }
    /// Without the hold-back (`warren proxy --hold-back off`; docs/proxy.md, "A dead proxy").
    pub fn without_hold_back(mut self) -> Self {
        self.hold_back = false;
        self
    }
    /// Also serve the admin HTTP endpoint.
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_string());
        self
    }

    /// The configuration this builder makes (for a given listen address).
    pub fn config(&self, listen: &str) -> ProxyConfig {
        let mut cfg = ProxyConfig::new(listen, self.cells.clone());
        cfg.hold_back &= self.hold_back;
        if let Some(lease) = self.client_lease {
            cfg.client_lease = lease;
            cfg.keepalive_reply_before_end = (lease / 4).min(Duration::from_secs(1));
            cfg.lease_margin = (lease / 4).min(Duration::from_secs(1));
        }
        if let Some(id) = &self.id {
            cfg.id = id.clone();
        }
        cfg.meta = self.meta.clone();
        cfg
    }

    /// Binds, starts the proxy, and returns once it holds a session at every cell.
    pub async fn run(self) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy port");
        let addr = listener.local_addr().expect("local addr");
        let admin_listener = if self.admin {
            Some(TcpListener::bind("127.0.0.1:0").await.expect("bind admin"))
        } else {
            None
        };
        let admin = admin_listener
            .as_ref()
            .map(|l| l.local_addr().expect("admin addr"));
        let cfg = self.config(&addr.to_string());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            warren_proxy::run(
                listener,
                admin_listener,
                cfg,
                move |_| {
                    let _ = ready_tx.send(());
                },
                async move {
                    let _ = stop_rx.await;
                },
            )
            .await
        });
        match tokio::time::timeout(Duration::from_secs(20), ready_rx).await {
            Ok(Ok(())) => {}
            _ => panic!("proxy did not become ready (a session at every cell) within 20 s"),
        }
        TestProxy {
            addr,
            admin,
            server: crate::ServerTask::new(stop_tx, task, "proxy", true),
        }
    }
}

/// A running in-process proxy. Dropping it stops it.
pub struct TestProxy {
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    server: crate::ServerTask<ProxyError>,
}

impl TestProxy {
    server_addresses!();
    /// Graceful stop.
    pub async fn stop(mut self) -> Result<(), ProxyError> {
        self.server.stop().await
    }
}

/// A session made with raw protocol calls (no client library: nothing acknowledges or
/// KeepAlives unless the test does) at the server at `addr` (`HOST:PORT`, a proxy or a
/// cell): the connected client and the context its calls carry.
pub async fn raw_session(
    addr: &str,
) -> (
    warren_proto::pb::warren_client::WarrenClient<tonic::transport::Channel>,
    warren_proto::pb::SessionContext,
) {
    use warren_proto::pb;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|e| panic!("{addr}: {e}"));
    // Over TLS if the process has an identity installed (the suite over TLS).
    let channel = warren_client::transport::connect_endpoint(&endpoint)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let mut c = pb::warren_client::WarrenClient::new(channel);
    let s = c
        .create_session(pb::CreateSessionRequest::default())
        .await
        .unwrap_or_else(|e| panic!("CreateSession at {addr}: {e}"))
        .into_inner();
    let ctx = pb::SessionContext {
        session_id: s.session_id,
        secret: s.secret,
        epoch: s.epoch,
        ..Default::default()
    };
    (c, ctx)
}

/// Opens `path` for reading (with its contents) in the raw session `ctx`, again every
/// 50 ms until the answer is cacheable, at most `tries` times; returns the last answer.
/// Through a proxy with a hold-back a client's first copy from a cell waits for a refresh
/// of the proxy's cover there (docs/proxy.md, "A dead proxy"), bounded: a loaded machine
/// can make that wait run out, and the answer is then not cacheable.
pub async fn open_until_cacheable(
    c: &mut warren_proto::pb::warren_client::WarrenClient<tonic::transport::Channel>,
    ctx: &warren_proto::pb::SessionContext,
    path: &str,
    tries: usize,
) -> warren_proto::pb::OpenResponse {
    let mut answer = warren_proto::pb::OpenResponse::default();
    for _ in 0..tries {
        answer = c
            .open(warren_proto::pb::OpenRequest {
                ctx: Some(ctx.clone()),
                path: path.to_string(),
                intent: warren_proto::pb::Intent::Read as u32,
                read: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("Open {path}: {e}"))
            .into_inner();
        if answer.cacheable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answer
}
