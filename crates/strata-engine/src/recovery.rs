//! Opening a store: load the index files, replay the log after them, and cut a torn tail.
//!
//! A crash can leave the last group partly written: frames without their commit frame, or
//! a frame cut short. Both are dropped (the group was never acknowledged). A bad frame
//! followed by valid frames is not a torn write but corruption, and opening fails with an
//! error naming the segment and offset.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use strata_core::{Error, Result, StreamMetadata, StreamName};

use crate::config::Config;
use crate::format::{Frame, FrameError, SEGMENT_HEADER_BYTES, decode_frame, frame_length};
use crate::index::{IdEntry, Index, RecentIds};
use crate::index_file::{announced_stream_count, list_index_files, load_index_file};
use crate::log_reader::{LogReader, to_usize};
use crate::segments::{
    OpenMode, Segments, create_segment, list_segments, open_segment, recorded_segment_size,
};

const REPLAY_CHUNK_BYTES: u64 = 1 << 20;
const CLEAN_MARKER: &str = "CLEAN";

pub(crate) struct Recovered {
    pub segments: Segments,
    pub index: Index,
    pub recent_ids: RecentIds,
    /// Where the next frame goes; everything before is committed.
    pub end: u64,
    pub index_file_sequence: u64,
    pub index_covered_to: u64,
}

pub(crate) fn recover(data_dir: &Path, config: &Config) -> Result<Recovered> {
    let log_dir = data_dir.join("log");
    let index_dir = data_dir.join("index");
    for dir in [&log_dir, &index_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|error| Error::io(format!("creating {}", dir.display()), error))?;
    }
    let clean_end = take_clean_marker(data_dir)?;
    // An existing store keeps the segment size it was created with.
    let segment_size_bytes = if list_segments(&log_dir)?.is_empty() {
        config.segment_size_bytes
    } else {
        recorded_segment_size(&log_dir)?
    };
    let segments = open_segments(&log_dir, segment_size_bytes, OpenMode::Repair)?;
    let created = segments.count() == 0;
    if created {
        segments.push(create_segment(&log_dir, 0, segment_size_bytes)?);
    }
    let mut recent_ids = RecentIds::new(config.recent_event_ids_max);
    let (mut index, index_file_sequence, covered_to) = load_index(&index_dir, &segments)?;
    let replayed = replay(
        &segments,
        &mut index,
        &mut recent_ids,
        covered_to,
        &mut |_| {},
    )?;
    let end = skip_segment_header(replayed.committed_end, segments.size_bytes());
    let clean_end = clean_end.map(|clean| skip_segment_header(clean, segments.size_bytes()));
    // A clean close vouches that the log ends exactly where the replay stopped; anything
    // else (a crash, damage) is checked: a valid frame after the stop is corruption.
    let vouched = created || (clean_end == Some(end) && !replayed.has_torn_tail());
    if !vouched {
        if let Some(valid) = find_valid_frame_after(&segments, replayed.stopped_at)? {
            return Err(Error::Corrupt {
                detail: format!(
                    "the log stops at {} but a valid frame follows at {}: \
                     the log is corrupt, not torn; run `strata verify`",
                    segments.describe(replayed.stopped_at),
                    segments.describe(valid)
                ),
            });
        }
        if replayed.has_torn_tail() {
            tracing::warn!(
                at = replayed.committed_end,
                "dropping a torn tail left by a crash"
            );
        }
        for (what, claimed) in [
            ("the clean-shutdown marker", clean_end),
            ("the index files", Some(covered_to)),
        ] {
            if let Some(claimed) = claimed.filter(|&claimed| claimed > end) {
                tracing::warn!(
                    claimed,
                    end,
                    "{what} said the log reached further than it does: data after the end was lost"
                );
            }
        }
        zero_after(&segments, end)?;
        // What the replay read may have come from the page cache of a process that died
        // before its sync: make it durable before publishing it as such.
        segments.sync(segments.segment_of(covered_to.min(end))..segments.count())?;
    }
    Ok(Recovered {
        segments,
        index,
        recent_ids,
        end,
        index_file_sequence,
        index_covered_to: covered_to,
    })
}

