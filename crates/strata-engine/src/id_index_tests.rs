//! The event id index in a real `Store`: `Any`/`StreamExists` re-sends recognised after the
//! recent ids forgot them, across reopens, with id files damaged, cut short or deleted,
//! and after a scavenge.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use strata_core::{
    AppendResult, EventStore, ExpectedRevision, ProposedEvent, StreamMetadata, StreamName,
};

use super::ids_dir;
use crate::{Config, Store};

fn name(text: &str) -> StreamName {
    StreamName::new(text).unwrap()
}

fn config(event_id_index: bool) -> Config {
    Config {
        recent_event_ids_max: 100,
        event_id_index,
        ..Config::small_for_tests()
    }
}

fn event() -> ProposedEvent {
    ProposedEvent::json("Happened", r#"{"a":1}"#)
}

/// Appends `count` events, one append each, to a few other streams.
async fn others(store: &Store, count: usize) {
    for number in 0..count {
        let stream = name(&format!("other-{}", number % 7));
        store
            .append(&stream, ExpectedRevision::Any, vec![event()])
            .await
            .unwrap();
    }
}

/// Saves an index checkpoint and waits until the id files cover the durable log.
fn file_everything(store: &Store) {
    store.checkpoint_indexes().unwrap();
    let end = store.shared.durable_end.load(Ordering::Acquire);
    store.shared.id_index.wait_covered(end);
}

/// A store where `original` (in `stream`) is far older than the recent ids remember.
async fn store_with_an_old_event(
    dir: &Path,
    config: Config,
    stream: &StreamName,
    original: &ProposedEvent,
) -> (Arc<Store>, AppendResult) {
    let store = Store::open(dir, config).unwrap();
    store
        .append(stream, ExpectedRevision::Any, vec![event(), event()])
        .await
        .unwrap();
    let appended = store
        .append(stream, ExpectedRevision::Any, vec![original.clone()])
        .await
        .unwrap();
    others(&store, 300).await;
    if store.shared.config.event_id_index {
        file_everything(&store);
    }
    // The recent ids turn over twice once the files cover what they forget.
    others(&store, 300).await;
    (store, appended)
}

async fn resend(
    store: &Store,
    stream: &StreamName,
    expected: ExpectedRevision,
    original: &ProposedEvent,
) -> AppendResult {
    store
        .append(stream, expected, vec![original.clone()])
        .await
        .unwrap()
}

#[tokio::test]
async fn an_old_any_resend_is_recognised_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let stream = name("orders-1");
    let original = event();
    let (store, appended) =
        store_with_an_old_event(dir.path(), config(true), &stream, &original).await;
    let events_before = store.event_count();
    for expected in [ExpectedRevision::Any, ExpectedRevision::StreamExists] {
        assert_eq!(resend(&store, &stream, expected, &original).await, appended);
    }
    assert_eq!(store.event_count(), events_before, "nothing was written");
    assert!(store.shared.id_index.file_count() >= 1);
}

/// The same setup without the id index appends the re-send again: the test above needs
/// the feature.
#[tokio::test]
async fn without_the_id_index_an_old_any_resend_is_appended_again() {
    let dir = tempfile::tempdir().unwrap();
    let stream = name("orders-1");
    let original = event();
    let (store, appended) =
        store_with_an_old_event(dir.path(), config(false), &stream, &original).await;
    let again = resend(&store, &stream, ExpectedRevision::Any, &original).await;
    assert_eq!(again.current_revision.0, appended.current_revision.0 + 1);
    assert!(!ids_dir(dir.path()).exists());
}

#[tokio::test]
async fn an_old_resend_is_recognised_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let stream = name("orders-1");
    let original = event();
    let (store, appended) =
        store_with_an_old_event(dir.path(), config(true), &stream, &original).await;
    store.close();
    drop(store);
    let store = Store::open(dir.path(), config(true)).unwrap();
    let events_before = store.event_count();
    for expected in [ExpectedRevision::StreamExists, ExpectedRevision::Any] {
        assert_eq!(resend(&store, &stream, expected, &original).await, appended);
    }
    assert_eq!(store.event_count(), events_before);
}

