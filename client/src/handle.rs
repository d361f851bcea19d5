//! Handles: what `Session::open` returns, and every call that names a node — reads (through
//! the session's cache), writes (write-through), ACLs, delete, locks and sequencers, and
//! `poison`. A handle's bytes are opaque (the cell mints and checks them, and a new master
//! recreates a handle from an earlier epoch on first use); the library only passes them
//! back. Several handles opened identically (read-only, no create) may share one server
//! handle; the last to close it closes it at the master.
//!
//! In direct mode over a partitioned deployment, a handle whose node moved to another cell
//! in a reshard is re-opened there on its first call after the move (the new cell answers
//! only to the session that opened a handle, and each cell has its own session; see
//! docs/client.md "After a reshard"): the handle's cell session and server handle are
//! replaced, and the call is sent again.

use crate::cache::{Cache, ServerHandle, Ticket};
use crate::error::Error;
use crate::options::OpenOptions;
use crate::routed::Router;
use crate::rpc::Rpc;
use crate::session::MovedHandle;
use crate::session::{lock, CallPolicy, Session};
use crate::types::{
    required_sequencer, required_stat, AclNames, DirEntry, LockMode, NodeKind, Sequencer, Stat,
};
use std::fmt;
use std::future::Future;
use std::sync::Weak;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::watch;
use warren_proto::{pb, WarrenError};
use warren_router::MAX_ATTEMPTS;

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
    /// Where it lives and how it was opened; shared with the router's table of handles
    /// (direct mode, partitioned), which re-opens it when a reshard moves its node.
    place: Arc<Place>,
    /// Direct mode over a partitioned deployment: the router, which re-opens the handle
    /// at the cell its node moved to. `None` for a plain session (one cell, or proxies,
    /// which follow a moved handle themselves).
    router: Option<Arc<Router>>,
    /// Set by [`poison`](Handle::poison).
    poisoned: watch::Sender<bool>,
}

/// A handle's node and where the handle lives: what a re-open after a reshard needs.
pub(crate) struct Place {
    path: String,
    /// How it was opened: decides what may come from the cache, and reopens a private
    /// server handle when a sequencer is set on a shared one (or when its node moved).
    options: OpenOptions,
    /// Its session and the master's handle there. The server handle is shared with
    /// identical opens until a sequencer is set; both are replaced together when the node
    /// moves to another cell (direct mode, partitioned).
    at: Mutex<At>,
    /// Held while the handle is re-opened at the cell its node moved to, so that calls
    /// racing on a moved handle (and the router's own follow) re-open it once.
    following: tokio::sync::Mutex<()>,
    /// The sequencer set on it, set again on the re-opened handle after a move.
    sequencer: Mutex<Option<pb::Sequencer>>,
}

/// A handle's session and its server handle there.
#[derive(Clone)]
struct At {
    session: Session,
    server: Arc<ServerHandle>,
}

/// A request about a handle: the handle's current token goes in before each send (it
/// changes when the handle is re-opened at the cell its node moved to).
trait OnHandle: Rpc {
    fn set_handle(&mut self, token: Vec<u8>);
}

macro_rules! on_handle {
    ($($request:ident),* $(,)?) => {$(
        impl OnHandle for pb::$request {
            fn set_handle(&mut self, token: Vec<u8>) {
                self.handle = token;
            }
        }
    )*};
}

on_handle!(
    GetContentsAndStatRequest,
    GetStatRequest,
    ReadDirRequest,
    SetContentsRequest,
    SetAclRequest,
    DeleteRequest,
    AcquireRequest,
    TryAcquireRequest,
    ReleaseRequest,
    GetSequencerRequest,
    SetSequencerRequest,
);

/// `WRONG_CELL` for a call on a handle: its node moved to another cell (a directory
/// redirect only ever answers `Open`).
fn moved_away(e: &Error) -> Option<&WarrenError> {
    e.warren()
        .filter(|w| w.code == warren_proto::ErrorCode::WrongCell && !w.directory)
}

