//! Crash safety of scavenging with real processes: a child (`strata-scavenge-child`)
//! scavenges the store and is SIGKILLed at a random moment, many times over, with new
//! removable events added between the kills. After every kill the store opens, every
//! stream reads exactly as before, `$all` is the log before the kill less some removable
//! events only (every readable event, every stream's last event and every tombstone still
//! there, in order), and `verify` finds no problem; a last run to completion leaves exactly
//! the survivors. The killed runs use 1, 2 or 3 threads in turn (segments copied at once).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use strata_core::{
    EventStore, ExpectedRevision, Position, ProposedEvent, ReadAllOptions, ReadStreamOptions,
    RecordedEvent, StreamMetadata, StreamName, StreamSlice,
};
use strata_engine::{Config, Durability, Store, verify};

const KILL_CYCLES: u64 = 12;
const KILL_DELAY_MS: std::ops::Range<u64> = 0..60;
/// Scavenge at this share of the time, so that a kill lands inside the work.
const THROTTLE_PERCENT: &str = "20";
/// Only guards against a child that never starts; no assertion depends on it.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const SEGMENT_BYTES: u64 = 1024 * 1024;

fn config() -> Config {
    Config {
        durability: Durability::Fsync,
        ..Config::small_for_tests()
    }
}

fn name(stream: &str) -> StreamName {
    StreamName::new(stream).unwrap()
}

fn event(index: u64) -> ProposedEvent {
    ProposedEvent::json(
        "Happened",
        format!(r#"{{"n":{index},"pad":"{}"}}"#, "y".repeat(3000)),
    )
}

/// About a segment of new events, most of them removable (`$maxCount` 2).
async fn add_work(store: &Store, round: u64) {
    for batch in 0..36 {
        let stream = format!("busy-{}", batch % 4);
        let events = (0..10).map(|index| event(round * 1000 + index)).collect();
        store
            .append(&name(&stream), ExpectedRevision::Any, events)
            .await
            .unwrap();
    }
}

async fn all_events(store: &Store) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut options = ReadAllOptions::forwards().max_count(500);
    loop {
        let slice = store.read_all(options.clone()).await.unwrap();
        events.extend(slice.events);
        if slice.is_end {
            return events;
        }
        options = options.from_position(slice.next_position);
    }
}

/// Every stream's read, forwards (or its error).
async fn stream_reads(store: &Store, all: &[RecordedEvent]) -> HashMap<String, String> {
    let streams: HashSet<String> = all.iter().map(|e| e.stream.as_str().to_owned()).collect();
    let mut reads = HashMap::new();
    for stream in streams {
        let read = match store
            .read_stream(&name(&stream), ReadStreamOptions::forwards())
            .await
        {
            Ok(StreamSlice::Found { events, .. }) => format!(
                "{:?}",
                events
                    .iter()
                    .map(|e| (e.revision.0, e.position.0, e.id))
                    .collect::<Vec<_>>()
            ),
            Ok(StreamSlice::NotFound) => "not found".into(),
            Err(error) => format!("{error}"),
        };
        reads.insert(stream, read);
    }
    reads
}

/// The events of `all` a scavenge must keep: those a stream read returns, the last event
/// of every stream, every tombstone; `readable` holds (stream, revision) of the first.
fn must_keep(all: &[RecordedEvent], readable: &HashSet<(String, u64)>) -> HashSet<Position> {
    let mut last: HashMap<String, &RecordedEvent> = HashMap::new();
    for event in all {
        last.insert(event.stream.as_str().to_owned(), event);
    }
    all.iter()
        .filter(|e| {
            readable.contains(&(e.stream.as_str().to_owned(), e.revision.0))
                || e.revision.0 == strata_core::TOMBSTONE_REVISION
                || last
                    .get(e.stream.as_str())
                    .is_some_and(|l| l.position == e.position)
        })
        .map(|e| e.position)
        .collect()
}

async fn readable(store: &Store, all: &[RecordedEvent]) -> HashSet<(String, u64)> {
    let streams: HashSet<String> = all.iter().map(|e| e.stream.as_str().to_owned()).collect();
    let mut readable = HashSet::new();
    for stream in streams {
        if let Ok(StreamSlice::Found { events, .. }) = store
            .read_stream(&name(&stream), ReadStreamOptions::forwards())
            .await
        {
            readable.extend(events.iter().map(|e| (stream.clone(), e.revision.0)));
        }
    }
    readable
}

