//! Tests of partitioning in the master state machine (docs/partitioning.md): ownership
//! checks, redirects, anchor-pending marks, pending unlinks, ACL files held elsewhere and
//! the refusals, with synthetic time and two cells `c1`, `c2` of one map.

use super::*;
use warren_router::PartitionMap;

fn map(epoch: u64) -> PartitionMap {
    let m =
        PartitionMap::even("local", &[("c1", vec!["h1:1"]), ("c2", vec!["h2:1"])], 4096).unwrap();
    if epoch == 1 {
        return m;
    }
    PartitionMap::new("local", epoch, m.slot_owners().to_vec(), m.cells().clone()).unwrap()
}

/// The cell `route(p, anchor)` names.
fn owner(m: &PartitionMap, p: &str, anchor: bool) -> String {
    match m.route(p, anchor).unwrap() {
        Route::Meta => "meta".into(),
        Route::Cell { cell, .. } => cell.to_string(),
    }
}

fn other(c: &str) -> &'static str {
    if c == "c1" {
        "c2"
    } else {
        "c1"
    }
}

/// A directory name under `parent` whose own slot belongs to `cell`.
fn dir_in(m: &PartitionMap, parent: &str, cell: &str) -> String {
    (0..100_000)
        .map(|i| format!("{parent}/d{i}"))
        .find(|p| owner(m, p, true) == cell)
        .expect("some name lands in the cell")
}

impl T {
    /// A data cell `name` with map `map(1)` installed.
    fn data(name: &str) -> T {
        let mut t = T::bare(name, true);
        assert!(t.m.set_map(Arc::new(map(1))));
        t
    }
    fn bare(name: &str, data: bool) -> T {
        let mut cfg = CoreConfig::new(name, "local");
        if data {
            cfg.meta = vec!["meta-host:7000".into()];
        }
        let t0 = Instant::now();
        let mut m = Master::recover(cfg, Snapshot::default(), t0, 3).unwrap();
        m.take_output();
        T { m, t0 }
    }
    fn session_as(&mut self, principal: &str) -> Ctx {
        ctx_of(&self.m.create_session(principal, self.at(0.0)).unwrap())
    }
    fn open_target(
        &mut self,
        ctx: &Ctx,
        path: &str,
        target: Target,
        intent: u32,
        create: Option<CreateArgs>,
    ) -> Result<OpenOk, WarrenError> {
        let a = OpenArgs {
            path: path.into(),
            intent,
            events: 0,
            lock_delay: Duration::ZERO,
            create,
            read: false,
            target,
        };
        for _ in 0..2 {
            match self.m.open(ctx, &a, self.at(1.0))? {
                Reply::Done(o) => return Ok(o),
                // Other sessions cached the path or its parent: they acknowledge (as the
                // client library and a cell's internal sessions do at once), then retry.
                Reply::Wait(_) => self.ack_all(),
            }
        }
        panic!("open of {path} waited twice")
    }
    fn ack_all(&mut self) {
        acknowledge_everything(&mut self.m);
        self.m.take_output();
    }
    fn mutations(&mut self) -> Vec<Mutation> {
        self.m.take_output().mutations
    }
    fn children(&mut self, ctx: &Ctx, dir: &str, target: Target) -> Vec<String> {
        let h = self
            .open_target(ctx, dir, target, intent::READ, None)
            .unwrap();
        let (entries, _, _) = self.m.read_dir(ctx, &h.handle, self.at(1.0)).unwrap();
        self.m.close(ctx, &h.handle, self.at(1.0)).unwrap();
        entries.into_iter().map(|e| e.name).collect()
    }
}

fn mkdir() -> Option<CreateArgs> {
    Some(CreateArgs {
        kind: NodeKind::Directory,
        ephemeral: false,
        contents: Vec::new(),
        acl: None,
        exclusive: false,
        instance: 0,
    })
}

fn mkfile(acl: Option<AclNames>) -> Option<CreateArgs> {
    Some(CreateArgs {
        kind: NodeKind::File,
        ephemeral: false,
        contents: b"x".to_vec(),
        acl,
        exclusive: false,
        instance: 0,
    })
}

