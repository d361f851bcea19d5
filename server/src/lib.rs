//! What Warren's two server tiers, cells and proxies, share, and what an application that
//! links only `warren-client` never compiles. Modules are added here as pieces move out of
//! `proto` (which stays the wire protocol) and out of the cell and proxy crates.

pub mod lease;
