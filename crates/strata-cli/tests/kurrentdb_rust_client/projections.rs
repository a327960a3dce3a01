//! Projections through the official client's `ProjectionClient`: the lifecycle calls with
//! the reference's answers, and a continuous projection that ends with the same state and
//! emitted stream however often the server is SIGKILLed while it runs.

use kurrentdb::{
    ClientSettings, CreateProjectionOptions, DeleteProjectionOptions, GenericProjectionOptions,
    GetResultProjectionOptions, GetStateProjectionOptions, ProjectionClient,
};

use super::*;

const COUNTER: &str = "fromCategory('order').when({
    $init: function () { return { n: 0 }; },
    $any: function (s, e) { s.n++; emit('order_seen', 'Seen', { stream: e.streamId, at: e.sequenceNumber }); }
}).outputState()";

fn projections(server: &Server) -> ProjectionClient {
    let settings: ClientSettings = format!("esdb://127.0.0.1:{}?tls=false", server.port())
        .parse()
        .expect("connection string parses");
    ProjectionClient::new(settings).expect("client builds")
}

/// `google.protobuf.Value` carries numbers as doubles (as the reference's answers do).
#[derive(serde::Deserialize, Debug, PartialEq)]
struct Count {
    n: f64,
}

/// Waits (bounded) until the projection's state counts `expected` events.
async fn state_reaches(client: &ProjectionClient, name: &str, expected: u64) -> Count {
    for _ in 0..2_000 {
        let state = within(
            "projection state",
            client.get_state::<_, Count>(name, &GetStateProjectionOptions::default()),
        )
        .await
        .expect("state answers");
        if let Ok(count) = state
            && count.n == expected as f64
        {
            return count;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let state = client
        .get_state::<_, Value>(name, &GetStateProjectionOptions::default())
        .await;
    let status = client
        .get_status(name, &GenericProjectionOptions::default())
        .await;
    panic!("{name} did not count {expected} events: state {state:?}, status {status:?}");
}

#[tokio::test]
async fn projection_lifecycle_through_the_official_client() {
    let server = Server::start();
    let client = server.client();
    append_new(&client, "order-1", StreamState::Any, 2).await;
    let projections = projections(&server);
    let options = CreateProjectionOptions::default()
        .emit(true)
        .track_emitted_streams(true);
    projections
        .create("counter", COUNTER.to_owned(), &options)
        .await
        .expect("create");
    state_reaches(&projections, "counter", 2).await;
    let result: Count = projections
        .get_result("counter", &GetResultProjectionOptions::default())
        .await
        .expect("result answers")
        .expect("result is a count");
    assert_eq!(result, Count { n: 2.0 });
    let status = projections
        .get_status("counter", &GenericProjectionOptions::default())
        .await
        .expect("status")
        .expect("the projection is listed");
    assert_eq!(status.status, "Running");
    // `/metrics` shows it under KurrentDB's projection metrics.
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", server.port()))
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics body");
    for line in [
        "kurrentdb_projection_running{projection=\"counter\"} 1",
        "kurrentdb_projection_status{projection=\"counter\",status=\"Running\"} 1",
        "kurrentdb_projection_events_processed_after_restart_total{projection=\"counter\"} ",
        "kurrentdb_projection_progress{projection=\"counter\"} ",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    let delete = DeleteProjectionOptions::default()
        .delete_emitted_streams(true)
        .delete_state_stream(true)
        .delete_checkpoint_stream(true);
    assert!(
        projections.delete("counter", &delete).await.is_err(),
        "deleting a running projection fails"
    );
    projections
        .disable("counter", &GenericProjectionOptions::default())
        .await
        .expect("disable");
    projections
        .delete("counter", &delete)
        .await
        .expect("delete");
    let again = projections.delete("counter", &delete).await;
    assert!(matches!(again, Err(Error::ResourceNotFound)), "{again:?}");
    // The Rust client sends `track_emitted_streams` in field 2 of `Continuous`, which the
    // reference's contract (and so Strata's) reads as `emit_enabled`: tracking stays off, so
    // `delete_emitted_streams` has no list to delete, on KurrentDB as here.
    let seen = read_stream(&client, "order_seen", &ReadStreamOptions::default()).await;
    assert_eq!(seen.len(), 2, "untracked emitted streams stay");
    let checkpoint = try_read_stream(
        &client,
        "$projections-counter-checkpoint",
        &ReadStreamOptions::default(),
    )
    .await;
    assert!(
        matches!(checkpoint, Err(Error::ResourceNotFound)),
        "checkpoint stream deleted: {checkpoint:?}"
    );
}

#[tokio::test]
async fn sigkilled_projection_ends_as_an_uninterrupted_run() {
    let mut server = Server::start();
    let projections_client = projections(&server);
    let options = CreateProjectionOptions::default()
        .emit(true)
        .track_emitted_streams(true);
    projections_client
        .create("counter", COUNTER.to_owned(), &options)
        .await
        .expect("create");
    let mut written = 0_u64;
    for round in 0..4 {
        let client = server.client();
        for stream in 0..5 {
            append_new(
                &client,
                &format!("order-{round}{stream}"),
                StreamState::Any,
                40,
            )
            .await;
            written += 40;
        }
        server.kill_and_restart();
    }
    let client = server.client();
    let projections_client = projections(&server);
    state_reaches(&projections_client, "counter", written).await;
    let seen = read_stream(&client, "order_seen", &ReadStreamOptions::default()).await;
    assert_eq!(
        seen.len() as u64,
        written,
        "one emitted event per source event"
    );
    let distinct: HashSet<(String, u64)> = seen
        .iter()
        .map(|event| {
            let body: Value = event.as_json().expect("json");
            (
                body["stream"].as_str().unwrap_or_default().to_owned(),
                body["at"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    assert_eq!(
        distinct.len() as u64,
        written,
        "no emitted event is duplicated"
    );
}
