//! The session state machine end to end, against real in-process cells: jeopardy and safe
//! across a master restart (a fail-over with the embedded store), expiry after the grace
//! period, calls held back in jeopardy, the fail-over event and the cache flush, epoch
//! adoption with event numbering restarting, and `Close` re-sent while a new master
//! recovers.
//!
//! A restarted cell listens on a new port, so clients reach cells through a [`Relay`]: a
//! TCP forwarder whose target can be switched (or cut) while the client keeps its endpoint.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use warren_client::{
    ClientOptions, ErrorCode, Event, EventMask, EventStream, LockMode, OpenOptions, Session,
    SessionState,
};
use warren_testkit::{wait_until, Bridge, Cell, TestCell};

const LEASE: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(6);

/// A TCP forwarder on `127.0.0.1:0` to a switchable target. With no target it refuses
/// (closes) new connections; switching or cutting closes the current ones. Muted, it
/// forwards requests and throws the replies away (a reply lost on its way back).
struct Relay {
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    mute: Arc<AtomicBool>,
    conns: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let target = Arc::new(Mutex::new(Some(target)));
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let mute = Arc::new(AtomicBool::new(false));
        let accept = {
            let target = target.clone();
            let conns = conns.clone();
            let mute = mute.clone();
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let Some(to) = *target.lock().expect("relay lock") else {
                        continue; // dropped: refused
                    };
                    let mute = mute.clone();
                    conns.lock().expect("relay lock").spawn(async move {
                        if let Ok(outbound) = TcpStream::connect(to).await {
                            relay_connection(inbound, outbound, mute).await;
                        }
                    });
                }
            })
        };
        Relay {
            addr,
            target,
            mute,
            conns,
            accept,
        }
    }

    fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Whether the replies from the target are thrown away (requests still go through).
    fn mute_replies(&self, mute: bool) {
        self.mute.store(mute, Ordering::SeqCst);
    }

    /// Closes every connection and sends new ones to `target` (`None`: refuse them).
    fn switch(&self, target: Option<SocketAddr>) {
        *self.target.lock().expect("relay lock") = target;
        self.conns.lock().expect("relay lock").abort_all();
    }
}

/// Copies requests from `inbound` to `outbound`, and replies back unless `mute` is set
/// (then they are read and dropped), until either side closes.
async fn relay_connection(inbound: TcpStream, outbound: TcpStream, mute: Arc<AtomicBool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut in_read, mut in_write) = inbound.into_split();
    let (mut out_read, mut out_write) = outbound.into_split();
    let requests = tokio::io::copy(&mut in_read, &mut out_write);
    let replies = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match out_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !mute.load(Ordering::SeqCst) && in_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = requests => {}
        _ = replies => {}
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Logs to the test's output when `RUST_LOG` asks for them (e.g.
/// `RUST_LOG=warren_client=debug`).
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn cell_on(dir: &Path) -> TestCell {
    Cell::builder()
        .lease(LEASE)
        .ephemeral_cleanup(Duration::from_secs(60))
        .data_dir(dir)
        .run()
        .await
}

fn addr_of(cell: &TestCell) -> SocketAddr {
    cell.addr().parse().expect("cell addr")
}

async fn session(endpoints: Vec<String>) -> Session {
    Session::connect_with(
        ClientOptions::new(endpoints)
            .grace_period(GRACE)
            .rpc_timeout(Duration::from_secs(3)),
    )
    .await
    .expect("connect")
}

/// The next event, failing the test (naming `what` was awaited) after `within`.
async fn next_event(events: &mut EventStream, within: Duration, what: &str) -> Event {
    match tokio::time::timeout(within, events.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the event stream ended while waiting for {what}"),
        Err(_) => panic!("no event within {within:?} while waiting for {what}"),
    }
}

