//! `warren ctl` end to end against a real cell process.

use crate::{bin, stderr, stdout, warren, warren_env};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use warren_testkit::WarrenProcess;

async fn cell() -> (WarrenProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let p = WarrenProcess::spawn(
        bin(),
        &[
            "cell",
            "--name",
            "c0",
            "--listen",
            "127.0.0.1:0",
            "--data",
            dir.path().to_str().unwrap(),
        ],
    )
    .await;
    (p, dir)
}

#[tokio::test]
async fn walkthrough_of_every_command() {
    let (cell, _dir) = cell().await;
    let ep = cell.addr();
    let ctl = |args: &[&str]| {
        let mut v = vec!["ctl", "--endpoint", ep.as_str()];
        v.extend_from_slice(args);
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        warren(&refs).await
    };
    let ok = |o: &std::process::Output| assert!(o.status.success(), "{}", stderr(o));

    ok(&run(ctl(&["mkdir", "/app"])).await);
    ok(&run(ctl(&["put", "/app/config", "hello"])).await);
    let o = run(ctl(&["cat", "/app/config"])).await;
    ok(&o);
    assert_eq!(
        stdout(&o),
        "hello",
        "cat prints the contents and nothing else"
    );
    // put overwrites; --if-generation is compare-and-swap.
    ok(&run(ctl(&["put", "/app/config", "v2", "--if-generation", "0"])).await);
    let o = run(ctl(&["put", "/app/config", "v3", "--if-generation", "0"])).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: GENERATION_MISMATCH: "),
        "{}",
        stderr(&o)
    );
    // stat, text and JSON.
    let o = run(ctl(&["stat", "/app/config"])).await;
    ok(&o);
    assert!(
        stdout(&o).contains("content_generation: 1"),
        "{}",
        stdout(&o)
    );
    // The cell holding the node: the only one.
    assert!(
        stdout(&o).starts_with("path: /ls/local/app/config\ncell: c0\n"),
        "{}",
        stdout(&o)
    );
    let o = run(ctl(&["--json", "stat", "/app/config"])).await;
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["content_generation"], 1);
    assert_eq!(v["cell"], "c0");
    assert_eq!(v["length"], 2);
    // ls
    ok(&run(ctl(&["mkdir", "/app/sub"])).await);
    let o = run(ctl(&["ls", "/app"])).await;
    assert_eq!(stdout(&o), "config\nsub/\n");
    // stdin
    let mut child = tokio::process::Command::new(bin())
        .args(ctl(&["put", "/app/from-stdin", "-"]))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"piped\nbytes").await.unwrap();
    }
    assert!(child.wait().await.unwrap().success());
    assert_eq!(
        stdout(&run(ctl(&["cat", "/app/from-stdin"])).await),
        "piped\nbytes"
    );
    // Errors name their code.
    let o = run(ctl(&["cat", "/app/missing"])).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: NOT_FOUND: "),
        "{}",
        stderr(&o)
    );
    let o = run(ctl(&["rm", "/app"])).await;
    assert!(
        stderr(&o).starts_with("error: NOT_EMPTY: "),
        "{}",
        stderr(&o)
    );
    // 256 KiB + 1 (through stdin: one argv string may not be that long).
    let mut child = tokio::process::Command::new(bin())
        .args(ctl(&["put", "/app/big", "-"]))
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&vec![b'x'; 256 * 1024 + 1]).await.unwrap();
    }
    let o = child.wait_with_output().await.unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: TOO_LARGE: "),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        run(ctl(&["cat", "/app/big"])).await.status.code(),
        Some(2),
        "nothing was created"
    );
    let o = run(ctl(&["cat", "/app/../x"])).await;
    assert!(
        stderr(&o).starts_with("error: INVALID_ARGUMENT: "),
        "{}",
        stderr(&o)
    );
    // rm
    ok(&run(ctl(&["rm", "/app/sub"])).await);
    assert_eq!(
        stdout(&run(ctl(&["ls", "/app"])).await),
        "config\nfrom-stdin\n"
    );
    // status
    let o = run(ctl(&["--json", "status"])).await;
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["cell"], "c0");
    assert_eq!(v["epoch"], 1);
}

