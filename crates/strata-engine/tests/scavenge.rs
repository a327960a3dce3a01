//! Scavenging: for each retention rule, what reads, `$all` (from every position, both
//! ways), subscriptions and index reads return after a scavenge is exactly what survives,
//! the log takes measurably fewer disk blocks, and nothing changes across a reopen or an
//! index rebuild; a scavenge under concurrent appends and a live subscription; a
//! half-written scavenge output left by a crash is ignored and the work redone.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_core::{
    EventStore, ExpectedRevision, ManualClock, Position, ProposedEvent, ReadAllOptions,
    ReadStreamOptions, RecordedEvent, StreamMetadata, StreamName, StreamSlice, Timestamp,
};
use strata_core::{SubscribeFrom, SubscriptionItem, subscribe_to_all};
use strata_engine::{Config, ScavengeOptions, Store, verify};

const DATA_BYTES: usize = 4000;

fn name(stream: &str) -> StreamName {
    StreamName::new(stream).unwrap()
}

fn config(clock: &ManualClock, tail_only: bool) -> Config {
    Config {
        clock: clock.clock(),
        index_memory_tail_only: tail_only,
        ..Config::small_for_tests()
    }
}

/// Runs a test with the index's memory holding every position (`whole`) and holding only
/// the tail after the sorted runs (`tail_only`).
macro_rules! in_both_index_modes {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn whole() {
                super::$test(false).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tail_only() {
                super::$test(true).await;
            }
        }
    };
}

fn event(stream: &str, index: usize) -> ProposedEvent {
    let marker = format!("{stream}#{index}#");
    let data = format!(
        r#"{{"marker":"{marker}","pad":"{}"}}"#,
        "x".repeat(DATA_BYTES)
    );
    ProposedEvent::json("Happened", data)
}

async fn append(store: &Store, stream: &str, count: usize) {
    for chunk_start in (0..count).step_by(10) {
        let events = (chunk_start..(chunk_start + 10).min(count))
            .map(|index| event(stream, index))
            .collect();
        store
            .append(&name(stream), ExpectedRevision::Any, events)
            .await
            .unwrap();
    }
}

async fn stream_events(store: &Store, stream: &str, options: ReadStreamOptions) -> Vec<u64> {
    match store.read_stream(&name(stream), options).await {
        Ok(StreamSlice::Found { events, .. }) => events.iter().map(|e| e.revision.0).collect(),
        Ok(StreamSlice::NotFound) => vec![u64::MAX],
        Err(error) => panic!("reading {stream}: {error}"),
    }
}

async fn all_events(store: &Store) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut options = ReadAllOptions::forwards().max_count(37);
    loop {
        let slice = store.read_all(options.clone()).await.unwrap();
        events.extend(slice.events);
        if slice.is_end {
            return events;
        }
        options = options.from_position(slice.next_position);
    }
}

fn allocated_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().blocks() * 512)
        .sum()
}

/// Every stream the test reads, forwards and backwards.
const STREAMS: [&str; 9] = [
    "tb-1", "count-1", "age-1", "soft-1", "tomb-1", "meta-1", "$$meta-1", "keep-1", "keep-2",
];

struct Fixture {
    clock: ManualClock,
    tail_only: bool,
    dir: tempfile::TempDir,
    /// The events a scavenge may remove: (stream, revision).
    removable: HashSet<(String, u64)>,
}

