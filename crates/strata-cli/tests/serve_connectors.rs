//! `[[connectors]]` in the config file of `strata serve`: the declared connector publishes
//! to the real NATS JetStream (STRATA_TEST_NATS_URL, default nats://127.0.0.1:4222), and
//! after a SIGKILL and a restart without the config file it runs on from `$connectors`.

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::Server;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn nats_url() -> String {
    std::env::var("STRATA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn append(server: &Server, stream: &str) {
    let output = Command::new(STRATA)
        .args(["append", stream, "--type", "T", "--data", "{}"])
        .args(["--server", &server.url()])
        .output()
        .expect("strata runs");
    assert!(output.status.success(), "{output:?}");
}

/// Waits until the JetStream stream holds `count` messages, and checks it holds no more.
fn wait_for_messages(name: &str, count: u64) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let context = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let held = match context.get_stream(name).await {
                Ok(mut stream) => stream.info().await.unwrap().state.messages,
                Err(_) => 0,
            };
            assert!(held <= count, "{held} messages in {name}, expected {count}");
            if held == count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{held} of {count} messages in {name}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

fn delete_stream(name: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let context = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
        let _ = context.delete_stream(name).await;
    });
}

#[test]
fn a_declared_connector_publishes_and_survives_a_kill() {
    let name = format!("SERVE{}", std::process::id());
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            r#"
[[connectors]]
id = "to-nats"
[connectors.source]
kind = "category"
category = "served"
[connectors.sink]
type = "nats"
url = "{url}"
subject = "{name}.{{stream}}"
[connectors.sink.create_stream]
name = "{name}"
subjects = ["{name}.>"]
"#,
            url = nats_url()
        ),
    )
    .unwrap();
    let mut server =
        Server::start_with(&["--insecure", "--config", config.path().to_str().unwrap()]);
    assert!(
        server.stderr().contains("connector to-nats: Created"),
        "{}",
        server.stderr()
    );
    for n in 0..3 {
        append(&server, &format!("served-{n}"));
    }
    append(&server, "other-1");
    wait_for_messages(&name, 3);

    // SIGKILL, restart without the config file: the stored connector runs on, and the
    // events it re-sends after its last checkpoint are dropped by `Nats-Msg-Id`.
    server.kill_and_restart();
    append(&server, "served-0");
    append(&server, "served-9");
    wait_for_messages(&name, 5);
    delete_stream(&name);
}
