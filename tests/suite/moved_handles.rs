//! Handles on a node a reshard moved keep working (docs/design.md §12; docs/proxy.md and
//! docs/client.md, "After a reshard"): a slot is moved between two live data cells by
//! their own `warren.v1.Reshard` calls ([`crate::fixture::move_slot`]), and handles,
//! locks, sequencers and watchers opened before the move are checked after it — once
//! through a proxy (which follows a moved handle with the same token) and once in direct
//! mode (where the library re-opens the handle at the new owner).

use std::time::Duration;
use warren_client::{
    ClientOptions, ErrorCode, Event, EventMask, EventStream, LockMode, OpenOptions, Session,
};
use warren_router::Route;
use warren_testkit::Deployment;

/// The directory whose slot moves (its children, lock and handles move with it).
const DIR: &str = "/moving";

/// Waits (≤ `within`) for a `ContentsModified` event on `path`; whether one came.
async fn contents_modified(events: &mut EventStream, path: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::ContentsModified { path: p })) if p == path => return true,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
}

/// The slot of `path` (a full path), the data cell that owns it, and the other data cell.
fn slot_and_cells(d: &Deployment, path: &str) -> (u32, String, String) {
    let map = d.map();
    let Route::Cell { cell: from, slot } = map.route(path, false).unwrap() else {
        panic!("{path} is not in a data cell")
    };
    let from = from.to_string();
    let to = d
        .cells()
        .iter()
        .map(|c| c.name().to_string())
        .find(|c| *c != from)
        .expect("two data cells");
    (slot, from, to)
}

/// What the scenario observed after the move (the watcher's outcome is reported, not
/// asserted, by the caller: see the tests).
struct Observed {
    watcher_got_event: bool,
    holder_released: bool,
}

/// Opens a file, a locked file and (in a session of its own) a watcher in `DIR` through
/// sessions made with `options`, moves `DIR`'s slot to the other data cell, and checks
/// what must hold after the move: the file reads and writes through its old handle; the lock is still held
/// (another session's `TryAcquire` gets `LOCK_HELD`); the sequencer taken before is
/// current. Returns what the caller asserts by mode.
async fn scenario(d: &Deployment, options: ClientOptions) -> Observed {
    let a = Session::connect_with(options.clone())
        .await
        .expect("connect a");
    let b = Session::connect_with(options.clone())
        .await
        .expect("connect b");
    // The watcher's session makes no call after the move: nothing but the move itself
    // may carry its subscription over.
    let w = Session::connect_with(options).await.expect("connect w");
    let full = |name: &str| format!("/ls/local{DIR}/{name}");
    let (slot, from, to) = slot_and_cells(d, &full("f"));

    // Before the move: a file, a locked file with its sequencer, a watcher.
    let (dir, _) = a
        .open(DIR, OpenOptions::new().read().create_dir())
        .await
        .expect("create the directory");
    dir.close().await;
    let (file, _) = a
        .open(
            &format!("{DIR}/f"),
            OpenOptions::new()
                .read()
                .write()
                .create_file(b"before".to_vec()),
        )
        .await
        .expect("create f");
    let (lock, _) = a
        .open(
            &format!("{DIR}/lock"),
            OpenOptions::new().write().create_file(Vec::new()),
        )
        .await
        .expect("create lock");
    let seq = lock
        .acquire(LockMode::Exclusive, Some(Duration::from_secs(5)))
        .await
        .expect("acquire");
    let (watcher, _) = w
        .open(
            &format!("{DIR}/f"),
            OpenOptions::new()
                .read()
                .events(EventMask::CONTENTS_MODIFIED),
        )
        .await
        .expect("open the watcher");
    let mut events = w.events();
    assert_eq!(file.stat().await.expect("stat before").cell, from);

    let map = crate::fixture::move_slot(d, slot, &from, &to).await;
    assert_eq!(map.owner_of_slot(slot), Some(to.as_str()));

    // The file: read and written through the handle opened before the move.
    let (data, stat) = file.contents().await.expect("read after the move");
    assert_eq!(data, b"before");
    assert_eq!(stat.cell, to, "served by the new owner");
    file.set_contents(b"after".to_vec())
        .await
        .expect("write after the move");
    assert_eq!(file.contents().await.unwrap().0, b"after");

    // The lock: still held, and the sequencer taken before is current.
    let (other, _) = b
        .open(&format!("{DIR}/lock"), OpenOptions::new().write())
        .await
        .expect("b opens lock");
    let err = other
        .try_acquire(LockMode::Exclusive)
        .await
        .expect_err("the lock is still held");
    assert_eq!(err.code(), Some(ErrorCode::LockHeld), "{err}");
    assert!(
        b.check_sequencer(&seq).await.expect("check sequencer"),
        "a sequencer taken before the move is current after it"
    );

    // The watcher: a write after the move, by another session.
    let (writer, _) = b
        .open(&format!("{DIR}/f"), OpenOptions::new().write())
        .await
        .expect("b opens f");
    writer
        .set_contents(b"from b".to_vec())
        .await
        .expect("b writes");
    let watcher_got_event =
        contents_modified(&mut events, &full("f"), Duration::from_secs(5)).await;

    let holder_released = lock.release().await.expect("release");
    for h in [file, lock, watcher, other, writer] {
        h.close().await;
    }
    for s in [a, b, w] {
        s.close().await.ok();
    }
    Observed {
        watcher_got_event,
        holder_released,
    }
}

