//! How the proxy routes (docs/design.md §11, `docs/partitioning.md`): always by a partition map — the
//! one watched in the meta cell (`--meta`), or, fronting cells without one (`--cell`), the
//! fixed map [`static_map`] that splits the slots evenly over them. What to do when a cell
//! answers `WRONG_CELL` is the router's [`Attempts`](warren_router::Attempts), shared with
//! the client library's direct mode; the async layer (`service/route.rs`) drives it and
//! does the sending, the waiting for a newer map and the counting.

use warren_config::CellAddrs;
use warren_proto::WarrenError;
use warren_router::{MapError, PartitionMap, DEFAULT_SLOTS};

pub use warren_client::route_error;
pub use warren_router::Dest;

/// The map of a proxy fronting `cells` without a partition map: epoch 1, the
/// [`DEFAULT_SLOTS`] slots split evenly over the cells in the order given (cell `k` of `n`
/// owns `[k·S/n, (k+1)·S/n)`), so that a cell's index in the list is its index in the
/// proxy. Made once a cell has told the proxy its `deployment`.
pub fn static_map(deployment: &str, cells: &[CellAddrs]) -> Result<PartitionMap, MapError> {
    let cells: Vec<(&str, Vec<&str>)> = cells
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.addrs.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    PartitionMap::even(deployment, &cells, DEFAULT_SLOTS)
}

/// Without a map of its own (`--cell`), where a call about `path` goes: the cell holding the
/// node (its parent directory's slot) by [`static_map`]. Cells fronted this way know no
/// partitions: the reserved subtree and child anchors are ordinary nodes there.
pub fn route_static(map: &PartitionMap, path: &str) -> Result<Dest, WarrenError> {
    map.cell_for_path(path)
        .map(|cell| Dest::Cell(cell.to_owned()))
        .map_err(route_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::ErrorCode;
    use warren_router::{Attempts, Target};

    /// Where the first attempt of a call on `path` goes by `map` (routed by a map of its
    /// own), or the error the client gets.
    fn route(map: &PartitionMap, path: &str, anchor: bool) -> Result<Dest, WarrenError> {
        match Attempts::new(anchor).target(map, path, Some("meta")) {
            Ok(Target::Send(dest)) => Ok(dest),
            Ok(other) => panic!("a first attempt needs no newer map: {other:?}"),
            Err(e) => Err(route_error(e)),
        }
    }

    /// Cells `c1`, `c2`, `c3` splitting 4096 slots evenly.
    fn map3() -> PartitionMap {
        let cells: Vec<CellAddrs> = (1..=3)
            .map(|i| CellAddrs {
                name: format!("c{i}"),
                addrs: vec![format!("127.0.0.1:{i}")],
            })
            .collect();
        static_map("local", &cells).expect("valid map")
    }

    #[test]
    fn the_reserved_subtree_goes_to_the_meta_cell_and_the_rest_by_slot() {
        let m = map3();
        assert_eq!(route(&m, "/ls/local/warren/map", false), Ok(Dest::Meta));
        assert_eq!(route(&m, "/ls/local/warren", true), Ok(Dest::Meta));
        let by_parent = m.cell_for_path("/ls/local/a/b").unwrap().to_string();
        assert_eq!(route(&m, "/ls/local/a/b", false), Ok(Dest::Cell(by_parent)));
        let by_self = m.cell_for_path("/ls/local/a/b/x").unwrap().to_string();
        assert_eq!(route(&m, "/ls/local/a/b", true), Ok(Dest::Cell(by_self)));
        assert!(Dest::Meta.is("meta", Some("meta")));
        assert!(!Dest::Cell("c1".into()).is("meta", Some("meta")));
    }

    #[test]
    fn unroutable_paths_get_the_error_a_cell_would_give() {
        let m = map3();
        let e = route(&m, "/ls/other/a", false).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("other"), "{}", e.message);
        let e = route(&m, "no-slash", false).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        let e = route(&m, "/ls/local/a//b", true).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        let long = format!("/ls/local/{}", "a/".repeat(3000));
        assert_eq!(
            route(&m, &long, false).unwrap_err().code,
            ErrorCode::TooLarge
        );
        for (path, code) in [
            ("/ls/local/../a", ErrorCode::InvalidArgument),
            ("/ls/other/a", ErrorCode::InvalidArgument),
            (long.as_str(), ErrorCode::TooLarge),
        ] {
            assert_eq!(route_static(&m, path).unwrap_err().code, code, "{path}");
        }
    }

    #[test]
    fn without_a_map_the_fronted_cells_split_the_slots_in_order_and_nothing_is_reserved() {
        let m = map3();
        assert_eq!(m.map_epoch(), 1);
        assert_eq!(m.slot_count(), DEFAULT_SLOTS);
        for (slot, owner) in m.slot_owners().iter().enumerate() {
            let k = slot * 3 / DEFAULT_SLOTS as usize;
            assert_eq!(owner, &format!("c{}", k + 1), "slot {slot}");
        }
        for path in ["/ls/local/warren/map", "/ls/local/a/b", "/ls/local"] {
            let slot = warren_router::slot_of_path(path, DEFAULT_SLOTS).unwrap();
            let by_slot = m.owner_of_slot(slot).unwrap().to_string();
            assert_eq!(route_static(&m, path), Ok(Dest::Cell(by_slot)), "{path}");
        }
        let twice = [
            CellAddrs {
                name: "a".into(),
                addrs: vec!["127.0.0.1:1".into()],
            },
            CellAddrs {
                name: "a".into(),
                addrs: vec!["127.0.0.1:2".into()],
            },
        ];
        assert!(static_map("local", &twice).is_err());
    }
}
