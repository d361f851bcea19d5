//! The load generator's gRPC connections: one HTTP/2 connection of the `h2` crate each,
//! used directly as the transport under tonic's generated `WarrenClient`
//! (docs/performance.md, "Cached reads: CPU per read against a bare tonic server").
//!
//! A tonic `Channel` costs the load generator more per call than the server it measures:
//! every call hops through a buffer task to hyper's connection task, and hyper writes each
//! request's HEADERS and DATA frames in two writes, often milliseconds apart (h2 gives a
//! stream that is not open yet no send capacity, so hyper's body pipe waits for the
//! connection task to open it). Here a call's unary body, which tonic has ready at once,
//! is handed to h2 together with its headers, with no task in between: h2 writes both
//! frames in one write, and the requests that one tick of arrivals sends on a connection
//! go out in one write too. The framing is h2's; this module only moves whole requests.
//!
//! Like a `Channel` it connects once at the start (so a bad address fails the run at once)
//! and again on the first call after its connection failed. Failures come back as the
//! `tonic::Status` a `Channel` gives for them: `UNAVAILABLE` for a connection that cannot
//! be made, and the gRPC spec's code for an HTTP/2 error ("h2 protocol error: …"). With an
//! identity installed (`warren loadtest --cacert/--cert/--key`) each connection is mutual
//! TLS (docs/security.md).

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::Status;

/// A connection's byte stream: TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// How long a connection attempt may take, as the `Channel`s' connect timeout was.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// hyper's HTTP/2 client defaults, which the `Channel`s had: windows (stream 2 MiB,
/// connection 5 MiB), frame size and send buffer.
const STREAM_WINDOW: u32 = 2 << 20;
const CONN_WINDOW: u32 = 5 << 20;
const MAX_FRAME: u32 = 16 << 10;
const MAX_SEND_BUF: usize = 1 << 20;

/// One HTTP/2 connection to a server, reconnected on the first call after it failed.
/// Cheap to clone (the clones share the connection).
#[derive(Clone)]
pub struct H2Channel {
    inner: Arc<Inner>,
}

struct Inner {
    /// `HOST:PORT`.
    addr: String,
    /// The same, as a URI's authority (for [`H2Channel::unary`]).
    authority: http::uri::Authority,
    /// The live connection's sender and its generation, if one is live.
    live: Mutex<(Option<h2::client::SendRequest<Bytes>>, u64)>,
    /// Held while connecting, so that concurrent calls make one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl H2Channel {
    /// Connects to `addr` (`HOST:PORT`) within 5 s; the error names the address.
    pub async fn connect(addr: &str) -> anyhow::Result<H2Channel> {
        let authority = addr
            .parse()
            .map_err(|e| anyhow::anyhow!("`{addr}` is not a HOST:PORT address: {e}"))?;
        let c = H2Channel {
            inner: Arc::new(Inner {
                addr: addr.to_string(),
                authority,
                live: Mutex::new((None, 0)),
                connecting: tokio::sync::Mutex::new(()),
            }),
        };
        c.sender()
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        Ok(c)
    }

    /// The origin to give tonic's client (`http://HOST:PORT`).
    pub fn origin(&self) -> http::Uri {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(self.inner.authority.clone());
        uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        http::Uri::from_parts(uri).expect("a scheme, an authority and a path make a URI")
    }

    /// The live connection's sender, without waiting: `None` when there is none.
    fn live(&self) -> Option<h2::client::SendRequest<Bytes>> {
        self.inner
            .live
            .lock()
            .expect("h2 connection lock")
            .0
            .clone()
    }

