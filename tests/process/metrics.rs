//! The metrics of `docs/metrics.md` on real processes: one `warren cell` and one
//! `warren proxy`, each with `--admin`; a little traffic through the proxy (sessions,
//! writes, cached reads, a lock wait); then both `/metrics` pages must export exactly the
//! metrics the document lists for their tier, with sane values, and pass
//! `promtool check metrics` (Debian's `prometheus` package; required under CI=true).

use crate::{bin, free_port, http_get};
use std::collections::BTreeMap;
use std::time::Duration;
use warren_client::{ClientOptions, LockMode, OpenOptions, Session};
use warren_testkit::WarrenProcess;

/// One scraped exposition: metric families (`# TYPE`) and samples.
struct Exposition {
    text: String,
    /// family name → type (`counter`, `gauge`, `histogram`, …).
    types: BTreeMap<String, String>,
    /// families with a `# HELP` line.
    helped: Vec<String>,
    /// (name, labels as written between the braces, value).
    samples: Vec<(String, String, f64)>,
}

impl Exposition {
    fn parse(text: String) -> Exposition {
        let mut types = BTreeMap::new();
        let mut helped = Vec::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                if let (Some(n), Some(t)) = (it.next(), it.next()) {
                    types.insert(n.to_string(), t.to_string());
                }
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                if let Some(n) = rest.split_whitespace().next() {
                    helped.push(n.to_string());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let (series, value) = line.rsplit_once(' ').expect("NAME VALUE");
                let (name, labels) = match series.split_once('{') {
                    Some((n, l)) => (n, l.trim_end_matches('}')),
                    None => (series, ""),
                };
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
                samples.push((name.to_string(), labels.to_string(), value));
            }
        }
        Exposition {
            text,
            types,
            helped,
            samples,
        }
    }

    /// Sum of the samples of `name` whose labels contain every `k="v"` of `want`.
    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.split(',').any(|l| l == format!("{k}=\"{v}\"")))
            })
            .map(|s| s.2)
            .sum()
    }

    fn has(&self, name: &str, want: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.split(',').any(|l| l == format!("{k}=\"{v}\"")))
        })
    }

    /// The single value of an unlabelled metric.
    fn value(&self, name: &str) -> f64 {
        let v: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.0 == name && s.1.is_empty())
            .map(|s| s.2)
            .collect();
        assert_eq!(v.len(), 1, "one sample of {name} in\n{}", self.text);
        v[0]
    }
}

/// The tables of `docs/metrics.md`: section ("Both tiers", "Cells", "Proxies") →
/// (name, type).
fn documented() -> BTreeMap<String, Vec<(String, String)>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let doc = std::fs::read_to_string(&path).expect("read docs/metrics.md");
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section = String::new();
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().to_string();
        } else if let Some(row) = line.strip_prefix("| `warren_") {
            let cols: Vec<&str> = row.split('|').map(str::trim).collect();
            let name = format!("warren_{}", cols[0].trim_end_matches('`'));
            out.entry(section.clone())
                .or_default()
                .push((name, cols[1].to_string()));
        }
    }
    out
}

/// The exposition's families must be exactly the documented ones (but for `optional`:
/// labelled series that appear once something is counted), with the documented types, each
/// with a `# HELP`.
fn check_documented(tier: &str, e: &Exposition, docs: &[(String, String)], optional: &[&str]) {
    let want: BTreeMap<&str, &str> = docs.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    let have: BTreeMap<&str, &str> = e
        .types
        .iter()
        .filter(|(n, _)| n.starts_with("warren_"))
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let missing: Vec<_> = want
        .keys()
        .filter(|n| !have.contains_key(*n) && !optional.contains(n))
        .collect();
    let undocumented: Vec<_> = have.keys().filter(|n| !want.contains_key(*n)).collect();
    assert!(
        missing.is_empty() && undocumented.is_empty(),
        "{tier}: documented but not exported: {missing:?}; exported but not in docs/metrics.md: \
         {undocumented:?}\n{}",
        e.text
    );
    for (n, t) in want.iter().filter(|(n, _)| have.contains_key(*n)) {
        assert_eq!(
            have[n], *t,
            "{tier}: type of {n} (docs/metrics.md says {t})"
        );
        assert!(e.helped.iter().any(|h| h == n), "{tier}: {n} has no # HELP");
    }
}

