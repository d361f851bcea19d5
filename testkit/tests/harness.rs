//! Tests of the test harnesses themselves: real etcd clusters ([`EtcdCluster`]: start,
//! leader, put/get over the JSON gateway, leader kill and member restart) and the
//! fault-injecting [`Bridge`] (pause, blackhole, drop, refuse) in front of an echo server.
//! The etcd tests skip with a notice when etcd is missing, except under `CI=true`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};
use warren_testkit::etcd::{self, base64_decode, base64_encode, kv_get, kv_put};
use warren_testkit::{Bridge, EtcdCluster};

// ---------------------------------------------------------------- etcd

/// Retries a put until it succeeds (a put can fail while a new leader is elected).
async fn put_eventually(endpoint: &str, key: &[u8], value: &[u8], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match kv_put(endpoint, key, value).await {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                panic!("put via {endpoint} kept failing for {within:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Retries a get until it returns `want`.
async fn get_eventually(endpoint: &str, key: &[u8], want: &[u8], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = kv_get(endpoint, key).await;
        if matches!(&got, Ok(Some(v)) if v == want) {
            return;
        }
        if Instant::now() >= deadline {
            panic!("get via {endpoint} did not return {want:?} within {within:?}: {got:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn etcd_three_members_elect_serve_and_survive_leader_kill() {
    let Some(_) = etcd::require_etcd() else {
        return;
    };
    let mut cluster = EtcdCluster::start(3).await;
    assert_eq!(cluster.member_count(), 3);
    assert_eq!(cluster.endpoints().len(), 3);
    for (i, e) in cluster.endpoints().iter().enumerate() {
        assert_eq!(e, &cluster.endpoint(i));
        assert!(e.starts_with("http://127.0.0.1:"), "{e}");
    }

    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    // Write through a follower, read through every member.
    let follower = (leader + 1) % 3;
    put_eventually(
        &cluster.endpoint(follower),
        b"/warren/k1",
        b"v1",
        Duration::from_secs(10),
    )
    .await;
    for e in cluster.endpoints() {
        get_eventually(&e, b"/warren/k1", b"v1", Duration::from_secs(10)).await;
    }
    assert_eq!(
        kv_get(&cluster.endpoint(leader), b"/warren/absent")
            .await
            .unwrap(),
        None
    );

    // Kill the leader: the remaining two are a quorum and elect a new leader.
    cluster.kill(leader).await;
    assert!(!cluster.is_running(leader));
    let new_leader = cluster.wait_for_leader(Duration::from_secs(15)).await;
    assert_ne!(new_leader, leader);
    let survivor = (0..3).find(|&i| i != leader).unwrap();
    put_eventually(
        &cluster.endpoint(survivor),
        b"/warren/k2",
        b"v2",
        Duration::from_secs(15),
    )
    .await;
    for i in (0..3).filter(|&i| i != leader) {
        get_eventually(
            &cluster.endpoint(i),
            b"/warren/k2",
            b"v2",
            Duration::from_secs(10),
        )
        .await;
    }
    // The killed member's endpoint refuses.
    assert!(kv_get(&cluster.endpoint(leader), b"/warren/k2")
        .await
        .is_err());

    // Restart: same data and ports; it rejoins and catches up on what it missed.
    cluster.restart(leader).await;
    assert!(cluster.is_running(leader));
    get_eventually(
        &cluster.endpoint(leader),
        b"/warren/k2",
        b"v2",
        Duration::from_secs(15),
    )
    .await;
    get_eventually(
        &cluster.endpoint(leader),
        b"/warren/k1",
        b"v1",
        Duration::from_secs(5),
    )
    .await;
    cluster.wait_for_leader(Duration::from_secs(10)).await;

    let logs: Vec<PathBuf> = (0..3).map(|i| cluster.log_path(i)).collect();
    assert!(logs.iter().all(|p| p.is_file()), "member logs go to files");
    let root = logs[0].parent().unwrap().parent().unwrap().to_path_buf();
    cluster.stop().await;
    assert!(!root.exists(), "stop removes the data directories");
}

#[tokio::test]
async fn etcd_single_member_serves_and_allows_large_transactions() {
    let _bin: PathBuf = warren_testkit::require_etcd!();
    let cluster = EtcdCluster::start(1).await;
    let pid = cluster.pid(0).expect("member 0 runs");
    assert_eq!(cluster.leader().await, Some(0));
    let e = cluster.endpoint(0);
    put_eventually(&e, b"k", b"", Duration::from_secs(5)).await;
    get_eventually(&e, b"k", b"", Duration::from_secs(5)).await;

    // Warren batches many ops per transaction: 1000 puts in one txn (default limit 128).
    let ops: Vec<serde_json::Value> = (0..1000)
        .map(|i| {
            serde_json::json!({ "request_put": {
                "key": base64_encode(format!("/batch/{i}").as_bytes()),
                "value": base64_encode(b"x"),
            }})
        })
        .collect();
    let resp = etcd::post_json(&e, "/v3/kv/txn", &serde_json::json!({ "success": ops }))
        .await
        .expect("a 1000-op transaction is accepted");
    assert_eq!(resp["succeeded"], serde_json::json!(true), "{resp}");
    get_eventually(&e, b"/batch/999", b"x", Duration::from_secs(5)).await;
    // Dropped without stop(): Drop kills and reaps the process.
    drop(cluster);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "etcd pid {pid} outlived its EtcdCluster"
    );
}

#[test]
fn require_etcd_skips_locally_and_fails_in_ci() {
    let found = Some(PathBuf::from("/usr/bin/etcd"));
    assert_eq!(etcd::decide_etcd(found.clone(), Some("true")), found);
    assert_eq!(etcd::decide_etcd(None, None), None);
    assert_eq!(etcd::decide_etcd(None, Some("false")), None);
    let ci = std::panic::catch_unwind(|| etcd::decide_etcd(None, Some("true")));
    assert!(ci.is_err(), "missing etcd under CI=true must panic");
}

#[test]
fn base64_round_trips() {
    assert_eq!(base64_encode(b""), "");
    assert_eq!(base64_encode(b"f"), "Zg==");
    assert_eq!(base64_encode(b"fo"), "Zm8=");
    assert_eq!(base64_encode(b"foo"), "Zm9v");
    assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
    for n in 0..300usize {
        let data: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
        assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
    }
    assert_eq!(base64_decode("!!"), None);
}

// ---------------------------------------------------------------- bridge

/// How long a read waits when we expect nothing to arrive.
const QUIET: Duration = Duration::from_millis(300);
/// How long a read waits when we expect something.
const PATIENT: Duration = Duration::from_secs(5);

/// An echo server on loopback; runs until the test's runtime ends.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn read_exact_within(s: &mut TcpStream, n: usize, within: Duration) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    timeout(within, s.read_exact(&mut buf))
        .await
        .expect("bytes arrive in time")
        .expect("read");
    buf
}

/// Asserts nothing arrives for [`QUIET`].
async fn assert_silent(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match timeout(QUIET, s.read(&mut buf)).await {
        Err(_) => {}
        Ok(r) => panic!("expected silence, read {r:?} ({:?})", &buf[..]),
    }
}

/// Asserts the connection is closed (EOF or reset) within [`PATIENT`].
async fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match timeout(PATIENT, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        other => panic!("expected EOF or reset, got {other:?}"),
    }
}

async fn echo_once(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    assert_eq!(read_exact_within(s, msg.len(), PATIENT).await, msg);
}

#[tokio::test]
async fn bridge_forwards_bytes() {
    let bridge = Bridge::start(echo_server().await).await;
    let mut c = TcpStream::connect(bridge.addr()).await.unwrap();
    echo_once(&mut c, b"hello").await;
    // Large payload, both directions concurrently.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
    let (mut r, mut w) = c.split();
    let send = async {
        w.write_all(&big).await.unwrap();
    };
    let recv = async {
        let mut got = vec![0u8; big.len()];
        timeout(PATIENT, r.read_exact(&mut got))
            .await
            .expect("1 MB echoed in time")
            .unwrap();
        got
    };
    let ((), got) = tokio::join!(send, recv);
    assert_eq!(got, big);
    assert_eq!(bridge.open_connections(), 1);
}

#[tokio::test]
async fn bridge_pause_holds_bytes_until_resume() {
    let bridge = Bridge::start(echo_server().await).await;
    let mut c = TcpStream::connect(bridge.addr()).await.unwrap();
    echo_once(&mut c, b"before").await;

    bridge.pause();
    c.write_all(b"held").await.unwrap();
    assert_silent(&mut c).await;
    // A connection made while paused is accepted but carries nothing either.
    let mut c2 = TcpStream::connect(bridge.addr()).await.unwrap();
    c2.write_all(b"late").await.unwrap();
    assert_silent(&mut c2).await;

    bridge.resume();
    assert_eq!(read_exact_within(&mut c, 4, PATIENT).await, b"held");
    assert_eq!(read_exact_within(&mut c2, 4, PATIENT).await, b"late");
    echo_once(&mut c, b"after").await;
}

#[tokio::test]
async fn bridge_blackhole_loses_bytes() {
    let bridge = Bridge::start(echo_server().await).await;
    let mut c = TcpStream::connect(bridge.addr()).await.unwrap();
    echo_once(&mut c, b"before").await;

    bridge.blackhole();
    c.write_all(b"lost").await.unwrap();
    assert_silent(&mut c).await;
    let mut c2 = TcpStream::connect(bridge.addr()).await.unwrap();
    c2.write_all(b"lost too").await.unwrap();
    assert_silent(&mut c2).await;

    bridge.unblackhole();
    // What was sent during the blackhole never arrives; new bytes do.
    echo_once(&mut c, b"after").await;
    echo_once(&mut c2, b"after2").await;
}

#[tokio::test]
async fn bridge_lose_replies_delivers_requests_but_not_their_answers() {
    // A target that counts the bytes it receives, and echoes them.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = received.clone();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            counted.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
            s.write_all(&buf[..n]).await.unwrap();
        }
    });
    let bridge = Bridge::start(target).await;
    let mut c = TcpStream::connect(bridge.addr()).await.unwrap();
    echo_once(&mut c, b"before").await;

    bridge.lose_replies(true);
    c.write_all(b"asked").await.unwrap();
    assert_silent(&mut c).await;
    assert_eq!(
        received.load(std::sync::atomic::Ordering::SeqCst),
        "before".len() + "asked".len(),
        "the request arrived"
    );

    bridge.lose_replies(false);
    // The lost answer stays lost; new ones arrive.
    echo_once(&mut c, b"after").await;
}

