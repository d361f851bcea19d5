//! The shared lease types driven directly on paused time: the local-lease rule (send time +
//! granted / (1 + ρ), forward only), jeopardy and the grace period, the ack watermark per
//! epoch, and the backoff's bounds.

use super::*;
use tokio::time::advance;

const LEASE: Duration = Duration::from_secs(12);
const GRACE: Duration = Duration::from_secs(45);
const RHO: f64 = 0.01;

fn event(seq: u64) -> pb::Event {
    pb::Event {
        seq,
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn the_local_lease_counts_from_the_send_time_divided_by_one_plus_rho() {
    let sent = Instant::now();
    let mut l = LocalLease::new(sent, LEASE, RHO);
    assert_eq!(l.end(), sent + LEASE.div_f64(1.0 + RHO));
    assert_eq!(l.granted(), LEASE);
    assert_eq!(local_length(LEASE, RHO), LEASE.div_f64(1.0 + RHO));

    // A reply that arrives late still counts from when its request was sent.
    advance(Duration::from_secs(5)).await;
    let sent2 = Instant::now();
    advance(Duration::from_secs(4)).await;
    assert!(l.extend(sent2, LEASE));
    assert_eq!(l.end(), sent2 + LEASE.div_f64(1.0 + RHO));
    assert_eq!(
        l.remaining(Instant::now()),
        sent2 + LEASE.div_f64(1.0 + RHO) - Instant::now()
    );

    // Never backwards; a zero grant changes nothing.
    let end = l.end();
    assert!(!l.extend(sent, LEASE));
    assert!(!l.extend(Instant::now(), Duration::ZERO));
    assert_eq!(l.end(), end);
    assert_eq!(l.granted(), LEASE);

    // A confused server's huge lease is clamped.
    assert!(l.extend(Instant::now(), Duration::from_secs(86_400)));
    assert_eq!(l.granted(), MAX_LEASE);
    assert!(l.remaining(Instant::now()) <= MAX_LEASE);
}

#[tokio::test(start_paused = true)]
async fn jeopardy_at_the_local_lease_end_then_expiry_after_the_grace_period() {
    let t0 = Instant::now();
    let mut l = Lease::new(t0, LEASE, RHO, GRACE);
    let end = t0 + LEASE.div_f64(1.0 + RHO);
    assert_eq!(l.state(), LeaseState::Safe);
    assert_eq!(l.next_deadline(), Some(end));
    assert_eq!(l.keepalive_deadline(), LEASE + KEEPALIVE_DEADLINE_MARGIN);
    assert_eq!(l.check(end - Duration::from_millis(1)), Passed::default());

    let passed = l.check(end);
    assert!(passed.entered_jeopardy && !passed.expired);
    assert_eq!(l.state(), LeaseState::Jeopardy);
    assert_eq!(l.next_deadline(), Some(end + GRACE));
    assert_eq!(l.keepalive_deadline(), JEOPARDY_KEEPALIVE_DEADLINE);

    let passed = l.check(end + GRACE);
    assert!(!passed.entered_jeopardy && passed.expired);
    assert_eq!(l.state(), LeaseState::Expired);
    assert_eq!(l.next_deadline(), None);
    // Too late: nothing brings it back.
    assert!(!l.renewed(end + GRACE, end + GRACE, LEASE));
    assert_eq!(l.state(), LeaseState::Expired);
}

#[tokio::test(start_paused = true)]
async fn one_late_check_goes_through_jeopardy_to_expiry() {
    let t0 = Instant::now();
    let mut l = Lease::new(t0, LEASE, RHO, GRACE);
    let passed = l.check(t0 + LEASE + GRACE);
    assert_eq!(
        passed,
        Passed {
            entered_jeopardy: true,
            expired: true
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_reply_within_the_grace_period_makes_the_lease_safe_again() {
    let t0 = Instant::now();
    let mut l = Lease::new(t0, LEASE, RHO, GRACE);
    let end = t0 + LEASE.div_f64(1.0 + RHO);
    l.check(end);
    let sent = end + Duration::from_secs(3);
    let now = sent + Duration::from_millis(10);
    assert!(l.renewed(now, sent, LEASE));
    assert_eq!(l.state(), LeaseState::Safe);
    assert_eq!(l.next_deadline(), Some(sent + LEASE.div_f64(1.0 + RHO)));

    // A reply whose lease has already run out by the time it arrives leaves it in jeopardy.
    let mut l = Lease::new(t0, LEASE, RHO, GRACE);
    l.check(end);
    assert!(!l.renewed(end + LEASE, t0 + Duration::from_secs(1), LEASE));
    assert_eq!(l.state(), LeaseState::Jeopardy);
}

#[test]
fn the_watermark_acknowledges_fresh_events_once_and_restarts_per_epoch() {
    let mut w = AckWatermark::new(7);
    assert_eq!((w.epoch(), w.ack_seq()), (7, 0));
    let events = [event(2), event(1), event(2), event(3)];
    let fresh: Vec<u64> = w.take_fresh(7, &events).iter().map(|e| e.seq).collect();
    assert_eq!(fresh, [1, 2, 3]);
    assert_eq!(w.ack_seq(), 3);
    // Re-sent: nothing new.
    assert!(w.take_fresh(7, &events).is_empty());
    // A late reply from an older epoch delivers nothing.
    assert!(w.take_fresh(6, &[event(9)]).is_empty());
    assert_eq!(w.ack_seq(), 3);
    // Older or equal epochs are not adopted; a newer one restarts the numbering.
    assert!(!w.adopt_epoch(7));
    assert!(!w.adopt_epoch(5));
    assert!(w.adopt_epoch(8));
    assert_eq!((w.epoch(), w.ack_seq()), (8, 0));
    let fresh: Vec<u64> = w.take_fresh(8, &[event(1)]).iter().map(|e| e.seq).collect();
    assert_eq!(fresh, [1]);
    w.restart();
    assert_eq!((w.epoch(), w.ack_seq()), (8, 0));
}

#[test]
fn backoff_doubles_is_capped_by_the_lease_and_resets() {
    let mut b = Backoff::new(42);
    let within = |d: Duration, base: Duration| d >= base && d <= base + base / 2;
    b.failed();
    assert!(within(b.delay(LEASE), BACKOFF_BASE));
    b.failed();
    assert!(within(b.delay(LEASE), BACKOFF_BASE * 2));
    for _ in 0..20 {
        b.failed();
    }
    assert!(within(b.delay(LEASE), BACKOFF_MAX));
    // A quarter of a short lease caps it.
    assert!(within(
        b.delay(Duration::from_secs(2)),
        Duration::from_millis(500)
    ));
    assert_eq!(b.failures(), 22);
    b.succeeded();
    assert_eq!(b.failures(), 0);
}
