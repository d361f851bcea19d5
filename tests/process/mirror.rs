//! `warren mirror` as users run it (docs/mirror.md): real cells as child processes (each its
//! own deployment), the agent as a child process, faults from a `Bridge` and `kill -9`.
//! Latency under a steady write load, a 30 s outage of the target, the agent killed and
//! restarted, writes made directly in the mirror (overwrite and report), a mirror of a
//! mirror, and bad arguments.

use crate::{bin, free_port, http_get, stderr, warren};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use warren_client::{
    AclNames, ChildChange, ClientOptions, Event, EventMask, NodeKind, OpenOptions, Session,
};
use warren_testkit::{wait_until, Bridge, WarrenProcess};

/// The principal of the agent and of the tests' sessions; the ACL file `ops` of every
/// deployment lists both.
const AGENT: &str = "mirror-agent";
const TESTER: &str = "tester";

/// A cell of its own deployment `deployment`, on the embedded store in `dir`.
async fn cell(dir: &tempfile::TempDir, deployment: &str, extra: &[&str]) -> WarrenProcess {
    let data = dir.path().join(deployment);
    let data = data.to_str().unwrap();
    let mut args = vec![
        "cell",
        "--name",
        "c0",
        "--data",
        data,
        "--deployment",
        deployment,
    ];
    if !extra.contains(&"--listen") {
        args.extend(["--listen", "127.0.0.1:0"]);
    }
    args.extend_from_slice(extra);
    WarrenProcess::spawn(bin(), &args).await
}

/// A session as the tester, with the `ops` ACL file written (the names the tests set).
async fn session(addr: &str) -> Session {
    let s = Session::connect_with(ClientOptions::new([addr]).principal(TESTER))
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let (h, _) = s
        .open(
            "/acl/ops",
            OpenOptions::new()
                .write()
                .create_file(format!("{AGENT}\n{TESTER}\n")),
        )
        .await
        .unwrap();
    h.close().await;
    s
}

/// The agent, and its admin address.
struct Agent {
    process: WarrenProcess,
    admin: String,
}

async fn mirror(args: &[&str]) -> Agent {
    let mut all = vec!["mirror", "--admin", "127.0.0.1:0", "--principal", AGENT];
    all.extend_from_slice(args);
    let process = WarrenProcess::spawn(bin(), &all).await;
    let admin = process
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("admin: "))
        .unwrap_or_else(|| panic!("no admin: line in {:?}", process.banner))
        .to_string();
    Agent { process, admin }
}

impl Agent {
    async fn status(&self) -> serde_json::Value {
        let (code, body) = http_get(&self.admin, "/status").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The value of an unlabelled metric (`labels` empty), or of the first series of
    /// `name` whose labels contain `labels`; 0 if there is none.
    async fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, body) = http_get(&self.admin, "/metrics").await;
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let hit = if labels.is_empty() {
                series == name
            } else {
                series.starts_with(&format!("{name}{{")) && series.contains(labels)
            };
            if hit {
                return value.parse().unwrap_or(0.0);
            }
        }
        0.0
    }

    /// The sum of every series of `name`.
    async fn metric_sum(&self, name: &str) -> f64 {
        let (_, body) = http_get(&self.admin, "/metrics").await;
        body.lines()
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(series, _)| *series == name || series.starts_with(&format!("{name}{{")))
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum()
    }
}

