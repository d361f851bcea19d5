//! The order in which a session tries its proxies (docs/design.md §10, docs/proxy.md "Proxy failover").
//!
//! Every session orders the proxy list with a consistent-hash ring keyed by its session id
//! ([`proxy_order`]): the first proxy in the order is the session's preferred one, and the
//! rest are where it goes, in turn, when that one dies. The ring makes the order stable
//! for a session (every client computes the same order from the same list) and spreads the
//! sessions of a dead proxy over the others instead of piling them onto one neighbour.
//! Before a session exists the order is keyed by a value random per client
//! ([`client_key`]), which spreads fresh clients over the proxies.

use consistent_hash_ring::{Ring, RingBuilder};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Virtual nodes per proxy on the ring. With the crate's default (10) the share of a dead
/// proxy's sessions that each survivor inherits varies from a few percent to well over half;
/// with 256 it stays within about ±30% of an even split. Building the ring costs
/// O((proxies × vnodes)²) element moves: about 0.1 ms for 4 proxies, 20 ms for 64 (once
/// per session).
const VNODES: usize = 256;

/// `proxies` in the order a session with id `session` should try them: a permutation of
/// the list (duplicates dropped, first occurrence kept), the session's preferred proxy
/// first. The order is `consistent_hash_ring`'s `replicas(session)` over the list, so:
///
/// - it depends only on the set of proxies and the key, not on the order of the list, and
///   is the same in every process (the ring's hasher is FNV, unseeded);
/// - removing a proxy from the list leaves the first choice of every session that did not
///   prefer it unchanged, and spreads the sessions that did over the others.
///
/// ```
/// use warren_client::proxy_order;
/// let proxies = vec!["p1:7000".to_string(), "p2:7000".to_string(), "p3:7000".to_string()];
/// let order = proxy_order(&proxies, b"0123456789abcdef");
/// assert_eq!(order.len(), 3);
/// assert_eq!(order, proxy_order(&proxies, b"0123456789abcdef"));
/// ```
pub fn proxy_order(proxies: &[String], session: &[u8]) -> Vec<String> {
    ProxyRing::new(proxies).order(session)
}

/// The consistent-hash ring over a proxy list, built once: [`proxy_order`] for many
/// sessions over the same list (the load tester orders every simulated session's proxies
/// with it) without rebuilding the ring each time.
#[derive(Clone)]
pub struct ProxyRing {
    ring: Ring<String>,
}

impl ProxyRing {
    /// The ring over `proxies`.
    pub fn new(proxies: &[String]) -> ProxyRing {
        ProxyRing {
            ring: RingBuilder::default()
                .vnodes(VNODES)
                .nodes_iter(proxies.iter().cloned())
                .build(),
        }
    }

    /// The proxies in the order a session with id `session` tries them:
    /// [`proxy_order`]`(proxies, session)`.
    pub fn order(&self, session: &[u8]) -> Vec<String> {
        self.ring.replicas(session).cloned().collect()
    }
}

