//! What can go wrong when authenticating, authorising or managing users.

/// Errors of this crate; front ends map them onto their wire errors (gRPC:
/// `UNAUTHENTICATED`, `PERMISSION_DENIED` with `exception=access-denied`, `NOT_FOUND`, ...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The `authorization` header cannot be read.
    #[error("bad authorization header: {reason}")]
    BadHeader { reason: String },

    /// Unknown login, wrong password, or a disabled user.
    #[error("invalid credentials")]
    BadCredentials,

    /// The caller is known (or anonymous) but may not do this.
    #[error("access denied: {operation} on {resource}")]
    AccessDenied { operation: String, resource: String },

    #[error("user '{login}' is not found")]
    UserNotFound { login: String },

    /// Creating a user that exists, or a concurrent change to the same user.
    #[error("user '{login}' conflicts with an existing user or a concurrent change")]
    UserConflict { login: String },

    #[error("invalid user: {reason}")]
    InvalidUser { reason: String },

    #[error(transparent)]
    Store(#[from] strata_core::Error),
}

impl From<AuthError> for strata_core::Error {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Store(error) => error,
            AuthError::AccessDenied {
                operation,
                resource,
            } => strata_core::Error::AccessDenied {
                operation,
                stream: resource,
            },
            other => strata_core::Error::InvalidArgument {
                reason: other.to_string(),
            },
        }
    }
}
