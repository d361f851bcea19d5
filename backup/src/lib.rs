//! Backups of Warren cells (docs/backup.md): taking one from a store [`Snapshot`], listing
//! and verifying what a destination holds, keeping the newest N, and reading one back for
//! a restore with the counter jump applied.
//!
//! - [`format`]: the data object (a streamed record format, raw file contents);
//! - [`manifest`]: `manifest.json`, written last, with the counts and the SHA-256;
//! - [`dest`]: destinations (directories) and the refusal of the cell's own store;
//! - [`restore`]: the counter jump and the checks before a restore;
//! - [`set`]: a whole deployment's backups as one set, checked against one map epoch;
//! - [`sink`]: the cell master's backup sink (its `[backup]` settings).
//!
//! The cell master decides when and what (a consistent read of its store, master only);
//! this crate decides how and where.

#![forbid(unsafe_code)]

pub mod dest;
pub mod format;
pub mod manifest;
pub mod restore;
pub mod set;
pub mod sink;

pub use dest::{DestError, Destination};
pub use manifest::Manifest;

use manifest::{backup_name, sha256_hex, DATA, MANIFEST, MANIFEST_VERSION};
use warren_cell::store::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Dest(#[from] DestError),
    #[error("backup {backup}: {detail}")]
    Format { backup: String, detail: String },
    /// Never overridable: the data is not what was backed up.
    #[error(
        "backup {backup}: checksum mismatch: the data object's SHA-256 is {actual}, its \
         manifest records {recorded}; the backup is corrupt and cannot be restored (take or \
         pick another backup)"
    )]
    Checksum {
        backup: String,
        recorded: String,
        actual: String,
    },
    #[error("backup {backup}: {detail}")]
    Missing { backup: String, detail: String },
}

/// What the cell tells [`take`] about the snapshot besides its records.
#[derive(Clone, Debug)]
pub struct TakeInfo {
    pub deployment: String,
    pub cell: String,
    pub epoch: u64,
    pub map_epoch: u64,
    pub store: String,
    pub warren_version: String,
    /// When the store was read (ms since the Unix epoch).
    pub taken_at_ms: u64,
}

/// A listed backup: its key (`<deployment>/<cell>/<name>`) and manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub manifest: Manifest,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

/// `ms` since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes `snap` as a backup at `dest`: the data object, then the manifest (so a backup
/// cut short is never listed). Returns its key and manifest.
pub async fn take(
    dest: &Destination,
    snap: std::sync::Arc<Snapshot>,
    info: &TakeInfo,
) -> Result<Listed, BackupError> {
    let name = backup_name(info.taken_at_ms, info.epoch);
    let key = format!("{}/{}/{name}", info.deployment, info.cell);
    let written = dest
        .put_encoded(&join(&key, DATA), snap.clone())
        .await
        .map_err(|e| match e {
            dest::EncodeError::Dest(d) => BackupError::Dest(d),
            dest::EncodeError::Format(f) => BackupError::Format {
                backup: key.clone(),
                detail: f.to_string(),
            },
        })?;
    let handoffs_ahead_of_map = snap.meta.as_ref().map_or(0, |m| {
        m.handed_off
            .iter()
            .filter(|h| h.map_epoch > info.map_epoch)
            .count() as u64
    });
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        format: format::FORMAT_VERSION,
        deployment: info.deployment.clone(),
        cell: info.cell.clone(),
        epoch: info.epoch,
        map_epoch: info.map_epoch,
        taken_at: rfc3339_ms(info.taken_at_ms),
        taken_at_ms: info.taken_at_ms,
        counts: written.counts,
        store: info.store.clone(),
        warren_version: info.warren_version.clone(),
        data_bytes: written.bytes,
        data_sha256: written.sha256,
        handoffs_ahead_of_map,
    };
    dest.put(&join(&key, MANIFEST), manifest.to_json()).await?;
    Ok(Listed { key, manifest })
}

