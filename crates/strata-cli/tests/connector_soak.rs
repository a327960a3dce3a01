//! Connectors in a real `strata serve` under crashes and outages, publishing to NATS
//! JetStream:
//! - SIGKILLed mid-publish again and again, on the engine and on PostgreSQL (single
//!   node): every event arrives, in order per stream; exactly once with effectively-once
//!   mode; re-sends only within the documented bound otherwise.
//! - The broker stopped for 30 s mid-run: the connector says `retrying`, then catches up
//!   with nothing lost.

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use serde_json::{Value, json};
use support::{PostgresSchema, Server};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");
/// `checkpoint_interval_events` and `batch_events_max` of the connectors here: after a
/// crash at most their sum is sent again (docs/CONNECTORS.md, *Guarantees*).
const CHECKPOINT_EVENTS: u64 = 100;
const BATCH_EVENTS: u64 = 32;

fn nats_url() -> String {
    std::env::var("STRATA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn create(server: &Server, definition: &Value) {
    let output = Command::new(STRATA)
        .args([
            "connector",
            "create",
            "--definition",
            &definition.to_string(),
        ])
        .args(["--server", &server.url()])
        .output()
        .expect("strata runs");
    assert!(output.status.success(), "{output:?}");
}

fn show(server: &Server, id: &str) -> Value {
    let output = Command::new(STRATA)
        .args(["connector", "show", id, "--server", &server.url()])
        .output()
        .expect("strata runs");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn definition(id: &str, nats: &str, js: &str, category: &str, effectively_once: bool) -> Value {
    json!({
        "id": id,
        "source": {"kind": "category", "category": category},
        "sink": {"type": "nats", "url": nats, "subject": format!("{js}.{{stream}}"),
                 "effectively_once": effectively_once,
                 // A 1 s window: re-sends after a restart are mostly not dropped, so the
                 // at-least-once connector really shows its duplicates.
                 "create_stream": {"name": js, "subjects": [format!("{js}.>")],
                                   "duplicate_window_ms": if effectively_once { 120_000 } else { 1_000 }}},
        "settings": {"checkpoint_interval_events": CHECKPOINT_EVENTS,
                     "checkpoint_interval_ms": 60_000,
                     "batch_events_max": BATCH_EVENTS,
                     "retry_initial_ms": 50, "retry_max_ms": 1_000,
                     "publish_timeout_ms": 3_000}
    })
}

/// Appends `count` events to `stream` through the HTTP API.
async fn append(server: &Server, stream: &str, count: usize) {
    let url = format!("http://127.0.0.1:{}/v1/streams/{stream}", server.port());
    let events: Vec<Value> = (0..count)
        .map(|n| json!({"type": "Counted", "data": {"n": n}}))
        .collect();
    let answer = reqwest::Client::new()
        .post(url)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
}

async fn jetstream(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.unwrap())
}

async fn held(context: &jetstream::Context, name: &str) -> u64 {
    match context.get_stream(name).await {
        Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

/// Waits until JetStream stream `name` holds at least `count` messages and has stopped
/// growing for a while; returns every message as (Strata stream, revision) in order.
async fn settle(url: &str, name: &str, count: u64) -> Vec<(String, u64)> {
    let context = jetstream(url).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = (0, Instant::now());
    loop {
        let now = held(&context, name).await;
        if now != last.0 {
            last = (now, Instant::now());
        }
        // Past the count and quiet for 3 s (more than a checkpoint's worth of re-sends
        // would have arrived by then).
        if now >= count && last.1.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{now} of {count} messages in {name}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stream = context.get_stream(name).await.unwrap();
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut received = Vec::new();
    while (received.len() as u64) < last.0 {
        let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .expect("JetStream delivers every stored message")
            .unwrap()
            .unwrap();
        let headers = message.headers.as_ref().expect("headers");
        let get = |header: &str| headers.get(header).unwrap().as_str().to_owned();
        received.push((
            get("esdb-record-stream-id"),
            get("esdb-record-stream-revision").parse().unwrap(),
        ));
    }
    let _ = context.delete_stream(name).await;
    received
}

/// Checks at least once and order per stream: each stream's revisions, read in arrival
/// order, start at 0 and never jump forward; a step back (a re-send after a crash)
/// restarts from an earlier revision and continues in order. Returns the duplicates.
fn check_at_least_once(received: &[(String, u64)], expected: &HashMap<String, u64>) -> u64 {
    let mut next: HashMap<&str, u64> = HashMap::new();
    let mut duplicates = 0;
    for (stream, revision) in received {
        let want = next.entry(stream.as_str()).or_default();
        assert!(
            *revision <= *want,
            "{stream}: revision {revision} arrived before {want}"
        );
        if *revision < *want {
            duplicates += 1;
        } else {
            *want += 1;
        }
    }
    for (stream, count) in expected {
        assert_eq!(
            next.get(stream.as_str()).copied().unwrap_or(0),
            *count,
            "{stream}: events missing"
        );
    }
    assert_eq!(
        next.len(),
        expected.len(),
        "streams not appended to arrived"
    );
    duplicates
}

/// Appends in rounds, SIGKILLing the server while its connectors publish, `kills` times;
/// then checks what both JetStream streams hold.
fn kill_soak(mut server: Server, kills: usize, label: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tag = format!("{label}{}", std::process::id());
    let category = format!("soak{}", tag.to_lowercase());
    let (once, least) = (format!("ONCE{tag}"), format!("LEAST{tag}"));
    create(
        &server,
        &definition("exactly", &nats_url(), &once, &category, true),
    );
    create(
        &server,
        &definition("at-least", &nats_url(), &least, &category, false),
    );
    let streams = 8;
    let per_round = 150;
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut mid_publish = 0;
    let context = runtime.block_on(jetstream(&nats_url()));
    for round in 0..=kills {
        runtime.block_on(async {
            for s in 0..streams {
                let stream = format!("{category}-{s}");
                append(&server, &stream, per_round).await;
                *expected.entry(stream).or_default() += per_round as u64;
            }
        });
        if round == kills {
            break;
        }
        // Kill at once: the connectors are somewhere in this round (or done with it).
        let total: u64 = expected.values().sum();
        if runtime.block_on(held(&context, &least)) < total {
            mid_publish += 1;
        }
        server.kill_and_restart();
    }
    assert!(
        mid_publish > 0,
        "no kill came while events were still being published"
    );
    let total: u64 = expected.values().sum();
    let once_received = runtime.block_on(settle(&nats_url(), &once, total));
    assert_eq!(once_received.len() as u64, total, "exactly once");
    assert_eq!(check_at_least_once(&once_received, &expected), 0);
    let least_received = runtime.block_on(settle(&nats_url(), &least, total));
    let duplicates = check_at_least_once(&least_received, &expected);
    assert!(
        duplicates <= kills as u64 * (CHECKPOINT_EVENTS + BATCH_EVENTS),
        "{duplicates} re-sends over {kills} kills"
    );
    eprintln!(
        "{label}: {total} events, {kills} kills ({mid_publish} mid-publish), at-least-once \
         re-sends: {duplicates}, effectively-once: exact"
    );
}

#[test]
fn serve_killed_mid_publish_loses_nothing() {
    kill_soak(Server::start(), 8, "E");
}

#[test]
fn serve_on_postgres_killed_mid_publish_loses_nothing() {
    let schema = PostgresSchema::new();
    let server = Server::start_on_postgres(&schema);
    kill_soak(server, 3, "P");
    drop(schema);
}

/// A nats-server child process of this test, killed when dropped.
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
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until_up(url: &str) {
    for _ in 0..400 {
        if async_nats::connect(url).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nats-server at {url} never answered");
}

#[test]
fn a_30_second_broker_outage_is_retried_then_caught_up() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(port, nats_dir.path());
    runtime.block_on(wait_until_up(&url));
    let server = Server::start();
    let category = "outage";
    let js = format!("OUTAGE{}", std::process::id());
    create(
        &server,
        &definition("through-outage", &url, &js, category, false),
    );
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut append_round = |runtime: &tokio::runtime::Runtime| {
        runtime.block_on(async {
            for s in 0..5 {
                let stream = format!("{category}-{s}");
                append(&server, &stream, 200).await;
                *expected.entry(stream).or_default() += 200;
            }
        });
    };
    append_round(&runtime);
    drop(nats);
    let stopped = Instant::now();
    append_round(&runtime);
    // The connector says it is retrying, with the reason.
    let deadline = Instant::now() + Duration::from_secs(25);
    let retrying = loop {
        let shown = show(&server, "through-outage");
        if shown["state"] == "retrying" {
            break shown;
        }
        assert!(Instant::now() < deadline, "never retrying: {shown:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        retrying["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{retrying:#}"
    );
    append_round(&runtime);
    std::thread::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed()));
    assert_eq!(show(&server, "through-outage")["state"], "retrying");
    let _nats = NatsServer::start(port, nats_dir.path());
    runtime.block_on(wait_until_up(&url));
    let total: u64 = expected.values().sum();
    let received = runtime.block_on(settle(&url, &js, total));
    check_at_least_once(&received, &expected);
    let shown = show(&server, "through-outage");
    assert_eq!(shown["state"], "running", "{shown:#}");
    assert_eq!(shown["lag_events"], 0, "{shown:#}");
}