#[tokio::test]
async fn the_same_id_in_another_stream_is_not_a_resend() {
    let dir = tempfile::tempdir().unwrap();
    let stream = name("orders-1");
    let original = event();
    let (store, _) = store_with_an_old_event(dir.path(), config(true), &stream, &original).await;
    let elsewhere = name("orders-2");
    store
        .append(&elsewhere, ExpectedRevision::Any, vec![event()])
        .await
        .unwrap();
    let appended = resend(&store, &elsewhere, ExpectedRevision::Any, &original).await;
    assert_eq!(appended.current_revision.0, 1, "appended as a new event");
    // And now both streams hold the id: each re-send answers from its own stream.
    let again = resend(&store, &elsewhere, ExpectedRevision::Any, &original).await;
    assert_eq!(again, appended);
}

/// Every `.ids` file of the store, oldest first.
/// Panics unless `strata verify` finds the closed store at `dir` clean; its report.
fn assert_verifies(dir: &Path) -> crate::verify::VerifyReport {
    let report = crate::verify::verify(dir, &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{report}");
    report
}

fn id_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(ids_dir(dir))
        .map(|listing| listing.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    paths.retain(|path| path.extension().is_some_and(|extension| extension == "ids"));
    paths.sort();
    paths
}

/// Damages the id files as `damage` says, reopens, and checks the old re-send is
/// recognised (right away, and once the files are built again), nothing is written, and
/// `verify` finds the files whole afterwards.
async fn survives(damage: impl Fn(&Path), resend_before_the_rebuild: bool) {
    let dir = tempfile::tempdir().unwrap();
    let stream = name("orders-1");
    let original = event();
    let (store, appended) =
        store_with_an_old_event(dir.path(), config(true), &stream, &original).await;
    store.close();
    drop(store);
    assert!(!id_files(dir.path()).is_empty());
    damage(dir.path());
    let store = Store::open(dir.path(), config(true)).unwrap();
    let events_before = store.event_count();
    let end = store.shared.durable_end.load(Ordering::Acquire);
    if resend_before_the_rebuild {
        assert_eq!(
            resend(&store, &stream, ExpectedRevision::Any, &original).await,
            appended
        );
    }
    store.shared.id_index.wait_covered(end);
    assert_eq!(
        resend(&store, &stream, ExpectedRevision::Any, &original).await,
        appended
    );
    assert_eq!(store.event_count(), events_before);
    store.close();
    drop(store);
    let report = assert_verifies(dir.path());
    assert!(report.id_files >= 1);
}

#[tokio::test]
async fn id_files_deleted_are_built_again() {
    survives(|dir| std::fs::remove_dir_all(ids_dir(dir)).unwrap(), false).await;
}

#[tokio::test]
async fn an_id_file_cut_short_is_built_again() {
    survives(
        |dir| {
            let path = id_files(dir).remove(0);
            let length = std::fs::metadata(&path).unwrap().len();
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(length - 10).unwrap();
        },
        false,
    )
    .await;
}

#[tokio::test]
async fn an_id_file_with_a_damaged_trailer_is_built_again() {
    survives(
        |dir| {
            let path = id_files(dir).remove(0);
            let mut bytes = std::fs::read(&path).unwrap();
            let at = bytes.len() - 20;
            bytes[at] ^= 0x40;
            std::fs::write(&path, bytes).unwrap();
        },
        false,
    )
    .await;
}

/// A block's damage is not seen by the open itself (it reads header, bloom, fences and
/// trailer): a lookup that reads the block answers from the log instead, and the builder
/// (which reads every block once after the open) writes the file again.
#[tokio::test]
async fn id_files_with_damaged_blocks_answer_from_the_log() {
    survives(
        |dir| {
            for path in id_files(dir) {
                damage_every_block(&path);
            }
        },
        true,
    )
    .await;
}

#[tokio::test]
async fn a_scavenged_event_is_no_resend() {
    let dir = tempfile::tempdir().unwrap();
    let stream = name("orders-1");
    let original = event();
    let store = Store::open(dir.path(), config(true)).unwrap();
    store
        .append(&stream, ExpectedRevision::Any, vec![original.clone()])
        .await
        .unwrap();
    let metadata = StreamMetadata {
        max_count: Some(1),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&stream, ExpectedRevision::Any, &metadata)
        .await
        .unwrap();
    store
        .append(&stream, ExpectedRevision::Any, vec![event()])
        .await
        .unwrap();
    // Enough log for the first segment to be sealed and scavenged.
    let data = format!("{{\"pad\":\"{}\"}}", "x".repeat(8 * 1024));
    for _ in 0..200 {
        store
            .append(
                &name("filler"),
                ExpectedRevision::Any,
                vec![ProposedEvent::json("Big", data.clone())],
            )
            .await
            .unwrap();
    }
    file_everything(&store);
    store.close();
    drop(store);
    let report = Store::scavenge_closed(
        dir.path(),
        config(true),
        strata_core::ScavengeOptions::default(),
    )
    .unwrap();
    assert!(report.events_removed > 0);
    let store = Store::open(dir.path(), config(true)).unwrap();
    let end = store.shared.durable_end.load(Ordering::Acquire);
    store.shared.id_index.wait_covered(end);
    let appended = resend(&store, &stream, ExpectedRevision::Any, &original).await;
    assert_eq!(
        appended.current_revision.0, 2,
        "appended: the original is gone"
    );
    store.close();
    drop(store);
    assert_verifies(dir.path());
}

/// Damage found by the lookup itself (the file's blocks rewritten under the running
/// store, after the builder's check): the answer comes from the log, the file is marked
/// and written again.
#[tokio::test]
async fn a_block_damaged_under_a_running_store_is_answered_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let stream = name("orders-1");
    let original = event();
    let (store, appended) =
        store_with_an_old_event(dir.path(), config(true), &stream, &original).await;
    file_everything(&store);
    for path in store.shared.id_index.file_paths() {
        let bytes = with_every_block_damaged(&path);
        // Rewritten in place: the store's open handles read the damaged bytes.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &bytes, 0).unwrap();
    }
    let events_before = store.event_count();
    assert_eq!(
        resend(&store, &stream, ExpectedRevision::Any, &original).await,
        appended
    );
    // (Without the answer from the log, the block's checksum error would fail the append.)
    let end = store.shared.durable_end.load(Ordering::Acquire);
    store.shared.id_index.wait_covered(end);
    assert_eq!(
        resend(&store, &stream, ExpectedRevision::StreamExists, &original).await,
        appended
    );
    assert_eq!(store.event_count(), events_before);
    store.close();
    drop(store);
    assert_verifies(dir.path());
}