/// A key random per call (per client instance), to order the proxies before a session id
/// exists: `RandomState` is seeded from the OS once per thread and moves on per instance;
/// the time and process id are mixed in as well. In a deterministic simulation (feature
/// `sim`, a seed set), drawn from the simulation's seed instead.
pub(crate) fn client_key() -> [u8; 16] {
    #[cfg(feature = "sim")]
    if let Some(key) = crate::transport::sim::next_client_key() {
        return key;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut key = [0u8; 16];
    for (i, half) in key.chunks_mut(8).enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u32(std::process::id());
        h.write_usize(i);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::splitmix64;
    use std::collections::{HashMap, HashSet};

    fn named(n: usize) -> Vec<String> {
        (1..=n)
            .map(|i| format!("proxy-{i}.example.com:7000"))
            .collect()
    }

    fn local(n: usize) -> Vec<String> {
        (1..=n)
            .map(|i| format!("127.0.0.1:{}", 40_000 + 7 * i))
            .collect()
    }

    /// `n` pseudo-random 16-byte session ids (deterministic, so failures reproduce).
    fn sessions(n: u64) -> Vec<[u8; 16]> {
        (0..n)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&splitmix64(2 * i).to_le_bytes());
                id[8..].copy_from_slice(&splitmix64(2 * i + 1).to_le_bytes());
                id
            })
            .collect()
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn the_order_is_a_stable_permutation_of_the_list() {
        let list = named(5);
        let mut reversed = list.clone();
        reversed.reverse();
        let (forward, backward) = (ProxyRing::new(&list), ProxyRing::new(&reversed));
        for id in sessions(200) {
            let order = forward.order(&id);
            assert_eq!(sorted(order.clone()), sorted(list.clone()), "a permutation");
            assert_eq!(order, proxy_order(&list, &id), "stable");
            assert_eq!(order, backward.order(&id), "independent of list order");
        }
        // Not the same order for everyone.
        let firsts: HashSet<String> = sessions(200)
            .iter()
            .map(|id| forward.order(id).remove(0))
            .collect();
        assert_eq!(firsts.len(), 5);
    }

    #[test]
    fn duplicates_and_small_lists() {
        let a = "a:1".to_string();
        let b = "b:1".to_string();
        assert_eq!(proxy_order(&[], b"x"), Vec::<String>::new());
        assert_eq!(proxy_order(std::slice::from_ref(&a), b"x"), vec![a.clone()]);
        let order = proxy_order(&[a.clone(), b.clone(), a.clone()], b"x");
        assert_eq!(sorted(order), vec![a, b]);
    }

    #[test]
    fn sessions_spread_over_the_proxies() {
        let list = named(4);
        let r = ProxyRing::new(&list);
        let mut first: HashMap<String, usize> = HashMap::new();
        for id in sessions(10_000) {
            *first.entry(r.order(&id).remove(0)).or_default() += 1;
        }
        assert_eq!(first.len(), 4, "{first:?}");
        for (proxy, n) in &first {
            // A quarter each, give or take.
            assert!(
                (1_500..=3_500).contains(n),
                "{proxy} preferred by {n}: {first:?}"
            );
        }
    }

    /// With 4 proxies and 10,000 sessions, for each proxy in turn: once it is dropped from
    /// the list, the sessions that preferred it spread over the other three (each gets
    /// 20–47% of them), and every other session keeps its first choice. A client that
    /// still lists the dead proxy moves to the next proxy in its order: spread the same
    /// way.
    #[test]
    fn a_dead_proxys_sessions_spread_over_the_others() {
        for list in [named(4), local(4)] {
            let full = ProxyRing::new(&list);
            let ids = sessions(10_000);
            for dead in &list {
                let remaining: Vec<String> = list.iter().filter(|p| *p != dead).cloned().collect();
                let without = ProxyRing::new(&remaining);
                let mut moved: HashMap<String, usize> = HashMap::new();
                let mut next_in_order: HashMap<String, usize> = HashMap::new();
                let mut orphans = 0usize;
                for id in &ids {
                    let before = full.order(id);
                    let after = without.order(id);
                    if &before[0] == dead {
                        orphans += 1;
                        *moved.entry(after[0].clone()).or_default() += 1;
                        *next_in_order.entry(before[1].clone()).or_default() += 1;
                    } else {
                        assert_eq!(after[0], before[0], "a live proxy's session stays");
                    }
                }
                assert!(orphans > 1_000, "{dead} preferred by only {orphans}");
                for spread in [&moved, &next_in_order] {
                    assert_eq!(spread.len(), 3, "{dead}: {spread:?}");
                    for (proxy, n) in spread {
                        let share = *n as f64 / orphans as f64;
                        assert!(
                            (0.20..=0.47).contains(&share),
                            "{dead}'s sessions: {proxy} got {share:.2} of {orphans}: {spread:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn client_keys_differ() {
        let keys: HashSet<[u8; 16]> = (0..100).map(|_| client_key()).collect();
        assert_eq!(keys.len(), 100);
    }
}
