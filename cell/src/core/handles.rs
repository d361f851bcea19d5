//! Handles: resolving a handle token to a live handle (recreating one from an earlier
//! epoch after a failover, docs/design.md §9 step 8), the intent a call needs, and `Close`.

use super::reshard::foreign_number;
use super::token::TokenKey;
use super::{locks::mode_name, Ctx, HandleKey, Master, Node, SequencerView, WaiterId, Wake};
use crate::store::{NodeKind, SessionId};
use tokio::time::Instant;
use warren_proto::pb::HandleBody;
use warren_proto::WarrenError;
use warren_server::lease::short_id;

/// Bits of `Open.intent`.
pub mod intent {
    pub const READ: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const CHANGE_ACL: u32 = 4;
    pub const ALL: u32 = 7;
}

pub(super) struct Handle {
    pub(super) session: SessionId,
    pub(super) path: String,
    pub(super) instance: u64,
    pub(super) intent: u32,
    pub(super) events: u32,
    pub(super) lock_delay_ms: u64,
    pub(super) token: Vec<u8>,
    pub(super) sequencer: Option<SequencerView>,
    /// Opened with target `ENTRY` (a cell unlinking an entry): no ACL check on `Delete`.
    pub(super) entry: bool,
}

/// The key of the handle a token names here: its epoch and number, the number marked
/// foreign for a token another cell minted ([`foreign_number`]).
pub(super) fn handle_key(body: &HandleBody, foreign: bool) -> HandleKey {
    if foreign {
        (body.epoch, foreign_number(&body.cell, body.number))
    } else {
        (body.epoch, body.number)
    }
}

impl Master {
    /// Resolves a handle token for `sid`, authenticated as `body` (`foreign`: minted by a
    /// cell this one received the node from): recreates a handle from an earlier epoch on
    /// first use (docs/design.md §9 step 8), checks that its node still exists and that a
    /// sequencer set on it is still current.
    fn resolve(
        &mut self,
        sid: SessionId,
        token: &[u8],
        body: HandleBody,
        foreign: bool,
    ) -> Result<HandleKey, WarrenError> {
        if body.session_id.as_slice() != sid.as_slice() {
            return Err(WarrenError::handle_invalid(
                "the handle belongs to another session",
            ));
        }
        let k = handle_key(&body, foreign);
        if !self.handles.contains_key(&k) {
            // A handle minted here in this epoch is never recreated; one from an earlier
            // epoch, or minted by a cell this one received the node from, is (once).
            let current = !foreign && body.epoch >= self.meta.epoch;
            if current || self.closed_old_handles.contains(&k) {
                return Err(WarrenError::handle_invalid(format!(
                    "the handle on {} is closed",
                    body.path
                )));
            }
            let lost = self
                .meta
                .lost_epochs
                .iter()
                .find(|r| (r.first..=r.last).contains(&body.epoch));
            if let (false, Some(r)) = (foreign, lost) {
                return Err(WarrenError::handle_invalid(format!(
                    "the handle on {} was opened in epoch {}, after the backup this cell was restored from (epochs {}-{} were lost with the cell, docs/backup.md); open the node again",
                    body.path, body.epoch, r.first, r.last
                )));
            }
            self.recreate_handle(sid, k, &body, token, foreign)?;
        }
        let h = &self.handles[&k];
        if self
            .nodes
            .get(&h.path)
            .is_none_or(|n| n.rec.meta.instance != h.instance)
        {
            return Err(WarrenError::handle_invalid(format!(
                "{} was deleted after this handle was opened",
                h.path
            )));
        }
        if let Some(seq) = &h.sequencer {
            if !self.sequencer_current(seq) {
                return Err(WarrenError::generation_mismatch(format!(
                    "the sequencer set on this handle ({} {} lock generation {}) is no longer current",
                    seq.path,
                    mode_name(seq.mode),
                    seq.lock_generation
                )));
            }
        }
        Ok(k)
    }

