//! A counting projection (`fromAll().when({$any})`) beside the same count in a Rust loop, in
//! the same run: the engine alone (events handed straight to the handler), and the whole
//! runner over the embedded store (reads, handler, checkpoints).
//!
//! `cargo run --release -p strata-projections --example projection_bench -- [events]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_core::{
    EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions, ReadFrom, StreamName,
};
use strata_projections::{
    BATCH_EVENTS_DEFAULT, EngineFactory, EventView, Mode, PARTITIONS_CACHED_MAX_DEFAULT,
    QuickJsEngine, RunConfig, RunHandle, RunStatus, SandboxLimits,
};

const COUNTER: &str =
    "fromAll().when({ $init: () => ({ count: 0 }), $any: (s, e) => { s.count++; } })";

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
    let views: Vec<EventView> = (0..events).map(view).collect();

    let mut engine = QuickJsEngine.compile(COUNTER, SandboxLimits::default())?;
    engine.load_state("", None)?;
    let started = Instant::now();
    for view in &views {
        engine.process("", view)?;
    }
    let js = started.elapsed();
    assert_eq!(engine.state("")?, Some(format!(r#"{{"count":{events}}}"#)));

    let started = Instant::now();
    let mut count = 0_u64;
    for view in &views {
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

    let config = RunConfig {
        name: "bench".into(),
        query: COUNTER.into(),
        mode: Mode::OneTime,
        emit_enabled: false,
        track_emitted_streams: false,
        epoch: 0,
        batch_events: BATCH_EVENTS_DEFAULT,
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
        "runner over the embedded store (fromAll, checkpoint every {BATCH_EVENTS_DEFAULT}): JavaScript {:.0} events/s, Rust read-and-count loop {:.0} events/s, ratio {:.1}x",
        rate(events, js),
        rate(events, rust),
        js.as_secs_f64() / rust.as_secs_f64()
    );
    Ok(())
}
