//! The `$scavenges` and `$scavenges-<id>` streams, written as KurrentDB writes them
//! (`TFChunkScavengerLog`): each run has its own stream holding `$scavengeStarted`, one
//! `$scavengeChunksCompleted` per segment and `$scavengeCompleted`; the started and
//! completed events are linked (`$>`, `N@$scavenges-<id>`) from `$scavenges`. A run's
//! stream gets `$maxAge` (30 days) and an ACL that lets `$ops` read it.

use std::sync::Arc;
use std::time::Duration;

use strata_core::system_streams::LINK_EVENT_TYPE;
use strata_core::{
    ContentType, EventStore, ExpectedRevision, ProposedEvent, ReadStreamOptions, RecordedEvent,
    SegmentFinished, StreamName, StreamSlice,
};

use crate::jobs::{JobProgress, JobState, JobStatus, Trigger};

/// The stream that lists every run.
pub const SCAVENGES_STREAM: &str = "$scavenges";
/// How long a run's own stream is kept (KurrentDB's `ScavengeHistoryMaxAge` default).
pub const SCAVENGE_HISTORY_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

pub const SCAVENGE_STARTED: &str = "$scavengeStarted";
pub const SCAVENGE_CHUNKS_COMPLETED: &str = "$scavengeChunksCompleted";
pub const SCAVENGE_COMPLETED: &str = "$scavengeCompleted";

/// How a run ended, as `$scavengeCompleted` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunResult {
    Success,
    Stopped,
    Errored,
}

impl RunResult {
    fn as_str(self) -> &'static str {
        match self {
            RunResult::Success => "Success",
            RunResult::Stopped => "Stopped",
            RunResult::Errored => "Errored",
        }
    }
}

/// The name of one run's stream.
pub fn scavenge_stream(scavenge_id: &str) -> String {
    format!("{SCAVENGES_STREAM}-{scavenge_id}")
}

/// Writes one run's events. Writing is best effort, as in KurrentDB: a failed write is
/// logged and the scavenge goes on.
pub(crate) struct RunHistory {
    store: Arc<dyn EventStore>,
    scavenge_id: String,
    node_endpoint: String,
}

impl RunHistory {
    pub(crate) fn new(store: Arc<dyn EventStore>, scavenge_id: &str, node_endpoint: &str) -> Self {
        Self {
            store,
            scavenge_id: scavenge_id.to_owned(),
            node_endpoint: node_endpoint.to_owned(),
        }
    }

    pub(crate) async fn started(&self, start_from_chunk: u64, threads: u32, throttle_percent: u8) {
        let metadata = serde_json::json!({
            "$maxAge": SCAVENGE_HISTORY_MAX_AGE.as_secs(),
            "$acl": {"$r": ["$ops"], "$w": [], "$d": [], "$mr": [], "$mw": []},
        });
        let stream = scavenge_stream(&self.scavenge_id);
        if let Ok(name) = StreamName::new(&stream) {
            self.append(
                &name.metadata_stream(),
                ProposedEvent::json(strata_core::METADATA_EVENT_TYPE, metadata.to_string()),
            )
            .await;
        }
        let data = serde_json::json!({
            "scavengeId": self.scavenge_id,
            "nodeEndpoint": self.node_endpoint,
            "alwaysKeepScavenged": false,
            "mergeChunks": false,
            "startFromChunk": start_from_chunk,
            "threads": threads,
            "throttlePercent": throttle_percent,
        });
        self.detail(SCAVENGE_STARTED, data).await;
    }

    pub(crate) async fn segment_finished(&self, finished: &SegmentFinished) {
        let data = serde_json::json!({
            "scavengeId": self.scavenge_id,
            "chunkStartNumber": finished.segment,
            "chunkEndNumber": finished.segment,
            "timeTaken": time_span(finished.elapsed),
            "wasScavenged": finished.rewritten,
            "spaceSaved": finished.frame_bytes_removed,
            "nodeEndpoint": self.node_endpoint,
            "errorMessage": "",
        });
        let stream = scavenge_stream(&self.scavenge_id);
        if let Ok(name) = StreamName::new(&stream) {
            self.append(
                &name,
                ProposedEvent::json(SCAVENGE_CHUNKS_COMPLETED, data.to_string()),
            )
            .await;
        }
    }

