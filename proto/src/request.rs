//! What request messages have in common, so that servers and proxies can treat them
//! alike: almost every request carries the caller's session context, and most name a
//! handle. Implemented here, once, for every generated request type that has the field.

use crate::pb;

/// A request that carries a session context (`ctx`, field 1).
pub trait WithContext {
    /// The session context, if the request has one.
    fn ctx(&self) -> Option<&pb::SessionContext>;
    /// The session context, to replace (a proxy forwards a request on its own session).
    fn ctx_mut(&mut self) -> &mut Option<pb::SessionContext>;

    /// A copy of the request carrying `ctx` instead of its own context.
    fn with_ctx(&self, ctx: pb::SessionContext) -> Self
    where
        Self: Clone,
    {
        let mut r = self.clone();
        *r.ctx_mut() = Some(ctx);
        r
    }
}

/// A request that names a handle (`handle`, field 2).
pub trait WithHandle {
    /// The handle's bytes, as the client sent them.
    fn handle(&self) -> &[u8];
}

/// Implements [`WithContext`] for each request type listed, and [`WithHandle`] for those
/// marked `+ handle`.
macro_rules! requests {
    ($($t:ident $(+ $handle:ident)?),* $(,)?) => {$(
        impl WithContext for pb::$t {
            fn ctx(&self) -> Option<&pb::SessionContext> {
                self.ctx.as_ref()
            }
            fn ctx_mut(&mut self) -> &mut Option<pb::SessionContext> {
                &mut self.ctx
            }
        }
        $(requests!(@$handle $t);)?
    )*};
    (@handle $t:ident) => {
        impl WithHandle for pb::$t {
            fn handle(&self) -> &[u8] {
                &self.handle
            }
        }
    };
}

requests! {
    KeepAliveRequest,
    CloseSessionRequest,
    ClaimSessionRequest,
    OpenRequest,
    CheckSequencerRequest,
    CloseRequest + handle,
    GetContentsAndStatRequest + handle,
    GetStatRequest + handle,
    ReadDirRequest + handle,
    SetContentsRequest + handle,
    SetAclRequest + handle,
    DeleteRequest + handle,
    AcquireRequest + handle,
    TryAcquireRequest + handle,
    ReleaseRequest + handle,
    GetSequencerRequest + handle,
    SetSequencerRequest + handle,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_ctx_replaces_only_the_context() {
        let r = pb::GetStatRequest {
            ctx: Some(pb::SessionContext {
                epoch: 1,
                ..Default::default()
            }),
            handle: vec![7, 8],
        };
        let f = r.with_ctx(pb::SessionContext {
            epoch: 9,
            ..Default::default()
        });
        assert_eq!(f.ctx().map(|c| c.epoch), Some(9));
        assert_eq!(f.handle(), &[7, 8]);
        assert_eq!(
            r.ctx().map(|c| c.epoch),
            Some(1),
            "the original is untouched"
        );
    }
}
