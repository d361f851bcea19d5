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
//! Not yet here (next issues): jeopardy/safe and the grace-period state machine, the cache
//! (invalidations are acknowledged but nothing is cached yet), proxies and routing.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod handle;
mod options;
mod path;
mod session;
mod transport;
pub mod types;

pub use error::Error;
pub use handle::{Handle, OpenInfo};
pub use options::{ClientOptions, OpenOptions};
pub use path::{expand_path, FULL_PREFIX};
pub use session::{EventStream, Session};
pub use transport::locate;
pub use types::{
    AclNames, ChildChange, DirEntry, Event, EventMask, LocateInfo, LockMode, NodeKind, Sequencer,
    SessionId, Stat,
};
pub use warren_proto::{ErrorCode, WarrenError};
