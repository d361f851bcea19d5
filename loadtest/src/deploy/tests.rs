//! Unit tests of the process deployment: the `--deploy` grammar, layout and start-up errors.

use super::*;

fn spec(s: &str) -> DeploySpec {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn spec_err(s: &str) -> String {
    match s.parse::<DeploySpec>() {
        Ok(d) => panic!("{s:?} should be refused, not parsed as {d:?}"),
        Err(e) => e,
    }
}

#[test]
fn specs_parse_with_defaults() {
    let d = DeploySpec {
        cells: 3,
        proxies: 2,
        lease: None,
        tls: false,
    };
    assert_eq!(spec("dev"), d);
    assert_eq!(spec(" dev "), d);
    assert_eq!(DeploySpec::default(), d);
    assert_eq!(
        spec("dev:cells=2"),
        DeploySpec {
            cells: 2,
            ..d.clone()
        }
    );
    assert_eq!(
        spec("dev:cells=1,proxies=3"),
        DeploySpec {
            cells: 1,
            proxies: 3,
            lease: None,
            tls: false
        }
    );
    assert_eq!(
        spec("dev: proxies = 1 , cells=20"),
        DeploySpec {
            cells: 20,
            proxies: 1,
            lease: None,
            tls: false
        }
    );
    assert_eq!(spec("dev:lease=2s").lease, Some(Duration::from_secs(2)));
    assert!(spec("dev:tls=on").tls && spec("dev:tls=true").tls);
    assert!(!spec("dev:tls=off").tls && !spec("dev").tls);
    assert_eq!(spec("dev:lease=57s").lease, Some(Duration::from_secs(57)));
    assert_eq!(
        spec("dev:cells=2,lease=1500ms").lease,
        Some(Duration::from_millis(1500))
    );
}

#[test]
fn specs_print_as_they_parse() {
    for s in [
        "dev:cells=3,proxies=2",
        "dev:cells=1,proxies=4,lease=2s",
        "dev:cells=1,proxies=1,tls=on",
    ] {
        assert_eq!(spec(s).to_string(), s);
        assert_eq!(spec(&spec(s).to_string()), spec(s));
    }
    assert_eq!(spec("dev").to_string(), "dev:cells=3,proxies=2");
}

#[test]
fn bad_specs_are_refused_naming_the_bad_part() {
    let e = spec_err("prod:cells=2");
    assert!(e.contains("unknown deployment \"prod\""), "{e}");
    assert!(e.contains("dev[:cells=N,proxies=M"), "{e}");
    let e = spec_err("");
    assert!(e.contains("unknown deployment \"\""), "{e}");
    let e = spec_err("dev:cells=0");
    assert!(e.contains("cells=0") && e.contains("from 1 to 20"), "{e}");
    let e = spec_err("dev:proxies=0");
    assert!(e.contains("proxies=0") && e.contains("from 1 to 20"), "{e}");
    let e = spec_err("dev:cells=21");
    assert!(e.contains("cells=21"), "{e}");
    let e = spec_err("dev:cells=three");
    assert!(e.contains("cells=three"), "{e}");
    let e = spec_err("dev:cells=-1");
    assert!(e.contains("cells=-1"), "{e}");
    let e = spec_err("dev:replicas=3");
    assert!(e.contains("unknown setting \"replicas\""), "{e}");
    assert!(e.contains("cells, proxies, lease and tls"), "{e}");
    let e = spec_err("dev:tls=yes");
    assert!(
        e.contains("tls=yes") && e.contains("tls=on or tls=off"),
        "{e}"
    );
    let e = spec_err("dev:cells");
    assert!(
        e.contains("\"cells\"") && e.contains("not KEY=VALUE"),
        "{e}"
    );
    let e = spec_err("dev:");
    assert!(e.contains("empty setting"), "{e}");
    let e = spec_err("dev:cells=2,");
    assert!(e.contains("empty setting"), "{e}");
    let e = spec_err("dev:cells=2,cells=3");
    assert!(e.contains("sets cells twice"), "{e}");
    let e = spec_err("dev:lease=12");
    assert!(
        e.contains("lease=12") && e.contains("not a duration"),
        "{e}"
    );
    let e = spec_err("dev:lease=1s");
    assert!(e.contains("lease=1s") && e.contains("too short"), "{e}");
    let e = spec_err("dev:lease=58s");
    assert!(e.contains("lease=58s") && e.contains("at most 57s"), "{e}");
}

#[test]
fn lease_rules_and_margins() {
    assert!(check_lease(Duration::from_millis(1001)).is_ok());
    assert!(check_lease(Duration::from_secs(57)).is_ok());
    assert!(check_lease(Duration::from_secs(1)).is_err());
    assert!(check_lease(Duration::from_millis(57_001)).is_err());
    assert_eq!(
        proxy_margin(Duration::from_secs(2)),
        Duration::from_millis(500)
    );
    assert_eq!(
        proxy_margin(Duration::from_secs(12)),
        Duration::from_secs(1)
    );
    // The proxies' rule: client lease + margins < the proxy lease the cells grant.
    for ms in [1001, 1500, 2000, 5000, 12_000, 57_000] {
        let l = Duration::from_millis(ms);
        assert!(l + 2 * proxy_margin(l) < l + PROXY_LEASE_EXTRA, "{l:?}");
        assert!(l > proxy_margin(l), "{l:?}");
    }
}

#[test]
fn members_parse() {
    let m = |s: &str| s.parse::<Member>().unwrap_or_else(|e| panic!("{s:?}: {e}"));
    assert_eq!(m("proxy"), Member::Proxy(1));
    assert_eq!(m("proxy:2"), Member::Proxy(2));
    assert_eq!(m(" proxy:12 "), Member::Proxy(12));
    assert_eq!(m("master:c1"), Member::Master("c1".into()));
    assert_eq!(m("master:meta"), Member::Master("meta".into()));
    for s in ["proxy:3", "master:c10", "master:meta"] {
        assert_eq!(m(s).to_string(), s);
    }
    assert_eq!(m("proxy").to_string(), "proxy:1");
}

#[test]
fn bad_members_are_refused_naming_the_bad_part() {
    let e = |s: &str| match s.parse::<Member>() {
        Ok(m) => panic!("{s:?} should be refused, not parsed as {m:?}"),
        Err(e) => e,
    };
    let t = e("proxy:0");
    assert!(t.contains("numbered from 1"), "{t}");
    let t = e("proxy:two");
    assert!(t.contains("\"two\" is not a proxy number"), "{t}");
    let t = e("master");
    assert!(
        t.contains("names no cell") && t.contains("master:c1"),
        "{t}"
    );
    let t = e("master:");
    assert!(t.contains("names no cell"), "{t}");
    let t = e("master:C1");
    assert!(t.contains("\"C1\" is not a cell name"), "{t}");
    let t = e("cell:c1");
    assert!(t.contains("unknown member \"cell:c1\""), "{t}");
    assert!(t.contains("master:meta"), "{t}");
    let t = e("");
    assert!(t.contains("unknown member"), "{t}");
}

/// The load tester drives a deployment from spawned tasks: its futures must be `Send`
/// (checked at compile time; never called).
fn futures_are_send(d: &mut Deployment, owned: Deployment, m: &Member, bin: &Path) {
    fn send<T: Send>(_: T) {}
    send(Deployment::start(&DeploySpec::default(), bin));
    send(Deployment::start_with(bin, &DeploySpec::default(), bin));
    send(d.kill(m));
    send(d.restart(m));
    send(owned.stop());
}

#[test]
fn deployments_can_be_shared_between_tasks() {
    fn shared<T: Send + Sync>() {}
    shared::<Deployment>();
    let _ = futures_are_send;
}

#[tokio::test]
async fn start_refuses_bad_specs_and_used_directories_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new("/nonexistent/warren");
    let bad = DeploySpec {
        cells: 0,
        ..DeploySpec::default()
    };
    let e = Deployment::start_with(bin, &bad, dir.path())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("from 1 to 20"), "{e}");
    let bad = DeploySpec {
        lease: Some(Duration::from_millis(500)),
        ..DeploySpec::default()
    };
    let e = Deployment::start_with(bin, &bad, dir.path())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("too short"), "{e}");
    std::fs::create_dir(dir.path().join("meta")).unwrap();
    let e = Deployment::start_with(bin, &DeploySpec::default(), dir.path())
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("already holds a deployment"), "{e}");
}

#[tokio::test]
async fn a_missing_binary_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new("/nonexistent/warren");
    let e = Deployment::start_with(bin, &DeploySpec::default(), dir.path())
        .await
        .err()
        .expect("refused");
    let text = format!("{e:#}");
    assert!(
        text.contains("cannot start the meta cell") && text.contains("/nonexistent/warren"),
        "{text}"
    );
}
