//! A counting projection (`fromAll().when({$any})`) beside the same count in a Rust loop, in
//! the same run: the engine alone (events handed straight to the handler), and the whole
//! runner over the embedded store (reads, handler, checkpoints).
//!
//! A third phase measures the read volume of a `fromCategory` catch-up: a category of 1% of
//! the events, read through a store that counts every event it hands out.
//!
//! Beside the JavaScript runner, in the same run: a raw `$all` read-and-count, and the same
//! count as a Rust read model in the toolkit's `ProjectionRunner` (checkpoint every 1,000).
//!
//! `cargo run --release -p strata-projections --example projection_bench -- [events]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use strata_core::system_streams::{IndexKey, IndexSlice};
use strata_core::{
    AllSlice, AppendResult, DeleteResult, Limits, Position, ReadStreamOptions, StreamSlice,
    StreamState,
};
use tokio::sync::watch;

use strata_core::{
    EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions, ReadFrom, StreamName,
};
use strata_projections::{
    BATCH_EVENTS_DEFAULT, CHECKPOINT_EVENTS_DEFAULT, EngineFactory, EventView, Mode,
    PARTITIONS_CACHED_MAX_DEFAULT, QuickJsEngine, RunConfig, RunHandle, RunStatus, SandboxLimits,
};

const COUNTER: &str =
    "fromAll().when({ $init: () => ({ count: 0 }), $any: (s, e) => { s.count++; } })";

/// Distinct event views of the engine-only phase.
const VIEW_POOL: u64 = 10_000;

/// The counting read model of the toolkit's `ProjectionRunner`: the same logic in Rust.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Count {
    count: u64,
}

impl strata::Projection for Count {
    type Error = std::convert::Infallible;

    fn handle(&mut self, _event: &strata_core::RecordedEvent) -> Result<(), Self::Error> {
        self.count += 1;
        Ok(())
    }
}

