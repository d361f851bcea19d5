//! [`ClientConfig`]: the settings of the client library (and of `warren ctl`, which is a
//! client): where to connect (cell replicas, or proxies), the clock-drift allowance and
//! the grace period (SPEC §4).

use std::time::Duration;

use crate::error::ConfigError;
use crate::parse::{bad, check_endpoint, duration, format_duration, Bad};
use crate::source::{FieldSpec, Layers, Origin, Provenance, Sources};

/// Largest accepted clock-rate drift allowance ρ. ρ is a rate error (0.01 = 1%); a value
/// near 1 would mean clocks running at twice the rate, which no lease logic can rescue.
pub const DRIFT_LIMIT: f64 = 0.5;
/// Longest principal name, in bytes.
pub const PRINCIPAL_LIMIT: usize = 255;

/// Settings of one client.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    /// `HOST:PORT` of the cell replicas to contact, tried in order. Required unless
    /// [`proxies`](Self::proxies) is set (and then empty); from the environment,
    /// `WARREN_ENDPOINT` as a comma-separated list.
    pub endpoints: Vec<String>,
    /// `HOST:PORT` of the proxies to connect through (SPEC §6), in any order: each session
    /// orders them on a consistent-hash ring (`warren_client::ClientOptions::proxies`).
    /// Empty (the default) means connect to [`endpoints`](Self::endpoints); set, it
    /// replaces them. From the environment, `WARREN_PROXIES` as a comma-separated list;
    /// the flag is `--proxy` (or `--proxies`).
    pub proxies: Vec<String>,
    /// ρ, the allowed clock-rate drift: the local lease is the granted lease divided by
    /// (1 + ρ), so a client whose clock runs fast by up to ρ still never outlives the
    /// master's lease.
    pub drift: f64,
    /// How long a client in jeopardy keeps looking for a master before its session expires.
    pub grace: Duration,
    /// The principal the client acts as (until TLS client certificates supply it); empty
    /// means anonymous.
    pub principal: String,
}

const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "endpoints",
        env: "WARREN_ENDPOINT",
        flag_aliases: &["endpoint"],
    },
    FieldSpec {
        name: "proxies",
        env: "WARREN_PROXIES",
        flag_aliases: &["proxy"],
    },
    FieldSpec {
        name: "drift",
        env: "WARREN_DRIFT",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "grace",
        env: "WARREN_GRACE",
        flag_aliases: &[],
    },
    FieldSpec {
        name: "principal",
        env: "WARREN_PRINCIPAL",
        flag_aliases: &[],
    },
];

/// Splits a comma-separated endpoint list (a TOML list arrives joined the same way),
/// ignoring blanks around entries and an empty trailing entry.
fn endpoint_list(s: &str) -> Result<Vec<String>, Bad> {
    Ok(s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect())
}

fn drift(s: &str) -> Result<f64, Bad> {
    s.trim().parse::<f64>().map_err(|_| {
        bad(
            "is not a number",
            "write the drift as a fraction, e.g. 0.01 for 1%",
        )
    })
}

/// Checks a list of `HOST:PORT` addresses (`field`, each a `what`): well-formed, no
/// duplicates. The list is known to be non-empty.
fn check_addresses(
    field: &str,
    what: &str,
    list: &[String],
    invalid: &dyn Fn(&str, String, Bad) -> ConfigError,
) -> Result<(), ConfigError> {
    let joined = || list.join(",");
    for (i, addr) in list.iter().enumerate() {
        if let Err(b) = check_endpoint(addr) {
            return Err(invalid(
                field,
                joined(),
                bad(format!("has {addr:?}, which {}", b.problem), b.fix),
            ));
        }
        if list[..i].contains(addr) {
            return Err(invalid(
                field,
                joined(),
                bad(
                    format!("lists {addr:?} twice"),
                    format!("list each {what} once"),
                ),
            ));
        }
    }
    Ok(())
}

