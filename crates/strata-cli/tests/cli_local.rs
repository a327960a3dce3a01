//! The local-mode subcommands (`append`, `read`, `streams`, `metadata`, `delete`,
//! `tombstone`) end to end: the `strata` binary against temporary data directories.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// A fresh data directory (not yet created) inside a temp dir owned by the test.
struct Store {
    _temp: TempDir,
    data_dir: PathBuf,
}

impl Store {
    fn new() -> Store {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        Store {
            _temp: temp,
            data_dir,
        }
    }

    /// Runs `strata ARGS --data-dir DIR` with `stdin` piped in.
    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = Command::new(STRATA);
        command.args(args).arg("--data-dir").arg(&self.data_dir);
        if args.first() == Some(&"append") {
            // Small segments: each new store zero-fills two.
            command.args(["--segment-size-mib", "32"]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata runs");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(stdin.as_bytes())
            .expect("stdin written");
        child.wait_with_output().expect("strata finishes")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    /// Runs and asserts success, returning stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_success(&output, args);
        text(&output.stdout)
    }

    /// `read ARGS --json`, parsed.
    fn read_json(&self, args: &[&str]) -> Vec<Value> {
        let mut args = args.to_vec();
        args.push("--json");
        self.ok(&args)
            .lines()
            .map(|line| serde_json::from_str(line).expect("each --json line is JSON"))
            .collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(output: &Output, args: &[&str]) {
    assert!(
        output.status.success(),
        "strata {args:?} failed ({:?}): {}",
        output.status,
        text(&output.stderr)
    );
}

fn assert_exit(output: &Output, code: i32, stderr_has: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        stderr.contains(stderr_has),
        "stderr lacks {stderr_has:?}: {stderr}"
    );
}

fn revisions(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|event| event["revision"].as_u64().expect("revision"))
        .collect()
}

#[test]
fn append_from_data_and_from_stdin_then_read_them_back_as_json() {
    let store = Store::new();
    store.ok(&[
        "append",
        "order-1",
        "--type",
        "Placed",
        "--data",
        r#"{"total":10}"#,
    ]);
    let output = store.run_with_stdin(
        &[
            "append",
            "order-1",
            "--type",
            "Paid",
            "--expected-revision",
            "0",
        ],
        "{\"amount\":10}\n\n{\"amount\":2}\n",
    );
    assert_success(&output, &["append from stdin"]);
    assert!(text(&output.stdout).contains("appended 2 events to order-1: last revision 2"));

    let events = store.read_json(&["read", "order-1"]);
    assert_eq!(revisions(&events), [0, 1, 2]);
    assert_eq!(events[0]["type"], "Placed");
    assert_eq!(events[0]["data"]["total"], 10);
    assert_eq!(events[2]["data"]["amount"], 2);
    assert_eq!(events[1]["stream"], "order-1");
    assert_eq!(events[1]["content_type"], "application/json");
    for event in &events {
        for key in ["position", "id", "created", "metadata"] {
            assert!(event.get(key).is_some(), "{key} missing in {event}");
        }
    }
}

#[test]
fn malformed_stdin_line_is_refused_with_line_and_column_and_nothing_is_written() {
    let store = Store::new();
    store.ok(&["append", "s", "--type", "T", "--data", "{}"]);
    let output = store.run_with_stdin(
        &["append", "s", "--type", "T"],
        "{\"ok\":1}\n{\"ok\":2}\n{\"broken\": tru}\n{\"ok\":3}\n",
    );
    assert_exit(&output, 2, "stdin line 3, column");
    assert!(text(&output.stderr).contains("nothing was written"));
    assert_eq!(revisions(&store.read_json(&["read", "s"])), [0]);

    let output = store.run(&["append", "s", "--type", "T", "--data", "{\"a\":"]);
    assert_exit(&output, 2, "--data line 1, column 5");
}

#[test]
fn expected_revision_conflict_exits_1_and_says_what_to_do() {
    let store = Store::new();
    store.ok(&["append", "s", "--type", "T", "--data", "1"]);
    let output = store.run(&[
        "append",
        "s",
        "--type",
        "T",
        "--data",
        "2",
        "--expected-revision",
        "no-stream",
    ]);
    assert_exit(
        &output,
        1,
        "wrong expected revision on stream s: expected no stream, but it is at revision 0",
    );
    assert!(text(&output.stderr).contains("--expected-revision"));
    let output = store.run(&["append", "s", "--type", "T", "--expected-revision", "soon"]);
    assert_exit(&output, 2, "is not one of any, no-stream, exists");
}

#[test]
fn read_forwards_backwards_from_and_count() {
    let store = Store::new();
    let lines: String = (0..5).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    let output = store.run_with_stdin(&["append", "s", "--type", "T"], &lines);
    assert_success(&output, &["append"]);

    assert_eq!(revisions(&store.read_json(&["read", "s"])), [0, 1, 2, 3, 4]);
    assert_eq!(
        revisions(&store.read_json(&["read", "s", "--backwards"])),
        [4, 3, 2, 1, 0]
    );
    assert_eq!(
        revisions(&store.read_json(&["read", "s", "--from", "2", "--count", "2"])),
        [2, 3]
    );
    assert_eq!(
        revisions(&store.read_json(&["read", "s", "--backwards", "--from", "3", "--count", "2"])),
        [3, 2]
    );

    let table = store.ok(&["read", "s", "--count", "1"]);
    let mut rows = table.lines();
    let header = rows.next().expect("header");
    assert!(header.starts_with("POSITION"), "{table}");
    assert!(
        header.contains("STREAM") && header.contains("CREATED"),
        "{table}"
    );
    let row = rows.next().expect("one row");
    assert!(row.contains(" s ") && row.ends_with("{\"n\":0}"), "{table}");
}

#[test]
fn read_all_with_filters() {
    let store = Store::new();
    store.ok(&["append", "order-1", "--type", "Placed", "--data", "{}"]);
    store.ok(&["append", "cart-1", "--type", "Added", "--data", "{}"]);
    store.ok(&["append", "order-2", "--type", "Placed", "--data", "{}"]);
    store.ok(&["append", "order-2", "--type", "Shipped", "--data", "{}"]);

    let streams = |events: Vec<Value>| -> Vec<String> {
        events
            .iter()
            .map(|event| event["stream"].as_str().expect("stream").to_owned())
            .collect()
    };
    let all = store.read_json(&["read", "$all", "--stream-prefix", "order-"]);
    assert_eq!(streams(all), ["order-1", "order-2", "order-2"]);
    let placed = store.read_json(&["read", "$all", "--type-prefix", "Pla"]);
    assert_eq!(streams(placed), ["order-1", "order-2"]);
    let regex = store.read_json(&["read", "$all", "--stream-regex", "^cart-\\d$"]);
    assert_eq!(streams(regex), ["cart-1"]);
    let shipped = store.read_json(&["read", "$all", "--type-regex", "Ship", "--backwards"]);
    assert_eq!(streams(shipped), ["order-2"]);
    let last_two = store.read_json(&["read", "$all", "--backwards", "--count", "2"]);
    assert_eq!(streams(last_two), ["order-2", "order-2"]);

    let output = store.run(&["read", "$all", "--stream-regex", "("]);
    assert_exit(&output, 2, "does not compile");
    let output = store.run(&["read", "order-1", "--type-prefix", "P"]);
    assert_exit(&output, 2, "filters apply to `$all` only");
}

#[test]
fn streams_lists_event_counts_and_last_revisions() {
    let store = Store::new();
    let output = store.run_with_stdin(&["append", "b-stream", "--type", "T"], "1\n2\n3\n");
    assert_success(&output, &["append"]);
    store.ok(&["append", "a-stream", "--type", "T", "--data", "1"]);
    store.ok(&["metadata", "set", "a-stream", "{\"owner\":\"me\"}"]);

    let table = store.ok(&["streams"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["STREAM", "EVENTS", "LAST", "REVISION"],
            vec!["a-stream", "1", "0"],
            vec!["b-stream", "3", "2"],
        ]
    );
    let all = store.ok(&["streams", "--all", "--json"]);
    let lines: Vec<Value> = all
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines[0]["stream"], "$$a-stream");
    assert_eq!(lines[2]["stream"], "b-stream");
    assert_eq!(lines[2]["event_count"], 3);
    assert_eq!(lines[2]["last_revision"], 2);
}

