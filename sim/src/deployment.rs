//! The whole deployment in the simulation ([`SimConfig::deployment`]): a meta cell and two
//! data cells, each a master and a standby over its own [`SimEtcd`] (the in-memory store
//! with the etcd store's election and fencing, `warren_cell::store::fenced`), two proxies
//! routing by the partition map they watch at the meta cell, and clients either at the
//! cells (routed by the map themselves) or through the proxies (given both, each client in
//! the order its key gives, moving to the other when its own fails it). The setup writes
//! the first map, as `warren ctl deployment init` does; the data cells and the proxies load
//! it from the meta cell.
//!
//! Faults, every choice drawn from the seed: partitions between a client and a cell (every
//! replica of it) or a proxy; crashes and restarts of any replica (a master: a failover
//! once its mastership lease expires at the store; a standby) and of either proxy; a
//! replica cut from its store (a master then stops serving when it can no longer prove its
//! lease, and any write it still tries is fenced off); a master frozen (cut from
//! everything, the store included, as a SIGSTOP would); network pauses of a whole cell;
//! partitions between a proxy and a data cell and between a data cell and the meta cell;
//! message delays; crashes of clients.
//!
//! Reachability for the session checker is read from the run, every 50 ms of simulated
//! time: which replica of each cell is master (`CellStatus::role`) and whether it is
//! recovering from a failover (`serving`). A client at the cells needs a live master of
//! every cell, since its session is one session per cell (the meta cell's, whose id it
//! reports, and one at each data cell it has used) and it expires when any of them does.
//! A client of the proxies needs a proxy, and that proxy a session at a live master of
//! each cell, the meta cell included: a restarted proxy claims its clients' sessions there
//! too (seed 1103), and a master recovering from a failover refuses a new proxy session
//! until the sessions it restored have acknowledged it or ended, as in the one-cell runs.
//! A recovering master refuses `ClaimSession` too, so a client can move only to a proxy
//! that holds it already while any cell recovers. And a client whose proxy stops being
//! usable counts as cut off until it can have noticed (see the loop). A data cell's master
//! that has not loaded the partition map yet (cut off from the meta cell since it was
//! elected) counts as live: it serves session calls, which are all a session needs.

