//! Calls routed by path (`Open`, `CheckSequencer`): to the cell the partition map gives the
//! path (docs/design.md §11), following a split directory's redirect to its child anchor and retrying
//! after a stale map, by the router's rules ([`Attempts`], see [`crate::routing`]). Without
//! a map of its own (`--cell` only) the proxy routes by [`routing::static_map`] and a call
//! is sent once, carrying no map epoch.

use super::*;
use crate::core::CellIx;
use crate::routing;
use warren_router::{Attempts, Next, Target, MAP_WAIT};

/// One attempt of a routed call.
#[derive(Clone, Copy, Debug)]
pub(super) struct Attempt {
    /// The cell it goes to.
    pub cell: CellIx,
    /// The epoch of the map that routed it (0: not routed).
    pub map_epoch: u64,
    /// It targets the child anchor of the directory `path` (`OpenTarget::Anchor`).
    pub anchor: bool,
    /// It follows a directory redirect (see [`Attempts::redirected`]).
    pub redirected: bool,
}

/// The outcome of a routed call: the last attempt's answer, the cell that gave it, and the
/// attempts' state (for `created`).
pub(super) struct Routed<R> {
    pub answer: Result<R, Status>,
    pub cell: CellIx,
    pub attempts: Attempts,
}

impl Service {
    /// The cell and map epoch for the next attempt on `path`.
    async fn target(&self, path: &str, plan: &mut Attempts) -> Result<(CellIx, u64), WarrenError> {
        let mut map = self.shared.current_map().await?;
        if !self.shared.routed() {
            let dest = routing::route_static(&map, path)?;
            return Ok((self.shared.static_cell(&dest)?, 0));
        }
        loop {
            let meta = self.shared.meta_name();
            match plan
                .target(&map, path, meta)
                .map_err(routing::route_error)?
            {
                Target::Send(dest) => {
                    let cell = self.shared.dest_cell(&map, &dest).await?;
                    return Ok((cell, map.map_epoch()));
                }
                Target::RefreshMap { min_epoch } => {
                    tracing::debug!(
                        path,
                        min_epoch,
                        "a redirect names another cell than the map; refreshing the map"
                    );
                    map = self.shared.newer_map(min_epoch, MAP_WAIT).await?;
                }
            }
        }
    }

    /// Sends a call routed by `path` (`anchor`: by `route(path, true)`), one `send` per
    /// attempt, until a cell answers other than `WRONG_CELL` or the attempts run out.
    /// `Err` only when no attempt could be sent (an unroutable path, no map).
    pub(super) async fn routed<R, F, Fut>(
        &self,
        path: &str,
        anchor: bool,
        send: F,
    ) -> Result<Routed<R>, Status>
    where
        F: Fn(Attempt) -> Fut,
        Fut: Future<Output = Result<R, Status>>,
    {
        let mut plan = Attempts::new(anchor);
        loop {
            let (cell, map_epoch) = self.target(path, &mut plan).await?;
            plan.sending();
            let answer = send(Attempt {
                cell,
                map_epoch,
                anchor: plan.anchor(),
                redirected: plan.redirected(),
            })
            .await;
            let wrong_cell = match &answer {
                Err(s) if self.shared.routed() => {
                    WarrenError::from_status(s).and_then(|e| warren_client::wrong_cell(&e))
                }
                _ => None,
            };
            let Some(e) = wrong_cell else {
                return Ok(Routed {
                    answer,
                    cell,
                    attempts: plan,
                });
            };
            metrics::counter!("warren_proxy_wrong_cell_total", "kind" => e.kind()).increment(1);
            match plan.answered(&e) {
                Next::GiveUp => {
                    tracing::debug!(
                        path,
                        attempts = plan.sent(),
                        ?e,
                        "WRONG_CELL after every attempt; giving up"
                    );
                    return Ok(Routed {
                        answer,
                        cell,
                        attempts: plan,
                    });
                }
                // The next target() routes by route(path, true) and checks the owner.
                Next::Anchor { .. } => {}
                Next::Stale { min_epoch, .. } => {
                    let map = self.shared.newer_map(min_epoch, MAP_WAIT).await?;
                    plan.waited(map.map_epoch());
                }
            }
        }
    }
}
