//! The Warren client library: an API that reads like Chubby's.
//!
//! A [`Session`] finds the cell's master (`Locate`), creates a session and keeps it alive in
//! the background with one long-poll KeepAlive always outstanding, acknowledging every event
//! it receives and delivering each to the application once ([`Session::events`]).
//! [`Session::open`] returns a [`Handle`] for every call that names a node: reads and writes
//! of whole files, directory listings, ACLs, delete, reader/writer locks and
//! [`Sequencer`]s.
//!
//! ```no_run
//! # async fn demo() -> Result<(), warren_client::Error> {
//! use warren_client::{LockMode, OpenOptions, Session};
//! let session = Session::connect(&["127.0.0.1:7100"]).await?;
//! let (handle, _) = session
//!     .open("/jobs/leader", OpenOptions::new().write().create_file(b"".to_vec()))
//!     .await?;
//! let sequencer = handle.acquire(LockMode::Exclusive, None).await?;
//! println!("leader: {sequencer}");
//! handle.release().await?;
//! handle.close().await;
//! session.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Paths may be given in full (`/ls/<deployment>/a/b`) or short (`/a/b`, expanded with the
//! session's deployment). No prost types appear in this API; conversions from and to
//! `warren_proto::pb` live in [`types`]. Errors are [`Error`], whose
//! [`code`](Error::code) is the table's [`ErrorCode`].
//!
//! # Sessions, jeopardy and fail-over
//!
//! A session is **safe** while its local lease runs, in **jeopardy** when the lease ended
//! without a KeepAlive reply (calls wait, the cache is off, the library looks for the
//! master), and **expired** if the grace period passes without one; see [`Session`] for the
//! diagram and the rules, and [`Event`] for what the application is told. The cell's master
//! is found among [`ClientOptions::endpoints`] with `Locate` (any replica answers),
//! following `NOT_MASTER{master}`; a `STALE_EPOCH` answer means a new master took over: the
//! library adopts its epoch, and the new master's fail-over event
//! ([`Event::MasterFailover`]) flushes the cache. Calls the new master refuses while it
//! recovers (`FAILOVER_IN_PROGRESS`) are re-sent with backoff, `Handle::close` included.
//!
//! # Cache
//!
//! Each session caches, write-through, what it reads (docs/design.md §7): file contents and metadata
//! ([`Handle::contents`], [`Handle::stat`]), directory listings ([`Handle::child_names`];
//! [`Handle::read_dir`] always asks the master because it returns every child's
//! metadata), the absence of nodes (an `open` without create that got `NOT_FOUND`), and open
//! handles. A value served from the cache is never older than a write the master has
//! acknowledged to anyone: the master invalidates cached copies before it completes a
//! write, and the library drops them before acknowledging. The cache is flushed on
//! jeopardy (and stays off until safe), on a fail-over event and on a new epoch;
//! [`Session::cache_stats`] shows it. Turn it off with [`ClientOptions::cache`].
//!
//! **Handles** are cached Chubby-style: an `open` with at most read intent and no create
//! reuses the server handle of an identical `open` (same path, intent, events and
//! lock-delay) that is still open, without asking the master. Each [`Handle`] counts as a
//! user; the server handle is closed at the master when its last user closes. Handles that
//! can write, lock or change ACLs are never shared, and [`Handle::set_sequencer`] first
//! gives its handle a server handle of its own.
//!
//! # Through proxies
//!
//! [`ClientOptions::proxies`] connects through proxies (`warren proxy`, docs/design.md §10) instead of
//! to a cell's replicas. A proxy answers `Locate` as a master, so nothing else changes but
//! the order in which the session tries them: each session orders the list with a
//! consistent-hash ring keyed by its id ([`proxy_order`], [`Session::search_order`]) and
//! every search for a proxy starts from the first in that order. When its proxy dies the
//! session moves to the next live one, which claims it at the cells and answers with a
//! higher epoch and a fail-over event: the cache is flushed, [`Event::MasterFailover`] is
//! delivered and handles are recreated, as after a cell fail-over. Not yet here: routing.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
mod cache;
mod error;
mod handle;
pub mod map;
mod options;
mod path;
#[cfg(feature = "sim")]
pub mod planted;
mod proxies;
pub mod reshard;
mod routed;
pub mod rpc;
mod session;
pub mod transport;
pub mod types;

pub use error::Error;
pub use handle::{Handle, OpenInfo};
pub use options::{ClientOptions, OpenOptions};
pub use path::{expand_path, route_error, wrong_cell, FULL_PREFIX};
pub use proxies::{proxy_order, ProxyRing};
pub use session::lease;
pub use session::{EventStream, Session};
pub use transport::locate;
pub use types::{
    AclNames, CacheStats, ChildChange, DirEntry, Event, EventMask, LocateInfo, LockMode, NodeKind,
    Sequencer, SessionId, SessionState, Stat,
};
pub use warren_proto::{Effect, ErrorCode, WarrenError};
/// Mutual TLS: the identity a session dials with ([`ClientOptions::tls`]; docs/security.md).
pub use warren_tls::{Tls, TlsFiles};
