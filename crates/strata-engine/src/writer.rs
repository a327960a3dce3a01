//! The single writer, first stage of group commit. It drains every pending request, checks
//! each against the stream heads (including what earlier, not yet durable groups wrote),
//! encodes the group and writes it with one positional write per segment, then hands it to
//! the syncer (`syncer.rs`) and goes on with the next group while that one is synced.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use hashbrown::HashMap;
use strata_core::{
    AppendResult, DeleteResult, Error, EventId, ExpectedRevision, METADATA_EVENT_TYPE, Position,
    ProposedEvent, Result, Revision, StreamMetadata, StreamName, StreamState, TOMBSTONE_EVENT_TYPE,
    Timestamp,
};
use tokio::sync::{mpsc, oneshot};

use crate::format::{
    EventRecord, FRAME_MIN_BYTES, SEGMENT_HEADER_BYTES, TOMBSTONE_REVISION, encode_event_marked,
    encode_padding,
};
use crate::index::{IdEntry, Index, RecentIds, SOFT_DELETED_TRUNCATE_BEFORE};
use crate::log_reader::{LogReader, to_usize};
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
    Shutdown {
        done: std::sync::mpsc::Sender<()>,
    },
}

impl Request {
    fn size_bytes(&self) -> usize {
        match self {
            Request::Append { events, .. } => events.iter().map(ProposedEvent::size_bytes).sum(),
            _ => 0,
        }
    }
}

/// What the writer knows of a stream while planning a group.
#[derive(Clone, Default)]
struct Head {
    last: Option<u64>,
    tombstoned: bool,
    metadata: Option<Arc<StreamMetadata>>,
}

impl Head {
    fn is_soft_deleted(&self) -> bool {
        self.metadata
            .as_ref()
            .is_some_and(|metadata| metadata.truncate_before == Some(SOFT_DELETED_TRUNCATE_BEFORE))
    }

