//! Damaged logs and index files: a torn tail (cut short, or followed by garbage) left by a
//! crash is dropped silently on open; damage that later frames prove was synced is an error
//! naming the segment file and the offset, on open and on read — never wrong data; a
//! damaged index file is rebuilt from the log. (A cut tail that the clean-shutdown marker or
//! the index files vouch for refuses the open: `lost_tail.rs`.)
//!
//! Offsets come from event positions: position = segment index × segment size + offset in
//! the segment file; each frame starts with its length as a little-endian u32.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::{RngCore, SeedableRng, rngs::StdRng};
use strata_core::{
    Error, EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions, ReadStreamOptions,
    RecordedEvent, StreamName, StreamState,
};
use strata_engine::{Config, Store, verify};
use tempfile::TempDir;

const EVENT_TYPE: &str = "Damaged";

fn config() -> Config {
    Config::small_for_tests()
}

/// The index kept whole in memory: its open reads every index file through, so a damaged
/// one is found and the index rebuilt from the log (a tail-only open counts the files the
/// runs cover from their summaries and never reads them).
fn open_whole(dir: &Path) -> Arc<Store> {
    let config = Config {
        index_memory_tail_only: false,
        ..config()
    };
    Store::open(dir, config).expect("the store opens")
}

fn segment_size() -> u64 {
    config().segment_size_bytes
}

fn segment_path(dir: &Path, position: u64) -> PathBuf {
    dir.join("log")
        .join(format!("{:010}.seg", position / segment_size()))
}

fn segment_name(position: u64) -> String {
    format!("{:010}.seg", position / segment_size())
}

fn offset_of(position: u64) -> u64 {
    position % segment_size()
}

fn frame_len_at(dir: &Path, position: u64) -> u64 {
    let mut word = [0u8; 4];
    std::fs::File::open(segment_path(dir, position))
        .unwrap()
        .read_exact_at(&mut word, offset_of(position))
        .unwrap();
    u64::from(u32::from_le_bytes(word))
}

fn write_at(dir: &Path, position: u64, bytes: &[u8]) {
    let file = OpenOptions::new()
        .write(true)
        .open(segment_path(dir, position))
        .unwrap();
    file.write_all_at(bytes, offset_of(position)).unwrap();
    file.sync_all().unwrap();
}

fn flip_byte_at(dir: &Path, position: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment_path(dir, position))
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset_of(position)).unwrap();
    byte[0] ^= 0x40;
    file.write_all_at(&byte, offset_of(position)).unwrap();
    file.sync_all().unwrap();
}

/// What a crash leaves: no clean-shutdown marker and no index file, so opening replays the
/// whole log.
fn remove_clean_marker_and_index_files(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("CLEAN"));
    for entry in std::fs::read_dir(dir.join("index")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
}

fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("index"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "idx"))
        .collect();
    files.sort();
    files
}

fn event(number: usize, data_bytes: usize) -> ProposedEvent {
    let mut data = format!("event {number} ").into_bytes();
    data.resize(data_bytes.max(data.len()), b'a' + (number % 26) as u8);
    ProposedEvent::binary(EVENT_TYPE, data).with_metadata(format!("meta {number}"))
}

fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

fn open(dir: &Path) -> Arc<Store> {
    Store::open(dir, config()).expect("the store opens")
}

async fn read_stream(store: &Store, name: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(&stream(name), ReadStreamOptions::forwards())
        .await
        .unwrap()
        .into_events()
}

async fn read_all(store: &Store) -> Vec<RecordedEvent> {
    store
        .read_all(ReadAllOptions::forwards())
        .await
        .unwrap()
        .events
}

fn close_and_verify_ok(store: Arc<Store>, dir: &Path) {
    store.close();
    drop(store);
    let report = verify(dir, &mut |_| {}).unwrap();
    assert!(report.is_ok(), "verify:\n{report}");
    assert!(!report.torn_tail, "verify:\n{report}");
}

