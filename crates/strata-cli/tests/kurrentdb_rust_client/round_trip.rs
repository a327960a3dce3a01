//! Idempotent re-sends; what goes in comes back out.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resending_the_same_event_ids_at_the_same_expected_revision_writes_once() {
    let server = Server::start();
    let client = server.client();

    let first_ids = new_ids(3);
    let first = append(
        &client,
        "idem",
        StreamState::NoStream,
        events_with_ids("E", &first_ids),
    )
    .await;
    let again = append(
        &client,
        "idem",
        StreamState::NoStream,
        events_with_ids("E", &first_ids),
    )
    .await;
    assert_eq!(
        again.next_expected_version, first.next_expected_version,
        "same revision on re-send"
    );
    assert_eq!(again.position, first.position, "same position on re-send");

    let second_ids = new_ids(2);
    let second = append(
        &client,
        "idem",
        StreamState::StreamRevision(2),
        events_with_ids("E", &second_ids),
    )
    .await;
    assert_eq!(second.next_expected_version, 4);
    let second_again = append(
        &client,
        "idem",
        StreamState::StreamRevision(2),
        events_with_ids("E", &second_ids),
    )
    .await;
    assert_eq!(second_again.next_expected_version, 4);
    assert_eq!(second_again.position, second.position);

    let different = try_append(
        &client,
        "idem",
        StreamState::StreamRevision(2),
        events_with_ids("E", &new_ids(2)),
    )
    .await;
    assert_wrong_expected_version(
        different,
        StreamState::StreamRevision(2),
        CurrentRevision::Current(4),
    );

    let events = read_stream(&client, "idem", &ReadStreamOptions::default()).await;
    assert_eq!(
        ids(&events),
        [first_ids, second_ids].concat(),
        "each event once"
    );
    let everything = read_all(&client, &ReadAllOptions::default()).await;
    assert_eq!(
        with_prefix(&everything, "idem").len(),
        5,
        "each event once in $all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_types_data_metadata_and_created_round_trip() {
    let server = Server::start();
    // The newer scheme name, once.
    let client = server.client_with_scheme("kurrentdb");

    let json_id = Uuid::new_v4();
    let payload = json!({ "name": "zoë ✓", "n": 1, "nested": { "list": [1, 2, 3] } });
    let custom = json!({ "correlation": "abc", "user": 7 });
    let json_event = EventData::json("ThingHappened", &payload)
        .expect("json")
        .metadata_as_json(&custom)
        .expect("json metadata")
        .id(json_id);
    let binary_id = Uuid::new_v4();
    let bytes = Bytes::from_static(&[0, 1, 2, 254, 255]);
    let binary_event = EventData::binary("BlobStored", bytes.clone())
        .metadata(Bytes::from_static(b"raw-meta"))
        .id(binary_id);
    let before = seconds_since_epoch_now();
    append(
        &client,
        "rt-stream",
        StreamState::NoStream,
        vec![json_event, binary_event],
    )
    .await;
    let after = seconds_since_epoch_now();

    let events = read_stream(&client, "rt-stream", &ReadStreamOptions::default()).await;
    assert_eq!(events.len(), 2);
    let (json_read, binary_read) = (&events[0], &events[1]);

    assert_eq!(json_read.id, json_id);
    assert_eq!(json_read.stream_id(), "rt-stream");
    assert_eq!(json_read.event_type, "ThingHappened");
    assert!(json_read.is_json);
    assert_eq!(
        json_read.metadata.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&json_read.data).expect("json data"),
        payload
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&json_read.custom_metadata).expect("json metadata"),
        custom
    );

    assert_eq!(binary_read.id, binary_id);
    assert_eq!(binary_read.event_type, "BlobStored");
    assert!(!binary_read.is_json);
    assert_eq!(
        binary_read.metadata.get("content-type").map(String::as_str),
        Some("application/octet-stream")
    );
    assert_eq!(binary_read.data, bytes);
    assert_eq!(&binary_read.custom_metadata[..], b"raw-meta");

    for event in &events {
        let created = event.created.timestamp();
        assert!(
            created >= before - 60 && created <= after + 60,
            "created {} is not within a minute of the append (unix seconds {before}..={after}); \
             metadata created = {:?} (must be .NET ticks since the Unix epoch)",
            event.created,
            event.metadata.get("created")
        );
    }

    let everything = read_all(&client, &ReadAllOptions::default()).await;
    let in_all = with_prefix(&everything, "rt-stream");
    assert_eq!(ids_of(&in_all), [json_id, binary_id]);
    for (from_all, from_stream) in in_all.iter().zip(&events) {
        assert_eq!(from_all.event_type, from_stream.event_type);
        assert_eq!(from_all.data, from_stream.data);
        assert_eq!(from_all.custom_metadata, from_stream.custom_metadata);
        assert_eq!(from_all.position, from_stream.position);
        assert_eq!(from_all.revision, from_stream.revision);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resending_the_same_event_ids_through_batch_append_writes_once() {
    let server = Server::start();
    let client = server.client();
    let batch = within(
        "open BatchAppend",
        client.batch_append(&BatchAppendOptions::default()),
    )
    .await
    .expect("BatchAppend available");

    let event_ids = new_ids(4);
    let first = within(
        "BatchAppend",
        batch.append_to_stream(
            "idem-batch",
            StreamState::NoStream,
            events_with_ids("E", &event_ids),
        ),
    )
    .await
    .expect("first BatchAppend");
    let again = within(
        "BatchAppend re-send",
        batch.append_to_stream(
            "idem-batch",
            StreamState::NoStream,
            events_with_ids("E", &event_ids),
        ),
    )
    .await
    .expect("re-sent BatchAppend succeeds");
    assert_eq!(first.current_revision(), Some(3));
    assert_eq!(
        again.current_revision(),
        first.current_revision(),
        "same revision"
    );
    assert_eq!(
        again.current_position(),
        first.current_position(),
        "same position"
    );

    let events = read_stream(&client, "idem-batch", &ReadStreamOptions::default()).await;
    assert_eq!(ids(&events), event_ids, "each event once");
}
