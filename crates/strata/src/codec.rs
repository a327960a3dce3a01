//! How domain events are stored: JSON data under the variant's name as event type, and a
//! JSON metadata document carrying the schema version and the command id.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strata_core::{Bytes, EventId, ProposedEvent, RecordedEvent};

use crate::aggregate::DomainEvent;
use crate::command_id::CommandId;
use crate::error::{Error, Result};
use crate::upcaster::{EventShape, Upcasters};

/// Schema version of events stored without one (appended by other writers).
const SCHEMA_VERSION_UNSTATED: u32 = 1;

/// The metadata document of an event written by the toolkit.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventMetadata {
    #[serde(default = "schema_version_unstated")]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<CommandId>,
}

fn schema_version_unstated() -> u32 {
    SCHEMA_VERSION_UNSTATED
}

impl EventMetadata {
    /// Reads the metadata of a stored event; events without toolkit metadata are version 1.
    pub(crate) fn of(recorded: &RecordedEvent) -> Self {
        serde_json::from_slice(&recorded.metadata).unwrap_or(Self {
            schema_version: SCHEMA_VERSION_UNSTATED,
            command_id: None,
        })
    }
}

/// Serialises `event` for an append.
///
/// # Errors
/// [`Error::Encode`] when serde fails, or when the event's serialised name differs from its
/// declared [`DomainEvent::event_type`].
pub(crate) fn encode<E: DomainEvent>(
    event: &E,
    id: EventId,
    command_id: Option<CommandId>,
) -> Result<ProposedEvent> {
    let event_type = event.event_type();
    let encode_error = |reason: String| Error::Encode {
        event_type: event_type.to_owned(),
        reason,
    };
    let value = serde_json::to_value(event).map_err(|error| encode_error(error.to_string()))?;
    let (variant, data) = match value {
        Value::String(variant) => (variant, Value::Null),
        Value::Object(object) if object.len() == 1 => object
            .into_iter()
            .next()
            .ok_or_else(|| encode_error("an empty object".to_owned()))?,
        _ => {
            return Err(encode_error(
                "events must be enums in serde's default externally tagged form".to_owned(),
            ));
        }
    };
    if variant != event_type {
        return Err(encode_error(format!(
            "it serialises as variant {variant:?} but declares event type {event_type:?}"
        )));
    }
    let metadata = EventMetadata {
        schema_version: event.schema_version(),
        command_id,
    };
    let metadata =
        serde_json::to_vec(&metadata).map_err(|error| encode_error(error.to_string()))?;
    let data = serde_json::to_vec(&data).map_err(|error| encode_error(error.to_string()))?;
    Ok(ProposedEvent::json(event_type, data)
        .with_id(id)
        .with_metadata(Bytes::from(metadata)))
}

/// Reads a stored event as `E`, through the upcasters registered for its type and version.
///
/// # Errors
/// [`Error::Upcast`] when an upcaster fails; [`Error::Decode`] when the data is not JSON or
/// does not fit the event type reached.
pub fn decode_event<E: DomainEvent>(recorded: &RecordedEvent, upcasters: &Upcasters) -> Result<E> {
    let schema_version = EventMetadata::of(recorded).schema_version;
    let decode_error = |reason: String| Error::Decode {
        stream: recorded.stream.clone(),
        revision: recorded.revision,
        event_type: recorded.event_type.clone(),
        schema_version,
        reason,
    };
    let data: Value = if recorded.data.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&recorded.data)
            .map_err(|error| decode_error(format!("the data is not JSON: {error}")))?
    };
    let stored = EventShape::new(recorded.event_type.clone(), schema_version, data);
    let shape = upcasters
        .upcast(stored)
        .map_err(|(failed_at, reason)| Error::Upcast {
            stream: recorded.stream.clone(),
            revision: recorded.revision,
            event_type: failed_at.event_type,
            schema_version: failed_at.schema_version,
            reason,
        })?;
    let tagged = match shape.data {
        Value::Null => Value::String(shape.event_type),
        data => Value::Object([(shape.event_type, data)].into_iter().collect()),
    };
    serde_json::from_value(tagged).map_err(|error| decode_error(error.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use strata_core::{Position, Revision, StreamName, Timestamp};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Light {
        Switched { on: bool },
        Broken,
    }

    impl DomainEvent for Light {
        fn event_type(&self) -> &'static str {
            match self {
                Light::Switched { .. } => "Switched",
                Light::Broken => "Broken",
            }
        }
    }

    fn recorded(proposed: ProposedEvent) -> RecordedEvent {
        RecordedEvent {
            stream: StreamName::new("light-1").expect("name"),
            revision: Revision(0),
            position: Position(0),
            id: proposed.id,
            event_type: proposed.event_type.into(),
            content_type: proposed.content_type,
            data: proposed.data,
            metadata: proposed.metadata,
            created: Timestamp(0),
        }
    }

    #[test]
    fn events_round_trip_with_their_type_and_version() {
        for event in [Light::Switched { on: true }, Light::Broken] {
            let proposed = encode(&event, EventId::new_random(), None).expect("encode");
            assert_eq!(proposed.event_type, event.event_type());
            let stored = recorded(proposed);
            assert_eq!(EventMetadata::of(&stored).schema_version, 1);
            let decoded: Light = decode_event(&stored, &Upcasters::new()).expect("decode");
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn data_is_the_variant_content_only() {
        let proposed =
            encode(&Light::Switched { on: false }, EventId::new_random(), None).expect("encode");
        let data: Value = serde_json::from_slice(&proposed.data).expect("json");
        assert_eq!(data, json!({"on": false}));
    }

    #[test]
    fn undecodable_data_names_the_event() {
        let stored = recorded(ProposedEvent::json("Switched", r#"{"on":"yes"}"#));
        let error = decode_event::<Light>(&stored, &Upcasters::new()).expect_err("bad data");
        let message = error.to_string();
        assert!(
            message.contains("revision 0 of stream light-1"),
            "{message}"
        );
        assert!(message.contains("Switched"), "{message}");
    }
}
