//! A replica of a cell on the etcd store: it campaigns for mastership through an etcd
//! lease and election, serves as master while it can prove that lease, and as a standby
//! (`Locate`, `NOT_MASTER{master}`) otherwise. docs/design.md §9.
//!
//! Safety rests on two independent guards:
//! 1. **Fencing.** Every write is an etcd transaction conditional on this master's
//!    election key ([`crate::store::etcd::Fence`]); once the lease behind it expires, no
//!    write of this master can land, whatever it believes.
//! 2. **Self-deposition.** The master serves only while its etcd lease is confirmed: a
//!    keep-alive *sent* at local time `t` and answered proves the lease alive until etcd's
//!    `t + ttl`; allowing clock-rate drift ρ, the master stops serving at local
//!    `t + ttl / (1 + ρ)` unless a later keep-alive is answered. etcd cannot expire the
//!    lease (and so no other replica can win) before that moment.

use crate::server::{CellError, CellHandle, CellOptions, Front, Node, Role, Term};
use crate::store::etcd::{cell_prefix, connect_any, EtcdStore, Fence};
use crate::store::MetaRecord;
use etcd_client::Client;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// How a replica uses etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs of the etcd members (`http://host:port`).
    pub endpoints: Vec<String>,
    /// TTL of the mastership lease (etcd rounds to whole seconds; ≥ 2 s with etcd's
    /// default election timeout). Failover takes about this long after a master dies.
    pub lease_ttl: Duration,
    /// Allowed clock-rate drift ρ between this replica and etcd.
    pub drift: f64,
    /// Largest number of operations per transaction (etcd `--max-txn-ops`).
    pub max_txn_ops: usize,
}

impl EtcdOptions {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdOptions {
            endpoints,
            lease_ttl: Duration::from_secs(2),
            drift: warren_config::defaults::CLOCK_DRIFT,
            max_txn_ops: 128,
        }
    }
}

/// Bounds a single etcd call that must not block (everything but the campaign).
async fn bounded<T>(f: impl Future<Output = Result<T, etcd_client::Error>>) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(3), f).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("etcd did not answer within 3 s".into()),
    }
}

