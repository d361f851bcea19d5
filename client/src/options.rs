//! Options: [`ClientOptions`] for a session (where to connect, as whom, timeouts, lease
//! arithmetic) and [`OpenOptions`], the builder for `Session::open` (intent, events,
//! lock-delay, create, read-at-open).

use crate::cache::OpenKey;
use crate::error::Error;
use crate::types::{AclNames, EventMask, NodeKind};
use std::time::Duration;
use warren_proto::pb;

/// Builder setters that each store their argument in the field of the same name.
macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident($arg:ident: $ty:ty);)+) => {$(
        $(#[$doc])*
        pub fn $field(mut self, $arg: $ty) -> Self {
            self.$field = $arg;
            self
        }
    )+};
}

/// How a [`Session`](crate::Session) connects and keeps itself alive.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Servers to try, in order, as `HOST:PORT` (or `http://HOST:PORT`). Any replica of the
    /// cell will do: `Locate` says which one is master. With
    /// [`via_proxies`](Self::via_proxies), the proxies to use instead (in no particular
    /// order: each session orders them itself).
    pub endpoints: Vec<String>,
    /// Whether [`endpoints`](Self::endpoints) are proxies (`warren proxy`) rather than the
    /// replicas of a cell. Off by default. A proxy answers `Locate` as the master of what it
    /// serves, so the difference is only in the order endpoints are tried
    /// (docs/proxy.md, "Proxy failover"):
    ///
    /// - before the session exists, in a consistent-hash ring order keyed by a value random
    ///   per connect, which spreads fresh clients over the proxies;
    /// - once it exists, in the order [`proxy_order`](crate::proxy_order)`(endpoints, id)`
    ///   (see [`Session::search_order`](crate::Session::search_order)), every search
    ///   starting from the first (the session's preferred proxy), so the session always goes
    ///   to the earliest live proxy in its order. A new proxy claims the session at the
    ///   cells and answers with a higher epoch and a fail-over event.
    pub via_proxies: bool,
    /// The principal the session acts for, checked against ACL files; empty means
    /// anonymous. Asserted by the session: with TLS the servers also authenticate the
    /// certificate's principal, and authorization on it is being built (docs/security.md).
    pub principal: String,
    /// Timeout of every call except `KeepAlive` (lease + 5 s) and `Acquire` (its own
    /// timeout + this, or none when it waits as long as the session lives).
    pub rpc_timeout: Duration,
    /// ρ, the clock-rate drift allowed between client and master: the local lease is the
    /// granted lease divided by (1 + ρ), so it ends no later than the master's.
    pub clock_drift: f64,
    /// How long after its local lease ends the library keeps trying to reach the master
    /// before declaring the session expired.
    pub grace_period: Duration,
    /// Whether to cache file contents, metadata, directory listings, absence and open
    /// handles (docs/design.md §6). On by default; turning it off sends every read to the master.
    pub cache: bool,
    /// Direct mode over a partitioned deployment: [`endpoints`](Self::endpoints) are the
    /// replicas of the **meta cell**; the session watches the partition map there and
    /// routes each call to the cell that owns its path itself, with a session per cell it
    /// uses (docs/partitioning.md). Off by default. See [`ClientOptions::meta`].
    pub partitioned: bool,
    /// The mutual-TLS identity this session dials with (docs/security.md): the CA that
    /// signs the servers' certificates, and this client's certificate and key, loaded with
    /// [`Tls::load`](warren_tls::Tls::load). `None` (the default): the process's installed
    /// identity ([`warren_tls::install`], as `warren ctl` does from its flags), else
    /// plaintext. Sessions of one process may use different identities. The servers
    /// authenticate the principal the certificate names (docs/security.md, "Principals").
    pub tls: Option<std::sync::Arc<warren_tls::Tls>>,
    /// In a session a partitioned session made for one cell: the map epoch its calls carry
    /// (kept current by the routing session).
    pub(crate) map_epoch: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl ClientOptions {
    /// Default [`rpc_timeout`](Self::rpc_timeout).
    pub const DEFAULT_RPC_TIMEOUT: Duration = warren_config::defaults::RPC_TIMEOUT;
    /// Default [`clock_drift`](Self::clock_drift) (docs/design.md §16: 1%).
    pub const DEFAULT_CLOCK_DRIFT: f64 = warren_config::defaults::CLOCK_DRIFT;
    /// Default [`grace_period`](Self::grace_period) (docs/design.md §16: 45 s).
    pub const DEFAULT_GRACE_PERIOD: Duration = warren_config::defaults::GRACE_PERIOD;

    /// Options for these endpoints, everything else at its default.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            principal: String::new(),
            rpc_timeout: Self::DEFAULT_RPC_TIMEOUT,
            clock_drift: Self::DEFAULT_CLOCK_DRIFT,
            grace_period: Self::DEFAULT_GRACE_PERIOD,
            cache: true,
            via_proxies: false,
            partitioned: false,
            tls: None,
            map_epoch: None,
        }
    }

    /// Options for a direct-mode session over a partitioned deployment whose meta cell's
    /// replicas are `meta` (`HOST:PORT` each): [`new`](Self::new) with
    /// [`partitioned`](Self::partitioned) on.
    pub fn meta<I, S>(meta: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut o = Self::new(meta);
        o.partitioned = true;
        o
    }

    /// Options for a session through these proxies (`HOST:PORT` each), everything else at
    /// its default: [`new`](Self::new) with [`via_proxies`](Self::via_proxies) on.
    pub fn proxies<I, S>(proxies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(proxies).via_proxies(true)
    }

    /// Sets the principal.
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = principal.into();
        self
    }

    /// Sets the TLS identity (see the [field](Self::tls)).
    pub fn tls(mut self, tls: std::sync::Arc<warren_tls::Tls>) -> Self {
        self.tls = Some(tls);
        self
    }

    setters! {
        /// Says whether the endpoints are proxies (see the [field](Self::via_proxies)).
        via_proxies(proxies: bool);
        /// Sets the timeout of ordinary calls.
        rpc_timeout(timeout: Duration);
        /// Sets ρ, the allowed clock-rate drift.
        clock_drift(rho: f64);
        /// Sets the grace period.
        grace_period(grace: Duration);
        /// Turns the cache on or off.
        cache(enabled: bool);
    }

    /// Checks the options; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), Error> {
        if self.endpoints.is_empty() || self.endpoints.iter().any(|e| e.trim().is_empty()) {
            let (field, what) = if self.via_proxies {
                ("proxies", "of a proxy")
            } else if self.partitioned {
                ("meta", "of a meta cell replica")
            } else {
                ("endpoints", "of a cell replica")
            };
            return Err(Error::InvalidArgument(format!(
                "{field}: give at least one HOST:PORT {what}, and no empty ones"
            )));
        }
        if self.via_proxies && self.partitioned {
            return Err(Error::InvalidArgument(
                "proxies and meta: give one: proxies route by the map themselves, so a session through proxies does not need the meta cell".into(),
            ));
        }
        if self.rpc_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "rpc_timeout: must be greater than zero".into(),
            ));
        }
        if !(self.clock_drift.is_finite() && (0.0..1.0).contains(&self.clock_drift)) {
            return Err(Error::InvalidArgument(format!(
                "clock_drift: {} is not a fraction in [0, 1) (the default is {})",
                self.clock_drift,
                Self::DEFAULT_CLOCK_DRIFT
            )));
        }
        Ok(())
    }
}

