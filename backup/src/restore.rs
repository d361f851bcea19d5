//! The restore transform and the checks before a restore (docs/backup.md, "Restore").
//!
//! **The counter jump.** Between the backup and the loss, the cell went on committing:
//! clients may have seen epochs, instance numbers and generations above the backup's.
//! The restored cell must never issue one of those numbers again, or a stale sequencer
//! or handle could pass as current. Every counter grows by at most one per committed
//! write, and a cell commits far fewer than [`JUMP`] = 2^40 writes between a backup and
//! its restore (at 100,000 writes/s that is 127 days), so restore adds `JUMP` to the
//! epoch, the next instance number and every node's content, lock and ACL generation.
//! A `u64` leaves room for 2^24 restores.

use crate::manifest::Manifest;
use warren_cell::store::{MetaRecord, Snapshot};

/// What restore adds to every monotonic counter.
pub const JUMP: u64 = 1 << 40;

/// Applies the counter jump to `snap` (see the module doc). Node instance numbers stay:
/// they name nodes clients hold handles on; `next_instance` jumps so new ones are above
/// any issued in the lost interval. Sessions and lock holders are kept; the new master's
/// recovery gives them their grace, as after any failover.
pub fn jump_counters(snap: &mut Snapshot) -> Result<(), String> {
    let bump = |v: u64, what: &str| {
        v.checked_add(JUMP)
            .ok_or_else(|| format!("{what} {v} would overflow after the restore's jump"))
    };
    if let Some(m) = &mut snap.meta {
        // Handles minted by masters after the backup carry these epochs: refused.
        m.lost_epochs.push(warren_cell::store::EpochRange {
            first: m.epoch + 1,
            last: bump(m.epoch, "the epoch")?,
        });
        m.epoch = bump(m.epoch, "the epoch")?;
        m.next_instance = bump(m.next_instance, "the next instance number")?;
    }
    for n in &mut snap.nodes {
        n.meta.content_generation = bump(n.meta.content_generation, "a content generation")?;
        n.meta.lock_generation = bump(n.meta.lock_generation, "a lock generation")?;
        n.meta.acl_generation = bump(n.meta.acl_generation, "an ACL generation")?;
    }
    jump_map_epoch(snap)
}

/// The map epoch is a counter clients see too: a reshard in the lost interval may have
/// committed maps above the backup's, and a router ignores any map not newer than the one
/// it holds (docs/partitioning.md). So the partition map file, where this cell holds one
/// (the meta cell, or an unpartitioned cell), is rewritten with its epoch raised by
/// [`JUMP`], its content checksum with it. A map file that does not parse is left as it
/// is, for `warren ctl map repair`, which writes a map above the epoch it names.
fn jump_map_epoch(snap: &mut Snapshot) -> Result<(), String> {
    let Some(meta) = &snap.meta else {
        return Ok(());
    };
    let file = format!(
        "{}/{}/map",
        warren_router::path::root_of(&meta.deployment),
        warren_router::RESERVED
    );
    let Some((_, data)) = snap.contents.iter_mut().find(|(p, _)| *p == file) else {
        return Ok(());
    };
    let Ok(map) = warren_router::PartitionMap::from_json(&data[..]) else {
        tracing::warn!(%file, "the map file does not parse; its epoch is left for `warren ctl map repair`");
        return Ok(());
    };
    let epoch = map.map_epoch().checked_add(JUMP).ok_or_else(|| {
        format!(
            "map epoch {} would overflow after the restore's jump",
            map.map_epoch()
        )
    })?;
    let jumped = warren_router::PartitionMap::new(
        map.deployment(),
        epoch,
        map.slot_owners().to_vec(),
        map.cells().clone(),
    )
    .map_err(|e| format!("the map at {file} with its epoch jumped: {e}"))?;
    *data = jumped.to_json().into_bytes();
    let checksum = xxhash_rust::xxh3::xxh3_64(data);
    if let Some(n) = snap.nodes.iter_mut().find(|n| n.path == file) {
        n.meta.checksum = checksum;
    }
    Ok(())
}

/// With `--force` over a store that held state: keeps every counter above what the
/// replaced store's clients may have seen too (its epoch, next instance and, per path, its
/// generations), so forcing a restore never takes a number back.
pub fn raise_above(snap: &mut Snapshot, target: &Snapshot) {
    if let (Some(m), Some(t)) = (&mut snap.meta, &target.meta) {
        if t.epoch >= m.epoch {
            m.lost_epochs.push(warren_cell::store::EpochRange {
                first: m.epoch + 1,
                last: t.epoch,
            });
            m.epoch = t.epoch + 1;
        }
        m.next_instance = m.next_instance.max(t.next_instance);
    }
    let old: std::collections::HashMap<&str, &warren_cell::store::NodeMeta> = target
        .nodes
        .iter()
        .map(|n| (n.path.as_str(), &n.meta))
        .collect();
    for n in &mut snap.nodes {
        if let Some(o) = old.get(n.path.as_str()) {
            let g = &mut n.meta;
            g.content_generation = g.content_generation.max(o.content_generation + 1);
            g.lock_generation = g.lock_generation.max(o.lock_generation + 1);
            g.acl_generation = g.acl_generation.max(o.acl_generation + 1);
        }
    }
}

