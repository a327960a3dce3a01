//! Planning one group commit: the checks of every append and delete against the stream
//! heads (as the database had them when the write lock was taken, plus what earlier
//! requests of the same group wrote), and the rows the group inserts. No I/O here: the
//! writer fetches what the checks need first ([`Group::prefetch`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use strata_core::{
    AppendResult, ContentType, DeleteResult, Error, EventId, ExpectedRevision, METADATA_EVENT_TYPE,
    Position, ProposedEvent, Result, Revision, StreamMetadata, StreamName, StreamState,
    TOMBSTONE_EVENT_TYPE, Timestamp,
};

/// `$tb` of a soft-deleted stream, and the revision of a tombstone record.
pub(crate) const SOFT_DELETED_TRUNCATE_BEFORE: u64 = i64::MAX as u64;
pub(crate) use strata_core::TOMBSTONE_REVISION;

/// An `Any`/`StreamExists` re-send is recognised when its first event is among the
/// stream's last this-many events (an `Exact`/`NoStream` re-send is recognised at any age).
pub(crate) const RESEND_WINDOW_EVENTS: u64 = 1_024;

/// One write the writer was asked for.
pub(crate) enum Operation {
    Append {
        stream: StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    },
    Delete {
        stream: StreamName,
        expected: ExpectedRevision,
        tombstone: bool,
    },
}

impl Operation {
    pub(crate) fn stream(&self) -> &StreamName {
        match self {
            Operation::Append { stream, .. } | Operation::Delete { stream, .. } => stream,
        }
    }

    pub(crate) fn event_count(&self) -> usize {
        match self {
            Operation::Append { events, .. } => events.len(),
            Operation::Delete { .. } => 1,
        }
    }

    pub(crate) fn size_bytes(&self) -> usize {
        match self {
            Operation::Append { events, .. } => events.iter().map(ProposedEvent::size_bytes).sum(),
            Operation::Delete { .. } => 0,
        }
    }
}

/// What an operation came to.
pub(crate) enum Outcome {
    Append(Result<AppendResult>),
    Delete(Result<DeleteResult>),
}

/// A stream's row in `streams`.
#[derive(Clone, Default)]
pub(crate) struct Head {
    pub(crate) last: Option<u64>,
    pub(crate) tombstoned: bool,
    /// The data of the last `$metadata` event of `$$stream`.
    pub(crate) metadata_json: Option<Bytes>,
}

impl Head {
    pub(crate) fn metadata(&self, stream: &StreamName) -> StreamMetadata {
        self.metadata_json
            .as_ref()
            .and_then(|json| StreamMetadata::from_json(stream, json).ok())
            .unwrap_or_default()
    }

    pub(crate) fn is_soft_deleted(&self, stream: &StreamName) -> bool {
        self.metadata_json.is_some()
            && self.metadata(stream).truncate_before == Some(SOFT_DELETED_TRUNCATE_BEFORE)
    }

    pub(crate) fn state(&self) -> StreamState {
        match (self.tombstoned, self.last) {
            (true, _) => StreamState::Tombstoned,
            (false, Some(last)) => StreamState::At(Revision(last)),
            (false, None) => StreamState::NoStream,
        }
    }
}

/// An event row the group inserts.
pub(crate) struct NewEvent {
    pub(crate) position: u64,
    pub(crate) stream: StreamName,
    pub(crate) revision: u64,
    pub(crate) id: EventId,
    pub(crate) event_type: String,
    pub(crate) is_json: bool,
    pub(crate) data: Bytes,
    pub(crate) metadata: Bytes,
    pub(crate) created_nanos: i64,
}

/// Event ids at known revisions: fetched for the checks, or written by this group.
type KnownEvents = BTreeMap<u64, (EventId, u64)>;

/// `(stream, first revision, last revision)`: every stored event in the range is wanted.
pub(crate) type RevisionRange = (StreamName, u64, u64);

/// Why a re-send check came out as it did.
enum Resend {
    Duplicate(AppendResult),
    New,
    Partial,
}

