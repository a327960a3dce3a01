//! Reads of events at known positions answer exactly as a scan of the log does, whatever
//! the events' sizes, spacing and segments, through a segment's map or through `pread`.

use strata_core::{EventStore, ExpectedRevision, ProposedEvent, RecordedEvent, StreamName};

use super::{Flow, LogReader};
use crate::config::Config;
use crate::format::StreamNameCache;
use crate::store::Store;

/// Data sizes that straddle the first probe (512 bytes), the largest (4 KiB) and the gap
/// that splits runs (8 KiB); the sizes cycle so that runs mix them.
const DATA_BYTES: [usize; 7] = [10, 600, 90, 5_000, 3_000, 20, 12_000];

async fn filled_store(dir: &std::path::Path) -> std::sync::Arc<Store> {
    let store = Store::open(dir, Config::small_for_tests()).unwrap();
    for number in 0..1_200usize {
        let data = "x".repeat(DATA_BYTES[number % DATA_BYTES.len()]);
        let stream = StreamName::new(format!("s-{}", number % 5)).unwrap();
        let event = ProposedEvent::binary("Sized", data);
        store
            .append(&stream, ExpectedRevision::Any, vec![event])
            .await
            .unwrap();
    }
    store
}

fn scanned(store: &Store) -> Vec<RecordedEvent> {
    let shared = store.shared();
    let end = shared
        .durable_end
        .load(std::sync::atomic::Ordering::Acquire);
    let mut names = StreamNameCache::default();
    let mut events = Vec::new();
    LogReader::new(&shared.segments)
        .scan_forward(0, end, &mut |position, event, frame| {
            events.push(event.to_recorded(frame, position, &mut names));
            Ok(Flow::Continue)
        })
        .unwrap();
    events
}

#[tokio::test]
async fn reads_at_positions_answer_as_the_scan_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path()).await;
    let all = scanned(&store);
    assert_eq!(all.len(), 1_200);
    assert!(
        store.shared().segments.count() > 2,
        "the log spans several segments"
    );
    let reader = LogReader::new(&store.shared().segments);
    for step in [1, 2, 3, 7, 50, 1_199] {
        let wanted: Vec<&RecordedEvent> = all.iter().step_by(step).collect();
        let positions: Vec<u64> = wanted.iter().map(|event| event.position.0).collect();
        let read = reader.read_events(&positions).unwrap();
        assert_eq!(read.len(), wanted.len(), "every {step}th");
        for (read, wanted) in read.iter().zip(wanted) {
            assert_eq!(read, wanted, "every {step}th");
        }
    }
    let last = all.last().unwrap();
    assert_eq!(
        reader
            .read_event_if_present(last.position.0)
            .unwrap()
            .as_ref(),
        Some(last)
    );
    store.close();
}

#[tokio::test]
async fn a_position_inside_a_frame_is_an_error_not_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path()).await;
    let all = scanned(&store);
    let reader = LogReader::new(&store.shared().segments);
    // Inside the 12,000-byte event's data: no frame starts there.
    let big = all.iter().find(|event| event.data.len() == 12_000).unwrap();
    let positions = [all[0].position.0, big.position.0 + 4_096];
    let error = reader.read_events(&positions).unwrap_err();
    assert!(
        matches!(error, strata_core::Error::Corrupt { .. }),
        "{error:?}"
    );
    store.close();
}

#[tokio::test]
async fn positions_a_scavenge_removed_answer_none_in_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled_store(dir.path()).await;
    let all = scanned(&store);
    let reader = LogReader::new(&store.shared().segments);
    let removed = crate::index::REMOVED_POSITION;
    let kept = [3, 500, 501, 1_100];
    let mut positions = vec![removed, removed];
    positions.extend(kept.iter().map(|&at| all[at].position.0));
    let read = reader.read_events_if_present(&positions).unwrap();
    assert_eq!(read.len(), positions.len());
    assert!(read[0].is_none() && read[1].is_none());
    for (read, &at) in read[2..].iter().zip(&kept) {
        assert_eq!(read.as_ref(), Some(&all[at]));
    }
    store.close();
}
