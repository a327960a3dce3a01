//! Events/s published by a connector to NATS JetStream and to RabbitMQ (publisher
//! confirms on), beside the raw publish rate of the same client crate with the same
//! acknowledgement setting and the same window, in the same run; an HTTP webhook (a local
//! axum endpoint answering 200) beside raw `reqwest` posts of the same bodies and headers,
//! one event per request and 100 per request; then end-to-end latency (append → a NATS
//! subscriber receives) under a steady 1,000 events/s.
//!
//! ```text
//! CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo run -p strata-connectors --example bench -- [events]
//! ```
//! Brokers from STRATA_TEST_NATS_URL / STRATA_TEST_AMQP_URL (defaults 127.0.0.1).
//! STRATA_BENCH_PARTS picks parts (default `nats,rabbit,webhook,latency`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use futures::StreamExt as _;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use strata_connectors::{ConnectorDefinition, Connectors, event_headers, event_json};
use strata_core::{
    EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions, RecordedEvent, StreamName,
};

/// Events in flight at once, for the raw client and the connector alike.
const WINDOW: usize = 256;
const STREAMS: usize = 100;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .unwrap_or(20_000);
    let nats_url = env("STRATA_TEST_NATS_URL", "nats://127.0.0.1:4222");
    let amqp_url = env(
        "STRATA_TEST_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    );
    let dir = tempfile::tempdir().unwrap();
    let store = strata_engine::Store::open(dir.path(), strata_engine::Config::default()).unwrap();
    let recorded = fill(&store, events).await;
    let end = recorded.last().unwrap().position.0;
    println!("{events} events of ~200 B in {STREAMS} streams, window {WINDOW}");

    let parts = env("STRATA_BENCH_PARTS", "nats,rabbit,webhook,latency");
    let parts: Vec<&str> = parts.split(',').collect();
    // The machine is shared: alternate raw and connector runs and keep the medians.
    let rounds = 3;
    if parts.contains(&"nats") {
        nats_part(&store, end, &recorded, &nats_url, rounds).await;
    }
    if parts.contains(&"rabbit") {
        rabbit_part(&store, end, &recorded, &amqp_url, rounds).await;
    }
    if parts.contains(&"webhook") {
        webhook_part(&store, end, &recorded, rounds).await;
    }
    if parts.contains(&"latency") {
        latency(&store, &nats_url).await;
    }
}

async fn nats_part(
    store: &Arc<strata_engine::Store>,
    end: u64,
    recorded: &[RecordedEvent],
    nats_url: &str,
    rounds: usize,
) {
    let events = recorded.len();
    let (mut raw, mut connector) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        delete_js(nats_url, &["BENCHR", "BENCHC"]).await;
        raw.push(raw_nats(nats_url, recorded).await);
        connector.push(
            connector_rate(
                store,
                end,
                events,
                &format!(
                    r#"{{"id":"bench-nats-{round}","source":{{"kind":"category","category":"bench"}},
                        "sink":{{"type":"nats","url":"{nats_url}","subject":"BENCHC.{{stream}}",
                                "create_stream":{{"name":"BENCHC","subjects":["BENCHC.>"]}}}},
                        "settings":{{"batch_events_max":{WINDOW}}}}}"#
                ),
            )
            .await,
        );
    }
    delete_js(nats_url, &["BENCHR", "BENCHC"]).await;
    report(
        "NATS JetStream (acks, Nats-Msg-Id)",
        &mut raw,
        &mut connector,
    );
}

async fn rabbit_part(
    store: &Arc<strata_engine::Store>,
    end: u64,
    recorded: &[RecordedEvent],
    amqp_url: &str,
    rounds: usize,
) {
    let events = recorded.len();
    let (mut raw, mut connector) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        raw.push(raw_rabbit(amqp_url, recorded).await);
        connector.push(
            connector_rate(
                store,
                end,
                events,
                &format!(
                    r#"{{"id":"bench-rabbit-{round}","source":{{"kind":"category","category":"bench"}},
                        "sink":{{"type":"rabbit-mq","url":"{amqp_url}","exchange":"strata-bench",
                                "declare_exchange":"topic","routing_key":"{{stream}}","mandatory":false}},
                        "settings":{{"batch_events_max":{WINDOW}}}}}"#
                ),
            )
            .await,
        );
    }
    report(
        "RabbitMQ (publisher confirms, persistent)",
        &mut raw,
        &mut connector,
    );
}

