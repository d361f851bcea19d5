//! A reshard plan: the diff of the map in force and a proposed map (which slots move, from
//! which cell to which), with what each moving slot holds, made before anything changes.
//!
//! A plan is made against one map epoch (`from_epoch`); applying it to a deployment whose
//! map has moved on is refused (the plan is stale). Its JSON form is what
//! `warren ctl reshard plan --out FILE` writes and `reshard apply FILE` reads: one object,
//! unknown fields rejected, `format` = [`PLAN_FORMAT`].
//!
//! A job commits a plan in batches, one new map per batch ([`Plan::next_map`]): the map in
//! force with that batch's slots given to their new owners and epoch + 1. Cells the plan
//! adds are in the map from the first batch (owning nothing until a batch gives them slots);
//! cells it removes leave the map once they own no slot.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use warren_router::{MapError, PartitionMap, Proposal};

/// The layout of [`Plan`]'s JSON.
pub const PLAN_FORMAT: u32 = 1;

/// What one slot, or a set of them, holds at its current owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveCounts {
    pub directories: u64,
    /// Files and directories.
    pub nodes: u64,
    /// Bytes of file contents.
    pub bytes: u64,
    pub held_locks: u64,
    pub ephemeral_nodes: u64,
    pub open_handles: u64,
    /// Distinct sessions holding a lock, a handle or an ephemeral open in the slot.
    pub sessions: u64,
}

impl MoveCounts {
    /// All zero: nothing in the slot.
    pub fn is_zero(&self) -> bool {
        *self == MoveCounts::default()
    }

    /// Adds `other` to these counts (sessions too: a sum over slots, which counts a session
    /// once per slot it has state in).
    pub fn add(&mut self, other: &MoveCounts) {
        self.directories += other.directories;
        self.nodes += other.nodes;
        self.bytes += other.bytes;
        self.held_locks += other.held_locks;
        self.ephemeral_nodes += other.ephemeral_nodes;
        self.open_handles += other.open_handles;
        self.sessions += other.sessions;
    }
}

/// One slot changing owner, with what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedMove {
    pub slot: u32,
    pub from: String,
    pub to: String,
    /// Left out when all zero (an empty slot).
    #[serde(default, skip_serializing_if = "MoveCounts::is_zero")]
    pub counts: MoveCounts,
}

/// A reshard plan (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub format: u32,
    pub deployment: String,
    /// The map epoch the plan was made against.
    pub from_epoch: u64,
    pub slot_count: u32,
    /// Every cell of the proposed map with its replicas' addresses.
    pub cells: BTreeMap<String, Vec<String>>,
    /// The slots that change owner, in ascending slot order.
    pub moves: Vec<PlannedMove>,
    /// The sum of the moves' counts.
    pub totals: MoveCounts,
}

/// Why a plan cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the plan is not valid JSON of format {PLAN_FORMAT}: {0}; make it again with `warren ctl reshard plan --out FILE`")]
    Malformed(String),
    #[error("the plan has format {0}, this Warren reads format {PLAN_FORMAT}; make it again with this version's `warren ctl reshard plan`")]
    Format(u32),
    #[error("the plan is for deployment {plan}, not {map}")]
    Deployment { plan: String, map: String },
    #[error("the plan is stale: it was made against map epoch {plan}, and the map in force is epoch {map}; make a new plan with `warren ctl reshard plan`")]
    Stale { plan: u64, map: u64 },
    #[error("the plan has {plan} slots, the deployment {map}")]
    SlotCount { plan: u32, map: u32 },
    #[error("the plan moves slot {slot} from {from}, but the map in force gives it to {owner}; make a new plan")]
    WrongSource {
        slot: u32,
        from: String,
        owner: String,
    },
    #[error("the plan moves slot {slot} to cell {to}, which the plan's cells do not list")]
    UnknownTarget { slot: u32, to: String },
    #[error("the plan moves slot {0} twice, or not in ascending order")]
    Unordered(u32),
    #[error("the plan moves slot {slot} to {to}, which already owns it")]
    NoMove { slot: u32, to: String },
    #[error("the plan removes cell {cell}, but it would still own slot {slot}")]
    RemovedCellKeepsSlots { cell: String, slot: u32 },
    #[error("the map the plan leads to is invalid: {0}")]
    Map(#[from] MapError),
}

