//! A persistent group over a stream whose first pages expired (`$maxAge`) delivers the live
//! events after them, then follows new ones. Time is moved with a `ManualClock`.

use std::sync::Arc;
use std::time::Duration;

use strata_core::{
    EventId, EventStore, ExpectedRevision, ManualClock, ProposedEvent, StreamMetadata, StreamName,
};
use strata_engine::{Config, Store};
use strata_persistent::{
    ConsumerOptions, GroupSettings, PersistentSubscriptions, StartFrom, SubscriptionSource,
};

/// A guard against hangs, not a timing assertion.
const WAIT: Duration = Duration::from_secs(20);

const MAX_AGE: Duration = Duration::from_secs(60);

/// Expired events before the live ones: more than two pages of the group's reads.
const EXPIRED_BATCHES: usize = 5;
const EVENTS_PER_BATCH: usize = 220;

async fn append(store: &Store, stream: &StreamName, count: usize) -> Vec<EventId> {
    let events: Vec<ProposedEvent> = (0..count)
        .map(|n| ProposedEvent::json("Counted", format!("{{\"n\":{n}}}")))
        .collect();
    let ids = events.iter().map(|event| event.id).collect();
    store
        .append(stream, ExpectedRevision::Any, events)
        .await
        .unwrap();
    ids
}

#[tokio::test]
async fn a_group_from_the_start_skips_expired_pages_and_delivers_the_live_events() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let config = Config {
        clock: clock.clock(),
        ..Config::small_for_tests()
    };
    let store = Store::open(dir.path(), config).unwrap();
    let stream = StreamName::new("orders-1").unwrap();
    let metadata = StreamMetadata {
        max_age: Some(MAX_AGE),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&stream, ExpectedRevision::NoStream, &metadata)
        .await
        .unwrap();
    for _ in 0..EXPIRED_BATCHES {
        append(&store, &stream, EVENTS_PER_BATCH).await;
    }
    clock.advance(MAX_AGE + Duration::from_secs(1));
    let mut live = append(&store, &stream, 5).await;

    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    let source = SubscriptionSource::Stream(stream.clone());
    let settings = GroupSettings {
        start_from: StartFrom::Start,
        ..GroupSettings::default()
    };
    subscriptions
        .create(&source, "expiry", settings, None)
        .await
        .unwrap();
    let options = ConsumerOptions {
        buffer_size: 10,
        name: String::new(),
    };
    let mut consumer = subscriptions
        .connect(&source, "expiry", options)
        .await
        .unwrap();
    live.extend(append(&store, &stream, 1).await);
    let mut delivered = Vec::new();
    while delivered.len() < live.len() {
        let event = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("an event within the guard time")
            .unwrap();
        consumer.ack(vec![event.ack_id()]).await.unwrap();
        delivered.push(event.original().id);
    }
    assert_eq!(
        delivered, live,
        "the live events, in order, and none expired"
    );
    subscriptions.shutdown().await;
    store.close();
}
