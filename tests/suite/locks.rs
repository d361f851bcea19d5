//! Reader/writer locks, Acquire deadlines, lock-delay and sequencers.

use super::fixture::{code, file_spec, Target};
use std::time::{Duration, Instant};
use warren_client::{ErrorCode, LockMode, OpenOptions};
use warren_proto::pb;

#[tokio::test]
async fn shared_holders_coexist_and_exclude_an_exclusive_one() {
    let t = Target::start().await;
    let (a, b, c) = (t.session().await, t.session().await, t.session().await);
    let (ha, _) = a
        .open("/l", OpenOptions::new().write().create_file(Vec::new()))
        .await
        .unwrap();
    let (hb, _) = b.open("/l", OpenOptions::new().write()).await.unwrap();
    let (hc, _) = c.open("/l", OpenOptions::new().write()).await.unwrap();
    let s1 = ha.try_acquire(LockMode::Shared).await.unwrap();
    let s2 = hb.try_acquire(LockMode::Shared).await.unwrap();
    assert_eq!(
        s1.lock_generation, s2.lock_generation,
        "a second shared holder does not bump the generation"
    );
    assert_eq!(
        code(hc.try_acquire(LockMode::Exclusive).await),
        ErrorCode::LockHeld
    );
    assert!(ha.release().await.unwrap());
    assert!(
        !ha.release().await.unwrap(),
        "release is idempotent and says it held nothing"
    );
    assert_eq!(
        code(hc.try_acquire(LockMode::Exclusive).await),
        ErrorCode::LockHeld
    );
    hb.release().await.unwrap();
    let s3 = hc.try_acquire(LockMode::Exclusive).await.unwrap();
    assert_eq!(s3.lock_generation, s1.lock_generation + 1);
    assert_eq!(
        code(ha.try_acquire(LockMode::Shared).await),
        ErrorCode::LockHeld
    );
}

#[tokio::test]
async fn acquire_waits_for_the_holder_and_times_out() {
    let t = Target::start().await;
    let (a, b) = (t.session().await, t.session().await);
    let (ha, _) = a
        .open("/l", OpenOptions::new().write().create_file(Vec::new()))
        .await
        .unwrap();
    let (hb, _) = b.open("/l", OpenOptions::new().write()).await.unwrap();
    ha.acquire(LockMode::Exclusive, None).await.unwrap();
    let started = Instant::now();
    assert_eq!(
        code(
            hb.acquire(LockMode::Exclusive, Some(Duration::from_millis(400)))
                .await
        ),
        ErrorCode::LockHeld
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(380) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
    // A waiting Acquire is granted when the holder releases.
    let waiter = tokio::spawn(async move { hb.acquire(LockMode::Exclusive, None).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "granted while held");
    ha.release().await.unwrap();
    let seq = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seq.mode, LockMode::Exclusive);
}

#[tokio::test]
async fn lock_delay_applies_when_the_holder_dies() {
    let lease = Duration::from_secs(2);
    let t = Target::short_lease(lease).await;
    // The holder is a raw session that never sends a KeepAlive: it dies when its lease ends.
    let started = Instant::now();
    let mut dying = t.raw().await;
    let h = dying
        .open("/ls/local/l", 2, file_spec(b""))
        .await
        .unwrap()
        .handle;
    let mut req = pb::OpenRequest {
        target: 0,
        ctx: dying.ctx(),
        path: "/ls/local/l".into(),
        intent: 2,
        events: 0,
        lock_delay_ms: 3000,
        create: None,
        read: false,
    };
    let h_delay = dying
        .client
        .open(req.clone())
        .await
        .unwrap()
        .into_inner()
        .handle;
    drop(h);
    dying
        .client
        .try_acquire(pb::TryAcquireRequest {
            ctx: dying.ctx(),
            handle: h_delay,
            mode: 1,
        })
        .await
        .unwrap();
    let b = t.session().await;
    let (hb, _) = b.open("/l", OpenOptions::new().write()).await.unwrap();
    assert_eq!(
        code(hb.try_acquire(LockMode::Exclusive).await),
        ErrorCode::LockHeld
    );
    let seq = hb
        .acquire(LockMode::Exclusive, Some(Duration::from_secs(20)))
        .await
        .unwrap();
    let waited = started.elapsed();
    // Granted no earlier than the holder's lease (2 s, or what a proxy granted of it) +
    // lock-delay (3 s) after the holder's session began.
    assert!(
        waited >= dying.lease + Duration::from_secs(3),
        "granted after {waited:?}, inside the lock-delay"
    );
    assert!(
        waited < Duration::from_secs(9),
        "granted only after {waited:?}"
    );
    assert_eq!(seq.lock_generation, 2);
    // The dead session is gone.
    req.ctx = dying.ctx();
    assert_eq!(
        crate::fixture::raw_code(dying.client.open(req).await),
        warren_proto::ErrorCode::SessionExpired
    );
}

#[tokio::test]
async fn a_clean_release_imposes_no_lock_delay() {
    let t = Target::start().await;
    let (a, b) = (t.session().await, t.session().await);
    let (ha, _) = a
        .open(
            "/l",
            OpenOptions::new()
                .write()
                .lock_delay(Duration::from_secs(30))
                .create_file(Vec::new()),
        )
        .await
        .unwrap();
    let (hb, _) = b.open("/l", OpenOptions::new().write()).await.unwrap();
    ha.acquire(LockMode::Exclusive, None).await.unwrap();
    ha.close().await;
    hb.try_acquire(LockMode::Exclusive).await.unwrap();
}

#[tokio::test]
async fn sequencers_go_stale_after_reacquisition_and_fence_handles() {
    let t = Target::start().await;
    let (a, b) = (t.session().await, t.session().await);
    let (ha, _) = a
        .open("/l", OpenOptions::new().write().create_file(Vec::new()))
        .await
        .unwrap();
    let (hb, _) = b
        .open("/l", OpenOptions::new().read().write())
        .await
        .unwrap();
    let s1 = ha.acquire(LockMode::Exclusive, None).await.unwrap();
    assert_eq!(ha.get_sequencer().await.unwrap(), s1);
    // The text form round-trips.
    let parsed: warren_client::Sequencer = s1.to_string().parse().unwrap();
    assert_eq!(parsed, s1);
    assert!(b.check_sequencer(&s1).await.unwrap());
    hb.set_sequencer(&s1).await.unwrap();
    hb.stat().await.unwrap();
    ha.release().await.unwrap();
    assert!(!b.check_sequencer(&s1).await.unwrap());
    let s2 = ha.acquire(LockMode::Exclusive, None).await.unwrap();
    assert_eq!(s2.lock_generation, s1.lock_generation + 1);
    assert!(!b.check_sequencer(&s1).await.unwrap());
    assert!(b.check_sequencer(&s2).await.unwrap());
    // b's handle carries the stale sequencer: its calls fail.
    assert_eq!(code(hb.stat().await), ErrorCode::GenerationMismatch);
    // get_sequencer on a handle that does not hold the lock.
    let (hc, _) = b.open("/l", OpenOptions::new().write()).await.unwrap();
    assert_eq!(code(hc.get_sequencer().await), ErrorCode::InvalidArgument);
}
