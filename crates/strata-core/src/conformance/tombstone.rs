//! Tombstones: a tombstoned stream can never be read or written again.

use crate::metadata::StreamMetadata;
use crate::store::{EventStore, ReadStreamOptions};
use crate::types::{ExpectedRevision, Revision, StreamName, StreamState};

use super::Backend;
use super::support::{StoreChecks, assert_stream_deleted, assert_wrong_expected, events, stream};

/// Checks that every operation on the tombstoned `stream` fails with `StreamDeleted`.
async fn assert_tombstoned<S: EventStore + ?Sized>(store: &S, stream: &StreamName) {
    assert_eq!(
        store.state_ok(stream).await,
        StreamState::Tombstoned,
        "state of {stream}"
    );
    for options in [
        ReadStreamOptions::forwards(),
        ReadStreamOptions::backwards(),
    ] {
        let result = store.read_stream(stream, options).await;
        assert_stream_deleted(result, stream, "read after tombstone");
    }
    let expectations = [
        ExpectedRevision::Any,
        ExpectedRevision::NoStream,
        ExpectedRevision::StreamExists,
        ExpectedRevision::Exact(0),
    ];
    for expected in expectations {
        let result = store.append(stream, expected, events(1)).await;
        assert_stream_deleted(
            result,
            stream,
            &format!("append with {expected} after tombstone"),
        );
        let result = store.delete_stream(stream, expected).await;
        assert_stream_deleted(
            result,
            stream,
            &format!("soft delete with {expected} after tombstone"),
        );
        let result = store.tombstone_stream(stream, expected).await;
        assert_stream_deleted(
            result,
            stream,
            &format!("tombstone with {expected} after tombstone"),
        );
    }
    let result = store.stream_metadata(stream).await;
    assert_stream_deleted(result, stream, "stream_metadata after tombstone");
    let metadata_stream = stream.metadata_stream();
    let result = store
        .read_stream(&metadata_stream, ReadStreamOptions::forwards())
        .await;
    assert_stream_deleted(
        result,
        &metadata_stream,
        "read of the metadata stream after tombstone",
    );
}

/// Tombstoning a stream with events makes it unreadable and unwritable for good.
pub async fn tombstone_of_existing_stream<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("tombstone_existing-1");
    let appended = store
        .append_ok(&orders, ExpectedRevision::NoStream, events(3))
        .await;
    let tombstoned = store
        .tombstone_stream(&orders, ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("tombstone of {orders}: {error}"));
    assert!(
        tombstoned.position > appended.position,
        "the tombstone is recorded last"
    );
    assert_tombstoned(&*store, &orders).await;

    let exact = stream("tombstone_existing-2");
    store
        .append_ok(&exact, ExpectedRevision::NoStream, events(2))
        .await;
    store
        .tombstone_stream(&exact, ExpectedRevision::Exact(1))
        .await
        .unwrap_or_else(|error| panic!("tombstone of {exact} with its revision: {error}"));
    assert_tombstoned(&*store, &exact).await;
}

/// Tombstoning a stream that never existed succeeds with `Any` and `NoStream`.
pub async fn tombstone_of_missing_stream<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    for (n, expected) in [ExpectedRevision::Any, ExpectedRevision::NoStream]
        .into_iter()
        .enumerate()
    {
        let missing = stream(&format!("tombstone_missing-{n}"));
        store
            .tombstone_stream(&missing, expected)
            .await
            .unwrap_or_else(|error| {
                panic!("tombstone of missing {missing} with {expected}: {error}")
            });
        assert_tombstoned(&*store, &missing).await;
    }
}

/// A tombstone checks its expected revision; a refused tombstone changes nothing.
pub async fn tombstone_checks_expected_revision<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("tombstone_expected-1");
    let result = store
        .tombstone_stream(&orders, ExpectedRevision::Exact(0))
        .await;
    assert_wrong_expected(
        result,
        &orders,
        ExpectedRevision::Exact(0),
        StreamState::NoStream,
    );
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(2))
        .await;
    for expected in [ExpectedRevision::NoStream, ExpectedRevision::Exact(0)] {
        let result = store.tombstone_stream(&orders, expected).await;
        assert_wrong_expected(result, &orders, expected, StreamState::At(Revision(1)));
    }
    assert_eq!(
        store.stream_events(&orders).await.len(),
        2,
        "the stream is untouched"
    );
}

