//! Warren's deterministic simulation (docs/reliability.md, "Deterministic simulation"): a
//! cell, a proxy and several warren-client sessions in one process, on turmoil's simulated
//! network and paused tokio clock — some clients at the cell, the others through the
//! proxy (warren-proxy: KeepAlive absorption, lease nesting and hold-back, its shared
//! cache and invalidation relay, failover) — with message delays, partitions between each
//! client and its server and between the proxy and the cell, network pauses, crashes and
//! restarts of the cell host (its in-memory store survives, as a durable one would) and of
//! the proxy host, and crashes of client hosts — every choice drawn from one seed. Every
//! client call is recorded in a `warren_history` history and judged by all of its
//! checkers. A run replays exactly from its seed ([`EXACT_REPLAY`]; with the proxy too: its
//! core's RNG takes a seed from the run, `warren_proxy::core::set_sim_seed`).
//!
//! - [`net`]: turmoil streams as the cell's and the proxy's connections and the clients'
//!   dials (the seams `warren_cell::run_incoming`, `warren_proxy::run_incoming` and
//!   `warren_client::transport::sim`);
//! - [`workload`]: what each client does, and the final reader;
//! - [`record`]: the history, the fenced resource, reachability and coverage of a run;
//! - this file: one run ([`run`]) — the hosts, the fault schedule, the report.

pub mod deployment;
pub mod net;
pub mod record;
pub mod workload;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use record::{nanos, Coverage, Record, GRACE, LEASE, RPC_TIMEOUT};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use warren_cell::core::CoreConfig;
use warren_cell::store::memory::MemoryStore;
use warren_cell::CellOptions;
use warren_history::{Op, Outcome, Ret, SessionBounds};
use workload::{CELL_HOST, CELL_PORT, PROXY_HOST, PROXY_PORT};

/// Whether runs replay exactly: only in builds with `--cfg tokio_unstable` (set by the
/// repository's `.cargo/config.toml`),
/// where turmoil seeds each host's tokio runtime, whose `select!` otherwise picks among
/// ready branches at random. Without it a seed still gives the same faults and choices,
/// but the interleaving can differ (docs/reliability.md, "Deterministic simulation").
pub const EXACT_REPLAY: bool = cfg!(tokio_unstable);

/// A bug planted for a run, to show the checker that owns it catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planted {
    /// The cell grants an exclusive lock that is held, at the same generation
    /// (`warren_cell::planted::set_double_grant`).
    DoubleGrant,
    /// The cell acknowledges one write in 3 and drops it
    /// (`warren_cell::planted::set_drop_write_every`).
    DroppedWrite,
    /// The client caches skip their first invalidation: a stale cached read
    /// (`warren_client::planted::set_skip_invalidations`).
    StaleCache,
}

impl Planted {
    /// Its name in `WARREN_SIM_PLANTED`.
    pub fn name(self) -> &'static str {
        match self {
            Planted::DoubleGrant => "double-grant",
            Planted::DroppedWrite => "dropped-write",
            Planted::StaleCache => "stale-cache",
        }
    }

    /// The planted bug `name` names; the error lists the names there are.
    pub fn parse(name: &str) -> Result<Planted, String> {
        [
            Planted::DoubleGrant,
            Planted::DroppedWrite,
            Planted::StaleCache,
        ]
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| {
            format!(
                "{name:?} is not a planted bug; the ones there are: double-grant, \
                 dropped-write, stale-cache"
            )
        })
    }

    fn set(planted: Option<Planted>) {
        warren_cell::planted::set_double_grant(planted == Some(Planted::DoubleGrant));
        warren_cell::planted::set_drop_write_every(if planted == Some(Planted::DroppedWrite) {
            3
        } else {
            0
        });
        warren_client::planted::set_skip_invalidations(u32::from(
            planted == Some(Planted::StaleCache),
        ));
    }
}

/// What one run simulates.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Workload clients, each on its own host.
    pub clients: usize,
    /// Operations per client.
    pub rounds: usize,
    /// A bug to plant for this run.
    pub planted: Option<Planted>,
    /// Whether there is a proxy, some clients going through it ([`SimConfig::proxied`]).
    pub proxy: bool,
    /// Samples the proxy's `/status` every 250 ms of simulated time into
    /// [`Report::proxy_trace`] (a diagnostic: not in the event log, so not in the digest).
    pub trace_proxy: bool,
    /// The whole deployment ([`deployment`]): a meta cell and two data cells, each a master
    /// and a standby over a fenced store, instead of one cell.
    pub deployment: bool,
}

