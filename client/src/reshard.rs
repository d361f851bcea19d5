//! Calling a cell's `warren.v1.Reshard` service (docs/resharding.md) at its master: the
//! reshard job at the meta cell calls data cells with it, `warren ctl reshard` calls the
//! meta cell and the cells. Each call tries the cell's replicas in order and follows a
//! standby's `NOT_MASTER` to the master it names. [`slot_counts`] is the step of making a
//! plan that asks the source cells what their moving slots hold (`ctl reshard plan`, the
//! load tester's `--reshard`).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use warren_proto::pb;
use warren_proto::pb::reshard_client::ReshardClient;
use warren_proto::{ErrorCode, WarrenError};
use warren_reshard::{MoveCounts, Plan};
use warren_router::PartitionMap;

/// How long to wait for a connection to one replica.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one call may take (an export of a large slot, a freeze's write).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// `NOT_MASTER` redirects followed in one call.
const MAX_REDIRECTS: usize = 3;

/// Why a Reshard call found no master to answer it.
#[derive(Debug)]
pub enum CallError {
    /// A server answered with a Warren error (other than a `NOT_MASTER` to follow).
    Warren(WarrenError),
    /// No replica answered: what each attempt met. `maybe_sent`: whether one of the
    /// attempts lost the call after it may have been sent (a reset, no reply in time), so
    /// that it may have taken effect; else nothing was sent (connection refused, no
    /// connection in time, `NOT_MASTER`).
    Unreachable {
        /// What each attempt met, `ADDR: why`.
        attempts: Vec<String>,
        /// Whether the call may have been sent.
        maybe_sent: bool,
    },
}

impl CallError {
    /// The error table's code for it: the Warren error's own; for no replica answering,
    /// `UNREACHABLE` (nothing sent) or `OUTCOME_UNKNOWN` (`maybe_sent`).
    pub fn code(&self) -> ErrorCode {
        match self {
            CallError::Warren(e) => e.code,
            CallError::Unreachable {
                maybe_sent: false, ..
            } => ErrorCode::Unreachable,
            CallError::Unreachable {
                maybe_sent: true, ..
            } => ErrorCode::OutcomeUnknown,
        }
    }
}

/// The messages of `err` and its sources, each saying something new, joined with `": "`
/// (tonic's own message alone is just "transport error").
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A Reshard client for `addr`, connected.
async fn dial(addr: &str) -> Result<ReshardClient<Channel>, String> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| format!("{addr:?} is not a valid HOST:PORT: {}", error_chain(&e)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true);
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        crate::transport::connect_endpoint(&endpoint),
    )
    .await
    {
        Ok(Ok(channel)) => {
            Ok(ReshardClient::new(channel)
                .max_decoding_message_size(warren_proto::MAX_MESSAGE_BYTES))
        }
        Ok(Err(e)) => Err(format!("{addr}: {}", error_chain(&e))),
        Err(_) => Err(format!("{addr}: no connection within {CONNECT_TIMEOUT:?}")),
    }
}

/// Runs `call` at the master among `replicas`: tries them in order, follows a standby's
/// `NOT_MASTER` to the master it names (at most [`MAX_REDIRECTS`] times), and moves on to
/// the next replica when one cannot be reached. A Warren error is the answer.
pub async fn at_master<T, F, Fut>(replicas: &[String], mut call: F) -> Result<T, CallError>
where
    F: FnMut(ReshardClient<Channel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut queue: Vec<String> = replicas.iter().rev().cloned().collect();
    let mut tried: HashSet<String> = HashSet::new();
    let mut attempts = Vec::new();
    let mut redirects = 0;
    let mut not_master = None;
    let mut maybe_sent = false;
    while let Some(addr) = queue.pop() {
        if !tried.insert(addr.clone()) {
            continue;
        }
        let client = match dial(&addr).await {
            Ok(c) => c,
            Err(e) => {
                attempts.push(e);
                continue;
            }
        };
        let status = match call(client).await {
            Ok(reply) => return Ok(reply.into_inner()),
            Err(status) => status,
        };
        match WarrenError::from_status(&status) {
            Some(e) if e.code == ErrorCode::NotMaster => {
                if !e.master.is_empty() && redirects < MAX_REDIRECTS && !tried.contains(&e.master) {
                    redirects += 1;
                    queue.push(e.master.clone());
                }
                attempts.push(format!("{addr}: {}", e.message));
                not_master = Some(e);
            }
            Some(e) => return Err(CallError::Warren(e)),
            None if status.code() == tonic::Code::Unimplemented => attempts.push(format!(
                "{addr} does not serve the Reshard service (a Warren without resharding?)"
            )),
            None => {
                maybe_sent |= !crate::transport::not_sent(&status);
                attempts.push(format!(
                    "{addr}: {:?}: {}",
                    status.code(),
                    error_chain(&status)
                ))
            }
        }
    }
    // Every replica answered NOT_MASTER and none named a master we could reach: that
    // answer says more than "unreachable" (e.g. a cell in the middle of an election).
    match not_master {
        Some(e) if attempts.len() == 1 => Err(CallError::Warren(e)),
        _ => Err(CallError::Unreachable {
            attempts,
            maybe_sent,
        }),
    }
}

