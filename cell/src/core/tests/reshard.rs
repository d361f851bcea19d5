//! Tests of the cell's half of a reshard (docs/resharding.md) on two masters `c1` (source)
//! and `c2` (target) of one map: export and staging, catch-up by digests, the freeze that
//! parks writes, the hand-off as the commit point (and each refusal), installing at the
//! target when the map arrives, and dropping at the source.

use super::*;
use crate::core::reshard::{decode_bundle, decode_have, encode_bundle, encode_have, Have};
use warren_router::{slot_of_dir, PartitionMap};

fn map(epoch: u64, moved: &[(u32, &str)]) -> PartitionMap {
    let m =
        PartitionMap::even("local", &[("c1", vec!["h1:1"]), ("c2", vec!["h2:1"])], 4096).unwrap();
    let mut owners = m.slot_owners().to_vec();
    for (s, c) in moved {
        owners[*s as usize] = c.to_string();
    }
    PartitionMap::new("local", epoch, owners, m.cells().clone()).unwrap()
}

fn cell(name: &str) -> T {
    let mut cfg = CoreConfig::new(name, "local");
    cfg.meta = vec!["meta-host:7000".into()];
    let t0 = Instant::now();
    // Seeded by name: two cells must not mint the same session ids.
    let seed = name.bytes().map(u64::from).sum();
    let mut m = Master::recover(cfg, Snapshot::default(), t0, seed).unwrap();
    assert!(m.set_map(Arc::new(map(1, &[]))));
    m.take_output();
    T { m, t0 }
}

/// A directory under the root whose own slot belongs to `c1`.
fn dir_at_c1() -> String {
    let m = map(1, &[]);
    (0..100_000)
        .map(|i| format!("/ls/local/d{i}"))
        .find(|p| m.owner_of_slot(slot_of_dir(p, 4096)) == Some("c1"))
        .unwrap()
}

fn anchor_create() -> Option<CreateArgs> {
    Some(CreateArgs {
        kind: NodeKind::Directory,
        ephemeral: false,
        contents: Vec::new(),
        acl: Some(AclNames::default()),
        exclusive: false,
        instance: 42,
    })
}

struct Fixture {
    src: T,
    dst: T,
    dir: String,
    slot: u32,
    alice: Ctx,
    f1: Vec<u8>,
    f2: Vec<u8>,
    seq: SequencerView,
}

/// `c1` holds directory `dir` (its anchor), files `dir/f1` (locked by alice) and `dir/f2`.
fn fixture() -> Fixture {
    let mut src = cell("c1");
    let dir = dir_at_c1();
    let slot = slot_of_dir(&dir, 4096);
    let cellctx = ctx_of(&src.m.create_session(CELL_PRINCIPAL, src.at(0.0)).unwrap());
    let a = OpenArgs {
        target: Target::Anchor,
        ..open_args(&dir, intent::READ, 0.0, anchor_create())
    };
    done(src.m.open(&cellctx, &a, src.at(0.1)));
    // alice is a client of a proxy: her sub-session's id is the same at every cell.
    let proxy = src.proxy(0.0);
    let alice = for_client(&proxy, 1, "alice");
    let t0 = src.t0;
    let mkfile = |src: &mut T, name: &str, data: &[u8]| {
        let a = open_args(&format!("{dir}/{name}"), intent::ALL, 0.0, file(data));
        write(src, &[], |m| m.open(&alice, &a, t0 + secs(0.2))).handle
    };
    let f1 = mkfile(&mut src, "f1", b"one");
    let f2 = mkfile(&mut src, "f2", b"two");
    let seq = done(
        src.m
            .acquire(&alice, &f1, LockMode::Exclusive, None, src.at(0.4)),
    );
    src.m.take_output();
    Fixture {
        dst: cell("c2"),
        src,
        dir,
        slot,
        alice,
        f1,
        f2,
        seq,
    }
}

/// One copy round: export at the source (against `have`), import at the target.
fn round(f: &mut Fixture, have: &Have) -> (u64, u64, u64, Have) {
    let (bundle, info) = f.src.m.export_slots("j1", &[f.slot], have, 0).unwrap();
    // What travels is bytes.
    let bundle = decode_bundle(&encode_bundle(&bundle)).unwrap();
    let imported = f.dst.m.import_slots(&[f.slot], bundle).unwrap();
    let have = decode_have(&encode_have(&imported.have)).unwrap();
    (info.nodes, info.digest, imported.digest, have)
}

