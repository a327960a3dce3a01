//! Compiles `proto/*.proto` into Rust in `OUT_DIR`.
//!
//! protox parses the files in pure Rust, so a build needs no `protoc` binary;
//! tonic-prost-build turns the resulting descriptors into prost messages and
//! tonic clients and servers. Generated code is never committed.

use std::error::Error;

const PROTO_DIR: &str = "proto";

/// Every file, imported ones included, so editing any of them rebuilds.
const PROTO_FILES: [&str; 13] = [
    "code.proto",
    "status.proto",
    "shared.proto",
    "streams.proto",
    "persistent.proto",
    "serverfeatures.proto",
    "gossip.proto",
    "users.proto",
    "projections.proto",
    "v2streams.proto",
    "v2streams_errors.proto",
    "operations.proto",
    "dcb.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={PROTO_DIR}/{file}");
    }
    let descriptors = protox::compile(PROTO_FILES, [PROTO_DIR])?;
    tonic_prost_build::configure()
        // Event data and metadata as `Bytes`, so decoding can share the
        // request buffer instead of copying every payload.
        .bytes(".")
        // Undecodable requests are INVALID_ARGUMENT, not INTERNAL (src/codec.rs).
        .codec_path("crate::codec::StrataCodec")
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
