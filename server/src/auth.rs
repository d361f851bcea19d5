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

#[cfg(test)]
mod tests {
    use super::*;

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
