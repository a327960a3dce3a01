//! Limits of the whole manager, set by whoever runs it (the server's configuration).

/// Default of [`PersistentLimits::groups_max`].
pub const GROUPS_MAX_DEFAULT: usize = 1_000;

/// Default of [`PersistentLimits::window_bytes_max`]: 32 MiB.
pub const WINDOW_BYTES_MAX_DEFAULT: usize = 32 * 1024 * 1024;

/// What the persistent subscriptions of one store may hold. A group whose consumers do not
/// ack holds at most its window: the memory of all groups is bounded by
/// `groups_max × window_bytes_max`, plus each source's read-ahead buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersistentLimits {
    /// Groups that may exist at once; creating one more is refused with
    /// [`crate::Error::GroupLimitReached`]. Groups already stored are all started, even
    /// above a lowered limit.
    pub groups_max: usize,
    /// Bytes a group's window may hold (events read and not finished, counted with their
    /// data and metadata, and finished ones above the oldest unfinished one); a group stops
    /// reading its source there. A window always takes at least one event, however large.
    /// Also bounds one chunk of a parked-message replay.
    pub window_bytes_max: usize,
}

impl Default for PersistentLimits {
    fn default() -> Self {
        Self {
            groups_max: GROUPS_MAX_DEFAULT,
            window_bytes_max: WINDOW_BYTES_MAX_DEFAULT,
        }
    }
}