/// Files built before a scavenge (cut at checkpoints and at `BUILD_IDS_MAX` ids) are read
/// through the scavenged log by `verify`. (A file may start inside a hole a scavenge left,
/// zeros after a skip frame: `scan_ids` then starts at the segment's first frame. Seen
/// once in `runs_of_an_index_rebuilt_after_a_scavenge_match_it`; this test does not make
/// it happen every time.)
#[tokio::test]
async fn files_whose_range_starts_inside_a_scavenged_hole_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    let stream = name("gone-1");
    let data = format!("{{\"pad\":\"{}\"}}", "x".repeat(8 * 1024));
    for _ in 0..300 {
        store
            .append(
                &stream,
                ExpectedRevision::Any,
                vec![ProposedEvent::json("Big", data.clone())],
            )
            .await
            .unwrap();
        if store.event_count().is_multiple_of(120) {
            file_everything(&store);
        }
    }
    let metadata = StreamMetadata {
        max_count: Some(1),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&stream, ExpectedRevision::Any, &metadata)
        .await
        .unwrap();
    file_everything(&store);
    assert!(
        id_files(dir.path()).len() >= 2,
        "boundaries inside the stream"
    );
    store.close();
    drop(store);
    let report = Store::scavenge_closed(
        dir.path(),
        config(true),
        strata_core::ScavengeOptions::default(),
    )
    .unwrap();
    assert!(report.events_removed > 250);
    let report = assert_verifies(dir.path());
    assert!(report.id_files >= 2);
}

