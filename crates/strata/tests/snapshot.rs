//! Snapshots on the embedded engine: bounded loads, fallback to replay.

mod common;

use common::{Counter, CountingStore};
use strata::{
    Bytes, EventStore, ExpectedRevision, ProposedEvent, Repository, SnapshotPolicy, StreamName,
};

#[tokio::test]
async fn a_load_reads_fewer_than_n_events_after_the_snapshot() {
    const EVERY: u64 = 10;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let counters = Repository::<Counter, CountingStore>::new(store.clone())
        .with_snapshot_policy(SnapshotPolicy::EveryEvents(EVERY));
    for count in 1..=95_u64 {
        counters.execute("s", &1).await.expect("execute");
        store.take_events_read();
        let loaded = counters.load("s").await.expect("load");
        let read = store.take_events_read();
        assert!(read < EVERY, "after {count} events a load read {read}");
        assert_eq!(read, loaded.events_replayed());
        assert_eq!(loaded.aggregate().value, count);
        assert_eq!(loaded.from_snapshot(), count >= EVERY);
    }
}

#[tokio::test]
async fn an_on_demand_snapshot_covers_everything_so_far() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let counters = Repository::<Counter, CountingStore>::new(store.clone());
    for _ in 0..7 {
        counters.execute("d", &2).await.expect("execute");
    }
    assert_eq!(counters.load("d").await.expect("load").events_replayed(), 7);
    let revision = counters.snapshot("d").await.expect("snapshot");
    assert_eq!(revision, Some(strata::Revision(6)));
    let loaded = counters.load("d").await.expect("load");
    assert!(loaded.from_snapshot());
    assert_eq!(loaded.events_replayed(), 0);
    assert_eq!(loaded.aggregate().value, 14);
    assert_eq!(
        counters.snapshot("never-written").await.expect("none"),
        None
    );
}

async fn append_snapshot(store: &CountingStore, metadata: &str, data: &str) {
    let stream = StreamName::new("$snapshot-counter-f").expect("name");
    let event = ProposedEvent::json("$snapshot", Bytes::from(data.to_owned()))
        .with_metadata(Bytes::from(metadata.to_owned()));
    store
        .append(&stream, ExpectedRevision::Any, vec![event])
        .await
        .expect("append snapshot");
}

#[tokio::test]
async fn an_unreadable_snapshot_falls_back_to_full_replay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let counters = Repository::<Counter, CountingStore>::new(store.clone());
    for _ in 0..5 {
        counters.execute("f", &3).await.expect("execute");
    }
    // An older snapshot version whose state would be wrong if it were used.
    append_snapshot(
        &store,
        r#"{"snapshotVersion":0}"#,
        r#"{"revision":4,"state":{"value":999,"additions":1},"commandIds":[]}"#,
    )
    .await;
    let loaded = counters.load("f").await.expect("load");
    assert!(!loaded.from_snapshot());
    assert_eq!(loaded.events_replayed(), 5);
    assert_eq!(loaded.aggregate().value, 15);

    // The current version, but a state that no longer deserialises.
    append_snapshot(
        &store,
        r#"{"snapshotVersion":1}"#,
        r#"{"revision":4,"state":{"count":"five"},"commandIds":[]}"#,
    )
    .await;
    let loaded = counters.load("f").await.expect("load");
    assert!(!loaded.from_snapshot());
    assert_eq!(loaded.aggregate().value, 15);

    // Commands still work and their events never change.
    counters.execute("f", &1).await.expect("execute");
    assert_eq!(
        counters.load("f").await.expect("load").aggregate().value,
        16
    );
}
