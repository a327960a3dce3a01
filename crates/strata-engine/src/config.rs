//! How a store is opened: segment size, durability, limits.

use strata_core::{Clock, Error, Limits, Result};

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
    /// How many recent event ids are remembered to recognise re-sends with `Any`.
    pub recent_event_ids_max: usize,
    /// Bytes the writer gathers into one write and one fsync at most.
    pub group_commit_bytes_max: usize,
    /// Where the store takes the time from: events' `created` stamps and the "now" of
    /// `$maxAge` (the system clock unless tests move a `ManualClock`).
    pub clock: Clock,
    /// Test hook: the n-th sync (0-based) fails, as a failing disk would.
    #[doc(hidden)]
    pub fail_sync_at: Option<u64>,
}

/// Room a segment needs beyond the largest event for the frame header, names and padding.
const SEGMENT_SLACK_BYTES: u64 = 64 * 1024;

impl Default for Config {
    fn default() -> Self {
        Self {
            segment_size_bytes: 256 * 1024 * 1024,
            durability: Durability::Fsync,
            limits: Limits::default(),
            index_checkpoint_interval_bytes: 64 * 1024 * 1024,
            recent_event_ids_max: 1_000_000,
            group_commit_bytes_max: 8 * 1024 * 1024,
            clock: Clock::system(),
            fail_sync_at: None,
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
        if !self.segment_size_bytes.is_multiple_of(8)
            || self.segment_size_bytes > u64::from(u32::MAX)
        {
            return Err(invalid(format!(
                "segment size {} must be a multiple of 8 and below 4 GiB",
                self.segment_size_bytes
            )));
        }
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