/// Through a proxy: the proxy follows every moved handle to its new cell with the same
/// token, so everything carries on — the lock stays with its handle (its release says it
/// was held) and the watcher gets the event (the proxy claims the client at the new cell
/// when the old one says the handle moved).
#[tokio::test]
async fn through_a_proxy_handles_locks_and_watchers_follow_their_node() {
    let d = Deployment::builder().cells(2).proxies(1).run().await;
    let seen = scenario(&d, ClientOptions::proxies(d.proxy_addrs())).await;
    assert!(
        seen.holder_released,
        "the lock stayed with the handle that took it"
    );
    assert!(
        seen.watcher_got_event,
        "the watcher got the event of a write made after the move"
    );
}

/// Direct mode: the new cell took the handle's cell session on with the node, so the
/// library carries that session on there (same id, KeepAlives to the new cell) and the
/// same handle works: files read and write, the lock stays with the handle that took it
/// (its release says it was held), the sequencer is current, and the watcher gets events.
#[tokio::test]
async fn in_direct_mode_the_cell_session_carries_on_at_the_new_owner() {
    let d = Deployment::builder().cells(2).proxies(0).run().await;
    let seen = scenario(&d, ClientOptions::meta(d.meta_addrs())).await;
    assert!(
        seen.holder_released,
        "the lock stayed with the handle that took it"
    );
    assert!(
        seen.watcher_got_event,
        "the watcher got the event of a write made after the move"
    );
}

/// A lock held across a move: sessions `a` and `b` made with `options`, and `a`'s handle on
/// `DIR/lock`, holding it exclusively (with its sequencer). `DIR` is made by `a`, or by `b`
/// when `b_makes_dir` (then the holder touches nothing but the lock's cell). Also the
/// lock's slot, its cell and the other data cell.
struct HeldLock {
    a: Session,
    b: Session,
    lock: warren_client::Handle,
    seq: warren_client::Sequencer,
    slot: u32,
    from: String,
    to: String,
}

async fn a_holds_the_lock(d: &Deployment, options: ClientOptions, b_makes_dir: bool) -> HeldLock {
    let a = Session::connect_with(options.clone())
        .await
        .expect("connect a");
    let b = Session::connect_with(options).await.expect("connect b");
    let (slot, from, to) = slot_and_cells(d, &format!("/ls/local{DIR}/lock"));
    let maker = if b_makes_dir { &b } else { &a };
    let (dir, _) = maker
        .open(DIR, OpenOptions::new().create_dir())
        .await
        .expect("create the directory");
    dir.close().await;
    let (lock, _) = a
        .open(
            &format!("{DIR}/lock"),
            OpenOptions::new().write().create_file(Vec::new()),
        )
        .await
        .expect("create lock");
    let seq = lock
        .acquire(LockMode::Exclusive, Some(Duration::from_secs(5)))
        .await
        .expect("acquire");
    HeldLock {
        a,
        b,
        lock,
        seq,
        slot,
        from,
        to,
    }
}