    /// The live connection's sender, connecting first if there is none.
    async fn sender(&self) -> Result<h2::client::SendRequest<Bytes>, Status> {
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let _turn = self.inner.connecting.lock().await;
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let addr = &self.inner.addr;
        let unavailable = |e: &dyn std::fmt::Display| {
            Status::unavailable(format!("cannot connect to {addr}: {e}"))
        };
        // Over TLS when `warren loadtest --cacert/--cert/--key` installed an identity.
        let io: Box<dyn Io> = match warren_tls::installed() {
            Some(tls) => {
                let uri: http::Uri = format!("http://{addr}")
                    .parse()
                    .map_err(|e| unavailable(&e))?;
                let dial = warren_tls::client::dial(uri, &tls);
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, dial)
                    .await
                    .map_err(|_| unavailable(&"timed out after 5 s"))?
                    .map_err(|e| unavailable(&warren_tls::client::explain(&e.to_string())))?;
                Box::new(stream)
            }
            None => {
                let tcp =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
                        .await
                        .map_err(|_| unavailable(&"timed out after 5 s"))?
                        .map_err(|e| unavailable(&e))?;
                tcp.set_nodelay(true).map_err(|e| unavailable(&e))?;
                Box::new(tcp)
            }
        };
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_send_buffer_size(MAX_SEND_BUF)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| unavailable(&format!("the HTTP/2 handshake failed: {e}")))?;
        let generation = {
            let mut live = self.inner.live.lock().expect("h2 connection lock");
            live.1 += 1;
            live.0 = Some(send.clone());
            live.1
        };
        // The connection's task; when it ends, the next call connects again.
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(addr = %inner.addr, %e, "a load generator connection ended");
            }
            let mut live = inner.live.lock().expect("h2 connection lock");
            if live.1 == generation {
                live.0 = None;
            }
        });
        Ok(send)
    }
}

impl H2Channel {
    /// A unary call of `path` (`/warren.v1.Warren/Method`) made on the connection itself,
    /// without tonic's client: the load generator's hot read path, where tonic's per-call
    /// machinery (its request and response wrappers, the body encoder and the streaming
    /// decoder) cost as much as the call's own HTTP/2 work. The message goes out in one
    /// gRPC frame (the 5-byte prefix: uncompressed, length) with the headers tonic sends
    /// (`content-type: application/grpc`, `te: trailers`); the answer's status is read by
    /// tonic's own `Status::from_header_map`, from the headers of a trailers-only answer
    /// or from the trailers, so a refusal is the same `Status` the tonic client gives.
    pub async fn unary<Q, A>(&self, path: &'static str, msg: &Q) -> Result<A, Status>
    where
        Q: prost::Message,
        A: prost::Message + Default,
    {
        let len = msg.encoded_len();
        let mut frame = bytes::BytesMut::with_capacity(5 + len);
        frame.extend_from_slice(&[0]);
        frame.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        msg.encode(&mut frame)
            .map_err(|e| Status::internal(format!("encoding a message failed: {e}")))?;
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(self.inner.authority.clone());
        uri.path_and_query = Some(http::uri::PathAndQuery::from_static(path));
        let mut req = http::Request::new(());
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = http::Uri::from_parts(uri)
            .map_err(|e| Status::internal(format!("the URI of {path}: {e}")))?;
        let h = req.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        h.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        let mut send = match self.live() {
            Some(s) => s,
            None => self.sender().await?,
        };
        let (response, mut stream) = send.send_request(req, false).map_err(h2_status)?;
        stream.send_data(frame.freeze(), true).map_err(h2_status)?;
        let (head, mut body) = response.await.map_err(h2_status)?.into_parts();
        // A trailers-only answer (a refusal) has its status in the headers.
        if let Some(s) = Status::from_header_map(&head.headers) {
            if s.code() != tonic::Code::Ok {
                return Err(s);
            }
        }
        if head.status != http::StatusCode::OK {
            return Err(Status::unknown(format!(
                "{path} answered HTTP {} without a gRPC status",
                head.status
            )));
        }
        // The message: almost always one DATA frame.
        let mut data: Option<Bytes> = None;
        let mut more = bytes::BytesMut::new();
        while let Some(chunk) = std::future::poll_fn(|cx| body.poll_data(cx)).await {
            let chunk = chunk.map_err(h2_status)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            match data.take() {
                None if more.is_empty() => data = Some(chunk),
                first => {
                    if let Some(f) = first {
                        more.extend_from_slice(&f);
                    }
                    more.extend_from_slice(&chunk);
                }
            }
        }
        let trailers = std::future::poll_fn(|cx| body.poll_trailers(cx))
            .await
            .map_err(h2_status)?;
        match trailers.as_ref().and_then(Status::from_header_map) {
            Some(s) if s.code() == tonic::Code::Ok => {}
            Some(s) => return Err(s),
            None => {
                return Err(Status::internal(format!(
                    "{path} answered with no grpc-status"
                )))
            }
        }
        let data = data.unwrap_or_else(|| more.freeze());
        match data.as_ref() {
            [0, l0, l1, l2, l3, rest @ ..]
                if u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize == rest.len() =>
            {
                A::decode(rest).map_err(|e| {
                    Status::internal(format!("the answer of {path} does not decode: {e}"))
                })
            }
            _ => Err(Status::internal(format!(
                "the answer of {path} is not one uncompressed gRPC message ({} bytes)",
                data.len()
            ))),
        }
    }
}

impl tower::Service<http::Request<Body>> for H2Channel {
    type Response = http::Response<H2Body>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Status>> + Send>>;

