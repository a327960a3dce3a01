//! Failing disks, injected under the segment files (`Faults`, feature `fault-injection`):
//! - a write or a sync that fails (`EIO`, `ENOSPC`) poisons the store: the append it
//!   belonged to and every later write fail with `Error::Poisoned` naming the cause, reads
//!   of what was acknowledged go on, and a reopen finds every acknowledged event (the
//!   failed append is there whole or not at all) and takes appends again;
//! - a read that fails is an `Error::Io` for that read only: the store is not poisoned.
//!
//! The seam's read counter also shows what opening costs: stream metadata comes from the
//! index files, not from one read of the log per `$$` stream.

use std::path::Path;
use std::sync::Arc;

use strata_core::{
    Error, EventId, EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions, ReadStreamOptions,
    RecordedEvent, StreamMetadata, StreamName,
};
use strata_engine::faults::{Faults, InjectedError};
use strata_engine::{Config, Store, verify};
use tempfile::TempDir;

fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

fn event(number: u64) -> ProposedEvent {
    ProposedEvent::json("Faulted", format!(r#"{{"number":{number}}}"#))
        .with_id(EventId::from_u128(0xfa17_0000 + u128::from(number)))
}

fn with_faults(faults: &Arc<Faults>) -> Config {
    Config {
        faults: Some(faults.clone()),
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

/// Which operation fails.
#[derive(Clone, Copy, Debug)]
enum Failing {
    Write(InjectedError),
    Sync(InjectedError),
}

async fn check_failure_poisons_and_loses_nothing(failing: Failing, after_appends: u64) {
    let case = format!("{failing:?} after {after_appends} appends");
    let dir = TempDir::new().unwrap();
    let faults = Faults::new();
    let store = Store::open(dir.path(), with_faults(&faults)).unwrap();
    // Each single-event append here is one group: one write and one sync.
    let writes_before = faults.writes();
    match failing {
        Failing::Write(error) => faults.fail_write(writes_before + after_appends, error),
        Failing::Sync(error) => faults.fail_sync(after_appends, error),
    }
    let mut acknowledged = Vec::new();
    for number in 0..after_appends {
        let result = store
            .append(&stream("s"), ExpectedRevision::Any, vec![event(number)])
            .await
            .unwrap_or_else(|error| panic!("{case}: append {number} before the failure: {error}"));
        acknowledged.push(result);
    }
    let failed = vec![event(100), event(101)];
    match store
        .append(&stream("s"), ExpectedRevision::Any, failed.clone())
        .await
    {
        Err(Error::Poisoned { cause }) => {
            let errno_text = match failing {
                Failing::Write(InjectedError::NoSpace) => "No space left on device",
                _ => "Input/output error",
            };
            assert!(
                cause.contains(errno_text) && cause.contains("0000000000.seg"),
                "{case}: the cause does not say what failed where: {cause}"
            );
        }
        other => panic!("{case}: expected Error::Poisoned, got {other:?}"),
    }
    for number in 200..203 {
        assert!(
            matches!(
                store
                    .append(&stream("other"), ExpectedRevision::Any, vec![event(number)])
                    .await,
                Err(Error::Poisoned { .. })
            ),
            "{case}: a later append is not refused"
        );
    }
    let visible = read_stream(&store, "s").await;
    assert_eq!(
        visible.len() as u64,
        after_appends,
        "{case}: reads show the acknowledged"
    );
    for (event, result) in visible.iter().zip(&acknowledged) {
        assert_eq!(event.position, result.position, "{case}");
    }
    store.close();
    drop(store);

    let store = Store::open(dir.path(), Config::small_for_tests()).expect("the store reopens");
    let reopened = read_stream(&store, "s").await;
    assert!(
        reopened.len() >= visible.len(),
        "{case}: acknowledged events are lost"
    );
    assert_eq!(reopened[..visible.len()], visible[..], "{case}");
    let rest = &reopened[visible.len()..];
    assert!(
        rest.is_empty() || rest.len() == failed.len(),
        "{case}: part of the failed append is visible: {rest:?}"
    );
    let last = reopened.last().map(|event| event.revision.0);
    let expected = last.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
    store
        .append(&stream("s"), expected, vec![event(300)])
        .await
        .expect("appends work again after the reopen");
    close_and_verify_ok(store, dir.path());
}

fn close_and_verify_ok(store: Arc<Store>, dir: &Path) {
    store.close();
    drop(store);
    let report = verify(dir, &mut |_| {}).unwrap();
    assert!(report.is_ok(), "verify:\n{report}");
}

#[tokio::test]
async fn an_eio_on_write_poisons_the_store_and_loses_nothing_acknowledged() {
    for after_appends in [0, 4] {
        check_failure_poisons_and_loses_nothing(Failing::Write(InjectedError::Io), after_appends)
            .await;
    }
}

#[tokio::test]
async fn a_full_disk_on_write_poisons_the_store_and_loses_nothing_acknowledged() {
    check_failure_poisons_and_loses_nothing(Failing::Write(InjectedError::NoSpace), 3).await;
}

#[tokio::test]
async fn an_eio_on_sync_poisons_the_store_and_loses_nothing_acknowledged() {
    for after_appends in [0, 4] {
        check_failure_poisons_and_loses_nothing(Failing::Sync(InjectedError::Io), after_appends)
            .await;
    }
}

#[tokio::test]
async fn an_eio_on_read_fails_that_read_and_nothing_else() {
    let dir = TempDir::new().unwrap();
    let faults = Faults::new();
    let store = Store::open(dir.path(), with_faults(&faults)).unwrap();
    for number in 0..5 {
        store
            .append(&stream("s"), ExpectedRevision::Any, vec![event(number)])
            .await
            .unwrap();
    }
    faults.fail_read(faults.reads(), InjectedError::Io);
    match store
        .read_stream(&stream("s"), ReadStreamOptions::forwards())
        .await
    {
        Err(Error::Io { context, source }) => {
            assert!(context.contains("0000000000.seg"), "{context}");
            assert_eq!(source.raw_os_error(), Some(5));
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert_eq!(
        read_stream(&store, "s").await.len(),
        5,
        "the next read works"
    );
    let all = store.read_all(ReadAllOptions::forwards()).await.unwrap();
    assert_eq!(all.events.len(), 5);
    store
        .append(&stream("s"), ExpectedRevision::Exact(4), vec![event(5)])
        .await
        .expect("a failed read does not poison the store");
    close_and_verify_ok(store, dir.path());
}

/// Regression: opening read the last event of every `$$` stream from the log (one random
/// read each); the index files now hold the parsed metadata.
#[tokio::test]
async fn opening_reads_no_metadata_event_per_stream() {
    const STREAMS: u64 = 300;
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let metadata = StreamMetadata {
        max_count: Some(1),
        ..StreamMetadata::default()
    };
    for number in 0..STREAMS {
        let name = stream(&format!("limited-{number}"));
        store
            .set_stream_metadata(&name, ExpectedRevision::Any, &metadata)
            .await
            .unwrap();
        store
            .append(
                &name,
                ExpectedRevision::Any,
                vec![event(number * 2), event(number * 2 + 1)],
            )
            .await
            .unwrap();
    }
    store.close();
    drop(store);

    let faults = Faults::new();
    let store = Store::open(dir.path(), with_faults(&faults)).unwrap();
    let reads_at_open = faults.reads();
    assert!(
        reads_at_open < 20,
        "opening a store of {STREAMS} metadata streams read the log {reads_at_open} times"
    );
    for number in [0, STREAMS / 2, STREAMS - 1] {
        let events = read_stream(&store, &format!("limited-{number}")).await;
        assert_eq!(
            events.len(),
            1,
            "$maxCount of limited-{number} holds after the reopen"
        );
        assert_eq!(events[0].id, event(number * 2 + 1).id);
    }
    close_and_verify_ok(store, dir.path());
}
