//! Connections: dialling a server, asking it `Locate`, and finding the master among a list
//! of endpoints. Everything that turns tonic's transport errors into [`Error::Transport`]
//! messages that name the address (with the table's `UNREACHABLE` when nothing was sent,
//! `OUTCOME_UNKNOWN` when something may have been) lives here, and the choice between plaintext and TLS
//! ([`connect_endpoint`]: TLS when the process has an identity installed;
//! docs/security.md).

use crate::error::{error_chain, Error};
use crate::types::LocateInfo;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_proto::WarrenError;
use warren_tls::Tls;

/// How many `Locate` redirects (`master` pointing elsewhere) to follow before giving up.
const MAX_LOCATE_HOPS: usize = 3;
/// HTTP/2 PINGs on connections to cells ([`dial`]): how often, and how long the answer
/// may take before the connection (and every call on it) is failed. Connections to
/// proxies ([`dial_with`] with `pings: false`) send none: a fleet of tens of thousands of
/// clients would cost a proxy a PING per client per second, more than their KeepAlives;
/// a client of a frozen proxy moves to another one when its lease runs out instead.
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// While [`find_cell_master`] waits for a replica that does not answer, it asks the ones
/// that did again this often.
const REASK_EVERY: Duration = Duration::from_millis(250);

/// A connection to one server.
#[derive(Clone, Debug)]
pub struct Conn {
    /// The address as the user (or `Locate`) gave it, for messages.
    pub addr: String,
    /// The gRPC stub; cheap to clone (a handle on a shared HTTP/2 channel that reconnects).
    pub client: WarrenClient<Channel>,
}

/// `HOST:PORT` → `http://HOST:PORT`; anything with a scheme is left alone.
fn uri_for(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// Connects to `addr`, waiting at most `timeout`, with HTTP/2 PINGs (a cell).
pub async fn dial(addr: &str, timeout: Duration) -> Result<Conn, Error> {
    dial_with(addr, timeout, true).await
}

/// Connects to `addr`, waiting at most `timeout`; `pings`: whether the connection sends
/// HTTP/2 PINGs ([`PING_EVERY`]) — yes to a cell, no to a proxy. TLS as the process's
/// installed identity says ([`connect_endpoint`]).
pub async fn dial_with(addr: &str, timeout: Duration, pings: bool) -> Result<Conn, Error> {
    dial_as(addr, timeout, pings, None).await
}

/// [`dial_with`] with the TLS identity `tls` (a session's [`crate::ClientOptions::tls`]);
/// `None`: the process's installed identity, if any ([`connect_endpoint_as`]).
pub async fn dial_as(
    addr: &str,
    timeout: Duration,
    pings: bool,
    tls: Option<&Arc<Tls>>,
) -> Result<Conn, Error> {
    let endpoint = Endpoint::from_shared(uri_for(addr))
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "endpoint {addr:?} is not a valid HOST:PORT: {}",
                error_chain(&e, &e.to_string())
            ))
        })?
        .connect_timeout(timeout)
        .tcp_nodelay(true);
    // A server that stops answering without closing the connection (a frozen process,
    // a partition) fails the calls waiting on it within a few seconds, so they are
    // retried at the new master rather than held until it wakes (docs/design.md §9).
    let endpoint = if pings {
        endpoint
            .http2_keep_alive_interval(PING_EVERY)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true)
    } else {
        endpoint
    };
    let channel = match tokio::time::timeout(timeout, connect_endpoint_as(&endpoint, tls)).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => {
            // Tonic's own message is just "transport error"; the causes say what happened.
            let mut cause = error_chain(&e, "");
            if cause.is_empty() {
                cause = e.to_string();
            }
            // No connection, so nothing sent: DNS, refused, a TLS handshake that failed.
            return Err(Error::unreachable(format!("cannot reach {addr}: {cause}")));
        }
        Err(_) => {
            return Err(Error::unreachable(format!(
                "cannot reach {addr}: no connection within {timeout:?}"
            )))
        }
    };
    Ok(Conn {
        addr: addr.to_string(),
        client: WarrenClient::new(channel),
    })
}

