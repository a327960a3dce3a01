//! Measures the secondary indexes of issue 13 on the embedded engine, in one run:
//! appends with the indexes on and off, a `$ce-<category>` read (1 of 100 categories), and
//! an `$all` read that selects 1% of the log by event type — through the index
//! (`$idx-et-<type>`), by the ordinary event-type prefix filter the index now serves, and
//! by that same filter scanning the store written with the indexes off.
//!
//! `cargo run --release -p strata-engine --example index_reads -- DIR [EVENTS [ROUNDS]]`
//! (DIR must not exist; it is removed at the end). The `$ce-` read is made ROUNDS times
//! (default 1) and its best rate reported: one read of 1% of the log is short enough for a
//! loaded machine to drown it. Each read is also timed in CPU time of the reading thread
//! (`/proc/thread-self/schedstat`: user and kernel time, so `pread`s and page faults
//! count, time spent waiting for a core does not): the `*_cpu*` figures, which a loaded
//! machine disturbs far less. Prints one JSON object.
//! `INDEX_READS_APPEND_ONLY=on` (or `off`) runs only the append phase, with the system
//! streams on (or off), for an instruction count of it under `valgrind --tool=callgrind`;
//! `INDEX_READS_CORRELATION_EVERY=N` gives the events `$correlationId` metadata, a new id
//! every N events (a command's id: a new `$bc-` key each time), as applications do.

use std::time::Instant;

use strata_core::{
    EventFilter, EventStore, ExpectedRevision, FilterTarget, ProposedEvent, ReadAllOptions,
    ReadStreamOptions, StreamName,
};
use strata_engine::{Config, Durability, Store};

const CATEGORIES: usize = 100;
const STREAMS_PER_CATEGORY: usize = 10;
const EVENTS_PER_APPEND: usize = 100;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: index_reads DIR [EVENTS]"));
    let events: usize = args
        .next()
        .map_or(2_000_000, |text| text.parse().expect("EVENTS"));
    let rounds: usize = args.next().map_or(1, |text| text.parse().expect("ROUNDS"));
    assert!(!dir.exists(), "{} exists", dir.display());
    if let Ok(setting) = std::env::var("INDEX_READS_APPEND_ONLY") {
        let system_streams = setting == "on";
        let rate = append(&dir, events, system_streams).await;
        std::fs::remove_dir_all(&dir).expect("cleanup");
        println!(
            "{{\"events\":{events},\"system_streams\":{system_streams},\"append_events_per_s\":{rate:.0}}}"
        );
        return;
    }

    let append_off = append(&dir.join("off"), events, false).await;
    let append_on = append(&dir.join("on"), events, true).await;
    let store = Store::open(dir.join("on"), config(true)).expect("open");
    let store_off = Store::open(dir.join("off"), config(false)).expect("open");

    let category = StreamName::new("cat7").expect("name");
    let mut category_rate = 0f64;
    let mut category_cpu_rate = 0f64;
    let mut read = 0;
    for _ in 0..rounds.max(1) {
        let cpu_started = thread_cpu_seconds();
        let (events, seconds) = category_read(&store, &category).await;
        let cpu_seconds = thread_cpu_seconds() - cpu_started;
        read = events;
        category_rate = category_rate.max(events as f64 / seconds);
        category_cpu_rate = category_cpu_rate.max(events as f64 / cpu_seconds);
    }
    assert_eq!(read, events / CATEGORIES);

    let indexed = filtered_read(&store, "$idx-et-Rare", FilterTarget::StreamName).await;
    let ordinary = filtered_read(&store, "Rare", FilterTarget::EventType).await;
    let scanned = filtered_read(&store_off, "Rare", FilterTarget::EventType).await;
    assert_eq!(indexed.0, scanned.0, "the reads find the same events");
    assert_eq!(ordinary.0, scanned.0, "the reads find the same events");
    store.close();
    drop(store);
    store_off.close();
    drop(store_off);
    std::fs::remove_dir_all(&dir).expect("cleanup");

    println!(
        "{{\"events\":{events},\"append_events_per_s_indexes_off\":{append_off:.0},\
         \"append_events_per_s_indexes_on\":{append_on:.0},\
         \"ce_read_events_per_s\":{category_rate:.0},\"ce_events\":{read},\"ce_rounds\":{rounds},\
         \"type_filter_matches\":{},\"idx_read_ms\":{:.2},\"prefix_read_ms\":{:.2},\
         \"scan_read_ms\":{:.2},\"idx_speedup\":{:.1},\"prefix_speedup\":{:.1},\
         \"ce_read_events_per_cpu_s\":{category_cpu_rate:.0},\"idx_read_cpu_ms\":{:.2},\
         \"prefix_read_cpu_ms\":{:.2},\"scan_read_cpu_ms\":{:.2},\"idx_cpu_speedup\":{:.1},\
         \"prefix_cpu_speedup\":{:.1}}}",
        indexed.0,
        indexed.1 * 1e3,
        ordinary.1 * 1e3,
        scanned.1 * 1e3,
        scanned.1 / indexed.1,
        scanned.1 / ordinary.1,
        indexed.2 * 1e3,
        ordinary.2 * 1e3,
        scanned.2 * 1e3,
        scanned.2 / indexed.2,
        scanned.2 / ordinary.2
    );
}

