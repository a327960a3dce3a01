//! The scavenge job manager: one run at a time per node, its status and progress, a stop,
//! a short history, and the `$scavenges` streams. The gRPC Operations service, the HTTP
//! admin routes and automatic scavenging all drive the store through it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use strata_core::{EventStore, Maintenance, ScavengeOptions, ScavengeReport, SegmentFinished};
use tokio::sync::{mpsc, watch};

use crate::error::OperationsError;
use crate::history::{RunHistory, RunResult};
use crate::schedule::AutoStatus;

/// Finished runs remembered for the status listing.
pub const HISTORY_RUNS_MAX: usize = 32;

/// What starts a run.
#[derive(Clone, Debug)]
pub struct ScavengeRequest {
    /// Share of the time the run works, 1–100.
    pub throttle_percent: u8,
    /// KurrentDB's `thread_count`: at least 1; the engine rewrites up to this many
    /// segments at once (PostgreSQL: one batch at a time).
    pub threads: u32,
    /// KurrentDB's `start_from_chunk`: the first segment looked at.
    pub start_from_segment: u64,
    pub trigger: Trigger,
    /// Who asked (a login), for the status.
    pub requested_by: Option<String>,
}

impl Default for ScavengeRequest {
    fn default() -> Self {
        Self {
            throttle_percent: 100,
            threads: 1,
            start_from_segment: 0,
            trigger: Trigger::Manual,
            requested_by: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    Automatic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Completed,
    Stopped,
    Failed,
}

/// How far a run has got.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JobProgress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub segments_done: u64,
    pub segments_total: u64,
    pub events_removed: u64,
    pub frame_bytes_removed: u64,
}

/// One run, running or finished.
#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    pub id: String,
    pub state: JobState,
    pub trigger: Trigger,
    pub requested_by: Option<String>,
    pub throttle_percent: u8,
    pub threads: u32,
    pub start_from_segment: u64,
    pub started_at_unix_ms: u64,
    pub finished_at_unix_ms: Option<u64>,
    pub progress: JobProgress,
    /// The store's report once finished (fields of `strata scavenge --json`).
    pub report: Option<serde_json::Value>,
    pub error: Option<String>,
    /// End of the log when the run finished (automatic runs skip when it has not moved
    /// and this run removed nothing).
    #[serde(skip)]
    pub log_end_at_finish: Option<u64>,
}

/// What a start request got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    Started(String),
    /// Another run is under way: its id.
    InProgress(String),
}

#[derive(Default)]
struct JobsState {
    current: Option<Running>,
    history: VecDeque<JobStatus>,
}

struct Running {
    status: JobStatus,
    stop: Arc<AtomicBool>,
    /// Its outcome is decided and being written (`$scavengeCompleted`): too late to stop.
    ending: bool,
}

struct Inner {
    store: Arc<dyn EventStore>,
    maintenance: Option<Arc<dyn Maintenance>>,
    node_endpoint: String,
    state: Mutex<JobsState>,
    /// Bumped after every finished run.
    finished: watch::Sender<u64>,
    /// Automatic scavenging, when configured.
    auto: Mutex<Option<AutoStatus>>,
}

/// The node's scavenge jobs. Clones share them.
#[derive(Clone)]
pub struct ScavengeJobs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ScavengeJobs {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ScavengeJobs")
            .field("node_endpoint", &self.inner.node_endpoint)
            .field("can_scavenge", &self.inner.maintenance.is_some())
            .finish()
    }
}

