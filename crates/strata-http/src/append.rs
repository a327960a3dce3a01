//! `POST /v1/streams/{stream}`: append a batch with an expected revision.

use axum::Json;
use axum::body::Body;
use axum::extract::State;

use crate::extract::Path;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use strata_core::{ExpectedRevision, StreamName};

use crate::access::Access;
use crate::events::EventIn;
use crate::problem::{ApiError, Problem};
use crate::state::{AppState, parse_json, read_body, require_json};

/// What the writer expects the stream to be: `"any"`, `"no-stream"`, `"exists"`, or the
/// revision of its last event.
#[derive(Clone, Copy, Debug, utoipa::ToSchema)]
pub(crate) enum ExpectedIn {
    Revision(u64),
    #[schema(value_type = String)]
    Named(ExpectedName),
}

#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ExpectedName {
    Any,
    NoStream,
    Exists,
}

// By hand rather than `#[serde(untagged)]`, which buffers the value and tries each variant
// in turn: this is parsed on every append.
impl<'de> Deserialize<'de> for ExpectedIn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ExpectedIn;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str(r#"a revision, "any", "no-stream" or "exists""#)
            }

            fn visit_u64<E: serde::de::Error>(self, revision: u64) -> Result<ExpectedIn, E> {
                Ok(ExpectedIn::Revision(revision))
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<ExpectedIn, E> {
                match name {
                    "any" => Ok(ExpectedIn::Named(ExpectedName::Any)),
                    "no-stream" => Ok(ExpectedIn::Named(ExpectedName::NoStream)),
                    "exists" => Ok(ExpectedIn::Named(ExpectedName::Exists)),
                    _ => Err(E::unknown_variant(name, &["any", "no-stream", "exists"])),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl ExpectedIn {
    pub(crate) fn to_expected(self) -> ExpectedRevision {
        match self {
            ExpectedIn::Revision(revision) => ExpectedRevision::Exact(revision),
            ExpectedIn::Named(ExpectedName::Any) => ExpectedRevision::Any,
            ExpectedIn::Named(ExpectedName::NoStream) => ExpectedRevision::NoStream,
            ExpectedIn::Named(ExpectedName::Exists) => ExpectedRevision::StreamExists,
        }
    }
}

/// A batch to append atomically.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AppendIn {
    /// Default `"any"`.
    #[serde(default)]
    pub(crate) expected_revision: Option<ExpectedIn>,
    pub(crate) events: Vec<EventIn>,
}

/// Where the batch landed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppendOut {
    /// Revision of the batch's last event.
    pub(crate) revision: u64,
    /// Position of the batch's last event in `$all`.
    pub(crate) position: u64,
}

/// Appends events to a stream.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}",
    params(("stream" = String, Path, description = "stream name")),
    request_body(content = AppendIn, content_type = "application/json"),
    responses(
        (status = 200, description = "appended (or already appended, for re-sent ids)", body = AppendOut),
        (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "wrong expected revision; `actualRevision` says where the stream is", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "the stream is tombstoned", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "over a limit; `limit` names it", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not application/json", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "streams"
)]
pub(crate) async fn append(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AppendOut>, ApiError> {
    let stream = StreamName::new(&stream)?;
    access.write(&stream).await?;
    require_json(&headers)?;
    let body = read_body(&headers, body, &state.options).await?;
    let request: AppendIn = parse_json(&body)?;
    let expected = request
        .expected_revision
        .map_or(ExpectedRevision::Any, ExpectedIn::to_expected);
    let events = request
        .events
        .into_iter()
        .map(EventIn::into_proposed)
        .collect::<Result<Vec<_>, _>>()?;
    state.store.limits().check_append(&events)?;
    let result = state.store.append(&stream, expected, events).await?;
    Ok(Json(AppendOut {
        revision: result.current_revision.0,
        position: result.position.0,
    }))
}
