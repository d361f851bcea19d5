//! The deterministic simulation's tests (docs/reliability.md, "Deterministic
//! simulation"): a seed replays exactly; a fixed slice of seeds (`WARREN_SIM_SEEDS`,
//! default 50, from `WARREN_SIM_FIRST_SEED`, default 0), each with some clients through
//! the proxy, passes every history checker; each planted bug (a double grant, a dropped
//! acknowledged write, a stale cached read) is caught by the checker that owns its
//! property, and the seed that catches it replays.
//!
//! Runs with proxied clients replay exactly too (`a_proxied_seed_replays_exactly`): the
//! proxy's core takes its RNG's seed from the run, and its hash maps have fixed keys.

use std::time::Instant;
use warren_sim::record::Coverage;
use warren_sim::{run, Planted, Report, SimConfig, EXACT_REPLAY};

/// Says loudly that this build cannot check exact replay.
/// Under `CI=true` a build without the flag fails instead: CI must check replay.
fn no_exact_replay() {
    let msg = "built without --cfg tokio_unstable (.cargo/config.toml sets it; a RUSTFLAGS in \
               the environment replaces that): tokio's select! is not seeded, so exact replay \
               cannot be checked (docs/reliability.md, \"Deterministic simulation\")";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    eprintln!("NOTE: {msg}");
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v:?} is not a whole number; set it to e.g. {name}=42"),
    }
}

/// A failed run: the history checkers' report (verdicts, and each violation's minimal
/// slice), the faults applied, and the replay command.
fn describe(r: &Report) -> String {
    format!(
        "seed {}: {} violation(s) ({:?}); through the proxy: {:?}\n{}\n{}faults: {:?}\ncoverage: {}\n{}",
        r.seed,
        r.violations.len(),
        r.violated,
        r.proxied_clients,
        r.checked,
        r.violations
            .iter()
            .filter(|v| v.starts_with("liveness"))
            .map(|v| format!("{v}\n"))
            .collect::<String>(),
        r.faults,
        r.coverage.summary(),
        r.replay_hint()
    )
}

/// Whether `WARREN_SIM_DIRECT` asks for runs without the proxy (`1`, `true`, `on`).
fn direct_asked() -> bool {
    matches!(
        std::env::var("WARREN_SIM_DIRECT").as_deref(),
        Ok("1" | "true" | "on" | "yes")
    )
}

/// Whether `WARREN_SIM_DEPLOYMENT` asks for runs of the whole deployment (`1`, …).
fn deployment_asked() -> bool {
    matches!(
        std::env::var("WARREN_SIM_DEPLOYMENT").as_deref(),
        Ok("1" | "true" | "on" | "yes")
    )
}

/// The run of `seed` the environment asks for: the whole deployment
/// (`WARREN_SIM_DEPLOYMENT=1`), one cell without the proxy (`WARREN_SIM_DIRECT=1`), or one
/// cell and the proxy.
fn asked(seed: u64) -> SimConfig {
    if deployment_asked() {
        SimConfig::deployment(seed)
    } else if direct_asked() {
        SimConfig::direct(seed)
    } else {
        SimConfig::new(seed)
    }
}

/// Runs `cfg` twice: the same event log (and digest) and the same violations.
fn assert_replays(cfg: &SimConfig, first: &Report) {
    let seed = cfg.seed;
    let second = run(cfg);
    if first.log != second.log {
        let at = first
            .log
            .iter()
            .zip(&second.log)
            .position(|(a, b)| a != b)
            .unwrap_or(first.log.len().min(second.log.len()));
        panic!(
            "seed {seed} did not replay: the runs differ at event {at}:\n  first:  {:?}\n  second: {:?}\n{}",
            first.log.get(at),
            second.log.get(at),
            first.replay_hint()
        );
    }
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.violations, second.violations);
}

/// Stamps a log line with the simulated time.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let t = turmoil::sim_elapsed().unwrap_or_default();
        write!(w, "{:>9.3}", t.as_secs_f64())
    }
}