/// How to open a node: the builder for [`Session::open`](crate::Session::open).
///
/// ```
/// use warren_client::{EventMask, OpenOptions};
/// use std::time::Duration;
/// let opts = OpenOptions::new()
///     .read()
///     .write()
///     .events(EventMask::CONTENTS_MODIFIED)
///     .lock_delay(Duration::from_secs(10))
///     .create_file(b"hello".to_vec())
///     .ephemeral();
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    intent: u32,
    events: EventMask,
    lock_delay: Duration,
    create: Option<NodeKind>,
    initial_contents: Vec<u8>,
    ephemeral: bool,
    exclusive: bool,
    acl: Option<AclNames>,
    read_contents: bool,
    /// Open the child anchor of a directory (routed by its own slot) rather than the node.
    anchor: bool,
}

impl OpenOptions {
    /// The same open, aimed at the child anchor of the directory (docs/partitioning.md),
    /// without create: the cell that holds the entry has made the anchor already.
    /// Whether this open is of a directory's child anchor.
    pub(crate) fn anchor(&self) -> bool {
        self.anchor
    }

    pub(crate) fn at_anchor(mut self) -> Self {
        self.anchor = true;
        self.create = None;
        self.initial_contents = Vec::new();
        self.ephemeral = false;
        self.exclusive = false;
        self.acl = None;
        self
    }

