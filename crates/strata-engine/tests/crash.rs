//! Crash safety with real processes: a child (`strata-crash-writer`) appends from several
//! tasks and reports each acknowledgement; it is SIGKILLed at a random moment, the store is
//! reopened and checked, and the child runs again on the same directory — many times over.
//!
//! After every kill: each acknowledged event is in its stream at the acknowledged revision
//! and position with the right id and data; `$all` has strictly increasing positions, holds
//! every batch (single- or multi-stream) whole or not at all, and begins with everything the previous reopen saw; and
//! `verify` finds no problem, before the reopen (a torn tail is allowed there) and after it:
//! that includes the index's sorted runs, which a kill may interrupt while written or
//! merged (the reopen rebuilds what is missing), checked entry by entry against the log.
//! The whole test runs twice: with the index's memory holding every position, and with it
//! holding only the tail (`Config::index_memory_tail_only`, writer and reopen alike), where
//! each reopened store must also answer every stream as one opened with the whole index.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use strata_core::{
    EventId, EventStore, ReadAllOptions, ReadStreamOptions, RecordedEvent, StreamName, StreamSlice,
    StreamState,
};
use strata_engine::{Config, Store, verify};

const KILL_CYCLES: u64 = 25;
const KILL_DELAY_MS: std::ops::Range<u64> = 20..300;
/// Only guards against a child that never starts; no assertion depends on it.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STREAMS: u64 = 6;

/// One acknowledged append, as the child reported it.
#[derive(Debug)]
struct Ack {
    stream: StreamName,
    current_revision: u64,
    position: u64,
    ids: Vec<u128>,
}

fn parse_ack(line: &str) -> Ack {
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 5, "malformed line from the child: {line:?}");
    assert_eq!(fields[0], "ack", "malformed line from the child: {line:?}");
    Ack {
        stream: StreamName::new(fields[1]).unwrap(),
        current_revision: fields[2].parse().unwrap(),
        position: fields[3].parse().unwrap(),
        ids: fields[4]
            .split(',')
            .map(|id| u128::from_str_radix(id, 16).unwrap())
            .collect(),
    }
}

/// Must match `event_data` in `src/bin/strata-crash-writer.rs`.
fn event_data(id: u128) -> String {
    let mixed = splitmix64(id as u64 ^ (id >> 64) as u64);
    let pad_bytes = if mixed.is_multiple_of(64) {
        20_000 + (mixed >> 8) % 20_000
    } else {
        (mixed >> 8) % 1_200
    };
    let pad_char = char::from(b'a' + (mixed >> 40) as u8 % 26);
    format!(
        r#"{{"id":"{id:032x}","pad":"{}"}}"#,
        pad_char.to_string().repeat(pad_bytes as usize)
    )
}

fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What an event's metadata says of its batch.
#[derive(Debug, PartialEq, Eq)]
struct BatchMark {
    batch: u128,
    size: u64,
    index: u64,
}

fn batch_mark(event: &RecordedEvent) -> BatchMark {
    let value: serde_json::Value = serde_json::from_slice(&event.metadata)
        .unwrap_or_else(|error| panic!("metadata of {event:?} is not JSON: {error}"));
    BatchMark {
        batch: u128::from_str_radix(value["batch"].as_str().unwrap(), 16).unwrap(),
        size: value["size"].as_u64().unwrap(),
        index: value["index"].as_u64().unwrap(),
    }
}

