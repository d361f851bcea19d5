//! The master's backups (docs/backup.md): when they are taken (on a schedule, and on demand
//! through the `warren.v1.Backup` service) and what they read — the store, at one
//! consistent point (a redb read transaction; an etcd read at one revision), never the
//! master's memory, so service goes on while the backup is read and written. Only the
//! master of a term takes them. How and where a backup is written is the [`BackupSink`]'s
//! business (the `warren-backup` crate); this module never sees a destination.

use super::node::Node;
use super::term::Shared;
use crate::store::{Snapshot, Store};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tonic::{Request, Response, Status};
use warren_proto::pb;
use warren_proto::WarrenError;

/// What the master says about a snapshot besides its records.
#[derive(Clone, Debug)]
pub struct BackupInfo {
    pub deployment: String,
    pub cell: String,
    /// The epoch of the term that read it.
    pub epoch: u64,
    /// The partition map epoch in force at the cell (0: none).
    pub map_epoch: u64,
    /// `embedded` or `etcd`.
    pub store: &'static str,
    /// When the store was read, ms since the Unix epoch.
    pub taken_at_ms: u64,
}

/// A backup written.
#[derive(Clone, Debug)]
pub struct Written {
    /// Its key under the destination.
    pub key: String,
    /// Its manifest, as written.
    pub manifest: Vec<u8>,
    /// The data object's size.
    pub data_bytes: u64,
    /// Keys the retention deleted afterwards.
    pub deleted: Vec<String>,
}

/// Where a cell's backups go and how often (the cell's `[backup]` settings).
#[async_trait::async_trait]
pub trait BackupSink: Send + Sync + std::fmt::Debug + 'static {
    /// The destination as configured, for status and replies.
    fn destination(&self) -> String;
    /// How often the master takes one.
    fn every(&self) -> Duration;
    /// How many are kept.
    fn keep(&self) -> usize;
    /// When the newest finished backup of this cell at the destination was taken (ms since
    /// the Unix epoch), so a new master continues the schedule rather than restarting it.
    async fn last_taken_ms(&self, deployment: &str, cell: &str) -> Result<Option<u64>, String>;
    /// Writes `snap` (data, then manifest) and applies the retention.
    async fn write(&self, snap: Snapshot, info: &BackupInfo) -> Result<Written, String>;
}

/// The last attempt, for `BackupStatus`.
#[derive(Clone, Debug, Default)]
struct LastAttempt {
    success_ms: u64,
    key: String,
    error: String,
}

/// A term's backups: its store and sink, one backup at a time.
pub(crate) struct Backups {
    sink: Option<Arc<dyn BackupSink>>,
    store: Arc<dyn Store>,
    one_at_a_time: tokio::sync::Mutex<()>,
    last: Mutex<LastAttempt>,
}

impl Backups {
    pub(crate) fn new(store: Arc<dyn Store>, sink: Option<Arc<dyn BackupSink>>) -> Self {
        Backups {
            sink,
            store,
            one_at_a_time: tokio::sync::Mutex::new(()),
            last: Mutex::new(LastAttempt::default()),
        }
    }

