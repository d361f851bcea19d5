//! The proxy core with synthetic time: lease nesting, relayed events and the upstream
//! acknowledgement they hold back, adoption, expiry.

use super::*;

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn cfg(cells: usize) -> CoreConfig {
    CoreConfig {
        client_lease: 12 * S,
        reply_before_end: S,
        margin: S,
        max_starve: 60 * S,
        cells,
        cover_reach: None,
    }
}

fn ev(seq: u64, kind: pb::EventType, path: &str, client: Option<&ClientId>) -> pb::Event {
    pb::Event {
        seq,
        r#type: kind as i32,
        path: path.to_string(),
        client_session: client.map(|c| c.to_vec()).unwrap_or_default(),
        ..Default::default()
    }
}

fn done(r: Result<Reply<KeepAliveReply>, WarrenError>) -> KeepAliveReply {
    match r.expect("keepalive ok") {
        Reply::Done(r) => r,
        Reply::Wait(_) => panic!("expected an immediate answer"),
    }
}

fn waits(r: Result<Reply<KeepAliveReply>, WarrenError>) -> WaiterId {
    match r.expect("keepalive ok") {
        Reply::Wait(w) => w,
        Reply::Done(r) => panic!("expected the KeepAlive to be held, got {r:?}"),
    }
}

fn wake_of(core: &mut ProxyCore, w: WaiterId) -> KeepAliveReply {
    let out = core.take_output();
    let (_, r) = out
        .wakes
        .into_iter()
        .find(|(id, _)| *id == w)
        .expect("the held KeepAlive was answered");
    r.expect("answered with a reply")
}

/// A KeepAlive sent when the lease the client was last told is about to end (or has): it
/// is answered at once with what the cells allow, and the client's next one, sent at
/// once, is held (until shortly before the end that answer told it).
fn late_then_held(core: &mut ProxyCore, id: &ClientId, at: Instant) -> WaiterId {
    done(core.keepalive(id, 0, at));
    waits(core.keepalive(id, 0, at))
}

/// A core whose proxy session at every cell is live until `t0 + 20 s`.
fn setup(cells: usize) -> (ProxyCore, Instant) {
    let t0 = Instant::now();
    let mut core = ProxyCore::new(cfg(cells), t0);
    for c in 0..cells {
        core.upstream_lease(c, t0 + 20 * S, t0);
    }
    (core, t0)
}

#[test]
fn a_client_without_state_at_any_cell_gets_the_full_lease_held_until_near_its_end() {
    let (mut core, t0) = setup(1);
    let (id, _, lease, epoch) = core.create_session("alice", t0);
    assert_eq!((lease, epoch), (12 * S, 1));
    let w = waits(core.keepalive(&id, 0, t0));
    // Not answered before lease end − reply_before_end − jitter (≤ 100 ms).
    core.tick(t0 + 10 * S);
    assert!(core.take_output().wakes.is_empty());
    core.tick(t0 + 11 * S);
    let r = wake_of(&mut core, w);
    // Rule (b) as at a cell: the reply extends the lease to a full lease from now, and
    // the lease is counted from when the KeepAlive arrived (11 s held + 12 s).
    assert_eq!(r.lease, 23 * S);
}

#[test]
fn client_leases_never_outlive_the_proxy_session_at_a_cell_where_they_have_state() {
    let t0 = Instant::now();
    let mut core = ProxyCore::new(cfg(2), t0);
    core.upstream_lease(0, t0 + 20 * S, t0);
    core.upstream_lease(1, t0 + 40 * S, t0);
    let (a, _, _, _) = core.create_session("a", t0);
    let (b, _, _, _) = core.create_session("b", t0);
    core.registered(&a, 0);
    core.registered(&b, 1);
    let t = t0 + 11 * S;
    let wa = late_then_held(&mut core, &a, t);
    let wb = late_then_held(&mut core, &b, t);
    core.tick(t0 + 18 * S);
    let ra = wake_of(&mut core, wa);
    // Capped at cell 0's proxy session (t0 + 20 s) − margin (1 s): t0 + 19 s, i.e. 8 s
    // from the KeepAlive's arrival, although 12 s were asked.
    assert_eq!(ra.lease, 8 * S);
    assert!(t + ra.lease <= t0 + 20 * S - S);
    core.tick(t0 + 22 * S);
    let rb = wake_of(&mut core, wb);
    assert_eq!(
        rb.lease,
        23 * S,
        "b uses only cell 1, which allows full leases"
    );
}

#[test]
fn a_client_whose_cell_stops_extending_waits_held_and_resumes_when_it_does() {
    // The same whether or not the client says it is in jeopardy (its lease has run out):
    // a lease about to end is not worth an answer.
    for jeopardy in [false, true] {
        a_client_whose_cell_stops_extending(jeopardy);
    }
}

fn a_client_whose_cell_stops_extending(jeopardy: bool) {
    let (mut core, t0) = setup(1);
    let (id, _, _, _) = core.create_session("c", t0);
    core.registered(&id, 0);
    // The cell fails over: no more upstream replies. The client's lease can reach at most
    // 20 − 1 = 19 s.
    let t = t0 + 15 * S;
    let w = late_then_held(&mut core, &id, t);
    core.tick(t0 + 18 * S + S / 2);
    let r = wake_of(&mut core, w);
    assert!(r.lease <= 4 * S, "{:?}", r.lease);
    // Its next KeepAlive cannot be extended: held until the cell is back.
    let t = t0 + 18 * S + S / 2;
    let w = waits(core.keepalive_with(&id, 0, jeopardy, t));
    core.tick(t0 + 25 * S);
    assert!(
        core.take_output().wakes.is_empty(),
        "held while the cell is away"
    );
    assert_eq!(core.counts().starving, 1);
    // Not expired while it waits, though its lease has ended.
    assert!(core.identity(&id).is_some());
    // The new master answers the proxy: the client gets a fresh lease at once.
    let now = t0 + 26 * S;
    core.upstream_lease(0, now + 20 * S, now);
    let r = wake_of(&mut core, w);
    assert!(r.lease >= 11 * S, "{:?}", r.lease);
    assert_eq!(core.counts().starving, 0);
}

/// A KeepAlive marked `jeopardy` (the client's local lease ended: a reply that extended
/// its lease here was lost on the way) is answered at once when the lease can run on. (One
/// that a failing cell keeps from growing is held as before, not answered with a lease
/// about to end, which would flip the client between safe and jeopardy:
/// `a_client_whose_cell_stops_extending_waits_held_and_resumes_when_it_does`.)
#[test]
fn a_keepalive_in_jeopardy_is_answered_at_once_when_the_lease_runs_on() {
    let (mut core, t0) = setup(1);
    let (id, _, _, _) = core.create_session("c", t0);
    core.registered(&id, 0);
    // Held, then answered near its end with a lease to about 23 s, a reply the client
    // never sees.
    let w = waits(core.keepalive(&id, 0, t0));
    core.upstream_lease(0, t0 + 40 * S, t0 + 5 * S);
    core.tick(t0 + 11 * S);
    wake_of(&mut core, w);
    // Its local lease ends near 11.9 s. A KeepAlive without the mark is held (the lease
    // here runs to about 23 s); the same in jeopardy is answered at once.
    let t = t0 + 12 * S;
    waits(core.keepalive(&id, 0, t));
    let r = done(core.keepalive_with(&id, 0, true, t));
    assert!(r.lease >= 10 * S, "{:?}", r.lease);
}

