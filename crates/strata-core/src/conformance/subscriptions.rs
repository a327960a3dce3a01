//! Catch-up subscriptions over the backend: history, the switch to live, filters, ends.

use std::sync::Arc;

use crate::filter::{EventFilter, FilterTarget};
use crate::store::EventStore;
use crate::subscription::{
    SubscribeFrom, SubscriptionItem, SubscriptionOptions, subscribe_to_all, subscribe_to_all_with,
    subscribe_to_stream,
};
use crate::types::{ExpectedRevision, Position, RecordedEvent, Revision};

use super::Backend;
use super::support::{
    ITEM_WAIT_MAX, SUBSCRIPTION_BUFFER_ITEMS, StoreChecks, assert_strictly_increasing, events,
    events_until_caught_up, next_event, next_item, positions, revisions, stream,
};

/// Appenders in the catch-up race, and the appends each makes.
const RACE_WRITERS: usize = 4;
const RACE_APPENDS_PER_WRITER: usize = 40;

/// From the start, a `$all` subscription delivers history, then `CaughtUp`, then live events.
pub async fn subscribe_to_all_from_start<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("subscribe_all_start-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(5))
        .await;
    let history = store.all_events().await;
    let mut subscription = subscribe_to_all(
        Arc::clone(&store),
        SubscribeFrom::Start,
        None,
        SUBSCRIPTION_BUFFER_ITEMS,
    );
    let caught_up = events_until_caught_up(&mut subscription, "$all from start").await;
    assert_eq!(caught_up, history, "history before CaughtUp");
    let live = store
        .append_ok(&orders, ExpectedRevision::Exact(4), events(2))
        .await;
    let first = next_event(&mut subscription, "first live event").await;
    let second = next_event(&mut subscription, "second live event").await;
    assert_eq!(
        revisions(&[first, second.clone()]),
        vec![5, 6],
        "live events in order"
    );
    assert_eq!(second.position, live.position);
}

/// `After(p)` on `$all` starts strictly after `p`.
pub async fn subscribe_to_all_after_position_is_exclusive<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    store
        .append_ok(
            &stream("subscribe_all_after-1"),
            ExpectedRevision::Any,
            events(6),
        )
        .await;
    let history = store.all_events().await;
    let after = history[2].position;
    let mut subscription = subscribe_to_all(
        Arc::clone(&store),
        SubscribeFrom::After(after),
        None,
        SUBSCRIPTION_BUFFER_ITEMS,
    );
    let caught_up = events_until_caught_up(&mut subscription, "$all after a position").await;
    assert_eq!(
        caught_up,
        history[3..].to_vec(),
        "events strictly after {after}"
    );
}

/// From the end, a `$all` subscription delivers only events appended after it caught up.
pub async fn subscribe_to_all_from_end<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("subscribe_all_end-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(3))
        .await;
    let mut subscription = subscribe_to_all(
        Arc::clone(&store),
        SubscribeFrom::End,
        None,
        SUBSCRIPTION_BUFFER_ITEMS,
    );
    let caught_up = events_until_caught_up(&mut subscription, "$all from end").await;
    assert!(
        caught_up.is_empty(),
        "from the end delivers no history, got {caught_up:?}"
    );
    let live = store
        .append_ok(&orders, ExpectedRevision::Exact(2), events(1))
        .await;
    let event = next_event(&mut subscription, "live event from end").await;
    assert_eq!(event.position, live.position, "the new event");
    assert_eq!(event.revision, Revision(3));
}

