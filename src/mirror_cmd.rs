//! `warren mirror`: the command line of the mirroring agent (docs/mirror.md). Checks the
//! arguments before connecting anywhere (a bad `--subtree` or a loop is exit 2 with the fix),
//! serves the admin endpoint (`/metrics`, `/healthz`, `/readyz`, `/status`), prints
//! `admin: HOST:PORT` and `ready`, and runs `warren_mirror::run` until Ctrl-C / SIGTERM,
//! which closes its sessions before it exits.
//! Every setting also comes from a `WARREN_MIRROR_*` environment variable, which is how the
//! systemd unit (deploy/systemd/warren-mirror.service) configures it.

use clap::{Args, ValueEnum};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use warren_client::ClientOptions;
use warren_config::parse_duration_or_seconds;
use warren_mirror::{Describe, Shared, Subtree, TargetWritePolicy};

/// What a list of endpoints names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum EndpointKind {
    /// The replicas of a cell (an unpartitioned deployment).
    #[default]
    Cell,
    /// Proxies (`warren proxy`): the session keeps to the first in its own order.
    Proxies,
    /// The meta cell of a partitioned deployment: the agent routes to the data cells itself.
    Meta,
}

/// `--on-target-write`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OnTargetWrite {
    /// Restore the source's version, and count it.
    #[default]
    Overwrite,
    /// Keep it, and count, log and show it (metric, /status).
    Report,
}

#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// The source deployment's endpoints (see --from-kind).
    #[arg(
        long,
        required = true,
        env = "WARREN_MIRROR_FROM",
        value_delimiter = ',',
        value_name = "HOST:PORT[,HOST:PORT…]"
    )]
    from: Vec<String>,
    /// What --from names: a cell's replicas, proxies, or a partitioned deployment's meta cell.
    #[arg(long, value_enum, default_value_t, env = "WARREN_MIRROR_FROM_KIND")]
    from_kind: EndpointKind,
    /// The target deployment's endpoints (see --to-kind).
    #[arg(
        long,
        required = true,
        env = "WARREN_MIRROR_TO",
        value_delimiter = ',',
        value_name = "HOST:PORT[,HOST:PORT…]"
    )]
    to: Vec<String>,
    /// What --to names.
    #[arg(long, value_enum, default_value_t, env = "WARREN_MIRROR_TO_KIND")]
    to_kind: EndpointKind,
    /// The directory to mirror: /ls/<deployment>/DIR[/…] or the short form /DIR[/…].
    #[arg(
        long,
        required = true,
        env = "WARREN_MIRROR_SUBTREE",
        value_name = "PATH"
    )]
    subtree: String,
    /// Where it goes in the target (default: the same path in the target's deployment).
    #[arg(long, env = "WARREN_MIRROR_TO_SUBTREE", value_name = "PATH")]
    to_subtree: Option<String>,
    /// A write made directly in the mirror: `overwrite` (restore the source's version) or
    /// `report` (keep it; counted, logged, shown on /status).
    #[arg(
        long,
        value_enum,
        default_value_t,
        env = "WARREN_MIRROR_ON_TARGET_WRITE"
    )]
    on_target_write: OnTargetWrite,
    /// How often to walk and compare both trees by checksum even when events say nothing
    /// changed (e.g. `60s`).
    #[arg(long, default_value = "60s", env = "WARREN_MIRROR_SWEEP_INTERVAL", value_parser = parse_duration_or_seconds, value_name = "DURATION")]
    sweep_interval: Duration,
    /// Over this lag, /status says `behind` and /readyz fails (e.g. `5s`).
    #[arg(long, default_value = "5s", env = "WARREN_MIRROR_MAX_LAG", value_parser = parse_duration_or_seconds, value_name = "DURATION")]
    max_lag: Duration,
    /// The admin HTTP address (/metrics, /healthz, /readyz, /status); port 0 picks one.
    #[arg(
        long,
        default_value = "127.0.0.1:7290",
        env = "WARREN_MIRROR_ADMIN",
        value_name = "HOST:PORT"
    )]
    admin: String,
    /// The principal both sessions act for (ACL files in both deployments must let it
    /// read the source subtree and write the target's); with TLS, the certificate's.
    #[arg(long, env = "WARREN_PRINCIPAL", default_value = "")]
    principal: String,
    /// The sessions' grace period (how long to look for a master before a session is lost
    /// and the agent connects again).
    #[arg(long, env = "WARREN_GRACE", value_parser = parse_duration_or_seconds, value_name = "DURATION")]
    grace: Option<Duration>,
    /// Mutual TLS: --cacert, --cert, --key (docs/security.md), used towards both deployments.
    #[command(flatten)]
    tls: crate::tls_cmd::ClientTlsArgs,
}

