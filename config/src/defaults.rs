//! The default of every setting that more than one place needs (docs/design.md §16), defined once:
//! the cell's, the proxy's and the client library's configurations, the cell core's
//! `CoreConfig::new`, the test harnesses and `warren loadtest --deploy` all read them from
//! here, so a changed default cannot leave a stale copy behind.

use std::time::Duration;

/// The `<deployment>` of `/ls/<deployment>/…` unless configured (and of `warren dev` and the
/// test deployments).
pub const DEPLOYMENT: &str = "local";

/// The session lease a cell grants normally (and a proxy grants its clients).
pub const LEASE: Duration = Duration::from_secs(12);
/// The longest lease any cell may grant, even under load (docs/design.md §16); also the default
/// `max_lease`.
pub const LEASE_LIMIT: Duration = Duration::from_secs(60);
/// The lease proxy sessions get (docs/design.md §10): longer than the clients' lease, so a proxy can
/// collect its clients' acknowledgements within it.
pub const PROXY_LEASE: Duration = Duration::from_secs(20);
/// How long before a lease ends a master (or proxy) answers a held KeepAlive.
pub const KEEPALIVE_REPLY_BEFORE_END: Duration = Duration::from_secs(1);
/// How long the client sessions of an ended proxy session wait to be claimed: longer than
/// the clients' grace period.
pub const CLAIM_WINDOW: Duration = Duration::from_secs(60);
/// The longest lock-delay a client may ask for (docs/design.md §16); also the default
/// `max_lock_delay`.
pub const LOCK_DELAY_LIMIT: Duration = Duration::from_secs(60);
/// The largest file Warren stores (Chubby's limit); also the default `max_file_size`.
pub const FILE_SIZE_LIMIT: usize = 256 * 1024;
/// After a failover, how long ephemeral nodes wait to be reopened before deletion.
pub const EPHEMERAL_CLEANUP: Duration = Duration::from_secs(60);
/// The TTL of the etcd lease behind a cell's mastership.
pub const ETCD_LEASE: Duration = Duration::from_secs(2);
/// Most operations per etcd transaction (etcd's own default `--max-txn-ops`).
pub const ETCD_MAX_TXN_OPS: usize = 128;
/// How often a cell's master takes a backup unless `[backup] every` says otherwise
/// (docs/backup.md).
pub const BACKUP_EVERY: Duration = Duration::from_secs(6 * 3600);
/// How many backups of a cell are kept unless `[backup] keep` says otherwise.
pub const BACKUP_KEEP: usize = 28;

/// ρ, the clock-rate drift allowed between client and master (1%).
pub const CLOCK_DRIFT: f64 = 0.01;
/// How long a client in jeopardy keeps looking for the master before its session expires.
pub const GRACE_PERIOD: Duration = Duration::from_secs(45);
/// The timeout of a client's ordinary calls.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// How long before the proxy's own session at a cell its client leases end at the latest.
pub const PROXY_LEASE_MARGIN: Duration = Duration::from_secs(1);
/// How long a forwarded call waits for a cell that is failing over before the proxy answers
/// `FAILOVER_IN_PROGRESS`.
pub const PROXY_FORWARD_PATIENCE: Duration = Duration::from_secs(10);
/// How long past its lease a proxy keeps a client held in jeopardy by a cell failover
/// (the cells' claim window).
pub const PROXY_MAX_STARVE: Duration = Duration::from_secs(60);
/// Where `warren proxy` listens unless configured.
pub const PROXY_LISTEN: &str = "127.0.0.1:7300";