#[tokio::test]
async fn bridge_drop_connections_closes_current_ones_only() {
    let bridge = Bridge::start(echo_server().await).await;
    let mut c1 = TcpStream::connect(bridge.addr()).await.unwrap();
    let mut c2 = TcpStream::connect(bridge.addr()).await.unwrap();
    echo_once(&mut c1, b"one").await;
    echo_once(&mut c2, b"two").await;
    assert_eq!(bridge.open_connections(), 2);

    bridge.drop_connections();
    assert_closed(&mut c1).await;
    assert_closed(&mut c2).await;

    let mut c3 = TcpStream::connect(bridge.addr()).await.unwrap();
    echo_once(&mut c3, b"three").await;
    assert_eq!(bridge.open_connections(), 1);
}

#[tokio::test]
async fn bridge_refuse_closes_new_connections() {
    let bridge = Bridge::start(echo_server().await).await;
    let mut old = TcpStream::connect(bridge.addr()).await.unwrap();
    echo_once(&mut old, b"old").await;

    bridge.refuse(true);
    // The kernel may complete the handshake, but the bridge closes it at once.
    if let Ok(Ok(mut c)) = timeout(PATIENT, TcpStream::connect(bridge.addr())).await {
        let _ = c.write_all(b"x").await;
        assert_closed(&mut c).await;
    }
    // Existing connections are unaffected.
    echo_once(&mut old, b"still").await;

    bridge.refuse(false);
    let mut c = TcpStream::connect(bridge.addr()).await.unwrap();
    echo_once(&mut c, b"again").await;
}

#[tokio::test]
async fn bridge_drop_stops_forwarding() {
    let bridge = Bridge::start(echo_server().await).await;
    let addr = bridge.addr();
    let mut c = TcpStream::connect(addr).await.unwrap();
    echo_once(&mut c, b"x").await;
    drop(bridge);
    assert_closed(&mut c).await;
    // The listener is gone (a connect is refused, or at worst closed at once).
    if let Ok(Ok(mut c)) = timeout(PATIENT, TcpStream::connect(addr)).await {
        assert_closed(&mut c).await;
    }
}
