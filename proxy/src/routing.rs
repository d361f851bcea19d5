//! Routing decisions by the partition map (SPEC §7, `docs/partitioning.md`), sans-IO: where
//! a path goes, and what to do when a cell answers `WRONG_CELL`. The async layer
//! (`service/route.rs`) drives [`Attempts`] and does the sending, the waiting for a newer
//! map and the counting.
//!
//! The rules:
//! - `Open` goes to `route(path, anchor = target == ANCHOR)`; clients send `NODE`.
//! - `WRONG_CELL{directory}` (the path is a directory whose child anchor is elsewhere): open
//!   it again with target `ANCHOR` at `route(path, true)`, whose cell should be the error's
//!   `owner` (if it is not, the map in hand is refreshed up to the error's epoch and the
//!   path routed again — it is always the map, never the error, that says where a call
//!   goes). The reply's `created` is the redirect's `created`.
//! - `WRONG_CELL` otherwise (a stale map on one side): wait (≤ 1 s) for a map at least as
//!   new as the error's, route again and retry. If that map has not arrived (the meta cell
//!   is out of reach), the next attempt goes to the owner the cell named instead: safe,
//!   because a cell serves only slots its own map gives it, and the named owner's map is
//!   at least as new as the cell's that named it.
//! - At most [`MAX_ATTEMPTS`] sends in all; then the last error goes to the client.

use std::time::Duration;
use warren_proto::{ErrorCode, WarrenError};
use warren_router::{PartitionMap, Route};

/// Sends of one routed call, in all (the first included).
pub const MAX_ATTEMPTS: u32 = 4;
/// How long to wait for a newer map after a `WRONG_CELL`.
pub const MAP_WAIT: Duration = Duration::from_secs(1);

/// Where a routed call goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// The meta cell (the reserved subtree `/ls/<d>/warren…`).
    Meta,
    /// A data cell, by name.
    Cell(String),
}

impl Dest {
    /// Whether this is the cell called `name` (`meta`: the meta cell's name).
    pub fn is(&self, name: &str, meta: &str) -> bool {
        match self {
            Dest::Meta => name == meta,
            Dest::Cell(c) => c == name,
        }
    }
}

pub use warren_client::route_error;

/// `map.route(path, anchor)` as a [`Dest`], or the error the client gets.
pub fn route(map: &PartitionMap, path: &str, anchor: bool) -> Result<Dest, WarrenError> {
    match map.route(path, anchor) {
        Ok(Route::Meta) => Ok(Dest::Meta),
        Ok(Route::Cell { cell, .. }) => Ok(Dest::Cell(cell.to_string())),
        Err(e) => Err(route_error(path, e)),
    }
}

/// What to do after an attempt answered `WRONG_CELL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send again with target `ANCHOR`, routed by `route(path, true)`; that route should
    /// give the cell `owner` — if not, first wait for a map of epoch `min_epoch` or newer.
    Anchor { owner: String, min_epoch: u64 },
    /// The map in hand (or the cell's) was stale: wait for a map of `min_epoch` or newer
    /// (at most [`MAP_WAIT`]), route again and send again with the same target; if the
    /// map did not arrive, send to `owner` (see [`Attempts::follow_owner`]).
    Stale { min_epoch: u64, owner: String },
    /// No attempts left: the error goes to the client.
    GiveUp,
}

/// The kind of a `WRONG_CELL`, for `warren_proxy_wrong_cell_total{kind}`.
pub fn kind(e: &WarrenError) -> &'static str {
    if e.directory {
        "directory"
    } else {
        "stale"
    }
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
    /// client's behalf: without the client's `create`, which the entry's cell carried out).
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

    /// `created` for the reply to the client: the redirect's flag once one was followed.
    pub fn created(&self, reply_created: bool) -> bool {
        self.redirect.unwrap_or(reply_created)
    }

    /// The attempt just sent answered `e`: what next. Errors other than `WRONG_CELL` are
    /// never retried here ([`Next::GiveUp`]).
    pub fn answered(&mut self, e: &WarrenError) -> Next {
        if e.code != ErrorCode::WrongCell || self.sent >= MAX_ATTEMPTS {
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
        Next::Stale {
            min_epoch: e.map_epoch,
            owner: e.owner.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map3() -> PartitionMap {
        PartitionMap::even(
            "local",
            &[
                ("c1", vec!["127.0.0.1:1"]),
                ("c2", vec!["127.0.0.1:2"]),
                ("c3", vec!["127.0.0.1:3"]),
            ],
            4096,
        )
        .expect("valid map")
    }

    fn redirect(owner: &str, created: bool) -> WarrenError {
        let mut e = WarrenError::directory_elsewhere(1, owner, "/ls/local/d");
        e.created = created;
        e
    }

    #[test]
    fn the_reserved_subtree_goes_to_the_meta_cell_and_the_rest_by_slot() {
        let m = map3();
        assert_eq!(route(&m, "/ls/local/warren/map", false), Ok(Dest::Meta));
        assert_eq!(route(&m, "/ls/local/warren", true), Ok(Dest::Meta));
        let by_parent = m.cell_for_path("/ls/local/a/b").unwrap().to_string();
        assert_eq!(route(&m, "/ls/local/a/b", false), Ok(Dest::Cell(by_parent)));
        let by_self = m.cell_for_path("/ls/local/a/b/x").unwrap().to_string();
        assert_eq!(route(&m, "/ls/local/a/b", true), Ok(Dest::Cell(by_self)));
        assert!(Dest::Meta.is("meta", "meta"));
        assert!(!Dest::Cell("c1".into()).is("meta", "meta"));
    }

    #[test]
    fn unroutable_paths_get_the_error_a_cell_would_give() {
        let m = map3();
        let e = route(&m, "/ls/other/a", false).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("other"), "{}", e.message);
        let e = route(&m, "no-slash", false).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        let e = route(&m, "/ls/local/a//b", true).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        let long = format!("/ls/local/{}", "a/".repeat(3000));
        assert_eq!(
            route(&m, &long, false).unwrap_err().code,
            ErrorCode::TooLarge
        );
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
        let e = WarrenError::wrong_cell(7, "c3");
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
        assert_eq!(kind(&e), "stale");
        assert_eq!(kind(&redirect("c1", false)), "directory");
    }

    #[test]
    fn at_most_four_attempts_in_all() {
        let mut a = Attempts::new(false);
        let e = WarrenError::wrong_cell(2, "c1");
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

    #[test]
    fn other_errors_are_not_retried() {
        let mut a = Attempts::new(false);
        a.sending();
        assert_eq!(
            a.answered(&WarrenError::not_found("no such node")),
            Next::GiveUp
        );
    }
}
