//! The Warren cell server: the master logic ([`core`], sans-IO), the [`store`] it persists
//! to, the gRPC [`server`] that runs it, and the [`admin`] HTTP endpoint.
//!
//! `warren cell` and `warren dev` call [`server::run`]; tests bind `127.0.0.1:0` and call
//! the same function (through `warren-testkit`).
//!
//! Feature `fault-injection` (off by default; the root package's tests turn it on) builds in
//! the `WARREN_FAULT` crash hook of the partitioning process tests. Feature `sim` (only
//! warren-sim turns it on) adds [`run_incoming`], a cell served on the deterministic
//! simulation's network, [`sim_replica`], a replica with standbys there over
//! [`store::fenced`], and [`planted`], the bug that simulation's checker test plants
//! (docs/reliability.md, "Deterministic simulation").

pub mod admin;
pub mod core;
pub(crate) mod depose;
pub mod edge;
mod peers;
#[cfg(feature = "sim")]
pub mod planted;
pub mod replica;
pub mod server;
#[cfg(feature = "sim")]
pub mod sim_replica;
pub mod store;

#[cfg(feature = "sim")]
pub use server::run_incoming;
pub use server::{run, CellHandle, CellOptions};
