//! The server side: [`incoming`] turns a TCP listener into a stream of verified TLS
//! connections for tonic's `serve_with_incoming_shutdown`, each carrying the principal its
//! client certificate names ([`PeerConn`], which tonic puts into every request's
//! extensions).
//!
//! Handshakes run in their own tasks, off the accept loop, each bounded by
//! [`HANDSHAKE_TIMEOUT`](crate::HANDSHAKE_TIMEOUT): a slow or silent client delays nobody
//! else. Each handshake uses the configuration current when its connection was accepted
//! ([`Tls::server_config`]), so a reload reaches new connections and leaves established
//! ones alone.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;

use crate::Tls;

/// What tonic records of a verified connection, in each request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConn {
    /// The principal the client certificate names ([`crate::principal::of_certificate`]).
    pub principal: String,
    /// The client's address.
    pub remote: SocketAddr,
}

/// An accepted TLS connection whose client presented a certificate the CA vouches for.
pub struct TlsConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerConn,
}

impl TlsConn {
    /// Who is on the other end.
    pub fn peer(&self) -> &PeerConn {
        &self.peer
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = PeerConn;

    fn connect_info(&self) -> PeerConn {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Accepts connections on `listener` (TCP_NODELAY set), completes each TLS handshake with
/// `tls`'s current configuration, and yields the verified ones. A client with no
/// certificate, one the CA does not vouch for, an expired one, or one naming no principal
/// is refused in the handshake (rustls sends the matching alert, e.g. `UnknownCA`,
/// `CertificateExpired`, `CertificateRequired`) and logged here. The accept loop ends
/// when the stream is dropped (the server stopped).
pub fn incoming(listener: TcpListener, tls: Arc<Tls>) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<TlsConn>>(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: the next accept may succeed.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Some(config) = tls.server_config() else {
                tracing::error!(
                    "{}",
                    tls.can_serve()
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                );
                continue;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let tx = tx.clone();
            tokio::spawn(async move {
                if !starts_tls(&tcp).await {
                    refuse_plaintext(tcp, remote).await;
                    return;
                }
                let stream = match tokio::time::timeout(
                    crate::HANDSHAKE_TIMEOUT,
                    acceptor.accept(tcp),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(%remote, "TLS handshake refused: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%remote, "TLS handshake not completed within {:?}", crate::HANDSHAKE_TIMEOUT);
                        return;
                    }
                };
                let principal = match stream.get_ref().1.peer_certificates() {
                    Some([leaf, ..]) => crate::principal::of_certificate(leaf),
                    _ => Err("no client certificate".to_owned()),
                };
                let principal = match principal {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::info!(%remote, "TLS connection refused: {e}");
                        return;
                    }
                };
                let conn = TlsConn {
                    stream,
                    peer: PeerConn { principal, remote },
                };
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Whether the client's first byte opens a TLS handshake record (0x16); false for
/// anything else, or nothing within [`crate::HANDSHAKE_TIMEOUT`].
async fn starts_tls(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(crate::HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await,
        Ok(Ok(1)) if first[0] == 0x16
    )
}

/// What a plaintext gRPC client is told: every call fails with `UNAUTHENTICATED`
/// and this message, so the user learns the fix instead of a broken pipe.
pub const PLAINTEXT_REFUSED: &str = "TLS: this server requires mutual TLS and the client connected in plaintext: \
     give the client --cacert, --cert and --key (WARREN_CACERT/WARREN_CERT/WARREN_KEY; docs/security.md)";

/// Answers a plaintext HTTP/2 connection (a client without TLS) with `UNAUTHENTICATED`
/// ([`PLAINTEXT_REFUSED`]) on every call, for at most [`crate::HANDSHAKE_TIMEOUT`]; no
/// request reaches a service. Anything else is closed.
async fn refuse_plaintext(tcp: TcpStream, remote: SocketAddr) {
    tracing::info!(%remote, "plaintext connection to a TLS port refused");
    let service = hyper::service::service_fn(|_req| async {
        Ok::<_, std::convert::Infallible>(
            tonic::Status::unauthenticated(PLAINTEXT_REFUSED).into_http::<tonic::body::Body>(),
        )
    });
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
    let _ = tokio::time::timeout(crate::HANDSHAKE_TIMEOUT, conn).await;
}