fn anchor(instance: u64, ephemeral: bool) -> Option<CreateArgs> {
    Some(CreateArgs {
        kind: NodeKind::Directory,
        ephemeral,
        contents: Vec::new(),
        acl: Some(AclNames::default()),
        exclusive: false,
        instance,
    })
}

fn put_nodes(muts: &[Mutation]) -> Vec<NodeRecord> {
    muts.iter()
        .filter_map(|m| match m {
            Mutation::PutNode(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn unlinks_written(muts: &[Mutation]) -> Option<Vec<PendingUnlink>> {
    muts.iter().rev().find_map(|m| match m {
        Mutation::PutMeta(meta) => Some(meta.pending_unlinks.clone()),
        _ => None,
    })
}

#[test]
fn a_data_cell_serves_only_session_calls_until_its_map_arrives() {
    let mut t = T::bare("c1", true);
    let a = t.session_as("alice");
    // KeepAlive is served (it parks: nothing to deliver).
    assert!(t.m.keepalive(&a, 0, t.at(0.5)).is_ok());
    // So is a proxy's ClaimSession (it registers a client session this cell does not
    // know), rather than answered as by a cell waiting for its map.
    let p = ctx_of(&t.m.create_proxy_session("proxy", t.at(0.5)).unwrap());
    let claimed =
        t.m.claim_session(&p, [7; 16], [7; 16], "carol", None, t.at(0.6));
    assert!(claimed.is_ok(), "{claimed:?}");
    let e = t
        .open_target(&a, "/ls/local/f", Target::Node, intent::READ, None)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::FailoverInProgress);
    assert!(e.message.contains("partition map"), "{}", e.message);
    assert!(e.message.contains("meta-host:7000"), "{}", e.message);
    assert!(!t.m.status().map_loaded);
    // Another deployment's map is refused; then the right one is installed.
    let foreign = PartitionMap::single_cell("other", "c1", vec!["h:1".into()], 16).unwrap();
    assert!(!t.m.set_map(Arc::new(foreign)));
    assert!(t.m.set_map(Arc::new(map(1))));
    let st = t.m.status();
    assert!(st.map_loaded);
    assert_eq!(st.map_epoch, 1);
    assert_eq!(st.slots, 2048);
    // Never back to an older (or the same) epoch.
    assert!(!t.m.set_map(Arc::new(map(1))));
    // Closing the session is a session call: served.
    let mut t2 = T::bare("c1", true);
    let b = t2.session_as("bob");
    t2.m.close_session(&b, false, t2.at(1.0)).unwrap();
}

#[test]
fn a_misrouted_open_is_refused_and_creates_nothing() {
    let m = map(1);
    let r = owner(&m, "/ls/local/f", false);
    let mut wrong = T::data(other(&r));
    let a = wrong.session_as("alice");
    wrong.mutations();
    let e = wrong
        .open_target(&a, "/ls/local/f", Target::Node, intent::ALL, mkfile(None))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongCell);
    assert_eq!((e.map_epoch, e.owner.as_str()), (1, r.as_str()));
    assert!(!e.directory);
    assert!(wrong.mutations().is_empty(), "nothing may change");
    assert!(!wrong.m.nodes.contains_key("/ls/local/f"));
    // The owner serves it.
    let mut right = T::data(&r);
    let a = right.session_as("alice");
    let o = right
        .open_target(&a, "/ls/local/f", Target::Node, intent::ALL, mkfile(None))
        .unwrap();
    assert!(o.created);
    // The reserved subtree belongs to the meta cell.
    let e = right
        .open_target(&a, "/ls/local/warren/map", Target::Node, intent::READ, None)
        .unwrap_err();
    assert_eq!((e.code, e.owner.as_str()), (ErrorCode::WrongCell, "meta"));
}

#[test]
fn handle_calls_follow_the_map_in_force() {
    let m = map(1);
    let r = owner(&m, "/ls/local/f", false);
    let mut t = T::data(&r);
    let a = t.session_as("alice");
    let o = t
        .open_target(&a, "/ls/local/f", Target::Node, intent::ALL, mkfile(None))
        .unwrap();
    assert!(t.m.get_stat(&a, &o.handle, t.at(2.0)).is_ok());
    // Epoch 2 gives the root's slot to the other cell.
    let slot = m.slot_of_path("/ls/local/f").unwrap() as usize;
    let mut owners = m.slot_owners().to_vec();
    owners[slot] = other(&r).to_string();
    let m2 = PartitionMap::new("local", 2, owners, m.cells().clone()).unwrap();
    assert!(t.m.set_map(Arc::new(m2)));
    t.mutations();
    for e in [
        t.m.get_stat(&a, &o.handle, t.at(3.0)).unwrap_err(),
        t.m.get_contents(&a, &o.handle, t.at(3.0)).unwrap_err(),
        t.m.set_contents(&a, &o.handle, b"new", None, t.at(3.0))
            .unwrap_err(),
        t.m.delete(&a, &o.handle, t.at(3.0)).unwrap_err(),
        t.m.try_acquire(&a, &o.handle, LockMode::Exclusive, t.at(3.0))
            .unwrap_err(),
    ] {
        assert_eq!(e.code, ErrorCode::WrongCell, "{e:?}");
        assert_eq!((e.map_epoch, e.owner.as_str()), (2, other(&r)));
    }
    assert!(t.mutations().is_empty(), "a refused call changes nothing");
    assert_eq!(t.m.nodes["/ls/local/f"].contents, b"x");
}

#[test]
fn mkdir_across_cells_marks_the_entry_until_the_anchor_exists() {
    let m = map(1);
    let p = owner(&m, "/ls/local/x", false);
    let c = other(&p).to_string();
    let d = dir_in(&m, "/ls/local", &c);
    let mut t = T::data(&p);
    let a = t.session_as("alice");
    let e = t
        .open_target(&a, &d, Target::Node, intent::READ, mkdir())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::FailoverInProgress, "{e:?}");
    let notes = t.m.take_notes();
    let job = notes.anchor.expect("an anchor job");
    assert_eq!(
        (job.path.as_str(), job.owner.as_str()),
        (d.as_str(), c.as_str())
    );
    assert!(job.created && !job.ephemeral);
    let recs = put_nodes(&t.mutations());
    let entry = recs
        .iter()
        .find(|r| r.path == d)
        .expect("the entry is written");
    assert_eq!(
        entry.anchor_pending,
        Some(PendingAnchor { ephemeral: false })
    );
    assert_eq!(entry.meta.instance, job.instance);
    assert!(!entry.meta.ephemeral && !entry.anchor);
    // Listed with its siblings at once.
    assert!(t
        .children(&a, "/ls/local", Target::Node)
        .contains(&path::name(&d).to_string()));
    // Until the anchor is confirmed every Open of it asks for the anchor again.
    assert!(t
        .open_target(&a, &d, Target::Node, intent::READ, None)
        .is_err());
    let again = t.m.take_notes().anchor.expect("asked again");
    assert!(!again.created);
    assert_eq!(
        t.m.pending_anchors(),
        vec![AnchorJob {
            created: false,
            ..job.clone()
        }]
    );
    // Confirmed: the mark goes (committed), and Opens are redirected to the anchor.
    t.m.anchor_created(&d, job.instance);
    let recs = put_nodes(&t.mutations());
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].anchor_pending, None);
    assert!(t.m.pending_anchors().is_empty());
    let e = t
        .open_target(&a, &d, Target::Node, intent::READ, None)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongCell);
    assert!(e.directory && !e.created);
    assert_eq!(e.owner, c);
    assert!(t.m.take_notes().anchor.is_none());
    let e = t
        .open_target(&a, &d, Target::Node, intent::READ, mkdir())
        .unwrap_err();
    assert!(
        e.directory,
        "a non-exclusive create of an existing split directory redirects"
    );
    let mut excl = mkdir();
    excl.as_mut().unwrap().exclusive = true;
    let e = t
        .open_target(&a, &d, Target::Node, intent::READ, excl)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AlreadyExists);
}

