//! `warren proxy`: one proxy (docs/design.md §10) in front of a partitioned deployment, routing by the
//! partition map in the meta cell given with `--meta` (docs/design.md §11), or in front of the cells
//! given with `--cell`. Settings come from `--config FILE` (TOML), `WARREN_*` environment
//! variables and flags, in rising precedence; errors name the field. Prints `proxies: ADDR`
//! once listening and `ready` once it can serve (with `--meta`: the map loaded and a session
//! at the meta cell; else a session at every cell).

use clap::Args;
use std::process::ExitCode;
use warren_config::ProxyConfig;

use crate::server_cmd;

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// TOML file with any of the settings below (keys are the flag names with `_`).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// gRPC listen address HOST:PORT (port 0 picks one). Env WARREN_LISTEN.
    #[arg(long)]
    listen: Option<String>,
    /// The meta cell's replicas HOST:PORT[,HOST:PORT…]: route by the partition map kept
    /// there, with sessions at the cells it names (then --cell is not needed).
    /// Env WARREN_META.
    #[arg(long)]
    meta: Option<String>,
    /// A cell to front without a map: NAME=HOST:PORT[,HOST:PORT…] (its replicas). Repeat
    /// for each cell. Env WARREN_CELLS (entries separated by `;`).
    #[arg(long = "cell")]
    cells: Vec<String>,
    /// Admin HTTP address HOST:PORT (/metrics, /healthz, /readyz, /status). Env WARREN_ADMIN.
    #[arg(long)]
    admin: Option<String>,
    /// This proxy's name in logs and /status. Env WARREN_PROXY_ID. Default: the listen address.
    #[arg(long)]
    id: Option<String>,
    /// Lease granted to client sessions, e.g. `12s`; must nest inside the cells'
    /// proxy lease. Env WARREN_CLIENT_LEASE.
    #[arg(long)]
    client_lease: Option<String>,
    /// Client leases end at least this long before the proxy's own lease at a cell.
    /// Env WARREN_LEASE_MARGIN.
    #[arg(long)]
    lease_margin: Option<String>,
    /// A held client KeepAlive is answered this long before the client's lease ends, e.g.
    /// `1s` (scale it down with short client leases). Env WARREN_KEEPALIVE_REPLY_BEFORE_END.
    #[arg(long)]
    keepalive_reply_before_end: Option<String>,
    /// How long a call waits for a cell that is failing over. Env WARREN_FORWARD_PATIENCE.
    #[arg(long)]
    forward_patience: Option<String>,
    /// A client kept in jeopardy by a cell failover expires this long after its lease
    /// (match the cells' claim window). Env WARREN_MAX_STARVE.
    #[arg(long)]
    max_starve: Option<String>,
    /// `on` (the default): promise each cell a hold-back, so that a write waits for a dead
    /// proxy only as long as the client leases it granted (≤ client lease + 0.5 s) rather
    /// than its whole lease at the cell; client leases are at most 11.78 s of 12 s, those
    /// of clients holding copies from a cell 9–12 s, and a client's first copy from a cell
    /// waits for one refresh of the proxy's session there (docs/proxy.md, "A dead proxy").
    /// `off`: promise nothing. Env WARREN_HOLD_BACK.
    #[arg(long)]
    hold_back: Option<String>,
    /// Worker threads of the proxy's runtime, 1–256 (default: one per core). Env
    /// WARREN_THREADS.
    #[arg(long)]
    threads: Option<String>,
    #[command(flatten)]
    tls: crate::tls_cmd::ServerTlsArgs,
}

/// Serves one proxy until Ctrl-C / SIGTERM, on a runtime with the worker threads its
/// settings give.
pub fn run(a: ProxyArgs) -> ExitCode {
    let cells = (!a.cells.is_empty()).then(|| a.cells.join(";"));
    let flags = [
        ("listen", &a.listen),
        ("cell", &cells),
        ("meta", &a.meta),
        ("admin", &a.admin),
        ("id", &a.id),
        ("client_lease", &a.client_lease),
        ("lease_margin", &a.lease_margin),
        ("keepalive_reply_before_end", &a.keepalive_reply_before_end),
        ("forward_patience", &a.forward_patience),
        ("max_starve", &a.max_starve),
        ("hold_back", &a.hold_back),
        ("threads", &a.threads),
        ("cacert", &a.tls.cacert),
        ("cert", &a.tls.cert),
        ("key", &a.tls.key),
        ("insecure", &a.tls.insecure.then(|| "true".to_owned())),
    ];
    let sources = server_cmd::sources(a.config.as_deref(), &flags);
    let cfg = match server_cmd::load_settings(sources, ProxyConfig::load) {
        Ok(c) => c,
        Err(code) => return code,
    };
    crate::runtime::block_on(cfg.threads, async move {
        server_cmd::exit_code(serve(cfg).await)
    })
}

async fn serve(cfg: ProxyConfig) -> anyhow::Result<()> {
    crate::tls_cmd::install_server(&cfg.tls)?;
    let listener = server_cmd::bind(cfg.listen.as_str(), "listen").await?;
    let admin = if cfg.admin.is_empty() {
        None
    } else {
        Some(server_cmd::bind(cfg.admin.as_str(), "admin").await?)
    };
    let addr = listener.local_addr()?;
    println!("proxies: {addr}");
    warren_proxy::run(
        listener,
        admin,
        cfg,
        |_| println!("ready"),
        server_cmd::shutdown_signal(),
    )
    .await?;
    Ok(())
}
