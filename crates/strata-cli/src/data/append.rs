//! `strata append`: appends JSON events to a stream, all of them atomically.

use std::io::BufRead;

use anyhow::Context;
use clap::Args;
use strata_core::{EventId, ExpectedRevision, ProposedEvent};

use super::{
    Create, OpenStore, StoreArgs, explain, json_syntax_error, parse_expected_revision, stream_name,
    usage_bail,
};

#[derive(Args)]
pub(crate) struct AppendArgs {
    /// Stream to append to.
    stream: String,
    /// Event type of every event appended.
    #[arg(long = "type", value_name = "TYPE")]
    event_type: String,
    /// The data of one event, as JSON. Without it, one event per line of stdin.
    #[arg(long, value_name = "JSON")]
    data: Option<String>,
    /// The id of the event (a UUID); appending the same id again is idempotent. Only with
    /// one event. Default: a random id.
    #[arg(long, value_name = "UUID")]
    id: Option<uuid::Uuid>,
    /// Metadata of every event appended, as JSON.
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// Concurrency check: any, no-stream, exists, or the stream's last revision.
    #[arg(long, value_name = "REVISION", default_value = "any", value_parser = parse_expected_revision)]
    expected_revision: ExpectedRevision,
    /// Size of each segment file if this creates a local store, in MiB (as `strata serve`).
    #[arg(long, value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(17..=4095))]
    segment_size_mib: u64,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) fn run(args: &AppendArgs) -> anyhow::Result<()> {
    let stream = stream_name(&args.stream)?;
    let documents = match &args.data {
        Some(data) => vec![checked_json(data, "--data", None)?],
        None => stdin_documents()?,
    };
    if documents.is_empty() {
        usage_bail!("stdin held no event: give --data JSON, or one JSON document per line");
    }
    if args.id.is_some() && documents.len() > 1 {
        usage_bail!(
            "--id names one event, but stdin held {}: append them one by one, or leave \
             --id out",
            documents.len()
        );
    }
    let metadata = match &args.metadata {
        Some(metadata) => checked_json(metadata, "--metadata", None)?,
        None => String::new(),
    };
    let count = documents.len();
    let events: Vec<ProposedEvent> = documents
        .into_iter()
        .map(|data| {
            let event =
                ProposedEvent::json(args.event_type.clone(), data).with_metadata(metadata.clone());
            match args.id {
                Some(id) => event.with_id(EventId(id)),
                None => event,
            }
        })
        .collect();
    let open = OpenStore::open(
        &args.store,
        Create::WithSegmentSizeMib(args.segment_size_mib),
    )?;
    let result = open
        .block_on(open.store.append(&stream, args.expected_revision, events))
        .map_err(explain)?;
    println!(
        "appended {count} event{} to {stream}: last revision {}, position {}",
        if count == 1 { "" } else { "s" },
        result.current_revision.0,
        result.position.0
    );
    Ok(())
}

/// Reads every non-blank line of stdin and checks each is JSON before anything is written.
fn stdin_documents() -> anyhow::Result<Vec<String>> {
    let mut documents = Vec::new();
    for (index, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("cannot read stdin; pipe one JSON document per line")?;
        if line.trim().is_empty() {
            continue;
        }
        documents.push(checked_json(&line, "stdin", Some(index + 1))?);
    }
    Ok(documents)
}

/// Returns `text` (without surrounding blanks) if it is one JSON document, else a usage
/// error naming line and column.
fn checked_json(text: &str, source: &str, line: Option<usize>) -> anyhow::Result<String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(_) => Ok(text.trim().to_owned()),
        Err(error) => {
            let line = line.unwrap_or(error.line());
            usage_bail!(
                "{source} {}; nothing was written: fix the document and run the command again",
                json_syntax_error(&error, line)
            )
        }
    }
}