use crate::net;
use crate::record::{nanos, Record, GRACE, LEASE};
use crate::workload::{self, CELL_PORT, PROXY_PORT};
use crate::{
    crash_silently, finish, observe_keepalives, Planted, Ran, Report, SimConfig, CLAIM_WINDOW,
    DEPLOYMENT, FINAL_PATIENCE, PROXY_LEASE, SIM_LIMIT, TICK,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren_cell::core::CoreConfig;
use warren_cell::store::fenced::SimEtcd;
use warren_cell::{CellHandle, CellOptions};

/// The cells: the meta cell first, then the data cells the map names.
pub const CELLS: [&str; 3] = ["meta", "c1", "c2"];
/// Replicas per cell: hosts `<cell>-a` and `<cell>-b`.
const REPLICAS: [&str; 2] = ["a", "b"];
/// The proxies: each client of the proxies is given both, in the order its key gives
/// (`warren_client::proxy_order`), and moves to the other when its own fails it.
pub const PROXIES: [&str; 2] = ["proxy0", "proxy1"];
/// The replicas' mastership lease at their store (etcd's TTL; Warren's default is 2 s).
pub const MASTERSHIP_TTL: Duration = Duration::from_secs(2);

/// The replica hosts of `cell`.
pub fn replicas(cell: &str) -> Vec<String> {
    REPLICAS.iter().map(|r| format!("{cell}-{r}")).collect()
}

/// The cell a replica host belongs to.
fn cell_of(host: &str) -> &str {
    host.rsplit_once('-').map_or(host, |(c, _)| c)
}

fn addr(host: &str) -> String {
    format!("{host}:{CELL_PORT}")
}

/// The proxy's configuration: routing by the map at the meta cell, otherwise as in the
/// one-cell runs.
fn proxy_config(meta: &[String], id: &str) -> warren_proxy::ProxyConfig {
    let mut cfg = warren_proxy::ProxyConfig::new(format!("0.0.0.0:{PROXY_PORT}"), Vec::new());
    cfg.meta = meta.to_vec();
    cfg.id = id.into();
    cfg.tls.insecure = true;
    cfg.client_lease = LEASE;
    cfg.forward_patience = crate::record::RPC_TIMEOUT;
    cfg.max_starve = CLAIM_WINDOW;
    cfg
}

/// A fault in force, undone at a given simulated time.
enum Undo {
    /// Held links (each `(host, peer)`), of fault kind `kind`.
    Release {
        links: Vec<(String, String)>,
        kind: &'static str,
    },
    /// A crashed host, restarted.
    Restart {
        host: String,
        kind: &'static str,
    },
    /// A replica cut from its store, reconnected.
    Reconnect {
        host: String,
        kind: &'static str,
    },
    /// A frozen master: its links held and its store cut, both undone.
    Thaw {
        host: String,
        links: Vec<(String, String)>,
    },
    Latency,
    /// A crashed client: its kind stays in force for a lease and a grace period.
    Aftermath(&'static str),
}

impl Undo {
    fn kind(&self) -> &'static str {
        match self {
            Undo::Release { kind, .. }
            | Undo::Restart { kind, .. }
            | Undo::Reconnect { kind, .. }
            | Undo::Aftermath(kind) => kind,
            Undo::Thaw { .. } => "master-freeze",
            Undo::Latency => "delay",
        }
    }

    fn links(&self) -> &[(String, String)] {
        match self {
            Undo::Release { links, .. } | Undo::Thaw { links, .. } => links,
            _ => &[],
        }
    }
}

/// Whether the link between `a` and `b` is held now (either way round).
fn busy(undo: &[(Duration, Undo)], a: &str, b: &str) -> bool {
    undo.iter().any(|(_, u)| {
        u.links()
            .iter()
            .any(|(h, p)| (h == a && p == b) || (h == b && p == a))
    })
}

/// Holds each link of `links` not already held; returns those it held (to release).
fn hold(
    sim: &mut turmoil::Sim<'_>,
    undo: &[(Duration, Undo)],
    links: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut held = Vec::new();
    for (h, p) in links {
        if !busy(undo, &h, &p) && !held.iter().any(|(a, b)| (a, b) == (&h, &p)) {
            sim.hold(h.as_str(), p.as_str());
            held.push((h, p));
        }
    }
    held
}

fn release(sim: &mut turmoil::Sim<'_>, links: &[(String, String)]) {
    for (h, p) in links {
        sim.release(h.as_str(), p.as_str());
    }
}

/// What the harness reads of each cell every 50 ms: its master replica, and whether that
/// master is serving (not recovering from a failover).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Masters(BTreeMap<&'static str, (String, bool)>);

/// Runs one seed of the whole deployment.
pub(crate) fn run(cfg: &SimConfig) -> Report {
    net::install_connector();
    Planted::set(cfg.planted);
    warren_client::transport::sim::set_salt_seed(Some(cfg.seed));
    let proxied = cfg.proxied();
    let has_proxy = proxied.contains(&true);
    let meta: Vec<String> = replicas(CELLS[0]).iter().map(|h| addr(h)).collect();
    let map_cells: Vec<(String, Vec<String>)> = CELLS[1..]
        .iter()
        .map(|c| (c.to_string(), replicas(c).iter().map(|h| addr(h)).collect()))
        .collect();
    let rec = Rc::new(RefCell::new(Record {
        history: warren_history::Recorder::new(cfg.seed.to_string()),
        meta: meta.clone(),
        map: Some(
            warren_client::admin::initial_map(DEPLOYMENT, &map_cells, crate::SLOTS)
                .expect("the simulation's first map is valid"),
        ),
        map_cells,
        proxy_addrs: PROXIES
            .iter()
            .map(|p| format!("{p}:{PROXY_PORT}"))
            .collect(),
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

    // Each cell: its store (which outlives crashes of every replica, as etcd would) and
    // its replicas.
    let handles: Arc<Mutex<BTreeMap<String, CellHandle>>> = Arc::default();
    let mut stores: BTreeMap<&'static str, Arc<SimEtcd>> = BTreeMap::new();
    let mut cell_hosts: Vec<String> = Vec::new();
    for (ci, &cell) in CELLS.iter().enumerate() {
        let etcd = SimEtcd::new(Arc::new(|| turmoil::sim_elapsed().unwrap_or_default()));
        stores.insert(cell, etcd.clone());
        for (ri, host) in replicas(cell).into_iter().enumerate() {
            cell_hosts.push(host.clone());
            let mut core = CoreConfig::new(cell, DEPLOYMENT);
            core.lease = LEASE;
            core.proxy_lease = PROXY_LEASE;
            core.claim_window = CLAIM_WINDOW;
            let mut opts = CellOptions::new(core);
            opts.replica = host.clone();
            opts.advertise = Some(addr(&host));
            if ci > 0 {
                opts.meta = meta.clone();
            }
            let starts = std::cell::Cell::new(0u64);
            let base = cfg.seed
                ^ ((ci * REPLICAS.len() + ri + 1) as u64).wrapping_mul(0xA076_1D64_78BD_642F);
            let etcd = etcd.clone();
            let handles = handles.clone();
            sim.host(host.as_str(), move || {
                starts.set(starts.get() + 1);
                let mut opts = opts.clone();
                // Each start of a replica draws its terms' seeds from its own.
                opts.seed = Some(base ^ starts.get().wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let etcd = etcd.clone();
                let handles = handles.clone();
                let host = opts.replica.clone();
                async move {
                    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", CELL_PORT)).await?;
                    let advertise = addr(&host);
                    warren_cell::sim_replica::run_replica_incoming(
                        net::incoming(listener),
                        advertise,
                        etcd,
                        MASTERSHIP_TTL,
                        opts,
                        move |h| {
                            handles.lock().expect("the handles").insert(host, h);
                        },
                        std::future::pending(),
                    )
                    .await?;
                    Ok(())
                }
            });
        }
    }
    // The proxies' state, one per host (its latest start), for reachability.
    let proxy_state: Rc<RefCell<BTreeMap<&'static str, Arc<warren_proxy::Shared>>>> = Rc::default();
    for (pi, &host) in PROXIES.iter().enumerate() {
        if !has_proxy {
            break;
        }
        let rec = rec.clone();
        let state = proxy_state.clone();
        let starts = std::cell::Cell::new(0u64);
        let seed = cfg.seed ^ (pi as u64 + 1).wrapping_mul(0xE703_7ED1_A0B4_28DB);
        let meta = meta.clone();
        sim.host(host, move || {
            let rec = rec.clone();
            let state = state.clone();
            starts.set(starts.get() + 1);
            let proxy_seed =
                seed ^ 0x05EE_D0F9_B0C5 ^ starts.get().wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let config = proxy_config(&meta, host);
            async move {
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PROXY_PORT)).await?;
                warren_proxy::core::set_sim_seed(Some(proxy_seed));
                warren_proxy::run_incoming(
                    net::incoming(listener),
                    format!("{host}:{PROXY_PORT}"),
                    config,
                    move |shared| {
                        state.borrow_mut().insert(host, shared.clone());
                        rec.borrow_mut().proxies.push(shared);
                    },
                    std::future::pending(),
                )
                .await?;
                Ok(())
            }
        });
    }
    let clients: Vec<String> = (0..cfg.clients).map(|i| format!("client{i}")).collect();
    for (i, name) in clients.iter().enumerate() {
        {
            let mut r = rec.borrow_mut();
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
    {
        let via: Vec<&String> = clients
            .iter()
            .zip(&proxied)
            .filter(|(_, p)| **p)
            .map(|(c, _)| c)
            .collect();
        rec.borrow_mut().event_at(
            Duration::ZERO,
            "setup",
            format!("cells {CELLS:?}, 2 replicas each; through {PROXIES:?}: {via:?}"),
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

    // Every host a crashed or paused host may have links to.
    let mut hosts: Vec<String> = clients.clone();
    if has_proxy {
        hosts.extend(PROXIES.iter().map(|p| p.to_string()));
    }
    hosts.extend(cell_hosts.iter().cloned());
    hosts.push("setup".into());
    hosts.push("final".into());

    let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0xDE9_107);
    let mut faults = Vec::new();
    let mut undo: Vec<(Duration, Undo)> = Vec::new();
    let mut next_fault = Duration::from_millis(rng.gen_range(200..1500));
    let mut down: BTreeSet<String> = BTreeSet::new();
    let mut cut: BTreeSet<String> = BTreeSet::new();
    let mut crashed: BTreeSet<String> = BTreeSet::new();
    let mut healed = false;
    let mut masters = Masters::default();
    // Clients of the proxies whose proxy stopped being usable, and when they can have
    // noticed (see the reachability below).
    let mut unnoticed: BTreeMap<String, (String, Duration)> = BTreeMap::new();
    // The proxy each client of the proxies was last seen on, and the moves seen.
    let mut last_proxy: BTreeMap<String, String> = BTreeMap::new();
    let mut moves = 0u64;
    // The last master seen of each cell (a failover: another one, or the same host's
    // next term).
    let mut last_master: BTreeMap<&'static str, (String, u64)> = BTreeMap::new();
    let mut next_sample = Duration::ZERO;
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
        // Undo what is due, in the order scheduled.
        let mut i = 0;
        let finished = rec.borrow().finished >= cfg.clients;
        let heal_all = finished && !healed;
        while i < undo.len() {
            if undo[i].0 > now && !heal_all {
                i += 1;
                continue;
            }
            let (what, kind) = match undo.remove(i).1 {
                Undo::Release { links, kind } => {
                    release(&mut sim, &links);
                    (format!("heal {kind} ({} links)", links.len()), "heal")
                }
                Undo::Restart { host, .. } => {
                    sim.bounce(host.as_str());
                    down.remove(&host);
                    if PROXIES.contains(&host.as_str()) {
                        rec.borrow_mut().coverage.proxy_restarts += 1;
                    }
                    (format!("restart {host}"), "heal")
                }
                Undo::Reconnect { host, .. } => {
                    stores[cell_of(&host)].set_cut(&host, false);
                    cut.remove(&host);
                    (format!("reconnect {host} to its store"), "heal")
                }
                Undo::Thaw { host, links } => {
                    release(&mut sim, &links);
                    stores[cell_of(&host)].set_cut(&host, false);
                    cut.remove(&host);
                    (format!("thaw {host}"), "heal")
                }
                Undo::Latency => {
                    sim.set_max_message_latency(Duration::from_millis(20));
                    continue;
                }
                Undo::Aftermath(_) => continue,
            };
            if !heal_all {
                fault(&rec, &mut faults, now, kind, what);
            }
        }
        if heal_all {
            fault(&rec, &mut faults, now, "heal", "heal all".into());
            healed = true;
        }
        if !healed && now >= next_fault {
            next_fault = now + Duration::from_millis(rng.gen_range(300..2500));
            let ci = rng.gen_range(0..cfg.clients);
            let client = clients[ci].clone();
            let cell = CELLS[rng.gen_range(0..CELLS.len())];
            let data_cell = CELLS[rng.gen_range(1..CELLS.len())];
            let replica = replicas(cell)[rng.gen_range(0..REPLICAS.len())].clone();
            let proxy = PROXIES[rng.gen_range(0..PROXIES.len())];
            let is_master = masters.0.get(cell).is_some_and(|(h, _)| *h == replica);
            let role = if is_master { "master" } else { "standby" };
            match rng.gen_range(0..14) {
                // A client cut off from what it talks to: a cell (every replica of it) for
                // a client at the cells, the proxy for one of the proxy.
                0..=2 if !crashed.contains(&client) => {
                    let d = Duration::from_millis(rng.gen_range(200..10_000));
                    let (kind, peers) = if proxied[ci] {
                        ("client-proxy-partition", vec![proxy.to_string()])
                    } else {
                        ("partition", replicas(cell))
                    };
                    let links = peers.iter().map(|p| (client.clone(), p.clone())).collect();
                    let links = hold(&mut sim, &undo, links);
                    if !links.is_empty() {
                        let to = if proxied[ci] { proxy } else { cell };
                        undo.push((now + d, Undo::Release { links, kind }));
                        fault(
                            &rec,
                            &mut faults,
                            now,
                            kind,
                            format!("partition {client} <-> {to} for {d:?}"),
                        );
                    }
                }
                // A replica's host crashes (the master: a failover); restarted later.
                3..=4 if !down.contains(&replica) => {
                    let d = Duration::from_millis(rng.gen_range(100..6_000));
                    let kind = if is_master {
                        "master-crash"
                    } else {
                        "standby-crash"
                    };
                    crash_host(&mut sim, &undo, &hosts, &replica, &handles);
                    down.insert(replica.clone());
                    undo.push((
                        now + d,
                        Undo::Restart {
                            host: replica.clone(),
                            kind,
                        },
                    ));
                    fault(
                        &rec,
                        &mut faults,
                        now,
                        kind,
                        format!("crash {replica} ({role} of {cell}) for {d:?}"),
                    );
                }
                // A replica cut from its store: a master stops serving once it cannot
                // prove its lease, and its writes are fenced off.
                5 if !cut.contains(&replica) && !down.contains(&replica) => {
                    let d = Duration::from_millis(rng.gen_range(200..6_000));
                    stores[cell].set_cut(&replica, true);
                    cut.insert(replica.clone());
                    undo.push((
                        now + d,
                        Undo::Reconnect {
                            host: replica.clone(),
                            kind: "store-cut",
                        },
                    ));
                    fault(
                        &rec,
                        &mut faults,
                        now,
                        "store-cut",
                        format!("cut {replica} ({role} of {cell}) from its store for {d:?}"),
                    );
                }
                // A whole cell's network pauses.
                6 => {
                    let d = Duration::from_millis(rng.gen_range(100..3_000));
                    let links = replicas(cell)
                        .into_iter()
                        .flat_map(|r| {
                            hosts
                                .iter()
                                .filter(move |h| cell_of(h) != cell)
                                .map(move |h| (h.clone(), r.clone()))
                        })
                        .collect();
                    let links = hold(&mut sim, &undo, links);
                    undo.push((
                        now + d,
                        Undo::Release {
                            links,
                            kind: "cell-pause",
                        },
                    ));
                    fault(
                        &rec,
                        &mut faults,
                        now,
                        "cell-pause",
                        format!("pause {cell}'s network for {d:?}"),
                    );
                }
                7 => {
                    let max = Duration::from_millis(rng.gen_range(50..500));
                    sim.set_max_message_latency(max);
                    undo.push((now + Duration::from_secs(2), Undo::Latency));
                    fault(
                        &rec,
                        &mut faults,
                        now,
                        "delay",
                        format!("message delay up to {max:?} for 2s"),
                    );
                }
                // A client's host crashes for good (rarely).
                8 if rng.gen_range(0..4) == 0 && sim.is_host_running(client.as_str()) => {
                    let peers: Vec<&str> = hosts
                        .iter()
                        .map(String::as_str)
                        .filter(|h| *h != client && !busy(&undo, h, &client))
                        .collect();
                    crash_silently(&mut sim, &client, &peers);
                    crashed.insert(client.clone());
                    rec.borrow_mut().finished += 1;
                    undo.push((now + LEASE + GRACE, Undo::Aftermath("client-crash")));
                    fault(
                        &rec,
                        &mut faults,
                        now,
                        "client-crash",
                        format!("crash {client} for good"),
                    );
                }
                9 if has_proxy && !down.contains(proxy) => {
                    let d = Duration::from_millis(rng.gen_range(100..6_000));
                    crash_host(&mut sim, &undo, &hosts, proxy, &handles);
                    down.insert(proxy.to_string());
                    undo.push((
                        now + d,
                        Undo::Restart {
                            host: proxy.to_string(),
                            kind: "proxy-crash",
                        },
                    ));
                    fault(
                        &rec,
                        &mut faults,
                        now,
                        "proxy-crash",
                        format!("crash {proxy} for {d:?}"),
                    );
                }
                // The proxy cut off from a data cell.
                10 if has_proxy => {
                    let d = Duration::from_millis(rng.gen_range(200..12_000));
                    let links = replicas(data_cell)
                        .into_iter()
                        .map(|r| (proxy.to_string(), r))
                        .collect();
                    let links = hold(&mut sim, &undo, links);
                    if !links.is_empty() {
                        undo.push((
                            now + d,
                            Undo::Release {
                                links,
                                kind: "proxy-cell-partition",
                            },
                        ));
                        fault(
                            &rec,
                            &mut faults,
                            now,
                            "proxy-cell-partition",
                            format!("partition {proxy} <-> {data_cell} for {d:?}"),
                        );
                    }
                }
                // A data cell cut off from the meta cell (its map, and the cells' own
                // sessions there).
                11 => {
                    let d = Duration::from_millis(rng.gen_range(200..10_000));
                    let links = replicas(data_cell)
                        .into_iter()
                        .flat_map(|r| replicas(CELLS[0]).into_iter().map(move |m| (r.clone(), m)))
                        .collect();
                    let links = hold(&mut sim, &undo, links);
                    if !links.is_empty() {
                        undo.push((
                            now + d,
                            Undo::Release {
                                links,
                                kind: "cell-meta-partition",
                            },
                        ));
                        fault(
                            &rec,
                            &mut faults,
                            now,
                            "cell-meta-partition",
                            format!("partition {data_cell} <-> meta for {d:?}"),
                        );
                    }
                }
                // A cell's master crashes: a failover.
                12 => {
                    if let Some((m, _)) = masters.0.get(cell).cloned() {
                        if !down.contains(&m) {
                            let d = Duration::from_millis(rng.gen_range(100..6_000));
                            crash_host(&mut sim, &undo, &hosts, &m, &handles);
                            down.insert(m.clone());
                            undo.push((
                                now + d,
                                Undo::Restart {
                                    host: m.clone(),
                                    kind: "master-crash",
                                },
                            ));
                            fault(
                                &rec,
                                &mut faults,
                                now,
                                "master-crash",
                                format!("crash {m} (master of {cell}) for {d:?}"),
                            );
                        }
                    }
                }
                // A cell's master frozen: cut from everything, its store included, as a
                // SIGSTOP would (but its timers run: it stops serving once its lease proof
                // runs out, rather than when it wakes).
                13 => {
                    if let Some((m, _)) = masters.0.get(cell).cloned() {
                        if !down.contains(&m) && !cut.contains(&m) {
                            let d = Duration::from_millis(rng.gen_range(500..6_000));
                            let links = hosts
                                .iter()
                                .filter(|h| **h != m)
                                .map(|h| (h.clone(), m.clone()))
                                .collect();
                            let links = hold(&mut sim, &undo, links);
                            stores[cell].set_cut(&m, true);
                            cut.insert(m.clone());
                            undo.push((
                                now + d,
                                Undo::Thaw {
                                    host: m.clone(),
                                    links,
                                },
                            ));
                            fault(
                                &rec,
                                &mut faults,
                                now,
                                "master-freeze",
                                format!("freeze {m} (master of {cell}) for {d:?}"),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        if now >= next_sample {
            next_sample = now + Duration::from_millis(50);
            // Which replica of each cell is master, and whether it is serving.
            let mut seen = Masters::default();
            {
                let hs = handles.lock().expect("the handles");
                for h in &cell_hosts {
                    if down.contains(h) {
                        continue;
                    }
                    if let Some(st) = hs.get(h).map(CellHandle::status) {
                        if st.role == "master" {
                            let cell = CELLS
                                .iter()
                                .find(|c| **c == cell_of(h))
                                .copied()
                                .unwrap_or("?");
                            seen.0.insert(cell, (h.clone(), st.serving));
                            let now_master = (h.clone(), st.epoch);
                            match last_master.insert(cell, now_master.clone()) {
                                Some(old) if old != now_master => {
                                    rec.borrow_mut().coverage.failovers += 1;
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            if seen != masters {
                masters = seen;
            }
            let mut r = rec.borrow_mut();
            r.active = undo.iter().map(|(_, u)| u.kind()).collect();
            let at = nanos(now);
            // Which proxies reach every cell: up, a live master of each, their links to it
            // free, and not refused a session by a recovering master.
            let states = proxy_state.borrow();
            let connected = |proxy: &str, cell: &str| {
                states
                    .get(proxy)
                    .is_some_and(|p| p.cell_named(cell).is_some_and(|ix| p.connected_to(ix)))
            };
            let reaching: Vec<&str> = PROXIES
                .iter()
                .copied()
                .filter(|p| {
                    has_proxy
                        && !down.contains(*p)
                        && CELLS.iter().all(|cell| {
                            masters.0.get(cell).is_some_and(|(m, serving)| {
                                let refused = !serving && !connected(p, cell);
                                !busy(&undo, p, m) && !refused
                            })
                        })
                })
                .collect();
            // A master recovering from a failover refuses `ClaimSession` too: a client
            // can move to a proxy that does not hold it yet only once no cell recovers.
            let recovering = masters.0.values().any(|(_, serving)| !serving);
            let current = r.current.clone();
            let holds = |proxy: &str, c: &str| {
                let id = current
                    .get(c)
                    .and_then(|s| <[u8; 16]>::try_from(s.id().as_bytes()).ok());
                states
                    .get(proxy)
                    .is_some_and(|p| id.is_some_and(|id| p.has_client(&id)))
            };
            for (i, c) in clients.iter().enumerate() {
                let usable = |p: &str| {
                    reaching.contains(&p) && !busy(&undo, c, p) && (!recovering || holds(p, c))
                };
                // The proxy the client's session talks to. When it stops being usable the
                // client cannot tell at once (a crash is silent, a partition holds its
                // calls): it learns when its lease has ended and its KeepAlive in
                // jeopardy has gone unanswered (2 s), and may then try that proxy once
                // more (another 2 s) before the next. Until then it counts as cut off,
                // whatever the other proxy could do for it.
                let on = current
                    .get(c)
                    .filter(|_| proxied[i])
                    .map(|s| (s.master(), s.lease()))
                    .map(|(addr, lease)| {
                        (
                            addr.split(':').next().unwrap_or_default().to_string(),
                            lease,
                        )
                    });
                if let Some((p, _)) = &on {
                    if PROXIES.contains(&p.as_str()) {
                        let last = last_proxy.insert(c.clone(), p.clone());
                        if last.is_some_and(|l| l != *p) {
                            moves += 1;
                        }
                    }
                }
                let noticed = match &on {
                    Some((p, _)) if usable(p) => {
                        unnoticed.remove(c);
                        true
                    }
                    Some((p, lease)) => {
                        let by = unnoticed
                            .entry(c.clone())
                            .and_modify(|(q, _)| {
                                if q != p {
                                    *q = p.clone();
                                }
                            })
                            .or_insert_with(|| (p.clone(), now + *lease + Duration::from_secs(4)))
                            .1;
                        now >= by
                    }
                    None => true,
                };
                let on_usable = on.as_ref().is_some_and(|(p, _)| usable(p));
                let reachable = !crashed.contains(c)
                    && if proxied[i] {
                        on_usable || (noticed && PROXIES.iter().any(|p| usable(p)))
                    } else {
                        CELLS.iter().all(|cell| {
                            masters.0.get(cell).is_some_and(|(m, _)| !busy(&undo, c, m))
                        })
                    };
                r.set_reachable(c, reachable, at);
            }
        }
    };
    {
        let mut r = rec.borrow_mut();
        r.coverage.store_fenced = stores.values().map(|s| s.fenced_off()).sum();
        r.coverage.proxy_moves = moves;
    }
    finish(
        cfg,
        sim,
        rec,
        outcome,
        Ran {
            faults,
            proxied: has_proxy,
            proxy_trace: Vec::new(),
        },
    )
}

/// Crashes `host` silently (its open links to every other host not held now are cut
/// across the crash) and forgets its cell handle.
fn crash_host(
    sim: &mut turmoil::Sim<'_>,
    undo: &[(Duration, Undo)],
    hosts: &[String],
    host: &str,
    handles: &Mutex<BTreeMap<String, CellHandle>>,
) {
    let peers: Vec<&str> = hosts
        .iter()
        .map(String::as_str)
        .filter(|h| *h != host && !busy(undo, h, host))
        .collect();
    crash_silently(sim, host, &peers);
    handles.lock().expect("the handles").remove(host);
}