#[test]
fn metadata_set_then_get_round_trips() {
    let store = Store::new();
    store.ok(&["append", "s", "--type", "T", "--data", "{}"]);
    let written = store.ok(&[
        "metadata",
        "set",
        "s",
        r#"{"$maxCount":5,"owner":"billing"}"#,
    ]);
    assert!(written.contains("revision 0 of $$s"), "{written}");
    let got: Value =
        serde_json::from_str(store.ok(&["metadata", "get", "s"]).trim()).expect("JSON");
    assert_eq!(got["$maxCount"], 5);
    assert_eq!(got["owner"], "billing");

    let output = store.run(&["metadata", "set", "s", "{\"$maxCount\":"]);
    assert_exit(&output, 2, "metadata line 1, column 13");
    let output = store.run(&["metadata", "set", "s", "{}", "--expected-revision", "5"]);
    assert_exit(&output, 1, "wrong expected revision on stream $$s");
}

#[test]
fn delete_then_read_says_not_found_and_tombstone_then_append_fails() {
    let store = Store::new();
    store.ok(&["append", "gone", "--type", "T", "--data", "{}"]);
    let output = store.run(&["delete", "gone", "--expected-revision", "7"]);
    assert_exit(&output, 1, "wrong expected revision");
    store.ok(&["delete", "gone", "--expected-revision", "0"]);
    let output = store.run(&["read", "gone"]);
    assert_exit(&output, 1, "stream gone not found");

    store.ok(&["append", "dead", "--type", "T", "--data", "{}"]);
    store.ok(&["tombstone", "dead", "--expected-revision", "exists"]);
    let output = store.run(&["append", "dead", "--type", "T", "--data", "{}"]);
    assert_exit(&output, 1, "stream dead is tombstoned");
    let output = store.run(&["read", "dead"]);
    assert_exit(&output, 1, "tombstoned");
}

