//! The async layer around [`Master`]: the gRPC service, the group-commit writer that makes
//! every change durable before anyone sees it, the ticker that drives time, and
//! [`run`], the one entry point (`run(listener, options, shutdown)`, like mini-redis).
//!
//! Ordering rule: every reply waits until the store has made durable all changes the
//! master had applied when the reply was produced. Changes are handed to the writer in
//! the master's critical section, so they commit in the order they were applied; the
//! writer batches whatever has queued up into one transaction (group commit).

use crate::admin;
use crate::core::{CoreConfig, Master, Reply, WaiterId, Wake};
use crate::edge;
use crate::store::{Mutation, Store, StoreError};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use warren_proto::pb;
use warren_proto::pb::warren_server::{Warren, WarrenServer};
use warren_proto::WarrenError;

/// How a cell runs.
#[derive(Clone, Debug)]
pub struct CellOptions {
    pub core: CoreConfig,
    /// Address clients should be told to use (Locate); defaults to the listener's address.
    pub advertise: Option<String>,
    /// How often time-driven work runs (KeepAlive replies, expiry, lock timeouts).
    pub tick: Duration,
}

impl CellOptions {
    pub fn new(core: CoreConfig) -> Self {
        CellOptions {
            core,
            advertise: None,
            tick: Duration::from_millis(50),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Startup(String),
    #[error("serving gRPC failed: {0}")]
    Serve(String),
}

#[derive(Clone, Debug, Default)]
struct Durable {
    seq: u64,
    failed: Option<String>,
}

type WakeTx = oneshot::Sender<Result<(Wake, u64), Status>>;

struct State {
    master: Master,
    waiters: HashMap<WaiterId, WakeTx>,
    /// Sequence number of the last batch of mutations handed to the writer.
    applied: u64,
    closing: bool,
}

/// Shared by the service, the ticker and the admin endpoint.
pub(crate) struct Shared {
    state: Mutex<State>,
    writer: mpsc::UnboundedSender<(u64, Vec<Mutation>)>,
    durable: watch::Receiver<Durable>,
    pub(crate) advertise: String,
    pub(crate) store_kind: &'static str,
}

/// A snapshot for `/status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CellStatus {
    pub name: String,
    pub deployment: String,
    pub epoch: u64,
    pub role: &'static str,
    pub master: String,
    pub store: &'static str,
    pub sessions: usize,
    pub nodes: usize,
    pub handles: usize,
    pub held_locks: usize,
}

impl State {
    /// Hands the master's output on: mutations to the writer, wakes to their waiters.
    /// Returns the sequence number replies must wait for.
    fn flush(&mut self, writer: &mpsc::UnboundedSender<(u64, Vec<Mutation>)>) -> u64 {
        let out = self.master.take_output();
        if !out.mutations.is_empty() {
            self.applied += 1;
            // A send error means the writer stopped after a store failure; replies then
            // fail in `wait_durable`.
            let _ = writer.send((self.applied, out.mutations));
        }
        for (w, wake) in out.wakes {
            if let Some(tx) = self.waiters.remove(&w) {
                let _ = tx.send(Ok((wake, self.applied)));
            }
        }
        self.applied
    }
}

enum Outcome<T> {
    Done(T),
    Woken(Wake),
}

/// Cancels a parked operation whose caller went away.
struct CancelGuard<'a> {
    shared: &'a Shared,
    waiter: Option<WaiterId>,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.waiter.take() {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            st.waiters.remove(&w);
            st.master.cancel(w);
            st.flush(&self.shared.writer);
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn wait_durable(&self, seq: u64) -> Result<(), Status> {
        let mut rx = self.durable.clone();
        let r = rx.wait_for(|d| d.seq >= seq || d.failed.is_some()).await;
        match r {
            Ok(d) if d.seq >= seq => Ok(()),
            Ok(d) => Err(WarrenError::internal(format!(
                "the cell's store failed and the cell is stopping: {}",
                d.failed.clone().unwrap_or_default()
            ))
            .into()),
            Err(_) => Err(WarrenError::internal("the cell's store writer stopped").into()),
        }
    }

    /// Runs `f` on the master; replies only once its effects are durable.
    async fn run<T>(
        &self,
        f: impl FnOnce(&mut Master, Instant) -> Result<T, WarrenError>,
    ) -> Result<T, Status> {
        let (r, seq) = {
            let mut st = self.lock();
            if st.closing {
                return Err(WarrenError::not_master("").into());
            }
            let r = f(&mut st.master, Instant::now());
            (r, st.flush(&self.writer))
        };
        self.wait_durable(seq).await?;
        r.map_err(Status::from)
    }

    /// Like [`Shared::run`], for operations that may park.
    async fn run_parked<T>(
        &self,
        f: impl FnOnce(&mut Master, Instant) -> Result<Reply<T>, WarrenError>,
    ) -> Result<Outcome<T>, Status> {
        let (r, seq, rx) = {
            let mut st = self.lock();
            if st.closing {
                return Err(WarrenError::not_master("").into());
            }
            let r = f(&mut st.master, Instant::now());
            let mut rx = None;
            if let Ok(Reply::Wait(w)) = &r {
                let (tx, r) = oneshot::channel();
                st.waiters.insert(*w, tx);
                rx = Some((*w, r));
            }
            (r, st.flush(&self.writer), rx)
        };
        match r {
            Err(e) => {
                self.wait_durable(seq).await?;
                Err(e.into())
            }
            Ok(Reply::Done(t)) => {
                self.wait_durable(seq).await?;
                Ok(Outcome::Done(t))
            }
            Ok(Reply::Wait(_)) => {
                let (w, rx) = rx.expect("registered above");
                let mut guard = CancelGuard {
                    shared: self,
                    waiter: Some(w),
                };
                let woken = rx.await;
                guard.waiter = None;
                let (wake, seq) =
                    woken.map_err(|_| Status::from(WarrenError::internal("waiter dropped")))??;
                self.wait_durable(seq).await?;
                Ok(Outcome::Woken(wake))
            }
        }
    }

    /// A write that may wait for cache invalidations: retried each time they drain.
    async fn write<T>(
        &self,
        mut f: impl FnMut(&mut Master, Instant) -> Result<Reply<T>, WarrenError>,
    ) -> Result<T, Status> {
        loop {
            match self.run_parked(&mut f).await? {
                Outcome::Done(t) => return Ok(t),
                Outcome::Woken(Wake::Retry) => continue,
                Outcome::Woken(other) => {
                    return Err(WarrenError::internal(format!(
                        "unexpected wake for a write: {other:?}"
                    ))
                    .into())
                }
            }
        }
    }

    pub(crate) fn status(&self) -> CellStatus {
        let st = self.lock();
        let s = st.master.status();
        CellStatus {
            name: s.cell,
            deployment: s.deployment,
            epoch: s.epoch,
            role: "master",
            master: self.advertise.clone(),
            store: self.store_kind,
            sessions: s.sessions,
            nodes: s.nodes,
            handles: s.handles,
            held_locks: s.held_locks,
        }
    }

    fn tick(&self) {
        let mut st = self.lock();
        st.master.tick(Instant::now());
        st.flush(&self.writer);
        let s = st.master.status();
        metrics::gauge!("warren_cell_sessions").set(s.sessions as f64);
        metrics::gauge!("warren_cell_nodes").set(s.nodes as f64);
        metrics::gauge!("warren_cell_epoch").set(s.epoch as f64);
    }

    /// Fails every parked operation so graceful shutdown does not wait on long-polls.
    fn close(&self) {
        let mut st = self.lock();
        st.closing = true;
        for (_, tx) in st.waiters.drain() {
            let _ = tx.send(Err(WarrenError::not_master("").into()));
        }
    }
}

/// What [`run`] hands back once the cell is serving (through `on_ready`).
#[derive(Clone)]
pub struct CellHandle {
    shared: Arc<Shared>,
}

impl CellHandle {
    pub fn status(&self) -> CellStatus {
        self.shared.status()
    }
}

/// Starts a cell on `listener` with `store`; returns when `shutdown` completes (after a
/// graceful stop) or when the store fails. `on_ready` is called once the master has
/// recovered its state and is serving.
pub async fn run(
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    store: Arc<dyn Store>,
    opts: CellOptions,
    on_ready: impl FnOnce(CellHandle) + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CellError> {
    let local = listener
        .local_addr()
        .map_err(|e| CellError::Startup(e.to_string()))?;
    let advertise = opts.advertise.clone().unwrap_or_else(|| local.to_string());
    let snapshot = store.load().await?;
    let seed: u64 = rand::random();
    let mut master = Master::recover(opts.core.clone(), snapshot, Instant::now(), seed)
        .map_err(|e| CellError::Startup(e.message))?;
    // The new epoch (and a fresh store's root) must be durable before anything is served.
    let boot = master.take_output();
    store.commit(boot.mutations).await?;
    tracing::info!(cell = %opts.core.cell, epoch = master.epoch(), %advertise, store = store.kind(), "cell master serving");

    let (writer_tx, writer_rx) = mpsc::unbounded_channel();
    let (durable_tx, durable_rx) = watch::channel(Durable::default());
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            master,
            waiters: HashMap::new(),
            applied: 0,
            closing: false,
        }),
        writer: writer_tx,
        durable: durable_rx,
        advertise,
        store_kind: store.kind(),
    });
    let writer = tokio::spawn(write_loop(store.clone(), writer_rx, durable_tx));
    let ticker = {
        let shared = shared.clone();
        let period = opts.tick;
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(period);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                iv.tick().await;
                shared.tick();
            }
        })
    };
    let admin_task = admin_listener.map(|l| tokio::spawn(admin::serve(l, shared.clone())));

    on_ready(CellHandle {
        shared: shared.clone(),
    });

    let svc = WarrenServer::new(Service {
        shared: shared.clone(),
    })
    .max_decoding_message_size(4 * 1024 * 1024);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let mut store_failed = shared.durable.clone();
    let failed = async move {
        let _ = store_failed.wait_for(|d| d.failed.is_some()).await;
    };
    let shared2 = shared.clone();
    let stop = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = failed => {}
        }
        shared2.close();
    };
    let served = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, stop)
        .await;
    ticker.abort();
    if let Some(a) = admin_task {
        a.abort();
    }
    // Let the writer finish what was queued, then stop it.
    let failure = shared.durable.borrow().failed.clone();
    drop(shared);
    let _ = writer.await;
    if let Some(f) = failure {
        return Err(CellError::Store(StoreError::Io(f)));
    }
    served.map_err(|e| CellError::Serve(e.to_string()))
}

