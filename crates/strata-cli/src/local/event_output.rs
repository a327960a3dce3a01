//! How events are printed: an aligned table for people, or one JSON object per line.

use serde_json::{Value, json};
use strata_core::{ContentType, RecordedEvent};

use super::timestamp::rfc3339;

/// Prints `events` as `--json` lines or as an aligned table with a header.
pub(crate) fn print_events(events: &[RecordedEvent], as_json: bool) {
    if as_json {
        for event in events {
            println!("{}", event_json(event));
        }
        return;
    }
    let header = ["POSITION", "STREAM", "REVISION", "TYPE", "CREATED", "DATA"];
    let rows: Vec<[String; 6]> = events
        .iter()
        .map(|event| {
            [
                event.position.0.to_string(),
                event.stream.to_string(),
                event.revision.0.to_string(),
                event.event_type.clone(),
                rfc3339(event.created),
                data_text(event),
            ]
        })
        .collect();
    let header = header.map(str::to_owned);
    print_table(&header, &rows);
}

/// Prints rows under a header, each column padded to its widest cell; the last is not padded.
pub(crate) fn print_table<const N: usize>(header: &[String; N], rows: &[[String; N]]) {
    let mut widths = header.each_ref().map(|cell| cell.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[column]));
            }
        }
        println!("{}", line.trim_end());
    }
}

/// The `--json` object of one event. `data` and `metadata` are JSON values when they parse
/// as JSON, otherwise strings (UTF-8, invalid bytes replaced).
pub(crate) fn event_json(event: &RecordedEvent) -> Value {
    json!({
        "stream": event.stream.as_str(),
        "revision": event.revision.0,
        "position": event.position.0,
        "id": event.id.0.to_string(),
        "type": event.event_type,
        "content_type": event.content_type.as_mime(),
        "created": rfc3339(event.created),
        "data": payload_json(&event.data, event.content_type == ContentType::Json),
        "metadata": payload_json(&event.metadata, true),
    })
}

fn payload_json(bytes: &[u8], try_json: bool) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    if try_json && let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        return value;
    }
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

/// Data as one line: compact JSON when it is JSON, otherwise the text or a byte count.
fn data_text(event: &RecordedEvent) -> String {
    if event.content_type == ContentType::Json
        && let Ok(value) = serde_json::from_slice::<Value>(&event.data)
    {
        return value.to_string();
    }
    match std::str::from_utf8(&event.data) {
        Ok(text) if !text.contains(['\n', '\r']) => text.to_owned(),
        _ => format!("<{} bytes>", event.data.len()),
    }
}
