//! The chaos deployment on 127.0.0.1 (docs/reliability.md, "Chaos"): three etcd members
//! ([`EtcdCluster`]); a meta cell and data cells `c1`, `c2`, each two `warren cell --store
//! etcd` replicas (a master and a standby); two `warren proxy` processes; and a testkit
//! [`Bridge`] on every link between tiers, so a fault can cut or slow one link:
//!
//! - clients → proxy `pi`: one bridge per proxy (clients are given the bridges);
//! - → cell replica: one bridge per replica, which the replica advertises (`--advertise`),
//!   so proxies, direct clients, the other replica and the meta cell's watchers all reach
//!   it through the bridge;
//! - cell replica → etcd: one bridge per replica and etcd member (the replica's `--etcd`).
//!
//! Every process can be `kill -9`ed and restarted on its ports and store, SIGSTOPped and
//! SIGCONTed, or restarted under libfaketime with its clock rate skewed.

use crate::schedule::{Link, Proc, Role, DATA_CELLS, PROXIES};
use anyhow::{anyhow, bail, Context};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::Mutex;
use warren_testkit::{free_port, Bridge, EtcdCluster, WarrenProcess};

/// The cells, the meta cell first.
pub const CELLS: [&str; 3] = ["meta", DATA_CELLS[0], DATA_CELLS[1]];
/// Replicas per cell.
pub const REPLICAS: usize = 2;
/// Session lease the cells grant direct clients, and proxy sessions.
pub const LEASE: &str = "5s";
pub const PROXY_LEASE: &str = "8s";
/// The lease proxies grant their clients.
pub const CLIENT_LEASE: &str = "4s";
/// libfaketime, from Debian's `faketime` package: the clock-skew fault needs it.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// One restartable process: its command line, and the process while it runs.
struct Slot {
    args: Vec<String>,
    env: Vec<(String, String)>,
    running: Option<WarrenProcess>,
    /// Stopped with SIGSTOP and not yet continued.
    stopped: bool,
}

/// A replica of a cell.
pub struct Replica {
    /// Where it listens (the harness asks it `Locate` here, past the bridge).
    pub listen: String,
    /// The bridge in front of it: its advertised address.
    pub front: Bridge,
    /// Its bridges to each etcd member.
    pub to_etcd: Vec<Bridge>,
}

pub struct Cluster {
    pub bin: PathBuf,
    pub etcd: Mutex<EtcdCluster>,
    /// Per cell, its replicas.
    pub cells: BTreeMap<String, Vec<Replica>>,
    /// Proxies' listen addresses, and the client bridges in front of them.
    pub proxies: Vec<String>,
    pub proxy_fronts: Vec<Bridge>,
    slots: Mutex<BTreeMap<String, Slot>>,
}

/// The key of a cell replica's slot.
pub fn replica_key(cell: &str, r: usize) -> String {
    format!("{cell}/r{r}")
}

fn proxy_key(i: usize) -> String {
    format!("p{i}")
}