    pub(crate) async fn completed(
        &self,
        result: RunResult,
        error: Option<&str>,
        elapsed: Duration,
        space_saved: u64,
        max_chunk_scavenged: u64,
    ) {
        let mut data = serde_json::json!({
            "scavengeId": self.scavenge_id,
            "nodeEndpoint": self.node_endpoint,
            "result": result.as_str(),
            "timeTaken": time_span(elapsed),
            "spaceSaved": space_saved,
            "maxChunkScavenged": max_chunk_scavenged,
        });
        if let (Some(error), Some(object)) = (error, data.as_object_mut()) {
            object.insert("error".into(), error.into());
        }
        self.detail(SCAVENGE_COMPLETED, data).await;
    }

    /// A detail event in the run's stream, linked from `$scavenges`.
    async fn detail(&self, event_type: &str, data: serde_json::Value) {
        let stream = scavenge_stream(&self.scavenge_id);
        let Ok(name) = StreamName::new(&stream) else {
            return;
        };
        let Some(revision) = self
            .append(&name, ProposedEvent::json(event_type, data.to_string()))
            .await
        else {
            return;
        };
        let Ok(index) = StreamName::new(SCAVENGES_STREAM) else {
            return;
        };
        let link = ProposedEvent {
            content_type: ContentType::Binary,
            ..ProposedEvent::json(LINK_EVENT_TYPE, format!("{revision}@{stream}"))
        };
        self.append(&index, link).await;
    }

    /// Appends one event; the revision it got, or `None` (logged) when it failed.
    async fn append(&self, stream: &StreamName, event: ProposedEvent) -> Option<u64> {
        match self
            .store
            .append(stream, ExpectedRevision::Any, vec![event])
            .await
        {
            Ok(result) => Some(result.current_revision.0),
            Err(error) => {
                tracing::warn!(%stream, %error, "could not write to the scavenge history");
                None
            }
        }
    }
}

/// The runs `$scavenges` links to, the latest first (at most `max`), rebuilt from their
/// streams: `$scavengeStarted` gives the settings and the start, each
/// `$scavengeChunksCompleted` a segment done (and its removed frame bytes),
/// `$scavengeCompleted` the end. What KurrentDB's events do not hold reads as unknown:
/// the trigger as manual, no requester, no events-removed count, no report.
pub(crate) async fn read_runs(store: &Arc<dyn EventStore>, max: usize) -> Vec<JobStatus> {
    let Ok(index) = StreamName::new(SCAVENGES_STREAM) else {
        return Vec::new();
    };
    // Two links per run.
    let links = match store
        .read_stream(
            &index,
            ReadStreamOptions::backwards().max_count(max.saturating_mul(2) + 2),
        )
        .await
    {
        Ok(StreamSlice::Found { events, .. }) => events,
        Ok(StreamSlice::NotFound) => return Vec::new(),
        Err(error) => {
            tracing::warn!(%error, "could not read the scavenge history");
            return Vec::new();
        }
    };
    let mut ids: Vec<String> = Vec::new();
    for link in &links {
        let Some(id) = std::str::from_utf8(&link.data)
            .ok()
            .and_then(|target| target.split_once('@'))
            .and_then(|(_, stream)| stream.strip_prefix(&format!("{SCAVENGES_STREAM}-")))
        else {
            continue;
        };
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_owned());
        }
    }
    let mut runs = Vec::new();
    for id in ids.into_iter().take(max) {
        let Ok(stream) = StreamName::new(scavenge_stream(&id)) else {
            continue;
        };
        match store
            .read_stream(&stream, ReadStreamOptions::forwards())
            .await
        {
            Ok(StreamSlice::Found { events, .. }) => {
                if let Some(run) = run_from_events(&id, &events) {
                    runs.push(run);
                }
            }
            Ok(StreamSlice::NotFound) => {}
            Err(error) => tracing::warn!(%stream, %error, "could not read a scavenge's history"),
        }
    }
    runs
}

