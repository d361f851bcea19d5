//! Opens and reads (the "kv" concern): `Open` and `Close` forwarded, and
//! `GetContentsAndStat` / `GetStat` / `ReadDir` answered from the shared cache when the
//! handle allows it, else forwarded with a fill ticket.

use super::*;
use crate::cache::{Entry, Ticket};
use crate::core::{Keep, ProxyCore};
use crate::permission::{self, Verdict};

/// Why a read was not answered from the cache.
pub(super) enum Missed {
    /// Not cached (or not for this handle): fetch it from the cell under this ticket.
    Fetch(Ticket),
    /// Cached, but the client's principal may not read it ([`crate::permission`]). The
    /// copy stays for those who may.
    Refused(WarrenError),
}

impl Service {
    /// A cached read: the handle must be one the cell gave this client (not closed), with
    /// the intent the cell would demand, and no sequencer (the cell checks those); and the
    /// proxy's session at the cells involved must still cover its cache
    /// ([`crate::core::ProxyCore::cache_covered`]).
    ///
    /// A read that needs read permission is served only if the node's read ACL, as cached
    /// here, lists the client's principal ([`permission::may_read`]); a read whose ACL
    /// file is not cached here goes to the cell, which enforces it.
    /// With the copy, whether the client may keep it ([`Keep`]).
    pub(super) fn cached<T>(
        &self,
        who: &Who,
        token: &[u8],
        need_read: bool,
        get: impl FnOnce(&Entry, u64) -> Option<T>,
        stat: impl FnOnce(&T) -> &pb::Stat,
    ) -> Result<(T, Keep), Missed> {
        let miss = |c: &mut ProxyCore| {
            c.cache.note_miss();
            Missed::Fetch(c.cache.ticket())
        };
        self.shared.with_core(|c| {
            let info = match c.handle(&who.id, token) {
                Some(h)
                    if !h.sequencer && !h.unconfirmed && (!need_read || h.intent & READ != 0) =>
                {
                    h.clone()
                }
                _ => return Err(miss(c)),
            };
            let ticket = c.cache.ticket();
            if !c.cache_covered(&info.path, info.cell, Instant::now()) {
                c.cache.note_miss();
                return Err(Missed::Fetch(ticket));
            }
            let hit = c.cache.peek(&info.path).and_then(|e| get(e, info.instance));
            let Some(v) = hit else {
                return Err(miss(c));
            };
            if need_read {
                match self.read_verdict(c, &who.principal, &info.path, stat(&v)) {
                    Verdict::Serve => {}
                    Verdict::Refuse(e) => return Err(Missed::Refused(e)),
                    Verdict::AskTheCell => return Err(miss(c)),
                }
            }
            c.cache.note_hit();
            let keep = c.keep_cacher(&who.id, &info.path, None);
            Ok((v, keep))
        })
    }

    /// Whether `principal` may be served the cached copy of `path` whose stat is `stat`:
    /// [`permission::may_read`] with the ACL files this proxy caches. A proxy that has not
    /// learned its deployment yet has nothing cached to judge by: the cell decides.
    fn read_verdict(&self, c: &ProxyCore, principal: &str, path: &str, stat: &pb::Stat) -> Verdict {
        let Some(deployment) = self.shared.deployment.get() else {
            return Verdict::AskTheCell;
        };
        permission::may_read(deployment, principal, path, stat, |file| {
            c.cache
                .peek(file)
                .and_then(|e| e.contents.as_ref())
                .map(|(data, _)| data.as_slice())
        })
    }