#[tokio::test]
async fn jeopardy_then_safe_across_a_master_restart() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let cell = cell_on(dir.path()).await;
    let relay = Relay::start(addr_of(&cell)).await;
    // A dead endpoint first: looking for the master goes round the list.
    let s = session(vec!["127.0.0.1:1".into(), relay.endpoint()]).await;
    let other = session(vec![cell.addr()]).await;
    let epoch = s.epoch();
    let mut events = s.events();

    let (lock, _) = s
        .open(
            "/leader",
            OpenOptions::new().write().create_file(b"me".to_vec()),
        )
        .await
        .expect("create");
    let seq = lock
        .acquire(LockMode::Exclusive, Some(Duration::from_secs(1)))
        .await
        .expect("lock");
    let (f, _) = s
        .open("/leader", OpenOptions::new().read())
        .await
        .expect("open for read");
    assert_eq!(f.contents().await.expect("read").0, b"me");
    assert_eq!(f.contents().await.expect("cached read").0, b"me");
    let before = s.cache_stats();
    assert!(before.hits >= 1 && before.entries >= 1, "{before:?}");

    // The master dies; the relay refuses connections meanwhile.
    other.close().await.expect("close other");
    relay.switch(None);
    cell.stop().await.expect("stop cell");
    let e = next_event(&mut events, LEASE * 2, "jeopardy").await;
    assert_eq!(e, Event::Jeopardy);
    assert_eq!(s.state(), SessionState::Jeopardy);
    let flushed = s.cache_stats();
    assert_eq!(flushed.entries, 0, "the cache was emptied: {flushed:?}");
    assert!(flushed.flushes > before.flushes);

    // A call made in jeopardy waits: it neither fails nor answers from the cache.
    let read = tokio::spawn(async move {
        let r = f.contents().await;
        (f, r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!read.is_finished(), "a read went through in jeopardy");

    // A new master on the same store, reachable again within the grace period.
    let cell = cell_on(dir.path()).await;
    relay.switch(Some(addr_of(&cell)));
    assert_eq!(next_event(&mut events, GRACE, "safe").await, Event::Safe);
    assert_eq!(
        next_event(&mut events, Duration::from_secs(5), "the fail-over event").await,
        Event::MasterFailover
    );
    assert_eq!(s.state(), SessionState::Safe);
    assert_eq!(s.epoch(), epoch + 1);

    // The held call completes with the data; the handle (from the old epoch) works.
    let (f, r) = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the held read finished")
        .expect("join");
    assert_eq!(r.expect("read after failover").0, b"me");
    // The lock survived: someone else cannot take it; our sequencer is current.
    let rival = session(vec![cell.addr()]).await;
    let (rh, _) = rival
        .open("/leader", OpenOptions::new().write())
        .await
        .expect("rival opens");
    let e = rh
        .try_acquire(LockMode::Exclusive)
        .await
        .expect_err("still held");
    assert_eq!(e.code(), Some(ErrorCode::LockHeld));
    assert!(rival.check_sequencer(&seq).await.expect("check"));
    assert_eq!(lock.get_sequencer().await.expect("get"), seq);
    f.close().await;
    lock.close().await;
    rival.close().await.expect("close rival");
    s.close().await.expect("close");
    assert_eq!(events.recv().await, None, "stream ends with the session");
}

#[tokio::test]
async fn a_quick_restart_is_a_failover_without_jeopardy_and_events_renumber() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let cell = Cell::builder()
        .lease(Duration::from_secs(10))
        .data_dir(dir.path())
        .run()
        .await;
    let relay = Relay::start(addr_of(&cell)).await;
    let s = session(vec![relay.endpoint()]).await;
    let writer = session(vec![relay.endpoint()]).await;
    let mut events = s.events();
    let (w, _) = writer
        .open("/f", OpenOptions::new().write().create_file(b"0".to_vec()))
        .await
        .expect("create");
    let (watched, _) = s
        .open(
            "/f",
            OpenOptions::new()
                .read()
                .events(EventMask::CONTENTS_MODIFIED),
        )
        .await
        .expect("watch");
    // Several events in the first epoch, so the acknowledged seq is well above 1.
    for i in 1..=3 {
        w.set_contents(format!("{i}")).await.expect("write");
        assert_eq!(
            next_event(
                &mut events,
                Duration::from_secs(5),
                "a first-epoch contents_modified"
            )
            .await,
            Event::ContentsModified {
                path: "/ls/local/f".into()
            }
        );
    }
    let epoch = s.epoch();

    relay.switch(None);
    cell.stop().await.expect("stop");
    let cell = Cell::builder()
        .lease(Duration::from_secs(10))
        .data_dir(dir.path())
        .run()
        .await;
    relay.switch(Some(addr_of(&cell)));

    // No jeopardy (the local lease outlived the outage), just the fail-over.
    assert_eq!(
        next_event(&mut events, Duration::from_secs(10), "the fail-over event").await,
        Event::MasterFailover
    );
    assert_eq!(s.epoch(), epoch + 1);
    // Events may have been lost around the fail-over: re-read (this also makes sure the
    // new master has recreated the watching handle, which the library does right after
    // the fail-over event).
    assert_eq!(watched.contents().await.expect("re-read").0, b"3");
    // Event numbering restarted: the new master's next event reaches us (an
    // acknowledgement from the old numbering would have been refused).
    w.set_contents(b"after".to_vec())
        .await
        .expect("write after");
    assert_eq!(
        next_event(
            &mut events,
            Duration::from_secs(10),
            "a second-epoch contents_modified"
        )
        .await,
        Event::ContentsModified {
            path: "/ls/local/f".into()
        }
    );
    assert_eq!(watched.contents().await.expect("read").0, b"after");
    assert!(s.is_live());
    s.close().await.expect("close");
    writer.close().await.expect("close writer");
}

