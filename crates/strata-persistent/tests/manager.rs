//! The manager on the embedded engine: strategies, acks and nacks, timeouts, parking, replay,
//! checkpoints across a restart, limits, and isolation of a stalled consumer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use strata_core::{EventId, EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_engine::{Config, Store};
use strata_persistent::{
    Consumer, ConsumerOptions, ConsumerStrategy, Error, FilterSpec, GroupSettings, NackAction,
    PersistentEvent, PersistentSubscriptions, StartFrom, SubscriptionSource,
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

/// Nothing arrives while a short window passes (used only to show absence).
async fn nothing_within(consumer: &mut Consumer, wait: Duration) -> bool {
    tokio::time::timeout(wait, consumer.next()).await.is_err()
}

#[tokio::test]
async fn round_robin_spreads_over_consumers_and_dispatch_to_single_fills_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    let source = stream("orders");
    for (group, strategy) in [
        ("spread", ConsumerStrategy::RoundRobin),
        ("single", ConsumerStrategy::DispatchToSingle),
    ] {
        let settings = GroupSettings {
            start_from: StartFrom::End,
            ..from_start(strategy)
        };
        let settings = if group == "spread" {
            settings
        } else {
            from_start(strategy)
        };
        subscriptions
            .create(&source, group, settings, None)
            .await
            .unwrap();
        let mut first = connect(&subscriptions, &source, group, 10).await;
        let mut second = connect(&subscriptions, &source, group, 10).await;
        // Written once both consumers are connected: each group sees its own 8.
        if group == "spread" {
            append(&store, "orders", 8).await;
        }
        let mut counts = [0usize; 2];
        for _ in 0..8 {
            let (index, event) = tokio::select! {
                event = next(&mut first) => (0, event),
                event = next(&mut second) => (1, event),
            };
            counts[index] += 1;
            let consumer = if index == 0 { &first } else { &second };
            consumer.ack(vec![event.ack_id()]).await.unwrap();
        }
        match strategy {
            ConsumerStrategy::RoundRobin => assert_eq!(counts, [4, 4], "{group}"),
            _ => assert_eq!(counts, [8, 0], "{group}"),
        }
    }
}

#[tokio::test]
async fn pinned_keeps_each_stream_on_one_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    let settings = from_start(ConsumerStrategy::Pinned);
    subscriptions
        .create(
            &SubscriptionSource::All,
            "pinned",
            settings,
            Some(prefix("cart-")),
        )
        .await
        .unwrap();
    let mut consumers = Vec::new();
    for _ in 0..3 {
        consumers.push(connect(&subscriptions, &SubscriptionSource::All, "pinned", 100).await);
    }
    for round in 0..4 {
        for cart in 0..6 {
            append(&store, &format!("cart-{cart}"), 1).await;
        }
        let _ = round;
    }
    let mut owner: HashMap<String, usize> = HashMap::new();
    let mut received = 0;
    while received < 24 {
        for (index, consumer) in consumers.iter_mut().enumerate() {
            while let Some(event) = consumer.try_next() {
                let event = event.unwrap();
                let stream = event.event_or_link().stream.to_string();
                let first_owner = *owner.entry(stream.clone()).or_insert(index);
                assert_eq!(first_owner, index, "{stream} moved between consumers");
                consumer.ack(vec![event.ack_id()]).await.unwrap();
                received += 1;
            }
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let used: HashSet<usize> = owner.values().copied().collect();
    assert!(used.len() > 1, "streams spread over consumers: {owner:?}");
}

fn prefix(prefix: &str) -> FilterSpec {
    FilterSpec {
        on_event_type: false,
        regex: String::new(),
        prefixes: vec![prefix.to_owned()],
    }
}

#[tokio::test]
async fn nack_retry_counts_skip_finishes_and_park_then_replay_redelivers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    let source = stream("jobs");
    let ids = append(&store, "jobs", 3).await;
    let settings = from_start(ConsumerStrategy::RoundRobin);
    subscriptions
        .create(&source, "workers", settings, None)
        .await
        .unwrap();
    let mut consumer = connect(&subscriptions, &source, "workers", 1).await;

    let first = next(&mut consumer).await;
    assert_eq!((first.event_or_link().id, first.retry_count), (ids[0], 0));
    consumer
        .nack(vec![first.ack_id()], NackAction::Retry)
        .await
        .unwrap();
    let again = next(&mut consumer).await;
    assert_eq!((again.event_or_link().id, again.retry_count), (ids[0], 1));
    consumer
        .nack(vec![again.ack_id()], NackAction::Park)
        .await
        .unwrap();

    let second = next(&mut consumer).await;
    assert_eq!(second.event_or_link().id, ids[1]);
    consumer
        .nack(vec![second.ack_id()], NackAction::Skip)
        .await
        .unwrap();
    let third = next(&mut consumer).await;
    assert_eq!(third.event_or_link().id, ids[2]);
    consumer.ack(vec![third.ack_id()]).await.unwrap();

    let info = subscriptions.info(&source, "workers").await.unwrap();
    assert_eq!(info.parked_count, 1);
    subscriptions
        .replay_parked(&source, "workers", None)
        .await
        .unwrap();
    let replayed = next(&mut consumer).await;
    assert_eq!(replayed.event_or_link().id, ids[0]);
    assert!(replayed.link.is_some(), "replayed through the parked link");
    consumer.ack(vec![replayed.ack_id()]).await.unwrap();
    assert!(nothing_within(&mut consumer, Duration::from_millis(300)).await);
    let info = wait_for(&subscriptions, &source, "workers", |info| {
        info.parked_count == 0
    })
    .await;
    assert_eq!(info.parked_count, 0);
}

