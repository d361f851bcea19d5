//! Calls on a handle whose node moved to another cell in a reshard (docs/design.md §12,
//! docs/proxy.md "After a reshard"). The cell named in the handle answers such a call
//! `WRONG_CELL{map epoch, owner}` (without `directory`) and changes nothing; the owner
//! accepts the very same token and recreates the handle. So every call routed by a handle
//! goes through [`Service::on_handle`]: on that answer it waits for a map at least as new
//! as the error's, registers the client session at the owner (its lease nests there from
//! now on, as after an `Open`), remembers the redirect ([`crate::moved::MovedHandles`]) so
//! later calls on the handle go straight there, and sends the same request again — at
//! most [`MAX_ATTEMPTS`] sends in all, then the last answer goes to the client.
//!
//! The old cell also tells, at the hand-off, every handle on a moved node where it went (a
//! `SLOT_MOVED` event per client session); [`follow_moved`] acts on it at once rather than
//! on the handle's next call: it remembers the redirect, registers the client at the new
//! cell and claims the client session there, which takes on the sub-session that moved in
//! with the slot — so the events of a handle nobody calls (a watcher) reach its client.

use super::*;
use crate::core::{CellIx, ClientId};
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

/// Acts on a `SLOT_MOVED` event for client `client` (see the module docs): the node of
/// `handle` went to the cell called `cell`, from cell `from`. Waits (up to
/// `forward_patience`) for a map that gives the node to `cell`, remembers the redirect and
/// registers the client there, then claims the client session at `cell` — only from this
/// proxy's session at `from`, the parent of the sub-session that moved, so a client another
/// proxy holds there is never taken. The new cell takes the sub-session on once the map
/// installs the slot there, so an unknown session is asked about again until then.
pub(super) async fn follow_moved(
    shared: &Arc<Shared>,
    client: ClientId,
    handle: &[u8],
    cell: &str,
    from: CellIx,
) {
    let deadline = Instant::now() + shared.cfg.forward_patience;
    let Some((principal, secret)) = shared.with_core(|c| c.identity(&client)) else {
        return;
    };
    let Some(ix) = moved_to(shared, handle, cell, deadline).await else {
        tracing::debug!(
            cell,
            "no map gives a moved handle's node to its new cell; its next call follows it"
        );
        return;
    };
    let origin = shared.cell_of_handle(handle).0;
    shared.with_core(|c| {
        c.registered(&client, ix);
        c.handle_moved(&client, handle, ix);
        c.moved.moved(handle, ix, origin);
    });
    let parent = shared.cell(from).link.borrow().as_ref().map(|l| l.session);
    let up = shared.cell(ix);
    loop {
        let Some(link) = up.current(deadline).await else {
            return;
        };
        match upstream::claim(&link, &client, &secret, &principal, parent).await {
            Ok(r) if r.known => {
                metrics::counter!("warren_proxy_moved_claims_total").increment(1);
                return;
            }
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(cell, %e, "claiming a client whose handle moved failed; its next call there takes it on");
                return;
            }
        }
    }
}

/// The cell called `cell`, once the map gives it the node of `handle` (the hand-off that
/// sent `SLOT_MOVED` precedes the map that moves the slot); `None` if that takes past
/// `deadline`, or the handle does not decode.
async fn moved_to(
    shared: &Arc<Shared>,
    handle: &[u8],
    cell: &str,
    deadline: Instant,
) -> Option<CellIx> {
    if !shared.routed() {
        return shared.cell_named(cell);
    }
    let path = crate::decode_handle(handle)?.path;
    let mut min_epoch = 1;
    loop {
        let map = shared.current_map().await.ok()?;
        // A handle on a directory may be on its entry or its child anchor.
        let owns = |anchor| {
            map.route(&path, anchor)
                .is_ok_and(|r| Dest::from(r).is(cell, shared.meta_name()))
        };
        if owns(false) || owns(true) {
            return shared.dest_cell(&map, &Dest::Cell(cell.into())).await.ok();
        }
        if Instant::now() >= deadline {
            return None;
        }
        min_epoch = min_epoch.max(map.map_epoch() + 1);
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(MAP_WAIT);
        let _ = shared.newer_map(min_epoch, wait).await;
    }
}
