//! Tests of who may write the partition map, and what (docs/partitioning.md, "Who may
//! write the map"): at the meta cell, every write reaching `/ls/local/warren/map` that is
//! not the next map from the map code path is refused and changes nothing; a stored map
//! that does not parse is repaired by a newer one.

use super::*;
use warren_router::PartitionMap;

const MAP: &str = "/ls/local/warren/map";

/// Epoch `epoch` of a map of deployment `d` over two cells with `slots` slots (the cells
/// swap halves from one epoch to the next, so each epoch routes differently).
fn map_of(d: &str, epoch: u64, slots: u32) -> PartitionMap {
    let (a, b) = if epoch % 2 == 1 {
        ("c1", "c2")
    } else {
        ("c2", "c1")
    };
    let m = PartitionMap::even(d, &[(a, vec!["h1:1"]), (b, vec!["h2:1"])], slots).unwrap();
    PartitionMap::new(d, epoch, m.slot_owners().to_vec(), m.cells().clone()).unwrap()
}

fn map(epoch: u64) -> Vec<u8> {
    map_of("local", epoch, 64).to_json().into_bytes()
}

fn create_file(contents: Vec<u8>, ephemeral: bool) -> Option<CreateArgs> {
    Some(CreateArgs {
        kind: NodeKind::File,
        ephemeral,
        contents,
        acl: None,
        exclusive: false,
        instance: 0,
    })
}

fn create_dir() -> Option<CreateArgs> {
    Some(CreateArgs {
        kind: NodeKind::Directory,
        ephemeral: false,
        contents: Vec::new(),
        acl: None,
        exclusive: false,
        instance: 0,
    })
}

impl T {
    /// A meta cell: no meta of its own, its map read from its own namespace.
    fn meta_cell() -> T {
        let t0 = Instant::now();
        let mut m = Master::recover(
            CoreConfig::new("meta", "local"),
            Snapshot::default(),
            t0,
            11,
        )
        .unwrap();
        m.take_output();
        T { m, t0 }
    }

    fn session_of(&mut self, principal: &str) -> Ctx {
        ctx_of(&self.m.create_session(principal, self.at(0.0)).unwrap())
    }

    /// `Open` of `path` with every intent, creating it with `create` if asked; other
    /// sessions' cached copies are acknowledged as needed.
    fn open_all(
        &mut self,
        ctx: &Ctx,
        path: &str,
        create: Option<CreateArgs>,
    ) -> Result<OpenOk, WarrenError> {
        let a = open_args(path, intent::ALL, 0.0, create);
        for _ in 0..2 {
            match self.m.open(ctx, &a, self.at(1.0))? {
                Reply::Done(o) => return Ok(o),
                Reply::Wait(_) => acknowledge_everything(&mut self.m),
            }
        }
        panic!("open of {path} waited twice")
    }

    /// The meta cell with map epoch 1 in force, created by the operator; the operator's
    /// session and its handle on the map file.
    fn meta_with_map() -> (T, Ctx, Vec<u8>) {
        let mut t = T::meta_cell();
        let op = t.session_of(OPERATOR_PRINCIPAL);
        t.open_all(&op, "/ls/local/warren", create_dir()).unwrap();
        let h = t.open_all(&op, MAP, create_file(map(1), false)).unwrap();
        assert_eq!(t.m.map_epoch(), 1);
        t.m.take_output();
        (t, op, h.handle)
    }

    /// The map file's contents and content generation.
    fn stored(&self) -> (Vec<u8>, u64) {
        let n = &self.m.nodes[MAP];
        (n.contents.clone(), n.rec.meta.content_generation)
    }

    fn set(&mut self, ctx: &Ctx, h: &[u8], data: &[u8]) -> Result<StatView, WarrenError> {
        for _ in 0..2 {
            match self.m.set_contents(ctx, h, data, None, self.at(2.0))? {
                Reply::Done(st) => return Ok(st),
                Reply::Wait(_) => acknowledge_everything(&mut self.m),
            }
        }
        panic!("SetContents of the map waited twice")
    }