/// One group commit being planned.
pub(crate) struct Group {
    heads: HashMap<StreamName, Head>,
    known: HashMap<StreamName, KnownEvents>,
    next_position: u64,
    created_nanos: i64,
    pub(crate) events: Vec<NewEvent>,
    /// Streams whose head row changed.
    pub(crate) changed: HashSet<StreamName>,
}

/// `(stream, first event id)` of every `Any`/`StreamExists` append: where that id is among
/// the stream's last [`RESEND_WINDOW_EVENTS`] events, the append may be a re-send.
pub(crate) fn weak_resend_candidates(operations: &[Operation]) -> Vec<(&StreamName, EventId)> {
    operations
        .iter()
        .filter_map(|operation| match operation {
            Operation::Append {
                stream,
                expected: ExpectedRevision::Any | ExpectedRevision::StreamExists,
                events,
            } => Some((stream, events[0].id)),
            _ => None,
        })
        .collect()
}

/// Every stream whose head the checks of `operations` may look at.
pub(crate) fn streams_needed(operations: &[Operation]) -> Vec<StreamName> {
    let mut streams = Vec::new();
    for operation in operations {
        let stream = operation.stream();
        streams.push(stream.clone());
        match stream.described_stream() {
            Some(described) => streams.push(described),
            None => streams.push(stream.metadata_stream()),
        }
    }
    streams.sort();
    streams.dedup();
    streams
}

impl Group {
    /// A group over the heads read under the write lock; the log's last position is
    /// `last_position` (0 when empty).
    pub(crate) fn new(heads: HashMap<StreamName, Head>, last_position: u64) -> Self {
        Self {
            heads,
            known: HashMap::new(),
            next_position: last_position + 1,
            created_nanos: Timestamp::now().0,
            events: Vec::new(),
            changed: HashSet::new(),
        }
    }

    pub(crate) fn head(&self, stream: &StreamName) -> Head {
        self.heads.get(stream).cloned().unwrap_or_default()
    }

    /// Position of the group's last event, if it writes any.
    pub(crate) fn last_position(&self) -> Option<u64> {
        self.events.last().map(|event| event.position)
    }

    /// The ranges `Exact`/`NoStream` re-send checks of `operations` need, judged on the
    /// stored heads.
    pub(crate) fn ranges_for_checks(&self, operations: &[Operation]) -> Vec<RevisionRange> {
        let mut ranges = Vec::new();
        for operation in operations {
            let Operation::Append {
                stream,
                expected,
                events,
            } = operation
            else {
                continue;
            };
            let Some(last) = self.head(stream).last else {
                continue;
            };
            let count = events.len() as u64;
            match *expected {
                ExpectedRevision::Exact(revision) if revision < last => {
                    ranges.push((stream.clone(), revision + 1, revision + count));
                }
                ExpectedRevision::NoStream => ranges.push((stream.clone(), 0, count - 1)),
                _ => {}
            }
        }
        ranges
    }

    /// Ranges to fetch after the first ids were found: the rest of each re-send.
    pub(crate) fn follow_up(&self, operations: &[Operation]) -> Vec<RevisionRange> {
        let mut ranges = Vec::new();
        for operation in operations {
            if let Operation::Append { stream, events, .. } = operation
                && let Some(first) = self.revision_of(stream, events[0].id)
            {
                ranges.push((stream.clone(), first, first + events.len() as u64 - 1));
            }
        }
        ranges
    }

    /// Remembers a stored event the checks may ask about.
    pub(crate) fn learn(&mut self, stream: StreamName, revision: u64, id: EventId, position: u64) {
        self.known
            .entry(stream)
            .or_default()
            .insert(revision, (id, position));
    }

    fn revision_of(&self, stream: &StreamName, id: EventId) -> Option<u64> {
        self.known.get(stream).and_then(|events| {
            events
                .iter()
                .find(|(_, (known_id, _))| *known_id == id)
                .map(|(revision, _)| *revision)
        })
    }

    fn position_with_id(&self, stream: &StreamName, revision: u64, id: EventId) -> Option<u64> {
        match self.known.get(stream)?.get(&revision) {
            Some((known_id, position)) if *known_id == id => Some(*position),
            _ => None,
        }
    }

