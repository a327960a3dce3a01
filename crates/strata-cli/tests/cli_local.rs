//! The data subcommands end to end on local data directories: the `strata` binary with
//! `--data-dir`. The same cases run against a server in `cli_server.rs`.

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;
#[macro_use]
mod data_cases;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use data_cases::{STRATA, Target, assert_exit, text};

data_cases!(Target::local());

#[test]
fn reading_a_directory_without_a_store_is_refused_without_creating_one() {
    let store = Target::local();
    let Target::Directory { data_dir, .. } = &store else {
        unreachable!("a local target")
    };
    let output = store.run(&["read", "s"]);
    assert_exit(&output, 1, "holds no store");
    assert!(!data_dir.exists());

    std::fs::create_dir_all(data_dir).expect("dir");
    std::fs::write(data_dir.join("notes.txt"), "not a store").expect("file");
    let output = store.run(&["streams"]);
    assert_exit(&output, 1, "holds no store");
    let entries = std::fs::read_dir(data_dir).expect("dir").count();
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
    let store = Target::local();
    let Target::Directory { data_dir, .. } = &store else {
        unreachable!("a local target")
    };
    let _server = serve(data_dir);
    let output = store.run(&["read", "s"]);
    assert_exit(&output, 1, "a server (or another strata command) holds");
    assert!(text(&output.stderr).contains("--server URL"));
    let output = store.run(&["append", "s", "--type", "T", "--data", "{}"]);
    assert_exit(&output, 1, "a server (or another strata command) holds");
}

#[test]
fn without_a_place_the_command_says_where_to_point_it() {
    let output = Command::new(STRATA)
        .args(["read", "s"])
        .env_remove("STRATA_SERVER")
        .output()
        .expect("strata runs");
    assert_exit(
        &output,
        2,
        "--data-dir DIR for a local store, or --server URL",
    );
    let output = Command::new(STRATA)
        .args([
            "read",
            "s",
            "--data-dir",
            "x",
            "--server",
            "kdb://h:1?tls=false",
        ])
        .output()
        .expect("strata runs");
    assert_exit(&output, 2, "cannot be used with");
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    for subcommand in [
        vec!["append"],
        vec!["read"],
        vec!["tail"],
        vec!["export"],
        vec!["import"],
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
        assert!(help.contains("--server"), "{subcommand:?} --help: {help}");
    }
}

/// A store whose export is much larger than a pipe's buffer.
fn store_with_events(count: usize) -> Target {
    let store = Target::local();
    let line = format!("{{\"padding\":\"{}\"}}\n", "x".repeat(200));
    store.run_with_stdin(
        &["append", "bulk-1", "--type", "Padded"],
        &line.repeat(count),
    );
    store
}

#[test]
fn export_exits_non_zero_when_the_reader_of_its_output_goes_away() {
    let store = store_with_events(5_000);
    let mut export = store.spawn(&["export"]);
    let mut lines = BufReader::new(export.stdout.take().expect("piped stdout")).lines();
    let first = lines.next().expect("a line").expect("readable");
    assert!(first.contains("bulk-1"), "{first}");
    // The reader goes away after one line of an export of about a megabyte.
    drop(lines);
    let output = export.wait_with_output().expect("export ends");
    assert_exit(&output, 1, "the export is incomplete");
    assert!(
        text(&output.stderr).contains("the reader of the output went away"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn export_exits_non_zero_when_the_disk_is_full() {
    let store = store_with_events(100);
    let full = std::fs::File::create("/dev/full").expect("/dev/full opens");
    let output = store
        .command(&["export"])
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .expect("strata runs");
    assert_exit(&output, 1, "the export is incomplete");
    let output = store.run(&["export", "--to", "/dev/full"]);
    assert_exit(&output, 1, "cannot write the export to /dev/full");
}

#[test]
fn export_leaves_out_persistent_subscription_state_unless_asked() {
    let store = Target::local();
    let checkpoint = "$persistentsubscription-orders::billing-checkpoint";
    let parked = "$persistentsubscription-orders::billing-parked";
    for (stream, event_type, data) in [
        ("orders", "Placed", r#"{"total":1}"#),
        (
            "$persistentSubscriptionConfig",
            "$PersistentConfig",
            r#"{"version":1,"groups":[]}"#,
        ),
        (
            checkpoint,
            "$SubscriptionCheckpoint",
            r#"{"done_through":0}"#,
        ),
        (parked, "$>", r#""0@orders""#),
    ] {
        store.ok(&["append", stream, "--type", event_type, "--data", data]);
    }
    store.ok(&["metadata", "set", checkpoint, r#"{"$maxCount":1}"#]);
    let streams = |export: &str| -> Vec<String> {
        data_cases::json_lines(export)
            .iter()
            .map(|line| line["stream"].as_str().expect("stream").to_owned())
            .collect()
    };

    let output = store.run(&["export"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(streams(&text(&output.stdout)), ["orders", parked]);
    assert!(
        text(&output.stderr).contains("left out 3 events"),
        "{}",
        text(&output.stderr)
    );
    let everything = store.ok(&["export", "--include-persistent-subscription-state"]);
    assert_eq!(
        streams(&everything),
        [
            "orders",
            "$persistentSubscriptionConfig",
            checkpoint,
            parked,
            &format!("$${checkpoint}"),
        ]
    );
}
