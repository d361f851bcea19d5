//! The caller rule (docs/security.md, "Authorization"): given the principal the transport
//! authenticated for a call, if any, what the call may do — which principal it acts as,
//! whether it may make the proxy-only calls, and whether it may use a session. Plain code,
//! no I/O: the master applies it to every call ([`super::Master::check_session`],
//! `create_session_as`, `claim_session`).
//!
//! - No authenticated principal (a plaintext connection: `--insecure`, or loopback
//!   development): the principal the call asserts is trusted, as before TLS.
//! - An authenticated principal in the configured proxy set may make the proxy-only calls
//!   (`CreateSession{proxy}`, `ClaimSession`, calls carrying `ctx.client_session`) and act
//!   for a client by forwarding the client's principal (`ctx.client_principal`): proxies
//!   authenticate their clients and are trusted to forward what they authenticated.
//! - Any other authenticated principal acts as itself only: the proxy-only calls are
//!   refused, and so is asserting another principal or using another principal's session.

use super::{CELL_PRINCIPAL, OPERATOR_PRINCIPAL};
use crate::store::SessionId;
use std::collections::BTreeSet;
use warren_proto::WarrenError;
use warren_server::lease::short_id;

/// The principals a cell gives more than their own rights (`proxy_principals`,
/// `operator_principals` in the cell's configuration).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerRules {
    /// Authenticated principals that may act as proxies.
    pub proxies: BTreeSet<String>,
    /// Principals that may write the reserved subtree `/ls/<d>/warren/`, besides
    /// [`OPERATOR_PRINCIPAL`] and the cells' own [`CELL_PRINCIPAL`].
    pub operators: BTreeSet<String>,
}

/// Who a call comes from, once the rule accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No authenticated principal: asserted principals are trusted.
    Asserted,
    /// The transport authenticated `principal`; `proxy`: it is in the proxy set.
    Authenticated { principal: String, proxy: bool },
}

impl CallerRules {
    /// Whether `principal` may write the reserved subtree: an operator or a cell.
    pub fn is_operator(&self, principal: &str) -> bool {
        principal == OPERATOR_PRINCIPAL
            || principal == CELL_PRINCIPAL
            || self.operators.contains(principal)
    }

    /// Judges a call from `authenticated` (`None`: plaintext) that asserts principal
    /// `asserted` ("" when it asserts none) and, with `proxy_only`, does the proxy-only
    /// thing it names ("call ClaimSession", …).
    pub fn judge(
        &self,
        authenticated: Option<&str>,
        asserted: &str,
        proxy_only: Option<&str>,
    ) -> Result<Caller, WarrenError> {
        let Some(a) = authenticated else {
            return Ok(Caller::Asserted);
        };
        let proxy = self.proxies.contains(a);
        if let (Some(what), false) = (proxy_only, proxy) {
            return Err(WarrenError::permission_denied(format!(
                "principal {a:?} may not {what}: that is for proxies only, and {a:?} is not \
                 one of this cell's proxy principals (proxy_principals, --proxy-principal)"
            )));
        }
        if !proxy && !asserted.is_empty() && asserted != a {
            return Err(WarrenError::permission_denied(format!(
                "principal {a:?} (authenticated by its certificate) may not act as principal \
                 {asserted:?}: only proxy principals forward another principal; leave the \
                 principal unset or set it to {a:?}"
            )));
        }
        Ok(Caller::Authenticated {
            principal: a.to_string(),
            proxy,
        })
    }
}

impl Caller {
    /// The principal a session created by this caller, asserting `asserted`, acts for: its
    /// own when authenticated (a proxy's assertion is trusted when it makes one).
    pub fn session_principal(&self, asserted: &str) -> String {
        match self {
            Caller::Asserted => asserted.to_string(),
            Caller::Authenticated { principal, proxy } => {
                if *proxy && !asserted.is_empty() {
                    asserted.to_string()
                } else {
                    principal.clone()
                }
            }
        }
    }

    /// Whether this caller may present session `id`, created for principal `owner`
    /// (sessions are bound to principals): a session id and secret presented under
    /// another principal's certificate are refused. Proxies, trusted to act for anyone,
    /// may present any.
    pub fn may_use_session(&self, id: &SessionId, owner: &str) -> Result<(), WarrenError> {
        match self {
            Caller::Asserted | Caller::Authenticated { proxy: true, .. } => Ok(()),
            Caller::Authenticated { principal, .. } if principal == owner => Ok(()),
            Caller::Authenticated { principal, .. } => {
                Err(WarrenError::permission_denied(format!(
                    "session {} belongs to principal {owner:?} and is refused to principal \
                     {principal:?}: a session is used only under the principal it was created for",
                    short_id(id)
                )))
            }
        }
    }

