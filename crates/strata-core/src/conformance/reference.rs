//! A plain in-memory store that follows the contract, to keep the kit itself honest: every
//! case must pass against it. Positions have gaps on purpose (10 apart), as a backend's may.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::metadata::{METADATA_EVENT_TYPE, StreamMetadata, TOMBSTONE_EVENT_TYPE};
use crate::store::{
    AllSlice, EventStore, ReadAllOptions, ReadFrom, ReadStreamOptions, StreamSlice,
};
use crate::types::{
    AppendResult, ContentType, DeleteResult, Direction, EventId, ExpectedRevision, Position,
    ProposedEvent, RecordedEvent, Revision, StreamName, StreamState, Timestamp,
};

use super::Backend;

const POSITION_STEP: u64 = 10;
const SOFT_DELETED: u64 = i64::MAX as u64;

#[derive(Default)]
struct StreamInfo {
    /// Indexes into the log of the stream's events, by revision.
    events: Vec<usize>,
    tombstoned: bool,
}

#[derive(Default)]
struct State {
    log: Vec<RecordedEvent>,
    streams: HashMap<StreamName, StreamInfo>,
}

impl State {
    fn info(&self, stream: &StreamName) -> Option<&StreamInfo> {
        self.streams.get(stream)
    }

    fn last(&self, stream: &StreamName) -> Option<u64> {
        self.info(stream)
            .and_then(|info| info.events.len().checked_sub(1))
            .map(|last| last as u64)
    }

    fn actual(&self, stream: &StreamName) -> StreamState {
        self.last(stream).map_or(StreamState::NoStream, |last| {
            StreamState::At(Revision(last))
        })
    }

    fn metadata(&self, stream: &StreamName) -> StreamMetadata {
        let metadata_stream = stream.metadata_stream();
        self.info(&metadata_stream)
            .and_then(|info| info.events.last())
            .map(|index| {
                StreamMetadata::from_json(stream, &self.log[*index].data).unwrap_or_default()
            })
            .unwrap_or_default()
    }

    fn soft_deleted(&self, stream: &StreamName) -> bool {
        self.metadata(stream).truncate_before == Some(SOFT_DELETED)
    }

    fn event_at(&self, stream: &StreamName, revision: u64) -> Option<&RecordedEvent> {
        let info = self.info(stream)?;
        let index = info.events.get(usize::try_from(revision).ok()?)?;
        Some(&self.log[*index])
    }

    /// The original result when `ids` are already in place; an error on a partial match.
    fn idempotent(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        ids: &[EventId],
    ) -> Result<Option<AppendResult>> {
        let first = match expected {
            ExpectedRevision::Exact(revision) => revision + 1,
            ExpectedRevision::NoStream => 0,
            ExpectedRevision::Any => match (0..=self.last(stream).unwrap_or(0)).find(|revision| {
                self.event_at(stream, *revision)
                    .is_some_and(|event| event.id == ids[0])
            }) {
                Some(revision) => revision,
                None => return Ok(None),
            },
            ExpectedRevision::StreamExists => return Ok(None),
        };
        if self
            .event_at(stream, first)
            .is_none_or(|event| event.id != ids[0])
        {
            return Ok(None);
        }
        let mut last = None;
        for (offset, id) in ids.iter().enumerate() {
            match self.event_at(stream, first + offset as u64) {
                Some(event) if event.id == *id => last = Some(event),
                _ => return Err(self.wrong(stream, expected)),
            }
        }
        Ok(last.map(|event| AppendResult {
            current_revision: event.revision,
            position: event.position,
        }))
    }

    fn wrong(&self, stream: &StreamName, expected: ExpectedRevision) -> Error {
        Error::WrongExpectedRevision {
            stream: stream.clone(),
            expected,
            actual: self.actual(stream),
        }
    }

    fn check(&self, stream: &StreamName, expected: ExpectedRevision) -> Result<()> {
        let last = self.last(stream);
        let ok = match expected {
            ExpectedRevision::Any => true,
            ExpectedRevision::NoStream => last.is_none() || self.soft_deleted(stream),
            ExpectedRevision::StreamExists if self.soft_deleted(stream) => {
                return Err(Error::StreamDeleted {
                    stream: stream.clone(),
                });
            }
            ExpectedRevision::StreamExists => {
                last.is_some()
                    || (!stream.is_metadata_stream()
                        && self.last(&stream.metadata_stream()).is_some())
            }
            ExpectedRevision::Exact(revision) => last == Some(revision),
        };
        if ok {
            Ok(())
        } else {
            Err(self.wrong(stream, expected))
        }
    }

