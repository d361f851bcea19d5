//! A replica of a cell in the deterministic simulation (feature `sim`): the etcd replica's
//! loop ([`crate::replica`]) on [`SimEtcd`], the in-memory store with etcd's election and
//! fencing, served on the simulated network (docs/reliability.md, "Deterministic
//! simulation").
//!
//! As on etcd, each replica campaigns; the winner serves as master while it can prove its
//! lease — a renewal sent at local time `t` and answered proves it until `t + ttl/(1+ρ)` —
//! and every write it makes is fenced by that lease. The others are standbys that answer
//! `Locate` and `NOT_MASTER{master}`. A master that cannot renew (its host paused, or cut
//! from the store) stops serving when its proof runs out, and a standby wins once the
//! lease has expired at the store. Left out of the etcd loop: the deposer (a standby
//! asking an unreachable master to step down), so a master cut from its clients but not
//! from the store stays master, as a master on etcd does until the deposer acts.

use crate::server::{CellError, CellHandle, CellOptions, Front, Node, Role, Term};
use crate::store::fenced::{Campaign, SimEtcd};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use warren_server::grpc::Listen;

/// How often a standby campaigns again (a master renews every quarter of its TTL, as on
/// etcd).
const RETRY: Duration = Duration::from_millis(200);

fn set_health(node: &Node, h: String) {
    *node.store_health.write().unwrap_or_else(|p| p.into_inner()) = h;
}

/// Runs one replica on the connections of `incoming` (plaintext), telling clients to use
/// `advertise`, until `shutdown`. `opts.replica` names it at the store; `ttl` is its
/// mastership lease. `on_ready` is called once its service is up (as a standby).
pub async fn run_replica_incoming<I, IO, IE>(
    incoming: I,
    advertise: String,
    etcd: Arc<SimEtcd>,
    ttl: Duration,
    opts: CellOptions,
    on_ready: impl FnOnce(CellHandle) + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CellError>
where
    I: futures::Stream<Item = Result<IO, IE>> + Send + 'static,
    IO: warren_server::grpc::Conn,
    IE: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let listen = Listen::incoming(incoming, advertise);
    let front = Front::start(listen, None, &opts, "memory-fenced").await?;
    let node = front.node.clone();
    on_ready(CellHandle::new(node.clone()));
    tokio::select! {
        () = campaign_forever(&node, &etcd, ttl, &opts) => {}
        () = shutdown => {}
    }
    front.stop().await
}

/// Standby → campaign → master term → (lease lost or fenced) → standby … forever.
async fn campaign_forever(
    node: &Arc<Node>,
    etcd: &Arc<SimEtcd>,
    ttl: Duration,
    opts: &CellOptions,
) {
    let me = opts.replica.as_str();
    let drift = warren_config::defaults::CLOCK_DRIFT;
    loop {
        let term = match etcd.campaign(me, &node.advertise, ttl) {
            Ok(Campaign::Won(term)) => term,
            Ok(Campaign::Lost { .. }) => {
                if let Ok((master, epoch)) = etcd.master(me) {
                    // As on etcd (`replica::watch_master`): our own address is an earlier
                    // life's lease; name nobody.
                    let master = if master == node.advertise {
                        String::new()
                    } else {
                        master
                    };
                    if !node.is_master() {
                        node.set_role(Role::Standby { master, epoch });
                    }
                }
                set_health(node, "ok".into());
                tokio::time::sleep(RETRY).await;
                continue;
            }
            Err(e) => {
                // Cut from the store: what this standby knew may be stale; name nobody.
                if !node.is_master() {
                    node.set_role(Role::Standby {
                        master: String::new(),
                        epoch: node.locate().epoch,
                    });
                }
                set_health(node, e.to_string());
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut valid = Instant::now() + ttl.div_f64(1.0 + drift);
        // Each term draws its master's RNG from its own seed: two terms that drew the same
        // session ids would hand out ids given before, as no real master does.
        // (Hashed rather than XORed with a multiple of the term: the simulation XORs each
        // start's seed with a multiple of the start's number, and two such could meet.)
        let mut o = opts.clone();
        o.seed = o.seed.map(|s| {
            use std::hash::{Hash, Hasher};
            // SipHash with fixed keys: the same in every run.
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (s, term).hash(&mut h);
            h.finish()
        });
        let t = match Term::start(Arc::new(etcd.fenced(me, term)), &o).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(replica = %me, error = %e, "elected, but could not take over");
                let _ = etcd.resign(me, term);
                set_health(node, e.to_string());
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        tracing::info!(cell = %opts.core.cell, replica = %me, epoch = t.epoch(), "elected master");
        node.set_role(Role::Master(t.shared.clone()));
        set_health(node, "ok".into());
        let reason = loop {
            if Instant::now() >= valid {
                break "its lease could not be confirmed in time".to_string();
            }
            let renew = (Instant::now() + ttl / 4).min(valid);
            tokio::select! {
                () = tokio::time::sleep_until(renew) => {}
                f = t.failed() => break format!("a write failed: {f}"),
            }
            let sent = Instant::now();
            match etcd.keep_alive(me, term, ttl) {
                Ok(true) => valid = sent + ttl.div_f64(1.0 + drift),
                Ok(false) => break "its lease has expired at the store".to_string(),
                // Unanswered: serve on until what was proven runs out.
                Err(_) => {}
            }
        };
        tracing::warn!(cell = %opts.core.cell, replica = %me, %reason, "stopped serving as master");
        let epoch = t.epoch();
        node.set_role(Role::Standby {
            master: String::new(),
            epoch,
        });
        let _ = etcd.resign(me, term);
        t.end().await;
        tokio::time::sleep(RETRY).await;
    }
}
