//! Two-stream atomic appends over gRPC (`AppendRecords`, one event per stream) beside
//! single-stream appends (`Streams.Append`, one event), from 256 tasks against a running
//! `strata serve`, in one run (issue 18). Phases alternate, single then two-stream, ROUNDS
//! times, each on streams of its own (`bench-<phase>-0..9999`, expected revision any).
//!
//! `cargo run --release -p strata-grpc --example multi_append_bench -- URL [REQUESTS] [ROUNDS]`
//! (URL e.g. `kdb://127.0.0.1:2113?tls=false`; REQUESTS per phase, default 100,000;
//! ROUNDS default 2). Prints one JSON object per phase and one summing up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use strata_core::{ExpectedRevision, ProposedEvent, StreamName};
use strata_grpc::client::Client;

const TASKS: usize = 256;
const STREAMS: usize = 10_000;
/// HTTP/2 connections the tasks share, round robin.
const CONNECTIONS: usize = 8;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: multi_append_bench URL [REQUESTS] [ROUNDS]");
    let requests: usize = args
        .next()
        .map_or(100_000, |text| text.parse().expect("REQUESTS"));
    let rounds: usize = args.next().map_or(2, |text| text.parse().expect("ROUNDS"));
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        clients.push(Client::connect(&url).await.expect("connect"));
    }
    let clients = Arc::new(clients);
    let (mut single_total, mut double_total) = (0.0, 0.0);
    for round in 0..rounds {
        let single = run(&clients, requests, 1, &format!("s{round}")).await;
        let double = run(&clients, requests, 2, &format!("d{round}")).await;
        println!(
            "{{\"round\":{round},\"single_events_per_sec\":{single:.0},\
             \"two_stream_events_per_sec\":{double:.0},\"ratio\":{:.3}}}",
            double / single
        );
        single_total += single;
        double_total += double;
    }
    println!(
        "{{\"requests\":{requests},\"rounds\":{rounds},\"tasks\":{TASKS},\
         \"connections\":{CONNECTIONS},\"single_events_per_sec_mean\":{:.0},\
         \"two_stream_events_per_sec_mean\":{:.0},\"two_stream_to_single_ratio\":{:.3}}}",
        single_total / rounds as f64,
        double_total / rounds as f64,
        double_total / single_total
    );
}

fn event(n: usize) -> ProposedEvent {
    ProposedEvent::json(
        "Moved",
        format!(r#"{{"n":{n},"pad":"{}"}}"#, "p".repeat(170)),
    )
}

/// Events per second of `requests` requests of `streams_per_request` one-event parts.
async fn run(
    clients: &Arc<Vec<Client>>,
    requests: usize,
    streams_per_request: usize,
    phase: &str,
) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (clients, next) = (Arc::clone(clients), Arc::clone(&next));
            let phase = phase.to_owned();
            tokio::spawn(async move {
                let client = &clients[task % clients.len()];
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        return;
                    }
                    let stream = |offset: usize| {
                        StreamName::new(format!("bench-{phase}-{}", (n * 2 + offset) % STREAMS))
                            .expect("name")
                    };
                    if streams_per_request == 1 {
                        client
                            .append(&stream(0), ExpectedRevision::Any, vec![event(n)])
                            .await
                            .expect("append");
                    } else {
                        let records = (0..streams_per_request)
                            .map(|offset| (stream(offset), event(n)))
                            .collect();
                        client
                            .append_records(records, Vec::new())
                            .await
                            .expect("append_records");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    (requests * streams_per_request) as f64 / started.elapsed().as_secs_f64()
}
