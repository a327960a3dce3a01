//! The errors of the toolkit: one enum for what went wrong around a command or a projection,
//! and [`CommandError`], which adds the aggregate's own refusal of a command.

use strata_core::{Position, Revision, StreamName};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] strata_core::Error),

    #[error("event {event_type} cannot be serialised: {reason}")]
    Encode { event_type: String, reason: String },

    #[error(
        "event at revision {revision} of stream {stream} (type {event_type}, schema version \
         {schema_version}) cannot be decoded: {reason}; register an upcaster for this version"
    )]
    Decode {
        stream: StreamName,
        revision: Revision,
        event_type: String,
        schema_version: u32,
        reason: String,
    },

    #[error(
        "upcaster for {event_type} version {schema_version} failed on revision {revision} of \
         stream {stream}: {reason}"
    )]
    Upcast {
        stream: StreamName,
        revision: Revision,
        event_type: String,
        schema_version: u32,
        reason: String,
    },

    #[error(
        "stream {stream} kept changing under the command: {attempts} attempts each lost the \
         race for the expected revision; nothing was appended"
    )]
    ConflictRetriesExhausted { stream: StreamName, attempts: u32 },

    #[error(
        "the events of the decision's query kept changing: {attempts} attempts each found a \
         matching event appended after the position read; nothing was appended"
    )]
    DecisionConflictsExhausted { attempts: u32 },

    #[error(
        "projection {projection} stopped at event {event_type} (revision {revision} of stream \
         {stream}, position {position}): {reason}; its checkpoint stays before this event"
    )]
    ProjectionFailed {
        projection: String,
        stream: StreamName,
        revision: Revision,
        position: Position,
        event_type: String,
        reason: String,
    },

    #[error("checkpoint of projection {projection} cannot be read: {reason}")]
    Checkpoint { projection: String, reason: String },

    #[error(
        "read model of projection {projection} cannot be written: {reason}; nothing of the \
         failed batch was kept"
    )]
    ReadModel { projection: String, reason: String },

    #[error("the subscription of projection {projection} ended before it caught up")]
    SubscriptionEnded { projection: String },

    #[error(
        "subject {subject} was forgotten: its key is deleted and no new events are \
         encrypted for it"
    )]
    SubjectForgotten { subject: String },

    #[error("encrypted event of subject {subject:?}: {reason}")]
    Shredded { subject: String, reason: String },
}

/// Why a command did not go through: the aggregate refused it, or the toolkit failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    #[error("the command was refused: {0}")]
    Rejected(#[source] E),

    #[error(transparent)]
    Failed(#[from] Error),
}

impl<E> CommandError<E> {
    /// The aggregate's refusal, if that is what this is.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            CommandError::Rejected(error) => Some(error),
            CommandError::Failed(_) => None,
        }
    }
}

impl<E> From<strata_core::Error> for CommandError<E> {
    fn from(error: strata_core::Error) -> Self {
        CommandError::Failed(Error::Store(error))
    }
}
