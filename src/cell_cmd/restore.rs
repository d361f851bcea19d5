//! `warren cell restore --from BACKUP [--force]` (docs/backup.md, "Restore"; runbooks in
//! docs/operations.md): reads a backup, checks it (checksum first, never overridable),
//! applies the counter jump, checks the target store, and writes the backup into the store
//! the cell's own settings name, offline. The meta record is written last, so a restore
//! cut short leaves a store a second restore refuses without `--force` (and redoes with it).

use super::{sources, CellSettings};
use clap::Args;
use std::process::ExitCode;
use std::sync::Arc;
use warren_backup::restore::{check_target, jump_counters, JUMP};
use warren_backup::{Destination, Listed};
use warren_cell::store::embedded::EmbeddedStore;
use warren_cell::store::etcd::{cell_prefix, connect_any, EtcdStore};
use warren_cell::store::{Mutation, Snapshot, Store};
use warren_config::{CellConfig, StoreKind};

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The backup: its directory (`<dest>/<deployment>/<cell>/<time>-e<epoch>`), or a
    /// destination (or a deployment's or cell's folder in it), whose newest backup of this
    /// cell is restored.
    #[arg(long, value_name = "BACKUP")]
    from: String,
    /// Restore even into a store that holds state (it is replaced), or from another
    /// deployment's or cell's backup. Never overrides a checksum mismatch.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    settings: CellSettings,
}

/// Mutations per store commit while restoring (bounded memory per transaction; etcd splits
/// further by its own limits).
const BATCH: usize = 1000;

pub(super) async fn run(a: RestoreArgs) -> ExitCode {
    match restore(a).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether `field` is set by a flag, `WARREN_<FIELD>` or (roughly) the config file.
fn given(s: &warren_config::Sources, field: &str) -> bool {
    let env = format!("WARREN_{}", field.to_uppercase());
    s.flags
        .iter()
        .any(|(k, _)| k.trim_start_matches('-').replace('-', "_") == field)
        || s.env.contains_key(&env)
        || s.file.as_ref().is_some_and(|f| {
            f.contents.lines().any(|l| {
                l.trim_start()
                    .strip_prefix(field)
                    .is_some_and(|r| r.trim_start().starts_with('='))
            })
        })
}

/// The backup `--from` names: the location itself if it is one, else the newest backup of
/// `cell` (any cell if `None`, when there is one) under it.
async fn pick(
    from: &str,
    deployment: Option<&str>,
    cell: Option<&str>,
) -> anyhow::Result<(Destination, String)> {
    let dest = Destination::parse(from)?;
    let listed = warren_backup::list(&dest).await?;
    if listed.iter().any(|l| l.key.is_empty()) {
        return Ok((dest, String::new()));
    }
    let fits = |l: &&Listed| {
        deployment.is_none_or(|d| l.manifest.deployment == d)
            && cell.is_none_or(|c| l.manifest.cell == c)
    };
    let candidates: Vec<&Listed> = listed.iter().filter(fits).collect();
    let cells: std::collections::BTreeSet<_> = candidates
        .iter()
        .map(|l| (&l.manifest.deployment, &l.manifest.cell))
        .collect();
    match (candidates.last(), cells.len()) {
        (None, _) => anyhow::bail!(
            "{from} holds no finished backup{}: give the backup's directory, or check the \
             destination with `warren ctl backup list --from {from}`",
            cell.map(|c| format!(" of cell {c:?}")).unwrap_or_default()
        ),
        (Some(l), 1) => Ok((dest, l.key.clone())),
        (Some(_), n) => anyhow::bail!(
            "{from} holds backups of {n} cells: give --name (the cell to restore; and \
             --deployment if several deployments have one of that name), or the backup's \
             own directory"
        ),
    }
}

async fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    let mut s = sources(&a.settings)?;
    // The listen address does not matter offline; the cell's name defaults to the backup's.
    if !given(&s, "listen") {
        s = s.with_flag("listen", "127.0.0.1:0");
    }
    // Which backup: the one --from names, or the newest of this cell under it. The cell's
    // name and deployment default to the backup's.
    let named = given(&s, "name").then(|| CellConfig::load(&s));
    let deployment_given = given(&s, "deployment");
    let (dest, key) = match &named {
        Some(Ok(cfg)) => {
            let deployment = deployment_given.then_some(cfg.deployment.as_str());
            pick(&a.from, deployment, Some(&cfg.name)).await?
        }
        Some(Err(e)) => anyhow::bail!("configuration: {e}"),
        None => pick(&a.from, None, None).await?,
    };
    // Checksum and decoding first: a corrupt backup is refused whatever else holds.
    let (manifest, mut snap) = warren_backup::read(&dest, &key).await?;
    if named.is_none() {
        s = s.with_flag("name", manifest.cell.clone());
    }
    if !deployment_given {
        s = s.with_flag("deployment", manifest.deployment.clone());
    }
    let cfg = CellConfig::load(&s).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    jump_counters(&mut snap).map_err(|e| anyhow::anyhow!("backup {key}: {e}"))?;

    let store = open_target(&cfg).await?;
    let target = store
        .load()
        .await
        .map_err(|e| anyhow::anyhow!("reading the target store: {e}"))?;
    check_target(
        &manifest,
        snap.meta.as_ref(),
        &cfg.deployment,
        &cfg.name,
        &target,
        a.force,
    )?;
    warren_backup::restore::raise_above(&mut snap, &target);
    let mut batches = wipe(&target);
    batches.extend(writes(snap));
    let total = batches.len();
    let mut pending = Vec::new();
    for m in batches {
        pending.push(m);
        if pending.len() == BATCH {
            store.commit(std::mem::take(&mut pending)).await?;
        }
    }
    store.commit(pending).await?;
    let backup = if key.is_empty() {
        a.from.clone()
    } else {
        format!("{}/{key}", a.from)
    };
    println!(
        "restored cell {} of deployment {} into the {} store from {backup} (taken {} at epoch \
         {}, map epoch {}): {} nodes, {} files, {} bytes, {} sessions, {} held locks; {total} \
         mutations. Epoch, next instance and every generation are {JUMP} (2^40) higher than \
         backed up (docs/backup.md). Start the cell now with the same settings.",
        cfg.name,
        cfg.deployment,
        store.kind(),
        manifest.taken_at,
        manifest.epoch,
        manifest.map_epoch,
        manifest.counts.nodes,
        manifest.counts.files,
        manifest.counts.bytes,
        manifest.counts.sessions,
        manifest.counts.held_locks,
    );
    Ok(())
}