    /// The same open without create (and without reading the contents): how a handle is
    /// opened again at the cell its node moved to (intent, events, lock-delay and target
    /// kept).
    pub(crate) fn reopened(mut self) -> Self {
        self.create = None;
        self.initial_contents = Vec::new();
        self.ephemeral = false;
        self.exclusive = false;
        self.acl = None;
        self.read_contents = false;
        self
    }

    /// No intent, no events, no create: enough for `stat`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Intent to read (contents, directory listings).
    pub fn read(mut self) -> Self {
        self.intent |= pb::Intent::Read as u32;
        self
    }

    /// Intent to write contents; also needed to lock and to delete.
    pub fn write(mut self) -> Self {
        self.intent |= pb::Intent::Write as u32;
        self
    }

    /// Intent to change the node's ACL names.
    pub fn change_acl(mut self) -> Self {
        self.intent |= pb::Intent::ChangeAcl as u32;
        self
    }

    /// Subscribe the handle to these events (added to any already chosen).
    pub fn events(mut self, mask: EventMask) -> Self {
        self.events |= mask;
        self
    }

    /// Lock-delay (at most 60 s): if the session dies holding the lock, the lock stays
    /// unavailable this long, so a holder that lost its session cannot race the next one.
    pub fn lock_delay(mut self, delay: Duration) -> Self {
        self.lock_delay = delay;
        self
    }

    /// Create the node as a file with these contents if it does not exist.
    pub fn create_file(mut self, contents: impl Into<Vec<u8>>) -> Self {
        self.create = Some(NodeKind::File);
        self.initial_contents = contents.into();
        self
    }

    /// Create the node as a directory if it does not exist.
    pub fn create_dir(mut self) -> Self {
        self.create = Some(NodeKind::Directory);
        self.initial_contents.clear();
        self
    }

    /// With `create_*`: the created node is ephemeral (deleted when no client has it open).
    pub fn ephemeral(mut self) -> Self {
        self.ephemeral = true;
        self
    }

    /// With `create_*`: fail with `ALREADY_EXISTS` if the node exists.
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// With `create_*`: the created node's ACL names (default: inherited from the parent).
    pub fn acl(mut self, acl: AclNames) -> Self {
        self.acl = Some(acl);
        self
    }

    /// Read-at-open: the reply carries the contents too.
    pub fn read_contents(mut self) -> Self {
        self.read_contents = true;
        self
    }

    /// Whether [`read_contents`](Self::read_contents) was asked for.
    pub fn wants_contents(&self) -> bool {
        self.read_contents
    }

    /// Whether the open may create the node.
    pub(crate) fn creates(&self) -> bool {
        self.create.is_some()
    }

    /// Whether the open fails if the node exists (so sending it twice is not harmless).
    pub(crate) fn is_exclusive_create(&self) -> bool {
        self.create.is_some() && self.exclusive
    }

    /// Whether handles opened this way may read contents and listings.
    pub(crate) fn can_read(&self) -> bool {
        self.intent & pb::Intent::Read as u32 != 0
    }

