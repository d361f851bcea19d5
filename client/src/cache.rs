//! The session's client-side cache (docs/design.md §7, Chubby's): file contents and metadata,
//! directory listings (names), absence (an `Open` without create that got `NOT_FOUND`), and
//! open server handles that a later identical `Open` may share. Pure data, no I/O.
//!
//! **Consistency.** The master records which sessions may cache a node and, before it
//! modifies the node, sends each an invalidation and waits for the acknowledgement. The
//! library drops the node here *before* the KeepAlive that acknowledges it, so a cached
//! value is never older than a write acknowledged to anyone. Three more rules close the
//! gaps around that protocol:
//!
//! - **Fills race invalidations.** A read's reply and the invalidation that makes it stale
//!   travel on different streams; if the invalidation wins, the reply must not be cached.
//!   Every read takes a [`Ticket`] before it is sent, and a fill is refused if the node was
//!   dropped (or everything flushed) since.
//! - **Writes drop, not update.** The master stops counting the writer as a cacher of what
//!   it wrote (it sends the writer no invalidation), so keeping the written value would let
//!   it go stale later: a session's own write drops its entry.
//! - **Lease.** Reads are served only while the local lease runs (the session layer checks
//!   that); in jeopardy the cache is emptied and disabled.
//!
//! A cached stat's `lock_generation` may lag: lock changes are not invalidations (as in
//! Chubby). Ask the master (`get_sequencer`, `check_sequencer`) about locks.

use crate::types::{CacheStats, Stat};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// How many recent drops are remembered to judge racing fills. A fill older than the
/// window is refused, so this only trades memory for hit rate under heavy invalidation.
const RECENT_DROPS: usize = 256;

/// Taken before a read is sent; the reply may fill the cache only if nothing it covers was
/// dropped since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// What identifies an `Open` that may share a server handle: the same node, the same
/// intent, the same events, the same lock-delay.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct OpenKey {
    /// The node's full path.
    pub path: String,
    /// Intent bits (only read-only intents are shared).
    pub intent: u32,
    /// Event mask bits.
    pub events: u32,
    /// Lock-delay in milliseconds.
    pub lock_delay_ms: u64,
}

/// A handle the master gave out, used by one or more application [`Handle`](crate::Handle)s.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    /// The opaque token the master minted.
    pub token: Vec<u8>,
    /// The node's instance when it was opened.
    pub instance: u64,
    /// Application handles using it. The last one to close sends `Close`.
    users: AtomicUsize,
    /// A sequencer was set on it: the master checks it on every call, so reads through it
    /// must go to the master, and it must not be shared.
    sequenced: AtomicBool,
}

impl ServerHandle {
    /// A server handle with one user.
    pub(crate) fn new(token: Vec<u8>, instance: u64) -> Arc<Self> {
        Arc::new(ServerHandle {
            token,
            instance,
            users: AtomicUsize::new(1),
            sequenced: AtomicBool::new(false),
        })
    }

    /// How many application handles use it.
    pub(crate) fn users(&self) -> usize {
        self.users.load(Ordering::SeqCst)
    }

    /// Whether a sequencer was set on it.
    pub(crate) fn is_sequenced(&self) -> bool {
        self.sequenced.load(Ordering::SeqCst)
    }

    /// Records that a sequencer was set on it.
    pub(crate) fn mark_sequenced(&self) {
        self.sequenced.store(true, Ordering::SeqCst);
    }
}

/// What is cached about a node that exists, as of one instance of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    instance: u64,
    stat: Option<Stat>,
    contents: Option<Vec<u8>>,
    children: Option<Vec<String>>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Cache {
    enabled: bool,
    nodes: HashMap<String, Node>,
    /// Paths an `Open` without create found missing.
    absent: HashSet<String>,
    handles: HashMap<OpenKey, Arc<ServerHandle>>,
    /// Bumped by every drop and flush.
    clock: u64,
    /// The last drops: (clock after the drop, path).
    recent: VecDeque<(u64, String)>,
    /// Drops up to this clock value have left `recent`: older tickets are refused.
    forgotten: u64,
    /// Clock value of the last flush: older tickets are refused.
    flushed: u64,
    stats: CacheStats,
}

impl Cache {
    /// An empty cache; `enabled: false` caches nothing, ever (an option of the session).
    pub(crate) fn new(enabled: bool) -> Self {
        Cache {
            enabled,
            nodes: HashMap::new(),
            absent: HashSet::new(),
            handles: HashMap::new(),
            clock: 0,
            recent: VecDeque::new(),
            forgotten: 0,
            flushed: 0,
            stats: CacheStats::default(),
        }
    }

