//! Operations endpoints: liveness, readiness, what this node is, statistics, metrics.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::access::{Access, Operation};
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// The version of Strata.
const STRATA_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Answers 204 while the process serves.
#[utoipa::path(get, path = "/health/live", responses((status = 204, description = "serving")), tag = "operations")]
pub(crate) async fn live() -> StatusCode {
    StatusCode::NO_CONTENT
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// Why not ready, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Answers 200 while the store is open and accepts writes, 503 otherwise.
#[utoipa::path(
    get,
    path = "/health/ready",
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "the store is closed or refuses writes", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "operations"
)]
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let unavailable =
        |reason: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", reason);
    state
        .store
        .last_position()
        .await
        .map_err(|error| unavailable(format!("the store cannot be read: {error}")))?;
    if !state.metrics.writable.load(Ordering::Relaxed) {
        return Err(unavailable(
            "the store refused the last append until it is reopened".to_owned(),
        ));
    }
    Ok(Json(Readiness {
        status: "ready",
        reason: None,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Info {
    /// The KurrentDB version whose protocol this node speaks.
    db_version: String,
    es_version: String,
    /// `leader` or `follower` (both accept appends; only the leader runs persistent groups,
    /// projections and connectors).
    state: &'static str,
    /// In a cluster: the leadership term, and where the leader is.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<serde_json::Value>,
    strata_version: &'static str,
    /// `engine`, `postgres`, ...
    store: String,
    features: Vec<&'static str>,
}

/// What this node is.
#[utoipa::path(get, path = "/info", responses((status = 200, description = "this node", body = Info)), tag = "operations")]
pub(crate) async fn info(State(state): State<AppState>) -> Json<Info> {
    let mut features = vec![
        "grpc",
        "http-api",
        "sse",
        "ndjson",
        "persistent-subscriptions",
        "metrics",
        "openapi",
        "ui",
    ];
    if state.projections.is_some() {
        features.push("projections");
    }
    if state.security.is_enabled() {
        features.push("security");
        features.push("users");
    }
    Json(Info {
        db_version: state.options.kurrentdb_compatible_version.clone(),
        es_version: state.options.kurrentdb_compatible_version.clone(),
        state: state
            .options
            .leadership
            .as_ref()
            .map_or("leader", |leadership| leadership.view().role.as_str()),
        cluster: state.options.leadership.as_ref().map(|leadership| {
            let view = leadership.view();
            serde_json::json!({
                "nodeId": view.node_id.to_string(),
                "epoch": view.epoch,
                "leader": view.leader.map(|leader| format!("{}:{}", leader.host, leader.port)),
                "members": view.members.len(),
            })
        }),
        strata_version: STRATA_VERSION,
        store: state.options.store_kind.clone(),
        features,
    })
}

/// Answers the reference server's ping.
#[utoipa::path(get, path = "/ping", responses((status = 200, description = "pong", body = Object)), tag = "operations")]
pub(crate) async fn ping() -> Json<serde_json::Value> {
    Json(serde_json::json!({"text": "Ping request successfully handled"}))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Stats {
    uptime_seconds: u64,
    /// Position of the last event in `$all` (`null` for an empty store).
    last_position: Option<u64>,
    events_written: u64,
    events_read: u64,
    persistent_subscription_groups: usize,
    http_subscriptions: usize,
}

/// Node statistics.
#[utoipa::path(
    get,
    path = "/stats",
    responses(
        (status = 200, description = "statistics", body = Stats),
        (status = 503, description = "the store cannot be read", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "operations"
)]
pub(crate) async fn stats(
    State(state): State<AppState>,
    access: Access,
) -> Result<Json<Stats>, ApiError> {
    access.check(Operation::Statistics).await?;
    let last_position = state
        .store
        .last_position()
        .await?
        .map(|position| position.0);
    let groups = state.persistent.list(None).await?;
    Ok(Json(Stats {
        uptime_seconds: state.started.elapsed().as_secs(),
        last_position,
        events_written: state.metrics.io_events("written"),
        events_read: state.metrics.io_events("read"),
        persistent_subscription_groups: groups.len(),
        http_subscriptions: state.options.subscriptions_max
            - state.subscriptions.available_permits(),
    }))
}

/// The metrics in the Prometheus (OpenMetrics) text format.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "metrics", body = String, content_type = "application/openmetrics-text")),
    tag = "operations"
)]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    access: Access,
) -> Result<Response, ApiError> {
    access.check(Operation::Statistics).await?;
    if let Ok(groups) = state.persistent.list(None).await {
        state.metrics.set_persistent(&groups);
    }
    let log_end = *state.store.watch_log_end().borrow();
    state.metrics.set_subscription_lag(log_end);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response())
}
