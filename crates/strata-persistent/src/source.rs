//! What a group reads: one stream or `$all` (with an optional filter), and the system streams
//! that hold a group's state.

use serde::{Deserialize, Serialize};
use strata_core::{EventFilter, FilterTarget, StreamName};

use crate::error::{Error, Result};

/// The name KurrentDB gives the global log in group identities and stream names.
pub const ALL_STREAM: &str = "$all";

/// Longest group name accepted.
pub const GROUP_NAME_BYTES_MAX: usize = 512;

/// Where the configuration of every group lives.
const CONFIG_STREAM: &str = "$persistentSubscriptionConfig";

/// The start of the name of each group's checkpoint and parked streams.
const GROUP_STREAM_PREFIX: &str = "$persistentsubscription-";

/// The end of the name of each group's checkpoint stream.
const CHECKPOINT_STREAM_SUFFIX: &str = "-checkpoint";

/// True for the streams holding the groups' configuration and checkpoints, and for their
/// metadata streams. Places in them (log positions, for `$all` groups) mean nothing in another
/// store, so a copy of a store leaves them out. Parked streams are not among them: their
/// links name a revision and a stream, which a copy keeps.
pub fn is_group_state_stream(stream: &str) -> bool {
    let stream = stream.strip_prefix("$$").unwrap_or(stream);
    stream == CONFIG_STREAM
        || (stream.starts_with(GROUP_STREAM_PREFIX) && stream.ends_with(CHECKPOINT_STREAM_SUFFIX))
}

/// The source of a group: one stream or the global log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubscriptionSource {
    Stream(StreamName),
    All,
}

impl SubscriptionSource {
    /// The source's name: the stream name, or `$all`.
    pub fn name(&self) -> &str {
        match self {
            SubscriptionSource::Stream(stream) => stream.as_str(),
            SubscriptionSource::All => ALL_STREAM,
        }
    }

    pub(crate) fn from_name(name: &str) -> Result<Self> {
        if name == ALL_STREAM {
            Ok(SubscriptionSource::All)
        } else {
            Ok(SubscriptionSource::Stream(StreamName::new(name)?))
        }
    }
}

impl std::fmt::Display for SubscriptionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A filter of a `$all` group, kept in the group's stored configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterSpec {
    /// True to match event types, false to match stream names.
    pub on_event_type: bool,
    /// A regex (.NET syntax) used when `prefixes` is empty.
    #[serde(default)]
    pub regex: String,
    /// Any of these prefixes matches.
    #[serde(default)]
    pub prefixes: Vec<String>,
}

impl FilterSpec {
    /// The filter the store applies.
    ///
    /// # Errors
    /// [`Error::Store`] with an invalid-filter error for a bad regex or too many prefixes.
    pub fn to_event_filter(&self) -> Result<EventFilter> {
        let target = if self.on_event_type {
            FilterTarget::EventType
        } else {
            FilterTarget::StreamName
        };
        let filter = if self.prefixes.is_empty() {
            EventFilter::regex(target, &self.regex)?
        } else {
            EventFilter::prefixes(target, self.prefixes.clone())?
        };
        Ok(filter)
    }
}

/// Checks a group name: not empty, bounded, no control characters (it becomes part of stream
/// names and gRPC trailers).
pub(crate) fn check_group_name(source: &SubscriptionSource, group: &str) -> Result<()> {
    if group.is_empty() {
        return Err(Error::invalid(source, group, "the group name is empty"));
    }
    if group.len() > GROUP_NAME_BYTES_MAX {
        return Err(Error::invalid(
            source,
            group,
            format!(
                "the group name is {} bytes, over the limit of {GROUP_NAME_BYTES_MAX}",
                group.len()
            ),
        ));
    }
    if group.chars().any(char::is_control) {
        return Err(Error::invalid(
            source,
            group,
            "the group name contains control characters",
        ));
    }
    Ok(())
}

/// `$persistentsubscription-<source>::<group>-checkpoint`.
pub(crate) fn checkpoint_stream(source: &SubscriptionSource, group: &str) -> Result<StreamName> {
    Ok(StreamName::new(format!(
        "{GROUP_STREAM_PREFIX}{source}::{group}{CHECKPOINT_STREAM_SUFFIX}"
    ))?)
}

/// `$persistentsubscription-<source>::<group>-parked`.
pub(crate) fn parked_stream(source: &SubscriptionSource, group: &str) -> Result<StreamName> {
    Ok(StreamName::new(format!(
        "{GROUP_STREAM_PREFIX}{source}::{group}-parked"
    ))?)
}

/// Where the configuration of every group lives.
pub(crate) fn config_stream() -> StreamName {
    StreamName::from_stored(CONFIG_STREAM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_state_streams_are_the_configuration_and_the_checkpoints_with_their_metadata() {
        let stream = SubscriptionSource::Stream(StreamName::new("orders").unwrap());
        for source in [stream, SubscriptionSource::All] {
            let checkpoint = checkpoint_stream(&source, "billing-parked").unwrap();
            assert!(is_group_state_stream(checkpoint.as_str()), "{checkpoint}");
            assert!(is_group_state_stream(&format!("$${checkpoint}")));
            let parked = parked_stream(&source, "billing-checkpoint").unwrap();
            assert!(!is_group_state_stream(parked.as_str()), "{parked}");
        }
        assert!(is_group_state_stream(config_stream().as_str()));
        assert!(is_group_state_stream(&format!("$${}", config_stream())));
        for other in ["orders", "$$orders", "$checkpoint-x", "order-checkpoint"] {
            assert!(!is_group_state_stream(other), "{other}");
        }
    }
}
