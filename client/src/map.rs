//! Watching the partition map (docs/design.md §11).
//!
//! The map is a file, `/ls/<deployment>/warren/map`, in the meta cell. Routers (proxies,
//! cells, direct-mode clients) keep a session at the meta cell with a handle open on it
//! for `CONTENTS_MODIFIED` events, so they learn of a new map from Warren's own events:
//! the write of a new map is acknowledged only after every watcher dropped its cached
//! copy, and the event follows in the next KeepAlive reply, so a watcher switches within
//! milliseconds of the commit (measured in the partitioning tests).
//!
//! A [`MapWatcher`] publishes each map it reads on a `tokio::sync::watch` channel and
//! never goes back to an older map epoch. A map that does not parse is logged and
//! ignored (the previous one stays in force), so a bad hand edit cannot unroute anyone.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use warren_proto::ErrorCode;
use warren_router::PartitionMap;

use crate::{ClientOptions, Event, EventMask, OpenOptions, Session};

/// Where the map of `deployment` is kept (in the meta cell).
pub fn map_path(deployment: &str) -> String {
    format!("/ls/{deployment}/{}/map", warren_router::RESERVED)
}

/// How long to wait before looking again for a map that does not exist yet, or after the
/// meta cell could not be reached.
const RETRY: Duration = Duration::from_millis(200);

/// The current partition map of a deployment, kept up to date from the meta cell.
///
/// Dropping the watcher stops it (and closes its session).
pub struct MapWatcher {
    rx: watch::Receiver<Option<Arc<PartitionMap>>>,
    refresh: Arc<Notify>,
    stop: watch::Sender<bool>,
    /// Becomes `true` when the watching task has ended (its session closed).
    exited: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MapWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MapWatcher {
    /// Starts watching the map through a session at the meta cell `meta` (its replicas'
    /// addresses) with the given principal. Returns at once; [`MapWatcher::current`] is
    /// `None` until the map has been read.
    pub fn start(meta: Vec<String>, principal: &str) -> MapWatcher {
        let options = ClientOptions::new(meta).principal(principal);
        Self::start_with(options)
    }

    /// As [`MapWatcher::start`], with full session options (lease, grace, timeouts).
    pub fn start_with(options: ClientOptions) -> MapWatcher {
        let (tx, rx) = watch::channel(None);
        let refresh = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(false);
        let (exited_tx, exited) = watch::channel(false);
        let looping = watch_loop(options, tx, refresh.clone(), stop_rx);
        let task = tokio::spawn(async move {
            looping.await;
            exited_tx.send_replace(true);
        });
        MapWatcher {
            rx,
            refresh,
            stop,
            exited,
            task,
        }
    }

    /// Stops watching and closes the session at the meta cell (waiting at most 2 s), so
    /// that the meta cell need not wait for its lease to end — after a restart of the meta
    /// cell, a session never closed must first expire. Dropping the watcher instead just
    /// abandons the session.
    pub async fn close(&self) {
        self.stop.send_replace(true);
        let mut exited = self.exited.clone();
        let done = exited.wait_for(|e| *e);
        if tokio::time::timeout(Duration::from_secs(2), done)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }

    /// The newest map read so far.
    pub fn current(&self) -> Option<Arc<PartitionMap>> {
        self.rx.borrow().clone()
    }

    /// The newest map's epoch (0: none read yet).
    pub fn map_epoch(&self) -> u64 {
        self.rx.borrow().as_ref().map_or(0, |m| m.map_epoch())
    }

    /// A receiver that sees every map the watcher publishes.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<PartitionMap>>> {
        self.rx.clone()
    }

    /// Asks the watcher to read the map again now (after a `WRONG_CELL` naming a newer
    /// map epoch than the one in hand, for example).
    pub fn refresh(&self) {
        self.refresh.notify_one();
    }

