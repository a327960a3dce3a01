//! Atomic appends across streams: every part or none, each part decided as an append of it
//! alone, check-only parts, re-sends of the whole request, limits over the sum of parts.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::Error;
use crate::multi_append::AppendPart;
use crate::store::{EventStore, ReadAllOptions};
use crate::subscription::{
    SubscribeFrom, SubscriptionItem, SubscriptionOptions, subscribe_to_all_with,
};
use crate::types::{ExpectedRevision, ProposedEvent, Revision, StreamState};

use super::Backend;
use super::support::{
    SUBSCRIPTION_BUFFER_ITEMS, StoreChecks, assert_stream_deleted, assert_wrong_expected, events,
    ids, next_item, proposed_ids, revisions, stream,
};

/// For a backend whose stores cannot take multi-stream appends: the refusal is
/// `Unsupported` and nothing of the request is written. True when that was checked (the
/// case has nothing more to check on such a backend).
async fn refused_without_support<B: Backend>(backend: &B) -> bool {
    if backend.multi_append() {
        return false;
    }
    let store = backend.fresh().await;
    let first = stream("multi_unsupported-a");
    let second = stream("multi_unsupported-b");
    let outcome = store
        .append_multi(vec![
            AppendPart::write(first.clone(), ExpectedRevision::Any, events(1)),
            AppendPart::write(second.clone(), ExpectedRevision::NoStream, events(1)),
        ])
        .await;
    assert!(
        matches!(outcome, Err(Error::Unsupported { .. })),
        "a store without multi-stream appends must refuse them: {outcome:?}"
    );
    for name in [&first, &second] {
        assert_eq!(store.state_ok(name).await, StreamState::NoStream, "{name}");
    }
    true
}

/// Parts with every kind of expected revision land at consecutive positions of `$all`, in
/// request order, each at the revisions an append of it alone would give.
pub async fn multi_append_writes_every_part_together<B: Backend>(backend: &B) {
    if refused_without_support(backend).await {
        return;
    }
    let store = backend.fresh().await;
    let existing = stream("multi_together-existing");
    let metadata_only = stream("multi_together-metadata");
    let fresh = stream("multi_together-fresh");
    let anywhere = stream("multi_together-any");
    store
        .append_ok(&existing, ExpectedRevision::NoStream, events(2))
        .await;
    store
        .set_stream_metadata(&metadata_only, ExpectedRevision::Any, &Default::default())
        .await
        .unwrap_or_else(|error| panic!("metadata of {metadata_only}: {error}"));
    let before = store.all_events().await;
    let parts = vec![
        AppendPart::write(existing.clone(), ExpectedRevision::Exact(1), events(2)),
        AppendPart::write(fresh.clone(), ExpectedRevision::NoStream, events(1)),
        AppendPart::write(anywhere.clone(), ExpectedRevision::Any, events(3)),
        AppendPart::write(
            metadata_only.clone(),
            ExpectedRevision::StreamExists,
            events(1),
        ),
    ];
    let expected_ids: Vec<_> = parts
        .iter()
        .flat_map(|part| proposed_ids(&part.events))
        .collect();
    let result = store
        .append_multi(parts)
        .await
        .unwrap_or_else(|error| panic!("the multi-stream append failed: {error}"));
    let reported: Vec<_> = result
        .parts
        .iter()
        .map(|(name, appended)| (name.clone(), appended.current_revision))
        .collect();
    assert_eq!(
        reported,
        vec![
            (existing.clone(), Revision(3)),
            (fresh.clone(), Revision(0)),
            (anywhere.clone(), Revision(2)),
            (metadata_only.clone(), Revision(0)),
        ],
        "each part reports its stream's last revision"
    );
    let all = store.all_events().await;
    let added = &all[before.len()..];
    assert_eq!(
        ids(added),
        expected_ids,
        "$all holds the parts, in request order, nothing between"
    );
    assert_eq!(
        result.position,
        added[added.len() - 1].position,
        "the request reports its last event's position"
    );
    for (name, appended) in &result.parts {
        let read = store.stream_events(name).await;
        let last = &read[read.len() - 1];
        assert_eq!(
            (last.revision, last.position),
            (appended.current_revision, appended.position),
            "{name}'s result names its last event"
        );
    }
    assert_eq!(
        revisions(&store.stream_events(&existing).await),
        vec![0, 1, 2, 3]
    );
}

