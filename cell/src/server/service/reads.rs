//! Opening and reading: Open (which may create, and may cross cells: ACL files held
//! elsewhere, the child anchor of a split directory), Close, GetContentsAndStat, GetStat
//! and ReadDir.

use super::{Answer, Service};
use crate::core::Master;
use crate::edge;
use crate::server::crosscell::ForeignAcls;
use warren_proto::pb;
use warren_proto::request::WithContext;

pub(super) async fn open(s: &Service, r: pb::OpenRequest) -> Answer<pb::OpenResponse> {
    let args = edge::open_args(&r)?;
    let (ctx, shared) = s.session(&r).await?;
    let mut acls = ForeignAcls::default();
    let mut anchor_rounds = 0;
    let ok = loop {
        let (res, notes) = shared
            .write_reading_acls(&mut acls, |m, now| m.open(&ctx, &args, now))
            .await;
        if let Some(job) = notes.anchor {
            if shared.open_anchor_step(&job, &mut anchor_rounds).await? {
                continue;
            }
        }
        break res?;
    };
    Ok(pb::OpenResponse {
        handle: ok.handle,
        stat: s.stat(&ok.stat),
        contents: ok.contents.unwrap_or_default(),
        cacheable: ok.cacheable,
        created: ok.created,
    })
}

pub(super) async fn close(s: &Service, r: pb::CloseRequest) -> Answer<pb::CloseResponse> {
    // Close never fails: a malformed context is simply nothing to close.
    if let Ok(ctx) = edge::ctx(r.ctx()) {
        s.routed(&r)
            .await?
            .run(|m, now| m.close(&ctx, &r.handle, now))
            .await?;
    }
    Ok(pb::CloseResponse {})
}

pub(super) async fn get_contents_and_stat(
    s: &Service,
    r: pb::GetContentsAndStatRequest,
) -> Answer<pb::GetContentsAndStatResponse> {
    let (contents, stat, cacheable) = s.on_handle(&r, Master::get_contents).await?;
    Ok(pb::GetContentsAndStatResponse {
        contents,
        stat: s.stat(&stat),
        cacheable,
    })
}

pub(super) async fn get_stat(s: &Service, r: pb::GetStatRequest) -> Answer<pb::GetStatResponse> {
    let (stat, cacheable) = s.on_handle(&r, Master::get_stat).await?;
    Ok(pb::GetStatResponse {
        stat: s.stat(&stat),
        cacheable,
    })
}

pub(super) async fn read_dir(s: &Service, r: pb::ReadDirRequest) -> Answer<pb::ReadDirResponse> {
    let (entries, stat, cacheable) = s.on_handle(&r, Master::read_dir).await?;
    Ok(pb::ReadDirResponse {
        entries: entries
            .iter()
            .map(|e| pb::DirEntry {
                name: e.name.clone(),
                stat: Some(edge::stat(
                    &e.stat,
                    e.anchor_cell.as_deref().unwrap_or(&s.node.cell),
                )),
            })
            .collect(),
        cacheable,
        stat: s.stat(&stat),
    })
}
