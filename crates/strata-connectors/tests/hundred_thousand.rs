//! 100,000 events over 250 streams to the real JetStream and RabbitMQ at once: every event
//! arrives, in order per stream; on JetStream exactly once although the connector crashed
//! mid-run and re-sent its tail (`Nats-Msg-Id` deduplication).

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use lapin::options::BasicConsumeOptions;
use lapin::types::{AMQPValue, FieldTable};
use strata_connectors::{ConnectorDefinition, ConnectorInfo, Connectors};
use strata_core::EventStore;

use common::*;

const TOTAL: usize = 100_000;
const STREAMS: usize = 250;
/// Longest wait for 100,000 events to go through, on a loaded machine.
const LONG_WAIT: Duration = Duration::from_secs(300);

async fn wait_long(
    connectors: &Connectors,
    id: &str,
    what: &str,
    done: impl Fn(&ConnectorInfo) -> bool,
) -> ConnectorInfo {
    wait_for_within(connectors, id, what, LONG_WAIT, done).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_events_reach_jetstream_once_and_rabbit_mq_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let category = unique("bulk");
    let js_stream = unique("H");
    let exchange = unique("strata-bulk-");
    let expected = append_spread(&store, &category, STREAMS, TOTAL).await;
    let end = last_position(&store).await;

    // RabbitMQ's queue exists before anything is published.
    let (_connection, channel, queue) = bound_queue(&exchange, "#").await;

    let to_nats = ConnectorDefinition::from_json(&format!(
        r#"{{"id": "bulk-nats",
            "source": {{"kind": "category", "category": "{category}"}},
            "sink": {{"type": "nats", "url": "{url}", "subject": "{js_stream}.{{stream}}",
                      "create_stream": {{"name": "{js_stream}", "subjects": ["{js_stream}.>"]}}}},
            "settings": {{"batch_events_max": 1024, "checkpoint_interval_events": 1000000,
                          "checkpoint_interval_ms": 600000}}}}"#,
        url = nats_url()
    ))
    .unwrap();
    let to_rabbit = ConnectorDefinition::from_json(&format!(
        r#"{{"id": "bulk-rabbit",
            "source": {{"kind": "category", "category": "{category}"}},
            "sink": {{"type": "rabbit-mq", "url": "{url}", "exchange": "{exchange}",
                      "routing_key": "{{category}}.{{type}}"}},
            "settings": {{"batch_events_max": 1024}}}}"#,
        url = amqp_url()
    ))
    .unwrap();

    // JetStream's connector crashes with a third published and no checkpoint written.
    let crashing = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dyn_store: std::sync::Arc<dyn EventStore> = store.clone();
    let first = crashing
        .spawn(async move {
            let connectors = Connectors::open(dyn_store).await.unwrap();
            connectors.create(to_nats).await.unwrap();
            connectors
        })
        .await
        .unwrap();
    wait_long(&first, "bulk-nats", "a third published", |info| {
        info.counters.published >= (TOTAL / 3) as u64
    })
    .await;
    crashing.shutdown_background();
    drop(first);

    // Both run now: JetStream's resumes from the start (re-sending what it published),
    // RabbitMQ's starts.
    let connectors = Connectors::open(store.clone()).await.unwrap();
    connectors.create(to_rabbit).await.unwrap();
    let nats = wait_long(&connectors, "bulk-nats", "the end", |info| {
        info.position >= Some(end)
    })
    .await;
    let rabbit = wait_long(&connectors, "bulk-rabbit", "the end", |info| {
        info.position >= Some(end)
    })
    .await;
    connectors.shutdown().await;
    assert!(nats.counters.duplicates > 0, "{nats:#?}");
    assert_eq!(nats.counters.dead_lettered, 0, "{nats:#?}");
    assert_eq!(rabbit.counters.published, TOTAL as u64, "{rabbit:#?}");
    assert_eq!(rabbit.counters.dead_lettered, 0, "{rabbit:#?}");

    // JetStream: exactly 100,000 messages, in order per stream.
    let client = async_nats::connect(nats_url()).await.unwrap();
    let context = jetstream::new(client);
    let mut stream = context.get_stream(&js_stream).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages as usize, TOTAL);
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut received = Vec::with_capacity(TOTAL);
    while received.len() < TOTAL {
        let message = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("JetStream delivers every stored message")
            .unwrap()
            .unwrap();
        let headers = message.headers.as_ref().expect("headers");
        let get = |name: &str| headers.get(name).map(|value| value.as_str().to_owned());
        let stream_name = get("esdb-record-stream-id").unwrap();
        let revision: u64 = get("esdb-record-stream-revision").unwrap().parse().unwrap();
        received.push((stream_name, revision));
    }
    assert_in_order(&received, &expected);
    context.delete_stream(&js_stream).await.unwrap();

    // RabbitMQ: 100,000 confirmed messages, in order per stream.
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "bulk".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut received = Vec::with_capacity(TOTAL);
    while received.len() < TOTAL {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("RabbitMQ delivers every confirmed message")
            .unwrap()
            .unwrap();
        let headers = delivery.properties.headers().as_ref().unwrap().inner();
        let text = |name: &str| match headers.get(name) {
            Some(AMQPValue::LongString(value)) => value.to_string(),
            other => panic!("header {name}: {other:?}"),
        };
        let revision: u64 = text("esdb-record-stream-revision").parse().unwrap();
        received.push((text("esdb-record-stream-id"), revision));
    }
    assert_in_order(&received, &expected);
    channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await
        .unwrap();
}
