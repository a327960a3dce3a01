//! Soft delete, tombstone, stream metadata.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_delete_hides_the_stream_until_an_append_revives_it() {
    let server = Server::start();
    let client = server.client();
    append_new(&client, "del", StreamState::NoStream, 3).await;

    let stale = within(
        "Delete at a stale revision",
        client.delete_stream(
            "del",
            &DeleteStreamOptions::default().stream_state(StreamState::StreamRevision(1)),
        ),
    )
    .await;
    assert_grpc_code(
        stale,
        CODE_FAILED_PRECONDITION,
        "Streams.Delete at a stale revision (wrong-expected-version)",
    );
    assert_eq!(
        read_stream(&client, "del", &ReadStreamOptions::default())
            .await
            .len(),
        3
    );

    within(
        "Delete",
        client.delete_stream(
            "del",
            &DeleteStreamOptions::default().stream_state(StreamState::StreamRevision(2)),
        ),
    )
    .await
    .expect("Streams.Delete at the current revision");
    assert_not_found(
        try_read_stream(&client, "del", &ReadStreamOptions::default()).await,
        "read after delete",
    );
    assert_not_found(
        try_read_stream(
            &client,
            "del",
            &ReadStreamOptions::default().position(StreamPosition::End),
        )
        .await,
        "read backwards after delete",
    );
    // As in the reference server, a soft delete writes $tb = i64::MAX ("deleted") into the
    // metadata, and the next append rewrites it to the revision the stream restarts from.
    assert_eq!(
        truncate_before(&client, "del").await,
        Some(i64::MAX as u64),
        "$tb after delete"
    );

    let revived = new_ids(1);
    let result = append(
        &client,
        "del",
        StreamState::Any,
        events_with_ids("E", &revived),
    )
    .await;
    assert_eq!(
        result.next_expected_version, 3,
        "a revived stream continues its revisions"
    );
    let events = read_stream(&client, "del", &ReadStreamOptions::default()).await;
    assert_eq!(revisions(&events), [3]);
    assert_eq!(ids(&events), revived);
    assert_eq!(
        truncate_before(&client, "del").await,
        Some(3),
        "$tb after the revival"
    );
}

