//! Tests of [`CellConfig`](super::CellConfig): defaults, every layer and field, and the errors that name the field, its source and the fix.

use super::*;

fn base() -> Sources {
    Sources::new()
        .with_env("WARREN_NAME", "cell-1")
        .with_env("WARREN_LISTEN", "127.0.0.1:7000")
        .with_env("WARREN_DATA", "/tmp/warren")
}

fn err(sources: &Sources) -> ConfigError {
    CellConfig::load(sources).expect_err("configuration should be refused")
}

#[test]
fn defaults() {
    let c = CellConfig::load(&base()).unwrap();
    assert_eq!(
        c,
        CellConfig {
            name: "cell-1".into(),
            listen: "127.0.0.1:7000".parse().unwrap(),
            admin: None,
            data: "/tmp/warren".into(),
            deployment: "local".into(),
            lease: Duration::from_secs(12),
            keepalive_reply_before_end: Duration::from_secs(1),
            max_lease: Duration::from_secs(60),
            proxy_lease: Duration::from_secs(20),
            claim_window: Duration::from_secs(60),
            max_lock_delay: Duration::from_secs(60),
            max_file_size: 262_144,
            ephemeral_cleanup: Duration::from_secs(60),
            store: StoreKind::Embedded,
            etcd: vec![],
            replica: String::new(),
            etcd_lease: Duration::from_secs(2),
            etcd_max_txn_ops: 128,
            etcd_cacert: None,
            etcd_cert: None,
            etcd_key: None,
            meta: Vec::new(),
            advertise: None,
            proxy_principals: Vec::new(),
            operator_principals: Vec::new(),
            backup: None,

            tls: crate::TlsSettings::default(),
        }
    );
    assert_eq!(c.validate(), Ok(()));
}

/// A cell on etcd, without the etcd endpoints and the replica id.
fn etcd_base() -> Sources {
    Sources::new()
        .with_flag("name", "c1")
        .with_flag("listen", "127.0.0.1:7000")
        .with_flag("store", "etcd")
}

#[test]
fn etcd_store_settings() {
    let s = etcd_base()
        .with_env("WARREN_ETCD", "127.0.0.1:2379, http://127.0.0.1:2380")
        .with_flag("replica", "r2");
    let c = CellConfig::load(&s).unwrap();
    assert_eq!(c.store, StoreKind::Etcd);
    assert_eq!(
        c.etcd,
        vec!["http://127.0.0.1:2379", "http://127.0.0.1:2380"]
    );
    assert_eq!(c.replica, "r2");
    // etcd needs endpoints and a replica id; data is not needed.
    let missing_etcd = etcd_base().with_flag("replica", "r1");
    assert_eq!(
        CellConfig::load(&missing_etcd).unwrap_err().field(),
        Some("etcd")
    );
    let missing_replica = etcd_base().with_flag("etcd", "127.0.0.1:2379");
    assert_eq!(
        CellConfig::load(&missing_replica).unwrap_err().field(),
        Some("replica")
    );
    let bad = s.clone().with_flag("etcd_lease", "1500ms");
    assert_eq!(
        CellConfig::load(&bad).unwrap_err().field(),
        Some("etcd_lease")
    );
    let bad = s.clone().with_flag("store", "zookeeper");
    assert_eq!(CellConfig::load(&bad).unwrap_err().field(), Some("store"));
    let bad = s.with_flag("etcd", "127.0.0.1");
    assert_eq!(CellConfig::load(&bad).unwrap_err().field(), Some("etcd"));
}

