//! Strata's types to the client's and back.

use kurrentdb::EventData;
use strata_core::{
    ContentType, Error, EventId, ExpectedRevision, Position, ProposedEvent, RecordedEvent, Result,
    Revision, StreamName, Timestamp,
};

/// The metadata key KurrentDB servers put the creation time under, in .NET ticks.
const CREATED_KEY: &str = "created";
/// The metadata key of the content type.
const CONTENT_TYPE_KEY: &str = "content-type";

pub(crate) fn stream_state(expected: ExpectedRevision) -> kurrentdb::StreamState {
    match expected {
        ExpectedRevision::Any => kurrentdb::StreamState::Any,
        ExpectedRevision::NoStream => kurrentdb::StreamState::NoStream,
        ExpectedRevision::StreamExists => kurrentdb::StreamState::StreamExists,
        ExpectedRevision::Exact(revision) => kurrentdb::StreamState::StreamRevision(revision),
    }
}

/// A proposed event as the client sends it. The client's only JSON constructor serialises
/// a value, so JSON data travels as a raw JSON value: the exact bytes, checked to be one
/// JSON document (the client cannot send a JSON-marked event whose data is not JSON).
pub(crate) fn event_data(event: ProposedEvent) -> Result<EventData> {
    let data = match event.content_type {
        ContentType::Json => {
            let text = std::str::from_utf8(&event.data)
                .ok()
                .and_then(|text| serde_json::value::RawValue::from_string(text.to_owned()).ok())
                .filter(|raw| raw.get().len() == event.data.len())
                .ok_or_else(|| Error::InvalidArgument {
                    reason: format!(
                        "event {} is marked JSON but its data is not exactly one JSON document; \
                         over a server it must be, or be sent as binary",
                        event.id
                    ),
                })?;
            EventData::json(&event.event_type, &text).map_err(|error| Error::InvalidArgument {
                reason: format!("event {}: {error}", event.id),
            })?
        }
        ContentType::Binary => EventData::binary(&event.event_type, event.data),
    };
    let data = data.id(event.id.0);
    Ok(if event.metadata.is_empty() {
        data
    } else {
        data.metadata(event.metadata)
    })
}

/// A recorded event as Strata names its fields.
pub(crate) fn recorded(event: kurrentdb::RecordedEvent) -> RecordedEvent {
    let content_type = match event.metadata.get(CONTENT_TYPE_KEY).map(String::as_str) {
        Some("application/json") => ContentType::Json,
        Some(_) => ContentType::Binary,
        None if event.is_json => ContentType::Json,
        None => ContentType::Binary,
    };
    // Ticks keep the server's 100 ns precision; the client's own date is the fallback.
    let created = event
        .metadata
        .get(CREATED_KEY)
        .and_then(|ticks| ticks.parse::<i64>().ok())
        .map(|ticks| ticks.saturating_mul(100))
        .or_else(|| event.created.timestamp_nanos_opt())
        .unwrap_or(0);
    RecordedEvent {
        // Names read back were checked when written; metadata streams may be two bytes
        // over the limit a caller's name has.
        stream: StreamName::from_stored(event.stream_id()),
        revision: Revision(event.revision),
        position: Position(event.position.commit),
        id: EventId(event.id),
        event_type: event.event_type,
        content_type,
        data: event.data,
        metadata: event.custom_metadata,
        created: Timestamp(created),
    }
}
