//! The wire contract as any gRPC client sees it (docs/protocol.md). A Python client with
//! stubs generated from `proto/` by grpcio-tools (tests/python/error_details.py) runs
//! against a real `warren dev` deployment (two data cells, so one of them answers
//! WRONG_CELL, and a proxy) and decodes every error with gRPC's standard details API
//! ("Errors"). Needs python3 with `grpcio grpcio-tools grpcio-status`: required under
//! CI=true, else skipped with a notice. And, with raw generated stubs, the table's effect
//! column at a proxy: a proxy whose cell is gone answers a write with a code saying it was
//! not sent, after its forwarding patience, not a bare `UNAVAILABLE` at once; a cell that
//! dies after it applied a forwarded call makes the proxy answer `OUTCOME_UNKNOWN`.

use crate::{bin, stderr, stdout};
use std::path::Path;
use std::time::{Duration, Instant};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::{ErrorCode, WarrenError};
use warren_router::{PartitionMap, Route};
use warren_testkit::{free_port, WarrenProcess};

/// The Python modules the script imports, and the pip line that installs them.
const MODULES: &str = "import grpc, grpc_tools.protoc, grpc_status.rpc_status";
const INSTALL: &str = "python3 -m pip install grpcio grpcio-tools grpcio-status";

/// Whether python3 and the grpc modules are here. Without them: panics under CI=true,
/// else prints a notice and answers false.
fn python_ready(test: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", MODULES])
        .output();
    let problem = match found {
        Ok(o) if o.status.success() => return true,
        Ok(o) => format!(
            "python3 cannot import grpcio's modules ({}); install them: {INSTALL}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("python3 is not on PATH ({e}); install it, then: {INSTALL}"),
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {problem}");
    }
    eprintln!("NOTICE: skipping {test}: {problem}");
    false
}

#[tokio::test]
async fn python_grpcio_decodes_every_error_detail_at_cells_and_through_a_proxy() {
    if !python_ready("python_grpcio_decodes_every_error_detail") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = WarrenProcess::spawn_dev(bin(), &dir.path().join("dev"), 2, 1).await;
    assert_eq!(dev.cells.len(), 2, "{:?}", dev.banner);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(root.join("tests/python/error_details.py"))
        .arg("--proto")
        .arg(root.join("proto/proto"))
        .args(["--proxy", &dev.proxies[0]]);
    for (name, addr) in &dev.cells {
        cmd.args(["--cell", &format!("{name}={addr}")]);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the Python client did not finish in 120 s")
        .expect("run python3");
    let (so, se) = (stdout(&out), stderr(&out));
    assert!(
        out.status.success(),
        "the Python client failed:\n{so}\n{se}"
    );
    // Each code decoded, at a cell and through the proxy (WRONG_CELL only at a cell: the
    // proxy routes by the map, so it never sends a call to the wrong cell).
    for code in [
        "NOT_FOUND",
        "LOCK_HELD",
        "GENERATION_MISMATCH",
        "SESSION_EXPIRED",
    ] {
        for tier in ["cell", "proxy"] {
            assert!(
                so.lines()
                    .any(|l| l.starts_with(&format!("ok {tier}"))
                        && l.contains(&format!(" {code} "))),
                "{code} was not decoded at the {tier}:\n{so}"
            );
        }
    }
    assert!(
        so.lines()
            .any(|l| l.starts_with("ok cell") && l.contains(" WRONG_CELL ")),
        "WRONG_CELL was not decoded:\n{so}"
    );
}

/// The proxy's forwarding patience in the test below (`--forward-patience`).
const PATIENCE: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_proxy_whose_cell_is_gone_answers_a_write_with_a_table_code_after_its_patience() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cell");
    let mut cell = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "main",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
            "--lease",
            "2s",
        ],
    )
    .await;
    let front = format!("main={}", cell.addr());
    let patience = format!("{}s", PATIENCE.as_secs());
    let proxy = WarrenProcess::spawn(
        bin(),
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--cell",
            &front,
            "--client-lease",
            "2s",
            "--lease-margin",
            "500ms",
            "--keepalive-reply-before-end",
            "500ms",
            "--forward-patience",
            &patience,
        ],
    )
    .await;

    // A client with raw stubs, as one in any language: a session, a file, a write.
    let (mut c, ctx, deployment) = raw_session(&proxy.proxy_addr()).await;
    let handle = c
        .open(pb::OpenRequest {
            ctx: Some(ctx.clone()),
            path: format!("/ls/{deployment}/wire"),
            intent: (pb::Intent::Read as u32) | (pb::Intent::Write as u32),
            create: Some(pb::CreateSpec {
                kind: pb::NodeKind::File as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("Open")
        .into_inner()
        .handle;
    let write = |c: &mut WarrenClient<tonic::transport::Channel>| {
        let mut c = c.clone();
        let r = pb::SetContentsRequest {
            ctx: Some(ctx.clone()),
            handle: handle.clone(),
            contents: b"x".to_vec(),
            if_content_generation: None,
        };
        async move { c.set_contents(r).await }
    };
    write(&mut c).await.expect("SetContents with the cell up");

    // The cell dies, and nothing takes its place. Let the proxy see the connection close,
    // so the write below is refused at connect rather than lost in flight.
    cell.kill9().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let st = tokio::time::timeout(PATIENCE * 4, write(&mut c))
        .await
        .expect("the proxy answered within four times its patience")
        .expect_err("no cell: the write cannot succeed");
    let waited = started.elapsed();
    let e = WarrenError::from_status(&st)
        .unwrap_or_else(|| panic!("the proxy's answer carries no Warren error: {st:?}"));
    eprintln!("the proxy answered after {waited:?}: {e}");
    assert!(
        matches!(
            e.code,
            ErrorCode::Unreachable | ErrorCode::FailoverInProgress
        ),
        "{e}"
    );
    assert!(
        !e.may_have_taken_effect(),
        "a write that never reached a cell did not take effect: {e}"
    );
    assert_eq!(st.code(), tonic::Code::Unavailable, "{st:?}");
    assert!(
        waited >= PATIENCE - Duration::from_millis(600),
        "the proxy answered after {waited:?}, before its {PATIENCE:?} patience: {e}"
    );
}

/// A raw client session at `addr` (a proxy), as a client in any language makes one.
async fn raw_session(
    addr: &str,
) -> (
    WarrenClient<tonic::transport::Channel>,
    pb::SessionContext,
    String,
) {
    let mut c = WarrenClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let s = c
        .create_session(pb::CreateSessionRequest {
            principal: "wire".into(),
            proxy: false,
        })
        .await
        .expect("CreateSession")
        .into_inner();
    let ctx = pb::SessionContext {
        session_id: s.session_id,
        secret: s.secret,
        epoch: s.epoch,
        ..Default::default()
    };
    (c, ctx, s.deployment)
}

#[tokio::test]
async fn a_call_a_proxy_lost_after_sending_it_is_outcome_unknown_and_did_take_effect() {
    // The cell holding the root's children (c1 of an even two-cell map) commits a split
    // directory's entry, then dies before it answers (the partitioning tests' fault hook).
    let map = PartitionMap::even(
        "local",
        &[("c1", vec!["x:1"]), ("c2", vec!["x:2"])],
        warren_router::DEFAULT_SLOTS,
    )
    .unwrap();
    let cell_of = |path: &str, anchor: bool| match map.route(path, anchor).unwrap() {
        Route::Cell { cell, .. } => cell.to_string(),
        Route::Meta => "meta".to_string(),
    };
    let dir = (0..1000)
        .map(|i| format!("/ls/local/d{i}"))
        .find(|d| cell_of(d, false) == "c1" && cell_of(d, true) == "c2")
        .expect("a directory with its entry in c1 and its children in c2");

    let tmp = tempfile::tempdir().unwrap();
    let data = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let meta = format!("127.0.0.1:{}", free_port());
    let _meta = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "meta",
            "--listen",
            &meta,
            "--data",
            &data("meta"),
        ],
    )
    .await;
    let addrs: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut c1 = WarrenProcess::spawn_env(
        bin(),
        &[
            "cell",
            "--name",
            "c1",
            "--listen",
            &addrs[0],
            "--data",
            &data("c1"),
            "--meta",
            &meta,
        ],
        &[("WARREN_FAULT", "abort-after-entry")],
    )
    .await;
    let _c2 = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "c2",
            "--listen",
            &addrs[1],
            "--data",
            &data("c2"),
            "--meta",
            &meta,
        ],
    )
    .await;
    let (cell1, cell2) = (format!("c1={}", addrs[0]), format!("c2={}", addrs[1]));
    let o = crate::warren(&[
        "ctl",
        "deployment",
        "init",
        "--meta",
        &meta,
        "--cell",
        &cell1,
        "--cell",
        &cell2,
    ])
    .await;
    assert!(o.status.success(), "deployment init: {}", stderr(&o));
    let proxy = WarrenProcess::spawn(
        bin(),
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--meta",
            &meta,
            "--client-lease",
            "2s",
            "--lease-margin",
            "500ms",
            "--keepalive-reply-before-end",
            "500ms",
        ],
    )
    .await;

    let (mut c, ctx, deployment) = raw_session(&proxy.proxy_addr()).await;
    assert_eq!(deployment, "local");
    let mkdir = pb::OpenRequest {
        ctx: Some(ctx.clone()),
        path: dir.clone(),
        intent: pb::Intent::Read as u32,
        create: Some(pb::CreateSpec {
            kind: pb::NodeKind::Directory as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let st = tokio::time::timeout(Duration::from_secs(30), c.open(mkdir))
        .await
        .expect("the proxy answered the mkdir")
        .expect_err("its cell died in the middle of it");
    let e = WarrenError::from_status(&st)
        .unwrap_or_else(|| panic!("the proxy's answer carries no Warren error: {st:?}"));
    eprintln!("the proxy answered: {e}");
    assert_eq!(e.code, ErrorCode::OutcomeUnknown, "{e}");
    assert!(e.may_have_taken_effect(), "{e}");
    assert_eq!(st.code(), tonic::Code::Unavailable, "{st:?}");
    let status = tokio::time::timeout(Duration::from_secs(15), c1.wait())
        .await
        .expect("the fault hook stopped c1");
    assert!(!status.success(), "c1 aborted: {status:?}");

    // And it did take effect: restarted, c1 has the entry (its janitor makes the anchor).
    let _c1 = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "c1",
            "--listen",
            &addrs[0],
            "--data",
            &data("c1"),
            "--meta",
            &meta,
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    drop((c, ctx));
    loop {
        // A new session for each look: the first one's 2 s lease has no KeepAlive behind it
        // and may have ended while c1 was down.
        let (mut c, ctx, _) = raw_session(&proxy.proxy_addr()).await;
        let probe = pb::OpenRequest {
            ctx: Some(ctx),
            path: dir.clone(),
            intent: pb::Intent::Read as u32,
            ..Default::default()
        };
        match c.open(probe).await {
            Ok(r) => {
                let stat = r.into_inner().stat.expect("a stat");
                assert_eq!(stat.kind, pb::NodeKind::Directory as i32);
                break;
            }
            // Until the janitor made the anchor the directory's children have nowhere to
            // be opened (NOT_FOUND at the anchor's cell); c1 recovering answers retryable
            // errors. Nobody sent the mkdir again: if it appears, the lost call did it.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(st) => panic!("{dir} is not there 20 s after c1 restarted: {st:?}"),
        }
    }
}
