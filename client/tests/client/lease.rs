//! The wire contract of a lease (proto `KeepAliveResponse.lease_ms`) against a real
//! in-process cell: `lease_ms` counts from when the master *received* the KeepAlive, so a
//! client that counts its local lease from when it *sent* it — send time + lease_ms / (1 + ρ),
//! [`warren_client::lease::LocalLease`] — never outlives the master's view of the session,
//! while counting from the reply (what the proto comment used to say) would.

use std::time::Duration;
use tokio::time::Instant;
use warren_client::lease::LocalLease;
use warren_client::ClientOptions;
use warren_proto::pb;
use warren_testkit::Cell;

/// The cell's lease. A KeepAlive is held until about 1 s before the lease ends, so the
/// first one is held ~3 s and its reply grants ~7 s counted from its arrival: the local
/// lease then ends ~70 ms (ρ = 1% of 7 s) before the master's, while reply time + lease_ms
/// would end ~3 s after it.
const LEASE: Duration = Duration::from_secs(4);

#[tokio::test]
async fn a_local_lease_counted_from_the_send_time_never_outlives_the_masters() {
    let cell = Cell::builder().lease(LEASE).memory().run().await;
    let conn = warren_client::transport::dial(&cell.addr(), Duration::from_secs(5))
        .await
        .expect("dial");
    let mut client = conn.client.clone();
    let created = client
        .create_session(pb::CreateSessionRequest {
            principal: String::new(),
            proxy: false,
        })
        .await
        .expect("CreateSession")
        .into_inner();
    let sessions = || cell.handle().status().sessions;
    assert_eq!(sessions(), 1, "our session is the cell's only one");

    // One KeepAlive, held by the master for most of the lease; then none.
    let sent = Instant::now();
    let reply = client
        .keep_alive(pb::KeepAliveRequest {
            ctx: Some(pb::SessionContext {
                session_id: created.session_id.clone(),
                secret: created.secret.clone(),
                epoch: created.epoch,
                ..Default::default()
            }),
            ack_seq: 0,
            ..Default::default()
        })
        .await
        .expect("KeepAlive")
        .into_inner();
    let replied = Instant::now();
    let held = replied - sent;
    assert!(
        held >= LEASE / 2,
        "the master held the KeepAlive (held {held:?})"
    );
    let granted = Duration::from_millis(reply.lease_ms);
    assert!(
        granted > LEASE + LEASE / 2,
        "lease_ms counts from the request's arrival, so it includes the hold: {granted:?} after a {held:?} hold"
    );

    // The documented rule.
    let local = LocalLease::new(sent, granted, ClientOptions::DEFAULT_CLOCK_DRIFT);
    // The old comment's rule: lease remaining from when the reply was sent.
    let from_reply = replied + granted;

    // Watch the master's own view of the session (in-process: no network in the way) until
    // it expires it. `alive_at` is the latest instant it certainly still held it.
    let give_up = from_reply + Duration::from_secs(5);
    let mut alive_at = replied;
    let expired_by = loop {
        let before = Instant::now();
        if sessions() == 0 {
            break Instant::now();
        }
        alive_at = before;
        assert!(before < give_up, "the master never expired the session");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };

    assert!(
        alive_at >= local.end(),
        "the master still held the session when the local lease (send time + lease_ms / (1 + ρ)) \
         ended: alive {:?} after the local lease's end",
        alive_at - local.end()
    );
    assert!(
        from_reply > expired_by,
        "counting lease_ms from the reply would have outlived the master's lease by {:?}",
        from_reply - expired_by
    );
}
