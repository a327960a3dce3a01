//! Soft delete: the stream's events are hidden and the next append revives it.

use std::time::Duration;

use serde_json::json;

use crate::metadata::{SOFT_DELETED_TRUNCATE_BEFORE, StreamMetadata};
use crate::store::{EventStore, ReadStreamOptions, StreamSlice};
use crate::types::{ExpectedRevision, Revision, StreamName, StreamState};

use super::Backend;
use super::support::{
    StoreChecks, assert_stream_deleted, assert_wrong_expected, events, ids, proposed_ids,
    revisions, stream,
};

/// Soft-deletes `stream` and panics on failure.
async fn delete<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
    expected: ExpectedRevision,
) {
    store
        .delete_stream(stream, expected)
        .await
        .unwrap_or_else(|error| panic!("soft delete of {stream} with {expected}: {error}"));
}

/// The `$tb` of `stream`'s metadata.
async fn truncate_before<S: EventStore + ?Sized>(store: &S, stream: &StreamName) -> Option<u64> {
    store
        .stream_metadata(stream)
        .await
        .unwrap_or_else(|error| panic!("metadata of {stream}: {error}"))
        .metadata
        .truncate_before
}

/// A soft-deleted stream reads as not found; its state keeps the last revision, its
/// metadata says `$tb` = i64::MAX, and its position is after the last event.
pub async fn soft_delete_hides_the_stream<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("soft_delete-1");
    let appended = store
        .append_ok(&orders, ExpectedRevision::NoStream, events(3))
        .await;
    let deleted = store
        .delete_stream(&orders, ExpectedRevision::Exact(2))
        .await
        .unwrap_or_else(|error| panic!("soft delete of {orders}: {error}"));
    assert!(
        deleted.position > appended.position,
        "the delete is recorded after the events"
    );
    for options in [
        ReadStreamOptions::forwards(),
        ReadStreamOptions::backwards(),
    ] {
        assert_eq!(
            store.read_stream_ok(&orders, options).await,
            StreamSlice::NotFound,
            "a soft-deleted stream read with {options:?}"
        );
    }
    assert_eq!(store.state_ok(&orders).await, StreamState::At(Revision(2)));
    assert_eq!(
        truncate_before(&*store, &orders).await,
        Some(SOFT_DELETED_TRUNCATE_BEFORE),
        "soft delete sets $tb to i64::MAX"
    );
}

/// Appending with `Any`, `NoStream` or `Exact(last)` revives a soft-deleted stream at the
/// next revision; only the new events are visible and `$tb` points at the first of them.
pub async fn soft_deleted_stream_is_revived_by_append<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let cases = [
        ExpectedRevision::Any,
        ExpectedRevision::NoStream,
        ExpectedRevision::Exact(2),
    ];
    for (n, expected) in cases.into_iter().enumerate() {
        let orders = stream(&format!("soft_delete_revive-{n}"));
        store
            .append_ok(&orders, ExpectedRevision::NoStream, events(3))
            .await;
        delete(&*store, &orders, ExpectedRevision::Any).await;
        let batch = events(2);
        let result = store.append_ok(&orders, expected, batch.clone()).await;
        assert_eq!(
            result.current_revision,
            Revision(4),
            "revival with {expected} continues after the last revision"
        );
        let read = store.stream_events(&orders).await;
        assert_eq!(
            revisions(&read),
            vec![3, 4],
            "only the new events after revival with {expected}"
        );
        assert_eq!(ids(&read), proposed_ids(&batch));
        assert_eq!(
            truncate_before(&*store, &orders).await,
            Some(3),
            "revival with {expected} sets $tb to the first new revision"
        );
        assert_eq!(store.state_ok(&orders).await, StreamState::At(Revision(4)));
    }
}

/// `StreamExists` on a soft-deleted stream fails with `StreamDeleted`; a stale `Exact`
/// fails with the raw last revision.
pub async fn soft_deleted_stream_refuses_stream_exists<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("soft_delete_exists-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(2))
        .await;
    delete(&*store, &orders, ExpectedRevision::StreamExists).await;
    let result = store
        .append(&orders, ExpectedRevision::StreamExists, events(1))
        .await;
    assert_stream_deleted(result, &orders, "StreamExists append after soft delete");
    let result = store
        .append(&orders, ExpectedRevision::Exact(0), events(1))
        .await;
    assert_wrong_expected(
        result,
        &orders,
        ExpectedRevision::Exact(0),
        StreamState::At(Revision(1)),
    );
    assert_eq!(
        store
            .read_stream_ok(&orders, ReadStreamOptions::forwards())
            .await,
        StreamSlice::NotFound,
        "refused appends do not revive the stream"
    );
}

/// Deleting a stream that never existed fails, even with `Any`.
pub async fn soft_delete_of_missing_stream_fails<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let missing = stream("soft_delete_missing-1");
    for expected in [ExpectedRevision::Any, ExpectedRevision::Exact(0)] {
        let result = store.delete_stream(&missing, expected).await;
        assert_wrong_expected(result, &missing, expected, StreamState::NoStream);
    }
    assert!(
        store.all_events().await.is_empty(),
        "a refused delete writes nothing"
    );
}

/// A soft delete checks its expected revision.
pub async fn soft_delete_checks_expected_revision<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("soft_delete_expected-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(3))
        .await;
    for expected in [ExpectedRevision::NoStream, ExpectedRevision::Exact(1)] {
        let result = store.delete_stream(&orders, expected).await;
        assert_wrong_expected(result, &orders, expected, StreamState::At(Revision(2)));
    }
    assert_eq!(
        store.stream_events(&orders).await.len(),
        3,
        "the stream is still readable"
    );
}

