//! Lost acknowledged events: a log that ends before what the clean-shutdown marker, the
//! index files or a sync mark say was synced. Opening refuses with `Error::Corrupt` naming
//! both ends and changes nothing (marker, index files and log stay as evidence, so a second
//! open refuses again); `verify` reports it; `Repair` at the readable end accepts the loss,
//! and the store opens and takes appends again.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_core::{
    Error, EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions, ReadStreamOptions,
    RecordedEvent, StreamName,
};
use strata_engine::{Config, Repair, Store, verify};
use tempfile::TempDir;

fn config() -> Config {
    Config::small_for_tests()
}

fn segment_path(dir: &Path, position: u64) -> PathBuf {
    dir.join("log").join(format!(
        "{:010}.seg",
        position / config().segment_size_bytes
    ))
}

fn offset_of(position: u64) -> u64 {
    position % config().segment_size_bytes
}

fn frame_len_at(dir: &Path, position: u64) -> u64 {
    let mut word = [0u8; 4];
    std::fs::File::open(segment_path(dir, position))
        .unwrap()
        .read_exact_at(&mut word, offset_of(position))
        .unwrap();
    u64::from(u32::from_le_bytes(word))
}

fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

fn event(number: usize) -> ProposedEvent {
    ProposedEvent::json(
        "Kept",
        format!(r#"{{"number":{number},"pad":"{}"}}"#, "p".repeat(300)),
    )
}

async fn read_stream(store: &Store, name: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(&stream(name), ReadStreamOptions::forwards())
        .await
        .unwrap()
        .into_events()
}

/// 20 single-event appends to `kept`, then one 3-event append; closed cleanly (which
/// leaves the clean-shutdown marker and an index file reaching the end).
async fn store_ending_in_a_batch(dir: &Path) -> (Vec<RecordedEvent>, Vec<RecordedEvent>) {
    let store = Store::open(dir, config()).unwrap();
    for number in 0..20 {
        store
            .append(&stream("kept"), ExpectedRevision::Any, vec![event(number)])
            .await
            .unwrap();
    }
    let batch = (20..23).map(event).collect();
    store
        .append(&stream("kept"), ExpectedRevision::Exact(19), batch)
        .await
        .unwrap();
    let events = read_stream(&store, "kept").await;
    store.close();
    let (kept, batch) = events.split_at(20);
    (kept.to_vec(), batch.to_vec())
}

/// Which evidence of the acknowledged end is left beside the cut log.
#[derive(Clone, Copy, Debug)]
enum Evidence {
    CleanMarkerAndIndexFiles,
    CleanMarker,
    IndexFiles,
}

/// How the acknowledged batch is cut.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The segment file is made shorter, in the middle of the batch's commit frame.
    FileLengthInCommit,
    /// Everything from the middle of the batch's first frame is zeroed.
    ZeroesInFirst,
}

fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("index"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Every byte that is evidence: the marker, the index files, the log.
fn evidence_snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut paths = index_files(dir);
    paths.push(dir.join("CLEAN"));
    paths.extend(
        std::fs::read_dir(dir.join("log"))
            .unwrap()
            .map(|entry| entry.unwrap().path()),
    );
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_default();
            (path, bytes)
        })
        .collect()
}

fn assert_refused_naming_both_ends(
    dir: &Path,
    acknowledged_end: u64,
    readable_end: u64,
    case: &str,
) {
    match Store::open(dir, config()).map(|_| ()) {
        Err(Error::Corrupt { detail }) => assert!(
            detail.contains("acknowledged events are lost")
                && detail.contains(&format!("position {acknowledged_end}"))
                && detail.contains(&format!("position {readable_end}")),
            "{case}: the error does not name both ends ({acknowledged_end}, {readable_end}): {detail}"
        ),
        other => panic!("{case}: expected Error::Corrupt, got {other:?}"),
    }
}

async fn check_lost_tail_refuses_then_repairs(evidence: Evidence, cut: Cut) {
    let case = format!("{evidence:?}, {cut:?}");
    let dir = TempDir::new().unwrap();
    let (kept, batch) = store_ending_in_a_batch(dir.path()).await;
    let readable_end = batch[0].position.0;
    let last = batch[2].position.0;
    let acknowledged_end = last + frame_len_at(dir.path(), last);
    match evidence {
        Evidence::CleanMarkerAndIndexFiles => {}
        Evidence::CleanMarker => index_files(dir.path())
            .into_iter()
            .for_each(|path| std::fs::remove_file(path).unwrap()),
        Evidence::IndexFiles => std::fs::remove_file(dir.path().join("CLEAN")).unwrap(),
    }
    match cut {
        Cut::FileLengthInCommit => {
            let cut_at = last + frame_len_at(dir.path(), last) / 2;
            let file = OpenOptions::new()
                .write(true)
                .open(segment_path(dir.path(), cut_at))
                .unwrap();
            file.set_len(offset_of(cut_at)).unwrap();
        }
        Cut::ZeroesInFirst => {
            let cut_at = readable_end + frame_len_at(dir.path(), readable_end) / 2 + 4;
            let zeros = vec![0u8; (config().segment_size_bytes - offset_of(cut_at)) as usize];
            let file = OpenOptions::new()
                .write(true)
                .open(segment_path(dir.path(), cut_at))
                .unwrap();
            file.write_all_at(&zeros, offset_of(cut_at)).unwrap();
        }
    }

    let before = evidence_snapshot(dir.path());
    assert_refused_naming_both_ends(dir.path(), acknowledged_end, readable_end, &case);
    assert!(
        evidence_snapshot(dir.path()) == before,
        "{case}: the refused open changed the evidence"
    );
    assert_refused_naming_both_ends(dir.path(), acknowledged_end, readable_end, &case);

    let report = verify(dir.path(), &mut |_| {}).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.contains("acknowledged events are lost")),
        "{case}: verify does not report the loss:\n{report}"
    );

    for wrong in [readable_end + 8, acknowledged_end] {
        assert!(
            matches!(
                Repair::plan(dir.path(), wrong).map(|_| ()),
                Err(Error::InvalidArgument { .. })
            ),
            "{case}: repair at {wrong} is not where a transaction of the readable log ends"
        );
    }
    let repair = Repair::plan(dir.path(), readable_end).unwrap();
    let plan = repair.plan_details().clone();
    assert_eq!(plan.log_end, readable_end, "{case}");
    assert_eq!(
        plan.dropped_events, 0,
        "{case}: nothing readable is dropped"
    );
    assert_eq!(
        plan.clean_marker_removed,
        !matches!(evidence, Evidence::IndexFiles),
        "{case}"
    );
    assert!(
        evidence_snapshot(dir.path()) == before,
        "{case}: planning changed something"
    );
    repair.apply().unwrap();

    let store = Store::open(dir.path(), config())
        .unwrap_or_else(|error| panic!("{case}: the repaired store does not open: {error}"));
    assert_eq!(read_stream(&store, "kept").await, kept, "{case}");
    let result = store
        .append(
            &stream("kept"),
            ExpectedRevision::Exact(19),
            vec![event(99)],
        )
        .await
        .unwrap();
    assert_eq!(
        result.position.0, readable_end,
        "{case}: the log goes on at the cut"
    );
    close_and_verify_ok(store, dir.path());
}