/// `StreamExists` holds for a stream that has metadata but no events, for a tombstone as
/// for an append (KurrentDB checks both alike).
pub async fn tombstone_expecting_stream_exists_of_a_stream_with_only_metadata_succeeds<
    B: Backend,
>(
    backend: &B,
) {
    let store = backend.fresh().await;
    let orders = stream("tombstone_metadata_only-1");
    let metadata = StreamMetadata {
        max_count: Some(5),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&orders, ExpectedRevision::NoStream, &metadata)
        .await
        .unwrap_or_else(|error| panic!("set metadata of {orders}: {error}"));
    store
        .tombstone_stream(&orders, ExpectedRevision::StreamExists)
        .await
        .unwrap_or_else(|error| {
            panic!("tombstone of {orders} (metadata only) expecting it exists: {error}")
        });
    assert_tombstoned(&*store, &orders).await;
}

/// The metadata stream `$$S` of a tombstoned `S` that had metadata still takes writes,
/// checked against its own revision (as KurrentDB, whose writer remembers the metadata
/// stream's version); `S` and `$$S` stay unreadable and `S` unwritable.
pub async fn tombstoned_stream_metadata_is_writable_when_it_had_metadata<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("tombstone_metadata_write-1");
    let metadata = StreamMetadata {
        max_count: Some(5),
        ..StreamMetadata::default()
    };
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(2))
        .await;
    store
        .set_stream_metadata(&orders, ExpectedRevision::NoStream, &metadata)
        .await
        .unwrap_or_else(|error| panic!("set metadata of {orders}: {error}"));
    store
        .tombstone_stream(&orders, ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("tombstone of {orders}: {error}"));
    let written = store
        .set_stream_metadata(&orders, ExpectedRevision::Exact(0), &metadata)
        .await
        .unwrap_or_else(|error| panic!("metadata of tombstoned {orders} at 0: {error}"));
    assert_eq!(written.current_revision, Revision(1));
    let result = store
        .set_stream_metadata(&orders, ExpectedRevision::NoStream, &metadata)
        .await;
    assert_wrong_expected(
        result,
        &orders.metadata_stream(),
        ExpectedRevision::NoStream,
        StreamState::At(Revision(1)),
    );
    store
        .set_stream_metadata(&orders, ExpectedRevision::Any, &metadata)
        .await
        .unwrap_or_else(|error| panic!("metadata of tombstoned {orders} with any: {error}"));
    assert_tombstoned(&*store, &orders).await;
}

/// The metadata stream `$$S` of a tombstoned `S` that never had metadata refuses writes
/// with `StreamDeleted` naming `$$S`, as KurrentDB does.
pub async fn tombstoned_stream_metadata_is_refused_when_it_had_none<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("tombstone_metadata_refused-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(1))
        .await;
    store
        .tombstone_stream(&orders, ExpectedRevision::Exact(0))
        .await
        .unwrap_or_else(|error| panic!("tombstone of {orders}: {error}"));
    for expected in [ExpectedRevision::Any, ExpectedRevision::NoStream] {
        let result = store
            .set_stream_metadata(&orders, expected, &StreamMetadata::default())
            .await;
        assert_stream_deleted(
            result,
            &orders.metadata_stream(),
            &format!("set_stream_metadata with {expected} after tombstone"),
        );
    }
    assert_tombstoned(&*store, &orders).await;
}

/// A soft-deleted stream can still be tombstoned.
pub async fn tombstone_of_soft_deleted_stream<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("tombstone_soft_deleted-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(2))
        .await;
    store
        .delete_stream(&orders, ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("soft delete of {orders}: {error}"));
    store
        .tombstone_stream(&orders, ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("tombstone of soft-deleted {orders}: {error}"));
    assert_tombstoned(&*store, &orders).await;
}
