//! Consuming a persistent subscription over HTTP, as KurrentDB's competing-consumers HTTP
//! API does: the server holds one consumer per group for HTTP clients; `GET .../messages`
//! takes events from it (they are then in flight until acked, nacked or timed out), and
//! `POST .../ack` / `.../nack` settle them by id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;

use crate::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_core::EventId;
use strata_persistent::{
    Consumer, ConsumerOptions, NackAction, PersistentEvent, PersistentSubscriptions,
    SubscriptionSource,
};

use crate::access::{Access, Operation};
use crate::events::EventOut;
use crate::persistent::source;
use crate::problem::{ApiError, Problem};
use crate::state::{AppState, parse_json, read_body, require_json};

/// Events the HTTP consumer of one group may hold in flight.
const HTTP_CONSUMER_IN_FLIGHT_MAX: usize = 10_000;
/// Most events one `messages` call returns.
const MESSAGES_MAX: usize = 1_000;
/// Longest a `messages` call waits for a first event.
const WAIT_MS_MAX: u64 = 30_000;
/// How often a waiting `messages` call looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

type Key = (SubscriptionSource, String);

/// The consumers held for HTTP clients, one per group.
pub(crate) struct HttpConsumers {
    manager: Arc<PersistentSubscriptions>,
    consumers: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<Consumer>>>>,
}

impl HttpConsumers {
    pub(crate) fn new(manager: Arc<PersistentSubscriptions>) -> Self {
        Self {
            manager,
            consumers: Mutex::new(HashMap::new()),
        }
    }

    async fn get(
        &self,
        source: &SubscriptionSource,
        group: &str,
    ) -> Result<Arc<tokio::sync::Mutex<Consumer>>, ApiError> {
        let key = (source.clone(), group.to_owned());
        if let Some(consumer) = self.consumers.lock().get(&key) {
            return Ok(Arc::clone(consumer));
        }
        let options = ConsumerOptions {
            buffer_size: HTTP_CONSUMER_IN_FLIGHT_MAX,
            name: "http".to_owned(),
        };
        let consumer = Arc::new(tokio::sync::Mutex::new(
            self.manager.connect(source, group, options).await?,
        ));
        let mut consumers = self.consumers.lock();
        Ok(Arc::clone(consumers.entry(key).or_insert(consumer)))
    }

