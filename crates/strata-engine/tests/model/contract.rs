//! The model: KurrentDB's rules for appends, re-sends, metadata, deletes and reads, written
//! out plainly over vectors (independently of `strata_core::rules`).

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use strata_core::{
    EventId, ExpectedRevision, Position, ProposedEvent, Revision, StreamName, StreamState,
};

/// `$tb` of a soft-deleted stream.
pub const DELETED: u64 = i64::MAX as u64;

/// One event as the model keeps it.
#[derive(Clone, Debug)]
pub struct ModelEvent {
    pub id: EventId,
    pub event_type: String,
    pub data: Vec<u8>,
    pub created_nanos: i64,
}

#[derive(Default)]
pub struct ModelStream {
    events: Vec<ModelEvent>,
    tombstoned: bool,
}

impl ModelStream {
    fn last(&self) -> Option<u64> {
        (self.events.len() as u64).checked_sub(1)
    }

    fn state(&self) -> StreamState {
        match (self.tombstoned, self.last()) {
            (true, _) => StreamState::Tombstoned,
            (false, Some(last)) => StreamState::At(Revision(last)),
            (false, None) => StreamState::NoStream,
        }
    }
}

/// A write, made concrete: its events and ids are fixed before it is sent.
#[derive(Clone, Debug)]
pub enum Write {
    Append {
        stream: String,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    },
    Delete {
        stream: String,
        expected: ExpectedRevision,
        tombstone: bool,
    },
}

/// What the model says a write comes to.
#[derive(Debug, PartialEq)]
pub enum Predicted {
    /// Written; the append's last revision (0 for a delete).
    Written(u64),
    /// A re-send: the original's last revision and position.
    AlreadyThere(u64, Position),
    Wrong(StreamState),
    Deleted(String),
}

#[derive(Default)]
pub struct Model {
    streams: HashMap<String, ModelStream>,
    /// `$all` in log order.
    pub all: Vec<(String, ModelEvent)>,
    pub now_nanos: i64,
    /// Where each event id the store wrote landed: the position of its append's last event.
    pub positions: HashMap<EventId, Position>,
}

pub fn metadata_stream_of(stream: &str) -> String {
    format!("$${stream}")
}

impl Model {
    /// An empty store at `now_nanos`.
    pub fn starting_at(now_nanos: i64) -> Self {
        Self {
            now_nanos,
            ..Self::default()
        }
    }

    fn stream(&self, name: &str) -> &ModelStream {
        static EMPTY: std::sync::OnceLock<ModelStream> = std::sync::OnceLock::new();
        self.streams
            .get(name)
            .unwrap_or_else(|| EMPTY.get_or_init(ModelStream::default))
    }

