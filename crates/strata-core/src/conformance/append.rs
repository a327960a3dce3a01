//! Appends: revisions, positions, expected-revision checks, atomicity.

use crate::metadata::StreamMetadata;
use crate::store::{EventStore, ReadAllOptions, ReadStreamOptions, StreamSlice};
use crate::types::{ExpectedRevision, Revision, StreamState};

use super::Backend;
use super::support::{
    StoreChecks, assert_strictly_increasing, assert_wrong_expected, events, positions, revisions,
    stream,
};

/// `Any` on a new stream writes revisions from 0 and reports the last one.
pub async fn append_any_to_new_stream_starts_at_zero<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("append_any-1");
    let result = store
        .append_ok(&orders, ExpectedRevision::Any, events(3))
        .await;
    assert_eq!(
        result.current_revision,
        Revision(2),
        "current revision is the last one"
    );
    let read = store.stream_events(&orders).await;
    assert_eq!(revisions(&read), vec![0, 1, 2], "revisions start at 0");
    assert_eq!(
        result.position, read[2].position,
        "the append reports the position of its last event"
    );
    assert_eq!(store.state_ok(&orders).await, StreamState::At(Revision(2)));
}

/// `NoStream` on a new stream writes revisions from 0.
pub async fn append_no_stream_to_new_stream_starts_at_zero<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("append_no_stream-1");
    assert_eq!(store.state_ok(&orders).await, StreamState::NoStream);
    let result = store
        .append_ok(&orders, ExpectedRevision::NoStream, events(2))
        .await;
    assert_eq!(result.current_revision, Revision(1));
    let read = store.stream_events(&orders).await;
    assert_eq!(revisions(&read), vec![0, 1]);
    assert_eq!(result.position, read[1].position);
}

/// Positions strictly increase inside a batch and across appends to different streams.
pub async fn append_positions_strictly_increase<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let first = stream("append_positions-a");
    let second = stream("append_positions-b");
    let mut last_position = None;
    for round in 0..4 {
        let target = if round % 2 == 0 { &first } else { &second };
        let result = store
            .append_ok(target, ExpectedRevision::Any, events(3))
            .await;
        if let Some(previous) = last_position {
            assert!(
                result.position > previous,
                "append {round} is at {} but the previous append was at {previous}",
                result.position
            );
        }
        last_position = Some(result.position);
    }
    let all = store.all_events().await;
    assert_eq!(all.len(), 12, "$all holds every appended event");
    assert_strictly_increasing(&positions(&all), "$all after four appends");
    assert_eq!(store.last_position().await.ok().flatten(), last_position);
}

/// `Exact(n)` on a stream that does not exist fails with actual `NoStream`.
pub async fn append_exact_to_missing_stream_fails<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("append_exact_missing-1");
    for revision in [0, 5] {
        let expected = ExpectedRevision::Exact(revision);
        let result = store.append(&orders, expected, events(1)).await;
        assert_wrong_expected(result, &orders, expected, StreamState::NoStream);
    }
    assert_eq!(
        store
            .read_stream_ok(&orders, ReadStreamOptions::forwards())
            .await,
        StreamSlice::NotFound,
        "a refused append writes nothing"
    );
}

/// `Exact(N)` with N the last revision succeeds; any other N fails with actual `At(last)`.
pub async fn append_exact_checks_the_last_revision<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("append_exact-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(3))
        .await;
    for wrong in [0, 1, 3, 10] {
        let expected = ExpectedRevision::Exact(wrong);
        let result = store.append(&orders, expected, events(1)).await;
        assert_wrong_expected(result, &orders, expected, StreamState::At(Revision(2)));
    }
    let result = store
        .append_ok(&orders, ExpectedRevision::Exact(2), events(2))
        .await;
    assert_eq!(result.current_revision, Revision(4));
    let read = store.stream_events(&orders).await;
    assert_eq!(
        revisions(&read),
        vec![0, 1, 2, 3, 4],
        "only the right append wrote"
    );
}