/// One failing part (wrong revision, tombstoned stream, invalid event) fails the whole
/// request, and nothing of any part is written.
pub async fn multi_append_failing_part_fails_the_whole<B: Backend>(backend: &B) {
    if refused_without_support(backend).await {
        return;
    }
    let store = backend.fresh().await;
    let first = stream("multi_fails-first");
    let second = stream("multi_fails-second");
    let gone = stream("multi_fails-gone");
    store
        .append_ok(&second, ExpectedRevision::NoStream, events(1))
        .await;
    store
        .tombstone_stream(&gone, ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("tombstone of {gone}: {error}"));
    let before = store.all_events().await;
    let result = store
        .append_multi(vec![
            AppendPart::write(first.clone(), ExpectedRevision::NoStream, events(2)),
            AppendPart::write(second.clone(), ExpectedRevision::Exact(5), events(1)),
        ])
        .await;
    assert_wrong_expected(
        result,
        &second,
        ExpectedRevision::Exact(5),
        StreamState::At(Revision(0)),
    );
    let result = store
        .append_multi(vec![
            AppendPart::write(first.clone(), ExpectedRevision::Any, events(1)),
            AppendPart::write(gone.clone(), ExpectedRevision::Any, events(1)),
        ])
        .await;
    assert_stream_deleted(result, &gone, "a part on a tombstoned stream");
    let result = store
        .append_multi(vec![
            AppendPart::write(first.clone(), ExpectedRevision::Any, events(1)),
            AppendPart::write(
                second.clone(),
                ExpectedRevision::Any,
                vec![ProposedEvent::json("", "{}")],
            ),
        ])
        .await;
    assert!(
        matches!(result, Err(Error::InvalidEventType { .. })),
        "a part with an invalid event: wanted InvalidEventType, got {result:?}"
    );
    assert_eq!(
        store.state_ok(&first).await,
        StreamState::NoStream,
        "no part was written"
    );
    assert_eq!(store.all_events().await, before, "nothing reached $all");
}

/// Check-only parts write nothing; a failing check fails the request; checks see the state
/// before the request, also for a stream the request writes.
pub async fn multi_append_check_only_parts<B: Backend>(backend: &B) {
    if refused_without_support(backend).await {
        return;
    }
    let store = backend.fresh().await;
    let course = stream("multi_checks-course");
    let student = stream("multi_checks-student");
    let gone = stream("multi_checks-gone");
    store
        .append_ok(&course, ExpectedRevision::NoStream, events(2))
        .await;
    store
        .tombstone_stream(&gone, ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("tombstone of {gone}: {error}"));
    let result = store
        .append_multi(vec![
            AppendPart::check(course.clone(), ExpectedRevision::Exact(1)),
            AppendPart::write(student.clone(), ExpectedRevision::NoStream, events(1)),
            AppendPart::check(student.clone(), ExpectedRevision::NoStream),
        ])
        .await
        .unwrap_or_else(|error| panic!("an append with passing checks failed: {error}"));
    assert_eq!(result.parts.len(), 1, "only the writing part reports");
    assert_eq!(result.parts[0].0, student);
    assert_eq!(
        revisions(&store.stream_events(&course).await),
        vec![0, 1],
        "checks write nothing"
    );

    let before = store.all_events().await;
    let result = store
        .append_multi(vec![
            AppendPart::write(student.clone(), ExpectedRevision::Exact(0), events(1)),
            AppendPart::check(course.clone(), ExpectedRevision::NoStream),
        ])
        .await;
    assert_wrong_expected(
        result,
        &course,
        ExpectedRevision::NoStream,
        StreamState::At(Revision(1)),
    );
    let result = store
        .append_multi(vec![
            AppendPart::write(student.clone(), ExpectedRevision::Exact(0), events(1)),
            AppendPart::check(gone.clone(), ExpectedRevision::Any),
        ])
        .await;
    assert_stream_deleted(result, &gone, "a check of a tombstoned stream");
    assert_eq!(
        store.all_events().await,
        before,
        "a failing check writes nothing"
    );

    let result = store
        .append_multi(vec![AppendPart::check(
            course.clone(),
            ExpectedRevision::Any,
        )])
        .await;
    assert!(
        matches!(result, Err(Error::InvalidArgument { .. })),
        "a request of checks alone: wanted InvalidArgument, got {result:?}"
    );
}

