//! Handles: what `Session::open` returns, and every call that names a node — reads (through
//! the session's cache), writes (write-through), ACLs, delete, locks and sequencers, and
//! `poison`. A handle's bytes are opaque (the cell mints and checks them, and a new master
//! recreates a handle from an earlier epoch on first use); the library only passes them
//! back. Several handles opened identically (read-only, no create) may share one server
//! handle; the last to close it closes it at the master.

use crate::cache::{Cache, ServerHandle, Ticket};
use crate::error::Error;
use crate::options::OpenOptions;
use crate::rpc::Rpc;
use crate::session::{lock, CallPolicy, Session};
use crate::types::{
    required_sequencer, required_stat, AclNames, DirEntry, LockMode, NodeKind, Sequencer, Stat,
};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
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

/// An open node. Calls on it wait while the session is in jeopardy, fail with
/// `SESSION_EXPIRED` once its session has ended, and with `HANDLE_INVALID` once the node is
/// gone. Holds its session alive; call [`close`](Handle::close) when done (dropping it
/// leaves it open until the session ends, which keeps an ephemeral node alive).
///
/// Reads ([`contents`](Handle::contents), [`stat`](Handle::stat),
/// [`child_names`](Handle::child_names)) are answered from the session's cache when it
/// holds the node; see the crate docs for the consistency guarantee.
pub struct Handle {
    session: Session,
    path: String,
    /// How it was opened: decides what may come from the cache, and reopens a private
    /// server handle when a sequencer is set on a shared one.
    options: OpenOptions,
    /// The master's handle; shared with identical opens until a sequencer is set.
    server: Mutex<Arc<ServerHandle>>,
    /// Set by [`poison`](Handle::poison).
    poisoned: watch::Sender<bool>,
}

