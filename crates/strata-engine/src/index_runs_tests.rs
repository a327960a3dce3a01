//! The store's sorted runs: written beside the index files, merged, and rebuilt at open
//! when damaged or missing; always holding exactly what the in-memory index holds.

use std::path::{Path, PathBuf};

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamMetadata, StreamName};

use super::runs_dir;
use crate::config::Config;
use crate::format::SEGMENT_HEADER_BYTES;
use crate::index::live_positions;
use crate::run_file::{KIND_STREAM, RunCheck, open_runs};
use crate::store::Store;

/// These tests compare the runs with an index that keeps every position in memory.
fn whole_config() -> Config {
    Config {
        index_memory_tail_only: false,
        ..Config::small_for_tests()
    }
}

fn name(text: &str) -> StreamName {
    StreamName::new(text).unwrap()
}

/// Appends to streams of a few categories, sets metadata, deletes and tombstones some,
/// saving the index several times (each save writes a run).
async fn fill(store: &Store, round: usize) {
    for batch in 0..6 {
        for number in 0..20 {
            let stream = name(&format!("cat{}-{round}-{number}", number % 3));
            let events = (0..3)
                .map(|event| {
                    ProposedEvent::json(format!("Type{}", event % 2), "{}")
                        .with_tags([format!("tag{}", (number + event) % 4)])
                        .unwrap()
                })
                .collect();
            store
                .append(&stream, ExpectedRevision::Any, events)
                .await
                .unwrap();
            if batch == 2 && number % 5 == 0 {
                let metadata = StreamMetadata {
                    max_count: Some(4 + number as u64),
                    ..StreamMetadata::default()
                };
                store
                    .set_stream_metadata(&stream, ExpectedRevision::Any, &metadata)
                    .await
                    .unwrap();
            }
        }
        store.checkpoint_indexes().unwrap();
    }
    store
        .tombstone_stream(&name(&format!("cat0-{round}-3")), ExpectedRevision::Any)
        .await
        .unwrap();
    store
        .delete_stream(&name(&format!("cat1-{round}-4")), ExpectedRevision::Any)
        .await
        .unwrap();
}

/// What reads of every stream of round 0 and of the category and event-type streams
/// answer (events by stream, revision and position, or the error).
async fn read_everything(store: &Store) -> Vec<String> {
    let mut streams: Vec<String> = (0..20)
        .map(|number| format!("cat{}-0-{number}", number % 3))
        .collect();
    streams.extend(
        [
            "$ce-cat0",
            "$ce-cat1",
            "$et-Type0",
            "$et-Type1",
            "$$cat0-0-5",
        ]
        .map(String::from),
    );
    let mut answers = Vec::new();
    for stream in streams {
        let read = store
            .read_stream(&name(&stream), strata_core::ReadStreamOptions::forwards())
            .await;
        answers.push(match read {
            Ok(slice) => format!(
                "{stream}: {:?}",
                slice
                    .into_events()
                    .iter()
                    .map(|event| (event.stream.to_string(), event.revision, event.position))
                    .collect::<Vec<_>>()
            ),
            Err(error) => format!("{stream}: {error}"),
        });
    }
    answers
}

fn run_paths(data_dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(runs_dir(data_dir))
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "run"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
}

