//! [`CellConfig`]: the settings of one `warren cell` process, with their defaults (docs/design.md §16)
//! and the rules that tie them together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ConfigError;
use crate::parse::{
    bad, check_cell_name, check_deployment, check_endpoints, comma_list, duration, format_duration,
    parse_listen_addr, parse_size, Bad,
};
use crate::source::{blame_second, FieldSpec, Layers, Origin, Provenance, Sources};

use crate::defaults::{self, PROXY_LEASE as DEFAULT_PROXY_LEASE};
pub use crate::defaults::{FILE_SIZE_LIMIT, LEASE_LIMIT, LOCK_DELAY_LIMIT};

/// Settings of one cell replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellConfig {
    /// The cell's name in the partition map; 1–63 characters of `[a-z0-9-]`. Required.
    pub name: String,
    /// Address the gRPC service listens on. Required.
    pub listen: SocketAddr,
    /// Address of the admin HTTP endpoint (`/metrics`, `/healthz`, …); none if unset.
    pub admin: Option<SocketAddr>,
    /// Directory of the embedded store. Required.
    pub data: PathBuf,
    /// The `<deployment>` of `/ls/<deployment>/…` this cell serves.
    pub deployment: String,
    /// Session lease granted normally. Must exceed `keepalive_reply_before_end`, or a
    /// KeepAlive reply would arrive after the lease it extends had already ended.
    pub lease: Duration,
    /// How long before a lease ends the master answers the outstanding KeepAlive, leaving
    /// the client time to receive it and send the next before its local lease runs out.
    pub keepalive_reply_before_end: Duration,
    /// Longest lease an overloaded master may grant instead of `lease` (≤ 60 s).
    pub max_lease: Duration,
    /// Lease granted to proxy sessions (docs/design.md §10), from `lease` to `max_lease`. A proxy
    /// must collect its clients' acknowledgements within it, so it is longer than the
    /// lease clients get. Default 20 s (or `lease` / `max_lease`, whichever is nearer, when
    /// 20 s is outside them and it is not set).
    pub proxy_lease: Duration,
    /// How long the client sessions of a proxy session that ended keep their locks,
    /// handles and ephemeral files, waiting for another proxy to claim them (at least
    /// `lease`; default 60 s, longer than the clients' 45 s grace period).
    pub claim_window: Duration,
    /// Longest lock-delay a handle may ask for (≤ 60 s).
    pub max_lock_delay: Duration,
    /// Largest file contents accepted, in bytes (≤ 256 KiB).
    pub max_file_size: usize,
    /// After a failover, how long ephemeral nodes wait to be reopened before deletion.
    pub ephemeral_cleanup: Duration,
    /// Where the cell's state lives: the embedded store in `data`, or an etcd cluster
    /// shared by the cell's replicas.
    pub store: StoreKind,
    /// etcd client URLs (`http://host:port`), required with `store = "etcd"`.
    pub etcd: Vec<String>,
    /// This replica's id within the cell (`[a-z0-9-]`), required with `store = "etcd"`.
    pub replica: String,
    /// TTL of the etcd lease behind mastership (whole seconds, ≥ 1 s). A dead master is
    /// replaced about this long after it stops renewing.
    pub etcd_lease: Duration,
    /// Most operations per etcd transaction; should equal the cluster's `--max-txn-ops`.
    /// Set higher, the cell finds etcd's limit at election (or when etcd refuses a write),
    /// warns and uses etcd's (docs/operations.md, "etcd limits").
    pub etcd_max_txn_ops: usize,
    /// TLS to etcd (docs/security.md, "etcd"): the CA that signs etcd's certificates, and
    /// this replica's client certificate and key (needed when etcd runs with
    /// `--client-cert-auth`). Given, the `etcd` URLs must be `https://`.
    pub etcd_cacert: Option<PathBuf>,
    pub etcd_cert: Option<PathBuf>,
    pub etcd_key: Option<PathBuf>,
    /// Addresses of the meta cell's replicas (`HOST:PORT`). Given: this is a data cell of a
    /// partitioned deployment, serving only the slots the partition map (watched in the
    /// meta cell) gives it. Empty: the meta cell, or the only cell of an unpartitioned one.
    pub meta: Vec<String>,
    /// The address (`HOST:PORT`) this replica tells others to reach it at: what `Locate`
    /// names as master and what it campaigns with. Unset: the `listen` address. Set it
    /// when clients reach the replica through a different address (NAT, a container
    /// port, a TCP relay).
    pub advertise: Option<String>,
    /// Principals, as the transport authenticates them (a verified client certificate),
    /// that may act as proxies: create proxy sessions, claim client sessions and forward
    /// their clients' principals (docs/security.md, "Authorization"). Empty: no
    /// authenticated caller is a proxy. Callers on plaintext connections are not judged.
    pub proxy_principals: Vec<String>,
    /// Principals that may write the reserved subtree `/ls/<d>/warren/` and run reshards,
    /// besides `warren:operator` and the cells' own `warren:cell` (docs/security.md).
    pub operator_principals: Vec<String>,
    /// Backups the master takes (docs/backup.md): the `[backup]` section, or the
    /// `backup_dest`/`backup_every`/`backup_keep` settings. None without a destination.
    pub backup: Option<BackupSettings>,

    /// Mutual TLS on the gRPC port and on this replica's own connections (docs/security.md).
    pub tls: crate::TlsSettings,
}

