//! The end of the log: what lies after the place where replay stopped, and what proves
//! how far the acknowledged log reached. Opening, `verify` and `repair` judge it alike.
//!
//! Evidence that the log reached at least some position comes from three places, each
//! written only after the log before that position was synced: the clean-shutdown marker,
//! the index files (`covers_to`), and sync marks (the first event frame of each group says
//! how far the log was synced when the group was written). If any of them reaches past the
//! end the replay found, acknowledged events are lost and the store must not open. Anything
//! after the end that no evidence covers was never synced: a torn tail, dropped. After a
//! power loss that tail may hold valid frames behind a damaged one (unsynced pages reach
//! the disk in any order); they were never acknowledged either.

use std::fmt;
use std::path::PathBuf;

use strata_core::{Error, Result};

use crate::format::{
    EventFrame, Frame, FrameError, SEGMENT_HEADER_BYTES, decode_frame, frame_length,
};
use crate::log_reader::to_usize;
use crate::replay::{REPLAY_CHUNK_BYTES, Replayed};
use crate::segments::Segments;

/// Where a claim on the log's end comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClaimSource {
    CleanMarker,
    IndexFile(PathBuf),
    /// The sync mark of the event frame at this position.
    SyncMark(u64),
}

/// Evidence that everything before `end` was synced (and so possibly acknowledged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub end: u64,
    pub source: ClaimSource,
}

impl Claim {
    fn describe(&self, segments: &Segments) -> String {
        match &self.source {
            ClaimSource::CleanMarker => "the clean-shutdown marker (CLEAN)".to_owned(),
            ClaimSource::IndexFile(path) => format!("index file {}", path.display()),
            ClaimSource::SyncMark(position) => {
                format!(
                    "the sync mark of the event frame at {}",
                    segments.describe(*position)
                )
            }
        }
    }
}

/// A log end that falls exactly on a segment boundary continues after the next header.
pub(crate) fn skip_segment_header(end: u64, segment_size_bytes: u64) -> u64 {
    if end.is_multiple_of(segment_size_bytes) {
        end + SEGMENT_HEADER_BYTES
    } else {
        end
    }
}

/// What the log holds after the replay's stop.
#[derive(Clone, Debug, Default)]
pub(crate) struct AfterStop {
    /// Valid event frames found there.
    pub event_frames: u64,
    pub first_event_frame: Option<u64>,
    /// The furthest-reaching sync mark among them.
    pub sync_mark: Option<Claim>,
}

/// Looks at everything after `stopped_at`: the rest of its segment at every 8-byte step
/// (a damaged frame hides where the next one starts), then each later segment from its
/// first frame for as long as frames follow each other. `visit` sees every valid event
/// frame found.
pub(crate) fn scan_after_stop(
    segments: &Segments,
    stopped_at: u64,
    visit: &mut dyn FnMut(u64, &EventFrame<'_>),
) -> Result<AfterStop> {
    let mut found = AfterStop::default();
    let segment_index = segments.segment_of(stopped_at);
    if segment_index >= segments.count() {
        return Ok(found);
    }
    let mut note = |position: u64, event: &EventFrame<'_>| {
        found.event_frames += 1;
        found.first_event_frame.get_or_insert(position);
        // A genuine mark never reaches past its own frame; a frame forged inside event
        // data might, and must not count.
        if let Some(synced_end) = event.synced_end.filter(|&end| end <= position)
            && found
                .sync_mark
                .as_ref()
                .is_none_or(|mark| synced_end > mark.end)
        {
            found.sync_mark = Some(Claim {
                end: synced_end,
                source: ClaimSource::SyncMark(position),
            });
        }
        visit(position, event);
    };
    let segment_end = segments.segment_start(segment_index + 1);
    scan_segment_rest(segments, stopped_at + 8, segment_end, &mut note)?;
    for later in segment_index + 1..segments.count() {
        let first = segments.segment_start(later) + SEGMENT_HEADER_BYTES;
        follow_frames(segments, first, &mut note)?;
    }
    Ok(found)
}