impl Plan {
    /// A plan from a rebalancer proposal made against `current`, with no counts yet (see
    /// [`Plan::set_counts`]).
    pub fn from_proposal(current: &PartitionMap, proposal: &Proposal) -> Plan {
        let moves: Vec<PlannedMove> = proposal
            .moves
            .iter()
            .map(|m| PlannedMove {
                slot: m.slot,
                from: m.from.clone(),
                to: m.to.clone(),
                counts: MoveCounts::default(),
            })
            .collect();
        Plan {
            format: PLAN_FORMAT,
            deployment: current.deployment().to_string(),
            from_epoch: current.map_epoch(),
            slot_count: current.slot_count(),
            cells: proposal.map.cells().clone(),
            moves,
            totals: MoveCounts::default(),
        }
    }

    /// Fills in each move's counts from what the source cells reported (slots they did not
    /// report hold nothing) and the totals.
    pub fn set_counts(&mut self, counts: &BTreeMap<u32, MoveCounts>) {
        let mut totals = MoveCounts::default();
        for m in &mut self.moves {
            m.counts = counts.get(&m.slot).copied().unwrap_or_default();
            totals.add(&m.counts);
        }
        self.totals = totals;
    }

    /// Reads a plan's JSON, checking its format and internal consistency (not its
    /// freshness: see [`Plan::check_against`]).
    pub fn from_json(json: &[u8]) -> Result<Plan, PlanError> {
        let plan: Plan =
            serde_json::from_slice(json).map_err(|e| PlanError::Malformed(e.to_string()))?;
        if plan.format != PLAN_FORMAT {
            return Err(PlanError::Format(plan.format));
        }
        let mut last = None;
        for m in &plan.moves {
            if last.is_some_and(|l| l >= m.slot) || m.slot >= plan.slot_count {
                return Err(PlanError::Unordered(m.slot));
            }
            last = Some(m.slot);
            if !plan.cells.contains_key(&m.to) {
                return Err(PlanError::UnknownTarget {
                    slot: m.slot,
                    to: m.to.clone(),
                });
            }
            if m.from == m.to {
                return Err(PlanError::NoMove {
                    slot: m.slot,
                    to: m.to.clone(),
                });
            }
        }
        Ok(plan)
    }

