//! The proxy's sans-IO core: its client sessions, their leases (nested inside the proxy's
//! own sessions at the cells, docs/design.md §10), their event streams, the shared cache, and the
//! bookkeeping that lets the proxy acknowledge an upstream event only once every client it
//! was relayed to has acknowledged it or expired.
//!
//! Plain code: calls in, [`Wake`]s and [`Effect`]s out, time passed in. The async layer
//! (`service.rs`, `upstream.rs`) holds it under one mutex and executes what it emits.

use crate::cache::{SharedCache, Ticket};
use crate::moved::MovedHandles;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::pb;
use warren_proto::WarrenError;
use warren_server::lease::{self, short_id, HeldKeepAlive, Lease, Sequenced, Tombstones};

/// The core's hash maps and sets. In `sim` builds their hasher has fixed keys, so that
/// their iteration order, which orders some of the core's output, is the same in every
/// run of a seed (docs/reliability.md, "Deterministic simulation"), as in the cell's
/// master; in every other build, std's randomly keyed one.
#[cfg(feature = "sim")]
type HashMap<K, V> = std::collections::HashMap<K, V, FixedState>;
#[cfg(feature = "sim")]
type HashSet<T> = std::collections::HashSet<T, FixedState>;
/// The fixed-key hasher of `sim` builds (SipHash with zero keys).
#[cfg(feature = "sim")]
type FixedState = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;
#[cfg(not(feature = "sim"))]
use std::collections::{HashMap, HashSet};

#[cfg(feature = "sim")]
thread_local! {
    /// The seed of the next core made on this thread ([`set_sim_seed`]).
    static SIM_SEED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Seeds the RNG of the next [`ProxyCore`] made on this thread (client session ids,
/// KeepAlive reply jitter), so that a simulation replays exactly; `None`: from the OS. A
/// simulation runs every host on one thread, and sets it before each start of a proxy.
#[cfg(feature = "sim")]
pub fn set_sim_seed(seed: Option<u64>) {
    SIM_SEED.with(|s| s.set(seed));
}

/// The core's RNG: from the OS, or in `sim` builds from the seed set for this thread.
fn new_rng() -> StdRng {
    #[cfg(feature = "sim")]
    if let Some(seed) = SIM_SEED.with(|s| s.take()) {
        return StdRng::seed_from_u64(seed);
    }
    StdRng::from_entropy()
}

/// A 128-bit client session id.
pub type ClientId = [u8; 16];
/// Index of a cell in the proxy's list of cells.
pub type CellIx = usize;
/// A parked client KeepAlive.
pub type WaiterId = u64;

/// Settings of the client-session table.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Lease granted to client sessions (default 12 s).
    pub client_lease: Duration,
    /// A held client KeepAlive is answered this long before the client's lease ends.
    pub reply_before_end: Duration,
    /// A client lease ends at least this long before the proxy's own session at any cell
    /// where the client has state.
    pub margin: Duration,
    /// A client whose KeepAlive is held because no cell it uses can extend its lease is
    /// expired if that lasts this long past its lease (the cells' claim window).
    pub max_starve: Duration,
    /// Number of cells the proxy fronts at the start (more join as a partition map routes
    /// calls to them).
    pub cells: usize,
    /// With hold-backs promised (docs/design.md §10, "A dead proxy"): the longest lease
    /// granted to any client, [`cover_reach`] — one that a cover refresh sent when it is
    /// granted already covers, so that a client's first copy from a cell waits at most for
    /// that refresh. `None`: the client lease.
    pub cover_reach: Option<Duration>,
}

/// How long a lease a cover refresh sent at the time of the grant covers, for client leases
/// `client_lease` and clock drift `drift` (docs/design.md §10, "A dead proxy"): the cover a
/// KeepAlive reply gives is the local lease of a lease `client_lease` long
/// (`client_lease / (1 + ρ)` from the send time of the KeepAlive it answers), less a slack
/// for how much earlier than the refresh that KeepAlive was sent and how much of its hold
/// the drift rule takes off — about 60 ms with the defaults; the slack is 100 ms, at most a
/// hundredth of the lease. 11.78 s for the default 12 s.
pub fn cover_reach(client_lease: Duration, drift: f64) -> Duration {
    let slack = Duration::from_millis(100).min(client_lease / 100);
    client_lease
        .div_f64(1.0 + drift.max(0.0))
        .saturating_sub(slack)
}

/// Whether a client may keep (cache) an answer from a cell (docs/design.md §7, §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// It may: it is recorded as holding the path, and its invalidations will reach it.
    Yes,
    /// It may not: the path was invalidated since the answer was fetched, is being written
    /// through this proxy, or the proxy has no session at a cell the copy comes from.
    No,
    /// Not yet: its lease ends past the proxy's cover at a cell promised a hold-back, which
    /// happens to a client's first copy from that cell. The cell's KeepAlive loop was asked
    /// for a cover refresh ([`ProxyCore::upstream_cover_wanted`]); asked again once that
    /// reply is applied, the answer is `Yes` (unless the path was invalidated meanwhile).
    AfterRefresh,
}

impl Keep {
    fn and(self, other: Keep) -> Keep {
        match (self, other) {
            (Keep::No, _) | (_, Keep::No) => Keep::No,
            (Keep::AfterRefresh, _) | (_, Keep::AfterRefresh) => Keep::AfterRefresh,
            _ => Keep::Yes,
        }
    }
}

/// How long a cell's KeepAlive loop keeps a cover refresh asked for
/// ([`ProxyCore::upstream_cover_wanted`]); a read waiting for one waits no longer
/// (`upstream.rs`, `COVER_WAIT`).
pub const COVER_WANTED_FOR: Duration = Duration::from_secs(2);

/// Something a client session knows about one of its handles.
#[derive(Clone, Debug)]
pub struct HandleInfo {
    pub cell: CellIx,
    pub path: String,
    pub instance: u64,
    pub intent: u32,
    /// A sequencer was set on it: its reads must go to the cell, which checks it.
    pub sequencer: bool,
    /// The cell failed over since the handle was last used there: its next use must reach
    /// the cell, which recreates it (docs/design.md §9 step 8; also how an ephemeral node is claimed
    /// back before the clean-up deletes it). Never served from the cache meanwhile.
    pub unconfirmed: bool,
}

/// An upstream event whose acknowledgement waits for clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Relay {
    cell: CellIx,
    /// Which upstream session generation the seq belongs to (a new session or epoch
    /// restarts upstream numbering).
    generation: u64,
    seq: u64,
}

struct Queued {
    event: pb::Event,
    relay: Option<Relay>,
    /// When `relay` stops waiting for the client's acknowledgement even without it: the
    /// end of the lease the client had when a KeepAlive in jeopardy let it grow past
    /// unacknowledged events ([`ProxyCore::bound_relays_by_lease`]).
    relay_until: Option<Instant>,
}

impl Sequenced for Queued {
    fn seq(&self) -> u64 {
        self.event.seq
    }
}

struct Client {
    secret: [u8; 16],
    principal: String,
    /// The epoch this proxy shows this client. Starts at 1; a client adopted from another
    /// proxy gets the epoch it knew + 1, so its event numbering restarts.
    epoch: u64,
    /// Its lease here, event stream and held KeepAlive (held with no answer time while no
    /// cell it uses lets its lease grow: lease nesting).
    lease: Lease<Queued>,
    /// Cells where the client has registered (has or had handles, locks, ephemeral opens).
    cells: BTreeSet<CellIx>,
    handles: HashMap<Vec<u8>, HandleInfo>,
    /// Paths this client may have cached (we gave it a cacheable answer).
    cached: HashSet<String>,
    /// Cells promised a hold-back whose cover bounds this client's lease: those it was
    /// given something cacheable from, or asked for it (docs/design.md §10, "A dead
    /// proxy"). An idle client, or one that only holds handles there, keeps full leases.
    /// Kept while the client lives here (counted in [`Upstream::covered`]).
    covers: BTreeSet<CellIx>,
    /// The last extension of its lease was held back by a cell it uses (lease nesting):
    /// if its lease runs out meanwhile, that is the cell's failover, not the client going
    /// silent, so it is kept until `max_starve` past its lease (its KeepAlives come and go
    /// while it is in jeopardy) instead of expiring at once.
    starved: bool,
    /// When it last called (or a KeepAlive of its ended): a client that stays with this
    /// proxy through a jeopardy calls again at once; one that went to another proxy does
    /// not.
    last_heard: Instant,
}

