//! Deliver-and-ack throughput of one persistent subscription group with several consumers,
//! over gRPC with the official Rust client, against a running `strata serve`.
//!
//! ```text
//! strata serve --data-dir /tmp/ps-bench --insecure --port 2113 &
//! cargo run --release -p strata-cli --example persistent_bench -- \
//!     --server 'kdb://127.0.0.1:2113?tls=false' --events 200000 --consumers 4
//! ```
//!
//! Baseline in the same run: one catch-up subscription reading the same events over the same
//! connection, which is the delivery cost without groups, acks and checkpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, EventData, PersistentSubscriptionOptions,
    StreamPosition, SubscribeToPersistentSubscriptionOptions, SubscribeToStreamOptions,
    SubscriptionEvent, SystemConsumerStrategy,
};

#[derive(Parser)]
struct Args {
    /// The server, e.g. kdb://127.0.0.1:2113?tls=false.
    #[arg(long, default_value = "kdb://127.0.0.1:2113?tls=false")]
    server: String,
    /// Events written to the stream the group reads.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Consumers connected to the group.
    #[arg(long, default_value_t = 4)]
    consumers: u64,
    /// Unacknowledged events each consumer may hold (its buffer_size).
    #[arg(long, default_value_t = 500)]
    buffer: usize,
    /// Events acked per Ack message.
    #[arg(long, default_value_t = 100)]
    ack_batch: usize,
    /// Size of each event's body.
    #[arg(long, default_value_t = 200)]
    event_bytes: usize,
}

/// Events per append while writing the fixture.
const APPEND_EVENTS: u64 = 1_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.ack_batch < args.buffer,
        "--ack-batch must be below --buffer"
    );
    let settings: ClientSettings = args.server.parse().context("the server URL")?;
    let client = Client::new(settings)
        .map_err(|error| anyhow::anyhow!("the client does not build: {error}"))?;
    let stream = format!("ps-bench-{}", uuid::Uuid::new_v4().simple());
    write(&client, &stream, &args).await?;
    let baseline = catch_up(&client, &stream, args.events).await?;
    let group = group(&client, &stream, &args).await?;
    let report = serde_json::json!({
        "events": args.events,
        "consumers": args.consumers,
        "buffer": args.buffer,
        "ack_batch": args.ack_batch,
        "event_bytes": args.event_bytes,
        "persistent_deliver_ack_events_per_sec": (args.events as f64 / group.as_secs_f64()).round(),
        "catch_up_events_per_sec": (args.events as f64 / baseline.as_secs_f64()).round(),
        "ratio_to_catch_up": ((baseline.as_secs_f64() / group.as_secs_f64()) * 1000.0).round() / 1000.0,
    });
    println!("{report}");
    Ok(())
}

async fn write(client: &Client, stream: &str, args: &Args) -> anyhow::Result<()> {
    let body = Bytes::from(vec![b'x'; args.event_bytes]);
    let mut written = 0;
    while written < args.events {
        let count = APPEND_EVENTS.min(args.events - written);
        let events = (0..count)
            .map(|_| EventData::binary("Benched", body.clone()))
            .collect::<Vec<_>>();
        client
            .append_to_stream(stream, &AppendToStreamOptions::default(), events)
            .await
            .context("writing the events")?;
        written += count;
    }
    Ok(())
}

/// Time for one catch-up subscription to receive every event.
async fn catch_up(client: &Client, stream: &str, events: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let options = SubscribeToStreamOptions::default().start_from(StreamPosition::Start);
    let mut subscription = client.subscribe_to_stream(stream, &options).await;
    let mut received = 0;
    while received < events {
        if let SubscriptionEvent::EventAppeared(_) = subscription.next_subscription_event().await? {
            received += 1;
        }
    }
    Ok(started.elapsed())
}

/// Time for the group to deliver every event to the consumers and for all acks to be in.
async fn group(client: &Client, stream: &str, args: &Args) -> anyhow::Result<Duration> {
    let options = PersistentSubscriptionOptions::default()
        .start_from(StreamPosition::Start)
        .consumer_strategy_name(SystemConsumerStrategy::RoundRobin);
    client
        .create_persistent_subscription(stream, "bench", &options)
        .await
        .context("creating the group")?;
    let received = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut consumers = Vec::new();
    for _ in 0..args.consumers {
        let options = SubscribeToPersistentSubscriptionOptions::default().buffer_size(args.buffer);
        let mut subscription = client
            .subscribe_to_persistent_subscription(stream, "bench", &options)
            .await
            .context("connecting a consumer")?;
        let (received, total, ack_batch) = (Arc::clone(&received), args.events, args.ack_batch);
        consumers.push(tokio::spawn(async move {
            let mut unacked = Vec::with_capacity(ack_batch);
            while received.load(Ordering::Relaxed) < total {
                let event = tokio::select! {
                    event = subscription.next() => event?,
                    // Others may receive the last events: look again now and then.
                    () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                };
                unacked.push(event.get_original_event().id);
                received.fetch_add(1, Ordering::Relaxed);
                if unacked.len() >= ack_batch {
                    subscription.ack_ids(unacked.drain(..)).await?;
                }
            }
            subscription.ack_ids(unacked.drain(..)).await?;
            // Keep the connection until every ack is in.
            anyhow::Ok(subscription)
        }));
    }
    let mut connections = Vec::new();
    for consumer in consumers {
        connections.push(consumer.await.context("a consumer panicked")??);
    }
    loop {
        let info = client
            .get_persistent_subscription_info(stream, "bench", &Default::default())
            .await?;
        if info.stats.total_in_flight_messages == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("acks never all arrived: {info:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(started.elapsed())
}