impl ClientConfig {
    /// A configuration for `endpoints` with every other setting at its default.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            proxies: Vec::new(),
            drift: 0.01,
            grace: Duration::from_secs(45),
            principal: String::new(),
        }
    }

    /// A configuration that connects through `proxies`, every other setting at its
    /// default.
    pub fn with_proxies(proxies: Vec<String>) -> Self {
        Self {
            proxies,
            ..Self::new(Vec::new())
        }
    }

    /// Whether the client connects through proxies ([`proxies`](Self::proxies) is set).
    pub fn via_proxies(&self) -> bool {
        !self.proxies.is_empty()
    }

    /// Loads and validates the configuration: defaults < file < `WARREN_*` < flags.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let layers = Layers::new(sources, FIELDS)?;
        let endpoints = layers.parse("endpoints", endpoint_list)?;
        let proxies = layers.parse("proxies", endpoint_list)?;
        let mut config =
            match (endpoints, proxies) {
                (None, None) => return Err(ConfigError::Missing {
                    field: "endpoints".into(),
                    fix: "set WARREN_ENDPOINT=HOST:PORT[,HOST:PORT…], endpoints = [\"HOST:PORT\"] \
                          in the config file, or --endpoint HOST:PORT (to go through proxies: \
                          WARREN_PROXIES, proxies or --proxy instead)"
                        .into(),
                }),
                (endpoints, Some(proxies)) => {
                    if proxies.is_empty() {
                        // Said, but empty: not the same as not set.
                        let (origin, written) = layers.provenance("proxies");
                        return Err(ConfigError::invalid(
                            "proxies",
                            written.unwrap_or_default(),
                            origin,
                            bad(
                                "lists no proxies",
                                "give at least one HOST:PORT of a proxy, or leave proxies unset \
                             to connect to the cell's endpoints",
                            ),
                        ));
                    }
                    Self {
                        endpoints: endpoints.unwrap_or_default(),
                        ..Self::with_proxies(proxies)
                    }
                }
                (Some(endpoints), None) => Self::new(endpoints),
            };
        if let Some(v) = layers.parse("drift", drift)? {
            config.drift = v;
        }
        if let Some(v) = layers.parse("grace", duration)? {
            config.grace = v;
        }
        if let Some(v) = layers.parse("principal", |s| Ok(s.to_owned()))? {
            config.principal = v;
        }
        config.check(&|field| layers.provenance(field))?;
        Ok(config)
    }

    /// Checks every rule on a configuration built in code (a loaded one already was).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&|_| (Origin::Code, None))
    }

    fn check(&self, provenance: &Provenance) -> Result<(), ConfigError> {
        let invalid = |field: &str, value: String, b: Bad| {
            let (origin, written) = provenance(field);
            ConfigError::invalid(field, written.unwrap_or(value), origin, b)
        };
        if self.via_proxies() {
            if !self.endpoints.is_empty() {
                return Err(invalid(
                    "proxies",
                    self.proxies.join(","),
                    bad(
                        format!("is set and so is endpoints ({})", self.endpoints.join(",")),
                        "give either endpoints (to connect to a cell) or proxies (to connect \
                         through proxies), not both",
                    ),
                ));
            }
            check_addresses("proxies", "proxy", &self.proxies, &invalid)?;
        } else {
            if self.endpoints.is_empty() {
                return Err(invalid(
                    "endpoints",
                    String::new(),
                    bad(
                        "lists no endpoints",
                        "give at least one HOST:PORT of a cell replica (or set proxies)",
                    ),
                ));
            }
            check_addresses("endpoints", "endpoint", &self.endpoints, &invalid)?;
        }
        if !self.drift.is_finite() || !(0.0..=DRIFT_LIMIT).contains(&self.drift) {
            return Err(invalid(
                "drift",
                self.drift.to_string(),
                bad(
                    format!("must be from 0 to {DRIFT_LIMIT}"),
                    "set the clock-rate drift allowance as a fraction, e.g. 0.01 for 1%",
                ),
            ));
        }
        if self.grace.is_zero() {
            return Err(invalid(
                "grace",
                format_duration(self.grace),
                bad(
                    "must be greater than 0; a client in jeopardy needs time to find the new master",
                    "set a grace period such as 45s",
                ),
            ));
        }
        if self.principal.len() > PRINCIPAL_LIMIT {
            return Err(invalid(
                "principal",
                self.principal.chars().take(40).collect::<String>() + "…",
                bad(
                    format!("is {} bytes long", self.principal.len()),
                    format!("use a principal name of at most {PRINCIPAL_LIMIT} bytes"),
                ),
            ));
        }
        if let Some(c) = self
            .principal
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == ',')
        {
            return Err(invalid(
                "principal",
                self.principal.clone(),
                bad(
                    format!("contains {c:?}"),
                    "use a principal name without spaces, commas or control characters",
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(sources: &Sources) -> ConfigError {
        ClientConfig::load(sources).expect_err("configuration should be refused")
    }

    #[test]
    fn defaults() {
        let c = ClientConfig::load(&Sources::new().with_env("WARREN_ENDPOINT", "h:7000")).unwrap();
        assert_eq!(
            c,
            ClientConfig {
                endpoints: vec!["h:7000".into()],
                proxies: vec![],
                drift: 0.01,
                grace: Duration::from_secs(45),
                principal: String::new(),
            }
        );
    }

    #[test]
    fn endpoint_lists() {
        let c = ClientConfig::load(
            &Sources::new().with_env("WARREN_ENDPOINT", " a:1, 10.0.0.2:7000 ,[::1]:7001,"),
        )
        .unwrap();
        assert_eq!(c.endpoints, ["a:1", "10.0.0.2:7000", "[::1]:7001"]);
        let c = ClientConfig::load(
            &Sources::new().with_file("client.toml", "endpoints = [\"a:1\", \"b:2\"]"),
        )
        .unwrap();
        assert_eq!(c.endpoints, ["a:1", "b:2"]);
        let c = ClientConfig::load(
            &Sources::new()
                .with_env("WARREN_ENDPOINT", "a:1")
                .with_flag("--endpoint", "c:3"),
        )
        .unwrap();
        assert_eq!(c.endpoints, ["c:3"]);
    }

    #[test]
    fn precedence() {
        let sources = Sources::new()
            .with_file(
                "client.toml",
                "endpoints = \"a:1\"\ndrift = 0.02\ngrace = \"30s\"\nprincipal = \"file\"",
            )
            .with_env("WARREN_GRACE", "20s")
            .with_env("WARREN_PRINCIPAL", "env")
            .with_flag("principal", "flag");
        let c = ClientConfig::load(&sources).unwrap();
        assert_eq!(c.drift, 0.02);
        assert_eq!(c.grace, Duration::from_secs(20));
        assert_eq!(c.principal, "flag");
    }

    #[test]
    fn missing_endpoints() {
        let e = err(&Sources::new());
        assert_eq!(e.field(), Some("endpoints"));
        assert!(e.to_string().contains("WARREN_ENDPOINT=HOST:PORT"), "{e}");
        assert!(e.to_string().contains("WARREN_PROXIES"), "{e}");
        let e = err(&Sources::new().with_env("WARREN_ENDPOINT", " , "));
        assert_eq!(
            e.to_string(),
            "endpoints: \" , \" from WARREN_ENDPOINT lists no endpoints; \
             give at least one HOST:PORT of a cell replica (or set proxies)"
        );
    }

    #[test]
    fn bad_values_name_field_source_and_fix() {
        let base = || Sources::new().with_env("WARREN_ENDPOINT", "h:1");
        let e = err(&Sources::new().with_env("WARREN_ENDPOINT", "h:1,cell-2"));
        assert_eq!(
            e.to_string(),
            "endpoints: \"h:1,cell-2\" from WARREN_ENDPOINT has \"cell-2\", which has no port; \
             write HOST:PORT, e.g. cell-1.example.com:7000 or [::1]:7000"
        );
        let e = err(&Sources::new().with_env("WARREN_ENDPOINT", "h:1,h:1"));
        assert!(e.to_string().contains("lists \"h:1\" twice"), "{e}");
        let e = err(&Sources::new().with_flag("endpoint", "h:0"));
        assert!(
            e.to_string()
                .contains("from --endpoint has \"h:0\", which has port \"0\""),
            "{e}"
        );

        for (var, value, field, fragment) in [
            ("WARREN_DRIFT", "lots", "drift", "is not a number"),
            ("WARREN_DRIFT", "-0.1", "drift", "must be from 0 to 0.5"),
            ("WARREN_DRIFT", "NaN", "drift", "must be from 0 to 0.5"),
            ("WARREN_DRIFT", "0.6", "drift", "must be from 0 to 0.5"),
            ("WARREN_GRACE", "0s", "grace", "must be greater than 0"),
            ("WARREN_GRACE", "soon", "grace", "is not a duration"),
            ("WARREN_PRINCIPAL", "bob smith", "principal", "contains ' '"),
            ("WARREN_PRINCIPAL", "a,b", "principal", "contains ','"),
        ] {
            let e = err(&base().with_env(var, value));
            assert_eq!(e.field(), Some(field), "{e}");
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("{field}: {value:?} from {var} ")),
                "{text}"
            );
            assert!(text.contains(fragment), "{text}");
        }
        let long = "p".repeat(PRINCIPAL_LIMIT + 1);
        let e = err(&base().with_env("WARREN_PRINCIPAL", long));
        assert_eq!(e.field(), Some("principal"));
        assert!(e.to_string().contains("is 256 bytes long"), "{e}");
    }

    #[test]
    fn unknown_key() {
        let e = err(&Sources::new().with_file("c.toml", "endpoints = \"h:1\"\nlease = \"12s\""));
        assert!(
            matches!(&e, ConfigError::UnknownKey { key, .. } if key == "lease"),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .ends_with("the keys are: endpoints, proxies, drift, grace, principal"),
            "{e}"
        );
    }

    #[test]
    fn proxy_lists() {
        let c = ClientConfig::load(&Sources::new().with_env("WARREN_PROXIES", "p1:7000, p2:7000"))
            .unwrap();
        assert_eq!(c.proxies, ["p1:7000", "p2:7000"]);
        assert!(c.endpoints.is_empty());
        assert!(c.via_proxies());
        let c = ClientConfig::load(
            &Sources::new().with_file("client.toml", "proxies = [\"p1:1\", \"[::1]:2\"]"),
        )
        .unwrap();
        assert_eq!(c.proxies, ["p1:1", "[::1]:2"]);
        for flag in ["--proxy", "proxies"] {
            let c = ClientConfig::load(&Sources::new().with_flag(flag, "p:3")).unwrap();
            assert_eq!(c, ClientConfig::with_proxies(vec!["p:3".into()]));
        }
        let c = ClientConfig::load(&Sources::new().with_env("WARREN_ENDPOINT", "h:1")).unwrap();
        assert!(!c.via_proxies());
    }

    #[test]
    fn bad_proxy_lists_name_the_field() {
        let e = err(&Sources::new().with_env("WARREN_PROXIES", " , "));
        assert_eq!(
            e.to_string(),
            "proxies: \" , \" from WARREN_PROXIES lists no proxies; give at least one \
             HOST:PORT of a proxy, or leave proxies unset to connect to the cell's endpoints"
        );
        let e = err(&Sources::new().with_env("WARREN_PROXIES", "p:1,proxy-2"));
        assert_eq!(
            e.to_string(),
            "proxies: \"p:1,proxy-2\" from WARREN_PROXIES has \"proxy-2\", which has no port; \
             write HOST:PORT, e.g. cell-1.example.com:7000 or [::1]:7000"
        );
        let e = err(&Sources::new().with_flag("proxy", "p:1,p:1"));
        assert_eq!(
            e.to_string(),
            "proxies: \"p:1,p:1\" from --proxy lists \"p:1\" twice; list each proxy once"
        );
        let e = err(&Sources::new()
            .with_file("c.toml", "endpoints = \"h:1\"")
            .with_env("WARREN_PROXIES", "p:1"));
        assert_eq!(e.field(), Some("proxies"));
        assert_eq!(
            e.to_string(),
            "proxies: \"p:1\" from WARREN_PROXIES is set and so is endpoints (h:1); give \
             either endpoints (to connect to a cell) or proxies (to connect through proxies), \
             not both"
        );
        let mut c = ClientConfig::with_proxies(vec!["p:1".into()]);
        assert_eq!(c.validate(), Ok(()));
        c.proxies.push("p:0".into());
        assert_eq!(c.validate().unwrap_err().field(), Some("proxies"));
    }

    #[test]
    fn validate_checks_code_built_configs() {
        let mut c = ClientConfig::new(vec!["h:1".into()]);
        assert_eq!(c.validate(), Ok(()));
        c.drift = f64::INFINITY;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "drift: \"inf\" must be from 0 to 0.5; set the clock-rate drift allowance as a \
             fraction, e.g. 0.01 for 1%"
        );
        let c = ClientConfig::new(vec![]);
        assert_eq!(c.validate().unwrap_err().field(), Some("endpoints"));
    }
}