/// A webhook on a local axum endpoint that answers 200 to every POST: the connector's HTTP
/// sink beside raw `reqwest` posts of the same bodies and headers, one request at a time
/// (as the sink sends them), for 1 and for 100 events per request.
async fn webhook_part(
    store: &Arc<strata_engine::Store>,
    end: u64,
    recorded: &[RecordedEvent],
    rounds: usize,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|_body: axum::body::Bytes| async { axum::http::StatusCode::OK }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let events = recorded.len();
    for per_request in [1, 100] {
        let (mut raw, mut connector) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            raw.push(raw_webhook(&url, recorded, per_request).await);
            connector.push(
                connector_rate(
                    store,
                    end,
                    events,
                    &format!(
                        r#"{{"id":"bench-hook-{per_request}-{round}","source":{{"kind":"category","category":"bench"}},
                            "sink":{{"type":"http","url":"{url}","events_per_request":{per_request}}},
                            "settings":{{"batch_events_max":{WINDOW}}}}}"#
                    ),
                )
                .await,
            );
        }
        report(
            &format!("HTTP webhook ({per_request} event(s) per request)"),
            &mut raw,
            &mut connector,
        );
    }
}

async fn raw_webhook(url: &str, events: &[RecordedEvent], per_request: usize) -> f64 {
    let client = reqwest::Client::new();
    let started = Instant::now();
    for chunk in events.chunks(per_request) {
        let mut request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        let body = match chunk {
            [event] => {
                for (name, value) in event_headers(event) {
                    request = request.header(name, value);
                }
                serde_json::to_vec(&event_json(event)).unwrap()
            }
            _ => serde_json::to_vec(&chunk.iter().map(event_json).collect::<Vec<_>>()).unwrap(),
        };
        let answer = request.body(body).send().await.unwrap();
        assert!(answer.status().is_success());
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

fn report(name: &str, raw: &mut [f64], connector: &mut [f64]) {
    let median = |rates: &mut [f64]| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (raw_median, connector_median) = (median(raw), median(connector));
    println!(
        "{name}: raw client {raw_median:.0} events/s, connector {connector_median:.0} events/s \
         ({:.0}% of raw; runs raw {raw:.0?}, connector {connector:.0?})",
        100.0 * connector_median / raw_median
    );
}

async fn fill(store: &strata_engine::Store, events: usize) -> Vec<RecordedEvent> {
    let per_append = 100;
    for start in (0..events).step_by(per_append) {
        let stream = StreamName::new(format!("bench-{}", (start / per_append) % STREAMS)).unwrap();
        let batch = (start..(start + per_append).min(events))
            .map(|n| {
                ProposedEvent::json(
                    "Measured",
                    format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(160)),
                )
            })
            .collect();
        store
            .append(&stream, ExpectedRevision::Any, batch)
            .await
            .unwrap();
    }
    let mut all = Vec::with_capacity(events);
    let mut options = ReadAllOptions::forwards().max_count(4_096);
    loop {
        let slice = store.read_all(options.clone()).await.unwrap();
        all.extend(slice.events.into_iter().filter(|e| !e.stream.is_system()));
        if slice.is_end {
            return all;
        }
        options = options.from_position(slice.next_position);
    }
}

async fn raw_nats(url: &str, events: &[RecordedEvent]) -> f64 {
    let client = async_nats::connect(url).await.unwrap();
    let context = jetstream::new(client);
    context
        .get_or_create_stream(stream::Config {
            name: "BENCHR".into(),
            subjects: vec!["BENCHR.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    for window in events.chunks(WINDOW) {
        let mut acks = Vec::with_capacity(window.len());
        for event in window {
            let mut headers = HeaderMap::new();
            for (name, value) in event_headers(event) {
                headers.insert(name, value.as_str());
            }
            let message = PublishMessage::build()
                .payload(event.data.clone())
                .headers(headers)
                .message_id(event.id.to_string());
            let subject = format!("BENCHR.{}", event.stream);
            acks.push(context.send_publish(subject, message).await.unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

async fn raw_rabbit(url: &str, events: &[RecordedEvent]) -> f64 {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
        .exchange_declare(
            "strata-bench".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    for window in events.chunks(WINDOW) {
        let mut confirms = Vec::with_capacity(window.len());
        for event in window {
            let mut headers = FieldTable::default();
            for (name, value) in event_headers(event) {
                headers.insert(
                    ShortString::from(name),
                    AMQPValue::LongString(LongString::from(value)),
                );
            }
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(ShortString::from(event.id.to_string()))
                .with_headers(headers);
            confirms.push(
                channel
                    .basic_publish(
                        "strata-bench".into(),
                        event.stream.as_str().into(),
                        BasicPublishOptions::default(),
                        &event.data,
                        properties,
                    )
                    .await
                    .unwrap(),
            );
        }
        for confirm in confirms {
            assert!(confirm.await.unwrap().is_ack());
        }
    }
    events.len() as f64 / started.elapsed().as_secs_f64()
}

/// Creates the connector on a fresh manager and times it from create to the last event.
async fn connector_rate(
    store: &Arc<strata_engine::Store>,
    end: u64,
    events: usize,
    definition: &str,
) -> f64 {
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let connectors = Connectors::open(dyn_store).await.unwrap();
    let definition = ConnectorDefinition::from_json(definition).unwrap();
    let id = definition.id.clone();
    let started = Instant::now();
    connectors.create(definition).await.unwrap();
    loop {
        let info = connectors.show(&id).await.unwrap();
        if info.position >= Some(end) {
            assert_eq!(info.counters.published as usize, events);
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    connectors.delete(&id).await.unwrap();
    rate
}

/// Appends 1,000 events/s for 5 s (10 events every 10 ms) with a connector following live;
/// a core NATS subscriber on the subjects measures append → receive.
async fn latency(store: &Arc<strata_engine::Store>, nats_url: &str) {
    let client = async_nats::connect(nats_url).await.unwrap();
    let mut subscriber = client.subscribe("BENCHL.>").await.unwrap();
    let dyn_store: Arc<dyn EventStore> = store.clone();
    let connectors = Connectors::open(dyn_store).await.unwrap();
    let definition = ConnectorDefinition::from_json(&format!(
        r#"{{"id":"bench-latency","source":{{"kind":"category","category":"live"}},
            "sink":{{"type":"nats","url":"{nats_url}","subject":"BENCHL.{{stream}}",
                    "create_stream":{{"name":"BENCHL","subjects":["BENCHL.>"]}}}},
            "settings":{{"start_from":"end"}}}}"#
    ))
    .unwrap();
    connectors.create(definition).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let total = 5_000;
    let receiver = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(total);
        while latencies.len() < total {
            let message = subscriber.next().await.unwrap();
            let sent: u128 = std::str::from_utf8(&message.payload)
                .unwrap()
                .trim_start_matches("{\"sent\":")
                .trim_end_matches('}')
                .parse()
                .unwrap();
            latencies.push(now_nanos() - sent);
        }
        latencies
    });
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    for tick in 0..total / 10 {
        ticker.tick().await;
        for n in 0..10 {
            let stream = StreamName::new(format!("live-{}", (tick * 10 + n) % STREAMS)).unwrap();
            let event = ProposedEvent::json("Live", format!(r#"{{"sent":{}}}"#, now_nanos()));
            store
                .append(&stream, ExpectedRevision::Any, vec![event])
                .await
                .unwrap();
        }
    }
    let mut latencies = receiver.await.unwrap();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1e6;
    println!(
        "latency append -> NATS subscriber at 1,000 events/s: p50 {:.2} ms, p99 {:.2} ms",
        at(0.5),
        at(0.99)
    );
    connectors.delete("bench-latency").await.unwrap();
    delete_js(nats_url, &["BENCHL"]).await;
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn delete_js(url: &str, names: &[&str]) {
    let context = jetstream::new(async_nats::connect(url).await.unwrap());
    for name in names {
        let _ = context.delete_stream(name).await;
    }
}
