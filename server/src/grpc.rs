//! The one gRPC server setup of cells and proxies ([`serve_routes`]): plaintext or mutual TLS
//! (docs/security.md), the layer that puts the verified client's [`PeerIdentity`] into
//! each request, and the layer that rewrites errors tonic raises while framing a request
//! into the error table.

use std::sync::Arc;
use tonic::Status;
use warren_proto::{pb, WarrenError, MAX_MESSAGE_BYTES};
use warren_tls::{PeerConn, Tls};

use crate::auth::PeerIdentity;

/// The routes of `service` (a `warren.v1.Warren`), with the message size limit; a cell adds
/// its internal services to them before [`serve_routes`].
pub fn warren_routes<S: pb::warren_server::Warren>(service: S) -> tonic::service::Routes {
    tonic::service::Routes::new(
        pb::warren_server::WarrenServer::new(service).max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// How often [`add_standard_services`]' health task asks the tier whether it is ready.
const HEALTH_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Adds to `routes` the services operators' tools expect of any gRPC server
/// (docs/operations.md): `grpc.health.v1.Health` (what `grpc_health_probe` and load
/// balancers ask) and server reflection, v1 and v1alpha (what `grpcurl list`/`describe`
/// read instead of `.proto` files), which lists `served` (the services in `routes`: the
/// descriptors hold `warren.v1.Reshard` too, which a proxy does not serve) and the standard
/// ones. Health follows `ready` (the tier's `/readyz`): the
/// overall status (service `""`) and `warren.v1.Warren` are `SERVING` while it says yes and
/// `NOT_SERVING` otherwise, re-read every 200 ms and pushed to `Watch` callers on change.
/// The returned [`HealthTask`] does the re-reading until it is dropped.
pub async fn add_standard_services(
    routes: tonic::service::Routes,
    served: &[&str],
    ready: impl Fn() -> bool + Send + Sync + 'static,
) -> (tonic::service::Routes, HealthTask) {
    let (reporter, health) = tonic_health::server::health_reporter();
    // The reporter starts with the server SERVING: set the truth before anyone can ask.
    let first = ready();
    for name in HEALTH_NAMES {
        reporter
            .set_service_status(name, serving_status(first))
            .await;
    }
    let task = tokio::spawn(async move {
        let mut last = first;
        loop {
            tokio::time::sleep(HEALTH_POLL).await;
            let now = ready();
            if last != now {
                for name in HEALTH_NAMES {
                    reporter.set_service_status(name, serving_status(now)).await;
                }
                last = now;
            }
        }
    });
    let mut routes = routes.add_service(health);
    // The descriptor set is built into warren-proto; it only fails to register if it
    // were corrupt, and then the server still serves everything but reflection.
    let reflection = || {
        let listed = served.iter().copied().chain([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]);
        listed.fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(warren_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
                .include_reflection_service(false),
            |b, name| b.with_service_name(name),
        )
    };
    let (v1, v1alpha) = (reflection().build_v1(), reflection().build_v1alpha());
    match (v1, v1alpha) {
        (Ok(v1), Ok(v1alpha)) => routes = routes.add_service(v1).add_service(v1alpha),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "server reflection is off: its descriptor set does not register");
        }
    }
    (routes, HealthTask(task))
}

fn serving_status(ready: bool) -> tonic_health::ServingStatus {
    if ready {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    }
}

/// The health service names [`add_standard_services`] reports: the whole server and the
/// Warren service.
const HEALTH_NAMES: [&str; 2] = ["", "warren.v1.Warren"];

/// Keeps the health status of [`add_standard_services`] following readiness; dropping it
/// stops that (the status then stays as last set).
#[derive(Debug)]
pub struct HealthTask(tokio::task::JoinHandle<()>);