/// A log end that falls exactly on a segment boundary continues after the next header.
fn skip_segment_header(end: u64, segment_size_bytes: u64) -> u64 {
    if end.is_multiple_of(segment_size_bytes) {
        end + SEGMENT_HEADER_BYTES
    } else {
        end
    }
}

/// Opens every segment of `log_dir`, checking that none is missing.
pub(crate) fn open_segments(log_dir: &Path, size_bytes: u64, mode: OpenMode) -> Result<Segments> {
    let segment_indexes = list_segments(log_dir)?;
    let mut files = Vec::with_capacity(segment_indexes.len());
    for (expected, &segment_index) in segment_indexes.iter().enumerate() {
        if segment_index != expected as u64 {
            return Err(Error::Corrupt {
                detail: format!("segment {expected} is missing from {}", log_dir.display()),
            });
        }
        files.push(open_segment(log_dir, segment_index, size_bytes, mode)?);
    }
    Ok(Segments::new(log_dir.to_path_buf(), size_bytes, files))
}

/// Reads and removes the marker a clean shutdown leaves; it says the log past its end
/// position is known to be zero.
fn take_clean_marker(data_dir: &Path) -> Result<Option<u64>> {
    let path = data_dir.join(CLEAN_MARKER);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    std::fs::remove_file(&path)
        .map_err(|error| Error::io(format!("removing {}", path.display()), error))?;
    crate::segments::sync_dir(data_dir)?;
    if bytes.len() != 12
        || u32::from_le_bytes(bytes[8..12].try_into().unwrap_or([0; 4]))
            != crc32c::crc32c(&bytes[..8])
    {
        return Ok(None);
    }
    Ok(Some(u64::from_le_bytes(
        bytes[..8].try_into().unwrap_or([0; 8]),
    )))
}

/// Writes the clean-shutdown marker (called by the writer as it stops).
pub(crate) fn write_clean_marker(data_dir: &Path, end: u64) -> Result<()> {
    let mut bytes = end.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(&end.to_le_bytes()).to_le_bytes());
    let path = data_dir.join(CLEAN_MARKER);
    std::fs::write(&path, &bytes)
        .and_then(|()| File::open(&path)?.sync_all())
        .map_err(|error| Error::io(format!("writing {}", path.display()), error))?;
    crate::segments::sync_dir(data_dir)
}

/// Loads the index files in order. Any gap or damage discards them all: the log is the
/// truth and a full replay rebuilds the index.
fn load_index(index_dir: &Path, segments: &Segments) -> Result<(Index, u64, u64)> {
    let files = list_index_files(index_dir)?;
    let mut index = Index::default();
    let announced: u64 = files
        .iter()
        .map(|(_, path)| announced_stream_count(path))
        .sum();
    // Streams repeat across files, so the sum may overshoot; it is capped by what the
    // files' bytes could describe (each stream takes at least 34 bytes), and a failed
    // reservation only means the table grows as it loads.
    let file_bytes: u64 = files
        .iter()
        .filter_map(|(_, path)| std::fs::metadata(path).ok())
        .map(|metadata| metadata.len())
        .sum();
    index.reserve_streams(usize::try_from(announced.min(file_bytes / 34)).unwrap_or(0));
    let mut covered_to = SEGMENT_HEADER_BYTES;
    let mut problem = None;
    for (expected_sequence, (sequence, path)) in files.iter().enumerate() {
        if *sequence != expected_sequence as u64 {
            problem = Some(format!("index file {} is out of sequence", path.display()));
            break;
        }
        match load_index_file(path, &mut index) {
            Ok(coverage) if coverage.covers_from == covered_to => covered_to = coverage.covers_to,
            Ok(_) => {
                problem = Some(format!("index file {} leaves a gap", path.display()));
                break;
            }
            Err(reason) => {
                problem = Some(format!("index file {} {reason}", path.display()));
                break;
            }
        }
    }
    if problem.is_none()
        && covered_to > SEGMENT_HEADER_BYTES
        && !frame_ends_at(segments, covered_to)
    {
        problem = Some("the index files cover log that is not there".into());
    }
    if let Some(problem) = problem {
        tracing::warn!(%problem, "rebuilding the index from the whole log");
        for (_, path) in &files {
            std::fs::remove_file(path)
                .map_err(|error| Error::io(format!("removing {}", path.display()), error))?;
        }
        return Ok((Index::default(), 0, SEGMENT_HEADER_BYTES));
    }
    load_metadata(segments, &mut index)?;
    Ok((index, files.len() as u64, covered_to))
}

