//! Several `strata serve --store postgres://...` processes on one schema, driven by the
//! official Rust client: every `$all` subscriber sees every event once, in one order; a
//! server killed mid-append loses no acknowledged event. Needs PostgreSQL on
//! `STRATA_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use kurrentdb::{
    AppendToStreamOptions, Client, EventData, ReadAllOptions, StreamPosition,
    SubscribeToAllOptions, SubscriptionEvent,
};
use support::{PostgresSchema, Server, within};
use uuid::Uuid;

const SERVERS: usize = 3;
const WRITERS_PER_SERVER: usize = 3;
const APPENDS_PER_WRITER: usize = 20;
const TEST_STREAM_PREFIX: &str = "node-";

fn event(n: usize, id: Uuid) -> EventData {
    EventData::json("Written", &serde_json::json!({ "n": n }))
        .expect("json payload")
        .id(id)
}

/// `(commit position, id)` of the next `count` events of the test streams.
async fn collect_all(client: Client, count: usize) -> Vec<(u64, Uuid)> {
    let options = SubscribeToAllOptions::default().position(StreamPosition::Start);
    let mut subscription = client.subscribe_to_all(&options).await;
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let message = within(
            "the next $all message",
            subscription.next_subscription_event(),
        )
        .await
        .unwrap_or_else(|error| panic!("the subscription fails: {error:?}"));
        if let SubscriptionEvent::EventAppeared(resolved) = message {
            let event = resolved.event.expect("an event");
            if event.stream_id().starts_with(TEST_STREAM_PREFIX) {
                seen.push((event.position.commit, event.id));
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_three_servers_see_every_event_once_in_one_order() {
    let schema = PostgresSchema::new();
    let servers: Vec<Server> = (0..SERVERS)
        .map(|_| Server::start_on_postgres(&schema))
        .collect();
    let total = SERVERS * WRITERS_PER_SERVER * APPENDS_PER_WRITER;
    let subscribers: Vec<_> = servers
        .iter()
        .map(|server| tokio::spawn(collect_all(server.client(), total)))
        .collect();
    let mut writers = Vec::new();
    for (server_index, server) in servers.iter().enumerate() {
        for writer in 0..WRITERS_PER_SERVER {
            let client = server.client();
            writers.push(tokio::spawn(async move {
                let stream = format!("{TEST_STREAM_PREFIX}{server_index}-{writer}");
                for n in 0..APPENDS_PER_WRITER {
                    within(
                        "an append",
                        client.append_to_stream(
                            stream.as_str(),
                            &AppendToStreamOptions::default(),
                            event(n, Uuid::new_v4()),
                        ),
                    )
                    .await
                    .unwrap_or_else(|error| panic!("append to {stream}: {error:?}"));
                }
            }));
        }
    }
    for writer in writers {
        writer.await.expect("the writer finishes");
    }
    let mut orders = Vec::new();
    for subscriber in subscribers {
        orders.push(subscriber.await.expect("the subscriber finishes"));
    }
    let distinct: HashSet<Uuid> = orders[0].iter().map(|(_, id)| *id).collect();
    assert_eq!(distinct.len(), total, "every event exactly once");
    for pair in orders[0].windows(2) {
        assert!(pair[0].0 < pair[1].0, "positions increase: {pair:?}");
    }
    for (index, order) in orders.iter().enumerate().skip(1) {
        assert_eq!(order, &orders[0], "server {index} delivers the same order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_append_loses_no_acknowledged_event() {
    const WRITERS: usize = 4;
    const ACKNOWLEDGED_BEFORE_KILL: usize = 100;
    let schema = PostgresSchema::new();
    let mut server = Server::start_on_postgres(&schema);
    let acknowledged = Arc::new(Mutex::new(Vec::<Uuid>::new()));
    let (enough, mut enough_reached) = tokio::sync::mpsc::channel::<()>(1);
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let client = server.client();
        let acknowledged = acknowledged.clone();
        let enough = enough.clone();
        writers.push(tokio::spawn(async move {
            let stream = format!("{TEST_STREAM_PREFIX}killed-{writer}");
            for n in 0.. {
                let id = Uuid::new_v4();
                let appended = client
                    .append_to_stream(
                        stream.as_str(),
                        &AppendToStreamOptions::default(),
                        event(n, id),
                    )
                    .await;
                if appended.is_err() {
                    return;
                }
                let mut ids = acknowledged.lock().expect("not poisoned");
                ids.push(id);
                if ids.len() >= ACKNOWLEDGED_BEFORE_KILL {
                    let _ = enough.try_send(());
                }
            }
        }));
    }
    drop(enough);
    within("enough acknowledged appends", enough_reached.recv()).await;
    server.kill();
    for writer in writers {
        within("a writer to notice the kill", writer)
            .await
            .expect("the writer task ends");
    }
    let acknowledged = acknowledged.lock().expect("not poisoned").clone();
    let restarted = Server::start_on_postgres(&schema);
    let client = restarted.client();
    let options = ReadAllOptions::default()
        .position(StreamPosition::Start)
        .max_count(100_000);
    let stored: Vec<(u64, Uuid)> = within("read $all", async {
        let mut reader = client.read_all(&options).await?;
        let mut events = Vec::new();
        while let Some(resolved) = reader.next().await? {
            let event = resolved.event.expect("an event");
            events.push((event.position.commit, event.id));
        }
        Ok::<_, kurrentdb::Error>(events)
    })
    .await
    .expect("$all reads after the restart");
    let stored_ids: HashSet<Uuid> = stored.iter().map(|(_, id)| *id).collect();
    assert_eq!(stored_ids.len(), stored.len(), "no event is stored twice");
    for id in &acknowledged {
        assert!(stored_ids.contains(id), "acknowledged event {id} was lost");
    }
    for pair in stored.windows(2) {
        assert!(pair[0].0 < pair[1].0, "positions increase: {pair:?}");
    }
}

#[test]
fn bench_on_postgres_reports_every_figure() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bench", "--store", &support::postgres_url(), "--json"])
        .args([
            "--events-single",
            "200",
            "--events-batched",
            "2000",
            "--streams",
            "50",
        ])
        .output()
        .expect("strata bench runs");
    assert!(
        output.status.success(),
        "strata bench --store failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    for figure in [
        "raw_single_row_inserts_per_sec",
        "raw_batch_insert_rows_per_sec",
        "strata_single_appends_per_sec",
        "strata_single_appends_without_group_commit_per_sec",
        "strata_batched_events_per_sec",
    ] {
        let value = report[figure].as_f64().unwrap_or(0.0);
        assert!(value > 0.0, "{figure} is {value} in {report}");
    }
}

#[test]
fn serve_on_an_unreachable_database_says_so_and_exits() {
    // Port 1 on loopback: nothing listens there.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--insecure", "--port", "0"])
        .args(["--store", "postgres://postgres@127.0.0.1:1/test"])
        .output()
        .expect("strata serve runs");
    assert_eq!(output.status.code(), Some(1), "an operational error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to PostgreSQL at 127.0.0.1:1/test"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_both_a_store_url_and_a_data_directory() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--insecure", "--data-dir", "/nonexistent/strata"])
        .args(["--store", "postgres://postgres@127.0.0.1/test"])
        .output()
        .expect("strata serve runs");
    assert_eq!(output.status.code(), Some(2), "a usage error");
}