/// Stream subscriptions: from the start, after a revision (exclusive), from the end.
pub async fn subscribe_to_stream_from_start_after_and_end<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("subscribe_stream-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(4))
        .await;
    store
        .append_ok(
            &stream("subscribe_stream-other"),
            ExpectedRevision::Any,
            events(2),
        )
        .await;
    let starts = [
        (SubscribeFrom::Start, vec![0, 1, 2, 3]),
        (SubscribeFrom::After(Revision(1)), vec![2, 3]),
        (SubscribeFrom::End, vec![]),
    ];
    let mut subscriptions = Vec::new();
    for (from, expected) in starts {
        let mut subscription = subscribe_to_stream(
            Arc::clone(&store),
            orders.clone(),
            from,
            SUBSCRIPTION_BUFFER_ITEMS,
        );
        let caught_up = events_until_caught_up(&mut subscription, "stream subscription").await;
        assert_eq!(
            revisions(&caught_up),
            expected,
            "history of {orders} with {from:?}"
        );
        subscriptions.push(subscription);
    }
    store
        .append_ok(
            &stream("subscribe_stream-other"),
            ExpectedRevision::Any,
            events(1),
        )
        .await;
    store
        .append_ok(&orders, ExpectedRevision::Exact(3), events(1))
        .await;
    for subscription in &mut subscriptions {
        let event = next_event(subscription, "live stream event").await;
        assert_eq!(event.stream, orders, "only events of {orders}");
        assert_eq!(event.revision, Revision(4), "the live event of {orders}");
    }
}

/// Appends `RACE_APPENDS_PER_WRITER` batches to a writer's own stream.
async fn race_writer<S: EventStore>(store: Arc<S>, writer: usize) {
    let name = stream(&format!("subscribe_race-{writer}"));
    for append in 0..RACE_APPENDS_PER_WRITER {
        store
            .append_ok(&name, ExpectedRevision::Any, events(append % 3 + 1))
            .await;
    }
}

/// The key test: while several tasks append, a subscriber catching up from the start sees
/// every event exactly once, in strictly increasing position order, with no gap.
pub async fn subscribe_to_all_catch_up_under_concurrent_appends<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let history = stream("subscribe_race-history");
    for append in 0..50 {
        store
            .append_ok(&history, ExpectedRevision::Any, events(append % 4 + 1))
            .await;
    }
    let mut subscription = subscribe_to_all(
        Arc::clone(&store),
        SubscribeFrom::Start,
        None,
        SUBSCRIPTION_BUFFER_ITEMS,
    );
    let writer_tasks: Vec<_> = (0..RACE_WRITERS)
        .map(|writer| tokio::spawn(race_writer(Arc::clone(&store), writer)))
        .collect();
    let mut writers = tokio::spawn(async move {
        for task in writer_tasks {
            task.await
                .unwrap_or_else(|error| panic!("a writer task failed: {error}"));
        }
    });
    let mut seen: Vec<RecordedEvent> = Vec::new();
    let mut caught_up_markers = 0;
    let mut expected_total = None;
    while expected_total.is_none_or(|total| seen.len() < total) {
        tokio::select! {
            item = next_item(&mut subscription, "catch-up race") => match item {
                SubscriptionItem::Event(event) => seen.push(event),
                SubscriptionItem::CaughtUp => caught_up_markers += 1,
                SubscriptionItem::Checkpoint(_) => {}
            },
            joined = &mut writers, if expected_total.is_none() => {
                joined.unwrap_or_else(|error| panic!("the writers failed: {error}"));
                expected_total = Some(store.all_events().await.len());
            }
        }
    }
    let all = store.all_events().await;
    assert_strictly_increasing(&positions(&seen), "the subscriber");
    assert_eq!(
        positions(&seen),
        positions(&all),
        "the subscriber saw exactly $all"
    );
    assert_eq!(seen, all, "the subscriber delivered the stored events");
    assert!(caught_up_markers <= 1, "CaughtUp is sent at most once");
}

