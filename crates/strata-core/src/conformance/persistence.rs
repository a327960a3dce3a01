//! Persistence: what was acknowledged is there after a reopen, unchanged, and writing goes
//! on. Backends without [`Backend::reopen`] run these against the same store.

use std::time::Duration;

use crate::metadata::StreamMetadata;
use crate::store::{EventStore, ReadStreamOptions, StreamSlice};
use crate::types::{AppendResult, ExpectedRevision, ProposedEvent, Revision, StreamState};

use super::Backend;
use super::support::{StoreChecks, events, positions, revisions, stream};

/// What the persistence case writes before it reopens.
struct Written {
    last_batch: Vec<ProposedEvent>,
    last: AppendResult,
    metadata: StreamMetadata,
}

/// Writes events, metadata, a soft delete and a tombstone.
async fn write_everything<S: EventStore + ?Sized>(store: &S) -> Written {
    let orders = stream("persist_orders-1");
    let deleted = stream("persist_deleted-1");
    let tombstoned = stream("persist_tombstoned-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(3))
        .await;
    let last_batch = events(2);
    let last = store
        .append_ok(&orders, ExpectedRevision::Exact(2), last_batch.clone())
        .await;
    store
        .append_ok(&deleted, ExpectedRevision::NoStream, events(2))
        .await;
    store
        .append_ok(&tombstoned, ExpectedRevision::NoStream, events(1))
        .await;
    let metadata = StreamMetadata {
        max_age: Some(Duration::from_secs(86_400)),
        max_count: Some(100),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&orders, ExpectedRevision::NoStream, &metadata)
        .await
        .unwrap_or_else(|error| panic!("set metadata of {orders}: {error}"));
    store
        .delete_stream(&deleted, ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("soft delete of {deleted}: {error}"));
    store
        .tombstone_stream(&tombstoned, ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("tombstone of {tombstoned}: {error}"));
    Written {
        last_batch,
        last,
        metadata,
    }
}

/// Events, positions, metadata, deletes and tombstones survive a reopen; appends continue
/// after the last revision and the last position.
pub async fn reopen_keeps_everything<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let Written {
        last_batch,
        last,
        metadata,
    } = write_everything(&*store).await;
    let orders = stream("persist_orders-1");
    let deleted = stream("persist_deleted-1");
    let tombstoned = stream("persist_tombstoned-1");
    let all_before = store.all_events().await;
    let last_position = store.last_position().await.ok().flatten();

    let store = backend.reopen(store).await;
    assert_eq!(
        store.all_events().await,
        all_before,
        "$all is unchanged after reopen"
    );
    assert_eq!(store.last_position().await.ok().flatten(), last_position);
    assert_eq!(
        revisions(&store.stream_events(&orders).await),
        vec![0, 1, 2, 3, 4]
    );
    let read = store.stream_metadata(&orders).await.ok();
    assert_eq!(
        read.map(|read| read.metadata),
        Some(metadata),
        "metadata after reopen"
    );
    assert_eq!(
        store
            .read_stream_ok(&deleted, ReadStreamOptions::forwards())
            .await,
        StreamSlice::NotFound,
        "a soft-deleted stream stays deleted"
    );
    assert_eq!(store.state_ok(&deleted).await, StreamState::At(Revision(1)));
    assert_eq!(store.state_ok(&tombstoned).await, StreamState::Tombstoned);

    let resent = store
        .append_ok(&orders, ExpectedRevision::Exact(2), last_batch)
        .await;
    assert_eq!(
        resent, last,
        "re-sending the last batch after reopen is idempotent"
    );
    let next = store
        .append_ok(&orders, ExpectedRevision::Exact(4), events(1))
        .await;
    assert_eq!(
        next.current_revision,
        Revision(5),
        "appends continue after reopen"
    );
    let last_position = last_position.unwrap_or_else(|| panic!("the store has events"));
    assert!(
        next.position > last_position,
        "positions continue after reopen"
    );
    let all = store.all_events().await;
    assert_eq!(positions(&all[..all_before.len()]), positions(&all_before));
}

/// A store reopened twice in a row, with appends in between, keeps every event.
pub async fn reopen_twice_keeps_appending<B: Backend>(backend: &B) {
    let mut store = backend.fresh().await;
    let orders = stream("persist_twice-1");
    let mut expected = ExpectedRevision::NoStream;
    for round in 0..3u64 {
        let result = store.append_ok(&orders, expected, events(2)).await;
        assert_eq!(
            result.current_revision,
            Revision(round * 2 + 1),
            "round {round}"
        );
        expected = ExpectedRevision::Exact(result.current_revision.0);
        store = backend.reopen(store).await;
    }
    let read = store.stream_events(&orders).await;
    assert_eq!(
        revisions(&read),
        (0..6).collect::<Vec<_>>(),
        "every round's events"
    );
    let mut log_end = store.watch_log_end();
    let last = read[5].position;
    let waited =
        tokio::time::timeout(Duration::from_secs(5), log_end.wait_for(|end| *end > last)).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "the reopened log end is past the last event"
    );
}
