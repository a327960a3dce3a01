//! Compiles `proto/*.proto` into Rust in `OUT_DIR`.
//!
//! protox parses the files in pure Rust, so a build needs no `protoc` binary;
//! tonic-prost-build turns the resulting descriptors into prost messages and
//! tonic clients and servers. Generated code is never committed.
//!
//! The `Streams` server is generated a second time, on its own, with `ReadResp` mapped to
//! `crate::read_answer::ReadAnswer`: Read answers are encoded by hand straight from the
//! recorded events (src/read_answer.rs), while clients keep the generated `ReadResp`.

use std::error::Error;

const PROTO_DIR: &str = "proto";

/// Proposed events of Append and BatchAppend: decoded by hand (src/proposed_message.rs).
const PROPOSED_MESSAGES: [&str; 2] = [
    ".event_store.client.streams.AppendReq.ProposedMessage",
    ".event_store.client.streams.BatchAppendReq.ProposedMessage",
];
const PROPOSED_MESSAGE_TYPE: &str = "crate::proposed_message::ProposedMessage";

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
    let mut builder = tonic_prost_build::configure();
    for message in PROPOSED_MESSAGES {
        builder = builder.extern_path(message, PROPOSED_MESSAGE_TYPE);
    }
    builder
        // Event data and metadata as `Bytes`, so decoding can share the
        // request buffer instead of copying every payload.
        .bytes(".")
        // Undecodable requests are INVALID_ARGUMENT, not INTERNAL (src/codec.rs).
        .codec_path("crate::codec::StrataCodec")
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors.clone())?;
    streams_server(descriptors)
}

/// The `Streams` server over the messages generated above, answering reads with
/// `ReadAnswer`, in `OUT_DIR/streams_server/`.
fn streams_server(descriptors: prost_types::FileDescriptorSet) -> Result<(), Box<dyn Error>> {
    let out_dir = std::path::Path::new(&std::env::var("OUT_DIR")?).join("streams_server");
    std::fs::create_dir_all(&out_dir)?;
    let streams = prost_types::FileDescriptorSet {
        file: descriptors
            .file
            .into_iter()
            .filter(|file| file.name() == "streams.proto")
            .collect(),
    };
    let mut builder = tonic_prost_build::configure();
    for message in PROPOSED_MESSAGES {
        builder = builder.extern_path(message, PROPOSED_MESSAGE_TYPE);
    }
    builder
        .out_dir(out_dir)
        // Every message is the one generated above, except the Read answer.
        .extern_path(".event_store.client", "crate::proto::event_store::client")
        .extern_path(
            ".event_store.client.streams.ReadResp",
            "crate::read_answer::ReadAnswer",
        )
        .codec_path("crate::codec::StrataCodec")
        .build_server(true)
        .build_client(false)
        .compile_fds(streams)?;
    Ok(())
}
