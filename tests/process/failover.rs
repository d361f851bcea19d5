//! A restart of the cell process is a master failover (docs/design.md §9). These tests speak the raw
//! protocol so they control every request, including replays.

use crate::{bin, free_port};
use std::time::Duration;
use tonic::transport::Channel;
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::{ErrorCode, WarrenError};
use warren_testkit::WarrenProcess;

struct RawSession {
    client: WarrenClient<Channel>,
    ctx: pb::SessionContext,
    acked: u64,
}

impl RawSession {
    async fn connect(addr: &str) -> RawSession {
        let mut client = WarrenClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let s = client
            .create_session(pb::CreateSessionRequest {
                principal: String::new(),
                proxy: false,
            })
            .await
            .unwrap()
            .into_inner();
        RawSession {
            client,
            ctx: pb::SessionContext {
                session_id: s.session_id,
                secret: s.secret,
                epoch: s.epoch,
                map_epoch: 0,
                ..Default::default()
            },
            acked: 0,
        }
    }
    async fn reconnect(&mut self, addr: &str) {
        self.client = WarrenClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
    }
    fn ctx(&self) -> Option<pb::SessionContext> {
        Some(self.ctx.clone())
    }
    async fn open(&mut self, path: &str, create: Option<pb::CreateSpec>) -> Vec<u8> {
        let r = pb::OpenRequest {
            target: 0,
            ctx: self.ctx(),
            path: path.into(),
            intent: 3,
            events: 0,
            lock_delay_ms: 0,
            create,
            read: false,
        };
        self.client.open(r).await.unwrap().into_inner().handle
    }
    async fn stat(&mut self, h: &[u8]) -> Result<pb::GetStatResponse, tonic::Status> {
        self.client
            .get_stat(pb::GetStatRequest {
                ctx: self.ctx(),
                handle: h.to_vec(),
            })
            .await
            .map(|r| r.into_inner())
    }
    async fn close(&mut self, h: &[u8]) -> Result<(), tonic::Status> {
        self.client
            .close(pb::CloseRequest {
                ctx: self.ctx(),
                handle: h.to_vec(),
            })
            .await
            .map(|_| ())
    }
    /// KeepAlive acknowledging everything seen; returns the events.
    async fn keepalive(&mut self) -> Result<Vec<pb::Event>, tonic::Status> {
        let r = self
            .client
            .keep_alive(pb::KeepAliveRequest {
                ctx: self.ctx(),
                ack_seq: self.acked,
                ..Default::default()
            })
            .await?
            .into_inner();
        if let Some(last) = r.events.last() {
            self.acked = last.seq;
        }
        Ok(r.events)
    }
}

fn file() -> Option<pb::CreateSpec> {
    Some(pb::CreateSpec {
        instance: 0,
        kind: pb::NodeKind::File as i32,
        ephemeral: false,
        initial_contents: b"x".to_vec(),
        acl: None,
        exclusive: false,
    })
}

fn code(st: tonic::Status) -> WarrenError {
    WarrenError::from_status(&st).unwrap_or_else(|| panic!("not a Warren error: {st:?}"))
}

async fn start(data: &str, listen: &str) -> WarrenProcess {
    WarrenProcess::spawn(
        bin(),
        &[
            "cell", "--name", "c0", "--listen", listen, "--data", data, "--lease", "2s",
        ],
    )
    .await
}

#[tokio::test]
async fn old_epochs_are_refused_and_closed_recreated_handles_stay_closed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cell = start(data, &listen).await;
    let mut s = RawSession::connect(&listen).await;
    let h = s.open("/ls/local/f", file()).await;
    let old_epoch = s.ctx.epoch;
    cell.kill9().await;
    let _cell = start(data, &listen).await;
    s.reconnect(&listen).await;

    // The old epoch is refused, with the current one.
    let e = code(s.stat(&h).await.unwrap_err());
    assert_eq!((e.code, e.epoch), (ErrorCode::StaleEpoch, old_epoch + 1));
    let e = code(s.keepalive().await.unwrap_err());
    assert_eq!(e.code, ErrorCode::StaleEpoch);
    s.ctx.epoch = e.epoch;
    // Until the session acknowledges its fail-over event, only KeepAlive is served.
    assert_eq!(
        code(s.stat(&h).await.unwrap_err()).code,
        ErrorCode::FailoverInProgress
    );
    let events = s.keepalive().await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.r#type).collect::<Vec<_>>(),
        vec![pb::EventType::MasterFailover as i32]
    );
    // The acknowledgement travels with the next KeepAlive (held; run it in the background).
    let mut ka = s.client.clone();
    let ack = pb::KeepAliveRequest {
        ctx: s.ctx(),
        ack_seq: s.acked,
        ..Default::default()
    };
    tokio::spawn(async move { ka.keep_alive(ack).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match s.stat(&h).await {
            Ok(_) => break,
            Err(st)
                if code(st.clone()).code == ErrorCode::FailoverInProgress
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(st) => panic!("{st:?}"),
        }
    }
    // The handle from the old epoch was recreated on use. Close it, then replay the same
    // requests: the handle does not come back in this epoch.
    s.close(&h).await.unwrap();
    s.close(&h).await.unwrap();
    assert_eq!(
        code(s.stat(&h).await.unwrap_err()).code,
        ErrorCode::HandleInvalid
    );
    assert_eq!(
        code(s.stat(&h).await.unwrap_err()).code,
        ErrorCode::HandleInvalid
    );
}
