//! A store keeps the segment size it was created with. Opening it with a configuration
//! made for other segments never poisons it: an event no segment can hold is refused with
//! `Error::EventTooLarge`, the store's limits say what it takes, and a recorded segment size
//! that is damaged or impossible refuses the open with `Error::Corrupt` instead of being
//! used (a size of 0 would divide by zero).

use std::os::unix::fs::FileExt;
use std::path::Path;

use strata_core::{
    Error, EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamName,
};
use strata_engine::{Config, Store, verify};
use tempfile::TempDir;

const SMALL_SEGMENT_BYTES: u64 = 1024 * 1024;
/// Room a segment keeps beyond the largest event (documented in docs/ENGINE.md).
const SEGMENT_SLACK_BYTES: usize = 64 * 1024;

fn stream() -> StreamName {
    StreamName::new("sized").unwrap()
}

async fn store_with_small_segments(dir: &Path) {
    let store = Store::open(dir, Config::small_for_tests()).unwrap();
    store
        .append(
            &stream(),
            ExpectedRevision::NoStream,
            vec![ProposedEvent::json("E", "{}")],
        )
        .await
        .unwrap();
    store.close();
}

#[tokio::test]
async fn reopening_with_limits_for_larger_segments_refuses_what_a_segment_cannot_hold() {
    let dir = TempDir::new().unwrap();
    store_with_small_segments(dir.path()).await;
    // The default configuration expects 256 MiB segments and 16 MiB events.
    let store = Store::open(dir.path(), Config::default()).unwrap();
    let fits = SMALL_SEGMENT_BYTES as usize - SEGMENT_SLACK_BYTES;
    assert_eq!(store.limits().event_bytes_max, fits);
    let too_large = ProposedEvent::binary("Big", vec![1u8; 2 * SMALL_SEGMENT_BYTES as usize]);
    match store
        .append(&stream(), ExpectedRevision::Any, vec![too_large])
        .await
    {
        Err(Error::EventTooLarge { limit_bytes, .. }) => assert_eq!(limit_bytes, fits),
        other => panic!("expected Error::EventTooLarge, got {other:?}"),
    }
    // The largest event that fits is taken, and the store is not poisoned.
    let largest = ProposedEvent::binary("B", vec![2u8; fits - 1]);
    store
        .append(&stream(), ExpectedRevision::Exact(0), vec![largest.clone()])
        .await
        .expect("an event of the store's limit is taken");
    store
        .append(&stream(), ExpectedRevision::Exact(1), vec![largest])
        .await
        .expect("and another, in the next segment");
    let events = store
        .read_stream(&stream(), ReadStreamOptions::forwards())
        .await
        .unwrap()
        .into_events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].data.len(), fits - 1);
    store.close();
    drop(store);
    let report = verify(dir.path(), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.segment_size_bytes, SMALL_SEGMENT_BYTES);
}

/// Writes a header into segment 0 recording `size_bytes`, with a valid checksum unless
/// `damage_checksum`.
fn record_segment_size(dir: &Path, size_bytes: u64, damage_checksum: bool) {
    let mut header = [0u8; 64];
    header[0..8].copy_from_slice(b"STRATSEG");
    header[8..12].copy_from_slice(&2u32.to_le_bytes());
    header[24..32].copy_from_slice(&size_bytes.to_le_bytes());
    let mut crc = crc32c::crc32c(&header[0..60]);
    if damage_checksum {
        crc ^= 1;
    }
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("log").join("0000000000.seg"))
        .unwrap()
        .write_all_at(&header, 0)
        .unwrap();
}

#[tokio::test]
async fn a_damaged_or_impossible_recorded_segment_size_refuses_the_open() {
    for (size_bytes, damage_checksum) in [
        (0, false),
        (12, false),
        (SMALL_SEGMENT_BYTES + 4, false),
        (1 << 40, false),
        (SMALL_SEGMENT_BYTES, true),
    ] {
        let case = format!("size {size_bytes}, checksum damaged: {damage_checksum}");
        let dir = TempDir::new().unwrap();
        store_with_small_segments(dir.path()).await;
        record_segment_size(dir.path(), size_bytes, damage_checksum);
        match Store::open(dir.path(), Config::small_for_tests()).map(|_| ()) {
            Err(Error::Corrupt { detail }) => {
                assert!(detail.contains("0000000000.seg"), "{case}: {detail}")
            }
            other => panic!("{case}: expected Error::Corrupt, got {other:?}"),
        }
        let report = verify(dir.path(), &mut |_| {}).unwrap();
        assert!(!report.is_ok(), "{case}: verify finds nothing");
    }
}
