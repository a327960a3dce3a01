//! Stream metadata: round trips, and `$maxCount`, `$tb` and `$maxAge` applied to reads.

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

/// `$maxAge` hides events older than it.
pub async fn metadata_max_age_hides_expired_events<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("metadata_max_age-1");
    let metadata = StreamMetadata {
        max_age: Some(Duration::from_secs(1)),
        ..StreamMetadata::default()
    };
    set_metadata(&*store, &orders, ExpectedRevision::Any, &metadata).await;
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(2))
        .await;
    let fresh = store.stream_events(&orders).await;
    assert_eq!(revisions(&fresh), vec![0, 1], "young events are visible");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let slice = store
        .read_stream_ok(&orders, ReadStreamOptions::forwards())
        .await;
    let expired = slice.clone().into_events();
    assert!(
        expired.is_empty(),
        "events older than $maxAge are hidden, got {expired:?}"
    );
    if let StreamSlice::Found { last_revision, .. } = slice {
        assert_eq!(
            last_revision,
            Revision(1),
            "the last revision is still reported"
        );
    }
    assert_eq!(store.state_ok(&orders).await, StreamState::At(Revision(1)));
}
