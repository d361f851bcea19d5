//! One master term: the master recovered from the store (its new epoch durable before
//! anything is served), the state every call of the term shares ([`Shared`]), and the
//! term's tasks — the group-commit writer, the ticker that drives time, the feed of new
//! partition maps (data cells) and the cross-cell janitor. A term ends when the store fails
//! (or fences it off) or when it is closed.

use super::calls::WakeTx;
use super::writer::{self, CommitQueue, Durability};
use super::{crosscell, metrics, CellError, CellOptions};
use crate::core::HashMap;
use crate::core::{Master, WaiterId};
use crate::peers::Peers;
use crate::store::Store;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use warren_client::map::MapWatcher;
use warren_proto::WarrenError;

/// The master and what belongs with it under one lock.
pub(crate) struct State {
    pub(crate) master: Master,
    /// Parked operations, woken by the master's output.
    pub(super) waiters: HashMap<WaiterId, WakeTx>,
    /// Where the master's mutations go, in the order it applied them.
    queue: CommitQueue,
    pub(crate) closing: bool,
}

impl State {
    /// Hands the master's output on: mutations to the writer, wakes to their waiters.
    /// Returns the sequence number replies must wait for.
    pub(super) fn flush(&mut self) -> u64 {
        let out = self.master.take_output();
        let applied = self.queue.submit(out.mutations);
        for (w, wake) in out.wakes {
            if let Some(tx) = self.waiters.remove(&w) {
                let _ = tx.send(Ok((wake, applied)));
            }
        }
        applied
    }

    /// The master accepts all operations: not closing, not recovering from a failover.
    pub(super) fn serving(&self) -> bool {
        !self.closing && !self.master.recovering()
    }
}

/// Shared by the service, the ticker, the janitor and the admin endpoint for one term.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(super) durable: Durability,
    /// A data cell's view of the partition map in the meta cell.
    pub(super) watcher: Option<MapWatcher>,
    /// This master's internal sessions at other cells.
    pub(super) peers: Peers,
    /// The meta cell's replicas (empty: this is the meta cell or an unpartitioned one).
    pub(super) meta: Vec<String>,
    /// The reshard job's driver (the meta cell, or an unpartitioned one, only).
    pub(super) reshard: std::sync::OnceLock<super::reshard_job::Runner>,
    /// The term's backups: read from its store, one at a time.
    pub(super) backups: super::backup::Backups,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn map_epoch(&self) -> u64 {
        self.lock().master.map_epoch()
    }

    fn tick(&self) {
        let mut st = self.lock();
        st.master.tick(Instant::now());
        st.flush();
        metrics::publish_master(&st.master.status(), st.master.map_epoch());
    }

    /// Fails every parked operation so graceful shutdown does not wait on long-polls.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closing = true;
        for (_, tx) in st.waiters.drain() {
            let _ = tx.send(Err(WarrenError::not_master("").into()));
        }
    }
}

/// One master term: the master recovered from `store`, its group-commit writer and its
/// ticker. Ends when the store fails (or fences it off) or when it is closed.
pub(crate) struct Term {
    pub(crate) shared: Arc<Shared>,
    writer: JoinHandle<()>,
    ticker: JoinHandle<()>,
    /// Hands each new partition map to the master (data cells).
    map_feed: Option<JoinHandle<()>>,
    janitor: JoinHandle<()>,
    /// Takes the scheduled backups (docs/backup.md).
    backups: JoinHandle<()>,
}

impl Term {
    /// Runs the new-master procedure's first steps: load, bump the epoch durably, rebuild.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        opts: &CellOptions,
    ) -> Result<Term, CellError> {
        let snapshot = store.load().await?;
        let seed: u64 = opts.seed.unwrap_or_else(rand::random);
        let mut core = opts.core.clone();
        core.meta = opts.meta.clone();
        let mut master = Master::recover(core, snapshot, Instant::now(), seed)
            .map_err(|e| CellError::Startup(e.message))?;
        // The new epoch (and a fresh store's root) must be durable before anything is served.
        let boot = master.take_output();
        store.commit(boot.mutations).await?;
        let (queue, durable, writer) = writer::start(store.clone());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                master,
                waiters: HashMap::default(),
                queue,
                closing: false,
            }),
            durable,
            watcher: (!opts.meta.is_empty())
                .then(|| MapWatcher::start(opts.meta.clone(), crate::core::CELL_PRINCIPAL)),
            peers: Peers::default(),
            meta: opts.meta.clone(),
            reshard: std::sync::OnceLock::new(),
            backups: super::backup::Backups::new(store.clone(), opts.backup.clone()),
        });
        if opts.meta.is_empty() {
            let runner = super::reshard_job::Runner::start(Arc::downgrade(&shared));
            let _ = shared.reshard.set(runner);
        }
        let ticker = {
            let shared = shared.clone();
            let period = opts.tick;
            tokio::spawn(async move {
                let mut iv = tokio::time::interval(period);
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    iv.tick().await;
                    shared.tick();
                }
            })
        };
        let map_feed = shared.watcher.as_ref().map(|w| {
            let mut rx = w.subscribe();
            let weak = Arc::downgrade(&shared);
            tokio::spawn(async move {
                loop {
                    let map = rx.borrow_and_update().clone();
                    if let (Some(map), Some(shared)) = (map, weak.upgrade()) {
                        // A new map may install slots a reshard staged here.
                        let mut st = shared.lock();
                        st.master.set_map(map);
                        st.flush();
                    }
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            })
        });
        let janitor = tokio::spawn(crosscell::janitor_loop(Arc::downgrade(&shared)));
        let backups = tokio::spawn(super::backup::schedule(Arc::downgrade(&shared)));
        metrics::term_started(shared.lock().master.status().epoch);
        Ok(Term {
            shared,
            writer,
            ticker,
            map_feed,
            janitor,
            backups,
        })
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.shared.lock().master.epoch()
    }

    /// Resolves with the store's error once a commit fails (the term is then over).
    pub(crate) async fn failed(&self) -> String {
        self.shared.durable.failed().await
    }

    /// Closes our sessions at the meta cell and the other cells, so that none of them
    /// waits for these sessions' leases after a restart (docs/design.md §9 step 6). Called at a
    /// graceful stop while this cell still serves — cells of one deployment stopping
    /// together each close theirs before any stops answering — and again (a no-op by
    /// then) when the term ends.
    pub(crate) async fn close_sessions(&self) {
        self.janitor.abort();
        let closing = async {
            if let Some(w) = &self.shared.watcher {
                w.close().await;
            }
        };
        tokio::join!(closing, self.shared.peers.close_all());
    }

    /// Ends the term: parked calls fail, time stops, queued writes finish (or fail).
    pub(crate) async fn end(self) {
        if let Some(r) = self.shared.reshard.get() {
            r.stop();
        }
        self.shared.close();
        self.ticker.abort();
        self.janitor.abort();
        self.backups.abort();
        // A replica that is not master takes no backups: the alert on missing ones must
        // not fire for it.
        super::metrics::backup_schedule(Duration::ZERO, 0);
        if let Some(t) = &self.map_feed {
            t.abort();
        }
        self.close_sessions().await;
        drop(self.shared);
        // The writer ends once every holder of the term is gone (in-flight calls finish
        // quickly: parked ones were just failed). Bounded, so a stuck store cannot hang
        // shutdown.
        let mut writer = self.writer;
        if tokio::time::timeout(Duration::from_secs(5), &mut writer)
            .await
            .is_err()
        {
            tracing::warn!(
                "store writer did not finish within 5 s of the term's end; abandoning it"
            );
            writer.abort();
        }
    }
}
