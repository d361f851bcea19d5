//! How the suite reaches a deployment, and a raw protocol client for the tests that must
//! control exactly what goes on the wire (a session that never acknowledges, forged
//! handles, garbage bytes).

use std::time::Duration;
use tonic::transport::Channel;
use warren_client::{ClientOptions, Session};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_testkit::{Cell, Deployment, Proxy, TestCell, TestProxy};

/// With `WARREN_SUITE_TLS=1` the suite runs over mutual TLS (docs/security.md): before
/// the first deployment starts, the test process installs a server certificate
/// ([`warren_testkit::TEST_SERVER_PRINCIPAL`], the cells' proxy principal) as its identity,
/// so every in-process cell and proxy serves TLS with it; every client, the library's
/// sessions and the raw clients of [`connect`] alike, dials with a certificate of its own
/// principal ([`client_tls`]: `warren:suite`, or the one a test asks for with
/// [`TargetIn::session_as`]), which is not a proxy. Meant for one test per process
/// (cargo-nextest, as `.ci/run` uses), or a filter whose every test starts with a
/// [`TargetIn`]: a server started before the install would be plaintext.
fn suite_certs() -> Option<&'static warren_testkit::certs::TestCerts> {
    static CERTS: std::sync::OnceLock<Option<warren_testkit::certs::TestCerts>> =
        std::sync::OnceLock::new();
    CERTS
        .get_or_init(|| {
            if !std::env::var("WARREN_SUITE_TLS").is_ok_and(|v| v == "1") {
                return None;
            }
            // The certificates' directory lives as long as the process.
            let certs = warren_testkit::certs::TestCerts::new();
            let files = certs.issue("server", warren_testkit::TEST_SERVER_PRINCIPAL);
            warren_tls::install(
                warren_tls::Tls::load(files).expect("load the suite's server certificate"),
            );
            Some(certs)
        })
        .as_ref()
}

fn tls_if_asked() {
    suite_certs();
}

/// Under TLS, the client identity of `principal` (one certificate per principal, made on
/// first use).
pub fn client_tls(principal: &str) -> Option<std::sync::Arc<warren_tls::Tls>> {
    type Issued = std::collections::HashMap<String, std::sync::Arc<warren_tls::Tls>>;
    static ISSUED: std::sync::Mutex<Option<Issued>> = std::sync::Mutex::new(None);
    let certs = suite_certs()?;
    let mut issued = ISSUED.lock().unwrap();
    let issued = issued.get_or_insert_with(Default::default);
    let tls = issued.entry(principal.to_string()).or_insert_with(|| {
        let name = format!("client-{}", issued_name(principal));
        warren_tls::Tls::load(certs.issue(&name, principal)).expect("load a client certificate")
    });
    Some(tls.clone())
}