    /// A cacheable answer for `path` from `cell`, fetched under `ticket`, is going to
    /// `who`: records `who` as a cacher of `path` (and `cell` as where the proxy holds
    /// cache interest for it) and fills the shared cache with `fill` (when there is
    /// something to keep), in one step under the core's lock. Returns whether the client
    /// may still cache the answer — not if an invalidation of `path` arrived while it was
    /// being fetched. A client's first copy from a cell may wait for a cover refresh there
    /// ([`Shared::keep_within_cover`]).
    async fn keep_answer(
        &self,
        who: &Who,
        path: &str,
        cell: usize,
        ticket: Ticket,
        fill: Option<impl FnOnce(&mut Entry) + Send>,
    ) -> bool {
        let mut fill = fill;
        self.shared
            .keep_within_cover(|c| {
                let keep = c.keep_fetched(&who.id, path, ticket, cell);
                if keep == Keep::Yes {
                    if let Some(fill) = fill.take() {
                        c.cache.fill(path, ticket, fill);
                    }
                }
                keep
            })
            .await
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

pub(super) async fn open(svc: &Service, r: pb::OpenRequest) -> Answer<pb::OpenResponse> {
    let who = svc.session(r.ctx()).await?;
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
                svc.forward(
                    Via::attempt(&a, Some(who), Retry::Once),
                    &r,
                    |mut c, r| async move { c.open(r).await },
                )
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
                reply.cacheable = svc.keep_answer(&who, &path, cell, ticket, fill).await;
            }
            Ok(reply)
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
                        .keep_within_cover(|c| c.keep_fetched(&who.id, &path, ticket, cell))
                        .await;
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

pub(super) async fn close(svc: &Service, r: pb::CloseRequest) -> Answer<pb::CloseResponse> {
    // Never fails (docs/design.md §4): whatever is wrong with the request, the answer is OK.
    let Ok(who) = svc.session(r.ctx()).await else {
        return Ok(pb::CloseResponse {});
    };
    svc.shared
        .with_core(|c| c.remove_handle(&who.id, &r.handle));
    // A handle whose node moved lives at its new cell (the old one refuses the Close
    // and changes nothing): the Close follows it there, where it releases the handle's
    // lock and ephemeral open.
    if let Ok((cell, _)) = svc.handle_cell(&who, &r.handle) {
        let _ = svc.send_on_handle(&who, cell, Retry::Idempotent, &r).await;
    }
    svc.shared.with_core(|c| c.moved.forget(&r.handle));
    Ok(pb::CloseResponse {})
}

/// A read the proxy may answer from its shared cache: `GetContentsAndStat`, `GetStat` and
/// `ReadDir` differ only in which part of a cache entry they read and fill.
pub(super) trait CachedRead: Rpc + WithHandle + Sync {
    /// What the cache holds for this read.
    type Copy: Send;
    /// Whether the handle must have been opened for reading.
    const NEEDS_READ: bool;
    /// The entry's copy for this read, if it is of node instance `instance`.
    fn lookup(e: &Entry, instance: u64) -> Option<Self::Copy>;
    /// The node's stat in a copy (its ACL names decide who may be served it).
    fn stat(copy: &Self::Copy) -> &pb::Stat;
    /// The answer made from a cached copy (cacheable).
    fn from_copy(copy: Self::Copy) -> Self::Reply;
    /// The reply's `cacheable` flag.
    fn cacheable(reply: &mut Self::Reply) -> &mut bool;
    /// How the cell's reply fills the cache entry (none without a stat).
    fn fill(reply: &Self::Reply) -> Option<impl FnOnce(&mut Entry) + Send + 'static>;
}

impl CachedRead for pb::GetContentsAndStatRequest {
    type Copy = (Vec<u8>, pb::Stat);
    const NEEDS_READ: bool = true;
    fn lookup(e: &Entry, instance: u64) -> Option<Self::Copy> {
        e.contents
            .as_ref()
            .filter(|(_, s)| s.instance == instance)
            .cloned()
    }
    fn stat((_, stat): &Self::Copy) -> &pb::Stat {
        stat
    }
    fn from_copy((contents, stat): Self::Copy) -> Self::Reply {
        pb::GetContentsAndStatResponse {
            contents,
            stat: Some(stat),
            cacheable: true,
        }
    }
    fn cacheable(reply: &mut Self::Reply) -> &mut bool {
        &mut reply.cacheable
    }
    fn fill(reply: &Self::Reply) -> Option<impl FnOnce(&mut Entry) + Send + 'static> {
        let data = reply.contents.clone();
        reply.stat.clone().map(|stat| {
            move |e: &mut Entry| {
                e.stat = Some(stat.clone());
                e.contents = Some((data, stat));
            }
        })
    }
}

impl CachedRead for pb::GetStatRequest {
    type Copy = pb::Stat;
    const NEEDS_READ: bool = false;
    fn lookup(e: &Entry, instance: u64) -> Option<Self::Copy> {
        e.stat
            .as_ref()
            .or(e.contents.as_ref().map(|(_, s)| s))
            .filter(|s| s.instance == instance)
            .cloned()
    }
    fn stat(stat: &Self::Copy) -> &pb::Stat {
        stat
    }
    fn from_copy(stat: Self::Copy) -> Self::Reply {
        pb::GetStatResponse {
            stat: Some(stat),
            cacheable: true,
        }
    }
    fn cacheable(reply: &mut Self::Reply) -> &mut bool {
        &mut reply.cacheable
    }
    fn fill(reply: &Self::Reply) -> Option<impl FnOnce(&mut Entry) + Send + 'static> {
        reply
            .stat
            .clone()
            .map(|stat| move |e: &mut Entry| e.stat = Some(stat))
    }
}

impl CachedRead for pb::ReadDirRequest {
    type Copy = (Vec<pb::DirEntry>, pb::Stat);
    const NEEDS_READ: bool = true;
    fn lookup(e: &Entry, instance: u64) -> Option<Self::Copy> {
        e.dir
            .as_ref()
            .filter(|(_, s)| s.instance == instance)
            .cloned()
    }
    fn stat((_, stat): &Self::Copy) -> &pb::Stat {
        stat
    }
    fn from_copy((entries, stat): Self::Copy) -> Self::Reply {
        pb::ReadDirResponse {
            entries,
            cacheable: true,
            stat: Some(stat),
        }
    }
    fn cacheable(reply: &mut Self::Reply) -> &mut bool {
        &mut reply.cacheable
    }
    fn fill(reply: &Self::Reply) -> Option<impl FnOnce(&mut Entry) + Send + 'static> {
        let entries = reply.entries.clone();
        reply
            .stat
            .clone()
            .map(|stat| move |e: &mut Entry| e.dir = Some((entries, stat)))
    }
}

