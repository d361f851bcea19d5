//! The cell's `warren.v1.Reshard` service (docs/resharding.md): the slot calls the meta
//! cell's reshard job makes to sources and targets, each run on the master like any call
//! and answered once its effects are durable, and the job calls `warren ctl reshard` makes
//! at the meta cell ([`super::reshard_job`]).

use super::fault::{self, CrashPoint};
use super::node::Node;
use super::reshard_job;
use crate::core::reshard::{decode_bundle, decode_have, encode_bundle, encode_have};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};
use warren_proto::pb;
use warren_proto::WarrenError;

/// How long a freeze lasts when the job names no bound.
pub const DEFAULT_FREEZE: Duration = Duration::from_secs(2);
/// The longest freeze a job may ask for: writes wait this long at most.
pub const MAX_FREEZE: Duration = Duration::from_secs(60);

/// The service of `node` (added to the cell's gRPC routes).
pub(super) fn service(node: Arc<Node>) -> pb::reshard_server::ReshardServer<ReshardService> {
    pb::reshard_server::ReshardServer::new(ReshardService { node })
        .max_decoding_message_size(warren_proto::MAX_MESSAGE_BYTES)
}

pub(super) struct ReshardService {
    node: Arc<Node>,
}

impl ReshardService {
    /// The reshard calls (and `SessionTable`) are for the cells' reshard job and `warren
    /// ctl reshard` (`ctl session list`): from an
    /// authenticated caller, only an operator or a cell ([`crate::core::CallerRules`]);
    /// on a plaintext connection not judged, as every asserted principal (docs/security.md).
    fn operator_only<T>(&self, req: &Request<T>, call: &str) -> Result<(), Status> {
        match warren_server::auth::peer_identity(req) {
            Some(p) if !self.node.callers.is_operator(&p.principal) => {
                Err(WarrenError::permission_denied(format!(
                    "principal {:?} may not call Reshard.{call}: the Reshard service (slot \
                     moves, the reshard job, the session table) is for cells ({:?}) and \
                     operators ({:?} or a principal in the cell's operator_principals, \
                     --operator-principal)",
                    p.principal,
                    crate::core::CELL_PRINCIPAL,
                    crate::core::OPERATOR_PRINCIPAL,
                ))
                .into())
            }
            _ => Ok(()),
        }
    }
}