#[test]
fn every_field_from_the_file() {
    let toml = r#"
        name = "meta"
        listen = "0.0.0.0:7100"
        admin = "127.0.0.1:9100"
        data = "/var/lib/warren/meta"
        deployment = "prod.eu-1"
        lease = "20s"
        keepalive_reply_before_end = "500ms"
        max_lease = "45s"
        max_lock_delay = "30s"
        max_file_size = "64KiB"
        ephemeral_cleanup = "2m"

        [tls]
        cacert = "/etc/warren/ca.pem"
        cert = "/etc/warren/meta.pem"
        key = "/etc/warren/meta.key"
    "#;
    let c = CellConfig::load(&Sources::new().with_file("/etc/warren/cell.toml", toml)).unwrap();
    assert_eq!(
        c.tls.files(),
        Some((
            "/etc/warren/ca.pem".into(),
            "/etc/warren/meta.pem".into(),
            "/etc/warren/meta.key".into()
        ))
    );
    assert_eq!(c.name, "meta");
    assert_eq!(c.listen, "0.0.0.0:7100".parse().unwrap());
    assert_eq!(c.admin, Some("127.0.0.1:9100".parse().unwrap()));
    assert_eq!(c.data, PathBuf::from("/var/lib/warren/meta"));
    assert_eq!(c.deployment, "prod.eu-1");
    assert_eq!(c.lease, Duration::from_secs(20));
    assert_eq!(c.keepalive_reply_before_end, Duration::from_millis(500));
    assert_eq!(c.max_lease, Duration::from_secs(45));
    assert_eq!(c.max_lock_delay, Duration::from_secs(30));
    assert_eq!(c.max_file_size, 65_536);
    assert_eq!(c.ephemeral_cleanup, Duration::from_secs(120));
}

#[test]
fn precedence_defaults_file_env_flags() {
    let file = "name = \"cell-1\"\nlisten = \"127.0.0.1:7000\"\ndata = \"/d\"\nlease = \"20s\"\nmax_lock_delay = \"10s\"\nmax_file_size = 1000\n";
    let sources = Sources::new()
        .with_file("c.toml", file)
        .with_env("WARREN_LEASE", "30s")
        .with_env("WARREN_MAX_LOCK_DELAY", "20s")
        .with_flag("lease", "40s")
        .with_flag("--lease", "50s");
    let c = CellConfig::load(&sources).unwrap();
    assert_eq!(c.lease, Duration::from_secs(50), "last flag wins");
    assert_eq!(c.max_lock_delay, Duration::from_secs(20), "env beats file");
    assert_eq!(c.max_file_size, 1000, "file beats default");
    assert_eq!(c.max_lease, Duration::from_secs(60), "default when unset");
}

#[test]
fn meta_addresses_from_flag_env_and_file() {
    let c = CellConfig::load(&base().with_flag("meta", "m1:7000, m2:7000")).unwrap();
    assert_eq!(c.meta, vec!["m1:7000", "m2:7000"]);
    let c = CellConfig::load(&base().with_env("WARREN_META", "10.0.0.1:7000")).unwrap();
    assert_eq!(c.meta, vec!["10.0.0.1:7000"]);
    let file = "name = \"c1\"\nlisten = \"127.0.0.1:7000\"\ndata = \"/d\"\nmeta = [\"m1:1\", \"[::1]:2\"]\n";
    let c = CellConfig::load(&Sources::new().with_file("c.toml", file)).unwrap();
    assert_eq!(c.meta, vec!["m1:1", "[::1]:2"]);
    assert!(CellConfig::load(&base()).unwrap().meta.is_empty());

    let e = err(&base().with_flag("meta", "m1"));
    assert_eq!(e.field(), Some("meta"));
    let text = e.to_string();
    assert!(
        text.contains("\"m1\"") && text.contains("has no port"),
        "{text}"
    );
    assert!(text.contains("HOST:PORT"), "{text}");
    let e = err(&base().with_env("WARREN_META", "m1:1,m1:1"));
    assert_eq!(e.field(), Some("meta"));
    assert!(e.to_string().contains("twice"), "{e}");
    let e = err(&base().with_env("WARREN_META", " , "));
    assert_eq!(e.field(), Some("meta"));
    assert!(e.to_string().contains("lists no address"), "{e}");
}

#[test]
fn advertised_address() {
    assert_eq!(CellConfig::load(&base()).unwrap().advertise, None);
    let c = CellConfig::load(&base().with_flag("advertise", "relay.example:7100")).unwrap();
    assert_eq!(c.advertise.as_deref(), Some("relay.example:7100"));
    let c = CellConfig::load(&base().with_env("WARREN_ADVERTISE", "10.0.0.5:7000")).unwrap();
    assert_eq!(c.advertise.as_deref(), Some("10.0.0.5:7000"));
    let e = err(&base().with_flag("advertise", "relay.example"));
    assert_eq!(e.field(), Some("advertise"));
    assert!(e.to_string().contains("has no port"), "{e}");
}

#[test]
fn flags_accept_dashes() {
    let c = CellConfig::load(&base().with_flag("--max-lock-delay", "5s")).unwrap();
    assert_eq!(c.max_lock_delay, Duration::from_secs(5));
}

