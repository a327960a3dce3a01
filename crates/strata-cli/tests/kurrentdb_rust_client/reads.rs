//! Reads of one stream and of `$all`, with positions, counts and filters.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_reads_go_both_ways_from_any_revision_with_a_max_count() {
    let server = Server::start();
    let client = server.client();
    let event_ids = append_new(&client, "rd", StreamState::NoStream, 10).await;
    append_new(&client, "rd-other", StreamState::NoStream, 3).await;

    let read = |options: ReadStreamOptions| {
        let client = client.clone();
        async move { revisions(&read_stream(&client, "rd", &options).await) }
    };
    let all = read_stream(&client, "rd", &ReadStreamOptions::default()).await;
    assert_eq!(ids(&all), event_ids);
    assert_eq!(revisions(&all), (0..10).collect::<Vec<_>>());
    assert!(all.iter().all(|event| event.stream_id() == "rd"));

    let options = ReadStreamOptions::default();
    assert_eq!(read(options.clone().max_count(3)).await, [0, 1, 2]);
    assert_eq!(
        read(
            options
                .clone()
                .position(StreamPosition::Position(4))
                .max_count(3)
        )
        .await,
        [4, 5, 6]
    );
    assert_eq!(
        read(options.clone().position(StreamPosition::Position(8))).await,
        [8, 9]
    );
    assert_eq!(
        read(options.clone().position(StreamPosition::Position(10))).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        read(options.clone().position(StreamPosition::End).max_count(3)).await,
        [9, 8, 7]
    );
    assert_eq!(
        read(options.clone().position(StreamPosition::End)).await,
        (0..10).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        read(
            options
                .clone()
                .position(StreamPosition::Position(5))
                .backwards()
                .max_count(3)
        )
        .await,
        [5, 4, 3]
    );
    assert_eq!(
        read(
            options
                .clone()
                .position(StreamPosition::Position(1))
                .backwards()
        )
        .await,
        [1, 0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_missing_stream_reports_stream_not_found() {
    let server = Server::start();
    let client = server.client();
    append_new(&client, "present", StreamState::NoStream, 1).await;

    assert_not_found(
        try_read_stream(&client, "absent", &ReadStreamOptions::default()).await,
        "Streams.Read forwards of a missing stream",
    );
    assert_not_found(
        try_read_stream(
            &client,
            "absent",
            &ReadStreamOptions::default().position(StreamPosition::End),
        )
        .await,
        "Streams.Read backwards of a missing stream",
    );
    let metadata = within(
        "metadata of a missing stream",
        client.get_stream_metadata("absent", &ReadStreamOptions::default()),
    )
    .await
    .expect("metadata read of a missing stream");
    assert!(metadata.is_not_found(), "got {metadata:?}");
}

// ---------------------------------------------------------------------------------------------
// $all reads

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_reads_go_both_ways_from_a_position_with_strictly_increasing_positions() {
    let server = Server::start();
    let client = server.client();

    let mut expected = Vec::new();
    let mut write_positions = Vec::new();
    for (stream, count) in [
        ("all-a", 3),
        ("all-b", 2),
        ("all-a", 2),
        ("all-c", 1),
        ("all-b", 4),
    ] {
        let batch = new_ids(count);
        let result = append(
            &client,
            stream,
            StreamState::Any,
            events_with_ids("E", &batch),
        )
        .await;
        write_positions.push(result.position);
        expected.extend(batch);
    }
    assert!(
        write_positions.windows(2).all(|pair| pair[0] < pair[1]),
        "append positions strictly increase: {write_positions:?}"
    );

    let forwards = read_all(&client, &ReadAllOptions::default()).await;
    let positions: Vec<Position> = forwards.iter().map(|event| event.position).collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "$all positions strictly increase: {positions:?}"
    );
    let ours = with_prefix(&forwards, "all-");
    assert_eq!(
        ids_of(&ours),
        expected,
        "$all forwards holds our events in append order"
    );
    for event in &ours {
        assert_eq!(
            event.position.commit, event.position.prepare,
            "commit == prepare for events written over gRPC"
        );
    }

    // The same event has the same position whether read from its stream or from $all.
    let from_stream = read_stream(&client, "all-b", &ReadStreamOptions::default()).await;
    let by_id: HashMap<Uuid, Position> = ours
        .iter()
        .map(|event| (event.id, event.position))
        .collect();
    for event in &from_stream {
        assert_eq!(
            Some(&event.position),
            by_id.get(&event.id),
            "position of {}",
            event.id
        );
    }

    let backwards = read_all(
        &client,
        &ReadAllOptions::default().position(StreamPosition::End),
    )
    .await;
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(
        ids_of(&with_prefix(&backwards, "all-")),
        reversed,
        "$all backwards"
    );
    assert!(
        backwards
            .windows(2)
            .all(|pair| pair[0].position > pair[1].position)
    );

    let pivot = ours[3].position;
    let after = read_all(
        &client,
        &ReadAllOptions::default().position(StreamPosition::Position(pivot)),
    )
    .await;
    assert_eq!(
        after.first().map(|event| event.id),
        Some(expected[3]),
        "forwards from a position starts at it"
    );
    assert_eq!(ids_of(&with_prefix(&after, "all-")), expected[3..]);

    // Backwards from an event's position returns what lies before it (the reference reads the
    // record ending before the position).
    let before = read_all(
        &client,
        &ReadAllOptions::default()
            .position(StreamPosition::Position(pivot))
            .backwards(),
    )
    .await;
    let mut before_expected = expected[..3].to_vec();
    before_expected.reverse();
    assert_eq!(
        ids_of(&with_prefix(&before, "all-")),
        before_expected,
        "$all backwards from a position"
    );

    let limited = read_all(
        &client,
        &ReadAllOptions::default()
            .position(StreamPosition::Position(pivot))
            .max_count(2),
    )
    .await;
    assert_eq!(ids(&limited), expected[3..5], "max count on $all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_reads_apply_stream_prefix_event_type_regex_and_system_event_filters() {
    let server = Server::start();
    let client = server.client();

    let typed = |event_type: &str| {
        let id = Uuid::new_v4();
        (
            id,
            EventData::json(event_type, &json!({ "t": event_type }))
                .expect("json")
                .id(id),
        )
    };
    let (placed_1, e1) = typed("OrderPlaced");
    let (shipped_1, e2) = typed("OrderShipped");
    append(&client, "orders-1", StreamState::NoStream, vec![e1, e2]).await;
    let (user, e3) = typed("UserCreated");
    append(&client, "users-1", StreamState::NoStream, vec![e3]).await;
    let (placed_2, e4) = typed("OrderPlaced");
    let (cancelled_2, e5) = typed("OrderCancelled");
    append(&client, "orders-2", StreamState::NoStream, vec![e4, e5]).await;
    let metadata = StreamMetadata::builder()
        .insert_custom_property("owner", "sales")
        .build();
    within(
        "set metadata",
        client.set_stream_metadata("orders-1", &AppendToStreamOptions::default(), &metadata),
    )
    .await
    .expect("set stream metadata");
    let user_events = vec![placed_1, shipped_1, user, placed_2, cancelled_2];

    let unfiltered = read_all(&client, &ReadAllOptions::default()).await;
    assert!(
        unfiltered
            .iter()
            .any(|event| event.stream_id() == "$$orders-1" && event.event_type == "$metadata"),
        "stream metadata is an event of type $metadata in $$orders-1, visible in $all (as in \
         the reference server); $all holds: {:?}",
        unfiltered
            .iter()
            .map(|event| (event.stream_id(), event.event_type.as_str()))
            .collect::<Vec<_>>()
    );

    let filtered = |filter: SubscriptionFilter| {
        let client = client.clone();
        async move { read_all(&client, &ReadAllOptions::default().filter(filter)).await }
    };

    let orders = filtered(SubscriptionFilter::on_stream_name().add_prefix("orders-")).await;
    assert_eq!(
        ids(&orders),
        [placed_1, shipped_1, placed_2, cancelled_2],
        "stream prefix orders-"
    );

    let two_prefixes = filtered(
        SubscriptionFilter::on_stream_name()
            .add_prefix("orders-")
            .add_prefix("users-"),
    )
    .await;
    assert_eq!(
        ids(&two_prefixes),
        user_events,
        "stream prefixes orders- and users-"
    );

    let by_type =
        filtered(SubscriptionFilter::on_event_type().regex("^Order(Placed|Shipped)$")).await;
    assert_eq!(
        ids(&by_type),
        [placed_1, shipped_1, placed_2],
        "event type regex"
    );

    let by_stream_regex = filtered(SubscriptionFilter::on_stream_name().regex("^users-")).await;
    assert_eq!(ids(&by_stream_regex), [user], "stream name regex");

    let type_prefix = filtered(SubscriptionFilter::on_event_type().add_prefix("User")).await;
    assert_eq!(ids(&type_prefix), [user], "event type prefix");

    for filter in [
        SubscriptionFilter::on_event_type().exclude_system_events(),
        SubscriptionFilter::on_stream_name().exclude_system_events(),
    ] {
        let events = filtered(filter.clone()).await;
        assert!(
            events
                .iter()
                .all(|event| !event.event_type.starts_with('$')
                    && !event.stream_id().starts_with('$')),
            "{filter:?} lets system events through: {:?}",
            events
                .iter()
                .map(|event| (event.stream_id(), event.event_type.as_str()))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            ids(&events),
            user_events,
            "{filter:?} keeps every user event"
        );
    }

    let limited = read_all(
        &client,
        &ReadAllOptions::default()
            .filter(SubscriptionFilter::on_stream_name().add_prefix("orders-"))
            .max_count(3),
    )
    .await;
    assert_eq!(
        ids(&limited),
        [placed_1, shipped_1, placed_2],
        "max count counts matching events"
    );

    let backwards = read_all(
        &client,
        &ReadAllOptions::default()
            .position(StreamPosition::End)
            .filter(SubscriptionFilter::on_stream_name().add_prefix("orders-")),
    )
    .await;
    assert_eq!(
        ids(&backwards),
        [cancelled_2, placed_2, shipped_1, placed_1],
        "filtered backwards"
    );
}