#[test]
fn a_slot_moves_with_its_contents_and_lock_and_the_source_stops_serving_it() {
    let mut f = fixture();
    let stats = f.src.m.slot_stats(&[f.slot]).unwrap();
    let c = stats[&f.slot];
    assert_eq!((c.nodes, c.bytes, c.held_locks), (2, 6, 1), "{c:?}");

    // Copy, then catch up: nothing changed, nothing travels.
    let (sent, src_digest, dst_digest, have) = round(&mut f, &Have::new());
    assert_eq!(sent, 3, "the anchor and both files");
    assert_eq!(src_digest, dst_digest);
    let (sent, _, _, have) = round(&mut f, &have);
    assert_eq!(sent, 0);

    // A write during catch-up travels in the next round, alone.
    let (t0, alice, f2) = (f.src.t0, f.alice.clone(), f.f2.clone());
    write(&mut f.src, &[], |m| {
        m.set_contents(&alice, &f2, b"two!", None, t0 + secs(1.0))
    });
    let (sent, src_digest, dst_digest, have) = round(&mut f, &have);
    assert_eq!(sent, 1);
    assert_eq!(src_digest, dst_digest);

    // Frozen: a write waits.
    f.src
        .m
        .freeze_slots("j1", &[f.slot], f.src.at(3.0))
        .unwrap();
    let parked = waiter(
        f.src
            .m
            .set_contents(&f.alice, &f.f2, b"late", None, f.src.at(1.1)),
    );
    let (_, digest, dst_digest, _) = round(&mut f, &have);
    assert_eq!(digest, dst_digest);

    // The hand-off: the parked write is woken and finds the slot gone.
    assert_eq!(
        f.src.m.hand_off("j1", &[f.slot], "c2", 2, digest).unwrap(),
        Ok(())
    );
    let out = f.src.m.take_output();
    assert!(out
        .wakes
        .iter()
        .any(|(w, k)| *w == parked && matches!(k, Wake::Retry)));
    let e = f
        .src
        .m
        .set_contents(&f.alice, &f.f2, b"late", None, f.src.at(1.2))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongCell);
    assert_eq!((e.map_epoch, e.owner.as_str()), (2, "c2"));
    // Idempotent.
    assert_eq!(
        f.src.m.hand_off("j1", &[f.slot], "c2", 2, digest).unwrap(),
        Ok(())
    );

    // The target installs when the map gives it the slot, and serves it as it was.
    assert!(f.dst.m.set_map(Arc::new(map(2, &[(f.slot, "c2")]))));
    let bob = f.dst.session(1.5);
    let h = f
        .dst
        .open_ok(&bob, &format!("{}/f2", f.dir), intent::READ, 0, None, 1.6);
    assert_eq!(h.stat.meta.content_generation, 1);
    let (data, _, _) = f
        .dst
        .m
        .get_contents(&bob, &h.handle, f.dst.at(1.7))
        .unwrap();
    assert_eq!(data, b"two!");
    assert!(
        f.dst
            .m
            .check_sequencer(&bob, &f.seq, f.dst.at(1.8))
            .unwrap(),
        "a sequencer taken before the move is current after it"
    );
    let a = OpenArgs {
        target: Target::Anchor,
        ..open_args(&f.dir, intent::READ, 0.0, None)
    };
    let d = done(f.dst.m.open(&bob, &a, f.dst.at(1.9)));
    let (entries, _, _) = f.dst.m.read_dir(&bob, &d.handle, f.dst.at(1.9)).unwrap();
    let names: Vec<String> = entries.into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec!["f1".to_string(), "f2".to_string()]);

    // alice's proxy, at the target, uses the handles the source made: they work, and the
    // lock is still hers.
    let proxy_t = f.dst.proxy(2.0);
    let alice_t = for_client(&proxy_t, 1, "alice");
    let (data, _, _) = f
        .dst
        .m
        .get_contents(&alice_t, &f.f2, f.dst.at(2.1))
        .unwrap();
    assert_eq!(data, b"two!");
    let still = f
        .dst
        .m
        .get_sequencer(&alice_t, &f.f1, f.dst.at(2.2))
        .unwrap();
    assert_eq!(still.lock_generation, f.seq.lock_generation);
    let hb = f
        .dst
        .open_ok(&bob, &format!("{}/f1", f.dir), intent::ALL, 0, None, 2.3);
    assert_eq!(
        f.dst
            .m
            .try_acquire(&bob, &hb.handle, LockMode::Exclusive, f.dst.at(2.4))
            .unwrap_err()
            .code,
        ErrorCode::LockHeld
    );
    assert!(
        f.dst.m.release(&alice_t, &f.f1, f.dst.at(2.5)).unwrap(),
        "alice held it"
    );

    // The source drops what it gave up once the map is in force there too.
    assert!(f.src.m.set_map(Arc::new(map(2, &[(f.slot, "c2")]))));
    assert_eq!(f.src.m.drop_slots(&[f.slot]).unwrap(), 3);
    assert!(f.src.m.slot_stats(&[f.slot]).unwrap().is_empty());
    // Its handles now answer WRONG_CELL naming the target, so routers follow.
    let e = f
        .src
        .m
        .get_contents(&f.alice, &f.f2, f.src.at(3.0))
        .unwrap_err();
    assert_eq!((e.code, e.owner.as_str()), (ErrorCode::WrongCell, "c2"));
}