#[tokio::test]
async fn expired_after_the_grace_period() {
    logs();
    let cell = Cell::builder().lease(LEASE).run().await;
    let bridge = Bridge::start(addr_of(&cell)).await;
    let grace = Duration::from_secs(2);
    let s =
        Session::connect_with(ClientOptions::new([bridge.addr().to_string()]).grace_period(grace))
            .await
            .expect("connect");
    let mut events = s.events();
    let (h, _) = s
        .open("/f", OpenOptions::new().read().create_file(b"x".to_vec()))
        .await
        .expect("create");
    h.stat().await.expect("stat");

    // A partition: nothing gets through, not even a close.
    bridge.blackhole();
    let started = std::time::Instant::now();
    assert_eq!(
        next_event(&mut events, LEASE * 2, "jeopardy").await,
        Event::Jeopardy
    );
    let held = tokio::spawn(async move {
        let r = h.stat().await;
        (h, r)
    });
    assert_eq!(
        next_event(&mut events, grace * 2, "expiry").await,
        Event::Expired
    );
    let took = started.elapsed();
    assert!(
        took <= LEASE + grace + Duration::from_secs(1),
        "expired only after {took:?}"
    );
    assert_eq!(events.recv().await, None, "Expired is the last event");
    assert_eq!(s.state(), SessionState::Expired);

    // The held call fails with SESSION_EXPIRED; so does every later one, even with the
    // network back; Close never fails.
    let (h, r) = held.await.expect("join");
    assert_eq!(
        r.expect_err("expired").code(),
        Some(ErrorCode::SessionExpired)
    );
    bridge.unblackhole();
    let e = h.contents().await.expect_err("expired");
    assert_eq!(e.code(), Some(ErrorCode::SessionExpired));
    let e = s
        .open("/f", OpenOptions::new().read())
        .await
        .expect_err("expired");
    assert_eq!(e.code(), Some(ErrorCode::SessionExpired));
    h.close().await;
    s.close()
        .await
        .expect("closing an expired session does nothing");
    assert_eq!(s.cache_stats().entries, 0);
}

#[tokio::test]
async fn close_is_resent_while_the_new_master_recovers() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let cell = cell_on(dir.path()).await;
    let relay = Relay::start(addr_of(&cell)).await;
    let silent_relay = Relay::start(addr_of(&cell)).await;
    let s = session(vec![relay.endpoint()]).await;
    // A second session that will not come back after the restart: until its lease runs
    // out, the new master refuses everything but KeepAlive.
    let silent = session(vec![silent_relay.endpoint()]).await;
    let (eph, _) = s
        .open(
            "/eph",
            OpenOptions::new()
                .write()
                .create_file(b"e".to_vec())
                .ephemeral(),
        )
        .await
        .expect("create ephemeral");
    let mut events = s.events();

    relay.switch(None);
    silent_relay.switch(None);
    cell.stop().await.expect("stop");
    let cell = cell_on(dir.path()).await;
    relay.switch(Some(addr_of(&cell)));
    let e = next_event(&mut events, GRACE, "the fail-over (or jeopardy)").await;
    assert!(
        matches!(e, Event::MasterFailover | Event::Jeopardy),
        "unexpected {e:?}"
    );
    // Close right away: the master answers FAILOVER_IN_PROGRESS until the silent session
    // expires; the library keeps re-sending, and the close lands.
    tokio::time::timeout(GRACE * 2, eph.close())
        .await
        .expect("close finished");
    let probe = session(vec![cell.addr()]).await;
    let e = probe
        .open("/eph", OpenOptions::new())
        .await
        .expect_err("the ephemeral file went with its only handle");
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    drop(silent);
    s.close().await.expect("close");
    probe.close().await.expect("close probe");
}