impl Drop for HealthTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves `routes` (a proxy's `warren.v1.Warren`; a cell's with `warren.v1.Reshard`, made
/// with [`warren_routes`]) on `listener` until `stop` resolves: framing errors rewritten
/// into the table ([`framing_errors_into_table`]), HTTP/2 keepalive pings every 10 s, and
/// TCP_NODELAY on accepted connections — without it a held KeepAlive reply can sit behind
/// Nagle + delayed ACK for ~40 ms, and every write waiting on it with it. With the
/// process's TLS identity if one is installed ([`warren_tls::install`]), else plaintext.
pub async fn serve_routes(
    listener: tokio::net::TcpListener,
    routes: tonic::service::Routes,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_routes_with(listener, routes, warren_tls::installed(), stop).await
}

/// [`serve_routes`] with an explicit TLS identity (`None`: plaintext). With TLS, only
/// clients whose certificate the CA vouches for get a connection
/// ([`warren_tls::server::incoming`]), and every request on it carries their
/// [`PeerIdentity`] (read with [`crate::auth::peer_identity`]).
pub async fn serve_routes_with(
    listener: tokio::net::TcpListener,
    routes: tonic::service::Routes,
    tls: Option<Arc<Tls>>,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .layer(tower::util::MapRequestLayer::new(identify))
        .layer(tower::util::MapResponseLayer::new(
            framing_errors_into_table,
        ))
        .add_routes(routes);
    match tls {
        None => {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            builder.serve_with_incoming_shutdown(incoming, stop).await
        }
        Some(tls) => {
            let incoming = warren_tls::server::incoming(listener, tls);
            builder.serve_with_incoming_shutdown(incoming, stop).await
        }
    }
}

/// A connection a server is served on from an incoming stream
/// ([`serve_routes_incoming`]): a byte stream tonic can serve and name the peer of.
pub trait Conn:
    tokio::io::AsyncRead
    + tokio::io::AsyncWrite
    + tonic::transport::server::Connected
    + Unpin
    + Send
    + 'static
{
}

impl<T> Conn for T where
    T: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static
{
}

/// [`serve_routes_with`] without TLS on connections from `incoming` instead of a TCP
/// listener: the seam the deterministic simulation (docs/reliability.md, "Deterministic
/// simulation") serves a cell through, on its simulated network. Production servers do
/// not use it; they go through [`serve_routes`].
pub async fn serve_routes_incoming<I, IO, IE>(
    incoming: I,
    routes: tonic::service::Routes,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error>
where
    I: futures::Stream<Item = Result<IO, IE>> + Send,
    IO: Conn,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .layer(tower::util::MapRequestLayer::new(identify))
        .layer(tower::util::MapResponseLayer::new(
            framing_errors_into_table,
        ))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stop)
        .await
}

/// Where a server (a cell's replica, a proxy) takes its connections from: a TCP listener
/// ([`Listen::tcp`], every process), or any stream of connections ([`Listen::incoming`]:
/// the deterministic simulation's network). Plaintext either way: a server with TLS serves
/// through [`serve_routes_with`].
pub struct Listen {
    /// The address the server is at: the listener's, or the one given for `incoming`.
    pub address: String,
    serve: ServeFn,
}

/// Serves the routes until the stop future completes.
type ServeFn = Box<
    dyn FnOnce(
            tonic::service::Routes,
            futures::future::BoxFuture<'static, ()>,
        ) -> futures::future::BoxFuture<'static, Result<(), tonic::transport::Error>>
        + Send,
>;

impl Listen {
    /// On `listener` ([`serve_routes`]).
    pub fn tcp(listener: tokio::net::TcpListener) -> std::io::Result<Listen> {
        let address = listener.local_addr()?.to_string();
        Ok(Listen {
            address,
            serve: Box::new(move |routes, stop| Box::pin(serve_routes(listener, routes, stop))),
        })
    }

    /// On the connections of `incoming`, at `address` ([`serve_routes_incoming`]).
    pub fn incoming<I, IO, IE>(incoming: I, address: String) -> Listen
    where
        I: futures::Stream<Item = Result<IO, IE>> + Send + 'static,
        IO: Conn,
        IE: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        Listen {
            address,
            serve: Box::new(move |routes, stop| {
                Box::pin(serve_routes_incoming(incoming, routes, stop))
            }),
        }
    }

    /// Serves `routes` until `stop` completes.
    pub fn serve(
        self,
        routes: tonic::service::Routes,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> futures::future::BoxFuture<'static, Result<(), tonic::transport::Error>> {
        (self.serve)(routes, Box::pin(stop))
    }
}

