//! The client-visible suite: every call's semantics as an application sees them through the
//! `warren-client` library, against a real cell server on loopback (embedded store in a
//! temporary directory). Lease-dependent tests use short configured leases; the paused-time
//! versions of the same properties are the cell's core tests.
//!
//! Later issues run this same suite through a proxy and against a partitioned deployment;
//! tests therefore reach the deployment only through [`fixture`].

mod bad_input;
mod caching;
mod fixture;
mod locks;
mod namespace;
