//! Sources as the reference reads them — user-written links (`$>`) in a `fromStream` source
//! resolved to their targets, soft deletes under `fromCategory(c).foreachStream()` — and
//! the manager on a cluster's follower (every call answers `NotLeader`).

use std::sync::Arc;
use std::time::Duration;

use strata_core::{
    Error, EventStore, ExpectedRevision, Leadership, NodeAddress, NodeRole, ProposedEvent,
    StreamName,
};
use strata_projections::{
    CreateOptions, Mode, ProjectionError, ProjectionManager, QuickJsEngine, SandboxLimits,
};

fn open(dir: &std::path::Path) -> Arc<strata_engine::Store> {
    strata_engine::Store::open(dir, strata_engine::Config::small_for_tests()).expect("store opens")
}

async fn manager(store: Arc<strata_engine::Store>) -> Arc<ProjectionManager> {
    ProjectionManager::start(store, Arc::new(QuickJsEngine), SandboxLimits::default())
        .await
        .expect("manager starts")
}

async fn append(store: &dyn EventStore, stream: &str, event: ProposedEvent) {
    store
        .append(
            &StreamName::new(stream).unwrap(),
            ExpectedRevision::Any,
            vec![event],
        )
        .await
        .expect("append");
}

fn link(target: &str, metadata: &str) -> ProposedEvent {
    let mut event = ProposedEvent::binary("$>", target.as_bytes().to_vec());
    event.metadata = metadata.as_bytes().to_vec().into();
    event
}

const CONTINUOUS: CreateOptions = CreateOptions {
    mode: Mode::Continuous,
    emit_enabled: false,
    track_emitted_streams: false,
};