/// Copies the principal of a verified TLS connection (its connect info, which tonic puts
/// into every request on it) into the request as the [`PeerIdentity`] the authorization
/// rules read. A plaintext connection has no connect info of this kind, so its requests
/// carry no identity.
fn identify(
    mut req: tonic::codegen::http::Request<tonic::body::Body>,
) -> tonic::codegen::http::Request<tonic::body::Body> {
    if let Some(peer) = req.extensions().get::<PeerConn>() {
        let identity = PeerIdentity {
            principal: peer.principal.clone(),
        };
        req.extensions_mut().insert(identity);
    }
    req
}

/// Errors tonic raises while *framing* a request, before any Warren code runs (a message
/// over [`MAX_MESSAGE_BYTES`], a bad compression flag), come out of tonic with no Warren
/// detail (`OUT_OF_RANGE`, `INTERNAL`). This rewrites them, in the response headers or its
/// trailers, into the error table's `TOO_LARGE` / `INVALID_ARGUMENT`, so every bad input
/// gets a code a client can act on.
pub fn framing_errors_into_table(
    resp: tonic::codegen::http::Response<tonic::body::Body>,
) -> tonic::codegen::http::Response<tonic::body::Body> {
    let (mut parts, body) = resp.into_parts();
    rewrite_framing_error(&mut parts.headers);
    tonic::codegen::http::Response::from_parts(parts, tonic::body::Body::new(TableErrors(body)))
}

fn rewrite_framing_error(map: &mut tonic::codegen::http::HeaderMap) {
    if map.contains_key("grpc-status-details-bin") {
        return;
    }
    // Most calls end OK (or with no status in these headers): nothing to parse. Parsing
    // copies the whole header map into the status's metadata.
    match map.get("grpc-status") {
        None => return,
        Some(code) if code == "0" => return,
        Some(_) => {}
    }
    let Some(st) = Status::from_header_map(map) else {
        return;
    };
    let e = match st.code() {
        tonic::Code::OutOfRange if st.message().contains("message length too large") => {
            WarrenError::too_large(format!(
                "the request is larger than the {MAX_MESSAGE_BYTES}-byte message limit (files are at most 256 KiB)"
            ))
        }
        tonic::Code::Internal if st.message().contains("protocol error") => {
            WarrenError::invalid_argument("the request is not a well-formed gRPC message")
        }
        _ => return,
    };
    map.remove("grpc-message");
    let _ = Status::from(e).add_header(map);
}

/// A response body whose trailers go through [`rewrite_framing_error`].
struct TableErrors(tonic::body::Body);

