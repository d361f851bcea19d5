//! The attempts of one routed call (docs/design.md §11, `docs/partitioning.md`), sans-IO: where each
//! attempt goes and what to do when a cell answers `WRONG_CELL`. Proxies and direct-mode
//! clients both drive an [`Attempts`]; their async layers only send, wait for a newer map
//! and count.
//!
//! The rules:
//! - `Open` goes to `route(path, anchor = target == ANCHOR)`; clients send `NODE`.
//! - `WRONG_CELL{directory}` (the path is a directory whose child anchor is elsewhere): open
//!   it again with target `ANCHOR` at `route(path, true)`, whose cell should be the error's
//!   `owner` (if it is not, the map in hand is refreshed up to the error's epoch and the
//!   path routed again — it is always the map, never the error, that says where a call
//!   goes). The reply's `created` is the redirect's `created`.
//! - `WRONG_CELL` otherwise (a stale map on one side): wait (≤ [`MAP_WAIT`]) for a map at
//!   least as new as the error's, route again and retry. If that map has not arrived (the
//!   meta cell is out of reach), the next attempt goes to the owner the cell named instead:
//!   safe, because a cell serves only slots its own map gives it, and the named owner's map
//!   is at least as new as the cell's that named it.
//! - At most [`MAX_ATTEMPTS`] sends in all; then the last error goes to the caller.
//!
//! A driver loops: [`Attempts::target`] (refreshing the map while it answers
//! [`Target::RefreshMap`]), [`Attempts::sending`], send; on `WRONG_CELL`,
//! [`Attempts::answered`], and after [`Next::Stale`] waits for the map and reports the
//! epoch it got with [`Attempts::waited`].

use std::time::Duration;

use crate::map::{CellName, PartitionMap, Route};
use crate::path::RouteError;

/// Sends of one routed call, in all (the first included).
pub const MAX_ATTEMPTS: u32 = 4;
/// How long to wait for a newer map after a `WRONG_CELL`.
pub const MAP_WAIT: Duration = Duration::from_secs(1);

/// A cell's `WRONG_CELL` answer, as much of it as routing needs (the wire error is
/// converted at the edge, e.g. by `warren_client::wrong_cell`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrongCell {
    /// The epoch of the answering cell's map.
    pub map_epoch: u64,
    /// The cell that owns the call's slot by that map (empty if it named none).
    pub owner: CellName,
    /// The path is a directory whose child anchor lives at `owner`: not a stale map.
    pub directory: bool,
    /// With `directory`: the answering cell created the directory (entry and anchor).
    pub created: bool,
}

impl WrongCell {
    /// The kind of this `WRONG_CELL`, for metrics: `directory` or `stale`.
    pub fn kind(&self) -> &'static str {
        if self.directory {
            "directory"
        } else {
            "stale"
        }
    }
}

/// Where a routed call goes: a [`Route`] without the slot, owned, so that it outlives the
/// map that gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// The meta cell (the reserved subtree `/ls/<d>/warren…`).
    Meta,
    /// A data cell, by name.
    Cell(CellName),
}

impl Dest {
    /// Whether this is the cell called `name` (`meta`: the meta cell's name, if known).
    pub fn is(&self, name: &str, meta: Option<&str>) -> bool {
        match self {
            Dest::Meta => meta == Some(name),
            Dest::Cell(c) => c == name,
        }
    }
}

impl From<Route<'_>> for Dest {
    fn from(route: Route<'_>) -> Self {
        match route {
            Route::Meta => Dest::Meta,
            Route::Cell { cell, .. } => Dest::Cell(cell.to_owned()),
        }
    }
}

/// Where the next attempt goes, by the map in hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Send it there.
    Send(Dest),
    /// The map in hand disagrees with the owner a redirect named: get a map of epoch
    /// `min_epoch` or newer (waiting at most [`MAP_WAIT`]; the newest in hand if none
    /// comes) and ask again.
    RefreshMap { min_epoch: u64 },
}

/// What to do after an attempt answered `WRONG_CELL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send again with target `ANCHOR`, routed by `route(path, true)`; that route should
    /// give the cell `owner` — if not, first wait for a map of epoch `min_epoch` or newer
    /// ([`Attempts::target`] says so).
    Anchor { owner: String, min_epoch: u64 },
    /// The map in hand (or the cell's) was stale: wait for a map of `min_epoch` or newer
    /// (at most [`MAP_WAIT`]), report its epoch ([`Attempts::waited`]), route again and
    /// send again with the same target; if the map did not arrive, the next attempt goes
    /// to `owner`.
    Stale { min_epoch: u64, owner: String },
    /// No attempts left: the error goes to the caller.
    GiveUp,
}

