//! Calls on behalf of a client session, on the proxy's current session at the cell,
//! riding out the cell's failover (waiting for a newer link on `STALE_EPOCH`, `NOT_MASTER`,
//! or a transport failure of an idempotent call or of one that was not sent) for up to
//! `forward_patience`. A transport failure becomes a table error: `UNREACHABLE` (not sent,
//! or idempotent, and no master within the patience) or `OUTCOME_UNKNOWN` (a
//! non-idempotent call lost after it was sent).

use super::*;

/// Where a forwarded call goes, on whose behalf, and whether it may be sent again.
#[derive(Clone, Copy)]
pub(super) struct Via<'a> {
    cell: usize,
    /// The epoch of the map the call was routed by, which the call carries
    /// (`SessionContext.map_epoch`) so that the cell can tell a stale router; `None`: the
    /// map in hand (0 without one).
    map_epoch: Option<u64>,
    /// The client session the call is made for; `None`: as the proxy itself.
    who: Option<&'a Who>,
    retry: Retry,
}

impl<'a> Via<'a> {
    /// For client `who`, to cell `cell` (its handle's), routed by the map in hand.
    pub(super) fn client(who: &'a Who, cell: usize, retry: Retry) -> Via<'a> {
        Via {
            cell,
            map_epoch: None,
            who: Some(who),
            retry,
        }
    }

    /// To the cell of routing attempt `a`, by the map it was routed with.
    pub(super) fn attempt(a: &Attempt, who: Option<&'a Who>, retry: Retry) -> Via<'a> {
        Via {
            cell: a.cell,
            map_epoch: Some(a.map_epoch),
            who,
            retry,
        }
    }
}

impl Service {
    /// Forwards request `req` as `via` says, on the proxy's current session at the cell
    /// (the request goes with that session's context), riding out a failover of the cell
    /// for up to `forward_patience`.
    pub(super) async fn forward<Q, R, F, Fut>(
        &self,
        via: Via<'_>,
        req: &Q,
        call: F,
    ) -> Result<R, Status>
    where
        Q: WithContext + Clone,
        F: Fn(WarrenClient<Channel>, Q) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let Via {
            cell,
            map_epoch,
            who,
            retry,
        } = via;
        let map_epoch = map_epoch.unwrap_or_else(|| self.shared.map_epoch());
        let up = self.shared.cell(cell);
        let up = &*up;
        let deadline = Instant::now() + self.shared.cfg.forward_patience;
        let mut link: Option<Link> = None;
        loop {
            let l = match link.take() {
                Some(l) => l,
                None => up
                    .current(deadline)
                    .await
                    .ok_or_else(WarrenError::failover_in_progress)?,
            };
            let mut ctx = l.ctx(who.map(|w| (&w.id, &w.secret, w.principal.as_str())));
            ctx.map_epoch = map_epoch;
            let status = match call(l.client.clone(), req.with_ctx(ctx)).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) => s,
            };
            let e = WarrenError::from_status(&status);
            let wait_newer = |l: Link| async move {
                up.suspect.notify_one();
                up.newer_than(l.serial, deadline).await
            };
            match e.as_ref().map(|e| e.code) {
                Some(ErrorCode::StaleEpoch | ErrorCode::NotMaster) => {
                    link = Some(
                        wait_newer(l)
                            .await
                            .ok_or_else(WarrenError::failover_in_progress)?,
                    );
                }
                Some(ErrorCode::FailoverInProgress) => {
                    if Instant::now() >= deadline {
                        return Err(status);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(ErrorCode::SessionExpired) if status.message().contains(&hex(&l.session)) => {
                    // The proxy's own session at the cell is gone: a new one is made and
                    // the client claimed onto it.
                    link = Some(
                        wait_newer(l)
                            .await
                            .ok_or_else(WarrenError::failover_in_progress)?,
                    );
                }
                Some(ErrorCode::SessionExpired) => {
                    // The client's session at the cell ended: it lost what it held there.
                    if let Some(w) = who {
                        self.shared.with_core(|c| c.expire_client(&w.id));
                    }
                    return Err(status);
                }
                Some(_) => return Err(status),
                None => {
                    // A transport failure: the master may be gone. A call that never
                    // left the proxy (the connection could not be opened) is safe to send
                    // again once a master answers; one lost after it was sent is not,
                    // unless it is idempotent (docs/protocol.md, "Errors").
                    let sent = !warren_client::transport::not_sent(&status);
                    if retry == Retry::Once && sent {
                        up.suspect.notify_one();
                        return Err(WarrenError::outcome_unknown(format!(
                            "the connection to cell {} failed after the call was sent, so it may or may not have taken effect: {}",
                            up.name,
                            status.message()
                        ))
                        .into());
                    }
                    let patience = self.shared.cfg.forward_patience;
                    link = Some(wait_newer(l).await.ok_or_else(|| {
                        WarrenError::unreachable(format!(
                            "cell {} has no reachable master within the proxy's forwarding patience ({patience:?}); the call was {}: {}",
                            up.name,
                            if sent { "sent but is safe to repeat" } else { "not sent" },
                            status.message()
                        ))
                    })?);
                }
            }
        }
    }
}

/// Ends an own write ([`crate::core::ProxyCore::begin_own_write`]) when the call is
/// answered, fails, or is abandoned by its client.
struct OwnWrite {
    shared: Arc<Shared>,
    path: String,
}

impl Drop for OwnWrite {
    fn drop(&mut self) {
        self.shared.with_core(|c| c.end_own_write(&self.path));
    }
}

/// `SetContents` for a client: forwarded to the handle's cell. When no other client of
/// this proxy may hold a copy of the file, the proxy drops its own first and tells the cell
/// so (`proxy_dropped_copies`), which spares it the invalidation of its own client's write
/// (and the relay and acknowledging KeepAlive that come with it), as a cell spares a
/// writer talking to it directly.
pub(super) async fn set_contents(
    svc: &Service,
    r: pb::SetContentsRequest,
) -> Answer<pb::SetContentsResponse> {
    let (who, cell, body) = svc.session_and_cell(&r).await?;
    // The file's path and the start of the own write under one take of the core's lock.
    let own = svc
        .shared
        .with_core(|c| {
            let path = c
                .handle(&who.id, &r.handle)
                .map(|h| h.path.clone())
                .or(body.map(|b| b.path))?;
            c.begin_own_write(&who.id, &path).then_some(path)
        })
        .map(|path| OwnWrite {
            shared: svc.shared.clone(),
            path,
        });
    let dropped = own.is_some();
    let reply = svc
        .on_handle(&who, cell, Retry::Once, &r, |mut c, mut r| {
            if let Some(ctx) = r.ctx.as_mut() {
                ctx.proxy_dropped_copies = dropped;
            }
            async move { c.set_contents(r).await }
        })
        .await;
    drop(own);
    reply.map(|(reply, _)| reply)
}
