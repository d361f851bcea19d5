//! `Open`: validating its arguments, opening an existing node or creating one, and minting
//! the handle token.

use super::path;
use super::{
    acl::check_acl_names, intent, mask, nodes::fresh_record, AnchorJob, Ctx, Handle, Master, Reply,
    StatView, WaiterId, CELL_PRINCIPAL,
};
use crate::store::{AclNames, NodeKind, NodeRecord, PendingAnchor, SessionId};
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
    /// (docs/partitioning.md): see [`Target`] and [`super::CallNotes::anchor`].
    pub fn open(
        &mut self,
        ctx: &Ctx,
        a: &OpenArgs,
        now: Instant,
    ) -> Result<Reply<OpenOk>, WarrenError> {
        self.now = now;
        self.clear_notes();
        let sid = self.check_as(ctx, true)?;
        let principal = self.sessions[&sid].rec.principal.clone();
        self.check_open_args(a, principal == CELL_PRINCIPAL)?;
        self.serve_check(&a.path, a.target == Target::Anchor)?;
        let created = if self.nodes.contains_key(&a.path) {
            self.open_existing(a, &principal)?;
            false
        } else {
            let Some(c) = &a.create else {
                let cacheable = self.register_cacher(sid, &a.path);
                let mut e = WarrenError::not_found(format!("{} does not exist", a.path));
                e.cacheable = cacheable;
                return Err(e);
            };
            if self.is_own_map_file(&a.path) {
                self.check_map_create(&principal, c.kind, c.ephemeral, &c.contents)?;
            }
            self.check_reserved_write(&principal, "create", &a.path)?;
            let parked = if a.target == Target::Anchor {
                self.create_anchor(sid, a, c)?
            } else {
                self.create_for_open(sid, a, c, &principal)?
            };
            if let Some(w) = parked {
                return Ok(Reply::Wait(w));
            }
            true
        };
        let handle = self.new_handle(sid, a);
        let cacheable = self.register_cacher(sid, &a.path);
        let n = &self.nodes[&a.path];
        let contents = (a.read && n.rec.meta.kind == NodeKind::File).then(|| n.contents.clone());
        Ok(Reply::Done(OpenOk {
            handle,
            stat: self.stat_of(&a.path).expect("exists"),
            contents,
            cacheable,
            created,
        }))
    }

    /// The checks of `Open`'s arguments that need no node: the path, the intent and event
    /// bits, the lock-delay, and which targets and creations the caller (a cell or not)
    /// may ask for.
    fn check_open_args(&self, a: &OpenArgs, is_cell: bool) -> Result<(), WarrenError> {
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
        match (a.target, &a.create) {
            (Target::Entry, _) if !is_cell => Err(WarrenError::permission_denied(format!(
                "Open with target ENTRY is for cells only (principal {CELL_PRINCIPAL:?}); open {} with target NODE",
                a.path
            ))),
            (Target::Entry, Some(_)) => Err(WarrenError::invalid_argument(
                "Open with target ENTRY cannot create; entries are created with target NODE",
            )),
            (Target::Anchor, Some(_)) if !is_cell => Err(WarrenError::permission_denied(format!(
                "only cells (principal {CELL_PRINCIPAL:?}) create child anchors; open {} with target ANCHOR and no create, or with target NODE to create it",
                a.path
            ))),
            (Target::Anchor, Some(c)) if c.kind != NodeKind::Directory => {
                Err(WarrenError::invalid_argument(
                    "a child anchor is a directory: create.kind must be DIRECTORY",
                ))
            }
            (Target::Anchor, Some(c)) if c.instance == 0 => Err(WarrenError::invalid_argument(
                "creating a child anchor needs create.instance: the instance of the directory's entry",
            )),
            // The instance counter moves past every node's instance: the largest value has
            // nothing past it, and no cell assigns it.
            (Target::Anchor, Some(c)) if c.instance == u64::MAX => {
                Err(WarrenError::invalid_argument(format!(
                    "create.instance {} is not an instance a cell assigns: pass the instance of \
                     the directory's entry",
                    c.instance
                )))
            }
            (Target::Node, Some(c)) if c.instance != 0 => Err(WarrenError::invalid_argument(
                "create.instance is only for target ANCHOR (cells creating a child anchor)",
            )),
            _ => Ok(()),
        }
    }

    /// `Open` of a node that exists: what `create` asks must fit it, a directory whose
    /// child anchor is in another cell redirects there (after its anchor is confirmed),
    /// and the ACLs must allow the intent (not for a cell opening an entry).
    fn open_existing(&mut self, a: &OpenArgs, principal: &str) -> Result<(), WarrenError> {
        let n = &self.nodes[&a.path];
        if a.target == Target::Anchor && n.rec.meta.kind != NodeKind::Directory {
            return Err(WarrenError::invalid_argument(format!(
                "{} is a file; only directories have child anchors (open it with target NODE)",
                a.path
            )));
        }
        match &a.create {
            Some(c) if a.target == Target::Anchor && c.instance != n.rec.meta.instance => {
                return Err(WarrenError::already_exists(format!(
                    "{} exists here as instance {}, not as the anchor of instance {} asked for",
                    a.path, n.rec.meta.instance, c.instance
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
                if c.kind != n.rec.meta.kind {
                    let what = if n.rec.meta.kind == NodeKind::File {
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
        if a.target == Target::Node && n.rec.meta.kind == NodeKind::Directory {
            if let Some(owner) = self.owner_elsewhere(&a.path, true)? {
                if let Some(job) = AnchorJob::for_entry(&n.rec, &owner) {
                    self.anchor_job = Some(job);
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
            self.check_open_acl(principal, &n.rec.meta.acl, a.intent, &a.path)?;
        }
        self.acls_complete()
    }

    /// `Open` creating node `a.path` (target `NODE`) with `c`: checks the parent, the
    /// contents and the ACLs, invalidates cached absence and the parent's listing, and
    /// creates it. A directory whose own slot is in another cell is created as an entry
    /// marked anchor-pending, and the call fails until the server created its child anchor
    /// there. `Some(waiter)`: parked on invalidations.
    fn create_for_open(
        &mut self,
        sid: SessionId,
        a: &OpenArgs,
        c: &CreateArgs,
        principal: &str,
    ) -> Result<Option<WaiterId>, WarrenError> {
        let parent = path::parent(&a.path)
            .ok_or_else(|| WarrenError::invalid_argument("the deployment root cannot be created"))?
            .to_string();
        let Some(pn) = self.nodes.get(&parent) else {
            return Err(WarrenError::not_found(format!(
                "cannot create {}: parent directory {parent} does not exist",
                a.path
            )));
        };
        if pn.rec.meta.kind != NodeKind::Directory {
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
        let acl = c.acl.clone().unwrap_or_else(|| pn.rec.meta.acl.clone());
        check_acl_names(&acl)?;
        self.acl_allows(
            principal,
            &pn.rec.meta.acl.write,
            "create a node in",
            &parent,
        )?;
        self.check_open_acl(principal, &acl, a.intent, &a.path)?;
        self.acls_complete()?;
        // A directory whose own slot is in another cell: its entry here, its child
        // anchor there (created by the server before the client is redirected).
        let elsewhere = if c.kind == NodeKind::Directory {
            self.owner_elsewhere(&a.path, true)?
        } else {
            None
        };
        if let Some(w) = self.barrier(sid, &[&a.path, &parent]) {
            return Ok(Some(w));
        }
        self.start_invalidation(&a.path, Some(sid), None);
        let Some(owner) = elsewhere else {
            self.create_node(&a.path, c.kind, c.ephemeral, c.contents.clone(), acl);
            return Ok(None);
        };
        let rec = NodeRecord {
            anchor_pending: Some(PendingAnchor {
                ephemeral: c.ephemeral,
            }),
            // The entry is never ephemeral; its anchor may be.
            ..fresh_record(
                &a.path,
                NodeKind::Directory,
                self.meta.next_instance,
                acl,
                false,
            )
        };
        let job = AnchorJob {
            created: true,
            ..AnchorJob::for_entry(&rec, &owner).expect("marked anchor-pending")
        };
        self.insert_node(rec, Vec::new());
        self.anchor_job = Some(job);
        Err(self.anchor_pending_error(&a.path, &owner))
    }

    /// A new handle of session `sid` on the node `a` opened: registered with the node and
    /// the session, and its token minted.
    fn new_handle(&mut self, sid: SessionId, a: &OpenArgs) -> Vec<u8> {
        let instance = self.nodes[&a.path].rec.meta.instance;
        let number = self.next_handle;
        self.next_handle += 1;
        let k = (self.meta.epoch, number);
        let lock_delay_ms = a.lock_delay.as_millis() as u64;
        let token = self.key.mint(&HandleBody {
            cell: self.cfg.cell.clone(),
            epoch: self.meta.epoch,
            number,
            path: a.path.clone(),
            instance,
            intent: a.intent,
            events: a.events,
            lock_delay_ms,
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
                lock_delay_ms,
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
        token
    }
}
