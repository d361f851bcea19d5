//! The read permission a proxy checks before it serves anything from its shared cache
//! (docs/security.md, "Authorization"; docs/design.md §10): a copy cached for one
//! principal goes to another only if the node's read ACL lets that principal read it.
//!
//! Plain code, no I/O. The proxy knows a node's ACL names from the stat it cached with the
//! node, and an ACL file's contents only if it caches that file too (cached like any file,
//! so a change to the ACL file invalidates it like any write). When it does not, the
//! verdict is [`Verdict::AskTheCell`]: the read goes to the cell, which enforces the ACL.
//! A denial changes nothing in the cache: the copy stays for those who may read it.

use warren_proto::{pb, WarrenError};

/// What the proxy does with a read it could answer from its cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Serve the cached copy.
    Serve,
    /// Refuse the read with this error (`PERMISSION_DENIED`), as the cell would.
    Refuse(WarrenError),
    /// The ACL file is not cached here: forward the read to the cell, which enforces.
    AskTheCell,
}

/// The principal a client session created at this proxy acts for: the one its certificate
/// names when the transport authenticated the client (`authenticated`; asserting another
/// is refused), else the one it asserts (a plaintext connection: trusted, as before TLS).
/// The proxy forwards it to the cells as `client_principal`.
pub fn session_principal(
    authenticated: Option<&str>,
    asserted: &str,
) -> Result<String, WarrenError> {
    match authenticated {
        None => Ok(asserted.to_string()),
        Some(a) if asserted.is_empty() || asserted == a => Ok(a.to_string()),
        Some(a) => Err(WarrenError::permission_denied(format!(
            "principal {a:?} (authenticated by its certificate) may not act as principal \
             {asserted:?}: leave the principal unset or set it to {a:?}"
        ))),
    }
}

/// Whether a call under `authenticated` may use client session `id`, created for
/// principal `owner`: a session id and secret presented with another principal's
/// certificate are refused (sessions are bound to principals).
pub fn may_use_session(
    authenticated: Option<&str>,
    id: &[u8],
    owner: &str,
) -> Result<(), WarrenError> {
    match authenticated {
        Some(a) if a != owner => Err(WarrenError::permission_denied(format!(
            "session {} belongs to principal {owner:?} and is refused to principal {a:?}: a \
             session is used only under the principal it was created for",
            warren_server::lease::short_id(id)
        ))),
        _ => Ok(()),
    }
}

/// The path of ACL file `name` in deployment `deployment` (docs/design.md §3).
pub fn acl_file(deployment: &str, name: &str) -> String {
    format!("{}/acl/{name}", warren_router::path::root_of(deployment))
}

/// Whether `principal` may read `path`, whose cached stat is `stat`, given the cached
/// contents of its read ACL file (`acl_contents(file)`: `None` when the proxy does not
/// cache it). An empty read ACL name restricts nobody; an ACL file lists one principal
/// per line (surrounding blanks ignored), as the cell reads it.
pub fn may_read<'a>(
    deployment: &str,
    principal: &str,
    path: &str,
    stat: &pb::Stat,
    acl_contents: impl FnOnce(&str) -> Option<&'a [u8]>,
) -> Verdict {
    let name = stat.acl.as_ref().map_or("", |a| a.read.as_str());
    if name.is_empty() {
        return Verdict::Serve;
    }
    let file = acl_file(deployment, name);
    let Some(contents) = acl_contents(&file) else {
        return Verdict::AskTheCell;
    };
    if String::from_utf8_lossy(contents)
        .lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && l == principal)
    {
        return Verdict::Serve;
    }
    Verdict::Refuse(WarrenError::permission_denied(format!(
        "principal {principal:?} may not read {path}: it is not listed in ACL file {file}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::ErrorCode;

    fn stat(read: &str) -> pb::Stat {
        pb::Stat {
            acl: Some(pb::AclNames {
                read: read.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_certificate_names_the_session_principal_and_binds_the_session() {
        assert_eq!(session_principal(None, "bob").unwrap(), "bob");
        assert_eq!(session_principal(Some("alice"), "").unwrap(), "alice");
        assert_eq!(session_principal(Some("alice"), "alice").unwrap(), "alice");
        let e = session_principal(Some("alice"), "bob").unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert!(e.message.contains("\"alice\"") && e.message.contains("\"bob\""));
        may_use_session(None, &[1; 16], "alice").unwrap();
        may_use_session(Some("alice"), &[1; 16], "alice").unwrap();
        let e = may_use_session(Some("bob"), &[1; 16], "alice").unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert!(e.message.contains("01010101"), "{}", e.message);
    }

    const ONLY_A: &[u8] = b"  alice \n\ncarol\n";

    #[test]
    fn a_cached_copy_goes_only_to_principals_the_cached_acl_lists() {
        let acl = |f: &str| {
            assert_eq!(f, "/ls/local/acl/readers");
            Some(ONLY_A)
        };
        let s = stat("readers");
        assert_eq!(
            may_read("local", "alice", "/ls/local/f", &s, acl),
            Verdict::Serve
        );
        assert_eq!(
            may_read("local", "carol", "/ls/local/f", &s, acl),
            Verdict::Serve
        );
        let Verdict::Refuse(e) = may_read("local", "bob", "/ls/local/f", &s, acl) else {
            panic!("bob is not listed")
        };
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        for needle in ["\"bob\"", "/ls/local/f", "/ls/local/acl/readers"] {
            assert!(e.message.contains(needle), "{}", e.message);
        }
        // Neither a blank principal nor a part of a line matches.
        assert!(matches!(
            may_read("local", "", "/ls/local/f", &s, acl),
            Verdict::Refuse(_)
        ));
        assert!(matches!(
            may_read("local", "ali", "/ls/local/f", &s, acl),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn an_acl_file_not_cached_sends_the_read_to_the_cell() {
        assert_eq!(
            may_read("local", "alice", "/ls/local/f", &stat("readers"), |_| None),
            Verdict::AskTheCell
        );
    }

    #[test]
    fn no_read_acl_restricts_nobody_without_looking_for_a_file() {
        let never = |_: &str| -> Option<&[u8]> { panic!("no ACL file to read") };
        assert_eq!(
            may_read("local", "bob", "/ls/local/f", &stat(""), never),
            Verdict::Serve
        );
        let no_acl = pb::Stat::default();
        assert_eq!(
            may_read("local", "bob", "/ls/local/f", &no_acl, never),
            Verdict::Serve
        );
    }
}
