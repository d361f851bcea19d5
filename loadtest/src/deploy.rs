//! A `warren dev`-shaped deployment run as separate OS processes, for `warren loadtest`:
//! a meta cell, data cells `c1..cN` and proxies `p1..pM`, each its own `warren cell` /
//! `warren proxy` child, so that a fault scenario can `kill -9` one proxy or one cell
//! master and start it again later with the same ports and data.
//!
//! ```text
//! dev[:cells=N,proxies=M,lease=DURATION,tls=on]   (defaults: 3 cells, 2 proxies, default
//!                                                   leases, plaintext)
//! ```
//!
//! Everything listens on 127.0.0.1 on ports picked free at start (bound to port 0, read,
//! released; another process could take one in the moment before the child binds it, and
//! the child then fails to start with "cannot listen on …" in its log, which the error
//! quotes). Files, in the caller's fresh directory `DIR`:
//!
//! | member | gRPC / admin | store | log (stdout and stderr, appended across restarts) |
//! |---|---|---|---|
//! | meta cell `meta` (`master:meta`) | free ports | DIR/meta | DIR/logs/meta.log |
//! | data cell `ck` (`master:ck`) | free ports | DIR/ck | DIR/logs/ck.log |
//! | proxy `pj` (`proxy:j`) | free ports | — | DIR/logs/pj.log |
//!
//! [`Deployment::add_cell`] starts one more data cell `c<N+1>` the same way, joined to the
//! meta cell but in no map yet, for a reshard under load (`--reshard`, [`crate::reshard`]).
//!
//! The members' names, stores and the cells of the first partition map come from
//! [`warren_config::Layout`], as for `warren dev`; the map (epoch 1, the default slot count
//! spread evenly over c1..cN) goes into the meta cell through `warren_client::admin`, as
//! `warren ctl deployment init` writes it. Children get the parent's environment without its `WARREN_*`
//! variables (except `WARREN_LOG`), so settings meant for the parent's own `warren` do not
//! leak into the deployment. They stay in the parent's process group, so a Ctrl-C at the
//! terminal reaches them too, and a parent killed without unwinding leaves none behind
//! that way; dropping a [`Deployment`] SIGKILLs whatever still runs.
//!
//! With `lease` set, cells get `--lease L --proxy-lease L+3s` and proxies `--client-lease L
//! --lease-margin K --keepalive-reply-before-end K` with K = min(1s, L/4), so the leases
//! nest (client lease + margins < proxy lease ≤ 60 s); L must be more than 1 s (the cells
//! answer KeepAlives 1 s before a lease ends) and at most 57 s.
//!
//! With `tls=on`, every hop is mutual TLS (docs/security.md): at start a fresh CA and three
//! certificates go into `DIR/tls`: `server` ([`DEPLOY_SERVER_PRINCIPAL`], for 127.0.0.1),
//! which every cell and proxy serves and dials with (`--cacert/--cert/--key`) and which the
//! cells take as proxy and operator principal; `client` ([`DEPLOY_CLIENT_PRINCIPAL`]),
//! the identity the caller's sessions are to use ([`Deployment::client_tls`]); and
//! `operator` (`warren:operator`), with which the first map is written. It is how the
//! cost of TLS is measured against a plaintext run of the same command.

use crate::fault::{Action, Injector};
use crate::procstat::MemberProcess;
use anyhow::{anyhow, bail, Context};
use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use warren_client::{admin, Session};
use warren_config::defaults;
use warren_config::layout::{self, Layout, DEFAULT_CELLS, DEFAULT_PROXIES};
use warren_tls::Tls;

/// The most data cells, and the most proxies, a spec may ask for (as `warren dev`).
pub use warren_config::layout::MAX_EACH;
/// How long any member may take to become ready, on top of the proxy lease (a restarted
/// cell master waits up to one lease for sessions that do not come back, e.g. a dead
/// proxy's, before it serves everything).
const BASE_PATIENCE: Duration = Duration::from_secs(20);
/// How long writing the first partition map may take.
const INIT_PATIENCE: Duration = Duration::from_secs(30);
/// How long each tier may take to stop after SIGTERM before it gets SIGKILL.
const STOP_PATIENCE: Duration = Duration::from_secs(10);
/// The proxy lease the cells grant without a `lease` (their default).
const DEFAULT_PROXY_LEASE: Duration = defaults::PROXY_LEASE;
/// How long before a lease ends the cells answer a held KeepAlive (their default; a lease
/// must exceed it).
const CELL_KEEPALIVE_REPLY: Duration = defaults::KEEPALIVE_REPLY_BEFORE_END;
/// The longest lease (proxy lease included) a cell may grant.
const LEASE_LIMIT: Duration = defaults::LEASE_LIMIT;
/// What the proxy lease adds to `lease`.
const PROXY_LEASE_EXTRA: Duration = Duration::from_secs(3);
/// How many lines of a child's log an error quotes.
const LOG_TAIL_LINES: usize = 20;

