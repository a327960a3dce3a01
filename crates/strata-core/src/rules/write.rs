//! Appends, deletes and the check of an expected revision without writing.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::metadata::{SOFT_DELETED_TRUNCATE_BEFORE, StreamMetadata, TOMBSTONE_REVISION};
use crate::types::{
    AppendResult, DeleteResult, EventId, ExpectedRevision, Position, ProposedEvent, Revision,
    StreamName,
};

use super::{StreamHead, StreamView};

/// What an append comes to.
#[derive(Clone, Debug, PartialEq)]
pub enum AppendDecision {
    /// Every event is already where the append would put it: a re-send. Nothing is written
    /// and the original result is the answer.
    AlreadyAppended(AppendResult),
    /// Write these records.
    Write(WritePlan),
}

/// Records to write as one transaction (all visible or none), and the heads they leave.
#[derive(Clone, Debug, PartialEq)]
pub struct WritePlan {
    pub records: Vec<PlannedRecord>,
    /// The heads of every stream the write changes, as they are after it: the backend
    /// remembers them so that later requests are planned against them.
    pub heads: Vec<(StreamName, StreamHead)>,
}

/// One record of a [`WritePlan`].
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRecord {
    pub stream: StreamName,
    /// The record's revision ([`TOMBSTONE_REVISION`] for a tombstone).
    pub revision: u64,
    pub body: RecordBody,
}

/// What a planned record holds.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordBody {
    /// The caller's event at this index of the append.
    Proposed(usize),
    /// A `$metadata` event (JSON) the store writes on its own: a soft delete, or the `$tb`
    /// of a revival. Its id is derived from its place, so every store fed the same appends
    /// writes the same one.
    Metadata { id: EventId, data: Bytes },
    /// The `$streamDeleted` record of a tombstone (binary, empty).
    Tombstone { id: EventId },
}

impl WritePlan {
    /// What the append reports: the revision and position of its last event, given the
    /// position each record got (in the order of `records`).
    ///
    /// # Panics
    /// When the plan has no proposed event or `positions` is shorter than `records`:
    /// a plan from [`plan_append`] always has one.
    pub fn append_result(&self, positions: &[Position]) -> AppendResult {
        let (index, record) = self
            .records
            .iter()
            .enumerate()
            .rfind(|(_, record)| matches!(record.body, RecordBody::Proposed(_)))
            .unwrap_or_else(|| unreachable!("an append plan writes the caller's events"));
        AppendResult {
            current_revision: Revision(record.revision),
            position: positions[index],
        }
    }

    /// What a delete reports: the position of its record.
    ///
    /// # Panics
    /// When `positions` is empty: a plan from [`plan_delete`] writes one record.
    pub fn delete_result(&self, positions: &[Position]) -> DeleteResult {
        DeleteResult {
            position: positions[positions.len() - 1],
        }
    }

    /// The streams whose metadata the write replaces, with the new metadata.
    pub fn metadata_changes(&self) -> impl Iterator<Item = (&StreamName, &Arc<StreamMetadata>)> {
        self.heads.iter().filter_map(|(stream, head)| {
            let described_written = self
                .records
                .iter()
                .any(|record| record.stream.described_stream().as_ref() == Some(stream));
            match (&head.metadata, described_written) {
                (Some(metadata), true) => Some((stream, metadata)),
                _ => None,
            }
        })
    }
}

/// Every stream whose head the rules may ask about for a write to `stream`: what a
/// backend that gathers heads beforehand fetches.
pub fn streams_consulted(stream: &StreamName) -> Vec<StreamName> {
    let mut streams = vec![stream.clone(), stream.metadata_stream()];
    streams.extend(stream.described_stream());
    streams
}

