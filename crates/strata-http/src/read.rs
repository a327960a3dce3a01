//! `GET /v1/streams/{stream}` and `GET /v1/all`: pages as JSON, or every event asked for as
//! NDJSON (one event per line, read page by page while the body is sent).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;

use crate::extract::{Path, Query};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use strata_core::{
    Direction, EventFilter, EventStore, FilterTarget, Position, ReadAllOptions, ReadFrom,
    ReadStreamOptions, RecordedEvent, Revision, StreamName, StreamSlice,
};

use crate::access::Access;
use crate::events::{ResolvedOut, flag, resolve, write_event};
use crate::problem::{ApiError, Problem};
use crate::state::{AppState, wants_ndjson};
use strata_core::system_streams::ResolvedEvent;

/// Most events in one JSON page.
pub(crate) const PAGE_EVENTS_MAX: u64 = 4_096;
/// Events in a page when the request names no count.
const PAGE_EVENTS_DEFAULT: u64 = 100;
/// Events read from the store per step of an NDJSON answer.
const NDJSON_STEP_EVENTS: usize = 1_024;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamReadQuery {
    /// `forwards` (default) or `backwards`.
    direction: Option<String>,
    /// `start`, `end`, or a revision (inclusive). Default: the first event in the
    /// direction read.
    from: Option<String>,
    /// Events to read (default 100; at most 4096 for a JSON page, unbounded for NDJSON).
    count: Option<u64>,
    /// `true` shows each link (`$>`) as the event it points at, with the link under `link`.
    resolve_links: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AllReadQuery {
    /// `forwards` (default) or `backwards`.
    direction: Option<String>,
    /// `start`, `end`, or a position (forwards inclusive; backwards, events before it).
    from: Option<String>,
    /// Events to read (default 100; at most 4096 for a JSON page, unbounded for NDJSON).
    count: Option<u64>,
    /// `true` shows each link (`$>`) as the event it points at, with the link under `link`.
    resolve_links: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    filter: FilterQuery,
}

/// The filters of `$all` (as gRPC's): at most one of them.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct FilterQuery {
    /// Comma-separated stream-name prefixes.
    pub(crate) stream_prefix: Option<String>,
    /// A regex on the stream name.
    pub(crate) stream_regex: Option<String>,
    /// Comma-separated event-type prefixes.
    pub(crate) event_type_prefix: Option<String>,
    /// A regex on the event type.
    pub(crate) event_type_regex: Option<String>,
    /// `true` leaves out events whose type starts with `$`.
    pub(crate) exclude_system_events: Option<String>,
}

impl FilterQuery {
    pub(crate) fn to_filter(&self) -> Result<Option<EventFilter>, ApiError> {
        let split = |list: &str| list.split(',').map(str::to_owned).collect::<Vec<_>>();
        let mut filters = Vec::new();
        if let Some(prefixes) = &self.stream_prefix {
            filters.push(EventFilter::prefixes(
                FilterTarget::StreamName,
                split(prefixes),
            )?);
        }
        if let Some(pattern) = &self.stream_regex {
            filters.push(EventFilter::regex(FilterTarget::StreamName, pattern)?);
        }
        if let Some(prefixes) = &self.event_type_prefix {
            filters.push(EventFilter::prefixes(
                FilterTarget::EventType,
                split(prefixes),
            )?);
        }
        if let Some(pattern) = &self.event_type_regex {
            filters.push(EventFilter::regex(FilterTarget::EventType, pattern)?);
        }
        match self.exclude_system_events.as_deref() {
            None | Some("false") => {}
            Some("true") => filters.push(EventFilter::exclude_system_events()),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "excludeSystemEvents {other:?} is neither true nor false"
                )));
            }
        }
        if filters.len() > 1 {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid-filter",
                "give at most one filter (streamPrefix, streamRegex, eventTypePrefix, eventTypeRegex, excludeSystemEvents)",
            ));
        }
        Ok(filters.pop())
    }
}

/// A page of a stream.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StreamPage<'a> {
    events: Vec<ResolvedOut<'a>>,
    /// The stream's last revision.
    last_revision: u64,
    /// Where the next page in the same direction starts; `null` at the end.
    next_revision: Option<u64>,
}

/// A page of `$all`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AllPage<'a> {
    events: Vec<ResolvedOut<'a>>,
    /// Where the next page in the same direction starts.
    next_position: u64,
    /// True when the read reached the end of the log.
    is_end: bool,
}

pub(crate) fn parse_direction(direction: Option<&str>) -> Result<Direction, ApiError> {
    match direction {
        None | Some("forwards") => Ok(Direction::Forwards),
        Some("backwards") => Ok(Direction::Backwards),
        Some(other) => Err(ApiError::bad_request(format!(
            "direction {other:?} is neither forwards nor backwards"
        ))),
    }
}

/// Where a read starts; by default, the first event in the direction read.
pub(crate) fn parse_from(
    from: Option<&str>,
    direction: Direction,
) -> Result<ReadFrom<u64>, ApiError> {
    match from {
        None if direction == Direction::Backwards => Ok(ReadFrom::End),
        None | Some("start") => Ok(ReadFrom::Start),
        Some("end") => Ok(ReadFrom::End),
        Some(number) => number.parse().map(ReadFrom::At).map_err(|_| {
            ApiError::bad_request(format!(
                "from {number:?} is neither start, end nor a number"
            ))
        }),
    }
}