fn config(system_streams: bool) -> Config {
    Config {
        system_streams,
        durability: Durability::Fsync,
        ..Config::default()
    }
}

/// Appends `events` in appends of 100 to 1,000 streams of 100 categories; every 100th event
/// is of type `Rare`. Returns events per second.
async fn append(dir: &std::path::Path, events: usize, system_streams: bool) -> f64 {
    let store = Store::open(dir, config(system_streams)).expect("open");
    let streams: Vec<StreamName> = (0..CATEGORIES * STREAMS_PER_CATEGORY)
        .map(|n| StreamName::new(format!("cat{}-{}", n % CATEGORIES, n)).expect("name"))
        .collect();
    let correlation_every = std::env::var("INDEX_READS_CORRELATION_EVERY").map_or(0, |text| {
        text.parse::<usize>()
            .expect("INDEX_READS_CORRELATION_EVERY")
    });
    let started = Instant::now();
    let appends = events / EVENTS_PER_APPEND;
    let mut tasks = tokio::task::JoinSet::new();
    let store_ref = std::sync::Arc::clone(&store);
    let writers = 8;
    for writer in 0..writers {
        let store = std::sync::Arc::clone(&store_ref);
        let streams = streams.clone();
        tasks.spawn(async move {
            for append in (writer..appends).step_by(writers) {
                let batch = (0..EVENTS_PER_APPEND)
                    .map(|i| {
                        let kind = if i == 0 { "Rare" } else { "Common" };
                        let event = ProposedEvent::json(
                            kind,
                            r#"{"amount":42,"note":"benchmark payload"}"#,
                        );
                        match (append * EVENTS_PER_APPEND + i).checked_div(correlation_every) {
                            Some(command) => event.with_metadata(format!(
                                r#"{{"$correlationId":"command-{command}"}}"#
                            )),
                            None => event,
                        }
                    })
                    .collect();
                store
                    .append(
                        &streams[append % streams.len()],
                        ExpectedRevision::Any,
                        batch,
                    )
                    .await
                    .expect("append");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let rate = (appends * EVENTS_PER_APPEND) as f64 / started.elapsed().as_secs_f64();
    store.close();
    rate
}

/// Reads all of `$ce-<category>` forwards in pages; returns the events and the seconds it took.
async fn category_read(store: &Store, category: &StreamName) -> (usize, f64) {
    let stream = StreamName::new(format!("$ce-{category}")).expect("name");
    let started = Instant::now();
    let mut read = 0usize;
    let mut from = 0u64;
    loop {
        let slice = store
            .read_stream(
                &stream,
                ReadStreamOptions::forwards()
                    .from_revision(from)
                    .max_count(4_096),
            )
            .await
            .expect("read");
        let page = slice.into_events();
        if page.is_empty() {
            break;
        }
        read += page.len();
        from += page.len() as u64;
    }
    (read, started.elapsed().as_secs_f64())
}

/// CPU time of the calling thread so far, in seconds: the reads run on it (the main
/// thread's `block_on`; `block_in_place` keeps a read on its thread).
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let nanos: u64 = stat
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .expect("schedstat's CPU time");
    nanos as f64 / 1e9
}

/// Reads all of `$all` through `filter`; returns the matches, the seconds it took and the
/// CPU seconds of the reading thread.
async fn filtered_read(store: &Store, prefix: &str, target: FilterTarget) -> (usize, f64, f64) {
    let filter = EventFilter::prefixes(target, vec![prefix.to_owned()]).expect("filter");
    let cpu_started = thread_cpu_seconds();
    let started = Instant::now();
    let mut options = ReadAllOptions::forwards().max_count(4_096).filter(filter);
    let mut found = 0;
    loop {
        let page = store.read_all(options.clone()).await.expect("read");
        found += page.events.len();
        if page.is_end {
            break;
        }
        options = options.from_position(page.next_position);
    }
    (
        found,
        started.elapsed().as_secs_f64(),
        thread_cpu_seconds() - cpu_started,
    )
}
