//! The tokio runtime each command runs on: a multi-thread runtime with one worker per core
//! unless the command says how many (`warren proxy --threads`, `warren loadtest
//! --threads`; the load generator on a host of at most 2 cores: one). docs/performance.md,
//! "Cached reads: CPU per read against a bare tonic server", has what one worker saves
//! (the idle workers' wake-ups) and what it did not.

use std::future::Future;
use std::process::ExitCode;

/// Builds the runtime (`threads` workers, or one per core for `None`) and runs `main` on
/// it to its end. A runtime that cannot be built is an error naming why, exit 1.
pub fn block_on(threads: Option<usize>, main: impl Future<Output = ExitCode>) -> ExitCode {
    match build(threads) {
        Ok(rt) => rt.block_on(main),
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// The load generator's default worker count: one on a host of at most 2 cores, where it
/// shares the cores with the servers it measures, so a second worker mostly wakes up to
/// find nothing to steal (at 1,000–10,000 reads/s on the 2-core machine one worker cost
/// 23–82 µs of CPU per read against 34–104 µs for two; docs/performance.md, "Cached reads:
/// CPU per read against a bare tonic server"). `None` (one per core) on larger hosts.
pub fn small_host_workers() -> Option<usize> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores <= 2).then_some(1)
}

fn build(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if let Some(n) = threads {
        b.worker_threads(n);
    }
    b.build()
}
