//! Transforms: one event in, one message (or nothing) out, inside the projections sandbox.

use std::time::Duration;

use strata_projections::{Fault, QuickJsTransform, SandboxLimits};

const EVENT: &str =
    r#"{"id":"a","stream":"order-1","revision":3,"type":"Placed","data":{"total":5}}"#;

fn compile(source: &str) -> Result<QuickJsTransform, Fault> {
    QuickJsTransform::compile(source, SandboxLimits::default())
}

fn json(text: Option<String>) -> serde_json::Value {
    serde_json::from_str(&text.expect("a message")).unwrap()
}

#[test]
fn an_arrow_function_maps_the_event() {
    let transform =
        compile("(e) => ({ type: e.type + 'V2', data: { total: e.data.total * 2 } })").unwrap();
    let out = json(transform.apply(EVENT).unwrap());
    assert_eq!(out["type"], "PlacedV2");
    assert_eq!(out["data"]["total"], 10);
    // Called again: the function keeps working.
    assert_eq!(json(transform.apply(EVENT).unwrap())["type"], "PlacedV2");
}

#[test]
fn a_named_transform_function_is_found() {
    let transform =
        compile("function transform(event) { return { metadata: { from: event.stream } }; }")
            .unwrap();
    assert_eq!(
        json(transform.apply(EVENT).unwrap())["metadata"]["from"],
        "order-1"
    );
}

#[test]
fn null_and_undefined_skip_the_event() {
    let transform = compile("(e) => e.revision === 3 ? null : undefined").unwrap();
    assert_eq!(transform.apply(EVENT).unwrap(), None);
    let transform = compile("(e) => {}").unwrap();
    assert_eq!(transform.apply(EVENT).unwrap(), None);
}

#[test]
fn a_syntax_error_is_a_compile_fault() {
    let fault = compile("(e) => {").err().expect("a fault");
    assert!(matches!(fault, Fault::Syntax { .. }), "{fault:?}");
}

#[test]
fn a_source_without_a_function_is_refused() {
    let fault = compile("const x = 1;").err().expect("a fault");
    assert!(matches!(fault, Fault::InvalidQuery { .. }), "{fault:?}");
    assert!(fault.to_string().contains("function transform"), "{fault}");
}

#[test]
fn a_throw_is_an_exception_fault_and_the_next_event_still_runs() {
    let transform = compile(
        "(e) => { if (e.data.total > 1) throw new Error('too big: ' + e.data.total); return e; }",
    )
    .unwrap();
    let fault = transform.apply(EVENT).expect_err("a fault");
    assert!(
        matches!(&fault, Fault::Exception { message, .. } if message.contains("too big: 5")),
        "{fault:?}"
    );
    let small = r#"{"type":"Placed","data":{"total":1}}"#;
    assert_eq!(json(transform.apply(small).unwrap())["type"], "Placed");
}

#[test]
fn returning_a_non_object_is_a_fault() {
    let transform = compile("(e) => 42").unwrap();
    let fault = transform.apply(EVENT).expect_err("a fault");
    assert!(fault.to_string().contains("not number"), "{fault}");
    let transform = compile("(e) => [e]").unwrap();
    let fault = transform.apply(EVENT).expect_err("a fault");
    assert!(fault.to_string().contains("an array"), "{fault}");
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    let limits = SandboxLimits {
        handler_deadline: Duration::from_millis(50),
        ..SandboxLimits::default()
    };
    let transform = QuickJsTransform::compile("(e) => { for (;;) {} }", limits).unwrap();
    let fault = transform.apply(EVENT).expect_err("a fault");
    assert!(matches!(fault, Fault::Deadline { .. }), "{fault:?}");
}

#[test]
fn an_endless_loop_at_compile_time_hits_the_compile_deadline() {
    let limits = SandboxLimits {
        compile_deadline: Duration::from_millis(50),
        ..SandboxLimits::default()
    };
    let fault = QuickJsTransform::compile("for (;;) {}", limits)
        .err()
        .expect("a fault");
    assert!(matches!(fault, Fault::Deadline { .. }), "{fault:?}");
}

#[test]
fn code_from_strings_stays_disabled() {
    let transform = compile("(e) => ({ type: eval('1 + 1') })").unwrap();
    let fault = transform.apply(EVENT).expect_err("a fault");
    assert!(fault.to_string().contains("disabled"), "{fault}");
}

#[test]
fn the_memory_limit_holds() {
    let limits = SandboxLimits {
        memory_bytes_max: 8 * 1024 * 1024,
        // Time to reach the limit on a loaded machine: the costly built-ins check the
        // deadline.
        handler_deadline: std::time::Duration::from_secs(30),
        ..SandboxLimits::default()
    };
    let transform = QuickJsTransform::compile(
        "(e) => { const a = []; for (;;) a.push('x'.repeat(1 << 20) + a.length); }",
        limits,
    )
    .unwrap();
    let fault = transform.apply(EVENT).expect_err("a fault");
    assert!(matches!(fault, Fault::Memory { .. }), "{fault:?}");
}