    /// Asserts that `r` is the refusal `code` saying each of `says`, and that nothing
    /// changed: the map in force, the stored file, and no mutation to commit.
    fn refused<R: std::fmt::Debug>(
        &mut self,
        r: Result<R, WarrenError>,
        code: ErrorCode,
        says: &[&str],
        before: &(Vec<u8>, u64, u64),
    ) {
        let e = r.expect_err("refused");
        assert_eq!(e.code, code, "{}", e.message);
        for s in says {
            assert!(e.message.contains(s), "{:?} lacks {s:?}", e.message);
        }
        let (contents, generation) = self.stored();
        assert_eq!(
            (&contents, generation, self.m.map_epoch()),
            (&before.0, before.1, before.2),
            "a refused map write changed nothing"
        );
        assert!(
            self.m.take_output().mutations.is_empty(),
            "nothing to commit"
        );
    }

    fn snapshot(&self) -> (Vec<u8>, u64, u64) {
        let (c, g) = self.stored();
        (c, g, self.m.map_epoch())
    }
}

#[test]
fn garbage_is_refused_naming_the_problem_and_the_fix() {
    let (mut t, op, h) = T::meta_with_map();
    let before = t.snapshot();
    for garbage in [&b"{not json"[..], b"", br#"{"format":1,"map_epoch":2}"#] {
        let r = t.set(&op, &h, garbage);
        t.refused(
            r,
            ErrorCode::InvalidArgument,
            &[
                "not a partition map",
                MAP,
                "warren ctl reshard",
                "warren ctl map repair",
            ],
            &before,
        );
    }
}

#[test]
fn a_skipped_or_replayed_epoch_is_refused() {
    let (mut t, op, h) = T::meta_with_map();
    let before = t.snapshot();
    let r = t.set(&op, &h, &map(3));
    t.refused(
        r,
        ErrorCode::GenerationMismatch,
        &[
            "this write's epoch 3 is not the map in force (1) + 1",
            "write epoch 2",
        ],
        &before,
    );
    for replay in [1, 0] {
        let data = if replay == 0 {
            // Epoch 0 does not even validate as a map.
            b"{}".to_vec()
        } else {
            map(replay)
        };
        let r = t.set(&op, &h, &data);
        let code = if replay == 0 {
            ErrorCode::InvalidArgument
        } else {
            ErrorCode::GenerationMismatch
        };
        t.refused(r, code, &[], &before);
    }
    // In sequence, each next epoch is accepted; the one before is then a replay.
    t.set(&op, &h, &map(2)).unwrap();
    assert_eq!(t.m.map_epoch(), 2);
    t.m.take_output();
    let before = t.snapshot();
    let r = t.set(&op, &h, &map(2));
    t.refused(
        r,
        ErrorCode::GenerationMismatch,
        &["epoch 2 is not the map in force (2) + 1"],
        &before,
    );
}

#[test]
fn another_deployments_map_or_another_slot_count_is_refused() {
    let (mut t, op, h) = T::meta_with_map();
    let before = t.snapshot();
    let other = map_of("prod", 2, 64).to_json();
    let r = t.set(&op, &h, other.as_bytes());
    t.refused(
        r,
        ErrorCode::InvalidArgument,
        &["deployment \"prod\"'s, not \"local\"'s"],
        &before,
    );
    let resized = map_of("local", 2, 128).to_json();
    let r = t.set(&op, &h, resized.as_bytes());
    t.refused(
        r,
        ErrorCode::InvalidArgument,
        &[
            "has 128 slots, the map in force (epoch 1) 64",
            "fixed for the life of a deployment",
        ],
        &before,
    );
}

