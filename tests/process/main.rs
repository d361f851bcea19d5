//! Tests of the real `warren` binary as users run it: a cell killed with SIGKILL keeps
//! every acknowledged write; `warren ctl` end to end; configuration errors; `warren dev`
//! (meta cell, data cells, proxies) with its admin endpoints, Ctrl-C and resume; `warren dev
//! --add-cell` and `warren ctl reshard`; mutual TLS with real certificates; gRPC health
//! and reflection, the HTML status page in headless Chromium, and the files in `deploy/`;
//! the wire contract from another language (a Python grpcio client).

mod authz;
mod backup;
mod ctl;
mod deploy;
mod dev;
mod durability;
mod election;
mod failover;
mod lang;
mod loadtest;
mod metrics;
mod mirror;
mod operate;
mod partition;
mod proxies;
mod reshard;
mod reshard_faults;
mod sessions;
mod status;
mod tls;

use std::path::Path;
use std::process::Output;
use std::time::Duration;
use warren_client::{Event, EventStream};

/// Waits for an event matching `want`; returns everything seen up to it.
pub async fn expect_event(
    name: &str,
    events: &mut EventStream,
    within: Duration,
    want: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => {
                let hit = want(&e);
                seen.push(e);
                if hit {
                    return seen;
                }
            }
            _ => panic!("{name}: no matching event within {within:?}; saw {seen:?}"),
        }
    }
}

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_warren"))
}

/// Runs `warren ARGS…` to completion.
pub async fn warren(args: &[&str]) -> Output {
    warren_env(args, &[]).await
}

pub async fn warren_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(args).env_remove("WARREN_ENDPOINT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("warren {args:?} did not finish in 60 s"))
        .expect("run warren")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A loopback port for a child to bind (outside the ephemeral range; see `testkit::ports`).
pub use warren_testkit::free_port;

/// A plain HTTP/1.1 GET (the load tester's, 10 s at most), returning (status, body).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let r = warren_loadtest::http::get(addr, path, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
    (r.status, r.body)
}
