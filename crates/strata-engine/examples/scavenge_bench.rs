//! Measures scavenging on the embedded engine, in one run: a sequential write baseline
//! (appends of 100 events of ~1 KiB, durability fsync), then a scavenge of that log with
//! half its events removable (the streams of every other append are tombstoned), with the
//! latency of single appends before, during and after the scavenge.
//!
//! `cargo run --release -p strata-engine --example scavenge_bench -- DIR [LOG_MIB] [THROTTLE] [THREADS]`
//! (DIR must not exist; it is removed at the end). Prints one JSON object.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_engine::{Config, Durability, ScavengeOptions, Store};

const EVENTS_PER_APPEND: usize = 100;
const DATA_BYTES: usize = 1000;

fn config() -> Config {
    Config {
        durability: Durability::Fsync,
        ..Config::default()
    }
}

fn payload() -> String {
    format!(r#"{{"pad":"{}"}}"#, "z".repeat(DATA_BYTES))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: scavenge_bench DIR [LOG_MIB]"));
    let log_mib: u64 = args
        .next()
        .map_or(2048, |text| text.parse().expect("LOG_MIB"));
    let throttle_percent: u8 = args
        .next()
        .map_or(100, |text| text.parse().expect("THROTTLE"));
    let threads: usize = args.next().map_or(1, |text| text.parse().expect("THREADS"));
    assert!(!dir.exists(), "{} exists", dir.display());

    // Sequential write baseline: the log's bytes per second.
    let store = Store::open(&dir, config()).expect("open");
    let started = Instant::now();
    let mut appends = 0usize;
    loop {
        let stream = StreamName::new(format!("s{}-{}", appends % 2, appends / 2)).expect("name");
        let events = (0..EVENTS_PER_APPEND)
            .map(|_| ProposedEvent::json("Written", payload()))
            .collect();
        store
            .append(&stream, ExpectedRevision::Any, events)
            .await
            .expect("append");
        appends += 1;
        let end = store.last_position().await.expect("end").map_or(0, |p| p.0);
        if end >= log_mib << 20 {
            break;
        }
    }
    let write_seconds = started.elapsed().as_secs_f64();
    let log_bytes = store.last_position().await.expect("end").map_or(0, |p| p.0);
    // Half the events removable: every stream of the odd appends is tombstoned.
    for append in (1..appends).step_by(2) {
        let stream = StreamName::new(format!("s1-{}", append / 2)).expect("name");
        store
            .tombstone_stream(&stream, ExpectedRevision::Any)
            .await
            .expect("tombstone");
    }
    store.close();
    drop(store);
    let store = Store::open(&dir, config()).expect("reopen");

    let latency_stream = StreamName::new("latency").expect("name");
    // The reopen zero-fills the next segment in the background: let that finish first, so
    // that the "before" window measures appends alone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = single_appends(&store, &latency_stream, None, 2000).await;
    let running = Arc::new(AtomicBool::new(true));
    let scavenging = {
        let store = Arc::clone(&store);
        let running = Arc::clone(&running);
        tokio::task::spawn_blocking(move || {
            let report = store.scavenge(ScavengeOptions {
                throttle_percent,
                threads,
                ..ScavengeOptions::default()
            });
            running.store(false, Ordering::Release);
            report.expect("scavenge")
        })
    };
    let during = single_appends(&store, &latency_stream, Some(&running), usize::MAX).await;
    let report = scavenging.await.expect("scavenge task");
    // The same window after: the machine's own noise (other processes' I/O) shows as a
    // difference between "before" and "after", the scavenge's as "during" against both.
    let after = single_appends(&store, &latency_stream, None, 2000).await;
    let scanned_bytes = report.segments_considered * config().segment_size_bytes;
    let json = serde_json::json!({
        "log_bytes": log_bytes,
        "write_bytes_per_second": log_bytes as f64 / write_seconds,
        "scavenge_scanned_bytes": scanned_bytes,
        "scavenge_bytes_per_second": scanned_bytes as f64 / report.elapsed.as_secs_f64(),
        "scavenge_seconds": report.elapsed.as_secs_f64(),
        "events_removed": report.events_removed,
        "allocated_bytes_before": report.allocated_bytes_before,
        "allocated_bytes_after": report.allocated_bytes_after,
        "throttle_percent": throttle_percent,
        "threads": threads,
        "append_p50_ms_before": quantile_ms(&before, 50),
        "append_p50_ms_during": quantile_ms(&during, 50),
        "append_p50_ms_after": quantile_ms(&after, 50),
        "append_p99_ms_before": quantile_ms(&before, 99),
        "append_p99_ms_during": quantile_ms(&during, 99),
        "append_p99_ms_after": quantile_ms(&after, 99),
        "append_p99_ratio": quantile_ms(&during, 99) / quantile_ms(&before, 99),
        "append_p999_ms_during": quantile_ms_permille(&during, 999),
        "append_max_ms_before": quantile_ms_permille(&before, 1000),
        "append_max_ms_during": quantile_ms_permille(&during, 1000),
        "append_max_ms_after": quantile_ms_permille(&after, 1000),
        "appends_during": during.len(),
    });
    println!("{json}");
    store.close();
    drop(store);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Single-event appends, one at a time: `count` of them, or while `running` is set.
async fn single_appends(
    store: &Store,
    stream: &StreamName,
    running: Option<&AtomicBool>,
    count: usize,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    while latencies.len() < count && running.is_none_or(|running| running.load(Ordering::Acquire)) {
        let started = Instant::now();
        store
            .append(
                stream,
                ExpectedRevision::Any,
                vec![ProposedEvent::json("Probe", payload())],
            )
            .await
            .expect("append");
        latencies.push(started.elapsed());
    }
    latencies
}

/// The `percent`th percentile, in milliseconds.
fn quantile_ms(latencies: &[Duration], percent: usize) -> f64 {
    quantile_ms_permille(latencies, percent * 10)
}

/// The `permille`th 1/1000-quantile (1000: the maximum), in milliseconds.
fn quantile_ms_permille(latencies: &[Duration], permille: usize) -> f64 {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    sorted
        .get(sorted.len().saturating_sub(1) * permille / 1000)
        .map_or(0.0, |latency| latency.as_secs_f64() * 1000.0)
}