/// After `store` is closed: its runs cover the whole log and say exactly what its
/// in-memory index says, key by key, in both directions. Returns how many runs there are.
fn assert_runs_match_index(store: &Store, data_dir: &Path) -> usize {
    let durable_end = store
        .shared
        .durable_end
        .load(std::sync::atomic::Ordering::Acquire);
    let (runs, dropped) =
        open_runs(&runs_dir(data_dir), SEGMENT_HEADER_BYTES, RunCheck::Whole).unwrap();
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(runs.covers_to(), Some(durable_end));
    let index = store.shared.index.read();
    let mut keys = 0;
    for (stream, entry) in index.streams() {
        let live = live_positions(&entry.positions);
        let removed = (entry.positions.len() - live.len()) as u64;
        let key = stream.as_str().as_bytes();
        let head = runs
            .head(KIND_STREAM, key)
            .unwrap()
            .unwrap_or_else(|| panic!("no run holds stream {stream}"));
        keys += 1;
        assert_eq!(head.end_revision, entry.positions.len() as u64, "{stream}");
        assert_eq!(head.tombstone, entry.tombstone_position, "{stream}");
        assert_eq!(
            head.metadata,
            entry.metadata.as_ref().map(|metadata| metadata.to_json()),
            "{stream}"
        );
        assert_eq!(
            runs.positions(KIND_STREAM, key, removed, u64::MAX).unwrap(),
            live,
            "{stream}"
        );
    }
    for (kind, key, postings) in index.secondary.iter() {
        keys += 1;
        assert_eq!(
            runs.positions(kind as u8, key.as_bytes(), 0, u64::MAX)
                .unwrap(),
            postings.positions,
            "{key}"
        );
    }
    // And nothing more.
    let mut in_runs = std::collections::HashSet::new();
    for run in runs.runs() {
        for entry in run.scan().unwrap() {
            let entry = entry.unwrap();
            in_runs.insert((entry.kind, entry.key));
        }
    }
    assert_eq!(in_runs.len(), keys);
    runs.runs().len()
}

#[tokio::test]
async fn runs_are_written_merged_and_match_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = whole_config();
    let store = Store::open(dir.path(), config.clone()).unwrap();
    fill(&store, 0).await;
    store.close();
    // Seven saves (six and the close's); merging keeps far fewer runs.
    let runs = assert_runs_match_index(&store, dir.path());
    assert!(runs <= 3, "{runs} runs");
    drop(store);

    let store = Store::open(dir.path(), config).unwrap();
    fill(&store, 1).await;
    store.close();
    assert_runs_match_index(&store, dir.path());
}

/// Damages a run in one of the ways `damage` says, reopens, and checks that the runs are
/// rebuilt to match the index and that reads did not change.
async fn rebuilt_after(damage: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let config = whole_config();
    let store = Store::open(dir.path(), config.clone()).unwrap();
    fill(&store, 0).await;
    store.close();
    assert_runs_match_index(&store, dir.path());
    let before = read_everything(&store).await;
    drop(store);

    damage(dir.path());

    let store = Store::open(dir.path(), config.clone()).unwrap();
    assert_eq!(read_everything(&store).await, before);
    store
        .append(
            &name("cat2-after"),
            ExpectedRevision::Any,
            vec![ProposedEvent::json("Type0", "{}")],
        )
        .await
        .unwrap();
    store.close();
    assert_runs_match_index(&store, dir.path());
    drop(store);
    // And the rebuilt runs open cleanly again.
    let store = Store::open(dir.path(), config).unwrap();
    store.close();
    assert_runs_match_index(&store, dir.path());
}

