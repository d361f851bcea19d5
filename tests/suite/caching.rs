//! Consistent caching at the cell: a write waits until every session that may have cached
//! the node has acknowledged the invalidation or let its lease expire.

use super::fixture::{file_spec, Target};
use std::time::{Duration, Instant};
use warren_client::OpenOptions;
use warren_proto::pb;

#[tokio::test]
async fn a_write_blocks_until_the_caching_session_acknowledges() {
    let t = Target::start().await;
    let mut reader = t.raw().await;
    let h = reader
        .open("/ls/local/f", 1 | 2, file_spec(b"v1"))
        .await
        .unwrap()
        .handle;
    let got = reader.read(&h).await.unwrap();
    assert!(got.cacheable);
    // The reader's KeepAlive is outstanding (held by the master).
    let mut ka_client = reader.client.clone();
    let ctx = reader.ctx();
    let ka = tokio::spawn(async move {
        ka_client
            .keep_alive(pb::KeepAliveRequest {
                ctx,
                ack_seq: 0,
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let writer = t.session().await;
    let (w, _) = writer.open("/f", OpenOptions::new().write()).await.unwrap();
    let write = tokio::spawn(async move { w.set_contents(b"v2".to_vec()).await });

    // The reader's KeepAlive returns at once with the invalidation...
    let reply = tokio::time::timeout(Duration::from_secs(5), ka)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(reply.events.len(), 1);
    assert_eq!(reply.events[0].r#type, pb::EventType::Invalidate as i32);
    assert_eq!(reply.events[0].path, "/ls/local/f");
    // ...and the write stays blocked while it is unacknowledged.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !write.is_finished(),
        "the write finished before the caching session acknowledged"
    );
    // Meanwhile the node is uncachable and readers see the old value.
    let now = reader.read(&h).await.unwrap();
    assert_eq!(
        (now.contents.as_slice(), now.cacheable),
        (&b"v1"[..], false)
    );
    // Acknowledge: the write goes through promptly.
    let seq = reply.events[0].seq;
    let mut ka_client = reader.client.clone();
    let ctx = reader.ctx();
    tokio::spawn(async move {
        ka_client
            .keep_alive(pb::KeepAliveRequest {
                ctx,
                ack_seq: seq,
                ..Default::default()
            })
            .await
    });
    let stat = tokio::time::timeout(Duration::from_secs(2), write)
        .await
        .expect("write still blocked after the ack")
        .unwrap()
        .unwrap();
    assert_eq!(stat.content_generation, 1);
    let after = reader.read(&h).await.unwrap();
    assert_eq!(after.contents, b"v2");
}

#[tokio::test]
async fn a_silent_caching_session_delays_a_write_by_at_most_its_lease() {
    let lease = Duration::from_secs(2);
    let t = Target::short_lease(lease).await;
    let mut silent = t.raw().await;
    let h = silent
        .open("/ls/local/f", 1, file_spec(b"v1"))
        .await
        .unwrap()
        .handle;
    assert!(silent.read(&h).await.unwrap().cacheable);
    let cached_at = Instant::now();
    // It never sends a KeepAlive or an acknowledgement again.
    let writer = t.session().await;
    let (w, _) = writer.open("/f", OpenOptions::new().write()).await.unwrap();
    let stat = tokio::time::timeout(Duration::from_secs(10), w.set_contents(b"v2".to_vec()))
        .await
        .expect("the write waited forever")
        .unwrap();
    let waited = cached_at.elapsed();
    assert_eq!(stat.content_generation, 1);
    assert!(
        waited <= lease + Duration::from_millis(700),
        "delayed {waited:?}, more than one lease"
    );
    // The lease it was granted: a proxy may grant less than the configured one.
    assert!(silent.lease <= lease);
    assert!(
        waited >= silent.lease - Duration::from_millis(300),
        "released after {waited:?}, before the silent lease ({:?}) ended",
        silent.lease
    );
}

#[tokio::test]
async fn the_library_acknowledges_invalidations_so_writes_do_not_wait() {
    let t = Target::start().await;
    let a = t.session().await;
    let b = t.session().await;
    let (ha, _) = a
        .open(
            "/f",
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"v1".to_vec()),
        )
        .await
        .unwrap();
    let (hb, _) = b.open("/f", OpenOptions::new().read()).await.unwrap();
    hb.contents().await.unwrap();
    let started = Instant::now();
    for i in 0..5u8 {
        ha.set_contents(vec![i]).await.unwrap();
        assert_eq!(hb.contents().await.unwrap().0, vec![i]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// A writer is never sent an invalidation of its own write: directly, the cell spares the
/// writing session; through a proxy, the proxy forgets the writer's copy (its library drops
/// it on writing) and, holding no other client's, asks the cell to spare it too
/// (`proxy_dropped_copies`). Another session that cached the file is invalidated, and
/// reads the newest value.
#[tokio::test]
async fn a_writer_is_not_invalidated_by_its_own_writes_but_other_cachers_are() {
    let t = Target::start().await;
    let writer = t.session().await;
    let (w, _) = writer
        .open(
            "/own",
            OpenOptions::new().read().write().create_file(b"0".to_vec()),
        )
        .await
        .unwrap();
    for i in 1..=5u8 {
        // Read (and cache) it, then write it.
        assert_eq!(w.contents().await.unwrap().0, vec![b'0' + i - 1]);
        w.set_contents(vec![b'0' + i]).await.unwrap();
    }
    assert_eq!(w.contents().await.unwrap().0, b"5");
    assert_eq!(writer.cache_stats().invalidations, 0);

    let reader = t.session().await;
    let (r, _) = reader
        .open("/own", OpenOptions::new().read())
        .await
        .unwrap();
    assert_eq!(r.contents().await.unwrap().0, b"5");
    for i in 6..=8u8 {
        w.set_contents(vec![b'0' + i]).await.unwrap();
        assert_eq!(r.contents().await.unwrap().0, vec![b'0' + i]);
    }
    assert!(
        reader.cache_stats().invalidations >= 3,
        "{:?}",
        reader.cache_stats()
    );
    assert_eq!(
        writer.cache_stats().invalidations,
        0,
        "{:?}",
        writer.cache_stats()
    );
}