/// Plans an append of `events` to `stream` if it is where `expected` says.
///
/// # Errors
/// [`Error::WrongExpectedRevision`] (also for a re-send that matches only in part),
/// [`Error::StreamDeleted`] (naming `stream`) for a tombstoned stream, for `StreamExists`
/// on a soft-deleted one, and for `$$S` of a tombstoned `S` that has no events; [`Error::InvalidArgument`]
/// for no events; the view's errors.
pub fn plan_append<V: StreamView + ?Sized>(
    view: &V,
    stream: &StreamName,
    expected: ExpectedRevision,
    events: &[ProposedEvent],
) -> Result<AppendDecision> {
    if events.is_empty() {
        return Err(Error::InvalidArgument {
            reason: "an append needs at least one event".into(),
        });
    }
    let head = writable_head(view, stream)?;
    // Where the events would already be if this is a re-send.
    let resent_from = match (expected, head.last_revision) {
        (ExpectedRevision::Any | ExpectedRevision::StreamExists, _) => {
            check_expectation(view, stream, &head, expected)?;
            view.recent_revision(stream, events[0].id)?
        }
        (ExpectedRevision::NoStream, Some(_)) => Some(0),
        (ExpectedRevision::Exact(revision), Some(last)) if revision < last => Some(revision + 1),
        _ => None,
    };
    let resend = match resent_from {
        Some(first) => resend_check(view, stream, first, events)?,
        None => Resend::New,
    };
    match resend {
        Resend::Duplicate(result) => Ok(AppendDecision::AlreadyAppended(result)),
        Resend::Partial => Err(wrong_expected(stream, expected, &head)),
        Resend::New => {
            if !matches!(
                expected,
                ExpectedRevision::Any | ExpectedRevision::StreamExists
            ) {
                check_expectation(view, stream, &head, expected)?;
            }
            Ok(AppendDecision::Write(plan_events(
                view, stream, &head, events,
            )?))
        }
    }
}

/// Plans a soft delete (`tombstone == false`) or a tombstone of `stream`.
///
/// # Errors
/// [`Error::InvalidArgument`] for a metadata stream, [`Error::WrongExpectedRevision`]
/// (and for a soft delete of a stream that never had events or metadata),
/// [`Error::StreamDeleted`] for a tombstoned stream and for `StreamExists` on a
/// soft-deleted one; the view's errors.
pub fn plan_delete<V: StreamView + ?Sized>(
    view: &V,
    stream: &StreamName,
    expected: ExpectedRevision,
    tombstone: bool,
) -> Result<WritePlan> {
    if stream.is_metadata_stream() {
        return Err(Error::InvalidArgument {
            reason: format!("{stream} is a metadata stream: delete the stream it describes"),
        });
    }
    refuse_system_stream(view, stream)?;
    let head = view.head(stream)?;
    refuse_tombstoned(stream, &head)?;
    check_expectation(view, stream, &head, expected)?;
    let metadata_stream = stream.metadata_stream();
    let metadata_head = view.head(&metadata_stream)?;
    if tombstone {
        let record = PlannedRecord {
            stream: stream.clone(),
            revision: TOMBSTONE_REVISION,
            body: RecordBody::Tombstone {
                id: EventId::new_random(),
            },
        };
        let tombstoned = StreamHead {
            tombstoned: true,
            ..head
        };
        return Ok(WritePlan {
            records: vec![record],
            heads: vec![(stream.clone(), tombstoned)],
        });
    }
    if head.last_revision.is_none() && metadata_head.last_revision.is_none() {
        return Err(wrong_expected(stream, expected, &head));
    }
    // As KurrentDB: the soft delete's metadata is `$tb` alone; other keys do not survive.
    let metadata = StreamMetadata {
        truncate_before: Some(SOFT_DELETED_TRUNCATE_BEFORE),
        ..StreamMetadata::default()
    };
    let mut plan = WritePlan {
        records: Vec::new(),
        heads: Vec::new(),
    };
    plan_store_metadata(&mut plan, stream, head, metadata_head, metadata);
    Ok(plan)
}