/// A filtered `$all` subscription delivers matching events and checkpoints that cover
/// what it looked at.
pub async fn subscribe_to_all_filtered_with_checkpoints<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let wanted = stream("subscribe_filtered-1");
    let other = stream("other_filtered-1");
    for round in 0..5 {
        store
            .append_ok(&wanted, ExpectedRevision::Any, events(1))
            .await;
        store
            .append_ok(&other, ExpectedRevision::Any, events(round + 1))
            .await;
    }
    let filter = EventFilter::prefixes(FilterTarget::StreamName, vec!["subscribe_filtered".into()])
        .unwrap_or_else(|error| panic!("the case's filter is valid: {error}"));
    let mut subscription = subscribe_to_all(
        Arc::clone(&store),
        SubscribeFrom::Start,
        Some(filter),
        SUBSCRIPTION_BUFFER_ITEMS,
    );
    let mut items = Vec::new();
    loop {
        let item = next_item(&mut subscription, "filtered $all").await;
        if item == SubscriptionItem::CaughtUp {
            break;
        }
        items.push(item);
    }
    check_filtered_items(&items, &store.all_events().await);
    store
        .append_ok(&other, ExpectedRevision::Any, events(1))
        .await;
    let live = store
        .append_ok(&wanted, ExpectedRevision::Any, events(1))
        .await;
    let event = next_event(&mut subscription, "filtered live event").await;
    assert_eq!(
        event.position, live.position,
        "the live matching event only"
    );
}

/// A live subscription whose filter takes few events still checkpoints as the log moves
/// past the events it skips, whether it looked at them or an index let it skip them
/// (KurrentDB counts every event of the log toward the interval): a client resumes from
/// there, not from the history's end.
pub async fn subscribe_to_all_sparse_filter_checkpoints_while_live<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let noise = stream("sparsenoise-1");
    let wanted = stream("sparsewanted-1");
    store
        .append_ok(&noise, ExpectedRevision::Any, events(64))
        .await;
    let first = store
        .append_ok(&wanted, ExpectedRevision::Any, events(1))
        .await;
    for prefix in ["sparsewanted-", "$idx-ce-sparsewanted"] {
        let filter = EventFilter::prefixes(FilterTarget::StreamName, vec![prefix.into()])
            .unwrap_or_else(|error| panic!("the case's filter is valid: {error}"));
        let options = SubscriptionOptions {
            checkpoint_interval_events: 8,
            ..SubscriptionOptions::default()
        };
        let mut subscription = subscribe_to_all_with(
            Arc::clone(&store),
            SubscribeFrom::Start,
            Some(filter),
            options,
        );
        let history = events_until_caught_up(&mut subscription, prefix).await;
        assert!(
            history.iter().all(|event| event.stream == wanted),
            "{prefix}: the history holds the wanted stream only"
        );
        assert!(history.iter().any(|event| event.position == first.position));
        let skipped = store
            .append_ok(&noise, ExpectedRevision::Any, events(32))
            .await;
        loop {
            match next_item(&mut subscription, prefix).await {
                SubscriptionItem::Checkpoint(position) if position >= skipped.position => break,
                SubscriptionItem::Checkpoint(_) => {}
                other => panic!("{prefix}: only checkpoints while the log moves, got {other:?}"),
            }
        }
        let live = store
            .append_ok(&wanted, ExpectedRevision::Any, events(1))
            .await;
        let event = next_event(&mut subscription, prefix).await;
        assert_eq!(event.position, live.position, "{prefix}: the live event");
    }
}

