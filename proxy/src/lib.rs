//! `warren-proxy`: the proxy server of docs/design.md §10. It serves the same `warren.v1.Warren`
//! service as a cell; client sessions live here ([`core`]), with one session per cell
//! upstream ([`upstream`]), one shared cache ([`cache`]), calls forwarded on behalf of
//! client sessions ([`service`]), and the admin endpoint ([`admin`]).
//!
//! Entry point: [`run`] (bind first, then call it — tests bind `127.0.0.1:0`); [`run_incoming`]
//! serves on any stream of connections (the deterministic simulation's seam).

#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod core;
pub mod moved;
pub mod permission;
pub mod routing;
mod service;
pub mod upstream;

/// How the proxy reads a client request's session context (public for the fuzz target
/// `proxy_requests`, docs/fuzzing.md).
pub use service::{parse_ctx, Ctx as RequestCtx};
pub use warren_config as config;
pub use warren_config::{CellAddrs, ProxyConfig};

use crate::core::{CellIx, CoreConfig, Effect, ProxyCore, WaiterId};
use crate::routing::Dest;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use warren_client::map::MapWatcher;
use warren_proto::pb;
use warren_proto::WarrenError;
use warren_router::PartitionMap;
use warren_server::grpc::Listen;

/// The principal of the proxy's session at the meta cell, where it watches the map.
pub const MAP_PRINCIPAL: &str = "warren:proxy";

/// Errors that stop a proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("gRPC server failed: {0}")]
    Serve(String),
}

type KaResult = Result<core::KeepAliveReply, WarrenError>;

/// The core and the senders of parked KeepAlives, under one lock so that a wake can
/// never be emitted before its sender is registered.
pub(crate) struct State {
    pub core: ProxyCore,
    pub senders: HashMap<WaiterId, oneshot::Sender<KaResult>>,
}

/// The cells the proxy has (or had) a session at. Append-only: a cell's index never
/// changes, so the core and handles can name cells by index.
#[derive(Default)]
struct Cells {
    list: Vec<Arc<upstream::Upstream>>,
    by_name: HashMap<String, CellIx>,
}

/// How the proxy finds the cell of a path.
enum Routing {
    /// `--cell` only: the given cells split the slots evenly ([`routing::static_map`], made
    /// once a cell has told the deployment), and calls carry no map epoch.
    Static { map: OnceLock<Arc<PartitionMap>> },
    /// `--meta`: by the partition map watched in the meta cell.
    Map {
        watcher: MapWatcher,
        /// The meta cell's name (from `Locate` at its addresses).
        meta: OnceLock<String>,
    },
}

/// Everything the proxy's tasks share.
pub struct Shared {
    pub cfg: ProxyConfig,
    state: Mutex<State>,
    cells: RwLock<Cells>,
    routing: Routing,
    /// The deployment the cells serve (learned from the first cell's `Locate`).
    deployment: OnceLock<String>,
    /// The address clients use for this proxy (`Locate`'s `master`).
    pub advertised: String,
    effects: mpsc::UnboundedSender<Effect>,
    /// A configuration error found before the proxy was first ready: it stops with it.
    fatal: OnceLock<String>,
    fatal_notify: tokio::sync::Notify,
    was_ready: std::sync::atomic::AtomicBool,
    /// The upstream tasks (one per cell), stopped with the proxy.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Set when a graceful stop begins: KeepAlives are then answered at once.
    closing: std::sync::atomic::AtomicBool,
    /// Counts the KeepAlive replies applied from any cell: a read waiting for a cover
    /// refresh ([`core::Keep::AfterRefresh`]) looks again after each ([`CoverWait`]).
    replies: tokio::sync::watch::Sender<u64>,
}

/// How long a read whose client waits for a cover refresh (its first copy from a cell
/// promised a hold-back, docs/design.md §10 "A dead proxy") waits for it before answering
/// "not cacheable" instead. A refresh normally takes one round trip to the cell; it takes
/// longer only while the cell extends nothing (it is failing over, or the proxy has
/// delivered events its clients have not acknowledged yet).
pub const COVER_WAIT: Duration = core::COVER_WANTED_FOR;

