//! Appends with every expected-revision kind, one big append, BatchAppend.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_no_stream_creates_once_then_conflicts_with_the_current_revision() {
    let server = Server::start();
    let client = server.client();

    let result = append(
        &client,
        "ns",
        StreamState::NoStream,
        events_with_ids("E", &new_ids(1)),
    )
    .await;
    assert_eq!(result.next_expected_version, 0);

    let conflict = try_append(
        &client,
        "ns",
        StreamState::NoStream,
        events_with_ids("E", &new_ids(1)),
    )
    .await;
    assert_wrong_expected_version(conflict, StreamState::NoStream, CurrentRevision::Current(0));

    let events = read_stream(&client, "ns", &ReadStreamOptions::default()).await;
    assert_eq!(
        revisions(&events),
        [0],
        "the conflicting append wrote nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_stream_exists_conflicts_on_a_missing_stream_and_appends_to_an_existing_one() {
    let server = Server::start();
    let client = server.client();

    let conflict = try_append(
        &client,
        "se",
        StreamState::StreamExists,
        events_with_ids("E", &new_ids(1)),
    )
    .await;
    assert_wrong_expected_version(
        conflict,
        StreamState::StreamExists,
        CurrentRevision::NoStream,
    );
    assert_not_found(
        try_read_stream(&client, "se", &ReadStreamOptions::default()).await,
        "Streams.Read of a stream whose only append conflicted",
    );

    append_new(&client, "se", StreamState::NoStream, 1).await;
    let result = append(
        &client,
        "se",
        StreamState::StreamExists,
        events_with_ids("E", &new_ids(2)),
    )
    .await;
    assert_eq!(result.next_expected_version, 2);
    let events = read_stream(&client, "se", &ReadStreamOptions::default()).await;
    assert_eq!(revisions(&events), [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_exact_revision_appends_only_at_the_current_revision() {
    let server = Server::start();
    let client = server.client();

    let conflict = try_append(
        &client,
        "ex",
        StreamState::StreamRevision(0),
        events_with_ids("E", &new_ids(1)),
    )
    .await;
    assert_wrong_expected_version(
        conflict,
        StreamState::StreamRevision(0),
        CurrentRevision::NoStream,
    );

    let first = append_new(&client, "ex", StreamState::NoStream, 3).await;
    let second_ids = new_ids(2);
    let result = append(
        &client,
        "ex",
        StreamState::StreamRevision(2),
        events_with_ids("E", &second_ids),
    )
    .await;
    assert_eq!(result.next_expected_version, 4);

    let stale = try_append(
        &client,
        "ex",
        StreamState::StreamRevision(2),
        events_with_ids("E", &new_ids(1)),
    )
    .await;
    assert_wrong_expected_version(
        stale,
        StreamState::StreamRevision(2),
        CurrentRevision::Current(4),
    );
    let ahead = try_append(
        &client,
        "ex",
        StreamState::StreamRevision(7),
        events_with_ids("E", &new_ids(1)),
    )
    .await;
    assert_wrong_expected_version(
        ahead,
        StreamState::StreamRevision(7),
        CurrentRevision::Current(4),
    );

    let events = read_stream(&client, "ex", &ReadStreamOptions::default()).await;
    assert_eq!(
        revisions(&events),
        [0, 1, 2, 3, 4],
        "conflicting appends wrote nothing"
    );
    assert_eq!(ids(&events), [first, second_ids].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_any_appends_to_missing_and_existing_streams() {
    let server = Server::start();
    let client = server.client();

    let result = append(
        &client,
        "any",
        StreamState::Any,
        events_with_ids("E", &new_ids(1)),
    )
    .await;
    assert_eq!(result.next_expected_version, 0);
    let result = append(
        &client,
        "any",
        StreamState::Any,
        events_with_ids("E", &new_ids(1)),
    )
    .await;
    assert_eq!(result.next_expected_version, 1);
    let result = append(
        &client,
        "any",
        StreamState::Any,
        events_with_ids("E", &new_ids(3)),
    )
    .await;
    assert_eq!(result.next_expected_version, 4);
    let events = read_stream(&client, "any", &ReadStreamOptions::default()).await;
    assert_eq!(revisions(&events), [0, 1, 2, 3, 4]);
}

// ---------------------------------------------------------------------------------------------
// Many events in one append

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_append_of_many_events_keeps_them_in_order() {
    let server = Server::start();
    let client = server.client();

    let event_ids = new_ids(1000);
    let result = append(
        &client,
        "many",
        StreamState::NoStream,
        events_with_ids("E", &event_ids),
    )
    .await;
    assert_eq!(result.next_expected_version, 999);

    let events = read_stream(&client, "many", &ReadStreamOptions::default()).await;
    assert_eq!(revisions(&events), (0..1000).collect::<Vec<_>>());
    assert_eq!(ids(&events), event_ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_append_writes_big_batches_and_reports_conflicts_as_already_exists() {
    let server = Server::start();
    let client = server.client();

    let batch = match within(
        "open BatchAppend",
        client.batch_append(&BatchAppendOptions::default()),
    )
    .await
    {
        Ok(batch) => batch,
        Err(Error::UnsupportedFeature) => panic!(
            "ServerFeatures.GetSupportedMethods does not list event_store.client.streams.streams \
             / batchappend, so the Rust client refuses BatchAppend"
        ),
        Err(error) => panic!("BatchAppend cannot start: {error:?}"),
    };

    let a_first = new_ids(1000);
    let a = within(
        "BatchAppend a",
        batch.append_to_stream(
            "batch-a",
            StreamState::NoStream,
            events_with_ids("E", &a_first),
        ),
    )
    .await
    .expect("BatchAppend of 1,000 events to a new stream");
    assert_eq!(a.stream_name(), "batch-a");
    assert_eq!(a.current_revision(), Some(999));
    let a_position = a
        .current_position()
        .expect("BatchAppend success carries a position");

    let b_ids = new_ids(10);
    let b = within(
        "BatchAppend b",
        batch.append_to_stream("batch-b", StreamState::Any, events_with_ids("E", &b_ids)),
    )
    .await
    .expect("BatchAppend to a second stream on the same call");
    assert_eq!(b.current_revision(), Some(9));
    let b_position = b
        .current_position()
        .expect("BatchAppend success carries a position");
    assert!(b_position > a_position, "{b_position} after {a_position}");

    let a_second = new_ids(5);
    let a2 = within(
        "BatchAppend a again",
        batch.append_to_stream(
            "batch-a",
            StreamState::StreamRevision(999),
            events_with_ids("E", &a_second),
        ),
    )
    .await
    .expect("BatchAppend at the exact revision");
    assert_eq!(a2.current_revision(), Some(1004));

    let conflict = within(
        "BatchAppend conflict",
        batch.append_to_stream(
            "batch-a",
            StreamState::NoStream,
            events_with_ids("E", &new_ids(1)),
        ),
    )
    .await;
    // The reference server answers a packed WrongExpectedVersion in a Status with code
    // ALREADY_EXISTS; the Rust client surfaces the code.
    assert_grpc_code(
        conflict,
        CODE_ALREADY_EXISTS,
        "BatchAppend with no_stream to an existing stream",
    );

    let events = read_stream(&client, "batch-a", &ReadStreamOptions::default()).await;
    assert_eq!(revisions(&events), (0..1005).collect::<Vec<_>>());
    assert_eq!(ids(&events), [a_first, a_second].concat());
    let events = read_stream(&client, "batch-b", &ReadStreamOptions::default()).await;
    assert_eq!(ids(&events), b_ids);
}