/// Runs the child once and kills it; returns the acknowledgements it printed.
fn run_child_and_kill(
    data_dir: &Path,
    seed: u64,
    kill_after: Duration,
    tail_only: bool,
) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata-crash-writer"))
        .arg(data_dir)
        .arg(seed.to_string())
        .args(tail_only.then_some("tail"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the crash writer starts");
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                // A line cut short by the kill is not an acknowledgement anyone saw.
                Ok(_) if !line.ends_with('\n') => break,
                Ok(_) => {
                    line.pop();
                    if lines.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let first = received.recv_timeout(READY_TIMEOUT);
    if first.as_deref() == Ok("ready") {
        std::thread::sleep(kill_after);
    }
    child.kill().expect("the child can be killed");
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default();
    assert_eq!(
        status.signal(),
        Some(9),
        "the crash writer was to be SIGKILLed but ended with {status}; its stderr:\n{stderr}"
    );
    assert_eq!(
        first.as_deref(),
        Ok("ready"),
        "the crash writer did not start; its stderr:\n{stderr}"
    );
    received.try_iter().map(|line| parse_ack(&line)).collect()
}

async fn read_whole_all(store: &Store) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut options = ReadAllOptions::forwards().max_count(997);
    loop {
        let slice = store.read_all(options.clone()).await.unwrap();
        events.extend(slice.events);
        if slice.is_end {
            return events;
        }
        options = options.from_position(slice.next_position);
    }
}

/// Reopens the store and checks everything; returns `$all` as (id, position) pairs, and
/// how many multi-stream appends it holds.
fn config(tail_only: bool) -> Config {
    Config {
        index_memory_tail_only: tail_only,
        ..Config::small_for_tests()
    }
}

/// Every stream's events and state.
async fn read_streams(store: &Store) -> Vec<(Vec<RecordedEvent>, StreamState)> {
    let mut out = Vec::new();
    for number in 0..STREAMS {
        let stream = StreamName::new(format!("crash-{number}")).unwrap();
        let events = store
            .read_stream(&stream, ReadStreamOptions::forwards())
            .await
            .unwrap()
            .into_events();
        out.push((events, store.stream_state(&stream).await.unwrap()));
    }
    out
}

async fn check_reopened(
    data_dir: &Path,
    acks: &[Ack],
    previous: &[(EventId, u64)],
    tail_only: bool,
) -> (Vec<(EventId, u64)>, u64) {
    let store = Store::open(data_dir, config(tail_only)).expect("the store reopens");
    let all = read_whole_all(&store).await;

    for pair in all.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "$all positions do not increase: {} then {}",
            pair[0].position.0,
            pair[1].position.0
        );
    }
    let seen: Vec<(EventId, u64)> = all
        .iter()
        .map(|event| (event.id, event.position.0))
        .collect();
    assert!(
        seen.len() >= previous.len() && seen[..previous.len()] == *previous,
        "$all no longer begins with what the previous reopen saw"
    );

    // Content, and every batch (of one or several streams) whole and contiguous in the log.
    let mut at = 0;
    let mut multi_stream_batches = 0;
    while at < all.len() {
        let first = &all[at];
        let mark = batch_mark(first);
        let mut next_revisions: HashMap<&StreamName, u64> = HashMap::new();
        assert_eq!(
            (mark.index, mark.batch),
            (0, first.id.as_u128()),
            "$all at position {} starts in the middle of a batch: {mark:?}",
            first.position.0
        );
        for index in 0..mark.size {
            let event = all.get(at + index as usize).unwrap_or_else(|| {
                panic!("batch {:032x} is cut short at the end of $all", mark.batch)
            });
            assert_eq!(
                batch_mark(event),
                BatchMark { index, ..mark },
                "batch {:032x} is not whole at position {}",
                mark.batch,
                event.position.0
            );
            // A multi-stream batch holds each part's events at consecutive revisions.
            if let Some(next) = next_revisions.insert(&event.stream, event.revision.0 + 1) {
                assert_eq!(event.revision.0, next, "batch {:032x} skips", mark.batch);
            }
            assert_eq!(event.event_type, "CrashTested");
            assert_eq!(
                event.data,
                event_data(event.id.as_u128()).as_bytes(),
                "wrong data for event {:032x}",
                event.id.as_u128()
            );
        }
        at += mark.size as usize;
        multi_stream_batches += u64::from(next_revisions.len() > 1);
    }

    // Each stream read agrees with $all and has no gap.
    let mut by_stream: HashMap<StreamName, Vec<&RecordedEvent>> = HashMap::new();
    for event in &all {
        by_stream
            .entry(event.stream.clone())
            .or_default()
            .push(event);
    }
    assert!(
        by_stream
            .keys()
            .all(|stream| stream.as_str().starts_with("crash-"))
    );
    let mut streams: HashMap<StreamName, Vec<RecordedEvent>> = HashMap::new();
    for number in 0..STREAMS {
        let stream = StreamName::new(format!("crash-{number}")).unwrap();
        let from_all = by_stream.remove(&stream).unwrap_or_default();
        let events = store
            .read_stream(&stream, ReadStreamOptions::forwards())
            .await
            .unwrap()
            .into_events();
        assert_eq!(events.len(), from_all.len(), "{stream} and $all disagree");
        for (revision, (event, in_all)) in events.iter().zip(&from_all).enumerate() {
            assert_eq!(event.revision.0, revision as u64, "{stream} has a gap");
            assert_eq!(event, *in_all, "{stream} and $all disagree");
        }
        let expected_state = match events.last() {
            Some(last) => StreamState::At(last.revision),
            None => StreamState::NoStream,
        };
        assert_eq!(store.stream_state(&stream).await.unwrap(), expected_state);
        streams.insert(stream, events);
    }

    // Every acknowledged append is there, where it was acknowledged.
    for ack in acks {
        let events = &streams[&ack.stream];
        let first_revision = ack.current_revision + 1 - ack.ids.len() as u64;
        for (offset, &id) in ack.ids.iter().enumerate() {
            let revision = first_revision + offset as u64;
            let event = events.get(revision as usize).unwrap_or_else(|| {
                panic!(
                    "acknowledged event {id:032x} ({}@{revision}) is lost",
                    ack.stream
                )
            });
            assert_eq!(
                event.id.as_u128(),
                id,
                "{}@{revision} is not the acknowledged event",
                ack.stream
            );
        }
        let last = &events[ack.current_revision as usize];
        assert_eq!(
            last.position.0, ack.position,
            "acknowledged position of {}@{} differs",
            ack.stream, ack.current_revision
        );
    }
    // A stream read from the acknowledged revision finds the same event.
    if let Some(ack) = acks.last() {
        let slice = store
            .read_stream(
                &ack.stream,
                ReadStreamOptions::forwards()
                    .from_revision(ack.current_revision)
                    .max_count(1),
            )
            .await
            .unwrap();
        let StreamSlice::Found { events, .. } = slice else {
            panic!("{} is not found", ack.stream)
        };
        assert_eq!(events[0].position.0, ack.position);
    }

    let answers = read_streams(&store).await;
    store.close();
    drop(store);
    if tail_only {
        // A store opened with the whole index in memory answers the same.
        let whole = Store::open(data_dir, config(false)).expect("the store reopens whole");
        assert!(
            read_streams(&whole).await == answers,
            "the tail-only store and the whole one disagree"
        );
        whole.close();
    }
    let report = verify(data_dir, &mut |_| {}).unwrap();
    assert!(report.is_ok(), "verify after reopen and close:\n{report}");
    assert!(!report.torn_tail, "a reopen leaves no torn tail:\n{report}");
    assert_eq!(report.events, all.len() as u64);
    // The close saved the index: the sorted runs cover it, and verify checked them.
    assert!(
        report.events == 0 || report.index_runs >= 1,
        "no index run after reopen and close:\n{report}"
    );
    (seen, multi_stream_batches)
}

