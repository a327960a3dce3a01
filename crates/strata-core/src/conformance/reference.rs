//! A plain in-memory store that follows the contract, to keep the kit itself honest: every
//! case must pass against it. It applies the shared [`crate::rules`] over a log kept in a
//! vector, so the kit checks the rules themselves. Positions have gaps on purpose (10
//! apart), as a backend's may.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::dcb::AppendCondition;
use crate::error::Result;
use crate::limits::Limits;
use crate::metadata::{METADATA_EVENT_TYPE, StreamMetadata, TOMBSTONE_EVENT_TYPE};
use crate::multi_append::{AppendPart, MultiAppendResult, events_of_parts};
use crate::rules::{
    self, AppendDecision, MultiAppendDecision, RecordBody, StreamHead, StreamView, WritePlan,
};
use crate::store::{
    AllSlice, EventStore, ReadAllOptions, ReadFrom, ReadStreamOptions, StreamSlice,
};
use crate::system_streams::{IndexKey, read_system_stream};
use crate::types::{
    AppendResult, ContentType, DeleteResult, Direction, EventId, ExpectedRevision, Position,
    ProposedEvent, RecordedEvent, Revision, StreamName, StreamState, Timestamp,
};

use super::Backend;

const POSITION_STEP: u64 = 10;

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

    fn event_at(&self, stream: &StreamName, revision: u64) -> Option<&RecordedEvent> {
        let info = self.info(stream)?;
        let index = info.events.get(usize::try_from(revision).ok()?)?;
        Some(&self.log[*index])
    }

    /// Carries out a plan of the rules; the heads follow from the log.
    fn write(
        &mut self,
        plan: &WritePlan,
        events: &[ProposedEvent],
        now: Timestamp,
    ) -> Vec<Position> {
        let mut positions = Vec::with_capacity(plan.records.len());
        for record in &plan.records {
            let position = Position(self.log.len() as u64 * POSITION_STEP);
            let (id, event_type, content_type, data, metadata) = match &record.body {
                RecordBody::Proposed(index) => {
                    let event = &events[*index];
                    (
                        event.id,
                        String::from(&event.event_type),
                        event.content_type,
                        event.data.clone(),
                        event.metadata.clone(),
                    )
                }
                RecordBody::Metadata { id, data } => (
                    *id,
                    METADATA_EVENT_TYPE.to_owned(),
                    ContentType::Json,
                    data.clone(),
                    Bytes::new(),
                ),
                RecordBody::Tombstone { id } => (
                    *id,
                    TOMBSTONE_EVENT_TYPE.to_owned(),
                    ContentType::Binary,
                    Bytes::new(),
                    Bytes::new(),
                ),
            };
            let info = self.streams.entry(record.stream.clone()).or_default();
            if matches!(record.body, RecordBody::Tombstone { .. }) {
                info.tombstoned = true;
            } else {
                assert_eq!(
                    info.events.len() as u64,
                    record.revision,
                    "the rules plan the next revision"
                );
                info.events.push(self.log.len());
            }
            self.log.push(RecordedEvent {
                stream: record.stream.clone(),
                revision: Revision(record.revision),
                position,
                id,
                event_type,
                content_type,
                data,
                metadata,
                created: now,
            });
            positions.push(position);
        }
        positions
    }
}

impl StreamView for State {
    fn head(&self, stream: &StreamName) -> Result<StreamHead> {
        let Some(info) = self.info(stream) else {
            return Ok(StreamHead {
                metadata: self.metadata(stream),
                ..StreamHead::default()
            });
        };
        Ok(StreamHead {
            last_revision: (info.events.len() as u64).checked_sub(1),
            tombstoned: info.tombstoned,
            metadata: self.metadata(stream),
        })
    }

    fn event_position(
        &self,
        stream: &StreamName,
        revision: u64,
        id: EventId,
    ) -> Result<Option<Position>> {
        Ok(self
            .event_at(stream, revision)
            .filter(|event| event.id == id)
            .map(|event| event.position))
    }

    /// Every id ever written is remembered here.
    fn recent_revision(&self, stream: &StreamName, id: EventId) -> Result<Option<u64>> {
        Ok(self.info(stream).and_then(|info| {
            info.events
                .iter()
                .position(|index| self.log[*index].id == id)
                .map(|revision| revision as u64)
        }))
    }
}