/// Pipes an exposition through `promtool check metrics`. Without promtool: fails under
/// CI=true, else prints a notice and skips.
async fn promtool_check(tier: &str, text: &str) {
    use tokio::io::AsyncWriteExt;
    let found = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "promtool is not on PATH; CI checks the metrics exposition with it: install \
                 Debian's `prometheus` package (apt-get install prometheus)"
            );
        }
        eprintln!(
            "NOTICE: promtool not found (Debian package `prometheus`); skipping \
             `promtool check metrics` for the {tier}'s /metrics"
        );
        return;
    }
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics rejects the {tier}'s /metrics:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn scrape(addr: &str) -> Exposition {
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    Exposition::parse(body)
}

/// The sum of the samples of the metric `name` (any labels) on the `/metrics` page at
/// `admin`.
pub(crate) async fn metric(admin: &str, name: &str) -> f64 {
    scrape(admin).await.sum(name, &[])
}

/// The sum of the samples of the metric `name` with the labels `want` on the `/metrics`
/// page at `admin`.
pub(crate) async fn metric_with(admin: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    scrape(admin).await.sum(name, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_and_proxies_export_the_documented_metrics() {
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
    let proxy = WarrenProcess::spawn(
        bin(),
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--cell",
            &front,
            "--admin",
            &proxy_admin,
            "--client-lease",
            "2s",
            "--lease-margin",
            "500ms",
            "--keepalive-reply-before-end",
            "500ms",
        ],
    )
    .await;
    let proxies = vec![proxy.proxy_addr()];
    let connect = || async {
        Session::connect_with(ClientOptions::proxies(proxies.clone()).cache(false))
            .await
            .expect("connect through the proxy")
    };
    let (a, b) = (connect().await, connect().await);

    // Writes, and reads the proxy's shared cache answers (the first one misses).
    let (ah, _) = a
        .open("/m", OpenOptions::new().write().create_file(b"v0".to_vec()))
        .await
        .unwrap();
    ah.set_contents(b"v1".to_vec()).await.unwrap();
    let (bh, _) = b
        .open("/m", OpenOptions::new().read().write())
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(bh.contents().await.unwrap().0, b"v1");
    }
    // A write to the cached file: the cell invalidates the proxy's copy.
    ah.set_contents(b"v2".to_vec()).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = bh.contents().await.unwrap().0;
        if seen == b"v2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, b"v2");
    // A lock wait: b's Acquire waits until a releases.
    ah.acquire(LockMode::Exclusive, None).await.unwrap();
    let waiter = tokio::spawn(async move {
        bh.acquire(LockMode::Exclusive, Some(Duration::from_secs(20)))
            .await
            .unwrap();
        bh
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = scrape(&cell_admin).await;
    assert_eq!(
        waiting.value("warren_cell_lock_waiters"),
        1.0,
        "{}",
        waiting.text
    );
    assert_eq!(
        scrape(&proxy_admin)
            .await
            .value("warren_proxy_acquires_in_flight"),
        1.0
    );
    assert!(ah.release().await.unwrap());
    let bh = waiter.await.unwrap();
    assert!(bh.release().await.unwrap());
    // A failed call, counted by its code.
    let err = a
        .open("/nope", OpenOptions::new().read())
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(warren_client::ErrorCode::NotFound),
        "{err}"
    );
    // Let KeepAlives flow (2 s client leases) and the proxy refresh its gauges (500 ms).
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let c = scrape(&cell_admin).await;
    let p = scrape(&proxy_admin).await;
    let docs = documented();
    let mut cell_docs = docs["Both tiers"].clone();
    cell_docs.extend(docs["Cells"].iter().cloned());
    let mut proxy_docs = docs["Both tiers"].clone();
    proxy_docs.extend(docs["Proxies"].iter().cloned());
    check_documented("cell", &c, &cell_docs, &[]);
    // No WRONG_CELL here: one cell, no map. A cover refresh only if a client's first
    // copy needed one (its lease reached past the cover then).
    check_documented(
        "proxy",
        &p,
        &proxy_docs,
        &[
            "warren_proxy_wrong_cell_total",
            "warren_proxy_cover_refreshes_total",
        ],
    );

    // RPCs by tier, method and code; latency histograms by method (in buckets).
    let cell_ok = [("tier", "cell"), ("code", "OK")];
    assert!(
        c.sum(
            "warren_rpc_total",
            &[cell_ok[0], cell_ok[1], ("method", "SetContents")]
        ) >= 2.0,
        "{}",
        c.text
    );
    assert!(c.has(
        "warren_rpc_duration_seconds_bucket",
        &[("tier", "cell"), ("method", "SetContents"), ("le", "+Inf")]
    ));
    assert!(!c.has("warren_rpc_total", &[("tier", "proxy")]));
    let proxy_ok = [("tier", "proxy"), ("code", "OK")];
    for (method, at_least) in [
        ("CreateSession", 2.0),
        ("Open", 2.0),
        ("SetContents", 2.0),
        ("GetContentsAndStat", 4.0),
        ("Acquire", 2.0),
        ("Release", 2.0),
    ] {
        let n = p.sum(
            "warren_rpc_total",
            &[proxy_ok[0], proxy_ok[1], ("method", method)],
        );
        assert!(
            n >= at_least,
            "proxy {method}: {n} < {at_least}\n{}",
            p.text
        );
    }
    assert_eq!(
        p.sum(
            "warren_rpc_total",
            &[("tier", "proxy"), ("method", "Open"), ("code", "NOT_FOUND")]
        ),
        1.0,
        "{}",
        p.text
    );
    assert!(p.has(
        "warren_rpc_duration_seconds_bucket",
        &[("tier", "proxy"), ("method", "Open"), ("le", "0.001")]
    ));
    assert!(!p.has(
        "warren_rpc_duration_seconds_count",
        &[("method", "KeepAlive")]
    ));

    // Sessions, KeepAlives, absorption.
    assert_eq!(p.value("warren_proxy_client_sessions"), 2.0, "{}", p.text);
    assert_eq!(p.value("warren_proxy_upstream_sessions"), 1.0);
    assert_eq!(p.value("warren_proxy_sessions_created_total"), 2.0);
    assert!(c.value("warren_cell_proxy_sessions") == 1.0, "{}", c.text);
    assert!(c.value("warren_cell_sub_sessions") >= 2.0, "{}", c.text);
    let client_ka = p.value("warren_proxy_keepalives_received_total");
    let sent_ka = p.sum("warren_proxy_keepalives_sent_total", &[("cell", "main")]);
    let cell_ka = c.value("warren_keepalives_received_total");
    assert!(client_ka >= 2.0, "{}", p.text);
    assert!(sent_ka >= 1.0, "{}", p.text);
    assert!(cell_ka >= 1.0 && cell_ka <= sent_ka, "{}", c.text);
    println!(
        "client KeepAlives at the proxy {client_ka}, sent to the cell {sent_ka}, received by \
         the cell {cell_ka}: absorption factor {:.1}",
        client_ka / cell_ka
    );

    // Cache, invalidations, lock waits.
    assert!(
        p.value("warren_proxy_cache_hits_total") >= 1.0,
        "{}",
        p.text
    );
    assert!(p.value("warren_proxy_cache_misses_total") >= 1.0);
    assert!(p.value("warren_proxy_cache_invalidations_total") >= 1.0);
    assert!(
        c.value("warren_cell_invalidations_sent_total") >= 1.0,
        "{}",
        c.text
    );
    assert_eq!(c.value("warren_cell_lock_waits_total"), 1.0);
    assert_eq!(c.value("warren_cell_lock_waiters"), 0.0);
    assert_eq!(p.value("warren_proxy_acquires_in_flight"), 0.0);

    // Failovers, epochs, WRONG_CELL (none: one cell, no map).
    assert_eq!(c.value("warren_cell_failovers_total"), 1.0);
    assert_eq!(c.value("warren_cell_epoch"), 1.0);
    assert_eq!(c.value("warren_cell_map_epoch"), 0.0);
    assert_eq!(c.value("warren_cell_wrong_cell_total"), 0.0);
    assert_eq!(p.value("warren_proxy_map_epoch"), 0.0);
    assert!(c.value("warren_store_mutations_total") >= 3.0);

    promtool_check("cell", &c.text).await;
    promtool_check("proxy", &p.text).await;

    a.close().await.unwrap();
    b.close().await.unwrap();
    drop(proxy);
    drop(cell);
}
