//! Adopting the clients of a dead proxy (docs/design.md §10, proxy failover; docs/proxy.md
//! "Proxy failover"), with admission control so that a storm of them cannot starve the
//! proxy's own clients.
//!
//! When a proxy dies, every client it held arrives here at about the same moment, and
//! each must be claimed at every cell before it is answered. Claimed all at once (25,000
//! clients, three cells: 75,000 `ClaimSession`s) the claims filled the proxy's one
//! HTTP/2 connection to each cell: the proxy's own upstream KeepAlive and its master
//! probe queued behind them, the probe timed out, the held KeepAlive was dropped while the
//! master was looked for again, and the proxy's established clients, whose leases nest
//! inside that upstream session, waited seconds for their replies (docs/performance.md,
//! "Mass expiry after a proxy dies"). So:
//!
//! - at most [`ADOPTIONS_IN_FLIGHT`] adoptions claim at the cells at a time (a few dozen
//!   streams per connection, well under the cells' limit of concurrent streams); the
//!   others wait in a FIFO queue ([`Adoptions`]), holding nothing but a small task;
//! - an adoption runs in a task of its own, not in the call that asked for it: a client
//!   whose call times out while it waits (a client in jeopardy gives a KeepAlive 2 s)
//!   keeps its place, and its retry joins the same adoption instead of starting another;
//! - KeepAlives of established clients never come here: they are answered from the
//!   proxy's own table, and only the adoptions wait;
//! - beyond [`MAX_QUEUED`] waiting adoptions a new one is refused at once with
//!   `OVERLOADED` (the client library retries a refused KeepAlive with backoff).
//!
//! A moved client is in jeopardy or within its grace period (45 s by default) and the
//! cells keep what it holds for their claim window (60 s), so a few seconds in the queue
//! cost it nothing.

use super::*;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use tokio::sync::{watch, Semaphore};

/// Adoptions claiming at the cells at the same time: each claims at every cell at once,
/// so this is also the number of claim streams on each connection to a cell.
pub(crate) const ADOPTIONS_IN_FLIGHT: usize = 64;
/// Adoptions waiting for their turn, at most; beyond it a client is told to retry.
pub(crate) const MAX_QUEUED: usize = 65_536;

/// The outcome of one adoption: the client's new epoch, or why it failed.
type Outcome = Option<Result<u64, WarrenError>>;

/// The adoptions queued or running, by client session, and the permits that bound how
/// many claim at once.
pub(crate) struct Adoptions {
    permits: Arc<Semaphore>,
    /// Client → (the secret its adoption was asked with, where its outcome appears).
    pending: Mutex<PendingTable>,
}

type PendingTable = HashMap<ClientId, ([u8; 16], watch::Receiver<Outcome>)>;

impl Default for Adoptions {
    fn default() -> Self {
        Adoptions {
            permits: Arc::new(Semaphore::new(ADOPTIONS_IN_FLIGHT)),
            pending: Mutex::default(),
        }
    }
}

impl Adoptions {
    fn pending(&self) -> std::sync::MutexGuard<'_, PendingTable> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Service {
    /// A session this proxy does not know: a client arriving from another proxy. Queues
    /// its adoption (or joins the one already queued for it) and waits for the outcome:
    /// its new epoch once every cell where it had state moved it here. See the module
    /// docs for the admission rules and [`adopt_now`] for the adoption itself.
    ///
    /// Boxed: every handler awaits it behind its session check, and an unboxed wait here
    /// would make each of their futures — above all the KeepAlive held for a whole lease
    /// by every client session — larger (docs/performance.md, "Memory per session at the
    /// proxy").
    pub(super) fn adopt(
        &self,
        id: ClientId,
        secret: [u8; 16],
        epoch: u64,
        fresh: Option<String>,
    ) -> futures::future::BoxFuture<'_, Result<u64, WarrenError>> {
        Box::pin(async move {
            let mut outcome = self.queue_adoption(id, secret, epoch, fresh)?;
            let r = outcome
                .wait_for(Option::is_some)
                .await
                .map(|o| o.clone())
                .ok()
                .flatten();
            r.unwrap_or_else(|| Err(WarrenError::internal("the adoption task ended unanswered")))
        })
    }

    /// The receiver of the outcome of `id`'s adoption: the one queued already, or a new
    /// one, spawned.
    fn queue_adoption(
        &self,
        id: ClientId,
        secret: [u8; 16],
        epoch: u64,
        fresh: Option<String>,
    ) -> Result<watch::Receiver<Outcome>, WarrenError> {
        let adoptions = self.adoptions.clone();
        let mut pending = adoptions.pending();
        if let Some((asked_with, rx)) = pending.get(&id) {
            if *asked_with != secret {
                // Not joined: the outcome of a claim proved by another secret is not this
                // caller's. Nothing is claimed for it until that one is done.
                return Err(WarrenError::overloaded(format!(
                    "session {} is being adopted from another proxy with another secret; retry shortly",
                    hex(&id)
                )));
            }
            return Ok(rx.clone());
        }
        if pending.len() >= MAX_QUEUED {
            metrics::counter!("warren_proxy_adoptions_refused_total").increment(1);
            return Err(WarrenError::overloaded(format!(
                "this proxy is adopting {} sessions from another proxy; retry shortly",
                pending.len()
            )));
        }
        let (tx, rx) = watch::channel(None);
        pending.insert(id, (secret, rx.clone()));
        drop(pending);
        metrics::gauge!("warren_proxy_adoptions_pending").increment(1.0);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let result = match adoptions.permits.clone().acquire_owned().await {
                Ok(_permit) => adopt_now(&shared, id, secret, epoch, fresh).await,
                Err(_) => Err(WarrenError::internal("the adoption queue was closed")),
            };
            adoptions.pending().remove(&id);
            metrics::gauge!("warren_proxy_adoptions_pending").decrement(1.0);
            let _ = tx.send(Some(result));
        });
        Ok(rx)
    }
}

