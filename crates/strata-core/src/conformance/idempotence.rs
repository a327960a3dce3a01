//! Idempotent appends: re-sending event ids that are already in place writes nothing.

use crate::store::EventStore;
use crate::types::{ExpectedRevision, Revision, StreamState};

use super::Backend;
use super::support::{
    StoreChecks, assert_wrong_expected, event, events, ids, proposed_ids, stream,
};

/// Re-sending batches with the same `NoStream` / `Exact` expectation returns their results.
pub async fn idempotent_resend_with_exact_returns_the_same_result<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("idempotent_exact-1");
    let first_batch = events(3);
    let second_batch = events(2);
    let first = store
        .append_ok(&orders, ExpectedRevision::NoStream, first_batch.clone())
        .await;
    let second = store
        .append_ok(&orders, ExpectedRevision::Exact(2), second_batch.clone())
        .await;
    let third_batch = events(1);
    let third = store
        .append_ok(&orders, ExpectedRevision::Exact(4), third_batch.clone())
        .await;
    let all_before = store.all_events().await;

    let resent_third = store
        .append_ok(&orders, ExpectedRevision::Exact(4), third_batch.clone())
        .await;
    assert_eq!(
        resent_third, third,
        "re-sending the last batch returns its result"
    );

    let resent_second = store
        .append_ok(&orders, ExpectedRevision::Exact(2), second_batch.clone())
        .await;
    assert_eq!(
        resent_second, second,
        "re-sending a middle batch returns its result"
    );
    let resent_first = store
        .append_ok(&orders, ExpectedRevision::NoStream, first_batch.clone())
        .await;
    assert_eq!(
        resent_first, first,
        "re-sending an earlier batch returns its result"
    );

    let read = store.stream_events(&orders).await;
    let mut expected_ids = proposed_ids(&first_batch);
    expected_ids.extend(proposed_ids(&second_batch));
    expected_ids.extend(proposed_ids(&third_batch));
    assert_eq!(ids(&read), expected_ids, "the stream holds each event once");
    assert_eq!(
        store.all_events().await,
        all_before,
        "$all has no duplicates"
    );
    assert_eq!(store.state_ok(&orders).await, StreamState::At(Revision(5)));
}

/// With `Any`, re-sending the last batch right after it returns its result.
pub async fn idempotent_resend_with_any_returns_the_same_result<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("idempotent_any-1");
    store
        .append_ok(&orders, ExpectedRevision::Any, events(1))
        .await;
    let batch = events(3);
    let first = store
        .append_ok(&orders, ExpectedRevision::Any, batch.clone())
        .await;
    let resent = store
        .append_ok(&orders, ExpectedRevision::Any, batch.clone())
        .await;
    assert_eq!(
        resent, first,
        "re-sending with Any returns the original result"
    );
    let read = store.stream_events(&orders).await;
    assert_eq!(read.len(), 4, "the stream holds each event once");
    assert_eq!(store.all_events().await.len(), 4, "$all has no duplicates");
}

/// A batch whose first ids are in place but a later one differs is refused.
pub async fn idempotent_partial_match_fails<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("idempotent_partial-1");
    let batch = events(3);
    store
        .append_ok(&orders, ExpectedRevision::NoStream, batch.clone())
        .await;
    let mut changed = batch.clone();
    changed[2] = event("Tested", 99);
    let result = store
        .append(&orders, ExpectedRevision::NoStream, changed.clone())
        .await;
    assert_wrong_expected(
        result,
        &orders,
        ExpectedRevision::NoStream,
        StreamState::At(Revision(2)),
    );
    let result = store.append(&orders, ExpectedRevision::Any, changed).await;
    assert_wrong_expected(
        result,
        &orders,
        ExpectedRevision::Any,
        StreamState::At(Revision(2)),
    );
    let read = store.stream_events(&orders).await;
    assert_eq!(
        ids(&read),
        proposed_ids(&batch),
        "nothing of the refused batches was written"
    );
}

/// The same event id may be appended to another stream.
pub async fn idempotence_is_per_stream<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let first = stream("idempotent_per_stream-a");
    let second = stream("idempotent_per_stream-b");
    let shared = event("Tested", 1);
    store
        .append_ok(&first, ExpectedRevision::Any, vec![shared.clone()])
        .await;
    let result = store
        .append_ok(&second, ExpectedRevision::Any, vec![shared.clone()])
        .await;
    assert_eq!(result.current_revision, Revision(0));
    let third = stream("idempotent_per_stream-c");
    store
        .append_ok(&third, ExpectedRevision::NoStream, vec![shared.clone()])
        .await;
    for name in [&first, &second, &third] {
        let read = store.stream_events(name).await;
        assert_eq!(
            ids(&read),
            vec![shared.id],
            "{name} holds the shared event once"
        );
    }
    assert_eq!(
        store.all_events().await.len(),
        3,
        "$all holds one copy per stream"
    );
}
