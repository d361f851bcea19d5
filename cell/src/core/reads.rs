//! Reads on a handle: `GetContentsAndStat`, `GetStat` and `ReadDir`, each registering the
//! session as a cacher of what it read.

use super::{intent, Ctx, Master, StatView};
use crate::store::NodeKind;
use tokio::time::Instant;
use warren_proto::WarrenError;

#[derive(Clone, Debug)]
pub struct DirEntryView {
    pub name: String,
    pub stat: StatView,
    /// A directory whose child anchor is in another cell: that cell (its `Stat.cell`).
    pub anchor_cell: Option<String>,
}

impl Master {
    pub fn get_contents(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        now: Instant,
    ) -> Result<(Vec<u8>, StatView, bool), WarrenError> {
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        self.need_intent(k, intent::READ, "reading contents")?;
        self.check_read_acl(sid, &p)?;
        let n = self.need_kind(&p, NodeKind::File, "is a directory; use ReadDir")?;
        let data = n.contents.clone();
        let cacheable = self.register_cacher(sid, &p);
        Ok((data, self.stat_of(&p).expect("exists"), cacheable))
    }

    pub fn get_stat(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        now: Instant,
    ) -> Result<(StatView, bool), WarrenError> {
        let (sid, _, p) = self.on_handle(ctx, token, now)?;
        let cacheable = self.register_cacher(sid, &p);
        Ok((self.stat_of(&p).expect("exists"), cacheable))
    }

    /// `ReadDir`: the names (cacheable, invalidated when children come and go) and each
    /// child's stat as of now (informational; child stats are cached under their own paths).
    pub fn read_dir(
        &mut self,
        ctx: &Ctx,
        token: &[u8],
        now: Instant,
    ) -> Result<(Vec<DirEntryView>, StatView, bool), WarrenError> {
        let (sid, k, p) = self.on_handle(ctx, token, now)?;
        self.need_intent(k, intent::READ, "listing a directory")?;
        self.check_read_acl(sid, &p)?;
        let n = self.need_kind(&p, NodeKind::Directory, "is a file, not a directory")?;
        let entries = n
            .children
            .iter()
            .filter_map(|c| {
                let cp = format!("{p}/{c}");
                self.stat_of(&cp).map(|stat| DirEntryView {
                    name: c.clone(),
                    anchor_cell: if stat.meta.kind == NodeKind::Directory {
                        self.owner_elsewhere(&cp, true).ok().flatten()
                    } else {
                        None
                    },
                    stat,
                })
            })
            .collect();
        let cacheable = self.register_cacher(sid, &p);
        Ok((entries, self.stat_of(&p).expect("exists"), cacheable))
    }
}