/// The `[backup]` section (docs/backup.md, "Schedule").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSettings {
    /// A directory (`dest = "/var/backups/warren"`), never inside the cell's data directory.
    pub dest: String,
    /// How often the master takes one (default 6 h, at least 1 s).
    pub every: Duration,
    /// How many of this cell's backups are kept at the destination (default 28, at least 1).
    pub keep: usize,
}

pub use crate::defaults::{BACKUP_EVERY, BACKUP_KEEP};

/// The `store` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// One replica; redb in `data`. A restart is a failover.
    Embedded,
    /// Several replicas campaigning through etcd.
    Etcd,
}

const FIELDS: &[FieldSpec] = &[
    spec("name", "WARREN_NAME"),
    spec("listen", "WARREN_LISTEN"),
    spec("admin", "WARREN_ADMIN"),
    spec("data", "WARREN_DATA"),
    spec("deployment", "WARREN_DEPLOYMENT"),
    spec("lease", "WARREN_LEASE"),
    spec(
        "keepalive_reply_before_end",
        "WARREN_KEEPALIVE_REPLY_BEFORE_END",
    ),
    spec("max_lease", "WARREN_MAX_LEASE"),
    spec("proxy_lease", "WARREN_PROXY_LEASE"),
    spec("claim_window", "WARREN_CLAIM_WINDOW"),
    spec("max_lock_delay", "WARREN_MAX_LOCK_DELAY"),
    spec("max_file_size", "WARREN_MAX_FILE_SIZE"),
    spec("ephemeral_cleanup", "WARREN_EPHEMERAL_CLEANUP"),
    spec("store", "WARREN_STORE"),
    spec("etcd", "WARREN_ETCD"),
    spec("replica", "WARREN_REPLICA"),
    spec("etcd_lease", "WARREN_ETCD_LEASE"),
    spec("etcd_max_txn_ops", "WARREN_ETCD_MAX_TXN_OPS"),
    spec("etcd_cacert", "WARREN_ETCD_CACERT"),
    spec("etcd_cert", "WARREN_ETCD_CERT"),
    spec("etcd_key", "WARREN_ETCD_KEY"),
    spec("meta", "WARREN_META"),
    spec("advertise", "WARREN_ADVERTISE"),
    FieldSpec {
        name: "proxy_principals",
        env: "WARREN_PROXY_PRINCIPALS",
        flag_aliases: &["proxy_principal"],
    },
    FieldSpec {
        name: "operator_principals",
        env: "WARREN_OPERATOR_PRINCIPALS",
        flag_aliases: &["operator_principal"],
    },
    spec("backup_dest", "WARREN_BACKUP_DEST"),
    spec("backup_every", "WARREN_BACKUP_EVERY"),
    spec("backup_keep", "WARREN_BACKUP_KEEP"),
    spec("cacert", "WARREN_CACERT"),
    spec("cert", "WARREN_CERT"),
    spec("key", "WARREN_KEY"),
    spec("insecure", "WARREN_INSECURE"),
];