    /// The key under which an open of `path` (expanded) may share a server handle with an
    /// identical one: only opens with at most read intent and no create (writes and locks
    /// belong to one handle each; a create has effects).
    pub(crate) fn share_key(&self, path: &str) -> Option<OpenKey> {
        let read_only = self.intent & !(pb::Intent::Read as u32) == 0;
        (read_only && self.create.is_none()).then(|| OpenKey {
            path: path.to_string(),
            intent: self.intent,
            events: self.events.bits(),
            lock_delay_ms: u64::try_from(self.lock_delay.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The wire request for `path` (already expanded) in session `ctx`.
    pub(crate) fn to_request(
        &self,
        path: String,
        ctx: pb::SessionContext,
    ) -> Result<pb::OpenRequest, Error> {
        if self.create.is_none() && (self.ephemeral || self.exclusive || self.acl.is_some()) {
            return Err(Error::InvalidArgument(
                "ephemeral(), exclusive() and acl() only apply with create_file() or create_dir()"
                    .into(),
            ));
        }
        let create = self.create.map(|kind| pb::CreateSpec {
            kind: pb::NodeKind::from(kind) as i32,
            ephemeral: self.ephemeral,
            initial_contents: self.initial_contents.clone(),
            acl: self.acl.clone().map(Into::into),
            exclusive: self.exclusive,
            instance: 0,
        });
        Ok(pb::OpenRequest {
            ctx: Some(ctx),
            path,
            intent: self.intent,
            events: self.events.bits(),
            lock_delay_ms: u64::try_from(self.lock_delay.as_millis()).unwrap_or(u64::MAX),
            create,
            read: self.read_contents,
            target: if self.anchor {
                pb::OpenTarget::Anchor
            } else {
                pb::OpenTarget::Node
            } as i32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_options_build_the_request() {
        let req = OpenOptions::new()
            .read()
            .write()
            .events(EventMask::CONTENTS_MODIFIED)
            .events(EventMask::LOCK_ACQUIRED)
            .lock_delay(Duration::from_millis(1500))
            .create_file(b"hi".to_vec())
            .ephemeral()
            .exclusive()
            .read_contents()
            .to_request("/ls/l/a".into(), pb::SessionContext::default())
            .expect("valid options");
        assert_eq!(req.intent, 3);
        assert_eq!(req.events, 17);
        assert_eq!(req.lock_delay_ms, 1500);
        assert!(req.read);
        let create = req.create.expect("create spec");
        assert_eq!(create.kind, pb::NodeKind::File as i32);
        assert_eq!(create.initial_contents, b"hi");
        assert!(create.ephemeral && create.exclusive);
        assert_eq!(create.acl, None);
    }

    #[test]
    fn only_read_only_opens_without_create_share_handles() {
        let key = OpenOptions::new()
            .read()
            .events(EventMask::CONTENTS_MODIFIED)
            .share_key("/ls/l/a")
            .expect("read-only");
        assert_eq!((key.intent, key.events), (1, 1));
        assert!(OpenOptions::new().share_key("/ls/l/a").is_some());
        assert!(OpenOptions::new().write().share_key("/ls/l/a").is_none());
        assert!(OpenOptions::new()
            .change_acl()
            .share_key("/ls/l/a")
            .is_none());
        assert!(OpenOptions::new()
            .read()
            .create_file(Vec::new())
            .share_key("/ls/l/a")
            .is_none());
        assert!(OpenOptions::new()
            .create_dir()
            .exclusive()
            .is_exclusive_create());
        assert!(!OpenOptions::new().create_dir().is_exclusive_create());
    }

    #[test]
    fn create_modifiers_need_create() {
        let e = OpenOptions::new()
            .ephemeral()
            .to_request("/ls/l/a".into(), pb::SessionContext::default())
            .expect_err("ephemeral without create");
        assert_eq!(e.code_name(), "INVALID_ARGUMENT");
    }

    #[test]
    fn client_options_validate() {
        assert!(ClientOptions::new(["h:1"]).validate().is_ok());
        assert!(ClientOptions::new(["h:1"]).cache);
        assert!(!ClientOptions::new(["h:1"]).cache(false).cache);
        assert!(ClientOptions::new(Vec::<String>::new()).validate().is_err());
        assert!(ClientOptions::new([""]).validate().is_err());
        assert!(!ClientOptions::new(["h:1"]).via_proxies);
        let p = ClientOptions::proxies(["p:1", "p:2"]);
        assert!(p.via_proxies);
        assert_eq!(p.endpoints, ["p:1", "p:2"]);
        assert!(p.validate().is_ok());
        assert!(!p.via_proxies(false).via_proxies);
        let e = ClientOptions::proxies(Vec::<String>::new())
            .validate()
            .expect_err("no proxies");
        assert!(e.message().starts_with("proxies: "), "{e}");
        let e = ClientOptions::new([""]).validate().expect_err("empty");
        assert!(e.message().starts_with("endpoints: "), "{e}");
        assert!(ClientOptions::new(["h:1"])
            .clock_drift(f64::NAN)
            .validate()
            .is_err());
        assert!(ClientOptions::new(["h:1"])
            .rpc_timeout(Duration::ZERO)
            .validate()
            .is_err());
    }
}
