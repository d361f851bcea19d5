//! Path syntax (SPEC §2): `/ls/<deployment>/a/b`, components of 1–255 bytes of
//! `[A-Za-z0-9._-]` (but never `.` or `..`), at most 4 KiB in all. Validation happens once,
//! at `Open`, before anything is looked up; every rejection names the problem.

use warren_proto::WarrenError;

/// Longest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest component accepted, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// The root of a deployment's namespace: `/ls/<deployment>`.
pub fn root_of(deployment: &str) -> String {
    format!("/ls/{deployment}")
}

/// Checks one name component.
pub fn check_component(c: &str, path: &str) -> Result<(), WarrenError> {
    if c.is_empty() {
        return Err(WarrenError::invalid_argument(format!(
            "path {path:?} has an empty component (a doubled or trailing '/')"
        )));
    }
    if c == "." || c == ".." {
        return Err(WarrenError::invalid_argument(format!(
            "path {path:?} has a {c:?} component; Warren paths have no relative components"
        )));
    }
    if c.len() > MAX_COMPONENT_BYTES {
        return Err(WarrenError::invalid_argument(format!(
            "path component of {} bytes is longer than {MAX_COMPONENT_BYTES}",
            c.len()
        )));
    }
    if let Some(bad) = c
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')))
    {
        return Err(WarrenError::invalid_argument(format!(
            "path {path:?} contains {bad:?}; components may only use A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(())
}

/// Validates a full path for `deployment` and returns it unchanged. The deployment root
/// itself is a valid path.
pub fn validate(path: &str, deployment: &str) -> Result<(), WarrenError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(WarrenError::too_large(format!(
            "path of {} bytes is longer than the {MAX_PATH_BYTES}-byte limit",
            path.len()
        )));
    }
    let Some(rest) = path.strip_prefix("/ls/") else {
        return Err(WarrenError::invalid_argument(format!(
            "path {path:?} must start with /ls/{deployment}/"
        )));
    };
    let mut parts = rest.split('/');
    let dep = parts.next().unwrap_or("");
    check_component(dep, path)?;
    if dep != deployment {
        return Err(WarrenError::invalid_argument(format!(
            "path {path:?} is in deployment {dep:?}; this cell serves deployment {deployment:?}"
        )));
    }
    for c in parts {
        check_component(c, path)?;
    }
    Ok(())
}

/// Parent of a valid path (`None` for the deployment root).
pub fn parent(path: &str) -> Option<&str> {
    let i = path.rfind('/')?;
    let p = &path[..i];
    // "/ls" is not a node: the root's parent is outside the namespace.
    if p == "/ls" || p.is_empty() {
        None
    } else {
        Some(p)
    }
}

/// Last component of a path.
pub fn name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
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

    #[test]
    fn parents_and_names() {
        assert_eq!(parent("/ls/local"), None);
        assert_eq!(parent("/ls/local/a"), Some("/ls/local"));
        assert_eq!(parent("/ls/local/a/b"), Some("/ls/local/a"));
        assert_eq!(name("/ls/local/a/b"), "b");
    }
}
