//! `strata streams`: the streams of a store with their event counts and last revisions,
//! derived from one pass over `$all`.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::json;
use strata_core::ReadAllOptions;

use super::event_output::print_table;
use super::output::{Lines, Tone};
use super::{Create, OpenStore, StoreArgs, explain};

/// Events asked of the store per page of `$all`.
const PAGE_EVENTS_MAX: usize = 4_096;

#[derive(Args)]
pub(crate) struct StreamsArgs {
    /// Also list system streams (`$...`) and metadata streams (`$$...`).
    #[arg(long)]
    all: bool,
    /// Print one JSON object per stream per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// What one pass over `$all` learns about a stream.
#[derive(Default)]
struct StreamSummary {
    event_count: u64,
    last_revision: u64,
}

pub(crate) fn run(args: &StreamsArgs) -> anyhow::Result<()> {
    let open = OpenStore::open(&args.store, Create::Never)?;
    let mut streams: BTreeMap<String, StreamSummary> = BTreeMap::new();
    let mut options = ReadAllOptions::forwards().max_count(PAGE_EVENTS_MAX);
    loop {
        let page = open
            .block_on(open.store.read_all(options.clone()))
            .map_err(explain)?;
        for event in &page.events {
            if !args.all && event.stream.is_system() {
                continue;
            }
            let summary = streams.entry(event.stream.to_string()).or_default();
            summary.event_count += 1;
            summary.last_revision = summary.last_revision.max(event.revision.0);
        }
        if page.is_end {
            break;
        }
        options = options.from_position(page.next_position);
    }
    let mut lines = Lines::new();
    if args.json {
        for (name, summary) in &streams {
            let line = json!({
                "stream": name,
                "event_count": summary.event_count,
                "last_revision": summary.last_revision,
            });
            if !lines.line(&line.to_string())? {
                break;
            }
        }
        return Ok(());
    }
    let header = ["STREAM", "EVENTS", "LAST REVISION"].map(str::to_owned);
    let rows: Vec<[String; 3]> = streams
        .iter()
        .map(|(name, summary)| {
            [
                name.clone(),
                summary.event_count.to_string(),
                summary.last_revision.to_string(),
            ]
        })
        .collect();
    print_table(
        &mut lines,
        &header,
        &[Tone::Accent, Tone::Plain, Tone::Plain],
        &rows,
    )
}
