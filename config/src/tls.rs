//! [`TlsSettings`]: the certificate files of a server process (`--cacert`, `--cert`,
//! `--key`, or a `[tls]` section of its config file) and `--insecure`, shared by
//! [`crate::CellConfig`] and [`crate::ProxyConfig`] (docs/security.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::ConfigError;
use crate::parse::{bad, Bad};
use crate::source::{Layers, Provenance};

/// Where a server's TLS identity comes from, and whether plaintext off loopback is allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// The CA certificate(s) (PEM) peers' certificates must chain to.
    pub cacert: Option<PathBuf>,
    /// This process's certificate chain (PEM), its own first.
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM).
    pub key: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address anyway (anyone who can reach the port
    /// can then act as anyone).
    pub insecure: bool,
}

/// The keys a config file's `[tls]` section may hold.
pub(crate) const SECTION_KEYS: &[&str] = &["cacert", "cert", "key"];

impl TlsSettings {
    /// Reads the four settings from `layers`.
    pub(crate) fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let path = |s: &str| Ok::<_, Bad>(PathBuf::from(s.trim()));
        Ok(Self {
            cacert: layers.parse("cacert", path)?,
            cert: layers.parse("cert", path)?,
            key: layers.parse("key", path)?,
            insecure: layers.parse("insecure", yes_no)?.unwrap_or(false),
        })
    }

    /// The files, if TLS is configured: `(cacert, cert, key)`.
    pub fn files(&self) -> Option<(PathBuf, PathBuf, PathBuf)> {
        Some((self.cacert.clone()?, self.cert.clone()?, self.key.clone()?))
    }

    /// A server needs all three files or none, and plaintext only on loopback unless
    /// `insecure`.
    pub(crate) fn check(
        &self,
        listen: SocketAddr,
        provenance: &Provenance,
    ) -> Result<(), ConfigError> {
        let invalid = |field: &str, value: String, b: Bad| {
            let (origin, written) = provenance(field);
            ConfigError::invalid(field, written.unwrap_or(value), origin, b)
        };
        let shown = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let given = [
            ("cacert", &self.cacert),
            ("cert", &self.cert),
            ("key", &self.key),
        ];
        if given.iter().any(|(_, p)| p.is_some()) {
            if let Some((missing, _)) = given.iter().find(|(_, p)| p.is_none()) {
                let (set, value) = given
                    .iter()
                    .find(|(_, p)| p.is_some())
                    .map(|(f, p)| (*f, shown(p)))
                    .unwrap_or_default();
                return Err(invalid(
                    set,
                    value,
                    bad(
                        format!("is given without {missing}: a server needs its CA, its certificate and its key"),
                        format!("give --{missing} (WARREN_{}, or {missing} in [tls]) too", missing.to_uppercase()),
                    ),
                ));
            }
            return Ok(());
        }
        if !listen.ip().is_loopback() && !self.insecure {
            return Err(invalid(
                "listen",
                listen.to_string(),
                bad(
                    "is not a loopback address and no TLS is configured, so anyone who can reach it could act as anyone",
                    "give --cacert, --cert and --key (WARREN_CACERT/WARREN_CERT/WARREN_KEY, or a [tls] section in the config file; docs/security.md), \
                     or --insecure (WARREN_INSECURE=on) to serve plaintext anyway",
                ),
            ));
        }
        Ok(())
    }
}

fn yes_no(s: &str) -> Result<bool, Bad> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(bad(
            format!("is {s:?}, which is neither on nor off"),
            "write on or off",
        )),
    }
}
