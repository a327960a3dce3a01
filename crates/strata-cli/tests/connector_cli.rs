//! `strata connector ...` against a running `strata serve`: create, list, show, stop,
//! reset, start, update, delete through the server's HTTP API (`/connectors`), the
//! per-connector metrics at `/metrics`, and clear refusals — publishing to the real NATS
//! JetStream (STRATA_TEST_NATS_URL, default nats://127.0.0.1:4222).

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Server;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn nats_url() -> String {
    std::env::var("STRATA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn connector(server: &Server, args: &[&str]) -> Output {
    Command::new(STRATA)
        .arg("connector")
        .args(args)
        .args(["--server", &server.url()])
        .output()
        .expect("strata runs")
}

fn succeeds(server: &Server, args: &[&str]) -> String {
    let output = connector(server, args);
    assert!(
        output.status.success(),
        "strata connector {args:?}: {output:?}"
    );
    String::from_utf8(output.stdout).unwrap()
}

fn show(server: &Server, id: &str) -> Value {
    serde_json::from_str(&succeeds(server, &["show", id])).unwrap()
}

/// Shows `id` until `done` holds (a bound against hangs, not a timing assertion).
fn wait_until(server: &Server, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = show(server, id);
        if done(&shown) {
            return shown;
        }
        assert!(Instant::now() < deadline, "{what}: {shown:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn append(runtime: &tokio::runtime::Runtime, server: &Server, stream: &str, count: usize) {
    let url = format!("http://127.0.0.1:{}/v1/streams/{stream}", server.port());
    let events: Vec<Value> = (0..count)
        .map(|n| json!({"type": "Counted", "data": {"n": n}}))
        .collect();
    runtime.block_on(async {
        let answer = reqwest::Client::new()
            .post(url)
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    });
}

fn metrics(runtime: &tokio::runtime::Runtime, server: &Server) -> String {
    let url = format!("http://127.0.0.1:{}/metrics", server.port());
    runtime.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

/// The value of the sample of `name` labelled with `connector="id"`, if any.
fn sample(text: &str, name: &str, id: &str) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| line.contains(&format!("connector=\"{id}\"")))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

fn delete_js_stream(runtime: &tokio::runtime::Runtime, name: &str) {
    runtime.block_on(async {
        let context = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
        let _ = context.delete_stream(name).await;
    });
}

#[test]
fn connectors_are_managed_with_the_cli_over_http_and_measured() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = Server::start();
    let name = format!("CLI{}", std::process::id());
    let id = "cli-to-nats";
    let definition = json!({
        "id": id,
        "source": {"kind": "category", "category": "clicat"},
        "sink": {"type": "nats", "url": nats_url(), "token": "not-shown-42",
                 "subject": format!("{name}.{{stream}}"),
                 "create_stream": {"name": name, "subjects": [format!("{name}.>")]}},
        "settings": {"checkpoint_interval_events": 10}
    });
    append(&runtime, &server, "clicat-1", 30);
    append(&runtime, &server, "clicat-2", 20);
    append(&runtime, &server, "elsewhere-1", 5);

    // Refusals name the problem and store nothing.
    let unknown_sink = connector(
        &server,
        &[
            "create",
            "--definition",
            r#"{"id":"bad","source":{"kind":"all"},"sink":{"type":"kafka"}}"#,
        ],
    );
    assert!(!unknown_sink.status.success());
    let said = String::from_utf8_lossy(&unknown_sink.stderr);
    assert!(said.contains("400") && said.contains("kafka"), "{said}");
    let unreachable = connector(
        &server,
        &[
            "create",
            "--definition",
            r#"{"id":"away","source":{"kind":"all"},"sink":{"type":"http","url":"http://127.0.0.1:1/hook"}}"#,
        ],
    );
    assert!(!unreachable.status.success());
    let said = String::from_utf8_lossy(&unreachable.stderr);
    assert!(said.contains("422") && said.contains("reach"), "{said}");
    let not_json = connector(&server, &["create", "--definition", "{"]);
    assert_eq!(
        not_json.status.code(),
        Some(2),
        "a usage error: {not_json:?}"
    );
    assert!(succeeds(&server, &["list", "--json"]).trim() == "[]");

    // Create: it publishes the category's 50 events; the token is never shown back.
    let created = succeeds(
        &server,
        &["create", "--definition", &definition.to_string()],
    );
    assert!(
        created.contains("created connector cli-to-nats"),
        "{created}"
    );
    let shown = wait_until(&server, id, "all 50 published", |shown| {
        shown["counters"]["published"] == 50 && shown["lag_events"] == 0
    });
    assert_eq!(shown["state"], "running");
    assert_eq!(shown["sink"], "nats");
    assert_eq!(shown["definition"]["sink"]["token"], "***");
    let table = succeeds(&server, &["list"]);
    assert!(table.contains(id) && table.contains("running"), "{table}");
    for listed in [table, succeeds(&server, &["list", "--json"])] {
        assert!(!listed.contains("not-shown-42"), "{listed}");
    }
    let duplicate = connector(
        &server,
        &["create", "--definition", &definition.to_string()],
    );
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("409"));

    // Metrics: published and lag per connector (refreshed every 2 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(&runtime, &server);
        let published = sample(&text, "strata_connector_published_events_total", id);
        if published == Some(50.0) {
            assert_eq!(sample(&text, "strata_connector_lag_events", id), Some(0.0));
            assert_eq!(
                sample(&text, "strata_connector_dead_lettered_events_total", id),
                Some(0.0)
            );
            assert!(
                text.lines()
                    .any(|line| line.starts_with("strata_connector_state{")
                        && line.contains("state=\"running\"")
                        && line.ends_with(" 1")),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "published {published:?} in\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Stop: events appended meanwhile wait, and the lag says how many.
    succeeds(&server, &["stop", id]);
    assert_eq!(show(&server, id)["state"], "stopped");
    append(&runtime, &server, "clicat-1", 7);
    // Reset to the end: those 7 are skipped; start: only what comes after is published.
    succeeds(&server, &["reset", id, "--from", "end"]);
    succeeds(&server, &["start", id]);
    append(&runtime, &server, "clicat-3", 3);
    let shown = wait_until(&server, id, "the 3 after the reset", |shown| {
        shown["counters"]["published"] == 3 && shown["lag_events"] == 0
    });
    assert_eq!(shown["state"], "running");

    // Reset to the start with new settings: everything again, JetStream drops the re-sends.
    succeeds(
        &server,
        &["update", id, "--settings", r#"{"batch_events_max": 4}"#],
    );
    assert_eq!(
        show(&server, id)["definition"]["settings"]["batch_events_max"],
        4
    );
    succeeds(&server, &["reset", id, "--from", "start"]);
    let shown = wait_until(&server, id, "everything re-sent", |shown| {
        shown["counters"]["published"] == 60
    });
    assert_eq!(shown["counters"]["duplicates"], 53, "{shown:#}");
    let bad_place = connector(&server, &["reset", id, "--from", "middle"]);
    assert_eq!(bad_place.status.code(), Some(2));

    // A transform from a file: one that does not compile is refused with the server's
    // reason; a good one is kept and shown; --no-transform removes it.
    let scripts = tempfile::tempdir().unwrap();
    let bad = scripts.path().join("bad.js");
    std::fs::write(&bad, "(e) => {").unwrap();
    let refused = connector(
        &server,
        &["update", id, "--transform", bad.to_str().unwrap()],
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("the transform does not compile"), "{said}");
    let good = scripts.path().join("good.js");
    std::fs::write(&good, "(e) => ({ type: e.type })").unwrap();
    succeeds(
        &server,
        &["update", id, "--transform", good.to_str().unwrap()],
    );
    assert_eq!(
        show(&server, id)["definition"]["transform"],
        "(e) => ({ type: e.type })"
    );
    succeeds(&server, &["update", id, "--no-transform"]);
    assert!(show(&server, id)["definition"]["transform"].is_null());

    // Delete: gone, and saying so.
    succeeds(&server, &["delete", id]);
    let gone = connector(&server, &["show", id]);
    assert!(!gone.status.success());
    let said = String::from_utf8_lossy(&gone.stderr);
    assert!(
        said.contains("404") && said.contains("does not exist"),
        "{said}"
    );
    delete_js_stream(&runtime, &name);
}