    /// Plans one operation.
    pub(crate) fn plan(&mut self, operation: &Operation) -> Outcome {
        match operation {
            Operation::Append {
                stream,
                expected,
                events,
            } => Outcome::Append(self.plan_append(stream, *expected, events)),
            Operation::Delete {
                stream,
                expected,
                tombstone,
            } => Outcome::Delete(self.plan_delete(stream, *expected, *tombstone)),
        }
    }

    fn live_head(&self, stream: &StreamName) -> Result<Head> {
        let head = self.head(stream);
        if head.tombstoned {
            return Err(Error::StreamDeleted {
                stream: stream.clone(),
            });
        }
        Ok(head)
    }

    fn plan_append(
        &mut self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: &[ProposedEvent],
    ) -> Result<AppendResult> {
        if let Some(described) = stream.described_stream()
            && self.head(&described).tombstoned
        {
            return Err(Error::StreamDeleted { stream: described });
        }
        let head = self.live_head(stream)?;
        let wrong = || Error::WrongExpectedRevision {
            stream: stream.clone(),
            expected,
            actual: head.state(),
        };
        let soft_deleted = head.is_soft_deleted(stream);
        let resend = match (expected, head.last) {
            (ExpectedRevision::Any, _) => self.weak_resend_check(stream, events),
            (ExpectedRevision::StreamExists, _) if soft_deleted => {
                return Err(Error::StreamDeleted {
                    stream: stream.clone(),
                });
            }
            (ExpectedRevision::StreamExists, None) => {
                if self.head(&stream.metadata_stream()).last.is_none() {
                    return Err(wrong());
                }
                Resend::New
            }
            (ExpectedRevision::StreamExists, Some(_)) => self.weak_resend_check(stream, events),
            (ExpectedRevision::NoStream, None) => Resend::New,
            (ExpectedRevision::NoStream, Some(_)) => {
                match self.strong_resend_check(stream, 0, events) {
                    Resend::New if soft_deleted => Resend::New,
                    Resend::New => return Err(wrong()),
                    other => other,
                }
            }
            (ExpectedRevision::Exact(revision), Some(last)) if revision == last => Resend::New,
            (ExpectedRevision::Exact(revision), Some(last)) if revision < last => {
                match self.strong_resend_check(stream, revision + 1, events) {
                    Resend::New => return Err(wrong()),
                    other => other,
                }
            }
            (ExpectedRevision::Exact(_), _) => return Err(wrong()),
        };
        match resend {
            Resend::Duplicate(result) => Ok(result),
            Resend::Partial => Err(wrong()),
            Resend::New => Ok(self.write_events(stream, &head, events)),
        }
    }

    fn weak_resend_check(&self, stream: &StreamName, events: &[ProposedEvent]) -> Resend {
        match self.revision_of(stream, events[0].id) {
            Some(first) => self.strong_resend_check(stream, first, events),
            None => Resend::New,
        }
    }

    fn strong_resend_check(
        &self,
        stream: &StreamName,
        first_revision: u64,
        events: &[ProposedEvent],
    ) -> Resend {
        let mut last_found = None;
        for (offset, event) in events.iter().enumerate() {
            let revision = first_revision + offset as u64;
            match (self.position_with_id(stream, revision, event.id), offset) {
                (Some(position), _) => last_found = Some((revision, position)),
                (None, 0) => return Resend::New,
                (None, _) => return Resend::Partial,
            }
        }
        match last_found {
            Some((revision, position)) => Resend::Duplicate(AppendResult {
                current_revision: Revision(revision),
                position: Position(position),
            }),
            None => Resend::New,
        }
    }

    fn set_head(&mut self, stream: &StreamName, head: Head) {
        self.heads.insert(stream.clone(), head);
        self.changed.insert(stream.clone());
    }

    /// Places one event at the next position.
    fn emit(&mut self, stream: &StreamName, revision: u64, event: ProposedEvent) -> u64 {
        let position = self.next_position;
        self.next_position += 1;
        if revision != TOMBSTONE_REVISION {
            self.learn(stream.clone(), revision, event.id, position);
        }
        self.events.push(NewEvent {
            position,
            stream: stream.clone(),
            revision,
            id: event.id,
            event_type: event.event_type,
            is_json: event.content_type == ContentType::Json,
            data: event.data,
            metadata: event.metadata,
            created_nanos: self.created_nanos,
        });
        position
    }

