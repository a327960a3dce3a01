//! A failed fsync poisons the store: the append whose sync failed and every later write
//! fail with `Error::Poisoned`, reads of what was acknowledged still work, and a reopen
//! (without the failure) finds every acknowledged event and takes appends again.
//!
//! `Config::fail_sync_at` makes the n-th data sync (0-based) fail as a failing disk would.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use strata_core::{
    Error, EventId, EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions, ReadStreamOptions,
    RecordedEvent, StreamName, StreamState,
};
use strata_engine::{Config, Store, verify};
use tempfile::TempDir;

fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

fn event(number: u64) -> ProposedEvent {
    ProposedEvent::json("Poisoned", format!(r#"{{"number":{number}}}"#))
        .with_id(EventId::from_u128(0xfeed_0000 + u128::from(number)))
}

fn failing_at(sync: u64) -> Config {
    Config {
        fail_sync_at: Some(sync),
        ..Config::small_for_tests()
    }
}

async fn read_stream(store: &Store, name: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(&stream(name), ReadStreamOptions::forwards())
        .await
        .unwrap()
        .into_events()
}

async fn read_all(store: &Store) -> Vec<RecordedEvent> {
    store
        .read_all(ReadAllOptions::forwards())
        .await
        .unwrap()
        .events
}

fn assert_poisoned<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    assert!(
        matches!(result, Err(Error::Poisoned { .. })),
        "{what}: expected Error::Poisoned, got {result:?}"
    );
}

fn close_and_verify_ok(store: Arc<Store>, dir: &Path) {
    store.close();
    drop(store);
    let report = verify(dir, &mut |_| {}).unwrap();
    assert!(report.is_ok(), "verify:\n{report}");
}

/// After a reopen: the acknowledged events come first, in order; an append that failed
/// with `Poisoned` may or may not have reached the disk (its outcome is unknown), but if it
/// did, it is there whole.
fn assert_acknowledged_then_maybe_failed(
    events: &[RecordedEvent],
    acknowledged: &[RecordedEvent],
    failed: &[ProposedEvent],
) {
    assert!(
        events.len() >= acknowledged.len(),
        "acknowledged events are lost"
    );
    assert_eq!(events[..acknowledged.len()], *acknowledged);
    let rest = &events[acknowledged.len()..];
    assert!(
        rest.is_empty() || rest.len() == failed.len(),
        "part of the failed append is visible: {rest:?}"
    );
    for (found, proposed) in rest.iter().zip(failed) {
        assert_eq!(found.id, proposed.id);
        assert_eq!(found.data, proposed.data);
    }
}

#[tokio::test]
async fn a_failed_fsync_poisons_the_store_until_it_is_reopened() {
    for failing_sync in [0, 3] {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path(), failing_at(failing_sync)).unwrap();
        let mut acknowledged = Vec::new();
        for number in 0..failing_sync {
            let result = store
                .append(
                    &stream("poisoned"),
                    ExpectedRevision::Any,
                    vec![event(number)],
                )
                .await
                .expect("appends before the failing sync succeed");
            acknowledged.push(result);
        }
        let failed = vec![event(100), event(101)];
        assert_poisoned(
            store
                .append(&stream("poisoned"), ExpectedRevision::Any, failed.clone())
                .await,
            "the append whose sync fails",
        );
        for number in 200..205 {
            assert_poisoned(
                store
                    .append(
                        &stream("poisoned"),
                        ExpectedRevision::Any,
                        vec![event(number)],
                    )
                    .await,
                "a later append to the same stream",
            );
            assert_poisoned(
                store
                    .append(
                        &stream("other"),
                        ExpectedRevision::NoStream,
                        vec![event(number + 100)],
                    )
                    .await,
                "a later append to another stream",
            );
        }
        assert_poisoned(
            store
                .delete_stream(&stream("poisoned"), ExpectedRevision::Any)
                .await,
            "a later delete",
        );

        // Reads see exactly what was acknowledged.
        let events = read_stream(&store, "poisoned").await;
        assert_eq!(events.len(), acknowledged.len());
        for (number, (event, result)) in events.iter().zip(&acknowledged).enumerate() {
            assert_eq!(event.id, self::event(number as u64).id);
            assert_eq!(event.revision, result.current_revision);
            assert_eq!(event.position, result.position);
        }
        assert_eq!(read_all(&store).await, events);
        assert_eq!(
            store.stream_state(&stream("other")).await.unwrap(),
            StreamState::NoStream
        );
        store.close();
        drop(store);

        let store = Store::open(dir.path(), Config::small_for_tests()).expect("the store reopens");
        let reopened = read_stream(&store, "poisoned").await;
        assert_acknowledged_then_maybe_failed(&reopened, &events, &failed);
        assert_eq!(read_all(&store).await, reopened);
        let last = reopened.last().map(|event| event.revision.0);
        let expected = last.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        let result = store
            .append(&stream("poisoned"), expected, vec![event(300)])
            .await
            .expect("appends work again after the reopen");
        store
            .append(
                &stream("other"),
                ExpectedRevision::NoStream,
                vec![event(301)],
            )
            .await
            .expect("appends work again after the reopen");
        close_and_verify_ok(store, dir.path());

        let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
        let final_events = read_stream(&store, "poisoned").await;
        assert_eq!(final_events[..reopened.len()], reopened[..]);
        assert_eq!(final_events.last().unwrap().position, result.position);
        assert_eq!(read_stream(&store, "other").await.len(), 1);
        close_and_verify_ok(store, dir.path());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_around_a_failed_fsync_are_acknowledged_only_if_durable() {
    const TASKS: u64 = 8;
    const APPENDS_PER_TASK: u64 = 40;
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path(), failing_at(10)).unwrap();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("task-{task}");
            let mut outcomes = Vec::new();
            for number in 0..APPENDS_PER_TASK {
                let id = task * 1_000 + number;
                let outcome = store
                    .append(&stream(&name), ExpectedRevision::Any, vec![event(id)])
                    .await;
                outcomes.push((id, outcome));
            }
            outcomes
        }));
    }
    let mut acknowledged = HashSet::new();
    let mut poisoned = 0;
    for task in tasks {
        for (id, outcome) in task.await.unwrap() {
            match outcome {
                Ok(_) => {
                    acknowledged.insert(event(id).id);
                }
                Err(Error::Poisoned { .. }) => poisoned += 1,
                Err(error) => panic!("unexpected error {error}"),
            }
        }
    }
    assert!(poisoned > 0, "no append saw the failed sync");
    assert_poisoned(
        store
            .append(
                &stream("task-0"),
                ExpectedRevision::Any,
                vec![event(99_999)],
            )
            .await,
        "an append after the failure",
    );
    // Before the reopen, reads show only acknowledged events.
    let visible: HashSet<EventId> = read_all(&store)
        .await
        .iter()
        .map(|event| event.id)
        .collect();
    assert_eq!(
        visible, acknowledged,
        "reads show other than the acknowledged events"
    );
    store.close();
    drop(store);

    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let after: Vec<RecordedEvent> = read_all(&store).await;
    let present: HashSet<EventId> = after.iter().map(|event| event.id).collect();
    let lost: Vec<&EventId> = acknowledged.difference(&present).collect();
    assert!(lost.is_empty(), "acknowledged events lost: {lost:?}");
    for task in 0..TASKS {
        let events = read_stream(&store, &format!("task-{task}")).await;
        for (revision, event) in events.iter().enumerate() {
            assert_eq!(event.revision.0, revision as u64);
        }
    }
    store
        .append(
            &stream("task-0"),
            ExpectedRevision::Any,
            vec![event(88_888)],
        )
        .await
        .expect("appends work again after the reopen");
    close_and_verify_ok(store, dir.path());
}

