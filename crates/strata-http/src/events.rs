//! Events on the wire: what a client proposes, and how recorded events are shown.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use strata_core::system_streams::{ResolvedEvent, resolve_links};
use strata_core::{
    Bytes, ContentType, EventId, EventStore, ProposedEvent, RecordedEvent, Timestamp,
};

use crate::problem::ApiError;

/// An event to append. `data` is any JSON; binary data goes in `dataBase64` instead.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct EventIn {
    /// A UUID; generated when absent. Re-sending an event with the same id to the same
    /// place writes nothing and answers as the first time.
    #[schema(value_type = Option<String>, format = "uuid")]
    pub(crate) id: Option<uuid::Uuid>,
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    #[schema(value_type = Option<Object>)]
    pub(crate) data: Option<Box<RawValue>>,
    /// Binary data (content type `application/octet-stream`), base64.
    pub(crate) data_base64: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub(crate) metadata: Option<Box<RawValue>>,
    /// DCB tags (docs/DCB.md), stored in the metadata as `$tags`; the metadata must then be
    /// a JSON object or absent.
    #[serde(default)]
    pub(crate) tags: Option<Vec<String>>,
}

impl EventIn {
    pub(crate) fn into_proposed(self) -> Result<ProposedEvent, ApiError> {
        let (content_type, data) = match (self.data, self.data_base64) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "an event has either data (JSON) or dataBase64 (binary), not both",
                ));
            }
            (Some(json), None) => (ContentType::Json, Bytes::from(json.get().to_owned())),
            (None, Some(encoded)) => {
                let decoded = BASE64.decode(encoded.as_bytes()).map_err(|error| {
                    ApiError::bad_request(format!("dataBase64 is not base64: {error}"))
                })?;
                (ContentType::Binary, Bytes::from(decoded))
            }
            (None, None) => (ContentType::Json, Bytes::from_static(b"{}")),
        };
        let tags = self.tags;
        let event = ProposedEvent {
            id: self.id.map_or_else(EventId::new_random, EventId),
            event_type: self.event_type.into(),
            content_type,
            data,
            metadata: self.metadata.map_or_else(Bytes::new, |metadata| {
                Bytes::from(metadata.get().to_owned())
            }),
        };
        match tags {
            Some(tags) => Ok(event.with_tags(tags)?),
            None => Ok(event),
        }
    }
}

/// A recorded event.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventOut<'a> {
    pub(crate) stream: &'a str,
    pub(crate) revision: u64,
    pub(crate) position: u64,
    #[schema(value_type = String, format = "uuid")]
    pub(crate) id: uuid::Uuid,
    #[serde(rename = "type")]
    pub(crate) event_type: &'a str,
    pub(crate) content_type: &'static str,
    /// The data when it is JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) data: Option<&'a RawValue>,
    /// The data when it is binary (or not valid JSON), base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) metadata: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metadata_base64: Option<String>,
    /// RFC 3339, UTC.
    pub(crate) created: String,
}

impl<'a> EventOut<'a> {
    pub(crate) fn new(event: &'a RecordedEvent) -> Self {
        let json_data = match event.content_type {
            ContentType::Json => serde_json::from_slice::<&RawValue>(&event.data).ok(),
            ContentType::Binary => None,
        };
        let data_base64 = json_data.is_none().then(|| BASE64.encode(&event.data));
        let json_metadata = if event.metadata.is_empty() {
            None
        } else {
            serde_json::from_slice::<&RawValue>(&event.metadata).ok()
        };
        let metadata_base64 = (json_metadata.is_none() && !event.metadata.is_empty())
            .then(|| BASE64.encode(&event.metadata));
        EventOut {
            stream: event.stream.as_str(),
            revision: event.revision.0,
            position: event.position.0,
            id: event.id.0,
            event_type: &event.event_type,
            content_type: event.content_type.as_mime(),
            data: json_data,
            data_base64,
            metadata: json_metadata,
            metadata_base64,
            created: rfc3339_nanos(event.created),
        }
    }
}

/// `created` in RFC 3339 with nanoseconds, as `Timestamp::to_rfc3339(9)` writes it. The date
/// and time of day are formatted once per second per thread (events read together mostly
/// share their second; formatting them each time was half the cost of showing an event).
pub(crate) fn rfc3339_nanos(created: Timestamp) -> String {
    thread_local! {
        static SECOND: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let second = created.0.div_euclid(1_000_000_000);
    let Some(whole_second) = second.checked_mul(1_000_000_000) else {
        return created.to_rfc3339(9);
    };
    let mut nanos = created.0 - whole_second;
    SECOND.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second {
            let mut text = Timestamp(whole_second).to_rfc3339(0);
            text.pop(); // its `Z`
            *cache = (second, text);
        }
        let mut digits = [b'0'; 9];
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (nanos % 10) as u8;
            nanos /= 10;
        }
        let mut out = String::with_capacity(cache.1.len() + 11);
        out.push_str(&cache.1);
        out.push('.');
        out.extend(digits.iter().map(|&digit| char::from(digit)));
        out.push('Z');
        out
    })
}

/// An event as a read shows it. With `resolveLinks=true`, a link (`$>`) shows the event it
/// points at, with the link under `link`; a link whose target is gone shows as read, alone.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ResolvedOut<'a> {
    #[serde(flatten)]
    event: EventOut<'a>,
    /// The link the event was reached through.
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<EventOut<'a>>,
}

impl<'a> ResolvedOut<'a> {
    pub(crate) fn new(resolved: &'a ResolvedEvent) -> Self {
        match (&resolved.event, &resolved.link) {
            (Some(event), link) => ResolvedOut {
                event: EventOut::new(event),
                link: link.as_ref().map(EventOut::new),
            },
            (None, _) => ResolvedOut {
                event: EventOut::new(resolved.original()),
                link: None,
            },
        }
    }
}

/// Appends `event` as one JSON object to `out`.
pub(crate) fn write_event(out: &mut Vec<u8>, event: &ResolvedEvent) {
    // Serializing borrowed fields into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &ResolvedOut::new(event));
}

/// `events` as a read shows them: links resolved through `store` when `resolve` is set.
///
/// # Errors
/// Storage errors from reading the events links point at.
pub(crate) async fn resolve(
    store: &dyn EventStore,
    events: Vec<RecordedEvent>,
    resolve: bool,
) -> strata_core::Result<Vec<ResolvedEvent>> {
    if resolve {
        resolve_links(store, events).await
    } else {
        Ok(events.into_iter().map(ResolvedEvent::plain).collect())
    }
}

/// A `true` / `false` query parameter; absent is false.
pub(crate) fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name} {other:?} is neither true nor false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_is_written_as_the_core_formatter_writes_it() {
        for nanos in [
            0,
            1,
            999_999_999,
            1_000_000_000,
            1_764_842_400_123_456_789,
            1_764_842_400_123_456_790,
            1_764_842_401_000_000_007,
            -1,
            -1_000_000_001,
            i64::MAX,
            i64::MIN,
        ] {
            let created = Timestamp(nanos);
            assert_eq!(rfc3339_nanos(created), created.to_rfc3339(9), "{nanos}");
        }
    }
}
