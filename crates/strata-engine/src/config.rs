//! How a store is opened: segment size, durability, limits.

use strata_core::{Clock, Error, Limits, Result};

use crate::format::check_segment_size;

/// When an append is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// After the group's data is written and `fdatasync`ed (the default).
    #[default]
    Fsync,
    /// After the group's data is written to the OS; a machine crash may lose recent
    /// appends (a process crash does not).
    None,
}

/// Options of [`crate::Store::open`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Size of each segment file; positions `[i × size, (i + 1) × size)` live in segment `i`.
    /// Fixed when the store is created: an existing store keeps the size recorded in its
    /// segment headers.
    pub segment_size_bytes: u64,
    pub durability: Durability,
    pub limits: Limits,
    /// Log bytes after which the writer saves the index changes to an index file, so that
    /// opening replays at most this much log.
    pub index_checkpoint_interval_bytes: u64,
    /// Drop from memory the index entries a published sorted run covers, so that memory
    /// holds only the log after the runs and lookups read the rest from the runs
    /// (docs/ENGINE.md, "Index"). On by default: memory stays bounded by the unindexed
    /// tail whatever the store's size. Off, memory keeps every position (cold lookups
    /// answer from memory) and the runs are a second copy.
    pub index_memory_tail_only: bool,
    /// How many streams' heads read from the runs are cached (with
    /// `index_memory_tail_only`), so that appends to hot streams do not read a run.
    pub index_head_cache_max: usize,
    /// How many recent event ids are remembered to recognise re-sends with `Any` (in two
    /// generations of half as many each).
    pub recent_event_ids_max: usize,
    /// Keep event id files (`<data dir>/index-ids/`), so that re-sends with `Any` and
    /// `StreamExists` are recognised at any age, not only while their ids are among the
    /// recent ones (docs/ENGINE.md, "Index"). On by default.
    pub event_id_index: bool,
    /// Bytes the writer gathers into one write and one fsync at most.
    pub group_commit_bytes_max: usize,
    /// Keep the secondary indexes (category, event type, correlation id, stream starts)
    /// and serve `$ce-…`, `$et-…`, `$bc-…`, `$streams`, `$category-…` from them, refusing
    /// writes to those names. Off, they are ordinary streams and `$idx-` reads scan.
    /// Changing it rebuilds the index from the log at the next open.
    pub system_streams: bool,
    /// Where the store takes the time from: events' `created` stamps and the "now" of
    /// `$maxAge` (the system clock unless tests move a `ManualClock`).
    pub clock: Clock,
    /// Test hook: the n-th sync (0-based) fails, as a failing disk would.
    #[doc(hidden)]
    pub fail_sync_at: Option<u64>,
    /// Test hook: faults injected under the segment files (feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub faults: Option<std::sync::Arc<crate::faults::Faults>>,
}

/// Room a segment needs beyond the largest event for its header, the frame header, the
/// sync mark, the stream name and padding.
const SEGMENT_SLACK_BYTES: u64 = 64 * 1024;

/// The default `recent_event_ids_max`: two hash tables of 2^19 buckets, each filled to
/// hashbrown's 7/8 load (`RecentIds`).
pub(crate) const RECENT_EVENT_IDS_DEFAULT: usize = 2 * ((1 << 19) / 8 * 7);

impl Default for Config {
    fn default() -> Self {
        Self {
            segment_size_bytes: 256 * 1024 * 1024,
            durability: Durability::Fsync,
            limits: Limits::default(),
            index_checkpoint_interval_bytes: 64 * 1024 * 1024,
            index_memory_tail_only: true,
            index_head_cache_max: 262_144,
            // Two generations of 458,752 ids: each fills a table of 2^19 buckets to its
            // 7/8 load (500,000 would need 2^20 buckets: 51 MB a table instead of 26 MB).
            recent_event_ids_max: RECENT_EVENT_IDS_DEFAULT,
            event_id_index: true,
            group_commit_bytes_max: 8 * 1024 * 1024,
            system_streams: true,
            clock: Clock::system(),
            fail_sync_at: None,
            #[cfg(feature = "fault-injection")]
            faults: None,
        }
    }
}

impl Config {
    /// A configuration for tests: small segments and correspondingly small limits.
    pub fn small_for_tests() -> Self {
        Self {
            segment_size_bytes: 1024 * 1024,
            limits: Limits {
                event_bytes_max: 256 * 1024,
                append_bytes_max: 4 * 1024 * 1024,
                ..Limits::default()
            },
            index_checkpoint_interval_bytes: 256 * 1024,
            recent_event_ids_max: 100_000,
            ..Self::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Error::InvalidArgument { reason };
        check_segment_size(self.segment_size_bytes).map_err(invalid)?;
        let needed = self.limits.event_bytes_max as u64 + SEGMENT_SLACK_BYTES;
        if self.segment_size_bytes < needed {
            return Err(invalid(format!(
                "segment size {} is too small for events of {} bytes: use at least {needed}",
                self.segment_size_bytes, self.limits.event_bytes_max
            )));
        }
        if self.limits.event_bytes_max > strata_core::EVENT_BYTES_MAX
            || self.limits.append_bytes_max > strata_core::APPEND_BYTES_MAX
        {
            return Err(invalid("limits may be lowered, never raised".into()));
        }
        Ok(())
    }
}

/// The limits a store with segments of `segment_size_bytes` enforces: those asked for,
/// with the event size lowered to what one segment holds. A store keeps the segment size it
/// was created with, so a configuration made for larger segments must not let an event in
/// that no segment can take.
pub(crate) fn limits_for_segment_size(limits: Limits, segment_size_bytes: u64) -> Limits {
    let fits = segment_size_bytes.saturating_sub(SEGMENT_SLACK_BYTES);
    let event_bytes_max = usize::try_from(fits)
        .unwrap_or(usize::MAX)
        .min(limits.event_bytes_max);
    Limits {
        event_bytes_max,
        ..limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_sizes_outside_the_bounds_are_refused() {
        for segment_size_bytes in [0, 8, 64 * 1024, (1 << 20) + 4, 1 << 33] {
            let config = Config {
                segment_size_bytes,
                ..Config::small_for_tests()
            };
            assert!(
                matches!(config.validate(), Err(Error::InvalidArgument { .. })),
                "segment size {segment_size_bytes} was accepted"
            );
        }
        assert!(Config::small_for_tests().validate().is_ok());
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn events_are_limited_to_what_a_segment_holds() {
        let limits = Limits::default();
        let lowered = limits_for_segment_size(limits, 1024 * 1024);
        assert_eq!(lowered.event_bytes_max, 1024 * 1024 - 64 * 1024);
        assert_eq!(lowered.append_bytes_max, limits.append_bytes_max);
        let kept = limits_for_segment_size(limits, 256 * 1024 * 1024);
        assert_eq!(kept, limits);
    }
}
