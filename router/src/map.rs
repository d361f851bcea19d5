//! The versioned partition map (docs/design.md §11): slot → cell, cell → replica addresses, and its
//! stable serialised form (the file kept under `/ls/<deployment>/warren/` in the meta cell).
//!
//! A [`PartitionMap`] is valid by construction: every constructor and [`PartitionMap::from_json`]
//! run [`PartitionMap::validate`], and nothing mutates a map afterwards (a new map gets a new
//! map epoch). Routing with a valid map therefore only fails on a bad path.
//!
//! # Serialised form (format 1)
//!
//! Compact JSON, one object, unknown fields rejected (so a typo in a hand-edited map is
//! caught; a new field comes with a new `format` number):
//!
//! ```json
//! {"format":1,"deployment":"local","map_epoch":1,"slot_count":4096,
//!  "cells":{"a":{"replicas":["127.0.0.1:7001"],"slots":[[0,2047]]},
//!           "b":{"replicas":["127.0.0.1:7002"],"slots":[[2048,4095]]}}}
//! ```
//!
//! - `format`: always [`MAP_FORMAT`] for this layout.
//! - `deployment`: the `<deployment>` of `/ls/<deployment>/…` this map routes.
//! - `map_epoch`: the map's version, ≥ 1, +1 for every new map (0 means "no map known").
//! - `slot_count`: S, fixed when the deployment is created.
//! - `cells`: cell name → `replicas` (the `HOST:PORT` addresses of its replicas) and `slots`,
//!   the slots it owns as inclusive `[first, last]` ranges. Every slot in `0..slot_count`
//!   is in exactly one range of one cell; a cell may own no slots (for example one just
//!   added, before a reshard gives it any).
//!
//! Slots are stored as ranges per cell rather than one cell name per slot so that the
//! file stays small whatever the cell names (a fully fragmented 4096-slot map is still
//! under 50 KB, far below the 256 KiB file limit) and reads naturally in a reshard plan.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::hash::slot_of_dir;
use crate::path::{check_path, component_problem, routing_dir_of_valid, RouteError};

/// A cell's name: 1–63 characters of `[a-z0-9-]` (the same rule as the cell's `name` setting).
pub type CellName = String;

/// The serialised layout [`PartitionMap::to_json`] writes and [`PartitionMap::from_json`] reads.
pub const MAP_FORMAT: u32 = 1;

/// The largest slot count a map may have. A bound is needed so a corrupt or hostile map
/// cannot make a reader allocate without limit; 65536 is 16× the default.
pub const MAX_SLOTS: u32 = 65536;

const MAX_CELL_NAME_LEN: usize = 63;