/// A file name for `principal`'s certificate.
fn issued_name(principal: &str) -> String {
    principal
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A channel to `addr` (`HOST:PORT`), over TLS as `warren:suite` when the suite runs over
/// TLS.
pub async fn connect(addr: &str) -> Channel {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("an address");
    let tls = client_tls("warren:suite");
    warren_client::transport::connect_endpoint_as(&endpoint, tls.as_ref())
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// How the suite reaches the deployment.
pub mod mode {
    /// One cell, straight.
    pub const DIRECT: u8 = 0;
    /// One cell behind one proxy.
    pub const PROXY: u8 = 1;
    /// A partitioned deployment: a meta cell and three data cells, behind one proxy that
    /// routes by the partition map (docs/design.md §11).
    pub const CELLS3_PROXY: u8 = 2;
    /// The same partitioned deployment, the client library routing by the map itself
    /// (direct mode, [`warren_client::ClientOptions::meta`]).
    pub const CELLS3_DIRECT: u8 = 3;
}

/// A deployment under test, reached as `MODE` says ([`mode`]). The suite runs once per
/// mode with the same assertions (`direct::…`, `via_proxy::…`, `cells3_via_proxy::…`):
/// neither a proxy nor partitioning may change anything a client can observe (docs/design.md §10,
/// §7).
pub struct TargetIn<const MODE: u8> {
    pub cell: Option<TestCell>,
    pub proxy: Option<TestProxy>,
    pub deployment: Option<Deployment>,
    /// `WARREN_SUITE_RESTORED`: the direct mode's cell, restored from a backup of another
    /// store kind ([`restored::Restored`]).
    pub restored: Option<restored::Restored>,
}

impl<const MODE: u8> TargetIn<MODE> {
    /// default timings.
    pub async fn start() -> Self {
        Self::build(None).await
    }

    /// A short lease, for tests that wait on lease expiry. Through a proxy the proxy
    /// grants clients that lease, and the cells grant the proxy a lease that nests it.
    pub async fn short_lease(lease: Duration) -> Self {
        Self::build(Some(lease)).await
    }

    async fn build(lease: Option<Duration>) -> Self {
        tls_if_asked();
        let proxy_lease = |l: Duration| l * 2 + Duration::from_secs(1);
        if MODE == mode::CELLS3_PROXY || MODE == mode::CELLS3_DIRECT {
            let proxies = usize::from(MODE == mode::CELLS3_PROXY);
            let mut b = Deployment::builder().cells(3).proxies(proxies);
            if let Some(l) = lease {
                b = b
                    .lease(l)
                    .proxy_lease(proxy_lease(l))
                    .claim_window(l * 2)
                    .client_lease(l);
            }
            return TargetIn {
                cell: None,
                proxy: None,
                deployment: Some(b.run().await),
                restored: None,
            };
        }
        if MODE == mode::DIRECT {
            if let Some(direction) = restored::direction() {
                return TargetIn {
                    cell: None,
                    proxy: None,
                    deployment: None,
                    restored: Some(restored::Restored::start(direction, lease).await),
                };
            }
        }
        let mut c = Cell::builder();
        if let Some(l) = lease {
            c = c.lease(l).proxy_lease(proxy_lease(l)).claim_window(l * 2);
        }
        let cell = c.run().await;
        let proxy = if MODE == mode::PROXY {
            let mut b = Proxy::builder().front(&cell);
            if let Some(l) = lease {
                b = b.client_lease(l);
            }
            Some(b.run().await)
        } else {
            None
        };
        TargetIn {
            cell: Some(cell),
            proxy,
            deployment: None,
            restored: None,
        }
    }

    /// The address clients are given: the proxy's, or the cell's; in direct mode over a
    /// partitioned deployment, the meta cell's.
    pub fn addr(&self) -> String {
        if let Some(r) = &self.restored {
            return r.cell.addr();
        }
        match (&self.deployment, &self.proxy, &self.cell) {
            (Some(d), _, _) if MODE == mode::CELLS3_DIRECT => d.meta().addr(),
            (Some(d), _, _) => d.proxy_addrs()[0].clone(),
            (None, Some(p), _) => p.addr(),
            (None, None, Some(c)) => c.addr(),
            (None, None, None) => unreachable!("a target has a cell or a deployment"),
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        vec![self.addr()]
    }

    fn options(&self) -> ClientOptions {
        if MODE == mode::CELLS3_DIRECT {
            ClientOptions::meta(self.endpoints())
        } else {
            ClientOptions::new(self.endpoints())
        }
    }

    /// The options of a session acting for `principal` (`None`: the default), with that
    /// principal's certificate when the suite runs over TLS.
    fn options_as(&self, principal: Option<&str>) -> ClientOptions {
        let mut o = self.options();
        if let Some(p) = principal {
            o = o.principal(p);
        }
        match client_tls(principal.unwrap_or("warren:suite")) {
            Some(tls) => o.tls(tls),
            None => o,
        }
    }

    pub async fn session(&self) -> Session {
        Session::connect_with(self.options_as(None))
            .await
            .expect("connect")
    }

    pub async fn session_as(&self, principal: &str) -> Session {
        Session::connect_with(self.options_as(Some(principal)))
            .await
            .expect("connect")
    }

    /// A raw protocol session. In direct mode over a partitioned deployment there is no
    /// router in between: it talks to the cell holding the deployment root's children
    /// (the raw tests use `/ls/local/<name>` paths), with the map epoch set.
    pub async fn raw(&self) -> Raw {
        match &self.deployment {
            Some(d) if MODE == mode::CELLS3_DIRECT => {
                let map = d.map();
                let warren_router::Route::Cell { cell, .. } =
                    map.route("/ls/local/f", false).expect("route")
                else {
                    unreachable!("/ls/local/f is not reserved")
                };
                let addr = map.replicas(cell).expect("replicas")[0].clone();
                let mut raw = Raw::connect(&addr).await;
                raw.ctx.map_epoch = map.map_epoch();
                raw
            }
            _ => Raw::connect(&self.addr()).await,
        }
    }
}

/// A bare protocol session: nothing happens unless the test sends it.
pub struct Raw {
    pub client: WarrenClient<Channel>,
    pub ctx: pb::SessionContext,
    /// The lease CreateSession granted (a proxy may grant less than its client lease:
    /// docs/design.md §10, "A dead proxy").
    pub lease: std::time::Duration,
}

impl Raw {
    pub async fn connect(addr: &str) -> Raw {
        let mut client = WarrenClient::new(connect(addr).await);
        let s = client
            .create_session(pb::CreateSessionRequest {
                principal: String::new(),
                proxy: false,
            })
            .await
            .expect("create session")
            .into_inner();
        Raw {
            client,
            lease: std::time::Duration::from_millis(s.lease_ms),
            ctx: pb::SessionContext {
                session_id: s.session_id,
                secret: s.secret,
                epoch: s.epoch,
                map_epoch: 0,
                ..Default::default()
            },
        }
    }

    pub fn ctx(&self) -> Option<pb::SessionContext> {
        Some(self.ctx.clone())
    }

    pub async fn open(
        &mut self,
        path: &str,
        intent: u32,
        create: Option<pb::CreateSpec>,
    ) -> Result<pb::OpenResponse, tonic::Status> {
        self.client
            .open(pb::OpenRequest {
                target: 0,
                ctx: self.ctx(),
                path: path.to_string(),
                intent,
                events: 0,
                lock_delay_ms: 0,
                create,
                read: false,
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn read(
        &mut self,
        handle: &[u8],
    ) -> Result<pb::GetContentsAndStatResponse, tonic::Status> {
        self.client
            .get_contents_and_stat(pb::GetContentsAndStatRequest {
                ctx: self.ctx(),
                handle: handle.to_vec(),
            })
            .await
            .map(|r| r.into_inner())
    }
}

pub fn file_spec(contents: &[u8]) -> Option<pb::CreateSpec> {
    Some(pb::CreateSpec {
        instance: 0,
        kind: pb::NodeKind::File as i32,
        ephemeral: false,
        initial_contents: contents.to_vec(),
        acl: None,
        exclusive: false,
    })
}

/// The Warren error code of a failed call.
pub fn code<T: std::fmt::Debug>(r: Result<T, warren_client::Error>) -> warren_client::ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().unwrap_or_else(|| panic!("no error code in {e}")),
    }
}

/// The Warren error code of a failed raw call.
pub fn raw_code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> warren_proto::ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => {
            warren_proto::WarrenError::from_status(&s)
                .unwrap_or_else(|| panic!("status without a Warren detail: {s:?}"))
                .code
        }
    }
}

/// `map` with `slot` given to cell `to`, one epoch newer.
pub fn map_moving(
    map: &warren_router::PartitionMap,
    slot: u32,
    to: &str,
) -> warren_router::PartitionMap {
    let mut owners = map.slot_owners().to_vec();
    owners[slot as usize] = to.to_string();
    warren_router::PartitionMap::new(
        map.deployment(),
        map.map_epoch() + 1,
        owners,
        map.cells().clone(),
    )
    .expect("a valid map")
}

/// A `warren.v1.Reshard` client at the master of data cell `name`.
async fn reshard_at(
    d: &Deployment,
    name: &str,
) -> pb::reshard_client::ReshardClient<tonic::transport::Channel> {
    let cell = d
        .cell(name)
        .unwrap_or_else(|| panic!("no data cell {name}"));
    pb::reshard_client::ReshardClient::connect(format!("http://{}", cell.addr()))
        .await
        .unwrap_or_else(|e| panic!("connect to cell {name}'s Reshard service: {e}"))
}

/// Moves `slot` from data cell `from` to data cell `to` of `d` the way a reshard job does
/// (docs/design.md §12, docs/resharding.md), by driving the cells' `warren.v1.Reshard`
/// calls directly: a full copy (`ExportSlots` at `from` → `ImportSlots` at `to`), a
/// catch-up round by digests, `FreezeSlots` at `from`, the final round, `HandOffSlots` at
/// `from` with the digest `to` confirmed (the commit point), the new map (epoch + 1, the
/// slot to `to`) written and loaded by every data cell and proxy, and `DropSlots` at
/// `from`. Returns the new map. Panics naming the step that failed.
pub async fn move_slot(
    d: &Deployment,
    slot: u32,
    from: &str,
    to: &str,
) -> warren_router::PartitionMap {
    const JOB: &str = "test-move";
    let mut src = reshard_at(d, from).await;
    let dst = reshard_at(d, to).await;
    let slots = vec![slot];
    // One copy round against what the target has: returns (its digests, the source's
    // digest, the target's digest).
    let round = |mut src: pb::reshard_client::ReshardClient<Channel>,
                 mut dst: pb::reshard_client::ReshardClient<Channel>,
                 have: Vec<u8>,
                 step: &'static str| {
        let slots = slots.clone();
        async move {
            let mut have = have;
            loop {
                let export = src
                    .export_slots(pb::ExportSlotsRequest {
                        job: JOB.into(),
                        slots: slots.clone(),
                        have: have.clone(),
                        max_bytes: 0,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{step}: ExportSlots at the source: {e}"))
                    .into_inner();
                let import = dst
                    .import_slots(pb::ImportSlotsRequest {
                        job: JOB.into(),
                        slots: slots.clone(),
                        bundle: export.bundle,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{step}: ImportSlots at the target: {e}"))
                    .into_inner();
                have = import.have;
                if !export.more {
                    return (have, export.digest, import.digest);
                }
            }
        }
    };
    let (have, _, _) = round(src.clone(), dst.clone(), Vec::new(), "copy").await;
    let (have, _, _) = round(src.clone(), dst.clone(), have, "catch-up").await;
    src.freeze_slots(pb::FreezeSlotsRequest {
        job: JOB.into(),
        slots: slots.clone(),
        timeout_ms: 10_000,
    })
    .await
    .unwrap_or_else(|e| panic!("FreezeSlots at the source: {e}"));
    let (_, source_digest, digest) = round(src.clone(), dst.clone(), have, "final copy").await;
    assert_eq!(
        source_digest, digest,
        "the final copy at the target differs from the frozen source"
    );
    let map = map_moving(&d.map(), slot, to);
    let handed = src
        .hand_off_slots(pb::HandOffSlotsRequest {
            job: JOB.into(),
            slots: slots.clone(),
            to: to.into(),
            map_epoch: map.map_epoch(),
            digest,
        })
        .await
        .unwrap_or_else(|e| panic!("HandOffSlots at the source: {e}"))
        .into_inner();
    assert!(handed.handed_off, "hand-off refused: {}", handed.reason);
    d.write_map(&map).await;
    d.wait_for_map(map.map_epoch()).await;
    src.drop_slots(pb::DropSlotsRequest {
        job: JOB.into(),
        slots,
        map_epoch: map.map_epoch(),
    })
    .await
    .unwrap_or_else(|e| panic!("DropSlots at the source: {e}"));
    map
}

/// Under `WARREN_SUITE_TLS=1`, the deployments really are TLS: a plaintext client is
/// refused with the fix, while the suite's own connections work. (Without it: plaintext.)
#[tokio::test]
async fn the_suite_over_tls_is_over_tls() {
    let t = TargetIn::<{ mode::PROXY }>::start().await;
    let tls = std::env::var("WARREN_SUITE_TLS").is_ok_and(|v| v == "1");
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", t.addr()))
        .unwrap()
        .connect()
        .await
        .expect("a TCP connection");
    let answer = WarrenClient::new(plain)
        .locate(pb::LocateRequest::default())
        .await;
    match answer {
        Ok(_) => assert!(!tls, "a plaintext client was served over TLS"),
        Err(status) => {
            assert!(tls, "plaintext refused without TLS: {status}");
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
            assert!(status.message().contains("requires mutual TLS"), "{status}");
        }
    }
    let mut ours = WarrenClient::new(connect(&t.addr()).await);
    ours.locate(pb::LocateRequest::default())
        .await
        .expect("the suite's own connection works");
}

/// `WARREN_SUITE_RESTORED=etcd-to-embedded|embedded-to-etcd` (docs/backup.md, "Migrate
/// between stores"): the direct mode's cell is a real `warren cell` process on one store,
/// seeded, backed up by its master (`warren ctl backup now`), stopped, restored with
/// `warren cell restore` into the other store kind, and started there; the test then runs
/// against the restored cell. Not combined with `WARREN_SUITE_TLS`.
pub mod restored {
    use std::time::Duration;
    use warren_client::{OpenOptions, Session};
    use warren_testkit::{EtcdCluster, WarrenProcess};

    /// Which way the store changes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Direction {
        EtcdToEmbedded,
        EmbeddedToEtcd,
    }

    /// The direction `WARREN_SUITE_RESTORED` asks for; anything else set is an error.
    pub fn direction() -> Option<Direction> {
        match std::env::var("WARREN_SUITE_RESTORED").ok()?.as_str() {
            "" => None,
            "etcd-to-embedded" => Some(Direction::EtcdToEmbedded),
            "embedded-to-etcd" => Some(Direction::EmbeddedToEtcd),
            other => {
                panic!("WARREN_SUITE_RESTORED={other:?}: use etcd-to-embedded or embedded-to-etcd")
            }
        }
    }

    /// The restored cell and what it runs on.
    pub struct Restored {
        pub cell: WarrenProcess,
        _etcd: EtcdCluster,
        _dir: tempfile::TempDir,
    }

    fn bin() -> &'static std::path::Path {
        std::path::Path::new(env!("CARGO_BIN_EXE_warren"))
    }

    async fn warren(args: &[&str]) -> std::process::Output {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(bin()).args(args).output(),
        )
        .await
        .unwrap_or_else(|_| panic!("warren {args:?} did not finish in 60 s"))
        .expect("run warren");
        assert!(
            out.status.success(),
            "warren {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A session at `addr` once a master serves there (an etcd replica prints `ready`
    /// before its first election is won).
    async fn connect(addr: &str) -> Session {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match Session::connect(&[addr.to_owned()]).await {
                Ok(s) => return s,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    panic!("no master at {addr} within 30 s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    impl Restored {
        pub async fn start(direction: Direction, lease: Option<Duration>) -> Restored {
            assert!(
                warren_testkit::etcd::require_etcd().is_some(),
                "WARREN_SUITE_RESTORED needs etcd (Debian's etcd-server)"
            );
            let etcd = EtcdCluster::start(1).await;
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("backups");
            let dest = dest.to_str().unwrap();
            let data = dir.path().join("data");
            let data = data.to_str().unwrap();
            let etcd_url = etcd.endpoints().join(",");
            let ops = warren_testkit::etcd::MAX_TXN_OPS.to_string();
            let embedded = vec!["--data", data];
            let on_etcd = vec![
                "--store",
                "etcd",
                "--etcd",
                &etcd_url,
                "--replica",
                "r1",
                "--etcd-max-txn-ops",
                &ops,
            ];
            let (from, to) = match direction {
                Direction::EtcdToEmbedded => (&on_etcd, &embedded),
                Direction::EmbeddedToEtcd => (&embedded, &on_etcd),
            };
            // The lease flags of the in-process cells (TargetIn::build).
            let timings: Vec<String> = match lease {
                Some(l) => vec![
                    format!("--lease={}ms", l.as_millis()),
                    format!(
                        "--proxy-lease={}ms",
                        (l * 2 + Duration::from_secs(1)).as_millis()
                    ),
                    format!("--claim-window={}ms", (l * 2).as_millis()),
                ],
                None => Vec::new(),
            };
            let reply_before_end = lease
                .map(|l| (l / 4).min(Duration::from_secs(1)))
                .unwrap_or(Duration::from_secs(1));
            let reply_before_end = format!("{}ms", reply_before_end.as_millis());
            let spawn = |store: &Vec<&str>, backup: bool| {
                let mut args = vec!["cell", "--name", "c0", "--listen", "127.0.0.1:0"];
                args.extend(store.iter().copied());
                args.extend(timings.iter().map(String::as_str));
                if backup {
                    args.extend(["--backup-dest", dest]);
                }
                let env = [(
                    "WARREN_KEEPALIVE_REPLY_BEFORE_END",
                    reply_before_end.as_str(),
                )];
                let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
                async move {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    WarrenProcess::spawn_env(bin(), &args, &env).await
                }
            };
            let mut source = spawn(from, true).await;
            // Seed a file (in the ACL directory: the suite's tests expect the root to hold
            // nothing else), then close the session so the restored cell has none to wait
            // for.
            let s = connect(&source.addr()).await;
            let (f, _) = s
                .open(
                    "/acl/restored-seed",
                    OpenOptions::new()
                        .write()
                        .create_file(b"from a backup".to_vec()),
                )
                .await
                .unwrap();
            f.close().await;
            s.close().await.unwrap();
            warren(&["ctl", "--endpoint", &source.addr(), "backup", "now"]).await;
            source.kill9().await;
            let mut restore = vec!["cell", "restore", "--from", dest];
            restore.extend(to.iter().copied());
            warren(&restore).await;
            let cell = spawn(to, false).await;
            let check = connect(&cell.addr()).await;
            let (f, info) = check
                .open(
                    "/acl/restored-seed",
                    OpenOptions::new().read().read_contents(),
                )
                .await
                .expect("the seeded file was restored");
            assert_eq!(info.contents.as_deref(), Some(&b"from a backup"[..]));
            assert!(
                info.stat.content_generation >= 1 << 40,
                "generations jumped"
            );
            f.close().await;
            check.close().await.unwrap();
            Restored {
                cell,
                _etcd: etcd,
                _dir: dir,
            }
        }
    }
}
