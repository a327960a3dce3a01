//! The `strata` binary end to end: a small bench, then verify on what it wrote.

use std::path::Path;
use std::process::{Command, Output};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Keys `strata bench --json` promises, each a positive number.
const FIGURES: &[&str] = &[
    "fdatasync_per_sec",
    "disk_write_bytes_per_sec",
    "append_batched_events_per_sec",
    "append_single_events_per_sec",
    "append_single_p50_us",
    "append_single_p99_us",
    "read_all_events_per_sec",
    "read_stream_p50_us",
    "read_stream_p99_us",
    "reopen_ms",
    "reopen_events",
    "memory_resident_bytes",
    "auth_argon2id_verify_ms",
    "auth_cached_verify_us",
    "memory_streams_total",
    "events_total",
    "machine_cores",
];

fn small_bench(data_dir: &Path) -> Output {
    Command::new(STRATA)
        .args(["bench", "--data-dir"])
        .arg(data_dir)
        .args([
            "--json",
            "--events-batched",
            "20000",
            "--events-single",
            "5000",
        ])
        .args([
            "--streams",
            "1000",
            "--read-streams",
            "50",
            "--stream-reads",
            "500",
            "--memory-streams",
            "2000",
        ])
        .args(["--baseline-fsync-ms", "100", "--baseline-write-mib", "16"])
        .output()
        .expect("strata runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn bench_prints_every_figure_and_leaves_a_store_that_verifies() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("store");
    let output = small_bench(&data_dir);
    assert!(
        output.status.success(),
        "bench failed: {}",
        text(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    for key in FIGURES {
        let figure = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing in {report}"));
        assert!(figure > 0.0, "{key} is {figure}, not positive");
    }
    assert_eq!(report["durability"], "fsync");
    // The write baseline wrote --baseline-write-mib (more than the batched events' 4 MB),
    // in the default 2 MiB synced writes.
    assert_eq!(report["disk_write_baseline_bytes"], 16 * 1024 * 1024);
    assert_eq!(report["disk_write_baseline_group_bytes"], 2 * 1024 * 1024);
    assert_eq!(report["events_total"], 20_000 + 5_000 + 50 * 100 + 2_000);
    assert!(report["memory_streams_total"].as_u64() >= Some(1_000 + 50 + 2_000));

    let verify = Command::new(STRATA)
        .args(["verify", "--data-dir"])
        .arg(&data_dir)
        .output()
        .expect("strata runs");
    assert!(
        verify.status.success(),
        "verify failed: {}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );
}

#[test]
fn bench_refuses_a_directory_that_is_not_empty() {
    let temp = tempfile::tempdir().expect("temp dir");
    std::fs::write(temp.path().join("precious.seg"), b"someone's data").expect("write");
    let output = small_bench(temp.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("is not empty"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        std::fs::read(temp.path().join("precious.seg")).expect("kept"),
        b"someone's data"
    );
}

#[test]
fn verify_of_a_missing_directory_says_what_to_do() {
    let temp = tempfile::tempdir().expect("temp dir");
    let output = Command::new(STRATA)
        .args(["verify", "--data-dir"])
        .arg(temp.path().join("absent"))
        .output()
        .expect("strata runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("--data-dir of an existing store"));
}

#[test]
fn usage_errors_exit_with_two() {
    let output = Command::new(STRATA)
        .args(["bench"])
        .output()
        .expect("strata runs");
    assert_eq!(output.status.code(), Some(2));
    let output = Command::new(STRATA)
        .args(["bench", "--data-dir", "x", "--durability", "sometimes"])
        .output()
        .expect("strata runs");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn help_shows_an_example_for_each_subcommand() {
    for subcommand in ["bench", "verify"] {
        let output = Command::new(STRATA)
            .args([subcommand, "--help"])
            .output()
            .expect("strata runs");
        assert!(output.status.success());
        assert!(text(&output.stdout).contains(&format!("strata {subcommand} --data-dir")));
    }
}
