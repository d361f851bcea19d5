//! The Warren cell server: the master logic ([`core`], sans-IO), the [`store`] it persists
//! to, the gRPC [`server`] that runs it, and the [`admin`] HTTP endpoint.
//!
//! `warren cell` and `warren dev` call [`server::run`]; tests bind `127.0.0.1:0` and call
//! the same function (through `warren-testkit`).
//!
//! Feature `fault-injection` (off by default; the root package's tests turn it on) builds in
//! the `WARREN_FAULT` crash hook of the partitioning process tests.

pub mod admin;
pub mod core;
pub(crate) mod depose;
mod edge;
mod peers;
pub mod replica;
pub mod server;
pub mod store;

pub use server::{run, CellHandle, CellOptions};