#[tokio::test]
async fn a_corrupted_run_is_rebuilt() {
    rebuilt_after(|data_dir| {
        let paths = run_paths(data_dir);
        let biggest = paths
            .iter()
            .max_by_key(|path| std::fs::metadata(path).unwrap().len())
            .unwrap();
        let mut bytes = std::fs::read(biggest).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(biggest, bytes).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_run_cut_short_is_rebuilt() {
    rebuilt_after(|data_dir| {
        let paths = run_paths(data_dir);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&paths[0])
            .unwrap();
        let length = file.metadata().unwrap().len();
        file.set_len(length - 10).unwrap();
    })
    .await;
}

#[tokio::test]
async fn missing_newest_run_is_rebuilt() {
    // As after a crash between writing an index file and its run.
    rebuilt_after(|data_dir| {
        let paths = run_paths(data_dir);
        std::fs::remove_file(paths.last().unwrap()).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_deleted_runs_directory_is_rebuilt() {
    rebuilt_after(|data_dir| {
        std::fs::remove_dir_all(runs_dir(data_dir)).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_deleted_index_directory_is_rebuilt() {
    rebuilt_after(|data_dir| {
        std::fs::remove_dir_all(data_dir.join("index")).unwrap();
        std::fs::remove_dir_all(runs_dir(data_dir)).unwrap();
    })
    .await;
}

#[tokio::test]
async fn runs_past_the_index_files_are_dropped() {
    // Index files removed (as a repair does) while the runs stay: the runs reach past
    // where the index now starts, so they are dropped and rebuilt with the index.
    rebuilt_after(|data_dir| {
        for (_, path) in crate::index_file::list_index_files(&data_dir.join("index")).unwrap() {
            std::fs::remove_file(path).unwrap();
        }
        assert!(!run_paths(data_dir).is_empty());
    })
    .await;
}

#[tokio::test]
async fn verify_checks_the_runs_against_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), whole_config()).unwrap();
    fill(&store, 0).await;
    store.close();
    drop(store);
    let report = crate::verify::verify(dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{report}");
    assert!(report.index_runs >= 1);

    // A summary that would be trusted (its checksum holds, it names its index file) but
    // counts one event too many.
    let index_file = crate::index_file::list_index_files(&dir.path().join("index")).unwrap()[0]
        .1
        .clone();
    let good_summary = crate::index_summary::read_summary(&index_file).unwrap();
    let mut wrong = good_summary.clone();
    wrong.events += 1;
    crate::index_summary::write_summary(&index_file, &wrong).unwrap();
    let report = crate::verify::verify(dir.path(), &mut |_| {}).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.contains("summary") && problem.contains("does not match")),
        "{report}"
    );
    crate::index_summary::write_summary(&index_file, &good_summary).unwrap();
    assert!(
        crate::verify::verify(dir.path(), &mut |_| {})
            .unwrap()
            .is_ok()
    );

    // A run whose entries are intact but wrong (rewritten with a valid checksum): one
    // position of one stream moved by a byte.
    let path = run_paths(dir.path())[0].clone();
    let run = crate::run_file::Run::open(&path).unwrap();
    let (from, to) = (run.covers_from, run.covers_to);
    let mut entries: Vec<_> = run.scan().unwrap().map(Result::unwrap).collect();
    drop(run);
    let entry = entries
        .iter_mut()
        .find(|entry| entry.kind == KIND_STREAM && entry.positions.len() >= 2)
        .unwrap();
    entry.positions[0] += 1;
    crate::run_file::write_run(&path, from, to, entries).unwrap();
    let report = crate::verify::verify(dir.path(), &mut |_| {}).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.contains("does not match the log")),
        "{report}"
    );

    // A damaged run: in a record (found by reading every block, which verify does, and
    // left in place), then in its trailer (found at open).
    let good = std::fs::read(&path).unwrap();
    for at in [good.len() / 2, good.len() - 5] {
        let mut bytes = good.clone();
        bytes[at] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let report = crate::verify::verify(dir.path(), &mut |_| {}).unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|problem| problem.contains("fails") && problem.contains("checksum")),
            "{report}: {:?}",
            report.problems
        );
        assert!(path.exists(), "verify leaves the files alone");
    }
}

/// Appends 40 events of 8 KiB to `stream`.
async fn append_big(store: &Store, stream: &StreamName) {
    let data = format!("{{\"pad\":\"{}\"}}", "x".repeat(8 * 1024));
    let events = (0..40)
        .map(|_| ProposedEvent::json("Big", data.clone()))
        .collect();
    store
        .append(stream, ExpectedRevision::Any, events)
        .await
        .unwrap();
}

/// Scavenges the closed store in `dir`, which must remove events.
fn scavenge_removing_events(dir: &Path, config: &Config) {
    let report =
        Store::scavenge_closed(dir, config.clone(), strata_core::ScavengeOptions::default())
            .unwrap();
    assert!(report.events_removed > 0);
}

