//! A group's settings, their defaults (those of the KurrentDB clients) and their checks.

use serde::{Deserialize, Serialize};

/// The smallest window of events a group keeps between its oldest unfinished event and the
/// newest one read, whatever its buffer settings.
pub const WINDOW_EVENTS_MIN: usize = 4_096;

/// The largest window of events, whatever the buffer settings ask: with the byte budget
/// ([`crate::PersistentLimits::window_bytes_max`]) it bounds every group's memory.
pub const WINDOW_EVENTS_MAX: usize = 1_000_000;

/// The most items buffered between a group's source reader and the group, whatever
/// `live_buffer_size` asks.
pub const SOURCE_BUFFER_EVENTS_MAX: usize = 4_096;

/// How a group chooses the consumer of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsumerStrategy {
    /// The first connected consumer with a free slot.
    DispatchToSingle,
    /// The consumers in turn.
    RoundRobin,
    /// Each stream stays with one consumer while it is connected.
    Pinned,
    /// Each correlation id (else stream) stays with one consumer while it is connected.
    PinnedByCorrelation,
}

impl ConsumerStrategy {
    /// The name clients use.
    pub fn name(&self) -> &'static str {
        match self {
            ConsumerStrategy::DispatchToSingle => "DispatchToSingle",
            ConsumerStrategy::RoundRobin => "RoundRobin",
            ConsumerStrategy::Pinned => "Pinned",
            ConsumerStrategy::PinnedByCorrelation => "PinnedByCorrelation",
        }
    }

    /// The strategy named `name`; `None` for a name that is none of the four (the reference
    /// server's answer is then "Consumer strategy NAME does not exist.").
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "DispatchToSingle" => Some(ConsumerStrategy::DispatchToSingle),
            "RoundRobin" => Some(ConsumerStrategy::RoundRobin),
            "Pinned" => Some(ConsumerStrategy::Pinned),
            "PinnedByCorrelation" => Some(ConsumerStrategy::PinnedByCorrelation),
            _ => None,
        }
    }
}

/// Where a new group starts. `At` is a revision for a stream group and a log position for a
/// `$all` group, and is inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartFrom {
    Start,
    End,
    At(u64),
}

impl StartFrom {
    /// `At(place)`, except that 2^64−1 is the end: KurrentDB reads a start revision or
    /// position of 2^64−1 as −1, and clients send it for "from the end" (the Node client in
    /// the legacy `revision` settings field).
    pub fn at(place: u64) -> Self {
        if place == u64::MAX {
            StartFrom::End
        } else {
            StartFrom::At(place)
        }
    }

    /// The same start with 2^64−1 read as the end (see [`StartFrom::at`]).
    pub(crate) fn normalized(self) -> Self {
        match self {
            StartFrom::At(place) => StartFrom::at(place),
            other => other,
        }
    }
}

/// Every setting of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    pub start_from: StartFrom,
    /// Deliver the target of link events (`$>`) with the link alongside.
    pub resolve_links: bool,
    /// Kept and reported; statistics are always collected.
    pub extra_statistics: bool,
    /// An event not acked within this time is retried; 0 disables the timeout.
    pub message_timeout_ms: u64,
    /// Deliveries after the first before an event is parked.
    pub max_retry_count: u32,
    /// Items buffered between the source reader and the group (1 to
    /// [`SOURCE_BUFFER_EVENTS_MAX`]).
    pub live_buffer_size: u32,
    /// Events the group takes from its source per turn (0 acts as 1); less than
    /// `history_buffer_size`.
    pub read_batch_size: u32,
    /// With `live_buffer_size`, the window of events held between the oldest unfinished one
    /// and the newest read ([`WINDOW_EVENTS_MIN`] to [`WINDOW_EVENTS_MAX`]; the byte budget
    /// may stop it earlier).
    pub history_buffer_size: u32,
    /// Finished events are checkpointed after this time if at least `min_checkpoint_count`.
    pub checkpoint_after_ms: u64,
    pub min_checkpoint_count: u32,
    /// Finished events after which a checkpoint is written at once (0 acts as 1).
    pub max_checkpoint_count: u32,
    /// Consumers allowed at once; 0 means no limit.
    pub max_subscriber_count: u32,
    pub consumer_strategy: ConsumerStrategy,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            start_from: StartFrom::End,
            resolve_links: false,
            extra_statistics: false,
            message_timeout_ms: 30_000,
            max_retry_count: 10,
            live_buffer_size: 500,
            read_batch_size: 20,
            history_buffer_size: 500,
            checkpoint_after_ms: 2_000,
            min_checkpoint_count: 10,
            max_checkpoint_count: 1_000,
            max_subscriber_count: 0,
            consumer_strategy: ConsumerStrategy::RoundRobin,
        }
    }
}

