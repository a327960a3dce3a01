//! Persistent subscription groups over HTTP: create (`PUT`), update (`PATCH`), delete, info,
//! list, and replaying parked events. Consuming is in `consume.rs`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;

use crate::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_core::StreamName;
use strata_persistent::{
    ALL_STREAM, ConsumerStrategy, FilterSpec, GroupInfo, GroupSettings, StartFrom,
    SubscriptionSource,
};

use crate::access::{Access, Operation};
use crate::problem::{ApiError, Problem};
use crate::state::{AppState, parse_json, read_body, require_json};

/// The source of a group named in a path: `$all` or a stream.
pub(crate) fn source(stream: &str) -> Result<SubscriptionSource, ApiError> {
    if stream == ALL_STREAM {
        Ok(SubscriptionSource::All)
    } else {
        Ok(SubscriptionSource::Stream(StreamName::new(stream)?))
    }
}

/// A group's settings; every field is optional and defaults as in KurrentDB.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SettingsIn {
    /// `start`, `end` (default), or a revision (stream) / position (`$all`).
    #[schema(value_type = Option<String>)]
    start_from: Option<serde_json::Value>,
    resolve_links: Option<bool>,
    extra_statistics: Option<bool>,
    message_timeout_ms: Option<u64>,
    max_retry_count: Option<u32>,
    live_buffer_size: Option<u32>,
    read_batch_size: Option<u32>,
    history_buffer_size: Option<u32>,
    checkpoint_after_ms: Option<u64>,
    min_checkpoint_count: Option<u32>,
    max_checkpoint_count: Option<u32>,
    max_subscriber_count: Option<u32>,
    /// `DispatchToSingle`, `RoundRobin` (default), `Pinned` or `PinnedByCorrelation`.
    consumer_strategy: Option<String>,
    /// `$all` groups only.
    filter: Option<FilterIn>,
}

/// A filter of a `$all` group: prefixes or a regex, on stream names or event types.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FilterIn {
    #[serde(default)]
    on_event_type: bool,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    regex: String,
}

impl SettingsIn {
    fn into_settings(
        self,
        mut settings: GroupSettings,
    ) -> Result<(GroupSettings, Option<FilterSpec>), ApiError> {
        if let Some(start) = self.start_from {
            settings.start_from = match &start {
                serde_json::Value::String(name) if name == "start" => StartFrom::Start,
                serde_json::Value::String(name) if name == "end" => StartFrom::End,
                serde_json::Value::Number(number) => {
                    number.as_u64().map(StartFrom::at).ok_or_else(|| {
                        ApiError::bad_request("startFrom is not a revision or position")
                    })?
                }
                _ => return Err(ApiError::bad_request("startFrom is start, end or a number")),
            };
        }
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(value) = self.$field { settings.$field = value; })* };
        }
        set!(
            resolve_links,
            extra_statistics,
            message_timeout_ms,
            max_retry_count,
            live_buffer_size,
            read_batch_size,
            history_buffer_size,
            checkpoint_after_ms,
            min_checkpoint_count,
            max_checkpoint_count,
            max_subscriber_count
        );
        if let Some(name) = self.consumer_strategy {
            settings.consumer_strategy = ConsumerStrategy::from_name(&name).ok_or_else(|| {
                ApiError::bad_request(format!("consumerStrategy {name:?} is unknown"))
            })?;
        }
        let filter = self.filter.map(|filter| FilterSpec {
            on_event_type: filter.on_event_type,
            regex: filter.regex,
            prefixes: filter.prefixes,
        });
        Ok((settings, filter))
    }
}

/// A group as `info` and `list` show it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupOut {
    stream: String,
    group: String,
    status: String,
    #[schema(value_type = String)]
    start_from: String,
    consumer_strategy: String,
    max_retry_count: u32,
    message_timeout_ms: u64,
    connections: Vec<ConnectionOut>,
    total_items: u64,
    last_checkpointed_place: Option<u64>,
    last_known_place: Option<u64>,
    ready_count: u64,
    retry_count: u64,
    in_flight_count: u64,
    parked_count: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectionOut {
    name: String,
    in_flight: usize,
    available_slots: usize,
    total_items: u64,
}

impl From<GroupInfo> for GroupOut {
    fn from(info: GroupInfo) -> Self {
        GroupOut {
            stream: info.source.to_string(),
            group: info.group,
            status: info.status,
            start_from: match info.settings.start_from {
                StartFrom::Start => "start".to_owned(),
                StartFrom::End => "end".to_owned(),
                StartFrom::At(place) => place.to_string(),
            },
            consumer_strategy: info.settings.consumer_strategy.name().to_owned(),
            max_retry_count: info.settings.max_retry_count,
            message_timeout_ms: info.settings.message_timeout_ms,
            connections: info
                .connections
                .into_iter()
                .map(|connection| ConnectionOut {
                    name: connection.name,
                    in_flight: connection.in_flight,
                    available_slots: connection.available_slots,
                    total_items: connection.total_items,
                })
                .collect(),
            total_items: info.total_items,
            last_checkpointed_place: info.last_checkpointed_place,
            last_known_place: info.last_known_place,
            ready_count: info.ready_count,
            retry_count: info.retry_count,
            in_flight_count: info.in_flight_count,
            parked_count: info.parked_count,
        }
    }
}

