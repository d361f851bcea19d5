//! Who is calling, as the transport authenticated it: the one type the TLS layer and the
//! authorization rules share (docs/security.md).
//!
//! The server's TLS layer puts a [`PeerIdentity`] into the extensions of every request
//! that arrives on a connection whose client presented a verified certificate; a request
//! on a plaintext connection (`--insecure`, or loopback without TLS) carries none. The
//! authorization rules of cells and proxies read it with [`peer_identity`] and never look
//! at certificates themselves.

/// The principal a verified client certificate names (docs/security.md says which field).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// The authenticated principal, e.g. `warren:proxy-1` or `spiffe://example/fleet`.
    pub principal: String,
}

/// The identity the transport authenticated for `req`, if its connection is TLS with a
/// verified client certificate.
pub fn peer_identity<T>(req: &tonic::Request<T>) -> Option<&PeerIdentity> {
    req.extensions().get::<PeerIdentity>()
}

tokio::task_local! {
    /// The caller of the call being handled ([`with_caller`]).
    static CALLER: Option<PeerIdentity>;
}

/// Runs `call` (one RPC's handler) with `caller` as the identity [`caller`] reports:
/// [`crate::warren_service!`] wraps every handler in it with the request's
/// [`peer_identity`], so handlers, which get the request's message only, can still ask
/// who called.
pub fn with_caller<F: std::future::Future>(
    caller: Option<PeerIdentity>,
    call: F,
) -> tokio::task::futures::TaskLocalFuture<Option<PeerIdentity>, F> {
    CALLER.scope(caller, call)
}

/// The authenticated caller of the RPC being handled on this task: `None` on a plaintext
/// connection, and outside any handler (a test calling a handler directly).
pub fn caller() -> Option<PeerIdentity> {
    CALLER.try_with(Clone::clone).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_handler_run_with_a_caller_sees_it_and_none_outside() {
        assert_eq!(caller(), None);
        let who = PeerIdentity {
            principal: "alice".into(),
        };
        let seen = with_caller(Some(who.clone()), async { caller() }).await;
        assert_eq!(seen, Some(who));
        assert_eq!(with_caller(None, async { caller() }).await, None);
    }

    #[test]
    fn a_request_carries_the_identity_put_in_its_extensions_and_none_otherwise() {
        let mut req = tonic::Request::new(());
        assert_eq!(peer_identity(&req), None);
        req.extensions_mut().insert(PeerIdentity {
            principal: "warren:proxy-1".into(),
        });
        assert_eq!(
            peer_identity(&req).map(|p| p.principal.as_str()),
            Some("warren:proxy-1")
        );
    }
}