async fn wait_for(
    subscriptions: &PersistentSubscriptions,
    source: &SubscriptionSource,
    group: &str,
    done: impl Fn(&strata_persistent::GroupInfo) -> bool,
) -> strata_persistent::GroupInfo {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = subscriptions.info(source, group).await.unwrap();
        if done(&info) || tokio::time::Instant::now() > deadline {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn unacked_events_time_out_are_retried_and_parked_after_max_retries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    let source = stream("slow");
    let ids = append(&store, "slow", 1).await;
    let settings = GroupSettings {
        message_timeout_ms: 200,
        max_retry_count: 2,
        ..from_start(ConsumerStrategy::RoundRobin)
    };
    subscriptions
        .create(&source, "g", settings, None)
        .await
        .unwrap();
    let mut consumer = connect(&subscriptions, &source, "g", 5).await;
    for expected_retry in 0..=2 {
        let event = next(&mut consumer).await;
        assert_eq!(
            (event.event_or_link().id, event.retry_count),
            (ids[0], expected_retry)
        );
    }
    let info = wait_for(&subscriptions, &source, "g", |info| info.parked_count == 1).await;
    assert_eq!(info.parked_count, 1, "parked after max retries");
}

#[tokio::test]
async fn max_subscriber_count_refuses_one_more_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(store);
    let source = stream("limited");
    let settings = GroupSettings {
        max_subscriber_count: 1,
        ..GroupSettings::default()
    };
    subscriptions
        .create(&source, "g", settings, None)
        .await
        .unwrap();
    let first = connect(&subscriptions, &source, "g", 1).await;
    let refused = subscriptions
        .connect(&source, "g", ConsumerOptions::default())
        .await;
    assert!(matches!(
        refused,
        Err(Error::MaximumSubscribersReached { max: 1, .. })
    ));
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    while subscriptions
        .connect(&source, "g", ConsumerOptions::default())
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn management_errors_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(store);
    let source = stream("managed");
    subscriptions
        .create(&source, "g", GroupSettings::default(), None)
        .await
        .unwrap();
    let twice = subscriptions
        .create(&source, "g", GroupSettings::default(), None)
        .await;
    assert!(matches!(twice, Err(Error::GroupExists { .. })));
    let invalid = GroupSettings {
        read_batch_size: 500,
        history_buffer_size: 500,
        ..GroupSettings::default()
    };
    assert!(matches!(
        subscriptions.update(&source, "g", invalid).await,
        Err(Error::InvalidSettings { .. })
    ));
    let filtered_stream = subscriptions
        .create(&source, "h", GroupSettings::default(), Some(prefix("x")))
        .await;
    assert!(matches!(
        filtered_stream,
        Err(Error::InvalidSettings { .. })
    ));
    let updated = GroupSettings {
        max_retry_count: 3,
        ..GroupSettings::default()
    };
    subscriptions.update(&source, "g", updated).await.unwrap();
    subscriptions
        .create(
            &SubscriptionSource::All,
            "g",
            GroupSettings::default(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(subscriptions.list(None).await.unwrap().len(), 2);
    let for_stream = subscriptions.list(Some(&source)).await.unwrap();
    assert_eq!(for_stream.len(), 1);
    assert_eq!(for_stream[0].settings.max_retry_count, 3);
    subscriptions.delete(&source, "g").await.unwrap();
    assert!(matches!(
        subscriptions.info(&source, "g").await,
        Err(Error::GroupNotFound { .. })
    ));
    assert!(matches!(
        subscriptions.delete(&source, "g").await,
        Err(Error::GroupNotFound { .. })
    ));
}

#[tokio::test]
async fn deleting_a_group_drops_its_consumers_with_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(store);
    let source = stream("gone");
    subscriptions
        .create(&source, "g", GroupSettings::default(), None)
        .await
        .unwrap();
    let mut consumer = connect(&subscriptions, &source, "g", 1).await;
    subscriptions.delete(&source, "g").await.unwrap();
    let ended = tokio::time::timeout(WAIT, consumer.next()).await.unwrap();
    assert!(matches!(ended, Err(Error::GroupNotFound { .. })));
}

#[tokio::test]
async fn resolve_links_delivers_the_target_with_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    let target = append(&store, "order-9", 2).await;
    let links = StreamName::new("links").unwrap();
    let link = ProposedEvent::binary(strata_persistent::LINK_EVENT_TYPE, "1@order-9");
    let dangling = ProposedEvent::binary(strata_persistent::LINK_EVENT_TYPE, "5@order-9");
    let link_ids = [link.id, dangling.id];
    store
        .append(&links, ExpectedRevision::Any, vec![link, dangling])
        .await
        .unwrap();
    let source = SubscriptionSource::Stream(links);
    let settings = GroupSettings {
        resolve_links: true,
        ..from_start(ConsumerStrategy::RoundRobin)
    };
    subscriptions
        .create(&source, "g", settings, None)
        .await
        .unwrap();
    let mut consumer = connect(&subscriptions, &source, "g", 10).await;
    let resolved = next(&mut consumer).await;
    assert_eq!(resolved.event_or_link().id, target[1]);
    assert_eq!(
        resolved.link.as_ref().map(|link| link.id),
        Some(link_ids[0])
    );
    assert_eq!(resolved.ack_id(), link_ids[0]);
    // As KurrentDB: a link whose target is gone comes with no event.
    let unresolved = next(&mut consumer).await;
    assert_eq!(unresolved.event, None);
    assert_eq!(unresolved.ack_id(), link_ids[1]);
}

