//! `warren-proxy`: the proxy server of SPEC §6. It serves the same `warren.v1.Warren`
//! service as a cell; client sessions live here ([`core`]), with one session per cell
//! upstream ([`upstream`]), one shared cache ([`cache`]), calls forwarded on behalf of
//! client sessions ([`service`]), and the admin endpoint ([`admin`]).
//!
//! Entry point: [`run`] (bind first, then call it — tests bind `127.0.0.1:0`).

#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod core;
mod service;
pub mod upstream;

pub use warren_config as config;
pub use warren_config::{CellAddrs, ProxyConfig};

use crate::core::{CellIx, CoreConfig, Effect, ProxyCore, WaiterId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use warren_proto::pb;
use warren_proto::WarrenError;

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

/// Everything the proxy's tasks share.
pub struct Shared {
    pub cfg: ProxyConfig,
    state: Mutex<State>,
    pub cells: Vec<upstream::Upstream>,
    /// The deployment the cells serve (learned from the first cell's `Locate`).
    deployment: OnceLock<String>,
    /// The address clients use for this proxy (`Locate`'s `master`).
    pub advertised: String,
    effects: mpsc::UnboundedSender<Effect>,
    /// Per cell: why it cannot be used (a proxy-lease misconfiguration), for `/status`.
    config_errors: Mutex<Vec<Option<String>>>,
    /// A configuration error found before the proxy was first ready: it stops with it.
    fatal: OnceLock<String>,
    fatal_notify: tokio::sync::Notify,
    was_ready: std::sync::atomic::AtomicBool,
    slots: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
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
            Effect::AckUpstream(cell) => self.cells[cell].kick.notify_one(),
            other => {
                let _ = self.effects.send(other);
            }
        }
    }

    pub(crate) fn upstream_created(&self, ix: CellIx, sent: Instant, lease: Duration) {
        let local = Duration::try_from_secs_f64(lease.as_secs_f64() / (1.0 + self.cfg.drift))
            .unwrap_or_default();
        self.with_core(|c| {
            c.upstream_restarted(ix);
            c.upstream_lease(ix, sent + local, Instant::now());
        });
    }

    pub(crate) fn upstream_reply(&self, ix: CellIx, live_until: Instant, events: &[pb::Event]) {
        let owns = |p: &str| self.cell_of_path(p) == ix;
        self.with_core(|c| {
            let now = Instant::now();
            c.upstream_lease(ix, live_until, now);
            if !events.is_empty() {
                c.upstream_events(ix, events, &owns, now);
            }
        });
        // Acknowledge what needed no client (or was already acknowledged) at once.
        self.cells[ix].kick.notify_one();
    }

    pub(crate) fn set_config_error(&self, ix: CellIx, e: String) {
        if !self.was_ready.load(std::sync::atomic::Ordering::SeqCst)
            && self.fatal.set(e.clone()).is_ok()
        {
            self.fatal_notify.notify_one();
        }
        lock(&self.config_errors)[ix] = Some(e);
    }

    pub(crate) fn clear_config_error(&self, ix: CellIx) {
        lock(&self.config_errors)[ix] = None;
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

    /// The cell that holds `path` (its parent directory's slot, SPEC §7). Paths that do
    /// not parse go to the first cell, which answers them exactly as a cell would.
    pub fn cell_of_path(&self, path: &str) -> CellIx {
        let n = self.cells.len();
        if n == 1 {
            return 0;
        }
        match warren_router::slot_of_path(path, self.slots) {
            Some(slot) => (u64::from(slot) * n as u64 / u64::from(self.slots)) as usize,
            None => 0,
        }
    }

    /// The cell a handle names. Handles that do not decode, or name a cell this proxy
    /// does not front, go to the first cell, which rejects them as a cell would.
    pub fn cell_of_handle(&self, token: &[u8]) -> (CellIx, Option<pb::HandleBody>) {
        let body = decode_handle(token);
        let ix = body
            .as_ref()
            .and_then(|b| self.cells.iter().position(|c| c.name == b.cell))
            .unwrap_or(0);
        (ix, body)
    }

    /// A JSON-able summary for `/status`.
    pub fn status(&self) -> serde_json::Value {
        let counts = self.with_core(|c| c.counts());
        let errors = lock(&self.config_errors).clone();
        let cells: Vec<serde_json::Value> = self
            .cells
            .iter()
            .map(|u| {
                let link = u.link.borrow().clone();
                serde_json::json!({
                    "name": u.name,
                    "addrs": u.addrs,
                    "connected": link.is_some(),
                    "master": link.as_ref().map(|l| l.addr.clone()),
                    "epoch": link.as_ref().map(|l| l.epoch),
                    "error": errors.get(u.ix).cloned().flatten(),
                })
            })
            .collect();
        serde_json::json!({
            "role": "proxy",
            "id": self.cfg.id,
            "address": self.advertised,
            "deployment": self.deployment.get(),
            "cells": cells,
            "client_sessions": counts.client_sessions,
            "held_keepalives": counts.held_keepalives,
            "clients_waiting_for_a_cell": counts.starving,
            "cached_paths": counts.cached_paths,
            "cached_bytes": counts.cached_bytes,
        })
    }

    /// Whether every cell has a live proxy session.
    pub fn ready(&self) -> bool {
        self.cells.iter().all(|u| u.link.borrow().is_some())
    }
}