    /// Whether this caller may present client session `id`, registered for principal
    /// `owner`, as acting for `forwarded` (`ctx.client_principal`): with an authenticated
    /// proxy, the principal it forwards must be the one the client session was registered
    /// with. Without authentication, today's behaviour: not checked.
    pub fn may_forward(
        &self,
        id: &SessionId,
        owner: &str,
        forwarded: &str,
    ) -> Result<(), WarrenError> {
        match self {
            Caller::Authenticated { .. } if owner != forwarded => {
                Err(WarrenError::permission_denied(format!(
                    "client session {} belongs to principal {owner:?} and is refused to principal \
                     {forwarded:?}: a session is used only under the principal it was created for",
                    short_id(id)
                )))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::ErrorCode;

    fn rules() -> CallerRules {
        CallerRules {
            proxies: ["warren:proxy-1".to_string()].into(),
            operators: ["ops".to_string()].into(),
        }
    }

    fn denied(r: Result<impl std::fmt::Debug, WarrenError>, needles: &[&str]) {
        let e = r.expect_err("refused");
        assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
        for n in needles {
            assert!(e.message.contains(n), "{:?} lacks {n:?}", e.message);
        }
    }

    #[test]
    fn without_an_authenticated_principal_every_assertion_is_trusted() {
        let r = rules();
        let c = r.judge(None, "mallory", Some("call ClaimSession")).unwrap();
        assert_eq!(c, Caller::Asserted);
        assert_eq!(c.session_principal("alice"), "alice");
        c.may_use_session(&[1; 16], "bob").unwrap();
        c.may_forward(&[1; 16], "bob", "carol").unwrap();
    }

    #[test]
    fn a_client_certificate_is_refused_the_proxy_only_calls_naming_principal_and_rule() {
        let r = rules();
        for what in [
            "call ClaimSession",
            "act for a client session (ctx.client_session)",
            "create a proxy session (CreateSession with proxy = true)",
        ] {
            denied(
                r.judge(Some("alice"), "", Some(what)),
                &["\"alice\"", what, "proxy_principals", "--proxy-principal"],
            );
        }
        // The proxy set may.
        let p = r
            .judge(Some("warren:proxy-1"), "", Some("call ClaimSession"))
            .unwrap();
        assert_eq!(
            p,
            Caller::Authenticated {
                principal: "warren:proxy-1".into(),
                proxy: true
            }
        );
    }

    #[test]
    fn a_client_may_assert_only_its_own_principal_and_acts_as_it() {
        let r = rules();
        denied(
            r.judge(Some("alice"), "bob", None),
            &["\"alice\"", "\"bob\"", "only proxy principals"],
        );
        // An operator certificate does not make a client an operator by assertion either.
        denied(
            r.judge(Some("alice"), OPERATOR_PRINCIPAL, None),
            &["\"alice\""],
        );
        for asserted in ["", "alice"] {
            let c = r.judge(Some("alice"), asserted, None).unwrap();
            assert_eq!(c.session_principal(asserted), "alice");
        }
    }

    #[test]
    fn a_proxy_forwards_the_principal_it_asserts() {
        let r = rules();
        let p = r.judge(Some("warren:proxy-1"), "proxy:p1", None).unwrap();
        assert_eq!(p.session_principal("proxy:p1"), "proxy:p1");
        assert_eq!(p.session_principal(""), "warren:proxy-1");
    }

    #[test]
    fn a_session_is_refused_under_another_principal_but_not_to_a_proxy() {
        let r = rules();
        let bob = r.judge(Some("bob"), "", None).unwrap();
        denied(
            bob.may_use_session(&[7; 16], "alice"),
            &["\"alice\"", "\"bob\"", "07070707"],
        );
        r.judge(Some("alice"), "", None)
            .unwrap()
            .may_use_session(&[7; 16], "alice")
            .unwrap();
        let p = r.judge(Some("warren:proxy-1"), "", None).unwrap();
        p.may_use_session(&[7; 16], "alice").unwrap();
        // A proxy forwarding another principal for a registered client session: refused.
        denied(
            p.may_forward(&[7; 16], "alice", "bob"),
            &["\"alice\"", "\"bob\""],
        );
        p.may_forward(&[7; 16], "alice", "alice").unwrap();
    }

    #[test]
    fn operators_are_the_configured_set_the_operator_principal_and_cells() {
        let r = rules();
        assert!(r.is_operator("ops"));
        assert!(r.is_operator(OPERATOR_PRINCIPAL));
        assert!(r.is_operator(CELL_PRINCIPAL));
        assert!(!r.is_operator("alice"));
        assert!(!r.is_operator(""));
    }
}
