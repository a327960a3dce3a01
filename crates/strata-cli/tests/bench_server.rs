//! `strata bench --server` with tiny sizes against a real `strata serve` process.

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;

use std::process::{Command, Output};

use serde_json::Value;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Sizes small enough for a debug build, large enough for several calls per phase.
const TINY: [&str; 12] = [
    "--events-batched",
    "2500",
    "--batch-events",
    "500",
    "--batched-tasks",
    "2",
    "--events-single",
    "200",
    "--single-tasks",
    "4",
    "--official-appends",
    "10",
];

fn bench(args: &[&str], server_env: Option<&str>) -> Output {
    let mut command = Command::new(STRATA);
    command.arg("bench").args(args).env_remove("STRATA_SERVER");
    if let Some(url) = server_env {
        command.env("STRATA_SERVER", url);
    }
    command.output().expect("strata bench runs")
}

fn figures_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "strata bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

/// How many events `$all` of the server at `url` holds.
fn events_in_all(url: &str) -> u64 {
    let output = Command::new(STRATA)
        .args(["read", "$all", "--json", "--server", url])
        .output()
        .expect("strata read runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).lines().count() as u64
}

fn positive(figures: &Value, key: &str) -> f64 {
    let value = figures[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is missing from {figures}"));
    assert!(value > 0.0, "{key} is {value}");
    value
}

#[test]
fn the_grpc_figures_and_the_baseline_come_from_one_run() {
    let server = support::Server::start();
    let baseline_dir = tempfile::tempdir().expect("temp dir");
    let url = format!("kdb://127.0.0.1:{}?tls=false", server.port());
    // A new server's `$all` begins with the events that create its built-in users.
    let initial = events_in_all(&url);
    assert!(initial > 0, "the built-in users' events");
    let mut args = vec!["--server", url.as_str(), "--json"];
    args.extend(TINY);
    let data_dir = baseline_dir.path().to_str().expect("UTF-8 path");
    args.extend([
        "--data-dir",
        data_dir,
        "--baseline-fsync-ms",
        "20",
        "--baseline-write-mib",
        "1",
    ]);
    let figures = figures_of(&bench(&args, None));
    for key in [
        "grpc_batch_append_events_per_sec",
        "grpc_append_single_events_per_sec",
        "grpc_append_single_p50_us",
        "grpc_append_single_p99_us",
        "grpc_read_all_events_per_sec",
        "official_client_read_all_events_per_sec",
        "official_client_append_single_events_per_sec",
        "official_client_nodelay_append_single_events_per_sec",
        "official_client_nagle_ratio",
        "fdatasync_per_sec",
        "disk_write_bytes_per_sec",
    ] {
        positive(&figures, key);
    }
    assert_eq!(figures["grpc_batch_append_events"], 2500);
    assert_eq!(figures["grpc_append_single_events"], 200);
    assert_eq!(figures["grpc_read_all_events"], initial + 2700);
    assert_eq!(figures["official_client_read_all_events"], initial + 2700);
    assert_eq!(figures["official_client_append_single_events"], 10);
    assert_eq!(figures["official_client_nodelay_append_single_events"], 10);
    assert_eq!(
        std::fs::read_dir(baseline_dir.path())
            .expect("list")
            .count(),
        0,
        "the baseline leaves no file behind"
    );

    // Again through STRATA_SERVER and another scheme: $all now holds both runs' events
    // (the first run's official-client phase, after its read, wrote 2 × (1 warm-up + 10)),
    // and without a directory there is no baseline.
    let env_url = format!("kurrentdb://127.0.0.1:{}?tls=false", server.port());
    let mut args = vec!["--json"];
    args.extend(TINY);
    let figures = figures_of(&bench(&args, Some(&env_url)));
    assert_eq!(figures["grpc_read_all_events"], initial + 5400 + 22);
    assert!(figures.get("fdatasync_per_sec").is_none(), "{figures}");
}

#[test]
fn tls_urls_without_a_ca_and_a_missing_target_are_refused_clearly() {
    // TLS is the default; it needs the server's CA file.
    let refused = bench(&["--server", "esdb://127.0.0.1:2113"], None);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("tlsCaFile") && message.contains("tls=false"),
        "{message}"
    );

    // Neither a directory nor a server is a usage error.
    let neither = bench(&[], None);
    assert_eq!(neither.status.code(), Some(2));
    let message = String::from_utf8_lossy(&neither.stderr);
    assert!(message.contains("--data-dir"), "{message}");
}
