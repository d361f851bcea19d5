//! Real etcd clusters for tests: [`EtcdCluster`] starts 1–N `etcd` processes (Debian's
//! `etcd-server`, 3.4) on free loopback ports, each with its own data directory and log
//! file, and offers the failure controls failover tests need — SIGKILL a member, restart
//! it on the same data and ports, find the raft leader — plus a tiny plain-HTTP client for
//! the v3 JSON gateway ([`kv_put`], [`kv_get`], [`http_request`]) so tests can poke at the
//! cluster without an etcd client crate.
//!
//! Tests that need etcd start with
//! `let Some(_) = warren_testkit::etcd::require_etcd() else { return };`
//! (or `let _etcd = warren_testkit::require_etcd!();`): without an `etcd` binary they skip
//! with a notice, except under `CI=true`, where they panic so CI cannot silently skip them.
//!
//! **Limits Warren needs.** Warren batches many operations into one transaction (rebuilding
//! sessions and locks, fenced multi-key writes), so every member runs with
//! `--max-txn-ops 10000` (etcd's default is 128) and `--max-request-bytes 10485760`
//! (10 MiB; default 1.5 MiB). A production etcd serving Warren needs the same limits.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// Raft heartbeat in milliseconds. Loopback round trips are microseconds, so 50 ms (half
/// etcd's default) is ample, and it lets the election timeout below stay at 10× heartbeat
/// as etcd's tuning guide asks.
pub const HEARTBEAT_MS: u64 = 50;

/// Raft election timeout in milliseconds: a killed leader is replaced in well under a
/// second (default 1000 ms), yet it is long enough that a 2-core machine shared with a
/// parallel build does not starve a healthy leader into spurious elections.
pub const ELECTION_TIMEOUT_MS: u64 = 500;

/// Most operations Warren puts in one transaction (etcd default: 128).
pub const MAX_TXN_OPS: usize = 10_000;

/// Largest request Warren sends to etcd, in bytes (etcd default: 1.5 MiB).
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

/// How long a cluster (or a restarted member) may take to become healthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on every HTTP request made by this module.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a SIGTERMed member may take to exit before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Start attempts when another process grabs one of the ports we picked before etcd binds it.
const START_ATTEMPTS: usize = 3;

/// Lines of each member's log quoted in panic messages.
const LOG_TAIL_LINES: usize = 40;

/// Environment variable naming the `etcd` binary, checked before `PATH`.
pub const ETCD_BIN_ENV: &str = "WARREN_ETCD_BIN";

/// The `etcd` binary to use: `$WARREN_ETCD_BIN` if set, else `etcd` on `PATH`, else
/// `/usr/bin/etcd`; `None` if none of these is an existing file.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ETCD_BIN_ENV) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = PathBuf::from("/usr/bin/etcd");
        p.is_file().then_some(p)
    })
}

/// The `etcd` binary for a test that needs one. Without one: prints a skip notice and
/// returns `None` (the caller returns), unless `CI` is `true` (or `1`), in which case it
/// panics — tests that need etcd must fail, not skip, in CI.
pub fn require_etcd() -> Option<PathBuf> {
    decide_etcd(etcd_binary(), std::env::var("CI").ok().as_deref())
}

/// [`require_etcd`]'s decision, separated from the environment so it can be tested.
pub fn decide_etcd(found: Option<PathBuf>, ci: Option<&str>) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    let in_ci = ci.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    if in_ci {
        panic!(
            "etcd binary not found (looked at ${ETCD_BIN_ENV}, PATH and /usr/bin/etcd) and CI=true: \
             tests that need etcd must not be skipped in CI; install it with \
             `apt-get install -y etcd-server`"
        );
    }
    eprintln!(
        "SKIPPED: etcd binary not found (install `etcd-server` or set ${ETCD_BIN_ENV}); \
         this test needs a real etcd"
    );
    None
}

/// Evaluates to the `etcd` binary's path, or returns from the enclosing function (a test)
/// after [`etcd::require_etcd`](crate::etcd::require_etcd) printed its skip notice. Panics
/// under `CI=true` when etcd is missing.
#[macro_export]
macro_rules! require_etcd {
    () => {
        match $crate::etcd::require_etcd() {
            Some(bin) => bin,
            None => return,
        }
    };
}