/// Regression: an append whose frames span into a segment that cannot be created failed
/// half-way through encoding and left its first frames in the group, where the next
/// transaction's commit frame would have committed them. Now the store is poisoned and
/// nothing of that group is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_that_cannot_be_created_poisons_without_a_partial_append() {
    let temp = TempDir::new().unwrap();
    let dir = temp.path();
    // Segment 2 cannot be created: a directory stands where its temporary file must go.
    let blocker = dir.join("log").join("0000000002.seg.tmp");
    std::fs::create_dir_all(&blocker).unwrap();
    let store = Store::open(dir, Config::small_for_tests()).unwrap();
    let name = stream("big-appends");
    let payload = "x".repeat(4_000);
    let mut acknowledged = 0u64;
    let mut failure = None;
    for append in 0..40u64 {
        let events = (0..50)
            .map(|offset| {
                ProposedEvent::json(
                    "Big",
                    format!(r#"{{"n":{},"pad":"{payload}"}}"#, append * 50 + offset),
                )
            })
            .collect();
        match store.append(&name, ExpectedRevision::Any, events).await {
            Ok(_) => acknowledged += 50,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let failure = failure.expect("appends reach segment 2, which cannot be created");
    assert!(
        matches!(failure, Error::Poisoned { .. } | Error::Io { .. }),
        "the append reaching segment 2 fails with an I/O error or Poisoned, got {failure:?}"
    );
    assert_poisoned(
        store
            .append(&name, ExpectedRevision::Any, vec![event(1)])
            .await,
        "append after",
    );
    assert_eq!(
        read_stream(&store, "big-appends").await.len() as u64,
        acknowledged
    );
    store.close();
    drop(store);

    std::fs::remove_dir(&blocker).unwrap();
    let store = Store::open(dir, Config::small_for_tests()).unwrap();
    let events = read_stream(&store, "big-appends").await;
    assert_eq!(
        events.len() as u64,
        acknowledged,
        "after reopening, exactly the acknowledged appends are there: no partial one"
    );
    assert_eq!(read_all(&store).await.len() as u64, acknowledged);
    store
        .append(
            &name,
            ExpectedRevision::Exact(acknowledged - 1),
            vec![event(2)],
        )
        .await
        .unwrap();
    close_and_verify_ok(store, dir);
}

/// Regression: when the next segment could not be created, the padding that closes the
/// current one was already in the group, and a smaller append after it in the same group
/// was acknowledged at a place the log skips. Now the segment is opened before anything of
/// the frame is encoded: the append that needs it fails, nothing is left behind, and
/// appends that still fit go on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_segment_roll_leaves_nothing_behind() {
    let temp = TempDir::new().unwrap();
    let dir = temp.path();
    let blocker = dir.join("log").join("0000000002.seg.tmp");
    std::fs::create_dir_all(&blocker).unwrap();
    let store = Store::open(dir, Config::small_for_tests()).unwrap();
    let big = stream("big");
    let payload = "y".repeat(200_000);
    let mut acknowledged = 0u64;
    let failure = loop {
        let event = ProposedEvent::json("Big", format!(r#"{{"pad":"{payload}"}}"#));
        match store.append(&big, ExpectedRevision::Any, vec![event]).await {
            Ok(_) => acknowledged += 1,
            Err(error) => break error,
        }
        assert!(
            acknowledged < 20,
            "segment 2 must be needed within 20 events"
        );
    };
    assert!(matches!(failure, Error::Io { .. }), "got {failure:?}");
    // A small append still fits in segment 1 and is not refused.
    let small = stream("small");
    store
        .append(&small, ExpectedRevision::NoStream, vec![event(7)])
        .await
        .expect("an append that fits goes on working");
    assert_eq!(read_stream(&store, "small").await.len(), 1);
    store.close();
    drop(store);
    std::fs::remove_dir(&blocker).unwrap();

    let store = Store::open(dir, Config::small_for_tests()).unwrap();
    assert_eq!(read_stream(&store, "big").await.len() as u64, acknowledged);
    assert_eq!(read_stream(&store, "small").await.len(), 1);
    assert_eq!(read_all(&store).await.len() as u64, acknowledged + 1);
    store
        .append(
            &big,
            ExpectedRevision::Exact(acknowledged - 1),
            vec![event(8)],
        )
        .await
        .expect("the next segment can be created now");
    close_and_verify_ok(store, dir);
}
