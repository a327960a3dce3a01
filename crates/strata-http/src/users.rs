//! Users over HTTP (docs/HTTP.md, "Users"): list, create, change, disable, enable, reset a
//! password and delete, through `strata-auth` (the module gRPC's `Users` service uses), for
//! `$admins`. On an insecure server there are no users: every route answers 404.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::access::{Access, Operation};
use crate::extract::Path;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

fn security(state: &AppState) -> Result<&strata_auth::Security, ApiError> {
    if state.security.is_enabled() {
        Ok(&state.security)
    } else {
        Err(ApiError::not_found(
            "not-found",
            "this server runs without security (--insecure): it has no users",
        ))
    }
}

/// A user, without its password hash.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserOut {
    login_name: String,
    full_name: String,
    groups: Vec<String>,
    disabled: bool,
    /// RFC 3339, UTC.
    last_updated: String,
}

impl From<strata_auth::UserDetails> for UserOut {
    fn from(user: strata_auth::UserDetails) -> Self {
        Self {
            login_name: user.login_name,
            full_name: user.full_name,
            groups: user.groups,
            disabled: user.disabled,
            last_updated: user.last_updated.to_rfc3339(3),
        }
    }
}

/// Every user.
#[utoipa::path(
    get,
    path = "/v1/users",
    responses(
        (status = 200, description = "the users", body = Vec<UserOut>),
        (status = 404, description = "no users on an insecure server", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "users"
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    access: Access,
) -> Result<Json<Vec<UserOut>>, ApiError> {
    let security = security(&state)?;
    access.check(Operation::ManageUsers).await?;
    let users = security.list_users().await?;
    Ok(Json(users.into_iter().map(UserOut::from).collect()))
}

/// One user.
#[utoipa::path(
    get,
    path = "/v1/users/{login}",
    params(("login" = String, Path, description = "login name")),
    responses(
        (status = 200, description = "the user", body = UserOut),
        (status = 404, description = "no such user", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "users"
)]
pub(crate) async fn info(
    State(state): State<AppState>,
    Path(login): Path<String>,
    access: Access,
) -> Result<Json<UserOut>, ApiError> {
    let security = security(&state)?;
    access.check(Operation::ManageUsers).await?;
    Ok(Json(security.user_details(&login).await?.into()))
}

/// A new user.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateIn {
    full_name: String,
    #[serde(default)]
    groups: Vec<String>,
    password: String,
}

/// Creates a user.
#[utoipa::path(
    put,
    path = "/v1/users/{login}",
    params(("login" = String, Path, description = "login name")),
    request_body(content = CreateIn, content_type = "application/json"),
    responses(
        (status = 201, description = "created"),
        (status = 400, description = "bad user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the login exists", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "users"
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Path(login): Path<String>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let security = security(&state)?;
    access.check(Operation::ManageUsers).await?;
    crate::state::require_json(&headers)?;
    let body = crate::state::read_body(&headers, body, &state.options).await?;
    let input: CreateIn = crate::state::parse_json(&body)?;
    if input.password.is_empty() {
        return Err(ApiError::bad_request("the password must not be empty"));
    }
    security
        .create_user(&login, &input.full_name, &input.groups, &input.password)
        .await?;
    let location = format!("/v1/users/{login}");
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}

/// A user's new full name and groups.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UpdateIn {
    full_name: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// Replaces a user's full name and groups.
#[utoipa::path(
    patch,
    path = "/v1/users/{login}",
    params(("login" = String, Path, description = "login name")),
    request_body(content = UpdateIn, content_type = "application/json"),
    responses(
        (status = 204, description = "updated"),
        (status = 404, description = "no such user", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "users"
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    Path(login): Path<String>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let security = security(&state)?;
    access.check(Operation::ManageUsers).await?;
    crate::state::require_json(&headers)?;
    let body = crate::state::read_body(&headers, body, &state.options).await?;
    let input: UpdateIn = crate::state::parse_json(&body)?;
    security
        .update_user(&login, &input.full_name, &input.groups)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a user; its credentials stop working on the next request.
#[utoipa::path(
    delete,
    path = "/v1/users/{login}",
    params(("login" = String, Path, description = "login name")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such user", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "users"
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(login): Path<String>,
    access: Access,
) -> Result<StatusCode, ApiError> {
    let security = security(&state)?;
    access.check(Operation::ManageUsers).await?;
    security.delete_user(&login).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new password, set without the current one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ResetIn {
    new_password: String,
}

/// Disables or enables a user, or resets its password (`reset-password` with a body
/// `{"newPassword"}`).
#[utoipa::path(
    post,
    path = "/v1/users/{login}/{command}",
    params(
        ("login" = String, Path, description = "login name"),
        ("command" = String, Path, description = "disable, enable or reset-password"),
    ),
    request_body(content = Option<ResetIn>, content_type = "application/json"),
    responses(
        (status = 204, description = "done"),
        (status = 400, description = "bad body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such user or command", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "users"
)]
pub(crate) async fn command(
    State(state): State<AppState>,
    Path((login, command)): Path<(String, String)>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let security = security(&state)?;
    access.check(Operation::ManageUsers).await?;
    match command.as_str() {
        "disable" => security.set_user_disabled(&login, true).await?,
        "enable" => security.set_user_disabled(&login, false).await?,
        "reset-password" => {
            crate::state::require_json(&headers)?;
            let body = crate::state::read_body(&headers, body, &state.options).await?;
            let input: ResetIn = crate::state::parse_json(&body)?;
            if input.new_password.is_empty() {
                return Err(ApiError::bad_request("the new password must not be empty"));
            }
            security.reset_password(&login, &input.new_password).await?;
        }
        other => {
            return Err(ApiError::not_found(
                "not-found",
                format!("{other:?} is none of disable, enable, reset-password"),
            ));
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