/// One store with every retention rule applied, all of it in sealed segments covered by
/// index files (a filler stream fills more than a segment after them, and the store is
/// reopened so that an index file covers the whole log).
async fn fixture(tail_only: bool) -> Fixture {
    let clock = ManualClock::starting_at(Timestamp(1_700_000_000_000_000_000));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(&clock, tail_only)).unwrap();
    let mut removable = HashSet::new();
    let mut remove = |stream: &str, revisions: std::ops::Range<u64>| {
        for revision in revisions {
            removable.insert((stream.to_owned(), revision));
        }
    };
    // $tb
    append(&store, "tb-1", 40).await;
    let metadata = |edit: &dyn Fn(&mut StreamMetadata)| {
        let mut metadata = StreamMetadata::default();
        edit(&mut metadata);
        metadata
    };
    store
        .set_stream_metadata(
            &name("tb-1"),
            ExpectedRevision::Any,
            &metadata(&|m| m.truncate_before = Some(30)),
        )
        .await
        .unwrap();
    remove("tb-1", 0..30);
    // $maxCount
    append(&store, "count-1", 40).await;
    store
        .set_stream_metadata(
            &name("count-1"),
            ExpectedRevision::Any,
            &metadata(&|m| m.max_count = Some(5)),
        )
        .await
        .unwrap();
    remove("count-1", 0..35);
    // $maxAge: 20 events two hours old, 20 fresh.
    append(&store, "age-1", 20).await;
    clock.advance(Duration::from_secs(2 * 3600));
    append(&store, "age-1", 20).await;
    store
        .set_stream_metadata(
            &name("age-1"),
            ExpectedRevision::Any,
            &metadata(&|m| m.max_age = Some(Duration::from_secs(3600))),
        )
        .await
        .unwrap();
    remove("age-1", 0..20);
    // Soft delete: the last event stays (it holds the stream's head).
    append(&store, "soft-1", 30).await;
    store
        .delete_stream(&name("soft-1"), ExpectedRevision::Any)
        .await
        .unwrap();
    remove("soft-1", 0..29);
    // Tombstone: every event goes, the tombstone stays.
    append(&store, "tomb-1", 30).await;
    store
        .tombstone_stream(&name("tomb-1"), ExpectedRevision::Any)
        .await
        .unwrap();
    remove("tomb-1", 0..30);
    // Superseded metadata: all but the last `$$meta-1` event.
    append(&store, "meta-1", 3).await;
    for round in 0..30u64 {
        store
            .set_stream_metadata(
                &name("meta-1"),
                ExpectedRevision::Any,
                &metadata(&|m| {
                    m.custom
                        .insert("round".into(), serde_json::Value::from(round));
                }),
            )
            .await
            .unwrap();
    }
    remove("$$meta-1", 0..29);
    append(&store, "keep-1", 40).await;
    // Filler: the rule streams end up in sealed segments.
    append(&store, "keep-2", 300).await;
    store.close();
    drop(store);
    Fixture {
        clock,
        tail_only,
        dir,
        removable,
    }
}

/// Everything a reader can see of the store, for comparing before and after.
#[derive(Debug, PartialEq)]
struct Seen {
    streams: Vec<(String, Vec<u64>, Vec<u64>)>,
    tomb: String,
    index_reads: Vec<Vec<u64>>,
}

async fn seen(store: &Store) -> Seen {
    let mut streams = Vec::new();
    for stream in STREAMS {
        if stream == "tomb-1" {
            continue;
        }
        streams.push((
            stream.to_owned(),
            stream_events(store, stream, ReadStreamOptions::forwards()).await,
            stream_events(store, stream, ReadStreamOptions::backwards()).await,
        ));
    }
    let tomb = format!(
        "{:?}",
        store
            .read_stream(&name("tomb-1"), ReadStreamOptions::forwards())
            .await
            .err()
    );
    let mut index_reads = Vec::new();
    for system_stream in ["$ce-tb", "$ce-count", "$ce-keep"] {
        let slice = store
            .read_stream(&name(system_stream), ReadStreamOptions::forwards())
            .await
            .unwrap();
        let StreamSlice::Found { events, .. } = slice else {
            panic!("{system_stream} not found")
        };
        // The links' positions (their targets').
        index_reads.push(events.iter().map(|e| e.position.0).collect());
    }
    Seen {
        streams,
        tomb,
        index_reads,
    }
}

