//! Warren's deterministic simulation (docs/reliability.md, "Deterministic simulation"): a
//! cell and several warren-client sessions in one process, on turmoil's simulated network
//! and paused tokio clock, with message delays, partitions between each client and the
//! cell, network pauses, crashes and restarts of the cell host (its in-memory store
//! survives, as a durable one would) and crashes of client hosts — every choice drawn from
//! one seed, so a run replays exactly from it. Every client call is recorded in a
//! `warren_history` history and judged by all of its checkers.
//!
//! - [`net`]: turmoil streams as the cell's connections and the clients' dials (the
//!   seams `warren_cell::run_incoming` and `warren_client::transport::sim`);
//! - [`workload`]: what each client does, and the final reader;
//! - [`record`]: the history, the fenced resource, reachability and coverage of a run;
//! - this file: one run ([`run`]) — the hosts, the fault schedule, the report.

pub mod net;
pub mod record;
pub mod workload;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use record::{nanos, Coverage, Record, GRACE, LEASE};
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
use workload::{CELL_HOST, CELL_PORT};

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
}

impl SimConfig {
    /// The run CI and the longer runs use for `seed`: 3 clients of 12 operations.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            clients: 3,
            rounds: 12,
            planted: None,
        }
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
}

impl Report {
    /// How to replay this run.
    pub fn replay_hint(&self) -> String {
        let planted = match self.planted {
            Some(p) => format!("WARREN_SIM_PLANTED={} ", p.name()),
            None => String::new(),
        };
        format!(
            "replay with: WARREN_SIM_SEED={} {planted}cargo test -p warren-sim --test seeds replay_one_seed -- --nocapture",
            self.seed
        )
    }
}

/// How long a run may take in simulated time before it is a liveness failure.
const SIM_LIMIT: Duration = Duration::from_secs(300);
/// How long after the faults are healed the final reader may take.
const FINAL_PATIENCE: Duration = Duration::from_secs(60);
/// The network's tick: time advances this much per step.
const TICK: Duration = Duration::from_millis(5);