    /// Waits (at most `timeout`) for a map of epoch `min_epoch` or newer, asking for a
    /// re-read first. Returns the newest map then, which may still be older when the
    /// meta cell could not be reached in time.
    pub async fn wait_for(&self, min_epoch: u64, timeout: Duration) -> Option<Arc<PartitionMap>> {
        if self.map_epoch() < min_epoch {
            self.refresh();
            let mut rx = self.rx.clone();
            let reached = rx.wait_for(|m| m.as_ref().is_some_and(|m| m.map_epoch() >= min_epoch));
            let _ = tokio::time::timeout(timeout, reached).await;
        }
        self.current()
    }
}

/// Publishes `text` if it is a valid map newer than the one published.
fn publish(tx: &watch::Sender<Option<Arc<PartitionMap>>>, text: &[u8], deployment: &str) {
    let map = match PartitionMap::from_json(text) {
        Ok(map) => map,
        Err(e) => {
            tracing::error!(error = %e, "the partition map in the meta cell does not parse; keeping the previous one");
            return;
        }
    };
    if map.deployment() != deployment {
        tracing::error!(
            map = map.deployment(),
            deployment,
            "the partition map names another deployment; keeping the previous one"
        );
        return;
    }
    tx.send_if_modified(|cur| {
        let newer = cur.as_ref().is_none_or(|c| c.map_epoch() < map.map_epoch());
        if newer {
            tracing::info!(map_epoch = map.map_epoch(), "partition map loaded");
            *cur = Some(Arc::new(map));
        }
        newer
    });
}

async fn watch_loop(
    options: ClientOptions,
    tx: watch::Sender<Option<Arc<PartitionMap>>>,
    refresh: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    while !*stop.borrow() {
        let session = match Session::connect_with(options.clone()).await {
            Ok(s) => s,
            Err(e) => {
                // Once, then every 50th attempt (~10 s): the meta cell may be down a while.
                if failures % 50 == 0 {
                    tracing::warn!(error = %e, "cannot reach the meta cell to read the partition map; retrying");
                }
                failures += 1;
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        failures = 0;
        tokio::select! {
            _ = watch_session(&session, &tx, &refresh) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        session.close().await.ok();
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Watches through one session until it ends.
async fn watch_session(
    session: &Session,
    tx: &watch::Sender<Option<Arc<PartitionMap>>>,
    refresh: &Notify,
) {
    let deployment = session.deployment().to_owned();
    let path = map_path(&deployment);
    let mut events = session.events();
    let opts = OpenOptions::new()
        .read()
        .read_contents()
        .events(EventMask::CONTENTS_MODIFIED | EventMask::HANDLE_INVALID);
    loop {
        let (handle, info) = match session.open(&path, opts.clone()).await {
            Ok(opened) => opened,
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                // Not initialised yet (`warren ctl deployment init` writes it). The absence
                // is cached and invalidated when the map is created, so looking is cheap.
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = refresh.notified() => {}
                }
                continue;
            }
            Err(e) if e.code() == Some(ErrorCode::SessionExpired) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the partition map; retrying");
                tokio::time::sleep(RETRY).await;
                if !session.is_live() {
                    return;
                }
                continue;
            }
        };
        if let Some(text) = &info.contents {
            publish(tx, text, &deployment);
        }
        loop {
            let reread = tokio::select! {
                ev = events.recv() => match ev {
                    Some(Event::ContentsModified { path: p }) if p == path => true,
                    Some(Event::MasterFailover) => true,
                    Some(Event::HandleInvalid { path: p }) if p == path => break,
                    Some(Event::Expired) | None => return,
                    Some(_) => false,
                },
                _ = refresh.notified() => true,
            };
            if reread {
                match handle.contents().await {
                    Ok((text, _)) => publish(tx, &text, &deployment),
                    Err(e) if e.code() == Some(ErrorCode::SessionExpired) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the partition map; reopening");
                        break;
                    }
                }
            }
        }
        handle.close().await;
    }
}
