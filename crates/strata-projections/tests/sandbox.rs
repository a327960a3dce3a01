//! Hostile queries: each faults its projection with a clear reason and never the process.

use std::time::Duration;

use strata_projections::{
    EngineFactory, EventView, Fault, ProjectionEngine, QuickJsEngine, SandboxLimits,
};

/// Small limits keep these tests quick; the defaults are checked in `defaults_are_the_issue_s`.
fn limits() -> SandboxLimits {
    SandboxLimits {
        compile_deadline: Duration::from_millis(200),
        handler_deadline: Duration::from_millis(100),
        state_bytes_max: 64 * 1024,
        memory_bytes_max: 32 * 1024 * 1024,
        stack_bytes_max: 256 * 1024,
    }
}

fn compile(query: &str) -> Result<Box<dyn ProjectionEngine>, Fault> {
    QuickJsEngine.compile(query, limits())
}

fn event() -> EventView {
    EventView {
        body_raw: "{}".into(),
        is_json: true,
        metadata_raw: String::new(),
        link_metadata_raw: String::new(),
        stream_id: "a-1".into(),
        event_type: "X".into(),
        sequence_number: 0,
        event_id: "5f0e9a4e-3b55-4b2b-9c55-6a1f4d0f8a01".into(),
        category: "a".into(),
        created: "2026-12-04T12:00:00Z".into(),
    }
}

/// Compiles `query` (which must compile) and runs one event through it.
fn run_one(query: &str) -> Result<(), Fault> {
    let mut engine = compile(query).expect("the query compiles");
    engine.load_state("", None)?;
    engine.process("", &event())?;
    engine.state("").map(|_| ())
}

#[test]
fn defaults_are_the_issue_s() {
    let limits = SandboxLimits::default();
    assert_eq!(limits.compile_deadline, Duration::from_millis(500));
    assert_eq!(limits.handler_deadline, Duration::from_millis(250));
    assert_eq!(limits.state_bytes_max, 16 * 1024 * 1024);
}

#[test]
fn infinite_loop_in_a_handler_hits_the_deadline() {
    let fault = run_one("fromAll().when({ $any: (s, e) => { while (true) {} } })").unwrap_err();
    assert!(
        matches!(
            fault,
            Fault::Deadline {
                deadline_ms: 100,
                ..
            }
        ),
        "{fault}"
    );
    assert!(fault.to_string().contains("the handler of X"), "{fault}");
}

#[test]
fn the_deadline_cannot_be_caught() {
    let fault = run_one(
        "fromAll().when({ $any: (s, e) => { for (;;) { try { while (true) {} } catch (x) {} } } })",
    )
    .unwrap_err();
    assert!(matches!(fault, Fault::Deadline { .. }), "{fault}");
}

#[test]
fn infinite_loop_while_defining_hits_the_compile_deadline() {
    let fault = compile("while (true) {}").err().expect("a fault");
    assert!(
        matches!(
            fault,
            Fault::Deadline {
                deadline_ms: 200,
                ..
            }
        ),
        "{fault}"
    );
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let fault = run_one(
        "fromAll().when({ $any: (s, e) => { const a = []; for (;;) { a.push('x'.repeat(1 << 20) + a.length); } } })",
    )
    .unwrap_err();
    assert!(matches!(fault, Fault::Memory { .. }), "{fault}");
}

#[test]
fn deep_recursion_hits_the_stack_limit() {
    let fault = run_one(
        "function down(n) { return down(n + 1) + 1; } fromAll().when({ $any: (s, e) => { down(0); } })",
    )
    .unwrap_err();
    assert!(matches!(fault, Fault::Stack { .. }), "{fault}");
}

#[test]
fn huge_state_is_refused() {
    let fault =
        run_one("fromAll().when({ $any: (s, e) => ({ big: 'x'.repeat(100000) }) })").unwrap_err();
    assert!(
        matches!(fault, Fault::StateTooLarge { size_bytes, .. } if size_bytes > 100000),
        "{fault}"
    );
}

#[test]
fn syntax_error_is_reported() {
    let fault = compile("fromAll().when({ $any: (s, e) => { ")
        .err()
        .expect("a fault");
    assert!(matches!(fault, Fault::Syntax { .. }), "{fault}");
}

#[test]
fn eval_and_function_from_strings_are_refused() {
    for query in [
        "eval('1 + 1')",
        "(0, eval)('1')",
        "Function('return 1')()",
        "new Function('return 1')",
        "(function () {}).constructor('return 1')()",
        "(async function () {}).constructor('return 1')",
        "(function* () {}).constructor('yield 1')",
        "Object.getPrototypeOf(() => 1).constructor('return 1')",
    ] {
        let fault = compile(query)
            .err()
            .unwrap_or_else(|| panic!("{query} must fault"));
        assert!(
            fault
                .to_string()
                .contains("code generation from strings is disabled"),
            "{query}: {fault}"
        );
    }
    let fault = run_one("fromAll().when({ $any: (s, e) => { eval('s.x = 1'); } })").unwrap_err();
    assert!(fault.to_string().contains("disabled"), "{fault}");
}

#[test]
fn functions_still_work_and_instanceof_function_holds() {
    let mut engine = compile(
        "fromAll().when({ $any: (s, e) => ({ ok: (function () {}) instanceof Function, t: typeof Function }) })",
    )
    .unwrap();
    engine.load_state("", None).unwrap();
    engine.process("", &event()).unwrap();
    assert_eq!(
        engine.state("").unwrap().as_deref(),
        Some(r#"{"ok":true,"t":"function"}"#)
    );
}

#[test]
fn no_io_is_reachable() {
    for name in [
        "require",
        "process",
        "std",
        "os",
        "fetch",
        "XMLHttpRequest",
        "setTimeout",
    ] {
        let query =
            format!("if (typeof {name} !== 'undefined') throw new Error('{name} is there')");
        compile(&query).unwrap_or_else(|fault| panic!("{fault}"));
    }
    let fault = compile("import('x')").err();
    // A dynamic import has no loader to go to: it yields a rejected promise, never a file.
    assert!(fault.is_none(), "{fault:?}");
}

#[test]
fn a_thrown_error_names_the_handler() {
    let fault =
        run_one("fromAll().when({ X: (s, e) => { throw new Error('boom'); } })").unwrap_err();
    assert!(
        matches!(&fault, Fault::Exception { stage, message } if stage.contains("X") && message.contains("boom")),
        "{fault}"
    );
}

#[test]
fn a_faulted_engine_is_dropped_cleanly_and_others_keep_working() {
    let faulted = run_one("fromAll().when({ $any: (s, e) => { while (true) {} } })");
    assert!(faulted.is_err());
    run_one("fromAll().when({ $any: (s, e) => { s.ok = true; } })").expect("a healthy query runs");
}