fn assert_corrupt_at(result: Result<impl std::fmt::Debug, Error>, position: u64, what: &str) {
    match result {
        Err(Error::Corrupt { detail }) => {
            assert!(
                detail.contains(&segment_name(position))
                    && detail.contains(&format!("offset {}", offset_of(position))),
                "{what}: the error does not name {} offset {}: {detail}",
                segment_name(position),
                offset_of(position)
            );
        }
        other => panic!("{what}: expected Error::Corrupt, got {other:?}"),
    }
}

fn assert_corrupt_in_segment(
    result: Result<impl std::fmt::Debug, Error>,
    position: u64,
    what: &str,
) {
    match result {
        Err(Error::Corrupt { detail }) => assert!(
            detail.contains(&segment_name(position)),
            "{what}: the error does not name {}: {detail}",
            segment_name(position)
        ),
        other => panic!("{what}: expected Error::Corrupt, got {other:?}"),
    }
}

/// A store holding 20 single-event appends to `kept` and then one 3-event append to
/// `kept` (the last transaction in the log), closed. Returns the recorded events.
async fn store_ending_in_a_batch(dir: &Path) -> (Vec<RecordedEvent>, Vec<RecordedEvent>) {
    let store = open(dir);
    for number in 0..20 {
        store
            .append(
                &stream("kept"),
                ExpectedRevision::Any,
                vec![event(number, 300)],
            )
            .await
            .unwrap();
    }
    let batch = (20..23).map(|number| event(number, 500)).collect();
    store
        .append(&stream("kept"), ExpectedRevision::Exact(19), batch)
        .await
        .unwrap();
    let events = read_stream(&store, "kept").await;
    store.close();
    let (kept, last_batch) = events.split_at(20);
    (kept.to_vec(), last_batch.to_vec())
}

/// Where a torn tail is cut, relative to the frames of the last transaction (a 3-event
/// batch).
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// In the middle of the batch's last (commit) frame.
    InCommit,
    /// Just before the commit frame: the first two frames are whole but uncommitted.
    BeforeCommit,
    /// In the middle of the batch's first frame.
    InFirst,
}

/// How the cut is made.
#[derive(Clone, Copy, Debug)]
enum Truncation {
    /// The segment file is made shorter (`set_len`).
    FileLength,
    /// The file keeps its length and everything from the cut on is zero.
    Zeroes,
}

async fn check_torn_tail_recovers(cut: Cut, truncation: Truncation) {
    let case = format!("{cut:?}, {truncation:?}");
    let dir = TempDir::new().unwrap();
    let (kept, batch) = store_ending_in_a_batch(dir.path()).await;
    let cut_at = match cut {
        Cut::InCommit => {
            let position = batch[2].position.0;
            position + frame_len_at(dir.path(), position) / 2
        }
        Cut::BeforeCommit => batch[2].position.0,
        Cut::InFirst => {
            let position = batch[0].position.0;
            position + frame_len_at(dir.path(), position) / 2 + 4
        }
    };
    // A torn write happens only in a crash, which leaves no clean-shutdown marker and no
    // index file reaching past what was synced.
    remove_clean_marker_and_index_files(dir.path());
    match truncation {
        Truncation::FileLength => {
            let file = OpenOptions::new()
                .write(true)
                .open(segment_path(dir.path(), cut_at))
                .unwrap();
            file.set_len(offset_of(cut_at)).unwrap();
        }
        Truncation::Zeroes => {
            let zeros = vec![0u8; (segment_size() - offset_of(cut_at)) as usize];
            write_at(dir.path(), cut_at, &zeros);
        }
    }

    let store = Store::open(dir.path(), config())
        .unwrap_or_else(|error| panic!("{case}: a torn tail must not stop the open: {error}"));
    assert_eq!(read_stream(&store, "kept").await, kept, "{case}");
    assert_eq!(
        read_all(&store).await,
        kept,
        "{case}: no part of the torn batch is seen"
    );
    assert_eq!(
        store.stream_state(&stream("kept")).await.unwrap(),
        StreamState::At(kept[19].revision),
        "{case}"
    );
    let result = store
        .append(
            &stream("kept"),
            ExpectedRevision::Exact(19),
            vec![event(99, 700)],
        )
        .await
        .unwrap_or_else(|error| panic!("{case}: appending after the torn tail: {error}"));
    assert_eq!(result.current_revision.0, 20, "{case}");
    close_and_verify_ok(store, dir.path());

    let store = open(dir.path());
    let events = read_stream(&store, "kept").await;
    assert_eq!(events.len(), 21, "{case}");
    assert_eq!(events[..20], kept[..], "{case}");
    assert_eq!(events[20].data, event(99, 700).data, "{case}");
    assert_eq!(events[20].position, result.position, "{case}");
    assert_eq!(read_all(&store).await, events, "{case}");
    close_and_verify_ok(store, dir.path());
}