impl HeldLock {
    /// The end of a moved-lock test: the holder releases (its release must say it held the
    /// lock), `other` (a handle of `b`'s on the lock) then gets it, and everything closes.
    async fn hand_over(self, other: warren_client::Handle) {
        assert!(
            self.lock.release().await.expect("release"),
            "the holder's release says it held the lock"
        );
        other
            .try_acquire(LockMode::Exclusive)
            .await
            .expect("free once its holder released it");
        other.close().await;
        self.lock.close().await;
        self.a.close().await.ok();
        self.b.close().await.ok();
    }
}

/// Direct mode: a lock held before the move stays held by its holder well past the leases,
/// although the holder makes no call: the old cell says the handle moved (`SLOT_MOVED`),
/// and the library carries the handle's cell session on at the new cell, whose KeepAlives
/// keep the lock's session alive there.
#[tokio::test]
async fn in_direct_mode_a_lock_held_before_the_move_outlives_the_leases() {
    let lease = Duration::from_secs(2);
    let d = Deployment::builder()
        .cells(2)
        .proxies(0)
        .lease(lease)
        .run()
        .await;
    let options = ClientOptions::meta(d.meta_addrs()).grace_period(Duration::from_secs(30));
    let h = a_holds_the_lock(&d, options, false).await;

    crate::fixture::move_slot(&d, h.slot, &h.from, &h.to).await;
    let (other, _) =
        h.b.open(&format!("{DIR}/lock"), OpenOptions::new().write())
            .await
            .expect("b opens lock");
    let held = other.try_acquire(LockMode::Exclusive).await;
    assert_eq!(
        held.map(|_| ()).unwrap_err().code(),
        Some(ErrorCode::LockHeld),
        "held right after the move"
    );
    tokio::time::sleep(lease * 4).await;
    let still = other.try_acquire(LockMode::Exclusive).await;
    assert_eq!(
        still.map(|_| ()).unwrap_err().code(),
        Some(ErrorCode::LockHeld),
        "still held four leases after the move"
    );
    assert!(h.a.is_live(), "its holder's session is alive");
    h.hand_over(other).await;
}

/// In direct mode, a lock holder's handle follows its node to a cell that loads the new
/// map late: the source hands the slot off and the map is written, but the target is
/// still on the old map and refuses the handle, naming the source. The library waits for
/// the target and carries the session on there, so the lock stays with its handle: the
/// holder's release lets go. Chaos finding 6 (docs/reliability.md): the library gave up
/// at the first refusal and re-opened the handle. The lock then stayed held by the old
/// handle, and the holder's release of the new one freed nothing.
#[tokio::test]
async fn in_direct_mode_a_lock_follows_its_node_to_a_cell_that_loads_the_map_late() {
    let d = Deployment::builder()
        .cells(2)
        .proxies(0)
        .meta_links()
        .run()
        .await;
    let h = a_holds_the_lock(&d, ClientOptions::meta(d.meta_addrs()), false).await;
    let (a, slot, from, to) = (&h.a, h.slot, h.from.clone(), h.to.clone());
    // First another slot of the same cell moves, with a file `a` has open: `a`'s session
    // there is carried on at the target, which therefore knows it before the lock's slot
    // comes (as after any earlier move; in the chaos session, a slot that moved there
    // before).
    let map = d.map();
    let other_dir = (0..10_000)
        .map(|i| format!("/other{i}"))
        .find(|p| {
            matches!(map.route(&format!("/ls/local{p}/f"), false),
                Ok(Route::Cell { cell, slot: s }) if cell == from.as_str() && s != slot)
        })
        .expect("another slot at the source");
    let (dir2, _) = a
        .open(&other_dir, OpenOptions::new().create_dir())
        .await
        .expect("create the other directory");
    dir2.close().await;
    let (file, _) = a
        .open(
            &format!("{other_dir}/f"),
            OpenOptions::new().read().create_file(b"x".to_vec()),
        )
        .await
        .expect("create the other file");
    let (other_slot, _, _) = slot_and_cells(&d, &format!("/ls/local{other_dir}/f"));
    crate::fixture::move_slot(&d, other_slot, &from, &to).await;
    assert_eq!(file.stat().await.expect("stat after its move").cell, to);

    // The target's link to the meta cell (where it reads the map) holds still for 2 s
    // across the hand-off and the new map.
    d.meta_link(&to).pause();
    let late = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        d.meta_link(&to).resume();
    };
    tokio::join!(crate::fixture::move_slot(&d, slot, &from, &to), late);
    let (other, _) =
        h.b.open(&format!("{DIR}/lock"), OpenOptions::new().write())
            .await
            .expect("b opens lock");
    file.close().await;
    h.hand_over(other).await;
}

