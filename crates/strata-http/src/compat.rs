//! KurrentDB's HTTP API where scripts depend on it: appends to `POST /streams/{stream}` (a
//! batch as `application/vnd.kurrent.events+json` or `application/vnd.eventstore.events+json`,
//! or one event with `Kurrent-EventType` / `Kurrent-EventId`), `Kurrent-ExpectedVersion`,
//! reads of a stream as KurrentDB's JSON feed, and `DELETE` with `Kurrent-HardDelete`. The
//! `ES-*` header names are accepted as well. Answers use KurrentDB's status codes (201, 400
//! `Wrong expected EventNumber` with `Kurrent-CurrentVersion`, 404, 410) and reason phrases.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;

use crate::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use strata_core::{
    Bytes, ContentType, Direction, Error as StoreError, EventId, ExpectedRevision, ProposedEvent,
    ReadFrom, ReadStreamOptions, Revision, StreamName, StreamSlice,
};

use crate::access::{Access, Operation};
use crate::problem::{ApiError, state_revision};
use crate::read::PAGE_EVENTS_MAX;
use crate::state::{AppState, content_type_is, read_body};
use strata_core::system_streams::ResolvedEvent;

const EVENTS_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.kurrent.events+json",
    "application/vnd.eventstore.events+json",
];
/// Events in a feed page when the request names none, as in KurrentDB.
const FEED_PAGE_DEFAULT: u64 = 20;

/// The value of KurrentDB header `Kurrent-<name>`, or of its older name `ES-<name>`.
fn kurrent_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    [format!("kurrent-{name}"), format!("es-{name}")]
        .iter()
        .find_map(|full| headers.get(full.as_str()))
        .and_then(|value| value.to_str().ok())
}

fn bool_header(headers: &HeaderMap, name: &str) -> bool {
    kurrent_header(headers, name).is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

/// KurrentDB's expected versions: -2 any, -1 no stream, -4 stream exists, N.
fn expected_version(headers: &HeaderMap) -> Result<ExpectedRevision, ApiError> {
    let Some(text) = kurrent_header(headers, "expectedversion") else {
        return Ok(ExpectedRevision::Any);
    };
    match text.trim().parse::<i64>() {
        Ok(-2) => Ok(ExpectedRevision::Any),
        Ok(-1) => Ok(ExpectedRevision::NoStream),
        Ok(-4) => Ok(ExpectedRevision::StreamExists),
        Ok(version) if version >= 0 => Ok(ExpectedRevision::Exact(version as u64)),
        _ => Err(kurrent_error(
            StatusCode::BAD_REQUEST,
            "Invalid Expected Version",
            "invalid-expected-version",
        )),
    }
}

/// An error with KurrentDB's status and reason phrase; the body is still a problem.
fn kurrent_error(status: StatusCode, reason: &'static str, kind: &str) -> ApiError {
    let mut error = ApiError::new(status, kind, reason);
    error.problem.title = reason.to_owned();
    error
}

/// Maps a store error to KurrentDB's HTTP answer.
fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::WrongExpectedRevision { actual, .. } => {
            let current = state_revision(actual)
                .map_or(-1, |revision| revision as i64)
                .to_string();
            let mut error = kurrent_error(
                StatusCode::BAD_REQUEST,
                "Wrong expected EventNumber",
                "wrong-expected-revision",
            );
            error.problem.actual_revision = Some(state_revision(actual));
            error
                .with_header("kurrent-currentversion", &current)
                .with_header("es-currentversion", &current)
        }
        StoreError::StreamDeleted { .. } => {
            kurrent_error(StatusCode::GONE, "Stream deleted", "stream-tombstoned")
        }
        other => ApiError::from(other),
    }
}

/// Sets KurrentDB's reason phrase on an HTTP/1.1 answer.
fn with_reason(mut response: Response, reason: &'static str) -> Response {
    response
        .extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(reason.as_bytes()));
    response
}