#[test]
fn a_hand_off_is_refused_after_the_freeze_lapsed_or_a_change_and_nothing_moves() {
    let mut f = fixture();
    let (_, _, _, have) = round(&mut f, &Have::new());
    f.src
        .m
        .freeze_slots("j1", &[f.slot], f.src.at(2.0))
        .unwrap();
    let (_, digest, _, have) = round(&mut f, &have);

    // A lock let go while frozen (its handle closed: Release itself waits out the freeze)
    // changes the slot: the final copy is stale.
    f.src.m.close(&f.alice, &f.f1, f.src.at(1.0)).unwrap();
    let refused = f.src.m.hand_off("j1", &[f.slot], "c2", 2, digest).unwrap();
    assert!(refused
        .unwrap_err()
        .contains("changed since the final copy"));

    // The freeze lapses: the source serves writes again, and refuses the hand-off.
    let (_, digest, _, _) = round(&mut f, &have);
    f.src.m.tick(f.src.at(2.5));
    let (t0, alice, f2) = (f.src.t0, f.alice.clone(), f.f2.clone());
    write(&mut f.src, &[], |m| {
        m.set_contents(&alice, &f2, b"after", None, t0 + secs(2.6))
    });
    let refused = f.src.m.hand_off("j1", &[f.slot], "c2", 2, digest).unwrap();
    assert!(refused.unwrap_err().contains("freeze of slot"));
    let e = f
        .src
        .m
        .get_contents(&f.alice, &f.f2, f.src.at(2.7))
        .unwrap();
    assert_eq!(e.0, b"after");

    // Released: the target drops its staged copy; installing later finds nothing.
    f.dst.m.release_slots("j1", &[f.slot]);
    assert!(f.dst.m.set_map(Arc::new(map(2, &[(f.slot, "c2")]))));
    assert!(f.dst.m.slot_stats(&[f.slot]).unwrap().is_empty());
}

#[test]
fn staged_parts_survive_a_target_restart_and_install_then() {
    let mut f = fixture();
    let (_, _, _, _) = round(&mut f, &Have::new());
    let staged = f.dst.m.take_output().mutations;
    // A restart of the target: a new master from what the store holds.
    let mut cfg = CoreConfig::new("c2", "local");
    cfg.meta = vec!["meta-host:7000".into()];
    let mut all = vec![];
    all.extend(staged);
    let mut m = Master::recover(cfg, snapshot_of(all), f.dst.t0, 5).unwrap();
    assert!(m.set_map(Arc::new(map(2, &[(f.slot, "c2")]))));
    let c = m.slot_stats(&[f.slot]).unwrap()[&f.slot];
    assert_eq!((c.nodes, c.held_locks), (2, 1));
}

#[test]
fn imports_into_an_owned_slot_and_drops_of_an_owned_slot_are_refused() {
    let mut f = fixture();
    let (bundle, _) = f
        .src
        .m
        .export_slots("j1", &[f.slot], &Have::new(), 0)
        .unwrap();
    let e = f.src.m.import_slots(&[f.slot], bundle).unwrap_err();
    assert!(e.message.contains("already owns slot"), "{e}");
    let e = f.src.m.drop_slots(&[f.slot]).unwrap_err();
    assert!(e.message.contains("still owns slot"), "{e}");
    let e = decode_bundle(b"garbage").unwrap_err();
    assert!(e.message.contains("does not decode"), "{e}");
}