/// One seed (`WARREN_SIM_SEED`, default 1): no violation, and the run replays (the same
/// event log and digest). With `--nocapture` it prints the run's event log and the
/// checkers' report; with `WARREN_SIM_HISTORY=<file>` it writes the history there as JSON
/// lines. With `WARREN_SIM_PLANTED=double-grant|dropped-write|stale-cache` that bug is
/// planted, and the run must report violations instead. With `WARREN_SIM_DIRECT=1` the
/// run has no proxy; with `WARREN_SIM_DEPLOYMENT=1` it is of the whole deployment (meta
/// and data cells with standbys, the proxy). With `WARREN_SIM_LOG=<filter>` (e.g. `warren_proxy=debug`) it prints
/// the logs of the run's servers and clients, stamped with the simulated time.
#[test]
fn replay_one_seed() {
    if let Ok(filter) = std::env::var("WARREN_SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(SimTime)
            .with_test_writer()
            .try_init();
    }
    let seed = env_u64("WARREN_SIM_SEED").unwrap_or(1);
    let planted = match std::env::var("WARREN_SIM_PLANTED").as_deref() {
        Err(_) | Ok("") => None,
        Ok(name) => Some(Planted::parse(name).unwrap_or_else(|e| panic!("WARREN_SIM_PLANTED={e}"))),
    };
    let base = asked(seed);
    let cfg = SimConfig {
        planted,
        trace_proxy: std::env::var_os("WARREN_SIM_TRACE_PROXY").is_some(),
        ..base
    };
    let first = run(&cfg);
    if let Ok(path) = std::env::var("WARREN_SIM_HISTORY") {
        std::fs::write(&path, first.history.to_json_lines())
            .unwrap_or_else(|e| panic!("WARREN_SIM_HISTORY={path:?}: cannot write it: {e}"));
        println!("the history is in {path} (JSON lines)");
    }
    for line in &first.log {
        println!("{line}");
    }
    for line in &first.proxy_trace {
        println!("{line}");
    }
    println!("{}", first.checked);
    println!(
        "seed {seed}: digest {:016x}, {} events, {} operations, faults {:?}, {:?} simulated\ncoverage: {}",
        first.digest,
        first.log.len(),
        first.operations,
        first.faults,
        first.simulated,
        first.coverage.summary()
    );
    if EXACT_REPLAY {
        assert_replays(&cfg, &first);
    } else {
        no_exact_replay();
    }
    if planted.is_some() {
        assert!(
            !first.violations.is_empty(),
            "seed {seed} did not catch the planted bug"
        );
        println!("{}", describe(&first));
        return;
    }
    assert!(first.violations.is_empty(), "{}", describe(&first));
    assert!(!first.faults.is_empty(), "seed {seed} applied no fault");
}

/// The CI slice of seeds (or the long run, by `WARREN_SIM_SEEDS` and
/// `WARREN_SIM_FIRST_SEED`; `WARREN_SIM_DIRECT=1`: without the proxy;
/// `WARREN_SIM_DEPLOYMENT=1`: the whole deployment): no violation in
/// any, and every 10th seed replays exactly (every `WARREN_SIM_REPLAY_EVERY`th). Prints
/// the figures: seeds/s, operations, violations, and the states covered in
/// aggregate.
#[test]
fn seeds_have_no_violations() {
    let first = env_u64("WARREN_SIM_FIRST_SEED").unwrap_or(0);
    // 50 by default: a run with the proxy costs about twice the CPU of one without, and the
    // CI slice should take about as long as it did with 100 runs without it.
    let count = env_u64("WARREN_SIM_SEEDS").unwrap_or(50);
    let replay_every = env_u64("WARREN_SIM_REPLAY_EVERY").unwrap_or(10).max(1);
    let started = Instant::now();
    let (mut faults, mut ops, mut simulated) = (0usize, 0usize, 0f64);
    let mut coverage = Coverage::default();
    let mut failed = Vec::new();
    let config = asked;
    let (mut proxied, mut replayed) = (0usize, 0usize);
    for seed in first..first + count {
        let cfg = config(seed);
        let r = run(&cfg);
        faults += r.faults.len();
        ops += r.operations;
        simulated += r.simulated.as_secs_f64();
        coverage.merge(&r.coverage);
        proxied += usize::from(r.proxied);
        if EXACT_REPLAY && seed % replay_every == 0 {
            let again = run(&cfg);
            replayed += 1;
            if again.digest != r.digest {
                eprintln!(
                    "seed {seed}{} did not replay (digests {:016x} and {:016x}); {}",
                    if cfg.proxy { "" } else { " without the proxy" },
                    r.digest,
                    again.digest,
                    again.replay_hint()
                );
                failed.push(seed);
            }
        }
        if !r.violations.is_empty() {
            eprintln!("{}", describe(&r));
            failed.push(seed);
        }
        let done = seed - first + 1;
        if done % 500 == 0 {
            println!(
                "progress: {done} seeds, {} failed, {:.2} seeds/s, {}",
                failed.len(),
                done as f64 / started.elapsed().as_secs_f64(),
                coverage.summary()
            );
        }
    }
    let took = started.elapsed();
    if !EXACT_REPLAY {
        no_exact_replay();
    }
    println!(
        "{count} seeds from {first} ({proxied} with clients through the proxy; {replayed} checked for replay): {faults} faults, {ops} operations, {:.0} s simulated, {} failed, {:.1} s, {:.2} seeds/s\ncoverage: {}",
        simulated,
        failed.len(),
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64(),
        coverage.summary()
    );
    assert!(
        failed.is_empty(),
        "seeds with violations: {failed:?} (each printed above with its replay command)"
    );
}