    fn state(&self) -> StreamState {
        match (self.tombstoned, self.last) {
            (true, _) => StreamState::Tombstoned,
            (false, Some(last)) => StreamState::At(Revision(last)),
            (false, None) => StreamState::NoStream,
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
}

impl Group {
    fn encoded_bytes(&self) -> usize {
        self.chunks.iter().map(|chunk| chunk.bytes.len()).sum()
    }
}

/// Outcome of the idempotence check of a re-send.
enum Resend {
    /// All ids are already there: the original result.
    Duplicate(AppendResult),
    /// The first id is not there: this is a new write.
    New,
    /// Some ids are there and some are not: refuse.
    Partial,
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
    pending_heads: HashMap<StreamName, (Head, u64)>,
    group_sequence: u64,
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
        let start_position = self.position;
        {
            let shared = self.shared.clone();
            let index = shared.index.read();
            for request in batch {
                match request {
                    Request::Shutdown { done } => shutdown = Some(done),
                    Request::Append {
                        stream,
                        expected,
                        events,
                        reply,
                    } => {
                        let outcome = self.plan(&mut group, |writer, group| {
                            writer.plan_append(&index, group, &stream, expected, &events)
                        });
                        group.replies.push(Reply::Append(reply, outcome));
                    }
                    Request::Delete {
                        stream,
                        expected,
                        tombstone,
                        reply,
                    } => {
                        let outcome = self.plan(&mut group, |writer, group| {
                            writer.plan_delete(&index, group, &stream, expected, tombstone)
                        });
                        group.replies.push(Reply::Delete(reply, outcome));
                    }
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
        });
        if self.handoffs.send(handoff).is_err() {
            self.shared.poison("the syncer thread stopped".into());
        }
        self.prune_pending_heads();
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

    fn prune_pending_heads(&mut self) {
        if self.pending_heads.len() >= PENDING_HEADS_PRUNE_AT {
            let published = self.shared.published_sequence.load(Ordering::Acquire);
            self.pending_heads
                .retain(|_, (_, sequence)| *sequence > published);
        }
    }

    /// The head of a stream that may still be written: refused when it is tombstoned.
    fn live_head(&self, index: &Index, stream: &StreamName) -> Result<Head> {
        let head = self.head(index, stream);
        if head.tombstoned {
            return Err(Error::StreamDeleted {
                stream: stream.clone(),
            });
        }
        Ok(head)
    }

    /// The head a new request sees: the newest unpublished one if any, else the index's.
    fn head(&self, index: &Index, stream: &StreamName) -> Head {
        if let Some((head, sequence)) = self.pending_heads.get(stream)
            && *sequence > self.shared.published_sequence.load(Ordering::Acquire)
        {
            return head.clone();
        }
        index
            .stream(stream)
            .map_or_else(Head::default, |entry| Head {
                last: entry.last_revision(),
                tombstoned: entry.tombstone_position.is_some(),
                metadata: entry.metadata.clone(),
            })
    }

    fn plan_append(
        &mut self,
        index: &Index,
        group: &mut Group,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: &[ProposedEvent],
    ) -> Result<AppendResult> {
        debug_assert!(
            !events.is_empty(),
            "Limits::check_append refuses empty appends"
        );
        if let Some(described) = stream.described_stream()
            && self.head(index, &described).tombstoned
        {
            return Err(Error::StreamDeleted { stream: described });
        }
        let head = self.live_head(index, stream)?;
        let wrong = || Error::WrongExpectedRevision {
            stream: stream.clone(),
            expected,
            actual: head.state(),
        };
        let resend = match (expected, head.last) {
            (ExpectedRevision::Any, _) => self.weak_resend_check(stream, events),
            (ExpectedRevision::StreamExists, _) if head.is_soft_deleted() => {
                return Err(Error::StreamDeleted {
                    stream: stream.clone(),
                });
            }
            (ExpectedRevision::StreamExists, None) => {
                let metadata_stream = stream.metadata_stream();
                if self.head(index, &metadata_stream).last.is_none() {
                    return Err(wrong());
                }
                Resend::New
            }
            (ExpectedRevision::StreamExists, Some(_)) => self.weak_resend_check(stream, events),
            (ExpectedRevision::NoStream, None) => Resend::New,
            (ExpectedRevision::NoStream, Some(_)) => {
                match self.strong_resend_check(index, stream, 0, events)? {
                    Resend::New if head.is_soft_deleted() => Resend::New,
                    Resend::New => return Err(wrong()),
                    other => other,
                }
            }
            (ExpectedRevision::Exact(revision), Some(last)) if revision == last => Resend::New,
            (ExpectedRevision::Exact(revision), Some(last)) if revision < last => {
                match self.strong_resend_check(index, stream, revision + 1, events)? {
                    Resend::New => return Err(wrong()),
                    other => other,
                }
            }
            (ExpectedRevision::Exact(_), _) => return Err(wrong()),
        };
        match resend {
            Resend::Duplicate(result) => Ok(result),
            Resend::Partial => Err(wrong()),
            Resend::New => self.write_events(index, group, stream, &head, events),
        }
    }

    /// `Any`/`StreamExists` re-sends are recognised through the recent-id cache only.
    fn weak_resend_check(&self, stream: &StreamName, events: &[ProposedEvent]) -> Resend {
        let stream_hash = self.recent_ids.stream_hash(stream);
        let Some(first) = self.recent_ids.get(events[0].id.as_u128()) else {
            return Resend::New;
        };
        if first.stream_hash != stream_hash {
            return Resend::New;
        }
        let mut last = first;
        for (offset, event) in events.iter().enumerate().skip(1) {
            match self.recent_ids.get(event.id.as_u128()) {
                Some(found)
                    if found.stream_hash == stream_hash
                        && found.revision == first.revision + offset as u64 =>
                {
                    last = found;
                }
                _ => return Resend::Partial,
            }
        }
        Resend::Duplicate(AppendResult {
            current_revision: Revision(last.revision),
            position: Position(last.position),
        })
    }

    /// `Exact`/`NoStream` re-sends: the ids must be the events at `first_revision..`.
    fn strong_resend_check(
        &self,
        index: &Index,
        stream: &StreamName,
        first_revision: u64,
        events: &[ProposedEvent],
    ) -> Result<Resend> {
        let mut last_found = None;
        for (offset, event) in events.iter().enumerate() {
            let revision = first_revision + offset as u64;
            let found = self.event_position_with_id(index, stream, revision, event.id)?;
            match (found, offset) {
                (Some(position), _) => last_found = Some((revision, position)),
                (None, 0) => return Ok(Resend::New),
                (None, _) => return Ok(Resend::Partial),
            }
        }
        Ok(match last_found {
            Some((revision, position)) => Resend::Duplicate(AppendResult {
                current_revision: Revision(revision),
                position: Position(position),
            }),
            None => Resend::New,
        })
    }

    /// The position of `stream`@`revision` if the event there has id `id`.
    fn event_position_with_id(
        &self,
        index: &Index,
        stream: &StreamName,
        revision: u64,
        id: EventId,
    ) -> Result<Option<u64>> {
        if let Some(found) = self.recent_ids.get(id.as_u128())
            && found.stream_hash == self.recent_ids.stream_hash(stream)
            && found.revision == revision
        {
            return Ok(Some(found.position));
        }
        // Not among the recent ids for this place (the id may also have been used in another
        // stream since): the stored event decides.
        let position = index
            .stream(stream)
            .and_then(|entry| entry.positions.get(to_usize(revision)).copied());
        let Some(position) = position else {
            return Ok(None);
        };
        let stored = LogReader::new(&self.shared.segments).read_event(position)?;
        Ok((stored.id == id).then_some(position))
    }

    fn write_events(
        &mut self,
        index: &Index,
        group: &mut Group,
        stream: &StreamName,
        head: &Head,
        events: &[ProposedEvent],
    ) -> Result<AppendResult> {
        let first_revision = head.last.map_or(0, |last| last + 1);
        let created_nanos = Timestamp::now().0;
        let revive = head.is_soft_deleted() && !stream.is_metadata_stream();
        let stream_hash = self.recent_ids.stream_hash(stream);
        let mut positions = Vec::with_capacity(events.len());
        for (offset, event) in events.iter().enumerate() {
            let revision = first_revision + offset as u64;
            let record = EventRecord {
                stream: stream.as_str(),
                revision,
                id: event.id.as_u128(),
                event_type: &event.event_type,
                json: event.content_type == strata_core::ContentType::Json,
                created_nanos,
                data: &event.data,
                metadata: &event.metadata,
                commit: offset + 1 == events.len() && !revive,
            };
            positions.push(self.emit(group, stream_hash, &record)?);
        }
        let last_position = positions[positions.len() - 1];
        group.updates.push(IndexUpdate::Events {
            stream: stream.clone(),
            first_revision,
            positions,
        });
        let last_revision = first_revision + events.len() as u64 - 1;
        self.note_stream_written(stream, head, last_revision);
        if let Some(described) = stream.described_stream() {
            let last = &events[events.len() - 1];
            let metadata = StreamMetadata::from_json(&described, &last.data).unwrap_or_default();
            self.note_metadata(index, group, &described, metadata);
        }
        if revive {
            let mut metadata = head.metadata.as_deref().cloned().unwrap_or_default();
            metadata.truncate_before = Some(first_revision);
            self.write_metadata(index, group, stream, metadata)?;
        }
        Ok(AppendResult {
            current_revision: Revision(last_revision),
            position: Position(last_position),
        })
    }

    /// Writes `metadata` for `stream` as a one-event transaction in `$$stream`.
    fn write_metadata(
        &mut self,
        index: &Index,
        group: &mut Group,
        stream: &StreamName,
        metadata: StreamMetadata,
    ) -> Result<u64> {
        let metadata_stream = stream.metadata_stream();
        let metadata_head = self.head(index, &metadata_stream);
        let revision = metadata_head.last.map_or(0, |last| last + 1);
        let data = metadata.to_json();
        let record = EventRecord {
            stream: metadata_stream.as_str(),
            revision,
            id: EventId::of_store_record(&metadata_stream, revision).as_u128(),
            event_type: METADATA_EVENT_TYPE,
            json: true,
            created_nanos: Timestamp::now().0,
            data: &data,
            metadata: &[],
            commit: true,
        };
        let stream_hash = self.recent_ids.stream_hash(&metadata_stream);
        let position = self.emit(group, stream_hash, &record)?;
        group.updates.push(IndexUpdate::Events {
            stream: metadata_stream.clone(),
            first_revision: revision,
            positions: vec![position],
        });
        self.note_stream_written(&metadata_stream, &metadata_head, revision);
        self.note_metadata(index, group, stream, metadata);
        Ok(position)
    }

    fn note_head(&mut self, stream: &StreamName, head: Head) {
        self.pending_heads
            .insert(stream.clone(), (head, self.group_sequence));
    }

    fn note_stream_written(&mut self, stream: &StreamName, head: &Head, last: u64) {
        let mut head = head.clone();
        head.last = Some(last);
        self.note_head(stream, head);
    }

    fn note_metadata(
        &mut self,
        index: &Index,
        group: &mut Group,
        stream: &StreamName,
        metadata: StreamMetadata,
    ) {
        let metadata = Arc::new(metadata);
        let mut head = self.head(index, stream);
        head.metadata = Some(metadata.clone());
        self.note_head(stream, head);
        group.updates.push(IndexUpdate::Metadata {
            stream: stream.clone(),
            metadata,
        });
    }

    fn plan_delete(
        &mut self,
        index: &Index,
        group: &mut Group,
        stream: &StreamName,
        expected: ExpectedRevision,
        tombstone: bool,
    ) -> Result<DeleteResult> {
        if stream.is_metadata_stream() {
            return Err(Error::InvalidArgument {
                reason: format!("{stream} is a metadata stream: delete the stream it describes"),
            });
        }
        let head = self.live_head(index, stream)?;
        let wrong = || Error::WrongExpectedRevision {
            stream: stream.clone(),
            expected,
            actual: head.state(),
        };
        let has_metadata = self.head(index, &stream.metadata_stream()).last.is_some();
        if !tombstone && head.last.is_none() && !has_metadata {
            return Err(wrong());
        }
        match (expected, head.last) {
            (ExpectedRevision::Any, _) => {}
            (ExpectedRevision::StreamExists, _) if head.is_soft_deleted() => {
                return Err(Error::StreamDeleted {
                    stream: stream.clone(),
                });
            }
            (ExpectedRevision::StreamExists, None) if tombstone || !has_metadata => {
                return Err(wrong());
            }
            (ExpectedRevision::StreamExists, _) => {}
            (ExpectedRevision::NoStream, None) => {}
            (ExpectedRevision::NoStream, Some(_)) if head.is_soft_deleted() => {}
            (ExpectedRevision::Exact(revision), Some(last)) if revision == last => {}
            (ExpectedRevision::NoStream | ExpectedRevision::Exact(_), _) => return Err(wrong()),
        }
        let position = if tombstone {
            self.write_tombstone(group, stream, &head)?
        } else {
            let metadata = StreamMetadata {
                truncate_before: Some(SOFT_DELETED_TRUNCATE_BEFORE),
                ..StreamMetadata::default()
            };
            self.write_metadata(index, group, stream, metadata)?
        };
        Ok(DeleteResult {
            position: Position(position),
        })
    }

    fn write_tombstone(
        &mut self,
        group: &mut Group,
        stream: &StreamName,
        head: &Head,
    ) -> Result<u64> {
        let record = EventRecord {
            stream: stream.as_str(),
            revision: TOMBSTONE_REVISION,
            id: EventId::new_random().as_u128(),
            event_type: TOMBSTONE_EVENT_TYPE,
            json: false,
            created_nanos: Timestamp::now().0,
            data: &[],
            metadata: &[],
            commit: true,
        };
        let position = self.emit(group, 0, &record)?;
        group.updates.push(IndexUpdate::Events {
            stream: stream.clone(),
            first_revision: TOMBSTONE_REVISION,
            positions: vec![position],
        });
        let mut head = head.clone();
        head.tombstoned = true;
        self.note_head(stream, head);
        Ok(position)
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
