//! Target `store_records`: what a cell reads back from its store. Each frame is one stored
//! entry: tags 0–4 an entry of the embedded (redb) store's table of that number
//! ([`warren_cell::store::embedded::TABLES`]), decoded by
//! [`warren_cell::store::embedded::decode_entry`]; tag 5 an etcd key-value pair under the
//! cell's prefix, decoded by [`warren_cell::store::etcd::decode_kv`]. The body is split
//! into key and value by [`crate::split`]. If every entry decodes, the snapshot they make
//! is handed to [`Master::recover`], as a new master does with what it loaded: recovery
//! must refuse a corrupt store with an error, never panic.

use crate::{split, Frames};
use tokio::time::Instant;
use warren_cell::core::{CoreConfig, Master};
use warren_cell::store::{embedded, etcd, Snapshot};
use warren_proto::WarrenError;

/// Runs one input: its frames as stored entries, then recovery from them.
pub fn run(data: &[u8]) {
    let _ = recover(data);
}

/// [`run`], returning the recovered master, or `None` if an entry did not decode.
pub fn recover(data: &[u8]) -> Option<Result<Master, WarrenError>> {
    let prefix = etcd::cell_prefix("local", "c0");
    let mut snap = Snapshot::default();
    for f in Frames::new(data) {
        let (key, value) = split(f.body);
        let decoded = match f.tag % 6 {
            5 => {
                let key = [prefix.as_bytes(), key].concat();
                etcd::decode_kv(&prefix, &key, value, &mut snap)
            }
            t => embedded::decode_entry(embedded::TABLES[usize::from(t)], key, value, &mut snap),
        };
        decoded.ok()?;
    }
    Some(Master::recover(
        CoreConfig::new("c0", "local"),
        snap,
        Instant::now(),
        7,
    ))
}

#[cfg(test)]
mod tests {
    use warren_cell::store::Mutation;

    /// Both seeds decode entry by entry and recover, and recovery installs the node a
    /// reshard staged (so the fuzzer starts from inputs that reach that far).
    #[test]
    fn the_seeds_recover_and_install_the_staged_node() {
        for (target, name, bytes) in crate::seeds::all() {
            if target != "store_records" {
                continue;
            }
            let mut m = super::recover(&bytes)
                .unwrap_or_else(|| panic!("{name}: an entry did not decode"))
                .unwrap_or_else(|e| panic!("{name}: recovery failed: {e}"));
            let installed = m
                .take_output()
                .mutations
                .iter()
                .any(|x| matches!(x, Mutation::PutNode(n) if n.path == "/ls/local/s"));
            assert!(installed, "{name}: the staged node was not installed");
        }
    }
}
