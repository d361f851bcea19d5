//! What one simulated run records: the event log (what the trace digest hashes), the
//! history of every client operation for the shared checkers (`warren_history`, with
//! invocation and completion times on the simulated clock), the sequencer-fenced resource
//! the lock holders write to, each client's reachability from the fault schedule, and the
//! coverage of the run (docs/reliability.md, "Deterministic simulation").
//!
//! Every property is judged by `warren_history::check_all` over the history; this module
//! asserts nothing itself. What the history's checkers cannot see and the run still
//! checks is liveness (the run and the final reads finish in bounded simulated time), in
//! `lib.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;
use warren_history::{LockMode, Nanos, Op, Outcome, Recorder, Ret};
use warren_proto::error::ErrorCode;

/// The fenced resource's name in the history.
pub const RESOURCE: &str = "resource";

/// Everything the hosts of one run share. One thread runs a whole simulation, so it lives
/// in a `RefCell` shared by the hosts' tasks.
#[derive(Default)]
pub struct Record {
    /// Every event, in the order it happened: what the trace digest hashes.
    pub log: Vec<String>,
    pub history: Recorder,
    pub resource: Resource,
    /// Whether the setup created every file: the workload starts then.
    pub ready: bool,
    /// Workload clients that have finished (or crashed).
    pub finished: usize,
    /// The fault kinds in force now (`none` when there is none), for coverage.
    pub active: BTreeSet<&'static str>,
    pub coverage: Coverage,
    /// Liveness failures, which no history checker can see.
    pub stuck: Vec<String>,
    /// Per client, since when it has been able to reach the cell (`None`: cut off now).
    pub reach_since: BTreeMap<String, Option<Nanos>>,
    /// The client each session belongs to (by session id), for its KeepAlives.
    pub session_client: BTreeMap<String, String>,
    /// Sessions their clients began to close: the KeepAlives that end with the close
    /// (`SESSION_EXPIRED` once the master has it) are not recorded, as no expiry.
    pub closing: BTreeSet<String>,
    /// The last lock generation granted, and to whom: a grant to another client is a
    /// handoff.
    pub last_grant: Option<(String, u64)>,
    /// The clients that reach the cell through the proxy.
    pub proxied: BTreeSet<String>,
    /// The proxy's shared state, one per start of its host (a crash loses it; the old
    /// one is kept for its counters): whether its shared cache answered reads.
    pub proxies: Vec<std::sync::Arc<warren_proxy::Shared>>,
    /// A partitioned deployment's meta cell replicas (`HOST:PORT`s): direct sessions are
    /// routed by the partition map there, and the setup writes the first map. Empty: the
    /// one cell at `workload::CELL_HOST`.
    pub meta: Vec<String>,
    /// The data cells the setup's first map names: each cell's name and its replicas.
    pub map_cells: Vec<(String, Vec<String>)>,
    /// That first map (no run changes it): which cell serves each path.
    pub map: Option<warren_router::PartitionMap>,
    /// The proxies the clients of the proxies are given (`HOST:PORT`s); empty: the one
    /// proxy at `workload::PROXY_HOST`.
    pub proxy_addrs: Vec<String>,
    /// Partitioned sessions (direct, in a partitioned deployment) by their id, with their
    /// client: each is made of a session per cell, whose KeepAlives are recorded under
    /// their own ids ([`Record::complete`] learns them) and whose expiries are judged
    /// each by its own KeepAlives.
    pub partitioned: BTreeMap<String, (String, warren_client::Session)>,
    /// Each client's latest session.
    pub current: BTreeMap<String, warren_client::Session>,
}

