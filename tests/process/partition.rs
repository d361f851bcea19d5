//! Cross-partition directories with real processes (docs/design.md §11, docs/partitioning.md): a cell
//! killed between the two steps of a `mkdir` or an `rm` of a directory whose entry and
//! children live in different cells leaves nothing its janitor does not repair after a
//! restart.

use crate::{bin, free_port, stderr, warren};
use std::time::Duration;
use warren_client::{ClientOptions, ErrorCode, NodeKind, OpenOptions, Session};
use warren_proto::pb;
use warren_proto::pb::warren_client::WarrenClient;
use warren_router::{PartitionMap, Route};
use warren_testkit::{wait_until, WarrenProcess};

struct Cluster {
    dir: tempfile::TempDir,
    meta: String,
    addrs: Vec<(String, String)>,
    procs: Vec<Option<WarrenProcess>>,
}

impl Cluster {
    async fn spawn_cell(&self, i: usize, fault: Option<&str>) -> WarrenProcess {
        let (name, addr) = &self.addrs[i];
        let data = self.dir.path().join(name);
        let data = data.to_str().unwrap();
        let args = [
            "cell", "--name", name, "--listen", addr, "--data", data, "--meta", &self.meta,
        ];
        let env: Vec<(&str, &str)> = fault.map(|f| ("WARREN_FAULT", f)).into_iter().collect();
        WarrenProcess::spawn_env(bin(), &args, &env).await
    }

    /// Starts a meta cell and two data cells (each data cell with the given fault hook),
    /// and initialises the map.
    async fn start(faults: [Option<&str>; 2]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let meta = format!("127.0.0.1:{}", free_port());
        let data = dir.path().join("meta");
        let meta_proc = WarrenProcess::spawn(
            bin(),
            &[
                "cell",
                "--name",
                "meta",
                "--listen",
                &meta,
                "--data",
                data.to_str().unwrap(),
            ],
        )
        .await;
        let addrs = (1..=2)
            .map(|i| (format!("c{i}"), format!("127.0.0.1:{}", free_port())))
            .collect();
        let mut c = Cluster {
            dir,
            meta,
            addrs,
            procs: vec![Some(meta_proc)],
        };
        for (i, fault) in faults.into_iter().enumerate() {
            let p = c.spawn_cell(i, fault).await;
            c.procs.push(Some(p));
        }
        let mut args = vec!["ctl", "deployment", "init", "--meta", &c.meta];
        let cells: Vec<String> = c.addrs.iter().map(|(n, a)| format!("{n}={a}")).collect();
        for cell in &cells {
            args.push("--cell");
            args.push(cell);
        }
        let o = warren(&args).await;
        assert!(o.status.success(), "deployment init: {}", stderr(&o));
        c
    }

    fn map(&self) -> PartitionMap {
        PartitionMap::even(
            "local",
            &self
                .addrs
                .iter()
                .map(|(n, a)| (n.clone(), vec![a.clone()]))
                .collect::<Vec<_>>(),
            warren_router::DEFAULT_SLOTS,
        )
        .unwrap()
    }

    fn addr_of(&self, cell: &str) -> String {
        self.addrs
            .iter()
            .find(|(n, _)| n == cell)
            .unwrap()
            .1
            .clone()
    }

    fn index_of(&self, cell: &str) -> usize {
        self.addrs.iter().position(|(n, _)| n == cell).unwrap()
    }

    async fn session(&self) -> Session {
        Session::connect_with(
            ClientOptions::meta([self.meta.clone()]).rpc_timeout(Duration::from_secs(3)),
        )
        .await
        .expect("connect")
    }

    /// Waits until data cell `i`'s process has exited (the fault hook aborted it).
    async fn wait_exit(&mut self, i: usize) {
        let mut p = self.procs[i + 1].take().expect("running");
        let status = tokio::time::timeout(Duration::from_secs(15), p.wait())
            .await
            .expect("the fault hook did not stop the cell");
        assert!(
            !status.success(),
            "the cell should have aborted: {status:?}"
        );
    }
}