/// What to launch: `dev[:cells=N,proxies=M,lease=DURATION,tls=on]` (defaults 3 cells,
/// 2 proxies, the default leases, plaintext, like `warren dev`).
#[derive(Clone, Debug, PartialEq)]
pub struct DeploySpec {
    /// Data cells c1..cN (1–20).
    pub cells: u16,
    /// Proxies p1..pM (1–20).
    pub proxies: u16,
    /// The session lease of the cells and the client lease of the proxies (the proxy lease
    /// follows); `None`: every default.
    pub lease: Option<Duration>,
    /// Mutual TLS on every hop, with certificates made for the deployment (see the module
    /// docs); `false`: plaintext on loopback.
    pub tls: bool,
}

impl Default for DeploySpec {
    fn default() -> Self {
        DeploySpec {
            cells: DEFAULT_CELLS,
            proxies: DEFAULT_PROXIES,
            lease: None,
            tls: false,
        }
    }
}

const SPEC_SYNTAX: &str =
    "dev[:cells=N,proxies=M,lease=DURATION,tls=on], e.g. dev:cells=3,proxies=2";

impl FromStr for DeploySpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let (kind, settings) = match text.split_once(':') {
            Some((kind, settings)) => (kind.trim(), Some(settings)),
            None => (text, None),
        };
        if kind != "dev" {
            return Err(format!(
                "unknown deployment {kind:?} in {s:?}: write {SPEC_SYNTAX}"
            ));
        }
        let mut spec = DeploySpec::default();
        let Some(settings) = settings else {
            return Ok(spec);
        };
        let mut seen: Vec<&str> = Vec::new();
        for part in settings.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!(
                    "deployment {s:?} has an empty setting: write {SPEC_SYNTAX}"
                ));
            }
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!(
                    "{part:?} in deployment {s:?} is not KEY=VALUE: write {SPEC_SYNTAX}"
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            if seen.contains(&key) {
                return Err(format!("deployment {s:?} sets {key} twice"));
            }
            match key {
                "cells" | "proxies" => {
                    let n = value
                        .parse::<u16>()
                        .ok()
                        .filter(|n| (1..=MAX_EACH).contains(n))
                        .ok_or_else(|| {
                            format!(
                                "{key}={value} in deployment {s:?}: {key} must be a whole \
                                 number from 1 to {MAX_EACH}"
                            )
                        })?;
                    if key == "cells" {
                        spec.cells = n;
                    } else {
                        spec.proxies = n;
                    }
                }
                "lease" => {
                    let lease = warren_config::parse_duration(value)
                        .map_err(|e| format!("lease={value} in deployment {s:?}: {e}"))?;
                    check_lease(lease)
                        .map_err(|e| format!("lease={value} in deployment {s:?}: {e}"))?;
                    spec.lease = Some(lease);
                }
                "tls" => {
                    spec.tls = match value {
                        "on" | "true" => true,
                        "off" | "false" => false,
                        _ => {
                            return Err(format!(
                                "tls={value} in deployment {s:?}: write tls=on or tls=off"
                            ))
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown setting {other:?} in deployment {s:?}: the settings are \
                         cells, proxies, lease and tls ({SPEC_SYNTAX})"
                    ))
                }
            }
            seen.push(key);
        }
        Ok(spec)
    }
}

impl fmt::Display for DeploySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dev:cells={},proxies={}", self.cells, self.proxies)?;
        if let Some(l) = self.lease {
            write!(f, ",lease={}", warren_config::format_duration(l))?;
        }
        if self.tls {
            write!(f, ",tls=on")?;
        }
        Ok(())
    }
}

/// Whether `lease` can be given to both cells and proxies (see the module docs).
fn check_lease(lease: Duration) -> Result<(), String> {
    let show = warren_config::format_duration;
    if lease <= CELL_KEEPALIVE_REPLY {
        return Err(format!(
            "a lease of {} is too short: the cells answer KeepAlives {} before a lease ends, \
             so it must be more than {} (e.g. 2s)",
            show(lease),
            show(CELL_KEEPALIVE_REPLY),
            show(CELL_KEEPALIVE_REPLY)
        ));
    }
    if lease + PROXY_LEASE_EXTRA > LEASE_LIMIT {
        return Err(format!(
            "a lease of {} is too long: the proxies then need a proxy lease of {} (lease + {}), \
             and a cell grants at most {}; use at most {}",
            show(lease),
            show(lease + PROXY_LEASE_EXTRA),
            show(PROXY_LEASE_EXTRA),
            show(LEASE_LIMIT),
            show(LEASE_LIMIT - PROXY_LEASE_EXTRA)
        ));
    }
    Ok(())
}

