//! The servers' own `/metrics` (Prometheus text exposition format), scraped before and after
//! a run: the KeepAlive absorption factor and each endpoint's RPC rate are computed from
//! these counters, so they are measured, not assumed.

use crate::report::float_or_null;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Client KeepAlives a proxy received (`proxy/src/admin.rs`).
pub const PROXY_KEEPALIVES: &str = "warren_proxy_keepalives_received_total";
/// KeepAlives that reached a cell, from clients or proxies (`cell/src/server/metrics.rs`).
pub const CELL_KEEPALIVES: &str = "warren_keepalives_received_total";
/// RPCs answered, labelled by method and code, and by `tier` (`cell` or `proxy`) where the
/// build has it (`warren_server::metrics`).
pub const CELL_RPCS: &str = "warren_rpc_total";

/// What went wrong reading or comparing expositions.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricsError {
    /// A sample line that is not `name[{labels}] value [timestamp]`.
    Malformed { line: usize, text: String },
    /// A counter the computation needs is not in an endpoint's exposition.
    Missing { endpoint: String, counter: String },
    /// A counter went down between the scrapes (the process restarted?).
    Decreased {
        endpoint: String,
        counter: String,
        before: f64,
        after: f64,
    },
    /// No scraped endpoint exposes this kind of counter.
    NoEndpoint { kind: &'static str, counter: String },
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsError::Malformed { line, text } => {
                write!(f, "line {line} of the exposition is not a sample: `{text}`")
            }
            MetricsError::Missing { endpoint, counter } => {
                write!(f, "{endpoint} does not expose the counter {counter}")
            }
            MetricsError::Decreased {
                endpoint,
                counter,
                before,
                after,
            } => write!(
                f,
                "{counter} at {endpoint} went down from {before} to {after} during the run \
                 (did the process restart?)"
            ),
            MetricsError::NoEndpoint { kind, counter } => write!(
                f,
                "none of the --metrics endpoints is a {kind} (none exposes {counter}); give \
                 the admin address of at least one {kind}"
            ),
        }
    }
}

impl std::error::Error for MetricsError {}

/// Labels of one sample.
pub type Labels = BTreeMap<String, String>;

/// One sample line: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

/// One parsed exposition: its samples, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    samples: Vec<Sample>,
}

impl Exposition {
    /// Parses the Prometheus text format. Comments (`# HELP`, `# TYPE`) and blank lines are
    /// skipped; label values may hold spaces, braces, commas and escaped quotes; a trailing
    /// timestamp is ignored. A line that is not a sample is an error naming it.
    pub fn parse(text: &str) -> Result<Exposition, MetricsError> {
        let mut samples = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || MetricsError::Malformed {
                line: i + 1,
                text: line.chars().take(200).collect(),
            };
            let name_end = line
                .find(|c: char| c == '{' || c.is_whitespace())
                .ok_or_else(bad)?;
            let name = &line[..name_end];
            if name.is_empty() {
                return Err(bad());
            }
            let mut rest = &line[name_end..];
            let mut labels = Labels::new();
            if rest.starts_with('{') {
                let close = closing_brace(rest).ok_or_else(bad)?;
                labels = parse_labels(&rest[1..close]).ok_or_else(bad)?;
                rest = &rest[close + 1..];
            }
            let value = rest.split_whitespace().next().ok_or_else(bad)?;
            let value: f64 = value.parse().map_err(|_| bad())?;
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Ok(Exposition { samples })
    }

    /// The sum of `name` over its label sets, if the exposition has it.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.sum_where(name, |_| true)
    }

    /// The sum of the samples of `name` whose labels pass `keep`; `None` when none does.
    pub fn sum_where(&self, name: &str, keep: impl Fn(&Labels) -> bool) -> Option<f64> {
        let mut found = None;
        for s in self.samples.iter().filter(|s| s.name == name) {
            if keep(&s.labels) {
                *found.get_or_insert(0.0) += s.value;
            }
        }
        found
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }
}