const fn spec(name: &'static str, env: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        env,
        flag_aliases: &[],
    }
}

fn missing(field: &str, example: &str) -> ConfigError {
    let env = format!("WARREN_{}", field.to_uppercase());
    ConfigError::Missing {
        field: field.to_owned(),
        fix: format!(
            "set it in the config file ({field} = {example}), with {env} or with --{}",
            field.replace('_', "-")
        ),
    }
}

impl CellConfig {
    /// A configuration with the required settings given and every other at its default.
    pub fn new(name: impl Into<String>, listen: SocketAddr, data: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            listen,
            admin: None,
            data: data.into(),
            deployment: defaults::DEPLOYMENT.to_owned(),
            lease: defaults::LEASE,
            keepalive_reply_before_end: defaults::KEEPALIVE_REPLY_BEFORE_END,
            max_lease: LEASE_LIMIT,
            proxy_lease: DEFAULT_PROXY_LEASE,
            claim_window: defaults::CLAIM_WINDOW,
            max_lock_delay: LOCK_DELAY_LIMIT,
            max_file_size: FILE_SIZE_LIMIT,
            ephemeral_cleanup: defaults::EPHEMERAL_CLEANUP,
            store: StoreKind::Embedded,
            etcd: Vec::new(),
            replica: String::new(),
            etcd_lease: defaults::ETCD_LEASE,
            etcd_max_txn_ops: defaults::ETCD_MAX_TXN_OPS,
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
    }

    /// Loads and validates the configuration: defaults < file < `WARREN_*` < flags.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let layers = Layers::new(sources, FIELDS)?;
        let text = |s: &str| Ok::<_, Bad>(s.to_owned());

