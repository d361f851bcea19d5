//! [`ProxyConfig`]: the settings of `warren proxy` (docs/design.md §10): where it listens, the cells it
//! fronts (`cells`) or the meta cell whose partition map it routes by (`meta`, docs/design.md §11),
//! and the lease it grants its clients, which must nest inside the lease the cells grant it
//! (checked again when a cell answers, since only the cell knows its proxy lease).

use std::time::Duration;

use crate::cell::LEASE_LIMIT;
use crate::defaults;
use crate::error::ConfigError;
use crate::parse::{
    bad, check_cell_name, check_endpoint, check_endpoints, comma_list, format_duration,
    parse_listen_addr, Bad,
};
use crate::source::{FieldSpec, Layers, Origin, Provenance, Sources};

/// One cell the proxy fronts: its name and the addresses of its replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellAddrs {
    pub name: String,
    pub addrs: Vec<String>,
}

/// Settings of one proxy.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyConfig {
    /// `HOST:PORT` for the gRPC service.
    pub listen: String,
    /// `HOST:PORT` for the admin HTTP endpoint (`/metrics`, `/status`, …); none if empty.
    pub admin: String,
    /// A name for this proxy in logs, `/status` and `Locate` (default: the listen address).
    pub id: String,
    /// The cells it fronts without a map. `NAME=HOST:PORT[,HOST:PORT…]` each. Ignored when
    /// `meta` is given (the map names the cells and their replicas).
    pub cells: Vec<CellAddrs>,
    /// Addresses of the meta cell's replicas. Given: the proxy routes by the partition map
    /// it watches there (and `cells` may be empty). Empty: it fronts `cells` without a map.
    pub meta: Vec<String>,
    /// Lease granted to client sessions (default 12 s). Must nest inside the cells'
    /// proxy lease: `client_lease + lease_margin + keepalive_reply_before_end` < it.
    pub client_lease: Duration,
    /// A held client KeepAlive is answered this long before the client's lease ends.
    pub keepalive_reply_before_end: Duration,
    /// Client leases end at least this long before the proxy's own session at a cell.
    pub lease_margin: Duration,
    /// ρ for the proxy's own local leases at the cells.
    pub drift: f64,
    /// How long a forwarded call waits for a cell that is failing over before answering
    /// `FAILOVER_IN_PROGRESS` (the client library then retries).
    pub forward_patience: Duration,
    /// A client held in jeopardy by a cell failover is expired after this long past its
    /// lease (match the cells' claim window).
    pub max_starve: Duration,
    /// Promise each cell a hold-back (docs/proxy.md, "A dead proxy"): client leases and
    /// answers from the shared cache end that long before the proxy's lease at the cell,
    /// so that a write waits for a dead proxy only as long as the client leases it could
    /// have granted (≤ client lease + 0.5 s) instead of its whole lease. On by default:
    /// client leases are then at most the cover reach (11.78 s of 12 s), those of clients
    /// holding copies from a cell 9–12 s, and a client's first copy from a cell waits for
    /// one refresh of the proxy's session there (a round trip to the cell).
    pub hold_back: bool,
    /// Worker threads of the proxy's tokio runtime (`--threads`, 1–256); `None`: one per
    /// core, tokio's default. Fewer workers save the futex wake-ups and context switches
    /// of idle workers looking for work; measured on a busy 2-core machine the saving per
    /// cached read was within the noise (docs/performance.md, "Cached reads: CPU per read
    /// against a bare tonic server").
    pub threads: Option<usize>,
    /// Mutual TLS on the gRPC port and on the proxy's connections to cells
    /// (docs/security.md).
    pub tls: crate::TlsSettings,
}

/// The most worker threads `threads` accepts.
pub const MAX_PROXY_THREADS: usize = 256;

const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "cacert",
        env: "WARREN_CACERT",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "cert",
        env: "WARREN_CERT",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "key",
        env: "WARREN_KEY",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "insecure",
        env: "WARREN_INSECURE",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "listen",
        env: "WARREN_LISTEN",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "admin",
        env: "WARREN_ADMIN",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "id",
        env: "WARREN_PROXY_ID",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "cells",
        env: "WARREN_CELLS",
        flag_aliases: &["cell"],
    },
    FieldSpec {
        name: "meta",
        env: "WARREN_META",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "client_lease",
        env: "WARREN_CLIENT_LEASE",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "keepalive_reply_before_end",
        env: "WARREN_KEEPALIVE_REPLY_BEFORE_END",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "lease_margin",
        env: "WARREN_LEASE_MARGIN",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "forward_patience",
        env: "WARREN_FORWARD_PATIENCE",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "max_starve",
        env: "WARREN_MAX_STARVE",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "hold_back",
        env: "WARREN_HOLD_BACK",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "threads",
        env: "WARREN_THREADS",
        flag_aliases: &[],
    },
];