/// `k="v",k2="v2"` (a trailing comma allowed); `None` if malformed.
fn parse_labels(s: &str) -> Option<Labels> {
    let mut labels = Labels::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        let key = key.trim();
        if key.is_empty() {
            return None;
        }
        labels.insert(key.to_string(), value);
    }
}

/// Samples of the cell tier: `tier` absent (older builds) or `cell`.
pub fn cell_tier(labels: &Labels) -> bool {
    labels.get("tier").is_none_or(|t| t == "cell")
}

/// Samples of the proxy tier.
pub fn proxy_tier(labels: &Labels) -> bool {
    labels.get("tier").is_some_and(|t| t == "proxy")
}

/// Index of the `}` closing the label set that `s` starts with (quotes respected).
fn closing_brace(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// An endpoint's exposition before and after the measured window.
#[derive(Clone, Debug)]
pub struct EndpointScrapes {
    /// The admin address (`HOST:PORT`).
    pub admin: String,
    pub before: Exposition,
    pub after: Exposition,
    /// Seconds between the two scrapes.
    pub secs: f64,
}

impl EndpointScrapes {
    /// A proxy's exposition (it counts client KeepAlives).
    pub fn is_proxy(&self) -> bool {
        self.after.has(PROXY_KEEPALIVES)
    }

    /// A cell's exposition (it counts KeepAlives reaching it).
    pub fn is_cell(&self) -> bool {
        self.after.has(CELL_KEEPALIVES) || self.after.sum_where(CELL_RPCS, cell_tier).is_some()
    }

    /// after − before of `counter`; an error if the scrape after lacks it or it went down.
    pub fn delta(&self, counter: &str) -> Result<f64, MetricsError> {
        self.delta_where(counter, |_| true)
    }

    /// after − before of the samples of `counter` whose labels pass `keep`.
    pub fn delta_where(
        &self,
        counter: &str,
        keep: impl Fn(&Labels) -> bool + Copy,
    ) -> Result<f64, MetricsError> {
        let missing = || MetricsError::Missing {
            endpoint: self.admin.clone(),
            counter: counter.to_string(),
        };
        let after = self.after.sum_where(counter, keep).ok_or_else(missing)?;
        // A counter first incremented during the run is absent before it: it was 0.
        let before = self.before.sum_where(counter, keep).unwrap_or(0.0);
        if after < before {
            return Err(MetricsError::Decreased {
                endpoint: self.admin.clone(),
                counter: counter.to_string(),
                before,
                after,
            });
        }
        Ok(after - before)
    }

    /// The rate of `counter`'s samples passing `keep` over the window, per second.
    pub fn rate_where(
        &self,
        counter: &str,
        keep: impl Fn(&Labels) -> bool + Copy,
    ) -> Result<f64, MetricsError> {
        Ok(per_second(self.delta_where(counter, keep)?, self.secs))
    }
}

/// `count / secs`, 0 for an empty window.
pub fn per_second(count: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        count / secs
    } else {
        0.0
    }
}

/// The KeepAlive absorption figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Absorption {
    /// Client KeepAlives the proxies received in the window (all proxies scraped).
    #[serde(deserialize_with = "float_or_null")]
    pub client_at_proxies: f64,
    /// KeepAlives that reached the cells in the window (all cells scraped).
    #[serde(deserialize_with = "float_or_null")]
    pub at_cells: f64,
    /// `client_at_proxies / at_cells`; `None` when no KeepAlive reached a cell.
    pub factor: Option<f64>,
}