#[test]
fn other_environment_is_ignored() {
    let c = CellConfig::load(
        &base()
            .with_env("WARREN_ENDPOINT", "h:1")
            .with_env("PATH", "/bin"),
    )
    .unwrap();
    assert_eq!(c.name, "cell-1");
}

#[test]
fn missing_required_fields() {
    let e = err(&Sources::new());
    assert_eq!(e.field(), Some("name"));
    assert_eq!(
        e.to_string(),
        "name: required but not set; set it in the config file (name = \"cell-1\"), \
         with WARREN_NAME or with --name"
    );
    let e = err(&Sources::new().with_env("WARREN_NAME", "a"));
    assert_eq!(e.field(), Some("listen"));
    let e = err(&Sources::new()
        .with_env("WARREN_NAME", "a")
        .with_env("WARREN_LISTEN", "127.0.0.1:1"));
    assert_eq!(e.field(), Some("data"));
}

#[test]
fn lease_not_above_keepalive_reply() {
    let e = err(&base().with_env("WARREN_LEASE", "0s"));
    assert_eq!(
        e.to_string(),
        "lease: \"0s\" from WARREN_LEASE must be greater than keepalive_reply_before_end (1s); \
         set a lease of at least 2s"
    );
    // The user raised the reply margin, so that is what to fix.
    let e = err(&base().with_flag("keepalive-reply-before-end", "12s"));
    assert_eq!(e.field(), Some("keepalive_reply_before_end"));
    assert!(
        e.to_string()
            .contains("from --keepalive-reply-before-end must be less than lease (12s)"),
        "{e}"
    );
    let e = err(&base().with_env("WARREN_KEEPALIVE_REPLY_BEFORE_END", "0s"));
    assert_eq!(e.field(), Some("keepalive_reply_before_end"));
    assert!(e.to_string().contains("must be greater than 0"), "{e}");
}

#[test]
fn lease_limits() {
    let e = err(&base().with_env("WARREN_LEASE", "61s"));
    assert_eq!(
        e.to_string(),
        "lease: \"61s\" from WARREN_LEASE must be at most max_lease (1m); set a lease of at most 1m"
    );
    let e = err(&base().with_file("/etc/w.toml", "max_lease = \"10s\""));
    assert_eq!(
        e.to_string(),
        "max_lease: \"10s\" from /etc/w.toml must be at least lease (12s); \
         raise max_lease to at least 12s or lower lease"
    );
    let e = err(&base().with_env("WARREN_MAX_LEASE", "90s"));
    assert_eq!(e.field(), Some("max_lease"));
    assert!(e.to_string().contains("must be at most 1m"), "{e}");
    assert!(CellConfig::load(&base().with_env("WARREN_LEASE", "60s")).is_ok());
}