/// Connects `endpoint`: over mutual TLS with the process's identity if one is installed
/// ([`warren_tls::install`], done by [`crate::ClientOptions::tls`] or by the `warren`
/// commands given `--cacert`), else in plaintext. Every dial of the library, the cells
/// and the proxies goes through here.
pub async fn connect_endpoint(endpoint: &Endpoint) -> Result<Channel, tonic::transport::Error> {
    connect_endpoint_as(endpoint, None).await
}

/// [`connect_endpoint`] with the identity `tls` if given, else the process's.
pub async fn connect_endpoint_as(
    endpoint: &Endpoint,
    tls: Option<&Arc<Tls>>,
) -> Result<Channel, tonic::transport::Error> {
    #[cfg(feature = "sim")]
    if let Some(connect) = sim::CONNECTOR.get() {
        let connect = connect.clone();
        let connector = tower::service_fn(move |uri: tonic::transport::Uri| {
            let dialled = connect(uri);
            async move { dialled.await.map(hyper_util::rt::TokioIo::new) }
        });
        return endpoint.connect_with_connector(connector).await;
    }
    match tls.cloned().or_else(warren_tls::installed) {
        Some(tls) => warren_tls::client::connect(endpoint, tls).await,
        None => endpoint.connect().await,
    }
}

/// The deterministic simulation's seam (feature `sim`, which only warren-sim turns on):
/// a process-wide connector that replaces TCP in every dial of this library, so sessions
/// (and the cells' own dials) run on the simulated network (docs/reliability.md,
/// "Deterministic simulation"). Without one installed, dials are as in any build.
#[cfg(feature = "sim")]
pub mod sim {
    use futures::future::BoxFuture;
    use std::sync::{Arc, OnceLock};

    /// A byte stream the simulated network connected.
    pub trait SimIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
    impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> SimIo for T {}

    /// Dials the server a URI names on the simulated network.
    pub type Connector = Arc<
        dyn Fn(tonic::transport::Uri) -> BoxFuture<'static, std::io::Result<Box<dyn SimIo>>>
            + Send
            + Sync,
    >;

    pub(super) static CONNECTOR: OnceLock<Connector> = OnceLock::new();

    thread_local! {
        /// The state of [`next_salt`]'s sequence on the thread running a simulation.
        static SALT: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
    }

    thread_local! {
        /// The state of [`next_client_key`]'s sequence: apart from the salts', so that
        /// drawing keys leaves the salts of runs with one proxy as they were.
        static KEY: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
    }

    /// Seeds the salts this thread's sessions draw where they would read the wall clock,
    /// and the keys that order a session's proxies (`None`: the wall clock again). A
    /// simulation runs every host on one thread.
    pub fn set_salt_seed(seed: Option<u64>) {
        SALT.with(|s| s.set(seed));
        KEY.with(|k| k.set(seed.map(|s| s ^ 0x4B45_595F_4F52_4445)));
    }

    /// The next value of a splitmix64 sequence kept in `cell`, if it is seeded.
    fn next_of(cell: &std::cell::Cell<Option<u64>>) -> Option<u64> {
        let state = cell.get()?.wrapping_add(0x9E37_79B9_7F4A_7C15);
        cell.set(Some(state));
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Some(z ^ (z >> 31))
    }

    /// The next salt of this thread's sequence (splitmix64), if [`set_salt_seed`] set one.
    pub(crate) fn next_salt() -> Option<u64> {
        SALT.with(next_of)
    }

