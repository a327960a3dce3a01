//! The repository over `RemoteStore` against a real server: Strata's server (the code
//! `strata serve` runs) on a loopback port in this process, reached through the official
//! KurrentDB client.
#![cfg(feature = "remote")]

mod common;

use std::sync::Arc;

use common::Counter;
use strata::{CommandId, RemoteStore, Repository};
use strata_server::{ServeConfig, Server};
use tokio::sync::oneshot;

/// A server on a free loopback port over a fresh embedded store; stopped on drop.
struct Running {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start() -> Running {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            strata_engine::Store::open(dir.path(), strata_engine::Config::small_for_tests())
                .expect("store opens");
        let config = ServeConfig {
            bind: vec![std::net::Ipv4Addr::LOCALHOST.into()],
            port: 0,
            tls: None,
            ..ServeConfig::default()
        };
        let server = Server::bind(&config).await.expect("server binds");
        let url = format!(
            "kdb://127.0.0.1:{}?tls=false",
            server.local_addrs()[0].port()
        );
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(store, async {
            let _ = stopped.await;
        }));
        Running {
            url,
            stop: Some(stop),
            _dir: dir,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_over_a_server_loses_no_update_and_runs_a_command_once() {
    const TASKS: u64 = 4;
    const COMMANDS_PER_TASK: u64 = 10;
    let server = Running::start().await;
    let store = RemoteStore::connect_shared(&server.url)
        .await
        .expect("connects");
    let counters =
        Arc::new(Repository::<Counter, RemoteStore>::new(store).with_conflict_retries(1_000));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let counters = counters.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..COMMANDS_PER_TASK {
                counters
                    .execute("shared", &(task + 1))
                    .await
                    .expect("execute");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let counter = counters
        .load("shared")
        .await
        .expect("load")
        .into_aggregate();
    assert_eq!(counter.additions, TASKS * COMMANDS_PER_TASK);
    assert_eq!(counter.value, COMMANDS_PER_TASK * (1..=TASKS).sum::<u64>());

    let command_id = CommandId::new_random();
    let first = counters
        .execute_once("once", command_id, &5)
        .await
        .expect("first");
    assert!(!first.duplicate);
    let again = counters
        .execute_once("once", command_id, &5)
        .await
        .expect("again");
    assert!(again.duplicate, "the same command id appends once");
    let once = counters.load("once").await.expect("load").into_aggregate();
    assert_eq!(once.value, 5);
}