#[test]
fn proxy_lease_and_claim_window() {
    let c = CellConfig::load(
        &base()
            .with_flag("--proxy-lease", "25s")
            .with_env("WARREN_CLAIM_WINDOW", "90s"),
    )
    .unwrap();
    assert_eq!(c.proxy_lease, Duration::from_secs(25));
    assert_eq!(c.claim_window, Duration::from_secs(90));
    let c = CellConfig::load(
        &base().with_file("c.toml", "proxy_lease = \"30s\"\nclaim_window = \"2m\""),
    )
    .unwrap();
    assert_eq!(
        (c.proxy_lease, c.claim_window),
        (Duration::from_secs(30), Duration::from_secs(120))
    );
    // Unset, the proxy lease follows lease up and max_lease down.
    let c = CellConfig::load(&base().with_env("WARREN_LEASE", "30s")).unwrap();
    assert_eq!(c.proxy_lease, Duration::from_secs(30));
    let c = CellConfig::load(&base().with_env("WARREN_MAX_LEASE", "15s")).unwrap();
    assert_eq!(c.proxy_lease, Duration::from_secs(15));

    let e = err(&base().with_env("WARREN_PROXY_LEASE", "10s"));
    assert_eq!(
        e.to_string(),
        "proxy_lease: \"10s\" from WARREN_PROXY_LEASE must be at least lease (12s); \
         raise proxy_lease to at least 12s (proxies need a longer lease than their clients) \
         or lower lease"
    );
    let e = err(&base().with_flag("proxy_lease", "61s"));
    assert_eq!(e.field(), Some("proxy_lease"));
    assert!(
        e.to_string()
            .contains("from --proxy-lease must be at most max_lease (1m)"),
        "{e}"
    );
    let e = err(&base()
        .with_flag("proxy_lease", "30s")
        .with_flag("max_lease", "20s"));
    assert_eq!(e.field(), Some("proxy_lease"), "{e}");
    let e = err(&base().with_flag("claim_window", "5s"));
    assert_eq!(
        e.to_string(),
        "claim_window: \"5s\" from --claim-window must be at least lease (12s); \
         set it to at least the clients' grace period, e.g. 60s"
    );
    // Built in code: the same rules.
    let mut c = CellConfig::new("cell-1", "127.0.0.1:7000".parse().unwrap(), "/d");
    c.lease = Duration::from_secs(30);
    assert_eq!(c.validate().unwrap_err().field(), Some("proxy_lease"));
    c.proxy_lease = Duration::from_secs(30);
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn lock_delay_and_file_size_limits() {
    let e = err(&base().with_env("WARREN_MAX_LOCK_DELAY", "61s"));
    assert_eq!(e.field(), Some("max_lock_delay"));
    assert!(
        e.to_string()
            .contains("WARREN_MAX_LOCK_DELAY must be at most 1m"),
        "{e}"
    );

    let e = err(&base().with_flag("max_file_size", "262145"));
    assert_eq!(
        e.to_string(),
        "max_file_size: \"262145\" from --max-file-size must be from 1 to 262144 bytes \
         (256KiB, the largest file Warren stores); set a max_file_size of at most 262144"
    );
    let e = err(&base().with_flag("max_file_size", "0"));
    assert_eq!(e.field(), Some("max_file_size"));
    let e = err(&base().with_flag("max_file_size", "lots"));
    assert_eq!(e.field(), Some("max_file_size"));
    assert!(e.to_string().contains("is not a size"), "{e}");
    assert_eq!(
        CellConfig::load(&base().with_flag("max_file_size", "1KiB"))
            .unwrap()
            .max_file_size,
        1024
    );
}

#[test]
fn bad_values_name_field_source_and_fix() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("WARREN_NAME", "Cell_1", "name", "contains 'C'"),
        ("WARREN_NAME", "", "name", "is 0 characters long"),
        (
            "WARREN_LISTEN",
            "localhost",
            "listen",
            "is not an IP:PORT address",
        ),
        (
            "WARREN_ADMIN",
            "127.0.0.1:7000",
            "admin",
            "same address as listen",
        ),
        ("WARREN_ADMIN", "x", "admin", "is not an IP:PORT address"),
        ("WARREN_DATA", "", "data", "is empty"),
        ("WARREN_DEPLOYMENT", "a/b", "deployment", "contains '/'"),
        ("WARREN_LEASE", "12", "lease", "is not a duration"),
        (
            "WARREN_EPHEMERAL_CLEANUP",
            "0s",
            "ephemeral_cleanup",
            "must be greater than 0",
        ),
    ];
    for (var, value, field, fragment) in cases {
        let e = err(&base().with_env(*var, *value));
        assert_eq!(e.field(), Some(*field), "{var}={value}: {e}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{field}: {value:?} from {var} ")),
            "{text}"
        );
        assert!(text.contains(fragment), "{text}");
        let ConfigError::Invalid(invalid) = &e else {
            panic!("{e:?}");
        };
        assert!(!invalid.fix.is_empty());
    }
}

#[test]
fn admin_can_be_turned_off_by_a_higher_layer() {
    let sources = base()
        .with_file("c.toml", "admin = \"127.0.0.1:9000\"")
        .with_env("WARREN_ADMIN", "none");
    assert_eq!(CellConfig::load(&sources).unwrap().admin, None);
    let sources = base().with_file("c.toml", "admin = \"127.0.0.1:9000\"");
    assert_eq!(
        CellConfig::load(&sources).unwrap().admin,
        Some("127.0.0.1:9000".parse().unwrap())
    );
}

