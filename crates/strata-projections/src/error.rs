//! Errors: why a projection faulted, and what the manager refuses.

/// Why a projection stopped with status `Faulted`. The message is what `Statistics` reports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    #[error("the query does not compile: {message}")]
    Syntax { message: String },
    #[error("the query threw in {stage}: {message}")]
    Exception { stage: String, message: String },
    #[error("{stage} ran past its deadline of {deadline_ms} ms (an endless loop?)")]
    Deadline { stage: String, deadline_ms: u128 },
    #[error("{stage} exceeded the memory limit of {limit_bytes} bytes")]
    Memory { stage: String, limit_bytes: usize },
    #[error("{stage} exceeded the stack limit of {limit_bytes} bytes (recursion too deep)")]
    Stack { stage: String, limit_bytes: usize },
    #[error(
        "the state of partition {partition:?} is {size_bytes} bytes, over the limit of {limit_bytes} bytes"
    )]
    StateTooLarge {
        partition: String,
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("invalid query: {reason}")]
    InvalidQuery { reason: String },
    #[error("store error: {message}")]
    Store { message: String },
}

impl From<strata_core::Error> for Fault {
    fn from(error: strata_core::Error) -> Self {
        Fault::Store {
            message: error.to_string(),
        }
    }
}

/// What the projection manager refuses; the gRPC service maps each onto a status code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    #[error("Projection '{name}' not found")]
    NotFound { name: String },
    #[error("Projection '{name}' already exists")]
    AlreadyExists { name: String },
    #[error("{reason}")]
    FailedPrecondition { reason: String },
    #[error("{reason}")]
    InvalidArgument { reason: String },
    #[error(transparent)]
    Store(#[from] strata_core::Error),
}
