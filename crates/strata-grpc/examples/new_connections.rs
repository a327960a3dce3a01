//! Where a new official-client connection's time goes, as in the setup phase of the
//! eventstore-benchmarks suite (ESBS): CLIENTS tasks in parallel each make a new
//! `kurrentdb::Client` and append APPENDS times EVENTS events of 256 bytes, each append to
//! a stream of its own. Prints, per client and as the slowest, the time of `Client::new`,
//! of the first append (which connects) and of the later appends together.
//!
//! `cargo run --release -p strata-grpc --example new_connections -- URL [CLIENTS] [APPENDS] [EVENTS]`
//! (URL e.g. `kdb://127.0.0.1:2113?tls=false`; defaults 10 clients, 20 appends of 100
//! events: ESBS's setup of 20,000 events).

use std::time::{Duration, Instant};

use kurrentdb::{AppendToStreamOptions, Client, ClientSettings, EventData, StreamState};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: new_connections URL [CLIENTS] [APPENDS] [EVENTS]");
    let mut number = |default: usize| {
        args.next()
            .map_or(default, |text| text.parse().expect("a number"))
    };
    let (clients, appends, events) = (number(10), number(20), number(100));
    let settings: ClientSettings = url.parse().expect("a connection string");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (settings, run) = (settings.clone(), run.clone());
            tokio::spawn(async move { one_client(settings, &run, client, appends, events).await })
        })
        .collect();
    let mut slowest = Timings::default();
    for (client, task) in tasks.into_iter().enumerate() {
        let timings = task.await.expect("the client's task");
        println!(
            "{{\"client\":{client},\"new_ms\":{:.2},\"first_append_ms\":{:.2},\"later_appends_ms\":{:.2}}}",
            millis(timings.new),
            millis(timings.first_append),
            millis(timings.later_appends)
        );
        slowest = slowest.max(timings);
    }
    println!(
        "{{\"clients\":{clients},\"appends\":{appends},\"events\":{events},\"total_ms\":{:.2},\
         \"slowest_new_ms\":{:.2},\"slowest_first_append_ms\":{:.2},\"slowest_later_appends_ms\":{:.2}}}",
        millis(started.elapsed()),
        millis(slowest.new),
        millis(slowest.first_append),
        millis(slowest.later_appends)
    );
}

#[derive(Clone, Copy, Default)]
struct Timings {
    new: Duration,
    first_append: Duration,
    later_appends: Duration,
}

impl Timings {
    fn max(self, other: Timings) -> Timings {
        Timings {
            new: self.new.max(other.new),
            first_append: self.first_append.max(other.first_append),
            later_appends: self.later_appends.max(other.later_appends),
        }
    }
}

async fn one_client(
    settings: ClientSettings,
    run: &str,
    client_number: usize,
    appends: usize,
    events: usize,
) -> Timings {
    let started = Instant::now();
    let client = Client::new(settings).expect("a client");
    let made = Instant::now();
    let mut first_done = made;
    for append in 0..appends {
        let batch: Vec<EventData> = (0..events)
            .map(|_| EventData::binary("Setup", vec![7_u8; 256].into()))
            .collect();
        client
            .append_to_stream(
                format!("setup-{run}-{client_number}-{append}"),
                &AppendToStreamOptions::default().stream_state(StreamState::Any),
                batch,
            )
            .await
            .expect("an append");
        if append == 0 {
            first_done = Instant::now();
        }
    }
    Timings {
        new: made - started,
        first_append: first_done - made,
        later_appends: first_done.elapsed(),
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