/// A number of worker threads, 1 to [`MAX_PROXY_THREADS`].
fn thread_count(s: &str) -> Result<usize, Bad> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_PROXY_THREADS).contains(&n) => Ok(n),
        _ => Err(bad(
            format!("is not a number of threads from 1 to {MAX_PROXY_THREADS}"),
            "give a whole number of worker threads, e.g. --threads 1, or leave it out for one \
             per core",
        )),
    }
}

/// `on`/`off` (also `true`/`false`, `yes`/`no`, `1`/`0`).
fn on_off(s: &str) -> Result<bool, Bad> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(bad(
            format!("is {s:?}, which is neither on nor off"),
            "write on or off, e.g. --hold-back on",
        )),
    }
}

/// `NAME=ADDR[,ADDR…]` entries separated by `;` (several `--cell` flags arrive joined so).
fn cell_list(s: &str) -> Result<Vec<CellAddrs>, Bad> {
    let mut cells = Vec::new();
    for entry in s.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, addrs)) = entry.split_once('=') else {
            return Err(bad(
                format!("has {entry:?}, which is not NAME=HOST:PORT[,HOST:PORT…]"),
                "write each cell as NAME=HOST:PORT, e.g. --cell main=127.0.0.1:7100",
            ));
        };
        cells.push(CellAddrs {
            name: name.trim().to_string(),
            addrs: comma_list(addrs),
        });
    }
    Ok(cells)
}

/// What to do when neither `cells` nor `meta` is given.
const CELLS_OR_META: &str = "give --meta HOST:PORT[,HOST:PORT…] (the meta cell's replicas: route \
     by the partition map kept there) or --cell NAME=HOST:PORT[,HOST:PORT…] (front these cells \
     without a map; repeatable)";

impl ProxyConfig {
    /// A configuration listening on `listen` for `cells`, every other setting at its default.
    pub fn new(listen: impl Into<String>, cells: Vec<CellAddrs>) -> Self {
        let listen = listen.into();
        ProxyConfig {
            id: listen.clone(),
            listen,
            admin: String::new(),
            cells,
            meta: Vec::new(),
            client_lease: defaults::LEASE,
            keepalive_reply_before_end: defaults::KEEPALIVE_REPLY_BEFORE_END,
            lease_margin: defaults::PROXY_LEASE_MARGIN,
            drift: defaults::CLOCK_DRIFT,
            forward_patience: defaults::PROXY_FORWARD_PATIENCE,
            max_starve: defaults::PROXY_MAX_STARVE,
            hold_back: true,
            threads: None,
            tls: crate::TlsSettings::default(),
        }
    }

