//! The etcd store on its own: every write is fenced by the election key, so a master whose
//! lease is gone can never write, and batches larger than one transaction are applied.

use etcd_client::{Client, GetOptions};
use std::time::Duration;
use warren_cell::store::etcd::{cell_prefix, EtcdStore, Fence};
use warren_cell::store::memory::MemoryStore;
use warren_cell::store::{Mutation, SessionRecord, Store, StoreError};
use warren_testkit::etcd::EtcdCluster;
use warren_testkit::Bridge;

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

/// The number of session records under `prefix`, read past any bridge.
async fn sessions_stored(c: &mut Client, prefix: &str) -> usize {
    c.get(
        format!("{prefix}sessions/"),
        Some(GetOptions::new().with_prefix().with_count_only()),
    )
    .await
    .unwrap()
    .count() as usize
}

/// Waits (≤ 10 s) until at least `n` session records under `prefix` are in etcd.
async fn until_stored(c: &mut Client, prefix: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sessions_stored(c, prefix).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the write never reached etcd"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A master (replica-1) whose store reaches the single etcd member through `Bridge`, and
/// a direct client to that member, for the tests below.
async fn behind_a_bridge(
    etcd: &EtcdCluster,
    prefix: &str,
) -> (Client, i64, Bridge, Client, Vec<String>, Fence) {
    let mut c = Client::connect(etcd.endpoints(), None).await.unwrap();
    let (lease1, fence1) = win(&mut c, &format!("{prefix}election"), "replica-1").await;
    let member = etcd.endpoints()[0]
        .trim_start_matches("http://")
        .to_string();
    let bridge = Bridge::start(member.parse().unwrap()).await;
    let via = vec![format!("http://{}", bridge.addr())];
    let bc = Client::connect(via.clone(), None).await.unwrap();
    (c, lease1, bridge, bc, via, fence1)
}

/// Chaos finding 7 (docs/reliability.md): a commit whose first attempt took effect but
/// whose answer was lost is sent again; if another replica became master meanwhile, the
/// retry is refused as fenced. That must not be reported as `Fenced` ("nothing applied",
/// which the library and the proxy answer `NOT_MASTER` and send the write again) but as
/// of unknown outcome.
#[tokio::test]
async fn a_fenced_retry_of_a_commit_whose_answer_was_lost_is_of_unknown_outcome() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start(1).await;
    let prefix = cell_prefix("local", "c0");
    let (mut c, lease1, bridge, bc, via, fence1) = behind_a_bridge(&etcd, &prefix).await;
    let old = EtcdStore::new(bc, prefix.clone(), Some(fence1)).with_endpoints(via);
    assert!(
        old.fence_holds().await.unwrap(),
        "connected through the bridge"
    );
    bridge.lose_replies(true);
    let commit = tokio::spawn(async move { old.commit(vec![session(1)]).await });
    // The write takes effect; its answer never comes back.
    until_stored(&mut c, &prefix, 1).await;
    // Another replica becomes master; then answers flow again.
    c.lease_revoke(lease1).await.unwrap();
    let _ = win(&mut c, &format!("{prefix}election"), "replica-2").await;
    bridge.lose_replies(false);
    bridge.drop_connections();
    match commit.await.unwrap() {
        Err(StoreError::Io(why)) => assert!(why.contains("may have been applied"), "{why}"),
        other => panic!("a retry fenced after a lost answer must be of unknown outcome: {other:?}"),
    }
    assert_eq!(sessions_stored(&mut c, &prefix).await, 1, "it was applied");
}

/// The same for a batch split over several transactions: once part of it is committed, a
/// fenced later part leaves the batch of unknown outcome, not "nothing applied".
#[tokio::test]
async fn a_batch_fenced_after_part_of_it_was_committed_is_of_unknown_outcome() {
    let _etcd_bin = warren_testkit::require_etcd!();
    let etcd = EtcdCluster::start(1).await;
    let prefix = cell_prefix("local", "c0");
    let (mut c, lease1, bridge, bc, via, fence1) = behind_a_bridge(&etcd, &prefix).await;
    // One key per transaction: 2,000 transactions, seconds of work.
    let old = EtcdStore::new(bc, prefix.clone(), Some(fence1))
        .with_endpoints(via)
        .with_limits(1, 1024 * 1024);
    let batch: Vec<Mutation> = (0..2000u16)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..2].copy_from_slice(&i.to_be_bytes());
            Mutation::PutSession(SessionRecord {
                id,
                secret: id,
                principal: format!("p{i}"),
                ..Default::default()
            })
        })
        .collect();
    let commit = tokio::spawn(async move { old.commit(batch).await });
    until_stored(&mut c, &prefix, 1).await;
    // Held at the bridge (whatever is in flight stays there) while another replica
    // becomes master.
    bridge.pause();
    c.lease_revoke(lease1).await.unwrap();
    let _ = win(&mut c, &format!("{prefix}election"), "replica-2").await;
    bridge.resume();
    let stored = match commit.await.unwrap() {
        Err(StoreError::Io(why)) => {
            assert!(
                why.contains("of the batch's 2000 keys were committed")
                    || why.contains("may have been applied"),
                "{why}"
            );
            sessions_stored(&mut c, &prefix).await
        }
        other => panic!("a batch fenced half-way must be of unknown outcome: {other:?}"),
    };
    assert!((1..2000).contains(&stored), "{stored} of 2000 committed");
}
