//! Shared helpers: a store with events in many streams, broker addresses, waiting.

#![allow(dead_code, reason = "each test binary uses part of the helpers")]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use strata_connectors::{ConnectorInfo, Connectors};
use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_engine::{Config, Store};

/// Longest wait for a connector to reach a state before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn nats_url() -> String {
    std::env::var("STRATA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

pub fn amqp_url() -> String {
    std::env::var("STRATA_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid_simple())
}

fn uuid_simple() -> String {
    strata_core::EventId::new_random()
        .to_string()
        .replace('-', "")[..12]
        .to_owned()
}

pub fn open_store(dir: &std::path::Path) -> Arc<Store> {
    Store::open(dir, Config::default()).unwrap()
}

/// Appends `total` events round-robin over `streams` streams `<category>-<n>`, in appends
/// of up to 100 events to one stream; returns how many each stream got.
pub async fn append_spread(
    store: &Store,
    category: &str,
    streams: usize,
    total: usize,
) -> HashMap<String, u64> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut written = 0;
    let mut turn = 0;
    while written < total {
        let name = format!("{category}-{}", turn % streams);
        let size = (total - written).min(1 + turn % 100);
        let stream = StreamName::new(&name).unwrap();
        let base = match store.stream_state(&stream).await.unwrap() {
            strata_core::StreamState::At(revision) => revision.0 + 1,
            _ => 0,
        };
        let events = (0..size)
            .map(|index| {
                ProposedEvent::json(
                    "Counted",
                    format!(r#"{{"stream":"{name}","n":{}}}"#, base + index as u64),
                )
                .with_metadata(r#"{"source":"test"}"#)
            })
            .collect();
        store
            .append(&stream, ExpectedRevision::Any, events)
            .await
            .unwrap();
        *counts.entry(name).or_default() += size as u64;
        written += size;
        turn += 1;
    }
    counts
}

/// Waits until `done` holds for the connector, failing with its last state otherwise.
pub async fn wait_for(
    connectors: &Connectors,
    id: &str,
    what: &str,
    done: impl Fn(&ConnectorInfo) -> bool,
) -> ConnectorInfo {
    wait_for_within(connectors, id, what, WAIT, done).await
}

/// [`wait_for`] with a wait of its own.
pub async fn wait_for_within(
    connectors: &Connectors,
    id: &str,
    what: &str,
    within: Duration,
    done: impl Fn(&ConnectorInfo) -> bool,
) -> ConnectorInfo {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let info = connectors.show(id).await.unwrap();
        if done(&info) {
            return info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "connector {id} never got to: {what}; last seen {info:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The position of the store's last event now.
pub async fn last_position(store: &Store) -> u64 {
    store.last_position().await.unwrap().unwrap().0
}

/// Checks every stream's revisions arrived as 0, 1, 2, ... in order (no gap, no duplicate)
/// and that the counts match.
pub fn assert_in_order(received: &[(String, u64)], expected: &HashMap<String, u64>) {
    let mut next: HashMap<&str, u64> = HashMap::new();
    for (stream, revision) in received {
        let want = next.entry(stream.as_str()).or_default();
        assert_eq!(
            *revision, *want,
            "stream {stream}: got revision {revision}, expected {want}"
        );
        *want += 1;
    }
    for (stream, count) in expected {
        assert_eq!(
            next.get(stream.as_str()).copied().unwrap_or(0),
            *count,
            "stream {stream} count"
        );
    }
    assert_eq!(next.len(), expected.len());
}

/// The position of the last event of `category` (system events written since, such as a
/// running connector's checkpoints, do not count).
pub async fn last_position_of(store: &Store, category: &str) -> u64 {
    let prefix = format!("{category}-");
    let slice = store
        .read_all(strata_core::ReadAllOptions::backwards().max_count(1_000))
        .await
        .unwrap();
    slice
        .events
        .iter()
        .find(|event| event.stream.as_str().starts_with(&prefix))
        .expect("an event of the category among the last 1,000")
        .position
        .0
}

/// A durable topic exchange `exchange` and an exclusive queue bound to it with
/// `routing_key`, declared before anything is published; the connection must be kept for
/// as long as the queue is read.
pub async fn bound_queue(
    exchange: &str,
    routing_key: &str,
) -> (lapin::Connection, lapin::Channel, lapin::Queue) {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let connection =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (connection, channel, queue)
}