    /// The plan's JSON (pretty-printed: operators read and keep plans).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan always serialises")
    }

    /// Checks that the plan applies to `map`, the map in force: same deployment and slot
    /// count, made against this very epoch, every move's source the slot's owner now, and
    /// the final map valid (a removed cell keeps no slot).
    pub fn check_against(&self, map: &PartitionMap) -> Result<(), PlanError> {
        if self.deployment != map.deployment() {
            return Err(PlanError::Deployment {
                plan: self.deployment.clone(),
                map: map.deployment().to_string(),
            });
        }
        if self.slot_count != map.slot_count() {
            return Err(PlanError::SlotCount {
                plan: self.slot_count,
                map: map.slot_count(),
            });
        }
        if self.from_epoch != map.map_epoch() {
            return Err(PlanError::Stale {
                plan: self.from_epoch,
                map: map.map_epoch(),
            });
        }
        for m in &self.moves {
            let owner = map.owner_of_slot(m.slot).unwrap_or_default();
            if owner != m.from {
                return Err(PlanError::WrongSource {
                    slot: m.slot,
                    from: m.from.clone(),
                    owner: owner.to_string(),
                });
            }
        }
        let all: Vec<u32> = self.moves.iter().map(|m| m.slot).collect();
        self.next_map(map, &all)?;
        Ok(())
    }

    /// The map that commits the moves of `slots` (a batch) on top of `current`: epoch + 1,
    /// those slots owned by their plan targets, the plan's added cells present, and a cell
    /// the plan removes dropped once it owns no slot. Slots not in the plan keep their
    /// owner; a slot of `slots` the plan does not move is an error.
    pub fn next_map(
        &self,
        current: &PartitionMap,
        slots: &[u32],
    ) -> Result<PartitionMap, PlanError> {
        let targets: BTreeMap<u32, &str> =
            self.moves.iter().map(|m| (m.slot, m.to.as_str())).collect();
        let mut owners: Vec<String> = current.slot_owners().to_vec();
        for &slot in slots {
            let to = targets.get(&slot).ok_or(PlanError::Unordered(slot))?;
            owners[slot as usize] = to.to_string();
        }
        let owning: BTreeSet<&str> = owners.iter().map(String::as_str).collect();
        let mut cells: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, replicas) in current.cells() {
            let kept = self.cells.contains_key(name);
            if kept || owning.contains(name.as_str()) {
                let replicas = self.cells.get(name).unwrap_or(replicas);
                cells.insert(name.clone(), replicas.clone());
            }
        }
        for (name, replicas) in &self.cells {
            cells
                .entry(name.clone())
                .or_insert_with(|| replicas.clone());
        }
        for (slot, owner) in owners.iter().enumerate() {
            if !cells.contains_key(owner) {
                return Err(PlanError::RemovedCellKeepsSlots {
                    cell: owner.clone(),
                    slot: slot as u32,
                });
            }
        }
        let epoch = current
            .map_epoch()
            .checked_add(1)
            .ok_or(MapError::EpochExhausted {
                map_epoch: current.map_epoch(),
            })?;
        Ok(PartitionMap::new(
            current.deployment(),
            epoch,
            owners,
            cells,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_router::rebalance;

    fn three() -> PartitionMap {
        PartitionMap::even(
            "local",
            &[
                ("a", vec!["127.0.0.1:7001"]),
                ("b", vec!["127.0.0.1:7002"]),
                ("c", vec!["127.0.0.1:7003"]),
            ],
            64,
        )
        .unwrap()
    }

    fn add_d(map: &PartitionMap) -> Plan {
        let target = BTreeMap::from([
            ("a".to_string(), 1),
            ("b".to_string(), 1),
            ("c".to_string(), 1),
            ("d".to_string(), 1),
        ]);
        let addresses = BTreeMap::from([("d".to_string(), vec!["127.0.0.1:7004".to_string()])]);
        Plan::from_proposal(map, &rebalance(map, &target, &addresses).unwrap())
    }

    #[test]
    fn a_plan_round_trips_and_its_batches_lead_to_the_proposal() {
        let map = three();
        let plan = add_d(&map);
        assert_eq!(plan.moves.len(), 16);
        let back = Plan::from_json(plan.to_json().as_bytes()).unwrap();
        assert_eq!(back, plan);
        plan.check_against(&map).unwrap();

        let slots: Vec<u32> = plan.moves.iter().map(|m| m.slot).collect();
        let first = plan.next_map(&map, &slots[..4]).unwrap();
        assert_eq!(first.map_epoch(), 2);
        assert_eq!(first.slot_counts()["d"], 4);
        let second = plan.next_map(&first, &slots[4..]).unwrap();
        assert_eq!(second.map_epoch(), 3);
        assert_eq!(second.slot_counts()["d"], 16);
        assert!(warren_router::diff(&map, &second)
            .unwrap()
            .iter()
            .all(|m| m.to == "d"));
    }

    #[test]
    fn a_stale_plan_or_a_wrong_source_is_refused() {
        let map = three();
        let plan = add_d(&map);
        let later = plan.next_map(&map, &[plan.moves[0].slot]).unwrap();
        assert!(matches!(
            plan.check_against(&later),
            Err(PlanError::Stale { plan: 1, map: 2 })
        ));
        let mut wrong = plan.clone();
        wrong.moves[0].from = "zz".into();
        assert!(matches!(
            wrong.check_against(&map),
            Err(PlanError::WrongSource { .. })
        ));
    }

    #[test]
    fn a_removed_cell_leaves_the_map_only_when_empty() {
        let map = three();
        let target = BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 1)]);
        let plan = Plan::from_proposal(&map, &rebalance(&map, &target, &BTreeMap::new()).unwrap());
        let c_slots: Vec<u32> = plan.moves.iter().map(|m| m.slot).collect();
        let half = plan.next_map(&map, &c_slots[..3]).unwrap();
        assert!(half.cells().contains_key("c"), "c still owns slots");
        let all = plan.next_map(&half, &c_slots[3..]).unwrap();
        assert!(!all.cells().contains_key("c"));
    }

    #[test]
    fn garbage_and_bad_plans_get_errors_naming_the_problem() {
        let e = Plan::from_json(b"{not json").unwrap_err();
        assert!(e.to_string().contains("reshard plan --out"), "{e}");
        let map = three();
        let mut plan = add_d(&map);
        plan.format = 9;
        assert!(matches!(
            Plan::from_json(plan.to_json().as_bytes()),
            Err(PlanError::Format(9))
        ));
        let mut plan = add_d(&map);
        plan.moves[1].slot = plan.moves[0].slot;
        assert!(matches!(
            Plan::from_json(plan.to_json().as_bytes()),
            Err(PlanError::Unordered(_))
        ));
    }
}