/// A cached read: answered from the shared cache when the handle allows it and the entry
/// holds a copy of the handle's node instance ([`Service::hit`]); else forwarded to the
/// handle's cell ([`fetched_read`]).
pub(super) async fn cached_read<Q: CachedRead>(svc: &Service, r: Q) -> Answer<Q::Reply> {
    if let Some(reply) = svc.hit(&r) {
        return Ok(reply);
    }
    // Boxed: the forwarding path's state is large, and a hit should not carry (and move)
    // it in every call's future.
    Box::pin(fetched_read(svc, r)).await
}

impl Service {
    /// A cache hit, decided in one step under the core's lock without waiting on anything:
    /// the session is known here with this secret and epoch, the handle is one the cell
    /// gave it (not closed, no sequencer, not unconfirmed, with the intent the read
    /// needs), and the cache holds a copy of the handle's node instance. `None` for
    /// anything else — [`fetched_read`] then checks again on the full path (adopting the
    /// session, refusing the call, or forwarding it), so a miss here changes nothing.
    fn hit<Q: CachedRead>(&self, r: &Q) -> Option<Q::Reply> {
        let (id, secret, epoch, _) = parse_ctx(r.ctx()).ok()?;
        let now = Instant::now();
        let authenticated = warren_server::auth::caller();
        let copy = self.shared.with_core(|c| {
            if !matches!(c.check(&id, &secret, epoch, now), Ok(Known::Yes)) {
                return None;
            }
            // A session presented under another principal's certificate: the full path
            // refuses it.
            if let Some(a) = &authenticated {
                if c.identity(&id)
                    .is_none_or(|(owner, _)| owner != a.principal)
                {
                    return None;
                }
            }
            let h = c.handle(&id, r.handle())?;
            if h.sequencer || h.unconfirmed || (Q::NEEDS_READ && h.intent & READ == 0) {
                return None;
            }
            // As `Service::cached`: not past the proxy's cover at the cells involved, and
            // a copy the client may not keep goes the full path, which says so.
            if !c.cache_covered(&h.path, h.cell, now) {
                return None;
            }
            let copy = Q::lookup(c.cache.peek(&h.path)?, h.instance)?;
            // Anything but a plain permission to read goes the full path, which refuses
            // or asks the cell; a principal is looked up only for a node with a read ACL.
            let stat = Q::stat(&copy);
            if Q::NEEDS_READ && stat.acl.as_ref().is_some_and(|a| !a.read.is_empty()) {
                let (principal, _) = c.identity(&id)?;
                if self.read_verdict(c, &principal, &h.path, stat) != Verdict::Serve {
                    return None;
                }
            }
            if !c.is_cacher(&id, &h.path) {
                let path = h.path.clone();
                if !c.note_cacher(&id, &path, None) {
                    return None;
                }
            }
            c.cache.note_hit();
            Some(copy)
        })?;
        Some(Q::from_copy(copy))
    }
}

/// A cached read that was not a [`Service::hit`]: the session checked (or adopted), the
/// cache tried again under the handle's rules, else the read forwarded to the handle's cell
/// (or the one its node moved to) with a fill ticket, and the answer kept if nothing
/// invalidated the path meanwhile.
async fn fetched_read<Q: CachedRead>(svc: &Service, r: Q) -> Answer<Q::Reply> {
    let who = svc.session(r.ctx()).await?;
    let mut cover = svc.shared.cover_wait();
    let ticket = loop {
        match svc.cached(&who, r.handle(), Q::NEEDS_READ, Q::lookup, Q::stat) {
            Ok((copy, keep)) => {
                // A client's first copy from the cell: once the cover refresh asked for
                // is applied, look again (the copy may have been invalidated meanwhile).
                if keep == Keep::AfterRefresh && cover.next().await {
                    continue;
                }
                let mut reply = Q::from_copy(copy);
                *Q::cacheable(&mut reply) = keep == Keep::Yes;
                return Ok(reply);
            }
            Err(Missed::Fetch(t)) => break t,
            Err(Missed::Refused(e)) => return Err(e.into()),
        }
    };
    let (cell, body) = svc.handle_cell(&who, r.handle())?;
    // `cell`: the one that answered, which may be the one the handle moved to.
    let (mut reply, cell) = svc
        .send_on_handle(&who, cell, Retry::Idempotent, &r)
        .await?;
    svc.handle_info(&who, r.handle(), cell, body.as_ref());
    if let (true, Some(b)) = (*Q::cacheable(&mut reply), body) {
        let fill = Q::fill(&reply);
        *Q::cacheable(&mut reply) = svc.keep_answer(&who, &b.path, cell, ticket, fill).await;
    }
    Ok(reply)
}
