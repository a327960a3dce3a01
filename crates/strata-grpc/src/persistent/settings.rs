//! Create and Update settings from the wire into `GroupSettings`, and the source a request
//! names. An unknown strategy is refused as the reference server refuses it (INTERNAL,
//! `persistent-subscription-failed`); so is a negative number, which it would accept and
//! then fail on.

use strata_persistent::{ConsumerStrategy, GroupSettings, StartFrom, SubscriptionSource};
use tonic::Status;

use crate::convert::{invalid, stream_name};
use crate::persistent::status::settings_refused;
use crate::proto::event_store::client::StreamIdentifier;
use crate::proto::event_store::client::persistent_subscriptions::{create_req, update_req};

/// .NET ticks (100 ns) per millisecond.
const TICKS_PER_MILLISECOND: i64 = 10_000;

/// The settings both Create and Update carry, as sent.
pub(crate) struct WireSettings {
    pub(crate) resolve_links: bool,
    pub(crate) extra_statistics: bool,
    pub(crate) message_timeout_ms: i64,
    pub(crate) max_retry_count: i32,
    pub(crate) checkpoint_after_ms: i64,
    pub(crate) min_checkpoint_count: i32,
    pub(crate) max_checkpoint_count: i32,
    pub(crate) max_subscriber_count: i32,
    pub(crate) live_buffer_size: i32,
    pub(crate) read_batch_size: i32,
    pub(crate) history_buffer_size: i32,
    /// The string name when given, else the deprecated enum's.
    pub(crate) strategy: String,
}

impl From<create_req::Settings> for WireSettings {
    fn from(settings: create_req::Settings) -> Self {
        use create_req::settings::{CheckpointAfter, MessageTimeout};
        let named = create_req::ConsumerStrategy::try_from(settings.named_consumer_strategy)
            .map(|strategy| strategy.as_str_name().to_owned())
            .unwrap_or_default();
        Self {
            resolve_links: settings.resolve_links,
            extra_statistics: settings.extra_statistics,
            message_timeout_ms: match settings.message_timeout {
                Some(MessageTimeout::MessageTimeoutMs(ms)) => i64::from(ms),
                Some(MessageTimeout::MessageTimeoutTicks(ticks)) => ticks / TICKS_PER_MILLISECOND,
                None => 0,
            },
            checkpoint_after_ms: match settings.checkpoint_after {
                Some(CheckpointAfter::CheckpointAfterMs(ms)) => i64::from(ms),
                Some(CheckpointAfter::CheckpointAfterTicks(ticks)) => ticks / TICKS_PER_MILLISECOND,
                None => 0,
            },
            max_retry_count: settings.max_retry_count,
            min_checkpoint_count: settings.min_checkpoint_count,
            max_checkpoint_count: settings.max_checkpoint_count,
            max_subscriber_count: settings.max_subscriber_count,
            live_buffer_size: settings.live_buffer_size,
            read_batch_size: settings.read_batch_size,
            history_buffer_size: settings.history_buffer_size,
            strategy: if settings.consumer_strategy.is_empty() {
                named
            } else {
                settings.consumer_strategy
            },
        }
    }
}

impl From<update_req::Settings> for WireSettings {
    fn from(settings: update_req::Settings) -> Self {
        use update_req::settings::{CheckpointAfter, MessageTimeout};
        let named = update_req::ConsumerStrategy::try_from(settings.named_consumer_strategy)
            .map(|strategy| strategy.as_str_name().to_owned())
            .unwrap_or_default();
        Self {
            resolve_links: settings.resolve_links,
            extra_statistics: settings.extra_statistics,
            message_timeout_ms: match settings.message_timeout {
                Some(MessageTimeout::MessageTimeoutMs(ms)) => i64::from(ms),
                Some(MessageTimeout::MessageTimeoutTicks(ticks)) => ticks / TICKS_PER_MILLISECOND,
                None => 0,
            },
            checkpoint_after_ms: match settings.checkpoint_after {
                Some(CheckpointAfter::CheckpointAfterMs(ms)) => i64::from(ms),
                Some(CheckpointAfter::CheckpointAfterTicks(ticks)) => ticks / TICKS_PER_MILLISECOND,
                None => 0,
            },
            max_retry_count: settings.max_retry_count,
            min_checkpoint_count: settings.min_checkpoint_count,
            max_checkpoint_count: settings.max_checkpoint_count,
            max_subscriber_count: settings.max_subscriber_count,
            live_buffer_size: settings.live_buffer_size,
            read_batch_size: settings.read_batch_size,
            history_buffer_size: settings.history_buffer_size,
            strategy: named,
        }
    }
}