#[test]
fn unknown_key_and_flag() {
    let e = err(&base().with_file("/etc/warren/cell.toml", "leese = \"12s\""));
    assert_eq!(
        e,
        ConfigError::UnknownKey {
            path: "/etc/warren/cell.toml".into(),
            key: "leese".into(),
            fix: "did you mean \"lease\"? the keys are: name, listen, admin, data, deployment, \
                  lease, keepalive_reply_before_end, max_lease, proxy_lease, claim_window, \
                  max_lock_delay, max_file_size, ephemeral_cleanup, store, etcd, replica, \
                  etcd_lease, etcd_max_txn_ops, etcd_cacert, etcd_cert, etcd_key, meta, \
                  advertise, proxy_principals, operator_principals, backup_dest, backup_every, backup_keep, cacert, cert, key, insecure"
                .into(),
        }
    );
    assert!(e
        .to_string()
        .starts_with("/etc/warren/cell.toml: unknown key \"leese\"; did you mean"));
    let e = err(&base().with_flag("--leese", "12s"));
    assert!(
        matches!(&e, ConfigError::UnknownFlag { flag, .. } if flag == "leese"),
        "{e:?}"
    );
    assert!(e.to_string().contains("did you mean --lease?"), "{e}");
}

#[test]
fn bad_toml() {
    let e = err(&base().with_file("c.toml", "lease = "));
    assert!(
        matches!(&e, ConfigError::Toml { path, .. } if path == &PathBuf::from("c.toml")),
        "{e:?}"
    );
    let e = err(&base().with_file("c.toml", "[lease]\nx = 1"));
    assert_eq!(e.field(), Some("lease"));
    assert!(e.to_string().contains("is a TOML table"), "{e}");
    let e = err(&base().with_file("c.toml", "lease = 12"));
    assert_eq!(e.field(), Some("lease"));
    assert!(
        e.to_string().contains("from c.toml is not a duration"),
        "{e}"
    );
}

#[test]
fn validate_checks_code_built_configs() {
    let mut c = CellConfig::new("cell-1", "127.0.0.1:7000".parse().unwrap(), "/d");
    assert_eq!(c.validate(), Ok(()));
    c.lease = Duration::from_millis(900);
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "lease: \"900ms\" must be greater than keepalive_reply_before_end (1s); \
         set a lease of at least 2s"
    );
    c.lease = Duration::from_secs(12);
    c.max_file_size = FILE_SIZE_LIMIT + 1;
    assert_eq!(c.validate().unwrap_err().field(), Some("max_file_size"));
}

