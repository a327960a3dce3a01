//! Catch-up subscriptions over HTTP: a stream, `$all` (filtered) or a category, as NDJSON
//! lines (`event`, `caught-up`, `checkpoint`, `heartbeat`, and a last `error` line when the
//! subscription fails after the 200) or as server-sent events whose `id:` is the event's
//! position (its revision, for a stream subscription), so `Last-Event-ID` resumes right after
//! the last event received: no gap, no duplicate.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};

use crate::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use strata_auth::{AuthError, LoginWatch};
use strata_core::{
    ConnectionSubscription, ConnectionSubscriptions, EventFilter, FilterTarget, Position, Revision,
    StreamName, SubscribeFrom, Subscription, SubscriptionItem, SubscriptionOptions,
};
use tokio::sync::OwnedSemaphorePermit;

use crate::access::{Access, Operation};
use crate::events::{ResolvedOut, flag};
use crate::problem::{ApiError, Problem};
use crate::read::FilterQuery;
use crate::state::{AppState, accepts};
use strata_core::EventStore;
use strata_core::system_streams::{ResolvedEvent, resolve_link};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamSubscribeQuery {
    /// `start` (default) or `end`.
    from: Option<String>,
    /// Start after this revision (exclusive); overrides `from`. `Last-Event-ID` overrides both.
    after: Option<u64>,
    /// `true` shows each link (`$>`) as the event it points at, with the link under `link`.
    resolve_links: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AllSubscribeQuery {
    /// `start` (default) or `end`.
    from: Option<String>,
    /// Start after this position (exclusive); overrides `from`. `Last-Event-ID` overrides both.
    after: Option<u64>,
    /// `true` shows each link (`$>`) as the event it points at, with the link under `link`.
    resolve_links: Option<String>,
    #[serde(flatten)]
    #[param(ignore)]
    filter: FilterQuery,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CategorySubscribeQuery {
    /// `start` (default) or `end`.
    from: Option<String>,
    /// Start after this position (exclusive); overrides `from`. `Last-Event-ID` overrides both.
    after: Option<u64>,
    /// `true` shows each link (`$>`) as the event it points at, with the link under `link`.
    resolve_links: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Sse,
}

/// What the `id:` of an SSE event is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resume {
    Position,
    Revision,
}

fn start<T>(
    from: Option<&str>,
    after: Option<u64>,
    last_event_id: Option<u64>,
    at: fn(u64) -> T,
) -> Result<SubscribeFrom<T>, ApiError> {
    if let Some(after) = last_event_id.or(after) {
        return Ok(SubscribeFrom::After(at(after)));
    }
    match from {
        None | Some("start") => Ok(SubscribeFrom::Start),
        Some("end") => Ok(SubscribeFrom::End),
        Some(other) => Err(ApiError::bad_request(format!(
            "from {other:?} is neither start nor end; use after=N"
        ))),
    }
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("Last-Event-ID is not a number this server sent"))
}

fn format(headers: &HeaderMap) -> Format {
    if accepts(headers, "text/event-stream") {
        Format::Sse
    } else {
        Format::Ndjson
    }
}

/// A subscription's places: one of the server's, and one of its connection's (and its
/// client address's).
struct Places {
    _server: OwnedSemaphorePermit,
    _connection: Option<ConnectionSubscription>,
}

/// Takes a place on the connection (what the server put in the request; none when served
/// otherwise, as in tests), then one of the server's.
fn permit(
    state: &AppState,
    connection: Option<Extension<ConnectionSubscriptions>>,
) -> Result<Places, ApiError> {
    let connection = connection
        .map(|Extension(connection)| {
            connection.take().map_err(|refused| {
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too-many-subscriptions",
                    refused.to_string(),
                );
                error.problem.limit = Some(refused.limit() as u64);
                error.problem.limit_unit = Some(refused.limit_unit().to_owned());
                error
            })
        })
        .transpose()?;
    let server = Arc::clone(&state.subscriptions)
        .try_acquire_owned()
        .map_err(|_| {
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-subscriptions",
                format!(
                    "this server serves at most {} HTTP subscriptions at once; try again later",
                    state.options.subscriptions_max
                ),
            );
            error.problem.limit = Some(state.options.subscriptions_max as u64);
            error.problem.limit_unit = Some("subscriptions".to_owned());
            error
        })?;
    Ok(Places {
        _server: server,
        _connection: connection,
    })
}

/// Bytes of events a subscription buffers for a slow client before its reader waits (an
/// event larger than this still goes, alone): with the connection's send buffers, the most
/// a subscriber that never reads holds.
const SUBSCRIPTION_BUFFER_BYTES: usize = 1024 * 1024;

fn options(state: &AppState) -> SubscriptionOptions {
    SubscriptionOptions {
        buffer_items: state.options.subscription_buffer,
        buffer_bytes: SUBSCRIPTION_BUFFER_BYTES,
        ..SubscriptionOptions::default()
    }
}

