//! The leader-election example (examples/leader_election.rs) as users run it: a cell, the
//! fenced server and two contenders, all real processes. The leader is SIGKILLed; the other
//! contender takes over; a request carrying the old leader's sequencer is refused. And the
//! example's own instructions, followed against `warren dev`: the documented endpoint works,
//! the meta cell is refused with a clear error, and refusals make a contender back off.

use crate::{bin, free_port};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use warren_testkit::WarrenProcess;

/// `cargo test` builds examples next to the test binaries' `deps/`.
fn example() -> PathBuf {
    let dir = bin().parent().expect("target dir");
    let p = dir.join("examples").join("leader_election");
    assert!(
        p.exists(),
        "{} was not built (cargo test builds examples)",
        p.display()
    );
    p
}

struct Proc {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(example())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn example");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Proc { child, lines }
    }

    /// The next line starting with `prefix` (others skipped), within `within`.
    async fn line(&mut self, prefix: &str, within: Duration) -> String {
        self.try_line(prefix, within)
            .await
            .unwrap_or_else(|| panic!("no line starting {prefix:?} within {within:?}"))
    }

    async fn try_line(&mut self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let l = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .ok()?
                .ok()??;
            if l.starts_with(prefix) {
                return Some(l);
            }
        }
    }
}

#[tokio::test]
async fn the_leader_is_killed_and_the_fenced_server_refuses_its_stale_sequencer() {
    let dir = tempfile::tempdir().unwrap();
    let cell = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "c0",
            "--listen",
            "127.0.0.1:0",
            "--data",
            dir.path().to_str().unwrap(),
            "--lease",
            "2s",
        ],
    )
    .await;
    let ep = cell.addr();
    let server_addr = format!("127.0.0.1:{}", free_port());
    let mut server = Proc::spawn(&["server", "--endpoint", &ep, "--listen", &server_addr]);
    server.line("listening", Duration::from_secs(20)).await;
    let mut alice = Proc::spawn(&[
        "contend",
        "--endpoint",
        &ep,
        "--name",
        "alice",
        "--server",
        &server_addr,
    ]);
    let lead = alice.line("leader ", Duration::from_secs(20)).await;
    let old_seq = lead
        .split_whitespace()
        .nth(2)
        .expect("sequencer")
        .to_string();
    alice.line("accepted", Duration::from_secs(10)).await;
    let mut bob = Proc::spawn(&[
        "contend",
        "--endpoint",
        &ep,
        "--name",
        "bob",
        "--server",
        &server_addr,
    ]);
    // bob waits while alice leads.
    assert_eq!(
        bob.try_line("leader ", Duration::from_secs(2)).await,
        None,
        "bob led while alice held the lock"
    );
    alice.child.start_kill().unwrap();
    alice.child.wait().await.unwrap();
    // bob takes over once alice's session has expired (about one lease).
    let lead = bob.line("leader bob", Duration::from_secs(20)).await;
    let new_seq = lead.split_whitespace().nth(2).unwrap().to_string();
    assert_ne!(new_seq, old_seq);
    bob.line("accepted", Duration::from_secs(10)).await;
    // A delayed request from the old leader is refused.
    let mut s = tokio::net::TcpStream::connect(&server_addr).await.unwrap();
    s.write_all(format!("{old_seq} late-write-from-alice\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    BufReader::new(&mut s).read_line(&mut reply).await.unwrap();
    assert_eq!(reply.trim(), "rejected stale");
    server.line("rejected stale", Duration::from_secs(5)).await;
    // And the current one is accepted.
    let mut s = tokio::net::TcpStream::connect(&server_addr).await.unwrap();
    s.write_all(format!("{new_seq} from-bob\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    BufReader::new(&mut s).read_line(&mut reply).await.unwrap();
    assert_eq!(reply.trim(), "ok");
}

/// The example's instructions followed literally against `warren dev`: with a proxy as the
/// endpoint a leader is elected and its requests accepted; a contender given the meta cell
/// (127.0.0.1:7100 of `warren dev`) stops at once with an error saying what to give
/// instead; and a contender whose every request is refused backs off instead of flapping
/// the lock (it once reached lock generation 1,591 within seconds).
#[tokio::test]
async fn against_warren_dev_the_documented_endpoint_works_and_refusals_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let dev = WarrenProcess::spawn_dev(bin(), &dir.path().join("dev"), 3, 2).await;
    let proxy = dev.proxies[0].clone();
    let meta = dev.meta_addr();

    // As documented: the server and the contenders on the proxies.
    let server_addr = format!("127.0.0.1:{}", free_port());
    let mut server = Proc::spawn(&["server", "--endpoint", &proxy, "--listen", &server_addr]);
    server.line("listening", Duration::from_secs(20)).await;
    let mut alice = Proc::spawn(&[
        "contend",
        "--endpoint",
        &proxy,
        "--name",
        "alice",
        "--server",
        &server_addr,
    ]);
    alice.line("leader alice", Duration::from_secs(20)).await;
    alice.line("accepted", Duration::from_secs(10)).await;

    // The meta cell as the endpoint: an error naming the fix, not a loop.
    let mallory = Command::new(example())
        .args([
            "contend",
            "--endpoint",
            &meta,
            "--name",
            "mallory",
            "--server",
            &server_addr,
        ])
        .env_remove("RUST_BACKTRACE")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), mallory)
        .await
        .expect("a contender at the meta cell stops by itself")
        .expect("run the example");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("WRONG_CELL"), "{err}");
    assert!(err.contains("give the proxies as --endpoint"), "{err}");

    // A server that refuses every request (pointed at the meta cell, it can check no
    // sequencer): the contender lets go and waits longer each time.
    let refusing_addr = format!("127.0.0.1:{}", free_port());
    let mut refusing = Proc::spawn(&["server", "--endpoint", &meta, "--listen", &refusing_addr]);
    refusing.line("listening", Duration::from_secs(20)).await;
    let mut bob = Proc::spawn(&[
        "contend",
        "--endpoint",
        &proxy,
        "--name",
        "bob",
        "--server",
        &refusing_addr,
        "--lock",
        "/election/refused",
    ]);
    bob.line("leader bob", Duration::from_secs(20)).await;
    let window = Duration::from_secs(3);
    let end = tokio::time::Instant::now() + window;
    let mut leads = 1;
    while let Some(left) = end.checked_duration_since(tokio::time::Instant::now()) {
        match bob.try_line("leader bob", left).await {
            Some(_) => leads += 1,
            None => break,
        }
    }
    // Waits of 100 ms, 200 ms, 400 ms, 800 ms, 1.6 s, … between rounds: about 5 in 3 s.
    assert!(
        leads <= 8,
        "bob took the lock {leads} times in {window:?}: no backoff"
    );
    let o = crate::warren(&[
        "ctl",
        "--endpoint",
        &proxy,
        "--json",
        "stat",
        "/election/refused",
    ])
    .await;
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let stat: serde_json::Value = serde_json::from_str(crate::stdout(&o).trim()).unwrap();
    let generation = stat["lock_generation"].as_u64().expect("lock_generation");
    assert!(
        (1..=10).contains(&generation),
        "lock generation {generation} after {window:?}"
    );
}