impl Handle {
    pub(crate) fn new(
        session: Session,
        server: Arc<ServerHandle>,
        path: String,
        options: OpenOptions,
    ) -> Self {
        Handle {
            place: Arc::new(Place {
                path,
                options,
                at: Mutex::new(At { session, server }),
                following: tokio::sync::Mutex::new(()),
                sequencer: Mutex::new(None),
            }),
            router: None,
            poisoned: watch::Sender::new(false),
        }
    }

    /// The same handle, routed by `router` (direct mode over a partitioned deployment):
    /// it follows its node when a reshard moves it, on its next call or as soon as the
    /// old cell says so.
    pub(crate) fn routed_by(mut self, router: Arc<Router>) -> Self {
        router.track(&self.place);
        self.router = Some(router);
        self
    }

    /// The node's full path (`/ls/<deployment>/…`).
    pub fn path(&self) -> &str {
        &self.place.path
    }

    /// The session the handle belongs to (in direct mode over a partitioned deployment,
    /// the session at the cell that holds the node, which changes when a reshard moves it).
    pub fn session(&self) -> Session {
        lock(&self.place.at).session.clone()
    }

    fn at(&self) -> At {
        lock(&self.place.at).clone()
    }

    fn server(&self) -> Arc<ServerHandle> {
        lock(&self.place.at).server.clone()
    }

    /// Whether the handle still uses `at`, the session and server handle a read was sent
    /// through: only then may the answer be cached in that session. A handle that moved
    /// meanwhile was answered by another cell, which the old session's cell never
    /// invalidates; when it carried its session on there, the server handle stays the same
    /// and only the session changed (chaos finding 3, docs/reliability.md).
    fn still_at(&self, at: &At) -> bool {
        let now = lock(&self.place.at);
        Arc::ptr_eq(&now.server, &at.server)
            && Arc::ptr_eq(now.session.shared(), at.session.shared())
    }

    /// The master's handle bytes, for a request about this handle.
    fn token(&self) -> Vec<u8> {
        self.server().token.clone()
    }

    fn policy(&self, idempotent: bool) -> CallPolicy {
        self.session().shared().policy(idempotent)
    }

    /// The policy of a change to the node (`Shared::write_policy`).
    fn write_policy(&self) -> CallPolicy {
        self.session().shared().write_policy()
    }

    fn poison_error(&self) -> Error {
        Error::Poisoned(format!("the handle on {} was poisoned", self.place.path))
    }

    /// Whether reads of contents and listings through this handle may come from the cache:
    /// the master would check the read intent (so must we) and, once a sequencer is set,
    /// the sequencer (which we cannot).
    fn reads_from_cache(&self) -> bool {
        self.place.options.can_read() && !self.server().is_sequenced()
    }

    /// Sends one idempotent call about this handle, bounded by the default timeout (see
    /// [`call_with`](Self::call_with)).
    async fn call<Q: OnHandle>(&self, request: Q) -> Result<Q::Reply, Error> {
        self.call_with(self.policy(true), request).await
    }

    /// Sends one call about this handle with the session's retry rules; fails at once,
    /// or as soon as it happens, when the handle is poisoned. In direct mode over a
    /// partitioned deployment, a `WRONG_CELL` (the node moved in a reshard) re-opens the
    /// handle at the new owner ([`follow`](Self::follow)) and sends the call again there,
    /// at most [`MAX_ATTEMPTS`] sends in all. Re-sending is safe for every call: the cell
    /// that answered `WRONG_CELL` changed nothing.
    async fn call_with<Q: OnHandle>(
        &self,
        policy: CallPolicy,
        mut request: Q,
    ) -> Result<Q::Reply, Error> {
        let mut poisoned = self.poisoned.subscribe();
        if *poisoned.borrow_and_update() {
            return Err(self.poison_error());
        }
        let mut sent = 0;
        loop {
            sent += 1;
            let at = self.at();
            request.set_handle(at.server.token.clone());
            let call = at.session.shared().call(policy, request.clone());
            let result = tokio::select! {
                r = call => r,
                _ = poisoned.wait_for(|p| *p) => return Err(self.poison_error()),
            };
            let e = match result {
                Err(e) if self.router.is_some() && sent < MAX_ATTEMPTS => e,
                other => return other,
            };
            let Some(moved) = moved_away(&e).cloned() else {
                return Err(e);
            };
            tokio::select! {
                r = self.follow(&moved, &at.server) => {
                    if let Err(failed) = r {
                        tracing::debug!(path = %self.place.path, %failed, "could not re-open a moved handle");
                        return Err(e);
                    }
                }
                _ = poisoned.wait_for(|p| *p) => return Err(self.poison_error()),
            }
        }
    }