/// A client whose reply carrying events was lost, and whose repeats were lost too, goes
/// into jeopardy having emptied its cache. Its KeepAlive in jeopardy lets the lease grow
/// although the events are unacknowledged, as at a cell. The upstream acknowledgement
/// those events hold waits only until the lease as it was ends. Events relayed after
/// that KeepAlive are not bounded by it.
#[test]
fn a_keepalive_in_jeopardy_renews_the_lease_and_bounds_the_upstream_ack_waiting_on_it() {
    let (mut core, t0) = setup(1);
    core.upstream_lease(0, t0 + 60 * S, t0);
    let (id, _, _, _) = core.create_session("c", t0);
    core.registered(&id, 0);
    let w = waits(core.keepalive(&id, 0, t0));
    // At 11 s an event for it answers the held KeepAlive; that reply (the lease to about
    // 23 s, and the event) never reaches the client.
    core.upstream_events(
        0,
        &[ev(1, pb::EventType::ContentsModified, "/ls/d/f", Some(&id))],
        t0 + 11 * S,
    );
    let lost = wake_of(&mut core, w);
    assert_eq!(
        (lost.events.len(), lost.lease),
        (1, 23 * S),
        "counted from t0"
    );
    // Its local lease ended near 12 s; its KeepAlives in jeopardy were lost until 20 s.
    let r = done(core.keepalive_with(&id, 0, true, t0 + 20 * S));
    assert_eq!(r.events.len(), 1, "the event again");
    assert!(r.lease >= 11 * S, "the lease grew: {:?}", r.lease);
    // A later event, relayed after that KeepAlive, is not bounded by it.
    core.upstream_events(
        0,
        &[ev(2, pb::EventType::ContentsModified, "/ls/d/g", Some(&id))],
        t0 + 21 * S,
    );
    core.tick(t0 + 22 * S + 900 * MS);
    assert_eq!(core.upstream_ack(0), 0, "the lease as it was still runs");
    core.tick(t0 + 23 * S + 100 * MS);
    assert_eq!(
        core.upstream_ack(0),
        1,
        "released at the end of the lease as it was"
    );
    core.tick(t0 + 30 * S);
    assert_eq!(core.upstream_ack(0), 1, "the later event still waits");
    assert!(core.identity(&id).is_some(), "the client lives on");
    // It acknowledges both.
    let _ = core.keepalive(&id, 2, t0 + 30 * S);
    assert_eq!(core.upstream_ack(0), 2);
}

/// As the client library does it: in jeopardy each KeepAlive gives up after 2 s and the
/// next one follows a `Locate` later. Between them no KeepAlive is held, and the lease has
/// ended — because the cell held it back, so the session lives on (for `max_starve`), and
/// its next KeepAlive is held, not told `SESSION_EXPIRED`.
#[test]
fn a_client_starved_by_its_cell_survives_keepalives_that_come_and_go() {
    let (mut core, t0) = setup(1);
    let (id, secret, _, _) = core.create_session("c", t0);
    core.registered(&id, 0);
    // The cell stops extending at t0 + 20 s: the client's lease ends at 19 s.
    let w = late_then_held(&mut core, &id, t0 + 15 * S);
    core.tick(t0 + 18 * S + S / 2);
    wake_of(&mut core, w);
    let w = waits(core.keepalive(&id, 0, t0 + 18 * S + S / 2));
    core.cancel(w);
    core.tick(t0 + 21 * S);
    assert!(core.identity(&id).is_some(), "expired between KeepAlives");
    assert!(core.take_output().effects.is_empty(), "ended at the cell");
    assert!(matches!(
        core.check(&id, &secret, 1, t0 + 22 * S),
        Ok(Known::Yes)
    ));
    let w = waits(core.keepalive(&id, 0, t0 + 22 * S));
    let now = t0 + 23 * S;
    core.upstream_lease(0, now + 20 * S, now);
    let r = wake_of(&mut core, w);
    assert!(r.lease >= 11 * S, "{:?}", r.lease);
    // Safe again: a client that now goes silent expires at the end of its lease, as usual.
    core.tick(now + 12 * S + S / 2);
    assert!(core.identity(&id).is_none(), "a silent client expires");
}

