//! The proxy's `warren.v1.Warren` service: each call either answered from the proxy's own
//! state (sessions, KeepAlives, cached reads) or forwarded to the cell that owns it on
//! behalf of the client session (docs/design.md §10). Errors come from the one table; whatever a
//! cell answers is passed through unchanged, so a client sees what it would see direct.
//!
//! One module per concern (as etcd's `grpcproxy/{kv,lease,lock}.go`): [`sessions`]
//! (Locate, CreateSession, KeepAlive, CloseSession), [`adopt`] (adopting a dead proxy's
//! clients, a bounded number at a time),
//! [`reads`] (Open, Close and the cached reads), [`locks`] (sequencers; the other lock
//! and write calls are plain forwards, [`forward_by_handle`]), [`forward`] (calls on behalf
//! of a client session, riding out a cell failover), [`moved`] (calls on a handle whose
//! node moved to another cell in a reshard), [`route`] (calls routed by path: the
//! partition map, `WRONG_CELL` and the split-directory redirect). This file holds the
//! session check, handle routing and the table of handlers the service dispatches to.

mod adopt;
mod forward;
mod locks;
mod moved;
mod reads;
mod route;
mod sessions;

use forward::Via;
use route::Attempt;

pub(crate) use sessions::run_effect;

use crate::core::{ClientId, HandleInfo, Known};
use crate::upstream::{self, Link};
use crate::Shared;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Response, Status};
use warren_client::rpc::Rpc;
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::request::{WithContext, WithHandle};
use warren_proto::{ErrorCode, WarrenError};
use warren_server::lease::short_id as hex;

const READ: u32 = 1;

/// The gRPC service of the proxy (served by `warren_server::grpc::serve_routes`, with the
/// standard health and reflection services).
pub(crate) fn service(shared: Arc<Shared>) -> impl pb::warren_server::Warren {
    Service {
        shared,
        adoptions: Arc::default(),
    }
}

struct Service {
    shared: Arc<Shared>,
    /// Clients of another proxy being adopted, and the bound on how many claim at once.
    adoptions: Arc<adopt::Adoptions>,
}

/// A client session, as a forwarded call carries it.
#[derive(Clone)]
struct Who {
    id: ClientId,
    secret: [u8; 16],
    principal: String,
}

fn bytes16(b: &[u8], field: &str) -> Result<[u8; 16], WarrenError> {
    b.try_into().map_err(|_| {
        WarrenError::invalid_argument(format!("ctx.{field} must be 16 bytes, got {}", b.len()))
    })
}

/// The session part of a client request, as the cell's edge parses it.
/// The session a request names: its id, secret and epoch, and — when the client says it
/// holds nothing (`holds_nothing`) — the principal to take it on with if no cell knows it.
pub type Ctx = (ClientId, [u8; 16], u64, Option<String>);

pub fn parse_ctx(c: Option<&pb::SessionContext>) -> Result<Ctx, WarrenError> {
    let c = c.ok_or_else(|| {
        WarrenError::invalid_argument("the request has no session context (field ctx)")
    })?;
    let id = bytes16(&c.session_id, "session_id")?;
    let secret = bytes16(&c.secret, "secret")?;
    if !c.client_session.is_empty() || !c.client_secret.is_empty() || !c.client_principal.is_empty()
    {
        return Err(WarrenError::invalid_argument(
            "ctx.client_session is only for proxies talking to cells; this is a proxy",
        ));
    }
    let fresh = c.holds_nothing.then(|| c.principal.clone());
    Ok((id, secret, c.epoch, fresh))
}

/// How a forwarded call may be retried.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Safe to send again after a transport failure (reads, Close, lock queries).
    Idempotent,
    /// Not after a transport failure: the first attempt may have been applied.
    Once,
}

impl Service {
    /// Checks (or adopts) the client session of a request.
    pub(super) async fn session(&self, ctx: Option<&pb::SessionContext>) -> Result<Who, Status> {
        self.checked(parse_ctx(ctx)?).await
    }

