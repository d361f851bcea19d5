//! `warren cell`: one cell master on the embedded store. Settings come from `--config FILE`
//! (TOML), `WARREN_*` environment variables and flags, in rising precedence; errors name
//! the field. Prints `cells: NAME=ADDR` and `ready` once serving. With `[backup]` settings
//! the master takes backups (docs/backup.md).
//!
//! `warren cell restore --from BACKUP [--force]` writes a backup into the store the same
//! settings name (`--data`, or `--store etcd --etcd …`), offline; the cell is then started
//! as usual (module [`restore`]).

use clap::Args;
use std::process::ExitCode;
use std::sync::Arc;
use warren_cell::replica::{run_replica, EtcdOptions};
use warren_cell::server::CellOptions;
use warren_cell::store::embedded::EmbeddedStore;
use warren_config::{CellConfig, StoreKind};

use crate::server_cmd;

/// `warren cell [SETTINGS]` serves; `warren cell restore …` restores a backup.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CellArgs {
    #[command(flatten)]
    settings: CellSettings,
    #[command(subcommand)]
    action: Option<CellAction>,
}

#[derive(clap::Subcommand, Debug)]
enum CellAction {
    /// Restore a backup into this cell's store (offline: the cell must not be running),
    /// then start the cell as usual. Refuses, naming the reason, a backup that fails its
    /// checksum (always), of another deployment or cell, or a store that already holds
    /// state (unless --force).
    Restore(restore::RestoreArgs),
}