#[test]
fn only_the_map_code_path_writes_the_map() {
    let (mut t, _op, _) = T::meta_with_map();
    let alice = t.session_of("alice");
    let h = t.open_all(&alice, MAP, None).unwrap().handle;
    t.m.take_output();
    let before = t.snapshot();
    let r = t.set(&alice, &h, &map(2));
    t.refused(
        r,
        ErrorCode::PermissionDenied,
        &[
            "writing the map refused",
            "(principal \"warren:operator\"), not by principal \"alice\"",
        ],
        &before,
    );
    let r = t.m.set_acl(&alice, &h, &AclNames::default(), t.at(2.0));
    t.refused(r, ErrorCode::PermissionDenied, &["ACL"], &before);
    // The cells' own principal is the map code path too (a reshard's commit).
    let cell = t.session_of(CELL_PRINCIPAL);
    let hc = t.open_all(&cell, MAP, None).unwrap().handle;
    t.set(&cell, &hc, &map(2)).unwrap();
    assert_eq!(t.m.map_epoch(), 2);
}

#[test]
fn the_first_map_has_epoch_1_and_is_a_lasting_file_made_by_the_operator() {
    let mut t = T::meta_cell();
    let op = t.session_of(OPERATOR_PRINCIPAL);
    let alice = t.session_of("alice");
    t.open_all(&op, "/ls/local/warren", create_dir()).unwrap();
    t.m.take_output();
    let absent = |t: &mut T, r: Result<OpenOk, WarrenError>, code: ErrorCode, says: &str| {
        let e = r.expect_err("refused");
        assert_eq!(e.code, code, "{}", e.message);
        assert!(e.message.contains(says), "{:?} lacks {says:?}", e.message);
        assert!(!t.m.nodes.contains_key(MAP), "nothing was created");
        assert_eq!(t.m.map_epoch(), 0);
        assert!(t.m.take_output().mutations.is_empty());
    };
    let r = t.open_all(&alice, MAP, create_file(map(1), false));
    absent(
        &mut t,
        r,
        ErrorCode::PermissionDenied,
        "not by principal \"alice\"",
    );
    let r = t.open_all(&op, MAP, create_file(map(2), false));
    absent(
        &mut t,
        r,
        ErrorCode::GenerationMismatch,
        "epoch 2 is not the map in force (0) + 1 (the first map has epoch 1)",
    );
    let r = t.open_all(&op, MAP, create_file(b"garbage".to_vec(), false));
    absent(&mut t, r, ErrorCode::InvalidArgument, "not a partition map");
    let r = t.open_all(&op, MAP, create_file(map(1), true));
    absent(&mut t, r, ErrorCode::InvalidArgument, "not ephemeral");
    let r = t.open_all(&op, MAP, create_dir());
    absent(&mut t, r, ErrorCode::InvalidArgument, "as a file");
    t.open_all(&op, MAP, create_file(map(1), false)).unwrap();
    assert_eq!(t.m.map_epoch(), 1);
}

#[test]
fn the_map_file_is_never_deleted() {
    let (mut t, op, h) = T::meta_with_map();
    let before = t.snapshot();
    let r = t.m.delete(&op, &h, t.at(2.0));
    t.refused(
        r,
        ErrorCode::InvalidArgument,
        &["cannot be deleted", "no way to un-partition a deployment"],
        &before,
    );
    // Nor is the directory holding it, while it does.
    let d = t.open_all(&op, "/ls/local/warren", None).unwrap().handle;
    t.m.take_output();
    let r = t.m.delete(&op, &d, t.at(2.0));
    t.refused(r, ErrorCode::NotEmpty, &["delete them first"], &before);
}

