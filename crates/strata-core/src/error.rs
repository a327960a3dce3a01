//! The errors of the contract. Front ends map these onto their wire errors in one place.

use crate::types::{EventId, ExpectedRevision, StreamName, StreamState};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "wrong expected revision on stream {stream}: expected {expected}, but it is at {actual}"
    )]
    WrongExpectedRevision {
        stream: StreamName,
        expected: ExpectedRevision,
        actual: StreamState,
    },

    #[error("stream {stream} is tombstoned: it can never be read or written again")]
    StreamDeleted { stream: StreamName },

    /// A conditional (DCB) append found an event matching its query after its position.
    #[error(
        "append condition failed: an event matching the query is at {found}, after {}",
        after.map_or_else(|| "the start".to_owned(), |after| after.to_string())
    )]
    AppendConditionFailed {
        after: Option<crate::types::Position>,
        found: crate::types::Position,
    },

    #[error("invalid stream name {name:?}: {reason}")]
    InvalidStreamName { name: String, reason: String },

    #[error("invalid event type {event_type:?}: {reason}")]
    InvalidEventType { event_type: String, reason: String },

    #[error("event {event_id} is {size_bytes} bytes, over the limit of {limit_bytes} bytes")]
    EventTooLarge {
        event_id: EventId,
        size_bytes: usize,
        limit_bytes: usize,
    },

    #[error("append of {size} {unit} is over the limit of {limit} {unit}")]
    AppendTooLarge {
        size: usize,
        limit: usize,
        unit: &'static str,
    },

    #[error("invalid metadata for stream {stream}: {reason}")]
    InvalidMetadata { stream: StreamName, reason: String },

    #[error("invalid filter: {reason}")]
    InvalidFilter { reason: String },

    #[error("invalid argument: {reason}")]
    InvalidArgument { reason: String },

    #[error("the log is corrupt: {detail}")]
    Corrupt { detail: String },

    #[error(
        "the store refuses writes after a failed write or fsync ({cause}); reopen it to recover"
    )]
    Poisoned { cause: String },

    #[error(
        "data directory {path} is in use by another process (it holds {path}/LOCK); stop it or choose another directory"
    )]
    DirectoryInUse { path: String },

    /// The backend cannot do this at all (a client of a server without the call).
    #[error("this store does not support {operation}")]
    Unsupported { operation: &'static str },

    #[error("the store is closed")]
    Closed,

    /// A leader-only write on a node that is not (or no longer) the cluster's leader.
    #[error("this node is not the cluster's leader{}", leader.as_ref().map(|leader| format!(" (the leader is {}:{})", leader.host, leader.port)).unwrap_or_default())]
    NotLeader {
        leader: Option<crate::leadership::NodeAddress>,
    },

    /// The caller may not do this: a front end answers it as access denied.
    #[error("access denied: {operation} on {stream}")]
    AccessDenied { operation: String, stream: String },

    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what the store was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
