//! The proxy's one session per cell (docs/design.md §10): finding the cell's master, creating the
//! proxy session, keeping it alive with **one** KeepAlive stream whatever the number of
//! clients, feeding what it delivers to the core, acknowledging upstream only what the
//! clients have acknowledged, and — when the session is lost — creating a new one and
//! claiming every client session back onto it.
//!
//! Forwarded calls read the current [`Link`] and wait (bounded) while there is none.

use crate::core::{CellIx, ClientId};
use crate::Shared;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tonic::transport::Channel;
use warren_client::lease::LocalLease;
use warren_client::transport;
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::{ErrorCode, WarrenError};

/// How long one attempt to reach a cell (dial + Locate) may take at most; looking for a
/// master again starts with [`FIRST_PATIENCE`] and doubles up to this.
const LOCATE_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_PATIENCE: Duration = Duration::from_millis(500);
/// How often the proxy checks that each cell's master still answers, and how long it may
/// take ([`probe_master`]): about 2 small unary calls per second per cell per proxy.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between rounds of looking for a master that could not be found.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The least time between two cover refreshes asked for by clients' first copies
/// ([`crate::core::ProxyCore::upstream_cover_wanted`]): new clients arriving faster share
/// one, and a cell granting less than expected costs a few KeepAlives at most.
const COVER_RETRY: Duration = Duration::from_millis(50);

/// The proxy's current session at a cell, and the connection to its master.
#[derive(Clone, Debug)]
pub struct Link {
    pub client: WarrenClient<Channel>,
    pub addr: String,
    pub session: [u8; 16],
    pub secret: [u8; 16],
    pub epoch: u64,
    /// Counts sessions: a forwarded call that failed on one link retries on a newer one.
    pub serial: u64,
    /// The hold-back promised to the cell (`SessionContext.hold_back_ms`, on the proxy's
    /// own calls): see [`hold_back`].
    pub hold_back_ms: u64,
}

impl Link {
    /// The context of a call made on behalf of a client (or the proxy itself: `None`).
    pub fn ctx(&self, client: Option<(&ClientId, &[u8; 16], &str)>) -> pb::SessionContext {
        let mut ctx = pb::SessionContext {
            session_id: self.session.to_vec(),
            secret: self.secret.to_vec(),
            epoch: self.epoch,
            ..Default::default()
        };
        if let Some((id, secret, principal)) = client {
            ctx.client_session = id.to_vec();
            ctx.client_secret = secret.to_vec();
            ctx.client_principal = principal.to_string();
        } else {
            ctx.hold_back_ms = self.hold_back_ms;
        }
        ctx
    }
}

/// One cell as the proxy sees it.
pub struct Upstream {
    pub ix: CellIx,
    pub name: String,
    /// Its replicas' addresses (from `--cell`, or the partition map, which may change them).
    addrs: Mutex<Vec<String>>,
    /// Why it cannot be used (a proxy-lease misconfiguration), for `/status`.
    pub error: Mutex<Option<String>>,
    /// The current link (`None` while there is no session or no master).
    pub link: watch::Sender<Option<Link>>,
    /// Something happened that may let the proxy acknowledge more, or a forwarded call saw
    /// the master go away: send a (superseding) KeepAlive now.
    pub kick: Notify,
    /// A forwarded call saw `NOT_MASTER` / a transport failure / `STALE_EPOCH`.
    pub suspect: Notify,
    /// The master did not answer [`probe_master`] in time: look for it again now.
    pub unresponsive: Notify,
}

impl Upstream {
    pub fn new(ix: CellIx, name: String, addrs: Vec<String>) -> Self {
        Upstream {
            ix,
            name,
            addrs: Mutex::new(addrs),
            error: Mutex::new(None),
            link: watch::channel(None).0,
            kick: Notify::new(),
            suspect: Notify::new(),
            unresponsive: Notify::new(),
        }
    }

