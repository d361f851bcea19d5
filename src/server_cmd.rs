//! What the server commands, `warren cell` and `warren proxy`, share as processes: their
//! settings' sources (the `--config` file, `WARREN_*` variables and the flags given), the
//! load-then-serve exit codes, binding with errors that name the setting, and the shutdown
//! signal (also `warren dev`'s).

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use tokio::net::TcpListener;
use warren_config::{ConfigError, Sources};

/// The sources of a server's settings: the TOML file `config` (if given), the process's
/// environment, and the flags given (`(setting, value)`; `None`: not given).
pub fn sources(
    config: Option<&Path>,
    flags: &[(&str, &Option<String>)],
) -> Result<Sources, ConfigError> {
    let mut s = Sources::new();
    if let Some(p) = config {
        s = s.read_file(p)?;
    }
    s.env = Sources::process_env();
    for (k, v) in flags {
        if let Some(v) = v {
            s = s.with_flag(*k, v.clone());
        }
    }
    Ok(s)
}

/// Loads the settings from `sources` with `load` and serves them with `serve`: exit 2 with
/// `error: INVALID_ARGUMENT: configuration: …` if they do not load, 1 with `error: …` if
/// serving fails, 0 after a clean shutdown.
pub async fn load_and_serve<C, F>(
    sources: Result<Sources, ConfigError>,
    load: impl FnOnce(&Sources) -> Result<C, ConfigError>,
    serve: impl FnOnce(C) -> F,
) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    match load_settings(sources, load) {
        Ok(cfg) => exit_code(serve(cfg).await),
        Err(code) => code,
    }
}

/// Loads the settings from `sources` with `load`; if they do not load, prints
/// `error: INVALID_ARGUMENT: configuration: …` and gives exit code 2.
pub fn load_settings<C>(
    sources: Result<Sources, ConfigError>,
    load: impl FnOnce(&Sources) -> Result<C, ConfigError>,
) -> Result<C, ExitCode> {
    sources.and_then(|s| load(&s)).map_err(|e| {
        eprintln!("error: INVALID_ARGUMENT: configuration: {e}");
        ExitCode::from(2)
    })
}

/// A server's outcome as its exit code: 1 with `error: …` printed if serving failed, 0
/// after a clean shutdown.
pub fn exit_code(served: anyhow::Result<()>) -> ExitCode {
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Binds `addr`, the value of the setting `setting`; the error names both.
pub async fn bind(
    addr: impl tokio::net::ToSocketAddrs + std::fmt::Display,
    setting: &str,
) -> anyhow::Result<TcpListener> {
    TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({setting}): {e}"))
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
