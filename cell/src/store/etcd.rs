//! The `etcd` [`Store`]: a cell's state in a replicated etcd cluster, the role Chubby's
//! Paxos-replicated database plays. Everything lives under one prefix per cell,
//! `/warren/<deployment>/<cell>/`:
//!
//! | key | value |
//! |---|---|
//! | `meta` | JSON [`MetaRecord`] |
//! | `nodes/<path>` | JSON [`NodeRecord`] |
//! | `contents/<path>` | the file's bytes |
//! | `sessions/<hex id>` | JSON [`SessionRecord`] |
//!
//! Every write is an etcd transaction **fenced** by the master's election key: it applies
//! only while the key this master created when it won the election still exists with the
//! same create revision. A deposed master (its etcd lease expired, another replica won)
//! can therefore never write, whatever its clock or its network says ([`StoreError::Fenced`]).
//!
//! A batch is coalesced to its final value per key (etcd refuses a key twice in one
//! transaction) and split into transactions of at most `max_txn_ops` operations and about
//! `max_txn_bytes` bytes (etcd's `--max-txn-ops`, default 128, and `--max-request-bytes`,
//! default 1.5 MiB). Each transaction is atomic; a batch larger than one transaction is
//! applied in order but not atomically, so run etcd with a larger `--max-txn-ops` (Warren's
//! tests use 10000) to keep large batches (a session ending with many ephemeral files) whole.

use super::{MetaRecord, Mutation, NodeRecord, SessionRecord, Snapshot, Store, StoreError};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use std::collections::HashMap;
use tokio::sync::Mutex;

/// The key that proves mastership: the election key and its create revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub key: Vec<u8>,
    pub create_revision: i64,
}

pub struct EtcdStore {
    client: Mutex<Client>,
    /// All members' client URLs: after a transport failure the store reconnects to
    /// another member and retries (etcd transactions here are idempotent: each batch
    /// writes final values, and the fence makes a stale retry fail rather than apply).
    endpoints: Vec<String>,
    prefix: String,
    fence: Option<Fence>,
    max_txn_ops: usize,
    max_txn_bytes: usize,
}

/// A client for the first of `endpoints` (tried in a rotating order) that answers a
/// status request within a second. One member per client: a balanced channel keeps
/// sending requests to a dead member.
pub async fn connect_any(endpoints: &[String]) -> Option<Client> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = endpoints.len();
    let start = NEXT.fetch_add(1, Ordering::Relaxed);
    for k in 0..n {
        let ep = &endpoints[(start + k) % n];
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_millis(500))
            .with_keep_alive(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(1),
            );
        let attempt = async {
            let mut c = Client::connect([ep.as_str()], Some(opts)).await.ok()?;
            c.status().await.ok()?;
            Some(c)
        };
        if let Ok(Some(c)) = tokio::time::timeout(std::time::Duration::from_secs(1), attempt).await
        {
            return Some(c);
        }
    }
    None
}

/// The key prefix of a cell: `/warren/<deployment>/<cell>/`.
pub fn cell_prefix(deployment: &str, cell: &str) -> String {
    format!("/warren/{deployment}/{cell}/")
}

/// A key and its final value in a batch (`None`: delete).
type KeyOp = (Vec<u8>, Option<Vec<u8>>);

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(e: etcd_client::Error) -> StoreError {
    StoreError::Io(format!("etcd: {e}"))
}

impl EtcdStore {
    /// A store writing under `prefix`, fenced by `fence` (`None` only for tools and tests
    /// that read, or write without a master).
    pub fn new(client: Client, prefix: String, fence: Option<Fence>) -> Self {
        EtcdStore {
            client: Mutex::new(client),
            endpoints: Vec::new(),
            prefix,
            fence,
            max_txn_ops: 128,
            max_txn_bytes: 1024 * 1024,
        }
    }

    /// The members to reconnect to after a transport failure.
    pub fn with_endpoints(mut self, endpoints: Vec<String>) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// Raises the per-transaction limits (they must not exceed etcd's own).
    pub fn with_limits(mut self, max_txn_ops: usize, max_txn_bytes: usize) -> Self {
        self.max_txn_ops = max_txn_ops.max(1);
        self.max_txn_bytes = max_txn_bytes.max(1);
        self
    }

    fn key(&self, kind: &str, rest: &str) -> Vec<u8> {
        format!("{}{kind}{rest}", self.prefix).into_bytes()
    }

    /// The batch as final (key, value-or-delete) pairs, in first-touched order.
    fn coalesce(&self, batch: Vec<Mutation>) -> Result<Vec<KeyOp>, StoreError> {
        let json = |what: &str, r: Result<Vec<u8>, serde_json::Error>| {
            r.map_err(|e| StoreError::Io(format!("cannot encode {what}: {e}")))
        };
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut last: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        let mut set = |k: Vec<u8>, v: Option<Vec<u8>>| {
            if last.insert(k.clone(), v).is_none() {
                order.push(k);
            }
        };
        for m in batch {
            match m {
                Mutation::PutMeta(meta) => set(
                    self.key("meta", ""),
                    Some(json("meta", serde_json::to_vec(&meta))?),
                ),
                Mutation::PutNode(n) => set(
                    self.key("nodes/", &n.path),
                    Some(json("node", serde_json::to_vec(&n))?),
                ),
                Mutation::PutContents { path, data } => {
                    set(self.key("contents/", &path), Some(data))
                }
                Mutation::DeleteNode { path } => {
                    set(self.key("nodes/", &path), None);
                    set(self.key("contents/", &path), None);
                }
                Mutation::PutSession(r) => set(
                    self.key("sessions/", &hex(&r.id)),
                    Some(json("session", serde_json::to_vec(&r))?),
                ),
                Mutation::DeleteSession(id) => set(self.key("sessions/", &hex(&id)), None),
                Mutation::PutStaged { key, value } => set(self.key("staged/", &key), Some(value)),
                Mutation::DeleteStaged { key } => set(self.key("staged/", &key), None),
            }
        }
        Ok(order
            .into_iter()
            .map(|k| {
                let v = last.remove(&k).flatten();
                (k, v)
            })
            .collect())
    }