fn close_and_verify_ok(store: Arc<Store>, dir: &Path) {
    store.close();
    drop(store);
    let report = verify(dir, &mut |_| {}).unwrap();
    assert!(report.is_ok(), "verify:\n{report}");
    assert!(!report.torn_tail, "verify:\n{report}");
}

#[tokio::test]
async fn a_cut_acknowledged_tail_refuses_to_open_while_the_clean_marker_or_index_files_remain() {
    for evidence in [
        Evidence::CleanMarkerAndIndexFiles,
        Evidence::CleanMarker,
        Evidence::IndexFiles,
    ] {
        for cut in [Cut::FileLengthInCommit, Cut::ZeroesInFirst] {
            check_lost_tail_refuses_then_repairs(evidence, cut).await;
        }
    }
}

/// A damaged acknowledged append in the middle of the log, after a crash (no marker, no
/// index files): the sync marks of the appends after it prove it was synced, so the open
/// refuses; a repair at the damage drops it and everything after.
#[tokio::test]
async fn damage_that_later_sync_marks_prove_acknowledged_refuses_to_open_until_repaired() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    for number in 0..30 {
        store
            .append(&stream("s"), ExpectedRevision::Any, vec![event(number)])
            .await
            .unwrap();
    }
    let events = read_stream(&store, "s").await;
    store.close();
    drop(store);
    std::fs::remove_file(dir.path().join("CLEAN")).unwrap();
    index_files(dir.path())
        .into_iter()
        .for_each(|path| std::fs::remove_file(path).unwrap());
    let damaged = events[12].position.0;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment_path(dir.path(), damaged))
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset_of(damaged) + 100)
        .unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], offset_of(damaged) + 100)
        .unwrap();

    let before = evidence_snapshot(dir.path());
    match Store::open(dir.path(), config()).map(|_| ()) {
        Err(Error::Corrupt { detail }) => assert!(
            detail.contains("sync mark") && detail.contains(&format!("position {damaged}")),
            "the error does not name the sync mark and the readable end: {detail}"
        ),
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
    assert!(
        evidence_snapshot(dir.path()) == before,
        "the refused open changed the log"
    );

    let repair = Repair::plan(dir.path(), damaged).unwrap();
    assert_eq!(repair.plan_details().dropped_events, 0);
    assert_eq!(
        repair.plan_details().frames_after_end,
        17,
        "the valid frames behind the damage are listed:\n{}",
        repair.plan_details()
    );
    repair.apply().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    assert_eq!(read_stream(&store, "s").await, events[..12]);
    close_and_verify_ok(store, dir.path());
}

/// A repair may also cut committed, readable transactions (the operator chose the place);
/// it says how many events of which stream it drops.
#[tokio::test]
async fn repair_before_the_end_drops_the_readable_events_it_lists() {
    let dir = TempDir::new().unwrap();
    let (kept, batch) = store_ending_in_a_batch(dir.path()).await;
    let cut = kept[10].position.0;
    let repair = Repair::plan(dir.path(), cut).unwrap();
    let plan = repair.plan_details().clone();
    assert_eq!(plan.dropped_events, 10 + batch.len() as u64);
    assert_eq!(plan.dropped_streams.len(), 1);
    assert_eq!(plan.dropped_streams[0].stream, "kept");
    assert_eq!(plan.dropped_streams[0].events, 13);
    assert!(
        plan.to_string().contains("kept: 13 readable event(s)"),
        "{plan}"
    );
    repair.apply().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    assert_eq!(read_stream(&store, "kept").await, kept[..10]);
    let all = store.read_all(ReadAllOptions::forwards()).await.unwrap();
    assert_eq!(all.events, kept[..10]);
    close_and_verify_ok(store, dir.path());
}

#[tokio::test]
async fn an_open_store_cannot_be_repaired() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path(), config()).unwrap();
    assert!(matches!(
        Repair::plan(dir.path(), 64).map(|_| ()),
        Err(Error::DirectoryInUse { .. })
    ));
    store.close();
}
