//! Mutual TLS with real certificates and real processes (docs/security.md): a cell and a
//! proxy that refuse clients with no certificate, an untrusted one or an expired one (and
//! say why), serve a client with a good one directly and through the proxy, refuse
//! plaintext off loopback, and pick up rotated certificate files without a restart while
//! an existing session continues.

use crate::{bin, stderr, stdout, warren};
use std::time::Duration;
use warren_testkit::certs::{paths, TestCerts};
use warren_testkit::WarrenProcess;
use warren_tls::TlsFiles;

async fn cell(certs: &TestCerts, data: &std::path::Path) -> WarrenProcess {
    let files = certs.issue("cell", "warren:cell-c0");
    let mut args: Vec<String> = ["cell", "--name", "c0", "--listen", "127.0.0.1:0", "--data"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(data.display().to_string());
    args.extend(files.flags());
    // The proxy's certificate ([`proxy`]) is the cell's only proxy principal.
    args.extend(["--proxy-principal".to_string(), PROXY_PRINCIPAL.to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    WarrenProcess::spawn(bin(), &refs).await
}

/// The principal of the proxy's certificate in these tests.
const PROXY_PRINCIPAL: &str = "warren:proxy-1";

async fn proxy(certs: &TestCerts, cell: &str) -> WarrenProcess {
    let files = certs.issue("proxy", PROXY_PRINCIPAL);
    let mut args: Vec<String> = vec![
        "proxy".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--cell".into(),
        format!("c0={cell}"),
    ];
    args.extend(files.flags());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    WarrenProcess::spawn(bin(), &refs).await
}

/// `warren ctl --endpoint EP` (or `--proxies EP`) with `tls`'s flags, then `args`.
async fn ctl(target: (&str, &str), tls: Option<&TlsFiles>, args: &[&str]) -> std::process::Output {
    let mut v: Vec<String> = vec![
        "ctl".into(),
        target.0.into(),
        target.1.into(),
        "--grace".into(),
        "1s".into(),
    ];
    if let Some(t) = tls {
        v.extend(t.flags());
    }
    v.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = v.iter().map(String::as_str).collect();
    warren(&refs).await
}

#[tokio::test]
async fn clients_without_a_good_certificate_are_refused_with_the_reason_at_the_cell_and_the_proxy()
{
    let certs = TestCerts::new();
    let data = tempfile::tempdir().unwrap();
    let cell = cell(&certs, data.path()).await;
    let proxy = proxy(&certs, &cell.addr()).await;
    let good = certs.issue("client", "warren:client-a");
    let cell_ep = cell.addr();
    let proxy_ep = proxy.proxies[0].clone();

    // A good certificate works directly and through the proxy: a write and a read.
    let o = ctl(
        ("--endpoint", &cell_ep),
        Some(&good),
        &["put", "/direct", "d1"],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ctl(("--endpoint", &cell_ep), Some(&good), &["cat", "/direct"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "d1");
    let o = ctl(
        ("--proxies", &proxy_ep),
        Some(&good),
        &["put", "/proxied", "p1"],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ctl(("--proxies", &proxy_ep), Some(&good), &["cat", "/proxied"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "p1");

    let none = TlsFiles::ca_only(certs.ca());
    let untrusted = certs.untrusted("untrusted", "warren:mallory");
    let expired = certs.expired("expired", "warren:client-a");
    let cases: [(&str, Option<&TlsFiles>, &str); 4] = [
        (
            "no certificate",
            Some(&none),
            "requires a client certificate",
        ),
        (
            "an untrusted certificate",
            Some(&untrusted),
            "not signed by a CA the server trusts",
        ),
        ("an expired certificate", Some(&expired), "has expired"),
        ("plaintext", None, "TLS"),
    ];
    for (target, ep) in [("--endpoint", &cell_ep), ("--proxies", &proxy_ep)] {
        for (what, tls, reason) in &cases {
            let o = ctl((target, ep), *tls, &["cat", "/direct"]).await;
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{what} at {target} {ep}: {err}");
            assert!(
                err.contains(reason),
                "{what} at {target} {ep}: the error should say {reason:?}: {err}"
            );
            assert!(!stdout(&o).contains("d1"), "{what} read the file");
        }
    }
}

#[tokio::test]
async fn plaintext_off_loopback_is_refused_before_listening_unless_insecure() {
    let data = tempfile::tempdir().unwrap();
    // Refused by the settings' validation, before anything binds: no traffic anywhere.
    for listen in ["0.0.0.0:0", "192.0.2.1:7000"] {
        let o = warren(&[
            "cell",
            "--name",
            "c0",
            "--listen",
            listen,
            "--data",
            data.path().to_str().unwrap(),
        ])
        .await;
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("--insecure") && err.contains("--cacert"),
            "{err}"
        );
        assert!(err.contains("listen"), "{err}");
        let o = warren(&["proxy", "--listen", listen, "--cell", "c0=127.0.0.1:1"]).await;
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("--insecure"), "{}", stderr(&o));
    }
    // --insecure gets past the check: 192.0.2.1 (TEST-NET-1) is not this machine's, so
    // binding it fails, and the error is the bind's, not the TLS rule's.
    let o = warren(&[
        "cell",
        "--name",
        "c0",
        "--listen",
        "192.0.2.1:7000",
        "--data",
        data.path().to_str().unwrap(),
        "--insecure",
    ])
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot listen on 192.0.2.1:7000"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn a_cell_s_rotated_certificate_is_served_to_new_connections_while_a_session_continues() {
    rotation(false).await;
}

#[tokio::test]
async fn a_proxy_s_rotated_certificate_is_served_to_new_connections_while_a_session_continues() {
    rotation(true).await;
}

/// Rotates the certificate of the cell, or of the proxy in front of it (`at_proxy`), to
/// one from a new CA, with every process's CA file (they share one) becoming a bundle of
/// both: a client that trusts only the new CA gets through once the server has reloaded,
/// and a watch made before the rotation, through the same server, sees its write.
async fn rotation(at_proxy: bool) {
    let certs = TestCerts::new();
    let data = tempfile::tempdir().unwrap();
    let cell = cell(&certs, data.path()).await;
    let proxy = match at_proxy {
        true => Some(proxy(&certs, &cell.addr()).await),
        false => None,
    };
    let (flag, ep, name, principal) = match &proxy {
        Some(p) => ("--proxies", p.proxies[0].clone(), "proxy", "warren:proxy-1"),
        None => ("--endpoint", cell.addr(), "cell", "warren:cell-c0"),
    };
    let client = certs.issue("client", "warren:client-a");
    let o = ctl((flag, &ep), Some(&client), &["put", "/w", "0"]).await;
    assert!(o.status.success(), "{}", stderr(&o));

    // A session that lives across the rotation: a watcher on the old connection.
    let mut args = vec!["ctl".to_string(), flag.into(), ep.clone()];
    args.extend(client.flags());
    args.extend(["watch", "/w", "--count", "1"].map(String::from));
    let watcher = tokio::process::Command::new(bin())
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // The new certificate comes from a new CA. A client that trusts only the new CA
    // cannot reach the server before the rotation.
    let ca2 = certs.other_ca("second");
    let new_cert = certs.issue_by(&ca2, "next", principal);
    let (_, client_cert, client_key) = paths(&client);
    let trusts_new_only = TlsFiles::new(&ca2.path, client_cert, client_key);
    let o = ctl((flag, &ep), Some(&trusts_new_only), &["cat", "/w"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not signed by a CA this client trusts"),
        "{}",
        stderr(&o)
    );

    // Rotate in place: the server's files now hold the new certificate, and a CA bundle
    // trusting both CAs (clients still have certificates from the first).
    let (_, new_cert, new_key) = paths(&new_cert);
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(certs.ca()).unwrap(),
        ca2.cert_pem()
    );
    std::fs::write(
        certs.dir().join(format!("{name}.key")),
        std::fs::read(&new_key).unwrap(),
    )
    .unwrap();
    std::fs::write(
        certs.dir().join(format!("{name}.pem")),
        std::fs::read(&new_cert).unwrap(),
    )
    .unwrap();
    std::fs::write(certs.ca(), bundle).unwrap();

    // A new connection gets the new certificate: the client trusting only the new CA
    // gets through once the server has noticed (it polls every 2 s). Its writes reach the
    // session from before the rotation, which continues: its watch sees one and exits.
    let mut watcher = watcher;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut rotated = false;
    loop {
        if rotated && watcher.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotated: {rotated}; the watcher from before the rotation saw no write"
        );
        let o = ctl((flag, &ep), Some(&trusts_new_only), &["put", "/w", "after"]).await;
        if rotated {
            assert!(o.status.success(), "{}", stderr(&o));
        }
        rotated |= o.status.success();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let out = watcher.wait_with_output().await.unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "contents_modified /ls/local/w"
    );
}

#[tokio::test]
async fn warren_dev_tls_serves_mutual_tls_and_prints_the_ctl_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let dev = WarrenProcess::spawn(
        bin(),
        &[
            "dev",
            "--tls",
            "--data",
            data.to_str().unwrap(),
            "--cells",
            "1",
            "--proxies",
            "1",
            "--base-port",
            "0",
        ],
    )
    .await;
    let flags_line = dev
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("tls: warren ctl "))
        .unwrap_or_else(|| panic!("no `tls:` line in {:?}", dev.banner));
    let env_line = dev
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("tls-env: export "))
        .unwrap_or_else(|| panic!("no `tls-env:` line in {:?}", dev.banner));
    let tls_dir = data.join("tls").canonicalize().unwrap();
    assert!(
        flags_line.contains(&format!("--cacert {}", tls_dir.join("ca.pem").display())),
        "{flags_line}"
    );
    let proxy = dev.proxies[0].clone();

    // The printed flags work through the proxy: a write and a read.
    let with = |args: &[&str]| {
        let mut v: Vec<String> = vec!["ctl".into(), "--proxies".into(), proxy.clone()];
        v.extend(flags_line.split_whitespace().map(String::from));
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let run = |v: Vec<String>| async move {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        warren(&refs).await
    };
    let o = run(with(&["put", "/dev-tls", "x"])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    // So does the printed environment.
    let env: Vec<(String, String)> = env_line
        .split_whitespace()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    assert_eq!(env.len(), 3, "{env_line}");
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let o = crate::warren_env(&["ctl", "--proxies", &proxy, "cat", "/dev-tls"], &env_refs).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "x");
    // Without them, the proxy refuses and says why.
    let o = run(vec![
        "ctl".into(),
        "--proxies".into(),
        proxy.clone(),
        "--grace".into(),
        "1s".into(),
        "cat".into(),
        "/dev-tls".into(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("requires mutual TLS"), "{}", stderr(&o));
}

#[tokio::test]
async fn a_cell_reaches_etcd_over_mutual_tls() {
    let Some(etcd_bin) = warren_testkit::etcd::require_etcd() else {
        return;
    };
    let certs = TestCerts::new();
    let etcd_files = certs.issue("etcd", "warren:etcd");
    let (ca, etcd_cert, etcd_key) = paths(&etcd_files);
    let (client_port, peer_port) = (crate::free_port(), crate::free_port());
    let client_url = format!("https://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let etcd_dir = tempfile::tempdir().unwrap();
    // etcd serves its clients TLS only, and requires a certificate from the test CA.
    let _etcd = tokio::process::Command::new(etcd_bin)
        .args(["--name", "tls0", "--data-dir"])
        .arg(etcd_dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("tls0={peer_url}")])
        .args([
            "--cert-file",
            &etcd_cert,
            "--key-file",
            &etcd_key,
            "--trusted-ca-file",
            &ca,
        ])
        .arg("--client-cert-auth")
        .args(["--log-level", "error"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn etcd");

    let replica = certs.issue("replica", "warren:cell-c0-r1");
    let (_, cert, key) = paths(&replica);
    let cell = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "c0",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "etcd",
            "--replica",
            "r1",
            "--etcd",
            &client_url,
            "--etcd-cacert",
            &ca,
            "--etcd-cert",
            &cert,
            "--etcd-key",
            &key,
        ],
    )
    .await;
    // The replica campaigns through etcd; once master it serves a write and a read, which
    // are kept in etcd.
    let ep = cell.addr();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let o = warren(&[
            "ctl",
            "--endpoint",
            &ep,
            "--grace",
            "1s",
            "put",
            "/in-etcd",
            "e1",
        ])
        .await;
        if o.status.success() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no master over TLS to etcd: {}",
            stderr(&o)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let o = warren(&["ctl", "--endpoint", &ep, "cat", "/in-etcd"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "e1");

    // Another cell whose replica has no client certificate for etcd cannot campaign: it
    // never becomes master, so a write to it fails.
    let lone = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "c9",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "etcd",
            "--replica",
            "r1",
            "--etcd",
            &client_url,
            "--etcd-cacert",
            &ca,
        ],
    )
    .await;
    let o = warren(&[
        "ctl",
        "--endpoint",
        &lone.addr(),
        "--grace",
        "1s",
        "put",
        "/x",
        "y",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[tokio::test]
async fn a_load_test_runs_over_mutual_tls_through_a_proxy() {
    let certs = TestCerts::new();
    let data = tempfile::tempdir().unwrap();
    let cell = cell(&certs, data.path()).await;
    let proxy = proxy(&certs, &cell.addr()).await;
    let client = certs.issue("loadtest", "warren:loadtest");
    let json = data.path().join("report.json");
    let target = format!("proxies={}", proxy.proxies[0]);
    let mut args: Vec<String> = [
        "loadtest",
        "run",
        "--target",
        &target,
        "--sessions",
        "10",
        "--connections",
        "2",
        "--duration",
        "2s",
        "--ramp",
        "500ms",
        "--read-rate",
        "20",
        "--write-rate",
        "1",
        "--lock-rate",
        "0",
        "--files",
        "5",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(json.display().to_string());
    args.extend(client.flags());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = tokio::time::timeout(Duration::from_secs(120), warren(&refs))
        .await
        .expect("the load test finishes");
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["sessions"]["created"], 10, "{r:#}");
    assert_eq!(r["errors"], 0, "{r:#}");

    // --deploy launches a plaintext deployment: TLS flags with it are refused up front.
    let o = warren(&[
        "loadtest",
        "run",
        "--deploy",
        "dev",
        "--duration",
        "1s",
        "--cacert",
        certs.ca().to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("with --deploy"), "{}", stderr(&o));
}

#[tokio::test]
async fn library_sessions_in_one_process_each_dial_with_their_own_identity() {
    use warren_client::{ClientOptions, OpenOptions, Session, Tls};
    let certs = TestCerts::new();
    let data = tempfile::tempdir().unwrap();
    let cell = cell(&certs, data.path()).await;
    let proxy = proxy(&certs, &cell.addr()).await;
    // This test process installs no identity: each session brings its own.
    let good = Tls::load(certs.issue("lib-a", "warren:lib-a")).unwrap();
    let untrusted = Tls::load(certs.untrusted("lib-m", "warren:mallory")).unwrap();
    for options in [
        ClientOptions::new([cell.addr()]),
        ClientOptions::proxies([proxy.proxies[0].clone()]),
    ] {
        let s = Session::connect_with(options.clone().tls(good.clone()))
            .await
            .expect("a session with a good certificate");
        let (h, _) = s
            .open(
                "/lib",
                OpenOptions::new().read().write().create_file(Vec::new()),
            )
            .await
            .unwrap();
        h.set_contents("from the library").await.unwrap();
        assert_eq!(h.contents().await.unwrap().0, b"from the library");
        s.close().await.unwrap();

        let refused = Session::connect_with(
            options
                .clone()
                .tls(untrusted.clone())
                .grace_period(Duration::from_secs(1)),
        )
        .await
        .expect_err("an untrusted certificate is refused");
        assert!(
            refused
                .to_string()
                .contains("not signed by a CA the server trusts"),
            "{refused}"
        );
        let plain = Session::connect_with(options.grace_period(Duration::from_secs(1)))
            .await
            .expect_err("plaintext is refused");
        assert!(plain.to_string().contains("requires mutual TLS"), "{plain}");
    }
}

/// A raw gRPC client of `addr` presenting a certificate of `principal`.
async fn raw_as(
    certs: &TestCerts,
    addr: &str,
    principal: &str,
) -> warren_proto::pb::warren_client::WarrenClient<tonic::transport::Channel> {
    let name = principal.replace(':', "-");
    let tls = warren_tls::Tls::load(certs.issue(&name, principal)).expect("load a certificate");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    let channel = warren_client::transport::connect_endpoint_as(&endpoint, Some(&tls))
        .await
        .unwrap_or_else(|e| panic!("connect to {addr} as {principal}: {e}"));
    warren_proto::pb::warren_client::WarrenClient::new(channel)
}

/// `status` is PERMISSION_DENIED and its message contains every one of `words`.
fn assert_denied(what: &str, r: Result<impl std::fmt::Debug, tonic::Status>, words: &[&str]) {
    let e = r.expect_err(what);
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{what}: {e:?}");
    for w in words {
        assert!(
            e.message().contains(w),
            "{what}: {:?} lacks {w:?}",
            e.message()
        );
    }
}

/// Over real certificates at a real cell (docs/security.md, "Authorization"): a client
/// certificate cannot make the proxy-only calls (a proxy session, `ClaimSession`, a call
/// on behalf of a client session) nor assert another principal, and a session is refused
/// under another principal's certificate; the proxy's certificate may do all of it.
#[tokio::test]
async fn a_client_certificate_cannot_act_as_a_proxy_nor_use_another_principals_session() {
    use warren_proto::pb;
    let certs = TestCerts::new();
    let data = tempfile::tempdir().unwrap();
    let cell = cell(&certs, data.path()).await;
    let addr = cell.addr();
    let mut alice = raw_as(&certs, &addr, "alice").await;
    let mut bob = raw_as(&certs, &addr, "bob").await;
    let mut proxy = raw_as(&certs, &addr, PROXY_PRINCIPAL).await;

    let proxy_session = pb::CreateSessionRequest {
        proxy: true,
        ..Default::default()
    };
    assert_denied(
        "a proxy session for a client certificate",
        alice.create_session(proxy_session.clone()).await,
        &["\"alice\"", "proxy"],
    );
    assert_denied(
        "a client certificate asserting another principal",
        alice
            .create_session(pb::CreateSessionRequest {
                principal: "bob".into(),
                ..Default::default()
            })
            .await,
        &["\"alice\"", "\"bob\""],
    );
    let s = alice
        .create_session(pb::CreateSessionRequest::default())
        .await
        .expect("alice's own session")
        .into_inner();
    let ctx = pb::SessionContext {
        session_id: s.session_id,
        secret: s.secret,
        epoch: s.epoch,
        ..Default::default()
    };
    let open = |ctx: pb::SessionContext| pb::OpenRequest {
        ctx: Some(ctx),
        path: "/ls/local".into(),
        intent: pb::Intent::Read as u32,
        ..Default::default()
    };
    alice
        .open(open(ctx.clone()))
        .await
        .expect("alice opens in her own session");
    assert_denied(
        "alice's session presented under bob's certificate",
        bob.open(open(ctx.clone())).await,
        &["\"alice\"", "\"bob\""],
    );
    assert_denied(
        "ClaimSession from a client certificate",
        alice
            .claim_session(pb::ClaimSessionRequest {
                ctx: Some(ctx.clone()),
                client_session: vec![7; 16],
                client_secret: vec![8; 16],
                client_principal: "carol".into(),
                ..Default::default()
            })
            .await,
        &["\"alice\"", "proxy"],
    );
    let on_behalf = pb::SessionContext {
        client_session: vec![7; 16],
        client_secret: vec![8; 16],
        client_principal: "carol".into(),
        ..ctx.clone()
    };
    assert_denied(
        "a call on behalf of a client session from a client certificate",
        alice.open(open(on_behalf)).await,
        &["\"alice\"", "proxy"],
    );

    // The proxy's certificate: a proxy session, and a call on behalf of a client of its.
    let p = proxy
        .create_session(proxy_session)
        .await
        .expect("the proxy certificate's proxy session")
        .into_inner();
    let pctx = pb::SessionContext {
        session_id: p.session_id,
        secret: p.secret,
        epoch: p.epoch,
        client_session: vec![7; 16],
        client_secret: vec![8; 16],
        client_principal: "carol".into(),
        ..Default::default()
    };
    proxy
        .open(open(pctx))
        .await
        .expect("a proxy opens on behalf of its client");
}

/// Over real certificates, at the cell and through the proxy (docs/security.md,
/// "Authorization"): the reserved subtree `/ls/<d>/warren/` refuses writes from a client
/// certificate, naming the operator requirement, and takes them from the operator's
/// certificate, whose principal the proxy forwards; reading it stays open. A handle
/// opened in alice's session is refused in bob's, and the file keeps alice's contents.
#[tokio::test]
async fn the_reserved_subtree_takes_operator_certificates_only_and_a_handle_stays_in_its_session() {
    use warren_proto::pb;
    let certs = TestCerts::new();
    let data = tempfile::tempdir().unwrap();
    let cell = cell(&certs, data.path()).await;
    let proxy = proxy(&certs, &cell.addr()).await;
    let alice = certs.issue("alice", "alice");
    let operator = certs.issue("operator", "warren:operator");
    let ok =
        |what: &str, o: &std::process::Output| assert!(o.status.success(), "{what}: {}", stderr(o));
    let (cell_addr, proxy_addr) = (cell.addr(), proxy.proxy_addr());
    let o = ctl(
        ("--endpoint", &cell_addr),
        Some(&operator),
        &["mkdir", "/warren"],
    )
    .await;
    ok("the operator makes /warren at the cell", &o);
    for (mode, target) in [
        ("direct", ("--endpoint", cell_addr.as_str())),
        ("proxy", ("--proxies", proxy_addr.as_str())),
    ] {
        let dir = format!("/warren/{mode}");
        let note = format!("/warren/note-{mode}");
        for args in [
            vec!["mkdir", dir.as_str()],
            vec!["put", note.as_str(), "evil"],
        ] {
            let o = ctl(target, Some(&alice), &args).await;
            assert!(
                stderr(&o).starts_with("error: PERMISSION_DENIED: ")
                    && stderr(&o).contains("operator")
                    && stderr(&o).contains("\"alice\""),
                "{mode}: alice's {args:?}: {}",
                stderr(&o)
            );
        }
        ok(mode, &ctl(target, Some(&operator), &["mkdir", &dir]).await);
        ok(
            mode,
            &ctl(target, Some(&operator), &["put", &note, "x"]).await,
        );
        let o = ctl(target, Some(&alice), &["put", &note, "y"]).await;
        assert!(
            stderr(&o).contains("PERMISSION_DENIED"),
            "{mode}: {}",
            stderr(&o)
        );
        let o = ctl(target, Some(&alice), &["cat", &note]).await;
        assert_eq!(
            stdout(&o),
            "x",
            "{mode}: reading the reserved subtree is open"
        );

        // A handle from alice's session, presented in bob's session under bob's certificate.
        let addr = if mode == "direct" {
            &cell_addr
        } else {
            &proxy_addr
        };
        let (mut a, mut b) = (
            raw_as(&certs, addr, "alice").await,
            raw_as(&certs, addr, "bob").await,
        );
        let ctx_of = |s: pb::CreateSessionResponse| pb::SessionContext {
            session_id: s.session_id,
            secret: s.secret,
            epoch: s.epoch,
            ..Default::default()
        };
        let actx = ctx_of(
            a.create_session(pb::CreateSessionRequest::default())
                .await
                .unwrap()
                .into_inner(),
        );
        let bctx = ctx_of(
            b.create_session(pb::CreateSessionRequest::default())
                .await
                .unwrap()
                .into_inner(),
        );
        let path = format!("/ls/local/h-{mode}");
        let h = a
            .open(pb::OpenRequest {
                ctx: Some(actx.clone()),
                path: path.clone(),
                intent: pb::Intent::Read as u32 | pb::Intent::Write as u32,
                create: Some(pb::CreateSpec {
                    kind: pb::NodeKind::File as i32,
                    initial_contents: b"alice's".to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{mode}: alice opens {path}: {e:?}"))
            .into_inner()
            .handle;
        let r = b
            .set_contents(pb::SetContentsRequest {
                ctx: Some(bctx.clone()),
                handle: h.clone(),
                contents: b"bob's".to_vec(),
                if_content_generation: None,
            })
            .await;
        let e = r.expect_err("alice's handle in bob's session");
        assert_eq!(
            warren_proto::WarrenError::from_status(&e).map(|w| w.code),
            Some(warren_proto::ErrorCode::HandleInvalid),
            "{mode}: {e:?}"
        );
        let got = a
            .get_contents_and_stat(pb::GetContentsAndStatRequest {
                ctx: Some(actx),
                handle: h,
            })
            .await
            .unwrap_or_else(|e| panic!("{mode}: alice reads {path}: {e:?}"))
            .into_inner();
        assert_eq!(got.contents, b"alice's", "{mode}");
    }
}

/// Over mutual TLS the session table is for operators (docs/security.md, "Who may list
/// sessions"): `ctl session list` with the operator certificate lists alice's session
/// (text and JSON); with alice's certificate it is refused `PERMISSION_DENIED`, saying who
/// may; and the plain-HTTP admin port's `/debug/sessions` does not serve the table (403,
/// pointing at ctl), nor name alice.
#[tokio::test]
async fn over_tls_only_operators_list_sessions_and_the_admin_port_does_not() {
    let certs = TestCerts::new();
    let data = tempfile::tempdir().unwrap();
    // ctl finds the admin port as the gRPC port + --admin-offset.
    let (a, b) = (crate::free_port(), crate::free_port());
    let (grpc, admin) = (a.min(b), a.max(b));
    let offset = (admin - grpc).to_string();
    let files = certs.issue("cell", "warren:cell-c0");
    let mut args: Vec<String> = ["cell", "--name", "c0", "--data"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(data.path().display().to_string());
    args.extend(["--listen".into(), format!("127.0.0.1:{grpc}")]);
    args.extend(["--admin".into(), format!("127.0.0.1:{admin}")]);
    args.extend(files.flags());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cell = WarrenProcess::spawn(bin(), &refs).await;
    let meta = cell.addr();

    let alice_files = certs.issue("alice", "alice");
    let alice = warren_client::Session::connect_with(
        warren_client::ClientOptions::new([meta.clone()])
            .tls(warren_tls::Tls::load(alice_files.clone()).expect("alice's certificate")),
    )
    .await
    .expect("alice's session");
    let operator = certs.issue("operator", "warren:operator");
    let list = |tls: &TlsFiles, json: bool| {
        let mut v: Vec<String> = vec!["ctl".into()];
        if json {
            v.extend(["-w".into(), "json".into()]);
        }
        v.extend(tls.flags());
        v.extend(
            [
                "session",
                "list",
                "--meta",
                &meta,
                "--admin-offset",
                &offset,
            ]
            .map(String::from),
        );
        async move {
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            warren(&refs).await
        }
    };

    // The operator lists alice's session.
    let o = list(&operator, false).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("c0 ") && l.contains(" alice ")),
        "{}",
        stdout(&o)
    );
    let o = list(&operator, true).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|s| s["principal"] == "alice" && s["cell"] == "c0"),
        "{v}"
    );

    // alice may not: PERMISSION_DENIED, naming her and who may.
    let o = list(&alice_files, false).await;
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).starts_with("error: PERMISSION_DENIED: the meta cell: principal \"alice\"")
            && stderr(&o).contains("SessionTable")
            && stderr(&o).contains("operators"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "", "nothing listed");
    let o = list(&alice_files, true).await;
    let e: serde_json::Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(e["error"]["code"], "PERMISSION_DENIED", "{e}");

    // The admin port (plain HTTP, no client identity) does not serve the table.
    let (code, body) = crate::http_get(&format!("127.0.0.1:{admin}"), "/debug/sessions").await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("this cell serves mutual TLS")
            && body.contains("warren ctl session list")
            && body.contains("operator certificate")
            && !body.contains("alice"),
        "{body}"
    );
    alice.close().await.expect("close");
}
