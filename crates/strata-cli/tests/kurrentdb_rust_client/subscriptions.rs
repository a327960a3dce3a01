//! Catch-up subscriptions to a stream and to `$all`: history, caught_up, live, filters.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_subscription_sends_history_then_caught_up_then_live_events() {
    let server = Server::start();
    let client = server.client();
    let history = append_new(&client, "sub-s", StreamState::NoStream, 5).await;

    let options = SubscribeToStreamOptions::default().start_from(StreamPosition::Start);
    let mut subscription = client.subscribe_to_stream("sub-s", &options).await;
    expect_confirmation(&mut subscription).await;

    let mut delivered = Vec::new();
    loop {
        match next_message(&mut subscription, "catch-up of sub-s").await {
            SubscriptionEvent::EventAppeared(resolved) => {
                delivered.push(resolved.event.expect("event"))
            }
            SubscriptionEvent::CaughtUp(caught_up) => {
                if let Some(revision) = caught_up.and_then(|caught_up| caught_up.stream_revision) {
                    assert_eq!(revision, 4, "caught_up names the last revision delivered");
                }
                break;
            }
            SubscriptionEvent::Confirmed(_) => panic!("a second confirmation"),
            _ => {}
        }
    }
    assert_eq!(ids(&delivered), history, "history before caught_up");
    assert_eq!(revisions(&delivered), [0, 1, 2, 3, 4]);

    append_new(&client, "sub-other", StreamState::NoStream, 2).await;
    let live = append_new(&client, "sub-s", StreamState::StreamRevision(4), 3).await;
    let mut live_delivered = Vec::new();
    while live_delivered.len() < 3 {
        if let Some(event) = event_of(next_message(&mut subscription, "live events of sub-s").await)
        {
            live_delivered.push(event);
        }
    }
    assert_eq!(
        ids(&live_delivered),
        live,
        "live events, and only those of sub-s"
    );
    assert_eq!(revisions(&live_delivered), [5, 6, 7]);

    // From a revision, a subscription starts after it.
    let options = SubscribeToStreamOptions::default().start_from(StreamPosition::Position(5));
    let mut from_five = client.subscribe_to_stream("sub-s", &options).await;
    expect_confirmation(&mut from_five).await;
    let mut after_five = Vec::new();
    while after_five.len() < 2 {
        if let Some(event) =
            event_of(next_message(&mut from_five, "subscription from revision 5").await)
        {
            after_five.push(event);
        }
    }
    assert_eq!(
        revisions(&after_five),
        [6, 7],
        "a subscription from revision 5 starts at 6"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_subscription_to_a_missing_stream_gets_its_first_events_live() {
    let server = Server::start();
    let client = server.client();

    let options = SubscribeToStreamOptions::default().start_from(StreamPosition::Start);
    let mut subscription = client.subscribe_to_stream("later", &options).await;
    expect_confirmation(&mut subscription).await;
    let written = append_new(&client, "later", StreamState::NoStream, 2).await;
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        if let Some(event) =
            event_of(next_message(&mut subscription, "events of a new stream").await)
        {
            delivered.push(event);
        }
    }
    assert_eq!(ids(&delivered), written);
    assert_eq!(revisions(&delivered), [0, 1]);
}

