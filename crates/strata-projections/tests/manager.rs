//! The projection manager over the embedded engine: lifecycle, statuses, restart from the
//! stored definitions, deletes with their flags.

use std::sync::Arc;
use std::time::Duration;

use strata_core::{
    Error, EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, StreamName,
};
use strata_projections::{
    CreateOptions, DeleteOptions, Mode, ProjectionError, ProjectionManager, QuickJsEngine,
    SandboxLimits, Statistics, TRACK_WITHOUT_EMIT,
};

fn open(dir: &std::path::Path) -> Arc<strata_engine::Store> {
    strata_engine::Store::open(dir, strata_engine::Config::small_for_tests()).expect("store opens")
}

async fn manager(store: Arc<strata_engine::Store>) -> Arc<ProjectionManager> {
    ProjectionManager::start(store, Arc::new(QuickJsEngine), SandboxLimits::default())
        .await
        .expect("manager starts")
}

async fn append(store: &dyn EventStore, stream: &str, event_type: &str, data: &str) {
    store
        .append(
            &StreamName::new(stream).unwrap(),
            ExpectedRevision::Any,
            vec![ProposedEvent::json(event_type, data.to_owned())],
        )
        .await
        .expect("append");
}

async fn exists(store: &dyn EventStore, stream: &str) -> bool {
    match store
        .read_stream(
            &StreamName::new(stream).unwrap(),
            ReadStreamOptions::forwards(),
        )
        .await
    {
        Ok(slice) => !slice.into_events().is_empty(),
        Err(Error::StreamDeleted { .. }) => false,
        Err(error) => panic!("{error}"),
    }
}

async fn stats(manager: &ProjectionManager, name: &str) -> Statistics {
    manager
        .statistics(Some(name))
        .await
        .expect("stats")
        .remove(0)
}

