//! Tests of `warren ctl`'s command line: what parses, the defaults, and the duration flags.

use super::*;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "warren")]
struct Cli {
    #[command(subcommand)]
    cmd: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    Ctl(CtlArgs),
}

pub(crate) fn parse(args: &[&str]) -> Result<CtlArgs, clap::Error> {
    let mut argv = vec!["warren", "ctl"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).map(|c| match c.cmd {
        Top::Ctl(a) => a,
    })
}

#[test]
fn parses_the_surface() {
    let a = parse(&["--endpoint", "a:1,b:2", "--json", "stat", "/x"]).expect("parses");
    assert_eq!(a.endpoint, ["a:1", "b:2"]);
    assert!(a.json);
    assert!(matches!(a.command, CtlCommand::Stat { path } if path == "/x"));

    let a = parse(&["put", "/x", "-", "--if-generation", "4"]).expect("parses");
    assert!(matches!(
        a.command,
        CtlCommand::Put { value, if_generation: Some(4), ephemeral: false, .. } if value == "-"
    ));
    let a = parse(&["put", "/x", "-5"]).expect("hyphen values");
    assert!(matches!(a.command, CtlCommand::Put { value, .. } if value == "-5"));
    assert!(parse(&["put", "/x", "v", "--if-generation", "1", "--ephemeral"]).is_err());

    let a = parse(&["lock", "/x", "--shared", "--try", "--hold", "1.5"]).expect("parses");
    assert!(matches!(
        a.command,
        CtlCommand::Lock { shared: true, try_only: true, hold: Some(h), .. }
            if h == Duration::from_millis(1500)
    ));
    let a = parse(&["watch", "/x", "--count", "3", "--json"]).expect("global --json");
    assert!(a.json);
    assert!(matches!(
        a.command,
        CtlCommand::Watch { count: Some(3), .. }
    ));
    assert!(parse(&["check-sequencer", "/ls/l/a:x:1:2"]).is_ok());
    assert!(parse(&["status"]).is_ok());
    assert!(parse(&["mkdir", "/d", "--ephemeral"]).is_ok());
    assert!(parse(&["rm", "/d"]).is_ok());
    assert!(parse(&["ls", "/"]).is_ok());
    assert!(parse(&["cat", "/a"]).is_ok());
    assert!(parse(&["frobnicate"]).is_err());
}

#[test]
fn the_default_endpoint_is_the_first_dev_proxy() {
    assert_eq!(DEFAULT_ENDPOINT, "127.0.0.1:7201");
    assert_eq!(
        DEFAULT_ENDPOINT,
        format!(
            "127.0.0.1:{}",
            warren_config::Layout::new(1, 1, warren_config::layout::DEFAULT_BASE_PORT)
                .proxy_ports(1)
                .grpc
        ),
        "ctl's default is where `warren dev` puts its first proxy"
    );
    if std::env::var_os("WARREN_ENDPOINT").is_none() {
        let a = parse(&["status"]).expect("parses");
        assert_eq!(a.endpoint, [DEFAULT_ENDPOINT]);
    }
}