/// Merges as the builder makes them until none is due; the counts after.
fn merged_until_none_due(mut counts: Vec<u64>) -> Vec<u64> {
    loop {
        let files: Vec<_> = counts.iter().map(|&count| (count, false)).collect();
        let Some(older) = super::merge_due(&files) else {
            return counts;
        };
        let merged = counts[older] + counts[older + 1];
        counts.splice(older..=older + 1, [merged]);
    }
}

/// Each file holds more than twice the next one's ids once no merge is due.
fn assert_tiered(counts: &[u64]) {
    for pair in counts.windows(2) {
        assert!(pair[1] * 2 < pair[0], "{counts:?}");
    }
}

#[test]
fn the_merge_policy_keeps_the_chain_logarithmic_wherever_files_come_from() {
    // A damaged file of 1,000 ids written again as 20 pieces of 50 in the middle of the
    // chain: they merge with each other and with their neighbours.
    let mut counts = vec![4000, 1800];
    counts.extend([50; 20]);
    counts.extend([400, 100, 20]);
    let merged = merged_until_none_due(counts.clone());
    assert_tiered(&merged);
    assert_eq!(merged.iter().sum::<u64>(), counts.iter().sum::<u64>());
    assert!(merged.len() <= 4, "{merged:?}");
    // Ranges filed one after another, of uneven sizes.
    let mut counts = Vec::new();
    let mut total = 0u64;
    for step in 1..=2_000u64 {
        let filed = 1 + (step * 7_919) % 100;
        total += filed;
        counts.push(filed);
        counts = merged_until_none_due(counts);
        assert_tiered(&counts);
        assert!(counts.len() as u32 <= total.ilog2() + 1, "{counts:?}");
    }
    // A damaged file is never merged: the files beside it wait for it to be written again.
    let files = [(100, false), (100, true), (100, false)];
    assert_eq!(super::merge_due(&files), None);
    assert_eq!(super::merge_due(&[(100, false), (60, false)]), Some(0));
    assert_eq!(super::merge_due(&[(100, false), (40, false)]), None);
}

/// The bytes of the id file at `path` with a bit flipped in every block.
fn with_every_block_damaged(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let trailer = bytes.len() - 64;
    let count = u64::from_le_bytes(bytes[trailer + 16..trailer + 24].try_into().unwrap());
    for block in 0..count.div_ceil(256) as usize {
        bytes[16 + block * 4100 + 3] ^= 0x01;
    }
    bytes
}

/// Corrupts every block of the id file at `path` (the open does not read blocks).
fn damage_every_block(path: &Path) {
    std::fs::write(path, with_every_block_damaged(path)).unwrap();
}

/// The largest file damaged: written again as pieces of `BUILD_IDS_MAX` (50 here), which
/// then merge back so that the chain stays size-tiered.
#[tokio::test]
async fn pieces_of_a_rebuilt_file_merge_again() {
    let dir = tempfile::tempdir().unwrap();
    let stream = name("orders-1");
    let original = event();
    let (store, appended) =
        store_with_an_old_event(dir.path(), config(true), &stream, &original).await;
    file_everything(&store);
    let before = store.shared.id_index.file_counts();
    assert!(before[0] >= 500, "{before:?}");
    store.close();
    drop(store);
    damage_every_block(&id_files(dir.path())[0]);
    let store = Store::open(dir.path(), config(true)).unwrap();
    let end = store.shared.durable_end.load(Ordering::Acquire);
    store.shared.id_index.wait_covered(end);
    let after = store.shared.id_index.file_counts();
    assert_tiered(&after);
    assert_eq!(after.iter().sum::<u64>(), before.iter().sum::<u64>());
    assert!(after.len() <= before.len() + 1, "{before:?} → {after:?}");
    assert_eq!(
        resend(&store, &stream, ExpectedRevision::Any, &original).await,
        appended
    );
    store.close();
    drop(store);
    assert_verifies(dir.path());
}