    fn last(&self) -> LastAttempt {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, r: &Result<Written, String>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match r {
            Ok(w) => {
                *last = LastAttempt {
                    success_ms: now_ms(),
                    key: w.key.clone(),
                    error: String::new(),
                }
            }
            Err(e) => last.error = e.clone(),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Takes one backup of `shared`'s store now: waits for any backup in progress, reads the
/// store at one consistent point, writes it through the sink. Returns what was written and
/// how long it took.
pub(crate) async fn take(shared: &Shared) -> Result<(Written, Duration), Status> {
    let backups = &shared.backups;
    let Some(sink) = &backups.sink else {
        return Err(WarrenError::invalid_argument(
            "this cell has no backup destination: set dest in the cell's [backup] section \
             (or --backup-dest / WARREN_BACKUP_DEST) and restart it",
        )
        .into());
    };
    let _turn = backups.one_at_a_time.lock().await;
    let started = std::time::Instant::now();
    let info = {
        let st = shared.lock();
        let status = st.master.status();
        BackupInfo {
            deployment: status.deployment.clone(),
            cell: status.cell.clone(),
            epoch: st.master.epoch(),
            map_epoch: st.master.map_epoch(),
            store: backups.store.kind(),
            taken_at_ms: now_ms(),
        }
    };
    let result = async {
        let snap = backups
            .store
            .load()
            .await
            .map_err(|e| format!("reading the store: {e}"))?;
        sink.write(snap, &info).await
    }
    .await;
    backups.record(&result);
    let elapsed = started.elapsed();
    match result {
        Ok(w) => {
            super::metrics::backup_succeeded(elapsed, w.data_bytes);
            tracing::info!(key = %w.key, destination = %sink.destination(), ms = elapsed.as_millis() as u64, "backup written");
            Ok((w, elapsed))
        }
        Err(e) => {
            super::metrics::backup_failed();
            tracing::error!(error = %e, destination = %sink.destination(), "backup failed");
            Err(
                WarrenError::internal(format!("the backup to {} failed: {e}", sink.destination()))
                    .into(),
            )
        }
    }
}

/// The term's backup schedule: a backup every `every` after the newest one at the
/// destination (a new master continues the schedule), retried sooner after a failure.
/// Ends with the term (it holds it weakly).
pub(crate) async fn schedule(shared: Weak<Shared>) {
    let (sink, deployment, cell) = {
        let Some(s) = shared.upgrade() else { return };
        let Some(sink) = s.backups.sink.clone() else {
            return;
        };
        let st = s.lock().master.status();
        (sink, st.deployment, st.cell)
    };
    let every = sink.every();
    let retry = every.min(Duration::from_secs(60));
    let last = sink.last_taken_ms(&deployment, &cell).await;
    super::metrics::backup_schedule(every, last.clone().ok().flatten().unwrap_or(0));
    let mut wait = match last {
        Ok(Some(last)) => {
            let due = last.saturating_add(every.as_millis() as u64);
            Duration::from_millis(due.saturating_sub(now_ms())).max(Duration::from_secs(1))
        }
        Ok(None) => retry,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the backup destination; taking a backup soon");
            retry
        }
    };
    loop {
        tokio::time::sleep(wait).await;
        let Some(s) = shared.upgrade() else { return };
        wait = match take(&s).await {
            Ok(_) => every,
            Err(_) => retry,
        };
    }
}

/// The service of `node` (added to the cell's gRPC routes).
pub(super) fn service(node: Arc<Node>) -> pb::backup_server::BackupServer<BackupService> {
    pb::backup_server::BackupServer::new(BackupService { node })
}

pub(super) struct BackupService {
    node: Arc<Node>,
}

impl BackupService {
    /// Backups are for operators: from an authenticated caller, only an operator (or a
    /// cell); on a plaintext connection not judged, as every asserted principal
    /// (docs/security.md).
    fn operator_only<T>(&self, req: &Request<T>, call: &str) -> Result<(), Status> {
        match warren_server::auth::peer_identity(req) {
            Some(p) if !self.node.callers.is_operator(&p.principal) => {
                Err(WarrenError::permission_denied(format!(
                    "principal {:?} may not call Backup.{call}: backups are for operators \
                     ({:?} or a principal in the cell's operator_principals, \
                     --operator-principal)",
                    p.principal,
                    crate::core::OPERATOR_PRINCIPAL,
                ))
                .into())
            }
            _ => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl pb::backup_server::Backup for BackupService {
    async fn backup_now(
        &self,
        req: Request<pb::BackupNowRequest>,
    ) -> Result<Response<pb::BackupNowResponse>, Status> {
        self.operator_only(&req, "BackupNow")?;
        let shared = self.node.master()?;
        let (w, elapsed) = take(&shared).await?;
        Ok(Response::new(pb::BackupNowResponse {
            destination: shared
                .backups
                .sink
                .as_ref()
                .map(|s| s.destination())
                .unwrap_or_default(),
            key: w.key,
            manifest: w.manifest,
            duration_ms: elapsed.as_millis() as u64,
            deleted: w.deleted,
        }))
    }

    async fn backup_status(
        &self,
        req: Request<pb::BackupStatusRequest>,
    ) -> Result<Response<pb::BackupStatusResponse>, Status> {
        self.operator_only(&req, "BackupStatus")?;
        let shared = self.node.master()?;
        let last = shared.backups.last();
        let sink = shared.backups.sink.as_ref();
        Ok(Response::new(pb::BackupStatusResponse {
            destination: sink.map(|s| s.destination()).unwrap_or_default(),
            every_ms: sink.map_or(0, |s| s.every().as_millis() as u64),
            keep: sink.map_or(0, |s| s.keep() as u64),
            last_success_ms: last.success_ms,
            last_key: last.key,
            last_error: last.error,
        }))
    }
}
