//! The client library's integration tests, in one test binary (one link instead of four):
//! `cargo test -p warren-client --test client [session::|failover::|lease::|proxies::]`.

mod failover;
mod lease;
mod proxies;
mod session;
