//! `PersistentSubscriptions.GetInfo`: a group's settings and statistics, in the text forms
//! clients parse (revisions for stream groups, `C:<commit>/P:<prepare>` for `$all`).

use strata_persistent::{GroupInfo, PersistentSubscriptions, StartFrom, SubscriptionSource};
use tonic::{Request, Response, Status};

use crate::convert::invalid;
use crate::persistent::settings::{group_name, source};
use crate::persistent::status::persistent_status;
use crate::proto::event_store::client::persistent_subscriptions::get_info_req::options::StreamOption;
use crate::proto::event_store::client::persistent_subscriptions::subscription_info::ConnectionInfo;
use crate::proto::event_store::client::persistent_subscriptions::{
    GetInfoReq, GetInfoResp, SubscriptionInfo,
};

pub(crate) async fn get_info(
    manager: &PersistentSubscriptions,
    request: Request<GetInfoReq>,
) -> Result<Response<GetInfoResp>, Status> {
    let options = request
        .into_inner()
        .options
        .ok_or_else(|| invalid("the request has no options"))?;
    let subscription_source = match &options.stream_option {
        Some(StreamOption::StreamIdentifier(stream)) => source(Some(stream), false)?,
        Some(StreamOption::All(_)) => source(None, true)?,
        None => return Err(invalid("the request names neither a stream nor $all")),
    };
    let group = group_name(options.group_name)?;
    let info = manager
        .info(&subscription_source, &group)
        .await
        .map_err(persistent_status)?;
    Ok(Response::new(GetInfoResp {
        subscription_info: Some(subscription_info(info)),
    }))
}

fn clamp_i32(value: impl TryInto<i32>) -> i32 {
    value.try_into().unwrap_or(i32::MAX)
}

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A place as clients print it.
fn place_text(source: &SubscriptionSource, place: Option<u64>) -> String {
    match (source, place) {
        (_, None) => String::new(),
        (SubscriptionSource::All, Some(position)) => format!("C:{position}/P:{position}"),
        (SubscriptionSource::Stream(_), Some(revision)) => revision.to_string(),
    }
}

/// The start as clients parse it: `0`/`C:0/P:0` is the start, `-1`/`C:-1/P:-1` the end.
fn start_text(source: &SubscriptionSource, start_from: StartFrom) -> String {
    match (source, start_from) {
        (SubscriptionSource::All, StartFrom::Start) => "C:0/P:0".to_owned(),
        (SubscriptionSource::All, StartFrom::End) => "C:-1/P:-1".to_owned(),
        (SubscriptionSource::Stream(_), StartFrom::Start) => "0".to_owned(),
        (SubscriptionSource::Stream(_), StartFrom::End) => "-1".to_owned(),
        (_, StartFrom::At(place)) => place_text(source, Some(place)),
    }
}

pub(crate) fn subscription_info(info: GroupInfo) -> SubscriptionInfo {
    let settings = &info.settings;
    SubscriptionInfo {
        event_source: info.source.to_string(),
        group_name: info.group.clone(),
        status: info.status.clone(),
        connections: info
            .connections
            .iter()
            .map(|connection| ConnectionInfo {
                from: connection.name.clone(),
                username: String::new(),
                average_items_per_second: 0,
                total_items: clamp_i64(connection.total_items),
                count_since_last_measurement: 0,
                observed_measurements: Vec::new(),
                available_slots: clamp_i32(connection.available_slots),
                in_flight_messages: clamp_i32(connection.in_flight),
                connection_name: connection.name.clone(),
            })
            .collect(),
        average_per_second: clamp_i32(info.items_per_second),
        total_items: clamp_i64(info.total_items),
        count_since_last_measurement: 0,
        last_checkpointed_event_position: place_text(&info.source, info.last_checkpointed_place),
        last_known_event_position: place_text(&info.source, info.last_known_place),
        resolve_link_tos: settings.resolve_links,
        start_from: start_text(&info.source, settings.start_from),
        message_timeout_milliseconds: clamp_i32(settings.message_timeout_ms),
        extra_statistics: settings.extra_statistics,
        max_retry_count: clamp_i32(settings.max_retry_count),
        live_buffer_size: clamp_i32(settings.live_buffer_size),
        buffer_size: clamp_i32(settings.history_buffer_size),
        read_batch_size: clamp_i32(settings.read_batch_size),
        check_point_after_milliseconds: clamp_i32(settings.checkpoint_after_ms),
        min_check_point_count: clamp_i32(settings.min_checkpoint_count),
        max_check_point_count: clamp_i32(settings.max_checkpoint_count),
        read_buffer_count: clamp_i32(info.ready_count),
        live_buffer_count: clamp_i64(info.window_count),
        retry_buffer_count: clamp_i32(info.retry_count),
        total_in_flight_messages: clamp_i32(info.in_flight_count),
        outstanding_messages_count: clamp_i32(info.in_flight_count),
        named_consumer_strategy: settings.consumer_strategy.name().to_owned(),
        max_subscriber_count: clamp_i32(settings.max_subscriber_count),
        parked_message_count: clamp_i64(info.parked_count),
    }
}

#[cfg(test)]
mod tests {
    use strata_core::StreamName;

    use super::*;

    #[test]
    fn places_and_starts_use_the_forms_clients_parse() {
        let stream = SubscriptionSource::Stream(StreamName::new("s").unwrap());
        assert_eq!(place_text(&stream, Some(7)), "7");
        assert_eq!(place_text(&SubscriptionSource::All, Some(7)), "C:7/P:7");
        assert_eq!(place_text(&stream, None), "");
        assert_eq!(start_text(&stream, StartFrom::End), "-1");
        assert_eq!(
            start_text(&SubscriptionSource::All, StartFrom::Start),
            "C:0/P:0"
        );
        assert_eq!(
            start_text(&SubscriptionSource::All, StartFrom::At(42)),
            "C:42/P:42"
        );
    }
}
