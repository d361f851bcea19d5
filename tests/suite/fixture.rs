//! How the suite reaches a deployment, and a raw protocol client for the tests that must
//! control exactly what goes on the wire (a session that never acknowledges, forged
//! handles, garbage bytes).

use std::time::Duration;
use tonic::transport::Channel;
use warren_client::{ClientOptions, Session};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_testkit::{Cell, Proxy, TestCell, TestProxy};

/// A deployment under test: one cell, reached straight (`PROXY = false`) or through one
/// proxy in front of it (`PROXY = true`). The suite runs once per mode with the same
/// assertions (`direct::…` and `via_proxy::…`): the proxy must change nothing a client can
/// observe (SPEC §6).
pub struct TargetIn<const PROXY: bool> {
    pub cell: TestCell,
    pub proxy: Option<TestProxy>,
}

impl<const PROXY: bool> TargetIn<PROXY> {
    /// One cell with SPEC default timings.
    pub async fn start() -> Self {
        Self::around(Cell::builder().run().await, None).await
    }

    /// One cell with a short lease, for tests that wait on lease expiry. Through a proxy
    /// the proxy grants clients that lease, and the cell grants the proxy a lease that
    /// nests it.
    pub async fn short_lease(lease: Duration) -> Self {
        let cell = Cell::builder()
            .lease(lease)
            .proxy_lease(lease * 2 + Duration::from_secs(1))
            .claim_window(lease * 2)
            .run()
            .await;
        Self::around(cell, Some(lease)).await
    }

    async fn around(cell: TestCell, client_lease: Option<Duration>) -> Self {
        let proxy = if PROXY {
            let mut b = Proxy::builder().front(&cell);
            if let Some(l) = client_lease {
                b = b.client_lease(l);
            }
            Some(b.run().await)
        } else {
            None
        };
        TargetIn { cell, proxy }
    }

    /// The address clients are given: the proxy's, or the cell's.
    pub fn addr(&self) -> String {
        match &self.proxy {
            Some(p) => p.addr(),
            None => self.cell.addr(),
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        vec![self.addr()]
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
        Raw::connect(&self.addr()).await
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
                target: 0,
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
        instance: 0,
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
