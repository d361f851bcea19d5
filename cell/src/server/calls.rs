//! How a call runs on the master of a term: under the master's lock, its output handed on
//! (mutations to the writer, wakes to parked calls), and the reply released only once
//! what the master had applied by then is durable. Calls that wait (a KeepAlive held as a
//! long-poll, an Acquire waiting for its lock, a write waiting for cache invalidations)
//! park until the master wakes them, and are cancelled if their caller goes away.

use super::term::Shared;
use crate::core::HashMap;
use crate::core::{CallNotes, Master, Reply, WaiterId, Wake};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::Status;
use warren_proto::WarrenError;

/// How a parked call is woken: with the master's wake and the sequence number the reply
/// must wait for, or failed (the term closed).
pub(super) type WakeTx = oneshot::Sender<Result<(Wake, u64), Status>>;

/// What became of a call that may park.
pub(super) enum Outcome<T> {
    Done(T),
    Woken(Wake),
}

impl<T> Outcome<T> {
    /// The reply of a call that may have parked: its own if it did not, else what `woken`
    /// takes out of the wake (given back, `Err`, if it is not the kind the call parked for:
    /// an internal error).
    pub(super) fn reply(
        self,
        woken: impl FnOnce(Wake) -> Result<Result<T, WarrenError>, Wake>,
    ) -> Result<T, Status> {
        match self {
            Outcome::Done(t) => Ok(t),
            Outcome::Woken(wake) => match woken(wake) {
                Ok(res) => res.map_err(Status::from),
                Err(other) => {
                    Err(WarrenError::internal(format!("unexpected wake {other:?}")).into())
                }
            },
        }
    }
}

/// Cancels a parked operation whose caller went away.
struct CancelGuard<'a> {
    shared: &'a Shared,
    waiter: Option<WaiterId>,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.waiter.take() {
            let mut st = self.shared.lock();
            st.waiters.remove(&w);
            st.master.cancel(w);
            st.flush();
        }
    }
}

impl Shared {
    /// Runs `f` on the master; replies only once its effects are durable.
    pub(super) async fn run<T>(
        &self,
        f: impl FnOnce(&mut Master, Instant) -> Result<T, WarrenError>,
    ) -> Result<T, Status> {
        let (r, seq) = {
            let mut st = self.lock();
            if st.closing {
                return Err(WarrenError::not_master("").into());
            }
            let r = f(&mut st.master, Instant::now());
            (r, st.flush())
        };
        self.durable.wait_for(seq).await?;
        r.map_err(Status::from)
    }

    /// Like [`Shared::run`], for operations that may park.
    pub(super) async fn run_parked<T>(
        &self,
        f: impl FnOnce(&mut Master, Instant) -> Result<Reply<T>, WarrenError>,
    ) -> Result<Outcome<T>, Status> {
        let (r, seq, rx) = {
            let mut st = self.lock();
            if st.closing {
                return Err(WarrenError::not_master("").into());
            }
            let r = f(&mut st.master, Instant::now());
            let mut rx = None;
            if let Ok(Reply::Wait(w)) = &r {
                let (tx, r) = oneshot::channel();
                st.waiters.insert(*w, tx);
                rx = Some((*w, r));
            }
            (r, st.flush(), rx)
        };
        match r {
            Err(e) => {
                self.durable.wait_for(seq).await?;
                Err(e.into())
            }
            Ok(Reply::Done(t)) => {
                self.durable.wait_for(seq).await?;
                Ok(Outcome::Done(t))
            }
            Ok(Reply::Wait(_)) => {
                let (w, rx) = rx.expect("registered above");
                let mut guard = CancelGuard {
                    shared: self,
                    waiter: Some(w),
                };
                let woken = rx.await;
                guard.waiter = None;
                let (wake, seq) =
                    woken.map_err(|_| Status::from(WarrenError::internal("waiter dropped")))??;
                self.durable.wait_for(seq).await?;
                Ok(Outcome::Woken(wake))
            }
        }
    }

    /// A write that may wait for cache invalidations: retried each time they drain.
    pub(super) async fn write<T>(
        &self,
        mut f: impl FnMut(&mut Master, Instant) -> Result<Reply<T>, WarrenError>,
    ) -> Result<T, Status> {
        loop {
            match self.run_parked(&mut f).await? {
                Outcome::Done(t) => return Ok(t),
                Outcome::Woken(Wake::Retry) => continue,
                Outcome::Woken(other) => {
                    return Err(WarrenError::internal(format!(
                        "unexpected wake for a write: {other:?}"
                    ))
                    .into())
                }
            }
        }
    }

    /// [`Shared::write`] with the ACL files read so far supplied to the master; also
    /// returns what the master noted for the server.
    pub(super) async fn write_noted<T>(
        &self,
        acls: &HashMap<String, Option<Vec<u8>>>,
        mut f: impl FnMut(&mut Master, Instant) -> Result<Reply<T>, WarrenError>,
    ) -> (Result<T, Status>, CallNotes) {
        let notes = Mutex::new(CallNotes::default());
        let r = self
            .write(|m, now| {
                m.supply_acls(acls.clone());
                let r = f(m, now);
                *notes.lock().unwrap_or_else(|p| p.into_inner()) = m.take_notes();
                m.supply_acls([]);
                r
            })
            .await;
        (r, notes.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    /// A call routed with a newer map than this cell's: re-read the map first (≤ 1 s).
    pub(super) async fn catch_up(&self, map_epoch: u64) {
        let Some(w) = &self.watcher else { return };
        if map_epoch <= self.lock().master.map_epoch() {
            return;
        }
        if let Some(map) = w.wait_for(map_epoch, Duration::from_secs(1)).await {
            // What a new map installs is durable before the call that needed it replies
            // (the reply waits for everything applied before it).
            let mut st = self.lock();
            st.master.set_map(map);
            st.flush();
        }
    }
}
