//! `warren loadtest echo`: a bare tonic server of the `warren.v1.Warren` protocol, the
//! yardstick a proxy's cached reads are measured against (docs/performance.md, "Cached
//! reads: CPU per read against a bare tonic server").
//!
//! It holds no state and does no Warren work: `CreateSession` hands out random ids,
//! `KeepAlive` answers after a pause, `Open` gives back the path as the handle, and
//! `GetContentsAndStat` answers every handle with the same empty file and stat — the shape
//! of a proxy's cache hit for the load tester's empty files. Every other call is
//! `UNIMPLEMENTED`. It is served with tonic's plain `Server` (no layers, no metrics), with
//! `TCP_NODELAY` as the proxy has, so that the same load generator run against it and
//! against a proxy shows what the proxy adds to a bare gRPC call.
//!
//! It measures its own CPU per read, and optionally that of another process (the load
//! generator), over the span of its reads: from the first `GetContentsAndStat` to the last
//! before reads stop for [`QUIET`]. It prints one JSON line per span on stdout
//! ([`Span`]).

use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use warren_proto::pb;
use warren_proto::pb::warren_server::{Warren, WarrenServer};

/// Reads stopping for this long end a span.
pub const QUIET: Duration = Duration::from_secs(3);
/// How often the CPU counters are sampled.
const SAMPLE: Duration = Duration::from_millis(100);
/// The lease the echo server grants, as a cell's default.
const LEASE_MS: u64 = 12_000;
/// How long a `KeepAlive` is held before its answer.
const KEEPALIVE_HOLD: Duration = Duration::from_secs(4);

/// One span of reads, as printed.
#[derive(Clone, Debug, Serialize)]
pub struct Span {
    pub reads: u64,
    /// From the sample before the first read to the first sample after the last.
    pub secs: f64,
    /// The echo server's CPU (user + system) over the span.
    pub echo_cpu_s: f64,
    pub echo_us_per_read: f64,
    /// The watched process (`--watch-pid-file`), if one was named and readable.
    pub watched_pid: Option<u32>,
    pub watched_cpu_s: Option<f64>,
    pub watched_us_per_read: Option<f64>,
}

/// The echo service.
#[derive(Clone)]
struct Echo {
    reads: Arc<AtomicU64>,
    reply: pb::GetContentsAndStatResponse,
}

fn stat() -> pb::Stat {
    pb::Stat {
        kind: pb::NodeKind::File as i32,
        instance: 1,
        content_generation: 1,
        cell: "c1".into(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Warren for Echo {
    async fn locate(
        &self,
        _: Request<pb::LocateRequest>,
    ) -> Result<Response<pb::LocateResponse>, Status> {
        Ok(Response::new(pb::LocateResponse {
            cell: "echo".into(),
            deployment: "echo".into(),
            is_master: true,
            serving: true,
            role: "master".into(),
            store_health: "ok".into(),
            ..Default::default()
        }))
    }

    async fn create_session(
        &self,
        _: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        Ok(Response::new(pb::CreateSessionResponse {
            session_id: rand::random::<[u8; 16]>().to_vec(),
            secret: rand::random::<[u8; 16]>().to_vec(),
            lease_ms: LEASE_MS,
            epoch: 1,
            deployment: "echo".into(),
        }))
    }

    async fn keep_alive(
        &self,
        _: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        tokio::time::sleep(KEEPALIVE_HOLD).await;
        Ok(Response::new(pb::KeepAliveResponse {
            lease_ms: LEASE_MS,
            epoch: 1,
            ..Default::default()
        }))
    }

    async fn close_session(
        &self,
        _: Request<pb::CloseSessionRequest>,
    ) -> Result<Response<pb::CloseSessionResponse>, Status> {
        Ok(Response::new(pb::CloseSessionResponse::default()))
    }

    async fn claim_session(
        &self,
        _: Request<pb::ClaimSessionRequest>,
    ) -> Result<Response<pb::ClaimSessionResponse>, Status> {
        Err(unimplemented("ClaimSession"))
    }

    async fn open(
        &self,
        r: Request<pb::OpenRequest>,
    ) -> Result<Response<pb::OpenResponse>, Status> {
        let r = r.into_inner();
        Ok(Response::new(pb::OpenResponse {
            handle: r.path.into_bytes(),
            stat: Some(stat()),
            cacheable: true,
            ..Default::default()
        }))
    }

    async fn close(
        &self,
        _: Request<pb::CloseRequest>,
    ) -> Result<Response<pb::CloseResponse>, Status> {
        Ok(Response::new(pb::CloseResponse::default()))
    }

    async fn get_contents_and_stat(
        &self,
        _: Request<pb::GetContentsAndStatRequest>,
    ) -> Result<Response<pb::GetContentsAndStatResponse>, Status> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(self.reply.clone()))
    }

    async fn get_stat(
        &self,
        _: Request<pb::GetStatRequest>,
    ) -> Result<Response<pb::GetStatResponse>, Status> {
        Err(unimplemented("GetStat"))
    }

    async fn read_dir(
        &self,
        _: Request<pb::ReadDirRequest>,
    ) -> Result<Response<pb::ReadDirResponse>, Status> {
        Err(unimplemented("ReadDir"))
    }

    async fn set_contents(
        &self,
        _: Request<pb::SetContentsRequest>,
    ) -> Result<Response<pb::SetContentsResponse>, Status> {
        Err(unimplemented("SetContents"))
    }

    async fn set_acl(
        &self,
        _: Request<pb::SetAclRequest>,
    ) -> Result<Response<pb::SetAclResponse>, Status> {
        Err(unimplemented("SetAcl"))
    }

    async fn delete(
        &self,
        _: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        Err(unimplemented("Delete"))
    }

    async fn acquire(
        &self,
        _: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        Err(unimplemented("Acquire"))
    }

    async fn try_acquire(
        &self,
        _: Request<pb::TryAcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        Err(unimplemented("TryAcquire"))
    }

    async fn release(
        &self,
        _: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        Err(unimplemented("Release"))
    }

    async fn get_sequencer(
        &self,
        _: Request<pb::GetSequencerRequest>,
    ) -> Result<Response<pb::GetSequencerResponse>, Status> {
        Err(unimplemented("GetSequencer"))
    }

    async fn set_sequencer(
        &self,
        _: Request<pb::SetSequencerRequest>,
    ) -> Result<Response<pb::SetSequencerResponse>, Status> {
        Err(unimplemented("SetSequencer"))
    }

    async fn check_sequencer(
        &self,
        _: Request<pb::CheckSequencerRequest>,
    ) -> Result<Response<pb::CheckSequencerResponse>, Status> {
        Err(unimplemented("CheckSequencer"))
    }
}

fn unimplemented(call: &str) -> Status {
    Status::unimplemented(format!(
        "{call}: the echo server (warren loadtest echo) answers only Locate, CreateSession, \
         KeepAlive, CloseSession, Open, Close and GetContentsAndStat"
    ))
}

/// Serves the echo server on `listener` until `stop`, printing a [`Span`] line on stdout
/// after each span of reads. `watch_pid_file`: a file that will hold the PID of another
/// process (the load generator) to measure over the same spans; it is read at each span's
/// first read.
pub async fn serve(
    listener: tokio::net::TcpListener,
    watch_pid_file: Option<PathBuf>,
    stop: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let echo = Echo {
        reads: Arc::new(AtomicU64::new(0)),
        reply: pb::GetContentsAndStatResponse {
            contents: Vec::new(),
            stat: Some(stat()),
            cacheable: true,
        },
    };
    let monitor = tokio::spawn(monitor(echo.reads.clone(), watch_pid_file));
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = tonic::transport::Server::builder()
        .add_service(WarrenServer::new(echo))
        .serve_with_incoming_shutdown(incoming, stop)
        .await;
    monitor.abort();
    Ok(served?)
}

/// A process's CPU time so far, in seconds, or `None` if `/proc` cannot tell.
fn cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = crate::procstat::cpu_ticks(&stat)?;
    Some(ticks as f64 / crate::procstat::ticks_per_s() as f64)
}

