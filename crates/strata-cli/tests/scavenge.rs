//! `strata scavenge` and `strata forget` on a local data directory, end to end.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn strata(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(STRATA)
        .args(args)
        .env_remove("STRATA_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("stdin written");
    }
    drop(input);
    child.wait_with_output().expect("strata ends")
}

fn ok(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "strata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null)
}

fn occurs_in_some_file(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).expect("dir").any(|entry| {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            occurs_in_some_file(&path, needle)
        } else {
            let bytes = std::fs::read(&path).expect("file");
            (0..bytes.len())
                .filter(|&at| bytes[at] == needle[0])
                .any(|at| bytes[at..].starts_with(needle))
        }
    })
}

#[test]
fn scavenge_and_forget_give_back_space_and_remove_the_bytes() {
    const MARKER: &str = "MARKER-c0ffee-PII";
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().expect("utf-8 path");
    let lines: String = (0..20)
        .map(|n| format!("{{\"who\":\"{MARKER}\",\"n\":{n}}}\n"))
        .collect();
    ok(&strata(
        &[
            "append",
            "person-1",
            "--type",
            "Registered",
            "--data-dir",
            data,
            // Small segments: each new store zero-fills two.
            "--segment-size-mib",
            "32",
        ],
        Some(&lines),
    ));
    let lines: String = (0..30).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    ok(&strata(
        &["append", "other-1", "--type", "Noted", "--data-dir", data],
        Some(&lines),
    ));
    ok(&strata(
        &["append", "keep-1", "--type", "Noted", "--data-dir", data],
        Some(&lines),
    ));
    ok(&strata(&["delete", "other-1", "--data-dir", data], None));
    assert!(occurs_in_some_file(&data_dir, MARKER.as_bytes()));

    let report = ok(&strata(
        &[
            "scavenge",
            "--data-dir",
            data,
            "--throttle-percent",
            "50",
            "--json",
        ],
        None,
    ));
    assert_eq!(report["events_removed"], 29, "{report}");
    let output = strata(&["read", "other-1", "--data-dir", data], None);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a deleted stream stays not found"
    );

    let report = ok(&strata(
        &["forget", "person-1", "--data-dir", data, "--json"],
        None,
    ));
    assert_eq!(report["events_removed"], 20, "{report}");
    assert_eq!(report["forgotten_streams"][0], "person-1");
    assert!(!occurs_in_some_file(&data_dir, MARKER.as_bytes()));
    ok(&strata(&["verify", "--data-dir", data], None));
    let output = strata(&["read", "keep-1", "--json", "--data-dir", data], None);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 30);

    // The human summary.
    let output = strata(&["scavenge", "--data-dir", data], None);
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(summary.contains("events removed:      0"), "{summary}");
    assert!(summary.contains("disk space of log:"), "{summary}");
}

#[test]
fn bad_arguments_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let output = strata(&["scavenge", "--data-dir", data], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("holds no store"));
    assert!(!dir.path().join("log").exists());
    let output = strata(
        &["scavenge", "--data-dir", data, "--throttle-percent", "0"],
        None,
    );
    assert_eq!(output.status.code(), Some(2));
    let output = strata(&["forget", "--data-dir", data], None);
    assert_eq!(output.status.code(), Some(2), "a stream is required");
    for (subcommand, example) in [
        ("scavenge", "strata scavenge --data-dir"),
        ("forget", "strata forget person-42 --data-dir"),
    ] {
        let output = strata(&[subcommand, "--help"], None);
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stdout).contains(example));
    }
}