/// The proxies' lease margin and KeepAlive reply margin for a client lease.
fn proxy_margin(lease: Duration) -> Duration {
    (lease / 4).min(Duration::from_secs(1))
}

/// A process of the deployment that a fault can hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    /// Proxy j, 1-based (`proxy` = `proxy:1`, `proxy:2`, …).
    Proxy(u16),
    /// The master of a cell by name: `master:c1`, …; `master:meta` is the meta cell.
    Master(String),
}

const MEMBER_SYNTAX: &str = "proxy, proxy:N (N from 1), master:CELL (e.g. master:c1) or \
                             master:meta";

impl FromStr for Member {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let (kind, arg) = match text.split_once(':') {
            Some((k, a)) => (k.trim(), Some(a.trim())),
            None => (text, None),
        };
        match (kind, arg) {
            ("proxy", None) => Ok(Member::Proxy(1)),
            ("proxy", Some(n)) => match n.parse::<u16>() {
                Ok(0) => Err(format!(
                    "{s:?}: proxies are numbered from 1 (proxy:1 is the first)"
                )),
                Ok(j) => Ok(Member::Proxy(j)),
                Err(_) => Err(format!(
                    "{s:?}: {n:?} is not a proxy number; write proxy:N, e.g. proxy:2"
                )),
            },
            ("master", None) | ("master", Some("")) => Err(format!(
                "{s:?} names no cell: write master:CELL, e.g. master:c1 or master:meta"
            )),
            ("master", Some(cell)) => {
                if cell
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    Ok(Member::Master(cell.to_string()))
                } else {
                    Err(format!(
                        "{s:?}: {cell:?} is not a cell name (cell names are [a-z0-9-], \
                         e.g. c1 or meta)"
                    ))
                }
            }
            _ => Err(format!("unknown member {s:?}: write {MEMBER_SYNTAX}")),
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::Proxy(j) => write!(f, "proxy:{j}"),
            Member::Master(cell) => write!(f, "master:{cell}"),
        }
    }
}

/// What a child is, for its readiness check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The meta cell: ready when its `/readyz` says so.
    Meta,
    /// A data cell: `/readyz`, and `Locate` answers as master with a map epoch ≥ 1.
    Data,
    /// A proxy: `/readyz` (the map loaded, a session at the meta cell).
    Proxy,
}

/// One child process of the deployment and how to start it again.
struct Proc {
    /// `meta`, `c1`, …, `p1`, …: its log file's name.
    name: String,
    kind: Kind,
    /// gRPC address.
    addr: SocketAddr,
    /// Admin HTTP address.
    admin: SocketAddr,
    /// The arguments after the binary.
    args: Vec<OsString>,
    log: PathBuf,
    /// The running process; `None` before the first start and after a kill or stop.
    child: Option<Child>,
    /// How many times it was started.
    starts: u32,
}

impl Proc {
    /// "cell c1 (127.0.0.1:…)" and the like, for messages.
    fn label(&self) -> String {
        match self.kind {
            Kind::Meta => format!("the meta cell ({})", self.addr),
            Kind::Data => format!("cell {} ({})", self.name, self.addr),
            Kind::Proxy => format!("proxy {} ({})", self.name, self.addr),
        }
    }