/// True when a valid frame ends exactly at `position`.
fn frame_ends_at(segments: &Segments, position: u64) -> bool {
    let mut normalized = position;
    if normalized % segments.size_bytes() == SEGMENT_HEADER_BYTES {
        normalized -= SEGMENT_HEADER_BYTES;
    }
    if normalized < 8 || segments.segment_of(normalized - 1) >= segments.count() {
        return false;
    }
    let Ok(trailer) = segments.read(normalized - 4, 4) else {
        return false;
    };
    let frame_len = u64::from(u32::from_le_bytes(
        trailer[..4].try_into().unwrap_or([0; 4]),
    ));
    if frame_len == 0 || frame_len > normalized {
        return false;
    }
    LogReader::new(segments)
        .read_frame(normalized - frame_len)
        .is_ok_and(|frame| {
            frame.len() as u64 == frame_len && decode_frame(&frame, frame.len()).is_ok()
        })
}

/// Parses the metadata of every stream that has a `$$stream`, from its last event.
fn load_metadata(segments: &Segments, index: &mut Index) -> Result<()> {
    let reader = LogReader::new(segments);
    let mut found = Vec::new();
    for (stream, entry) in index.streams() {
        let (Some(described), Some(&position)) =
            (stream.described_stream(), entry.positions.last())
        else {
            continue;
        };
        let event = reader.read_event(position)?;
        found.push((
            described,
            StreamMetadata::from_json(stream, &event.data).unwrap_or_default(),
        ));
    }
    for (stream, metadata) in found {
        index.set_metadata(&stream, Arc::new(metadata));
    }
    Ok(())
}

struct PendingEvent {
    stream: StreamName,
    revision: u64,
    position: u64,
    id: u128,
    metadata: Option<StreamMetadata>,
}

pub(crate) struct Replayed {
    /// Position after the last committed transaction.
    pub committed_end: u64,
    /// Where reading stopped: the first frame not taken (empty, damaged, or past the last
    /// segment). Frames between `committed_end` and here lack their commit frame.
    pub stopped_at: u64,
    /// True when a damaged frame (not an empty one) stopped the replay.
    pub damaged: bool,
}

impl Replayed {
    /// True when anything past the committed end was found: a torn final write.
    pub(crate) fn has_torn_tail(&self) -> bool {
        self.damaged || self.stopped_at > self.committed_end
    }
}

