//! The line format of `strata export` and `strata import` (docs/CLI.md describes it):
//!
//! ```text
//! {"stream":"order-1","revision":0,"id":"…","type":"OrderPlaced","content_type":"application/json","data":{"total":10},"metadata":{"by":"a"}}
//! ```
//!
//! `data` and `metadata` carry the stored bytes verbatim when those bytes are exactly one
//! JSON document on one line; otherwise `data_base64` / `metadata_base64` carry them in
//! standard base64. Empty metadata is left out. Keys always come in this order, so the same
//! events give the same bytes. Position and creation time are left out: the store assigns
//! them, so an import cannot keep them, and an export of the copy equals the original.
//! A tombstone is `{"stream":"order-1","type":"$streamDeleted"}`: the store writes that
//! record itself (its id and revision are its own), so only the stream is kept. An ordinary
//! event that happens to have that type keeps its revision and id, which tell it apart.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::value::RawValue;
use strata_core::{
    ContentType, EventId, ProposedEvent, RecordedEvent, TOMBSTONE_EVENT_TYPE, TOMBSTONE_REVISION,
};

/// One event as a line (without the newline).
pub(crate) fn encode(event: &RecordedEvent) -> String {
    if event.event_type == TOMBSTONE_EVENT_TYPE && event.revision.0 == TOMBSTONE_REVISION {
        return format!(
            "{{\"stream\":{},\"type\":\"{TOMBSTONE_EVENT_TYPE}\"}}",
            quoted(event.stream.as_str())
        );
    }
    let mut line = String::with_capacity(160 + event.data.len() + event.metadata.len());
    line.push_str("{\"stream\":");
    line.push_str(&quoted(event.stream.as_str()));
    line.push_str(",\"revision\":");
    line.push_str(&event.revision.0.to_string());
    line.push_str(",\"id\":\"");
    line.push_str(&event.id.0.to_string());
    line.push_str("\",\"type\":");
    line.push_str(&quoted(&event.event_type));
    line.push_str(",\"content_type\":\"");
    line.push_str(event.content_type.as_mime());
    line.push('"');
    push_payload(&mut line, "data", &event.data);
    if !event.metadata.is_empty() {
        push_payload(&mut line, "metadata", &event.metadata);
    }
    line.push('}');
    line
}

fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// `,"key":RAW` when `bytes` are one JSON document on one line, else `,"key_base64":"…"`.
fn push_payload(line: &mut String, key: &str, bytes: &[u8]) {
    match verbatim_json(bytes) {
        Some(text) => {
            line.push_str(&format!(",\"{key}\":"));
            line.push_str(text);
        }
        None => {
            line.push_str(&format!(",\"{key}_base64\":\""));
            line.push_str(&BASE64.encode(bytes));
            line.push('"');
        }
    }
}

/// `bytes` as text when they are exactly one JSON document with no line break in them.
/// `null` is not: a line's `"data":null` reads back as no data at all.
fn verbatim_json(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.contains(['\n', '\r']) || text == "null" {
        return None;
    }
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    (raw.get().len() == text.len()).then_some(text)
}

/// One line as read back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    stream: String,
    #[serde(default)]
    revision: Option<u64>,
    #[serde(default)]
    id: Option<uuid::Uuid>,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(default)]
    metadata_base64: Option<String>,
}

/// What one line asks for.
#[derive(Debug)]
pub(crate) enum Imported {
    Event(ImportedEvent),
    Tombstone { stream: String },
}

/// An event read from a line: where it goes and what it is.
#[derive(Debug)]
pub(crate) struct ImportedEvent {
    pub(crate) stream: String,
    pub(crate) revision: u64,
    pub(crate) event: ProposedEvent,
}

/// Parses one line; the error says what is wrong with it (the caller adds the line number).
pub(crate) fn decode(text: &str) -> Result<Imported, String> {
    let line: Line<'_> = serde_json::from_str(text).map_err(|error| {
        format!(
            "column {}: {}",
            error.column(),
            error
                .to_string()
                .rsplit_once(" at line ")
                .map_or(error.to_string(), |(what, _)| what.to_owned())
        )
    })?;
    if line.event_type == TOMBSTONE_EVENT_TYPE && line.revision.is_none() && line.id.is_none() {
        return Ok(Imported::Tombstone {
            stream: line.stream,
        });
    }
    let missing = |key: &str| format!("the line has no {key}");
    let revision = line.revision.ok_or_else(|| missing("revision"))?;
    let id = line.id.ok_or_else(|| missing("id"))?;
    let content_type = line.content_type.ok_or_else(|| missing("content_type"))?;
    let content_type = match content_type.as_str() {
        "application/json" => ContentType::Json,
        "application/octet-stream" => ContentType::Binary,
        other => {
            return Err(format!(
                "content_type {other:?} is neither application/json nor application/octet-stream"
            ));
        }
    };
    let data = payload("data", line.data, line.data_base64)?;
    let metadata = payload("metadata", line.metadata, line.metadata_base64)?;
    Ok(Imported::Event(ImportedEvent {
        stream: line.stream,
        revision,
        event: ProposedEvent {
            id: EventId(id),
            event_type: line.event_type.into(),
            content_type,
            data: data.into(),
            metadata: metadata.into(),
        },
    }))
}

