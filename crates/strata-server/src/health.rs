//! HTTP/1.1 routes beside gRPC on the same port: liveness and what this node is.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// `GET /health/live` answers 204 while the process serves, as the reference server does.
/// `GET /info` says what this node is: JSON with the reference server's `dbVersion` and
/// `esVersion` (the KurrentDB version whose protocol Strata implements, as gRPC clients
/// are told), `state`, and Strata's own `strataVersion` and `store` (`engine`,
/// `postgres`, ...).
pub(crate) fn routes(store_kind: &str) -> Router {
    let info = info_json(store_kind);
    Router::new()
        .route("/health/live", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/info",
            get(move || {
                let info = info.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], info).into_response() }
            }),
        )
}

pub(crate) fn info_json(store_kind: &str) -> String {
    serde_json::json!({
        "dbVersion": strata_grpc::KURRENTDB_COMPATIBLE_VERSION,
        "esVersion": strata_grpc::KURRENTDB_COMPATIBLE_VERSION,
        "state": "leader",
        "strataVersion": strata_grpc::STRATA_VERSION,
        "store": store_kind,
    })
    .to_string()
}
