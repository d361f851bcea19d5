//! The TLS side of the `warren` commands (docs/security.md): the `--cacert/--cert/--key`
//! flags of the client commands (`ctl`, `loadtest`) and of the servers (`cell`, `proxy`),
//! and setting up a process's identity from them or from a server's settings: loaded,
//! checked, installed for every server and connection of the process, and (for servers)
//! reloaded on SIGHUP or a file change.

use clap::Args;
use std::path::PathBuf;
use warren_config::TlsSettings;
use warren_tls::{Tls, TlsFiles};

/// The TLS flags of a client command.
#[derive(Args, Clone, Debug, Default)]
pub struct ClientTlsArgs {
    /// The CA certificate (PEM) the servers' certificates must chain to; given, every
    /// connection is mutual TLS. Env WARREN_CACERT.
    #[arg(long, global = true, env = "WARREN_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// This client's certificate (PEM); its principal is what the servers authorize.
    /// Env WARREN_CERT.
    #[arg(long, global = true, env = "WARREN_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert. Env WARREN_KEY.
    #[arg(long, global = true, env = "WARREN_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// Loads and installs the identity the flags give (none: plaintext); the error names
    /// the flag or the file and the fix.
    pub fn install(&self) -> Result<(), String> {
        let files =
            TlsFiles::from_settings(self.cacert.clone(), self.cert.clone(), self.key.clone())?;
        if let Some(files) = files {
            warren_tls::install(Tls::load(files).map_err(|e| e.to_string())?);
        }
        Ok(())
    }
}

/// The TLS flags of a server command (`warren cell`, `warren proxy`), passed on as
/// settings, where the environment and the config file's [tls] section also give them.
#[derive(Args, Clone, Debug, Default)]
pub struct ServerTlsArgs {
    /// The CA certificate (PEM) peers' certificates must chain to; with --cert and --key,
    /// the gRPC port and this process's own connections are mutual TLS (docs/security.md).
    /// Env WARREN_CACERT, or `cacert` in the config file's [tls] section.
    #[arg(long)]
    pub cacert: Option<String>,
    /// This process's certificate (PEM), presented to clients and to the servers it dials.
    /// Env WARREN_CERT, or `cert` in [tls].
    #[arg(long)]
    pub cert: Option<String>,
    /// The private key (PEM) of --cert. Env WARREN_KEY, or `key` in [tls].
    #[arg(long)]
    pub key: Option<String>,
    /// Serve plaintext on a non-loopback --listen address (refused otherwise: anyone who
    /// can reach the port could act as anyone). Env WARREN_INSECURE.
    #[arg(long)]
    pub insecure: bool,
}

/// Sets up a server's identity from its settings (none: plaintext, which the settings'
/// validation allows only on loopback or with --insecure): loads and checks the files,
/// installs them for the process's server and its own connections, and starts reloading
/// them on SIGHUP or a change (the task lives as long as the process).
pub fn install_server(settings: &TlsSettings) -> anyhow::Result<()> {
    let Some((cacert, cert, key)) = settings.files() else {
        return Ok(());
    };
    let tls = Tls::load(TlsFiles::new(cacert, cert, key))?;
    tls.can_serve()?;
    tracing::info!(principal = %tls.principal().unwrap_or_default(), "serving mutual TLS");
    drop(tls.watch());
    warren_tls::install(tls);
    Ok(())
}