#[tokio::test]
async fn a_truncated_tail_recovers_silently() {
    for cut in [Cut::InCommit, Cut::BeforeCommit, Cut::InFirst] {
        for truncation in [Truncation::FileLength, Truncation::Zeroes] {
            check_torn_tail_recovers(cut, truncation).await;
        }
    }
}

/// What a torn write left after the last committed frame.
#[derive(Clone, Copy, Debug)]
enum Leftover {
    RandomBytes,
    /// A frame whose length word reached the disk but whose body did not.
    LengthWordOnly,
    /// A whole frame with its checksum cut off.
    FrameWithoutChecksum,
}

#[tokio::test]
async fn garbage_after_the_last_commit_is_dropped() {
    let mut random = StdRng::seed_from_u64(0x00c0_ffee);
    for leftover in [
        Leftover::RandomBytes,
        Leftover::LengthWordOnly,
        Leftover::FrameWithoutChecksum,
    ] {
        let dir = TempDir::new().unwrap();
        let (kept, batch) = store_ending_in_a_batch(dir.path()).await;
        let mut all = kept.clone();
        all.extend(batch.iter().cloned());
        let last = batch[2].position.0;
        let end = last + frame_len_at(dir.path(), last);
        let bytes = match leftover {
            Leftover::RandomBytes => {
                let mut bytes = vec![0u8; 4096];
                random.fill_bytes(&mut bytes);
                bytes
            }
            Leftover::LengthWordOnly => {
                let mut bytes = vec![0u8; 4096];
                bytes[..4].copy_from_slice(&4096u32.to_le_bytes());
                bytes
            }
            Leftover::FrameWithoutChecksum => {
                let mut frame = vec![0u8; frame_len_at(dir.path(), last) as usize];
                std::fs::File::open(segment_path(dir.path(), last))
                    .unwrap()
                    .read_exact_at(&mut frame, offset_of(last))
                    .unwrap();
                frame[4..8].fill(0);
                frame
            }
        };
        // A torn write happens only in a crash, which leaves no clean-shutdown marker.
        let _ = std::fs::remove_file(dir.path().join("CLEAN"));
        write_at(dir.path(), end, &bytes);

        let store = Store::open(dir.path(), config())
            .unwrap_or_else(|error| panic!("{leftover:?}: the open fails: {error}"));
        assert_eq!(read_stream(&store, "kept").await, all, "{leftover:?}");
        assert_eq!(read_all(&store).await, all, "{leftover:?}");
        let result = store
            .append(
                &stream("kept"),
                ExpectedRevision::Exact(22),
                vec![event(77, 100)],
            )
            .await
            .unwrap();
        assert_eq!(
            result.position.0, end,
            "{leftover:?}: the next frame goes where the garbage was"
        );
        close_and_verify_ok(store, dir.path());

        let store = open(dir.path());
        let events = read_stream(&store, "kept").await;
        assert_eq!(events.len(), 24, "{leftover:?}");
        assert_eq!(events[..23], all[..], "{leftover:?}");
        assert_eq!(events[23].data, event(77, 100).data, "{leftover:?}");
        close_and_verify_ok(store, dir.path());
    }
}

/// Places in an event frame to damage: its first bytes are
/// `[len u32][crc u32][kind u8][flags u8][stream len u16][type len u16][2][revision u64][id 16]`.
const FRAME_PLACES: [(&str, u64); 7] = [
    ("length word", 0),
    ("checksum", 4),
    ("flags", 9),
    ("revision", 16),
    ("event id", 24),
    ("stream name", 56),
    ("data", 56 + 1 + EVENT_TYPE.len() as u64 + 5),
];

