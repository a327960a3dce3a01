//! Reading a category stream over gRPC with the official Rust client (issue 13): `$ce-cat7`,
//! one category of 100, with `resolve_links` as applications read it, beside the same
//! client's read of the whole `$all` in the same run.
//!
//! ```text
//! strata serve --data-dir /tmp/ce-bench --insecure --port 2113 &
//! cargo run --release -p strata-cli --example category_read_bench -- \
//!     --server 'kdb://127.0.0.1:2113?tls=false' --events 1000000
//! ```
//!
//! The fixture: `--events` events in appends of 100 to 1,000 streams `cat<c>-<s>` (100
//! categories of 10 streams), spread round-robin so each category holds 1% of the log in
//! runs of 100 events, as the embedded `index_reads` example writes them.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use clap::Parser;
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ReadAllOptions, ReadStreamOptions,
    StreamState,
};

#[derive(Parser)]
struct Args {
    /// The server, e.g. kdb://127.0.0.1:2113?tls=false; its store should start empty.
    #[arg(long, default_value = "kdb://127.0.0.1:2113?tls=false")]
    server: String,
    /// Events written; a multiple of 100,000 keeps the categories equal.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Size of each event's body.
    #[arg(long, default_value_t = 200)]
    event_bytes: usize,
    /// Times each read is repeated (the best is reported beside each run).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Reads a store this bench wrote before (same `--events`), writing nothing.
    #[arg(long)]
    no_write: bool,
    /// Reads only the category, not `$all` (to profile the category read alone).
    #[arg(long)]
    category_only: bool,
}

const CATEGORIES: u64 = 100;
const STREAMS_PER_CATEGORY: u64 = 10;
const EVENTS_PER_APPEND: u64 = 100;
const WRITERS: u64 = 8;
/// The category read: 1 of the 100.
const CATEGORY: &str = "cat7";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.events.is_multiple_of(EVENTS_PER_APPEND * WRITERS),
        "--events must be a multiple of {}",
        EVENTS_PER_APPEND * WRITERS
    );
    let settings: ClientSettings = args.server.parse().context("the server URL")?;
    let client = Arc::new(
        Client::new(settings)
            .map_err(|error| anyhow::anyhow!("the client does not build: {error}"))?,
    );

    let started = Instant::now();
    if !args.no_write {
        write_fixture(&client, args.events, args.event_bytes).await?;
    }
    let write_secs = started.elapsed().as_secs_f64();
    let category_events = args.events / CATEGORIES;

    let mut rounds = Vec::new();
    for _ in 0..args.rounds {
        let (category_read, category_secs) = read_category(&client).await?;
        ensure!(
            category_read == category_events,
            "$ce-{CATEGORY} gave {category_read} events, {category_events} were written"
        );
        let mut round = serde_json::json!({
            "category_events": category_read,
            "category_events_per_sec": category_read as f64 / category_secs,
        });
        if !args.category_only {
            let (all_read, all_secs) = read_all(&client).await?;
            ensure!(
                all_read >= args.events,
                "$all gave {all_read} events, fewer than the {} written",
                args.events
            );
            round["all_events"] = all_read.into();
            round["all_events_per_sec"] = (all_read as f64 / all_secs).into();
        }
        rounds.push(round);
    }
    let report = serde_json::json!({
        "events": args.events,
        "write_events_per_sec": args.events as f64 / write_secs,
        "rounds": rounds,
    });
    println!("{report}");
    Ok(())
}

/// Appends the fixture from [`WRITERS`] tasks, each taking every `WRITERS`-th append.
async fn write_fixture(
    client: &Arc<Client>,
    events: u64,
    event_bytes: usize,
) -> anyhow::Result<()> {
    let appends = events / EVENTS_PER_APPEND;
    let body = Arc::new(vec![b'x'; event_bytes]);
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let client = Arc::clone(client);
        let body = Arc::clone(&body);
        tasks.push(tokio::spawn(async move {
            let options = AppendToStreamOptions::default().stream_state(StreamState::Any);
            let mut append = writer;
            while append < appends {
                let category = append % CATEGORIES;
                let stream = (append / CATEGORIES) % STREAMS_PER_CATEGORY;
                let name = format!("cat{category}-{stream}");
                let batch: Vec<EventData> = (0..EVENTS_PER_APPEND)
                    .map(|_| EventData::binary("BenchEvent", body.as_slice().to_vec().into()))
                    .collect();
                client
                    .append_to_stream(name.as_str(), &options, batch)
                    .await
                    .with_context(|| format!("appending to {name} failed"))?;
                append += WRITERS;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a writer panicked")??;
    }
    Ok(())
}

/// Reads `$ce-cat7` forwards with `resolve_links`; every answer must be a link resolved to
/// an event of the category.
async fn read_category(client: &Client) -> anyhow::Result<(u64, f64)> {
    let stream = format!("$ce-{CATEGORY}");
    let options = ReadStreamOptions::default().forwards().resolve_link_tos();
    let started = Instant::now();
    let mut read = client
        .read_stream(stream.as_str(), &options)
        .await
        .with_context(|| format!("reading {stream}"))?;
    let mut events = 0u64;
    let prefix = format!("{CATEGORY}-");
    while let Some(resolved) = read
        .next()
        .await
        .with_context(|| format!("reading {stream}"))?
    {
        let (Some(link), Some(event)) = (resolved.link.as_ref(), resolved.event.as_ref()) else {
            bail!("answer {events} of {stream} is not a resolved link");
        };
        ensure!(
            link.event_type == "$>" && event.stream_id().starts_with(&prefix),
            "answer {events} of {stream} is a {} to {}",
            link.event_type,
            event.stream_id()
        );
        events += 1;
    }
    Ok((events, started.elapsed().as_secs_f64()))
}

/// Reads the whole of `$all` forwards in one call.
async fn read_all(client: &Client) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let mut read = client
        .read_all(&ReadAllOptions::default().forwards())
        .await
        .context("reading $all")?;
    let mut events = 0u64;
    while read.next().await.context("reading $all")?.is_some() {
        events += 1;
    }
    Ok((events, started.elapsed().as_secs_f64()))
}
