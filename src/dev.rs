//! `warren dev`: a whole local deployment in one process, on embedded stores (docs/design.md §14): a
//! meta cell, N data cells and M proxies routing by the partition map.
//!
//! ```text
//! warren dev [--data DIR] [--cells N] [--proxies M] [--base-port P] [--tls]
//! ```
//!
//! With `--tls` every member serves and dials mutual TLS with a development CA and
//! certificates made in DIR/tls, and the banner adds, before `ready`, the `warren ctl`
//! flags (`tls: …`) and environment (`tls-env: …`) of the operator certificate made there
//! too (docs/security.md, "warren dev --tls").
//!
//! Ports, with P = `--base-port` (default 7100; 0 picks free ports):
//!
//! | process | gRPC | admin HTTP | store |
//! |---|---|---|---|
//! | meta cell `meta` | P | P+80 | DIR/meta |
//! | data cell `ck`, k = 1..N | P+k | P+80+k | DIR/ck |
//! | proxy j, j = 1..M | P+100+j | P+180+j | — |
//!
//! On the first run it writes the partition map (epoch 1, the slots spread evenly over
//! c1..cN, `warren ctl deployment init`'s map) into the meta cell; a later run with the same
//! `--data` resumes: the map is left alone, and a run whose cells disagree with it (another
//! `--cells`, or cells at other addresses) stops with an error instead of misrouting. With
//! `--base-port 0`, a resumed run puts the data cells back at the addresses in the map.
//!
//! Once everything serves it prints, on stdout:
//!
//! ```text
//! meta: 127.0.0.1:7100
//! cells: c1=127.0.0.1:7101,c2=127.0.0.1:7102,c3=127.0.0.1:7103
//! proxies: 127.0.0.1:7201,127.0.0.1:7202
//! admin: meta=127.0.0.1:7180,c1=127.0.0.1:7181,c2=127.0.0.1:7182,c3=127.0.0.1:7183,p1=127.0.0.1:7281,p2=127.0.0.1:7282
//! ready
//! ```
//!
//! `ready` comes only once every data cell has loaded the map and every proxy serves.
//! Ctrl-C (or SIGTERM) stops the proxies, then the data cells, then the meta cell, and
//! exits 0.
//!
//! ## One more cell, to try a reshard
//!
//! ```text
//! warren dev --add-cell NAME [--data DIR] [--base-port P | --meta HOST:PORT]
//! ```
//!
//! runs, in a second process next to a running `warren dev` (same `--data`), one more data
//! cell NAME of that deployment: its meta cell is at P (or `--meta`), the new cell listens
//! on the ports of data cell k of the layout (k from a name `ck`, else the first k no cell
//! of the map uses; with P = 0, free ports) and keeps its store in DIR/NAME. The cell
//! watches the map and serves nothing until a map gives it slots ([`plan_added_cell`]).
//! Once it has loaded the map it prints
//!
//! ```text
//! meta: 127.0.0.1:7100
//! cells: c4=127.0.0.1:7104
//! admin: c4=127.0.0.1:7184
//! next: warren ctl reshard plan --add-cell c4=127.0.0.1:7104
//! ready
//! ```
//!
//! Named `c<N+1>` next to `c1..cN`, the cell also fits the layout: after the reshard,
//! `warren dev --cells N+1` resumes the whole deployment with it. A NAME the map already
//! has (a cell added before, stopped) is started again where the map puts it.

use clap::Args;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use warren_cell::server::CellOptions;
use warren_cell::store::embedded::EmbeddedStore;
use warren_client::{admin, ErrorCode, Session};
use warren_config::layout::{
    self, Layout, DEFAULT_BASE_PORT, DEFAULT_CELLS, DEFAULT_PROXIES, MAX_BASE_PORT, MAX_EACH,
};
use warren_config::{CellConfig, ProxyConfig};
use warren_router::PartitionMap;

/// How long a data cell may take to load the map, or a proxy to start serving.
const START_PATIENCE: Duration = Duration::from_secs(60);
/// How long each tier may take to stop after Ctrl-C.
const STOP_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
#[command(
    after_help = "Ports, with P = --base-port: meta cell P (admin P+80); data cell ck at \
P+k (admin P+80+k); proxy j at P+100+j (admin P+180+j). With the default P = 7100: meta \
127.0.0.1:7100, cells 127.0.0.1:7101.., proxies 127.0.0.1:7201.. (where `warren ctl` connects \
by default); admin endpoints (/metrics, /healthz, /readyz, /status) on 7180, 7181.., 7281..

