//! The errors of persistent subscriptions. The gRPC front end maps them onto the statuses and
//! `exception` trailers KurrentDB clients expect.

use crate::source::SubscriptionSource;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("subscription group {group} on stream {stream} does not exist; create it first")]
    GroupNotFound { stream: String, group: String },

    #[error(
        "subscription group {group} on stream {stream} exists already; update or delete it instead"
    )]
    GroupExists { stream: String, group: String },

    #[error(
        "maximum subscriptions ({max}) reached for subscription group {group} on stream \
         {stream}; disconnect a consumer or raise max_subscriber_count"
    )]
    MaximumSubscribersReached {
        stream: String,
        group: String,
        max: u32,
    },

    #[error("subscription group {group} on stream {stream} was dropped ({reason}); reconnect")]
    Dropped {
        stream: String,
        group: String,
        reason: DropReason,
    },

    /// Settings the reference server also refuses (its gRPC answer is `INTERNAL`).
    #[error("subscription group {group} on stream {stream} failed: '{reason}'")]
    InvalidSettings {
        stream: String,
        group: String,
        reason: String,
    },

    #[error(
        "subscription group {group} on stream {stream} cannot be created: this server holds \
         the maximum of {max} persistent subscription groups; delete one or raise the limit"
    )]
    GroupLimitReached {
        stream: String,
        group: String,
        max: usize,
    },

    #[error("persistent subscription state in stream {stream} is unreadable: {detail}")]
    CorruptState { stream: String, detail: String },

    #[error(transparent)]
    Store(#[from] strata_core::Error),
}

impl Error {
    pub(crate) fn invalid(
        source: &SubscriptionSource,
        group: &str,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidSettings {
            stream: source.to_string(),
            group: group.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Why a group let go of a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The group was deleted.
    Deleted,
    /// The group's settings changed; it restarted from its checkpoint.
    Updated,
    /// The subsystem was restarted.
    Restarted,
    /// The consumer nacked with `Stop`.
    StoppedByConsumer,
    /// The manager was dropped.
    Shutdown,
    /// The group could not read its source or write its state.
    Failed(String),
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::Deleted => f.write_str("the group was deleted"),
            DropReason::Updated => f.write_str("the group's settings were updated"),
            DropReason::Restarted => f.write_str("the subsystem was restarted"),
            DropReason::StoppedByConsumer => f.write_str("the consumer nacked with Stop"),
            DropReason::Shutdown => f.write_str("the server is shutting down"),
            DropReason::Failed(cause) => write!(f, "the group failed: {cause}"),
        }
    }
}
