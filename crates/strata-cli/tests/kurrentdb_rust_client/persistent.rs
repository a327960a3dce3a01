//! Persistent subscriptions with the official Rust client: management, strategies with two
//! and three consumers, nacks, parking and replay, timeouts, limits, and a SIGKILL mid-run.

use std::time::Duration;

use kurrentdb::{
    NakAction, PersistentSubscription, PersistentSubscriptionEvent, PersistentSubscriptionOptions,
    PersistentSubscriptionToAllOptions, ReplayParkedMessagesOptions, ResolvedEvent,
    SubscribeToPersistentSubscriptionOptions, SystemConsumerStrategy,
};

use super::*;

#[path = "persistent_reference.rs"]
mod reference;

fn from_start(strategy: SystemConsumerStrategy) -> PersistentSubscriptionOptions {
    PersistentSubscriptionOptions::default()
        .start_from(StreamPosition::Start)
        .consumer_strategy_name(strategy)
}

async fn create(
    client: &Client,
    stream: &str,
    group: &str,
    options: &PersistentSubscriptionOptions,
) {
    within(
        "create a persistent subscription",
        client.create_persistent_subscription(stream, group, options),
    )
    .await
    .unwrap_or_else(|error| panic!("Create {stream}::{group} fails: {error:?}"));
}

async fn connect(
    client: &Client,
    stream: &str,
    group: &str,
    buffer: usize,
) -> PersistentSubscription {
    let options = SubscribeToPersistentSubscriptionOptions::default().buffer_size(buffer);
    within(
        "connect to a persistent subscription",
        client.subscribe_to_persistent_subscription(stream, group, &options),
    )
    .await
    .unwrap_or_else(|error| panic!("Connect to {stream}::{group} fails: {error:?}"))
}

/// The next event and its retry count.
async fn next_event(subscription: &mut PersistentSubscription) -> (ResolvedEvent, usize) {
    loop {
        let message = within(
            "next persistent event",
            subscription.next_subscription_event(),
        )
        .await
        .unwrap_or_else(|error| panic!("The persistent subscription fails: {error:?}"));
        if let PersistentSubscriptionEvent::EventAppeared { retry_count, event } = message {
            return (event, retry_count);
        }
    }
}

