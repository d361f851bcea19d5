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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::pb::warren_server::{Warren, WarrenServer};

/// The most upstream connections `--channels` may ask for.
pub const MAX_CHANNELS: usize = 64;

/// The forwarding service: the upstream connections, and whose turn it is.
#[derive(Clone)]
struct Forward {
    up: Arc<[WarrenClient<Channel>]>,
    next: Arc<AtomicUsize>,
}

impl Forward {
    /// The next upstream connection, in turn.
    fn up(&self) -> WarrenClient<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.up.len();
        self.up[i].clone()
    }
}

/// Each method passes its request's message to the upstream server and its answer back.
macro_rules! forward_all {
    ($($method:ident: $request:ident => $reply:ident),* $(,)?) => {
        #[tonic::async_trait]
        impl Warren for Forward {
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

/// Serves the forwarder on `listener` until `stop`, passing every call to `upstream`
/// (`HOST:PORT`) over `channels` connections (1 to [`MAX_CHANNELS`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    upstream: &str,
    channels: usize,
    stop: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    if !(1..=MAX_CHANNELS).contains(&channels) {
        anyhow::bail!("--channels {channels}: give 1 to {MAX_CHANNELS} upstream connections");
    }
    let mut up = Vec::with_capacity(channels);
    for _ in 0..channels {
        up.push(WarrenClient::new(crate::run::channel(upstream).await?));
    }
    let forward = Forward {
        up: up.into(),
        next: Arc::new(AtomicUsize::new(0)),
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
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
        let e = serve(listener, "127.0.0.1:1", 0, async {})
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("--channels 0"), "{e}");
    }

    /// Calls reach the upstream server through every connection of the pool, and its
    /// answers (and its errors) come back unchanged.
    #[tokio::test]
    async fn calls_and_errors_pass_through_unchanged() {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap().to_string();
        tokio::spawn(crate::echo::serve(echo, None, std::future::pending()));
        let fwd = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fwd_addr = fwd.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            serve(fwd, &echo_addr, 3, std::future::pending()).await.unwrap();
        });
        let mut c = WarrenClient::new(crate::run::channel(&fwd_addr).await.unwrap());
        for _ in 0..4 {
            let l = c.locate(pb::LocateRequest::default()).await.unwrap().into_inner();
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
