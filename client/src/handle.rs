//! Handles: what `Session::open` returns, and every call that names a node — reads, writes,
//! ACLs, delete, locks and sequencers. A handle's bytes are opaque (the cell mints and checks
//! them); the library only passes them back.

use crate::error::Error;
use crate::session::Session;
use crate::types::{
    required_sequencer, required_stat, AclNames, DirEntry, LockMode, Sequencer, Stat,
};
use std::fmt;
use std::time::Duration;
use warren_proto::pb;

/// What `Open` said besides the handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenInfo {
    /// The node's metadata at open.
    pub stat: Stat,
    /// The contents, when [`OpenOptions::read_contents`](crate::OpenOptions::read_contents)
    /// was asked for.
    pub contents: Option<Vec<u8>>,
    /// Whether the node may be cached (it is not while invalidations are outstanding).
    pub cacheable: bool,
    /// Whether this open created the node.
    pub created: bool,
}

/// An open node. Calls on it fail with `SESSION_EXPIRED` once its session has ended, and
/// with `HANDLE_INVALID` once the node is gone. Holds its session alive; call
/// [`close`](Handle::close) when done (dropping it leaves it open until the session ends,
/// which keeps an ephemeral node alive).
pub struct Handle {
    session: Session,
    token: Vec<u8>,
    path: String,
}

impl Handle {
    pub(crate) fn new(session: Session, token: Vec<u8>, path: String) -> Self {
        Handle {
            session,
            token,
            path,
        }
    }

