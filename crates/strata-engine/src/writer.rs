//! The single writer, first stage of group commit. It drains every pending request, checks
//! each against the stream heads (including what earlier, not yet durable groups wrote),
//! encodes the group and writes it with one positional write per segment, then hands it to
//! the syncer (`syncer.rs`) and goes on with the next group while that one is synced.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use hashbrown::HashMap;
use strata_core::rules::{
    self, AppendDecision, MultiAppendDecision, RecordBody, StreamHead, StreamView, WritePlan,
};
use strata_core::{
    AppendCondition, AppendPart, AppendResult, DeleteResult, Error, EventId, ExpectedRevision,
    METADATA_EVENT_TYPE, MultiAppendResult, Position, ProposedEvent, Result, StreamName,
    TOMBSTONE_EVENT_TYPE, events_of_parts,
};
use tokio::sync::{mpsc, oneshot};

use crate::format::{
    EventRecord, FRAME_MIN_BYTES, SEGMENT_HEADER_BYTES, TOMBSTONE_REVISION, encode_event_marked,
    encode_padding,
};
use crate::id_file::id_hash;
use crate::index::{IdEntry, RecentIds};
use crate::index_lookup::{position_of, stream_head};
use crate::log_reader::{LogReader, to_usize};
use crate::secondary::{KeyNames, RunKeys};
use crate::segments::create_segment;
use crate::shared::Shared;
use crate::syncer::{Handoff, IndexUpdate, Reply, WrittenGroup};

pub(crate) enum Request {
    Append {
        stream: StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
        reply: oneshot::Sender<Result<AppendResult>>,
    },
    Delete {
        stream: StreamName,
        expected: ExpectedRevision,
        tombstone: bool,
        reply: oneshot::Sender<Result<DeleteResult>>,
    },
    /// Every part in one transaction (one commit marker), so after a crash the request
    /// is wholly visible or not at all.
    AppendMulti {
        parts: Vec<AppendPart>,
        /// A conditional (DCB) append's condition, checked in the writer just before the
        /// request's frames are encoded.
        condition: Option<AppendCondition>,
        reply: oneshot::Sender<Result<MultiAppendResult>>,
    },
    Shutdown {
        done: std::sync::mpsc::Sender<()>,
    },
    /// Save an index file now (MergeIndexes); `done` hears once it is handed to the saver.
    SaveIndex {
        done: std::sync::mpsc::Sender<()>,
    },
}

impl Request {
    fn size_bytes(&self) -> usize {
        match self {
            Request::Append { events, .. } => events.iter().map(ProposedEvent::size_bytes).sum(),
            Request::AppendMulti { parts, .. } => parts
                .iter()
                .flat_map(|part| &part.events)
                .map(ProposedEvent::size_bytes)
                .sum(),
            _ => 0,
        }
    }
}

/// Bytes bound for one segment at one offset.
struct Chunk {
    segment_index: u64,
    start: u64,
    bytes: Vec<u8>,
}

/// One group commit being assembled.
#[derive(Default)]
struct Group {
    chunks: Vec<Chunk>,
    updates: Vec<IndexUpdate>,
    replies: Vec<Reply>,
    /// Whether an event frame was encoded yet: the first carries the sync mark.
    has_event: bool,
    /// With the event id index on, the `(id hash, position)` of its event frames but
    /// tombstones: the id builder files them instead of reading the log again.
    ids: Vec<(u64, u64)>,
}

impl Group {
    fn encoded_bytes(&self) -> usize {
        self.chunks.iter().map(|chunk| chunk.bytes.len()).sum()
    }
}

/// The page size writes are rounded up to.
const PAGE_BYTES: u64 = 4096;

/// Streams whose pending heads are kept before the published ones are pruned.
const PENDING_HEADS_PRUNE_AT: usize = 65_536;

pub(crate) struct Writer {
    shared: Arc<Shared>,
    requests: mpsc::UnboundedReceiver<Request>,
    handoffs: std::sync::mpsc::SyncSender<Handoff>,
    /// Next frame position.
    position: u64,
    recent_ids: RecentIds,
    prepared_segment: Option<(u64, JoinHandle<Result<File>>)>,
    /// Heads written by groups that may not be published yet, with the group's sequence.
    pending_heads: HashMap<StreamName, (StreamHead, u64)>,
    group_sequence: u64,
    key_names: KeyNames,
    /// What the secondary indexes will hold of the events of groups not published yet
    /// (the syncer files them), in log order: conditional appends check them beside the
    /// published indexes.
    pending_events: VecDeque<PendingEvent>,
}