/// Claims client `id` at every cell where it may have state — with a map, every cell of
/// the map and the meta cell, whether or not this proxy used them yet (their sessions
/// start now) — then takes it on. `fresh` is the principal of a client that says it holds
/// nothing: if no cell knows the session, it is taken on afresh.
async fn adopt_now(
    shared: &Arc<Shared>,
    id: ClientId,
    secret: [u8; 16],
    epoch: u64,
    fresh: Option<String>,
) -> Result<u64, WarrenError> {
    let deadline = Instant::now() + shared.cfg.forward_patience;
    let mut cells = BTreeSet::new();
    let mut principal = String::new();
    let mut expired = false;
    let all = shared.claimable_cells().await?;
    // At every cell at once: the client waits in jeopardy meanwhile.
    let claims = all.into_iter().map(|ix| {
        let up = shared.cell(ix);
        async move {
            let Some(link) = up.current(deadline).await else {
                return (
                    ix,
                    Err(WarrenError::new(
                        ErrorCode::FailoverInProgress,
                        format!(
                            "this proxy has no session at cell {} yet (it is looking for the cell's master); retry shortly",
                            up.name
                        ),
                    )),
                );
            };
            (ix, upstream::claim(&link, &id, &secret, "", None).await)
        }
    });
    let results = futures::future::join_all(claims).await;
    for (ix, r) in &results {
        tracing::debug!(
            session = %hex(&id),
            cell = %shared.cell(*ix).name,
            result = ?r.as_ref().map(|r| r.known),
            proxy = %shared.cfg.id,
            "adoption: claimed at a cell"
        );
    }
    // The first known principal, in cell order (deterministic).
    for (ix, result) in results {
        match result {
            Ok(r) => {
                if r.known {
                    cells.insert(ix);
                    if principal.is_empty() {
                        principal = r.principal;
                    }
                }
            }
            Err(e) if e.code == ErrorCode::SessionExpired => expired = true,
            Err(e) if e.code == ErrorCode::PermissionDenied => {
                return Err(WarrenError::permission_denied(format!(
                    "wrong secret for session {}",
                    hex(&id)
                )))
            }
            // What the cell said (a failover there, or no answer), with the same
            // retryable code: not "the master is recovering" when it is not.
            Err(e) if e.is_retryable() => {
                return Err(WarrenError::new(
                    ErrorCode::FailoverInProgress,
                    format!(
                        "could not claim session {} at cell {}: {}; retry shortly",
                        hex(&id),
                        shared.cell(ix).name,
                        e.message
                    ),
                ))
            }
            Err(e) => return Err(e),
        }
    }
    // A session no cell knows is either one whose proxy died before it opened
    // anything, or a made-up or long-ended one. A client that says it holds nothing
    // loses nothing either way: take it on afresh (it has no lock, no ephemeral file
    // and no cached file that an expiry would have ended). One that holds handles must
    // be told its session is gone, as a cell would.
    let fresh = fresh.filter(|_| cells.is_empty() && !expired);
    if let Some(p) = fresh {
        principal = p;
        metrics::counter!("warren_proxy_fresh_adoptions_total").increment(1);
    } else if expired || cells.is_empty() {
        return Err(WarrenError::session_expired(format!(
            "session {} is unknown or has expired",
            hex(&id)
        )));
    }
    metrics::counter!("warren_proxy_adoptions_total").increment(1);
    Ok(shared.with_core(|c| c.adopt(id, secret, principal, epoch, cells, Instant::now())))
}