/// Re-sending the whole request returns the original result and writes nothing; a request
/// of which only some parts are in place is refused.
pub async fn multi_append_resend_returns_the_original_result<B: Backend>(backend: &B) {
    if refused_without_support(backend).await {
        return;
    }
    let store = backend.fresh().await;
    let debit = stream("multi_resend-debit");
    let credit = stream("multi_resend-credit");
    store
        .append_ok(&debit, ExpectedRevision::NoStream, events(1))
        .await;
    let parts = vec![
        AppendPart::write(debit.clone(), ExpectedRevision::Exact(0), events(1)),
        AppendPart::write(credit.clone(), ExpectedRevision::Any, events(2)),
    ];
    let original = store
        .append_multi(parts.clone())
        .await
        .unwrap_or_else(|error| panic!("the first send failed: {error}"));
    let all_before = store.all_events().await;
    let resent = store
        .append_multi(parts.clone())
        .await
        .unwrap_or_else(|error| panic!("the re-send failed: {error}"));
    assert_eq!(resent, original, "a re-send returns the original result");
    assert_eq!(
        store.all_events().await,
        all_before,
        "a re-send writes nothing"
    );

    let mut mixed = parts.clone();
    mixed[1] = AppendPart::write(credit.clone(), ExpectedRevision::Any, events(1));
    let result = store.append_multi(mixed).await;
    assert_wrong_expected(
        result,
        &debit,
        ExpectedRevision::Exact(0),
        StreamState::At(Revision(1)),
    );
    assert_eq!(
        store.all_events().await,
        all_before,
        "nothing of a partial re-send is written"
    );
}

/// The limits count every part together; a stream written by two parts is refused.
pub async fn multi_append_limits_apply_to_the_sum<B: Backend>(backend: &B) {
    if refused_without_support(backend).await {
        return;
    }
    let store = backend.fresh().await;
    let limits = store.limits();
    let event_size = limits.event_bytes_max.min(limits.append_bytes_max);
    let count = limits.append_bytes_max / event_size + 1;
    let shared = Bytes::from(vec![3u8; event_size]);
    let sized = || {
        let event_type = "Sized";
        ProposedEvent::binary(event_type, shared.slice(..event_size - event_type.len()))
    };
    let left = stream("multi_limits-left");
    let right = stream("multi_limits-right");
    let half = count / 2;
    let result = store
        .append_multi(vec![
            AppendPart::write(
                left.clone(),
                ExpectedRevision::Any,
                (0..half).map(|_| sized()).collect(),
            ),
            AppendPart::write(
                right.clone(),
                ExpectedRevision::Any,
                (half..count).map(|_| sized()).collect(),
            ),
        ])
        .await;
    assert!(
        matches!(result, Err(Error::AppendTooLarge { .. })),
        "parts over {} bytes together: wanted AppendTooLarge, got {result:?}",
        limits.append_bytes_max
    );
    let result = store
        .append_multi(vec![
            AppendPart::write(left.clone(), ExpectedRevision::Any, events(1)),
            AppendPart::write(left.clone(), ExpectedRevision::Any, events(1)),
        ])
        .await;
    assert!(
        matches!(result, Err(Error::InvalidArgument { .. })),
        "a stream written by two parts: wanted InvalidArgument, got {result:?}"
    );
    assert!(store.all_events().await.is_empty(), "nothing was written");
}

