//! Sessions: creating them, checking the session part of every call, and ending them
//! (closed, expired), which releases their locks, handles and cache registrations.

use super::{Event, HandleKey, Master, Wake};
use crate::core::HashSet;
use crate::store::{Mutation, SessionId, SessionRecord};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::WarrenError;
use warren_server::lease::{short_id, Lease};

#[derive(Clone, Debug)]
pub struct SessionCreated {
    pub id: SessionId,
    pub secret: [u8; 16],
    pub lease: Duration,
    pub epoch: u64,
    pub deployment: String,
}

/// The session part of a request, already parsed at the edge.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub session: SessionId,
    pub secret: [u8; 16],
    pub epoch: u64,
    /// Set by a proxy on its proxy session: the call is made for this client session.
    pub client: Option<ClientCtx>,
    /// The principal the transport authenticated for the call (a verified client
    /// certificate); `None` on a plaintext connection, where asserted principals are
    /// trusted ([`super::caller`]).
    pub authenticated: Option<String>,
}

/// The client part of a proxy's request (`SessionContext.client_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCtx {
    pub session: SessionId,
    pub secret: [u8; 16],
    pub principal: String,
    /// `SessionContext.proxy_dropped_copies`: on a write, the proxy holds no copy of the
    /// written file for anyone but the writer, so it need not be invalidated.
    pub proxy_dropped_copies: bool,
}

pub(super) struct Session {
    pub(super) rec: SessionRecord,
    /// Its lease, event queue and outstanding KeepAlive. A sub-session's lease is never
    /// extended or checked (it lives as long as its proxy session) and its queue stays
    /// empty (its events go on its proxy session's queue).
    pub(super) lease: Lease<Event>,
    pub(super) handles: BTreeSet<HandleKey>,
    /// Paths this session may have cached.
    pub(super) cached: HashSet<String>,
    /// Invalidations sent and not yet acknowledged: seq → path.
    pub(super) pending_invalidations: BTreeMap<u64, String>,
    /// A proxy session: its live client sub-sessions.
    pub(super) subs: BTreeSet<SessionId>,
    /// A sub-session whose proxy session ended: when it ends unless claimed.
    pub(super) orphan_until: Option<Instant>,
    /// Came with a slot a reshard moved here (docs/resharding.md): while an orphan, the
    /// first proxy session that calls for it with its secret takes it on, as a claim would.
    pub(super) moved_in: bool,
    /// Events for a moved-in orphan, delivered to the proxy session that takes it on.
    pub(super) held_events: Vec<super::Event>,
    /// A proxy session: how long before its lease here ends it stops granting client
    /// leases and answering from its shared cache (`SessionContext.hold_back_ms` on its
    /// KeepAlives; zero: no such promise). Not recorded in the store: a new master learns
    /// it from the proxy's next KeepAlive and waits for leases until then.
    pub(super) hold_back: Duration,
    /// A proxy session whose last client sub-session another proxy session claimed, and
    /// that holds nothing of its own: nobody can read through it here any more.
    pub(super) deserted: bool,
}

impl Session {
    pub(super) fn new(rec: SessionRecord, lease_end: Instant) -> Self {
        Session {
            rec,
            lease: Lease::new(lease_end),
            handles: BTreeSet::new(),
            cached: HashSet::default(),
            pending_invalidations: BTreeMap::new(),
            subs: BTreeSet::new(),
            orphan_until: None,
            moved_in: false,
            held_events: Vec::new(),
            hold_back: Duration::ZERO,
            deserted: false,
        }
    }
}

impl Master {
    /// `CreateSession`: an ordinary session, granted the lease.
    pub fn create_session(
        &mut self,
        principal: &str,
        now: Instant,
    ) -> Result<SessionCreated, WarrenError> {
        self.new_session(principal, false, now)
    }

    /// `CreateSession` from a caller the transport authenticated as `authenticated`
    /// (`None`: plaintext): the caller rule ([`super::caller`]) decides whether it may
    /// create a proxy session and which principal the session acts for, to which it is
    /// then bound.
    pub fn create_session_as(
        &mut self,
        authenticated: Option<&str>,
        principal: &str,
        proxy: bool,
        now: Instant,
    ) -> Result<SessionCreated, WarrenError> {
        let caller = self.cfg.callers.judge(
            authenticated,
            principal,
            proxy.then_some("create a proxy session (CreateSession with proxy = true)"),
        )?;
        self.new_session(&caller.session_principal(principal), proxy, now)
    }