To try a reshard: with `warren dev` running, run `warren dev --add-cell c4` in another \
terminal (same --data and --base-port), then the `warren ctl reshard plan --add-cell …` \
command it prints."
)]
pub struct DevArgs {
    /// Where the cells keep their stores (DIR/meta, DIR/c1, …). A second run with the same
    /// DIR resumes the deployment.
    #[arg(long, default_value = "warren-dev-data", value_name = "DIR")]
    data: PathBuf,
    /// Number of data cells, c1..cN (1–20).
    #[arg(long, default_value_t = DEFAULT_CELLS, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_EACH)))]
    cells: u16,
    /// Number of proxies (0–20).
    #[arg(long, default_value_t = DEFAULT_PROXIES, value_name = "M",
          value_parser = clap::value_parser!(u16).range(0..=i64::from(MAX_EACH)))]
    proxies: u16,
    /// First port of the layout below; 0 picks free ports (a resumed run then puts the data
    /// cells back where the map says).
    #[arg(long, default_value_t = DEFAULT_BASE_PORT, value_name = "P",
          value_parser = clap::value_parser!(u16).range(0..=i64::from(MAX_BASE_PORT)))]
    base_port: u16,
    /// Instead of a deployment: run one more data cell NAME for the `warren dev` already
    /// running with this --data and --base-port (its meta cell at P, or --meta), on the
    /// next free cell ports, with its store in DIR/NAME. It serves nothing until a reshard
    /// gives it slots; it prints the `warren ctl reshard plan --add-cell` command to run
    /// next. Name it c<N+1> (c4 next to c1..c3) so that `warren dev --cells N+1` resumes the
    /// deployment with it later.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["cells", "proxies"])]
    add_cell: Option<String>,
    /// With --add-cell: the running deployment's meta cell (default 127.0.0.1:P; needed
    /// with --base-port 0).
    #[arg(long, value_name = "HOST:PORT", requires = "add_cell")]
    meta: Option<SocketAddr>,
    /// Mutual TLS on every connection: a development CA and certificates are made in
    /// DIR/tls (once; a later run reuses them), every member serves and dials with them,
    /// and the `warren ctl` flags and environment that use the operator certificate are
    /// printed (docs/security.md, "warren dev --tls").
    #[arg(long)]
    tls: bool,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Where each data cell listens: `(name, gRPC address, admin address)`. Without a map
/// (first run), as the layout says; with one (a resumed run), the map's cells must be c1..cN
/// at the layout's addresses, or (with `--base-port 0`) wherever the map puts them.
fn plan_cells(
    map: Option<&PartitionMap>,
    layout: Layout,
    data: &Path,
) -> Result<Vec<(String, SocketAddr, SocketAddr)>, String> {
    let n = layout.cells;
    let names = layout.cell_names();
    let Some(map) = map else {
        return Ok(names
            .into_iter()
            .zip(1..)
            .map(|(name, k)| {
                let ports = layout.cell_ports(k);
                (name, loopback(ports.grpc), loopback(ports.admin))
            })
            .collect());
    };
    let mut in_map: Vec<&str> = map.cells().keys().map(String::as_str).collect();
    let mut wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    in_map.sort_unstable();
    wanted.sort_unstable();
    if in_map != wanted {
        return Err(format!(
            "the deployment in {} has data cells {} (partition map epoch {}), but --cells {n} \
             asks for {}: run with --cells {} to resume it, or give a fresh --data",
            data.display(),
            natural(map.cells().keys()).join(","),
            map.map_epoch(),
            names.join(","),
            map.cells().len(),
        ));
    }
    names
        .into_iter()
        .zip(1..)
        .map(|(name, k)| {
            let layout::Ports { grpc: port, admin } = layout.cell_ports(k);
            let replicas = map.replicas(&name).unwrap_or_default();
            let listen = if port == 0 {
                match replicas {
                    [only] => only.parse::<SocketAddr>().map_err(|_| {
                        format!(
                            "the partition map in {} puts cell {name} at {only:?}, which is not \
                             an address warren dev can listen on; give a fresh --data",
                            data.display()
                        )
                    })?,
                    _ => {
                        return Err(format!(
                            "the partition map in {} gives cell {name} the replicas {}, but \
                             warren dev runs one replica per cell; give a fresh --data",
                            data.display(),
                            replicas.join(",")
                        ))
                    }
                }
            } else {
                let listen = loopback(port);
                if replicas != [listen.to_string()] {
                    return Err(format!(
                        "the partition map in {} puts cell {name} at {}, but this run would put \
                         it at {listen}: rerun with the --base-port of the run that created the \
                         deployment (or --base-port 0), or give a fresh --data",
                        data.display(),
                        replicas.join(",")
                    ));
                }
                listen
            };
            Ok((name, listen, loopback(admin)))
        })
        .collect()
}

/// Where `warren dev --add-cell` runs its cell.
#[derive(Debug, PartialEq, Eq)]
struct AddedCell {
    listen: SocketAddr,
    admin: SocketAddr,
    /// The map has the cell already (added before): it goes back where the map says.
    in_map: bool,
}

