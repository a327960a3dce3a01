//! An atomic append across streams: several parts, each a stream, an expected revision and
//! events (or, without events, a check of the stream's state that writes nothing). Every
//! part becomes visible together, at consecutive positions, or none does.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::types::{AppendResult, ExpectedRevision, Position, ProposedEvent, StreamName};

/// One part of a [`crate::EventStore::append_multi`] request.
#[derive(Clone, Debug, PartialEq)]
pub struct AppendPart {
    pub stream: StreamName,
    pub expected: ExpectedRevision,
    /// The events to append; none makes the part a check: `expected` must hold for
    /// `stream` as it was before the request, and nothing is written to it.
    pub events: Vec<ProposedEvent>,
}

impl AppendPart {
    /// A part that appends `events` to `stream`.
    pub fn write(
        stream: StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Self {
        Self {
            stream,
            expected,
            events,
        }
    }

    /// A part that only checks `expected` against `stream`.
    pub fn check(stream: StreamName, expected: ExpectedRevision) -> Self {
        Self {
            stream,
            expected,
            events: Vec::new(),
        }
    }

    /// True when the part writes nothing.
    pub fn is_check(&self) -> bool {
        self.events.is_empty()
    }
}

/// What a successful multi-stream append reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiAppendResult {
    /// One entry per part that writes, in the order of the request: the stream and what an
    /// append of that part alone would report.
    pub parts: Vec<(StreamName, AppendResult)>,
    /// Position of the request's last event in `$all`.
    pub position: Position,
}

impl Limits {
    /// Checks a multi-stream append: at least one part writes, no stream is written by two
    /// parts, every event is valid and within the event limit, and the sums of all parts
    /// are within the append limits (the request is one transaction).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no writing part or a stream written twice; otherwise as
    /// [`Limits::check_append`], counted over every part.
    pub fn check_multi_append(&self, parts: &[AppendPart]) -> Result<()> {
        let mut written = HashSet::new();
        for part in parts.iter().filter(|part| !part.is_check()) {
            if !written.insert(&part.stream) {
                return Err(Error::InvalidArgument {
                    reason: format!(
                        "stream {} is written by more than one part of the append",
                        part.stream
                    ),
                });
            }
        }
        if written.is_empty() {
            return Err(Error::InvalidArgument {
                reason: "a multi-stream append needs at least one part with events".into(),
            });
        }
        let events: usize = parts.iter().map(|part| part.events.len()).sum();
        if events > self.append_events_max {
            return Err(Error::AppendTooLarge {
                size: events,
                limit: self.append_events_max,
                unit: "events",
            });
        }
        let mut append_bytes = 0usize;
        for event in parts.iter().flat_map(|part| &part.events) {
            event.validate_type()?;
            let size = event.size_bytes();
            if size > self.event_bytes_max {
                return Err(Error::EventTooLarge {
                    event_id: event.id,
                    size_bytes: size,
                    limit_bytes: self.event_bytes_max,
                });
            }
            append_bytes = append_bytes.saturating_add(size);
        }
        if append_bytes > self.append_bytes_max {
            return Err(Error::AppendTooLarge {
                size: append_bytes,
                limit: self.append_bytes_max,
                unit: "bytes",
            });
        }
        Ok(())
    }
}

/// The events of every writing part, in request order: the list a
/// [`crate::rules::MultiWritePlan`]'s proposed records index into.
pub fn events_of_parts(parts: Vec<AppendPart>) -> Vec<ProposedEvent> {
    parts.into_iter().flat_map(|part| part.events).collect()
}