/// Checks `expected` against `stream` as an append would, without writing: KurrentDB
/// answers an append of no events this way. Returns the stream's last revision.
///
/// # Errors
/// As [`plan_append`], without the re-send outcomes.
pub fn check_expected<V: StreamView + ?Sized>(
    view: &V,
    stream: &StreamName,
    expected: ExpectedRevision,
) -> Result<Option<Revision>> {
    let head = writable_head(view, stream)?;
    check_expectation(view, stream, &head, expected)?;
    Ok(head.last_revision.map(Revision))
}

/// Refuses writes to a stream served from an index (`$ce-…`, `$et-…`, …) or to its
/// metadata: nothing is stored for them.
fn refuse_system_stream<V: StreamView + ?Sized>(view: &V, stream: &StreamName) -> Result<()> {
    let served = |name: &str| crate::system_streams::is_system_stream_from_index(name);
    let described = stream.described_stream();
    if view.serves_system_streams()
        && (served(stream.as_str()) || described.is_some_and(|d| served(d.as_str())))
    {
        return Err(Error::InvalidArgument {
            reason: format!("{stream} is served from the store's indexes and cannot be written"),
        });
    }
    Ok(())
}

/// The head of a stream that may be written.
fn writable_head<V: StreamView + ?Sized>(view: &V, stream: &StreamName) -> Result<StreamHead> {
    refuse_system_stream(view, stream)?;
    let head = view.head(stream)?;
    if let Some(described) = stream.described_stream()
        && head.last_revision.is_none()
        && view.head(&described)?.tombstoned
    {
        return Err(Error::StreamDeleted {
            stream: stream.clone(),
        });
    }
    refuse_tombstoned(stream, &head)?;
    Ok(head)
}

fn refuse_tombstoned(stream: &StreamName, head: &StreamHead) -> Result<()> {
    if head.tombstoned {
        return Err(Error::StreamDeleted {
            stream: stream.clone(),
        });
    }
    Ok(())
}

/// True when writing `stream` revives it (a metadata stream is never soft-deleted).
fn is_soft_deleted(stream: &StreamName, head: &StreamHead) -> bool {
    !stream.is_metadata_stream() && head.is_soft_deleted()
}

pub(super) fn wrong_expected(
    stream: &StreamName,
    expected: ExpectedRevision,
    head: &StreamHead,
) -> Error {
    Error::WrongExpectedRevision {
        stream: stream.clone(),
        expected,
        actual: head.state(),
    }
}

/// The check of `expected` once re-sends are ruled out.
fn check_expectation<V: StreamView + ?Sized>(
    view: &V,
    stream: &StreamName,
    head: &StreamHead,
    expected: ExpectedRevision,
) -> Result<()> {
    let soft_deleted = is_soft_deleted(stream, head);
    let met = match expected {
        ExpectedRevision::Any => true,
        ExpectedRevision::StreamExists if soft_deleted => {
            return Err(Error::StreamDeleted {
                stream: stream.clone(),
            });
        }
        // A stream with metadata but no events exists, as in KurrentDB.
        ExpectedRevision::StreamExists => {
            head.last_revision.is_some()
                || view
                    .head(&stream.metadata_stream())?
                    .last_revision
                    .is_some()
        }
        ExpectedRevision::NoStream => head.last_revision.is_none() || soft_deleted,
        ExpectedRevision::Exact(revision) => head.last_revision == Some(revision),
    };
    if met {
        Ok(())
    } else {
        Err(wrong_expected(stream, expected, head))
    }
}

enum Resend {
    Duplicate(AppendResult),
    New,
    Partial,
}