/// What one run covered (docs/reliability.md, "Deterministic simulation", "Coverage").
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    /// Distinct (fault kind in force, operation, outcome) combinations.
    pub states: BTreeSet<(String, String, String)>,
    /// Faults applied, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Fail-overs: the cell restarted to a new master epoch (whole-deployment runs: a
    /// cell's master replaced by another replica, or by its own next start).
    pub failovers: u64,
    /// Lock grants to a different client than the previous grant.
    pub lock_handoffs: u64,
    /// Invalidations the clients' caches received.
    pub invalidations: u64,
    /// Reads answered from a client cache.
    pub cache_hits: u64,
    /// Sessions observed expired.
    pub sessions_expired: u64,
    /// Fenced writes the resource refused (an older holder fenced out).
    pub fenced_out: u64,
    /// Reads of proxied clients during which the proxy's shared cache answered a read
    /// (recorded as served from the proxy cache).
    pub proxy_cache_reads: u64,
    /// Starts of the proxy host after a crash.
    pub proxy_restarts: u64,
    /// Clients of the proxies seen moving from one proxy to the other (whole-deployment
    /// runs).
    pub proxy_moves: u64,
    /// Commits a cell's fenced store refused because their master's term no longer led
    /// (whole-deployment runs: a deposed master's writes fenced off).
    pub store_fenced: u64,
}

impl Coverage {
    /// Adds `other` into this (the aggregate of many runs).
    pub fn merge(&mut self, other: &Coverage) {
        self.states.extend(other.states.iter().cloned());
        for (k, n) in &other.faults {
            *self.faults.entry(k.clone()).or_default() += n;
        }
        self.failovers += other.failovers;
        self.lock_handoffs += other.lock_handoffs;
        self.invalidations += other.invalidations;
        self.cache_hits += other.cache_hits;
        self.sessions_expired += other.sessions_expired;
        self.fenced_out += other.fenced_out;
        self.proxy_cache_reads += other.proxy_cache_reads;
        self.proxy_restarts += other.proxy_restarts;
        self.store_fenced += other.store_fenced;
        self.proxy_moves += other.proxy_moves;
    }

    /// One line for a report.
    pub fn summary(&self) -> String {
        let via_proxy = self
            .states
            .iter()
            .filter(|(_, op, _)| op.ends_with(VIA_PROXY))
            .count();
        format!(
            "{} states (fault kind x operation x outcome; {} of operations through the proxy), \
             faults {:?}, {} fail-overs, {} proxy restarts, {} lock handoffs, {} fenced out, {} \
             invalidations, {} client-cache reads, {} proxy-cache reads, {} sessions expired, \
             {} store commits fenced off, {} moves between proxies",
            self.states.len(),
            via_proxy,
            self.faults,
            self.failovers,
            self.proxy_restarts,
            self.lock_handoffs,
            self.fenced_out,
            self.invalidations,
            self.cache_hits,
            self.proxy_cache_reads,
            self.sessions_expired,
            self.store_fenced,
            self.proxy_moves
        )
    }
}

/// What a state's operation ends with when its client went through the proxy
/// (`read@proxy`): the coverage tells the two kinds of session apart.
pub const VIA_PROXY: &str = "@proxy";

/// The simulated time now, in nanoseconds: the history's one clock.
pub fn now() -> Nanos {
    nanos(turmoil::sim_elapsed().unwrap_or_default())
}

pub fn nanos(d: Duration) -> Nanos {
    d.as_nanos().min(u128::from(Nanos::MAX)) as Nanos
}

/// A client library error as a history outcome: its code and the error table's effect.
pub fn failed(e: &warren_client::Error) -> Outcome {
    Outcome::Failed {
        code: e.code().unwrap_or(ErrorCode::Internal),
        effect: e.effect(),
    }
}

impl Record {
    /// Logs what a host did (at the simulated time of the host running).
    pub fn event(&mut self, host: &str, what: impl std::fmt::Display) {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        self.event_at(at, host, what);
    }

    /// Logs an event at `at` (the driver's, between steps, where no host runs).
    pub fn event_at(&mut self, at: Duration, host: &str, what: impl std::fmt::Display) {
        self.log
            .push(format!("{:>9.3} {host:<8} {what}", at.as_secs_f64()));
    }