impl Cluster {
    /// Starts everything and writes the first partition map (c1 and c2 halves of the
    /// slots). `cell_env` goes into every cell's environment.
    pub async fn start(bin: &Path, cell_env: &[(String, String)]) -> anyhow::Result<Cluster> {
        if !bin.exists() {
            bail!(
                "no warren binary at {} (build it with `cargo build --release -p warren`, or \
                 give --bin PATH)",
                bin.display()
            );
        }
        if warren_testkit::etcd::etcd_binary().is_none() {
            bail!("no `etcd` on PATH: install Debian's etcd-server (apt-get install etcd-server)");
        }
        let etcd = EtcdCluster::start(3).await;
        let mut cells = BTreeMap::new();
        for cell in CELLS {
            let mut reps = Vec::new();
            for _ in 0..REPLICAS {
                let listen = format!("127.0.0.1:{}", free_port());
                let front = Bridge::start(listen.parse()?).await;
                let mut to_etcd = Vec::new();
                for m in 0..etcd.member_count() {
                    to_etcd.push(Bridge::start(etcd.client_addr(m)).await);
                }
                reps.push(Replica {
                    listen,
                    front,
                    to_etcd,
                });
            }
            cells.insert(cell.to_string(), reps);
        }
        let proxies: Vec<String> = (0..PROXIES)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let mut proxy_fronts = Vec::new();
        for p in &proxies {
            proxy_fronts.push(Bridge::start(p.parse()?).await);
        }
        let c = Cluster {
            bin: bin.to_path_buf(),
            etcd: Mutex::new(etcd),
            cells,
            proxies,
            proxy_fronts,
            slots: Mutex::new(BTreeMap::new()),
        };
        let meta = c.meta_endpoints().join(",");
        let mut slots = BTreeMap::new();
        for (cell, reps) in &c.cells {
            for (r, rep) in reps.iter().enumerate() {
                let etcd_urls: Vec<String> = rep
                    .to_etcd
                    .iter()
                    .map(|b| format!("http://{}", b.addr()))
                    .collect();
                let mut args: Vec<String> = [
                    "cell",
                    "--store",
                    "etcd",
                    "--etcd",
                    &etcd_urls.join(","),
                    "--etcd-max-txn-ops",
                    "10000",
                    "--name",
                    cell,
                    "--replica",
                    &format!("r{r}"),
                    "--listen",
                    &rep.listen,
                    "--advertise",
                    &rep.front.addr().to_string(),
                    "--lease",
                    LEASE,
                    "--proxy-lease",
                    PROXY_LEASE,
                    "--claim-window",
                    "30s",
                ]
                .into_iter()
                .map(String::from)
                .collect();
                if cell != "meta" {
                    args.extend(["--meta".to_string(), meta.clone()]);
                }
                slots.insert(
                    replica_key(cell, r),
                    Slot {
                        args,
                        env: cell_env.to_vec(),
                        running: None,
                        stopped: false,
                    },
                );
            }
        }
        for (i, p) in c.proxies.iter().enumerate() {
            let args = [
                "proxy",
                "--listen",
                p,
                "--meta",
                &meta,
                "--client-lease",
                CLIENT_LEASE,
                "--lease-margin",
                "1s",
                "--keepalive-reply-before-end",
                "1s",
            ]
            .into_iter()
            .map(String::from)
            .collect();
            slots.insert(
                proxy_key(i),
                Slot {
                    args,
                    env: Vec::new(),
                    running: None,
                    stopped: false,
                },
            );
        }
        *c.slots.lock().await = slots;
        for cell in CELLS {
            for r in 0..REPLICAS {
                c.start_proc(&replica_key(cell, r), &[]).await?;
            }
            c.master_of(cell, Duration::from_secs(30))
                .await
                .with_context(|| format!("cell {cell} elected no master"))?;
        }
        c.init_map().await?;
        for i in 0..PROXIES {
            c.start_proc(&proxy_key(i), &[]).await?;
        }
        Ok(c)
    }

    /// The meta cell's replicas as clients and proxies reach them (their bridges).
    pub fn meta_endpoints(&self) -> Vec<String> {
        self.cells["meta"]
            .iter()
            .map(|r| r.front.addr().to_string())
            .collect()
    }

    /// The proxies as clients reach them (their bridges).
    pub fn proxy_endpoints(&self) -> Vec<String> {
        self.proxy_fronts
            .iter()
            .map(|b| b.addr().to_string())
            .collect()
    }

