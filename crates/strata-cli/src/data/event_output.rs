//! How events are printed: an aligned table for people, or one JSON object per line.

use serde_json::{Value, json};
use strata_core::{ContentType, RecordedEvent};

use super::output::{Lines, Tone, colour_enabled, paint};

const EVENT_HEADER: [&str; 6] = ["POSITION", "STREAM", "REVISION", "TYPE", "CREATED", "DATA"];
const EVENT_TONES: [Tone; 6] = [
    Tone::Dim,
    Tone::Accent,
    Tone::Plain,
    Tone::Header,
    Tone::Dim,
    Tone::Plain,
];

/// Prints `events` as `--json` lines or as an aligned table with a header.
///
/// # Errors
/// Writing to stdout failed (other than the reader going away).
pub(crate) fn print_events(events: &[RecordedEvent], as_json: bool) -> anyhow::Result<()> {
    let mut lines = Lines::new();
    if as_json {
        for event in events {
            if !lines.line(&event_json(event).to_string())? {
                break;
            }
        }
        return Ok(());
    }
    let rows: Vec<[String; 6]> = events.iter().map(event_cells).collect();
    print_table(
        &mut lines,
        &EVENT_HEADER.map(str::to_owned),
        &EVENT_TONES,
        &rows,
    )
}

/// One event as one line, for output that cannot be aligned in advance (`tail`).
pub(crate) fn event_line(event: &RecordedEvent, as_json: bool, colour: bool) -> String {
    if as_json {
        return event_json(event).to_string();
    }
    let cells = event_cells(event);
    let shown: Vec<String> = cells
        .iter()
        .zip(EVENT_TONES)
        .map(|(cell, tone)| paint(cell, tone, colour))
        .collect();
    shown.join("  ")
}

fn event_cells(event: &RecordedEvent) -> [String; 6] {
    [
        event.position.0.to_string(),
        event.stream.to_string(),
        event.revision.0.to_string(),
        event.event_type.clone(),
        event.created.to_rfc3339(3),
        data_text(event),
    ]
}

/// Prints rows under a header, each column padded to its widest cell; the last is not
/// padded. On a terminal the header is bold and columns get their tones.
///
/// # Errors
/// Writing to stdout failed (other than the reader going away).
pub(crate) fn print_table<const N: usize>(
    lines: &mut Lines,
    header: &[String; N],
    tones: &[Tone; N],
    rows: &[[String; N]],
) -> anyhow::Result<()> {
    let colour = colour_enabled();
    let mut widths = header.each_ref().map(|cell| cell.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for (index, row) in std::iter::once(header).chain(rows).enumerate() {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            let tone = if index == 0 {
                Tone::Header
            } else {
                tones[column]
            };
            let padded = if column + 1 == N {
                cell.clone()
            } else {
                format!("{cell:<width$}  ", width = widths[column])
            };
            line.push_str(&paint(&padded, tone, colour));
        }
        if !lines.line(line.trim_end())? {
            break;
        }
    }
    Ok(())
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
        "created": event.created.to_rfc3339(3),
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