#[test]
fn anchors_are_created_by_cells_only_idempotently_and_unlinked_on_delete() {
    let m = map(1);
    let p = owner(&m, "/ls/local/x", false);
    let c = other(&p).to_string();
    let d = dir_in(&m, "/ls/local", &c);
    let mut t = T::data(&c);
    let alice = t.session_as("alice");
    let cell = t.session_as(CELL_PRINCIPAL);
    let root_children = t.m.nodes["/ls/local"].children.clone();

    let e = t
        .open_target(&alice, &d, Target::Anchor, 0, anchor(77, false))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    let e = t
        .open_target(&cell, &d, Target::Anchor, 0, anchor(0, false))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    let e = t
        .open_target(&alice, &d, Target::Node, 0, {
            let mut a = mkdir();
            a.as_mut().unwrap().instance = 5;
            a
        })
        .unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::InvalidArgument,
        "instance is for anchors only"
    );
    // A misrouted anchor: the other cell owns it.
    let mut at_p = T::data(&p);
    let cell_p = at_p.session_as(CELL_PRINCIPAL);
    let e = at_p
        .open_target(&cell_p, &d, Target::Anchor, 0, anchor(77, false))
        .unwrap_err();
    assert_eq!(
        (e.code, e.owner.as_str()),
        (ErrorCode::WrongCell, c.as_str())
    );

    let o = t
        .open_target(&cell, &d, Target::Anchor, 0, anchor(77, false))
        .unwrap();
    assert!(o.created);
    assert_eq!(o.stat.meta.instance, 77);
    assert!(t.m.nodes[&d].rec.anchor);
    assert_eq!(
        t.m.nodes["/ls/local"].children, root_children,
        "no local parent link"
    );
    assert!(t.m.meta.next_instance > 77, "instances stay unique here");
    // Idempotent for the same instance; another instance is refused.
    let again = t
        .open_target(&cell, &d, Target::Anchor, 0, anchor(77, false))
        .unwrap();
    assert!(!again.created);
    let e = t
        .open_target(&cell, &d, Target::Anchor, 0, anchor(78, false))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::AlreadyExists);
    // Clients open the anchor (no create) and work in it.
    let h = t
        .open_target(&alice, &d, Target::Anchor, intent::ALL, None)
        .unwrap();
    let child = format!("{d}/child");
    let ch = t
        .open_target(&alice, &child, Target::Node, intent::ALL, mkfile(None))
        .unwrap();
    assert_eq!(t.children(&alice, &d, Target::Anchor), vec!["child"]);
    let e = t.m.delete(&alice, &h.handle, t.at(2.0)).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotEmpty);
    assert!(t.m.delete(&alice, &ch.handle, t.at(2.0)).is_ok());
    t.mutations();
    let u = match t.m.delete(&alice, &h.handle, t.at(2.0)).unwrap() {
        Reply::Done(u) => u.expect("an anchor's delete records an unlink"),
        Reply::Wait(_) => panic!("waited"),
    };
    assert_eq!(
        u,
        PendingUnlink {
            path: d.clone(),
            instance: 77
        }
    );
    let muts = t.mutations();
    assert!(muts.contains(&Mutation::DeleteNode { path: d.clone() }));
    assert_eq!(unlinks_written(&muts), Some(vec![u.clone()]), "same commit");
    assert_eq!(t.m.pending_unlinks(), vec![u.clone()]);
    // While the unlink is pending the anchor is not made again for that instance.
    let e = t
        .open_target(&cell, &d, Target::Anchor, 0, anchor(77, false))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("unlinked"), "{}", e.message);
    t.m.unlink_done(&u);
    assert_eq!(unlinks_written(&t.mutations()), Some(vec![]));
    assert!(t.m.pending_unlinks().is_empty());
}

