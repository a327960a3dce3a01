//! Planning one group commit: each append and delete decided by the shared rules
//! ([`strata_core::rules`]) against the stream heads (as the database had them when the
//! write lock was taken, plus what earlier requests of the same group wrote), and the rows
//! the group inserts. No I/O here: the writer fetches what the rules ask about first
//! ([`streams_needed`], [`Group::ranges_for_checks`], [`weak_resend_candidates`],
//! [`Group::follow_up`]). A group can be planned again from the same fetched state without
//! one of its requests: [`Group::new`], [`Group::learn`], then [`Group::plan_checked`] per request.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use strata_core::rules::{
    self, AppendDecision, MultiAppendDecision, RecordBody, StreamHead, StreamView, WritePlan,
    streams_consulted,
};
use strata_core::{
    AppendCondition, AppendPart, AppendResult, ContentType, DeleteResult, EventId,
    ExpectedRevision, METADATA_EVENT_TYPE, MultiAppendResult, Position, ProposedEvent, Result,
    StreamMetadata, StreamName, StreamState, TOMBSTONE_EVENT_TYPE, Timestamp, events_of_parts,
};

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
    /// Every part in one plan, so all of it lands in the group's transaction or none.
    AppendMulti {
        parts: Vec<AppendPart>,
        /// A conditional (DCB) append's condition: the group checks the stored events
        /// under the write lock (`commit::stored_conflict`) and its own earlier events.
        condition: Option<AppendCondition>,
    },
}

impl Operation {
    /// Every stream the operation names (written or checked).
    pub(crate) fn streams(&self) -> Vec<&StreamName> {
        match self {
            Operation::Append { stream, .. } | Operation::Delete { stream, .. } => vec![stream],
            Operation::AppendMulti { parts, .. } => parts.iter().map(|part| &part.stream).collect(),
        }
    }

    /// The appends the operation makes, as `(stream, expected, events)`: the re-send
    /// checks of each are fetched alike.
    fn appends(&self) -> Vec<(&StreamName, ExpectedRevision, &[ProposedEvent])> {
        match self {
            Operation::Append {
                stream,
                expected,
                events,
            } => vec![(stream, *expected, events)],
            Operation::Delete { .. } => Vec::new(),
            Operation::AppendMulti { parts, .. } => parts
                .iter()
                .filter(|part| !part.is_check())
                .map(|part| (&part.stream, part.expected, part.events.as_slice()))
                .collect(),
        }
    }

    pub(crate) fn event_count(&self) -> usize {
        match self {
            Operation::Append { events, .. } => events.len(),
            Operation::Delete { .. } => 1,
            Operation::AppendMulti { parts, .. } => {
                parts.iter().map(|part| part.events.len()).sum()
            }
        }
    }

    pub(crate) fn size_bytes(&self) -> usize {
        match self {
            Operation::Append { events, .. } => events.iter().map(ProposedEvent::size_bytes).sum(),
            Operation::Delete { .. } => 0,
            Operation::AppendMulti { parts, .. } => parts
                .iter()
                .flat_map(|part| &part.events)
                .map(ProposedEvent::size_bytes)
                .sum(),
        }
    }
}

/// What an operation came to.
pub(crate) enum Outcome {
    Append(Result<AppendResult>),
    Delete(Result<DeleteResult>),
    AppendMulti(Result<MultiAppendResult>),
}

/// A stream's row in `streams`.
#[derive(Clone, Default)]
pub(crate) struct Head {
    pub(crate) last: Option<u64>,
    pub(crate) tombstoned: bool,
    /// The data of the last event of `$$stream`.
    pub(crate) metadata_json: Option<Bytes>,
}

impl Head {
    /// The head as the rules see it (the metadata parsed; a bad document counts as empty).
    pub(crate) fn to_stream_head(&self, stream: &StreamName) -> StreamHead {
        StreamHead {
            last_revision: self.last,
            tombstoned: self.tombstoned,
            metadata: self
                .metadata_json
                .as_ref()
                .map(|json| Arc::new(StreamMetadata::from_json_or_default(stream, json))),
        }
    }

