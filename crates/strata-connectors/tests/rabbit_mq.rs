//! Against the real RabbitMQ (STRATA_TEST_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672):
//! confirmed, persistent, in order per stream, unroutable events dead-lettered.

mod common;

use futures::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::{AMQPValue, FieldTable};
use strata_connectors::{ConnectorDefinition, Connectors, dead_letter_stream};
use strata_core::{EventStore, ReadStreamOptions};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_in_order_with_its_headers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let category = unique("acct");
    let exchange = unique("strata-test-");
    let total = 5_000;
    let expected = append_spread(&store, &category, 25, total).await;
    let end = last_position(&store).await;

    // The consumer's queue exists before anything is published.
    // Only `Counted` events are routed: `Unroutable` ones come back and are dead-lettered.
    let (_connection, channel, queue) = bound_queue(&exchange, "*.Counted").await;
    let stray = strata_core::ProposedEvent::json("Unroutable", "{}");
    let stray_end = store
        .append(
            &strata_core::StreamName::new(format!("{category}-stray")).unwrap(),
            strata_core::ExpectedRevision::Any,
            vec![stray],
        )
        .await
        .unwrap()
        .position
        .0;

    let connectors = Connectors::open(store.clone()).await.unwrap();
    let id = "to-rabbit";
    let definition = ConnectorDefinition::from_json(&format!(
        r#"{{"id": "{id}",
            "source": {{"kind": "all", "filter": {{"target": "stream_name",
                                                 "prefixes": ["{category}-"]}}}},
            "sink": {{"type": "rabbit-mq", "url": "{url}", "exchange": "{exchange}",
                      "declare_exchange": "topic", "routing_key": "{{category}}.{{type}}"}}}}"#,
        url = amqp_url()
    ))
    .unwrap();
    let created = connectors.create(definition).await.unwrap();
    assert!(
        !created.definition.to_string().contains("guest:guest"),
        "{}",
        created.definition
    );
    assert!(stray_end > end);
    let info = wait_for(&connectors, id, "caught up", |info| {
        info.position >= Some(stray_end)
    })
    .await;
    assert_eq!(info.counters.dead_lettered, 1, "{info:#?}");
    connectors.shutdown().await;

    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut received = Vec::new();
    while received.len() < total {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("RabbitMQ delivers every confirmed message")
            .unwrap()
            .unwrap();
        let properties = &delivery.properties;
        assert_eq!(properties.delivery_mode(), &Some(2));
        let headers = properties.headers().as_ref().unwrap().inner();
        let text = |name: &str| match headers.get(name) {
            Some(AMQPValue::LongString(value)) => value.to_string(),
            other => panic!("header {name}: {other:?}"),
        };
        assert_eq!(
            properties.message_id().as_ref().unwrap().as_str(),
            text("esdb-record-id")
        );
        let stream = text("esdb-record-stream-id");
        let revision: u64 = text("esdb-record-stream-revision").parse().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
        assert_eq!(body["n"], revision);
        received.push((stream, revision));
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_in_order(&received, &expected);

    let letters = store
        .read_stream(&dead_letter_stream(id), ReadStreamOptions::forwards())
        .await
        .unwrap()
        .into_events();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_type, "Unroutable");
    channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await
        .unwrap();
}