/// The scrub of the files found at open held (as a slow one would be): the log appended
/// after the open is filed all the same; once the scrub goes on, the damaged file (unless
/// a lookup's bloom false positive found it first) is found and written again.
#[tokio::test]
async fn a_new_range_is_filed_while_the_scrub_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let stream = name("orders-1");
    let original = event();
    let (store, appended) =
        store_with_an_old_event(dir.path(), config(true), &stream, &original).await;
    file_everything(&store);
    store.close();
    drop(store);
    damage_every_block(&id_files(dir.path())[0]);
    super::hold_scrub(dir.path());
    let store = Store::open(dir.path(), config(true)).unwrap();
    let counts_at_open = store.shared.id_index.file_counts();
    others(&store, 120).await;
    store.checkpoint_indexes().unwrap();
    let end = store.shared.durable_end.load(Ordering::Acquire);
    store.shared.id_index.wait_filed(end);
    assert!(!store.shared.id_index.scrubbed(), "the scrub is still held");
    let filed = store.shared.id_index.file_counts();
    assert!(
        filed.iter().sum::<u64>() >= counts_at_open.iter().sum::<u64>() + 120,
        "{counts_at_open:?} → {filed:?}"
    );
    store.shared.id_index.release_scrub();
    store.shared.id_index.wait_covered(end);
    assert!(store.shared.id_index.scrubbed());
    assert_tiered(&store.shared.id_index.file_counts());
    let events_before = store.event_count();
    assert_eq!(
        resend(&store, &stream, ExpectedRevision::Any, &original).await,
        appended
    );
    assert_eq!(store.event_count(), events_before);
    store.close();
    drop(store);
    assert_verifies(dir.path());
}

/// Ranges filed from the pairs the writer made (handed by the syncer with each index
/// save) hold what the log holds; a range with more pairs than are kept (1,000 in tests)
/// is read from the log instead, and so is the log the open replayed.
#[tokio::test]
async fn ranges_filed_from_the_writers_pairs_match_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    others(&store, 150).await;
    // A tombstone is no event of the files.
    let doomed = name("doomed-1");
    store
        .append(&doomed, ExpectedRevision::Any, vec![event()])
        .await
        .unwrap();
    store
        .tombstone_stream(&doomed, ExpectedRevision::Any)
        .await
        .unwrap();
    file_everything(&store);
    let handed = store.shared.id_index.filed_from_handed();
    assert!(handed >= 1);
    // More pairs than are kept between two saves: read from the log.
    for _ in 0..12 {
        store
            .append(
                &name("batch-1"),
                ExpectedRevision::Any,
                (0..100).map(|_| event()).collect(),
            )
            .await
            .unwrap();
    }
    file_everything(&store);
    assert_eq!(store.shared.id_index.filed_from_handed(), handed);
    others(&store, 80).await;
    file_everything(&store);
    assert!(store.shared.id_index.filed_from_handed() > handed);
    store.close();
    drop(store);
    let report = assert_verifies(dir.path());
    assert!(report.id_files >= 1);
    let store = Store::open(dir.path(), config(true)).unwrap();
    others(&store, 30).await;
    file_everything(&store);
    store.close();
    drop(store);
    assert_verifies(dir.path());
}

/// Opens the store at `dir` with its scrub held, and returns whether the builder had no
/// block left to read (it says `scrubbed` only when nothing is pending).
fn nothing_left_to_scrub(dir: &Path) -> (Arc<Store>, bool) {
    super::hold_scrub(dir);
    let store = Store::open(dir, config(true)).unwrap();
    let end = store.shared.durable_end.load(Ordering::Acquire);
    store.shared.id_index.wait_filed(end);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !store.shared.id_index.scrubbed() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let scrubbed = store.shared.id_index.scrubbed();
    store.shared.id_index.release_scrub();
    (store, scrubbed)
}