/// Sets `$maxCount` of `stream`: a scavenge then removes its older events.
async fn limit(store: &Store, stream: &StreamName, max_count: u64) {
    let metadata = StreamMetadata {
        max_count: Some(max_count),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(stream, ExpectedRevision::Any, &metadata)
        .await
        .unwrap();
}

/// After a scavenge, an index rebuilt from the log marks removed revisions; the runs
/// written from it (whole, and rebuilt from it after a run is lost) leave them out and
/// still match the index, and verify passes.
#[tokio::test]
async fn runs_of_an_index_rebuilt_after_a_scavenge_match_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = whole_config();
    let store = Store::open(dir.path(), config.clone()).unwrap();
    for number in 0..8 {
        let stream = name(&format!("big{}-{number}", number % 2));
        append_big(&store, &stream).await;
        limit(&store, &stream, if number == 0 { 0 } else { 3 }).await;
    }
    store.close();
    drop(store);
    scavenge_removing_events(dir.path(), &config);

    // The index and the runs rebuilt from the scavenged log.
    for (_, path) in crate::index_file::list_index_files(&dir.path().join("index")).unwrap() {
        std::fs::remove_file(path).unwrap();
    }
    std::fs::remove_dir_all(runs_dir(dir.path())).unwrap();
    let store = Store::open(dir.path(), config.clone()).unwrap();
    store.close();
    {
        let index = store.shared.index.read();
        let removed = index
            .streams()
            .filter(|(_, entry)| entry.positions.first() == Some(&crate::index::REMOVED_POSITION))
            .count();
        assert!(removed > 0, "the rebuilt index marks removed revisions");
    }
    assert_runs_match_index(&store, dir.path());
    drop(store);

    // The runs lost again: rebuilt from the index files (which hold the marks).
    std::fs::remove_dir_all(runs_dir(dir.path())).unwrap();
    let store = Store::open(dir.path(), config).unwrap();
    store.close();
    assert_runs_match_index(&store, dir.path());
    drop(store);
    let report = crate::verify::verify(dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{report}");
}

/// An index file over a range a scavenge rewrote is not written again from the log: it
/// held the removed events under their secondary keys, the log no longer does.
#[tokio::test]
async fn a_covered_index_file_over_a_scavenged_range_is_not_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::small_for_tests();
    let store = Store::open(dir.path(), config.clone()).unwrap();
    for number in 0..8 {
        let stream = name(&format!("big-{number}"));
        append_big(&store, &stream).await;
        limit(&store, &stream, 2).await;
    }
    fill(&store, 0).await;
    store.close();
    drop(store);
    scavenge_removing_events(dir.path(), &config);
    // More files after the scavenged segments.
    let store = Store::open(dir.path(), config.clone()).unwrap();
    for _ in 0..8 {
        append_big(&store, &name("kept-1")).await;
    }
    fill(&store, 1).await;
    store.close();
    drop(store);

    let store = Store::open(dir.path(), config).unwrap();
    store.close();
    let runs = std::sync::Arc::clone(store.shared.index.read().dropped_runs().expect("tail-only"));
    let covered =
        crate::index_file_mend::covered_files(&dir.path().join("index"), runs.covers_to().unwrap())
            .unwrap();
    let first = &covered[0];
    assert!(
        store.shared.segments.is_scavenged(0),
        "the first segment was scavenged"
    );
    let error =
        crate::index_file_mend::rewrite_from_log(first, &store.shared.segments, &runs, true)
            .unwrap_err();
    assert!(error.to_string().contains("scavenged"), "{error}");
    // A file past the scavenged segments is still written again.
    let last = covered
        .iter()
        .rev()
        .find(|file| {
            let segments = &store.shared.segments;
            let to = file.covers_to.expect("a range");
            !(segments.segment_of(file.covers_from)..=segments.segment_of(to - 1))
                .any(|segment| segments.is_scavenged(segment))
        })
        .expect("a file after the scavenged segments");
    crate::index_file_mend::rewrite_from_log(last, &store.shared.segments, &runs, true).unwrap();
}