/// The state of one routed call across its attempts.
#[derive(Clone, Debug)]
pub struct Attempts {
    anchor: bool,
    sent: u32,
    /// `Some(created)` once a directory redirect was followed.
    redirect: Option<bool>,
    /// The owner the last redirect named, until the route is checked against it.
    expect: Option<(String, u64)>,
    /// The epoch and owner of the last stale `WRONG_CELL`, until the driver has waited for
    /// that map ([`Attempts::waited`]).
    stale: Option<(u64, String)>,
    /// The owner a stale `WRONG_CELL` named, for the next attempt, when the newer map
    /// could not be had.
    follow: Option<String>,
}

impl Attempts {
    /// A call whose first attempt targets the child anchor (`anchor`) or the node.
    pub fn new(anchor: bool) -> Self {
        Attempts {
            anchor,
            sent: 0,
            redirect: None,
            expect: None,
            stale: None,
            follow: None,
        }
    }

    /// Whether the next attempt targets the child anchor (`route(path, true)`, and for
    /// `Open` `target = ANCHOR`).
    pub fn anchor(&self) -> bool {
        self.anchor
    }

    /// Attempts sent so far.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// Whether a directory redirect was followed (the next attempt reopens the anchor on the
    /// caller's behalf: without its `create`, which the entry's cell carried out).
    pub fn redirected(&self) -> bool {
        self.redirect.is_some()
    }

    /// Records that an attempt is being sent.
    pub fn sending(&mut self) {
        self.sent += 1;
    }

    /// The owner a redirect named, with the redirect's map epoch, if the route for the
    /// next attempt has not been checked against it yet. Taking it clears it.
    pub fn take_expected_owner(&mut self) -> Option<(String, u64)> {
        self.expect.take()
    }

    /// The next attempt goes to `owner` (a stale `WRONG_CELL` named it and the newer map
    /// did not arrive in time), if the map in hand knows its replicas.
    pub fn follow_owner(&mut self, owner: String) {
        self.follow = (!owner.is_empty()).then_some(owner);
    }

    /// The owner to send the next attempt to instead of the map's route, if any. Taking it
    /// clears it.
    pub fn take_follow(&mut self) -> Option<String> {
        self.follow.take()
    }

    /// `created` for the reply to the caller: the redirect's flag once one was followed.
    pub fn created(&self, reply_created: bool) -> bool {
        self.redirect.unwrap_or(reply_created)
    }

    /// Where the next attempt on `path` goes by `map` (`meta`: the meta cell's name, if
    /// known), or that a newer map is needed first. `Err` if the map cannot route `path`.
    pub fn target(
        &mut self,
        map: &PartitionMap,
        path: &str,
        meta: Option<&str>,
    ) -> Result<Target, RouteError> {
        let dest = Dest::from(map.route(path, self.anchor)?);
        if let Some((owner, min_epoch)) = self.take_expected_owner() {
            if !dest.is(&owner, meta) {
                // The map in hand disagrees with the redirect: read it again (up to the
                // redirect's epoch) and route again — the map, never the error, says where
                // a call goes.
                return Ok(Target::RefreshMap { min_epoch });
            }
        }
        if let Some(owner) = self.take_follow() {
            // The map in hand is older than the cell's that named `owner`.
            if matches!(dest, Dest::Cell(_)) && map.replicas(&owner).is_some() {
                return Ok(Target::Send(Dest::Cell(owner)));
            }
        }
        Ok(Target::Send(dest))
    }

    /// The attempt just sent answered `e`: what next.
    pub fn answered(&mut self, e: &WrongCell) -> Next {
        if self.sent >= MAX_ATTEMPTS {
            return Next::GiveUp;
        }
        if e.directory {
            self.anchor = true;
            // A redirect that created the directory says so, even if a later redirect
            // (after a stale map at the anchor's cell) does not.
            self.redirect = Some(self.redirect.unwrap_or(false) || e.created);
            self.expect = Some((e.owner.clone(), e.map_epoch));
            return Next::Anchor {
                owner: e.owner.clone(),
                min_epoch: e.map_epoch,
            };
        }
        self.stale = Some((e.map_epoch, e.owner.clone()));
        Next::Stale {
            min_epoch: e.map_epoch,
            owner: e.owner.clone(),
        }
    }