    /// Always ready: h2 queues a stream past the server's concurrency limit until one
    /// ends (the run bounds the operations in flight).
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let live = self.live();
        let chan = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            // A unary call's body is its one encoded message, ready at once.
            let data = body.collect().await?.to_bytes();
            let mut send = match live {
                Some(s) => s,
                None => chan.sender().await?,
            };
            let req = http::Request::from_parts(parts, ());
            let (response, mut stream) =
                send.send_request(req, data.is_empty()).map_err(h2_status)?;
            if !data.is_empty() {
                // Queued with the headers: the connection task writes both at once.
                stream.send_data(data, true).map_err(h2_status)?;
            }
            let response = response.await.map_err(h2_status)?;
            Ok(response.map(|recv| H2Body {
                recv,
                data_done: false,
                done: false,
            }))
        })
    }
}

/// A response body: the stream's DATA frames, then its trailers; the received data's
/// window is given back as it is read.
pub struct H2Body {
    recv: h2::RecvStream,
    data_done: bool,
    done: bool,
}

impl http_body::Body for H2Body {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if !self.data_done {
            match std::task::ready!(self.recv.poll_data(cx)) {
                Some(Ok(b)) => {
                    let _ = self.recv.flow_control().release_capacity(b.len());
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(h2_status(e))));
                }
                None => self.data_done = true,
            }
        }
        let r = std::task::ready!(self.recv.poll_trailers(cx));
        self.done = true;
        Poll::Ready(match r {
            Ok(Some(t)) => Some(Ok(Frame::trailers(t))),
            Ok(None) => None,
            Err(e) => Some(Err(h2_status(e))),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.recv.is_end_stream()
    }
}

