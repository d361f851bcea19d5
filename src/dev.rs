//! `warren dev`: a whole local deployment in one command, on embedded stores. For now one
//! cell (`c0`); later issues add the meta cell, more data cells and proxies. A second run
//! with the same `--data` resumes where the first stopped.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use warren_config::CellConfig;

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Where the cells keep their stores.
    #[arg(long, default_value = "warren-dev-data")]
    data: PathBuf,
    /// gRPC address of the cell (`warren ctl` uses 127.0.0.1:7100 by default).
    #[arg(long, default_value = "127.0.0.1:7100")]
    listen: std::net::SocketAddr,
    /// Admin HTTP address of the cell.
    #[arg(long, default_value = "127.0.0.1:7180")]
    admin: std::net::SocketAddr,
}

pub async fn run(a: DevArgs) -> ExitCode {
    let mut cfg = CellConfig::new("c0", a.listen, a.data.join("c0"));
    cfg.admin = Some(a.admin);
    if let Err(e) = cfg.validate() {
        eprintln!("error: INVALID_ARGUMENT: {e}");
        return ExitCode::from(2);
    }
    match crate::cell_cmd::serve(&cfg).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