    /// Lets go of a group's consumer (after a delete or update dropped it).
    pub(crate) fn forget(&self, source: &SubscriptionSource, group: &str) {
        self.consumers
            .lock()
            .remove(&(source.clone(), group.to_owned()));
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct MessagesQuery {
    /// Most events to take (default 1, at most 1000).
    count: Option<usize>,
    /// How long to wait for a first event, in milliseconds (default 0, at most 30000).
    wait_ms: Option<u64>,
}

/// One delivery.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageOut<'a> {
    /// The id to ack or nack.
    #[schema(value_type = String, format = "uuid")]
    ack_id: uuid::Uuid,
    /// How many times the event was delivered before.
    retry_count: u32,
    /// The event; absent for a link whose target is gone (deleted, truncated).
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<EventOut<'a>>,
    /// The link the event was reached through, when the group resolves links.
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<EventOut<'a>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MessagesOut<'a> {
    messages: Vec<MessageOut<'a>>,
}

/// Takes events from the group; they stay in flight until acked or nacked.
#[utoipa::path(
    get,
    path = "/v1/persistent-subscriptions/{stream}/{group}/messages",
    params(("stream" = String, Path, description = "stream name, or $all"), ("group" = String, Path, description = "group name"), MessagesQuery),
    responses(
        (status = 200, description = "the events taken (possibly none)", body = MessagesOut),
        (status = 400, description = "bad query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such group", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "persistent-subscriptions"
)]
pub(crate) async fn messages(
    State(state): State<AppState>,
    Path((stream, group)): Path<(String, String)>,
    Query(query): Query<MessagesQuery>,
    access: Access,
) -> Result<axum::response::Response, ApiError> {
    access.check(Operation::PersistentConsume(&stream)).await?;
    let source = source(&stream)?;
    let count = query.count.unwrap_or(1);
    if count == 0 || count > MESSAGES_MAX {
        return Err(ApiError::bad_request(format!(
            "count is 1 to {MESSAGES_MAX}"
        )));
    }
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0).min(WAIT_MS_MAX));
    let deadline = tokio::time::Instant::now() + wait;
    let consumer = state.consumers.get(&source, &group).await?;
    let mut taken: Vec<PersistentEvent> = Vec::new();
    loop {
        let failed = {
            let mut consumer = consumer.lock().await;
            let mut failed = None;
            while taken.len() < count {
                match consumer.try_next() {
                    Some(Ok(event)) => taken.push(event),
                    Some(Err(error)) => {
                        failed = Some(error);
                        break;
                    }
                    None => break,
                }
            }
            failed
        };
        if let Some(error) = failed {
            state.consumers.forget(&source, &group);
            if taken.is_empty() {
                return Err(error.into());
            }
        }
        if !taken.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    let messages = taken
        .iter()
        .map(|delivery| MessageOut {
            ack_id: delivery.ack_id().0,
            retry_count: delivery.retry_count,
            event: delivery.event.as_ref().map(EventOut::new),
            link: delivery.link.as_ref().map(EventOut::new),
        })
        .collect();
    Ok(axum::response::IntoResponse::into_response(Json(
        MessagesOut { messages },
    )))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckIn {
    #[schema(value_type = Vec<String>)]
    ids: Vec<uuid::Uuid>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NackIn {
    #[schema(value_type = Vec<String>)]
    ids: Vec<uuid::Uuid>,
    /// `park`, `retry` (default) or `skip`.
    action: Option<String>,
}

/// Marks events handled.
#[utoipa::path(
    post,
    path = "/v1/persistent-subscriptions/{stream}/{group}/ack",
    params(("stream" = String, Path, description = "stream name, or $all"), ("group" = String, Path, description = "group name")),
    request_body(content = AckIn, content_type = "application/json"),
    responses(
        (status = 204, description = "acked (unknown ids are ignored)"),
        (status = 400, description = "malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such group", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "persistent-subscriptions"
)]
pub(crate) async fn ack(
    State(state): State<AppState>,
    Path((stream, group)): Path<(String, String)>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    access.check(Operation::PersistentConsume(&stream)).await?;
    let source = source(&stream)?;
    require_json(&headers)?;
    let body = read_body(&headers, body, &state.options).await?;
    let request: AckIn = parse_json(&body)?;
    let consumer = state.consumers.get(&source, &group).await?;
    let ids = request.ids.into_iter().map(EventId).collect();
    consumer.lock().await.ack(ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reports events not handled: park, retry or skip them.
#[utoipa::path(
    post,
    path = "/v1/persistent-subscriptions/{stream}/{group}/nack",
    params(("stream" = String, Path, description = "stream name, or $all"), ("group" = String, Path, description = "group name")),
    request_body(content = NackIn, content_type = "application/json"),
    responses(
        (status = 204, description = "nacked"),
        (status = 400, description = "malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such group", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "persistent-subscriptions"
)]
pub(crate) async fn nack(
    State(state): State<AppState>,
    Path((stream, group)): Path<(String, String)>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    access.check(Operation::PersistentConsume(&stream)).await?;
    let source = source(&stream)?;
    require_json(&headers)?;
    let body = read_body(&headers, body, &state.options).await?;
    let request: NackIn = parse_json(&body)?;
    let action = match request.action.as_deref() {
        None | Some("retry") => NackAction::Retry,
        Some("park") => NackAction::Park,
        Some("skip") => NackAction::Skip,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "action {other:?} is none of park, retry, skip"
            )));
        }
    };
    let consumer = state.consumers.get(&source, &group).await?;
    let ids = request.ids.into_iter().map(EventId).collect();
    consumer.lock().await.nack(ids, action).await?;
    Ok(StatusCode::NO_CONTENT)
}