    /// Its replicas' addresses.
    pub fn addrs(&self) -> Vec<String> {
        self.addrs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// New replica addresses (a new partition map); used from the next look for the master.
    pub fn set_addrs(&self, addrs: &[String]) {
        let mut a = self.addrs.lock().unwrap_or_else(|p| p.into_inner());
        if a.as_slice() != addrs {
            tracing::info!(cell = %self.name, ?addrs, "the cell's replica addresses changed");
            *a = addrs.to_vec();
        }
    }

    /// The current link, waiting until `deadline` for one.
    pub async fn current(&self, deadline: Instant) -> Option<Link> {
        let mut rx = self.link.subscribe();
        loop {
            if let Some(l) = rx.borrow_and_update().clone() {
                return Some(l);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// A link newer than `serial`, waiting until `deadline`.
    pub async fn newer_than(&self, serial: u64, deadline: Instant) -> Option<Link> {
        let mut rx = self.link.subscribe();
        loop {
            if let Some(l) = rx.borrow_and_update().clone() {
                if l.serial > serial {
                    return Some(l);
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }
}

/// Finds the master among `addrs`, asking every replica at once and waiting at most
/// `patience` for each ([`transport::find_cell_master`], which also reports a master the
/// replicas name but that does not answer; docs/design.md §9).
async fn find_master(
    up: &Upstream,
    patience: Duration,
) -> Option<(WarrenClient<Channel>, String, u64, String)> {
    match transport::find_cell_master(&up.addrs(), patience).await {
        Ok((conn, info)) => {
            if info.cell != up.name {
                tracing::error!(
                    cell = %up.name, addr = %conn.addr, answered = %info.cell,
                    "the server at this address says it is a different cell; check --cell or the partition map"
                );
                return None;
            }
            Some((conn.client, conn.addr, info.epoch, info.deployment))
        }
        Err(e) => {
            tracing::debug!(cell = %up.name, %e, "no master found");
            None
        }
    }
}

/// Watches the master of `ix` through the proxy's link: every [`PROBE_INTERVAL`] a
/// `Locate` on the link's connection, which must be answered "master" within
/// [`PROBE_TIMEOUT`]. A frozen master (SIGSTOP, a long pause) or one cut off from the
/// proxy answers nothing, and the KeepAlive it holds would hang until the proxy's lease
/// at the cell ran out; so the keepalive loop is told ([`Upstream::unresponsive`]) to look
/// for the master again at once, among all replicas (docs/design.md §9, "A frozen or
/// cut-off master"). Runs for the life of [`run`].
async fn probe_master(shared: Arc<Shared>, ix: CellIx) {
    let up = shared.cell(ix);
    let mut links = up.link.subscribe();
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(link) = links.borrow_and_update().clone() else {
            continue;
        };
        let mut client = link.client.clone();
        let answer =
            tokio::time::timeout(PROBE_TIMEOUT, client.locate(pb::LocateRequest::default())).await;
        if matches!(&answer, Ok(Ok(r)) if r.get_ref().is_master) {
            continue;
        }
        tracing::info!(cell = %up.name, master = %link.addr, "the master did not answer a probe in time; looking for it again");
        up.unresponsive.notify_one();
        // Probe again once the keepalive loop has linked anew (bounded, in case it was
        // busy elsewhere and linked nothing).
        let _ = tokio::time::timeout(
            crate::config::LEASE_LIMIT,
            links.wait_for(|l| l.as_ref().is_some_and(|l| l.serial != link.serial)),
        )
        .await;
    }
}

fn code_of(status: &tonic::Status) -> Option<WarrenError> {
    WarrenError::from_status(status)
}

/// Creates the proxy session at the cell's master.
async fn create_session(
    shared: &Shared,
    client: &mut WarrenClient<Channel>,
    name: &str,
) -> Result<(pb::CreateSessionResponse, Instant), String> {
    let sent = Instant::now();
    let r = tokio::time::timeout(
        LOCATE_TIMEOUT * 2,
        client.create_session(pb::CreateSessionRequest {
            principal: format!("proxy:{}", shared.cfg.id),
            proxy: true,
        }),
    )
    .await
    .map_err(|_| "CreateSession timed out".to_string())?
    .map_err(|s| s.message().to_string())?
    .into_inner();
    shared
        .cfg
        .check_proxy_lease(name, Duration::from_millis(r.lease_ms))?;
    Ok((r, sent))
}

/// The hold-back the proxy promises a cell that granted it `granted` (docs/design.md §10,
/// "A dead proxy"): it grants no client lease, and answers nothing from its shared cache,
/// later than this long before its local lease there ends — so never more than one client
/// lease past the lease end the cell gave it. The cell may then stop waiting for the
/// proxy's acknowledgement of an invalidation once the client leases the proxy could
/// have granted before it have ended, instead of waiting out the proxy's whole lease.
/// `None` unless the proxy is configured to promise one (`hold_back`, off by default).
fn hold_back(shared: &Shared, granted: Duration) -> Option<Duration> {
    shared
        .cfg
        .hold_back
        .then(|| granted.saturating_sub(shared.cfg.client_lease))
}

/// Runs the proxy's session at one cell for the life of the proxy.
pub async fn run(shared: Arc<Shared>, ix: CellIx) {
    let up = shared.cell(ix);
    let up = &*up;
    let mut serial = 0u64;
    // The proxy's last session at this cell, whose clients a new session claims back.
    let mut previous: Option<[u8; 16]> = None;
    let mut failures = 0u32;
    let _probe = AbortOnDrop(tokio::spawn(probe_master(shared.clone(), ix)));
    'session: loop {
        // 1. A master and a new session there.
        let Some((mut client, addr, _, _)) = find_master(up, LOCATE_TIMEOUT).await else {
            failures += 1;
            tokio::time::sleep(RETRY_PAUSE.min(Duration::from_millis(50) * failures)).await;
            continue;
        };
        let (created, sent) = match create_session(&shared, &mut client, &up.name).await {
            Ok(c) => c,
            Err(e) => {
                if e.contains("--proxy-lease") {
                    // A configuration error: say so loudly, and keep trying (an operator
                    // may fix the cell without restarting the proxy).
                    tracing::error!(cell = %up.name, "{e}");
                    shared.set_config_error(ix, e);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                } else {
                    tracing::debug!(cell = %up.name, %e, "could not create the proxy session");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                continue;
            }
        };
        shared.clear_config_error(ix);
        failures = 0;
        let (Ok(session), Ok(secret)) = (
            <[u8; 16]>::try_from(created.session_id.as_slice()),
            <[u8; 16]>::try_from(created.secret.as_slice()),
        ) else {
            tracing::error!(cell = %up.name, "the cell answered CreateSession with a malformed id");
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        serial += 1;
        let granted = Duration::from_millis(created.lease_ms);
        let hold_back = hold_back(&shared, granted);
        let mut link = Link {
            client,
            addr,
            session,
            secret,
            epoch: created.epoch,
            serial,
            hold_back_ms: hold_back.map_or(0, |h| h.as_millis() as u64),
        };
        // The proxy's local lease at the cell (send time + lease / (1 + ρ), the shared
        // client-side rule); clients of this cell are never promised more.
        let mut lease = LocalLease::new(sent, granted, shared.cfg.drift);
        // The cover is then send time + (lease − hold-back) / (1 + ρ): the local lease
        // of a lease `hold_back` shorter, which ends no later than the cell's lease end
        // minus the hold-back.
        let local_hold_back = hold_back.map(|h| h.div_f64(1.0 + shared.cfg.drift));
        shared.upstream_created(ix, lease.end(), local_hold_back);
        metrics::counter!("warren_proxy_upstream_sessions_created_total", "cell" => up.name.clone())
            .increment(1);
        tracing::info!(
            cell = %up.name,
            master = %link.addr,
            epoch = link.epoch,
            session = %warren_server::lease::short_id(&link.session),
            proxy = %shared.cfg.id,
            "proxy session created"
        );

        // 2. Claim back every client that has state at this cell, held by the session
        // that was lost (only those: `only_from`). A first session has none to claim: no
        // client can have registered here through this proxy before it (an adopted one
        // was claimed here by its adoption), and a claim naming no predecessor would take
        // a client that has moved to another proxy meanwhile (the simulation of the whole
        // deployment, seed 5750: a restarted proxy's first session took back a client the
        // other proxy had adopted, which lost its session).
        if previous.is_some() {
            claim_all(&shared, ix, &link, previous, lease.end()).await;
        }
        previous = Some(link.session);
        up.link.send_replace(Some(link.clone()));

        // 3. KeepAlives until the session is lost.
        match keepalive_loop(&shared, ix, &mut link, &mut lease, &mut serial).await {
            Lost::Session => {
                up.link.send_replace(None);
                shared.with_core(|c| c.upstream_lost(ix));
                continue 'session;
            }
        }
    }
}

enum Lost {
    Session,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Claims the clients with state at `ix` onto the proxy's new session there — only those
/// still held by its previous session (`previous`), so that a proxy that lost its session
/// (a partition, a pause) never takes back a client that moved to another proxy meanwhile.
///
/// The KeepAlives of the new session start only after the claims, so a claim that the cell
/// keeps answering `FAILOVER_IN_PROGRESS` is given up 1 s before `lease_end`, the end of
/// the proxy's local lease there, rather than let that session expire (the client's calls
/// then find their session unclaimed, as after any failed claim).
async fn claim_all(
    shared: &Shared,
    ix: CellIx,
    link: &Link,
    previous: Option<[u8; 16]>,
    lease_end: Instant,
) {
    let clients = shared.with_core(|c| c.clients_at(ix, Instant::now()));
    if clients.is_empty() {
        return;
    }
    let name = shared.cell(ix).name.clone();
    tracing::info!(cell = %name, n = clients.len(), "claiming client sessions onto the new proxy session");
    let claims = clients.into_iter().map(|(id, secret, principal)| {
        let link = link.clone();
        async move {
            let until = lease_end
                .checked_sub(Duration::from_secs(1))
                .unwrap_or(lease_end)
                .min(Instant::now() + CLAIM_PATIENCE);
            let r = claim_until(&link, &id, &secret, &principal, previous, until).await;
            (id, r)
        }
    });
    let results: Vec<_> = futures::stream::iter(claims)
        .buffer_unordered(64)
        .collect()
        .await;
    for (id, r) in results {
        match r {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::SessionExpired => {
                shared.with_core(|c| c.expire_client(&id));
            }
            Err(e) if e.code == ErrorCode::PermissionDenied && previous.is_some() => {
                // Another proxy holds it now: it is that proxy's client.
                shared.with_core(|c| c.claimed_away(&id));
            }
            Err(e) => tracing::warn!(cell = %name, %e, "claim failed"),
        }
    }
}

/// How long a claim is retried while the cell answers `FAILOVER_IN_PROGRESS`.
const CLAIM_PATIENCE: Duration = Duration::from_secs(10);

/// `ClaimSession` for one client on `link`, retrying while the cell fails over (at most
/// [`CLAIM_PATIENCE`]).
pub async fn claim(
    link: &Link,
    id: &ClientId,
    secret: &[u8; 16],
    principal: &str,
    only_from: Option<[u8; 16]>,
) -> Result<pb::ClaimSessionResponse, WarrenError> {
    let deadline = Instant::now() + CLAIM_PATIENCE;
    claim_until(link, id, secret, principal, only_from, deadline).await
}

/// [`claim`], retrying until `deadline`.
async fn claim_until(
    link: &Link,
    id: &ClientId,
    secret: &[u8; 16],
    principal: &str,
    only_from: Option<[u8; 16]>,
    deadline: Instant,
) -> Result<pb::ClaimSessionResponse, WarrenError> {
    loop {
        let mut client = link.client.clone();
        let r = client
            .claim_session(pb::ClaimSessionRequest {
                ctx: Some(link.ctx(None)),
                client_session: id.to_vec(),
                client_secret: secret.to_vec(),
                client_principal: principal.to_string(),
                only_from: only_from.map(|s| s.to_vec()).unwrap_or_default(),
            })
            .await;
        metrics::counter!("warren_proxy_claims_total").increment(1);
        match r {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) => {
                // No Warren code: the connection failed (the cell's master is gone, say).
                // The client retries, as during any failover; not an internal error.
                let e = code_of(&s).unwrap_or_else(|| {
                    WarrenError::new(
                        ErrorCode::FailoverInProgress,
                        format!(
                            "the cell did not answer a claim for the session: {}",
                            s.message()
                        ),
                    )
                });
                if e.code == ErrorCode::FailoverInProgress && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                return Err(e);
            }
        }
    }
}

/// Keeps the proxy session alive. Unlike a library session, several KeepAlives may be in
/// flight: a newer one supersedes the held one to carry a higher `ack_seq` (what the
/// clients have acknowledged, [`crate::core::ProxyCore::upstream_ack`]) or to find out
/// whether the master moved. `lease` is the proxy's [`LocalLease`] at the cell; when it
/// runs out unanswered the master is looked for again (the proxy has no jeopardy of its
/// own: its clients' leases are bounded by `lease`, so they starve instead).
///
/// One KeepAlive per batch of events, not one per step (docs/proxy.md "Upstream
/// acknowledgements"): while events a reply delivered wait for the clients, the cell
/// would answer any KeepAlive at once with them again, so none is sent — the one that
/// carries the clients' acknowledgement is also the next long-poll. Only if they take
/// longer than [`AckGather`]'s bound does one go anyway, so that newer events (other
/// writes' invalidations) still reach the proxy.
async fn keepalive_loop(
    shared: &Shared,
    ix: CellIx,
    link: &mut Link,
    lease: &mut LocalLease,
    serial: &mut u64,
) -> Lost {
    let up = shared.cell(ix);
    let up = &*up;
    let mut in_flight = FuturesUnordered::new();
    // The ack carried by the latest KeepAlive sent (`None`: none yet, or numbering
    // restarted): a kick sends only when the clients acknowledged more than that.
    let mut last_ack: Option<u64> = None;
    let mut gather = AckGather::default();
    // Once the local lease has run out and the master was looked up again, it stays run
    // out until a KeepAlive is answered: look again only if none is by this time (not at
    // once, which would drop every KeepAlive before its answer could arrive).
    let mut lapsed_retry: Option<Instant> = None;
    // A cover refresh asked for by a client's first copy (docs/design.md §10, "A dead
    // proxy"): when the last was sent, and whether its answer is still awaited.
    let mut cover_sent: Option<Instant> = None;
    let mut cover_awaited = false;
    // What a refresh sent at `s` covers: about `s` + this (the local lease of a lease one
    // client lease long); a lease ending later needs a refresh sent later.
    let cover_gain = shared.cfg.client_lease.div_f64(1.0 + shared.cfg.drift);
    let send = |link: &Link, ack: u64| {
        let mut client = link.client.clone();
        let req = pb::KeepAliveRequest {
            ctx: Some(link.ctx(None)),
            ack_seq: ack,
            // No jeopardy of its own (above), and a superseded KeepAlive's reply is still
            // awaited here (`in_flight`), so a reply held up in the network still counts.
            jeopardy: false,
        };
        let epoch = link.epoch;
        metrics::counter!("warren_proxy_keepalives_sent_total", "cell" => up.name.clone())
            .increment(1);
        async move {
            let sent = Instant::now();
            // Bounded by the longest a cell holds a KeepAlive (≤ 60 s lease) plus slack.
            let r = tokio::time::timeout(Duration::from_secs(70), client.keep_alive(req)).await;
            (sent, epoch, r)
        }
    };
    loop {
        // When to refresh: keep the local lease at least client_lease + margins ahead, and,
        // while clients hold copies from the cell under a hold-back, the cover within an
        // eighth of a client lease of a full one (asked each time: that changes; a
        // `RefreshCover` effect kicks this loop when it starts).
        let (ack, waiting, keep_ahead, wanted) = shared.with_core(|c| {
            (
                c.upstream_ack(ix),
                c.upstream_waiting(ix),
                c.upstream_keep_ahead(ix, shared.cfg.min_proxy_lease()),
                c.upstream_cover_wanted(ix, Instant::now()),
            )
        });
        if !waiting {
            gather.settled();
            if in_flight.is_empty() {
                last_ack = Some(ack);
                in_flight.push(send(link, ack));
            }
        } else if in_flight.is_empty() {
            // Delivered events wait for clients: the kick that acknowledges them sends
            // the next KeepAlive, or the bound passes.
            gather.start(Instant::now());
        }
        let gathering = gather.until.filter(|_| waiting && in_flight.is_empty());
        let refresh_at = lease
            .end()
            .checked_sub(keep_ahead)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        // The local lease ran out with no answer: the master is gone or unreachable.
        let lease_gone = lapsed_retry.unwrap_or(lease.end());
        // A client's first copy from the cell waits for the cover to pass its lease's end:
        // a superseding KeepAlive, which the cell answers at once (the one it held) with a
        // lease counted from now. One at a time, and not while delivered events wait for
        // clients (the cell extends nothing then); a KeepAlive must be held there to
        // supersede (one always is, but for a moment after a reply).
        let cover_at = wanted
            .filter(|_| !cover_awaited && !waiting && !in_flight.is_empty())
            .map(|want| {
                let at = want.checked_sub(cover_gain).unwrap_or_else(Instant::now);
                cover_sent.map_or(at, |s| at.max(s + COVER_RETRY))
            });
        tokio::select! {
            Some((sent, epoch, r)) = in_flight.next() => {
                let r = match r {
                    Ok(r) => r,
                    Err(_) => Err(tonic::Status::deadline_exceeded("KeepAlive timed out")),
                };
                match r {
                    Ok(reply) => {
                        cover_awaited = false;
                        let reply = reply.into_inner();
                        if reply.epoch != link.epoch {
                            tracing::info!(cell = %up.name, from = link.epoch, to = reply.epoch, "cell master epoch changed");
                            link.epoch = reply.epoch;
                            *serial += 1;
                            link.serial = *serial;
                            shared.with_core(|c| c.upstream_restarted(ix));
                            last_ack = None;
                            up.link.send_replace(Some(link.clone()));
                        } else if epoch != link.epoch {
                            continue; // a late answer from an older epoch
                        }
                        lapsed_retry = None;
                        lease.extend(sent, Duration::from_millis(reply.lease_ms));
                        shared.upstream_reply(ix, lease.end(), &reply.events);
                    }
                    Err(status) => {
                        cover_awaited = false;
                        let e = code_of(&status);
                        match e.as_ref().map(|e| e.code) {
                            Some(ErrorCode::StaleEpoch) => {
                                let epoch = e.map(|e| e.epoch).unwrap_or_default();
                                if epoch > link.epoch {
                                    link.epoch = epoch;
                                    *serial += 1;
                                    link.serial = *serial;
                                    shared.with_core(|c| c.upstream_restarted(ix));
                                    last_ack = None;
                                    up.link.send_replace(Some(link.clone()));
                                }
                            }
                            Some(ErrorCode::SessionExpired) => {
                                tracing::warn!(cell = %up.name, "the proxy session expired at the cell; creating a new one");
                                return Lost::Session;
                            }
                            Some(ErrorCode::PermissionDenied | ErrorCode::InvalidArgument) => {
                                tracing::error!(cell = %up.name, %status, "the cell refused the proxy session");
                                return Lost::Session;
                            }
                            _ => {
                                // Not master any more, unreachable, or timed out: look for
                                // the master again (the session lives on at the new one).
                                tracing::debug!(cell = %up.name, %status, "KeepAlive failed; looking for the master");
                                if !reconnect(shared, ix, link, serial).await {
                                    return Lost::Session;
                                }
                                last_ack = None;
                                gather.poll_now(Instant::now());
                            }
                        }
                    }
                }
            }
            _ = up.kick.notified() => {
                // The clients acknowledged more: this KeepAlive carries it (and, once
                // nothing waits, is the next long-poll the cell holds). Or the first
                // client wants copies from the cell (`Effect::RefreshCover`): this turn
                // of the loop asks `upstream_keep_ahead` again.
                let ack = shared.with_core(|c| c.upstream_ack(ix));
                if Some(ack) > last_ack {
                    last_ack = Some(ack);
                    in_flight.push(send(link, ack));
                }
            }
            _ = up.suspect.notified() => {
                // A forwarded call met another master: supersede, which finds out.
                let ack = shared.with_core(|c| c.upstream_ack(ix));
                last_ack = Some(ack);
                in_flight.push(send(link, ack));
            }
            // Not while gathering: the cell extends no lease while delivered events wait
            // for their acknowledgement, so a refresh then would only be answered at once.
            _ = tokio::time::sleep_until(refresh_at), if in_flight.len() < 2 && !waiting => {
                // `refresh_at` was computed when the loop last woke: the early pace may
                // have ended since (the last client holding copies from the cell left),
                // which wakes nothing. Refresh only if still due.
                let (ack, ahead) = shared.with_core(|c| {
                    (c.upstream_ack(ix), c.upstream_keep_ahead(ix, shared.cfg.min_proxy_lease()))
                });
                if lease.end().checked_sub(ahead).is_some_and(|t| t > Instant::now()) {
                    continue;
                }
                last_ack = Some(ack);
                in_flight.push(send(link, ack));
            }
            _ = tokio::time::sleep_until(cover_at.unwrap_or(lease_gone)), if cover_at.is_some() => {
                let ack = shared.with_core(|c| c.upstream_ack(ix));
                last_ack = Some(ack);
                cover_sent = Some(Instant::now());
                cover_awaited = true;
                metrics::counter!("warren_proxy_cover_refreshes_total", "cell" => up.name.clone())
                    .increment(1);
                in_flight.push(send(link, ack));
            }
            _ = tokio::time::sleep_until(gathering.unwrap_or(lease_gone)), if gathering.is_some() => {
                // Some client is slow to acknowledge: poll once, with what the others
                // acknowledged, so that newer events are not held up behind it.
                gather.lapsed();
                let ack = shared.with_core(|c| c.upstream_ack(ix));
                last_ack = Some(ack);
                in_flight.push(send(link, ack));
            }
            _ = up.unresponsive.notified() => {
                // probe_master: the master does not answer; the KeepAlives it holds may
                // never be answered. Look for the master (the session lives on there).
                in_flight.clear();
                cover_awaited = false;
                if !reconnect(shared, ix, link, serial).await {
                    return Lost::Session;
                }
            }
            _ = tokio::time::sleep_until(lease_gone) => {
                // Let the in-flight ones go; find the master again.
                tracing::info!(cell = %up.name, "the proxy's lease at the cell ran out unanswered; looking for the master");
                in_flight.clear();
                cover_awaited = false;
                if !reconnect(shared, ix, link, serial).await {
                    return Lost::Session;
                }
                last_ack = None;
                gather.poll_now(Instant::now());
                lapsed_retry = Some(Instant::now() + LOCATE_TIMEOUT);
            }
        }
    }
}

/// How long the KeepAlive loop holds its next KeepAlive back for clients to acknowledge
/// what a reply delivered: [`ACK_GATHER_FIRST`], doubling while they keep it waiting up to
/// [`ACK_GATHER_MAX`], back to the first once nothing waits. A client normally
/// acknowledges within a round trip of its own KeepAlive, well inside the first bound;
/// one that is silent until its lease ends (≤ one client lease) costs a KeepAlive every
/// [`ACK_GATHER_MAX`] instead of a KeepAlive per round trip to the cell.
#[derive(Debug, Default)]
struct AckGather {
    /// Until when the next KeepAlive is held back (`None`: not waiting).
    until: Option<Instant>,
    /// The current bound (zero: not yet waited since the last settling).
    wait: Duration,
}

/// The first bound of [`AckGather`].
const ACK_GATHER_FIRST: Duration = Duration::from_millis(50);
/// The longest bound of [`AckGather`]: how late, at most, an event queued for the proxy
/// while a client is slow to acknowledge another one reaches the proxy.
const ACK_GATHER_MAX: Duration = Duration::from_millis(200);

impl AckGather {
    /// Delivered events wait for clients: hold the next KeepAlive back (unless already).
    fn start(&mut self, now: Instant) {
        if self.until.is_none() {
            self.wait = if self.wait.is_zero() {
                ACK_GATHER_FIRST
            } else {
                (self.wait * 2).min(ACK_GATHER_MAX)
            };
            self.until = Some(now + self.wait);
        }
    }

    /// The link moved to a master found again: a KeepAlive goes there at once, even if
    /// delivered events still wait for clients (it finds out whether the session lives).
    fn poll_now(&mut self, now: Instant) {
        self.until = Some(now);
    }

    /// The bound passed: a KeepAlive goes now; the next wait, if any, is longer.
    fn lapsed(&mut self) {
        self.until = None;
    }

    /// Nothing waits for clients any more.
    fn settled(&mut self) {
        self.until = None;
        self.wait = Duration::ZERO;
    }
}

/// Looks for the master again and moves the link there (same session). Gives up (the
/// caller then creates a new session) only after the longest a cell could keep the session
/// without hearing from us.
async fn reconnect(shared: &Shared, ix: CellIx, link: &mut Link, serial: &mut u64) -> bool {
    let up = shared.cell(ix);
    let up = &*up;
    let give_up = Instant::now() + crate::config::LEASE_LIMIT + Duration::from_secs(5);
    let mut pause = Duration::from_millis(20);
    let mut patience = FIRST_PATIENCE;
    loop {
        if let Some((client, addr, epoch, _)) = find_master(up, patience).await {
            link.client = client;
            link.addr = addr;
            if epoch > link.epoch {
                link.epoch = epoch;
                shared.with_core(|c| c.upstream_restarted(ix));
            }
            *serial += 1;
            link.serial = *serial;
            up.link.send_replace(Some(link.clone()));
            return true;
        }
        if Instant::now() > give_up {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_PAUSE);
        patience = (patience * 2).min(LOCATE_TIMEOUT);
    }
}