/// A closed store with 40 events alternating between streams `a` and `b` (one event per
/// append); returns them as recorded.
async fn store_with_two_streams(dir: &Path) -> (Vec<RecordedEvent>, Vec<RecordedEvent>) {
    let store = open(dir);
    for number in 0..40 {
        let name = if number % 2 == 0 { "a" } else { "b" };
        store
            .append(
                &stream(name),
                ExpectedRevision::Any,
                vec![event(number, 200)],
            )
            .await
            .unwrap();
    }
    let a = read_stream(&store, "a").await;
    let b = read_stream(&store, "b").await;
    store.close();
    (a, b)
}

#[tokio::test]
async fn a_flipped_byte_inside_the_log_is_an_error_naming_segment_and_offset() {
    let places = FRAME_PLACES.iter().copied().chain([("trailer", u64::MAX)]);
    for (place, offset_in_frame) in places {
        let dir = TempDir::new().unwrap();
        let (a, b) = store_with_two_streams(dir.path()).await;
        let damaged = &a[2];
        let frame_len = frame_len_at(dir.path(), damaged.position.0);
        let offset_in_frame = offset_in_frame.min(frame_len - 4);
        flip_byte_at(dir.path(), damaged.position.0 + offset_in_frame);
        let at = damaged.position.0;
        let what = |read: &str| format!("{place} flipped, {read}");

        let store = open(dir.path());
        assert_corrupt_at(
            store
                .read_stream(&stream("a"), ReadStreamOptions::forwards())
                .await,
            at,
            &what("reading the stream"),
        );
        assert_corrupt_at(
            store
                .read_stream(&stream("a"), ReadStreamOptions::backwards())
                .await,
            at,
            &what("reading the stream backwards"),
        );
        assert_corrupt_at(
            store.read_all(ReadAllOptions::forwards()).await,
            at,
            &what("reading $all"),
        );
        assert_corrupt_in_segment(
            store.read_all(ReadAllOptions::backwards()).await,
            at,
            &what("reading $all backwards"),
        );
        // What does not touch the damaged frame reads as written.
        assert_eq!(read_stream(&store, "b").await, b, "{place}");
        let after = store
            .read_stream(&stream("a"), ReadStreamOptions::forwards().from_revision(3))
            .await
            .unwrap()
            .into_events();
        assert_eq!(after, a[3..], "{place}");
        let before = store
            .read_all(ReadAllOptions::forwards().max_count(4))
            .await
            .unwrap();
        assert_eq!(
            before.events,
            [a[0].clone(), b[0].clone(), a[1].clone(), b[1].clone()],
            "{place}"
        );
        store.close();
        drop(store);

        let report = verify(dir.path(), &mut |_| {}).unwrap();
        assert!(!report.is_ok(), "{place}: verify finds nothing:\n{report}");
        assert!(
            report
                .problems
                .iter()
                .any(|problem| problem.contains(&segment_name(at))
                    && problem.contains(&format!("offset {}", offset_of(at)))),
            "{place}: verify does not name {} offset {}:\n{report}",
            segment_name(at),
            offset_of(at)
        );
    }
}

#[tokio::test]
async fn a_flipped_byte_followed_by_valid_frames_stops_the_open() {
    for (place, offset_in_frame) in FRAME_PLACES {
        let dir = TempDir::new().unwrap();
        let (a, _) = store_with_two_streams(dir.path()).await;
        let at = a[10].position.0;
        remove_clean_marker_and_index_files(dir.path());
        flip_byte_at(dir.path(), at + offset_in_frame);

        assert_corrupt_at(
            Store::open(dir.path(), config()).map(|_| ()),
            at,
            &format!("{place} flipped, opening"),
        );
        let report = verify(dir.path(), &mut |_| {}).unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|problem| problem.contains(&segment_name(at))
                    && problem.contains(&format!("offset {}", offset_of(at)))),
            "{place}: verify does not name {} offset {}:\n{report}",
            segment_name(at),
            offset_of(at)
        );
    }
}

/// How an index file is damaged.
#[derive(Clone, Copy, Debug)]
enum IndexDamage {
    FlippedByte,
    CutShort,
    Missing,
    /// Every file's header announces u64::MAX streams (found by fuzz/index_file: the sum
    /// of the announced counts overflowed).
    HugeStreamCounts,
}