#[derive(Default)]
struct Upstream {
    /// The proxy's local lease at this cell (send time + granted / (1 + ρ)); `None` while
    /// it has no session there.
    live_until: Option<Instant>,
    /// The hold-back promised to the cell (`SessionContext.hold_back_ms`), divided by
    /// (1 + ρ): client leases and answers from the shared cache end this long before
    /// `live_until` ([`ProxyCore::cover`]). `None`: nothing promised; the margin applies.
    hold_back: Option<Duration>,
    /// Clients with this cell in their [`Client::covers`]: while there are any (and a
    /// hold-back was promised), the proxy refreshes its cover early
    /// ([`ProxyCore::upstream_keep_ahead`]).
    covered: usize,
    /// A cover refresh asked for by a client's first copy from the cell: the lease end it
    /// must reach, and until when it is asked ([`ProxyCore::upstream_cover_wanted`]).
    wanted: Option<(Instant, Instant)>,
    generation: u64,
    /// Highest upstream event seq received in this generation.
    highest: u64,
    /// Upstream seq → relays not yet acknowledged by clients.
    outstanding: BTreeMap<u64, usize>,
}

/// `upstream[cell]`, made on first use.
fn up_of(upstream: &mut Vec<Upstream>, cell: CellIx) -> &mut Upstream {
    if cell >= upstream.len() {
        upstream.resize_with(cell + 1, Upstream::default);
    }
    &mut upstream[cell]
}

/// A KeepAlive answer for a client.
pub type KeepAliveReply = lease::KeepAliveReply<pb::Event>;

/// Delivered to a parked client KeepAlive.
pub type Wake = (WaiterId, Result<KeepAliveReply, WarrenError>);

/// Work for the async layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// End the client session at these cells (`expired`: it failed, release with
    /// lock-delay).
    EndAtCells {
        client: ClientId,
        secret: [u8; 16],
        principal: String,
        cells: Vec<CellIx>,
        expired: bool,
    },
    /// The acknowledgement the proxy can send upstream at this cell grew.
    AckUpstream(CellIx),
    /// A client is the first to want copies from this cell: the proxy refreshes its cover
    /// there early from now on ([`ProxyCore::upstream_keep_ahead`]); its KeepAlive loop
    /// is to look again (and refreshes at once if the cover is already short).
    RefreshCover(CellIx),
    /// A reshard moved the node of the client's handle `handle` to the cell called
    /// `cell` (a `SLOT_MOVED` event): claim the client session there, so that the events
    /// of its handles that moved reach it, and send the handle's calls there from now on
    /// (docs/proxy.md "After a reshard").
    FollowMoved {
        client: ClientId,
        handle: Vec<u8>,
        cell: String,
        /// The cell that told (where the client's proxy session was its parent).
        from: CellIx,
    },
}

#[derive(Default)]
pub struct Output {
    pub wakes: Vec<Wake>,
    pub effects: Vec<Effect>,
}

/// Either answered now or parked.
pub enum Reply<T> {
    Done(T),
    Wait(WaiterId),
}

/// Counts for `/metrics` and `/status`.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Counts {
    pub client_sessions: usize,
    pub held_keepalives: usize,
    pub starving: usize,
    pub cached_paths: usize,
    pub cached_bytes: usize,
    /// Redirects held for handles whose node moved in a reshard ([`MovedHandles`]).
    pub moved_handles: usize,
}

/// What an answer from the client's point of view of the session check is.
pub enum Known {
    Yes,
    /// The session is not known here: a client that comes from another proxy (adopt it).
    Unknown,
}

/// The client sessions of one proxy.
pub struct ProxyCore {
    cfg: CoreConfig,
    rng: StdRng,
    now: Instant,
    clients: HashMap<ClientId, Client>,
    upstream: Vec<Upstream>,
    /// path → clients that may have cached it.
    cachers: HashMap<String, HashSet<ClientId>>,
    /// path → the cells whose cacheable answers for it the proxy cached or passed on (a
    /// directory's from its child anchor's cell, an absence from the cell that answered
    /// `NOT_FOUND`): what a fail-over of one of them flushes. Kept while the path is in
    /// the shared cache or has cachers.
    origins: HashMap<String, BTreeSet<CellIx>>,
    /// path → writes of it in flight for which the proxy asked the cell not to invalidate
    /// it ([`ProxyCore::begin_own_write`]): while any is, nothing of the path is cached
    /// here or handed out as cacheable.
    writing: HashMap<String, u32>,
    pub cache: SharedCache,
    /// Handles whose node moved to another cell in a reshard, and where to (a shortcut for
    /// routing their calls; docs/proxy.md "After a reshard").
    pub moved: MovedHandles,
    /// Deadlines to look at in `tick`: (when, client). Entries may be stale; each is
    /// re-checked against the client's state when it falls due.
    timers: BTreeSet<(Instant, ClientId)>,
    /// Clients whose KeepAlive is held waiting for a cell to extend their lease.
    starving: HashSet<ClientId>,
    /// Clients that ended here recently, so a late call gets `SESSION_EXPIRED` rather than
    /// being adopted as a client from another proxy: id → when to forget.
    ended: Tombstones<ClientId, ()>,
    /// Clients another proxy claimed from this one recently, with the epoch this proxy had
    /// shown them: a call that still names that epoch (or an older one) was sent before
    /// the client moved and arrives late, and must not adopt it back (see [`ProxyCore::check`]).
    moved_away: Tombstones<ClientId, u64>,
    waiters: HashMap<WaiterId, ClientId>,
    next_waiter: WaiterId,
    /// While a KeepAlive reply from a cell with a hold-back is applied
    /// ([`ProxyCore::upstream_reply`]): the clients whose held KeepAlive an event of it
    /// would answer, answered once its lease is applied too.
    deferred: Option<Vec<ClientId>>,
    out: Output,
    /// Totals for metrics.
    pub keepalives_received: u64,
    pub invalidations_relayed: u64,
    pub events_relayed: u64,
}

