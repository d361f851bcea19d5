//! Tests of what saved run reports prove: floors, ceilings, and why a run proves nothing.

use super::*;
use crate::plan::test_support::{demand, res};
use crate::plan::{plan, Basis};
use crate::report::Percentiles;

fn op(count: u64, errors: u64, busy: u64, secs: f64, p99_ms: f64) -> OpReport {
    OpReport {
        count,
        errors,
        busy,
        throughput_per_s: count as f64 / secs,
        latency: Percentiles {
            p50_ms: p99_ms / 4.0,
            p99_ms,
            ..Default::default()
        },
    }
}

fn endpoint(admin: &str, role: &str, cell_ka: Option<f64>) -> EndpointReport {
    EndpointReport {
        admin: admin.into(),
        role: role.into(),
        window_s: 41.0,
        rpc_per_s: None,
        proxy_rpc_per_s: None,
        cell_keepalives_per_s: cell_ka,
        client_keepalives_per_s: None,
    }
}

/// A clean run through 2 proxies with 1 scraped cell: 300k sessions (150k per proxy),
/// 50k reads/s (25k per proxy), 100 writes/s + 20 lock ops/s (60 per proxy, 120 per cell),
/// 3.5 KeepAlives/s at the cell.
fn clean_report() -> Report {
    let secs = 30.0;
    let mut r = Report {
        target: "proxies".into(),
        addresses: vec!["10.0.0.1:7201".into(), "10.0.0.2:7201".into()],
        ramp_s: 11.0,
        duration_s: secs,
        read_rate: 50_000.0,
        write_rate: 100.0,
        lock_rate: 20.0,
        acked_lost_checked: true,
        ..Default::default()
    };
    r.ops.insert("read".into(), op(1_500_000, 0, 0, secs, 5.0));
    r.ops.insert("write".into(), op(3_000, 0, 0, secs, 8.0));
    r.ops.insert("lock".into(), op(450, 0, 150, secs, 9.0));
    r.sessions.target = 300_000;
    r.sessions.created = 300_000;
    r.sessions.keepalives = 1_000_000;
    r.sessions.closed = 300_000;
    r.endpoints = vec![
        endpoint("10.0.0.1:7281", "proxy", None),
        endpoint("10.0.1.1:7181", "cell", Some(3.5)),
    ];
    r.finish_totals();
    r
}

#[test]
fn capacities_from_a_report() {
    let cap = Capacity::from_reports(&[("big.json".to_string(), clean_report())]);
    assert!(cap.notes.is_empty(), "{:?}", cap.notes);
    // Above the defaults: the measurements win.
    assert_eq!(cap.proxy.sessions.value, 150_000.0);
    assert_eq!(cap.proxy.sessions.basis, Basis::Measured);
    let src = cap.proxy.sessions.source.to_string();
    assert!(
        src.starts_with("big.json: 300,000 sessions ÷ 2 proxies"),
        "{src}"
    );
    assert_eq!(cap.proxy.reads_per_s.value, 25_000.0);
    assert_eq!(cap.proxy.reads_per_s.basis, Basis::Measured);
    // Below the defaults: floors, kept for information; the default stays (60 < 1,000).
    assert_eq!(cap.proxy.writes_per_s.value, 1_000.0);
    assert_eq!(cap.proxy.writes_per_s.basis, Basis::Assumed);
    assert_eq!(cap.proxy.writes_per_s.floor.as_ref().unwrap().value, 60.0);
    assert_eq!(cap.cell.writes_per_s.floor.as_ref().unwrap().value, 120.0);
    assert_eq!(cap.cell.keepalives_per_s.floor.as_ref().unwrap().value, 3.5);
    // Through proxies, uncached reads per cell are not measured.
    assert!(cap.cell.reads_per_s.floor.is_none());

    // 450k clients, 10k reads/s, 10 writes/s: sessions ceil(450k × 1.5 / 150k) = ceil(4.5)
    // = 5; one down ceil(3) + 1 = 4. Reads on the measured 25k: ceil(10k × 1.5 / 25k) = 1,
    // one down 2; writes on the default 1,000: ceil(15 / 1,000) = 1, one down 2.
    let p = plan(&demand(450_000, 10_000.0, 10.0, 0.0), &cap, 0.5).unwrap();
    assert_eq!(p.proxies, 5);
    assert_eq!(p.proxy_binding, "sessions");
    let s = res(&p, Tier::Proxy, "sessions");
    assert_eq!(s.basis, Basis::Measured);
    assert!(s.source.contains("big.json"));
    // On proven figures: reads → 1 (one down: 2), writes → 1 (one down: 2), sessions 5.
    assert_eq!(p.proxies_on_proven, Some(5));
    // Cell reads have demand (500/s) and no floor: no proven-only cell count.
    assert_eq!(p.cells_on_proven, None);
    let w = res(&p, Tier::Proxy, "writes");
    // On the proven 60/s: ceil(15 / 60) = 1 with headroom, ceil(10 / 60) + 1 = 2 one down.
    assert_eq!((w.proven, w.needed_on_proven), (Some(60.0), Some(2)));
    assert!(
        p.summary().contains("[runs proved ≥ 60]"),
        "{}",
        p.summary()
    );

    // The same report read back from its JSON gives the same capacity.
    let json = serde_json::to_string(&clean_report()).unwrap();
    let from_json =
        Capacity::from_json(&[("big.json".to_string(), json)], &Criteria::default()).unwrap();
    assert_eq!(from_json, cap);
}

