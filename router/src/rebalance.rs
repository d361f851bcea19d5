//! The weighted, minimum-movement rebalancer (docs/design.md §11) and the diff of two maps that a
//! reshard plan is made of (docs/design.md §12).
//!
//! [`rebalance`] takes the current [`PartitionMap`] and the cells the deployment should
//! have, each with an integer [`Weight`], and proposes the next map:
//!
//! 1. **Quotas.** Cell `c` should own `w_c · S / Σw` of the S slots. Each cell gets the
//!    floor of that, and the slots left over (fewer than the number of cells) go one each
//!    to the cells with the largest remainders (the largest-remainder, or Hamilton,
//!    method). So every quota is within 1 of the exact share and the quotas add up to S.
//!    Ties between equal remainders go first to a cell that owns more than its floor now
//!    (rounding it up lets it keep a slot it would otherwise give up, so one slot fewer
//!    moves; this is also what makes rebalancing a balanced map a no-op), then to the cell
//!    whose name sorts first. Among all largest-remainder quotas, these move the fewest
//!    slots.
//! 2. **Keep.** A cell at or under its quota keeps every slot it owns.
//! 3. **Move.** A cell over its quota gives up its surplus, its *highest-numbered* slots
//!    (so a contiguous range stays contiguous); a cell that leaves the map (absent from the
//!    target) gives up all of its slots. The freed slots, in ascending order, go to the
//!    cells under quota in name order, each taking as many as it lacks.
//!
//! The number of slots moved is then exactly `Σ max(0, before_c − quota_c)`, which is the
//! least any map with those per-cell counts can move: each of those slots has to leave
//! its cell. No slot leaves a cell that was not over quota, and no slot enters a cell that
//! ends over quota. The result is deterministic: the same map and target always give the
//! same proposal.
//!
//! [`diff`] lists the slots whose owner differs between two maps of one deployment; for a
//! proposal, `diff(old, &proposal.map)` is exactly `proposal.moves`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use crate::map::{cell_name_problem, CellName, MapError, PartitionMap};

/// A cell's relative capacity in a rebalance target: a cell of weight 2 gets twice the
/// slots of a cell of weight 1. Weight 0 keeps the cell in the map (with its addresses) but
/// gives it no slots.
///
/// 32 bits are ample for a ratio and keep the arithmetic exact without overflow:
/// `weight · S` is below 2⁴⁸ and the sum of the weights of fewer than 2³² cells fits in
/// 64 bits, so there is no "weight overflow" case to report.
pub type Weight = u32;

/// One slot changing owner.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotMove {
    pub slot: u32,
    /// The owner in the old map.
    pub from: CellName,
    /// The owner in the new map.
    pub to: CellName,
}

/// A run of consecutive slots moving between the same two cells: how a plan reads best.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveRun {
    /// The slots, inclusive.
    pub slots: RangeInclusive<u32>,
    pub from: CellName,
    pub to: CellName,
}

/// What a rebalance does to one cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellChange {
    /// The cell's weight in the target; `None` for a cell that leaves the map.
    pub weight: Option<Weight>,
    /// Whether the target adds this cell (it is not in the current map).
    pub added: bool,
    /// Slots it owns in the current map (0 for a cell the target adds).
    pub before: u32,
    /// Slots it owns in the proposed map: its quota (0 for a cell that leaves).
    pub after: u32,
}

impl CellChange {
    /// Slots this cell gives up: `max(0, before − after)`.
    pub fn gives(&self) -> u32 {
        self.before.saturating_sub(self.after)
    }

    /// Slots this cell receives: `max(0, after − before)`.
    pub fn receives(&self) -> u32 {
        self.after.saturating_sub(self.before)
    }
}

/// What [`rebalance`] proposes: the next map and how to get there from the current one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The proposed map: the current map's epoch + 1, the target's cells (with their
    /// addresses), every slot owned by one of them.
    pub map: PartitionMap,
    /// The slots that change owner, in ascending slot order. Equal to
    /// `diff(current, &self.map)`.
    pub moves: Vec<SlotMove>,
    /// Every cell of the current map and of the target, with its slot counts before and
    /// after.
    pub cells: BTreeMap<CellName, CellChange>,
}

