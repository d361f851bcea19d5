//! Path expansion: the short form `/a/b` names `/ls/<deployment>/a/b` in the deployment the
//! session is connected to (SPEC §2). Only the expansion happens here; the cell validates
//! components and lengths and says what is wrong.

use crate::error::Error;

/// The prefix of every full path.
pub const FULL_PREFIX: &str = "/ls/";

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

/// The error a caller gets for a path the partition map cannot route: the one a cell would
/// give for it (`TOO_LARGE` for an over-long path, otherwise `INVALID_ARGUMENT`). Routers
/// (proxies, and this library in direct mode) answer with it.
pub fn route_error(path: &str, e: warren_router::RouteError) -> warren_proto::WarrenError {
    if path.len() > warren_router::MAX_PATH_LEN {
        return warren_proto::WarrenError::too_large(format!(
            "path of {} bytes is longer than the {}-byte limit",
            path.len(),
            warren_router::MAX_PATH_LEN
        ));
    }
    warren_proto::WarrenError::invalid_argument(e.to_string())
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
    fn relative_paths_are_rejected() {
        for bad in ["", "a/b", "ls/local/a"] {
            let e = expand_path("local", bad).expect_err(bad);
            assert_eq!(e.code_name(), "INVALID_ARGUMENT");
        }
    }
}
