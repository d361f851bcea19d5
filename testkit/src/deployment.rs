//! In-process partitioned deployments (docs/design.md §11, docs/partitioning.md): a meta cell, data
//! cells `c1..cN` watching the partition map there, and proxies routing by it.
//!
//! ```ignore
//! let d = Deployment::builder().cells(3).proxies(2).run().await;
//! let s = Session::connect(&d.proxy_addrs()).await?;
//! ```
//!
//! [`DeploymentBuilder::run`] starts the meta cell, writes the first map into it (epoch 1,
//! the slots spread evenly over the data cells, as `warren ctl deployment init` does),
//! starts the data cells, waits until each one's `Locate` reports the map, then starts the
//! proxies. [`Deployment::write_map`] installs a new map, [`Deployment::add_cell`] starts
//! a data cell a new map can name, and [`Deployment::wait_for_map`] (or [`wait_for_map_at`]
//! for one router) waits until a map epoch has arrived.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use warren_client::{admin, OpenOptions, Session};
use warren_config::layout::{self, Layout};
use warren_router::PartitionMap;

use crate::proxy::ProxyBuilder;
use crate::{Cell, CellBuilder, Proxy, TestCell, TestProxy};

/// The deployment name of test deployments (`/ls/local/…`).
pub const DEPLOYMENT: &str = warren_config::defaults::DEPLOYMENT;

/// How long a data cell may take to load the map.
const MAP_PATIENCE: Duration = Duration::from_secs(20);

/// Entry point: `Deployment::builder()`; see the [module docs](self).
pub struct Deployment {
    meta: TestCell,
    cells: Vec<TestCell>,
    proxies: Vec<TestProxy>,
    map: Mutex<PartitionMap>,
    /// Each data cell's link to the meta cell, when built with
    /// [`DeploymentBuilder::meta_links`].
    meta_links: Vec<(String, crate::Bridge)>,
    /// The settings it was built with (for [`Deployment::add_cell`]).
    settings: DeploymentBuilder,
}

/// Settings of a test deployment. Defaults: 3 data cells, 1 proxy, S = 4096 slots,
/// the default timings.
pub struct DeploymentBuilder {
    cells: usize,
    proxies: usize,
    slots: u32,
    /// What every cell (meta and data) is built from; each gets its name, and a data cell
    /// the meta cell's addresses and its listener.
    cell: CellBuilder,
    /// What every proxy is built from; each gets the meta cell's addresses.
    proxy: ProxyBuilder,
    /// Put a [`crate::Bridge`] on each data cell's link to the meta cell.
    meta_links: bool,
}

impl Deployment {
    pub fn builder() -> DeploymentBuilder {
        DeploymentBuilder {
            cells: 3,
            proxies: 1,
            slots: warren_router::DEFAULT_SLOTS,
            cell: Cell::builder().deployment(DEPLOYMENT),
            proxy: Proxy::builder(),
            meta_links: false,
        }
    }