    /// Loads and validates: defaults < file < `WARREN_*` < flags.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let layers = Layers::new(sources, FIELDS)?;
        let listen = layers
            .parse("listen", |s| Ok(s.trim().to_owned()))?
            .unwrap_or_else(|| defaults::PROXY_LISTEN.to_string());
        let cells = layers.parse("cells", cell_list)?;
        let meta = layers.parse("meta", |s| Ok(comma_list(s)))?;
        if cells.is_none() && meta.is_none() {
            return Err(ConfigError::Missing {
                field: "cells".into(),
                fix: CELLS_OR_META.into(),
            });
        }
        let mut config = Self::new(listen, cells.unwrap_or_default());
        config.meta = meta.unwrap_or_default();
        config.tls = crate::TlsSettings::load(&layers)?;
        if let Some(v) = layers.parse("admin", |s| Ok(s.trim().to_owned()))? {
            config.admin = v;
        }
        if let Some(v) = layers.parse("id", |s| Ok(s.trim().to_owned()))? {
            config.id = v;
        }
        if let Some(v) = layers.parse("hold_back", on_off)? {
            config.hold_back = v;
        }
        if let Some(v) = layers.parse("threads", thread_count)? {
            config.threads = Some(v);
        }
        layers.set_durations([
            ("client_lease", &mut config.client_lease),
            (
                "keepalive_reply_before_end",
                &mut config.keepalive_reply_before_end,
            ),
            ("lease_margin", &mut config.lease_margin),
            ("forward_patience", &mut config.forward_patience),
            ("max_starve", &mut config.max_starve),
        ])?;
        config.check(&|field| layers.provenance(field))?;
        Ok(config)
    }

    /// Checks every rule on a configuration built in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&|_| (Origin::Code, None))
    }

    /// The shortest proxy lease a cell may grant for these client leases to nest in it.
    pub fn min_proxy_lease(&self) -> Duration {
        self.client_lease + self.lease_margin + self.keepalive_reply_before_end
    }

    /// Checks a cell's granted proxy lease against the client lease (docs/design.md §10: the proxy
    /// must be able to collect its clients' acknowledgements within its own lease).
    pub fn check_proxy_lease(&self, cell: &str, granted: Duration) -> Result<(), String> {
        if granted <= self.min_proxy_lease() {
            return Err(format!(
                "cell {cell} grants proxy sessions a {} lease, but this proxy's client_lease {} \
                 + lease_margin {} + keepalive_reply_before_end {} needs more than {}: lower \
                 the proxy's --client-lease or raise the cell's --proxy-lease",
                format_duration(granted),
                format_duration(self.client_lease),
                format_duration(self.lease_margin),
                format_duration(self.keepalive_reply_before_end),
                format_duration(self.min_proxy_lease()),
            ));
        }
        Ok(())
    }

    fn check(&self, provenance: &Provenance) -> Result<(), ConfigError> {
        let invalid = |field: &str, value: String, b: Bad| {
            let (origin, written) = provenance(field);
            ConfigError::invalid(field, written.unwrap_or(value), origin, b)
        };
        match parse_listen_addr(&self.listen) {
            Err(b) => return Err(invalid("listen", self.listen.clone(), b)),
            Ok(listen) => self.tls.check(listen, provenance)?,
        }
        if !self.admin.is_empty() {
            if let Err(b) = parse_listen_addr(&self.admin) {
                return Err(invalid("admin", self.admin.clone(), b));
            }
        }
        let cells = || {
            self.cells
                .iter()
                .map(|c| format!("{}={}", c.name, c.addrs.join(",")))
                .collect::<Vec<_>>()
                .join(";")
        };
        let meta = || self.meta.join(",");
        if self.cells.is_empty() && self.meta.is_empty() {
            // Name whichever was written (empty); else the cells, as before --meta.
            let (field, value) = match (provenance("cells").0, provenance("meta").0) {
                (Origin::Default, m) if m != Origin::Default => ("meta", meta()),
                _ => ("cells", cells()),
            };
            return Err(invalid(
                field,
                value,
                bad(
                    "lists no cells, and no meta cell is given either",
                    CELLS_OR_META,
                ),
            ));
        }
        if let Err(b) = check_endpoints(&self.meta, "replica of the meta cell") {
            return Err(invalid("meta", meta(), b));
        }
        // A wrong entry in `cells`: the error quotes the whole list and names the entry.
        let bad_cells = |problem: String, fix: String| invalid("cells", cells(), bad(problem, fix));
        for (i, c) in self.cells.iter().enumerate() {
            if let Err(b) = check_cell_name(&c.name) {
                return Err(bad_cells(
                    format!("names cell {:?}, which {}", c.name, b.problem),
                    b.fix,
                ));
            }
            if self.cells[..i].iter().any(|o| o.name == c.name) {
                return Err(bad_cells(
                    format!("lists cell {:?} twice", c.name),
                    "give each cell once, with all its replicas: NAME=A,B,C".into(),
                ));
            }
            if c.addrs.is_empty() {
                return Err(bad_cells(
                    format!("gives cell {:?} no address", c.name),
                    "write NAME=HOST:PORT[,HOST:PORT…]".into(),
                ));
            }
            for a in &c.addrs {
                if let Err(b) = check_endpoint(a) {
                    return Err(bad_cells(format!("has {a:?}, which {}", b.problem), b.fix));
                }
            }
        }
        if self.client_lease <= self.keepalive_reply_before_end {
            return Err(invalid(
                "client_lease",
                format_duration(self.client_lease),
                bad(
                    format!(
                        "must exceed keepalive_reply_before_end ({})",
                        format_duration(self.keepalive_reply_before_end)
                    ),
                    "use a client lease of several seconds, e.g. 12s",
                ),
            ));
        }
        if self.min_proxy_lease() >= LEASE_LIMIT {
            return Err(invalid(
                "client_lease",
                format_duration(self.client_lease),
                bad(
                    format!(
                        "with the margins it needs a proxy lease over {}, more than any cell may grant ({})",
                        format_duration(self.min_proxy_lease()),
                        format_duration(LEASE_LIMIT)
                    ),
                    "lower client_lease",
                ),
            ));
        }
        if !self.drift.is_finite() || !(0.0..=0.5).contains(&self.drift) {
            return Err(invalid(
                "drift",
                self.drift.to_string(),
                bad("must be from 0 to 0.5", "e.g. 0.01 for 1%"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_cells_from_repeated_flags() {
        let s = Sources::new()
            .with_flag("cell", "a=127.0.0.1:1,127.0.0.1:2;b=127.0.0.1:3")
            .with_flag("client_lease", "5s");
        let c = ProxyConfig::load(&s).expect("valid");
        assert_eq!(c.cells.len(), 2);
        assert_eq!(c.cells[0].addrs, vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(c.client_lease, Duration::from_secs(5));
    }

    #[test]
    fn errors_name_the_field() {
        let e = ProxyConfig::load(&Sources::new()).expect_err("cells missing");
        assert_eq!(e.field(), Some("cells"));
        let e = ProxyConfig::load(&Sources::new().with_flag("cell", "127.0.0.1:1"))
            .expect_err("no name");
        assert_eq!(e.field(), Some("cells"));
        let e = ProxyConfig::load(
            &Sources::new()
                .with_flag("cell", "a=127.0.0.1:1")
                .with_flag("client_lease", "1s"),
        )
        .expect_err("lease too short");
        assert_eq!(e.field(), Some("client_lease"));
    }

    #[test]
    fn threads_default_to_one_per_core_and_bad_counts_are_refused() {
        let cell = || Sources::new().with_flag("cell", "a=127.0.0.1:1");
        assert_eq!(ProxyConfig::load(&cell()).expect("valid").threads, None);
        let c = ProxyConfig::load(&cell().with_flag("threads", "3")).expect("valid");
        assert_eq!(c.threads, Some(3));
        let c = ProxyConfig::load(&cell().with_env("WARREN_THREADS", "2")).expect("valid");
        assert_eq!(c.threads, Some(2));
        for bad in ["0", "-1", "two", "257", ""] {
            let e = ProxyConfig::load(&cell().with_flag("threads", bad))
                .expect_err("not a thread count");
            assert_eq!(e.field(), Some("threads"), "{bad:?}");
            assert!(e.to_string().contains("--threads 1"), "{e}");
        }
    }

    #[test]
    fn meta_from_flag_env_or_file_makes_cells_optional() {
        let c = ProxyConfig::load(&Sources::new().with_flag("meta", "127.0.0.1:1, 127.0.0.1:2"))
            .expect("meta alone is enough");
        assert_eq!(c.meta, vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert!(c.cells.is_empty());
        let c = ProxyConfig::load(&Sources::new().with_env("WARREN_META", "m.example.com:7000"))
            .expect("from the environment");
        assert_eq!(c.meta, vec!["m.example.com:7000"]);
        let c = ProxyConfig::load(&Sources::new().with_file(
            "/etc/warren/proxy.toml",
            "meta = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n",
        ))
        .expect("a TOML list");
        assert_eq!(c.meta, vec!["127.0.0.1:1", "127.0.0.1:2"]);
        let c = ProxyConfig::load(
            &Sources::new()
                .with_file("/etc/warren/proxy.toml", "meta = \"127.0.0.1:1\"\n")
                .with_flag("cell", "a=127.0.0.1:3"),
        )
        .expect("both");
        assert_eq!(c.meta, vec!["127.0.0.1:1"]);
        assert_eq!(c.cells.len(), 1);
        // --cell alone: no map, as before.
        let c = ProxyConfig::load(&Sources::new().with_flag("cell", "a=127.0.0.1:3")).unwrap();
        assert!(c.meta.is_empty());
    }

    #[test]
    fn neither_cells_nor_meta_is_an_error_naming_both() {
        let e = ProxyConfig::load(&Sources::new()).expect_err("nothing to front");
        let text = e.to_string();
        assert!(text.contains("--meta") && text.contains("--cell"), "{text}");
        let e = ProxyConfig::load(&Sources::new().with_flag("meta", " , ")).expect_err("empty");
        assert_eq!(e.field(), Some("meta"));
        let text = e.to_string();
        assert!(text.contains("--meta") && text.contains("--cell"), "{text}");
        let e = ProxyConfig::new("127.0.0.1:0", vec![])
            .validate()
            .expect_err("in code too");
        assert!(e.to_string().contains("--meta"), "{e}");
    }

    #[test]
    fn bad_meta_addresses_are_named() {
        let e =
            ProxyConfig::load(&Sources::new().with_flag("meta", "127.0.0.1")).expect_err("no port");
        assert_eq!(e.field(), Some("meta"));
        assert!(e.to_string().contains("--meta"), "{e}");
        let e = ProxyConfig::load(&Sources::new().with_flag("meta", "127.0.0.1:1,127.0.0.1:1"))
            .expect_err("twice");
        assert_eq!(e.field(), Some("meta"));
    }

    #[test]
    fn the_proxy_lease_check_names_both_settings() {
        let c = ProxyConfig::new("127.0.0.1:0", vec![]);
        assert!(c.check_proxy_lease("a", Duration::from_secs(20)).is_ok());
        let e = c
            .check_proxy_lease("a", Duration::from_secs(12))
            .expect_err("12 s cannot hold a 12 s client lease");
        assert!(
            e.contains("--client-lease") && e.contains("--proxy-lease"),
            "{e}"
        );
    }
}