/// Waits (bounded) until `done` holds for the projection's statistics.
async fn wait_for(
    manager: &ProjectionManager,
    name: &str,
    done: impl Fn(&Statistics) -> bool,
) -> Statistics {
    for _ in 0..3_000 {
        let statistics = stats(manager, name).await;
        if done(&statistics) {
            return statistics;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} did not get there: {:?}", stats(manager, name).await);
}

const CONTINUOUS: CreateOptions = CreateOptions {
    mode: Mode::Continuous,
    emit_enabled: true,
    track_emitted_streams: true,
};

const COUNTER: &str = "fromCategory('order').when({
    $init: () => ({ n: 0 }),
    $any: (s, e) => { s.n++; emit('seen', 'Seen', { id: e.sequenceNumber }); }
}).outputState()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_with_reference_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&*store, "order-1", "Placed", "{}").await;
    let manager = manager(store.clone()).await;
    manager
        .create("counter", COUNTER, CONTINUOUS)
        .await
        .unwrap();
    let again = manager.create("counter", COUNTER, CONTINUOUS).await;
    assert!(matches!(again, Err(ProjectionError::AlreadyExists { .. })));
    let running = wait_for(&manager, "counter", |s| s.progress == 100.0).await;
    assert_eq!(running.status, "Running");
    assert_eq!(running.mode, "Continuous");
    assert_eq!(
        manager.state("counter", "").await.unwrap().as_deref(),
        Some(r#"{"n":1}"#)
    );
    assert_eq!(
        manager.result("counter", "").await.unwrap().as_deref(),
        Some(r#"{"n":1}"#)
    );

    let refused = manager.delete("counter", DeleteOptions::default()).await;
    assert!(
        matches!(refused, Err(ProjectionError::FailedPrecondition { .. })),
        "deleting a running projection fails"
    );

    manager.disable("counter").await.unwrap();
    assert_eq!(stats(&manager, "counter").await.status, "Stopped");
    append(&*store, "order-2", "Placed", "{}").await;
    manager.enable("counter").await.unwrap();
    wait_for(&manager, "counter", |s| {
        s.events_processed_after_restart == 1
    })
    .await;
    assert_eq!(
        manager.state("counter", "").await.unwrap().as_deref(),
        Some(r#"{"n":2}"#)
    );

    manager.reset("counter").await.unwrap();
    let reset = wait_for(&manager, "counter", |s| {
        s.epoch == 1 && s.events_processed_after_restart == 2
    })
    .await;
    assert_eq!(
        reset.status, "Running",
        "a reset leaves a running projection running"
    );
    assert_eq!(
        manager.state("counter", "").await.unwrap().as_deref(),
        Some(r#"{"n":2}"#)
    );

    manager.abort("counter").await.unwrap();
    assert_eq!(stats(&manager, "counter").await.status, "Stopped");
    manager
        .delete(
            "counter",
            DeleteOptions {
                delete_emitted_streams: true,
                delete_state_stream: true,
                delete_checkpoint_stream: true,
            },
        )
        .await
        .unwrap();
    assert!(!exists(&*store, "seen").await, "emitted stream deleted");
    assert!(
        exists(&*store, "$projections-counter-result").await,
        "the result stream stays, as on the reference"
    );
    assert!(!exists(&*store, "$projections-counter-checkpoint").await);
    let second = manager.delete("counter", DeleteOptions::default()).await;
    assert!(matches!(second, Err(ProjectionError::NotFound { .. })));
    assert_eq!(
        second.unwrap_err().to_string(),
        "Projection 'counter' not found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_without_emit_is_refused_before_the_name_is_looked_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let manager = manager(store.clone()).await;
    let tracking_only = CreateOptions {
        emit_enabled: false,
        ..CONTINUOUS
    };
    let refused = manager.create("tracked", COUNTER, tracking_only).await;
    assert!(
        matches!(&refused, Err(ProjectionError::InvalidArgument { reason }) if reason == TRACK_WITHOUT_EMIT),
        "{refused:?}"
    );
    assert!(matches!(
        manager.statistics(Some("tracked")).await,
        Err(ProjectionError::NotFound { .. })
    ));
    manager
        .create("tracked", COUNTER, CONTINUOUS)
        .await
        .unwrap();
    // As the reference: the configuration is checked first, even for a taken name.
    let refused = manager.create("tracked", COUNTER, tracking_only).await;
    assert!(
        matches!(refused, Err(ProjectionError::InvalidArgument { .. })),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_without_flags_keeps_the_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&*store, "order-1", "Placed", "{}").await;
    let manager = manager(store.clone()).await;
    manager.create("kept", COUNTER, CONTINUOUS).await.unwrap();
    wait_for(&manager, "kept", |s| s.progress == 100.0).await;
    manager.disable("kept").await.unwrap();
    manager
        .delete("kept", DeleteOptions::default())
        .await
        .unwrap();
    assert!(exists(&*store, "seen").await);
    assert!(exists(&*store, "$projections-kept-checkpoint").await);
    assert!(manager.statistics(None).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_survive_a_restart_and_runs_resume() {
    let dir = tempfile::tempdir().unwrap();
    let once_before;
    {
        let store = open(dir.path());
        append(&*store, "order-1", "Placed", "{}").await;
        let manager = manager(store.clone()).await;
        manager
            .create("counter", COUNTER, CONTINUOUS)
            .await
            .unwrap();
        manager
            .create(
                "once",
                "fromAll().when({ $init: () => ({ n: 0 }), $any: (s) => { s.n++; } })",
                CreateOptions {
                    mode: Mode::OneTime,
                    ..CONTINUOUS
                },
            )
            .await
            .unwrap();
        manager.create("off", COUNTER, CONTINUOUS).await.unwrap();
        manager.disable("off").await.unwrap();
        wait_for(&manager, "counter", |s| s.progress == 100.0).await;
        let done = wait_for(&manager, "once", |s| s.status != "Running").await;
        assert_eq!(done.status, "Completed/Stopped");
        // What it counted depends on whether `counter` emitted before it read: keep it.
        once_before = manager.state("once", "").await.unwrap();
        manager.shutdown().await;
        drop(manager);
        store.close();
    }
    let store = open(dir.path());
    append(&*store, "order-2", "Placed", "{}").await;
    let manager = manager(store.clone()).await;
    let names: Vec<String> = manager
        .statistics(None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["counter", "off", "once"]);
    wait_for(&manager, "counter", |s| {
        s.events_processed_after_restart == 1
    })
    .await;
    assert_eq!(
        manager.state("counter", "").await.unwrap().as_deref(),
        Some(r#"{"n":2}"#)
    );
    assert_eq!(stats(&manager, "off").await.status, "Stopped");
    // A completed one-time projection stays completed: it does not run again over the
    // event written since.
    let once = wait_for(&manager, "once", |s| s.status != "Running").await;
    assert_eq!(once.status, "Completed/Stopped");
    assert_eq!(once.events_processed_after_restart, 0);
    assert_eq!(
        manager.state("once", "").await.unwrap(),
        once_before,
        "only the events before the restart"
    );
    let seen = store
        .read_stream(
            &StreamName::new("seen").unwrap(),
            ReadStreamOptions::forwards(),
        )
        .await
        .unwrap()
        .into_events();
    let emitted_by_counter = seen
        .iter()
        .filter(|event| {
            String::from_utf8_lossy(&event.metadata).contains(r#""$projection":"counter""#)
        })
        .count();
    assert_eq!(emitted_by_counter, 2, "one emit per event, none repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_while_stopped_reports_nothing_processed_and_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&*store, "order-1", "Placed", "{}").await;
    append(&*store, "order-2", "Placed", "{}").await;
    let manager = manager(store.clone()).await;
    manager
        .create("counter", COUNTER, CONTINUOUS)
        .await
        .unwrap();
    wait_for(&manager, "counter", |s| {
        s.events_processed_after_restart == 2
    })
    .await;
    manager.disable("counter").await.unwrap();
    manager.reset("counter").await.unwrap();
    let reset = stats(&manager, "counter").await;
    assert_eq!(reset.status, "Stopped");
    assert_eq!(reset.epoch, 1);
    assert_eq!(reset.events_processed_after_restart, 0);
    assert_eq!(manager.state("counter", "").await.unwrap(), None);
    manager.enable("counter").await.unwrap();
    wait_for(&manager, "counter", |s| {
        s.epoch == 1 && s.events_processed_after_restart == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_query_is_created_then_faults_and_deletes_without_a_disable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let manager = manager(store.clone()).await;
    manager.create("empty", "", CONTINUOUS).await.unwrap();
    let faulted = wait_for(&manager, "empty", |s| s.status == "Faulted").await;
    assert!(
        faulted.state_reason.contains("reads no events"),
        "{}",
        faulted.state_reason
    );
    manager
        .delete("empty", DeleteOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        manager.statistics(Some("empty")).await,
        Err(ProjectionError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulted_projection_reports_why_and_others_run_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&*store, "order-1", "Placed", "{}").await;
    let manager = manager(store.clone()).await;
    manager
        .create("greedy", "fromAll().when({ $any: (s) => { const a = []; for (;;) a.push(new Array(1 << 24).fill(1)); } })", CONTINUOUS)
        .await
        .unwrap();
    manager.create("fine", COUNTER, CONTINUOUS).await.unwrap();
    let faulted = wait_for(&manager, "greedy", |s| s.status == "Faulted").await;
    assert!(
        faulted.state_reason.contains("limit"),
        "{}",
        faulted.state_reason
    );
    wait_for(&manager, "fine", |s| s.progress == 100.0).await;
    assert_eq!(
        manager.state("fine", "").await.unwrap().as_deref(),
        Some(r#"{"n":1}"#)
    );
    let transient = manager.create("", "fromAll()", CONTINUOUS).await;
    assert!(matches!(
        transient,
        Err(ProjectionError::InvalidArgument { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_handler_runs_for_soft_deleted_and_tombstoned_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for stream in ["account-1", "account-2", "account-3"] {
        append(&*store, stream, "Opened", "{}").await;
    }
    let manager = manager(store.clone()).await;
    let query = "fromAll().foreachStream().when({
        $init: () => ({ n: 0, deleted: null }),
        $any: (s, e) => { s.n++; },
        $deleted: (s, e, partition, isSoftDelete) => {
            s.deleted = (isSoftDelete ? 'soft ' : 'hard ') + partition;
        }
    })";
    manager.create("accounts", query, CONTINUOUS).await.unwrap();
    wait_for(&manager, "accounts", |s| {
        s.events_processed_after_restart == 3
    })
    .await;
    store
        .delete_stream(
            &StreamName::new("account-1").unwrap(),
            ExpectedRevision::Any,
        )
        .await
        .unwrap();
    store
        .tombstone_stream(
            &StreamName::new("account-2").unwrap(),
            ExpectedRevision::Any,
        )
        .await
        .unwrap();
    // A stream the projection never saw: passed over.
    store
        .tombstone_stream(&StreamName::new("other-9").unwrap(), ExpectedRevision::Any)
        .await
        .unwrap();
    append(&*store, "account-3", "Closed", "{}").await;
    let state = |partition: &'static str| {
        let manager = Arc::clone(&manager);
        async move {
            manager
                .state("accounts", partition)
                .await
                .unwrap()
                .map(|json| serde_json::from_str::<serde_json::Value>(&json).unwrap())
        }
    };
    for _ in 0..3_000 {
        if state("account-3").await.is_some_and(|s| s["n"] == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        state("account-1").await.unwrap(),
        serde_json::json!({ "n": 1, "deleted": "soft account-1" })
    );
    assert_eq!(
        state("account-2").await.unwrap(),
        serde_json::json!({ "n": 1, "deleted": "hard account-2" })
    );
    assert_eq!(
        state("account-3").await.unwrap(),
        serde_json::json!({ "n": 2, "deleted": null })
    );
    assert_eq!(state("other-9").await, None, "never seen, never started");
}
