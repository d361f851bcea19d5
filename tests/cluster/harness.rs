//! Starting a cell's replicas against an etcd cluster, finding the master, and a raw
//! protocol session that follows the master across replicas.

use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::{ErrorCode, WarrenError};
use warren_testkit::WarrenProcess;

/// The `warren` binary the processes run: this build's, or `WARREN_BIN` (to measure another
/// build the same way, as docs/performance.md does).
pub fn bin() -> &'static Path {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var_os("WARREN_BIN")
            .map(Into::into)
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_warren").into())
    })
}

/// A loopback port for a child to bind (outside the ephemeral range; see `testkit::ports`).
pub use warren_testkit::free_port;

/// The replicas of one cell, each on a fixed port (kept across restarts).
pub struct Replicas {
    pub addrs: Vec<String>,
    pub procs: Vec<Option<WarrenProcess>>,
    /// etcd endpoints each replica is given (may differ: a replica behind a bridge).
    pub etcd: Vec<String>,
    pub extra: Vec<String>,
    /// `--advertise` of each replica (e.g. a bridge in front of it), if any.
    pub advertise: Vec<Option<String>>,
}

impl Replicas {
    /// Starts `n` replicas of cell `c0`, replica `i` talking to etcd through `etcd[i]`.
    pub async fn start(etcd: Vec<String>, extra: &[&str]) -> Replicas {
        let mut r = Replicas::new(etcd, extra);
        for i in 0..r.etcd.len() {
            r.start_one(i).await;
        }
        r
    }

    /// Plans the replicas without starting any.
    pub fn new(etcd: Vec<String>, extra: &[&str]) -> Replicas {
        let addrs: Vec<String> = etcd
            .iter()
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        Replicas {
            addrs,
            procs: etcd.iter().map(|_| None).collect(),
            advertise: etcd.iter().map(|_| None).collect(),
            etcd,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub async fn start_one(&mut self, i: usize) {
        let p = self.spawn(i).await;
        self.procs[i] = Some(p);
    }

    async fn spawn(&self, i: usize) -> WarrenProcess {
        let replica = format!("r{i}");
        let mut args = vec![
            "cell",
            "--store",
            "etcd",
            "--etcd",
            &self.etcd[i],
            "--name",
            "c0",
            "--replica",
            &replica,
            "--listen",
            &self.addrs[i],
        ];
        if let Some(a) = &self.advertise[i] {
            args.extend(["--advertise", a.as_str()]);
        }
        args.extend(self.extra.iter().map(String::as_str));
        WarrenProcess::spawn(bin(), &args).await
    }

    pub async fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.kill9().await;
        }
    }

