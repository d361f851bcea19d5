//! `Open`: validating its arguments, opening an existing node or creating one, and minting
//! the handle token.

use super::path;
use super::{
    acl::check_acl_names, intent, mask, AnchorJob, Ctx, Handle, Master, Reply, StatView,
    CELL_PRINCIPAL,
};
use crate::store::{AclNames, NodeKind, NodeRecord, PendingAnchor};
use std::time::Duration;
use tokio::time::Instant;
use warren_proto::pb::HandleBody;
use warren_proto::WarrenError;

#[derive(Clone, Debug)]
pub struct CreateArgs {
    pub kind: NodeKind,
    pub ephemeral: bool,
    pub contents: Vec<u8>,
    /// `None`: inherit the parent's ACL names.
    pub acl: Option<AclNames>,
    pub exclusive: bool,
    /// Target `ANCHOR` only: the instance of the directory's entry, which the anchor takes.
    pub instance: u64,
}

/// Which part of a directory split over two cells an `Open` means (`OpenRequest.target`,
/// docs/partitioning.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// The node, routed by the slot of its parent; a directory whose child anchor is in
    /// another cell answers `WRONG_CELL{directory}`.
    #[default]
    Node,
    /// The child anchor of the directory, routed by its own slot.
    Anchor,
    /// The entry of the directory in its parent's cell, never redirected (cells only).
    Entry,
}

#[derive(Clone, Debug)]
pub struct OpenArgs {
    pub path: String,
    pub intent: u32,
    pub events: u32,
    pub lock_delay: Duration,
    pub create: Option<CreateArgs>,
    pub read: bool,
    pub target: Target,
}

#[derive(Clone, Debug)]
pub struct OpenOk {
    pub handle: Vec<u8>,
    pub stat: StatView,
    pub contents: Option<Vec<u8>>,
    pub cacheable: bool,
    pub created: bool,
}