/// An event written by a group that may not be published yet, as the secondary indexes
/// will see it.
struct PendingEvent {
    sequence: u64,
    position: u64,
    /// `None` for a link (under no event type).
    event_type: Option<Arc<str>>,
    tags: Vec<Arc<str>>,
}

impl PendingEvent {
    fn matches(&self, query: &strata_core::Query) -> bool {
        query.items.iter().any(|item| {
            let type_ok = item.types.is_empty()
                || self
                    .event_type
                    .as_ref()
                    .is_some_and(|event_type| item.types.iter().any(|t| **t == **event_type));
            type_ok
                && item
                    .tags
                    .iter()
                    .all(|tag| self.tags.iter().any(|carried| **carried == **tag))
        })
    }
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        requests: mpsc::UnboundedReceiver<Request>,
        handoffs: std::sync::mpsc::SyncSender<Handoff>,
        position: u64,
        recent_ids: RecentIds,
    ) -> Self {
        Self {
            shared,
            requests,
            handoffs,
            position,
            recent_ids,
            prepared_segment: None,
            pending_heads: HashMap::new(),
            group_sequence: 0,
            key_names: KeyNames::default(),
            pending_events: VecDeque::new(),
        }
    }

    /// Runs until shutdown or until every sender is gone.
    pub(crate) fn run(mut self) {
        let segment_index = self.shared.segments.segment_of(self.position);
        if let Err(error) = self.open_segment(segment_index) {
            self.shared.poison(error.to_string());
        }
        self.prepare_segment_after(segment_index);
        let mut shutdown = None;
        while shutdown.is_none() {
            let Some(first) = self.requests.blocking_recv() else {
                break;
            };
            let mut batch_bytes = first.size_bytes();
            let mut batch = vec![first];
            while batch_bytes < self.shared.config.group_commit_bytes_max {
                match self.requests.try_recv() {
                    Ok(request) => {
                        batch_bytes += request.size_bytes();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
            shutdown = self.commit_group(batch);
        }
        // Once closed, the directory is free for the next opener, which may make the
        // same segment: a segment still being made must be finished first.
        if let Some((_, handle)) = self.prepared_segment.take() {
            let _ = handle.join();
        }
        if let Some(done) = shutdown {
            let _ = self.handoffs.send(Handoff::Shutdown(done));
        }
    }

    fn commit_group(&mut self, batch: Vec<Request>) -> Option<std::sync::mpsc::Sender<()>> {
        let mut group = Group::default();
        self.group_sequence += 1;
        let mut shutdown = None;
        let mut index_saves = Vec::new();
        let start_position = self.position;
        // Planning looks heads up under the index's read lock only for a moment, never
        // across segment creation or log reads: a slow disk must not stall the readers.
        for request in batch {
            match request {
                Request::Shutdown { done } => shutdown = Some(done),
                Request::SaveIndex { done } => index_saves.push(done),
                Request::Append {
                    stream,
                    expected,
                    events,
                    reply,
                } => {
                    let outcome = self.plan(&mut group, |writer, group| {
                        writer.append(group, &stream, expected, &events)
                    });
                    group.replies.push(Reply::Append(reply, outcome));
                }
                Request::AppendMulti {
                    parts,
                    condition,
                    reply,
                } => {
                    let outcome = self.plan(&mut group, |writer, group| {
                        writer.append_multi(group, parts, condition.as_ref())
                    });
                    group.replies.push(Reply::AppendMulti(reply, outcome));
                }
                Request::Delete {
                    stream,
                    expected,
                    tombstone,
                    reply,
                } => {
                    let outcome = self.plan(&mut group, |writer, group| {
                        writer.delete(group, &stream, expected, tombstone)
                    });
                    group.replies.push(Reply::Delete(reply, outcome));
                }
            }
        }
        if self.shared.poison_cause().is_some() {
            self.position = start_position;
            group.chunks.clear();
        } else if let Err(error) = self.write_group(&mut group) {
            let cause = error.to_string();
            tracing::error!(%cause, "write failed: the store is poisoned");
            self.shared.poison(cause);
            self.position = start_position;
        }
        let mut segments_touched: Vec<u64> = group
            .chunks
            .iter()
            .map(|chunk| chunk.segment_index)
            .collect();
        segments_touched.dedup();
        // Replies always go through the syncer, so that nothing (not even an idempotent
        // re-send of a group still being synced) is acknowledged before it is durable.
        let handoff = Handoff::Group(WrittenGroup {
            sequence: self.group_sequence,
            end_position: self.position,
            segments_touched,
            updates: group.updates,
            replies: group.replies,
            ids: group.ids,
        });
        if self.handoffs.send(handoff).is_err() {
            self.shared.poison("the syncer thread stopped".into());
        }
        for done in index_saves {
            let _ = self.handoffs.send(Handoff::SaveIndex(done));
        }
        self.prune_pending_heads();
        self.prune_pending_events();
        shutdown
    }

    /// Plans one request. A request that fails after some of its frames were encoded
    /// (opening the next segment failed: an I/O fault) would leave a partial transaction
    /// in the group, so it poisons the store and nothing of the group is written.
    fn plan<T>(
        &mut self,
        group: &mut Group,
        plan: impl FnOnce(&mut Self, &mut Group) -> Result<T>,
    ) -> Result<T> {
        if let Some(cause) = self.shared.poison_cause() {
            return Err(Error::Poisoned { cause });
        }
        let encoded_before = (self.position, group.encoded_bytes());
        let outcome = plan(self, group);
        if let Err(error) = &outcome
            && (self.position, group.encoded_bytes()) != encoded_before
        {
            let cause = format!("an append failed half-way through encoding: {error}");
            tracing::error!(%cause, "the store is poisoned");
            self.shared.poison(cause);
        }
        outcome
    }

    fn prune_pending_events(&mut self) {
        let published = self.shared.published_sequence.load(Ordering::Acquire);
        while self
            .pending_events
            .front()
            .is_some_and(|event| event.sequence <= published)
        {
            self.pending_events.pop_front();
        }
    }

    /// The first event matching `condition`'s query after its position: in the published
    /// secondary indexes, or among the events of groups not published yet (this group's
    /// earlier requests included). Groups leave `pending_events` only once published.
    fn condition_conflict(&self, condition: &AppendCondition) -> Result<Option<Position>> {
        let after = condition.after.map(|position| position.0);
        let indexed =
            crate::postings_lookup::query_positions(&self.shared, &condition.query, after, 1)?
                .first()
                .copied();
        let pending = self
            .pending_events
            .iter()
            .filter(|event| after.is_none_or(|after| event.position > after))
            .find(|event| event.matches(&condition.query))
            .map(|event| event.position);
        Ok(indexed.into_iter().chain(pending).min().map(Position))
    }

    fn prune_pending_heads(&mut self) {
        if self.pending_heads.len() >= PENDING_HEADS_PRUNE_AT {
            let published = self.shared.published_sequence.load(Ordering::Acquire);
            self.pending_heads
                .retain(|_, (_, sequence)| *sequence > published);
        }
    }

    /// What the rules see: this writer's unpublished heads over the index.
    fn view(&self) -> WriterView<'_> {
        WriterView {
            shared: &self.shared,
            pending_heads: &self.pending_heads,
            recent_ids: &self.recent_ids,
        }
    }

    fn append(
        &mut self,
        group: &mut Group,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: &[ProposedEvent],
    ) -> Result<AppendResult> {
        match rules::plan_append(&self.view(), stream, expected, events)? {
            AppendDecision::AlreadyAppended(result) => Ok(result),
            AppendDecision::Write(plan) => {
                let positions = self.carry_out(group, &plan, events)?;
                Ok(plan.append_result(&positions))
            }
        }
    }

    fn append_multi(
        &mut self,
        group: &mut Group,
        parts: Vec<AppendPart>,
        condition: Option<&AppendCondition>,
    ) -> Result<MultiAppendResult> {
        match rules::plan_multi_append(&self.view(), &parts)? {
            MultiAppendDecision::AlreadyAppended(result) => Ok(result),
            MultiAppendDecision::Write(plan) => {
                if let Some(condition) = condition
                    && let Some(found) = self.condition_conflict(condition)?
                {
                    return Err(condition.failed(found));
                }
                let events = events_of_parts(parts);
                let positions = self.carry_out(group, &plan.plan, &events)?;
                Ok(plan.result(&positions))
            }
        }
    }

    fn delete(
        &mut self,
        group: &mut Group,
        stream: &StreamName,
        expected: ExpectedRevision,
        tombstone: bool,
    ) -> Result<DeleteResult> {
        let plan = rules::plan_delete(&self.view(), stream, expected, tombstone)?;
        let positions = self.carry_out(group, &plan, &[])?;
        Ok(plan.delete_result(&positions))
    }

    /// Encodes a plan's records as one transaction (the commit marker on its last frame),
    /// and remembers the heads and index changes it makes.
    fn carry_out(
        &mut self,
        group: &mut Group,
        plan: &WritePlan,
        events: &[ProposedEvent],
    ) -> Result<Vec<Position>> {
        let created_nanos = self.shared.config.clock.now().0;
        let mut positions = Vec::with_capacity(plan.records.len());
        for (index, planned) in plan.records.iter().enumerate() {
            let commit = index + 1 == plan.records.len();
            let mut record = EventRecord {
                stream: planned.stream.as_str(),
                revision: planned.revision,
                id: 0,
                event_type: METADATA_EVENT_TYPE,
                json: true,
                created_nanos,
                data: &[],
                metadata: &[],
                commit,
            };
            match &planned.body {
                RecordBody::Proposed(at) => {
                    let event = &events[*at];
                    record.id = event.id.as_u128();
                    record.event_type = &event.event_type;
                    record.json = event.content_type == strata_core::ContentType::Json;
                    record.data = &event.data;
                    record.metadata = &event.metadata;
                }
                RecordBody::Metadata { id, data } => {
                    record.id = id.as_u128();
                    record.data = data;
                }
                RecordBody::Tombstone { id } => {
                    record.id = id.as_u128();
                    record.event_type = TOMBSTONE_EVENT_TYPE;
                    record.json = false;
                }
            }
            let stream_hash = self.recent_ids.stream_hash(&planned.stream);
            positions.push(Position(self.emit(group, stream_hash, &record)?));
        }
        self.note_plan(group, plan, events, &positions);
        Ok(positions)
    }

    /// The index updates of a written plan (consecutive revisions of a stream together),
    /// and its heads for the next requests.
    fn note_plan(
        &mut self,
        group: &mut Group,
        plan: &WritePlan,
        events: &[ProposedEvent],
        positions: &[Position],
    ) {
        let mut run_start = 0;
        for index in 1..=plan.records.len() {
            let run_ends = index == plan.records.len()
                || plan.records[index].stream != plan.records[run_start].stream;
            if run_ends {
                let first = &plan.records[run_start];
                // Without the system streams nothing is filed under keys (`add_run`).
                let keyed = if self.shared.config.system_streams {
                    &plan.records[run_start..index]
                } else {
                    &[]
                };
                let mut keys = RunKeys::with_capacity(keyed.len());
                for record in keyed {
                    let (event_type, metadata): (&str, &[u8]) = match &record.body {
                        RecordBody::Proposed(at) => {
                            (&events[*at].event_type, &events[*at].metadata)
                        }
                        RecordBody::Metadata { .. } => (METADATA_EVENT_TYPE, &[]),
                        RecordBody::Tombstone { .. } => (TOMBSTONE_EVENT_TYPE, &[]),
                    };
                    keys.push(
                        &mut self.key_names,
                        record.stream.as_str(),
                        record.revision,
                        event_type,
                        metadata,
                    );
                }
                self.note_pending_events(&keys, &positions[run_start..index], first);
                group.updates.push(IndexUpdate::Events {
                    stream: first.stream.clone(),
                    first_revision: first.revision,
                    positions: positions[run_start..index]
                        .iter()
                        .map(|position| position.0)
                        .collect(),
                    keys,
                });
                run_start = index;
            }
        }
        for (stream, metadata) in plan.metadata_changes() {
            group.updates.push(IndexUpdate::Metadata {
                stream: stream.clone(),
                metadata: metadata.clone(),
            });
        }
        for (stream, head) in &plan.heads {
            self.pending_heads
                .insert(stream.clone(), (head.clone(), self.group_sequence));
        }
    }

    /// Remembers a run's events as the secondary indexes will file them (the rules of
    /// `SecondaryIndexes::add_run`: links under no type, tags only in user streams).
    fn note_pending_events(
        &mut self,
        keys: &RunKeys,
        positions: &[Position],
        first: &rules::PlannedRecord,
    ) {
        if keys.event_types.len() != positions.len() || !self.shared.config.system_streams {
            return;
        }
        let system = first.stream.as_str().starts_with('$');
        for (offset, (event_type, position)) in keys.event_types.iter().zip(positions).enumerate() {
            let link = &**event_type == strata_core::system_streams::LINK_EVENT_TYPE;
            let tags = if system || link {
                Vec::new()
            } else {
                keys.tags
                    .iter()
                    .filter(|(at, _)| *at == offset)
                    .map(|(_, tag)| tag.clone())
                    .collect()
            };
            self.pending_events.push_back(PendingEvent {
                sequence: self.group_sequence,
                position: position.0,
                event_type: (!link).then(|| event_type.clone()),
                tags,
            });
        }
    }

    /// Places and encodes one frame and remembers its id; returns its position. The first
    /// event frame of a group carries the sync mark (recovery tells a torn tail from lost
    /// acknowledged data by it). A frame no segment can hold is refused before anything
    /// is encoded.
    fn emit(
        &mut self,
        group: &mut Group,
        stream_hash: u64,
        record: &EventRecord<'_>,
    ) -> Result<u64> {
        let segments = &self.shared.segments;
        let sync_mark = (!group.has_event
            && segments.carries_sync_marks(segments.segment_of(self.position)))
        .then(|| self.shared.synced_end.load(Ordering::Acquire));
        let frame_bytes = record.frame_bytes_marked(sync_mark.is_some());
        if frame_bytes as u64 > segments.size_bytes() - SEGMENT_HEADER_BYTES {
            return Err(Error::EventTooLarge {
                event_id: EventId::from_u128(record.id),
                size_bytes: record.data.len() + record.metadata.len() + record.event_type.len(),
                limit_bytes: self.shared.config.limits.event_bytes_max,
            });
        }
        self.make_room(group, frame_bytes as u64)?;
        let position = self.position;
        let chunk = self.current_chunk(group);
        encode_event_marked(&mut chunk.bytes, record, sync_mark);
        group.has_event = true;
        self.position += frame_bytes as u64;
        if record.revision != TOMBSTONE_REVISION {
            let entry = IdEntry {
                stream_hash,
                revision: record.revision,
                position,
            };
            self.recent_ids.insert(record.id, entry);
            if self.shared.config.event_id_index {
                group.ids.push((id_hash(record.id), position));
            }
        }
        Ok(position)
    }

    fn current_chunk<'g>(&self, group: &'g mut Group) -> &'g mut Chunk {
        let segment_index = self.shared.segments.segment_of(self.position);
        let starts_new = group
            .chunks
            .last()
            .is_none_or(|chunk| chunk.segment_index != segment_index);
        if starts_new {
            group.chunks.push(Chunk {
                segment_index,
                start: self.position,
                bytes: Vec::with_capacity(64 * 1024),
            });
        }
        let last = group.chunks.len() - 1;
        &mut group.chunks[last]
    }

    /// Pads the current segment and moves to the next when the frame does not fit, or
    /// would leave a gap too small for a padding frame.
    fn make_room(&mut self, group: &mut Group, frame_bytes: u64) -> Result<()> {
        let segment_size = self.shared.segments.size_bytes();
        if self.position.is_multiple_of(segment_size) {
            // The last frame ended exactly at a segment's end: skip the next one's header.
            self.open_segment(self.position / segment_size)?;
            self.position += SEGMENT_HEADER_BYTES;
        }
        let segments = &self.shared.segments;
        let segment_index = segments.segment_of(self.position);
        let segment_end = segments.segment_start(segment_index + 1);
        let room = segment_end - self.position;
        let leftover = room.saturating_sub(frame_bytes);
        if frame_bytes <= room && (leftover == 0 || leftover >= FRAME_MIN_BYTES as u64) {
            return Ok(());
        }
        // The next segment first: if it cannot be had, nothing of this frame is encoded.
        self.open_segment(segment_index + 1)?;
        let chunk = self.current_chunk(group);
        encode_padding(&mut chunk.bytes, to_usize(room));
        self.position = segment_end + SEGMENT_HEADER_BYTES;
        Ok(())
    }

    fn open_segment(&mut self, segment_index: u64) -> Result<()> {
        if self.shared.segments.count() > segment_index {
            return Ok(());
        }
        #[cfg(test)]
        tests::segment_gate::pass(self.shared.segments.log_dir());
        let file = match self.prepared_segment.take() {
            Some((prepared_index, handle)) if prepared_index == segment_index => {
                handle.join().map_err(|_| Error::Corrupt {
                    detail: "the thread preparing the next segment panicked".into(),
                })??
            }
            _ => create_segment(
                self.shared.segments.log_dir(),
                segment_index,
                self.shared.segments.size_bytes(),
            )?,
        };
        self.shared.segments.push(file);
        self.prepare_segment_after(segment_index);
        Ok(())
    }

    /// Zero-fills the next segment in the background, so rolling over rarely waits.
    fn prepare_segment_after(&mut self, segment_index: u64) {
        let next = segment_index + 1;
        if self.shared.segments.count() > next || self.prepared_segment.is_some() {
            return;
        }
        let log_dir = self.shared.segments.log_dir().to_path_buf();
        let size_bytes = self.shared.segments.size_bytes();
        let handle = std::thread::Builder::new()
            .name("strata-segment-prep".into())
            .spawn(move || create_segment(&log_dir, next, size_bytes));
        if let Ok(handle) = handle {
            self.prepared_segment = Some((next, handle));
        }
    }

    /// Writes each chunk, extended with zeros to the next page boundary: the space after
    /// the log end is zero anyway, and writing whole pages spares the kernel reading the
    /// last page from disk first (the pre-zeroed segment's pages are not in the cache).
    fn write_group(&mut self, group: &mut Group) -> Result<()> {
        let segments = &self.shared.segments;
        for chunk in &mut group.chunks {
            let file = segments.file(chunk.segment_index)?;
            let offset = chunk.start - segments.segment_start(chunk.segment_index);
            let end = offset + chunk.bytes.len() as u64;
            if end > segments.size_bytes() {
                return Err(Error::Corrupt {
                    detail: format!(
                        "a group write at {} would run past its segment (bug)",
                        segments.describe(chunk.start)
                    ),
                });
            }
            let page_end = end.next_multiple_of(PAGE_BYTES).min(segments.size_bytes());
            let written = chunk.bytes.len();
            chunk.bytes.resize(written + to_usize(page_end - end), 0);
            file.write_all_at(&chunk.bytes, offset).map_err(|error| {
                Error::io(
                    format!("writing at {}", segments.describe(chunk.start)),
                    error,
                )
            })?;
        }
        Ok(())
    }
}

