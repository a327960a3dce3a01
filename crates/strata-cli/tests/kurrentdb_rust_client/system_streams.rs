//! The system streams (`$ce-…`, `$et-…`) and the `$idx-` filters of `$all` through the
//! official Rust client: link events as KurrentDB's standard projections write them, with
//! and without resolving, catch-up subscriptions into live, and persistent subscriptions.

use std::collections::HashMap;

use kurrentdb::{
    PersistentSubscriptionEvent, PersistentSubscriptionOptions, ResolvedEvent,
    SubscribeToPersistentSubscriptionOptions,
};

use super::*;

/// Orders in two streams, with a cart between them; returns the ids of the order events
/// in log order, and of those of type `OrderPlaced`.
async fn write_orders(client: &Client) -> (Vec<Uuid>, Vec<Uuid>) {
    let mut orders = Vec::new();
    let mut placed = Vec::new();
    let writes = [
        ("orders-1", "OrderPlaced"),
        ("cart-1", "ItemAdded"),
        ("orders-2", "OrderPlaced"),
        ("orders-1", "OrderShipped"),
        ("cart-1", "OrderPlaced"),
        ("orders-2", "OrderPaid"),
    ];
    for (stream, event_type) in writes {
        let ids = new_ids(1);
        append(
            client,
            stream,
            StreamState::Any,
            events_with_ids(event_type, &ids),
        )
        .await;
        if stream.starts_with("orders-") {
            orders.push(ids[0]);
        }
        if event_type == "OrderPlaced" {
            placed.push(ids[0]);
        }
    }
    (orders, placed)
}

async fn read_resolved(
    client: &Client,
    stream: &str,
    options: &ReadStreamOptions,
) -> Vec<ResolvedEvent> {
    within(&format!("read {stream}"), async {
        let mut reader = client.read_stream(stream, options).await?;
        let mut events = Vec::new();
        while let Some(resolved) = reader.next().await? {
            events.push(resolved);
        }
        Ok::<_, Error>(events)
    })
    .await
    .unwrap_or_else(|error| panic!("Read of {stream} fails: {error:?}"))
}

fn target_ids(events: &[ResolvedEvent]) -> Vec<Uuid> {
    events
        .iter()
        .map(|resolved| resolved.event.as_ref().expect("a resolved link's event").id)
        .collect()
}

