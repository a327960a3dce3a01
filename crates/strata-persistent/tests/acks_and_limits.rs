//! Acks that name an id several waiting events share, the byte budget of a group's window,
//! the limit on the number of groups, and the settings the reference server accepts.

use std::sync::Arc;
use std::time::Duration;

use strata_core::{EventId, EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_engine::{Config, Store};
use strata_persistent::{
    Consumer, ConsumerOptions, ConsumerStrategy, Error, FilterSpec, GroupInfo, GroupSettings,
    PersistentEvent, PersistentLimits, PersistentSubscriptions, StartFrom, SubscriptionSource,
};
use tempfile::TempDir;

/// A guard against hangs, not a timing assertion.
const WAIT: Duration = Duration::from_secs(20);

fn open(dir: &TempDir) -> Arc<Store> {
    Store::open(dir.path(), Config::small_for_tests()).unwrap()
}

fn stream(name: &str) -> SubscriptionSource {
    SubscriptionSource::Stream(StreamName::new(name).unwrap())
}

fn from_start(strategy: ConsumerStrategy) -> GroupSettings {
    GroupSettings {
        start_from: StartFrom::Start,
        consumer_strategy: strategy,
        ..GroupSettings::default()
    }
}

/// Appends one JSON event with the given id to `name`.
async fn append_with_id(store: &Store, name: &str, id: EventId) {
    let event = ProposedEvent {
        id,
        ..ProposedEvent::json("Shared", "{}")
    };
    store
        .append(
            &StreamName::new(name).unwrap(),
            ExpectedRevision::Any,
            vec![event],
        )
        .await
        .unwrap();
}

async fn connect(
    subscriptions: &PersistentSubscriptions,
    source: &SubscriptionSource,
    group: &str,
    buffer_size: usize,
) -> Consumer {
    let options = ConsumerOptions {
        buffer_size,
        name: String::new(),
    };
    subscriptions.connect(source, group, options).await.unwrap()
}

async fn next(consumer: &mut Consumer) -> PersistentEvent {
    tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("an event within the guard time")
        .unwrap()
}

async fn info(subscriptions: &PersistentSubscriptions, source: &SubscriptionSource) -> GroupInfo {
    subscriptions.info(source, "g").await.unwrap()
}

/// A `$all` group over the streams starting `dup-`.
async fn all_group_over_dup_streams(subscriptions: &PersistentSubscriptions) {
    let filter = FilterSpec {
        on_event_type: false,
        regex: String::new(),
        prefixes: vec!["dup-".to_owned()],
    };
    subscriptions
        .create(
            &SubscriptionSource::All,
            "g",
            from_start(ConsumerStrategy::RoundRobin),
            Some(filter),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn two_events_with_one_id_in_one_window_are_each_finished_by_their_own_ack() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    // Ids are unique per stream only: two streams may hold events with the same id.
    let shared = EventId::new_random();
    append_with_id(&store, "dup-a", shared).await;
    append_with_id(&store, "dup-b", shared).await;
    all_group_over_dup_streams(&subscriptions).await;
    let source = SubscriptionSource::All;
    let mut consumer = connect(&subscriptions, &source, "g", 10).await;
    let first = next(&mut consumer).await;
    let second = next(&mut consumer).await;
    assert_eq!(
        (first.event_or_link().id, second.event_or_link().id),
        (shared, shared)
    );

    consumer.ack(vec![shared]).await.unwrap();
    let after_one = info(&subscriptions, &source).await;
    assert_eq!(after_one.in_flight_count, 1, "one ack finishes one event");
    assert_eq!(after_one.window_count, 1, "the older one is finished first");
    consumer.ack(vec![shared]).await.unwrap();
    let after_two = info(&subscriptions, &source).await;
    assert_eq!(
        after_two.in_flight_count, 0,
        "the second ack finishes the other"
    );
    assert_eq!(after_two.window_count, 0);
    assert_eq!(after_two.retry_count, 0, "nothing waits for a retry");
}

#[tokio::test]
async fn an_ack_finishes_the_event_in_flight_at_the_consumer_that_sent_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    all_group_over_dup_streams(&subscriptions).await;
    let source = SubscriptionSource::All;
    let mut one = connect(&subscriptions, &source, "g", 1).await;
    let mut two = connect(&subscriptions, &source, "g", 1).await;
    let shared = EventId::new_random();
    append_with_id(&store, "dup-a", shared).await;
    append_with_id(&store, "dup-b", shared).await;
    let at_one = next(&mut one).await;
    let at_two = next(&mut two).await;
    assert_ne!(at_one.event_or_link().stream, at_two.event_or_link().stream);

    // Consumer one acks the id: its own event is finished, not the one at consumer two.
    one.ack(vec![shared]).await.unwrap();
    drop(two);
    let again = next(&mut one).await;
    assert_eq!(
        (&again.event_or_link().stream, again.retry_count),
        (&at_two.event_or_link().stream, 1),
        "the event consumer two held is still unfinished and comes back"
    );
    one.ack(vec![shared]).await.unwrap();
    let finished = info(&subscriptions, &source).await;
    assert_eq!((finished.in_flight_count, finished.window_count), (0, 0));
}

#[tokio::test]
async fn two_links_to_one_event_are_each_finished_by_an_ack_of_the_shared_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    let target = EventId::new_random();
    append_with_id(&store, "order-1", target).await;
    let links: Vec<ProposedEvent> = (0..2)
        .map(|_| ProposedEvent::binary(strata_persistent::LINK_EVENT_TYPE, "0@order-1"))
        .collect();
    let name = StreamName::new("links").unwrap();
    store
        .append(&name, ExpectedRevision::Any, links)
        .await
        .unwrap();
    let source = SubscriptionSource::Stream(name);
    let settings = GroupSettings {
        resolve_links: true,
        ..from_start(ConsumerStrategy::RoundRobin)
    };
    subscriptions
        .create(&source, "g", settings, None)
        .await
        .unwrap();
    let mut consumer = connect(&subscriptions, &source, "g", 10).await;
    for _ in 0..2 {
        assert_eq!(next(&mut consumer).await.event_or_link().id, target);
    }
    consumer.ack(vec![target, target]).await.unwrap();
    let finished = info(&subscriptions, &source).await;
    assert_eq!((finished.in_flight_count, finished.window_count), (0, 0));
}