    /// The next key to order a new session's proxies by, if [`set_salt_seed`] set a seed
    /// (`crate::proxies::client_key` otherwise reads the clock and the OS's randomness).
    pub(crate) fn next_client_key() -> Option<[u8; 16]> {
        KEY.with(|k| {
            let (a, b) = (next_of(k)?, next_of(k)?);
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&a.to_le_bytes());
            key[8..].copy_from_slice(&b.to_le_bytes());
            Some(key)
        })
    }

    /// Installs `connector` for every later dial of this process. Once only: a second
    /// call is refused (returns `false`) and the first connector stays.
    pub fn install_connector(connector: Connector) -> bool {
        CONNECTOR.set(connector).is_ok()
    }

    /// One KeepAlive as its session saw it: when it was sent, and what came back (the
    /// lease granted, or the failure; a call that got no reply in time is
    /// `OUTCOME_UNKNOWN`).
    #[derive(Debug)]
    pub struct KeepAliveSeen {
        /// The session's id, in hex (as [`SessionId`](crate::SessionId) displays it).
        pub session: String,
        /// When the session sent it, on the host's tokio clock.
        pub sent_at: tokio::time::Instant,
        /// The lease granted, or the failure.
        pub outcome: Result<std::time::Duration, crate::Error>,
    }

    /// What a simulation does with each KeepAlive this thread's sessions complete.
    pub type KeepAliveObserver = std::rc::Rc<dyn Fn(KeepAliveSeen)>;

    thread_local! {
        static KEEPALIVES: std::cell::RefCell<Option<KeepAliveObserver>> =
            const { std::cell::RefCell::new(None) };
    }

    /// Sets (or, with `None`, clears) the observer of this thread's KeepAlives: the
    /// simulation records each in its history. A simulation runs every host on one thread.
    pub fn set_keepalive_observer(observer: Option<KeepAliveObserver>) {
        KEEPALIVES.with(|k| *k.borrow_mut() = observer);
    }

    /// Tells this thread's observer, if any, how a KeepAlive ended.
    pub(crate) fn observe_keepalive(
        id: crate::SessionId,
        sent_at: tokio::time::Instant,
        outcome: &Result<
            Result<tonic::Response<warren_proto::pb::KeepAliveResponse>, tonic::Status>,
            tokio::time::error::Elapsed,
        >,
        addr: &str,
    ) {
        let Some(observer) = KEEPALIVES.with(|k| k.borrow().clone()) else {
            return;
        };
        let outcome = match outcome {
            Ok(Ok(reply)) => Ok(std::time::Duration::from_millis(reply.get_ref().lease_ms)),
            Ok(Err(status)) => Err(crate::Error::from_status(status, addr)),
            Err(_) => Err(crate::Error::outcome_unknown(format!(
                "KeepAlive to {addr} got no reply in time"
            ))),
        };
        observer(KeepAliveSeen {
            session: id.to_string(),
            sent_at,
            outcome,
        });
    }
}

/// Asks the server behind `conn` who is master.
pub async fn locate_at(conn: &Conn, timeout: Duration) -> Result<LocateInfo, Error> {
    let mut client = conn.client.clone();
    match tokio::time::timeout(timeout, client.locate(pb::LocateRequest::default())).await {
        Ok(Ok(reply)) => Ok(LocateInfo::from_wire(&conn.addr, reply.into_inner())),
        Ok(Err(status)) => Err(Error::from_status(&status, &conn.addr)),
        Err(_) => Err(Error::timed_out(&conn.addr, timeout)),
    }
}

/// Tries `endpoints` in order and answers from the first that replies to `Locate`.
pub async fn locate(endpoints: &[String], timeout: Duration) -> Result<LocateInfo, Error> {
    let mut errors = Vec::new();
    for addr in endpoints {
        let attempt = async { locate_at(&dial(addr, timeout).await?, timeout).await };
        match attempt.await {
            Ok(info) => return Ok(info),
            Err(e) => errors.push(e),
        }
    }
    Err(combine(errors))
}

