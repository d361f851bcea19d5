//! A proxy routing by the partition map (docs/design.md §11, docs/partitioning.md), end to end and in
//! process: a meta cell, data cells `c1..c3` watching the map there, and a proxy started
//! with `.meta()`. A client session through the proxy creates nested directories whose
//! entries and child anchors are in different cells, files in them, reads, writes, lists
//! and deletes them, and every `Stat.cell` names the cell the router says.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use warren_client::{ClientOptions, ErrorCode, OpenOptions, Session};
use warren_router::{PartitionMap, Route};
use warren_testkit::deployment::{map_epoch_at, wait_for_map_at, write_first_map, DEPLOYMENT as D};
use warren_testkit::{Cell, Deployment, Proxy, TestProxy};

/// A meta cell, data cells `c1..c3` and the map spreading the slots over them; no proxy
/// (each test starts its own).
async fn deployment() -> Deployment {
    Deployment::builder().cells(3).proxies(0).run().await
}

fn cell_of(map: &PartitionMap, path: &str, anchor: bool) -> String {
    match map.route(path, anchor).expect("routable") {
        Route::Cell { cell, .. } => cell.to_string(),
        Route::Meta => "meta".to_string(),
    }
}

/// The first `parent/<prefix>N` whose entry (parent's slot) and anchor (own slot) are in
/// different cells, and whose anchor is not in `avoid` either.
fn split_dir(map: &PartitionMap, parent: &str, prefix: &str, avoid: &[String]) -> String {
    (0..10_000)
        .map(|n| format!("{parent}/{prefix}{n}"))
        .find(|p| {
            let (entry, anchor) = (cell_of(map, p, false), cell_of(map, p, true));
            entry != anchor && !avoid.contains(&anchor)
        })
        .expect("a split directory name")
}

