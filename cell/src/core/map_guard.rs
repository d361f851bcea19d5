//! Who may change the partition map, and to what (docs/partitioning.md, "Who may write the
//! map"): the checks every write that reaches the map file `/ls/<d>/warren/map` passes at
//! the cell that reads its map from its own namespace (the meta cell, or an unpartitioned
//! cell), before anything changes.
//!
//! A map write is accepted only from the map code path (principals [`OPERATOR_PRINCIPAL`]
//! and [`CELL_PRINCIPAL`]), only if it parses as a map of this deployment with the slot
//! count in force, and only if it raises the map epoch by exactly one over the map in
//! force. The map file is never deleted. One exception repairs a broken store: while the
//! stored file does not hold a readable map of this deployment (garbage written before
//! these checks existed, a damaged store), a map with any epoch above both the map in force
//! and the epoch the garbage names, if it names one, is accepted — `warren ctl map repair`
//! writes it, one above every epoch the cells report, because a router ignores any map
//! not newer than its own.

use super::{Master, CELL_PRINCIPAL, OPERATOR_PRINCIPAL};
use crate::store::NodeKind;
use warren_proto::WarrenError;
use warren_router::PartitionMap;

/// What the map file holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stored {
    /// No map file: the next map is the first (of this cell's life, if one is in force).
    Absent,
    /// A map of this deployment.
    Readable,
    /// Contents that are not a map of this deployment; with the `map_epoch` they name, if
    /// they are JSON with one.
    Unreadable(Option<u64>),
}

/// How the map at `path` is changed: the "fix" half of the errors.
fn how(path: &str) -> String {
    format!(
        "the partition map at {path} is changed only by `warren ctl deployment init` (the first \
         map), `warren ctl reshard` or `warren ctl map repair`"
    )
}

impl Master {
    /// Whether a write of `p` here changes the map in force: `p` is the map file and this
    /// cell reads its map from its own namespace.
    pub(super) fn is_own_map_file(&self, p: &str) -> bool {
        !self.is_data_cell() && p == self.map_file()
    }

    /// What the map file holds now.
    fn stored_map(&self) -> Stored {
        let Some(n) = self.nodes.get(&self.map_file()) else {
            return Stored::Absent;
        };
        match PartitionMap::from_json(&n.contents) {
            Ok(m) if m.deployment() == self.cfg.deployment => Stored::Readable,
            _ => Stored::Unreadable(
                serde_json::from_slice::<serde_json::Value>(&n.contents)
                    .ok()
                    .and_then(|v| v.get("map_epoch").and_then(serde_json::Value::as_u64)),
            ),
        }
    }

    /// Map writes come from the map code path only.
    fn check_map_writer(&self, principal: &str, what: &str) -> Result<(), WarrenError> {
        if principal == OPERATOR_PRINCIPAL || principal == CELL_PRINCIPAL {
            return Ok(());
        }
        Err(WarrenError::permission_denied(format!(
            "{what} refused: {} (principal {OPERATOR_PRINCIPAL:?}), not by principal {principal:?}",
            how(&self.map_file())
        )))
    }

    /// Checks a write of `data` as the new contents of the map file by `principal`: from
    /// the map code path, a map of this deployment, with the slot count in force, and the
    /// next epoch (see the module documentation for the repair exception). Changes nothing.
    pub(super) fn check_map_write(&self, principal: &str, data: &[u8]) -> Result<(), WarrenError> {
        let path = self.map_file();
        self.check_map_writer(principal, "writing the map")?;
        let map = PartitionMap::from_json(data).map_err(|e| {
            WarrenError::invalid_argument(format!(
                "the new contents are not a partition map ({e}); nothing was written: {}",
                how(&path)
            ))
        })?;
        if map.deployment() != self.cfg.deployment {
            return Err(WarrenError::invalid_argument(format!(
                "the map written to {path} is deployment {:?}'s, not {:?}'s; nothing was written: write a map naming {:?}",
                map.deployment(),
                self.cfg.deployment,
                self.cfg.deployment
            )));
        }
        let in_force = self.map_epoch();
        if let Some(cur) = &self.map {
            if map.slot_count() != cur.slot_count() {
                return Err(WarrenError::invalid_argument(format!(
                    "the map written to {path} has {} slots, the map in force (epoch {in_force}) {}; the slot count is fixed for the life of a deployment: move slots between cells instead (`warren ctl reshard`)",
                    map.slot_count(),
                    cur.slot_count()
                )));
            }
        }
        let epoch = map.map_epoch();
        match self.stored_map() {
            Stored::Unreadable(named) => {
                let floor = in_force.max(named.unwrap_or(0));
                if epoch <= floor {
                    return Err(WarrenError::generation_mismatch(format!(
                        "the map file {path} does not hold a readable map, so a repair is accepted, but its epoch {epoch} must be above {floor} (the map in force here is epoch {in_force}{}): `warren ctl map repair` picks one above every epoch the cells report",
                        named.map_or(String::new(), |n| format!(", the unreadable file names epoch {n}"))
                    )));
                }
            }
            Stored::Absent | Stored::Readable if epoch != in_force + 1 => {
                let first = if in_force == 0 {
                    " (the first map has epoch 1)"
                } else {
                    ""
                };
                return Err(WarrenError::generation_mismatch(format!(
                    "{}; this write's epoch {epoch} is not the map in force ({in_force}) + 1{first}: read the map again and write epoch {}",
                    how(&path),
                    in_force + 1
                )));
            }
            Stored::Absent | Stored::Readable => {}
        }
        Ok(())
    }

    /// Checks the creation of the map file (an `Open` with create) by `principal`: a
    /// plain, lasting file holding a map that passes [`Master::check_map_write`].
    pub(super) fn check_map_create(
        &self,
        principal: &str,
        kind: NodeKind,
        ephemeral: bool,
        contents: &[u8],
    ) -> Result<(), WarrenError> {
        self.check_map_writer(principal, "creating the map")?;
        if kind != NodeKind::File || ephemeral {
            return Err(WarrenError::invalid_argument(format!(
                "{} must be created as a file that is not ephemeral (it holds the partition map); nothing was created: {}",
                self.map_file(),
                how(&self.map_file())
            )));
        }
        self.check_map_write(principal, contents)
    }

    /// Checks a change of the map file's ACL names by `principal` (an ACL that kept the
    /// routers from reading the map would unroute them): the map code path only.
    pub(super) fn check_map_acl(&self, principal: &str) -> Result<(), WarrenError> {
        self.check_map_writer(principal, "changing the map's ACL")
    }

    /// The refusal of every delete of the map file.
    pub(super) fn map_delete_refused(&self) -> WarrenError {
        WarrenError::invalid_argument(format!(
            "{} is the partition map and cannot be deleted: there is no way to un-partition a deployment (its data lives in the cells the map names); {}",
            self.map_file(),
            how(&self.map_file())
        ))
    }
}
