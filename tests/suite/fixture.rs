//! How the suite reaches a deployment, and a raw protocol client for the tests that must
//! control exactly what goes on the wire (a session that never acknowledges, forged
//! handles, garbage bytes).

use std::time::Duration;
use tonic::transport::Channel;
use warren_client::{ClientOptions, Session};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_testkit::{Cell, TestCell};

/// A deployment under test.
pub struct Target {
    pub cell: TestCell,
}

impl Target {
    /// One cell with SPEC default timings.
    pub async fn start() -> Target {
        Target {
            cell: Cell::builder().run().await,
        }
    }

    /// One cell with a short lease, for tests that wait on lease expiry.
    pub async fn short_lease(lease: Duration) -> Target {
        Target {
            cell: Cell::builder().lease(lease).run().await,
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.cell.endpoints()
    }

    pub async fn session(&self) -> Session {
        Session::connect(&self.endpoints()).await.expect("connect")
    }

    pub async fn session_as(&self, principal: &str) -> Session {
        Session::connect_with(ClientOptions::new(self.endpoints()).principal(principal))
            .await
            .expect("connect")
    }

    pub async fn raw(&self) -> Raw {
        Raw::connect(&self.cell.addr()).await
    }
}

/// A bare protocol session: nothing happens unless the test sends it.
pub struct Raw {
    pub client: WarrenClient<Channel>,
    pub ctx: pb::SessionContext,
}

impl Raw {
    pub async fn connect(addr: &str) -> Raw {
        let mut client = WarrenClient::connect(format!("http://{addr}"))
            .await
            .expect("connect raw");
        let s = client
            .create_session(pb::CreateSessionRequest {
                principal: String::new(),
                proxy: false,
            })
            .await
            .expect("create session")
            .into_inner();
        Raw {
            client,
            ctx: pb::SessionContext {
                session_id: s.session_id,
                secret: s.secret,
                epoch: s.epoch,
                map_epoch: 0,
                ..Default::default()
            },
        }
    }

    pub fn ctx(&self) -> Option<pb::SessionContext> {
        Some(self.ctx.clone())
    }

    pub async fn open(
        &mut self,
        path: &str,
        intent: u32,
        create: Option<pb::CreateSpec>,
    ) -> Result<pb::OpenResponse, tonic::Status> {
        self.client
            .open(pb::OpenRequest {
                ctx: self.ctx(),
                path: path.to_string(),
                intent,
                events: 0,
                lock_delay_ms: 0,
                create,
                read: false,
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn read(
        &mut self,
        handle: &[u8],
    ) -> Result<pb::GetContentsAndStatResponse, tonic::Status> {
        self.client
            .get_contents_and_stat(pb::GetContentsAndStatRequest {
                ctx: self.ctx(),
                handle: handle.to_vec(),
            })
            .await
            .map(|r| r.into_inner())
    }
}

pub fn file_spec(contents: &[u8]) -> Option<pb::CreateSpec> {
    Some(pb::CreateSpec {
        kind: pb::NodeKind::File as i32,
        ephemeral: false,
        initial_contents: contents.to_vec(),
        acl: None,
        exclusive: false,
    })
}

/// The Warren error code of a failed call.
pub fn code<T: std::fmt::Debug>(r: Result<T, warren_client::Error>) -> warren_client::ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or_else(|| panic!("no error code in {e}")),
    }
}

/// The Warren error code of a failed raw call.
pub fn raw_code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> warren_proto::ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => {
            warren_proto::WarrenError::from_status(&s)
                .unwrap_or_else(|| panic!("status without a Warren detail: {s:?}"))
                .code
        }
    }
}