    pub(super) fn recreate_handle(
        &mut self,
        sid: SessionId,
        k: HandleKey,
        body: &HandleBody,
        token: &[u8],
        foreign: bool,
    ) -> Result<(), WarrenError> {
        if let Some(s) = self.sessions.get(&sid).filter(|_| !foreign) {
            if k < (s.rec.registered_epoch, s.rec.registered_handle) {
                return Err(WarrenError::handle_invalid(format!(
                    "the handle on {} was opened before client session {} was registered again; it is not recreated",
                    body.path,
                    short_id(&sid)
                )));
            }
        }
        let Some(n) = self.nodes.get_mut(&body.path) else {
            return Err(WarrenError::handle_invalid(format!(
                "{} no longer exists",
                body.path
            )));
        };
        if n.rec.meta.instance != body.instance {
            return Err(WarrenError::handle_invalid(format!(
                "{} was deleted and recreated since this handle was opened",
                body.path
            )));
        }
        n.handles.insert(k);
        if let Some(r) = self.recovery.as_mut() {
            r.unclaimed_ephemeral.remove(&body.path);
        }
        self.handles.insert(
            k,
            Handle {
                session: sid,
                path: body.path.clone(),
                instance: body.instance,
                intent: body.intent,
                events: body.events,
                lock_delay_ms: body.lock_delay_ms,
                token: token.to_vec(),
                sequencer: None,
                entry: false,
            },
        );
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.handles.insert(k);
        }
        Ok(())
    }

    /// Decodes and authenticates a handle token: minted here (`false`), or by a cell this
    /// one received slots from (`true`, docs/resharding.md).
    pub(super) fn verify_token(&self, token: &[u8]) -> Result<(HandleBody, bool), WarrenError> {
        // Only a cell that received slots has foreign keys; the rest skip the extra decode.
        let claimed = (!self.meta.foreign_keys.is_empty())
            .then(|| TokenKey::claimed_cell(token))
            .flatten();
        if let Some(cell) = claimed.filter(|c| *c != self.cfg.cell) {
            return match self.meta.foreign_keys.get(&cell) {
                Some(key) => Ok((TokenKey::new(*key).verify(token)?, true)),
                None => Err(WarrenError::handle_invalid(format!(
                    "the handle was made by cell {cell:?}; this is cell {:?}",
                    self.cfg.cell
                ))),
            };
        }
        let body = self.key.verify(token)?;
        if body.cell != self.cfg.cell {
            return Err(WarrenError::handle_invalid(format!(
                "the handle was made by cell {:?}; this is cell {:?}",
                body.cell, self.cfg.cell
            )));
        }
        Ok((body, false))
    }

    /// A call on a handle whose node is not here (it moved in a reshard, and this cell
    /// dropped its copy) is `WRONG_CELL` naming where it went, so the router follows.
    fn moved_node_check(&self, body: &HandleBody) -> Result<(), WarrenError> {
        if self.map.is_none() {
            return Ok(());
        }
        if self.nodes.contains_key(&body.path) {
            return Ok(());
        }
        if let Some(h) = self.handed_off_for(&body.path, false) {
            return Err(WarrenError::wrong_cell(h.map_epoch, h.to.clone()));
        }
        match self.owner_elsewhere(&body.path, false)? {
            Some(owner) => Err(WarrenError::wrong_cell(self.map_epoch(), owner)),
            None => Ok(()),
        }
    }

    /// The common start of every call on a handle: time, session, handle, its path.
    pub(super) fn on_handle(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        now: Instant,
    ) -> Result<(SessionId, HandleKey, String), WarrenError> {
        self.now = now;
        // The token is authenticated once. A handle minted by a cell this one received the
        // node from registers the proxy's client session here, as the Open that made it did
        // there; the session is checked before the handle.
        let verified = self.verify_token(token);
        let foreign = matches!(verified, Ok((_, true)));
        let sid = self.check_as(ctx, foreign)?;
        let (body, foreign) = verified?;
        self.moved_node_check(&body)?;
        let k = self.resolve(sid, token, body, foreign)?;
        let p = self.handles[&k].path.clone();
        self.node_check(&p)?;
        Ok((sid, k, p))
    }

    /// The node `p` a call's handle is on, which the call needs to be of `kind`;
    /// otherwise the call fails saying "`p` `otherwise`".
    pub(super) fn need_kind(
        &self,
        p: &str,
        kind: NodeKind,
        otherwise: &str,
    ) -> Result<&Node, WarrenError> {
        let n = &self.nodes[p];
        if n.rec.meta.kind != kind {
            return Err(WarrenError::invalid_argument(format!("{p} {otherwise}")));
        }
        Ok(n)
    }

    pub(super) fn need_intent(
        &self,
        k: HandleKey,
        bit: u32,
        what: &str,
    ) -> Result<(), WarrenError> {
        let h = &self.handles[&k];
        if h.intent & bit == 0 {
            let name = match bit {
                intent::READ => "read",
                intent::WRITE => "write",
                _ => "change-ACL",
            };
            return Err(WarrenError::permission_denied(format!(
                "{what} needs a handle opened with {name} intent; {} was opened without it",
                h.path
            )));
        }
        Ok(())
    }

    /// `Close`: never fails. Releases a lock the handle holds (no lock-delay: this is a
    /// clean release) and deletes an ephemeral node nobody else holds open.
    ///
    /// The only errors are the retryable ones (`STALE_EPOCH`, `FAILOVER_IN_PROGRESS`): the
    /// close must then be sent again, not forgotten.
    pub fn close(&mut self, ctx: &Ctx, token: &[u8], now: Instant) -> Result<(), WarrenError> {
        self.now = now;
        let sid = match self.check(ctx) {
            Ok(sid) => sid,
            Err(e) if e.is_retryable() => return Err(e),
            Err(_) => return Ok(()),
        };
        let Ok((body, foreign)) = self.verify_token(token) else {
            return Ok(());
        };
        if body.session_id.as_slice() != sid.as_slice() {
            return Ok(());
        }
        let k = handle_key(&body, foreign);
        if self.handles.contains_key(&k) {
            self.close_handle(k, false);
        } else if (foreign || body.epoch < self.meta.epoch) && !self.closed_old_handles.contains(&k)
        {
            // Closed without being used since the failover: recreate it so that closing it
            // has its usual effects (its lock released, its ephemeral node deleted), and
            // remember it so a replay cannot recreate it again.
            if self.recreate_handle(sid, k, &body, token, foreign).is_ok() {
                self.close_handle(k, false);
            }
            self.closed_old_handles.insert(k);
        }
        Ok(())
    }

    pub(super) fn close_handle(&mut self, k: HandleKey, failed: bool) {
        let Some(h) = self.handles.remove(&k) else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(&h.session) {
            s.handles.remove(&k);
        }
        if k.0 < self.meta.epoch {
            self.closed_old_handles.insert(k);
        }
        let live = self
            .nodes
            .get(&h.path)
            .is_some_and(|n| n.rec.meta.instance == h.instance);
        if !live {
            return;
        }
        let moved = self.moved_away(&h.path);
        let n = self.nodes.get_mut(&h.path).expect("live");
        n.handles.remove(&k);
        if moved {
            // The node lives at another cell now; this copy is dead.
            return;
        }
        let waiting: Vec<WaiterId> = n
            .lock_waiters
            .iter()
            .filter(|w| w.handle == k)
            .map(|w| w.id)
            .collect();
        n.lock_waiters.retain(|w| w.handle != k);
        for w in waiting {
            if self.waiters.remove(&w).is_some() {
                self.out.wakes.push((
                    w,
                    Wake::Acquire(Err(WarrenError::handle_invalid(
                        "the handle was closed while waiting",
                    ))),
                ));
            }
        }
        self.drop_holder(&h.path, h.session, k, failed);
        self.grant_waiters(&h.path);
        self.maybe_delete_ephemeral(&h.path);
    }
}