fn link_revisions(events: &[ResolvedEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|resolved| resolved.link.as_ref().expect("the link").revision)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn category_and_event_type_streams_read_as_links_with_and_without_resolving() {
    let server = Server::start();
    let client = server.client();
    let (orders, placed) = write_orders(&client).await;

    // Unresolved: the `$>` links themselves, numbered densely.
    let links = read_stream(&client, "$ce-orders", &ReadStreamOptions::default()).await;
    assert_eq!(revisions(&links), [0, 1, 2, 3]);
    let data: Vec<_> = links
        .iter()
        .map(|link| String::from_utf8_lossy(&link.data).into_owned())
        .collect();
    assert_eq!(
        data,
        ["0@orders-1", "0@orders-2", "1@orders-1", "1@orders-2"]
    );
    assert!(
        links
            .iter()
            .all(|link| link.event_type == "$>" && link.stream_id() == "$ce-orders")
    );

    // Resolved: the order events, each with its link; positions are the links'.
    let options = ReadStreamOptions::default().resolve_link_tos();
    let resolved = read_resolved(&client, "$ce-orders", &options).await;
    assert_eq!(target_ids(&resolved), orders);
    assert_eq!(link_revisions(&resolved), [0, 1, 2, 3]);
    for event in &resolved {
        let target = event.event.as_ref().expect("event");
        assert!(target.stream_id().starts_with("orders-"));
        assert_eq!(
            event.commit_position,
            event.link.as_ref().map(|link| link.position.commit),
            "a read event is at its link's position"
        );
    }
    let backwards = ReadStreamOptions::default()
        .resolve_link_tos()
        .backwards()
        .position(StreamPosition::End)
        .max_count(2);
    let last_two = read_resolved(&client, "$ce-orders", &backwards).await;
    assert_eq!(target_ids(&last_two), [orders[3], orders[2]]);
    assert_eq!(link_revisions(&last_two), [3, 2]);
    let from_one = ReadStreamOptions::default()
        .resolve_link_tos()
        .position(StreamPosition::Position(1))
        .max_count(2);
    let middle = read_resolved(&client, "$ce-orders", &from_one).await;
    assert_eq!(target_ids(&middle), orders[1..3]);

    let placed_links = read_stream(&client, "$et-OrderPlaced", &ReadStreamOptions::default()).await;
    assert_eq!(revisions(&placed_links), [0, 1, 2]);
    let resolved = read_resolved(&client, "$et-OrderPlaced", &options).await;
    assert_eq!(target_ids(&resolved), placed);

    // A link a client appends resolves the same way; one to nothing comes back alone.
    append(
        &client,
        "my-links",
        StreamState::NoStream,
        vec![
            EventData::binary("$>", Bytes::from_static(b"1@orders-1")),
            EventData::binary("$>", Bytes::from_static(b"7@orders-1")),
        ],
    )
    .await;
    let own = read_resolved(&client, "my-links", &options).await;
    assert_eq!(own[0].event.as_ref().map(|event| event.id), Some(orders[2]));
    assert!(own[1].event.is_none(), "a link to nothing has no event");
    assert_eq!(own[1].link.as_ref().map(|link| link.revision), Some(1));

    // Nothing is stored for these streams: appends are refused.
    let forged = try_append(
        &client,
        "$ce-orders",
        StreamState::Any,
        events_with_ids("Forged", &new_ids(1)),
    )
    .await;
    assert!(forged.is_err(), "an append to $ce-orders is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn category_subscription_resolves_links_through_catch_up_into_live() {
    let server = Server::start();
    let client = server.client();
    let (orders, _) = write_orders(&client).await;
    let options = SubscribeToStreamOptions::default()
        .start_from(StreamPosition::Start)
        .resolve_link_tos();
    let mut subscription = client.subscribe_to_stream("$ce-orders", &options).await;
    expect_confirmation(&mut subscription).await;
    let mut history = Vec::new();
    loop {
        match next_message(&mut subscription, "catch-up of $ce-orders").await {
            SubscriptionEvent::EventAppeared(resolved) => history.push(resolved),
            SubscriptionEvent::CaughtUp(_) => break,
            _ => {}
        }
    }
    assert_eq!(target_ids(&history), orders, "history before caught_up");
    assert_eq!(link_revisions(&history), [0, 1, 2, 3]);

    append_new(&client, "cart-2", StreamState::Any, 2).await;
    let live = append_new(&client, "orders-3", StreamState::NoStream, 2).await;
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        if let SubscriptionEvent::EventAppeared(resolved) =
            next_message(&mut subscription, "live $ce-orders").await
        {
            delivered.push(resolved);
        }
    }
    assert_eq!(target_ids(&delivered), live, "live order events only");
    assert_eq!(link_revisions(&delivered), [4, 5], "no gap, no duplicate");
}

fn index_filter(prefix: &str) -> SubscriptionFilter {
    SubscriptionFilter::on_stream_name().add_prefix(prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_filters_read_and_subscribe_to_all() {
    let server = Server::start();
    let client = server.client();
    let (orders, placed) = write_orders(&client).await;
    for (prefix, expected) in [
        ("$idx-ce-orders", &orders),
        ("$idx-et-OrderPlaced", &placed),
    ] {
        let forwards = ReadAllOptions::default()
            .position(StreamPosition::Start)
            .filter(index_filter(prefix));
        assert_eq!(
            &ids(&read_all(&client, &forwards).await),
            expected,
            "{prefix}"
        );
        let backwards = ReadAllOptions::default()
            .backwards()
            .position(StreamPosition::End)
            .filter(index_filter(prefix));
        let mut reversed = expected.clone();
        reversed.reverse();
        assert_eq!(
            ids(&read_all(&client, &backwards).await),
            reversed,
            "{prefix} backwards"
        );
    }

    let options = SubscribeToAllOptions::default()
        .position(StreamPosition::Start)
        .filter(index_filter("$idx-ce-orders"));
    let mut subscription = client.subscribe_to_all(&options).await;
    expect_confirmation(&mut subscription).await;
    let mut delivered = Vec::new();
    let live = loop {
        match next_message(&mut subscription, "$idx-ce-orders subscription").await {
            SubscriptionEvent::EventAppeared(resolved) => {
                delivered.push(resolved.event.expect("event"))
            }
            SubscriptionEvent::CaughtUp(_) => {
                append_new(&client, "cart-3", StreamState::Any, 1).await;
                break append_new(&client, "orders-9", StreamState::Any, 1).await;
            }
            _ => {}
        }
    };
    assert_eq!(ids(&delivered), orders, "history");
    loop {
        if let Some(event) = event_of(next_message(&mut subscription, "live").await) {
            assert_eq!(event.id, live[0], "the next order event, live");
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_subscriptions_to_a_category_deliver_each_order_once_per_group() {
    let server = Server::start();
    let client = server.client();
    let (mut orders, _) = write_orders(&client).await;
    let settings = PersistentSubscriptionOptions::default()
        .start_from(StreamPosition::Start)
        .resolve_link_tos(true);
    for group in ["billing", "shipping"] {
        within(
            "create a group on $ce-orders",
            client.create_persistent_subscription("$ce-orders", group, &settings),
        )
        .await
        .unwrap_or_else(|error| panic!("create {group}: {error:?}"));
    }
    let connect = SubscribeToPersistentSubscriptionOptions::default().buffer_size(3);
    let mut consumers = Vec::new();
    for group in ["billing", "shipping"] {
        let consumer = within(
            "connect",
            client.subscribe_to_persistent_subscription("$ce-orders", group, &connect),
        )
        .await
        .unwrap_or_else(|error| panic!("connect to {group}: {error:?}"));
        consumers.push((group, consumer));
    }
    orders.extend(append_new(&client, "orders-4", StreamState::NoStream, 3).await);
    append_new(&client, "cart-4", StreamState::Any, 2).await;
    for (group, consumer) in &mut consumers {
        let mut seen: HashMap<Uuid, u64> = HashMap::new();
        let mut order = Vec::new();
        while order.len() < orders.len() {
            let message = within("next event", consumer.next_subscription_event())
                .await
                .unwrap_or_else(|error| panic!("{group}: {error:?}"));
            let PersistentSubscriptionEvent::EventAppeared { event, .. } = message else {
                continue;
            };
            let target = event.event.as_ref().expect("a resolved order event");
            let link = event.link.as_ref().expect("the $ce-orders link");
            assert_eq!(link.stream_id(), "$ce-orders");
            assert!(
                seen.insert(target.id, link.revision).is_none(),
                "{group}: {} delivered twice",
                target.id
            );
            order.push(target.id);
            consumer.ack(&event).await.expect("ack");
        }
        assert_eq!(order, orders, "{group}: every order event once, in order");
        let mut revisions: Vec<u64> = seen.values().copied().collect();
        revisions.sort_unstable();
        assert_eq!(revisions, (0..orders.len() as u64).collect::<Vec<_>>());
    }
}