/// The events a KeepAlive of `ctx` returns now (none: it would be held).
fn events_of(t: &mut T, ctx: &Ctx, at: f64) -> Vec<Event> {
    match t.m.keepalive(ctx, 0, t.at(at)).unwrap() {
        Reply::Done(r) => r.events,
        Reply::Wait(w) => {
            t.m.cancel(w);
            Vec::new()
        }
    }
}

#[test]
fn a_watcher_is_told_of_the_move_and_gets_the_events_of_writes_at_the_target() {
    let mut f = fixture();
    let proxy = f.alice.clone();
    let watch = f.src.open_ok(
        &f.alice,
        &format!("{}/f2", f.dir),
        intent::READ,
        mask::CONTENTS_MODIFIED,
        None,
        0.5,
    );
    let (_, _, _, have) = round(&mut f, &Have::new());
    f.src
        .m
        .freeze_slots("j1", &[f.slot], f.src.at(3.0))
        .unwrap();
    let (_, digest, _, _) = round(&mut f, &have);
    // The first export invalidated the watcher's cached copy; the hand-off waits for it.
    let refused = f.src.m.hand_off("j1", &[f.slot], "c2", 2, digest).unwrap();
    assert!(refused.unwrap_err().contains("not invalidated yet"));
    acknowledge_everything(&mut f.src.m);
    let (_, open) = f
        .src
        .m
        .get_stat(&f.alice, &watch.handle, f.src.at(0.9))
        .unwrap();
    assert!(!open, "a moving slot is not cacheable");
    assert_eq!(
        f.src.m.hand_off("j1", &[f.slot], "c2", 2, digest).unwrap(),
        Ok(())
    );
    // At the source, alice's proxy learns where alice's handles went.
    let proxy_ctx = Ctx {
        client: None,
        ..proxy
    };
    let told = events_of(&mut f.src, &proxy_ctx, 1.0);
    let moved: Vec<&Event> = told
        .iter()
        .filter(|e| e.kind == EventKind::SlotMoved && e.client == Some(cid(1)))
        .collect();
    assert!(
        moved
            .iter()
            .any(|e| e.handle == watch.handle && e.child == "c2"),
        "{told:?}"
    );

    // At the target, a write after the move: the watcher's event waits for alice's proxy.
    assert!(f.dst.m.set_map(Arc::new(map(2, &[(f.slot, "c2")]))));
    let bob = f.dst.session(1.5);
    let hb = f
        .dst
        .open_ok(&bob, &format!("{}/f2", f.dir), intent::ALL, 0, None, 1.6);
    let t0 = f.dst.t0;
    write(&mut f.dst, &[], |m| {
        m.set_contents(&bob, &hb.handle, b"after the move", None, t0 + secs(1.7))
    });
    let proxy_t = f.dst.proxy(2.0);
    f.dst
        .m
        .claim_session(&proxy_t, cid(1), csecret(1), "alice", None, f.dst.at(2.1))
        .unwrap();
    let got = events_of(&mut f.dst, &proxy_t, 2.2);
    assert!(
        got.iter().any(|e| e.kind == EventKind::ContentsModified
            && e.client == Some(cid(1))
            && e.handle == watch.handle),
        "the watcher's handle (made by the source) gets the event: {got:?}"
    );
}

#[test]
fn lock_calls_on_a_frozen_slot_are_retried_not_applied() {
    let mut f = fixture();
    f.src
        .m
        .freeze_slots("j1", &[f.slot], f.src.at(3.0))
        .unwrap();
    let e = f.src.m.release(&f.alice, &f.f1, f.src.at(1.0)).unwrap_err();
    assert_eq!(e.code, ErrorCode::FailoverInProgress, "{e}");
    let e = f
        .src
        .m
        .try_acquire(&f.alice, &f.f2, LockMode::Exclusive, f.src.at(1.0))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::FailoverInProgress, "{e}");
    // Once the freeze lapses, they go through.
    f.src.m.tick(f.src.at(3.5));
    assert!(f.src.m.release(&f.alice, &f.f1, f.src.at(3.6)).unwrap());
}

