//! Target `partition_map`: the partition map's serialised form (docs/partitioning.md).
//! The input is parsed by [`PartitionMap::from_json`], which checks it completely; a map
//! that comes back must write itself out ([`PartitionMap::to_json`]) as a form that reads
//! back to the same map, and must route any path without panicking.

use warren_router::PartitionMap;

/// Runs one input: the whole input as a map's JSON.
pub fn run(data: &[u8]) {
    let Ok(map) = PartitionMap::from_json(data) else {
        return;
    };
    assert!(map.validate().is_ok(), "from_json returned an invalid map");
    let json = map.to_json();
    let again = PartitionMap::from_json(&json)
        .unwrap_or_else(|e| panic!("a map's own JSON does not read back: {e}\n{json}"));
    assert_eq!(again, map, "a map's JSON read back as another map");
    let _ = map.slot_counts();
    for cell in map.cells().keys() {
        let _ = map.slot_ranges(cell);
    }
    let root = warren_router::root_of(map.deployment());
    for path in [root.clone(), format!("{root}/a"), format!("{root}/a/b")] {
        let _ = map.route(&path, false);
        let _ = map.route(&path, true);
    }
}
