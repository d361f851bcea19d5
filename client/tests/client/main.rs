//! The client library's integration tests, in one test binary (one link instead of three):
//! `cargo test -p warren-client --test client [session::|failover::|proxies::]`.

mod failover;
mod proxies;
mod session;