impl ProxyCore {
    pub fn new(cfg: CoreConfig, now: Instant) -> Self {
        let upstream = (0..cfg.cells).map(|_| Upstream::default()).collect();
        ProxyCore {
            cfg,
            rng: new_rng(),
            now,
            clients: HashMap::default(),
            upstream,
            cachers: HashMap::default(),
            origins: HashMap::default(),
            writing: HashMap::default(),
            cache: SharedCache::default(),
            moved: MovedHandles::default(),
            timers: BTreeSet::new(),
            starving: HashSet::default(),
            ended: Tombstones::default(),
            moved_away: Tombstones::default(),
            waiters: HashMap::default(),
            next_waiter: 1,
            deferred: None,
            out: Output::default(),
            keepalives_received: 0,
            invalidations_relayed: 0,
            events_relayed: 0,
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn take_output(&mut self) -> Output {
        std::mem::take(&mut self.out)
    }

    /// The proxy's state at `cell`, made on first use (cells join when the partition map
    /// first routes a call to them).
    fn up(&mut self, cell: CellIx) -> &mut Upstream {
        up_of(&mut self.upstream, cell)
    }

    pub fn counts(&self) -> Counts {
        Counts {
            client_sessions: self.clients.len(),
            held_keepalives: self.waiters.len(),
            starving: self.starving.len(),
            cached_paths: self.cache.len(),
            cached_bytes: self.cache.bytes(),
            moved_handles: self.moved.len(),
        }
    }

    /// Whether client session `id` is this proxy's (`sim` builds only: the simulation asks
    /// whether a client still needs to be adopted).
    #[cfg(feature = "sim")]
    pub fn has_client(&self, id: &ClientId) -> bool {
        self.clients.contains_key(id)
    }

    /// The leases as the core sees them, in seconds left as of its last event (its own
    /// clock), for the simulation's proxy trace: its local lease at each cell, and each
    /// client's lease, starved mark and held KeepAlive (`sim` builds only).
    #[cfg(feature = "sim")]
    pub fn trace_leases(&self) -> String {
        let now = self.now;
        let left = |t: Instant| t.saturating_duration_since(now).as_secs_f64();
        let mut out: Vec<String> = self
            .upstream
            .iter()
            .enumerate()
            .map(|(i, u)| format!("cell{i} live {:?}", u.live_until.map(left)))
            .collect();
        let mut clients: Vec<_> = self.clients.iter().collect();
        clients.sort_by_key(|(id, _)| **id);
        for (id, c) in clients {
            out.push(format!(
                "{} lease {:.3}{}{}{}",
                short_id(id),
                left(c.lease.end),
                if c.lease.end < now { " (ended)" } else { "" },
                if c.starved { " starved" } else { "" },
                match c.lease.held() {
                    Some(h) => format!(" held until {:?}", h.until.map(left)),
                    None => String::new(),
                }
            ));
        }
        out.join("; ")
    }

    // ------------------------------------------------------------------ sessions

    /// `CreateSession` at the proxy: the session lives here; cells learn of it when it
    /// first opens something there.
    pub fn create_session(
        &mut self,
        principal: &str,
        now: Instant,
    ) -> (ClientId, [u8; 16], Duration, u64) {
        self.now = now;
        let id: ClientId = self.rng.gen();
        let secret: [u8; 16] = self.rng.gen();
        let lease = self
            .lease_for_cells(&id, &BTreeSet::new(), &BTreeSet::new(), now)
            .map_or(self.full_lease(), |l| l.0);
        self.insert_client(
            id,
            secret,
            principal.to_string(),
            1,
            now + lease,
            BTreeSet::new(),
        );
        (id, secret, lease, 1)
    }

    fn insert_client(
        &mut self,
        id: ClientId,
        secret: [u8; 16],
        principal: String,
        epoch: u64,
        lease_end: Instant,
        cells: BTreeSet<CellIx>,
    ) {
        self.clients.insert(
            id,
            Client {
                secret,
                principal,
                epoch,
                lease: Lease::new(lease_end),
                cells,
                handles: HashMap::default(),
                cached: HashSet::default(),
                covers: BTreeSet::new(),
                starved: false,
                last_heard: self.now,
            },
        );
        self.timers.insert((lease_end, id));
    }

    /// Checks the session part of a client call. `Ok(Known::Unknown)` for a session this
    /// proxy has never seen (the caller adopts it: [`ProxyCore::adopt`]).
    pub fn check(
        &mut self,
        id: &ClientId,
        secret: &[u8; 16],
        epoch: u64,
        now: Instant,
    ) -> Result<Known, WarrenError> {
        self.now = now;
        let Some(c) = self.clients.get(id) else {
            if self.ended.get(id, now).is_some() {
                return Err(WarrenError::session_expired(format!(
                    "session {} is unknown or has expired",
                    short_id(id)
                )));
            }
            // A call sent to this proxy before its client moved to another (held in a
            // partition, say) names the epoch this proxy showed it; the other proxy has
            // shown it a higher one. Adopting the client back on such a call would end its
            // session at the proxy it moved to (the simulation of the whole deployment,
            // seeds 5885 and 5187). A client that comes back names the higher epoch.
            // Not SESSION_EXPIRED: the session lives on there, and a library that sees
            // that code ends its session. NOT_MASTER naming no master sends the call (if
            // the client still waits for it) to look for its proxy again, with its
            // current epoch.
            if self.moved_away.get(id, now).is_some_and(|e| epoch <= *e) {
                return Err(WarrenError::new(
                    warren_proto::ErrorCode::NotMaster,
                    format!(
                        "session {} moved to another proxy after this call was sent (it names \
                         epoch {epoch}); the session goes on there",
                        short_id(id)
                    ),
                ));
            }
            return Ok(Known::Unknown);
        };
        if &c.secret != secret {
            return Err(WarrenError::permission_denied(format!(
                "wrong secret for session {}",
                short_id(id)
            )));
        }
        self.clients.get_mut(id).expect("checked").last_heard = now;
        let c = &self.clients[id];
        if epoch != c.epoch {
            if epoch < c.epoch {
                return Err(WarrenError::stale_epoch(c.epoch, epoch));
            }
            return Err(WarrenError::invalid_argument(format!(
                "request names master epoch {epoch}, but this proxy's epoch for the session is {}",
                c.epoch
            )));
        }
        if now > c.lease.end && c.lease.held().is_none() && !self.starving_in_time(c, now) {
            self.end_client(*id, true);
            return Err(WarrenError::session_expired(format!(
                "session {} has expired (its lease ran out)",
                short_id(id)
            )));
        }
        Ok(Known::Yes)
    }

    /// The principal and secret of a live client (for forwarding on its behalf).
    pub fn identity(&self, id: &ClientId) -> Option<(String, [u8; 16])> {
        self.clients
            .get(id)
            .map(|c| (c.principal.clone(), c.secret))
    }

    /// Adopts a client session that comes from another proxy, once the cells where it had
    /// state (`cells`) moved it to this proxy. It sees a higher epoch and a fail-over event
    /// (it flushes its cache and recreates its handles). Returns its new epoch.
    pub fn adopt(
        &mut self,
        id: ClientId,
        secret: [u8; 16],
        principal: String,
        known_epoch: u64,
        cells: BTreeSet<CellIx>,
        now: Instant,
    ) -> u64 {
        self.now = now;
        if let Some(c) = self.clients.get(&id) {
            return c.epoch; // adopted concurrently by another call
        }
        let epoch = known_epoch.saturating_add(1).max(1);
        // Within the cover of the cells it uses, as any lease here. A cell that holds it
        // back (its upstream session lags, as in a storm of adoptions, or has none) makes
        // the client starved, not silent: its next call (the KeepAlive the client retries
        // with the new epoch) must find it kept until `max_starve` past this lease, not
        // expire it — the cells already moved it here (docs/proxy.md "Proxy failover").
        let (lease, held_back) = self
            .lease_for_cells(&id, &cells, &BTreeSet::new(), now)
            .unwrap_or((Duration::ZERO, true));
        let lease_end = now + lease;
        self.insert_client(id, secret, principal, epoch, lease_end, cells);
        if held_back {
            self.clients.get_mut(&id).expect("inserted").starved = true;
        }
        self.push_event(
            id,
            pb::Event {
                r#type: pb::EventType::MasterFailover as i32,
                ..Default::default()
            },
            None,
        );
        tracing::debug!(session = %short_id(&id), epoch, "adopted a session from another proxy");
        epoch
    }

    /// The clients with state at `cell` that are still this proxy's, to claim onto a new
    /// proxy session there: those whose lease runs, and those starved by a cell that
    /// still call here. Not one whose lease ended otherwise (this proxy was frozen or cut
    /// off, and the client has gone to another proxy, which claimed it: claiming it back
    /// would take it away from there) nor a starved one that no longer calls here.
    pub fn clients_at(&self, cell: CellIx, now: Instant) -> Vec<(ClientId, [u8; 16], String)> {
        self.clients
            .iter()
            .filter(|(_, c)| c.cells.contains(&cell))
            .filter(|(_, c)| {
                now < c.lease.end
                    || (self.starving_in_time(c, now)
                        && (c.lease.held().is_some() || now < c.last_heard + self.cfg.client_lease))
            })
            .map(|(id, c)| (*id, c.secret, c.principal.clone()))
            .collect()
    }

    /// A cell says the client's session there has ended: the client loses its session.
    pub fn expire_client(&mut self, id: &ClientId) {
        self.end_client(*id, true);
    }

    /// Forgets a client that another proxy claimed (the cell said so).
    pub fn claimed_away(&mut self, id: &ClientId) {
        if let Some(c) = self.clients.get(id) {
            let until = self.now + self.cfg.max_starve;
            self.moved_away.bury(*id, c.epoch, until);
            tracing::info!(session = %short_id(id), "session claimed by another proxy; dropping it");
            self.remove_client(*id, None);
        }
    }

    /// Until when the proxy's session at `cell` covers client leases and answers from the
    /// shared cache (docs/design.md §10, "A dead proxy"): its local lease there minus the
    /// hold-back it promised the cell (or, with none promised, minus the margin). The cell
    /// stops waiting for the proxy's acknowledgement of an invalidation only after the
    /// cover of every reply sent before it has ended. `None`: no session there.
    fn cover(&self, cell: CellIx) -> Option<Instant> {
        let u = self.upstream.get(cell)?;
        let back = u
            .hold_back
            .map_or(self.cfg.margin, |h| h.max(self.cfg.margin));
        Some(u.live_until?.checked_sub(back).unwrap_or(self.now))
    }

    /// The lease-nesting bound at `cell` (docs/proxy.md "Lease nesting"): the proxy's local
    /// lease there minus the margin. A client with state there never holds a lease past
    /// it. `None`: no session there.
    fn nest(&self, cell: CellIx) -> Option<Instant> {
        let u = self.upstream.get(cell)?;
        Some(
            u.live_until?
                .checked_sub(self.cfg.margin)
                .unwrap_or(self.now),
        )
    }

    /// The longest lease a client is granted: the client lease, or, with hold-backs
    /// promised, [`cover_reach`] of it (see [`CoreConfig::cover_reach`]).
    fn full_lease(&self) -> Duration {
        self.cfg
            .cover_reach
            .map_or(self.cfg.client_lease, |r| r.min(self.cfg.client_lease))
    }

    /// How much a client lease cut short by a hold-back cover is shortened further, up to:
    /// the proxy refreshes its cover every so often (see
    /// [`ProxyCore::upstream_keep_ahead`]), and leases cut to the same cover would
    /// otherwise all end, and all be renewed, at the same instant. Also how far the cover
    /// may lag a full lease before it is refreshed: so a client with copies holds at least
    /// `L_c − 2 · L_c / 8`, 9 s of the default 12 s, after each renewal. (It was `L_c / 4`,
    /// which let such a lease be as short as 6 s, half the lease: a client cut off from its
    /// proxy for 2.4 s lost a 4 s lease in the simulation, seeds 282 and 887.)
    fn cover_spread(&self) -> Duration {
        self.cfg.client_lease / 8
    }

    /// The longest lease the proxy may grant now to a client with state at `cells` and
    /// copies bounded by the covers of `covers`: up to the client lease, never past the
    /// proxy's own session at any of `cells` (lease nesting) nor past the cover of any of
    /// `covers` (a hold-back), and whether a cell held it back (it is not answering).
    /// `None` when one of `cells` has no live session (no extension at all).
    fn lease_for_cells(
        &self,
        id: &ClientId,
        cells: &BTreeSet<CellIx>,
        covers: &BTreeSet<CellIx>,
        now: Instant,
    ) -> Option<(Duration, bool)> {
        let (lease, held_back, spread_it) = self.cap_for_cells(cells, covers, now)?;
        Some((self.spread_cut(id, lease, spread_it), held_back))
    }

    /// [`ProxyCore::lease_for_cells`] before the random cut: the lease, whether a cell
    /// held it back, and whether a hold-back cover shortened it.
    fn cap_for_cells(
        &self,
        cells: &BTreeSet<CellIx>,
        covers: &BTreeSet<CellIx>,
        now: Instant,
    ) -> Option<(Duration, bool, bool)> {
        let full = self.full_lease();
        let spread = self.cover_spread();
        let (mut lease, mut held_back, mut spread_it) = (full, false, false);
        for &cell in cells {
            let cap = self.nest(cell)?.saturating_duration_since(now);
            held_back |= cap < full;
            lease = lease.min(cap);
        }
        // The covers bound only a client that may hold copies from there. A cell that
        // promises nothing (or where the session was lost, which flushed its copies)
        // bounds nothing here.
        for &cell in covers {
            if self
                .upstream
                .get(cell)
                .is_none_or(|u| u.hold_back.is_none())
            {
                continue;
            }
            let Some(cover) = self.cover(cell) else {
                continue;
            };
            let cap = cover.saturating_duration_since(now);
            // While a client holds copies from the cell the cover is refreshed to within
            // `spread` of a full lease; only a cover lagging behind that means the cell
            // is not answering.
            held_back |= cap < full.saturating_sub(spread * 2);
            spread_it |= cap < full;
            lease = lease.min(cap);
        }
        Some((lease, held_back, spread_it))
    }

    /// Cuts a lease a hold-back cover shortened by the client's own offset below
    /// [`ProxyCore::cover_spread`] (from its random id, so spread evenly). Fixed per
    /// client, so that a later cover always makes a later lease end: every refresh of the
    /// cover lets every client's lease grow, and none is starved by the cut.
    fn spread_cut(&self, id: &ClientId, lease: Duration, spread_it: bool) -> Duration {
        let spread = self.cover_spread().as_micros() as u64;
        if !spread_it || spread == 0 {
            return lease;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&id[..8]);
        let offset = Duration::from_micros(u64::from_le_bytes(b) % spread);
        lease.saturating_sub(offset)
    }

    /// Client `KeepAlive`: acknowledges up to `ack_seq`, supersedes the outstanding one,
    /// extends the lease (within the nesting bound, and only once everything delivered
    /// was acknowledged — rule (b)), and answers now or parks.
    pub fn keepalive(
        &mut self,
        id: &ClientId,
        ack_seq: u64,
        now: Instant,
    ) -> Result<Reply<KeepAliveReply>, WarrenError> {
        self.keepalive_with(id, ack_seq, false, now)
    }

    /// [`ProxyCore::keepalive`] with the request's `jeopardy` mark: the client's local
    /// lease has ended, so it is answered at once if its lease here can run on for more
    /// than a moment (it may already: a reply that extended it can have been lost on the
    /// way). One that cannot is held as before, until a cell lets it grow: answering with
    /// a lease about to end would only flip the client between safe and jeopardy.
    pub fn keepalive_with(
        &mut self,
        id: &ClientId,
        ack_seq: u64,
        jeopardy: bool,
        now: Instant,
    ) -> Result<Reply<KeepAliveReply>, WarrenError> {
        self.now = now;
        self.keepalives_received += 1;
        let Some(c) = self.clients.get(id) else {
            return Err(WarrenError::session_expired("the session has expired"));
        };
        c.lease.check_ack(ack_seq)?;
        self.acknowledge(id, ack_seq);
        if let Some(held) = self.clients.get_mut(id).and_then(|c| c.lease.take_held()) {
            self.starving.remove(id);
            self.answer(*id, held);
        }
        // Held until shortly before the end of the lease the client was last told, not of
        // one extended now: the client counts only what a reply says, and a lease that
        // grew meanwhile (a hold-back cover moved between the last reply and this
        // KeepAlive) would hold it past the end of its own (docs/design.md §6: the master
        // extends the lease when it answers, as here in `reply`).
        let c = &self.clients[id];
        let hold_until = c
            .lease
            .reply_due(now, self.cfg.reply_before_end, &mut self.rng);
        if c.lease.has_events() {
            // In jeopardy the client has emptied its cache, and its lease may grow although
            // a reply that delivered events never reached it (rule (b) would otherwise keep
            // it from growing until a repeat of them got through). As at a cell
            // (`keepalive_holding_back`): the upstream acknowledgements waiting on its
            // events wait no longer than the lease as it was, whether it acknowledges first
            // or not; not at once, as this KeepAlive may be an old one delivered late.
            if jeopardy && !c.lease.all_delivered_acknowledged() {
                self.bound_relays_by_lease(id);
                self.extend_with(id, now, true);
            }
            return Ok(Reply::Done(self.reply(id, now)));
        }
        let until = match hold_until {
            Some(t) if !jeopardy => Some(t),
            _ => {
                // The lease it knows ends within reply_before_end (or it is in jeopardy):
                // answer now if a cell lets it grow by more than that, so that the client
                // is not answered again at once; otherwise hold the KeepAlive until a cell
                // lets it grow (or the client gives up and goes into jeopardy).
                self.extend(id, now);
                if self.clients[id].lease.end > now + self.cfg.reply_before_end * 2 {
                    return Ok(Reply::Done(self.reply(id, now)));
                }
                self.starving.insert(*id);
                None
            }
        };
        let w = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.insert(w, *id);
        if let Some(t) = until {
            self.timers.insert((t, *id));
        } else {
            let end = self.clients[id].lease.end + self.cfg.max_starve;
            self.timers.insert((end, *id));
        }
        let c = self.clients.get_mut(id).expect("checked");
        c.lease.hold(HeldKeepAlive {
            waiter: w,
            until,
            received: now,
        });
        Ok(Reply::Wait(w))
    }

    /// Whether a client whose lease has run out is still within `max_starve` of it because
    /// a cell held its lease back (see [`Client::starved`]).
    fn starving_in_time(&self, c: &Client, now: Instant) -> bool {
        c.starved && now < c.lease.end + self.cfg.max_starve
    }

    fn extend(&mut self, id: &ClientId, now: Instant) {
        self.extend_with(id, now, false);
    }

    /// [`ProxyCore::extend`]; `anyway`: although events it delivered are unacknowledged
    /// (a client in jeopardy: see `keepalive_with`).
    fn extend_with(&mut self, id: &ClientId, now: Instant, anyway: bool) {
        let Some(c) = self.clients.get(id) else {
            return;
        };
        if !anyway && !c.lease.all_delivered_acknowledged() {
            return;
        }
        let lease = self.cap_for_cells(&c.cells, &c.covers, now);
        let capped = lease.is_none_or(|(_, held_back, _)| held_back);
        let lease = lease.map(|(l, _, spread_it)| self.spread_cut(id, l, spread_it));
        let c = self.clients.get_mut(id).expect("checked");
        // Starved only if a cell held the lease back while it ran: a lease that had ended
        // before (the proxy itself stalled) does not make the client starved.
        if !capped {
            c.starved = false;
        } else if now <= c.lease.end {
            c.starved = true;
        }
        let Some(lease) = lease else {
            return;
        };
        if now + lease > c.lease.end {
            c.lease.end = now + lease;
            self.timers.insert((c.lease.end, *id));
        }
    }

    /// Builds a reply now. Rule (b): if everything delivered so far was acknowledged, the
    /// lease is extended before this reply delivers anything new, so the client holds a
    /// full lease (within the nesting bound) in which to act and acknowledge.
    fn reply(&mut self, id: &ClientId, received: Instant) -> KeepAliveReply {
        let now = self.now;
        self.extend(id, now);
        let c = self.clients.get_mut(id).expect("live client");
        let epoch = c.epoch;
        c.lease.reply(received, epoch, |q| q.event.clone())
    }

    fn answer(&mut self, id: ClientId, held: HeldKeepAlive) {
        self.waiters.remove(&held.waiter);
        let reply = self.reply(&id, held.received);
        self.out.wakes.push((held.waiter, Ok(reply)));
    }

    /// The client's parked KeepAlive went away (its connection closed, or it timed out).
    pub fn cancel(&mut self, w: WaiterId) {
        let Some(id) = self.waiters.remove(&w) else {
            return;
        };
        self.starving.remove(&id);
        if let Some(c) = self.clients.get_mut(&id) {
            c.last_heard = c.last_heard.max(self.now);
            if c.lease.cancel(w) {
                self.timers.insert((c.lease.end, id));
            }
        }
    }

    fn acknowledge(&mut self, id: &ClientId, ack_seq: u64) {
        let Some(c) = self.clients.get_mut(id) else {
            return;
        };
        let Some(done) = c.lease.acknowledge(ack_seq) else {
            return;
        };
        for r in done.into_iter().filter_map(|q| q.relay) {
            self.relay_done(r);
        }
    }

    /// `CloseSession` from the client: ends it here and at its cells.
    pub fn close_session(&mut self, id: &ClientId, now: Instant) {
        self.now = now;
        self.end_client(*id, false);
    }

    fn end_client(&mut self, id: ClientId, expired: bool) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if !c.cells.is_empty() {
            self.out.effects.push(Effect::EndAtCells {
                client: id,
                secret: c.secret,
                principal: c.principal.clone(),
                cells: c.cells.iter().copied().collect(),
                expired,
            });
        }
        if expired {
            tracing::info!(session = %short_id(&id), "client session expired");
        }
        let why = WarrenError::session_expired(if expired {
            "the session expired"
        } else {
            "the session was closed"
        });
        self.remove_client(id, Some(why));
        // Remember it for a while so that a late call is told it expired instead of
        // being taken for a client arriving from another proxy.
        let until = self.now + self.cfg.max_starve;
        self.ended.bury(id, (), until);
    }

    fn remove_client(&mut self, id: ClientId, why: Option<WarrenError>) {
        let Some(c) = self.clients.remove(&id) else {
            return;
        };
        self.starving.remove(&id);
        for &cell in &c.covers {
            let u = self.up(cell);
            u.covered = u.covered.saturating_sub(1);
        }
        if let Some(held) = c.lease.held() {
            self.waiters.remove(&held.waiter);
            let why = why.unwrap_or_else(|| {
                WarrenError::session_expired("the session moved to another proxy")
            });
            self.out.wakes.push((held.waiter, Err(why)));
        }
        for p in &c.cached {
            if let Some(set) = self.cachers.get_mut(p) {
                set.remove(&id);
                if set.is_empty() {
                    self.cachers.remove(p);
                    if !self.cache.contains(p) {
                        self.origins.remove(p);
                    }
                }
            }
        }
        for q in c.lease.into_events() {
            if let Some(r) = q.relay {
                self.relay_done(r);
            }
        }
    }

    // ------------------------------------------------------------------ time

    /// Answers KeepAlives held long enough, expires clients whose lease ran out.
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
        while let Some(&(t, id)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            self.release_bounded_relays(&id);
            let Some(c) = self.clients.get_mut(&id) else {
                continue;
            };
            if let Some(held) = c.lease.take_due(now) {
                self.answer(id, held);
                continue;
            }
            let end = c.lease.end;
            match c.lease.held().map(|h| h.until) {
                Some(None) if now > end + self.cfg.max_starve => {
                    self.end_client(id, true);
                }
                Some(_) if now >= end => self.release_relays(&id),
                Some(_) => {}
                None if now > end => {
                    let c = &self.clients[&id];
                    if self.starving_in_time(c, now) {
                        let until = end + self.cfg.max_starve;
                        self.timers.insert((until, id));
                        self.release_relays(&id);
                    } else {
                        self.end_client(id, true);
                    }
                }
                None => {}
            }
        }
        self.ended.sweep(now);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    // ------------------------------------------------------------------ events

    fn push_event(&mut self, id: ClientId, mut event: pb::Event, relay: Option<Relay>) -> bool {
        let Some(c) = self.clients.get_mut(&id) else {
            return false;
        };
        event.client_session = Vec::new();
        c.lease.push(|seq| {
            event.seq = seq;
            Queued {
                event,
                relay,
                relay_until: None,
            }
        });
        if let Some(r) = relay {
            *up_of(&mut self.upstream, r.cell)
                .outstanding
                .entry(r.seq)
                .or_default() += 1;
        }
        if let Some(deferred) = &mut self.deferred {
            if c.lease.held().is_some() {
                deferred.push(id);
            }
        } else if let Some(held) = c.lease.take_held() {
            self.starving.remove(&id);
            self.answer(id, held);
        }
        if self.clients[&id].lease.end <= self.now {
            self.release_relays(&id);
        }
        true
    }

    /// A client whose lease has ended cannot answer from a cache (it is in jeopardy, its
    /// cache emptied): as for a session that let its lease expire (docs/design.md §7), what was
    /// relayed to it no longer holds up the acknowledgement upstream — otherwise a client
    /// starved by a cell failover, or gone to another proxy meanwhile, would hold up that
    /// cell's recovery until this proxy's session there expired. The events stay queued
    /// for it.
    fn release_relays(&mut self, id: &ClientId) {
        let Some(c) = self.clients.get_mut(id) else {
            return;
        };
        let done: Vec<Relay> = c
            .lease
            .events_mut()
            .filter_map(|q| q.relay.take())
            .collect();
        for r in done {
            self.relay_done(r);
        }
    }

    /// The upstream acknowledgements waiting on client `id`'s queued events stop waiting
    /// at the end of its lease as it is now (at once if that has passed): a client in
    /// jeopardy has emptied its cache, and its lease until then is the longest in which it
    /// may still have used a copy those events invalidate.
    fn bound_relays_by_lease(&mut self, id: &ClientId) {
        let Some(c) = self.clients.get_mut(id) else {
            return;
        };
        let end = c.lease.end;
        let mut any = false;
        for q in c.lease.events_mut().filter(|q| q.relay.is_some()) {
            q.relay_until = Some(q.relay_until.map_or(end, |u| u.min(end)));
            any = true;
        }
        if any {
            self.timers.insert((end, *id));
            self.release_bounded_relays(id);
        }
    }

    /// Releases client `id`'s relays whose bound ([`ProxyCore::bound_relays_by_lease`])
    /// has passed.
    fn release_bounded_relays(&mut self, id: &ClientId) {
        let now = self.now;
        let Some(c) = self.clients.get_mut(id) else {
            return;
        };
        let done: Vec<Relay> = c
            .lease
            .events_mut()
            .filter(|q| q.relay_until.is_some_and(|u| u <= now))
            .filter_map(|q| q.relay.take())
            .collect();
        for r in done {
            self.relay_done(r);
        }
    }

    fn relay_done(&mut self, r: Relay) {
        let u = self.up(r.cell);
        if u.generation != r.generation {
            return;
        }
        if let Some(n) = u.outstanding.get_mut(&r.seq) {
            *n -= 1;
            if *n == 0 {
                u.outstanding.remove(&r.seq);
                self.out.effects.push(Effect::AckUpstream(r.cell));
            }
        }
    }

    /// What the proxy may acknowledge upstream at `cell`: every event up to the first one
    /// still waiting for a client.
    pub fn upstream_ack(&self, cell: CellIx) -> u64 {
        let Some(u) = self.upstream.get(cell) else {
            return 0;
        };
        match u.outstanding.first_key_value() {
            Some((seq, _)) => seq - 1,
            None => u.highest,
        }
    }

    /// Whether events the cell delivered to the proxy at `cell` still wait for clients'
    /// acknowledgements ([`ProxyCore::upstream_ack`] is below the highest seq received).
    /// While they do, a KeepAlive to the cell is answered at once with them again (they
    /// are still queued there), so the proxy's KeepAlive loop holds its next one back
    /// until the clients have acknowledged (docs/proxy.md "Upstream acknowledgements").
    pub fn upstream_waiting(&self, cell: CellIx) -> bool {
        self.upstream
            .get(cell)
            .is_some_and(|u| !u.outstanding.is_empty())
    }

    /// A new session (or a new master epoch) at `cell`: upstream numbering restarts.
    pub fn upstream_restarted(&mut self, cell: CellIx) {
        let u = self.up(cell);
        u.generation += 1;
        u.highest = 0;
        u.outstanding.clear();
    }

    /// The proxy lost its session at `cell` (expired there): no client using it may be
    /// promised more lease until a new one exists. What it cached from that cell is
    /// flushed: the cell stopped sending it invalidations when the session ended (and may
    /// have ended it before its cover ran out, if all its clients there moved to another
    /// proxy), so nothing of it may be served under a new session.
    pub fn upstream_lost(&mut self, cell: CellIx) {
        let u = self.up(cell);
        u.live_until = None;
        u.hold_back = None;
        u.wanted = None;
        self.upstream_restarted(cell);
        let paths = self.flush_cell(cell, None);
        if paths > 0 {
            tracing::info!(
                cell,
                paths,
                "lost the session at a cell; flushed what was cached from it"
            );
        }
    }

    /// Drops what the proxy cached from `cell` and invalidates it at the clients that may
    /// have cached it (their acknowledgements counted in `relay`, if any). Returns how many
    /// paths it dropped.
    fn flush_cell(&mut self, cell: CellIx, relay: Option<Relay>) -> usize {
        let paths: HashSet<String> = self
            .origins
            .iter()
            .filter(|(_, cells)| cells.contains(&cell))
            .map(|(p, _)| p.clone())
            .collect();
        let flushed = paths.len();
        self.cache.flush_where(|p| paths.contains(p));
        for p in paths {
            self.relay_invalidation(&p, relay);
            self.origins.remove(&p);
        }
        flushed
    }

    /// The proxy promised `cell` to hold back its client leases and its shared cache
    /// `hold_back` (already divided by 1 + ρ) before its local lease there ends
    /// (docs/design.md §10, "A dead proxy"). Set when its session there is created.
    pub fn upstream_hold_back(&mut self, cell: CellIx, hold_back: Duration) {
        self.up(cell).hold_back = Some(hold_back);
    }

    /// Whether the proxy's current session at `cell` promised it a hold-back.
    pub fn upstream_holds_back(&self, cell: CellIx) -> bool {
        self.upstream
            .get(cell)
            .is_some_and(|u| u.hold_back.is_some())
    }

    /// How far ahead of its local lease's end at `cell` the proxy refreshes it (a
    /// superseding KeepAlive): at least `default`, and with a hold-back, while some client
    /// holds copies from the cell ([`Client::covers`]), early enough that the cover stays
    /// within [`ProxyCore::cover_spread`] of a full client lease. Asked again whenever the
    /// KeepAlive loop wakes: [`Effect::RefreshCover`] wakes it when that starts.
    pub fn upstream_keep_ahead(&self, cell: CellIx, default: Duration) -> Duration {
        match self.upstream.get(cell) {
            Some(Upstream {
                hold_back: Some(h),
                covered,
                ..
            }) if *covered > 0 => default.max(*h + self.cfg.client_lease - self.cover_spread()),
            _ => default,
        }
    }

    /// Whether client `id` may keep a copy of what came from `cells`: its lease ends by
    /// the cover of each of them. From now on its lease stays within the cover of each
    /// that promised a hold-back ([`Client::covers`]; the proxy then refreshes that cover
    /// early). A lease granted before may reach past a cover (a client's first copy from
    /// the cell): then [`Keep::AfterRefresh`], and the cell's KeepAlive loop is asked for a
    /// cover refresh that reaches the lease's end ([`ProxyCore::upstream_cover_wanted`]),
    /// which one refresh sent now does, since no lease is longer than
    /// [`CoreConfig::cover_reach`] (docs/design.md §10, "A dead proxy").
    fn lease_within_cover(
        &mut self,
        id: &ClientId,
        cells: impl IntoIterator<Item = CellIx>,
    ) -> Keep {
        let Some(c) = self.clients.get_mut(id) else {
            return Keep::No;
        };
        let (end, now) = (c.lease.end, self.now);
        let mut keep = Keep::Yes;
        for cell in cells {
            let u = up_of(&mut self.upstream, cell);
            if u.hold_back.is_some() && c.covers.insert(cell) {
                u.covered += 1;
                if u.covered == 1 {
                    self.out.effects.push(Effect::RefreshCover(cell));
                }
            }
            let back = u
                .hold_back
                .map_or(self.cfg.margin, |h| h.max(self.cfg.margin));
            // As `ProxyCore::cover` (the borrow of the client rules out calling it).
            let cover = u.live_until.map(|t| t.checked_sub(back).unwrap_or(now));
            keep = keep.and(match cover {
                Some(t) if end <= t => Keep::Yes,
                // A refresh of the cover can reach the lease's end: ask for one.
                Some(_) if u.hold_back.is_some() => {
                    let want = u.wanted.map_or(end, |(w, _)| w.max(end));
                    u.wanted = Some((want, now + COVER_WANTED_FOR));
                    self.out.effects.push(Effect::RefreshCover(cell));
                    Keep::AfterRefresh
                }
                _ => Keep::No,
            });
        }
        keep
    }

    /// The lease end a client waiting for its first copy from `cell` needs the proxy's
    /// cover there to reach ([`Keep::AfterRefresh`]), if the cover falls short of it and
    /// the request is recent: the cell's KeepAlive loop then sends a superseding KeepAlive
    /// (a cover refresh), whose answer moves the cover past it. `None`: nothing to do.
    pub fn upstream_cover_wanted(&mut self, cell: CellIx, now: Instant) -> Option<Instant> {
        let cover = self.cover(cell);
        let u = self.upstream.get_mut(cell)?;
        match u.wanted {
            Some((want, until)) if now < until && cover.is_some_and(|c| c < want) => Some(want),
            _ => {
                u.wanted = None;
                None
            }
        }
    }

    /// Whether the proxy may answer a read of `path` from its shared cache now: the cover
    /// of its session at `cell` (the handle's) and at every cell the cached copy came
    /// from has not ended. After that the cell may have stopped waiting for the proxy's
    /// acknowledgement of an invalidation the proxy has not received.
    pub fn cache_covered(&self, path: &str, cell: CellIx, now: Instant) -> bool {
        let covered = |c: CellIx| self.cover(c).is_some_and(|t| now < t);
        covered(cell)
            && self
                .origins
                .get(path)
                .is_none_or(|cells| cells.iter().all(|&c| covered(c)))
    }

    /// A KeepAlive reply from `cell`: the proxy's local lease there is now `live_until`,
    /// and `events` came with it. At a cell promised a hold-back the events are applied
    /// first (docs/design.md §10, "A dead proxy": no client gets a lease from this reply
    /// without the invalidations it carries, and the shared cache drops them before the
    /// cover grows), but the held KeepAlives they would answer are answered after the
    /// lease, so that they carry both (a client in jeopardy is safe again in the same
    /// answer that brings the events, as a cell's own reply would). Elsewhere the lease
    /// goes first, then the events.
    pub fn upstream_reply(
        &mut self,
        cell: CellIx,
        live_until: Instant,
        events: &[pb::Event],
        now: Instant,
    ) {
        if !self.upstream_holds_back(cell) {
            self.upstream_lease(cell, live_until, now);
            if !events.is_empty() {
                self.upstream_events(cell, events, now);
            }
            return;
        }
        self.deferred = Some(Vec::new());
        if !events.is_empty() {
            self.upstream_events(cell, events, now);
        }
        self.upstream_lease(cell, live_until, now);
        for id in self.deferred.take().unwrap_or_default() {
            if let Some(held) = self.clients.get_mut(&id).and_then(|c| c.lease.take_held()) {
                self.starving.remove(&id);
                self.answer(id, held);
            }
        }
    }

    /// The proxy's local lease at `cell` is now `live_until`. Clients held waiting for it
    /// get their KeepAlive answered.
    pub fn upstream_lease(&mut self, cell: CellIx, live_until: Instant, now: Instant) {
        self.now = now;
        let u = self.up(cell);
        let grew = u.live_until.is_none_or(|t| live_until > t);
        u.live_until = Some(u.live_until.map_or(live_until, |t| t.max(live_until)));
        if !grew || self.starving.is_empty() {
            return;
        }
        let waiting: Vec<ClientId> = self
            .starving
            .iter()
            .filter(|id| {
                self.clients
                    .get(*id)
                    .is_some_and(|c| c.cells.contains(&cell) || c.covers.contains(&cell))
            })
            .copied()
            .collect();
        for id in waiting {
            self.extend(&id, now);
            let c = &self.clients[&id];
            if c.lease.end > now + self.cfg.reply_before_end {
                self.starving.remove(&id);
                if let Some(held) = self.clients.get_mut(&id).and_then(|c| c.lease.take_held()) {
                    self.answer(id, held);
                }
            }
        }
    }

    /// The proxy's local lease at `cell`, if it has a session there.
    pub fn upstream_live_until(&self, cell: CellIx) -> Option<Instant> {
        self.upstream.get(cell).and_then(|u| u.live_until)
    }

    /// Events from the proxy's session at `cell` (already de-duplicated by seq here).
    /// Tagged ones go to their client; `INVALIDATE` empties the shared cache and is relayed
    /// to every client that may have cached the path; an untagged `MASTER_FAILOVER` (the
    /// cell failed over: invalidations may have been lost) flushes what the proxy cached
    /// from it and invalidates it at the clients. Each is acknowledged upstream once the
    /// clients it went to acknowledged it or expired.
    pub fn upstream_events(&mut self, cell: CellIx, events: &[pb::Event], now: Instant) {
        self.now = now;
        let highest = self.up(cell).highest;
        let mut sorted: Vec<&pb::Event> = events.iter().filter(|e| e.seq > highest).collect();
        sorted.sort_by_key(|e| e.seq);
        sorted.dedup_by_key(|e| e.seq);
        for e in sorted {
            let u = self.up(cell);
            u.highest = e.seq;
            let relay = Relay {
                cell,
                generation: u.generation,
                seq: e.seq,
            };
            // Hold the seq while relaying so that an ack cannot pass it half-way.
            *u.outstanding.entry(e.seq).or_default() += 1;
            let kind = pb::EventType::try_from(e.r#type).unwrap_or(pb::EventType::Unspecified);
            if !e.client_session.is_empty() {
                if let Ok(id) = ClientId::try_from(e.client_session.as_slice()) {
                    if kind == pb::EventType::SessionClaimed {
                        self.claimed_away(&id);
                    } else {
                        if kind == pb::EventType::SlotMoved && self.clients.contains_key(&id) {
                            self.out.effects.push(Effect::FollowMoved {
                                client: id,
                                handle: e.handle.clone(),
                                cell: e.cell.clone(),
                                from: cell,
                            });
                        }
                        if kind == pb::EventType::MasterFailover {
                            self.unconfirm_handles(&id, cell);
                        }
                        if self.push_event(id, e.clone(), Some(relay)) {
                            self.events_relayed += 1;
                        }
                    }
                }
            } else if kind == pb::EventType::Invalidate {
                self.cache.invalidate(&e.path);
                self.relay_invalidation(&e.path, Some(relay));
                // Nothing of it is cached any more, here or at a client.
                self.origins.remove(&e.path);
            } else if kind == pb::EventType::MasterFailover {
                tracing::info!(cell, "a cell failed over; flushing what was cached from it");
                self.flush_cell(cell, Some(relay));
            }
            self.relay_done(relay);
        }
    }

    /// A cell failed over: the client's handles there are recreated on their next use,
    /// which must therefore go to the cell rather than be answered from the cache.
    fn unconfirm_handles(&mut self, id: &ClientId, cell: CellIx) {
        if let Some(c) = self.clients.get_mut(id) {
            for h in c.handles.values_mut().filter(|h| h.cell == cell) {
                h.unconfirmed = true;
            }
        }
    }

    /// The cell accepted a call on this handle: it exists there again.
    pub fn confirm_handle(&mut self, id: &ClientId, token: &[u8]) {
        if let Some(h) = self.handle_mut(id, token) {
            h.unconfirmed = false;
        }
    }

    fn relay_invalidation(&mut self, path: &str, relay: Option<Relay>) {
        let Some(set) = self.cachers.remove(path) else {
            return;
        };
        for id in set {
            if let Some(c) = self.clients.get_mut(&id) {
                c.cached.remove(path);
            }
            let event = pb::Event {
                r#type: pb::EventType::Invalidate as i32,
                path: path.to_string(),
                ..Default::default()
            };
            if self.push_event(id, event, relay) {
                self.invalidations_relayed += 1;
            }
        }
    }

    // ------------------------------------------------------------------ handles and cache

    /// A cell registered the client (an `Open` was forwarded there): from now on its lease
    /// is nested inside the proxy's session at that cell.
    pub fn registered(&mut self, id: &ClientId, cell: CellIx) {
        if let Some(c) = self.clients.get_mut(id) {
            c.cells.insert(cell);
        }
    }

    /// The cells where the client has registered.
    pub fn cells_of(&self, id: &ClientId) -> Vec<CellIx> {
        self.clients
            .get(id)
            .map(|c| c.cells.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn is_registered(&self, id: &ClientId, cell: CellIx) -> bool {
        self.clients
            .get(id)
            .is_some_and(|c| c.cells.contains(&cell))
    }

    pub fn add_handle(&mut self, id: &ClientId, token: Vec<u8>, info: HandleInfo) {
        if let Some(c) = self.clients.get_mut(id) {
            c.handles.insert(token, info);
        }
    }

    pub fn handle(&self, id: &ClientId, token: &[u8]) -> Option<&HandleInfo> {
        self.clients.get(id)?.handles.get(token)
    }

    fn handle_mut(&mut self, id: &ClientId, token: &[u8]) -> Option<&mut HandleInfo> {
        self.clients.get_mut(id)?.handles.get_mut(token)
    }

    /// The client's handle `token` lives in `cell` now (its node moved there in a
    /// reshard): a fail-over of that cell, not the old one, is what unconfirms it.
    pub fn handle_moved(&mut self, id: &ClientId, token: &[u8], cell: CellIx) {
        if let Some(h) = self.handle_mut(id, token) {
            h.cell = cell;
        }
    }

    pub fn remove_handle(&mut self, id: &ClientId, token: &[u8]) {
        if let Some(c) = self.clients.get_mut(id) {
            c.handles.remove(token);
        }
    }

    pub fn sequencer_set(&mut self, id: &ClientId, token: &[u8]) {
        if let Some(h) = self.handle_mut(id, token) {
            h.sequencer = true;
        }
    }

    /// Records that `id` was given a cacheable answer for `path` fetched from `cell` under
    /// `ticket`, if it is still valid; returns whether the client may cache it. The proxy
    /// holds cache interest for `path` at `cell` from now on (a fail-over of `cell`
    /// flushes it). [`ProxyCore::keep_fetched`], with "not yet" as "no".
    pub fn note_fetched(
        &mut self,
        id: &ClientId,
        path: &str,
        ticket: Ticket,
        cell: CellIx,
    ) -> bool {
        self.keep_fetched(id, path, ticket, cell) == Keep::Yes
    }

    /// [`ProxyCore::note_fetched`], saying why not: [`Keep::AfterRefresh`] when only a
    /// lease past a hold-back cover stands in the way (the caller asks again after the
    /// cover refresh this asked for, with the same ticket: an invalidation of the path
    /// meanwhile makes it [`Keep::No`]).
    pub fn keep_fetched(
        &mut self,
        id: &ClientId,
        path: &str,
        ticket: Ticket,
        cell: CellIx,
    ) -> Keep {
        // Already stale (or being written): no copy, and no cover refresh to wait for.
        if self.writing.contains_key(path) || !self.cache.still_valid(path, ticket) {
            return Keep::No;
        }
        let mut keep = self.lease_within_cover(id, Some(cell));
        // A copy that comes from a cell it did not come from before: whoever holds the
        // path already must hold it within that cell's cover too, or the answer is not
        // kept (here or by the client).
        if !self.origins.get(path).is_some_and(|o| o.contains(&cell)) {
            let holders: Vec<ClientId> = self
                .cachers
                .get(path)
                .map(|s| s.iter().filter(|h| *h != id).copied().collect())
                .unwrap_or_default();
            for h in holders {
                keep = keep.and(self.lease_within_cover(&h, Some(cell)));
            }
        }
        if keep != Keep::Yes {
            return keep;
        }
        let keep = self.keep_cacher(id, path, Some(ticket));
        if keep == Keep::Yes {
            self.origins
                .entry(path.to_string())
                .or_default()
                .insert(cell);
        }
        keep
    }

    /// Client `id` is about to write `path` (`SetContents`) through this proxy. The
    /// writer's library drops its own copy when it writes, whatever the outcome, so the
    /// proxy forgets it: no invalidation of this path need reach the writer (a cell spares
    /// a writer talking to it directly too). If no other client of the proxy may hold a
    /// copy either, the proxy drops its own, keeps the path uncacheable until
    /// [`ProxyCore::end_own_write`] and returns true: the write may then ask the cell not to
    /// invalidate the proxy (`proxy_dropped_copies`), since nothing here could be stale.
    /// Otherwise it returns false, and the cell invalidates the proxy as usual, which
    /// relays to the clients that cached the path.
    pub fn begin_own_write(&mut self, id: &ClientId, path: &str) -> bool {
        if let Some(set) = self.cachers.get_mut(path) {
            set.remove(id);
            if set.is_empty() {
                self.cachers.remove(path);
            }
        }
        if let Some(c) = self.clients.get_mut(id) {
            c.cached.remove(path);
        }
        if self.cachers.contains_key(path) {
            return false;
        }
        self.cache.invalidate(path);
        self.origins.remove(path);
        *self.writing.entry(path.to_string()).or_default() += 1;
        true
    }

    /// The write begun with [`ProxyCore::begin_own_write`] was answered (or failed): the
    /// path may be cached again, but not from an answer fetched before now, which may
    /// predate the write.
    pub fn end_own_write(&mut self, path: &str) {
        if let Some(n) = self.writing.get_mut(path) {
            *n -= 1;
            if *n == 0 {
                self.writing.remove(path);
            }
        }
        self.cache.invalidate(path);
    }

    /// Whether `id` is recorded as a cacher of `path` already, so that
    /// [`ProxyCore::note_cacher`] would add nothing (a cache hit checks this without
    /// copying the path).
    pub fn is_cacher(&self, id: &ClientId, path: &str) -> bool {
        self.clients
            .get(id)
            .is_some_and(|c| c.cached.contains(path))
            && self.cachers.get(path).is_some_and(|s| s.contains(id))
    }

    /// Records that `id` was given a cacheable answer for `path`, if the answer (fetched
    /// under `ticket`) is still valid; returns whether the client may cache it.
    /// [`ProxyCore::keep_cacher`], with "not yet" as "no".
    pub fn note_cacher(&mut self, id: &ClientId, path: &str, ticket: Option<Ticket>) -> bool {
        self.keep_cacher(id, path, ticket) == Keep::Yes
    }

    /// [`ProxyCore::note_cacher`], saying why not ([`Keep`]): a copy from the shared cache
    /// that the client may keep once the cover refresh asked for is applied is
    /// [`Keep::AfterRefresh`].
    pub fn keep_cacher(&mut self, id: &ClientId, path: &str, ticket: Option<Ticket>) -> Keep {
        if self.writing.contains_key(path) {
            return Keep::No;
        }
        if let Some(t) = ticket {
            if !self.cache.still_valid(path, t) {
                return Keep::No;
            }
        }
        let origins: Vec<CellIx> = self
            .origins
            .get(path)
            .map(|cells| cells.iter().copied().collect())
            .unwrap_or_default();
        let keep = self.lease_within_cover(id, origins);
        if keep != Keep::Yes {
            return keep;
        }
        let Some(c) = self.clients.get_mut(id) else {
            return Keep::No;
        };
        c.cached.insert(path.to_string());
        self.cachers
            .entry(path.to_string())
            .or_default()
            .insert(*id);
        Keep::Yes
    }
}

#[cfg(test)]
mod tests;
