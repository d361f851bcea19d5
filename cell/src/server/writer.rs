//! The group-commit writer: the one task that makes a master's changes durable, in the
//! order the master applied them, committing whatever has queued up since its last commit
//! as one store transaction. The rest of the term holds its two ends: [`CommitQueue`], the
//! master's side (used under the master's lock, so batches queue in the order they were
//! applied; each gets the next sequence number), and [`Durability`], what has committed so
//! far (a reply waits until its sequence number has).

use super::metrics;
use crate::store::{Mutation, Store, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::Status;
use warren_proto::{ErrorCode, WarrenError};

/// One batch of mutations the master applied, with its sequence number.
type Batch = (u64, Vec<Mutation>);

/// What the writer has made durable so far.
#[derive(Clone, Debug, Default)]
struct Durable {
    /// Every batch up to this sequence number is committed.
    seq: u64,
    /// The commit that failed; the writer stopped with it.
    failed: Option<String>,
    /// The failure was etcd refusing a write because another replica is master.
    fenced: bool,
}

/// The master's side of the writer: numbers each batch of mutations and queues it.
pub(super) struct CommitQueue {
    tx: mpsc::UnboundedSender<Batch>,
    /// Sequence number of the last batch handed to the writer.
    applied: u64,
}

impl CommitQueue {
    /// Queues `mutations` (if there are any) as the next batch. Returns the sequence number
    /// a reply produced now must wait for: this batch's, or the last one queued before.
    pub(super) fn submit(&mut self, mutations: Vec<Mutation>) -> u64 {
        if !mutations.is_empty() {
            self.applied += 1;
            // A send error means the writer stopped after a store failure; replies then
            // fail in `Durability::wait_for`.
            let _ = self.tx.send((self.applied, mutations));
        }
        self.applied
    }
}

/// What the writer has committed, for replies to wait on.
#[derive(Clone)]
pub(super) struct Durability(watch::Receiver<Durable>);

impl Durability {
    /// Waits until batch `seq` is committed; fails once a commit has failed (`NOT_MASTER`
    /// when the store fenced this replica off, else `INTERNAL`).
    pub(super) async fn wait_for(&self, seq: u64) -> Result<(), Status> {
        let mut rx = self.0.clone();
        let r = rx.wait_for(|d| d.seq >= seq || d.failed.is_some()).await;
        match r {
            Ok(d) if d.seq >= seq => Ok(()),
            Ok(d) if d.fenced => Err(WarrenError::new(
                ErrorCode::NotMaster,
                format!(
                    "this replica is no longer master; its write was refused: {}",
                    d.failed.clone().unwrap_or_default()
                ),
            )
            .into()),
            Ok(d) => Err(WarrenError::internal(format!(
                "the cell's store failed and the cell is stopping: {}",
                d.failed.clone().unwrap_or_default()
            ))
            .into()),
            Err(_) => Err(WarrenError::internal("the cell's store writer stopped").into()),
        }
    }

    /// Resolves with the store's error once a commit fails.
    pub(super) async fn failed(&self) -> String {
        let mut rx = self.0.clone();
        let r = match rx.wait_for(|d| d.failed.is_some()).await {
            Ok(d) => d.failed.clone().unwrap_or_default(),
            Err(_) => "the store writer stopped".into(),
        };
        r
    }
}

/// Starts the writer for `store`. It runs until its [`CommitQueue`] is dropped (having
/// committed what was queued) or until a commit fails.
pub(super) fn start(store: Arc<dyn Store>) -> (CommitQueue, Durability, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (durable_tx, durable_rx) = watch::channel(Durable::default());
    let task = tokio::spawn(write_loop(store, rx, durable_tx));
    (CommitQueue { tx, applied: 0 }, Durability(durable_rx), task)
}

/// The group-commit writer: one store transaction for everything queued.
async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    durable: watch::Sender<Durable>,
) {
    while let Some((mut seq, mut batch)) = rx.recv().await {
        while let Ok((s, more)) = rx.try_recv() {
            seq = s;
            batch.extend(more);
        }
        let n = batch.len();
        let started = std::time::Instant::now();
        match store.commit(batch).await {
            Ok(()) => {
                metrics::store_committed(started, n);
                durable.send_modify(|d| d.seq = seq);
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; the cell stops serving");
                let fenced = matches!(e, StoreError::Fenced(_));
                durable.send_modify(|d| {
                    d.failed = Some(e.to_string());
                    d.fenced = fenced;
                });
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Snapshot;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::sync::{Notify, Semaphore};

    fn m(path: &str) -> Mutation {
        Mutation::DeleteNode { path: path.into() }
    }

    /// A store that records each commit and holds it until the test lets it finish, or
    /// refuses every commit with `refuse`.
    struct Recording {
        commits: Mutex<Vec<Vec<Mutation>>>,
        started: Notify,
        finish: Semaphore,
        refuse: Option<fn() -> StoreError>,
    }

    impl Recording {
        fn new(refuse: Option<fn() -> StoreError>) -> Arc<Recording> {
            Arc::new(Recording {
                commits: Mutex::default(),
                started: Notify::new(),
                finish: Semaphore::new(0),
                refuse,
            })
        }
    }

    #[async_trait::async_trait]
    impl Store for Recording {
        async fn load(&self) -> Result<Snapshot, StoreError> {
            Ok(Snapshot::default())
        }

        async fn commit(&self, batch: Vec<Mutation>) -> Result<(), StoreError> {
            if let Some(refuse) = self.refuse {
                return Err(refuse());
            }
            self.commits.lock().unwrap().push(batch);
            self.started.notify_one();
            self.finish.acquire().await.unwrap().forget();
            Ok(())
        }

        fn kind(&self) -> &'static str {
            "recording"
        }
    }

    #[test]
    fn a_batch_without_mutations_keeps_the_sequence_number() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut q = CommitQueue { tx, applied: 0 };
        assert_eq!(q.submit(vec![]), 0);
        assert_eq!(q.submit(vec![m("/a")]), 1);
        assert_eq!(q.submit(vec![]), 1);
        assert_eq!(q.submit(vec![m("/b"), m("/c")]), 2);
        assert_eq!(rx.try_recv().unwrap(), (1, vec![m("/a")]));
        assert_eq!(rx.try_recv().unwrap(), (2, vec![m("/b"), m("/c")]));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn batches_queued_during_a_commit_go_in_one_transaction_in_order() {
        let store = Recording::new(None);
        let (mut q, durable, task) = start(store.clone());
        let first = q.submit(vec![m("/a")]);
        store.started.notified().await;
        let second = q.submit(vec![m("/b")]);
        let third = q.submit(vec![m("/c"), m("/d")]);
        assert_eq!((first, second, third), (1, 2, 3));
        // Batch 1 is being committed: nothing is durable yet.
        let early = tokio::time::timeout(Duration::from_millis(20), durable.wait_for(1)).await;
        assert!(
            early.is_err(),
            "batch 1 was reported durable before its commit ended"
        );
        store.finish.add_permits(2);
        durable.wait_for(3).await.unwrap();
        assert_eq!(
            *store.commits.lock().unwrap(),
            vec![vec![m("/a")], vec![m("/b"), m("/c"), m("/d")]]
        );
        drop(q);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_commit_fails_its_waiters_and_stops_the_writer() {
        let fenced: fn() -> StoreError = || StoreError::Fenced("another replica won".into());
        let io: fn() -> StoreError = || StoreError::Io("disk full".into());
        // Fenced off by etcd: another replica is master. Anything else: the store failed.
        for (refuse, code, why) in [
            (fenced, ErrorCode::NotMaster, "another replica won"),
            (io, ErrorCode::Internal, "disk full"),
        ] {
            let (mut q, durable, task) = start(Recording::new(Some(refuse)));
            let seq = q.submit(vec![m("/a")]);
            let e = WarrenError::from_status(&durable.wait_for(seq).await.unwrap_err()).unwrap();
            assert_eq!(e.code, code);
            assert!(e.message.contains(why), "{}", e.message);
            assert!(durable.failed().await.contains(why));
            task.await.unwrap();
            // Batches queued after the writer stopped cannot commit; their replies fail too.
            let later = q.submit(vec![m("/b")]);
            assert!(durable.wait_for(later).await.is_err());
        }
    }
}
