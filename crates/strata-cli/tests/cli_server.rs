//! The data subcommands end to end on a server: the `strata` binary with `--server` against
//! a spawned `strata serve` (loopback, free port). The same cases run on local data
//! directories in `cli_local.rs`.

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;
#[macro_use]
mod data_cases;

use std::process::Command;

use data_cases::{STRATA, Target, assert_exit, revisions};

data_cases!(Target::server());

#[test]
fn the_server_comes_from_strata_server_when_no_flag_is_given() {
    let target = Target::server();
    let Target::Server(server) = &target else {
        unreachable!("a server target")
    };
    let output = Command::new(STRATA)
        .args(["append", "env-1", "--type", "T", "--data", "{}"])
        .env("STRATA_SERVER", server.url())
        .output()
        .expect("strata runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(revisions(&target.read_json(&["read", "env-1"])), [0]);
}

#[test]
fn an_unreachable_server_is_an_operational_error_and_a_malformed_url_a_usage_error() {
    let output = Command::new(STRATA)
        .args(["streams", "--server", "kdb://127.0.0.1:1?tls=false"])
        .output()
        .expect("strata runs");
    assert_exit(&output, 1, "start one with `strata serve`");
    let output = Command::new(STRATA)
        .args(["streams", "--server", "not a url"])
        .output()
        .expect("strata runs");
    assert_exit(&output, 2, "is not a usable connection string");
}

#[test]
fn export_leaves_out_the_state_of_persistent_subscriptions_the_server_keeps() {
    let target = Target::server();
    let Target::Server(server) = &target else {
        unreachable!("a server target")
    };
    target.ok(&["append", "orders", "--type", "Placed", "--data", "{}"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let options = kurrentdb::PersistentSubscriptionOptions::default()
            .start_from(kurrentdb::StreamPosition::End);
        server
            .client()
            .create_persistent_subscription("orders", "billing", &options)
            .await
            .expect("a group at the end of orders");
    });
    // A server's export holds its built-in users as well.
    let streams = |export: &str| -> Vec<String> {
        data_cases::json_lines(&data_cases::without_users(export))
            .iter()
            .map(|line| line["stream"].as_str().expect("stream").to_owned())
            .collect()
    };
    let checkpoint = "$persistentsubscription-orders::billing-checkpoint";
    let output = target.run(&["export"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(streams(&data_cases::text(&output.stdout)), ["orders"]);
    let everything = streams(&target.ok(&["export", "--include-persistent-subscription-state"]));
    for kept in ["orders", "$persistentSubscriptionConfig", checkpoint] {
        assert!(
            everything.iter().any(|stream| stream == kept),
            "{kept}: {everything:?}"
        );
    }
}

#[test]
fn scavenge_with_a_server_runs_there_and_prints_the_same_summary_as_a_local_one() {
    let server = support::Server::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = server.client();
        let pad = "q".repeat(100_000);
        for _ in 0..40 {
            let events: Vec<kurrentdb::EventData> = (0..10)
                .map(|n| {
                    kurrentdb::EventData::json("Happened", &serde_json::json!({"n": n, "pad": pad}))
                        .expect("event")
                })
                .collect();
            client
                .append_to_stream("doomed-1", &Default::default(), events)
                .await
                .expect("append");
        }
        client
            .delete_stream("doomed-1", &Default::default())
            .await
            .expect("delete");
        let settings: kurrentdb::ClientSettings = server.url().parse().expect("url");
        kurrentdb::operations::Client::new(settings)
            .expect("client")
            .merge_indexes(&Default::default())
            .await
            .expect("merge indexes");
    });
    let output = Command::new(STRATA)
        .args(["scavenge", "--server", &server.url(), "--json"])
        .output()
        .expect("strata runs");
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert!(report["events_removed"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["allocated_bytes_after"].as_u64().unwrap()
            < report["allocated_bytes_before"].as_u64().unwrap(),
        "{report}"
    );
    assert_eq!(report["stopped"], false);
    // A second run finds nothing more to remove; the text summary is the local one's.
    let output = Command::new(STRATA)
        .args(["scavenge", "--server", &server.url()])
        .output()
        .expect("strata runs");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("events removed:      0"), "{text}");
    assert!(text.contains("disk space of log:"), "{text}");
    // Neither or both targets is a usage error.
    let output = Command::new(STRATA)
        .args(["scavenge"])
        .output()
        .expect("strata runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let output = Command::new(STRATA)
        .args(["scavenge", "--server", &server.url(), "--data-dir", "x"])
        .output()
        .expect("strata runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