/// A directory name under the root whose children live in another cell than its entry.
fn split_dir(map: &PartitionMap) -> (String, String, String) {
    for i in 0..1000 {
        let path = format!("/ls/local/d{i}");
        let Route::Cell { cell: entry, .. } = map.route(&path, false).unwrap() else {
            continue;
        };
        let Route::Cell { cell: anchor, .. } = map.route(&path, true).unwrap() else {
            continue;
        };
        if entry != anchor {
            return (path, entry.to_string(), anchor.to_string());
        }
    }
    panic!("no split directory among 1000 names")
}

/// A raw session at one cell (waiting, up to 30 s, while a restarted cell recovers).
async fn raw_at(addr: &str) -> (WarrenClient<tonic::transport::Channel>, pb::SessionContext) {
    let mut client = WarrenClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let s = loop {
        match client
            .create_session(pb::CreateSessionRequest::default())
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(st) if tokio::time::Instant::now() < deadline => {
                let code = warren_proto::WarrenError::from_status(&st).map(|e| e.code);
                assert_eq!(code, Some(ErrorCode::FailoverInProgress), "{st:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(st) => panic!("no session at {addr}: {st:?}"),
        }
    };
    let ctx = pb::SessionContext {
        session_id: s.session_id,
        secret: s.secret,
        epoch: s.epoch,
        ..Default::default()
    };
    (client, ctx)
}

/// Ends a raw session: it never acknowledges invalidations, so left open it would hold
/// up, for a lease, any write to what it looked at (as Chubby's rules say it must).
async fn close_raw(mut c: WarrenClient<tonic::transport::Channel>, ctx: pb::SessionContext) {
    let _ = c
        .close_session(pb::CloseSessionRequest {
            ctx: Some(ctx),
            expired: false,
        })
        .await;
}

/// Whether the cell at `addr` holds the child anchor of `path` (asked directly, so no
/// router's repair-on-open is involved).
async fn has_anchor(addr: &str, path: &str) -> bool {
    let Ok((mut c, ctx)) = tokio::time::timeout(Duration::from_secs(2), raw_at(addr)).await else {
        return false;
    };
    let found = c
        .open(pb::OpenRequest {
            ctx: Some(ctx.clone()),
            path: path.to_string(),
            intent: 1,
            target: pb::OpenTarget::Anchor as i32,
            ..Default::default()
        })
        .await
        .is_ok();
    close_raw(c, ctx).await;
    found
}

/// The names the cell at `addr` lists under the deployment root (the entries it holds).
async fn root_entries(addr: &str) -> Vec<String> {
    let (mut c, ctx) = raw_at(addr).await;
    let h = c
        .open(pb::OpenRequest {
            ctx: Some(ctx.clone()),
            path: "/ls/local".into(),
            intent: 1,
            ..Default::default()
        })
        .await
        .expect("open root")
        .into_inner()
        .handle;
    let r = c
        .read_dir(pb::ReadDirRequest {
            ctx: Some(ctx.clone()),
            handle: h,
        })
        .await
        .expect("read root")
        .into_inner();
    close_raw(c, ctx).await;
    r.entries.into_iter().map(|e| e.name).collect()
}

#[tokio::test]
async fn a_cell_killed_between_the_steps_of_a_split_mkdir_or_rm_converges_after_restart() {
    let map0 = {
        // Which cell holds the root's children depends only on the slot count and the
        // cells' order, so it is known before the processes start.
        let names = [("c1", vec!["x:1"]), ("c2", vec!["x:2"])];
        PartitionMap::even("local", &names, warren_router::DEFAULT_SLOTS).unwrap()
    };
    let (dir, entry_cell, anchor_cell) = split_dir(&map0);
    let faults = |cell: &str| {
        if cell == entry_cell {
            Some("abort-after-entry")
        } else {
            Some("abort-after-anchor-delete")
        }
    };
    let mut c = Cluster::start([faults("c1"), faults("c2")]).await;
    assert_eq!(
        c.map().route(&dir, true).unwrap(),
        map0.route(&dir, true).unwrap()
    );
    let entry_addr = c.addr_of(&entry_cell);
    let anchor_addr = c.addr_of(&anchor_cell);
    let short = dir.trim_start_matches("/ls/local");

    // mkdir: the entry cell commits the entry, then dies before making the anchor.
    let s = c.session().await;
    let attempt = tokio::time::timeout(
        Duration::from_secs(5),
        s.open(short, OpenOptions::new().read().create_dir()),
    )
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "the mkdir cannot have succeeded: its cell died in the middle"
    );
    let ei = c.index_of(&entry_cell);
    c.wait_exit(ei).await;
    assert!(!has_anchor(&anchor_addr, &dir).await, "no anchor yet");

    // Restarted (without the fault), its janitor makes the anchor by itself.
    let p = c.spawn_cell(ei, None).await;
    c.procs[ei + 1] = Some(p);
    wait_until(
        Duration::from_secs(10),
        "the janitor makes the anchor",
        || {
            let a = anchor_addr.clone();
            let d = dir.clone();
            async move { has_anchor(&a, &d).await }
        },
    )
    .await;
    assert!(root_entries(&entry_addr)
        .await
        .contains(&dir["/ls/local/".len()..].to_string()));
    // And the directory works: children go to the anchor's cell.
    let s = c.session().await;
    let (d, info) = s.open(short, OpenOptions::new().read()).await.unwrap();
    assert_eq!(
        (info.stat.kind, info.stat.cell.as_str()),
        (NodeKind::Directory, anchor_cell.as_str())
    );
    let child = format!("{short}/f");
    let (f, finfo) = s
        .open(
            &child,
            OpenOptions::new().write().create_file(b"x".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(finfo.stat.cell, anchor_cell);
    assert_eq!(d.child_names().await.unwrap(), vec!["f".to_string()]);
    assert_eq!(
        s.open(short, OpenOptions::new().write())
            .await
            .unwrap()
            .0
            .delete()
            .await
            .map_err(|e| e.code()),
        Err(Some(ErrorCode::NotEmpty))
    );
    f.delete().await.unwrap();
    let instance = info.stat.instance;

    // rm: the anchor cell removes the (now empty) anchor, then dies before unlinking
    // the entry.
    let (w, _) = s.open(short, OpenOptions::new().write()).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(20), w.delete()).await;
    let ai = c.index_of(&anchor_cell);
    c.wait_exit(ai).await;
    let name = dir["/ls/local/".len()..].to_string();
    assert!(
        root_entries(&entry_addr).await.contains(&name),
        "the entry is still listed while the anchor cell is down"
    );

    // Restarted, its janitor unlinks the entry: the namespace is consistent again.
    let p = c.spawn_cell(ai, None).await;
    c.procs[ai + 1] = Some(p);
    wait_until(
        Duration::from_secs(10),
        "the janitor unlinks the entry",
        || {
            let a = entry_addr.clone();
            let n = name.clone();
            async move { !root_entries(&a).await.contains(&n) }
        },
    )
    .await;
    assert!(!has_anchor(&anchor_addr, &dir).await);
    let s = c.session().await;
    assert_eq!(
        s.open(short, OpenOptions::new().read())
            .await
            .map(|_| ())
            .map_err(|e| e.code()),
        Err(Some(ErrorCode::NotFound))
    );
    // A new mkdir makes a new directory, with a greater instance.
    let (_, again) = s
        .open(short, OpenOptions::new().read().create_dir().exclusive())
        .await
        .unwrap();
    assert!(again.created);
    assert!(again.stat.instance > instance);
    assert!(has_anchor(&anchor_addr, &dir).await);
    s.close().await.unwrap();
}