/// A client whose lease has ended (starved by its cell, or gone to another proxy) does not
/// hold up the proxy's acknowledgement of the cell's fail-over: its cache is empty, as for
/// a session that let its lease expire. The event is still delivered when it comes back.
#[test]
fn a_client_whose_lease_ended_does_not_hold_up_the_upstream_ack() {
    let (mut core, t0) = setup(1);
    let (id, _, _, _) = core.create_session("c", t0);
    core.registered(&id, 0);
    // The cell stops extending at t0 + 20 s: the lease reaches 19 s at most. An event
    // relayed meanwhile and never acknowledged is released when the lease ends.
    let w = late_then_held(&mut core, &id, t0 + 15 * S);
    core.upstream_events(
        0,
        &[ev(1, pb::EventType::ContentsModified, "/ls/d/f", Some(&id))],
        t0 + 16 * S,
    );
    assert_eq!(wake_of(&mut core, w).events.len(), 1);
    core.tick(t0 + 18 * S);
    assert_eq!(core.upstream_ack(0), 0, "its lease still runs");
    core.tick(t0 + 19 * S + S / 2);
    assert_eq!(core.upstream_ack(0), 1);
    // The cell comes back with a new epoch and a fail-over event for it: acknowledged at once.
    let now = t0 + 25 * S;
    core.upstream_restarted(0);
    core.upstream_lease(0, now + 20 * S, now);
    core.upstream_events(
        0,
        &[ev(1, pb::EventType::MasterFailover, "", Some(&id))],
        now,
    );
    assert_eq!(core.upstream_ack(0), 1);
    assert!(core.identity(&id).is_some());
    let r = done(core.keepalive(&id, 0, now));
    let kinds: Vec<i32> = r.events.iter().map(|e| e.r#type).collect();
    assert_eq!(
        kinds,
        [
            pb::EventType::ContentsModified as i32,
            pb::EventType::MasterFailover as i32
        ]
    );
}

/// A starved client that never comes back expires `max_starve` after its lease.
#[test]
fn a_starved_client_that_never_returns_expires_after_max_starve() {
    let (mut core, t0) = setup(1);
    let (id, _, _, _) = core.create_session("c", t0);
    core.registered(&id, 0);
    let w = late_then_held(&mut core, &id, t0 + 15 * S);
    core.tick(t0 + 18 * S + S / 2);
    wake_of(&mut core, w);
    let w = waits(core.keepalive(&id, 0, t0 + 18 * S + S / 2));
    core.cancel(w);
    core.tick(t0 + 19 * S + 59 * S);
    assert!(core.identity(&id).is_some());
    core.tick(t0 + 19 * S + 61 * S);
    assert!(core.identity(&id).is_none(), "kept past max_starve");
}

/// The proxy itself stalled (a frozen process, or cut off) past its clients' leases, which
/// meanwhile went to another proxy: on waking it neither keeps them as starved nor claims
/// them back onto a new session at the cell (that would take them from the other proxy).
/// A starved client that stays claims back; one that stopped calling here does not.
#[test]
fn only_clients_still_here_are_claimed_onto_a_new_proxy_session() {
    let (mut core, t0) = setup(1);
    let (gone, _, _, _) = core.create_session("gone", t0);
    let (stays, secret, _, _) = core.create_session("stays", t0);
    let (left, _, _, _) = core.create_session("left", t0);
    for id in [&gone, &stays, &left] {
        core.registered(id, 0);
    }
    // `gone` had a full lease (to 13 s) when the proxy froze; it wakes at 17 s.
    let w = waits(core.keepalive(&gone, 0, t0 + S));
    // The cell stops extending: `stays` and `left` are starved (leases end at 19 s).
    let ws = late_then_held(&mut core, &stays, t0 + 15 * S);
    let wl = late_then_held(&mut core, &left, t0 + 15 * S);
    core.tick(t0 + 17 * S);
    let _ = core.take_output();
    core.cancel(w);
    let _ = (ws, wl);
    core.tick(t0 + 18 * S + S / 2);
    let _ = core.take_output();
    // `left` gives up at 20.5 s and goes elsewhere; `stays` keeps calling.
    let wl = waits(core.keepalive(&left, 0, t0 + 18 * S + S / 2));
    let ws = waits(core.keepalive(&stays, 0, t0 + 18 * S + S / 2));
    core.cancel(wl);
    core.cancel(ws);
    assert!(matches!(
        core.check(&stays, &secret, 1, t0 + 34 * S),
        Ok(Known::Yes)
    ));
    let _ws = waits(core.keepalive(&stays, 0, t0 + 34 * S));
    core.tick(t0 + 34 * S);
    let claim: Vec<ClientId> = core
        .clients_at(0, t0 + 35 * S)
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(claim, vec![stays]);
    assert!(core.identity(&gone).is_none(), "not kept as starved");
}

#[test]
fn a_relayed_event_is_acknowledged_upstream_only_after_its_client_acks() {
    let (mut core, t0) = setup(1);
    let (id, _, _, _) = core.create_session("c", t0);
    core.registered(&id, 0);
    core.upstream_events(
        0,
        &[
            ev(1, pb::EventType::ContentsModified, "/ls/d/f", Some(&id)),
            ev(2, pb::EventType::ChildChanged, "/ls/d", Some(&id)),
        ],
        t0,
    );
    assert_eq!(
        core.upstream_ack(0),
        0,
        "nothing acknowledged before the client acks"
    );
    let r = done(core.keepalive(&id, 0, t0));
    assert_eq!(r.events.len(), 2);
    assert_eq!(r.events[0].seq, 1, "renumbered in the client's own stream");
    assert!(
        r.events.iter().all(|e| e.client_session.is_empty()),
        "tag stripped"
    );
    // Acknowledging the first releases upstream seq 1 only.
    assert!(core.upstream_waiting(0));
    let _ = core.keepalive(&id, 1, t0);
    assert_eq!(core.upstream_ack(0), 1);
    assert!(core.upstream_waiting(0), "seq 2 still waits for the client");
    let _ = core.keepalive(&id, 2, t0);
    assert_eq!(core.upstream_ack(0), 2);
    assert!(!core.upstream_waiting(0));
    assert!(core.take_output().effects.contains(&Effect::AckUpstream(0)));
}

/// What the KeepAlive loop holds its next upstream KeepAlive back for: only events that
/// went to a client and wait for its ack; one that no client needed (an invalidation of a
/// path nobody here cached) is acknowledgeable at once, and a new session at the cell
/// forgets what waited.
#[test]
fn only_events_relayed_to_clients_keep_the_upstream_ack_waiting() {
    let (mut core, t0) = setup(2);
    assert!(!core.upstream_waiting(0), "nothing received");
    core.upstream_events(
        0,
        &[ev(1, pb::EventType::Invalidate, "/ls/d/nobody", None)],
        t0,
    );
    assert_eq!(core.upstream_ack(0), 1);
    assert!(!core.upstream_waiting(0));
    let (id, _, _, _) = core.create_session("c", t0);
    core.registered(&id, 0);
    core.upstream_events(
        0,
        &[ev(2, pb::EventType::LockAcquired, "/ls/d/l", Some(&id))],
        t0,
    );
    assert!(core.upstream_waiting(0));
    assert!(
        !core.upstream_waiting(1),
        "another cell's acknowledgement is its own"
    );
    core.upstream_restarted(0);
    assert!(
        !core.upstream_waiting(0),
        "a new session starts with nothing outstanding"
    );
}

#[test]
fn an_invalidation_goes_to_every_client_that_cached_the_path_and_a_silent_one_expires() {
    let (mut core, t0) = setup(1);
    let (a, _, _, _) = core.create_session("a", t0);
    let (b, _, _, _) = core.create_session("b", t0);
    let (c, _, _, _) = core.create_session("c", t0);
    let t = core.cache.ticket();
    assert!(core.note_cacher(&a, "/ls/d/f", Some(t)));
    assert!(core.note_cacher(&b, "/ls/d/f", Some(t)));
    core.cache
        .fill("/ls/d/f", t, |e| e.stat = Some(pb::Stat::default()));
    core.upstream_events(0, &[ev(1, pb::EventType::Invalidate, "/ls/d/f", None)], t0);
    assert!(
        core.cache.get("/ls/d/f").is_none(),
        "the shared cache dropped it"
    );
    let ra = done(core.keepalive(&a, 0, t0));
    assert_eq!(ra.events[0].r#type, pb::EventType::Invalidate as i32);
    assert!(done(core.keepalive(&b, 0, t0)).events.len() == 1);
    assert_eq!(core.take_output().wakes.len(), 0);
    // c never cached it: nothing for c.
    let _ = waits(core.keepalive(&c, 0, t0));
    let _ = core.keepalive(&a, 1, t0);
    assert_eq!(core.upstream_ack(0), 0, "b has not acknowledged");
    // b goes silent; rule (b) means its lease is not extended again, so it expires
    // within one client lease and the proxy acknowledges upstream.
    core.tick(t0 + 13 * S);
    assert!(core.identity(&b).is_none(), "b expired");
    assert_eq!(core.upstream_ack(0), 1);
    // And the proxy ends b at the cells where it had state (none here).
    let fx = core.take_output().effects;
    assert!(!fx
        .iter()
        .any(|e| matches!(e, Effect::EndAtCells { client, .. } if *client == b)));
}

#[test]
fn a_fill_after_an_invalidation_is_not_cacheable_for_the_client() {
    let (mut core, t0) = setup(1);
    let (a, _, _, _) = core.create_session("a", t0);
    let t = core.cache.ticket();
    // The read was in flight when the invalidation arrived.
    core.upstream_events(0, &[ev(1, pb::EventType::Invalidate, "/ls/d/f", None)], t0);
    assert!(
        !core.note_cacher(&a, "/ls/d/f", Some(t)),
        "must be passed on as uncacheable"
    );
    assert!(!core
        .cache
        .fill("/ls/d/f", t, |e| e.stat = Some(pb::Stat::default())));
}

#[test]
fn a_write_by_the_only_cacher_drops_the_proxys_copy_and_keeps_the_path_uncacheable_until_answered()
{
    let (mut core, t0) = setup(1);
    let (a, _, _, _) = core.create_session("a", t0);
    let (b, _, _, _) = core.create_session("b", t0);
    let f = "/ls/d/f";
    let t = core.cache.ticket();
    assert!(core.note_cacher(&a, f, Some(t)));
    core.cache
        .fill(f, t, |e| e.stat = Some(pb::Stat::default()));

    // a, the only client holding a copy, writes: the proxy may ask to be spared.
    assert!(core.begin_own_write(&a, f));
    assert!(!core.cache.contains(f), "the proxy's own copy is gone");
    // Meanwhile b's read (ticket taken during the write) may not be cached, nor passed on
    // as cacheable, even if it is answered before the write is.
    let during = core.cache.ticket();
    assert!(!core.note_cacher(&b, f, Some(during)));
    assert!(!core.note_cacher(&b, f, None));
    // A second write of the same path in flight keeps it uncacheable after the first ends.
    assert!(core.begin_own_write(&a, f));
    core.end_own_write(f);
    assert!(!core.note_cacher(&b, f, Some(core.cache.ticket())));
    core.end_own_write(f);
    // Answered: a read begun before the end may predate the write and is still refused; a
    // read begun after it is cacheable.
    assert!(!core.note_cacher(&b, f, Some(during)));
    let after = core.cache.ticket();
    assert!(core.note_cacher(&b, f, Some(after)));
    assert!(core
        .cache
        .fill(f, after, |e| e.stat = Some(pb::Stat::default())));

    // Now b holds a copy: a's write cannot spare the proxy (the cell's invalidation will be
    // relayed to b), but a itself, whose library drops its copy on writing, gets none.
    assert!(core.note_cacher(&a, f, Some(core.cache.ticket())));
    assert!(!core.begin_own_write(&a, f));
    assert!(
        core.cache.contains(f),
        "kept until the cell's invalidation arrives"
    );
    core.upstream_events(0, &[ev(1, pb::EventType::Invalidate, f, None)], t0);
    let invalidations = |core: &ProxyCore, id: &ClientId| {
        core.clients[id]
            .lease
            .events()
            .filter(|q| q.event.r#type == pb::EventType::Invalidate as i32)
            .count()
    };
    assert!(core.clients[&b].cached.is_empty(), "b was told");
    assert!(core.clients[&a].cached.is_empty());
    assert_eq!(
        invalidations(&core, &a),
        0,
        "the writer is not sent an invalidation of its own write"
    );
    assert_eq!(invalidations(&core, &b), 1);
}

#[test]
fn an_adopted_client_sees_a_higher_epoch_and_a_failover_event_first() {
    let (mut core, t0) = setup(1);
    let id = [7u8; 16];
    let mut cells = BTreeSet::new();
    cells.insert(0);
    assert!(matches!(
        core.check(&id, &[1; 16], 5, t0),
        Ok(Known::Unknown)
    ));
    let epoch = core.adopt(id, [1; 16], "p".into(), 5, cells, t0);
    assert_eq!(epoch, 6);
    let e = core
        .check(&id, &[1; 16], 5, t0)
        .err()
        .expect("old epoch refused");
    assert_eq!((e.code, e.epoch), (warren_proto::ErrorCode::StaleEpoch, 6));
    assert!(
        matches!(core.check(&id, &[2; 16], 6, t0), Err(e) if e.code == warren_proto::ErrorCode::PermissionDenied)
    );
    let r = done(core.keepalive(&id, 0, t0));
    assert_eq!(r.epoch, 6);
    assert_eq!(r.events[0].seq, 1);
    assert_eq!(r.events[0].r#type, pb::EventType::MasterFailover as i32);
    assert!(core.is_registered(&id, 0));
}

/// A storm of adoptions can leave the proxy's session at a cell lagging (its KeepAlive
/// there waits behind the claims): a client adopted then gets a lease the cover cuts to
/// almost nothing. Its next call — the KeepAlive it retries with the new epoch — must find
/// it starved (kept for `max_starve`, answered once the cell extends the proxy's lease),
/// not expire it: the cells already moved it here, and expiring it would end it there too.
#[test]
fn a_client_adopted_while_its_cell_lags_is_kept_until_the_cell_extends_its_lease() {
    let t0 = Instant::now();
    let mut core = ProxyCore::new(cfg(1), t0);
    // Only 1.5 s left at the cell: the cover (minus the 1 s margin) leaves 0.5 s.
    core.upstream_lease(0, t0 + 1500 * MS, t0);
    let id = [9u8; 16];
    let cells: BTreeSet<CellIx> = [0].into_iter().collect();
    let epoch = core.adopt(id, [1; 16], "p".into(), 1, cells, t0);
    assert_eq!(epoch, 2);
    // The client comes back after its adoption lease ended (it backed off, or waited in
    // the adoption queue): kept, not expired.
    let t1 = t0 + 2 * S;
    assert!(
        matches!(core.check(&id, &[1; 16], 2, t1), Ok(Known::Yes)),
        "an adopted client whose cell held its lease back was expired on its next call"
    );
    // The fail-over event comes at once; the KeepAlive acknowledging it waits for the cell.
    let r = done(core.keepalive(&id, 0, t1));
    assert_eq!(r.events[0].r#type, pb::EventType::MasterFailover as i32);
    let w = waits(core.keepalive(&id, r.events[0].seq, t1));
    core.tick(t1 + 5 * S);
    assert!(
        core.take_output().wakes.is_empty(),
        "answered before the cell extended the lease"
    );
    assert!(core.identity(&id).is_some(), "the starved client was ended");
    // The cell answers the proxy again: the client gets a lease, and stays.
    let t2 = t1 + 6 * S;
    core.upstream_lease(0, t2 + 20 * S, t2);
    let r = wake_of(&mut core, w);
    assert!(r.lease >= 11 * S, "lease {:?}", r.lease);
    assert!(core.identity(&id).is_some());
}

#[test]
fn a_client_claimed_away_is_dropped_and_one_that_ended_is_not_adopted_again() {
    let (mut core, t0) = setup(1);
    let (a, sa, _, _) = core.create_session("a", t0);
    core.registered(&a, 0);
    core.upstream_events(0, &[ev(1, pb::EventType::SessionClaimed, "", Some(&a))], t0);
    assert!(core.identity(&a).is_none());
    assert_eq!(core.upstream_ack(0), 1);
    // Dropped, not ended: no CloseSession at the cell (the other proxy holds it now).
    assert!(core
        .take_output()
        .effects
        .iter()
        .all(|e| !matches!(e, Effect::EndAtCells { .. })));
    // A session that was closed here is expired, not adoptable.
    let (b, sb, _, _) = core.create_session("b", t0);
    core.registered(&b, 0);
    core.close_session(&b, t0);
    let fx = core.take_output().effects;
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::EndAtCells { client, expired: false, .. } if *client == b)));
    assert!(
        matches!(core.check(&b, &sb, 1, t0), Err(e) if e.code == warren_proto::ErrorCode::SessionExpired)
    );
    let _ = sa;
}

/// A call sent to this proxy before its client moved to another arrives late (it was held
/// in a partition): it names the epoch this proxy showed the client, and is refused with
/// `NOT_MASTER` naming nobody (not `SESSION_EXPIRED`: the session lives on) rather than
/// adopt the client back (which would end its session at the other proxy,
/// whole-deployment simulation seeds 5885 and 5187). The client coming back, with the
/// higher epoch the other proxy showed it, is adopted as any client from another proxy.
#[test]
fn a_late_call_from_a_client_claimed_away_does_not_adopt_it_back() {
    let (mut core, t0) = setup(1);
    let (a, sa, _, epoch) = core.create_session("a", t0);
    core.registered(&a, 0);
    core.upstream_events(0, &[ev(1, pb::EventType::SessionClaimed, "", Some(&a))], t0);
    assert!(core.identity(&a).is_none());
    let late = core.check(&a, &sa, epoch, t0 + S);
    assert!(
        matches!(&late, Err(e) if e.code == warren_proto::ErrorCode::NotMaster && e.master.is_empty() && e.message.contains("moved to another proxy")),
        "{:?}",
        late.err()
    );
    assert!(matches!(
        core.check(&a, &sa, epoch + 1, t0 + S),
        Ok(Known::Unknown)
    ));
}

#[test]
fn a_cell_failover_invalidates_at_clients_what_they_cached_from_it() {
    let (mut core, t0) = setup(2);
    let (a, _, _, _) = core.create_session("a", t0);
    let t = core.cache.ticket();
    core.note_fetched(&a, "/ls/d/x", t, 0);
    core.note_fetched(&a, "/ls/e/y", t, 1);
    core.upstream_events(0, &[ev(1, pb::EventType::MasterFailover, "", None)], t0);
    let r = done(core.keepalive(&a, 0, t0));
    let paths: Vec<&str> = r.events.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["/ls/d/x"],
        "only what came from the failed cell"
    );
    assert_eq!(core.upstream_ack(0), 0);
    let _ = core.keepalive(&a, 1, t0);
    assert_eq!(core.upstream_ack(0), 1);
}

#[test]
fn after_a_cell_failover_a_clients_handles_there_must_reach_the_cell_once() {
    let (mut core, t0) = setup(2);
    let (a, _, _, _) = core.create_session("a", t0);
    let info = |cell| HandleInfo {
        cell,
        path: "/ls/d/f".into(),
        instance: 1,
        intent: 1,
        sequencer: false,
        unconfirmed: false,
    };
    core.add_handle(&a, b"h0".to_vec(), info(0));
    core.add_handle(&a, b"h1".to_vec(), info(1));
    core.upstream_events(0, &[ev(1, pb::EventType::MasterFailover, "", Some(&a))], t0);
    assert!(
        core.handle(&a, b"h0").unwrap().unconfirmed,
        "recreated at the cell on next use"
    );
    assert!(
        !core.handle(&a, b"h1").unwrap().unconfirmed,
        "the other cell did not fail over"
    );
    core.confirm_handle(&a, b"h0");
    assert!(!core.handle(&a, b"h0").unwrap().unconfirmed);
}

/// With a map, a directory's listing and stat come from its child anchor's cell, and its
/// absence (before it was created) from its parent's cell: each cell's fail-over flushes
/// exactly what came from it, whatever cell the path's parent slot names.
#[test]
fn a_cell_failover_flushes_what_came_from_it_not_what_its_slot_would_say() {
    let (mut core, t0) = setup(3);
    let (a, _, _, _) = core.create_session("a", t0);
    let t = core.cache.ticket();
    // /ls/d/dir: entry in cell 0, anchor in cell 1 (its listing was fetched there).
    assert!(core.note_fetched(&a, "/ls/d/dir", t, 1));
    core.cache.fill("/ls/d/dir", t, |e| {
        e.dir = Some((Vec::new(), pb::Stat::default()))
    });
    // /ls/d/gone: cell 0 answered NOT_FOUND.
    assert!(core.note_fetched(&a, "/ls/d/gone", t, 0));
    core.upstream_events(0, &[ev(1, pb::EventType::MasterFailover, "", None)], t0);
    assert!(core.cache.contains("/ls/d/dir"), "cell 0 did not give it");
    let r = done(core.keepalive(&a, 0, t0));
    let paths: Vec<&str> = r.events.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["/ls/d/gone"]);
    core.upstream_events(1, &[ev(1, pb::EventType::MasterFailover, "", None)], t0);
    assert!(!core.cache.contains("/ls/d/dir"));
    let r = done(core.keepalive(&a, 1, t0));
    let paths: Vec<&str> = r.events.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["/ls/d/dir"]);
    // Both acknowledged upstream only once the client acknowledged them.
    assert_eq!((core.upstream_ack(0), core.upstream_ack(1)), (1, 0));
    let _ = core.keepalive(&a, 2, t0);
    assert_eq!(core.upstream_ack(1), 1);
    // A third fail-over finds nothing left to flush.
    core.upstream_events(2, &[ev(1, pb::EventType::MasterFailover, "", None)], t0);
    assert_eq!(core.upstream_ack(2), 1);
}