/// Runs the child with `threads`; kills it after `kill_after` unless `None`. Returns
/// whether it finished.
fn run_child(data_dir: &Path, kill_after: Option<Duration>, threads: u64) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata-scavenge-child"))
        .arg(data_dir)
        .arg(if kill_after.is_some() {
            THROTTLE_PERCENT
        } else {
            "100"
        })
        .arg(threads.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the scavenge child starts");
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if lines.send(line.trim_end().to_owned()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let first = received.recv_timeout(READY_TIMEOUT);
    let finished = match kill_after {
        Some(delay) => {
            if first.as_deref() == Ok("ready") {
                std::thread::sleep(delay);
            }
            child.kill().expect("the child can be killed");
            let status = child.wait().unwrap();
            status.signal() != Some(9)
        }
        None => child.wait().unwrap().success(),
    };
    reader.join().unwrap();
    let rest: Vec<String> = received.try_iter().collect();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default();
    assert_eq!(
        first.as_deref(),
        Ok("ready"),
        "the scavenge child did not start; its stderr:\n{stderr}"
    );
    assert!(
        kill_after.is_some() || rest.iter().any(|line| line.starts_with("done ")),
        "the scavenge child did not finish; its stderr:\n{stderr}"
    );
    finished
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_any_moment_of_a_scavenge_loses_no_surviving_event() {
    let dir = tempfile::tempdir().unwrap();
    let seed: u64 = rand::random();
    let mut random = StdRng::seed_from_u64(seed);
    eprintln!("seed {seed}");
    {
        let store = Store::open(dir.path(), config()).unwrap();
        for stream in 0..4 {
            store
                .set_stream_metadata(
                    &name(&format!("busy-{stream}")),
                    ExpectedRevision::Any,
                    &StreamMetadata {
                        max_count: Some(2),
                        ..StreamMetadata::default()
                    },
                )
                .await
                .unwrap();
        }
        for (stream, tombstone) in [("gone-1", true), ("gone-2", false)] {
            store
                .append(
                    &name(stream),
                    ExpectedRevision::Any,
                    (0..20).map(event).collect(),
                )
                .await
                .unwrap();
            if tombstone {
                store
                    .tombstone_stream(&name(stream), ExpectedRevision::Any)
                    .await
                    .unwrap();
            } else {
                store
                    .delete_stream(&name(stream), ExpectedRevision::Any)
                    .await
                    .unwrap();
            }
        }
        store.close();
    }
    let mut killed_inside = 0;
    for cycle in 0..KILL_CYCLES {
        let (all_before, reads_before, keep) = {
            let store = Store::open(dir.path(), config()).unwrap();
            add_work(&store, cycle).await;
            let all = all_events(&store).await;
            let reads = stream_reads(&store, &all).await;
            let keep = must_keep(&all, &readable(&store, &all).await);
            store.close();
            (all, reads, keep)
        };
        let delay = Duration::from_millis(random.gen_range(KILL_DELAY_MS));
        if !run_child(dir.path(), Some(delay), 1 + cycle % 3) {
            killed_inside += 1;
        }
        let report = verify(dir.path(), &mut |_| {}).unwrap();
        assert!(
            report.is_ok(),
            "cycle {cycle}: verify after the kill:\n{report}"
        );
        let store = Store::open(dir.path(), config()).unwrap();
        let all_after = all_events(&store).await;
        assert_eq!(
            stream_reads(&store, &all_after).await,
            reads_before,
            "cycle {cycle}: every stream reads as before"
        );
        // A subsequence of the log before, keeping every event it must keep.
        let before_positions: Vec<Position> = all_before.iter().map(|e| e.position).collect();
        let mut cursor = before_positions.iter();
        for event in &all_after {
            assert!(
                cursor.any(|&position| position == event.position),
                "cycle {cycle}: {}@{} at {} is no event of the log before, in order",
                event.revision.0,
                event.stream,
                event.position.0
            );
            let original = all_before
                .iter()
                .find(|e| e.position == event.position)
                .unwrap();
            assert_eq!(original, event, "cycle {cycle}: the event is unchanged");
        }
        let after: HashSet<Position> = all_after.iter().map(|e| e.position).collect();
        for position in &keep {
            assert!(
                after.contains(position),
                "cycle {cycle}: the event at {} survives",
                position.0
            );
        }
        store.close();
    }
    eprintln!("{killed_inside} of {KILL_CYCLES} kills landed inside a scavenge");

    // A run to completion leaves exactly what must be kept (the tail segment aside).
    let (all_before, keep) = {
        let store = Store::open(dir.path(), config()).unwrap();
        let all = all_events(&store).await;
        let keep = must_keep(&all, &readable(&store, &all).await);
        store.close();
        (all, keep)
    };
    assert!(run_child(dir.path(), None, 2));
    let tail_start = all_before.last().unwrap().position.0 / SEGMENT_BYTES * SEGMENT_BYTES;
    let store = Store::open(dir.path(), config()).unwrap();
    let after: Vec<Position> = all_events(&store)
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    let expected: Vec<Position> = all_before
        .iter()
        .map(|e| e.position)
        .filter(|position| keep.contains(position) || position.0 >= tail_start)
        .collect();
    assert_eq!(
        after, expected,
        "a complete run leaves exactly the survivors"
    );
    store.close();
    drop(store);
    assert!(verify(dir.path(), &mut |_| {}).unwrap().is_ok());
}
