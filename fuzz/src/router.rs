//! Target `router`: paths and routing. Each frame's body is a path (bytes that are not
//! UTF-8 are read lossily, as nothing upstream of the router guarantees UTF-8 beyond
//! protobuf's own check); it goes through the path grammar ([`warren_router::path`]:
//! validation, the deployment, parent and name, the routing directory), the slot hash,
//! routing by three maps (one cell; three cells; an odd slot count), and a routed call's
//! `WRONG_CELL` state machine ([`warren_router::Attempts`]) answered by owners and epochs
//! taken from the frame's tag and flags.

use crate::Frames;
use std::sync::OnceLock;
use warren_router::{Attempts, PartitionMap, WrongCell, MAX_ATTEMPTS};

/// Runs one input: each frame's body as a path.
pub fn run(data: &[u8]) {
    // Built once per process: two of them have 4096 slots, and building them on every
    // input cost most of a run. Routing only reads them.
    static MAPS: OnceLock<Vec<PartitionMap>> = OnceLock::new();
    let maps = MAPS.get_or_init(maps);
    for f in Frames::new(data) {
        let path = String::from_utf8_lossy(f.body);
        route(maps, &path, f.tag, f.flags);
    }
}

/// The maps every path is routed by.
fn maps() -> Vec<PartitionMap> {
    let a = |s: &str| vec![s.to_string()];
    vec![
        PartitionMap::single_cell("local", "c0", a("127.0.0.1:7001"), 4096),
        PartitionMap::even(
            "local",
            &[
                ("c0", a("127.0.0.1:7001")),
                ("c1", a("127.0.0.1:7002")),
                ("c2", a("127.0.0.1:7003")),
            ],
            4096,
        ),
        PartitionMap::even(
            "prod",
            &[("a", a("h1:1")), ("b", a("h2:1")), ("c", a("h3:1"))],
            7,
        ),
    ]
    .into_iter()
    .map(|m| m.expect("a valid fixed map"))
    .collect()
}

fn route(maps: &[PartitionMap], path: &str, tag: u8, flags: u8) {
    use warren_router::path as p;
    let _ = p::validate_path(path);
    let _ = p::check_path(path, "local");
    if let Some(d) = p::deployment_of(path) {
        let _ = p::root_of(d);
    }
    let _ = p::parent_dir(path);
    let _ = p::parent_of_valid(path);
    let _ = p::name_of(path);
    let _ = p::is_reserved(path);
    let _ = p::component_problem(path);
    if let Some(dir) = p::routing_dir(path) {
        let _ = warren_router::slot_of_dir(dir, u32::from(tag).max(1));
    }
    let _ = p::slot_of_path(path, u32::from(flags) + 1);
    for map in maps {
        let _ = map.slot_of_path(path);
        let _ = map.cell_for_path(path);
        let _ = map.route(path, flags & 1 != 0);
        // A routed call answered WRONG_CELL until the attempts run out.
        let mut plan = Attempts::new(flags & 1 != 0);
        let owners: Vec<&String> = map.cells().keys().collect();
        for round in 0..MAX_ATTEMPTS + 1 {
            if plan.target(map, path, Some("meta")).is_err() {
                break;
            }
            plan.sending();
            let owner = owners[(usize::from(tag) + round as usize) % owners.len()].clone();
            let answer = WrongCell {
                map_epoch: u64::from(flags >> 2) + u64::from(round),
                owner,
                directory: flags & 2 != 0,
                created: tag & 1 != 0,
            };
            if matches!(plan.answered(&answer), warren_router::Next::GiveUp) {
                break;
            }
        }
    }
}
