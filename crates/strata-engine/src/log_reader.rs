//! Reading frames of the durable log: forwards, backwards, and at known positions.
//! Every frame is checked against its checksum when read; a bad one is an error naming
//! the segment and offset, never wrong data.

use std::ops::Range;

use bytes::Bytes;
use strata_core::{Error, RecordedEvent, Result};

use crate::format::{
    EventFrame, FRAME_ALIGN_BYTES, FRAME_MIN_BYTES, Frame, FrameError, KIND_SKIP,
    SEGMENT_HEADER_BYTES, SKIP_HEAD_BYTES, StreamNameCache, decode_frame, frame_length,
    trailer_length,
};
use crate::segments::{LastSegment, Segments};

/// Bytes read at once when scanning, at most.
const SCAN_CHUNK_BYTES: u64 = 1 << 20;
/// Bytes of a scan's first read; each next read doubles up to [`SCAN_CHUNK_BYTES`]. A scan
/// that stops after a few events (a small window of a filtered read) reads little.
const SCAN_FIRST_CHUNK_BYTES: u64 = 64 << 10;
/// Bytes read at once for a single frame whose length is not known yet.
const FRAME_PROBE_BYTES: u64 = 4 << 10;
/// The probe past the last frame of a read of known positions, at first: a `pread` costs
/// about 0.1 µs more per KiB copied beside its fixed cost (0.8 µs in this VM), so a sparse
/// read probes small and grows the probe to the largest frame it meets (up to
/// [`FRAME_PROBE_BYTES`]), paying a second read only for the first frame larger than that.
const FRAME_PROBE_MIN_BYTES: u64 = 512;
/// A read fetching several events spans at most this many bytes.
const COALESCE_SPAN_BYTES: u64 = 256 << 10;
/// Positions this close to the one before them join its read; farther ones get their own,
/// so a sparse selection (one event type in a hundred) reads its events, not the log.
const COALESCE_GAP_BYTES: u64 = 8 << 10;

/// Whether a scan goes on after a frame.
#[derive(PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// A frame seen by a scan: its position, the parsed event, and the frame's bytes.
pub(crate) type Visit<'a> = dyn FnMut(u64, &EventFrame<'_>, &Bytes) -> Result<Flow> + 'a;

pub(crate) struct LogReader<'a> {
    segments: &'a Segments,
}

impl<'a> LogReader<'a> {
    pub(crate) fn new(segments: &'a Segments) -> Self {
        Self { segments }
    }

    fn corrupt(&self, position: u64, reason: &str) -> Error {
        Error::Corrupt {
            detail: format!(
                "the frame at {} {reason}; the log is corrupt from there",
                self.segments.describe(position)
            ),
        }
    }

    fn segment_end(&self, position: u64) -> u64 {
        self.segments
            .segment_start(self.segments.segment_of(position) + 1)
    }

    /// Reads the whole frame at `position` (which must be a frame start).
    pub(crate) fn read_frame(&self, position: u64) -> Result<Bytes> {
        let room = self.segment_end(position) - position;
        let probe = self
            .segments
            .read(position, to_usize(room.min(FRAME_PROBE_BYTES)))?;
        match frame_length(&probe, to_usize(room)) {
            Ok(frame_len) => Ok(probe.slice(..frame_len)),
            Err(FrameError::Incomplete { needed }) => self.segments.read(position, needed),
            Err(FrameError::Empty) => Err(self.corrupt(position, "is empty")),
            Err(FrameError::Invalid(reason)) => Err(self.corrupt(position, reason)),
            Err(FrameError::Skip(_)) => Err(self.corrupt(position, "was removed by a scavenge")),
        }
    }

    /// Reads the event at `position`; `None` when a scavenge removed it.
    pub(crate) fn read_event_if_present(&self, position: u64) -> Result<Option<RecordedEvent>> {
        Ok(self.read_events_if_present(&[position])?.pop().flatten())
    }

    /// True when the index's `position` may have been removed by a scavenge: its segment
    /// was rewritten by one (a removed record reads as a skip frame or as a hole), or the
    /// index was rebuilt from a log without it.
    fn removed(&self, position: u64, error: &FrameError) -> bool {
        matches!(error, FrameError::Empty | FrameError::Skip(_))
            && self
                .segments
                .is_scavenged(self.segments.segment_of(position))
    }

