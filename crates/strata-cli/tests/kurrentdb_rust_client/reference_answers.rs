//! Answers the reference server gives and clients rely on: invalid `$all` positions,
//! gossip at the name the client used, the KurrentDB version the server claims, the
//! checkpoint cadence of filtered subscriptions, and the Rust client's batch deadlines.

use super::*;

/// Reads `$all` with `options` and returns the error the read ends with.
async fn read_all_error(client: &Client, options: &ReadAllOptions) -> Error {
    within("read $all expecting an error", async {
        let mut reader = match client.read_all(options).await {
            Ok(reader) => reader,
            Err(error) => return error,
        };
        loop {
            match reader.next().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the read of $all ended without an error"),
                Err(error) => return error,
            }
        }
    })
    .await
}

/// The engine's positions are byte offsets, so a position can fall inside an event; the
/// reference server answers such a read with `InvalidPosition`. PostgreSQL numbers events
/// densely (every position up to the end is an event's), so there the same read starts
/// at the event that has that position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_all_from_inside_an_event_answers_unexpected_invalid_position() {
    let server = Server::start();
    let client = server.client();
    append_new(&client, "inside-1", StreamState::Any, 2).await;
    let first = read_all(&client, &ReadAllOptions::default().max_count(1)).await;
    if support::postgres_requested() {
        let next = first[0].position.commit + 1;
        let from_next = ReadAllOptions::default()
            .position(StreamPosition::Position(Position {
                commit: next,
                prepare: next,
            }))
            .max_count(1);
        let read = read_all(&client, &from_next).await;
        assert_eq!(read.len(), 1, "one event at position {next}");
        assert_eq!(
            read[0].position.commit, next,
            "PostgreSQL positions are dense"
        );
        return;
    }
    let inside = first[0].position.commit + 8;
    let position = StreamPosition::Position(Position {
        commit: inside,
        prepare: inside,
    });
    let unfiltered = ReadAllOptions::default().position(position);
    let filtered = unfiltered
        .clone()
        .filter(SubscriptionFilter::on_stream_name().add_prefix("inside-"));
    for (options, message) in [
        (unfiltered, "Unexpected ReadAllResult: InvalidPosition"),
        (
            filtered,
            "Unexpected FilteredReadAllResult: InvalidPosition",
        ),
    ] {
        let error = read_all_error(&client, &options).await;
        assert!(
            matches!(&error, Error::ServerError(text) if text.contains(message)),
            "expected status UNKNOWN with {message:?}, got {error:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_claims_the_kurrentdb_version_whose_protocol_it_speaks() {
    let server = Server::start();
    let info = within("server info", server.client().server_info())
        .await
        .expect("server info");
    assert_eq!(info.version().to_string(), "24.10.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_through_gossip_connects_back_by_the_name_the_client_used() {
    // A certificate for the name "localhost" only: connecting to 127.0.0.1 would fail its
    // check, so the append below works only if gossip answers "localhost".
    let certificates = tempfile::tempdir().expect("temp dir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let certificate = certificates.path().join("node.crt");
    let key = certificates.path().join("node.key");
    std::fs::write(&certificate, certified.cert.pem()).expect("write the certificate");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write the key");
    let server = Server::start_with(&[
        "--tls-cert",
        certificate.to_str().expect("UTF-8 path"),
        "--tls-key",
        key.to_str().expect("UTF-8 path"),
    ]);
    let settings: kurrentdb::ClientSettings = format!(
        "esdb+discover://admin:changeit@localhost:{}?tls=true&tlsCaFile={}",
        server.port(),
        certificate.display()
    )
    .parse()
    .expect("connection string parses");
    let client = Client::new(settings).expect("client builds");
    let written = append(
        &client,
        "discovered",
        StreamState::NoStream,
        events_with_ids("Found", &new_ids(1)),
    )
    .await;
    assert_eq!(written.next_expected_version, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_subscriptions_checkpoint_every_window_of_events_examined() {
    let server = Server::start();
    let client = server.client();
    // A new server's `$all` begins with the events that create its built-in users. Ten
    // events more, or eleven when the last would end a window (its catching-up checkpoint
    // is then one of its own).
    let before = read_all(&client, &ReadAllOptions::default()).await.len();
    let noise = if (before + 10) % 4 == 0 { 11 } else { 10 };
    append_new(&client, "noise-1", StreamState::Any, noise).await;
    let history = read_all(&client, &ReadAllOptions::default()).await;
    // The Rust client sends the window (`max`) with a checkpoint multiplier of 1. A
    // stream-name regex: the engine serves prefix filters from its indexes, looking only at
    // the keys' events (docs/INDEXES.md, "Ordinary filters"); a regex looks at every event.
    let filter = SubscriptionFilter::on_stream_name()
        .regex("^wanted-")
        .max(4);
    let options = SubscribeToAllOptions::default()
        .position(StreamPosition::Start)
        .filter(filter);
    let mut subscription = client.subscribe_to_all(&options).await;
    expect_confirmation(&mut subscription).await;
    let mut checkpoints = Vec::new();
    loop {
        match next_message(&mut subscription, "filtered subscription").await {
            SubscriptionEvent::Checkpoint(position) => checkpoints.push(position),
            SubscriptionEvent::CaughtUp(_) => break,
            other => panic!("nothing matches the filter, got {other:?}"),
        }
    }
    let at = |index: usize| history[index].position;
    let mut expected: Vec<_> = (3..history.len()).step_by(4).map(at).collect();
    expected.push(at(history.len() - 1));
    assert_eq!(
        checkpoints, expected,
        "a checkpoint after every 4 events looked at, and one on catching up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_appends_with_the_rust_clients_deadline_are_written() {
    // The Rust client sends its deadline as a time since the epoch in the relative
    // `deadline` field: decades, so no deadline at all, as on the reference server.
    let server = Server::start();
    let client = server.client();
    let options = BatchAppendOptions::default().deadline(std::time::Duration::from_secs(10));
    let batch = within("open a batch append", client.batch_append(&options))
        .await
        .expect("batch append opens");
    let written = within(
        "batch append",
        batch.append_to_stream(
            "deadline-1",
            StreamState::NoStream,
            events_with_ids("Timely", &new_ids(3)),
        ),
    )
    .await
    .expect("the append is written");
    assert_eq!(written.current_revision(), Some(2));
}