/// Where the added cell `name` of the deployment with partition map `map` listens. A cell
/// the map has goes back to its one replica's address. A new one takes the ports of data
/// cell k of the layout from `base_port` (k from a name `ck`, else the first k whose
/// address no cell of the map uses), or free ports with `base_port` 0.
fn plan_added_cell(map: &PartitionMap, name: &str, base_port: u16) -> Result<AddedCell, String> {
    let next = format!("c{}", map.cells().len() + 1);
    if name == layout::META {
        return Err(format!(
            "--add-cell {name}: that is the meta cell's name; name the data cell e.g. {next}"
        ));
    }
    // The map's own check of a cell name.
    PartitionMap::even(map.deployment(), &[(name, vec!["127.0.0.1:1"])], 1)
        .map_err(|e| format!("--add-cell {name:?}: {e}; e.g. {next}"))?;
    let layout = Layout::new(MAX_EACH, 0, base_port);
    let admin_of = |port: u16| {
        (1..=MAX_EACH)
            .map(|k| layout.cell_ports(k))
            .find(|p| base_port != 0 && p.grpc == port)
            .map_or(0, |p| p.admin)
    };
    if let Some(replicas) = map.replicas(name) {
        let listen = match replicas {
            [only] => only.parse::<SocketAddr>().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "cell {name} is in the partition map at {}, which is not one address warren \
                 dev can listen on; run it with `warren cell --meta …` instead",
                replicas.join(",")
            )
        })?;
        return Ok(AddedCell {
            listen,
            admin: loopback(admin_of(listen.port())),
            in_map: true,
        });
    }
    if base_port == 0 {
        return Ok(AddedCell {
            listen: loopback(0),
            admin: loopback(0),
            in_map: false,
        });
    }
    let used: Vec<&String> = map.cells().values().flatten().collect();
    let owner_of = |addr: &str| {
        map.cells()
            .iter()
            .find(|(_, r)| r.iter().any(|a| a == addr))
            .map(|(n, _)| n.clone())
    };
    let numbered = name
        .strip_prefix('c')
        .and_then(|k| k.parse::<u16>().ok())
        .filter(|k| (1..=MAX_EACH).contains(k) && name == Layout::cell_name(*k));
    let k = match numbered {
        Some(k) => {
            let addr = loopback(layout.cell_ports(k).grpc).to_string();
            if let Some(owner) = owner_of(&addr) {
                return Err(format!(
                    "--add-cell {name}: its layout address {addr} belongs to cell {owner} in the \
                     partition map; choose another name (e.g. {next})"
                ));
            }
            k
        }
        None => (1..=MAX_EACH)
            .find(|k| {
                let addr = loopback(layout.cell_ports(*k).grpc).to_string();
                !used.contains(&&addr)
            })
            .ok_or_else(|| {
                format!(
                    "--add-cell {name}: every data cell port of the layout from --base-port \
                     {base_port} is in use by the map ({MAX_EACH} cells at most)"
                )
            })?,
    };
    let ports = layout.cell_ports(k);
    Ok(AddedCell {
        listen: loopback(ports.grpc),
        admin: loopback(ports.admin),
        in_map: false,
    })
}

/// Cell names in natural order (c2 before c10).
fn natural<'a>(names: impl Iterator<Item = &'a String>) -> Vec<&'a str> {
    let mut v: Vec<&str> = names.map(String::as_str).collect();
    v.sort_by_key(|n| (n.len(), *n));
    v
}

/// Binds `addr` for `what`; the error names both.
async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another program, perhaps another `warren dev`, uses it: stop it, or choose other \
             ports with --base-port P, or --base-port 0 for free ones)"
        } else {
            ""
        };
        format!("cannot listen on {addr} for {what}: {e}{hint}")
    })
}

fn local_addr(l: &TcpListener) -> Result<SocketAddr, String> {
    l.local_addr()
        .map_err(|e| format!("cannot read a listener's address: {e}"))
}

/// What a component's task returns: its name, and how it ended.
type Ended = (String, Result<(), String>);

/// Resolves once `rx` says stop (or its sender is gone).
async fn stop_when(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// What a component is given to wait on for the order to stop.
type Stop = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// One tier of the deployment (the meta cell, the data cells, the proxies), stopped together.
struct Tier {
    stop: watch::Sender<bool>,
    tasks: JoinSet<Ended>,
    /// The names of the components started, for reports.
    names: Vec<String>,
}

impl Tier {
    fn new() -> Self {
        Tier {
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
            names: Vec::new(),
        }
    }

    /// Spawns the component `label`: `serve` gets the signal to call once it serves and
    /// the future that resolves when the tier stops. Resolves once it serves.
    async fn start<F, E>(
        &mut self,
        label: String,
        serve: impl FnOnce(Box<dyn FnOnce() + Send>, Stop) -> F,
    ) -> Result<(), String>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let (ready_tx, ready_rx) = oneshot::channel();
        let signal: Box<dyn FnOnce() + Send> = Box::new(move || {
            let _ = ready_tx.send(());
        });
        let served = serve(signal, Box::pin(stop_when(self.stop.subscribe())));
        self.names.push(label.clone());
        let name = label.clone();
        self.tasks
            .spawn(async move { (name, served.await.map_err(|e| e.to_string())) });
        ready(self, ready_rx, &label).await
    }

    /// Stops every component of the tier; the errors of those that failed.
    async fn shut(&mut self) -> Vec<String> {
        self.stop.send_replace(true);
        let mut errors = Vec::new();
        let mut stopped = Vec::new();
        let drained = tokio::time::timeout(STOP_PATIENCE, async {
            while let Some(joined) = self.tasks.join_next().await {
                match joined {
                    Ok((name, Ok(()))) => stopped.push(name),
                    Ok((name, Err(e))) => {
                        errors.push(format!("{name}: {e}"));
                        stopped.push(name);
                    }
                    Err(e) => errors.push(format!("a component panicked: {e}")),
                }
            }
        })
        .await;
        if drained.is_err() {
            let left: Vec<&str> = self
                .names
                .iter()
                .filter(|n| !stopped.contains(n))
                .map(String::as_str)
                .collect();
            errors.push(format!(
                "{} did not stop within {STOP_PATIENCE:?}",
                left.join(", ")
            ));
            self.tasks.abort_all();
        }
        errors
    }
}