/// One member's fixed identity: it keeps its ports and directory across restarts.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// `<cluster dir>/m{i}`: holds `data/` and `etcd.log`.
    dir: PathBuf,
    /// `None` while killed or stopped.
    child: Option<Child>,
}

impl Member {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
    fn client_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }
}

/// A running etcd cluster of real processes on loopback. Dropping it SIGKILLs every member
/// and deletes the data directories (a panicking test also gets each member's log tail on
/// stderr).
pub struct EtcdCluster {
    bin: PathBuf,
    members: Vec<Member>,
    /// `m0=http://…,m1=…`, fixed at creation.
    initial_cluster: String,
    token: String,
    /// `--max-txn-ops` and `--max-request-bytes` every member runs with.
    limits: (usize, usize),
    /// Owns every member directory; removed on drop.
    root: Option<tempfile::TempDir>,
}

impl EtcdCluster {
    /// Starts a cluster of `members` (usually 3, or 1) and returns once every member reports
    /// itself healthy. Panics (with each member's log tail) if etcd is missing or the cluster
    /// is not healthy within 30 s; call [`require_etcd`] first to skip politely instead.
    pub async fn start(members: usize) -> EtcdCluster {
        Self::start_with_limits(members, MAX_TXN_OPS, MAX_REQUEST_BYTES).await
    }

