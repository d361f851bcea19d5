//! A backup's `manifest.json` (docs/backup.md, "Manifest"): what the data object holds and
//! its SHA-256. Written after the data object, so a backup without one is unfinished and
//! never listed.

use crate::format::Counts;
use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// The manifest's file name in a backup's directory.
pub const MANIFEST: &str = "manifest.json";
/// The data object's file name in a backup's directory.
pub const DATA: &str = "data";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// The data object's format ([`crate::format::FORMAT_VERSION`]).
    pub format: u32,
    pub deployment: String,
    pub cell: String,
    /// The master epoch that took the backup.
    pub epoch: u64,
    /// The partition map epoch in force at the cell when it was taken.
    pub map_epoch: u64,
    /// When the store was read: RFC 3339, UTC.
    pub taken_at: String,
    /// Milliseconds since the Unix epoch of the same instant (for sorting and age).
    pub taken_at_ms: u64,
    pub counts: Counts,
    /// `embedded` or `etcd`: the store the backup was read from.
    pub store: String,
    /// The Warren version that wrote it.
    pub warren_version: String,
    /// The data object's size in bytes and SHA-256 (lowercase hex).
    pub data_bytes: u64,
    pub data_sha256: String,
    /// Slots this cell had handed off under a map newer than `map_epoch` (a reshard's
    /// hand-off ahead of the map): such a backup is not part of a consistent set.
    #[serde(default)]
    pub handoffs_ahead_of_map: u64,
}

impl Manifest {
    /// The manifest in `bytes`, checked to be one this build reads.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if m.version != MANIFEST_VERSION {
            return Err(format!(
                "manifest version {} (this build reads {MANIFEST_VERSION})",
                m.version
            ));
        }
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a manifest always encodes");
        v.push(b'\n');
        v
    }
}

/// SHA-256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The name of a backup's directory: `<UTC time>-e<epoch>`, e.g. `20261207T063123.456Z-e5`,
/// which sorts by time.
pub fn backup_name(taken_at_ms: u64, epoch: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(taken_at_ms);
    let stamp: String = humantime::format_rfc3339_millis(t)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{stamp}-e{epoch}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_carry_the_epoch() {
        assert_eq!(backup_name(0, 3), "19700101T000000.000Z-e3");
        let a = backup_name(1_800_000_000_000, 9);
        let b = backup_name(1_800_000_001_000, 2);
        assert!(a < b, "{a} {b}");
        assert_eq!(b, "20270115T080001.000Z-e2");
        assert!(backup_name(1, 1) > backup_name(0, 1));
    }

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn another_manifest_version_is_refused() {
        let e = Manifest::parse(br#"{"version":7}"#).unwrap_err();
        assert!(
            e.contains("missing field") || e.contains("version 7"),
            "{e}"
        );
        assert!(Manifest::parse(b"not json").is_err());
    }
}