    /// Which replica is master and serving (and its epoch), waiting up to `timeout`.
    pub async fn master(&self, timeout: Duration) -> (usize, u64) {
        let deadline = Instant::now() + timeout;
        loop {
            for (i, a) in self.addrs.iter().enumerate() {
                if self.procs[i].is_none() {
                    continue;
                }
                if let Some(l) = locate(a).await {
                    if l.is_master && l.serving {
                        return (i, l.epoch);
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no replica became a serving master within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn locate(addr: &str) -> Option<pb::LocateResponse> {
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_millis(300));
    let ch = tokio::time::timeout(Duration::from_millis(500), ep.connect())
        .await
        .ok()?
        .ok()?;
    let mut c = WarrenClient::new(ch);
    let r = tokio::time::timeout(
        Duration::from_millis(500),
        c.locate(pb::LocateRequest::default()),
    )
    .await
    .ok()?
    .ok()?;
    Some(r.into_inner())
}

pub fn werr(st: &tonic::Status) -> Option<WarrenError> {
    WarrenError::from_status(st)
}

/// A raw session that follows the master across replicas: on a transport error or
/// `NOT_MASTER` it finds the master again; on `STALE_EPOCH` it adopts the epoch and
/// acknowledges its fail-over event; `FAILOVER_IN_PROGRESS` is retried.
pub struct Raw {
    pub addrs: Vec<String>,
    pub client: WarrenClient<Channel>,
    pub ctx: pb::SessionContext,
    pub acked: u64,
    pub failovers: u32,
}

impl Raw {
    pub async fn connect(addrs: &[String]) -> Raw {
        let client = find_master(addrs, Duration::from_secs(30)).await;
        let mut raw = Raw {
            addrs: addrs.to_vec(),
            client,
            ctx: pb::SessionContext::default(),
            acked: 0,
            failovers: 0,
        };
        let s = raw
            .call(|mut c, _| async move {
                c.create_session(pb::CreateSessionRequest {
                    principal: String::new(),
                    proxy: false,
                })
                .await
            })
            .await
            .unwrap();
        raw.ctx = pb::SessionContext {
            session_id: s.session_id,
            secret: s.secret,
            epoch: s.epoch,
            map_epoch: 0,
            ..Default::default()
        };
        raw
    }

    /// Runs a call with the retry rules above, for up to 30 s.
    pub async fn call<T, F, Fut>(&mut self, f: F) -> Result<T, tonic::Status>
    where
        F: Fn(WarrenClient<Channel>, Option<pb::SessionContext>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ctx = (!self.ctx.session_id.is_empty()).then(|| self.ctx.clone());
            let r = tokio::time::timeout(Duration::from_secs(5), f(self.client.clone(), ctx)).await;
            let st = match r {
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Ok(Err(st)) => st,
                Err(_) => tonic::Status::unavailable("timed out"),
            };
            assert!(Instant::now() < deadline, "call kept failing: {st:?}");
            match werr(&st).map(|e| (e.code, e.epoch)) {
                Some((ErrorCode::StaleEpoch, epoch)) => {
                    self.ctx.epoch = epoch;
                    self.acked = 0;
                    self.failovers += 1;
                    self.ack_failover().await;
                }
                Some((ErrorCode::FailoverInProgress, _)) => {
                    self.ack_failover().await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some((ErrorCode::NotMaster, _)) | None => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.client = find_master(&self.addrs, Duration::from_secs(30)).await;
                }
                Some(_) => return Err(st),
            }
        }
    }

    /// `Open` with the retry rules of [`Raw::call`].
    pub async fn open(
        &mut self,
        path: &str,
        intent: u32,
        create: Option<pb::CreateSpec>,
        read: bool,
    ) -> Result<pb::OpenResponse, tonic::Status> {
        let path = path.to_string();
        self.call(move |mut c, ctx| {
            let r = pb::OpenRequest {
                target: 0,
                ctx,
                path: path.clone(),
                intent,
                events: 0,
                lock_delay_ms: 0,
                create: create.clone(),
                read,
            };
            async move { c.open(r).await }
        })
        .await
    }

    /// Reads pending events without waiting and acknowledges them (the fail-over event).
    async fn ack_failover(&mut self) {
        if self.ctx.session_id.is_empty() {
            return;
        }
        let mut c = self.client.clone();
        let req = pb::KeepAliveRequest {
            ctx: Some(self.ctx.clone()),
            ack_seq: self.acked,
            ..Default::default()
        };
        // A session with nothing pending is held; a short timeout is enough to see events.
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(300), c.keep_alive(req)).await
        {
            if let Some(last) = r.into_inner().events.last() {
                self.acked = last.seq;
                let mut c = self.client.clone();
                let ack = pb::KeepAliveRequest {
                    ctx: Some(self.ctx.clone()),
                    ack_seq: self.acked,
                    ..Default::default()
                };
                tokio::spawn(async move { c.keep_alive(ack).await });
            }
        }
    }

    /// Keeps the session alive in the background (acknowledging everything).
    pub fn keep_alive_loop(&self) -> tokio::task::JoinHandle<()> {
        let mut me = Raw {
            addrs: self.addrs.clone(),
            client: self.client.clone(),
            ctx: self.ctx.clone(),
            acked: self.acked,
            failovers: 0,
        };
        tokio::spawn(async move {
            for _ in 0..100_000 {
                let ack = me.acked;
                let r = me
                    .call(|mut c, ctx| async move {
                        c.keep_alive(pb::KeepAliveRequest {
                            ctx,
                            ack_seq: ack,
                            ..Default::default()
                        })
                        .await
                    })
                    .await;
                match r {
                    Ok(r) => {
                        if let Some(last) = r.events.last() {
                            me.acked = last.seq;
                        }
                    }
                    Err(_) => return,
                }
            }
        })
    }
}

/// A client connected to whichever replica is the serving master.
pub async fn find_master(addrs: &[String], timeout: Duration) -> WarrenClient<Channel> {
    let deadline = Instant::now() + timeout;
    loop {
        for a in addrs {
            if let Some(l) = locate(a).await {
                if l.is_master {
                    if let Ok(c) = WarrenClient::connect(format!("http://{a}")).await {
                        return c;
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no master among {addrs:?} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn file(contents: &[u8], ephemeral: bool) -> Option<pb::CreateSpec> {
    Some(pb::CreateSpec {
        instance: 0,
        kind: pb::NodeKind::File as i32,
        ephemeral,
        initial_contents: contents.to_vec(),
        acl: None,
        exclusive: false,
    })
}
