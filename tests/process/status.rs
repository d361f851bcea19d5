//! What operators' standard tools see of real `warren` processes (docs/operations.md):
//! `grpc.health.v1.Health` and server reflection on a cell and a proxy, asked the way
//! `grpcurl list` and `grpc_health_probe` ask (with PyPI's grpcio, grpcio-reflection and
//! grpcio-health-checking: Debian has no grpcurl; `tests/process/grpc_tools.py`), health
//! following readiness; the monitoring files under `deploy/` (the Grafana dashboard names
//! only metrics Warren exports; `promtool check rules` passes); and the HTML status page in
//! headless Chromium. Each external tool is required under CI=true and skipped loudly
//! otherwise.

use crate::{bin, free_port, http_get};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use warren_testkit::WarrenProcess;

/// Whether an external tool the test needs is here: true yes; false no, skip (after a loud
/// notice). Panics under CI=true, where every tool must be installed.
fn tool_present(what: &str, present: bool, install: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is missing; CI needs it for this test: {install}");
    }
    eprintln!("NOTICE: {what} is missing ({install}); SKIPPING this test");
    false
}

/// python3 with grpcio, grpcio-reflection and grpcio-health-checking.
fn python_grpc_present() -> bool {
    let ok = std::process::Command::new("python3")
        .args([
            "-c",
            "import grpc, grpc_health.v1.health_pb2, grpc_reflection.v1alpha.reflection_pb2",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    tool_present(
        "python3 with grpcio, grpcio-reflection and grpcio-health-checking",
        ok,
        "pip install grpcio grpcio-reflection grpcio-health-checking",
    )
}

fn grpc_tools_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/process/grpc_tools.py")
}

/// `tests/process/grpc_tools.py ADDR`: services listed by reflection (v1alpha, v1), the
/// methods of warren.v1.Warren from the served descriptors, and the health statuses.
async fn grpc_tools(addr: &str) -> serde_json::Value {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg(grpc_tools_script())
            .arg(addr)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("grpc_tools.py {addr} did not finish in 60 s"))
    .expect("run python3");
    assert!(
        out.status.success(),
        "grpc_tools.py {addr} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "grpc_tools.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Asks `addr` until its overall health is `want` (at most 30 s), returning the last answer.
async fn health_becomes(addr: &str, want: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = grpc_tools(addr).await;
        if seen["health"] == want && seen["warren_health"] == want {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr}: health is not {want} within 30 s: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What `grpcurl list` must show at a Warren server, and `grpc_health_probe`'s SERVING.
/// `reshard`: whether the server serves (and so lists) warren.v1.Reshard (cells do,
/// proxies do not).
fn assert_lists_warren_and_health(tier: &str, seen: &serde_json::Value, reshard: bool) {
    for version in ["v1alpha", "v1"] {
        let listed: Vec<&str> = seen[version]
            .as_array()
            .unwrap_or_else(|| panic!("{tier}: no {version} listing in {seen}"))
            .iter()
            .filter_map(|s| s.as_str())
            .collect();
        for want in [
            "warren.v1.Warren",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert!(
                listed.contains(&want),
                "{tier}: reflection {version} lists {listed:?}, without {want}"
            );
        }
        assert_eq!(
            listed.contains(&"warren.v1.Reshard"),
            reshard,
            "{tier}: reflection {version} lists {listed:?}"
        );
    }
    let methods = seen["warren_methods"].to_string();
    for m in ["CreateSession", "KeepAlive", "Open", "Acquire", "Locate"] {
        assert!(
            methods.contains(&format!("\"{m}\"")),
            "{tier}: warren.v1.Warren as reflected has no {m}: {methods}"
        );
    }
}

/// A `warren` child not waited on for `ready` (it may never be), killed on drop.
fn spawn_unready(args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn warren")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_and_reflection_on_a_cell_and_a_proxy_follow_readiness() {
    if !python_grpc_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cell_port = free_port();
    let cell_addr = format!("127.0.0.1:{cell_port}");

    // A proxy started before its cell is not ready: NOT_SERVING, with reflection up.
    let proxy_port = free_port();
    let proxy_addr = format!("127.0.0.1:{proxy_port}");
    let front = format!("main={cell_addr}");
    let _proxy = spawn_unready(&[
        "proxy",
        "--listen",
        &proxy_addr,
        "--cell",
        &front,
        "--client-lease",
        "2s",
        "--lease-margin",
        "500ms",
        "--keepalive-reply-before-end",
        "500ms",
    ]);
    let early = health_becomes(&proxy_addr, "NOT_SERVING").await;
    assert_lists_warren_and_health("proxy without its cell", &early, false);

    // A data cell whose meta cell is not there has no partition map: master, not ready.
    let dead_meta = format!("127.0.0.1:{}", free_port());
    let lonely_addr = format!("127.0.0.1:{}", free_port());
    let lonely_dir = dir.path().join("lonely");
    let _lonely = spawn_unready(&[
        "cell",
        "--name",
        "lonely",
        "--listen",
        &lonely_addr,
        "--data",
        lonely_dir.to_str().unwrap(),
        "--meta",
        &dead_meta,
    ]);
    let lonely = health_becomes(&lonely_addr, "NOT_SERVING").await;
    assert_lists_warren_and_health("data cell without its map", &lonely, true);

    // The cell comes up: SERVING there, and the proxy turns SERVING once it has a session.
    let cell_dir = dir.path().join("main");
    let _cell = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "main",
            "--listen",
            &cell_addr,
            "--data",
            cell_dir.to_str().unwrap(),
        ],
    )
    .await;
    let cell = health_becomes(&cell_addr, "SERVING").await;
    assert_lists_warren_and_health("cell", &cell, true);
    let proxy = health_becomes(&proxy_addr, "SERVING").await;
    assert_lists_warren_and_health("proxy", &proxy, false);
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every `warren_…` metric name in `text` (a PromQL expression, a rules file).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("warren_") {
        let boundary = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if boundary {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// Every PromQL expression in a Grafana dashboard (`expr` of targets and annotations).
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| dashboard_exprs(x, out)),
        _ => {}
    }
}

/// The metric names (samples and `# TYPE` families) on an admin endpoint's `/metrics`.
async fn exported(admin: &str) -> BTreeSet<String> {
    let (code, body) = http_get(admin, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    let mut names = BTreeSet::new();
    for line in body.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        };
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            names.insert(n.to_string());
        }
    }
    names
}

