//! append with ids and metadata, tail, export and import.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

use super::{Target, assert_exit, json_lines, revisions, text, without_users};

/// How long a case waits for a line from `tail` before it calls it lost.
const LINE_WAIT: Duration = Duration::from_secs(30);

/// `append --id` twice with the same id writes one event; `--metadata` is stored.
pub fn append_with_id_is_idempotent_and_keeps_metadata(store: &Target) {
    let id = "5f0c6ad2-8f51-4d55-9b4e-0d2cbb1f7f10";
    let args = [
        "append",
        "order-1",
        "--type",
        "Paid",
        "--data",
        r#"{"amount":3}"#,
        "--id",
        id,
        "--metadata",
        r#"{"by":"alice"}"#,
    ];
    store.ok(&args);
    let mut again = args.to_vec();
    again.extend(["--expected-revision", "no-stream"]);
    store.ok(&again);
    let events = store.read_json(&["read", "order-1"]);
    assert_eq!(
        revisions(&events),
        [0],
        "the same id at the same place is written once"
    );
    assert_eq!(events[0]["id"], id);
    assert_eq!(events[0]["metadata"]["by"], "alice");

    let output = store.run(&["append", "s", "--type", "T", "--data", "1", "--id", "nope"]);
    assert_exit(&output, 2, "--id");
    let output = store.run_with_stdin(&["append", "s", "--type", "T", "--id", id], "1\n2\n");
    assert_exit(&output, 2, "--id names one event");
    let output = store.run(&[
        "append",
        "s",
        "--type",
        "T",
        "--data",
        "1",
        "--metadata",
        "{",
    ]);
    assert_exit(&output, 2, "--metadata line 1");
}

/// `tail --from-start` prints the history, then (on a server) events appended while it
/// runs; SIGINT ends it with exit code 0. A local store is locked by `tail` itself.
pub fn tail_follows_until_interrupted(store: &Target) {
    store.ok(&["append", "live-1", "--type", "Before", "--data", "1"]);
    store.ok(&["append", "other-1", "--type", "Other", "--data", "2"]);
    let mut tail = store.spawn(&["tail", "live-1", "--from-start", "--json"]);
    let mut all = store
        .is_server()
        .then(|| store.spawn(&["tail", "$all", "--type-prefix", "After", "--json"]));
    let lines = lines_of(&mut tail);
    let first = next_line(&lines, &mut tail);
    assert_eq!(json_lines(&first)[0]["type"], "Before");
    if let Some(all_tail) = &mut all {
        let all_lines = lines_of(all_tail);
        // The $all tail starts at the end: repeat the append until it has subscribed.
        let seen = loop {
            store.ok(&["append", "live-1", "--type", "After", "--data", "3"]);
            if let Ok(line) = all_lines.recv_timeout(Duration::from_millis(500)) {
                break line;
            }
            assert!(
                all_tail.try_wait().expect("status").is_none(),
                "tail $all exited"
            );
        };
        assert_eq!(json_lines(&seen)[0]["stream"], "live-1");
        let second = next_line(&lines, &mut tail);
        assert_eq!(
            json_lines(&second)[0]["type"],
            "After",
            "the live event follows"
        );
        interrupt(all_tail);
    }
    interrupt(&mut tail);
}

fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn next_line(lines: &mpsc::Receiver<String>, child: &mut Child) -> String {
    match lines.recv_timeout(LINE_WAIT) {
        Ok(line) => line,
        Err(error) => {
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("no line from tail within {LINE_WAIT:?} ({error:?}); stderr: {stderr}");
        }
    }
}

/// Sends SIGINT and expects a clean exit.
fn interrupt(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let status = child.wait().expect("tail ends");
    assert_eq!(status.code(), Some(0), "tail ends cleanly on SIGINT");
}

/// A file of hand-written lines: a binary event and JSON with line breaks (base64).
const EXTRA_LINES: &str = concat!(
    r#"{"stream":"blob-1","revision":0,"id":"00000000-0000-4000-8000-000000000001","type":"Blob","content_type":"application/octet-stream","data_base64":"AAEC/w=="}"#,
    "\n",
    r#"{"stream":"pretty-1","revision":0,"id":"00000000-0000-4000-8000-000000000002","type":"Pretty","content_type":"application/json","data_base64":"ewogICJhIjogMQp9","metadata":{"by":"x"}}"#,
    "\n",
);