impl State {
    /// Parsed from the last event of `$$stream`.
    fn metadata(&self, stream: &StreamName) -> Option<Arc<StreamMetadata>> {
        let metadata_stream = stream.metadata_stream();
        let last = self.info(&metadata_stream)?.events.last()?;
        let data = &self.log[*last].data;
        Some(Arc::new(StreamMetadata::from_json_or_default(stream, data)))
    }
}

pub(crate) struct ReferenceStore {
    state: Mutex<State>,
    log_end: watch::Sender<Position>,
    clock: Clock,
}

impl ReferenceStore {
    fn new(clock: Clock) -> Self {
        Self {
            state: Mutex::new(State::default()),
            log_end: watch::Sender::new(Position::START),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn delete(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        tombstone: bool,
    ) -> Result<DeleteResult> {
        let mut state = self.lock();
        let plan = rules::plan_delete(&*state, stream, expected, tombstone)?;
        let positions = state.write(&plan, &[], self.clock.now());
        self.publish(&state);
        Ok(plan.delete_result(&positions))
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
        match rules::plan_append(&*state, stream, expected, &events)? {
            AppendDecision::AlreadyAppended(result) => Ok(result),
            AppendDecision::Write(plan) => {
                let positions = state.write(&plan, &events, self.clock.now());
                self.publish(&state);
                Ok(plan.append_result(&positions))
            }
        }
    }

    async fn append_multi(&self, parts: Vec<AppendPart>) -> Result<MultiAppendResult> {
        self.limits().check_multi_append(&parts)?;
        let mut state = self.lock();
        match rules::plan_multi_append(&*state, &parts)? {
            MultiAppendDecision::AlreadyAppended(result) => Ok(result),
            MultiAppendDecision::Write(plan) => {
                let events = events_of_parts(parts);
                let positions = state.write(&plan.plan, &events, self.clock.now());
                self.publish(&state);
                Ok(plan.result(&positions))
            }
        }
    }

    async fn append_conditional(
        &self,
        parts: Vec<AppendPart>,
        condition: AppendCondition,
    ) -> Result<MultiAppendResult> {
        let condition = AppendCondition {
            query: condition.query.validated()?,
            ..condition
        };
        self.limits().check_multi_append(&parts)?;
        let mut state = self.lock();
        match rules::plan_multi_append(&*state, &parts)? {
            MultiAppendDecision::AlreadyAppended(result) => Ok(result),
            MultiAppendDecision::Write(plan) => {
                // The reference scans its log: the contract, not the index, is under test.
                if let Some(found) = state.log.iter().find(|event| {
                    condition.is_after(event.position) && condition.query.matches(event)
                }) {
                    return Err(condition.failed(found.position));
                }
                let events = events_of_parts(parts);
                let positions = state.write(&plan.plan, &events, self.clock.now());
                self.publish(&state);
                Ok(plan.result(&positions))
            }
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice> {
        if let Some(key) = IndexKey::of_stream(stream.as_str()) {
            return read_system_stream(self, stream, &key, options).await;
        }
        let state = self.lock();
        let head = state.head(stream)?;
        let described_head = match stream.described_stream() {
            Some(described) => Some(state.head(&described)?),
            None => None,
        };
        let Some(mut read) =
            rules::plan_stream_read(stream, &head, described_head.as_ref(), &options)?
        else {
            return Ok(StreamSlice::NotFound);
        };
        let now = self.clock.now();
        if let Some(mut search) = read.expiry_search(now) {
            while let Some(revision) = search.next_probe() {
                let created = state.event_at(stream, revision).map(|event| event.created);
                search.observe(revision, created);
            }
            read.skip_expired(&search);
        }
        let mut events: Vec<RecordedEvent> = read
            .revisions()
            .filter_map(|revision| state.event_at(stream, revision))
            .filter(|event| read.is_visible(event, now))
            .cloned()
            .collect();
        if read.direction() == Direction::Backwards {
            events.reverse();
        }
        Ok(StreamSlice::Found {
            events,
            last_revision: read.last_revision(),
        })
    }

    async fn read_all(&self, options: ReadAllOptions) -> Result<AllSlice> {
        let state = self.lock();
        let matches = |event: &RecordedEvent| {
            options
                .filter
                .as_ref()
                .map_or(Ok(true), |filter| filter.try_matches(event))
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
            if matches(event)? {
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
        Ok(self.lock().head(stream)?.state())
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        self.delete(stream, expected, false)
    }

    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult> {
        self.delete(stream, expected, true)
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

    async fn fresh_with_clock(&self, clock: Clock) -> Arc<ReferenceStore> {
        Arc::new(ReferenceStore::new(clock))
    }
}

crate::conformance_tests!(ReferenceBackend);