impl ScavengeJobs {
    /// Jobs over `store` (where the history streams are written, as the system: pass the
    /// store itself, not a caller's view of it), scavenged through `maintenance` (`None`:
    /// a store that cannot scavenge; starts then answer [`OperationsError::Unsupported`]).
    /// `node_endpoint` is how the history names this node (`host:port`).
    pub fn new(
        store: Arc<dyn EventStore>,
        maintenance: Option<Arc<dyn Maintenance>>,
        node_endpoint: impl Into<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                maintenance,
                node_endpoint: node_endpoint.into(),
                state: Mutex::new(JobsState::default()),
                finished: watch::channel(0).0,
                auto: Mutex::new(None),
            }),
        }
    }

    /// True when the store behind can scavenge.
    pub fn can_scavenge(&self) -> bool {
        self.inner.maintenance.is_some()
    }

    /// Starts a run unless one is under way (then its id comes back as
    /// [`StartOutcome::InProgress`]). Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`OperationsError::Unsupported`] when the store cannot scavenge;
    /// [`OperationsError::InvalidArgument`] for a throttle outside 1–100 or no threads.
    pub fn start(&self, request: ScavengeRequest) -> Result<StartOutcome, OperationsError> {
        let Some(maintenance) = self.inner.maintenance.clone() else {
            return Err(OperationsError::Unsupported(
                "this store cannot scavenge".into(),
            ));
        };
        if !(1..=100).contains(&request.throttle_percent) {
            return Err(OperationsError::InvalidArgument(format!(
                "the throttle is a percentage of the time the scavenge works, 1 to 100, not {}",
                request.throttle_percent
            )));
        }
        if request.threads == 0 {
            return Err(OperationsError::InvalidArgument(
                "a scavenge needs a thread count of at least 1".into(),
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let mut state = self.inner.state.lock();
            if let Some(running) = &state.current {
                return Ok(StartOutcome::InProgress(running.status.id.clone()));
            }
            state.current = Some(Running {
                status: JobStatus {
                    id: id.clone(),
                    state: JobState::Running,
                    trigger: request.trigger,
                    requested_by: request.requested_by.clone(),
                    throttle_percent: request.throttle_percent,
                    threads: request.threads,
                    start_from_segment: request.start_from_segment,
                    started_at_unix_ms: unix_ms(),
                    finished_at_unix_ms: None,
                    progress: JobProgress::default(),
                    report: None,
                    error: None,
                    log_end_at_finish: None,
                },
                stop: Arc::clone(&stop),
                ending: false,
            });
        }
        tracing::info!(scavenge_id = %id, trigger = ?request.trigger, "scavenge started");
        tokio::spawn(Arc::clone(&self.inner).run(id.clone(), request, maintenance, stop));
        Ok(StartOutcome::Started(id))
    }

    /// Asks the run `id` to stop after the segment under way. `current` names whatever
    /// run is under way.
    ///
    /// # Errors
    /// [`OperationsError::NotFound`] when no run with that id is under way, or when its
    /// outcome is already decided (a client that read `$scavengeCompleted` finds it over).
    pub fn stop(&self, id: &str) -> Result<String, OperationsError> {
        let state = self.inner.state.lock();
        match &state.current {
            Some(running) if !running.ending && (running.status.id == id || id == "current") => {
                running.stop.store(true, Ordering::Release);
                Ok(running.status.id.clone())
            }
            _ => Err(OperationsError::NotFound(id.to_owned())),
        }
    }

    /// The run under way, if any.
    pub fn current(&self) -> Option<JobStatus> {
        self.inner
            .state
            .lock()
            .current
            .as_ref()
            .map(|running| running.status.clone())
    }

    /// Finished runs, the latest first.
    pub fn history(&self) -> Vec<JobStatus> {
        self.inner.state.lock().history.iter().cloned().collect()
    }

    /// One run by id, under way or remembered.
    pub fn get(&self, id: &str) -> Option<JobStatus> {
        let state = self.inner.state.lock();
        if let Some(running) = &state.current
            && running.status.id == id
        {
            return Some(running.status.clone());
        }
        state.history.iter().find(|job| job.id == id).cloned()
    }

    /// Waits until run `id` has finished and returns it.
    ///
    /// # Errors
    /// [`OperationsError::NotFound`] when no such run is known.
    pub async fn wait(&self, id: &str) -> Result<JobStatus, OperationsError> {
        let mut finished = self.inner.finished.subscribe();
        loop {
            match self.get(id) {
                None => return Err(OperationsError::NotFound(id.to_owned())),
                Some(job) if job.state != JobState::Running => return Ok(job),
                Some(_) => {}
            }
            if finished.changed().await.is_err() {
                return Err(OperationsError::NotFound(id.to_owned()));
            }
        }
    }

    /// Reads back the runs of earlier lives of this store (after a restart) from the
    /// `$scavenges` streams, the latest [`HISTORY_RUNS_MAX`] first, and adds those not
    /// known yet after the ones this process remembers. A run whose stream has no
    /// `$scavengeCompleted` (the node stopped during it) reads as failed. Returns how many
    /// were added; a store that cannot be read adds none (logged).
    pub async fn load_history(&self) -> usize {
        let runs = crate::history::read_runs(&self.inner.store, HISTORY_RUNS_MAX).await;
        let mut state = self.inner.state.lock();
        let mut added = 0;
        for run in runs {
            let known = state.history.iter().any(|job| job.id == run.id)
                || state
                    .current
                    .as_ref()
                    .is_some_and(|running| running.status.id == run.id);
            if !known && state.history.len() < HISTORY_RUNS_MAX {
                state.history.push_back(run);
                added += 1;
            }
        }
        added
    }

    /// Watches the count of finished runs.
    pub fn watch_finished(&self) -> watch::Receiver<u64> {
        self.inner.finished.subscribe()
    }

    /// Stops the run under way (if any) and waits for it to end: for a server's shutdown,
    /// before the store closes.
    pub async fn shutdown(&self) {
        let current = self.current().map(|job| job.id);
        if let Some(id) = current {
            let _ = self.stop(&id);
            let _ = self.wait(&id).await;
        }
    }

    /// What automatic scavenging has done; `None` when it is not configured.
    pub fn auto_status(&self) -> Option<AutoStatus> {
        self.inner.auto.lock().clone()
    }

    pub(crate) fn set_auto_status(&self, change: impl FnOnce(&mut AutoStatus)) {
        change(
            self.inner
                .auto
                .lock()
                .get_or_insert_with(AutoStatus::default),
        );
    }

    pub(crate) fn maintenance(&self) -> Option<Arc<dyn Maintenance>> {
        self.inner.maintenance.clone()
    }

    pub(crate) fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }
}