#[test]
fn an_ephemeral_anchor_waits_for_its_creator_then_goes_the_unlink_way() {
    let m = map(1);
    let p = owner(&m, "/ls/local/x", false);
    let c = other(&p).to_string();
    let d = dir_in(&m, "/ls/local", &c);
    let mut t = T::data(&c);
    let cell = t.session_as(CELL_PRINCIPAL);
    let o = t
        .open_target(&cell, &d, Target::Anchor, 0, anchor(9, true))
        .unwrap();
    t.m.close(&cell, &o.handle, t.at(1.0)).unwrap();
    assert!(t.m.nodes.contains_key(&d), "kept for the creator to open");
    // Nobody opened it within the grace: removed, and its entry to be unlinked.
    t.m.tick(t.at(1.0) + EPHEMERAL_ANCHOR_GRACE + Duration::from_millis(1));
    assert!(!t.m.nodes.contains_key(&d));
    assert_eq!(
        t.m.pending_unlinks(),
        vec![PendingUnlink {
            path: d.clone(),
            instance: 9
        }]
    );
    // Opened in time by its creator, it lives as long as a handle is open on it.
    let alice = t.session_as("alice");
    t.m.unlink_done(&PendingUnlink {
        path: d.clone(),
        instance: 9,
    });
    let o = t
        .open_target(&cell, &d, Target::Anchor, 0, anchor(10, true))
        .unwrap();
    t.m.close(&cell, &o.handle, t.at(1.0)).unwrap();
    let h = t
        .open_target(&alice, &d, Target::Anchor, intent::READ, None)
        .unwrap();
    // (Within the sessions' 12 s lease.)
    t.m.tick(t.at(1.5) + EPHEMERAL_ANCHOR_GRACE);
    assert!(t.m.nodes.contains_key(&d));
    assert!(t.m.pending_unlinks().is_empty());
    t.m.close(&alice, &h.handle, t.at(11.6)).unwrap();
    assert!(!t.m.nodes.contains_key(&d));
    assert_eq!(t.m.pending_unlinks().len(), 1);
}