/// The absorption factor: client KeepAlives at the proxies ÷ KeepAlives reaching the cells,
/// summed over the scraped endpoints of each kind. Every endpoint exposing the proxy counter
/// is a proxy and every one exposing the cell counter a cell (one process running both, as
/// `warren dev` does with one metrics registry, counts as both).
pub fn absorption(endpoints: &[EndpointScrapes]) -> Result<Absorption, MetricsError> {
    let proxies: Vec<&EndpointScrapes> = endpoints.iter().filter(|e| e.is_proxy()).collect();
    let cells: Vec<&EndpointScrapes> = endpoints
        .iter()
        .filter(|e| e.after.has(CELL_KEEPALIVES))
        .collect();
    if proxies.is_empty() {
        return Err(MetricsError::NoEndpoint {
            kind: "proxy",
            counter: PROXY_KEEPALIVES.into(),
        });
    }
    if cells.is_empty() {
        return Err(MetricsError::NoEndpoint {
            kind: "cell",
            counter: CELL_KEEPALIVES.into(),
        });
    }
    let mut client = 0.0;
    for p in proxies {
        client += p.delta(PROXY_KEEPALIVES)?;
    }
    let mut at_cells = 0.0;
    for c in cells {
        at_cells += c.delta(CELL_KEEPALIVES)?;
    }
    Ok(Absorption {
        client_at_proxies: client,
        at_cells,
        factor: (at_cells > 0.0).then(|| client / at_cells),
    })
}

/// One scraped endpoint's figures for the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointReport {
    pub admin: String,
    /// `proxy`, `cell`, or `proxy+cell` (one process with one registry, e.g. `warren dev`).
    pub role: String,
    #[serde(deserialize_with = "float_or_null")]
    pub window_s: f64,
    /// Cell RPCs answered per second (`warren_rpc_total`, tier `cell`), when a cell.
    pub rpc_per_s: Option<f64>,
    /// Proxy RPCs answered per second (`warren_rpc_total`, tier `proxy`), when exposed.
    pub proxy_rpc_per_s: Option<f64>,
    /// KeepAlives reaching this cell per second, when a cell.
    pub cell_keepalives_per_s: Option<f64>,
    /// Client KeepAlives received per second, when a proxy.
    pub client_keepalives_per_s: Option<f64>,
}

/// Per-endpoint rates; an endpoint missing a counter its role implies is an error.
pub fn endpoint_report(e: &EndpointScrapes) -> Result<EndpointReport, MetricsError> {
    let role = match (e.is_proxy(), e.is_cell()) {
        (true, true) => "proxy+cell",
        (true, false) => "proxy",
        (false, true) => "cell",
        (false, false) => "unknown",
    };
    let opt = |counter: &str, keep: fn(&Labels) -> bool| -> Result<Option<f64>, MetricsError> {
        if e.after.sum_where(counter, keep).is_some() {
            e.rate_where(counter, keep).map(Some)
        } else {
            Ok(None)
        }
    };
    Ok(EndpointReport {
        admin: e.admin.clone(),
        role: role.into(),
        window_s: e.secs,
        rpc_per_s: opt(CELL_RPCS, cell_tier)?,
        proxy_rpc_per_s: opt(CELL_RPCS, proxy_tier)?,
        cell_keepalives_per_s: opt(CELL_KEEPALIVES, |_| true)?,
        client_keepalives_per_s: opt(PROXY_KEEPALIVES, |_| true)?,
    })
}

/// Fetches `http://ADMIN/metrics` ([`crate::http::get`], 10 s timeout) and parses it.
pub async fn scrape(admin: &str) -> anyhow::Result<(Exposition, Instant)> {
    use anyhow::{anyhow, bail, Context};
    let reply = crate::http::get(admin, "/metrics", Duration::from_secs(10))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => anyhow!("scraping http://{admin}/metrics timed out"),
            _ => anyhow!(e).context(format!("scraping http://{admin}/metrics")),
        })?;
    let at = Instant::now();
    if reply.status != 200 {
        let status = reply.head.lines().next().unwrap_or("");
        bail!("http://{admin}/metrics answered {status}");
    }
    if reply.head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        bail!(
            "http://{admin}/metrics answered with a chunked body, which this scraper does not read"
        );
    }
    let body = reply.body.as_str();
    let exposition =
        Exposition::parse(body).with_context(|| format!("parsing http://{admin}/metrics"))?;
    Ok((exposition, at))
}

#[cfg(test)]
mod tests;
