//! The client-visible suite: every call's semantics as an application sees them through the
//! `warren-client` library, against a real cell server on loopback (embedded store in a
//! temporary directory). Lease-dependent tests use short configured leases; the paused-time
//! versions of the same properties are the cell's core tests.
//!
//! Every test runs four times with the same assertions: straight to one cell (`direct::…`),
//! through a proxy in front of it (`via_proxy::…`; docs/design.md §10: the proxy changes nothing a
//! client can observe), and against a partitioned deployment of three data cells through a
//! proxy routing by the map (`cells3_via_proxy::…`; docs/design.md §11), and against that deployment
//! with the client library routing by the map itself (`cells3_direct::…`). Tests reach the deployment only through [`fixture`]. `proxies`
//! holds the proxy-only properties (cache coherence across two proxies).

// The same test files are compiled once per mode, on purpose.
#![allow(clippy::duplicate_mod)]

mod fixture;
mod moved_handles;
mod partitioning;
mod proxies;

/// Straight to a cell.
#[path = "."]
mod direct {
    mod fixture {
        pub use crate::fixture::*;
        pub type Target = TargetIn<{ mode::DIRECT }>;
    }
    mod bad_input;
    mod caching;
    mod locks;
    mod namespace;
}

/// The same tests against a partitioned deployment (meta cell + three data cells), the
/// client library routing by the map itself (direct mode).
#[path = "."]
mod cells3_direct {
    mod fixture {
        pub use crate::fixture::*;
        pub type Target = TargetIn<{ mode::CELLS3_DIRECT }>;
    }
    mod bad_input;
    mod caching;
    mod locks;
    mod namespace;
}

/// The same tests against a partitioned deployment (meta cell + three data cells) through
/// a proxy that routes by the partition map.
#[path = "."]
mod cells3_via_proxy {
    mod fixture {
        pub use crate::fixture::*;
        pub type Target = TargetIn<{ mode::CELLS3_PROXY }>;
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
        pub type Target = TargetIn<{ mode::PROXY }>;
    }
    mod bad_input;
    mod caching;
    mod locks;
    mod namespace;
}