#[tokio::test]
async fn a_window_stops_reading_at_its_byte_budget_and_an_event_over_it_still_gets_through() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let limits = PersistentLimits {
        window_bytes_max: 10 * 1024,
        ..PersistentLimits::default()
    };
    let subscriptions = PersistentSubscriptions::with_limits(Arc::clone(&store) as _, limits);
    let name = StreamName::new("large").unwrap();
    let mut events: Vec<ProposedEvent> = (0..10)
        .map(|_| ProposedEvent::binary("Large", vec![1u8; 4 * 1024]))
        .collect();
    events.push(ProposedEvent::binary("Huge", vec![2u8; 64 * 1024]));
    events.push(ProposedEvent::binary("Small", vec![3u8; 16]));
    let ids: Vec<EventId> = events.iter().map(|event| event.id).collect();
    store
        .append(&name, ExpectedRevision::Any, events)
        .await
        .unwrap();
    let source = SubscriptionSource::Stream(name);
    subscriptions
        .create(&source, "g", from_start(ConsumerStrategy::RoundRobin), None)
        .await
        .unwrap();
    let mut consumer = connect(&subscriptions, &source, "g", 100).await;
    let mut unacked = Vec::new();
    for _ in 0..3 {
        unacked.push(next(&mut consumer).await);
    }
    // Three events of 4 KiB reach the 10 KiB budget: the group reads no more until an ack.
    let held = info(&subscriptions, &source).await;
    assert_eq!(held.window_count, 3, "{held:?}");
    assert_eq!(held.last_known_place, Some(2));
    assert!(consumer.try_next().is_none());
    while unacked.last().map(|event| event.event_or_link().id) != Some(ids[10]) {
        let oldest = unacked.remove(0);
        consumer.ack(vec![oldest.ack_id()]).await.unwrap();
        unacked.push(next(&mut consumer).await);
    }
    // The 64 KiB event, over the budget by itself, got through; the window is now full
    // until it is acked.
    let over = info(&subscriptions, &source).await;
    assert_eq!(over.last_known_place, Some(10), "{over:?}");
    let acks: Vec<EventId> = unacked.drain(..).map(|event| event.ack_id()).collect();
    consumer.ack(acks).await.unwrap();
    assert_eq!(next(&mut consumer).await.event_or_link().id, ids[11]);
}

