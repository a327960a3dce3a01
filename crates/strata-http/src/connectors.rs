//! Connector management over HTTP (docs/CONNECTORS.md, *Management over HTTP*): list,
//! create, show (state, position, lag, last error, counters), start, stop, reset, update
//! settings and delete, in KurrentDB's `/connectors/{id}` shape. Every route needs the
//! `Operations` right (`$admins`, `$ops`); definitions come back with secrets as `***`.
//!
//! The routes have their own state (the node's [`Connectors`]), so they are a router of
//! their own, merged beside [`crate::HttpApi::router`] by whoever runs the connectors.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use strata_auth::Security;
use strata_connectors::{
    ConnectorDefinition, ConnectorInfo, ConnectorSettings, Connectors, Error as ConnectorError,
    StartFrom,
};

use crate::extract::Path;
use crate::metrics::Metrics;
use crate::problem::{ApiError, Problem};
use crate::state::{HttpOptions, parse_json, read_body, require_json};

struct ConnectorsState {
    /// The node's connectors while it runs them (a cluster's followers do not).
    connectors: watch::Receiver<Option<Arc<Connectors>>>,
    security: Arc<Security>,
    options: HttpOptions,
}

impl ConnectorsState {
    /// The running connectors, or 503 on a node that does not run them.
    fn current(&self) -> Result<Arc<Connectors>, ApiError> {
        self.connectors.borrow().clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-leader",
                "connectors run on the cluster's leader: manage them there",
            )
        })
    }
}

type Shared = Arc<ConnectorsState>;

/// The connector management routes over the connectors `connectors` holds (none on a
/// node that does not run them: 503), checked with `security` (pass
/// [`Security::disabled`] for an insecure node). Merge the result beside the HTTP API.
pub fn connectors_router(
    connectors: watch::Receiver<Option<Arc<Connectors>>>,
    security: Arc<Security>,
    options: HttpOptions,
) -> axum::Router {
    let state = Arc::new(ConnectorsState {
        connectors,
        security,
        options,
    });
    axum::Router::new()
        .route("/connectors", get(list).post(create))
        .route(
            "/connectors/{id}",
            get(show).post(create_named).delete(delete),
        )
        .route("/connectors/{id}/start", post(start))
        .route("/connectors/{id}/stop", post(stop))
        .route("/connectors/{id}/reset", post(reset))
        .route("/connectors/{id}/settings", put(update_settings))
        .route("/connectors/{id}/transform", put(update_transform))
        .method_not_allowed_fallback(crate::problem::method_not_allowed)
        .with_state(state)
}

/// Refreshes the per-connector metrics of `metrics` from `connectors` every `every`, until
/// the connectors are dropped. The scrape itself cannot wait for the connectors (it is
/// synchronous), so the figures are at most `every` old.
pub fn spawn_connector_metrics(
    connectors: watch::Receiver<Option<Arc<Connectors>>>,
    metrics: Arc<Metrics>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if connectors.has_changed().is_err() {
                return;
            }
            let Some(connectors) = connectors.borrow().clone() else {
                metrics.set_connectors(&[]);
                continue;
            };
            match connectors.list().await {
                Ok(infos) => metrics.set_connectors(&infos),
                Err(error) => tracing::debug!(%error, "connector metrics not refreshed"),
            }
        }
    })
}

/// A caller allowed to manage connectors.
struct Operator;

impl FromRequestParts<Shared> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        crate::access::operator(parts, &state.security).await?;
        Ok(Operator)
    }
}

impl From<ConnectorError> for ApiError {
    fn from(error: ConnectorError) -> Self {
        let detail = error.to_string();
        match error {
            ConnectorError::NotFound { .. } => ApiError::not_found("connector-not-found", detail),
            ConnectorError::Exists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "connector-exists", detail)
            }
            ConnectorError::InvalidDefinition { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-connector", detail)
            }
            ConnectorError::SinkUnreachable { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "sink-unreachable", detail)
            }
            ConnectorError::Store(store) => store.into(),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail),
        }
    }
}

