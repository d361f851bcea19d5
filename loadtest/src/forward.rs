//! `warren loadtest forward`: a bare tonic forwarder of the `warren.v1.Warren` protocol,
//! the floor a proxy's forwarded writes are measured against (docs/performance.md, "Write
//! latency through a proxy").
//!
//! Every call is passed on unchanged (the message; not the metadata) to one upstream
//! server over `channels` HTTP/2 connections, taken in turn, and its answer is passed back
//! unchanged. It does no Warren work at all: no session check, no routing, no cache, so
//! the same load generator run against a cell directly and through this forwarder shows
//! what one more gRPC hop costs on this machine, and the forwarder with 1 and with N
//! connections shows whether one HTTP/2 connection serialises the calls on it. Served
//! with tonic's plain `Server` and `TCP_NODELAY` on both sides, as the proxy is.
//!
//! Point the load generator at it as if it were a proxy (`--target proxies=ADDR`): each
//! client session is then a plain session at the upstream cell.
//!
//! Two variants, to find where a hop's time goes: `--bare-h2` sends on hyper's HTTP/2
//! connection directly ([`BareH2`]) instead of a tonic `Channel`, which passes every call
//! through its buffer task first; `--current-thread` serves on a one-thread runtime, so
//! that a call is never handed between worker threads.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::{Request, Response, Status};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::pb::warren_server::{Warren, WarrenServer};

/// The most upstream connections `--channels` may ask for.
pub const MAX_CHANNELS: usize = 64;

/// The forwarding service: the upstream connections, and whose turn it is.
#[derive(Clone)]
struct Forward<C> {
    up: Arc<[WarrenClient<C>]>,
    next: Arc<AtomicUsize>,
}

impl<C: Clone> Forward<C> {
    /// The next upstream connection, in turn.
    fn up(&self) -> WarrenClient<C> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.up.len();
        self.up[i].clone()
    }
}

/// Each method passes its request's message to the upstream server and its answer back.
macro_rules! forward_all {
    ($($method:ident: $request:ident => $reply:ident),* $(,)?) => {
        #[tonic::async_trait]
        impl<C> Warren for Forward<C>
        where
            C: tonic::client::GrpcService<Body> + Clone + Send + Sync + 'static,
            C::Future: Send,
            C::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
            <C::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
        {
            $(
                async fn $method(
                    &self,
                    r: Request<pb::$request>,
                ) -> Result<Response<pb::$reply>, Status> {
                    let reply = self.up().$method(r.into_inner()).await?;
                    Ok(Response::new(reply.into_inner()))
                }
            )*
        }
    };
}

forward_all!(
    locate: LocateRequest => LocateResponse,
    create_session: CreateSessionRequest => CreateSessionResponse,
    keep_alive: KeepAliveRequest => KeepAliveResponse,
    close_session: CloseSessionRequest => CloseSessionResponse,
    claim_session: ClaimSessionRequest => ClaimSessionResponse,
    open: OpenRequest => OpenResponse,
    close: CloseRequest => CloseResponse,
    get_contents_and_stat: GetContentsAndStatRequest => GetContentsAndStatResponse,
    get_stat: GetStatRequest => GetStatResponse,
    read_dir: ReadDirRequest => ReadDirResponse,
    set_contents: SetContentsRequest => SetContentsResponse,
    set_acl: SetAclRequest => SetAclResponse,
    delete: DeleteRequest => DeleteResponse,
    acquire: AcquireRequest => AcquireResponse,
    try_acquire: TryAcquireRequest => AcquireResponse,
    release: ReleaseRequest => ReleaseResponse,
    get_sequencer: GetSequencerRequest => GetSequencerResponse,
    set_sequencer: SetSequencerRequest => SetSequencerResponse,
    check_sequencer: CheckSequencerRequest => CheckSequencerResponse,
);