    fn write_events(
        &mut self,
        stream: &StreamName,
        head: &Head,
        events: &[ProposedEvent],
    ) -> AppendResult {
        let first_revision = head.last.map_or(0, |last| last + 1);
        let revive = head.is_soft_deleted(stream) && !stream.is_metadata_stream();
        let mut last_position = 0;
        for (offset, event) in events.iter().enumerate() {
            last_position = self.emit(stream, first_revision + offset as u64, event.clone());
        }
        let last_revision = first_revision + events.len() as u64 - 1;
        let mut written = head.clone();
        written.last = Some(last_revision);
        self.set_head(stream, written);
        if let Some(described) = stream.described_stream() {
            let mut described_head = self.head(&described);
            described_head.metadata_json = Some(events[events.len() - 1].data.clone());
            self.set_head(&described, described_head);
        }
        if revive {
            let mut metadata = head.metadata(stream);
            metadata.truncate_before = Some(first_revision);
            self.write_metadata(stream, &metadata);
        }
        AppendResult {
            current_revision: Revision(last_revision),
            position: Position(last_position),
        }
    }

    /// Writes `metadata` for `stream` as one event of `$$stream`; returns its position.
    fn write_metadata(&mut self, stream: &StreamName, metadata: &StreamMetadata) -> u64 {
        let metadata_stream = stream.metadata_stream();
        let head = self.head(&metadata_stream);
        let revision = head.last.map_or(0, |last| last + 1);
        let event = ProposedEvent {
            // Derived, as the engine does: an export of either imports into the other.
            id: EventId::of_store_record(&metadata_stream, revision),
            event_type: METADATA_EVENT_TYPE.to_owned(),
            content_type: ContentType::Json,
            data: Bytes::from(metadata.to_json()),
            metadata: Bytes::new(),
        };
        let result = self.write_events(&metadata_stream, &head, &[event]);
        result.position.0
    }

