//! Two-stream atomic appends (one event per stream) from 256 tasks, beside single-stream
//! appends of one event from 256 tasks, in one run on fresh stores in the same directory
//! (issue 18). Fsync durability, as `strata bench`'s single appends.
//!
//! `cargo run --release -p strata-engine --example multi_append -- DIR [REQUESTS]`
//! (DIR must not exist; it is removed at the end). Prints one JSON object; each phase makes
//! REQUESTS requests (default 200,000), so the two-stream phase writes twice the events.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use strata_core::{AppendPart, EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_engine::{Config, Durability, Store};

const TASKS: usize = 256;
const STREAMS: usize = 10_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: multi_append DIR [REQUESTS]"));
    let requests: usize = args
        .next()
        .map_or(200_000, |text| text.parse().expect("REQUESTS"));
    assert!(!dir.exists(), "{} exists", dir.display());
    let single = run(&dir.join("single"), requests, 1).await;
    let double = run(&dir.join("double"), requests, 2).await;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{{\"requests\":{requests},\"tasks\":{TASKS},\
         \"single_events_per_sec\":{single:.0},\"two_stream_events_per_sec\":{double:.0},\
         \"two_stream_to_single_ratio\":{:.3}}}",
        double / single
    );
}

fn event(n: usize) -> ProposedEvent {
    ProposedEvent::json(
        "Moved",
        format!(r#"{{"n":{n},"pad":"{}"}}"#, "p".repeat(170)),
    )
}

/// Events per second of `requests` requests of `streams_per_request` one-event parts.
async fn run(dir: &std::path::Path, requests: usize, streams_per_request: usize) -> f64 {
    let config = Config {
        durability: Durability::Fsync,
        ..Config::default()
    };
    let store = Store::open(dir, config).expect("open");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (store, next) = (Arc::clone(&store), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        return;
                    }
                    let stream = |offset: usize| {
                        StreamName::new(format!("bench-{}", (n * 2 + offset) % STREAMS))
                            .expect("name")
                    };
                    if streams_per_request == 1 {
                        store
                            .append(&stream(0), ExpectedRevision::Any, vec![event(n)])
                            .await
                            .expect("append");
                    } else {
                        let parts = (0..streams_per_request)
                            .map(|offset| {
                                AppendPart::write(
                                    stream(offset),
                                    ExpectedRevision::Any,
                                    vec![event(n)],
                                )
                            })
                            .collect();
                        store.append_multi(parts).await.expect("append_multi");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let seconds = started.elapsed().as_secs_f64();
    store.close();
    (requests * streams_per_request) as f64 / seconds
}
