//! Against the real NATS JetStream server (STRATA_TEST_NATS_URL, default
//! nats://127.0.0.1:4222): order per stream, effectively once across a crash, dead letters.

mod common;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use strata_connectors::{
    ConnectorDefinition, ConnectorState, Connectors, DEAD_LETTER_REASON_KEY, dead_letter_stream,
};
use strata_core::{EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamName};

use common::*;

fn definition(
    id: &str,
    category: &str,
    js_stream: &str,
    extra_settings: &str,
) -> ConnectorDefinition {
    definition_with(id, category, js_stream, extra_settings, false)
}

fn definition_with(
    id: &str,
    category: &str,
    js_stream: &str,
    extra_settings: &str,
    effectively_once: bool,
) -> ConnectorDefinition {
    // Effectively once must not lean on the duplicate window: make it tiny then.
    let window_ms = if effectively_once { 100 } else { 120_000 };
    let text = format!(
        r#"{{"id": "{id}",
            "source": {{"kind": "category", "category": "{category}"}},
            "sink": {{"type": "nats", "url": "{url}",
                      "subject": "{js_stream}.{{category}}.{{stream}}",
                      "effectively_once": {effectively_once},
                      "create_stream": {{"name": "{js_stream}", "subjects": ["{js_stream}.>"],
                                         "max_message_bytes": 2048,
                                         "duplicate_window_ms": {window_ms}}}}},
            "settings": {{{extra_settings}}}}}"#,
        url = nats_url()
    );
    ConnectorDefinition::from_json(&text).unwrap()
}

/// Every message in JetStream stream `name`, as (Strata stream, revision) in stream order,
/// checking the headers on the way.
async fn read_back(name: &str, expected: usize) -> Vec<(String, u64)> {
    let client = async_nats::connect(nats_url()).await.unwrap();
    let context = jetstream::new(client);
    let mut stream = context.get_stream(name).await.unwrap();
    let stored = stream.info().await.unwrap().state.messages;
    assert_eq!(
        stored as usize, expected,
        "messages in JetStream stream {name}"
    );
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut received = Vec::new();
    while received.len() < expected {
        let message = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("JetStream delivers every stored message")
            .unwrap()
            .unwrap();
        let headers = message.headers.as_ref().expect("headers");
        let get = |name: &str| headers.get(name).map(|value| value.as_str().to_owned());
        let stream_name = get("esdb-record-stream-id").expect("stream header");
        let revision: u64 = get("esdb-record-stream-revision").unwrap().parse().unwrap();
        assert_eq!(get("Nats-Msg-Id"), get("esdb-record-id"));
        assert_eq!(
            get("esdb-record-metadata").as_deref(),
            Some(r#"{"source":"test"}"#)
        );
        assert_eq!(
            get("esdb-record-schema-subject").as_deref(),
            Some("Counted")
        );
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(body["stream"], stream_name.as_str());
        assert_eq!(body["n"], revision);
        assert!(
            message
                .subject
                .as_str()
                .ends_with(&format!(".{stream_name}")),
            "{}",
            message.subject
        );
        received.push((stream_name, revision));
    }
    received
}

async fn delete_js_stream(name: &str) {
    let client = async_nats::connect(nats_url()).await.unwrap();
    jetstream::new(client).delete_stream(name).await.unwrap();
}

/// Crash the connector mid-publish (its runtime is dropped with nothing written), restart
/// it from its checkpoint: every event is in JetStream once, in order per stream, and the
/// re-sent ones were recognised as duplicates by `Nats-Msg-Id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_in_order_across_a_crash() {
    crash_and_resume(false).await;
}

/// The same with `Nats-Expected-Last-Subject-Sequence` and a 100 ms duplicate window (the least JetStream takes) that
/// has long passed at the restart: the subjects' last messages alone prevent duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effectively_once_needs_no_duplicate_window() {
    crash_and_resume(true).await;
}

