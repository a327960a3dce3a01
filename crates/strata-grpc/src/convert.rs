//! Between wire messages and `strata-core` types: stream names, UUIDs, proposed and
//! recorded events, positions.

use std::collections::HashMap;

use prost::bytes::Bytes;
use strata_core::{ContentType, EventId, ProposedEvent, RecordedEvent, StreamName};
use tonic::Status;

use crate::proposed_message::ProposedMetadata;
#[cfg(test)]
use crate::proto::event_store::client::streams::read_resp::read_event;
use crate::proto::event_store::client::uuid as wire;
use crate::proto::event_store::client::{StreamIdentifier, Uuid};

/// Metadata key naming the event type (required on every proposed event).
pub(crate) const TYPE_KEY: &str = "type";
/// Metadata key naming the content type (required on every proposed event).
pub(crate) const CONTENT_TYPE_KEY: &str = "content-type";
/// Metadata key with the recorded time, in .NET ticks since the Unix epoch.
pub(crate) const CREATED_KEY: &str = "created";

pub(crate) fn invalid(reason: impl Into<String>) -> Status {
    Status::invalid_argument(reason.into())
}

/// The stream a request names.
pub(crate) fn stream_name(identifier: Option<&StreamIdentifier>) -> Result<StreamName, Status> {
    let identifier = identifier.ok_or_else(|| invalid("the request names no stream"))?;
    let name = std::str::from_utf8(&identifier.stream_name)
        .map_err(|_| invalid("the stream name is not UTF-8"))?;
    StreamName::new(name).map_err(|error| invalid(error.to_string()))
}

pub(crate) fn stream_identifier(stream: &StreamName) -> StreamIdentifier {
    StreamIdentifier {
        stream_name: Bytes::copy_from_slice(stream.as_str().as_bytes()),
    }
}

/// How a client wants UUIDs written in answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UuidFormat {
    Structured,
    String,
}

/// Reads a UUID in either wire form.
pub(crate) fn event_id(value: Option<&Uuid>) -> Result<EventId, Status> {
    match value.and_then(|value| value.value.as_ref()) {
        Some(wire::Value::Structured(structured)) => {
            let high = structured.most_significant_bits.cast_unsigned();
            let low = structured.least_significant_bits.cast_unsigned();
            Ok(EventId(::uuid::Uuid::from_u64_pair(high, low)))
        }
        Some(wire::Value::String(text)) => ::uuid::Uuid::parse_str(text)
            .map(EventId)
            .map_err(|error| invalid(format!("event id {text:?} is not a UUID: {error}"))),
        None => Err(invalid("an event id is required")),
    }
}

pub(crate) fn wire_uuid(id: EventId, format: UuidFormat) -> Uuid {
    let value = match format {
        UuidFormat::Structured => {
            let (high, low) = id.0.as_u64_pair();
            wire::Value::Structured(wire::Structured {
                most_significant_bits: high.cast_signed(),
                least_significant_bits: low.cast_signed(),
            })
        }
        UuidFormat::String => wire::Value::String(id.0.hyphenated().to_string()),
    };
    Uuid { value: Some(value) }
}

/// A proposed message as the store's proposed event: `type` and `content-type` are
/// required metadata; `application/json` marks JSON.
pub(crate) fn proposed_event(
    id: Option<&Uuid>,
    mut metadata: ProposedMetadata,
    custom_metadata: Bytes,
    data: Bytes,
) -> Result<ProposedEvent, Status> {
    let id = event_id(id)?;
    let event_type = metadata.take_event_type().ok_or_else(|| {
        invalid(format!(
            "event {id} lacks the required metadata property {TYPE_KEY:?}"
        ))
    })?;
    let content_type = metadata.content_type().ok_or_else(|| {
        invalid(format!(
            "event {id} lacks the required metadata property {CONTENT_TYPE_KEY:?}"
        ))
    })?;
    Ok(ProposedEvent {
        id,
        event_type,
        content_type: if content_type == ContentType::Json.as_mime() {
            ContentType::Json
        } else {
            ContentType::Binary
        },
        data,
        metadata: custom_metadata,
    })
}

/// A recorded event as the wire's `RecordedEvent`; commit and prepare positions are both
/// the event's log position. (Reads encode theirs by hand, `read_answer.rs`; its tests
/// compare against this.)
#[cfg(test)]
pub(crate) fn recorded_event(
    event: &RecordedEvent,
    format: UuidFormat,
) -> read_event::RecordedEvent {
    read_event::RecordedEvent {
        id: Some(wire_uuid(event.id, format)),
        stream_identifier: Some(stream_identifier(&event.stream)),
        stream_revision: event.revision.0,
        prepare_position: event.position.0,
        commit_position: event.position.0,
        metadata: system_metadata(event),
        custom_metadata: event.metadata.clone(),
        data: event.data.clone(),
    }
}

/// The metadata map of a recorded event on the wire: type, content type, created.
pub(crate) fn system_metadata(event: &RecordedEvent) -> HashMap<String, String> {
    HashMap::from([
        (TYPE_KEY.to_owned(), event.event_type.clone()),
        (
            CONTENT_TYPE_KEY.to_owned(),
            event.content_type.as_mime().to_owned(),
        ),
        (
            CREATED_KEY.to_owned(),
            event.created.unix_ticks().to_string(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_round_trip_in_both_forms() {
        let id = EventId::new_random();
        for format in [UuidFormat::Structured, UuidFormat::String] {
            assert_eq!(event_id(Some(&wire_uuid(id, format))).unwrap(), id);
        }
    }

    #[test]
    fn structured_uuid_halves_are_big_endian() {
        let id = EventId(::uuid::Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap());
        let Some(wire::Value::Structured(halves)) = wire_uuid(id, UuidFormat::Structured).value
        else {
            panic!("structured");
        };
        assert_eq!(halves.most_significant_bits, 0x0011_2233_4455_6677);
        assert_eq!(
            halves.least_significant_bits.cast_unsigned(),
            0x8899_aabb_ccdd_eeff
        );
    }

    #[test]
    fn bad_uuids_and_missing_type_are_invalid_arguments() {
        let bad = Uuid {
            value: Some(wire::Value::String("not-a-uuid".into())),
        };
        assert_eq!(
            event_id(Some(&bad)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let id = wire_uuid(EventId::new_random(), UuidFormat::String);
        let metadata: ProposedMetadata =
            [(CONTENT_TYPE_KEY.to_owned(), "application/json".to_owned())]
                .into_iter()
                .collect();
        let refused = proposed_event(Some(&id), metadata, Bytes::new(), Bytes::new()).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("type"));
    }
}
