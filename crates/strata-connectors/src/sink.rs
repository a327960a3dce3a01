//! The sink contract: publish a batch in order, report the broker's answer per event.
//! A new broker (Kafka, Redis Streams) is one more implementation of [`Sink`].

use async_trait::async_trait;
use base64::Engine as _;
use strata_core::{ContentType, RecordedEvent};

/// The broker's answer to one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Stored by the broker; `duplicate` when the broker recognised a re-send and dropped it.
    Acknowledged { duplicate: bool },
    /// Refused for good (too large, unroutable, a 4xx): the event goes to the dead-letter
    /// stream with `reason` and the connector moves on.
    Rejected { reason: String },
    /// Not known to be stored (broker unreachable, timeout, 5xx): retried, never skipped.
    Failed { error: String },
}

/// Publishes events to one broker.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Publishes `events` (in log order) and waits for the broker's answers, returning one
    /// [`Delivery`] per event in the same order. A sink may have them all in flight at once
    /// but must hand them to the broker in order over one ordered channel, so that a lost
    /// event never lets a later event of the same connection be stored before it. After the
    /// first `Failed`, later answers may be anything: the runtime re-sends from there.
    async fn publish(&mut self, events: &[RecordedEvent]) -> Vec<Delivery>;
}

/// Header names, as KurrentDB's connectors name them.
pub(crate) mod header {
    pub(crate) const RECORD_ID: &str = "esdb-record-id";
    pub(crate) const STREAM_ID: &str = "esdb-record-stream-id";
    pub(crate) const STREAM_REVISION: &str = "esdb-record-stream-revision";
    pub(crate) const LOG_POSITION: &str = "esdb-record-log-position";
    pub(crate) const SCHEMA_SUBJECT: &str = "esdb-record-schema-subject";
    pub(crate) const CONTENT_TYPE: &str = "esdb-record-content-type";
    pub(crate) const TIMESTAMP: &str = "esdb-record-timestamp";
    pub(crate) const METADATA: &str = "esdb-record-metadata";
    pub(crate) const METADATA_BASE64: &str = "esdb-record-metadata-base64";
}

/// The headers every sink attaches to an event: id, stream, revision, position, type,
/// content type, time, and the metadata (compact JSON, or base64 when it is not JSON).
/// Every value is one line of printable text.
pub fn event_headers(event: &RecordedEvent) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        (header::RECORD_ID, event.id.to_string()),
        (header::STREAM_ID, event.stream.as_str().to_owned()),
        (header::STREAM_REVISION, event.revision.0.to_string()),
        (header::LOG_POSITION, event.position.0.to_string()),
        (header::SCHEMA_SUBJECT, event.event_type.clone()),
        (
            header::CONTENT_TYPE,
            event.content_type.as_mime().to_owned(),
        ),
        (header::TIMESTAMP, event.created.to_rfc3339(6)),
    ];
    if !event.metadata.is_empty() {
        match serde_json::from_slice::<serde_json::Value>(&event.metadata) {
            Ok(json) => headers.push((header::METADATA, json.to_string())),
            Err(_) => headers.push((
                header::METADATA_BASE64,
                base64::engine::general_purpose::STANDARD.encode(&event.metadata),
            )),
        }
    }
    headers
}

/// An event as Strata's JSON: data and metadata inline when JSON, base64 otherwise.
pub fn event_json(event: &RecordedEvent) -> serde_json::Value {
    let (data_key, data) = payload_json(event.content_type, &event.data);
    let mut object = serde_json::json!({
        "id": event.id.to_string(),
        "stream": event.stream.as_str(),
        "revision": event.revision.0,
        "position": event.position.0,
        "type": event.event_type,
        "contentType": event.content_type.as_mime(),
        "created": event.created.to_rfc3339(6),
    });
    object[data_key] = data;
    if !event.metadata.is_empty() {
        let (key, metadata) = match serde_json::from_slice(&event.metadata) {
            Ok(json) => ("metadata", json),
            Err(_) => ("metadataBase64", base64_value(&event.metadata)),
        };
        object[key] = metadata;
    }
    object
}

/// An event as a CloudEvents 1.0 structured-mode object.
pub fn event_cloud_event(event: &RecordedEvent) -> serde_json::Value {
    let (data_key, data) = match payload_json(event.content_type, &event.data) {
        ("data", value) => ("data", value),
        (_, value) => ("data_base64", value),
    };
    let mut object = serde_json::json!({
        "specversion": "1.0",
        "id": event.id.to_string(),
        "source": format!("strata:{}", event.stream.as_str()),
        "type": event.event_type,
        "subject": event.stream.as_str(),
        "time": event.created.to_rfc3339(6),
        "datacontenttype": event.content_type.as_mime(),
        "esdbrecordstreamrevision": event.revision.0,
        "esdbrecordlogposition": event.position.0,
    });
    object[data_key] = data;
    object
}

fn payload_json(content_type: ContentType, data: &[u8]) -> (&'static str, serde_json::Value) {
    if content_type == ContentType::Json
        && let Ok(json) = serde_json::from_slice(data)
    {
        return ("data", json);
    }
    ("dataBase64", base64_value(data))
}

fn base64_value(bytes: &[u8]) -> serde_json::Value {
    serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}
