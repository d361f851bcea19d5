//! Warren's deterministic simulation (docs/reliability.md, "Deterministic simulation"): a
//! cell and several warren-client sessions in one process, on turmoil's simulated network
//! and paused tokio clock, with message delays, partitions between each client and the
//! cell, network pauses, and crashes and restarts of the cell host (its in-memory store
//! survives, as a durable one would) — every choice drawn from one seed, so a run replays
//! exactly from it.
//!
//! - [`net`]: turmoil streams as the cell's connections and the clients' dials (the
//!   seams `warren_cell::run_incoming` and `warren_client::transport::sim`);
//! - [`workload`]: what each client does, and the final reader;
//! - [`checks`]: the record of a run and the invariants checked over it;
//! - this file: one run ([`run`]) — the hosts, the fault schedule, the report.

pub mod checks;
pub mod net;
pub mod workload;

use checks::{Record, LEASE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use warren_cell::core::CoreConfig;
use warren_cell::store::memory::MemoryStore;
use warren_cell::CellOptions;
use workload::{CELL_HOST, CELL_PORT};

/// Whether runs replay exactly: only in builds with `--cfg tokio_unstable` (set by the
/// repository's `.cargo/config.toml`),
/// where turmoil seeds each host's tokio runtime, whose `select!` otherwise picks among
/// ready branches at random. Without it a seed still gives the same faults and choices,
/// but the interleaving can differ (docs/reliability.md, "Deterministic simulation").
pub const EXACT_REPLAY: bool = cfg!(tokio_unstable);

/// What one run simulates.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Workload clients, each on its own host.
    pub clients: usize,
    /// Operations per client.
    pub rounds: usize,
    /// Turn on the cell's planted double grant ([`warren_cell::planted`]) for this run.
    pub planted_double_grant: bool,
}

impl SimConfig {
    /// The run CI and the longer runs use for `seed`: 3 clients of 12 operations.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            clients: 3,
            rounds: 12,
            planted_double_grant: false,
        }
    }
}

/// What a run did and found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    /// Whether the planted double grant was on.
    pub planted_double_grant: bool,
    /// A hash of the ordered event log: equal for two runs of one seed.
    pub digest: u64,
    pub log: Vec<String>,
    pub violations: Vec<String>,
    /// The faults applied, in order.
    pub faults: Vec<String>,
    /// Operations by outcome.
    pub ops: Vec<(&'static str, u64)>,
    /// Simulated time the run took.
    pub simulated: Duration,
}