fn view(index: u64) -> EventView {
    EventView {
        body_raw: format!(r#"{{"amount":{index}}}"#),
        is_json: true,
        metadata_raw: String::new(),
        link_metadata_raw: String::new(),
        stream_id: format!("account-{}", index % 1_000),
        event_type: "Deposited".into(),
        sequence_number: index / 1_000,
        event_id: "5f0e9a4e-3b55-4b2b-9c55-6a1f4d0f8a01".into(),
        category: "account".into(),
        created: "2026-12-04T12:00:00.000Z".into(),
    }
}

fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(200_000);
    // A pool of views handed out in turn: 10 M views would not fit in memory.
    let pool: Vec<EventView> = (0..events.min(VIEW_POOL)).map(view).collect();
    let views = || (0..events).map(|index| &pool[(index % VIEW_POOL) as usize]);

    let mut engine = QuickJsEngine.compile(COUNTER, SandboxLimits::default())?;
    engine.load_state("", None)?;
    let started = Instant::now();
    for view in views() {
        engine.process("", view)?;
    }
    let js = started.elapsed();
    assert_eq!(engine.state("")?, Some(format!(r#"{{"count":{events}}}"#)));

    let started = Instant::now();
    let mut count = 0_u64;
    for view in views() {
        if std::hint::black_box(view).event_type.as_str() != "" {
            count += 1;
        }
    }
    let rust = started.elapsed();
    assert_eq!(count, events);
    println!(
        "engine only: JavaScript {:.0} events/s, Rust loop {:.0} events/s, ratio {:.1}x",
        rate(events, js),
        rate(events, rust),
        js.as_secs_f64() / rust.as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(whole_runner(events))
}

async fn whole_runner(events: u64) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = strata_engine::Store::open(dir.path(), strata_engine::Config::default())?;
    let batch = 1_000;
    for start in (0..events).step_by(batch) {
        let proposed = (start..(start + batch as u64).min(events))
            .map(|index| ProposedEvent::json("Deposited", view(index).body_raw))
            .collect();
        let stream = StreamName::new(format!("account-{}", start / batch as u64))?;
        store
            .append(&stream, ExpectedRevision::Any, proposed)
            .await?;
    }

    let started = Instant::now();
    let mut from = ReadFrom::Start;
    let mut count = 0_u64;
    loop {
        let mut options = ReadAllOptions::forwards().max_count(BATCH_EVENTS_DEFAULT);
        options.from = from;
        let page = store.read_all(options).await?;
        count += page
            .events
            .iter()
            .filter(|event| !event.stream.is_system())
            .count() as u64;
        if page.is_end {
            break;
        }
        from = ReadFrom::At(page.next_position);
    }
    let rust = started.elapsed();
    assert_eq!(count, events);

    let started = Instant::now();
    let mut toolkit = strata::ProjectionRunner::<Count, _>::load(
        store.clone(),
        "bench-rust",
        strata::ProjectionSource::All,
    )
    .await?;
    let handled = toolkit.catch_up().await?;
    let toolkit_elapsed = started.elapsed();
    assert_eq!(handled, events);
    assert_eq!(toolkit.read_model().count, events);

    let config = RunConfig {
        name: "bench".into(),
        query: COUNTER.into(),
        mode: Mode::OneTime,
        emit_enabled: false,
        track_emitted_streams: false,
        epoch: 0,
        batch_events: BATCH_EVENTS_DEFAULT,
        checkpoint_events: CHECKPOINT_EVENTS_DEFAULT,
        limits: SandboxLimits::default(),
        partitions_cached_max: PARTITIONS_CACHED_MAX_DEFAULT,
    };
    let started = Instant::now();
    let run = RunHandle::start(
        store.clone(),
        Arc::new(QuickJsEngine),
        config,
        tokio::runtime::Handle::current(),
    )?;
    while !run.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let js = started.elapsed();
    let progress = run.progress();
    assert_eq!(progress.status, RunStatus::Completed);
    assert_eq!(progress.events_processed, events);
    println!(
        "runner over the embedded store (fromAll, one-time): JavaScript {:.0} events/s ({:.1} s); Rust toolkit ProjectionRunner (checkpoint every 1,000) {:.0} events/s, ratio {:.1}x; raw $all read-and-count {:.0} events/s, ratio {:.1}x",
        rate(events, js),
        js.as_secs_f64(),
        rate(events, toolkit_elapsed),
        js.as_secs_f64() / toolkit_elapsed.as_secs_f64(),
        rate(events, rust),
        js.as_secs_f64() / rust.as_secs_f64()
    );
    category_read_volume(store, events).await
}

/// A `fromCategory` catch-up over a store of `events` account events and 1% order events:
/// how many events the run reads.
async fn category_read_volume(
    store: Arc<strata_engine::Store>,
    events: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let orders = (events / 100).max(1);
    for index in 0..orders {
        let stream = StreamName::new(format!("order-{}", index % 10))?;
        let event = ProposedEvent::json("Placed", format!(r#"{{"amount":{index}}}"#));
        store
            .append(&stream, ExpectedRevision::Any, vec![event])
            .await?;
    }
    let counting = Arc::new(Counting {
        inner: store,
        read: AtomicU64::new(0),
    });
    let config = RunConfig {
        name: "category".into(),
        query:
            "fromCategory('order').when({ $init: () => ({ n: 0 }), $any: (s, e) => { s.n++; } })"
                .into(),
        mode: Mode::OneTime,
        emit_enabled: false,
        track_emitted_streams: false,
        epoch: 0,
        batch_events: BATCH_EVENTS_DEFAULT,
        checkpoint_events: CHECKPOINT_EVENTS_DEFAULT,
        limits: SandboxLimits::default(),
        partitions_cached_max: PARTITIONS_CACHED_MAX_DEFAULT,
    };
    let started = Instant::now();
    let run = RunHandle::start(
        counting.clone(),
        Arc::new(QuickJsEngine),
        config,
        tokio::runtime::Handle::current(),
    )?;
    while !run.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    let progress = run.progress();
    assert_eq!(progress.status, RunStatus::Completed);
    assert_eq!(progress.events_processed, orders);
    let read = counting.read.load(Ordering::Relaxed);
    println!(
        "fromCategory catch-up: {orders} category events among {} in the store; the run read {read} events ({:.2}% of the store) in {:.3}s",
        events + orders,
        read as f64 * 100.0 / (events + orders) as f64,
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// A store that counts the events every read hands out.
struct Counting {
    inner: Arc<strata_engine::Store>,
    read: AtomicU64,
}

impl Counting {
    fn count(&self, events: usize) {
        self.read.fetch_add(events as u64, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl EventStore for Counting {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> strata_core::Result<AppendResult> {
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> strata_core::Result<StreamSlice> {
        let slice = self.inner.read_stream(stream, options).await?;
        if let StreamSlice::Found { events, .. } = &slice {
            self.count(events.len());
        }
        Ok(slice)
    }

    async fn read_all(&self, options: ReadAllOptions) -> strata_core::Result<AllSlice> {
        let slice = self.inner.read_all(options).await?;
        self.count(slice.events.len());
        Ok(slice)
    }

    async fn read_index(
        &self,
        key: &IndexKey,
        options: ReadStreamOptions,
    ) -> strata_core::Result<IndexSlice> {
        let slice = self.inner.read_index(key, options).await?;
        self.count(slice.events.len());
        Ok(slice)
    }

    async fn stream_state(&self, stream: &StreamName) -> strata_core::Result<StreamState> {
        self.inner.stream_state(stream).await
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> strata_core::Result<DeleteResult> {
        self.inner.delete_stream(stream, expected).await
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> strata_core::Result<DeleteResult> {
        self.inner.tombstone_stream(stream, expected).await
    }

    async fn last_position(&self) -> strata_core::Result<Option<Position>> {
        self.inner.last_position().await
    }

    fn watch_log_end(&self) -> watch::Receiver<Position> {
        self.inner.watch_log_end()
    }
}