#[tokio::test]
async fn runs_deleted_under_a_running_store_are_rebuilt_while_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), whole_config()).unwrap();
    fill(&store, 0).await;
    std::fs::remove_dir_all(runs_dir(dir.path())).unwrap();
    fill(&store, 1).await;
    // Rebuilt by the first save after the removal, before the close.
    assert!(!run_paths(dir.path()).is_empty());
    store.close();
    assert_runs_match_index(&store, dir.path());
}

/// Waits (up to a minute) until the index saver has written `path` again whole.
fn wait_until_whole(path: &Path) -> Vec<u8> {
    for _ in 0..3000 {
        if let Ok(bytes) = std::fs::read(path)
            && crate::index_file::summarize(&bytes).is_ok()
        {
            return bytes;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("index file {} was not written again", path.display());
}

/// A tail-only store whose index files the runs cover are damaged by `damage` (given the
/// index files, by sequence): the open counts them from their summaries, reads answer
/// as before, the index saver writes each damaged file again from the log, byte for byte
/// as it was saved, `verify` passes, and a run damaged afterwards is rebuilt from them.
async fn index_files_mended_after(damage: impl FnOnce(&[PathBuf]) -> Vec<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::small_for_tests();
    assert!(config.index_memory_tail_only);
    let store = Store::open(dir.path(), config.clone()).unwrap();
    fill(&store, 0).await;
    fill(&store, 1).await;
    store.close();
    let before = read_everything(&store).await;
    drop(store);
    let files: Vec<PathBuf> = crate::index_file::list_index_files(&dir.path().join("index"))
        .unwrap()
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    assert!(files.len() >= 6, "{files:?}");
    let saved: Vec<Vec<u8>> = files
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect();

    let damaged = damage(&files);

    let store = Store::open(dir.path(), config.clone()).unwrap();
    assert_eq!(read_everything(&store).await, before);
    for &number in &damaged {
        let mended = wait_until_whole(&files[number]);
        let first_difference = mended
            .iter()
            .zip(&saved[number])
            .position(|(mended, saved)| mended != saved);
        assert!(
            mended == saved[number],
            "index file {number} is not written again as it was saved: {} bytes, not {}, \
             first difference at {first_difference:?}",
            mended.len(),
            saved[number].len()
        );
    }
    store.close();
    drop(store);
    let report = crate::verify::verify(dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{report}");

    // The runs now heal from the mended files: damage the biggest run's body.
    let paths = run_paths(dir.path());
    let biggest = paths
        .iter()
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(biggest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(biggest, bytes).unwrap();
    let store = Store::open(dir.path(), config).unwrap();
    assert_eq!(read_everything(&store).await, before);
    store.close();
    drop(store);
    // And an open that loads every index file whole agrees.
    let store = Store::open(dir.path(), whole_config()).unwrap();
    assert_eq!(read_everything(&store).await, before);
    store.close();
}

#[tokio::test]
async fn a_covered_index_file_with_a_damaged_body_is_written_again() {
    // The length, header and trailing checksum stay as the summary recorded them: only
    // reading the file through finds the damage.
    index_files_mended_after(|files| {
        let mut bytes = std::fs::read(&files[2]).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x08;
        std::fs::write(&files[2], bytes).unwrap();
        vec![2]
    })
    .await;
}

#[tokio::test]
async fn a_covered_index_file_with_a_damaged_header_or_trailer_is_written_again() {
    index_files_mended_after(|files| {
        let mut bytes = std::fs::read(&files[1]).unwrap();
        bytes[20] ^= 0x01;
        std::fs::write(&files[1], bytes).unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&files[4])
            .unwrap();
        file.set_len(file.metadata().unwrap().len() - 3).unwrap();
        vec![1, 4]
    })
    .await;
}

#[tokio::test]
async fn a_missing_covered_index_file_is_written_again() {
    index_files_mended_after(|files| {
        std::fs::remove_file(&files[3]).unwrap();
        vec![3]
    })
    .await;
}