/// The group-commit writer: one store transaction for everything queued.
async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<(u64, Vec<Mutation>)>,
    durable: watch::Sender<Durable>,
) {
    while let Some((mut seq, mut batch)) = rx.recv().await {
        while let Ok((s, more)) = rx.try_recv() {
            seq = s;
            batch.extend(more);
        }
        let n = batch.len();
        let started = std::time::Instant::now();
        match store.commit(batch).await {
            Ok(()) => {
                metrics::histogram!("warren_store_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("warren_store_mutations_total").increment(n as u64);
                durable.send_modify(|d| d.seq = seq);
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; the cell stops serving");
                durable.send_modify(|d| d.failed = Some(e.to_string()));
                return;
            }
        }
    }
}

struct Service {
    shared: Arc<Shared>,
}

fn observe<T>(method: &'static str, started: std::time::Instant, r: &Result<T, Status>) {
    let code = match r {
        Ok(_) => "OK",
        Err(s) => WarrenError::from_status(s).map_or("TRANSPORT", |e| e.code_name()),
    };
    metrics::counter!("warren_rpc_total", "method" => method, "code" => code).increment(1);
    if method != "KeepAlive" && method != "Acquire" {
        metrics::histogram!("warren_rpc_duration_seconds", "method" => method)
            .record(started.elapsed().as_secs_f64());
    }
}

macro_rules! rpc {
    ($name:literal, $body:expr) => {{
        let started = std::time::Instant::now();
        let r = $body.await;
        observe($name, started, &r);
        r.map(Response::new)
    }};
}

#[tonic::async_trait]
impl Warren for Service {
    async fn locate(
        &self,
        _req: Request<pb::LocateRequest>,
    ) -> Result<Response<pb::LocateResponse>, Status> {
        rpc!("Locate", async {
            let st = self.shared.lock();
            Ok::<_, Status>(pb::LocateResponse {
                cell: st.master.config().cell.clone(),
                master: self.shared.advertise.clone(),
                epoch: st.master.epoch(),
                map_epoch: 0,
                deployment: st.master.config().deployment.clone(),
                is_master: true,
                serving: !st.closing && !st.master.recovering(),
            })
        })
    }

    async fn create_session(
        &self,
        req: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let r = req.into_inner();
        rpc!("CreateSession", async {
            let c = self
                .shared
                .run(|m, now| m.create_session(&r.principal, now))
                .await?;
            Ok::<_, Status>(pb::CreateSessionResponse {
                session_id: c.id.to_vec(),
                secret: c.secret.to_vec(),
                lease_ms: c.lease.as_millis() as u64,
                epoch: c.epoch,
                deployment: c.deployment,
            })
        })
    }

    async fn keep_alive(
        &self,
        req: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let r = req.into_inner();
        metrics::counter!("warren_keepalives_received_total").increment(1);
        rpc!("KeepAlive", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let reply = match self
                .shared
                .run_parked(|m, now| m.keepalive(&ctx, r.ack_seq, now))
                .await?
            {
                Outcome::Done(reply) => reply,
                Outcome::Woken(Wake::KeepAlive(res)) => res?,
                Outcome::Woken(other) => {
                    return Err(WarrenError::internal(format!("unexpected wake {other:?}")).into())
                }
            };
            Ok::<_, Status>(pb::KeepAliveResponse {
                lease_ms: reply.lease.as_millis() as u64,
                events: reply.events.iter().map(edge::event).collect(),
                epoch: reply.epoch,
            })
        })
    }

    async fn close_session(
        &self,
        req: Request<pb::CloseSessionRequest>,
    ) -> Result<Response<pb::CloseSessionResponse>, Status> {
        let r = req.into_inner();
        rpc!("CloseSession", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            self.shared.run(|m, now| m.close_session(&ctx, now)).await?;
            Ok::<_, Status>(pb::CloseSessionResponse {})
        })
    }

    async fn open(
        &self,
        req: Request<pb::OpenRequest>,
    ) -> Result<Response<pb::OpenResponse>, Status> {
        let r = req.into_inner();
        rpc!("Open", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let args = edge::open_args(&r)?;
            let ok = self.shared.write(|m, now| m.open(&ctx, &args, now)).await?;
            Ok::<_, Status>(pb::OpenResponse {
                handle: ok.handle,
                stat: Some(edge::stat(&ok.stat)),
                contents: ok.contents.unwrap_or_default(),
                cacheable: ok.cacheable,
                created: ok.created,
            })
        })
    }

    async fn close(
        &self,
        req: Request<pb::CloseRequest>,
    ) -> Result<Response<pb::CloseResponse>, Status> {
        let r = req.into_inner();
        rpc!("Close", async {
            // Close never fails: a malformed context is simply nothing to close.
            if let Ok(ctx) = edge::ctx(r.ctx.as_ref()) {
                self.shared
                    .run(|m, now| m.close(&ctx, &r.handle, now))
                    .await?;
            }
            Ok::<_, Status>(pb::CloseResponse {})
        })
    }

    async fn get_contents_and_stat(
        &self,
        req: Request<pb::GetContentsAndStatRequest>,
    ) -> Result<Response<pb::GetContentsAndStatResponse>, Status> {
        let r = req.into_inner();
        rpc!("GetContentsAndStat", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let (contents, stat, cacheable) = self
                .shared
                .run(|m, now| m.get_contents(&ctx, &r.handle, now))
                .await?;
            Ok::<_, Status>(pb::GetContentsAndStatResponse {
                contents,
                stat: Some(edge::stat(&stat)),
                cacheable,
            })
        })
    }

    async fn get_stat(
        &self,
        req: Request<pb::GetStatRequest>,
    ) -> Result<Response<pb::GetStatResponse>, Status> {
        let r = req.into_inner();
        rpc!("GetStat", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let (stat, cacheable) = self
                .shared
                .run(|m, now| m.get_stat(&ctx, &r.handle, now))
                .await?;
            Ok::<_, Status>(pb::GetStatResponse {
                stat: Some(edge::stat(&stat)),
                cacheable,
            })
        })
    }

    async fn read_dir(
        &self,
        req: Request<pb::ReadDirRequest>,
    ) -> Result<Response<pb::ReadDirResponse>, Status> {
        let r = req.into_inner();
        rpc!("ReadDir", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let (entries, stat, cacheable) = self
                .shared
                .run(|m, now| m.read_dir(&ctx, &r.handle, now))
                .await?;
            Ok::<_, Status>(pb::ReadDirResponse {
                entries: entries
                    .iter()
                    .map(|e| pb::DirEntry {
                        name: e.name.clone(),
                        stat: Some(edge::stat(&e.stat)),
                    })
                    .collect(),
                cacheable,
                stat: Some(edge::stat(&stat)),
            })
        })
    }

    async fn set_contents(
        &self,
        req: Request<pb::SetContentsRequest>,
    ) -> Result<Response<pb::SetContentsResponse>, Status> {
        let r = req.into_inner();
        rpc!("SetContents", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let stat = self
                .shared
                .write(|m, now| {
                    m.set_contents(&ctx, &r.handle, &r.contents, r.if_content_generation, now)
                })
                .await?;
            Ok::<_, Status>(pb::SetContentsResponse {
                stat: Some(edge::stat(&stat)),
            })
        })
    }

    async fn set_acl(
        &self,
        req: Request<pb::SetAclRequest>,
    ) -> Result<Response<pb::SetAclResponse>, Status> {
        let r = req.into_inner();
        rpc!("SetAcl", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let acl = edge::acl_in(
                r.acl
                    .as_ref()
                    .ok_or_else(|| WarrenError::invalid_argument("SetAcl needs acl"))?,
            );
            let stat = self
                .shared
                .write(|m, now| m.set_acl(&ctx, &r.handle, &acl, now))
                .await?;
            Ok::<_, Status>(pb::SetAclResponse {
                stat: Some(edge::stat(&stat)),
            })
        })
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let r = req.into_inner();
        rpc!("Delete", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            self.shared
                .write(|m, now| m.delete(&ctx, &r.handle, now))
                .await?;
            Ok::<_, Status>(pb::DeleteResponse {})
        })
    }

    async fn acquire(
        &self,
        req: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        let r = req.into_inner();
        rpc!("Acquire", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let mode = edge::lock_mode(r.mode)?;
            let timeout = (r.timeout_ms > 0).then(|| Duration::from_millis(r.timeout_ms));
            let seq = match self
                .shared
                .run_parked(|m, now| m.acquire(&ctx, &r.handle, mode, timeout, now))
                .await?
            {
                Outcome::Done(s) => s,
                Outcome::Woken(Wake::Acquire(res)) => res?,
                Outcome::Woken(other) => {
                    return Err(WarrenError::internal(format!("unexpected wake {other:?}")).into())
                }
            };
            Ok::<_, Status>(pb::AcquireResponse {
                sequencer: Some(edge::sequencer_out(&seq)),
            })
        })
    }

    async fn try_acquire(
        &self,
        req: Request<pb::TryAcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        let r = req.into_inner();
        rpc!("TryAcquire", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let mode = edge::lock_mode(r.mode)?;
            let seq = self
                .shared
                .run(|m, now| m.try_acquire(&ctx, &r.handle, mode, now))
                .await?;
            Ok::<_, Status>(pb::AcquireResponse {
                sequencer: Some(edge::sequencer_out(&seq)),
            })
        })
    }

    async fn release(
        &self,
        req: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let r = req.into_inner();
        rpc!("Release", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let was_held = self
                .shared
                .run(|m, now| m.release(&ctx, &r.handle, now))
                .await?;
            Ok::<_, Status>(pb::ReleaseResponse { was_held })
        })
    }

    async fn get_sequencer(
        &self,
        req: Request<pb::GetSequencerRequest>,
    ) -> Result<Response<pb::GetSequencerResponse>, Status> {
        let r = req.into_inner();
        rpc!("GetSequencer", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let seq = self
                .shared
                .run(|m, now| m.get_sequencer(&ctx, &r.handle, now))
                .await?;
            Ok::<_, Status>(pb::GetSequencerResponse {
                sequencer: Some(edge::sequencer_out(&seq)),
            })
        })
    }

    async fn set_sequencer(
        &self,
        req: Request<pb::SetSequencerRequest>,
    ) -> Result<Response<pb::SetSequencerResponse>, Status> {
        let r = req.into_inner();
        rpc!("SetSequencer", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let seq = edge::sequencer_in(r.sequencer.as_ref())?;
            self.shared
                .run(|m, now| m.set_sequencer(&ctx, &r.handle, seq, now))
                .await?;
            Ok::<_, Status>(pb::SetSequencerResponse {})
        })
    }

    async fn check_sequencer(
        &self,
        req: Request<pb::CheckSequencerRequest>,
    ) -> Result<Response<pb::CheckSequencerResponse>, Status> {
        let r = req.into_inner();
        rpc!("CheckSequencer", async {
            let ctx = edge::ctx(r.ctx.as_ref())?;
            let seq = edge::sequencer_in(r.sequencer.as_ref())?;
            let current = self
                .shared
                .run(|m, now| m.check_sequencer(&ctx, &seq, now))
                .await?;
            Ok::<_, Status>(pb::CheckSequencerResponse { current })
        })
    }
}

impl CellOptions {
    /// Options for a cell process from its validated configuration.
    pub fn from_config(c: &warren_config::CellConfig) -> Self {
        let mut core = CoreConfig::new(&c.name, &c.deployment);
        core.lease = c.lease;
        core.reply_before_end = c.keepalive_reply_before_end;
        core.max_lock_delay = c.max_lock_delay;
        core.max_file_size = c.max_file_size;
        core.ephemeral_cleanup = c.ephemeral_cleanup;
        CellOptions::new(core)
    }
}
