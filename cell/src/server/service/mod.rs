//! The cell's `warren.v1.Warren` service: each call checked at the edge ([`crate::edge`]
//! turns wire types into the core's), run on the master of the current term, and answered
//! once its effects are durable; a standby answers `Locate` and `NOT_MASTER`.
//!
//! One module per concern (like the proxy's `service/`): [`sessions`] (Locate,
//! CreateSession, KeepAlive, CloseSession, ClaimSession), [`reads`] (Open, Close and the
//! reads), [`writes`] (SetContents, SetAcl, Delete) and [`locks`] (Acquire, TryAcquire,
//! Release and sequencers). This file holds the routing of a call to the master, and the
//! trait impl that counts and times each call and dispatches it.

mod locks;
mod reads;
mod sessions;
mod writes;

use super::metrics;
use super::node::Node;
use super::term::Shared;
use super::CellError;
use crate::core::{Ctx, Master, Reply};
use crate::edge;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use warren_proto::pb;
use warren_proto::pb::warren_server::Warren;
use warren_proto::WarrenError;

/// Serves the gRPC service for `node` on `listener` until `stop` resolves.
pub(super) async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), CellError> {
    warren_server::grpc::serve(listener, Service { node }, stop)
        .await
        .map_err(|e| CellError::Serve(e.to_string()))
}

struct Service {
    node: Arc<Node>,
}

impl Service {
    /// The master, once it has a partition map at least as new as the one the caller
    /// routed with (waiting at most 1 s for it).
    async fn routed(&self, ctx: Option<&pb::SessionContext>) -> Result<Arc<Shared>, Status> {
        let shared = self.node.master()?;
        let want = ctx.map_or(0, |c| c.map_epoch);
        if want > 0 {
            shared.catch_up(want).await;
        }
        Ok(shared)
    }

    /// Runs `f` for the caller's session (`ctx`, checked first) on the master it routed
    /// to; replies once the effects are durable.
    async fn run<T>(
        &self,
        ctx: Option<&pb::SessionContext>,
        f: impl FnOnce(&mut Master, &Ctx, Instant) -> Result<T, WarrenError>,
    ) -> Result<T, Status> {
        let session = edge::ctx(ctx)?;
        self.routed(ctx)
            .await?
            .run(|m, now| f(m, &session, now))
            .await
    }

    /// [`Service::run`] for a write that may wait for cache invalidations.
    async fn write<T>(
        &self,
        ctx: Option<&pb::SessionContext>,
        mut f: impl FnMut(&mut Master, &Ctx, Instant) -> Result<Reply<T>, WarrenError>,
    ) -> Result<T, Status> {
        let session = edge::ctx(ctx)?;
        self.routed(ctx)
            .await?
            .write(|m, now| f(m, &session, now))
            .await
    }
}

/// Runs one call, counted and timed as `method` ([`metrics::observe_rpc`]).
async fn observed<T>(
    method: &'static str,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    let started = std::time::Instant::now();
    let r = call.await;
    metrics::observe_rpc(method, started, &r);
    r.map(Response::new)
}

#[tonic::async_trait]
impl Warren for Service {
    async fn locate(
        &self,
        _req: Request<pb::LocateRequest>,
    ) -> Result<Response<pb::LocateResponse>, Status> {
        observed("Locate", async { Ok(self.node.locate()) }).await
    }

    async fn create_session(
        &self,
        req: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        observed("CreateSession", sessions::create_session(self, req)).await
    }

    async fn keep_alive(
        &self,
        req: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        metrics::keepalive_received();
        observed("KeepAlive", sessions::keep_alive(self, req)).await
    }

    async fn close_session(
        &self,
        req: Request<pb::CloseSessionRequest>,
    ) -> Result<Response<pb::CloseSessionResponse>, Status> {
        observed("CloseSession", sessions::close_session(self, req)).await
    }

    async fn claim_session(
        &self,
        req: Request<pb::ClaimSessionRequest>,
    ) -> Result<Response<pb::ClaimSessionResponse>, Status> {
        observed("ClaimSession", sessions::claim_session(self, req)).await
    }

    async fn open(
        &self,
        req: Request<pb::OpenRequest>,
    ) -> Result<Response<pb::OpenResponse>, Status> {
        observed("Open", reads::open(self, req)).await
    }

    async fn close(
        &self,
        req: Request<pb::CloseRequest>,
    ) -> Result<Response<pb::CloseResponse>, Status> {
        observed("Close", reads::close(self, req)).await
    }

    async fn get_contents_and_stat(
        &self,
        req: Request<pb::GetContentsAndStatRequest>,
    ) -> Result<Response<pb::GetContentsAndStatResponse>, Status> {
        observed(
            "GetContentsAndStat",
            reads::get_contents_and_stat(self, req),
        )
        .await
    }

    async fn get_stat(
        &self,
        req: Request<pb::GetStatRequest>,
    ) -> Result<Response<pb::GetStatResponse>, Status> {
        observed("GetStat", reads::get_stat(self, req)).await
    }

    async fn read_dir(
        &self,
        req: Request<pb::ReadDirRequest>,
    ) -> Result<Response<pb::ReadDirResponse>, Status> {
        observed("ReadDir", reads::read_dir(self, req)).await
    }

    async fn set_contents(
        &self,
        req: Request<pb::SetContentsRequest>,
    ) -> Result<Response<pb::SetContentsResponse>, Status> {
        observed("SetContents", writes::set_contents(self, req)).await
    }

    async fn set_acl(
        &self,
        req: Request<pb::SetAclRequest>,
    ) -> Result<Response<pb::SetAclResponse>, Status> {
        observed("SetAcl", writes::set_acl(self, req)).await
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        observed("Delete", writes::delete(self, req)).await
    }

    async fn acquire(
        &self,
        req: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        observed("Acquire", locks::acquire(self, req)).await
    }

    async fn try_acquire(
        &self,
        req: Request<pb::TryAcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        observed("TryAcquire", locks::try_acquire(self, req)).await
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        observed("Release", locks::release(self, req)).await
    }

    async fn get_sequencer(
        &self,
        req: Request<pb::GetSequencerRequest>,
    ) -> Result<Response<pb::GetSequencerResponse>, Status> {
        observed("GetSequencer", locks::get_sequencer(self, req)).await
    }

    async fn set_sequencer(
        &self,
        req: Request<pb::SetSequencerRequest>,
    ) -> Result<Response<pb::SetSequencerResponse>, Status> {
        observed("SetSequencer", locks::set_sequencer(self, req)).await
    }

    async fn check_sequencer(
        &self,
        req: Request<pb::CheckSequencerRequest>,
    ) -> Result<Response<pb::CheckSequencerResponse>, Status> {
        observed("CheckSequencer", locks::check_sequencer(self, req)).await
    }
}