/// The store `cfg` names, opened without a master (the cell must not be running).
async fn open_target(cfg: &CellConfig) -> anyhow::Result<Arc<dyn Store>> {
    match cfg.store {
        StoreKind::Embedded => {
            let dir = cfg.data.clone();
            let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir))
                .await?
                .map_err(|e| anyhow::anyhow!("{e} (stop the cell before restoring into it)"))?;
            Ok(Arc::new(store))
        }
        StoreKind::Etcd => {
            if let Some(cacert) = &cfg.etcd_cacert {
                let identity = cfg.etcd_cert.clone().zip(cfg.etcd_key.clone());
                warren_cell::store::etcd::use_tls(warren_cell::store::etcd::EtcdTls {
                    cacert: cacert.clone(),
                    identity,
                })
                .map_err(|e| anyhow::anyhow!("TLS to etcd: {e}"))?;
            }
            let mut client = connect_any(&cfg.etcd)
                .await
                .ok_or_else(|| anyhow::anyhow!("cannot reach etcd at {}", cfg.etcd.join(",")))?;
            let prefix = cell_prefix(&cfg.deployment, &cfg.name);
            // A running replica campaigns (or holds mastership) under `election`: never
            // write under a live cell, --force or not.
            let election = format!("{prefix}election");
            let campaigning = client
                .get(
                    election.clone(),
                    Some(
                        etcd_client::GetOptions::new()
                            .with_prefix()
                            .with_count_only(),
                    ),
                )
                .await
                .map_err(|e| anyhow::anyhow!("etcd: {e}"))?
                .count();
            if campaigning > 0 {
                anyhow::bail!(
                    "a replica of cell {} is running ({campaigning} election key(s) under \
                     {election}): stop every replica of the cell, wait for its etcd lease \
                     ({}) to lapse, and restore again",
                    cfg.name,
                    warren_config::format_duration(cfg.etcd_lease)
                );
            }
            let store = EtcdStore::new(client, prefix, None)
                .with_endpoints(cfg.etcd.clone())
                .with_limits(cfg.etcd_max_txn_ops, 1024 * 1024);
            store.probe_limits().await?;
            Ok(Arc::new(store))
        }
    }
}

/// Mutations that empty `target` (what --force replaces).
fn wipe(target: &Snapshot) -> Vec<Mutation> {
    let mut out: Vec<Mutation> = target
        .nodes
        .iter()
        .map(|n| n.path.clone())
        .chain(target.contents.iter().map(|(p, _)| p.clone()))
        .map(|path| Mutation::DeleteNode { path })
        .collect();
    out.extend(
        target
            .sessions
            .iter()
            .map(|s| Mutation::DeleteSession(s.id)),
    );
    out.extend(
        target
            .staged
            .iter()
            .map(|(key, _)| Mutation::DeleteStaged { key: key.clone() }),
    );
    out
}

/// Mutations that write `snap`, its meta record last.
fn writes(snap: Snapshot) -> Vec<Mutation> {
    let mut out = Vec::new();
    out.extend(snap.nodes.into_iter().map(Mutation::PutNode));
    out.extend(
        snap.contents
            .into_iter()
            .map(|(path, data)| Mutation::PutContents { path, data }),
    );
    out.extend(snap.sessions.into_iter().map(Mutation::PutSession));
    out.extend(
        snap.staged
            .into_iter()
            .map(|(key, value)| Mutation::PutStaged { key, value }),
    );
    out.extend(snap.meta.map(Mutation::PutMeta));
    out
}
