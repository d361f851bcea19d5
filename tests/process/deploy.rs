//! `warren_loadtest::deploy` (the process deployment `warren loadtest` starts and hits with
//! faults):
//! a meta cell, two data cells and two proxies as separate `warren` processes; a session
//! through the proxies keeps working when the proxy it uses is killed with SIGKILL, and
//! again after the master of the cell holding its file, then the meta cell, is killed and
//! restarted.

use crate::bin;
use std::future::Future;
use std::time::{Duration, Instant};
use warren_client::{ClientOptions, OpenOptions, Session};
use warren_loadtest::deploy::{DeploySpec, Deployment, Member};

/// How long the session may take to work again after a fault.
const RECOVERY: Duration = Duration::from_secs(20);

/// Retries `op` until it succeeds or `within` has passed; panics with the last error.
async fn eventually<T, E, F, Fut>(what: &str, within: Duration, mut op: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    loop {
        let last = match tokio::time::timeout(Duration::from_secs(15), op()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "an attempt timed out after 15s".to_string(),
        };
        assert!(
            start.elapsed() < within,
            "{what}: still failing after {within:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes `value` to `path` (creating it) and reads it back; the cell that holds it.
async fn write_and_read(s: &Session, path: &str, value: &str) -> Result<String, String> {
    let (h, _) = s
        .open(path, OpenOptions::new().read().write().create_file(""))
        .await
        .map_err(|e| format!("open {path}: {e}"))?;
    let r = async {
        h.set_contents(value.as_bytes().to_vec())
            .await
            .map_err(|e| format!("write {path}: {e}"))?;
        let (got, stat) = h
            .contents()
            .await
            .map_err(|e| format!("read {path}: {e}"))?;
        if got != value.as_bytes() {
            return Err(format!(
                "read {path}: {:?}, wrote {value:?}",
                String::from_utf8_lossy(&got)
            ));
        }
        Ok(stat.cell)
    }
    .await;
    h.close().await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_deployment_survives_killing_a_proxy_and_restarting_a_cell_master() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec: DeploySpec = "dev:cells=2,proxies=2".parse().unwrap();
    spec.lease = Some(Duration::from_secs(2));
    let started = Instant::now();
    let mut d = Deployment::start_with(bin(), &spec, dir.path())
        .await
        .unwrap_or_else(|e| panic!("start: {e:#}"));
    eprintln!("started {spec} in {:?}", started.elapsed());

    assert_eq!(d.cell_names(), ["c1", "c2"]);
    let proxies = d.proxy_addrs();
    assert_eq!(proxies.len(), 2);
    assert_eq!(d.admin_addrs().len(), 5);
    assert_eq!(d.cell_admin_addrs(), d.admin_addrs()[..3]);
    assert_eq!(d.proxy_admin_addrs(), d.admin_addrs()[3..]);
    for m in [
        "master:meta",
        "master:c1",
        "master:c2",
        "proxy:1",
        "proxy:2",
    ] {
        let log = d.log_path(&m.parse().unwrap()).unwrap();
        assert!(
            log.starts_with(dir.path().join("logs")),
            "{}",
            log.display()
        );
        assert!(log.exists(), "{}", log.display());
    }
    // The meta cell answers Locate (its gRPC address) as the meta cell of deployment local.
    let info = warren_client::locate(&[d.meta_addr()], Duration::from_secs(2))
        .await
        .expect("Locate at the meta cell");
    assert_eq!((info.cell.as_str(), info.is_master), ("meta", true));

    // Unknown members and members not running are errors, naming them.
    let e = d.kill(&Member::Proxy(3)).await.unwrap_err().to_string();
    assert!(e.contains("proxy:3"), "{e}");
    let e = d
        .kill(&Member::Master("c9".into()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("master:c9") && e.contains("c1, c2"), "{e}");
    let e = d.restart(&Member::Proxy(1)).await.unwrap_err().to_string();
    assert!(e.contains("is running"), "{e}");

    let s = Session::connect_with(ClientOptions::proxies(proxies.clone()))
        .await
        .expect("a session through the proxies");
    assert!(s.lease() <= Duration::from_secs(2), "{:?}", s.lease());
    let cell = write_and_read(&s, "/deploy-test", "one")
        .await
        .expect("write and read through a proxy");
    assert!(d.cell_names().contains(&cell), "{cell}");

    // Kill -9 the proxy the session uses: it goes on through the other one.
    let home = s.master();
    let j = proxies
        .iter()
        .position(|p| *p == home)
        .unwrap_or_else(|| panic!("the session's master {home} is none of {proxies:?}"));
    let used = Member::Proxy(u16::try_from(j + 1).unwrap());
    d.kill(&used).await.expect("kill the proxy in use");
    assert!(!d.is_running(&used).unwrap());
    let e = d.kill(&used).await.unwrap_err().to_string();
    assert!(e.contains("not running"), "{e}");
    let killed = Instant::now();
    eventually("writing through the other proxy", RECOVERY, || {
        write_and_read(&s, "/deploy-test", "two")
    })
    .await;
    eprintln!(
        "{used} killed: the session worked again after {:?}",
        killed.elapsed()
    );
    assert_ne!(s.master(), home, "the session should have moved");
    d.restart(&used).await.expect("restart the proxy");
    assert!(d.is_running(&used).unwrap());

    // Kill -9 the master of the cell holding the file and restart it (same port, same
    // store): the session reads the acknowledged write, and writes again.
    let master = Member::Master(cell.clone());
    d.kill(&master).await.expect("kill the cell master");
    let killed = Instant::now();
    d.restart(&master).await.expect("restart the cell master");
    eprintln!("{master} restarted in {:?}", killed.elapsed());
    let read = eventually("reading after the cell restart", RECOVERY, || async {
        let (h, _) = s.open("/deploy-test", OpenOptions::new().read()).await?;
        let r = h.contents().await;
        h.close().await;
        r.map(|(v, _)| v)
    })
    .await;
    assert_eq!(read, b"two");
    eventually("writing after the cell restart", RECOVERY, || {
        write_and_read(&s, "/deploy-test", "three")
    })
    .await;
    eprintln!(
        "{master}: the session worked again after {:?}",
        killed.elapsed()
    );

    // The meta cell too: killed and restarted, it serves again, and so does the session.
    let meta = Member::Master("meta".into());
    d.kill(&meta).await.expect("kill the meta cell");
    let killed = Instant::now();
    d.restart(&meta).await.expect("restart the meta cell");
    eventually("writing after the meta cell restart", RECOVERY, || {
        write_and_read(&s, "/deploy-test", "four")
    })
    .await;
    eprintln!(
        "{meta}: the session worked again after {:?}",
        killed.elapsed()
    );

    let _ = s.close().await;
    let stopping = Instant::now();
    d.stop().await.expect("a graceful stop");
    eprintln!("stopped in {:?}", stopping.elapsed());
    eprintln!("whole test: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_member_that_fails_to_start_is_reported_with_its_log() {
    // `/bin/sh cell --name meta …` is not a warren: it exits at once, complaining.
    let dir = tempfile::tempdir().unwrap();
    let spec: DeploySpec = "dev:cells=1,proxies=1".parse().unwrap();
    let e = Deployment::start_with(std::path::Path::new("/bin/sh"), &spec, dir.path())
        .await
        .err()
        .expect("refused");
    let text = format!("{e:#}");
    assert!(
        text.contains("the meta cell") && text.contains("exited"),
        "{text}"
    );
    let log = dir.path().join("logs").join("meta.log");
    assert!(text.contains(&log.display().to_string()), "{text}");
    assert!(
        text.contains("=== warren deploy: start #1 of meta: /bin/sh cell --name meta"),
        "{text}"
    );
    // The directory now holds a deployment's remains: a second start is refused.
    std::fs::create_dir_all(dir.path().join("meta")).unwrap();
    let e = Deployment::start_with(bin(), &spec, dir.path())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("already holds a deployment"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_leases_start_serve_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let spec: DeploySpec = "dev:cells=1,proxies=1".parse().unwrap();
    let d = Deployment::start_with(bin(), &spec, dir.path())
        .await
        .unwrap_or_else(|e| panic!("start: {e:#}"));
    let s = Session::connect_with(ClientOptions::proxies(d.proxy_addrs()))
        .await
        .expect("a session through the proxy");
    let lease = s.lease();
    assert!(
        lease > Duration::from_secs(10) && lease <= Duration::from_secs(12),
        "the default client lease is 12s: {lease:?}"
    );
    let cell = write_and_read(&s, "/deploy-default", "x")
        .await
        .expect("write and read");
    assert_eq!(cell, "c1");
    let _ = s.close().await;
    d.stop().await.expect("a graceful stop");
}

/// `tls=on`: every member serves mutual TLS with certificates made for the deployment.
/// A plaintext client is refused at the proxy and at a cell; a session with the
/// deployment's client identity writes and reads through the proxy and direct to the
/// cells (routed by the map the deployment wrote as operator over TLS), as the principal
/// of that certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_deployment_serves_mutual_tls_only_and_its_client_identity_works() {
    let dir = tempfile::tempdir().unwrap();
    let spec: DeploySpec = "dev:cells=1,proxies=1,tls=on".parse().unwrap();
    let d = Deployment::start_with(bin(), &spec, dir.path())
        .await
        .unwrap_or_else(|e| panic!("start: {e:#}"));
    let tls = d
        .client_tls()
        .expect("a tls=on deployment has a client identity");
    assert_eq!(
        tls.principal().as_deref(),
        Some(warren_loadtest::deploy::DEPLOY_CLIENT_PRINCIPAL)
    );
    let quick = |o: ClientOptions| o.grace_period(Duration::from_secs(1));
    for (what, options) in [
        ("the proxy", ClientOptions::proxies(d.proxy_addrs())),
        ("the cells", ClientOptions::meta([d.meta_addr()])),
    ] {
        let e = Session::connect_with(quick(options.clone()))
            .await
            .expect_err("a plaintext client is refused");
        assert!(e.to_string().contains("requires mutual TLS"), "{what}: {e}");
        let s = Session::connect_with(options.tls(tls.clone()))
            .await
            .unwrap_or_else(|e| panic!("{what}: a session with the client identity: {e}"));
        let path = format!("/deploy-tls-{}", what.replace(' ', "-"));
        assert_eq!(
            write_and_read(&s, &path, "x")
                .await
                .expect("write and read"),
            "c1",
            "{what}"
        );
        let _ = s.close().await;
    }
    d.stop().await.expect("a graceful stop");
}
