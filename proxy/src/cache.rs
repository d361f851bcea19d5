//! The proxy's one shared cache (docs/design.md §10): what its clients read, by path, filled from the
//! cells' cacheable answers and emptied by the cells' invalidations.
//!
//! A fill races with invalidations: a read answered by the cell *before* an invalidation
//! may reach the proxy *after* it. Every fetch therefore takes a [`Ticket`] (the
//! invalidation counter) before it is sent, and its answer is only cached — and only
//! passed to the client as cacheable — if the path has not been invalidated since.

use std::collections::HashMap;
use warren_proto::pb;

/// Taken before a fetch; says whether the answer may still be cached when it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// What is cached for one path. Each part is filled independently (a `GetStat` answer
/// does not make the contents known).
#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub contents: Option<(Vec<u8>, pb::Stat)>,
    pub stat: Option<pb::Stat>,
    pub dir: Option<(Vec<pb::DirEntry>, pb::Stat)>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.contents.as_ref().map_or(0, |(c, _)| c.len())
            + self
                .dir
                .as_ref()
                .map_or(0, |(d, _)| d.iter().map(|e| e.name.len() + 64).sum())
    }
}

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
    pub invalidations: u64,
}

/// Path → [`Entry`], with the tickets that keep late fills out.
#[derive(Debug, Default)]
pub struct SharedCache {
    entries: HashMap<String, Entry>,
    /// Incremented by every invalidation; a ticket is its value when the fetch began.
    counter: u64,
    /// Path → value of `counter` right after the path was last invalidated.
    invalidated_at: HashMap<String, u64>,
    /// Every path counts as invalidated at this value (a whole-cache flush).
    flushed_at: u64,
    bytes: usize,
    pub counters: CacheCounters,
}

impl SharedCache {
    pub fn ticket(&self) -> Ticket {
        Ticket(self.counter)
    }

    /// Whether an answer fetched under `ticket` may be cached for `path`.
    pub fn still_valid(&self, path: &str, ticket: Ticket) -> bool {
        ticket.0 >= self.flushed_at
            && self
                .invalidated_at
                .get(path)
                .is_none_or(|at| ticket.0 >= *at)
    }

    pub fn get(&mut self, path: &str) -> Option<&Entry> {
        let e = self.entries.get(path);
        if e.is_some() {
            self.counters.hits += 1;
        } else {
            self.counters.misses += 1;
        }
        e
    }

    /// Whether anything is cached for `path` (not counted as a hit or a miss).
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    /// The entry for `path`, not counted: a caller that serves from it counts the hit
    /// ([`SharedCache::note_hit`]).
    pub fn peek(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn note_hit(&mut self) {
        self.counters.hits += 1;
    }

    pub fn note_miss(&mut self) {
        self.counters.misses += 1;
    }

    /// Fills `path` with `f` if `ticket` is still valid; returns whether it did.
    pub fn fill(&mut self, path: &str, ticket: Ticket, f: impl FnOnce(&mut Entry)) -> bool {
        if !self.still_valid(path, ticket) {
            return false;
        }
        let e = self.entries.entry(path.to_string()).or_default();
        let before = e.bytes();
        f(e);
        self.bytes = self.bytes - before + e.bytes();
        true
    }

    /// Drops `path`; fetches begun before now will not be cached.
    pub fn invalidate(&mut self, path: &str) {
        self.counter += 1;
        self.counters.invalidations += 1;
        if let Some(e) = self.entries.remove(path) {
            self.bytes -= e.bytes();
        }
        self.invalidated_at.insert(path.to_string(), self.counter);
        // Markers older than every ticket still in flight are useless; ticket values only
        // grow, so prune when the map gets big (a flush marker covers them).
        if self.invalidated_at.len() > 100_000 {
            self.flush();
        }
    }

    /// Drops everything that `keep` rejects (a cell failed over: invalidations may have
    /// been lost). Fetches begun before now will not be cached.
    pub fn flush_where(&mut self, mut drop: impl FnMut(&str) -> bool) {
        self.counter += 1;
        let paths: Vec<String> = self.entries.keys().filter(|p| drop(p)).cloned().collect();
        for p in paths {
            if let Some(e) = self.entries.remove(&p) {
                self.bytes -= e.bytes();
            }
            self.invalidated_at.insert(p, self.counter);
        }
        // Paths not cached right now may have fetches in flight: block those too.
        self.flushed_at = self.counter;
    }

    /// Drops everything.
    pub fn flush(&mut self) {
        self.counter += 1;
        self.entries.clear();
        self.invalidated_at.clear();
        self.bytes = 0;
        self.flushed_at = self.counter;
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_that_raced_an_invalidation_is_refused() {
        let mut c = SharedCache::default();
        let t = c.ticket();
        c.invalidate("/ls/d/a");
        assert!(!c.fill("/ls/d/a", t, |e| e.stat = Some(pb::Stat::default())));
        assert!(c.get("/ls/d/a").is_none());
        // Another path is unaffected; a new ticket works.
        assert!(c.fill("/ls/d/b", t, |e| e.stat = Some(pb::Stat::default())));
        let t2 = c.ticket();
        assert!(c.fill("/ls/d/a", t2, |e| e.stat = Some(pb::Stat::default())));
        assert!(c.get("/ls/d/a").is_some());
        assert_eq!(c.counters.hits, 1);
        assert_eq!(c.counters.misses, 1);
    }

    #[test]
    fn a_flush_refuses_every_earlier_ticket() {
        let mut c = SharedCache::default();
        let t = c.ticket();
        c.fill("/ls/d/a", t, |e| {
            e.contents = Some((b"xyz".to_vec(), pb::Stat::default()))
        });
        assert_eq!(c.bytes(), 3);
        c.flush_where(|p| p.starts_with("/ls/d/"));
        assert_eq!(c.len(), 0);
        assert_eq!(c.bytes(), 0);
        assert!(!c.fill("/ls/d/zzz", t, |e| e.stat = Some(pb::Stat::default())));
        assert!(c.fill("/ls/d/zzz", c.ticket(), |e| e.stat =
            Some(pb::Stat::default())));
    }
}
