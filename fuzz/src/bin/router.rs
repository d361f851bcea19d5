//! The `router` fuzz target (docs/fuzzing.md): [`warren_fuzz::router::run`] under AFL++'s
//! persistent loop when built by `cargo afl build`; built plainly, it replays the files
//! named on its command line.

fn main() {
    warren_fuzz::main(warren_fuzz::router::run);
}
