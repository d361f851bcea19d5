//! The async layer around [`Master`](crate::core::Master), and [`run`], the one entry point
//! (`run(listener, options, shutdown)`, like mini-redis).
//!
//! Ordering rule: every reply waits until the store has made durable all changes the
//! master had applied when the reply was produced. Changes are handed to the writer in
//! the master's critical section, so they commit in the order they were applied; the
//! writer batches whatever has queued up into one transaction (group commit).
//!
//! One module per concern:
//! - [`node`]: one replica's role (master or standby), what `Locate` and `/status` show;
//! - [`term`]: one master term — the master recovered from the store, its writer, ticker,
//!   partition-map feed and janitor;
//! - [`calls`]: how a call runs on the master: under its lock, then waiting until what it
//!   changed is durable (parking for locks, KeepAlives and cache invalidations);
//! - [`writer`]: the group-commit writer and the sequence numbers replies wait for;
//! - [`crosscell`]: the steps that cross cells (docs/partitioning.md), run after the
//!   master's part is durable — creating a child anchor, unlinking the entry of a deleted
//!   anchor, reading ACL files held elsewhere, and the janitor that finishes interrupted
//!   steps;
//! - [`service`]: the `warren.v1.Warren` gRPC service, one module per concern;
//! - [`reshard`]: the `warren.v1.Reshard` service (slot calls of a reshard), and
//!   [`reshard_job`]: its job calls at the meta cell;
//! - [`backup`]: the master's backups (scheduled and `warren.v1.Backup`), read from the
//!   store at one consistent point;
//! - [`metrics`]: the cell's metrics, described and recorded;
//! - [`fault`]: the crash hook of the partitioning tests (feature `fault-injection`);
//! - [`plant`]: the bugs `warren chaos` plants (feature `fault-injection`).
//!
//! This file holds the options, the errors, the front every replica runs whatever its role
//! ([`Front`]: the gRPC service and the admin endpoint) and [`run`].

pub mod backup;
mod calls;
mod crosscell;
mod fault;
pub(crate) mod metrics;
mod node;
pub(crate) mod plant;
mod reshard;
mod reshard_job;
mod service;
mod term;
mod writer;

pub use node::{CellHandle, CellStatus};
pub(crate) use node::{Node, Role};
pub(crate) use reshard_job::current_job;
pub(crate) use term::Term;