    /// Counters and sizes now.
    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.nodes.len() + self.absent.len(),
            handles: self.handles.len(),
            ..self.stats
        }
    }

    /// A ticket for a read about to be sent.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.clock)
    }

    /// Whether a reply to a read sent with `ticket` may be cached for `path`.
    fn may_fill(&self, ticket: Ticket, path: &str) -> bool {
        self.enabled
            && ticket.0 >= self.flushed
            && ticket.0 >= self.forgotten
            && !self
                .recent
                .iter()
                .any(|(at, p)| *at > ticket.0 && p == path)
    }

    /// The entry for `path` at `instance`, replacing one for another instance.
    fn node_mut(&mut self, path: &str, instance: u64) -> &mut Node {
        self.absent.remove(path);
        let node = self.nodes.entry(path.to_string()).or_default();
        if node.instance != instance {
            *node = Node {
                instance,
                ..Node::default()
            };
        }
        node
    }

    fn node(&self, path: &str, instance: u64) -> Option<&Node> {
        self.nodes.get(path).filter(|n| n.instance == instance)
    }

    fn count(&mut self, hit: bool) {
        if hit {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
    }

    /// Contents and stat of the file at `path`, if cached for this `instance`.
    pub(crate) fn contents(&mut self, path: &str, instance: u64) -> Option<(Vec<u8>, Stat)> {
        let found = self
            .node(path, instance)
            .and_then(|n| Some((n.contents.clone()?, n.stat.clone()?)));
        self.count(found.is_some());
        found
    }

    /// The stat of the node at `path`, if cached for this `instance`.
    pub(crate) fn stat(&mut self, path: &str, instance: u64) -> Option<Stat> {
        let found = self.node(path, instance).and_then(|n| n.stat.clone());
        self.count(found.is_some());
        found
    }

    /// The children's names of the directory at `path`, if cached for this `instance`.
    pub(crate) fn children(&mut self, path: &str, instance: u64) -> Option<Vec<String>> {
        let found = self.node(path, instance).and_then(|n| n.children.clone());
        self.count(found.is_some());
        found
    }

    /// Whether `path` is known not to exist. Counts a hit only when it is (a miss is
    /// counted by whatever the `Open` then does).
    pub(crate) fn is_absent(&mut self, path: &str) -> bool {
        let absent = self.absent.contains(path);
        if absent {
            self.stats.hits += 1;
        }
        absent
    }

    /// Counts a read that had to go to the master without consulting the cache first.
    pub(crate) fn note_miss(&mut self) {
        self.stats.misses += 1;
    }

    /// Caches a stat read with `ticket`.
    pub(crate) fn fill_stat(&mut self, ticket: Ticket, path: &str, stat: &Stat) {
        if self.may_fill(ticket, path) {
            self.node_mut(path, stat.instance).stat = Some(stat.clone());
        }
    }

    /// Caches contents and stat read with `ticket`.
    pub(crate) fn fill_contents(&mut self, ticket: Ticket, path: &str, data: &[u8], stat: &Stat) {
        if self.may_fill(ticket, path) {
            let n = self.node_mut(path, stat.instance);
            n.contents = Some(data.to_vec());
            n.stat = Some(stat.clone());
        }
    }

    /// Caches a directory's children's names (and its stat) read with `ticket`.
    pub(crate) fn fill_children(
        &mut self,
        ticket: Ticket,
        path: &str,
        names: Vec<String>,
        stat: &Stat,
    ) {
        if self.may_fill(ticket, path) {
            let n = self.node_mut(path, stat.instance);
            n.children = Some(names);
            n.stat = Some(stat.clone());
        }
    }

    /// Caches the absence of `path`, learnt with `ticket`.
    pub(crate) fn fill_absent(&mut self, ticket: Ticket, path: &str) {
        if self.may_fill(ticket, path) {
            self.nodes.remove(path);
            self.absent.insert(path.to_string());
            self.handles.retain(|k, _| k.path != path);
        }
    }

    /// Drops what is cached about `path`, and refuses racing fills of it.
    fn drop_path(&mut self, path: &str) {
        self.nodes.remove(path);
        self.absent.remove(path);
        self.handles.retain(|k, _| k.path != path);
        self.clock += 1;
        self.recent.push_back((self.clock, path.to_string()));
        while self.recent.len() > RECENT_DROPS {
            if let Some((at, _)) = self.recent.pop_front() {
                self.forgotten = at;
            }
        }
    }

    /// The master's invalidation of `path`.
    pub(crate) fn invalidate(&mut self, path: &str) {
        self.stats.invalidations += 1;
        // The planted bug of the simulation's cache-checker test (docs/reliability.md,
        // "Deterministic simulation"): the invalidation acknowledged, the entry kept.
        #[cfg(feature = "sim")]
        if crate::planted::skip_invalidation() {
            return;
        }
        self.drop_path(path);
    }

    /// This session modified `path` (write-through: see the module docs).
    pub(crate) fn wrote(&mut self, path: &str) {
        self.drop_path(path);
    }

    /// Drops everything; racing fills are refused.
    pub(crate) fn flush(&mut self) {
        self.nodes.clear();
        self.absent.clear();
        self.handles.clear();
        self.recent.clear();
        self.clock += 1;
        self.flushed = self.clock;
        self.forgotten = self.clock;
        self.stats.flushes += 1;
    }

    /// Flushes and caches nothing until [`enable`](Self::enable).
    pub(crate) fn disable(&mut self) {
        self.flush();
        self.enabled = false;
    }

    /// Caches again (after jeopardy). A cache built disabled stays disabled.
    pub(crate) fn enable(&mut self, allowed: bool) {
        self.enabled = allowed;
    }

    /// A shared server handle for `key`, if one is open and its node is still cached at
    /// the same instance (so it was not invalidated since). Adds a user.
    pub(crate) fn share_handle(&mut self, key: &OpenKey) -> Option<(Arc<ServerHandle>, Stat)> {
        if !self.enabled {
            return None;
        }
        let h = self.handles.get(key)?.clone();
        let Some(stat) = self
            .node(&key.path, h.instance)
            .and_then(|n| n.stat.clone())
        else {
            self.handles.remove(key);
            return None;
        };
        h.users.fetch_add(1, Ordering::SeqCst);
        self.stats.hits += 1;
        Some((h, stat))
    }

    /// Offers a freshly opened server handle for sharing (when its `Open` was cacheable and
    /// sent with `ticket`).
    pub(crate) fn offer_handle(&mut self, ticket: Ticket, key: OpenKey, h: &Arc<ServerHandle>) {
        if self.may_fill(ticket, &key.path) && !h.is_sequenced() {
            self.handles.insert(key, h.clone());
        }
    }

    /// Stops sharing `h` (a sequencer is about to be set on it).
    pub(crate) fn withdraw_handle(&mut self, h: &Arc<ServerHandle>) {
        self.handles.retain(|_, v| !Arc::ptr_eq(v, h));
    }

    /// One user of `h` is done with it. True if it was the last: send `Close`.
    pub(crate) fn release_handle(&mut self, h: &Arc<ServerHandle>) -> bool {
        let last = h.users.fetch_sub(1, Ordering::SeqCst) <= 1;
        if last {
            self.withdraw_handle(h);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AclNames, NodeKind};

    fn stat(instance: u64, generation: u64) -> Stat {
        Stat {
            kind: NodeKind::File,
            instance,
            content_generation: generation,
            lock_generation: 0,
            acl_generation: 0,
            checksum: 0,
            acl: AclNames::default(),
            ephemeral: false,
            child_count: 0,
            length: 0,
            cell: String::new(),
        }
    }

    const P: &str = "/ls/l/f";

    #[test]
    fn fills_then_hits_for_the_same_instance_only() {
        let mut c = Cache::new(true);
        assert_eq!(c.contents(P, 1), None);
        let t = c.ticket();
        c.fill_contents(t, P, b"v1", &stat(1, 1));
        assert_eq!(c.contents(P, 1), Some((b"v1".to_vec(), stat(1, 1))));
        assert_eq!(c.stat(P, 1), Some(stat(1, 1)));
        // A handle on an older instance of the same name is not served from the cache.
        assert_eq!(c.contents(P, 0), None);
        let s = c.stats();
        assert_eq!((s.entries, s.hits, s.misses), (1, 2, 2));
    }

    #[test]
    fn invalidation_drops_and_counts() {
        let mut c = Cache::new(true);
        let t = c.ticket();
        c.fill_contents(t, P, b"v1", &stat(1, 1));
        c.fill_absent(t, "/ls/l/g");
        c.invalidate(P);
        assert_eq!(c.contents(P, 1), None);
        assert!(c.is_absent("/ls/l/g"));
        let s = c.stats();
        assert_eq!((s.entries, s.invalidations), (1, 1));
    }

    #[test]
    fn a_fill_that_lost_the_race_with_an_invalidation_is_refused() {
        let mut c = Cache::new(true);
        let before = c.ticket();
        // The invalidation arrives before the read's (stale) reply.
        c.invalidate(P);
        c.fill_contents(before, P, b"old", &stat(1, 1));
        assert_eq!(c.contents(P, 1), None);
        // Other paths are unaffected.
        c.fill_stat(before, "/ls/l/other", &stat(2, 0));
        assert_eq!(c.stat("/ls/l/other", 2), Some(stat(2, 0)));
        // A read sent after the invalidation fills.
        let after = c.ticket();
        c.fill_contents(after, P, b"new", &stat(1, 2));
        assert_eq!(c.contents(P, 1), Some((b"new".to_vec(), stat(1, 2))));
        // The session's own write drops, and refuses reads sent before it.
        let during = c.ticket();
        c.wrote(P);
        c.fill_contents(during, P, b"new", &stat(1, 2));
        assert_eq!(c.contents(P, 1), None);
        assert_eq!(c.stats().invalidations, 1);
    }

    #[test]
    fn fills_older_than_the_remembered_window_are_refused() {
        let mut c = Cache::new(true);
        let old = c.ticket();
        for i in 0..=RECENT_DROPS {
            c.invalidate(&format!("/ls/l/x{i}"));
        }
        c.fill_stat(old, P, &stat(1, 0));
        assert_eq!(c.stat(P, 1), None);
        let fresh = c.ticket();
        c.fill_stat(fresh, P, &stat(1, 0));
        assert_eq!(c.stat(P, 1), Some(stat(1, 0)));
    }

    #[test]
    fn flush_and_disable() {
        let mut c = Cache::new(true);
        let t = c.ticket();
        c.fill_stat(t, P, &stat(1, 0));
        c.fill_absent(t, "/ls/l/g");
        c.flush();
        assert_eq!(c.stats().entries, 0);
        c.fill_stat(t, P, &stat(1, 0));
        assert_eq!(
            c.stats().entries,
            0,
            "a fill from before the flush is refused"
        );
        c.disable();
        let t = c.ticket();
        c.fill_stat(t, P, &stat(1, 0));
        assert_eq!(c.stats().entries, 0, "disabled");
        c.enable(true);
        c.fill_stat(t, P, &stat(1, 0));
        assert_eq!(c.stats().entries, 1);
        assert_eq!(c.stats().flushes, 2);
        let mut off = Cache::new(false);
        off.enable(false);
        let t = off.ticket();
        off.fill_stat(t, P, &stat(1, 0));
        assert_eq!(off.stats().entries, 0);
    }

    #[test]
    fn directory_listings_and_absence() {
        let mut c = Cache::new(true);
        let t = c.ticket();
        c.fill_children(t, "/ls/l/d", vec!["a".into(), "b".into()], &stat(4, 0));
        assert_eq!(
            c.children("/ls/l/d", 4),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert!(!c.is_absent("/ls/l/d"));
        c.fill_absent(t, P);
        assert!(c.is_absent(P));
        c.invalidate(P);
        assert!(!c.is_absent(P));
    }

    #[test]
    fn shared_handles_are_refcounted() {
        let mut c = Cache::new(true);
        let key = OpenKey {
            path: P.into(),
            intent: 1,
            events: 0,
            lock_delay_ms: 0,
        };
        let t = c.ticket();
        c.fill_stat(t, P, &stat(1, 0));
        let h = ServerHandle::new(vec![1], 1);
        c.offer_handle(t, key.clone(), &h);
        let (shared, st) = c.share_handle(&key).expect("shared");
        assert!(Arc::ptr_eq(&shared, &h));
        assert_eq!(st, stat(1, 0));
        assert_eq!(h.users(), 2);
        assert!(!c.release_handle(&h), "one user left");
        assert_eq!(c.stats().handles, 1);
        assert!(c.release_handle(&h), "the last user closes");
        assert_eq!(c.stats().handles, 0);
        assert!(c.share_handle(&key).is_none());

        // An invalidation of the node stops sharing; the users keep their handle.
        let h = ServerHandle::new(vec![2], 1);
        let t = c.ticket();
        c.fill_stat(t, P, &stat(1, 0));
        c.offer_handle(t, key.clone(), &h);
        c.invalidate(P);
        assert!(c.share_handle(&key).is_none());
        assert!(c.release_handle(&h));

        // A sequenced handle is never shared.
        let h = ServerHandle::new(vec![3], 1);
        h.mark_sequenced();
        let t = c.ticket();
        c.fill_stat(t, P, &stat(1, 0));
        c.offer_handle(t, key.clone(), &h);
        assert!(c.share_handle(&key).is_none());
    }
}
