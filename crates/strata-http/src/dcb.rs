//! Dynamic consistency boundaries (docs/DCB.md): `POST /v1/dcb/append` appends events to
//! one or more streams unless an event matching a query exists after a position;
//! `POST /v1/dcb/read` reads the events matching a query, forwards from a position.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use strata_core::{AppendCondition, AppendPart, ExpectedRevision, Position, Query, QueryItem};

use crate::access::Access;
use crate::append::ExpectedIn;
use crate::events::{EventIn, EventOut};
use crate::problem::{ApiError, Problem};
use crate::state::{AppState, parse_json, read_body, require_json};

/// Most events one read returns.
const READ_MAX_COUNT: usize = 4_096;
/// Events one read returns when `maxCount` is absent.
const READ_DEFAULT_COUNT: usize = 100;

/// An item of a query: events of one of `types` (any type when empty) that carry every
/// tag of `tags`. At least one type or tag.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct QueryItemIn {
    #[serde(default)]
    pub(crate) types: Vec<String>,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
}

/// A query: the events matching any of its items.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct QueryIn {
    pub(crate) items: Vec<QueryItemIn>,
}

impl QueryIn {
    fn into_query(self) -> Query {
        Query::new(
            self.items
                .into_iter()
                .map(|item| QueryItem::new(item.types, item.tags)),
        )
    }
}

/// The events for one stream.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StreamAppendIn {
    pub(crate) stream: String,
    /// Default `"any"`.
    #[serde(default)]
    pub(crate) expected_revision: Option<ExpectedIn>,
    pub(crate) events: Vec<EventIn>,
}

/// A conditional append.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DcbAppendIn {
    /// Fail if an event matching it exists after `after`.
    pub(crate) query: QueryIn,
    /// A position (the `lastPosition` of the read the decision was made on); absent or
    /// null: the whole log counts.
    #[serde(default)]
    pub(crate) after: Option<u64>,
    /// The streams to append to, all in one transaction.
    pub(crate) appends: Vec<StreamAppendIn>,
}

/// Where one stream's events landed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StreamAppendOut {
    pub(crate) stream: String,
    pub(crate) revision: u64,
    pub(crate) position: u64,
}

/// Where the append landed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DcbAppendOut {
    /// Position of the append's last event.
    pub(crate) position: u64,
    pub(crate) streams: Vec<StreamAppendOut>,
}

/// A read of the events matching a query.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DcbReadIn {
    pub(crate) query: QueryIn,
    /// Only events after this position; absent: from the start.
    #[serde(default)]
    pub(crate) after: Option<u64>,
    /// Default 100, at most 4096.
    #[serde(default)]
    pub(crate) max_count: Option<usize>,
}

/// The matching events, in log order.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DcbReadOut<'a> {
    pub(crate) events: Vec<EventOut<'a>>,
    /// Pass as `after` to a conditional append decided on these events (the last event's
    /// position, or the request's `after` when none matched).
    pub(crate) last_position: Option<u64>,
    /// True when `maxCount` stopped the read: read again after `lastPosition`.
    pub(crate) more: bool,
}

/// Appends unless an event matching the query exists after the position.
#[utoipa::path(
    post,
    path = "/v1/dcb/append",
    request_body(content = DcbAppendIn, content_type = "application/json"),
    responses(
        (status = 200, description = "appended (or already appended, for re-sent ids)", body = DcbAppendOut),
        (status = 400, description = "malformed request or query", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`append-condition-failed`: an event matching the query is after the position; or a wrong expected revision", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "over a limit", body = Problem, content_type = "application/problem+json"),
        (status = 501, description = "the store has no conditional appends", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "dcb"
)]
pub(crate) async fn append(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<DcbAppendOut>, ApiError> {
    require_json(&headers)?;
    let body = read_body(&headers, body, &state.options).await?;
    let request: DcbAppendIn = parse_json(&body)?;
    let mut parts = Vec::with_capacity(request.appends.len());
    for append in request.appends {
        let stream = strata_core::StreamName::new(&append.stream)?;
        let expected = append
            .expected_revision
            .map_or(ExpectedRevision::Any, ExpectedIn::to_expected);
        let events = append
            .events
            .into_iter()
            .map(EventIn::into_proposed)
            .collect::<Result<Vec<_>, _>>()?;
        parts.push(AppendPart::write(stream, expected, events));
    }
    let condition = AppendCondition::new(request.query.into_query(), request.after.map(Position));
    let result = access
        .store(&state)
        .append_conditional(parts, condition)
        .await?;
    Ok(Json(DcbAppendOut {
        position: result.position.0,
        streams: result
            .parts
            .into_iter()
            .map(|(stream, appended)| StreamAppendOut {
                stream: stream.as_str().to_owned(),
                revision: appended.current_revision.0,
                position: appended.position.0,
            })
            .collect(),
    }))
}

/// Reads the events matching a query, forwards from a position.
#[utoipa::path(
    post,
    path = "/v1/dcb/read",
    request_body(content = DcbReadIn, content_type = "application/json"),
    responses(
        (status = 200, description = "the matching events", body = DcbReadOut),
        (status = 400, description = "malformed request or query", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "dcb"
)]
pub(crate) async fn read(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    require_json(&headers)?;
    let body = read_body(&headers, body, &state.options).await?;
    let request: DcbReadIn = parse_json(&body)?;
    let max_count = request.max_count.unwrap_or(READ_DEFAULT_COUNT);
    if max_count == 0 || max_count > READ_MAX_COUNT {
        return Err(ApiError::bad_request(format!(
            "maxCount must be 1 to {READ_MAX_COUNT}"
        )));
    }
    let slice = access
        .store(&state)
        .read_query(
            &request.query.into_query(),
            request.after.map(Position),
            max_count,
        )
        .await?;
    let out = DcbReadOut {
        events: slice.events.iter().map(EventOut::new).collect(),
        last_position: slice.last_position.map(|position| position.0),
        more: slice.more,
    };
    Ok(axum::response::IntoResponse::into_response(Json(out)))
}
