//! The repository on the embedded engine: conflict retries, idempotent command ids.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{AddZero, Counter, CountingStore};
use strata::{CommandError, CommandId, Error, EventStore, Repository, Revision, StreamName};
use strata_core::ReadStreamOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_lose_no_update() {
    const TASKS: u64 = 8;
    const COMMANDS_PER_TASK: u64 = 25;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let counters =
        Arc::new(Repository::<Counter, CountingStore>::new(store).with_conflict_retries(1_000));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let counters = counters.clone();
        tasks.push(tokio::spawn(async move {
            let mut retried = 0;
            for _ in 0..COMMANDS_PER_TASK {
                let outcome = counters
                    .execute("shared", &(task + 1))
                    .await
                    .expect("execute");
                retried += u64::from(outcome.attempts - 1);
            }
            retried
        }));
    }
    let mut retried = 0;
    for task in tasks {
        retried += task.await.expect("task");
    }
    let counter = counters
        .load("shared")
        .await
        .expect("load")
        .into_aggregate();
    assert_eq!(counter.additions, TASKS * COMMANDS_PER_TASK);
    assert_eq!(counter.value, COMMANDS_PER_TASK * (1..=TASKS).sum::<u64>());
    println!("{retried} retries after conflicts");
}

#[tokio::test]
async fn a_command_that_always_conflicts_gives_up_after_its_retries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    store.refuse_appends.store(true, Ordering::SeqCst);
    let counters = Repository::<Counter, CountingStore>::new(store).with_conflict_retries(3);
    let error = counters.execute("busy", &1).await.expect_err("conflicts");
    match error {
        CommandError::Failed(Error::ConflictRetriesExhausted { stream, attempts }) => {
            assert_eq!(stream.as_str(), "counter-busy");
            assert_eq!(attempts, 4);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_command_appends_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let counters = Repository::<Counter, CountingStore>::new(store.clone());
    let error = counters.execute("c", &0).await.expect_err("refused");
    assert_eq!(error.rejection(), Some(&AddZero));
    let stream = StreamName::new("counter-c").expect("name");
    let state = store.stream_state(&stream).await.expect("state");
    assert_eq!(state, strata_core::StreamState::NoStream);
}

#[tokio::test]
async fn the_same_command_id_appends_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let counters = Repository::<Counter, CountingStore>::new(store.clone());
    let command_id = CommandId::new_random();

    let first = counters
        .execute_once("i", command_id, &5)
        .await
        .expect("first");
    assert!(!first.duplicate);
    assert_eq!(first.revision, Some(Revision(0)));
    counters.execute("i", &1).await.expect("another command");
    let again = counters
        .execute_once("i", command_id, &5)
        .await
        .expect("again");
    assert!(again.duplicate);
    assert_eq!(again.events_appended, 0);

    let counter = counters.load("i").await.expect("load").into_aggregate();
    assert_eq!(counter.value, 6);
    let stream = StreamName::new("counter-i").expect("name");
    let events = store
        .read_stream(&stream, ReadStreamOptions::forwards())
        .await
        .expect("read")
        .into_events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].id, command_id.event_id(0));
}

