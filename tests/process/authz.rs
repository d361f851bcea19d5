//! Authorization through a proxy's shared cache (docs/security.md, "Authorization"): a
//! file whose read ACL names only alice, cached at the proxy for alice, is not served to
//! bob — neither when the cell refuses his Open nor, once his handle predates the ACL
//! change, from the cache — and bob's denial leaves alice's copy in the cache, where her
//! reads still hit. Run twice: with asserted principals over plaintext loopback, and over
//! mutual TLS with each principal's own certificate.

use crate::metrics::{metric, metric_with};
use crate::{bin, free_port};
use warren_client::{AclNames, ClientOptions, ErrorCode, OpenOptions, Session};
use warren_testkit::certs::TestCerts;
use warren_testkit::WarrenProcess;

/// The principal of the proxy's certificate over TLS (the cell's proxy principal).
const PROXY_PRINCIPAL: &str = "warren:proxy-1";

/// A session through `proxy` as `principal`, with the client library's own cache off so
/// that every read reaches the proxy: over TLS with `principal`'s certificate, else
/// asserting it.
async fn as_principal(proxy: &str, principal: &str, certs: Option<&TestCerts>) -> Session {
    let options = ClientOptions::proxies(vec![proxy.to_string()]).cache(false);
    let options = match certs {
        Some(c) => options.tls(
            warren_tls::Tls::load(c.issue(principal, principal)).expect("a client certificate"),
        ),
        None => options.principal(principal),
    };
    Session::connect_with(options)
        .await
        .unwrap_or_else(|e| panic!("connect as {principal}: {e}"))
}

/// `--cacert/--cert/--key` of a certificate of `principal` (none without `certs`).
fn tls_flags(certs: Option<&TestCerts>, name: &str, principal: &str) -> Vec<String> {
    let Some(c) = certs else {
        return Vec::new();
    };
    let f = c.issue(name, principal);
    let (cert, key) = f.identity.as_ref().expect("an issued certificate and key");
    [("--cacert", &f.cacert), ("--cert", cert), ("--key", key)]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_cached_for_alice_is_not_served_to_bob_and_his_denial_keeps_it() {
    copy_cached_for_alice_is_not_served_to_bob(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_copy_cached_for_alice_is_not_served_to_bob_and_his_denial_keeps_it() {
    let certs = TestCerts::new();
    copy_cached_for_alice_is_not_served_to_bob(Some(&certs)).await;
}

async fn copy_cached_for_alice_is_not_served_to_bob(certs: Option<&TestCerts>) {
    let dir = tempfile::tempdir().unwrap();
    let cell_admin = format!("127.0.0.1:{}", free_port());
    let proxy_admin = format!("127.0.0.1:{}", free_port());
    let mut args: Vec<String> = [
        "cell",
        "--name",
        "main",
        "--listen",
        "127.0.0.1:0",
        "--data",
        dir.path().to_str().unwrap(),
        "--admin",
        &cell_admin,
        "--proxy-principal",
        PROXY_PRINCIPAL,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(tls_flags(certs, "cell", "warren:cell-main"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cell = WarrenProcess::spawn(bin(), &refs).await;
    let front = format!("main={}", cell.addr());
    let mut args: Vec<String> = [
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
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(tls_flags(certs, "proxy", PROXY_PRINCIPAL));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = WarrenProcess::spawn(bin(), &refs).await;
    let addr = proxy.proxy_addr();
    let admin = as_principal(&addr, "admin", certs).await;
    let alice = as_principal(&addr, "alice", certs).await;
    let bob = as_principal(&addr, "bob", certs).await;

    // The ACL file lists alice and bob at first; the secret names it as its read ACL.
    let (acl, _) = admin
        .open(
            "/acl/readers",
            OpenOptions::new()
                .write()
                .create_file(b"alice\nbob\n".to_vec()),
        )
        .await
        .unwrap();
    admin
        .open(
            "/secret",
            OpenOptions::new()
                .create_file(b"s3cret".to_vec())
                .acl(AclNames {
                    read: "readers".into(),
                    ..AclNames::default()
                }),
        )
        .await
        .unwrap();
    let read_acl_as_alice = || async {
        let (h, _) = alice
            .open("/acl/readers", OpenOptions::new().read())
            .await
            .unwrap();
        h.contents().await.unwrap()
    };
    // alice reads the ACL file (the proxy caches it like any file) and the secret.
    read_acl_as_alice().await;
    let (a, _) = alice
        .open("/secret", OpenOptions::new().read())
        .await
        .unwrap();
    assert_eq!(a.contents().await.unwrap().0, b"s3cret");
    let (b, _) = bob
        .open("/secret", OpenOptions::new().read())
        .await
        .unwrap();
    assert_eq!(b.contents().await.unwrap().0, b"s3cret");

    // bob is taken off the ACL (the proxy's copy of the ACL file is invalidated).
    acl.set_contents(b"alice\n".to_vec()).await.unwrap();
    // A new Open by bob is refused by the cell.
    let e = bob
        .open("/secret", OpenOptions::new().read())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{e}");
    // His old handle: the proxy has no copy of the ACL file now, so the read goes to the
    // cell, which refuses it.
    let e = b.contents().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{e}");
    assert!(e.to_string().contains("\"bob\""), "{e}");

    // alice reads the ACL file again (cached once more) and the secret (cached for her).
    assert_eq!(read_acl_as_alice().await.0, b"alice\n");
    assert_eq!(a.contents().await.unwrap().0, b"s3cret");
    let cell_reads = || {
        metric_with(
            &cell_admin,
            "warren_rpc_total",
            &[("tier", "cell"), ("method", "GetContentsAndStat")],
        )
    };
    let reads_at_cell = cell_reads().await;
    let hits = metric(&proxy_admin, "warren_proxy_cache_hits_total").await;

    // Now the proxy judges bob from its cache: refused there, without asking the cell.
    let e = b.contents().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{e}");
    assert!(
        e.to_string().contains("/ls/local/acl/readers"),
        "the refusal names the ACL file: {e}"
    );
    assert_eq!(
        cell_reads().await,
        reads_at_cell,
        "bob's read reached the cell"
    );
    assert_eq!(
        metric(&proxy_admin, "warren_proxy_cache_hits_total").await,
        hits,
        "bob's refused read counted as a hit"
    );

    // bob's denial evicted nothing: alice's reads are answered from the cache.
    for i in 1..=3 {
        assert_eq!(a.contents().await.unwrap().0, b"s3cret");
        assert_eq!(
            metric(&proxy_admin, "warren_proxy_cache_hits_total").await,
            hits + i as f64,
            "alice's read {i} was not a cache hit"
        );
    }
    assert_eq!(
        cell_reads().await,
        reads_at_cell,
        "alice's reads reached the cell"
    );
}
