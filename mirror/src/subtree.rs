//! The mirrored subtree as the command line names it, checked before anything connects
//! (docs/mirror.md, "Running it"): a directory under `/ls/<deployment>/`, full or short,
//! not the deployment root, not the reserved subtree `/ls/<d>/warren/` and not the ACL
//! files `/ls/<d>/acl/`; and no loop (the same deployment as source and target with
//! overlapping subtrees). Pure code.

use warren_router::{FULL_PREFIX, RESERVED};

/// The directory of ACL files, which each deployment keeps for itself.
const ACL_DIR: &str = "acl";

/// A subtree as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subtree {
    /// The deployment a full path (`/ls/<d>/…`) named; `None` for the short form (`/a/b`),
    /// which means "in whichever deployment the session connects to".
    pub deployment: Option<String>,
    /// The path below the deployment root, without a leading `/`: `config/global`.
    pub relative: String,
}

impl Subtree {
    /// Parses and checks `path` (given as `flag`, for the messages).
    pub fn parse(flag: &str, path: &str) -> Result<Subtree, String> {
        let fix = format!(
            "give {flag} a directory under a deployment, as /ls/<deployment>/<dir>[/…] or the short form /<dir>[/…]"
        );
        let (deployment, relative) = if let Some(rest) = path.strip_prefix(FULL_PREFIX) {
            match rest.split_once('/') {
                Some((d, r)) => (Some(d.to_string()), r.to_string()),
                None => {
                    return Err(format!(
                        "{flag} {path:?} is a whole deployment's root, which holds its ACL files and the reserved subtree: {fix}"
                    ))
                }
            }
        } else if let Some(rest) = path.strip_prefix('/') {
            (None, rest.to_string())
        } else {
            return Err(format!("{flag} {path:?} is not an absolute path: {fix}"));
        };
        if path == "/ls" {
            return Err(format!(
                "{flag} {path:?} is outside /ls/<deployment>/…: {fix}"
            ));
        }
        if relative.is_empty() || relative.ends_with('/') {
            return Err(format!(
                "{flag} {path:?} names no directory below the deployment root: {fix}"
            ));
        }
        let full = format!(
            "{FULL_PREFIX}{}/{relative}",
            deployment.as_deref().unwrap_or("local")
        );
        if let Err(e) = warren_router::validate_path(&full) {
            return Err(format!("{flag} {path:?}: {e}; {fix}"));
        }
        let top = relative.split('/').next().unwrap_or_default();
        if top == RESERVED {
            return Err(format!(
                "{flag} {path:?} is in the reserved subtree /ls/<deployment>/{RESERVED}/ (the partition map and reshard jobs; each deployment keeps its own): give {flag} a directory of your own"
            ));
        }
        if top == ACL_DIR {
            return Err(format!(
                "{flag} {path:?} is in /ls/<deployment>/{ACL_DIR}/, the ACL files, which each deployment keeps for itself (the mirror copies nodes' ACL names, not the files): create the ACL files in the target yourself and give {flag} a directory of your own"
            ));
        }
        Ok(Subtree {
            deployment,
            relative,
        })
    }

    /// The full path in `deployment` (the session's). A full path naming another deployment
    /// is refused, naming both.
    pub fn full_in(&self, flag: &str, deployment: &str) -> Result<String, String> {
        if let Some(d) = &self.deployment {
            if d != deployment {
                return Err(format!(
                    "{flag} /ls/{d}/{} is outside the deployment those endpoints serve ({deployment}): give /ls/{deployment}/{} or the short form /{}",
                    self.relative, self.relative, self.relative
                ));
            }
        }
        Ok(format!("{FULL_PREFIX}{deployment}/{}", self.relative))
    }

    /// Whether the two subtrees can be the same nodes or nested, if both are in one
    /// deployment.
    pub fn overlaps(&self, other: &Subtree) -> bool {
        if let (Some(a), Some(b)) = (&self.deployment, &other.deployment) {
            if a != b {
                return false;
            }
        }
        crate::plan::is_under(&self.relative, &other.relative)
            || crate::plan::is_under(&other.relative, &self.relative)
    }
}

