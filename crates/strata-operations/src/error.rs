//! Errors of node operations.

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperationsError {
    /// The store cannot do it.
    #[error("{0}")]
    Unsupported(String),
    /// The request is wrong.
    #[error("{0}")]
    InvalidArgument(String),
    /// No scavenge with this id is under way.
    #[error("no scavenge {0} is under way")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] strata_core::Error),
}
