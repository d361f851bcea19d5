//! Proxy sessions, client sub-sessions and `ClaimSession` through a real cell and tonic
//! (the core's own tests cover the rules in detail; this checks the wire: the new fields,
//! the error codes, the tagged events).

use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use warren_cell::core::CoreConfig;
use warren_cell::store::memory::MemoryStore;
use warren_cell::CellOptions;
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::{ErrorCode, WarrenError};

fn code(s: tonic::Status) -> ErrorCode {
    WarrenError::from_status(&s)
        .unwrap_or_else(|| panic!("no Warren detail in {s:?}"))
        .code
}

async fn session(c: &mut WarrenClient<Channel>, proxy: bool) -> (pb::SessionContext, u64) {
    let r = c
        .create_session(pb::CreateSessionRequest {
            principal: if proxy { "proxy" } else { "alice" }.into(),
            proxy,
        })
        .await
        .unwrap()
        .into_inner();
    (
        pb::SessionContext {
            session_id: r.session_id,
            secret: r.secret,
            epoch: r.epoch,
            ..Default::default()
        },
        r.lease_ms,
    )
}

fn for_client(p: &pb::SessionContext) -> pb::SessionContext {
    pb::SessionContext {
        client_session: vec![1; 16],
        client_secret: vec![2; 16],
        client_principal: "carol".into(),
        ..p.clone()
    }
}

fn claim(ctx: &pb::SessionContext, secret: Vec<u8>) -> pb::ClaimSessionRequest {
    pb::ClaimSessionRequest {
        ctx: Some(ctx.clone()),
        client_session: vec![1; 16],
        client_secret: secret,
        client_principal: "carol".into(),
        only_from: Vec::new(),
    }
}

#[tokio::test]
async fn claim_session_moves_a_client_session_between_proxy_sessions() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(warren_cell::run(
        listener,
        None,
        Arc::new(MemoryStore::new()),
        CellOptions::new(CoreConfig::new("c0", "local")),
        move |h| {
            let _ = ready_tx.send(h);
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    let cell = ready_rx.await.expect("cell started");
    let mut c = WarrenClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    let (p1, lease) = session(&mut c, true).await;
    assert_eq!(lease, 20_000, "proxy sessions get the proxy lease");
    let (p2, _) = session(&mut c, true).await;
    let (a, lease) = session(&mut c, false).await;
    assert_eq!(lease, 12_000);

    // carol, through p1: Open registers her; her handle and lock are hers.
    let open = c
        .open(pb::OpenRequest {
            ctx: Some(for_client(&p1)),
            path: "/ls/local/f".into(),
            intent: 7,
            create: Some(pb::CreateSpec {
                kind: pb::NodeKind::File as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    c.try_acquire(pb::TryAcquireRequest {
        ctx: Some(for_client(&p1)),
        handle: open.handle.clone(),
        mode: pb::LockMode::Exclusive as i32,
    })
    .await
    .unwrap();
    let st = cell.status();
    assert_eq!(
        (st.sessions, st.proxy_sessions, st.sub_sessions, st.orphans),
        (3, 2, 1, 0)
    );
    // p1 acknowledges the INVALIDATE carol's lock grant caused (p1 caches f for her).
    let ka = c
        .keep_alive(pb::KeepAliveRequest {
            ctx: Some(p1.clone()),
            ack_seq: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let acked = ka.events.last().map_or(0, |e| e.seq);

    // Refusals: not a proxy session, malformed id, wrong secret, client fields on
    // KeepAlive or on an ordinary session.
    let e = c.claim_session(claim(&a, vec![2; 16])).await.unwrap_err();
    assert_eq!(code(e), ErrorCode::InvalidArgument);
    let mut bad = claim(&p2, vec![2; 16]);
    bad.client_session = vec![1; 3];
    let e = c.claim_session(bad).await.unwrap_err();
    assert!(
        e.message().contains("client_session must be 16 bytes"),
        "{e:?}"
    );
    assert_eq!(code(e), ErrorCode::InvalidArgument);
    let e = c.claim_session(claim(&p2, vec![9; 16])).await.unwrap_err();
    assert_eq!(code(e), ErrorCode::PermissionDenied);
    let e = c
        .keep_alive(pb::KeepAliveRequest {
            ctx: Some(for_client(&p1)),
            ack_seq: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::InvalidArgument);
    let e = c
        .get_stat(pb::GetStatRequest {
            ctx: Some(for_client(&a)),
            handle: open.handle.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::InvalidArgument);
    // A client session never seen here: nothing to move.
    let mut unknown = claim(&p2, vec![2; 16]);
    unknown.client_session = vec![7; 16];
    let r = c.claim_session(unknown).await.unwrap().into_inner();
    assert_eq!((r.known, r.principal.as_str()), (false, ""));

    // p2 claims carol: known, with her recorded principal; p1 is told (tagged event).
    let r = c
        .claim_session(claim(&p2, vec![2; 16]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.known, r.principal.as_str()), (true, "carol"));
    let ka = c
        .keep_alive(pb::KeepAliveRequest {
            ctx: Some(p1.clone()),
            ack_seq: acked,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ka.events.len(), 1, "{:?}", ka.events);
    assert_eq!(ka.events[0].r#type, pb::EventType::SessionClaimed as i32);
    assert_eq!(ka.events[0].client_session, vec![1; 16]);
    // Her handle and lock went with her; p1 may no longer act for her.
    let s = c
        .get_sequencer(pb::GetSequencerRequest {
            ctx: Some(for_client(&p2)),
            handle: open.handle.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.sequencer.unwrap().path, "/ls/local/f");
    let e = c
        .get_stat(pb::GetStatRequest {
            ctx: Some(for_client(&p1)),
            handle: open.handle.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(code(e), ErrorCode::PermissionDenied);

    // p2 closes: carol is an orphan, and p1 can claim her back.
    c.close_session(pb::CloseSessionRequest {
        ctx: Some(p2.clone()),
        expired: false,
    })
    .await
    .unwrap();
    assert_eq!(cell.status().orphans, 1);
    let r = c
        .claim_session(claim(&p1, vec![2; 16]))
        .await
        .unwrap()
        .into_inner();
    assert!(r.known);
    assert_eq!(cell.status().orphans, 0);
    // Ended by her proxy (expired): later claims answer SESSION_EXPIRED.
    c.close_session(pb::CloseSessionRequest {
        ctx: Some(for_client(&p1)),
        expired: true,
    })
    .await
    .unwrap();
    let e = c.claim_session(claim(&p1, vec![2; 16])).await.unwrap_err();
    assert_eq!(code(e), ErrorCode::SessionExpired);
    assert_eq!(cell.status().sub_sessions, 0);

    let _ = stop_tx.send(());
    task.await.unwrap().unwrap();
}
