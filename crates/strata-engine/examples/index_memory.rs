//! Resident memory and open time of a real `Store` whose index memory holds every position
//! (`whole`, the default) or only the tail after the sorted runs (`tail`,
//! `Config::index_memory_tail_only`); docs/BENCHMARKS.md ("On-disk index runs").
//!
//! `cargo run --release -p strata-engine --example index_memory -- DIR EVENTS STREAMS MODE [nosys|corr]`
//!
//! When DIR does not exist, first writes EVENTS events (type `E`, data `{}`) to STREAMS
//! streams `s-<n>` through the append path (one append of EVENTS / STREAMS events per
//! stream, 32 tasks, durability `none`) and closes the store. Then opens DIR in MODE
//! (`whole` or `tail`) and prints one JSON object: the open's time, `VmRSS` after the
//! open, after the first index save (which publishes the runs: the tail-only index then
//! drops what they cover), and after 10,000 stream heads and reads of random streams
//! (there also `RssAnon`: the pages of the log those reads map count in `VmRSS`).
//! Run each mode in its own process. `nosys` turns the system streams (the secondary
//! indexes) off, for writing and opening alike. `corr` gives every 3 events a new
//! correlation id (`$correlationId` in their metadata, as one command's events carry
//! one), in the events written and in 300,000 more appended after the open (3 per
//! append; `VmRSS` after them, before the save, is `rss_after_appends`).
//!
//! After the open it waits until the background threads stop reading (the index saver's
//! and the id builder's checks of the files the open trusted: `rchar` of `/proc/self/io`
//! grows by less than 1 MiB in 2 s, at most 30 min) and prints the I/O of the open and of
//! that wait (`rchar`: bytes read by system calls, page cache included; `read_bytes`:
//! bytes fetched from the disk), `VmRSS` after it and the process's CPU seconds in it.

use std::sync::Arc;
use std::time::Instant;

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamName};
use strata_engine::{Config, Durability, Store};

const WRITE_TASKS: u64 = 32;
const LOOKUPS: u64 = 10_000;
/// Events appended after the open with `corr`.
const APPENDS_AFTER_OPEN: u64 = 300_000;

/// The `number`-th event; with `correlated`, every 3 share a new correlation id.
fn event(number: u64, correlated: bool) -> ProposedEvent {
    let event = ProposedEvent::json("E", "{}");
    if correlated {
        event.with_metadata(format!(r#"{{"$correlationId":"c-{}"}}"#, number / 3))
    } else {
        event
    }
}

/// A field of `/proc/self/io` (`rchar`, `read_bytes`).
fn io(field: &str) -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(": "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU seconds of the process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 14th and
    // 15th of the line, in clock ticks (100 a second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |at: usize| {
        fields
            .get(at)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Waits until the process reads less than 1 MiB in 2 s (at most 30 min); returns the
/// seconds waited, counting to the last poll that still saw reads.
fn wait_for_reads_to_settle() -> f64 {
    let started = Instant::now();
    let mut last_busy = 0.0;
    let mut before = io("rchar");
    while started.elapsed().as_secs() < 1800 {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let now = io("rchar");
        if now - before < 1 << 20 {
            break;
        }
        before = now;
        last_busy = started.elapsed().as_secs_f64();
    }
    last_busy
}

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
    let (dir, events, streams, mode, flag) = match args.as_slice() {
        [dir, events, streams, mode] => (dir, events, streams, mode, ""),
        [dir, events, streams, mode, flag] if flag == "nosys" || flag == "corr" => {
            (dir, events, streams, mode, flag.as_str())
        }
        _ => panic!("usage: index_memory DIR EVENTS STREAMS whole|tail [nosys|corr]"),
    };
    let system_streams = flag != "nosys";
    let correlated = flag == "corr";
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
        write(&dir, events, streams, system_streams, correlated).await;
        write_seconds = Some(started.elapsed().as_secs_f64());
    }
    let rss_before_open = status("VmRSS:");
    let (rchar_before_open, read_bytes_before_open) = (io("rchar"), io("read_bytes"));
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
    let (rchar_after_open, read_bytes_after_open) = (io("rchar"), io("read_bytes"));
    let cpu_after_open = cpu_seconds();
    let checks_s = wait_for_reads_to_settle();
    let checks_cpu_s = cpu_seconds() - cpu_after_open;
    let rss_after_checks = status("VmRSS:");
    let hwm_after_checks = status("VmHWM:");
    let open_rchar = rchar_after_open - rchar_before_open;
    let open_read_bytes = read_bytes_after_open - read_bytes_before_open;
    let checks_rchar = io("rchar") - rchar_after_open;
    let checks_read_bytes = io("read_bytes") - read_bytes_after_open;
    // Appends (one, or with `corr` many, each 3 with a new id) and a save: the runs are
    // published (and, tail-only, memory dropped).
    let appended = if correlated { APPENDS_AFTER_OPEN } else { 1 };
    let started = Instant::now();
    for batch in 0..appended.div_ceil(3) {
        let stream = StreamName::new(format!("s-{}", batch % streams)).expect("name");
        let first = events + batch * 3;
        let proposed = (first..(first + 3).min(events + appended))
            .map(|number| event(number, correlated))
            .collect();
        store
            .append(&stream, ExpectedRevision::Any, proposed)
            .await
            .expect("append");
    }
    let appends_seconds = started.elapsed().as_secs_f64();
    let rss_after_appends = status("VmRSS:");
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
    let anon_after_lookups = status("RssAnon:");
    store.close();
    println!(
        "{{\"mode\":\"{mode}\",\"system_streams\":{system_streams},\"correlated\":{correlated},\"events\":{events},\"streams\":{streams},\"write_s\":{},\
         \"open_s\":{open_seconds:.3},\"rss_before_open\":{rss_before_open},\
         \"rss_after_open\":{rss_after_open},\"hwm_after_open\":{hwm_after_open},\
         \"open_rchar\":{open_rchar},\"open_read_bytes\":{open_read_bytes},\"checks_s\":{checks_s:.0},\
         \"checks_cpu_s\":{checks_cpu_s:.1},\"checks_rchar\":{checks_rchar},\"checks_read_bytes\":{checks_read_bytes},\
         \"rss_after_checks\":{rss_after_checks},\"hwm_after_checks\":{hwm_after_checks},\
         \"appended\":{appended},\"appends_s\":{appends_seconds:.3},\"rss_after_appends\":{rss_after_appends},\
         \"rss_after_save\":{rss_after_save},\"lookups\":{LOOKUPS},\"lookups_s\":{lookup_seconds:.3},\
         \"read_events\":{read_events},\"rss_after_lookups\":{rss_after_lookups},\"anon_after_lookups\":{anon_after_lookups},\"hwm\":{}}}",
        write_seconds.map_or("null".into(), |seconds| format!("{seconds:.1}")),
        status("VmHWM:")
    );
}

async fn write(
    dir: &std::path::Path,
    events: u64,
    streams: u64,
    system_streams: bool,
    correlated: bool,
) {
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
                    let first = stream * per_stream;
                    let batch = (first..first + per_stream)
                        .map(|number| event(number, correlated))
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
