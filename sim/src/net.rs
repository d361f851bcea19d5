//! The simulated network's side of the seams: turmoil's TCP streams as the connections a
//! cell serves ([`incoming`]) and as the streams every Warren dial opens
//! ([`install_connector`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use warren_client::transport::sim::{Connector, SimIo};

/// One accepted connection on the simulated network.
pub struct SimConn(turmoil::net::TcpStream);

impl AsyncRead for SimConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for SimConn {
    /// Plaintext: the simulated cell authenticates nobody.
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// The connections `listener` accepts, as the stream a cell serves.
pub fn incoming(
    listener: turmoil::net::TcpListener,
) -> impl futures::Stream<Item = io::Result<SimConn>> + Send + 'static {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(s, _)| SimConn(s));
        Some((accepted, listener))
    })
}

/// Makes every Warren dial of this process open a turmoil stream (to the host and port
/// its URI names) instead of a TCP connection. Process-wide and idempotent: every
/// simulation of the process shares it, and each dial goes out from the simulated host
/// whose code makes it.
pub fn install_connector() {
    let connector: Connector = Arc::new(|uri: tonic::transport::Uri| {
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} names no host"))
            })?;
            let port = uri.port_u16().unwrap_or(80);
            let stream = turmoil::net::TcpStream::connect((host, port)).await?;
            Ok(Box::new(stream) as Box<dyn SimIo>)
        })
    });
    // A second install (another simulation of this process) keeps the first: the same.
    let _ = warren_client::transport::sim::install_connector(connector);
}