#[tokio::test]
async fn creating_a_group_past_the_limit_is_refused_until_one_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let limits = PersistentLimits {
        groups_max: 2,
        ..PersistentLimits::default()
    };
    let subscriptions = PersistentSubscriptions::with_limits(Arc::clone(&store) as _, limits);
    let source = stream("limited");
    for group in ["a", "b"] {
        subscriptions
            .create(&source, group, GroupSettings::default(), None)
            .await
            .unwrap();
    }
    let refused = subscriptions
        .create(&source, "c", GroupSettings::default(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::GroupLimitReached { max: 2, .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("maximum of 2"), "{refused}");
    subscriptions.delete(&source, "a").await.unwrap();
    subscriptions
        .create(&source, "c", GroupSettings::default(), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn settings_the_reference_server_accepts_are_accepted_and_a_too_large_read_batch_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    let source = stream("accepting");
    let unusual = GroupSettings {
        min_checkpoint_count: 50,
        max_checkpoint_count: 0,
        live_buffer_size: 0,
        read_batch_size: 0,
        ..from_start(ConsumerStrategy::DispatchToSingle)
    };
    subscriptions
        .create(&source, "g", unusual.clone(), None)
        .await
        .unwrap();
    let ids: Vec<EventId> = (0..3).map(|_| EventId::new_random()).collect();
    for id in &ids {
        append_with_id(&store, "accepting", *id).await;
    }
    let mut consumer = connect(&subscriptions, &source, "g", 10).await;
    for id in &ids {
        let event = next(&mut consumer).await;
        assert_eq!(
            event.event_or_link().id,
            *id,
            "the group delivers with these settings"
        );
        consumer.ack(vec![event.ack_id()]).await.unwrap();
    }
    let too_large = GroupSettings {
        read_batch_size: 500,
        history_buffer_size: 500,
        ..unusual
    };
    let refused = subscriptions
        .update(&source, "g", too_large)
        .await
        .unwrap_err();
    match refused {
        Error::InvalidSettings {
            stream,
            group,
            reason,
        } => {
            assert_eq!((stream.as_str(), group.as_str()), ("accepting", "g"));
            assert!(reason.contains("read_batch_size"), "{reason}");
        }
        other => panic!("expected InvalidSettings, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stream_group_starting_at_revision_two_to_the_64_minus_one_starts_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    for _ in 0..3 {
        append_with_id(&store, "ending", EventId::new_random()).await;
    }
    let source = stream("ending");
    let settings = GroupSettings {
        start_from: StartFrom::At(u64::MAX),
        ..GroupSettings::default()
    };
    subscriptions
        .create(&source, "g", settings, None)
        .await
        .unwrap();
    assert_eq!(
        info(&subscriptions, &source).await.settings.start_from,
        StartFrom::End
    );
    let mut consumer = connect(&subscriptions, &source, "g", 10).await;
    let new = EventId::new_random();
    append_with_id(&store, "ending", new).await;
    let delivered = next(&mut consumer).await;
    assert_eq!(
        (
            delivered.event_or_link().id,
            delivered.event_or_link().revision.0
        ),
        (new, 3),
        "only the event written after the creation is delivered"
    );
}
