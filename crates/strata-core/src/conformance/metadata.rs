//! Stream metadata: round trips, `$maxCount` and `$tb` applied to reads (`$maxAge`: see
//! `expiry.rs`), metadata streams, and metadata written to a soft-deleted stream.

use std::time::Duration;

use serde_json::json;

use crate::metadata::StreamMetadata;
use crate::store::{EventStore, ReadStreamOptions, StreamSlice};
use crate::types::{AppendResult, ExpectedRevision, Revision, StreamName, StreamState};

use super::Backend;
use super::support::{StoreChecks, assert_wrong_expected, events, revisions, stream};

/// Sets metadata and panics on failure.
async fn set_metadata<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
    expected: ExpectedRevision,
    metadata: &StreamMetadata,
) -> AppendResult {
    store
        .set_stream_metadata(stream, expected, metadata)
        .await
        .unwrap_or_else(|error| panic!("set metadata of {stream} with {expected}: {error}"))
}

/// Visible revisions read forwards from the start and backwards from the end.
async fn visible_both_ways<S: StoreChecks + ?Sized>(
    store: &S,
    stream: &StreamName,
) -> (Vec<u64>, Vec<u64>) {
    let forwards = store.stream_events(stream).await;
    let backwards = store
        .read_stream_ok(stream, ReadStreamOptions::backwards())
        .await
        .into_events();
    (revisions(&forwards), revisions(&backwards))
}

/// Metadata round-trips with its custom keys, ACL and revision in `$$stream`.
pub async fn metadata_round_trips<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("metadata_round_trip-1");
    let empty = store
        .stream_metadata(&orders)
        .await
        .unwrap_or_else(|error| panic!("metadata of {orders}: {error}"));
    assert_eq!(empty.metadata, StreamMetadata::default(), "no metadata yet");
    assert_eq!(empty.revision, None, "no metadata revision yet");

    let mut metadata = StreamMetadata {
        max_age: Some(Duration::from_secs(3_600)),
        max_count: Some(100),
        truncate_before: Some(1),
        cache_control: Some(Duration::from_secs(60)),
        acl: Some(json!({"$r": "$all"})),
        ..StreamMetadata::default()
    };
    metadata.custom.insert("owner".into(), json!("team-a"));
    metadata
        .custom
        .insert("nested".into(), json!({"level": [1, 2]}));
    let result = set_metadata(&*store, &orders, ExpectedRevision::NoStream, &metadata).await;
    assert_eq!(
        result.current_revision,
        Revision(0),
        "first metadata event of $$stream"
    );
    let read = store.stream_metadata(&orders).await.ok();
    assert_eq!(read.as_ref().map(|read| &read.metadata), Some(&metadata));
    assert_eq!(read.and_then(|read| read.revision), Some(Revision(0)));

    let newer = StreamMetadata {
        max_count: Some(7),
        ..StreamMetadata::default()
    };
    set_metadata(&*store, &orders, ExpectedRevision::Exact(0), &newer).await;
    let read = store.stream_metadata(&orders).await.ok();
    assert_eq!(
        read.as_ref().map(|read| &read.metadata),
        Some(&newer),
        "latest wins"
    );
    assert_eq!(read.and_then(|read| read.revision), Some(Revision(1)));
    assert_eq!(
        store.state_ok(&orders).await,
        StreamState::NoStream,
        "metadata does not create the stream's own events"
    );
}

/// A stale expected revision on `$$stream` is refused.
pub async fn metadata_expected_revision_is_checked<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("metadata_expected-1");
    let metadata_stream = orders.metadata_stream();
    let metadata = StreamMetadata {
        max_count: Some(3),
        ..StreamMetadata::default()
    };
    let result = store
        .set_stream_metadata(&orders, ExpectedRevision::Exact(0), &metadata)
        .await;
    assert_wrong_expected(
        result,
        &metadata_stream,
        ExpectedRevision::Exact(0),
        StreamState::NoStream,
    );
    set_metadata(&*store, &orders, ExpectedRevision::NoStream, &metadata).await;
    for expected in [ExpectedRevision::NoStream, ExpectedRevision::Exact(5)] {
        let result = store
            .set_stream_metadata(&orders, expected, &metadata)
            .await;
        assert_wrong_expected(
            result,
            &metadata_stream,
            expected,
            StreamState::At(Revision(0)),
        );
    }
    set_metadata(&*store, &orders, ExpectedRevision::StreamExists, &metadata).await;
    let read = store.stream_metadata(&orders).await.ok();
    assert_eq!(read.and_then(|read| read.revision), Some(Revision(1)));
}