    fn write(&mut self, stream: &StreamName, events: Vec<ProposedEvent>) -> AppendResult {
        let mut last = None;
        for proposed in events {
            let revision = self.last(stream).map_or(0, |last| last + 1);
            let position = Position(self.log.len() as u64 * POSITION_STEP);
            let event = RecordedEvent {
                stream: stream.clone(),
                revision: Revision(revision),
                position,
                id: proposed.id,
                event_type: proposed.event_type,
                content_type: proposed.content_type,
                data: proposed.data,
                metadata: proposed.metadata,
                created: Timestamp::now(),
            };
            last = Some(AppendResult {
                current_revision: event.revision,
                position,
            });
            self.streams
                .entry(stream.clone())
                .or_default()
                .events
                .push(self.log.len());
            self.log.push(event);
        }
        last.unwrap_or_else(|| unreachable!("write is called with events"))
    }

    fn write_metadata(&mut self, stream: &StreamName, metadata: &StreamMetadata) -> AppendResult {
        let event = ProposedEvent {
            id: EventId::new_random(),
            event_type: METADATA_EVENT_TYPE.into(),
            content_type: ContentType::Json,
            data: Bytes::from(metadata.to_json()),
            metadata: Bytes::new(),
        };
        self.write(&stream.metadata_stream(), vec![event])
    }

    fn refuse_tombstoned(&self, stream: &StreamName) -> Result<()> {
        if self.info(stream).is_some_and(|info| info.tombstoned) {
            return Err(Error::StreamDeleted {
                stream: stream.clone(),
            });
        }
        Ok(())
    }
}

pub(crate) struct ReferenceStore {
    state: Mutex<State>,
    log_end: watch::Sender<Position>,
}

impl ReferenceStore {
    fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            log_end: watch::Sender::new(Position::START),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, state: &State) {
        let end = state.log.last().map_or(0, |event| event.position.0 + 1);
        self.log_end.send_replace(Position(end));
    }
}