    /// The last lines of its log, introduced, for an error.
    fn log_tail(&self) -> String {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read it: {e})"));
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("last lines of its log {}:\n{tail}", self.log.display())
    }

    /// Starts the process (appending to its log).
    fn spawn(&mut self, bin: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open the log file {}", self.log.display()))?;
        self.starts += 1;
        let shown: Vec<String> = self
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        writeln!(
            log,
            "=== warren deploy: start #{} of {}: {} {}",
            self.starts,
            self.name,
            bin.display(),
            shown.join(" ")
        )
        .with_context(|| format!("cannot write the log file {}", self.log.display()))?;
        let err = log
            .try_clone()
            .with_context(|| format!("cannot open the log file {}", self.log.display()))?;
        let mut cmd = child_command(bin);
        cmd.args(&self.args)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} from {}", self.label(), bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether it runs; reaps it (and forgets it) if it has exited, with its exit status.
    fn poll_exit(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child
            .try_wait()
            .with_context(|| format!("cannot check on {}", self.label()))?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Why it is not ready yet, or `Ok` once it is.
    async fn probe(&self, tls: Option<&Arc<Tls>>) -> Result<(), String> {
        let crate::http::Reply { status, body, .. } =
            crate::http::get(&self.admin.to_string(), "/readyz", Duration::from_secs(2))
                .await
                .map_err(|e| format!("GET http://{}/readyz: {e}", self.admin))?;
        if status != 200 {
            return Err(format!(
                "http://{}/readyz answered {status}: {}",
                self.admin,
                body.trim()
            ));
        }
        if self.kind == Kind::Data {
            let addr = self.addr.to_string();
            let second = Duration::from_secs(1);
            let located = async {
                let conn = warren_client::transport::dial_as(&addr, second, true, tls).await?;
                warren_client::transport::locate_at(&conn, second).await
            };
            match located.await {
                Ok(info) if info.is_master && info.map_epoch >= 1 => {}
                Ok(info) => {
                    return Err(format!(
                        "its Locate reports is_master {} and map_epoch {}",
                        info.is_master, info.map_epoch
                    ))
                }
                Err(e) => return Err(format!("Locate failed: {e}")),
            }
        }
        Ok(())
    }

    /// Waits until it serves, failing early if it exits.
    /// `tls`: the identity its probes dial with (a `tls=on` deployment's client's).
    async fn wait_ready(
        &mut self,
        patience: Duration,
        tls: Option<&Arc<Tls>>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            if self.child.is_none() {
                bail!("{} is not running", self.label());
            }
            if let Some(status) = self.poll_exit()? {
                bail!(
                    "{} exited ({status}) before it was ready; {}",
                    self.label(),
                    self.log_tail()
                );
            }
            let seen = match self.probe(tls).await {
                Ok(()) => return Ok(()),
                Err(seen) => seen,
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready within {patience:?} ({seen}); {}",
                    self.label(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A command for the `warren` binary at `bin`: no stdin, killed if dropped, and without the
/// parent's `WARREN_*` settings (except `WARREN_LOG`).
fn child_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("WARREN_") && k != "WARREN_LOG" {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// `n` loopback addresses, each free a moment ago (all held at once, so distinct).
fn free_addrs(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find free ports on 127.0.0.1")?;
    held.iter()
        .map(|l| l.local_addr().context("cannot read a free port"))
        .collect()
}

/// The certificates of a deployment with `tls=on`, made at its start in `DIR/tls` with a
/// fresh CA: `server` for every cell and proxy (principal [`DEPLOY_SERVER_PRINCIPAL`],
/// for 127.0.0.1), which the cells take as proxy and operator principal; `client` for this
/// process's sessions ([`DEPLOY_CLIENT_PRINCIPAL`]); `operator` for the first map.
struct DeployTls {
    server: warren_tls::TlsFiles,
    client: Arc<Tls>,
    operator: Arc<Tls>,
}

/// The principal of a `tls=on` deployment's cells and proxies.
pub const DEPLOY_SERVER_PRINCIPAL: &str = "warren:deploy-server";
/// The principal of the load generator's sessions on a `tls=on` deployment.
pub const DEPLOY_CLIENT_PRINCIPAL: &str = "warren:loadtest";

impl DeployTls {
    fn make(dir: &Path) -> anyhow::Result<DeployTls> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let ca = warren_tls::gen::Ca::new("warren loadtest deployment CA")
            .map_err(|e| anyhow!("{e}"))?;
        let ca_path = ca
            .write_ca(dir)
            .with_context(|| format!("cannot write the CA into {}", dir.display()))?;
        let current = warren_tls::gen::Validity::Current;
        let issue = |name: &str, principal: &str, hosts: &[&str]| {
            ca.write_issued(dir, name, principal, hosts, current, &ca_path)
                .map_err(|e| {
                    anyhow!(
                        "cannot make the {name} certificate in {}: {e}",
                        dir.display()
                    )
                })
        };
        let load =
            |files: warren_tls::TlsFiles| warren_tls::Tls::load(files).map_err(|e| anyhow!("{e}"));
        Ok(DeployTls {
            server: issue(
                "server",
                DEPLOY_SERVER_PRINCIPAL,
                &["127.0.0.1", "localhost"],
            )?,
            client: load(issue("client", DEPLOY_CLIENT_PRINCIPAL, &[])?)?,
            operator: load(issue("operator", admin::OPERATOR_PRINCIPAL, &[])?)?,
        })
    }

    /// The server certificate's `--cacert/--cert/--key`, and the server principal as the cells' proxy
    /// and operator (its cells call each other as operators, its proxies as proxies).
    fn cell_flags(&self) -> Vec<String> {
        let mut v = self.server.flags();
        v.extend(
            [
                "--proxy-principal",
                DEPLOY_SERVER_PRINCIPAL,
                "--operator-principal",
                DEPLOY_SERVER_PRINCIPAL,
            ]
            .map(String::from),
        );
        v
    }
}

/// A running deployment of separate `warren` processes (see the module docs). Dropping it
/// kills (SIGKILL) whatever still runs; [`stop`](Self::stop) stops it gracefully.
pub struct Deployment {
    /// Its members' names and how many of each.
    layout: Layout,
    bin: PathBuf,
    dir: PathBuf,
    meta: Proc,
    cells: Vec<Proc>,
    proxies: Vec<Proc>,
    /// The flags every data cell gets beyond its addresses (lease, TLS), for a cell added
    /// later.
    cell_flags: Vec<String>,
    /// The certificates of a deployment with `tls=on`.
    tls: Option<DeployTls>,
    /// How long a member may take to become ready.
    patience: Duration,
}

/// A data cell started next to a running deployment ([`Deployment::add_cell`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedCell {
    /// `c<N+1>` next to c1..cN.
    pub name: String,
    /// Its gRPC `HOST:PORT`, for the map.
    pub addr: String,
    /// Its admin HTTP `HOST:PORT`.
    pub admin: String,
    /// The deployment's meta cell, gRPC `HOST:PORT`.
    pub meta: String,
}

/// The process of data cell (or meta cell) `name` in `dir`: `warren cell` on `addrs`
/// (gRPC, admin), its store in `dir/NAME`, its log in `dir/logs/NAME.log`, joined to the
/// meta cell `meta` (none for the meta cell itself), with `flags` (lease, TLS).
fn cell_proc(
    dir: &Path,
    name: &str,
    kind: Kind,
    (addr, admin): (SocketAddr, SocketAddr),
    meta: &str,
    flags: &[String],
) -> Proc {
    let mut args: Vec<OsString> = [
        "cell",
        "--name",
        name,
        "--listen",
        &addr.to_string(),
        "--admin",
        &admin.to_string(),
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push("--data".into());
    args.push(Layout::store_dir(dir, name).into_os_string());
    if !meta.is_empty() {
        args.extend(["--meta".into(), meta.into()]);
    }
    args.extend(flags.iter().map(OsString::from));
    Proc {
        name: name.to_string(),
        kind,
        addr,
        admin,
        args,
        log: dir.join("logs").join(format!("{name}.log")),
        child: None,
        starts: 0,
    }
}

impl Deployment {
    /// Starts `spec` in `dir` (a fresh directory the caller owns) from this very binary:
    /// the meta cell, the first map (cells c1..cN), the cells (waiting until each loaded the
    /// map), the proxies (waiting until each is ready). All on 127.0.0.1 with free ports.
    pub async fn start(spec: &DeploySpec, dir: &Path) -> anyhow::Result<Deployment> {
        let bin = std::env::current_exe()
            .context("cannot find the warren binary (the current executable)")?;
        Self::start_with(&bin, spec, dir).await
    }

    /// [`start`](Self::start) with the `warren` binary at `bin`.
    pub async fn start_with(
        bin: &Path,
        spec: &DeploySpec,
        dir: &Path,
    ) -> anyhow::Result<Deployment> {
        if !(1..=MAX_EACH).contains(&spec.cells) || !(1..=MAX_EACH).contains(&spec.proxies) {
            bail!("deployment {spec}: cells and proxies must each be from 1 to {MAX_EACH}");
        }
        if let Some(lease) = spec.lease {
            check_lease(lease).map_err(|e| anyhow!("deployment {spec}: {e}"))?;
        }
        if Layout::store_dir(dir, layout::META).exists() {
            bail!(
                "{} already holds a deployment (it has a meta/ directory); give a fresh \
                 directory",
                dir.display()
            );
        }
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;

        let members = 1 + usize::from(spec.cells) + usize::from(spec.proxies);
        let mut ports = free_addrs(2 * members)?.into_iter();
        let mut next = || ports.next().expect("two ports per member");
        let show = warren_config::format_duration;
        let (mut cell_flags, mut proxy_flags) = match spec.lease {
            Some(l) => {
                let margin = show(proxy_margin(l));
                (
                    vec![
                        "--lease".to_string(),
                        show(l),
                        "--proxy-lease".to_string(),
                        show(l + PROXY_LEASE_EXTRA),
                    ],
                    vec![
                        "--client-lease".to_string(),
                        show(l),
                        "--lease-margin".to_string(),
                        margin.clone(),
                        "--keepalive-reply-before-end".to_string(),
                        margin,
                    ],
                )
            }
            None => (Vec::new(), Vec::new()),
        };
        let proxy_lease = spec
            .lease
            .map_or(DEFAULT_PROXY_LEASE, |l| l + PROXY_LEASE_EXTRA);
        let tls = if spec.tls {
            let tls = DeployTls::make(&dir.join("tls"))?;
            cell_flags.extend(tls.cell_flags());
            proxy_flags.extend(tls.server.flags());
            Some(tls)
        } else {
            None
        };

        let cell = |name: &str, kind: Kind, addr: SocketAddr, admin: SocketAddr, meta: &str| {
            cell_proc(dir, name, kind, (addr, admin), meta, &cell_flags)
        };
        let (addr, admin) = (next(), next());
        let layout = Layout::new(spec.cells, spec.proxies, 0);
        let meta = cell(layout::META, Kind::Meta, addr, admin, "");
        let meta_addr = meta.addr.to_string();
        let cells: Vec<Proc> = layout
            .cell_names()
            .iter()
            .map(|name| {
                let (addr, admin) = (next(), next());
                cell(name, Kind::Data, addr, admin, &meta_addr)
            })
            .collect();
        let proxies: Vec<Proc> = layout
            .proxy_names()
            .into_iter()
            .map(|name| {
                let (addr, admin) = (next(), next());
                let mut args: Vec<OsString> = [
                    "proxy",
                    "--listen",
                    &addr.to_string(),
                    "--admin",
                    &admin.to_string(),
                    "--meta",
                    &meta_addr,
                    "--id",
                    &name,
                ]
                .iter()
                .map(OsString::from)
                .collect();
                args.extend(proxy_flags.iter().map(OsString::from));
                Proc {
                    log: logs.join(format!("{name}.log")),
                    name,
                    kind: Kind::Proxy,
                    addr,
                    admin,
                    args,
                    child: None,
                    starts: 0,
                }
            })
            .collect();

        // From here on, an early return drops `d`, which kills whatever was started.
        let mut d = Deployment {
            layout,
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            meta,
            cells,
            proxies,
            cell_flags,
            tls,
            patience: BASE_PATIENCE + proxy_lease,
        };
        let patience = d.patience;
        d.meta.spawn(bin)?;
        let tls = d.client_tls();
        let tls = tls.as_ref();
        d.meta.wait_ready(patience, tls).await?;
        d.write_first_map().await?;
        for c in &mut d.cells {
            c.spawn(bin)?;
        }
        for c in &mut d.cells {
            c.wait_ready(patience, tls).await?;
        }
        for p in &mut d.proxies {
            p.spawn(bin)?;
        }
        for p in &mut d.proxies {
            p.wait_ready(patience, tls).await?;
        }
        Ok(d)
    }

    /// The first map (as `warren ctl deployment init` writes it: epoch 1, the default
    /// slot count spread evenly over c1..cN), written through a session at the meta cell.
    async fn write_first_map(&self) -> anyhow::Result<()> {
        let addrs: Vec<SocketAddr> = self.cells.iter().map(|c| c.addr).collect();
        let cells = self.layout.initial_map_cells(&addrs);
        let meta = self.meta_addr();
        let written = tokio::time::timeout(INIT_PATIENCE, async {
            let mut options = admin::operator_options([meta.as_str()]);
            if let Some(tls) = &self.tls {
                options = options.tls(tls.operator.clone());
            }
            let session = Session::connect_with(options).await?;
            let written =
                admin::write_initial_map(&session, &cells, warren_router::DEFAULT_SLOTS).await;
            let _ = session.close().await;
            written
        })
        .await
        .map_err(|_| {
            anyhow!(
                "the first partition map was not written within {INIT_PATIENCE:?}; {}",
                self.meta.log_tail()
            )
        })?;
        written.map_err(|e| {
            anyhow!(
                "cannot write the first partition map at the meta cell ({meta}): {}: {}",
                e.code_name(),
                e.message()
            )
        })?;
        Ok(())
    }

    /// With `tls=on`, the identity its clients are to dial with (a certificate of
    /// [`DEPLOY_CLIENT_PRINCIPAL`] from the deployment's CA): install it
    /// ([`warren_tls::install`]) before a run against the deployment, as `warren loadtest`
    /// does. `None` for a plaintext deployment.
    pub fn client_tls(&self) -> Option<Arc<Tls>> {
        self.tls.as_ref().map(|t| t.client.clone())
    }

    /// gRPC `HOST:PORT` of the meta cell.
    pub fn meta_addr(&self) -> String {
        self.meta.addr.to_string()
    }

    /// gRPC `HOST:PORT` of the proxies, p1..pM.
    pub fn proxy_addrs(&self) -> Vec<String> {
        self.proxies.iter().map(|p| p.addr.to_string()).collect()
    }

    /// The data cells' names, c1..cN.
    pub fn cell_names(&self) -> Vec<String> {
        self.cells.iter().map(|c| c.name.clone()).collect()
    }

    /// gRPC `HOST:PORT` of the data cells, c1..cN (as in the partition map).
    pub fn cell_addrs(&self) -> Vec<String> {
        self.cells.iter().map(|c| c.addr.to_string()).collect()
    }

    /// Admin HTTP `HOST:PORT` of the meta cell, the data cells and the proxies, in that
    /// order.
    pub fn admin_addrs(&self) -> Vec<String> {
        let mut v = self.cell_admin_addrs();
        v.extend(self.proxy_admin_addrs());
        v
    }

    /// Admin HTTP `HOST:PORT` of the meta cell and the data cells.
    pub fn cell_admin_addrs(&self) -> Vec<String> {
        std::iter::once(&self.meta)
            .chain(&self.cells)
            .map(|c| c.admin.to_string())
            .collect()
    }

    /// Admin HTTP `HOST:PORT` of the proxies, p1..pM.
    pub fn proxy_admin_addrs(&self) -> Vec<String> {
        self.proxies.iter().map(|p| p.admin.to_string()).collect()
    }

    /// The directory holding the stores and `logs/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file of a member (its stdout and stderr, across restarts).
    pub fn log_path(&self, m: &Member) -> anyhow::Result<PathBuf> {
        Ok(self.find(m)?.log.clone())
    }

    fn find(&self, m: &Member) -> anyhow::Result<&Proc> {
        let i = self.index(m)?;
        Ok(self.member(i))
    }

    fn find_mut(&mut self, m: &Member) -> anyhow::Result<&mut Proc> {
        let i = self.index(m)?;
        Ok(match i {
            Index::Meta => &mut self.meta,
            Index::Cell(k) => &mut self.cells[k],
            Index::Proxy(j) => &mut self.proxies[j],
        })
    }

    fn member(&self, i: Index) -> &Proc {
        match i {
            Index::Meta => &self.meta,
            Index::Cell(k) => &self.cells[k],
            Index::Proxy(j) => &self.proxies[j],
        }
    }

    fn index(&self, m: &Member) -> anyhow::Result<Index> {
        match m {
            Member::Proxy(j) => {
                let n = self.proxies.len();
                match usize::from(*j) {
                    j @ 1.. if j <= n => Ok(Index::Proxy(j - 1)),
                    _ => bail!("no member {m}: the deployment has proxies proxy:1 to proxy:{n}"),
                }
            }
            Member::Master(name) if name == layout::META => Ok(Index::Meta),
            Member::Master(name) => self
                .cells
                .iter()
                .position(|c| &c.name == name)
                .map(Index::Cell)
                .ok_or_else(|| {
                    anyhow!(
                        "no member {m}: the deployment has the cells meta, {}",
                        self.cell_names().join(", ")
                    )
                }),
        }
    }

    /// SIGKILLs (`kill -9`) the member's process and reaps it. An error if there is no
    /// such member or it is not running (killed and not restarted, or exited by itself).
    pub async fn kill(&mut self, m: &Member) -> anyhow::Result<()> {
        let p = self.find_mut(m)?;
        if let Some(status) = p.poll_exit()? {
            bail!(
                "{m} ({}) had already exited ({status}); {}",
                p.label(),
                p.log_tail()
            );
        }
        let Some(mut child) = p.child.take() else {
            bail!("{m} ({}) is not running (killed before?)", p.label());
        };
        child
            .kill()
            .await
            .with_context(|| format!("cannot kill {m} ({})", p.label()))?;
        Ok(())
    }

    /// Starts a killed (or exited) member again with the same arguments (same ports, same
    /// data) and waits until it serves: a cell's `/readyz` (and for a data cell `Locate`
    /// as master with a map), a proxy's `/readyz`. An error if it is running.
    pub async fn restart(&mut self, m: &Member) -> anyhow::Result<()> {
        let bin = self.bin.clone();
        let patience = self.patience;
        let tls = self.client_tls();
        let p = self.find_mut(m)?;
        p.poll_exit()?;
        if p.child.is_some() {
            bail!("{m} ({}) is running; kill it first", p.label());
        }
        p.spawn(&bin)?;
        p.wait_ready(patience, tls.as_ref())
            .await
            .with_context(|| format!("restarting {m}"))
    }

    /// Starts one more data cell, `c<N+1>` next to c1..cN, as `warren cell --meta …` (what
    /// `warren dev --add-cell` runs in-process): free loopback ports, its store in
    /// `DIR/c<N+1>`, the deployment's lease flags, joined to the meta cell. Resolves once it
    /// has loaded the partition map and answers as master. It owns no slot until a reshard
    /// gives it some (`crate::reshard`); faults can name it (`master:c<N+1>`) from then on.
    pub async fn add_cell(&mut self) -> anyhow::Result<AddedCell> {
        let k = u16::try_from(self.cells.len() + 1).unwrap_or(u16::MAX);
        if k > MAX_EACH {
            bail!("the deployment has {MAX_EACH} data cells already, the most it may have");
        }
        let name = Layout::cell_name(k);
        let mut ports = free_addrs(2)?.into_iter();
        let (addr, admin) = (
            ports.next().context("a free port")?,
            ports.next().context("a free port")?,
        );
        let meta = self.meta_addr();
        let mut p = cell_proc(
            &self.dir,
            &name,
            Kind::Data,
            (addr, admin),
            &meta,
            &self.cell_flags,
        );
        p.spawn(&self.bin)?;
        let ready = p
            .wait_ready(self.patience, self.client_tls().as_ref())
            .await;
        // Kept even if it failed to start, so that dropping the deployment kills it.
        self.cells.push(p);
        ready.with_context(|| format!("adding data cell {name}"))?;
        Ok(AddedCell {
            name,
            addr: addr.to_string(),
            admin: admin.to_string(),
            meta,
        })
    }

    /// Every member now, meta, c1..cN, p1..pM: its process id while it runs (for
    /// [`crate::procstat`]) and how many times it was started.
    pub fn processes(&self) -> Vec<MemberProcess> {
        std::iter::once(&self.meta)
            .chain(&self.cells)
            .chain(&self.proxies)
            .map(|p| MemberProcess {
                name: p.name.clone(),
                pid: p.child.as_ref().and_then(Child::id),
                starts: p.starts,
            })
            .collect()
    }

    /// Whether the member's process runs (not killed, not exited).
    pub fn is_running(&mut self, m: &Member) -> anyhow::Result<bool> {
        let p = self.find_mut(m)?;
        p.poll_exit()?;
        Ok(p.child.is_some())
    }

    /// Stops everything gracefully, tier by tier: the proxies, then the data cells, then
    /// the meta cell, each with SIGTERM and, after 10 s, SIGKILL. Stops all of it whatever
    /// happens; the error lists members that had exited by themselves, exited with a
    /// failure or had to be killed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        stop_tier(self.proxies.iter_mut().collect(), &mut errors).await;
        stop_tier(self.cells.iter_mut().collect(), &mut errors).await;
        stop_tier(vec![&mut self.meta], &mut errors).await;
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("stopping the deployment: {}", errors.join("; "))
        }
    }
}

/// A deployment shared with a run (`warren_loadtest::run_with`): faults on `MEMBER`
/// (`proxy:2`, `master:c1`) kill or restart it, and its processes are measured over the
/// window. `None` once it has been taken out to stop it.
impl Injector for tokio::sync::Mutex<Option<Deployment>> {
    fn inject<'a>(
        &'a self,
        action: Action,
        member: &'a str,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let m: Member = member.parse().map_err(anyhow::Error::msg)?;
            let mut guard = self.lock().await;
            let d = guard.as_mut().context("the deployment has stopped")?;
            match action {
                Action::Kill => d.kill(&m).await,
                Action::Restart => d.restart(&m).await,
            }
        })
    }

    fn processes(&self) -> Pin<Box<dyn Future<Output = Vec<MemberProcess>> + Send + '_>> {
        Box::pin(async move {
            self.lock()
                .await
                .as_ref()
                .map(Deployment::processes)
                .unwrap_or_default()
        })
    }

    fn add_cell(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<AddedCell>> + Send + '_>> {
        Box::pin(async move {
            let mut guard = self.lock().await;
            let d = guard.as_mut().context("the deployment has stopped")?;
            d.add_cell().await
        })
    }
}