/// `$maxCount = N` leaves only the newest N events visible.
pub async fn metadata_max_count_hides_older_events<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("metadata_max_count-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(10))
        .await;
    let metadata = StreamMetadata {
        max_count: Some(3),
        ..StreamMetadata::default()
    };
    set_metadata(&*store, &orders, ExpectedRevision::Any, &metadata).await;
    let (forwards, backwards) = visible_both_ways(&*store, &orders).await;
    assert_eq!(forwards, vec![7, 8, 9], "forwards with $maxCount 3");
    assert_eq!(backwards, vec![9, 8, 7], "backwards with $maxCount 3");
    let from_zero = ReadStreamOptions::forwards().from_revision(0).max_count(2);
    let read = store.read_stream_ok(&orders, from_zero).await.into_events();
    assert_eq!(
        revisions(&read),
        vec![7, 8],
        "forwards from 0 starts at the first visible"
    );
    store
        .append_ok(&orders, ExpectedRevision::Exact(9), events(1))
        .await;
    let (forwards, _) = visible_both_ways(&*store, &orders).await;
    assert_eq!(forwards, vec![8, 9, 10], "the window moves with new events");
    assert_eq!(store.state_ok(&orders).await, StreamState::At(Revision(10)));
}

/// `$tb = k` hides revisions below k in both directions.
pub async fn metadata_truncate_before_hides_older_events<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("metadata_truncate_before-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(6))
        .await;
    let metadata = StreamMetadata {
        truncate_before: Some(4),
        ..StreamMetadata::default()
    };
    set_metadata(&*store, &orders, ExpectedRevision::Any, &metadata).await;
    let (forwards, backwards) = visible_both_ways(&*store, &orders).await;
    assert_eq!(forwards, vec![4, 5], "forwards from the start with $tb 4");
    assert_eq!(backwards, vec![5, 4], "backwards stops at $tb 4");
    let from_one = ReadStreamOptions::forwards().from_revision(1);
    let read = store.read_stream_ok(&orders, from_one).await.into_events();
    assert_eq!(
        revisions(&read),
        vec![4, 5],
        "forwards from 1 starts at $tb"
    );
    let from_three = ReadStreamOptions::backwards().from_revision(3);
    let read = store
        .read_stream_ok(&orders, from_three)
        .await
        .into_events();
    assert!(
        read.is_empty(),
        "backwards from below $tb reads nothing, got {read:?}"
    );
    assert_eq!(store.state_ok(&orders).await, StreamState::At(Revision(5)));
}

/// A metadata stream `$$S` reads as its last event only, as KurrentDB's metastreams
/// (`$maxCount` 1), in both directions.
pub async fn metadata_stream_reads_show_only_the_last_metadata<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("metadata_stream_read-1");
    for max_count in 1..=3 {
        let metadata = StreamMetadata {
            max_count: Some(max_count),
            ..StreamMetadata::default()
        };
        set_metadata(&*store, &orders, ExpectedRevision::Any, &metadata).await;
    }
    let metadata_stream = orders.metadata_stream();
    for options in [
        ReadStreamOptions::forwards(),
        ReadStreamOptions::backwards(),
    ] {
        let slice = store.read_stream_ok(&metadata_stream, options).await;
        let StreamSlice::Found {
            events,
            last_revision,
        } = slice
        else {
            panic!("{metadata_stream} read with {options:?} is found");
        };
        assert_eq!(revisions(&events), vec![2], "read with {options:?}");
        assert_eq!(last_revision, Revision(2));
    }
}

/// Writing the metadata of a soft-deleted stream undeletes it the way KurrentDB does: the
/// store writes that metadata again with `$tb` past the last event, so the events deleted
/// before stay hidden and the next events are visible.
pub async fn writing_the_metadata_of_a_soft_deleted_stream_keeps_its_old_events_hidden<
    B: Backend,
>(
    backend: &B,
) {
    let store = backend.fresh().await;
    let orders = stream("metadata_undelete-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(2))
        .await;
    store
        .delete_stream(&orders, ExpectedRevision::Exact(1))
        .await
        .unwrap_or_else(|error| panic!("soft delete of {orders}: {error}"));
    let mut metadata = StreamMetadata {
        max_count: Some(100),
        ..StreamMetadata::default()
    };
    metadata.custom.insert("key1".into(), serde_json::json!(17));
    let written = set_metadata(&*store, &orders, ExpectedRevision::Exact(0), &metadata).await;
    assert_eq!(written.current_revision, Revision(1), "the caller's event");
    let slice = store
        .read_stream_ok(&orders, ReadStreamOptions::forwards())
        .await;
    let StreamSlice::Found {
        events: visible,
        last_revision,
    } = slice
    else {
        panic!("{orders} is no longer soft-deleted");
    };
    assert!(
        visible.is_empty(),
        "the deleted events stay hidden: {visible:?}"
    );
    assert_eq!(last_revision, Revision(1));
    let read = store
        .stream_metadata(&orders)
        .await
        .unwrap_or_else(|error| panic!("metadata of {orders}: {error}"));
    let wanted = StreamMetadata {
        truncate_before: Some(2),
        ..metadata
    };
    assert_eq!(
        read.metadata, wanted,
        "the written metadata with $tb past the end"
    );
    assert_eq!(
        read.revision,
        Some(Revision(2)),
        "written after the caller's"
    );
    store
        .append_ok(&orders, ExpectedRevision::Exact(1), events(1))
        .await;
    assert_eq!(revisions(&store.stream_events(&orders).await), vec![2]);
}
