//! Read and write throughput of a partitioned `warren dev` with 3 data cells against one
//! with 1 data cell, under the same load, in one run (docs/design.md §11).
//!
//! ```text
//! cargo build --release
//! cargo run --release --example dev_throughput -- [--sessions 48] [--files 20] [--dirs 960] [--seconds 10]
//! ```
//!
//! For each of `--cells 1` and `--cells 3` it starts the release binary's
//! `warren dev --proxies 0 --base-port 0` on a fresh data directory and connects
//! `--sessions` direct-mode sessions (`ClientOptions::meta`, each routing by the map
//! itself). Each session owns files spread over `--dirs` top-level directories (so over
//! every cell's slots) and runs a closed loop for `--seconds`:
//!
//! - **writes**: `SetContents` of 64 bytes to its own files in turn (each one committed to
//!   the owning cell's embedded store before it is acknowledged);
//! - **reads**: `GetContentsAndStat` with the client cache off, so every read reaches a
//!   cell.
//!
//! It prints operations per second for both deployments and the ratio 3 cells / 1 cell,
//! as markdown, and each cell's share of the operations (from the cell each file's
//! `Stat.cell` names). Both deployments run on the same machine, one after the other, so the
//! ratio shows what spreading the namespace buys when the cells share the cores.

use anyhow::{anyhow, Context};
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use warren_client::{ClientOptions, Handle, OpenOptions, Session};

#[derive(Parser, Debug)]
struct Args {
    /// Concurrent direct-mode sessions.
    #[arg(long, default_value_t = 48)]
    sessions: usize,
    /// Top-level directories the files are spread over.
    #[arg(long, default_value_t = 960)]
    dirs: usize,
    /// Files per session.
    #[arg(long, default_value_t = 20)]
    files: usize,
    /// Length of each measured phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The `warren` binary (default: target/release/warren next to this example).
    #[arg(long)]
    bin: Option<PathBuf>,
}

struct Dev {
    child: Child,
    meta: String,
    _dir: tempfile::TempDir,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start_dev(bin: &PathBuf, cells: usize) -> anyhow::Result<Dev> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(bin)
        .args(["dev", "--proxies", "0", "--base-port", "0", "--cells"])
        .arg(cells.to_string())
        .arg("--data")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut meta = None;
    let ready = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(m) = line.strip_prefix("meta: ") {
                meta = Some(m.trim().to_string());
            }
            if line.trim() == "ready" {
                return Ok::<_, anyhow::Error>(());
            }
        }
        Err(anyhow!("warren dev exited before it was ready"))
    };
    tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .context("warren dev was not ready in 60 s")??;
    let meta = meta.ok_or_else(|| anyhow!("warren dev printed no meta: line"))?;
    Ok(Dev {
        child,
        meta,
        _dir: dir,
    })
}

/// A session and its files, each with the cell that holds it (`Stat.cell`).
type Load = Vec<(Session, Arc<Vec<(Handle, String)>>)>;

/// Opens each session's files (creating the directories first).
async fn setup(meta: &str, a: &Args) -> anyhow::Result<Load> {
    let admin = Session::connect_with(ClientOptions::meta([meta])).await?;
    for d in 0..a.dirs {
        let (h, _) = admin
            .open(&format!("/bench-{d}"), OpenOptions::new().create_dir())
            .await?;
        h.close().await;
    }
    admin.close().await?;
    let mut out = Vec::new();
    for s in 0..a.sessions {
        let session = Session::connect_with(ClientOptions::meta([meta]).cache(false)).await?;
        let mut handles = Vec::new();
        for f in 0..a.files {
            let dir = (s * a.files + f) % a.dirs;
            let (h, info) = session
                .open(
                    &format!("/bench-{dir}/s{s}-f{f}"),
                    OpenOptions::new().read().write().create_file(vec![0u8; 64]),
                )
                .await?;
            handles.push((h, info.stat.cell));
        }
        out.push((session, Arc::new(handles)));
    }
    Ok(out)
}

/// Runs writes or reads in a closed loop on every session for `secs`; returns operations
/// per second and how many operations each cell served.
async fn phase(
    sessions: &Load,
    secs: u64,
    write: bool,
) -> anyhow::Result<(f64, BTreeMap<String, u64>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let per_cell = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let mut tasks = Vec::new();
    for (_, handles) in sessions {
        let handles = handles.clone();
        let (stop, done, per_cell) = (stop.clone(), done.clone(), per_cell.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            let mut mine = vec![0u64; handles.len()];
            while !stop.load(Ordering::Relaxed) {
                let (h, _) = &handles[i % handles.len()];
                if write {
                    h.set_contents(vec![(i % 251) as u8; 64]).await?;
                } else {
                    h.contents().await?;
                }
                done.fetch_add(1, Ordering::Relaxed);
                mine[i % handles.len()] += 1;
                i += 1;
            }
            let mut m = per_cell.lock().unwrap_or_else(|e| e.into_inner());
            for ((_, cell), n) in handles.iter().zip(mine) {
                *m.entry(cell.clone()).or_default() += n;
            }
            Ok::<_, warren_client::Error>(())
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for t in tasks {
        t.await??;
    }
    let per_cell = per_cell.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok((
        done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        per_cell,
    ))
}

/// `c1 33.4%, c2 …`: each cell's share of the operations.
fn shares(per_cell: &BTreeMap<String, u64>) -> String {
    let total: u64 = per_cell.values().sum();
    per_cell
        .iter()
        .map(|(c, n)| format!("{c} {:.1}%", 100.0 * *n as f64 / total.max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn measure(bin: &PathBuf, cells: usize, a: &Args) -> anyhow::Result<(f64, f64, String)> {
    let dev = start_dev(bin, cells).await?;
    eprintln!("{cells} cell(s): meta at {}; setting up", dev.meta);
    let sessions = setup(&dev.meta, a).await?;
    // Warm-up (connections, handles), not measured.
    phase(&sessions, 1, true).await?;
    let (writes, w_cells) = phase(&sessions, a.seconds, true).await?;
    let (reads, r_cells) = phase(&sessions, a.seconds, false).await?;
    let share = format!("writes: {}; reads: {}", shares(&w_cells), shares(&r_cells));
    eprintln!("{cells} cell(s): {writes:.0} writes/s, {reads:.0} reads/s ({share})");
    for (s, _) in &sessions {
        s.close().await.ok();
    }
    drop(dev);
    Ok((writes, reads, share))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let bin = match &a.bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("warren"))
            .ok_or_else(|| anyhow!("cannot find target/release/warren; pass --bin"))?,
    };
    let one = measure(&bin, 1, &a).await?;
    let three = measure(&bin, 3, &a).await?;
    println!(
        "| deployment | writes/s | reads/s (cache off) |\n|---|---:|---:|\n| `warren dev --cells 1` | {:.0} | {:.0} |\n| `warren dev --cells 3` | {:.0} | {:.0} |\n| ratio 3 / 1 | {:.2} | {:.2} |",
        one.0,
        one.1,
        three.0,
        three.1,
        three.0 / one.0,
        three.1 / one.1
    );
    println!(
        "\nEach cell's share of the operations with 3 cells: {}.\n\n{} sessions, {} files each over {} directories, {} s per phase, closed loop.",
        three.2, a.sessions, a.files, a.dirs, a.seconds
    );
    Ok(())
}