impl Handle {
    pub(crate) fn new(
        session: Session,
        server: Arc<ServerHandle>,
        path: String,
        options: OpenOptions,
    ) -> Self {
        Handle {
            session,
            path,
            options,
            server: Mutex::new(server),
            poisoned: watch::Sender::new(false),
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

    fn server(&self) -> Arc<ServerHandle> {
        lock(&self.server).clone()
    }

    /// The master's handle bytes, for a request about this handle.
    fn token(&self) -> Vec<u8> {
        self.server().token.clone()
    }

    fn policy(&self, idempotent: bool) -> CallPolicy {
        self.session.shared().policy(idempotent)
    }

    fn poison_error(&self) -> Error {
        Error::Poisoned(format!("the handle on {} was poisoned", self.path))
    }

    /// Whether reads of contents and listings through this handle may come from the cache:
    /// the master would check the read intent (so must we) and, once a sequencer is set,
    /// the sequencer (which we cannot).
    fn reads_from_cache(&self) -> bool {
        self.options.can_read() && !self.server().is_sequenced()
    }

    /// Sends one idempotent call about this handle, bounded by the default timeout (see
    /// [`call_with`](Self::call_with)).
    async fn call<Q: Rpc>(&self, request: Q) -> Result<Q::Reply, Error> {
        self.call_with(self.policy(true), request).await
    }

    /// Sends one call about this handle with the session's retry rules; fails at once,
    /// or as soon as it happens, when the handle is poisoned.
    async fn call_with<Q: Rpc>(&self, policy: CallPolicy, request: Q) -> Result<Q::Reply, Error> {
        let mut poisoned = self.poisoned.subscribe();
        if *poisoned.borrow_and_update() {
            return Err(self.poison_error());
        }
        let call = self.session.shared().call(policy, request);
        tokio::select! {
            r = call => r,
            _ = poisoned.wait_for(|p| *p) => Err(self.poison_error()),
        }
    }

    /// Reads through the cache; fails when poisoned. `lookup` answers from the cache when
    /// `use_cache` allows; otherwise `fetch` asks the master and `fill` caches its
    /// (cacheable) answer.
    async fn read<T, L, Fe, Fut, Fi>(
        &self,
        use_cache: bool,
        lookup: L,
        fetch: Fe,
        fill: Fi,
    ) -> Result<T, Error>
    where
        L: FnOnce(&mut Cache) -> Option<T>,
        Fe: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, bool), Error>>,
        Fi: FnOnce(&mut Cache, Ticket, &T),
    {
        if *self.poisoned.borrow() {
            return Err(self.poison_error());
        }
        let shared = self.session.shared();
        if use_cache {
            shared.admit().await?;
            if let Some(hit) = shared.cached(lookup).flatten() {
                return Ok(hit);
            }
        } else {
            shared.with_cache(Cache::note_miss);
        }
        let ticket = shared.ticket();
        let (value, cacheable) = fetch().await?;
        if cacheable {
            shared.with_cache(|c| fill(c, ticket, &value));
        }
        Ok(value)
    }

    /// Reads the whole file and its metadata.
    pub async fn contents(&self) -> Result<(Vec<u8>, Stat), Error> {
        let instance = self.server().instance;
        let path = self.path.as_str();
        self.read(
            self.reads_from_cache(),
            |c| c.contents(path, instance),
            || async {
                let request = pb::GetContentsAndStatRequest {
                    handle: self.token(),
                    ..Default::default()
                };
                let reply = self.call(request).await?;
                let stat = required_stat(reply.stat, "GetContentsAndStat")?;
                Ok(((reply.contents, stat), reply.cacheable))
            },
            |c, ticket, (data, stat)| c.fill_contents(ticket, path, data, stat),
        )
        .await
    }

    /// Reads the node's metadata. From the cache, `lock_generation` may lag behind the
    /// master's (lock changes do not invalidate caches); ask about locks with
    /// [`get_sequencer`](Handle::get_sequencer) or
    /// [`Session::check_sequencer`](crate::Session::check_sequencer).
    pub async fn stat(&self) -> Result<Stat, Error> {
        let instance = self.server().instance;
        let path = self.path.as_str();
        self.read(
            !self.server().is_sequenced(),
            |c| c.stat(path, instance),
            || async {
                let request = pb::GetStatRequest {
                    handle: self.token(),
                    ..Default::default()
                };
                let reply = self.call(request).await?;
                Ok((required_stat(reply.stat, "GetStat")?, reply.cacheable))
            },
            |c, ticket, stat| c.fill_stat(ticket, path, stat),
        )
        .await
    }

    async fn fetch_dir(&self) -> Result<(Vec<DirEntry>, Option<Stat>, bool), Error> {
        let request = pb::ReadDirRequest {
            handle: self.token(),
            ..Default::default()
        };
        let reply = self.call(request).await?;
        let entries = reply
            .entries
            .into_iter()
            .map(DirEntry::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let stat = reply.stat.map(Stat::try_from).transpose()?;
        Ok((entries, stat, reply.cacheable))
    }

    /// Lists a directory's children with their current metadata. Always asks the master
    /// (children's metadata is not part of the directory's cache entry); the names are
    /// cached for [`child_names`](Handle::child_names).
    pub async fn read_dir(&self) -> Result<Vec<DirEntry>, Error> {
        let shared = self.session.shared();
        if *self.poisoned.borrow() {
            return Err(self.poison_error());
        }
        shared.with_cache(Cache::note_miss);
        let ticket = shared.ticket();
        let (entries, stat, cacheable) = self.fetch_dir().await?;
        if let Some(stat) = stat.filter(|s| cacheable && s.kind == NodeKind::Directory) {
            let names = entries.iter().map(|e| e.name.clone()).collect();
            shared.with_cache(|c| c.fill_children(ticket, &self.path, names, &stat));
        }
        Ok(entries)
    }

    /// The names of a directory's children, sorted. Answered from the cache when it holds
    /// the listing (it is invalidated whenever a child is added or removed).
    pub async fn child_names(&self) -> Result<Vec<String>, Error> {
        let instance = self.server().instance;
        let path = self.path.as_str();
        let (names, _) = self
            .read(
                self.reads_from_cache(),
                |c| c.children(path, instance).map(|names| (names, None)),
                || async {
                    let (entries, stat, cacheable) = self.fetch_dir().await?;
                    let mut names: Vec<String> = entries.into_iter().map(|e| e.name).collect();
                    names.sort();
                    Ok(((names, stat), cacheable))
                },
                |c, ticket, (names, stat): &(Vec<String>, Option<Stat>)| {
                    if let Some(stat) = stat.as_ref().filter(|s| s.kind == NodeKind::Directory) {
                        c.fill_children(ticket, path, names.clone(), stat);
                    }
                },
            )
            .await?;
        Ok(names)
    }

    async fn write(&self, data: Vec<u8>, if_generation: Option<u64>) -> Result<Stat, Error> {
        // A compare-and-swap sent twice fails the second time, so only a plain write is
        // re-sent after a transport failure.
        let policy = self.policy(if_generation.is_none());
        let request = pb::SetContentsRequest {
            ctx: None,
            handle: self.token(),
            contents: data,
            if_content_generation: if_generation,
        };
        let result = self.call_with(policy, request).await;
        // Whatever the outcome, the write may have happened: drop our copy.
        self.session.shared().with_cache(|c| c.wrote(&self.path));
        required_stat(result?.stat, "SetContents")
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
        let request = pb::SetAclRequest {
            ctx: None,
            handle: self.token(),
            acl: Some(acl.into()),
        };
        let result = self.call(request).await;
        self.session.shared().with_cache(|c| c.wrote(&self.path));
        required_stat(result?.stat, "SetAcl")
    }

    /// Deletes the node (a directory only when empty).
    pub async fn delete(&self) -> Result<(), Error> {
        let request = pb::DeleteRequest {
            handle: self.token(),
            ..Default::default()
        };
        let result = self.call_with(self.policy(false), request).await;
        self.session.shared().with_cache(|c| {
            c.wrote(&self.path);
            if let Some((parent, _)) = self.path.rsplit_once('/') {
                c.wrote(parent);
            }
        });
        result.map(|_| ())
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
        // Re-sending is harmless: the master answers a handle that already holds the lock
        // with its sequencer.
        let policy = CallPolicy {
            timeout: timeout.map(|t| t.saturating_add(rpc_timeout)),
            idempotent: true,
        };
        let request = pb::AcquireRequest {
            ctx: None,
            handle: self.token(),
            mode: pb::LockMode::from(mode) as i32,
            timeout_ms,
        };
        let reply = self.call_with(policy, request).await?;
        required_sequencer(reply.sequencer, "Acquire")
    }

    /// Acquires the node's lock in `mode` if that is possible at once; else `LOCK_HELD`.
    pub async fn try_acquire(&self, mode: LockMode) -> Result<Sequencer, Error> {
        let request = pb::TryAcquireRequest {
            ctx: None,
            handle: self.token(),
            mode: pb::LockMode::from(mode) as i32,
        };
        let reply = self.call(request).await?;
        required_sequencer(reply.sequencer, "TryAcquire")
    }

    /// Releases the lock held through this handle; says whether it was held.
    pub async fn release(&self) -> Result<bool, Error> {
        let request = pb::ReleaseRequest {
            handle: self.token(),
            ..Default::default()
        };
        let reply = self.call(request).await?;
        Ok(reply.was_held)
    }

    /// The sequencer of the lock held through this handle.
    pub async fn get_sequencer(&self) -> Result<Sequencer, Error> {
        let request = pb::GetSequencerRequest {
            handle: self.token(),
            ..Default::default()
        };
        let reply = self.call(request).await?;
        required_sequencer(reply.sequencer, "GetSequencer")
    }

    /// Ties the handle to `sequencer`: once it is stale, calls on the handle fail. If the
    /// handle shares its server handle with other opens, it first gets one of its own, so
    /// the sequencer binds this handle only.
    pub async fn set_sequencer(&self, sequencer: &Sequencer) -> Result<(), Error> {
        let mut wire = pb::Sequencer::from(sequencer);
        wire.path = self.session.full_path(&sequencer.path)?;
        self.make_private().await?;
        self.server().mark_sequenced();
        let request = pb::SetSequencerRequest {
            ctx: None,
            handle: self.token(),
            sequencer: Some(wire),
        };
        self.call(request).await?;
        Ok(())
    }

    /// Makes sure no other open shares this handle's server handle, now or later.
    async fn make_private(&self) -> Result<(), Error> {
        let shared = self.session.shared();
        let server = self.server();
        shared.with_cache(|c| c.withdraw_handle(&server));
        if server.users() <= 1 {
            return Ok(());
        }
        let request = self
            .options
            .to_request(self.path.clone(), pb::SessionContext::default())?;
        let reply = self.call(request).await?;
        if reply.handle.is_empty() {
            return Err(Error::Protocol("Open reply has no handle".into()));
        }
        let stat = required_stat(reply.stat, "Open")?;
        let private = ServerHandle::new(reply.handle, stat.instance);
        shared.register_handle(&private);
        let old = std::mem::replace(&mut *lock(&self.server), private);
        if shared.with_cache(|c| c.release_handle(&old)) {
            // The other users closed meanwhile.
            close_at_master(&self.session, &old.token, &self.path).await;
        }
        Ok(())
    }

    /// Poisons the handle (Chubby's `Poison`): its calls in flight fail at once, and every
    /// later call fails, with [`Error::Poisoned`], without closing it. Use it to cancel
    /// calls another task is waiting on (an `acquire`, say). [`close`](Handle::close)
    /// still works.
    pub fn poison(&self) {
        self.poisoned.send_replace(true);
    }

    /// Closes the handle. Never fails: it is re-sent through redirects and fail-overs (a new
    /// master refuses it until recovery completes), waits out a jeopardy, and once the
    /// session has ended there is nothing left to close.
    pub async fn close(self) {
        let server = self.server();
        if self
            .session
            .shared()
            .with_cache(|c| c.release_handle(&server))
        {
            close_at_master(&self.session, &server.token, &self.path).await;
        }
    }
}

/// Sends `Close` for `token`, with the session's retry rules; failures only mean the
/// session has ended (which closes everything).
async fn close_at_master(session: &Session, token: &[u8], path: &str) {
    let shared = session.shared();
    let request = pb::CloseRequest {
        ctx: None,
        handle: token.to_vec(),
    };
    let result = shared.call(shared.policy(true), request).await;
    if let Err(e) = result {
        tracing::debug!(%path, %e, "Close not delivered; the session's end cleans up");
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