#[test]
fn reads_a_real_file() {
    let dir = std::env::temp_dir().join(format!("warren-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cell.toml");
    std::fs::write(
        &path,
        "name = \"c\"\nlisten = \"127.0.0.1:1\"\ndata = \"/d\"\n",
    )
    .unwrap();
    let c = CellConfig::load(&Sources::new().read_file(&path).unwrap()).unwrap();
    assert_eq!(c.name, "c");
    let missing = dir.join("absent.toml");
    let e = Sources::new().read_file(&missing).unwrap_err();
    assert!(
        matches!(&e, ConfigError::Read { path, .. } if path == &missing),
        "{e:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn proxy_and_operator_principals_from_file_env_and_repeated_flags() {
    let file = base().with_file(
        "/etc/warren/cell.toml",
        "proxy_principals = [\"warren:proxy-1\", \"warren:proxy-2\"]\n",
    );
    let c = CellConfig::load(&file).unwrap();
    assert_eq!(c.proxy_principals, ["warren:proxy-1", "warren:proxy-2"]);
    assert!(c.operator_principals.is_empty());
    let env = base().with_env("WARREN_OPERATOR_PRINCIPALS", "ops, sre");
    assert_eq!(
        CellConfig::load(&env).unwrap().operator_principals,
        ["ops", "sre"]
    );
    // `warren cell --proxy-principal a --proxy-principal b` arrives joined.
    let flags = base().with_flag("--proxy-principal", "a,b");
    assert_eq!(
        CellConfig::load(&flags).unwrap().proxy_principals,
        ["a", "b"]
    );
    let long = base().with_flag("operator-principal", "x".repeat(256));
    let e = err(&long).to_string();
    assert!(
        e.contains("operator_principals") && e.contains("255 bytes"),
        "{e}"
    );
}

#[test]
fn a_non_loopback_listen_address_without_tls_is_refused_unless_insecure() {
    let s = base().with_flag("listen", "0.0.0.0:7000");
    let e = CellConfig::load(&s).unwrap_err();
    assert_eq!(e.field(), Some("listen"));
    let text = e.to_string();
    assert!(
        text.contains("--insecure") && text.contains("--cacert"),
        "{text}"
    );
    let c = CellConfig::load(&s.clone().with_flag("insecure", "true")).unwrap();
    assert!(c.tls.insecure);
    let c = CellConfig::load(
        &s.with_env("WARREN_CACERT", "/ca.pem")
            .with_env("WARREN_CERT", "/c.pem")
            .with_env("WARREN_KEY", "/c.key"),
    )
    .unwrap();
    assert!(c.tls.files().is_some());
    // Loopback stays allowed in plaintext (`warren dev`, the tests).
    assert!(CellConfig::load(&base()).unwrap().tls.files().is_none());
}

#[test]
fn tls_files_come_in_threes_and_the_section_has_only_them() {
    let e = CellConfig::load(&base().with_flag("cert", "/c.pem")).unwrap_err();
    assert_eq!(e.field(), Some("cert"));
    assert!(e.to_string().contains("without cacert"), "{e}");
    let toml =
        "name = \"c\"\nlisten = \"127.0.0.1:1\"\ndata = \"/d\"\n[tls]\ncertificate = \"/c.pem\"\n";
    let e = CellConfig::load(&Sources::new().with_file("/c.toml", toml)).unwrap_err();
    assert!(e.to_string().contains("tls.certificate"), "{e}");
}

#[test]
fn tls_to_etcd_needs_https_urls_and_a_ca() {
    let s = base()
        .with_flag("store", "etcd")
        .with_flag("replica", "r1")
        .with_flag("etcd", "127.0.0.1:2379")
        .with_flag("etcd_cacert", "/ca.pem");
    let e = CellConfig::load(&s).unwrap_err();
    assert_eq!(e.field(), Some("etcd"));
    assert!(e.to_string().contains("https://"), "{e}");
    let ok = s.clone().with_flag("etcd", "https://127.0.0.1:2379");
    let c = CellConfig::load(&ok).unwrap();
    assert_eq!(c.etcd_cacert, Some(PathBuf::from("/ca.pem")));
    let e = CellConfig::load(&ok.with_flag("etcd_cert", "/c.pem")).unwrap_err();
    assert_eq!(e.field(), Some("etcd_cert"));
    assert!(e.to_string().contains("etcd_key"), "{e}");
}

#[test]
fn backup_section_flags_and_defaults() {
    use crate::cell::{BackupSettings, BACKUP_EVERY, BACKUP_KEEP};
    assert_eq!(CellConfig::load(&base()).unwrap().backup, None);
    let file = "name = \"c1\"\nlisten = \"127.0.0.1:0\"\ndata = \"/d\"\n\
                [backup]\ndest = \"/b\"\nevery = \"30m\"\nkeep = 3\n";
    let c = CellConfig::load(&Sources::new().with_file("c.toml", file)).unwrap();
    assert_eq!(
        c.backup,
        Some(BackupSettings {
            dest: "/b".into(),
            every: std::time::Duration::from_secs(1800),
            keep: 3
        })
    );
    // A flag overrides the file; defaults fill the rest.
    let c = CellConfig::load(&base().with_flag("backup_dest", "/x")).unwrap();
    let b = c.backup.unwrap();
    assert_eq!(
        (b.dest.as_str(), b.every, b.keep),
        ("/x", BACKUP_EVERY, BACKUP_KEEP)
    );
    let c = CellConfig::load(&base().with_env("WARREN_BACKUP_DEST", "/e")).unwrap();
    assert_eq!(c.backup.unwrap().dest, "/e");

    // Errors name the field.
    let e = err(&base().with_flag("backup_every", "1h"));
    assert_eq!(e.field(), Some("backup_dest"));
    let e = err(&base()
        .with_flag("backup_dest", "/x")
        .with_flag("backup_keep", "0"));
    assert_eq!(e.field(), Some("backup_keep"));
    let e = err(&base()
        .with_flag("backup_dest", "/x")
        .with_flag("backup_every", "10ms"));
    assert_eq!(e.field(), Some("backup_every"));
    let e = err(&base()
        .with_flag("backup_dest", "/x")
        .with_flag("backup_every", "soon"));
    assert_eq!(e.field(), Some("backup_every"));
    let bad = "name = \"c1\"\nlisten = \"127.0.0.1:0\"\ndata = \"/d\"\n[backup]\nwhere = \"/b\"\n";
    let e = CellConfig::load(&Sources::new().with_file("c.toml", bad)).unwrap_err();
    assert!(e.to_string().contains("dest, every, keep"), "{e}");
}