/// Runs `tool args…` to completion (60 s at most), returning (success, stdout + stderr).
async fn run_tool(tool: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(tool)
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{tool} {args:?} did not finish in 60 s"))
    .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn on_path(tool: &str, version_arg: &str) -> bool {
    std::process::Command::new(tool)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alert_rules_name_only_exported_metrics_and_pass_promtool() {
    // The dashboard parses, and names metrics.
    let dashboard_text = std::fs::read_to_string(repo("deploy/grafana/warren.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard_text)
        .unwrap_or_else(|e| panic!("deploy/grafana/warren.json does not parse: {e}"));
    assert_eq!(dashboard["title"], "Warren");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "only {} queries: {exprs:?}", exprs.len());
    let in_dashboard: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let rules_path = repo("deploy/prometheus/warren-rules.yml");
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    // Only the rules count, not what comments name.
    let rule_lines: String = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let in_rules = metric_names(&rule_lines);
    assert!(in_rules.len() >= 8, "{in_rules:?}");

    // What a real cell and a real proxy export.
    let dir = tempfile::tempdir().unwrap();
    let cell_admin = format!("127.0.0.1:{}", free_port());
    let proxy_admin = format!("127.0.0.1:{}", free_port());
    let cell = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "main",
            "--listen",
            "127.0.0.1:0",
            "--data",
            dir.path().to_str().unwrap(),
            "--admin",
            &cell_admin,
        ],
    )
    .await;
    let front = format!("main={}", cell.addr());
    let _proxy = WarrenProcess::spawn(
        bin(),
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--cell",
            &front,
            "--admin",
            &proxy_admin,
        ],
    )
    .await;
    // Traffic, so that series appearing on first use (the RPC histogram's buckets) exist.
    let s = warren_client::Session::connect_with(
        warren_client::ClientOptions::proxies(vec![_proxy.proxy_addr()]).cache(false),
    )
    .await
    .expect("a session through the proxy");
    s.open(
        "/ops",
        warren_client::OpenOptions::new()
            .write()
            .create_file(b"x".to_vec()),
    )
    .await
    .expect("create a file");
    let mut names = exported(&cell_admin).await;
    names.extend(exported(&proxy_admin).await);
    // Labelled series that appear once something is counted for them (docs/metrics.md says
    // so in their row; tests/process/metrics.rs keeps that document and the exports equal).
    let metrics_doc = std::fs::read_to_string(repo("docs/metrics.md")).unwrap();
    names.extend(
        metrics_doc
            .lines()
            .filter(|l| l.starts_with("| `warren_") && l.contains("Appears once"))
            .filter_map(|l| l.split('`').nth(1).map(str::to_string)),
    );
    // The mirror agent's metrics (its "Mirror" section; tests/process/mirror.rs checks that a
    // running agent exports exactly those).
    names.extend(
        metrics_doc
            .split("\n## ")
            .filter(|section| section.starts_with("Mirror"))
            .flat_map(str::lines)
            .filter(|l| l.starts_with("| `warren_"))
            .filter_map(|l| l.split('`').nth(1).map(str::to_string)),
    );
    for (what, used) in [("dashboard", &in_dashboard), ("rules", &in_rules)] {
        let unknown: Vec<&String> = used.iter().filter(|n| !names.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "the {what} names metrics Warren does not export: {unknown:?} (exported: {names:?})"
        );
    }
    // A name that is not exported is caught (the check itself can fail).
    assert!(!names.contains("warren_mirror_lag_secs"));

    if tool_present(
        "promtool",
        on_path("promtool", "--version"),
        "apt-get install prometheus",
    ) {
        let (ok, out) = run_tool(
            "promtool",
            &["check", "rules", rules_path.to_str().unwrap()],
        )
        .await;
        assert!(ok, "promtool check rules fails:\n{out}");
        assert!(out.contains("SUCCESS"), "{out}");
    }

    // The systemd units are valid (with the binary's real path for ExecStart).
    if tool_present(
        "systemd-analyze",
        on_path("systemd-analyze", "--version"),
        "apt-get install systemd",
    ) {
        let units = tempfile::tempdir().unwrap();
        for unit in ["warren-cell", "warren-proxy", "warren-mirror"] {
            let text = std::fs::read_to_string(repo(&format!("deploy/systemd/{unit}.service")))
                .unwrap()
                .replace("/usr/local/bin/warren", bin().to_str().unwrap());
            let path = units.path().join(format!("{unit}.service"));
            std::fs::write(&path, text).unwrap();
            let (ok, out) = run_tool(
                "systemd-analyze",
                &["verify", "--man=no", path.to_str().unwrap()],
            )
            .await;
            assert!(ok && out.trim().is_empty(), "{unit}.service: {out}");
        }
    }
}

