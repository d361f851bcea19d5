//! The one grammar of node paths (docs/design.md §2) and the directory a node is anchored in for
//! routing (docs/design.md §11). Routers (proxies, direct-mode clients) and cells all check paths here,
//! so a path is refused the same way, with the same words, wherever it is refused.
//!
//! A node `D/C` lives in the cell owning `slot(D)`, so all children of a directory live
//! together. The deployment root `/ls/<deployment>` has no parent in the namespace; it is
//! anchored in **its own** slot, i.e. it lives with its children. That keeps `ReadDir` and
//! `GetStat` of the root on one cell, and needs no special cell for it.

use crate::hash::slot_of_dir;

/// Longest path accepted, in bytes (docs/design.md §2: paths at most 4 KiB).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest path component, in bytes (docs/design.md §2).
pub const MAX_COMPONENT_LEN: usize = 255;

/// What every full path starts with: `/ls/<deployment>/…`.
pub const FULL_PREFIX: &str = "/ls/";
/// How much of an offending path an error message repeats.
const SHOWN_PATH_CHARS: usize = 120;

/// Why a path cannot be served or routed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The path is not a syntactically valid full node path.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: PathProblem },
    /// The path is valid but names another deployment than the one served or routed.
    #[error(
        "path {path:?} is not in deployment {deployment:?}; this deployment routes only /ls/{deployment}/…"
    )]
    WrongDeployment { path: String, deployment: String },
}

impl RouteError {
    /// Whether the path was refused for its length alone (the error table's `TOO_LARGE`
    /// rather than `INVALID_ARGUMENT`).
    pub fn is_too_long(&self) -> bool {
        matches!(
            self,
            RouteError::InvalidPath {
                reason: PathProblem::TooLong { .. },
                ..
            }
        )
    }
}

/// What is wrong with a path, as the end of the sentence "invalid path …: ".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("it is {len} bytes long; paths are at most {MAX_PATH_LEN} bytes")]
    TooLong { len: usize },
    #[error("full paths start with /ls/<deployment>/, e.g. /ls/local/dir/name")]
    NotFull,
    #[error("the deployment name {0}")]
    Deployment(ComponentProblem),
    #[error("a path component {0}")]
    Component(ComponentProblem),
}

/// What is wrong with one path component (or deployment name), as the end of a sentence
/// starting with what it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ComponentProblem {
    #[error("is empty (a doubled or trailing '/')")]
    Empty,
    #[error("is {len} bytes long; components are at most {MAX_COMPONENT_LEN} bytes")]
    TooLong { len: usize },
    #[error("{component:?} is relative; Warren paths have no \".\" or \"..\" components")]
    Relative { component: String },
    #[error("{component:?} contains {bad:?}; components use only A-Z a-z 0-9 . _ -")]
    BadCharacter { component: String, bad: char },
}

/// The offending path as repeated in an error: at most [`SHOWN_PATH_CHARS`] characters, so
/// a 4 KiB (or larger, hostile) path does not flood logs.
pub(crate) fn shown(path: &str) -> String {
    match path.char_indices().nth(SHOWN_PATH_CHARS) {
        Some((cut, _)) => format!("{}…", &path[..cut]),
        None => path.to_owned(),
    }
}

fn invalid(path: &str, reason: PathProblem) -> RouteError {
    RouteError::InvalidPath {
        path: shown(path),
        reason,
    }
}

fn is_component_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// What is wrong with one path component (or deployment name), or `None` if it is fine:
/// 1–[`MAX_COMPONENT_LEN`] bytes of `[A-Za-z0-9._-]`, and neither `.` nor `..`.
pub fn component_problem(component: &str) -> Option<ComponentProblem> {
    if component.is_empty() {
        return Some(ComponentProblem::Empty);
    }
    if component.len() > MAX_COMPONENT_LEN {
        return Some(ComponentProblem::TooLong {
            len: component.len(),
        });
    }
    if component == "." || component == ".." {
        return Some(ComponentProblem::Relative {
            component: component.to_owned(),
        });
    }
    if component.bytes().all(is_component_byte) {
        return None;
    }
    let bad = component
        .chars()
        .find(|c| !c.is_ascii() || !is_component_byte(*c as u8))?;
    Some(ComponentProblem::BadCharacter {
        component: component.to_owned(),
        bad,
    })
}

