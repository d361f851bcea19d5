//! The reshard job at the meta cell (docs/resharding.md): `ApplyPlan`, `JobStatus` and
//! `AbortJob`.
//!
//! Not built yet: the driver that runs the job's state machine (`warren-reshard`'s job) in
//! the meta cell's master. Until it is, the job calls answer `INVALID_ARGUMENT` saying so,
//! and nothing changes; the slot calls ([`super::reshard`]) are complete.

use super::node::Node;
use std::sync::Arc;
use tonic::Status;
use warren_proto::pb;
use warren_proto::WarrenError;

fn not_built() -> Status {
    WarrenError::invalid_argument(
        "this Warren build cannot run reshard jobs yet (the meta cell's job driver is not built); nothing was changed",
    )
    .into()
}

pub(super) async fn apply(
    _node: &Arc<Node>,
    _req: pb::ApplyPlanRequest,
) -> Result<pb::ApplyPlanResponse, Status> {
    Err(not_built())
}

pub(super) async fn status(_node: &Arc<Node>) -> Result<pb::JobStatusResponse, Status> {
    Err(not_built())
}

pub(super) async fn abort(_node: &Arc<Node>) -> Result<pb::AbortJobResponse, Status> {
    Err(not_built())
}