async fn truncate_before(client: &Client, stream: &str) -> Option<u64> {
    let latest = ReadStreamOptions::default()
        .position(StreamPosition::End)
        .max_count(1);
    match within("metadata", client.get_stream_metadata(stream, &latest)).await {
        Ok(StreamMetadataResult::Success(versioned)) => versioned.metadata().truncate_before,
        other => panic!("{stream} should have metadata, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstone_makes_a_stream_permanently_deleted() {
    let server = Server::start();
    let client = server.client();
    append_new(&client, "tomb", StreamState::NoStream, 2).await;
    append_new(&client, "tomb-kept", StreamState::NoStream, 1).await;

    let stale = within(
        "Tombstone at a stale revision",
        client.tombstone_stream(
            "tomb-kept",
            &TombstoneStreamOptions::default().stream_state(StreamState::StreamRevision(5)),
        ),
    )
    .await;
    assert_grpc_code(
        stale,
        CODE_FAILED_PRECONDITION,
        "Streams.Tombstone at a stale revision",
    );
    assert_eq!(
        read_stream(&client, "tomb-kept", &ReadStreamOptions::default())
            .await
            .len(),
        1
    );

    within(
        "Tombstone",
        client.tombstone_stream("tomb", &TombstoneStreamOptions::default()),
    )
    .await
    .expect("Streams.Tombstone");
    assert_deleted(
        try_read_stream(&client, "tomb", &ReadStreamOptions::default()).await,
        "Streams.Read of a tombstoned stream",
    );
    assert_deleted(
        try_append(
            &client,
            "tomb",
            StreamState::Any,
            events_with_ids("E", &new_ids(1)),
        )
        .await,
        "Streams.Append (any) to a tombstoned stream",
    );
    assert_deleted(
        try_append(
            &client,
            "tomb",
            StreamState::NoStream,
            events_with_ids("E", &new_ids(1)),
        )
        .await,
        "Streams.Append (no_stream) to a tombstoned stream",
    );
    assert_deleted(
        within(
            "Delete tombstoned",
            client.delete_stream("tomb", &DeleteStreamOptions::default()),
        )
        .await,
        "Streams.Delete of a tombstoned stream",
    );
    assert_deleted(
        within(
            "Tombstone twice",
            client.tombstone_stream("tomb", &TombstoneStreamOptions::default()),
        )
        .await,
        "Streams.Tombstone of a tombstoned stream",
    );

    let batch = within(
        "open BatchAppend",
        client.batch_append(&BatchAppendOptions::default()),
    )
    .await
    .expect("BatchAppend available");
    let batch_result = within(
        "BatchAppend to tombstoned",
        batch.append_to_stream("tomb", StreamState::Any, events_with_ids("E", &new_ids(1))),
    )
    .await;
    // The reference packs StreamDeleted in a Status with code NOT_FOUND.
    assert_grpc_code(
        batch_result,
        CODE_NOT_FOUND,
        "BatchAppend to a tombstoned stream",
    );

    // A name that never existed can be tombstoned too, and then never written.
    within(
        "Tombstone a new name",
        client.tombstone_stream(
            "tomb-new",
            &TombstoneStreamOptions::default().stream_state(StreamState::NoStream),
        ),
    )
    .await
    .expect("Streams.Tombstone with no_stream of a missing stream");
    assert_deleted(
        try_append(
            &client,
            "tomb-new",
            StreamState::Any,
            events_with_ids("E", &new_ids(1)),
        )
        .await,
        "Streams.Append to a tombstoned new name",
    );
    assert_eq!(
        read_stream(&client, "tomb-kept", &ReadStreamOptions::default())
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_metadata_round_trips_and_max_count_limits_reads() {
    let server = Server::start();
    let client = server.client();
    let latest = ReadStreamOptions::default()
        .position(StreamPosition::End)
        .max_count(1);

    let before = within(
        "metadata before",
        client.get_stream_metadata("meta", &latest),
    )
    .await
    .expect("metadata read");
    assert!(before.is_not_found(), "no metadata yet, got {before:?}");

    let first = StreamMetadata::builder()
        .max_count(3)
        .insert_custom_property("owner", "team-a")
        .insert_custom_property("limits", json!({ "burst": 5, "tags": ["a", "b"] }))
        .build();
    let result = within(
        "set metadata",
        client.set_stream_metadata("meta", &state(StreamState::NoStream), &first),
    )
    .await
    .expect("set stream metadata");
    assert_eq!(result.next_expected_version, 0);

    match within("metadata", client.get_stream_metadata("meta", &latest))
        .await
        .expect("metadata read")
    {
        StreamMetadataResult::Success(versioned) => {
            assert_eq!(versioned.stream_name(), "$$meta");
            assert_eq!(versioned.version(), 0);
            assert_eq!(
                versioned.metadata(),
                &first,
                "metadata, custom properties included, round trip"
            );
        }
        other => panic!("metadata just set, got {other:?}"),
    }

    let written = append_new(&client, "meta", StreamState::NoStream, 10).await;
    let events = read_stream(&client, "meta", &ReadStreamOptions::default()).await;
    assert_eq!(
        revisions(&events),
        [7, 8, 9],
        "$maxCount 3 keeps the last three"
    );
    assert_eq!(ids(&events), written[7..]);
    let backwards = read_stream(
        &client,
        "meta",
        &ReadStreamOptions::default().position(StreamPosition::End),
    )
    .await;
    assert_eq!(revisions(&backwards), [9, 8, 7]);

    let second = StreamMetadata::builder()
        .max_count(5)
        .insert_custom_property("owner", "team-b")
        .build();
    let result = within(
        "update metadata",
        client.set_stream_metadata("meta", &state(StreamState::StreamRevision(0)), &second),
    )
    .await
    .expect("update stream metadata");
    assert_eq!(result.next_expected_version, 1);
    let stale = within(
        "stale metadata",
        client.set_stream_metadata("meta", &state(StreamState::StreamRevision(0)), &first),
    )
    .await;
    assert_wrong_expected_version(
        stale,
        StreamState::StreamRevision(0),
        CurrentRevision::Current(1),
    );

    match within("metadata", client.get_stream_metadata("meta", &latest))
        .await
        .expect("metadata read")
    {
        StreamMetadataResult::Success(versioned) => {
            assert_eq!(versioned.version(), 1);
            assert_eq!(versioned.metadata(), &second);
        }
        other => panic!("metadata just updated, got {other:?}"),
    }
    let events = read_stream(&client, "meta", &ReadStreamOptions::default()).await;
    assert_eq!(
        revisions(&events),
        [5, 6, 7, 8, 9],
        "$maxCount 5 keeps the last five"
    );

    // Metadata streams keep only their latest event ($maxCount 1), as in the reference server.
    let raw = read_stream(&client, "$$meta", &ReadStreamOptions::default()).await;
    assert_eq!(
        revisions(&raw),
        [1],
        "the latest metadata version in $$meta"
    );
    assert_eq!(raw[0].event_type, "$metadata");
    assert!(raw[0].is_json);
    let body: Value = serde_json::from_slice(&raw[0].data).expect("metadata is JSON");
    assert_eq!(
        body,
        json!({ "$maxCount": 5, "owner": "team-b" }),
        "raw metadata JSON"
    );
}