/// Each id file is read back once after it is written (at the next open), not at every
/// open: the open after that has nothing to read. A file written again (here: damaged,
/// so a new version of it) is read back again.
#[tokio::test]
async fn id_files_are_read_back_once_not_at_every_open() {
    let dir = tempfile::tempdir().unwrap();
    let stream = name("orders-1");
    let original = event();
    let (store, _) = store_with_an_old_event(dir.path(), config(true), &stream, &original).await;
    file_everything(&store);
    store.close();
    drop(store);
    // Written by that process, never read back yet.
    let (store, scrubbed) = nothing_left_to_scrub(dir.path());
    assert!(!scrubbed, "the files written before were not read back");
    let end = store.shared.durable_end.load(Ordering::Acquire);
    store.shared.id_index.wait_covered(end);
    let files = store.shared.id_index.file_paths();
    store.close();
    drop(store);
    let record = crate::checked_files::CheckedFiles::load(&ids_dir(dir.path()));
    for path in &files {
        assert!(record.checked(path) > 0, "{} not recorded", path.display());
    }
    let (store, scrubbed) = nothing_left_to_scrub(dir.path());
    assert!(
        scrubbed,
        "the files read back at the last open were read again"
    );
    store.close();
    drop(store);
    // Written again (a new version of the file): read back again.
    let path = &files[0];
    let bytes = std::fs::read(path).unwrap();
    let temporary = path.with_extension("ids.tmp");
    std::fs::write(&temporary, &bytes).unwrap();
    std::fs::rename(&temporary, path).unwrap();
    let (store, scrubbed) = nothing_left_to_scrub(dir.path());
    assert!(!scrubbed, "a file written again was not read back");
    store.close();
}

/// What the scrub no longer covers: a block damaged after its file was read back, with
/// the file's length, inode and modification time unchanged (bit rot), is not read at
/// the open. The first lookup that reads it sees its checksum fail and answers from the
/// log (no wrong answer), and the builder writes the file again.
#[tokio::test]
async fn a_block_damaged_after_its_file_was_read_back_is_found_by_the_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let stream = name("orders-1");
    let original = event();
    let (store, appended) =
        store_with_an_old_event(dir.path(), config(true), &stream, &original).await;
    file_everything(&store);
    store.close();
    drop(store);
    let store = Store::open(dir.path(), config(true)).unwrap();
    let end = store.shared.durable_end.load(Ordering::Acquire);
    store.shared.id_index.wait_covered(end);
    let files = store.shared.id_index.file_paths();
    store.close();
    drop(store);
    for path in &files {
        let modified = std::fs::metadata(path).unwrap().modified().unwrap();
        let bytes = with_every_block_damaged(path);
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &bytes, 0).unwrap();
        file.set_modified(modified).unwrap();
    }
    let (store, scrubbed) = nothing_left_to_scrub(dir.path());
    assert!(scrubbed, "the damaged files were read back at the open");
    let events_before = store.event_count();
    assert_eq!(
        resend(&store, &stream, ExpectedRevision::Any, &original).await,
        appended
    );
    let end = store.shared.durable_end.load(Ordering::Acquire);
    store.shared.id_index.wait_covered(end);
    assert_eq!(
        resend(&store, &stream, ExpectedRevision::StreamExists, &original).await,
        appended
    );
    assert_eq!(store.event_count(), events_before);
    store.close();
    drop(store);
    assert_verifies(dir.path());
}

/// A save whose range holds no id (only a tombstone) is filed as an empty
/// range: the files still reach the durable end.
#[tokio::test]
async fn a_range_holding_only_a_tombstone_is_filed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    others(&store, 20).await;
    file_everything(&store);
    store
        .tombstone_stream(&name("other-1"), ExpectedRevision::Any)
        .await
        .unwrap();
    store.checkpoint_indexes().unwrap();
    let end = store.shared.durable_end.load(Ordering::Acquire);
    let covered = store.shared.id_index.covered_to();
    for _ in 0..600 {
        if covered.load(Ordering::Acquire) >= end {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        covered.load(Ordering::Acquire),
        end,
        "the id files stop short"
    );
    store.close();
}

/// With the event id index off no builder runs, so index saves queue no handed pairs
/// (`IdIndex::extend_with`; a review found every save's range queued, without end).
#[tokio::test]
async fn saves_queue_no_handed_ranges_when_no_builder_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(false)).unwrap();
    for _ in 0..20 {
        others(&store, 1).await;
        store.checkpoint_indexes().unwrap();
    }
    let queued = store.shared.id_index.work.lock().handed.len();
    assert_eq!(queued, 0, "ranges queued for a builder that does not run");
    store.close();
}
