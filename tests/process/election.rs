//! The leader-election example (examples/leader_election.rs) as users run it: a cell, the
//! fenced server and two contenders, all real processes. The leader is SIGKILLed; the other
//! contender takes over; a request carrying the old leader's sequencer is refused.

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
