//! Harnesses for Warren's tests: in-process cells on ephemeral loopback ports
//! ([`Cell::builder`]), whole partitioned deployments ([`Deployment::builder`]), the real
//! `warren` binary as a child process ([`WarrenProcess`], killed with SIGKILL for failure
//! tests; [`WarrenProcess::spawn_dev`] for `warren dev`), and [`wait_until`] for waiting on a predicate
//! with a deadline instead of sleeping. [`etcd::EtcdCluster`] runs real etcd members and
//! [`bridge::Bridge`] injects network faults between tiers.
//!
//! Every harness binds before it spawns, so its address is known and connectable by the
//! time the builder returns.

/// The address accessors every running server harness has ([`TestCell`], [`TestProxy`]),
/// for a struct with fields `addr: SocketAddr` and `admin: Option<SocketAddr>`.
macro_rules! server_addresses {
    () => {
        /// `HOST:PORT` of the gRPC service.
        pub fn addr(&self) -> String {
            self.addr.to_string()
        }
        /// The endpoint list a client is given.
        pub fn endpoints(&self) -> Vec<String> {
            vec![self.addr()]
        }
        /// The admin HTTP endpoint's address, when it was asked for.
        pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
            self.admin
        }
    };
}

pub mod bridge;
pub mod certs;
pub mod deployment;
pub mod etcd;
pub mod ports;
pub mod proxy;

pub use bridge::Bridge;
pub use deployment::{Deployment, DeploymentBuilder};
pub use etcd::EtcdCluster;
pub use ports::free_port;
pub use proxy::{Proxy, TestProxy};

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warren_cell::core::CoreConfig;
use warren_cell::server::{CellError, CellHandle, CellOptions};
use warren_cell::store::embedded::EmbeddedStore;
use warren_cell::store::memory::MemoryStore;
use warren_cell::store::Store;

/// [`CellBuilder`] setters that each store their argument in the cell's [`CoreConfig`]
/// field of the same name.
macro_rules! core_setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty;)+) => {$(
        $(#[$doc])*
        pub fn $field(mut self, value: $ty) -> Self {
            self.core.$field = value;
            self
        }
    )+};
}

/// Entry point for in-process cells.
pub struct Cell;

impl Cell {
    pub fn builder() -> CellBuilder {
        let mut core = CoreConfig::new("c0", "local");
        // Over TLS (the suite's `WARREN_SUITE_TLS=1`) every in-process cell and proxy
        // presents the certificate of [`TEST_SERVER_PRINCIPAL`]: the cells take it as a
        // proxy and an operator, and nobody else. In plaintext it changes nothing.
        core.callers
            .proxies
            .insert(TEST_SERVER_PRINCIPAL.to_string());
        core.callers
            .operators
            .insert(TEST_SERVER_PRINCIPAL.to_string());
        CellBuilder {
            core,
            data: None,
            memory: false,
            admin: false,
            listen: None,
            listener: None,
            meta: Vec::new(),
        }
    }
}

/// The principal of the certificate in-process servers present when a test runs them
/// over TLS: a test cell's only proxy (and operator) principal besides the defaults.
pub const TEST_SERVER_PRINCIPAL: &str = "warren:test-server";

/// Configures an in-process cell. Defaults: cell `c0` of deployment `local`, the embedded
/// store in a fresh temporary directory, default timings.
pub struct CellBuilder {
    core: CoreConfig,
    data: Option<PathBuf>,
    memory: bool,
    admin: bool,
    listen: Option<SocketAddr>,
    listener: Option<TcpListener>,
    meta: Vec<String>,
}

