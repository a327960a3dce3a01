//! State shared by the writer thread and the readers.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use strata_core::Position;
use tokio::sync::watch;

use crate::config::{Config, limits_for_segment_size};
use crate::index::Index;
use crate::segments::Segments;
use crate::syncer::CommitObserver;

pub(crate) struct Shared {
    pub config: Config,
    pub data_dir: PathBuf,
    pub index_dir: PathBuf,
    pub segments: Segments,
    pub index: RwLock<Index>,
    /// The runs' heads of recently used streams (`index_lookup`).
    pub head_cache: crate::index_lookup::HeadCache,
    /// Event id → positions on disk (`Config::event_id_index`).
    pub id_index: crate::id_index::IdIndex,
    /// Everything before this position is durable and visible; it only grows.
    pub durable_end: AtomicU64,
    /// Everything before this position has been synced to disk (with durability `none`,
    /// this lags the durable end). The writer puts it in each group's sync mark.
    pub synced_end: AtomicU64,
    /// Sequence of the last group the syncer published (index updated, durable end moved).
    pub published_sequence: AtomicU64,
    pub log_end: watch::Sender<Position>,
    /// Told about every group commit made durable, once one is set.
    pub commit_observer: OnceLock<Arc<dyn CommitObserver>>,
    poisoned: Mutex<Option<String>>,
}

impl Shared {
    /// `durable_end` must be synced (recovery makes it so). The configured limits are
    /// lowered to what the store's segments can hold.
    pub(crate) fn new(
        mut config: Config,
        data_dir: PathBuf,
        segments: Segments,
        index: Index,
        durable_end: u64,
    ) -> Self {
        let limits = limits_for_segment_size(config.limits, segments.size_bytes());
        if limits != config.limits {
            tracing::warn!(
                segment_size_bytes = segments.size_bytes(),
                event_bytes_max = limits.event_bytes_max,
                "this store's segments are smaller than the configuration expects: \
                 events are limited to what one segment holds"
            );
            config.limits = limits;
        }
        let (log_end, _) = watch::channel(Position(durable_end));
        Self {
            head_cache: crate::index_lookup::HeadCache::new(config.index_head_cache_max),
            index_dir: data_dir.join("index"),
            id_index: crate::id_index::IdIndex::new(&data_dir),
            config,
            data_dir,
            segments,
            index: RwLock::new(index),
            durable_end: AtomicU64::new(durable_end),
            synced_end: AtomicU64::new(durable_end),
            published_sequence: AtomicU64::new(0),
            log_end,
            commit_observer: OnceLock::new(),
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
