//! Transforms against the real brokers (NATS JetStream, RabbitMQ): the JavaScript function
//! reshapes each event (type, data, metadata), skips some, and a throw dead-letters the event
//! with the reason while the rest flows in order; a transform that does not compile is refused
//! at create and at update.

mod common;

use std::collections::HashMap;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::{AMQPValue, FieldTable};
use strata_connectors::{
    ConnectorDefinition, ConnectorState, Connectors, DEAD_LETTER_REASON_KEY, Error,
    dead_letter_stream,
};
use strata_core::{EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamName};

use common::*;

/// Renames every event `Shipped`, rewrites its data and metadata, skips every fifth
/// revision, and throws on a poisoned event.
const TRANSFORM: &str = r#"
function transform(e) {
  if (e.data.poison) throw new Error("poisoned event " + e.stream);
  if (e.data.n % 5 === 4) return null;
  return {
    ...e,
    type: "Shipped",
    data: { stream: e.data.stream, n: e.data.n, twice: e.data.n * 2 },
    metadata: { source: "transform", was: e.type },
  };
}
"#;

/// What the transform lets through: per stream, the revisions not skipped.
fn kept(expected: &HashMap<String, u64>) -> HashMap<String, Vec<u64>> {
    expected
        .iter()
        .map(|(stream, count)| {
            let revisions = (0..*count).filter(|n| n % 5 != 4).collect();
            (stream.clone(), revisions)
        })
        .collect()
}

fn assert_kept_in_order(received: &[(String, u64)], kept: &HashMap<String, Vec<u64>>) {
    let mut got: HashMap<&str, Vec<u64>> = HashMap::new();
    for (stream, revision) in received {
        got.entry(stream.as_str()).or_default().push(*revision);
    }
    assert_eq!(got.len(), kept.len(), "streams received");
    for (stream, revisions) in kept {
        assert_eq!(
            got.get(stream.as_str()),
            Some(revisions),
            "stream {stream}: revisions received in order"
        );
    }
}