impl GroupSettings {
    /// What the reference server refuses besides the consumer strategy and the start (both
    /// typed here): a read batch that does not fit the history buffer. Everything else it
    /// accepts is accepted; values it would not act on are bounded where they are used.
    pub(crate) fn problem(&self) -> Option<String> {
        (self.read_batch_size >= self.history_buffer_size).then(|| {
            format!(
                "read_batch_size ({}) must be less than history_buffer_size ({})",
                self.read_batch_size, self.history_buffer_size
            )
        })
    }

    /// Events held between the oldest unfinished one and the newest read.
    pub(crate) fn window_events_max(&self) -> usize {
        let configured = self.history_buffer_size as usize + self.live_buffer_size as usize;
        configured.clamp(WINDOW_EVENTS_MIN, WINDOW_EVENTS_MAX)
    }

    /// Items the source reader buffers ahead of the group.
    pub(crate) fn source_buffer_events(&self) -> usize {
        (self.live_buffer_size as usize).clamp(1, SOURCE_BUFFER_EVENTS_MAX)
    }

    /// Events the group takes from its source per turn.
    pub(crate) fn read_batch_events(&self) -> usize {
        (self.read_batch_size as usize).max(1)
    }

    /// Finished events after which a checkpoint is written at once (0 acts as 1).
    pub(crate) fn checkpoint_events_max(&self) -> u64 {
        u64::from(self.max_checkpoint_count.max(1))
    }

    /// Finished events a timed checkpoint needs (0 acts as 1).
    pub(crate) fn checkpoint_events_min(&self) -> u64 {
        u64::from(self.min_checkpoint_count.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(GroupSettings::default().problem(), None);
    }

    #[test]
    fn only_a_read_batch_that_does_not_fit_the_history_buffer_is_refused() {
        let batch_too_big = GroupSettings {
            read_batch_size: 500,
            ..GroupSettings::default()
        };
        let problem = batch_too_big.problem().unwrap();
        assert!(problem.contains("read_batch_size"), "{problem}");
        let no_history = GroupSettings {
            read_batch_size: 0,
            history_buffer_size: 0,
            ..GroupSettings::default()
        };
        assert!(no_history.problem().is_some());
        // The reference server accepts these; they are bounded where they are used.
        let accepted = GroupSettings {
            min_checkpoint_count: 10,
            max_checkpoint_count: 0,
            live_buffer_size: 0,
            read_batch_size: 0,
            history_buffer_size: u32::MAX,
            ..GroupSettings::default()
        };
        assert_eq!(accepted.problem(), None);
        assert_eq!(accepted.checkpoint_events_max(), 1);
        assert_eq!(accepted.source_buffer_events(), 1);
        assert_eq!(accepted.read_batch_events(), 1);
        assert_eq!(accepted.window_events_max(), WINDOW_EVENTS_MAX);
    }

    #[test]
    fn strategy_names_round_trip_and_unknown_names_are_refused() {
        for strategy in [
            ConsumerStrategy::DispatchToSingle,
            ConsumerStrategy::RoundRobin,
            ConsumerStrategy::Pinned,
            ConsumerStrategy::PinnedByCorrelation,
        ] {
            assert_eq!(
                ConsumerStrategy::from_name(strategy.name()).unwrap(),
                strategy
            );
        }
        assert_eq!(ConsumerStrategy::from_name("Random"), None);
    }
}