async fn settings_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<SettingsIn, ApiError> {
    let body = read_body(headers, body, &state.options).await?;
    if body.is_empty() {
        return Ok(SettingsIn::default());
    }
    require_json(headers)?;
    parse_json(&body)
}

/// Creates a group.
#[utoipa::path(
    put,
    path = "/v1/persistent-subscriptions/{stream}/{group}",
    params(("stream" = String, Path, description = "stream name, or $all"), ("group" = String, Path, description = "group name")),
    request_body(content = SettingsIn, content_type = "application/json"),
    responses(
        (status = 201, description = "created"),
        (status = 400, description = "invalid settings", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the group exists, or the group limit is reached", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "persistent-subscriptions"
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Path((stream, group)): Path<(String, String)>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    access.check(Operation::PersistentManage).await?;
    let source = source(&stream)?;
    let settings_in = settings_body(&state, &headers, body).await?;
    let defaults = GroupSettings {
        consumer_strategy: ConsumerStrategy::RoundRobin,
        ..GroupSettings::default()
    };
    let (settings, filter) = settings_in.into_settings(defaults)?;
    state
        .persistent
        .create(&source, &group, settings, filter)
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

/// Replaces a group's settings (fields left out keep their value); consumers reconnect.
#[utoipa::path(
    patch,
    path = "/v1/persistent-subscriptions/{stream}/{group}",
    params(("stream" = String, Path, description = "stream name, or $all"), ("group" = String, Path, description = "group name")),
    request_body(content = SettingsIn, content_type = "application/json"),
    responses(
        (status = 204, description = "updated"),
        (status = 400, description = "invalid settings", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such group", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "persistent-subscriptions"
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    Path((stream, group)): Path<(String, String)>,
    access: Access,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    access.check(Operation::PersistentManage).await?;
    let source = source(&stream)?;
    let settings_in = settings_body(&state, &headers, body).await?;
    if settings_in.filter.is_some() {
        return Err(ApiError::bad_request(
            "a group's filter cannot be changed; delete and create it",
        ));
    }
    let current = state.persistent.info(&source, &group).await?.settings;
    let (settings, _) = settings_in.into_settings(current)?;
    state.persistent.update(&source, &group, settings).await?;
    state.consumers.forget(&source, &group);
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a group.
#[utoipa::path(
    delete,
    path = "/v1/persistent-subscriptions/{stream}/{group}",
    params(("stream" = String, Path, description = "stream name, or $all"), ("group" = String, Path, description = "group name")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such group", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "persistent-subscriptions"
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path((stream, group)): Path<(String, String)>,
    access: Access,
) -> Result<StatusCode, ApiError> {
    access.check(Operation::PersistentManage).await?;
    let source = source(&stream)?;
    state.persistent.delete(&source, &group).await?;
    state.consumers.forget(&source, &group);
    Ok(StatusCode::NO_CONTENT)
}

/// A group's settings and statistics.
#[utoipa::path(
    get,
    path = "/v1/persistent-subscriptions/{stream}/{group}",
    params(("stream" = String, Path, description = "stream name, or $all"), ("group" = String, Path, description = "group name")),
    responses(
        (status = 200, description = "the group", body = GroupOut),
        (status = 404, description = "no such group", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "persistent-subscriptions"
)]
pub(crate) async fn info(
    State(state): State<AppState>,
    Path((stream, group)): Path<(String, String)>,
    access: Access,
) -> Result<Json<GroupOut>, ApiError> {
    access.check(Operation::PersistentManage).await?;
    let source = source(&stream)?;
    Ok(Json(state.persistent.info(&source, &group).await?.into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only the groups of this stream (or `$all`).
    stream: Option<String>,
}

/// Every group, or the groups of one stream.
#[utoipa::path(
    get,
    path = "/v1/persistent-subscriptions",
    params(ListQuery),
    responses(
        (status = 200, description = "the groups", body = Vec<GroupOut>),
        (status = 400, description = "bad stream name", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "persistent-subscriptions"
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
    access: Access,
) -> Result<Json<Vec<GroupOut>>, ApiError> {
    access.check(Operation::PersistentManage).await?;
    let source = query.stream.as_deref().map(source).transpose()?;
    let groups = state.persistent.list(source.as_ref()).await?;
    Ok(Json(groups.into_iter().map(GroupOut::from).collect()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReplayQuery {
    /// Replay at most this many parked events (all when absent).
    stop_at: Option<u64>,
}

/// Delivers the group's parked events again, ahead of new ones.
#[utoipa::path(
    post,
    path = "/v1/persistent-subscriptions/{stream}/{group}/replay-parked",
    params(("stream" = String, Path, description = "stream name, or $all"), ("group" = String, Path, description = "group name"), ReplayQuery),
    responses(
        (status = 204, description = "replaying"),
        (status = 404, description = "no such group", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "persistent-subscriptions"
)]
pub(crate) async fn replay_parked(
    State(state): State<AppState>,
    Path((stream, group)): Path<(String, String)>,
    Query(query): Query<ReplayQuery>,
    access: Access,
) -> Result<StatusCode, ApiError> {
    access.check(Operation::PersistentManage).await?;
    let source = source(&stream)?;
    state
        .persistent
        .replay_parked(&source, &group, query.stop_at)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
