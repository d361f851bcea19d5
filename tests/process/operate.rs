//! Running Warren: configuration errors, the admin endpoint, `warren dev` with Ctrl-C and
//! resume.

use crate::dev::free_base_port;
use crate::{bin, http_get, stderr, stdout, warren, warren_env};
use std::time::Duration;
use warren_testkit::WarrenProcess;

#[tokio::test]
async fn configuration_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // (arguments, environment, what the error must name)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["cell", "--listen", "127.0.0.1:0", "--data", data],
            vec![],
            "name",
        ),
        (
            vec!["cell", "--name", "c0", "--data", data],
            vec![],
            "listen",
        ),
        (
            vec![
                "cell",
                "--name",
                "c0",
                "--listen",
                "127.0.0.1:0",
                "--data",
                data,
                "--lease",
                "0s",
            ],
            vec![],
            "lease",
        ),
        (
            vec![
                "cell", "--name", "c0", "--listen", "nonsense", "--data", data,
            ],
            vec![],
            "listen",
        ),
        (
            vec![
                "cell",
                "--name",
                "Bad_Name",
                "--listen",
                "127.0.0.1:0",
                "--data",
                data,
            ],
            vec![],
            "name",
        ),
        (
            vec![
                "cell",
                "--name",
                "c0",
                "--listen",
                "127.0.0.1:0",
                "--data",
                data,
            ],
            vec![("WARREN_LEASE", "forever")],
            "WARREN_LEASE",
        ),
        (
            vec![
                "cell",
                "--name",
                "c0",
                "--listen",
                "127.0.0.1:0",
                "--data",
                data,
                "--max-file-size",
                "300000",
            ],
            vec![],
            "max_file_size",
        ),
    ];
    for (args, env, field) in cases {
        let o = warren_env(&args, &env).await;
        assert_eq!(o.status.code(), Some(2), "{args:?} {env:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(field),
            "{args:?} {env:?}: error does not name {field}: {}",
            stderr(&o)
        );
    }
    // A TOML file with an unknown key.
    let cfg = dir.path().join("cell.toml");
    std::fs::write(
        &cfg,
        "name = \"c0\"\nlisten = \"127.0.0.1:0\"\nlisen = \"oops\"\n",
    )
    .unwrap();
    let o = warren(&["cell", "--config", cfg.to_str().unwrap(), "--data", data]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("lisen"), "{}", stderr(&o));
    // A good TOML file works, with flags overriding it.
    std::fs::write(
        &cfg,
        format!("name = \"c9\"\nlisten = \"127.0.0.1:1\"\ndata = \"{data}\"\nlease = \"5s\"\n"),
    )
    .unwrap();
    let p = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    assert_eq!(p.cells[0].0, "c9");
}

#[tokio::test]
async fn dev_serves_admin_stops_on_ctrl_c_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    // A fixed layout (as with the default --base-port 7100), on ports free right now.
    let base = free_base_port(1, 1);
    let at = |offset: u16| format!("127.0.0.1:{}", base + offset);
    let (meta, c1, proxy) = (at(0), at(1), at(101));
    let (meta_admin, c1_admin, proxy_admin) = (at(80), at(81), at(181));
    let base_arg = base.to_string();
    let args = [
        "dev",
        "--data",
        data.to_str().unwrap(),
        "--cells",
        "1",
        "--proxies",
        "1",
        "--base-port",
        &base_arg,
    ];
    let mut dev = WarrenProcess::spawn(bin(), &args).await;
    assert_eq!(
        dev.banner,
        vec![
            format!("meta: {meta}"),
            format!("cells: c1={c1}"),
            format!("proxies: {proxy}"),
            format!("admin: meta={meta_admin},c1={c1_admin},p1={proxy_admin}"),
        ]
    );
    assert_eq!(dev.cells, vec![("c1".to_string(), c1.clone())]);
    let env = [("WARREN_ENDPOINT", proxy.as_str())];
    let o = warren_env(&["ctl", "put", "/kept", "across restarts"], &env).await;
    assert!(o.status.success(), "{}", stderr(&o));
    // Admin endpoints: the data cell's, the meta cell's, the proxy's.
    let (code, body) = http_get(&c1_admin, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(&c1_admin, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(&c1_admin, "/status").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            status["name"].as_str(),
            status["role"].as_str(),
            status["epoch"].as_u64()
        ),
        (Some("c1"), Some("master"), Some(1))
    );
    assert!(status["nodes"].as_u64().unwrap() >= 1, "{status}");
    let (code, metrics) = http_get(&c1_admin, "/metrics").await;
    assert_eq!(code, 200);
    assert!(metrics.contains("warren_rpc_total"), "{metrics}");
    assert!(metrics.contains("# TYPE"), "{metrics}");
    let (code, _) = http_get(&c1_admin, "/nope").await;
    assert_eq!(code, 404);
    let (code, body) = http_get(&meta_admin, "/status").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["name"].as_str(), Some("meta"), "{status}");
    let (code, body) = http_get(&proxy_admin, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    // Ctrl-C stops it cleanly, and promptly even with a long-poll KeepAlive outstanding.
    let watcher = tokio::process::Command::new(bin())
        .args([
            "ctl",
            "--endpoint",
            &proxy,
            "watch",
            "/kept",
            "--count",
            "1",
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = dev
        .interrupt(Duration::from_secs(15))
        .await
        .expect("warren dev did not stop within 15 s of SIGINT");
    assert!(status.success(), "exit {status:?}");
    drop(watcher);
    // A second run resumes from the same data.
    let dev2 = WarrenProcess::spawn(bin(), &args).await;
    let o = warren_env(&["ctl", "cat", "/kept"], &env).await;
    assert_eq!(stdout(&o), "across restarts", "{}", stderr(&o));
    let o = warren_env(&["ctl", "--json", "status"], &[("WARREN_ENDPOINT", &c1)]).await;
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (v["epoch"].as_u64(), v["map_epoch"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    drop(dev2);
}