/// Tries every 8-byte step of `[from, segment_end)` for a valid frame, skipping over each
/// one found.
fn scan_segment_rest(
    segments: &Segments,
    from: u64,
    segment_end: u64,
    note: &mut dyn FnMut(u64, &EventFrame<'_>),
) -> Result<()> {
    let mut position = from;
    while position + 16 <= segment_end {
        let length = to_usize(REPLAY_CHUNK_BYTES.min(segment_end - position));
        let chunk = segments.read(position, length)?;
        let mut offset = 0usize;
        while offset + 16 <= chunk.len() {
            let frame_position = position + offset as u64;
            let room = to_usize(segment_end - frame_position);
            let frame_len = match frame_length(&chunk[offset..], room) {
                Ok(frame_len) | Err(FrameError::Incomplete { needed: frame_len }) => frame_len,
                Err(_) => {
                    offset += 8;
                    continue;
                }
            };
            let whole = if offset + frame_len <= chunk.len() {
                chunk.slice(offset..offset + frame_len)
            } else {
                segments.read(frame_position, frame_len)?
            };
            match decode_frame(&whole, frame_len) {
                Ok((Frame::Event(event), _)) => {
                    note(frame_position, &event);
                    offset += frame_len;
                }
                Ok((Frame::Padding, _)) => offset += frame_len,
                Err(_) => offset += 8,
            }
        }
        position += offset as u64;
    }
    Ok(())
}

/// Walks frames from `first` while each one is valid.
fn follow_frames(
    segments: &Segments,
    first: u64,
    note: &mut dyn FnMut(u64, &EventFrame<'_>),
) -> Result<()> {
    let segment_end = segments.segment_start(segments.segment_of(first) + 1);
    let mut position = first;
    while position + 16 <= segment_end {
        let room = to_usize(segment_end - position);
        let head = segments.read(position, 16)?;
        let frame_len = match frame_length(&head, room) {
            Ok(frame_len) | Err(FrameError::Incomplete { needed: frame_len }) => frame_len,
            Err(_) => return Ok(()),
        };
        let frame = segments.read(position, frame_len)?;
        match decode_frame(&frame, frame_len) {
            Ok((Frame::Event(event), _)) => note(position, &event),
            Ok((Frame::Padding, _)) => return Ok(()),
            Err(_) => return Ok(()),
        }
        position += frame_len as u64;
    }
    Ok(())
}

/// Why the replay stopped where it did, for messages.
pub(crate) fn describe_stop(segments: &Segments, replayed: &Replayed) -> String {
    if segments.segment_of(replayed.stopped_at) >= segments.count() {
        return format!(
            "the last segment ends at log position {}",
            replayed.stopped_at
        );
    }
    let what = if replayed.damaged {
        "is damaged"
    } else {
        "is empty"
    };
    format!(
        "the frame at {} {what}",
        segments.describe(replayed.stopped_at)
    )
}

/// The loss the claims prove, if any: the furthest claim past `end`.
pub(crate) fn lost_end(claims: &[Claim], end: u64, segment_size_bytes: u64) -> Option<&Claim> {
    claims
        .iter()
        .filter(|claim| skip_segment_header(claim.end, segment_size_bytes) > end)
        .max_by_key(|claim| claim.end)
}

/// The error that refuses to open a store whose acknowledged log is shorter than the
/// evidence says.
pub(crate) struct LostData<'a> {
    pub segments: &'a Segments,
    pub claim: &'a Claim,
    pub end: u64,
    pub replayed: &'a Replayed,
}

impl fmt::Display for LostData<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "acknowledged events are lost: {} says the log reached position {}, but it can \
             be read only up to position {} ({}). Nothing was changed: the log, the index \
             files and the clean-shutdown marker are kept as evidence. Keep a copy of the \
             directory, run `strata verify` on it, and accept the loss with `strata repair \
             --truncate-at {}` only if the events after that position cannot be recovered",
            self.claim.describe(self.segments),
            self.claim.end,
            self.end,
            describe_stop(self.segments, self.replayed),
            self.end,
        )
    }
}

impl LostData<'_> {
    pub(crate) fn to_error(&self) -> Error {
        Error::Corrupt {
            detail: self.to_string(),
        }
    }
}
