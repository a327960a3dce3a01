//! Replaying the log into the index: frames are read in order and each transaction is
//! applied when its commit frame is read. The replay stops at the first frame it cannot
//! take (nothing written, or damaged); what lies after is judged in `tail.rs`.

use std::sync::Arc;

use strata_core::{Error, Result, StreamMetadata, StreamName};

use crate::format::{Frame, FrameError, SEGMENT_HEADER_BYTES, decode_frame, frame_length};
use crate::index::{IdEntry, Index, RecentIds};
use crate::log_reader::to_usize;
use crate::secondary::{KeyNames, RunKeys};
use crate::segments::Segments;

pub(crate) const REPLAY_CHUNK_BYTES: u64 = 1 << 20;

struct PendingEvent {
    stream: StreamName,
    revision: u64,
    position: u64,
    id: u128,
    metadata: Option<StreamMetadata>,
    keys: RunKeys,
}

pub(crate) struct Replayed {
    /// Position after the last committed transaction.
    pub committed_end: u64,
    /// Where reading stopped: the first frame not taken (empty, damaged, or past the last
    /// segment). Frames between `committed_end` and here lack their commit frame.
    pub stopped_at: u64,
    /// True when a damaged frame (not an empty one) stopped the replay.
    pub damaged: bool,
    /// The streams of the valid frames between `committed_end` and `stopped_at` (one per
    /// frame): a transaction whose commit frame was not found.
    pub uncommitted: Vec<StreamName>,
}

impl Replayed {
    /// True when anything past the committed end was found: a torn final write.
    pub(crate) fn has_torn_tail(&self) -> bool {
        self.damaged || self.stopped_at > self.committed_end
    }
}

/// What a replay reports as it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplayStep {
    /// Everything before this position has been read.
    Read(u64),
    /// A transaction ends at this position.
    Committed(u64),
}

/// Replays committed transactions from `from` into the index.
pub(crate) fn replay(
    segments: &Segments,
    index: &mut Index,
    recent_ids: &mut RecentIds,
    from: u64,
    progress: &mut dyn FnMut(ReplayStep),
) -> Result<Replayed> {
    let mut position = segments.first_frame_at_or_after(from);
    let mut committed_end = position;
    let mut pending: Vec<PendingEvent> = Vec::new();
    let mut key_names = KeyNames::default();
    // Once a skip frame was read, a stream may continue past revisions a scavenge removed.
    let mut scavenged = false;
    loop {
        let segment_index = segments.segment_of(position);
        if segment_index >= segments.count() {
            break;
        }
        let segment_end = segments.segment_start(segment_index + 1);
        let chunk = segments.read(
            position,
            to_usize(REPLAY_CHUNK_BYTES.min(segment_end - position)),
        )?;
        let mut offset = 0usize;
        let mut next_position = None;
        while offset < chunk.len() {
            let frame_position = position + offset as u64;
            let room = to_usize(segment_end - frame_position);
            let frame = match frame_length(&chunk[offset..], room) {
                Ok(frame_len) => chunk.slice(offset..offset + frame_len),
                Err(FrameError::Skip(skip_len)) => {
                    // Records a scavenge removed, from a sealed (so committed) segment.
                    scavenged = true;
                    apply(segments, index, recent_ids, pending.drain(..), scavenged)?;
                    offset += skip_len;
                    committed_end = position + offset as u64;
                    continue;
                }
                Err(FrameError::Incomplete { .. }) if offset > 0 => break,
                Err(FrameError::Incomplete { needed }) => segments.read(frame_position, needed)?,
                Err(FrameError::Empty) => {
                    return Ok(Replayed {
                        committed_end,
                        stopped_at: frame_position,
                        damaged: false,
                        uncommitted: pending.into_iter().map(|event| event.stream).collect(),
                    });
                }
                Err(FrameError::Invalid(_)) => {
                    return Ok(Replayed {
                        committed_end,
                        stopped_at: frame_position,
                        damaged: true,
                        uncommitted: pending.into_iter().map(|event| event.stream).collect(),
                    });
                }
            };
            match decode_frame(&frame, frame.len()) {
                Ok((Frame::Padding, _)) => {
                    next_position = Some(segment_end + SEGMENT_HEADER_BYTES);
                    break;
                }
                Ok((Frame::Event(event), frame_len)) => {
                    let stream = StreamName::from_stored(event.stream);
                    let metadata = stream.described_stream().map(|described| {
                        StreamMetadata::from_json(&described, &frame[event.data_range.clone()])
                            .unwrap_or_default()
                    });
                    let keys = RunKeys::of_event(
                        &mut key_names,
                        stream.as_str(),
                        event.revision,
                        event.event_type,
                        &frame[event.metadata_range.clone()],
                    );
                    pending.push(PendingEvent {
                        stream,
                        revision: event.revision,
                        position: frame_position,
                        id: event.id,
                        metadata,
                        keys,
                    });
                    offset += frame_len;
                    if event.is_commit() {
                        apply(segments, index, recent_ids, pending.drain(..), scavenged)?;
                        committed_end = position + offset as u64;
                        progress(ReplayStep::Committed(committed_end));
                    }
                }
                Err(_) => {
                    return Ok(Replayed {
                        committed_end,
                        stopped_at: frame_position,
                        damaged: true,
                        uncommitted: pending.into_iter().map(|event| event.stream).collect(),
                    });
                }
            }
        }
        // A frame may end exactly at its segment's end: go on after the next header.
        position =
            segments.first_frame_at_or_after(next_position.unwrap_or(position + offset as u64));
        progress(ReplayStep::Read(position));
    }
    Ok(Replayed {
        committed_end,
        stopped_at: position,
        damaged: false,
        uncommitted: pending.into_iter().map(|event| event.stream).collect(),
    })
}

fn apply(
    segments: &Segments,
    index: &mut Index,
    recent_ids: &mut RecentIds,
    events: impl Iterator<Item = PendingEvent>,
    scavenged: bool,
) -> Result<()> {
    for event in events {
        let mut expected_revision = index.next_revision(&event.stream)?;
        if scavenged
            && event.revision != crate::format::TOMBSTONE_REVISION
            && event.revision > expected_revision
        {
            // The revisions before it were removed by a scavenge.
            index.mark_removed_below(&event.stream, event.revision);
            expected_revision = event.revision;
        }
        if event.revision != crate::format::TOMBSTONE_REVISION
            && event.revision != expected_revision
        {
            return Err(Error::Corrupt {
                detail: format!(
                    "the event at {} has revision {} of stream {} where revision {expected_revision} was due",
                    segments.describe(event.position),
                    event.revision,
                    event.stream
                ),
            });
        }
        index.add_events(
            &event.stream,
            event.revision,
            &[event.position],
            &event.keys,
        );
        if event.revision != crate::format::TOMBSTONE_REVISION {
            let stream_hash = recent_ids.stream_hash(&event.stream);
            recent_ids.insert(
                event.id,
                IdEntry {
                    stream_hash,
                    revision: event.revision,
                    position: event.position,
                },
            );
        }
        if let (Some(described), Some(metadata)) = (event.stream.described_stream(), event.metadata)
        {
            index.set_metadata(&described, Arc::new(metadata));
        }
    }
    Ok(())
}
