//! No build steps of its own: the build-dependency on protoc-bin-vendored exists only so that
//! cargo downloads the protoc that tools/protoc runs for etcd-client (see .cargo/config.toml).
fn main() {}