impl SimConfig {
    /// The run CI and the longer runs use for `seed`: 3 clients of 12 operations, 1 or 2
    /// of them through the proxy.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            clients: 3,
            rounds: 12,
            planted: None,
            proxy: true,
            trace_proxy: false,
            deployment: false,
        }
    }

    /// [`SimConfig::new`] on the whole deployment ([`deployment`]): a meta cell and two
    /// data cells with standbys, the proxy routing by the map.
    pub fn deployment(seed: u64) -> Self {
        SimConfig {
            deployment: true,
            ..SimConfig::new(seed)
        }
    }

    /// [`SimConfig::new`] without the proxy: every client at the cell, as every run was
    /// before the proxy joined (these runs draw every choice as they did then, so the
    /// seeds of the bugs found then replay the same runs).
    pub fn direct(seed: u64) -> Self {
        SimConfig {
            proxy: false,
            ..SimConfig::new(seed)
        }
    }

    /// Which clients go through the proxy: none without it; with it and two clients or
    /// more, between one and all but one of them (at least one each way), chosen from the
    /// seed; a lone client flips a coin.
    pub fn proxied(&self) -> Vec<bool> {
        if !self.proxy {
            return vec![false; self.clients];
        }
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x5052_4F58_5930_0000);
        let k = if self.clients >= 2 {
            rng.gen_range(1..self.clients)
        } else {
            rng.gen_range(0..=self.clients)
        };
        let mut order: Vec<usize> = (0..self.clients).collect();
        order.shuffle(&mut rng);
        let mut proxied = vec![false; self.clients];
        for &i in &order[..k] {
            proxied[i] = true;
        }
        proxied
    }
}

/// What a run did and found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub planted: Option<Planted>,
    /// A hash of the ordered event log: equal for two runs of one seed.
    pub digest: u64,
    pub log: Vec<String>,
    /// Every violation: each failing checker's (`checker: explanation and slice`), and
    /// liveness failures.
    pub violations: Vec<String>,
    /// The checkers that reported violations (`locks`, `lost_writes`…), and `liveness`.
    pub violated: BTreeSet<String>,
    /// The history checkers' report (operations by kind and outcome, each verdict, the
    /// slices), as text.
    pub checked: String,
    /// The faults applied, in order.
    pub faults: Vec<String>,
    /// Operations recorded.
    pub operations: usize,
    /// The recorded history (`History::to_json_lines` writes it for `warren_history`).
    pub history: warren_history::History,
    /// Simulated time the run took.
    pub simulated: Duration,
    pub coverage: Coverage,
    /// Whether the run had a proxy ([`SimConfig::proxy`]).
    pub proxy: bool,
    /// Whether some clients went through the proxy.
    pub proxied: bool,
    /// With [`SimConfig::trace_proxy`]: the proxy's state every 250 ms (simulated).
    pub proxy_trace: Vec<String>,
    /// The clients that went through the proxy.
    pub proxied_clients: Vec<String>,
    /// Whether the run was of the whole deployment ([`SimConfig::deployment`]).
    pub deployment: bool,
}

impl Report {
    /// How to replay this run.
    pub fn replay_hint(&self) -> String {
        let planted = match self.planted {
            Some(p) => format!("WARREN_SIM_PLANTED={} ", p.name()),
            None => String::new(),
        };
        let planted = if self.deployment {
            format!("WARREN_SIM_DEPLOYMENT=1 {planted}")
        } else if self.proxy {
            planted
        } else {
            format!("WARREN_SIM_DIRECT=1 {planted}")
        };
        format!(
            "replay with: WARREN_SIM_SEED={} {planted}cargo test -p warren-sim --test seeds replay_one_seed -- --nocapture{}",
            self.seed,
            if self.proxied {
                " (a proxied run: the same faults and choices, perhaps not the same interleaving)"
            } else {
                ""
            }
        )
    }
}

/// How long a run may take in simulated time before it is a liveness failure.
pub(crate) const SIM_LIMIT: Duration = Duration::from_secs(300);
/// How long after the faults are healed the final reader may take.
pub(crate) const FINAL_PATIENCE: Duration = Duration::from_secs(60);
/// The network's tick: time advances this much per step.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// A fault in force, undone at a given simulated time.
enum Undo {
    /// A held link between `host` and `peer` (a partition, or a pause of the cell's
    /// network), of fault kind `kind`.
    Release {
        host: String,
        peer: &'static str,
        kind: &'static str,
    },
    Restart,
    RestartProxy,
    Latency,
    /// A crashed client: nothing to undo; its kind stays in force for a lease and a grace
    /// period (while its session and lock are still being given up).
    Aftermath(&'static str),
}

impl Undo {
    fn kind(&self) -> &'static str {
        match self {
            Undo::Release { kind, .. } | Undo::Aftermath(kind) => kind,
            Undo::Restart => "cell-crash",
            Undo::RestartProxy => "proxy-crash",
            Undo::Latency => "delay",
        }
    }
}

