//! The events and streams of the standard workload: JSON bodies of a fixed size, streams
//! named `bench-N`, event ids unique within and across runs.

use std::sync::atomic::{AtomicU64, Ordering};

use strata_core::{Bytes, ContentType, EventId, ProposedEvent, StreamName};

const EVENT_TYPE: &str = "BenchEvent";

pub(crate) struct Workload {
    streams: Vec<StreamName>,
    body: Bytes,
    id_prefix: u64,
    ids_issued: AtomicU64,
}

impl Workload {
    pub(crate) fn new(stream_count: u64, event_bytes: u64) -> strata_core::Result<Self> {
        let streams = stream_names("bench", stream_count)?;
        Ok(Self {
            streams,
            body: json_body(usize::try_from(event_bytes).unwrap_or(usize::MAX)),
            id_prefix: run_prefix(),
            ids_issued: AtomicU64::new(0),
        })
    }

    /// The stream the `index`-th append goes to, round-robin.
    pub(crate) fn stream_round_robin(&self, index: u64) -> &StreamName {
        &self.streams[slot(index, self.streams.len())]
    }

    /// The stream the `index`-th append goes to, spread pseudo-randomly (and reproducibly).
    pub(crate) fn stream_scattered(&self, index: u64) -> &StreamName {
        &self.streams[slot(scatter(index), self.streams.len())]
    }

    /// A fresh event. The body is shared, so building events costs the bench next to nothing.
    pub(crate) fn event(&self) -> ProposedEvent {
        let sequence = self.ids_issued.fetch_add(1, Ordering::Relaxed);
        ProposedEvent {
            id: EventId::from_u128((u128::from(self.id_prefix) << 64) | u128::from(sequence)),
            event_type: EVENT_TYPE.into(),
            content_type: ContentType::Json,
            data: self.body.clone(),
            metadata: Bytes::new(),
        }
    }

    pub(crate) fn events(&self, count: u64) -> Vec<ProposedEvent> {
        (0..count).map(|_| self.event()).collect()
    }
}

/// `count` stream names `{prefix}-0`, `{prefix}-1`, ...
pub(crate) fn stream_names(prefix: &str, count: u64) -> strata_core::Result<Vec<StreamName>> {
    (0..count)
        .map(|index| StreamName::new(format!("{prefix}-{index}")))
        .collect()
}

/// Spreads consecutive indexes over the whole range (Fibonacci hashing).
pub(crate) fn scatter(index: u64) -> u64 {
    index.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16
}

pub(crate) fn slot(value: u64, len: usize) -> usize {
    usize::try_from(value % len as u64).unwrap_or(0)
}

/// A JSON object of exactly `size_bytes` bytes (at least the bytes of its fixed part).
fn json_body(size_bytes: usize) -> Bytes {
    let head = r#"{"kind":"bench","pad":""#;
    let tail = r#""}"#;
    let pad = size_bytes.saturating_sub(head.len() + tail.len());
    Bytes::from(format!("{head}{}{tail}", "x".repeat(pad)))
}

/// Distinguishes the ids of this run from those of any earlier run.
fn run_prefix() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    (nanos as u64) ^ (u64::from(std::process::id()) << 40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_of_the_requested_size() {
        let body = json_body(200);
        assert_eq!(body.len(), 200);
        let value: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(value["kind"], "bench");
    }

    #[test]
    fn event_ids_are_distinct() {
        let workload = Workload::new(10, 200).expect("valid names");
        let first = workload.event();
        let second = workload.event();
        assert_ne!(first.id, second.id);
    }

    #[test]
    fn scattered_streams_cover_all_streams() {
        let workload = Workload::new(100, 200).expect("valid names");
        let seen: std::collections::HashSet<_> = (0..10_000)
            .map(|index| workload.stream_scattered(index).clone())
            .collect();
        assert_eq!(seen.len(), 100);
    }
}