/// A fault in force, undone at a given simulated time.
enum Undo {
    /// A held link between a client and the cell (a partition or a pause of the cell's
    /// network).
    Release(String, &'static str),
    Restart,
    Latency,
    /// A crashed client: nothing to undo; its kind stays in force for a lease and a grace
    /// period (while its session and lock are still being given up).
    Aftermath(&'static str),
}

impl Undo {
    fn kind(&self) -> &'static str {
        match self {
            Undo::Release(_, k) | Undo::Aftermath(k) => k,
            Undo::Restart => "cell-crash",
            Undo::Latency => "delay",
        }
    }
}

/// The deployment's session parameters for the session checker: the master's lease is the
/// longest it grants, and a cut-off from a live master shorter than the lease less the
/// KeepAlive reply's 1 s margin must not expire a session (docs/reliability.md, "History
/// checkers").
pub fn session_bounds() -> SessionBounds {
    SessionBounds {
        grace_ns: nanos(GRACE),
        rho: 0.01,
        max_lease_ns: nanos(LEASE),
        tolerated_gap_ns: nanos(LEASE - Duration::from_secs(1)),
    }
}

/// Runs one seed. Runs on the calling thread (turmoil runs every host there).
pub fn run(cfg: &SimConfig) -> Report {
    net::install_connector();
    Planted::set(cfg.planted);
    warren_client::transport::sim::set_salt_seed(Some(cfg.seed));
    let rec = Rc::new(RefCell::new(Record {
        history: warren_history::Recorder::new(cfg.seed.to_string()),
        ..Record::default()
    }));
    {
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
    let mut sim = turmoil::Builder::new()
        .rng_seed(cfg.seed)
        .simulation_duration(SIM_LIMIT)
        .tick_duration(TICK)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .build();

    // The cell: its store outlives crashes of its host, as a durable store would.
    let store = Arc::new(MemoryStore::new());
    let mut core = CoreConfig::new("sim", "sim");
    core.lease = LEASE;
    let mut opts = CellOptions::new(core);
    opts.seed = Some(cfg.seed);
    opts.advertise = Some(format!("{CELL_HOST}:{CELL_PORT}"));
    // Each start of the cell draws its master's RNG (session ids among others) from its own
    // seed: a restart that drew the same ids again would hand out session ids it gave
    // before, as no real master does.
    let incarnation = std::cell::Cell::new(0u64);
    sim.host(CELL_HOST, move || {
        let store = store.clone();
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
                |_| {},
                std::future::pending(),
            )
            .await?;
            Ok(())
        }
    });
    let clients: Vec<String> = (0..cfg.clients).map(|i| format!("client{i}")).collect();
    // Workload clients are hosts, so that they can crash (turmoil crashes only hosts); a
    // crashed client is never restarted: it just stops.
    for (i, name) in clients.iter().enumerate() {
        rec.borrow_mut().set_reachable(name, true, 0);
        let rec = rec.clone();
        let (seed, rounds, n) = (cfg.seed, cfg.rounds, cfg.clients);
        sim.host(name.as_str(), move || {
            let rec = rec.clone();
            async move {
                workload::client(i, seed, rounds, n, rec).await;
                Ok(())
            }
        });
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
    let outcome = loop {
        let step = sim.step();
        let now = sim.elapsed();
        match step {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e.to_string()),
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
                Undo::Release(host, _) => {
                    sim.release(host.as_str(), CELL_HOST);
                    fault(
                        &rec,
                        &mut faults,
                        now,
                        "heal",
                        format!("heal {host} <-> cell"),
                    );
                }
                Undo::Restart => {
                    sim.bounce(CELL_HOST);
                    cell_down = false;
                    rec.borrow_mut().coverage.failovers += 1;
                    fault(&rec, &mut faults, now, "heal", "restart cell".into());
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
                    Undo::Release(host, _) => sim.release(host.as_str(), CELL_HOST),
                    Undo::Restart => {
                        sim.bounce(CELL_HOST);
                        cell_down = false;
                        rec.borrow_mut().coverage.failovers += 1;
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
            let client = clients[rng.gen_range(0..cfg.clients)].clone();
            let busy = |undo: &[(Duration, Undo)], h: &str| {
                undo.iter()
                    .any(|(_, u)| matches!(u, Undo::Release(x, _) if x == h))
            };
            changed |= match rng.gen_range(0..11) {
                // A partition between one client and the cell: TCP holds what is sent (as
                // a real TCP stack retransmits) until it heals, short or past a lease.
                0..=3 if !busy(&undo, &client) && !crashed.contains(&client) => {
                    let d = Duration::from_millis(rng.gen_range(200..10_000));
                    sim.hold(client.as_str(), CELL_HOST);
                    undo.push((now + d, Undo::Release(client.clone(), "partition")));
                    let what = format!("partition {client} <-> cell for {d:?}");
                    fault(&rec, &mut faults, now, "partition", what);
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
                    let open: Vec<&String> = clients.iter().filter(|h| !busy(&undo, h)).collect();
                    for h in &open {
                        sim.partition(h.as_str(), CELL_HOST);
                    }
                    sim.crash(CELL_HOST);
                    for h in &open {
                        sim.repair(h.as_str(), CELL_HOST);
                    }
                    cell_down = true;
                    undo.push((now + d, Undo::Restart));
                    let what = format!("crash cell for {d:?}");
                    fault(&rec, &mut faults, now, "cell-crash", what);
                    true
                }
                // A network pause of the cell: every link to it holds for a while.
                6 if !cell_down => {
                    let d = Duration::from_millis(rng.gen_range(100..3_000));
                    for host in &clients {
                        if !busy(&undo, host) {
                            sim.hold(host.as_str(), CELL_HOST);
                            undo.push((now + d, Undo::Release(host.clone(), "cell-pause")));
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
                    sim.partition(client.as_str(), CELL_HOST);
                    sim.crash(client.as_str());
                    sim.repair(client.as_str(), CELL_HOST);
                    undo.retain(|(_, u)| !matches!(u, Undo::Release(x, _) if *x == client));
                    crashed.insert(client.clone());
                    rec.borrow_mut().finished += 1;
                    undo.push((now + LEASE + GRACE, Undo::Aftermath("client-crash")));
                    let what = format!("crash {client} for good");
                    fault(&rec, &mut faults, now, "client-crash", what);
                    true
                }
                _ => false,
            };
        }
        if changed {
            // What is in force now: the coverage's fault kinds, and each client's
            // reachability of a live cell for the session checker.
            let mut r = rec.borrow_mut();
            r.active = undo.iter().map(|(_, u)| u.kind()).collect();
            let at = nanos(now);
            for c in &clients {
                let reachable = !cell_down && !crashed.contains(c) && !busy_any(&undo, c);
                r.set_reachable(c, reachable, at);
            }
        }
    };
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
    let checked = warren_history::check_all(&history, &session_bounds());
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
    }
}

/// Whether a link between `host` and the cell is held now.
fn busy_any(undo: &[(Duration, Undo)], host: &str) -> bool {
    undo.iter()
        .any(|(_, u)| matches!(u, Undo::Release(x, _) if x == host))
}