/// Appends `appends` batches of `per_append` events, spread over `streams`, one after the other.
fn spawn_appender(
    client: &Client,
    streams: &'static [&'static str],
    appends: usize,
    per_append: usize,
) -> tokio::task::JoinHandle<Vec<Uuid>> {
    let client = client.clone();
    tokio::spawn(async move {
        let mut written = Vec::new();
        for index in 0..appends {
            let stream = streams[index % streams.len()];
            written.extend(append_new(&client, stream, StreamState::Any, per_append).await);
        }
        written
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_subscription_has_no_gap_or_duplicate_when_appends_race_the_catch_up() {
    let server = Server::start();
    let client = server.client();
    let mut expected = Vec::new();
    for _ in 0..3 {
        expected.extend(append_new(&client, "race", StreamState::Any, 100).await);
    }

    let options = SubscribeToStreamOptions::default().start_from(StreamPosition::Start);
    let mut subscription = client.subscribe_to_stream("race", &options).await;
    expect_confirmation(&mut subscription).await;
    let mut delivered = Vec::new();
    let mut appender = None;
    while delivered.len() < 400 {
        if let Some(event) =
            event_of(next_message(&mut subscription, "racing subscription to race").await)
        {
            delivered.push(event);
            if appender.is_none() {
                appender = Some(spawn_appender(&client, &["race"], 20, 5));
            }
        }
    }
    let appended = appender
        .expect("appender started")
        .await
        .expect("appender task");
    expected.extend(appended);
    assert_eq!(
        revisions(&delivered),
        (0..400).collect::<Vec<_>>(),
        "no gap, no duplicate, in order"
    );
    assert_eq!(ids(&delivered), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_subscription_sends_history_then_caught_up_then_live_events() {
    let server = Server::start();
    let client = server.client();
    let mut history = append_new(&client, "suball-a", StreamState::NoStream, 2).await;
    history.extend(append_new(&client, "suball-b", StreamState::NoStream, 2).await);

    let options = SubscribeToAllOptions::default().position(StreamPosition::Start);
    let mut subscription = client.subscribe_to_all(&options).await;
    expect_confirmation(&mut subscription).await;
    let mut delivered = Vec::new();
    loop {
        match next_message(&mut subscription, "catch-up of $all").await {
            SubscriptionEvent::EventAppeared(resolved) => {
                delivered.push(resolved.event.expect("event"))
            }
            SubscriptionEvent::CaughtUp(caught_up) => {
                let last = delivered.last().map(|event: &RecordedEvent| event.position);
                if let (Some(position), Some(last)) = (caught_up.and_then(|c| c.position), last) {
                    assert!(
                        position >= last,
                        "caught_up at {position} but delivered up to {last}"
                    );
                }
                break;
            }
            SubscriptionEvent::Confirmed(_) => panic!("a second confirmation"),
            _ => {}
        }
    }
    assert_eq!(
        ids_of(&with_prefix(&delivered, "suball-")),
        history,
        "history before caught_up"
    );

    let mut live = append_new(&client, "suball-c", StreamState::NoStream, 2).await;
    live.extend(append_new(&client, "suball-a", StreamState::StreamRevision(1), 1).await);
    while with_prefix(&delivered, "suball-").len() < 7 {
        if let Some(event) = event_of(next_message(&mut subscription, "live events of $all").await)
        {
            delivered.push(event);
        }
    }
    assert_eq!(
        ids_of(&with_prefix(&delivered, "suball-")),
        [history.clone(), live.clone()].concat()
    );
    assert!(
        delivered
            .windows(2)
            .all(|pair| pair[0].position < pair[1].position),
        "$all subscription positions strictly increase"
    );

    // From a position, a subscription to $all starts after it.
    let from = with_prefix(&delivered, "suball-")[4].position;
    let options = SubscribeToAllOptions::default().position(StreamPosition::Position(from));
    let mut after = client.subscribe_to_all(&options).await;
    expect_confirmation(&mut after).await;
    let mut after_delivered = Vec::new();
    while with_prefix(&after_delivered, "suball-").len() < 2 {
        if let Some(event) =
            event_of(next_message(&mut after, "$all subscription from a position").await)
        {
            after_delivered.push(event);
        }
    }
    assert_eq!(
        ids_of(&with_prefix(&after_delivered, "suball-")),
        live[1..],
        "starts after {from}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_subscription_has_no_gap_or_duplicate_when_appends_race_the_catch_up() {
    const STREAMS: &[&str] = &["race-a", "race-b", "race-c"];
    let server = Server::start();
    let client = server.client();
    let mut expected = Vec::new();
    for stream in STREAMS {
        expected.extend(append_new(&client, stream, StreamState::Any, 100).await);
    }

    let options = SubscribeToAllOptions::default().position(StreamPosition::Start);
    let mut subscription = client.subscribe_to_all(&options).await;
    expect_confirmation(&mut subscription).await;
    let mut delivered = Vec::new();
    let mut appender = None;
    while with_prefix(&delivered, "race-").len() < 420 {
        if let Some(event) =
            event_of(next_message(&mut subscription, "racing subscription to $all").await)
        {
            delivered.push(event);
            if appender.is_none() {
                appender = Some(spawn_appender(&client, STREAMS, 24, 5));
            }
        }
    }
    let appended = appender
        .expect("appender started")
        .await
        .expect("appender task");
    expected.extend(appended);
    let ours = with_prefix(&delivered, "race-");
    let unique: HashSet<Uuid> = ids_of(&ours).into_iter().collect();
    assert_eq!(unique.len(), ours.len(), "no duplicate");
    assert_eq!(ids_of(&ours), expected, "no gap, in order");
    assert!(
        delivered
            .windows(2)
            .all(|pair| pair[0].position < pair[1].position)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_all_subscription_sends_only_matches_and_checkpoints_that_never_skip_one() {
    let server = Server::start();
    let client = server.client();
    for round in 0..6 {
        append_new(
            &client,
            &format!("noise-{}", round % 3),
            StreamState::Any,
            5,
        )
        .await;
        append_new(&client, "keep-1", StreamState::Any, 1).await;
    }

    let filter = SubscriptionFilter::on_stream_name()
        .add_prefix("keep-")
        .max(1);
    let options = SubscribeToAllOptions::default()
        .position(StreamPosition::Start)
        .filter(filter);
    let mut subscription = client.subscribe_to_all(&options).await;
    expect_confirmation(&mut subscription).await;

    let mut delivered: Vec<RecordedEvent> = Vec::new();
    let mut checkpoints: Vec<Position> = Vec::new();
    let mut caught_up = false;
    let mut live_written = false;
    let mut noise_for_checkpoint = false;
    loop {
        match next_message(&mut subscription, "filtered $all subscription").await {
            SubscriptionEvent::EventAppeared(resolved) => {
                let event = resolved.event.expect("event");
                assert!(
                    event.stream_id().starts_with("keep-"),
                    "filter let {} through",
                    event.stream_id()
                );
                delivered.push(event);
            }
            SubscriptionEvent::Checkpoint(position) => {
                if let Some(previous) = checkpoints.last() {
                    assert!(
                        position >= *previous,
                        "checkpoint {position} after {previous}"
                    );
                }
                // Every match before the checkpoint must already have been delivered.
                let keep = read_all(
                    &client,
                    &ReadAllOptions::default()
                        .filter(SubscriptionFilter::on_stream_name().add_prefix("keep-")),
                )
                .await;
                let owed: Vec<Uuid> = keep
                    .iter()
                    .filter(|event| event.position < position)
                    .map(|event| event.id)
                    .collect();
                let got: Vec<Uuid> = delivered
                    .iter()
                    .map(|event| event.id)
                    .take(owed.len())
                    .collect();
                assert_eq!(got, owed, "checkpoint at {position} skips matching events");
                assert!(
                    delivered.len() >= owed.len(),
                    "checkpoint at {position} ahead of delivery"
                );
                checkpoints.push(position);
            }
            SubscriptionEvent::CaughtUp(_) => caught_up = true,
            _ => {}
        }
        if caught_up && !live_written {
            live_written = true;
            append_new(&client, "noise-live", StreamState::Any, 10).await;
            append_new(&client, "keep-2", StreamState::Any, 2).await;
        }
        if delivered.len() == 8 && !checkpoints.is_empty() {
            break;
        }
        if delivered.len() == 8 && !noise_for_checkpoint {
            // Give the filter more non-matching events to pass over so a checkpoint is due.
            noise_for_checkpoint = true;
            append_new(&client, "noise-more", StreamState::Any, 50).await;
        }
    }
    assert!(caught_up, "the filtered subscription sent caught_up");
    let streams: Vec<&str> = delivered.iter().map(|event| event.stream_id()).collect();
    assert_eq!(streams, [["keep-1"; 6].as_slice(), &["keep-2"; 2]].concat());
    assert_eq!(revisions(&delivered), [0, 1, 2, 3, 4, 5, 0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_subscription_with_the_exclude_system_events_filter_skips_metadata_events() {
    let server = Server::start();
    let client = server.client();
    let mut expected = append_new(&client, "plain-a", StreamState::NoStream, 2).await;
    let metadata = StreamMetadata::builder().max_count(10).build();
    within(
        "set metadata",
        client.set_stream_metadata("plain-a", &AppendToStreamOptions::default(), &metadata),
    )
    .await
    .expect("set stream metadata");
    expected.extend(append_new(&client, "plain-b", StreamState::NoStream, 1).await);

    let filter = SubscriptionFilter::on_event_type().exclude_system_events();
    let options = SubscribeToAllOptions::default()
        .position(StreamPosition::Start)
        .filter(filter);
    let mut subscription = client.subscribe_to_all(&options).await;
    expect_confirmation(&mut subscription).await;

    let mut delivered: Vec<RecordedEvent> = Vec::new();
    let mut live_written = false;
    while !live_written || delivered.len() < expected.len() {
        match next_message(&mut subscription, "$all without system events").await {
            SubscriptionEvent::EventAppeared(resolved) => {
                delivered.push(resolved.event.expect("event"));
            }
            SubscriptionEvent::CaughtUp(_) if !live_written => {
                live_written = true;
                within(
                    "set metadata live",
                    client.set_stream_metadata(
                        "plain-b",
                        &AppendToStreamOptions::default(),
                        &metadata,
                    ),
                )
                .await
                .expect("set stream metadata");
                expected.extend(append_new(&client, "plain-c", StreamState::NoStream, 2).await);
            }
            _ => {}
        }
    }
    let types: Vec<(&str, &str)> = delivered
        .iter()
        .map(|event| (event.stream_id(), event.event_type.as_str()))
        .collect();
    assert!(
        types
            .iter()
            .all(|(_, event_type)| !event_type.starts_with('$')),
        "system events came through: {types:?}"
    );
    assert_eq!(ids(&delivered), expected, "every user event, in order");
}