#[test]
fn every_acknowledged_append_survives_sigkill_and_no_batch_is_seen_in_part() {
    sigkill_cycles(false);
}

#[test]
fn the_same_with_the_index_memory_holding_only_the_tail() {
    sigkill_cycles(true);
}

fn sigkill_cycles(tail_only: bool) {
    let seed: u64 = std::env::var("STRATA_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5747_a7a0);
    eprintln!("crash test seed {seed} (set STRATA_CRASH_SEED to repeat another)");
    let mut random = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut acks = Vec::new();
    let mut seen = Vec::new();
    let mut torn_tails = 0;
    let mut runs_cut_short = 0;
    let mut multi_stream_batches = 0;
    for cycle in 0..KILL_CYCLES {
        let kill_after = Duration::from_millis(random.gen_range(KILL_DELAY_MS));
        let new_acks =
            run_child_and_kill(dir.path(), seed.wrapping_add(cycle), kill_after, tail_only);
        eprintln!(
            "cycle {cycle}: killed after {kill_after:?}, {} appends acknowledged",
            new_acks.len()
        );
        acks.extend(new_acks);

        let report = verify(dir.path(), &mut |_| {}).unwrap();
        assert!(report.is_ok(), "verify right after the kill:\n{report}");
        torn_tails += u64::from(report.torn_tail);
        // A kill while the index saver wrote or merged a sorted run leaves a `.tmp` file
        // (ignored, then removed by the reopen).
        runs_cut_short += std::fs::read_dir(dir.path().join("index-runs"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
                    .count()
            })
            .unwrap_or(0);

        (seen, multi_stream_batches) =
            runtime.block_on(check_reopened(dir.path(), &acks, &seen, tail_only));
    }
    eprintln!(
        "{} acknowledged appends, {} events in the log, {multi_stream_batches} multi-stream \
         appends, {torn_tails} torn tails recovered, {runs_cut_short} index runs cut short \
         by a kill",
        acks.len(),
        seen.len()
    );
    assert!(
        acks.len() as u64 >= KILL_CYCLES && multi_stream_batches > 0,
        "the child acknowledged too little to test anything"
    );
}

// Regressions the crash test found.

fn log_files(data_dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(data_dir.join("log"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, entry.metadata().unwrap().len())
        })
        .collect();
    files.sort();
    files
}