    /// The node's full path (`/ls/<deployment>/…`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The session the handle belongs to.
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.session.shared().rpc_timeout())
    }

    /// Reads the whole file and its metadata.
    pub async fn contents(&self) -> Result<(Vec<u8>, Stat), Error> {
        let reply = self
            .session
            .shared()
            .call(self.timeout(), |mut c, ctx| {
                let request = pb::GetContentsAndStatRequest {
                    ctx: Some(ctx),
                    handle: self.token.clone(),
                };
                async move { c.get_contents_and_stat(request).await }
            })
            .await?;
        let stat = required_stat(reply.stat, "GetContentsAndStat")?;
        Ok((reply.contents, stat))
    }

    /// Reads the node's metadata.
    pub async fn stat(&self) -> Result<Stat, Error> {
        let reply = self
            .session
            .shared()
            .call(self.timeout(), |mut c, ctx| {
                let request = pb::GetStatRequest {
                    ctx: Some(ctx),
                    handle: self.token.clone(),
                };
                async move { c.get_stat(request).await }
            })
            .await?;
        required_stat(reply.stat, "GetStat")
    }

    /// Lists a directory's children with their metadata.
    pub async fn read_dir(&self) -> Result<Vec<DirEntry>, Error> {
        let reply = self
            .session
            .shared()
            .call(self.timeout(), |mut c, ctx| {
                let request = pb::ReadDirRequest {
                    ctx: Some(ctx),
                    handle: self.token.clone(),
                };
                async move { c.read_dir(request).await }
            })
            .await?;
        reply.entries.into_iter().map(DirEntry::try_from).collect()
    }

    async fn write(&self, data: Vec<u8>, if_generation: Option<u64>) -> Result<Stat, Error> {
        let reply = self
            .session
            .shared()
            .call(self.timeout(), |mut c, ctx| {
                let request = pb::SetContentsRequest {
                    ctx: Some(ctx),
                    handle: self.token.clone(),
                    contents: data.clone(),
                    if_content_generation: if_generation,
                };
                async move { c.set_contents(request).await }
            })
            .await?;
        required_stat(reply.stat, "SetContents")
    }

    /// Replaces the file's contents; returns the new metadata.
    pub async fn set_contents(&self, data: impl Into<Vec<u8>>) -> Result<Stat, Error> {
        self.write(data.into(), None).await
    }

    /// Replaces the file's contents only if its content generation is still `generation`
    /// (else `GENERATION_MISMATCH`); returns the new metadata.
    pub async fn set_contents_if(
        &self,
        data: impl Into<Vec<u8>>,
        generation: u64,
    ) -> Result<Stat, Error> {
        self.write(data.into(), Some(generation)).await
    }

    /// Replaces the node's ACL names; returns the new metadata.
    pub async fn set_acl(&self, acl: AclNames) -> Result<Stat, Error> {
        let acl = pb::AclNames::from(acl);
        let reply = self
            .session
            .shared()
            .call(self.timeout(), |mut c, ctx| {
                let request = pb::SetAclRequest {
                    ctx: Some(ctx),
                    handle: self.token.clone(),
                    acl: Some(acl.clone()),
                };
                async move { c.set_acl(request).await }
            })
            .await?;
        required_stat(reply.stat, "SetAcl")
    }

    /// Deletes the node (a directory only when empty).
    pub async fn delete(&self) -> Result<(), Error> {
        self.session
            .shared()
            .call(self.timeout(), |mut c, ctx| {
                let request = pb::DeleteRequest {
                    ctx: Some(ctx),
                    handle: self.token.clone(),
                };
                async move { c.delete(request).await }
            })
            .await?;
        Ok(())
    }

    /// Acquires the node's lock in `mode`, waiting at most `timeout` (then `LOCK_HELD`), or
    /// as long as the session lives when `timeout` is `None`. Needs write intent.
    pub async fn acquire(
        &self,
        mode: LockMode,
        timeout: Option<Duration>,
    ) -> Result<Sequencer, Error> {
        let rpc_timeout = self.session.shared().rpc_timeout();
        // 0 on the wire means "wait forever", so a zero timeout becomes 1 ms.
        let timeout_ms = timeout.map_or(0, |t| {
            u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        let deadline = timeout.map(|t| t.saturating_add(rpc_timeout));
        let reply = self
            .session
            .shared()
            .call(deadline, |mut c, ctx| {
                let request = pb::AcquireRequest {
                    ctx: Some(ctx),
                    handle: self.token.clone(),
                    mode: pb::LockMode::from(mode) as i32,
                    timeout_ms,
                };
                async move { c.acquire(request).await }
            })
            .await?;
        required_sequencer(reply.sequencer, "Acquire")
    }

    /// Acquires the node's lock in `mode` if that is possible at once; else `LOCK_HELD`.
    pub async fn try_acquire(&self, mode: LockMode) -> Result<Sequencer, Error> {
        let reply = self
            .session
            .shared()
            .call(self.timeout(), |mut c, ctx| {
                let request = pb::TryAcquireRequest {
                    ctx: Some(ctx),
                    handle: self.token.clone(),
                    mode: pb::LockMode::from(mode) as i32,
                };
                async move { c.try_acquire(request).await }
            })
            .await?;
        required_sequencer(reply.sequencer, "TryAcquire")
    }

    /// Releases the lock held through this handle; says whether it was held.
    pub async fn release(&self) -> Result<bool, Error> {
        let reply = self
            .session
            .shared()
            .call(self.timeout(), |mut c, ctx| {
                let request = pb::ReleaseRequest {
                    ctx: Some(ctx),
                    handle: self.token.clone(),
                };
                async move { c.release(request).await }
            })
            .await?;
        Ok(reply.was_held)
    }

    /// The sequencer of the lock held through this handle.
    pub async fn get_sequencer(&self) -> Result<Sequencer, Error> {
        let reply = self
            .session
            .shared()
            .call(self.timeout(), |mut c, ctx| {
                let request = pb::GetSequencerRequest {
                    ctx: Some(ctx),
                    handle: self.token.clone(),
                };
                async move { c.get_sequencer(request).await }
            })
            .await?;
        required_sequencer(reply.sequencer, "GetSequencer")
    }

    /// Ties the handle to `sequencer`: once it is stale, calls on the handle fail.
    pub async fn set_sequencer(&self, sequencer: &Sequencer) -> Result<(), Error> {
        let mut wire = pb::Sequencer::from(sequencer);
        wire.path = self.session.full_path(&sequencer.path)?;
        self.session
            .shared()
            .call(self.timeout(), |mut c, ctx| {
                let request = pb::SetSequencerRequest {
                    ctx: Some(ctx),
                    handle: self.token.clone(),
                    sequencer: Some(wire.clone()),
                };
                async move { c.set_sequencer(request).await }
            })
            .await?;
        Ok(())
    }

    /// Closes the handle. Never fails: once the session has ended there is nothing to close,
    /// and a `Close` the master does not receive is cleaned up with the session.
    pub async fn close(self) {
        let result = self
            .session
            .shared()
            .call(self.timeout(), |mut c, ctx| {
                let request = pb::CloseRequest {
                    ctx: Some(ctx),
                    handle: self.token.clone(),
                };
                async move { c.close(request).await }
            })
            .await;
        if let Err(e) = result {
            tracing::debug!(path = %self.path, %e, "Close failed; the session's end cleans up");
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