    /// The session of a handle-based request and the cell its handle belongs to
    /// ([`Service::session`], then [`Service::handle_cell`]).
    pub(super) async fn session_and_cell<Q: WithContext + WithHandle>(
        &self,
        r: &Q,
    ) -> Result<(Who, usize, Option<pb::HandleBody>), Status> {
        let who = self.session(r.ctx()).await?;
        let (cell, body) = self.handle_cell(&who, r.handle())?;
        Ok((who, cell, body))
    }

    /// The cell a handle-based call goes to: the one named in the handle, or the one it
    /// was last followed to after its node moved ([`crate::moved`]). A client that never
    /// opened anything at that cell cannot hold a handle there: `HANDLE_INVALID`, as the
    /// cell would say to a session that did not open the handle.
    pub(super) fn handle_cell(
        &self,
        who: &Who,
        token: &[u8],
    ) -> Result<(usize, Option<pb::HandleBody>), Status> {
        let (made_at, body) = self.shared.cell_of_handle(token);
        let cell = self.shared.with_core(|c| {
            c.moved
                .cell_of(token)
                .or(made_at)
                .filter(|&ix| c.is_registered(&who.id, ix))
        });
        match cell {
            Some(ix) => Ok((ix, body)),
            _ => Err(WarrenError::handle_invalid(if body.is_some() {
                "the handle was not opened by this session"
            } else {
                "the handle bytes are not a Warren handle (truncated or corrupted)"
            })
            .into()),
        }
    }
}

/// Counts and times one call: `warren_rpc_total{tier="proxy",method,code}` and
/// `warren_rpc_duration_seconds{tier="proxy",method}` (`docs/metrics.md`).
fn observed<T, F: Future<Output = Answer<T>>>(
    method: &'static str,
    call: F,
) -> impl Future<Output = Answer<T>> {
    warren_server::metrics::observed("proxy", method, call)
}

/// `warren_proxy_acquires_in_flight`: Acquire calls forwarded and not answered yet (most
/// of them waiting for a lock at the cell).
struct InFlight;

impl InFlight {
    fn acquire() -> InFlight {
        metrics::gauge!("warren_proxy_acquires_in_flight").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("warren_proxy_acquires_in_flight").decrement(1.0);
    }
}

/// What a handler answers.
type Answer<T> = Result<T, Status>;

/// A call that names a handle and is simply forwarded to the handle's cell on behalf of the
/// client session (writes, locks, sequencers): check the session, route by the handle,
/// forward with the client's context, following the handle if its node moved.
async fn forward_by_handle<Q: PlainForward>(svc: &Service, r: Q) -> Answer<Q::Reply> {
    let (who, cell, _) = svc.session_and_cell(&r).await?;
    let (reply, _) = svc.send_on_handle(&who, cell, Q::RETRY, &r).await?;
    Ok(reply)
}

/// A call the proxy forwards to the handle's cell as it is ([`forward_by_handle`]), and
/// whether it may be sent again after a transport failure.
trait PlainForward: Rpc + WithHandle {
    const RETRY: Retry;
}

macro_rules! plain_forwards {
    ($($request:ident: $retry:ident),* $(,)?) => {$(
        impl PlainForward for pb::$request {
            const RETRY: Retry = Retry::$retry;
        }
    )*};
}

plain_forwards!(
    SetAclRequest: Once,
    DeleteRequest: Once,
    AcquireRequest: Once,
    TryAcquireRequest: Once,
    ReleaseRequest: Once,
    GetSequencerRequest: Idempotent,
);

/// Each RPC's handler, by the RPC's name ([`warren_server::warren_service!`]).
mod handlers {
    pub(super) use super::forward::set_contents;
    pub(super) use super::forward_by_handle as try_acquire;
    pub(super) use super::locks::{acquire, check_sequencer, set_sequencer};
    pub(super) use super::reads::{cached_read as get_stat, cached_read as read_dir};
    pub(super) use super::reads::{cached_read as get_contents_and_stat, close, open};
    pub(super) use super::sessions::{
        claim_session, close_session, create_session, keep_alive, locate,
    };
    pub(super) use super::{forward_by_handle as delete, forward_by_handle as get_sequencer};
    pub(super) use super::{forward_by_handle as release, forward_by_handle as set_acl};
}

warren_server::warren_service!(Service, observed, handlers);