fn error_response(error: ApiError) -> Response {
    let reason = match (error.status, error.problem.title.as_str()) {
        (StatusCode::BAD_REQUEST, "Wrong expected EventNumber") => {
            Some("Wrong expected EventNumber")
        }
        (StatusCode::GONE, "Stream deleted") => Some("Stream deleted"),
        _ => None,
    };
    let response = error.into_response();
    match reason {
        Some(reason) => with_reason(response, reason),
        None => response,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KurrentEvent {
    event_id: uuid::Uuid,
    event_type: String,
    data: Option<Box<RawValue>>,
    metadata: Option<Box<RawValue>>,
}

fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost")
        .to_owned()
}

fn stream_url(headers: &HeaderMap, stream: &StreamName) -> String {
    format!(
        "http://{}/streams/{}",
        host(headers),
        percent_encode(stream.as_str())
    )
}

/// Percent-encodes a path segment (everything but unreserved characters).
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~$@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `POST /streams/{stream}`.
pub(crate) async fn append(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match append_inner(&state, &stream, None, &access, &headers, body).await {
        Ok(response) => response,
        Err(error) => error_response(error),
    }
}

/// `POST /streams/{stream}/incoming/{event_id}`: where a single event without an id is sent
/// again, so that a re-send is idempotent.
pub(crate) async fn append_incoming(
    State(state): State<AppState>,
    Path((stream, event_id)): Path<(String, String)>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(event_id) = uuid::Uuid::parse_str(&event_id) else {
        return error_response(ApiError::bad_request(
            "the event id in the path is not a UUID",
        ));
    };
    match append_inner(&state, &stream, Some(event_id), &access, &headers, body).await {
        Ok(response) => response,
        Err(error) => error_response(error),
    }
}

async fn append_inner(
    state: &AppState,
    stream: &str,
    path_event_id: Option<uuid::Uuid>,
    access: &Access,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let stream = StreamName::new(stream)?;
    access.write(&stream).await?;
    let expected = expected_version(headers)?;
    let body = read_body(headers, body, &state.options).await?;
    let events = if content_type_is(headers, &EVENTS_MEDIA_TYPES) {
        let batch: Vec<KurrentEvent> = serde_json::from_slice(&body).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                format!("the events are not valid: {error}"),
            )
        })?;
        batch
            .into_iter()
            .map(|event| ProposedEvent {
                id: EventId(event.event_id),
                event_type: event.event_type.into(),
                content_type: ContentType::Json,
                data: event
                    .data
                    .map_or_else(Bytes::new, |data| Bytes::from(data.get().to_owned())),
                metadata: event.metadata.map_or_else(Bytes::new, |metadata| {
                    Bytes::from(metadata.get().to_owned())
                }),
            })
            .collect()
    } else {
        let content_type = if content_type_is(headers, &["application/json"]) {
            if serde_json::from_slice::<&RawValue>(&body).is_err() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-json",
                    "the body is not valid JSON",
                ));
            }
            ContentType::Json
        } else if content_type_is(headers, &["application/octet-stream"]) {
            ContentType::Binary
        } else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send application/vnd.kurrent.events+json, or one event as application/json or application/octet-stream",
            ));
        };
        let Some(event_type) = kurrent_header(headers, "eventtype") else {
            return Err(ApiError::bad_request(
                "Must include an event type with the request either in body or as Kurrent-EventType header.",
            ));
        };
        let header_id = kurrent_header(headers, "eventid")
            .map(|text| {
                uuid::Uuid::parse_str(text.trim())
                    .map_err(|_| ApiError::bad_request("Kurrent-EventId is not a UUID"))
            })
            .transpose()?;
        let Some(event_id) = header_id.or(path_event_id) else {
            // As KurrentDB: send it again to a URL that names an id, so a re-send is idempotent.
            let location = format!(
                "{}/incoming/{}",
                stream_url(headers, &stream),
                uuid::Uuid::new_v4()
            );
            return Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
                "Forwarding to idempotent URI",
            )
                .into_response());
        };
        vec![ProposedEvent {
            id: EventId(event_id),
            event_type: event_type.into(),
            content_type,
            data: body,
            metadata: Bytes::new(),
        }]
    };
    let count = events.len() as u64;
    if count == 0 {
        // KurrentDB answers an empty batch by checking the expected version only.
        state
            .store
            .check_expected_revision(&stream, expected)
            .await
            .map_err(store_error)?;
        return Ok(StatusCode::CREATED.into_response());
    }
    state.store.limits().check_append(&events)?;
    let result = state
        .store
        .append(&stream, expected, events)
        .await
        .map_err(store_error)?;
    let first = result.current_revision.0 + 1 - count;
    let location = format!("{}/{first}", stream_url(headers, &stream));
    let mut response = (StatusCode::CREATED, [(header::LOCATION, location)]).into_response();
    if let Ok(position) = HeaderValue::from_str(&result.position.0.to_string()) {
        response.headers_mut().insert("kurrent-position", position);
    }
    Ok(response)
}