const MULTI_APPENDS: usize = 30;
const EVENTS_PER_PART: usize = 3;

/// Readers of streams and of `$all`, and a live `$all` subscriber, see each multi-stream
/// append whole or not at all.
pub async fn readers_never_see_a_partial_multi_append<B: Backend>(backend: &B) {
    if refused_without_support(backend).await {
        return;
    }
    let store = backend.fresh().await;
    let left = stream("multi_partial-left");
    let right = stream("multi_partial-right");
    let options = SubscriptionOptions {
        buffer_items: SUBSCRIPTION_BUFFER_ITEMS,
        ..SubscriptionOptions::default()
    };
    let subscriber = {
        let store = Arc::clone(&store);
        let (left, right) = (left.clone(), right.clone());
        tokio::spawn(async move {
            let mut subscription =
                subscribe_to_all_with(Arc::clone(&store), SubscribeFrom::Start, None, options);
            let group = 2 * EVENTS_PER_PART;
            let mut seen = Vec::new();
            while seen.len() < MULTI_APPENDS * group {
                let what = format!("$all event {}", seen.len());
                let event = match next_item(&mut subscription, &what).await {
                    SubscriptionItem::Event(event) => event,
                    _ => continue,
                };
                let index = seen.len() % group;
                let expected_stream = if index < EVENTS_PER_PART {
                    &left
                } else {
                    &right
                };
                assert_eq!(
                    &event.stream, expected_stream,
                    "the subscriber sees each append's parts together, in request order"
                );
                if index == 0 {
                    // Whatever the subscriber is handed, the rest of its append is visible.
                    let visible = store
                        .read_all_ok(
                            ReadAllOptions::forwards()
                                .from_position(event.position)
                                .max_count(group),
                        )
                        .await;
                    assert_eq!(
                        visible.events.len(),
                        group,
                        "a subscriber was handed the start of an append not wholly visible"
                    );
                }
                seen.push(event);
            }
            seen
        })
    };
    let writer = {
        let store = Arc::clone(&store);
        let (left, right) = (left.clone(), right.clone());
        tokio::spawn(async move {
            for _ in 0..MULTI_APPENDS {
                store
                    .append_multi(vec![
                        AppendPart::write(
                            left.clone(),
                            ExpectedRevision::Any,
                            events(EVENTS_PER_PART),
                        ),
                        AppendPart::write(
                            right.clone(),
                            ExpectedRevision::Any,
                            events(EVENTS_PER_PART),
                        ),
                    ])
                    .await
                    .unwrap_or_else(|error| panic!("a multi-stream append failed: {error}"));
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let left_count = store.stream_events(&left).await.len();
        let all = store.all_events().await;
        assert_eq!(
            all.len() % (2 * EVENTS_PER_PART),
            0,
            "a $all read saw {} events: part of a multi-stream append",
            all.len()
        );
        // A stream read may run a moment ahead of `$all` (the engine publishes its index
        // before the durable end), so each is checked on its own.
        assert_eq!(
            left_count % EVENTS_PER_PART,
            0,
            "a read of {left} saw {left_count} events: part of an append"
        );
        reads += 1;
        tokio::task::yield_now().await;
    }
    writer
        .await
        .unwrap_or_else(|error| panic!("the writer failed: {error}"));
    let seen = subscriber
        .await
        .unwrap_or_else(|error| panic!("the subscriber failed: {error}"));
    assert_eq!(
        seen,
        store.all_events().await,
        "the subscriber saw $all as it is"
    );
}