pub(crate) fn decode_handle(token: &[u8]) -> Option<pb::HandleBody> {
    use prost::Message;
    let t = pb::HandleToken::decode(token).ok()?;
    pb::HandleBody::decode(t.body.as_slice()).ok()
}

/// Serves the proxy on `listener` (and the admin endpoint on `admin`, if given) until
/// `shutdown` completes. `on_ready` runs once the proxy has a session at every cell (it
/// serves before that too: calls for a cell wait for its session).
pub async fn run(
    listener: TcpListener,
    admin: Option<TcpListener>,
    cfg: ProxyConfig,
    on_ready: impl FnOnce(std::net::SocketAddr) + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ProxyError> {
    cfg.validate()
        .map_err(|e| ProxyError::Config(e.to_string()))?;
    let advertised = listener.local_addr()?.to_string();
    let (effects_tx, mut effects_rx) = mpsc::unbounded_channel();
    let now = Instant::now();
    let core = ProxyCore::new(
        CoreConfig {
            client_lease: cfg.client_lease,
            reply_before_end: cfg.keepalive_reply_before_end,
            margin: cfg.lease_margin,
            max_starve: cfg.max_starve,
            cells: cfg.cells.len(),
        },
        now,
    );
    let cells = cfg
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| upstream::Upstream::new(i, c.name.clone(), c.addrs.clone()))
        .collect();
    let shared = Arc::new(Shared {
        config_errors: Mutex::new(vec![None; cfg.cells.len()]),
        fatal: OnceLock::new(),
        fatal_notify: tokio::sync::Notify::new(),
        was_ready: std::sync::atomic::AtomicBool::new(false),
        cfg,
        state: Mutex::new(State {
            core,
            senders: HashMap::new(),
        }),
        cells,
        deployment: OnceLock::new(),
        advertised,
        effects: effects_tx,
        slots: 4096,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for ix in 0..shared.cells.len() {
        tasks.spawn(upstream::run(shared.clone(), ix));
    }
    // Learn the deployment from whichever cell answers first.
    {
        let shared = shared.clone();
        tasks.spawn(async move {
            loop {
                for u in &shared.cells {
                    if let Ok(info) =
                        warren_client::transport::locate(&u.addrs, Duration::from_secs(2)).await
                    {
                        let _ = shared.deployment.set(info.deployment);
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
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
        let addr = listener.local_addr()?;
        tasks.spawn(async move {
            while !shared.ready() || shared.deployment.get().is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            shared
                .was_ready
                .store(true, std::sync::atomic::Ordering::SeqCst);
            on_ready(addr);
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
    let result = tokio::select! {
        r = service::serve(listener, shared.clone(), shutdown) => r,
        e = fatal => Err(ProxyError::Config(e)),
    };
    tasks.abort_all();
    result
}