/// One HTTP/2 connection of hyper's, used directly: a call goes from the handler to the
/// connection's task with no buffer task in between (a tonic `Channel` has one). No
/// reconnection: the forwarder is a measuring tool, and a failed connection fails its calls.
#[derive(Clone)]
struct BareH2(hyper::client::conn::http2::SendRequest<Body>);

impl tower::Service<http::Request<Body>> for BareH2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// A [`BareH2`] connection to `addr`, its connection task spawned.
async fn bare_h2(addr: &str) -> anyhow::Result<WarrenClient<BareH2>> {
    use anyhow::Context as _;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .with_context(|| format!("the HTTP/2 handshake with {addr}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(%e, "the upstream connection failed");
        }
    });
    let origin: http::Uri = format!("http://{addr}").parse()?;
    Ok(WarrenClient::with_origin(BareH2(send), origin))
}

/// How the forwarder reaches its upstream server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// tonic `Channel`s, as the proxy's.
    Channel,
    /// hyper HTTP/2 connections, used directly ([`BareH2`]).
    BareH2,
}

/// Serves the forwarder on `listener` until `stop`, passing every call to `upstream`
/// (`HOST:PORT`) over `channels` connections (1 to [`MAX_CHANNELS`]) of kind `kind`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    upstream: &str,
    channels: usize,
    kind: Upstream,
    stop: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    if !(1..=MAX_CHANNELS).contains(&channels) {
        anyhow::bail!("--channels {channels}: give 1 to {MAX_CHANNELS} upstream connections");
    }
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    match kind {
        Upstream::Channel => {
            let mut up = Vec::with_capacity(channels);
            for _ in 0..channels {
                up.push(WarrenClient::new(crate::run::channel(upstream).await?));
            }
            serve_forward(up, incoming, stop).await?;
        }
        Upstream::BareH2 => {
            let mut up = Vec::with_capacity(channels);
            for _ in 0..channels {
                up.push(bare_h2(upstream).await?);
            }
            serve_forward(up, incoming, stop).await?;
        }
    }
    Ok(())
}

/// Serves [`Forward`] over the upstream clients `up` on `incoming` until `stop`.
async fn serve_forward<C>(
    up: Vec<WarrenClient<C>>,
    incoming: tonic::transport::server::TcpIncoming,
    stop: impl Future<Output = ()> + Send,
) -> anyhow::Result<()>
where
    Forward<C>: Warren,
{
    let forward = Forward {
        up: up.into(),
        next: Arc::new(AtomicUsize::new(0)),
    };
    tonic::transport::Server::builder()
        .add_service(WarrenServer::new(forward))
        .serve_with_incoming_shutdown(incoming, stop)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_channel_count_out_of_range_is_refused_naming_the_flag() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let e = serve(listener, "127.0.0.1:1", 0, Upstream::Channel, async {})
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("--channels 0"), "{e}");
    }

    /// Calls reach the upstream server through every connection of the pool, and its
    /// answers (and its errors) come back unchanged.
    #[tokio::test]
    async fn calls_and_errors_pass_through_unchanged() {
        for kind in [Upstream::Channel, Upstream::BareH2] {
            pass_through(kind).await;
        }
    }

    async fn pass_through(kind: Upstream) {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap().to_string();
        tokio::spawn(crate::echo::serve(echo, None, std::future::pending()));
        let fwd = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fwd_addr = fwd.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            serve(fwd, &echo_addr, 3, kind, std::future::pending())
                .await
                .unwrap();
        });
        let mut c = WarrenClient::new(crate::run::channel(&fwd_addr).await.unwrap());
        for _ in 0..4 {
            let l = c
                .locate(pb::LocateRequest::default())
                .await
                .unwrap()
                .into_inner();
            assert_eq!((l.cell.as_str(), l.is_master), ("echo", true));
        }
        let e = c
            .set_contents(pb::SetContentsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert!(e.message().contains("echo server"), "{}", e.message());
    }
}