/// Where tests leave files for people to look at: `target/test-artifacts/`.
fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium on `url` with a fresh profile: `--dump-dom` (the DOM after load) and a
/// screenshot at 1280×1000 saved to `screenshot`.
async fn chromium(url: &str, screenshot: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let user_data = format!("--user-data-dir={}", profile.path().display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1000",
        user_data.as_str(),
    ];
    let shot = format!("--screenshot={}", screenshot.display());
    let mut args = common.to_vec();
    args.extend([shot.as_str(), url]);
    let (ok, out) = run_tool("chromium", &args).await;
    assert!(ok, "chromium --screenshot {url}: {out}");
    let png = std::fs::read(screenshot).unwrap_or_else(|e| panic!("no screenshot: {e}\n{out}"));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{out}");
    let mut args = common.to_vec();
    args.extend(["--dump-dom", url]);
    let (ok, dom) = run_tool("chromium", &args).await;
    assert!(ok, "chromium --dump-dom {url}: {dom}");
    dom
}

/// Runs `warren ctl ARGS…`, which must succeed; returns its stdout.
async fn ctl_ok(args: &[&str]) -> String {
    let mut v = vec!["ctl"];
    v.extend_from_slice(args);
    let o = crate::warren(&v).await;
    assert!(o.status.success(), "warren {v:?}: {}", crate::stderr(&o));
    crate::stdout(&o)
}

