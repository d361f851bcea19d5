//! Deposing a master that holds its etcd lease but that nobody can reach (docs/design.md
//! §9, "A master nobody can reach"): a blackhole between the master and everyone else
//! while etcd still hears it, so no lease lapses and no standby would ever take over.
//!
//! - **Reports.** A proxy or client that cannot reach the master while a standby answers
//!   tells that standby so, in a `Locate` ([`Report`], taken in by
//!   [`crate::server::Node::report_unreachable`]).
//! - **The standby's check** ([`deposer`]). It acts only on a report naming the master
//!   etcd names, and only if it cannot reach that master either (a second, independent
//!   witness). Then it writes a **step-down request** naming that master's exact term (its
//!   election key and the key's create revision), in one etcd transaction that succeeds
//!   only if that term still leads and no other request exists. The request lives on an
//!   etcd lease of [`COOLDOWN`]: etcd itself keeps a cell to one request per cooldown.
//! - **The master** ([`asked_to_step_down`]) reads the request key while it serves; one
//!   naming its own term makes it stop serving, then revoke its lease, as a master that
//!   lost its lease does. The standby's election key, older than any key the old master
//!   makes afterwards, then leads.
//!
//! Nothing here lets two masters serve at once: the only one that stops a master is the
//! master itself, before its lease (and with it its election key) goes.

use crate::server::Node;
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The shortest time between two step-down requests of one cell, kept by etcd (the
/// request's lease): a cell cannot flap faster than this however its clients see it.
pub const COOLDOWN: Duration = Duration::from_secs(30);
/// How long the standby's own `Locate` of the master may take before the master counts as
/// unreachable from the standby too.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);
/// After checking one report, the standby ignores reports for this long (a master that
/// answered it is not probed once per reporter).
const CHECK_PAUSE: Duration = Duration::from_secs(2);
/// How often the master reads the step-down request key.
pub const POLL: Duration = Duration::from_millis(250);

/// "The master at `master`, epoch `epoch`, did not answer me": what a `Locate` may carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub master: String,
    pub epoch: u64,
}

/// The step-down request, the value of `<prefix>depose`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDown {
    /// The election key of the term asked to step down, and its create revision: the
    /// term's identity, as in the store's write fence.
    pub key: Vec<u8>,
    pub create_revision: i64,
    /// That master's address, and the standby that asked (for logs and `/status`).
    pub master: String,
    pub by: String,
}

/// The key of a cell's step-down request.
pub fn request_key(prefix: &str) -> String {
    format!("{prefix}depose")
}

/// Whether a standby that knows `known_master` acts on `report`: only one naming the
/// master it follows (a report about an older master, or one it does not know, is stale).
pub fn accept(report: &Report, known_master: &str) -> bool {
    !report.master.is_empty() && report.master == known_master
}

/// Bounds an etcd call.
async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs(3), f).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("etcd did not answer within 3 s".into()),
    }
}

/// Whether the server at `addr` answers `Locate` within [`CONFIRM_TIMEOUT`].
async fn reachable(addr: &str) -> bool {
    let attempt = async {
        let conn = warren_client::transport::dial(addr, CONFIRM_TIMEOUT).await?;
        warren_client::transport::locate_at(&conn, CONFIRM_TIMEOUT).await
    };
    tokio::time::timeout(CONFIRM_TIMEOUT, attempt)
        .await
        .is_ok_and(|r| r.is_ok())
}