async fn json_body(state: &Shared, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    let body = read_body(headers, body, &state.options).await?;
    if !body.is_empty() {
        require_json(headers)?;
    }
    Ok(body.to_vec())
}

fn definition(body: &[u8], id: Option<&str>) -> Result<ConnectorDefinition, ApiError> {
    let mut value: serde_json::Value = parse_json(body)?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the connector definition must be a JSON object"))?;
    if let Some(id) = id {
        match object.get("id") {
            None => {
                object.insert("id".to_owned(), serde_json::Value::String(id.to_owned()));
            }
            Some(serde_json::Value::String(named)) if named == id => {}
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "the body's id differs from the path's {id:?}; leave it out"
                )));
            }
        }
    }
    Ok(ConnectorDefinition::from_json(&value.to_string())?)
}

fn created(info: ConnectorInfo) -> Response {
    let location = format!("/connectors/{}", info.id);
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(info),
    )
        .into_response()
}

/// Every connector with its state, position, lag, last error and counters.
#[utoipa::path(
    get,
    path = "/connectors",
    responses(
        (status = 200, description = "the connectors, by id; secrets as ***", body = [Object]),
        (status = 401, description = "not logged in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin or operator", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "connectors"
)]
async fn list(
    State(state): State<Shared>,
    _operator: Operator,
) -> Result<Json<Vec<ConnectorInfo>>, ApiError> {
    Ok(Json(state.current()?.list().await?))
}

/// Creates and starts a connector (its definition names its `id`); the sink must answer.
#[utoipa::path(
    post,
    path = "/connectors",
    request_body(content = Object, content_type = "application/json", description = "a connector definition: id, source, sink, settings (docs/CONNECTORS.md)"),
    responses(
        (status = 201, description = "created and started", body = Object),
        (status = 400, description = "an invalid definition", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the id exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the sink does not answer", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "connectors"
)]
async fn create(
    State(state): State<Shared>,
    _operator: Operator,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = json_body(&state, &headers, body).await?;
    let definition = definition(&body, None)?;
    Ok(created(state.current()?.create(definition).await?))
}

/// Creates and starts connector `id` (KurrentDB's shape; the body's `id` may be left out).
#[utoipa::path(
    post,
    path = "/connectors/{id}",
    params(("id" = String, Path, description = "connector id")),
    request_body(content = Object, content_type = "application/json", description = "source, sink, settings"),
    responses(
        (status = 201, description = "created and started", body = Object),
        (status = 400, description = "an invalid definition", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the id exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the sink does not answer", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "connectors"
)]
async fn create_named(
    State(state): State<Shared>,
    Path(id): Path<String>,
    _operator: Operator,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = json_body(&state, &headers, body).await?;
    let definition = definition(&body, Some(&id))?;
    Ok(created(state.current()?.create(definition).await?))
}

/// One connector: state, position, checkpoint, lag in events and seconds, last error,
/// counters and its definition (secrets as `***`).
#[utoipa::path(
    get,
    path = "/connectors/{id}",
    params(("id" = String, Path, description = "connector id")),
    responses(
        (status = 200, description = "the connector", body = Object),
        (status = 404, description = "no such connector", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "connectors"
)]
async fn show(
    State(state): State<Shared>,
    Path(id): Path<String>,
    _operator: Operator,
) -> Result<Json<ConnectorInfo>, ApiError> {
    Ok(Json(state.current()?.show(&id).await?))
}

