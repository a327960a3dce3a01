//! The scavenge job manager over a real engine store: runs, their `$scavenges` history as
//! KurrentDB writes it, one at a time, stop, a store that cannot scavenge, index
//! checkpoints, and automatic runs on a short schedule.

use std::sync::Arc;
use std::time::Duration;

use strata_core::{
    EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, RecordedEvent, StreamName,
    StreamSlice,
};
use strata_engine::{Config, Store};
use strata_operations::{
    AutoScavenge, JobState, NodeOperations, OperationsError, SCAVENGE_CHUNKS_COMPLETED,
    SCAVENGE_COMPLETED, SCAVENGE_STARTED, SCAVENGES_STREAM, ScavengeJobs, ScavengeRequest,
    Schedule, StartOutcome, Trigger, scavenge_stream,
};

const NODE: &str = "127.0.0.1:2113";

fn name(stream: &str) -> StreamName {
    StreamName::new(stream).unwrap()
}

/// A store with several sealed segments, half their events in a deleted stream.
async fn store_with_removable_events() -> (Arc<Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let pad = "x".repeat(4000);
    for round in 0..60 {
        for stream in ["doomed-1", "kept-1"] {
            let events = (0..10)
                .map(|index| {
                    ProposedEvent::json(
                        "Happened",
                        format!(r#"{{"round":{round},"index":{index},"pad":"{pad}"}}"#),
                    )
                })
                .collect();
            store
                .append(&name(stream), ExpectedRevision::Any, events)
                .await
                .unwrap();
        }
    }
    store
        .delete_stream(&name("doomed-1"), ExpectedRevision::Any)
        .await
        .unwrap();
    (store, dir)
}

async fn events_of(store: &Store, stream: &str) -> Vec<RecordedEvent> {
    match store
        .read_stream(&name(stream), ReadStreamOptions::forwards())
        .await
        .unwrap()
    {
        StreamSlice::Found { events, .. } => events,
        StreamSlice::NotFound => Vec::new(),
    }
}

fn json(event: &RecordedEvent) -> serde_json::Value {
    serde_json::from_slice(&event.data).unwrap()
}

fn started(outcome: StartOutcome) -> String {
    match outcome {
        StartOutcome::Started(id) => id,
        other => panic!("expected a start, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_removes_events_and_writes_its_history_as_kurrentdb_does() {
    let (store, _dir) = store_with_removable_events().await;
    let jobs = ScavengeJobs::new(store.clone(), Some(store.clone()), NODE);
    let id = started(jobs.start(ScavengeRequest::default()).unwrap());
    let finished = jobs.wait(&id).await.unwrap();
    assert_eq!(finished.state, JobState::Completed, "{finished:?}");
    assert_eq!(finished.trigger, Trigger::Manual);
    let report = finished.report.clone().unwrap();
    assert!(report["events_removed"].as_u64().unwrap() > 0, "{report}");
    assert!(finished.progress.segments_total >= 2, "{finished:?}");
    assert_eq!(jobs.history()[0].id, id);
    assert!(jobs.current().is_none());

    let history = events_of(&store, &scavenge_stream(&id)).await;
    let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types.first(), Some(&SCAVENGE_STARTED), "{types:?}");
    assert_eq!(types.last(), Some(&SCAVENGE_COMPLETED), "{types:?}");
    let chunks: Vec<_> = history
        .iter()
        .filter(|e| e.event_type == SCAVENGE_CHUNKS_COMPLETED)
        .map(json)
        .collect();
    assert_eq!(chunks.len() as u64, finished.progress.segments_total);
    assert!(chunks.iter().any(|chunk| chunk["wasScavenged"] == true));
    for chunk in &chunks {
        assert_eq!(chunk["scavengeId"], id.as_str());
        assert_eq!(chunk["nodeEndpoint"], NODE);
        assert_eq!(chunk["chunkStartNumber"], chunk["chunkEndNumber"]);
        assert!(chunk["timeTaken"].as_str().unwrap().contains(':'));
    }
    let start = json(&history[0]);
    assert_eq!(start["scavengeId"], id.as_str());
    assert_eq!(start["nodeEndpoint"], NODE);
    assert_eq!(start["threads"], 1);
    assert_eq!(start["startFromChunk"], 0);
    let completed = json(history.last().unwrap());
    assert_eq!(completed["result"], "Success");
    assert_eq!(
        completed["spaceSaved"].as_u64().unwrap(),
        report["allocated_bytes_before"].as_u64().unwrap()
            - report["allocated_bytes_after"].as_u64().unwrap()
    );
    assert!(completed["spaceSaved"].as_u64().unwrap() > 0);
    assert!(completed.get("error").is_none());

    // `$scavenges` links the started and completed events.
    let links: Vec<String> = events_of(&store, SCAVENGES_STREAM)
        .await
        .iter()
        .map(|e| String::from_utf8(e.data.to_vec()).unwrap())
        .collect();
    let stream = scavenge_stream(&id);
    assert_eq!(
        links,
        vec![
            format!("0@{stream}"),
            format!("{}@{stream}", history.len() - 1)
        ]
    );
    // The run's stream expires and only `$ops` (and admins) read it.
    let metadata = store.stream_metadata(&name(&stream)).await.unwrap();
    assert_eq!(
        metadata.metadata.max_age,
        Some(strata_operations::SCAVENGE_HISTORY_MAX_AGE)
    );
    // The deleted stream's events are gone, the kept ones read as before.
    assert_eq!(events_of(&store, "kept-1").await.len(), 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_at_a_time_and_a_stop_ends_it_with_a_stopped_result() {
    let (store, _dir) = store_with_removable_events().await;
    let jobs = ScavengeJobs::new(store.clone(), Some(store.clone()), NODE);
    // 1 %: the run sleeps 99 times as long as it works, so it is still going when stopped.
    let id = started(
        jobs.start(ScavengeRequest {
            throttle_percent: 1,
            ..ScavengeRequest::default()
        })
        .unwrap(),
    );
    assert_eq!(
        jobs.start(ScavengeRequest::default()).unwrap(),
        StartOutcome::InProgress(id.clone())
    );
    assert_eq!(jobs.current().unwrap().state, JobState::Running);
    assert!(matches!(
        jobs.stop("not-a-scavenge"),
        Err(OperationsError::NotFound(_))
    ));
    assert_eq!(jobs.stop(&id).unwrap(), id);
    let finished = jobs.wait(&id).await.unwrap();
    assert_eq!(finished.state, JobState::Stopped, "{finished:?}");
    let history = events_of(&store, &scavenge_stream(&id)).await;
    assert_eq!(json(history.last().unwrap())["result"], "Stopped");
    // Nothing runs now: stopping again finds nothing, and a new run completes the work.
    assert!(matches!(jobs.stop(&id), Err(OperationsError::NotFound(_))));
    let again = started(jobs.start(ScavengeRequest::default()).unwrap());
    assert_eq!(jobs.wait(&again).await.unwrap().state, JobState::Completed);
    assert_eq!(events_of(&store, "kept-1").await.len(), 600);
}

#[tokio::test]
async fn bad_requests_and_a_store_that_cannot_scavenge_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let without = ScavengeJobs::new(store.clone(), None, NODE);
    assert!(!without.can_scavenge());
    let refused = without.start(ScavengeRequest::default()).unwrap_err();
    assert!(matches!(refused, OperationsError::Unsupported(_)));
    assert!(refused.to_string().contains("cannot scavenge"), "{refused}");
    let operations = NodeOperations::new(without, None);
    assert!(matches!(
        operations.merge_indexes().await,
        Err(OperationsError::Unsupported(_))
    ));

    let jobs = ScavengeJobs::new(store.clone(), Some(store.clone()), NODE);
    for request in [
        ScavengeRequest {
            throttle_percent: 0,
            ..ScavengeRequest::default()
        },
        ScavengeRequest {
            throttle_percent: 101,
            ..ScavengeRequest::default()
        },
        ScavengeRequest {
            threads: 0,
            ..ScavengeRequest::default()
        },
    ] {
        assert!(matches!(
            jobs.start(request),
            Err(OperationsError::InvalidArgument(_))
        ));
    }
    assert!(jobs.current().is_none());
}

fn index_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("index"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_indexes_writes_an_index_file_now() {
    let dir = tempfile::tempdir().unwrap();
    // Index files only every 64 MiB: a few events never reach one on their own.
    let store = Store::open(
        dir.path(),
        Config {
            index_checkpoint_interval_bytes: 64 * 1024 * 1024,
            ..Config::small_for_tests()
        },
    )
    .unwrap();
    store
        .append(
            &name("order-1"),
            ExpectedRevision::Any,
            vec![ProposedEvent::json("Placed", "{}")],
        )
        .await
        .unwrap();
    let before = index_files(dir.path());
    let operations = NodeOperations::new(
        ScavengeJobs::new(store.clone(), Some(store.clone()), NODE),
        Some(store.clone()),
    );
    operations.merge_indexes().await.unwrap();
    // The saver thread writes the file it was handed.
    let mut after = index_files(dir.path());
    for _ in 0..500 {
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        after = index_files(dir.path());
    }
    assert!(after > before, "index files {before} -> {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_runs_follow_the_schedule_and_skip_when_nothing_can_be_removed() {
    let (store, _dir) = store_with_removable_events().await;
    let jobs = ScavengeJobs::new(store.clone(), Some(store.clone()), NODE);
    assert!(jobs.auto_status().is_none());
    let task = jobs.spawn_automatic(AutoScavenge {
        schedule: Schedule::parse("every 1s").unwrap(),
        skip_when_idle: true,
        throttle_percent: 100,
    });
    // The first run removes the deleted stream's events; the second removes nothing;
    // later turns are skipped (nothing was written since).
    let mut finished = jobs.watch_finished();
    let mut skipped = false;
    for _ in 0..600 {
        if jobs
            .auto_status()
            .is_some_and(|status| status.runs_skipped > 0)
        {
            skipped = true;
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), finished.changed()).await;
    }
    task.abort();
    assert!(skipped, "no turn was skipped: {:?}", jobs.auto_status());
    let history = jobs.history();
    assert!(history.len() >= 2, "{history:?}");
    assert!(
        history
            .iter()
            .all(|job| job.trigger == Trigger::Automatic && job.state == JobState::Completed)
    );
    let oldest = history.last().unwrap();
    assert!(oldest.progress.events_removed > 0, "{oldest:?}");
    assert_eq!(history[0].progress.events_removed, 0);
    let status = jobs.auto_status().unwrap();
    assert!(
        status
            .last_decision
            .as_deref()
            .is_some_and(|decision| decision.contains("removed nothing")),
        "{status:?}"
    );
}
