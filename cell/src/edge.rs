//! Conversions between wire types (`warren_proto::pb`) and the master's domain types, at
//! the edge of the server. Input is never trusted: every conversion that can fail returns
//! the error table's `INVALID_ARGUMENT` naming the field.

use crate::core::{self, ChildChange, EventKind, SequencerView, StatView, Target};
use crate::store::{AclNames, LockMode, NodeKind};
use warren_proto::pb;
use warren_proto::WarrenError;

/// A 16-byte id or secret; `field` is the field's full name (`ctx.session_id`, …).
pub fn bytes16(b: &[u8], field: &str) -> Result<[u8; 16], WarrenError> {
    b.try_into().map_err(|_| {
        WarrenError::invalid_argument(format!("{field} must be 16 bytes, got {}", b.len()))
    })
}

/// The session part of a request, with the principal the transport authenticated for the
/// call being handled ([`warren_server::auth::caller`]; none on a plaintext connection).
pub fn ctx(c: Option<&pb::SessionContext>) -> Result<core::Ctx, WarrenError> {
    let c = c.ok_or_else(|| {
        WarrenError::invalid_argument("the request has no session context (field ctx)")
    })?;
    let client = if c.client_session.is_empty() {
        if !c.client_secret.is_empty() || !c.client_principal.is_empty() {
            return Err(WarrenError::invalid_argument(
                "ctx.client_secret and ctx.client_principal need ctx.client_session",
            ));
        }
        None
    } else {
        Some(core::ClientCtx {
            session: bytes16(&c.client_session, "ctx.client_session")?,
            secret: bytes16(&c.client_secret, "ctx.client_secret")?,
            principal: c.client_principal.clone(),
            proxy_dropped_copies: c.proxy_dropped_copies,
        })
    };
    Ok(core::Ctx {
        session: bytes16(&c.session_id, "ctx.session_id")?,
        secret: bytes16(&c.secret, "ctx.secret")?,
        epoch: c.epoch,
        client,
        authenticated: warren_server::auth::caller().map(|p| p.principal),
    })
}

