//! `strata metadata get|set`: a stream's metadata (`$$stream`).

use clap::{Args, Subcommand};
use strata_core::{ExpectedRevision, StreamMetadata};

use super::{
    Create, OpenStore, StoreArgs, explain, json_syntax_error, parse_expected_revision, stream_name,
    usage_bail,
};

#[derive(Args)]
pub(crate) struct MetadataArgs {
    #[command(subcommand)]
    action: MetadataAction,
}

#[derive(Subcommand)]
enum MetadataAction {
    /// Print a stream's metadata as JSON (`{}` when none was written).
    #[command(after_help = "Example:\n  strata metadata get order-42 --data-dir ./strata-data")]
    Get {
        /// Stream whose metadata to print.
        stream: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write a stream's metadata: a JSON object with $maxAge, $maxCount, $tb, ... and custom keys.
    #[command(
        after_help = "Example:\n  strata metadata set order-42 '{\"$maxCount\":100,\"owner\":\"billing\"}' --data-dir ./strata-data"
    )]
    Set {
        /// Stream whose metadata to write.
        stream: String,
        /// The metadata, a JSON object.
        json: String,
        /// Concurrency check on the metadata stream: any, no-stream, exists, or its last revision.
        #[arg(long, value_name = "REVISION", default_value = "any", value_parser = parse_expected_revision)]
        expected_revision: ExpectedRevision,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(crate) fn run(args: &MetadataArgs) -> anyhow::Result<()> {
    match &args.action {
        MetadataAction::Get { stream, store } => {
            let stream = stream_name(stream)?;
            let open = OpenStore::open(store, Create::Never)?;
            let versioned = open
                .block_on(open.store.stream_metadata(&stream))
                .map_err(explain)?;
            println!("{}", String::from_utf8_lossy(&versioned.metadata.to_json()));
            Ok(())
        }
        MetadataAction::Set {
            stream,
            json,
            expected_revision,
            store,
        } => {
            let stream = stream_name(stream)?;
            if let Err(error) = serde_json::from_str::<serde_json::Value>(json) {
                usage_bail!(
                    "metadata {}; nothing was written",
                    json_syntax_error(&error, error.line())
                );
            }
            let metadata = match StreamMetadata::from_json(&stream, json.as_bytes()) {
                Ok(metadata) => metadata,
                Err(error) => usage_bail!("{error}; nothing was written"),
            };
            let open = OpenStore::open(store, Create::Never)?;
            let result = open
                .block_on(
                    open.store
                        .set_stream_metadata(&stream, *expected_revision, &metadata),
                )
                .map_err(explain)?;
            println!(
                "metadata of {stream} written: revision {} of {}",
                result.current_revision.0,
                stream.metadata_stream()
            );
            Ok(())
        }
    }
}