/// Runs seeds 0..20 with `planted` on until one reports a violation by `checker`; checks
/// that seed replays with the same violations and is clean without the bug.
fn planted_bug_is_caught(planted: Planted, checker: &str) {
    // Without the proxy: the runs replay exactly (and are the runs these tests were
    // written for).
    planted_bug_is_caught_in(planted, checker, SimConfig::direct);
}

/// [`planted_bug_is_caught`] in the runs `config` makes of each seed.
fn planted_bug_is_caught_in(planted: Planted, checker: &str, config: fn(u64) -> SimConfig) {
    let mut caught = None;
    for seed in 0..20 {
        let cfg = SimConfig {
            planted: Some(planted),
            ..config(seed)
        };
        let r = run(&cfg);
        if r.violated.contains(checker) {
            caught = Some((cfg, r));
            break;
        }
    }
    let (cfg, r) = caught.unwrap_or_else(|| {
        panic!(
            "no seed of 0..20 with the planted {} had the {checker} checker report it",
            planted.name()
        )
    });
    println!("caught: {}", describe(&r));
    let again = run(&cfg);
    assert_eq!(
        again.violations, r.violations,
        "seed {} did not replay",
        r.seed
    );
    assert_eq!(again.digest, r.digest);
    // The same seed without the planted bug is clean.
    let clean = run(&config(r.seed));
    assert!(clean.violations.is_empty(), "{}", describe(&clean));
}

/// An exclusive lock granted while held, at the same generation: two holders accepted at
/// the fenced resource at one generation (`locks`).
#[test]
fn the_planted_double_grant_is_caught() {
    planted_bug_is_caught(Planted::DoubleGrant, "locks");
}

/// One write in 3 acknowledged and dropped: the final read misses it (`lost_writes`).
#[test]
fn the_planted_dropped_write_is_caught() {
    planted_bug_is_caught(Planted::DroppedWrite, "lost_writes");
}

/// A client cache that skips an invalidation: a cached read older than a write already
/// acknowledged to its writer (`caches`).
#[test]
fn the_planted_stale_cache_is_caught() {
    planted_bug_is_caught(Planted::StaleCache, "caches");
}

/// A real bug these seeds found: a call in flight when its session ended (or one re-sent
/// after an attempt of unknown outcome, then refused) failed with `SESSION_EXPIRED`, which
/// the error table calls "not applied", though its first attempt had reached the master
/// and was applied (seed 5: a write acknowledged to nobody, then read back). The library
/// now reports `OUTCOME_UNKNOWN` for such a call; the history checkers flagged the write as
/// a value "no operation wrote" before.
#[test]
fn a_call_in_flight_when_its_session_ends_is_of_unknown_outcome() {
    for seed in [5, 119] {
        let r = run(&SimConfig::direct(seed));
        assert!(r.violations.is_empty(), "{}", describe(&r));
    }
}

/// A bug these seeds found, fixed (docs/reliability.md, "Deterministic simulation"): a
/// session expired after a cut-off well inside its lease. Seed 623: a 2.1 s pause of the
/// cell's network (lease 4.78 s, grace 4 s) swallowed the master's held KeepAlive reply;
/// the client's local lease ended, it entered jeopardy and sent a new KeepAlive that
/// superseded the outstanding one (the delayed reply, which would have made it safe, was
/// discarded), with the 2 s jeopardy deadline; the master, whose own lease for the session
/// was healthy, held that KeepAlive until shortly before its lease ended, past the 2 s;
/// the client timed out, and so on until its grace period ended. A KeepAlive in jeopardy
/// now says so (`KeepAliveRequest.jeopardy`) and the master answers it at once. Seeds 318
/// and 664 were the same.
#[test]
fn a_session_survives_a_pause_that_swallows_a_keepalive_reply() {
    for seed in [623, 318, 664] {
        let r = run(&SimConfig::direct(seed));
        assert!(r.violations.is_empty(), "{}", describe(&r));
    }
}

/// The second (docs/reliability.md, "Two session bugs it found, fixed"). Seed 2929: a reply
/// that delivered an invalidation was lost in a partition; rule (b) kept the master from
/// extending the lease until the client acknowledged it, and the lease ran out 0.14 s
/// after the client's jeopardy KeepAlive arrived, the reply repeating the event still on
/// its way. A KeepAlive in jeopardy now counts the client's (emptied) cache as
/// acknowledged and extends the lease. Seeds 5296, 5657 and 5804 were the same.
#[test]
fn a_session_whose_lost_reply_carried_events_survives_its_return() {
    for seed in [2929, 5296, 5657, 5804] {
        let r = run(&SimConfig::direct(seed));
        assert!(r.violations.is_empty(), "{}", describe(&r));
    }
}

