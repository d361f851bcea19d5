//! What operators' standard tools see of real `warren` processes (docs/operations.md):
//! `grpc.health.v1.Health` and server reflection on a cell and a proxy, asked the way
//! `grpcurl list` and `grpc_health_probe` ask (with PyPI's grpcio, grpcio-reflection and
//! grpcio-health-checking: Debian has no grpcurl; `tests/process/grpc_tools.py`), health
//! following readiness; the monitoring files under `deploy/` (the Grafana dashboard names
//! only metrics Warren exports; `promtool check rules` passes); and the HTML status page in
//! headless Chromium. Each external tool is required under CI=true and skipped loudly
//! otherwise.

use crate::{bin, free_port};
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