/// GET `path` from an admin endpoint.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn names(entries: &[String]) -> Vec<&str> {
    entries.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_through_the_proxy_works_across_cells_and_every_stat_names_the_routed_cell() {
    let d = deployment().await;
    let map = d.map();
    let proxy = Proxy::builder().meta(d.meta_addrs()).admin().run().await;
    assert_eq!(map_epoch_at(&proxy.addr()).await, 1, "Locate at the proxy");
    let s = Session::connect_with(ClientOptions::proxies([proxy.addr()]))
        .await
        .expect("a session through the proxy");

    // /ls/local/a*: entry with the root's children, anchor elsewhere. Under it a directory
    // whose anchor is in a third cell, and files in both.
    let a = split_dir(&map, "/ls/local", "a", &[]);
    let a_anchor = cell_of(&map, &a, true);
    let b = split_dir(&map, &a, "b", std::slice::from_ref(&a_anchor));
    let b_anchor = cell_of(&map, &b, true);
    assert_ne!(cell_of(&map, &b, false), b_anchor);
    assert_eq!(
        cell_of(&map, &b, false),
        a_anchor,
        "b's entry lives with a's children"
    );

    let (ha, info) = s
        .open(&a, OpenOptions::new().read().write().create_dir())
        .await
        .unwrap_or_else(|e| panic!("mkdir {a}: {e}"));
    assert!(info.created, "{a} was created");
    assert_eq!(
        info.stat.cell, a_anchor,
        "a directory's Stat.cell is its anchor's"
    );
    let (hb, info) = s
        .open(&b, OpenOptions::new().read().write().create_dir())
        .await
        .unwrap_or_else(|e| panic!("mkdir {b}: {e}"));
    assert!(info.created);
    assert_eq!(info.stat.cell, b_anchor);

    // Opening them again, with or without create: not created, same cell.
    let (h, info) = s
        .open(&a, OpenOptions::new().read().create_dir())
        .await
        .unwrap();
    assert!(!info.created, "it existed");
    assert_eq!(info.stat.cell, a_anchor);
    h.close().await;
    let (h, info) = s.open(&b, OpenOptions::new().read()).await.unwrap();
    assert!(!info.created);
    assert_eq!(info.stat.cell, b_anchor);
    h.close().await;
    // An exclusive create of an existing directory fails as at a cell.
    let e = s
        .open(&b, OpenOptions::new().create_dir().exclusive())
        .await
        .expect_err("exists");
    assert_eq!(e.code(), Some(ErrorCode::AlreadyExists), "{e}");

    // Files: one in each directory, each in the cell of its directory's slot.
    let f = format!("{b}/f");
    let g = format!("{a}/g");
    let (hf, info) = s
        .open(
            &f,
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"one".to_vec()),
        )
        .await
        .unwrap_or_else(|e| panic!("create {f}: {e}"));
    assert!(info.created);
    assert_eq!(info.stat.cell, cell_of(&map, &f, false));
    assert_eq!(
        info.stat.cell, b_anchor,
        "a file lives with its directory's children"
    );
    let (hg, info) = s
        .open(
            &g,
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"gee".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(info.stat.cell, a_anchor);

    // Reads and writes, through the proxy's cache and its invalidations.
    assert_eq!(hf.contents().await.unwrap().0, b"one");
    hf.set_contents(b"two".to_vec()).await.unwrap();
    assert_eq!(hf.contents().await.unwrap().0, b"two");
    let (h, info) = s
        .open(&f, OpenOptions::new().read().read_contents())
        .await
        .unwrap();
    assert_eq!(info.contents.as_deref(), Some(&b"two"[..]));
    assert_eq!(h.stat().await.unwrap().cell, b_anchor);
    h.close().await;
    assert_eq!(hg.contents().await.unwrap().0, b"gee");

    // Listings: each directory's children, from its anchor; the root lists a.
    let mut la = ha.child_names().await.unwrap();
    la.sort();
    let (bn, gn) = (b.rsplit('/').next().unwrap(), "g");
    assert_eq!(names(&la), vec![bn, gn]);
    assert_eq!(names(&hb.child_names().await.unwrap()), vec!["f"]);
    let entries = hb.read_dir().await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].stat.cell, b_anchor);
    let (root, info) = s
        .open("/ls/local", OpenOptions::new().read())
        .await
        .unwrap();
    assert_eq!(info.stat.cell, cell_of(&map, "/ls/local", true));
    assert!(root
        .child_names()
        .await
        .unwrap()
        .contains(&a.rsplit('/').next().unwrap().to_string()));
    assert_eq!(ha.stat().await.unwrap().child_count, 2);

    // Deletes: a non-empty directory refuses; emptied, it goes, and its parent's listing
    // (in another cell) no longer shows it.
    let e = hb.delete().await.expect_err("not empty");
    assert_eq!(e.code(), Some(ErrorCode::NotEmpty), "{e}");
    hf.delete().await.unwrap();
    hb.delete()
        .await
        .unwrap_or_else(|e| panic!("rmdir {b}: {e}"));
    assert_eq!(names(&ha.child_names().await.unwrap()), vec!["g"]);
    let e = s
        .open(&b, OpenOptions::new().read())
        .await
        .expect_err("deleted");
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
    hg.delete().await.unwrap();
    ha.delete()
        .await
        .unwrap_or_else(|e| panic!("rmdir {a}: {e}"));
    let e = s
        .open(&a, OpenOptions::new().read())
        .await
        .expect_err("deleted");
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
    // Recreated, it is a new directory (and created again).
    let (h, info) = s.open(&a, OpenOptions::new().create_dir()).await.unwrap();
    assert!(info.created);
    assert_eq!(info.stat.cell, a_anchor);
    h.delete().await.unwrap();

    // The reserved subtree goes to the meta cell.
    let (h, info) = s
        .open(
            &warren_client::map::map_path(D),
            OpenOptions::new().read().read_contents(),
        )
        .await
        .unwrap();
    assert_eq!(info.stat.cell, "meta");
    assert_eq!(
        PartitionMap::from_json(info.contents.unwrap()).unwrap(),
        map,
        "the map, read through the proxy"
    );
    h.close().await;

    // Observability: the map epoch and the cells with sessions.
    let admin = proxy.admin_addr().unwrap();
    let status = http_get(admin, "/status").await;
    let body = &status[status.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["map_epoch"], 1, "{v}");
    assert_eq!(v["meta_cell"], "meta", "{v}");
    let upstream: Vec<&str> = v["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for c in [&a_anchor, &b_anchor, &"meta".to_string()] {
        assert!(upstream.contains(&c.as_str()), "{c} in {upstream:?}");
    }
    let metrics = http_get(admin, "/metrics").await;
    assert!(metrics.contains("warren_proxy_map_epoch 1"), "{metrics}");
    assert!(
        metrics.contains("warren_proxy_wrong_cell_total{kind=\"directory\"}"),
        "the directory redirects were counted"
    );
    assert!(http_get(admin, "/readyz").await.starts_with("HTTP/1.1 200"));

    s.close().await.unwrap();
    drop(proxy);
    drop(d);
}