/// Moves `slots` from `src` to `dst` under map `next` (epoch `next.map_epoch()`): copy,
/// freeze, final copy, hand-off, install, drop — every step the job would make.
fn move_slots(src: &mut T, dst: &mut T, slots: &[u32], next: PartitionMap) {
    let (bundle, _) = src.m.export_slots("j", slots, &Have::new(), 0).unwrap();
    dst.m.import_slots(slots, bundle).unwrap();
    acknowledge_everything(&mut src.m);
    src.m.freeze_slots("j", slots, src.at(30.0)).unwrap();
    let (bundle, info) = src.m.export_slots("j", slots, &Have::new(), 0).unwrap();
    let imported = dst.m.import_slots(slots, bundle).unwrap();
    assert_eq!(info.digest, imported.digest);
    let epoch = next.map_epoch();
    let to = dst.m.cfg.cell.clone();
    assert_eq!(
        src.m.hand_off("j", slots, &to, epoch, info.digest).unwrap(),
        Ok(())
    );
    let next = Arc::new(next);
    assert!(dst.m.set_map(next.clone()));
    assert!(src.m.set_map(next));
    src.m.drop_slots(slots).unwrap();
    src.m.take_output();
    dst.m.take_output();
}

/// A lock whose node moves away and back (c1 → c2 → c1) is still its holder's: the
/// holder's handle, minted at c1, is c1's own again there, so the holder's `Acquire` finds
/// the lock already held and its `Release` lets go. Chaos finding 6 (docs/reliability.md):
/// the holder came back under the foreign number c2 had given it, its token resolved to
/// c1's own number, and the lock stayed held, its release answered "done" for nothing.
#[test]
fn a_lock_that_moves_away_and_back_is_still_released_by_its_holder() {
    let Fixture {
        mut src,
        mut dst,
        dir,
        slot,
        alice,
        f1,
        seq,
        ..
    } = fixture();
    move_slots(&mut src, &mut dst, &[slot], map(2, &[(slot, "c2")]));
    move_slots(&mut dst, &mut src, &[slot], map(3, &[]));
    assert!(src.m.nodes.contains_key(&format!("{dir}/f1")), "back at c1");
    let again = done(
        src.m
            .acquire(&alice, &f1, LockMode::Exclusive, None, src.at(5.0)),
    );
    assert_eq!(again.lock_generation, seq.lock_generation, "still alice's");
    let bob = src.session(5.0);
    let hb = src.open_ok(&bob, &format!("{dir}/f1"), intent::ALL, 0, None, 5.1);
    let e = src
        .m
        .try_acquire(&bob, &hb.handle, LockMode::Exclusive, src.at(5.2))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LockHeld, "{e}");
    assert!(
        src.m.release(&alice, &f1, src.at(5.3)).unwrap(),
        "alice held it"
    );
    let granted = src
        .m
        .try_acquire(&bob, &hb.handle, LockMode::Exclusive, src.at(5.4))
        .expect("free once alice let go");
    assert!(granted.lock_generation > seq.lock_generation);
}

fn names(t: &mut T, ctx: &Ctx, dir: &str, target: Target) -> Vec<String> {
    let a = OpenArgs {
        target,
        ..open_args(dir, intent::READ, 0.0, None)
    };
    let h = done(t.m.open(ctx, &a, t.at(5.0)));
    let (entries, _, _) = t.m.read_dir(ctx, &h.handle, t.at(5.0)).unwrap();
    t.m.close(ctx, &h.handle, t.at(5.0)).unwrap();
    entries.into_iter().map(|e| e.name).collect()
}