/// The events a scavenge removes, run again while it defers segments: with the tail-only
/// index a segment is deferred when runs are published during its copy (as right after an
/// open, while the saver publishes), and the next scavenge takes it.
fn events_removed_through_deferrals(store: &Store) -> u64 {
    let mut removed = 0;
    for _ in 0..20 {
        let report = store.scavenge(ScavengeOptions::default()).unwrap();
        removed += report.events_removed;
        if report.segments_deferred == 0 {
            return removed;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("segments still deferred after 20 scavenges");
}

fn survivors(all: &[RecordedEvent], removable: &HashSet<(String, u64)>) -> Vec<RecordedEvent> {
    all.iter()
        .filter(|e| !removable.contains(&(e.stream.as_str().to_owned(), e.revision.0)))
        .cloned()
        .collect()
}

in_both_index_modes!(
    each_retention_rule_removes_exactly_what_no_read_returns_and_gives_back_the_space
);
async fn each_retention_rule_removes_exactly_what_no_read_returns_and_gives_back_the_space(
    tail_only: bool,
) {
    let fixture = fixture(tail_only).await;
    let store = Store::open(
        fixture.dir.path(),
        config(&fixture.clock, fixture.tail_only),
    )
    .unwrap();
    let seen_before = seen(&store).await;
    let all_before = all_events(&store).await;
    let expected = survivors(&all_before, &fixture.removable);
    assert_eq!(
        all_before.len() - expected.len(),
        fixture.removable.len(),
        "every removable event is in the log"
    );
    let allocated_before = allocated_bytes(fixture.dir.path());

    let progressed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = Arc::clone(&progressed);
    let report = store
        .scavenge(ScavengeOptions {
            progress: Some(Box::new(move |_| {
                counter.fetch_add(1, Ordering::Relaxed);
            })),
            ..ScavengeOptions::default()
        })
        .unwrap();
    assert_eq!(report.events_removed, fixture.removable.len() as u64);
    assert!(
        progressed.load(Ordering::Relaxed) > 0,
        "progress was reported"
    );
    assert!(!report.stopped);

    // Reads: exactly as before (a read never returned what was removed); index reads,
    // which return deleted events until they are scavenged, as KurrentDB's, now return
    // the survivors only, at their index revisions.
    let seen_after = seen(&store).await;
    let surviving: HashSet<Position> = expected.iter().map(|e| e.position).collect();
    let seen_before = Seen {
        index_reads: seen_before
            .index_reads
            .iter()
            .map(|read| {
                read.iter()
                    .copied()
                    .filter(|position| surviving.contains(&Position(*position)))
                    .collect()
            })
            .collect(),
        ..seen_before
    };
    assert_eq!(seen_after, seen_before);
    // $all: exactly the survivors, in order, paged.
    let all_after = all_events(&store).await;
    assert_eq!(all_after, expected);
    // From every position of the old log, both ways: the next survivor.
    for (at, event) in all_before.iter().enumerate() {
        let forwards = store
            .read_all(
                ReadAllOptions::forwards()
                    .from_position(event.position)
                    .max_count(1),
            )
            .await
            .unwrap();
        let next = expected.iter().find(|e| e.position >= event.position);
        assert_eq!(
            forwards.events.first().map(|e| e.position),
            next.map(|e| e.position),
            "forwards from the position of event {at} ({}@{})",
            event.revision.0,
            event.stream
        );
        let backwards = store
            .read_all(
                ReadAllOptions::backwards()
                    .from_position(event.position)
                    .max_count(1),
            )
            .await
            .unwrap();
        let previous = expected.iter().rev().find(|e| e.position < event.position);
        assert_eq!(
            backwards.events.first().map(|e| e.position),
            previous.map(|e| e.position),
            "backwards from the position of event {at}"
        );
    }
    // Subscriptions: from the start, and after a removed event's position.
    let first_removed = all_before
        .iter()
        .find(|e| {
            fixture
                .removable
                .contains(&(e.stream.as_str().to_owned(), e.revision.0))
        })
        .unwrap()
        .position;
    for from in [SubscribeFrom::Start, SubscribeFrom::After(first_removed)] {
        let store_dyn: Arc<Store> = Arc::clone(&store);
        let mut subscription = subscribe_to_all(store_dyn, from, None, 64);
        let mut got = Vec::new();
        loop {
            match subscription.next().await {
                Some(Ok(SubscriptionItem::Event(event))) => got.push(event.position),
                Some(Ok(SubscriptionItem::CaughtUp)) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        let wanted: Vec<Position> = expected
            .iter()
            .filter(|e| match from {
                SubscribeFrom::After(after) => e.position > after,
                _ => true,
            })
            .map(|e| e.position)
            .collect();
        assert_eq!(got, wanted, "subscription from {from:?}");
    }

    // The space came back: at least half the removed events' data, in disk blocks.
    let allocated_after = allocated_bytes(fixture.dir.path());
    let removed_data = fixture.removable.len() as u64 * DATA_BYTES as u64;
    assert!(
        allocated_after + removed_data / 2 <= allocated_before,
        "allocated {allocated_before} → {allocated_after} bytes for {removed_data} removed"
    );
    assert_eq!(report.allocated_bytes_after, allocated_after);

    // Nothing more to remove; the data stays the same through a reopen.
    let again = store.scavenge(ScavengeOptions::default()).unwrap();
    assert_eq!(again.events_removed, 0);
    store.close();
    drop(store);
    let report = verify(fixture.dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{report}");
    assert!(report.scavenged_segments > 0);
    let store = Store::open(
        fixture.dir.path(),
        config(&fixture.clock, fixture.tail_only),
    )
    .unwrap();
    assert_eq!(seen(&store).await, seen_before);
    assert_eq!(all_events(&store).await, expected);
    store.close();
    drop(store);

    // An index rebuilt from the log alone (no index files) reads the same, and the heads
    // are kept: the next appends continue at the right revisions.
    for entry in std::fs::read_dir(fixture.dir.path().join("index")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let store = Store::open(
        fixture.dir.path(),
        config(&fixture.clock, fixture.tail_only),
    )
    .unwrap();
    assert_eq!(seen(&store).await.streams, seen_before.streams);
    assert_eq!(all_events(&store).await, expected);
    for (stream, next) in [("tb-1", 40), ("count-1", 40), ("soft-1", 30)] {
        let result = store
            .append(
                &name(stream),
                ExpectedRevision::Exact(next - 1),
                vec![event(stream, 99)],
            )
            .await
            .unwrap();
        assert_eq!(result.current_revision.0, next, "{stream}");
    }
    store.close();
}

in_both_index_modes!(a_stop_flag_ends_the_run_and_a_rerun_completes_it);
async fn a_stop_flag_ends_the_run_and_a_rerun_completes_it(tail_only: bool) {
    let fixture = fixture(tail_only).await;
    let store = Store::open(
        fixture.dir.path(),
        config(&fixture.clock, fixture.tail_only),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(true));
    let stopped = store
        .scavenge(ScavengeOptions {
            stop: Some(stop),
            throttle_percent: 50,
            ..ScavengeOptions::default()
        })
        .unwrap();
    assert!(stopped.stopped);
    assert_eq!(stopped.events_removed, 0);
    let all_before = all_events(&store).await;
    assert_eq!(
        events_removed_through_deferrals(&store),
        fixture.removable.len() as u64
    );
    assert_eq!(
        all_events(&store).await,
        survivors(&all_before, &fixture.removable)
    );
    store.close();
}

in_both_index_modes!(a_half_written_scavenge_output_is_ignored_and_redone);
async fn a_half_written_scavenge_output_is_ignored_and_redone(tail_only: bool) {
    let fixture = fixture(tail_only).await;
    let log = fixture.dir.path().join("log");
    // What a crash in the middle of writing the copy of segment 0 leaves: part of the
    // segment, then garbage.
    let mut half = std::fs::read(log.join("0000000000.seg")).unwrap();
    half.truncate(300_000);
    half.extend(std::iter::repeat_n(0xa5, 1000));
    std::fs::write(log.join("0000000000.seg.scav"), &half).unwrap();
    let report = verify(fixture.dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "a leftover copy is no problem: {report}");

    let store = Store::open(
        fixture.dir.path(),
        config(&fixture.clock, fixture.tail_only),
    )
    .unwrap();
    assert!(
        !log.join("0000000000.seg.scav").exists(),
        "the open removes it"
    );
    let all_before = all_events(&store).await;
    assert_eq!(
        events_removed_through_deferrals(&store),
        fixture.removable.len() as u64
    );
    assert_eq!(
        all_events(&store).await,
        survivors(&all_before, &fixture.removable)
    );
    store.close();
    drop(store);
    assert!(verify(fixture.dir.path(), &mut |_| {}).unwrap().is_ok());
}

in_both_index_modes!(scavenging_under_concurrent_appends_and_a_live_subscription_misses_nothing);
async fn scavenging_under_concurrent_appends_and_a_live_subscription_misses_nothing(
    tail_only: bool,
) {
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(&clock, tail_only)).unwrap();
    // Every stream keeps its last 3 events: most of the log is removable while it grows.
    for stream in 0..4 {
        store
            .set_stream_metadata(
                &name(&format!("busy-{stream}")),
                ExpectedRevision::Any,
                &StreamMetadata {
                    max_count: Some(3),
                    ..StreamMetadata::default()
                },
            )
            .await
            .unwrap();
    }
    let store_dyn: Arc<Store> = Arc::clone(&store);
    let mut subscription = subscribe_to_all(store_dyn, SubscribeFrom::Start, None, 100_000);
    let appending = Arc::new(AtomicBool::new(true));
    let writer = {
        let store = Arc::clone(&store);
        let appending = Arc::clone(&appending);
        tokio::spawn(async move {
            let mut appended = Vec::new();
            let mut round = 0usize;
            while appending.load(Ordering::Acquire) || round < 400 {
                let stream = format!("busy-{}", round % 4);
                let result = store
                    .append(
                        &name(&stream),
                        ExpectedRevision::Any,
                        vec![event(&stream, round)],
                    )
                    .await
                    .unwrap();
                appended.push(result.position);
                // The last 3 of each stream are always readable while the log moves.
                let StreamSlice::Found { events, .. } = store
                    .read_stream(&name(&stream), ReadStreamOptions::backwards().max_count(3))
                    .await
                    .unwrap()
                else {
                    panic!("{stream} not found");
                };
                assert_eq!(events[0].position, result.position);
                round += 1;
            }
            appended
        })
    };
    let mut removed = 0;
    for _ in 0..6 {
        let store = Arc::clone(&store);
        let report = tokio::task::spawn_blocking(move || {
            store.scavenge(ScavengeOptions::default()).unwrap()
        })
        .await
        .unwrap();
        removed += report.events_removed;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    appending.store(false, Ordering::Release);
    let appended = writer.await.unwrap();
    let last = *appended.last().unwrap();
    let mut delivered = Vec::new();
    while delivered.last() != Some(&last) {
        match subscription.next().await {
            Some(Ok(SubscriptionItem::Event(event))) => delivered.push(event.position),
            Some(Ok(SubscriptionItem::CaughtUp)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let report = tokio::task::spawn_blocking({
        let store = Arc::clone(&store);
        move || store.scavenge(ScavengeOptions::default()).unwrap()
    })
    .await
    .unwrap();
    removed += report.events_removed;
    assert!(
        removed > 0,
        "the scavenges removed events while appends went on"
    );
    // Strictly increasing, and every survivor delivered; nothing delivered that was never
    // appended.
    assert!(delivered.windows(2).all(|pair| pair[0] < pair[1]));
    let delivered_set: HashSet<Position> = delivered.iter().copied().collect();
    let all_after = all_events(&store).await;
    for event in &all_after {
        assert!(
            delivered_set.contains(&event.position),
            "survivor {}@{} was delivered",
            event.revision.0,
            event.stream
        );
    }
    let appended_set: HashSet<Position> = appended.iter().copied().collect();
    for position in &delivered {
        let metadata_event = all_after
            .iter()
            .any(|e| e.position == *position && e.stream.is_metadata_stream());
        assert!(appended_set.contains(position) || metadata_event);
    }
    store.close();
    drop(store);
    let report = verify(dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{report}");
}

/// Whether `needle` occurs in any file under `dir`.
fn occurs_in_some_file(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            occurs_in_some_file(&path, needle)
        } else {
            let bytes = std::fs::read(&path).unwrap();
            bytes.windows(needle.len()).any(|window| window == needle)
        }
    })
}

in_both_index_modes!(forgetting_a_stream_leaves_no_byte_of_its_events_in_the_data_directory);
async fn forgetting_a_stream_leaves_no_byte_of_its_events_in_the_data_directory(tail_only: bool) {
    const MARKER: &str = "PERSONAL-7f3a9c-DATA";
    let clock = ManualClock::starting_now();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(&clock, tail_only)).unwrap();
    append(&store, "other-1", 30).await;
    for round in 0..5 {
        let events = (0..4)
            .map(|index| {
                ProposedEvent::json(
                    "Registered",
                    format!(r#"{{"name":"{MARKER}","round":{round},"i":{index}}}"#),
                )
                .with_metadata(format!(r#"{{"note":"{MARKER}"}}"#))
            })
            .collect();
        store
            .append(&name("person-42"), ExpectedRevision::Any, events)
            .await
            .unwrap();
        append(&store, "other-1", 30).await;
    }
    store
        .tombstone_stream(&name("person-42"), ExpectedRevision::Any)
        .await
        .unwrap();
    let others_before = stream_events(&store, "other-1", ReadStreamOptions::forwards()).await;
    let segment_size_bytes = config(&clock, tail_only).segment_size_bytes;
    let tail_segment = store.last_position().await.unwrap().unwrap().0 / segment_size_bytes;
    store.close();
    drop(store);
    assert!(occurs_in_some_file(dir.path(), MARKER.as_bytes()));

    let report = Store::scavenge_closed(
        dir.path(),
        config(&clock, tail_only),
        ScavengeOptions::default(),
    )
    .unwrap();
    assert_eq!(report.events_removed, 20);
    assert!(
        !occurs_in_some_file(dir.path(), MARKER.as_bytes()),
        "the forgotten events' bytes are gone from every file"
    );
    // The tail segment's only holes are the removed runs: past the log's end it holds
    // zeros again, as a new segment does.
    let tail_allocated_bytes = dir
        .path()
        .join(format!("log/{tail_segment:010}.seg"))
        .metadata()
        .unwrap()
        .blocks()
        * 512;
    assert!(
        tail_allocated_bytes + report.frame_bytes_removed >= segment_size_bytes,
        "{tail_allocated_bytes} bytes allocated in the tail segment, {} removed",
        report.frame_bytes_removed
    );
    let report = verify(dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{report}");

    // The store goes on: the tail segment takes new appends.
    let store = Store::open(dir.path(), config(&clock, tail_only)).unwrap();
    assert!(matches!(
        store
            .read_stream(&name("person-42"), ReadStreamOptions::forwards())
            .await,
        Err(strata_core::Error::StreamDeleted { .. })
    ));
    assert_eq!(
        stream_events(&store, "other-1", ReadStreamOptions::forwards()).await,
        others_before
    );
    append(&store, "other-1", 30).await;
    let all = all_events(&store).await;
    store.close();
    drop(store);
    let store = Store::open(dir.path(), config(&clock, tail_only)).unwrap();
    assert_eq!(all_events(&store).await, all);
    assert_eq!(
        stream_events(&store, "other-1", ReadStreamOptions::forwards())
            .await
            .len(),
        others_before.len() + 30
    );
    store.close();
}
