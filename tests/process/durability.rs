//! A write acknowledged to a client survives `kill -9` of the cell.

use crate::bin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren_client::{OpenOptions, Session};
use warren_testkit::WarrenProcess;

/// (path, last acknowledged value) of every acknowledged write.
///
/// The cell runs with a 3 s lease only so that the restarted master lets the writers' dead
/// session go quickly (it waits for every restored session to acknowledge the failover or
/// expire); durability does not depend on it.
type Acked = Vec<(String, Vec<u8>)>;

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut cell = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "c0",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data,
            "--lease",
            "3s",
        ],
    )
    .await;
    let s = Session::connect(&[cell.addr()]).await.unwrap();
    let (d, _) = s
        .open("/d", OpenOptions::new().write().create_dir())
        .await
        .unwrap();
    d.close().await;
    // Writers run flat out; every acknowledged write is recorded.
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (s, acked) = (s.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..10_000u32 {
                let path = format!("/d/w{w}-{i}");
                let value = format!("value {w} {i}").into_bytes();
                match s
                    .open(&path, OpenOptions::new().write().create_file(value.clone()))
                    .await
                {
                    Ok((h, _)) => {
                        acked.lock().unwrap().push((path.clone(), value.clone()));
                        // And an overwrite of the same file, also acknowledged.
                        let v2 = [value.as_slice(), b" (rewritten)"].concat();
                        if h.set_contents(v2.clone()).await.is_ok() {
                            let mut a = acked.lock().unwrap();
                            if let Some(e) = a.iter_mut().rev().find(|e| e.0 == path) {
                                e.1 = v2;
                            }
                        }
                        h.close().await;
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    // Let writes land for two seconds (and at least 300 of them), then SIGKILL mid-stream.
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(30);
    while (acked.lock().unwrap().len() < 300 || started.elapsed() < Duration::from_secs(2))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cell.kill9().await;
    // Nothing can be acknowledged by a dead cell; the writers' calls would only wait out
    // their grace period.
    for w in &writers {
        w.abort();
    }
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 300,
        "only {} writes were acknowledged before the kill",
        acked.len()
    );
    eprintln!("{} files acknowledged before SIGKILL", acked.len());

    // Restart on the same data: every acknowledged write is there, with its last acknowledged value
    // (or a later one that was written but whose acknowledgement was lost in the kill).
    let cell2 = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "c0",
            "--listen",
            "127.0.0.1:0",
            "--data",
            data,
            "--lease",
            "3s",
        ],
    )
    .await;
    let s2 = Session::connect(&[cell2.addr()]).await.unwrap();
    assert!(s2.epoch() >= 2, "a restart is a new master epoch");
    for (path, value) in &acked {
        let (h, info) = s2
            .open(path, OpenOptions::new().read().read_contents())
            .await
            .unwrap_or_else(|e| panic!("acknowledged {path} lost: {e}"));
        let got = info.contents.unwrap();
        assert!(
            got == *value || (got.starts_with(value) && got.ends_with(b" (rewritten)")),
            "{path}: found {:?}, acknowledged {:?}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(value)
        );
        h.close().await;
    }
}