/// A cell that appears in a new map is used without restarting the proxy: a directory
/// whose slot moves to it (before it exists) has its children there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cell_added_by_a_new_map_is_used_without_a_restart() {
    let mut d = deployment().await;
    let map = d.map();
    let proxy = Proxy::builder().meta(d.meta_addrs()).admin().run().await;
    let s = Session::connect_with(ClientOptions::proxies([proxy.addr()]))
        .await
        .unwrap();
    // Warm up: something in every cell.
    let (h, _) = s
        .open(
            "/ls/local/warm",
            OpenOptions::new().write().create_file(b"w".to_vec()),
        )
        .await
        .unwrap();
    h.close().await;

    // Map 2: a new cell c4 gets the slot of /ls/local/n.
    let n = split_dir(&map, "/ls/local", "n", &[]);
    let Route::Cell { slot, .. } = map.route(&n, true).unwrap() else {
        panic!("not a data path")
    };
    let l4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a4 = l4.local_addr().unwrap();
    let mut owners = map.slot_owners().to_vec();
    owners[slot as usize] = "c4".into();
    let mut table: BTreeMap<String, Vec<String>> = map.cells().clone();
    table.insert("c4".into(), vec![a4.to_string()]);
    let map2 = PartitionMap::new(D, 2, owners, table).unwrap();
    d.write_map(&map2).await;
    d.add_cell("c4", l4).await;
    d.wait_for_map(2).await;
    wait_for_map_at(&proxy.addr(), 2, "the proxy").await;

    let (hn, info) = s
        .open(&n, OpenOptions::new().read().write().create_dir())
        .await
        .unwrap_or_else(|e| panic!("mkdir {n}: {e}"));
    assert!(info.created);
    assert_eq!(info.stat.cell, "c4");
    let (hf, info) = s
        .open(
            &format!("{n}/f"),
            OpenOptions::new().read().write().create_file(b"4".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(info.stat.cell, "c4");
    assert_eq!(hf.contents().await.unwrap().0, b"4");
    assert_eq!(names(&hn.child_names().await.unwrap()), vec!["f"]);

    let admin = proxy.admin_addr().unwrap();
    let status = http_get(admin, "/status").await;
    assert!(status.contains("\"map_epoch\": 2"), "{status}");
    assert!(status.contains("\"c4\""), "{status}");
    hf.delete().await.unwrap();
    hn.delete().await.unwrap();
    s.close().await.unwrap();
}

/// With `--meta` the proxy is ready only once it has read the map; until then a call that
/// needs routing waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_is_ready_only_once_the_map_is_loaded() {
    let meta = Cell::builder().name("meta").deployment(D).run().await;
    let c1_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c1_addr = c1_listener.local_addr().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cfg = Proxy::builder().meta(meta.endpoints()).config(&addr);
    assert!(cfg.cells.is_empty());
    let (ready_tx, mut ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(warren_proxy::run(
        listener,
        None,
        cfg,
        move |_| {
            let _ = ready_tx.send(());
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(ready_rx.try_recv().is_err(), "not ready without a map");
    let info = warren_client::locate(std::slice::from_ref(&addr), Duration::from_secs(2))
        .await
        .expect("it answers Locate meanwhile");
    assert!(!info.serving);
    assert_eq!(info.map_epoch, 0);

    let map = PartitionMap::single_cell(D, "c1", vec![c1_addr.to_string()], 4096).unwrap();
    write_first_map(&meta.endpoints(), &map).await;
    let c1 = Cell::builder()
        .name("c1")
        .deployment(D)
        .listener(c1_listener)
        .meta(meta.endpoints())
        .run()
        .await;
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("ready once the map is loaded")
        .unwrap();
    let info = warren_client::locate(std::slice::from_ref(&addr), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(info.serving);
    assert_eq!(info.map_epoch, 1);
    assert_eq!(info.deployment, D);

    let s = Session::connect_with(ClientOptions::proxies([addr.clone()]))
        .await
        .unwrap();
    let (h, info) = s
        .open(
            "/ls/local/x",
            OpenOptions::new().write().create_file(b"x".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(info.stat.cell, "c1");
    h.delete().await.unwrap();
    // A path outside the deployment: the error a cell would give, not a panic.
    let e = s
        .open("/ls/other/x", OpenOptions::new())
        .await
        .expect_err("another deployment");
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument), "{e}");
    s.close().await.unwrap();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    drop(c1);
}

/// Proxies `p1` and `p2` routing by `d`'s map, with a 4 s client lease; their addresses.
async fn two_proxies(d: &Deployment) -> (Vec<Option<TestProxy>>, Vec<String>) {
    let mut proxies = Vec::new();
    for id in ["p1", "p2"] {
        let p = Proxy::builder()
            .meta(d.meta_addrs())
            .client_lease(Duration::from_secs(4))
            .admin()
            .id(id)
            .run()
            .await;
        proxies.push(Some(p));
    }
    let addrs = proxies.iter().flatten().map(|p| p.addr()).collect();
    (proxies, addrs)
}

/// Which of `proxies` holds the one client session (by its `/status`).
async fn holder_of(proxies: &[Option<TestProxy>]) -> usize {
    let mut holder = None;
    for (i, p) in proxies.iter().enumerate() {
        let st = http_get(p.as_ref().unwrap().admin_addr().unwrap(), "/status").await;
        if st.contains("\"client_sessions\": 1") {
            holder = Some(i);
        }
    }
    holder.expect("one proxy holds the session")
}

/// A client whose proxy dies moves to the next one, which claims it at every cell of the
/// map (not only those it used itself): its handles, locks (on a file and on a split
/// directory) and ephemeral file in several cells survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_of_a_dead_proxy_keeps_its_state_in_every_cell() {
    let d = deployment().await;
    let map = d.map();
    let (mut proxies, addrs) = two_proxies(&d).await;
    let s = Session::connect_with(
        ClientOptions::proxies(addrs.clone()).grace_period(Duration::from_secs(30)),
    )
    .await
    .unwrap();

    let a = split_dir(&map, "/ls/local", "m", &[]);
    let (ha, _) = s
        .open(&a, OpenOptions::new().read().write().create_dir())
        .await
        .unwrap();
    let f = format!("{a}/f");
    let (hf, info) = s
        .open(
            &f,
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"kept".to_vec()),
        )
        .await
        .unwrap();
    let f_cell = info.stat.cell.clone();
    let (he, info) = s
        .open(
            "/ls/local/eph",
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"e".to_vec())
                .ephemeral(),
        )
        .await
        .unwrap();
    assert_eq!(info.stat.cell, cell_of(&map, "/ls/local/eph", false));
    let seq_f = hf
        .acquire(warren_client::LockMode::Exclusive, None)
        .await
        .unwrap();
    let seq_a = ha
        .acquire(warren_client::LockMode::Exclusive, None)
        .await
        .unwrap();
    assert!(s.check_sequencer(&seq_f).await.unwrap());
    assert_eq!(seq_a.path, a);
    // The proxy holding the session dies. The other has used no data cell yet: adopting
    // the client, it claims it at all of them.
    let holder = holder_of(&proxies).await;
    drop(proxies[holder].take());
    let p2 = proxies[1 - holder].take().unwrap();
    let mut moved = false;
    for _ in 0..100 {
        if hf.contents().await.is_ok_and(|(c, _)| c == b"kept") {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(moved, "the client reached p2 and its handle works there");
    assert_eq!(he.contents().await.unwrap().0, b"e");
    assert_eq!(ha.child_names().await.unwrap(), vec!["f".to_string()]);
    assert!(
        s.check_sequencer(&seq_f).await.unwrap(),
        "the lock was kept"
    );
    // The reads above may come from the library's cache before the session has moved:
    // wait (bounded) until p2 has taken it on.
    let mut status = String::new();
    for _ in 0..100 {
        status = http_get(p2.admin_addr().unwrap(), "/status").await;
        if status.contains("\"client_sessions\": 1")
            && d.cells()
                .iter()
                .all(|c| status.contains(&format!("\"name\": \"{}\"", c.name())))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(status.contains("\"client_sessions\": 1"), "{status}");
    for c in d.cells() {
        assert!(
            status.contains(&format!("\"name\": \"{}\"", c.name())),
            "p2 claimed at {}: {status}",
            c.name()
        );
    }

    // Another client cannot take the lock: it is still held, in f's cell.
    let other = Session::connect_with(ClientOptions::proxies([p2.addr()]))
        .await
        .unwrap();
    let (hf2, info) = other
        .open(&f, OpenOptions::new().read().write())
        .await
        .unwrap();
    assert_eq!(info.stat.cell, f_cell);
    let e = hf2
        .try_acquire(warren_client::LockMode::Exclusive)
        .await
        .expect_err("held by the moved client");
    assert_eq!(e.code(), Some(ErrorCode::LockHeld), "{e}");
    hf2.close().await;
    let (ha2, _) = other
        .open(&a, OpenOptions::new().read().write())
        .await
        .unwrap();
    let e = ha2
        .try_acquire(warren_client::LockMode::Exclusive)
        .await
        .expect_err("the directory's lock is held by the moved client");
    assert_eq!(e.code(), Some(ErrorCode::LockHeld), "{e}");
    ha2.close().await;
    other.close().await.unwrap();

    hf.release().await.unwrap();
    ha.release().await.unwrap();
    hf.delete().await.unwrap();
    ha.delete().await.unwrap();
    s.close().await.unwrap();
}

/// A client that opened nothing is known only to its proxy. When that proxy dies, the
/// client says it holds nothing (`ctx.holds_nothing`), so the proxy it moves to, finding
/// it at no cell, takes it on afresh with its principal rather than answering
/// `SESSION_EXPIRED`: the session lives on, and its first open works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_opened_nothing_survives_the_death_of_its_proxy() {
    let d = deployment().await;
    let (mut proxies, addrs) = two_proxies(&d).await;
    let s = Session::connect_with(
        ClientOptions::proxies(addrs.clone())
            .principal("idle-client")
            .grace_period(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let mut events = s.events();
    let holder = holder_of(&proxies).await;
    drop(proxies[holder].take());
    let p2 = proxies[1 - holder].take().unwrap();

    // The session moves to p2 and reports the fail-over, not an expiry.
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        let mut seen = Vec::new();
        while let Some(e) = events.recv().await {
            let done = matches!(
                e,
                warren_client::Event::MasterFailover | warren_client::Event::Expired
            );
            seen.push(e);
            if done {
                break;
            }
        }
        seen
    })
    .await
    .expect("an event within 20 s");
    assert!(
        matches!(seen.last(), Some(warren_client::Event::MasterFailover)),
        "{seen:?}"
    );
    assert_ne!(s.state(), warren_client::SessionState::Expired);
    let (h, info) = s
        .open(
            "/ls/local/after-move",
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"x".to_vec())
                .ephemeral(),
        )
        .await
        .expect("the moved session opens");
    assert_eq!(h.contents().await.unwrap().0, b"x");
    assert!(!info.stat.cell.is_empty());
    let metrics = http_get(p2.admin_addr().unwrap(), "/metrics").await;
    assert!(
        metrics.contains("warren_proxy_fresh_adoptions_total 1"),
        "{metrics}"
    );
    h.close().await;
    s.close().await.unwrap();
}

/// `CheckSequencer` is routed like an open: a sequencer of a lock on a directory whose
/// child anchor is in another cell than its entry is checked at the anchor (the entry's
/// cell redirects with `WRONG_CELL{directory}`), one on a file at the file's cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sequencers_of_split_directories_are_checked_at_their_anchor() {
    let d = deployment().await;
    let map = d.map();
    let proxy = Proxy::builder().meta(d.meta_addrs()).run().await;
    let s = Session::connect_with(ClientOptions::proxies([proxy.addr()]))
        .await
        .unwrap();
    let a = split_dir(&map, "/ls/local", "q", &[]);
    let (ha, _) = s
        .open(&a, OpenOptions::new().read().write().create_dir())
        .await
        .unwrap();
    let (hf, _) = s
        .open(
            &format!("{a}/f"),
            OpenOptions::new().write().create_file(b"f".to_vec()),
        )
        .await
        .unwrap();
    let seq_f = hf
        .acquire(warren_client::LockMode::Exclusive, None)
        .await
        .unwrap();
    let seq_a = ha
        .acquire(warren_client::LockMode::Shared, None)
        .await
        .unwrap();
    assert!(s.check_sequencer(&seq_f).await.unwrap());
    assert!(
        s.check_sequencer(&seq_a).await.unwrap(),
        "a directory's lock is checked at its anchor"
    );
    ha.release().await.unwrap();
    assert!(!s.check_sequencer(&seq_a).await.unwrap(), "released");
    hf.release().await.unwrap();
    hf.delete().await.unwrap();
    ha.delete().await.unwrap();
    s.close().await.unwrap();
    drop(d);
}

/// A proxy whose map is older than the cells' (cut off from the meta cell) is refused by
/// the slot's old owner with `WRONG_CELL{2, new owner}`, waits for the newer map, and — it
/// cannot arrive — sends the call to the owner the cell named, which serves it. The old
/// owner serves nothing. Once reconnected the proxy learns the new map.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_with_a_stale_map_is_refused_then_follows_the_named_owner_and_the_old_owner_serves_nothing(
) {
    let d = Deployment::builder()
        .cells(3)
        .proxies(0)
        .lease(Duration::from_secs(2))
        .run()
        .await;
    let map = d.map();
    // The proxy reaches the meta cell through a bridge we can cut.
    let bridge = warren_testkit::Bridge::start(d.meta().addr().parse().unwrap()).await;
    let proxy = Proxy::builder()
        .meta(vec![bridge.addr().to_string()])
        .admin()
        .run()
        .await;
    let s = Session::connect_with(ClientOptions::proxies([proxy.addr()]))
        .await
        .unwrap();
    let path = "/ls/local/moved";
    let Route::Cell { cell: old, slot } = map.route(path, false).unwrap() else {
        panic!("not a data path")
    };
    let old = old.to_string();
    let new = map.cells().keys().find(|c| **c != old).unwrap().clone();

    bridge.blackhole();
    let mut owners = map.slot_owners().to_vec();
    owners[slot as usize] = new.clone();
    let map2 = PartitionMap::new(D, 2, owners, map.cells().clone()).unwrap();
    d.write_map(&map2).await;
    d.wait_for_map(2).await;
    assert_eq!(map_epoch_at(&proxy.addr()).await, 1, "the proxy is cut off");
    let old_cell = d.cell(&old).unwrap();
    let nodes_before = old_cell.handle().status().nodes;

    let started = std::time::Instant::now();
    let (h, info) = s
        .open(path, OpenOptions::new().write().create_file(b"v".to_vec()))
        .await
        .expect("served by the owner the old owner named");
    let took = started.elapsed();
    assert!(info.created);
    assert_eq!(info.stat.cell, new, "created at the new owner");
    assert!(
        took >= Duration::from_secs(1),
        "the proxy first waited for a newer map ({took:?})"
    );
    assert_eq!(
        old_cell.handle().status().nodes,
        nodes_before,
        "never served by the old owner"
    );
    assert_eq!(map_epoch_at(&proxy.addr()).await, 1, "still cut off");
    let metrics = http_get(proxy.admin_addr().unwrap(), "/metrics").await;
    // (At least: the recorder is shared by every test of this binary.)
    let stale: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("warren_proxy_wrong_cell_total{kind=\"stale\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(stale >= 1.0, "the stale answer is counted: {metrics}");

    // Reconnected, the proxy learns map 2 and routes there by itself.
    bridge.unblackhole();
    wait_for_map_at(&proxy.addr(), 2, "the proxy").await;
    let (r, info) = s
        .open(path, OpenOptions::new().read().read_contents())
        .await
        .unwrap();
    assert_eq!(info.contents.as_deref(), Some(&b"v"[..]));
    assert_eq!(info.stat.cell, new);
    r.close().await;
    h.delete().await.unwrap();
    s.close().await.unwrap();
}

/// One path grammar: every bad path — `.` and `..` components included, which routers once
/// let through to the cells — is refused with the same code and the same words by the
/// router, by a cell, through a proxy fronting that cell (`--cell`), through a proxy
/// routing by the map, and by the client library routing by the map itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_path_is_refused_in_the_same_words_by_the_router_a_cell_a_proxy_and_a_direct_client()
{
    let d = deployment().await;
    let cell = Cell::builder().memory().run().await;
    let fronting = Proxy::builder().front(&cell).run().await;
    let routing = Proxy::builder().meta(d.meta_addrs()).run().await;
    let mut sessions = Vec::new();
    for (who, options) in [
        ("a cell", ClientOptions::new(cell.endpoints())),
        (
            "a proxy fronting the cell",
            ClientOptions::proxies([fronting.addr()]),
        ),
        (
            "a proxy routing by the map",
            ClientOptions::proxies([routing.addr()]),
        ),
        (
            "the client routing by the map",
            ClientOptions::meta(d.meta_addrs()),
        ),
    ] {
        let s = Session::connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("a session at {who}: {e}"));
        sessions.push((who, s));
    }
    let component = format!("/ls/{D}/{}", "x".repeat(256));
    let long = format!("/ls/{D}/{}", vec!["abcdefghij"; 400].join("/"));
    for path in [
        format!("/ls/{D}/../a"),
        format!("/ls/{D}/./a"),
        format!("/ls/{D}/a/.."),
        format!("/ls/{D}/."),
        "/ls/../a".to_string(),
        format!("/ls/{D}/a//b"),
        format!("/ls/{D}/a b"),
        format!("/ls/{D}/a:b"),
        format!("/ls/{D}/"),
        "/ls/otherdep/x".to_string(),
        component,
        long,
    ] {
        let want = warren_client::route_error(
            warren_router::check_path(&path, D).expect_err("a bad path"),
        );
        for (who, s) in &sessions {
            let e = s
                .open(&path, OpenOptions::new().write().create_file(Vec::new()))
                .await
                .expect_err("a bad path is refused");
            let got = e
                .warren()
                .unwrap_or_else(|| panic!("{path:?} at {who}: not a Warren error: {e}"));
            assert_eq!(
                (got.code, got.message.as_str()),
                (want.code, want.message.as_str()),
                "{path:?} at {who}"
            );
        }
    }
    let relative = format!("/ls/{D}/../a");
    assert_eq!(
        warren_router::check_path(&relative, D)
            .unwrap_err()
            .to_string(),
        format!(
            "invalid path {relative:?}: a path component \"..\" is relative; Warren paths have \
             no \".\" or \"..\" components"
        )
    );
    for (_, s) in sessions {
        s.close().await.unwrap();
    }
    drop(d);
}
