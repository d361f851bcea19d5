//! Property tests of routing: every path has exactly one home, siblings stay together, and
//! the serialised partition map round-trips.

use std::collections::BTreeMap;

use proptest::prelude::*;
use warren_router::{
    parent_dir, slot_of_dir, slot_of_path, validate_path, MapError, PartitionMap, MAX_SLOTS,
};

/// Modest case counts: the suite runs on 2 cores alongside the rest of the workspace.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    }
}

fn component() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,12}"
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
}
