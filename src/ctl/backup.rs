//! `warren ctl backup …` (docs/ctl.md, docs/backup.md): `now` asks cell masters for a
//! backup (`warren.v1.Backup`); `list` and `verify` read a destination directly and need
//! no cell.
//!
//! | command | does | prints (simple) |
//! |---|---|---|
//! | `backup now` | a backup of the cell at `--endpoint` | the backup's `key: value` lines |
//! | `backup now --cell NAME [--meta …]` | of the cell NAME of the meta cell's map (or the meta cell) | the same |
//! | `backup now --all [--meta …] [--set-dest DEST]` | of the meta cell and every data cell, then a set manifest at DEST (default: the cells' common destination) | a row per member, then `set: ID` |
//! | `backup status [--cell NAME]` | the cell master's backup settings and its last attempt | `key: value` lines |
//! | `backup list --from DEST` | every finished backup under DEST (and the sets) | a row per backup |
//! | `backup verify --from DEST [--set ID]` | checks each backup's SHA-256 and decodes it, restoring nothing; with `--set`, the set's members and their one map epoch | a row per backup; exit 2 naming each failure |

use super::failure::Failure;
use super::output::{print_line, table, Output, Record};
use clap::Subcommand;
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;
use tonic::transport::Endpoint;
use warren_backup::set::{self, SetManifest};
use warren_backup::{Destination, Listed, Manifest};
use warren_client::{ClientOptions, Session};
use warren_proto::pb;
use warren_proto::pb::backup_client::BackupClient;
use warren_proto::{ErrorCode, WarrenError};

/// `warren ctl backup …`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a backup now: of the cell at --endpoint, of one cell of the deployment
    /// (--cell), or of every cell as one set (--all).
    Now {
        /// The cell to back up, by its name in the partition map (or the meta cell's name).
        #[arg(long, conflicts_with = "all")]
        cell: Option<String>,
        /// Back up the meta cell and every data cell, and write a set manifest.
        #[arg(long)]
        all: bool,
        /// The meta cell (with --cell or --all).
        #[command(flatten)]
        meta: super::reshard::MetaArg,
        /// Where the set manifest goes (--all); default: the destination the cells report,
        /// when they all have the same one.
        #[arg(long, value_name = "DEST", requires = "all")]
        set_dest: Option<String>,
    },
    /// The backup settings and last attempt of the cell at --endpoint (or --cell NAME).
    Status {
        /// The cell, by its name in the partition map (or the meta cell's name).
        #[arg(long)]
        cell: Option<String>,
        /// The meta cell (with --cell).
        #[command(flatten)]
        meta: super::reshard::MetaArg,
    },
    /// List the finished backups (and sets) under a destination; needs no cell.
    List {
        /// A destination directory (or a deployment's, cell's or backup's folder in it).
        #[arg(long, value_name = "DEST")]
        from: String,
    },
    /// Check backups without restoring: each data object's SHA-256 against its manifest,
    /// and that it decodes; needs no cell.
    Verify {
        /// A destination directory (or a deployment's, cell's or backup's folder in it).
        #[arg(long, value_name = "DEST")]
        from: String,
        /// Verify this set (its members, and that they share one map epoch with no
        /// reshard in progress) instead of every backup.
        #[arg(long, value_name = "ID")]
        set: Option<String>,
        /// The deployment of --set (default: the only one at DEST).
        #[arg(long, requires = "set")]
        deployment: Option<String>,
    },
}

/// `DATA_LOSS`: a backup failed its checks.
fn corrupt(message: String) -> Failure {
    Failure {
        code: "DATA_LOSS",
        message,
    }
}

fn backup_failure(e: warren_backup::BackupError) -> Failure {
    match e {
        warren_backup::BackupError::Dest(warren_backup::DestError::Refused(m)) => {
            Failure::invalid(m)
        }
        warren_backup::BackupError::Dest(d) => Failure {
            code: "UNAVAILABLE",
            message: d.to_string(),
        },
        other => corrupt(other.to_string()),
    }
}

