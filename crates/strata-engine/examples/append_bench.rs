//! The append phases of `strata bench` on the engine alone, beside the same run's disk
//! baseline (issue 12): it builds with this crate only, so an A/B of an engine change
//! needs no release build of the whole CLI.
//!
//! `cargo run --release -p strata-engine --example append_bench -- DIR [BATCHED] [SINGLE]`
//!
//! DIR must not exist; it is removed at the end. Phases, as `strata bench` runs them:
//! the baseline (4 KiB write + `fdatasync` at offset 0 for 2 s; then sequential 2 MiB
//! writes, each followed by `fdatasync`, of 2 GiB or the batched events' bytes if more:
//! the disk's sustained rate at the log's sync cadence), BATCHED events (default 2,000,000) of 200-byte JSON in
//! appends of 1,000 from 8 tasks, then SINGLE events (default 300,000) one per append from
//! 256 tasks, each append timed. Durability `fsync`. Prints one JSON object.
//! `append_batched_disk_bytes_per_log_byte` is what the process wrote to storage during the
//! batched phase (`/proc/self/io`) per byte of log: 2 when every log byte is also zeroed.
//! `STRATA_INDEX_MEMORY_TAIL_ONLY=0` opens with the whole index in memory, `=1` (or unset:
//! the default) with `Config::index_memory_tail_only` (the index drops what each published
//! run covers), for an A/B of that setting; `STRATA_EVENT_ID_INDEX=0` opens with
//! `Config::event_id_index` off (no event id files: `Any` re-sends recognised only among the
//! recent ids).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_engine::{CommitObserver, CommitStats, Config, Durability, Store};

const STREAMS: u64 = 10_000;
const BATCH_EVENTS: u64 = 1_000;
const BATCH_TASKS: u64 = 8;
const SINGLE_TASKS: u64 = 256;
/// The bytes of each event's JSON body (`{"n":…,"pad":"ppp…"}`), about.
const EVENT_DATA_BYTES: u64 = 200;
const BASELINE_WRITE_BYTES_MIN: u64 = 2 << 30;
const BASELINE_GROUP_BYTES: usize = 2 << 20;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .expect("usage: append_bench DIR [BATCHED] [SINGLE]"),
    );
    let mut count = |default: u64| {
        args.next()
            .map_or(default, |text| text.parse().expect("a count"))
    };
    let (batched, single) = (count(2_000_000), count(300_000));
    assert!(!dir.exists(), "{} exists", dir.display());
    std::fs::create_dir_all(&dir).expect("create DIR");
    let baseline_write_bytes = BASELINE_WRITE_BYTES_MIN.max(batched * EVENT_DATA_BYTES);
    let (fdatasync_per_sec, write_bytes_per_sec) = baseline(&dir, baseline_write_bytes);
    let tail_only = std::env::var("STRATA_INDEX_MEMORY_TAIL_ONLY")
        .map_or(Config::default().index_memory_tail_only, |value| {
            value != "0"
        });
    let event_id_index = std::env::var("STRATA_EVENT_ID_INDEX")
        .ok()
        .is_none_or(|value| value != "0");
    let store = Store::open(
        dir.join("store"),
        Config {
            durability: Durability::Fsync,
            index_memory_tail_only: tail_only,
            event_id_index,
            ..Config::default()
        },
    )
    .expect("open");
    let names: Arc<Vec<StreamName>> = Arc::new(
        (0..STREAMS)
            .map(|n| StreamName::new(format!("bench-{n}")).expect("name"))
            .collect(),
    );
    let commits = Arc::new(Commits::default());
    store.observe_commits(commits.clone());
    let started = Instant::now();
    let log_start = store.watch_log_end().borrow().0;
    let disk_start = process_write_bytes();
    run_tasks(
        BATCH_TASKS,
        batched / BATCH_EVENTS,
        &store,
        &names,
        BATCH_EVENTS,
    )
    .await;
    let batched_secs = started.elapsed().as_secs_f64();
    let log_bytes = (store.watch_log_end().borrow().0 - log_start) as f64;
    let disk_bytes = (process_write_bytes() - disk_start) as f64;
    let batched_commits = commits.take();
    let started = Instant::now();
    let mut latencies = run_tasks(SINGLE_TASKS, single, &store, &names, 1).await;
    let single_secs = started.elapsed().as_secs_f64();
    let single_commits = commits.take();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let rank = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1] as f64 / 1_000.0
    };
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{{\"index_memory_tail_only\":{tail_only},\"fdatasync_per_sec\":{fdatasync_per_sec:.0},\
         \"disk_write_bytes_per_sec\":{write_bytes_per_sec:.0},\
         \"disk_write_baseline_bytes\":{baseline_write_bytes},\
         \"append_batched_events_per_sec\":{:.0},\
         \"append_batched_log_bytes_per_sec\":{:.0},\
         \"append_batched_log_to_disk_ratio\":{:.3},\
         \"append_batched_disk_bytes_per_log_byte\":{:.3},\
         \"append_single_events_per_sec\":{:.0},\
         \"append_single_p50_us\":{:.0},\"append_single_p99_us\":{:.0},\
         \"batched_commits\":{},\"single_commits\":{}}}",
        batched as f64 / batched_secs,
        log_bytes / batched_secs,
        log_bytes / batched_secs / write_bytes_per_sec,
        disk_bytes / log_bytes,
        single as f64 / single_secs,
        percentile(0.50),
        percentile(0.99),
        summary(batched_commits),
        summary(single_commits),
    )
}