/// A standby's side, run while it campaigns: checks the reports it is sent and asks an
/// unreachable master to step down (see the module docs). Ends when aborted (the standby
/// was elected, or its campaign ended).
pub async fn deposer(node: Arc<Node>, mut client: Client, election: String, prefix: String) {
    let mut reports = node.unreachable_reports();
    let mut quiet_until = Instant::now();
    loop {
        if reports.changed().await.is_err() {
            return;
        }
        let Some(report) = reports.borrow_and_update().clone() else {
            continue;
        };
        if Instant::now() < quiet_until {
            continue;
        }
        quiet_until = Instant::now() + CHECK_PAUSE;
        // The master as etcd has it now, with its term's identity.
        let leader = match bounded(client.leader(election.clone())).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(%e, "no leader to check a report against");
                continue;
            }
        };
        let Some(kv) = leader.kv() else { continue };
        let master = String::from_utf8_lossy(kv.value()).into_owned();
        if !accept(&report, &master) {
            continue;
        }
        if reachable(&master).await {
            tracing::info!(%master, "a client reported the master unreachable, but it answers here; leaving it");
            continue;
        }
        let request = StepDown {
            key: kv.key().to_vec(),
            create_revision: kv.create_revision(),
            master: master.clone(),
            by: node.replica.clone(),
        };
        match ask_to_step_down(&mut client, &prefix, &request).await {
            Ok(true) => {
                tracing::warn!(%master, epoch = report.epoch, "the master answers neither clients nor this standby; asked it, through etcd, to step down");
                metrics::counter!("warren_cell_step_down_requests_total").increment(1);
            }
            Ok(false) => {
                tracing::info!(%master, "not asking the master to step down: its term ended, or another request is within its cooldown")
            }
            Err(e) => tracing::warn!(%master, %e, "could not write the step-down request"),
        }
    }
}

/// Writes `request` if its term still leads and no request exists; `Ok(false)` otherwise.
async fn ask_to_step_down(
    client: &mut Client,
    prefix: &str,
    request: &StepDown,
) -> Result<bool, String> {
    let value = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let lease = bounded(client.lease_grant(COOLDOWN.as_secs() as i64, None)).await?;
    let key = request_key(prefix);
    let txn = Txn::new()
        .when([
            Compare::create_revision(
                request.key.clone(),
                CompareOp::Equal,
                request.create_revision,
            ),
            Compare::version(key.clone(), CompareOp::Equal, 0),
        ])
        .and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease.id())),
        )]);
    let done = bounded(client.txn(txn)).await?.succeeded();
    if !done {
        let _ = bounded(client.lease_revoke(lease.id())).await;
    }
    Ok(done)
}

/// The master's side: resolves with the request once one names this master's term
/// (`key`, `create_revision`). Reads the key every [`POLL`]; etcd trouble is left to the
/// lease, which stops the master anyway if etcd stays away.
pub async fn asked_to_step_down(
    mut client: Client,
    prefix: String,
    key: Vec<u8>,
    create_revision: i64,
) -> StepDown {
    let request_key = request_key(&prefix);
    loop {
        tokio::time::sleep(POLL).await;
        let Ok(r) = bounded(client.get(request_key.clone(), None)).await else {
            continue;
        };
        let Some(kv) = r.kvs().first() else { continue };
        match serde_json::from_slice::<StepDown>(kv.value()) {
            Ok(s) if s.key == key && s.create_revision == create_revision => return s,
            Ok(_) => {} // another term's (within its cooldown)
            Err(e) => tracing::warn!(%e, "unreadable step-down request in etcd; ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_only_for_the_master_the_standby_follows() {
        let r = |m: &str| Report {
            master: m.into(),
            epoch: 3,
        };
        assert!(accept(&r("10.0.0.1:7000"), "10.0.0.1:7000"));
        assert!(!accept(&r("10.0.0.1:7000"), "10.0.0.2:7000"));
        assert!(!accept(&r("10.0.0.1:7000"), ""));
        assert!(!accept(&r(""), ""));
    }

    #[test]
    fn the_request_names_a_term_and_round_trips() {
        let s = StepDown {
            key: b"/warren/local/c0/election/694d".to_vec(),
            create_revision: 42,
            master: "127.0.0.1:7100".into(),
            by: "r1".into(),
        };
        let v = serde_json::to_vec(&s).unwrap();
        assert_eq!(serde_json::from_slice::<StepDown>(&v).unwrap(), s);
        assert_eq!(request_key("/warren/local/c0/"), "/warren/local/c0/depose");
    }
}
