//! The `Operations` service through the official client's `operations::Client`: merge
//! indexes, start a scavenge and follow it in `$scavenges-<id>` as KurrentDB writes it,
//! the reference's answers for a run under way and an unknown id, the node calls, and
//! Shutdown ending the server.

use kurrentdb::operations::{Client as OperationsClient, OperationalOptions, ScavengeStatus};

use super::*;

fn operations(server: &Server) -> OperationsClient {
    let settings: kurrentdb::ClientSettings =
        format!("esdb://127.0.0.1:{}?tls=false", server.port())
            .parse()
            .expect("connection string parses");
    OperationsClient::new(settings).expect("client builds")
}

/// Event types and bodies of a stream, or none while it does not exist.
async fn stream_of(client: &Client, stream: &str) -> Vec<(String, Value)> {
    let mut read = match client
        .read_stream(stream, &ReadStreamOptions::default())
        .await
    {
        Ok(read) => read,
        Err(_) => return Vec::new(),
    };
    let mut events = Vec::new();
    while let Ok(Some(event)) = read.next().await {
        let recorded = event.get_original_event();
        let body = serde_json::from_slice(&recorded.data).unwrap_or(Value::Null);
        events.push((recorded.event_type.clone(), body));
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scavenges_and_node_operations_through_the_official_client() {
    // 40 MB: the deleted stream fills the first (32 MiB) segment of a test server.
    let mut server = Server::start();
    let client = server.client();
    let pad = "p".repeat(100_000);
    for _ in 0..40 {
        let events: Vec<EventData> = (0..10)
            .map(|n| EventData::json("Happened", &json!({ "n": n, "pad": pad })).unwrap())
            .collect();
        client
            .append_to_stream("doomed-1", &AppendToStreamOptions::default(), events)
            .await
            .expect("append");
    }
    client
        .delete_stream("doomed-1", &DeleteStreamOptions::default())
        .await
        .expect("delete");
    let operations = operations(&server);
    // An index file now covers the sealed segments, so they can be scavenged at once.
    operations
        .merge_indexes(&OperationalOptions::default())
        .await
        .expect("merge indexes");

    let started = operations
        .start_scavenge(1, 0, &OperationalOptions::default())
        .await
        .expect("start");
    assert_eq!(started.status(), ScavengeStatus::Started);
    let stream = format!("$scavenges-{}", started.id());
    let mut history = Vec::new();
    for _ in 0..1500 {
        history = stream_of(&client, &stream).await;
        if history
            .last()
            .is_some_and(|(event_type, _)| event_type == "$scavengeCompleted")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (first_type, first) = &history[0];
    assert_eq!(first_type, "$scavengeStarted");
    assert_eq!(first["scavengeId"], started.id());
    let (last_type, last) = history.last().expect("the run wrote its history");
    assert_eq!(last_type, "$scavengeCompleted", "{history:?}");
    assert_eq!(last["result"], "Success");
    if support::postgres_requested() {
        // PostgreSQL deletes rows (no segments, so no chunk events); a plain VACUUM makes
        // their space reusable without shrinking the files. `$all` showed the deleted
        // stream's 400 events; only its last one (its head) is left.
        let left = read_all(&client, &ReadAllOptions::default())
            .await
            .iter()
            .filter(|event| event.stream_id() == "doomed-1")
            .count();
        assert_eq!(left, 1, "{history:?}");
    } else {
        assert!(last["spaceSaved"].as_u64().unwrap() > 0, "{last}");
        assert!(
            history.iter().any(
                |(event_type, body)| event_type == "$scavengeChunksCompleted"
                    && body["wasScavenged"] == true
            ),
            "{history:?}"
        );
    }

    // The run is over: stopping it finds nothing.
    let stopped = operations
        .stop_scavenge(started.id(), &OperationalOptions::default())
        .await;
    assert!(stopped.is_err(), "{stopped:?}");

    operations
        .resign_node(&OperationalOptions::default())
        .await
        .expect("resign");
    operations
        .set_node_priority(3, &OperationalOptions::default())
        .await
        .expect("priority");
    // On PostgreSQL the resign gave up the leader lock: a single node takes it again
    // after its lease wait, and leader-only calls answer "not ready" until then.
    let mut restarted = operations
        .restart_persistent_subscriptions(&OperationalOptions::default())
        .await;
    for _ in 0..300 {
        if restarted.is_ok() || !support::postgres_requested() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        restarted = operations
            .restart_persistent_subscriptions(&OperationalOptions::default())
            .await;
    }
    restarted.expect("restart persistent subscriptions");
    operations
        .shutdown(&OperationalOptions::default())
        .await
        .expect("shutdown");
    let status = server.wait_for_exit();
    assert!(status.success(), "a Shutdown is a clean stop: {status:?}");
}