/// Waits until any component of `tiers` ends (none should before Ctrl-C); says which and how.
async fn first_exit(mut tiers: Vec<&mut Tier>) -> String {
    let joined = std::future::poll_fn(|cx| {
        for tier in tiers.iter_mut() {
            if let std::task::Poll::Ready(Some(joined)) = tier.tasks.poll_join_next(cx) {
                return std::task::Poll::Ready(joined);
            }
        }
        std::task::Poll::Pending
    })
    .await;
    match joined {
        Ok((name, Ok(()))) => format!("{name} stopped unexpectedly"),
        Ok((name, Err(e))) => format!("{name} stopped: {e}"),
        Err(e) => format!("a component panicked: {e}"),
    }
}

/// A running dev deployment.
struct Dev {
    args: DevArgs,
    meta: Tier,
    cells: Tier,
    proxies: Tier,
}

/// The endpoints `warren dev` prints.
struct Banner {
    meta: SocketAddr,
    cells: Vec<(String, SocketAddr)>,
    proxies: Vec<SocketAddr>,
    /// Admin HTTP addresses (`/metrics`, `/status`…): `meta`, `c1`…, `p1`….
    admin: Vec<(String, SocketAddr)>,
}

impl Banner {
    fn lines(&self) -> [String; 5] {
        let cells: Vec<String> = self.cells.iter().map(|(n, a)| format!("{n}={a}")).collect();
        let proxies: Vec<String> = self.proxies.iter().map(|a| a.to_string()).collect();
        let admin: Vec<String> = self.admin.iter().map(|(n, a)| format!("{n}={a}")).collect();
        [
            format!("meta: {}", self.meta),
            format!("cells: {}", cells.join(",")),
            format!("proxies: {}", proxies.join(",")),
            format!("admin: {}", admin.join(",")),
            "ready".to_string(),
        ]
    }
}

/// Starts a cell on `listener`; resolves once it serves.
async fn start_cell(
    tier: &mut Tier,
    name: &str,
    listener: TcpListener,
    admin: TcpListener,
    data: &Path,
    meta: Vec<String>,
) -> Result<(), String> {
    let mut cfg = CellConfig::new(name, local_addr(&listener)?, data);
    cfg.admin = Some(local_addr(&admin)?);
    cfg.meta = meta;
    // With --tls every member presents the one development server certificate: the cells
    // take it as a proxy (the proxies' calls) and as an operator (the cells' own reshard
    // calls). In plaintext nobody is authenticated and these change nothing.
    cfg.proxy_principals = vec![DEV_SERVER_PRINCIPAL.to_string()];
    cfg.operator_principals = vec![DEV_SERVER_PRINCIPAL.to_string()];
    cfg.validate()
        .map_err(|e| format!("cell {name}: configuration: {e}"))?;
    let store = EmbeddedStore::open(data)
        .map_err(|e| format!("cannot open the store of cell {name}: {e}"))?;
    let mut opts = CellOptions::from_config(&cfg);
    opts.meta = cfg.meta.clone();
    tier.start(format!("cell {name}"), |ready, stop| {
        warren_cell::run(
            listener,
            Some(admin),
            Arc::new(store),
            opts,
            move |_| ready(),
            stop,
        )
    })
    .await
}

/// Starts a proxy routing by the map in the meta cell at `meta`; resolves once it serves.
async fn start_proxy(
    tier: &mut Tier,
    listener: TcpListener,
    admin: TcpListener,
    meta: Vec<String>,
) -> Result<SocketAddr, String> {
    let addr = local_addr(&listener)?;
    let mut cfg = ProxyConfig::new(addr.to_string(), Vec::new());
    cfg.admin = local_addr(&admin)?.to_string();
    cfg.meta = meta;
    tier.start(format!("proxy {addr}"), |ready, stop| {
        warren_proxy::run(listener, Some(admin), cfg, move |_| ready(), stop)
    })
    .await?;
    Ok(addr)
}

/// Waits for a component's ready signal, or for it to end (an error).
async fn ready(tier: &mut Tier, rx: oneshot::Receiver<()>, what: &str) -> Result<(), String> {
    let signalled = tokio::select! {
        r = rx => r.is_ok(),
        _ = tokio::time::sleep(START_PATIENCE) => {
            return Err(format!("{what} did not start serving within {START_PATIENCE:?}"));
        }
    };
    if signalled {
        return Ok(());
    }
    // The task ended without calling on_ready: its result says why.
    Err(match tier.tasks.join_next().await {
        Some(Ok((name, Err(e)))) => format!("{name}: {e}"),
        Some(Ok((name, Ok(())))) => format!("{name} stopped before serving"),
        Some(Err(e)) => format!("{what} panicked: {e}"),
        None => format!("{what} is gone"),
    })
}

