//! Warren's mirroring agent (docs/mirror.md): `warren mirror` keeps a subtree of one
//! deployment in step in another, as Chubby mirrors configuration to cells around the
//! world. It is an ordinary client of both deployments (the client library and its events;
//! it never touches a store) and runs as its own process.
//!
//! - [`plan`] (sans-IO): the two views of a region (path → kind, checksum, ACL names) and the
//!   agent's memory in, the ordered actions and the divergences out.
//! - [`subtree`] (pure): the `--subtree` / `--to-subtree` checks and the loop check.
//! - [`status`]: lag, counters, last success and last error, as metrics and `/status`.
//! - [`agent`]: the async driver — sessions, watch handles, the change queue, full sweeps,
//!   retries with backoff forever.
#![forbid(unsafe_code)]

pub mod agent;
pub mod plan;
pub mod status;
pub mod subtree;

pub use agent::{run, Config, Fatal};
pub use plan::TargetWritePolicy;
pub use status::{Describe, Shared, StatusView};
pub use subtree::Subtree;

/// Serves the admin endpoint (`/metrics`, `/healthz`, `/readyz`, `/status`) of the agent
/// whose state is `shared`, on `listener`, until the task is aborted.
pub async fn serve_admin(listener: tokio::net::TcpListener, shared: std::sync::Arc<Shared>) {
    warren_server::admin::serve(listener, shared).await
}
