//! Toolkit throughput on the embedded engine: commands handled per second (load + handle +
//! append) over many aggregates with snapshots, and projection catch-up into an in-memory
//! read model, each beside a same-run baseline of the raw store.
//!
//! `cargo run --release -p strata --example toolkit_bench -- [DATA_DIR]`
//! Environment: `AGGREGATES` (10000), `COMMANDS` (1000000), `TASKS` (256),
//! `SNAPSHOT_EVERY` (100), `CACHE` (aggregates kept in memory; 0 = none, the default),
//! `PROJECTION_EVENTS` (1000000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use strata::{
    Aggregate, DomainEvent, EventStore, ExpectedRevision, Projection, ProjectionRunner,
    ProjectionSource, ProposedEvent, RecordedEvent, Repository, SnapshotPolicy, StreamName,
};
use strata_core::ReadAllOptions;
use strata_engine::{Config, Store};

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
    operations: u64,
}

#[derive(Serialize, Deserialize)]
enum AccountEvent {
    Deposited { amount: i64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        "Deposited"
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a deposit must be positive")]
struct NotPositive;

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Command = i64;
    type Event = AccountEvent;
    type Error = NotPositive;

    fn handle(&self, amount: &i64) -> Result<Vec<AccountEvent>, NotPositive> {
        if *amount <= 0 {
            return Err(NotPositive);
        }
        Ok(vec![AccountEvent::Deposited { amount: *amount }])
    }

    fn apply(&mut self, event: &AccountEvent) {
        let AccountEvent::Deposited { amount } = event;
        self.balance += amount;
        self.operations += 1;
    }
}

/// Events and bytes per stream of the projection's input.
#[derive(Default, Serialize, Deserialize)]
struct Totals {
    events: u64,
    data_bytes: u64,
    streams_seen: u64,
}

impl Projection for Totals {
    type Error = std::convert::Infallible;

    fn handle(&mut self, event: &RecordedEvent) -> Result<(), Self::Error> {
        self.events += 1;
        self.data_bytes += event.data.len() as u64;
        if event.revision.0 == 0 {
            self.streams_seen += 1;
        }
        Ok(())
    }
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

async fn commands(store: &Arc<Store>) -> Result<(), Box<dyn std::error::Error>> {
    let aggregates = setting("AGGREGATES", 10_000);
    let commands = setting("COMMANDS", 1_000_000);
    let tasks = setting("TASKS", 256);
    let snapshot_every = setting("SNAPSHOT_EVERY", 100);
    let cache = setting("CACHE", 0);
    let mut repository = Repository::<Account, Store>::new(store.clone())
        .with_snapshot_policy(SnapshotPolicy::EveryEvents(snapshot_every));
    if cache > 0 {
        repository = repository.with_cache(usize::try_from(cache)?);
    }
    let accounts = Arc::new(repository);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..tasks {
        let accounts = accounts.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= commands {
                    return Ok::<(), strata::CommandError<NotPositive>>(());
                }
                // Spread consecutive commands over the aggregates, as independent users do.
                let id = (n.wrapping_mul(7_919)) % aggregates;
                accounts.execute(&id.to_string(), &1).await?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sample = accounts.load("0").await?;
    println!(
        "commands: {commands} over {aggregates} aggregates by {tasks} tasks, snapshot every \
         {snapshot_every} events, cache {cache}: {:.0} commands/s ({elapsed:.2} s); aggregate \
         0 loads {} event(s) after {}",
        commands as f64 / elapsed,
        sample.events_replayed(),
        if sample.from_snapshot() {
            "its snapshot"
        } else {
            "no snapshot"
        },
    );

    // Baseline: the same appends without load or handle (expected revision Any).
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..tasks {
        let store = store.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= commands {
                    return Ok::<(), strata_core::Error>(());
                }
                let stream = StreamName::new(format!("raw-{}", (n * 7_919) % aggregates))?;
                let event = ProposedEvent::json("Deposited", r#"{"Deposited":{"amount":1}}"#);
                store
                    .append(&stream, ExpectedRevision::Any, vec![event])
                    .await?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "baseline: {commands} raw single-event appends by {tasks} tasks: {:.0} appends/s",
        commands as f64 / elapsed
    );
    Ok(())
}

async fn projection(store: &Arc<Store>) -> Result<(), Box<dyn std::error::Error>> {
    let events = setting("PROJECTION_EVENTS", 1_000_000);
    let batch = 1_000_u64;
    for start in (0..events).step_by(1_000) {
        let stream = StreamName::new(format!("reading-{}", start / batch % 1_000))?;
        let count = (events - start).min(batch);
        let batch_events = (0..count)
            .map(|n| ProposedEvent::json("Measured", format!(r#"{{"value":{n}}}"#)))
            .collect();
        store
            .append(&stream, ExpectedRevision::Any, batch_events)
            .await?;
    }

    // Baseline: paging through $all with the store's own reads, no subscription.
    let started = Instant::now();
    let mut read = 0_u64;
    let mut options = ReadAllOptions::forwards().max_count(4_096);
    loop {
        let page = store.read_all(options.clone()).await?;
        read += page.events.len() as u64;
        if page.is_end {
            break;
        }
        options = options.from_position(page.next_position);
    }
    let baseline = read as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut runner =
        ProjectionRunner::<Totals, Store>::load(store.clone(), "totals", ProjectionSource::All)
            .await?;
    let handled = runner.catch_up().await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "projection: caught up {handled} events into an in-memory read model: {:.0} events/s \
         ({elapsed:.2} s, checkpoint every {} events); baseline raw $all read of {read} \
         events: {baseline:.0} events/s",
        handled as f64 / elapsed,
        strata::CHECKPOINT_EVERY_EVENTS_DEFAULT,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| temp.path().join("commands"), std::path::PathBuf::from);
    let store = Store::open(&dir, Config::default())?;
    commands(&store).await?;
    store.close();
    let store = Store::open(temp.path().join("projection"), Config::default())?;
    projection(&store).await?;
    store.close();
    Ok(())
}