#[test]
fn a_directory_split_by_a_move_and_joined_by_the_next_keeps_its_entry_and_children() {
    // P and its child directory D both belong to c1 (one record for D: entry and anchor).
    let mut src = cell("c1");
    let mut dst = cell("c2");
    let m1 = map(1, &[]);
    let p = dir_at_c1();
    let d = (0..100_000)
        .map(|i| format!("{p}/d{i}"))
        .find(|d| m1.owner_of_slot(slot_of_dir(d, 4096)) == Some("c1"))
        .unwrap();
    let (sp, sd) = (slot_of_dir(&p, 4096), slot_of_dir(&d, 4096));
    assert_ne!(sp, sd);
    let cellctx = ctx_of(&src.m.create_session(CELL_PRINCIPAL, src.at(0.0)).unwrap());
    let a = OpenArgs {
        target: Target::Anchor,
        ..open_args(&p, intent::READ, 0.0, anchor_create())
    };
    done(src.m.open(&cellctx, &a, src.at(0.1)));
    let alice = src.session(0.0);
    let t0 = src.t0;
    let mk = |src: &mut T, path: &str, create: Option<CreateArgs>| {
        let a = open_args(path, intent::ALL, 0.0, create);
        write(src, &[], |m| m.open(&alice, &a, t0 + secs(0.2))).handle
    };
    mk(
        &mut src,
        &d,
        Some(CreateArgs {
            kind: NodeKind::Directory,
            ephemeral: false,
            contents: Vec::new(),
            acl: None,
            exclusive: false,
            instance: 0,
        }),
    );
    mk(&mut src, &format!("{d}/leaf"), file(b"leaf"));
    src.m.take_output();

    // Move P's slot: D's entry goes to c2, its anchor (with "leaf") stays at c1.
    let m2 = map(2, &[(sp, "c2")]);
    move_slots(&mut src, &mut dst, &[sp], m2);
    let bob = dst.session(1.0);
    let d_name = d.rsplit('/').next().unwrap().to_string();
    assert_eq!(names(&mut dst, &bob, &p, Target::Anchor), vec![d_name]);
    let carol = src.session(1.0);
    assert_eq!(
        names(&mut src, &carol, &d, Target::Anchor),
        vec!["leaf".to_string()]
    );
    assert!(src.m.nodes[&d].rec.anchor, "only D's anchor stays at c1");

    // Move D's slot too: its anchor joins its entry at c2, one node again.
    let m3 = map(3, &[(sp, "c2"), (sd, "c2")]);
    move_slots(&mut src, &mut dst, &[sd], m3);
    assert!(
        !dst.m.nodes[&d].rec.anchor,
        "entry and anchor are one node at c2"
    );
    assert!(!src.m.nodes.contains_key(&d), "c1 holds nothing of D");
    assert_eq!(
        names(&mut dst, &bob, &d, Target::Anchor),
        vec!["leaf".to_string()]
    );
    assert_eq!(names(&mut dst, &bob, &p, Target::Anchor).len(), 1);
    let h = dst.open_ok(&bob, &format!("{d}/leaf"), intent::READ, 0, None, 6.0);
    assert_eq!(
        dst.m.get_contents(&bob, &h.handle, dst.at(6.0)).unwrap().0,
        b"leaf"
    );
}

#[test]
fn the_reserved_subtree_never_moves() {
    let t = cell("c1");
    for (p, reserved) in [
        ("/ls/local/warren", true),
        ("/ls/local/warren/map", true),
        ("/ls/local/warren/reshard/job", true),
        ("/ls/local/warrens", false),
        ("/ls/local/a/warren", false),
        ("/ls/local", false),
    ] {
        assert_eq!(t.m.stored_reserved(p), reserved, "{p}");
        assert_eq!(warren_router::is_reserved(p), reserved, "{p}");
    }
}

#[test]
fn a_lock_delay_in_progress_moves_with_the_lock() {
    let mut f = fixture();
    // carol holds f2 with a 5 s lock-delay, and her session fails: the delay starts.
    let carol = f.src.session(0.0);
    let a = open_args(&format!("{}/f2", f.dir), intent::ALL, 5.0, None);
    let h = done(f.src.m.open(&carol, &a, f.src.at(0.5)));
    done(
        f.src
            .m
            .acquire(&carol, &h.handle, LockMode::Exclusive, None, f.src.at(0.6)),
    );
    // Keep alice's proxy session alive; carol's lease (12 s) runs out.
    let proxy = Ctx {
        client: None,
        ..f.alice.clone()
    };
    let _ = f.src.m.keepalive(&proxy, 0, f.src.at(10.0));
    f.src.m.tick(f.src.at(13.0));
    f.src.m.take_output();
    let (_, _, _, have) = round(&mut f, &Have::new());
    acknowledge_everything(&mut f.src.m);
    f.src
        .m
        .freeze_slots("j1", &[f.slot], f.src.at(30.0))
        .unwrap();
    let (_, digest, _, _) = round(&mut f, &have);
    assert_eq!(
        f.src.m.hand_off("j1", &[f.slot], "c2", 2, digest).unwrap(),
        Ok(())
    );
    assert!(f.dst.m.set_map(Arc::new(map(2, &[(f.slot, "c2")]))));
    // At the target the delay still holds the lock from a new holder, for what was left.
    let bob = f.dst.session(0.0);
    let hb = f
        .dst
        .open_ok(&bob, &format!("{}/f2", f.dir), intent::ALL, 0, None, 0.1);
    let e = f
        .dst
        .m
        .try_acquire(&bob, &hb.handle, LockMode::Exclusive, f.dst.at(0.2))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LockHeld, "{e}");
    f.dst.m.tick(f.dst.at(6.0));
    f.dst
        .m
        .try_acquire(&bob, &hb.handle, LockMode::Exclusive, f.dst.at(6.0))
        .expect("free once the delay has passed");
}

