//! Tests of the lease table with synthetic instants (a base instant plus offsets) and
//! exact assertions.

use super::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// A queued event: its seq and a name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ev(u64, &'static str);

impl Sequenced for Ev {
    fn seq(&self) -> u64 {
        self.0
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn events_get_strictly_increasing_seqs_and_only_sent_ones_may_be_acknowledged() {
    let t0 = Instant::now();
    let mut l: Lease<Ev> = Lease::new(t0 + ms(12_000));
    assert_eq!(l.last_seq(), 0);
    assert!(l.check_ack(0).is_ok());
    let e = l.check_ack(1).unwrap_err();
    assert_eq!(e.code, warren_proto::ErrorCode::InvalidArgument);
    assert_eq!(
        e.message,
        "KeepAlive acknowledges event 1, but only events up to 0 were sent"
    );
    assert_eq!(l.push(|s| Ev(s, "a")), 1);
    assert_eq!(l.push(|s| Ev(s, "b")), 2);
    assert_eq!(l.push(|s| Ev(s, "c")), 3);
    assert_eq!(l.last_seq(), 3);
    assert!(l.check_ack(3).is_ok());
    assert!(l.check_ack(4).is_err());
    assert_eq!(
        l.events().cloned().collect::<Vec<_>>(),
        vec![Ev(1, "a"), Ev(2, "b"), Ev(3, "c")]
    );
}

#[test]
fn acknowledging_trims_the_queue_once_and_never_goes_back() {
    let t0 = Instant::now();
    let mut l: Lease<Ev> = Lease::new(t0);
    for name in ["a", "b", "c"] {
        l.push(|s| Ev(s, name));
    }
    assert_eq!(l.acknowledge(0), None);
    assert_eq!(l.acknowledge(2), Some(vec![Ev(1, "a"), Ev(2, "b")]));
    assert_eq!(l.acknowledge(2), None);
    assert_eq!(l.acknowledge(1), None);
    assert_eq!(l.events().cloned().collect::<Vec<_>>(), vec![Ev(3, "c")]);
    assert!(l.has_events());
    assert_eq!(l.acknowledge(3), Some(vec![Ev(3, "c")]));
    assert!(!l.has_events());
    // Numbering goes on after the queue emptied.
    assert_eq!(l.push(|s| Ev(s, "d")), 4);
}

#[test]
fn a_reply_counts_its_lease_from_arrival_and_delivers_what_must_be_acknowledged() {
    let t0 = Instant::now();
    let mut l: Lease<Ev> = Lease::new(t0 + ms(12_000));
    assert!(l.all_delivered_acknowledged());
    l.push(|s| Ev(s, "a"));
    // Queued but not delivered: rule (b) does not hold the lease back yet.
    assert!(l.all_delivered_acknowledged());
    let r = l.reply(t0 + ms(2_000), 7, |e| e.1);
    assert_eq!(
        r,
        KeepAliveReply {
            lease: ms(10_000),
            events: vec!["a"],
            epoch: 7
        }
    );
    assert!(!l.all_delivered_acknowledged());
    l.acknowledge(1);
    assert!(l.all_delivered_acknowledged());
    // A reply that arrived after the lease ended says so: no lease at all.
    let r = l.reply(t0 + ms(13_000), 7, |e| e.1);
    assert_eq!(r.lease, Duration::ZERO);
    assert!(r.events.is_empty());
}

#[test]
fn a_keepalive_is_due_reply_before_end_less_up_to_ten_percent_before_the_end() {
    let t0 = Instant::now();
    let l: Lease<Ev> = Lease::new(t0 + ms(12_000));
    let mut rng = StdRng::seed_from_u64(1);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..1000 {
        let due = l.reply_due(t0, ms(1_000), &mut rng).unwrap();
        let early = (t0 + ms(12_000)).duration_since(due);
        assert!(early >= ms(1_000) && early <= ms(1_100), "{early:?}");
        assert_eq!(early.subsec_nanos() % 1_000_000, 0, "whole milliseconds");
        seen.insert(early);
    }
    assert!(seen.len() > 50, "the jitter varies: {} values", seen.len());
    // Under 10 ms there is no whole millisecond to jitter by.
    assert_eq!(l.reply_due(t0, ms(9), &mut rng), Some(t0 + ms(12_000 - 9)));
    // Not after now: answer at once.
    assert_eq!(l.reply_due(t0 + ms(11_991), ms(9), &mut rng), None);
    assert_eq!(
        l.reply_due(t0 + ms(11_000), ms(9), &mut rng),
        Some(t0 + ms(11_991))
    );
    let short: Lease<Ev> = Lease::new(t0 + ms(5));
    assert_eq!(short.reply_due(t0, ms(9), &mut rng), None);
}

#[test]
fn the_held_keepalive_is_answered_when_due_and_cancelled_only_by_its_own_caller() {
    let t0 = Instant::now();
    let mut l: Lease<Ev> = Lease::new(t0 + ms(12_000));
    let held = HeldKeepAlive {
        waiter: 5,
        until: Some(t0 + ms(11_000)),
        received: t0,
    };
    l.hold(held);
    assert_eq!(l.held(), Some(&held));
    assert_eq!(l.take_due(t0 + ms(10_999)), None);
    assert!(!l.cancel(4));
    assert_eq!(l.take_due(t0 + ms(11_000)), Some(held));
    assert_eq!(l.held(), None);
    // Held until something happens: never due by time.
    let starving = HeldKeepAlive {
        waiter: 6,
        until: None,
        received: t0,
    };
    l.hold(starving);
    assert_eq!(l.take_due(t0 + ms(60_000)), None);
    assert!(l.cancel(6));
    assert!(!l.cancel(6));
    assert_eq!(l.take_held(), None);
}

#[test]
fn tombstones_answer_until_their_time_and_are_swept_in_order() {
    let t0 = Instant::now();
    let mut t: Tombstones<[u8; 16], [u8; 16]> = Tombstones::default();
    assert!(t.is_empty());
    t.bury([1; 16], [0xa; 16], t0 + ms(1_000));
    t.bury([2; 16], [0xb; 16], t0 + ms(2_000));
    assert_eq!(t.get(&[1; 16], t0 + ms(999)), Some(&[0xa; 16]));
    assert_eq!(t.get(&[1; 16], t0 + ms(1_000)), None);
    assert_eq!(t.get(&[3; 16], t0), None);
    // Buried again later: the later time wins, the earlier entry does not forget it.
    t.bury([1; 16], [0xc; 16], t0 + ms(3_000));
    t.sweep(t0 + ms(2_000));
    assert_eq!(t.get(&[2; 16], t0), None);
    assert_eq!(t.get(&[1; 16], t0 + ms(2_000)), Some(&[0xc; 16]));
    assert!(!t.is_empty());
    t.sweep(t0 + ms(3_000));
    assert!(t.is_empty());
}

#[test]
fn a_short_id_is_the_first_four_bytes_in_hex() {
    assert_eq!(short_id(&[0xde, 0xad, 0xbe, 0xef, 0x01, 0x02]), "deadbeef…");
    assert_eq!(short_id(&[0x0a]), "0a…");
}