impl Inner {
    async fn run(
        self: Arc<Self>,
        id: String,
        request: ScavengeRequest,
        maintenance: Arc<dyn Maintenance>,
        stop: Arc<AtomicBool>,
    ) {
        let started = Instant::now();
        let history = Arc::new(RunHistory::new(
            Arc::clone(&self.store),
            &id,
            &self.node_endpoint,
        ));
        history
            .started(
                request.start_from_segment,
                request.threads,
                request.throttle_percent,
            )
            .await;
        // Segment reports are written in order by one task while the scavenge goes on.
        let (segments, mut finished_segments) = mpsc::unbounded_channel::<SegmentFinished>();
        let segment_writer = {
            let history = Arc::clone(&history);
            tokio::spawn(async move {
                let mut max_segment = None;
                while let Some(finished) = finished_segments.recv().await {
                    // Threads finish segments out of order.
                    max_segment = max_segment.max(Some(finished.segment));
                    history.segment_finished(&finished).await;
                }
                max_segment
            })
        };
        let progress_of = Arc::clone(&self);
        let options = ScavengeOptions {
            throttle_percent: request.throttle_percent,
            start_from_segment: request.start_from_segment,
            threads: usize::try_from(request.threads).unwrap_or(usize::MAX),
            stop: Some(stop),
            progress: Some(Box::new(move |step| {
                if let Some(running) = progress_of.state.lock().current.as_mut() {
                    running.status.progress = JobProgress {
                        bytes_done: step.bytes_done,
                        bytes_total: step.bytes_total,
                        segments_done: step.segments_done,
                        segments_total: step.segments_total,
                        events_removed: step.events_removed,
                        frame_bytes_removed: step.frame_bytes_removed,
                    };
                }
                if let Some(finished) = step.segment_finished {
                    let _ = segments.send(finished);
                }
            })),
        };
        let outcome = tokio::task::spawn_blocking(move || maintenance.scavenge(options)).await;
        let outcome: Result<ScavengeReport, String> = match outcome {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(error)) => Err(error.to_string()),
            Err(join) => Err(format!("the scavenge thread failed: {join}")),
        };
        // The outcome is decided: a stop from here on would not be honoured.
        if let Some(running) = self.state.lock().current.as_mut() {
            running.ending = true;
        }
        let max_segment = segment_writer.await.ok().flatten().unwrap_or(0);
        let (state, result, error, space_saved) = match &outcome {
            Ok(report) if report.stopped => (
                JobState::Stopped,
                RunResult::Stopped,
                None,
                report.bytes_given_back(),
            ),
            Ok(report) => (
                JobState::Completed,
                RunResult::Success,
                None,
                report.bytes_given_back(),
            ),
            Err(error) => (JobState::Failed, RunResult::Errored, Some(error.clone()), 0),
        };
        history
            .completed(
                result,
                error.as_deref(),
                started.elapsed(),
                space_saved,
                max_segment,
            )
            .await;
        // After the history's own events, so an idle store reads the same end next time.
        let log_end = self.store.last_position().await.ok().flatten().map(|p| p.0);
        {
            let mut jobs = self.state.lock();
            if let Some(running) = jobs.current.take() {
                let mut status = running.status;
                status.state = state;
                status.finished_at_unix_ms = Some(unix_ms());
                status.error = error;
                status.log_end_at_finish = log_end;
                if let Ok(report) = &outcome {
                    status.progress.events_removed = report.events_removed;
                    status.progress.frame_bytes_removed = report.frame_bytes_removed;
                    status.report = Some(report.to_json());
                }
                jobs.history.push_front(status);
                jobs.history.truncate(HISTORY_RUNS_MAX);
            }
        }
        tracing::info!(scavenge_id = %id, ?state, "scavenge finished");
        self.finished.send_modify(|count| *count += 1);
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}
