//! What the writer tells observers (the node's metrics) about each group it commits.

use std::sync::Arc;
use std::time::Duration;

/// One group transaction that committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    /// Appends and deletes the group answered.
    pub requests: usize,
    /// Bytes of the events it wrote (data, metadata, type).
    pub bytes: u64,
    /// Time from taking the connection to the COMMIT's answer: lock wait, checks, INSERT.
    pub duration: Duration,
}

/// Told about each committed group, on the writer's task: it must return quickly.
pub trait CommitObserver: Send + Sync {
    fn committed(&self, commit: &GroupCommit);
}

/// The observers of one store, shared by the store (which adds them) and its writer.
#[derive(Clone, Default)]
pub(crate) struct Observers(Arc<parking_lot::RwLock<Vec<Arc<dyn CommitObserver>>>>);

impl Observers {
    pub(crate) fn add(&self, observer: Arc<dyn CommitObserver>) {
        self.0.write().push(observer);
    }

    pub(crate) fn committed(&self, commit: &GroupCommit) {
        for observer in self.0.read().iter() {
            observer.committed(commit);
        }
    }
}
