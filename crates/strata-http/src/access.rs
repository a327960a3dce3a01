//! The one seam where requests meet authentication and access control: [`Access`] turns a
//! request's `authorization` header into a [`Principal`] through the configured
//! [`Authorizer`], and each handler asks it once per operation. The authorizer is the
//! security module's; this crate implements none of its own (the default,
//! [`AllowAll`], is the insecure mode: no authentication at all).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use strata_core::StreamName;

use crate::problem::ApiError;
use crate::state::AppState;

/// Who is asking: a user with its roles, or anonymous.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User { name: String, roles: Vec<String> },
}

/// What a request wants to do, as an access check sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation<'a> {
    /// Read or subscribe to a stream (`$all` for the global log).
    Read(&'a str),
    /// Append to a stream.
    Write(&'a str),
    /// Soft-delete or tombstone a stream.
    Delete(&'a str),
    MetadataRead(&'a str),
    MetadataWrite(&'a str),
    /// Create, update, delete, inspect persistent subscriptions or replay parked events.
    PersistentManage,
    /// Consume from a persistent subscription on the stream.
    PersistentConsume(&'a str),
    /// Node statistics and metrics.
    Statistics,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// No or wrong credentials (401).
    #[error("authentication failed: {0}")]
    Unauthenticated(String),
    /// Known principal, operation not allowed (403).
    #[error("access denied: {0}")]
    Denied(String),
}

/// Authentication and access control, supplied by the security module.
pub trait Authorizer: std::fmt::Debug + Send + Sync + 'static {
    /// The principal the request's `authorization` header names (anonymous when it has none
    /// and the mode allows it).
    ///
    /// # Errors
    /// [`AccessError::Unauthenticated`] for missing or wrong credentials.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AccessError>;

    /// Whether `principal` may perform `operation`.
    ///
    /// # Errors
    /// [`AccessError::Denied`] when it may not.
    fn authorize(
        &self,
        principal: &Principal,
        operation: &Operation<'_>,
    ) -> Result<(), AccessError>;
}

/// No authentication, everything allowed: the insecure mode.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authenticate(&self, _headers: &HeaderMap) -> Result<Principal, AccessError> {
        Ok(Principal::Anonymous)
    }

    fn authorize(
        &self,
        _principal: &Principal,
        _operation: &Operation<'_>,
    ) -> Result<(), AccessError> {
        Ok(())
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        match &error {
            AccessError::Unauthenticated(_) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                error.to_string(),
            )
            .with_header(header::WWW_AUTHENTICATE.as_str(), "Basic realm=\"strata\""),
            AccessError::Denied(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "access-denied", error.to_string())
            }
        }
    }
}

/// The authenticated caller of one request.
pub(crate) struct Access {
    principal: Principal,
    authorizer: Arc<dyn Authorizer>,
}

impl Access {
    /// Checks one operation.
    pub(crate) fn check(&self, operation: Operation<'_>) -> Result<(), ApiError> {
        Ok(self.authorizer.authorize(&self.principal, &operation)?)
    }

    pub(crate) fn read(&self, stream: &StreamName) -> Result<(), ApiError> {
        self.check(Operation::Read(stream.as_str()))
    }

    pub(crate) fn write(&self, stream: &StreamName) -> Result<(), ApiError> {
        self.check(Operation::Write(stream.as_str()))
    }
}

impl FromRequestParts<AppState> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authorizer = Arc::clone(&state.authorizer);
        let principal = authorizer.authenticate(&parts.headers)?;
        Ok(Access {
            principal,
            authorizer,
        })
    }
}