impl CellBuilder {
    /// A builder with the same settings, for another cell: everything but the listener,
    /// which can serve one cell only.
    pub(crate) fn same_settings(&self) -> CellBuilder {
        CellBuilder {
            core: self.core.clone(),
            data: self.data.clone(),
            memory: self.memory,
            admin: self.admin,
            listen: self.listen,
            listener: None,
            meta: self.meta.clone(),
        }
    }
    /// A data cell of a partitioned deployment whose meta cell is at `addrs`.
    pub fn meta(mut self, addrs: Vec<String>) -> Self {
        self.meta = addrs;
        self
    }
    /// Listen on this address (default `127.0.0.1:0`); a restart on the same data and
    /// address is a failover its clients can follow.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }
    /// Serve on this already bound listener (its address known before the cell starts).
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }
    pub fn name(mut self, name: &str) -> Self {
        self.core.cell = name.to_string();
        self
    }
    pub fn deployment(mut self, d: &str) -> Self {
        self.core.deployment = d.to_string();
        self
    }
    /// Session lease (short leases keep lease-dependent tests fast).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.core.lease = lease;
        self.core.reply_before_end = (lease / 4).min(Duration::from_secs(1));
        self
    }
    core_setters! {
        /// Lease the cell grants proxy sessions (default 20 s).
        proxy_lease: Duration;
        /// How long the client sessions of an ended proxy session wait to be claimed
        /// (default 60 s).
        claim_window: Duration;
        /// How long after a failover unclaimed ephemeral nodes live (default 60 s).
        ephemeral_cleanup: Duration;
        /// Largest file contents the cell accepts, in bytes.
        max_file_size: usize;
        /// Who may act as a proxy or an operator when callers are authenticated
        /// (docs/security.md, "Authorization"; default: nobody but `warren:operator`).
        callers: warren_cell::core::CallerRules;
    }
    /// Use (and keep) this directory for the embedded store.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data = Some(dir.to_path_buf());
        self
    }
    /// Use the in-memory store (not durable).
    pub fn memory(mut self) -> Self {
        self.memory = true;
        self
    }
    /// Also serve the admin HTTP endpoint.
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }

    /// Binds, starts the cell, and returns once it serves.
    pub async fn run(mut self) -> TestCell {
        let listener = match self.listener.take() {
            Some(l) => l,
            None => {
                let addr = self
                    .listen
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
                TcpListener::bind(addr)
                    .await
                    .unwrap_or_else(|e| panic!("bind cell port {addr}: {e}"))
            }
        };
        let addr = listener.local_addr().expect("local addr");
        let admin_listener = if self.admin {
            Some(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind admin port"),
            )
        } else {
            None
        };
        let admin = admin_listener
            .as_ref()
            .map(|l| l.local_addr().expect("admin addr"));
        let (dir, store): (Option<tempfile::TempDir>, Arc<dyn Store>) = if self.memory {
            (None, Arc::new(MemoryStore::new()))
        } else if let Some(d) = &self.data {
            (
                None,
                Arc::new(EmbeddedStore::open(d).expect("open embedded store")),
            )
        } else {
            let t = tempfile::tempdir().expect("tempdir");
            let s = EmbeddedStore::open(t.path()).expect("open embedded store");
            (Some(t), Arc::new(s))
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel::<CellHandle>();
        let name = self.core.cell.clone();
        let mut opts = CellOptions::new(self.core);
        opts.meta = self.meta;
        let task = tokio::spawn(async move {
            warren_cell::run(
                listener,
                admin_listener,
                store,
                opts,
                move |h| {
                    let _ = ready_tx.send(h);
                },
                async move {
                    let _ = stop_rx.await;
                },
            )
            .await
        });
        let handle = match ready_rx.await {
            Ok(h) => h,
            Err(_) => panic!("cell failed to start: {:?}", task.await),
        };
        TestCell {
            name,
            addr,
            admin,
            handle,
            server: ServerTask::new(stop_tx, task, "cell", false),
            _dir: dir,
        }
    }
}

/// A running in-process cell. Dropping it stops it.
pub struct TestCell {
    name: String,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    handle: CellHandle,
    server: ServerTask<CellError>,
    _dir: Option<tempfile::TempDir>,
}

impl TestCell {
    /// The cell's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    server_addresses!();
    pub fn handle(&self) -> &CellHandle {
        &self.handle
    }
    /// Graceful stop; returns the cell's result.
    pub async fn stop(mut self) -> Result<(), CellError> {
        self.server.stop().await
    }
}

/// A server task a harness started (a cell's or a proxy's) and the trigger that stops it:
/// [`ServerTask::stop`] stops it and returns its result; dropping it triggers the stop
/// (and, with `abort_on_drop`, aborts the task) without waiting.
pub(crate) struct ServerTask<E> {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), E>>>,
    /// `cell` or `proxy`, for the panic message.
    what: &'static str,
    abort_on_drop: bool,
}

impl<E> ServerTask<E> {
    pub(crate) fn new(
        stop: oneshot::Sender<()>,
        task: JoinHandle<Result<(), E>>,
        what: &'static str,
        abort_on_drop: bool,
    ) -> Self {
        ServerTask {
            stop: Some(stop),
            task: Some(task),
            what,
            abort_on_drop,
        }
    }

    /// Triggers the stop and waits for the task's result.
    pub(crate) async fn stop(&mut self) -> Result<(), E> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(t) => t
                .await
                .unwrap_or_else(|e| panic!("{} task panicked: {e}", self.what)),
            None => Ok(()),
        }
    }
}

impl<E> Drop for ServerTask<E> {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if self.abort_on_drop {
            if let Some(t) = self.task.take() {
                t.abort();
            }
        }
    }
}

/// Polls `f` until it returns true; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The real `warren` binary running as a child process (its stdout parsed for the
/// `meta:` / `cells:` / `proxies:` / `ready` lines that `warren cell`, `warren proxy` and
/// `warren dev` print).
pub struct WarrenProcess {
    child: tokio::process::Child,
    /// `(name, HOST:PORT)` from the `cells:` line.
    pub cells: Vec<(String, String)>,
    /// The meta cell's `HOST:PORT`, from the `meta:` line (`warren dev`).
    pub meta: Option<String>,
    /// `HOST:PORT` of each proxy, from the `proxies:` line (`warren proxy`, `warren dev`).
    pub proxies: Vec<String>,
    /// Everything printed on stdout before `ready`.
    pub banner: Vec<String>,
}

