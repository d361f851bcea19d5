//! [`ClientConfig`]: the settings of the client library (and of `warren ctl`, which is a
//! client): where to connect, the clock-drift allowance and the grace period (SPEC §4).

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
    /// `HOST:PORT` of the proxies or cells to contact, tried in order. Required; from the
    /// environment, `WARREN_ENDPOINT` as a comma-separated list.
    pub endpoints: Vec<String>,
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

impl ClientConfig {
    /// A configuration for `endpoints` with every other setting at its default.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            drift: 0.01,
            grace: Duration::from_secs(45),
            principal: String::new(),
        }
    }

    /// Loads and validates the configuration: defaults < file < `WARREN_*` < flags.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let layers = Layers::new(sources, FIELDS)?;
        let endpoints =
            layers
                .parse("endpoints", endpoint_list)?
                .ok_or_else(|| ConfigError::Missing {
                    field: "endpoints".into(),
                    fix: "set WARREN_ENDPOINT=HOST:PORT[,HOST:PORT…], endpoints = [\"HOST:PORT\"] \
                      in the config file, or --endpoint HOST:PORT"
                        .into(),
                })?;
        let mut config = Self::new(endpoints);
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
        let list = || self.endpoints.join(",");
        if self.endpoints.is_empty() {
            return Err(invalid(
                "endpoints",
                list(),
                bad(
                    "lists no endpoints",
                    "give at least one HOST:PORT of a proxy or cell",
                ),
            ));
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if let Err(b) = check_endpoint(endpoint) {
                return Err(invalid(
                    "endpoints",
                    list(),
                    bad(format!("has {endpoint:?}, which {}", b.problem), b.fix),
                ));
            }
            if self.endpoints[..i].contains(endpoint) {
                return Err(invalid(
                    "endpoints",
                    list(),
                    bad(
                        format!("lists {endpoint:?} twice"),
                        "list each endpoint once",
                    ),
                ));
            }
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
        let e = err(&Sources::new().with_env("WARREN_ENDPOINT", " , "));
        assert_eq!(
            e.to_string(),
            "endpoints: \" , \" from WARREN_ENDPOINT lists no endpoints; \
             give at least one HOST:PORT of a proxy or cell"
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
                .ends_with("the keys are: endpoints, drift, grace, principal"),
            "{e}"
        );
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