/// The agent's `/metrics` exports exactly the "Mirror" table of docs/metrics.md (but for
/// rows that appear once something is counted), with its types, and passes `promtool check
/// metrics` (required under CI=true; Debian's `prometheus` package).
async fn check_metrics_documented(agent: &Agent) {
    let (_, body) = http_get(&agent.admin, "/metrics").await;
    let exported: BTreeMap<&str, &str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(n, _)| n.starts_with("warren_"))
        .collect();
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md"),
    )
    .unwrap();
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Mirror"))
        .expect("a Mirror section in docs/metrics.md");
    let rows: Vec<(String, String, bool)> = section
        .lines()
        .filter(|l| l.starts_with("| `warren_"))
        .map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cols[1].trim_matches('`').to_string(),
                cols[2].to_string(),
                l.contains("Appears once"),
            )
        })
        .collect();
    assert!(rows.len() >= 10, "{rows:?}");
    for (name, kind, optional) in &rows {
        match exported.get(name.as_str()) {
            Some(t) => assert_eq!(t, kind, "type of {name}"),
            None => assert!(*optional, "{name} is documented but not exported:\n{body}"),
        }
    }
    for name in exported.keys() {
        assert!(
            rows.iter().any(|(n, _, _)| n == name),
            "{name} is exported but not in docs/metrics.md's Mirror section"
        );
    }
    let promtool = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !promtool {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "promtool is missing; CI needs it: apt-get install prometheus"
        );
        eprintln!("NOTICE: promtool is missing (apt-get install prometheus); SKIPPING promtool check metrics");
        return;
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &body).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "promtool check metrics < {}",
            file.path().display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a tree holds, relative to its root: kind, checksum, ACL names (ephemeral nodes
/// left out: they are not mirrored).
type Tree = BTreeMap<String, (NodeKind, u64, AclNames)>;

async fn tree(s: &Session, root: &str) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let path = if rel.is_empty() {
            root.to_string()
        } else {
            format!("{root}/{rel}")
        };
        let (h, info) = match s.open(&path, OpenOptions::new().read()).await {
            Ok(x) => x,
            Err(e) if e.code() == Some(warren_client::ErrorCode::NotFound) => continue,
            Err(e) => panic!("open {path}: {e}"),
        };
        out.insert(
            rel.clone(),
            (info.stat.kind, info.stat.checksum, info.stat.acl.clone()),
        );
        if info.stat.kind == NodeKind::Directory {
            for e in h.read_dir().await.unwrap() {
                if e.stat.ephemeral {
                    continue;
                }
                let child = if rel.is_empty() {
                    e.name
                } else {
                    format!("{rel}/{}", e.name)
                };
                if e.stat.kind == NodeKind::Directory {
                    stack.push(child);
                } else {
                    out.insert(child, (e.stat.kind, e.stat.checksum, e.stat.acl));
                }
            }
        }
        h.close().await;
    }
    out
}