    /// The bridge on data cell `cell`'s link to the meta cell (the partition map and
    /// everything else it reads there come through it): pause it to make the cell load a
    /// new map late. Panics unless the deployment was built with
    /// [`DeploymentBuilder::meta_links`].
    pub fn meta_link(&self, cell: &str) -> &crate::Bridge {
        self.meta_links
            .iter()
            .find(|(c, _)| c == cell)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("no meta link for {cell}: build with meta_links()"))
    }

    /// The meta cell (named `meta`; holds `/ls/local/warren/…`, the map among it).
    pub fn meta(&self) -> &TestCell {
        &self.meta
    }

    /// The meta cell's addresses, as cells, proxies and direct clients are given them.
    pub fn meta_addrs(&self) -> Vec<String> {
        self.meta.endpoints()
    }

    /// The data cells, `c1..cN` in order.
    pub fn cells(&self) -> &[TestCell] {
        &self.cells
    }

    /// The data cell named `name`.
    pub fn cell(&self, name: &str) -> Option<&TestCell> {
        self.cells.iter().find(|c| c.name() == name)
    }

    /// The proxies, in start order.
    pub fn proxies(&self) -> &[TestProxy] {
        &self.proxies
    }

    /// The proxies' `HOST:PORT` addresses, in start order.
    pub fn proxy_addrs(&self) -> Vec<String> {
        self.proxies.iter().map(TestProxy::addr).collect()
    }

    /// The current partition map (the last one written through this harness).
    pub fn map(&self) -> PartitionMap {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Writes `map` over the partition map file in the meta cell (`set_contents` through a
    /// fresh session there) and returns the instant the write was acknowledged: by then every
    /// watcher has dropped its cached copy (docs/partitioning.md, "Watching the map").
    /// Panics if the write fails.
    pub async fn write_map(&self, map: &PartitionMap) -> Instant {
        let session = meta_session(&self.meta_addrs()).await;
        let path = warren_client::map::map_path(DEPLOYMENT);
        let (handle, _) = session
            .open(&path, OpenOptions::new().write())
            .await
            .unwrap_or_else(|e| panic!("open {path} at the meta cell: {e}"));
        let written = handle.set_contents(map.to_json()).await;
        let acked = Instant::now();
        if let Err(e) = written {
            panic!("write map epoch {} to {path}: {e}", map.map_epoch());
        }
        handle.close().await;
        let _ = session.close().await;
        *self.map.lock().unwrap_or_else(|e| e.into_inner()) = map.clone();
        acked
    }

    /// Starts another data cell named `name` on `listener` (bound beforehand, so that a map
    /// can name its address before it runs), with the settings of the other data cells and
    /// watching the map at the meta cell, and adds it to [`Deployment::cells`]. It does not
    /// change the map: write one naming the cell with [`Deployment::write_map`].
    pub async fn add_cell(&mut self, name: &str, listener: TcpListener) -> &TestCell {
        let cell = self
            .settings
            .cell(name)
            .meta(self.meta_addrs())
            .listener(listener)
            .run()
            .await;
        self.cells.push(cell);
        self.cells.last().expect("the cell just added")
    }

    /// Waits (up to 20 s each) until every data cell and every proxy of the deployment
    /// reports map epoch `epoch` or a newer one; panics naming the first that does not.
    pub async fn wait_for_map(&self, epoch: u64) {
        for c in &self.cells {
            wait_for_map_at(&c.addr(), epoch, &format!("data cell {}", c.name())).await;
        }
        for p in &self.proxies {
            wait_for_map_at(&p.addr(), epoch, "proxy").await;
        }
    }

    /// The map epoch each data cell's `Locate` reports, by cell name (0 for a cell that does
    /// not answer).
    pub async fn cell_map_epochs(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for c in &self.cells {
            out.push((c.name().to_string(), map_epoch_at(&c.addr()).await));
        }
        out
    }

    /// The map epoch each proxy's `Locate` reports, by proxy address (0 for none).
    pub async fn proxy_map_epochs(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for p in &self.proxies {
            out.push((p.addr(), map_epoch_at(&p.addr()).await));
        }
        out
    }
}

/// The map epoch `Locate` at `addr` reports (0 when it does not answer).
pub async fn map_epoch_at(addr: &str) -> u64 {
    warren_client::locate(&[addr.to_string()], Duration::from_secs(2))
        .await
        .map_or(0, |info| info.map_epoch)
}

/// Waits (up to 20 s) until `Locate` at `addr` reports map epoch `epoch` or a newer one;
/// panics naming `who` if it does not.
pub async fn wait_for_map_at(addr: &str, epoch: u64, who: &str) {
    crate::wait_until(
        MAP_PATIENCE,
        &format!("{who} ({addr}) loads map epoch {epoch}"),
        || async move { map_epoch_at(addr).await >= epoch },
    )
    .await;
}

/// A session straight at the meta cell, as the map code path (the principal the meta cell
/// accepts map writes from).
async fn meta_session(meta: &[String]) -> Session {
    Session::connect_with(admin::operator_options(meta.to_vec()))
        .await
        .unwrap_or_else(|e| panic!("connect to the meta cell at {meta:?}: {e}"))
}

impl DeploymentBuilder {
    /// Number of data cells (≥ 1), named `c1..cN`.
    pub fn cells(mut self, n: usize) -> Self {
        assert!(n >= 1, "a deployment needs at least one data cell");
        self.cells = n;
        self
    }
    /// Number of proxies (may be 0).
    pub fn proxies(mut self, n: usize) -> Self {
        self.proxies = n;
        self
    }
    /// S, the slot count of the first map.
    pub fn slots(mut self, s: u32) -> Self {
        self.slots = s;
        self
    }
    /// Session lease of every cell (meta and data), as [`CellBuilder::lease`].
    pub fn lease(mut self, d: Duration) -> Self {
        self.cell = self.cell.lease(d);
        self
    }
    /// Lease every cell grants proxy sessions, as [`CellBuilder::proxy_lease`].
    pub fn proxy_lease(mut self, d: Duration) -> Self {
        self.cell = self.cell.proxy_lease(d);
        self
    }
    /// Claim window of every cell, as [`CellBuilder::claim_window`].
    pub fn claim_window(mut self, d: Duration) -> Self {
        self.cell = self.cell.claim_window(d);
        self
    }
    /// Lease the proxies grant clients, as [`ProxyBuilder::client_lease`].
    pub fn client_lease(mut self, d: Duration) -> Self {
        self.proxy = self.proxy.client_lease(d);
        self
    }
    /// Each data cell reaches the meta cell through a [`crate::Bridge`] of its own
    /// ([`Deployment::meta_link`]).
    pub fn meta_links(mut self) -> Self {
        self.meta_links = true;
        self
    }
    /// Serve the admin HTTP endpoint on every cell and proxy.
    pub fn admin(mut self) -> Self {
        self.cell = self.cell.admin();
        self.proxy = self.proxy.admin();
        self
    }

    fn cell(&self, name: &str) -> CellBuilder {
        self.cell.same_settings().name(name)
    }

    /// Starts the deployment; returns once every data cell has loaded the map and every
    /// proxy serves. Panics if any of it fails.
    pub async fn run(self) -> Deployment {
        let count = |n: usize| u16::try_from(n).expect("at most 65535 cells or proxies");
        // Free ports: the harness runs many deployments side by side.
        let layout = Layout::new(count(self.cells), count(self.proxies), 0);
        let meta = self.cell(layout::META).run().await;
        let meta_addrs = meta.endpoints();

        // Bind the data cells' ports first, so the map can name them before they start.
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for name in layout.cell_names() {
            let l = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a data cell port");
            addrs.push(l.local_addr().expect("local addr"));
            listeners.push((name, l));
        }
        let map = admin::initial_map(DEPLOYMENT, &layout.initial_map_cells(&addrs), self.slots)
            .unwrap_or_else(|e| panic!("make the first map: {e}"));
        write_first_map(&meta_addrs, &map).await;

        let mut cells = Vec::new();
        let mut meta_links = Vec::new();
        for (name, listener) in listeners {
            let via = if self.meta_links {
                let bridge = crate::Bridge::start(meta.addr().parse().expect("meta address")).await;
                let via = vec![bridge.addr().to_string()];
                meta_links.push((name.to_string(), bridge));
                via
            } else {
                meta_addrs.clone()
            };
            let cell = self.cell(&name).meta(via).listener(listener).run().await;
            cells.push(cell);
        }
        for c in &cells {
            wait_for_map_at(&c.addr(), 1, &format!("data cell {}", c.name())).await;
        }

        let mut proxies = Vec::new();
        for _ in 0..self.proxies {
            proxies.push(self.proxy.clone().meta(meta_addrs.clone()).run().await);
        }
        Deployment {
            meta,
            cells,
            proxies,
            map: Mutex::new(map),
            meta_links,
            settings: self,
        }
    }
}

/// Creates `/ls/local/warren` and the map file in it (which must not exist yet), at the meta
/// cell at `meta`: what [`DeploymentBuilder::run`] does before it starts the data cells, for
/// tests that assemble a deployment by hand (e.g. start a proxy before there is a map).
/// Panics if it fails.
pub async fn write_first_map(meta: &[String], map: &PartitionMap) {
    let session = meta_session(meta).await;
    admin::create_map(&session, map).await.unwrap_or_else(|e| {
        panic!(
            "create {} at the meta cell: {e}",
            warren_client::map::map_path(map.deployment())
        )
    });
    let _ = session.close().await;
}
