//! How soon a store with large event id files files new log after an open (issue 13):
//! the builder must not first read every block of the files it trusted (the scrub).
//!
//! `cargo run --release -p strata-engine --example id_open_bench -- DIR [EVENTS] [TAIL]`
//!
//! DIR must not exist; it is removed at the end. Appends EVENTS (default 10,000,000) small
//! events with `Config::event_id_index` off, opens with it on and waits until the id files
//! cover them (printed: `filing_all_s`), closes. Then twice (once with the id files'
//! pages dropped from the page cache, `dd iflag=nocache`, once without): appends TAIL
//! (default 100,000) events with the index off, reopens with it on and times the open and
//! the first file of the new range (`first_filed_s`, from the start of the open). Only the
//! public API and the files on disk are looked at. Prints one JSON object.

use std::path::Path;
use std::time::{Duration, Instant};

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_engine::{Config, Store};

const STREAMS: u64 = 10_000;
const BATCH_EVENTS: u64 = 1_000;
const TASKS: u64 = 4;

fn config(event_id_index: bool) -> Config {
    Config {
        event_id_index,
        ..Config::default()
    }
}

/// Appends `count` events with the id index off, closes; the log's end (`CLEAN`).
async fn append_without_ids(dir: &Path, count: u64, salt: u64) -> u64 {
    let store = Store::open(dir, config(false)).expect("open");
    let per_task = count.div_ceil(TASKS);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < per_task {
                let batch = BATCH_EVENTS.min(per_task - done);
                let stream = StreamName::new(format!(
                    "s-{}",
                    (salt + task * 7_919 + done / BATCH_EVENTS) % STREAMS
                ))
                .expect("name");
                let events = (0..batch)
                    .map(|n| ProposedEvent::json("E", format!("{{\"n\":{n}}}")))
                    .collect();
                store
                    .append(&stream, ExpectedRevision::Any, events)
                    .await
                    .expect("append");
                done += batch;
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    store.close();
    drop(store);
    let clean = std::fs::read(dir.join("CLEAN")).expect("CLEAN after a close");
    u64::from_le_bytes(clean[0..8].try_into().expect("8 bytes"))
}

/// The `(covers_from, covers_to)` of every id file.
fn id_files(dir: &Path) -> Vec<(u64, u64)> {
    let Ok(listing) = std::fs::read_dir(dir.join("index-ids")) else {
        return Vec::new();
    };
    listing
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let (from, to) = name.strip_suffix(".ids")?.split_once('-')?;
            Some((from.parse().ok()?, to.parse().ok()?))
        })
        .collect()
}

/// Polls (every millisecond) until `done` holds for the id files; the time it took.
fn wait_for(dir: &Path, start: Instant, done: impl Fn(&[(u64, u64)]) -> bool) -> f64 {
    loop {
        if done(&id_files(dir)) {
            return start.elapsed().as_secs_f64();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .expect("usage: id_open_bench DIR [EVENTS] [TAIL]"),
    );
    let mut count = |default: u64| {
        args.next()
            .map_or(default, |text| text.parse().expect("a count"))
    };
    let (events, tail) = (count(10_000_000), count(100_000));
    assert!(!dir.exists(), "{} exists", dir.display());
    let end = append_without_ids(&dir, events, 0).await;
    let start = Instant::now();
    let store = Store::open(&dir, config(true)).expect("open");
    let filing_all_s = wait_for(&dir, start, |files| files.iter().any(|&(_, to)| to == end));
    // Let the merges settle: no change for 2 s.
    let mut seen = id_files(&dir);
    let mut still = Instant::now();
    while still.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        let now = id_files(&dir);
        if now != seen {
            seen = now;
            still = Instant::now();
        }
    }
    store.close();
    drop(store);
    let files = id_files(&dir).len();
    let id_bytes: u64 = std::fs::read_dir(dir.join("index-ids"))
        .expect("index-ids")
        .flatten()
        .map(|entry| entry.metadata().map_or(0, |meta| meta.len()))
        .sum();
    let mut covered = end;
    let mut runs = Vec::new();
    for (round, cold) in [true, false].into_iter().enumerate() {
        let new_end = append_without_ids(&dir, tail, 1 + round as u64).await;
        if cold {
            for entry in std::fs::read_dir(dir.join("index-ids"))
                .expect("index-ids")
                .flatten()
            {
                let _ = std::process::Command::new("dd")
                    .arg(format!("if={}", entry.path().display()))
                    .args(["iflag=nocache", "count=0", "status=none"])
                    .status();
            }
        }
        let start = Instant::now();
        let store = Store::open(&dir, config(true)).expect("open");
        let open_s = start.elapsed().as_secs_f64();
        let first_filed_s = wait_for(&dir, start, |files| {
            files.iter().any(|&(_, to)| to > covered)
        });
        let all_filed_s = wait_for(&dir, start, |files| {
            files.iter().any(|&(_, to)| to == new_end)
        });
        store.close();
        drop(store);
        runs.push(format!(
            "{{\"id_files_cold\":{cold},\"open_s\":{open_s:.4},\"first_filed_s\":{first_filed_s:.4},\"tail_filed_s\":{all_filed_s:.4}}}"
        ));
        covered = new_end;
    }
    println!(
        "{{\"events\":{events},\"tail\":{tail},\"filing_all_s\":{filing_all_s:.3},\"id_files\":{files},\"id_file_bytes\":{id_bytes},\"reopens\":[{}]}}",
        runs.join(",")
    );
    std::fs::remove_dir_all(&dir).expect("remove DIR");
}
