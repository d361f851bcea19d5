//! Gathering what the HTML status page shows ([`crate::status_page`]) from what a serving
//! process can reach: `Locate` at every replica of the cells it knows (over the process's
//! TLS identity if one is installed), and live rates from two samples of its own
//! Prometheus registry ([`RateSampler`]).

use crate::status_page::{self, CellView, Rate, ReplicaState, ReplicaView};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::pb;

/// How long the page waits for one replica's `Locate`.
pub const LOCATE_TIMEOUT: Duration = Duration::from_secs(1);

/// Asks one replica `Locate`: its role, epoch, map epoch and store health.
pub async fn locate(addr: &str, timeout: Duration) -> Result<ReplicaState, String> {
    let call = async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad address {addr:?}: {e}"))?
            .connect_timeout(timeout);
        let channel = match warren_tls::installed() {
            Some(tls) => warren_tls::client::connect(&endpoint, tls).await,
            None => endpoint.connect().await,
        }
        .map_err(|e| format!("cannot connect: {}", error_chain(&e)))?;
        let reply = pb::warren_client::WarrenClient::new(channel)
            .locate(pb::LocateRequest::default())
            .await
            .map_err(|s| format!("Locate failed: {}", s.message()))?
            .into_inner();
        Ok(ReplicaState {
            role: if reply.role.is_empty() {
                if reply.is_master { "master" } else { "standby" }.to_string()
            } else {
                reply.role
            },
            epoch: reply.epoch,
            map_epoch: reply.map_epoch,
            serving: reply.serving,
            store_health: if reply.store_health.is_empty() {
                "ok".into()
            } else {
                reply.store_health
            },
        })
    };
    match tokio::time::timeout(timeout * 2, call).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", timeout * 2)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Every replica of `cells` (name → replica addresses) asked `Locate` at once.
pub async fn locate_cells(cells: &BTreeMap<String, Vec<String>>) -> Vec<CellView> {
    let asks = cells.iter().map(|(name, addrs)| async move {
        let replicas = futures::future::join_all(addrs.iter().map(|a| async move {
            ReplicaView {
                addr: a.clone(),
                state: locate(a, LOCATE_TIMEOUT).await,
            }
        }))
        .await;
        CellView {
            name: name.clone(),
            replicas,
            sessions: None,
            proxy_sessions: None,
        }
    });
    futures::future::join_all(asks).await
}

/// The live rates of the page: the process's counters now against the last sample taken
/// for a page (one that is at most [`RateSampler::MAX_AGE`] old), else against a sample
/// taken [`RateSampler::FIRST_WINDOW`] before.
#[derive(Default)]
pub struct RateSampler {
    last: Mutex<Option<(Instant, BTreeMap<String, f64>)>>,
}

impl RateSampler {
    /// An older sample is too stale to show as "live".
    pub const MAX_AGE: Duration = Duration::from_secs(60);
    /// The window of a page's rates when there is no recent sample.
    pub const FIRST_WINDOW: Duration = Duration::from_secs(1);
    /// A shorter interval is too noisy: keep the older sample as the base.
    const MIN_WINDOW: Duration = Duration::from_millis(500);

    /// Rates from `exposition` (called for a fresh rendering of the registry).
    pub async fn rates(&self, exposition: impl Fn() -> String) -> Vec<Rate> {
        let base = {
            let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            last.clone().filter(|(at, _)| at.elapsed() <= Self::MAX_AGE)
        };
        let base = match base {
            Some(b) => b,
            None => {
                let first = (Instant::now(), status_page::counters(&exposition()));
                tokio::time::sleep(Self::FIRST_WINDOW).await;
                first
            }
        };
        let now = (Instant::now(), status_page::counters(&exposition()));
        let secs = now.0.duration_since(base.0).as_secs_f64();
        let rates = status_page::rates(&base.1, &now.1, secs);
        if now.0.duration_since(base.0) >= Self::MIN_WINDOW {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        }
        rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_replica_that_is_not_there_is_reported_not_waited_for() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let started = Instant::now();
        let err = locate(&addr, Duration::from_millis(300)).await.unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_page_measures_over_a_short_window_then_between_pages() {
        let n = std::sync::atomic::AtomicU64::new(0);
        let expo = || {
            let v = n.fetch_add(10, std::sync::atomic::Ordering::SeqCst) + 10;
            format!("warren_store_mutations_total {v}\n")
        };
        let sampler = RateSampler::default();
        // 10 then 20, one second apart.
        let r = sampler.rates(expo).await;
        assert_eq!(r[0].per_second, Some(10.0));
        tokio::time::advance(Duration::from_secs(4)).await;
        // 20 then 30 over 4 s.
        let r = sampler.rates(expo).await;
        assert_eq!(r[0].per_second, Some(2.5));
    }
}