#[test]
fn entries_are_opened_by_cells_only_without_redirect_and_deleted_without_acl() {
    let m = map(1);
    let p = owner(&m, "/ls/local/x", false);
    let c = other(&p).to_string();
    let d = dir_in(&m, "/ls/local", &c);
    let mut t = T::data(&p);
    let alice = t.session_as("alice");
    let cell = t.session_as(CELL_PRINCIPAL);
    let mut args = mkdir();
    args.as_mut().unwrap().acl = Some(AclNames {
        write: "nobody-file".into(),
        ..AclNames::default()
    });
    assert!(t.open_target(&alice, &d, Target::Node, 0, args).is_err());
    let job = t.m.take_notes().anchor.unwrap();
    t.m.anchor_created(&d, job.instance);
    let e = t
        .open_target(&alice, &d, Target::Entry, intent::WRITE, None)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    let e = t
        .open_target(&cell, &d, Target::Entry, intent::WRITE, mkdir())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    let h = t
        .open_target(&cell, &d, Target::Entry, intent::WRITE, None)
        .unwrap();
    assert_eq!(h.stat.meta.instance, job.instance);
    // The write ACL names a file that does not exist: an ordinary Delete would be refused;
    // the cell's unlink is not (the user's ACL was checked at the anchor).
    let r = t.m.delete(&cell, &h.handle, t.at(2.0)).unwrap();
    assert!(matches!(r, Reply::Done(None)), "an entry leaves no unlink");
    assert!(!t.m.nodes.contains_key(&d));
    assert!(!t
        .children(&alice, "/ls/local", Target::Node)
        .contains(&path::name(&d).to_string()));
}

#[test]
fn recovery_keeps_anchors_out_of_their_local_parent() {
    let mut cfg = CoreConfig::new("c0", "local");
    cfg.meta.clear();
    let t0 = Instant::now();
    let mut m = Master::recover(cfg.clone(), Snapshot::default(), t0, 1).unwrap();
    let boot = m.take_output();
    let mut snap = Snapshot::default();
    for x in boot.mutations {
        match x {
            Mutation::PutMeta(meta) => snap.meta = Some(meta),
            Mutation::PutNode(n) => snap.nodes.push(n),
            _ => {}
        }
    }
    let mut anchor_rec = snap.nodes[1].clone();
    anchor_rec.path = "/ls/local/anch".into();
    anchor_rec.meta.instance = 500;
    anchor_rec.anchor = true;
    let mut entry_rec = snap.nodes[1].clone();
    entry_rec.path = "/ls/local/ent".into();
    entry_rec.meta.instance = 501;
    entry_rec.anchor_pending = Some(PendingAnchor { ephemeral: true });
    snap.nodes.push(anchor_rec);
    snap.nodes.push(entry_rec);
    snap.meta.as_mut().unwrap().pending_unlinks = vec![PendingUnlink {
        path: "/ls/local/old".into(),
        instance: 3,
    }];
    let m = Master::recover(cfg, snap, t0, 2).unwrap();
    let kids: Vec<&String> = m.nodes["/ls/local"].children.iter().collect();
    assert_eq!(kids, vec!["acl", "ent"]);
    assert_eq!(m.pending_unlinks().len(), 1);
    // Without a map there is nobody to make the anchor with.
    assert!(m.pending_anchors().is_empty());
}