/// Pairs a domain enum with its wire enum, variant for variant (the same names on both
/// sides), once for both directions: `$decode(raw)` reads a raw wire value — any other
/// value, `UNSPECIFIED` included, is `INVALID_ARGUMENT` naming the field and the values
/// allowed — and `pb::$wire::from(domain)` writes one.
macro_rules! wire_enum {
    ($(#[$doc:meta])* pub fn $decode:ident -> $domain:ident as pb::$wire:ident {
        $($variant:ident),+ $(,)?
    } else $what:literal is not $allowed:literal) => {
        $(#[$doc])*
        pub fn $decode(raw: i32) -> Result<$domain, WarrenError> {
            match pb::$wire::try_from(raw) {
                $(Ok(pb::$wire::$variant) => Ok($domain::$variant),)+
                _ => Err(WarrenError::invalid_argument(format!(
                    "{} {raw} is not {}",
                    $what, $allowed
                ))),
            }
        }

        impl From<$domain> for pb::$wire {
            fn from(d: $domain) -> Self {
                match d {
                    $($domain::$variant => pb::$wire::$variant,)+
                }
            }
        }
    };
}

wire_enum! {
    /// An Acquire's or a sequencer's lock mode.
    pub fn lock_mode -> LockMode as pb::LockMode { Exclusive, Shared }
    else "lock mode" is not "EXCLUSIVE (1) or SHARED (2)"
}

wire_enum! {
    /// The kind of node an Open creates.
    pub fn node_kind -> NodeKind as pb::NodeKind { File, Directory }
    else "create.kind" is not "FILE (1) or DIRECTORY (2)"
}

wire_enum! {
    /// Which part of a split directory an Open means.
    pub fn open_target -> Target as pb::OpenTarget { Node, Anchor, Entry }
    else "target" is not "NODE (0), ANCHOR (1) or ENTRY (2)"
}

pub fn acl_in(a: &pb::AclNames) -> AclNames {
    AclNames {
        read: a.read.clone(),
        write: a.write.clone(),
        change_acl: a.change_acl.clone(),
    }
}

pub fn acl_out(a: &AclNames) -> pb::AclNames {
    pb::AclNames {
        read: a.read.clone(),
        write: a.write.clone(),
        change_acl: a.change_acl.clone(),
    }
}

/// A node's stat as clients see it; `cell` is the cell holding the node (this cell).
pub fn stat(s: &StatView, cell: &str) -> pb::Stat {
    let m = &s.meta;
    pb::Stat {
        kind: pb::NodeKind::from(m.kind) as i32,
        instance: m.instance,
        content_generation: m.content_generation,
        lock_generation: m.lock_generation,
        acl_generation: m.acl_generation,
        checksum: m.checksum,
        acl: Some(acl_out(&m.acl)),
        ephemeral: m.ephemeral,
        child_count: s.child_count,
        length: s.length,
        cell: cell.to_string(),
    }
}

pub fn sequencer_out(s: &SequencerView) -> pb::Sequencer {
    pb::Sequencer {
        path: s.path.clone(),
        mode: pb::LockMode::from(s.mode) as i32,
        instance: s.instance,
        lock_generation: s.lock_generation,
    }
}

pub fn sequencer_in(s: Option<&pb::Sequencer>) -> Result<SequencerView, WarrenError> {
    let s = s.ok_or_else(|| WarrenError::invalid_argument("the request has no sequencer"))?;
    Ok(SequencerView {
        path: s.path.clone(),
        mode: lock_mode(s.mode)?,
        instance: s.instance,
        lock_generation: s.lock_generation,
    })
}

pub fn event(e: &core::Event) -> pb::Event {
    pb::Event {
        seq: e.seq,
        r#type: match e.kind {
            EventKind::ContentsModified => pb::EventType::ContentsModified,
            EventKind::ChildChanged => pb::EventType::ChildChanged,
            EventKind::MasterFailover => pb::EventType::MasterFailover,
            EventKind::HandleInvalid => pb::EventType::HandleInvalidEvent,
            EventKind::LockAcquired => pb::EventType::LockAcquired,
            EventKind::ConflictingLock => pb::EventType::ConflictingLock,
            EventKind::Invalidate => pb::EventType::Invalidate,
            EventKind::SessionClaimed => pb::EventType::SessionClaimed,
            EventKind::SlotMoved => pb::EventType::SlotMoved,
        } as i32,
        handle: e.handle.clone(),
        client_session: e.client.map(|c| c.to_vec()).unwrap_or_default(),
        path: e.path.clone(),
        // A moved node's new cell travels in `cell`, not `child`.
        child: if e.kind == EventKind::SlotMoved {
            String::new()
        } else {
            e.child.clone()
        },
        cell: if e.kind == EventKind::SlotMoved {
            e.child.clone()
        } else {
            String::new()
        },
        child_change: match e.change {
            ChildChange::None => pb::ChildChange::Unspecified,
            ChildChange::Added => pb::ChildChange::Added,
            ChildChange::Removed => pb::ChildChange::Removed,
            ChildChange::Modified => pb::ChildChange::Modified,
        } as i32,
    }
}

pub fn open_args(r: &pb::OpenRequest) -> Result<core::OpenArgs, WarrenError> {
    let create = match &r.create {
        None => None,
        Some(c) => Some(core::CreateArgs {
            kind: node_kind(c.kind)?,
            ephemeral: c.ephemeral,
            contents: c.initial_contents.clone(),
            acl: c.acl.as_ref().map(acl_in),
            exclusive: c.exclusive,
            instance: c.instance,
        }),
    };
    Ok(core::OpenArgs {
        path: r.path.clone(),
        intent: r.intent,
        events: r.events,
        lock_delay: std::time::Duration::from_millis(r.lock_delay_ms),
        create,
        read: r.read,
        target: open_target(r.target)?,
    })
}
