//! The tokio runtime each command runs on: a multi-thread runtime with one worker per core
//! unless the command says how many (`warren proxy --threads`, `warren loadtest
//! --threads`). docs/performance.md, "Cached reads: CPU per read against a bare tonic
//! server", has what one worker saves (the idle workers' wake-ups) and what it did not.

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

fn build(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if let Some(n) = threads {
        b.worker_threads(n);
    }
    b.build()
}