fn unix_ms(event: &RecordedEvent) -> u64 {
    u64::try_from(event.created.0 / 1_000_000).unwrap_or(0)
}

/// One run from its stream's events; `None` without a `$scavengeStarted` (expired).
fn run_from_events(id: &str, events: &[RecordedEvent]) -> Option<JobStatus> {
    let json = |event: &RecordedEvent| {
        serde_json::from_slice::<serde_json::Value>(&event.data).unwrap_or_default()
    };
    let started = events.iter().find(|e| e.event_type == SCAVENGE_STARTED)?;
    let settings = json(started);
    let number = |value: &serde_json::Value, field: &str| value[field].as_u64().unwrap_or(0);
    let mut run = JobStatus {
        id: id.to_owned(),
        state: JobState::Failed,
        trigger: Trigger::Manual,
        requested_by: None,
        throttle_percent: u8::try_from(number(&settings, "throttlePercent")).unwrap_or(100),
        threads: u32::try_from(number(&settings, "threads")).unwrap_or(1),
        start_from_segment: number(&settings, "startFromChunk"),
        started_at_unix_ms: unix_ms(started),
        finished_at_unix_ms: None,
        // As a live run counts them: the segments before the first one looked at are done.
        progress: JobProgress {
            segments_done: number(&settings, "startFromChunk"),
            ..JobProgress::default()
        },
        report: None,
        error: Some("the node stopped before the scavenge finished".into()),
        log_end_at_finish: None,
    };
    for event in events {
        let data = json(event);
        if event.event_type == SCAVENGE_CHUNKS_COMPLETED {
            run.progress.segments_done += 1;
            run.progress.frame_bytes_removed += number(&data, "spaceSaved");
        } else if event.event_type == SCAVENGE_COMPLETED {
            run.finished_at_unix_ms = Some(unix_ms(event));
            (run.state, run.error) = match data["result"].as_str() {
                Some("Success") => (JobState::Completed, None),
                Some("Stopped") => (JobState::Stopped, None),
                _ => (
                    JobState::Failed,
                    Some(data["error"].as_str().unwrap_or("failed").to_owned()),
                ),
            };
        }
    }
    if run.finished_at_unix_ms.is_none() {
        run.finished_at_unix_ms = events.last().map(unix_ms);
    }
    Some(run)
}

/// A duration as .NET writes a `TimeSpan` (`[d.]hh:mm:ss[.fffffff]`), as KurrentDB's
/// `timeTaken` fields hold it.
pub(crate) fn time_span(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let days = seconds / 86_400;
    let hours = seconds / 3600 % 24;
    let minutes = seconds / 60 % 60;
    let ticks = duration.subsec_nanos() / 100;
    let mut text = String::new();
    if days > 0 {
        text.push_str(&format!("{days}."));
    }
    text.push_str(&format!("{hours:02}:{minutes:02}:{:02}", seconds % 60));
    if ticks > 0 {
        text.push_str(&format!(".{ticks:07}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_dotnet_time_spans() {
        assert_eq!(time_span(Duration::ZERO), "00:00:00");
        assert_eq!(time_span(Duration::from_millis(1500)), "00:00:01.5000000");
        assert_eq!(time_span(Duration::from_secs(3 * 3600 + 62)), "03:01:02");
        assert_eq!(
            time_span(Duration::from_secs(2 * 86_400 + 5) + Duration::from_nanos(1_234_500)),
            "2.00:00:05.0012345"
        );
    }
}