/// Which member, by position.
#[derive(Clone, Copy, Debug)]
enum Index {
    Meta,
    Cell(usize),
    Proxy(usize),
}

/// SIGTERM to every running process of `tier`, then waits (SIGKILL after
/// [`STOP_PATIENCE`]); what went wrong goes to `errors`.
async fn stop_tier(mut tier: Vec<&mut Proc>, errors: &mut Vec<String>) {
    for p in tier.iter_mut() {
        match p.poll_exit() {
            Ok(Some(status)) => errors.push(format!(
                "{} had exited by itself ({status}); {}",
                p.label(),
                p.log_tail()
            )),
            Ok(None) => {}
            Err(e) => errors.push(format!("{e:#}")),
        }
        let Some(pid) = p.child.as_ref().and_then(Child::id) else {
            continue;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if !matches!(sent, Ok(s) if s.success()) {
            // No `kill` to run: stop it the hard way.
            if let Some(child) = p.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
    let deadline = Instant::now() + STOP_PATIENCE;
    for p in tier.iter_mut() {
        let Some(mut child) = p.child.take() else {
            continue;
        };
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => errors.push(format!(
                "{} exited with {status} when asked to stop; {}",
                p.label(),
                p.log_tail()
            )),
            Ok(Err(e)) => errors.push(format!("cannot wait for {}: {e}", p.label())),
            Err(_) => {
                let _ = child.kill().await;
                errors.push(format!(
                    "{} did not stop within {STOP_PATIENCE:?} of SIGTERM and was killed; {}",
                    p.label(),
                    p.log_tail()
                ));
            }
        }
    }
}

impl Drop for Deployment {
    /// SIGKILLs whatever still runs, so nothing outlives a caller that panicked or returned
    /// early (`kill_on_drop` would too; this does not wait for the drop of each `Child`).
    fn drop(&mut self) {
        for p in std::iter::once(&mut self.meta)
            .chain(&mut self.cells)
            .chain(&mut self.proxies)
        {
            if let Some(child) = p.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}

#[cfg(test)]
mod tests;
