//! `warren ctl map repair`: recovers a deployment whose stored partition map file does not
//! parse (garbage written before the meta cell checked map writes, or a damaged store),
//! from the last good map the cells still hold in memory (their admin `/map` page) or a
//! map file the operator kept (docs/operations.md, "Repairing the partition map").
//!
//! The repaired map is the newest map found, with its epoch raised to one above every
//! epoch seen anywhere: the maps found, the cells' `/status` `map_epoch`, the meta cell's
//! map in force (its `Locate`) and the `map_epoch` the garbage names, if any — every router
//! ignores a map not newer than its own. The meta cell accepts such a write only while the
//! stored file is unreadable, so a healthy map is never replaced this way.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use warren_client::admin::{self, StoredMap};
use warren_client::{locate, Session};
use warren_router::PartitionMap;

use super::failure::Failure;
use super::output::{self, Output};

/// How long each cell's admin page may take to answer.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A map found somewhere, and where.
#[derive(Debug)]
struct Found {
    source: String,
    map: PartitionMap,
}

/// The repaired map: the newest of `found` (of `deployment`; the first given among equals),
/// its epoch one above everything in `seen` and every map found. `None` when nothing was
/// found.
fn repaired(deployment: &str, found: &[Found], seen: &[u64]) -> Option<(PartitionMap, String)> {
    let newest = found
        .iter()
        .filter(|f| f.map.deployment() == deployment)
        .rev()
        .max_by_key(|f| f.map.map_epoch())?;
    let top = found
        .iter()
        .filter(|f| f.map.deployment() == deployment)
        .map(|f| f.map.map_epoch())
        .chain(seen.iter().copied())
        .max()
        .unwrap_or(0);
    let map = PartitionMap::new(
        deployment,
        top + 1,
        newest.map.slot_owners().to_vec(),
        newest.map.cells().clone(),
    )
    .expect("the same slots and cells as a valid map, with a positive epoch");
    let from = format!("{} (epoch {})", newest.source, newest.map.map_epoch());
    Some((map, from))
}

/// The `map_epoch` the stored bytes name, if they are JSON with one.
fn named_epoch(contents: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(contents)
        .ok()?
        .get("map_epoch")?
        .as_u64()
}

/// Reads the map at `file`; what is wrong with it goes to `problems`.
fn from_file(file: &Path, problems: &mut Vec<String>) -> Option<Found> {
    let source = format!("file {}", file.display());
    let text = match std::fs::read(file) {
        Ok(text) => text,
        Err(e) => {
            problems.push(format!("{source}: cannot read it: {e}"));
            return None;
        }
    };
    match PartitionMap::from_json(&text) {
        Ok(map) => Some(Found { source, map }),
        Err(e) => {
            problems.push(format!("{source}: not a partition map: {e}"));
            None
        }
    }
}

/// Asks the cell whose admin endpoint is `addr` for its map in force (`/map`) and its
/// `map_epoch` (`/status`); what fails goes to `problems`.
async fn from_cell(addr: &str, seen: &mut Vec<u64>, problems: &mut Vec<String>) -> Option<Found> {
    let source = format!("cell admin {addr}");
    if let Ok(r) = warren_loadtest::http::get(addr, "/status", ADMIN_TIMEOUT).await {
        if let Some(epoch) = serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| v.get("map_epoch").and_then(Value::as_u64))
        {
            seen.push(epoch);
        }
    }
    match warren_loadtest::http::get(addr, "/map", ADMIN_TIMEOUT).await {
        Ok(r) if r.status == 200 => match PartitionMap::from_json(r.body.trim()) {
            Ok(map) => Some(Found { source, map }),
            Err(e) => {
                problems.push(format!("{source}: /map is not a partition map: {e}"));
                None
            }
        },
        Ok(r) => {
            problems.push(format!(
                "{source}: /map answered {}: {}",
                r.status,
                r.body.trim()
            ));
            None
        }
        Err(e) => {
            problems.push(format!("{source}: cannot GET /map: {e}"));
            None
        }
    }
}