fn page_count(count: Option<u64>, ndjson: bool) -> Result<u64, ApiError> {
    let count = count.unwrap_or(PAGE_EVENTS_DEFAULT);
    if !ndjson && count > PAGE_EVENTS_MAX {
        return Err(ApiError::too_large(
            PAGE_EVENTS_MAX,
            "events",
            format!(
                "a JSON page holds at most {PAGE_EVENTS_MAX} events; ask for NDJSON to read more"
            ),
        ));
    }
    Ok(count)
}

/// Reads the events of a stream.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}",
    params(("stream" = String, Path, description = "stream name"), StreamReadQuery),
    responses(
        (status = 200, description = "a page (JSON) or the events (NDJSON)", content((StreamPage = "application/json"), (String = "application/x-ndjson"))),
        (status = 400, description = "bad query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such stream", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "tombstoned", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "streams"
)]
pub(crate) async fn read_stream(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    Query(query): Query<StreamReadQuery>,
    access: Access,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let stream = StreamName::new(&stream)?;
    access.read(&stream).await?;
    let ndjson = wants_ndjson(&headers);
    let direction = parse_direction(query.direction.as_deref())?;
    let from = parse_from(query.from.as_deref(), direction)?;
    let count = page_count(query.count, ndjson)?;
    // Links resolve as the caller may read: a target it may not read is left out.
    let resolver =
        flag("resolveLinks", query.resolve_links.as_deref())?.then(|| access.store(&state));
    let options = ReadStreamOptions {
        direction,
        from: match from {
            ReadFrom::Start => ReadFrom::Start,
            ReadFrom::End => ReadFrom::End,
            ReadFrom::At(revision) => ReadFrom::At(Revision(revision)),
        },
        max_count: if ndjson {
            NDJSON_STEP_EVENTS.min(count as usize)
        } else {
            count as usize
        },
    };
    let first = state.store.read_stream(&stream, options).await?;
    let StreamSlice::Found {
        events,
        last_revision,
    } = first
    else {
        return Err(ApiError::not_found(
            "stream-not-found",
            format!("stream {stream} has no events"),
        ));
    };
    if ndjson {
        return Ok(ndjson_stream(
            state, resolver, stream, options, count, events,
        ));
    }
    let next_revision = next_revision(direction, &events, count, last_revision.0);
    let events = resolve_with(resolver.as_ref(), events).await?;
    let page = StreamPage {
        events: events.iter().map(ResolvedOut::new).collect(),
        last_revision: last_revision.0,
        next_revision,
    };
    Ok(Json(page).into_response())
}

fn next_revision(
    direction: Direction,
    events: &[RecordedEvent],
    count: u64,
    last: u64,
) -> Option<u64> {
    let read = events.last()?;
    if (events.len() as u64) < count {
        return None;
    }
    match direction {
        Direction::Forwards => (read.revision.0 < last).then(|| read.revision.0 + 1),
        Direction::Backwards => read.revision.0.checked_sub(1),
    }
}

