//! Compiles `proto/warren/v1/warren.proto`, `reshard.proto` and `backup.proto` with protox (pure Rust, so no system `protoc`),
//! and writes their encoded `FileDescriptorSet` for server reflection
//! (`warren_proto::FILE_DESCRIPTOR_SET`).
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(
        [
            "warren/v1/warren.proto",
            "warren/v1/reshard.proto",
            "warren/v1/backup.proto",
        ],
        ["proto"],
    )?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("warren_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        // No default stubs: a new RPC is a compile error until every server handles it.
        .generate_default_stubs(false)
        .codec_path("crate::codec::WarrenCodec")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
