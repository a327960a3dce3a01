//! The one error shape of the HTTP API: RFC 9457 `application/problem+json`, with a stable
//! `type` per kind of error. Every store, persistent-subscription and request error is
//! mapped here, once.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use strata_core::{Error as StoreError, StreamState};
use strata_persistent::Error as PersistentError;

/// Prefix of every problem `type`; the rest names the kind (`.../wrong-expected-revision`).
pub(crate) const PROBLEM_TYPE_PREFIX: &str = "https://strata.dev/problems/";

/// The body of an error answer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    /// A URI naming the kind of error; stable across versions.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) title: String,
    pub(crate) status: u16,
    pub(crate) detail: String,
    /// For a wrong expected revision: the stream's actual revision (`null` when it has no
    /// events).
    #[serde(rename = "actualRevision", skip_serializing_if = "Option::is_none")]
    pub(crate) actual_revision: Option<Option<u64>>,
    /// For a limit: the limit, in `limitUnit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limit: Option<u64>,
    #[serde(rename = "limitUnit", skip_serializing_if = "Option::is_none")]
    pub(crate) limit_unit: Option<String>,
    /// For `not-leader`: the cluster leader's advertised host and port, where the call
    /// belongs (the answer's `Location` names the same path there).
    #[serde(rename = "leaderHost", skip_serializing_if = "Option::is_none")]
    pub(crate) leader_host: Option<String>,
    #[serde(rename = "leaderPort", skip_serializing_if = "Option::is_none")]
    pub(crate) leader_port: Option<u16>,
}

/// Set on a `307 not-leader` answer: [`redirect_to_leader`] turns it into a `Location`.
#[derive(Clone, Debug)]
pub(crate) struct LeaderRedirect(pub(crate) strata_core::NodeAddress);

/// An error answer of the HTTP API.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    // Boxed: handlers return `Result<_, ApiError>` everywhere, and the error path is rare.
    pub(crate) problem: Box<Problem>,
    /// Extra headers (`WWW-Authenticate`, KurrentDB's `Kurrent-CurrentVersion`).
    pub(crate) headers: Box<HeaderMap>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            problem: Box::new(Problem {
                kind: format!("{PROBLEM_TYPE_PREFIX}{kind}"),
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                status: status.as_u16(),
                detail: detail.into(),
                actual_revision: None,
                limit: None,
                limit_unit: None,
                leader_host: None,
                leader_port: None,
            }),
            headers: Box::default(),
        }
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-request", detail)
    }

    pub(crate) fn not_found(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind, detail)
    }

    pub(crate) fn too_large(limit: u64, unit: &str, detail: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::PAYLOAD_TOO_LARGE, "limit-exceeded", detail);
        error.problem.limit = Some(limit);
        error.problem.limit_unit = Some(unit.to_owned());
        error
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }

    /// The problem as one JSON value (for the in-band `error` line of a subscription).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.problem).unwrap_or(serde_json::Value::Null)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem).unwrap_or_default();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        response.headers_mut().extend(*self.headers);
        if let (Some(host), Some(port)) = (&self.problem.leader_host, self.problem.leader_port)
            && self.status == StatusCode::TEMPORARY_REDIRECT
        {
            response
                .extensions_mut()
                .insert(LeaderRedirect(strata_core::NodeAddress {
                    host: host.clone(),
                    port,
                }));
        }
        response
    }
}

/// A leader-only call made to a cluster's follower, answered as KurrentDB's HTTP API answers
/// one (`Kurrent-RequireLeader`): `307 Temporary Redirect` to the same path on the leader,
/// whose address the problem also names. With no leader known yet: 503 `not-leader`.
fn not_leader(leader: Option<&strata_core::NodeAddress>, detail: String) -> ApiError {
    match leader {
        Some(leader) => {
            let mut api = ApiError::new(StatusCode::TEMPORARY_REDIRECT, "not-leader", detail);
            api.problem.leader_host = Some(leader.host.clone());
            api.problem.leader_port = Some(leader.port);
            api
        }
        None => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-leader", detail)
            .with_header("retry-after", "1"),
    }
}