#[test]
fn the_next_map_from_the_operator_is_accepted_and_in_force() {
    let (mut t, op, h) = T::meta_with_map();
    let route = |t: &T| match t.m.map().unwrap().route("/ls/local/x", false).unwrap() {
        Route::Cell { cell, .. } => cell.to_string(),
        Route::Meta => "meta".into(),
    };
    let first = route(&t);
    let st = t.set(&op, &h, &map(2)).unwrap();
    assert_eq!(st.meta.content_generation, 1);
    assert_eq!(t.m.map_epoch(), 2);
    assert_ne!(route(&t), first, "the new map routes");
    let muts = t.m.take_output().mutations;
    assert!(
        muts.iter().any(|m| matches!(
            m,
            Mutation::PutContents { path, data } if path == MAP && *data == map(2)
        )),
        "the new map is committed: {muts:?}"
    );
    assert_eq!(t.m.status().map_epoch, 2);
}

#[test]
fn an_unreadable_stored_map_is_repaired_by_a_newer_map() {
    let (mut t, op, h) = T::meta_with_map();
    t.set(&op, &h, &map(2)).unwrap();
    t.m.take_output();
    // The store's copy goes bad under the running master (as garbage written before the
    // guard existed would be): the map in force stays epoch 2.
    let garbage = br#"{"map_epoch": 4, "cells": "??"}"#.to_vec();
    t.m.nodes.get_mut(MAP).unwrap().contents = garbage.clone();
    assert_eq!(t.m.map_epoch(), 2);
    let before = t.snapshot();
    // Still only from the map code path, a map of this deployment, with its slot count.
    let alice = t.session_of("alice");
    let ha = t.open_all(&alice, MAP, None).unwrap().handle;
    t.m.take_output();
    let r = t.set(&alice, &ha, &map(5));
    t.refused(r, ErrorCode::PermissionDenied, &[], &before);
    let r = t.set(&op, &h, b"more garbage");
    t.refused(r, ErrorCode::InvalidArgument, &[], &before);
    let r = t.set(&op, &h, map_of("local", 5, 128).to_json().as_bytes());
    t.refused(r, ErrorCode::InvalidArgument, &["128 slots"], &before);
    // Not newer than the epoch the garbage names.
    let r = t.set(&op, &h, &map(4));
    t.refused(
        r,
        ErrorCode::GenerationMismatch,
        &[
            "does not hold a readable map",
            "epoch 4 must be above 4",
            "the unreadable file names epoch 4",
        ],
        &before,
    );
    // A newer map (not necessarily the next) repairs it.
    t.set(&op, &h, &map(5)).unwrap();
    assert_eq!(t.m.map_epoch(), 5);
    assert_eq!(t.stored().0, map(5));
    // Repaired, the strict rule is back.
    t.m.take_output();
    let before = t.snapshot();
    let r = t.set(&op, &h, &map(7));
    t.refused(r, ErrorCode::GenerationMismatch, &["+ 1"], &before);
}

#[test]
fn after_a_restart_on_an_unreadable_map_a_repair_is_above_the_garbage() {
    let (mut t, op, h) = T::meta_with_map();
    t.set(&op, &h, &map(2)).unwrap();
    // Restarted with no sessions to wait for (they ended with the old master).
    let mut muts: Vec<Mutation> =
        t.m.take_output()
            .mutations
            .into_iter()
            .filter(|m| !matches!(m, Mutation::PutSession(_)))
            .collect();
    muts.push(Mutation::PutContents {
        path: MAP.into(),
        data: b"\x00\x01 not json".to_vec(),
    });
    let m = Master::recover(
        CoreConfig::new("meta", "local"),
        snapshot_of(muts),
        t.t0,
        12,
    )
    .unwrap();
    let mut t = T { m, t0: t.t0 };
    assert_eq!(
        t.m.map_epoch(),
        0,
        "a map that does not parse is not in force"
    );
    t.m.take_output();
    let op = t.session_of(OPERATOR_PRINCIPAL);
    let h = t.open_all(&op, MAP, None).unwrap().handle;
    t.m.take_output();
    // The garbage names no epoch: any map of this deployment repairs it (the repair tool
    // takes one above every epoch the data cells report: they ignore older maps).
    t.set(&op, &h, &map(3)).unwrap();
    assert_eq!(t.m.map_epoch(), 3);
}