/// The writer makes the next segment in the background. A store that is closed while it
/// does so must wait for it: the directory is free for the next opener (here, the next
/// crash writer) once `close` returns, and two makers of the same segment file destroy each
/// other's work (segments without a header, or a segment the writer uses replaced by
/// another file).
#[test]
fn close_waits_for_the_segment_being_prepared() {
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut at_close = Vec::new();
    for dir in &dirs {
        let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
        store.close();
        drop(store);
        at_close.push(log_files(dir.path()));
    }
    // Time for a segment maker that outlived `close` to show itself; nothing waits on it.
    std::thread::sleep(Duration::from_millis(500));
    for (dir, at_close) in dirs.iter().zip(at_close) {
        assert_eq!(
            log_files(dir.path()),
            at_close,
            "the log directory changed after close"
        );
    }
}

/// Paging through `$all` forwards: a page that ends just before the padding frame at the
/// end of a segment returns the padding's position as `next_position`, and reading from it
/// must work like reading from any other `next_position`.
#[tokio::test]
async fn read_all_pages_across_segment_padding() {
    use strata_core::{ExpectedRevision, ProposedEvent};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let stream = StreamName::new("padded").unwrap();
    // Ten 100 kB events fill a 1 MiB segment so that the eleventh does not fit.
    for _ in 0..12 {
        let event = ProposedEvent::binary("Big", vec![7u8; 100_000]);
        store
            .append(&stream, ExpectedRevision::Any, vec![event])
            .await
            .unwrap();
    }
    let first = store
        .read_all(ReadAllOptions::forwards().max_count(10))
        .await
        .unwrap();
    assert_eq!(first.events.len(), 10);
    assert!(!first.is_end);
    let rest = store
        .read_all(ReadAllOptions::forwards().from_position(first.next_position))
        .await
        .expect("next_position of a page is a place to read from");
    assert_eq!(rest.events.len(), 2);
    assert_eq!(rest.events[0].revision.0, 10);
    store.close();
}

/// A frame may end exactly at the end of its segment; replaying the log (on open, and in
/// `verify`) must then go on at the next segment's first frame, not read its header as a
/// frame and call the log corrupt.
#[tokio::test]
async fn replay_goes_on_after_a_frame_that_ends_exactly_at_a_segment_end() {
    use strata_core::{ExpectedRevision, ProposedEvent};

    let dir = tempfile::tempdir().unwrap();
    let config = Config::small_for_tests();
    let store = Store::open(dir.path(), config.clone()).unwrap();
    let stream = StreamName::new("s").unwrap();
    // An event frame is 56 header bytes + 8 bytes of sync mark (each append here is a group
    // of its own, whose first frame carries one) + stream + type + data + 4 trailer bytes,
    // rounded up to 8: with stream "s" and type "T", 70 + data bytes. The first frame is at
    // offset 64.
    let frames_to_fill = config.segment_size_bytes - 64;
    let mut data_sizes = vec![200_002; 5];
    data_sizes.push(frames_to_fill as usize - 5 * 200_072 - 70);
    data_sizes.extend([10, 20]);
    let mut positions = Vec::new();
    for data_bytes in data_sizes {
        let event = ProposedEvent::binary("T", vec![1u8; data_bytes]);
        let result = store
            .append(&stream, ExpectedRevision::Any, vec![event])
            .await
            .unwrap();
        positions.push(result.position.0);
    }
    assert_eq!(
        positions[6],
        config.segment_size_bytes + 64,
        "the sixth frame fills segment 0 exactly"
    );
    store.close();
    drop(store);
    let report = verify(dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "verify:\n{report}");
    assert_eq!(report.events, 8);

    // As after a crash: the whole log is replayed.
    std::fs::remove_file(dir.path().join("CLEAN")).unwrap();
    for entry in std::fs::read_dir(dir.path().join("index")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let store = Store::open(dir.path(), config).expect("the store reopens");
    let events = store
        .read_stream(&stream, ReadStreamOptions::forwards())
        .await
        .unwrap()
        .into_events();
    let found: Vec<u64> = events.iter().map(|event| event.position.0).collect();
    assert_eq!(found, positions);
    store.close();
}