#[tokio::test]
async fn calls_wait_while_a_new_master_recovers() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let cell = cell_on(dir.path()).await;
    let relay = Relay::start(addr_of(&cell)).await;
    let s = session(vec![relay.endpoint()]).await;
    let (h, _) = s
        .open("/f", OpenOptions::new().read().create_file(b"v".to_vec()))
        .await
        .expect("create");
    relay.switch(None);
    cell.stop().await.expect("stop");
    let cell = cell_on(dir.path()).await;
    relay.switch(Some(addr_of(&cell)));
    // Straight after the restart: STALE_EPOCH, then FAILOVER_IN_PROGRESS until our own
    // KeepAlive acknowledges the fail-over; the call rides through both.
    let (data, _) = tokio::time::timeout(GRACE, h.contents())
        .await
        .expect("in time")
        .expect("read after restart");
    assert_eq!(data, b"v");
    wait_until(Duration::from_secs(5), "the session is safe", || {
        let live = s.state() == SessionState::Safe;
        async move { live }
    })
    .await;
    s.close().await.expect("close");
}

/// A write that is not idempotent (a compare-and-swap) sent while nothing listens at the
/// master's address never left this process (`UNREACHABLE`, not applied): the library sends
/// it again as it would an idempotent call, and it lands once the master is back. (A call
/// that may have been sent, `OUTCOME_UNKNOWN`, is still returned to the application.)
#[tokio::test]
async fn a_conditional_write_that_never_left_is_sent_again() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let cell = cell_on(dir.path()).await;
    let addr = addr_of(&cell);
    let s = session(vec![cell.addr()]).await;
    let (h, _) = s
        .open(
            "/cas",
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"v1".to_vec()),
        )
        .await
        .expect("create");
    let generation = h.stat().await.expect("stat").content_generation;
    cell.stop().await.expect("stop");
    let write = tokio::spawn(async move {
        let r = h.set_contents_if(b"v2".to_vec(), generation).await;
        (h, r)
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !write.is_finished(),
        "the write gave up at once though it never left: {:?}",
        write.await.map(|(_, r)| r)
    );
    // The same address again, so the refused connection is the only fault.
    let _cell = Cell::builder()
        .lease(LEASE)
        .ephemeral_cleanup(Duration::from_secs(60))
        .data_dir(dir.path())
        .listen(addr)
        .run()
        .await;
    let (h, r) = tokio::time::timeout(GRACE, write)
        .await
        .expect("the write finishes once the master is back")
        .expect("write task");
    r.expect("the compare-and-swap lands after the restart");
    assert_eq!(h.contents().await.expect("read").0, b"v2");
}

/// A plain write whose reply is lost is not sent again: sent twice it could take effect
/// twice, the second time over another client's later write (the history checkers of the
/// chaos runs caught exactly that, docs/reliability.md). The master applies it once, and
/// the application is told `OUTCOME_UNKNOWN`, whose effect is unknown.
#[tokio::test]
async fn a_plain_write_whose_reply_is_lost_is_not_sent_again() {
    logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let cell = cell_on(dir.path()).await;
    let relay = Relay::start(addr_of(&cell)).await;
    let s = session(vec![relay.endpoint()]).await;
    let other = session(vec![cell.addr()]).await;
    let (h, _) = s
        .open(
            "/plain",
            OpenOptions::new().write().create_file(b"v1".to_vec()),
        )
        .await
        .expect("create");
    let generation = |who: Session| async move {
        let (h, _) = who
            .open("/plain", OpenOptions::new().read())
            .await
            .expect("open to read");
        let g = h.stat().await.expect("stat").content_generation;
        h.close().await;
        g
    };
    let before = generation(other.clone()).await;
    relay.mute_replies(true);
    let write = tokio::spawn(async move { h.set_contents(b"v2".to_vec()).await });
    // Longer than the call's 3 s timeout: the first attempt's outcome is unknown to the
    // library by then, and the master has applied it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    relay.mute_replies(false);
    let r = tokio::time::timeout(GRACE * 2, write)
        .await
        .expect("the write finishes")
        .expect("write task");
    let e = r.expect_err("a write whose reply was lost cannot report success");
    assert_eq!(
        e.effect(),
        warren_client::Effect::Unknown,
        "a write that reached the master is of unknown outcome, not {e:?}"
    );
    // Give a re-send, if there were one, time to land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = generation(other.clone()).await;
    assert_eq!(
        after,
        before + 1,
        "the write took effect {} times",
        after - before
    );
    s.close().await.expect("close");
    other.close().await.expect("close other");
}