async fn append_poison(store: &strata_engine::Store, category: &str) -> (String, u64) {
    let stream = format!("{category}-poison");
    let position = store
        .append(
            &StreamName::new(&stream).unwrap(),
            ExpectedRevision::Any,
            vec![ProposedEvent::json("Counted", r#"{"poison":true}"#)],
        )
        .await
        .unwrap()
        .position
        .0;
    (stream, position)
}

async fn assert_one_dead_letter(store: &strata_engine::Store, id: &str, stream: &str) {
    let letters = store
        .read_stream(&dead_letter_stream(id), ReadStreamOptions::forwards())
        .await
        .unwrap()
        .into_events();
    assert_eq!(letters.len(), 1);
    // The original event is parked, not the transformed one.
    assert_eq!(letters[0].event_type, "Counted");
    let metadata: serde_json::Value = serde_json::from_slice(&letters[0].metadata).unwrap();
    assert_eq!(metadata["$originalStream"], stream);
    let reason = metadata[DEAD_LETTER_REASON_KEY].as_str().unwrap();
    assert!(reason.contains("the transform failed"), "{reason}");
    assert!(
        reason.contains(&format!("poisoned event {stream}")),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_publishes_what_the_transform_returns_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let category = unique("order");
    let js_stream = unique("X");
    let expected = append_spread(&store, &category, 20, 3_000).await;
    let (poison_stream, _) = append_poison(&store, &category).await;
    let more = append_spread(&store, &category, 20, 1_000).await;
    let mut expected = expected;
    for (stream, count) in more {
        *expected.entry(stream).or_default() += count;
    }
    let end = last_position_of(&store, &category).await;
    let kept = kept(&expected);
    let total_kept: usize = kept.values().map(Vec::len).sum();

    let id = "transformed-to-nats";
    let mut definition = ConnectorDefinition::from_json(&format!(
        r#"{{"id": "{id}",
            "source": {{"kind": "category", "category": "{category}"}},
            "sink": {{"type": "nats", "url": "{url}",
                      "subject": "{js_stream}.{{category}}.{{type}}.{{stream}}",
                      "create_stream": {{"name": "{js_stream}", "subjects": ["{js_stream}.>"]}}}}}}"#,
        url = nats_url()
    ))
    .unwrap();
    definition.transform = Some(TRANSFORM.to_owned());
    let connectors = Connectors::open(store.clone()).await.unwrap();
    let created = connectors.create(definition).await.unwrap();
    assert_eq!(created.definition["transform"], TRANSFORM);
    let info = wait_for(&connectors, id, "caught up", |info| {
        info.position >= Some(end)
    })
    .await;
    assert_eq!(info.counters.dead_lettered, 1, "{info:#?}");
    assert_eq!(
        info.counters.skipped,
        4_000 - total_kept as u64,
        "{info:#?}"
    );
    assert_eq!(info.counters.published, total_kept as u64, "{info:#?}");
    assert_eq!(info.state, ConnectorState::Running);
    connectors.shutdown().await;

    // The original ids, for the dedup header.
    let originals: HashMap<(String, u64), String> = store
        .read_all(strata_core::ReadAllOptions::forwards())
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|event| {
            (
                (event.stream.as_str().to_owned(), event.revision.0),
                event.id.to_string(),
            )
        })
        .collect();
    let client = async_nats::connect(nats_url()).await.unwrap();
    let context = jetstream::new(client);
    let mut stream = context.get_stream(&js_stream).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages as usize,
        total_kept
    );
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut received = Vec::new();
    while received.len() < total_kept {
        let message = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("JetStream delivers every stored message")
            .unwrap()
            .unwrap();
        let headers = message.headers.as_ref().expect("headers");
        let get = |name: &str| headers.get(name).map(|value| value.as_str().to_owned());
        let stream_name = get("esdb-record-stream-id").unwrap();
        let revision: u64 = get("esdb-record-stream-revision").unwrap().parse().unwrap();
        // Id, stream and revision are the event's: deduplication still works.
        let id = get("Nats-Msg-Id").unwrap();
        assert_eq!(Some(&id), originals.get(&(stream_name.clone(), revision)));
        assert_eq!(get("esdb-record-id"), Some(id));
        assert_eq!(
            get("esdb-record-schema-subject").as_deref(),
            Some("Shipped")
        );
        assert_eq!(
            get("esdb-record-metadata").as_deref(),
            Some(r#"{"source":"transform","was":"Counted"}"#)
        );
        assert!(
            message.subject.as_str().contains(".Shipped."),
            "{}",
            message.subject
        );
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(body["n"], revision);
        assert_eq!(body["twice"], revision * 2);
        received.push((stream_name, revision));
    }
    assert_kept_in_order(&received, &kept);
    assert_one_dead_letter(&store, id, &poison_stream).await;
    context.delete_stream(&js_stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbit_mq_routes_by_the_transformed_type() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let category = unique("acct");
    let exchange = unique("strata-transform-");
    let expected = append_spread(&store, &category, 10, 2_000).await;
    let (poison_stream, end) = append_poison(&store, &category).await;
    let kept = kept(&expected);
    let total_kept: usize = kept.values().map(Vec::len).sum();

    // Only the transformed type is routed: an untransformed `Counted` would come back
    // unroutable and be dead-lettered.
    let (_connection, channel, queue) = bound_queue(&exchange, "*.Shipped").await;

    let id = "transformed-to-rabbit";
    let mut definition = ConnectorDefinition::from_json(&format!(
        r#"{{"id": "{id}",
            "source": {{"kind": "category", "category": "{category}"}},
            "sink": {{"type": "rabbit-mq", "url": "{url}", "exchange": "{exchange}",
                      "declare_exchange": "topic", "routing_key": "{{category}}.{{type}}"}}}}"#,
        url = amqp_url()
    ))
    .unwrap();
    definition.transform = Some(TRANSFORM.to_owned());
    let connectors = Connectors::open(store.clone()).await.unwrap();
    connectors.create(definition).await.unwrap();
    let info = wait_for(&connectors, id, "caught up", |info| {
        info.position >= Some(end)
    })
    .await;
    assert_eq!(info.counters.dead_lettered, 1, "{info:#?}");
    assert_eq!(info.counters.published, total_kept as u64, "{info:#?}");
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
    while received.len() < total_kept {
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
        assert_eq!(text("esdb-record-schema-subject"), "Shipped");
        assert_eq!(
            delivery.properties.message_id().as_ref().unwrap().as_str(),
            text("esdb-record-id")
        );
        let stream = text("esdb-record-stream-id");
        let revision: u64 = text("esdb-record-stream-revision").parse().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
        assert_eq!(body["twice"], revision * 2);
        received.push((stream, revision));
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_kept_in_order(&received, &kept);
    assert_one_dead_letter(&store, id, &poison_stream).await;
    channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_transform_that_does_not_compile_is_refused_at_create_and_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let connectors = Connectors::open(store.clone()).await.unwrap();
    let text = |transform: &str| {
        format!(
            r#"{{"id":"t","source":{{"kind":"all"}},
                "sink":{{"type":"nats","url":"{}","subject":"e.{{stream}}"}},
                "transform":{}}}"#,
            nats_url(),
            serde_json::Value::String(transform.into())
        )
    };
    for (source, needle) in [
        ("(e) => {", "SyntaxError"),
        ("const notAFunction = 1;", "function transform(event)"),
        ("for (;;) {}", "deadline"),
    ] {
        let error = ConnectorDefinition::from_json(&text(source)).unwrap_err();
        assert!(matches!(error, Error::InvalidDefinition { .. }), "{error}");
        assert!(
            error.to_string().contains("the transform does not compile"),
            "{error}"
        );
        assert!(error.to_string().contains(needle), "{needle}: {error}");
    }
    assert!(connectors.list().await.unwrap().is_empty());

    let definition = ConnectorDefinition::from_json(&text("(e) => e")).unwrap();
    connectors.create(definition).await.unwrap();
    let error = connectors
        .update_transform("t", Some("(e) => {".into()))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("the transform does not compile"),
        "{error}"
    );
    assert_eq!(
        connectors.show("t").await.unwrap().definition["transform"],
        "(e) => e"
    );
    connectors
        .update_transform("t", Some("(e) => null".into()))
        .await
        .unwrap();
    assert_eq!(
        connectors.show("t").await.unwrap().definition["transform"],
        "(e) => null"
    );
    connectors.update_transform("t", None).await.unwrap();
    assert!(connectors.show("t").await.unwrap().definition["transform"].is_null());
    connectors.shutdown().await;
}