    fn plan_delete(
        &mut self,
        stream: &StreamName,
        expected: ExpectedRevision,
        tombstone: bool,
    ) -> Result<DeleteResult> {
        if stream.is_metadata_stream() {
            return Err(Error::InvalidArgument {
                reason: format!("{stream} is a metadata stream: delete the stream it describes"),
            });
        }
        let head = self.live_head(stream)?;
        let wrong = || Error::WrongExpectedRevision {
            stream: stream.clone(),
            expected,
            actual: head.state(),
        };
        let soft_deleted = head.is_soft_deleted(stream);
        let has_metadata = self.head(&stream.metadata_stream()).last.is_some();
        if !tombstone && head.last.is_none() && !has_metadata {
            return Err(wrong());
        }
        match (expected, head.last) {
            (ExpectedRevision::Any, _) => {}
            (ExpectedRevision::StreamExists, _) if soft_deleted => {
                return Err(Error::StreamDeleted {
                    stream: stream.clone(),
                });
            }
            (ExpectedRevision::StreamExists, None) if tombstone || !has_metadata => {
                return Err(wrong());
            }
            (ExpectedRevision::StreamExists, _) => {}
            (ExpectedRevision::NoStream, None) => {}
            (ExpectedRevision::NoStream, Some(_)) if soft_deleted => {}
            (ExpectedRevision::Exact(revision), Some(last)) if revision == last => {}
            (ExpectedRevision::NoStream | ExpectedRevision::Exact(_), _) => return Err(wrong()),
        }
        let position = if tombstone {
            let event = ProposedEvent {
                id: EventId::new_random(),
                event_type: TOMBSTONE_EVENT_TYPE.to_owned(),
                content_type: ContentType::Binary,
                data: Bytes::new(),
                metadata: Bytes::new(),
            };
            let position = self.emit(stream, TOMBSTONE_REVISION, event);
            let mut tombstoned = head.clone();
            tombstoned.tombstoned = true;
            self.set_head(stream, tombstoned);
            position
        } else {
            let mut metadata = head.metadata(stream);
            metadata.truncate_before = Some(SOFT_DELETED_TRUNCATE_BEFORE);
            self.write_metadata(stream, &metadata)
        };
        Ok(DeleteResult {
            position: Position(position),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: &str) -> StreamName {
        StreamName::new(name).unwrap()
    }

    fn append(name: &str, expected: ExpectedRevision, events: &[ProposedEvent]) -> Operation {
        Operation::Append {
            stream: stream(name),
            expected,
            events: events.to_vec(),
        }
    }

    fn appended(outcome: Outcome) -> Result<AppendResult> {
        match outcome {
            Outcome::Append(result) => result,
            Outcome::Delete(_) => panic!("an append is answered as an append"),
        }
    }

    #[test]
    fn a_group_gives_consecutive_positions_after_the_stored_end() {
        let mut group = Group::new(HashMap::new(), 41);
        let first = appended(group.plan(&append(
            "a-1",
            ExpectedRevision::NoStream,
            &[
                ProposedEvent::json("E", "{}"),
                ProposedEvent::json("E", "{}"),
            ],
        )))
        .unwrap();
        let second = appended(group.plan(&append(
            "b-1",
            ExpectedRevision::Any,
            &[ProposedEvent::json("E", "{}")],
        )))
        .unwrap();
        assert_eq!(first.position, Position(43));
        assert_eq!(second.position, Position(44));
        let positions: Vec<u64> = group.events.iter().map(|event| event.position).collect();
        assert_eq!(positions, [42, 43, 44]);
    }

    #[test]
    fn a_resend_in_the_same_group_as_the_original_writes_nothing() {
        let events = [
            ProposedEvent::json("E", "{}"),
            ProposedEvent::json("E", "{}"),
        ];
        for expected in [ExpectedRevision::Any, ExpectedRevision::NoStream] {
            let mut group = Group::new(HashMap::new(), 0);
            let original = appended(group.plan(&append("s-1", expected, &events))).unwrap();
            let resent = appended(group.plan(&append("s-1", expected, &events))).unwrap();
            assert_eq!(resent, original, "{expected:?}");
            assert_eq!(group.events.len(), 2, "{expected:?}: written once");
        }
    }

    #[test]
    fn a_conflict_in_a_group_does_not_stop_the_others() {
        let mut group = Group::new(HashMap::new(), 0);
        let one = [ProposedEvent::json("E", "{}")];
        appended(group.plan(&append("s-1", ExpectedRevision::NoStream, &one))).unwrap();
        let conflict = appended(group.plan(&append(
            "s-1",
            ExpectedRevision::NoStream,
            &[ProposedEvent::json("E", "{}")],
        )));
        assert!(matches!(conflict, Err(Error::WrongExpectedRevision { .. })));
        let next = appended(group.plan(&append(
            "s-1",
            ExpectedRevision::Exact(0),
            &[ProposedEvent::json("E", "{}")],
        )))
        .unwrap();
        assert_eq!(next.current_revision, Revision(1));
        assert_eq!(group.events.len(), 2);
    }

    #[test]
    fn soft_delete_then_append_revives_with_the_next_revision() {
        let mut group = Group::new(HashMap::new(), 0);
        let s = stream("s-1");
        appended(group.plan(&append(
            "s-1",
            ExpectedRevision::NoStream,
            &[ProposedEvent::json("E", "{}")],
        )))
        .unwrap();
        let deleted = group.plan(&Operation::Delete {
            stream: s.clone(),
            expected: ExpectedRevision::Exact(0),
            tombstone: false,
        });
        assert!(matches!(deleted, Outcome::Delete(Ok(_))));
        assert!(group.head(&s).is_soft_deleted(&s));
        let revived = appended(group.plan(&append(
            "s-1",
            ExpectedRevision::NoStream,
            &[ProposedEvent::json("E", "{}")],
        )))
        .unwrap();
        assert_eq!(revived.current_revision, Revision(1));
        assert_eq!(group.head(&s).metadata(&s).truncate_before, Some(1));
    }
}