    /// [`EtcdCluster::start`] with other `--max-txn-ops` and `--max-request-bytes` than
    /// the ones Warren needs (to test a cell against a misconfigured etcd).
    pub async fn start_with_limits(
        members: usize,
        max_txn_ops: usize,
        max_request_bytes: usize,
    ) -> EtcdCluster {
        assert!(members >= 1, "an etcd cluster needs at least one member");
        let bin = etcd_binary().unwrap_or_else(|| {
            panic!("EtcdCluster::start: no etcd binary (call etcd::require_etcd() first)")
        });
        let mut last_failure = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let mut cluster = Self::spawn_all(&bin, members, (max_txn_ops, max_request_bytes));
            match cluster.wait_all_healthy().await {
                Ok(()) => return cluster,
                Err(failure) => {
                    let port_race = failure.contains("address already in use");
                    drop(cluster);
                    if port_race && attempt < START_ATTEMPTS {
                        last_failure = failure;
                        continue;
                    }
                    panic!("etcd cluster of {members} did not start: {failure}");
                }
            }
        }
        panic!("etcd cluster of {members} did not start after {START_ATTEMPTS} attempts: {last_failure}");
    }

    fn spawn_all(bin: &Path, count: usize, limits: (usize, usize)) -> EtcdCluster {
        let root = tempfile::Builder::new()
            .prefix("warren-etcd-")
            .tempdir()
            .expect("tempdir for etcd cluster");
        let ports = free_ports(2 * count);
        let members: Vec<Member> = (0..count)
            .map(|i| {
                let dir = root.path().join(format!("m{i}"));
                std::fs::create_dir_all(&dir).expect("create member dir");
                Member {
                    name: format!("m{i}"),
                    client_port: ports[2 * i],
                    peer_port: ports[2 * i + 1],
                    dir,
                    child: None,
                }
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            bin: bin.to_path_buf(),
            members,
            initial_cluster,
            token: unique_token(),
            limits,
            root: Some(root),
        };
        for i in 0..count {
            cluster.spawn_member(i, "new");
        }
        cluster
    }

    fn spawn_member(&mut self, i: usize, state: &str) {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.log_path())
            .expect("open member log");
        let log2 = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new(&self.bin);
        // An operator's ETCD_* variables would override or conflict with our flags.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        let client = m.client_url();
        let peer = m.peer_url();
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(m.data_dir())
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", &HEARTBEAT_MS.to_string()])
            .args(["--election-timeout", &ELECTION_TIMEOUT_MS.to_string()])
            .args(["--max-txn-ops", &self.limits.0.to_string()])
            .args(["--max-request-bytes", &self.limits.1.to_string()])
            // Pre-vote (default on from etcd 3.5) keeps a restarted or briefly cut-off
            // member from forcing a needless election when it rejoins.
            .arg("--pre-vote")
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.members[i].child = Some(child);
    }

    /// Waits until every running member answers `/health` with `"health":"true"`.
    async fn wait_all_healthy(&mut self) -> Result<(), String> {
        let all: Vec<usize> = (0..self.members.len()).collect();
        self.wait_healthy(&all).await
    }

    async fn wait_healthy(&mut self, which: &[usize]) -> Result<(), String> {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let mut pending: Vec<usize> = which.to_vec();
        loop {
            for &i in &pending {
                if let Some(child) = self.members[i].child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        self.members[i].child = None;
                        return Err(format!(
                            "member m{i} exited with {status}\n{}",
                            self.log_tails()
                        ));
                    }
                }
            }
            let mut still = Vec::new();
            for &i in &pending {
                if !is_healthy(&self.members[i].client_url()).await {
                    still.push(i);
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "members {pending:?} not healthy after {HEALTH_TIMEOUT:?}\n{}",
                    self.log_tails()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:P` of every member (killed ones included), in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// `http://127.0.0.1:P` of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    /// The client address of member `i` (for putting a [`Bridge`](crate::bridge::Bridge)
    /// in front of it).
    pub fn client_addr(&self, i: usize) -> SocketAddr {
        self.members[i].client_addr()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Whether member `i` has a process (not killed or stopped).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Member `i`'s process id while it runs (e.g. to SIGSTOP it and freeze a member).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().and_then(Child::id)
    }

    /// Member `i`'s log file (etcd's zap output).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.members[i].log_path()
    }

    /// SIGKILLs member `i` and waits until the process is gone. No-op if it is not running.
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await;
        }
    }

    /// Restarts member `i` (after [`kill`](Self::kill)) on its old data directory and ports
    /// with `--initial-cluster-state existing`, and waits until it reports healthy (which
    /// needs a quorum with a leader). Panics with its log tail if it does not within 30 s.
    pub async fn restart(&mut self, i: usize) {
        assert!(
            self.members[i].child.is_none(),
            "restart(m{i}): member is still running; kill it first"
        );
        self.spawn_member(i, "existing");
        if let Err(failure) = self.wait_healthy(&[i]).await {
            panic!("restarted member m{i} did not become healthy: {failure}");
        }
    }

    /// Index of the member that is the raft leader, if one is established: a running member
    /// whose own id is the leader reported by a majority of the cluster (so a deposed leader
    /// that still believes in itself is not reported). Each member is asked via
    /// `POST /v3/maintenance/status`.
    pub async fn leader(&self) -> Option<usize> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let url = m.client_url();
            tasks.spawn(async move { (i, member_status(&url).await.ok()) });
        }
        // (member index, own id, leader id it reports)
        let mut statuses = Vec::new();
        while let Some(res) = tasks.join_next().await {
            if let Ok((i, Some(s))) = res {
                statuses.push((i, s.0, s.1));
            }
        }
        let quorum = self.members.len() / 2 + 1;
        statuses.iter().find_map(|(i, id, _)| {
            let votes = statuses.iter().filter(|s| &s.2 == id).count();
            (votes >= quorum).then_some(*i)
        })
    }

    /// Polls [`leader`](Self::leader) until a leader is established; panics after `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader().await {
                return i;
            }
            if Instant::now() >= deadline {
                panic!("no etcd leader after {timeout:?}\n{}", self.log_tails());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERMs every member, waits for each to exit (SIGKILL after 10 s), and deletes the
    /// data directories.
    pub async fn stop(mut self) {
        for m in &mut self.members {
            if let Some(child) = m.child.as_ref() {
                if let Some(pid) = child.id() {
                    let _ = Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status()
                        .await;
                }
            }
        }
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                if tokio::time::timeout(STOP_TIMEOUT, child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.start_kill();
                    let _ = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await;
                }
            }
        }
        if let Some(root) = self.root.take() {
            let _ = root.close();
        }
    }

    /// The last lines of every member's log, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            out.push_str(&format!(
                "---- m{i} ({}) last {LOG_TAIL_LINES} log lines ----\n",
                m.log_path().display()
            ));
            out.push_str(&tail(&m.log_path(), LOG_TAIL_LINES));
        }
        out
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking && self.members.iter().any(|m| m.child.is_some()) {
            eprintln!("etcd cluster dropped during a panic:\n{}", self.log_tails());
        }
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.start_kill();
                // Reap (bounded) so the directory is not removed under a dying process.
                for _ in 0..100 {
                    if !matches!(child.try_wait(), Ok(None)) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

/// `n` distinct free loopback ports for etcd to bind, from [`crate::ports::free_port`]
/// (outside the ephemeral range; [`EtcdCluster::start`] still retries if another process
/// wins one).
fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| crate::ports::free_port()).collect()
}

fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "warren-test-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let all: Vec<&str> = s.lines().collect();
            let start = all.len().saturating_sub(lines);
            let mut out = all[start..].join("\n");
            out.push('\n');
            out
        }
        Err(e) => format!("(cannot read log: {e})\n"),
    }
}

async fn is_healthy(endpoint: &str) -> bool {
    match http_request(endpoint, "GET", "/health", None).await {
        Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("health")
                    .and_then(|h| h.as_str())
                    .map(|h| h == "true")
            })
            .unwrap_or(false),
        _ => false,
    }
}

/// `(own member id, leader id)` from `/v3/maintenance/status`. The gateway encodes uint64
/// fields as JSON strings.
async fn member_status(endpoint: &str) -> io::Result<(String, String)> {
    let v = post_json(endpoint, "/v3/maintenance/status", &serde_json::json!({})).await?;
    let id = json_str(&v["header"]["member_id"]);
    let leader = json_str(&v["leader"]);
    match (id, leader) {
        (Some(id), Some(leader)) if leader != "0" => Ok((id, leader)),
        _ => Err(io::Error::other(format!("no leader in status {v}"))),
    }
}

fn json_str(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Puts `key = value` through the v3 JSON gateway of `endpoint` (`http://127.0.0.1:P`).
pub async fn kv_put(endpoint: &str, key: &[u8], value: &[u8]) -> io::Result<()> {
    let body = serde_json::json!({ "key": base64_encode(key), "value": base64_encode(value) });
    post_json(endpoint, "/v3/kv/put", &body).await.map(|_| ())
}

/// Reads `key` (linearizably) through the v3 JSON gateway of `endpoint`; `None` if absent.
pub async fn kv_get(endpoint: &str, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let body = serde_json::json!({ "key": base64_encode(key) });
    let v = post_json(endpoint, "/v3/kv/range", &body).await?;
    let Some(kv) = v["kvs"].as_array().and_then(|kvs| kvs.first()) else {
        return Ok(None);
    };
    // An empty value is omitted by the gateway.
    let value = kv["value"].as_str().unwrap_or("");
    base64_decode(value)
        .map(Some)
        .ok_or_else(|| io::Error::other(format!("bad base64 value in {v}")))
}

/// POSTs `body` as JSON to the gateway path and parses the JSON answer; a non-200 status
/// (etcd errors such as "leader changed" come back as 5xx with a JSON body) is an error.
pub async fn post_json(
    endpoint: &str,
    path: &str,
    body: &serde_json::Value,
) -> io::Result<serde_json::Value> {
    let (status, text) = http_request(endpoint, "POST", path, Some(&body.to_string())).await?;
    if status != 200 {
        return Err(io::Error::other(format!(
            "POST {endpoint}{path}: HTTP {status}: {text}"
        )));
    }
    serde_json::from_str(&text)
        .map_err(|e| io::Error::other(format!("POST {endpoint}{path}: bad JSON ({e}): {text}")))
}

/// One HTTP/1.0 request over a fresh TCP connection (HTTP/1.0 so the server neither chunks
/// nor keeps the connection alive: the body is everything until EOF). Returns
/// `(status, body)`. Bounded by a 5 s timeout.
pub async fn http_request(
    endpoint: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> io::Result<(u16, String)> {
    let host = endpoint
        .strip_prefix("http://")
        .unwrap_or(endpoint)
        .trim_end_matches('/');
    let fut = async {
        let mut stream = TcpStream::connect(host).await?;
        let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body.unwrap_or(""));
        stream.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        Ok::<_, io::Error>(buf)
    };
    let raw = tokio::time::timeout(HTTP_TIMEOUT, fut)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{method} {endpoint}{path}"),
            )
        })??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("malformed HTTP response: {text}")))?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| io::Error::other(format!("malformed HTTP status line: {head}")))?;
    Ok((status, body.to_string()))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what the gateway expects for `bytes` fields).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on any invalid character.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