/// Whether the link between `host` and `peer` is held now.
/// Crashes `host` as a machine dies: what its sockets would send as they close (FINs,
/// RSTs) never leaves it, so its open links to `peers` are cut across the crash.
pub(crate) fn crash_silently(sim: &mut turmoil::Sim<'_>, host: &str, peers: &[&str]) {
    for p in peers {
        sim.partition(*p, host);
    }
    sim.crash(host);
    for p in peers {
        sim.repair(*p, host);
    }
}

fn busy(undo: &[(Duration, Undo)], host: &str, peer: &str) -> bool {
    undo.iter().any(
        |(_, u)| matches!(u, Undo::Release { host: h, peer: p, .. } if h == host && *p == peer),
    )
}

/// The deployment's session parameters for the session checker: the longest lease granted
/// to a session, and a cut-off from a live master or proxy shorter than the lease less
/// the KeepAlive reply's 1 s margin must not expire a session (docs/reliability.md,
/// "History checkers").
///
/// One set of bounds serves both kinds of session. A client at the cell holds the master's
/// lease ([`LEASE`]); a client of the proxy holds the proxy's client lease, which the run
/// sets to the same [`LEASE`] (and with the hold-back the proxy grants no more than its
/// cover reach, a little less), so the longest lease is [`LEASE`] either way. The proxy
/// answers a held KeepAlive the same 1 s before the client's lease ends as the master does
/// (`keepalive_reply_before_end`, its default), so a client cut off for less than
/// `LEASE − 1 s` has its reply in time from either (but see below for a client of the
/// proxy with copies from the cell). The proxy's own session at the cell has
/// a longer lease ([`PROXY_LEASE`], which must nest the client lease with its margins),
/// but no client's session is judged by it: the history records the leases the clients
/// were granted. A proxied client counts as cut off while its link to the proxy is held,
/// the proxy is down, the proxy's link to the cell is held or the cell is down, and while
/// the proxy has no session at a master that is recovering from a fail-over, which refuses
/// new sessions until a crashed proxy's restored session has ended ([`run`],
/// `proxy_refused`). With this deployment's timings (grace 4 s < proxy lease
/// 8 s) a client of such a proxy then expires while everything is up; with the defaults
/// (grace 45 s > proxy lease 20 s) it would not (docs/reliability.md, "Deterministic
/// simulation").
///
/// A client of the proxy that holds copies from the cell holds leases cut short by the
/// proxy's cover there (the hold-back, on by default): the cover lags a full lease by up
/// to an eighth of it before the proxy refreshes it, and each lease is cut by the client's
/// own offset below another eighth (docs/proxy.md, "A dead proxy"). So the `proxied`
/// clients are judged by a cut-off of three quarters of the lease less the same 1 s.
pub fn session_bounds<'a>(proxied: impl IntoIterator<Item = &'a String>) -> SessionBounds {
    let proxied_gap = nanos(LEASE * 3 / 4 - Duration::from_secs(1));
    SessionBounds {
        grace_ns: nanos(GRACE),
        rho: 0.01,
        max_lease_ns: nanos(LEASE),
        tolerated_gap_ns: nanos(LEASE - Duration::from_secs(1)),
        tolerated_gap_of: proxied
            .into_iter()
            .map(|c| (c.clone(), proxied_gap))
            .collect(),
    }
}

/// The lease the cell grants the proxy's session: longer than the proxy's client lease
/// ([`LEASE`]) + its lease margin (1 s) + its reply margin (1 s), as the proxy requires.
pub const PROXY_LEASE: Duration = Duration::from_secs(8);
/// How long the cell keeps the client sub-sessions of a lost proxy session for another
/// proxy session to claim, and how long the proxy holds a client in jeopardy by a cell
/// failover (they should match): past a client's lease and grace period.
pub const CLAIM_WINDOW: Duration = Duration::from_secs(10);

