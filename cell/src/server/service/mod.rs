//! The cell's `warren.v1.Warren` service: each call checked at the edge ([`crate::edge`]
//! turns wire types into the core's), run on the master of the current term, and answered
//! once its effects are durable; a standby answers `Locate` and `NOT_MASTER`.
//!
//! One module per concern (like the proxy's `service/`): [`sessions`] (Locate,
//! CreateSession, KeepAlive, CloseSession, ClaimSession), [`reads`] (Open, Close and the
//! reads), [`writes`] (SetContents, SetAcl, Delete) and [`locks`] (Acquire, TryAcquire,
//! Release and sequencers). This file holds the steps every handler shares — check the
//! caller's session, route the call to the master, run it there — and the trait impl that
//! counts and times each call and dispatches it.

mod locks;
mod reads;
mod sessions;
mod writes;

use super::metrics;
use super::node::Node;
use super::term::Shared;
use crate::core::{Ctx, Master, Reply, StatView};
use crate::edge;
use std::future::Future;
use std::sync::Arc;
use tokio::time::Instant;
use tonic::Status;
use warren_proto::pb;
use warren_proto::request::{WithContext, WithHandle};
use warren_proto::WarrenError;

/// The gRPC service of `node` (served by `warren_server::grpc::serve`).
pub(super) fn service(node: Arc<Node>) -> impl pb::warren_server::Warren {
    Service { node }
}

struct Service {
    node: Arc<Node>,
}

impl Service {
    /// The master, once it has a partition map at least as new as the one the caller
    /// routed `r` with (waiting at most 1 s for it).
    async fn routed(&self, r: &impl WithContext) -> Result<Arc<Shared>, Status> {
        let shared = self.node.master()?;
        let want = r.ctx().map_or(0, |c| c.map_epoch);
        if want > 0 {
            shared.catch_up(want).await;
        }
        Ok(shared)
    }

    /// The caller's session (`r`'s context, checked first) and the master it routed to.
    async fn session(&self, r: &impl WithContext) -> Result<(Ctx, Arc<Shared>), Status> {
        let session = edge::ctx(r.ctx())?;
        Ok((session, self.routed(r).await?))
    }

    /// Runs `f` for the caller's session on the master it routed to ([`Service::session`]);
    /// replies once the effects are durable.
    async fn run<T>(
        &self,
        r: &impl WithContext,
        f: impl FnOnce(&mut Master, &Ctx, Instant) -> Result<T, WarrenError>,
    ) -> Result<T, Status> {
        let (session, master) = self.session(r).await?;
        master.run(|m, now| f(m, &session, now)).await
    }

    /// [`Service::run`] for a call on one of the session's handles (`r`'s handle) that asks
    /// the master nothing more: `op` is the master's method for it (`Master::get_stat`, …).
    async fn on_handle<T>(
        &self,
        r: &(impl WithContext + WithHandle),
        op: impl FnOnce(&mut Master, &Ctx, &[u8], Instant) -> Result<T, WarrenError>,
    ) -> Result<T, Status> {
        self.run(r, |m, ctx, now| op(m, ctx, r.handle(), now)).await
    }

    /// [`Service::run`] for a write that may wait for cache invalidations.
    async fn write<T>(
        &self,
        r: &impl WithContext,
        mut f: impl FnMut(&mut Master, &Ctx, Instant) -> Result<Reply<T>, WarrenError>,
    ) -> Result<T, Status> {
        let (session, master) = self.session(r).await?;
        master.write(|m, now| f(m, &session, now)).await
    }

    /// A node's stat as clients see it, for a node this cell holds.
    fn stat(&self, stat: &StatView) -> Option<pb::Stat> {
        Some(edge::stat(stat, &self.node.cell))
    }
}

/// Runs one call, counted and timed as `method` (tier `cell`), and a `WRONG_CELL` answer
/// counted on its own ([`metrics::count_wrong_cell`]).
fn observed<T, F: Future<Output = Result<T, Status>>>(
    method: &'static str,
    call: F,
) -> impl Future<Output = Result<T, Status>> {
    use futures::FutureExt;
    warren_server::metrics::observed("cell", method, call).map(|r| {
        metrics::count_wrong_cell(&r);
        r
    })
}

/// What a handler answers.
type Answer<T> = Result<T, Status>;

/// Each RPC's handler, by the RPC's name ([`warren_server::warren_service!`]).
mod handlers {
    pub(super) use super::locks::{
        acquire, check_sequencer, get_sequencer, release, set_sequencer, try_acquire,
    };
    pub(super) use super::reads::{close, get_contents_and_stat, get_stat, open, read_dir};
    pub(super) use super::sessions::{
        claim_session, close_session, create_session, keep_alive, locate,
    };
    pub(super) use super::writes::{delete, set_acl, set_contents};
}

warren_server::warren_service!(Service, observed, handlers);
