//! Calling a cell's `warren.v1.Reshard` service (docs/resharding.md) at its master: the
//! reshard job at the meta cell calls data cells with it, `warren ctl reshard` calls the
//! meta cell and the cells. Each call tries the cell's replicas in order and follows a
//! standby's `NOT_MASTER` to the master it names.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use warren_proto::pb::reshard_client::ReshardClient;
use warren_proto::{ErrorCode, WarrenError};

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
    /// No replica answered: what each attempt met.
    Unreachable(Vec<String>),
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
    match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
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
            None => attempts.push(format!(
                "{addr}: {:?}: {}",
                status.code(),
                error_chain(&status)
            )),
        }
    }
    // Every replica answered NOT_MASTER and none named a master we could reach: that
    // answer says more than "unreachable" (e.g. a cell in the middle of an election).
    match not_master {
        Some(e) if attempts.len() == 1 => Err(CallError::Warren(e)),
        _ => Err(CallError::Unreachable(attempts)),
    }
}
