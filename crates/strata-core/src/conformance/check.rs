//! Checking an expected revision without writing (KurrentDB's answer to an append of no
//! events) decides exactly as an append of events would.

use crate::error::Error;
use crate::metadata::StreamMetadata;
use crate::store::EventStore;
use crate::types::{ExpectedRevision, Revision, StreamName, StreamState};

use super::Backend;
use super::support::{StoreChecks, events, stream};

/// The states a stream is checked in.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Missing,
    WithEvents,
    OnlyMetadata,
    SoftDeleted,
    Tombstoned,
    /// `$$S` of a tombstoned `S` that never had metadata.
    MetadataOfTombstoned,
    /// `$$S` of a tombstoned `S` whose metadata was written before.
    WrittenMetadataOfTombstoned,
}

const SHAPES: [Shape; 7] = [
    Shape::Missing,
    Shape::WithEvents,
    Shape::OnlyMetadata,
    Shape::SoftDeleted,
    Shape::Tombstoned,
    Shape::MetadataOfTombstoned,
    Shape::WrittenMetadataOfTombstoned,
];

const EXPECTATIONS: [ExpectedRevision; 6] = [
    ExpectedRevision::Any,
    ExpectedRevision::NoStream,
    ExpectedRevision::StreamExists,
    ExpectedRevision::Exact(0),
    ExpectedRevision::Exact(1),
    ExpectedRevision::Exact(5),
];

/// Makes a stream named after `n` in `shape`; returns the stream to check and write.
async fn prepare<S: EventStore + ?Sized>(store: &S, shape: Shape, n: usize) -> StreamName {
    let orders = stream(&format!("check_expected-{n}"));
    let metadata = StreamMetadata {
        max_count: Some(10),
        ..StreamMetadata::default()
    };
    let with_events = matches!(
        shape,
        Shape::WithEvents | Shape::SoftDeleted | Shape::Tombstoned
    );
    if with_events {
        store
            .append_ok(&orders, ExpectedRevision::NoStream, events(2))
            .await;
    }
    if matches!(
        shape,
        Shape::OnlyMetadata | Shape::WrittenMetadataOfTombstoned
    ) {
        store
            .set_stream_metadata(&orders, ExpectedRevision::NoStream, &metadata)
            .await
            .unwrap_or_else(|error| panic!("metadata of {orders}: {error}"));
    }
    let deleted = match shape {
        Shape::SoftDeleted => store.delete_stream(&orders, ExpectedRevision::Any).await,
        Shape::Tombstoned | Shape::MetadataOfTombstoned | Shape::WrittenMetadataOfTombstoned => {
            store.tombstone_stream(&orders, ExpectedRevision::Any).await
        }
        _ => return orders,
    };
    deleted.unwrap_or_else(|error| panic!("delete of {orders} ({shape:?}): {error}"));
    match shape {
        Shape::MetadataOfTombstoned | Shape::WrittenMetadataOfTombstoned => {
            orders.metadata_stream()
        }
        _ => orders,
    }
}

/// What a check or an append came to, in terms both share.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The revision the stream was at before the write.
    Passed(Option<u64>),
    Wrong(StreamState),
    Deleted(StreamName),
}

fn outcome<T>(result: crate::Result<T>, revision_before: impl FnOnce(T) -> Option<u64>) -> Outcome {
    match result {
        Ok(value) => Outcome::Passed(revision_before(value)),
        Err(Error::WrongExpectedRevision { actual, .. }) => Outcome::Wrong(actual),
        Err(Error::StreamDeleted { stream }) => Outcome::Deleted(stream),
        Err(other) => panic!("neither passed nor refused by the rules: {other}"),
    }
}

/// For every stream state and expected revision, `check_expected_revision` answers what an
/// append of one event then does: passes (reporting the revision before it), or fails with
/// the same error. On metadata-only and soft-deleted streams in particular.
pub async fn checking_an_expected_revision_agrees_with_appending<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let mut n = 0;
    for shape in SHAPES {
        for expected in EXPECTATIONS {
            n += 1;
            let target = prepare(&*store, shape, n).await;
            let checked = outcome(
                store.check_expected_revision(&target, expected).await,
                |revision: Option<Revision>| revision.map(|revision| revision.0),
            );
            let appended = outcome(store.append(&target, expected, events(1)).await, |result| {
                result.current_revision.0.checked_sub(1)
            });
            assert_eq!(
                checked, appended,
                "{target} ({shape:?}) with {expected}: the check and the append disagree"
            );
        }
    }
}
