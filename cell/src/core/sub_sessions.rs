//! Client sub-sessions of proxy sessions (docs/design.md §10): registering them on `Open`,
//! `ClaimSession`, orphans waiting for the claim window, and tombstones of ended ones.

use super::{Caller, ChildChange, ClientCtx, Ctx, Event, EventKind, Master, Session};
use crate::store::{Mutation, SessionId, SessionRecord};
use tokio::time::Instant;
use warren_proto::WarrenError;
use warren_server::lease::short_id;

impl Master {
    /// The client sub-session `c` named by proxy session `proxy` (docs/design.md §10, docs/proxy.md),
    /// for `caller` (an authenticated proxy must forward the principal the client session
    /// was registered with).
    pub(super) fn client_session(
        &mut self,
        proxy: SessionId,
        c: &ClientCtx,
        register: bool,
        caller: &Caller,
    ) -> Result<SessionId, WarrenError> {
        if let Some(s) = self.sessions.get(&c.session) {
            let Some(parent) = s.rec.parent else {
                return Err(WarrenError::invalid_argument(format!(
                    "ctx.client_session {} names a session of this cell, not a client session",
                    short_id(&c.session)
                )));
            };
            if s.rec.secret != c.secret {
                return Err(WarrenError::permission_denied(format!(
                    "wrong client_secret for client session {}",
                    short_id(&c.session)
                )));
            }
            caller.may_forward(&c.session, &s.rec.principal, &c.principal)?;
            if parent != proxy && s.moved_in && s.orphan_until.is_some() {
                self.adopt_moved_orphan(c.session, proxy);
                return Ok(c.session);
            }
            if parent != proxy {
                return Err(WarrenError::permission_denied(format!(
                    "client session {} is held by another proxy session; ClaimSession first",
                    short_id(&c.session)
                )));
            }
            return Ok(c.session);
        }
        if self.tombstoned(&c.session).is_some() {
            return Err(WarrenError::session_expired(format!(
                "client session {} has ended at this cell",
                short_id(&c.session)
            )));
        }
        if !register {
            return Err(WarrenError::session_expired(format!(
                "client session {} is unknown at this cell (only Open registers one) or has ended",
                short_id(&c.session)
            )));
        }
        if c.principal.len() > 255 {
            return Err(WarrenError::invalid_argument(
                "ctx.client_principal is longer than 255 bytes",
            ));
        }
        let rec = SessionRecord {
            id: c.session,
            secret: c.secret,
            principal: c.principal.clone(),
            proxy: false,
            parent: Some(proxy),
            registered_epoch: self.meta.epoch,
            registered_handle: self.next_handle,
        };
        self.out.mutations.push(Mutation::PutSession(rec.clone()));
        self.insert_session(Session::new(rec, self.now));
        let p = self.sessions.get_mut(&proxy).expect("checked");
        p.subs.insert(c.session);
        p.deserted = false;
        Ok(c.session)
    }

    /// The secret of an ended sub-session still remembered (for one claim window).
    pub(super) fn tombstoned(&self, sid: &SessionId) -> Option<[u8; 16]> {
        self.tombstones.get(sid, self.now).copied()
    }

