//! The steps that cross cells (docs/partitioning.md), run after the master's part is
//! durable: reading ACL files held by other cells (then running the call again), creating
//! the child anchor of a directory split over two cells, unlinking the entry of a deleted
//! anchor, and the janitor that finishes interrupted anchors and unlinks at the start of a
//! term and every second.

use super::fault::{self, CrashPoint};
use super::term::Shared;
use crate::core::HashMap;
use crate::core::{AnchorJob, CallNotes, Master, Reply};
use crate::edge;
use crate::store::PendingUnlink;
use std::sync::Weak;
use std::time::Duration;
use tokio::time::Instant;
use tonic::Status;
use warren_proto::pb;
use warren_proto::{ErrorCode, WarrenError};
use warren_router::Route;

/// How many times a call is run again after reading ACL files held by other cells.
const ACL_ROUNDS: usize = 3;
/// How many times an `Open` creates a child anchor and runs again.
const ANCHOR_ROUNDS: usize = 2;
/// How long a `Delete` waits for the entry of a removed anchor to be unlinked before it
/// replies anyway (the unlink is durable; the janitor finishes it).
const UNLINK_WAIT: Duration = Duration::from_secs(4);

/// ACL files held by other cells, read for one call so far (path → contents; `None`: no
/// such file), and how many times the call ran again for them.
#[derive(Default)]
pub(super) struct ForeignAcls {
    files: HashMap<String, Option<Vec<u8>>>,
    rounds: usize,
}

/// A status a peer cell (or this cell's own master) answered, as a Warren error.
fn status_error(s: Status) -> WarrenError {
    WarrenError::from_status(&s).unwrap_or_else(|| WarrenError::internal(s.message()))
}

impl Shared {
    /// A write (see [`Shared::write_noted`]) run again, up to [`ACL_ROUNDS`] times, each
    /// time the master needs ACL files held by other cells, with them read; returns its
    /// last run's result and notes.
    pub(super) async fn write_reading_acls<T>(
        &self,
        acls: &mut ForeignAcls,
        mut f: impl FnMut(&mut Master, Instant) -> Result<Reply<T>, WarrenError>,
    ) -> (Result<T, Status>, CallNotes) {
        loop {
            let (res, notes) = self.write_noted(&acls.files, &mut f).await;
            if !notes.acl_needed.is_empty() && acls.rounds < ACL_ROUNDS {
                acls.rounds += 1;
                if let Err(e) = self.read_acls(&notes.acl_needed, &mut acls.files).await {
                    return (Err(e.into()), CallNotes::default());
                }
                continue;
            }
            return (res, notes);
        }
    }

    /// The cell that owns `path` in the map in force (`meta` for the meta cell's paths),
    /// and that map's epoch; `no_map` says why a map was needed when there is none.
    fn owner_of(&self, path: &str, no_map: &str) -> Result<(String, u64), WarrenError> {
        let st = self.lock();
        let Some(map) = st.master.map() else {
            return Err(WarrenError::internal(no_map));
        };
        let owner = match map.route(path, false) {
            Ok(Route::Cell { cell, .. }) => cell.to_string(),
            Ok(Route::Meta) => "meta".to_string(),
            Err(e) => return Err(WarrenError::invalid_argument(e.to_string())),
        };
        Ok((owner, map.map_epoch()))
    }

    /// The replicas of `cell` in the map in force (`meta`: the meta cell's).
    fn addrs_of(&self, cell: &str) -> Result<Vec<String>, WarrenError> {
        let st = self.lock();
        if let Some(a) = st.master.map().and_then(|m| m.replicas(cell)) {
            return Ok(a.to_vec());
        }
        if cell == "meta" && !self.meta.is_empty() {
            return Ok(self.meta.clone());
        }
        Err(WarrenError::internal(format!(
            "the partition map lists no replicas for cell {cell}"
        )))
    }

    /// Reads the ACL files `files` (held by other cells) into `acls`.
    async fn read_acls(
        &self,
        files: &[String],
        acls: &mut HashMap<String, Option<Vec<u8>>>,
    ) -> Result<(), WarrenError> {
        for file in files {
            let (owner, _) = self.owner_of(file, "ACL file needed without a map")?;
            let addrs = self.addrs_of(&owner)?;
            let data = self.peers.read_acl(&owner, &addrs, file).await?;
            acls.insert(file.clone(), data);
        }
        Ok(())
    }

    /// What an `Open` does once the master has recorded the entry of a directory whose
    /// children live in another cell (`job`): creates the child anchor there, up to
    /// [`ANCHOR_ROUNDS`] times per call (`rounds` counts them). `Ok(true)`: run the `Open`
    /// again; `Ok(false)`: rounds used up, take the master's reply as it is. This `Open`
    /// having created the directory, the reply is `DIRECTORY_ELSEWHERE` (created): the
    /// client opens the anchor next.
    pub(super) async fn open_anchor_step(
        &self,
        job: &AnchorJob,
        rounds: &mut usize,
    ) -> Result<bool, Status> {
        if job.created {
            fault::crash_if_armed(CrashPoint::AfterEntry);
        }
        if *rounds >= ANCHOR_ROUNDS {
            return Ok(false);
        }
        *rounds += 1;
        if let Err(e) = self.finish_anchor(job).await {
            tracing::warn!(path = %job.path, owner = %job.owner, error = %e, "the child anchor could not be created; the janitor will retry");
            return Err(WarrenError::new(
                ErrorCode::FailoverInProgress,
                format!(
                    "{} is recorded, but its child anchor in cell {} could not be created yet ({}); this cell keeps trying; retry shortly",
                    job.path, job.owner, e.message
                ),
            )
            .into());
        }
        if job.created {
            // This Open created the directory: the client opens the anchor next. (Running
            // the Open again would find the entry, which an exclusive create must not
            // mistake for someone else's.)
            let mut e = WarrenError::directory_elsewhere(self.map_epoch(), &job.owner, &job.path);
            e.created = true;
            return Err(e.into());
        }
        Ok(true)
    }