/// An endpoint as written, normalised for comparison (`localhost` is `127.0.0.1`, any
/// `http://` dropped).
fn normalise(endpoint: &str) -> String {
    let e = endpoint.trim();
    let e = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .unwrap_or(e);
    match e.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => e.to_string(),
    }
}

/// The loop check before connecting: the same endpoint on both sides with overlapping
/// subtrees would mirror a subtree into itself.
pub fn check_no_loop(
    from: &[String],
    to: &[String],
    from_subtree: &Subtree,
    to_subtree: &Subtree,
) -> Result<(), String> {
    let shared = from
        .iter()
        .map(|e| normalise(e))
        .find(|e| to.iter().any(|t| normalise(t) == *e));
    if let Some(endpoint) = shared {
        if from_subtree.overlaps(to_subtree) {
            return Err(loop_message(&format!(
                "--from and --to share the endpoint {endpoint}"
            )));
        }
    }
    Ok(())
}

/// The message for a mirror into itself, `why` saying how it was found.
pub fn loop_message(why: &str) -> String {
    format!(
        "the source and the target are the same deployment and the subtrees overlap ({why}): \
         the mirror would copy its own writes forever. Give --to-subtree a directory outside \
         --subtree, or --to the endpoints of another deployment"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_short_forms() {
        let s = Subtree::parse("--subtree", "/ls/prod/config/global").unwrap();
        assert_eq!(s.deployment.as_deref(), Some("prod"));
        assert_eq!(s.relative, "config/global");
        assert_eq!(
            s.full_in("--subtree", "prod").unwrap(),
            "/ls/prod/config/global"
        );
        let e = s.full_in("--subtree", "local").unwrap_err();
        assert!(
            e.contains("outside the deployment") && e.contains("/ls/local/config/global"),
            "{e}"
        );
        let s = Subtree::parse("--subtree", "/config").unwrap();
        assert_eq!(s.deployment, None);
        assert_eq!(s.full_in("--subtree", "dr").unwrap(), "/ls/dr/config");
    }

    #[test]
    fn bad_subtrees_name_the_fix() {
        for (path, words) in [
            ("config", "not an absolute path"),
            ("/ls/prod", "root"),
            ("/ls", "outside /ls/<deployment>"),
            ("/lsx/a", ""),
            ("/", "names no directory"),
            ("/ls/prod/warren", "reserved subtree"),
            ("/ls/prod/warren/map", "reserved subtree"),
            ("/warren", "reserved subtree"),
            ("/acl", "ACL files"),
            ("/a//b", "/"),
            ("/a/..", ".."),
        ] {
            match Subtree::parse("--subtree", path) {
                Err(e) => {
                    assert!(e.contains(words), "{path}: {e}");
                    assert!(
                        e.contains("give") || e.contains("mirror a directory"),
                        "{path}: {e}"
                    );
                }
                // `/lsx/a` is the short form of the directory `lsx/a`: fine.
                Ok(s) => assert_eq!((path, s.relative.as_str()), ("/lsx/a", "lsx/a")),
            }
        }
    }

    #[test]
    fn loops_are_refused_and_disjoint_subtrees_allowed() {
        let eps = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = Subtree::parse("--subtree", "/cfg").unwrap();
        let below = Subtree::parse("--to-subtree", "/cfg/copy").unwrap();
        let other = Subtree::parse("--to-subtree", "/cfg-copy").unwrap();
        let e = check_no_loop(&eps(&["localhost:7100"]), &eps(&["127.0.0.1:7100"]), &a, &a)
            .unwrap_err();
        assert!(
            e.contains("127.0.0.1:7100") && e.contains("--to-subtree"),
            "{e}"
        );
        assert!(check_no_loop(&eps(&["a:1"]), &eps(&["a:1"]), &a, &below).is_err());
        assert!(check_no_loop(&eps(&["a:1"]), &eps(&["a:1"]), &a, &other).is_ok());
        assert!(check_no_loop(&eps(&["a:1"]), &eps(&["b:1"]), &a, &a).is_ok());
        let p = Subtree::parse("--subtree", "/ls/p/cfg").unwrap();
        let q = Subtree::parse("--to-subtree", "/ls/q/cfg").unwrap();
        assert!(!p.overlaps(&q));
    }
}