    /// Records how operation `id` ended, now, and what state it covered.
    ///
    /// For an operation of a partitioned session: its cell sessions made so far become
    /// known (their KeepAlives are recorded from now on), and the operation is filed under
    /// the cell session that served it — the one at the cell the map routes its path to —
    /// so that the session checker judges it by that session's KeepAlives. A
    /// `SESSION_EXPIRED` failure with no path is filed under a cell session that expired.
    pub fn complete(&mut self, id: u64, outcome: Outcome) {
        let home = self.history.history().ops[id as usize].session.clone();
        if let Some((client, session)) = self.partitioned.get(&home) {
            let parts = session.cell_sessions();
            for (_, part, _) in &parts {
                self.session_client.insert(part.to_string(), client.clone());
            }
            let op = &self.history.history().ops[id as usize].op;
            let path = match op {
                Op::Open { path, .. }
                | Op::Read { path, .. }
                | Op::Write { path, .. }
                | Op::Delete { path }
                | Op::FinalRead { path } => Some(path.as_str()),
                Op::Acquire { lock, .. }
                | Op::Release { lock }
                | Op::GetSequencer { lock }
                | Op::FencedWrite { lock, .. } => Some(lock.as_str()),
                _ => None,
            };
            let cell = path.and_then(|p| self.cell_of(p));
            let served_by = cell.and_then(|c| {
                parts
                    .iter()
                    .find(|(name, _, _)| *name == c)
                    .map(|(_, part, _)| part.to_string())
            });
            let expired = matches!(&outcome, Outcome::Failed { code, .. } if *code == ErrorCode::SessionExpired);
            let expired_part = || {
                parts
                    .iter()
                    .find(|(_, p, st)| {
                        *st == warren_client::SessionState::Expired && p.to_string() != home
                    })
                    .map(|(_, p, _)| p.to_string())
            };
            if let Some(part) = served_by.or_else(|| expired.then(expired_part).flatten()) {
                self.history.set_session(id, &part);
            }
        }
        let client = &self.history.history().ops[id as usize].client;
        let kind = if self.proxied.contains(client) {
            format!(
                "{}{VIA_PROXY}",
                self.history.history().ops[id as usize].op.name()
            )
        } else {
            self.history.history().ops[id as usize]
                .op
                .name()
                .to_string()
        };
        let result = match &outcome {
            Outcome::Ok(_) => "ok".to_string(),
            Outcome::Failed { code, .. } => {
                if outcome.is_indeterminate() {
                    format!("unknown:{}", code.as_str_name())
                } else {
                    format!("failed:{}", code.as_str_name())
                }
            }
            Outcome::Incomplete => "incomplete".to_string(),
        };
        let faults: Vec<&'static str> = if self.active.is_empty() {
            vec!["none"]
        } else {
            self.active.iter().copied().collect()
        };
        for f in faults {
            self.coverage
                .states
                .insert((f.to_string(), kind.clone(), result.clone()));
        }
        if let Outcome::Ok(Ret::Lock { generation, .. }) = &outcome {
            let client = self.history.history().ops[id as usize].client.clone();
            if matches!(&self.last_grant, Some((c, g)) if *c != client && *g != *generation) {
                self.coverage.lock_handoffs += 1;
            }
            self.last_grant = Some((client, *generation));
        }
        self.history.complete(id, now(), outcome);
    }

    /// Records a call around `call`: invoked now, completed when it returns, its outcome
    /// from `ok` (the result of a success) or the error.
    pub async fn call<T>(
        rec: &std::rc::Rc<std::cell::RefCell<Record>>,
        client: &str,
        session: &str,
        op: Op,
        call: impl Future<Output = Result<T, warren_client::Error>>,
        ok: impl FnOnce(&T) -> Ret,
    ) -> Result<T, warren_client::Error> {
        let id = rec.borrow_mut().history.invoke(client, session, op, now());
        let result = call.await;
        let outcome = match &result {
            Ok(v) => Outcome::Ok(ok(v)),
            Err(e) => failed(e),
        };
        rec.borrow_mut().complete(id, outcome);
        result
    }

    /// How many reads the proxy's shared cache has answered, over every start of the
    /// proxy.
    pub fn proxy_cache_hits(&self) -> u64 {
        self.proxies.iter().map(|p| p.cache_counters().hits).sum()
    }

    /// The cell the first map routes `path` (relative to the deployment's root) to: `meta`
    /// for the reserved subtree; `None` without a map (one-cell runs) or for a path it
    /// cannot route.
    fn cell_of(&self, path: &str) -> Option<String> {
        let map = self.map.as_ref()?;
        let full = format!("/ls/{}{path}", crate::DEPLOYMENT);
        match map.route(&full, false).ok()? {
            warren_router::Route::Meta => Some("meta".to_string()),
            warren_router::Route::Cell { cell, .. } => Some(cell.to_string()),
        }
    }

    /// Forgets session `s` (its client is about to close or drop it): the clones kept in
    /// [`Record::current`] and [`Record::partitioned`] must not outlive the workload's,
    /// or a dropped session would live on (and the run differ from one without them).
    pub fn forget(&mut self, s: &warren_client::Session) {
        let id = s.id();
        self.partitioned.remove(&id.to_string());
        self.current.retain(|_, kept| kept.id() != id);
    }

    /// Notes that the client of session `sid` is closing it.
    pub fn closing(&mut self, sid: &str) {
        self.closing.insert(sid.to_string());
    }

    /// `client` at the fenced resource under its sequencer: the resource's decision,
    /// recorded as a call at this instant.
    pub fn fenced_write(
        &mut self,
        client: &str,
        session: &str,
        instance: u64,
        generation: u64,
    ) -> bool {
        let (accepted, seq) = self.resource.decide((instance, generation));
        if !accepted {
            self.coverage.fenced_out += 1;
        }
        let at = now();
        let id = self.history.invoke(
            client,
            session,
            Op::FencedWrite {
                resource: RESOURCE.into(),
                lock: crate::workload::LOCK.into(),
                instance,
                generation,
                mode: LockMode::Exclusive,
            },
            at,
        );
        self.complete(id, Outcome::Ok(Ret::Fenced { accepted, seq }));
        accepted
    }

    /// `client` can reach the cell from now on (or, with `false`, no longer can): the
    /// reachability spans of the session checker. A span shorter than [`USABLE_REACH`] is
    /// not recorded: a session looking for its master retries only every 1–1.5 s (its
    /// backoff's cap, a quarter of the lease, with jitter), so it may miss such a window
    /// through no fault of Warren's.
    pub fn set_reachable(&mut self, client: &str, reachable: bool, at: Nanos) {
        let since = self.reach_since.entry(client.to_string()).or_insert(None);
        match (*since, reachable) {
            (None, true) => *since = Some(at),
            (Some(from), false) => {
                *since = None;
                if at - from >= nanos(USABLE_REACH) {
                    self.history.reachable(client, from, at);
                }
            }
            _ => {}
        }
    }

    /// Closes every open reachability span at `at` (the end of the run).
    pub fn close_reachability(&mut self, at: Nanos) {
        let open: Vec<String> = self.reach_since.keys().cloned().collect();
        for c in open {
            self.set_reachable(&c, false, at);
        }
    }
}

/// The "resource" a lock protects, fenced by sequencers the way a storage server would
/// (docs/design.md, 5. "Sequencers"): it accepts a write fenced by `(instance,
/// generation)` iff it has accepted none with a higher one. It lives in the simulation's
/// memory, reached without the network, so an old holder cut off from the cell always
/// reaches it: the strictest case for the lock checker.
#[derive(Default)]
pub struct Resource {
    highest: (u64, u64),
    decisions: u64,
}

impl Resource {
    /// Decides a write fenced at `position`: accepted or not, and its place in the
    /// resource's order of decisions.
    pub fn decide(&mut self, position: (u64, u64)) -> (bool, u64) {
        let accepted = position >= self.highest;
        if accepted {
            self.highest = position;
        }
        self.decisions += 1;
        (accepted, self.decisions)
    }
}

/// The lease, grace period and call timeout of the simulated deployment: short, so that
/// expiries and fail-overs happen within a run of a few tens of simulated seconds.
pub const LEASE: Duration = Duration::from_secs(4);
pub const GRACE: Duration = Duration::from_secs(4);
pub const RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// The shortest reachability a session is expected to use (see [`Record::set_reachable`]).
pub const USABLE_REACH: Duration = Duration::from_secs(2);