/// Why a partition map is invalid. Each names the offending cell, slot or value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("partition map is not valid JSON for format {MAP_FORMAT}: {0}")]
    Json(String),
    #[error("partition map format {found} is not supported; this build reads format {MAP_FORMAT}")]
    UnsupportedFormat { found: u32 },
    #[error("partition map deployment {deployment:?} is invalid: it {reason}")]
    InvalidDeployment { deployment: String, reason: String },
    #[error("partition map has 0 slots; a deployment needs at least 1 (the default is 4096)")]
    ZeroSlots,
    #[error("partition map has {slots} slots; at most {MAX_SLOTS} are supported")]
    TooManySlots { slots: u64 },
    #[error("partition map epoch is 0; map epochs start at 1 (0 means \"no map known\")")]
    ZeroEpoch,
    #[error("partition map has no cells; it needs at least one to own the slots")]
    NoCells,
    #[error("cell {cell:?} is listed twice")]
    DuplicateCell { cell: String },
    #[error("cell name {cell:?} is invalid: {reason}")]
    InvalidCellName { cell: String, reason: String },
    #[error("cell {cell:?} has no replica addresses; give at least one HOST:PORT")]
    NoReplicas { cell: String },
    #[error("cell {cell:?} replica address {address:?} is invalid: {reason}")]
    InvalidAddress {
        cell: String,
        address: String,
        reason: String,
    },
    #[error("cell {cell:?} lists replica address {address:?} twice")]
    DuplicateReplica { cell: String, address: String },
    #[error("slot {slot} is owned by cell {cell:?}, which is not in the map's cell list")]
    UnknownCell { slot: u32, cell: String },
    #[error("cell {cell:?} slot range [{first}, {last}] is empty; ranges are [first, last] with first <= last")]
    EmptyRange { cell: String, first: u32, last: u32 },
    #[error("cell {cell:?} owns slot {slot}, but the map has only {slot_count} slots (0..={max})", max = slot_count.saturating_sub(1))]
    SlotOutOfRange {
        cell: String,
        slot: u32,
        slot_count: u32,
    },
    #[error("slot {slot} is owned by both cell {first:?} and cell {second:?}; each slot has exactly one owner")]
    SlotOwnedTwice {
        slot: u32,
        first: String,
        second: String,
    },
    #[error("slot {slot} is owned by no cell ({unowned} slots in all are unowned); every slot needs an owner")]
    SlotUnowned { slot: u32, unowned: u32 },
    #[error("the rebalance target names no cells; give at least one cell a weight above 0")]
    EmptyTarget,
    #[error("the rebalance target's weights add up to 0 ({cells} cells, all weight 0); at least one cell needs a weight above 0 to own the slots")]
    ZeroTotalWeight { cells: usize },
    #[error(
        "cell {cell:?} is new in the rebalance target but no replica addresses were given for it"
    )]
    MissingAddresses { cell: String },
    #[error("replica addresses were given for cell {cell:?}, which is not in the rebalance target; add it to the target with a weight, or drop its addresses")]
    AddressesWithoutWeight { cell: String },
    #[error("partition map epoch {map_epoch} is the largest possible; no newer map can be made")]
    EpochExhausted { map_epoch: u64 },
    #[error("cannot compare maps of {old} and {new} slots; the slot count is fixed for the life of a deployment")]
    SlotCountMismatch { old: u32, new: u32 },
    #[error("cannot compare maps of deployment {old:?} and deployment {new:?}")]
    DeploymentMismatch { old: String, new: String },
}

/// Where [`PartitionMap::route`] sends a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// The reserved subtree: the meta cell, whose address routers are given separately
    /// (it is where they read the map from).
    Meta,
    /// A data cell, owner of `slot`.
    Cell { cell: &'a str, slot: u32 },
}

/// Which cell owns each slot, and where each cell's replicas are, at one map epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMap {
    /// The `<deployment>` of the paths this map routes; paths of any other are refused.
    deployment: String,
    /// Version of this map; every routed call carries it so a cell can tell a stale router.
    map_epoch: u64,
    /// Slot → owning cell. Its length is the slot count S.
    slots: Vec<CellName>,
    /// Cell → its replicas' `HOST:PORT` addresses (master first is not implied; `Locate` says).
    cells: BTreeMap<CellName, Vec<String>>,
}

impl PartitionMap {
    /// A map from its parts, validated (see [`PartitionMap::validate`]).
    pub fn new(
        deployment: impl Into<String>,
        map_epoch: u64,
        slots: Vec<CellName>,
        cells: BTreeMap<CellName, Vec<String>>,
    ) -> Result<Self, MapError> {
        let map = Self {
            deployment: deployment.into(),
            map_epoch,
            slots,
            cells,
        };
        map.validate()?;
        Ok(map)
    }

    /// The one-cell map, epoch 1: every slot in `cell`.
    pub fn single_cell(
        deployment: &str,
        cell: &str,
        addrs: Vec<String>,
        slots: u32,
    ) -> Result<Self, MapError> {
        Self::even(deployment, &[(cell, addrs)], slots)
    }