/// `map repair`: checks that the stored map is unreadable, collects the maps and epochs
/// the sources give, and writes the repaired map through `session` (an operator session at
/// the meta cell `meta`).
pub(crate) async fn repair(
    session: &Session,
    meta: &[String],
    cells: &[String],
    file: Option<&Path>,
    out: Output,
) -> Result<(), Failure> {
    let deployment = session.deployment().to_owned();
    let path = warren_client::map::map_path(&deployment);
    let (problem, garbage) = match admin::read_stored_map(session).await? {
        StoredMap::Readable(map) => {
            return Err(Failure::invalid(format!(
                "the stored map parses (epoch {}); nothing to repair: change it with `warren ctl reshard`",
                map.map_epoch()
            )))
        }
        StoredMap::Unreadable { problem, contents } => (problem, contents),
    };
    let mut seen: Vec<u64> = named_epoch(&garbage).into_iter().collect();
    if let Ok(info) = locate(meta, ADMIN_TIMEOUT).await {
        seen.push(info.map_epoch);
    }
    let mut found = Vec::new();
    let mut problems = Vec::new();
    if let Some(file) = file {
        found.extend(from_file(file, &mut problems));
    }
    for addr in cells {
        found.extend(from_cell(addr, &mut seen, &mut problems).await);
    }
    for f in &found {
        if f.map.deployment() != deployment {
            problems.push(format!(
                "{}: the map is deployment {:?}'s, not {deployment:?}'s",
                f.source,
                f.map.deployment()
            ));
        }
    }
    let Some((map, from)) = repaired(&deployment, &found, &seen) else {
        return Err(Failure::invalid(format!(
            "no map of deployment {deployment} to repair {path} from ({}): give --from-cell with the admin address of a running cell, or --from with a map you kept (`warren ctl map show --json`)",
            if problems.is_empty() {
                "no source given".to_string()
            } else {
                problems.join("; ")
            }
        )));
    };
    admin::write_map(session, &map).await?;
    if out.json {
        output::print_line(&map.to_json())
    } else {
        output::print_line(&format!(
            "repaired the partition map of deployment {deployment}: map epoch {}, from {from}; the stored file was unreadable: {problem}",
            map.map_epoch()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(d: &str, epoch: u64, cells: &[&str]) -> PartitionMap {
        let cells: Vec<(&str, Vec<&str>)> = cells.iter().map(|c| (*c, vec!["h:1"])).collect();
        let m = PartitionMap::even(d, &cells, 16).unwrap();
        PartitionMap::new(d, epoch, m.slot_owners().to_vec(), m.cells().clone()).unwrap()
    }

    fn found(source: &str, map: PartitionMap) -> Found {
        Found {
            source: source.into(),
            map,
        }
    }

    #[test]
    fn the_newest_map_is_raised_above_every_epoch_seen() {
        let old = map("local", 3, &["a"]);
        let new = map("local", 5, &["a", "b"]);
        let (m, from) = repaired(
            "local",
            &[found("file f", old), found("cell admin x", new.clone())],
            &[4],
        )
        .unwrap();
        assert_eq!(m.map_epoch(), 6);
        assert_eq!(m.slot_owners(), new.slot_owners());
        assert_eq!(from, "cell admin x (epoch 5)");
        // A cell's /status (or the garbage) may name a later epoch than any map found.
        let (m, _) = repaired("local", &[found("f", map("local", 2, &["a"]))], &[9, 1]).unwrap();
        assert_eq!(m.map_epoch(), 10);
        // Among equals, the first source given.
        let same = map("local", 2, &["a"]);
        let (_, from) =
            repaired("local", &[found("x", same.clone()), found("y", same)], &[]).unwrap();
        assert_eq!(from, "x (epoch 2)");
        // Another deployment's map is no source; with no source there is no repair.
        assert!(repaired("local", &[found("f", map("prod", 7, &["a"]))], &[]).is_none());
        assert!(repaired("local", &[], &[3]).is_none());
    }

    #[test]
    fn the_epoch_the_garbage_names_is_read_if_there_is_one() {
        assert_eq!(named_epoch(br#"{"map_epoch":7,"cells":3}"#), Some(7));
        assert_eq!(named_epoch(b"{not json"), None);
        assert_eq!(named_epoch(br#"{"map_epoch":"7"}"#), None);
        assert_eq!(named_epoch(b"[]"), None);
    }
}