    /// The handle's node moved to another cell (`moved`: the old cell's `WRONG_CELL`
    /// answer to a call made with server handle `stale`): [`Place::follow`].
    async fn follow(&self, moved: &WarrenError, stale: &Arc<ServerHandle>) -> Result<(), Error> {
        let Some(router) = &self.router else {
            return Err(Error::Warren(moved.clone()));
        };
        self.place
            .follow(router, stale, moved.map_epoch, None)
            .await
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
        let at = self.at();
        let shared = at.session.shared();
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
        // Cached in the session that fetched it: not if the handle moved to another cell
        // session meanwhile (the old cell no longer invalidates the node).
        if cacheable && self.still_at(&at) {
            shared.with_cache(|c| fill(c, ticket, &value));
        }
        Ok(value)
    }

    /// Reads the whole file and its metadata.
    pub async fn contents(&self) -> Result<(Vec<u8>, Stat), Error> {
        let instance = self.server().instance;
        let path = self.place.path.as_str();
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
        let path = self.place.path.as_str();
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
        let at = self.at();
        let shared = at.session.shared();
        if *self.poisoned.borrow() {
            return Err(self.poison_error());
        }
        shared.with_cache(Cache::note_miss);
        let ticket = shared.ticket();
        let (entries, stat, cacheable) = self.fetch_dir().await?;
        let moved = !self.still_at(&at);
        if let Some(stat) = stat.filter(|s| cacheable && !moved && s.kind == NodeKind::Directory) {
            let names = entries.iter().map(|e| e.name.clone()).collect();
            shared.with_cache(|c| c.fill_children(ticket, &self.place.path, names, &stat));
        }
        Ok(entries)
    }

    /// The names of a directory's children, sorted. Answered from the cache when it holds
    /// the listing (it is invalidated whenever a child is added or removed).
    pub async fn child_names(&self) -> Result<Vec<String>, Error> {
        let instance = self.server().instance;
        let path = self.place.path.as_str();
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
        // Never re-sent once it may have been sent: a compare-and-swap sent twice fails the
        // second time, and a plain write sent twice can take effect twice, the second time
        // after, and over, another client's later write (a register that is not
        // linearizable; the chaos and simulation history checkers caught it,
        // docs/reliability.md). A write that may have taken effect fails OUTCOME_UNKNOWN.
        let policy = self.write_policy();
        let request = pb::SetContentsRequest {
            ctx: None,
            handle: self.token(),
            contents: data,
            if_content_generation: if_generation,
        };
        let result = self.call_with(policy, request).await;
        // Whatever the outcome, the write may have happened: drop our copy.
        self.session()
            .shared()
            .with_cache(|c| c.wrote(&self.place.path));
        required_stat(result?.stat, "SetContents")
    }

