//! The client-visible suite: every call's semantics as an application sees them through the
//! `warren-client` library, against a real cell server on loopback (embedded store in a
//! temporary directory). Lease-dependent tests use short configured leases; the paused-time
//! versions of the same properties are the cell's core tests.
//!
//! Every test runs twice: straight to the cell (`direct::…`) and through a proxy in front
//! of it (`via_proxy::…`), with the same assertions (SPEC §6: the proxy changes nothing a
//! client can observe). Tests reach the deployment only through [`fixture`]. `proxies`
//! holds the proxy-only properties (cache coherence across two proxies).

// The same test files are compiled once per mode, on purpose.
#![allow(clippy::duplicate_mod)]

mod fixture;
mod proxies;

/// Straight to a cell.
#[path = "."]
mod direct {
    mod fixture {
        pub use crate::fixture::*;
        pub type Target = TargetIn<false>;
    }
    mod bad_input;
    mod caching;
    mod locks;
    mod namespace;
}

/// The same tests through a proxy in front of the cell.
#[path = "."]
mod via_proxy {
    mod fixture {
        pub use crate::fixture::*;
        pub type Target = TargetIn<true>;
    }
    mod bad_input;
    mod caching;
    mod locks;
    mod namespace;
}