use crate::core::CoreConfig;
use crate::store::{Store, StoreError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use warren_server::grpc::Listen;

/// How a cell runs.
#[derive(Clone, Debug)]
pub struct CellOptions {
    pub core: CoreConfig,
    /// Address clients should be told to use (Locate); defaults to the listener's address.
    pub advertise: Option<String>,
    /// How often time-driven work runs (KeepAlive replies, expiry, lock timeouts).
    pub tick: Duration,
    /// This replica's id within its cell (etcd store; empty for the embedded store).
    pub replica: String,
    /// The meta cell's replicas: given, this is a data cell that serves only the slots the
    /// partition map (watched there) gives it (docs/partitioning.md).
    pub meta: Vec<String>,
    /// Where the master's backups go and how often (docs/backup.md); none: no backups.
    pub backup: Option<Arc<dyn backup::BackupSink>>,
    /// The seed of each master term's RNG (session ids, KeepAlive reply jitter); `None`
    /// (the default): a random one. The deterministic simulation sets it so that a run
    /// replays from its seed (docs/reliability.md, "Deterministic simulation").
    pub seed: Option<u64>,
}

impl CellOptions {
    pub fn new(core: CoreConfig) -> Self {
        CellOptions {
            core,
            advertise: None,
            tick: Duration::from_millis(50),
            replica: String::new(),
            meta: Vec::new(),
            backup: None,
            seed: None,
        }
    }

    /// Options for a cell process from its validated configuration.
    pub fn from_config(c: &warren_config::CellConfig) -> Self {
        let mut core = CoreConfig::new(&c.name, &c.deployment);
        core.lease = c.lease;
        core.proxy_lease = c.proxy_lease;
        core.claim_window = c.claim_window;
        core.reply_before_end = c.keepalive_reply_before_end;
        core.max_lock_delay = c.max_lock_delay;
        core.max_file_size = c.max_file_size;
        core.ephemeral_cleanup = c.ephemeral_cleanup;
        core.callers = crate::core::CallerRules {
            proxies: c.proxy_principals.iter().cloned().collect(),
            operators: c.operator_principals.iter().cloned().collect(),
        };
        CellOptions {
            replica: c.replica.clone(),
            meta: c.meta.clone(),
            advertise: c.advertise.clone(),
            ..CellOptions::new(core)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Startup(String),
    #[error("serving gRPC failed: {0}")]
    Serve(String),
}

/// What every replica runs whatever its role: the gRPC service and the admin endpoint,
/// up from the start (so `Locate` is answered before anything else).
pub(crate) struct Front {
    pub(crate) node: Arc<Node>,
    admin: Option<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
    grpc: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    /// Keeps `grpc.health.v1.Health` following `/readyz` while the replica serves.
    _health: warren_server::grpc::HealthTask,
}

impl Front {
    pub(crate) async fn start(
        listen: Listen,
        admin_listener: Option<TcpListener>,
        opts: &CellOptions,
        store_kind: &'static str,
    ) -> Result<Front, CellError> {
        let advertise = opts.advertise.clone().unwrap_or(listen.address.clone());
        let node = Node::new(opts, advertise, store_kind);
        let admin = admin_listener.map(|l| {
            // Install the recorder now, before the first term counts anything.
            metrics::prometheus();
            tokio::spawn(crate::admin::serve(l, node.clone()))
        });
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let routes = warren_server::grpc::warren_routes(service::service(node.clone()))
            .add_service(reshard::service(node.clone()))
            .add_service(backup::service(node.clone()));
        // Health says SERVING exactly when /readyz does: a master with its map loaded.
        let ready = {
            let node = node.clone();
            move || node.ready()
        };
        let (routes, health) = warren_server::grpc::add_standard_services(
            routes,
            &["warren.v1.Warren", "warren.v1.Reshard", "warren.v1.Backup"],
            ready,
        )
        .await;
        let grpc = tokio::spawn(listen.serve(routes, async move {
            let _ = stop_rx.await;
        }));
        Ok(Front {
            node,
            admin,
            stop,
            grpc,
            _health: health,
        })
    }

    /// Stops serving (gracefully: parked calls were already failed by the role change).
    pub(crate) async fn stop(self) -> Result<(), CellError> {
        self.node.set_role(Role::Standby {
            master: String::new(),
            epoch: 0,
        });
        let _ = self.stop.send(());
        let served = self
            .grpc
            .await
            .map_err(|e| CellError::Serve(e.to_string()))?;
        if let Some(a) = self.admin {
            a.abort();
        }
        served.map_err(|e| CellError::Serve(e.to_string()))
    }
}

/// Starts a single-replica cell on `listener` with `store` (the embedded store: a restart
/// of the process is a failover). Returns when `shutdown` completes (after a graceful
/// stop) or when the store fails. `on_ready` is called once the master has recovered its
/// state and is serving.
pub async fn run(
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    store: Arc<dyn Store>,
    opts: CellOptions,
    on_ready: impl FnOnce(CellHandle) + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CellError> {
    let listen = Listen::tcp(listener).map_err(|e| CellError::Startup(e.to_string()))?;
    run_on(listen, admin_listener, store, opts, on_ready, shutdown).await
}

/// [`run`] serving the connections of `incoming` (plaintext) instead of a TCP listener,
/// telling clients to use `advertise`: the seam the deterministic simulation runs a cell
/// on its simulated network through (docs/reliability.md, "Deterministic simulation").
#[cfg(feature = "sim")]
pub async fn run_incoming<I, IO, IE>(
    incoming: I,
    advertise: String,
    store: Arc<dyn Store>,
    opts: CellOptions,
    on_ready: impl FnOnce(CellHandle) + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CellError>
where
    I: futures::Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: warren_server::grpc::Conn,
    IE: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let listen = Listen::incoming(incoming, advertise);
    run_on(listen, None, store, opts, on_ready, shutdown).await
}

async fn run_on(
    listen: Listen,
    admin_listener: Option<TcpListener>,
    store: Arc<dyn Store>,
    opts: CellOptions,
    on_ready: impl FnOnce(CellHandle) + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CellError> {
    let front = Front::start(listen, admin_listener, &opts, store.kind()).await?;
    let node = front.node.clone();
    let term = match Term::start(store.clone(), &opts).await {
        Ok(t) => t,
        Err(e) => {
            let _ = front.stop().await;
            return Err(e);
        }
    };
    tracing::info!(cell = %opts.core.cell, epoch = term.epoch(), advertise = %node.advertise, store = store.kind(), "cell master serving");
    node.set_role(Role::Master(term.shared.clone()));
    on_ready(CellHandle::new(node.clone()));
    let failure = tokio::select! {
        _ = shutdown => None,
        f = term.failed() => Some(f),
    };
    if failure.is_none() {
        term.close_sessions().await;
    }
    node.set_role(Role::Standby {
        master: String::new(),
        epoch: term.epoch(),
    });
    term.end().await;
    let served = front.stop().await;
    if let Some(f) = failure {
        tracing::error!(error = %f, "store failed; the cell stopped serving");
        return Err(CellError::Store(StoreError::Io(f)));
    }
    served
}
