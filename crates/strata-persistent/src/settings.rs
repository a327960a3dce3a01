//! A group's settings, their defaults (those of the KurrentDB clients) and their checks.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The smallest window of events a group keeps between its oldest unfinished event and the
/// newest one read, whatever its buffer settings.
pub const WINDOW_EVENTS_MIN: usize = 4_096;

/// Largest value accepted for the buffer and count settings: bounds every group's memory.
pub const BUFFER_SETTING_MAX: u32 = 1_000_000;

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

    /// The strategy named `name`.
    ///
    /// # Errors
    /// [`Error::InvalidSettings`] for an unknown name.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "DispatchToSingle" => Ok(ConsumerStrategy::DispatchToSingle),
            "RoundRobin" => Ok(ConsumerStrategy::RoundRobin),
            "Pinned" => Ok(ConsumerStrategy::Pinned),
            "PinnedByCorrelation" => Ok(ConsumerStrategy::PinnedByCorrelation),
            other => Err(Error::invalid(format!(
                "consumer strategy {other:?} does not exist; use DispatchToSingle, RoundRobin, \
                 Pinned or PinnedByCorrelation"
            ))),
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
    /// Items buffered between the source reader and the group.
    pub live_buffer_size: u32,
    /// Events the group takes from its source per turn.
    pub read_batch_size: u32,
    /// With `live_buffer_size`, the window of events held between the oldest unfinished one
    /// and the newest read (at least [`WINDOW_EVENTS_MIN`]).
    pub history_buffer_size: u32,
    /// Finished events are checkpointed after this time if at least `min_checkpoint_count`.
    pub checkpoint_after_ms: u64,
    pub min_checkpoint_count: u32,
    /// Finished events after which a checkpoint is written at once.
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
    /// Checks the settings against each other and against their bounds.
    ///
    /// # Errors
    /// [`Error::InvalidSettings`] naming the first setting that is wrong.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("live_buffer_size", self.live_buffer_size),
            ("read_batch_size", self.read_batch_size),
            ("history_buffer_size", self.history_buffer_size),
            ("max_checkpoint_count", self.max_checkpoint_count),
        ] {
            if value == 0 {
                return Err(Error::invalid(format!("{name} must be greater than 0")));
            }
            if value > BUFFER_SETTING_MAX {
                return Err(Error::invalid(format!(
                    "{name} {value} is over the limit of {BUFFER_SETTING_MAX}"
                )));
            }
        }
        if self.read_batch_size >= self.history_buffer_size {
            return Err(Error::invalid(format!(
                "read_batch_size ({}) must be less than history_buffer_size ({})",
                self.read_batch_size, self.history_buffer_size
            )));
        }
        if self.min_checkpoint_count > self.max_checkpoint_count {
            return Err(Error::invalid(format!(
                "min_checkpoint_count ({}) must not be greater than max_checkpoint_count ({})",
                self.min_checkpoint_count, self.max_checkpoint_count
            )));
        }
        Ok(())
    }

    /// Events held between the oldest unfinished one and the newest read.
    pub(crate) fn window_events_max(&self) -> usize {
        let configured = self.history_buffer_size as usize + self.live_buffer_size as usize;
        configured.max(WINDOW_EVENTS_MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        GroupSettings::default().validate().unwrap();
    }

    #[test]
    fn contradictory_settings_are_refused_with_the_setting_named() {
        let batch_too_big = GroupSettings {
            read_batch_size: 500,
            ..GroupSettings::default()
        };
        let error = batch_too_big.validate().unwrap_err().to_string();
        assert!(error.contains("read_batch_size"), "{error}");
        let min_over_max = GroupSettings {
            min_checkpoint_count: 10,
            max_checkpoint_count: 5,
            ..GroupSettings::default()
        };
        assert!(min_over_max.validate().is_err());
        let no_live_buffer = GroupSettings {
            live_buffer_size: 0,
            ..GroupSettings::default()
        };
        assert!(no_live_buffer.validate().is_err());
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
        assert!(ConsumerStrategy::from_name("Random").is_err());
    }
}
