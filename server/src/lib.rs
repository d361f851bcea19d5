//! What Warren's two server tiers, cells and proxies, share, and what an application that
//! links only `warren-client` never compiles: [`grpc`] (the one gRPC server setup, with
//! framing errors rewritten into the error table), [`metrics`] (the process-wide Prometheus
//! recorder and the RPC counters both tiers record), [`admin`] (the admin HTTP pages),
//! [`status_page`] and [`status_probe`] (the HTML status page and gathering its
//! data), [`lease`] (the server side of sessions: the lease table the cell core and the proxy core
//! both build on) and [`auth`] (the identity TLS authenticated for a call). `proto` stays
//! the wire protocol a client needs and nothing more.

pub mod admin;
pub mod auth;
pub mod grpc;
pub mod lease;
pub mod metrics;
pub mod status_page;
pub mod status_probe;