/// A soft delete replaces the stream's metadata with `$tb` alone: `$maxCount`, `$maxAge`,
/// `$acl` and custom keys do not survive it, as KurrentDB writes it. A revival then writes
/// that metadata with `$tb` at the first new revision.
pub async fn soft_delete_replaces_the_metadata_with_truncate_before_alone<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("soft_delete_metadata-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(3))
        .await;
    let mut metadata = StreamMetadata {
        max_count: Some(100),
        max_age: Some(Duration::from_secs(3_600)),
        acl: Some(json!({"$r": "$all"})),
        ..StreamMetadata::default()
    };
    metadata.custom.insert("owner".into(), json!("team-a"));
    set_metadata(&*store, &orders, ExpectedRevision::NoStream, &metadata).await;
    delete(&*store, &orders, ExpectedRevision::Exact(2)).await;
    let deleted = store
        .stream_metadata(&orders)
        .await
        .unwrap_or_else(|error| panic!("metadata of {orders}: {error}"));
    let only_truncate_before = StreamMetadata {
        truncate_before: Some(SOFT_DELETED_TRUNCATE_BEFORE),
        ..StreamMetadata::default()
    };
    assert_eq!(
        deleted.metadata, only_truncate_before,
        "after the soft delete"
    );
    assert_eq!(deleted.revision, Some(Revision(1)));
    store
        .append_ok(&orders, ExpectedRevision::Any, events(1))
        .await;
    let revived = store
        .stream_metadata(&orders)
        .await
        .unwrap_or_else(|error| panic!("metadata of {orders}: {error}"));
    let truncated = StreamMetadata {
        truncate_before: Some(3),
        ..StreamMetadata::default()
    };
    assert_eq!(revived.metadata, truncated, "after the revival");
    assert_eq!(revived.revision, Some(Revision(2)));
}

/// Metadata written with `$tb` = i64::MAX soft-deletes the stream; the next append revives
/// it keeping every other key, with `$tb` at the first new revision (KurrentDB's
/// `soft_deleted_stream_when_recreated_preserves_metadata_except_truncatebefore`).
pub async fn revival_keeps_every_metadata_key_but_truncate_before<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("soft_delete_revival_keeps-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(2))
        .await;
    let mut metadata = StreamMetadata {
        truncate_before: Some(SOFT_DELETED_TRUNCATE_BEFORE),
        max_count: Some(100),
        acl: Some(json!({"$d": "some-role"})),
        ..StreamMetadata::default()
    };
    metadata.custom.insert("key1".into(), json!(true));
    metadata.custom.insert("key3".into(), json!("some value"));
    set_metadata(&*store, &orders, ExpectedRevision::NoStream, &metadata).await;
    assert_eq!(
        store
            .read_stream_ok(&orders, ReadStreamOptions::forwards())
            .await,
        StreamSlice::NotFound,
        "metadata with $tb = i64::MAX soft-deletes"
    );
    let batch = events(3);
    let result = store
        .append_ok(&orders, ExpectedRevision::Exact(1), batch.clone())
        .await;
    assert_eq!(result.current_revision, Revision(4));
    let read = store.stream_events(&orders).await;
    assert_eq!(revisions(&read), vec![2, 3, 4]);
    assert_eq!(ids(&read), proposed_ids(&batch));
    let revived = store
        .stream_metadata(&orders)
        .await
        .unwrap_or_else(|error| panic!("metadata of {orders}: {error}"));
    let wanted = StreamMetadata {
        truncate_before: Some(2),
        ..metadata
    };
    assert_eq!(revived.metadata, wanted);
    assert_eq!(revived.revision, Some(Revision(1)));
}

/// A soft delete expecting `NoStream` succeeds on a stream with metadata but no events,
/// and on a soft-deleted stream; with `Any` a metadata-only stream is deleted too.
pub async fn soft_delete_expecting_no_stream_of_a_metadata_only_or_deleted_stream_succeeds<
    B: Backend,
>(
    backend: &B,
) {
    let store = backend.fresh().await;
    for (n, expected) in [ExpectedRevision::NoStream, ExpectedRevision::Any]
        .into_iter()
        .enumerate()
    {
        let only_metadata = stream(&format!("soft_delete_metadata_only-{n}"));
        let metadata = StreamMetadata {
            max_count: Some(3),
            ..StreamMetadata::default()
        };
        set_metadata(
            &*store,
            &only_metadata,
            ExpectedRevision::NoStream,
            &metadata,
        )
        .await;
        delete(&*store, &only_metadata, expected).await;
        assert_eq!(
            truncate_before(&*store, &only_metadata).await,
            Some(SOFT_DELETED_TRUNCATE_BEFORE),
            "a metadata-only stream soft-deleted with {expected}"
        );
    }
    let orders = stream("soft_delete_twice-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(2))
        .await;
    delete(&*store, &orders, ExpectedRevision::Exact(1)).await;
    delete(&*store, &orders, ExpectedRevision::NoStream).await;
    assert_eq!(store.state_ok(&orders).await, StreamState::At(Revision(1)));
    let result = store
        .delete_stream(&orders, ExpectedRevision::StreamExists)
        .await;
    assert_stream_deleted(
        result,
        &orders,
        "StreamExists delete of a soft-deleted stream",
    );
}

/// Sets metadata and panics on failure.
async fn set_metadata<S: EventStore + ?Sized>(
    store: &S,
    stream: &StreamName,
    expected: ExpectedRevision,
    metadata: &StreamMetadata,
) {
    store
        .set_stream_metadata(stream, expected, metadata)
        .await
        .unwrap_or_else(|error| panic!("set metadata of {stream} with {expected}: {error}"));
}