/// An invalidation from any cell empties the path everywhere (the cache is by path), and
/// what it emptied is no longer counted as coming from the other cell either.
#[test]
fn an_invalidation_from_one_cell_drops_the_path_for_every_cell() {
    let (mut core, t0) = setup(2);
    let (a, _, _, _) = core.create_session("a", t0);
    let t = core.cache.ticket();
    core.note_fetched(&a, "/ls/d/x", t, 0);
    core.note_fetched(&a, "/ls/d/x", t, 1);
    core.upstream_events(1, &[ev(1, pb::EventType::Invalidate, "/ls/d/x", None)], t0);
    let r = done(core.keepalive(&a, 0, t0));
    assert_eq!(r.events.len(), 1);
    let _ = core.keepalive(&a, 1, t0);
    core.upstream_events(0, &[ev(1, pb::EventType::MasterFailover, "", None)], t0);
    // Nothing cached from cell 0 any more: nothing to relay, the KeepAlive is held.
    let _ = waits(core.keepalive(&a, 1, t0 + S));
    assert_eq!(core.upstream_ack(0), 1);
}

/// Cells join when a map first routes a call to them: a client registered at a cell the
/// proxy has no session at yet gets no lease extension until that session exists, and
/// then its lease nests inside every cell's.
#[test]
fn a_cell_that_joins_later_nests_the_leases_of_its_clients() {
    let (mut core, t0) = setup(1);
    let (id, _, _, _) = core.create_session("c", t0);
    core.registered(&id, 0);
    core.registered(&id, 4); // no session there yet
    let w = waits(core.keepalive(&id, 0, t0 + 11 * S));
    core.tick(t0 + 11 * S + S / 2);
    assert!(
        core.take_output().wakes.is_empty(),
        "held: cell 4 cannot extend it"
    );
    // The session at cell 4 is made: the held KeepAlive gets a lease within both cells.
    core.upstream_lease(4, t0 + 18 * S, t0 + 11 * S + S / 2);
    let r = wake_of(&mut core, w);
    assert!(r.lease <= 18 * S - S - 11 * S, "{:?}", r.lease);
    assert!(r.lease > S, "{:?}", r.lease);
    assert_eq!(core.upstream_ack(4), 0);
    assert_eq!(
        core.upstream_ack(9),
        0,
        "a cell never seen has acknowledged nothing"
    );
    assert_eq!(core.upstream_live_until(9), None);
    // Claims after a new session at cell 4 cover this client.
    let at4: Vec<ClientId> = core
        .clients_at(4, t0 + 12 * S)
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(at4, vec![id]);
}