    /// Replaces the file's contents; returns the new metadata. Sent once: if its reply is
    /// lost it fails `OUTCOME_UNKNOWN` and may or may not have taken effect (docs/client.md,
    /// "Which calls the library sends again").
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
        // Not re-sent once it may have been sent, as a write: sent twice it could undo
        // another client's later change.
        let result = self.call_with(self.write_policy(), request).await;
        self.session()
            .shared()
            .with_cache(|c| c.wrote(&self.place.path));
        required_stat(result?.stat, "SetAcl")
    }

    /// Deletes the node (a directory only when empty).
    pub async fn delete(&self) -> Result<(), Error> {
        let request = pb::DeleteRequest {
            handle: self.token(),
            ..Default::default()
        };
        let result = self.call_with(self.write_policy(), request).await;
        self.session().shared().with_cache(|c| {
            c.wrote(&self.place.path);
            if let Some((parent, _)) = self.place.path.rsplit_once('/') {
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
        let rpc_timeout = self.session().shared().rpc_timeout();
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
        wire.path = self.session().full_path(&sequencer.path)?;
        self.make_private().await?;
        self.server().mark_sequenced();
        *lock(&self.place.sequencer) = Some(wire.clone());
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
        let At { session, server } = self.at();
        let shared = session.shared();
        shared.with_cache(|c| c.withdraw_handle(&server));
        if server.users() <= 1 {
            return Ok(());
        }
        let request = self
            .place
            .options
            .to_request(self.place.path.clone(), pb::SessionContext::default())?;
        let reply = shared.call(self.policy(true), request).await?;
        if reply.handle.is_empty() {
            return Err(Error::Protocol("Open reply has no handle".into()));
        }
        let stat = required_stat(reply.stat, "Open")?;
        let private = ServerHandle::new(reply.handle, stat.instance);
        shared.register_handle(&private);
        let old = std::mem::replace(&mut lock(&self.place.at).server, private);
        if shared.with_cache(|c| c.release_handle(&old)) {
            // The other users closed meanwhile.
            close_at_master(&session, &old.token, &self.place.path).await;
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
        if let Some(router) = &self.router {
            router.untrack(&self.place);
        }
        let At { session, server } = self.at();
        if session.shared().with_cache(|c| c.release_handle(&server)) {
            close_at_master(&session, &server.token, &self.place.path).await;
        }
    }
}

impl Place {
    /// The server handle in use.
    pub(crate) fn server(&self) -> Arc<ServerHandle> {
        lock(&self.at).server.clone()
    }

    /// The node moved to another cell (the old cell answered a call made with server
    /// handle `stale` with `WRONG_CELL` of map epoch `min_epoch`, or told the session that
    /// the node went to cell `owner`): re-opens the handle there with the same options
    /// (intent, events, lock-delay; no create) through the partitioned session's session
    /// at that cell, sets its sequencer again if it had one, and swaps it in. A lock held
    /// through the old server handle is not carried over (docs/client.md "After a
    /// reshard"); the old server handle is left to the old cell session's end (its cell
    /// no longer holds it, and the new one answers only to the session that opened it).
    pub(crate) async fn follow(
        self: &Arc<Self>,
        router: &Router,
        stale: &Arc<ServerHandle>,
        min_epoch: u64,
        owner: Option<&str>,
    ) -> Result<(), Error> {
        let _following = self.following.lock().await;
        if !Arc::ptr_eq(&self.server(), stale) {
            return Ok(()); // followed meanwhile
        }
        if self.carry_on(router, stale, min_epoch, owner).await {
            return Ok(());
        }
        let (session, reply) = router
            .reopen(&self.path, &self.options, min_epoch, owner)
            .await?;
        if reply.handle.is_empty() {
            return Err(Error::Protocol("Open reply has no handle".into()));
        }
        let stat = required_stat(reply.stat, "Open")?;
        let server = ServerHandle::new(reply.handle, stat.instance);
        session.shared().register_handle(&server);
        let sequencer = lock(&self.sequencer).clone();
        if let Some(wire) = sequencer {
            server.mark_sequenced();
            let request = pb::SetSequencerRequest {
                ctx: None,
                handle: server.token.clone(),
                sequencer: Some(wire),
            };
            let shared = session.shared();
            shared.call(shared.policy(true), request).await?;
        }
        let new_token = server.token.clone();
        let old = std::mem::replace(&mut *lock(&self.at), At { session, server });
        router.retrack(self, &old.server.token, new_token);
        // No `Close` for the old one: its cell refuses every call on it now.
        old.session
            .shared()
            .with_cache(|c| c.release_handle(&old.server));
        tracing::debug!(path = %self.path, "re-opened a handle whose node moved");
        Ok(())
    }
}

impl Place {
    /// The first way to follow a moved node: the cell it moved to took this handle's
    /// session on with it, so the same session carries on there and the same handle works
    /// (its lock, sequencer and events with it). False if that cell does not know the
    /// session or the handle (then the node is opened again instead).
    async fn carry_on(
        &self,
        router: &Router,
        stale: &Arc<ServerHandle>,
        min_epoch: u64,
        owner: Option<&str>,
    ) -> bool {
        let from = lock(&self.at).session.clone();
        // The map names the cell of the node's entry; a directory's handle lives with its
        // child anchor, whose cell the entry's refusal names: one more try there. A
        // refusal by a map newer than any word so far names the owner to try next; one by
        // an older map comes from a cell that has not caught up yet (the source hands a
        // slot off before the map reaches the target), which is asked again shortly.
        // Giving up there would re-open the handle, and a lock the old handle holds at the
        // new cell would stay held by nobody's handle (chaos finding 6,
        // docs/reliability.md).
        let mut owner = owner.map(str::to_string);
        let mut newest = min_epoch;
        let mut carried = None;
        let mut hops = 0;
        let deadline = tokio::time::Instant::now() + router.patience();
        while hops < 4 {
            let session = match router
                .carry_on(
                    &self.path,
                    self.options.anchor(),
                    min_epoch,
                    owner.as_deref(),
                    &from,
                )
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(path = %self.path, %e, "the session did not carry on at the new cell");
                    return false;
                }
            };
            let shared = session.shared();
            let probe = pb::GetStatRequest {
                ctx: None,
                handle: stale.token.clone(),
            };
            match shared.call(shared.policy(true), probe).await {
                Ok(_) => {
                    carried = Some(session);
                    break;
                }
                Err(e) => {
                    tracing::debug!(path = %self.path, %e, "the new cell does not serve the handle");
                    match e.warren().and_then(crate::path::wrong_cell) {
                        Some(w)
                            if (w.directory || w.map_epoch > newest)
                                && owner.as_deref() != Some(w.owner.as_str()) =>
                        {
                            newest = newest.max(w.map_epoch);
                            owner = Some(w.owner.clone());
                            hops += 1;
                        }
                        Some(w)
                            if !w.directory
                                && w.map_epoch < newest
                                && tokio::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        _ => return false,
                    }
                }
            }
        }
        let Some(carried) = carried else {
            return false;
        };
        let shared = carried.shared();
        shared.register_handle(stale);
        let old = std::mem::replace(
            &mut *lock(&self.at),
            At {
                session: carried,
                server: stale.clone(),
            },
        );
        old.session
            .shared()
            .with_cache(|c| c.release_handle(&old.server));
        tracing::debug!(path = %self.path, "a moved handle carries on at its new cell");
        true
    }
}

/// Starts [`follow_moved`] for `router`'s notices. A plain function, not an `async` one:
/// the session's `connect` calls it, and the follower's future (which may connect cell
/// sessions) must not be part of `connect`'s own future.
pub(crate) fn spawn_follower(
    router: Weak<Router>,
    notices: mpsc::UnboundedReceiver<MovedHandle>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(follow_moved(router, notices))
}

/// Re-opens the tracked handles on a node as soon as its old cell says a reshard moved it
/// (a `SLOT_MOVED` notice from a cell session), each in a task of its own. A handle that
/// cannot be re-opened now is left to its next call, which follows it then.
async fn follow_moved(router: Weak<Router>, mut notices: mpsc::UnboundedReceiver<MovedHandle>) {
    while let Some(moved) = notices.recv().await {
        let Some(r) = router.upgrade() else {
            break;
        };
        for place in r.tracked_on(&moved.handle) {
            let (r, moved) = (r.clone(), moved.clone());
            tokio::spawn(async move {
                let stale = place.server();
                if stale.token != moved.handle {
                    return; // followed meanwhile
                }
                if let Err(e) = place.follow(&r, &stale, 0, Some(&moved.cell)).await {
                    tracing::debug!(path = %moved.path, %e, "a moved handle was not re-opened now; its next call follows it");
                }
            });
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
            .field("path", &self.place.path)
            .finish_non_exhaustive()
    }
}