/// Checks `component` as a name below a directory (a node's last component, an ACL file's
/// name); `path` is what the error repeats as the offending path.
pub fn check_component(component: &str, path: &str) -> Result<(), RouteError> {
    match component_problem(component) {
        Some(problem) => Err(invalid(path, PathProblem::Component(problem))),
        None => Ok(()),
    }
}

/// Checks that `path` is a full node path: `/ls/<deployment>[/<component>…]`, at most
/// [`MAX_PATH_LEN`] bytes, each component (the deployment included) 1–[`MAX_COMPONENT_LEN`]
/// bytes of `[A-Za-z0-9._-]` and neither `.` nor `..`. No trailing slash, no empty
/// components. The short form `/dir/name` is expanded by the client library before
/// anything is routed.
pub fn validate_path(path: &str) -> Result<(), RouteError> {
    if path.len() > MAX_PATH_LEN {
        return Err(invalid(path, PathProblem::TooLong { len: path.len() }));
    }
    let Some(rest) = path.strip_prefix(FULL_PREFIX) else {
        return Err(invalid(path, PathProblem::NotFull));
    };
    for (index, component) in rest.split('/').enumerate() {
        if let Some(problem) = component_problem(component) {
            let reason = if index == 0 {
                PathProblem::Deployment(problem)
            } else {
                PathProblem::Component(problem)
            };
            return Err(invalid(path, reason));
        }
    }
    Ok(())
}

/// Checks that `path` is a valid full path (see [`validate_path`]) in `deployment`: what a
/// cell serving `deployment`, and a router with its map, accept.
pub fn check_path(path: &str, deployment: &str) -> Result<(), RouteError> {
    validate_path(path)?;
    if deployment_of_valid(path) != deployment {
        return Err(RouteError::WrongDeployment {
            path: shown(path),
            deployment: deployment.to_owned(),
        });
    }
    Ok(())
}

/// The root directory of `deployment`'s namespace: `/ls/<deployment>`.
pub fn root_of(deployment: &str) -> String {
    format!("{FULL_PREFIX}{deployment}")
}

/// The deployment a valid full path belongs to (`local` for `/ls/local/a`), or `None` if the
/// path is not valid (see [`validate_path`]).
pub fn deployment_of(path: &str) -> Option<&str> {
    validate_path(path).ok()?;
    Some(deployment_of_valid(path))
}

/// [`deployment_of`] for a path already validated.
pub(crate) fn deployment_of_valid(path: &str) -> &str {
    let rest = path.get(FULL_PREFIX.len()..).unwrap_or_default();
    rest.split('/').next().unwrap_or(rest)
}

/// [`parent_dir`] for a path already validated: the directory containing it, `None` for a
/// deployment root. Cells, which keep only valid paths, use it without checking again.
pub fn parent_of_valid(path: &str) -> Option<&str> {
    let (parent, _name) = path.rsplit_once('/')?;
    // `/ls/<deployment>` splits into `/ls` and the deployment: the root has no parent.
    (parent.len() >= FULL_PREFIX.len()).then_some(parent)
}

/// The last component of a path: `b` for `/ls/local/a/b`.
pub fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// [`routing_dir`] for a path already validated.
pub(crate) fn routing_dir_of_valid(path: &str) -> &str {
    parent_of_valid(path).unwrap_or(path)
}

/// The directory containing `path`: `/ls/local/a` for `/ls/local/a/b`.
///
/// `None` for a deployment root (`/ls/local` has no parent in the namespace) and for
/// anything that is not a valid full path (see [`validate_path`]).
pub fn parent_dir(path: &str) -> Option<&str> {
    validate_path(path).ok()?;
    parent_of_valid(path)
}

/// The name of the reserved subtree `/ls/<deployment>/warren/` (docs/design.md §11), which always
/// lives in the meta cell whatever the map says: the map itself is kept there.
pub const RESERVED: &str = "warren";