impl WarrenProcess {
    /// Spawns `bin args…` and waits (up to 120 s: a resumed `warren dev` waits out the
    /// sessions of the previous run) for its `ready` line.
    pub async fn spawn(bin: &Path, args: &[&str]) -> WarrenProcess {
        Self::spawn_env(bin, args, &[]).await
    }

    pub async fn spawn_env(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> WarrenProcess {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let mut cells = Vec::new();
        let mut meta = None;
        let mut proxies = Vec::new();
        let read = async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if line.trim() == "ready" {
                    return true;
                }
                if let Some(rest) = line.strip_prefix("cells: ") {
                    for item in rest.split(',') {
                        if let Some((n, a)) = item.trim().split_once('=') {
                            cells.push((n.to_string(), a.to_string()));
                        }
                    }
                }
                if let Some(rest) = line.strip_prefix("meta: ") {
                    meta = Some(rest.trim().to_string());
                }
                if let Some(rest) = line.strip_prefix("proxies:") {
                    proxies.extend(
                        rest.split(',')
                            .map(str::trim)
                            .filter(|a| !a.is_empty())
                            .map(str::to_string),
                    );
                }
                banner.push(line);
            }
            false
        };
        let ok = tokio::time::timeout(Duration::from_secs(120), read).await;
        if ok != Ok(true) {
            let _ = child.start_kill();
            panic!(
                "{} {args:?} did not print `ready` (printed {banner:?})",
                bin.display()
            );
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        WarrenProcess {
            child,
            cells,
            meta,
            proxies,
            banner,
        }
    }

    /// `warren dev --data DATA --cells CELLS --proxies PROXIES` on free ports
    /// (`--base-port 0`; a second run on the same `data` puts the data cells back at the
    /// addresses in its map), waiting for `ready`.
    pub async fn spawn_dev(bin: &Path, data: &Path, cells: u32, proxies: u32) -> WarrenProcess {
        let data = data.to_str().expect("a UTF-8 data path");
        let (cells, proxies) = (cells.to_string(), proxies.to_string());
        WarrenProcess::spawn(
            bin,
            &[
                "dev",
                "--data",
                data,
                "--cells",
                &cells,
                "--proxies",
                &proxies,
                "--base-port",
                "0",
            ],
        )
        .await
    }

    /// `warren proxy` in front of `cell` (`NAME=HOST:PORT[,…]`) with short timings for
    /// tests: `client_lease` (e.g. `2s`), a 500 ms lease margin and KeepAlive reply point.
    pub async fn spawn_proxy(bin: &Path, cell: &str, client_lease: &str) -> WarrenProcess {
        Self::spawn_proxy_args(bin, cell, client_lease, &[]).await
    }

    /// [`WarrenProcess::spawn_proxy`] with `--hold-back on`, the default, made explicit
    /// for the tests that depend on it (docs/proxy.md, "A dead proxy"): writes to what it
    /// cached wait, once it is dead, only for its client leases.
    pub async fn spawn_proxy_holding_back(
        bin: &Path,
        cell: &str,
        client_lease: &str,
    ) -> WarrenProcess {
        Self::spawn_proxy_args(bin, cell, client_lease, &["--hold-back", "on"]).await
    }

    /// [`WarrenProcess::spawn_proxy`] with `--hold-back off`: a client's first copy from
    /// a cell never waits for a cover refresh there (docs/proxy.md, "A dead proxy").
    pub async fn spawn_proxy_without_hold_back(
        bin: &Path,
        cell: &str,
        client_lease: &str,
    ) -> WarrenProcess {
        Self::spawn_proxy_args(bin, cell, client_lease, &["--hold-back", "off"]).await
    }

    async fn spawn_proxy_args(
        bin: &Path,
        cell: &str,
        client_lease: &str,
        extra: &[&str],
    ) -> WarrenProcess {
        let mut args = vec![
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--cell",
            cell,
            "--client-lease",
            client_lease,
            "--lease-margin",
            "500ms",
            "--keepalive-reply-before-end",
            "500ms",
        ];
        args.extend_from_slice(extra);
        WarrenProcess::spawn(bin, &args).await
    }

    /// The address a `warren proxy` printed (`proxies: ADDR`); for `warren dev`, the first
    /// proxy's.
    pub fn proxy_addr(&self) -> String {
        self.proxies
            .first()
            .unwrap_or_else(|| panic!("no proxy in the `proxies:` line of {:?}", self.banner))
            .clone()
    }

    /// The meta cell's address `warren dev` printed (`meta: ADDR`).
    pub fn meta_addr(&self) -> String {
        self.meta
            .clone()
            .unwrap_or_else(|| panic!("no `meta:` line in {:?}", self.banner))
    }

    /// The first cell's address.
    pub fn addr(&self) -> String {
        self.cells
            .first()
            .map(|c| c.1.clone())
            .expect("no cells line")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for the process to exit by itself; its exit status.
    pub async fn wait(&mut self) -> std::process::ExitStatus {
        self.child
            .wait()
            .await
            .expect("wait for the warren process")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Sends SIGINT (as Ctrl-C does) and waits up to `timeout` for a clean exit.
    pub async fn interrupt(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }
}
