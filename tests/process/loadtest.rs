//! `warren loadtest` end to end: short runs through the proxy of a `warren dev`
//! deployment (meta cell, 2 data cells, 1 proxy) started as a process and direct to its
//! cells, their JSON reports read back; a run on a deployment the load test launches
//! itself, with a proxy and a cell master killed (`kill -9`) and the master restarted;
//! `compare`; a reshard under load (`--reshard add-cell@T`); the HTML report's sections and
//! its layout in headless Chromium at 1000 and 1400 px (screenshots saved under
//! target/test-artifacts/); `--cleanup`; and the refusals.

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
    warren_loadtest_cmd("run", args).await
}

async fn warren_loadtest_cmd(command: &str, args: &[&str]) -> std::process::Output {
    let out = tokio::time::timeout(
        Duration::from_secs(150),
        tokio::process::Command::new(bin())
            .arg("loadtest")
            .arg(command)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("warren loadtest finishes within 150 s")
    .expect("run warren loadtest");
    eprintln!(
        "warren loadtest {command} {args:?}\n--- stdout\n{}--- stderr\n{}",
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
    // The member table names the proxy, with its gRPC address and (from its admin
    // endpoint's /status) the admin address scraped.
    let p1 = stdout
        .lines()
        .find(|l| l.starts_with("p1 "))
        .unwrap_or_else(|| panic!("no p1 line: {stdout}"));
    let cols: Vec<&str> = p1.split_whitespace().collect();
    assert_eq!(
        cols[..4],
        [
            "p1",
            "proxy",
            format!("127.0.0.1:{}", base + 101).as_str(),
            admin.as_str()
        ],
        "{p1}"
    );
    assert!(cols[4].parse::<f64>().unwrap() > 0.0, "{p1}");

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
    assert_eq!(num(&last["current"]), 50.0, "{r:#}");
    assert_eq!(num(&last["jeopardy"]), 0.0, "{r:#}");
    assert_eq!(num(&last["expired"]), 0.0, "{r:#}");

    // The HTML report: self-contained, with its four plots.
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert_eq!(page.matches("<svg").count(), 4, "{page}");
    assert_eq!(page.matches("</svg>").count(), 4, "{page}");
    assert!(page.contains("<polyline"), "{page}");
    assert!(!page.contains("NaN") && !page.contains("<script"), "{page}");

    // The same deployment, direct to its cells: each client holds a session at the meta
    // cell and one at each of the 2 data cells, and routes by the map.
    let meta = format!("cells=127.0.0.1:{base}");
    let out = loadtest(&[
        "--target",
        &meta,
        "--sessions",
        "20",
        "--connections",
        "2",
        "--duration",
        "2s",
        "--read-rate",
        "40",
        "--write-rate",
        "5",
        "--lock-rate",
        "2",
        "--files",
        "40",
        "--json",
        json.to_str().expect("utf-8 path"),
        "--cleanup",
    ])
    .await;
    assert!(out.status.success(), "warren loadtest run (cells) failed");
    // --cleanup: the 40 files of this run (the 10 of the first run among them), their 32
    // directories and /loadtest itself are gone from the user's deployment.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cleanup: removed 73 nodes under /loadtest/"),
        "{stdout}"
    );
    let session =
        warren_client::Session::connect_with(warren_client::ClientOptions::proxies([format!(
            "127.0.0.1:{}",
            base + 101
        )]))
        .await
        .expect("a session through the proxy");
    let gone = session
        .open("/loadtest", warren_client::OpenOptions::new().read())
        .await
        .err()
        .and_then(|e| e.code());
    assert_eq!(
        gone,
        Some(warren_proto::ErrorCode::NotFound),
        "/loadtest is still there"
    );
    let _ = session.close().await;
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("valid JSON");
    assert_eq!(r["target"], "cells", "{r:#}");
    assert_eq!(r["sessions_per_client"], 3, "{r:#}");
    assert_eq!(r["addresses"].as_array().map(Vec::len), Some(3), "{r:#}");
    assert_eq!(r["sessions"]["created"], 20, "{r:#}");
    assert_eq!(r["sessions"]["closed"], 20, "{r:#}");
    assert_eq!(r["errors"], 0, "{r:#}");
    assert_eq!(r["acked_lost_checked"], true, "{r:#}");
    assert_eq!(r["acked_lost"], 0, "{r:#}");
    assert!(num(&r["ops"]["read"]["count"]) > 20.0, "{r:#}");
    assert!(num(&r["ops"]["write"]["count"]) > 0.0, "{r:#}");

    // `plan` from that report: a size for 250k clients, its binding resources, and the
    // report named as a source.
    let plan_json = dir.path().join("plan.json");
    let out = warren_loadtest_cmd(
        "plan",
        &[
            "--clients",
            "250000",
            "--read-rate",
            "2000",
            "--write-rate",
            "100",
            "--from",
            json.to_str().expect("utf-8 path"),
            "--json",
            plan_json.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    assert!(out.status.success(), "warren loadtest plan failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The clean run proved floors (shown next to the defaults).
    assert!(stdout.contains("runs proved"), "{stdout}");
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_json).expect("the plan"))
            .expect("valid JSON");
    // 250k sessions at (at most) the built-in 100k per proxy, 50% headroom: ≥ 4 proxies.
    assert!(num(&p["proxies"]) >= 4.0, "{p:#}");
    assert!(num(&p["cells"]) >= 1.0, "{p:#}");
    assert!(
        !p["proxy_binding"].as_str().unwrap_or("").is_empty(),
        "{p:#}"
    );
    let out =
        warren_loadtest_cmd("plan", &["--clients", "10", "--from", "/nonexistent.json"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.json"));
}

/// `--deploy`: the load test launches meta + 2 cells + 2 proxies as processes with a 2 s
/// lease, kills proxy 1 and the master of c1 with SIGKILL during the window, and restarts
/// c1. The clients move to proxy 2, wait out c1's absence, and lose nothing.
#[tokio::test]
async fn kills_on_a_launched_deployment_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("faults.json");
    let out = loadtest(&[
        "--deploy",
        "dev:cells=2,proxies=2",
        "--lease",
        "2s",
        "--sessions",
        "40",
        "--connections",
        "4",
        "--duration",
        "10s",
        "--read-rate",
        "60",
        "--write-rate",
        "15",
        "--lock-rate",
        "3",
        "--files",
        "40",
        "--kill",
        "proxy@2s",
        "--kill",
        "master:c1@4s",
        "--restart",
        "master:c1@5s",
        "--json",
        json.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(out.status.success(), "warren loadtest run --deploy failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("longest wait"), "{stdout}");
    assert!(stdout.contains("fault: kill proxy at 2.0 s"), "{stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("valid JSON");
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    // Every fault took effect, in order.
    let faults = r["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 3, "{r:#}");
    for (f, (action, member)) in faults.iter().zip([
        ("kill", "proxy"),
        ("kill", "master:c1"),
        ("restart", "master:c1"),
    ]) {
        assert_eq!(f["action"], action, "{r:#}");
        assert_eq!(f["member"], member, "{r:#}");
        assert!(f["error"].is_null(), "{r:#}");
        assert!(num(&f["done_s"]) >= num(&f["at_s"]), "{r:#}");
    }
    // No client lost its session; the clients of proxy 1 moved to proxy 2.
    assert_eq!(r["sessions"]["created"], 40, "{r:#}");
    assert_eq!(r["sessions"]["expired"], 0, "{r:#}");
    assert!(num(&r["sessions"]["moved"]) >= 1.0, "{r:#}");
    // No acknowledged write was lost, and no operation failed: the ones that met a failover
    // waited (and were retried) instead.
    assert_eq!(r["acked_lost_checked"], true, "{r:#}");
    assert_eq!(r["acked_lost"], 0, "{r:#}");
    for op in ["read", "write", "lock"] {
        assert_eq!(num(&r["ops"][op]["errors"]), 0.0, "{op}: {r:#}");
    }
    assert!(num(&r["ops"]["write"]["count"]) > 50.0, "{r:#}");
    // Some operation waited for the restart of c1's master (about 1 s after its kill).
    let longest = num(&r["longest_wait_ms"]);
    assert!((300.0..45_000.0).contains(&longest), "{r:#}");
    assert!(num(&r["retries"]) > 0.0, "{r:#}");
    // Each launched member's memory and CPU over the window; p1 was killed (no figures) and
    // c1 restarted (its memory is the new process's, its CPU is left out), each saying so.
    let processes = r["processes"].as_array().expect("processes");
    let names: Vec<&str> = processes
        .iter()
        .map(|p| p["member"].as_str().expect("member"))
        .collect();
    assert_eq!(names, ["meta", "c1", "c2", "p1", "p2"], "{r:#}");
    for p in processes {
        let member = p["member"].as_str().expect("member");
        assert!(num(&p["window_s"]) >= 9.0, "{member}: {r:#}");
        match member {
            "p1" => {
                assert!(p["rss_bytes"].is_null() && p["cpu_s"].is_null(), "{r:#}");
                assert!(p["partial"].is_string(), "{r:#}");
            }
            "c1" => {
                assert!(num(&p["rss_bytes"]) > 1024.0 * 1024.0, "{r:#}");
                assert!(p["cpu_s"].is_null(), "{r:#}");
                assert!(
                    p["partial"]
                        .as_str()
                        .expect("partial")
                        .contains("restarted"),
                    "{r:#}"
                );
            }
            _ => {
                assert!(num(&p["rss_bytes"]) > 1024.0 * 1024.0, "{member}: {r:#}");
                assert!(num(&p["cpu_s"]) >= 0.0, "{member}: {r:#}");
                assert!(p["partial"].is_null(), "{member}: {r:#}");
            }
        }
    }
    // The terminal's member table: p1, killed, says why it has no figures.
    assert!(stdout.contains("\nmembers (RPC/s"), "{stdout}");
    let p1 = stdout
        .lines()
        .find(|l| l.starts_with("p1 "))
        .unwrap_or_else(|| panic!("no p1 line: {stdout}"));
    assert!(p1.contains("(partial: "), "{p1}");
}

/// `compare` on a launched deployment: both runs, their run metadata (date, version,
/// command line, each side's deployment) and the ratios, in the terminal, in one JSON and
/// in an HTML page with both runs side by side; in headless Chromium at 1000 px the two
/// columns sit side by side, the ratio and operations tables parse, and nothing is wider
/// than the window (the screenshot is saved under target/test-artifacts/).
#[tokio::test]
async fn compare_runs_direct_and_through_proxies_and_gives_ratios() {
    // First, so that CI without a browser fails at once.
    let browser = chromium();
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("compare.json");
    let html = dir.path().join("compare.html");
    let out = warren_loadtest_cmd(
        "compare",
        &[
            "--deploy",
            "dev:cells=2,proxies=1",
            "--sessions",
            "30",
            "--connections",
            "2",
            "--duration",
            "2s",
            "--read-rate",
            "50",
            "--write-rate",
            "5",
            "--files",
            "20",
            "--json",
            json.to_str().expect("utf-8 path"),
            "--html",
            html.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    assert!(out.status.success(), "warren loadtest compare failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The run metadata first, the reports' paths last.
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("run: ")
            && lines[0].contains(&format!(" by warren {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("command: ")
            && lines[1].contains("loadtest compare --deploy dev:cells=2,proxies=1"),
        "{stdout}"
    );
    for side in ["direct", "through the proxies"] {
        assert!(
            stdout.contains(&format!(
                "\ndeployment, {side}: launched by the load test (--deploy): 2 data cells and \
                 a meta cell, 1 proxy, "
            )),
            "{stdout}"
        );
    }
    let n = lines.len();
    assert_eq!(
        lines[n - 2..],
        [
            format!(
                "JSON report written to {}",
                json.canonicalize().unwrap().display()
            ),
            format!(
                "HTML report written to {}",
                html.canonicalize().unwrap().display()
            ),
        ],
        "{stdout}"
    );
    assert!(stdout.contains("=== direct to the cells"), "{stdout}");
    assert!(
        stdout.contains("=== through the proxies ÷ direct"),
        "{stdout}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON"))
            .expect("valid JSON");
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert_eq!(r["direct"]["target"], "cells", "{r:#}");
    assert_eq!(r["proxies"]["target"], "proxies", "{r:#}");
    for run in ["direct", "proxies"] {
        assert_eq!(r[run]["errors"], 0, "{run}: {r:#}");
        assert_eq!(r[run]["acked_lost"], 0, "{run}: {r:#}");
        assert_eq!(r[run]["sessions"]["created"], 30, "{run}: {r:#}");
    }
    // Both runs read; the ratio is there and positive.
    assert!(num(&r["ratios"]["ops"]["read"]["p50"]) > 0.0, "{r:#}");
    // Direct, every client holds 3 sessions, each KeepAlived at a cell; through the proxy
    // the cells see only the proxy's: fewer KeepAlives reach the cells.
    assert!(num(&r["ratios"]["cell_keepalive_reduction"]) > 1.0, "{r:#}");
    // Each side's run metadata, with its deployment.
    for run in ["direct", "proxies"] {
        let info = &r[run]["run"];
        assert!(
            info["command"]
                .as_str()
                .unwrap()
                .contains("loadtest compare --deploy dev:cells=2,proxies=1"),
            "{run}: {info:#}"
        );
        assert!(
            info["version"]
                .as_str()
                .unwrap()
                .starts_with(env!("CARGO_PKG_VERSION")),
            "{info:#}"
        );
        assert_eq!(
            info["started_at"], r["direct"]["run"]["started_at"],
            "{r:#}"
        );
        assert_eq!(info["deployment"]["launched"], true, "{info:#}");
        assert_eq!(info["deployment"]["cells"], 2, "{info:#}");
        assert_eq!(info["deployment"]["proxies"], 1, "{info:#}");
        // The launched members, for each side's member table.
        assert_eq!(r[run]["members"].as_array().unwrap().len(), 4, "{r:#}");
    }

    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(!page.contains("<script"), "the report itself has no script");
    let Some(browser) = browser else {
        return;
    };
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("target/test-artifacts");
    std::fs::copy(&html, artifacts.join("loadtest-compare.html")).expect("copy the report");
    let probe = dir.path().join("probe.html");
    std::fs::write(
        &probe,
        page.replace("</body>", &format!("{COMPARE_PROBE}</body>")),
    )
    .expect("write the probe page");
    let width = 1000u32;
    let profile = tempfile::tempdir().expect("a Chromium profile");
    let dom = run_chromium(
        &browser,
        profile.path(),
        &[
            format!("--window-size={width},900"),
            "--run-all-compositor-stages-before-draw".into(),
            "--virtual-time-budget=5000".into(),
            "--dump-dom".into(),
        ],
        &format!("file://{}", probe.display()),
    )
    .await;
    let m = probe_result(&dom.stdout, width);
    eprintln!("compare at {width} px: {m}");
    assert_eq!(m["inner"], width, "{m}");
    assert!(
        m["scroll"].as_u64() <= m["client"].as_u64(),
        "the page is wider than the window: {m}"
    );
    assert_eq!(
        m["sections"],
        serde_json::json!(["run", "ratios", "sides"]),
        "{m}"
    );
    // Two columns, side by side: the same top, the second right of the first.
    let sides = m["sides"].as_array().expect("sides");
    assert_eq!(sides.len(), 2, "{m}");
    let at = |i: usize, k: &str| sides[i][k].as_f64().unwrap();
    assert_eq!(sides[0]["id"], "side-direct", "{m}");
    assert_eq!(sides[1]["id"], "side-proxies", "{m}");
    assert!((at(0, "top") - at(1, "top")).abs() <= 1.0, "{m}");
    assert!(at(1, "left") >= at(0, "right") - 1.0, "{m}");
    assert!(at(0, "width") > 300.0 && at(1, "width") > 300.0, "{m}");
    // Each column has its operations (read and write) and member table, and four plots.
    for id in ["direct", "proxies"] {
        let col = |k: &str| m[format!("{k}_{id}")].as_array().expect(k).clone();
        let ops: Vec<String> = col("ops")
            .iter()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ops, ["op", "read", "write", "total"], "{id}: {m}");
        let members: Vec<String> = col("members")
            .iter()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect();
        assert_eq!(members, ["member", "meta", "c1", "c2", "p1"], "{id}: {m}");
        assert_eq!(m[format!("plots_{id}")], 4, "{id}: {m}");
    }
    // The ratio table: a row per operation made (no lock row: none was asked for), read's
    // ratios are numbers, as in the JSON.
    let ratios = m["ratios"].as_array().expect("ratios");
    let names: Vec<&str> = ratios.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(names, ["op", "read", "write"], "{m}");
    assert_eq!(
        ratios[0],
        serde_json::json!(["op", "p50", "p99", "throughput"]),
        "{m}"
    );
    let read = ratios
        .iter()
        .find(|r| r[0] == "read")
        .unwrap_or_else(|| panic!("no read ratios: {m}"));
    let p50: f64 = read[1].as_str().unwrap().parse().expect("a number");
    assert!(
        (p50 - num(&r["ratios"]["ops"]["read"]["p50"])).abs() < 0.006,
        "{m}"
    );
    let cell_load = m["cell_load"].as_array().expect("cell load");
    assert_eq!(cell_load[1][0], "KeepAlives/s", "{m}");
    let reduction: f64 = cell_load[1][3].as_str().unwrap().parse().expect("a number");
    assert!(reduction > 1.0, "{m}");
    let run_rows: Vec<&str> = m["run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert_eq!(
        run_rows,
        [
            "date",
            "version",
            "command",
            "deployment, direct",
            "deployment, through the proxies",
            "workload",
            "window"
        ],
        "{m}"
    );

    // The screenshot, of the report itself (no probe), the page's whole height.
    let height = m["height"].as_u64().unwrap_or(3000).clamp(900, 8000);
    let png = artifacts.join(format!("loadtest-compare-{width}px.png"));
    screenshot(&browser, &html, &png, width, height).await;
}

/// [`PROBE`] for `compare`'s page: the window, the sections, where the two columns are,
/// and the rows of its tables (per column: `ops_ID`, `members_ID`, `plots_ID`).
const COMPARE_PROBE: &str = r#"<script>
window.addEventListener('load', () => {
  const de = document.documentElement;
  const cells = (sel) => [...document.querySelectorAll(sel + ' tr')]
    .map(tr => [...tr.cells].map(c => c.textContent.trim()));
  const out = {
    inner: window.innerWidth, client: de.clientWidth, scroll: de.scrollWidth,
    height: de.scrollHeight,
    sections: [...document.querySelectorAll('section')].map(s => s.id),
    sides: [...document.querySelectorAll('.side')].map(d => {
      const r = d.getBoundingClientRect();
      return { id: d.id, left: r.left, right: r.right, top: r.top, width: r.width };
    }),
    run: cells('#run-metadata'), ratios: cells('#ratio-table'), cell_load: cells('#cell-load'),
  };
  for (const id of ['direct', 'proxies']) {
    out['ops_' + id] = cells('#op-table-' + id);
    out['members_' + id] = cells('#member-table-' + id);
    out['plots_' + id] = document.querySelectorAll('#side-' + id + ' svg.plot').length;
  }
  const pre = document.createElement('pre');
  pre.id = 'probe-result';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"#;

/// `--reshard add-cell@2s`: the load test launches meta + 3 cells + 1 proxy, adds c4 two
/// seconds into the window, moves a quarter of the slots to it under reads, writes and
/// locks, and reports the move: done, slots moved, and nothing failed, expired, overlapped
/// or got lost on the clients' side.
#[tokio::test]
async fn a_reshard_under_load_is_done_with_no_client_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("reshard.json");
    let html = dir.path().join("reshard.html");
    let out = loadtest(&[
        "--deploy",
        "dev:cells=3,proxies=1",
        "--sessions",
        "100",
        "--connections",
        "4",
        "--duration",
        "8s",
        "--read-rate",
        "100",
        "--write-rate",
        "20",
        "--lock-rate",
        "5",
        "--files",
        "200",
        "--seed",
        "13",
        "--reshard",
        "add-cell@2s",
        "--reshard-slots-per-batch",
        "128",
        "--json",
        json.to_str().expect("utf-8 path"),
        "--html",
        html.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(out.status.success(), "warren loadtest run --reshard failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("reshard (add-cell@2s): add cell c4"),
        "{stdout}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("valid JSON");
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    let rs = &r["reshard"];
    assert_eq!(rs["state"], "done", "{rs:#}");
    assert_eq!(rs["cell"], "c4", "{rs:#}");
    // 3 → 4 cells: a quarter of the slots move, all of them.
    let planned = num(&rs["slots_planned"]);
    assert!(planned > 0.0, "{rs:#}");
    assert_eq!(num(&rs["slots_moved"]), planned, "{rs:#}");
    let (start, end) = (num(&rs["start_s"]), num(&rs["end_s"]));
    assert!(start >= 2.0 && end > start, "{rs:#}");
    assert!(
        num(&rs["write_pause"]["max_ms"]) >= num(&rs["write_pause"]["p50_ms"]),
        "{rs:#}"
    );
    // Nothing failed, expired or overlapped during the move, and the clients were busy.
    assert_eq!(num(&rs["errors_during"]), 0.0, "{rs:#}");
    assert_eq!(num(&rs["expired_during"]), 0.0, "{rs:#}");
    assert_eq!(num(&rs["lock_overlaps_during"]), 0.0, "{rs:#}");
    assert_eq!(num(&rs["stale_sequencers_during"]), 0.0, "{rs:#}");
    // The locks the first clients held through the move are still theirs after it.
    assert_eq!(num(&rs["held_locks"]), 32.0, "{rs:#}");
    assert_eq!(num(&rs["held_locks_kept"]), 32.0, "{rs:#}");
    assert!(num(&rs["ops"]["read"]["before"]["count"]) > 0.0, "{rs:#}");
    assert!(num(&rs["ops"]["read"]["during"]["count"]) > 0.0, "{rs:#}");
    // Over the whole run: no error, nothing lost, the lock check clean.
    assert_eq!(num(&r["errors"]), 0.0, "{r:#}");
    assert_eq!(r["acked_lost_checked"], true, "{r:#}");
    assert_eq!(r["acked_lost"], 0, "{r:#}");
    assert_eq!(r["sessions"]["expired"], 0, "{r:#}");
    assert!(num(&r["locks"]["acquired"]) > 0.0, "{r:#}");
    assert_eq!(num(&r["locks"]["overlaps"]), 0.0, "{r:#}");
    assert_eq!(num(&r["locks"]["stale_sequencers"]), 0.0, "{r:#}");
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(page.contains("<h2>Reshard</h2>"), "{page}");
    assert!(
        page.contains("reshard starts"),
        "the move is marked on the plots"
    );
}

#[tokio::test]
async fn refusals_are_clear() {
    // Nothing listens at the meta cell's address: named.
    let out = loadtest(&["--target", "cells=127.0.0.1:1", "--duration", "1s"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"));

    // Faults need a deployment the load test launched.
    let out = loadtest(&["--target", "proxies=127.0.0.1:1", "--kill", "proxy@1s"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--deploy"));
    let out = loadtest(&["--deploy", "dev", "--kill", "proxy"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MEMBER@TIME"));
    let out = loadtest(&["--deploy", "dev:cells=2", "--kill", "master:c3@1s"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cell c3"));
    let out = loadtest(&["--deploy", "dev:cells=x"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cells=x"));
    // --reshard: its form, a deployment, the proxies, a time in the window.
    let out = loadtest(&["--deploy", "dev", "--reshard", "add-cell"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("add-cell@TIME, e.g. add-cell@10s"));
    let out = loadtest(&[
        "--target",
        "proxies=127.0.0.1:1",
        "--reshard",
        "add-cell@1s",
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--deploy"));
    let out = loadtest(&[
        "--deploy",
        "dev",
        "--target",
        "cells",
        "--reshard",
        "add-cell@1s",
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only through the proxies"));
    let out = loadtest(&[
        "--deploy",
        "dev",
        "--duration",
        "5s",
        "--reshard",
        "add-cell@5s",
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside the measured window"));

    let out = loadtest(&["--target", "127.0.0.1:1"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("proxies="));

    // Nothing listens there: the error names the address.
    let out = loadtest(&["--target", "proxies=127.0.0.1:1", "--duration", "1s"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"));
}

/// The headless Chromium of the machine (`chromium`, as Debian names it, or
/// `chromium-browser`/`google-chrome`); `None` (with a loud message) when there is none
/// outside CI. Under `CI=true` a missing browser fails the test (.ci/run installs it).
fn chromium() -> Option<std::path::PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no chromium in PATH: install it (apt-get install chromium; .ci/run does)"
        );
        eprintln!(
            "\n!!! SKIPPING the Chromium part of this test: no chromium in PATH \
             (apt-get install chromium) !!!\n"
        );
    }
    found
}

/// Runs headless Chromium on `url` with `args` (a fresh profile in `profile`), within 90 s.
/// Takes a screenshot of the page `html` at `width` × `height` px into `png` with headless
/// Chromium, and checks it is a PNG of that width.
async fn screenshot(
    browser: &std::path::Path,
    html: &std::path::Path,
    png: &std::path::Path,
    width: u32,
    height: u64,
) {
    let _ = std::fs::remove_file(png);
    let profile = tempfile::tempdir().expect("a Chromium profile");
    run_chromium(
        browser,
        profile.path(),
        &[
            format!("--window-size={width},{height}"),
            "--run-all-compositor-stages-before-draw".into(),
            "--virtual-time-budget=5000".into(),
            format!("--screenshot={}", png.display()),
        ],
        &format!("file://{}", html.display()),
    )
    .await;
    let bytes = std::fs::read(png).expect("the screenshot");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let png_width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    assert_eq!(png_width, width, "the screenshot's width");
    eprintln!("screenshot at {width} px: {}", png.display());
}

/// The JSON a probe page wrote into its `<pre id="probe-result">`, from the DOM Chromium
/// dumped (`--dump-dom` escapes the text, so it is decoded).
fn probe_result(dom: &[u8], width: u32) -> serde_json::Value {
    let dom = String::from_utf8_lossy(dom);
    let result = dom
        .split("<pre id=\"probe-result\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("no probe result at {width} px: {dom}"));
    serde_json::from_str(&html_escape::decode_html_entities(result)).expect("the probe's JSON")
}

async fn run_chromium(
    browser: &std::path::Path,
    profile: &std::path::Path,
    args: &[String],
    url: &str,
) -> std::process::Output {
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finishes within 90 s")
    .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Measures the page in the browser: appended to a copy of the report (the report itself
/// has no script), it writes what it found as JSON into `<pre id="probe-result">` once the
/// page has loaded, for `--dump-dom` to print. Every element must end within the
/// viewport's width, and no element that scrolls may have more to scroll.
const PROBE: &str = r#"<script>
window.addEventListener('load', () => {
  const de = document.documentElement;
  const over = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > de.clientWidth + 0.5) {
      over.push(el.tagName + (el.id ? '#' + el.id : '') + ' ends at ' + Math.round(r.right));
    }
    if (getComputedStyle(el).overflowX !== 'visible' && el.scrollWidth > el.clientWidth + 1) {
      over.push(el.tagName + '.' + el.className + ' scrolls ' + el.scrollWidth + ' > ' + el.clientWidth);
    }
  }
  const cells = (sel) => [...document.querySelectorAll(sel + ' tr')]
    .map(tr => [...tr.cells].map(c => c.textContent.trim()));
  const out = {
    inner: window.innerWidth, client: de.clientWidth, scroll: de.scrollWidth,
    height: de.scrollHeight, over,
    plots: [...document.querySelectorAll('svg.plot')].map(s => Math.round(s.getBoundingClientRect().width)),
    sections: [...document.querySelectorAll('section')].map(s => s.id),
    run: cells('#run-metadata'), ops: cells('#op-table'), members: cells('#member-table'),
  };
  const pre = document.createElement('pre');
  pre.id = 'probe-result';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"#;

/// A run on a launched deployment (2 cells, 2 proxies, no locks asked for) with `--json`
/// and `--html`: the terminal names the members and the reports' paths, leaves out the lock
/// row, and says `back to safe` for Safe events; the page's run metadata, operations and
/// member tables parse (in Rust and in the browser), and in headless Chromium at 1000 and
/// 1400 px nothing is wider than the window and the plots span the page; the two
/// screenshots are saved under target/test-artifacts/.
#[tokio::test]
async fn the_html_report_has_its_sections_and_fits_1000_and_1400_px() {
    // First, so that CI without a browser fails at once.
    let browser = chromium();
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let html = dir.path().join("report.html");
    let out = loadtest(&[
        "--deploy",
        "dev:cells=2,proxies=2",
        "--lease",
        "3s",
        "--sessions",
        "30",
        "--connections",
        "4",
        "--duration",
        "4s",
        "--read-rate",
        "50",
        "--write-rate",
        "5",
        "--files",
        "20",
        "--json",
        json.to_str().expect("utf-8 path"),
        "--html",
        html.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(out.status.success(), "warren loadtest run --deploy failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The reports' paths, last.
    let lines: Vec<&str> = stdout.lines().collect();
    let n = lines.len();
    assert_eq!(
        lines[n - 2..],
        [
            format!(
                "JSON report written to {}",
                json.canonicalize().unwrap().display()
            ),
            format!(
                "HTML report written to {}",
                html.canonicalize().unwrap().display()
            ),
        ],
        "{stdout}"
    );
    // No lock was asked for: no lock row, no lock check.
    assert!(!stdout.lines().any(|l| l.starts_with("lock ")), "{stdout}");
    assert!(!stdout.contains("lock check"), "{stdout}");
    assert!(stdout.contains("back to safe (Safe events)"), "{stdout}");
    // The member table names every member, with its addresses, rates and process figures.
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("valid JSON");
    let members = r["members"].as_array().expect("members");
    let names: Vec<&str> = members
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["meta", "c1", "c2", "p1", "p2"], "{r:#}");
    for m in members {
        let name = m["name"].as_str().unwrap();
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no member line {name}: {stdout}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), 9, "{line}");
        assert_eq!(cols[2], m["addr"].as_str().unwrap(), "{line}");
        assert_eq!(cols[3], m["admin"].as_str().unwrap(), "{line}");
        // Every figure measured: RPC/s, KeepAlives/s, CPU, RSS, CPU per op.
        for figure in &cols[4..] {
            assert!(figure.parse::<f64>().is_ok(), "{name}: {line}");
        }
        assert!(
            cols[4].parse::<f64>().unwrap() > 0.0,
            "{name} answered no RPC: {line}"
        );
    }
    let run = &r["run"];
    assert!(
        run["command"]
            .as_str()
            .unwrap()
            .contains("loadtest run --deploy dev:cells=2,proxies=2"),
        "{run:#}"
    );
    assert_eq!(run["deployment"]["launched"], true, "{run:#}");
    assert_eq!(run["deployment"]["cells"], 2, "{run:#}");
    assert_eq!(run["deployment"]["proxies"], 2, "{run:#}");
    assert_eq!(run["deployment"]["lease"], "3s", "{run:#}");
    assert!(
        run["version"]
            .as_str()
            .unwrap()
            .starts_with(env!("CARGO_PKG_VERSION")),
        "{run:#}"
    );
    // The timeline has the offered load and p99.9.
    let timeline = r["timeline"].as_array().expect("a timeline");
    let offered: f64 = timeline
        .iter()
        .map(|t| t["ops"]["read"]["offered"].as_f64().unwrap_or(0.0))
        .sum();
    assert!(
        offered >= r["ops"]["read"]["count"].as_f64().unwrap(),
        "{r:#}"
    );
    assert!(
        timeline
            .iter()
            .any(|t| t["ops"]["read"]["p999_ms"].as_f64().is_some()),
        "{r:#}"
    );

    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(!page.contains("<script"), "the report itself has no script");
    let Some(browser) = browser else {
        return;
    };
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("target/test-artifacts");
    std::fs::copy(&html, artifacts.join("loadtest-report.html")).expect("copy the report");
    let probe = dir.path().join("probe.html");
    std::fs::write(&probe, page.replace("</body>", &format!("{PROBE}</body>")))
        .expect("write the probe page");
    for width in [1000u32, 1400] {
        let profile = tempfile::tempdir().expect("a Chromium profile");
        let dom = run_chromium(
            &browser,
            profile.path(),
            &[
                format!("--window-size={width},900"),
                "--run-all-compositor-stages-before-draw".into(),
                "--virtual-time-budget=5000".into(),
                "--dump-dom".into(),
            ],
            &format!("file://{}", probe.display()),
        )
        .await;
        let m = probe_result(&dom.stdout, width);
        eprintln!("at {width} px: {m}");
        assert_eq!(m["inner"], width, "the window is {width} px wide: {m}");
        assert!(
            m["scroll"].as_u64() <= m["client"].as_u64(),
            "the page is wider than the window at {width} px: {m}"
        );
        assert_eq!(
            m["over"],
            serde_json::json!([]),
            "overflowing at {width} px: {m}"
        );
        // The four plots span the page (the body's width: the window less its margins).
        let plots = m["plots"].as_array().expect("plots");
        assert_eq!(plots.len(), 4, "{m}");
        let body = m["client"].as_f64().unwrap() - 48.0;
        for p in plots {
            assert!(
                (p.as_f64().unwrap() - body).abs() <= 2.0,
                "a plot {p} px wide in a {body} px body: {m}"
            );
        }
        assert_eq!(
            m["sections"],
            serde_json::json!(["run", "operations", "members", "plots"]),
            "{m}"
        );
        let rows = |key: &str| m[key].as_array().expect(key).clone();
        let run_rows: Vec<String> = rows("run")
            .iter()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            run_rows,
            [
                "date",
                "version",
                "command",
                "deployment",
                "target",
                "workload",
                "window"
            ],
            "{m}"
        );
        let op_rows: Vec<&str> = m["ops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap())
            .collect();
        assert_eq!(op_rows, ["op", "read", "write", "total"], "{m}");
        assert!(
            m["ops"][0]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("p99.9 ms")),
            "{m}"
        );
        let member_rows: Vec<&str> = m["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap())
            .collect();
        assert_eq!(
            member_rows,
            ["member", "meta", "c1", "c2", "p1", "p2"],
            "{m}"
        );

        // The screenshot, of the report itself (no probe), the page's whole height.
        let height = m["height"].as_u64().unwrap_or(3000).clamp(900, 8000);
        let png = artifacts.join(format!("loadtest-report-{width}px.png"));
        screenshot(&browser, &html, &png, width, height).await;
    }
}
