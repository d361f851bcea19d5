//! The chaos harness run as tests (docs/reliability.md, "Chaos"), against the debug `warren`
//! binary the workspace's test build makes (with the `fault-injection` feature, which the
//! root package's tests turn on), real etcd and libfaketime:
//!
//! - a short fixed-seed session of a dozen faults of most kinds, whose history every checker
//!   passes;
//! - one short session per planted bug (`WARREN_PLANT`), each caught by its checker, and the
//!   double grant caught again, at the same schedule, when its seed is run a second time.
//!
//! They need etcd: without it they skip with a notice, except under `CI=true`, where they
//! fail (testkit's `require_etcd`).

use std::path::PathBuf;
use std::time::Duration;
use warren_chaos::run::{run, ChaosReport, Config};
use warren_chaos::schedule::{parse_kinds, schedule, Kind};

/// The `warren` binary: `WARREN_BIN`, else the one next to this test's `deps/` directory
/// (`target/debug/warren`, built by the workspace's test build).
fn warren_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("WARREN_BIN") {
        return b.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/debug/deps");
    let bin = dir.join("warren");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p warren --features fault-injection` \
         (or run the workspace's tests, which build it), or set WARREN_BIN",
        bin.display()
    );
    bin
}

fn config(seed: u64, faults: usize, kinds: &str, plant: Option<&str>) -> Config {
    config_with(seed, faults, kinds, plant, true)
}

fn config_with(
    seed: u64,
    faults: usize,
    kinds: &str,
    plant: Option<&str>,
    plain_writes: bool,
) -> Config {
    let out = tempfile::Builder::new()
        .prefix("warren-chaos-test-")
        .tempdir()
        .expect("a temp dir")
        .keep();
    Config {
        seed,
        faults,
        kinds: parse_kinds(kinds).expect("kinds"),
        bin: warren_bin(),
        out,
        proxied: 4,
        direct: 2,
        plain_writes,
        plant: plant.map(str::to_string),
        warmup: Duration::from_secs(3),
        cooldown: Duration::from_secs(4),
    }
}

/// The checkers that found violations.
fn violated(r: &ChaosReport) -> Vec<String> {
    r.history
        .checkers
        .iter()
        .filter(|c| !c.verdict.is_pass())
        .map(|c| c.checker.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_session_of_a_dozen_faults_passes_every_checker() {
    let Some(_) = warren_testkit::etcd::require_etcd() else {
        return;
    };
    // No reshards: once slots have moved, a direct client's cached copy can outlive a
    // write (docs/reliability.md, "Chaos", "Findings"); until that is fixed this session
    // leaves them out, and the long session covers them.
    let kinds = "kill_cell_master,kill_standby,kill_meta_master,kill_proxy,kill_etcd_leader,\
                 kill_etcd_follower,pause,blackhole,delay";
    // Plain writes and compare-and-swaps, from proxied and direct clients (the default
    // mix of `config_with`: 4 through the proxies, 2 at the cells).
    let cfg = config_with(11, 12, kinds, None, true);
    let out = cfg.out.clone();
    let r = run(cfg).await.expect("the session ran");
    let text = r.to_text();
    assert_eq!(r.violations(), 0, "{text}");
    assert_eq!(r.applied.len(), 12, "{text}");
    let failed: Vec<_> = r.applied.iter().filter(|a| a.error.is_some()).collect();
    assert!(failed.is_empty(), "faults not applied: {failed:?}\n{text}");
    let kinds_applied: std::collections::BTreeSet<Kind> =
        r.applied.iter().map(|a| a.fault.kind).collect();
    assert_eq!(kinds_applied.len(), 9, "{text}");
    // The workload did something of every sort, and every file had its final read.
    for kind in [
        "read",
        "write",
        "cas",
        "acquire",
        "fenced_write",
        "final_read",
    ] {
        let n = r.history.by_kind.get(kind).map_or(0, |c| c.ok);
        assert!(n > 0, "no successful {kind}\n{text}");
    }
    assert_eq!(r.history.by_kind["final_read"].ok, 8, "{text}");
    // Every kind applied has its unavailability measured.
    for k in &kinds_applied {
        assert!(r.unavailability.contains_key(k.name()), "{text}");
    }
    for f in ["history.jsonl", "report.txt", "report.json"] {
        assert!(out.join(f).exists(), "{f} not written");
    }
    // The history on disk judges the same.
    let h = warren_history::History::from_json_lines(
        &std::fs::read_to_string(out.join("history.jsonl")).unwrap(),
    )
    .expect("the history parses");
    assert_eq!(h.seed.as_deref(), Some("chaos-11"));
    let _ = std::fs::remove_dir_all(out);
}

/// A short session with `plant` in every cell; the checkers it violated.
async fn planted(plant: &str, seed: u64) -> (ChaosReport, Vec<String>) {
    let cfg = config(seed, 2, "pause,delay", Some(plant));
    let out = cfg.out.clone();
    let r = run(cfg).await.expect("the session ran");
    let v = violated(&r);
    // The schedule is the seed's.
    assert_eq!(
        r.schedule,
        schedule(seed, 2, &[Kind::Pause, Kind::Delay]),
        "the schedule is not the seed's"
    );
    assert!(
        r.to_text().contains(&r.replay),
        "the report names the replay"
    );
    let _ = std::fs::remove_dir_all(out);
    (r, v)
}

fn hint() -> &'static str {
    "(is the warren binary a fault-injection build? `cargo build -p warren --features fault-injection`)"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_granted_twice_is_reported_by_the_lock_checker_and_the_seed_reproduces_it() {
    let Some(_) = warren_testkit::etcd::require_etcd() else {
        return;
    };
    for run in 0..2 {
        let (r, v) = planted("double-grant", 21).await;
        assert!(
            v.contains(&"locks".to_string()),
            "run {run}: the lock checker missed the double grant {}\n{}",
            hint(),
            r.to_text()
        );
        let locks = r.history.checker("locks").unwrap();
        assert!(
            locks.verdict.violations()[0]
                .explanation
                .contains("held by two at once"),
            "{:?}",
            locks.verdict.violations()[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_dropped_is_reported_by_the_file_and_lost_write_checkers() {
    let Some(_) = warren_testkit::etcd::require_etcd() else {
        return;
    };
    let (r, v) = planted("drop-write", 22).await;
    assert!(
        v.contains(&"files".to_string()) && v.contains(&"lost_writes".to_string()),
        "the dropped writes went unreported {}\n{}",
        hint(),
        r.to_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_read_is_reported_by_the_cache_checker() {
    let Some(_) = warren_testkit::etcd::require_etcd() else {
        return;
    };
    let (r, v) = planted("stale-cache", 23).await;
    assert!(
        v.contains(&"caches".to_string()),
        "the stale cached reads went unreported {}\n{}",
        hint(),
        r.to_text()
    );
    // Nothing else is wrong: the cell itself stays linearizable and loses nothing.
    for c in ["locks", "files", "lost_writes"] {
        assert!(!v.contains(&c.to_string()), "{c} violated\n{}", r.to_text());
    }
}