/// Finds the master: tries `endpoints` in order, follows `Locate`'s `master` when the
/// replica that answered is not it, and returns a connection to the master with its answer.
/// `pings`: as for [`dial_with`] (yes for a cell's replicas, no for proxies).
pub(crate) async fn find_master(
    endpoints: &[String],
    timeout: Duration,
    pings: bool,
    tls: Option<&Arc<Tls>>,
) -> Result<(Conn, LocateInfo), Error> {
    let mut errors = Vec::new();
    for addr in endpoints {
        match master_via_as(addr, timeout, pings, tls).await {
            Ok(found) => return Ok(found),
            Err(e) => {
                tracing::debug!(%addr, %e, "endpoint did not lead to a master");
                errors.push(e);
            }
        }
    }
    Err(combine(errors))
}

/// One error for a list of endpoints that all failed: the last Warren (or other
/// non-transport) error if there is one, since it says more than "unreachable"; else every
/// transport failure, so each address is accounted for: `UNREACHABLE` when none of them
/// was sent, else `OUTCOME_UNKNOWN`.
fn combine(mut errors: Vec<Error>) -> Error {
    if let Some(i) = errors
        .iter()
        .rposition(|e| !matches!(e, Error::Transport { .. }))
    {
        return errors.swap_remove(i);
    }
    let messages: Vec<String> = errors.iter().map(Error::message).collect();
    if messages.is_empty() {
        return Error::InvalidArgument("no endpoints given".into());
    }
    if errors.iter().all(|e| !e.may_have_taken_effect()) {
        Error::unreachable(messages.join("; "))
    } else {
        Error::outcome_unknown(messages.join("; "))
    }
}

/// Follows `Locate` answers from `addr` (a cell's replica) to the master.
pub async fn master_via(addr: &str, timeout: Duration) -> Result<(Conn, LocateInfo), Error> {
    master_via_with(addr, timeout, true).await
}

/// [`master_via`], with or without HTTP/2 PINGs on the connections ([`dial_with`]).
pub async fn master_via_with(
    addr: &str,
    timeout: Duration,
    pings: bool,
) -> Result<(Conn, LocateInfo), Error> {
    master_via_as(addr, timeout, pings, None).await
}

/// [`master_via_with`] with the TLS identity `tls` ([`dial_as`]).
pub async fn master_via_as(
    addr: &str,
    timeout: Duration,
    pings: bool,
    tls: Option<&Arc<Tls>>,
) -> Result<(Conn, LocateInfo), Error> {
    let mut conn = dial_as(addr, timeout, pings, tls).await?;
    for _ in 0..=MAX_LOCATE_HOPS {
        let info = locate_at(&conn, timeout).await?;
        if info.is_master {
            return Ok((conn, info));
        }
        if info.master.is_empty() {
            return Err(Error::Warren(warren_proto::WarrenError::not_master("")));
        }
        conn = dial_as(&info.master, timeout, pings, tls).await?;
    }
    // Only `Locate`s were sent, which change nothing.
    Err(Error::unreachable(format!(
        "{addr}: gave up after following {MAX_LOCATE_HOPS} master redirects"
    )))
}

/// Finds a cell's master by asking every replica in `endpoints` at once (each dial and
/// `Locate` bounded by `timeout`), so that one replica that does not answer (a frozen
/// process, a partition) costs one `timeout` per round instead of one per replica in
/// turn. The first replica that says it is master wins. If none does, the master the
/// others name (at the highest epoch) is tried; if it cannot be reached either, the
/// replicas that named it are told so ([`report_unreachable`]; docs/design.md §9, "A
/// master nobody can reach") and the error says which master did not answer.
///
/// For cells only: a proxy list has an order of preference, which this ignores.
pub async fn find_cell_master(
    endpoints: &[String],
    timeout: Duration,
) -> Result<(Conn, LocateInfo), Error> {
    find_cell_master_as(endpoints, timeout, None).await
}

