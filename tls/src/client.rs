//! The client side: [`connect`] dials an endpoint over TLS with the configuration current
//! at each connect ([`Tls::client_config`]), verifying the server's certificate against
//! the CA and the address dialled, and presenting this process's certificate.
//!
//! With TLS 1.3 a client finishes its handshake before the server has checked the
//! client's certificate; a refusal (`UnknownCA`, `CertificateExpired`,
//! `CertificateRequired`) would only surface in the first call, as an unexplained broken
//! connection. So the connector waits for the server's first bytes (the HTTP/2 SETTINGS
//! a gRPC server sends at once) and hands them on to HTTP/2 untouched ([`Primed`]): a
//! refusal fails the connect, with the alert, and [`explain`] words it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::Tls;

/// Connects `endpoint` (an `http://HOST:PORT` URI; the scheme is ignored) over TLS with
/// `tls`. Each (re)connect of the returned channel reads `tls`'s configuration afresh, so
/// a reload is used from the next connection on.
pub async fn connect(
    endpoint: &Endpoint,
    tls: Arc<Tls>,
) -> Result<Channel, tonic::transport::Error> {
    let connector = tower::service_fn(move |uri: Uri| {
        let tls = tls.clone();
        async move { dial(uri, &tls).await.map(TokioIo::new) }
    });
    endpoint.connect_with_connector(connector).await
}

/// One TLS connection to `uri`'s host and port (the scheme is ignored), with `tls`'s
/// current configuration: for a client that runs HTTP/2 over it itself (the load
/// generator's connections).
pub async fn dial(uri: Uri, tls: &Tls) -> io::Result<Primed> {
    let host = uri.host().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} names no host"))
    })?;
    let port = uri.port_u16().unwrap_or(443);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let name = ServerName::try_from(host.clone()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host} is not a name a certificate can be checked against: {e}"),
        )
    })?;
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let connector = tokio_rustls::TlsConnector::from(tls.client_config());
    let mut stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| io::Error::new(e.kind(), explain(&e.to_string())))?;
    let mut first = vec![0u8; 4096];
    let n = stream
        .read(&mut first)
        .await
        .map_err(|e| io::Error::new(e.kind(), explain(&e.to_string())))?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the server closed the connection right after the TLS handshake (is it a Warren server?)",
        ));
    }
    first.truncate(n);
    Ok(Primed {
        first,
        at: 0,
        stream,
    })
}

/// A rustls error as the client sees it, with what it means and the fix: the alerts a
/// server sends when it refuses this client's certificate, and the client's own verdicts
/// on the server's.
pub fn explain(message: &str) -> String {
    let alert = |name: &str| message.contains("alert") && message.contains(name);
    let ours = |name: &str| message.contains("invalid peer certificate") && message.contains(name);
    let why = if alert("CertificateRequired") {
        Some("the server requires a client certificate and this client presented none: give --cert/--key (WARREN_CERT/WARREN_KEY)")
    } else if alert("UnknownCA") {
        Some("the server does not trust this client's certificate: it is not signed by a CA the server trusts (--cacert on the server)")
    } else if alert("CertificateExpired") {
        Some("the server refused this client's certificate: it has expired (or is not yet valid); renew it")
    } else if alert("BadCertificate") || alert("CertificateUnknown") || alert("DecryptError") {
        Some("the server refused this client's certificate")
    } else if alert("HandshakeFailure") {
        Some("the server refused the handshake (no client certificate, or no protocol version or cipher in common)")
    } else if ours("UnknownIssuer") {
        Some("the server's certificate is not signed by a CA this client trusts (--cacert)")
    } else if ours("Expired") {
        Some("the server's certificate has expired")
    } else if ours("NotValidForName") {
        Some("the server's certificate does not name the address dialled (give it that DNS name or IP address)")
    } else {
        None
    };
    match why {
        Some(why) => format!("TLS: {why} ({message})"),
        None => format!("TLS: {message}"),
    }
}

/// A client TLS stream whose first bytes were read to learn the server's verdict, and
/// are handed out again before the rest.
pub struct Primed {
    first: Vec<u8>,
    at: usize,
    stream: tokio_rustls::client::TlsStream<TcpStream>,
}

impl AsyncRead for Primed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.first.len() {
            let n = (this.first.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.first[this.at..this.at + n]);
            this.at += n;
            if this.at == this.first.len() {
                this.first = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Primed {
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