/// The proxy's configuration in the simulation: in front of the one cell, client leases
/// of [`LEASE`], forwarded calls waiting at most a call timeout for a failing-over cell,
/// the hold-back on (the default).
fn proxy_config() -> warren_proxy::ProxyConfig {
    let mut cfg = warren_proxy::ProxyConfig::new(
        format!("0.0.0.0:{PROXY_PORT}"),
        vec![warren_proxy::CellAddrs {
            name: "sim".into(),
            addrs: vec![format!("{CELL_HOST}:{CELL_PORT}")],
        }],
    );
    cfg.id = PROXY_HOST.into();
    // Plaintext on a simulated network, as the cell is served.
    cfg.tls.insecure = true;
    cfg.client_lease = LEASE;
    cfg.forward_patience = RPC_TIMEOUT;
    cfg.max_starve = CLAIM_WINDOW;
    cfg
}

/// The deployment's name (its cells' and its partition map's).
pub const DEPLOYMENT: &str = "sim";
/// Slots of the whole deployment's map ([`deployment`]).
pub const SLOTS: u32 = 16;

/// Runs one seed. Runs on the calling thread (turmoil runs every host there).
pub fn run(cfg: &SimConfig) -> Report {
    if cfg.deployment {
        return deployment::run(cfg);
    }
    net::install_connector();
    Planted::set(cfg.planted);
    warren_client::transport::sim::set_salt_seed(Some(cfg.seed));
    let proxied = cfg.proxied();
    let rec = Rc::new(RefCell::new(Record {
        history: warren_history::Recorder::new(cfg.seed.to_string()),
        ..Record::default()
    }));
    observe_keepalives(&rec);
    let mut sim = turmoil::Builder::new()
        .rng_seed(cfg.seed)
        .simulation_duration(SIM_LIMIT)
        .tick_duration(TICK)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .build();

    // The cell: its store outlives crashes of its host, as a durable store would.
    let store = Arc::new(MemoryStore::new());
    let mut core = CoreConfig::new("sim", DEPLOYMENT);
    core.lease = LEASE;
    core.proxy_lease = PROXY_LEASE;
    core.claim_window = CLAIM_WINDOW;
    let mut opts = CellOptions::new(core);
    opts.seed = Some(cfg.seed);
    opts.advertise = Some(format!("{CELL_HOST}:{CELL_PORT}"));
    // Each start of the cell draws its master's RNG (session ids among others) from its own
    // seed: a restart that drew the same ids again would hand out session ids it gave
    // before, as no real master does.
    let incarnation = std::cell::Cell::new(0u64);
    // The running master, to see whether it is recovering from a fail-over (see the
    // reachability below); `None` while the cell is down or starting.
    let master: Arc<std::sync::Mutex<Option<warren_cell::CellHandle>>> = Arc::default();
    let master_slot = master.clone();
    sim.host(CELL_HOST, move || {
        let store = store.clone();
        let slot = master_slot.clone();
        let mut opts = opts.clone();
        incarnation.set(incarnation.get() + 1);
        opts.seed = opts
            .seed
            .map(|s| s ^ incarnation.get().wrapping_mul(0x9E37_79B9_7F4A_7C15));
        async move {
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", CELL_PORT)).await?;
            let advertise = opts.advertise.clone().unwrap_or_default();
            warren_cell::run_incoming(
                net::incoming(listener),
                advertise,
                store,
                opts,
                move |h| *slot.lock().expect("the master slot") = Some(h),
                std::future::pending(),
            )
            .await?;
            Ok(())
        }
    });
    // The proxy, if any client goes through it: the real warren-proxy, in front of the
    // cell. A crash loses everything it had (its client sessions, its shared cache); its
    // clients' sessions live on at the cell, to be claimed by its next start.
    let has_proxy = proxied.contains(&true);
    if has_proxy {
        let rec = rec.clone();
        // Each start of the proxy draws its core's RNG (client session ids among others)
        // from its own seed, as the cell's master does.
        let starts = std::cell::Cell::new(0u64);
        let seed = cfg.seed;
        sim.host(PROXY_HOST, move || {
            let rec = rec.clone();
            starts.set(starts.get() + 1);
            let proxy_seed =
                seed ^ 0x05EE_D0F9_B0C5 ^ starts.get().wrapping_mul(0x9E37_79B9_7F4A_7C15);
            async move {
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PROXY_PORT)).await?;
                warren_proxy::core::set_sim_seed(Some(proxy_seed));
                warren_proxy::run_incoming(
                    net::incoming(listener),
                    format!("{PROXY_HOST}:{PROXY_PORT}"),
                    proxy_config(),
                    move |shared| rec.borrow_mut().proxies.push(shared),
                    std::future::pending(),
                )
                .await?;
                Ok(())
            }
        });
    }
    let clients: Vec<String> = (0..cfg.clients).map(|i| format!("client{i}")).collect();
    // The host each client's session talks to.
    let server_of = |i: usize| if proxied[i] { PROXY_HOST } else { CELL_HOST };
    // Workload clients are hosts, so that they can crash (turmoil crashes only hosts); a
    // crashed client is never restarted: it just stops.
    for (i, name) in clients.iter().enumerate() {
        {
            let mut r = rec.borrow_mut();
            r.set_reachable(name, true, 0);
            if proxied[i] {
                r.proxied.insert(name.clone());
            }
        }
        let rec = rec.clone();
        let (seed, rounds, n, via_proxy) = (cfg.seed, cfg.rounds, cfg.clients, proxied[i]);
        sim.host(name.as_str(), move || {
            let rec = rec.clone();
            async move {
                workload::client(i, seed, rounds, n, via_proxy, rec).await;
                Ok(())
            }
        });
    }
    if has_proxy {
        let mut r = rec.borrow_mut();
        let direct: Vec<&String> = clients
            .iter()
            .zip(&proxied)
            .filter(|(_, p)| !**p)
            .map(|(c, _)| c)
            .collect();
        let via: Vec<&String> = clients
            .iter()
            .zip(&proxied)
            .filter(|(_, p)| **p)
            .map(|(c, _)| c)
            .collect();
        r.event_at(
            Duration::ZERO,
            "setup",
            format!("at the cell: {direct:?}; through {PROXY_HOST}: {via:?}"),
        );
    }
    {
        let rec = rec.clone();
        let clients = cfg.clients;
        sim.client("setup", async move {
            workload::setup(clients, rec).await;
            Ok(())
        });
    }
    {
        let rec = rec.clone();
        let clients = cfg.clients;
        sim.client("final", async move {
            workload::final_reader(clients, FINAL_PATIENCE, rec).await;
            Ok(())
        });
    }

    // The fault schedule, drawn from its own stream of the seed.
    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0xFA17);
    let mut faults = Vec::new();
    let mut undo: Vec<(Duration, Undo)> = Vec::new();
    let mut next_fault = Duration::from_millis(rng.gen_range(200..1500));
    let mut cell_down = false;
    let mut proxy_down = false;
    let mut healed = false;
    let mut crashed: BTreeSet<String> = BTreeSet::new();
    let fault = |rec: &Rc<RefCell<Record>>,
                 faults: &mut Vec<String>,
                 at: Duration,
                 kind: &str,
                 what: String| {
        let mut r = rec.borrow_mut();
        r.event_at(at, "FAULT", &what);
        *r.coverage.faults.entry(kind.to_string()).or_default() += 1;
        faults.push(what);
    };
    // The hosts with a link to the cell: every client (a proxied one has no connection to
    // it, so cutting its link changes nothing) and the proxy.
    let mut cell_peers: Vec<String> = clients.clone();
    if has_proxy {
        cell_peers.push(PROXY_HOST.to_string());
    }
    // Without a proxy the fault kinds are drawn as before the proxy joined (0..11), so a
    // direct run replays the runs of then.
    let kinds = if has_proxy { 13 } else { 11 };
    let mut proxy_trace = Vec::new();
    // Whether the restarted proxy is refused a session at the cell: it has none there,
    // and the master is recovering from a fail-over, which refuses new sessions until every
    // restored session acknowledges it or ends (docs/design.md §9, step 4), a crashed
    // proxy's among them. The harness reads both (every 50 ms of simulated time) rather
    // than predicting how long a crashed proxy's session lives on (seeds 3958, 7339 and
    // 9607 outlived each prediction). A proxy without a session at a master that is not
    // recovering is not excused.
    let mut proxy_refused = false;
    let mut next_refusal_check = Duration::ZERO;
    let mut next_trace = Duration::ZERO;
    let outcome = loop {
        let step = sim.step();
        let now = sim.elapsed();
        match step {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e.to_string()),
        }
        if cfg.trace_proxy && has_proxy && now >= next_trace {
            next_trace = now + Duration::from_millis(250);
            let r = rec.borrow();
            if let Some(p) = r.proxies.last() {
                let st = p.status();
                let cells: Vec<String> = st["cells"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| format!("connected={} epoch={}", c["connected"], c["epoch"]))
                    .collect();
                let line = format!(
                    "{:>9.3} {PROXY_HOST} {} clients={} held={} starving={} cached={} {cells:?}",
                    now.as_secs_f64(),
                    if proxy_down { "DOWN" } else { "up" },
                    st["client_sessions"],
                    st["held_keepalives"],
                    st["clients_waiting_for_a_cell"],
                    st["cached_paths"],
                );
                // The proxy's lease at the cell and each client's, in seconds left.
                let leases = if proxy_down {
                    String::new()
                } else {
                    p.trace_leases()
                };
                proxy_trace.push(format!("{line} {leases}"));
            }
        }
        // Undo what is due (in the order scheduled: deterministic).
        let mut i = 0;
        let mut changed = false;
        while i < undo.len() {
            if undo[i].0 > now {
                i += 1;
                continue;
            }
            changed = true;
            match undo.remove(i).1 {
                Undo::Release { host, peer, .. } => {
                    sim.release(host.as_str(), peer);
                    let peer = if peer == CELL_HOST { "cell" } else { peer };
                    fault(
                        &rec,
                        &mut faults,
                        now,
                        "heal",
                        format!("heal {host} <-> {peer}"),
                    );
                }
                Undo::Restart => {
                    sim.bounce(CELL_HOST);
                    cell_down = false;
                    rec.borrow_mut().coverage.failovers += 1;
                    fault(&rec, &mut faults, now, "heal", "restart cell".into());
                }
                Undo::RestartProxy => {
                    sim.bounce(PROXY_HOST);
                    proxy_down = false;
                    rec.borrow_mut().coverage.proxy_restarts += 1;
                    fault(
                        &rec,
                        &mut faults,
                        now,
                        "heal",
                        format!("restart {PROXY_HOST}"),
                    );
                }
                Undo::Latency => sim.set_max_message_latency(Duration::from_millis(20)),
                Undo::Aftermath(_) => {}
            }
        }
        let finished = rec.borrow().finished >= cfg.clients;
        if finished && !healed {
            // Heal everything now; the final reader checks what survived.
            for (_, u) in undo.drain(..) {
                match u {
                    Undo::Release { host, peer, .. } => sim.release(host.as_str(), peer),
                    Undo::Restart => {
                        sim.bounce(CELL_HOST);
                        cell_down = false;
                        rec.borrow_mut().coverage.failovers += 1;
                    }
                    Undo::RestartProxy => {
                        sim.bounce(PROXY_HOST);
                        proxy_down = false;
                        rec.borrow_mut().coverage.proxy_restarts += 1;
                    }
                    Undo::Latency => sim.set_max_message_latency(Duration::from_millis(20)),
                    Undo::Aftermath(_) => {}
                }
            }
            fault(&rec, &mut faults, now, "heal", "heal all".into());
            healed = true;
            changed = true;
        }
        if !healed && now >= next_fault {
            next_fault = now + Duration::from_millis(rng.gen_range(300..2500));
            let ci = rng.gen_range(0..cfg.clients);
            let client = clients[ci].clone();
            let server = server_of(ci);
            changed |= match rng.gen_range(0..kinds) {
                // A partition between one client and its server (the cell, or the proxy):
                // TCP holds what is sent (as a real TCP stack retransmits) until it heals,
                // short or past a lease.
                0..=3 if !busy(&undo, &client, server) && !crashed.contains(&client) => {
                    let d = Duration::from_millis(rng.gen_range(200..10_000));
                    sim.hold(client.as_str(), server);
                    let (kind, peer) = if server == CELL_HOST {
                        ("partition", "cell")
                    } else {
                        ("client-proxy-partition", PROXY_HOST)
                    };
                    undo.push((
                        now + d,
                        Undo::Release {
                            host: client.clone(),
                            peer: server,
                            kind,
                        },
                    ));
                    let what = format!("partition {client} <-> {peer} for {d:?}");
                    fault(&rec, &mut faults, now, kind, what);
                    true
                }
                // The cell's host crashes; restarted later on the same store.
                4..=5 if !cell_down => {
                    let d = Duration::from_millis(rng.gen_range(100..6_000));
                    // The host dies as a machine does: what its sockets would send as they
                    // close (FINs, RSTs) never leaves it. (It also keeps the run
                    // replayable: tokio drops a runtime's tasks in an order that depends on
                    // the task ids the process handed out before, and each message sent
                    // draws a delay.)
                    let open: Vec<&str> = cell_peers
                        .iter()
                        .map(String::as_str)
                        .filter(|h| !busy(&undo, h, CELL_HOST))
                        .collect();
                    crash_silently(&mut sim, CELL_HOST, &open);
                    cell_down = true;
                    *master.lock().expect("the master slot") = None;
                    undo.push((now + d, Undo::Restart));
                    let what = format!("crash cell for {d:?}");
                    fault(&rec, &mut faults, now, "cell-crash", what);
                    true
                }
                // A network pause of the cell: every link to it holds for a while.
                6 if !cell_down => {
                    let d = Duration::from_millis(rng.gen_range(100..3_000));
                    for host in &cell_peers {
                        if !busy(&undo, host, CELL_HOST) {
                            sim.hold(host.as_str(), CELL_HOST);
                            undo.push((
                                now + d,
                                Undo::Release {
                                    host: host.clone(),
                                    peer: CELL_HOST,
                                    kind: "cell-pause",
                                },
                            ));
                        }
                    }
                    let what = format!("pause the cell's network for {d:?}");
                    fault(&rec, &mut faults, now, "cell-pause", what);
                    true
                }
                // Slow messages for a while.
                7 => {
                    let max = Duration::from_millis(rng.gen_range(50..500));
                    sim.set_max_message_latency(max);
                    undo.push((now + Duration::from_secs(2), Undo::Latency));
                    let what = format!("message delay up to {max:?} for 2s");
                    fault(&rec, &mut faults, now, "delay", what);
                    true
                }
                // A client host crashes for good (rarely: it ends that client's work).
                8 if rng.gen_range(0..4) == 0 && sim.is_host_running(client.as_str()) => {
                    // As for the cell: its last words never leave it.
                    sim.partition(client.as_str(), server);
                    sim.crash(client.as_str());
                    sim.repair(client.as_str(), server);
                    undo.retain(
                        |(_, u)| !matches!(u, Undo::Release { host, .. } if *host == client),
                    );
                    crashed.insert(client.clone());
                    rec.borrow_mut().finished += 1;
                    undo.push((now + LEASE + GRACE, Undo::Aftermath("client-crash")));
                    let what = format!("crash {client} for good");
                    fault(&rec, &mut faults, now, "client-crash", what);
                    true
                }
                // The proxy's host crashes (its client sessions, cache and session at the
                // cell are lost with it), restarted 0.1–6 s later.
                11 if !proxy_down => {
                    let d = Duration::from_millis(rng.gen_range(100..6_000));
                    // As for the cell: what it would send as it dies never leaves it.
                    let mut peers: Vec<&str> = clients
                        .iter()
                        .zip(&proxied)
                        .filter(|(c, p)| **p && !busy(&undo, c, PROXY_HOST))
                        .map(|(c, _)| c.as_str())
                        .collect();
                    if !busy(&undo, PROXY_HOST, CELL_HOST) {
                        peers.push(CELL_HOST);
                    }
                    crash_silently(&mut sim, PROXY_HOST, &peers);
                    proxy_down = true;
                    undo.push((now + d, Undo::RestartProxy));
                    let what = format!("crash {PROXY_HOST} for {d:?}");
                    fault(&rec, &mut faults, now, "proxy-crash", what);
                    true
                }
                // A partition between the proxy and the cell, short or past the proxy's
                // lease there (the cell then ends its session, and its clients'
                // sub-sessions wait to be claimed).
                12 if !busy(&undo, PROXY_HOST, CELL_HOST) => {
                    let d = Duration::from_millis(rng.gen_range(200..12_000));
                    sim.hold(PROXY_HOST, CELL_HOST);
                    undo.push((
                        now + d,
                        Undo::Release {
                            host: PROXY_HOST.to_string(),
                            peer: CELL_HOST,
                            kind: "proxy-cell-partition",
                        },
                    ));
                    let what = format!("partition {PROXY_HOST} <-> cell for {d:?}");
                    fault(&rec, &mut faults, now, "proxy-cell-partition", what);
                    true
                }
                _ => false,
            };
        }
        if has_proxy && now >= next_refusal_check {
            next_refusal_check = now + Duration::from_millis(50);
            let refused = !proxy_down && !cell_down && {
                let recovering = master
                    .lock()
                    .expect("the master slot")
                    .as_ref()
                    .is_none_or(|m| !m.status().serving);
                let r = rec.borrow();
                let connected = r.proxies.last().is_some_and(|p| p.connected_to(0));
                recovering && !connected
            };
            if refused != proxy_refused {
                proxy_refused = refused;
                changed = true;
            }
        }
        if changed {
            // What is in force now: the coverage's fault kinds, and each client's
            // reachability of a live master (directly, or through a live proxy that
            // reaches it) for the session checker.
            let mut r = rec.borrow_mut();
            r.active = undo.iter().map(|(_, u)| u.kind()).collect();
            let at = nanos(now);
            let proxy_reaches_cell = has_proxy
                && !proxy_down
                && !cell_down
                && !proxy_refused
                && !busy(&undo, PROXY_HOST, CELL_HOST);
            for (i, c) in clients.iter().enumerate() {
                let reachable = !crashed.contains(c)
                    && if proxied[i] {
                        proxy_reaches_cell && !busy(&undo, c, PROXY_HOST)
                    } else {
                        !cell_down && !busy(&undo, c, CELL_HOST)
                    };
                r.set_reachable(c, reachable, at);
            }
        }
    };
    finish(
        cfg,
        sim,
        rec,
        outcome,
        Ran {
            faults,
            proxied: has_proxy,
            proxy_trace,
        },
    )
}