fn destination(from: &str) -> Result<Destination, Failure> {
    Destination::parse(from).map_err(|e| Failure::invalid(e.to_string()))
}

/// Runs a backup command; `options` makes the session to the meta cell (--cell, --all).
pub(crate) async fn run(
    command: BackupCommand,
    endpoints: Vec<String>,
    out: Output,
    options: impl Fn(Vec<String>) -> ClientOptions,
) -> Result<ExitCode, Failure> {
    match command {
        BackupCommand::List { from } => list(&destination(&from)?, out).await,
        BackupCommand::Verify {
            from,
            set,
            deployment,
        } => {
            let dest = destination(&from)?;
            match set {
                Some(id) => verify_set(&dest, deployment, &id, out).await,
                None => verify_all(&dest, out).await,
            }
        }
        BackupCommand::Status { cell, meta } => {
            let replicas = match cell {
                Some(name) => cell_replicas(&super::addresses(&meta.meta), &name, options).await?,
                None => endpoints,
            };
            let r = at_master(&replicas, |mut c| async move {
                c.backup_status(pb::BackupStatusRequest {}).await
            })
            .await?;
            let last = if r.last_success_ms == 0 {
                "never".to_owned()
            } else {
                warren_backup::rfc3339_ms(r.last_success_ms)
            };
            let record = Record::default()
                .field("destination", r.destination.as_str())
                .text_only(
                    "every",
                    warren_config::format_duration(Duration::from_millis(r.every_ms)),
                )
                .json_only("every_ms", json!(r.every_ms))
                .field("keep", r.keep)
                .text_only("last_success", last)
                .json_only("last_success_ms", json!(r.last_success_ms))
                .field("last_key", r.last_key.as_str())
                .field("last_error", r.last_error.as_str());
            print_line(&out.record(&record))?;
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Now {
            cell,
            all,
            meta,
            set_dest,
        } => {
            let meta = super::addresses(&meta.meta);
            if all {
                now_all(&meta, set_dest, out, options).await
            } else {
                let replicas = match cell {
                    Some(name) => cell_replicas(&meta, &name, options).await?,
                    None => endpoints,
                };
                let r = backup_now(&replicas).await?;
                print_line(&out.record(&now_record(&r)?))?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// The cell named `name`: the meta cell if it is its name, else a data cell of its map.
async fn cell_replicas(
    meta: &[String],
    name: &str,
    options: impl Fn(Vec<String>) -> ClientOptions,
) -> Result<Vec<String>, Failure> {
    let (meta_name, map) = meta_and_map(meta, options).await?;
    if meta_name == name {
        return Ok(meta.to_vec());
    }
    match map.as_ref().and_then(|m| m.replicas(name)) {
        Some(r) => Ok(r.to_vec()),
        None => Err(Failure::invalid(format!(
            "no cell {name:?}: the meta cell is {meta_name:?}{}",
            match &map {
                Some(m) => format!(
                    " and its map names {}",
                    m.cells()
                        .keys()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => " and the deployment has no partition map".into(),
            }
        ))),
    }
}

/// The meta cell's name and the partition map it holds (none: an unpartitioned cell).
async fn meta_and_map(
    meta: &[String],
    options: impl Fn(Vec<String>) -> ClientOptions,
) -> Result<(String, Option<warren_router::PartitionMap>), Failure> {
    if meta.is_empty() {
        return Err(Failure::invalid(
            "no meta cell: give --meta HOST:PORT (the meta cell's replicas)",
        ));
    }
    let session = Session::connect_with(options(meta.to_vec()))
        .await
        .map_err(Failure::from)?;
    let name = session.locate().await.map(|l| l.cell);
    let map = warren_client::admin::read_map(&session).await;
    let _ = session.close().await;
    let map = match map {
        Ok((m, _)) => Some(m),
        Err(e) if e.code() == Some(ErrorCode::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    Ok((name?, map))
}

/// `BackupNow` at the master among `replicas`.
async fn backup_now(replicas: &[String]) -> Result<pb::BackupNowResponse, Failure> {
    at_master(replicas, |mut c| async move {
        c.backup_now(pb::BackupNowRequest {}).await
    })
    .await
}

/// Runs `call` at the master among `replicas` (a standby's NOT_MASTER is followed).
async fn at_master<T, F, Fut>(replicas: &[String], mut call: F) -> Result<T, Failure>
where
    F: FnMut(BackupClient<tonic::transport::Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut queue: Vec<String> = replicas.iter().rev().cloned().collect();
    let mut tried = std::collections::HashSet::new();
    let mut attempts = Vec::new();
    while let Some(addr) = queue.pop() {
        if !tried.insert(addr.clone()) || tried.len() > replicas.len() + 3 {
            continue;
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Failure::invalid(format!("{addr:?} is not HOST:PORT: {e}")))?
            .connect_timeout(Duration::from_secs(3))
            // A backup of a large cell takes a while; the master answers once it is written.
            .timeout(Duration::from_secs(3600));
        let channel = match warren_client::transport::connect_endpoint(&endpoint).await {
            Ok(c) => c,
            Err(e) => {
                attempts.push(format!(
                    "{addr}: {}",
                    warren_client::reshard::error_chain(&e)
                ));
                continue;
            }
        };
        match call(BackupClient::new(channel)).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(status) => match WarrenError::from_status(&status) {
                Some(e) if e.code == ErrorCode::NotMaster => {
                    if !e.master.is_empty() {
                        queue.push(e.master.clone());
                    }
                    attempts.push(format!("{addr}: {}", e.message));
                }
                Some(e) => {
                    return Err(Failure {
                        code: e.code_name(),
                        message: format!("{addr}: {}", e.message),
                    })
                }
                None if status.code() == tonic::Code::Unimplemented => attempts.push(format!(
                    "{addr} does not serve the Backup service (a proxy? give a cell's address \
                     with --endpoint, or --cell NAME with --meta)"
                )),
                None => attempts.push(format!("{addr}: {:?}: {}", status.code(), status.message())),
            },
        }
    }
    Err(Failure {
        code: "UNAVAILABLE",
        message: format!("no master of the cell answered ({})", attempts.join("; ")),
    })
}

fn parse_manifest(r: &pb::BackupNowResponse) -> Result<Manifest, Failure> {
    Manifest::parse(&r.manifest).map_err(|e| Failure {
        code: "INTERNAL",
        message: format!("the cell's manifest does not parse: {e}"),
    })
}

fn manifest_record(key: &str, m: &Manifest) -> Record {
    Record::default()
        .field("key", key)
        .field("deployment", m.deployment.as_str())
        .field("cell", m.cell.as_str())
        .field("taken_at", m.taken_at.as_str())
        .field("epoch", m.epoch)
        .field("map_epoch", m.map_epoch)
        .field("store", m.store.as_str())
        .field("nodes", m.counts.nodes)
        .field("files", m.counts.files)
        .field("bytes", m.counts.bytes)
        .field("sessions", m.counts.sessions)
        .field("held_locks", m.counts.held_locks)
        .field("data_bytes", m.data_bytes)
        .field("sha256", m.data_sha256.as_str())
}

fn now_record(r: &pb::BackupNowResponse) -> Result<Record, Failure> {
    let m = parse_manifest(r)?;
    Ok(Record::default()
        .field("destination", r.destination.as_str())
        .extend(manifest_record(&r.key, &m))
        .field("duration_ms", r.duration_ms)
        .field("deleted", r.deleted.len() as u64))
}

/// `backup now --all`: the meta cell, then every data cell, then the set manifest.
async fn now_all(
    meta: &[String],
    set_dest: Option<String>,
    out: Output,
    options: impl Fn(Vec<String>) -> ClientOptions,
) -> Result<ExitCode, Failure> {
    let (_, map) = meta_and_map(meta, options).await?;
    let mut cells: Vec<Vec<String>> = vec![meta.to_vec()];
    if let Some(map) = &map {
        cells.extend(map.cells().values().cloned());
    }
    let mut replies = Vec::new();
    for replicas in &cells {
        let r = backup_now(replicas).await?;
        let m = parse_manifest(&r)?;
        replies.push((r, m));
    }
    let dests: std::collections::BTreeSet<&str> = replies
        .iter()
        .map(|(r, _)| r.destination.as_str())
        .collect();
    let dest = match (set_dest, dests.len()) {
        (Some(d), _) => d,
        (None, 1) => dests.into_iter().next().unwrap_or_default().to_owned(),
        (None, _) => {
            return Err(Failure::invalid(format!(
                "every cell was backed up, but to different destinations ({}): give \
                 --set-dest DEST for the set manifest",
                dests.into_iter().collect::<Vec<_>>().join(", ")
            )))
        }
    };
    let dest = destination(&dest)?;
    let deployment = replies[0].1.deployment.clone();
    let id = warren_backup::manifest::backup_name(
        warren_backup::now_ms(),
        replies.iter().map(|(_, m)| m.map_epoch).max().unwrap_or(0),
    );
    let members: Vec<(String, Manifest)> = replies
        .iter()
        .map(|(r, m)| (r.key.clone(), m.clone()))
        .collect();
    let written = set::write(&dest, &id, &deployment, &members)
        .await
        .map_err(backup_failure)?;
    let problems =
        set::inconsistencies(&members.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>());
    print_set(&written, &problems, out)?;
    if !problems.is_empty() {
        return Err(corrupt(format!(
            "set {id} was written but is not consistent: {}",
            problems.join("; ")
        )));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_set(s: &SetManifest, problems: &[String], out: Output) -> Result<(), Failure> {
    if out.json {
        return print_line(&json!({"set": s, "problems": problems}).to_string());
    }
    let rows: Vec<Vec<String>> = s
        .members
        .iter()
        .map(|m| {
            vec![
                m.cell.clone(),
                m.key.clone(),
                m.epoch.to_string(),
                m.map_epoch.to_string(),
            ]
        })
        .collect();
    if out.table {
        print_line(&table(&["cell", "key", "epoch", "map_epoch"], &rows))?;
    } else {
        for r in &rows {
            print_line(&format!(
                "{} {} epoch={} map_epoch={}",
                r[0], r[1], r[2], r[3]
            ))?;
        }
    }
    print_line(&format!("set: {} (map epoch {})", s.id, s.map_epoch))
}

fn listed_rows(listed: &[Listed]) -> Vec<Vec<String>> {
    listed
        .iter()
        .map(|l| {
            let m = &l.manifest;
            vec![
                m.deployment.clone(),
                m.cell.clone(),
                if l.key.is_empty() {
                    ".".into()
                } else {
                    l.key.clone()
                },
                m.taken_at.clone(),
                m.epoch.to_string(),
                m.map_epoch.to_string(),
                m.counts.nodes.to_string(),
                m.data_bytes.to_string(),
            ]
        })
        .collect()
}

const LIST_HEADERS: [&str; 8] = [
    "deployment",
    "cell",
    "key",
    "taken_at",
    "epoch",
    "map_epoch",
    "nodes",
    "data_bytes",
];

/// `backup list --from DEST`.
async fn list(dest: &Destination, out: Output) -> Result<ExitCode, Failure> {
    let listed = warren_backup::list(dest).await.map_err(backup_failure)?;
    let deployments: std::collections::BTreeSet<String> = listed
        .iter()
        .map(|l| l.manifest.deployment.clone())
        .collect();
    let mut sets = Vec::new();
    for d in &deployments {
        for id in set::list(dest, d).await.map_err(backup_failure)? {
            sets.push((d.clone(), id));
        }
    }
    if out.json {
        for l in &listed {
            print_line(&manifest_record(&l.key, &l.manifest).json().to_string())?;
        }
        for (d, id) in &sets {
            print_line(&json!({"deployment": d, "set": id}).to_string())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows = listed_rows(&listed);
    if out.table {
        print_line(&table(&LIST_HEADERS, &rows))?;
    } else {
        for r in &rows {
            print_line(&r.join(" "))?;
        }
    }
    for (d, id) in &sets {
        print_line(&format!("set {d} {id}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One verified backup's row: ok, or the failure.
fn verdict(key: &str, r: &Result<Manifest, warren_backup::BackupError>, out: Output) -> String {
    match (r, out.json) {
        (Ok(m), true) => manifest_record(key, m)
            .json_only("ok", json!(true))
            .json()
            .to_string(),
        (Err(e), true) => json!({"key": key, "ok": false, "error": e.to_string()}).to_string(),
        (Ok(m), false) => format!(
            "{key}: ok ({} nodes, {} bytes, sha256 {})",
            m.counts.nodes, m.data_bytes, m.data_sha256
        ),
        (Err(e), false) => format!("{key}: FAILED: {e}"),
    }
}

fn shown(key: &str) -> &str {
    if key.is_empty() {
        "."
    } else {
        key
    }
}

/// `backup verify --from DEST`: every finished backup under DEST.
async fn verify_all(dest: &Destination, out: Output) -> Result<ExitCode, Failure> {
    let listed = warren_backup::list(dest).await.map_err(backup_failure)?;
    if listed.is_empty() {
        return Err(Failure {
            code: "NOT_FOUND",
            message: format!(
                "{dest} holds no finished backup (a backup without manifest.json is unfinished \
                 and never verified or restored)"
            ),
        });
    }
    let mut failed = Vec::new();
    for l in &listed {
        let r = warren_backup::verify(dest, &l.key).await;
        print_line(&verdict(shown(&l.key), &r, out))?;
        if let Err(e) = r {
            failed.push(e.to_string());
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(corrupt(format!(
            "{} of {} backups failed verification: {}",
            failed.len(),
            listed.len(),
            failed.join("; ")
        )))
    }
}

/// `backup verify --from DEST --set ID`.
async fn verify_set(
    dest: &Destination,
    deployment: Option<String>,
    id: &str,
    out: Output,
) -> Result<ExitCode, Failure> {
    let deployment = match deployment {
        Some(d) => d,
        None => {
            let listed = warren_backup::list(dest).await.map_err(backup_failure)?;
            let ds: std::collections::BTreeSet<String> =
                listed.into_iter().map(|l| l.manifest.deployment).collect();
            match ds.len() {
                1 => ds.into_iter().next().unwrap_or_default(),
                0 => {
                    return Err(Failure {
                        code: "NOT_FOUND",
                        message: format!("{dest} holds no backup"),
                    })
                }
                _ => {
                    return Err(Failure::invalid(format!(
                        "{dest} holds backups of several deployments; give --deployment"
                    )))
                }
            }
        }
    };
    let (s, results, problems) = set::verify(dest, &deployment, id)
        .await
        .map_err(backup_failure)?;
    let mut failed: Vec<String> = Vec::new();
    for (member, r) in &results {
        print_line(&verdict(&member.key, r, out))?;
        if let Err(e) = r {
            failed.push(e.to_string());
        }
    }
    failed.extend(problems.iter().cloned());
    if failed.is_empty() {
        print_line(&format!(
            "set {id}: ok ({} members, map epoch {})",
            s.members.len(),
            s.map_epoch
        ))?;
        Ok(ExitCode::SUCCESS)
    } else {
        Err(corrupt(format!("set {id}: {}", failed.join("; "))))
    }
}
