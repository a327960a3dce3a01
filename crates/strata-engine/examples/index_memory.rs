//! Resident memory and open time of a real `Store` whose index memory holds every position
//! (`whole`, the default) or only the tail after the sorted runs (`tail`,
//! `Config::index_memory_tail_only`); docs/BENCHMARKS.md ("On-disk index runs").
//!
//! `cargo run --release -p strata-engine --example index_memory -- DIR EVENTS STREAMS MODE [nosys]`
//!
//! When DIR does not exist, first writes EVENTS events (type `E`, data `{}`) to STREAMS
//! streams `s-<n>` through the append path (one append of EVENTS / STREAMS events per
//! stream, 32 tasks, durability `none`) and closes the store. Then opens DIR in MODE
//! (`whole` or `tail`) and prints one JSON object: the open's time, `VmRSS` after the
//! open, after the first index save (which publishes the runs: the tail-only index then
//! drops what they cover), and after 10,000 stream heads and reads of random streams.
//! Run each mode in its own process. `nosys` turns the system streams (the secondary
//! indexes) off, for writing and opening alike.

use std::sync::Arc;
use std::time::Instant;

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamName};
use strata_engine::{Config, Durability, Store};

const WRITE_TASKS: u64 = 32;
const LOOKUPS: u64 = 10_000;

fn status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, events, streams, mode, system_streams) = match args.as_slice() {
        [dir, events, streams, mode] => (dir, events, streams, mode, true),
        [dir, events, streams, mode, nosys] if nosys == "nosys" => {
            (dir, events, streams, mode, false)
        }
        _ => panic!("usage: index_memory DIR EVENTS STREAMS whole|tail [nosys]"),
    };
    let dir = std::path::PathBuf::from(dir);
    let events: u64 = events.parse().expect("EVENTS");
    let streams: u64 = streams.parse().expect("STREAMS");
    let tail_only = match mode.as_str() {
        "whole" => false,
        "tail" => true,
        other => panic!("MODE is whole or tail, not {other}"),
    };
    let mut write_seconds = None;
    if !dir.exists() {
        let started = Instant::now();
        write(&dir, events, streams, system_streams).await;
        write_seconds = Some(started.elapsed().as_secs_f64());
    }
    let rss_before_open = status("VmRSS:");
    let started = Instant::now();
    let store = Store::open(
        &dir,
        Config {
            durability: Durability::None,
            index_memory_tail_only: tail_only,
            system_streams,
            ..Config::default()
        },
    )
    .expect("open");
    let open_seconds = started.elapsed().as_secs_f64();
    let rss_after_open = status("VmRSS:");
    let hwm_after_open = status("VmHWM:");
    // One append and a save: the runs are published (and, tail-only, memory dropped).
    store
        .append(
            &StreamName::new("s-0").expect("name"),
            ExpectedRevision::Any,
            vec![ProposedEvent::json("E", "{}")],
        )
        .await
        .expect("append");
    store.checkpoint_indexes().expect("save");
    let rss_after_save = status("VmRSS:");
    let started = Instant::now();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut read_events = 0usize;
    for _ in 0..LOOKUPS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let stream = StreamName::new(format!("s-{}", state % streams)).expect("name");
        store.stream_state(&stream).await.expect("state");
        read_events += store
            .read_stream(&stream, ReadStreamOptions::forwards())
            .await
            .expect("read")
            .into_events()
            .len();
    }
    let lookup_seconds = started.elapsed().as_secs_f64();
    let rss_after_lookups = status("VmRSS:");
    store.close();
    println!(
        "{{\"mode\":\"{mode}\",\"system_streams\":{system_streams},\"events\":{events},\"streams\":{streams},\"write_s\":{},\
         \"open_s\":{open_seconds:.3},\"rss_before_open\":{rss_before_open},\
         \"rss_after_open\":{rss_after_open},\"hwm_after_open\":{hwm_after_open},\
         \"rss_after_save\":{rss_after_save},\"lookups\":{LOOKUPS},\"lookups_s\":{lookup_seconds:.3},\
         \"read_events\":{read_events},\"rss_after_lookups\":{rss_after_lookups},\"hwm\":{}}}",
        write_seconds.map_or("null".into(), |seconds| format!("{seconds:.1}")),
        status("VmHWM:")
    );
}

async fn write(dir: &std::path::Path, events: u64, streams: u64, system_streams: bool) {
    let store = Store::open(
        dir,
        Config {
            durability: Durability::None,
            system_streams,
            ..Config::default()
        },
    )
    .expect("open to write");
    let per_stream = (events / streams).max(1);
    let store = Arc::clone(&store);
    let tasks: Vec<_> = (0..WRITE_TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut stream = task;
                while stream < streams {
                    let name = StreamName::new(format!("s-{stream}")).expect("name");
                    let batch = (0..per_stream)
                        .map(|_| ProposedEvent::json("E", "{}"))
                        .collect();
                    store
                        .append(&name, ExpectedRevision::NoStream, batch)
                        .await
                        .expect("append");
                    stream += WRITE_TASKS;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    store.close();
}
