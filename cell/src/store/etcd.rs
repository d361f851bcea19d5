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
//!
//! **When the cell's limits exceed etcd's** (the cell started with `--etcd-max-txn-ops
//! 10000` against an etcd on its default 128), etcd refuses the transaction outright ("too
//! many operations in txn request", "request is too large"); nothing of it applies. The
//! store does not treat that as a failure of the store, which would depose the master and
//! crash-loop the cell under every write burst (docs/operations.md, "etcd limits"): it
//! lowers its own limit, warns once per lowering naming the flag to fix, and sends the
//! same operations again in smaller transactions. [`EtcdStore::probe_limits`] finds the
//! operation limit before the first write (a read-only transaction of the configured
//! size, which etcd checks against `--max-txn-ops` like any other) and the request-size
//! limit with a transaction that cannot apply (its comparison is never true), so a
//! misconfigured cell warns at election, not under load.

use super::{MetaRecord, Mutation, NodeRecord, SessionRecord, Snapshot, Store, StoreError};
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Mutex;

/// etcd's default `--max-txn-ops`: the first smaller limit tried when etcd refuses a
/// transaction for its number of operations (the likeliest cause is an etcd on defaults).
pub const ETCD_DEFAULT_MAX_TXN_OPS: usize = 128;

/// Bytes counted per operation besides its key and value: the protobuf framing of a
/// `RequestOp` around a put or delete, so the byte budget bounds the real request.
const OP_OVERHEAD_BYTES: usize = 16;

/// The smallest byte budget the store lowers itself to: below it even one file of the
/// largest size (256 KiB) could not be written, and a refusal is a real failure.
const MIN_TXN_BYTES: usize = 64 * 1024;

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
    /// Operations per transaction: the configured limit, lowered if etcd refuses it.
    max_txn_ops: AtomicUsize,
    /// Key and value bytes (plus [`OP_OVERHEAD_BYTES`] per operation) per transaction.
    max_txn_bytes: AtomicUsize,
    /// The limits as configured, for the warnings that name them.
    configured: (usize, usize),
}

/// Which of etcd's limits a refused transaction met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcdLimit {
    /// `--max-txn-ops`: "etcdserver: too many operations in txn request".
    TxnOps,
    /// `--max-request-bytes`: "etcdserver: request is too large", or the gRPC server's
    /// receive limit (`--max-request-bytes` + 512 KiB) met first.
    RequestBytes,
}

/// Why a transaction did not apply.
enum TxnError {
    /// etcd refused it for one of its limits; nothing of it applied.
    Limit(EtcdLimit, String),
    Store(StoreError),
}

/// The etcd limit `e` reports meeting, if it is one.
fn limit_met(e: &etcd_client::Error) -> Option<EtcdLimit> {
    let etcd_client::Error::GRpcStatus(st) = e else {
        return None;
    };
    let m = st.message();
    if m.contains("too many operations in txn request") {
        Some(EtcdLimit::TxnOps)
    } else if m.contains("request is too large")
        || (st.code() == tonic::Code::ResourceExhausted && m.contains("larger than max"))
    {
        Some(EtcdLimit::RequestBytes)
    } else {
        None
    }
}

/// TLS to etcd (docs/security.md, "etcd"): the CA that signs etcd's certificates, and
/// this replica's client certificate and key, if etcd asks for one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdTls {
    pub cacert: std::path::PathBuf,
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl EtcdTls {
    /// The files read now, as etcd-client's options; the error names the file.
    fn options(&self) -> Result<etcd_client::TlsOptions, String> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("{}: cannot be read: {e}", p.display()))
        };
        let mut tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.cacert)?));
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(tls)
    }
}

/// The process's TLS to etcd, set once at start by `warren cell` ([`use_tls`]); every
/// connection to etcd reads the files afresh, so a rotated certificate is used from the
/// next reconnect on.
static ETCD_TLS: std::sync::RwLock<Option<EtcdTls>> = std::sync::RwLock::new(None);

/// Makes every later connection to etcd of this process TLS with `tls`'s files (checked
/// readable now; the error names the file).
pub fn use_tls(tls: EtcdTls) -> Result<(), String> {
    tls.options()?;
    *ETCD_TLS.write().unwrap_or_else(|e| e.into_inner()) = Some(tls);
    Ok(())
}

