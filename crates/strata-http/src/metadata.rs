//! `GET` and `PUT /v1/streams/{stream}/metadata`: a stream's metadata (`$maxAge`,
//! `$maxCount`, `$tb`, `$cacheControl`, `$acl`, custom keys), as KurrentDB stores it.

use axum::Json;
use axum::body::Body;
use axum::extract::State;

use crate::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use strata_core::{ExpectedRevision, StreamMetadata, StreamName};

use crate::access::{Access, Operation};
use crate::append::AppendOut;
use crate::problem::{ApiError, Problem};
use crate::state::{AppState, parse_json, read_body, require_json};

/// A stream's metadata and the revision of `$$stream` that holds it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetadataOut {
    /// The metadata as KurrentDB's JSON (`$maxAge` seconds, `$maxCount`, `$tb`, `$acl`, ...).
    #[schema(value_type = Object)]
    metadata: Box<RawValue>,
    /// Revision of the metadata event; `null` when none was written.
    revision: Option<u64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SetMetadataQuery {
    /// Expected revision of `$$stream`: `any` (default), `no-stream`, `exists` or a number.
    expected_revision: Option<String>,
}

/// Parses `any`, `no-stream`, `exists` or a number.
pub(crate) fn parse_expected(text: Option<&str>) -> Result<ExpectedRevision, ApiError> {
    match text {
        None | Some("any") => Ok(ExpectedRevision::Any),
        Some("no-stream") => Ok(ExpectedRevision::NoStream),
        Some("exists") => Ok(ExpectedRevision::StreamExists),
        Some(number) => number.parse().map(ExpectedRevision::Exact).map_err(|_| {
            ApiError::bad_request(format!(
                "expectedRevision {number:?} is none of any, no-stream, exists or a revision"
            ))
        }),
    }
}

/// Reads a stream's metadata.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/metadata",
    params(("stream" = String, Path, description = "stream name")),
    responses(
        (status = 200, description = "the metadata (empty when none was written)", body = MetadataOut),
        (status = 400, description = "bad stream name", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "tombstoned", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "streams"
)]
pub(crate) async fn get_metadata(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    access: Access,
) -> Result<Json<MetadataOut>, ApiError> {
    let stream = StreamName::new(&stream)?;
    access
        .check(Operation::MetadataRead(stream.as_str()))
        .await?;
    let versioned = state.store.stream_metadata(&stream).await?;
    let json = String::from_utf8(versioned.metadata.to_json())
        .map_err(|_| ApiError::bad_request("stored metadata is not UTF-8"))?;
    let metadata = RawValue::from_string(json)
        .map_err(|error| ApiError::bad_request(format!("stored metadata is not JSON: {error}")))?;
    Ok(Json(MetadataOut {
        metadata,
        revision: versioned.revision.map(|revision| revision.0),
    }))
}

/// Replaces a stream's metadata.
#[utoipa::path(
    put,
    path = "/v1/streams/{stream}/metadata",
    params(("stream" = String, Path, description = "stream name"), SetMetadataQuery),
    request_body(content = Object, content_type = "application/json", description = "KurrentDB metadata JSON"),
    responses(
        (status = 200, description = "written to $$stream", body = AppendOut),
        (status = 400, description = "invalid metadata", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "wrong expected revision of $$stream", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "tombstoned", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not application/json", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "streams"
)]
pub(crate) async fn set_metadata(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    Query(query): Query<SetMetadataQuery>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let stream = StreamName::new(&stream)?;
    access
        .check(Operation::MetadataWrite(stream.as_str()))
        .await?;
    require_json(&headers)?;
    let expected = parse_expected(query.expected_revision.as_deref())?;
    let body = read_body(&headers, body, &state.options).await?;
    let _: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
    let metadata = StreamMetadata::from_json(&stream, &body)?;
    let result = state
        .store
        .set_stream_metadata(&stream, expected, &metadata)
        .await?;
    Ok(Json(AppendOut {
        revision: result.current_revision.0,
        position: result.position.0,
    })
    .into_response())
}