/// Waits until every data cell's `Locate` reports a map epoch ≥ 1.
async fn maps_loaded(cells: &[(String, SocketAddr)]) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + START_PATIENCE;
    for (name, addr) in cells {
        let endpoints = [addr.to_string()];
        loop {
            let seen = match warren_client::locate(&endpoints, Duration::from_secs(1)).await {
                Ok(info) if info.map_epoch >= 1 => break,
                Ok(info) => format!("its Locate reports map_epoch {}", info.map_epoch),
                Err(e) => format!("Locate failed: {e}"),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "cell {name} ({addr}) did not load the partition map from the meta cell \
                     within {START_PATIENCE:?} ({seen})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Every data cell's and proxy's listeners, bound before the map is written.
struct Listeners {
    /// `(name, gRPC, admin)` of each data cell.
    cells: Vec<(String, TcpListener, TcpListener)>,
    /// `(gRPC, admin)` of each proxy.
    proxies: Vec<(TcpListener, TcpListener)>,
}

/// With a session at the meta cell: reads the partition map, binds every data cell's and
/// proxy's ports (all before writing anything, so a port in use changes nothing) and, on a
/// first run, writes the map with the data cells' addresses.
async fn bind_and_map(
    session: &Session,
    layout: Layout,
    data: &Path,
    meta: SocketAddr,
) -> Result<Listeners, String> {
    let failed = |what: &str, e: warren_client::Error| {
        format!("cannot {what}: {}: {}", e.code_name(), e.message())
    };
    let existing = match admin::read_map(session).await {
        Ok((map, _)) => Some(map),
        Err(e) if e.code() == Some(ErrorCode::NotFound) => None,
        Err(e) if e.code() == Some(ErrorCode::Internal) => {
            return Err(format!(
                "{}. warren dev cannot route by it; to repair it, run the meta cell alone \
                 (`warren cell --name meta --listen {meta} --data {}`) and then \
                 `warren ctl map repair --meta {meta} --from MAP.json` with a map you kept \
                 (`warren ctl map show --json`), or `--from-cell ADMIN_HOST:PORT` of cells that \
                 still run with the map in memory; then run warren dev again",
                failed("read the partition map", e),
                Layout::store_dir(data, layout::META).display()
            ))
        }
        Err(e) => return Err(failed("read the partition map", e)),
    };
    let mut cells = Vec::new();
    for (name, listen, admin) in plan_cells(existing.as_ref(), layout, data)? {
        let l = bind(listen, &format!("cell {name}")).await?;
        let a = bind(admin, &format!("cell {name}'s admin endpoint")).await?;
        cells.push((name, l, a));
    }
    let mut proxies = Vec::new();
    for j in 1..=layout.proxies {
        let ports = layout.proxy_ports(j);
        let l = bind(loopback(ports.grpc), &format!("proxy {j}")).await?;
        let a = bind(
            loopback(ports.admin),
            &format!("proxy {j}'s admin endpoint"),
        )
        .await?;
        proxies.push((l, a));
    }

    if existing.is_none() {
        let addrs = cells
            .iter()
            .map(|(_, l, _)| local_addr(l))
            .collect::<Result<Vec<_>, _>>()?;
        let spec = layout.initial_map_cells(&addrs);
        let map = admin::write_initial_map(session, &spec, warren_router::DEFAULT_SLOTS)
            .await
            .map_err(|e| failed("write the first partition map", e))?;
        tracing::info!(
            map_epoch = map.map_epoch(),
            slots = map.slot_count(),
            cells = cells.len(),
            "wrote the first partition map"
        );
    } else {
        let path = warren_client::map::map_path(session.deployment());
        tracing::info!(%path, "resuming: the partition map is already there");
    }
    Ok(Listeners { cells, proxies })
}

impl Dev {
    fn new(args: DevArgs) -> Self {
        Dev {
            args,
            meta: Tier::new(),
            cells: Tier::new(),
            proxies: Tier::new(),
        }
    }

    /// Starts everything, in order (or, with `--add-cell`, the one cell); the banner's
    /// lines once all serve.
    async fn start(&mut self) -> Result<Vec<String>, String> {
        if let Some(name) = self.args.add_cell.clone() {
            return self.start_added(&name).await;
        }
        let layout = Layout::new(self.args.cells, self.args.proxies, self.args.base_port);
        let data = self.args.data.clone();

        // The meta cell first: the map lives there.
        let ports = layout.meta_ports();
        let listener = bind(loopback(ports.grpc), "the meta cell").await?;
        let admin = bind(loopback(ports.admin), "the meta cell's admin endpoint").await?;
        let meta_addr = local_addr(&listener)?;
        let mut admins = vec![(layout::META.to_string(), local_addr(&admin)?)];
        start_cell(
            &mut self.meta,
            layout::META,
            listener,
            admin,
            &Layout::store_dir(&data, layout::META),
            Vec::new(),
        )
        .await?;
        let meta = vec![meta_addr.to_string()];

        // As the map code path: only it may write the first map.
        let session = Session::connect_with(admin::operator_options(meta.clone()))
            .await
            .map_err(|e| format!("cannot open a session at the meta cell {meta_addr}: {e}"))?;
        // The session is closed once, however binding and writing the map end.
        let bound = bind_and_map(&session, layout, &data, meta_addr).await;
        let _ = session.close().await;
        let Listeners {
            cells: cell_listeners,
            proxies: proxy_listeners,
        } = bound?;
        let mut cells = Vec::new();
        for (name, l, a) in &cell_listeners {
            cells.push((name.clone(), local_addr(l)?));
            admins.push((name.clone(), local_addr(a)?));
        }
        for (name, (_, a)) in layout.proxy_names().into_iter().zip(&proxy_listeners) {
            admins.push((name, local_addr(a)?));
        }

        for (name, listener, admin) in cell_listeners {
            start_cell(
                &mut self.cells,
                &name,
                listener,
                admin,
                &Layout::store_dir(&data, &name),
                meta.clone(),
            )
            .await?;
        }
        tokio::select! {
            r = maps_loaded(&cells) => r?,
            e = first_exit(vec![&mut self.meta, &mut self.cells]) => return Err(e),
        }

        let mut proxies = Vec::new();
        for (listener, admin) in proxy_listeners {
            proxies.push(start_proxy(&mut self.proxies, listener, admin, meta.clone()).await?);
        }
        Ok(Banner {
            meta: meta_addr,
            cells,
            proxies,
            admin: admins,
        }
        .lines()
        .to_vec())
    }

    /// `--add-cell NAME`: starts data cell NAME of the deployment whose meta cell is at the
    /// base port (or `--meta`), where [`plan_added_cell`] says; the banner's lines once it
    /// has loaded the map.
    async fn start_added(&mut self, name: &str) -> Result<Vec<String>, String> {
        let base_port = self.args.base_port;
        let meta_addr = match self.args.meta {
            Some(addr) => addr,
            None if base_port == 0 => {
                return Err(
                    "--add-cell with --base-port 0 needs the running deployment's meta \
                            cell: give --meta HOST:PORT (the `meta:` line warren dev printed)"
                        .to_string(),
                )
            }
            None => loopback(Layout::new(0, 0, base_port).meta_ports().grpc),
        };
        let meta = vec![meta_addr.to_string()];
        let session = Session::connect_with(admin::operator_options(meta.clone()))
            .await
            .map_err(|e| {
                format!(
                    "cannot reach the meta cell of a running `warren dev` at {meta_addr}: {e}; \
                     start `warren dev` first, or give its --base-port (or --meta)"
                )
            })?;
        let read = admin::read_map(&session).await;
        let _ = session.close().await;
        let (map, _) = read.map_err(|e| {
            format!(
                "cannot read the partition map at the meta cell {meta_addr}: {}: {}",
                e.code_name(),
                e.message()
            )
        })?;
        let added = plan_added_cell(&map, name, base_port)?;
        let listener = bind(added.listen, &format!("cell {name}")).await?;
        let admin = bind(added.admin, &format!("cell {name}'s admin endpoint")).await?;
        let (addr, admin_addr) = (local_addr(&listener)?, local_addr(&admin)?);
        start_cell(
            &mut self.cells,
            name,
            listener,
            admin,
            &Layout::store_dir(&self.args.data, name),
            meta,
        )
        .await?;
        let started = [(name.to_string(), addr)];
        tokio::select! {
            r = maps_loaded(&started) => r?,
            e = first_exit(vec![&mut self.cells]) => return Err(e),
        }
        let next = if added.in_map {
            format!(
                "next: cell {name} is already in the partition map (epoch {}): it serves the \
                 slots the map gives it; see them with `warren ctl map show`",
                map.map_epoch()
            )
        } else {
            let meta_flag = if meta_addr.to_string() == crate::ctl::DEFAULT_META {
                String::new()
            } else {
                format!(" --meta {meta_addr}")
            };
            format!("next: warren ctl reshard plan{meta_flag} --add-cell {name}={addr}")
        };
        Ok(vec![
            format!("meta: {meta_addr}"),
            format!("cells: {name}={addr}"),
            format!("admin: {name}={admin_addr}"),
            next,
            "ready".to_string(),
        ])
    }

    /// Stops the proxies, then the data cells, then the meta cell; the errors met.
    async fn stop(&mut self) -> Vec<String> {
        let mut errors = self.proxies.shut().await;
        errors.extend(self.cells.shut().await);
        errors.extend(self.meta.shut().await);
        errors
    }
}

/// The files of `warren dev --tls`, in DIR/tls: the development CA, the certificate every
/// member serves and dials with, and the operator's for `warren ctl`.
const DEV_TLS_FILES: [&str; 5] = [
    "ca.pem",
    "server.pem",
    "server.key",
    "operator.pem",
    "operator.key",
];

/// Principals of `warren dev --tls`'s certificates (docs/security.md, "Principals").
const DEV_SERVER_PRINCIPAL: &str = "warren:dev-server";
const DEV_OPERATOR_PRINCIPAL: &str = "warren:operator";

/// Sets up `warren dev --tls`: makes the CA and certificates in `data`/tls unless they are
/// all there already, installs the server certificate as the process's identity (reloaded
/// on SIGHUP or a change), and returns the banner lines naming the `warren ctl` flags and
/// environment for the operator certificate.
fn dev_tls(data: &Path) -> Result<Vec<String>, String> {
    let dir = data.join("tls");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
    let have_all = DEV_TLS_FILES.iter().all(|f| dir.join(f).is_file());
    if !have_all {
        let ca = warren_tls::gen::Ca::new("warren dev CA")?;
        let ca_path = ca
            .write_ca(&dir)
            .map_err(|e| format!("cannot write {}: {e}", dir.join("ca.pem").display()))?;
        let hosts = ["127.0.0.1", "::1", "localhost"];
        let current = warren_tls::gen::Validity::Current;
        ca.write_issued(
            &dir,
            "server",
            DEV_SERVER_PRINCIPAL,
            &hosts,
            current,
            &ca_path,
        )?;
        ca.write_issued(
            &dir,
            "operator",
            DEV_OPERATOR_PRINCIPAL,
            &[],
            current,
            &ca_path,
        )?;
    }
    let file = |f: &str| dir.join(f).display().to_string();
    let server = warren_tls::TlsFiles::new(
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    let tls = warren_tls::Tls::load(server).map_err(|e| e.to_string())?;
    drop(tls.watch());
    warren_tls::install(tls);
    Ok(vec![
        format!(
            "tls: warren ctl --cacert {} --cert {} --key {}",
            file("ca.pem"),
            file("operator.pem"),
            file("operator.key")
        ),
        format!(
            "tls-env: export WARREN_CACERT={} WARREN_CERT={} WARREN_KEY={}",
            file("ca.pem"),
            file("operator.pem"),
            file("operator.key")
        ),
    ])
}

/// Runs `warren dev` until Ctrl-C / SIGTERM.
pub async fn run(args: DevArgs) -> ExitCode {
    let tls_lines = if args.tls {
        match dev_tls(&args.data) {
            Ok(lines) => lines,
            Err(e) => {
                eprintln!("error: --tls: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        Vec::new()
    };
    let signal = crate::server_cmd::shutdown_signal();
    tokio::pin!(signal);
    let mut dev = Dev::new(args);
    let started = tokio::select! {
        r = dev.start() => Some(r),
        _ = &mut signal => None,
    };
    let failure = match started {
        // Interrupted while starting.
        None => None,
        Some(Err(e)) => Some(e),
        Some(Ok(mut banner)) => {
            // The TLS lines go before `ready`, the last.
            let at = banner.len().saturating_sub(1);
            banner.splice(at..at, tls_lines);
            {
                use std::io::Write;
                // The block goes to stdout and the logs to stderr (`warren dev 2>dev.log`
                // shows the block alone); on a terminal a blank line sets it apart.
                eprintln!();
                let mut out = std::io::stdout().lock();
                for line in &banner {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
            tokio::select! {
                _ = &mut signal => None,
                e = first_exit(vec![&mut dev.meta, &mut dev.cells, &mut dev.proxies]) => Some(e),
            }
        }
    };
    let stop_errors = dev.stop().await;
    for e in &stop_errors {
        eprintln!("error: while stopping: {e}");
    }
    match failure {
        Some(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        None if stop_errors.is_empty() => ExitCode::SUCCESS,
        None => ExitCode::from(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        dev: DevArgs,
    }

    fn parse(args: &[&str]) -> Result<DevArgs, clap::Error> {
        let mut argv = vec!["warren-dev"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|c| c.dev)
    }

    #[test]
    fn flags_and_defaults() {
        let a = parse(&[]).expect("defaults");
        assert_eq!(a.data, PathBuf::from("warren-dev-data"));
        assert_eq!((a.cells, a.proxies, a.base_port), (3, 2, 7100));
        let a = parse(&["--cells", "1", "--proxies", "0", "--base-port", "0"]).expect("parses");
        assert_eq!((a.cells, a.proxies, a.base_port), (1, 0, 0));
        for bad in [
            &["--cells", "0"][..],
            &["--cells", "21"],
            &["--proxies", "21"],
            &["--proxies", "many"],
            &["--base-port", "65400"],
            &["--cells", "three"],
            &["--listen", "127.0.0.1:7100"],
        ] {
            let e = parse(bad).expect_err("refused");
            assert!(e.to_string().contains(bad[0]), "{bad:?}: {e}");
        }
    }

    fn addrs(plan: &[(String, SocketAddr, SocketAddr)]) -> Vec<String> {
        plan.iter().map(|(n, a, _)| format!("{n}={a}")).collect()
    }

    #[test]
    fn a_first_run_plans_the_layout() {
        let plan = plan_cells(None, Layout::new(3, 0, 7100), Path::new("d")).unwrap();
        assert_eq!(
            addrs(&plan),
            [
                "c1=127.0.0.1:7101",
                "c2=127.0.0.1:7102",
                "c3=127.0.0.1:7103"
            ]
        );
        assert_eq!(plan[2].2, loopback(7183));
        let plan = plan_cells(None, Layout::new(2, 0, 0), Path::new("d")).unwrap();
        assert_eq!(addrs(&plan), ["c1=127.0.0.1:0", "c2=127.0.0.1:0"]);
    }

    fn map(cells: &[(&str, &str)]) -> PartitionMap {
        let cells: Vec<(&str, Vec<&str>)> = cells.iter().map(|(n, a)| (*n, vec![*a])).collect();
        PartitionMap::even("local", &cells, 64).unwrap()
    }

    #[test]
    fn a_resumed_run_follows_the_map_or_refuses() {
        let m = map(&[
            ("c1", "127.0.0.1:7101"),
            ("c2", "127.0.0.1:7102"),
            ("c3", "127.0.0.1:7103"),
        ]);
        let plan = plan_cells(Some(&m), Layout::new(3, 0, 7100), Path::new("d")).unwrap();
        assert_eq!(
            addrs(&plan),
            [
                "c1=127.0.0.1:7101",
                "c2=127.0.0.1:7102",
                "c3=127.0.0.1:7103"
            ]
        );
        // --base-port 0: the cells go back where the map says; admin ports are free ones.
        let plan = plan_cells(Some(&m), Layout::new(3, 0, 0), Path::new("d")).unwrap();
        assert_eq!(
            addrs(&plan),
            [
                "c1=127.0.0.1:7101",
                "c2=127.0.0.1:7102",
                "c3=127.0.0.1:7103"
            ]
        );
        assert_eq!(plan[0].2, loopback(0));
        // Another --cells: refused, saying what the map has.
        let e = plan_cells(Some(&m), Layout::new(2, 0, 7100), Path::new("d")).unwrap_err();
        assert!(e.contains("has data cells c1,c2,c3"), "{e}");
        assert!(e.contains("--cells 2 asks for c1,c2"), "{e}");
        assert!(e.contains("run with --cells 3"), "{e}");
        // Another base port: refused, naming both addresses.
        let e = plan_cells(Some(&m), Layout::new(3, 0, 9000), Path::new("d")).unwrap_err();
        assert!(
            e.contains(
                "puts cell c1 at 127.0.0.1:7101, but this run would put it at 127.0.0.1:9001"
            ),
            "{e}"
        );
        // Cells not named by warren dev.
        let other = map(&[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]);
        let e = plan_cells(Some(&other), Layout::new(2, 0, 7100), Path::new("d")).unwrap_err();
        assert!(e.contains("has data cells a,b"), "{e}");
        // Natural order in messages.
        let names: Vec<String> = Layout::new(11, 0, 0).cell_names();
        assert_eq!(natural(names.iter())[9..], ["c10", "c11"]);
    }

    #[test]
    fn add_cell_flags() {
        let a = parse(&["--add-cell", "c4"]).expect("parses");
        assert_eq!((a.add_cell.as_deref(), a.meta), (Some("c4"), None));
        let a = parse(&[
            "--add-cell",
            "c4",
            "--base-port",
            "0",
            "--meta",
            "127.0.0.1:9",
        ])
        .expect("parses");
        assert_eq!(a.meta, Some(loopback(9)));
        for (bad, names) in [
            (&["--meta", "127.0.0.1:9"][..], "--add-cell"),
            (&["--add-cell", "c4", "--cells", "4"], "--cells"),
            (&["--add-cell", "c4", "--proxies", "1"], "--proxies"),
            (&["--add-cell", "c4", "--meta", "nowhere"], "--meta"),
        ] {
            let e = parse(bad).expect_err("refused");
            assert!(e.to_string().contains(names), "{bad:?}: {e}");
        }
    }

    #[test]
    fn an_added_cell_takes_the_next_layout_ports_or_its_place_in_the_map() {
        let m = map(&[
            ("c1", "127.0.0.1:7101"),
            ("c2", "127.0.0.1:7102"),
            ("c3", "127.0.0.1:7103"),
        ]);
        let at = |listen: u16, admin: u16, in_map: bool| AddedCell {
            listen: loopback(listen),
            admin: loopback(admin),
            in_map,
        };
        // c4 next to c1..c3: data cell 4's ports; c7: data cell 7's; another name: the
        // first free data cell ports.
        assert_eq!(plan_added_cell(&m, "c4", 7100), Ok(at(7104, 7184, false)));
        assert_eq!(plan_added_cell(&m, "c7", 7100), Ok(at(7107, 7187, false)));
        assert_eq!(plan_added_cell(&m, "big", 7100), Ok(at(7104, 7184, false)));
        assert_eq!(plan_added_cell(&m, "c4", 0), Ok(at(0, 0, false)));
        // A cell already in the map goes back where the map says.
        assert_eq!(plan_added_cell(&m, "c2", 7100), Ok(at(7102, 7182, true)));
        assert_eq!(plan_added_cell(&m, "c2", 0), Ok(at(7102, 0, true)));
        // Refusals name the problem and a name that works.
        let e = plan_added_cell(&m, "meta", 7100).unwrap_err();
        assert!(
            e.contains("the meta cell's name") && e.contains("e.g. c4"),
            "{e}"
        );
        let e = plan_added_cell(&m, "C4", 7100).unwrap_err();
        assert!(e.contains("\"C4\"") && e.contains("e.g. c4"), "{e}");
        let odd = map(&[("c1", "127.0.0.1:7102"), ("c3", "127.0.0.1:7103")]);
        let e = plan_added_cell(&odd, "c2", 7100).unwrap_err();
        assert!(e.contains("127.0.0.1:7102 belongs to cell c1"), "{e}");
        assert_eq!(plan_added_cell(&odd, "x", 7100), Ok(at(7101, 7181, false)));
    }

    #[test]
    fn the_banner() {
        let b = Banner {
            meta: loopback(7100),
            cells: vec![("c1".into(), loopback(7101)), ("c2".into(), loopback(7102))],
            proxies: vec![loopback(7201), loopback(7202)],
            admin: vec![
                ("meta".into(), loopback(7180)),
                ("p1".into(), loopback(7281)),
            ],
        };
        assert_eq!(
            b.lines(),
            [
                "meta: 127.0.0.1:7100",
                "cells: c1=127.0.0.1:7101,c2=127.0.0.1:7102",
                "proxies: 127.0.0.1:7201,127.0.0.1:7202",
                "admin: meta=127.0.0.1:7180,p1=127.0.0.1:7281",
                "ready"
            ]
        );
        let b = Banner {
            proxies: Vec::new(),
            ..b
        };
        assert_eq!(b.lines()[2], "proxies: ");
    }
}
