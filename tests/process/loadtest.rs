//! `warren loadtest run` end to end (issue 7): a short run through the proxy of a
//! `warren dev` deployment (meta cell, 2 data cells, 1 proxy) started as a process, its
//! JSON report read back; and its refusals.

use crate::bin;
use std::net::TcpListener;
use std::time::Duration;
use warren_testkit::WarrenProcess;

/// A base port P for `warren dev` whose layout's ports (meta P, cells P+1.., admin P+80..,
/// proxy P+101, admin P+181) are all free right now.
fn free_base_port(cells: u16) -> u16 {
    let seed = std::process::id() as u16;
    for attempt in 0..200u16 {
        let p = 20_000
            + (seed
                .wrapping_mul(31)
                .wrapping_add(attempt.wrapping_mul(397)))
                % 40_000;
        let mut ports = vec![p, p + 80, p + 101, p + 181];
        ports.extend((1..=cells).flat_map(|k| [p + k, p + 80 + k]));
        if ports
            .iter()
            .all(|&q| TcpListener::bind(("127.0.0.1", q)).is_ok())
        {
            return p;
        }
    }
    panic!("no free base port found for warren dev");
}

async fn loadtest(args: &[&str]) -> std::process::Output {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(bin())
            .arg("loadtest")
            .arg("run")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("warren loadtest run finishes within 120 s")
    .expect("run warren loadtest");
    eprintln!(
        "warren loadtest run {args:?}\n--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn short_run_through_a_dev_proxy_reports_sensible_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("dev");
    let base = free_base_port(2);
    let base_s = base.to_string();
    let _dev = WarrenProcess::spawn(
        bin(),
        &[
            "dev",
            "--data",
            data.to_str().expect("utf-8 path"),
            "--cells",
            "2",
            "--proxies",
            "1",
            "--base-port",
            &base_s,
        ],
    )
    .await;
    let proxy = format!("proxies=127.0.0.1:{}", base + 101);
    // One admin address: warren dev's components share one metrics registry.
    let admin = format!("127.0.0.1:{}", base + 181);
    let json = dir.path().join("report.json");
    let html = dir.path().join("report.html");
    let out = loadtest(&[
        "--target",
        &proxy,
        "--sessions",
        "50",
        "--connections",
        "4",
        "--duration",
        "3s",
        "--ramp",
        "1s",
        "--read-rate",
        "40",
        // Few writes and locks: each wakes the KeepAlives of the sessions that read the
        // file (invalidations), at the proxy and at the cell, which lowers the factor.
        "--write-rate",
        "2",
        "--lock-rate",
        "1",
        "--files",
        "10",
        "--zipf",
        "1.1",
        "--metrics",
        &admin,
        "--json",
        json.to_str().expect("utf-8 path"),
        "--html",
        html.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(out.status.success(), "warren loadtest run failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("p99 ms"), "{stdout}");
    assert!(stdout.contains("absorption factor"), "{stdout}");

    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("valid JSON");
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert_eq!(r["sessions"]["created"], 50, "{r:#}");
    assert_eq!(r["sessions"]["closed"], 50, "{r:#}");
    assert_eq!(r["sessions"]["expired"], 0, "{r:#}");
    assert_eq!(r["sessions"]["jeopardy"], 0, "{r:#}");
    assert_eq!(r["errors"], 0, "{r:#}");
    // Every written file was read back after the run, and holds its last acknowledged write.
    assert_eq!(r["acked_lost_checked"], true, "{r:#}");
    assert_eq!(r["acked_lost"], 0, "{r:#}");
    assert!(num(&r["ops_total"]) > 0.0, "{r:#}");
    // 40 reads/s for 3 s: Poisson, so about 120; well above 40 whatever the luck.
    assert!(num(&r["ops"]["read"]["count"]) > 40.0, "{r:#}");
    assert!(num(&r["ops"]["write"]["count"]) > 0.0, "{r:#}");
    for op in ["read", "write"] {
        let o = &r["ops"][op];
        let (p50, p99, max) = (num(&o["p50_ms"]), num(&o["p99_ms"]), num(&o["max_ms"]));
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{op}: {o:#}");
        assert!(max < 10_000.0, "{op}: {o:#}");
    }
    // Every session's first KeepAlive reached the proxy; far fewer reached the cells.
    assert!(num(&r["keepalives"]["client_at_proxies"]) >= 50.0, "{r:#}");
    match r["absorption_factor"].as_f64() {
        Some(f) => assert!(f > 1.0, "absorption factor {f}: {r:#}"),
        // No KeepAlive reached a cell during the run: unbounded.
        None => assert_eq!(num(&r["keepalives"]["at_cells"]), 0.0, "{r:#}"),
    }
    let endpoint = &r["endpoints"][0];
    assert_eq!(endpoint["admin"], admin.as_str());
    assert!(num(&endpoint["rpc_per_s"]) > 0.0, "{endpoint:#}");

    // The timeline: one sample a second of the 3 s window, whose counts add up to the
    // whole run's.
    let timeline = r["timeline"].as_array().expect("a timeline");
    assert!((3..=5).contains(&timeline.len()), "{r:#}");
    for op in ["read", "write", "lock"] {
        let sum: f64 = timeline.iter().map(|t| num(&t["ops"][op]["count"])).sum();
        assert_eq!(sum, num(&r["ops"][op]["count"]), "{op}: {r:#}");
    }
    let last = &timeline[timeline.len() - 1]["sessions"];
    assert_eq!(num(&last["safe"]), 50.0, "{r:#}");
    assert_eq!(num(&last["jeopardy"]), 0.0, "{r:#}");
    assert_eq!(num(&last["expired"]), 0.0, "{r:#}");

    // The HTML report: self-contained, with its three plots.
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert_eq!(page.matches("<svg").count(), 3, "{page}");
    assert_eq!(page.matches("</svg>").count(), 3, "{page}");
    assert!(page.contains("<polyline"), "{page}");
    assert!(!page.contains("NaN") && !page.contains("<script"), "{page}");
}

#[tokio::test]
async fn refusals_are_clear() {
    let out = loadtest(&["--target", "cells=127.0.0.1:1", "--duration", "1s"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not built yet"));

    let out = loadtest(&["--target", "127.0.0.1:1"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("proxies="));

    // Nothing listens there: the error names the address.
    let out = loadtest(&["--target", "proxies=127.0.0.1:1", "--duration", "1s"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"));
}