/// Follows one stream from its start, the end, or after a revision.
#[utoipa::path(
    get,
    path = "/v1/subscriptions/streams/{stream}",
    params(("stream" = String, Path, description = "stream name"), StreamSubscribeQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this revision")),
    responses(
        (status = 200, description = "NDJSON lines or server-sent events, until the client leaves", content((String = "application/x-ndjson"), (String = "text/event-stream"))),
        (status = 400, description = "bad query", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many subscriptions", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "subscriptions"
)]
pub(crate) async fn subscribe_stream(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    Query(query): Query<StreamSubscribeQuery>,
    access: Access,
    connection: Option<Extension<ConnectionSubscriptions>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let stream = StreamName::new(&stream)?;
    access.read(&stream).await?;
    let from = start(
        query.from.as_deref(),
        query.after,
        last_event_id(&headers)?,
        Revision,
    )?;
    let resolver = resolver(&state, &access, query.resolve_links.as_deref())?;
    let permit = permit(&state, connection)?;
    let subscription = strata_core::subscribe_to_stream_with(
        Arc::clone(&state.store),
        stream,
        from,
        options(&state),
    );
    Ok(respond(
        &state,
        subscription,
        resolver,
        format(&headers),
        Resume::Revision,
        permit,
        access.watch_login(),
    ))
}

/// Follows the global log `$all`, optionally filtered; filtered subscriptions send
/// checkpoints.
#[utoipa::path(
    get,
    path = "/v1/subscriptions/all",
    params(AllSubscribeQuery, FilterQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this position")),
    responses(
        (status = 200, description = "NDJSON lines or server-sent events, until the client leaves", content((String = "application/x-ndjson"), (String = "text/event-stream"))),
        (status = 400, description = "bad query or filter", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many subscriptions", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "subscriptions"
)]
pub(crate) async fn subscribe_all(
    State(state): State<AppState>,
    Query(query): Query<AllSubscribeQuery>,
    access: Access,
    connection: Option<Extension<ConnectionSubscriptions>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    access.check(Operation::Read("$all")).await?;
    let from = start(
        query.from.as_deref(),
        query.after,
        last_event_id(&headers)?,
        Position,
    )?;
    let filter = query.filter.to_filter()?;
    let resolver = resolver(&state, &access, query.resolve_links.as_deref())?;
    let permit = permit(&state, connection)?;
    let subscription =
        strata_core::subscribe_to_all_with(access.store(&state), from, filter, options(&state));
    Ok(respond(
        &state,
        subscription,
        resolver,
        format(&headers),
        Resume::Position,
        permit,
        access.watch_login(),
    ))
}

/// Follows every stream of a category (streams named `<category>-...`) through `$all`.
#[utoipa::path(
    get,
    path = "/v1/subscriptions/categories/{category}",
    params(("category" = String, Path, description = "the part of stream names before the first '-'"), CategorySubscribeQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this position")),
    responses(
        (status = 200, description = "NDJSON lines or server-sent events, until the client leaves", content((String = "application/x-ndjson"), (String = "text/event-stream"))),
        (status = 400, description = "bad query", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many subscriptions", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "subscriptions"
)]
pub(crate) async fn subscribe_category(
    State(state): State<AppState>,
    Path(category): Path<String>,
    Query(query): Query<CategorySubscribeQuery>,
    access: Access,
    connection: Option<Extension<ConnectionSubscriptions>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    access.check(Operation::Read("$all")).await?;
    if category.is_empty() || category.contains('-') {
        return Err(ApiError::bad_request(
            "a category is a non-empty name without '-'",
        ));
    }
    let from = start(
        query.from.as_deref(),
        query.after,
        last_event_id(&headers)?,
        Position,
    )?;
    let filter = EventFilter::prefixes(FilterTarget::StreamName, vec![format!("{category}-")])?;
    let resolver = resolver(&state, &access, query.resolve_links.as_deref())?;
    let permit = permit(&state, connection)?;
    let subscription = strata_core::subscribe_to_all_with(
        access.store(&state),
        from,
        Some(filter),
        options(&state),
    );
    Ok(respond(
        &state,
        subscription,
        resolver,
        format(&headers),
        Resume::Position,
        permit,
        access.watch_login(),
    ))
}

/// The store links resolve through when `resolveLinks=true`: the caller's view, so a target
/// it may not read is left out.
fn resolver(
    state: &AppState,
    access: &Access,
    resolve_links: Option<&str>,
) -> Result<Option<Arc<dyn EventStore>>, ApiError> {
    Ok(flag("resolveLinks", resolve_links)?.then(|| access.store(state)))
}

/// What a subscription sends: an event (its link resolved when asked), caught-up, or a
/// checkpoint.
enum Item {
    Event(Box<ResolvedEvent>),
    CaughtUp,
    Checkpoint(Position),
}

struct Follower {
    subscription: Subscription,
    resolver: Option<Arc<dyn EventStore>>,
    format: Format,
    resume: Resume,
    heartbeat: Duration,
    done: bool,
    /// Ends the subscription when the caller's user may no longer log in.
    login: LoginWatch,
    /// The last event delivered, for the lag metric.
    delivered: Arc<strata_core::DeliveredPosition>,
    _permit: Places,
}

fn respond(
    state: &AppState,
    subscription: Subscription,
    resolver: Option<Arc<dyn EventStore>>,
    format: Format,
    resume: Resume,
    permit: Places,
    login: LoginWatch,
) -> Response {
    let follower = Follower {
        subscription,
        resolver,
        format,
        resume,
        heartbeat: state.options.heartbeat_interval,
        done: false,
        login,
        delivered: state.metrics.http_subscriptions().track(),
        _permit: permit,
    };
    let lines = futures::stream::unfold(follower, |mut follower| async move {
        if follower.done {
            return None;
        }
        let line = tokio::select! {
            item = follower.subscription.next() => match item {
                Some(Ok(item)) => {
                    if let SubscriptionItem::Event(event) = &item {
                        follower.delivered.delivered(event.position);
                    }
                    match shown(&follower, item).await {
                        Ok(item) => item_line(&follower, &item),
                        Err(error) => {
                            follower.done = true;
                            error_line(follower.format, &ApiError::from(error))
                        }
                    }
                }
                Some(Err(error)) => {
                    follower.done = true;
                    error_line(follower.format, &ApiError::from(error))
                }
                None => return None,
            },
            () = tokio::time::sleep(follower.heartbeat) => heartbeat_line(follower.format),
            () = follower.login.revoked() => {
                follower.done = true;
                let denied = AuthError::AccessDenied {
                    operation: "subscribe".to_owned(),
                    resource: "the user's credentials no longer log in".to_owned(),
                };
                error_line(follower.format, &ApiError::from(denied))
            }
        };
        Some((Ok::<_, std::io::Error>(line), follower))
    });
    let content_type = match format {
        Format::Ndjson => "application/x-ndjson",
        Format::Sse => "text/event-stream",
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(lines),
    )
        .into_response()
}

/// `item` as the subscription shows it, its link resolved when the follower resolves links.
async fn shown(follower: &Follower, item: SubscriptionItem) -> strata_core::Result<Item> {
    Ok(match item {
        SubscriptionItem::Event(event) => Item::Event(Box::new(match &follower.resolver {
            Some(store) => resolve_link(&**store, event).await?,
            None => ResolvedEvent::plain(event),
        })),
        SubscriptionItem::CaughtUp => Item::CaughtUp,
        SubscriptionItem::Checkpoint(position) => Item::Checkpoint(position),
    })
}

fn item_line(follower: &Follower, item: &Item) -> Bytes {
    let mut out = Vec::with_capacity(256);
    match (follower.format, item) {
        (Format::Ndjson, Item::Event(event)) => {
            out.extend_from_slice(br#"{"kind":"event","event":"#);
            crate::events::write_event(&mut out, event);
            out.extend_from_slice(b"}\n");
        }
        (Format::Ndjson, Item::CaughtUp) => out.extend_from_slice(b"{\"kind\":\"caught-up\"}\n"),
        (Format::Ndjson, Item::Checkpoint(position)) => {
            out.extend_from_slice(
                format!("{{\"kind\":\"checkpoint\",\"position\":{}}}\n", position.0).as_bytes(),
            );
        }
        (Format::Sse, Item::Event(event)) => {
            // The place of what was read: the link's, when it came through one.
            let read = event.original();
            let id = match follower.resume {
                Resume::Position => read.position.0,
                Resume::Revision => read.revision.0,
            };
            out.extend_from_slice(format!("id: {id}\nevent: event\ndata: ").as_bytes());
            let _ = serde_json::to_writer(&mut out, &ResolvedOut::new(event));
            out.extend_from_slice(b"\n\n");
        }
        (Format::Sse, Item::CaughtUp) => out.extend_from_slice(b"event: caught-up\ndata: {}\n\n"),
        (Format::Sse, Item::Checkpoint(position)) => {
            out.extend_from_slice(
                format!(
                    "id: {0}\nevent: checkpoint\ndata: {{\"position\":{0}}}\n\n",
                    position.0
                )
                .as_bytes(),
            );
        }
    }
    Bytes::from(out)
}

fn heartbeat_line(format: Format) -> Bytes {
    match format {
        Format::Ndjson => Bytes::from_static(b"{\"kind\":\"heartbeat\"}\n"),
        Format::Sse => Bytes::from_static(b": heartbeat\n\n"),
    }
}

fn error_line(format: Format, error: &ApiError) -> Bytes {
    let problem = error.to_json();
    match format {
        Format::Ndjson => Bytes::from(format!(
            "{}\n",
            serde_json::json!({"kind": "error", "problem": problem})
        )),
        Format::Sse => Bytes::from(format!("event: error\ndata: {problem}\n\n")),
    }
}