/// Clients that cached an absence and expired leave nothing behind.
#[test]
fn origins_of_paths_nobody_holds_are_forgotten() {
    let (mut core, t0) = setup(1);
    let (a, _, _, _) = core.create_session("a", t0);
    let t = core.cache.ticket();
    core.note_fetched(&a, "/ls/d/none", t, 0);
    core.close_session(&a, t0);
    assert!(core.origins.is_empty());
}

#[test]
fn a_slot_moved_event_asks_to_follow_the_handle_and_still_reaches_the_client() {
    let (mut core, t0) = setup(2);
    let (id, _, _, _) = core.create_session("alice", t0);
    core.registered(&id, 0);
    let mut moved = ev(1, pb::EventType::SlotMoved, "/ls/d/f", Some(&id));
    moved.handle = b"token".to_vec();
    moved.cell = "c2".into();
    // For a client this proxy does not know (claimed away, say): nothing to follow.
    let stranger = [9u8; 16];
    let mut other = ev(2, pb::EventType::SlotMoved, "/ls/d/g", Some(&stranger));
    other.cell = "c2".into();
    core.upstream_events(0, &[moved, other], t0);
    let follows: Vec<Effect> = core
        .take_output()
        .effects
        .into_iter()
        .filter(|e| matches!(e, Effect::FollowMoved { .. }))
        .collect();
    assert_eq!(
        follows,
        vec![Effect::FollowMoved {
            client: id,
            handle: b"token".to_vec(),
            cell: "c2".into(),
            from: 0,
        }]
    );
    // Relayed as any event for the client (its library only notes it).
    let r = done(core.keepalive(&id, 0, t0));
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].r#type, pb::EventType::SlotMoved as i32);
}

#[test]
fn a_moved_handle_is_unconfirmed_by_a_failover_of_its_new_cell_not_its_old_one() {
    let (mut core, t0) = setup(2);
    let (id, _, _, _) = core.create_session("alice", t0);
    let info = HandleInfo {
        cell: 0,
        path: "/ls/d/f".into(),
        instance: 1,
        intent: 1,
        sequencer: false,
        unconfirmed: false,
    };
    core.add_handle(&id, b"h".to_vec(), info);
    core.handle_moved(&id, b"h", 1);
    core.upstream_events(
        0,
        &[ev(1, pb::EventType::MasterFailover, "", Some(&id))],
        t0,
    );
    assert!(!core.handle(&id, b"h").unwrap().unconfirmed);
    core.upstream_events(
        1,
        &[ev(1, pb::EventType::MasterFailover, "", Some(&id))],
        t0,
    );
    assert!(core.handle(&id, b"h").unwrap().unconfirmed);
}

/// A core whose session at cell 0 is live until `t0 + 20 s`, with an 8 s hold-back (a 20 s
/// proxy lease and 12 s client leases): its cover ends at `t0 + 12 s`.
fn setup_hold_back() -> (ProxyCore, Instant) {
    let (mut core, t0) = setup(1);
    core.upstream_hold_back(0, 8 * S);
    (core, t0)
}

