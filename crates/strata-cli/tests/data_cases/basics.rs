//! append, read, streams, metadata, delete and tombstone.

use serde_json::Value;

use std::collections::BTreeMap;

use super::{Target, assert_exit, assert_success, revisions, text, without_users};

/// Case run in both modes.
pub fn append_from_data_and_from_stdin_then_read_them_back_as_json(store: &Target) {
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

/// Case run in both modes.
pub fn malformed_stdin_line_is_refused_with_line_and_column_and_nothing_is_written(store: &Target) {
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

/// Case run in both modes.
pub fn expected_revision_conflict_exits_1_and_says_what_to_do(store: &Target) {
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

/// Case run in both modes.
pub fn read_forwards_backwards_from_and_count(store: &Target) {
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

/// Case run in both modes.
pub fn read_all_with_filters(store: &Target) {
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

/// Case run in both modes.
pub fn streams_lists_event_counts_and_last_revisions(store: &Target) {
    // A server's new store begins with its built-in users: counted apart (a local one does
    // not exist before its first append).
    let (categories_before, types_before) = if store.is_server() {
        (
            counts(&store.ok(&["streams", "--categories"])),
            type_counts(store),
        )
    } else {
        (BTreeMap::new(), BTreeMap::new())
    };
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
    let all = without_users(&store.ok(&["streams", "--all", "--json"]));
    let lines: Vec<Value> = all
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines[0]["stream"], "$$a-stream");
    assert_eq!(lines[2]["stream"], "b-stream");
    assert_eq!(lines[2]["event_count"], 3);
    assert_eq!(lines[2]["last_revision"], 2);

    store.ok(&["append", "b-other", "--type", "U", "--data", "1"]);
    let categories = store.ok(&["streams", "--categories"]);
    assert!(categories.starts_with("CATEGORY") && categories.contains("EVENTS"));
    assert_eq!(
        added(&categories_before, counts(&categories)),
        [("a".to_owned(), 1), ("b".to_owned(), 4)]
    );
    assert_eq!(
        added(&types_before, type_counts(store)),
        [
            ("$metadata".to_owned(), 1),
            ("T".to_owned(), 4),
            ("U".to_owned(), 1)
        ],
        "as $et-… holds them: the metadata of user streams included"
    );
}

/// Case run in both modes.
pub fn metadata_set_then_get_round_trips(store: &Target) {
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

/// Case run in both modes.
pub fn delete_then_read_says_not_found_and_tombstone_then_append_fails(store: &Target) {
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

/// The counts of a two-column table (`NAME COUNT`, after a header line).
fn counts(table: &str) -> BTreeMap<String, u64> {
    table
        .lines()
        .skip(1)
        .map(|line| {
            let (name, count) = line.split_once(char::is_whitespace).expect("two columns");
            (name.to_owned(), count.trim().parse().expect("a count"))
        })
        .collect()
}

/// The event counts of `streams --event-types`.
fn type_counts(store: &Target) -> BTreeMap<String, u64> {
    store
        .ok(&["streams", "--event-types", "--json"])
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).expect("JSON line");
            (
                line["event_type"].as_str().expect("type").to_owned(),
                line["event_count"].as_u64().expect("count"),
            )
        })
        .collect()
}

/// What `after` counts beyond `before`, by name.
fn added(before: &BTreeMap<String, u64>, after: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    after
        .into_iter()
        .map(|(name, count)| {
            let more = count - before.get(&name).copied().unwrap_or(0);
            (name, more)
        })
        .filter(|(_, more)| *more > 0)
        .collect()
}
