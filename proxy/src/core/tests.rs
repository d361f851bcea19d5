//! The proxy core with synthetic time: lease nesting, relayed events and the upstream
//! acknowledgement they hold back, adoption, expiry.

use super::*;

const S: Duration = Duration::from_secs(1);

fn cfg(cells: usize) -> CoreConfig {
    CoreConfig {
        client_lease: 12 * S,
        reply_before_end: S,
        margin: S,
        max_starve: 60 * S,
        cells,
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
    let wa = waits(core.keepalive(&a, 0, t));
    let wb = waits(core.keepalive(&b, 0, t));
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
    let (mut core, t0) = setup(1);
    let (id, _, _, _) = core.create_session("c", t0);
    core.registered(&id, 0);
    // The cell fails over: no more upstream replies. The client's lease can reach at most
    // 20 − 1 = 19 s.
    let t = t0 + 15 * S;
    let w = waits(core.keepalive(&id, 0, t));
    core.tick(t0 + 18 * S + S / 2);
    let r = wake_of(&mut core, w);
    assert!(r.lease <= 4 * S, "{:?}", r.lease);
    // Its next KeepAlive cannot be extended: held until the cell is back.
    let t = t0 + 18 * S + S / 2;
    let w = waits(core.keepalive(&id, 0, t));
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

#[test]
fn a_relayed_event_is_acknowledged_upstream_only_after_its_client_acks() {
    let (mut core, t0) = setup(1);
    let (id, _, _, _) = core.create_session("c", t0);
    core.registered(&id, 0);
    let owns = |_: &str| true;
    core.upstream_events(
        0,
        &[
            ev(1, pb::EventType::ContentsModified, "/ls/d/f", Some(&id)),
            ev(2, pb::EventType::ChildChanged, "/ls/d", Some(&id)),
        ],
        &owns,
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
    let _ = core.keepalive(&id, 1, t0);
    assert_eq!(core.upstream_ack(0), 1);
    let _ = core.keepalive(&id, 2, t0);
    assert_eq!(core.upstream_ack(0), 2);
    assert!(core.take_output().effects.contains(&Effect::AckUpstream(0)));
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
    core.upstream_events(
        0,
        &[ev(1, pb::EventType::Invalidate, "/ls/d/f", None)],
        &|_| true,
        t0,
    );
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
    core.upstream_events(
        0,
        &[ev(1, pb::EventType::Invalidate, "/ls/d/f", None)],
        &|_| true,
        t0,
    );
    assert!(
        !core.note_cacher(&a, "/ls/d/f", Some(t)),
        "must be passed on as uncacheable"
    );
    assert!(!core
        .cache
        .fill("/ls/d/f", t, |e| e.stat = Some(pb::Stat::default())));
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

#[test]
fn a_client_claimed_away_is_dropped_and_one_that_ended_is_not_adopted_again() {
    let (mut core, t0) = setup(1);
    let (a, sa, _, _) = core.create_session("a", t0);
    core.registered(&a, 0);
    core.upstream_events(
        0,
        &[ev(1, pb::EventType::SessionClaimed, "", Some(&a))],
        &|_| true,
        t0,
    );
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

#[test]
fn a_cell_failover_invalidates_at_clients_what_they_cached_from_it() {
    let (mut core, t0) = setup(2);
    let (a, _, _, _) = core.create_session("a", t0);
    let t = core.cache.ticket();
    core.note_cacher(&a, "/ls/d/x", Some(t));
    core.note_cacher(&a, "/ls/e/y", Some(t));
    let owns = |p: &str| p.starts_with("/ls/d/");
    core.upstream_events(
        0,
        &[ev(1, pb::EventType::MasterFailover, "", None)],
        &owns,
        t0,
    );
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
    core.upstream_events(
        0,
        &[ev(1, pb::EventType::MasterFailover, "", Some(&a))],
        &|_| true,
        t0,
    );
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
