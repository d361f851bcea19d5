//! Property tests of routing: every path has exactly one home, siblings stay together, the
//! serialised partition map round-trips, and the rebalancer moves the minimum number of
//! slots while giving every cell its weighted share.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use warren_router::{
    diff, move_runs, parent_dir, rebalance, slot_of_dir, slot_of_path, validate_path, MapError,
    PartitionMap, Proposal, Weight, MAX_SLOTS,
};

/// Modest case counts: the suite runs on 2 cores alongside the rest of the workspace.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    }
}

/// A valid path component: 1–12 of `[A-Za-z0-9._-]`, never `.` or `..`.
fn component() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,12}".prop_filter("relative components are not valid", |c| {
        c != "." && c != ".."
    })
}

/// A valid full path in deployment `local`: the root or up to 5 components below it.
fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 0..6).prop_map(|parts| {
        let mut p = String::from("/ls/local");
        for c in parts {
            p.push('/');
            p.push_str(&c);
        }
        p
    })
}

fn cell_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("cell-{i}")).collect()
}

/// A valid map with an arbitrary (fragmented) slot assignment.
fn any_map() -> impl Strategy<Value = PartitionMap> {
    (1usize..6, 1u32..300, 1u64..1_000_000).prop_flat_map(|(n, slots, epoch)| {
        let owners = prop::collection::vec(0..n, slots as usize);
        let replicas = prop::collection::vec(prop::collection::btree_set(1u16..65535, 1..4), n);
        (owners, replicas).prop_map(move |(owners, replicas)| {
            let names = cell_names(n);
            let cells: BTreeMap<String, Vec<String>> = names
                .iter()
                .zip(replicas)
                .map(|(name, ports)| {
                    let addrs = ports.into_iter().map(|p| format!("10.0.0.1:{p}")).collect();
                    (name.clone(), addrs)
                })
                .collect();
            let slots = owners.into_iter().map(|i| names[i].clone()).collect();
            PartitionMap::new("local", epoch, slots, cells).expect("generated map is valid")
        })
    })
}

/// A map to rebalance: a fragmented one, or an even one of up to 4096 slots.
fn map_to_rebalance() -> impl Strategy<Value = PartitionMap> {
    let even = (1usize..9, 1u32..=4096, 1u64..1000).prop_map(|(n, slots, epoch)| {
        let cells: Vec<(String, Vec<String>)> = cell_names(n)
            .into_iter()
            .enumerate()
            .map(|(i, c)| (c, vec![format!("10.0.0.1:{}", 7000 + i)]))
            .collect();
        let even = PartitionMap::even("local", &cells, slots).unwrap();
        PartitionMap::new(
            "local",
            epoch,
            even.slot_owners().to_vec(),
            even.cells().clone(),
        )
        .unwrap()
    });
    prop_oneof![any_map(), even]
}

/// Mostly small weights (0 included), sometimes huge ones.
fn weight() -> impl Strategy<Value = Weight> {
    prop_oneof![6 => 0u32..8, 1 => any::<u32>()]
}

/// A target over `cell-0` … `cell-7`: some of the map's cells (`any_map` uses `cell-0` …
/// `cell-4`), some new ones; a map cell left out is drained. A third of the targets give
/// every cell the same weight, so that remainders tie and the tie-break is exercised.
fn target() -> impl Strategy<Value = BTreeMap<String, Weight>> {
    let mixed = prop::collection::vec(prop::option::weighted(0.7, weight()), 8);
    let equal = (prop::collection::vec(any::<bool>(), 8), 1u32..4)
        .prop_map(|(keep, w)| keep.into_iter().map(|k| k.then_some(w)).collect::<Vec<_>>());
    prop_oneof![2 => mixed, 1 => equal].prop_map(|weights| {
        weights
            .into_iter()
            .enumerate()
            .filter_map(|(i, w)| w.map(|w| (format!("cell-{i}"), w)))
            .collect()
    })
}

/// Addresses for the target's cells that `map` lacks.
fn new_addresses(
    map: &PartitionMap,
    target: &BTreeMap<String, Weight>,
) -> BTreeMap<String, Vec<String>> {
    target
        .keys()
        .enumerate()
        .filter(|(_, c)| map.replicas(c).is_none())
        .map(|(i, c)| (c.clone(), vec![format!("10.1.0.1:{}", 8000 + i)]))
        .collect()
}

fn total_weight(target: &BTreeMap<String, Weight>) -> u64 {
    target.values().map(|w| u64::from(*w)).sum()
}

