//! Warren's wire protocol: the generated `warren.v1` types and service stubs, the codec
//! that turns undecodable requests into `INVALID_ARGUMENT`, the one error table
//! ([`error`]) every tier uses, and the protocol's limits ([`MAX_MESSAGE_BYTES`],
//! [`SESSION_ID_LEN`]). What only servers need (the gRPC server setup, the admin pages, the
//! Prometheus recorder) lives in `warren-server`, so a client does not compile it.
//!
//! Domain crates convert to and from these types at their edges; the types themselves
//! carry no behaviour beyond what prost and tonic generate.

pub mod codec;
pub mod error;
pub mod request;

/// Generated code for package `warren.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("warren.v1");
}

/// The encoded `FileDescriptorSet` of `warren.v1` (both `.proto` files and their imports),
/// which server reflection serves so `grpcurl` needs no `.proto` files (docs/operations.md).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/warren_descriptor.bin"));

pub use error::{Effect, ErrorCode, WarrenError};

/// Length in bytes of session ids and session secrets.
pub const SESSION_ID_LEN: usize = 16;

/// Largest request accepted, in bytes: a 256 KiB file and a 4 KiB path fit many times over.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