#[test]
fn parses_deployment_and_map_commands() {
    let a = parse(&[
        "deployment",
        "init",
        "--meta",
        "m:1",
        "--cell",
        "a=h:1,h:2",
        "--cell",
        "b=h:3",
    ])
    .expect("parses");
    match a.command {
        CtlCommand::Deployment {
            command: DeploymentCommand::Init { meta, cells, slots },
        } => {
            assert_eq!(meta, ["m:1"]);
            assert_eq!(cells, ["a=h:1,h:2", "b=h:3"]);
            assert_eq!(slots, warren_router::DEFAULT_SLOTS);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        parse(&["deployment", "init", "--cell", "a=h:1"]).is_err(),
        "--meta required"
    );
    assert!(
        parse(&["deployment", "init", "--meta", "m:1"]).is_err(),
        "--cell required"
    );
    assert!(parse(&["map", "show", "--json"]).expect("parses").json);
}

#[test]
fn grace_parses_durations() {
    // ctl's flags share warren_config's parser (humantime, plus plain seconds).
    for (text, want) in [
        ("45s", Duration::from_secs(45)),
        ("500ms", Duration::from_millis(500)),
        ("2m", Duration::from_secs(120)),
        ("1h", Duration::from_secs(3600)),
        ("1.5", Duration::from_millis(1500)),
        (" 3 s ", Duration::from_secs(3)),
        // humantime's units include days (ctl's old parser of its own stopped at hours).
        ("5d", Duration::from_secs(5 * 86_400)),
    ] {
        assert_eq!(parse_duration_or_seconds(text), Ok(want), "{text:?}");
    }
    for bad in ["", "s", "-1s", "5x", "abc", "NaNs", "1e400s"] {
        assert!(parse_duration_or_seconds(bad).is_err(), "{bad}");
    }
    let a = parse(&["--grace", "6s", "lock", "/x"]).expect("parses");
    assert_eq!(a.grace, Some(Duration::from_secs(6)));
    let a = parse(&["lock", "/x", "--grace", "250ms"]).expect("global");
    assert_eq!(a.grace, Some(Duration::from_millis(250)));
    assert!(parse(&["--grace", "soon", "status"]).is_err());
}

#[test]
fn hold_must_be_a_duration() {
    // One parser for every duration flag: `--hold` takes what `--grace` takes.
    for (text, want) in [
        ("1.5", Duration::from_millis(1500)),
        ("5", Duration::from_secs(5)),
        ("5s", Duration::from_secs(5)),
        ("250ms", Duration::from_millis(250)),
    ] {
        let a = parse(&["lock", "/x", "--hold", text]).expect("parses");
        assert!(
            matches!(a.command, CtlCommand::Lock { hold: Some(h), .. } if h == want),
            "{text}"
        );
    }
    for bad in ["-1", "NaN", "inf", "soon", "5 parsecs"] {
        let e = parse(&["lock", "/x", &format!("--hold={bad}")]).expect_err("bad hold");
        assert!(e.to_string().contains("--hold"), "{bad}: {e}");
    }
}

/// The audit of every duration flag: each argument anywhere under `warren ctl` whose value
/// is a DURATION takes `5s` and a plain `5` alike, and refuses `soon`.
#[test]
fn every_duration_flag_takes_seconds_with_or_without_the_unit() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &mut Vec<String>, found: &mut Vec<(Vec<String>, String)>) {
        for arg in cmd.get_arguments() {
            let is_duration = arg
                .get_value_names()
                .is_some_and(|names| names.iter().any(|n| n.as_str() == "DURATION"));
            if let (true, Some(long)) = (is_duration, arg.get_long()) {
                found.push((path.clone(), format!("--{long}")));
            }
        }
        for sub in cmd.get_subcommands() {
            path.push(sub.get_name().to_string());
            walk(sub, path, found);
            path.pop();
        }
    }
    let cli = Cli::command();
    let ctl = cli.find_subcommand("ctl").expect("ctl");
    let mut found = Vec::new();
    walk(ctl, &mut Vec::new(), &mut found);
    let flags: Vec<&str> = found.iter().map(|(_, f)| f.as_str()).collect();
    for want in ["--grace", "--hold", "--freeze-timeout"] {
        assert!(flags.contains(&want), "{want} not found among {flags:?}");
    }
    for (path, flag) in &found {
        // The positional arguments each command needs, so the flag is what is tested.
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        match args.as_slice() {
            ["lock"] => args.push("/x"),
            ["reshard", "apply"] => args.push("plan.json"),
            [] => args.extend(["stat", "/x"]),
            _ => {}
        }
        for value in ["5", "5s", "1.5", "500ms"] {
            let mut argv = args.clone();
            argv.extend([flag.as_str(), value]);
            let a = parse(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            drop(a);
        }
        let mut argv = args.clone();
        argv.extend([flag.as_str(), "soon"]);
        assert!(parse(&argv).is_err(), "{argv:?} was accepted");
    }
}

#[test]
fn parses_the_operator_commands() {
    let a = parse(&[
        "lock",
        "list",
        "/x",
        "--meta",
        "h:1,h:2",
        "--admin-offset",
        "7",
    ])
    .unwrap();
    assert!(matches!(
        &a.command,
        CtlCommand::Lock { list: Some(LockListCommand::List { path, members }), path: None, .. }
            if path == "/x" && members.meta.meta == ["h:1", "h:2"] && members.admin_offset == 7
    ));
    let a = parse(&["lock", "/list"]).unwrap();
    assert!(
        matches!(&a.command, CtlCommand::Lock { list: None, path: Some(p), .. } if p == "/list")
    );
    assert!(parse(&["lock"]).is_err(), "lock needs a PATH");
    let a = parse(&["-w", "table", "endpoint", "status"]).unwrap();
    assert_eq!(a.write_out, Format::Table);
    assert!(matches!(
        &a.command,
        CtlCommand::Endpoint { command: EndpointCommand::Status { members } }
            if members.meta.meta == [DEFAULT_META] && members.admin_offset == 80
    ));
    assert!(parse(&["-w", "yaml", "stat", "/x"]).is_err());
    let a = parse(&["rm", "-r", "-y", "/x"]).unwrap();
    assert!(matches!(
        a.command,
        CtlCommand::Rm {
            recursive: true,
            yes: true,
            ..
        }
    ));
    let a = parse(&["get", "--prefix", "/d"]).unwrap();
    assert!(matches!(a.command, CtlCommand::Get { prefix: true, .. }));
    let a = parse(&["ls", "-r", "/d"]).unwrap();
    assert!(matches!(
        a.command,
        CtlCommand::Ls {
            recursive: true,
            ..
        }
    ));
    assert!(matches!(
        parse(&["version"]).unwrap().command,
        CtlCommand::Version
    ));
}