/// The state of `name` (`partition`) once `done` holds for it (bounded wait).
async fn state_when(
    manager: &ProjectionManager,
    name: &str,
    partition: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..3_000 {
        if let Some(json) = manager.state(name, partition).await.unwrap() {
            last = serde_json::from_str(&json).unwrap();
            if done(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name}/{partition} did not get there: {last}");
}

const SEEN: &str = "fromStream('picked').when({
    $init: () => ({ seen: [] }),
    $any: (s, e) => {
        s.seen.push([e.streamId, e.sequenceNumber, e.eventType, e.body && e.body.n,
            e.linkMetadataRaw || null]);
    }
})";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_in_a_stream_source_are_resolved_and_dangling_ones_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(
        &*store,
        "order-1",
        ProposedEvent::json("Placed", r#"{"n":1}"#),
    )
    .await;
    append(
        &*store,
        "order-1",
        ProposedEvent::json("Paid", r#"{"n":2}"#),
    )
    .await;
    append(
        &*store,
        "gone-1",
        ProposedEvent::json("Placed", r#"{"n":3}"#),
    )
    .await;
    append(&*store, "picked", link("1@order-1", r#"{"why":"paid"}"#)).await;
    append(&*store, "picked", link("0@gone-1", "")).await;
    append(&*store, "picked", ProposedEvent::json("Note", r#"{"n":4}"#)).await;
    append(&*store, "picked", link("0@order-1", "")).await;
    append(&*store, "picked", link("7@order-1", "")).await;
    store
        .tombstone_stream(&StreamName::new("gone-1").unwrap(), ExpectedRevision::Any)
        .await
        .unwrap();
    let manager = manager(store.clone()).await;
    manager.create("seen", SEEN, CONTINUOUS).await.unwrap();
    let including = SEEN.replace("fromStream", "options({ $includeLinks: true }); fromStream");
    manager.create("raw", &including, CONTINUOUS).await.unwrap();

    let seen = state_when(&manager, "seen", "", |s| {
        s["seen"].as_array().unwrap().len() >= 3
    })
    .await;
    assert_eq!(
        seen["seen"],
        serde_json::json!([
            ["order-1", 1, "Paid", 2, r#"{"why":"paid"}"#],
            ["picked", 2, "Note", 4, null],
            ["order-1", 0, "Placed", 1, null],
        ]),
        "targets seen through their links; links to a tombstoned stream or past a stream's end passed over"
    );
    let raw = state_when(&manager, "raw", "", |s| {
        s["seen"].as_array().unwrap().len() >= 5
    })
    .await;
    let types: Vec<&str> = raw["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry[2].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["$>", "$>", "Note", "$>", "$>"],
        "$includeLinks: the links as they are"
    );
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_deletes_reach_the_deleted_handler_of_a_category_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for stream in ["account-1", "account-2", "other-1"] {
        append(&*store, stream, ProposedEvent::json("Opened", "{}")).await;
    }
    let manager = manager(store.clone()).await;
    let query = "fromCategory('account').foreachStream().when({
        $init: () => ({ n: 0, deleted: null }),
        $any: (s, e) => { s.n++; },
        $deleted: (s, e, partition, isSoftDelete) => {
            s.deleted = (isSoftDelete ? 'soft ' : 'hard ') + partition;
        }
    })";
    manager.create("accounts", query, CONTINUOUS).await.unwrap();
    state_when(&manager, "accounts", "account-2", |s| s["n"] == 1).await;
    store
        .delete_stream(
            &StreamName::new("account-1").unwrap(),
            ExpectedRevision::Any,
        )
        .await
        .unwrap();
    // Another category's delete is not this projection's.
    store
        .delete_stream(&StreamName::new("other-1").unwrap(), ExpectedRevision::Any)
        .await
        .unwrap();
    append(&*store, "account-2", ProposedEvent::json("Closed", "{}")).await;
    state_when(&manager, "accounts", "account-2", |s| s["n"] == 2).await;
    assert_eq!(
        state_when(&manager, "accounts", "account-1", |_| true).await,
        serde_json::json!({ "n": 1, "deleted": "soft account-1" })
    );
    assert_eq!(manager.state("accounts", "other-1").await.unwrap(), None);

    // A restart resumes after the delete: the handler does not run twice, and a stream
    // written again after its delete counts on.
    manager.shutdown().await;
    drop(manager);
    append(&*store, "account-1", ProposedEvent::json("Reopened", "{}")).await;
    let manager = self::manager(store.clone()).await;
    let account_1 = state_when(&manager, "accounts", "account-1", |s| s["n"] == 2).await;
    assert_eq!(
        account_1,
        serde_json::json!({ "n": 2, "deleted": "soft account-1" })
    );
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_follower_every_call_answers_not_leader_naming_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let manager = manager(store.clone()).await;
    manager
        .create(
            "counter",
            "fromAll().when({ $any: (s, e) => s })",
            CONTINUOUS,
        )
        .await
        .unwrap();
    let leadership = Leadership::clustered(uuid::Uuid::from_u128(7));
    let leader = NodeAddress {
        host: "10.0.0.7".into(),
        port: 2113,
    };
    leadership.update(|view| {
        view.role = NodeRole::Follower;
        view.leader = Some(leader.clone());
    });
    manager.set_leadership(Arc::clone(&leadership));
    let not_leader = |outcome: Result<(), ProjectionError>| match outcome {
        Err(ProjectionError::Store(Error::NotLeader {
            leader: Some(named),
        })) => {
            assert_eq!(named, leader);
        }
        other => panic!("expected NotLeader, got {other:?}"),
    };
    not_leader(manager.statistics(None).await.map(drop));
    not_leader(manager.statistics(Some("counter")).await.map(drop));
    not_leader(manager.state("counter", "").await.map(drop));
    not_leader(manager.result("counter", "").await.map(drop));
    not_leader(manager.definition("counter").await.map(drop));
    not_leader(manager.create("other", "fromAll()", CONTINUOUS).await);
    not_leader(manager.update("counter", "fromAll()", None).await);
    not_leader(manager.enable("counter").await);
    not_leader(manager.disable("counter").await);
    not_leader(manager.abort("counter").await);
    not_leader(manager.reset("counter").await);
    not_leader(
        manager
            .delete("counter", strata_projections::DeleteOptions::default())
            .await,
    );
    not_leader(manager.check_leader());

    leadership.update(|view| view.role = NodeRole::Leader);
    assert_eq!(manager.statistics(None).await.unwrap().len(), 1);
    manager.check_leader().unwrap();
    manager.shutdown().await;
}