/// Every finished backup at `dest` (those with a manifest), oldest first within a cell:
/// the destination's root may be a backup itself, a cell's folder, a deployment's, or the
/// root holding deployments. A manifest that cannot be read is an error naming it.
pub async fn list(dest: &Destination) -> Result<Vec<Listed>, BackupError> {
    let mut out = Vec::new();
    // Depth-first, at most three levels: <deployment>/<cell>/<name>.
    let mut stack = vec![(String::new(), 0u8)];
    while let Some((prefix, depth)) = stack.pop() {
        if let Some(bytes) = dest.get(&join(&prefix, MANIFEST)).await? {
            let manifest = Manifest::parse(&bytes).map_err(|detail| BackupError::Format {
                backup: format!("{dest}/{}", join(&prefix, MANIFEST)),
                detail: format!("the manifest cannot be read: {detail}"),
            })?;
            out.push(Listed {
                key: prefix,
                manifest,
            });
            continue;
        }
        if depth == 3 {
            continue;
        }
        for child in dest.children(&prefix).await?.into_iter().rev() {
            if child != DATA && child != "sets" {
                stack.push((join(&prefix, &child), depth + 1));
            }
        }
    }
    out.sort_by(|a, b| {
        (
            &a.manifest.deployment,
            &a.manifest.cell,
            a.manifest.taken_at_ms,
            &a.key,
        )
            .cmp(&(
                &b.manifest.deployment,
                &b.manifest.cell,
                b.manifest.taken_at_ms,
                &b.key,
            ))
    });
    Ok(out)
}

/// Reads backup `key` at `dest`: its manifest, then its data object, checked against the
/// manifest's size and SHA-256 and decoded whole. The snapshot is as backed up (no jump).
pub async fn read(dest: &Destination, key: &str) -> Result<(Manifest, Snapshot), BackupError> {
    let name = if key.is_empty() {
        dest.to_string()
    } else {
        format!("{dest}/{key}")
    };
    let missing = |detail: String| BackupError::Missing {
        backup: name.clone(),
        detail,
    };
    let bytes = dest.get(&join(key, MANIFEST)).await?.ok_or_else(|| {
        missing(format!(
            "no {MANIFEST}: not a backup, or one whose writing did not finish (never restore \
             one); `warren ctl backup list --from DEST` lists the finished ones"
        ))
    })?;
    let manifest = Manifest::parse(&bytes).map_err(|detail| BackupError::Format {
        backup: name.clone(),
        detail: format!("the manifest cannot be read: {detail}"),
    })?;
    let data = dest.get(&join(key, DATA)).await?.ok_or_else(|| {
        missing(format!(
            "its manifest is there but its {DATA} object is not"
        ))
    })?;
    let actual = sha256_hex(&data);
    if actual != manifest.data_sha256 || data.len() as u64 != manifest.data_bytes {
        return Err(BackupError::Checksum {
            backup: name,
            recorded: manifest.data_sha256.clone(),
            actual,
        });
    }
    let (snap, counts) = format::decode(&mut &data[..]).map_err(|e| BackupError::Format {
        backup: name.clone(),
        detail: e.to_string(),
    })?;
    if counts != manifest.counts {
        return Err(BackupError::Format {
            backup: name,
            detail: format!(
                "the data holds {counts:?}, the manifest records {:?}",
                manifest.counts
            ),
        });
    }
    Ok((manifest, snap))
}

/// Checks backup `key` without restoring anything: checksum, decoding, counts.
pub async fn verify(dest: &Destination, key: &str) -> Result<Manifest, BackupError> {
    read(dest, key).await.map(|(m, _)| m)
}

