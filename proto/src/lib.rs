//! Warren's wire protocol: the generated `warren.v1` types and service stubs, the codec
//! that turns undecodable requests into `INVALID_ARGUMENT`, and the one error table
//! ([`error`]) every tier uses, and the process-wide Prometheus recorder ([`metrics`]) the
//! cells' and proxies' admin endpoints render.
//!
//! Domain crates convert to and from these types at their edges; the types themselves
//! carry no behaviour beyond what prost and tonic generate.

pub mod admin;
pub mod codec;
pub mod error;
pub mod framing;
pub mod metrics;
pub mod request;

/// Generated code for package `warren.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("warren.v1");
}

pub use error::{ErrorCode, WarrenError};

/// Length in bytes of session ids and session secrets.
pub const SESSION_ID_LEN: usize = 16;