/// Whether `events` are already the stream's events from `first_revision` on.
fn resend_check<V: StreamView + ?Sized>(
    view: &V,
    stream: &StreamName,
    first_revision: u64,
    events: &[ProposedEvent],
) -> Result<Resend> {
    let mut last_found = None;
    for (offset, event) in events.iter().enumerate() {
        let revision = first_revision + offset as u64;
        match view.event_position(stream, revision, event.id)? {
            Some(position) => last_found = Some((revision, position)),
            None if offset == 0 => return Ok(Resend::New),
            None => return Ok(Resend::Partial),
        }
    }
    Ok(match last_found {
        Some((revision, position)) => Resend::Duplicate(AppendResult {
            current_revision: Revision(revision),
            position,
        }),
        None => Resend::New,
    })
}

/// Sets `stream`'s head in `plan` (replacing an earlier one).
pub(super) fn set_head(plan: &mut WritePlan, stream: &StreamName, head: StreamHead) {
    match plan.heads.iter_mut().find(|(known, _)| known == stream) {
        Some((_, known)) => *known = head,
        None => plan.heads.push((stream.clone(), head)),
    }
}

/// The caller's events at the next revisions, and what they revive or undelete.
fn plan_events<V: StreamView + ?Sized>(
    view: &V,
    stream: &StreamName,
    head: &StreamHead,
    events: &[ProposedEvent],
) -> Result<WritePlan> {
    let first_revision = head.next_revision();
    let records = (0..events.len())
        .map(|index| PlannedRecord {
            stream: stream.clone(),
            revision: first_revision + index as u64,
            body: RecordBody::Proposed(index),
        })
        .collect();
    let mut written = head.clone();
    written.last_revision = Some(first_revision + events.len() as u64 - 1);
    let mut plan = WritePlan {
        records,
        heads: Vec::new(),
    };
    set_head(&mut plan, stream, written.clone());
    if let Some(described) = stream.described_stream() {
        plan_described_metadata(view, &mut plan, &described, written, events)?;
    } else if is_soft_deleted(stream, head) {
        let mut revived = head.metadata.as_deref().cloned().unwrap_or_default();
        revived.truncate_before = Some(first_revision);
        let metadata_head = view.head(&stream.metadata_stream())?;
        plan_store_metadata(&mut plan, stream, written, metadata_head, revived);
    }
    Ok(plan)
}

/// An append to `$$described` replaces `described`'s metadata with its last event; when
/// `described` was soft-deleted, the store undeletes it with `$tb` past its last event.
fn plan_described_metadata<V: StreamView + ?Sized>(
    view: &V,
    plan: &mut WritePlan,
    described: &StreamName,
    metadata_head: StreamHead,
    events: &[ProposedEvent],
) -> Result<()> {
    let mut described_head = view.head(described)?;
    let last_data = &events[events.len() - 1].data;
    let undelete = !described_head.tombstoned && described_head.is_soft_deleted();
    match StreamMetadata::from_json(described, last_data) {
        Ok(mut metadata) if undelete => {
            metadata.truncate_before = Some(described_head.next_revision());
            plan_store_metadata(plan, described, described_head, metadata_head, metadata);
        }
        parsed => {
            described_head.metadata = Some(Arc::new(parsed.unwrap_or_default()));
            set_head(plan, described, described_head);
        }
    }
    Ok(())
}

/// A `$metadata` record the store writes in `$$stream` after what `plan` holds.
fn plan_store_metadata(
    plan: &mut WritePlan,
    stream: &StreamName,
    mut head: StreamHead,
    mut metadata_head: StreamHead,
    metadata: StreamMetadata,
) {
    let metadata_stream = stream.metadata_stream();
    let revision = metadata_head.next_revision();
    plan.records.push(PlannedRecord {
        stream: metadata_stream.clone(),
        revision,
        body: RecordBody::Metadata {
            id: EventId::of_store_record(&metadata_stream, revision),
            data: Bytes::from(metadata.to_json()),
        },
    });
    metadata_head.last_revision = Some(revision);
    set_head(plan, &metadata_stream, metadata_head);
    head.metadata = Some(Arc::new(metadata));
    set_head(plan, stream, head);
}
