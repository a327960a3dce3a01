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
    let streams = |export: &str| -> Vec<String> {
        data_cases::json_lines(export)
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
