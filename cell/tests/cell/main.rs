//! The cell's integration tests over tonic, in one test binary:
//! `cargo test -p warren-cell --test cell [claim::|partition::]`.

mod claim;
mod partition;
