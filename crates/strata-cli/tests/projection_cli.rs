//! `strata projection ...` end to end: the `strata` binary with `--server` against a spawned
//! `strata serve`, on a data directory and on PostgreSQL.

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;

use std::process::{Command, Output};
use std::time::Duration;

use support::{PostgresSchema, Server};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

const COUNTER: &str = "fromCategory('order').when({
    $init: function () { return { n: 0 }; },
    Placed: function (state, event) { state.n += event.body.amount; return state; }
}).outputState();";

fn run(server: &Server, args: &[&str]) -> Output {
    Command::new(STRATA)
        .args(args)
        .args(["--server", &server.url()])
        .output()
        .expect("strata runs")
}

fn ok(server: &Server, args: &[&str]) -> String {
    let output = run(server, args);
    assert!(
        output.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn fails(server: &Server, args: &[&str], code: i32, stderr_has: &str) {
    let output = run(server, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "strata {args:?}: {stderr}"
    );
    assert!(
        stderr.contains(stderr_has),
        "stderr lacks {stderr_has:?}: {stderr}"
    );
}

fn place(server: &Server, stream: &str, amount: u32) {
    let data = format!("{{\"amount\":{amount}}}");
    ok(
        server,
        &["append", stream, "--type", "Placed", "--data", &data],
    );
}

/// Polls `strata projection state` (bounded) until it prints `expected`.
fn wait_for_state(server: &Server, name: &str, expected: &str) {
    let mut last = String::new();
    for _ in 0..400 {
        last = ok(server, &["projection", "state", name]);
        if last.trim() == expected {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the state of {name} stayed {last:?}, not {expected}");
}

fn field(show: &str, key: &str) -> String {
    show.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {show}"))
        .trim()
        .to_owned()
}

fn lifecycle(server: &Server) {
    let dir = tempfile::tempdir().expect("temp dir");
    let query = dir.path().join("counter.js");
    std::fs::write(&query, COUNTER).expect("query written");
    let query = query.to_str().expect("UTF-8 path");

    place(server, "order-1", 2);
    place(server, "order-2", 3);
    let created = ok(
        server,
        &["projection", "create", "counter", "--file", query],
    );
    assert_eq!(created.trim(), "created projection counter");
    wait_for_state(server, "counter", r#"{"n":5}"#);
    assert_eq!(
        ok(server, &["projection", "result", "counter"]).trim(),
        r#"{"n":5}"#
    );
    fails(
        server,
        &["projection", "create", "counter", "--file", query],
        1,
        "AlreadyExists",
    );

    let show = ok(server, &["projection", "show", "counter"]);
    assert_eq!(field(&show, "status"), "Running");
    assert_eq!(field(&show, "mode"), "Continuous");
    let list = ok(server, &["projection", "list"]);
    assert!(
        list.lines()
            .any(|line| line.starts_with("counter ") && line.contains("Running")),
        "{list}"
    );

    // An update (inline query) applies to new events; a reset replays every event.
    let doubled = COUNTER.replace(
        "state.n += event.body.amount",
        "state.n += 2 * event.body.amount",
    );
    ok(
        server,
        &["projection", "update", "counter", "--query", &doubled],
    );
    place(server, "order-1", 1);
    wait_for_state(server, "counter", r#"{"n":7}"#);
    ok(server, &["projection", "reset", "counter"]);
    wait_for_state(server, "counter", r#"{"n":12}"#);
    let show = ok(server, &["projection", "show", "counter"]);
    assert_eq!(field(&show, "epoch / version"), "1 / 1");

    fails(
        server,
        &["projection", "delete", "counter"],
        1,
        "FailedPrecondition",
    );
    ok(server, &["projection", "disable", "counter"]);
    assert_eq!(
        field(&ok(server, &["projection", "show", "counter"]), "status"),
        "Stopped"
    );
    place(server, "order-3", 100);
    ok(server, &["projection", "enable", "counter"]);
    wait_for_state(server, "counter", r#"{"n":212}"#);
    ok(server, &["projection", "disable", "counter", "--abort"]);
    let deleted = ok(
        server,
        &[
            "projection",
            "delete",
            "counter",
            "--delete-checkpoint-stream",
            "--delete-state-stream",
        ],
    );
    assert_eq!(deleted.trim(), "deleted projection counter");
    fails(server, &["projection", "show", "counter"], 1, "NotFound");
    fails(
        server,
        &["projection", "state", "counter"],
        1,
        "Projection 'counter' not found",
    );

    // One-time: the server names it; it completes.
    let created = ok(
        server,
        &["projection", "create", "--one-time", "--query", COUNTER],
    );
    let name = created
        .trim()
        .strip_prefix("created one-time projection ")
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    let mut status = String::new();
    for _ in 0..400 {
        status = field(&ok(server, &["projection", "show", &name]), "status");
        if status != "Running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status, "Completed/Stopped");
    assert_eq!(
        ok(server, &["projection", "state", &name]).trim(),
        r#"{"n":106}"#
    );
}

#[test]
fn projection_commands_manage_a_projection_end_to_end() {
    lifecycle(&Server::start());
}

#[test]
fn projections_run_on_a_postgres_backed_server() {
    let schema = PostgresSchema::new();
    lifecycle(&Server::start_on_postgres(&schema));
}

#[test]
fn bad_usage_is_refused_with_exit_code_2() {
    let output = Command::new(STRATA)
        .args(["projection", "list"])
        .env_remove("STRATA_SERVER")
        .output()
        .expect("strata runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--server"));
    let output = Command::new(STRATA)
        .args([
            "projection",
            "create",
            "x",
            "--server",
            "kdb://127.0.0.1:1?tls=false",
        ])
        .output()
        .expect("strata runs");
    assert_eq!(
        output.status.code(),
        Some(2),
        "a query is required: {output:?}"
    );
}

/// `--run-projections none` (KurrentDB's switch): no projection runs, the Projections
/// service is left out (the official client gets `UNIMPLEMENTED`: unsupported feature),
/// `/v1/projections` answers 404, and the CLI says what failed; the rest is served.
#[test]
fn run_projections_none_serves_no_projections() {
    let server = Server::start_with(&["--insecure", "--run-projections", "none"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let settings = format!("esdb://127.0.0.1:{}?tls=false", server.port())
            .parse()
            .expect("connection string parses");
        let projections = kurrentdb::ProjectionClient::new(settings).expect("client");
        let refused = projections
            .create(
                "counter",
                COUNTER.to_owned(),
                &kurrentdb::CreateProjectionOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(refused, kurrentdb::Error::UnsupportedFeature),
            "{refused:?}"
        );
    });
    place(&server, "order-1", 5);
    let output = run(&server, &["projection", "list"]);
    assert!(
        !output.status.success(),
        "listing fails without projections"
    );
    let answer = {
        use std::io::{Read, Write};
        let mut connection =
            std::net::TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
        write!(
            connection,
            "GET /v1/projections HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut answer = String::new();
        connection.read_to_string(&mut answer).expect("read");
        answer
    };
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("run_projections"), "{answer}");
}
