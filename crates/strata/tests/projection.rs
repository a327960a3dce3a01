//! Projections on the embedded engine: a failing handler stops naming the event, and a
//! restart resumes to the same read model as a rebuild from zero.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::{Counter, CounterEvent, CountingStore};
use serde::{Deserialize, Serialize};
use strata::{
    Error, Projection, ProjectionRunner, ProjectionSource, RecordedEvent, Repository, Upcasters,
    decode_event,
};

/// Fails on the event whose `by` equals this (0: never).
static FAIL_ON_BY: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Sums {
    events: u64,
    total: u64,
    /// Positions seen, to prove no event is handled twice or skipped.
    positions: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("refusing by = {0}")]
struct Refused(u64);

impl Projection for Sums {
    type Error = Refused;

    fn handle(&mut self, event: &RecordedEvent) -> Result<(), Refused> {
        let decoded: CounterEvent =
            decode_event(event, &Upcasters::new()).map_err(|_| Refused(u64::MAX))?;
        let CounterEvent::Added { by } = decoded;
        if by == FAIL_ON_BY.load(Ordering::SeqCst) {
            return Err(Refused(by));
        }
        self.events += 1;
        self.total += by;
        self.positions.push(event.position.0);
        Ok(())
    }
}

fn counters() -> ProjectionSource {
    ProjectionSource::Category("counter".to_owned())
}

#[tokio::test]
async fn a_stopped_projection_resumes_to_the_same_model_as_a_rebuild() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let repository = Repository::<Counter, CountingStore>::new(store.clone())
        .with_snapshot_policy(strata::SnapshotPolicy::EveryEvents(4));
    for by in 1..=20_u64 {
        let id = format!("c{}", by % 3);
        repository.execute(&id, &by).await.expect("execute");
    }

    FAIL_ON_BY.store(13, Ordering::SeqCst);
    let mut runner =
        ProjectionRunner::<Sums, CountingStore>::load(store.clone(), "sums", counters())
            .await
            .expect("load")
            .with_checkpoint_every_events(5);
    let error = runner.catch_up().await.expect_err("stops at by = 13");
    match &error {
        Error::ProjectionFailed {
            projection,
            stream,
            event_type,
            reason,
            ..
        } => {
            assert_eq!(projection, "sums");
            assert_eq!(stream.as_str(), "counter-c1");
            assert_eq!(event_type, "Added");
            assert!(reason.contains("13"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Back at the last checkpoint: 10 events, never past the failing one.
    assert_eq!(runner.read_model().events, 10);
    drop(runner);

    FAIL_ON_BY.store(0, Ordering::SeqCst);
    for by in 21..=25_u64 {
        repository.execute("late", &by).await.expect("execute");
    }
    let mut restarted =
        ProjectionRunner::<Sums, CountingStore>::load(store.clone(), "sums", counters())
            .await
            .expect("reload")
            .with_checkpoint_every_events(5);
    assert_eq!(restarted.read_model().events, 10);
    assert_eq!(restarted.catch_up().await.expect("catch up"), 15);

    let mut rebuilt =
        ProjectionRunner::<Sums, CountingStore>::load(store.clone(), "sums-rebuilt", counters())
            .await
            .expect("load");
    assert_eq!(rebuilt.catch_up().await.expect("rebuild"), 25);
    assert_eq!(restarted.read_model(), rebuilt.read_model());
    assert_eq!(rebuilt.read_model().total, (1..=25).sum::<u64>());
    let mut positions = rebuilt.read_model().positions.clone();
    positions.dedup();
    assert_eq!(
        positions.len(),
        25,
        "snapshots and checkpoints are not projected"
    );

    assert_eq!(restarted.catch_up().await.expect("nothing new"), 0);
    restarted.reset().await.expect("reset");
    assert_eq!(restarted.catch_up().await.expect("from zero"), 25);
    assert_eq!(restarted.read_model(), rebuilt.read_model());
}

#[tokio::test]
async fn a_second_runner_of_the_same_projection_cannot_overwrite_the_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let repository = Repository::<Counter, CountingStore>::new(store.clone());
    repository.execute("x", &100).await.expect("execute");
    let load = || ProjectionRunner::<Sums, CountingStore>::load(store.clone(), "twice", counters());
    let mut first = load().await.expect("first");
    let mut second = load().await.expect("second");
    first.catch_up().await.expect("first catches up");
    let error = second.catch_up().await.expect_err("stale checkpoint");
    assert!(
        matches!(
            error,
            Error::Store(strata_core::Error::WrongExpectedRevision { .. })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_following_projection_sees_events_appended_after_it_started() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let repository = Repository::<Counter, CountingStore>::new(store.clone());
    for by in 101..=103_u64 {
        repository.execute("early", &by).await.expect("execute");
    }
    let runner = ProjectionRunner::<Sums, CountingStore>::load(store.clone(), "live", counters())
        .await
        .expect("load");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(async move {
        let mut runner = runner;
        let handled = runner
            .follow(async {
                let _ = stopped.await;
            })
            .await;
        (runner, handled)
    });

    // Wait until the follower has caught up (its checkpoint holds the early events), so
    // the next appends reach it live.
    let saved_events = || async {
        ProjectionRunner::<Sums, CountingStore>::load(store.clone(), "live", counters())
            .await
            .expect("reload")
            .read_model()
            .events
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while saved_events().await < 3 {
        assert!(tokio::time::Instant::now() < deadline, "never caught up");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for by in 104..=106_u64 {
        repository.execute("late", &by).await.expect("execute");
    }
    while saved_events().await < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "live events not seen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    stop.send(()).expect("follower still running");
    let (runner, handled) = follower.await.expect("follower task");
    assert_eq!(handled.expect("clean stop"), 6);
    assert_eq!(runner.read_model().total, (101..=106).sum::<u64>());
    drop(runner);

    // The stop saved everything: a restart handles only what came after.
    repository.execute("after", &107).await.expect("execute");
    let mut restarted =
        ProjectionRunner::<Sums, CountingStore>::load(store.clone(), "live", counters())
            .await
            .expect("reload");
    assert_eq!(restarted.catch_up().await.expect("catch up"), 1);
    assert_eq!(restarted.read_model().total, (101..=107).sum::<u64>());
}
