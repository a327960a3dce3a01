//! What a scavenge (giving back the space of events no read can return any more) is told
//! and reports, shared by the backends: the embedded engine (`strata-engine`, segments) and
//! PostgreSQL (`strata-postgres`, rows). See `docs/SCAVENGING.md`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Told how far a scavenge has got.
pub type ProgressCallback = Box<dyn FnMut(&ScavengeProgress) + Send>;

/// How a scavenge runs.
pub struct ScavengeOptions {
    /// Share of the time the scavenge works, 1–100: at 50 it sleeps as long as it works
    /// (KurrentDB's `--scavenge-throttle-percent`). 100 = no pause.
    pub throttle_percent: u8,
    /// Set to stop after the segment under way (it is left as it was, or swapped whole);
    /// on PostgreSQL, after the batch under way (each batch is one transaction).
    pub stop: Option<Arc<AtomicBool>>,
    /// Told after each chunk of a segment and after each segment (PostgreSQL: after each
    /// batch).
    pub progress: Option<ProgressCallback>,
}

impl Default for ScavengeOptions {
    fn default() -> Self {
        Self {
            throttle_percent: 100,
            stop: None,
            progress: None,
        }
    }
}

/// How far a scavenge has got. On PostgreSQL the bytes are those of the removed rows' data
/// and metadata (`bytes_total`: of every stream with something to remove, an estimate from
/// the revision ranges), and the "segments" are the streams with something to remove.
#[derive(Clone, Debug, Default)]
pub struct ScavengeProgress {
    /// Bytes of sealed segments looked at so far, of `bytes_total`.
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub segments_done: u64,
    pub segments_total: u64,
    pub events_removed: u64,
}

/// What a scavenge did. On PostgreSQL: `allocated_bytes_*` are `pg_total_relation_size` of
/// the store's tables (with their indexes and TOAST), `frame_bytes_removed` the data and
/// metadata bytes of the deleted rows, and the "segments" are the streams with something
/// to remove (considered), those rows were deleted from (rewritten) and those skipped
/// because their metadata changed meanwhile (deferred).
#[derive(Clone, Debug, Default)]
pub struct ScavengeReport {
    /// Bytes the log's files occupy on disk (allocated blocks), before and after.
    pub allocated_bytes_before: u64,
    pub allocated_bytes_after: u64,
    /// Events removed by this run (frames newly replaced by skip frames).
    pub events_removed: u64,
    /// Bytes of the frames removed by this run.
    pub frame_bytes_removed: u64,
    /// Sealed segments that were looked at, and those rewritten.
    pub segments_considered: u64,
    pub segments_rewritten: u64,
    /// Segments left as they were because a stream's metadata changed while they were
    /// copied (the next run takes them).
    pub segments_deferred: u64,
    /// True when the stop flag ended the run early.
    pub stopped: bool,
    pub elapsed: Duration,
}

impl ScavengeReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "allocated_bytes_before": self.allocated_bytes_before,
            "allocated_bytes_after": self.allocated_bytes_after,
            "events_removed": self.events_removed,
            "frame_bytes_removed": self.frame_bytes_removed,
            "segments_considered": self.segments_considered,
            "segments_rewritten": self.segments_rewritten,
            "segments_deferred": self.segments_deferred,
            "stopped": self.stopped,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
        })
    }
}