#[test]
fn with_a_hold_back_leases_of_clients_with_copies_end_by_the_cover_and_not_all_together() {
    let (mut core, t0) = setup_hold_back();
    // Before any client holds a copy from the cell, the proxy refreshes its lease there
    // at the usual pace.
    assert_eq!(core.upstream_keep_ahead(0, 14 * S), 14 * S);
    let ids: Vec<ClientId> = (0..20)
        .map(|_| {
            let (id, _, _, _) = core.create_session("c", t0);
            core.registered(&id, 0);
            let t = core.cache.ticket();
            assert!(core.note_fetched(&id, "/ls/d/x", t, 0));
            id
        })
        .collect();
    // One with state at the cell but no copy from it, and one with nothing anywhere.
    let (handles_only, _, _, _) = core.create_session("h", t0);
    core.registered(&handles_only, 0);
    let (idle, _, _, _) = core.create_session("i", t0);
    // The cell answers at t0 + 10 s: local lease to t0 + 30 s, cover to t0 + 22 s. Their
    // next KeepAlives come when the leases they were told (to t0 + 12 s) near their end.
    let at = t0 + 11 * S;
    core.upstream_lease(0, t0 + 30 * S, t0 + 10 * S);
    let mut ends = BTreeSet::new();
    for id in &ids {
        done(core.keepalive(id, 0, at));
        let end = core.clients[id].lease.end;
        assert!(end <= t0 + 22 * S, "{:?}", end - t0);
        ends.insert(end);
    }
    // Cut at random below the cover (by up to an eighth of the client lease), so that
    // they are not all renewed at the same instant.
    assert!(ends.len() > 10, "{} distinct ends of 20", ends.len());
    assert!(ends.iter().all(|e| *e >= t0 + 20 * S + S / 2));
    // The others keep full leases: nesting in the proxy's session (to 29 s) allows them.
    for id in [&handles_only, &idle] {
        done(core.keepalive(id, 0, at));
        assert_eq!(core.clients[id].lease.end, at + 12 * S);
    }
    // A cover refreshed at the usual pace does not make its clients starved, and each
    // refresh lets every client's lease grow (the cut is the client's own, not drawn anew).
    assert!(ids.iter().all(|id| !core.clients[id].starved));
    core.upstream_lease(0, t0 + 33 * S, t0 + 13 * S);
    let before: Vec<Instant> = ids.iter().map(|id| core.clients[id].lease.end).collect();
    let waiters: Vec<WaiterId> = ids
        .iter()
        .map(|id| waits(core.keepalive(id, 0, t0 + 13 * S)))
        .collect();
    core.tick(t0 + 22 * S);
    let answered: HashSet<WaiterId> = core.take_output().wakes.iter().map(|w| w.0).collect();
    for ((id, w), before) in ids.iter().zip(waiters).zip(before) {
        assert!(answered.contains(&w));
        let end = core.clients[id].lease.end;
        // With no more word from the cell, no lease ends past its cover (t0 + 25 s).
        assert!(end > before && end <= t0 + 25 * S, "{:?}", end - t0);
    }
    // While clients hold copies from there, the proxy refreshes its lease there early
    // enough to keep the cover within an eighth of a client lease of a full one:
    // 8 s + 12 s − 1.5 s ahead of its end.
    assert_eq!(core.upstream_keep_ahead(0, 14 * S), 18 * S + S / 2);
    assert_eq!(core.upstream_keep_ahead(0, 19 * S), 19 * S);
    // Back to the usual pace once none of them is left.
    for id in &ids {
        core.close_session(id, t0 + 22 * S);
    }
    assert_eq!(core.upstream_keep_ahead(0, 14 * S), 14 * S);
}

#[test]
fn a_client_whose_lease_reaches_past_the_cover_gets_nothing_cacheable_from_that_cell() {
    let (mut core, t0) = setup_hold_back();
    // A new client's lease ends by every cover there is.
    let (a, _, lease, _) = core.create_session("a", t0);
    assert!(lease <= 12 * S, "{lease:?}");
    core.registered(&a, 0);
    let t = core.cache.ticket();
    assert!(
        core.note_fetched(&a, "/ls/d/x", t, 0),
        "its lease ends by the cover"
    );
    // One created while the proxy had no session at the cell (say, before the cell
    // joined) has a full lease, which may reach past the cover the cell then gives.
    core.upstream_lost(0);
    let (b, _, lease, _) = core.create_session("b", t0 + S);
    assert_eq!(lease, 12 * S);
    core.upstream_lease(0, t0 + 20 * S, t0 + S);
    core.upstream_hold_back(0, 8 * S);
    core.registered(&b, 0);
    let t = core.cache.ticket();
    assert!(
        !core.note_fetched(&b, "/ls/d/x", t, 0),
        "its lease ends past the cover"
    );
    // Nor from the shared cache, once the path is known to come from that cell.
    let t = core.cache.ticket();
    assert!(core.note_fetched(&a, "/ls/d/x", t, 0));
    assert!(!core.note_cacher(&b, "/ls/d/x", None));
}

#[test]
fn the_shared_cache_is_not_answered_from_past_the_cover() {
    let (mut core, t0) = setup_hold_back();
    let (a, _, _, _) = core.create_session("a", t0);
    core.registered(&a, 0);
    let t = core.cache.ticket();
    assert!(core.note_fetched(&a, "/ls/d/x", t, 0));
    assert!(core.cache_covered("/ls/d/x", 0, t0 + 11 * S));
    assert!(!core.cache_covered("/ls/d/x", 0, t0 + 12 * S));
    // Without a hold-back the margin applies, as for client leases.
    let (mut plain, t0) = setup(1);
    assert!(plain.cache_covered("/ls/d/x", 0, t0 + 18 * S));
    assert!(!plain.cache_covered("/ls/d/x", 0, t0 + 19 * S));
    plain.upstream_lost(0);
    assert!(!plain.cache_covered("/ls/d/x", 0, t0));
}

#[test]
fn losing_the_session_at_a_cell_flushes_what_was_cached_from_it() {
    let (mut core, t0) = setup(2);
    let (a, _, _, _) = core.create_session("a", t0);
    let t = core.cache.ticket();
    core.note_fetched(&a, "/ls/d/x", t, 0);
    core.cache
        .fill("/ls/d/x", t, |e| e.stat = Some(pb::Stat::default()));
    core.note_fetched(&a, "/ls/e/y", t, 1);
    core.cache
        .fill("/ls/e/y", t, |e| e.stat = Some(pb::Stat::default()));
    // The cell may have stopped sending the old session invalidations (it ended it):
    // nothing from it may be answered under a new session.
    core.upstream_lost(0);
    assert!(!core.cache.contains("/ls/d/x"));
    assert!(core.cache.contains("/ls/e/y"));
    let r = done(core.keepalive(&a, 0, t0));
    let paths: Vec<&str> = r.events.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["/ls/d/x"]);
}

#[test]
fn a_replys_invalidation_reaches_a_starved_client_before_the_lease_it_brings() {
    let (mut core, t0) = setup_hold_back();
    let (a, _, _, _) = core.create_session("a", t0);
    core.registered(&a, 0);
    let t = core.cache.ticket();
    assert!(core.note_fetched(&a, "/ls/d/x", t, 0));
    // The cover runs out (no reply from the cell): the client's KeepAlive is held.
    let w = waits(core.keepalive(&a, 0, t0 + 12 * S));
    assert!(core.take_output().wakes.is_empty());
    // A late reply arrives with an invalidation and a new lease: the shared cache and the
    // client get the invalidation before the lease grows, and the client's one answer
    // carries both (safe again, with the event to apply).
    core.upstream_reply(
        0,
        t0 + 33 * S,
        &[ev(1, pb::EventType::Invalidate, "/ls/d/x", None)],
        t0 + 13 * S,
    );
    let r = wake_of(&mut core, w);
    assert!(r.events.iter().any(|e| e.path == "/ls/d/x"), "{r:?}");
    assert!(r.lease > S, "{:?}", r.lease);
    assert!(!core.is_cacher(&a, "/ls/d/x"));
}

/// A cell's fail-over reaches a client in jeopardy behind a hold-back in one answer that
/// makes it safe again and then delivers the event (the order the client library shows
/// its application: `Safe`, then `MasterFailover`).
#[test]
fn a_failover_reply_answers_a_starved_client_once_with_its_lease_and_the_event() {
    let (mut core, t0) = setup_hold_back();
    let (a, _, _, _) = core.create_session("a", t0);
    core.registered(&a, 0);
    let t = core.cache.ticket();
    assert!(core.note_fetched(&a, "/ls/d/x", t, 0));
    // Its cover runs out (the cell is failing over): its KeepAlive is held.
    let w = waits(core.keepalive(&a, 0, t0 + 12 * S));
    core.upstream_restarted(0);
    core.upstream_reply(
        0,
        t0 + 33 * S,
        &[ev(1, pb::EventType::MasterFailover, "", Some(&a))],
        t0 + 13 * S,
    );
    let out = core.take_output();
    assert_eq!(out.wakes.len(), 1, "answered once");
    let (id, r) = &out.wakes[0];
    let r = r.as_ref().expect("a reply");
    assert_eq!(*id, w);
    assert!(r.lease > S, "{:?}", r.lease);
    assert_eq!(r.events.len(), 1);
}

