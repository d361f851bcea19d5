//! Events: the kinds a session can be told of, and queueing them on a session (a
//! sub-session's on its proxy session, tagged) where its next KeepAlive reply delivers
//! them.

use super::{HandleKey, Master};
use crate::store::SessionId;

/// Bits of `Open.events`.
pub mod mask {
    pub const CONTENTS_MODIFIED: u32 = 1;
    pub const CHILD_CHANGED: u32 = 2;
    pub const MASTER_FAILOVER: u32 = 4;
    pub const HANDLE_INVALID: u32 = 8;
    pub const LOCK_ACQUIRED: u32 = 16;
    pub const CONFLICTING_LOCK: u32 = 32;
    pub const ALL: u32 = 63;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    ContentsModified,
    ChildChanged,
    MasterFailover,
    HandleInvalid,
    LockAcquired,
    ConflictingLock,
    /// Drop any cached copy of `path`, then acknowledge.
    Invalidate,
    /// To a proxy session: the client session the event is tagged with was claimed by
    /// another proxy session.
    SessionClaimed,
    /// A reshard moved the node of the event's handle to the cell named in `child`
    /// (docs/resharding.md).
    SlotMoved,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildChange {
    None,
    Added,
    Removed,
    Modified,
}

/// An event queued for a session, delivered in KeepAlive replies until acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub kind: EventKind,
    /// Token of the handle the event is for (empty for session-wide events).
    pub handle: Vec<u8>,
    pub path: String,
    pub child: String,
    pub change: ChildChange,
    /// On a proxy session's queue: the client sub-session the event is for (`None`: for
    /// the proxy session itself).
    pub client: Option<SessionId>,
}

/// The most events a moved-in client session keeps for its proxy.
const HELD_EVENTS_LIMIT: usize = 10_000;

impl Master {
    /// Queues an event for session `sid`; a sub-session's goes on its proxy session's
    /// queue, tagged with its id (and nowhere while it is an orphan). Returns the seq it
    /// got on the queue it went to.
    pub(super) fn push_event(
        &mut self,
        sid: SessionId,
        kind: EventKind,
        handle: Vec<u8>,
        path: &str,
        child: &str,
        change: ChildChange,
    ) -> Option<u64> {
        let s = self.sessions.get(&sid)?;
        let mut event = Event {
            seq: 0,
            kind,
            handle,
            path: path.to_string(),
            child: child.to_string(),
            change,
            client: s.rec.parent.map(|_| sid),
        };
        let target = match s.rec.parent {
            None => sid,
            // A client session that moved here with a slot keeps its events until its proxy
            // takes it on (docs/resharding.md); other orphans have nobody to deliver to.
            Some(_) if s.orphan_until.is_some() => {
                if s.moved_in && s.held_events.len() < HELD_EVENTS_LIMIT {
                    event.client = Some(sid);
                    self.sessions.get_mut(&sid)?.held_events.push(event);
                }
                return None;
            }
            Some(p) => p,
        };
        self.queue_event(target, event)
    }

    /// Appends `event` to `target`'s own queue (under the queue's next seq, which it
    /// returns) and answers `target`'s held KeepAlive.
    pub(super) fn queue_event(&mut self, target: SessionId, event: Event) -> Option<u64> {
        let s = self.sessions.get_mut(&target)?;
        let seq = s.lease.push(|seq| Event { seq, ..event });
        if let Some(held) = s.lease.take_held() {
            self.answer_keepalive(target, held);
        }
        Some(seq)
    }

    /// Sends a handle event to every handle open on `path` whose mask has `bit`, except `skip`.
    pub(super) fn notify_handles(
        &mut self,
        path: &str,
        bit: u32,
        kind: EventKind,
        child: &str,
        change: ChildChange,
        skip: Option<HandleKey>,
    ) {
        let Some(n) = self.nodes.get(path) else {
            return;
        };
        let targets: Vec<(SessionId, Vec<u8>)> = n
            .handles
            .iter()
            .filter(|k| Some(**k) != skip)
            .filter_map(|k| self.handles.get(k))
            .filter(|h| h.events & bit != 0)
            .map(|h| (h.session, h.token.clone()))
            .collect();
        for (sid, tok) in targets {
            self.push_event(sid, kind, tok, path, child, change);
        }
    }
}