    /// `CreateSession{proxy: true}`: a proxy's upstream session, granted the proxy lease;
    /// it may act for client sub-sessions and claim them (docs/design.md §10).
    pub fn create_proxy_session(
        &mut self,
        principal: &str,
        now: Instant,
    ) -> Result<SessionCreated, WarrenError> {
        self.new_session(principal, true, now)
    }

    pub(super) fn lease_of(&self, rec: &SessionRecord) -> Duration {
        if rec.proxy {
            self.cfg.proxy_lease
        } else {
            self.cfg.lease
        }
    }

    pub(super) fn new_session(
        &mut self,
        principal: &str,
        proxy: bool,
        now: Instant,
    ) -> Result<SessionCreated, WarrenError> {
        self.now = now;
        if principal.len() > 255 {
            return Err(WarrenError::invalid_argument(
                "principal name is longer than 255 bytes",
            ));
        }
        if self.recovering() {
            return Err(WarrenError::failover_in_progress());
        }
        let id: SessionId = self.rng.gen();
        let secret: [u8; 16] = self.rng.gen();
        let rec = SessionRecord {
            id,
            secret,
            principal: principal.to_string(),
            proxy,
            ..SessionRecord::default()
        };
        let lease = self.lease_of(&rec);
        self.out.mutations.push(Mutation::PutSession(rec.clone()));
        self.insert_session(Session::new(rec, now + lease));
        Ok(SessionCreated {
            id,
            secret,
            lease,
            epoch: self.meta.epoch,
            deployment: self.cfg.deployment.clone(),
        })
    }

    /// [`Master::check_session`] for any call but KeepAlive: also refused while the
    /// sessions have not all acknowledged the failover (docs/design.md §9 step 4). Returns the
    /// session the call acts as: the caller's own, or the client sub-session a proxy
    /// session names in `ctx.client`, which must be registered already.
    pub(super) fn check(&mut self, ctx: &Ctx) -> Result<SessionId, WarrenError> {
        self.check_as(ctx, false)
    }

    /// [`Master::check`]; with `register` (only `Open`) an unknown client session is
    /// registered as a sub-session of the calling proxy session.
    pub(super) fn check_as(&mut self, ctx: &Ctx, register: bool) -> Result<SessionId, WarrenError> {
        self.need_map()?;
        self.check_any(ctx, register)
    }

    /// [`Master::check_as`] without the partition map's readiness (session calls).
    pub(super) fn check_any(
        &mut self,
        ctx: &Ctx,
        register: bool,
    ) -> Result<SessionId, WarrenError> {
        let sid = self.check_session(ctx)?;
        if ctx.client.is_some() && !self.sessions[&sid].rec.proxy {
            return Err(WarrenError::invalid_argument(format!(
                "ctx.client_session may only be set on a proxy session (CreateSession with proxy = true); session {} is not one",
                short_id(&sid)
            )));
        }
        if self.recovering() {
            return Err(WarrenError::failover_in_progress());
        }
        match &ctx.client {
            None => Ok(sid),
            Some(c) => {
                let caller = self.caller(ctx)?;
                self.client_session(sid, c, register, &caller)
            }
        }
    }

    /// Validates the session part of a request: epoch, session, secret, lease.
    pub(super) fn check_session(&mut self, ctx: &Ctx) -> Result<SessionId, WarrenError> {
        let caller = self.caller(ctx)?;
        if ctx.epoch != self.meta.epoch {
            if ctx.epoch < self.meta.epoch {
                return Err(WarrenError::stale_epoch(self.meta.epoch, ctx.epoch));
            }
            return Err(WarrenError::invalid_argument(format!(
                "request names master epoch {}, but this master's epoch is {}",
                ctx.epoch, self.meta.epoch
            )));
        }
        let Some(s) = self.sessions.get(&ctx.session) else {
            return Err(WarrenError::session_expired(format!(
                "session {} is unknown or has expired",
                short_id(&ctx.session)
            )));
        };
        if s.rec.secret != ctx.secret {
            return Err(WarrenError::permission_denied(format!(
                "wrong secret for session {}",
                short_id(&ctx.session)
            )));
        }
        if s.rec.parent.is_some() {
            return Err(WarrenError::invalid_argument(format!(
                "session {} is a client session registered by a proxy; its calls go through that proxy (ctx.client_session on the proxy's session)",
                short_id(&ctx.session)
            )));
        }
        caller.may_use_session(&ctx.session, &s.rec.principal)?;
        if self.now > s.lease.end {
            self.expire_session(ctx.session);
            return Err(WarrenError::session_expired(format!(
                "session {} has expired (its lease ran out)",
                short_id(&ctx.session)
            )));
        }
        Ok(ctx.session)
    }

