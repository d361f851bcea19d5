//! Declares the `tokio_unstable` cfg the simulation reads (exact replay needs it: tokio
//! seeds its `select!` choices only in such builds; docs/reliability.md).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tokio_unstable)");
}
