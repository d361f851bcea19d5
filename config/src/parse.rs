//! Parsers and checks for setting values shared by every configuration: durations, byte
//! sizes, addresses and names. Each says what is wrong as a [`Bad`], which the loaders
//! turn into a [`crate::ConfigError`] naming the field and where the value came from.

use std::net::SocketAddr;
use std::time::Duration;

/// What is wrong with a value: `problem` completes "`<field>: <value> from <origin>` …",
/// `fix` says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bad {
    pub problem: String,
    pub fix: String,
}

pub(crate) fn bad(problem: impl Into<String>, fix: impl Into<String>) -> Bad {
    Bad {
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// A duration that did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration ({reason}); write a number and a unit, e.g. \"12s\", \"500ms\" or \"1m 30s\"")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

/// Parses a human-readable duration: `"12s"`, `"500ms"`, `"1m 30s"`, `"2h"` (the
/// `humantime` syntax). A bare number has no unit and is refused, except `"0"`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(DurationError {
            input: s.to_owned(),
            reason: "it is empty".to_owned(),
        });
    }
    humantime::parse_duration(trimmed).map_err(|e| DurationError {
        input: s.to_owned(),
        reason: e.to_string(),
    })
}

/// Parses a duration given on a command line (`warren ctl --grace`, `--hold`): what
/// [`parse_duration`] accepts (`"5s"`, `"500ms"`, `"1m 30s"`), or a bare number, which is
/// seconds (`"5"`, `"1.5"`). Settings (files, `WARREN_*`, the servers' flags) keep
/// requiring a unit, so a bare number there is never silently read in the wrong unit.
pub fn parse_duration_or_seconds(s: &str) -> Result<Duration, DurationError> {
    let trimmed = s.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return trimmed
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| DurationError {
                input: s.to_owned(),
                reason: "it is not a number of seconds".to_owned(),
            });
    }
    parse_duration(s)
}

/// [`parse_duration`] for the loaders.
pub(crate) fn duration(s: &str) -> Result<Duration, Bad> {
    parse_duration(s).map_err(|e| {
        bad(
            format!("is not a duration ({})", e.reason),
            "write a number and a unit, e.g. \"12s\", \"500ms\" or \"1m 30s\"",
        )
    })
}

/// Formats a duration as the settings are written (`12s`, `1s 500ms`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The non-empty, trimmed items of a comma-separated list (`"a:1, b:2,"` → `a:1`, `b:2`);
/// a TOML list of strings arrives joined by commas.
pub(crate) fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses a byte count: a plain number of bytes (`262144`) or a number with a unit `B`,
/// `KiB` or `MiB` (`256KiB`).
pub(crate) fn parse_size(s: &str) -> Result<usize, Bad> {
    let not_a_size = || {
        bad(
            "is not a size",
            "write a number of bytes, e.g. 262144 or 256KiB",
        )
    };
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        _ => return Err(not_a_size()),
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(not_a_size)
}

/// Parses `IP:PORT` to listen on (`0.0.0.0:7000`, `[::]:7000`; port 0 picks a free port).
pub(crate) fn parse_listen_addr(s: &str) -> Result<SocketAddr, Bad> {
    s.trim().parse().map_err(|_| {
        bad(
            "is not an IP:PORT address to listen on",
            "write e.g. 0.0.0.0:7000 or [::1]:7000",
        )
    })
}

/// Checks a `HOST:PORT` address to connect to: a host name or IP (IPv6 in brackets) and a
/// port from 1 to 65535.
pub(crate) fn check_endpoint(s: &str) -> Result<(), Bad> {
    const FIX: &str = "write HOST:PORT, e.g. cell-1.example.com:7000 or [::1]:7000";
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(bad("has no port", FIX));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad(format!("has port {port:?}; ports are 1 to 65535"), FIX)),
    }
    if host.is_empty() {
        return Err(bad("has no host", FIX));
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad(
                format!("has {inner:?} in brackets, which is not an IPv6 address"),
                FIX,
            ));
        }
        return Ok(());
    }
    if host.contains(':') {
        return Err(bad("has an IPv6 host without brackets", FIX));
    }
    let host_ok = host.split('.').all(|label| {
        !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if !host_ok {
        return Err(bad(
            format!("has host {host:?}, which is neither an IP address nor a DNS name"),
            FIX,
        ));
    }
    Ok(())
}

/// A cell name: 1–63 characters of `[a-z0-9-]` (as the partition map requires).
pub(crate) fn check_cell_name(s: &str) -> Result<(), Bad> {
    check_name(
        s,
        63,
        "characters",
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        "use 1 to 63 characters of a-z, 0-9 and -, e.g. cell-1",
    )
}

/// A deployment name: a path component, 1–255 bytes of `[A-Za-z0-9._-]`.
pub(crate) fn check_deployment(s: &str) -> Result<(), Bad> {
    check_name(
        s,
        255,
        "bytes",
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
        "use 1 to 255 characters of A-Z, a-z, 0-9, '.', '_' and '-', e.g. local",
    )
}

/// A name of 1 to `longest` bytes (ASCII: as many characters), each `allowed`; `fix` says
/// what to write instead.
fn check_name(
    s: &str,
    longest: usize,
    unit: &str,
    allowed: impl Fn(char) -> bool,
    fix: &str,
) -> Result<(), Bad> {
    if s.is_empty() || s.len() > longest {
        return Err(bad(format!("is {} {unit} long", s.len()), fix));
    }
    if let Some(bad_char) = s.chars().find(|c| !allowed(*c)) {
        return Err(bad(format!("contains {bad_char:?}"), fix));
    }
    Ok(())
}

/// Checks a list of `HOST:PORT` addresses, each a `what` (e.g. "replica of the meta
/// cell"): well-formed, none twice.
pub(crate) fn check_endpoints(list: &[String], what: &str) -> Result<(), Bad> {
    for (i, addr) in list.iter().enumerate() {
        if let Err(b) = check_endpoint(addr) {
            return Err(bad(format!("has {addr:?}, which {}", b.problem), b.fix));
        }
        if list[..i].contains(addr) {
            return Err(bad(
                format!("lists {addr:?} twice"),
                format!("list each {what} once"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