/// Through a proxy, a lock held before the move stays held by its holder well past the
/// leases and the claim window: the client sub-session that moved with the slot (its
/// holder never used the new cell) joins the proxy's session at the new cell, claimed on
/// `SLOT_MOVED` although the holder makes no call, and the proxy keeps it alive.
#[tokio::test]
async fn through_a_proxy_a_lock_held_before_the_move_outlives_the_leases() {
    let lease = Duration::from_secs(2);
    let d = Deployment::builder()
        .cells(2)
        .proxies(1)
        .lease(lease)
        .proxy_lease(lease * 2 + Duration::from_secs(1))
        .claim_window(lease * 2)
        .client_lease(lease)
        .run()
        .await;
    // b makes the directory (whose entry may live at the target): the holder touches
    // nothing but the source, so its session comes to the target only with the slot.
    let h = a_holds_the_lock(&d, ClientOptions::proxies(d.proxy_addrs()), true).await;

    crate::fixture::move_slot(&d, h.slot, &h.from, &h.to).await;
    // The holder makes no call; several leases pass.
    tokio::time::sleep(lease * 4).await;
    let (other, _) =
        h.b.open(&format!("{DIR}/lock"), OpenOptions::new().write())
            .await
            .expect("b opens lock");
    let err = other
        .try_acquire(LockMode::Exclusive)
        .await
        .expect_err("still held");
    assert_eq!(err.code(), Some(ErrorCode::LockHeld), "{err}");
    assert!(
        h.b.check_sequencer(&h.seq).await.expect("check"),
        "still current"
    );
    h.hand_over(other).await;
}

/// Through a proxy, an `Acquire` waiting at the source when the slot moves carries on at
/// the target: the source answers it `WRONG_CELL` at the hand-off, the proxy sends it again
/// (same token) to the new owner, and it is granted there once the holder releases.
#[tokio::test]
async fn through_a_proxy_a_waiting_acquire_follows_the_lock() {
    let d = Deployment::builder().cells(2).proxies(1).run().await;
    let HeldLock {
        a,
        b,
        lock,
        seq: first,
        slot,
        from,
        to,
    } = a_holds_the_lock(&d, ClientOptions::proxies(d.proxy_addrs()), false).await;
    let (waiter, _) = b
        .open(&format!("{DIR}/lock"), OpenOptions::new().write())
        .await
        .expect("b opens lock");
    let waiting = tokio::spawn(async move {
        let got = waiter
            .acquire(LockMode::Exclusive, Some(Duration::from_secs(30)))
            .await;
        (waiter, got)
    });
    // Let it reach the source and wait there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "b waits while a holds the lock");

    crate::fixture::move_slot(&d, slot, &from, &to).await;
    assert!(!waiting.is_finished(), "still waiting after the move");
    assert!(lock.release().await.expect("release"), "a held it");
    let (waiter, got) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("b's Acquire is answered once a releases")
        .expect("the task");
    let second = got.expect("b gets the lock at the new owner");
    assert!(second.lock_generation > first.lock_generation);
    assert!(b.check_sequencer(&second).await.expect("check"));
    waiter.close().await;
    lock.close().await;
    a.close().await.ok();
    b.close().await.ok();
}