    /// The initial map of a deployment, epoch 1: slots spread evenly over `cells`, in the
    /// order given, as **contiguous ranges**: cell `k` of `n` owns `[k·S/n, (k+1)·S/n)`, so
    /// counts differ by at most one.
    ///
    /// Contiguous rather than `i % n` because each cell's share is then one range, which is
    /// what the serialised form, status pages and reshard plans show; the spread of
    /// directories is the same either way, since neighbouring slots hold unrelated
    /// directories (the slot is a hash).
    pub fn even<N: AsRef<str>, A: AsRef<str>>(
        deployment: &str,
        cells: &[(N, Vec<A>)],
        slots: u32,
    ) -> Result<Self, MapError> {
        if cells.is_empty() {
            return Err(MapError::NoCells);
        }
        check_slot_count(u64::from(slots))?;
        let mut table = BTreeMap::new();
        for (name, addrs) in cells {
            let name = name.as_ref().to_owned();
            let addrs = addrs.iter().map(|a| a.as_ref().to_owned()).collect();
            if table.insert(name.clone(), addrs).is_some() {
                return Err(MapError::DuplicateCell { cell: name });
            }
        }
        let n = cells.len() as u64;
        let owners = (0..u64::from(slots))
            .map(|slot| {
                cells[(slot * n / u64::from(slots)) as usize]
                    .0
                    .as_ref()
                    .to_owned()
            })
            .collect();
        Self::new(deployment, 1, owners, table)
    }