impl Report {
    /// How to replay this run.
    pub fn replay_hint(&self) -> String {
        let planted = if self.planted_double_grant {
            "WARREN_SIM_PLANTED=double-grant "
        } else {
            ""
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

/// A fault to undo at a given simulated time.
enum Undo {
    Release(String),
    Restart,
    Latency,
}

/// Runs one seed. Runs on the calling thread (turmoil runs every host there).
pub fn run(cfg: &SimConfig) -> Report {
    net::install_connector();
    warren_cell::planted::set_double_grant(cfg.planted_double_grant);
    warren_client::transport::sim::set_salt_seed(Some(cfg.seed));
    let rec = Rc::new(RefCell::new(Record::default()));
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
    sim.host(CELL_HOST, move || {
        let store = store.clone();
        let opts = opts.clone();
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
    for i in 0..cfg.clients {
        let rec = rec.clone();
        let (seed, rounds) = (cfg.seed, cfg.rounds);
        sim.client(format!("client{i}"), async move {
            workload::client(i, seed, rounds, rec).await;
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
    let fault =
        |rec: &Rc<RefCell<Record>>, faults: &mut Vec<String>, at: Duration, what: String| {
            rec.borrow_mut().event_at(at, "FAULT", &what);
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
        while i < undo.len() {
            if undo[i].0 > now {
                i += 1;
                continue;
            }
            match undo.remove(i).1 {
                Undo::Release(host) => {
                    sim.release(host.as_str(), CELL_HOST);
                    fault(&rec, &mut faults, now, format!("heal {host} <-> cell"));
                }
                Undo::Restart => {
                    sim.bounce(CELL_HOST);
                    cell_down = false;
                    fault(&rec, &mut faults, now, "restart cell".into());
                }
                Undo::Latency => sim.set_max_message_latency(Duration::from_millis(20)),
            }
        }
        let finished = rec.borrow().finished >= cfg.clients;
        if finished && !healed {
            // Heal everything now; the final reader checks what survived.
            for (_, u) in undo.drain(..) {
                match u {
                    Undo::Release(host) => sim.release(host.as_str(), CELL_HOST),
                    Undo::Restart => {
                        sim.bounce(CELL_HOST);
                        cell_down = false;
                    }
                    Undo::Latency => sim.set_max_message_latency(Duration::from_millis(20)),
                }
            }
            fault(&rec, &mut faults, now, "heal all".into());
            healed = true;
        }
        if healed || now < next_fault {
            continue;
        }
        next_fault = now + Duration::from_millis(rng.gen_range(300..2500));
        let client = format!("client{}", rng.gen_range(0..cfg.clients));
        let busy = |undo: &[(Duration, Undo)], h: &str| {
            undo.iter()
                .any(|(_, u)| matches!(u, Undo::Release(x) if x == h))
        };
        match rng.gen_range(0..10) {
            // A partition between one client and the cell: TCP holds what is sent (as a
            // real TCP stack retransmits) until it heals, short or past a lease.
            0..=3 if !busy(&undo, &client) => {
                let d = Duration::from_millis(rng.gen_range(200..10_000));
                sim.hold(client.as_str(), CELL_HOST);
                undo.push((now + d, Undo::Release(client.clone())));
                fault(
                    &rec,
                    &mut faults,
                    now,
                    format!("partition {client} <-> cell for {d:?}"),
                );
            }
            // The cell's host crashes; restarted later on the same store.
            4..=5 if !cell_down => {
                let d = Duration::from_millis(rng.gen_range(100..6_000));
                // The host dies as a machine does: what its sockets would send as they
                // close (FINs, RSTs) never leaves it. (It also keeps the run replayable:
                // tokio drops a runtime's tasks in an order that depends on the task ids
                // the process handed out before, and each message sent draws a delay.)
                let open: Vec<String> = (0..cfg.clients)
                    .map(|c| format!("client{c}"))
                    .filter(|h| !busy(&undo, h))
                    .collect();
                for h in &open {
                    sim.partition(h.as_str(), CELL_HOST);
                }
                sim.crash(CELL_HOST);
                for h in &open {
                    sim.repair(h.as_str(), CELL_HOST);
                }
                cell_down = true;
                undo.push((now + d, Undo::Restart));
                fault(&rec, &mut faults, now, format!("crash cell for {d:?}"));
            }
            // A network pause of the cell: every link to it holds for a while.
            6 if !cell_down => {
                let d = Duration::from_millis(rng.gen_range(100..3_000));
                for c in 0..cfg.clients {
                    let host = format!("client{c}");
                    if !busy(&undo, &host) {
                        sim.hold(host.as_str(), CELL_HOST);
                        undo.push((now + d, Undo::Release(host)));
                    }
                }
                fault(
                    &rec,
                    &mut faults,
                    now,
                    format!("pause the cell's network for {d:?}"),
                );
            }
            // Slow messages for a while.
            7 => {
                let max = Duration::from_millis(rng.gen_range(50..500));
                sim.set_max_message_latency(max);
                undo.push((now + Duration::from_secs(2), Undo::Latency));
                fault(
                    &rec,
                    &mut faults,
                    now,
                    format!("message delay up to {max:?} for 2s"),
                );
            }
            _ => {}
        }
    };
    warren_cell::planted::set_double_grant(false);
    warren_client::transport::sim::set_salt_seed(None);
    let simulated = sim.elapsed();
    drop(sim);
    let mut rec = Rc::try_unwrap(rec)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| std::mem::take(&mut *shared.borrow_mut()));
    if let Err(e) = outcome {
        rec.violation(format!("the simulation failed: {e}"));
    }
    rec.check_grants();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rec.log.hash(&mut h);
    Report {
        seed: cfg.seed,
        planted_double_grant: cfg.planted_double_grant,
        digest: h.finish(),
        log: rec.log,
        violations: rec.violations,
        faults,
        ops: rec.ops.into_iter().collect(),
        simulated,
    }
}
