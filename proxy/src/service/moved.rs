//! Calls on a handle whose node moved to another cell in a reshard (docs/design.md §12,
//! docs/proxy.md "After a reshard"). The cell named in the handle answers such a call
//! `WRONG_CELL{map epoch, owner}` (without `directory`) and changes nothing; the owner
//! accepts the very same token and recreates the handle. So every call routed by a handle
//! goes through [`Service::on_handle`]: on that answer it waits for a map at least as new
//! as the error's, registers the client session at the owner (its lease nests there from
//! now on, as after an `Open`), remembers the redirect ([`crate::moved::MovedHandles`]) so
//! later calls on the handle go straight there, and sends the same request again — at
//! most [`MAX_ATTEMPTS`] sends in all, then the last answer goes to the client.

use super::*;
use crate::core::CellIx;
use warren_router::{Dest, MAP_WAIT, MAX_ATTEMPTS};

impl Service {
    /// [`Service::on_handle`] of a request as its RPC sends it.
    pub(super) async fn send_on_handle<Q: Rpc + WithHandle>(
        &self,
        who: &Who,
        cell: CellIx,
        retry: Retry,
        req: &Q,
    ) -> Result<(Q::Reply, CellIx), Status> {
        self.on_handle(who, cell, retry, req, |c, r| r.send(c))
            .await
    }

    /// Forwards `req`, a call on the handle `req.handle()`, for `who` to `cell` (the
    /// handle's cell as [`Service::handle_cell`] found it), following the handle to the
    /// cell it moved to (see the module docs). Returns the answer and the cell that gave
    /// it. Re-sending after `WRONG_CELL` is safe for every call, `Once` ones included: the
    /// refusing cell changed nothing.
    pub(super) async fn on_handle<Q, R, F, Fut>(
        &self,
        who: &Who,
        mut cell: CellIx,
        retry: Retry,
        req: &Q,
        call: F,
    ) -> Result<(R, CellIx), Status>
    where
        Q: WithContext + WithHandle + Clone,
        F: Fn(WarrenClient<Channel>, Q) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let mut sent = 0;
        loop {
            sent += 1;
            let status = match self
                .forward(Via::client(who, cell, retry), req, &call)
                .await
            {
                Ok(reply) => return Ok((reply, cell)),
                Err(s) => s,
            };
            let Some(moved) = WarrenError::from_status(&status)
                .and_then(|e| warren_client::wrong_cell(&e))
                .filter(|w| !w.directory)
            else {
                return Err(status);
            };
            if sent >= MAX_ATTEMPTS {
                tracing::debug!(
                    attempts = sent,
                    ?moved,
                    "WRONG_CELL for a handle after every attempt; giving up"
                );
                return Err(status);
            }
            let Some(owner) = self.owner_cell(&moved.owner, moved.map_epoch).await else {
                tracing::debug!(
                    ?moved,
                    "a handle's cell names an owner this proxy cannot reach; giving up"
                );
                return Err(status);
            };
            if owner == cell {
                // The cell named itself: nothing to follow (the error goes to the client
                // once the attempts run out; a newer map may end it meanwhile).
                continue;
            }
            metrics::counter!("warren_proxy_wrong_cell_total", "kind" => "moved").increment(1);
            let token = req.handle();
            let origin = self.shared.cell_of_handle(token).0;
            self.shared.with_core(|c| {
                // The owner registers the client session on this call, as `Open` does:
                // its lease nests inside the proxy's session there from now on.
                c.registered(&who.id, owner);
                c.handle_moved(&who.id, token, owner);
                c.moved.moved(token, owner, origin);
            });
            tracing::debug!(from = cell, to = owner, "following a handle that moved");
            cell = owner;
        }
    }

    /// The cell called `name` that a `WRONG_CELL` of map epoch `map_epoch` named as the
    /// owner, after waiting (at most [`MAP_WAIT`]) for a map at least that new; `None` if
    /// neither that map nor the proxy's own sessions know the cell.
    async fn owner_cell(&self, name: &str, map_epoch: u64) -> Option<CellIx> {
        if name.is_empty() {
            return None;
        }
        if self.shared.routed() {
            if let Ok(map) = self.shared.newer_map(map_epoch, MAP_WAIT).await {
                if let Ok(ix) = self.shared.dest_cell(&map, &Dest::Cell(name.into())).await {
                    return Some(ix);
                }
            }
        }
        // No map naming it (the meta cell out of reach, or `--cell` only): a cell the
        // proxy already has a session at will do — it checks ownership by its own map.
        self.shared.cell_named(name)
    }
}
