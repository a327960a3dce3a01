//! Appends per second on PostgreSQL, in a fresh schema dropped at the end: single-event
//! appends from 64 tasks over streams `bench-0..9999`, then appends of 1,000 events from 8
//! tasks; 200-byte JSON events of one type. The workload of `strata bench --store` without
//! its raw baselines, in a binary that builds with this crate alone (docs/BENCHMARKS.md).
//!
//! `cargo run --release -p strata-postgres --example append_rate -- URL [SINGLE] [BATCHED]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_postgres::{PostgresConfig, PostgresStore, drop_schema};

const STREAMS: u64 = 10_000;
const SINGLE_TASKS: u64 = 64;
const BATCH_TASKS: u64 = 8;
const BATCH_EVENTS: u64 = 1_000;

fn event() -> ProposedEvent {
    let body = format!(r#"{{"payload":"{}"}}"#, "x".repeat(186));
    ProposedEvent::json("BenchEvent", body)
}

fn stream(index: u64) -> StreamName {
    // A multiplicative hash spreads consecutive appends over the streams.
    let slot = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) % STREAMS;
    StreamName::new(format!("bench-{slot}")).expect("a valid name")
}

/// Runs `tasks` tasks that each take the next append number until `appends` are done, and
/// returns events per second.
async fn run(store: &Arc<PostgresStore>, tasks: u64, appends: u64, events_each: u64) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (store, next) = (Arc::clone(store), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= appends {
                        return;
                    }
                    let events = (0..events_each).map(|_| event()).collect();
                    store
                        .append(&stream(index), ExpectedRevision::Any, events)
                        .await
                        .expect("appends");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker ends");
    }
    (appends * events_each) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let single: u64 = args.next().map_or(20_000, |n| n.parse().expect("a count"));
    let batched: u64 = args.next().map_or(200_000, |n| n.parse().expect("a count"));
    let schema = format!("strata_append_rate_{}", std::process::id());
    let config = PostgresConfig::new(url.clone()).with_schema(schema.clone());
    let store = PostgresStore::open(config).await.expect("opens");
    let single_rate = run(&store, SINGLE_TASKS, single, 1).await;
    let batched_rate = run(&store, BATCH_TASKS, batched / BATCH_EVENTS, BATCH_EVENTS).await;
    store.close().await;
    drop(store);
    drop_schema(&url, &schema).await.expect("drops the schema");
    println!("single-event appends, {SINGLE_TASKS} tasks: {single_rate:.0} events/s");
    println!("appends of {BATCH_EVENTS} events, {BATCH_TASKS} tasks: {batched_rate:.0} events/s");
}