/// Whether `path` is the reserved directory `/ls/<deployment>/warren` or under it: such
/// paths are served by the meta cell only. `false` for invalid paths.
pub fn is_reserved(path: &str) -> bool {
    if validate_path(path).is_err() {
        return false;
    }
    let rest = &path[FULL_PREFIX.len()..];
    let mut parts = rest.splitn(3, '/');
    parts.next();
    parts.next() == Some(RESERVED)
}

/// The directory whose slot holds `path`: its parent, or for the deployment root the root
/// itself (the root lives with its children). `None` if `path` is not a valid full path.
pub fn routing_dir(path: &str) -> Option<&str> {
    validate_path(path).ok()?;
    Some(routing_dir_of_valid(path))
}

/// The slot that holds `path` in a deployment of `slots` slots: the slot of its
/// [`routing_dir`]. `None` if `path` is not a valid full path.
pub fn slot_of_path(path: &str, slots: u32) -> Option<u32> {
    routing_dir(path).map(|dir| slot_of_dir(dir, slots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_subtree_is_the_warren_directory_and_below() {
        assert!(is_reserved("/ls/local/warren"));
        assert!(is_reserved("/ls/local/warren/map"));
        assert!(is_reserved("/ls/local/warren/reshard/job"));
        assert!(!is_reserved("/ls/local"));
        assert!(!is_reserved("/ls/local/warren2"));
        assert!(!is_reserved("/ls/local/a/warren"));
        assert!(!is_reserved("/ls/warren"));
        assert!(!is_reserved("/ls/local/warren/"));
    }

    #[test]
    fn parent_of_nested_paths() {
        assert_eq!(parent_dir("/ls/local/a"), Some("/ls/local"));
        assert_eq!(parent_dir("/ls/local/a/b"), Some("/ls/local/a"));
        assert_eq!(parent_dir("/ls/local/a/b/c.txt"), Some("/ls/local/a/b"));
    }

    #[test]
    fn root_has_no_parent_and_routes_with_its_children() {
        assert_eq!(parent_dir("/ls/local"), None);
        assert_eq!(routing_dir("/ls/local"), Some("/ls/local"));
        assert_eq!(routing_dir("/ls/local/a"), Some("/ls/local"));
        let root = slot_of_path("/ls/local", 4096);
        assert_eq!(root, Some(slot_of_dir("/ls/local", 4096)));
        assert_eq!(root, slot_of_path("/ls/local/a", 4096));
        assert_eq!(root, slot_of_path("/ls/local/warren", 4096));
    }

    #[test]
    fn node_lives_in_slot_of_parent_not_its_own() {
        let slots = 4096;
        // `/ls/local/a` (slot 299, with its siblings) and its child `/ls/local/a/b`
        // (slot 3191, the slot of `/ls/local/a`).
        assert_eq!(slot_of_path("/ls/local/a", slots), Some(299));
        assert_eq!(slot_of_path("/ls/local/a/b", slots), Some(3191));
        assert_eq!(slot_of_path("/ls/local/a/zzz", slots), Some(3191));
    }

    #[test]
    fn invalid_paths_have_no_parent_or_slot() {
        let bad = [
            "",
            "/",
            "/ls",
            "/ls/",
            "ls/local/a",
            "/dir/name",
            "/ls/local/",
            "/ls/local//a",
            "/ls//a",
            "/ls/local/a b",
            "/ls/local/é",
            "/ls/local/a/",
            "/LS/local/a",
        ];
        for path in bad {
            assert!(validate_path(path).is_err(), "{path:?} accepted");
            assert_eq!(parent_dir(path), None, "{path:?}");
            assert_eq!(routing_dir(path), None, "{path:?}");
            assert_eq!(slot_of_path(path, 4096), None, "{path:?}");
            assert_eq!(deployment_of(path), None, "{path:?}");
        }
    }

    #[test]
    fn length_limits() {
        let max_component = "c".repeat(MAX_COMPONENT_LEN);
        assert!(validate_path(&format!("/ls/local/{max_component}")).is_ok());
        let err = validate_path(&format!("/ls/local/{max_component}c")).unwrap_err();
        assert!(err.to_string().contains("at most 255 bytes"), "{err}");

        let mut long = String::from("/ls/local");
        while long.len() + 11 <= MAX_PATH_LEN {
            long.push_str("/abcdefghij");
        }
        assert!(validate_path(&long).is_ok());
        long.push_str(&"x".repeat(MAX_PATH_LEN + 1 - long.len() - 1));
        long.insert(long.len() - 1, '/');
        assert_eq!(long.len(), MAX_PATH_LEN + 1);
        let err = validate_path(&long).unwrap_err();
        assert!(err.to_string().contains("at most 4096 bytes"), "{err}");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = validate_path("/ls/local/a b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid path \"/ls/local/a b\": a path component \"a b\" contains ' '; \
             components use only A-Z a-z 0-9 . _ -"
        );
        let err = validate_path("/ls//a").unwrap_err();
        assert!(
            err.to_string().contains("the deployment name is empty"),
            "{err}"
        );
        let err = validate_path("/x/a").unwrap_err();
        assert!(
            err.to_string().contains("start with /ls/<deployment>/"),
            "{err}"
        );
    }

    #[test]
    fn relative_components_are_refused_like_any_other_bad_component() {
        for (path, component, what) in [
            ("/ls/local/./a", ".", "a path component"),
            ("/ls/local/../a", "..", "a path component"),
            ("/ls/local/a/..", "..", "a path component"),
            ("/ls/local/.", ".", "a path component"),
            ("/ls/../a", "..", "the deployment name"),
        ] {
            let err = validate_path(path).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid path {path:?}: {what} {component:?} is relative; Warren paths \
                     have no \".\" or \"..\" components"
                )
            );
            assert!(!err.is_too_long());
            assert_eq!(parent_dir(path), None, "{path:?}");
            assert_eq!(slot_of_path(path, 4096), None, "{path:?}");
        }
        // Dots inside a name are fine.
        let dotted = [
            "/ls/local/.a",
            "/ls/local/a..b",
            "/ls/local/...",
            "/ls/local/a.",
        ];
        for path in dotted {
            assert_eq!(validate_path(path), Ok(()), "{path:?}");
        }
        assert_eq!(
            check_component("..", "/ls/local/acl/.."),
            Err(RouteError::InvalidPath {
                path: "/ls/local/acl/..".into(),
                reason: PathProblem::Component(ComponentProblem::Relative {
                    component: "..".into()
                })
            })
        );
    }

    #[test]
    fn a_path_is_checked_against_the_deployment_after_its_syntax() {
        assert_eq!(check_path("/ls/local/a", "local"), Ok(()));
        assert_eq!(check_path("/ls/local", "local"), Ok(()));
        let err = check_path("/ls/other/a", "local").unwrap_err();
        assert_eq!(
            err.to_string(),
            "path \"/ls/other/a\" is not in deployment \"local\"; this deployment routes only \
             /ls/local/…"
        );
        // A bad component is named before the deployment is compared.
        let err = check_path("/ls/other/a b", "local").unwrap_err();
        assert!(matches!(err, RouteError::InvalidPath { .. }), "{err}");
        let long = format!("/ls/local/{}", "a/".repeat(3000));
        assert!(check_path(&long, "local").unwrap_err().is_too_long());
    }

    #[test]
    fn names_parents_and_roots_of_valid_paths() {
        assert_eq!(root_of("local"), "/ls/local");
        assert_eq!(name_of("/ls/local/a/b"), "b");
        assert_eq!(parent_of_valid("/ls/local/a/b"), Some("/ls/local/a"));
        assert_eq!(parent_of_valid("/ls/local"), None);
    }

    #[test]
    fn errors_truncate_huge_paths() {
        let huge = format!("/ls/local/{}", "é".repeat(100_000));
        let RouteError::InvalidPath { path, .. } = validate_path(&huge).unwrap_err() else {
            panic!("expected InvalidPath");
        };
        assert_eq!(path.chars().count(), SHOWN_PATH_CHARS + 1);
        assert!(path.ends_with('…'));
    }

    #[test]
    fn deployment_is_first_component() {
        assert_eq!(deployment_of("/ls/local"), Some("local"));
        assert_eq!(deployment_of("/ls/prod-1.eu/a/b"), Some("prod-1.eu"));
    }
}