fn id_of(event: &ResolvedEvent) -> Uuid {
    event.get_original_event().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_created_listed_described_updated_and_deleted() {
    let server = Server::start();
    let client = server.client();
    let options = from_start(SystemConsumerStrategy::Pinned).max_retry_count(4);
    create(&client, "ps-orders", "billing", &options).await;
    let twice = client
        .create_persistent_subscription("ps-orders", "billing", &options)
        .await;
    assert!(
        matches!(twice, Err(Error::ResourceAlreadyExists)),
        "a second Create answers ALREADY_EXISTS: {twice:?}"
    );
    let to_all = PersistentSubscriptionToAllOptions::default()
        .start_from(StreamPosition::Start)
        .filter(SubscriptionFilter::on_stream_name().add_prefix("ps-"));
    within(
        "create on $all",
        client.create_persistent_subscription_to_all("audit", &to_all),
    )
    .await
    .expect("a $all group with a filter is created");

    let info = within(
        "info",
        client.get_persistent_subscription_info("ps-orders", "billing", &Default::default()),
    )
    .await
    .expect("info of an existing group");
    assert_eq!(info.event_source, "ps-orders");
    let settings = info.settings.expect("settings");
    assert_eq!(settings.max_retry_count, 4);
    assert_eq!(
        settings.consumer_strategy_name,
        SystemConsumerStrategy::Pinned
    );
    assert_eq!(settings.start_from, StreamPosition::Start);

    let updated = from_start(SystemConsumerStrategy::RoundRobin).max_retry_count(7);
    within(
        "update",
        client.update_persistent_subscription("ps-orders", "billing", &updated),
    )
    .await
    .expect("update an existing group");
    let all = within(
        "list",
        client.list_all_persistent_subscriptions(&Default::default()),
    )
    .await
    .expect("list every group");
    assert_eq!(all.len(), 2);
    let for_stream = within(
        "list for stream",
        client.list_persistent_subscriptions_for_stream("ps-orders", &Default::default()),
    )
    .await
    .expect("list the groups of a stream");
    assert_eq!(for_stream.len(), 1);
    let settings = for_stream[0].settings.clone().expect("settings");
    assert_eq!(settings.max_retry_count, 7);
    assert_eq!(
        settings.consumer_strategy_name,
        SystemConsumerStrategy::RoundRobin
    );
    let on_all = within(
        "list for $all",
        client.list_persistent_subscriptions_to_all(&Default::default()),
    )
    .await
    .expect("list the $all groups");
    assert_eq!(on_all.len(), 1);

    within(
        "delete",
        client.delete_persistent_subscription("ps-orders", "billing", &Default::default()),
    )
    .await
    .expect("delete an existing group");
    let missing = client
        .get_persistent_subscription_info("ps-orders", "billing", &Default::default())
        .await;
    assert!(
        matches!(missing, Err(Error::ResourceNotFound)),
        "info of a deleted group answers NOT_FOUND: {missing:?}"
    );
    let delete_again = client
        .delete_persistent_subscription("ps-orders", "billing", &Default::default())
        .await;
    assert!(
        matches!(delete_again, Err(Error::ResourceNotFound)),
        "{delete_again:?}"
    );
    within(
        "restart subsystem",
        client.restart_persistent_subscription_subsystem(&Default::default()),
    )
    .await
    .expect("restart the subsystem");
}

/// Runs each consumer in its own task, acking everything, until `count` events arrived;
/// returns how many each consumer got and which consumers got each stream.
async fn drain(
    consumers: Vec<PersistentSubscription>,
    count: usize,
) -> (Vec<usize>, HashMap<String, HashSet<usize>>) {
    let mut per_consumer = vec![0; consumers.len()];
    let mut owners: HashMap<String, HashSet<usize>> = HashMap::new();
    let (sender, mut receiver) = tokio::sync::mpsc::channel(count.max(1));
    let mut tasks = Vec::new();
    for (index, mut consumer) in consumers.into_iter().enumerate() {
        let sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let (event, _) = next_event(&mut consumer).await;
                consumer.ack(&event).await.expect("ack");
                let stream = event.get_original_event().stream_id().to_owned();
                if sender.send((index, stream)).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(sender);
    for _ in 0..count {
        let (index, stream) = within("events of the group", receiver.recv())
            .await
            .expect("a consumer task ended");
        per_consumer[index] += 1;
        owners.entry(stream).or_default().insert(index);
    }
    for task in tasks {
        task.abort();
    }
    (per_consumer, owners)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_dispatch_to_single_fills_one_and_pinned_keeps_each_stream() {
    let server = Server::start();
    let client = server.client();

    create(
        &client,
        "ps-rr",
        "g",
        &from_start(SystemConsumerStrategy::RoundRobin),
    )
    .await;
    let mut three = Vec::new();
    for _ in 0..3 {
        three.push(connect(&client, "ps-rr", "g", 10).await);
    }
    append_new(&client, "ps-rr", StreamState::Any, 30).await;
    let (counts, _) = drain(three, 30).await;
    assert_eq!(
        counts,
        [10, 10, 10],
        "RoundRobin spreads evenly over three consumers"
    );

    let single = from_start(SystemConsumerStrategy::DispatchToSingle);
    create(&client, "ps-single", "g", &single).await;
    let two = vec![
        connect(&client, "ps-single", "g", 50).await,
        connect(&client, "ps-single", "g", 50).await,
    ];
    append_new(&client, "ps-single", StreamState::Any, 20).await;
    let (counts, _) = drain(two, 20).await;
    assert_eq!(counts, [20, 0], "DispatchToSingle fills the first consumer");

    let pinned = PersistentSubscriptionToAllOptions::default()
        .start_from(StreamPosition::Start)
        .consumer_strategy_name(SystemConsumerStrategy::Pinned)
        .filter(SubscriptionFilter::on_stream_name().add_prefix("pin-"));
    within(
        "create pinned",
        client.create_persistent_subscription_to_all("p", &pinned),
    )
    .await
    .expect("a pinned $all group");
    let mut three = Vec::new();
    for _ in 0..3 {
        let options = SubscribeToPersistentSubscriptionOptions::default().buffer_size(100);
        three.push(
            within(
                "connect",
                client.subscribe_to_persistent_subscription_to_all("p", &options),
            )
            .await
            .expect("connect to the pinned group"),
        );
    }
    for _ in 0..4 {
        for stream in 0..6 {
            append_new(&client, &format!("pin-{stream}"), StreamState::Any, 1).await;
        }
    }
    let (_, owners) = drain(three, 24).await;
    assert_eq!(owners.len(), 6);
    for (stream, consumers) in &owners {
        assert_eq!(
            consumers.len(),
            1,
            "{stream} stays on one consumer: {consumers:?}"
        );
    }
    let used: HashSet<usize> = owners.values().flatten().copied().collect();
    assert!(
        used.len() > 1,
        "Pinned spreads streams over consumers: {owners:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_retry_park_skip_and_replay_parked() {
    let server = Server::start();
    let client = server.client();
    let ids = append_new(&client, "ps-nack", StreamState::NoStream, 3).await;
    create(
        &client,
        "ps-nack",
        "g",
        &from_start(SystemConsumerStrategy::RoundRobin),
    )
    .await;
    let mut consumer = connect(&client, "ps-nack", "g", 1).await;

    let (first, retries) = next_event(&mut consumer).await;
    assert_eq!((id_of(&first), retries), (ids[0], 0));
    consumer
        .nack(&first, NakAction::Retry, "again")
        .await
        .expect("nack");
    let (again, retries) = next_event(&mut consumer).await;
    assert_eq!((id_of(&again), retries), (ids[0], 1), "a retry counts");
    consumer
        .nack(&again, NakAction::Park, "poison")
        .await
        .expect("nack");
    let (second, _) = next_event(&mut consumer).await;
    assert_eq!(id_of(&second), ids[1]);
    consumer
        .nack(&second, NakAction::Skip, "not mine")
        .await
        .expect("nack");
    let (third, _) = next_event(&mut consumer).await;
    assert_eq!(id_of(&third), ids[2]);
    consumer.ack(&third).await.expect("ack");

    let parked = wait_for_info(&client, "ps-nack", "g", |info| {
        info.stats.parked_message_count == 1
    })
    .await;
    assert_eq!(
        parked.stats.parked_message_count, 1,
        "the parked event is counted"
    );
    within(
        "replay parked",
        client.replay_parked_messages("ps-nack", "g", &ReplayParkedMessagesOptions::default()),
    )
    .await
    .expect("replay parked events");
    let (replayed, _) = next_event(&mut consumer).await;
    assert_eq!(
        replayed.event.as_ref().expect("event").id,
        ids[0],
        "the parked event comes back"
    );
    consumer.ack(&replayed).await.expect("ack");
    let emptied = wait_for_info(&client, "ps-nack", "g", |info| {
        info.stats.parked_message_count == 0
    })
    .await;
    assert_eq!(
        emptied.stats.parked_message_count, 0,
        "a finished replay empties the parked stream"
    );
}

async fn wait_for_info(
    client: &Client,
    stream: &str,
    group: &str,
    done: impl Fn(&kurrentdb::PersistentSubscriptionInfo<u64>) -> bool,
) -> kurrentdb::PersistentSubscriptionInfo<u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let info = within(
            "info",
            client.get_persistent_subscription_info(stream, group, &Default::default()),
        )
        .await
        .expect("info");
        if done(&info) || std::time::Instant::now() > deadline {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_events_time_out_and_max_subscriber_count_is_enforced() {
    let server = Server::start();
    let client = server.client();
    let ids = append_new(&client, "ps-slow", StreamState::NoStream, 1).await;
    let options = from_start(SystemConsumerStrategy::RoundRobin)
        .message_timeout(Duration::from_millis(300))
        .max_subscriber_count(1);
    create(&client, "ps-slow", "g", &options).await;
    let mut consumer = connect(&client, "ps-slow", "g", 5).await;
    let (first, retries) = next_event(&mut consumer).await;
    assert_eq!((id_of(&first), retries), (ids[0], 0));
    let (again, retries) = next_event(&mut consumer).await;
    assert_eq!(
        (id_of(&again), retries),
        (ids[0], 1),
        "redelivered after the message timeout"
    );
    consumer.ack(&again).await.expect("ack");

    let second = client
        .subscribe_to_persistent_subscription("ps-slow", "g", &Default::default())
        .await;
    assert_grpc_code(
        second.map(|_| ()),
        CODE_FAILED_PRECONDITION,
        "a second consumer over max 1",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_only_events_not_acked_are_delivered_again() {
    let mut server = Server::start();
    let client = server.client();
    let ids = append_new(&client, "ps-kill", StreamState::NoStream, 20).await;
    // Checkpoint after every ack, so what the server acked is on disk before the kill.
    let options = from_start(SystemConsumerStrategy::RoundRobin)
        .checkpoint_lower_bound(1)
        .checkpoint_upper_bound(1)
        .checkpoint_after(Duration::ZERO);
    create(&client, "ps-kill", "g", &options).await;
    let mut consumer = connect(&client, "ps-kill", "g", 20).await;
    let mut received = Vec::new();
    for _ in 0..20 {
        received.push(next_event(&mut consumer).await.0);
    }
    // In order up to 4, then out of order: the checkpoint must keep both.
    let acked: HashSet<Uuid> = [0, 1, 2, 3, 4, 7, 9, 15]
        .iter()
        .map(|&index| id_of(&received[index]))
        .collect();
    consumer.ack_ids(acked.iter().copied()).await.expect("ack");
    wait_for_checkpoint(
        &client,
        "$persistentsubscription-ps-kill::g-checkpoint",
        4,
        3,
    )
    .await;

    server.kill_and_restart();
    let client = server.client();
    let mut consumer = connect(&client, "ps-kill", "g", 20).await;
    let sentinel = append_new(&client, "ps-kill", StreamState::Any, 1).await[0];
    let mut redelivered = Vec::new();
    loop {
        let (event, _) = next_event(&mut consumer).await;
        consumer.ack(&event).await.expect("ack");
        if id_of(&event) == sentinel {
            break;
        }
        redelivered.push(id_of(&event));
    }
    let expected: Vec<Uuid> = ids
        .iter()
        .copied()
        .filter(|id| !acked.contains(id))
        .collect();
    assert_eq!(
        redelivered, expected,
        "exactly the unacked events, once each and in order, before the next new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_clean_stop_no_acked_event_is_delivered_again() {
    let mut server = Server::start();
    let client = server.client();
    append_new(&client, "ps-stop", StreamState::NoStream, 10).await;
    // No periodic checkpoint during the test: only the stop can write one.
    let options = from_start(SystemConsumerStrategy::RoundRobin)
        .checkpoint_lower_bound(1_000)
        .checkpoint_upper_bound(1_000)
        .checkpoint_after(Duration::from_secs(600));
    create(&client, "ps-stop", "g", &options).await;
    let mut consumer = connect(&client, "ps-stop", "g", 20).await;
    for _ in 0..10 {
        let (event, _) = next_event(&mut consumer).await;
        consumer.ack(&event).await.expect("ack");
    }
    let info = wait_for_info(&client, "ps-stop", "g", |info| {
        info.stats.total_in_flight_messages == 0
    })
    .await;
    assert_eq!(info.stats.total_in_flight_messages, 0, "every ack arrived");
    drop(consumer);

    server.stop_and_restart();
    let client = server.client();
    let mut consumer = connect(&client, "ps-stop", "g", 20).await;
    let sentinel = append_new(&client, "ps-stop", StreamState::Any, 1).await[0];
    let (first, _) = next_event(&mut consumer).await;
    assert_eq!(
        id_of(&first),
        sentinel,
        "the stop checkpointed every acked event: the next delivery is the new one"
    );
}

/// Waits until the checkpoint stream's last event says `done_through` and `ranges` ranges.
async fn wait_for_checkpoint(client: &Client, stream: &str, done_through: u64, ranges: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(1);
        let last = try_read_stream(client, stream, &options)
            .await
            .unwrap_or_default();
        if let Some(event) = last.first() {
            let checkpoint: Value = serde_json::from_slice(&event.data).expect("checkpoint JSON");
            let ranges_written = checkpoint["done_ranges"].as_array().map_or(0, Vec::len);
            if checkpoint["done_through"] == json!(done_through) && ranges_written == ranges {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the checkpoint never reached {done_through} with {ranges} ranges: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
