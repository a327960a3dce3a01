//! The one seam where requests meet authentication and access control: [`Access`] turns a
//! request's `authorization` header into a principal through `strata-auth` (the module
//! gRPC uses too), and each handler asks it once per operation. Without security (the
//! insecure mode) every request may do everything.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use strata_auth::{
    Action, AuthError, LoginWatch, Principal, Security, SourceAddress, StreamOperation,
};
use strata_core::{EventStore, StreamName};

use crate::problem::ApiError;
use crate::state::AppState;

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
    /// Consume from a persistent subscription on the stream (needs read access to it).
    PersistentConsume(&'a str),
    /// Node statistics and metrics; reading projections' statistics, state and result.
    Statistics,
    /// Operations on the node: creating and controlling projections (`$ops`).
    Operations,
    /// Listing, creating, changing and deleting users (`$admins`).
    ManageUsers,
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let detail = error.to_string();
        match error {
            AuthError::BadCredentials | AuthError::BadHeader { .. } => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
                    .with_header(header::WWW_AUTHENTICATE.as_str(), "Basic realm=\"strata\"")
            }
            AuthError::AccessDenied { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "access-denied", detail)
            }
            AuthError::UserNotFound { .. } => ApiError::not_found("user-not-found", detail),
            AuthError::UserConflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "user-conflict", detail)
            }
            AuthError::Store(store) => store.into(),
            _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid-user", detail),
        }
    }
}

/// The authenticated caller of one request.
pub(crate) struct Access {
    principal: Principal,
    security: Arc<Security>,
    /// The request's `authorization` header, for [`Access::watch_login`].
    authorization: Option<String>,
}

impl Access {
    /// Checks one operation. A refusal of an anonymous caller is 401 (log in and try again);
    /// of a known user, 403.
    pub(crate) async fn check(&self, operation: Operation<'_>) -> Result<(), ApiError> {
        self.check_as_principal(operation).await.map_err(|error| {
            if self.principal.is_anonymous() && error.status == StatusCode::FORBIDDEN {
                ApiError::from(AuthError::BadCredentials)
            } else {
                error
            }
        })
    }

    async fn check_as_principal(&self, operation: Operation<'_>) -> Result<(), ApiError> {
        let stream_check =
            |operation: StreamOperation, stream: &str| (operation, stream.to_owned());
        let (operation, stream) = match operation {
            Operation::Read(stream) | Operation::PersistentConsume(stream) => {
                stream_check(StreamOperation::Read, stream)
            }
            Operation::Write(stream) => stream_check(StreamOperation::Write, stream),
            Operation::Delete(stream) => stream_check(StreamOperation::Delete, stream),
            Operation::MetadataRead(stream) => stream_check(StreamOperation::MetadataRead, stream),
            Operation::MetadataWrite(stream) => {
                stream_check(StreamOperation::MetadataWrite, stream)
            }
            Operation::PersistentManage => {
                return Ok(self
                    .security
                    .authorize_action(&self.principal, &Action::ManagePersistentSubscriptions)?);
            }
            Operation::Statistics => {
                return Ok(self
                    .security
                    .authorize_action(&self.principal, &Action::Statistics)?);
            }
            Operation::ManageUsers => {
                return Ok(self
                    .security
                    .authorize_action(&self.principal, &Action::ManageUsers)?);
            }
            Operation::Operations => {
                return Ok(self
                    .security
                    .authorize_action(&self.principal, &Action::Operations)?);
            }
        };
        let stream = StreamName::new(stream)?;
        Ok(self
            .security
            .authorize(&self.principal, operation, &stream)
            .await?)
    }

    pub(crate) async fn read(&self, stream: &StreamName) -> Result<(), ApiError> {
        self.check(Operation::Read(stream.as_str())).await
    }

    pub(crate) async fn write(&self, stream: &StreamName) -> Result<(), ApiError> {
        self.check(Operation::Write(stream.as_str())).await
    }

    /// A watch on the caller's login: a subscription ends when the user is disabled,
    /// deleted or changes password.
    pub(crate) fn watch_login(&self) -> LoginWatch {
        self.security
            .watch_login(self.authorization.as_deref(), &self.principal)
    }

    /// The store as this caller may see it: with security on, `$all` reads and
    /// subscriptions leave out the events of streams the caller may not read (as gRPC's do).
    pub(crate) fn store(&self, state: &AppState) -> Arc<dyn EventStore> {
        if self.security.is_enabled() {
            self.security.store_for(self.principal.clone())
        } else {
            Arc::clone(&state.store)
        }
    }
}

impl FromRequestParts<AppState> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let security = Arc::clone(&state.security);
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|value| value.to_str().map_err(|_| AuthError::BadCredentials))
            .transpose()?;
        let source = parts
            .extensions
            .get::<SourceAddress>()
            .map(|address| address.0);
        let principal = security.authenticate(header, source).await?;
        Ok(Access {
            principal,
            security,
            authorization: header.map(str::to_owned),
        })
    }
}

/// A caller allowed [`Action::Operations`] (scavenges, connectors): the request's
/// `authorization` header authenticated from its source address, then authorized. An
/// anonymous caller is asked to log in (401), as the other endpoints answer.
pub(crate) async fn operator(parts: &Parts, security: &Security) -> Result<Principal, ApiError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|value| value.to_str().map_err(|_| AuthError::BadCredentials))
        .transpose()?;
    let source = parts
        .extensions
        .get::<SourceAddress>()
        .map(|address| address.0);
    let principal = security.authenticate(header, source).await?;
    match security.authorize_action(&principal, &Action::Operations) {
        Ok(()) => Ok(principal),
        Err(_) if principal.is_anonymous() => Err(AuthError::BadCredentials.into()),
        Err(error) => Err(error.into()),
    }
}
