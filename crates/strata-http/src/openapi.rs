//! The OpenAPI 3.1 document of the JSON API, generated from the handlers' annotations and
//! served at `/.well-known/openapi`.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Strata HTTP API", description = "Streams, the global log $all, subscriptions (NDJSON and server-sent events), persistent subscriptions and node operations. Errors are RFC 9457 problem details."),
    paths(
        crate::append::append,
        crate::read::read_stream,
        crate::read::read_all,
        crate::dcb::append,
        crate::dcb::read,
        crate::delete::delete_stream,
        crate::metadata::get_metadata,
        crate::metadata::set_metadata,
        crate::subscribe::subscribe_stream,
        crate::subscribe::subscribe_all,
        crate::subscribe::subscribe_category,
        crate::persistent::create,
        crate::persistent::update,
        crate::persistent::delete,
        crate::persistent::info,
        crate::persistent::list,
        crate::persistent::replay_parked,
        crate::consume::messages,
        crate::consume::ack,
        crate::consume::nack,
        crate::ops::live,
        crate::ops::ready,
        crate::ops::info,
        crate::ops::ping,
        crate::ops::stats,
        crate::ops::metrics,
        crate::projections::list,
        crate::projections::info,
        crate::projections::create,
        crate::projections::update_query,
        crate::projections::state,
        crate::projections::result,
        crate::projections::command,
        crate::projections::delete,
        crate::users::list,
        crate::users::info,
        crate::users::create,
        crate::users::update,
        crate::users::delete,
        crate::users::command,
    ),
    tags(
        (name = "streams", description = "append, read, delete, metadata"),
        (name = "dcb", description = "dynamic consistency boundaries: conditional appends and query reads (docs/DCB.md)"),
        (name = "subscriptions", description = "catch-up subscriptions as NDJSON or server-sent events"),
        (name = "persistent-subscriptions", description = "competing consumers with acks"),
        (name = "operations", description = "health, node information, statistics, metrics"),
        (name = "users", description = "users of a secure server (admins)"),
        (name = "projections", description = "JavaScript projections: create, query, state, result, enable, disable, reset, delete"),
    )
)]
struct ApiDoc;

/// The OpenAPI document, as JSON.
pub fn openapi_document() -> String {
    let mut document = ApiDoc::openapi();
    document.merge(<crate::connectors::ConnectorsDoc as OpenApi>::openapi());
    document.merge(<crate::scavenges::ScavengesDoc as OpenApi>::openapi());
    document.to_json().unwrap_or_else(|_| "{}".to_owned())
}

pub(crate) async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
}
