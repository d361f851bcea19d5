//! A read-only view of the master's session table and lock table for operators: every
//! session with its principal, its proxy, its lease end, and the handles and locks it holds;
//! every lock with its holders, its waiters and its generation. The admin endpoint serves it
//! as `/debug/sessions` (docs/ctl.md, "Sessions and locks"); `warren ctl session list` and
//! `warren ctl lock list` print it. Nothing here changes the master's state.

use super::locks::mode_name;
use super::Master;
use crate::store::SessionId;
use serde::Serialize;
use std::collections::BTreeMap;
use tokio::time::Instant;

/// One session as `/debug/sessions` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SessionView {
    /// The session id, 32 hex digits.
    pub id: String,
    /// The principal the session was created with (empty: anonymous).
    pub principal: String,
    /// `client` (a session of its own), `proxy` (a proxy's upstream session) or `sub` (a
    /// proxy's client session, living as long as its proxy session).
    pub kind: &'static str,
    /// A `sub` session: the id of the proxy session it belongs to (empty otherwise).
    pub proxy: String,
    /// The principal of that proxy session (empty when unknown or anonymous).
    pub proxy_principal: String,
    /// Milliseconds until the lease ends here (a `sub` session: its proxy session's lease;
    /// 0 once it has ended and the session waits to be expired or claimed).
    pub lease_remaining_ms: u64,
    /// A `sub` session whose proxy session ended: it waits to be claimed.
    pub orphan: bool,
    /// Paths of the handles it has open, sorted (a path once per handle).
    pub handles: Vec<String>,
    /// The locks it holds.
    pub locks: Vec<HeldLockView>,
}

/// A lock a session holds.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct HeldLockView {
    pub path: String,
    /// `exclusive` or `shared`.
    pub mode: &'static str,
}

/// One node's lock as `/debug/sessions` shows it: only nodes with a holder or a waiter.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LockView {
    pub path: String,
    /// Incremented each time the lock is acquired (a sequencer's generation).
    pub lock_generation: u64,
    pub holders: Vec<LockPartyView>,
    /// In the order they will be granted.
    pub waiters: Vec<LockPartyView>,
}

/// A holder of, or a waiter for, a lock.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LockPartyView {
    /// The session id, 32 hex digits.
    pub session: String,
    /// That session's principal.
    pub principal: String,
    /// `exclusive` or `shared`.
    pub mode: &'static str,
}

/// The whole of `/debug/sessions`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SessionTableView {
    pub cell: String,
    pub epoch: u64,
    /// Sorted by principal, then id.
    pub sessions: Vec<SessionView>,
    /// Sorted by path.
    pub locks: Vec<LockView>,
}

fn hex(id: &SessionId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Master {
    /// The session and lock tables as of `now` (see the module docs).
    pub fn session_table(&self, now: Instant) -> SessionTableView {
        let principal = |sid: &SessionId| {
            self.sessions
                .get(sid)
                .map(|s| s.rec.principal.clone())
                .unwrap_or_default()
        };
        let mut handles: BTreeMap<SessionId, Vec<String>> = BTreeMap::new();
        for h in self.handles.values() {
            handles.entry(h.session).or_default().push(h.path.clone());
        }
        let mut held: BTreeMap<SessionId, Vec<HeldLockView>> = BTreeMap::new();
        let mut locks = Vec::new();
        for (path, node) in &self.nodes {
            for h in &node.rec.holders {
                held.entry(h.session).or_default().push(HeldLockView {
                    path: path.clone(),
                    mode: mode_name(h.mode),
                });
            }
            if node.rec.holders.is_empty() && node.lock_waiters.is_empty() {
                continue;
            }
            let party = |session: &SessionId, mode| LockPartyView {
                session: hex(session),
                principal: principal(session),
                mode: mode_name(mode),
            };
            locks.push(LockView {
                path: path.clone(),
                lock_generation: node.rec.meta.lock_generation,
                holders: node
                    .rec
                    .holders
                    .iter()
                    .map(|h| party(&h.session, h.mode))
                    .collect(),
                waiters: node
                    .lock_waiters
                    .iter()
                    .map(|w| party(&w.session, w.mode))
                    .collect(),
            });
        }
        locks.sort_by(|a, b| a.path.cmp(&b.path));
        let remaining = |end: Instant| end.saturating_duration_since(now).as_millis() as u64;
        let mut sessions: Vec<SessionView> = self
            .sessions
            .iter()
            .map(|(sid, s)| {
                let parent = s
                    .rec
                    .parent
                    .and_then(|p| self.sessions.get(&p).map(|ps| (p, ps)));
                let (kind, proxy, proxy_principal, lease_end) = match (&s.rec.parent, parent) {
                    (Some(_), Some((p, ps))) => {
                        ("sub", hex(&p), ps.rec.principal.clone(), ps.lease.end)
                    }
                    (Some(p), None) => ("sub", hex(p), String::new(), now),
                    (None, _) if s.rec.proxy => {
                        ("proxy", String::new(), String::new(), s.lease.end)
                    }
                    (None, _) => ("client", String::new(), String::new(), s.lease.end),
                };
                let mut hs = handles.remove(sid).unwrap_or_default();
                hs.sort();
                let mut ls = held.remove(sid).unwrap_or_default();
                ls.sort_by(|a, b| a.path.cmp(&b.path));
                SessionView {
                    id: hex(sid),
                    principal: s.rec.principal.clone(),
                    kind,
                    proxy,
                    proxy_principal,
                    lease_remaining_ms: remaining(lease_end),
                    orphan: s.orphan_until.is_some(),
                    handles: hs,
                    locks: ls,
                }
            })
            .collect();
        sessions.sort_by(|a, b| (&a.principal, &a.id).cmp(&(&b.principal, &b.id)));
        SessionTableView {
            cell: self.cfg.cell.clone(),
            epoch: self.meta.epoch,
            sessions,
            locks,
        }
    }
}