/// The rebalance of `map` to `target`, for targets with a positive total weight.
fn propose(map: &PartitionMap, target: &BTreeMap<String, Weight>) -> Proposal {
    rebalance(map, target, &new_addresses(map, target)).expect("a valid target rebalances")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_path_routes_to_exactly_one_cell(map in any_map(), path in path()) {
        let cell = map.cell_for_path(&path).expect("valid path routes");
        let slot = map.slot_of_path(&path).expect("valid path has a slot");
        prop_assert_eq!(Some(slot), slot_of_path(&path, map.slot_count()));
        prop_assert_eq!(map.owner_of_slot(slot), Some(cell));
        let holders: Vec<&String> = map
            .cells()
            .keys()
            .filter(|c| map.slot_ranges(c).iter().any(|r| r.contains(&slot)))
            .collect();
        prop_assert_eq!(holders, vec![cell]);
        prop_assert_eq!(map.slot_counts().values().sum::<u32>(), map.slot_count());
    }

    #[test]
    fn children_of_a_directory_route_together(
        map in any_map(),
        dir in path(),
        names in prop::collection::vec(component(), 1..8),
    ) {
        let expected_slot = slot_of_dir(&dir, map.slot_count());
        let expected_cell = map.owner_of_slot(expected_slot).unwrap();
        for name in names {
            let child = format!("{dir}/{name}");
            if validate_path(&child).is_err() {
                continue; // Too long; nothing to route.
            }
            prop_assert_eq!(parent_dir(&child), Some(dir.as_str()));
            prop_assert_eq!(map.slot_of_path(&child), Ok(expected_slot));
            prop_assert_eq!(map.cell_for_path(&child), Ok(expected_cell));
        }
    }

    #[test]
    fn counts_and_ranges_agree_with_the_owners(map in map_to_rebalance()) {
        let mut counts: BTreeMap<String, u32> =
            map.cells().keys().map(|c| (c.clone(), 0)).collect();
        for owner in map.slot_owners() {
            *counts.get_mut(owner).unwrap() += 1;
        }
        prop_assert_eq!(map.slot_counts(), counts);
        for (cell, n) in map.slot_counts() {
            let ranges = map.slot_ranges(&cell);
            let slots: Vec<u32> = ranges.iter().flat_map(|r| r.clone()).collect();
            prop_assert_eq!(slots.len() as u32, n);
            for slot in slots {
                prop_assert_eq!(map.owner_of_slot(slot), Some(cell.as_str()));
            }
            // Maximal ranges: neighbours are never adjacent.
            prop_assert!(ranges.windows(2).all(|w| w[0].end() + 1 < *w[1].start()));
        }
    }

    #[test]
    fn serialised_map_round_trips(map in any_map()) {
        let json = map.to_json();
        let back = PartitionMap::from_json(&json).expect("own output reads back");
        prop_assert_eq!(&back, &map);
        prop_assert_eq!(back.to_json(), json);
    }

    #[test]
    fn even_maps_are_balanced(n in 1usize..20, slots in 1u32..5000) {
        let cells: Vec<(String, Vec<String>)> = cell_names(n)
            .into_iter()
            .map(|c| (c, vec!["h:1".to_owned()]))
            .collect();
        let map = PartitionMap::even("local", &cells, slots).unwrap();
        let counts = map.slot_counts();
        prop_assert_eq!(counts.len(), n);
        let (min, max) = (counts.values().min().unwrap(), counts.values().max().unwrap());
        prop_assert!(max - min <= 1);
        prop_assert_eq!(counts.values().sum::<u32>(), slots);
        for (name, _) in &cells {
            prop_assert!(map.slot_ranges(name).len() <= 1, "{} is not contiguous", name);
        }
    }

    #[test]
    fn from_json_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = PartitionMap::from_json(&bytes);
    }

    #[test]
    fn from_json_rejects_mangled_maps(map in any_map(), cut in 0usize..400, byte in any::<u8>()) {
        // Overwrite one byte of a valid map; whatever comes back is either an error or a
        // map that passes validation again (never a panic, never an invalid map).
        let mut json = map.to_json().into_bytes();
        let at = cut % json.len();
        json[at] = byte;
        if let Ok(back) = PartitionMap::from_json(&json) {
            prop_assert_eq!(back.validate(), Ok(()));
            prop_assert!(back.slot_count() <= MAX_SLOTS);
        }
    }

    #[test]
    fn too_many_slots_is_refused_before_allocating(slots in (MAX_SLOTS + 1)..u32::MAX) {
        let json = format!(
            r#"{{"format":1,"deployment":"local","map_epoch":1,"slot_count":{slots},"cells":{{"a":{{"replicas":["h:1"],"slots":[[0,0]]}}}}}}"#
        );
        prop_assert_eq!(
            PartitionMap::from_json(&json),
            Err(MapError::TooManySlots { slots: u64::from(slots) })
        );
    }

    #[test]
    fn rebalanced_map_is_valid_with_one_owner_per_slot(
        map in map_to_rebalance(),
        target in target(),
    ) {
        prop_assume!(total_weight(&target) > 0);
        let addresses = new_addresses(&map, &target);
        let p = rebalance(&map, &target, &addresses).unwrap();
        prop_assert_eq!(p.map.validate(), Ok(()));
        prop_assert_eq!(p.map.map_epoch(), map.map_epoch() + 1);
        prop_assert_eq!(p.map.deployment(), map.deployment());
        prop_assert_eq!(p.map.slot_count(), map.slot_count());
        prop_assert_eq!(p.map.slot_owners().len(), map.slot_count() as usize);
        // The new map's cells are exactly the target's, each slot owned by one of them.
        prop_assert!(p.map.cells().keys().eq(target.keys()));
        for owner in p.map.slot_owners() {
            prop_assert!(target.contains_key(owner));
        }
        prop_assert_eq!(p.map.slot_counts().values().sum::<u32>(), map.slot_count());
        // Kept cells keep their addresses; new cells get the ones given.
        for cell in target.keys() {
            let want = addresses.get(cell).map(Vec::as_slice).or(map.replicas(cell));
            prop_assert_eq!(p.map.replicas(cell), want);
        }
        let back = PartitionMap::from_json(p.map.to_json()).unwrap();
        prop_assert_eq!(&back, &p.map);
        // Deterministic.
        prop_assert_eq!(&rebalance(&map, &target, &addresses).unwrap(), &p);
    }

    #[test]
    fn rebalance_moves_the_minimum(map in map_to_rebalance(), target in target()) {
        prop_assume!(total_weight(&target) > 0);
        let p = propose(&map, &target);
        let before = map.slot_counts();
        let after = p.map.slot_counts();
        let cells: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        let count = |counts: &BTreeMap<String, u32>, c: &str| counts.get(c).copied().unwrap_or(0);
        let mut surplus_total = 0usize;
        for cell in &cells {
            let (b, a) = (count(&before, cell), count(&after, cell));
            let out = p.moves.iter().filter(|m| &m.from == *cell).count();
            let into = p.moves.iter().filter(|m| &m.to == *cell).count();
            // A cell only gives up its surplus and only receives its deficit; nothing
            // leaves a cell that was not over quota or enters one that ends over it.
            prop_assert_eq!(out, b.saturating_sub(a) as usize, "{} gave", cell);
            prop_assert_eq!(into, a.saturating_sub(b) as usize, "{} received", cell);
            prop_assert!(out == 0 || into == 0, "{} both gave and received", cell);
            surplus_total += b.saturating_sub(a) as usize;
            let change = &p.cells[*cell];
            prop_assert_eq!((change.before, change.after), (b, a));
            prop_assert_eq!(change.weight, target.get(*cell).copied());
            prop_assert_eq!(change.added, map.replicas(cell).is_none());
        }
        // Σ max(0, before − after): every one of these slots must leave its cell in any
        // map with these counts, so no rebalance can move fewer.
        prop_assert_eq!(p.moves.len(), surplus_total);
        for m in &p.moves {
            prop_assert!(m.from != m.to);
            prop_assert_eq!(map.owner_of_slot(m.slot), Some(m.from.as_str()));
            prop_assert_eq!(p.map.owner_of_slot(m.slot), Some(m.to.as_str()));
        }
        prop_assert!(p.moves.windows(2).all(|w| w[0].slot < w[1].slot));
    }

    #[test]
    fn rebalance_respects_weights(map in map_to_rebalance(), target in target()) {
        let total = total_weight(&target);
        prop_assume!(total > 0);
        let p = propose(&map, &target);
        let slots = u128::from(map.slot_count());
        let total = u128::from(total);
        let counts = p.map.slot_counts();
        let mut rounded_up = Vec::new();
        let mut rounded_down = Vec::new();
        for (cell, weight) in &target {
            let after = counts[cell];
            prop_assert_eq!(p.cells[cell].after, after);
            // |after − w·S/Σw| < 1, in integers: |after·Σw − w·S| < Σw.
            let exact = u128::from(*weight) * slots;
            let scaled = u128::from(after) * total;
            prop_assert!(scaled.abs_diff(exact) < total, "{} got {} slots", cell, after);
            let remainder = exact % total;
            let floor = exact / total;
            // Whether rounding the cell up lets it keep a slot it owns.
            let keeps = u128::from(map.slot_counts().get(cell).copied().unwrap_or(0)) > floor;
            if scaled > exact {
                rounded_up.push((remainder, keeps, cell));
            } else if scaled < exact {
                rounded_down.push((remainder, keeps, cell));
            }
        }
        // Largest remainders: every cell rounded up has a remainder at least that of every
        // cell rounded down; on a tie, a cell that keeps a slot by it is rounded up before
        // one that does not (so these quotas move the fewest slots of any largest-remainder
        // quotas).
        for up in &rounded_up {
            for down in &rounded_down {
                prop_assert!(up.0 >= down.0, "{:?} rounded up before {:?}", up, down);
                if up.0 == down.0 {
                    prop_assert!(up.1 || !down.1, "{:?} rounded up before {:?}", up, down);
                }
            }
        }
    }

    #[test]
    fn rebalancing_a_balanced_map_moves_nothing(map in map_to_rebalance(), target in target()) {
        prop_assume!(total_weight(&target) > 0);
        let p = propose(&map, &target);
        let again = rebalance(&p.map, &target, &BTreeMap::new()).unwrap();
        prop_assert!(again.moves.is_empty(), "{:?}", again.moves);
        prop_assert_eq!(again.map.slot_owners(), p.map.slot_owners());
        prop_assert_eq!(again.map.cells(), p.map.cells());
        prop_assert_eq!(again.map.map_epoch(), p.map.map_epoch() + 1);
    }

    #[test]
    fn even_maps_are_already_balanced(
        cells in prop::collection::btree_set("[a-z][a-z0-9-]{0,6}", 1..12)
            .prop_flat_map(|set| Just(set.into_iter().collect::<Vec<_>>()).prop_shuffle()),
        slots in 1u32..=4096,
        weight in 1u32..1000,
    ) {
        let spec: Vec<(String, Vec<String>)> =
            cells.iter().map(|c| (c.clone(), vec!["h:1".to_owned()])).collect();
        let map = PartitionMap::even("local", &spec, slots).unwrap();
        let target = cells.iter().map(|c| (c.clone(), weight)).collect();
        let p = rebalance(&map, &target, &BTreeMap::new()).unwrap();
        prop_assert!(p.moves.is_empty(), "{:?}", p.moves);
    }

    #[test]
    fn diff_lists_exactly_the_moves(map in map_to_rebalance(), target in target()) {
        prop_assume!(total_weight(&target) > 0);
        let p = propose(&map, &target);
        prop_assert_eq!(&diff(&map, &p.map).unwrap(), &p.moves);
        prop_assert!(diff(&p.map, &p.map).unwrap().is_empty());
        // The runs cover the same slots, in order, each between one pair of cells.
        let from_runs: Vec<(u32, String, String)> = move_runs(&p.moves)
            .into_iter()
            .flat_map(|r| r.slots.map(move |s| (s, r.from.clone(), r.to.clone())))
            .collect();
        let moves: Vec<(u32, String, String)> =
            p.moves.iter().map(|m| (m.slot, m.from.clone(), m.to.clone())).collect();
        prop_assert_eq!(from_runs, moves);
    }

    #[test]
    fn paths_in_unmoved_slots_stay_put(
        map in map_to_rebalance(),
        target in target(),
        paths in prop::collection::vec(path(), 1..16),
    ) {
        prop_assume!(total_weight(&target) > 0);
        let p = propose(&map, &target);
        let moved: BTreeMap<u32, &str> =
            p.moves.iter().map(|m| (m.slot, m.to.as_str())).collect();
        for path in paths {
            let slot = map.slot_of_path(&path).unwrap();
            prop_assert_eq!(p.map.slot_of_path(&path), Ok(slot));
            let want = moved.get(&slot).copied().unwrap_or(map.cell_for_path(&path).unwrap());
            prop_assert_eq!(p.map.cell_for_path(&path), Ok(want));
        }
    }

    #[test]
    fn weightless_targets_are_refused(
        map in any_map(),
        cells in prop::collection::btree_set(0usize..8, 0..5),
    ) {
        let target: BTreeMap<String, Weight> =
            cells.iter().map(|i| (format!("cell-{i}"), 0)).collect();
        let want = if target.is_empty() {
            MapError::EmptyTarget
        } else {
            MapError::ZeroTotalWeight { cells: target.len() }
        };
        prop_assert_eq!(rebalance(&map, &target, &new_addresses(&map, &target)), Err(want));
    }
}
