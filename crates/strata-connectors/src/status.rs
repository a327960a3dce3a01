//! What a running connector reports: its state, progress and counters.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;
use strata_core::Timestamp;

/// The state of a connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorState {
    Stopped,
    /// Connecting to the sink or reading the checkpoint.
    Starting,
    Running,
    /// Waiting to retry after a failure (see `last_error`); no event is skipped.
    Retrying,
}

/// Counters since the connector was last started in this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConnectorCounters {
    /// Events the broker acknowledged (re-sends it dropped as duplicates included).
    pub published: u64,
    /// Acknowledgements that said the broker dropped a re-send as a duplicate.
    pub duplicates: u64,
    /// Events sent again after a failure.
    pub retried: u64,
    /// Events parked in the dead-letter stream.
    pub dead_lettered: u64,
    /// Events the transform skipped (it returned null or undefined).
    pub skipped: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Failures that made the connector wait and retry (a broker away, a store error).
    pub failures: u64,
}

/// State shared between a connector's task and whoever asks about it.
#[derive(Debug)]
pub(crate) struct Shared {
    progress: Mutex<Progress>,
    published: AtomicU64,
    duplicates: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    skipped: AtomicU64,
    checkpoints: AtomicU64,
    failures: AtomicU64,
}

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub(crate) state: ConnectorState,
    pub(crate) last_error: Option<String>,
    /// Source cursor of the last event handled (published or dead-lettered).
    pub(crate) cursor: Option<u64>,
    /// Source cursor of the last checkpoint written.
    pub(crate) checkpointed: Option<u64>,
    /// Log position and record time of the last event handled.
    pub(crate) last_position: Option<u64>,
    pub(crate) last_created: Option<Timestamp>,
    /// Whether the task has read its checkpoint (or start) since it was started: until
    /// then where it stands is unknown, and so is its lag in events.
    pub(crate) resumed: bool,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            progress: Mutex::new(Progress {
                state: ConnectorState::Stopped,
                last_error: None,
                cursor: None,
                checkpointed: None,
                last_position: None,
                last_created: None,
                resumed: false,
            }),
            published: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub(crate) fn progress(&self) -> Progress {
        self.progress.lock().clone()
    }

    pub(crate) fn set_state(&self, state: ConnectorState) {
        self.progress.lock().state = state;
    }

    pub(crate) fn running(&self) {
        let mut progress = self.progress.lock();
        progress.state = ConnectorState::Running;
    }

    pub(crate) fn retrying(&self, error: String) {
        let mut progress = self.progress.lock();
        progress.state = ConnectorState::Retrying;
        progress.last_error = Some(error);
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handled(&self, cursor: u64, position: u64, created: Timestamp) {
        let mut progress = self.progress.lock();
        progress.cursor = Some(cursor);
        progress.last_position = Some(position);
        progress.last_created = Some(created);
    }

    /// The task resumes after `cursor` (`None`: from the start of its source).
    pub(crate) fn resumed(&self, cursor: Option<u64>) {
        let mut progress = self.progress.lock();
        progress.resumed = true;
        progress.checkpointed = cursor;
    }

    pub(crate) fn checkpointed(&self, cursor: Option<u64>) {
        self.progress.lock().checkpointed = cursor;
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_published(&self, duplicate: bool) {
        self.published.fetch_add(1, Ordering::Relaxed);
        if duplicate {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_retried(&self, events: u64) {
        self.retried.fetch_add(events, Ordering::Relaxed);
    }

    pub(crate) fn count_dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn counters(&self) -> ConnectorCounters {
        ConnectorCounters {
            published: self.published.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}
