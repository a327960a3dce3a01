//! `strata delete` (soft delete: appending revives the stream) and `strata tombstone`
//! (the name can never be used again).

use clap::Args;
use strata_core::ExpectedRevision;

use super::{Create, OpenStore, StoreArgs, explain, parse_expected_revision, stream_name};

#[derive(Args)]
pub(crate) struct DeleteArgs {
    /// Stream to delete.
    stream: String,
    /// Concurrency check: any, no-stream, exists, or the stream's last revision.
    #[arg(long, value_name = "REVISION", default_value = "any", value_parser = parse_expected_revision)]
    expected_revision: ExpectedRevision,
    #[command(flatten)]
    store: StoreArgs,
}

/// Which kind of deletion to run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deletion {
    Soft,
    Tombstone,
}

pub(crate) fn run(args: &DeleteArgs, deletion: Deletion) -> anyhow::Result<()> {
    let stream = stream_name(&args.stream)?;
    let open = OpenStore::open(&args.store, Create::Never)?;
    let store = &open.store;
    let result = match deletion {
        Deletion::Soft => open.block_on(store.delete_stream(&stream, args.expected_revision)),
        Deletion::Tombstone => {
            open.block_on(store.tombstone_stream(&stream, args.expected_revision))
        }
    }
    .map_err(explain)?;
    let what = match deletion {
        Deletion::Soft => "deleted (appending to it again revives it)",
        Deletion::Tombstone => "tombstoned (it can never be read or written again)",
    };
    println!("stream {stream} {what}; position {}", result.position.0);
    Ok(())
}
