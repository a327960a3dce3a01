//! `strata streams`: the streams of a store with their event counts and last revisions, or
//! its categories or event types with the number of events in each (the lengths of their
//! `$ce-…` / `$et-…` streams), derived from one pass over `$all`.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::json;
use strata_core::ReadAllOptions;
use strata_core::system_streams::{IndexKey, index_keys};

use super::event_output::print_table;
use super::output::{Lines, Tone};
use super::{Create, OpenStore, StoreArgs, explain};

/// Events asked of the store per page of `$all`.
const PAGE_EVENTS_MAX: usize = 4_096;

#[derive(Args)]
pub(crate) struct StreamsArgs {
    /// Also list system streams (`$...`) and metadata streams (`$$...`).
    #[arg(long, conflicts_with_all = ["categories", "event_types"])]
    all: bool,
    /// List categories (the part of a stream name before its first `-`) with their event
    /// counts: what `$ce-<category>` holds.
    #[arg(long, conflicts_with = "event_types")]
    categories: bool,
    /// List event types with their event counts: what `$et-<type>` holds.
    #[arg(long)]
    event_types: bool,
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
    let mut keys: BTreeMap<String, u64> = BTreeMap::new();
    let mut options = ReadAllOptions::forwards().max_count(PAGE_EVENTS_MAX);
    loop {
        let page = open
            .block_on(open.store.read_all(options.clone()))
            .map_err(explain)?;
        for event in &page.events {
            if args.categories || args.event_types {
                let indexed = index_keys(
                    event.stream.as_str(),
                    event.revision.0,
                    &event.event_type,
                    &event.metadata,
                );
                for key in indexed {
                    match key {
                        IndexKey::Category(name) if args.categories => {
                            *keys.entry(name).or_default() += 1;
                        }
                        IndexKey::EventType(name) if args.event_types => {
                            *keys.entry(name).or_default() += 1;
                        }
                        _ => {}
                    }
                }
                continue;
            }
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
    if args.categories || args.event_types {
        let (field, title) = if args.categories {
            ("category", "CATEGORY")
        } else {
            ("event_type", "EVENT TYPE")
        };
        return print_counts(&mut lines, args.json, field, title, &keys);
    }
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

/// Categories or event types with their event counts, as a table or JSON lines.
fn print_counts(
    lines: &mut Lines,
    json: bool,
    field: &str,
    title: &str,
    counts: &BTreeMap<String, u64>,
) -> anyhow::Result<()> {
    if json {
        for (name, count) in counts {
            let line = json!({ field: name, "event_count": count });
            if !lines.line(&line.to_string())? {
                break;
            }
        }
        return Ok(());
    }
    let header = [title.to_owned(), "EVENTS".to_owned()];
    let rows: Vec<[String; 2]> = counts
        .iter()
        .map(|(name, count)| [name.clone(), count.to_string()])
        .collect();
    print_table(lines, &header, &[Tone::Accent, Tone::Plain], &rows)
}