/// export → import into a fresh store → export is byte-identical; importing again writes
/// nothing and the export stays identical.
pub fn export_then_import_gives_a_byte_identical_export_and_rerunning_changes_nothing(
    store: &Target,
) {
    let files = tempfile::tempdir().expect("temp dir");
    let extra = files.path().join("extra.ndjson");
    std::fs::write(&extra, EXTRA_LINES).expect("write");
    store.ok(&["import", extra.to_str().expect("UTF-8 path")]);
    store.ok(&[
        "append",
        "order-1",
        "--type",
        "Placed",
        "--data",
        r#"{"total": 10}"#,
    ]);
    let lines: String = (0..5).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    let output = store.run_with_stdin(&["append", "counter-1", "--type", "Counted"], &lines);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    store.ok(&["metadata", "set", "counter-1", r#"{"$maxCount":2}"#]);
    store.ok(&["append", "gone-1", "--type", "T", "--data", "{}"]);
    store.ok(&["delete", "gone-1"]);
    // Appending to a soft-deleted stream revives it: the store writes `$$gone-1` itself.
    store.ok(&["append", "gone-1", "--type", "T", "--data", "{}"]);
    // An ordinary event may carry the tombstone's type; JSON `null` is a payload too.
    store.ok(&[
        "append",
        "odd-1",
        "--type",
        "$streamDeleted",
        "--data",
        "{}",
    ]);
    store.ok(&[
        "append",
        "nulls-1",
        "--type",
        "T",
        "--data",
        "null",
        "--metadata",
        "null",
    ]);
    store.ok(&["append", "dead-1", "--type", "T", "--data", "{}"]);
    store.ok(&["tombstone", "dead-1"]);

    let original = files.path().join("original.ndjson");
    store.ok(&["export", "--to", original.to_str().expect("UTF-8 path")]);
    // A server's export holds its built-in users too; the import keeps the copy's own.
    let exported = without_users(&std::fs::read_to_string(&original).expect("export written"));
    assert_eq!(
        exported.lines().count(),
        2 + 1 + 5 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1
    );
    assert!(
        exported.contains(r#""data":{"total": 10}"#),
        "JSON kept verbatim"
    );
    assert!(
        exported.contains(r#""data_base64":"AAEC/w==""#),
        "binary kept"
    );
    assert!(exported.contains(r#"{"stream":"dead-1","type":"$streamDeleted"}"#));

    let copy = store.fresh_like();
    let original_path = original.to_str().expect("UTF-8 path");
    let output = copy.run(&["import", original_path]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("imported 16 events and 1 tombstones"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        without_users(&copy.ok(&["export"])),
        exported,
        "the copy exports the same bytes"
    );
    assert_eq!(
        copy.ok(&["streams", "--all"]),
        store.ok(&["streams", "--all"])
    );
    assert_eq!(
        copy.read_json(&["read", "counter-1"]).len(),
        2,
        "$maxCount holds"
    );

    copy.ok(&["import", original_path]);
    assert_eq!(
        without_users(&copy.ok(&["export"])),
        exported,
        "a second import changes nothing"
    );
    let events = json_lines(&without_users(&copy.ok(&["read", "$all", "--json"])));
    assert_eq!(events.len(), 17, "no event was written twice");
    assert_eq!(revisions(&copy.read_json(&["read", "gone-1"])), [1]);
    assert_eq!(revisions(&copy.read_json(&["read", "odd-1"])), [0]);
    let blob = copy.read_json(&["read", "blob-1"]);
    assert_eq!(blob[0]["content_type"], "application/octet-stream");
}

/// A malformed line stops the import with its line number; everything before it is
/// imported; after fixing it, the same import completes without writing anything twice.
pub fn a_malformed_import_line_is_named_and_everything_before_it_is_imported(store: &Target) {
    let line = |revision: u64| {
        format!(
            r#"{{"stream":"a-1","revision":{revision},"id":"00000000-0000-4000-8000-00000000000{revision}","type":"T","content_type":"application/json","data":{revision}}}"#
        )
    };
    let files = tempfile::tempdir().expect("temp dir");
    let path = files.path().join("broken.ndjson");
    let path_text = path.to_str().expect("UTF-8 path");
    let broken = format!("{}\n{}\n{{\"stream\":\n{}\n", line(0), line(1), line(3));
    std::fs::write(&path, broken).expect("write");
    let output = store.run(&["import", path_text]);
    assert_exit(&output, 2, "broken.ndjson line 3");
    assert!(text(&output.stderr).contains("Every event before line 3 was imported"));
    assert_eq!(revisions(&store.read_json(&["read", "a-1"])), [0, 1]);

    let fixed = format!("{}\n{}\n{}\n{}\n", line(0), line(1), line(2), line(3));
    std::fs::write(&path, fixed).expect("write");
    store.ok(&["import", path_text]);
    let events = store.read_json(&["read", "a-1"]);
    assert_eq!(revisions(&events), [0, 1, 2, 3]);
    assert_eq!(events[3]["data"], 3);
    assert_eq!(
        json_lines(&without_users(&store.ok(&["read", "$all", "--json"]))).len(),
        4,
        "nothing written twice"
    );

    let mut not_text = format!("{}\n", line(4)).into_bytes();
    not_text.extend_from_slice(b"{\"stream\":\"a-1\xff\"}\n");
    std::fs::write(&path, not_text).expect("write");
    let output = store.run(&["import", path_text]);
    assert_exit(&output, 2, "broken.ndjson line 2");
    assert!(text(&output.stderr).contains("not UTF-8"));
    assert_eq!(
        revisions(&store.read_json(&["read", "a-1"])),
        [0, 1, 2, 3, 4]
    );

    let gap = r#"{"stream":"gap-1","revision":2,"id":"00000000-0000-4000-8000-0000000000a2","type":"T","content_type":"application/json","data":2}"#;
    std::fs::write(&path, format!("{gap}\n")).expect("write");
    let output = store.run(&["import", path_text]);
    assert_exit(&output, 1, "no lines for the revisions before 2");
    assert_exit(&store.run(&["read", "gap-1"]), 1, "not found");
}