async fn crash_and_resume(effectively_once: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let category = unique("order");
    let js_stream = unique("T");
    let total = 10_000;
    let expected = append_spread(&store, &category, 40, total).await;
    let end = last_position(&store).await;
    let id = "to-nats";
    // Rare checkpoints, so a crash leaves many published events after the last one.
    let definition = definition_with(
        id,
        &category,
        &js_stream,
        r#""checkpoint_interval_events": 100000, "checkpoint_interval_ms": 600000,
           "batch_events_max": 64"#,
        effectively_once,
    );

    let crashing = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dyn_store: std::sync::Arc<dyn EventStore> = store.clone();
    let connectors = crashing
        .spawn(async move {
            let connectors = Connectors::open(dyn_store).await.unwrap();
            connectors.create(definition).await.unwrap();
            connectors
        })
        .await
        .unwrap();
    wait_for(&connectors, id, "2,000 published", |info| {
        info.counters.published >= 2_000
    })
    .await;
    // The crash: every task of the connector runtime vanishes mid-publish.
    crashing.shutdown_background();
    drop(connectors);
    if effectively_once {
        // Past the duplicate window: `Nats-Msg-Id` no longer catches re-sends.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    let connectors = Connectors::open(store.clone()).await.unwrap();
    let info = wait_for(&connectors, id, "caught up after the restart", |info| {
        info.position >= Some(end)
    })
    .await;
    assert!(
        info.counters.duplicates > 0,
        "the restart re-sent events after the checkpoint: {info:#?}"
    );
    assert_eq!(info.counters.dead_lettered, 0);
    connectors.shutdown().await;

    let received = read_back(&js_stream, total).await;
    assert_in_order(&received, &expected);
    delete_js_stream(&js_stream).await;
}

/// An event over the JetStream stream's size limit is parked with the reason; the rest
/// flows, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_event_is_dead_lettered_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let category = unique("cart");
    let js_stream = unique("D");
    let mut expected = append_spread(&store, &category, 10, 2_000).await;
    let big_stream = format!("{category}-big");
    let big = ProposedEvent::json("Counted", format!(r#"{{"pad":"{}"}}"#, "x".repeat(4_096)));
    let big_id = big.id;
    store
        .append(
            &StreamName::new(&big_stream).unwrap(),
            ExpectedRevision::Any,
            vec![big],
        )
        .await
        .unwrap();
    let more = append_spread(&store, &category, 10, 1_000).await;
    for (stream, count) in more {
        *expected.entry(stream).or_default() += count;
    }
    let end = last_position(&store).await;

    let connectors = Connectors::open(store.clone()).await.unwrap();
    let id = "with-dead-letters";
    connectors
        .create(definition(id, &category, &js_stream, ""))
        .await
        .unwrap();
    let info = wait_for(&connectors, id, "caught up", |info| {
        info.position >= Some(end)
    })
    .await;
    assert_eq!(info.counters.dead_lettered, 1, "{info:#?}");
    assert_eq!(info.state, ConnectorState::Running);
    connectors.shutdown().await;

    let letters = store
        .read_stream(&dead_letter_stream(id), ReadStreamOptions::forwards())
        .await
        .unwrap()
        .into_events();
    assert_eq!(letters.len(), 1);
    let metadata: serde_json::Value = serde_json::from_slice(&letters[0].metadata).unwrap();
    assert_eq!(metadata["$originalStream"], big_stream.as_str());
    assert_eq!(metadata["$originalId"], big_id.to_string());
    let reason = metadata[DEAD_LETTER_REASON_KEY].as_str().unwrap();
    assert!(
        reason.contains("maximum") || reason.contains("size"),
        "{reason}"
    );

    let received = read_back(&js_stream, 3_000).await;
    assert_in_order(&received, &expected);
    delete_js_stream(&js_stream).await;
}

#[tokio::test]
async fn bad_settings_fail_at_create_with_the_reason_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let connectors = Connectors::open(store.clone()).await.unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            r#"{"id":"a","source":{"kind":"all"},"sink":{"type":"kafka","url":"kafka://x"}}"#.into(),
            "unknown variant `kafka`",
        ),
        (
            format!(
                r#"{{"id":"b","source":{{"kind":"all"}},"sink":{{"type":"nats","url":"{}","subject":"e.{{strem}}"}}}}"#,
                nats_url()
            ),
            "unknown placeholder {strem}",
        ),
        (
            r#"{"id":"c","source":{"kind":"all"},"sink":{"type":"nats","url":"nats://127.0.0.1:1","subject":"e.{stream}"}}"#.into(),
            "cannot connect to NATS",
        ),
        (
            r#"{"id":"d","source":{"kind":"all"},"sink":{"type":"rabbit-mq","url":"amqp://guest:guest@127.0.0.1:1/%2f","routing_key":"{stream}"}}"#.into(),
            "cannot connect to RabbitMQ",
        ),
        (
            r#"{"id":"e","source":{"kind":"all"},"sink":{"type":"http","url":"http://127.0.0.1:1/hook"}}"#.into(),
            "cannot reach http://127.0.0.1:1",
        ),
    ];
    for (text, needle) in cases {
        let error = match ConnectorDefinition::from_json(&text) {
            Err(error) => error,
            Ok(definition) => connectors.create(definition).await.unwrap_err(),
        };
        assert!(error.to_string().contains(needle), "{needle}: {error}");
        assert!(!error.to_string().contains("guest:guest"), "{error}");
    }
    assert!(connectors.list().await.unwrap().is_empty());
    let stored = store
        .read_stream(
            &strata_connectors::definitions_stream(),
            ReadStreamOptions::forwards(),
        )
        .await
        .unwrap()
        .into_events();
    assert!(stored.is_empty());
}
