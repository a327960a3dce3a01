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
    // The costly built-ins check the deadline now: give the allocations time to reach the
    // limit on a loaded machine (the deadline would end the loop otherwise, also a fault).
    let mut engine = QuickJsEngine
        .compile(
            "fromAll().when({ $any: (s, e) => { const a = []; for (;;) { a.push('x'.repeat(1 << 20) + a.length); } } })",
            SandboxLimits {
                handler_deadline: Duration::from_secs(30),
                ..limits()
            },
        )
        .expect("the query compiles");
    engine.load_state("", None).unwrap();
    let fault = engine.process("", &event()).unwrap_err();
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

/// Runs `handler` (the body of a `$any` handler) and expects the handler's deadline to end
/// it. Each loop below makes fewer than QuickJS's 10,000 interrupt checks (one per backward
/// or conditional jump) in seconds of native work: without the guards it would finish or
/// run on for tens of seconds before the interrupt fired.
fn assert_deadline(handler: &str) {
    let query = format!("fromAll().when({{ $any: (s, e) => {{ {handler} }} }})");
    let fault = run_one(&query).unwrap_err();
    assert!(
        matches!(
            &fault,
            Fault::Deadline { stage, deadline_ms: 100 } if stage == "the handler of X"
        ),
        "{handler}: {fault}"
    );
    assert!(
        fault.to_string().contains("100 ms"),
        "{handler}: the reason names the deadline: {fault}"
    );
}

#[test]
fn the_fuzzer_s_loop_of_native_calls_stops_at_the_deadline() {
    // The `projection_source` finding (docs/RELIABILITY.md): 14 s under a 50 ms deadline.
    assert_deadline("const a = []; for (;;) a.push*(new Array(571418).fill(1));");
}

#[test]
fn a_loop_of_costly_built_ins_stops_at_the_deadline_even_when_it_catches() {
    for handler in [
        "for (let i = 0; i < 3000; i++) { try { 'x'.repeat(1 << 22); } catch (x) {} }",
        "for (let i = 0; i < 3000; i++) { try { ''.padStart(1 << 22, 'ab'); } catch (x) {} }",
        "const a = new Array(1 << 20).fill(0); for (let i = 0; i < 3000; i++) { try { a.includes(1); } catch (x) {} }",
        "const a = new Array(1 << 19).fill('ab'); for (let i = 0; i < 3000; i++) { try { a.join(','); } catch (x) {} }",
        "const a = new Array(1 << 17).fill({ k: 'v' }); for (let i = 0; i < 3000; i++) { try { JSON.stringify(a); } catch (x) {} }",
        "const t = JSON.stringify(new Array(1 << 17).fill({ k: 'v' })); for (let i = 0; i < 3000; i++) { try { JSON.parse(t); } catch (x) {} }",
        "const b = new Uint8Array(1 << 24); for (let i = 0; i < 3000; i++) { try { b.fill(1); } catch (x) {} }",
        "const text = 'x'.repeat(1 << 23); for (let i = 0; i < 3000; i++) { try { text.indexOf('y'); } catch (x) {} }",
    ] {
        assert_deadline(handler);
    }
}

#[test]
fn a_long_sort_stops_at_the_deadline_inside_one_call() {
    // One call: millions of comparisons, none of them a jump QuickJS counts.
    assert_deadline(
        "const a = new Array(1 << 19).fill(0).map((_, i) => (i * 7919) % 1000003); \
         a.sort((x, y) => x - y);",
    );
}

#[test]
fn catastrophic_regex_backtracking_stops_at_the_deadline() {
    assert_deadline("/^(a+)+$/.test('a'.repeat(40) + 'b');");
}

#[test]
fn guarded_built_ins_behave_as_before() {
    let mut engine = compile(
        "fromAll().when({ $any: (s, e) => ({ \
           sorted: [3, 1, 2].sort((x, y) => x - y), plain: [10, 9, 1].sort(), \
           copy: [1, 2, 3].toSorted((x, y) => y - x), filled: new Array(3).fill(7), \
           joined: ['a', 'b'].join('-'), padded: '5'.padStart(3, '0'), rep: 'ab'.repeat(2), \
           found: [1, 2].includes(2) && 'abc'.indexOf('c') === 2, \
           json: JSON.parse(JSON.stringify({ a: [1] })), keys: Object.keys({ x: 1, y: 2 }), \
           name: Array.prototype.fill.name, text: String([1, [2, 3]]), \
           typed: Array.from(new Uint8Array([1, 2]).fill(4)) }) })",
    )
    .unwrap();
    engine.load_state("", None).unwrap();
    engine.process("", &event()).unwrap();
    assert_eq!(
        engine.state("").unwrap().as_deref(),
        Some(
            r#"{"sorted":[1,2,3],"plain":[1,10,9],"copy":[3,2,1],"filled":[7,7,7],"joined":"a-b","padded":"005","rep":"abab","found":true,"json":{"a":[1]},"keys":["x","y"],"name":"fill","text":"1,2,3","typed":[4,4]}"#
        )
    );
}