/// The cell's settings (flags), for serving and for restoring.
#[derive(Args, Debug)]
pub struct CellSettings {
    /// TOML file with any of the settings below (keys are the flag names with `_`).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Cell name (`[a-z0-9-]`, 1–63 chars). Env WARREN_NAME.
    #[arg(long)]
    name: Option<String>,
    /// gRPC listen address HOST:PORT (port 0 picks one). Env WARREN_LISTEN.
    #[arg(long)]
    listen: Option<String>,
    /// Directory of the embedded store. Env WARREN_DATA.
    #[arg(long)]
    data: Option<String>,
    /// Admin HTTP address HOST:PORT (/metrics, /healthz, /readyz, /status). Env WARREN_ADMIN.
    #[arg(long)]
    admin: Option<String>,
    /// Deployment name (`/ls/<deployment>/…`). Env WARREN_DEPLOYMENT. Default `local`.
    #[arg(long)]
    deployment: Option<String>,
    /// Session lease, e.g. `12s`. Env WARREN_LEASE.
    #[arg(long)]
    lease: Option<String>,
    /// Lease granted to proxy sessions (longer than `lease`, so proxies can collect their
    /// clients' acknowledgements within it), e.g. `20s`. Env WARREN_PROXY_LEASE.
    #[arg(long)]
    proxy_lease: Option<String>,
    /// How long the client sessions of a dead proxy keep their locks and ephemeral files
    /// waiting to be claimed by another proxy (≥ the clients' grace period), e.g. `60s`.
    /// Env WARREN_CLAIM_WINDOW.
    #[arg(long)]
    claim_window: Option<String>,
    /// Largest file in bytes (≤ 262144). Env WARREN_MAX_FILE_SIZE.
    #[arg(long)]
    max_file_size: Option<String>,
    /// After a failover, how long ephemeral nodes wait to be reopened before deletion,
    /// e.g. `60s`. Env WARREN_EPHEMERAL_CLEANUP.
    #[arg(long)]
    ephemeral_cleanup: Option<String>,
    /// `embedded` (default: one replica, redb in --data) or `etcd` (replicas campaign
    /// through etcd). Env WARREN_STORE.
    #[arg(long)]
    store: Option<String>,
    /// etcd client URLs, comma separated (with --store etcd). Env WARREN_ETCD.
    #[arg(long)]
    etcd: Option<String>,
    /// This replica's id within the cell (with --store etcd). Env WARREN_REPLICA.
    #[arg(long)]
    replica: Option<String>,
    /// TTL of the mastership lease in etcd, e.g. `2s`. Env WARREN_ETCD_LEASE.
    #[arg(long)]
    etcd_lease: Option<String>,
    /// Most operations per etcd transaction: give etcd's --max-txn-ops (default 128; run
    /// etcd with 10000 and give 10000 here). If etcd's is lower, the cell finds it at
    /// election or when etcd refuses a write, warns naming both flags, and writes smaller
    /// transactions (large batches then apply in parts). Env WARREN_ETCD_MAX_TXN_OPS.
    #[arg(long)]
    etcd_max_txn_ops: Option<String>,
    /// TLS to etcd: the CA (PEM) that signs etcd's certificates; the --etcd URLs are then
    /// https://. Env WARREN_ETCD_CACERT.
    #[arg(long)]
    etcd_cacert: Option<String>,
    /// This replica's client certificate (PEM) for etcd (with etcd's --client-cert-auth).
    /// Env WARREN_ETCD_CERT.
    #[arg(long)]
    etcd_cert: Option<String>,
    /// The private key (PEM) of --etcd-cert. Env WARREN_ETCD_KEY.
    #[arg(long)]
    etcd_key: Option<String>,
    /// The meta cell's replicas, HOST:PORT[,HOST:PORT…]: given, this is a data cell of a
    /// partitioned deployment, serving the slots the partition map (watched in the meta
    /// cell) gives it. Unset for the meta cell itself or an unpartitioned deployment.
    /// Env WARREN_META.
    #[arg(long)]
    meta: Option<String>,
    /// The address others reach this replica at, HOST:PORT, if not --listen (NAT, a
    /// container port, a TCP relay): what Locate names as master. Env WARREN_ADVERTISE.
    #[arg(long)]
    advertise: Option<String>,
    /// A principal (as a verified client certificate names it) that may act as a proxy:
    /// create proxy sessions, claim client sessions and forward its clients' principals.
    /// Repeat for several. Env WARREN_PROXY_PRINCIPALS (comma separated).
    #[arg(long = "proxy-principal", value_name = "PRINCIPAL")]
    proxy_principal: Vec<String>,
    /// A principal that may write the reserved subtree /ls/<d>/warren/ and run reshards,
    /// besides warren:operator. Repeat for several. Env WARREN_OPERATOR_PRINCIPALS.
    #[arg(long = "operator-principal", value_name = "PRINCIPAL")]
    operator_principal: Vec<String>,
    /// Where the master's backups go: a directory, never inside --data (docs/backup.md).
    /// Env WARREN_BACKUP_DEST; `dest` in the config file's [backup] section.
    #[arg(long)]
    backup_dest: Option<String>,
    /// How often the master takes a backup, e.g. `6h` (the default). Env
    /// WARREN_BACKUP_EVERY; `every` in [backup].
    #[arg(long)]
    backup_every: Option<String>,
    /// How many of this cell's backups are kept (default 28). Env WARREN_BACKUP_KEEP;
    /// `keep` in [backup].
    #[arg(long)]
    backup_keep: Option<String>,

    #[command(flatten)]
    tls: crate::tls_cmd::ServerTlsArgs,
}

/// Serves one cell until Ctrl-C / SIGTERM, or restores a backup.
pub async fn run(a: CellArgs) -> ExitCode {
    match a.action {
        Some(CellAction::Restore(r)) => restore::run(r).await,
        None => serve_settings(a.settings).await,
    }
}