    /// Checks every invariant: the deployment name is a valid path component; the epoch is
    /// ≥ 1; 1 ≤ slot count ≤ [`MAX_SLOTS`]; there is at least one cell; cell names are
    /// 1–63 characters of `[a-z0-9-]`; each cell has at least one replica, every replica
    /// address is `HOST:PORT` and none repeats within a cell; every slot is owned by a
    /// listed cell.
    pub fn validate(&self) -> Result<(), MapError> {
        if let Some(problem) = component_problem(&self.deployment) {
            return Err(MapError::InvalidDeployment {
                deployment: self.deployment.clone(),
                reason: problem.to_string(),
            });
        }
        if self.map_epoch == 0 {
            return Err(MapError::ZeroEpoch);
        }
        check_slot_count(self.slots.len() as u64)?;
        if self.cells.is_empty() {
            return Err(MapError::NoCells);
        }
        for (cell, addrs) in &self.cells {
            if let Some(reason) = cell_name_problem(cell) {
                return Err(MapError::InvalidCellName {
                    cell: cell.clone(),
                    reason,
                });
            }
            if addrs.is_empty() {
                return Err(MapError::NoReplicas { cell: cell.clone() });
            }
            for (i, address) in addrs.iter().enumerate() {
                if let Some(reason) = address_problem(address) {
                    return Err(MapError::InvalidAddress {
                        cell: cell.clone(),
                        address: address.clone(),
                        reason,
                    });
                }
                if addrs[..i].contains(address) {
                    return Err(MapError::DuplicateReplica {
                        cell: cell.clone(),
                        address: address.clone(),
                    });
                }
            }
        }
        let mut known: Option<&CellName> = None;
        for (slot, cell) in self.slots.iter().enumerate() {
            // Neighbouring slots mostly share an owner (maps are made of ranges).
            if known == Some(cell) {
                continue;
            }
            known = Some(cell);
            if !self.cells.contains_key(cell) {
                return Err(MapError::UnknownCell {
                    slot: slot as u32,
                    cell: cell.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    pub fn map_epoch(&self) -> u64 {
        self.map_epoch
    }

    /// S, the number of slots.
    pub fn slot_count(&self) -> u32 {
        // Validated to be at most MAX_SLOTS.
        self.slots.len() as u32
    }

    /// Every cell and its replica addresses, by name.
    pub fn cells(&self) -> &BTreeMap<CellName, Vec<String>> {
        &self.cells
    }

    /// The replica addresses of `cell`, or `None` if the map has no such cell.
    pub fn replicas(&self, cell: &str) -> Option<&[String]> {
        self.cells.get(cell).map(Vec::as_slice)
    }

    /// The owner of every slot, indexed by slot number (length [`PartitionMap::slot_count`]).
    pub fn slot_owners(&self) -> &[CellName] {
        &self.slots
    }

    /// The cell owning `slot`, or `None` if `slot >= slot_count()`.
    pub fn owner_of_slot(&self, slot: u32) -> Option<&str> {
        self.slots.get(slot as usize).map(String::as_str)
    }

    /// The slot holding the node at `path` (see [`crate::routing_dir`]), checking that the
    /// path is valid and in this map's deployment.
    pub fn slot_of_path(&self, path: &str) -> Result<u32, RouteError> {
        check_path(path, &self.deployment)?;
        Ok(slot_of_dir(routing_dir_of_valid(path), self.slot_count()))
    }

    /// The cell that holds the node at `path`: the owner of the slot of its parent directory
    /// (the deployment root: of itself).
    pub fn cell_for_path(&self, path: &str) -> Result<&str, RouteError> {
        let slot = self.slot_of_path(path)?;
        // slot < slot_count() by construction of slot_of_dir, and every slot has an owner.
        Ok(self.slots[slot as usize].as_str())
    }

    /// Where a call about `path` goes: the meta cell for the reserved subtree
    /// (`/ls/<deployment>/warren…`), otherwise the owner of the slot of its parent directory
    /// (`anchor = false`: the node itself) or of `path` itself (`anchor = true`: the child
    /// anchor of the directory `path`, which holds its children, docs/design.md §11).
    pub fn route(&self, path: &str, anchor: bool) -> Result<Route<'_>, RouteError> {
        check_path(path, &self.deployment)?;
        if crate::path::is_reserved(path) {
            return Ok(Route::Meta);
        }
        let dir = if anchor {
            path
        } else {
            routing_dir_of_valid(path)
        };
        let slot = slot_of_dir(dir, self.slot_count());
        Ok(Route::Cell {
            cell: self.slots[slot as usize].as_str(),
            slot,
        })
    }

    /// How many slots each cell owns; cells owning none are included with 0.
    pub fn slot_counts(&self) -> BTreeMap<String, u32> {
        let mut counts: BTreeMap<String, u32> = self.cells.keys().map(|c| (c.clone(), 0)).collect();
        // One lookup per run of slots with one owner (maps are made of ranges).
        let mut owners = self.slots.iter().peekable();
        while let Some(owner) = owners.next() {
            let mut run = 1;
            while owners.next_if_eq(&owner).is_some() {
                run += 1;
            }
            if let Some(n) = counts.get_mut(owner) {
                *n += run;
            }
        }
        counts
    }

    /// The slots `cell` owns, as ascending maximal inclusive ranges (empty if none, or if
    /// there is no such cell).
    pub fn slot_ranges(&self, cell: &str) -> Vec<RangeInclusive<u32>> {
        let mut ranges: Vec<RangeInclusive<u32>> = Vec::new();
        for (slot, owner) in self.slots.iter().enumerate() {
            if owner != cell {
                continue;
            }
            let slot = slot as u32;
            match ranges.last_mut() {
                Some(last) if *last.end() + 1 == slot => *last = *last.start()..=slot,
                _ => ranges.push(slot..=slot),
            }
        }
        ranges
    }

    /// The stable serialised form (see the module documentation): compact JSON.
    pub fn to_json(&self) -> String {
        let wire = MapJson {
            format: MAP_FORMAT,
            deployment: self.deployment.clone(),
            map_epoch: self.map_epoch,
            slot_count: self.slot_count(),
            cells: self
                .cells
                .iter()
                .map(|(cell, replicas)| {
                    let slots = self
                        .slot_ranges(cell)
                        .into_iter()
                        .map(|r| [*r.start(), *r.end()])
                        .collect();
                    let replicas = replicas.clone();
                    (cell.clone(), CellJson { replicas, slots })
                })
                .collect(),
        };
        serde_json::to_string(&wire).expect("a map of strings and integers always serialises")
    }

    /// Reads the serialised form, checking it completely: a map that comes back is valid.
    pub fn from_json(json: impl AsRef<[u8]>) -> Result<Self, MapError> {
        let wire: MapJson =
            serde_json::from_slice(json.as_ref()).map_err(|e| MapError::Json(e.to_string()))?;
        if wire.format != MAP_FORMAT {
            return Err(MapError::UnsupportedFormat { found: wire.format });
        }
        check_slot_count(u64::from(wire.slot_count))?;
        let slot_count = wire.slot_count;
        let mut owners: Vec<Option<&str>> = vec![None; slot_count as usize];
        for (cell, entry) in &wire.cells {
            for &[first, last] in &entry.slots {
                if first > last {
                    return Err(MapError::EmptyRange {
                        cell: cell.clone(),
                        first,
                        last,
                    });
                }
                if last >= slot_count {
                    return Err(MapError::SlotOutOfRange {
                        cell: cell.clone(),
                        slot: last,
                        slot_count,
                    });
                }
                for slot in first..=last {
                    let owner = &mut owners[slot as usize];
                    if let Some(first_owner) = owner {
                        return Err(MapError::SlotOwnedTwice {
                            slot,
                            first: (*first_owner).to_owned(),
                            second: cell.clone(),
                        });
                    }
                    *owner = Some(cell);
                }
            }
        }
        if let Some(slot) = owners.iter().position(Option::is_none) {
            return Err(MapError::SlotUnowned {
                slot: slot as u32,
                unowned: owners.iter().filter(|o| o.is_none()).count() as u32,
            });
        }
        let slots = owners
            .into_iter()
            .map(|o| o.unwrap_or_default().to_owned())
            .collect();
        let cells = wire
            .cells
            .into_iter()
            .map(|(cell, entry)| (cell, entry.replicas))
            .collect();
        Self::new(wire.deployment, wire.map_epoch, slots, cells)
    }
}

fn check_slot_count(slots: u64) -> Result<(), MapError> {
    if slots == 0 {
        return Err(MapError::ZeroSlots);
    }
    if slots > u64::from(MAX_SLOTS) {
        return Err(MapError::TooManySlots { slots });
    }
    Ok(())
}

pub(crate) fn cell_name_problem(cell: &str) -> Option<String> {
    if cell.is_empty() || cell.len() > MAX_CELL_NAME_LEN {
        return Some(format!(
            "it is {} bytes long; cell names are 1-{MAX_CELL_NAME_LEN} characters",
            cell.len()
        ));
    }
    let bad = cell
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))?;
    Some(format!(
        "it contains {bad:?}; cell names use only a-z 0-9 and -"
    ))
}

/// What is wrong with a replica address, which must be `HOST:PORT` (a bracketed IPv6
/// literal for IPv6: `[::1]:7000`) with a port from 1 to 65535.
fn address_problem(address: &str) -> Option<String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Some("it has no port; write HOST:PORT, e.g. 10.0.0.1:7000".to_owned());
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Some(format!("port {port:?} is not a number from 1 to 65535")),
        Ok(_) => {}
    }
    if host.is_empty() {
        return Some("the host is empty; write HOST:PORT".to_owned());
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("the host contains whitespace".to_owned());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Some("an IPv6 host must be in brackets, e.g. [::1]:7000".to_owned());
    }
    None
}