/// Every group commit's figures, as the store reports them.
#[derive(Default)]
struct Commits(std::sync::Mutex<Vec<CommitStats>>);

impl CommitObserver for Commits {
    fn committed(&self, stats: &CommitStats) {
        self.0.lock().expect("commits").push(*stats);
    }
}

impl Commits {
    fn take(&self) -> Vec<CommitStats> {
        std::mem::take(&mut *self.0.lock().expect("commits"))
    }
}

/// Count, mean bytes, and p50 / p99 / max of requests, sync and flush time per commit.
fn summary(commits: Vec<CommitStats>) -> String {
    let count = commits.len().max(1);
    let nearest_rank = |mut values: Vec<u64>, p: f64| {
        values.sort_unstable();
        let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len().max(1));
        values.get(rank - 1).copied().unwrap_or(0)
    };
    let spread = |values: Vec<u64>| {
        format!(
            "[{},{},{}]",
            nearest_rank(values.clone(), 0.5),
            nearest_rank(values.clone(), 0.99),
            values.iter().max().copied().unwrap_or(0)
        )
    };
    format!(
        "{{\"count\":{},\"mean_bytes\":{},\"requests_p50_p99_max\":{},\
         \"sync_us_p50_p99_max\":{},\"flush_us_p50_p99_max\":{}}}",
        commits.len(),
        commits.iter().map(|commit| commit.bytes).sum::<u64>() / count as u64,
        spread(
            commits
                .iter()
                .map(|commit| commit.requests as u64)
                .collect()
        ),
        spread(
            commits
                .iter()
                .map(|commit| commit.sync.as_micros() as u64)
                .collect()
        ),
        spread(
            commits
                .iter()
                .map(|commit| commit.flush.as_micros() as u64)
                .collect()
        ),
    )
}

/// `fdatasync`s per second of a 4 KiB block, and bytes per second of `write_bytes` of
/// sequential 2 MiB writes, each followed by `fdatasync`, on scratch files in `dir` (removed).
fn baseline(dir: &Path, write_bytes: u64) -> (f64, f64) {
    let path = dir.join("baseline.tmp");
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("scratch file");
    let block = vec![0xA5u8; 4096];
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        file.write_all_at(&block, 0).expect("write");
        file.sync_data().expect("fdatasync");
        syncs += 1;
    }
    let fdatasync_per_sec = syncs as f64 / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).expect("remove");
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("scratch file");
    let chunk = vec![0x5Au8; BASELINE_GROUP_BYTES];
    let started = Instant::now();
    let mut written = 0u64;
    while written < write_bytes {
        file.write_all_at(&chunk, written).expect("write");
        file.sync_data().expect("fdatasync");
        written += chunk.len() as u64;
    }
    let write_bytes_per_sec = written as f64 / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).expect("remove");
    (fdatasync_per_sec, write_bytes_per_sec)
}

/// Bytes this process has caused to be written to storage so far (`write_bytes` of
/// `/proc/self/io`: page-cache pages dirtied and O_DIRECT writes, the zero-fill included).
fn process_write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes: "))
        .and_then(|value| value.trim().parse().ok())
        .expect("write_bytes in /proc/self/io")
}

/// Makes `appends` appends of `events_per_append` events from `tasks` tasks, streams
/// round-robin; returns each append's latency in nanoseconds.
async fn run_tasks(
    tasks: u64,
    appends: u64,
    store: &Arc<Store>,
    names: &Arc<Vec<StreamName>>,
    events_per_append: u64,
) -> Vec<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (store, names, next) = (Arc::clone(store), Arc::clone(names), Arc::clone(&next));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= appends {
                        return latencies;
                    }
                    let events = (0..events_per_append)
                        .map(|k| {
                            ProposedEvent::json(
                                "Moved",
                                format!(
                                    r#"{{"n":{},"pad":"{}"}}"#,
                                    n * events_per_append + k,
                                    "p".repeat(176)
                                ),
                            )
                        })
                        .collect();
                    let stream = &names[((n * 7_919) % STREAMS) as usize];
                    let started = Instant::now();
                    store
                        .append(stream, ExpectedRevision::Any, events)
                        .await
                        .expect("append");
                    latencies.push(started.elapsed().as_nanos() as u64);
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.expect("task"));
    }
    all
}