/// A reader's cached copy never outlives a write, whichever way its node last moved: a
/// reader keeps one handle open (so its reads are answered from its cache between writes)
/// while `DIR`'s slot moves to the other data cell and back, `ROUNDS` times, and a writer
/// writes after each move. Every read after a write must return it. In direct mode a
/// move back brings the reader's cell session back to a cell where the reader already
/// has one of that id (chaos finding 3, docs/reliability.md).
async fn cached_reads_across_moves(d: &Deployment, options: ClientOptions) {
    const ROUNDS: usize = 4;
    let r = Session::connect_with(options.clone())
        .await
        .expect("connect the reader");
    let w = Session::connect_with(options)
        .await
        .expect("connect the writer");
    let path = format!("{DIR}/f");
    let (slot, first, second) = slot_and_cells(d, &format!("/ls/local{path}"));
    let (dir, _) = w
        .open(DIR, OpenOptions::new().create_dir())
        .await
        .expect("create the directory");
    dir.close().await;
    let (wh, _) = w
        .open(
            &path,
            OpenOptions::new().write().create_file(b"v0".to_vec()),
        )
        .await
        .expect("create f");
    let (rh, _) = r
        .open(&path, OpenOptions::new().read())
        .await
        .expect("the reader opens f");
    // Reads a value twice: the first from wherever, the second from the cache when the
    // first was cacheable. Both must be `want`.
    let read_twice = |want: String, when: String| {
        let rh = &rh;
        async move {
            for i in 0..2 {
                let (data, _) = rh
                    .contents()
                    .await
                    .unwrap_or_else(|e| panic!("{when}: read {i}: {e}"));
                assert_eq!(
                    String::from_utf8_lossy(&data),
                    want,
                    "{when}: read {i} returned a value older than an acknowledged write"
                );
            }
        }
    };
    read_twice("v0".into(), "before any move".into()).await;
    let hits = r.cache_stats().hits;
    read_twice("v0".into(), "before any move, again".into()).await;
    assert!(
        r.cache_stats().hits > hits,
        "the reader's reads are answered from its cache (else this test checks nothing)"
    );
    let mut last = "v0".to_string();
    for round in 1..=ROUNDS {
        let (from, to) = if round % 2 == 1 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        crate::fixture::move_slot(d, slot, from, to).await;
        let when = format!("after move {round} ({from} → {to})");
        read_twice(last.clone(), when.clone()).await;
        for suffix in ["", "b"] {
            let value = format!("v{round}{suffix}");
            wh.set_contents(value.clone().into_bytes())
                .await
                .unwrap_or_else(|e| panic!("{when}: write {value}: {e}"));
            read_twice(value.clone(), format!("{when}, after its write")).await;
            last = value;
        }
        // A handle opened now, too (a fresh open may share the cached server handle).
        let (fresh, _) = r
            .open(&path, OpenOptions::new().read())
            .await
            .unwrap_or_else(|e| panic!("{when}: a fresh open: {e}"));
        assert_eq!(
            fresh.contents().await.expect("read a fresh handle").0,
            last.as_bytes(),
            "{when}: a fresh handle read a value older than an acknowledged write"
        );
        fresh.close().await;
    }
    assert!(
        r.cache_stats().hits > hits + 2,
        "the reader's cache answered reads between the moves"
    );
    rh.close().await;
    wh.close().await;
    r.close().await.ok();
    w.close().await.ok();
}

#[tokio::test]
async fn in_direct_mode_a_cached_copy_never_outlives_a_write_as_its_node_moves_back_and_forth() {
    let d = Deployment::builder().cells(2).proxies(0).run().await;
    cached_reads_across_moves(&d, ClientOptions::meta(d.meta_addrs())).await;
}

#[tokio::test]
async fn through_a_proxy_a_cached_copy_never_outlives_a_write_as_its_node_moves_back_and_forth() {
    let d = Deployment::builder().cells(2).proxies(1).run().await;
    cached_reads_across_moves(&d, ClientOptions::proxies(d.proxy_addrs())).await;
}
