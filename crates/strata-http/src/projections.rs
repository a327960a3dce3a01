//! Projections over HTTP (docs/HTTP.md, "Projections"): the verbs of KurrentDB's projection
//! API (`/projections/any`, `/projection/{name}/query|state|result|command/{enable|disable|
//! reset|abort}`) under Strata's `/v1/projections`, on the same `ProjectionManager` the gRPC
//! `Projections` service drives. Managing needs the `$ops` rights (as gRPC's); reading
//! statistics, state and result needs the statistics right.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_projections::{
    CreateOptions, DeleteOptions, Mode, ProjectionError, ProjectionManager, Statistics,
};

use crate::access::{Access, Operation};
use crate::extract::{Path, Query};
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

impl From<ProjectionError> for ApiError {
    fn from(error: ProjectionError) -> Self {
        let detail = error.to_string();
        match error {
            ProjectionError::NotFound { .. } => ApiError::not_found("projection-not-found", detail),
            ProjectionError::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "projection-exists", detail)
            }
            ProjectionError::FailedPrecondition { .. } => {
                ApiError::new(StatusCode::CONFLICT, "projection-state-conflict", detail)
            }
            ProjectionError::InvalidArgument { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-projection", detail)
            }
            // On a cluster's follower, as the connectors' routes answer there.
            ProjectionError::Store(strata_core::Error::NotLeader { .. }) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-leader",
                format!("projections run on the cluster's leader: manage them there ({detail})"),
            ),
            ProjectionError::Store(store) => store.into(),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store-error", detail),
        }
    }
}

fn manager(state: &AppState) -> Result<&Arc<ProjectionManager>, ApiError> {
    state.projections.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "not-found",
            "this server runs no projections (they run where `strata serve` serves a store, with run_projections = all)",
        )
    })
}

/// One projection: its statistics, and with its definition when asked for by name.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProjectionOut {
    name: String,
    /// `Running`, `Stopped`, `Faulted`, `Completed/Stopped`.
    status: String,
    /// Why it faulted, or empty.
    state_reason: String,
    /// `OneTime` or `Continuous`.
    mode: String,
    epoch: u64,
    version: u64,
    /// The checkpoint's cursors, as JSON text.
    position: String,
    /// 100 when caught up, else 0.
    progress: f32,
    events_processed_after_restart: u64,
    partitions_cached: usize,
    checkpoint_status: String,
    /// The query (by name only).
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    emit_enabled: Option<bool>,
}

impl From<Statistics> for ProjectionOut {
    fn from(s: Statistics) -> Self {
        Self {
            name: s.name,
            status: s.status,
            state_reason: s.state_reason,
            mode: s.mode,
            epoch: s.epoch,
            version: s.version,
            position: s.position,
            progress: s.progress,
            events_processed_after_restart: s.events_processed_after_restart,
            partitions_cached: s.partitions_cached,
            checkpoint_status: s.checkpoint_status,
            query: None,
            enabled: None,
            emit_enabled: None,
        }
    }
}

/// Every projection.
#[utoipa::path(
    get,
    path = "/v1/projections",
    responses(
        (status = 200, description = "the projections", body = Vec<ProjectionOut>),
        (status = 404, description = "no projections on this server", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "projections"
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    access: Access,
) -> Result<Json<Vec<ProjectionOut>>, ApiError> {
    access.check(Operation::Statistics).await?;
    let all = manager(&state)?.statistics(None).await?;
    Ok(Json(all.into_iter().map(ProjectionOut::from).collect()))
}

/// One projection's statistics and definition.
#[utoipa::path(
    get,
    path = "/v1/projections/{name}",
    params(("name" = String, Path, description = "projection name")),
    responses(
        (status = 200, description = "the projection", body = ProjectionOut),
        (status = 404, description = "no such projection", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "projections"
)]
pub(crate) async fn info(
    State(state): State<AppState>,
    Path(name): Path<String>,
    access: Access,
) -> Result<Json<ProjectionOut>, ApiError> {
    access.check(Operation::Statistics).await?;
    let manager = manager(&state)?;
    let definition = manager.definition(&name).await?;
    let statistics = manager.statistics(Some(&name)).await?;
    let Some(statistics) = statistics.into_iter().next() else {
        return Err(ProjectionError::NotFound { name }.into());
    };
    let mut out = ProjectionOut::from(statistics);
    out.query = Some(definition.query);
    out.enabled = Some(definition.enabled);
    out.emit_enabled = Some(definition.emit_enabled);
    Ok(Json(out))
}

/// How a projection is created.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateIn {
    /// The JavaScript query (`fromAll().when({...})`).
    query: String,
    /// `continuous` (default) or `one-time`.
    mode: Option<String>,
    emit_enabled: Option<bool>,
    track_emitted_streams: Option<bool>,
}

