//! Persistent subscriptions where Strata matches the reference server's answers (which
//! settings are refused and how, starts of 2^64−1, listing a source without groups), acks of
//! events sharing an id, and the server's limit on the number of groups.

use kurrentdb::{PersistentSubscriptionToAllOptions, SubscriptionFilter};

use super::*;

const CODE_RESOURCE_EXHAUSTED: i32 = 8;

/// Asserts the reference server's answer to refused settings: INTERNAL, which the client
/// reports as a server error, "Subscription group G on stream S failed: '...'".
fn assert_refused_as_internal<T: std::fmt::Debug>(result: kurrentdb::Result<T>, reason: &str) {
    match result {
        Err(Error::ServerError(status)) => {
            assert!(status.contains("Internal"), "{status}");
            assert!(status.contains("failed: '"), "{status}");
            assert!(status.contains(reason), "{status}");
        }
        other => panic!("expected INTERNAL (a server error), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_the_reference_server_accepts_are_accepted_and_a_too_large_read_batch_is_internal()
{
    let server = Server::start();
    let client = server.client();
    let accepted = from_start(SystemConsumerStrategy::RoundRobin)
        .read_batch_size(0)
        .checkpoint_lower_bound(50)
        .checkpoint_upper_bound(5)
        .live_buffer_size(0);
    create(&client, "ps-settings", "accepted", &accepted).await;
    let ids = append_new(&client, "ps-settings", StreamState::NoStream, 2).await;
    let mut consumer = connect(&client, "ps-settings", "accepted", 10).await;
    for id in ids {
        let (event, _) = next_event(&mut consumer).await;
        assert_eq!(id_of(&event), id, "the group delivers with these settings");
        consumer.ack(&event).await.expect("ack");
    }

    let too_large = from_start(SystemConsumerStrategy::RoundRobin)
        .read_batch_size(500)
        .history_buffer_size(500);
    let refused = client
        .create_persistent_subscription("ps-settings", "refused", &too_large)
        .await;
    assert_refused_as_internal(refused, "read_batch_size");
    let refused = client
        .update_persistent_subscription("ps-settings", "accepted", &too_large)
        .await;
    assert_refused_as_internal(refused, "read_batch_size");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_group_from_revision_two_to_the_64_minus_one_starts_at_the_end_and_says_so() {
    let server = Server::start();
    let client = server.client();
    append_new(&client, "ps-end", StreamState::NoStream, 3).await;
    let from_max =
        PersistentSubscriptionOptions::default().start_from(StreamPosition::Position(u64::MAX));
    create(&client, "ps-end", "g", &from_max).await;
    let info = within(
        "info",
        client.get_persistent_subscription_info("ps-end", "g", &Default::default()),
    )
    .await
    .expect("info");
    assert_eq!(
        info.settings.expect("settings").start_from,
        StreamPosition::End,
        "reported as the end, not as revision 18446744073709551615"
    );
    let mut consumer = connect(&client, "ps-end", "g", 10).await;
    let new = append_new(&client, "ps-end", StreamState::Any, 1).await;
    let (event, _) = next_event(&mut consumer).await;
    assert_eq!(
        (id_of(&event), event.get_original_event().revision),
        (new[0], 3),
        "the group delivers what is written after its creation"
    );

    within(
        "update",
        client.update_persistent_subscription("ps-end", "g", &from_max),
    )
    .await
    .expect("update from 2^64-1");
    let listed = within(
        "list",
        client.list_persistent_subscriptions_for_stream("ps-end", &Default::default()),
    )
    .await
    .expect("list");
    assert_eq!(
        listed[0].settings.as_ref().expect("settings").start_from,
        StreamPosition::End
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_the_groups_of_a_stream_or_of_all_without_any_is_not_found() {
    let server = Server::start();
    let client = server.client();
    let for_stream = client
        .list_persistent_subscriptions_for_stream("ps-none", &Default::default())
        .await;
    assert!(
        matches!(for_stream, Err(Error::ResourceNotFound)),
        "{for_stream:?}"
    );
    let to_all = client
        .list_persistent_subscriptions_to_all(&Default::default())
        .await;
    assert!(matches!(to_all, Err(Error::ResourceNotFound)), "{to_all:?}");
    let every = within(
        "list every group",
        client.list_all_persistent_subscriptions(&Default::default()),
    )
    .await
    .expect("listing every group is no error");
    assert!(every.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_events_with_one_id_in_one_window_are_each_finished_by_their_own_ack() {
    let server = Server::start();
    let client = server.client();
    let to_all = PersistentSubscriptionToAllOptions::default()
        .start_from(StreamPosition::Start)
        .filter(SubscriptionFilter::on_stream_name().add_prefix("dup-"));
    within(
        "create on $all",
        client.create_persistent_subscription_to_all("g", &to_all),
    )
    .await
    .expect("a $all group");
    // Ids are unique per stream only: two streams may hold events with the same id.
    let shared = Uuid::new_v4();
    for stream in ["dup-a", "dup-b"] {
        within(
            "append",
            client.append_to_stream(
                stream,
                &Default::default(),
                events_with_ids("Shared", &[shared]),
            ),
        )
        .await
        .expect("append");
    }
    let options = SubscribeToPersistentSubscriptionOptions::default().buffer_size(10);
    let mut consumer = within(
        "connect",
        client.subscribe_to_persistent_subscription_to_all("g", &options),
    )
    .await
    .expect("connect");
    let mut streams = Vec::new();
    for _ in 0..2 {
        let (event, retries) = next_event(&mut consumer).await;
        assert_eq!((id_of(&event), retries), (shared, 0));
        streams.push(event.get_original_event().stream_id().to_owned());
        consumer.ack(&event).await.expect("ack");
    }
    streams.sort();
    assert_eq!(streams, ["dup-a", "dup-b"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let info = within(
            "info",
            client.get_persistent_subscription_info_to_all("g", &Default::default()),
        )
        .await
        .expect("info");
        let done = info.stats.total_in_flight_messages == 0;
        if done || std::time::Instant::now() > deadline {
            break info.stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (stats.total_in_flight_messages, stats.retry_buffer_count),
        (0, 0),
        "both acks finished their own event: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_more_groups_than_the_server_allows_answers_resource_exhausted() {
    let server = Server::start_with(&["--insecure", "--persistent-groups-max", "2"]);
    let client = server.client();
    let options = from_start(SystemConsumerStrategy::RoundRobin);
    create(&client, "ps-limit", "a", &options).await;
    create(&client, "ps-limit", "b", &options).await;
    let refused = client
        .create_persistent_subscription("ps-limit", "c", &options)
        .await;
    assert_grpc_code(
        refused,
        CODE_RESOURCE_EXHAUSTED,
        "a third group over a limit of 2",
    );
    within(
        "delete",
        client.delete_persistent_subscription("ps-limit", "a", &Default::default()),
    )
    .await
    .expect("delete");
    create(&client, "ps-limit", "c", &options).await;
}