    async fn txn(&self, ops: Vec<TxnOp>) -> Result<(), StoreError> {
        let mut txn = Txn::new();
        if let Some(f) = &self.fence {
            txn = txn.when([Compare::create_revision(
                f.key.clone(),
                CompareOp::Equal,
                f.create_revision,
            )]);
        }
        let txn = txn.and_then(ops);
        // A member may die under us: retry on another for a couple of seconds (the master
        // deposes itself anyway once its lease cannot be confirmed).
        let mut attempt = 0;
        let resp = loop {
            let r = {
                let mut c = self.client.lock().await;
                tokio::time::timeout(std::time::Duration::from_secs(2), c.txn(txn.clone())).await
            };
            match r {
                Ok(Ok(resp)) => break resp,
                Ok(Err(e)) if attempt >= 20 => return Err(io(e)),
                Err(_) if attempt >= 20 => {
                    return Err(StoreError::Io("etcd did not answer".into()))
                }
                _ => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    if let Some(c) = connect_any(&self.endpoints).await {
                        *self.client.lock().await = c;
                    }
                }
            }
        };
        if !resp.succeeded() {
            return Err(StoreError::Fenced(
                "the election key this master holds is gone or replaced; another replica is master"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether this store's fence still holds (mastership is still ours in etcd).
    pub async fn fence_holds(&self) -> Result<bool, StoreError> {
        let Some(f) = &self.fence else {
            return Ok(true);
        };
        let r = self
            .client
            .lock()
            .await
            .get(f.key.clone(), None)
            .await
            .map_err(io)?;
        Ok(r.kvs()
            .first()
            .is_some_and(|kv| kv.create_revision() == f.create_revision))
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot::default();
        let end = {
            // The prefix range end: the prefix with its last byte incremented ('/' + 1).
            let mut e = self.prefix.clone().into_bytes();
            if let Some(last) = e.last_mut() {
                *last += 1;
            }
            e
        };
        let mut from = self.prefix.clone().into_bytes();
        // Page through the range so a large cell never needs one huge response.
        for _ in 0..1_000_000 {
            let opts = GetOptions::new().with_range(end.clone()).with_limit(500);
            let r = self
                .client
                .lock()
                .await
                .get(from.clone(), Some(opts))
                .await
                .map_err(io)?;
            for kv in r.kvs() {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let rest = &key[self.prefix.len().min(key.len())..];
                let corrupt = |detail: String| StoreError::Corrupt {
                    what: key.clone(),
                    detail,
                };
                if rest == "meta" {
                    let m: MetaRecord =
                        serde_json::from_slice(kv.value()).map_err(|e| corrupt(e.to_string()))?;
                    snap.meta = Some(m);
                } else if let Some(p) = rest.strip_prefix("nodes/") {
                    let n: NodeRecord =
                        serde_json::from_slice(kv.value()).map_err(|e| corrupt(e.to_string()))?;
                    if n.path != p {
                        return Err(corrupt(format!("record names path {:?}", n.path)));
                    }
                    snap.nodes.push(n);
                } else if let Some(p) = rest.strip_prefix("contents/") {
                    snap.contents.push((p.to_string(), kv.value().to_vec()));
                } else if let Some(k) = rest.strip_prefix("staged/") {
                    snap.staged.push((k.to_string(), kv.value().to_vec()));
                } else if rest.starts_with("sessions/") {
                    let s: SessionRecord =
                        serde_json::from_slice(kv.value()).map_err(|e| corrupt(e.to_string()))?;
                    snap.sessions.push(s);
                }
                // Other keys under the prefix (the election) are not state.
            }
            match r.kvs().last() {
                Some(kv) if r.more() => {
                    from = kv.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(snap),
            }
        }
        Err(StoreError::Io("etcd range did not end".into()))
    }

    async fn commit(&self, batch: Vec<Mutation>) -> Result<(), StoreError> {
        let pairs = self.coalesce(batch)?;
        let mut ops = Vec::new();
        let mut bytes = 0usize;
        for (k, v) in pairs {
            let size = k.len() + v.as_ref().map_or(0, Vec::len);
            if !ops.is_empty()
                && (ops.len() >= self.max_txn_ops || bytes + size > self.max_txn_bytes)
            {
                self.txn(std::mem::take(&mut ops)).await?;
                bytes = 0;
            }
            bytes += size;
            ops.push(match v {
                Some(v) => TxnOp::put(k, v, None),
                None => TxnOp::delete(k, None),
            });
        }
        if !ops.is_empty() {
            self.txn(ops).await?;
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "etcd"
    }
}