/// Replays committed transactions from `from` into the index.
pub(crate) fn replay(
    segments: &Segments,
    index: &mut Index,
    recent_ids: &mut RecentIds,
    from: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<Replayed> {
    let mut position = segments.first_frame_at_or_after(from);
    let mut committed_end = position;
    let mut pending: Vec<PendingEvent> = Vec::new();
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
                Err(FrameError::Incomplete { .. }) if offset > 0 => break,
                Err(FrameError::Incomplete { needed }) => segments.read(frame_position, needed)?,
                Err(FrameError::Empty) => {
                    return Ok(Replayed {
                        committed_end,
                        stopped_at: frame_position,
                        damaged: false,
                    });
                }
                Err(FrameError::Invalid(_)) => {
                    return Ok(Replayed {
                        committed_end,
                        stopped_at: frame_position,
                        damaged: true,
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
                    pending.push(PendingEvent {
                        stream,
                        revision: event.revision,
                        position: frame_position,
                        id: event.id,
                        metadata,
                    });
                    offset += frame_len;
                    if event.is_commit() {
                        apply(segments, index, recent_ids, pending.drain(..))?;
                        committed_end = position + offset as u64;
                    }
                }
                Err(_) => {
                    return Ok(Replayed {
                        committed_end,
                        stopped_at: frame_position,
                        damaged: true,
                    });
                }
            }
        }
        // A frame may end exactly at its segment's end: go on after the next header.
        position =
            segments.first_frame_at_or_after(next_position.unwrap_or(position + offset as u64));
        progress(position);
    }
    Ok(Replayed {
        committed_end,
        stopped_at: position,
        damaged: false,
    })
}

fn apply(
    segments: &Segments,
    index: &mut Index,
    recent_ids: &mut RecentIds,
    events: impl Iterator<Item = PendingEvent>,
) -> Result<()> {
    for event in events {
        let expected_revision = index
            .stream(&event.stream)
            .map_or(0, |entry| entry.positions.len() as u64);
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
        index.add_event(&event.stream, event.revision, event.position);
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

/// Looks for any valid event frame after a damaged one at `damaged`, in the rest of its
/// segment and at the start of later segments.
pub(crate) fn find_valid_frame_after(segments: &Segments, damaged: u64) -> Result<Option<u64>> {
    let segment_index = segments.segment_of(damaged);
    if segment_index >= segments.count() {
        return Ok(None);
    }
    let segment_end = segments.segment_start(segment_index + 1);
    let rest = segments.read(damaged, to_usize(segment_end - damaged))?;
    let mut offset = 8usize;
    while offset + 16 <= rest.len() {
        let room = rest.len() - offset;
        if let Ok(frame_len) = frame_length(&rest[offset..], room)
            && let Ok((Frame::Event(_), _)) =
                decode_frame(&rest[offset..offset + frame_len], frame_len)
        {
            return Ok(Some(damaged + offset as u64));
        }
        offset += 8;
    }
    for later in segment_index + 1..segments.count() {
        let first = segments.segment_start(later) + SEGMENT_HEADER_BYTES;
        if LogReader::new(segments).read_event(first).is_ok() {
            return Ok(Some(first));
        }
    }
    Ok(None)
}

/// Zeroes whatever lies after the committed end, so later appends never sit next to
/// stale frames of a torn write.
fn zero_after(segments: &Segments, end: u64) -> Result<()> {
    let zeros = vec![0u8; to_usize(REPLAY_CHUNK_BYTES)];
    for segment_index in segments.segment_of(end)..segments.count() {
        let segment_start = segments.segment_start(segment_index);
        let mut position = end.max(segment_start + SEGMENT_HEADER_BYTES);
        let segment_end = segments.segment_start(segment_index + 1);
        let file = segments.file(segment_index)?;
        let mut dirty = false;
        while position < segment_end {
            let length = to_usize(REPLAY_CHUNK_BYTES.min(segment_end - position));
            let chunk = segments.read(position, length)?;
            if chunk.iter().any(|&byte| byte != 0) {
                file.write_all_at(&zeros[..length], position - segment_start)
                    .map_err(|error| {
                        Error::io(format!("zeroing {}", segments.describe(position)), error)
                    })?;
                dirty = true;
            }
            position += length as u64;
        }
        if dirty {
            file.sync_data()
                .map_err(|error| Error::io(format!("syncing {}", segments.describe(end)), error))?;
        }
    }
    Ok(())
}
