//! Writes on a handle: `SetContents`, `SetAcl` and `Delete`, each behind the invalidation
//! barrier (and, on the partition map file, behind the checks of `map_guard`).

use super::path;
use super::{
    acl::check_acl_names, intent, mask, nodes::checksum, ChildChange, Ctx, EventKind, HandleKey,
    Master, Reply, StatView,
};
use crate::store::{AclNames, Mutation, NodeKind, PendingUnlink};
use tokio::time::Instant;
use warren_proto::WarrenError;

impl Master {
    pub fn set_contents(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        data: &[u8],
        if_generation: Option<u64>,
        now: Instant,
    ) -> Result<Reply<StatView>, WarrenError> {
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        self.need_intent(k, intent::WRITE, "SetContents")?;
        let n = self.need_kind(
            &p,
            NodeKind::File,
            "is a directory; only files have contents",
        )?;
        if data.len() > self.cfg.max_file_size {
            return Err(WarrenError::too_large(format!(
                "contents of {} bytes exceed the {}-byte file limit",
                data.len(),
                self.cfg.max_file_size
            )));
        }
        if let Some(g) = if_generation {
            if n.rec.meta.content_generation != g {
                return Err(WarrenError::generation_mismatch(format!(
                    "{p} is at content generation {}, not {g}",
                    n.rec.meta.content_generation
                )));
            }
        }
        let principal = &self.sessions[&sid].rec.principal;
        if self.is_own_map_file(&p) {
            self.check_map_write(principal, data)?;
        }
        self.check_reserved_write(principal, "write", &p)?;
        // The proxy that forwards a client's write may say it holds no copy for anyone
        // else (then its session, the cacher of record for its clients, is spared).
        let proxy = ctx
            .client
            .as_ref()
            .filter(|c| c.proxy_dropped_copies)
            .map(|_| ctx.session);
        if let Some(w) = self.barrier_exempting(sid, proxy, &[&p]) {
            return Ok(Reply::Wait(w));
        }
        // The planted bug of the simulation's lost-write test (docs/reliability.md,
        // "Deterministic simulation"): the write acknowledged, never applied nor stored.
        #[cfg(feature = "sim")]
        if crate::planted::drop_write() {
            return Ok(Reply::Done(self.stat_of(&p).expect("exists")));
        }
        // A planted bug (`WARREN_PLANT=drop-write`, docs/reliability.md, "Chaos"; only in
        // `fault-injection` builds): acknowledged with the next generation, not applied.
        {
            use crate::server::plant::{armed, Plant, DROP_WRITES_FROM};
            if armed(Plant::DropWrite) {
                let mut st = self.stat_of(&p).expect("exists");
                let g = st.meta.content_generation;
                if g > 0 && g % DROP_WRITES_FROM == 0 {
                    st.meta.content_generation += 1;
                    return Ok(Reply::Done(st));
                }
            }
        }
        self.replace_contents(&p, data, Some(k));
        Ok(Reply::Done(self.stat_of(&p).expect("exists")))
    }

    /// A file's new contents: the next content generation, recorded, its watchers
    /// (but `by`, the writer's handle) and its parent's told. The meta cell reads a new map.
    pub(super) fn replace_contents(&mut self, p: &str, data: &[u8], by: Option<HandleKey>) {
        let n = self.nodes.get_mut(p).expect("exists");
        n.rec.meta.content_generation += 1;
        n.rec.meta.checksum = checksum(data);
        n.contents = data.to_vec();
        let rec = n.rec.clone();
        self.out.mutations.push(Mutation::PutNode(rec));
        self.out.mutations.push(Mutation::PutContents {
            path: p.to_string(),
            data: data.to_vec(),
        });
        self.notify_handles(
            p,
            mask::CONTENTS_MODIFIED,
            EventKind::ContentsModified,
            "",
            ChildChange::None,
            by,
        );
        self.child_changed(p, ChildChange::Modified);
        self.own_map_written(p);
    }

    pub fn set_acl(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        acl: &AclNames,
        now: Instant,
    ) -> Result<Reply<StatView>, WarrenError> {
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        self.need_intent(k, intent::CHANGE_ACL, "SetAcl")?;
        check_acl_names(acl)?;
        let principal = &self.sessions[&sid].rec.principal;
        if self.is_own_map_file(&p) {
            self.check_map_acl(principal)?;
        }
        self.check_reserved_write(principal, "change the ACL of", &p)?;
        if let Some(w) = self.barrier(sid, &[&p]) {
            return Ok(Reply::Wait(w));
        }
        let n = self.nodes.get_mut(&p).expect("exists");
        n.rec.meta.acl = acl.clone();
        n.rec.meta.acl_generation += 1;
        self.out.mutations.push(Mutation::PutNode(n.rec.clone()));
        self.child_changed(&p, ChildChange::Modified);
        Ok(Reply::Done(self.stat_of(&p).expect("exists")))
    }

    /// `Delete`: only a node with no children; checks the write ACL (not on a handle a
    /// cell opened with target `ENTRY`: the user's ACL was checked at the anchor). Deleting
    /// a child anchor whose entry is in another cell returns the [`PendingUnlink`] recorded
    /// with it: the server removes the entry there next.
    pub fn delete(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        now: Instant,
    ) -> Result<Reply<Option<PendingUnlink>>, WarrenError> {
        self.clear_notes();
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        let Some(parent) = path::parent(&p).map(str::to_string) else {
            return Err(WarrenError::invalid_argument(
                "the deployment root cannot be deleted",
            ));
        };
        if self.is_own_map_file(&p) {
            return Err(self.map_delete_refused());
        }
        let principal = self.sessions[&sid].rec.principal.clone();
        self.check_reserved_write(&principal, "delete", &p)?;
        let n = &self.nodes[&p];
        if !self.handles[&k].entry {
            self.acl_allows(&principal, &n.rec.meta.acl.write, "delete", &p)?;
        }
        if !n.children.is_empty() {
            return Err(WarrenError::not_empty(format!(
                "{p} has {} children; delete them first",
                n.children.len()
            )));
        }
        self.acls_complete()?;
        let anchor = n.rec.anchor;
        if let Some(w) = self.barrier(sid, &[&p, &parent]) {
            return Ok(Reply::Wait(w));
        }
        self.remove_node(&p, Some(k));
        Ok(Reply::Done(anchor.then(|| {
            self.meta
                .pending_unlinks
                .last()
                .cloned()
                .expect("removing an anchor records its unlink")
        })))
    }
}