/// [`find_cell_master`] with the TLS identity `tls` ([`dial_as`]).
pub async fn find_cell_master_as(
    endpoints: &[String],
    timeout: Duration,
    tls: Option<&Arc<Tls>>,
) -> Result<(Conn, LocateInfo), Error> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut asks: FuturesUnordered<_> = endpoints
        .iter()
        .map(|addr| async move {
            let r = async {
                let conn = dial_as(addr, timeout, true, tls).await?;
                let info = locate_at(&conn, timeout).await?;
                Ok::<_, Error>((conn, info))
            }
            .await;
            (addr.clone(), r)
        })
        .collect();
    let mut answered: Vec<(Conn, LocateInfo)> = Vec::new();
    let mut errors = Vec::new();
    let mut silent: Vec<String> = Vec::new();
    // While a replica keeps us waiting (frozen, cut off), the ones that answered "not me"
    // are asked again now and then: one of them may be elected meanwhile.
    let mut again = tokio::time::interval(REASK_EVERY);
    again.tick().await;
    loop {
        tokio::select! {
            next = asks.next() => match next {
                None => break,
                Some((_, Ok((conn, info)))) if info.is_master => return Ok((conn, info)),
                Some((_, Ok(answer))) => answered.push(answer),
                Some((addr, Err(e))) => {
                    silent.push(addr);
                    errors.push(e);
                }
            },
            _ = again.tick(), if !answered.is_empty() => {
                for (conn, info) in answered.iter_mut() {
                    if let Ok(now) = locate_at(conn, REASK_EVERY).await {
                        if now.is_master {
                            return Ok((conn.clone(), now));
                        }
                        *info = now;
                    }
                }
            }
        }
    }
    let answers: Vec<LocateInfo> = answered.into_iter().map(|(_, info)| info).collect();
    // Nobody said "me": follow the master the replicas name, the newest epoch first.
    // A replica naming itself is not master (it just said so): no lead.
    let Some(named) = answers
        .iter()
        .filter(|a| !a.master.is_empty() && a.master != a.endpoint)
        .max_by_key(|a| a.epoch)
        .map(|a| (a.master.clone(), a.epoch))
    else {
        errors.push(Error::Warren(WarrenError::not_master("")));
        return Err(combine(errors));
    };
    let (master, epoch) = named;
    if !silent.contains(&master) {
        match master_via_as(&master, timeout, true, tls).await {
            Ok(found) => return Ok(found),
            Err(e) => errors.push(e),
        }
    }
    let witnesses: Vec<String> = answers
        .iter()
        .filter(|a| a.master == master)
        .map(|a| a.endpoint.clone())
        .collect();
    report_unreachable_as(&witnesses, &master, epoch, timeout, tls).await;
    // Only `Locate`s were sent, which change nothing.
    Err(Error::unreachable(format!(
        "the master the replicas name, {master} (epoch {epoch}), did not answer within \
         {timeout:?}; told {} so",
        witnesses.join(", ")
    )))
}

/// Tells each of `replicas` that `master` (of `epoch`) could not be reached from here
/// (a `Locate` carrying the report; docs/design.md §9, "A master nobody can reach"). Best
/// effort: each is bounded by `timeout` and failures are ignored.
pub async fn report_unreachable(replicas: &[String], master: &str, epoch: u64, timeout: Duration) {
    report_unreachable_as(replicas, master, epoch, timeout, None).await
}

/// [`report_unreachable`] with the TLS identity `tls` ([`dial_as`]).
async fn report_unreachable_as(
    replicas: &[String],
    master: &str,
    epoch: u64,
    timeout: Duration,
    tls: Option<&Arc<Tls>>,
) {
    let tell = |addr: String| async move {
        let attempt = async {
            let conn = dial_as(&addr, timeout, true, tls).await.ok()?;
            let mut client = conn.client.clone();
            let request = pb::LocateRequest {
                unreachable_master: master.to_string(),
                unreachable_epoch: epoch,
            };
            tokio::time::timeout(timeout, client.locate(request))
                .await
                .ok()
        };
        if attempt.await.is_none() {
            tracing::debug!(%addr, %master, "could not report the unreachable master");
        }
    };
    futures::future::join_all(replicas.iter().cloned().map(tell)).await;
}

