//! Who is calling and what they may do, for every RPC: reads the `authorization` header,
//! asks `strata-auth`, and maps its answers onto the statuses KurrentDB clients expect.

use std::sync::Arc;

use strata_auth::{Action, AuthError, LoginWatch, Principal, Security, SourceAddress};
use strata_core::EventStore;
use tonic::{Request, Status};

use crate::errors::{access_denied, with_trailers};

#[derive(Clone)]
pub(crate) struct Access {
    security: Arc<Security>,
}

impl Access {
    pub(crate) fn new(security: Arc<Security>) -> Self {
        Self { security }
    }

    pub(crate) fn security(&self) -> &Arc<Security> {
        &self.security
    }

    /// The caller of `request`.
    pub(crate) async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let source = request
            .extensions()
            .get::<SourceAddress>()
            .map(|source| source.0)
            .or_else(|| request.remote_addr().map(|address| address.ip()));
        self.security
            .authenticate(authorization(request)?, source)
            .await
            .map_err(auth_status)
    }

    /// The store as the caller of `request` sees it, and a watch on the caller's login
    /// that a long call (a subscription) ends on when the user is disabled, deleted or
    /// changes password.
    pub(crate) async fn session<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(Arc<dyn EventStore>, LoginWatch), Status> {
        let principal = self.principal(request).await?;
        let login = self
            .security
            .watch_login(authorization(request)?, &principal);
        Ok((self.security.store_for(principal), login))
    }

    /// The store as the caller of `request` sees it: every operation authorised.
    pub(crate) async fn store<T>(
        &self,
        request: &Request<T>,
    ) -> Result<Arc<dyn EventStore>, Status> {
        let principal = self.principal(request).await?;
        Ok(self.security.store_for(principal))
    }

    /// Authenticates the caller and checks `action`.
    pub(crate) async fn allow<T>(
        &self,
        request: &Request<T>,
        action: &Action,
    ) -> Result<Principal, Status> {
        let principal = self.principal(request).await?;
        self.security
            .authorize_action(&principal, action)
            .map_err(auth_status)?;
        Ok(principal)
    }
}

/// The `authorization` header of `request`, if any.
fn authorization<T>(request: &Request<T>) -> Result<Option<&str>, Status> {
    match request.metadata().get("authorization") {
        None => Ok(None),
        Some(value) => value.to_str().map(Some).map_err(|_| {
            auth_status(AuthError::BadHeader {
                reason: "the authorization header is not visible ASCII".to_owned(),
            })
        }),
    }
}

/// The status for an error of `strata-auth`, as the reference server answers it.
pub(crate) fn auth_status(error: AuthError) -> Status {
    match error {
        AuthError::BadHeader { reason } => Status::unauthenticated(reason),
        AuthError::BadCredentials => Status::unauthenticated("Bad credentials"),
        AuthError::AccessDenied { .. } => access_denied(),
        AuthError::UserNotFound { login } => with_trailers(
            tonic::Code::NotFound,
            format!("User '{login}' is not found."),
            &[
                ("exception", "user-not-found".into()),
                ("login-name", login),
            ],
        ),
        AuthError::UserConflict { login } => with_trailers(
            tonic::Code::FailedPrecondition,
            "Conflict.".to_owned(),
            &[("exception", "user-conflict".into()), ("login-name", login)],
        ),
        AuthError::InvalidUser { reason } => Status::invalid_argument(reason),
        AuthError::Store(error) => crate::errors::to_status(error),
        other => Status::internal(other.to_string()),
    }
}
