//! The etcd store's election and fencing over the in-memory store: what the deterministic
//! simulation runs a cell's replicas on (docs/reliability.md, "Deterministic simulation").
//!
//! [`SimEtcd`] plays etcd for one cell. It holds the cell's [`MemoryStore`] and an
//! election with one leader at a time, whose lease lasts a TTL past its last renewal on
//! etcd's clock (a clock given to it: the simulation's). A [`FencedStore`] is one term's
//! view of it, as [`super::etcd::EtcdStore`] with its `Fence` is: a commit applies only
//! while that term still leads and its lease has not expired, checked and applied in one
//! step, and fails [`StoreError::Fenced`] with nothing applied otherwise. So a master that
//! has lost its lease (crashed, paused, or cut from the store) never writes again, whatever
//! it believes; a new leader's first write comes after every write of the old one.
//!
//! A replica the harness has cut from the store ([`SimEtcd::set_cut`]) can neither campaign,
//! renew, resign, load nor commit: each fails with an I/O error and changes nothing (a
//! real etcd call in flight as the network fails may or may not apply; this one never
//! does).

use super::memory::MemoryStore;
use super::{Mutation, Snapshot, Store, StoreError};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// etcd's clock: time since some fixed start, the same for every replica.
pub type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// One cell's etcd: its store and its election.
pub struct SimEtcd {
    store: MemoryStore,
    clock: Clock,
    state: Mutex<Election>,
    /// Commits refused by the fence ([`SimEtcd::fenced_off`]).
    fenced_off: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Election {
    leader: Option<Leader>,
    /// Terms handed out so far (the next one is this + 1): each win is a new one, as each
    /// etcd election key has a new create revision.
    terms: u64,
    /// Replicas cut from the store.
    cut: BTreeSet<String>,
}

struct Leader {
    term: u64,
    replica: String,
    advertise: String,
    /// When its lease expires, on etcd's clock.
    expires: Duration,
}

/// What a campaign found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Campaign {
    /// This replica leads, in a new term.
    Won(u64),
    /// Another replica leads, at this address.
    Lost { master: String },
}

/// The error of a replica cut from the store.
fn unreachable(replica: &str) -> StoreError {
    StoreError::Io(format!(
        "replica {replica} cannot reach the store (a simulated partition)"
    ))
}

impl SimEtcd {
    /// An empty store and no leader, on `clock`.
    pub fn new(clock: Clock) -> Arc<SimEtcd> {
        Arc::new(SimEtcd {
            store: MemoryStore::new(),
            clock,
            state: Mutex::new(Election::default()),
            fenced_off: Default::default(),
        })
    }