impl Proposal {
    /// The moves grouped into runs of consecutive slots between the same two cells.
    pub fn move_runs(&self) -> Vec<MoveRun> {
        move_runs(&self.moves)
    }

    /// Cells the target adds (not in the current map).
    pub fn added_cells(&self) -> impl Iterator<Item = &str> {
        self.cells
            .iter()
            .filter(|(_, c)| c.added)
            .map(|(name, _)| name.as_str())
    }

    /// Cells of the current map that the proposed map drops (absent from the target).
    pub fn removed_cells(&self) -> impl Iterator<Item = &str> {
        self.cells
            .iter()
            .filter(|(_, c)| c.weight.is_none())
            .map(|(name, _)| name.as_str())
    }
}

/// Proposes the next partition map: the slots spread over the `target` cells in proportion
/// to their weights, moving as few slots as possible (see the module documentation for
/// the exact rule).
///
/// - `map`: the current map.
/// - `target`: every cell the new map should have, with its [`Weight`]. A cell of the
///   current map absent from `target` is drained and dropped from the new map; a cell of
///   weight 0 stays in the map but owns no slots.
/// - `addresses`: replica addresses (`HOST:PORT`) for cells the target adds, and new
///   addresses for existing cells (replacing theirs). A target cell already in the map and
///   not listed here keeps its current addresses.
///
/// Errors (nothing is proposed): [`MapError::EmptyTarget`]; [`MapError::InvalidCellName`]
/// for a target cell; [`MapError::ZeroTotalWeight`]; [`MapError::AddressesWithoutWeight`]
/// for an `addresses` entry whose cell is not in the target; [`MapError::MissingAddresses`]
/// for a new cell without addresses; [`MapError::NoReplicas`],
/// [`MapError::InvalidAddress`] or [`MapError::DuplicateReplica`] for bad addresses;
/// [`MapError::EpochExhausted`] if the current epoch is `u64::MAX`.
///
/// ```
/// use std::collections::BTreeMap;
/// use warren_router::{diff, rebalance, PartitionMap};
///
/// let map = PartitionMap::even(
///     "local",
///     &[("a", vec!["10.0.0.1:7000"]), ("b", vec!["10.0.0.2:7000"]), ("c", vec!["10.0.0.3:7000"])],
///     4096,
/// )?;
/// // Add cell d, at twice the weight of the others.
/// let target = BTreeMap::from([("a".into(), 1), ("b".into(), 1), ("c".into(), 1), ("d".into(), 2)]);
/// let addresses = BTreeMap::from([("d".into(), vec!["10.0.0.4:7000".into()])]);
/// let proposal = rebalance(&map, &target, &addresses)?;
///
/// assert_eq!(proposal.map.map_epoch(), 2);
/// // d's share is 4096 · 2/5 = 1638.4, the others' 819.2: floors 1638 + 3 · 819 = 4095,
/// // and the spare slot goes to the largest remainder, d's.
/// assert_eq!(proposal.map.slot_counts()["d"], 1639);
/// assert_eq!(proposal.map.slot_counts()["a"], 819);
/// // Only d's share moves, all of it to d.
/// assert_eq!(proposal.moves.len(), 1639);
/// assert!(proposal.moves.iter().all(|m| m.to == "d"));
/// assert_eq!(diff(&map, &proposal.map)?, proposal.moves);
/// # Ok::<(), warren_router::MapError>(())
/// ```
pub fn rebalance(
    map: &PartitionMap,
    target: &BTreeMap<CellName, Weight>,
    addresses: &BTreeMap<CellName, Vec<String>>,
) -> Result<Proposal, MapError> {
    if target.is_empty() {
        return Err(MapError::EmptyTarget);
    }
    for cell in target.keys() {
        if let Some(reason) = cell_name_problem(cell) {
            return Err(MapError::InvalidCellName {
                cell: cell.clone(),
                reason,
            });
        }
    }
    if let Some(cell) = addresses.keys().find(|c| !target.contains_key(*c)) {
        return Err(MapError::AddressesWithoutWeight { cell: cell.clone() });
    }
    let total_weight: u64 = target.values().map(|w| u64::from(*w)).sum();
    if total_weight == 0 {
        return Err(MapError::ZeroTotalWeight {
            cells: target.len(),
        });
    }
    let map_epoch = map
        .map_epoch()
        .checked_add(1)
        .ok_or(MapError::EpochExhausted {
            map_epoch: map.map_epoch(),
        })?;
    let mut table: BTreeMap<CellName, Vec<String>> = BTreeMap::new();
    for cell in target.keys() {
        let addrs = match (addresses.get(cell), map.replicas(cell)) {
            (Some(given), _) => given.clone(),
            (None, Some(current)) => current.to_vec(),
            (None, None) => return Err(MapError::MissingAddresses { cell: cell.clone() }),
        };
        table.insert(cell.clone(), addrs);
    }

    // Every cell of either map, by index in name order, and each slot's owner by index.
    let names: Vec<&str> = map
        .cells()
        .keys()
        .chain(target.keys())
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let owners = map.slot_owners();
    let mut owner_index: Vec<usize> = Vec::with_capacity(owners.len());
    let mut before_of = vec![0u32; names.len()];
    for owner in owners {
        // Neighbouring slots mostly share an owner (maps are made of ranges): skip the lookup.
        let i = match owner_index.last() {
            Some(&last) if names[last] == owner => last,
            _ => index[owner.as_str()],
        };
        owner_index.push(i);
        before_of[i] += 1;
    }
    let before: BTreeMap<&str, u32> = names.iter().copied().zip(before_of.clone()).collect();
    let quota = quotas(map.slot_count(), target, total_weight, &before);
    let quota_of: Vec<u32> = names
        .iter()
        .map(|n| quota.get(*n).copied().unwrap_or(0))
        .collect();

    // Free each over-quota cell's highest-numbered surplus slots.
    let mut surplus: Vec<u32> = before_of
        .iter()
        .zip(&quota_of)
        .map(|(b, q)| b.saturating_sub(*q))
        .collect();
    let mut freed: Vec<(u32, usize)> = Vec::new();
    for (slot, &from) in owner_index.iter().enumerate().rev() {
        if surplus[from] > 0 {
            surplus[from] -= 1;
            freed.push((slot as u32, from));
        }
    }
    freed.reverse();

    // Hand them out in ascending order to under-quota cells in name order.
    let mut receivers = (0..names.len()).flat_map(|i| {
        let deficit = quota_of[i].saturating_sub(before_of[i]);
        std::iter::repeat_n(i, deficit as usize)
    });
    let mut new_owners: Vec<CellName> = owners.to_vec();
    let mut moves = Vec::with_capacity(freed.len());
    for (slot, from) in freed {
        // Σ deficits = Σ surpluses, since both the old counts and the quotas add up to S.
        let to = receivers
            .next()
            .expect("every freed slot has a cell under quota to go to");
        new_owners[slot as usize] = names[to].to_owned();
        moves.push(SlotMove {
            slot,
            from: names[from].to_owned(),
            to: names[to].to_owned(),
        });
    }
    debug_assert!(receivers.next().is_none(), "a cell was left under quota");

    let cells = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let change = CellChange {
                weight: target.get(*name).copied(),
                added: map.replicas(name).is_none(),
                before: before_of[i],
                after: quota_of[i],
            };
            ((*name).to_owned(), change)
        })
        .collect();
    let new_map = PartitionMap::new(map.deployment(), map_epoch, new_owners, table)?;
    Ok(Proposal {
        map: new_map,
        moves,
        cells,
    })
}