/// Creates and starts a projection.
#[utoipa::path(
    put,
    path = "/v1/projections/{name}",
    params(("name" = String, Path, description = "projection name")),
    request_body(content = CreateIn, content_type = "application/json"),
    responses(
        (status = 201, description = "created"),
        (status = 400, description = "bad query or settings", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "a projection of that name exists", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "projections"
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Path(name): Path<String>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    access.check(Operation::Operations).await?;
    let manager = manager(&state)?;
    crate::state::require_json(&headers)?;
    let body = crate::state::read_body(&headers, body, &state.options).await?;
    let input: CreateIn = crate::state::parse_json(&body)?;
    let mode = match input.mode.as_deref() {
        None | Some("continuous") => Mode::Continuous,
        Some("one-time") => Mode::OneTime,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-projection",
                format!("mode {other:?} is neither continuous nor one-time"),
            ));
        }
    };
    let options = CreateOptions {
        mode,
        emit_enabled: input.emit_enabled.unwrap_or(false),
        track_emitted_streams: input.track_emitted_streams.unwrap_or(false),
    };
    manager.create(&name, &input.query, options).await?;
    let location = format!("/v1/projections/{name}");
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}

/// A new query.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct QueryIn {
    query: String,
    emit_enabled: Option<bool>,
}

/// Replaces a projection's query (restarting it when it runs).
#[utoipa::path(
    put,
    path = "/v1/projections/{name}/query",
    params(("name" = String, Path, description = "projection name")),
    request_body(content = QueryIn, content_type = "application/json"),
    responses(
        (status = 204, description = "updated"),
        (status = 400, description = "bad query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such projection", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "projections"
)]
pub(crate) async fn update_query(
    State(state): State<AppState>,
    Path(name): Path<String>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    access.check(Operation::Operations).await?;
    let manager = manager(&state)?;
    crate::state::require_json(&headers)?;
    let body = crate::state::read_body(&headers, body, &state.options).await?;
    let input: QueryIn = crate::state::parse_json(&body)?;
    manager
        .update(&name, &input.query, input.emit_enabled)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PartitionQuery {
    /// The partition (the root's when absent).
    partition: Option<String>,
}

fn json_or_null(text: Option<String>) -> Response {
    let body = text.unwrap_or_else(|| "null".to_owned());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The state a projection last checkpointed (`null` before its first checkpoint).
#[utoipa::path(
    get,
    path = "/v1/projections/{name}/state",
    params(("name" = String, Path, description = "projection name"), PartitionQuery),
    responses(
        (status = 200, description = "the state as the query left it (any JSON; null before the first checkpoint)", body = serde_json::Value),
        (status = 404, description = "no such projection", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "projections"
)]
pub(crate) async fn state(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<PartitionQuery>,
    access: Access,
) -> Result<Response, ApiError> {
    access.check(Operation::Statistics).await?;
    let partition = query.partition.unwrap_or_default();
    let text = manager(&state)?.state(&name, &partition).await?;
    Ok(json_or_null(text))
}

/// The result a projection last wrote (`null` before any).
#[utoipa::path(
    get,
    path = "/v1/projections/{name}/result",
    params(("name" = String, Path, description = "projection name"), PartitionQuery),
    responses(
        (status = 200, description = "the result (any JSON; null before the first)", body = serde_json::Value),
        (status = 404, description = "no such projection", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "projections"
)]
pub(crate) async fn result(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<PartitionQuery>,
    access: Access,
) -> Result<Response, ApiError> {
    access.check(Operation::Statistics).await?;
    let partition = query.partition.unwrap_or_default();
    let text = manager(&state)?.result(&name, &partition).await?;
    Ok(json_or_null(text))
}

/// Enables, disables, resets or aborts a projection.
#[utoipa::path(
    post,
    path = "/v1/projections/{name}/{command}",
    params(
        ("name" = String, Path, description = "projection name"),
        ("command" = String, Path, description = "enable, disable, reset or abort"),
    ),
    responses(
        (status = 204, description = "done"),
        (status = 404, description = "no such projection or command", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "projections"
)]
pub(crate) async fn command(
    State(state): State<AppState>,
    Path((name, command)): Path<(String, String)>,
    access: Access,
) -> Result<StatusCode, ApiError> {
    access.check(Operation::Operations).await?;
    let manager = manager(&state)?;
    match command.as_str() {
        "enable" => manager.enable(&name).await?,
        "disable" => manager.disable(&name).await?,
        "reset" => manager.reset(&name).await?,
        "abort" => manager.abort(&name).await?,
        other => {
            return Err(ApiError::not_found(
                "not-found",
                format!("{other:?} is none of enable, disable, reset, abort"),
            ));
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    delete_emitted_streams: Option<bool>,
    delete_state_stream: Option<bool>,
    delete_checkpoint_stream: Option<bool>,
}

/// Deletes a stopped projection (disable it first) and, as asked, its streams.
#[utoipa::path(
    delete,
    path = "/v1/projections/{name}",
    params(("name" = String, Path, description = "projection name"), DeleteQuery),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such projection", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "it still runs", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "projections"
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<DeleteQuery>,
    access: Access,
) -> Result<StatusCode, ApiError> {
    access.check(Operation::Operations).await?;
    let options = DeleteOptions {
        delete_emitted_streams: query.delete_emitted_streams.unwrap_or(false),
        delete_state_stream: query.delete_state_stream.unwrap_or(false),
        delete_checkpoint_stream: query.delete_checkpoint_stream.unwrap_or(false),
    };
    manager(&state)?.delete(&name, options).await?;
    Ok(StatusCode::NO_CONTENT)
}
