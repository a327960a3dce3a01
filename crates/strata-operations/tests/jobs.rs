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
    // Index files up to the end now, so no save still in flight changes which segments a
    // scavenge (or its estimate) may take while a test runs.
    store.checkpoint_indexes().unwrap();
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
        min_reclaimable_bytes: 0,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reclaimable_estimate_is_near_what_a_scavenge_removes_and_zero_after_it() {
    let (store, _dir) = store_with_removable_events().await;
    let estimate = store.estimate_reclaimable_bytes().unwrap();
    let report = store
        .scavenge(strata_engine::ScavengeOptions::default())
        .unwrap();
    assert!(report.frame_bytes_removed > 0, "{report:?}");
    let removed = report.frame_bytes_removed as f64;
    assert!(
        (estimate as f64 - removed).abs() <= removed * 0.05,
        "estimated {estimate}, removed {removed}"
    );
    assert_eq!(store.estimate_reclaimable_bytes().unwrap(), 0);
}

/// Waits until automatic scavenging has taken `turns` decisions.
async fn wait_for_turns(jobs: &ScavengeJobs, turns: u64) -> strata_operations::AutoStatus {
    let mut finished = jobs.watch_finished();
    for _ in 0..600 {
        if let Some(status) = jobs.auto_status()
            && status.runs_skipped + status.runs_started >= turns
        {
            return status;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), finished.changed()).await;
    }
    panic!("no automatic turn: {:?}", jobs.auto_status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_runs_under_the_reclaimable_threshold_are_skipped_and_those_above_run() {
    let (store, _dir) = store_with_removable_events().await;
    let estimate = store.estimate_reclaimable_bytes().unwrap();
    assert!(estimate > 0);
    let auto = |min_reclaimable_bytes| AutoScavenge {
        schedule: Schedule::parse("every 1s").unwrap(),
        skip_when_idle: false,
        throttle_percent: 100,
        min_reclaimable_bytes,
    };

    // Under the threshold: skipped, nothing removed.
    let jobs = ScavengeJobs::new(store.clone(), Some(store.clone()), NODE);
    let task = jobs.spawn_automatic(auto(estimate * 2));
    let status = wait_for_turns(&jobs, 1).await;
    task.abort();
    assert_eq!(status.runs_started, 0, "{status:?}");
    assert_eq!(status.last_reclaimable_estimate, Some(estimate));
    assert!(
        status
            .last_decision
            .as_deref()
            .is_some_and(|decision| decision.contains("under the threshold")),
        "{status:?}"
    );
    assert!(jobs.history().is_empty());
    assert_eq!(store.estimate_reclaimable_bytes().unwrap(), estimate);

    // Over it: the run starts and removes the deleted stream's events.
    let jobs = ScavengeJobs::new(store.clone(), Some(store.clone()), NODE);
    let task = jobs.spawn_automatic(auto(estimate / 2));
    let status = wait_for_turns(&jobs, 1).await;
    assert_eq!(status.runs_started, 1, "{status:?}");
    let id = jobs
        .current()
        .map(|job| job.id)
        .or_else(|| jobs.history().first().map(|job| job.id.clone()))
        .unwrap();
    let finished = jobs.wait(&id).await.unwrap();
    task.abort();
    assert_eq!(finished.trigger, Trigger::Automatic);
    assert!(finished.progress.events_removed > 0, "{finished:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_of_runs_is_read_back_from_the_scavenges_streams_after_a_restart() {
    let (store, dir) = store_with_removable_events().await;
    let jobs = ScavengeJobs::new(store.clone(), Some(store.clone()), NODE);
    let mut before = Vec::new();
    for (threads, throttle_percent) in [(2, 100), (1, 90)] {
        let id = started(
            jobs.start(ScavengeRequest {
                threads,
                throttle_percent,
                start_from_segment: 1,
                ..ScavengeRequest::default()
            })
            .unwrap(),
        );
        before.push(jobs.wait(&id).await.unwrap());
    }
    // A run the node did not finish: only its start is written.
    let interrupted = "0f0f0f0f-0000-4000-8000-000000000001";
    let stream = name(&scavenge_stream(interrupted));
    let revision = store
        .append(
            &stream,
            ExpectedRevision::Any,
            vec![ProposedEvent::json(
                SCAVENGE_STARTED,
                serde_json::json!({"scavengeId": interrupted, "threads": 3,
                    "startFromChunk": 0, "throttlePercent": 40})
                .to_string(),
            )],
        )
        .await
        .unwrap()
        .current_revision
        .0;
    store
        .append(
            &name(SCAVENGES_STREAM),
            ExpectedRevision::Any,
            vec![ProposedEvent::json(
                "$>",
                format!("{revision}@{}", scavenge_stream(interrupted)),
            )],
        )
        .await
        .unwrap();
    store.close();
    drop((jobs, store));

    let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
    let jobs = ScavengeJobs::new(store.clone(), Some(store.clone()), NODE);
    assert!(jobs.history().is_empty());
    assert_eq!(jobs.load_history().await, 3);
    let history = jobs.history();
    assert_eq!(history[0].id, interrupted);
    assert_eq!(history[0].state, JobState::Failed);
    assert_eq!(history[0].threads, 3);
    assert_eq!(history[0].throttle_percent, 40);
    assert!(history[0].error.is_some());
    for (restored, run) in history[1..].iter().zip(before.iter().rev()) {
        assert_eq!(restored.id, run.id);
        assert_eq!(restored.state, JobState::Completed);
        assert_eq!(restored.threads, run.threads);
        assert_eq!(restored.throttle_percent, run.throttle_percent);
        assert_eq!(restored.start_from_segment, 1);
        assert_eq!(
            restored.progress.segments_done, run.progress.segments_done,
            "{restored:?} {run:?}"
        );
        assert_eq!(
            restored.progress.frame_bytes_removed,
            run.progress.frame_bytes_removed
        );
        assert!(restored.finished_at_unix_ms >= Some(restored.started_at_unix_ms));
        assert_eq!(jobs.get(&run.id).unwrap().id, run.id);
    }
    assert!(before[0].progress.frame_bytes_removed > 0);
    // Loading again adds nothing twice.
    assert_eq!(jobs.load_history().await, 0);
    assert_eq!(jobs.history().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_threads_rewrite_segments_at_once_with_the_result_of_one() {
    let (one, _one_dir) = store_with_removable_events().await;
    let (four, _four_dir) = store_with_removable_events().await;
    let mut finished = Vec::new();
    for (store, threads) in [(&one, 1), (&four, 4)] {
        let jobs = ScavengeJobs::new(store.clone(), Some(store.clone()), NODE);
        let id = started(
            jobs.start(ScavengeRequest {
                threads,
                ..ScavengeRequest::default()
            })
            .unwrap(),
        );
        let job = jobs.wait(&id).await.unwrap();
        assert_eq!(job.state, JobState::Completed, "{job:?}");
        // One `$scavengeChunksCompleted` per segment, each segment once.
        let mut chunks: Vec<u64> = events_of(store, &scavenge_stream(&id))
            .await
            .iter()
            .filter(|e| e.event_type == SCAVENGE_CHUNKS_COMPLETED)
            .map(|e| json(e)["chunkStartNumber"].as_u64().unwrap())
            .collect();
        chunks.sort_unstable();
        let expected: Vec<u64> = (0..job.progress.segments_total).collect();
        assert_eq!(chunks, expected, "threads {threads}");
        let completed = events_of(store, &scavenge_stream(&id)).await;
        assert_eq!(
            json(completed.last().unwrap())["maxChunkScavenged"],
            job.progress.segments_total - 1
        );
        finished.push(job);
    }
    assert!(
        finished[1].progress.segments_total >= 3,
        "{:?}",
        finished[1]
    );
    for field in [
        "events_removed",
        "frame_bytes_removed",
        "segments_considered",
        "segments_rewritten",
        "segments_deferred",
    ] {
        assert_eq!(
            finished[0].report.as_ref().unwrap()[field],
            finished[1].report.as_ref().unwrap()[field],
            "{field}"
        );
    }
    assert!(finished[1].progress.events_removed > 0);
    assert_eq!(
        finished[1].progress.segments_done,
        finished[1].progress.segments_total
    );
    for stream in ["kept-1", "doomed-1"] {
        let a: Vec<_> = events_of(&one, stream).await.iter().map(json).collect();
        let b: Vec<_> = events_of(&four, stream).await.iter().map(json).collect();
        assert_eq!(a, b, "{stream}");
    }
    assert_eq!(events_of(&four, "kept-1").await.len(), 600);
    assert_eq!(events_of(&four, "doomed-1").await.len(), 0);
}
