//! State shared by the writer thread and the readers.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

use parking_lot::{Mutex, RwLock};
use strata_core::Position;
use tokio::sync::watch;

use crate::config::Config;
use crate::index::Index;
use crate::segments::Segments;

pub(crate) struct Shared {
    pub config: Config,
    pub data_dir: PathBuf,
    pub index_dir: PathBuf,
    pub segments: Segments,
    pub index: RwLock<Index>,
    /// Everything before this position is durable and visible; it only grows.
    pub durable_end: AtomicU64,
    /// Sequence of the last group the syncer published (index updated, durable end moved).
    pub published_sequence: AtomicU64,
    pub log_end: watch::Sender<Position>,
    poisoned: Mutex<Option<String>>,
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        data_dir: PathBuf,
        segments: Segments,
        index: Index,
        durable_end: u64,
    ) -> Self {
        let (log_end, _) = watch::channel(Position(durable_end));
        Self {
            index_dir: data_dir.join("index"),
            config,
            data_dir,
            segments,
            index: RwLock::new(index),
            durable_end: AtomicU64::new(durable_end),
            published_sequence: AtomicU64::new(0),
            log_end,
            poisoned: Mutex::new(None),
        }
    }

    pub(crate) fn poison(&self, cause: String) {
        self.poisoned.lock().get_or_insert(cause);
    }

    pub(crate) fn poison_cause(&self) -> Option<String> {
        self.poisoned.lock().clone()
    }
}
