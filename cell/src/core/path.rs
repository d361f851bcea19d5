//! Path syntax at a cell (docs/design.md §2): the router's one path grammar
//! ([`warren_router::path`]: `/ls/<deployment>/a/b`, components of 1–255 bytes of
//! `[A-Za-z0-9._-]` but never `.` or `..`, at most 4 KiB in all), under the names the cell
//! core uses, with rejections as the error table's `WarrenError`s — the same code and words
//! a proxy or a direct-mode client gives for the same path. Validation happens once, at
//! `Open`, before anything is looked up.

use warren_client::route_error;
use warren_proto::WarrenError;

/// The root of a deployment's namespace: `/ls/<deployment>`.
pub use warren_router::root_of;

/// Checks one name component (a node's name, an ACL file's name); `path` is what the error
/// repeats as the offending path.
pub fn check_component(c: &str, path: &str) -> Result<(), WarrenError> {
    warren_router::check_component(c, path).map_err(route_error)
}

/// Validates a full path for `deployment`. The deployment root itself is a valid path.
pub fn validate(path: &str, deployment: &str) -> Result<(), WarrenError> {
    warren_router::check_path(path, deployment).map_err(route_error)
}

/// Parent of a valid path (`None` for the deployment root).
pub fn parent(path: &str) -> Option<&str> {
    warren_router::parent_of_valid(path)
}

/// Last component of a path.
pub fn name(path: &str) -> &str {
    warren_router::name_of(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::ErrorCode;

    fn code(p: &str) -> Option<ErrorCode> {
        validate(p, "local").err().map(|e| e.code)
    }

    #[test]
    fn accepts_good_paths() {
        assert_eq!(code("/ls/local"), None);
        assert_eq!(code("/ls/local/a"), None);
        assert_eq!(code("/ls/local/a.b_c-9/Z"), None);
        assert_eq!(code(&format!("/ls/local/{}", "x".repeat(255))), None);
    }

    #[test]
    fn rejects_bad_paths_with_the_right_code() {
        for p in [
            "",
            "/",
            "ls/local/a",
            "/ls//a",
            "/ls/local/",
            "/ls/local//a",
            "/ls/local/../a",
            "/ls/local/./a",
            "/ls/local/a b",
            "/ls/local/a:b",
            "/ls/local/é",
            "/ls/other/a",
        ] {
            assert_eq!(code(p), Some(ErrorCode::InvalidArgument), "{p:?}");
        }
        assert_eq!(
            code(&format!("/ls/local/{}", "x".repeat(256))),
            Some(ErrorCode::InvalidArgument)
        );
        let long = format!("/ls/local/{}", vec!["abcdefgh"; 600].join("/"));
        assert_eq!(code(&long), Some(ErrorCode::TooLarge));
    }

    /// The cell refuses exactly what the router refuses, in the router's words: `.` and
    /// `..` included, which the router once let through.
    #[test]
    fn rejections_are_the_routers_word_for_word() {
        let long = format!("/ls/local/{}", vec!["abcdefgh"; 600].join("/"));
        let component = format!("/ls/local/{}", "x".repeat(256));
        for p in [
            "/ls/local/../a",
            "/ls/local/./a",
            "/ls/local/a/..",
            "/ls/../a",
            "/ls/local//a",
            "/ls/local/a b",
            "/ls/other/a",
            "ls/local/a",
            component.as_str(),
            long.as_str(),
        ] {
            let at_cell = validate(p, "local").expect_err(p);
            let by_router = warren_router::check_path(p, "local").expect_err(p);
            assert_eq!(at_cell.message, by_router.to_string(), "{p:?}");
            assert_eq!(at_cell, route_error(by_router), "{p:?}");
        }
        let e = validate("/ls/local/..", "local").unwrap_err();
        assert_eq!(
            e.message,
            "invalid path \"/ls/local/..\": a path component \"..\" is relative; Warren paths \
             have no \".\" or \"..\" components"
        );
        let e = check_component("..", "..").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
    }

    #[test]
    fn parents_and_names() {
        assert_eq!(parent("/ls/local"), None);
        assert_eq!(parent("/ls/local/a"), Some("/ls/local"));
        assert_eq!(parent("/ls/local/a/b"), Some("/ls/local/a"));
        assert_eq!(name("/ls/local/a/b"), "b");
    }
}
