//! The JavaScript projection API on the engine alone: definitions, handlers, partitions,
//! outputs and the event object, with no store.

use strata_projections::{
    EngineFactory, EventView, Fault, ProjectionEngine, QuickJsEngine, SandboxLimits,
};

fn compile(query: &str) -> Box<dyn ProjectionEngine> {
    QuickJsEngine
        .compile(query, SandboxLimits::default())
        .unwrap_or_else(|fault| panic!("{query} should compile: {fault}"))
}

fn compile_fault(query: &str) -> Fault {
    match QuickJsEngine.compile(query, SandboxLimits::default()) {
        Ok(_) => panic!("{query} should not compile"),
        Err(fault) => fault,
    }
}

fn event(stream: &str, revision: u64, event_type: &str, body: &str) -> EventView {
    EventView {
        body_raw: body.to_owned(),
        is_json: true,
        metadata_raw: r#"{"user":"ann"}"#.to_owned(),
        link_metadata_raw: String::new(),
        stream_id: stream.to_owned(),
        event_type: event_type.to_owned(),
        sequence_number: revision,
        event_id: "5f0e9a4e-3b55-4b2b-9c55-6a1f4d0f8a01".to_owned(),
        category: stream.split('-').next().unwrap_or_default().to_owned(),
        created: "2026-12-04T12:00:00.000Z".to_owned(),
    }
}

fn state(engine: &mut Box<dyn ProjectionEngine>, partition: &str) -> serde_json::Value {
    let json = engine.state(partition).expect("state").expect("a state");
    serde_json::from_str(&json).expect("state is JSON")
}

#[test]
fn sources_are_recorded() {
    assert!(compile("fromAll().when({})").definition().all);
    let definition = compile("fromStream('a-1').when({})").definition().clone();
    assert_eq!(definition.streams, ["a-1"]);
    let definition = compile("fromStreams(['a-1', 'b-2']).when({})")
        .definition()
        .clone();
    assert_eq!(definition.streams, ["a-1", "b-2"]);
    let definition = compile("fromStreams('a-1', 'b-2').when({})")
        .definition()
        .clone();
    assert_eq!(definition.streams, ["a-1", "b-2"]);
    let definition = compile("fromCategory('order').when({})")
        .definition()
        .clone();
    assert_eq!(definition.categories, ["order"]);
    let definition = compile("fromCategories(['order', 'cart']).when({})")
        .definition()
        .clone();
    assert_eq!(definition.categories, ["order", "cart"]);
    assert!(
        !compile("").definition().has_source(),
        "an empty query is accepted"
    );
}

#[test]
fn options_are_read_and_bad_ones_refused() {
    let definition = compile(
        "options({ resultStreamName: 'totals', $includeLinks: true, processingLag: 500, biState: true });
         fromAll().when({})",
    )
    .definition()
    .clone();
    assert_eq!(definition.result_stream_name.as_deref(), Some("totals"));
    assert!(definition.include_links);
    assert_eq!(definition.processing_lag, Some(500));
    assert!(definition.bi_state);
    let fault = compile_fault("options({ reorderEvents: true }); fromAll().when({})");
    assert!(
        fault.to_string().contains("reorderEvents is not supported"),
        "{fault}"
    );
    let fault = compile_fault("options({ colour: 'red' }); fromAll().when({})");
    assert!(
        fault.to_string().contains("Unrecognized option: colour"),
        "{fault}"
    );
}

#[test]
fn chain_follows_the_reference_order() {
    let fault = compile_fault("fromStream('a').foreachStream()");
    assert!(fault.to_string().contains("foreachStream"), "{fault}");
    let definition = compile("fromCategory('c').foreachStream().when({}).outputState()")
        .definition()
        .clone();
    assert!(definition.by_stream && definition.output_state);
    let fault = compile_fault("fromAll().when({}).outputTo('x').outputState()");
    assert!(fault.to_string().contains("outputState"), "{fault}");
}