/// Each target cell's quota of `slot_count` slots (largest-remainder method; see the
/// module documentation). `before` breaks ties between equal remainders.
fn quotas(
    slot_count: u32,
    target: &BTreeMap<CellName, Weight>,
    total_weight: u64,
    before: &BTreeMap<&str, u32>,
) -> BTreeMap<CellName, u32> {
    struct Share<'a> {
        name: &'a CellName,
        floor: u64,
        remainder: u64,
        /// Owns more than `floor` now, so rounding it up keeps a slot from moving.
        keeps: bool,
    }
    let slots = u64::from(slot_count);
    let mut shares: Vec<Share<'_>> = target
        .iter()
        .map(|(name, weight)| {
            // weight·S < 2⁴⁸: no overflow.
            let exact = u64::from(*weight) * slots;
            let floor = exact / total_weight;
            let current = before.get(name.as_str()).copied().unwrap_or(0);
            Share {
                name,
                floor,
                remainder: exact % total_weight,
                keeps: u64::from(current) > floor,
            }
        })
        .collect();
    let assigned: u64 = shares.iter().map(|s| s.floor).sum();
    // Σ remainders = (S − assigned) · Σw and each remainder < Σw, so fewer than the number
    // of cells with a non-zero remainder are left over.
    let left_over = (slots - assigned) as usize;
    // Largest remainder first; on a tie, a cell that can keep a slot it owns (rather than
    // any cell owning more: a cell at its floor gains nothing from owning more, and
    // preferring it would undo a previous rebalance's choice), then by name.
    shares.sort_by(|a, b| {
        (b.remainder.cmp(&a.remainder))
            .then(b.keeps.cmp(&a.keeps))
            .then(a.name.cmp(b.name))
    });
    shares
        .into_iter()
        .enumerate()
        .map(|(rank, share)| {
            let extra = u64::from(rank < left_over);
            // floor + extra ≤ S ≤ MAX_SLOTS: fits in u32.
            (share.name.clone(), (share.floor + extra) as u32)
        })
        .collect()
}