/// Exit status for bad arguments and settings that cannot work.
const EXIT_USAGE: u8 = 2;

fn options(
    endpoints: &[String],
    kind: EndpointKind,
    principal: &str,
    grace: Option<Duration>,
) -> ClientOptions {
    let endpoints = crate::ctl::addresses(endpoints);
    let options = match kind {
        EndpointKind::Cell => ClientOptions::new(endpoints),
        EndpointKind::Proxies => ClientOptions::proxies(endpoints),
        EndpointKind::Meta => ClientOptions::meta(endpoints),
    }
    .principal(principal);
    match grace {
        Some(g) => options.grace_period(g),
        None => options,
    }
}

/// Checks the arguments; the settings of the agent, or what is wrong and the fix.
fn check(a: &MirrorArgs) -> Result<(warren_mirror::Config, Describe), String> {
    let subtree = Subtree::parse("--subtree", &a.subtree)?;
    let to_subtree = match &a.to_subtree {
        Some(p) => Subtree::parse("--to-subtree", p)?,
        // The same directory in the target's deployment.
        None => Subtree {
            deployment: None,
            relative: subtree.relative.clone(),
        },
    };
    let (from, to) = (crate::ctl::addresses(&a.from), crate::ctl::addresses(&a.to));
    if from.is_empty() || to.is_empty() {
        return Err("give --from and --to each at least one HOST:PORT".into());
    }
    for e in from.iter().chain(&to) {
        if !e.contains(':') {
            return Err(format!(
                "endpoint {e:?} has no port: give HOST:PORT (e.g. 127.0.0.1:7100)"
            ));
        }
    }
    // A short --subtree with the same endpoints on both sides is the same deployment.
    let subtree_there = Subtree {
        deployment: subtree.deployment.clone(),
        relative: subtree.relative.clone(),
    };
    warren_mirror::subtree::check_no_loop(&from, &to, &subtree_there, &to_subtree)?;
    let policy = match a.on_target_write {
        OnTargetWrite::Overwrite => TargetWritePolicy::Overwrite,
        OnTargetWrite::Report => TargetWritePolicy::Report,
    };
    if a.sweep_interval < Duration::from_secs(1) {
        return Err(format!(
            "--sweep-interval {:?} is too short: give at least 1s (a sweep walks both trees)",
            a.sweep_interval
        ));
    }
    let describe = Describe {
        from: from.clone(),
        to: to.clone(),
        subtree: a.subtree.clone(),
        to_subtree: a.to_subtree.clone().unwrap_or_else(|| a.subtree.clone()),
        on_target_write: policy.as_str(),
    };
    let config = warren_mirror::Config {
        from: options(&from, a.from_kind, &a.principal, a.grace),
        to: options(&to, a.to_kind, &a.principal, a.grace),
        subtree,
        to_subtree,
        policy,
        sweep_interval: a.sweep_interval,
    };
    Ok((config, describe))
}

/// Runs the agent until Ctrl-C / SIGTERM (exit 0) or a setting that cannot work (exit 2).
pub async fn run(a: MirrorArgs) -> ExitCode {
    let usage = |e: &str| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_USAGE)
    };
    if let Err(e) = a.tls.install() {
        return usage(&e);
    }
    let (config, describe) = match check(&a) {
        Ok(x) => x,
        Err(e) => return usage(&e),
    };
    let listener = match tokio::net::TcpListener::bind(&a.admin).await {
        Ok(l) => l,
        Err(e) => {
            return usage(&format!(
                "cannot listen on --admin {}: {e}; give a free HOST:PORT (port 0 picks one)",
                a.admin
            ))
        }
    };
    let admin = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let shared = Arc::new(Shared::new(describe, a.max_lag, a.sweep_interval));
    tokio::spawn(warren_mirror::serve_admin(listener, shared.clone()));
    println!("admin: {admin}");
    println!("ready");
    tracing::info!(%admin, subtree = %a.subtree, "warren mirror: started");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(warren_mirror::run(config, shared, stopped));
    tokio::pin!(agent);
    let result = tokio::select! {
        r = &mut agent => r,
        _ = crate::server_cmd::shutdown_signal() => {
            tracing::info!("warren mirror: stopping (closing both sessions)");
            let _ = stop.send(true);
            match tokio::time::timeout(std::time::Duration::from_secs(10), &mut agent).await {
                Ok(r) => r,
                Err(_) => Ok(Ok(())),
            }
        }
    };
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => usage(&e.to_string()),
        Err(e) => {
            eprintln!("error: the mirror agent failed: {e}");
            ExitCode::from(1)
        }
    }
}