/// Format 1 on the wire; see the module documentation.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapJson {
    format: u32,
    deployment: String,
    map_epoch: u64,
    slot_count: u32,
    cells: BTreeMap<String, CellJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CellJson {
    replicas: Vec<String>,
    /// Inclusive `[first, last]` ranges.
    slots: Vec<[u32; 2]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(a: &str) -> Vec<String> {
        vec![a.to_owned()]
    }

    fn three_cells() -> PartitionMap {
        PartitionMap::even(
            "local",
            &[
                ("a", vec!["127.0.0.1:7001"]),
                ("b", vec!["127.0.0.1:7002", "127.0.0.1:7012"]),
                ("c", vec!["[::1]:7003"]),
            ],
            4096,
        )
        .unwrap()
    }

    #[test]
    fn single_cell_routes_everything_to_it() {
        let map = PartitionMap::single_cell("local", "m", addrs("127.0.0.1:7000"), 4096).unwrap();
        assert_eq!(map.map_epoch(), 1);
        assert_eq!(map.slot_count(), 4096);
        assert_eq!(map.deployment(), "local");
        for path in [
            "/ls/local",
            "/ls/local/a",
            "/ls/local/a/b/c",
            "/ls/local/warren/map",
        ] {
            assert_eq!(map.cell_for_path(path), Ok("m"));
        }
        assert_eq!(map.slot_counts(), BTreeMap::from([("m".to_owned(), 4096)]));
        assert_eq!(map.slot_ranges("m"), vec![0..=4095]);
        assert_eq!(map.replicas("m"), Some(&["127.0.0.1:7000".to_owned()][..]));
        assert_eq!(map.replicas("x"), None);
    }

    #[test]
    fn even_spread_is_contiguous_and_balanced() {
        let map = three_cells();
        assert_eq!(
            map.slot_counts(),
            BTreeMap::from([
                ("a".to_owned(), 1366),
                ("b".to_owned(), 1365),
                ("c".to_owned(), 1365),
            ])
        );
        assert_eq!(map.slot_ranges("a"), vec![0..=1365]);
        assert_eq!(map.slot_ranges("b"), vec![1366..=2730]);
        assert_eq!(map.slot_ranges("c"), vec![2731..=4095]);
        assert_eq!(map.owner_of_slot(0), Some("a"));
        assert_eq!(map.owner_of_slot(1365), Some("a"));
        assert_eq!(map.owner_of_slot(1366), Some("b"));
        assert_eq!(map.owner_of_slot(4095), Some("c"));
        assert_eq!(map.owner_of_slot(4096), None);
    }

    #[test]
    fn even_with_more_cells_than_slots_leaves_some_empty() {
        let cells: Vec<(String, Vec<String>)> = (0..5)
            .map(|i| (format!("c{i}"), addrs(&format!("h{i}:1"))))
            .collect();
        let map = PartitionMap::even("d", &cells, 3).unwrap();
        assert_eq!(map.slot_counts().values().sum::<u32>(), 3);
        assert_eq!(map.slot_counts().values().filter(|n| **n == 0).count(), 2);
        // Round trip keeps the empty cells.
        assert_eq!(PartitionMap::from_json(map.to_json()).unwrap(), map);
    }

    #[test]
    fn routes_by_parent_directory() {
        let map = three_cells();
        // `/ls/local/a/b` is in slot(`/ls/local/a`) = 3191, which is in c's range.
        assert_eq!(map.slot_of_path("/ls/local/a/b"), Ok(3191));
        assert_eq!(map.cell_for_path("/ls/local/a/b"), Ok("c"));
        // `/ls/local/a` and the root itself are in slot(`/ls/local`) = 299: cell a.
        assert_eq!(map.cell_for_path("/ls/local/a"), Ok("a"));
        assert_eq!(map.cell_for_path("/ls/local"), Ok("a"));
    }

    #[test]
    fn refuses_bad_paths_and_other_deployments() {
        let map = three_cells();
        assert!(matches!(
            map.cell_for_path("/ls/local/a b"),
            Err(RouteError::InvalidPath { .. })
        ));
        assert!(matches!(
            map.cell_for_path("/a/b"),
            Err(RouteError::InvalidPath { .. })
        ));
        let err = map.cell_for_path("/ls/prod/a").unwrap_err();
        assert_eq!(
            err,
            RouteError::WrongDeployment {
                path: "/ls/prod/a".to_owned(),
                deployment: "local".to_owned()
            }
        );
        assert!(err.to_string().contains("routes only /ls/local/"), "{err}");
    }

    #[test]
    fn constructors_validate() {
        let none: &[(&str, Vec<&str>)] = &[];
        assert_eq!(PartitionMap::even("d", none, 8), Err(MapError::NoCells));
        assert_eq!(
            PartitionMap::single_cell("d", "a", addrs("h:1"), 0),
            Err(MapError::ZeroSlots)
        );
        assert_eq!(
            PartitionMap::single_cell("d", "a", addrs("h:1"), MAX_SLOTS + 1),
            Err(MapError::TooManySlots {
                slots: u64::from(MAX_SLOTS) + 1
            })
        );
        assert!(PartitionMap::single_cell("d", "a", addrs("h:1"), MAX_SLOTS).is_ok());
        assert_eq!(
            PartitionMap::even("d", &[("a", vec!["h:1"]), ("a", vec!["h:2"])], 8),
            Err(MapError::DuplicateCell { cell: "a".into() })
        );
        assert!(matches!(
            PartitionMap::single_cell("d", "Cell_1", addrs("h:1"), 8),
            Err(MapError::InvalidCellName { .. })
        ));
        assert!(matches!(
            PartitionMap::single_cell("d", &"x".repeat(64), addrs("h:1"), 8),
            Err(MapError::InvalidCellName { .. })
        ));
        assert!(PartitionMap::single_cell("d", &"x".repeat(63), addrs("h:1"), 8).is_ok());
        assert!(matches!(
            PartitionMap::single_cell("a/b", "a", addrs("h:1"), 8),
            Err(MapError::InvalidDeployment { .. })
        ));
        assert_eq!(
            PartitionMap::single_cell("d", "a", vec![], 8),
            Err(MapError::NoReplicas { cell: "a".into() })
        );
        assert_eq!(
            PartitionMap::single_cell("d", "a", vec!["h:1".into(), "h:1".into()], 8),
            Err(MapError::DuplicateReplica {
                cell: "a".into(),
                address: "h:1".into()
            })
        );
        for bad in ["h", "h:", "h:0", "h:65536", ":7000", "::1:7000", "h x:1"] {
            assert!(
                matches!(
                    PartitionMap::single_cell("d", "a", addrs(bad), 8),
                    Err(MapError::InvalidAddress { .. })
                ),
                "{bad:?} accepted"
            );
        }
        for good in [
            "h:1",
            "10.0.0.1:65535",
            "[::1]:7000",
            "cell-a.example.com:7000",
        ] {
            assert!(PartitionMap::single_cell("d", "a", addrs(good), 8).is_ok());
        }
    }

    #[test]
    fn new_checks_owners_and_epoch() {
        let cells = BTreeMap::from([("a".to_owned(), addrs("h:1"))]);
        assert_eq!(
            PartitionMap::new("d", 0, vec!["a".into()], cells.clone()),
            Err(MapError::ZeroEpoch)
        );
        assert_eq!(
            PartitionMap::new("d", 3, vec!["a".into(), "b".into()], cells.clone()),
            Err(MapError::UnknownCell {
                slot: 1,
                cell: "b".into()
            })
        );
        let map = PartitionMap::new("d", 3, vec!["a".into(), "a".into()], cells).unwrap();
        assert_eq!(map.map_epoch(), 3);
    }

    #[test]
    fn json_form_is_stable() {
        let map = PartitionMap::even(
            "local",
            &[("a", vec!["127.0.0.1:7001"]), ("b", vec!["127.0.0.1:7002"])],
            8,
        )
        .unwrap();
        let json = map.to_json();
        assert_eq!(
            json,
            r#"{"format":1,"deployment":"local","map_epoch":1,"slot_count":8,"cells":{"a":{"replicas":["127.0.0.1:7001"],"slots":[[0,3]]},"b":{"replicas":["127.0.0.1:7002"],"slots":[[4,7]]}}}"#
        );
        assert_eq!(PartitionMap::from_json(&json).unwrap(), map);
        assert_eq!(PartitionMap::from_json(json.as_bytes()).unwrap(), map);
    }

    fn json_with(cells: &str, slot_count: u32) -> String {
        format!(
            r#"{{"format":1,"deployment":"local","map_epoch":2,"slot_count":{slot_count},"cells":{{{cells}}}}}"#
        )
    }

    #[test]
    fn from_json_reads_fragmented_ranges() {
        let json = json_with(
            r#""a":{"replicas":["h:1"],"slots":[[0,1],[4,4]]},"b":{"replicas":["h:2"],"slots":[[2,3],[5,7]]}"#,
            8,
        );
        let map = PartitionMap::from_json(&json).unwrap();
        assert_eq!(map.map_epoch(), 2);
        assert_eq!(map.slot_ranges("a"), vec![0..=1, 4..=4]);
        assert_eq!(map.slot_ranges("b"), vec![2..=3, 5..=7]);
        // Adjacent ranges in the input are merged on output; the map is the same.
        let split = json_with(
            r#""a":{"replicas":["h:1"],"slots":[[1,1],[0,0],[4,4]]},"b":{"replicas":["h:2"],"slots":[[2,3],[5,6],[7,7]]}"#,
            8,
        );
        assert_eq!(PartitionMap::from_json(&split).unwrap(), map);
    }

    #[test]
    fn from_json_names_the_problem() {
        let cases: Vec<(String, MapError)> = vec![
            (
                json_with(r#""a":{"replicas":["h:1"],"slots":[[0,6]]}"#, 8),
                MapError::SlotUnowned {
                    slot: 7,
                    unowned: 1,
                },
            ),
            (
                json_with(
                    r#""a":{"replicas":["h:1"],"slots":[[0,4]]},"b":{"replicas":["h:2"],"slots":[[4,7]]}"#,
                    8,
                ),
                MapError::SlotOwnedTwice {
                    slot: 4,
                    first: "a".into(),
                    second: "b".into(),
                },
            ),
            (
                json_with(r#""a":{"replicas":["h:1"],"slots":[[0,8]]}"#, 8),
                MapError::SlotOutOfRange {
                    cell: "a".into(),
                    slot: 8,
                    slot_count: 8,
                },
            ),
            (
                json_with(r#""a":{"replicas":["h:1"],"slots":[[5,2]]}"#, 8),
                MapError::EmptyRange {
                    cell: "a".into(),
                    first: 5,
                    last: 2,
                },
            ),
            (
                json_with(r#""a":{"replicas":["h:1"],"slots":[]}"#, 0),
                MapError::ZeroSlots,
            ),
            (
                json_with(r#""a":{"replicas":["h:1"],"slots":[[0,0]]}"#, 4_000_000_000),
                MapError::TooManySlots {
                    slots: 4_000_000_000,
                },
            ),
            (
                json_with(r#""a":{"replicas":[],"slots":[[0,7]]}"#, 8),
                MapError::NoReplicas { cell: "a".into() },
            ),
            (
                json_with(r#""A":{"replicas":["h:1"],"slots":[[0,7]]}"#, 8),
                MapError::InvalidCellName {
                    cell: "A".into(),
                    reason: "it contains 'A'; cell names use only a-z 0-9 and -".into(),
                },
            ),
            (
                r#"{"format":2,"deployment":"local","map_epoch":2,"slot_count":8,"cells":{}}"#
                    .to_owned(),
                MapError::UnsupportedFormat { found: 2 },
            ),
        ];
        for (json, want) in cases {
            assert_eq!(PartitionMap::from_json(&json), Err(want), "{json}");
        }
        let zero_epoch = r#"{"format":1,"deployment":"local","map_epoch":0,"slot_count":1,"cells":{"a":{"replicas":["h:1"],"slots":[[0,0]]}}}"#;
        assert_eq!(
            PartitionMap::from_json(zero_epoch),
            Err(MapError::ZeroEpoch)
        );

        for (json, fragment) in [
            ("", "EOF"),
            ("{", "EOF"),
            ("[]", "invalid length"),
            ("null", "invalid type"),
            (r#"{"format":1}"#, "missing field"),
            (
                r#"{"format":1,"deployment":"local","map_epoch":1,"slot_count":1,"cells":{},"extra":1}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"format":1,"deployment":"local","map_epoch":-1,"slot_count":1,"cells":{}}"#,
                "invalid value",
            ),
        ] {
            match PartitionMap::from_json(json) {
                Err(MapError::Json(msg)) => assert!(msg.contains(fragment), "{json}: {msg}"),
                other => panic!("{json}: expected a JSON error, got {other:?}"),
            }
        }
    }

    #[test]
    fn error_messages_read_well() {
        let err = MapError::SlotOutOfRange {
            cell: "a".into(),
            slot: 8,
            slot_count: 8,
        };
        assert_eq!(
            err.to_string(),
            "cell \"a\" owns slot 8, but the map has only 8 slots (0..=7)"
        );
    }
}
