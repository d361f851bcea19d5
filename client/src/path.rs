//! Paths and routing at the client's edge: the short form `/a/b` names
//! `/ls/<deployment>/a/b` in the deployment the session is connected to (docs/design.md §2), and the
//! wire errors a router gives or acts on. Which paths are valid is decided once, by
//! `warren_router`'s path grammar, wherever a path is checked (here in direct mode, in a
//! proxy, at a cell).

use crate::error::Error;
use warren_proto::{ErrorCode, WarrenError};
use warren_router::{RouteError, WrongCell};

/// The prefix of every full path.
pub use warren_router::FULL_PREFIX;

/// Expands a short path (`/a/b`) to the full form (`/ls/<deployment>/a/b`); `/` alone names
/// the deployment's root directory `/ls/<deployment>`. A path that already starts with
/// `/ls/` is returned unchanged. A path that does not start with `/` is rejected.
pub fn expand_path(deployment: &str, path: &str) -> Result<String, Error> {
    if path.starts_with(FULL_PREFIX) {
        return Ok(path.to_string());
    }
    if !path.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "path {path:?} must start with '/' (either /ls/<deployment>/… or /… for this deployment)"
        )));
    }
    if path == "/" {
        return Ok(format!("/ls/{deployment}"));
    }
    Ok(format!("/ls/{deployment}{path}"))
}

/// The error a caller gets for a path that cannot be served or routed: `TOO_LARGE` for an
/// over-long path, otherwise `INVALID_ARGUMENT`, with the router's words. Cells, proxies
/// and this library in direct mode all answer with it, so a bad path reads the same
/// wherever it is refused.
pub fn route_error(e: RouteError) -> WarrenError {
    if e.is_too_long() {
        WarrenError::too_large(e.to_string())
    } else {
        WarrenError::invalid_argument(e.to_string())
    }
}

/// A `WRONG_CELL` answer as the router's retry rules ([`warren_router::Attempts`]) take
/// it; `None` for any other error (those are never retried by routing).
pub fn wrong_cell(e: &WarrenError) -> Option<WrongCell> {
    (e.code == ErrorCode::WrongCell).then(|| WrongCell {
        map_epoch: e.map_epoch,
        owner: e.owner.clone(),
        directory: e.directory,
        created: e.created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paths_get_the_deployment() {
        assert_eq!(expand_path("local", "/a/b").as_deref(), Ok("/ls/local/a/b"));
        assert_eq!(expand_path("local", "/a").as_deref(), Ok("/ls/local/a"));
        assert_eq!(expand_path("local", "/").as_deref(), Ok("/ls/local"));
        // "/ls" alone is a short path for a node named "ls".
        assert_eq!(expand_path("local", "/ls").as_deref(), Ok("/ls/local/ls"));
    }

    #[test]
    fn full_paths_are_left_alone() {
        assert_eq!(
            expand_path("local", "/ls/other/a").as_deref(),
            Ok("/ls/other/a")
        );
    }

    #[test]
    fn other_errors_are_not_retried() {
        assert_eq!(wrong_cell(&WarrenError::not_found("no such node")), None);
        let mut e = WarrenError::directory_elsewhere(3, "c2", "/ls/local/d");
        e.created = true;
        assert_eq!(
            wrong_cell(&e),
            Some(WrongCell {
                map_epoch: 3,
                owner: "c2".into(),
                directory: true,
                created: true
            })
        );
        let stale = wrong_cell(&WarrenError::wrong_cell(7, "c3")).expect("a WRONG_CELL");
        assert_eq!((stale.map_epoch, stale.owner.as_str()), (7, "c3"));
        assert!(!stale.directory);
    }

    #[test]
    fn route_errors_have_the_codes_a_cell_gives() {
        let bad = warren_router::validate_path("/ls/local/../a").unwrap_err();
        let e = route_error(bad.clone());
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(e.message, bad.to_string());
        let long = format!("/ls/local/{}", "a/".repeat(3000));
        let e = route_error(warren_router::validate_path(&long).unwrap_err());
        assert_eq!(e.code, ErrorCode::TooLarge);
    }

    #[test]
    fn relative_paths_are_rejected() {
        for bad in ["", "a/b", "ls/local/a"] {
            let e = expand_path("local", bad).expect_err(bad);
            assert_eq!(e.code_name(), "INVALID_ARGUMENT");
        }
    }
}