impl WireSettings {
    /// The settings of group `group` on `source`; `start_from` comes from the request's
    /// stream or `$all` options.
    pub(crate) fn into_settings(
        self,
        source: &SubscriptionSource,
        group: &str,
        start_from: StartFrom,
    ) -> Result<GroupSettings, Status> {
        let refused = |reason: String| settings_refused(source.name(), group, reason);
        let count = |name: &str, value: i32| {
            u32::try_from(value)
                .map_err(|_| refused(format!("{name} must not be negative (got {value})")))
        };
        let milliseconds = |name: &str, value: i64| {
            u64::try_from(value)
                .map_err(|_| refused(format!("{name} must not be negative (got {value})")))
        };
        let consumer_strategy = ConsumerStrategy::from_name(&self.strategy).ok_or_else(|| {
            refused(format!(
                "Consumer strategy {} does not exist.",
                self.strategy
            ))
        })?;
        Ok(GroupSettings {
            start_from,
            resolve_links: self.resolve_links,
            extra_statistics: self.extra_statistics,
            message_timeout_ms: milliseconds("message_timeout", self.message_timeout_ms)?,
            max_retry_count: count("max_retry_count", self.max_retry_count)?,
            live_buffer_size: count("live_buffer_size", self.live_buffer_size)?,
            read_batch_size: count("read_batch_size", self.read_batch_size)?,
            history_buffer_size: count("history_buffer_size", self.history_buffer_size)?,
            checkpoint_after_ms: milliseconds("checkpoint_after", self.checkpoint_after_ms)?,
            min_checkpoint_count: count("min_checkpoint_count", self.min_checkpoint_count)?,
            max_checkpoint_count: count("max_checkpoint_count", self.max_checkpoint_count)?,
            max_subscriber_count: count("max_subscriber_count", self.max_subscriber_count)?,
            consumer_strategy,
        })
    }
}

/// The source a request names: a stream, or `$all`.
pub(crate) fn source(
    stream: Option<&StreamIdentifier>,
    all: bool,
) -> Result<SubscriptionSource, Status> {
    if all {
        return Ok(SubscriptionSource::All);
    }
    Ok(SubscriptionSource::Stream(stream_name(stream)?))
}

/// A group name as sent.
pub(crate) fn group_name(group: String) -> Result<String, Status> {
    if group.is_empty() {
        return Err(invalid("the request names no group"));
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use strata_core::StreamName;

    use super::*;

    fn create_settings() -> create_req::Settings {
        create_req::Settings {
            max_retry_count: 10,
            min_checkpoint_count: 10,
            max_checkpoint_count: 1_000,
            live_buffer_size: 500,
            read_batch_size: 20,
            history_buffer_size: 500,
            message_timeout: Some(create_req::settings::MessageTimeout::MessageTimeoutTicks(
                300_000_000,
            )),
            consumer_strategy: "PinnedByCorrelation".to_owned(),
            ..create_req::Settings::default()
        }
    }

    fn orders() -> SubscriptionSource {
        SubscriptionSource::Stream(StreamName::new("orders").unwrap())
    }

    #[test]
    fn ticks_become_milliseconds_and_the_string_strategy_wins() {
        let settings = WireSettings::from(create_settings())
            .into_settings(&orders(), "g", StartFrom::Start)
            .unwrap();
        assert_eq!(settings.message_timeout_ms, 30_000);
        assert_eq!(
            settings.consumer_strategy,
            ConsumerStrategy::PinnedByCorrelation
        );
        let named = create_req::Settings {
            consumer_strategy: String::new(),
            named_consumer_strategy: create_req::ConsumerStrategy::Pinned.into(),
            ..create_settings()
        };
        let settings = WireSettings::from(named)
            .into_settings(&orders(), "g", StartFrom::End)
            .unwrap();
        assert_eq!(settings.consumer_strategy, ConsumerStrategy::Pinned);
    }

    #[test]
    fn unknown_strategies_and_negative_numbers_are_refused_as_internal() {
        let unknown = create_req::Settings {
            consumer_strategy: "Random".to_owned(),
            ..create_settings()
        };
        let status = WireSettings::from(unknown)
            .into_settings(&orders(), "g", StartFrom::Start)
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(
            status.message(),
            "Subscription group g on stream orders failed: \
             'Consumer strategy Random does not exist.'"
        );
        let negative = create_req::Settings {
            max_subscriber_count: -1,
            ..create_settings()
        };
        let status = WireSettings::from(negative)
            .into_settings(&orders(), "g", StartFrom::Start)
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().contains("max_subscriber_count"));
    }
}