/// Waits until the two trees are equal (kinds, checksums, ACL names, nothing extra);
/// how long it took.
async fn converges(a: &Session, b: &Session, root: &str, within: Duration, what: &str) -> Duration {
    let started = Instant::now();
    let deadline = started + within;
    loop {
        let (x, y) = (tree(a, root).await, tree(b, root).await);
        if x == y && !x.is_empty() {
            return started.elapsed();
        }
        if Instant::now() > deadline {
            let only_a: Vec<_> = x
                .iter()
                .filter(|(k, v)| y.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            let only_b: Vec<_> = y
                .iter()
                .filter(|(k, v)| x.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            panic!("{what}: not converged within {within:?}; differ in source {only_a:?}, in target {only_b:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn put(s: &Session, path: &str, data: &str) {
    let (h, info) = s
        .open(
            path,
            OpenOptions::new()
                .write()
                .create_file(data.as_bytes().to_vec()),
        )
        .await
        .unwrap_or_else(|e| panic!("put {path}: {e}"));
    if !info.created {
        h.set_contents(data.as_bytes().to_vec()).await.unwrap();
    }
    h.close().await;
}

async fn mkdir(s: &Session, path: &str) {
    let (h, _) = s
        .open(path, OpenOptions::new().read().create_dir())
        .await
        .unwrap_or_else(|e| panic!("mkdir {path}: {e}"));
    h.close().await;
}

async fn rm(s: &Session, path: &str) {
    let (h, _) = s.open(path, OpenOptions::new().write()).await.unwrap();
    h.delete().await.unwrap();
    h.close().await;
}

async fn set_acl(s: &Session, path: &str, read: &str) {
    let (h, _) = s.open(path, OpenOptions::new().change_acl()).await.unwrap();
    h.set_acl(AclNames {
        read: read.into(),
        write: String::new(),
        change_acl: String::new(),
    })
    .await
    .unwrap();
    h.close().await;
}

async fn cat(s: &Session, path: &str) -> Option<String> {
    let (h, _) = match s.open(path, OpenOptions::new().read()).await {
        Ok(x) => x,
        Err(_) => return None,
    };
    let data = h
        .contents()
        .await
        .ok()
        .map(|(d, _)| String::from_utf8_lossy(&d).into_owned());
    h.close().await;
    data
}

/// 1,000 files written in the source at 100/s; each file's visibility in the target
/// measured by a watcher there (the time its `added` event arrives, less the time the
/// source acknowledged the write). p99 under 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latency_p99_under_a_second_at_100_writes_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (cell(&dir, "src", &[]).await, cell(&dir, "dst", &[]).await);
    let (sa, sb) = (session(&a.addr()).await, session(&b.addr()).await);
    mkdir(&sa, "/lat").await;
    let _agent = mirror(&["--from", &a.addr(), "--to", &b.addr(), "--subtree", "/lat"]).await;
    wait_until(Duration::from_secs(20), "the target has /lat", || async {
        sb.open("/lat", OpenOptions::new().read()).await.is_ok()
    })
    .await;
    let (watch, _) = sb
        .open(
            "/lat",
            OpenOptions::new().read().events(EventMask::CHILD_CHANGED),
        )
        .await
        .unwrap();
    let mut events = sb.events();
    let seen = tokio::spawn(async move {
        let mut seen: BTreeMap<String, Instant> = BTreeMap::new();
        while seen.len() < 1000 {
            match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
                Ok(Some(Event::ChildChanged {
                    child,
                    change: ChildChange::Added,
                    ..
                })) => {
                    seen.entry(child).or_insert_with(Instant::now);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        seen
    });
    let mut acked: BTreeMap<String, Instant> = BTreeMap::new();
    let start = tokio::time::Instant::now();
    for i in 0..1000u32 {
        tokio::time::sleep_until(start + Duration::from_millis(10) * i).await;
        let name = format!("f{i:04}");
        put(&sa, &format!("/lat/{name}"), &format!("value {i}")).await;
        acked.insert(name, Instant::now());
    }
    let seen = seen.await.unwrap();
    assert_eq!(
        seen.len(),
        1000,
        "the target watcher saw only {} files",
        seen.len()
    );
    let mut delays: Vec<Duration> = acked
        .iter()
        .map(|(name, at)| seen[name].saturating_duration_since(*at))
        .collect();
    delays.sort();
    let (p50, p99, max) = (delays[499], delays[989], delays[999]);
    println!(
        "mirror latency over 1000 files at 100/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?} (p50 {p50:?})");
    watch.close().await;
    converges(&sa, &sb, "/lat", Duration::from_secs(20), "after the load").await;
}

/// The agent's connection to the target goes through a bridge, blackholed for 30 s while
/// the source gets writes, deletes and ACL changes. Lag grows and /status says behind
/// meanwhile; once the bridge passes traffic again the target converges to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_30s_target_outage_is_caught_up_by_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let a = cell(&dir, "src", &[]).await;
    // The target cell advertises the bridge, so Locate sends the agent back through it.
    let port = free_port();
    let bridge = Bridge::start(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let bridge_addr = bridge.addr().to_string();
    let b = cell(
        &dir,
        "dst",
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--advertise",
            &bridge_addr,
        ],
    )
    .await;
    let (sa, sb) = (session(&a.addr()).await, session(&b.addr()).await);
    mkdir(&sa, "/out").await;
    mkdir(&sa, "/out/d").await;
    for i in 0..20 {
        put(&sa, &format!("/out/d/f{i}"), "v1").await;
    }
    let agent = mirror(&[
        "--from",
        &a.addr(),
        "--to",
        &bridge_addr,
        "--subtree",
        "/out",
        "--max-lag",
        "2s",
        "--grace",
        "60s",
    ])
    .await;
    converges(
        &sa,
        &sb,
        "/out",
        Duration::from_secs(20),
        "before the outage",
    )
    .await;

    bridge.blackhole();
    let outage = Instant::now();
    let mut lags = Vec::new();
    let mut behind = false;
    let mut step = 0;
    while outage.elapsed() < Duration::from_secs(30) {
        // Writes, deletes and ACL changes, a few each second.
        match step % 4 {
            0 => put(&sa, &format!("/out/new{step}"), &format!("n{step}")).await,
            1 => put(&sa, &format!("/out/d/f{}", step % 20), &format!("v{step}")).await,
            2 => {
                let victim = format!("/out/d/f{}", (step / 4) % 20);
                if cat(&sa, &victim).await.is_some() {
                    rm(&sa, &victim).await;
                }
            }
            _ => set_acl(&sa, &format!("/out/new{}", step - 3), "ops").await,
        }
        step += 1;
        if step % 10 == 0 {
            lags.push(agent.metric("warren_mirror_lag_seconds", "").await);
            behind |= agent.status().await["state"] == "behind";
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = agent.status().await;
    println!("during the outage: lag samples {lags:?}; status {status}");
    assert_eq!(status["state"], "behind", "{status}");
    assert!(behind);
    assert!(
        lags.windows(2).filter(|w| w[1] > w[0]).count() >= lags.len() / 2
            && lags.last() > Some(&20.0),
        "the lag did not grow through the outage: {lags:?}"
    );
    let (code, _) = http_get(&agent.admin, "/readyz").await;
    assert_eq!(code, 503, "/readyz while behind");

    bridge.unblackhole();
    let took = converges(
        &sa,
        &sb,
        "/out",
        Duration::from_secs(45),
        "after the outage",
    )
    .await;
    println!("converged {took:?} after the outage ended ({step} source changes during it)");
    wait_until(Duration::from_secs(10), "status in sync", || async {
        agent.status().await["state"] == "in_sync"
    })
    .await;
    assert!(agent.metric_sum("warren_mirror_errors_total").await >= 1.0);
}

/// `kill -9` of the agent while the source is being written; writes and deletes go on
/// while it is dead; restarted, it converges with no manual step (no state file).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_agent_killed_with_sigkill_and_restarted_converges() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (cell(&dir, "src", &[]).await, cell(&dir, "dst", &[]).await);
    let (sa, sb) = (session(&a.addr()).await, session(&b.addr()).await);
    mkdir(&sa, "/k").await;
    let (from, to) = (a.addr(), b.addr());
    let args = ["--from", &from, "--to", &to, "--subtree", "/k"];
    let mut agent = mirror(&args).await;
    let writer = {
        let sa = sa.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                put(&sa, &format!("/k/f{i}"), &format!("{i}")).await;
                if i % 7 == 0 && i > 0 {
                    rm(&sa, &format!("/k/f{}", i - 1)).await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    agent.process.kill9().await;
    let killed_at = tree(&sb, "/k").await.len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The target was written directly while the agent was dead, too.
    put(&sb, "/k/stray", "x").await;
    let _agent = mirror(&args).await;
    writer.await.unwrap();
    let took = converges(&sa, &sb, "/k", Duration::from_secs(30), "after the restart").await;
    let n = tree(&sa, "/k").await.len();
    println!("{killed_at} nodes in the target when killed; {n} in the source; converged {took:?} after the writer finished");
    assert!(killed_at < n, "the kill came too late to test anything");
}

/// A write made directly in the mirror: `overwrite` restores the source's version and
/// counts it; `report` keeps it, counts it and shows it on /status.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn target_writes_are_overwritten_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (cell(&dir, "src", &[]).await, cell(&dir, "dst", &[]).await);
    let (sa, sb) = (session(&a.addr()).await, session(&b.addr()).await);
    for sub in ["/w", "/r"] {
        mkdir(&sa, sub).await;
        put(&sa, &format!("{sub}/f"), "source").await;
    }
    let over = mirror(&["--from", &a.addr(), "--to", &b.addr(), "--subtree", "/w"]).await;
    let report = mirror(&[
        "--from",
        &a.addr(),
        "--to",
        &b.addr(),
        "--subtree",
        "/r",
        "--on-target-write",
        "report",
        "--sweep-interval",
        "1s",
    ])
    .await;
    converges(&sa, &sb, "/w", Duration::from_secs(20), "/w").await;
    converges(&sa, &sb, "/r", Duration::from_secs(20), "/r").await;

    put(&sb, "/w/f", "mine").await;
    put(&sb, "/w/extra", "mine").await;
    converges(&sa, &sb, "/w", Duration::from_secs(10), "overwrite").await;
    assert_eq!(cat(&sb, "/w/f").await.as_deref(), Some("source"));
    wait_until(Duration::from_secs(5), "overwrites counted", || async {
        over.metric(
            "warren_mirror_target_writes_total",
            "action=\"overwritten\"",
        )
        .await
            >= 2.0
    })
    .await;

    put(&sb, "/r/f", "mine").await;
    wait_until(
        Duration::from_secs(10),
        "the target write reported",
        || async {
            let s = report.status().await;
            s["target_writes_kept"].get("f").is_some()
        },
    )
    .await;
    // Several sweeps later it is still there, and still reported once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(cat(&sb, "/r/f").await.as_deref(), Some("mine"));
    let status = report.status().await;
    assert!(
        status["message"].as_str().unwrap().contains("f"),
        "{status}"
    );
    assert_eq!(status["target_writes_reported"], 1, "{status}");
    assert_eq!(
        report
            .metric("warren_mirror_target_writes_total", "action=\"reported\"")
            .await,
        1.0
    );
    assert_eq!(
        report.metric("warren_mirror_target_writes_kept", "").await,
        1.0
    );
    check_metrics_documented(&over).await;
    check_metrics_documented(&report).await;
    // A change at the source wins over the kept write.
    put(&sa, "/r/f", "source v2").await;
    converges(
        &sa,
        &sb,
        "/r",
        Duration::from_secs(10),
        "report, after a source change",
    )
    .await;
    wait_until(Duration::from_secs(5), "nothing kept any more", || async {
        report.status().await["target_writes_kept"]
            .as_object()
            .is_some_and(|m| m.is_empty())
    })
    .await;
}

/// A file the agent may not read (its read ACL names a file that does not exist, which
/// denies everyone) is reported on /status and skipped; everything else is still mirrored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_path_the_agent_cannot_read_is_reported_and_the_rest_mirrored() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (cell(&dir, "src", &[]).await, cell(&dir, "dst", &[]).await);
    let (sa, sb) = (session(&a.addr()).await, session(&b.addr()).await);
    mkdir(&sa, "/p").await;
    put(&sa, "/p/ok", "1").await;
    put(&sa, "/p/secret", "s").await;
    set_acl(&sa, "/p/secret", "no-such-acl-file").await;
    let agent = mirror(&["--from", &a.addr(), "--to", &b.addr(), "--subtree", "/p"]).await;
    wait_until(Duration::from_secs(20), "ok mirrored", || async {
        cat(&sb, "/p/ok").await.as_deref() == Some("1")
    })
    .await;
    put(&sa, "/p/later", "2").await;
    rm(&sa, "/p/ok").await;
    wait_until(
        Duration::from_secs(10),
        "later changes mirrored",
        || async {
            cat(&sb, "/p/later").await.as_deref() == Some("2") && cat(&sb, "/p/ok").await.is_none()
        },
    )
    .await;
    // Reported for as long as it fails, however many rounds succeed meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = agent.status().await;
    assert!(
        status["state"] == "failing" || status["state"] == "behind",
        "{status}"
    );
    assert!(status["failing_paths"].get("secret").is_some(), "{status}");
    let (code, _) = http_get(&agent.admin, "/readyz").await;
    assert_eq!(code, 503);
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("/ls/src/p/secret") && message.contains("PERMISSION_DENIED"),
        "{status}"
    );
    assert_eq!(cat(&sb, "/p/secret").await, None);
    assert!(agent.metric_sum("warren_mirror_errors_total").await >= 1.0);
    assert_eq!(agent.metric("warren_mirror_failing", "").await, 1.0);
    // The failing path waits out its own backoff: it holds up nothing else.
    let started = Instant::now();
    put(&sa, "/p/later2", "3").await;
    wait_until(
        Duration::from_secs(5),
        "a change beside a failing path",
        || async { cat(&sb, "/p/later2").await.as_deref() == Some("3") },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a change beside a failing path took {:?}",
        started.elapsed()
    );
    // Readable again: mirrored, and the mirror is in sync again.
    set_acl(&sa, "/p/secret", "").await;
    wait_until(
        Duration::from_secs(15),
        "secret mirrored once readable",
        || async { cat(&sb, "/p/secret").await.as_deref() == Some("s") },
    )
    .await;
    wait_until(Duration::from_secs(10), "in sync again", || async {
        agent.status().await["state"] == "in_sync"
    })
    .await;
}

/// Partitioned deployments (`warren dev`: a meta cell, two data cells, a proxy): the
/// source read in direct mode through its meta cell, the target written through its proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_source_by_its_meta_cell_and_target_through_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let src = WarrenProcess::spawn_dev(bin(), &dir.path().join("s"), 2, 1).await;
    let dst = WarrenProcess::spawn_dev(bin(), &dir.path().join("t"), 2, 1).await;
    let proxied = |addr: String| async move {
        Session::connect_with(ClientOptions::proxies([addr]).principal(TESTER))
            .await
            .unwrap()
    };
    let (sa, sb) = (
        proxied(src.proxy_addr()).await,
        proxied(dst.proxy_addr()).await,
    );
    mkdir(&sa, "/part").await;
    for d in 0..4 {
        mkdir(&sa, &format!("/part/d{d}")).await;
        for f in 0..5 {
            put(&sa, &format!("/part/d{d}/f{f}"), &format!("{d}.{f}")).await;
        }
    }
    let _agent = mirror(&[
        "--from",
        &src.meta_addr(),
        "--from-kind",
        "meta",
        "--to",
        &dst.proxy_addr(),
        "--to-kind",
        "proxies",
        "--subtree",
        "/part",
    ])
    .await;
    converges(
        &sa,
        &sb,
        "/part",
        Duration::from_secs(30),
        "partitioned, at start",
    )
    .await;
    put(&sa, "/part/d1/f1", "changed").await;
    rm(&sa, "/part/d2/f0").await;
    mkdir(&sa, "/part/d9").await;
    put(&sa, "/part/d9/new", "n").await;
    let took = converges(&sa, &sb, "/part", Duration::from_secs(20), "partitioned").await;
    println!("partitioned deployments converged {took:?} after the last change");
}

/// A → B → C: a mirror of a mirror converges; and a second mirror of A's subtree, into D
/// under another path whose parents do not exist yet, converges too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mirror_of_a_mirror_converges() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c, d) = (
        cell(&dir, "a", &[]).await,
        cell(&dir, "b", &[]).await,
        cell(&dir, "c", &[]).await,
        cell(&dir, "d", &[]).await,
    );
    let (sa, sc, sd) = (
        session(&a.addr()).await,
        session(&c.addr()).await,
        session(&d.addr()).await,
    );
    let _sb = session(&b.addr()).await;
    mkdir(&sa, "/chain").await;
    mkdir(&sa, "/chain/d").await;
    put(&sa, "/chain/d/x", "1").await;
    let _ab = mirror(&[
        "--from",
        &a.addr(),
        "--to",
        &b.addr(),
        "--subtree",
        "/chain",
    ])
    .await;
    let _bc = mirror(&[
        "--from",
        &b.addr(),
        "--to",
        &c.addr(),
        "--subtree",
        "/chain",
    ])
    .await;
    let _ad = mirror(&[
        "--from",
        &a.addr(),
        "--to",
        &d.addr(),
        "--subtree",
        "/chain",
        "--to-subtree",
        "/copies/of/chain",
    ])
    .await;
    converges(&sa, &sc, "/chain", Duration::from_secs(20), "A→C at start").await;
    for i in 0..20 {
        put(&sa, &format!("/chain/d/y{i}"), &format!("{i}")).await;
    }
    rm(&sa, "/chain/d/x").await;
    set_acl(&sa, "/chain/d", "ops").await;
    // Ephemeral nodes are not mirrored.
    let (eph, _) = sa
        .open(
            "/chain/lock",
            OpenOptions::new()
                .read()
                .create_file(b"me".to_vec())
                .ephemeral(),
        )
        .await
        .unwrap();
    let took = converges(&sa, &sc, "/chain", Duration::from_secs(20), "A→B→C").await;
    println!("A→B→C converged {took:?} after the last change");
    wait_until(
        Duration::from_secs(20),
        "A→D under --to-subtree",
        || async { tree(&sa, "/chain").await == tree(&sd, "/copies/of/chain").await },
    )
    .await;
    assert!(cat(&sa, "/chain/lock").await.is_some());
    assert_eq!(
        cat(&sc, "/chain/lock").await,
        None,
        "an ephemeral node was mirrored"
    );
    eph.close().await;
}

/// Bad arguments are refused before anything runs, naming the fix; a subtree in another
/// deployment than the endpoints serve is refused once connected.
#[tokio::test]
async fn bad_arguments_name_the_fix() {
    for (args, words) in [
        (vec!["--subtree", "/ls"], "outside /ls/<deployment>"),
        (vec!["--subtree", "cfg"], "not an absolute path"),
        (
            vec!["--subtree", "/ls/local/warren/jobs"],
            "reserved subtree",
        ),
        (vec!["--subtree", "/acl"], "ACL files"),
        (vec!["--subtree", "/ls/local"], "root"),
    ] {
        let mut all = vec!["mirror", "--from", "127.0.0.1:1", "--to", "127.0.0.1:2"];
        all.extend(args.iter().copied());
        let o = warren(&all).await;
        assert_eq!(o.status.code(), Some(2), "{all:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(words), "{all:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("give"), "{all:?}: {}", stderr(&o));
    }
    // A loop: the same deployment on both sides with overlapping subtrees.
    let o = warren(&[
        "mirror",
        "--from",
        "localhost:7100",
        "--to",
        "127.0.0.1:7100",
        "--subtree",
        "/cfg",
        "--to-subtree",
        "/cfg/copy",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("same deployment") && stderr(&o).contains("--to-subtree"),
        "{}",
        stderr(&o)
    );

    // Known only once connected: the deployment the endpoints serve.
    let dir = tempfile::tempdir().unwrap();
    let a = cell(&dir, "src", &[]).await;
    let b = cell(&dir, "dst", &[]).await;
    let o = warren(&[
        "mirror",
        "--admin",
        "127.0.0.1:0",
        "--from",
        &a.addr(),
        "--to",
        &b.addr(),
        "--subtree",
        "/ls/other/cfg",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("/ls/src/cfg"), "{}", stderr(&o));
}

/// Mutual TLS to both deployments with the `warren ctl` flags (`--cacert/--cert/--key`):
/// the agent acts as its certificate's principal, which the target's ACL file lets write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirrors_over_mutual_tls_as_its_certificates_principal() {
    let certs = warren_testkit::certs::TestCerts::new();
    let dir = tempfile::tempdir().unwrap();
    let tls_cell = |deployment: &'static str| {
        let files = certs.issue(&format!("cell-{deployment}"), "warren:cell-c0");
        let data = dir.path().join(deployment).display().to_string();
        async move {
            let mut args: Vec<String> = [
                "cell",
                "--name",
                "c0",
                "--listen",
                "127.0.0.1:0",
                "--deployment",
                deployment,
                "--data",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.push(data);
            args.extend(files.flags());
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            WarrenProcess::spawn(bin(), &refs).await
        }
    };
    let (a, b) = (tls_cell("src").await, tls_cell("dst").await);
    let tester = warren_client::Tls::load(certs.issue("tester", TESTER)).unwrap();
    let connect = |addr: String| {
        let tester = tester.clone();
        async move {
            Session::connect_with(ClientOptions::new([addr]).tls(tester))
                .await
                .unwrap()
        }
    };
    let (sa, sb) = (connect(a.addr()).await, connect(b.addr()).await);
    // Only the tester and the agent may write the target's subtree.
    for s in [&sa, &sb] {
        let (h, _) = s
            .open(
                "/acl/ops",
                OpenOptions::new()
                    .write()
                    .create_file(format!("{AGENT}\n{TESTER}\n")),
            )
            .await
            .unwrap();
        h.close().await;
    }
    // The subtree, on both sides, may be written and have its ACL changed only by the
    // principals of `ops`: the agent's certificate must be what the target checks.
    let restricted = AclNames {
        read: String::new(),
        write: "ops".into(),
        change_acl: "ops".into(),
    };
    for s in [&sa, &sb] {
        let (h, _) = s
            .open(
                "/sec",
                OpenOptions::new()
                    .read()
                    .create_dir()
                    .acl(restricted.clone()),
            )
            .await
            .unwrap();
        h.close().await;
    }
    put(&sa, "/sec/f", "over tls").await;
    let agent_files = certs.issue("agent", AGENT);
    let mut args = vec![
        "--from".to_string(),
        a.addr(),
        "--to".to_string(),
        b.addr(),
        "--subtree".to_string(),
        "/sec".to_string(),
    ];
    args.extend(agent_files.flags());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let _agent = mirror(&refs).await;
    wait_until(Duration::from_secs(20), "the file over TLS", || async {
        cat(&sb, "/sec/f").await.as_deref() == Some("over tls")
    })
    .await;
    converges(&sa, &sb, "/sec", Duration::from_secs(20), "over TLS").await;
}

/// The source cell killed with SIGKILL and restarted on its store: a new master, whose
/// fail-over event (events may have been lost) makes the agent sweep; files written right
/// after the restart, while its handles are being recreated, all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_master_failover_makes_the_agent_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let src_args = |listen: &str| {
        let data = dir.path().join("src").display().to_string();
        let listen = listen.to_string();
        async move {
            WarrenProcess::spawn(
                bin(),
                &[
                    "cell",
                    "--name",
                    "c0",
                    "--listen",
                    &listen,
                    "--data",
                    &data,
                    "--deployment",
                    "src",
                    "--lease",
                    "3s",
                ],
            )
            .await
        }
    };
    let mut a = src_args(&listen).await;
    let b = cell(&dir, "dst", &[]).await;
    let (sa, sb) = (session(&a.addr()).await, session(&b.addr()).await);
    mkdir(&sa, "/fo").await;
    put(&sa, "/fo/before", "1").await;
    let agent = mirror(&["--from", &listen, "--to", &b.addr(), "--subtree", "/fo"]).await;
    converges(
        &sa,
        &sb,
        "/fo",
        Duration::from_secs(20),
        "before the failover",
    )
    .await;
    let sweeps = agent
        .metric("warren_mirror_sweeps_total", "result=\"ok\"")
        .await;

    a.kill9().await;
    let _a2 = src_args(&listen).await;
    let writer = Session::connect_with(ClientOptions::new([listen.clone()]).principal(TESTER))
        .await
        .unwrap();
    for i in 0..20 {
        put(&writer, &format!("/fo/after{i}"), &format!("{i}")).await;
    }
    converges(
        &writer,
        &sb,
        "/fo",
        Duration::from_secs(30),
        "after the failover",
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "a sweep after the fail-over",
        || async {
            agent
                .metric("warren_mirror_sweeps_total", "result=\"ok\"")
                .await
                > sweeps
        },
    )
    .await;
}

/// Ctrl-C (SIGINT; SIGTERM alike) stops the agent cleanly, closing its sessions: a
/// restarted agent's writes to what the old one had read do not wait for its sessions to
/// expire (a dead reader holds a write for up to a lease, docs/design.md §7).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_agent_closes_its_sessions_so_a_restart_is_not_held_up() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (cell(&dir, "src", &[]).await, cell(&dir, "dst", &[]).await);
    let (sa, sb) = (session(&a.addr()).await, session(&b.addr()).await);
    mkdir(&sa, "/stop").await;
    put(&sa, "/stop/f", "v1").await;
    let (from, to) = (a.addr(), b.addr());
    let args = ["--from", &from, "--to", &to, "--subtree", "/stop"];
    let mut first = mirror(&args).await;
    converges(&sa, &sb, "/stop", Duration::from_secs(20), "first agent").await;
    let status = first
        .process
        .interrupt(Duration::from_secs(10))
        .await
        .expect("the agent stops within 10 s of SIGINT");
    assert!(status.success(), "{status:?}");
    let _second = mirror(&args).await;
    let started = Instant::now();
    put(&sa, "/stop/f", "v2").await;
    wait_until(Duration::from_secs(15), "v2 in the target", || async {
        cat(&sb, "/stop/f").await.as_deref() == Some("v2")
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the restarted agent's write waited {:?}",
        started.elapsed()
    );
}