/// Runs one replica until `shutdown`. `on_ready` is called once its gRPC service is up
/// (as a standby; it may become master any time after).
pub async fn run_replica(
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    etcd: EtcdOptions,
    opts: CellOptions,
    on_ready: impl FnOnce(CellHandle) + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CellError> {
    let listen = warren_server::grpc::Listen::tcp(listener)
        .map_err(|e| CellError::Startup(e.to_string()))?;
    let front = Front::start(listen, admin_listener, &opts, "etcd").await?;
    let node = front.node.clone();
    on_ready(CellHandle::new(node.clone()));
    let prefix = cell_prefix(&opts.core.deployment, &opts.core.cell);
    tokio::pin!(shutdown);
    let result = tokio::select! {
        r = campaign_forever(&node, &etcd, &opts, &prefix) => r,
        _ = &mut shutdown => Ok(()),
    };
    let _ = front.stop().await;
    result
}

/// Standby → campaign → master term → (lease lost or fenced) → standby … forever.
async fn campaign_forever(
    node: &Arc<Node>,
    etcd: &EtcdOptions,
    opts: &CellOptions,
    prefix: &str,
) -> Result<(), CellError> {
    let election = format!("{prefix}election");
    let mut backoff = Duration::from_millis(100);
    loop {
        let client = match connect_any(&etcd.endpoints).await {
            Some(c) => c,
            None => {
                set_health(
                    node,
                    format!(
                        "cannot reach any etcd member of {}",
                        etcd.endpoints.join(",")
                    ),
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        match one_term(node, client, etcd, opts, prefix, &election).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "mastership attempt ended");
                set_health(node, e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn set_health(node: &Node, h: String) {
    *node.store_health.write().unwrap_or_else(|p| p.into_inner()) = h;
}

/// Keeps a standby's view of the master (address and epoch) fresh while it campaigns.
async fn watch_master(node: Arc<Node>, mut client: Client, election: String, prefix: String) {
    loop {
        let leader = bounded(client.leader(election.clone())).await;
        let meta = bounded(client.get(format!("{prefix}meta"), None)).await;
        match (&leader, &meta) {
            (Ok(l), Ok(m)) => {
                let master = l
                    .kv()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                    .unwrap_or_default();
                // Our own address is an earlier life's lease (this replica restarted before
                // that lease expired): this replica is not master, so it names nobody
                // rather than send clients back to itself.
                let master = if master == node.advertise {
                    String::new()
                } else {
                    master
                };
                let epoch = m
                    .kvs()
                    .first()
                    .and_then(|kv| serde_json::from_slice::<MetaRecord>(kv.value()).ok())
                    .map_or(0, |m| m.epoch);
                if !node.is_master() {
                    node.set_role(Role::Standby { master, epoch });
                }
                set_health(&node, "ok".into());
            }
            // "no leader" is an error from the election service, not a health problem.
            (Err(e), Ok(_)) if e.contains("no leader") => {
                if !node.is_master() {
                    node.set_role(Role::Standby {
                        master: String::new(),
                        epoch: 0,
                    });
                }
                set_health(&node, "ok".into());
            }
            // What this standby knew of the master may be stale now: name nobody, so that
            // clients ask every replica rather than follow an old master here.
            (Err(e), _) | (_, Err(e)) => {
                if !node.is_master() {
                    node.set_role(Role::Standby {
                        master: String::new(),
                        epoch: node.locate().epoch,
                    });
                }
                set_health(&node, format!("etcd: {e}"))
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One lease: campaign with it, and if elected serve as master until it is lost.
async fn one_term(
    node: &Arc<Node>,
    mut client: Client,
    etcd: &EtcdOptions,
    opts: &CellOptions,
    prefix: &str,
    election: &str,
) -> Result<(), String> {
    let ttl_secs = etcd.lease_ttl.as_secs().max(1) as i64;
    let lease = bounded(client.lease_grant(ttl_secs, None)).await?;
    let lease_id = lease.id();
    let ttl = Duration::from_secs(lease.ttl().max(1) as u64);
    // Keep the lease alive from now on, recording until when it is proven.
    let (valid_tx, mut valid_rx) =
        tokio::sync::watch::channel(Instant::now() + ttl.div_f64(1.0 + etcd.drift));
    let keeper = {
        let mut client = client.clone();
        let drift = etcd.drift;
        let endpoints = etcd.endpoints.clone();
        tokio::spawn(async move {
            // Renew every ttl/4; if the member we talk to dies, renew through another.
            // Validity only ever comes from an answered renewal, so reconnecting is safe.
            for _ in 0..u32::MAX {
                let Ok(Ok((mut keeper, mut stream))) =
                    tokio::time::timeout(ttl / 4, client.lease_keep_alive(lease_id)).await
                else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if let Some(c) = connect_any(&endpoints).await {
                        client = c;
                    }
                    continue;
                };
                loop {
                    let sent = Instant::now();
                    if keeper.keep_alive().await.is_err() {
                        break;
                    }
                    match tokio::time::timeout(ttl / 4, stream.message()).await {
                        Ok(Ok(Some(r))) if r.ttl() > 0 => {
                            let valid =
                                sent + Duration::from_secs(r.ttl() as u64).div_f64(1.0 + drift);
                            let _ = valid_tx.send(valid);
                        }
                        Ok(Ok(Some(_))) => return, // ttl 0: the lease is gone for good
                        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
                    }
                    tokio::time::sleep(ttl / 4).await;
                }
                if let Some(c) = connect_any(&endpoints).await {
                    client = c;
                }
            }
        })
    };
    let watcher = tokio::spawn(watch_master(
        node.clone(),
        client.clone(),
        election.to_string(),
        prefix.to_string(),
    ));
    // A standby also checks reports that the master cannot be reached (docs/design.md §9,
    // "A master nobody can reach").
    let deposer = Abort(tokio::spawn(crate::depose::deposer(
        node.clone(),
        client.clone(),
        election.to_string(),
        prefix.to_string(),
    )));
    let guard = scopeguard(keeper, watcher);

    // Campaign: blocks until this replica leads, or the lease dies.
    let valid_check = valid_rx.clone();
    let lease_dead = async move {
        let mut rx = valid_check;
        loop {
            let until = *rx.borrow_and_update();
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = rx.changed() => {}
            }
        }
    };
    let won = tokio::select! {
        r = client.campaign(election.to_string(), node.advertise.clone(), lease_id) => r.map_err(|e| format!("campaign: {e}"))?,
        _ = lease_dead => return Err("the mastership lease expired while campaigning".into()),
    };
    let leader = won.leader().ok_or("campaign returned no leader key")?;
    let fence = Fence {
        key: leader.key().to_vec(),
        create_revision: leader.rev(),
    };
    drop(guard.1); // the standby watcher and deposer; this replica is master now
    drop(deposer);
    let term_id = (fence.key.clone(), fence.create_revision);
    let store = EtcdStore::new(client.clone(), prefix.to_string(), Some(fence))
        .with_endpoints(etcd.endpoints.clone())
        .with_limits(etcd.max_txn_ops, 1024 * 1024);
    // Meet etcd's limits now rather than in the first write burst: a limit below ours
    // lowers the store's and warns (the store also adapts if etcd refuses a write later).
    match store.probe_limits().await {
        Ok((ops, bytes)) => {
            tracing::debug!(
                max_txn_ops = ops,
                max_txn_bytes = bytes,
                "etcd limits probed"
            )
        }
        Err(e) => tracing::warn!(error = %e, "could not probe etcd's transaction limits"),
    }
    let term = match Term::start(Arc::new(store), opts).await {
        Ok(t) => t,
        Err(e) => {
            let _ = bounded(client.lease_revoke(lease_id)).await;
            return Err(format!("elected, but could not take over: {e}"));
        }
    };
    tracing::info!(cell = %opts.core.cell, replica = %opts.replica, epoch = term.epoch(), advertise = %node.advertise, "elected master");
    metrics::counter!("warren_cell_elections_won_total").increment(1);
    node.set_role(Role::Master(term.shared.clone()));
    set_health(node, "ok".into());

    // Serve until the lease cannot be proven any more, a write is fenced off, or a standby
    // that cannot reach this master either asks it to step down (crate::depose).
    let step_down =
        crate::depose::asked_to_step_down(client.clone(), prefix.to_string(), term_id.0, term_id.1);
    tokio::pin!(step_down);
    let reason = loop {
        let until = *valid_rx.borrow_and_update();
        if Instant::now() >= until {
            break "its etcd lease could not be confirmed in time".to_string();
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = valid_rx.changed() => {}
            f = term.failed() => break format!("a write failed: {f}"),
            s = &mut step_down => break format!(
                "replica {} could not reach it, nor could the clients that told it so; it asked this master to step down",
                s.by
            ),
        }
    };
    tracing::warn!(cell = %opts.core.cell, replica = %opts.replica, %reason, "stopped serving as master");
    metrics::counter!("warren_cell_depositions_total").increment(1);
    let epoch = term.epoch();
    // Stop serving first; only then let the lease (and the election key) go, so that a
    // standby can win at once rather than after the lease's TTL. Writes still in the
    // writer are fenced off once the key is gone.
    node.set_role(Role::Standby {
        master: String::new(),
        epoch,
    });
    let _ = bounded(client.lease_revoke(lease_id)).await;
    drop(guard.0);
    term.end().await;
    Err(format!("deposed: {reason}"))
}

/// Aborts background tasks when dropped.
struct Abort(tokio::task::JoinHandle<()>);
impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn scopeguard(a: tokio::task::JoinHandle<()>, b: tokio::task::JoinHandle<()>) -> (Abort, Abort) {
    (Abort(a), Abort(b))
}
