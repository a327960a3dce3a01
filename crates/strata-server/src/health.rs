//! HTTP/1.1 routes beside gRPC on the same port.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

/// `GET /health/live` answers 204 while the process serves, as the reference server does.
pub(crate) fn routes() -> Router {
    Router::new().route("/health/live", get(|| async { StatusCode::NO_CONTENT }))
}