/// A client for the first of `endpoints` (tried in a rotating order) that answers a
/// status request within a second. One member per client: a balanced channel keeps
/// sending requests to a dead member. Over TLS if [`use_tls`] was called.
pub async fn connect_any(endpoints: &[String]) -> Option<Client> {
    let tls = ETCD_TLS.read().unwrap_or_else(|e| e.into_inner()).clone();
    let tls = match tls.map(|t| t.options()).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            tracing::error!("TLS to etcd: {e}");
            return None;
        }
    };
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
        let opts = match &tls {
            Some(tls) => opts.with_tls(tls.clone()),
            None => opts,
        };
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
            max_txn_ops: AtomicUsize::new(ETCD_DEFAULT_MAX_TXN_OPS),
            max_txn_bytes: AtomicUsize::new(1024 * 1024),
            configured: (ETCD_DEFAULT_MAX_TXN_OPS, 1024 * 1024),
        }
    }

    /// The members to reconnect to after a transport failure.
    pub fn with_endpoints(mut self, endpoints: Vec<String>) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// Sets the per-transaction limits. They should not exceed etcd's own; if they do,
    /// the store lowers them when etcd refuses a transaction (see the module doc).
    pub fn with_limits(mut self, max_txn_ops: usize, max_txn_bytes: usize) -> Self {
        let (ops, bytes) = (max_txn_ops.max(1), max_txn_bytes.max(1));
        self.max_txn_ops = AtomicUsize::new(ops);
        self.max_txn_bytes = AtomicUsize::new(bytes);
        self.configured = (ops, bytes);
        self
    }

    /// The limits in force: `(operations, bytes)` per transaction.
    pub fn limits(&self) -> (usize, usize) {
        (
            self.max_txn_ops.load(Ordering::Relaxed),
            self.max_txn_bytes.load(Ordering::Relaxed),
        )
    }

    /// The smaller limit to try after etcd refused a transaction of `ops` operations and
    /// `bytes` bytes for `limit`: etcd's default operation count first (the likeliest
    /// cause), else half. Fails when there is nothing left to split (one operation alone
    /// is over etcd's limit), naming the flag to fix.
    fn smaller(
        &self,
        limit: EtcdLimit,
        ops: usize,
        bytes: usize,
        refusal: &str,
    ) -> Result<usize, StoreError> {
        match limit {
            EtcdLimit::TxnOps if ops <= 1 => Err(StoreError::Io(format!(
                "etcd refused a transaction of one operation ({refusal}); start etcd with \
                 --max-txn-ops {} (Warren's recommended 10000)",
                self.configured.0
            ))),
            EtcdLimit::TxnOps if ops > ETCD_DEFAULT_MAX_TXN_OPS => Ok(ETCD_DEFAULT_MAX_TXN_OPS),
            EtcdLimit::TxnOps => Ok(ops / 2),
            EtcdLimit::RequestBytes if ops <= 1 || bytes <= MIN_TXN_BYTES => {
                Err(StoreError::Io(format!(
                    "etcd refused a transaction of {ops} operation(s) and {bytes} bytes \
                     ({refusal}); start etcd with --max-request-bytes 10485760 (etcd's \
                     default is 1.5 MiB; Warren's files alone can be 256 KiB)"
                )))
            }
            EtcdLimit::RequestBytes => Ok((bytes / 2).max(MIN_TXN_BYTES)),
        }
    }

    /// Lowers the store's `limit` to `to` after etcd refused it, and warns naming the
    /// flags and the fix.
    fn lower(&self, limit: EtcdLimit, to: usize, refusal: &str) {
        metrics::counter!("warren_cell_etcd_limit_refusals_total").increment(1);
        let (configured_ops, configured_bytes) = self.configured;
        match limit {
            EtcdLimit::TxnOps => {
                self.max_txn_ops.fetch_min(to, Ordering::Relaxed);
                metrics::gauge!("warren_cell_etcd_max_txn_ops").set(self.limits().0 as f64);
                tracing::warn!(
                    configured = configured_ops,
                    now = to,
                    "etcd refused a transaction ({refusal}): its --max-txn-ops is below this \
                     cell's --etcd-max-txn-ops {configured_ops}. Writing at most {to} \
                     operations per transaction from now on (batches larger than that are \
                     split, each part atomic, the batch not). Fix: start etcd with \
                     --max-txn-ops 10000 (Warren's recommended value; etcd's default is 128), \
                     or give the cell --etcd-max-txn-ops equal to etcd's --max-txn-ops"
                );
            }
            EtcdLimit::RequestBytes => {
                self.max_txn_bytes.fetch_min(to, Ordering::Relaxed);
                tracing::warn!(
                    configured = configured_bytes,
                    now = to,
                    "etcd refused a transaction ({refusal}): its --max-request-bytes is \
                     below the {configured_bytes} bytes this cell writes per transaction. \
                     Writing at most {to} bytes per transaction from now on. Fix: start etcd \
                     with --max-request-bytes 10485760 (etcd's default is 1.5 MiB)"
                );
            }
        }
    }

    /// Finds etcd's limits before the first write, lowering this store's where etcd's are
    /// smaller (each lowering warns, as [`EtcdStore::commit`] does when refused). Writes
    /// nothing: the operation probe is a read-only transaction of the configured size
    /// (etcd checks `--max-txn-ops` on every transaction), the byte probe one put of the
    /// configured byte budget behind a comparison that is never true (etcd checks
    /// `--max-request-bytes` before applying, and applies nothing). Returns the limits in
    /// force afterwards.
    pub async fn probe_limits(&self) -> Result<(usize, usize), StoreError> {
        let probe = self.key("limit-probe", "");
        // Operations: the configured count; when refused, the largest accepted count below
        // it by bisection (a dozen round trips at most, each refused without work).
        let (ops, _) = self.limits();
        let read_only = |n: usize| {
            Txn::new().and_then(
                (0..n)
                    .map(|_| TxnOp::get(probe.clone(), None))
                    .collect::<Vec<_>>(),
            )
        };
        if let Err(TxnError::Limit(EtcdLimit::TxnOps, refusal)) = self.raw_txn(read_only(ops)).await
        {
            let (mut ok, mut bad) = (0usize, ops);
            while bad - ok > 1 {
                let mid = ok + (bad - ok) / 2;
                match self.raw_txn(read_only(mid)).await {
                    Ok(_) => ok = mid,
                    Err(TxnError::Limit(EtcdLimit::TxnOps, _)) => bad = mid,
                    Err(TxnError::Limit(_, _)) => break,
                    Err(TxnError::Store(e)) => return Err(e),
                }
            }
            // `ok` is etcd's limit (0: even one operation was refused).
            if ok == 0 {
                return Err(self.smaller(EtcdLimit::TxnOps, 1, 0, &refusal).unwrap_err());
            }
            self.lower(EtcdLimit::TxnOps, ok, &refusal);
        }
        // Bytes: one value the size of the byte budget, never applied.
        for _ in 0..8 {
            let (_, bytes) = self.limits();
            let value = vec![0u8; bytes.saturating_sub(probe.len() + OP_OVERHEAD_BYTES)];
            let never = Txn::new()
                .when([Compare::version(probe.clone(), CompareOp::Less, 0)])
                .and_then([TxnOp::put(probe.clone(), value, None)]);
            match self.raw_txn(never).await {
                Ok(_) => break,
                Err(TxnError::Limit(EtcdLimit::RequestBytes, refusal)) => {
                    let to = self.smaller(EtcdLimit::RequestBytes, 2, bytes, &refusal)?;
                    self.lower(EtcdLimit::RequestBytes, to, &refusal);
                }
                Err(TxnError::Limit(EtcdLimit::TxnOps, _)) => break,
                Err(TxnError::Store(e)) => return Err(e),
            }
        }
        metrics::gauge!("warren_cell_etcd_max_txn_ops").set(self.limits().0 as f64);
        Ok(self.limits())
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

    /// One fenced transaction of `ops`. `Fenced` (nothing of it applied) only when no
    /// earlier attempt of it went unanswered: an attempt that timed out or lost its
    /// connection may have been applied before the election key changed, so a fenced
    /// answer after one leaves the outcome unknown (`Io`), never "not applied".
    async fn txn(&self, ops: Vec<TxnOp>) -> Result<(), TxnError> {
        let mut txn = Txn::new();
        if let Some(f) = &self.fence {
            txn = txn.when([Compare::create_revision(
                f.key.clone(),
                CompareOp::Equal,
                f.create_revision,
            )]);
        }
        let (resp, retried) = self.raw_txn_counting(txn.and_then(ops)).await?;
        if !resp.succeeded() {
            const FENCED: &str =
                "the election key this master holds is gone or replaced; another replica is master";
            return Err(TxnError::Store(if retried {
                StoreError::Io(format!(
                    "{FENCED}, and an earlier attempt of the same commit got no answer, so it may have been applied"
                ))
            } else {
                StoreError::Fenced(FENCED.into())
            }));
        }
        Ok(())
    }

    /// Sends `txn`, retrying transport failures on other members; a limit etcd refused it
    /// for is returned at once (sending it again would be refused again).
    async fn raw_txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, TxnError> {
        self.raw_txn_counting(txn).await.map(|(resp, _)| resp)
    }

    /// [`raw_txn`](Self::raw_txn), and whether an earlier attempt went unanswered.
    async fn raw_txn_counting(
        &self,
        txn: Txn,
    ) -> Result<(etcd_client::TxnResponse, bool), TxnError> {
        // A member may die under us: retry on another for a couple of seconds (the master
        // deposes itself anyway once its lease cannot be confirmed).
        let mut attempt = 0;
        loop {
            let r = {
                let mut c = self.client.lock().await;
                tokio::time::timeout(std::time::Duration::from_secs(2), c.txn(txn.clone())).await
            };
            match r {
                Ok(Ok(resp)) => return Ok((resp, attempt > 0)),
                Ok(Err(e)) => {
                    if let Some(limit) = limit_met(&e) {
                        return Err(TxnError::Limit(limit, e.to_string()));
                    }
                    if attempt >= 20 {
                        return Err(TxnError::Store(io(e)));
                    }
                }
                Err(_) if attempt >= 20 => {
                    return Err(TxnError::Store(StoreError::Io(
                        "etcd did not answer".into(),
                    )))
                }
                Err(_) => {}
            }
            attempt += 1;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if let Some(c) = connect_any(&self.endpoints).await {
                *self.client.lock().await = c;
            }
        }
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

/// Decodes one key-value pair read under the cell's `prefix` into `into`, checking it as a
/// load does: a record that does not decode, or a node filed under another path, is
/// [`StoreError::Corrupt`] naming the key; keys under the prefix that are not state (the
/// election) are skipped. Pure: [`Store::load`] calls it for every pair of every page, and
/// the fuzz target `store_records` calls it on arbitrary bytes (docs/fuzzing.md).
pub fn decode_kv(
    prefix: &str,
    key: &[u8],
    value: &[u8],
    into: &mut Snapshot,
) -> Result<(), StoreError> {
    let key = String::from_utf8_lossy(key).into_owned();
    let rest = key.strip_prefix(prefix).unwrap_or(&key);
    let corrupt = |detail: String| StoreError::Corrupt {
        what: key.clone(),
        detail,
    };
    if rest == "meta" {
        let m: MetaRecord = serde_json::from_slice(value).map_err(|e| corrupt(e.to_string()))?;
        into.meta = Some(m);
    } else if let Some(p) = rest.strip_prefix("nodes/") {
        let n: NodeRecord = serde_json::from_slice(value).map_err(|e| corrupt(e.to_string()))?;
        if n.path != p {
            return Err(corrupt(format!("record names path {:?}", n.path)));
        }
        into.nodes.push(n);
    } else if let Some(p) = rest.strip_prefix("contents/") {
        into.contents.push((p.to_string(), value.to_vec()));
    } else if let Some(k) = rest.strip_prefix("staged/") {
        into.staged.push((k.to_string(), value.to_vec()));
    } else if rest.starts_with("sessions/") {
        let s: SessionRecord = serde_json::from_slice(value).map_err(|e| corrupt(e.to_string()))?;
        into.sessions.push(s);
    }
    // Other keys under the prefix (the election) are not state.
    Ok(())
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
        // Page through the range so a large cell never needs one huge response, every page
        // at the first page's revision: one consistent view while commits go on (a backup
        // reads a live master's store; pages at the latest revision each could mix states).
        let mut revision = 0i64;
        for _ in 0..1_000_000 {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(500);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let r = self
                .client
                .lock()
                .await
                .get(from.clone(), Some(opts))
                .await
                .map_err(io)?;
            if revision == 0 {
                revision = r.header().map_or(0, |h| h.revision());
            }
            for kv in r.kvs() {
                decode_kv(&self.prefix, kv.key(), kv.value(), &mut snap)?;
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
        let size = |(k, v): &KeyOp| k.len() + v.as_ref().map_or(0, Vec::len) + OP_OVERHEAD_BYTES;
        let mut start = 0;
        while start < pairs.len() {
            // The next transaction: as many pairs from `start` as the limits in force allow
            // (at least one).
            let (max_ops, max_bytes) = self.limits();
            let (mut end, mut bytes) = (start, 0usize);
            while end < pairs.len() {
                let s = size(&pairs[end]);
                if end > start && (end - start >= max_ops || bytes + s > max_bytes) {
                    break;
                }
                bytes += s;
                end += 1;
            }
            let ops = pairs[start..end]
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => TxnOp::put(k.clone(), v.clone(), None),
                    None => TxnOp::delete(k.clone(), None),
                })
                .collect();
            match self.txn(ops).await {
                Ok(()) => start = end,
                // Part of the batch is committed: "fenced" would say none of it was.
                Err(TxnError::Store(StoreError::Fenced(why))) if start > 0 => {
                    return Err(StoreError::Io(format!(
                        "{why}, after {start} of the batch's {} keys were committed",
                        pairs.len()
                    )))
                }
                // Refused whole: lower the limit and send the same pairs again, smaller.
                Err(TxnError::Limit(limit, refusal)) => {
                    let to = self.smaller(limit, end - start, bytes, &refusal)?;
                    self.lower(limit, to, &refusal);
                }
                Err(TxnError::Store(e)) => return Err(e),
            }
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "etcd"
    }
}