    /// After [`Next::Stale`]: the driver waited for the newer map and now holds one of
    /// epoch `map_epoch`. If that is still older than the cell's, the next attempt follows
    /// the owner the cell named.
    pub fn waited(&mut self, map_epoch: u64) {
        if let Some((min_epoch, owner)) = self.stale.take() {
            if map_epoch < min_epoch {
                self.follow_owner(owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cells `c1`, `c2`, `c3` splitting 4096 slots evenly.
    fn map3() -> PartitionMap {
        let cells: Vec<(String, Vec<String>)> = (1..=3)
            .map(|i| (format!("c{i}"), vec![format!("127.0.0.1:{i}")]))
            .collect();
        PartitionMap::even("local", &cells, 4096).expect("valid map")
    }

    fn redirect(owner: &str, created: bool) -> WrongCell {
        WrongCell {
            map_epoch: 1,
            owner: owner.into(),
            directory: true,
            created,
        }
    }

    fn wrong_cell(map_epoch: u64, owner: &str) -> WrongCell {
        WrongCell {
            map_epoch,
            owner: owner.into(),
            directory: false,
            created: false,
        }
    }

    #[test]
    fn a_directory_redirect_reopens_at_the_anchor_and_keeps_created() {
        let mut a = Attempts::new(false);
        assert!(!a.anchor());
        assert!(!a.redirected());
        a.sending();
        assert_eq!(
            a.answered(&redirect("c2", true)),
            Next::Anchor {
                owner: "c2".into(),
                min_epoch: 1
            }
        );
        assert!(a.anchor(), "the next attempt targets the anchor");
        assert!(a.redirected());
        assert_eq!(a.take_expected_owner(), Some(("c2".into(), 1)));
        assert_eq!(a.take_expected_owner(), None, "checked once");
        a.sending();
        // The reply from the anchor says created: false; the redirect said true.
        assert!(a.created(false));
        // Without a redirect the reply's own flag stands.
        let b = Attempts::new(false);
        assert!(b.created(true));
        assert!(!b.created(false));
        // A redirect of an existing directory: not created, whatever the reply says.
        let mut c = Attempts::new(false);
        c.sending();
        c.answered(&redirect("c3", false));
        assert!(!c.created(true));
    }

    #[test]
    fn a_stale_map_waits_for_the_errors_epoch_and_keeps_the_target() {
        let mut a = Attempts::new(true);
        a.sending();
        let e = wrong_cell(7, "c3");
        assert_eq!(
            a.answered(&e),
            Next::Stale {
                min_epoch: 7,
                owner: "c3".into()
            }
        );
        assert!(a.anchor());
        assert_eq!(a.take_follow(), None, "only once the map failed to arrive");
        a.follow_owner("c3".into());
        assert_eq!(a.take_follow().as_deref(), Some("c3"));
        assert_eq!(a.take_follow(), None, "for one attempt");
        a.follow_owner(String::new());
        assert_eq!(a.take_follow(), None, "no owner named, nothing to follow");
        assert_eq!(a.take_expected_owner(), None);
        assert_eq!(e.kind(), "stale");
        assert_eq!(redirect("c1", false).kind(), "directory");
    }

    #[test]
    fn at_most_four_attempts_in_all() {
        let mut a = Attempts::new(false);
        let e = wrong_cell(2, "c1");
        for i in 1..MAX_ATTEMPTS {
            a.sending();
            assert_eq!(
                a.answered(&e),
                Next::Stale {
                    min_epoch: 2,
                    owner: "c1".into()
                },
                "attempt {i}"
            );
        }
        a.sending();
        assert_eq!(a.sent(), MAX_ATTEMPTS);
        assert_eq!(a.answered(&e), Next::GiveUp);
        // Redirects count too.
        let mut b = Attempts::new(false);
        for _ in 0..MAX_ATTEMPTS {
            b.sending();
            if b.answered(&redirect("c2", false)) == Next::GiveUp {
                break;
            }
        }
        assert_eq!(b.sent(), MAX_ATTEMPTS);
    }

    /// The first directory `/ls/local/dN` whose child anchor (its own slot) is in `cell`.
    fn dir_anchored_in(map: &PartitionMap, cell: &str) -> String {
        (0..10_000)
            .map(|n| format!("/ls/local/d{n}"))
            .find(|p| matches!(map.route(p, true), Ok(Route::Cell { cell: c, .. }) if c == cell))
            .expect("a directory anchored in the cell")
    }

    #[test]
    fn a_redirect_is_followed_where_the_map_agrees_with_its_owner() {
        let m = map3();
        let d = dir_anchored_in(&m, "c2");
        let mut a = Attempts::new(false);
        let first = Dest::from(m.route(&d, false).unwrap());
        assert_eq!(a.target(&m, &d, Some("meta")), Ok(Target::Send(first)));
        a.sending();
        a.answered(&WrongCell {
            map_epoch: 1,
            owner: "c2".into(),
            directory: true,
            created: true,
        });
        assert_eq!(
            a.target(&m, &d, Some("meta")),
            Ok(Target::Send(Dest::Cell("c2".into())))
        );
    }

    #[test]
    fn a_redirect_naming_another_owner_than_the_map_refreshes_the_map_once() {
        let m = map3();
        let d = dir_anchored_in(&m, "c2");
        let mut a = Attempts::new(false);
        a.sending();
        // A cell with a newer map (epoch 5) says the anchor is at c3; ours says c2.
        a.answered(&WrongCell {
            map_epoch: 5,
            owner: "c3".into(),
            directory: true,
            created: false,
        });
        assert_eq!(
            a.target(&m, &d, None),
            Ok(Target::RefreshMap { min_epoch: 5 })
        );
        // The newer map did not come: the map in hand still decides, not the error.
        assert_eq!(
            a.target(&m, &d, None),
            Ok(Target::Send(Dest::Cell("c2".into())))
        );
    }

    #[test]
    fn a_stale_answer_follows_the_named_owner_only_if_the_newer_map_did_not_arrive() {
        let m = map3();
        let path = "/ls/local/a/b";
        let by_map = Dest::from(m.route(path, false).unwrap());
        let other = ["c1", "c2", "c3"]
            .into_iter()
            .find(|c| !by_map.is(c, None))
            .unwrap();
        // The map arrived: route by it again.
        let mut a = Attempts::new(false);
        a.sending();
        a.answered(&wrong_cell(3, other));
        a.waited(3);
        assert_eq!(a.target(&m, path, None), Ok(Target::Send(by_map.clone())));
        // It did not: the owner the cell named, once.
        let mut b = Attempts::new(false);
        b.sending();
        b.answered(&wrong_cell(3, other));
        b.waited(2);
        assert_eq!(
            b.target(&m, path, None),
            Ok(Target::Send(Dest::Cell(other.into())))
        );
        assert_eq!(b.target(&m, path, None), Ok(Target::Send(by_map)));
        // An owner the map does not know, or the reserved subtree: the map's route.
        let mut c = Attempts::new(false);
        c.sending();
        c.answered(&wrong_cell(3, "c9"));
        c.waited(1);
        assert!(matches!(
            c.target(&m, path, None),
            Ok(Target::Send(Dest::Cell(cell))) if cell != "c9"
        ));
        let mut r = Attempts::new(false);
        r.sending();
        r.answered(&wrong_cell(3, other));
        r.waited(1);
        assert_eq!(
            r.target(&m, "/ls/local/warren/map", None),
            Ok(Target::Send(Dest::Meta))
        );
    }

    #[test]
    fn unroutable_paths_are_route_errors() {
        let m = map3();
        let mut a = Attempts::new(false);
        assert!(matches!(
            a.target(&m, "/ls/local/../a", None),
            Err(RouteError::InvalidPath { .. })
        ));
        assert!(matches!(
            a.target(&m, "/ls/other/a", None),
            Err(RouteError::WrongDeployment { .. })
        ));
    }

    #[test]
    fn dests_name_cells_and_the_meta_cell() {
        assert!(Dest::Meta.is("meta", Some("meta")));
        assert!(!Dest::Meta.is("meta", None));
        assert!(!Dest::Cell("c1".into()).is("meta", Some("meta")));
        assert!(Dest::Cell("c1".into()).is("c1", Some("meta")));
    }
}