/// The slots whose owner differs between `old` and `new`, in ascending slot order.
///
/// Both maps must be of the same deployment and slot count
/// ([`MapError::DeploymentMismatch`], [`MapError::SlotCountMismatch`]). Changes of cell
/// addresses, and cells added or dropped without slots, are not moves.
pub fn diff(old: &PartitionMap, new: &PartitionMap) -> Result<Vec<SlotMove>, MapError> {
    if old.deployment() != new.deployment() {
        return Err(MapError::DeploymentMismatch {
            old: old.deployment().to_owned(),
            new: new.deployment().to_owned(),
        });
    }
    if old.slot_count() != new.slot_count() {
        return Err(MapError::SlotCountMismatch {
            old: old.slot_count(),
            new: new.slot_count(),
        });
    }
    Ok(old
        .slot_owners()
        .iter()
        .zip(new.slot_owners())
        .enumerate()
        .filter(|(_, (from, to))| from != to)
        .map(|(slot, (from, to))| SlotMove {
            slot: slot as u32,
            from: from.clone(),
            to: to.clone(),
        })
        .collect())
}

/// Groups moves (in ascending slot order, as [`diff`] and [`rebalance`] give them) into
/// maximal runs of consecutive slots between the same two cells.
pub fn move_runs(moves: &[SlotMove]) -> Vec<MoveRun> {
    let mut runs: Vec<MoveRun> = Vec::new();
    for m in moves {
        match runs.last_mut() {
            Some(run)
                if run.from == m.from
                    && run.to == m.to
                    && run.slots.end().checked_add(1) == Some(m.slot) =>
            {
                run.slots = *run.slots.start()..=m.slot;
            }
            _ => runs.push(MoveRun {
                slots: m.slot..=m.slot,
                from: m.from.clone(),
                to: m.to.clone(),
            }),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_cells() -> PartitionMap {
        PartitionMap::even(
            "local",
            &[
                ("a", vec!["10.0.0.1:7000"]),
                ("b", vec!["10.0.0.2:7000"]),
                ("c", vec!["10.0.0.3:7000"]),
            ],
            4096,
        )
        .unwrap()
    }

    type Target = BTreeMap<CellName, Weight>;
    type Addresses = BTreeMap<CellName, Vec<String>>;

    fn weights(pairs: &[(&str, Weight)]) -> Target {
        pairs.iter().map(|(c, w)| ((*c).to_owned(), *w)).collect()
    }

    fn addrs(pairs: &[(&str, &str)]) -> Addresses {
        pairs
            .iter()
            .map(|(c, a)| ((*c).to_owned(), vec![(*a).to_owned()]))
            .collect()
    }

    fn runs(runs: &[MoveRun]) -> Vec<(RangeInclusive<u32>, &str, &str)> {
        runs.iter()
            .map(|r| (r.slots.clone(), r.from.as_str(), r.to.as_str()))
            .collect()
    }

    fn counts(map: &PartitionMap) -> Vec<(String, u32)> {
        map.slot_counts().into_iter().collect()
    }

    /// `counts` as written in a test: `[("a", 2048), …]`.
    fn owned(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
        pairs.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect()
    }

    /// `map` rebalanced to the weights `pairs`, with no new addresses.
    fn reweighted(map: &PartitionMap, pairs: &[(&str, Weight)]) -> Proposal {
        rebalance(map, &weights(pairs), &BTreeMap::new()).unwrap()
    }

    #[test]
    fn adding_a_cell_moves_only_its_share() {
        let old = three_cells();
        let p = rebalance(
            &old,
            &weights(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]),
            &addrs(&[("d", "10.0.0.4:7000")]),
        )
        .unwrap();
        assert_eq!(p.map.map_epoch(), 2);
        assert_eq!(p.map.replicas("d"), Some(&["10.0.0.4:7000".to_owned()][..]));
        assert_eq!(p.map.replicas("a"), old.replicas("a"));
        for cell in ["a", "b", "c", "d"] {
            assert_eq!(p.map.slot_counts()[cell], 1024, "{cell}");
        }
        // 342 + 341 + 341: exactly the surplus, all of it to d.
        assert_eq!(p.moves.len(), 1024);
        assert!(p.moves.iter().all(|m| m.to == "d"));
        // Each donor gives up the top of its range and keeps a contiguous prefix.
        assert_eq!(
            runs(&p.move_runs()),
            vec![
                (1024..=1365, "a", "d"),
                (2390..=2730, "b", "d"),
                (3755..=4095, "c", "d")
            ]
        );
        assert_eq!(p.map.slot_ranges("a"), vec![0..=1023]);
        assert_eq!(p.map.slot_ranges("b"), vec![1366..=2389]);
        assert_eq!(p.added_cells().collect::<Vec<_>>(), vec!["d"]);
        assert_eq!(p.removed_cells().count(), 0);
        assert_eq!(
            p.cells["a"],
            CellChange {
                weight: Some(1),
                added: false,
                before: 1366,
                after: 1024
            }
        );
        assert_eq!(p.cells["a"].gives(), 342);
        assert_eq!(p.cells["d"].receives(), 1024);
        assert_eq!(diff(&old, &p.map).unwrap(), p.moves);
    }

    #[test]
    fn draining_a_cell_moves_exactly_its_slots() {
        let old = three_cells();
        let p = reweighted(&old, &[("a", 1), ("b", 1)]);
        assert_eq!(p.moves.len(), 1365);
        assert!(p.moves.iter().all(|m| m.from == "c"));
        assert_eq!(counts(&p.map), owned(&[("a", 2048), ("b", 2048)]));
        assert_eq!(p.map.replicas("c"), None);
        assert_eq!(p.removed_cells().collect::<Vec<_>>(), vec!["c"]);
        // Freed slots go in ascending order to the receivers in name order.
        assert_eq!(p.map.slot_ranges("a"), vec![0..=1365, 2731..=3412]);
        assert_eq!(p.map.slot_ranges("b"), vec![1366..=2730, 3413..=4095]);
        assert_eq!(
            p.cells["c"],
            CellChange {
                weight: None,
                added: false,
                before: 1365,
                after: 0
            }
        );
    }

    #[test]
    fn weights_set_the_shares() {
        let old = three_cells();
        let p = reweighted(&old, &[("a", 2), ("b", 1), ("c", 1)]);
        assert_eq!(
            counts(&p.map),
            owned(&[("a", 2048), ("b", 1024), ("c", 1024)])
        );
        assert_eq!(p.moves.len(), 2048 - 1366);
        // Weight 0 keeps the cell, and its addresses, with no slots.
        let p = reweighted(&old, &[("a", 1), ("b", 1), ("c", 0)]);
        assert_eq!(p.map.slot_counts()["c"], 0);
        assert_eq!(p.map.replicas("c"), old.replicas("c"));
        assert_eq!(p.removed_cells().count(), 0);
    }

    #[test]
    fn largest_remainder_quotas() {
        // 10 slots, weights 1:1:1 → 3.33 each; the spare slot goes to the cell that
        // already has 4, not by name.
        let cells = BTreeMap::from([
            ("a".to_owned(), vec!["h:1".to_owned()]),
            ("b".to_owned(), vec!["h:2".to_owned()]),
            ("c".to_owned(), vec!["h:3".to_owned()]),
        ]);
        let owners: Vec<CellName> = "aaabbbcccc".chars().map(String::from).collect();
        let map = PartitionMap::new("d", 7, owners, cells).unwrap();
        let even = weights(&[("a", 1), ("b", 1), ("c", 1)]);
        let p = rebalance(&map, &even, &BTreeMap::new()).unwrap();
        assert!(p.moves.is_empty());
        assert_eq!(p.map.map_epoch(), 8);
        assert_eq!(p.map.slot_owners(), map.slot_owners());
        // 10 slots at 5:3:2 over 3 cells → 5, 3, 2 exactly; at 1:1:5 → 1.43, 1.43, 7.14:
        // floors 1, 1, 7 and the spare slot to a (equal remainders, a holds more).
        let p = reweighted(&map, &[("a", 1), ("b", 1), ("c", 5)]);
        assert_eq!(counts(&p.map), owned(&[("a", 2), ("b", 1), ("c", 7)]));
        assert_eq!(p.moves.len(), 3);
    }

    #[test]
    fn ties_favour_a_cell_that_keeps_a_slot_not_the_biggest() {
        // Found by the property `rebalancing_a_balanced_map_moves_nothing`: 9 slots at
        // 1:4:4:2:7 give a 0.5 and f 3.5, an equal remainder. The first rebalance rounds a
        // up (it owns all 9, so keeps one); the second must not round f up instead just
        // because f now owns more (3 > 1): f is at its floor and gains nothing.
        let map = PartitionMap::single_cell("d", "a", vec!["h:1".into()], 9).unwrap();
        let target = weights(&[("a", 1), ("b", 4), ("c", 4), ("e", 2), ("f", 7)]);
        let new = addrs(&[("b", "h:2"), ("c", "h:3"), ("e", "h:5"), ("f", "h:6")]);
        let p = rebalance(&map, &target, &new).unwrap();
        assert_eq!(p.cells["a"].after, 1);
        assert_eq!(p.cells["f"].after, 3);
        assert_eq!(p.moves.len(), 8);
        let again = rebalance(&p.map, &target, &BTreeMap::new()).unwrap();
        assert!(again.moves.is_empty(), "{:?}", again.moves);
    }

    #[test]
    fn balanced_even_maps_do_not_move_whatever_the_cell_order() {
        let map = PartitionMap::even(
            "local",
            &[("c", vec!["h:3"]), ("b", vec!["h:2"]), ("a", vec!["h:1"])],
            4096,
        )
        .unwrap();
        // c got the spare slot (1366), though a sorts first.
        assert_eq!(map.slot_counts()["c"], 1366);
        let p = reweighted(&map, &[("a", 5), ("b", 5), ("c", 5)]);
        assert!(p.moves.is_empty());
    }

    #[test]
    fn addresses_can_be_replaced() {
        let old = three_cells();
        let p = rebalance(
            &old,
            &weights(&[("a", 1), ("b", 1), ("c", 1)]),
            &addrs(&[("b", "10.9.9.9:7000")]),
        )
        .unwrap();
        assert!(p.moves.is_empty());
        assert_eq!(p.map.replicas("b"), Some(&["10.9.9.9:7000".to_owned()][..]));
        assert_eq!(p.map.replicas("a"), old.replicas("a"));
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let old = three_cells();
        let p = reweighted(&old, &[("a", u32::MAX), ("b", u32::MAX), ("c", u32::MAX)]);
        assert!(p.moves.is_empty());
        let p = reweighted(&old, &[("a", u32::MAX), ("b", 1)]);
        assert_eq!(p.map.slot_counts()["a"], 4096);
        assert_eq!(p.map.slot_counts()["b"], 0);
    }

    #[test]
    fn errors_name_the_problem() {
        let old = three_cells();
        let none = BTreeMap::new();
        type Case = (Target, Addresses, MapError, &'static str);
        let cases: Vec<Case> = vec![
            (
                BTreeMap::new(),
                none.clone(),
                MapError::EmptyTarget,
                "names no cells",
            ),
            (
                weights(&[("a", 0), ("b", 0)]),
                none.clone(),
                MapError::ZeroTotalWeight { cells: 2 },
                "add up to 0 (2 cells",
            ),
            (
                weights(&[("a", 1), ("d", 1)]),
                none.clone(),
                MapError::MissingAddresses { cell: "d".into() },
                "cell \"d\" is new",
            ),
            (
                weights(&[("a", 1)]),
                addrs(&[("x", "h:1")]),
                MapError::AddressesWithoutWeight { cell: "x".into() },
                "not in the rebalance target",
            ),
            (
                weights(&[("Bad_Name", 1)]),
                none.clone(),
                MapError::InvalidCellName {
                    cell: "Bad_Name".into(),
                    reason: "it contains 'B'; cell names use only a-z 0-9 and -".into(),
                },
                "cell name \"Bad_Name\" is invalid",
            ),
            (
                weights(&[("a", 1), ("d", 1)]),
                addrs(&[("d", "nowhere")]),
                MapError::InvalidAddress {
                    cell: "d".into(),
                    address: "nowhere".into(),
                    reason: "it has no port; write HOST:PORT, e.g. 10.0.0.1:7000".into(),
                },
                "replica address \"nowhere\"",
            ),
            (
                weights(&[("a", 1), ("d", 1)]),
                BTreeMap::from([("d".to_owned(), vec![])]),
                MapError::NoReplicas { cell: "d".into() },
                "no replica addresses",
            ),
        ];
        for (target, addresses, want, fragment) in cases {
            let err = rebalance(&old, &target, &addresses).unwrap_err();
            assert_eq!(err, want);
            assert!(err.to_string().contains(fragment), "{err}");
        }
        let last = PartitionMap::new(
            "local",
            u64::MAX,
            old.slot_owners().to_vec(),
            old.cells().clone(),
        )
        .unwrap();
        assert_eq!(
            rebalance(&last, &weights(&[("a", 1)]), &BTreeMap::new()),
            Err(MapError::EpochExhausted {
                map_epoch: u64::MAX
            })
        );
    }

    #[test]
    fn diff_needs_comparable_maps() {
        let old = three_cells();
        let other = PartitionMap::single_cell("prod", "a", vec!["h:1".into()], 4096).unwrap();
        let err = diff(&old, &other).unwrap_err();
        assert_eq!(
            err,
            MapError::DeploymentMismatch {
                old: "local".into(),
                new: "prod".into()
            }
        );
        let small = PartitionMap::single_cell("local", "a", vec!["h:1".into()], 8).unwrap();
        let err = diff(&old, &small).unwrap_err();
        assert_eq!(err, MapError::SlotCountMismatch { old: 4096, new: 8 });
        assert!(err.to_string().contains("4096 and 8 slots"), "{err}");
        assert_eq!(diff(&old, &old), Ok(vec![]));
    }

    #[test]
    fn runs_group_consecutive_moves() {
        let mv = |slot, from: &str, to: &str| SlotMove {
            slot,
            from: from.into(),
            to: to.into(),
        };
        let moves = vec![
            mv(1, "a", "b"),
            mv(2, "a", "b"),
            mv(3, "a", "c"),
            mv(5, "a", "c"),
            mv(6, "b", "c"),
        ];
        assert_eq!(
            runs(&move_runs(&moves)),
            vec![
                (1..=2, "a", "b"),
                (3..=3, "a", "c"),
                (5..=5, "a", "c"),
                (6..=6, "b", "c")
            ]
        );
        assert!(move_runs(&[]).is_empty());
    }
}
