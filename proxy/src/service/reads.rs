//! Opens and reads (the "kv" concern): `Open` and `Close` forwarded, and
//! `GetContentsAndStat` / `GetStat` / `ReadDir` answered from the shared cache when the
//! handle allows it, else forwarded with a fill ticket.

use super::*;
use crate::cache::{Entry, Ticket};

impl Service {
    /// A cached read: the handle must be one the cell gave this client (not closed), with
    /// the intent the cell would demand, and no sequencer (the cell checks those).
    pub(super) fn cached<T>(
        &self,
        who: &Who,
        token: &[u8],
        need_read: bool,
        get: impl FnOnce(&Entry, u64) -> Option<T>,
    ) -> Result<T, Ticket> {
        self.shared.with_core(|c| {
            let info = match c.handle(&who.id, token) {
                Some(h)
                    if !h.sequencer && !h.unconfirmed && (!need_read || h.intent & READ != 0) =>
                {
                    h.clone()
                }
                _ => {
                    c.cache.note_miss();
                    return Err(c.cache.ticket());
                }
            };
            let ticket = c.cache.ticket();
            let hit = c.cache.get(&info.path).and_then(|e| get(e, info.instance));
            match hit {
                Some(v) => {
                    c.note_cacher(&who.id, &info.path, None);
                    Ok(v)
                }
                None => Err(ticket),
            }
        })
    }

    /// A cacheable answer for `path` from `cell`, fetched under `ticket`, is going to
    /// `who`: records `who` as a cacher of `path` (and `cell` as where the proxy holds
    /// cache interest for it) and fills the shared cache with `fill` (when there is
    /// something to keep), in one step under the core's lock. Returns whether the client
    /// may still cache the answer — not if an invalidation of `path` arrived while it was
    /// being fetched.
    fn keep_answer(
        &self,
        who: &Who,
        path: &str,
        cell: usize,
        ticket: Ticket,
        fill: Option<impl FnOnce(&mut Entry)>,
    ) -> bool {
        self.shared.with_core(|c| {
            if !c.note_fetched(&who.id, path, ticket, cell) {
                return false;
            }
            if let Some(fill) = fill {
                c.cache.fill(path, ticket, fill);
            }
            true
        })
    }

    pub(super) fn handle_info(
        &self,
        who: &Who,
        token: &[u8],
        cell: usize,
        body: Option<&pb::HandleBody>,
    ) {
        if let Some(b) = body {
            let info = HandleInfo {
                cell,
                path: b.path.clone(),
                instance: b.instance,
                intent: b.intent,
                sequencer: false,
                unconfirmed: false,
            };
            self.shared.with_core(|c| {
                if c.handle(&who.id, token).is_none() {
                    c.add_handle(&who.id, token.to_vec(), info);
                } else {
                    c.confirm_handle(&who.id, token);
                }
            });
        }
    }
}

pub(super) async fn open(
    svc: &Service,
    req: Request<pb::OpenRequest>,
) -> Result<Response<pb::OpenResponse>, Status> {
    let r = req.into_inner();
    let who = svc.session(r.ctx.as_ref()).await?;
    let ticket = svc.shared.with_core(|c| c.cache.ticket());
    let anchor = r.target == pb::OpenTarget::Anchor as i32;
    let routed = svc
        .routed(&r.path, anchor, |a| {
            let mut r = r.clone();
            if a.anchor {
                r.target = pb::OpenTarget::Anchor as i32;
            }
            if a.redirected {
                // The entry's cell already created the directory (and its anchor) if the
                // client asked; the anchor is only opened (`created` comes from the
                // redirect).
                r.create = None;
            }
            // From now on the client's lease nests inside the proxy's session there:
            // the cell registers the client session on Open.
            svc.shared.with_core(|c| c.registered(&who.id, a.cell));
            let who = &who;
            async move {
                svc.forward_routed(a.cell, a.map_epoch, Some(who), Retry::Once, |mut c, ctx| {
                    let mut r = r.clone();
                    r.ctx = Some(ctx);
                    async move { c.open(r).await }
                })
                .await
            }
        })
        .await?;
    let cell = routed.cell;
    match routed.answer {
        Ok(mut reply) => {
            reply.created = routed.attempts.created(reply.created);
            let body = crate::decode_handle(&reply.handle);
            svc.handle_info(&who, &reply.handle, cell, body.as_ref());
            if reply.cacheable {
                let path = body.map(|b| b.path).unwrap_or_else(|| r.path.clone());
                let contents = r.read.then(|| reply.contents.clone());
                let fill = reply.stat.clone().map(|stat| {
                    move |e: &mut Entry| {
                        if let Some(data) = contents {
                            e.contents = Some((data, stat.clone()));
                        }
                        e.stat = Some(stat);
                    }
                });
                reply.cacheable = svc.keep_answer(&who, &path, cell, ticket, fill);
            }
            ok(reply)
        }
        Err(status) => {
            // A cacheable absence: the client may cache it only if we will relay its
            // invalidation (from the cell that answered, where the proxy now holds cache
            // interest for it).
            if let Some(e) = WarrenError::from_status(&status) {
                if e.code == ErrorCode::NotFound && e.cacheable {
                    let path = r.path.clone();
                    let still = svc
                        .shared
                        .with_core(|c| c.note_fetched(&who.id, &path, ticket, cell));
                    if !still {
                        let mut e = e;
                        e.cacheable = false;
                        return Err(e.into());
                    }
                }
            }
            Err(status)
        }
    }
}