/// Records every KeepAlive of every workload session in the run's history.
pub(crate) fn observe_keepalives(rec: &Rc<RefCell<Record>>) {
    // Every KeepAlive of every session, into the history.
    let rec = rec.clone();
    warren_client::transport::sim::set_keepalive_observer(Some(Rc::new(move |k| {
        let completed = record::now();
        let took = nanos(tokio::time::Instant::now().saturating_duration_since(k.sent_at));
        let invoked = completed.saturating_sub(took);
        let outcome = match &k.outcome {
            Ok(lease) => Outcome::Ok(Ret::Lease {
                lease_ns: nanos(*lease),
            }),
            Err(e) => record::failed(e),
        };
        let mut r = rec.borrow_mut();
        // Not the workload's (the setup's), or closing: not in the history.
        let Some(client) = r.session_client.get(&k.session).cloned() else {
            return;
        };
        if r.closing.contains(&k.session) {
            return;
        }
        let id = r
            .history
            .invoke(&client, &k.session, Op::KeepAlive, invoked);
        r.complete(id, outcome);
    })));
}

/// What a run's loop hands [`finish`] besides the record.
pub(crate) struct Ran {
    /// The faults applied, in order.
    pub(crate) faults: Vec<String>,
    /// Whether some clients went through the proxy.
    pub(crate) proxied: bool,
    pub(crate) proxy_trace: Vec<String>,
}