#[tokio::test]
async fn a_damaged_index_file_is_rebuilt_from_the_log() {
    for damage in [
        IndexDamage::FlippedByte,
        IndexDamage::CutShort,
        IndexDamage::Missing,
        IndexDamage::HugeStreamCounts,
    ] {
        let dir = TempDir::new().unwrap();
        let store = open_whole(dir.path());
        // Enough log for several index checkpoints and a second segment.
        for number in 0..300 {
            let name = format!("s-{}", number % 7);
            store
                .append(
                    &stream(&name),
                    ExpectedRevision::Any,
                    vec![event(number, 4_000)],
                )
                .await
                .unwrap();
        }
        let all = read_all(&store).await;
        store.close();
        drop(store);
        let files = index_files(dir.path());
        assert!(
            files.len() >= 2,
            "expected several index files, found {files:?}"
        );
        let target = &files[0];
        let length = std::fs::metadata(target).unwrap().len();
        match damage {
            IndexDamage::FlippedByte => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(target)
                    .unwrap();
                let mut byte = [0u8; 1];
                file.read_exact_at(&mut byte, length / 2).unwrap();
                file.write_all_at(&[byte[0] ^ 0x40], length / 2).unwrap();
            }
            IndexDamage::CutShort => {
                OpenOptions::new()
                    .write(true)
                    .open(target)
                    .unwrap()
                    .set_len(length / 2)
                    .unwrap();
            }
            IndexDamage::Missing => std::fs::remove_file(target).unwrap(),
            IndexDamage::HugeStreamCounts => {
                for file in &files {
                    let file = OpenOptions::new().write(true).open(file).unwrap();
                    // The stream count of the header (docs/ON_DISK_FORMAT.md).
                    file.write_all_at(&u64::MAX.to_le_bytes(), 32).unwrap();
                }
            }
        }

        let store = open_whole(dir.path());
        assert_eq!(read_all(&store).await, all, "{damage:?}");
        for number in 0..7 {
            let name = format!("s-{number}");
            let expected: Vec<RecordedEvent> = all
                .iter()
                .filter(|event| event.stream.as_str() == name)
                .cloned()
                .collect();
            assert_eq!(read_stream(&store, &name).await, expected, "{damage:?}");
        }
        let result = store
            .append(
                &stream("s-0"),
                ExpectedRevision::Any,
                vec![event(1_000, 10)],
            )
            .await
            .unwrap();
        close_and_verify_ok(store, dir.path());

        let store = open_whole(dir.path());
        assert_eq!(read_all(&store).await.len(), all.len() + 1, "{damage:?}");
        assert_eq!(
            store.last_position().await.unwrap(),
            Some(result.position),
            "{damage:?}"
        );
        close_and_verify_ok(store, dir.path());
    }
}

/// Regression (review finding): a zeroed length word inside the log read as the clean end
/// of the log, and opening then zeroed every acknowledged frame after it. Now the open
/// looks past the stop and reports corruption, and `verify` names the place.
#[tokio::test]
async fn a_zeroed_length_word_followed_by_valid_frames_stops_the_open() {
    let dir = TempDir::new().unwrap();
    let (a, b) = store_with_two_streams(dir.path()).await;
    let at = a[10].position.0;
    remove_clean_marker_and_index_files(dir.path());
    write_at(dir.path(), at, &[0u8; 4]);

    assert_corrupt_at(
        Store::open(dir.path(), config()).map(|_| ()),
        at,
        "zeroed length word, opening",
    );
    let report = verify(dir.path(), &mut |_| {}).unwrap();
    assert!(
        !report.is_ok()
            && report
                .problems
                .iter()
                .any(|problem| problem.contains(&segment_name(at))),
        "verify reports the stop at {}:\n{report}",
        segment_name(at)
    );
    // Nothing was erased by the failed open: the frames after the damage are still there.
    let last = b.last().unwrap().position.0;
    assert_ne!(
        frame_len_at(dir.path(), last),
        0,
        "the last frame survives the failed open"
    );
}
