//! The etcd store on its own: every write is fenced by the election key, so a master whose
//! lease is gone can never write, and batches larger than one transaction are applied.

use etcd_client::Client;
use warren_cell::store::etcd::{cell_prefix, EtcdStore, Fence};
use warren_cell::store::memory::MemoryStore;
use warren_cell::store::{Mutation, SessionRecord, Store, StoreError};
use warren_testkit::etcd::EtcdCluster;

fn session(i: u8) -> Mutation {
    Mutation::PutSession(SessionRecord {
        id: [i; 16],
        secret: [i; 16],
        principal: format!("p{i}"),
        ..Default::default()
    })
}

async fn win(c: &mut Client, election: &str, value: &str) -> (i64, Fence) {
    let lease = c.lease_grant(5, None).await.unwrap().id();
    let r = c.campaign(election, value, lease).await.unwrap();
    let l = r.leader().unwrap();
    (
        lease,
        Fence {
            key: l.key().to_vec(),
            create_revision: l.rev(),
        },
    )
}

#[tokio::test]
async fn a_deposed_master_cannot_write() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start(1).await;
    let mut c = Client::connect(etcd.endpoints(), None).await.unwrap();
    let prefix = cell_prefix("local", "c0");
    let election = format!("{prefix}election");
    let (lease1, fence1) = win(&mut c, &election, "replica-1").await;
    let old = EtcdStore::new(c.clone(), prefix.clone(), Some(fence1));
    old.commit(vec![session(1)]).await.unwrap();
    assert!(old.fence_holds().await.unwrap());
    // The first master's lease ends (revoked here; expiry does the same) and another wins.
    c.lease_revoke(lease1).await.unwrap();
    let (_lease2, fence2) = win(&mut c, &election, "replica-2").await;
    let new = EtcdStore::new(c.clone(), prefix.clone(), Some(fence2));
    assert!(!old.fence_holds().await.unwrap());
    // The deposed master's write is refused by etcd itself, and changes nothing.
    match old.commit(vec![session(2)]).await {
        Err(StoreError::Fenced(_)) => {}
        other => panic!("a deposed master's write was not fenced: {other:?}"),
    }
    new.commit(vec![session(3)]).await.unwrap();
    let snap = new.load().await.unwrap();
    let ids: Vec<u8> = snap.sessions.iter().map(|s| s.id[0]).collect();
    assert_eq!(ids, vec![1, 3]);
}

#[tokio::test]
async fn large_batches_are_split_and_duplicate_keys_coalesced() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start(1).await;
    let c = Client::connect(etcd.endpoints(), None).await.unwrap();
    // No fence: the store's transaction splitting and coalescing on their own.
    let store = EtcdStore::new(c, cell_prefix("local", "c9"), None).with_limits(128, 1024 * 1024);
    let reference = MemoryStore::new();
    let mut batch = Vec::new();
    for i in 0..200u8 {
        batch.push(session(i));
        batch.push(Mutation::PutContents {
            path: format!("/ls/local/f{i}"),
            data: vec![i; 1000],
        });
    }
    // The same keys again, some deleted: the last write of each key wins.
    for i in 0..100u8 {
        batch.push(Mutation::DeleteSession([i; 16]));
        batch.push(Mutation::PutContents {
            path: format!("/ls/local/f{i}"),
            data: vec![i; 3],
        });
    }
    store.commit(batch.clone()).await.unwrap();
    reference.commit(batch).await.unwrap();
    let mut got = store.load().await.unwrap();
    let mut want = reference.load().await.unwrap();
    got.contents.sort();
    want.contents.sort();
    got.sessions.sort_by_key(|s| s.id);
    want.sessions.sort_by_key(|s| s.id);
    assert_eq!(got, want);
    assert_eq!(got.sessions.len(), 100);
}