#[test]
fn acquires_waiting_at_the_source_keep_their_places_at_the_target() {
    let mut f = fixture();
    let proxy = Ctx {
        client: None,
        ..f.alice.clone()
    };
    // carol, then dave (clients of alice's proxy) wait for the lock alice holds on f1.
    let carol = for_client(&proxy, 2, "carol");
    let dave = for_client(&proxy, 3, "dave");
    let f1 = format!("{}/f1", f.dir);
    let hc = done(f.src.m.open(
        &carol,
        &open_args(&f1, intent::ALL, 0.0, None),
        f.src.at(0.5),
    ))
    .handle;
    let hd = done(f.src.m.open(
        &dave,
        &open_args(&f1, intent::ALL, 0.0, None),
        f.src.at(0.5),
    ))
    .handle;
    waiter(
        f.src
            .m
            .acquire(&carol, &hc, LockMode::Exclusive, None, f.src.at(0.6)),
    );
    waiter(
        f.src
            .m
            .acquire(&dave, &hd, LockMode::Exclusive, None, f.src.at(0.7)),
    );
    let (_, _, _, have) = round(&mut f, &Have::new());
    acknowledge_everything(&mut f.src.m);
    f.src
        .m
        .freeze_slots("j1", &[f.slot], f.src.at(30.0))
        .unwrap();
    let (_, digest, _, _) = round(&mut f, &have);
    assert_eq!(
        f.src.m.hand_off("j1", &[f.slot], "c2", 2, digest).unwrap(),
        Ok(())
    );
    // Both are told to go to the target.
    let woken: Vec<_> = f
        .src
        .m
        .take_output()
        .wakes
        .into_iter()
        .filter(|(_, w)| matches!(w, Wake::Acquire(Err(e)) if e.code == ErrorCode::WrongCell))
        .collect();
    assert_eq!(woken.len(), 2);
    assert!(f.dst.m.set_map(Arc::new(map(2, &[(f.slot, "c2")]))));

    let proxy_t = f.dst.proxy(0.5);
    let (alice_t, carol_t, dave_t) = (
        for_client(&proxy_t, 1, "alice"),
        for_client(&proxy_t, 2, "carol"),
        for_client(&proxy_t, 3, "dave"),
    );
    // alice lets go; bob, new at the target, may not jump the queue that moved.
    assert!(f.dst.m.release(&alice_t, &f.f1, f.dst.at(1.0)).unwrap());
    let bob = f.dst.session(1.0);
    let hb = f.dst.open_ok(&bob, &f1, intent::ALL, 0, None, 1.1);
    let e = f
        .dst
        .m
        .try_acquire(&bob, &hb.handle, LockMode::Exclusive, f.dst.at(1.2))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LockHeld, "{e}");
    // dave's Acquire comes back first, but carol's place is before his: he waits.
    let wd = waiter(
        f.dst
            .m
            .acquire(&dave_t, &hd, LockMode::Exclusive, None, f.dst.at(1.3)),
    );
    // carol's comes back: granted at once (ahead of dave's, which was queued first).
    let wc = waiter(
        f.dst
            .m
            .acquire(&carol_t, &hc, LockMode::Exclusive, None, f.dst.at(1.4)),
    );
    let wakes = f.dst.m.take_output().wakes;
    assert!(
        wakes
            .iter()
            .any(|(w, k)| *w == wc && matches!(k, Wake::Acquire(Ok(_)))),
        "{wakes:?}"
    );
    assert!(!wakes.iter().any(|(w, _)| *w == wd), "dave still waits");
    // Then dave's, when she lets go.
    assert!(f.dst.m.release(&carol_t, &hc, f.dst.at(1.5)).unwrap());
    let wakes = f.dst.m.take_output().wakes;
    assert!(
        wakes
            .iter()
            .any(|(w, k)| *w == wd && matches!(k, Wake::Acquire(Ok(_)))),
        "{wakes:?}"
    );
}