    /// What a `Delete` does once the master has removed an anchor and recorded (durably)
    /// that its entry in the parent's cell is to go: unlinks the entry, waiting at most
    /// [`UNLINK_WAIT`]; the janitor finishes what this does not.
    pub(super) async fn unlink_after_delete(&self, u: &PendingUnlink) {
        fault::crash_if_armed(CrashPoint::AfterAnchorDelete);
        match tokio::time::timeout(UNLINK_WAIT, self.finish_unlink(u)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(path = %u.path, error = %e, "the entry of the deleted directory could not be unlinked yet; the janitor will finish it")
            }
            Err(_) => {
                tracing::warn!(path = %u.path, "unlinking the entry of the deleted directory is taking long; the janitor will finish it")
            }
        }
    }

    /// Step 2 of creating a directory split over two cells: the child anchor at its
    /// owner, then the mark on the entry cleared (committed).
    async fn finish_anchor(&self, job: &AnchorJob) -> Result<(), WarrenError> {
        let epoch = self.map_epoch();
        if job.owner != self.lock().master.config().cell {
            let addrs = self.addrs_of(&job.owner)?;
            let peer = self.peers.session(&job.owner, &addrs).await?;
            let req = pb::OpenRequest {
                path: job.path.clone(),
                create: Some(pb::CreateSpec {
                    kind: pb::NodeKind::Directory as i32,
                    ephemeral: job.ephemeral,
                    acl: Some(edge::acl_out(&job.acl)),
                    instance: job.instance,
                    ..Default::default()
                }),
                target: pb::OpenTarget::Anchor as i32,
                ..Default::default()
            };
            let reply = peer.open(epoch, req).await?;
            peer.close(epoch, &reply.handle).await;
        }
        self.run(|m, _| {
            m.anchor_created(&job.path, job.instance);
            Ok(())
        })
        .await
        .map_err(status_error)
    }

    /// Step 2 of deleting a directory split over two cells: its entry removed at the
    /// parent's cell (if still that instance), then the record dropped (committed).
    async fn finish_unlink(&self, u: &PendingUnlink) -> Result<(), WarrenError> {
        let (owner, epoch) = self.owner_of(&u.path, "no partition map to find the entry")?;
        if owner == self.lock().master.config().cell {
            return self
                .run(|m, _| {
                    m.unlink_local(u);
                    Ok(())
                })
                .await
                .map_err(status_error);
        }
        let addrs = self.addrs_of(&owner)?;
        let peer = self.peers.session(&owner, &addrs).await?;
        let req = pb::OpenRequest {
            path: u.path.clone(),
            intent: crate::core::intent::WRITE,
            target: pb::OpenTarget::Entry as i32,
            ..Default::default()
        };
        match peer.open(epoch, req).await {
            Ok(reply) => {
                let same = reply
                    .stat
                    .as_ref()
                    .is_some_and(|s| s.instance == u.instance);
                let r = if same {
                    peer.delete(epoch, &reply.handle).await
                } else {
                    Ok(())
                };
                peer.close(epoch, &reply.handle).await;
                match r {
                    Ok(()) => {}
                    // Already gone (a repeated delete).
                    Err(e)
                        if e.code == ErrorCode::NotFound || e.code == ErrorCode::HandleInvalid => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
        self.run(|m, _| {
            m.unlink_done(u);
            Ok(())
        })
        .await
        .map_err(status_error)
    }

    /// Finishes pending anchors and pending unlinks (at start and every second).
    async fn janitor_pass(&self) {
        let (anchors, unlinks) = {
            let st = self.lock();
            if st.master.map().is_none() {
                return;
            }
            (st.master.pending_anchors(), st.master.pending_unlinks())
        };
        for job in anchors {
            if let Err(e) = self.finish_anchor(&job).await {
                tracing::warn!(path = %job.path, owner = %job.owner, error = %e, "janitor: the child anchor could not be created yet");
            } else {
                tracing::info!(path = %job.path, owner = %job.owner, "janitor: child anchor created");
            }
        }
        for u in unlinks {
            if let Err(e) = self.finish_unlink(&u).await {
                tracing::warn!(path = %u.path, error = %e, "janitor: the entry of a deleted directory could not be unlinked yet");
            } else {
                tracing::info!(path = %u.path, "janitor: entry of a deleted directory unlinked");
            }
        }
    }
}

/// The janitor of one term: finishes pending anchors and unlinks at start and every second.
pub(super) async fn janitor_loop(shared: Weak<Shared>) {
    let mut iv = tokio::time::interval(Duration::from_secs(1));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        iv.tick().await;
        let Some(s) = shared.upgrade() else { return };
        if s.lock().closing {
            return;
        }
        s.janitor_pass().await;
    }
}
