//! Compiles `c360/v1/*.proto` with protox (pure Rust), so a fresh checkout needs no protoc.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "c360/v1/profile.proto",
        "c360/v1/consent.proto",
        "c360/v1/events.proto",
        "c360/v1/tenant.proto",
        "c360/v1/privacy.proto",
        "c360/v1/identity.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["."])?;

    // The encoded descriptor set feeds gRPC server reflection.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("c360_descriptor.bin"), fds.encode_to_vec())?;

    // Decode errors are the sender's fault: INVALID_ARGUMENT, not INTERNAL (codec.rs).
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::Codec")
        .compile_fds(fds)?;
    Ok(())
}