/// `NoStream` on a stream with events fails with actual `At(last)`.
pub async fn append_no_stream_to_existing_stream_fails<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("append_no_stream_existing-1");
    store
        .append_ok(&orders, ExpectedRevision::Any, events(2))
        .await;
    let result = store
        .append(&orders, ExpectedRevision::NoStream, events(1))
        .await;
    assert_wrong_expected(
        result,
        &orders,
        ExpectedRevision::NoStream,
        StreamState::At(Revision(1)),
    );
    assert_eq!(store.stream_events(&orders).await.len(), 2);
}

/// `StreamExists` fails on a missing stream and succeeds on a stream with events.
pub async fn append_stream_exists_checks_existence<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("append_stream_exists-1");
    let result = store
        .append(&orders, ExpectedRevision::StreamExists, events(1))
        .await;
    assert_wrong_expected(
        result,
        &orders,
        ExpectedRevision::StreamExists,
        StreamState::NoStream,
    );
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(1))
        .await;
    let result = store
        .append_ok(&orders, ExpectedRevision::StreamExists, events(2))
        .await;
    assert_eq!(result.current_revision, Revision(2));
}

/// `StreamExists` succeeds on a stream without events whose metadata exists.
pub async fn append_stream_exists_with_only_metadata_succeeds<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("append_stream_exists_metadata-1");
    let metadata = StreamMetadata {
        max_count: Some(10),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&orders, ExpectedRevision::Any, &metadata)
        .await
        .unwrap_or_else(|error| panic!("set metadata of {orders}: {error}"));
    let result = store
        .append_ok(&orders, ExpectedRevision::StreamExists, events(1))
        .await;
    assert_eq!(
        result.current_revision,
        Revision(0),
        "the first event is revision 0"
    );
    assert_eq!(revisions(&store.stream_events(&orders).await), vec![0]);
}

/// A refused batch writes none of its events; a written batch has consecutive revisions.
pub async fn append_batch_is_atomic<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("append_atomic-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(2))
        .await;
    let all_before = store.all_events().await;
    let result = store
        .append(&orders, ExpectedRevision::Exact(0), events(5))
        .await;
    assert!(result.is_err(), "a batch with a stale revision is refused");
    assert_eq!(
        store.stream_events(&orders).await.len(),
        2,
        "nothing of it in the stream"
    );
    assert_eq!(
        store.all_events().await,
        all_before,
        "nothing of it in $all"
    );
    let result = store
        .append_ok(&orders, ExpectedRevision::Exact(1), events(5))
        .await;
    let read = store.stream_events(&orders).await;
    assert_eq!(revisions(&read), (0..7).collect::<Vec<_>>());
    assert_eq!(result.position, read[6].position);
    assert_strictly_increasing(&positions(&read[2..]), "one batch");
}

/// An append of zero events is refused as an invalid argument and writes nothing: an
/// `AppendResult` cannot describe a stream that has no events, so front ends that must
/// answer empty appends (KurrentDB's gRPC) check `stream_state` themselves.
pub async fn append_of_no_events_is_refused<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let empty = stream("append_empty-1");
    let refused = store
        .append(&empty, ExpectedRevision::Any, Vec::new())
        .await;
    assert!(
        matches!(refused, Err(crate::Error::InvalidArgument { .. })),
        "an empty append is an invalid argument, got {refused:?}"
    );
    assert_eq!(store.state_ok(&empty).await, StreamState::NoStream);

    let orders = stream("append_empty-2");
    store
        .append_ok(&orders, ExpectedRevision::Any, events(2))
        .await;
    let refused = store
        .append(&orders, ExpectedRevision::Exact(1), Vec::new())
        .await;
    assert!(
        refused.is_err(),
        "an empty append to an existing stream is refused too"
    );
    assert_eq!(store.stream_events(&orders).await.len(), 2);
    let all = store.read_all_ok(ReadAllOptions::forwards()).await;
    assert_eq!(all.events.len(), 2, "$all gained nothing");
}