/// Waits for cover refreshes on behalf of one read ([`Shared::cover_wait`]).
pub(crate) struct CoverWait {
    replies: tokio::sync::watch::Receiver<u64>,
    deadline: Instant,
}

impl CoverWait {
    /// Waits for the next KeepAlive reply applied from any cell (after this wait was
    /// made, or since the last call). `false` once [`COVER_WAIT`] has passed.
    pub(crate) async fn next(&mut self) -> bool {
        tokio::time::timeout_at(self.deadline, self.replies.changed())
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// A wait for cover refreshes, for a read about to ask whether its client may keep a
    /// copy: made before asking, so that no reply in between is missed.
    pub(crate) fn cover_wait(&self) -> CoverWait {
        CoverWait {
            replies: self.replies.subscribe(),
            deadline: Instant::now() + COVER_WAIT,
        }
    }

    /// Runs `keep` on the core until it says yes or no: while it says
    /// [`core::Keep::AfterRefresh`] (the client's lease reaches past a hold-back cover, and
    /// a refresh of it was asked for), again after each KeepAlive reply applied, for at
    /// most [`COVER_WAIT`]. Returns whether the client may keep the copy.
    pub(crate) async fn keep_within_cover(
        &self,
        mut keep: impl FnMut(&mut ProxyCore) -> core::Keep,
    ) -> bool {
        let mut wait = self.cover_wait();
        loop {
            match self.with_core(&mut keep) {
                core::Keep::Yes => return true,
                core::Keep::No => return false,
                core::Keep::AfterRefresh => {
                    if !wait.next().await {
                        return false;
                    }
                }
            }
        }
    }

    /// Runs `f` on the core, then delivers the wakes it produced and queues its effects.
    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&mut ProxyCore) -> R) -> R {
        let (r, effects) = self.with_core_fx(f);
        for e in effects {
            self.execute(e);
        }
        r
    }

    /// [`Shared::with_core`], but the caller gets the effects to run itself (inline).
    pub(crate) fn with_core_fx<R>(&self, f: impl FnOnce(&mut ProxyCore) -> R) -> (R, Vec<Effect>) {
        let mut st = lock(&self.state);
        let r = f(&mut st.core);
        let out = st.core.take_output();
        for (w, result) in out.wakes {
            if let Some(tx) = st.senders.remove(&w) {
                let _ = tx.send(result);
            }
        }
        (r, out.effects)
    }

    /// The shared cache's counters (hits, misses, invalidations) since the proxy started:
    /// the deterministic simulation tells reads the shared cache may have answered from
    /// those the cell did by its hits.
    pub fn cache_counters(&self) -> cache::CacheCounters {
        lock(&self.state).core.cache.counters
    }

    /// A graceful stop begins: every parked KeepAlive is answered `NOT_MASTER` (no master
    /// known), so its client looks for another proxy at once, and later ones are answered
    /// the same way (see [`Shared::closing`]); tonic's graceful shutdown then has no
    /// long-poll to wait for.
    fn begin_close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut st = lock(&self.state);
        for (_, tx) in st.senders.drain() {
            let _ = tx.send(Err(WarrenError::not_master("")));
        }
    }

    /// Whether a graceful stop has begun.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends the proxy's sessions at its cells (`CloseSession`, bounded): their client
    /// sessions become claimable at once (docs/design.md §10) instead of after the proxy lease, and a
    /// restarted cell has no session of ours to wait for. Then stops the map watcher,
    /// closing its session at the meta cell.
    async fn close_upstream(&self) {
        let ups: Vec<_> = self
            .cells
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .list
            .clone();
        let mut ends = Vec::new();
        for up in ups {
            let Some(link) = up.link.borrow().clone() else {
                continue;
            };
            ends.push(async move {
                let mut client = link.client.clone();
                let req = pb::CloseSessionRequest {
                    ctx: Some(link.ctx(None)),
                    expired: false,
                };
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), client.close_session(req)).await;
            });
        }
        let watcher = async {
            if let Routing::Map { watcher, .. } = &self.routing {
                watcher.close().await;
            }
        };
        tokio::join!(futures::future::join_all(ends), watcher);
    }

    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = lock(&self.state);
        let r = f(&mut st);
        let out = st.core.take_output();
        for (w, result) in out.wakes {
            if let Some(tx) = st.senders.remove(&w) {
                let _ = tx.send(result);
            }
        }
        drop(st);
        for e in out.effects {
            self.execute(e);
        }
        r
    }

    fn execute(&self, e: Effect) {
        match e {
            Effect::AckUpstream(cell) | Effect::RefreshCover(cell) => {
                if let Some(up) = self.try_cell(cell) {
                    up.kick.notify_one();
                }
            }
            other => {
                let _ = self.effects.send(other);
            }
        }
    }

    // ------------------------------------------------------------------ cells

    /// The cell at index `ix` (indices come from this registry only).
    pub fn cell(&self, ix: CellIx) -> Arc<upstream::Upstream> {
        self.try_cell(ix)
            .expect("cell indices come from the registry, which only grows")
    }

    fn try_cell(&self, ix: CellIx) -> Option<Arc<upstream::Upstream>> {
        self.cells
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .list
            .get(ix)
            .cloned()
    }

    /// Every cell the proxy has a session task for.
    pub fn all_cells(&self) -> Vec<Arc<upstream::Upstream>> {
        self.cells
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .list
            .clone()
    }

    /// The index of the cell called `name`, if the proxy has a session task for it.
    pub fn cell_named(&self, name: &str) -> Option<CellIx> {
        self.cells
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .get(name)
            .copied()
    }

    /// The cell called `name`, starting the proxy's session there (one per cell) if it has
    /// none yet; `addrs` (its replicas, from the map) replace the known ones if they differ.
    pub(crate) fn ensure_cell(self: &Arc<Self>, name: &str, addrs: &[String]) -> CellIx {
        let mut cells = self.cells.write().unwrap_or_else(|p| p.into_inner());
        if let Some(&ix) = cells.by_name.get(name) {
            let up = &cells.list[ix];
            if !addrs.is_empty() {
                up.set_addrs(addrs);
            }
            return ix;
        }
        let ix = cells.list.len();
        cells.list.push(Arc::new(upstream::Upstream::new(
            ix,
            name.to_string(),
            addrs.to_vec(),
        )));
        cells.by_name.insert(name.to_string(), ix);
        drop(cells);
        tracing::info!(cell = %name, ?addrs, "starting a proxy session at a new cell");
        let task = tokio::spawn(upstream::run(self.clone(), ix));
        lock(&self.tasks).push(task.abort_handle());
        ix
    }

    /// A new session at cell `ix`: its local lease ends at `live_until`, and the proxy
    /// promised the cell the hold-back `hold_back` (already divided by 1 + ρ; `None`:
    /// none promised).
    pub(crate) fn upstream_created(
        &self,
        ix: CellIx,
        live_until: Instant,
        hold_back: Option<Duration>,
    ) {
        self.with_core(|c| {
            c.upstream_restarted(ix);
            if let Some(hold_back) = hold_back {
                c.upstream_hold_back(ix, hold_back);
            }
            c.upstream_lease(ix, live_until, Instant::now());
        });
    }

    pub(crate) fn upstream_reply(&self, ix: CellIx, live_until: Instant, events: &[pb::Event]) {
        self.with_core(|c| c.upstream_reply(ix, live_until, events, Instant::now()));
        // Reads waiting for a cover refresh look again.
        self.replies.send_modify(|n| *n += 1);
        // Acknowledge what needed no client (or was already acknowledged) at once.
        self.cell(ix).kick.notify_one();
    }

    pub(crate) fn set_config_error(&self, ix: CellIx, e: String) {
        if !self.was_ready.load(std::sync::atomic::Ordering::SeqCst)
            && self.fatal.set(e.clone()).is_ok()
        {
            self.fatal_notify.notify_one();
        }
        *lock(&self.cell(ix).error) = Some(e);
    }

    pub(crate) fn clear_config_error(&self, ix: CellIx) {
        *lock(&self.cell(ix).error) = None;
    }

    /// The deployment, waiting (bounded) until a cell has told us.
    pub(crate) async fn deployment(&self) -> Option<String> {
        let deadline = Instant::now() + self.cfg.forward_patience;
        loop {
            if let Some(d) = self.deployment.get() {
                return Some(d.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // ------------------------------------------------------------------ routing

    /// Whether the proxy routes by a partition map (`--meta`).
    pub fn routed(&self) -> bool {
        matches!(self.routing, Routing::Map { .. })
    }

    /// The map in hand (`None` without `--meta`, or before it is loaded).
    pub fn map(&self) -> Option<Arc<PartitionMap>> {
        match &self.routing {
            Routing::Static { .. } => None,
            Routing::Map { watcher, .. } => watcher.current(),
        }
    }

    /// The epoch of the map in hand (0: none; forwarded calls then say "not routed").
    pub fn map_epoch(&self) -> u64 {
        match &self.routing {
            Routing::Static { .. } => 0,
            Routing::Map { watcher, .. } => watcher.map_epoch(),
        }
    }

    /// The map calls are routed by (without `--meta`, the static one), waiting up to
    /// `forward_patience` for the first one.
    pub(crate) async fn current_map(&self) -> Result<Arc<PartitionMap>, WarrenError> {
        let watcher = match &self.routing {
            Routing::Static { map } => {
                // Made before the deployment is published (see `learned_deployment`).
                self.deployment()
                    .await
                    .ok_or_else(WarrenError::failover_in_progress)?;
                return map
                    .get()
                    .cloned()
                    .ok_or_else(|| WarrenError::internal("the fronted cells' map was not made"));
            }
            Routing::Map { watcher, .. } => watcher,
        };
        if let Some(m) = watcher.current() {
            return Ok(m);
        }
        watcher
            .wait_for(1, self.cfg.forward_patience)
            .await
            .ok_or_else(WarrenError::failover_in_progress)
    }

    /// A map of epoch `min_epoch` or newer, waiting at most `wait` (asking the watcher to
    /// read the map again first); the newest one in hand if none comes in time.
    pub(crate) async fn newer_map(
        &self,
        min_epoch: u64,
        wait: Duration,
    ) -> Result<Arc<PartitionMap>, WarrenError> {
        let Routing::Map { watcher, .. } = &self.routing else {
            return Err(WarrenError::internal("this proxy does not route by a map"));
        };
        watcher.refresh();
        watcher
            .wait_for(min_epoch, wait)
            .await
            .ok_or_else(WarrenError::failover_in_progress)
    }

    /// The meta cell's name, once `Locate` there told it.
    pub fn meta_name(&self) -> Option<&str> {
        match &self.routing {
            Routing::Static { .. } => None,
            Routing::Map { meta, .. } => meta.get().map(String::as_str),
        }
    }

    /// The meta cell (its session started if need be), waiting up to `forward_patience`
    /// for its name.
    pub(crate) async fn meta_cell(self: &Arc<Self>) -> Result<CellIx, WarrenError> {
        let deadline = Instant::now() + self.cfg.forward_patience;
        loop {
            if let Some(name) = self.meta_name() {
                let name = name.to_string();
                let addrs = self.cfg.meta.clone();
                return Ok(self.ensure_cell(&name, &addrs));
            }
            if Instant::now() > deadline {
                return Err(WarrenError::failover_in_progress());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The cell a route names (its session started if need be).
    pub(crate) async fn dest_cell(
        self: &Arc<Self>,
        map: &PartitionMap,
        dest: &Dest,
    ) -> Result<CellIx, WarrenError> {
        match dest {
            Dest::Meta => self.meta_cell().await,
            Dest::Cell(name) if Some(name.as_str()) == self.meta_name() => self.meta_cell().await,
            Dest::Cell(name) => {
                let addrs = map.replicas(name).ok_or_else(|| {
                    WarrenError::internal(format!(
                        "the partition map routes to cell {name}, which it does not list"
                    ))
                })?;
                Ok(self.ensure_cell(name, addrs))
            }
        }
    }

    /// The cells where a client of another proxy may have state: every cell of the map
    /// and the meta cell (`--meta`), or every cell fronted (`--cell`). Their sessions are
    /// started if need be.
    pub(crate) async fn claimable_cells(self: &Arc<Self>) -> Result<Vec<CellIx>, WarrenError> {
        if !self.routed() {
            return Ok(self.all_cells().iter().map(|u| u.ix).collect());
        }
        let map = self.current_map().await?;
        let mut cells = vec![self.meta_cell().await?];
        for name in map.cells().keys() {
            let ix = self.dest_cell(&map, &Dest::Cell(name.clone())).await?;
            if !cells.contains(&ix) {
                cells.push(ix);
            }
        }
        Ok(cells)
    }

    /// Without `--meta`: the fronted cell a route names (the proxy's sessions at them
    /// start with it).
    pub(crate) fn static_cell(&self, dest: &Dest) -> Result<CellIx, WarrenError> {
        let Dest::Cell(name) = dest else {
            return Err(WarrenError::internal(
                "a proxy without --meta knows no meta cell",
            ));
        };
        self.cell_named(name).ok_or_else(|| {
            WarrenError::internal(format!("cell {name} is not one this proxy fronts"))
        })
    }

    /// A cell told the deployment it serves: the proxy serves it too, and without `--meta`
    /// routes by the map that splits the slots over the fronted cells. A fronted cell list
    /// that makes no valid map stops the proxy with the reason.
    fn learned_deployment(&self, deployment: String) {
        if let Routing::Static { map } = &self.routing {
            if map.get().is_none() {
                match routing::static_map(&deployment, &self.cfg.cells) {
                    Ok(m) => {
                        let _ = map.set(Arc::new(m));
                    }
                    Err(e) => {
                        if self.fatal.set(format!("the --cell list: {e}")).is_ok() {
                            self.fatal_notify.notify_one();
                        }
                        return;
                    }
                }
            }
        }
        let _ = self.deployment.set(deployment);
    }

    /// The cell a handle names (`None`: a handle that does not decode, or names a cell
    /// this proxy has no session at — it cannot be one of its clients' handles).
    pub fn cell_of_handle(&self, token: &[u8]) -> (Option<CellIx>, Option<pb::HandleBody>) {
        let body = decode_handle(token);
        let ix = body.as_ref().and_then(|b| self.cell_named(&b.cell));
        (ix, body)
    }

    /// Whether the proxy holds a session at cell `ix` and a link to its master (`sim`
    /// builds only: the simulation counts a proxy refused a session by a recovering master
    /// as cutting its clients off).
    #[cfg(feature = "sim")]
    pub fn connected_to(&self, ix: CellIx) -> bool {
        self.all_cells()
            .get(ix)
            .is_some_and(|u| u.link.borrow().is_some())
    }

    /// Whether client session `id` is this proxy's now (`sim` builds only).
    #[cfg(feature = "sim")]
    pub fn has_client(&self, id: &core::ClientId) -> bool {
        self.with_core(|c| c.has_client(id))
    }

    /// [`ProxyCore::trace_leases`] now (`sim` builds only).
    #[cfg(feature = "sim")]
    pub fn trace_leases(&self) -> String {
        self.with_core(|c| c.trace_leases())
    }

    /// A JSON-able summary for `/status`.
    pub fn status(&self) -> serde_json::Value {
        let counts = self.with_core(|c| c.counts());
        let cells: Vec<serde_json::Value> = self
            .all_cells()
            .iter()
            .map(|u| {
                let link = u.link.borrow().clone();
                serde_json::json!({
                    "name": u.name,
                    "addrs": u.addrs(),
                    "meta": Some(u.name.as_str()) == self.meta_name(),
                    "connected": link.is_some(),
                    "master": link.as_ref().map(|l| l.addr.clone()),
                    "epoch": link.as_ref().map(|l| l.epoch),
                    "error": lock(&u.error).clone(),
                })
            })
            .collect();
        serde_json::json!({
            "role": "proxy",
            "id": self.cfg.id,
            "address": self.advertised,
            "deployment": self.deployment.get(),
            "routing": if self.routed() { "map" } else { "static" },
            "meta": self.cfg.meta,
            "meta_cell": self.meta_name(),
            "map_epoch": self.map_epoch(),
            "map_cells": self.map().map(|m| m.cells().keys().cloned().collect::<Vec<_>>()),
            "cells": cells,
            "client_sessions": counts.client_sessions,
            "held_keepalives": counts.held_keepalives,
            "clients_waiting_for_a_cell": counts.starving,
            "cached_paths": counts.cached_paths,
            "cached_bytes": counts.cached_bytes,
            "moved_handles": counts.moved_handles,
        })
    }

    /// Ready to serve: with `--meta`, once the map is loaded and the proxy holds a session
    /// at the meta cell (sessions at data cells start when first used); without, once it
    /// holds a session at every cell.
    pub fn ready(&self) -> bool {
        if self.deployment.get().is_none() {
            return false;
        }
        match &self.routing {
            Routing::Static { .. } => self.all_cells().iter().all(|u| u.link.borrow().is_some()),
            Routing::Map { watcher, meta } => {
                watcher.current().is_some()
                    && meta
                        .get()
                        .and_then(|m| self.cell_named(m))
                        .is_some_and(|ix| self.cell(ix).link.borrow().is_some())
            }
        }
    }
}

/// A handle token's body, unauthenticated (the proxy routes by the cell it names; the
/// cell verifies the MAC), or `None` if the bytes are not a handle token.
pub fn decode_handle(token: &[u8]) -> Option<pb::HandleBody> {
    use prost::Message;
    let t = pb::HandleToken::decode(token).ok()?;
    pb::HandleBody::decode(t.body.as_slice()).ok()
}

/// Serves the proxy on `listener` (and the admin endpoint on `admin`, if given) until
/// `shutdown` completes. `on_ready` runs once the proxy is ready (see [`Shared::ready`]; it
/// serves before that too: calls for a cell wait for its session, routed calls for the map).
pub async fn run(
    listener: TcpListener,
    admin: Option<TcpListener>,
    cfg: ProxyConfig,
    on_ready: impl FnOnce(std::net::SocketAddr) + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ProxyError> {
    cfg.validate()
        .map_err(|e| ProxyError::Config(e.to_string()))?;
    let addr = listener.local_addr()?;
    if admin.is_some() {
        // Install the recorder before anything is counted.
        admin::prometheus();
    }
    let listen = Listen::tcp(listener)?;
    run_on(listen, admin, cfg, move || on_ready(addr), |_| {}, shutdown).await
}

/// [`run`] serving the connections of `incoming` (plaintext, no admin endpoint) instead
/// of a TCP listener, telling clients (`Locate`) that it is at `advertised`: the seam the
/// deterministic simulation (docs/reliability.md, "Deterministic simulation") runs a proxy
/// on its simulated network through, as `warren_cell::run_incoming` does a cell. Its dials
/// to the cells go through `warren_client::transport` like every dial, so the simulation's
/// connector (`warren_client::transport::sim`) carries them. `on_start` gets the proxy's
/// shared state as soon as it exists (the simulation reads [`Shared::cache_counters`]).
/// Production proxies do not use it; they go through [`run`].
pub async fn run_incoming<I, IO, IE>(
    incoming: I,
    advertised: String,
    cfg: ProxyConfig,
    on_start: impl FnOnce(Arc<Shared>),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ProxyError>
where
    I: futures::Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: warren_server::grpc::Conn,
    IE: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    cfg.validate()
        .map_err(|e| ProxyError::Config(e.to_string()))?;
    let listen = Listen::incoming(incoming, advertised);
    run_on(listen, None, cfg, || {}, on_start, shutdown).await
}

async fn run_on(
    listen: Listen,
    admin: Option<TcpListener>,
    cfg: ProxyConfig,
    on_ready: impl FnOnce() + Send + 'static,
    on_start: impl FnOnce(Arc<Shared>),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ProxyError> {
    let advertised = listen.address.clone();
    let (effects_tx, mut effects_rx) = mpsc::unbounded_channel();
    let now = Instant::now();
    let core = ProxyCore::new(
        CoreConfig {
            client_lease: cfg.client_lease,
            reply_before_end: cfg.keepalive_reply_before_end,
            margin: cfg.lease_margin,
            max_starve: cfg.max_starve,
            // With a map, cells join as calls are first routed to them.
            cells: if cfg.meta.is_empty() {
                cfg.cells.len()
            } else {
                0
            },
            cover_reach: cfg
                .hold_back
                .then(|| core::cover_reach(cfg.client_lease, cfg.drift)),
        },
        now,
    );
    let routing = if cfg.meta.is_empty() {
        Routing::Static {
            map: OnceLock::new(),
        }
    } else {
        Routing::Map {
            watcher: MapWatcher::start(cfg.meta.clone(), MAP_PRINCIPAL),
            meta: OnceLock::new(),
        }
    };
    let shared = Arc::new(Shared {
        fatal: OnceLock::new(),
        fatal_notify: tokio::sync::Notify::new(),
        was_ready: std::sync::atomic::AtomicBool::new(false),
        cfg,
        state: Mutex::new(State {
            core,
            senders: HashMap::new(),
        }),
        cells: RwLock::new(Cells::default()),
        routing,
        deployment: OnceLock::new(),
        advertised,
        effects: effects_tx,
        tasks: Mutex::new(Vec::new()),
        closing: std::sync::atomic::AtomicBool::new(false),
        replies: tokio::sync::watch::channel(0).0,
    });
    on_start(shared.clone());
    let mut tasks = tokio::task::JoinSet::new();
    if shared.routed() && !shared.cfg.cells.is_empty() {
        tracing::warn!(
            "--cell is ignored with --meta: the partition map names the cells and their replicas"
        );
    }
    if !shared.routed() {
        // Without a map the proxy fronts the given cells, with a session at each from the
        // start (their indices are their places in the list).
        for c in shared.cfg.cells.clone() {
            shared.ensure_cell(&c.name, &c.addrs);
        }
    }
    // Learn the deployment (and with a map, the meta cell's name) from whichever cell
    // answers first.
    {
        let shared = shared.clone();
        tasks.spawn(async move {
            loop {
                if shared.routed() {
                    match warren_client::transport::locate(&shared.cfg.meta, Duration::from_secs(2))
                        .await
                    {
                        Ok(info) if !info.cell.is_empty() => {
                            shared.learned_deployment(info.deployment);
                            if let Routing::Map { meta, .. } = &shared.routing {
                                let _ = meta.set(info.cell.clone());
                            }
                            tracing::info!(meta_cell = %info.cell, "found the meta cell");
                            // The meta cell's session starts now: it holds the reserved
                            // subtree, and a misconfiguration shows before the proxy is ready.
                            let _ = shared.meta_cell().await;
                            return;
                        }
                        Ok(_) => tracing::warn!(
                            meta = ?shared.cfg.meta,
                            "the --meta address answered Locate without a cell name (is it a proxy?)"
                        ),
                        Err(e) => tracing::debug!(%e, "the meta cell is not reachable yet"),
                    }
                } else {
                    for u in shared.all_cells() {
                        if let Ok(info) =
                            warren_client::transport::locate(&u.addrs(), Duration::from_secs(2))
                                .await
                        {
                            shared.learned_deployment(info.deployment);
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    // With a map: follow each new map (replica addresses of the cells in use may change).
    if let Routing::Map { watcher, .. } = &shared.routing {
        let mut rx = watcher.subscribe();
        let shared = shared.clone();
        tasks.spawn(async move {
            while rx.changed().await.is_ok() {
                let map = rx.borrow_and_update().clone();
                let Some(map) = map else { continue };
                metrics::gauge!("warren_proxy_map_epoch").set(map.map_epoch() as f64);
                for up in shared.all_cells() {
                    if Some(up.name.as_str()) == shared.meta_name() {
                        continue;
                    }
                    if let Some(addrs) = map.replicas(&up.name) {
                        up.set_addrs(addrs);
                    }
                }
            }
        });
    }
    // Effects: ending client sessions at the cells.
    {
        let shared = shared.clone();
        tasks.spawn(async move {
            while let Some(e) = effects_rx.recv().await {
                let shared = shared.clone();
                tokio::spawn(async move { service::run_effect(&shared, e).await });
            }
        });
    }
    // Time: held KeepAlives due, expiries; metrics.
    {
        let shared = shared.clone();
        tasks.spawn(async move {
            let mut last_metrics = Instant::now();
            loop {
                let next = shared
                    .with_core(|c| c.next_deadline())
                    .unwrap_or_else(|| Instant::now() + Duration::from_millis(100))
                    .min(Instant::now() + Duration::from_millis(100));
                tokio::time::sleep_until(next).await;
                shared.with_core(|c| c.tick(Instant::now()));
                if last_metrics.elapsed() >= Duration::from_millis(500) {
                    last_metrics = Instant::now();
                    admin::update_metrics(&shared);
                }
            }
        });
    }
    if let Some(admin) = admin {
        tasks.spawn(admin::serve(admin, shared.clone()));
    }
    {
        let shared = shared.clone();
        tasks.spawn(async move {
            while !shared.ready() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            shared
                .was_ready
                .store(true, std::sync::atomic::Ordering::SeqCst);
            on_ready();
        });
    }
    // A misconfiguration found while starting (a cell whose proxy lease cannot nest the
    // client lease) stops the proxy with the message; later ones are reported in /status
    // and the logs while the proxy keeps serving the cells it can.
    let fatal = {
        let shared = shared.clone();
        async move {
            loop {
                if let Some(e) = shared.fatal.get() {
                    return e.clone();
                }
                shared.fatal_notify.notified().await;
            }
        }
    };
    let stop = {
        let shared = shared.clone();
        async move {
            shutdown.await;
            shared.begin_close();
        }
    };
    // grpc.health.v1.Health says SERVING exactly when /readyz does; reflection lists
    // warren.v1.Warren for grpcurl (docs/operations.md).
    let ready = {
        let shared = shared.clone();
        move || shared.ready()
    };
    let (routes, _health) = warren_server::grpc::add_standard_services(
        warren_server::grpc::warren_routes(service::service(shared.clone())),
        &["warren.v1.Warren"],
        ready,
    )
    .await;
    let result = tokio::select! {
        r = listen.serve(routes, stop) => {
            r.map_err(|e| ProxyError::Serve(e.to_string()))
        }
        e = fatal => Err(ProxyError::Config(e)),
    };
    // The upstream tasks first: they would make a new session for each one closed below.
    tasks.abort_all();
    for t in lock(&shared.tasks).drain(..) {
        t.abort();
    }
    if result.is_ok() {
        shared.close_upstream().await;
    }
    result
}