#[test]
fn init_and_typed_handlers_fold_the_state() {
    let mut engine = compile(
        "fromAll().when({
            $init: function () { return { count: 0, total: 0 }; },
            Deposited: function (s, e) { s.count += 1; s.total += e.data.amount; },
            Closed: function (s, e) { return { closed: true, count: s.count }; }
        })",
    );
    assert_eq!(engine.definition().events, ["Deposited", "Closed"]);
    assert!(engine.definition().handles("Deposited"));
    assert!(!engine.definition().handles("Other"));
    engine.load_state("", None).unwrap();
    engine
        .process("", &event("acc-1", 0, "Deposited", r#"{"amount":5}"#))
        .unwrap();
    engine
        .process("", &event("acc-1", 1, "Deposited", r#"{"amount":7}"#))
        .unwrap();
    assert_eq!(
        state(&mut engine, ""),
        serde_json::json!({"count": 2, "total": 12})
    );
    engine
        .process("", &event("acc-1", 2, "Closed", "{}"))
        .unwrap();
    assert_eq!(
        state(&mut engine, ""),
        serde_json::json!({"closed": true, "count": 2})
    );
}

#[test]
fn any_handler_runs_when_no_typed_one_matches() {
    let mut engine = compile(
        "fromAll().when({
            $init: () => ({ any: 0, typed: 0 }),
            $any: (s, e) => { s.any++; },
            Typed: (s, e) => { s.typed++; }
        })",
    );
    engine.load_state("", None).unwrap();
    for event_type in ["A", "Typed", "B"] {
        engine
            .process("", &event("x-1", 0, event_type, "{}"))
            .unwrap();
    }
    assert_eq!(
        state(&mut engine, ""),
        serde_json::json!({"any": 2, "typed": 1})
    );
}

#[test]
fn event_object_has_the_reference_fields() {
    let mut engine = compile(
        "fromAll().when({ $any: (s, e) => ({
            isJson: e.isJson, data: e.data, body: e.body, bodyRaw: e.bodyRaw,
            sequenceNumber: e.sequenceNumber, metadataRaw: e.metadataRaw, metadata: e.metadata,
            linkMetadataRaw: e.linkMetadataRaw, partition: e.partition, eventType: e.eventType,
            streamId: e.streamId, created: e.created, eventId: e.eventId, category: e.category
        }) })",
    );
    engine.load_state("", None).unwrap();
    engine
        .process("", &event("order-7", 3, "Placed", r#"{"total":10}"#))
        .unwrap();
    assert_eq!(
        state(&mut engine, ""),
        serde_json::json!({
            "isJson": true, "data": {"total": 10}, "body": {"total": 10},
            "bodyRaw": "{\"total\":10}", "sequenceNumber": 3,
            "metadataRaw": "{\"user\":\"ann\"}", "metadata": {"user": "ann"},
            "linkMetadataRaw": "", "partition": "", "eventType": "Placed",
            "streamId": "order-7", "created": "2026-12-04T12:00:00.000Z",
            "eventId": "5f0e9a4e-3b55-4b2b-9c55-6a1f4d0f8a01", "category": "order"
        })
    );
}

#[test]
fn binary_events_have_no_body() {
    let mut engine = compile(
        "fromAll().when({ $any: (s, e) => ({ body: e.body === undefined, raw: e.bodyRaw }) })",
    );
    engine.load_state("", None).unwrap();
    let mut binary = event("b-1", 0, "Blob", "abc");
    binary.is_json = false;
    engine.process("", &binary).unwrap();
    assert_eq!(
        state(&mut engine, ""),
        serde_json::json!({"body": true, "raw": "abc"})
    );
}

#[test]
fn partition_by_and_created_handlers() {
    let mut engine = compile(
        "fromCategory('order').partitionBy(e => e.body.region).when({
            $init: () => ({ n: 0 }),
            $created: (s, e) => { emit('regions', 'RegionSeen', { region: e.partition }); },
            $any: (s, e) => { s.n++; }
        })",
    );
    assert!(engine.definition().by_custom_partitions);
    let placed = event("order-1", 0, "Placed", r#"{"region":"eu"}"#);
    let partition = engine.partition_of(&placed).unwrap();
    assert_eq!(partition.as_deref(), Some("eu"));
    let missing = event("order-2", 0, "Placed", r#"{"region":null}"#);
    assert_eq!(
        engine.partition_of(&missing).unwrap(),
        None,
        "null skips the event"
    );
    engine.load_state("eu", None).unwrap();
    let emitted = engine.created("eu", &placed).unwrap();
    assert_eq!(emitted.len(), 1);
    assert_eq!(emitted[0].stream, "regions");
    assert_eq!(emitted[0].data, r#"{"region":"eu"}"#);
    engine.process("eu", &placed).unwrap();
    assert_eq!(state(&mut engine, "eu"), serde_json::json!({"n": 1}));
}

#[test]
fn foreach_stream_is_partitioned_by_stream() {
    let engine = compile("fromAll().foreachStream().when({ $any: (s, e) => s })");
    assert!(engine.definition().by_stream);
    assert!(engine.definition().is_partitioned());
}

#[test]
fn emit_link_copy_and_log() {
    let mut engine = compile(
        "fromAll().when({ $any: (s, e) => {
            emit('out-1', 'Seen', { id: e.sequenceNumber }, { source: e.streamId });
            linkTo('links-1', e);
            copyTo('copies-1', e);
            linkStreamTo('streams-1', e.streamId);
            log('seen', e.sequenceNumber, { x: 1 });
        } })",
    );
    engine.load_state("", None).unwrap();
    let emitted = engine
        .process("", &event("acc-1", 4, "Deposited", r#"{"a":1}"#))
        .unwrap();
    let summary: Vec<(&str, &str, &str, bool)> = emitted
        .iter()
        .map(|e| {
            (
                e.stream.as_str(),
                e.event_type.as_str(),
                e.data.as_str(),
                e.is_json,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("out-1", "Seen", r#"{"id":4}"#, true),
            ("links-1", "$>", "4@acc-1", false),
            ("copies-1", "Deposited", r#"{"a":1}"#, true),
            ("streams-1", "$@", "acc-1", false),
        ]
    );
    assert_eq!(
        emitted[0].metadata.as_deref(),
        Some(r#"{"source":"acc-1"}"#)
    );
    assert_eq!(engine.take_logs(), [r#"seen 4 {"x":1}"#]);
    assert!(engine.take_logs().is_empty());
}

#[test]
fn emit_refuses_bad_arguments() {
    let mut engine = compile("fromAll().when({ $any: (s, e) => { emit('', 'T', {}); } })");
    engine.load_state("", None).unwrap();
    let fault = engine.process("", &event("a-1", 0, "X", "{}")).unwrap_err();
    assert!(fault.to_string().contains("emit: streamId"), "{fault}");
}

#[test]
fn transform_and_filter_make_the_result() {
    let mut engine = compile(
        "fromAll().when({ $init: () => ({ n: 0 }), $any: (s) => { s.n++; } })
           .transformBy(s => ({ doubled: s.n * 2 }))
           .filterBy(s => s.doubled > 2)",
    );
    assert!(engine.definition().output_state);
    engine.load_state("", None).unwrap();
    engine.process("", &event("a-1", 0, "X", "{}")).unwrap();
    assert_eq!(engine.result("").unwrap(), None, "filtered out");
    engine.process("", &event("a-1", 1, "X", "{}")).unwrap();
    assert_eq!(
        engine.result("").unwrap().as_deref(),
        Some(r#"{"doubled":4}"#)
    );
}

#[test]
fn bi_state_shares_a_state_across_partitions() {
    let mut engine = compile(
        "fromAll().foreachStream().when({
            $init: () => ({ mine: 0 }),
            $initShared: () => ({ all: 0 }),
            $any: (s, e) => { s[0].mine++; s[1].all++; return s; }
        })",
    );
    assert!(engine.definition().bi_state);
    engine.load_shared(None).unwrap();
    for stream in ["a-1", "b-1", "a-1"] {
        if engine.state(stream).unwrap().is_none() {
            engine.load_state(stream, None).unwrap();
        }
        engine
            .process(stream, &event(stream, 0, "X", "{}"))
            .unwrap();
    }
    assert_eq!(state(&mut engine, "a-1"), serde_json::json!({"mine": 2}));
    assert_eq!(
        engine.shared_state().unwrap().as_deref(),
        Some(r#"{"all":3}"#)
    );
}

#[test]
fn state_loads_from_json() {
    let mut engine = compile("fromAll().when({ $any: (s, e) => { s.n++; } })");
    engine.load_state("", Some(r#"{"n":41}"#)).unwrap();
    engine.process("", &event("a-1", 0, "X", "{}")).unwrap();
    assert_eq!(state(&mut engine, ""), serde_json::json!({"n": 42}));
}

#[test]
fn no_handler_makes_the_body_the_state() {
    let mut engine = compile("fromAll().when({ Other: (s) => s })");
    engine.load_state("", None).unwrap();
    assert!(!engine.definition().handles("X"));
    let mut engine = compile("fromAll()");
    engine.load_state("", None).unwrap();
    engine
        .process("", &event("a-1", 0, "X", r#"{"v":1}"#))
        .unwrap();
    assert_eq!(engine.state("").unwrap().as_deref(), Some(r#""{\"v\":1}""#));
}