/// The settings' sources: the file, the environment, and the flags given.
fn sources(a: &CellSettings) -> Result<warren_config::Sources, warren_config::ConfigError> {
    let joined = |v: &Vec<String>| (!v.is_empty()).then(|| v.join(","));
    let (proxy_principals, operator_principals) =
        (joined(&a.proxy_principal), joined(&a.operator_principal));
    let flags = [
        ("name", &a.name),
        ("listen", &a.listen),
        ("data", &a.data),
        ("admin", &a.admin),
        ("deployment", &a.deployment),
        ("lease", &a.lease),
        ("proxy_lease", &a.proxy_lease),
        ("claim_window", &a.claim_window),
        ("max_file_size", &a.max_file_size),
        ("ephemeral_cleanup", &a.ephemeral_cleanup),
        ("store", &a.store),
        ("etcd", &a.etcd),
        ("replica", &a.replica),
        ("etcd_lease", &a.etcd_lease),
        ("etcd_max_txn_ops", &a.etcd_max_txn_ops),
        ("etcd_cacert", &a.etcd_cacert),
        ("etcd_cert", &a.etcd_cert),
        ("etcd_key", &a.etcd_key),
        ("meta", &a.meta),
        ("advertise", &a.advertise),
        ("proxy_principals", &proxy_principals),
        ("operator_principals", &operator_principals),
        ("cacert", &a.tls.cacert),
        ("cert", &a.tls.cert),
        ("key", &a.tls.key),
        ("insecure", &a.tls.insecure.then(|| "true".to_owned())),
        ("backup_dest", &a.backup_dest),
        ("backup_every", &a.backup_every),
        ("backup_keep", &a.backup_keep),
    ];
    server_cmd::sources(a.config.as_deref(), &flags)
}

async fn serve_settings(a: CellSettings) -> ExitCode {
    let sources = sources(&a);
    server_cmd::load_and_serve(
        sources,
        CellConfig::load,
        |cfg| async move { serve(&cfg).await },
    )
    .await
}

/// Binds, opens the store, prints the banner and serves until a shutdown signal.
pub async fn serve(cfg: &CellConfig) -> anyhow::Result<()> {
    crate::tls_cmd::install_server(&cfg.tls)?;
    let listener = server_cmd::bind(cfg.listen, "listen").await?;
    let admin = match cfg.admin {
        Some(a) => Some(server_cmd::bind(a, "admin").await?),
        None => None,
    };
    let addr = listener.local_addr()?;
    let name = cfg.name.clone();
    let banner = move |_| {
        println!("cells: {name}={addr}");
        println!("ready");
    };
    let mut opts = CellOptions::from_config(cfg);
    opts.backup = backup_sink(cfg)?;
    match cfg.store {
        StoreKind::Embedded => {
            let store = EmbeddedStore::open(&cfg.data)?;
            warren_cell::run(
                listener,
                admin,
                Arc::new(store),
                opts,
                banner,
                server_cmd::shutdown_signal(),
            )
            .await?;
        }
        StoreKind::Etcd => {
            let mut etcd = EtcdOptions::new(cfg.etcd.clone());
            etcd.lease_ttl = cfg.etcd_lease;
            etcd.max_txn_ops = cfg.etcd_max_txn_ops;
            if let Some(cacert) = &cfg.etcd_cacert {
                let identity = cfg.etcd_cert.clone().zip(cfg.etcd_key.clone());
                warren_cell::store::etcd::use_tls(warren_cell::store::etcd::EtcdTls {
                    cacert: cacert.clone(),
                    identity,
                })
                .map_err(|e| anyhow::anyhow!("TLS to etcd: {e}"))?;
            }
            run_replica(
                listener,
                admin,
                etcd,
                opts,
                banner,
                server_cmd::shutdown_signal(),
            )
            .await?;
        }
    }
    Ok(())
}

/// The master's backup sink from the `[backup]` settings; refuses a destination inside
/// the cell's own data directory (backups never go to the cell's own store; an etcd
/// cell's store is not a directory, so any directory is outside it).
fn backup_sink(
    cfg: &CellConfig,
) -> anyhow::Result<Option<Arc<dyn warren_cell::server::backup::BackupSink>>> {
    let Some(b) = &cfg.backup else {
        return Ok(None);
    };
    let dest = warren_backup::Destination::parse(&b.dest)
        .map_err(|e| anyhow::anyhow!("configuration: backup_dest: {e}"))?;
    if cfg.store == StoreKind::Embedded {
        dest.check_not_inside(&cfg.data)
            .map_err(|e| anyhow::anyhow!("configuration: backup_dest: {e}"))?;
    }
    Ok(Some(Arc::new(warren_backup::sink::CellBackups {
        dest,
        every: b.every,
        keep: b.keep,
        warren_version: crate::version(),
    })))
}

/// `warren cell restore`.
mod restore;