/// Adds `Location` to a `307 not-leader` answer: the request's path and query on the
/// leader, as a network-path reference (`//host:port/path`), so the client keeps the
/// scheme (TLS or not) it used, as the nodes of one cluster serve alike.
pub(crate) async fn redirect_to_leader(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |path| path.as_str().to_owned(),
    );
    let mut response = next.run(request).await;
    if let Some(LeaderRedirect(leader)) = response.extensions_mut().remove::<LeaderRedirect>() {
        let host = if leader.host.contains(':') {
            format!("[{}]", leader.host)
        } else {
            leader.host
        };
        if let Ok(location) = HeaderValue::from_str(&format!("//{host}:{}{path}", leader.port)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    response
}

/// The revision a stream state shows a client: `None` for no stream.
pub(crate) fn state_revision(state: StreamState) -> Option<u64> {
    match state {
        StreamState::At(revision) => Some(revision.0),
        StreamState::NoStream | StreamState::Tombstoned => None,
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let detail = error.to_string();
        match &error {
            StoreError::WrongExpectedRevision { actual, .. } => {
                let mut api = Self::new(StatusCode::CONFLICT, "wrong-expected-revision", detail);
                api.problem.actual_revision = Some(state_revision(*actual));
                api
            }
            StoreError::StreamDeleted { .. } => {
                Self::new(StatusCode::GONE, "stream-tombstoned", detail)
            }
            StoreError::AppendConditionFailed { .. } => {
                Self::new(StatusCode::CONFLICT, "append-condition-failed", detail)
            }
            StoreError::Unsupported { .. } => {
                Self::new(StatusCode::NOT_IMPLEMENTED, "unsupported", detail)
            }
            StoreError::InvalidStreamName { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid-stream-name", detail)
            }
            StoreError::InvalidEventType { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid-event-type", detail)
            }
            StoreError::EventTooLarge { limit_bytes, .. } => {
                Self::too_large(*limit_bytes as u64, "bytes", detail)
            }
            StoreError::AppendTooLarge { limit, unit, .. } => {
                Self::too_large(*limit as u64, unit, detail)
            }
            StoreError::InvalidMetadata { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid-metadata", detail)
            }
            StoreError::InvalidFilter { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid-filter", detail)
            }
            StoreError::InvalidArgument { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid-argument", detail)
            }
            StoreError::NotLeader { leader } => not_leader(leader.as_ref(), detail),
            StoreError::Poisoned { .. } | StoreError::Closed => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", detail)
            }
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "store-error", detail),
        }
    }
}

impl From<PersistentError> for ApiError {
    fn from(error: PersistentError) -> Self {
        let detail = error.to_string();
        match error {
            PersistentError::GroupNotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "group-not-found", detail)
            }
            PersistentError::GroupExists { .. } => {
                Self::new(StatusCode::CONFLICT, "group-exists", detail)
            }
            PersistentError::MaximumSubscribersReached { .. } => {
                Self::new(StatusCode::CONFLICT, "maximum-subscribers-reached", detail)
            }
            PersistentError::Dropped { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "group-dropped", detail)
            }
            PersistentError::InvalidSettings { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid-group-settings", detail)
            }
            PersistentError::GroupLimitReached { max, .. } => {
                let mut api = Self::new(StatusCode::CONFLICT, "group-limit-reached", detail);
                api.problem.limit = Some(max as u64);
                api.problem.limit_unit = Some("groups".to_owned());
                api
            }
            PersistentError::Store(store) => store.into(),
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "persistent-error",
                detail,
            ),
        }
    }
}

/// Answers requests no route takes: gRPC calls get gRPC's `UNIMPLEMENTED` (as the gRPC
/// services' own fallback would), everything else a 404 problem.
pub async fn fallback(request: axum::extract::Request) -> Response {
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if is_grpc {
        return (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/grpc"),
                (header::HeaderName::from_static("grpc-status"), "12"),
            ],
        )
            .into_response();
    }
    ApiError::not_found(
        "not-found",
        format!("no resource at {}", request.uri().path()),
    )
    .into_response()
}

/// Answers a method a route does not take.
pub(crate) async fn method_not_allowed(request: axum::extract::Request) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response()
}