#[tokio::test]
async fn lock_holds_prints_the_sequencer_and_excludes_others() {
    let (cell, _dir) = cell().await;
    let ep = cell.addr();
    assert!(warren(&["ctl", "--endpoint", &ep, "put", "/l", ""])
        .await
        .status
        .success());
    let mut holder = tokio::process::Command::new(bin())
        .args(["ctl", "--endpoint", &ep, "lock", "/l", "--hold", "30"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let seq = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(seq.starts_with("/ls/local/l:x:"), "{seq}");
    // Current while held.
    let o = warren(&["ctl", "--endpoint", &ep, "check-sequencer", &seq]).await;
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(0), "current"));
    // Another try fails at once with LOCK_HELD.
    let o = warren(&[
        "ctl",
        "--endpoint",
        &ep,
        "lock",
        "/l",
        "--try",
        "--hold",
        "0",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: LOCK_HELD: "),
        "{}",
        stderr(&o)
    );
    // The holder goes away (its session is closed on SIGINT, or expires on SIGKILL): the
    // sequencer becomes stale.
    let _ = std::process::Command::new("kill")
        .args(["-INT", &holder.id().unwrap().to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(10), holder.wait()).await;
    let o = warren(&[
        "ctl",
        "--endpoint",
        &ep,
        "lock",
        "/l",
        "--try",
        "--hold",
        "0",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = warren(&["ctl", "--endpoint", &ep, "check-sequencer", &seq]).await;
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(1), "stale"));
}

#[tokio::test]
async fn watch_prints_one_event_per_line() {
    let (cell, _dir) = cell().await;
    let ep = cell.addr();
    assert!(warren(&["ctl", "--endpoint", &ep, "put", "/w", "0"])
        .await
        .status
        .success());
    let watcher = tokio::process::Command::new(bin())
        .args(["ctl", "--endpoint", &ep, "watch", "/w", "--count", "2"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Give the watcher time to open its handle, then write twice.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut writes = 0;
    let out = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            warren(&["ctl", "--endpoint", &ep, "put", "/w", &writes.to_string()])
                .await
                .status
                .success()
        );
        writes += 1;
        if writes >= 8 || tokio::time::Instant::now() > deadline {
            break tokio::time::timeout(Duration::from_secs(10), watcher.wait_with_output())
                .await
                .unwrap()
                .unwrap();
        }
        if writes >= 2 {
            // The watcher exits after two events; stop writing once it has.
            tokio::time::sleep(Duration::from_millis(300)).await;
            break tokio::time::timeout(Duration::from_secs(10), watcher.wait_with_output())
                .await
                .unwrap()
                .unwrap();
        }
    };
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, vec!["contents_modified /ls/local/w"; 2], "{text}");
}

#[tokio::test]
async fn unreachable_endpoint_and_env_default() {
    // With neither --endpoint nor WARREN_ENDPOINT, ctl goes to the first proxy of
    // `warren dev` (unless one happens to run here).
    let o = warren(&["ctl", "cat", "/x"]).await;
    if o.status.code() == Some(2) && stderr(&o).starts_with("error: UNREACHABLE: ") {
        assert!(stderr(&o).contains("127.0.0.1:7201"), "{}", stderr(&o));
    }
    let port = crate::free_port();
    let ep = format!("127.0.0.1:{port}");
    let o = warren(&["ctl", "--endpoint", &ep, "cat", "/x"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: UNREACHABLE: "),
        "{}",
        stderr(&o)
    );
    let (cell, _dir) = cell().await;
    let o = warren_env(
        &["ctl", "put", "/e", "via-env"],
        &[("WARREN_ENDPOINT", &cell.addr())],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = warren_env(&["ctl", "cat", "/e"], &[("WARREN_ENDPOINT", &cell.addr())]).await;
    assert_eq!(stdout(&o), "via-env");
}

#[tokio::test]
async fn deployment_init_writes_the_map_once_and_map_show_prints_it() {
    use warren_router::PartitionMap;
    let (cell, _dir) = cell().await;
    let ep = cell.addr();
    let ctl = |args: &[&str]| {
        let mut v = vec!["ctl".to_string(), "--endpoint".to_string(), ep.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        warren(&refs).await
    };
    let failed_with = |o: &std::process::Output, prefix: &str| {
        assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
        assert!(stderr(o).starts_with(prefix), "{}", stderr(o));
    };
    let init = |cells: &[&str], slots: &str| {
        let mut v = vec![
            "ctl".to_string(),
            "deployment".into(),
            "init".into(),
            "--meta".into(),
            ep.clone(),
            "--slots".into(),
            slots.into(),
        ];
        for c in cells {
            v.push("--cell".into());
            v.push(c.to_string());
        }
        v
    };
    let two = ["a=127.0.0.1:7001", "b=127.0.0.1:7002,127.0.0.1:7012"];

    // No map yet.
    let o = run(ctl(&["map", "show"])).await;
    failed_with(
        &o,
        "error: NOT_FOUND: no partition map at /ls/local/warren/map; run warren ctl deployment init",
    );

    // Bad --cell arguments are refused, naming the culprit, and write nothing.
    let o = run(init(&["a127.0.0.1:7001"], "64")).await;
    failed_with(&o, "error: INVALID_ARGUMENT: ");
    assert!(stderr(&o).contains("\"a127.0.0.1:7001\""), "{}", stderr(&o));
    let o = run(init(&["a=127.0.0.1:7001", "b=no-port"], "64")).await;
    failed_with(&o, "error: INVALID_ARGUMENT: ");
    assert!(stderr(&o).contains("\"no-port\""), "{}", stderr(&o));
    let o = run(init(&["a=127.0.0.1:7001", "a=127.0.0.1:7002"], "64")).await;
    failed_with(&o, "error: INVALID_ARGUMENT: ");
    assert!(
        stderr(&o).contains("\"a\" is listed twice"),
        "{}",
        stderr(&o)
    );
    failed_with(&run(ctl(&["map", "show"])).await, "error: NOT_FOUND: ");

    // The first map.
    let o = run(init(&two, "64")).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "initialised deployment local: map epoch 1, 64 slots over 2 cells\n"
    );

    let o = run(ctl(&["map", "show"])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "deployment: local\nmap_epoch: 1\nslots: 64\n\
         cell a: 32 slots (ranges 0-31) replicas 127.0.0.1:7001\n\
         cell b: 32 slots (ranges 32-63) replicas 127.0.0.1:7002,127.0.0.1:7012\n"
    );

    let o = run(ctl(&["map", "show", "--json"])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let map = PartitionMap::from_json(stdout(&o).trim()).expect("map show --json is a map");
    assert_eq!(map.deployment(), "local");
    assert_eq!(map.map_epoch(), 1);
    assert_eq!(map.slot_count(), 64);
    let counts: Vec<(String, u32)> = map.slot_counts().into_iter().collect();
    assert_eq!(counts, [("a".to_string(), 32), ("b".to_string(), 32)]);
    assert_eq!(
        map.replicas("b").unwrap(),
        ["127.0.0.1:7002", "127.0.0.1:7012"]
    );
    let stored = stdout(&run(ctl(&["cat", "/warren/map"])).await);
    assert_eq!(stored, map.to_json(), "the file holds the map's JSON");

    // Init never replaces a map.
    let o = run(init(&["c=127.0.0.1:7003"], "8")).await;
    failed_with(
        &o,
        "error: ALREADY_EXISTS: deployment local is already initialised (map epoch 1); ",
    );
    assert_eq!(
        stdout(&run(ctl(&["cat", "/warren/map"])).await),
        stored,
        "the existing map is untouched"
    );

    // Garbage is refused, naming the problem and the fix, and the map stays in force: from
    // an ordinary principal for who it is, from the operator for what it is. So are
    // deleting the map, and a repair of a map that parses.
    let o = run(ctl(&["put", "/warren/map", "{not json"])).await;
    failed_with(
        &o,
        "error: PERMISSION_DENIED: writing the map refused: the partition map at /ls/local/warren/map is changed only by `warren ctl deployment init` (the first map), `warren ctl reshard` or `warren ctl map repair` (principal \"warren:operator\"), not by principal \"\"",
    );
    let args = ctl(&["put", "/warren/map", "{not json"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = warren_env(&refs, &[("WARREN_PRINCIPAL", "warren:operator")]).await;
    failed_with(
        &o,
        "error: INVALID_ARGUMENT: the new contents are not a partition map (partition map is not valid JSON",
    );
    assert!(
        stderr(&o).contains("warren ctl map repair"),
        "{}",
        stderr(&o)
    );
    let o = run(ctl(&["rm", "/warren/map"])).await;
    failed_with(&o, "error: INVALID_ARGUMENT: /ls/local/warren/map is the partition map and cannot be deleted: there is no way to un-partition a deployment");
    // Even a valid next map is refused from an ordinary principal.
    let next = PartitionMap::new("local", 2, map.slot_owners().to_vec(), map.cells().clone())
        .unwrap()
        .to_json();
    let o = run(ctl(&["put", "/warren/map", &next])).await;
    failed_with(&o, "error: PERMISSION_DENIED: writing the map refused: ");
    assert_eq!(stdout(&run(ctl(&["cat", "/warren/map"])).await), stored);
    let o = run(ctl(&["map", "show"])).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("map_epoch: 1\n"), "{}", stdout(&o));
    let o = run(vec![
        "ctl".into(),
        "map".into(),
        "repair".into(),
        "--meta".into(),
        ep.clone(),
        "--from".into(),
        "/nonexistent/map.json".into(),
    ])
    .await;
    failed_with(
        &o,
        "error: INVALID_ARGUMENT: the stored map parses (epoch 1); nothing to repair",
    );
    // The map in force at the cell is still epoch 1.
    let o = run(ctl(&["status"])).await;
    assert!(stdout(&o).contains("map_epoch: 1\n"), "{}", stdout(&o));
}

#[tokio::test]
async fn cat_of_a_directory_is_an_error_pointing_at_ls() {
    let (cell, _dir) = cell().await;
    let ep = cell.addr();
    assert!(warren(&["ctl", "--endpoint", &ep, "mkdir", "/d"])
        .await
        .status
        .success());
    let o = warren(&["ctl", "--endpoint", &ep, "cat", "/d"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stdout(&o), "", "nothing on stdout");
    let err = stderr(&o);
    assert!(err.starts_with("error: INVALID_ARGUMENT: "), "{err}");
    assert!(err.contains("/ls/local/d is a directory"), "{err}");
    assert!(err.contains("warren ctl ls /d"), "{err}");
    // A file still prints its contents, and the directory's listing works as advised.
    assert!(warren(&["ctl", "--endpoint", &ep, "put", "/d/f", "x"])
        .await
        .status
        .success());
    let o = warren(&["ctl", "--endpoint", &ep, "cat", "/d/f"]).await;
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "x"));
    let o = warren(&["ctl", "--endpoint", &ep, "ls", "/d"]).await;
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(0), "f"));
}

#[tokio::test]
async fn every_duration_flag_takes_a_unit_or_plain_seconds() {
    let (cell, _dir) = cell().await;
    let ep = cell.addr();
    assert!(warren(&["ctl", "--endpoint", &ep, "put", "/h", ""])
        .await
        .status
        .success());
    for hold in ["0", "0s", "10ms", "0.01"] {
        let o = warren(&[
            "ctl",
            "--endpoint",
            &ep,
            "--grace",
            "5s",
            "lock",
            "/h",
            "--try",
            "--hold",
            hold,
        ])
        .await;
        assert!(o.status.success(), "--hold {hold}: {}", stderr(&o));
        assert!(stdout(&o).starts_with("/ls/local/h:x:"), "{}", stdout(&o));
    }
    let o = warren(&["ctl", "--endpoint", &ep, "--grace", "5", "stat", "/h"]).await;
    assert!(o.status.success(), "--grace 5: {}", stderr(&o));
    let o = warren(&["ctl", "--endpoint", &ep, "lock", "/h", "--hold", "soon"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--hold"), "{}", stderr(&o));
}

/// `acl set` writes the ACL files it is given and then the names; `acl get` shows them;
/// the cell then enforces them against the asserted principal (plaintext); writes to the
/// reserved subtree need the operator principal.
#[tokio::test]
async fn acl_set_and_get_and_the_reserved_subtree() {
    let (cell, _dir) = cell().await;
    let ep = cell.addr();
    let as_principal = |who: &'static str, args: &[&str]| {
        let mut v = vec!["ctl", "--endpoint", ep.as_str()];
        v.extend_from_slice(args);
        let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        async move {
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            warren_env(&refs, &[("WARREN_PRINCIPAL", who)]).await
        }
    };
    let ok = |o: &std::process::Output| assert!(o.status.success(), "{}", stderr(o));

    ok(&as_principal("alice", &["put", "/doc", "text"]).await);
    let o = as_principal("alice", &["acl", "get", "/doc"]).await;
    ok(&o);
    assert_eq!(
        stdout(&o),
        "path: /ls/local/doc\nread: (none)\nwrite: (none)\nchange_acl: (none)\n"
    );
    let o = as_principal(
        "alice",
        &[
            "acl",
            "set",
            "/doc",
            "--read",
            "readers",
            "--change-acl",
            "owners",
            "--file",
            "readers=alice,carol",
            "--file",
            "owners=alice",
        ],
    )
    .await;
    ok(&o);
    assert_eq!(
        stdout(&o),
        "path: /ls/local/doc\nread: readers\nwrite: (none)\nchange_acl: owners\n"
    );
    let o = as_principal("alice", &["cat", "/acl/readers"]).await;
    assert_eq!(stdout(&o), "alice\ncarol\n");
    let o = as_principal("alice", &["--json", "acl", "get", "/doc"]).await;
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["read"], "readers");
    // The cell enforces them: bob may neither read nor change the names.
    ok(&as_principal("carol", &["cat", "/doc"]).await);
    let o = as_principal("bob", &["cat", "/doc"]).await;
    assert!(
        stderr(&o).starts_with("error: PERMISSION_DENIED: ") && stderr(&o).contains("\"bob\""),
        "{}",
        stderr(&o)
    );
    let o = as_principal("bob", &["acl", "set", "/doc", "--read", ""]).await;
    assert!(stderr(&o).contains("PERMISSION_DENIED"), "{}", stderr(&o));
    let o = as_principal("alice", &["acl", "set", "/doc", "--file", "readers"]).await;
    assert!(
        stderr(&o).starts_with("error: INVALID_ARGUMENT: --file"),
        "{}",
        stderr(&o)
    );

    // The reserved subtree: the operator principal only.
    let o = as_principal("alice", &["mkdir", "/warren"]).await;
    assert!(
        stderr(&o).starts_with("error: PERMISSION_DENIED: ") && stderr(&o).contains("operator"),
        "{}",
        stderr(&o)
    );
    ok(&as_principal("warren:operator", &["mkdir", "/warren"]).await);
    ok(&as_principal("warren:operator", &["put", "/warren/note", "x"]).await);
    let o = as_principal("alice", &["put", "/warren/note", "y"]).await;
    assert!(stderr(&o).contains("PERMISSION_DENIED"), "{}", stderr(&o));
    let o = as_principal("alice", &["cat", "/warren/note"]).await;
    assert_eq!(
        stdout(&o),
        "x",
        "reading the reserved subtree is not restricted"
    );
}

/// Runs `warren ctl --endpoint EP ARGS…` and parses its stdout as one JSON value.
fn json_of(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(stdout(o).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} / {:?}", stdout(o), stderr(o)))
}

/// `-w simple|table|json` (and `--json`) on the node commands, errors included; `ls -r`,
/// `rm -r` and its refusal without a terminal, `cat --prefix`/`get --prefix`, `version`,
/// and endpoints without a port or without a server.
#[tokio::test]
async fn every_form_of_the_node_commands_and_their_errors() {
    let (cell, _dir) = cell().await;
    let ep = cell.addr();
    let run = |args: &[&str]| {
        let mut v = vec!["ctl".to_string(), "--endpoint".to_string(), ep.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        async move {
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            warren(&refs).await
        }
    };
    let ok = |o: &std::process::Output| assert!(o.status.success(), "{}", stderr(o));

    // mkdir and put: silent in the simple form, a record in JSON and in a table.
    let o = run(&["mkdir", "/t"]).await;
    ok(&o);
    assert_eq!(stdout(&o), "");
    let o = run(&["-w", "json", "mkdir", "/t/d"]).await;
    ok(&o);
    let v = json_of(&o);
    assert_eq!(
        (v["path"].as_str(), v["created"].as_bool()),
        (Some("/ls/local/t/d"), Some(true))
    );
    let o = run(&["put", "/t/a", "alpha"]).await;
    ok(&o);
    assert_eq!(stdout(&o), "");
    let o = run(&["--json", "put", "/t/d/b", "beta"]).await;
    ok(&o);
    let v = json_of(&o);
    assert_eq!(v["created"], true);
    assert_eq!(v["length"], 4);
    let o = run(&["-w", "json", "put", "/t/a", "alpha2"]).await;
    let v = json_of(&o);
    assert_eq!(
        (v["created"].as_bool(), v["content_generation"].as_u64()),
        (Some(false), Some(1))
    );
    let o = run(&["-w", "table", "put", "/t/a", "alpha3"]).await;
    ok(&o);
    assert!(
        stdout(&o).contains("| content_generation | 2"),
        "{}",
        stdout(&o)
    );

    // cat: raw, JSON, table.
    assert_eq!(stdout(&run(&["cat", "/t/a"]).await), "alpha3");
    let v = json_of(&run(&["-w", "json", "cat", "/t/a"]).await);
    assert_eq!(
        (v["path"].as_str(), v["contents"].as_str()),
        (Some("/ls/local/t/a"), Some("alpha3"))
    );
    let o = run(&["-w", "table", "cat", "/t/a"]).await;
    assert!(stdout(&o).contains("| contents | alpha3"), "{}", stdout(&o));

    // The checksum is the same hex in the text and in the JSON.
    let text = stdout(&run(&["stat", "/t/a"]).await);
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix("checksum: "))
        .expect("a checksum line")
        .to_string();
    assert!(hex.starts_with("0x") && hex.len() == 18, "{hex}");
    let v = json_of(&run(&["-w", "json", "stat", "/t/a"]).await);
    assert_eq!(v["checksum"].as_str(), Some(hex.as_str()));
    let table = stdout(&run(&["-w", "table", "stat", "/t/a"]).await);
    assert!(table.starts_with("+---"), "{table}");
    assert!(
        table.contains("| FIELD ") && table.contains(&hex),
        "{table}"
    );

    // ls -r: every node by its path under the directory.
    let o = run(&["ls", "-r", "/t"]).await;
    ok(&o);
    assert_eq!(stdout(&o), "a\nd/\nd/b\n");
    let v = json_of(&run(&["-w", "json", "ls", "--recursive", "/t"]).await);
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "d", "d/b"]);
    let o = run(&["-w", "table", "ls", "-r", "/t"]).await;
    assert!(stdout(&o).contains("| d/b  | file"), "{}", stdout(&o));

    // cat --prefix / get --prefix: every file under the directory with its contents.
    let o = run(&["cat", "--prefix", "/t"]).await;
    ok(&o);
    assert_eq!(stdout(&o), "/ls/local/t/a\nalpha3\n/ls/local/t/d/b\nbeta\n");
    let v = json_of(&run(&["-w", "json", "get", "--prefix", "/t"]).await);
    assert_eq!(
        v,
        serde_json::json!([
            {"path": "/ls/local/t/a", "contents": "alpha3"},
            {"path": "/ls/local/t/d/b", "contents": "beta"}
        ])
    );

    // Errors: text on stderr, or JSON on stderr with -w json; stdout stays empty.
    let o = run(&["cat", "/t/missing"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: NOT_FOUND: "),
        "{}",
        stderr(&o)
    );
    for args in [
        &["-w", "json", "cat", "/t/missing"][..],
        &["--json", "cat", "/t/missing"][..],
    ] {
        let o = run(args).await;
        assert_eq!(o.status.code(), Some(2));
        assert_eq!(stdout(&o), "");
        let e: serde_json::Value = serde_json::from_str(stderr(&o).trim())
            .unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
        assert_eq!(e["error"]["code"], "NOT_FOUND", "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("/ls/local/t/missing"),
            "{e}"
        );
    }

    // rm -r: refused without a terminal unless --yes, in both forms; then deletes all.
    let o = run(&["rm", "-r", "/t"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: INVALID_ARGUMENT: ") && stderr(&o).contains("--yes"),
        "{}",
        stderr(&o)
    );
    let o = run(&["-w", "json", "rm", "-r", "/t"]).await;
    let e: serde_json::Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(e["error"]["code"], "INVALID_ARGUMENT");
    assert_eq!(
        stdout(&run(&["ls", "-r", "/t"]).await),
        "a\nd/\nd/b\n",
        "nothing deleted"
    );
    let o = run(&["rm", "/t"]).await;
    assert!(
        stderr(&o).starts_with("error: NOT_EMPTY: "),
        "{}",
        stderr(&o)
    );
    let o = run(&["-w", "json", "rm", "-r", "-y", "/t"]).await;
    ok(&o);
    let v = json_of(&o);
    assert_eq!(
        (v["path"].as_str(), v["deleted"].as_u64()),
        (Some("/ls/local/t"), Some(4))
    );
    let o = run(&["stat", "/t"]).await;
    assert!(
        stderr(&o).starts_with("error: NOT_FOUND: "),
        "{}",
        stderr(&o)
    );
    let o = run(&["mkdir", "/u"]).await;
    ok(&o);
    let o = run(&["rm", "-r", "--yes", "/u"]).await;
    ok(&o);
    assert_eq!(stdout(&o), "");

    // version: the crate's version and a commit (or `unknown` outside git).
    let o = warren(&["ctl", "version"]).await;
    ok(&o);
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!("version: {}\ncommit: ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let v = json_of(&warren(&["ctl", "-w", "json", "version"]).await);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(!v["commit"].as_str().unwrap().is_empty());

    // Endpoints: no port; nobody there (the hint names `warren dev` and the address).
    let o = warren(&["ctl", "--endpoint", "localhost", "stat", "/"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: INVALID_ARGUMENT: endpoint \"localhost\" has no port"),
        "{}",
        stderr(&o)
    );
    let o = warren(&["ctl", "-w", "json", "--endpoint", "localhost", "stat", "/"]).await;
    let e: serde_json::Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(e["error"]["code"], "INVALID_ARGUMENT");
    let nobody = format!("127.0.0.1:{}", crate::free_port());
    // Nothing was sent: the error table's UNREACHABLE (safe to retry), in text and JSON,
    // with the hint.
    let o = warren(&["ctl", "--endpoint", &nobody, "stat", "/"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(&format!("error: UNREACHABLE: cannot reach {nobody}: "))
            && stderr(&o).contains("is `warren dev` (or the cell or proxy) running")
            && stderr(&o).contains(&nobody),
        "{}",
        stderr(&o)
    );
    let o = warren(&["ctl", "-w", "json", "--endpoint", &nobody, "put", "/x", "v"]).await;
    assert_eq!(o.status.code(), Some(2));
    let e: serde_json::Value = serde_json::from_str(stderr(&o).trim())
        .unwrap_or_else(|err| panic!("{err}: {}", stderr(&o)));
    assert_eq!(e["error"]["code"], "UNREACHABLE", "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("cannot reach {nobody}: "))
            && message.contains("is `warren dev` (or the cell or proxy) running"),
        "{message}"
    );
}

/// `endpoint status` and `endpoint health` over every member of a `warren dev`
/// deployment; `session list` and `lock list` while one client holds a lock and another
/// waits; an endpoint that is an admin port is named as one.
#[tokio::test]
async fn endpoints_sessions_and_locks_of_a_dev_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let base = crate::dev::free_base_port(2, 1);
    let base_s = base.to_string();
    let _dev = WarrenProcess::spawn(
        bin(),
        &[
            "dev",
            "--data",
            data.to_str().unwrap(),
            "--cells",
            "2",
            "--proxies",
            "1",
            "--base-port",
            &base_s,
        ],
    )
    .await;
    let meta = format!("127.0.0.1:{base}");
    let proxy = format!("127.0.0.1:{}", base + 101);
    let ctl = |args: &[&str]| {
        let mut v: Vec<String> = vec!["ctl".into()];
        v.extend(args.iter().map(|s| s.to_string()));
        async move {
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            warren(&refs).await
        }
    };
    let ok = |o: &std::process::Output| assert!(o.status.success(), "{}", stderr(o));

    // endpoint status: meta, c1, c2, the proxy; a proxy has no epoch, nodes or store: `-`.
    let o = ctl(&["--proxies", &proxy, "endpoint", "status", "--meta", &meta]).await;
    ok(&o);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        lines[0].starts_with(&format!("{meta}, meta, meta master, ")),
        "{text}"
    );
    assert!(
        lines[1].contains(", c1, data master, ") && lines[2].contains(", c2, data master, "),
        "{text}"
    );
    assert!(
        lines[3].starts_with(&format!("{proxy}, "))
            && lines[3].ends_with(&format!(", proxy, -, 1, 0, -, -, {version}")),
        "{text}"
    );
    let v = json_of(
        &ctl(&[
            "--proxies",
            &proxy,
            "-w",
            "json",
            "endpoint",
            "status",
            "--meta",
            &meta,
        ])
        .await,
    );
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{v}");
    for cell in &rows[..3] {
        assert!(cell["epoch"].as_u64().unwrap() >= 1, "{cell}");
        assert_eq!(cell["map_epoch"], 1, "{cell}");
        assert_eq!(cell["store_health"], "ok", "{cell}");
        assert!(
            cell["sessions"].is_u64() && cell["nodes"].as_u64().unwrap() >= 1,
            "{cell}"
        );
        assert_eq!(cell["version"], version);
    }
    assert_eq!(rows[3]["role"], "proxy");
    assert_eq!(
        rows[3]["epoch"],
        serde_json::Value::Null,
        "a proxy has no epoch, not 0"
    );
    assert_eq!(rows[3]["map_epoch"], 1);
    let o = ctl(&[
        "--proxies",
        &proxy,
        "-w",
        "table",
        "endpoint",
        "status",
        "--meta",
        &meta,
    ])
    .await;
    assert!(
        stdout(&o).contains("| ENDPOINT ") && stdout(&o).contains("| MAP EPOCH |"),
        "{}",
        stdout(&o)
    );

    // `status` at a proxy: no cell, epoch or store of its own (not "" and 0).
    let o = ctl(&["--endpoint", &proxy, "status"]).await;
    ok(&o);
    assert!(
        stdout(&o).contains("\ncell: -\n")
            && stdout(&o).contains("\nepoch: -\n")
            && stdout(&o).contains("role: proxy"),
        "{}",
        stdout(&o)
    );
    let v = json_of(&ctl(&["--endpoint", &proxy, "-w", "json", "status"]).await);
    assert_eq!(
        (&v["epoch"], &v["map_epoch"]),
        (&serde_json::Value::Null, &serde_json::json!(1))
    );
    // Admin pages not where --admin-offset says: the gRPC columns stay, the rest is `-`,
    // and the data cells it could not find are reported.
    let o = ctl(&["endpoint", "status", "--meta", &meta, "--admin-offset", "5"]).await;
    ok(&o);
    assert!(
        stderr(&o).contains("warning: the data cells are not listed"),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).starts_with(&format!(
            "{meta}, meta, meta master, 1, 1, -, -, ok, -, admin http://"
        )),
        "{}",
        stdout(&o)
    );

    // endpoint health: every member healthy; a proxy that is not there makes it exit 1.
    let o = ctl(&["--proxies", &proxy, "endpoint", "health", "--meta", &meta]).await;
    ok(&o);
    assert_eq!(
        stdout(&o).matches(" is healthy: took = ").count(),
        4,
        "{}",
        stdout(&o)
    );
    let gone = format!("127.0.0.1:{}", crate::free_port());
    let both = format!("{proxy},{gone}");
    let o = ctl(&[
        "--proxies",
        &both,
        "-w",
        "json",
        "endpoint",
        "health",
        "--meta",
        &meta,
    ])
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_of(&o);
    let health: Vec<bool> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["health"].as_bool().unwrap())
        .collect();
    assert_eq!(health, [true, true, true, true, false], "{v}");
    assert!(!v[4]["error"].as_str().unwrap().is_empty(), "{v}");

    // A lock held by alice through the proxy, and bob waiting for it.
    let put = crate::warren_env(&["ctl", "--endpoint", &proxy, "put", "/l", ""], &[]).await;
    ok(&put);
    let spawn_lock = |who: &str| {
        tokio::process::Command::new(bin())
            .args(["ctl", "--endpoint", &proxy, "lock", "/l", "--hold", "60"])
            .env("WARREN_PRINCIPAL", who)
            .env_remove("WARREN_ENDPOINT")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut alice = spawn_lock("alice");
    let mut lines = BufReader::new(alice.stdout.take().unwrap()).lines();
    let seq = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(seq.starts_with("/ls/local/l:x:"), "{seq}");
    let _bob = spawn_lock("bob");

    // lock list: alice holds, bob waits (once his Acquire has reached the cell).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let v = loop {
        let o = ctl(&["-w", "json", "lock", "list", "/l", "--meta", &meta]).await;
        ok(&o);
        let v = json_of(&o);
        if v["waiters"].as_array().is_some_and(|w| !w.is_empty()) {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob never waited: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(v["path"], "/ls/local/l");
    assert_eq!(v["lock_generation"], 1, "{v}");
    assert_eq!(v["holders"][0]["principal"], "alice", "{v}");
    assert_eq!(v["holders"][0]["mode"], "exclusive", "{v}");
    assert_eq!(v["waiters"][0]["principal"], "bob", "{v}");
    let cell = v["cell"].as_str().unwrap().to_string();
    let o = ctl(&["lock", "list", "/ls/local/l", "--meta", &meta]).await;
    ok(&o);
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!(
            "path: /ls/local/l\ncell: {cell}\nlock_generation: 1\nholder: alice "
        )),
        "{text}"
    );
    assert!(text.contains("\nwaiter: bob "), "{text}");
    let o = ctl(&["-w", "table", "lock", "list", "/l", "--meta", &meta]).await;
    assert!(
        stdout(&o).contains("| holder ") && stdout(&o).contains("| waiter 1 "),
        "{}",
        stdout(&o)
    );
    let o = ctl(&["lock", "list", "/nobody-locks-this", "--meta", &meta]).await;
    assert_eq!(
        stdout(&o),
        "/ls/local/nobody-locks-this: not held, no waiters\n"
    );

    // session list: alice's session is a proxy's client session holding the lock.
    let v = json_of(&ctl(&["-w", "json", "session", "list", "--meta", &meta]).await);
    let sessions = v.as_array().unwrap();
    let alice_s = sessions
        .iter()
        .find(|s| s["principal"] == "alice")
        .unwrap_or_else(|| panic!("no session of alice in {v}"));
    assert_eq!(alice_s["cell"], cell.as_str());
    assert_eq!(alice_s["kind"], "sub", "{alice_s}");
    assert!(!alice_s["proxy"].as_str().unwrap().is_empty(), "{alice_s}");
    assert!(
        alice_s["lease_remaining_ms"].as_u64().unwrap() > 0,
        "{alice_s}"
    );
    assert_eq!(
        alice_s["locks"],
        serde_json::json!([{"path": "/ls/local/l", "mode": "exclusive"}])
    );
    assert!(
        alice_s["handles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "/ls/local/l"),
        "{alice_s}"
    );
    assert!(
        sessions.iter().any(|s| s["kind"] == "proxy"),
        "the proxy's own sessions: {v}"
    );
    let o = ctl(&["session", "list", "--meta", &meta]).await;
    ok(&o);
    let line = stdout(&o)
        .lines()
        .find(|l| l.contains(" alice "))
        .unwrap_or_else(|| panic!("{}", stdout(&o)))
        .to_string();
    assert!(
        line.starts_with(&format!("{cell} "))
            && line.ends_with(" /ls/local/l /ls/local/l(exclusive)"),
        "{line}"
    );
    let o = ctl(&["-w", "table", "session", "list", "--meta", &meta]).await;
    assert!(
        stdout(&o).contains("| PRINCIPAL ") && stdout(&o).contains("| alice "),
        "{}",
        stdout(&o)
    );
    let _ = alice.start_kill();

    // Only a cell's master keeps a session table: a proxy's admin page says so.
    let (code, body) =
        crate::http_get(&format!("127.0.0.1:{}", base + 181), "/debug/sessions").await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("ask a cell's master"), "{body}");
    let (code, body) = crate::http_get(&format!("127.0.0.1:{}", base + 181), "/version").await;
    assert_eq!((code, body.trim()), (200, env!("CARGO_PKG_VERSION")));

    // An admin port given as the endpoint is named as one, not "broken pipe".
    let admin = format!("127.0.0.1:{}", base + 80);
    let o = ctl(&["--endpoint", &admin, "stat", "/l"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is an admin (HTTP) port"),
        "{}",
        stderr(&o)
    );
    // Members that are not there: errors name the fix.
    let o = ctl(&["session", "list", "--meta", &gone]).await;
    assert!(
        stderr(&o).starts_with("error: UNREACHABLE: ") && stderr(&o).contains("--admin-offset"),
        "{}",
        stderr(&o)
    );
}

/// Shell completions and the man page, generated from the command line's definition.
#[tokio::test]
async fn completions_and_man_pages() {
    let o = warren(&["completion", "bash"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let script = stdout(&o);
    assert!(
        script.contains("ctl") && script.contains("endpoint") && script.contains("--write-out"),
        "{script}"
    );
    for shell in ["zsh", "fish"] {
        let o = warren(&["completion", shell]).await;
        assert!(
            o.status.success() && stdout(&o).contains("endpoint"),
            "{shell}: {}",
            stderr(&o)
        );
    }
    let o = warren(&["completion", "tcsh"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("tcsh"), "{}", stderr(&o));
    let o = warren(&["man"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(".TH warren 1"), "{}", stdout(&o));
    let dir = tempfile::tempdir().unwrap();
    let o = warren(&["man", "--out", dir.path().to_str().unwrap()]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(dir.path().join("warren-ctl.1")).expect("warren-ctl.1");
    assert!(
        page.contains(".TH warren-ctl 1") && page.contains("endpoint"),
        "{page}"
    );
}

/// `RUST_LOG` works in place of `WARREN_LOG`, which wins when both are set.
#[tokio::test]
async fn rust_log_and_warren_log() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: Vec<(&'static str, &'static str)>| {
        let d = dir
            .path()
            .join(format!("c{}", env.len()))
            .to_str()
            .unwrap()
            .to_string();
        async move {
            let mut cmd = tokio::process::Command::new(bin());
            cmd.args([
                "cell",
                "--name",
                "c0",
                "--listen",
                "127.0.0.1:0",
                "--data",
                &d,
            ])
            .env_remove("WARREN_LOG")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().unwrap();
            // The first second of logs is enough: a cell logs at info as it starts.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let _ = child.start_kill();
            let o = child.wait_with_output().await.unwrap();
            stderr(&o)
        }
    };
    let info = run(vec![]).await;
    assert!(info.contains("INFO"), "{info}");
    let quiet = run(vec![("RUST_LOG", "error")]).await;
    assert!(!quiet.contains("INFO"), "RUST_LOG=error: {quiet}");
    let both = run(vec![("RUST_LOG", "error"), ("WARREN_LOG", "info")]).await;
    assert!(both.contains("INFO"), "WARREN_LOG wins: {both}");
}

/// `rm -r` on a terminal asks first: `n` deletes nothing (CANCELLED), `y` deletes the
/// subtree. The terminal is a real pseudo-terminal from util-linux's `script`.
#[tokio::test]
async fn rm_r_asks_on_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`script` (util-linux, Debian's bsdutils) is needed for this test in CI"
        );
        eprintln!("SKIPPED rm_r_asks_on_a_terminal: no `script` (util-linux) on this machine");
        return;
    }
    let (cell, _dir) = cell().await;
    let ep = cell.addr();
    for args in [["mkdir", "/q"], ["mkdir", "/q/d"]] {
        let o = warren(&["ctl", "--endpoint", &ep, args[0], args[1]]).await;
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = warren(&["ctl", "--endpoint", &ep, "put", "/q/d/f", "x"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    // `script -qec CMD /dev/null` runs CMD on a new pseudo-terminal, feeding it our stdin.
    let on_a_terminal = |answer: &'static str| {
        let cmd = format!("{} ctl --endpoint {ep} rm -r /q", bin().display());
        async move {
            let mut child = tokio::process::Command::new("script")
                .args(["-qec", &cmd, "/dev/null"])
                .env_remove("WARREN_ENDPOINT")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("run script");
            {
                use tokio::io::AsyncWriteExt;
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(answer.as_bytes()).await.unwrap();
            }
            tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
                .await
                .expect("rm -r answered")
                .unwrap()
        }
    };
    let o = on_a_terminal("n\n").await;
    let screen = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{screen}");
    assert!(
        screen.contains("delete /ls/local/q and the 2 nodes under it? [y/N]"),
        "{screen}"
    );
    assert!(
        screen.contains("error: CANCELLED: nothing deleted"),
        "{screen}"
    );
    let o = warren(&["ctl", "--endpoint", &ep, "ls", "-r", "/q"]).await;
    assert_eq!(stdout(&o), "d/\nd/f\n", "nothing deleted");
    let o = on_a_terminal("y\n").await;
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = warren(&["ctl", "--endpoint", &ep, "stat", "/q"]).await;
    assert!(
        stderr(&o).starts_with("error: NOT_FOUND: "),
        "{}",
        stderr(&o)
    );
}