    pub(crate) fn state(&self) -> StreamState {
        StreamHead {
            last_revision: self.last,
            tombstoned: self.tombstoned,
            metadata: None,
        }
        .state()
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
        .flat_map(Operation::appends)
        .filter_map(|(stream, expected, events)| match expected {
            ExpectedRevision::Any | ExpectedRevision::StreamExists => Some((stream, events[0].id)),
            _ => None,
        })
        .collect()
}

/// Every stream whose head the rules may ask about for `operations`.
pub(crate) fn streams_needed(operations: &[Operation]) -> Vec<StreamName> {
    let mut streams: Vec<StreamName> = operations
        .iter()
        .flat_map(Operation::streams)
        .flat_map(streams_consulted)
        .collect();
    streams.sort();
    streams.dedup();
    streams
}

impl Group {
    /// A group over the heads read under the write lock; the log's last position is
    /// `last_position` (0 when empty); its events are recorded at `created`.
    pub(crate) fn new(
        heads: HashMap<StreamName, Head>,
        last_position: u64,
        created: Timestamp,
    ) -> Self {
        Self {
            heads,
            known: HashMap::new(),
            next_position: last_position + 1,
            created_nanos: created.0,
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
        for (stream, expected, events) in operations.iter().flat_map(Operation::appends) {
            let Some(last) = self.head(stream).last else {
                continue;
            };
            let count = events.len() as u64;
            match expected {
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
        for (stream, _, events) in operations.iter().flat_map(Operation::appends) {
            if let Some(first) = self.revision_of(stream, events[0].id) {
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

    /// Plans one operation; a refused one leaves the group as it was.
    #[cfg(test)]
    pub(crate) fn plan(&mut self, operation: &Operation) -> Outcome {
        self.plan_checked(operation, None)
    }

    /// Plans `operation`; `stored_conflict` is the first stored event matching its
    /// condition (a conditional append's), found under the write lock.
    pub(crate) fn plan_checked(
        &mut self,
        operation: &Operation,
        stored_conflict: Option<u64>,
    ) -> Outcome {
        match operation {
            Operation::Append {
                stream,
                expected,
                events,
            } => Outcome::Append(rules::plan_append(&*self, stream, *expected, events).map(
                |decision| match decision {
                    AppendDecision::AlreadyAppended(result) => result,
                    AppendDecision::Write(plan) => {
                        let positions = self.carry_out(&plan, events);
                        plan.append_result(&positions)
                    }
                },
            )),
            Operation::Delete {
                stream,
                expected,
                tombstone,
            } => Outcome::Delete(
                rules::plan_delete(&*self, stream, *expected, *tombstone).map(|plan| {
                    let positions = self.carry_out(&plan, &[]);
                    plan.delete_result(&positions)
                }),
            ),
            Operation::AppendMulti { parts, condition } => Outcome::AppendMulti(
                rules::plan_multi_append(&*self, parts).and_then(|decision| match decision {
                    MultiAppendDecision::AlreadyAppended(result) => Ok(result),
                    MultiAppendDecision::Write(plan) => {
                        if let Some(condition) = condition
                            && let Some(found) = self.conflict(condition, stored_conflict)
                        {
                            return Err(condition.failed(Position(found)));
                        }
                        let events = events_of_parts(parts.clone());
                        let positions = self.carry_out(&plan.plan, &events);
                        Ok(plan.result(&positions))
                    }
                }),
            ),
        }
    }

    /// The first event matching `condition` after its position: the stored one found
    /// under the write lock, or one this group wrote for an earlier request.
    fn conflict(&self, condition: &AppendCondition, stored: Option<u64>) -> Option<u64> {
        let in_group = self
            .events
            .iter()
            .filter(|event| condition.is_after(Position(event.position)))
            .find(|event| {
                condition.query.matches_record(
                    event.stream.as_str(),
                    event.revision,
                    &event.event_type,
                    &event.metadata,
                )
            })
            .map(|event| event.position);
        stored.into_iter().chain(in_group).min()
    }

    /// Gives a plan's records the next positions and takes its heads; a stream whose
    /// metadata stream the plan writes keeps the last such record's data as its metadata.
    fn carry_out(&mut self, plan: &WritePlan, events: &[ProposedEvent]) -> Vec<Position> {
        let mut positions = Vec::with_capacity(plan.records.len());
        for record in &plan.records {
            let (id, event_type, is_json, data, metadata) = match &record.body {
                RecordBody::Proposed(index) => {
                    let event = &events[*index];
                    (
                        event.id,
                        String::from(&event.event_type),
                        event.content_type == ContentType::Json,
                        event.data.clone(),
                        event.metadata.clone(),
                    )
                }
                RecordBody::Metadata { id, data } => (
                    *id,
                    METADATA_EVENT_TYPE.to_owned(),
                    true,
                    data.clone(),
                    Bytes::new(),
                ),
                RecordBody::Tombstone { id } => (
                    *id,
                    TOMBSTONE_EVENT_TYPE.to_owned(),
                    false,
                    Bytes::new(),
                    Bytes::new(),
                ),
            };
            let position = self.next_position;
            self.next_position += 1;
            if record.revision != TOMBSTONE_REVISION {
                self.learn(record.stream.clone(), record.revision, id, position);
            }
            self.events.push(NewEvent {
                position,
                stream: record.stream.clone(),
                revision: record.revision,
                id,
                event_type,
                is_json,
                data,
                metadata,
                created_nanos: self.created_nanos,
            });
            positions.push(Position(position));
        }
        for (stream, head) in &plan.heads {
            let mut row = self.head(stream);
            row.last = head.last_revision;
            row.tombstoned = head.tombstoned;
            let metadata_stream = stream.metadata_stream();
            let newest_metadata = plan
                .records
                .iter()
                .zip(&self.events[self.events.len() - plan.records.len()..])
                .rfind(|(record, _)| record.stream == metadata_stream)
                .map(|(_, row)| row.data.clone());
            if newest_metadata.is_some() {
                row.metadata_json = newest_metadata;
            }
            self.heads.insert(stream.clone(), row);
            self.changed.insert(stream.clone());
        }
        positions
    }
}

/// The rules' questions, answered from the fetched heads and events and what the group
/// wrote so far.
impl StreamView for Group {
    fn head(&self, stream: &StreamName) -> Result<StreamHead> {
        Ok(Group::head(self, stream).to_stream_head(stream))
    }

    fn event_position(
        &self,
        stream: &StreamName,
        revision: u64,
        id: EventId,
    ) -> Result<Option<Position>> {
        Ok(
            match self
                .known
                .get(stream)
                .and_then(|events| events.get(&revision))
            {
                Some((known_id, position)) if *known_id == id => Some(Position(*position)),
                _ => None,
            },
        )
    }

    fn recent_revision(&self, stream: &StreamName, id: EventId) -> Result<Option<u64>> {
        Ok(self.revision_of(stream, id))
    }
}

#[cfg(test)]
mod tests {
    use strata_core::{Error, Revision};

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
            _ => panic!("an append is answered as an append"),
        }
    }

    #[test]
    fn a_group_gives_consecutive_positions_after_the_stored_end() {
        let mut group = Group::new(HashMap::new(), 41, Timestamp(0));
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
            let mut group = Group::new(HashMap::new(), 0, Timestamp(0));
            let original = appended(group.plan(&append("s-1", expected, &events))).unwrap();
            let resent = appended(group.plan(&append("s-1", expected, &events))).unwrap();
            assert_eq!(resent, original, "{expected:?}");
            assert_eq!(group.events.len(), 2, "{expected:?}: written once");
        }
    }

    #[test]
    fn a_conflict_in_a_group_does_not_stop_the_others() {
        let mut group = Group::new(HashMap::new(), 0, Timestamp(0));
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
    fn a_refused_multi_stream_append_leaves_the_group_as_it_was() {
        let mut group = Group::new(HashMap::new(), 0, Timestamp(0));
        let one = || vec![ProposedEvent::json("E", "{}")];
        appended(group.plan(&append("s-1", ExpectedRevision::NoStream, &one()))).unwrap();
        let multi = |expected| Operation::AppendMulti {
            parts: vec![
                AppendPart::write(stream("a-1"), ExpectedRevision::Any, one()),
                AppendPart::write(stream("s-1"), expected, one()),
            ],
            condition: None,
        };
        let Outcome::AppendMulti(refused) = group.plan(&multi(ExpectedRevision::NoStream)) else {
            panic!("a multi-stream append is answered as one");
        };
        assert!(matches!(refused, Err(Error::WrongExpectedRevision { .. })));
        assert_eq!(
            group.events.len(),
            1,
            "nothing of the refused request is planned"
        );
        assert!(group.head(&stream("a-1")).last.is_none());
        let Outcome::AppendMulti(written) = group.plan(&multi(ExpectedRevision::Exact(0))) else {
            panic!("a multi-stream append is answered as one");
        };
        let written = written.unwrap();
        let positions: Vec<u64> = group.events.iter().map(|event| event.position).collect();
        assert_eq!(positions, [1, 2, 3]);
        assert_eq!(written.position, Position(3));
        assert_eq!(written.parts[1].1.current_revision, Revision(1));
    }

    #[test]
    fn soft_delete_then_append_revives_with_the_next_revision() {
        let mut group = Group::new(HashMap::new(), 0, Timestamp(0));
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
        assert!(group.head(&s).to_stream_head(&s).is_soft_deleted());
        let revived = appended(group.plan(&append(
            "s-1",
            ExpectedRevision::NoStream,
            &[ProposedEvent::json("E", "{}")],
        )))
        .unwrap();
        assert_eq!(revived.current_revision, Revision(1));
        let revived = group.head(&s).to_stream_head(&s);
        assert_eq!(revived.metadata.and_then(|m| m.truncate_before), Some(1));
    }
}