/// Events are exactly the matching history; checkpoints never go back; a checkpoint is the
/// last event looked at, so every event delivered before it is at or below it and every
/// event after it strictly above (resuming after a checkpoint misses nothing).
fn check_filtered_items(items: &[SubscriptionItem], all: &[RecordedEvent]) {
    let matching: Vec<_> = all
        .iter()
        .filter(|event| event.stream.as_str() == "subscribe_filtered-1")
        .map(|event| event.position.0)
        .collect();
    let mut delivered = Vec::new();
    let mut checkpoint: Option<Position> = None;
    let mut checkpoints = 0;
    for item in items {
        match item {
            SubscriptionItem::Event(event) => {
                assert!(
                    checkpoint.is_none_or(|checkpoint| event.position > checkpoint),
                    "event {} at or before checkpoint {checkpoint:?}",
                    event.position
                );
                delivered.push(event.position.0);
            }
            SubscriptionItem::Checkpoint(position) => {
                assert!(
                    checkpoint.is_none_or(|checkpoint| *position >= checkpoint),
                    "checkpoints never go back"
                );
                assert!(
                    delivered.last().is_none_or(|last| *last <= position.0),
                    "checkpoint {position} covers the events delivered before it"
                );
                assert!(
                    all.iter().any(|event| event.position == *position),
                    "checkpoint {position} is the position of an event"
                );
                checkpoint = Some(*position);
                checkpoints += 1;
            }
            SubscriptionItem::CaughtUp => {}
        }
    }
    assert!(checkpoints > 0, "a filtered subscription sends checkpoints");
    let last = all.last().map(|event| event.position);
    assert_eq!(checkpoint, last, "the last checkpoint covers all history");
    assert_eq!(delivered, matching, "exactly the matching events");
}

/// A stream subscription ends with `StreamDeleted` when the stream is tombstoned.
pub async fn subscribe_to_tombstoned_stream_ends_with_stream_deleted<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("subscribe_tombstoned-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(2))
        .await;
    let mut subscription = subscribe_to_stream(
        Arc::clone(&store),
        orders.clone(),
        SubscribeFrom::Start,
        SUBSCRIPTION_BUFFER_ITEMS,
    );
    let history = events_until_caught_up(&mut subscription, "before the tombstone").await;
    assert_eq!(revisions(&history), vec![0, 1]);
    store
        .tombstone_stream(&orders, ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("tombstone of {orders}: {error}"));
    let end = tokio::time::timeout(ITEM_WAIT_MAX, subscription.next()).await;
    assert!(
        matches!(end, Ok(Some(Err(crate::Error::StreamDeleted { .. })))),
        "the subscription ends with StreamDeleted, got {end:?}"
    );
    let after = tokio::time::timeout(ITEM_WAIT_MAX, subscription.next()).await;
    assert!(
        matches!(after, Ok(None)),
        "nothing follows the error, got {after:?}"
    );

    let mut late = subscribe_to_stream(Arc::clone(&store), orders, SubscribeFrom::Start, 4);
    let end = tokio::time::timeout(ITEM_WAIT_MAX, late.next()).await;
    assert!(
        matches!(end, Ok(Some(Err(crate::Error::StreamDeleted { .. })))),
        "subscribing to a tombstoned stream fails with StreamDeleted, got {end:?}"
    );
}

/// While writers append to one stream, a stream subscriber from the start sees every
/// revision exactly once and in order.
pub async fn subscribe_to_stream_catch_up_under_concurrent_appends<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let shared = stream("subscribe_stream_race-1");
    store
        .append_ok(&shared, ExpectedRevision::NoStream, events(20))
        .await;
    let mut subscription = subscribe_to_stream(
        Arc::clone(&store),
        shared.clone(),
        SubscribeFrom::Start,
        SUBSCRIPTION_BUFFER_ITEMS,
    );
    let writers: Vec<_> = (0..RACE_WRITERS)
        .map(|_| {
            let store = Arc::clone(&store);
            let shared = shared.clone();
            tokio::spawn(async move {
                for append in 0..RACE_APPENDS_PER_WRITER {
                    store
                        .append_ok(&shared, ExpectedRevision::Any, events(append % 2 + 1))
                        .await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer
            .await
            .unwrap_or_else(|error| panic!("a writer failed: {error}"));
    }
    let stored = store.stream_events(&shared).await;
    let mut seen = Vec::new();
    while seen.len() < stored.len() {
        if let SubscriptionItem::Event(event) =
            next_item(&mut subscription, "stream catch-up race").await
        {
            seen.push(event);
        }
    }
    let expected: Vec<_> = (0..stored.len() as u64).collect();
    assert_eq!(revisions(&seen), expected, "every revision once, in order");
    assert_eq!(seen, stored, "the subscriber delivered the stored events");
}