/// Idle clients (state at no cell) behind a proxy with a hold-back, simulated for a minute
/// of synthetic time: each sends its next KeepAlive as soon as the last is answered, and
/// counts its local lease from when it sent (send time + lease / (1 + ρ)); the proxy
/// refreshes its lease at the cell as `keepalive_loop` does (`upstream_keep_ahead`), the
/// cell answering after `cell_delay`. Returns how many clients saw their local lease run
/// out with their KeepAlive unanswered (a spurious jeopardy), and the client KeepAlives.
fn simulate_idle_clients(
    n: usize,
    cell_delay: Duration,
    covered: bool,
    reach: bool,
) -> (usize, u64) {
    let drift = 1.01;
    let t0 = Instant::now();
    let mut config = cfg(1);
    if reach {
        config.cover_reach = Some(cover_reach(12 * S, drift - 1.0));
    }
    let mut core = ProxyCore::new(config, t0);
    let h = Duration::from_secs(8).div_f64(drift);
    core.upstream_hold_back(0, h);
    core.upstream_lease(0, t0 + Duration::from_secs(20).div_f64(drift), t0);
    let step = Duration::from_millis(10);
    // Per client: (id, send time of the KeepAlive in flight, local lease end, waiter).
    let mut clients: Vec<(ClientId, Instant, Instant, Option<WaiterId>)> = Vec::new();
    let mut jeopardy = BTreeSet::new();
    // The upstream refresh in flight: answered at (when, sent).
    let mut refresh: Option<(Instant, Instant)> = None;
    let mut t = t0;
    let end = t0 + 60 * S;
    let mut wakes = Vec::new();
    while t < end {
        t += step;
        wakes.extend(core.take_output().wakes);
        // Sessions arrive over the first 11 s.
        while clients.len() < n && t0 + (11 * S).mul_f64(clients.len() as f64 / n as f64) <= t {
            let (id, _, lease, _) = core.create_session("idle", t);
            clients.push((id, t, t + lease.div_f64(drift), None));
        }
        // The proxy's refresh of its lease at the cell.
        let live = core.upstream_live_until(0).expect("live");
        let ahead = core.upstream_keep_ahead(0, 14 * S);
        // A cover refresh asked for by a first copy goes at once, as any refresh due.
        let wanted = core.upstream_cover_wanted(0, t).is_some();
        if refresh.is_none() && (wanted || live.saturating_duration_since(t) < ahead) {
            refresh = Some((t + cell_delay, t));
        }
        if let Some((at, sent)) = refresh {
            if at <= t {
                core.upstream_lease(0, sent + (20 * S).div_f64(drift), t);
                refresh = None;
            }
        }
        // With `covered`, the first client reads from the cell from 2 s on until it may
        // keep what it read (its lease, and the refresh, then follow the cover).
        if covered && t >= t0 + 2 * S && !clients.is_empty() {
            let reader = clients[0].0;
            if !core.is_cacher(&reader, "/ls/d/x") {
                core.registered(&reader, 0);
                let ticket = core.cache.ticket();
                if core.note_fetched(&reader, "/ls/d/x", ticket, 0) {
                    // With leases of at most `cover_reach`: once the one cover refresh
                    // its first try asked for is answered. Without: once the cover,
                    // refreshed early, has passed the full lease it had, within an eighth
                    // of a client lease of its first try.
                    let by = if reach { 2 * S } else { 5 * S };
                    assert!(t < t0 + by + cell_delay + 3 * step, "{:?}", t - t0);
                }
            }
            // It holds the copy within the cover, always.
            assert!(
                !core.is_cacher(&reader, "/ls/d/x")
                    || core.clients[&reader].lease.end <= core.cover(0).expect("a session")
            );
        }
        core.tick(t);
        wakes.extend(core.take_output().wakes);
        for (w, r) in wakes.drain(..) {
            let r = r.expect("answered");
            let c = clients
                .iter_mut()
                .find(|c| c.3 == Some(w))
                .expect("a client's KeepAlive");
            c.2 = c.2.max(c.1 + r.lease.div_f64(drift));
            c.3 = None;
        }
        for (i, c) in clients.iter_mut().enumerate() {
            if c.3.is_none() {
                // Sends its next KeepAlive at once.
                c.1 = t;
                match core.keepalive(&c.0, 0, t).expect("keepalive") {
                    Reply::Done(r) => c.2 = c.2.max(t + r.lease.div_f64(drift)),
                    Reply::Wait(w) => c.3 = Some(w),
                }
            } else if t > c.2 {
                jeopardy.insert(i);
            }
        }
    }
    (jeopardy.len(), core.keepalives_received)
}

#[test]
fn idle_clients_behind_a_hold_back_never_see_their_lease_run_out() {
    for reach in [false, true] {
        for delay in [Duration::from_millis(1), Duration::from_millis(300)] {
            let (j, keepalives) = simulate_idle_clients(300, delay, false, reach);
            assert_eq!(
                j, 0,
                "{j} clients in jeopardy (cell answering after {delay:?}, reach {reach})"
            );
            // Idle clients keep full leases: a KeepAlive each per ~11 s (cut to the
            // cover, about a third more).
            assert!(keepalives <= 300 * 6, "{keepalives} KeepAlives");
            let (j, _) = simulate_idle_clients(300, delay, true, reach);
            assert_eq!(
                j, 0,
                "{j} clients in jeopardy with a reader (cell answering after {delay:?}, reach {reach})"
            );
        }
    }
}

/// The proxy's cover moved on between a reply and the client's next KeepAlive: that one is
/// held only until shortly before the end of the lease the client was told (its local
/// lease ends there), not of the longer one the new cover allows (the spurious jeopardy
/// with a hold-back). The reply brings the longer one.
#[test]
fn a_keepalive_is_held_only_until_near_the_end_of_the_lease_the_client_knows() {
    let (mut core, t0) = setup_hold_back();
    let (a, _, lease, _) = core.create_session("a", t0);
    assert_eq!(lease, 12 * S);
    core.registered(&a, 0);
    let t = core.cache.ticket();
    assert!(
        core.note_fetched(&a, "/ls/d/x", t, 0),
        "its lease ends by the cover"
    );
    // The cover moves from t0 + 12 s to t0 + 17 s; then the client's KeepAlive arrives.
    core.upstream_lease(0, t0 + 25 * S, t0 + 5 * S);
    let w = waits(core.keepalive(&a, 0, t0 + 5 * S));
    core.tick(t0 + 11 * S);
    let r = wake_of(&mut core, w);
    // Counted from the KeepAlive's arrival: past the old end, within the new cover.
    assert!(r.lease > 7 * S && r.lease <= 12 * S, "{:?}", r.lease);
}