impl Master {
    /// `Open`: validates, checks where the node lives and the ACLs, creates the node if
    /// asked (after invalidating cached absence and the parent's listing), and returns a
    /// new handle. With a partition map it also splits directories over two cells
    /// (docs/partitioning.md): see [`Target`] and [`CallNotes::anchor`].
    pub fn open(
        &mut self,
        ctx: &Ctx,
        a: &OpenArgs,
        now: Instant,
    ) -> Result<Reply<OpenOk>, WarrenError> {
        self.now = now;
        self.anchor_job = None;
        self.acl_needed.borrow_mut().clear();
        let sid = self.check_as(ctx, true)?;
        path::validate(&a.path, &self.cfg.deployment)?;
        if a.intent & !intent::ALL != 0 {
            return Err(WarrenError::invalid_argument(format!(
                "intent bits {:#x} are not defined",
                a.intent
            )));
        }
        if a.events & !mask::ALL != 0 {
            return Err(WarrenError::invalid_argument(format!(
                "event mask bits {:#x} are not defined",
                a.events
            )));
        }
        if a.lock_delay > self.cfg.max_lock_delay {
            return Err(WarrenError::invalid_argument(format!(
                "lock-delay {:?} is longer than the {:?} limit",
                a.lock_delay, self.cfg.max_lock_delay
            )));
        }
        let principal = self.sessions[&sid].rec.principal.clone();
        let is_cell = principal == CELL_PRINCIPAL;
        match (a.target, &a.create) {
            (Target::Entry, _) if !is_cell => {
                return Err(WarrenError::permission_denied(format!(
                    "Open with target ENTRY is for cells only (principal {CELL_PRINCIPAL:?}); open {} with target NODE",
                    a.path
                )))
            }
            (Target::Entry, Some(_)) => {
                return Err(WarrenError::invalid_argument(
                    "Open with target ENTRY cannot create; entries are created with target NODE",
                ))
            }
            (Target::Anchor, Some(_)) if !is_cell => {
                return Err(WarrenError::permission_denied(format!(
                    "only cells (principal {CELL_PRINCIPAL:?}) create child anchors; open {} with target ANCHOR and no create, or with target NODE to create it",
                    a.path
                )))
            }
            (Target::Anchor, Some(c)) if c.kind != NodeKind::Directory => {
                return Err(WarrenError::invalid_argument(
                    "a child anchor is a directory: create.kind must be DIRECTORY",
                ))
            }
            (Target::Anchor, Some(c)) if c.instance == 0 => {
                return Err(WarrenError::invalid_argument(
                    "creating a child anchor needs create.instance: the instance of the directory's entry",
                ))
            }
            (Target::Node, Some(c)) if c.instance != 0 => {
                return Err(WarrenError::invalid_argument(
                    "create.instance is only for target ANCHOR (cells creating a child anchor)",
                ))
            }
            _ => {}
        }
        self.serve_check(&a.path, a.target == Target::Anchor)?;
        let mut created = false;
        if let Some(n) = self.nodes.get(&a.path) {
            if a.target == Target::Anchor && n.rec.kind != NodeKind::Directory {
                return Err(WarrenError::invalid_argument(format!(
                    "{} is a file; only directories have child anchors (open it with target NODE)",
                    a.path
                )));
            }
            match &a.create {
                Some(c) if a.target == Target::Anchor && c.instance != n.rec.instance => {
                    return Err(WarrenError::already_exists(format!(
                        "{} exists here as instance {}, not as the anchor of instance {} asked for",
                        a.path, n.rec.instance, c.instance
                    )));
                }
                Some(_) if a.target == Target::Anchor => {}
                Some(c) => {
                    if c.exclusive {
                        return Err(WarrenError::already_exists(format!(
                            "{} already exists",
                            a.path
                        )));
                    }
                    if c.kind != n.rec.kind {
                        let what = if n.rec.kind == NodeKind::File {
                            "file"
                        } else {
                            "directory"
                        };
                        return Err(WarrenError::already_exists(format!(
                            "{} already exists as a {what}",
                            a.path
                        )));
                    }
                }
                None => {}
            }
            if a.target == Target::Node && n.rec.kind == NodeKind::Directory {
                if let Some(owner) = self.owner_elsewhere(&a.path, true)? {
                    if let Some(pending) = &n.rec.anchor_pending {
                        self.anchor_job = Some(AnchorJob {
                            path: a.path.clone(),
                            instance: n.rec.instance,
                            acl: n.rec.acl.clone(),
                            ephemeral: pending.ephemeral,
                            owner: owner.clone(),
                            created: false,
                        });
                        return Err(self.anchor_pending_error(&a.path, &owner));
                    }
                    return Err(WarrenError::directory_elsewhere(
                        self.map_epoch(),
                        owner,
                        &a.path,
                    ));
                }
            }
            if a.target != Target::Entry {
                self.check_open_acl(&principal, &n.rec.acl, a.intent, &a.path)?;
            }
            self.acls_complete()?;
        } else {
            let Some(c) = &a.create else {
                let cacheable = self.register_cacher(sid, &a.path);
                let mut e = WarrenError::not_found(format!("{} does not exist", a.path));
                e.cacheable = cacheable;
                return Err(e);
            };
            if a.target == Target::Anchor {
                if let Some(w) = self.create_anchor(sid, a, c)? {
                    return Ok(Reply::Wait(w));
                }
            } else {
                let parent = path::parent(&a.path)
                    .ok_or_else(|| {
                        WarrenError::invalid_argument("the deployment root cannot be created")
                    })?
                    .to_string();
                let Some(pn) = self.nodes.get(&parent) else {
                    return Err(WarrenError::not_found(format!(
                        "cannot create {}: parent directory {parent} does not exist",
                        a.path
                    )));
                };
                if pn.rec.kind != NodeKind::Directory {
                    return Err(WarrenError::invalid_argument(format!(
                        "cannot create {}: {parent} is a file, not a directory",
                        a.path
                    )));
                }
                match c.kind {
                    NodeKind::File if c.contents.len() > self.cfg.max_file_size => {
                        return Err(WarrenError::too_large(format!(
                            "initial contents of {} bytes exceed the {}-byte file limit",
                            c.contents.len(),
                            self.cfg.max_file_size
                        )))
                    }
                    NodeKind::Directory if !c.contents.is_empty() => {
                        return Err(WarrenError::invalid_argument(
                            "a directory cannot have contents",
                        ));
                    }
                    _ => {}
                }
                let acl = c.acl.clone().unwrap_or_else(|| pn.rec.acl.clone());
                check_acl_names(&acl)?;
                self.acl_allows(&principal, &pn.rec.acl.write, "create a node in", &parent)?;
                self.check_open_acl(&principal, &acl, a.intent, &a.path)?;
                self.acls_complete()?;
                // A directory whose own slot is in another cell: its entry here, its child
                // anchor there (created by the server before the client is redirected).
                let elsewhere = if c.kind == NodeKind::Directory {
                    self.owner_elsewhere(&a.path, true)?
                } else {
                    None
                };
                if let Some(w) = self.barrier(sid, &[&a.path, &parent]) {
                    return Ok(Reply::Wait(w));
                }
                self.start_invalidation(&a.path, Some(sid), None);
                if let Some(owner) = elsewhere {
                    let instance = self.meta.next_instance;
                    let rec = NodeRecord {
                        path: a.path.clone(),
                        kind: NodeKind::Directory,
                        instance,
                        content_generation: 0,
                        lock_generation: 0,
                        acl_generation: 0,
                        checksum: 0,
                        acl: acl.clone(),
                        // The entry is never ephemeral; its anchor may be.
                        ephemeral: false,
                        holders: Vec::new(),
                        anchor: false,
                        anchor_pending: Some(PendingAnchor {
                            ephemeral: c.ephemeral,
                        }),
                    };
                    self.insert_node(rec, Vec::new());
                    self.anchor_job = Some(AnchorJob {
                        path: a.path.clone(),
                        instance,
                        acl,
                        ephemeral: c.ephemeral,
                        owner: owner.clone(),
                        created: true,
                    });
                    return Err(self.anchor_pending_error(&a.path, &owner));
                }
                self.create_node(&a.path, c.kind, c.ephemeral, c.contents.clone(), acl);
            }
            created = true;
        }
        let (instance, kind) = {
            let n = &self.nodes[&a.path];
            (n.rec.instance, n.rec.kind)
        };
        let number = self.next_handle;
        self.next_handle += 1;
        let k = (self.meta.epoch, number);
        let token = self.key.mint(&HandleBody {
            cell: self.cfg.cell.clone(),
            epoch: self.meta.epoch,
            number,
            path: a.path.clone(),
            instance,
            intent: a.intent,
            events: a.events,
            lock_delay_ms: a.lock_delay.as_millis() as u64,
            session_id: sid.to_vec(),
        });
        self.handles.insert(
            k,
            Handle {
                session: sid,
                path: a.path.clone(),
                instance,
                intent: a.intent,
                events: a.events,
                lock_delay_ms: a.lock_delay.as_millis() as u64,
                token: token.clone(),
                sequencer: None,
                entry: a.target == Target::Entry,
            },
        );
        self.nodes
            .get_mut(&a.path)
            .expect("exists")
            .handles
            .insert(k);
        self.sessions.get_mut(&sid).expect("live").handles.insert(k);
        let cacheable = self.register_cacher(sid, &a.path);
        let contents =
            (a.read && kind == NodeKind::File).then(|| self.nodes[&a.path].contents.clone());
        Ok(Reply::Done(OpenOk {
            handle: token,
            stat: self.stat_of(&a.path).expect("exists"),
            contents,
            cacheable,
            created,
        }))
    }
}
