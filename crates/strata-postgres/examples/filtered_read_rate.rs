//! A 1%-selective event-type prefix filter read through the whole `$all` of PostgreSQL,
//! served from the event-type index and by today's windows of the log, alternating in one
//! run (docs/BENCHMARKS.md). A fresh schema is filled with EVENTS events of about PAYLOAD
//! bytes (default 100) over 1,000 streams, one in a hundred of type `RareEvent` (the rest `BenchEvent`), and dropped
//! at the end. Each read pages forwards from the start, 1,000 events a page, to the end.
//!
//! `cargo run --release -p strata-postgres --example filtered_read_rate -- URL [EVENTS] [ROUNDS] [PAYLOAD]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use strata_core::{
    EventFilter, EventStore, ExpectedRevision, FilterTarget, ProposedEvent, ReadAllOptions,
    StreamName,
};
use strata_postgres::{PostgresConfig, PostgresStore, drop_schema};

const STREAMS: u64 = 1_000;
const FILL_TASKS: u64 = 8;
const BATCH_EVENTS: u64 = 1_000;
const PAGE_EVENTS: usize = 1_000;

async fn fill(store: &Arc<PostgresStore>, events: u64, payload_bytes: usize) {
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..FILL_TASKS)
        .map(|_| {
            let (store, next) = (Arc::clone(store), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let batch = next.fetch_add(1, Ordering::Relaxed);
                    if batch * BATCH_EVENTS >= events {
                        return;
                    }
                    let batch_events = (0..BATCH_EVENTS)
                        .map(|at| {
                            let event_type = if at % 100 == 7 {
                                "RareEvent"
                            } else {
                                "BenchEvent"
                            };
                            ProposedEvent::json(
                                event_type,
                                format!(
                                    r#"{{"p":"{}"}}"#,
                                    "x".repeat(payload_bytes.saturating_sub(8))
                                ),
                            )
                        })
                        .collect();
                    let stream = StreamName::new(format!("bench-{}", batch % STREAMS))
                        .expect("a valid name");
                    store
                        .append(&stream, ExpectedRevision::Any, batch_events)
                        .await
                        .expect("appends");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker ends");
    }
}

/// Reads the filter through the whole log: (events, pages, seconds).
async fn read_through(store: &PostgresStore, filter: &EventFilter) -> (usize, usize, f64) {
    let started = Instant::now();
    let mut options = ReadAllOptions::forwards()
        .max_count(PAGE_EVENTS)
        .filter(filter.clone());
    let (mut events, mut pages) = (0, 0);
    loop {
        let slice = store.read_all(options.clone()).await.expect("reads");
        events += slice.events.len();
        pages += 1;
        if slice.is_end {
            return (events, pages, started.elapsed().as_secs_f64());
        }
        options = options.from_position(slice.next_position);
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let events: u64 = args
        .next()
        .map_or(1_000_000, |n| n.parse().expect("a count"));
    let rounds: u64 = args.next().map_or(3, |n| n.parse().expect("a count"));
    let payload_bytes: usize = args.next().map_or(100, |n| n.parse().expect("a size"));
    let schema = format!("strata_filtered_read_rate_{}", std::process::id());
    let served_config = PostgresConfig::new(url.clone()).with_schema(schema.clone());
    let mut window_config = served_config.clone();
    window_config.read_all_filters_from_indexes = false;
    let served = PostgresStore::open(served_config).await.expect("opens");
    let started = Instant::now();
    fill(&served, events, payload_bytes).await;
    println!(
        "filled {events} events of {payload_bytes} bytes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let window = PostgresStore::open(window_config).await.expect("opens");
    let filter = EventFilter::prefixes(FilterTarget::EventType, vec!["Rare".to_owned()])
        .expect("a valid filter");
    for round in 1..=rounds {
        for (label, store) in [("served", &served), ("window", &window)] {
            let (found, pages, seconds) = read_through(store, &filter).await;
            println!(
                "round {round} {label}: {found} events in {pages} pages, {:.3} s, {:.0} events/s",
                seconds,
                found as f64 / seconds
            );
        }
    }
    served.close().await;
    window.close().await;
    drop((served, window));
    if std::env::var_os("STRATA_KEEP_SCHEMA").is_some() {
        println!("kept schema {schema}");
    } else {
        drop_schema(&url, &schema).await.expect("drops the schema");
    }
}