/// The slots and job every slot call names, checked.
fn slots_of(job: &str, slots: &[u32]) -> Result<(), Status> {
    if job.is_empty() || job.len() > 128 {
        return Err(
            WarrenError::invalid_argument("a reshard call names its job (1–128 bytes)").into(),
        );
    }
    if slots.is_empty() {
        return Err(WarrenError::invalid_argument("a reshard call names at least one slot").into());
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::reshard_server::Reshard for ReshardService {
    async fn slot_stats(
        &self,
        req: Request<pb::SlotStatsRequest>,
    ) -> Result<Response<pb::SlotStatsResponse>, Status> {
        self.operator_only(&req, "SlotStats")?;
        let r = req.into_inner();
        let shared = self.node.master()?;
        let (map_epoch, stats) = shared
            .run(|m, _| Ok((m.map_epoch(), m.slot_stats(&r.slots)?)))
            .await?;
        Ok(Response::new(pb::SlotStatsResponse {
            map_epoch,
            slots: stats
                .into_iter()
                .map(|(slot, c)| pb::SlotCounts {
                    slot,
                    directories: c.directories,
                    nodes: c.nodes,
                    bytes: c.bytes,
                    held_locks: c.held_locks,
                    ephemeral_nodes: c.ephemeral_nodes,
                    open_handles: c.open_handles,
                    sessions: c.sessions,
                })
                .collect(),
        }))
    }

    async fn export_slots(
        &self,
        req: Request<pb::ExportSlotsRequest>,
    ) -> Result<Response<pb::ExportSlotsResponse>, Status> {
        self.operator_only(&req, "ExportSlots")?;
        let r = req.into_inner();
        slots_of(&r.job, &r.slots)?;
        fault::crash_if_armed(CrashPoint::OnExport);
        let have = decode_have(&r.have)?;
        let shared = self.node.master()?;
        let (bundle, info) = shared
            .run(|m, _| m.export_slots(&r.job, &r.slots, &have, r.max_bytes))
            .await?;
        if let Some(delay) = fault::final_export_delay().filter(|_| info.frozen) {
            tokio::time::sleep(delay).await;
        }
        Ok(Response::new(pb::ExportSlotsResponse {
            bundle: encode_bundle(&bundle),
            nodes: info.nodes,
            bytes: info.bytes,
            removed: info.removed,
            digest: info.digest,
            total_nodes: info.total_nodes,
            frozen: info.frozen,
            more: info.more,
        }))
    }

    async fn import_slots(
        &self,
        req: Request<pb::ImportSlotsRequest>,
    ) -> Result<Response<pb::ImportSlotsResponse>, Status> {
        self.operator_only(&req, "ImportSlots")?;
        let r = req.into_inner();
        slots_of(&r.job, &r.slots)?;
        let bundle = decode_bundle(&r.bundle)?;
        if !bundle.full {
            fault::crash_if_armed(CrashPoint::OnCatchUpImport);
        }
        let shared = self.node.master()?;
        let imported = shared.run(|m, _| m.import_slots(&r.slots, bundle)).await?;
        Ok(Response::new(pb::ImportSlotsResponse {
            have: encode_have(&imported.have),
            digest: imported.digest,
            total_nodes: imported.total_nodes,
        }))
    }

    async fn freeze_slots(
        &self,
        req: Request<pb::FreezeSlotsRequest>,
    ) -> Result<Response<pb::FreezeSlotsResponse>, Status> {
        self.operator_only(&req, "FreezeSlots")?;
        let r = req.into_inner();
        slots_of(&r.job, &r.slots)?;
        let bound = match r.timeout_ms {
            0 => DEFAULT_FREEZE,
            ms => Duration::from_millis(ms).min(MAX_FREEZE),
        };
        let shared = self.node.master()?;
        shared
            .run(|m, now| m.freeze_slots(&r.job, &r.slots, now + bound))
            .await?;
        fault::crash_if_armed(CrashPoint::OnFreeze);
        Ok(Response::new(pb::FreezeSlotsResponse {}))
    }

    async fn hand_off_slots(
        &self,
        req: Request<pb::HandOffSlotsRequest>,
    ) -> Result<Response<pb::HandOffSlotsResponse>, Status> {
        self.operator_only(&req, "HandOffSlots")?;
        let r = req.into_inner();
        slots_of(&r.job, &r.slots)?;
        if r.to.is_empty() || r.map_epoch == 0 {
            return Err(WarrenError::invalid_argument(
                "HandOffSlots names the new owner and the map epoch that gives it the slots",
            )
            .into());
        }
        let shared = self.node.master()?;
        let outcome = shared
            .run(|m, _| m.hand_off(&r.job, &r.slots, &r.to, r.map_epoch, r.digest))
            .await?;
        Ok(Response::new(match outcome {
            Ok(()) => pb::HandOffSlotsResponse {
                handed_off: true,
                reason: String::new(),
            },
            Err(reason) => pb::HandOffSlotsResponse {
                handed_off: false,
                reason,
            },
        }))
    }

    async fn release_slots(
        &self,
        req: Request<pb::ReleaseSlotsRequest>,
    ) -> Result<Response<pb::ReleaseSlotsResponse>, Status> {
        self.operator_only(&req, "ReleaseSlots")?;
        let r = req.into_inner();
        slots_of(&r.job, &r.slots)?;
        let shared = self.node.master()?;
        shared
            .run(|m, _| {
                m.release_slots(&r.job, &r.slots);
                Ok(())
            })
            .await?;
        Ok(Response::new(pb::ReleaseSlotsResponse {}))
    }

    async fn drop_slots(
        &self,
        req: Request<pb::DropSlotsRequest>,
    ) -> Result<Response<pb::DropSlotsResponse>, Status> {
        self.operator_only(&req, "DropSlots")?;
        let r = req.into_inner();
        slots_of(&r.job, &r.slots)?;
        let shared = self.node.master()?;
        if r.map_epoch > 0 {
            shared.catch_up(r.map_epoch).await;
        }
        let nodes = shared.run(|m, _| m.drop_slots(&r.slots)).await?;
        Ok(Response::new(pb::DropSlotsResponse { nodes }))
    }

    async fn apply_plan(
        &self,
        req: Request<pb::ApplyPlanRequest>,
    ) -> Result<Response<pb::ApplyPlanResponse>, Status> {
        self.operator_only(&req, "ApplyPlan")?;
        reshard_job::apply(&self.node, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn job_status(
        &self,
        req: Request<pb::JobStatusRequest>,
    ) -> Result<Response<pb::JobStatusResponse>, Status> {
        self.operator_only(&req, "JobStatus")?;
        reshard_job::status(&self.node).await.map(Response::new)
    }

    async fn abort_job(
        &self,
        req: Request<pb::AbortJobRequest>,
    ) -> Result<Response<pb::AbortJobResponse>, Status> {
        self.operator_only(&req, "AbortJob")?;
        reshard_job::abort(&self.node).await.map(Response::new)
    }

    /// The session and lock tables of this cell's master (`NOT_MASTER` at a standby), for
    /// `warren ctl session list`: they name every session's principal and locks, so over
    /// mutual TLS only operators and cells may read them (docs/security.md, "Who may list
    /// sessions").
    async fn session_table(
        &self,
        req: Request<pb::SessionTableRequest>,
    ) -> Result<Response<pb::SessionTableResponse>, Status> {
        self.operator_only(&req, "SessionTable")?;
        let table = crate::admin::session_table_json(&self.node)?;
        Ok(Response::new(pb::SessionTableResponse {
            table: table.into_bytes(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CallerRules, CoreConfig};
    use crate::server::CellOptions;
    use pb::reshard_server::Reshard;
    use warren_proto::ErrorCode;
    use warren_server::auth::PeerIdentity;

    fn service() -> ReshardService {
        let mut core = CoreConfig::new("c0", "local");
        core.callers = CallerRules {
            proxies: ["warren:proxy-1".to_string()].into(),
            operators: ["ops".to_string()].into(),
        };
        let node = Node::new(&CellOptions::new(core), "127.0.0.1:1".into(), "embedded");
        ReshardService { node }
    }

    fn from<T>(principal: Option<&str>, body: T) -> Request<T> {
        let mut req = Request::new(body);
        if let Some(p) = principal {
            req.extensions_mut().insert(PeerIdentity {
                principal: p.into(),
            });
        }
        req
    }

    fn code(s: &Status) -> Option<ErrorCode> {
        WarrenError::from_status(s).map(|e| e.code)
    }

    #[tokio::test]
    async fn reshard_calls_are_for_operators_and_cells_when_the_caller_is_authenticated() {
        let svc = service();
        for who in ["alice", "warren:proxy-1"] {
            let e = svc
                .abort_job(from(Some(who), pb::AbortJobRequest {}))
                .await
                .unwrap_err();
            assert_eq!(code(&e), Some(ErrorCode::PermissionDenied), "{e:?}");
            assert!(
                e.message().contains(who) && e.message().contains("AbortJob"),
                "{}",
                e.message()
            );
        }
        // Operators, cells and plaintext callers pass the check (this node is a standby,
        // so the call itself then fails NOT_MASTER).
        for who in [
            Some("ops"),
            Some("warren:operator"),
            Some("warren:cell"),
            None,
        ] {
            let e = svc
                .abort_job(from(who, pb::AbortJobRequest {}))
                .await
                .unwrap_err();
            assert_eq!(code(&e), Some(ErrorCode::NotMaster), "{who:?}: {e:?}");
        }
    }

    /// The session table names every session's principal and locks: over mutual TLS only
    /// operators and cells read it (a standby answers NOT_MASTER, for ctl to follow).
    #[tokio::test]
    async fn the_session_table_is_for_operators_and_cells() {
        let svc = service();
        for who in ["alice", "warren:proxy-1"] {
            let e = svc
                .session_table(from(Some(who), pb::SessionTableRequest {}))
                .await
                .unwrap_err();
            assert_eq!(code(&e), Some(ErrorCode::PermissionDenied), "{e:?}");
            assert!(
                e.message().contains(who) && e.message().contains("SessionTable"),
                "{}",
                e.message()
            );
        }
        for who in [Some("ops"), Some("warren:operator"), None] {
            let e = svc
                .session_table(from(who, pb::SessionTableRequest {}))
                .await
                .unwrap_err();
            assert_eq!(code(&e), Some(ErrorCode::NotMaster), "{who:?}: {e:?}");
        }
    }
}