/// The meta cell's and a proxy's status pages of a `warren dev` deployment, after a
/// reshard moved a third of the slots to an added cell, loaded in headless Chromium: the
/// DOM names every cell with its slot count and replica, the meta cell's sessions, the
/// finished job with every slot move, and the proxy's client sessions. The screenshots
/// are saved in `target/test-artifacts/status-page-{meta,proxy}.png` for people to look at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_headless_chromium_shows_the_map_cells_and_sessions() {
    if !tool_present(
        "chromium",
        on_path("chromium", "--version"),
        "apt-get install chromium",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let dev = WarrenProcess::spawn_dev(bin(), &data, 2, 2).await;
    let meta = dev.meta.clone().expect("the meta cell's address");
    let admin: BTreeMap<String, String> = dev
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("admin: "))
        .expect("an admin line")
        .split(',')
        .filter_map(|i| i.split_once('='))
        .map(|(n, a)| (n.to_string(), a.to_string()))
        .collect();

    // A reshard: c3 added, a third of the slots moved to it.
    let c3 = WarrenProcess::spawn(
        bin(),
        &[
            "dev",
            "--add-cell",
            "c3",
            "--data",
            data.to_str().unwrap(),
            "--base-port",
            "0",
            "--meta",
            &meta,
        ],
    )
    .await;
    let c3_addr = c3.cells[0].1.clone();
    let plan = dir.path().join("plan.json");
    ctl_ok(&[
        "reshard",
        "plan",
        "--meta",
        &meta,
        "--add-cell",
        &format!("c3={c3_addr}"),
        "--out",
        plan.to_str().unwrap(),
    ])
    .await;
    ctl_ok(&[
        "reshard",
        "apply",
        "--meta",
        &meta,
        "--slots-per-batch",
        "512",
        plan.to_str().unwrap(),
    ])
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let job = loop {
        let out = ctl_ok(&["reshard", "status", "--meta", &meta, "--json"]).await;
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        if !matches!(v["state"].as_str(), Some("running" | "aborting")) {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reshard did not finish in 180 s: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(job["state"], "done", "{job}");
    let (code, map) = http_get(&admin["meta"], "/map").await;
    assert_eq!(code, 200, "{map}");
    let map = warren_router::PartitionMap::from_json(map.trim().as_bytes()).expect("the map");
    let counts = map.slot_counts();
    assert_eq!(counts.len(), 3, "{counts:?}");

    // Two client sessions through proxy 1.
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(
            warren_client::Session::connect_with(
                warren_client::ClientOptions::proxies(vec![dev.proxies[0].clone()]).cache(false),
            )
            .await
            .expect("a session through proxy 1"),
        );
    }

    // Programs still get JSON from /status; a browser gets the page.
    let (code, json) = http_get(&admin["meta"], "/status").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&json).expect("/status is JSON");
    assert_eq!(v["name"], "meta");

    // The meta cell's page: the map, every cell with its replica, the meta's sessions, the
    // job.
    let shots = artifacts_dir();
    let meta_png = shots.join("status-page-meta.png");
    let dom = chromium(&format!("http://{}/status", admin["meta"]), &meta_png).await;
    eprintln!("status page screenshot (meta cell): {}", meta_png.display());
    assert!(dom.contains("id=\"map-picture\""), "{dom}");
    assert!(
        dom.contains(&format!("epoch {} · 4096 slots", map.map_epoch())),
        "{dom}"
    );
    let mut cells = dev.cells.clone();
    cells.push(("c3".to_string(), c3_addr.clone()));
    for (cell, addr) in &cells {
        let n = counts[cell.as_str()];
        assert!(
            dom.contains(&format!(
                "{cell}: <span class=\"slot-count\">{n}</span> slots"
            )),
            "{cell} with {n} slots in the legend: {dom}"
        );
        assert!(
            dom.contains(&format!("<tr class=\"cell\" data-cell=\"{cell}\">")),
            "{cell} in the cells table: {dom}"
        );
        assert!(
            dom.contains(addr.as_str()),
            "{cell}'s replica {addr}: {dom}"
        );
    }
    assert!(
        dom.contains("<tr class=\"cell\" data-cell=\"meta\">"),
        "{dom}"
    );
    // Every replica answered Locate as a serving master with a healthy store.
    assert_eq!(
        dom.matches("<td class=\"role master\">master</td>").count(),
        4,
        "{dom}"
    );
    assert!(!dom.contains("unreachable"), "{dom}");
    // The meta cell's sessions: both proxies hold a proxy session there.
    let meta_sessions = dom
        .split("<td rowspan=\"1\" class=\"name\">meta</td><td rowspan=\"1\" class=\"sessions\">")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no session count: {dom}"));
    assert!(meta_sessions >= 2, "{dom}");
    // The job: every planned move finished, each a square in the picture.
    let moved = counts["c3"];
    assert!(
        dom.contains(&format!(
            "<span class=\"job-progress\">{moved}/{moved}</span>"
        )),
        "{dom}"
    );
    assert!(dom.contains(&format!("Done: {moved}</li>")), "{dom}");
    let job_svg = dom
        .split("id=\"job-picture\"")
        .nth(1)
        .and_then(|s| s.split("</svg>").next())
        .unwrap_or_else(|| panic!("no job picture: {dom}"));
    assert_eq!(job_svg.matches("<rect ").count(), moved as usize);
    assert!(dom.contains("<dt>cell RPCs/s</dt>"), "{dom}");

    // Proxy 1's page: its two client sessions and its upstream links.
    let proxy_png = shots.join("status-page-proxy.png");
    let dom = chromium(&format!("http://{}/status", admin["p1"]), &proxy_png).await;
    eprintln!("status page screenshot (proxy p1): {}", proxy_png.display());
    assert!(
        dom.contains("<td class=\"client-sessions\">2</td>"),
        "proxy 1's client sessions: {dom}"
    );
    assert!(dom.contains("✔ meta</span>"), "{dom}");
    assert!(dom.contains("id=\"map-picture\""), "{dom}");
    assert!(dom.contains("c3: <span class=\"slot-count\">"), "{dom}");
    drop(clients);
}