#[test]
fn reading_a_directory_without_a_store_is_refused_without_creating_one() {
    let store = Store::new();
    let output = store.run(&["read", "s"]);
    assert_exit(&output, 1, "holds no store");
    assert!(!store.data_dir.exists());

    std::fs::create_dir_all(&store.data_dir).expect("dir");
    std::fs::write(store.data_dir.join("notes.txt"), "not a store").expect("file");
    let output = store.run(&["streams"]);
    assert_exit(&output, 1, "holds no store");
    let entries = std::fs::read_dir(&store.data_dir).expect("dir").count();
    assert_eq!(entries, 1, "nothing was created beside notes.txt");
}

/// A `strata serve` child killed on drop.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data_dir: &Path) -> Serving {
    let mut child = Command::new(STRATA)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--port", "0", "--insecure", "--segment-size-mib", "32"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("strata serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let serving = Serving(child);
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines
        .next()
        .expect("a ready line")
        .expect("stdout readable");
    assert!(ready.starts_with("strata serve: ready on "), "{ready}");
    // Keeps draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    serving
}

#[test]
fn a_store_held_by_a_running_server_is_refused_with_a_clear_message() {
    let store = Store::new();
    let _server = serve(&store.data_dir);
    let output = store.run(&["read", "s"]);
    assert_exit(&output, 1, "a server holds it");
    let output = store.run(&["append", "s", "--type", "T", "--data", "{}"]);
    assert_exit(&output, 1, "a server holds it");
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    for subcommand in [
        vec!["append"],
        vec!["read"],
        vec!["streams"],
        vec!["metadata", "get"],
        vec!["metadata", "set"],
        vec!["delete"],
        vec!["tombstone"],
    ] {
        let output = Command::new(STRATA)
            .args(&subcommand)
            .arg("--help")
            .output()
            .expect("strata runs");
        assert!(output.status.success(), "{subcommand:?} --help failed");
        let help = text(&output.stdout);
        assert!(help.contains("Example"), "{subcommand:?} --help: {help}");
        assert!(help.contains("--data-dir"), "{subcommand:?} --help: {help}");
    }
}