/// The status tonic gives an HTTP/2 error (the gRPC spec's mapping of reasons to codes,
/// https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md#errors), with its message
/// prefix, which the client library's `is_unreachable` recognises.
fn h2_status(e: h2::Error) -> Status {
    use h2::Reason;
    let code = match e.reason() {
        Some(
            Reason::NO_ERROR
            | Reason::PROTOCOL_ERROR
            | Reason::INTERNAL_ERROR
            | Reason::FLOW_CONTROL_ERROR
            | Reason::SETTINGS_TIMEOUT
            | Reason::FRAME_SIZE_ERROR
            | Reason::COMPRESSION_ERROR
            | Reason::CONNECT_ERROR,
        ) => tonic::Code::Internal,
        Some(Reason::REFUSED_STREAM) => tonic::Code::Unavailable,
        Some(Reason::CANCEL) => tonic::Code::Cancelled,
        Some(Reason::ENHANCE_YOUR_CALM) => tonic::Code::ResourceExhausted,
        Some(Reason::INADEQUATE_SECURITY) => tonic::Code::PermissionDenied,
        _ => tonic::Code::Unknown,
    };
    Status::new(code, format!("h2 protocol error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::pb;
    use warren_proto::pb::warren_client::WarrenClient;

    fn client(c: H2Channel) -> WarrenClient<H2Channel> {
        let origin = c.origin();
        WarrenClient::with_origin(c, origin)
    }

    /// Calls, their answers and a server's errors pass unchanged; after the server goes
    /// away a call fails as unreachable, and once a server listens there again the next
    /// call reconnects.
    #[tokio::test]
    async fn calls_pass_and_a_failed_connection_is_made_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::echo::serve(listener, None, async {
            let _ = stop_rx.await;
        }));
        let chan = H2Channel::connect(&addr.to_string()).await.unwrap();
        let mut c = client(chan.clone());
        for _ in 0..3 {
            let r = c
                .get_contents_and_stat(pb::GetContentsAndStatRequest::default())
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.stat.unwrap().content_generation, 1);
        }
        let e = c
            .set_contents(pb::SetContentsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert!(e.message().contains("echo server"), "{}", e.message());

        // The server stops: calls fail as a Channel's would, as unreachable.
        stop_tx.send(()).unwrap();
        let _ = server.await;
        let mut failed = None;
        for _ in 0..50 {
            match c.locate(pb::LocateRequest::default()).await {
                Err(s) => {
                    failed = Some(s);
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let s = failed.expect("calls fail once the server is gone");
        assert!(warren_client::transport::is_unreachable(&s), "{s:?}");

        // A server on the same port again: a call connects anew (once the old connection's
        // task has seen it end).
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(crate::echo::serve(listener, None, std::future::pending()));
        let mut answer = None;
        for _ in 0..50 {
            if let Ok(l) = c.locate(pb::LocateRequest::default()).await {
                answer = Some(l.into_inner());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(answer.expect("a call reconnects").cell, "echo");
    }

    /// The direct unary call gets the answer tonic's client gets, and a refusal as the
    /// same status.
    #[tokio::test]
    async fn a_direct_unary_call_answers_as_tonics_client_does() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(crate::echo::serve(listener, None, std::future::pending()));
        let chan = H2Channel::connect(&addr).await.unwrap();
        let req = pb::GetContentsAndStatRequest::default();
        let direct: pb::GetContentsAndStatResponse = chan
            .unary("/warren.v1.Warren/GetContentsAndStat", &req)
            .await
            .unwrap();
        let via_tonic = client(chan.clone())
            .get_contents_and_stat(req)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(direct, via_tonic);
        assert_eq!(direct.stat.unwrap().content_generation, 1);
        let e = chan
            .unary::<_, pb::SetContentsResponse>(
                "/warren.v1.Warren/SetContents",
                &pb::SetContentsRequest::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented);
        assert!(e.message().contains("echo server"), "{}", e.message());
    }

    #[tokio::test]
    async fn nothing_listening_is_unavailable_naming_the_address() {
        let e = H2Channel::connect("127.0.0.1:1")
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot connect to 127.0.0.1:1"), "{e}");
    }

    #[test]
    fn http2_errors_get_the_grpc_specs_codes() {
        let s = h2_status(h2::Error::from(h2::Reason::REFUSED_STREAM));
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let s = h2_status(h2::Error::from(h2::Reason::NO_ERROR));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(
            s.message().starts_with("h2 protocol error"),
            "{}",
            s.message()
        );
        assert_eq!(
            h2_status(h2::Error::from(h2::Reason::ENHANCE_YOUR_CALM)).code(),
            tonic::Code::ResourceExhausted
        );
    }
}
