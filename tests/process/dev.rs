//! `warren dev`: a meta cell, data cells and proxies in one process; `warren ctl` through a
//! printed proxy; Ctrl-C; resume; refusals (a port in use, a bad flag, a different
//! `--cells` on existing data).

use crate::{bin, stderr, stdout, warren};
use std::time::Duration;
use warren_config::Layout;
use warren_router::{PartitionMap, Route};
use warren_testkit::WarrenProcess;

/// A base port P for `warren dev --base-port P` whose whole layout (P, P+1.., P+80..,
/// P+101.., P+181..) was free a moment ago. Taken below the usual ephemeral range, so
/// ports handed out by the system to other tests rarely collide with it.
pub fn free_base_port(cells: u16, proxies: u16) -> u16 {
    let ports_of = |p: u16| {
        let layout = Layout::new(cells, proxies, p);
        let members = std::iter::once(layout.meta_ports())
            .chain((1..=cells).map(|k| layout.cell_ports(k)))
            .chain((1..=proxies).map(|j| layout.proxy_ports(j)));
        members.flat_map(|m| [m.grpc, m.admin]).collect::<Vec<_>>()
    };
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
    for attempt in 0..200u64 {
        // 20000..32000 in steps of 250 (a layout spans 201 ports).
        let p = 20_000 + ((seed.wrapping_mul(31).wrapping_add(attempt * 7919)) % 48) as u16 * 250;
        let held: Result<Vec<_>, _> = ports_of(p)
            .into_iter()
            .map(|port| std::net::TcpListener::bind(("127.0.0.1", port)))
            .collect();
        if let Ok(held) = held {
            drop(held);
            // A child another test forked while these were open holds them until its exec.
            std::thread::sleep(Duration::from_millis(200));
            return p;
        }
    }
    panic!("no free port layout for warren dev");
}

/// Runs `warren ctl --endpoint EP ARGS…`.
async fn ctl(ep: &str, args: &[&str]) -> std::process::Output {
    let mut v = vec!["ctl", "--endpoint", ep];
    v.extend_from_slice(args);
    warren(&v).await
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "{}", stderr(o));
}

fn cell_of(map: &PartitionMap, path: &str, anchor: bool) -> String {
    match map.route(path, anchor).expect("routes") {
        Route::Cell { cell, .. } => cell.to_string(),
        Route::Meta => "meta".to_string(),
    }
}