/// Why a restore is refused, each naming the reason and the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error(
        "the backup belongs to deployment {backup:?}, the target cell to {target:?}; restore \
         a backup of {target:?}, or give --force to restore it anyway"
    )]
    OtherDeployment { backup: String, target: String },
    #[error(
        "the backup is of cell {backup:?}, the target is cell {target:?}; restore that \
         cell's backup, or give --force to restore it anyway"
    )]
    OtherCell { backup: String, target: String },
    #[error(
        "the target store already holds cell {cell:?} at epoch {target_epoch}, at or beyond \
         the backup's {backup_epoch} (after its jump): restoring would go back in time. Give \
         --force to replace it, or restore into an empty store"
    )]
    TargetNewer {
        cell: String,
        target_epoch: u64,
        backup_epoch: u64,
    },
    #[error(
        "the target store is not empty (it holds {what}); give --force to replace it, or \
         restore into an empty store"
    )]
    TargetNotEmpty { what: String },
    #[error("the backup has no meta record: it is not a cell's backup")]
    NoMeta,
}

/// The checks before a restore of `manifest`'s backup (already transformed to
/// `backup_meta`) into a cell named `cell` of `deployment` whose store holds `target`.
/// With `force`, only a backup that is not a cell's at all is refused. (A checksum
/// mismatch is refused before this, never overridable.)
pub fn check_target(
    manifest: &Manifest,
    backup_meta: Option<&MetaRecord>,
    deployment: &str,
    cell: &str,
    target: &Snapshot,
    force: bool,
) -> Result<(), Refusal> {
    let Some(meta) = backup_meta else {
        return Err(Refusal::NoMeta);
    };
    if force {
        return Ok(());
    }
    if manifest.deployment != deployment {
        return Err(Refusal::OtherDeployment {
            backup: manifest.deployment.clone(),
            target: deployment.into(),
        });
    }
    if manifest.cell != cell {
        return Err(Refusal::OtherCell {
            backup: manifest.cell.clone(),
            target: cell.into(),
        });
    }
    if let Some(t) = &target.meta {
        if t.epoch >= meta.epoch {
            return Err(Refusal::TargetNewer {
                cell: t.cell.clone(),
                target_epoch: t.epoch,
                backup_epoch: meta.epoch,
            });
        }
    }
    if target.meta.is_some() || !target.nodes.is_empty() || !target.sessions.is_empty() {
        return Err(Refusal::TargetNotEmpty {
            what: format!(
                "{} nodes, {} sessions{}",
                target.nodes.len(),
                target.sessions.len(),
                match &target.meta {
                    Some(m) => format!(", cell {:?} at epoch {}", m.cell, m.epoch),
                    None => String::new(),
                }
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::sample;
    use crate::format::Counts;

    fn manifest(snap: &Snapshot) -> Manifest {
        Manifest {
            version: 1,
            format: 1,
            deployment: "local".into(),
            cell: "c0".into(),
            epoch: 4,
            map_epoch: 0,
            taken_at: String::new(),
            taken_at_ms: 0,
            counts: Counts::of(snap),
            store: "embedded".into(),
            warren_version: "test".into(),
            data_bytes: 0,
            data_sha256: String::new(),
            handoffs_ahead_of_map: 0,
        }
    }

    #[test]
    fn every_counter_jumps_and_nothing_else_changes() {
        let before = sample();
        let mut after = before.clone();
        jump_counters(&mut after).unwrap();
        let (m0, m1) = (before.meta.clone().unwrap(), after.meta.clone().unwrap());
        assert_eq!(m1.epoch, m0.epoch + JUMP);
        assert_eq!(m1.next_instance, m0.next_instance + JUMP);
        assert_eq!(m1.secret, m0.secret, "the handle MAC key is kept");
        assert_eq!(m1.max_lease_granted_ms, m0.max_lease_granted_ms);
        assert_eq!(
            m1.lost_epochs,
            [warren_cell::store::EpochRange {
                first: m0.epoch + 1,
                last: m0.epoch + JUMP
            }]
        );
        for (a, b) in before.nodes.iter().zip(&after.nodes) {
            assert_eq!(b.meta.content_generation, a.meta.content_generation + JUMP);
            assert_eq!(b.meta.lock_generation, a.meta.lock_generation + JUMP);
            assert_eq!(b.meta.acl_generation, a.meta.acl_generation + JUMP);
            assert_eq!(b.meta.instance, a.meta.instance);
            assert_eq!(b.holders, a.holders);
        }
        assert_eq!(after.contents, before.contents);
        assert_eq!(after.sessions, before.sessions);
    }

    #[test]
    fn the_partition_map_epoch_jumps_with_its_checksum() {
        use warren_cell::store::{AclNames, NodeKind, NodeMeta, NodeRecord};
        let mut s = sample();
        let deployment = s.meta.as_ref().unwrap().deployment.clone();
        let file = format!("/ls/{deployment}/warren/map");
        let map = warren_router::PartitionMap::single_cell(
            &deployment,
            "c0",
            vec!["127.0.0.1:7000".into()],
            64,
        )
        .unwrap()
        .to_json()
        .into_bytes();
        s.nodes.push(NodeRecord {
            path: file.clone(),
            meta: NodeMeta {
                kind: NodeKind::File,
                instance: 99,
                content_generation: 1,
                lock_generation: 0,
                acl_generation: 0,
                checksum: xxhash_rust::xxh3::xxh3_64(&map),
                acl: AclNames::default(),
                ephemeral: false,
            },
            holders: vec![],
            anchor: false,
            anchor_pending: None,
        });
        s.contents.push((file.clone(), map));
        jump_counters(&mut s).unwrap();
        let (_, data) = s.contents.iter().find(|(p, _)| *p == file).unwrap();
        let jumped = warren_router::PartitionMap::from_json(data).unwrap();
        assert_eq!(jumped.map_epoch(), 1 + JUMP);
        assert_eq!(jumped.slot_counts(), [("c0".to_string(), 64)].into());
        let node = s.nodes.iter().find(|n| n.path == file).unwrap();
        assert_eq!(node.meta.checksum, xxhash_rust::xxh3::xxh3_64(data));
    }

    #[test]
    fn a_counter_near_the_top_is_an_error_not_a_wrap() {
        let mut s = sample();
        s.nodes[0].meta.lock_generation = u64::MAX - 5;
        let e = jump_counters(&mut s).unwrap_err();
        assert!(e.contains("lock generation"), "{e}");
    }

    #[test]
    fn refusals_name_the_reason_and_force_overrides_them() {
        let mut snap = sample();
        jump_counters(&mut snap).unwrap();
        let m = manifest(&snap);
        let meta = snap.meta.as_ref();
        let empty = Snapshot::default();
        check_target(&m, meta, "local", "c0", &empty, false).unwrap();

        let e = check_target(&m, meta, "prod", "c0", &empty, false).unwrap_err();
        assert!(matches!(e, Refusal::OtherDeployment { .. }));
        assert!(e.to_string().contains("--force"));
        let e = check_target(&m, meta, "local", "c9", &empty, false).unwrap_err();
        assert!(matches!(e, Refusal::OtherCell { .. }));

        let mut newer = sample();
        newer.meta.as_mut().unwrap().epoch = JUMP + 100;
        let e = check_target(&m, meta, "local", "c0", &newer, false).unwrap_err();
        assert!(matches!(e, Refusal::TargetNewer { .. }), "{e}");
        assert!(e.to_string().contains("go back in time"));

        let older = sample();
        let e = check_target(&m, meta, "local", "c0", &older, false).unwrap_err();
        assert!(matches!(e, Refusal::TargetNotEmpty { .. }), "{e}");

        for t in [&newer, &older] {
            check_target(&m, meta, "prod", "c9", t, true).unwrap();
        }
        assert_eq!(
            check_target(&m, None, "local", "c0", &empty, true),
            Err(Refusal::NoMeta)
        );
    }

    #[test]
    fn forcing_over_a_newer_store_never_takes_a_number_back() {
        let mut snap = sample();
        jump_counters(&mut snap).unwrap();
        let mut target = sample();
        {
            let t = target.meta.as_mut().unwrap();
            t.epoch = 5 * JUMP;
            t.next_instance = 6 * JUMP;
        }
        target.nodes[1].meta.lock_generation = 7 * JUMP;
        raise_above(&mut snap, &target);
        let m = snap.meta.as_ref().unwrap();
        assert_eq!(m.epoch, 5 * JUMP + 1);
        assert_eq!(m.next_instance, 6 * JUMP);
        assert_eq!(m.lost_epochs.last().unwrap().last, 5 * JUMP);
        assert_eq!(snap.nodes[1].meta.lock_generation, 7 * JUMP + 1);
        // A node only the backup has keeps its jumped generations.
        let backup_only = sample().nodes[0].meta.lock_generation + JUMP;
        assert_eq!(snap.nodes[0].meta.lock_generation, backup_only);
    }
}