/// A client's first copy from a cell promised a hold-back, as the proxy runs by default
/// (leases of at most `cover_reach`, covers computed as `keepalive_loop` does): its lease
/// reaches past the cover, so the copy waits for a cover refresh, asked for at once; the
/// refresh's answer moves the cover past the lease, and the same fetch is then kept — the
/// same as the cell would have answered a client talking to it. An invalidation the
/// refresh's answer brings makes it "no" instead, never "yes".
#[test]
fn a_first_copy_from_a_hold_back_cell_is_kept_once_one_cover_refresh_is_answered() {
    let drift = 0.01;
    let t0 = Instant::now();
    let mut config = cfg(1);
    let reach = cover_reach(12 * S, drift);
    config.cover_reach = Some(reach);
    let mut core = ProxyCore::new(config, t0);
    let local = |sent: Instant, lease: Duration| sent + lease.div_f64(1.0 + drift);
    core.upstream_hold_back(0, (8 * S).div_f64(1.0 + drift));
    core.upstream_lease(0, local(t0, 20 * S), t0);
    // 2 s later a client connects: its lease is `reach` (11.78 s), not 12 s, and reaches
    // past the cover (t0 + 11.88 s).
    let at = t0 + 2 * S;
    let (a, _, lease, _) = core.create_session("a", at);
    assert_eq!(lease, reach);
    assert!(reach > 11 * S + 700 * MS && reach < 12 * S, "{reach:?}");
    core.registered(&a, 0);
    assert_eq!(core.upstream_cover_wanted(0, at), None);
    let t = core.cache.ticket();
    assert_eq!(core.keep_fetched(&a, "/ls/d/x", t, 0), Keep::AfterRefresh);
    assert!(!core.is_cacher(&a, "/ls/d/x"));
    // The cell's KeepAlive loop is woken and asked for a refresh reaching the lease's end.
    let fx = core.take_output().effects;
    assert!(fx.contains(&Effect::RefreshCover(0)), "{fx:?}");
    assert_eq!(core.upstream_cover_wanted(0, at), Some(at + reach));
    // The refresh is sent at once; the cell answers the KeepAlive it held (sent at t0, so
    // the hold costs ρ of it: 20 ms) with a lease counted from the refresh's arrival.
    let answered = at + 5 * MS;
    let live = t0 + (at - t0).div_f64(1.0 + drift) + (20 * S).div_f64(1.0 + drift);
    core.upstream_reply(0, live, &[], answered);
    assert!(
        core.cover(0).unwrap() >= at + reach,
        "one refresh covers the lease"
    );
    assert_eq!(core.upstream_cover_wanted(0, answered), None);
    assert_eq!(core.keep_fetched(&a, "/ls/d/x", t, 0), Keep::Yes);
    assert!(core.is_cacher(&a, "/ls/d/x"));

    // A second client's first copy, whose refresh answer brings an invalidation of the
    // path: "no", and the shared cache holds nothing of it.
    let at = answered + 100 * MS;
    let (b, _, _, _) = core.create_session("b", at);
    core.registered(&b, 0);
    let t = core.cache.ticket();
    assert_eq!(core.keep_fetched(&b, "/ls/e/y", t, 0), Keep::AfterRefresh);
    core.upstream_reply(
        0,
        live + 200 * MS,
        &[ev(1, pb::EventType::Invalidate, "/ls/e/y", None)],
        at + 5 * MS,
    );
    assert_eq!(core.keep_fetched(&b, "/ls/e/y", t, 0), Keep::No);
    assert!(!core.is_cacher(&b, "/ls/e/y"));

    // Without a session at the cell there is nothing to refresh: "no" at once.
    core.upstream_lost(0);
    let (c, _, _, _) = core.create_session("c", at);
    let t = core.cache.ticket();
    assert_eq!(core.keep_fetched(&c, "/ls/f/z", t, 0), Keep::No);
    assert_eq!(core.upstream_cover_wanted(0, at), None);
}

/// A request for a cover refresh lapses after `COVER_WANTED_FOR` (the reads waiting for it
/// have given up), so that a cell granting less than expected does not draw refreshes
/// forever.
#[test]
fn a_cover_refresh_asked_for_lapses() {
    let (mut core, t0) = setup_hold_back();
    // Cover to t0 + 12 s; a lease to t0 + 13 s.
    let (a, _, _, _) = core.create_session("a", t0 + S);
    let t = core.cache.ticket();
    assert_eq!(core.keep_fetched(&a, "/ls/d/x", t, 0), Keep::AfterRefresh);
    assert_eq!(core.upstream_cover_wanted(0, t0 + S), Some(t0 + 13 * S));
    let lapsed = t0 + S + COVER_WANTED_FOR;
    assert_eq!(core.upstream_cover_wanted(0, lapsed), None);
    // Asked again (a new read), it is wanted again.
    let t = core.cache.ticket();
    core.now = lapsed;
    assert_eq!(core.keep_fetched(&a, "/ls/d/x", t, 0), Keep::AfterRefresh);
    assert_eq!(core.upstream_cover_wanted(0, lapsed), Some(t0 + 13 * S));
}

/// A path a client holds, fetched again through another cell: the new copy is kept only if
/// that client, too, is within the other cell's cover (it may otherwise outlive a write
/// that cell then lets through).
#[test]
fn a_copy_from_a_second_cell_is_kept_only_within_its_cover_for_every_holder() {
    let t0 = Instant::now();
    let mut core = ProxyCore::new(cfg(2), t0);
    // Covers: cell 0 to t0 + 14 s, cell 1 to t0 + 12.5 s.
    core.upstream_lease(0, t0 + 22 * S, t0);
    core.upstream_lease(1, t0 + 20 * S + S / 2, t0);
    core.upstream_hold_back(0, 8 * S);
    core.upstream_hold_back(1, 8 * S);
    // `b` (lease to t0 + 12 s) holds something from cell 1.
    let (b, _, _, _) = core.create_session("b", t0);
    let t = core.cache.ticket();
    assert!(core.note_fetched(&b, "/ls/e/y", t, 1));
    // `a` (lease to t0 + 13 s) holds the path from cell 0.
    let (a, _, _, _) = core.create_session("a", t0 + S);
    let t = core.cache.ticket();
    assert!(core.note_fetched(&a, "/ls/d/x", t, 0));
    let _ = core.take_output();
    // The same path through cell 1: `a` is not within its cover, so the copy is not kept;
    // from now on that cover bounds `a`'s lease too.
    let t = core.cache.ticket();
    assert!(!core.note_fetched(&b, "/ls/d/x", t, 1));
    assert!(core.clients[&a].covers.contains(&1));
    // Once the cover there has moved past `a`'s lease, it is kept.
    core.upstream_lease(1, t0 + 25 * S, t0 + S);
    let t = core.cache.ticket();
    assert!(core.note_fetched(&b, "/ls/d/x", t, 1));
}

/// Simulation seed 1537: a client with copies from a cell had its last KeepAlive answered
/// while the cell, failing over, had stopped moving the cover; the cover let the lease
/// grow by 2 s of a 4 s lease then, which did not count as the cell holding it back (the
/// mark was a cover lagging more than half a lease), and the client, whose next KeepAlive
/// was lost, was ended at its lease's end although its cell was failing over. With the
/// cover kept within an eighth of a lease of a full one, a cover lagging more than a
/// quarter marks the client starved, and it is kept up to `max_starve`; with the cell
/// answering at its pace, a silent client ends with its lease as before. `cover_ahead`:
/// how far ahead of the answer the cover is. Returns whether the client outlived its
/// lease.
fn silent_after_an_answer_with_the_cover(cover_ahead: Duration) -> bool {
    let (mut core, t0) = setup_hold_back();
    let (id, _, _, _) = core.create_session("c", t0);
    core.registered(&id, 0);
    let t = core.cache.ticket();
    assert!(core.note_fetched(&id, "/ls/d/x", t, 0));
    // The cell answers at 10 s (cover to 22 s): the lease is cut below the cover.
    core.upstream_lease(0, t0 + 30 * S, t0 + 10 * S);
    done(core.keepalive(&id, 0, t0 + 11 * S));
    let end = core.clients[&id].lease.end;
    assert!(end <= t0 + 22 * S && end >= t0 + 20 * S, "{:?}", end - t0);
    let w = waits(core.keepalive(&id, 0, t0 + 11 * S));
    // The cell's last answer puts the cover `cover_ahead` past the held KeepAlive's answer.
    let answer = end - S;
    let cover = answer + cover_ahead;
    core.upstream_lease(0, cover + 8 * S, t0 + 15 * S);
    core.tick(answer);
    wake_of(&mut core, w);
    let end = core.clients[&id].lease.end;
    assert!(end > answer && end <= cover, "{:?}", end - t0);
    // The client's next KeepAlive never arrives.
    core.tick(end + 10 * MS);
    let kept = core.identity(&id).is_some();
    if kept {
        // Starved, it lasts max_starve past its lease, and no longer.
        core.tick(end + 59 * S);
        assert!(core.identity(&id).is_some());
        core.tick(end + 61 * S);
        assert!(core.identity(&id).is_none(), "kept past max_starve");
    }
    kept
}

#[test]
fn a_cover_lagging_a_quarter_of_a_lease_starves_its_client_and_one_at_its_pace_does_not() {
    // 7 s of a 12 s lease: a cell that has stopped answering (it refreshes within 1.5 s).
    assert!(
        silent_after_an_answer_with_the_cover(7 * S),
        "ended while its cell held the lease back"
    );
    // 11 s: a cell answering at its pace; the silent client ends with its lease.
    assert!(!silent_after_an_answer_with_the_cover(11 * S));
}