#[test]
fn a_kept_place_lapses_if_its_waiter_does_not_come_back() {
    let mut f = fixture();
    let proxy = Ctx {
        client: None,
        ..f.alice.clone()
    };
    let carol = for_client(&proxy, 2, "carol");
    let f1 = format!("{}/f1", f.dir);
    let hc = done(f.src.m.open(
        &carol,
        &open_args(&f1, intent::ALL, 0.0, None),
        f.src.at(0.5),
    ))
    .handle;
    waiter(
        f.src
            .m
            .acquire(&carol, &hc, LockMode::Exclusive, None, f.src.at(0.6)),
    );
    let (_, _, _, have) = round(&mut f, &Have::new());
    acknowledge_everything(&mut f.src.m);
    f.src
        .m
        .freeze_slots("j1", &[f.slot], f.src.at(30.0))
        .unwrap();
    let (_, digest, _, _) = round(&mut f, &have);
    assert_eq!(
        f.src.m.hand_off("j1", &[f.slot], "c2", 2, digest).unwrap(),
        Ok(())
    );
    assert!(f.dst.m.set_map(Arc::new(map(2, &[(f.slot, "c2")]))));
    let proxy_t = f.dst.proxy(0.5);
    let alice_t = for_client(&proxy_t, 1, "alice");
    assert!(f.dst.m.release(&alice_t, &f.f1, f.dst.at(1.0)).unwrap());
    let bob = f.dst.session(1.0);
    let hb = f.dst.open_ok(&bob, &f1, intent::ALL, 0, None, 1.1);
    let wb = waiter(
        f.dst
            .m
            .acquire(&bob, &hb.handle, LockMode::Exclusive, None, f.dst.at(1.2)),
    );
    f.dst.m.take_output();
    // carol never comes back: after the kept place lapses, bob gets the lock.
    f.dst
        .m
        .tick(f.dst.at(1.0) + crate::core::reshard::PLACE_HOLD + secs(0.1));
    let wakes = f.dst.m.take_output().wakes;
    assert!(
        wakes
            .iter()
            .any(|(w, k)| *w == wb && matches!(k, Wake::Acquire(Ok(_)))),
        "{wakes:?}"
    );
}

/// A node with the largest instance, in an import or in a staged record read back at a
/// restart, is refused or dropped, not installed: installing it would move the instance
/// counter past the largest (an overflow the fuzz target `store_records` found,
/// docs/fuzzing.md).
#[test]
fn a_staged_node_with_the_largest_instance_is_refused_not_overflowed() {
    let mut f = fixture();
    let (mut bundle, _) = f
        .src
        .m
        .export_slots("j1", &[f.slot], &Have::new(), 0)
        .unwrap();
    bundle.nodes[0].2.rec.meta.instance = u64::MAX;
    let e = f.dst.m.import_slots(&[f.slot], bundle).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert!(e.message.contains("no cell assigns"), "{e}");

    // The same node staged by an earlier import, corrupted in the store.
    let (_, _, _, _) = round(&mut f, &Have::new());
    let mut staged = f.dst.m.take_output().mutations;
    let mut corrupted = 0;
    for m in &mut staged {
        if let Mutation::PutStaged { value, .. } = m {
            let mut n: crate::core::reshard::StagedNode = serde_json::from_slice(value).unwrap();
            n.rec.meta.instance = u64::MAX;
            *value = serde_json::to_vec(&n).unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted > 0);
    let mut cfg = CoreConfig::new("c2", "local");
    cfg.meta = vec!["meta-host:7000".into()];
    let mut m = Master::recover(cfg, snapshot_of(staged), f.dst.t0, 5).unwrap();
    let dropped = m
        .take_output()
        .mutations
        .iter()
        .filter(|x| matches!(x, Mutation::DeleteStaged { .. }))
        .count();
    assert_eq!(
        dropped, corrupted,
        "every corrupted staged record is dropped"
    );
    assert!(m.set_map(Arc::new(map(2, &[(f.slot, "c2")]))));
    let stats = m.slot_stats(&[f.slot]).unwrap();
    assert_eq!(
        stats.get(&f.slot).map_or(0, |c| c.nodes),
        0,
        "nothing installed"
    );
}
