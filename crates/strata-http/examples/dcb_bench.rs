//! Conditional (DCB) appends of one event per request from 1 and 64 clients, embedded and
//! over HTTP, beside plain single-stream appends in the same run (the baseline). Each
//! client appends to its own stream with its own tag and decides at the position of its
//! previous append, so conditions hold and nothing conflicts (the shape of UmaDB's
//! published figures); every conditional append still checks its query in the writer.
//!
//! `cargo run --release -p strata-http --example dcb_bench -- [seconds per run]`

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use strata_core::{
    AppendCondition, AppendPart, EventStore, ExpectedRevision, Position, ProposedEvent, Query,
    QueryItem, StreamName,
};
use strata_engine::{Config, Store};
use strata_server::{ServeConfig, Server};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Plain,
    Conditional,
}

fn event(tag: &str) -> ProposedEvent {
    ProposedEvent::json("Claimed", r#"{"n":1}"#)
        .with_tags([tag])
        .expect("a valid tag")
}

async fn embedded_client(
    store: Arc<Store>,
    client: usize,
    kind: Kind,
    stop: Arc<AtomicBool>,
) -> u64 {
    let stream = StreamName::new(format!("bench-{client}")).expect("stream");
    let tag = format!("client:{client}");
    let query = Query::new([QueryItem::new(Vec::<String>::new(), [tag.clone()])]);
    let mut after: Option<Position> = None;
    let mut count = 0;
    while !stop.load(Ordering::Relaxed) {
        match kind {
            Kind::Plain => {
                store
                    .append(&stream, ExpectedRevision::Any, vec![event(&tag)])
                    .await
                    .expect("append");
            }
            Kind::Conditional => {
                let appended = store
                    .append_conditional(
                        vec![AppendPart::write(
                            stream.clone(),
                            ExpectedRevision::Any,
                            vec![event(&tag)],
                        )],
                        AppendCondition::new(query.clone(), after),
                    )
                    .await
                    .expect("conditional append");
                after = Some(appended.position);
            }
        }
        count += 1;
    }
    count
}

async fn http_client(
    http: reqwest::Client,
    base: String,
    client: usize,
    kind: Kind,
    stop: Arc<AtomicBool>,
) -> u64 {
    let tag = format!("client:{client}");
    let mut after: Option<u64> = None;
    let mut count = 0;
    while !stop.load(Ordering::Relaxed) {
        let events = json!([{"type": "Claimed", "data": {"n": 1}, "tags": [tag]}]);
        match kind {
            Kind::Plain => {
                let answer = http
                    .post(format!("{base}/v1/streams/bench-{client}"))
                    .json(&json!({"events": events}))
                    .send()
                    .await
                    .expect("request");
                assert!(answer.status().is_success(), "{}", answer.status());
            }
            Kind::Conditional => {
                let answer = http
                    .post(format!("{base}/v1/dcb/append"))
                    .json(&json!({
                        "query": {"items": [{"tags": [tag]}]},
                        "after": after,
                        "appends": [{"stream": format!("bench-{client}"), "events": events}],
                    }))
                    .send()
                    .await
                    .expect("request");
                assert!(answer.status().is_success(), "{}", answer.status());
                let body: serde_json::Value = answer.json().await.expect("json");
                after = body["position"].as_u64();
            }
        }
        count += 1;
    }
    count
}

/// Runs `clients` for `seconds`; returns events per second.
async fn run(over_http: bool, clients: usize, kind: Kind, seconds: u64) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), Config::default()).expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    let mut server_stop = None;
    let base = if over_http {
        let server = Server::bind(&ServeConfig {
            bind: vec![Ipv4Addr::LOCALHOST.into()],
            port: 0,
            ..ServeConfig::default()
        })
        .await
        .expect("bind");
        let address = server.local_addrs()[0];
        let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(Arc::clone(&store), async {
            let _ = stopped.await;
        }));
        server_stop = Some(stop_server);
        format!("http://{address}")
    } else {
        String::new()
    };
    let http = reqwest::Client::new();
    let total = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let stop = Arc::clone(&stop);
        let total = Arc::clone(&total);
        let store = Arc::clone(&store);
        let http = http.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let count = if over_http {
                http_client(http, base, client, kind, stop).await
            } else {
                embedded_client(store, client, kind, stop).await
            };
            total.fetch_add(count, Ordering::Relaxed);
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client");
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(server_stop);
    store.close();
    total.load(Ordering::Relaxed) as f64 / elapsed
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map_or(5, |arg| arg.parse().expect("seconds"));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("cores: {cores}, {seconds} s per run, durability fsync (Config::default())");
    println!(
        "| front end | clients | plain appends ev/s | conditional appends ev/s | conditional ev/s per core |"
    );
    println!("|---|---|---|---|---|");
    for over_http in [false, true] {
        for clients in [1, 64] {
            let plain = run(over_http, clients, Kind::Plain, seconds).await;
            let conditional = run(over_http, clients, Kind::Conditional, seconds).await;
            println!(
                "| {} | {clients} | {plain:.0} | {conditional:.0} | {:.0} |",
                if over_http { "HTTP" } else { "embedded" },
                conditional / cores as f64
            );
        }
    }
}