    /// The event of the frame at `range` of `bytes`.
    fn event_from_frame(
        &self,
        position: u64,
        bytes: &Bytes,
        range: Range<usize>,
        names: &mut StreamNameCache,
    ) -> Result<RecordedEvent> {
        let frame_start = range.start;
        let frame = &bytes[range];
        match decode_frame(frame, frame.len()) {
            Ok((Frame::Event(event), _)) => {
                Ok(event.to_recorded_at(bytes, frame_start, position, names))
            }
            Ok((Frame::Padding, _)) => Err(self.corrupt(position, "is padding, not an event")),
            Err(FrameError::Invalid(reason)) => Err(self.corrupt(position, reason)),
            Err(_) => Err(self.corrupt(position, "is truncated")),
        }
    }

    /// Reads the events at ascending `positions`, fetching runs of nearby ones with one read.
    /// Events a scavenge removed are left out.
    pub(crate) fn read_events(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>> {
        Ok(self
            .read_events_if_present(positions)?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Reads the events at ascending `positions`, one answer per position: `None` where a
    /// scavenge removed the event.
    ///
    /// Each run of nearby positions is read with one `pread` into a buffer reused across
    /// runs (or borrowed from the segment's map); the frames found there are copied out
    /// into a buffer shared by the runs that follow, up to [`SHARED_COPY_BYTES`], so a
    /// sparse read pays one allocation per many events, not one per event, and an event
    /// keeps alive only frames the read returned, never a probe or the gaps between runs.
    pub(crate) fn read_events_if_present(
        &self,
        positions: &[u64],
    ) -> Result<Vec<Option<RecordedEvent>>> {
        let mut events = Vec::with_capacity(positions.len());
        let mut names = StreamNameCache::remembering();
        let mut buffer = Vec::new();
        let mut found = Vec::new();
        let mut copy = Copies {
            bytes: Vec::new(),
            pending: Vec::with_capacity(positions.len()),
        };
        let mut probe_bytes = FRAME_PROBE_MIN_BYTES;
        let mut last_segment = LastSegment::default();
        let mut run_start = 0;
        let mut warmed_end = 0;
        let mut segment = 0..0;
        while run_start < positions.len() {
            if run_start >= warmed_end {
                warmed_end = positions.len().min(run_start + WARMED_POSITIONS);
                self.segments.warm(&positions[run_start..warmed_end]);
            }
            if positions[run_start] == crate::index::REMOVED_POSITION {
                copy.pending.push((positions[run_start], Found::Removed));
                run_start += 1;
                continue;
            }
            let first = positions[run_start];
            if !segment.contains(&first) {
                let start = self.segments.segment_start(self.segments.segment_of(first));
                segment = start..self.segment_end(first);
            }
            let segment_end = segment.end;
            let mut run_end = run_start + 1;
            while run_end < positions.len()
                && positions[run_end] != crate::index::REMOVED_POSITION
                && positions[run_end] - positions[run_end - 1] < COALESCE_GAP_BYTES
                && positions[run_end] - first < COALESCE_SPAN_BYTES
                && positions[run_end] < segment_end
            {
                run_end += 1;
            }
            let run = &positions[run_start..run_end];
            let span_bytes = to_usize((run[run.len() - 1] + probe_bytes).min(segment_end) - first);
            if copy.bytes.len() + span_bytes > copy.bytes.capacity() {
                // Full: the events so far keep this buffer, the next ones get a new one
                // (never a copy of the gathered frames into a larger one).
                if !copy.pending.is_empty() {
                    self.decode_copies(&mut copy, &mut names, &mut events)?;
                }
                let wanted = (positions.len() - run_start).saturating_mul(COPY_BYTES_PER_POSITION);
                copy.bytes
                    .reserve_exact(wanted.min(SHARED_COPY_BYTES).max(span_bytes));
            }
            let space = RunSpace {
                probe_bytes: &mut probe_bytes,
                buffer: &mut buffer,
                last_segment: &mut last_segment,
                found: &mut found,
                copy: &mut copy.bytes,
            };
            self.read_run(run, segment_end, space);
            let failed = matches!(found.last(), Some(Found::Failed(_)));
            copy.pending
                .extend(run.iter().copied().zip(found.drain(..)));
            if failed {
                // The events before a failure are decoded first: a damaged one among them
                // is reported before the failure, as a read in order would.
                self.decode_copies(&mut copy, &mut names, &mut events)?;
            }
            run_start = run_end;
        }
        self.decode_copies(&mut copy, &mut names, &mut events)?;
        Ok(events)
    }

    /// Decodes the frames gathered in `copy`, in order, into `events`, and empties it; the
    /// first failure met is the answer.
    fn decode_copies(
        &self,
        copy: &mut Copies,
        names: &mut StreamNameCache,
        events: &mut Vec<Option<RecordedEvent>>,
    ) -> Result<()> {
        let mut bytes = std::mem::take(&mut copy.bytes);
        // Events hold the buffer whole: leave them no spare capacity.
        bytes.shrink_to_fit();
        let shared = Bytes::from(bytes);
        for (position, frame) in copy.pending.drain(..) {
            let event = match frame {
                Found::InSpan(range) => self.event_from_frame(position, &shared, range, names)?,
                Found::Alone(frame) => {
                    self.event_from_frame(position, &frame, 0..frame.len(), names)?
                }
                Found::Removed => {
                    events.push(None);
                    continue;
                }
                Found::Failed(error) => return Err(error),
            };
            events.push(Some(event));
        }
        Ok(())
    }

    /// Finds the frames at the positions of `run` (ascending, inside one segment ending at
    /// `segment_end`, close enough for one read), one entry of `found` per position up to
    /// the first failure; the frames found in the read's span are appended to `copy` and
    /// their entries are ranges of it. `probe_bytes` grows to fit the largest frame seen,
    /// up to [`FRAME_PROBE_BYTES`].
    fn read_run(&self, run: &[u64], segment_end: u64, space: RunSpace<'_>) {
        let RunSpace {
            probe_bytes,
            buffer,
            last_segment,
            found,
            copy,
        } = space;
        let first = run[0];
        let last = run[run.len() - 1];
        let span_end = (last + *probe_bytes).min(segment_end);
        let length = to_usize(span_end - first);
        let read = self
            .segments
            .with_span(first, length, buffer, last_segment, |span| {
                self.frames_in(span, run, segment_end, probe_bytes, found, copy);
            });
        if let Err(error) = read {
            found.push(Found::Failed(error));
        }
    }

    /// The frames of `run` in `span` (the bytes from its first position on): one entry of
    /// `found` per position up to the first failure; the extent of those found in the span
    /// is appended to `copy`.
    fn frames_in(
        &self,
        span: &[u8],
        run: &[u64],
        segment_end: u64,
        probe_bytes: &mut u64,
        found: &mut Vec<Found>,
        copy: &mut Vec<u8>,
    ) {
        let first = run[0];
        let found_before = found.len();
        let mut copied: Option<Range<usize>> = None;
        for &position in run {
            let offset = to_usize(position - first);
            let room = to_usize(segment_end - position);
            let frame = match frame_length(&span[offset..], room) {
                Ok(frame_len) => {
                    let end = offset + frame_len;
                    copied = Some(match copied {
                        Some(copied) => copied.start..copied.end.max(end),
                        None => offset..end,
                    });
                    *probe_bytes = grown_probe(*probe_bytes, frame_len);
                    Found::InSpan(offset..end)
                }
                Err(FrameError::Incomplete { needed }) => {
                    *probe_bytes = grown_probe(*probe_bytes, needed);
                    match self.segments.read(position, needed) {
                        Ok(frame) => Found::Alone(frame),
                        Err(error) => Found::Failed(error),
                    }
                }
                Err(error) if self.removed(position, &error) => Found::Removed,
                Err(FrameError::Empty) => Found::Failed(self.corrupt(position, "is empty")),
                Err(FrameError::Invalid(reason)) => Found::Failed(self.corrupt(position, reason)),
                Err(FrameError::Skip(_)) => {
                    Found::Failed(self.corrupt(position, "is a skip frame"))
                }
            };
            let failed = matches!(frame, Found::Failed(_));
            found.push(frame);
            if failed {
                break;
            }
        }
        let Some(copied) = copied else {
            return;
        };
        let base = copy.len();
        for frame in &mut found[found_before..] {
            if let Found::InSpan(range) = frame {
                *range = base + range.start - copied.start..base + range.end - copied.start;
            }
        }
        copy.extend_from_slice(&span[copied]);
    }

    /// Visits frames from `position` (a frame start or a segment start) up to `end`.
    /// Returns the position after the last frame visited.
    pub(crate) fn scan_forward(
        &self,
        position: u64,
        end: u64,
        visit: &mut Visit<'_>,
    ) -> Result<u64> {
        let mut position = self.segments.first_frame_at_or_after(position);
        let mut chunk_bytes = SCAN_FIRST_CHUNK_BYTES;
        while position < end {
            let segment_end = self.segment_end(position);
            let chunk_end = (position + chunk_bytes).min(segment_end).min(end);
            chunk_bytes = (chunk_bytes * 2).min(SCAN_CHUNK_BYTES);
            let chunk = self
                .segments
                .read(position, to_usize(chunk_end - position))?;
            let mut offset = 0usize;
            while offset < chunk.len() {
                let frame_position = position + offset as u64;
                let room = to_usize(segment_end - frame_position);
                let frame = match frame_length(&chunk[offset..], room) {
                    Ok(frame_len) => chunk.slice(offset..offset + frame_len),
                    Err(FrameError::Skip(skip_len)) => {
                        // Records removed by a scavenge: jump over the hole.
                        offset += skip_len;
                        continue;
                    }
                    Err(FrameError::Incomplete { .. }) if offset > 0 => break,
                    Err(FrameError::Incomplete { needed }) => {
                        self.segments.read(frame_position, needed)?
                    }
                    Err(FrameError::Empty) => {
                        return Err(self.corrupt(frame_position, "is empty inside the durable log"));
                    }
                    Err(FrameError::Invalid(reason)) => {
                        return Err(self.corrupt(frame_position, reason));
                    }
                };
                let frame_len = frame.len();
                match decode_frame(&frame, frame_len) {
                    Ok((Frame::Padding, _)) => {
                        offset = to_usize(segment_end - position);
                        break;
                    }
                    Err(FrameError::Skip(skip_len)) => offset += skip_len,
                    Ok((Frame::Event(event), _)) => {
                        offset += frame_len;
                        if visit(frame_position, &event, &frame)? == Flow::Stop {
                            return Ok(position + offset as u64);
                        }
                    }
                    Err(FrameError::Invalid(reason)) => {
                        return Err(self.corrupt(frame_position, reason));
                    }
                    Err(_) => return Err(self.corrupt(frame_position, "is truncated")),
                }
            }
            position += offset as u64;
            if position == segment_end {
                position += SEGMENT_HEADER_BYTES;
            }
        }
        Ok(position)
    }

    /// Visits frames that end at or before `position`, newest first, down to the start of
    /// the log. Returns the start of the last frame visited.
    pub(crate) fn scan_backward(&self, position: u64, visit: &mut Visit<'_>) -> Result<u64> {
        let mut position = position;
        let mut chunk_bytes = SCAN_FIRST_CHUNK_BYTES;
        loop {
            if position == 0 {
                return Ok(0);
            }
            let segment_index = self.segments.segment_of(position - 1);
            let first_frame = self.segments.segment_start(segment_index) + SEGMENT_HEADER_BYTES;
            if position <= first_frame {
                if segment_index == 0 {
                    return Ok(position.min(first_frame));
                }
                position = self.segments.segment_start(segment_index);
                continue;
            }
            let chunk_start = first_frame.max(position.saturating_sub(chunk_bytes));
            chunk_bytes = (chunk_bytes * 2).min(SCAN_CHUNK_BYTES);
            let chunk = self
                .segments
                .read(chunk_start, to_usize(position - chunk_start))?;
            let mut cursor = chunk.len();
            while cursor > 0 {
                let frame_end = chunk_start + cursor as u64;
                let frame_len = match trailer_length(&chunk[..cursor]) {
                    Some(len)
                        if len >= FRAME_MIN_BYTES
                            && len.is_multiple_of(FRAME_ALIGN_BYTES)
                            && len as u64 <= frame_end - first_frame =>
                    {
                        len
                    }
                    _ => return Err(self.corrupt(frame_end, "ends in an impossible trailer")),
                };
                let frame_position = frame_end - frame_len as u64;
                let head = if frame_len <= cursor {
                    chunk.slice(cursor - frame_len..cursor - frame_len + SKIP_HEAD_BYTES)
                } else {
                    self.segments.read(frame_position, SKIP_HEAD_BYTES)?
                };
                if head[8] == KIND_SKIP {
                    // Records removed by a scavenge: jump back over the hole.
                    match frame_length(&head, to_usize(frame_len as u64)) {
                        Err(FrameError::Skip(skip_len)) if skip_len == frame_len => {}
                        _ => return Err(self.corrupt(frame_position, "is a damaged skip frame")),
                    }
                    position = frame_position;
                    if frame_len > cursor {
                        break;
                    }
                    cursor -= frame_len;
                    continue;
                }
                let frame = if frame_len <= cursor {
                    chunk.slice(cursor - frame_len..cursor)
                } else if cursor == chunk.len() {
                    self.segments
                        .read(frame_end - frame_len as u64, frame_len)?
                } else {
                    break;
                };
                match decode_frame(&frame, frame_len) {
                    Ok((Frame::Padding, _)) => {}
                    Ok((Frame::Event(event), _)) => {
                        if visit(frame_position, &event, &frame)? == Flow::Stop {
                            return Ok(frame_position);
                        }
                    }
                    Err(FrameError::Invalid(reason)) => {
                        return Err(self.corrupt(frame_position, reason));
                    }
                    Err(_) => return Err(self.corrupt(frame_position, "is truncated")),
                }
                position = frame_position;
                if frame_len > cursor {
                    break;
                }
                cursor -= frame_len;
            }
        }
    }
}

/// A read of known positions warms the frames of this many positions at a time
/// ([`Segments::warm`]): enough to overlap many misses, few enough that the lines loaded
/// are still in the cache when the frames are read.
const WARMED_POSITIONS: usize = 64;

/// A read of known positions copies its frames into one buffer up to this size (or one
/// run's span, when larger) before it starts another: one allocation per many sparse
/// events, while an event kept alive pins at most this much besides its own frame.
const SHARED_COPY_BYTES: usize = 256 << 10;
/// Room a read's copy buffer plans per position still to read: an event frame of a
/// hundred or two bytes; the buffer is trimmed to what it holds when it is handed out.
const COPY_BYTES_PER_POSITION: usize = 256;

/// The frames a read of known positions has copied and not decoded yet.
struct Copies {
    /// The copied frames, back to back.
    bytes: Vec<u8>,
    /// Each position's frame, in order (`InSpan`: a range of `bytes`).
    pending: Vec<(u64, Found)>,
}

/// What a run's read works with besides its positions.
struct RunSpace<'a> {
    /// Grows to fit the largest frame seen, up to [`FRAME_PROBE_BYTES`].
    probe_bytes: &'a mut u64,
    /// Receives the span when it is read with `pread`.
    buffer: &'a mut Vec<u8>,
    last_segment: &'a mut LastSegment,
    found: &'a mut Vec<Found>,
    copy: &'a mut Vec<u8>,
}

/// Where a frame of a run of known positions was found.
enum Found {
    /// Inside the run's span, at this range of the read's copy.
    InSpan(Range<usize>),
    /// Longer than the span held: read on its own.
    Alone(Bytes),
    /// Removed by a scavenge.
    Removed,
    /// The run stops at the first failure.
    Failed(Error),
}

/// The probe that holds a frame of `frame_len` bytes: a power of two, at most
/// [`FRAME_PROBE_BYTES`], never smaller than `probe_bytes`.
fn grown_probe(probe_bytes: u64, frame_len: usize) -> u64 {
    (frame_len as u64)
        .next_power_of_two()
        .clamp(probe_bytes, FRAME_PROBE_BYTES.max(probe_bytes))
}

pub(crate) fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

#[cfg(test)]
#[path = "log_reader_tests.rs"]
mod tests;