pub(super) async fn close(
    svc: &Service,
    req: Request<pb::CloseRequest>,
) -> Result<Response<pb::CloseResponse>, Status> {
    // Never fails (SPEC §3): whatever is wrong with the request, the answer is OK.
    let r = req.into_inner();
    let Ok(who) = svc.session(r.ctx.as_ref()).await else {
        return ok(pb::CloseResponse {});
    };
    svc.shared
        .with_core(|c| c.remove_handle(&who.id, &r.handle));
    if let Ok((cell, _)) = svc.handle_cell(&who, &r.handle) {
        let _ = svc
            .forward(cell, Some(&who), Retry::Idempotent, |mut c, ctx| {
                let mut r = r.clone();
                r.ctx = Some(ctx);
                async move { c.close(r).await }
            })
            .await;
    }
    ok(pb::CloseResponse {})
}

pub(super) async fn get_contents_and_stat(
    svc: &Service,
    req: Request<pb::GetContentsAndStatRequest>,
) -> Result<Response<pb::GetContentsAndStatResponse>, Status> {
    let r = req.into_inner();
    let who = svc.session(r.ctx.as_ref()).await?;
    let ticket = match svc.cached(&who, &r.handle, true, |e, instance| {
        e.contents
            .as_ref()
            .filter(|(_, s)| s.instance == instance)
            .cloned()
    }) {
        Ok((contents, stat)) => {
            return ok(pb::GetContentsAndStatResponse {
                contents,
                stat: Some(stat),
                cacheable: true,
            })
        }
        Err(t) => t,
    };
    let (cell, body) = svc.handle_cell(&who, &r.handle)?;
    let mut reply = svc
        .forward(cell, Some(&who), Retry::Idempotent, |mut c, ctx| {
            let mut r = r.clone();
            r.ctx = Some(ctx);
            async move { c.get_contents_and_stat(r).await }
        })
        .await?;
    svc.handle_info(&who, &r.handle, cell, body.as_ref());
    if let (true, Some(b)) = (reply.cacheable, body) {
        let data = reply.contents.clone();
        let fill = reply.stat.clone().map(|stat| {
            move |e: &mut Entry| {
                e.stat = Some(stat.clone());
                e.contents = Some((data, stat));
            }
        });
        reply.cacheable = svc.keep_answer(&who, &b.path, cell, ticket, fill);
    }
    ok(reply)
}

pub(super) async fn get_stat(
    svc: &Service,
    req: Request<pb::GetStatRequest>,
) -> Result<Response<pb::GetStatResponse>, Status> {
    let r = req.into_inner();
    let who = svc.session(r.ctx.as_ref()).await?;
    let ticket = match svc.cached(&who, &r.handle, false, |e, instance| {
        e.stat
            .as_ref()
            .or(e.contents.as_ref().map(|(_, s)| s))
            .filter(|s| s.instance == instance)
            .cloned()
    }) {
        Ok(stat) => {
            return ok(pb::GetStatResponse {
                stat: Some(stat),
                cacheable: true,
            })
        }
        Err(t) => t,
    };
    let (cell, body) = svc.handle_cell(&who, &r.handle)?;
    let mut reply = svc
        .forward(cell, Some(&who), Retry::Idempotent, |mut c, ctx| {
            let mut r = r.clone();
            r.ctx = Some(ctx);
            async move { c.get_stat(r).await }
        })
        .await?;
    svc.handle_info(&who, &r.handle, cell, body.as_ref());
    if let (true, Some(b)) = (reply.cacheable, body) {
        let fill = reply
            .stat
            .clone()
            .map(|stat| move |e: &mut Entry| e.stat = Some(stat));
        reply.cacheable = svc.keep_answer(&who, &b.path, cell, ticket, fill);
    }
    ok(reply)
}

pub(super) async fn read_dir(
    svc: &Service,
    req: Request<pb::ReadDirRequest>,
) -> Result<Response<pb::ReadDirResponse>, Status> {
    let r = req.into_inner();
    let who = svc.session(r.ctx.as_ref()).await?;
    let ticket = match svc.cached(&who, &r.handle, true, |e, instance| {
        e.dir
            .as_ref()
            .filter(|(_, s)| s.instance == instance)
            .cloned()
    }) {
        Ok((entries, stat)) => {
            return ok(pb::ReadDirResponse {
                entries,
                cacheable: true,
                stat: Some(stat),
            })
        }
        Err(t) => t,
    };
    let (cell, body) = svc.handle_cell(&who, &r.handle)?;
    let mut reply = svc
        .forward(cell, Some(&who), Retry::Idempotent, |mut c, ctx| {
            let mut r = r.clone();
            r.ctx = Some(ctx);
            async move { c.read_dir(r).await }
        })
        .await?;
    svc.handle_info(&who, &r.handle, cell, body.as_ref());
    if let (true, Some(b)) = (reply.cacheable, body) {
        let entries = reply.entries.clone();
        let fill = reply
            .stat
            .clone()
            .map(|stat| move |e: &mut Entry| e.dir = Some((entries, stat)));
        reply.cacheable = svc.keep_answer(&who, &b.path, cell, ticket, fill);
    }
    ok(reply)
}