#[tokio::test]
async fn dev_prints_its_endpoints_serves_ctl_through_a_proxy_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let mut dev = WarrenProcess::spawn_dev(bin(), &data, 3, 2).await;

    // The banner: exactly meta, cells, proxies, admin (then `ready`).
    assert_eq!(dev.banner.len(), 4, "{:?}", dev.banner);
    let meta = dev.meta_addr();
    assert_eq!(dev.banner[0], format!("meta: {meta}"));
    let names: Vec<&str> = dev.cells.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["c1", "c2", "c3"], "{:?}", dev.banner);
    assert!(
        dev.banner[1].starts_with("cells: c1=127.0.0.1:"),
        "{:?}",
        dev.banner
    );
    assert_eq!(dev.proxies.len(), 2, "{:?}", dev.banner);
    assert_eq!(dev.banner[2], format!("proxies: {}", dev.proxies.join(",")));
    let admin: Vec<&str> = dev.banner[3]
        .strip_prefix("admin: ")
        .expect("an admin line")
        .split(',')
        .map(|item| item.split_once('=').expect("NAME=ADDR").0)
        .collect();
    assert_eq!(
        admin,
        ["meta", "c1", "c2", "c3", "p1", "p2"],
        "{:?}",
        dev.banner
    );
    let cells_before = dev.cells.clone();
    let ep = dev.proxy_addr();

    // The map: epoch 1, the printed cells at the printed addresses.
    let o = ctl(&ep, &["map", "show", "--json"]).await;
    ok(&o);
    let map = PartitionMap::from_json(stdout(&o).trim()).expect("a map");
    assert_eq!(map.map_epoch(), 1);
    for (name, addr) in &dev.cells {
        assert_eq!(map.replicas(name).unwrap(), std::slice::from_ref(addr));
    }
    let counts: Vec<u32> = map.slot_counts().into_values().collect();
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "{counts:?}"
    );
    // Every data cell has loaded it.
    for (name, addr) in &dev.cells {
        let o = ctl(addr, &["--json", "status"]).await;
        ok(&o);
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(v["cell"], name.as_str(), "{v}");
        assert_eq!(v["map_epoch"], 1, "{v}");
    }

    // ctl through the printed proxy, with no flags beyond the endpoint.
    for d in ["/a", "/a/b", "/a/b/c", "/x"] {
        ok(&ctl(&ep, &["mkdir", d]).await);
    }
    ok(&ctl(&ep, &["put", "/a/b/c/f", "hello"]).await);
    let o = ctl(&ep, &["cat", "/a/b/c/f"]).await;
    ok(&o);
    assert_eq!(stdout(&o), "hello");
    assert_eq!(stdout(&ctl(&ep, &["ls", "/a/b"]).await), "c/\n");
    assert_eq!(stdout(&ctl(&ep, &["ls", "/a/b/c"]).await), "f\n");
    // The other proxy sees the same namespace.
    let o = ctl(&dev.proxies[1], &["cat", "/a/b/c/f"]).await;
    assert_eq!(stdout(&o), "hello", "{}", stderr(&o));

    // stat names the cell the map gives the node (a directory: its children's cell).
    let o = ctl(&ep, &["stat", "/a/b/c/f"]).await;
    ok(&o);
    let want = cell_of(&map, "/ls/local/a/b/c/f", false);
    assert!(
        stdout(&o).contains(&format!("\ncell: {want}\n")),
        "want cell {want}: {}",
        stdout(&o)
    );
    for (path, anchor) in [("/ls/local/a/b/c/f", false), ("/ls/local/a/b", true)] {
        let o = ctl(&ep, &["--json", "stat", path]).await;
        ok(&o);
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        assert_eq!(
            v["cell"],
            cell_of(&map, path, anchor).as_str(),
            "{path}: {v}"
        );
    }

    // Ctrl-C stops everything, exit 0.
    let status = dev
        .interrupt(Duration::from_secs(20))
        .await
        .expect("warren dev did not stop within 20 s of SIGINT");
    assert!(status.success(), "exit {status:?}");

    // A second run resumes: same cells where the map says, the data still there, the map
    // not rewritten.
    let mut dev = WarrenProcess::spawn_dev(bin(), &data, 3, 2).await;
    assert_eq!(dev.cells, cells_before);
    let ep = dev.proxy_addr();
    let o = ctl(&ep, &["cat", "/a/b/c/f"]).await;
    assert_eq!(stdout(&o), "hello", "{}", stderr(&o));
    let o = ctl(&ep, &["map", "show", "--json"]).await;
    ok(&o);
    assert_eq!(
        PartitionMap::from_json(stdout(&o).trim()).expect("a map"),
        map
    );
    let status = dev.interrupt(Duration::from_secs(20)).await.expect("stops");
    assert!(status.success(), "exit {status:?}");

    // The same data with another --cells is refused, saying why.
    let d = data.to_str().unwrap();
    let o = warren(&[
        "dev",
        "--data",
        d,
        "--cells",
        "2",
        "--proxies",
        "0",
        "--base-port",
        "0",
    ])
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has data cells c1,c2,c3") && stderr(&o).contains("--cells 3"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("ready"), "{}", stdout(&o));
}

#[tokio::test]
async fn dev_with_one_cell_and_no_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = WarrenProcess::spawn_dev(bin(), &dir.path().join("d"), 1, 0).await;
    assert_eq!(dev.banner.len(), 4, "{:?}", dev.banner);
    assert_eq!(dev.banner[2], "proxies: ");
    assert!(dev.proxies.is_empty());
    assert_eq!(dev.cells.len(), 1);
    let (name, c1) = dev.cells[0].clone();
    assert_eq!(name, "c1");
    let o = ctl(&c1, &["--json", "status"]).await;
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        (v["cell"].as_str(), v["map_epoch"].as_u64()),
        (Some("c1"), Some(1))
    );
    // c1 owns every slot: a client straight at it reaches the whole namespace.
    ok(&ctl(&c1, &["mkdir", "/d"]).await);
    ok(&ctl(&c1, &["put", "/d/f", "one cell"]).await);
    assert_eq!(stdout(&ctl(&c1, &["cat", "/d/f"]).await), "one cell");
    let o = ctl(&c1, &["stat", "/d/f"]).await;
    assert!(stdout(&o).contains("\ncell: c1\n"), "{}", stdout(&o));
    // The map through the meta cell.
    let o = ctl(&dev.meta_addr(), &["map", "show"]).await;
    ok(&o);
    assert!(
        stdout(&o).contains("cell c1: 4096 slots (ranges 0-4095)"),
        "{}",
        stdout(&o)
    );
    let status = dev.interrupt(Duration::from_secs(20)).await.expect("stops");
    assert!(status.success(), "exit {status:?}");
}

