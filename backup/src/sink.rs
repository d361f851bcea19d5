//! [`CellBackups`]: the cell master's [`BackupSink`] — its `[backup]` settings, writing each
//! backup with [`crate::take`] and keeping the newest `keep` with [`crate::retain`].

use crate::{Destination, TakeInfo};
use std::time::Duration;
use warren_cell::server::backup::{BackupInfo, BackupSink, Written};
use warren_cell::store::Snapshot;

/// A cell's backup settings, as the master's sink.
#[derive(Debug)]
pub struct CellBackups {
    pub dest: Destination,
    pub every: Duration,
    pub keep: usize,
    /// Recorded in each manifest (`warren_version`).
    pub warren_version: String,
}

#[async_trait::async_trait]
impl BackupSink for CellBackups {
    fn destination(&self) -> String {
        self.dest.to_string()
    }

    fn every(&self) -> Duration {
        self.every
    }

    fn keep(&self) -> usize {
        self.keep
    }

    async fn last_taken_ms(&self, deployment: &str, cell: &str) -> Result<Option<u64>, String> {
        let prefix = format!("{deployment}/{cell}");
        let names = self
            .dest
            .children(&prefix)
            .await
            .map_err(|e| e.to_string())?;
        for name in names.iter().rev() {
            let key = format!("{prefix}/{name}/{}", crate::manifest::MANIFEST);
            if let Some(bytes) = self.dest.get(&key).await.map_err(|e| e.to_string())? {
                if let Ok(m) = crate::Manifest::parse(&bytes) {
                    return Ok(Some(m.taken_at_ms));
                }
            }
        }
        Ok(None)
    }

    async fn write(&self, snap: Snapshot, info: &BackupInfo) -> Result<Written, String> {
        let take = TakeInfo {
            deployment: info.deployment.clone(),
            cell: info.cell.clone(),
            epoch: info.epoch,
            map_epoch: info.map_epoch,
            store: info.store.to_owned(),
            warren_version: self.warren_version.clone(),
            taken_at_ms: info.taken_at_ms,
        };
        let listed = crate::take(&self.dest, std::sync::Arc::new(snap), &take)
            .await
            .map_err(|e| e.to_string())?;
        // A failed retention leaves more backups than asked, never fewer: warn, and the
        // backup just written stands.
        let deleted = match crate::retain(&self.dest, &info.deployment, &info.cell, self.keep).await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "backup written, but deleting old backups failed");
                Vec::new()
            }
        };
        Ok(Written {
            key: listed.key,
            manifest: listed.manifest.to_json(),
            data_bytes: listed.manifest.data_bytes,
            deleted,
        })
    }
}