    /// The caller rule for a call with session context `ctx`: acting for a client session
    /// is for proxies only.
    pub(super) fn caller(&self, ctx: &Ctx) -> Result<super::Caller, WarrenError> {
        self.cfg.callers.judge(
            ctx.authenticated.as_deref(),
            "",
            ctx.client
                .is_some()
                .then_some("act for a client session (ctx.client_session)"),
        )
    }

    /// `CloseSession`: ends the session, or, with `ctx.client`, only that client
    /// sub-session (`expired`: it expired at its proxy, so its locks are released with
    /// their lock-delay, as for any failed session).
    pub fn close_session(
        &mut self,
        ctx: &Ctx,
        expired: bool,
        now: Instant,
    ) -> Result<(), WarrenError> {
        self.now = now;
        let sid = self.check_any(ctx, false)?;
        let failed = ctx.client.is_some() && expired;
        self.end_session(
            sid,
            failed,
            WarrenError::session_expired("the session was closed"),
        );
        Ok(())
    }

    /// Adds a session (keeping [`Master::leased`]: a sub-session never becomes a leased
    /// session or the other way round).
    pub(super) fn insert_session(&mut self, s: Session) {
        let id = s.rec.id;
        if s.rec.parent.is_none() {
            self.leased.insert(id);
        } else {
            self.leased.remove(&id);
        }
        self.sessions.insert(id, s);
    }

    /// Removes a session (and its entry in [`Master::leased`]).
    pub(super) fn remove_session(&mut self, sid: &SessionId) -> Option<Session> {
        self.leased.remove(sid);
        self.sessions.remove(sid)
    }

    pub(super) fn expire_session(&mut self, sid: SessionId) {
        tracing::info!(session = %short_id(&sid), "session expired");
        self.end_session(
            sid,
            true,
            WarrenError::session_expired("the session expired"),
        );
    }

    /// Ends a session: releases its locks (with lock-delay if it `failed`), closes its
    /// handles (deleting ephemeral nodes nobody else holds), stops it caching.
    pub(super) fn end_session(&mut self, sid: SessionId, failed: bool, why: WarrenError) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let ka = s.lease.take_held();
        let subs = std::mem::take(&mut s.subs);
        let parent = s.rec.parent;
        let secret = s.rec.secret;
        if let Some(t) = s.orphan_until.take() {
            self.orphans.remove(&(t, sid));
        }
        let handles: Vec<HandleKey> = s.handles.iter().copied().collect();
        if let Some(held) = ka {
            self.waiters.remove(&held.waiter);
            self.out
                .wakes
                .push((held.waiter, Wake::KeepAlive(Err(why.clone()))));
        }
        self.stop_caching(sid);
        for k in handles {
            self.close_handle(k, failed);
        }
        // Locks recorded by the previous master and never reclaimed through a handle.
        let restored = self
            .recovery
            .as_mut()
            .and_then(|r| r.restored_holds.remove(&sid))
            .unwrap_or_default();
        for (p, k) in restored {
            if self.drop_holder(&p, sid, k, failed) {
                self.grant_waiters(&p);
            }
        }
        self.failover_acknowledged(sid, None);
        self.remove_session(&sid);
        self.out.mutations.push(Mutation::DeleteSession(sid));
        // A proxy session's sub-sessions outlive it for the claim window.
        if !subs.is_empty() {
            tracing::info!(
                session = %short_id(&sid),
                clients = subs.len(),
                "proxy session ended; its client sessions wait to be claimed"
            );
        }
        for c in subs {
            self.make_orphan(c);
        }
        // An ended sub-session is remembered for a claim window.
        if let Some(p) = parent {
            if let Some(ps) = self.sessions.get_mut(&p) {
                ps.subs.remove(&sid);
            }
            let until = self.now + self.cfg.claim_window;
            self.tombstones.bury(sid, secret, until);
        }
    }

    /// Expires the sessions whose lease ran out (sub-sessions have none).
    pub(super) fn expire_lapsed_sessions(&mut self, now: Instant) {
        let expired: Vec<SessionId> = self
            .leased
            .iter()
            .filter(|id| self.sessions.get(*id).is_some_and(|s| now > s.lease.end))
            .copied()
            .collect();
        for sid in expired {
            self.expire_session(sid);
        }
    }
}