/// Keeps the `keep` newest backups of `deployment`/`cell` at `dest` and deletes the rest,
/// each manifest first (so a backup half deleted is never listed). Returns the keys
/// deleted. Unfinished backups (no manifest) older than the newest kept one go too.
pub async fn retain(
    dest: &Destination,
    deployment: &str,
    cell: &str,
    keep: usize,
) -> Result<Vec<String>, BackupError> {
    let prefix = format!("{deployment}/{cell}");
    let names = dest.children(&prefix).await?;
    let mut finished = Vec::new();
    let mut unfinished = Vec::new();
    for n in names {
        let key = join(&prefix, &n);
        if dest.get(&join(&key, MANIFEST)).await?.is_some() {
            finished.push(key);
        } else {
            unfinished.push(key);
        }
    }
    // Names sort by time.
    let cut = finished.len().saturating_sub(keep.max(1));
    let oldest_kept = finished.get(cut).cloned();
    let mut gone = Vec::new();
    for key in finished.drain(..cut) {
        dest.delete(&join(&key, MANIFEST)).await?;
        dest.delete(&join(&key, DATA)).await?;
        gone.push(key);
    }
    // A half-written backup older than a finished one is a failed attempt, not one in
    // progress (backups of one cell are taken one at a time).
    for key in unfinished {
        if oldest_kept.as_ref().is_some_and(|k| &key < k) {
            dest.delete(&join(&key, DATA)).await?;
            gone.push(key);
        }
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::sample;

    fn info(ms: u64) -> TakeInfo {
        TakeInfo {
            deployment: "local".into(),
            cell: "c0".into(),
            epoch: 4,
            map_epoch: 2,
            store: "embedded".into(),
            warren_version: "test".into(),
            taken_at_ms: ms,
        }
    }

    #[tokio::test]
    async fn take_then_verify_then_read_back() {
        let t = tempfile::tempdir().unwrap();
        let d = Destination::Dir(t.path().into());
        let snap = sample();
        let l = take(
            &d,
            std::sync::Arc::new(snap.clone()),
            &info(1_800_000_000_000),
        )
        .await
        .unwrap();
        assert_eq!(l.key, "local/c0/20270115T080000.000Z-e4");
        assert_eq!(l.manifest.counts.nodes, 2);
        assert_eq!(l.manifest.map_epoch, 2);
        assert_eq!(verify(&d, &l.key).await.unwrap(), l.manifest);
        assert_eq!(read(&d, &l.key).await.unwrap().1, snap);
        // The backup's own directory works as a destination too.
        let own = Destination::Dir(t.path().join(&l.key));
        assert_eq!(list(&own).await.unwrap()[0].key, "");
        assert_eq!(read(&own, "").await.unwrap().1, snap);
    }

    #[tokio::test]
    async fn one_flipped_byte_is_a_checksum_mismatch() {
        let t = tempfile::tempdir().unwrap();
        let d = Destination::Dir(t.path().into());
        let l = take(&d, std::sync::Arc::new(sample()), &info(1))
            .await
            .unwrap();
        let data = t.path().join(&l.key).join(DATA);
        let mut bytes = std::fs::read(&data).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        std::fs::write(&data, bytes).unwrap();
        let e = verify(&d, &l.key).await.unwrap_err();
        assert!(matches!(e, BackupError::Checksum { .. }), "{e}");
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
    }

    #[tokio::test]
    async fn retention_keeps_the_newest_and_half_written_backups_are_not_listed() {
        let t = tempfile::tempdir().unwrap();
        let d = Destination::Dir(t.path().into());
        let mut keys = Vec::new();
        for i in 0..5u64 {
            keys.push(
                take(&d, std::sync::Arc::new(sample()), &info(1_000 * (i + 1)))
                    .await
                    .unwrap()
                    .key,
            );
        }
        // Another cell's backups are not counted against this one's.
        let mut other = info(500);
        other.cell = "c1".into();
        take(&d, std::sync::Arc::new(sample()), &other)
            .await
            .unwrap();
        // A half-written backup: data, no manifest, between the 2nd and 3rd.
        let half = "local/c0/19700101T000002.000Z-e5";
        d.put(&format!("{half}/data"), b"WARREN-BACKUP 1\n".to_vec())
            .await
            .unwrap();
        let listed: Vec<String> = list(&d).await.unwrap().into_iter().map(|l| l.key).collect();
        assert_eq!(listed.len(), 6);
        assert!(!listed.iter().any(|k| k == half), "{listed:?}");

        let gone = retain(&d, "local", "c0", 2).await.unwrap();
        assert_eq!(gone.len(), 4, "{gone:?}");
        let left: Vec<String> = list(&d)
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.manifest.cell == "c0")
            .map(|l| l.key)
            .collect();
        assert_eq!(left, keys[3..]);
        assert!(d.children(half).await.unwrap().is_empty());
        assert_eq!(list(&d).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn reading_a_half_written_backup_names_the_missing_manifest() {
        let t = tempfile::tempdir().unwrap();
        let d = Destination::Dir(t.path().into());
        d.put("local/c0/x/data", vec![1]).await.unwrap();
        let e = read(&d, "local/c0/x").await.unwrap_err().to_string();
        assert!(e.contains("no manifest.json"), "{e}");
    }
}
