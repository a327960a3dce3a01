//! Reads of the global log `$all`: order, starting positions, paging, and what it shows.

use std::collections::HashSet;

use crate::metadata::{METADATA_EVENT_TYPE, StreamMetadata, TOMBSTONE_EVENT_TYPE};
use crate::store::{EventStore, ReadAllOptions};
use crate::types::{ExpectedRevision, Position, RecordedEvent};

use super::Backend;
use super::support::{StoreChecks, assert_strictly_increasing, events, positions, stream};

/// Appends `batches` batches of 1 to 3 events over three streams; returns `$all`.
async fn populate<S: StoreChecks + ?Sized>(store: &S, batches: usize) -> Vec<RecordedEvent> {
    let names = [stream("all-a"), stream("all-b"), stream("all-c")];
    for batch in 0..batches {
        let count = batch % 3 + 1;
        store
            .append_ok(&names[batch % 3], ExpectedRevision::Any, events(count))
            .await;
    }
    store.all_events().await
}

/// An empty store has an empty `$all` and no last position.
pub async fn read_all_of_empty_store_is_empty<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    for options in [ReadAllOptions::forwards(), ReadAllOptions::backwards()] {
        let slice = store.read_all_ok(options.clone()).await;
        assert!(slice.events.is_empty(), "{options:?} of an empty store");
        assert!(
            slice.is_end,
            "{options:?} of an empty store reaches the end"
        );
    }
    let last = store
        .last_position()
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(last, None, "an empty store has no last position");
}

/// Forwards from the start returns every event in position order; the last position
/// is the last event's, and the watched log end moves past it.
pub async fn read_all_forwards_returns_everything_in_order<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let all = populate(&*store, 9).await;
    assert_eq!(all.len(), 18, "every appended event is in $all");
    assert_strictly_increasing(&positions(&all), "$all forwards");
    let slice = store.read_all_ok(ReadAllOptions::forwards()).await;
    assert!(slice.is_end, "a read without max count reaches the end");
    let last = all.last().map(|event| event.position);
    assert_eq!(store.last_position().await.ok().flatten(), last);
    let mut log_end = store.watch_log_end();
    let last = last.unwrap_or(Position::START);
    let waited = tokio::time::timeout(
        super::support::ITEM_WAIT_MAX,
        log_end.wait_for(|end| *end > last),
    )
    .await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "the watched log end must move past the last event at {last}"
    );
}

/// Forwards from a position includes the event there; max count bounds the page.
pub async fn read_all_forwards_from_position_is_inclusive<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let all = populate(&*store, 6).await;
    let from = all[4].position;
    let slice = store
        .read_all_ok(ReadAllOptions::forwards().from_position(from))
        .await;
    assert_eq!(
        slice.events,
        all[4..].to_vec(),
        "forwards from {from}, inclusive"
    );
    let slice = store
        .read_all_ok(ReadAllOptions::forwards().from_position(from).max_count(3))
        .await;
    assert_eq!(slice.events, all[4..7].to_vec(), "max count 3");
    assert!(!slice.is_end, "a full page short of the end is not the end");
}

/// Backwards returns reverse order; from a position it returns the events strictly before.
pub async fn read_all_backwards<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let all = populate(&*store, 6).await;
    let mut reversed = all.clone();
    reversed.reverse();
    let slice = store.read_all_ok(ReadAllOptions::backwards()).await;
    assert_eq!(slice.events, reversed, "backwards from the end");
    assert!(
        slice.is_end,
        "backwards without max count reaches the beginning"
    );
    let before = all[5].position;
    let slice = store
        .read_all_ok(ReadAllOptions::backwards().from_position(before))
        .await;
    let expected: Vec<_> = all[..5].iter().rev().cloned().collect();
    assert_eq!(
        slice.events, expected,
        "backwards from {before} excludes it"
    );
    let slice = store
        .read_all_ok(ReadAllOptions::backwards().max_count(2))
        .await;
    assert_eq!(
        slice.events,
        reversed[..2].to_vec(),
        "max count 2 from the end"
    );
}

/// Paging with `next_position` reaches every event exactly once, in both directions.
pub async fn read_all_paging_reaches_every_event_once<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let all = populate(&*store, 12).await;
    for (options, expected) in [
        (ReadAllOptions::forwards(), all.clone()),
        (
            ReadAllOptions::backwards(),
            all.iter().rev().cloned().collect(),
        ),
    ] {
        let mut paged = Vec::new();
        let mut options = options.max_count(5);
        for _ in 0..=all.len() {
            let slice = store.read_all_ok(options.clone()).await;
            paged.extend(slice.events);
            if slice.is_end {
                break;
            }
            options = options.from_position(slice.next_position);
        }
        assert_eq!(
            positions(&paged),
            positions(&expected),
            "paging {:?} in pages of 5",
            options.direction
        );
    }
}

/// `$all` ignores metadata: it shows truncated, soft-deleted and tombstoned streams'
/// events, the `$metadata` events and the tombstone record.
pub async fn read_all_shows_deleted_and_truncated_streams<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let truncated = stream("all_truncated-1");
    let deleted = stream("all_deleted-1");
    let tombstoned = stream("all_tombstoned-1");
    for name in [&truncated, &deleted, &tombstoned] {
        store
            .append_ok(name, ExpectedRevision::Any, events(3))
            .await;
    }
    let metadata = StreamMetadata {
        truncate_before: Some(2),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&truncated, ExpectedRevision::Any, &metadata)
        .await
        .unwrap_or_else(|error| panic!("set metadata of {truncated}: {error}"));
    store
        .delete_stream(&deleted, ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("delete {deleted}: {error}"));
    store
        .tombstone_stream(&tombstoned, ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("tombstone {tombstoned}: {error}"));
    let all = store.all_events().await;
    assert_strictly_increasing(&positions(&all), "$all");
    for name in [&truncated, &deleted, &tombstoned] {
        let count = all.iter().filter(|event| &event.stream == name).count();
        let tombstones = usize::from(name == &tombstoned);
        assert_eq!(count, 3 + tombstones, "$all shows every event of {name}");
    }
    let metadata_streams: HashSet<_> = all
        .iter()
        .filter(|event| event.event_type == METADATA_EVENT_TYPE)
        .map(|event| event.stream.as_str().to_owned())
        .collect();
    for name in [&truncated, &deleted] {
        let metadata_stream = name.metadata_stream();
        assert!(
            metadata_streams.contains(metadata_stream.as_str()),
            "$all shows the $metadata event written to {metadata_stream}"
        );
    }
    let tombstone = all
        .iter()
        .find(|event| event.event_type == TOMBSTONE_EVENT_TYPE);
    assert!(
        tombstone.is_some_and(|event| event.stream == tombstoned),
        "$all shows the {TOMBSTONE_EVENT_TYPE} record of {tombstoned}"
    );
}
