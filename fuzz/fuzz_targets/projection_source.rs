//! JavaScript projection sources: any text compiled by the QuickJS engine under small
//! sandbox limits and, when it compiles, run over a few events (state loading, partitions,
//! handlers, `$deleted`, state and result) — every step ends with a result or a `Fault`,
//! never a panic, a hang past the deadlines or a runaway allocation.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strata_projections::{
    EngineFactory, EventView, Fault, ProjectionEngine, QuickJsEngine, SandboxLimits,
};

fn limits() -> SandboxLimits {
    SandboxLimits {
        compile_deadline: Duration::from_millis(100),
        handler_deadline: Duration::from_millis(50),
        state_bytes_max: 64 * 1024,
        memory_bytes_max: 32 * 1024 * 1024,
        stack_bytes_max: 256 * 1024,
    }
}

fn event(number: u64, event_type: &str, body: &str, is_json: bool) -> EventView {
    EventView {
        body_raw: body.to_owned(),
        is_json,
        metadata_raw: r#"{"$correlationId":"c-1"}"#.to_owned(),
        link_metadata_raw: String::new(),
        stream_id: format!("order-{}", number % 2),
        event_type: event_type.to_owned(),
        sequence_number: number,
        event_id: format!("5f0e9a4e-3b55-4b2b-9c55-6a1f4d0f8a{number:02}"),
        category: "order".to_owned(),
        created: "2026-12-04T12:00:00Z".to_owned(),
    }
}

/// Drives `engine` as the runner does, over `events`; the first fault ends it (an engine
/// is not called again after a fault).
fn run(engine: &mut dyn ProjectionEngine, events: &[EventView]) -> Result<(), Fault> {
    let definition = engine.definition().clone();
    if definition.bi_state {
        engine.load_shared(None)?;
    }
    if !definition.is_partitioned() {
        engine.load_state("", None)?;
    }
    let mut loaded = std::collections::HashSet::new();
    for event in events {
        if !definition.handles(&event.event_type) {
            continue;
        }
        if definition.streams_matching && !engine.stream_matches(&event.stream_id)? {
            continue;
        }
        let partition = if definition.by_stream {
            event.stream_id.clone()
        } else if definition.by_custom_partitions {
            match engine.partition_of(event)? {
                Some(partition) => partition,
                None => continue,
            }
        } else {
            String::new()
        };
        if !partition.is_empty() && loaded.insert(partition.clone()) {
            engine.load_state(&partition, None)?;
            engine.created(&partition, event)?;
        }
        engine.process(&partition, event)?;
        engine.state(&partition)?;
        engine.result(&partition)?;
    }
    if definition.by_stream
        && definition.handles_deleted_notifications
        && loaded.contains("order-0")
    {
        engine.deleted("order-0", true)?;
    }
    if definition.bi_state {
        engine.shared_state()?;
    }
    engine.take_logs();
    Ok(())
}

fuzz_target!(|source: &[u8]| {
    let source = String::from_utf8_lossy(source);
    let Ok(mut engine) = QuickJsEngine.compile(&source, limits()) else {
        return;
    };
    let events = [
        event(
            0,
            "OrderPlaced",
            r#"{"id":1,"total":12.5,"lines":[1,2]}"#,
            true,
        ),
        event(1, "OrderShipped", r#"{"id":1}"#, true),
        event(2, "Binary", "not json", false),
        event(3, "$>", "0@order-0", false),
    ];
    let _ = run(engine.as_mut(), &events);
});