#[tokio::test]
async fn pinned_by_correlation_keeps_each_correlation_id_on_one_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let subscriptions = PersistentSubscriptions::new(Arc::clone(&store));
    let source = stream("mixed");
    let settings = GroupSettings {
        start_from: StartFrom::End,
        ..from_start(ConsumerStrategy::PinnedByCorrelation)
    };
    subscriptions
        .create(&source, "g", settings, None)
        .await
        .unwrap();
    let mut consumers = Vec::new();
    for _ in 0..3 {
        consumers.push(connect(&subscriptions, &source, "g", 100).await);
    }
    let events: Vec<ProposedEvent> = (0..40)
        .map(|index| {
            let metadata = format!("{{\"$correlationId\":\"c{}\"}}", index % 8);
            ProposedEvent::json("Step", "{}").with_metadata(metadata)
        })
        .collect();
    store
        .append(
            &StreamName::new("mixed").unwrap(),
            ExpectedRevision::Any,
            events,
        )
        .await
        .unwrap();
    let mut owners: HashMap<String, HashSet<usize>> = HashMap::new();
    let mut received = 0;
    while received < 40 {
        let [first, second, third] = &mut consumers[..] else {
            unreachable!("three consumers");
        };
        let (index, event) = tokio::select! {
            event = next(first) => (0, event),
            event = next(second) => (1, event),
            event = next(third) => (2, event),
        };
        let metadata = String::from_utf8(event.event_or_link().metadata.to_vec()).unwrap();
        owners.entry(metadata).or_default().insert(index);
        consumers[index].ack(vec![event.ack_id()]).await.unwrap();
        received += 1;
    }
    assert_eq!(owners.len(), 8);
    assert!(
        owners.values().all(|consumers| consumers.len() == 1),
        "{owners:?}"
    );
    let used: HashSet<usize> = owners.values().flatten().copied().collect();
    assert!(used.len() > 1, "{owners:?}");
}