/// The runs of the regression tests above were runs without the proxy (their seeds name
/// those runs; `SimConfig::direct` draws every choice as the simulation did then). The
/// same seeds with clients through the proxy must pass too.
#[test]
fn the_regression_seeds_pass_with_the_proxy() {
    for seed in [5, 623, 2929] {
        let r = run(&SimConfig::new(seed));
        assert!(r.proxied, "seed {seed} has no client through the proxy");
        assert!(r.violations.is_empty(), "{}", describe(&r));
    }
}

/// A seed with clients through the proxy replays exactly: the proxy's core takes its RNG's
/// seed from the run (`warren_proxy::core::set_sim_seed`) and its hash maps have fixed
/// keys in `sim` builds (docs/reliability.md, "Deterministic simulation"). Before, two
/// runs of seed 1 differed from the first session the proxy made (`client1`'s session id).
#[test]
fn a_proxied_seed_replays_exactly() {
    let cfg = SimConfig::new(1);
    let first = run(&cfg);
    assert!(first.proxied);
    assert!(first.violations.is_empty(), "{}", describe(&first));
    if !EXACT_REPLAY {
        no_exact_replay();
        return;
    }
    assert_replays(&cfg, &first);
}

/// The whole deployment (a meta cell and two data cells, each a master and a standby over
/// a fenced store; two proxies routing by the map): a fixed slice of seeds passes every
/// checker, with failovers of masters crashed, frozen and cut from their stores among its
/// faults and clients moving between the proxies, and the first seed replays exactly.
#[test]
fn the_whole_deployment_passes_its_slice_of_seeds() {
    let mut coverage = Coverage::default();
    // Seeds 0–7, and 18, where clients move between the proxies.
    for seed in (0..8).chain([18]) {
        let cfg = SimConfig::deployment(seed);
        let r = run(&cfg);
        assert!(r.violations.is_empty(), "{}", describe(&r));
        if seed == 0 {
            if EXACT_REPLAY {
                assert_replays(&cfg, &r);
            } else {
                no_exact_replay();
            }
        }
        coverage.merge(&r.coverage);
    }
    println!("coverage: {}", coverage.summary());
    for kind in [
        "master-crash",
        "standby-crash",
        "master-freeze",
        "store-cut",
        "proxy-crash",
    ] {
        assert!(
            coverage.faults.contains_key(kind),
            "no {kind} in the slice: {}",
            coverage.summary()
        );
    }
    assert!(coverage.failovers > 0, "{}", coverage.summary());
    assert!(coverage.proxy_moves > 0, "{}", coverage.summary());
}

/// In the whole deployment too, the lock checker catches a double grant and the file
/// checkers a dropped acknowledged write, and the seed that catches each replays.
#[test]
fn planted_bugs_are_caught_in_the_whole_deployment() {
    planted_bug_is_caught_in(Planted::DoubleGrant, "locks", SimConfig::deployment);
    planted_bug_is_caught_in(Planted::DroppedWrite, "lost_writes", SimConfig::deployment);
}

/// Two bugs the whole deployment's seeds found, fixed (docs/reliability.md, "The whole
/// deployment"). Seed 153: a restarted replica whose earlier life's mastership lease was
/// still in the store named itself as the master, and kept naming it once cut off from the
/// store; a client in jeopardy followed it back to itself until its grace period ended,
/// while the new master was up. A standby now names nobody then, and the library ignores a
/// replica naming itself. Seed 1376: a data cell's new master, cut off from the meta cell,
/// refused a proxy's `ClaimSession` until it had the partition map, and the proxy claims
/// before it starts its KeepAlives, so its session there expired. Claims are now served
/// without the map (a session call), and the proxy gives up a claim before its lease ends.
/// Seed 5750: a restarted proxy's first session at a cell claimed its clients there naming
/// no predecessor, and so took back a client the other proxy had adopted meanwhile, which
/// lost its session. A first session now claims nothing. Seed 5885: a call a client sent
/// its proxy before it moved to the other arrived late, and that proxy adopted it back. A
/// late call naming the epoch the proxy had shown the client is now refused.
#[test]
fn the_whole_deployment_regression_seeds_pass() {
    for seed in [153, 1376, 5750, 5885] {
        let r = run(&SimConfig::deployment(seed));
        assert!(r.violations.is_empty(), "{}", describe(&r));
    }
}