impl http_body::Body for TableErrors {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        let polled = std::pin::Pin::new(&mut self.0).poll_frame(cx);
        polled.map(|frame| {
            frame.map(|r| {
                r.map(|f| match f.into_trailers() {
                    Ok(mut trailers) => {
                        rewrite_framing_error(&mut trailers);
                        http_body::Frame::trailers(trailers)
                    }
                    Err(f) => f,
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// Implements `warren.v1.Warren` for a tier's service type: every RPC's request message is
/// handed to the function of the same name in the tier's `handlers` module
/// (`async fn(&Service, Request) -> Result<Response, Status>`), and the call is wrapped in
/// the tier's `observe(method_name, future)`, which counts and times it. The list of RPCs
/// lives here once; a new RPC in the `.proto` is a compile error in every tier until both
/// handle it.
#[macro_export]
macro_rules! warren_service {
    ($service:ty, $observe:path, $handlers:ident) => {
        $crate::warren_service!(@impl $service, $observe, $handlers,
            locate(LocateRequest) -> LocateResponse = "Locate";
            create_session(CreateSessionRequest) -> CreateSessionResponse = "CreateSession";
            keep_alive(KeepAliveRequest) -> KeepAliveResponse = "KeepAlive";
            close_session(CloseSessionRequest) -> CloseSessionResponse = "CloseSession";
            claim_session(ClaimSessionRequest) -> ClaimSessionResponse = "ClaimSession";
            open(OpenRequest) -> OpenResponse = "Open";
            close(CloseRequest) -> CloseResponse = "Close";
            get_contents_and_stat(GetContentsAndStatRequest) -> GetContentsAndStatResponse = "GetContentsAndStat";
            get_stat(GetStatRequest) -> GetStatResponse = "GetStat";
            read_dir(ReadDirRequest) -> ReadDirResponse = "ReadDir";
            set_contents(SetContentsRequest) -> SetContentsResponse = "SetContents";
            set_acl(SetAclRequest) -> SetAclResponse = "SetAcl";
            delete(DeleteRequest) -> DeleteResponse = "Delete";
            acquire(AcquireRequest) -> AcquireResponse = "Acquire";
            try_acquire(TryAcquireRequest) -> AcquireResponse = "TryAcquire";
            release(ReleaseRequest) -> ReleaseResponse = "Release";
            get_sequencer(GetSequencerRequest) -> GetSequencerResponse = "GetSequencer";
            set_sequencer(SetSequencerRequest) -> SetSequencerResponse = "SetSequencer";
            check_sequencer(CheckSequencerRequest) -> CheckSequencerResponse = "CheckSequencer";
        );
    };
    (@impl $service:ty, $observe:path, $handlers:ident,
     $($rpc:ident($req:ident) -> $resp:ident = $name:literal;)*) => {
        // The trait is `#[async_trait]`; its methods are written out as that attribute
        // would make them, so that the boxed future is [`call`]'s own and no `async` block
        // around it keeps a second copy of the request.
        impl $crate::grpc::reexport::pb::warren_server::Warren for $service {
            $(
                fn $rpc<'life0, 'async_trait>(
                    &'life0 self,
                    req: $crate::grpc::reexport::tonic::Request<$crate::grpc::reexport::pb::$req>,
                ) -> ::std::pin::Pin<Box<
                    dyn ::std::future::Future<
                        Output = ::std::result::Result<
                            $crate::grpc::reexport::tonic::Response<$crate::grpc::reexport::pb::$resp>,
                            $crate::grpc::reexport::tonic::Status,
                        >,
                    > + ::std::marker::Send + 'async_trait,
                >>
                where
                    'life0: 'async_trait,
                    Self: 'async_trait,
                {
                    Box::pin($crate::grpc::call(req, move |message| {
                        $observe($name, $handlers::$rpc(self, message))
                    }))
                }
            )*
        }
    };
}

/// One RPC as [`warren_service!`] runs it: `handler` on the request's message, with the
/// request's [`PeerIdentity`] as the [`crate::auth::caller`] it sees.
///
/// Built of combinators rather than `async` code: an `async fn` or block keeps its
/// arguments and every local it ever borrowed for its whole life, and a held KeepAlive's
/// future lives for most of a lease, so its size is memory per session at a proxy
/// (docs/performance.md, "Memory per session at the proxy").
pub fn call<Q, R, F, Fut>(
    req: tonic::Request<Q>,
    handler: F,
) -> impl std::future::Future<Output = Result<tonic::Response<R>, Status>>
where
    F: FnOnce(Q) -> Fut,
    Fut: std::future::Future<Output = Result<R, Status>>,
{
    use futures::FutureExt;
    // Taken out of the request, not cloned: nothing reads the extensions after this.
    let mut req = req;
    let caller = req.extensions_mut().remove::<PeerIdentity>();
    crate::auth::with_caller(caller, handler(req.into_inner())).map(|r| r.map(tonic::Response::new))
}

/// What [`warren_service!`] names, reachable from any crate that uses it.
#[doc(hidden)]
pub mod reexport {
    pub use tonic;
    pub use warren_proto::pb;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codegen::http;

    /// A service that answers every call with the identity its request carried, in
    /// `grpc-message` (`-` for none).
    #[derive(Clone)]
    struct WhoAmI;

    impl tonic::server::NamedService for WhoAmI {
        const NAME: &'static str = "test.WhoAmI";
    }

    impl tower::Service<http::Request<tonic::body::Body>> for WhoAmI {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
            let who = req
                .extensions()
                .get::<PeerIdentity>()
                .map_or("-".to_owned(), |p| p.principal.clone());
            std::future::ready(Ok(Status::new(tonic::Code::Ok, who).into_http()))
        }
    }

    /// Serves [`WhoAmI`] with `server` (None: plaintext) and asks it, as `client`, who
    /// is calling.
    async fn who_am_i(server: Option<Arc<Tls>>, client: Option<Arc<Tls>>) -> String {
        use tower::ServiceExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve_routes_with(
            listener,
            tonic::service::Routes::new(WhoAmI),
            server,
            async {
                let _ = stopped.await;
            },
        ));
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
        let channel = match client {
            Some(tls) => warren_tls::client::connect(&endpoint, tls).await.unwrap(),
            None => endpoint.connect().await.unwrap(),
        };
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/test.WhoAmI/Ask"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::empty())
            .unwrap();
        let resp = channel.oneshot(req).await.unwrap();
        let who = Status::from_header_map(resp.headers())
            .map(|s| s.message().to_owned())
            .unwrap_or_default();
        let _ = stop.send(());
        served.await.unwrap().unwrap();
        who
    }

    #[tokio::test]
    async fn a_call_on_a_tls_connection_carries_the_client_certificate_s_principal() {
        use warren_tls::gen::{Ca, Validity};
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("test CA").unwrap();
        let ca_path = ca.write_ca(dir.path()).unwrap();
        let issue = |name: &str, principal: &str| {
            let files = ca
                .write_issued(
                    dir.path(),
                    name,
                    principal,
                    &["127.0.0.1"],
                    Validity::Current,
                    &ca_path,
                )
                .unwrap();
            warren_tls::Tls::load(files).unwrap()
        };
        let server = issue("server", "warren:cell-1");
        let client = issue("client", "spiffe://example/app");
        assert_eq!(
            who_am_i(Some(server), Some(client)).await,
            "spiffe://example/app"
        );
        assert_eq!(
            who_am_i(None, None).await,
            "-",
            "plaintext carries no identity"
        );
    }

    #[tokio::test]
    async fn health_follows_readiness_and_reflection_lists_what_is_served() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};
        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let ready = Arc::new(AtomicBool::new(false));
        let (routes, _health) =
            add_standard_services(tonic::service::Routes::new(WhoAmI), &["test.WhoAmI"], {
                let ready = ready.clone();
                move || ready.load(Ordering::SeqCst)
            })
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve_routes_with(listener, routes, None, async {
            let _ = stopped.await;
        }));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let status = |service: &str| {
            let mut health = health.clone();
            let req = HealthCheckRequest {
                service: service.into(),
            };
            async move { health.check(req).await.unwrap().into_inner().status() }
        };
        // Not ready from the first call on (the reporter's own default is SERVING).
        assert_eq!(status("").await, ServingStatus::NotServing);
        assert_eq!(status("warren.v1.Warren").await, ServingStatus::NotServing);
        ready.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while status("").await != ServingStatus::Serving {
            assert!(tokio::time::Instant::now() < deadline, "never SERVING");
            tokio::time::sleep(HEALTH_POLL / 4).await;
        }
        assert_eq!(status("warren.v1.Warren").await, ServingStatus::Serving);
        let unknown = health
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);

        let mut reflection = ServerReflectionClient::new(channel);
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = reflection
            .server_reflection_info(tokio_stream::iter([ask]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            replies.message().await.unwrap().unwrap().message_response
        else {
            panic!("not a service list");
        };
        let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
                "test.WhoAmI"
            ]
        );
        let _ = stop.send(());
        served.await.unwrap().unwrap();
    }

    #[test]
    fn a_verified_connection_s_principal_becomes_the_request_s_identity() {
        let mut req = tonic::codegen::http::Request::new(tonic::body::Body::empty());
        req.extensions_mut().insert(PeerConn {
            principal: "warren:proxy-1".into(),
            remote: "127.0.0.1:5000".parse().unwrap(),
        });
        let req = identify(req);
        assert_eq!(
            req.extensions().get::<PeerIdentity>(),
            Some(&PeerIdentity {
                principal: "warren:proxy-1".into()
            })
        );
        // A plaintext connection has no PeerConn, so its requests carry no identity.
        let plain = identify(tonic::codegen::http::Request::new(
            tonic::body::Body::empty(),
        ));
        assert_eq!(plain.extensions().get::<PeerIdentity>(), None);
    }
}
