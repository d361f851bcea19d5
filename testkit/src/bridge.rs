//! A fault-injecting TCP proxy for tests (after etcd's `integration/bridge.go`). A
//! [`Bridge`] listens on `127.0.0.1:0` and forwards every accepted connection to one target;
//! put it between two tiers (client ↔ proxy, proxy ↔ cell, cell ↔ etcd) and then pause,
//! blackhole, drop or refuse traffic. Every control takes effect at once on existing and
//! new connections: the fault state lives in a `watch` channel every pump listens to.
//!
//! Dropping the bridge stops its accept loop and closes every connection it carries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long the bridge waits to connect to its target before closing the accepted side.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-direction copy buffer.
const BUF_SIZE: usize = 16 * 1024;

/// The faults currently injected. One value shared by every connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Faults {
    /// Stop reading (so bytes wait in kernel buffers and senders feel backpressure);
    /// bytes already read are held and delivered on resume.
    paused: bool,
    /// Read and discard everything, both directions (and hold back EOF).
    blackholed: bool,
    /// Read and discard what the target sends back (requests still arrive).
    replies_lost: bool,
    /// Close new connections as soon as they are accepted.
    refusing: bool,
    /// Bumped by `drop_connections`: a connection accepted under an older generation closes.
    generation: u64,
}

/// A TCP proxy to one target with fault controls. See the module docs.
pub struct Bridge {
    addr: SocketAddr,
    target: SocketAddr,
    faults: watch::Sender<Faults>,
    /// Connections currently open (both sides connected and not yet closed).
    open: Arc<AtomicUsize>,
    /// The accept loop; it owns the connection tasks, so aborting it closes them all.
    accept: JoinHandle<()>,
}

impl Bridge {
    /// Binds `127.0.0.1:0` and starts forwarding to `target`. The returned bridge is
    /// accepting connections.
    pub async fn start(target: SocketAddr) -> Bridge {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind bridge port");
        let addr = listener.local_addr().expect("bridge local addr");
        let (faults, _) = watch::channel(Faults::default());
        let open = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            target,
            faults.subscribe(),
            open.clone(),
        ));
        Bridge {
            addr,
            target,
            faults,
            open,
            accept,
        }
    }

    /// The address clients connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Stops forwarding in both directions; connections stay open. Senders see backpressure
    /// once kernel buffers fill; everything sent is delivered after [`resume`](Self::resume).
    pub fn pause(&self) {
        self.faults.send_modify(|f| f.paused = true);
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) {
        self.faults.send_modify(|f| f.paused = false);
    }

    /// Silently discards every byte in both directions (a network partition whose packets
    /// are lost): connections stay open and new ones are accepted, but nothing gets through,
    /// not even a close (EOF is held until [`unblackhole`](Self::unblackhole)).
    pub fn blackhole(&self) {
        self.faults.send_modify(|f| f.blackholed = true);
    }

    /// Undoes [`blackhole`](Self::blackhole). Bytes discarded meanwhile stay lost.
    pub fn unblackhole(&self) {
        self.faults.send_modify(|f| f.blackholed = false);
    }

    /// While `true`, silently discards every byte the target sends back, on every
    /// connection (an asymmetric partition): requests still arrive and take effect, and
    /// their answers are lost. Bytes discarded meanwhile stay lost.
    pub fn lose_replies(&self, lose: bool) {
        self.faults.send_modify(|f| f.replies_lost = lose);
    }

    /// Closes every current connection abruptly (RST on both sides). New connections work.
    pub fn drop_connections(&self) {
        self.faults.send_modify(|f| f.generation += 1);
    }

    /// While `true`, new connections are closed (RST) as soon as they are accepted, before
    /// the target is dialed; existing connections are unaffected.
    pub fn refuse(&self, refuse: bool) {
        self.faults.send_modify(|f| f.refusing = refuse);
    }

    /// Connections currently carried (client and target side both open).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    faults: watch::Receiver<Faults>,
    open: Arc<AtomicUsize>,
) {
    // Owned here so that aborting this task (Bridge::drop) aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    // Transient (e.g. EMFILE): back off briefly rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let now = *faults.borrow();
                if now.refusing {
                    abort_close(client);
                    continue;
                }
                conns.spawn(connection(client, target, now.generation, faults.clone(), open.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Forwards one connection until both directions finish, either side errors, or
/// `drop_connections` moves the generation past `generation`.
async fn connection(
    client: TcpStream,
    target: SocketAddr,
    generation: u64,
    faults: watch::Receiver<Faults>,
    open: Arc<AtomicUsize>,
) {
    let dropped = {
        let mut faults = faults.clone();
        async move {
            // Err means the bridge is gone; the task is being aborted anyway.
            let _ = faults.wait_for(|f| f.generation != generation).await;
        }
    };
    tokio::pin!(dropped);
    let server = tokio::select! {
        s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)) => s,
        _ = &mut dropped => {
            abort_close(client);
            return;
        }
    };
    let Ok(Ok(server)) = server else {
        abort_close(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    open.fetch_add(1, Ordering::SeqCst);
    let mut client = client;
    let mut server = server;
    let clean = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let up = pump(cr, sw, faults.clone(), false);
        let down = pump(sr, cw, faults.clone(), true);
        tokio::select! {
            r = async { tokio::try_join!(up, down) } => r.is_ok(),
            _ = &mut dropped => false,
        }
    };
    open.fetch_sub(1, Ordering::SeqCst);
    if !clean {
        abort_close(client);
        abort_close(server);
    }
}

/// Copies `src` to `dst` under the current faults until EOF (then half-closes `dst`).
/// `replies`: this is the target-to-client direction.
async fn pump<R, W>(
    mut src: R,
    mut dst: W,
    mut faults: watch::Receiver<Faults>,
    replies: bool,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        // Do not read while paused: the bytes stay in the kernel and the sender is held.
        if faults.wait_for(|f| !f.paused).await.is_err() {
            return Ok(());
        }
        let n = tokio::select! {
            r = src.read(&mut buf) => r?,
            // A fault changed (e.g. pause): re-evaluate before reading. `read` is
            // cancel-safe, so nothing is lost.
            c = faults.changed() => {
                if c.is_err() {
                    return Ok(());
                }
                continue;
            }
        };
        // Faults may have changed while we were blocked in `read`: bytes read before a
        // pause are held until resume; under a blackhole they (or EOF) are dropped/held.
        let Ok(now) = faults.wait_for(|f| !f.paused).await.map(|f| *f) else {
            return Ok(());
        };
        if n == 0 {
            // Hold back the close while blackholed: a partition does not deliver FINs.
            if faults.wait_for(|f| !f.blackholed).await.is_err() {
                return Ok(());
            }
            let _ = dst.shutdown().await;
            return Ok(());
        }
        if now.blackholed || (replies && now.replies_lost) {
            continue;
        }
        dst.write_all(&buf[..n]).await?;
    }
}

/// Closes `stream` with RST (zero linger), so the peer sees a reset rather than a clean EOF.
fn abort_close(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
