//! The errors of connectors: bad definitions are refused at create time with the reason.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("connector {id} does not exist; create it first")]
    NotFound { id: String },

    #[error("connector {id} exists already; update or delete it instead")]
    Exists { id: String },

    #[error("connector {id} is invalid: {reason}")]
    InvalidDefinition { id: String, reason: String },

    #[error("connector {id} cannot reach its sink: {reason}")]
    SinkUnreachable { id: String, reason: String },

    #[error("connector state in stream {stream} is unreadable: {detail}")]
    CorruptState { stream: String, detail: String },

    #[error(transparent)]
    Store(#[from] strata_core::Error),
}