/// Why [`slot_counts`] (or [`cell_counts`]) has no answer.
#[derive(Debug)]
pub enum CountsError {
    /// A source cell could not be asked.
    Call {
        /// The cell's name.
        cell: String,
        /// Its replicas, as the map lists them.
        replicas: Vec<String>,
        /// What the call met.
        error: CallError,
    },
    /// A source cell has seen a newer map than the plan was made against: the map changed
    /// while planning, and the plan is stale.
    Stale {
        /// The cell's name.
        cell: String,
        /// The map epoch it answered at.
        answered: u64,
        /// The epoch the plan was made against.
        plan: u64,
    },
}

/// Asks every source cell of `plan` (made against `map`), concurrently, what its moving
/// slots hold: the counts to [`Plan::set_counts`].
pub async fn slot_counts(
    map: &PartitionMap,
    plan: &Plan,
) -> Result<BTreeMap<u32, MoveCounts>, CountsError> {
    let mut by_source: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for m in &plan.moves {
        by_source.entry(m.from.as_str()).or_default().push(m.slot);
    }
    let asks = by_source.into_iter().map(|(cell, slots)| {
        let replicas = map.replicas(cell).unwrap_or_default();
        cell_counts(cell, replicas, slots, plan.from_epoch)
    });
    let mut all = BTreeMap::new();
    for counts in futures::future::join_all(asks).await {
        all.extend(counts?);
    }
    Ok(all)
}

/// `SlotStats` at the master of cell `cell` (at `replicas`): the counts of `slots` (those it
/// does not list hold nothing), refused as [`CountsError::Stale`] if the cell has seen a map
/// newer than `plan_epoch`.
pub async fn cell_counts(
    cell: &str,
    replicas: &[String],
    slots: Vec<u32>,
    plan_epoch: u64,
) -> Result<BTreeMap<u32, MoveCounts>, CountsError> {
    let request = pb::SlotStatsRequest { slots };
    let reply = at_master(replicas, |mut c| {
        let request = request.clone();
        async move { c.slot_stats(request).await }
    })
    .await
    .map_err(|error| CountsError::Call {
        cell: cell.to_string(),
        replicas: replicas.to_vec(),
        error,
    })?;
    if reply.map_epoch > plan_epoch {
        return Err(CountsError::Stale {
            cell: cell.to_string(),
            answered: reply.map_epoch,
            plan: plan_epoch,
        });
    }
    Ok(counts_of(&reply))
}

/// The counts in a `SlotStats` answer, by slot.
pub fn counts_of(reply: &pb::SlotStatsResponse) -> BTreeMap<u32, MoveCounts> {
    reply
        .slots
        .iter()
        .map(|s| {
            let counts = MoveCounts {
                directories: s.directories,
                nodes: s.nodes,
                bytes: s.bytes,
                held_locks: s.held_locks,
                ephemeral_nodes: s.ephemeral_nodes,
                open_handles: s.open_handles,
                sessions: s.sessions,
            };
            (s.slot, counts)
        })
        .collect()
}
