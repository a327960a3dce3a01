//! What every handler shares, and the router that mounts them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post, put};
use strata_core::EventStore;
use strata_persistent::PersistentSubscriptions;

use crate::consume::HttpConsumers;
use crate::metrics::Metrics;
use crate::problem::ApiError;

/// Largest request body the HTTP API reads by default (a JSON-encoded append).
pub const HTTP_BODY_BYTES_MAX_DEFAULT: usize = 32 * 1024 * 1024;

/// How long a request body may take to arrive by default.
pub const HTTP_BODY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// How the HTTP API serves.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// What `/info` names as the store (`engine`, `postgres`, ...).
    pub store_kind: String,
    /// Request bodies over this are refused 413 (before reading, when `Content-Length`
    /// says so).
    pub body_bytes_max: usize,
    /// How long a client may take to send a whole request body; a slower one is answered
    /// 408 and its connection closed.
    pub body_timeout: Duration,
    /// How often a streaming subscription sends a heartbeat when it has nothing else.
    pub heartbeat_interval: Duration,
    /// Items a subscription buffers for a slow client before its reader waits.
    pub subscription_buffer: usize,
    /// Catch-up subscriptions served over HTTP at once; one more is refused 429.
    pub subscriptions_max: usize,
    /// The KurrentDB version `/info` names (the one the gRPC front end speaks).
    pub kurrentdb_compatible_version: String,
    /// The node's place in its cluster, for `/info`; `None` is a single node (leader).
    pub leadership: Option<std::sync::Arc<strata_core::Leadership>>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            store_kind: "engine".to_owned(),
            body_bytes_max: HTTP_BODY_BYTES_MAX_DEFAULT,
            body_timeout: HTTP_BODY_TIMEOUT_DEFAULT,
            heartbeat_interval: Duration::from_secs(10),
            subscription_buffer: 1_024,
            subscriptions_max: 1_000,
            kurrentdb_compatible_version: "24.10.0".to_owned(),
            leadership: None,
        }
    }
}

/// The state behind every handler.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) persistent: Arc<PersistentSubscriptions>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) security: Arc<strata_auth::Security>,
    pub(crate) options: HttpOptions,
    pub(crate) consumers: HttpConsumers,
    pub(crate) subscriptions: Arc<tokio::sync::Semaphore>,
    pub(crate) started: Instant,
    /// The projections of the store, when this server runs them.
    pub(crate) projections: Option<Arc<strata_projections::ProjectionManager>>,
}

pub(crate) type AppState = Arc<Shared>;

/// The HTTP API over one store.
pub struct HttpApi {
    shared: Shared,
}

impl HttpApi {
    pub fn new(
        store: Arc<dyn EventStore>,
        persistent: Arc<PersistentSubscriptions>,
        metrics: Arc<Metrics>,
        options: HttpOptions,
    ) -> Self {
        let subscriptions = Arc::new(tokio::sync::Semaphore::new(options.subscriptions_max));
        Self {
            shared: Shared {
                security: strata_auth::Security::disabled(Arc::clone(&store)),
                store,
                consumers: HttpConsumers::new(Arc::clone(&persistent)),
                persistent,
                metrics,
                options,
                subscriptions,
                started: Instant::now(),
                projections: None,
            },
        }
    }

    /// Authenticates and authorizes every request with `security` (users and ACLs), as
    /// the gRPC front end does.
    pub fn with_security(mut self, security: Arc<strata_auth::Security>) -> Self {
        self.shared.security = security;
        self
    }

    /// Serves the projections `manager` runs at `/v1/projections` (and in the UI).
    pub fn with_projections(mut self, manager: Arc<strata_projections::ProjectionManager>) -> Self {
        self.shared.projections = Some(manager);
        self
    }

