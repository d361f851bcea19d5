//! Typed, validated configuration for every Warren process.
//!
//! Each configuration is one struct ([`CellConfig`], [`ProxyConfig`]) loaded from
//! [`Sources`] with the precedence defaults < TOML file < `WARREN_*` environment <
//! command-line flags, then validated once. TOML keys are the field names, environment
//! variables are `WARREN_` and the upper-case field name, durations are written as
//! `"12s"` or `"500ms"`. Every [`ConfigError`] names the field, the value, where the value
//! came from (file, variable or flag) and what to do about it.
//!
//! `main` builds the [`Sources`] (reading the file and [`Sources::process_env`]); tests
//! build them from literals. [`layout`] describes a whole local deployment (names, ports,
//! store directories) for `warren dev`, the test harness and `warren loadtest --deploy`.
//! [`defaults`] holds every default more than one crate needs;
//! the client library's own settings are `warren_client::ClientOptions`, built in code
//! (and by `warren ctl` from its flags), with their defaults from [`defaults`] too.

mod cell;
pub mod defaults;
mod error;
pub mod layout;
mod parse;
mod proxy;
mod source;
mod tls;

pub use cell::{
    BackupSettings, CellConfig, StoreKind, FILE_SIZE_LIMIT, LEASE_LIMIT, LOCK_DELAY_LIMIT,
};
pub use error::{ConfigError, InvalidValue};
pub use layout::Layout;
pub use parse::{format_duration, parse_duration, parse_duration_or_seconds, DurationError};
pub use proxy::{CellAddrs, ProxyConfig, MAX_PROXY_THREADS};
pub use source::{ConfigFile, Origin, Sources};
pub use tls::TlsSettings;