#[async_trait]
impl EventStore for ReferenceStore {
    fn limits(&self) -> Limits {
        Limits {
            event_bytes_max: 4_096,
            append_bytes_max: 16_384,
            append_events_max: 1_000,
        }
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendResult> {
        self.limits().check_append(&events)?;
        let mut state = self.lock();
        state.refuse_tombstoned(stream)?;
        let ids: Vec<_> = events.iter().map(|event| event.id).collect();
        if let Some(result) = state.idempotent(stream, expected, &ids)? {
            return Ok(result);
        }
        state.check(stream, expected)?;
        let revived = state.soft_deleted(stream);
        let first = state.last(stream).map_or(0, |last| last + 1);
        let result = state.write(stream, events);
        if revived {
            let mut metadata = state.metadata(stream);
            metadata.truncate_before = Some(first);
            state.write_metadata(stream, &metadata);
        }
        self.publish(&state);
        Ok(result)
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice> {
        let state = self.lock();
        state.refuse_tombstoned(stream)?;
        let Some(last) = state.last(stream) else {
            return Ok(StreamSlice::NotFound);
        };
        let metadata = state.metadata(stream);
        if metadata.truncate_before == Some(SOFT_DELETED) {
            return Ok(StreamSlice::NotFound);
        }
        let now = Timestamp::now();
        let visible = |revision: u64| {
            let event = state
                .event_at(stream, revision)
                .unwrap_or_else(|| unreachable!());
            metadata
                .is_visible(event.revision, Revision(last), event.created, now)
                .then(|| event.clone())
        };
        let events: Vec<_> = match options.direction {
            Direction::Forwards => {
                let from = match options.from {
                    ReadFrom::Start => 0,
                    ReadFrom::End => last + 1,
                    ReadFrom::At(r) => r.0,
                };
                (from..=last)
                    .filter_map(visible)
                    .take(options.max_count)
                    .collect()
            }
            Direction::Backwards => {
                let from = match options.from {
                    ReadFrom::Start => 0,
                    ReadFrom::End => last,
                    ReadFrom::At(r) => r.0.min(last),
                };
                (0..=from)
                    .rev()
                    .filter_map(visible)
                    .take(options.max_count)
                    .collect()
            }
        };
        Ok(StreamSlice::Found {
            events,
            last_revision: Revision(last),
        })
    }

    async fn read_all(&self, options: ReadAllOptions) -> Result<AllSlice> {
        let state = self.lock();
        let matches = |event: &RecordedEvent| {
            options
                .filter
                .as_ref()
                .is_none_or(|filter| filter.matches(event))
        };
        let log_end = state.log.last().map_or(0, |event| event.position.0 + 1);
        let indexes: Vec<usize> = match (options.direction, options.from) {
            (Direction::Forwards, ReadFrom::Start) => (0..state.log.len()).collect(),
            (Direction::Forwards, ReadFrom::End) | (Direction::Backwards, ReadFrom::Start) => {
                Vec::new()
            }
            (Direction::Forwards, ReadFrom::At(p)) => (0..state.log.len())
                .filter(|i| state.log[*i].position >= p)
                .collect(),
            (Direction::Backwards, ReadFrom::End) => (0..state.log.len()).rev().collect(),
            (Direction::Backwards, ReadFrom::At(p)) => (0..state.log.len())
                .rev()
                .filter(|i| state.log[*i].position < p)
                .collect(),
        };
        let mut next_position = match (options.direction, options.from) {
            (_, ReadFrom::At(p)) => p,
            (Direction::Forwards, ReadFrom::End) => Position(log_end),
            _ => Position::START,
        };
        let mut events = Vec::new();
        let mut is_end = true;
        let mut last_examined = None;
        for index in indexes {
            if events.len() == options.max_count {
                is_end = false;
                break;
            }
            let event = &state.log[index];
            last_examined = Some(event.position);
            next_position = match options.direction {
                Direction::Forwards => Position(event.position.0 + 1),
                Direction::Backwards => event.position,
            };
            if matches(event) {
                events.push(event.clone());
            }
        }
        Ok(AllSlice {
            events,
            next_position,
            is_end,
            last_examined,
        })
    }

    async fn stream_state(&self, stream: &StreamName) -> Result<StreamState> {
        let state = self.lock();
        if state.info(stream).is_some_and(|info| info.tombstoned) {
            return Ok(StreamState::Tombstoned);
        }
        Ok(state.actual(stream))
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        let mut state = self.lock();
        state.refuse_tombstoned(stream)?;
        if state.last(stream).is_none() {
            return Err(state.wrong(stream, expected));
        }
        if expected == ExpectedRevision::NoStream {
            return Err(state.wrong(stream, expected));
        }
        state.check(stream, expected)?;
        let mut metadata = state.metadata(stream);
        metadata.truncate_before = Some(SOFT_DELETED);
        let result = state.write_metadata(stream, &metadata);
        self.publish(&state);
        Ok(DeleteResult {
            position: result.position,
        })
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        let mut state = self.lock();
        state.refuse_tombstoned(stream)?;
        state.check(stream, expected)?;
        let position = Position(state.log.len() as u64 * POSITION_STEP);
        let event = RecordedEvent {
            stream: stream.clone(),
            revision: Revision(SOFT_DELETED),
            position,
            id: EventId::new_random(),
            event_type: TOMBSTONE_EVENT_TYPE.into(),
            content_type: ContentType::Binary,
            data: Bytes::new(),
            metadata: Bytes::new(),
            created: Timestamp::now(),
        };
        state.log.push(event);
        state.streams.entry(stream.clone()).or_default().tombstoned = true;
        self.publish(&state);
        Ok(DeleteResult { position })
    }

    async fn last_position(&self) -> Result<Option<Position>> {
        Ok(self.lock().log.last().map(|event| event.position))
    }

    fn watch_log_end(&self) -> watch::Receiver<Position> {
        self.log_end.subscribe()
    }
}

pub(crate) struct ReferenceBackend;

#[async_trait]
impl Backend for ReferenceBackend {
    type Store = ReferenceStore;

    async fn fresh(&self) -> Arc<ReferenceStore> {
        Arc::new(ReferenceStore::new())
    }
}

crate::conformance_tests!(ReferenceBackend);
