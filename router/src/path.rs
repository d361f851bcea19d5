//! Node paths as the router sees them: syntax checks (SPEC §2) and the directory a node is
//! anchored in for routing (SPEC §7).
//!
//! A node `D/C` lives in the cell owning `slot(D)`, so all children of a directory live
//! together. The deployment root `/ls/<deployment>` has no parent in the namespace; it is
//! anchored in **its own** slot, i.e. it lives with its children. That keeps `ReadDir` and
//! `GetStat` of the root on one cell, and needs no special cell for it.

use crate::hash::slot_of_dir;

/// Longest path accepted, in bytes (SPEC §2: paths at most 4 KiB).
pub const MAX_PATH_LEN: usize = 4096;
/// Longest path component, in bytes (SPEC §2).
pub const MAX_COMPONENT_LEN: usize = 255;

const PREFIX: &str = "/ls/";
/// How much of an offending path an error message repeats.
const SHOWN_PATH_CHARS: usize = 120;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The path is not a syntactically valid full node path.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// The path is valid but names another deployment than the map routes.
    #[error(
        "path {path:?} is not in deployment {deployment:?}; this map routes only /ls/{deployment}/…"
    )]
    WrongDeployment { path: String, deployment: String },
}

/// The offending path as repeated in an error: at most [`SHOWN_PATH_CHARS`] characters, so
/// a 4 KiB (or larger, hostile) path does not flood logs.
pub(crate) fn shown(path: &str) -> String {
    match path.char_indices().nth(SHOWN_PATH_CHARS) {
        Some((cut, _)) => format!("{}…", &path[..cut]),
        None => path.to_owned(),
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> RouteError {
    RouteError::InvalidPath {
        path: shown(path),
        reason: reason.into(),
    }
}

fn is_component_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// What is wrong with one path component (or deployment name), as the end of a sentence
/// starting with what it is; `None` if it is fine: 1–[`MAX_COMPONENT_LEN`] bytes of
/// `[A-Za-z0-9._-]`.
pub(crate) fn component_problem(component: &str) -> Option<String> {
    if component.is_empty() {
        return Some("is empty (a doubled or trailing '/')".to_owned());
    }
    if component.len() > MAX_COMPONENT_LEN {
        return Some(format!(
            "is {} bytes long; components are at most {MAX_COMPONENT_LEN} bytes",
            component.len()
        ));
    }
    if component.bytes().all(is_component_byte) {
        return None;
    }
    let bad = component
        .chars()
        .find(|c| !c.is_ascii() || !is_component_byte(*c as u8))?;
    Some(format!(
        "{component:?} contains {bad:?}; components use only A-Z a-z 0-9 . _ -"
    ))
}

/// Checks that `path` is a full node path: `/ls/<deployment>[/<component>…]`, at most
/// [`MAX_PATH_LEN`] bytes, each component (the deployment included) 1–[`MAX_COMPONENT_LEN`]
/// bytes of `[A-Za-z0-9._-]`. No trailing slash, no empty components. The short form
/// `/dir/name` is expanded by the client library before anything is routed.
pub fn validate_path(path: &str) -> Result<(), RouteError> {
    if path.len() > MAX_PATH_LEN {
        return Err(invalid(
            path,
            format!(
                "it is {} bytes long; paths are at most {MAX_PATH_LEN} bytes",
                path.len()
            ),
        ));
    }
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Err(invalid(
            path,
            "full paths start with /ls/<deployment>/, e.g. /ls/local/dir/name",
        ));
    };
    for (index, component) in rest.split('/').enumerate() {
        if let Some(problem) = component_problem(component) {
            let what = if index == 0 {
                "the deployment name"
            } else {
                "a path component"
            };
            return Err(invalid(path, format!("{what} {problem}")));
        }
    }
    Ok(())
}

/// The deployment a valid full path belongs to (`local` for `/ls/local/a`), or `None` if the
/// path is not valid (see [`validate_path`]).
pub fn deployment_of(path: &str) -> Option<&str> {
    validate_path(path).ok()?;
    Some(deployment_of_valid(path))
}

/// [`deployment_of`] for a path already validated.
pub(crate) fn deployment_of_valid(path: &str) -> &str {
    let rest = path.get(PREFIX.len()..).unwrap_or_default();
    rest.split('/').next().unwrap_or(rest)
}

/// [`parent_dir`] for a path already validated.
fn parent_of_valid(path: &str) -> Option<&str> {
    let (parent, _name) = path.rsplit_once('/')?;
    // `/ls/<deployment>` splits into `/ls` and the deployment: the root has no parent.
    (parent.len() >= PREFIX.len()).then_some(parent)
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

/// The name of the reserved subtree `/ls/<deployment>/warren/` (SPEC §7), which always
/// lives in the meta cell whatever the map says: the map itself is kept there.
pub const RESERVED: &str = "warren";

/// Whether `path` is the reserved directory `/ls/<deployment>/warren` or under it: such
/// paths are served by the meta cell only. `false` for invalid paths.
pub fn is_reserved(path: &str) -> bool {
    if validate_path(path).is_err() {
        return false;
    }
    let rest = &path[PREFIX.len()..];
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