/// One sample of the counters.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    reads: u64,
    own: f64,
    watched: Option<f64>,
}

/// Samples the read count and the CPU counters every [`SAMPLE`]; a span runs from the
/// last sample with no new reads before they began to the first sample after the last
/// read, once [`QUIET`] has passed with none.
async fn monitor(reads: Arc<AtomicU64>, watch_pid_file: Option<PathBuf>) {
    let me = std::process::id();
    let mut watched: Option<u32> = None;
    let take = |watched: Option<u32>| Sample {
        at: Instant::now(),
        reads: reads.load(Ordering::Relaxed),
        own: cpu_s(me).unwrap_or(0.0),
        watched: watched.and_then(cpu_s),
    };
    let mut prev = take(None);
    // (the sample before the span's first read, the sample after its latest read)
    let mut span: Option<(Sample, Sample)> = None;
    let mut tick = tokio::time::interval(SAMPLE);
    loop {
        tick.tick().await;
        if watched.is_none() {
            watched = watch_pid_file
                .as_ref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|s| s.trim().parse().ok());
        }
        let now = take(watched);
        match &mut span {
            None if now.reads > prev.reads => {
                // The watched process may have been named only just now: then its counter
                // starts one sample late.
                let first = Sample {
                    watched: prev.watched.or(now.watched),
                    ..prev
                };
                span = Some((first, now));
            }
            Some((_, last)) if now.reads > last.reads => {
                // The watched process may have ended since its last read (the load
                // generator exits soon after its window): keep its last reading then.
                *last = Sample {
                    watched: now.watched.or(last.watched),
                    ..now
                };
            }
            Some((first, last)) if now.at - last.at >= QUIET => {
                let n = (last.reads - first.reads).max(1) as f64;
                let echo_cpu_s = last.own - first.own;
                let watched_cpu_s = match (first.watched, last.watched) {
                    (Some(a), Some(b)) => Some(b - a),
                    _ => None,
                };
                let s = Span {
                    reads: last.reads - first.reads,
                    secs: (last.at - first.at).as_secs_f64(),
                    echo_cpu_s,
                    echo_us_per_read: echo_cpu_s * 1e6 / n,
                    watched_pid: watched,
                    watched_cpu_s,
                    watched_us_per_read: watched_cpu_s.map(|c| c * 1e6 / n),
                };
                println!("{}", serde_json::to_string(&s).unwrap_or_default());
                span = None;
                watched = None;
            }
            _ => {}
        }
        prev = now;
    }
}