#[test]
fn old_records_load_with_the_new_fields_defaulted() {
    let node: NodeRecord = serde_json::from_str(
        r#"{"path":"/ls/local/a","kind":"Directory","instance":4,"content_generation":0,"lock_generation":0,"acl_generation":0,"checksum":0,"acl":{"read":"","write":"","change_acl":""},"ephemeral":false}"#,
    )
    .unwrap();
    assert!(!node.anchor && node.anchor_pending.is_none());
    let meta: MetaRecord = serde_json::from_str(
        r#"{"epoch":3,"secret":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"next_instance":9,"deployment":"local","cell":"c0"}"#,
    )
    .unwrap();
    assert!(meta.pending_unlinks.is_empty());
}

#[test]
fn the_meta_cell_reads_its_map_from_its_own_namespace() {
    let mut t = T::bare("meta", false);
    let a = t.session_as(OPERATOR_PRINCIPAL);
    // No map: everything is served, as in a single cell.
    assert!(t
        .open_target(&a, "/ls/local/f", Target::Node, intent::ALL, mkfile(None))
        .is_ok());
    assert!(t
        .open_target(&a, "/ls/local/warren", Target::Node, intent::ALL, mkdir())
        .is_ok());
    let mut create = mkfile(None);
    create.as_mut().unwrap().contents = map(1).to_json().into_bytes();
    let h = t
        .open_target(
            &a,
            "/ls/local/warren/map",
            Target::Node,
            intent::ALL,
            create,
        )
        .unwrap();
    assert_eq!(t.m.map_epoch(), 1);
    // Now only the reserved subtree is served here.
    let r = owner(&map(1), "/ls/local/f", false);
    let e = t
        .open_target(&a, "/ls/local/f", Target::Node, intent::READ, None)
        .unwrap_err();
    assert_eq!(
        (e.code, e.owner.as_str(), e.map_epoch),
        (ErrorCode::WrongCell, r.as_str(), 1)
    );
    assert!(t.m.get_stat(&a, &h.handle, t.at(2.0)).is_ok());
    // A bad write is refused (tests/map_guard.rs); a newer map replaces it.
    assert!(t
        .m
        .set_contents(&a, &h.handle, b"{", None, t.at(3.0))
        .is_err());
    assert_eq!(t.m.map_epoch(), 1);
    let two = map(2).to_json();
    assert!(t
        .m
        .set_contents(&a, &h.handle, two.as_bytes(), None, t.at(4.0))
        .is_ok());
    assert_eq!(t.m.map_epoch(), 2);
    // At recovery the file is read again.
    let mut snap = Snapshot::default();
    for x in t.mutations() {
        match x {
            Mutation::PutMeta(meta) => snap.meta = Some(meta),
            Mutation::PutNode(n) => {
                snap.nodes.retain(|o: &NodeRecord| o.path != n.path);
                snap.nodes.push(n)
            }
            Mutation::PutContents { path, data } => {
                snap.contents.retain(|(p, _)| *p != path);
                snap.contents.push((path, data))
            }
            _ => {}
        }
    }
    let m2 = Master::recover(CoreConfig::new("meta", "local"), snap, t.t0, 5).unwrap();
    assert_eq!(m2.map_epoch(), 2);
}