    /// `ClaimSession`: moves client session `client` (its handles, locks and ephemeral
    /// opens) to the calling proxy session. `Some(principal)`: the cell held state for it
    /// (now the caller's), registered with that principal; `None`: it never registered
    /// here (and nothing is registered by this).
    pub fn claim_session(
        &mut self,
        ctx: &Ctx,
        client: SessionId,
        client_secret: [u8; 16],
        client_principal: &str,
        only_from: Option<SessionId>,
        now: Instant,
    ) -> Result<Option<String>, WarrenError> {
        self.now = now;
        if ctx.client.is_some() {
            return Err(WarrenError::invalid_argument(
                "ClaimSession names the client session in its own client_session field; ctx.client_session must be empty",
            ));
        }
        // A session call: served without the partition map, as CreateSession and KeepAlive
        // are. A proxy claims its clients before its KeepAlives start, so a claim refused
        // while a new master waits for its map (cut off from the meta cell) cost the proxy
        // its session there (the simulation of the whole deployment, seed 1376).
        self.cfg
            .callers
            .judge(ctx.authenticated.as_deref(), "", Some("call ClaimSession"))?;
        let sid = self.check_session(ctx)?;
        if !self.sessions[&sid].rec.proxy {
            return Err(WarrenError::invalid_argument(format!(
                "ClaimSession is only for proxy sessions (CreateSession with proxy = true); session {} is not one",
                short_id(&sid)
            )));
        }
        if self.recovering() {
            return Err(WarrenError::failover_in_progress());
        }
        if client_principal.len() > 255 {
            return Err(WarrenError::invalid_argument(
                "client_principal is longer than 255 bytes",
            ));
        }
        let Some(s) = self.sessions.get(&client) else {
            return match self.tombstoned(&client) {
                Some(secret) if secret != client_secret => {
                    Err(WarrenError::permission_denied(format!(
                        "wrong client_secret for client session {}",
                        short_id(&client)
                    )))
                }
                Some(_) => Err(WarrenError::session_expired(format!(
                    "client session {} has ended at this cell",
                    short_id(&client)
                ))),
                None => {
                    tracing::debug!(
                        cell = %self.cfg.cell,
                        epoch = self.meta.epoch,
                        client = %short_id(&client),
                        "claim of a client session this cell does not know"
                    );
                    Ok(None)
                }
            };
        };
        let Some(old) = s.rec.parent else {
            return Err(WarrenError::invalid_argument(format!(
                "client_session {} names a session of this cell, not a client session",
                short_id(&client)
            )));
        };
        if s.rec.secret != client_secret {
            return Err(WarrenError::permission_denied(format!(
                "wrong client_secret for client session {}",
                short_id(&client)
            )));
        }
        if old == sid {
            return Ok(Some(s.rec.principal.clone()));
        }
        if only_from.is_some_and(|from| from != old) {
            return Err(WarrenError::permission_denied(format!(
                "client session {} is held by another proxy session; not claimed",
                short_id(&client)
            )));
        }
        let s = self.sessions.get_mut(&client).expect("present");
        if s.moved_in {
            // It came with a reshard's slot: what happened meanwhile goes to its claimer.
            s.moved_in = false;
            for e in std::mem::take(&mut s.held_events) {
                self.queue_event(sid, e);
            }
        }
        let s = self.sessions.get_mut(&client).expect("present");
        s.rec.parent = Some(sid);
        let rec = s.rec.clone();
        let principal = rec.principal.clone();
        if let Some(t) = s.orphan_until.take() {
            self.orphans.remove(&(t, client));
        }
        self.out.mutations.push(Mutation::PutSession(rec));
        if self
            .sessions
            .get_mut(&old)
            .is_some_and(|o| o.subs.remove(&client))
        {
            let claimed = Event {
                seq: 0,
                kind: EventKind::SessionClaimed,
                handle: Vec::new(),
                path: String::new(),
                child: String::new(),
                change: ChildChange::None,
                client: Some(client),
            };
            self.queue_event(old, claimed);
            self.maybe_deserted(old);
        }
        let claimer = self.sessions.get_mut(&sid).expect("checked");
        claimer.subs.insert(client);
        claimer.deserted = false;
        // Per client at debug: a dead proxy's clients are claimed by the thousand.
        tracing::debug!(
            client = %short_id(&client),
            from = %short_id(&old),
            to = %short_id(&sid),
            "client session claimed by another proxy session"
        );
        Ok(Some(principal))
    }

    /// A client sub-session that came with a reshard's slot, orphaned here (its proxy's
    /// session is at the source cell), joins the proxy session that calls for it.
    fn adopt_moved_orphan(&mut self, client: SessionId, proxy: SessionId) {
        let s = self.sessions.get_mut(&client).expect("present");
        s.rec.parent = Some(proxy);
        s.moved_in = false;
        let rec = s.rec.clone();
        let held = std::mem::take(&mut s.held_events);
        if let Some(t) = s.orphan_until.take() {
            self.orphans.remove(&(t, client));
        }
        self.out.mutations.push(Mutation::PutSession(rec));
        if let Some(p) = self.sessions.get_mut(&proxy) {
            p.subs.insert(client);
            p.deserted = false;
        }
        for e in held {
            self.queue_event(proxy, e);
        }
        tracing::info!(
            client = %short_id(&client),
            proxy = %short_id(&proxy),
            "a client session that moved here with a slot joined its proxy's session"
        );
    }

    /// A claim took a client sub-session away from proxy session `old`. If that was its
    /// last one and it holds nothing of its own, nobody can read through it here any more
    /// (a read through a proxy needs a handle this cell gave the client): it is deserted,
    /// and ended if a write waits for it and it does not acknowledge within
    /// [`super::caching::DESERTED_GRACE`] (docs/design.md §10, "A dead proxy").
    fn maybe_deserted(&mut self, old: SessionId) {
        let Some(o) = self.sessions.get_mut(&old) else {
            return;
        };
        if !o.subs.is_empty() || !o.handles.is_empty() {
            return;
        }
        o.deserted = true;
        if !o.pending_invalidations.is_empty() {
            let at = self.now + super::caching::DESERTED_GRACE;
            self.deserted_checks.insert((at, old));
        }
    }

    /// A proxy session ended: `sid` keeps its state for the claim window.
    pub(super) fn make_orphan(&mut self, sid: SessionId) {
        let until = self.now + self.cfg.claim_window;
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if let Some(old) = s.orphan_until.replace(until) {
            self.orphans.remove(&(old, sid));
        }
        self.orphans.insert((until, sid));
    }

    /// Orphans nobody claimed within the claim window end as failed sessions.
    pub(super) fn end_unclaimed_orphans(&mut self, now: Instant) {
        let mut ended = 0usize;
        while let Some(&(until, sid)) = self.orphans.first() {
            if until > now {
                break;
            }
            self.orphans.pop_first();
            tracing::debug!(
                session = %short_id(&sid),
                "client session not claimed within the claim window; it ends"
            );
            self.end_session(
                sid,
                true,
                WarrenError::session_expired("the client session was not claimed in time"),
            );
            ended += 1;
        }
        // One line per tick, not per session: a dead proxy's orphans end by the thousand.
        if ended > 0 {
            tracing::info!(
                ended,
                "client sessions not claimed within the claim window ended"
            );
        }
    }

    /// Forgets ended sub-sessions remembered long enough.
    pub(super) fn forget_old_tombstones(&mut self, now: Instant) {
        self.tombstones.sweep(now);
    }
}