/// The writer's answers to the rules: a stream's newest head (unpublished if a group in
/// flight wrote it, else the index's), and the ids it remembers or reads back. The index
/// lock is held only to copy a head or a position out.
struct WriterView<'a> {
    shared: &'a Shared,
    pending_heads: &'a HashMap<StreamName, (StreamHead, u64)>,
    recent_ids: &'a RecentIds,
}

impl StreamView for WriterView<'_> {
    fn head(&self, stream: &StreamName) -> Result<StreamHead> {
        if let Some((head, sequence)) = self.pending_heads.get(stream)
            && *sequence > self.shared.published_sequence.load(Ordering::Acquire)
        {
            return Ok(head.clone());
        }
        stream_head(self.shared, stream)
    }

    fn event_position(
        &self,
        stream: &StreamName,
        revision: u64,
        id: EventId,
    ) -> Result<Option<Position>> {
        if let Some(found) = self.recent_ids.get(id.as_u128())
            && found.stream_hash == self.recent_ids.stream_hash(stream)
            && found.revision == revision
        {
            return Ok(Some(Position(found.position)));
        }
        // Not among the recent ids for this place (the id may also have been used in
        // another stream since): the stored event decides, read without the index lock.
        let position = position_of(self.shared, stream, revision)?;
        let Some(position) = position else {
            return Ok(None);
        };
        let stored = LogReader::new(&self.shared.segments).read_event_if_present(position)?;
        Ok(stored.and_then(|stored| (stored.id == id).then_some(Position(position))))
    }

    fn serves_system_streams(&self) -> bool {
        self.shared.config.system_streams
    }

    fn recent_revision(&self, stream: &StreamName, id: EventId) -> Result<Option<u64>> {
        if let Some(found) = self.recent_ids.get(id.as_u128())
            && found.stream_hash == self.recent_ids.stream_hash(stream)
        {
            return Ok(Some(found.revision));
        }
        if !self.shared.config.event_id_index {
            return Ok(None);
        }
        // Older than the recent ids (or last used in another stream): the id files name
        // candidate positions (a bloom probe per file, usually nothing more for a new id);
        // the stored event decides, so hash collisions and scavenged events fall out.
        let candidates = self
            .shared
            .id_index
            .candidates(id.as_u128(), &self.shared.segments)?;
        let reader = LogReader::new(&self.shared.segments);
        for &position in candidates.iter().rev() {
            if let Some(stored) = reader.read_event_if_present(position)?
                && stored.id == id
                && stored.stream == *stream
            {
                return Ok(Some(stored.revision.0));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName, StreamSlice};

    use crate::{Config, Store};

    /// A test hook that holds the writer where it needs a new segment, until released.
    pub(super) mod segment_gate {
        use std::collections::HashMap;
        use std::path::{Path, PathBuf};
        use std::sync::{Arc, Condvar, Mutex, OnceLock};

        #[derive(Default)]
        struct Passage {
            entered: bool,
            released: bool,
        }

        #[derive(Default)]
        pub(crate) struct Gate {
            passage: Mutex<Passage>,
            changed: Condvar,
        }

        impl Gate {
            pub(crate) fn wait_until_entered(&self) {
                let mut passage = self.passage.lock().unwrap();
                while !passage.entered {
                    passage = self.changed.wait(passage).unwrap();
                }
            }

            pub(crate) fn release(&self) {
                self.passage.lock().unwrap().released = true;
                self.changed.notify_all();
            }
        }

        fn gates() -> &'static Mutex<HashMap<PathBuf, Arc<Gate>>> {
            static GATES: OnceLock<Mutex<HashMap<PathBuf, Arc<Gate>>>> = OnceLock::new();
            GATES.get_or_init(Mutex::default)
        }

        /// Holds the next segment creation under `log_dir` (and every later one).
        pub(crate) fn install(log_dir: &Path) -> Arc<Gate> {
            let gate = Arc::new(Gate::default());
            gates()
                .lock()
                .unwrap()
                .insert(log_dir.to_path_buf(), gate.clone());
            gate
        }

        pub(crate) fn remove(log_dir: &Path) {
            gates().lock().unwrap().remove(log_dir);
        }

        /// Called by the writer before it creates a segment under `log_dir`.
        pub(crate) fn pass(log_dir: &Path) {
            let Some(gate) = gates().lock().unwrap().get(log_dir).cloned() else {
                return;
            };
            let mut passage = gate.passage.lock().unwrap();
            passage.entered = true;
            gate.changed.notify_all();
            while !passage.released {
                passage = gate.changed.wait(passage).unwrap();
            }
        }
    }

    /// Bytes of data per event: four fill most of a 1 MiB test segment, the fifth rolls.
    const EVENT_DATA_BYTES: usize = 250_000;

    fn big_event() -> ProposedEvent {
        ProposedEvent::binary("Big", vec![1u8; EVENT_DATA_BYTES])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_are_not_blocked_while_the_writer_waits_for_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
        let stream = StreamName::new("rolls-1").unwrap();
        let first_four = (0..4).map(|_| big_event()).collect();
        store
            .append(&stream, ExpectedRevision::NoStream, first_four)
            .await
            .unwrap();
        let log_dir = store.shared().segments.log_dir().to_path_buf();
        let gate = segment_gate::install(&log_dir);
        let appender = {
            let store = store.clone();
            let stream = stream.clone();
            tokio::spawn(async move {
                store
                    .append(&stream, ExpectedRevision::Exact(3), vec![big_event()])
                    .await
            })
        };
        let entered = gate.clone();
        tokio::task::spawn_blocking(move || entered.wait_until_entered())
            .await
            .unwrap();
        // The writer now waits for segment 1. It must hold no index guard: a writer of the
        // index (the syncer publishing a group) would otherwise queue behind it, and every
        // reader behind that on the fair lock.
        let unguarded = store
            .shared()
            .index
            .try_write_for(Duration::from_secs(5))
            .is_some();
        assert!(
            unguarded,
            "the writer holds the index lock across segment creation"
        );
        let read = store
            .read_stream(&stream, strata_core::ReadStreamOptions::forwards())
            .await
            .unwrap();
        let StreamSlice::Found { events, .. } = read else {
            panic!("the stream is found");
        };
        assert_eq!(
            events.len(),
            4,
            "the read completes with the durable events"
        );
        gate.release();
        let appended = appender.await.unwrap().unwrap();
        segment_gate::remove(&log_dir);
        assert_eq!(appended.current_revision.0, 4);
        store.close();
    }
}