    /// How many commits the fence has refused so far: writes of terms that no longer led.
    pub fn fenced_off(&self) -> u64 {
        self.fenced_off.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Election> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts `replica` from the store, or heals the cut.
    pub fn set_cut(&self, replica: &str, cut: bool) {
        let mut s = self.state();
        if cut {
            s.cut.insert(replica.to_string());
        } else {
            s.cut.remove(replica);
        }
    }

    /// Campaigns for `replica` (serving at `advertise`) with a lease of `ttl`: wins if
    /// nobody leads or the leader's lease has expired.
    pub fn campaign(
        &self,
        replica: &str,
        advertise: &str,
        ttl: Duration,
    ) -> Result<Campaign, StoreError> {
        let now = (self.clock)();
        let mut s = self.state();
        if s.cut.contains(replica) {
            return Err(unreachable(replica));
        }
        if let Some(l) = &s.leader {
            if l.expires > now {
                return Ok(Campaign::Lost {
                    master: l.advertise.clone(),
                });
            }
        }
        s.terms += 1;
        let term = s.terms;
        s.leader = Some(Leader {
            term,
            replica: replica.to_string(),
            advertise: advertise.to_string(),
            expires: now + ttl,
        });
        Ok(Campaign::Won(term))
    }

    /// Renews `term`'s lease for another `ttl`: `Ok(false)` when the term no longer leads
    /// (its lease expired, or another term leads), as etcd answers a keep-alive of an
    /// expired lease with TTL 0.
    pub fn keep_alive(&self, replica: &str, term: u64, ttl: Duration) -> Result<bool, StoreError> {
        let now = (self.clock)();
        let mut s = self.state();
        if s.cut.contains(replica) {
            return Err(unreachable(replica));
        }
        match &mut s.leader {
            Some(l) if l.term == term && l.expires > now => {
                l.expires = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Gives up `term`'s lease (a deposed master's revoke), if it still leads.
    pub fn resign(&self, replica: &str, term: u64) -> Result<(), StoreError> {
        let mut s = self.state();
        if s.cut.contains(replica) {
            return Err(unreachable(replica));
        }
        if s.leader.as_ref().is_some_and(|l| l.term == term) {
            s.leader = None;
        }
        Ok(())
    }

    /// The leader's address (empty when nobody leads or its lease has expired) and the
    /// cell's epoch as stored, as a standby reads them; an error if `replica` is cut.
    pub fn master(&self, replica: &str) -> Result<(String, u64), StoreError> {
        let now = (self.clock)();
        let s = self.state();
        if s.cut.contains(replica) {
            return Err(unreachable(replica));
        }
        let master = s
            .leader
            .as_ref()
            .filter(|l| l.expires > now)
            .map(|l| l.advertise.clone())
            .unwrap_or_default();
        let epoch = self.store.load_now().meta.map_or(0, |m| m.epoch);
        Ok((master, epoch))
    }

    /// The replica leading now, if any (for the harness).
    pub fn leader(&self) -> Option<String> {
        let now = (self.clock)();
        self.state()
            .leader
            .as_ref()
            .filter(|l| l.expires > now)
            .map(|l| l.replica.clone())
    }

    /// The store as `replica` sees it in `term`: fenced by that term's lease.
    pub fn fenced(self: &Arc<Self>, replica: &str, term: u64) -> FencedStore {
        FencedStore {
            etcd: self.clone(),
            replica: replica.to_string(),
            term,
        }
    }
}

/// One term's store: [`SimEtcd`]'s memory store, written only while the term leads.
pub struct FencedStore {
    etcd: Arc<SimEtcd>,
    replica: String,
    term: u64,
}

/// What a fenced-off commit says: as the etcd store's.
const FENCED: &str = "the mastership lease behind this term has expired or another replica \
                      leads (the simulated store's fence)";

#[async_trait::async_trait]
impl Store for FencedStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        let s = self.etcd.state();
        if s.cut.contains(&self.replica) {
            return Err(unreachable(&self.replica));
        }
        Ok(self.etcd.store.load_now())
    }

    async fn commit(&self, batch: Vec<Mutation>) -> Result<(), StoreError> {
        let now = (self.etcd.clock)();
        // The fence is checked and the batch applied under the election's lock: no other
        // term can win in between.
        let s = self.etcd.state();
        if s.cut.contains(&self.replica) {
            return Err(unreachable(&self.replica));
        }
        let leads = s
            .leader
            .as_ref()
            .is_some_and(|l| l.term == self.term && l.expires > now);
        if !leads {
            self.etcd
                .fenced_off
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(StoreError::Fenced(FENCED.into()));
        }
        self.etcd.store.commit_now(batch);
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory-fenced"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MetaRecord, Mutation};
    use std::sync::atomic::{AtomicU64, Ordering};

    const TTL: Duration = Duration::from_secs(2);

    /// A store on a clock the test moves (milliseconds).
    fn etcd() -> (Arc<SimEtcd>, Arc<AtomicU64>) {
        let ms = Arc::new(AtomicU64::new(0));
        let clock = {
            let ms = ms.clone();
            Arc::new(move || Duration::from_millis(ms.load(Ordering::SeqCst))) as Clock
        };
        (SimEtcd::new(clock), ms)
    }

    fn meta(epoch: u64) -> Vec<Mutation> {
        vec![Mutation::PutMeta(MetaRecord {
            epoch,
            secret: [0; 32],
            next_instance: 1,
            deployment: "d".into(),
            cell: "c".into(),
            max_lease_granted_ms: 0,
            max_proxy_lease_granted_ms: 0,
            pending_unlinks: vec![],
            handed_off: vec![],
            foreign_keys: Default::default(),
            lost_epochs: vec![],
        })]
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn one_leader_at_a_time_and_a_new_one_only_after_the_lease_expires() {
        let (etcd, ms) = etcd();
        assert_eq!(etcd.campaign("a", "a:1", TTL).unwrap(), Campaign::Won(1));
        assert_eq!(
            etcd.campaign("b", "b:1", TTL).unwrap(),
            Campaign::Lost {
                master: "a:1".into()
            }
        );
        ms.store(1_500, Ordering::SeqCst);
        assert!(etcd.keep_alive("a", 1, TTL).unwrap(), "a renews in time");
        ms.store(3_000, Ordering::SeqCst);
        assert!(
            matches!(
                etcd.campaign("b", "b:1", TTL).unwrap(),
                Campaign::Lost { .. }
            ),
            "a's renewal at 1.5 s holds it to 3.5 s"
        );
        ms.store(3_500, Ordering::SeqCst);
        assert_eq!(etcd.campaign("b", "b:1", TTL).unwrap(), Campaign::Won(2));
        assert!(
            !etcd.keep_alive("a", 1, TTL).unwrap(),
            "an expired term cannot renew"
        );
        assert_eq!(etcd.leader().as_deref(), Some("b"));
    }

    #[test]
    fn a_term_writes_only_while_it_leads() {
        let (etcd, ms) = etcd();
        let Campaign::Won(t1) = etcd.campaign("a", "a:1", TTL).unwrap() else {
            panic!("a wins an empty election");
        };
        let old = etcd.fenced("a", t1);
        block_on(old.commit(meta(1))).expect("the leader writes");
        // a's lease lapses (it was paused); b wins and writes.
        ms.store(2_000, Ordering::SeqCst);
        let Campaign::Won(t2) = etcd.campaign("b", "b:1", TTL).unwrap() else {
            panic!("b wins once a's lease has expired");
        };
        let new = etcd.fenced("b", t2);
        block_on(new.commit(meta(2))).expect("the new leader writes");
        // a wakes and writes: fenced off, nothing applied.
        let e = block_on(old.commit(meta(9))).expect_err("the old term is fenced");
        assert!(matches!(e, StoreError::Fenced(_)), "{e}");
        assert_eq!(etcd.fenced_off(), 1);
        let epoch = block_on(new.load()).unwrap().meta.map(|m| m.epoch);
        assert_eq!(epoch, Some(2));
        // An expired lease fences its own term even with nobody else leading.
        ms.store(4_500, Ordering::SeqCst);
        let e = block_on(new.commit(meta(3))).expect_err("an expired term is fenced");
        assert!(matches!(e, StoreError::Fenced(_)), "{e}");
    }

    #[test]
    fn a_replica_cut_from_the_store_changes_nothing() {
        let (etcd, ms) = etcd();
        let Campaign::Won(t) = etcd.campaign("a", "a:1", TTL).unwrap() else {
            panic!("a wins an empty election");
        };
        let store = etcd.fenced("a", t);
        etcd.set_cut("a", true);
        for e in [
            block_on(store.commit(meta(1))).expect_err("commit"),
            etcd.keep_alive("a", t, TTL).expect_err("renew"),
            etcd.resign("a", t).expect_err("resign"),
            etcd.campaign("a", "a:1", TTL).expect_err("campaign"),
        ] {
            assert!(e.to_string().contains("cannot reach the store"), "{e}");
        }
        assert_eq!(block_on(etcd.fenced("b", 0).load()).unwrap().meta, None);
        ms.store(2_000, Ordering::SeqCst);
        assert_eq!(etcd.leader(), None, "its lease ran out");
        etcd.set_cut("a", false);
        assert!(!etcd.keep_alive("a", t, TTL).unwrap(), "healed too late");
        let e = block_on(store.commit(meta(1))).expect_err("still fenced");
        assert!(matches!(e, StoreError::Fenced(_)), "{e}");
        assert_eq!(
            etcd.campaign("a", "a:1", TTL).unwrap(),
            Campaign::Won(2),
            "a campaigns again, in a new term"
        );
    }
}
