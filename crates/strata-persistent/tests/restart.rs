//! Checkpoints across a restart of the store, and a stalled consumer that holds back nobody.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use strata_core::{
    EventId, EventStore, ExpectedRevision, ProposedEvent, StreamName, SubscribeFrom,
    subscribe_to_stream,
};
use strata_engine::{Config, Store};
use strata_persistent::{
    ConsumerOptions, GroupSettings, PersistentSubscriptions, StartFrom, SubscriptionSource,
};

const WAIT: Duration = Duration::from_secs(20);

async fn append(store: &Store, name: &str, count: usize) -> Vec<EventId> {
    let events: Vec<ProposedEvent> = (0..count)
        .map(|index| ProposedEvent::json("Counted", format!("{{\"n\":{index}}}")))
        .collect();
    let ids = events.iter().map(|event| event.id).collect();
    store
        .append(
            &StreamName::new(name).unwrap(),
            ExpectedRevision::Any,
            events,
        )
        .await
        .unwrap();
    ids
}

/// Checkpoint after every finished event, so what was acked before the stop is known.
fn eager_checkpoints() -> GroupSettings {
    GroupSettings {
        start_from: StartFrom::Start,
        min_checkpoint_count: 1,
        max_checkpoint_count: 1,
        checkpoint_after_ms: 0,
        ..GroupSettings::default()
    }
}

#[tokio::test]
async fn acked_events_are_not_redelivered_after_a_restart_and_unacked_ones_are() {
    let dir = tempfile::tempdir().unwrap();
    let source = SubscriptionSource::Stream(StreamName::new("ledger").unwrap());
    let ids;
    let acked: HashSet<EventId>;
    {
        let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
        ids = append(&store, "ledger", 10).await;
        let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
        subscriptions
            .create(&source, "g", eager_checkpoints(), None)
            .await
            .unwrap();
        let options = ConsumerOptions {
            buffer_size: 10,
            name: String::new(),
        };
        let mut consumer = subscriptions.connect(&source, "g", options).await.unwrap();
        let mut received = Vec::new();
        for _ in 0..10 {
            let event = tokio::time::timeout(WAIT, consumer.next())
                .await
                .unwrap()
                .unwrap();
            received.push(event.event_or_link().id);
        }
        // Acked out of order: 0, 1, 2, 5, 7 — 3, 4, 6, 8, 9 stay unacknowledged.
        acked = [0, 1, 2, 5, 7]
            .iter()
            .map(|&index| received[index])
            .collect();
        consumer.ack(acked.iter().copied().collect()).await.unwrap();
        let checkpointed = wait_until(|| async {
            let info = subscriptions.info(&source, "g").await.unwrap();
            info.last_checkpointed_place == Some(2) && info.in_flight_count == 5
        })
        .await;
        assert!(checkpointed);
        // Let the checkpoint writer finish, then drop everything without a clean stop of the
        // consumer (the store closes with the manager).
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(consumer);
        drop(subscriptions);
        drop(store);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    let options = ConsumerOptions {
        buffer_size: 10,
        name: String::new(),
    };
    let mut consumer = subscriptions.connect(&source, "g", options).await.unwrap();
    let mut redelivered = HashSet::new();
    for _ in 0..5 {
        let event = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap()
            .unwrap();
        redelivered.insert(event.event_or_link().id);
        consumer.ack(vec![event.ack_id()]).await.unwrap();
    }
    let expected: HashSet<EventId> = ids
        .iter()
        .copied()
        .filter(|id| !acked.contains(id))
        .collect();
    assert_eq!(redelivered, expected);
    let extra = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(extra.is_err(), "nothing else is delivered: {extra:?}");
}

async fn wait_until<F, Fut>(condition: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_stalled_consumer_holds_back_no_other_group_subscriber_or_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    let source = SubscriptionSource::Stream(StreamName::new("busy").unwrap());
    let small = GroupSettings {
        start_from: StartFrom::Start,
        live_buffer_size: 8,
        read_batch_size: 4,
        history_buffer_size: 8,
        ..GroupSettings::default()
    };
    subscriptions
        .create(&source, "stalled", small.clone(), None)
        .await
        .unwrap();
    subscriptions
        .create(&source, "healthy", small, None)
        .await
        .unwrap();
    let options = ConsumerOptions {
        buffer_size: 4,
        name: String::new(),
    };
    // Never reads nor acks.
    let _stalled = subscriptions
        .connect(&source, "stalled", options.clone())
        .await
        .unwrap();
    let mut healthy = subscriptions
        .connect(&source, "healthy", options)
        .await
        .unwrap();
    let mut catch_up = subscribe_to_stream(
        Arc::clone(&store),
        StreamName::new("busy").unwrap(),
        SubscribeFrom::Start,
        16,
    );
    // Far more events than every buffer of the stalled group together.
    let total = 20_000;
    for _ in 0..20 {
        append(&store, "busy", total / 20).await;
    }
    let mut healthy_count = 0;
    while healthy_count < total {
        let event = tokio::time::timeout(WAIT, healthy.next())
            .await
            .unwrap()
            .unwrap();
        healthy.ack(vec![event.ack_id()]).await.unwrap();
        healthy_count += 1;
    }
    let mut catch_up_count = 0;
    while catch_up_count < total {
        tokio::time::timeout(WAIT, catch_up.next_event())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        catch_up_count += 1;
    }
    let stalled = subscriptions.info(&source, "stalled").await.unwrap();
    assert_eq!(
        stalled.in_flight_count, 4,
        "the stalled consumer holds only its own slots"
    );
    assert!(stalled.window_count < total as u64);
}

#[tokio::test]
async fn a_group_created_at_the_end_keeps_its_start_across_a_restart_before_any_ack() {
    let dir = tempfile::tempdir().unwrap();
    // One stream with history at creation, one that does not exist yet.
    let names = ["later", "empty"];
    let history;
    let mut written_while_down = Vec::new();
    {
        let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
        history = append(&store, "later", 3).await;
        let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
        let settings = GroupSettings {
            start_from: StartFrom::End,
            ..GroupSettings::default()
        };
        for name in names {
            let source = SubscriptionSource::Stream(StreamName::new(name).unwrap());
            subscriptions
                .create(&source, "g", settings.clone(), None)
                .await
                .unwrap();
        }
        drop(subscriptions);
        for name in names {
            written_while_down.push(append(&store, name, 2).await[0]);
        }
        drop(store);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    for (name, expected) in names.iter().zip(written_while_down) {
        let source = SubscriptionSource::Stream(StreamName::new(name).unwrap());
        let mut consumer = subscriptions
            .connect(&source, "g", ConsumerOptions::default())
            .await
            .unwrap();
        let first = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap()
            .unwrap();
        assert!(
            !history.contains(&first.event_or_link().id),
            "{name}: history is not delivered"
        );
        assert_eq!(
            first.event_or_link().id,
            expected,
            "{name}: events written after the creation are not skipped by a restart"
        );
    }
}