/// `DELETE /streams/{stream}`: soft delete, or tombstone with `Kurrent-HardDelete: true`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    access: Access,
    headers: HeaderMap,
) -> Response {
    let outcome = async {
        let stream = StreamName::new(&stream)?;
        access.check(Operation::Delete(stream.as_str())).await?;
        let expected = expected_version(&headers)?;
        if bool_header(&headers, "harddelete") {
            state
                .store
                .tombstone_stream(&stream, expected)
                .await
                .map_err(store_error)?;
        } else {
            state
                .store
                .delete_stream(&stream, expected)
                .await
                .map_err(store_error)?;
        }
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    outcome.unwrap_or_else(error_response)
}

#[derive(Debug, Deserialize)]
pub(crate) struct FeedQuery {
    embed: Option<String>,
}

/// `GET /streams/{stream}`: the newest events, as KurrentDB's JSON feed.
pub(crate) async fn read_head(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    Query(query): Query<FeedQuery>,
    access: Access,
    headers: HeaderMap,
) -> Response {
    feed(
        &state,
        &stream,
        ReadFrom::End,
        Direction::Backwards,
        FEED_PAGE_DEFAULT,
        &query,
        &access,
        &headers,
    )
    .await
    .unwrap_or_else(error_response)
}

/// `GET /streams/{stream}/{event}/{forward|backward}/{count}`.
pub(crate) async fn read_page(
    State(state): State<AppState>,
    Path((stream, event, direction, count)): Path<(String, String, String, u64)>,
    Query(query): Query<FeedQuery>,
    access: Access,
    headers: HeaderMap,
) -> Response {
    let outcome = async {
        let direction = match direction.as_str() {
            "forward" => Direction::Forwards,
            "backward" => Direction::Backwards,
            _ => {
                return Err(ApiError::not_found(
                    "not-found",
                    "the direction is forward or backward",
                ));
            }
        };
        let from = event_number(&event)?;
        feed(
            &state,
            &stream,
            from,
            direction,
            count.min(PAGE_EVENTS_MAX),
            &query,
            &access,
            &headers,
        )
        .await
    }
    .await;
    outcome.unwrap_or_else(error_response)
}

/// Longest wait a `Kurrent-LongPoll` header may ask for.
const LONG_POLL_MAX: Duration = Duration::from_secs(300);

/// `Kurrent-LongPoll: N` (or `ES-LongPoll`): when the page asked for has no events, wait up
/// to N seconds for some to be appended before answering.
fn long_poll(headers: &HeaderMap) -> Result<Option<Duration>, ApiError> {
    let Some(text) = kurrent_header(headers, "longpoll") else {
        return Ok(None);
    };
    match text.trim().parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(seconds) => Ok(Some(Duration::from_secs(seconds).min(LONG_POLL_MAX))),
        Err(_) => Err(ApiError::bad_request(format!(
            "Kurrent-LongPoll is {text:?}; it is a number of seconds"
        ))),
    }
}

fn event_number(text: &str) -> Result<ReadFrom<Revision>, ApiError> {
    if text == "head" {
        return Ok(ReadFrom::End);
    }
    text.parse()
        .map(|number| ReadFrom::At(Revision(number)))
        .map_err(|_| ApiError::bad_request(format!("{text:?} is neither an event number nor head")))
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site per route; a struct would only rename them"
)]
async fn feed(
    state: &AppState,
    stream: &str,
    from: ReadFrom<Revision>,
    direction: Direction,
    count: u64,
    query: &FeedQuery,
    access: &Access,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let stream = StreamName::new(stream)?;
    access.read(&stream).await?;
    let options = ReadStreamOptions {
        direction,
        from,
        max_count: count as usize,
    };
    let long_poll = long_poll(headers)?;
    // Taken before the first read, so an append between the read and the wait still wakes.
    let mut log_end = state.store.watch_log_end();
    let deadline = long_poll.map(|wait| tokio::time::Instant::now() + wait);
    let slice = loop {
        let slice = state
            .store
            .read_stream(&stream, options)
            .await
            .map_err(store_error)?;
        let empty = match &slice {
            StreamSlice::Found { events, .. } => events.is_empty(),
            _ => true,
        };
        let Some(deadline) = deadline.filter(|_| empty) else {
            break slice;
        };
        // Long poll: wait for the log to grow, then read again, until the deadline.
        log_end.borrow_and_update();
        match tokio::time::timeout_at(deadline, log_end.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => break slice,
        }
    };
    let StreamSlice::Found {
        events,
        last_revision,
    } = slice
    else {
        return Err(ApiError::not_found(
            "stream-not-found",
            format!("stream {stream} has no events"),
        ));
    };
    // As KurrentDB, a feed shows the events links point at unless `ResolveLinkTos: false`;
    // they resolve as the caller may read.
    let resolve_links = kurrent_header(headers, "resolvelinktos")
        .is_none_or(|value| !value.eq_ignore_ascii_case("false"));
    let shown = crate::events::resolve(&*access.store(state), events.clone(), resolve_links)
        .await
        .map_err(store_error)?;
    let url = stream_url(headers, &stream);
    let embed_body = query
        .embed
        .as_deref()
        .is_some_and(|embed| matches!(embed, "body" | "rich" | "content" | "tryharder"));
    let entries: Vec<serde_json::Value> = shown
        .iter()
        .map(|event| entry(headers, event, embed_body))
        .collect();
    let head_of_stream = match direction {
        Direction::Backwards => events
            .first()
            .is_none_or(|event| event.revision == last_revision),
        Direction::Forwards => events
            .last()
            .is_none_or(|event| event.revision == last_revision),
    };
    let feed = serde_json::json!({
        "title": format!("Event stream '{stream}'"),
        "id": url,
        "streamId": stream.as_str(),
        "author": {"name": "EventStore"},
        "headOfStream": head_of_stream,
        "selfUrl": url,
        "eTag": format!("{};-2060438500", last_revision.0),
        "links": [
            {"uri": url, "relation": "self"},
            {"uri": format!("{url}/head/backward/{FEED_PAGE_DEFAULT}"), "relation": "first"},
            {"uri": format!("{url}/0/forward/{FEED_PAGE_DEFAULT}"), "relation": "last"},
        ],
        "entries": entries,
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/vnd.kurrent.atom+json; charset=utf-8",
        )],
        feed.to_string(),
    )
        .into_response())
}

