//! One replica of a cell as the gRPC service and the admin endpoint see it: its [`Role`]
//! (master of a term, or standby knowing where the master is), what `Locate` answers and
//! the [`CellStatus`] snapshot `/status` shows, and [`CellHandle`], what [`super::run`]
//! hands a caller.

use super::term::Shared;
use super::CellOptions;
use crate::core::MasterStatus;
use std::sync::{Arc, RwLock};
use tonic::Status;
use warren_proto::pb;
use warren_proto::WarrenError;

/// This replica's part in its cell right now.
pub(crate) enum Role {
    /// Not (yet, or no longer) master: answers `Locate` and `NOT_MASTER{master}`.
    Standby {
        master: String,
        epoch: u64,
    },
    Master(Arc<Shared>),
}

/// A snapshot for `/status`: what the master's core counts ([`MasterStatus`]; on a
/// standby only the cell, deployment and epoch, the counts zero) and this replica's part.
/// It reads as the counts it extends (`status.sessions`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CellStatus {
    /// In `/status` as fields of their own, beside this replica's.
    #[serde(flatten)]
    pub core: MasterStatus,
    /// This replica's id (empty for a single-replica cell).
    pub replica: String,
    /// `master` or `standby`.
    pub role: &'static str,
    /// The master's address, if known.
    pub master: String,
    pub store: &'static str,
    /// `ok`, or what is wrong with the store (etcd unreachable, …).
    pub store_health: String,
    /// The master accepts all operations (not recovering from a failover).
    pub serving: bool,
}

impl std::ops::Deref for CellStatus {
    type Target = MasterStatus;

    fn deref(&self) -> &MasterStatus {
        &self.core
    }
}

/// One replica of a cell: what the gRPC service and the admin endpoint see. Its role
/// changes as it wins or loses mastership; the service is up from the start, so `Locate`
/// is answered before anything else (docs/design.md §9 step 2).
pub(crate) struct Node {
    role: RwLock<Role>,
    pub(crate) cell: String,
    pub(crate) deployment: String,
    pub(crate) advertise: String,
    pub(crate) replica: String,
    pub(crate) store_kind: &'static str,
    /// Who may act as a proxy or an operator (docs/security.md), for the services that
    /// judge callers outside the master (the reshard service).
    pub(crate) callers: crate::core::CallerRules,
    /// Last known health of the store backend (etcd), for `/status`.
    pub(crate) store_health: RwLock<String>,
    /// The latest report that a caller could not reach the master (docs/design.md §9, "A
    /// master nobody can reach"), for the standby's deposer ([`crate::depose`]).
    unreachable: tokio::sync::watch::Sender<Option<crate::depose::Report>>,
}

impl Node {
    pub(crate) fn new(
        opts: &CellOptions,
        advertise: String,
        store_kind: &'static str,
    ) -> Arc<Node> {
        Arc::new(Node {
            role: RwLock::new(Role::Standby {
                master: String::new(),
                epoch: 0,
            }),
            cell: opts.core.cell.clone(),
            deployment: opts.core.deployment.clone(),
            advertise,
            replica: opts.replica.clone(),
            store_kind,
            callers: opts.core.callers.clone(),
            store_health: RwLock::new("ok".into()),
            unreachable: tokio::sync::watch::channel(None).0,
        })
    }

    /// A caller says it could not reach `master` (of `epoch`). Kept only by a standby that
    /// follows that very master; its deposer decides what to do ([`crate::depose`]).
    pub(crate) fn report_unreachable(&self, master: String, epoch: u64) {
        let follows = match &*self.role.read().unwrap_or_else(|p| p.into_inner()) {
            Role::Standby { master: m, .. } => m.clone(),
            Role::Master(_) => return,
        };
        let report = crate::depose::Report { master, epoch };
        if crate::depose::accept(&report, &follows) {
            self.unreachable.send_replace(Some(report));
        }
    }

    /// The reports [`Node::report_unreachable`] kept, newest only.
    pub(crate) fn unreachable_reports(
        &self,
    ) -> tokio::sync::watch::Receiver<Option<crate::depose::Report>> {
        self.unreachable.subscribe()
    }

    pub(crate) fn set_role(&self, r: Role) {
        let old = std::mem::replace(
            &mut *self.role.write().unwrap_or_else(|p| p.into_inner()),
            r,
        );
        if let Role::Master(shared) = old {
            shared.close();
        }
    }

    /// The current master term, or `NOT_MASTER` naming the master if known.
    pub(crate) fn master(&self) -> Result<Arc<Shared>, Status> {
        match &*self.role.read().unwrap_or_else(|p| p.into_inner()) {
            Role::Master(s) => Ok(s.clone()),
            Role::Standby { master, .. } => Err(WarrenError::not_master(master.clone()).into()),
        }
    }

    fn store_health(&self) -> String {
        self.store_health
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn locate(&self) -> pb::LocateResponse {
        let mut r = pb::LocateResponse {
            cell: self.cell.clone(),
            deployment: self.deployment.clone(),
            role: "standby".into(),
            replica: self.replica.clone(),
            store_health: self.store_health(),
            ..Default::default()
        };
        match &*self.role.read().unwrap_or_else(|p| p.into_inner()) {
            Role::Master(shared) => {
                let st = shared.lock();
                r.master = self.advertise.clone();
                r.epoch = st.master.epoch();
                r.is_master = true;
                r.role = "master".into();
                r.serving = st.serving();
                r.map_epoch = st.master.map_epoch();
            }
            Role::Standby { master, epoch } => {
                r.master = master.clone();
                r.epoch = *epoch;
            }
        }
        r
    }

    pub(crate) fn status(&self) -> CellStatus {
        let standby = CellStatus {
            core: MasterStatus {
                cell: self.cell.clone(),
                deployment: self.deployment.clone(),
                ..MasterStatus::default()
            },
            replica: self.replica.clone(),
            role: "standby",
            store: self.store_kind,
            store_health: self.store_health(),
            ..CellStatus::default()
        };
        match &*self.role.read().unwrap_or_else(|p| p.into_inner()) {
            Role::Master(shared) => {
                let g = shared.lock();
                CellStatus {
                    core: g.master.status(),
                    role: "master",
                    master: self.advertise.clone(),
                    serving: g.serving(),
                    ..standby
                }
            }
            Role::Standby { master, epoch } => CellStatus {
                core: MasterStatus {
                    epoch: *epoch,
                    ..standby.core
                },
                master: master.clone(),
                ..standby
            },
        }
    }

    /// What `/readyz` and the gRPC health service say, cheaply (the health service asks
    /// every 200 ms; [`Node::status`] counts sessions and locks under the master's lock):
    /// a master that serves all operations with its partition map loaded.
    pub(crate) fn ready(&self) -> bool {
        match &*self.role.read().unwrap_or_else(|p| p.into_inner()) {
            Role::Master(shared) => {
                let g = shared.lock();
                g.serving() && g.master.map_loaded()
            }
            Role::Standby { .. } => false,
        }
    }

    pub(crate) fn is_master(&self) -> bool {
        matches!(
            &*self.role.read().unwrap_or_else(|p| p.into_inner()),
            Role::Master(_)
        )
    }
}

/// What [`super::run`] hands back once the cell is serving (through `on_ready`).
#[derive(Clone)]
pub struct CellHandle {
    node: Arc<Node>,
}

impl CellHandle {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        CellHandle { node }
    }

    pub fn status(&self) -> CellStatus {
        self.node.status()
    }
}

#[cfg(test)]
mod tests;