/// Stops and deletes a connector and its checkpoint (dead letters stay).
#[utoipa::path(
    delete,
    path = "/connectors/{id}",
    params(("id" = String, Path, description = "connector id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such connector", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "connectors"
)]
async fn delete(
    State(state): State<Shared>,
    Path(id): Path<String>,
    _operator: Operator,
) -> Result<StatusCode, ApiError> {
    state.current()?.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a stopped connector from its checkpoint.
#[utoipa::path(
    post,
    path = "/connectors/{id}/start",
    params(("id" = String, Path, description = "connector id")),
    responses(
        (status = 204, description = "started"),
        (status = 404, description = "no such connector", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "connectors"
)]
async fn start(
    State(state): State<Shared>,
    Path(id): Path<String>,
    _operator: Operator,
) -> Result<StatusCode, ApiError> {
    state.current()?.start(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stops a connector after its last checkpoint.
#[utoipa::path(
    post,
    path = "/connectors/{id}/stop",
    params(("id" = String, Path, description = "connector id")),
    responses(
        (status = 204, description = "stopped"),
        (status = 404, description = "no such connector", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "connectors"
)]
async fn stop(
    State(state): State<Shared>,
    Path(id): Path<String>,
    _operator: Operator,
) -> Result<StatusCode, ApiError> {
    state.current()?.stop(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a reset puts a connector.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResetIn {
    /// `"start"` (default), `"end"`, or `{"after": n}` (a position; a revision for a
    /// stream source).
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    from: Option<StartFrom>,
}

/// Moves a connector's checkpoint (to the start without a body); a running connector
/// restarts there.
#[utoipa::path(
    post,
    path = "/connectors/{id}/reset",
    params(("id" = String, Path, description = "connector id")),
    request_body(content = Option<ResetIn>, content_type = "application/json"),
    responses(
        (status = 204, description = "reset"),
        (status = 400, description = "an invalid place", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such connector", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "connectors"
)]
async fn reset(
    State(state): State<Shared>,
    Path(id): Path<String>,
    _operator: Operator,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let body = json_body(&state, &headers, body).await?;
    let reset: ResetIn = if body.is_empty() {
        ResetIn::default()
    } else {
        parse_json(&body)?
    };
    state
        .current()?
        .reset(&id, reset.from.unwrap_or(StartFrom::Start))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a connector's settings (fields left out take their defaults); a running
/// connector restarts with them.
#[utoipa::path(
    put,
    path = "/connectors/{id}/settings",
    params(("id" = String, Path, description = "connector id")),
    request_body(content = Object, content_type = "application/json", description = "start_from, batch_events_max, buffer_events, checkpoint_interval_events, checkpoint_interval_ms, retry_initial_ms, retry_max_ms"),
    responses(
        (status = 204, description = "updated"),
        (status = 400, description = "invalid settings", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such connector", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "connectors"
)]
async fn update_settings(
    State(state): State<Shared>,
    Path(id): Path<String>,
    _operator: Operator,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let body = json_body(&state, &headers, body).await?;
    if body.is_empty() {
        return Err(ApiError::bad_request("the settings are missing"));
    }
    let settings: ConnectorSettings = parse_json(&body)?;
    state.current()?.update_settings(&id, settings).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A connector's new transform.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TransformIn {
    /// JavaScript: a function from one event to one message (docs/CONNECTORS.md); `null`
    /// removes the transform.
    transform: Option<String>,
}

/// Replaces (or, with `{"transform": null}`, removes) a connector's JavaScript transform; a
/// transform that does not compile is refused; a running connector restarts with it from
/// its checkpoint.
#[utoipa::path(
    put,
    path = "/connectors/{id}/transform",
    params(("id" = String, Path, description = "connector id")),
    request_body(content = TransformIn, content_type = "application/json"),
    responses(
        (status = 204, description = "updated"),
        (status = 400, description = "the transform does not compile", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such connector", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "connectors"
)]
async fn update_transform(
    State(state): State<Shared>,
    Path(id): Path<String>,
    _operator: Operator,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let body = json_body(&state, &headers, body).await?;
    if body.is_empty() {
        return Err(ApiError::bad_request("the transform is missing"));
    }
    let update: TransformIn = parse_json(&body)?;
    state
        .current()?
        .update_transform(&id, update.transform)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI paths of the connector routes, merged into the served document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list,
        create,
        create_named,
        show,
        delete,
        start,
        stop,
        reset,
        update_settings,
        update_transform
    ),
    tags((name = "connectors", description = "publish the log to NATS JetStream, RabbitMQ, HTTP endpoints"))
)]
pub(crate) struct ConnectorsDoc;