    /// Every route of the HTTP API. It has no fallback of its own, so it merges beside the
    /// gRPC services; give the merged router [`crate::fallback`].
    pub fn router(self) -> Router {
        let state: AppState = Arc::new(self.shared);
        Router::new()
            .route(
                "/v1/streams/{stream}",
                post(crate::append::append)
                    .get(crate::read::read_stream)
                    .delete(crate::delete::delete_stream),
            )
            .route(
                "/v1/streams/{stream}/metadata",
                get(crate::metadata::get_metadata).put(crate::metadata::set_metadata),
            )
            .route("/v1/all", get(crate::read::read_all))
            .route("/v1/dcb/append", post(crate::dcb::append))
            .route("/v1/dcb/read", post(crate::dcb::read))
            .route(
                "/v1/subscriptions/streams/{stream}",
                get(crate::subscribe::subscribe_stream),
            )
            .route(
                "/v1/subscriptions/all",
                get(crate::subscribe::subscribe_all),
            )
            .route(
                "/v1/subscriptions/categories/{category}",
                get(crate::subscribe::subscribe_category),
            )
            .route("/v1/persistent-subscriptions", get(crate::persistent::list))
            .route(
                "/v1/persistent-subscriptions/{stream}/{group}",
                put(crate::persistent::create)
                    .patch(crate::persistent::update)
                    .delete(crate::persistent::delete)
                    .get(crate::persistent::info),
            )
            .route(
                "/v1/persistent-subscriptions/{stream}/{group}/replay-parked",
                post(crate::persistent::replay_parked),
            )
            .route(
                "/v1/persistent-subscriptions/{stream}/{group}/messages",
                get(crate::consume::messages),
            )
            .route(
                "/v1/persistent-subscriptions/{stream}/{group}/ack",
                post(crate::consume::ack),
            )
            .route(
                "/v1/persistent-subscriptions/{stream}/{group}/nack",
                post(crate::consume::nack),
            )
            .route(
                "/streams/{stream}",
                post(crate::compat::append)
                    .get(crate::compat::read_head)
                    .delete(crate::compat::delete),
            )
            .route(
                "/streams/{stream}/incoming/{event_id}",
                post(crate::compat::append_incoming),
            )
            .route("/streams/{stream}/{event}", get(crate::compat::read_event))
            .route(
                "/streams/{stream}/{event}/{direction}/{count}",
                get(crate::compat::read_page),
            )
            .route("/health/live", get(crate::ops::live))
            .route("/health/ready", get(crate::ops::ready))
            .route("/info", get(crate::ops::info))
            .route("/ping", get(crate::ops::ping))
            .route("/stats", get(crate::ops::stats))
            .route("/metrics", get(crate::ops::metrics))
            .route("/.well-known/openapi", get(crate::openapi::serve))
            .route("/v1/projections", get(crate::projections::list))
            .route(
                "/v1/projections/{name}",
                put(crate::projections::create)
                    .get(crate::projections::info)
                    .delete(crate::projections::delete),
            )
            .route(
                "/v1/projections/{name}/query",
                put(crate::projections::update_query),
            )
            .route(
                "/v1/projections/{name}/state",
                get(crate::projections::state),
            )
            .route(
                "/v1/projections/{name}/result",
                get(crate::projections::result),
            )
            .route(
                "/v1/projections/{name}/{command}",
                post(crate::projections::command),
            )
            .route("/v1/users", get(crate::users::list))
            .route(
                "/v1/users/{login}",
                put(crate::users::create)
                    .get(crate::users::info)
                    .patch(crate::users::update)
                    .delete(crate::users::delete),
            )
            .route("/v1/users/{login}/{command}", post(crate::users::command))
            // The web UI (docs/UI.md).
            .route("/", get(crate::ui::index))
            .route("/ui/{file}", get(crate::ui::asset))
            .method_not_allowed_fallback(crate::problem::method_not_allowed)
            // Bodies are read by `read_body` under the configured limit.
            .layer(DefaultBodyLimit::disable())
            .layer(axum::middleware::from_fn(
                crate::problem::redirect_to_leader,
            ))
            .with_state(state)
    }
}

/// Reads a request body up to `options.body_bytes_max` bytes within `options.body_timeout`:
/// refused before reading when `Content-Length` is over the limit, as soon as the bytes read
/// pass it otherwise, and 408 (closing the connection) when the body is still incomplete at
/// the deadline, so a client trickling its body cannot hold a handler.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    options: &HttpOptions,
) -> Result<Bytes, ApiError> {
    let limit = options.body_bytes_max;
    let too_large = || {
        ApiError::too_large(
            limit as u64,
            "bytes",
            format!("the request body is over the limit of {limit} bytes (http body_bytes_max)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(options.body_timeout, axum::body::to_bytes(body, limit));
    let Ok(read) = read.await else {
        let timeout = options.body_timeout.as_millis();
        return Err(ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            format!("the request body did not arrive within {timeout} ms (http_body_timeout_ms)"),
        )
        .with_header("connection", "close"));
    };
    read.map_err(|error| {
        let length_limit = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if length_limit {
            too_large()
        } else {
            ApiError::bad_request(format!("cannot read the request body: {error}"))
        }
    })
}

/// Whether the request's `Content-Type` is `expected` (parameters ignored).
pub(crate) fn content_type_is(headers: &HeaderMap, expected: &[&str]) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|value| expected.iter().any(|wanted| *wanted == value))
}

/// Refuses a body whose `Content-Type` is not JSON.
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    if content_type_is(headers, &["application/json"]) {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "the request body must be application/json",
        ))
    }
}

/// Parses a JSON body into `T`, as a 400 problem naming what is wrong.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "malformed-json",
            format!("the request body is not valid: {error}"),
        )
    })
}

/// Whether the client asked for NDJSON.
pub(crate) fn wants_ndjson(headers: &HeaderMap) -> bool {
    accepts(headers, "application/x-ndjson")
}

pub(crate) fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.split(',').any(|part| {
                part.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case(media)
            })
        })
}