#[test]
fn acl_files_held_elsewhere_are_asked_for_and_nothing_changes_meanwhile() {
    let m = map(1);
    let acl_cell = owner(&m, "/ls/local/acl/readers", false);
    let here = other(&acl_cell).to_string();
    let d = dir_in(&m, "/ls/local", &here);
    let file = "/ls/local/acl/readers".to_string();
    let mut t = T::data(&here);
    let alice = t.session_as("alice");
    let cell = t.session_as(CELL_PRINCIPAL);
    t.open_target(&cell, &d, Target::Anchor, 0, anchor(40, false))
        .unwrap();
    t.mutations();
    let f = format!("{d}/f");
    let guarded = Some(AclNames {
        read: "readers".into(),
        ..AclNames::default()
    });
    // Creating needs the file: refused, noted, nothing written.
    let e = t
        .open_target(
            &alice,
            &f,
            Target::Node,
            intent::READ,
            mkfile(guarded.clone()),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::FailoverInProgress);
    assert_eq!(t.m.take_notes().acl_needed, vec![file.clone()]);
    assert!(t.mutations().is_empty());
    assert!(!t.m.nodes.contains_key(&f));
    // Supplied: the check runs on the contents.
    t.m.supply_acls([(file.clone(), Some(b"bob\nalice\n".to_vec()))]);
    let o = t
        .open_target(&alice, &f, Target::Node, intent::READ, mkfile(guarded))
        .unwrap();
    assert!(o.created);
    assert!(t.m.take_notes().acl_needed.is_empty());
    t.m.supply_acls([(file.clone(), Some(b"bob\n".to_vec()))]);
    let e = t
        .open_target(&alice, &f, Target::Node, intent::READ, None)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    t.m.supply_acls([(file.clone(), None)]);
    let e = t
        .open_target(&alice, &f, Target::Node, intent::READ, None)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    assert!(e.message.contains("does not exist"), "{}", e.message);
    // Opening without the file supplied mints no handle.
    t.m.supply_acls([]);
    let handles = t.m.handles.len();
    assert!(t
        .open_target(&alice, &f, Target::Node, intent::READ, None)
        .is_err());
    assert_eq!(t.m.take_notes().acl_needed, vec![file.clone()]);
    assert_eq!(t.m.handles.len(), handles);
    // Delete checks the write ACL the same way, before changing anything.
    let wf = format!("{d}/w");
    let h = t
        .open_target(
            &alice,
            &wf,
            Target::Node,
            intent::WRITE,
            mkfile(Some(AclNames {
                write: "readers".into(),
                ..AclNames::default()
            })),
        )
        .map(Some)
        .unwrap_or_else(|_| None);
    assert!(h.is_none(), "the create itself needs the file");
    t.m.supply_acls([(file.clone(), Some(b"alice\n".to_vec()))]);
    let h = t
        .open_target(
            &alice,
            &wf,
            Target::Node,
            intent::WRITE,
            mkfile(Some(AclNames {
                write: "readers".into(),
                ..AclNames::default()
            })),
        )
        .unwrap();
    t.m.supply_acls([]);
    t.mutations();
    let e = t.m.delete(&alice, &h.handle, t.at(3.0)).unwrap_err();
    assert_eq!(e.code, ErrorCode::FailoverInProgress);
    assert_eq!(t.m.take_notes().acl_needed, vec![file.clone()]);
    assert!(t.mutations().is_empty());
    assert!(t.m.nodes.contains_key(&wf));
}

/// A child anchor asked for with the largest instance is refused at Open: the instance
/// counter moves past every node's instance, and nothing is past that one (the fuzz
/// target `cell_requests` overflowed the counter with it, docs/fuzzing.md). One below
/// is still created, and the counter stops at the largest.
#[test]
fn an_anchor_with_the_largest_instance_is_refused_not_overflowed() {
    let m = map(1);
    let p = owner(&m, "/ls/local/x", false);
    let c = other(&p).to_string();
    let d = dir_in(&m, "/ls/local", &c);
    let mut t = T::data(&c);
    let cell = t.session_as(CELL_PRINCIPAL);
    let e = t
        .open_target(&cell, &d, Target::Anchor, 0, anchor(u64::MAX, false))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert!(e.message.contains("create.instance"), "{}", e.message);
    t.open_target(&cell, &d, Target::Anchor, 0, anchor(u64::MAX - 1, false))
        .unwrap();
    assert_eq!(t.m.meta.next_instance, u64::MAX);
}
