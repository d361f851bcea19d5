//! Writes: SetContents, SetAcl and Delete (which may cross cells: ACL files held
//! elsewhere, the entry of a removed child anchor unlinked at the parent's cell). A write
//! waits for the cache invalidations it causes before it is applied.

use super::{Answer, Service};
use crate::edge;
use crate::server::crosscell::ForeignAcls;
use warren_proto::pb;
use warren_proto::WarrenError;

pub(super) async fn set_contents(
    s: &Service,
    r: pb::SetContentsRequest,
) -> Answer<pb::SetContentsResponse> {
    let stat = s
        .write(&r, |m, ctx, now| {
            m.set_contents(ctx, &r.handle, &r.contents, r.if_content_generation, now)
        })
        .await?;
    Ok(pb::SetContentsResponse {
        stat: s.stat(&stat),
    })
}

pub(super) async fn set_acl(s: &Service, r: pb::SetAclRequest) -> Answer<pb::SetAclResponse> {
    let acl = edge::acl_in(
        r.acl
            .as_ref()
            .ok_or_else(|| WarrenError::invalid_argument("SetAcl needs acl"))?,
    );
    let stat = s
        .write(&r, |m, ctx, now| m.set_acl(ctx, &r.handle, &acl, now))
        .await?;
    Ok(pb::SetAclResponse {
        stat: s.stat(&stat),
    })
}

pub(super) async fn delete(s: &Service, r: pb::DeleteRequest) -> Answer<pb::DeleteResponse> {
    let (ctx, shared) = s.session(&r).await?;
    let (res, _) = shared
        .write_reading_acls(&mut ForeignAcls::default(), |m, now| {
            m.delete(&ctx, &r.handle, now)
        })
        .await;
    if let Some(u) = res? {
        // The anchor is gone and the unlink recorded (durably): the entry next.
        shared.unlink_after_delete(&u).await;
    }
    Ok(pb::DeleteResponse {})
}
