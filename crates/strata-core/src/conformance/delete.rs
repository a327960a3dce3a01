//! Soft delete: the stream's events are hidden and the next append revives it.

use crate::store::{EventStore, ReadStreamOptions, StreamSlice};
use crate::types::{ExpectedRevision, Revision, StreamName, StreamState};

use super::Backend;
use super::support::{
    StoreChecks, assert_stream_deleted, assert_wrong_expected, events, ids, proposed_ids,
    revisions, stream,
};

/// `$tb` after a soft delete: i64::MAX, as KurrentDB writes it.
const SOFT_DELETED_TRUNCATE_BEFORE: u64 = i64::MAX as u64;

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