    async fn init_map(&self) -> anyhow::Result<()> {
        let meta = self.meta_endpoints().join(",");
        let mut args = vec![
            "ctl".to_string(),
            "deployment".into(),
            "init".into(),
            "--meta".into(),
            meta,
        ];
        for cell in DATA_CELLS {
            let reps: Vec<String> = self.cells[cell]
                .iter()
                .map(|r| r.front.addr().to_string())
                .collect();
            args.extend(["--cell".into(), format!("{cell}={}", reps.join(","))]);
        }
        let out = self.ctl(&args).await?;
        if !out.status.success() {
            bail!(
                "warren ctl deployment init failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Runs `warren ARGS…` (a `ctl` command), within 60 s.
    pub async fn ctl(&self, args: &[String]) -> anyhow::Result<std::process::Output> {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .env_remove("WARREN_ENDPOINT")
            .kill_on_drop(true);
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .map_err(|_| anyhow!("warren {} took over 60 s", args.join(" ")))?
            .with_context(|| format!("run {}", self.bin.display()))
    }

    /// Starts the process of `key` with `extra` environment (in a task of its own, so a
    /// process that never prints `ready` is an error here, not a panic of the caller).
    async fn start_proc(&self, key: &str, extra: &[(String, String)]) -> anyhow::Result<()> {
        let (args, mut env) = {
            let slots = self.slots.lock().await;
            let s = slots.get(key).ok_or_else(|| anyhow!("no process {key}"))?;
            if s.running.is_some() {
                return Ok(());
            }
            (s.args.clone(), s.env.clone())
        };
        env.extend(extra.iter().cloned());
        // The children's logs, on the harness's stderr: errors only, unless
        // `WARREN_CHAOS_CHILD_LOG` names another filter.
        let filter = std::env::var("WARREN_CHAOS_CHILD_LOG").unwrap_or_else(|_| "error".into());
        env.push(("WARREN_LOG".into(), filter));
        let bin = self.bin.clone();
        let p = tokio::spawn(async move {
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let envv: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            WarrenProcess::spawn_env(&bin, &argv, &envv).await
        })
        .await
        .map_err(|e| anyhow!("{key} did not start: {e}"))?;
        let mut slots = self.slots.lock().await;
        let s = slots.get_mut(key).expect("slot");
        s.running = Some(p);
        s.stopped = false;
        Ok(())
    }

    /// `kill -9` of `key`'s process (continued first if stopped, so it is gone at once).
    pub async fn kill(&self, key: &str) -> anyhow::Result<()> {
        let p = {
            let mut slots = self.slots.lock().await;
            let s = slots
                .get_mut(key)
                .ok_or_else(|| anyhow!("no process {key}"))?;
            s.stopped = false;
            s.running.take()
        };
        let Some(mut p) = p else {
            bail!("{key} is not running");
        };
        p.kill9().await;
        Ok(())
    }

    /// Restarts `key` on its ports and store; `skew` (parts per 10,000) runs it under
    /// libfaketime with its clock rate off by that much.
    pub async fn restart(&self, key: &str, skew: Option<i64>) -> anyhow::Result<()> {
        let extra = match skew {
            None => Vec::new(),
            Some(ppt) => {
                if !Path::new(LIBFAKETIME).exists() {
                    bail!("{LIBFAKETIME} is missing: apt-get install faketime");
                }
                let rate = 1.0 + ppt as f64 / 10_000.0;
                vec![
                    ("LD_PRELOAD".to_string(), LIBFAKETIME.to_string()),
                    ("FAKETIME".to_string(), format!("+0 x{rate:.4}")),
                    ("FAKETIME_DONT_RESET".to_string(), "1".to_string()),
                ]
            }
        };
        self.start_proc(key, &extra).await
    }

    pub async fn pid(&self, key: &str) -> Option<u32> {
        self.slots.lock().await.get(key)?.running.as_ref()?.pid()
    }

    /// SIGSTOP (`stop`) or SIGCONT of `key`'s process.
    pub async fn signal(&self, key: &str, stop: bool) -> anyhow::Result<()> {
        let pid = {
            let mut slots = self.slots.lock().await;
            let s = slots
                .get_mut(key)
                .ok_or_else(|| anyhow!("no process {key}"))?;
            s.stopped = stop;
            s.running.as_ref().and_then(WarrenProcess::pid)
        };
        let pid = pid.ok_or_else(|| anyhow!("{key} is not running"))?;
        send_signal(pid, if stop { "-STOP" } else { "-CONT" }).await
    }

    /// The replica of `cell` that is a serving master, asked past the bridges; waits up to
    /// `within`.
    pub async fn master_of(&self, cell: &str, within: Duration) -> anyhow::Result<usize> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            for (r, rep) in self.cells[cell].iter().enumerate() {
                if let Ok(l) = warren_client::locate(
                    std::slice::from_ref(&rep.listen),
                    Duration::from_millis(500),
                )
                .await
                {
                    if l.is_master && l.serving {
                        return Ok(r);
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no serving master of {cell} within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The replica of `cell` playing `role` now (the standby: the one that is not master).
    pub async fn replica(&self, cell: &str, role: Role) -> anyhow::Result<usize> {
        let m = self.master_of(cell, Duration::from_secs(15)).await?;
        Ok(match role {
            Role::Master => m,
            Role::Standby => (m + 1) % REPLICAS,
        })
    }

    /// Resolves a process role to a slot key (`c1/r0`, `p1`) or an etcd member (`etcd/m2`).
    pub async fn resolve(&self, p: &Proc) -> anyhow::Result<String> {
        Ok(match p {
            Proc::Cell { cell, role } => replica_key(cell, self.replica(cell, *role).await?),
            Proc::Proxy { index } => proxy_key(*index),
            Proc::EtcdLeader | Proc::EtcdFollower => {
                let etcd = self.etcd.lock().await;
                let leader = etcd
                    .leader()
                    .await
                    .ok_or_else(|| anyhow!("etcd has no leader"))?;
                let m = if *p == Proc::EtcdLeader {
                    leader
                } else {
                    (leader + 1) % etcd.member_count()
                };
                format!("etcd/m{m}")
            }
        })
    }

    /// The bridges of a link, and a name for the report.
    pub async fn link(&self, l: &Link) -> anyhow::Result<(Vec<&Bridge>, String)> {
        Ok(match l {
            Link::ClientProxy { index } => (
                vec![&self.proxy_fronts[*index]],
                format!("clients→p{index}"),
            ),
            Link::ToCell { cell, role } => {
                let r = self.replica(cell, *role).await?;
                (vec![&self.cells[cell][r].front], format!("→{cell}/r{r}"))
            }
            Link::CellEtcd { cell, role } => {
                let r = self.replica(cell, *role).await?;
                (
                    self.cells[cell][r].to_etcd.iter().collect(),
                    format!("{cell}/r{r}→etcd"),
                )
            }
        })
    }

    /// `kill -9` of an etcd member, or SIGSTOP/SIGCONT of one.
    pub async fn etcd_kill(&self, m: usize) {
        self.etcd.lock().await.kill(m).await;
    }

    pub async fn etcd_restart(&self, m: usize) -> anyhow::Result<()> {
        // EtcdCluster::restart panics (with the member's log) if it does not come back.
        let mut etcd = self.etcd.lock().await;
        etcd.restart(m).await;
        Ok(())
    }

    pub async fn etcd_signal(&self, m: usize, stop: bool) -> anyhow::Result<()> {
        let pid = self
            .etcd
            .lock()
            .await
            .pid(m)
            .ok_or_else(|| anyhow!("etcd m{m} is not running"))?;
        send_signal(pid, if stop { "-STOP" } else { "-CONT" }).await
    }

    /// Compacts etcd's history every 20 s, keeping the last 500 revisions, as production
    /// etcd does with `--auto-compaction-retention` (docs/operations.md, "A replicated cell
    /// on etcd"): without it a long session filled etcd's 2 GiB backend quota in 18
    /// minutes ("mvcc: database space exceeded") and every cell stopped; keeping 5,000
    /// revisions still held 750 MB in use after 7 minutes (revisions average ~100 KB
    /// under reshards). Asks the members directly, past the bridges; a member that is down
    /// or paused is skipped.
    pub fn spawn_compactor(self: &std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let endpoints = me.etcd.lock().await.endpoints();
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                let empty = serde_json::json!({});
                for ep in &endpoints {
                    let status =
                        warren_testkit::etcd::post_json(ep, "/v3/maintenance/status", &empty);
                    let Ok(Ok(v)) = tokio::time::timeout(Duration::from_secs(3), status).await
                    else {
                        continue;
                    };
                    let rev = match &v["header"]["revision"] {
                        serde_json::Value::String(s) => s.parse::<u64>().unwrap_or(0),
                        serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
                        _ => 0,
                    };
                    if rev > 500 {
                        let body = serde_json::json!({ "revision": (rev - 500).to_string() });
                        let c = warren_testkit::etcd::post_json(ep, "/v3/kv/compaction", &body);
                        let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
                    }
                    break;
                }
            }
        })
    }

    /// Processes that should run but do not (a restart that failed), and stopped ones.
    pub async fn down(&self) -> Vec<String> {
        let slots = self.slots.lock().await;
        slots
            .iter()
            .filter(|(_, s)| s.running.is_none() || s.stopped)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Heals whatever a fault left behind: continues stopped processes, starts missing
    /// ones, clears every bridge.
    pub async fn heal_all(&self) {
        let keys: Vec<(String, bool, bool)> = self
            .slots
            .lock()
            .await
            .iter()
            .map(|(k, s)| (k.clone(), s.running.is_none(), s.stopped))
            .collect();
        for (k, missing, stopped) in keys {
            if stopped {
                let _ = self.signal(&k, false).await;
            }
            if missing {
                if let Err(e) = self.restart(&k, None).await {
                    eprintln!("chaos: could not restart {k}: {e:#}");
                }
            }
        }
        for b in self.all_bridges() {
            b.resume();
            b.unblackhole();
        }
    }

    fn all_bridges(&self) -> Vec<&Bridge> {
        let mut v: Vec<&Bridge> = self.proxy_fronts.iter().collect();
        for reps in self.cells.values() {
            for r in reps {
                v.push(&r.front);
                v.extend(r.to_etcd.iter());
            }
        }
        v
    }

    /// Kills every `warren` process (etcd goes when the cluster is dropped).
    pub async fn shutdown(&self) {
        let mut slots = self.slots.lock().await;
        for s in slots.values_mut() {
            if let Some(mut p) = s.running.take() {
                if s.stopped {
                    if let Some(pid) = p.pid() {
                        let _ = send_signal(pid, "-CONT").await;
                    }
                }
                p.kill9().await;
            }
        }
    }
}

async fn send_signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let st = tokio::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .await
        .context("run kill")?;
    if !st.success() {
        bail!("kill {sig} {pid} failed");
    }
    Ok(())
}