fn ndjson_response(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// `events` with their links resolved through `resolver`, when there is one.
async fn resolve_with(
    resolver: Option<&Arc<dyn EventStore>>,
    events: Vec<RecordedEvent>,
) -> strata_core::Result<Vec<ResolvedEvent>> {
    match resolver {
        Some(store) => resolve(&**store, events, true).await,
        None => Ok(events.into_iter().map(ResolvedEvent::plain).collect()),
    }
}

fn ndjson_lines(events: &[ResolvedEvent]) -> Bytes {
    let mut out = Vec::with_capacity(events.len() * 256);
    for event in events {
        write_event(&mut out, event);
        out.push(b'\n');
    }
    Bytes::from(out)
}

/// Sends `first` and then reads on, page by page, until `count` events were sent or the
/// stream ends.
fn ndjson_stream(
    state: AppState,
    resolver: Option<Arc<dyn EventStore>>,
    stream: StreamName,
    options: ReadStreamOptions,
    count: u64,
    first: Vec<RecordedEvent>,
) -> Response {
    struct Cursor {
        page: Option<Vec<RecordedEvent>>,
        options: ReadStreamOptions,
        sent: u64,
    }
    let cursor = Cursor {
        page: Some(first),
        options,
        sent: 0,
    };
    let pages = futures::stream::unfold(cursor, move |mut cursor| {
        let (state, stream, resolver) = (state.clone(), stream.clone(), resolver.clone());
        async move {
            let events = match cursor.page.take() {
                Some(events) => events,
                None => {
                    let remaining = count.saturating_sub(cursor.sent);
                    if remaining == 0 {
                        return None;
                    }
                    cursor.options.max_count = NDJSON_STEP_EVENTS.min(remaining as usize);
                    match state.store.read_stream(&stream, cursor.options).await {
                        Ok(slice) => slice.into_events(),
                        Err(error) => {
                            // Ending the body with an error tells the client it is cut short.
                            tracing::warn!(%stream, %error, "NDJSON read stopped");
                            cursor.sent = count;
                            return Some((Err(std::io::Error::other(error.to_string())), cursor));
                        }
                    }
                }
            };
            let last = events.last()?;
            let step = cursor.options.max_count;
            let next = match cursor.options.direction {
                Direction::Forwards => last.revision.0.checked_add(1),
                Direction::Backwards => last.revision.0.checked_sub(1),
            };
            cursor.sent += events.len() as u64;
            match next {
                Some(next) if events.len() >= step => {
                    cursor.options.from = ReadFrom::At(Revision(next))
                }
                _ => cursor.sent = count,
            }
            match resolve_with(resolver.as_ref(), events).await {
                Ok(events) => Some((Ok::<_, std::io::Error>(ndjson_lines(&events)), cursor)),
                Err(error) => {
                    tracing::warn!(%stream, %error, "NDJSON read stopped resolving links");
                    cursor.sent = count;
                    Some((Err(std::io::Error::other(error.to_string())), cursor))
                }
            }
        }
    });
    ndjson_response(Body::from_stream(pages))
}

/// Reads the global log `$all`, optionally filtered.
#[utoipa::path(
    get,
    path = "/v1/all",
    params(AllReadQuery, FilterQuery),
    responses(
        (status = 200, description = "a page (JSON) or the events (NDJSON)", content((AllPage = "application/json"), (String = "application/x-ndjson"))),
        (status = 400, description = "bad query or filter", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "streams"
)]
pub(crate) async fn read_all(
    State(state): State<AppState>,
    Query(query): Query<AllReadQuery>,
    access: Access,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    access.check(crate::access::Operation::Read("$all")).await?;
    let ndjson = wants_ndjson(&headers);
    let direction = parse_direction(query.direction.as_deref())?;
    let from = parse_from(query.from.as_deref(), direction)?;
    let count = page_count(query.count, ndjson)?;
    let options = ReadAllOptions {
        direction,
        from: match from {
            ReadFrom::Start => ReadFrom::Start,
            ReadFrom::End => ReadFrom::End,
            ReadFrom::At(position) => ReadFrom::At(Position(position)),
        },
        max_count: if ndjson {
            NDJSON_STEP_EVENTS.min(count as usize)
        } else {
            count as usize
        },
        filter: query.filter.to_filter()?,
    };
    let resolve_links = flag("resolveLinks", query.resolve_links.as_deref())?;
    let store = access.store(&state);
    let slice = store.read_all(options.clone()).await?;
    if ndjson {
        return Ok(ndjson_all(store, resolve_links, options, count, slice));
    }
    let events = resolve(&*store, slice.events, resolve_links).await?;
    let page = AllPage {
        events: events.iter().map(ResolvedOut::new).collect(),
        next_position: slice.next_position.0,
        is_end: slice.is_end,
    };
    Ok(Json(page).into_response())
}

/// Sends the first slice and reads on until `count` events were sent or the log ends.
fn ndjson_all(
    store: Arc<dyn EventStore>,
    resolve_links: bool,
    options: ReadAllOptions,
    count: u64,
    first: strata_core::AllSlice,
) -> Response {
    struct Cursor {
        slice: Option<strata_core::AllSlice>,
        options: ReadAllOptions,
        sent: u64,
        done: bool,
    }
    let cursor = Cursor {
        slice: Some(first),
        options,
        sent: 0,
        done: false,
    };
    let pages = futures::stream::unfold(cursor, move |mut cursor| {
        let store = Arc::clone(&store);
        async move {
            loop {
                if cursor.done {
                    return None;
                }
                let slice = match cursor.slice.take() {
                    Some(slice) => slice,
                    None => {
                        let remaining = count.saturating_sub(cursor.sent);
                        if remaining == 0 {
                            return None;
                        }
                        cursor.options.max_count = NDJSON_STEP_EVENTS.min(remaining as usize);
                        match store.read_all(cursor.options.clone()).await {
                            Ok(slice) => slice,
                            Err(error) => {
                                // Ending the body with an error tells the client it is cut short.
                                tracing::warn!(%error, "NDJSON read of $all stopped");
                                cursor.done = true;
                                return Some((
                                    Err(std::io::Error::other(error.to_string())),
                                    cursor,
                                ));
                            }
                        }
                    }
                };
                cursor.sent += slice.events.len() as u64;
                cursor.done = slice.is_end || cursor.sent >= count;
                cursor.options.from = ReadFrom::At(slice.next_position);
                if slice.events.is_empty() {
                    continue;
                }
                return match resolve(&*store, slice.events, resolve_links).await {
                    Ok(events) => Some((Ok::<_, std::io::Error>(ndjson_lines(&events)), cursor)),
                    Err(error) => {
                        tracing::warn!(%error, "NDJSON read of $all stopped resolving links");
                        cursor.done = true;
                        Some((Err(std::io::Error::other(error.to_string())), cursor))
                    }
                };
            }
        }
    });
    ndjson_response(Body::from_stream(pages))
}
