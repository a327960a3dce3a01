//! What a scavenge is asked and what it reports, and [`Maintenance`]: the capability a
//! store offers when it can scavenge (and checkpoint its indexes), so a server's job
//! manager drives any backend the same way. The rules of what a scavenge removes live in
//! [`crate::rules::retention`]. Backends: the embedded engine (`strata-engine`, segments)
//! and PostgreSQL (`strata-postgres`, rows); see `docs/SCAVENGING.md`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::{Error, Result};

/// Told how far a scavenge has got.
pub type ProgressCallback = Box<dyn FnMut(&ScavengeProgress) + Send>;

/// How a scavenge runs.
pub struct ScavengeOptions {
    /// Share of the time the scavenge works, 1–100: at 50 it sleeps as long as it works
    /// (KurrentDB's `--scavenge-throttle-percent`). 100 = no pause.
    pub throttle_percent: u8,
    /// First segment (KurrentDB: chunk) looked at; those before it are left alone.
    pub start_from_segment: u64,
    /// Segments rewritten at once (KurrentDB's `threads`), at least 1; each thread works
    /// `throttle_percent` of its time. PostgreSQL runs its batches one at a time.
    pub threads: usize,
    /// Set to stop after the segment under way (it is left as it was, or swapped whole).
    pub stop: Option<Arc<AtomicBool>>,
    /// Told after each chunk of a segment and after each segment.
    pub progress: Option<ProgressCallback>,
}

impl Default for ScavengeOptions {
    fn default() -> Self {
        Self {
            throttle_percent: 100,
            start_from_segment: 0,
            threads: 1,
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
    /// Bytes of the frames removed so far.
    pub frame_bytes_removed: u64,
    /// Set on the report made after a segment is finished: that segment's number, and
    /// whether it was rewritten.
    pub segment_finished: Option<SegmentFinished>,
}

/// One segment a scavenge has finished with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFinished {
    pub segment: u64,
    pub rewritten: bool,
    /// Bytes of the frames this segment lost.
    pub frame_bytes_removed: u64,
    pub elapsed: Duration,
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
    /// Bytes given back to the file system (never negative: a run during appends can end
    /// with more allocated than it started with).
    pub fn bytes_given_back(&self) -> u64 {
        self.allocated_bytes_before
            .saturating_sub(self.allocated_bytes_after)
    }

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

/// Maintenance a store can run while it serves. A server holds the store as this trait
/// beside [`crate::EventStore`]; a backend without a capability answers
/// [`Error::Unsupported`].
pub trait Maintenance: Send + Sync + 'static {
    /// Scavenges the store (docs/SCAVENGING.md). Blocks the calling thread: call it from
    /// `spawn_blocking` in async code. One scavenge runs at a time.
    ///
    /// # Errors
    /// [`Error::Unsupported`] from a store that cannot scavenge; [`Error::InvalidArgument`]
    /// when a scavenge is already running; storage errors.
    fn scavenge(&self, options: ScavengeOptions) -> Result<ScavengeReport> {
        let _ = options;
        Err(Error::Unsupported {
            operation: "scavenging",
        })
    }

    /// Writes what the indexes hold in memory to their files now (KurrentDB's
    /// MergeIndexes), so an open replays less. Blocks the calling thread.
    ///
    /// # Errors
    /// [`Error::Unsupported`] from a store without such indexes; storage errors.
    fn checkpoint_indexes(&self) -> Result<()> {
        Err(Error::Unsupported {
            operation: "index checkpoints",
        })
    }

    /// About how many bytes a scavenge started now would remove (for automatic
    /// scavenging's threshold): cheaper than a scavenge, not exact. Blocks the calling
    /// thread.
    ///
    /// # Errors
    /// [`Error::Unsupported`] from a store that cannot estimate it; storage errors.
    fn reclaimable_bytes_estimate(&self) -> Result<u64> {
        Err(Error::Unsupported {
            operation: "estimating reclaimable bytes",
        })
    }
}