        let name = layers
            .parse("name", text)?
            .ok_or_else(|| missing("name", "\"cell-1\""))?;
        let listen = layers
            .parse("listen", parse_listen_addr)?
            .ok_or_else(|| missing("listen", "\"0.0.0.0:7000\""))?;
        let store = layers
            .parse("store", |s| match s.trim() {
                "embedded" => Ok(StoreKind::Embedded),
                "etcd" => Ok(StoreKind::Etcd),
                _ => Err(bad(
                    "is not a store kind",
                    "use \"embedded\" (the default) or \"etcd\"",
                )),
            })?
            .unwrap_or(StoreKind::Embedded);
        let data = layers.parse("data", |s| Ok(PathBuf::from(s)))?;
        let data = match (data, store) {
            (Some(d), _) => d,
            (None, StoreKind::Etcd) => PathBuf::new(),
            (None, StoreKind::Embedded) => return Err(missing("data", "\"/var/lib/warren\"")),
        };
        let mut config = Self::new(name, listen, data);
        config.store = store;
        config.tls = crate::TlsSettings::load(&layers)?;
        if let Some(v) = layers.parse("etcd", |s| {
            let urls: Vec<String> = comma_list(s)
                .into_iter()
                .map(|u| {
                    if u.contains("://") {
                        u
                    } else {
                        format!("http://{u}")
                    }
                })
                .collect();
            if urls.is_empty() {
                return Err(bad(
                    "lists no endpoint",
                    "give the etcd client URLs, e.g. http://10.0.0.1:2379,http://10.0.0.2:2379",
                ));
            }
            for u in &urls {
                let hostport = u.split_once("://").map_or(u.as_str(), |x| x.1);
                if hostport
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(bad(
                        format!("{u:?} has no port"),
                        "write each endpoint as http://HOST:PORT",
                    ));
                }
            }
            Ok(urls)
        })? {
            config.etcd = v;
        }
        if let Some(v) = layers.parse("replica", text)? {
            config.replica = v;
        }
        let path = |s: &str| Ok::<_, Bad>(PathBuf::from(s.trim()));
        config.etcd_cacert = layers.parse("etcd_cacert", path)?;
        config.etcd_cert = layers.parse("etcd_cert", path)?;
        config.etcd_key = layers.parse("etcd_key", path)?;
        if let Some(v) = layers.parse("etcd_lease", duration)? {
            config.etcd_lease = v;
        }
        if let Some(v) = layers.parse("etcd_max_txn_ops", |s| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or(bad(
                    "is not a whole number of at least 1",
                    "use etcd's --max-txn-ops (128 unless the cluster was started otherwise)",
                ))
        })? {
            config.etcd_max_txn_ops = v;
        }

        if let Some(v) = layers.parse("meta", |s| {
            let addrs = comma_list(s);
            if addrs.is_empty() {
                return Err(bad(
                    "lists no address",
                    "give the meta cell's replicas as HOST:PORT[,HOST:PORT…], or leave meta \
                     unset for the meta cell itself or an unpartitioned deployment",
                ));
            }
            Ok(addrs)
        })? {
            config.meta = v;
        }
        if let Some(v) = layers.parse("advertise", |s| {
            let a = s.trim().to_owned();
            check_endpoints(std::slice::from_ref(&a), "address")?;
            Ok(a)
        })? {
            config.advertise = Some(v);
        }
        // Principals are listed comma separated (a TOML list is joined so), and the flags
        // repeat (`warren cell` joins them).
        let principals = |s: &str| {
            let list = comma_list(s);
            match list.iter().find(|p| p.len() > 255) {
                Some(p) => Err(bad(
                    format!("names a principal of {} bytes", p.len()),
                    "principals are at most 255 bytes",
                )),
                None => Ok(list),
            }
        };
        if let Some(v) = layers.parse("proxy_principals", principals)? {
            config.proxy_principals = v;
        }
        if let Some(v) = layers.parse("operator_principals", principals)? {
            config.operator_principals = v;
        }
        if let Some(admin) = layers.parse("admin", |s| match s.trim() {
            "" | "none" | "off" => Ok(None),
            addr => parse_listen_addr(addr).map(Some),
        })? {
            config.admin = admin;
        }
        if let Some(v) = layers.parse("deployment", text)? {
            config.deployment = v;
        }
        layers.set_durations([
            ("lease", &mut config.lease),
            (
                "keepalive_reply_before_end",
                &mut config.keepalive_reply_before_end,
            ),
            ("max_lease", &mut config.max_lease),
            ("claim_window", &mut config.claim_window),
            ("max_lock_delay", &mut config.max_lock_delay),
            ("ephemeral_cleanup", &mut config.ephemeral_cleanup),
        ])?;
        if let Some(v) = layers.parse("max_file_size", parse_size)? {
            config.max_file_size = v;
        }
        // Unset, the proxy lease follows lease and max_lease into their range.
        config.proxy_lease = match layers.parse("proxy_lease", duration)? {
            Some(v) => v,
            None => DEFAULT_PROXY_LEASE.min(config.max_lease).max(config.lease),
        };
        let every = layers.parse("backup_every", duration)?;
        let keep = layers.parse("backup_keep", |s| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or(bad(
                    "is not a whole number of at least 1",
                    "give how many backups of this cell to keep, e.g. 28",
                ))
        })?;
        match layers.parse("backup_dest", text)? {
            Some(dest) => {
                config.backup = Some(BackupSettings {
                    dest: dest.trim().to_owned(),
                    every: every.unwrap_or(BACKUP_EVERY),
                    keep: keep.unwrap_or(BACKUP_KEEP),
                })
            }
            None if every.is_some() || keep.is_some() => {
                return Err(missing("backup_dest", "\"/var/backups/warren\""));
            }
            None => {}
        }
        config.check(&|field| layers.provenance(field))?;
        Ok(config)
    }

    /// Checks every rule on a configuration built in code (a loaded one already was).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&|_| (Origin::Code, None))
    }

    /// TLS to etcd: a certificate needs its key and a CA; with any of them, every etcd URL
    /// is `https://`.
    fn check_etcd_tls(
        &self,
        invalid: &dyn Fn(&str, String, Bad) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let shown = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        match (&self.etcd_cacert, &self.etcd_cert, &self.etcd_key) {
            (None, None, None) => return Ok(()),
            (None, c, k) => {
                let (field, value) = if c.is_some() {
                    ("etcd_cert", shown(c))
                } else {
                    ("etcd_key", shown(k))
                };
                return Err(invalid(
                    field,
                    value,
                    bad(
                        "is given without etcd_cacert",
                        "give --etcd-cacert, the CA that signs etcd's certificates",
                    ),
                ));
            }
            (Some(_), Some(c), None) => {
                return Err(invalid(
                    "etcd_cert",
                    c.display().to_string(),
                    bad(
                        "is given without etcd_key",
                        "give --etcd-key, the certificate's private key",
                    ),
                ));
            }
            (Some(_), None, Some(k)) => {
                return Err(invalid(
                    "etcd_key",
                    k.display().to_string(),
                    bad(
                        "is given without etcd_cert",
                        "give --etcd-cert, the certificate the key belongs to",
                    ),
                ));
            }
            _ => {}
        }
        if let Some(plain) = self.etcd.iter().find(|u| !u.starts_with("https://")) {
            return Err(invalid(
                "etcd",
                self.etcd.join(","),
                bad(
                    format!("has {plain}, which is not an https:// URL, while TLS to etcd is configured"),
                    "write the etcd members as https://HOST:PORT",
                ),
            ));
        }
        Ok(())
    }

    /// Checks the rules; `provenance(field)` says where a field's value came from and, if
    /// it was written somewhere, how it was written (errors repeat the user's spelling).
    fn check(&self, provenance: &Provenance) -> Result<(), ConfigError> {
        let origin = |field: &str| provenance(field).0;
        let invalid = |field: &str, value: String, b: Bad| {
            let (origin, written) = provenance(field);
            ConfigError::invalid(field, written.unwrap_or(value), origin, b)
        };
        self.tls.check(self.listen, provenance)?;
        let fmt = |d: Duration| format_duration(d);
        if let Some(b) = &self.backup {
            if b.dest.is_empty() {
                return Err(invalid(
                    "backup_dest",
                    b.dest.clone(),
                    bad(
                        "is empty",
                        "give a directory on another disk or host, e.g. /var/backups/warren",
                    ),
                ));
            }
            if b.every < Duration::from_secs(1) {
                return Err(invalid(
                    "backup_every",
                    fmt(b.every),
                    bad("is under a second", "use e.g. 6h (the default)"),
                ));
            }
        }

        check_cell_name(&self.name).map_err(|b| invalid("name", self.name.clone(), b))?;
        check_deployment(&self.deployment)
            .map_err(|b| invalid("deployment", self.deployment.clone(), b))?;
        if self.store == StoreKind::Etcd {
            if self.etcd.is_empty() {
                return Err(missing("etcd", "\"http://127.0.0.1:2379\""));
            }
            check_cell_name(&self.replica).map_err(|b| {
                if self.replica.is_empty() {
                    missing("replica", "\"r1\"")
                } else {
                    invalid("replica", self.replica.clone(), b)
                }
            })?;
            self.check_etcd_tls(&invalid)?;
            if self.etcd_lease < Duration::from_secs(1) || self.etcd_lease.subsec_nanos() != 0 {
                return Err(invalid(
                    "etcd_lease",
                    fmt(self.etcd_lease),
                    bad(
                        "must be a whole number of seconds, at least 1s",
                        "use e.g. 2s (etcd leases have whole-second TTLs)",
                    ),
                ));
            }
        } else if self.data.as_os_str().is_empty() {
            return Err(invalid(
                "data",
                String::new(),
                bad(
                    "is empty",
                    "give the directory of the cell's store, e.g. /var/lib/warren",
                ),
            ));
        }
        if let Err(b) = check_endpoints(&self.meta, "replica of the meta cell") {
            return Err(invalid("meta", self.meta.join(","), b));
        }
        if let Some(admin) = self.admin {
            if admin == self.listen && admin.port() != 0 {
                return Err(invalid(
                    "admin",
                    admin.to_string(),
                    bad(
                        format!("is the same address as listen ({})", self.listen),
                        "give the admin endpoint its own port",
                    ),
                ));
            }
        }

        let kr = self.keepalive_reply_before_end;
        if kr.is_zero() {
            return Err(invalid(
                "keepalive_reply_before_end",
                fmt(kr),
                bad(
                    "must be greater than 0",
                    "set it to about the round-trip time plus margin, e.g. 1s",
                ),
            ));
        }
        // A setting above its hard limit.
        let over_limit = |field: &str, value: Duration, limit: Duration| {
            invalid(
                field,
                fmt(value),
                bad(
                    format!("must be at most {}", fmt(limit)),
                    format!("set a {field} of {} or less", fmt(limit)),
                ),
            )
        };
        // `lower` above `upper` (both set, or defaulted): blames the one written last.
        let above = |lower: (&str, Duration), upper: (&str, Duration), lower_fix: String| {
            let ((lf, lv), (uf, uv)) = (lower, upper);
            if blame_second(origin, lf, uf) {
                invalid(
                    uf,
                    fmt(uv),
                    bad(
                        format!("must be at least {lf} ({})", fmt(lv)),
                        format!("raise {uf} to at least {} or lower {lf}", fmt(lv)),
                    ),
                )
            } else {
                invalid(
                    lf,
                    fmt(lv),
                    bad(format!("must be at most {uf} ({})", fmt(uv)), lower_fix),
                )
            }
        };
        if self.max_lease > LEASE_LIMIT {
            return Err(over_limit("max_lease", self.max_lease, LEASE_LIMIT));
        }
        if self.lease > self.max_lease {
            return Err(above(
                ("lease", self.lease),
                ("max_lease", self.max_lease),
                format!("set a lease of at most {}", fmt(self.max_lease)),
            ));
        }
        if self.lease <= kr {
            return Err(
                if blame_second(origin, "lease", "keepalive_reply_before_end") {
                    invalid(
                        "keepalive_reply_before_end",
                        fmt(kr),
                        bad(
                            format!("must be less than lease ({})", fmt(self.lease)),
                            format!(
                                "set it well below {}, e.g. 1s, or raise lease",
                                fmt(self.lease)
                            ),
                        ),
                    )
                } else {
                    invalid(
                        "lease",
                        fmt(self.lease),
                        bad(
                            format!(
                                "must be greater than keepalive_reply_before_end ({})",
                                fmt(kr)
                            ),
                            format!(
                                "set a lease of at least {}",
                                fmt(kr + Duration::from_secs(1))
                            ),
                        ),
                    )
                },
            );
        }
        if self.proxy_lease < self.lease {
            return Err(invalid(
                "proxy_lease",
                fmt(self.proxy_lease),
                bad(
                    format!("must be at least lease ({})", fmt(self.lease)),
                    format!(
                        "raise proxy_lease to at least {} (proxies need a longer lease than their clients) or lower lease",
                        fmt(self.lease)
                    ),
                ),
            ));
        }
        if self.proxy_lease > self.max_lease {
            return Err(above(
                ("proxy_lease", self.proxy_lease),
                ("max_lease", self.max_lease),
                format!(
                    "set a proxy_lease of at most {} or raise max_lease",
                    fmt(self.max_lease)
                ),
            ));
        }
        if self.claim_window < self.lease {
            return Err(invalid(
                "claim_window",
                fmt(self.claim_window),
                bad(
                    format!("must be at least lease ({})", fmt(self.lease)),
                    "set it to at least the clients' grace period, e.g. 60s",
                ),
            ));
        }
        if self.max_lock_delay > LOCK_DELAY_LIMIT {
            return Err(over_limit(
                "max_lock_delay",
                self.max_lock_delay,
                LOCK_DELAY_LIMIT,
            ));
        }
        if self.max_file_size == 0 || self.max_file_size > FILE_SIZE_LIMIT {
            return Err(invalid(
                "max_file_size",
                self.max_file_size.to_string(),
                bad(
                    format!(
                        "must be from 1 to {FILE_SIZE_LIMIT} bytes (256KiB, the largest file Warren stores)"
                    ),
                    format!("set a max_file_size of at most {FILE_SIZE_LIMIT}"),
                ),
            ));
        }
        if self.ephemeral_cleanup.is_zero() {
            return Err(invalid(
                "ephemeral_cleanup",
                fmt(self.ephemeral_cleanup),
                bad(
                    "must be greater than 0; clients need time to reopen their ephemeral nodes after a failover",
                    "set it to at least the clients' grace period, e.g. 60s",
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