/// Two copies of one command (same command id) load the same state; the other copy appends
/// first, with events that differ from this copy's, and this copy's append is answered as a
/// re-send. The state this copy keeps (cache and snapshot) is the stored one, not its own.
#[tokio::test]
async fn a_copy_answered_as_a_resend_keeps_the_stored_events_not_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let loser = Repository::<Counter, CountingStore>::new(store.clone())
        .with_cache(16)
        .with_snapshot_policy(strata::SnapshotPolicy::EveryEvents(1));
    let winner = Arc::new(Repository::<Counter, strata_engine::Store>::new(
        store.inner.clone(),
    ));
    let command_id = CommandId::new_random();
    let first = winner.clone();
    *store.before_next_append.lock().expect("hook") = Some(Box::pin(async move {
        first
            .execute_once("copied", command_id, &5)
            .await
            .expect("the winning copy");
    }));
    // This copy decided on 7 (its handler saw something else); the store keeps the 5.
    let outcome = loser
        .execute_once("copied", command_id, &7)
        .await
        .expect("answered as a re-send");
    assert_eq!(outcome.revision, Some(Revision(0)));

    let stream = StreamName::new("counter-copied").expect("name");
    let stored = store
        .inner
        .read_stream(&stream, ReadStreamOptions::forwards())
        .await
        .expect("read")
        .into_events();
    assert_eq!(stored.len(), 1, "one copy was written");
    assert_eq!(&stored[0].data[..], br#"{"by":5}"#, "the winner's event");
    // Every repository of the aggregate loads from this snapshot.
    let snapshotted = loser.load("copied").await.expect("load");
    assert!(snapshotted.from_snapshot());
    assert_eq!(
        snapshotted.aggregate().value,
        5,
        "the snapshot holds the stored state"
    );
    loser.execute("copied", &1).await.expect("a cached command");
    let after = winner.load("copied").await.expect("load").into_aggregate();
    assert_eq!((after.value, after.additions), (6, 2));
    let cached_snapshot = loser.load("copied").await.expect("load");
    assert_eq!(
        cached_snapshot.aggregate().value,
        6,
        "the cached state the next command started from was the stored one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_copies_of_one_command_append_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let counters = Arc::new(Repository::<Counter, CountingStore>::new(store));
    let command_ids: Vec<CommandId> = (0..20).map(|_| CommandId::new_random()).collect();
    let mut tasks = Vec::new();
    for _copy in 0..4 {
        let counters = counters.clone();
        let command_ids = command_ids.clone();
        tasks.push(tokio::spawn(async move {
            for command_id in command_ids {
                counters
                    .execute_once("race", command_id, &1)
                    .await
                    .expect("execute");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let counter = counters.load("race").await.expect("load").into_aggregate();
    assert_eq!(counter.value, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_repositories_racing_on_one_aggregate_lose_no_update() {
    const COMMANDS_PER_TASK: u64 = 40;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    // Two caches over one store, as two processes would have: each sees the other's events.
    let caches = [1, 2].map(|_| {
        Arc::new(
            Repository::<Counter, CountingStore>::new(store.clone())
                .with_cache(16)
                .with_conflict_retries(1_000),
        )
    });
    let mut tasks = Vec::new();
    for (task, counters) in caches.iter().cycle().take(6).enumerate() {
        let counters = counters.clone();
        let by = task as u64 + 1;
        tasks.push(tokio::spawn(async move {
            for _ in 0..COMMANDS_PER_TASK {
                counters.execute("shared", &by).await.expect("execute");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let counter = caches[0]
        .load("shared")
        .await
        .expect("load")
        .into_aggregate();
    assert_eq!(counter.additions, 6 * COMMANDS_PER_TASK);
    assert_eq!(counter.value, COMMANDS_PER_TASK * (1..=6).sum::<u64>());
}

#[tokio::test]
async fn a_cached_aggregate_reads_only_newer_events_and_sees_other_writers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let cached = Repository::<Counter, CountingStore>::new(store.clone()).with_cache(4);
    let uncached = Repository::<Counter, CountingStore>::new(store.clone());
    for _ in 0..30 {
        cached.execute("a", &1).await.expect("execute");
    }
    store.take_events_read();
    cached.execute("a", &1).await.expect("execute");
    assert_eq!(
        store.take_events_read(),
        0,
        "nothing new to read for a cached aggregate"
    );

    uncached.execute("a", &100).await.expect("another writer");
    store.take_events_read();
    let outcome = cached.execute("a", &1).await.expect("execute");
    assert_eq!(
        outcome.attempts, 1,
        "the other writer's event was read before appending"
    );
    assert_eq!(
        store.take_events_read(),
        1,
        "only the other writer's event was read"
    );
    let counter = uncached.load("a").await.expect("load").into_aggregate();
    assert_eq!((counter.additions, counter.value), (33, 132));
}

#[tokio::test]
async fn a_cache_smaller_than_the_aggregates_in_use_stays_correct() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let cached = Repository::<Counter, CountingStore>::new(store.clone())
        .with_cache(2)
        .with_snapshot_policy(strata::SnapshotPolicy::EveryEvents(5));
    for round in 0..12_u64 {
        for id in ["a", "b", "c", "d"] {
            cached.execute(id, &(round + 1)).await.expect("execute");
        }
    }
    for id in ["a", "b", "c", "d"] {
        let counter = cached.load(id).await.expect("load");
        assert!(counter.from_snapshot());
        let counter = counter.into_aggregate();
        assert_eq!((counter.additions, counter.value), (12, 78));
    }
    // Every command of a cached aggregate hits: 12 events, a snapshot at 5 and at 10.
    let all_cached = Repository::<Counter, CountingStore>::new(store.clone())
        .with_cache(8)
        .with_snapshot_policy(strata::SnapshotPolicy::EveryEvents(5));
    for _ in 0..12 {
        all_cached.execute("e", &1).await.expect("execute");
    }
    // Snapshot streams keep only the newest: their last revision counts the writes.
    let slice = store
        .read_stream(
            &StreamName::new("$snapshot-counter-e").expect("name"),
            ReadStreamOptions::backwards().max_count(1),
        )
        .await
        .expect("read");
    let strata_core::StreamSlice::Found { last_revision, .. } = slice else {
        panic!("no snapshot of counter-e");
    };
    assert_eq!(
        last_revision.0,
        1,
        "a snapshot every 5 events, not after every command: {} written",
        last_revision.0 + 1
    );
}
