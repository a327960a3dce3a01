//! Stores written before sync marks (segment format version 1): they open, their segments
//! get no frame with a sync mark (a version-1 reader would misread one), and new segments
//! are made in the current version, with marks.

use std::os::unix::fs::FileExt;
use std::path::Path;

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamName};
use strata_engine::{Config, Store, verify};
use tempfile::TempDir;

const FLAG_SYNC_MARK: u8 = 4;

fn segment(dir: &Path, index: u64) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("log").join(format!("{index:010}.seg")))
        .unwrap()
}

fn header_version(dir: &Path, index: u64) -> u32 {
    let mut word = [0u8; 4];
    segment(dir, index).read_exact_at(&mut word, 8).unwrap();
    u32::from_le_bytes(word)
}

/// Rewrites segment 0's header as version 1 wrote it (same layout, version 1).
fn make_segment_0_version_1(dir: &Path) {
    let file = segment(dir, 0);
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0).unwrap();
    header[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(&header, 0).unwrap();
}

fn flags_of_frame_at(dir: &Path, position: u64) -> u8 {
    let segment_size = Config::small_for_tests().segment_size_bytes;
    let mut byte = [0u8; 1];
    segment(dir, position / segment_size)
        .read_exact_at(&mut byte, position % segment_size + 9)
        .unwrap();
    byte[0]
}

#[tokio::test]
async fn version_1_segments_open_and_get_no_sync_marks() {
    let dir = TempDir::new().unwrap();
    let stream = StreamName::new("old").unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    store.close();
    drop(store);
    make_segment_0_version_1(dir.path());

    let store = Store::open(dir.path(), Config::small_for_tests()).expect("version 1 opens");
    let mut positions = Vec::new();
    // 200 kB events: the sixth no longer fits segment 0 and starts segment 1.
    for number in 0..7 {
        let event = ProposedEvent::binary("Old", vec![number as u8; 200_000]);
        let result = store
            .append(&stream, ExpectedRevision::Any, vec![event])
            .await
            .unwrap();
        positions.push(result.position.0);
    }
    let segment_size = Config::small_for_tests().segment_size_bytes;
    assert!(positions[4] < segment_size && positions[5] > segment_size);
    let marked = |position| flags_of_frame_at(dir.path(), position) & FLAG_SYNC_MARK != 0;
    for &position in positions
        .iter()
        .filter(|&&position| position < segment_size)
    {
        assert!(
            !marked(position),
            "frame at {position} in a version 1 segment has a mark"
        );
    }
    // (The group that rolled over from segment 0 decided before it rolled: no mark.)
    assert!(
        marked(positions[6]),
        "a group that starts in a current-version segment carries a mark"
    );
    assert_eq!(header_version(dir.path(), 0), 1);
    assert_eq!(header_version(dir.path(), 1), 2);
    let events = store
        .read_stream(&stream, ReadStreamOptions::forwards())
        .await
        .unwrap()
        .into_events();
    assert_eq!(events.len(), 7);
    store.close();
    drop(store);
    let report = verify(dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{report}");
}
