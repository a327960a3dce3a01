//! Scavenges over HTTP, for operators and the web UI (docs/HTTP.md, *Scavenges*): start
//! one (`POST /v1/admin/scavenges`, with a throttle), list the one under way and the
//! last finished with their progress (`GET /v1/admin/scavenges`), show one
//! (`GET /v1/admin/scavenges/{id}`) and stop one (`DELETE /v1/admin/scavenges/{id}`,
//! `current` naming the one under way). Every route needs the `Operations` right
//! (`$admins`, `$ops`). The node's job manager (`strata-operations`) runs them, as it
//! runs the gRPC `Operations` calls and automatic scavenges.
//!
//! The routes have their own state (the node's operations), so they are a router of their
//! own, merged beside [`crate::HttpApi::router`] by whoever runs the server.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use strata_auth::Security;
use strata_operations::{
    AutoStatus, JobStatus, NodeOperations, OperationsError, ScavengeRequest, StartOutcome, Trigger,
};

use crate::extract::Path;
use crate::problem::{ApiError, Problem};
use crate::state::{HttpOptions, parse_json, read_body, require_json};

struct ScavengesState {
    operations: NodeOperations,
    security: Arc<Security>,
    options: HttpOptions,
}

type Shared = Arc<ScavengesState>;

/// The scavenge routes over the node's `operations`, checked with `security` (pass
/// [`Security::disabled`] for an insecure node). Merge the result beside the HTTP API.
pub fn scavenges_router(
    operations: NodeOperations,
    security: Arc<Security>,
    options: HttpOptions,
) -> axum::Router {
    let state = Arc::new(ScavengesState {
        operations,
        security,
        options,
    });
    axum::Router::new()
        .route("/v1/admin/scavenges", get(list).post(start))
        .route("/v1/admin/scavenges/{id}", get(show).delete(stop))
        .method_not_allowed_fallback(crate::problem::method_not_allowed)
        .with_state(state)
}

/// A caller allowed to run operations, and its login.
struct Operator(Option<String>);

impl FromRequestParts<Shared> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let principal = crate::access::operator(parts, &state.security).await?;
        Ok(Operator(principal.login().map(str::to_owned)))
    }
}

impl From<OperationsError> for ApiError {
    fn from(error: OperationsError) -> Self {
        let detail = error.to_string();
        match error {
            OperationsError::NotFound(_) => ApiError::not_found("scavenge-not-found", detail),
            OperationsError::InvalidArgument(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-scavenge", detail)
            }
            OperationsError::Unsupported(_) => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "scavenge-unsupported", detail)
            }
            OperationsError::Store(store) => store.into(),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail),
        }
    }
}

/// What starts a scavenge; every field is optional.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ScavengeIn {
    /// Share of the time the scavenge works, 1–100 (default 100).
    #[serde(default)]
    throttle_percent: Option<u8>,
    /// First segment looked at (KurrentDB's `startFromChunk`; default 0).
    #[serde(default)]
    start_from_segment: Option<u64>,
    /// Accepted for KurrentDB's `threads` (at least 1); segments are scavenged one at a
    /// time.
    #[serde(default)]
    threads: Option<u32>,
}

/// A start's answer: the run started, or the one already under way.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StartedOut {
    id: String,
    /// `started`, or `in_progress` when another run was under way (its id).
    result: &'static str,
}

/// The run under way, the last finished (latest first), and automatic scavenging.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ScavengesOut {
    /// Whether the store behind can scavenge at all.
    supported: bool,
    #[schema(value_type = Option<Object>)]
    current: Option<JobStatus>,
    #[schema(value_type = Vec<Object>)]
    history: Vec<JobStatus>,
    #[schema(value_type = Option<Object>)]
    automatic: Option<AutoStatus>,
}

/// Starts a scavenge (or answers the one under way, 200).
#[utoipa::path(
    post,
    path = "/v1/admin/scavenges",
    request_body(content = ScavengeIn, content_type = "application/json", description = "optional: throttle_percent, start_from_segment, threads"),
    responses(
        (status = 202, description = "started", body = StartedOut),
        (status = 200, description = "another scavenge is under way: its id", body = StartedOut),
        (status = 400, description = "a throttle outside 1–100, no threads", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "this store cannot scavenge", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "operations"
)]
async fn start(
    State(state): State<Shared>,
    Operator(login): Operator,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(&headers, body, &state.options).await?;
    let input: ScavengeIn = if body.is_empty() {
        ScavengeIn::default()
    } else {
        require_json(&headers)?;
        parse_json(&body)?
    };
    let request = ScavengeRequest {
        throttle_percent: input.throttle_percent.unwrap_or(100),
        start_from_segment: input.start_from_segment.unwrap_or(0),
        threads: input.threads.unwrap_or(1),
        trigger: Trigger::Manual,
        requested_by: login,
    };
    Ok(match state.operations.scavenges().start(request)? {
        StartOutcome::Started(id) => (
            StatusCode::ACCEPTED,
            [(header::LOCATION, format!("/v1/admin/scavenges/{id}"))],
            Json(StartedOut {
                id,
                result: "started",
            }),
        )
            .into_response(),
        StartOutcome::InProgress(id) => (
            StatusCode::OK,
            [(header::LOCATION, format!("/v1/admin/scavenges/{id}"))],
            Json(StartedOut {
                id,
                result: "in_progress",
            }),
        )
            .into_response(),
    })
}

/// The scavenge under way with its progress, the last ones finished, and automatic
/// scavenging's schedule and decisions.
#[utoipa::path(
    get,
    path = "/v1/admin/scavenges",
    responses((status = 200, description = "current and recent scavenges", body = ScavengesOut)),
    tag = "operations"
)]
async fn list(State(state): State<Shared>, _operator: Operator) -> Json<ScavengesOut> {
    let jobs = state.operations.scavenges();
    Json(ScavengesOut {
        supported: jobs.can_scavenge(),
        current: jobs.current(),
        history: jobs.history(),
        automatic: jobs.auto_status(),
    })
}

/// One scavenge, under way or finished (`current`: the one under way).
#[utoipa::path(
    get,
    path = "/v1/admin/scavenges/{id}",
    params(("id" = String, Path, description = "scavenge id, or `current`")),
    responses(
        (status = 200, description = "the scavenge", body = Object),
        (status = 404, description = "no such scavenge", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "operations"
)]
async fn show(
    State(state): State<Shared>,
    Path(id): Path<String>,
    _operator: Operator,
) -> Result<Json<JobStatus>, ApiError> {
    let jobs = state.operations.scavenges();
    let found = if id == "current" {
        jobs.current()
    } else {
        jobs.get(&id)
    };
    found
        .map(Json)
        .ok_or_else(|| OperationsError::NotFound(id).into())
}

/// Stops a scavenge after the segment under way (`current`: the one under way).
#[utoipa::path(
    delete,
    path = "/v1/admin/scavenges/{id}",
    params(("id" = String, Path, description = "scavenge id, or `current`")),
    responses(
        (status = 202, description = "stopping", body = StartedOut),
        (status = 404, description = "no such scavenge under way", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "operations"
)]
async fn stop(
    State(state): State<Shared>,
    Path(id): Path<String>,
    _operator: Operator,
) -> Result<Response, ApiError> {
    let id = state.operations.scavenges().stop(&id)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(StartedOut {
            id,
            result: "stopping",
        }),
    )
        .into_response())
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(start, list, show, stop),
    components(schemas(ScavengeIn, StartedOut, ScavengesOut))
)]
pub(crate) struct ScavengesDoc;