/// Whether a failed call's status means the server was not reached (as opposed to an
/// answer): no Warren detail, and a code that tonic uses for connection trouble.
pub fn is_unreachable(status: &tonic::Status) -> bool {
    WarrenError::from_status(status).is_none()
        && (matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
        ) || is_h2_failure(status))
}

/// Whether a failed call's status says the request never left this process: the channel
/// could not (re)connect to the server (connection refused, no route, a TLS handshake
/// refused), so the server cannot have acted on it and sending it again is safe. False for
/// everything else, including a connection lost after the request was written (reset,
/// GOAWAY, a deadline): then the outcome is unknown.
pub fn not_sent(status: &tonic::Status) -> bool {
    if WarrenError::from_status(status).is_some() {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | AddrNotAvailable | NetworkUnreachable | HostUnreachable
            ) {
                return true;
            }
        }
        // hyper-util's connector error, whose type is private: "tcp connect error",
        // "dns error", "tcp open error" (every failure to open the connection).
        let text = e.to_string();
        if text.starts_with("tcp connect error")
            || text.starts_with("tcp open error")
            || text.starts_with("dns error")
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// An HTTP/2 connection-level failure, which tonic reports as `INTERNAL` with no Warren
/// error: e.g. the GOAWAY of a server shutting down ("h2 protocol error: … not a result of
/// an error"). A Warren server always attaches a Warren error to its own failures, so this
/// is the connection, not an answer.
fn is_h2_failure(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Internal && status.message().starts_with("h2 protocol error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(uri_for("127.0.0.1:7100"), "http://127.0.0.1:7100");
        assert_eq!(uri_for("https://h:1"), "https://h:1");
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_a_transport_error_naming_it() {
        // Port 1 on localhost: nothing listens there.
        let e = locate(&["127.0.0.1:1".to_string()], Duration::from_secs(5))
            .await
            .expect_err("nothing listens on port 1");
        assert_eq!(e.code_name(), "UNREACHABLE");
        assert!(e.message().starts_with("cannot reach 127.0.0.1:1: "), "{e}");
    }

    /// A call on a channel whose server is gone fails before anything is sent: `not_sent`
    /// says so. A status from a server, or a plain `UNAVAILABLE` with no cause, is not.
    #[tokio::test]
    async fn a_refused_connection_is_not_sent() {
        // Port 1 on localhost: nothing listens there.
        let channel = Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let status = WarrenClient::new(channel)
            .locate(pb::LocateRequest::default())
            .await
            .expect_err("nothing listens on port 1");
        assert!(not_sent(&status), "{status:?}");
        assert!(!not_sent(&tonic::Status::unavailable("connection reset")));
        let answer: tonic::Status = WarrenError::not_master("").into();
        assert!(!not_sent(&answer));
    }

    #[test]
    fn combined_errors() {
        let t = |m: &str| Error::unreachable(m);
        assert_eq!(
            combine(vec![t("cannot reach a:1: x"), t("cannot reach b:2: y")]),
            t("cannot reach a:1: x; cannot reach b:2: y")
        );
        // One that may have been sent makes the whole outcome unknown.
        let lost = Error::outcome_unknown("lost the call to b:2: reset");
        assert_eq!(
            combine(vec![t("cannot reach a:1: x"), lost]),
            Error::outcome_unknown("cannot reach a:1: x; lost the call to b:2: reset")
        );
        let not_master = Error::Warren(warren_proto::WarrenError::not_master(""));
        assert_eq!(combine(vec![not_master.clone(), t("z")]), not_master);
        assert_eq!(combine(vec![]).code_name(), "INVALID_ARGUMENT");
    }

    #[tokio::test]
    async fn malformed_endpoint_is_invalid_argument() {
        let e = dial("not a host", Duration::from_secs(1))
            .await
            .expect_err("spaces are not allowed");
        assert_eq!(e.code_name(), "INVALID_ARGUMENT", "{e}");
    }
}