fn payload(key: &str, raw: Option<&RawValue>, base64: Option<String>) -> Result<Vec<u8>, String> {
    match (raw, base64) {
        (Some(_), Some(_)) => Err(format!("both {key} and {key}_base64 are given; keep one")),
        (Some(raw), None) => Ok(raw.get().as_bytes().to_vec()),
        (None, Some(encoded)) => BASE64
            .decode(encoded.as_bytes())
            .map_err(|error| format!("{key}_base64 is not base64: {error}")),
        (None, None) if key == "data" => Err("the line has neither data nor data_base64".into()),
        (None, None) => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use strata_core::{Bytes, Position, Revision, StreamName, Timestamp};

    use super::*;

    fn recorded(data: &'static [u8], metadata: &'static [u8], json: bool) -> RecordedEvent {
        RecordedEvent {
            stream: StreamName::new("order-1").unwrap(),
            revision: Revision(3),
            position: Position(4096),
            id: EventId(uuid::Uuid::from_u128(7)),
            event_type: "Placed \"x\"".into(),
            content_type: if json {
                ContentType::Json
            } else {
                ContentType::Binary
            },
            data: Bytes::from_static(data),
            metadata: Bytes::from_static(metadata),
            created: Timestamp(1),
        }
    }

    #[test]
    fn json_on_one_line_is_kept_verbatim_and_the_rest_is_base64() {
        let line = encode(&recorded(br#"{"a": 1}"#, b"", true));
        assert_eq!(
            line,
            r#"{"stream":"order-1","revision":3,"id":"00000000-0000-0000-0000-000000000007","type":"Placed \"x\"","content_type":"application/json","data":{"a": 1}}"#
        );
        let pretty = encode(&recorded(b"{\n}", b" {}", true));
        assert!(pretty.contains(r#""data_base64":"ewp9""#), "{pretty}");
        assert!(pretty.contains(r#""metadata_base64":"IHt9""#), "{pretty}");
    }

    #[test]
    fn every_shape_round_trips_byte_for_byte() {
        for (data, metadata, json) in [
            (&br#"{"a": [1, 2]}"#[..], &br#"{"by":"x"}"#[..], true),
            (&[0u8, 1, 255][..], &b""[..], false),
            (&b"{\r\n}"[..], &b"not json"[..], true),
            (&b"42"[..], &b"\n"[..], false),
            (&b"null"[..], &b"null"[..], true),
        ] {
            let original = recorded(data, metadata, json);
            let Imported::Event(decoded) = decode(&encode(&original)).unwrap() else {
                panic!("an event line decodes as an event");
            };
            assert_eq!(decoded.stream, "order-1");
            assert_eq!(decoded.revision, 3);
            assert_eq!(decoded.event.id, original.id);
            assert_eq!(decoded.event.event_type, original.event_type);
            assert_eq!(decoded.event.content_type, original.content_type);
            assert_eq!(decoded.event.data, original.data);
            assert_eq!(decoded.event.metadata, original.metadata);
        }
    }

    #[test]
    fn a_tombstone_keeps_only_its_stream() {
        let mut tombstone = recorded(b"", b"", false);
        tombstone.event_type = TOMBSTONE_EVENT_TYPE.into();
        tombstone.revision = Revision(TOMBSTONE_REVISION);
        let line = encode(&tombstone);
        assert_eq!(line, r#"{"stream":"order-1","type":"$streamDeleted"}"#);
        assert!(
            matches!(decode(&line).unwrap(), Imported::Tombstone { stream } if stream == "order-1")
        );
    }

    #[test]
    fn an_ordinary_event_typed_like_a_tombstone_stays_an_event() {
        let mut event = recorded(b"{}", b"", true);
        event.event_type = TOMBSTONE_EVENT_TYPE.into();
        let line = encode(&event);
        let Imported::Event(decoded) = decode(&line).unwrap() else {
            panic!("{line} must import as an event, not a tombstone");
        };
        assert_eq!((decoded.revision, decoded.event.id), (3, event.id));
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        assert!(decode("{").unwrap_err().contains("column"));
        let missing = r#"{"stream":"s","revision":0,"id":"00000000-0000-0000-0000-000000000007","type":"T","content_type":"application/json"}"#;
        assert!(decode(missing).unwrap_err().contains("neither data"));
        let bad_type = missing.replace("application/json", "text/plain");
        assert!(decode(&bad_type).unwrap_err().contains("text/plain"));
        let no_id =
            r#"{"stream":"s","revision":0,"type":"T","content_type":"application/json","data":1}"#;
        assert!(decode(no_id).unwrap_err().contains("no id"));
    }
}