/// A feed entry: the event, or the event a link points at (its links lead there, and the
/// position fields name the link).
fn entry(headers: &HeaderMap, shown: &ResolvedEvent, embed_body: bool) -> serde_json::Value {
    let event = shown.event.as_ref().unwrap_or_else(|| shown.original());
    let read = shown.original();
    let event_url = format!(
        "{}/{}",
        stream_url(headers, &event.stream),
        event.revision.0
    );
    let mut entry = serde_json::json!({
        "title": format!("{}@{}", event.revision.0, event.stream),
        "id": event_url,
        "updated": event.created.to_rfc3339(9),
        "author": {"name": "EventStore"},
        "summary": event.event_type,
        "links": [
            {"uri": event_url, "relation": "edit"},
            {"uri": event_url, "relation": "alternate"},
        ],
    });
    if embed_body {
        let is_json = event.content_type == ContentType::Json;
        let fields = serde_json::json!({
            "eventId": event.id.0.to_string(),
            "eventType": event.event_type,
            "eventNumber": event.revision.0,
            "streamId": event.stream.as_str(),
            "isJson": is_json,
            "isMetaData": !event.metadata.is_empty(),
            "isLinkMetaData": false,
            "positionEventNumber": read.revision.0,
            "positionStreamId": read.stream.as_str(),
            "data": String::from_utf8_lossy(&event.data),
            "metaData": String::from_utf8_lossy(&event.metadata),
        });
        if let (Some(entry), serde_json::Value::Object(fields)) = (entry.as_object_mut(), fields) {
            entry.extend(fields);
        }
    }
    entry
}

/// `GET /streams/{stream}/{event}`: one event's data (`head` is the last event).
pub(crate) async fn read_event(
    State(state): State<AppState>,
    Path((stream, event)): Path<(String, String)>,
    access: Access,
) -> Response {
    let outcome = async {
        let stream = StreamName::new(&stream)?;
        access.read(&stream).await?;
        let from = event_number(&event)?;
        let options = ReadStreamOptions {
            direction: Direction::Backwards,
            from,
            max_count: 1,
        };
        let found = state
            .store
            .read_stream(&stream, options)
            .await
            .map_err(store_error)?
            .into_events();
        let event = match (found.into_iter().next(), from) {
            (Some(event), ReadFrom::At(revision)) if event.revision == revision => event,
            (Some(event), ReadFrom::End) => event,
            _ => {
                return Err(ApiError::not_found(
                    "event-not-found",
                    format!("no event {event} in stream {stream}"),
                ));
            }
        };
        Ok::<_, ApiError>(
            (
                [(header::CONTENT_TYPE, event.content_type.as_mime())],
                event.data,
            )
                .into_response(),
        )
    }
    .await;
    outcome.unwrap_or_else(error_response)
}

/// The version KurrentDB reports for a stream state (-1 for none).
#[cfg(test)]
fn current_version(state: strata_core::StreamState) -> i64 {
    state_revision(state).map_or(-1, |revision| revision as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_expected_versions_under_both_header_names() {
        let mut headers = HeaderMap::new();
        headers.insert("es-expectedversion", HeaderValue::from_static("-1"));
        assert_eq!(
            expected_version(&headers).ok(),
            Some(ExpectedRevision::NoStream)
        );
        headers.insert("kurrent-expectedversion", HeaderValue::from_static("-4"));
        assert_eq!(
            expected_version(&headers).ok(),
            Some(ExpectedRevision::StreamExists)
        );
        headers.insert("kurrent-expectedversion", HeaderValue::from_static("7"));
        assert_eq!(
            expected_version(&headers).ok(),
            Some(ExpectedRevision::Exact(7))
        );
        headers.insert("kurrent-expectedversion", HeaderValue::from_static("-3"));
        assert!(expected_version(&headers).is_err());
        assert_eq!(current_version(strata_core::StreamState::NoStream), -1);
    }
}
