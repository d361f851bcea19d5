//! An in-memory [`Store`] for unit tests of the master logic (not durable), and the store
//! of the deterministic simulation, which keeps it across crashes of the cell's host as a
//! durable store would (docs/reliability.md). It has no fencing like the etcd store's: a
//! simulated crash stops the old master entirely, so one master writes at a time. Cells
//! with standbys in the simulation share one behind [`super::fenced::SimEtcd`], which adds
//! the etcd store's election and fencing.

use super::{Mutation, Snapshot, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    meta: Option<super::MetaRecord>,
    nodes: BTreeMap<String, super::NodeRecord>,
    contents: BTreeMap<String, Vec<u8>>,
    sessions: BTreeMap<super::SessionId, super::SessionRecord>,
    staged: BTreeMap<String, Vec<u8>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// What it holds now ([`Store::load`] without the await).
    pub(crate) fn load_now(&self) -> Snapshot {
        snapshot(&self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies `batch` now ([`Store::commit`] without the await), atomically: under one
    /// lock, so that a caller holding its own lock (the fenced store's election) checks
    /// and applies as one step.
    pub(crate) fn commit_now(&self, batch: Vec<Mutation>) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for m in batch {
            apply(&mut s, m);
        }
    }
}

/// Applies one mutation to maps shaped like a store's tables. Shared with the embedded
/// store's tests as the reference semantics of a batch.
fn apply(s: &mut State, m: Mutation) {
    match m {
        Mutation::PutMeta(meta) => s.meta = Some(meta),
        Mutation::PutNode(n) => {
            s.nodes.insert(n.path.clone(), n);
        }
        Mutation::PutContents { path, data } => {
            s.contents.insert(path, data);
        }
        Mutation::DeleteNode { path } => {
            s.nodes.remove(&path);
            s.contents.remove(&path);
        }
        Mutation::PutSession(r) => {
            s.sessions.insert(r.id, r);
        }
        Mutation::DeleteSession(id) => {
            s.sessions.remove(&id);
        }
        Mutation::PutStaged { key, value } => {
            s.staged.insert(key, value);
        }
        Mutation::DeleteStaged { key } => {
            s.staged.remove(&key);
        }
    }
}

/// What a store holds after applying `batch` to an empty one (the reference semantics of
/// a batch, for tests).
pub fn replay(batch: Vec<Mutation>) -> Snapshot {
    let mut s = State::default();
    for m in batch {
        apply(&mut s, m);
    }
    snapshot(&s)
}

fn snapshot(s: &State) -> Snapshot {
    Snapshot {
        meta: s.meta.clone(),
        nodes: s.nodes.values().cloned().collect(),
        contents: s
            .contents
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        sessions: s.sessions.values().cloned().collect(),
        staged: s
            .staged
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(self.load_now())
    }

    async fn commit(&self, batch: Vec<Mutation>) -> Result<(), StoreError> {
        self.commit_now(batch);
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
