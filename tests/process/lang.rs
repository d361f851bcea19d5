//! The wire contract as any gRPC client sees it (docs/protocol.md). A Python client with
//! stubs generated from `proto/` by grpcio-tools (tests/python/error_details.py) runs
//! against a real `warren dev` deployment (two data cells, so one of them answers
//! WRONG_CELL, and a proxy) and decodes every error with gRPC's standard details API
//! ("Errors"). Needs python3 with `grpcio grpcio-tools grpcio-status`: required under
//! CI=true, else skipped with a notice. And, with raw generated stubs: a proxy whose cell
//! is gone answers a write with a table code saying it was not sent, after its forwarding
//! patience, not a bare `UNAVAILABLE` at once.

use crate::{bin, stderr, stdout};
use std::path::Path;
use std::time::{Duration, Instant};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::{ErrorCode, WarrenError};
use warren_testkit::WarrenProcess;

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
    let mut c = WarrenClient::connect(format!("http://{}", proxy.proxy_addr()))
        .await
        .expect("connect to the proxy");
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
    let handle = c
        .open(pb::OpenRequest {
            ctx: Some(ctx.clone()),
            path: format!("/ls/{}/wire", s.deployment),
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