#[tokio::test]
async fn dev_refuses_a_port_in_use_and_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    let d = d.to_str().unwrap();
    // The meta cell's port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = taken.local_addr().unwrap().port();
    let o = warren(&[
        "dev",
        "--data",
        d,
        "--cells",
        "1",
        "--proxies",
        "0",
        "--base-port",
        &base.to_string(),
    ])
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "cannot listen on 127.0.0.1:{base} for the meta cell"
        )),
        "{e}"
    );
    assert!(e.contains("--base-port"), "{e}");
    assert!(!stdout(&o).contains("ready"));
    // Bad flags: clap names them.
    for (args, names) in [
        (vec!["dev", "--cells", "0"], "--cells"),
        (vec!["dev", "--proxies", "99"], "--proxies"),
        (vec!["dev", "--base-port", "70000"], "--base-port"),
        (vec!["dev", "--listen", "127.0.0.1:1"], "--listen"),
    ] {
        let o = warren(&args).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(names), "{args:?}: {}", stderr(&o));
    }
}

#[tokio::test]
async fn dev_on_a_corrupt_map_names_the_repair_and_resumes_after_it() {
    use warren_cell::store::{embedded::EmbeddedStore, Mutation, Store};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut dev = WarrenProcess::spawn_dev(bin(), &data, 1, 0).await;
    let c1 = dev.cells[0].1.clone();
    ok(&ctl(&c1, &["put", "/kept", "before"]).await);
    // The operator keeps a copy of the map.
    let o = ctl(&dev.meta_addr(), &["--json", "map", "show"]).await;
    ok(&o);
    let kept = dir.path().join("map.json");
    std::fs::write(&kept, stdout(&o)).unwrap();
    let status = dev.interrupt(Duration::from_secs(20)).await.expect("stops");
    assert!(status.success(), "exit {status:?}");

    // The meta cell's store is damaged: its map file no longer parses.
    {
        let store = EmbeddedStore::open(&data.join("meta")).expect("open the meta store");
        store
            .commit(vec![Mutation::PutContents {
                path: "/ls/local/warren/map".into(),
                data: b"\x00\x17 damaged".to_vec(),
            }])
            .await
            .expect("spoil the map");
    }
    let d = data.to_str().unwrap();
    let args = [
        "dev",
        "--data",
        d,
        "--cells",
        "1",
        "--proxies",
        "0",
        "--base-port",
        "0",
    ];
    let o = warren(&args).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("the partition map at /ls/local/warren/map is corrupt"),
        "{e}"
    );
    assert!(e.contains("warren ctl map repair --meta"), "{e}");
    assert!(e.contains("--from MAP.json"), "{e}");
    assert!(
        e.contains(&format!("--data {}", data.join("meta").display())),
        "{e}"
    );

    // As the error says: the meta cell alone, and the repair from the kept map.
    let meta_data = data.join("meta");
    let mut meta = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "meta",
            "--listen",
            "127.0.0.1:0",
            "--data",
            meta_data.to_str().unwrap(),
        ],
    )
    .await;
    let o = warren(&[
        "ctl",
        "map",
        "repair",
        "--meta",
        &meta.addr(),
        "--from",
        kept.to_str().unwrap(),
    ])
    .await;
    ok(&o);
    assert!(
        stdout(&o).starts_with(&format!(
            "repaired the partition map of deployment local: map epoch 2, from file {} (epoch 1)",
            kept.display()
        )),
        "{}",
        stdout(&o)
    );
    let status = meta
        .interrupt(Duration::from_secs(20))
        .await
        .expect("stops");
    assert!(status.success(), "exit {status:?}");

    // warren dev runs again, routing by the repaired map.
    let mut dev = WarrenProcess::spawn_dev(bin(), &data, 1, 0).await;
    let c1 = dev.cells[0].1.clone();
    assert_eq!(stdout(&ctl(&c1, &["cat", "/kept"]).await), "before");
    let o = ctl(&dev.meta_addr(), &["map", "show"]).await;
    ok(&o);
    assert!(stdout(&o).contains("map_epoch: 2\n"), "{}", stdout(&o));
    let status = dev.interrupt(Duration::from_secs(20)).await.expect("stops");
    assert!(status.success(), "exit {status:?}");
}