#[test]
fn the_best_of_several_runs_wins_and_json_may_be_partial() {
    let small = r#"{"target":"proxies","addresses":["a","b"],"ramp_s":11,"duration_s":30,
        "ops":{"read":{"count":300000,"errors":0,"p99_ms":2.0}},
        "sessions":{"created":240000,"keepalives":500000},
        "absorption_factor":null,"some_future_field":[1,2]}"#;
    let big = serde_json::to_string(&clean_report()).unwrap();
    let cap = Capacity::from_json(
        &[
            ("small.json".to_string(), small.to_string()),
            ("big.json".to_string(), big),
        ],
        &Criteria::default(),
    )
    .unwrap();
    // 240k/2 = 120k < 150k: big.json wins.
    assert_eq!(cap.proxy.sessions.value, 150_000.0);
    assert!(cap
        .proxy
        .sessions
        .source
        .to_string()
        .starts_with("big.json"));
    // small.json has no cell endpoint: noted.
    assert!(
        cap.notes
            .iter()
            .any(|n| n.starts_with("small.json: no per-cell figures")),
        "{:?}",
        cap.notes
    );
    let err = Capacity::from_json(
        &[("broken.json".to_string(), "{not json".to_string())],
        &Criteria::default(),
    )
    .unwrap_err();
    assert!(err
        .to_string()
        .starts_with("broken.json is not a `warren loadtest run"));
}