/// Ends a run: clears the thread's simulation hooks, judges the history with every checker
/// and the liveness failures, and reports.
pub(crate) fn finish(
    cfg: &SimConfig,
    sim: turmoil::Sim<'_>,
    rec: Rc<RefCell<Record>>,
    outcome: Result<(), String>,
    ran: Ran,
) -> Report {
    let Ran {
        faults,
        proxied: has_proxy,
        proxy_trace,
    } = ran;
    Planted::set(None);
    warren_client::transport::sim::set_salt_seed(None);
    warren_client::transport::sim::set_keepalive_observer(None);
    let simulated = sim.elapsed();
    drop(sim);
    let mut rec = Rc::try_unwrap(rec)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| std::mem::take(&mut *shared.borrow_mut()));
    if let Err(e) = outcome {
        rec.stuck.push(format!("the simulation failed: {e}"));
    }
    rec.close_reachability(nanos(simulated));
    let history = std::mem::take(&mut rec.history).finish();
    let checked = warren_history::check_all(&history, &session_bounds(&rec.proxied));
    let mut violations = Vec::new();
    let mut violated = BTreeSet::new();
    for c in &checked.checkers {
        match &c.verdict {
            warren_history::Verdict::Pass => {}
            warren_history::Verdict::Violated(vs) => {
                violated.insert(c.checker.clone());
                violations.extend(vs.iter().map(|v| format!("{}: {v}", c.checker)));
            }
            // A checker that cannot judge this history is a harness failure: say so.
            warren_history::Verdict::Invalid(why) => {
                violated.insert(c.checker.clone());
                violations.push(format!("{}: cannot judge: {why}", c.checker));
            }
        }
    }
    if !rec.stuck.is_empty() {
        violated.insert("liveness".into());
        violations.extend(rec.stuck.iter().map(|s| format!("liveness: {s}")));
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rec.log.hash(&mut h);
    Report {
        seed: cfg.seed,
        planted: cfg.planted,
        digest: h.finish(),
        log: rec.log,
        violations,
        violated,
        checked: checked.to_text(),
        faults,
        operations: history.ops.len(),
        history,
        simulated,
        coverage: rec.coverage,
        proxy: cfg.proxy,
        proxied: has_proxy,
        proxy_trace,
        proxied_clients: rec.proxied.iter().cloned().collect(),
        deployment: cfg.deployment,
    }
}
