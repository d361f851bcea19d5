//! Loopback ports for a child process to bind, chosen so that they do not race.
//!
//! Binding port 0, reading the port and closing the socket (the usual trick) leaves a window
//! in which the kernel may hand the same port to anyone else: to another `bind(0)`, or as the
//! source port of an outgoing connection, since both draw on the ephemeral range
//! (`net.ipv4.ip_local_port_range`, 32768–60999 by default). A test that then started a
//! `warren` with `--listen` on that port failed with "Address already in use" (seen in CI).
//!
//! [`free_port`] therefore chooses below the ephemeral range, where the kernel never picks a
//! port by itself. Each test process walks its own stretch of that range (from an offset
//! derived from its pid, since nextest runs every test in its own process) and never returns
//! the same port twice; a port is returned only if it could be bound a moment ago, which
//! skips ports held by anything else on the machine.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// The range walked: below the kernel's default ephemeral range, above the well-known ports
/// and the usual fixed ones (etcd's 2379/2380, the proxy defaults in the 7000s).
const LOW: u32 = 10_000;
const HIGH: u32 = 32_000;

/// A loopback port that was free a moment ago, outside the kernel's ephemeral range, and
/// not returned before by this process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = HIGH - LOW;
    // Each process starts at its own place: pids spread by a large odd stride, so two test
    // processes started one after the other begin ~7,919 ports apart.
    let start = (std::process::id().wrapping_mul(7_919)) % span;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + n % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // Every port of the range is taken: fall back to the kernel's choice.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "a port was returned twice");
        for p in &ports {
            assert!(
                (LOW as u16..HIGH as u16).contains(p),
                "{p} outside the range"
            );
        }
        // A returned port is bindable right away.
        let p = free_port();
        TcpListener::bind(("127.0.0.1", p)).expect("bind the returned port");
    }
}