#[test]
fn troubled_runs_are_not_proof() {
    // Jeopardy: the sessions figure becomes a ceiling (150k, above the 100k default, so
    // the default stays) and no rate of the run is proof (reads: the 10k default stays).
    let mut r = clean_report();
    r.sessions.jeopardy = 3;
    let cap = Capacity::from_reports(&[("j.json".to_string(), r)]);
    assert_eq!(cap.proxy.sessions.value, 100_000.0);
    assert_eq!(cap.proxy.sessions.basis, Basis::Assumed);
    assert!(cap.proxy.sessions.floor.is_none());
    assert_eq!(
        cap.proxy.sessions.ceiling.as_ref().unwrap().value,
        150_000.0
    );
    assert_eq!(cap.proxy.reads_per_s.value, 10_000.0);
    assert_eq!(cap.proxy.reads_per_s.basis, Basis::Assumed);
    assert!(cap.proxy.reads_per_s.floor.is_none());
    assert!(cap.cell.keepalives_per_s.floor.is_none());
    assert!(
        cap.notes
            .iter()
            .any(|n| n.contains("proxy reads figure is not used as proof: 3 jeopardy")),
        "{:?}",
        cap.notes
    );

    // Reads past the SLO at 5k/s per proxy (300k reads / 30 s / 2 proxies): a ceiling
    // below the 10k default caps it.
    let mut r = clean_report();
    r.ops.insert("read".into(), op(300_000, 0, 0, 30.0, 250.0));
    let cap = Capacity::from_reports(&[("slow.json".to_string(), r)]);
    assert_eq!(cap.proxy.reads_per_s.value, 5_000.0);
    assert_eq!(cap.proxy.reads_per_s.basis, Basis::Ceiling);
    let src = cap.proxy.reads_per_s.source.to_string();
    assert!(src.contains("read p99 250.0 ms > SLO 100 ms"), "{src}");
    // The other kinds were fine: still proof.
    assert_eq!(cap.proxy.sessions.value, 150_000.0);
    let p = plan(&demand(1_000, 12_000.0, 0.0, 0.0), &cap, 0.5).unwrap();
    // ceil(12k × 1.5 / 5k) = ceil(3.6) = 4; one down ceil(2.4) + 1 = 4.
    assert_eq!((p.proxies, p.proxy_binding.as_str()), (4, "reads"));
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("ceiling from an overloaded run")));

    // Errors above 0.1% of the writes: ceiling for the write figures (60 per proxy, below
    // the 1,000 default).
    let mut r = clean_report();
    r.ops.insert("write".into(), op(3_000, 30, 0, 30.0, 8.0));
    let cap = Capacity::from_reports(&[("err.json".to_string(), r)]);
    assert!(cap.proxy.writes_per_s.floor.is_none());
    assert_eq!(cap.proxy.writes_per_s.ceiling.as_ref().unwrap().value, 60.0);
    assert_eq!(cap.proxy.writes_per_s.value, 60.0);
    assert!(cap
        .proxy
        .writes_per_s
        .source
        .to_string()
        .contains("30 of 3030 writes failed"));

    // Lost writes and injected faults: nothing used at all.
    let mut r = clean_report();
    r.acked_lost = 2;
    let cap = Capacity::from_reports(&[("lost.json".to_string(), r)]);
    assert_eq!(cap.proxy, Capacity::builtin().proxy);
    assert!(cap.notes[0].contains("2 acknowledged write(s) were lost"));
    let mut v = serde_json::to_value(clean_report()).unwrap();
    v["faults"] = serde_json::json!([{"action": "kill", "member": "p1", "at_s": 3.0}]);
    let cap =
        Capacity::from_json(&[("f.json".into(), v.to_string())], &Criteria::default()).unwrap();
    assert_eq!(cap.proxy, Capacity::builtin().proxy);
    assert!(cap.notes[0].contains("fault(s) were injected"));
    // A reshard: a test of the move, not of capacity.
    let mut v = serde_json::to_value(clean_report()).unwrap();
    v["reshard"] = serde_json::json!({"spec": "add-cell@10s", "state": "done"});
    let cap =
        Capacity::from_json(&[("r.json".into(), v.to_string())], &Criteria::default()).unwrap();
    assert_eq!(cap.proxy, Capacity::builtin().proxy);
    assert!(
        cap.notes[0].contains("a reshard (add-cell@10s) ran during it"),
        "{:?}",
        cap.notes
    );

    // Too short to have renewed every session.
    let mut r = clean_report();
    r.ramp_s = 1.0;
    r.duration_s = 3.0;
    let cap = Capacity::from_reports(&[("short.json".to_string(), r)]);
    assert!(cap.proxy.sessions.floor.is_none());
    assert!(cap
        .notes
        .iter()
        .any(|n| n.contains("shorter than one client lease")));
}

#[test]
fn assumed_binding_figure_above_the_proof_is_flagged() {
    // A light run proved 1,000 sessions per proxy; the default (100k) is used, and the
    // plan says how many proxies the proof alone would need: ceil(250k × 1.5 / 1000) = 375.
    let mut r = clean_report();
    r.sessions.created = 2_000;
    r.ops.clear();
    r.endpoints.clear();
    r.finish_totals();
    let cap = Capacity::from_reports(&[("light.json".to_string(), r)]);
    let p = plan(&demand(250_000, 0.0, 0.0, 0.0), &cap, 0.5).unwrap();
    assert_eq!(p.proxies, 4);
    assert_eq!(p.proxies_on_proven, Some(375));
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("assumed sessions figure") && n.contains("alone: 375")),
        "{:?}",
        p.notes
    );
}