    /// The JSON object of the last event of `$$stream` (empty when none or not an object).
    fn metadata(&self, stream: &str) -> Map<String, Value> {
        self.stream(&metadata_stream_of(stream))
            .events
            .last()
            .and_then(|event| serde_json::from_slice::<Value>(&event.data).ok())
            .and_then(|value| match value {
                Value::Object(object) => Some(object),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn metadata_u64(&self, stream: &str, key: &str) -> Option<u64> {
        self.metadata(stream).get(key).and_then(Value::as_u64)
    }

    fn soft_deleted(&self, stream: &str) -> bool {
        !stream.starts_with("$$") && self.metadata_u64(stream, "$tb") == Some(DELETED)
    }

    fn push(&mut self, stream: &str, event_type: &str, id: EventId, data: Vec<u8>) {
        let event = ModelEvent {
            id,
            event_type: event_type.to_owned(),
            data,
            created_nanos: self.now_nanos,
        };
        self.all.push((stream.to_owned(), event.clone()));
        self.streams
            .entry(stream.to_owned())
            .or_default()
            .events
            .push(event);
    }

    /// The refusals every write to `stream` starts with.
    fn refusal(&self, stream: &str) -> Option<Predicted> {
        if let Some(described) = stream.strip_prefix("$$")
            && self.stream(described).tombstoned
            && self.stream(stream).events.is_empty()
        {
            return Some(Predicted::Deleted(stream.to_owned()));
        }
        self.stream(stream)
            .tombstoned
            .then(|| Predicted::Deleted(stream.to_owned()))
    }

    /// Whether `expected` holds, re-sends aside; `Err` is the refusal.
    fn expectation(&self, stream: &str, expected: ExpectedRevision) -> Result<(), Predicted> {
        let current = self.stream(stream);
        let soft_deleted = self.soft_deleted(stream);
        let holds = match expected {
            ExpectedRevision::Any => true,
            ExpectedRevision::StreamExists if soft_deleted => {
                return Err(Predicted::Deleted(stream.to_owned()));
            }
            ExpectedRevision::StreamExists => {
                current.last().is_some()
                    || !self.stream(&metadata_stream_of(stream)).events.is_empty()
            }
            ExpectedRevision::NoStream => current.last().is_none() || soft_deleted,
            ExpectedRevision::Exact(revision) => current.last() == Some(revision),
        };
        if holds {
            Ok(())
        } else {
            Err(Predicted::Wrong(current.state()))
        }
    }

    /// What checking `expected` without writing answers: the last revision, or a refusal.
    pub fn check(
        &self,
        stream: &str,
        expected: ExpectedRevision,
    ) -> Result<Option<u64>, Predicted> {
        if let Some(refused) = self.refusal(stream) {
            return Err(refused);
        }
        self.expectation(stream, expected)?;
        Ok(self.stream(stream).last())
    }

    fn append(
        &mut self,
        stream: &str,
        expected: ExpectedRevision,
        events: &[ProposedEvent],
    ) -> Predicted {
        if let Some(refused) = self.refusal(stream) {
            return refused;
        }
        let current = self.stream(stream);
        let resent_from = match (expected, current.last()) {
            (ExpectedRevision::Any | ExpectedRevision::StreamExists, _) => {
                if let Err(refused) = self.expectation(stream, expected) {
                    return refused;
                }
                current
                    .events
                    .iter()
                    .rposition(|event| event.id == events[0].id)
            }
            (ExpectedRevision::NoStream, Some(_)) => Some(0),
            (ExpectedRevision::Exact(revision), Some(last)) if revision < last => {
                Some(revision as usize + 1)
            }
            _ => None,
        };
        if let Some(first) = resent_from
            && current
                .events
                .get(first)
                .is_some_and(|event| event.id == events[0].id)
        {
            let all_there = events.iter().enumerate().all(|(offset, event)| {
                current
                    .events
                    .get(first + offset)
                    .is_some_and(|stored| stored.id == event.id)
            });
            if !all_there {
                return Predicted::Wrong(current.state());
            }
            let last_id = events[events.len() - 1].id;
            return Predicted::AlreadyThere(
                (first + events.len() - 1) as u64,
                self.positions[&last_id],
            );
        }
        if let Err(refused) = self.expectation(stream, expected) {
            return refused;
        }
        self.write(stream, events)
    }

    fn write(&mut self, stream: &str, events: &[ProposedEvent]) -> Predicted {
        let revives = self.soft_deleted(stream);
        let undeletes = stream
            .strip_prefix("$$")
            .filter(|described| self.soft_deleted(described) && !self.stream(described).tombstoned);
        let undeletes = undeletes.map(str::to_owned);
        let first = self.stream(stream).events.len() as u64;
        let revived_metadata = self.metadata(stream);
        for event in events {
            self.push(stream, &event.event_type, event.id, event.data.to_vec());
        }
        let last = first + events.len() as u64 - 1;
        if let Some(described) = undeletes {
            let written = serde_json::from_slice::<Value>(&events[events.len() - 1].data);
            if let Ok(Value::Object(mut metadata)) = written {
                let next = self.stream(&described).events.len() as u64;
                metadata.insert("$tb".into(), json!(next));
                self.push_metadata(&described, Value::Object(metadata));
            }
        } else if revives {
            let mut metadata = revived_metadata;
            metadata.insert("$tb".into(), json!(first));
            self.push_metadata(stream, Value::Object(metadata));
        }
        Predicted::Written(last)
    }

    fn push_metadata(&mut self, stream: &str, metadata: Value) {
        let metadata_stream = metadata_stream_of(stream);
        let revision = self.stream(&metadata_stream).events.len() as u64;
        let name = StreamName::new(&metadata_stream).unwrap();
        let id = EventId::of_store_record(&name, revision);
        let data = serde_json::to_vec(&metadata).unwrap();
        self.push(&metadata_stream, "$metadata", id, data);
    }

    fn delete(&mut self, stream: &str, expected: ExpectedRevision, tombstone: bool) -> Predicted {
        if self.stream(stream).tombstoned {
            return Predicted::Deleted(stream.to_owned());
        }
        if let Err(refused) = self.expectation(stream, expected) {
            return refused;
        }
        if tombstone {
            self.streams
                .entry(stream.to_owned())
                .or_default()
                .tombstoned = true;
            let event = ModelEvent {
                id: EventId::from_u128(0),
                event_type: "$streamDeleted".to_owned(),
                data: Vec::new(),
                created_nanos: self.now_nanos,
            };
            self.all.push((stream.to_owned(), event));
            return Predicted::Written(0);
        }
        let current = self.stream(stream);
        if current.events.is_empty() && self.stream(&metadata_stream_of(stream)).events.is_empty() {
            return Predicted::Wrong(current.state());
        }
        self.push_metadata(stream, json!({ "$tb": DELETED }));
        Predicted::Written(0)
    }

    pub fn apply(&mut self, write: &Write) -> Predicted {
        match write {
            Write::Append {
                stream,
                expected,
                events,
            } => self.append(stream, *expected, events),
            Write::Delete {
                stream,
                expected,
                tombstone,
            } => self.delete(stream, *expected, *tombstone),
        }
    }

    /// Visible (revision, event) of a stream; `Err(stream)` when it reads as deleted,
    /// `None` when it is not found.
    pub fn visible(&self, stream: &str) -> Result<Option<Vec<(u64, ModelEvent)>>, String> {
        if let Some(described) = stream.strip_prefix("$$")
            && self.stream(described).tombstoned
        {
            return Err(stream.to_owned());
        }
        let current = self.stream(stream);
        if current.tombstoned {
            return Err(stream.to_owned());
        }
        let Some(last) = current.last() else {
            return Ok(None);
        };
        let numbered = current
            .events
            .iter()
            .cloned()
            .enumerate()
            .map(|(revision, event)| (revision as u64, event));
        if stream.starts_with("$$") {
            return Ok(Some(numbered.skip(last as usize).collect()));
        }
        if self.soft_deleted(stream) {
            return Ok(None);
        }
        let truncate_before = self.metadata_u64(stream, "$tb").unwrap_or(0);
        let max_count = self.metadata_u64(stream, "$maxCount");
        let max_age_nanos = self
            .metadata_u64(stream, "$maxAge")
            .map(|seconds| i64::try_from(seconds).unwrap() * 1_000_000_000);
        Ok(Some(
            numbered
                .filter(|(revision, event)| {
                    *revision >= truncate_before
                        && max_count.is_none_or(|count| last - revision < count)
                        && max_age_nanos
                            .is_none_or(|age| self.now_nanos - event.created_nanos <= age)
                })
                .collect(),
        ))
    }
}
