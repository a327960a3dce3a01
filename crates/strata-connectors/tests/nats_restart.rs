//! A JetStream server of the test's own (the `nats-server` binary, as CI installs it) is
//! killed mid-run and started again on the same port and store: the connector reports
//! `retrying` with the error, then catches up, nothing lost, nothing out of order.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use strata_connectors::{ConnectorDefinition, ConnectorState, Connectors};

use common::*;

/// A nats-server child process, killed when dropped.
struct NatsServer(Child);

impl NatsServer {
    fn start(port: u16, store_dir: &std::path::Path) -> Self {
        let binary =
            std::env::var("STRATA_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {binary} (install nats-server or set STRATA_TEST_NATS_SERVER): {error}")
            });
        Self(child)
    }

    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_until_up(url: &str) {
    for _ in 0..200 {
        if async_nats::connect(url).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nats-server at {url} never answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_means_retrying_then_catching_up() {
    let dir = tempfile::tempdir().unwrap();
    let nats_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let server = NatsServer::start(port, nats_dir.path());
    wait_until_up(&url).await;

    let store = open_store(dir.path());
    let category = unique("ship");
    let mut expected = append_spread(&store, &category, 20, 2_000).await;
    // Taken before create: the connector's own system events come after.
    let first_end = last_position(&store).await;
    let connectors = Connectors::open(store.clone()).await.unwrap();
    let definition = ConnectorDefinition::from_json(&format!(
        r#"{{"id": "restart",
            "source": {{"kind": "category", "category": "{category}"}},
            "sink": {{"type": "nats", "url": "{url}", "subject": "R.{{stream}}",
                      "ack_timeout_ms": 500,
                      "create_stream": {{"name": "R", "subjects": ["R.>"]}}}},
            "settings": {{"retry_initial_ms": 50, "retry_max_ms": 200}}}}"#
    ))
    .unwrap();
    connectors.create(definition).await.unwrap();
    wait_for(&connectors, "restart", "first events out", |info| {
        info.position >= Some(first_end)
    })
    .await;

    server.kill();
    // Appended while the broker is down: they wait, in order.
    for (stream, count) in append_spread(&store, &category, 20, 2_000).await {
        *expected.entry(stream).or_default() += count;
    }
    let end = last_position_of(&store, &category).await;
    let info = wait_for(&connectors, "restart", "retrying", |info| {
        info.state == ConnectorState::Retrying
    })
    .await;
    assert!(info.last_error.is_some(), "{info:#?}");
    assert!(info.position < Some(end));

    let _server = NatsServer::start(port, nats_dir.path());
    let info = wait_for(
        &connectors,
        "restart",
        "caught up after the restart",
        |info| info.position >= Some(end) && info.state == ConnectorState::Running,
    )
    .await;
    assert!(info.counters.retried > 0, "{info:#?}");
    connectors.shutdown().await;

    let context = jetstream::new(async_nats::connect(&url).await.unwrap());
    let mut stream = context.get_stream("R").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 4_000);
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut received = Vec::new();
    while received.len() < 4_000 {
        let message = tokio::time::timeout(WAIT, messages.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let headers = message.headers.as_ref().unwrap();
        received.push((
            headers
                .get("esdb-record-stream-id")
                .unwrap()
                .as_str()
                .to_owned(),
            headers
                .get("esdb-record-stream-revision")
                .unwrap()
                .as_str()
                .parse()
                .unwrap(),
        ));
    }
    assert_in_order(&received, &expected);
}
