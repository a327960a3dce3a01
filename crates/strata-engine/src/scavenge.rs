//! Scavenging: giving back the disk space of records no read can return any more, online,
//! without moving any surviving record (a position is a byte offset). See
//! `docs/SCAVENGING.md`.
//!
//! Each sealed segment that holds removable records is copied into a sparse file
//! `NNN.seg.scav`: surviving frames at their own offsets, each run of removed records
//! replaced by a skip frame (a 12-byte head at the run's start and the length at its end)
//! with a hole between. The copy is synced, renamed over the original and the directory
//! synced; the store's open file is then replaced (reads holding the old one finish on it).

use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use strata_core::rules::{self, Retention, StreamHead};
use strata_core::{
    Error, Result, ScavengeOptions, ScavengeProgress, ScavengeReport, SegmentFinished,
    StreamMetadata, StreamName,
};

use crate::format::{
    FORMAT_VERSION_SCAVENGED, FRAME_MIN_BYTES, Frame, FrameError, SEGMENT_HEADER_BYTES,
    TOMBSTONE_REVISION, decode_frame, encode_segment_header_of_version, frame_length,
};
use crate::index_file::{claimed_coverage, list_index_files};
use crate::index_lookup::{memory_head, stream_head};
use crate::log_reader::{LogReader, to_usize};
use crate::scavenge_copy::Copy;
use crate::segments::{Segments, scavenge_file_name, segment_file_name, sync_dir};
use crate::shared::Shared;

/// Bytes read from a segment at once.
const CHUNK_BYTES: u64 = 1 << 20;

/// What may go of one stream.
#[derive(Clone)]
enum Floor {
    /// Revisions below this one.
    Below(u64),
    /// Every event but the tombstone.
    AllButTombstone,
}

struct StreamFloor {
    floor: Floor,
    /// The metadata the floor was decided with: a change before the swap defers the
    /// segment (its removals might be readable again).
    metadata: Option<Arc<StreamMetadata>>,
    /// With the index's memory holding only the tail: the runs' generation when the
    /// floors were decided. Runs published since may hold a metadata change memory no
    /// longer shows, so they defer the segment too.
    runs_generation: Option<u64>,
}

impl StreamFloor {
    fn removes(&self, revision: u64) -> bool {
        match self.floor {
            Floor::Below(keep_from) => revision < keep_from,
            Floor::AllButTombstone => revision != TOMBSTONE_REVISION,
        }
    }
}

/// Bytes the files in `dir` occupy on disk (allocated blocks).
pub(crate) fn allocated_bytes(dir: &Path) -> Result<u64> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| Error::io(format!("listing {}", dir.display()), error))?;
    let mut total = 0;
    for entry in entries {
        let entry = entry.map_err(|error| Error::io("listing the log", error))?;
        if let Ok(metadata) = entry.metadata()
            && metadata.is_file()
        {
            total += metadata.blocks() * 512;
        }
    }
    Ok(total)
}

/// Which segments a scavenge may rewrite.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The sealed segments (before the tail, covered by index files): the store is open.
    Sealed,
    /// The tail segment too, up to the log's end: the store is closed and its directory
    /// locked by the caller, so nothing writes to it.
    WithTail,
}

/// Runs a scavenge of the store behind `shared` (see the module's comment).
pub(crate) fn scavenge(
    shared: &Shared,
    mut options: ScavengeOptions,
    reach: Reach,
) -> Result<ScavengeReport> {
    let started = Instant::now();
    let log_dir = shared.segments.log_dir().to_path_buf();
    let mut report = ScavengeReport {
        allocated_bytes_before: allocated_bytes(&log_dir)?,
        ..ScavengeReport::default()
    };
    let segments = &shared.segments;
    let size_bytes = segments.size_bytes();
    // Segments before the tail, and wholly covered by index files, so never replayed at an
    // open (unless the index is rebuilt) and never written again.
    let (covered_to, boundaries) = index_boundaries(&shared.index_dir)?;
    let durable_end = shared.durable_end.load(Ordering::Acquire);
    let sealed_end = if reach == Reach::WithTail && covered_to >= durable_end {
        segments.segment_of(durable_end) + 1
    } else {
        segments
            .segment_of(durable_end)
            .min(segments.segment_of(covered_to))
    };
    let floors = decide_floors(shared)?;
    report.segments_considered = sealed_end;
    let mut progress = ScavengeProgress {
        bytes_total: sealed_end * size_bytes,
        segments_total: sealed_end,
        ..ScavengeProgress::default()
    };
    if !floors.is_empty() {
        let first = options.start_from_segment.min(sealed_end);
        progress.segments_done = first;
        progress.bytes_done = first * size_bytes;
        let threads = options.threads.clamp(
            1,
            usize::try_from(sealed_end - first)
                .unwrap_or(usize::MAX)
                .max(1),
        );
        // Up to `threads` segments are copied at once, each swapped on its own (the swap
        // of one never depends on another's), so a crash leaves each whole or untouched.
        let next = AtomicU64::new(first);
        let failed = AtomicBool::new(false);
        let stop = options.stop.clone();
        let shared_state = parking_lot::Mutex::new(Tally {
            report: &mut report,
            progress: &mut progress,
            callback: options.progress.take(),
            error: None,
        });
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    scavenge_segments(
                        shared,
                        &floors,
                        &boundaries,
                        Segmentwork {
                            next: &next,
                            end: sealed_end,
                            failed: &failed,
                            stop: stop.as_deref(),
                            throttle_percent: options.throttle_percent,
                            size_bytes,
                        },
                        &shared_state,
                    );
                });
            }
        });
        if let Some(error) = shared_state.into_inner().error {
            return Err(error);
        }
    }
    report.allocated_bytes_after = allocated_bytes(&log_dir)?;
    report.elapsed = started.elapsed();
    tracing::info!(
        events_removed = report.events_removed,
        segments_rewritten = report.segments_rewritten,
        allocated_bytes_before = report.allocated_bytes_before,
        allocated_bytes_after = report.allocated_bytes_after,
        "scavenge done"
    );
    Ok(report)
}

/// What the threads of a scavenge add up, under one lock.
struct Tally<'a> {
    report: &'a mut ScavengeReport,
    progress: &'a mut ScavengeProgress,
    callback: Option<strata_core::ProgressCallback>,
    /// The first error of any thread (the others stop before their next segment).
    error: Option<Error>,
}

/// The segments the threads of a scavenge take one at a time.
struct Segmentwork<'a> {
    next: &'a AtomicU64,
    end: u64,
    failed: &'a AtomicBool,
    stop: Option<&'a AtomicBool>,
    throttle_percent: u8,
    size_bytes: u64,
}

/// One thread of a scavenge: takes the next segment until none is left, a stop is asked
/// or another thread failed.
fn scavenge_segments(
    shared: &Shared,
    floors: &HashMap<String, StreamFloor>,
    boundaries: &[u64],
    work: Segmentwork<'_>,
    tally: &parking_lot::Mutex<Tally<'_>>,
) {
    let mut throttle = Throttle::new(work.throttle_percent);
    loop {
        if work.failed.load(Ordering::Acquire) {
            return;
        }
        if work.stop.is_some_and(|stop| stop.load(Ordering::Acquire)) {
            // Only when segments are left: a stop after the last one changes nothing.
            if work.next.load(Ordering::Acquire) < work.end {
                tally.lock().report.stopped = true;
            }
            return;
        }
        let segment_index = work.next.fetch_add(1, Ordering::AcqRel);
        if segment_index >= work.end {
            return;
        }
        let segment_started = Instant::now();
        let outcome = scavenge_segment(
            shared,
            segment_index,
            floors,
            boundaries,
            &mut |bytes_done_in_segment| {
                throttle.pause();
                let mut tally = tally.lock();
                let mut now = tally.progress.clone();
                now.bytes_done += bytes_done_in_segment;
                if let Some(callback) = tally.callback.as_mut() {
                    callback(&now);
                }
            },
        );
        let mut tally = tally.lock();
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                work.failed.store(true, Ordering::Release);
                tally.error.get_or_insert(error);
                return;
            }
        };
        let mut finished = SegmentFinished {
            segment: segment_index,
            rewritten: false,
            frame_bytes_removed: 0,
            elapsed: Duration::ZERO,
        };
        match outcome {
            Outcome::Unchanged => {}
            Outcome::Deferred => tally.report.segments_deferred += 1,
            Outcome::Rewritten {
                events_removed,
                frame_bytes_removed,
            } => {
                tally.report.segments_rewritten += 1;
                tally.report.events_removed += events_removed;
                tally.report.frame_bytes_removed += frame_bytes_removed;
                tally.progress.events_removed += events_removed;
                tally.progress.frame_bytes_removed += frame_bytes_removed;
                finished.rewritten = true;
                finished.frame_bytes_removed = frame_bytes_removed;
            }
        }
        finished.elapsed = segment_started.elapsed();
        tally.progress.segments_done += 1;
        tally.progress.bytes_done += work.size_bytes;
        let mut now = tally.progress.clone();
        now.segment_finished = Some(finished);
        if let Some(callback) = tally.callback.as_mut() {
            callback(&now);
        }
    }
}

/// Removable frames read per segment when estimating what a scavenge would give back.
pub(crate) const ESTIMATE_SAMPLES_PER_SEGMENT: usize = 64;

/// An estimate of the frame bytes a scavenge of the sealed segments would remove now,
/// without reading the log through: the floors are decided as a scavenge decides them, the
/// index gives each segment's removable positions, and up to
/// [`ESTIMATE_SAMPLES_PER_SEGMENT`] of them per segment are read (a removed one counts
/// 0 bytes, a live one its frame's length); a segment's estimate is the samples' mean
/// times its count of removable positions. Exact when a segment has no more removable
/// positions than samples.
pub(crate) fn estimate_reclaimable(shared: &Shared) -> Result<u64> {
    let segments = &shared.segments;
    let (covered_to, _) = index_boundaries(&shared.index_dir)?;
    let durable_end = shared.durable_end.load(Ordering::Acquire);
    let sealed_end = segments
        .segment_of(durable_end)
        .min(segments.segment_of(covered_to));
    let sealed_limit = segments.segment_start(sealed_end);
    let floors = decide_floors(shared)?;
    let mut by_segment: HashMap<u64, Vec<u64>> = HashMap::new();
    for (stream, floor) in &floors {
        let stream = stream_name(stream)?;
        let revisions = match floor.floor {
            Floor::Below(keep_from) => 0..keep_from,
            Floor::AllButTombstone => 0..u64::MAX,
        };
        // From memory, or from the runs and the tail when memory holds only the tail.
        for position in crate::index_lookup::positions(shared, &stream, revisions)? {
            if position != crate::index::REMOVED_POSITION && position < sealed_limit {
                by_segment
                    .entry(segments.segment_of(position))
                    .or_default()
                    .push(position);
            }
        }
    }
    let reader = LogReader::new(segments);
    let mut total = 0u64;
    for positions in by_segment.values() {
        let count = positions.len();
        let samples = count.min(ESTIMATE_SAMPLES_PER_SEGMENT);
        let mut sampled: Vec<u64> = (0..samples)
            .map(|sample| positions[sample * count / samples])
            .collect();
        sampled.sort_unstable();
        let mut sampled_bytes = 0u64;
        for (position, event) in sampled.iter().zip(reader.read_events_if_present(&sampled)?) {
            if event.is_some() {
                sampled_bytes += reader.read_frame(*position)?.len() as u64;
            }
        }
        total += sampled_bytes * count as u64 / samples as u64;
    }
    Ok(total)
}

/// Where the index files end, the furthest first; a run of removed records never spans
/// one (the open checks that a frame ends there).
fn index_boundaries(index_dir: &Path) -> Result<(u64, Vec<u64>)> {
    let mut boundaries: Vec<u64> = list_index_files(index_dir)?
        .into_iter()
        .filter_map(|(_, path)| claimed_coverage(&path))
        .flat_map(|coverage| [coverage.covers_from, coverage.covers_to])
        .collect();
    boundaries.sort_unstable();
    boundaries.dedup();
    Ok((boundaries.last().copied().unwrap_or(0), boundaries))
}

/// The floor of every stream that has something to remove, by strata-core's rules at the
/// clock's now. With the whole index in memory, every stream's head is memory's; with
/// memory holding only the tail, the streams that can have a floor — those memory holds,
/// those a run gives a tombstone or metadata, and system streams (`$$` metadata streams
/// keep only their last event) — are found by streaming the runs, and their heads read
/// as every lookup reads them (runs and tail).
fn decide_floors(shared: &Shared) -> Result<HashMap<String, StreamFloor>> {
    let now = shared.config.clock.now();
    let mut floors = HashMap::new();
    let mut searches = Vec::new();
    let mut decide = |stream: &StreamName,
                      head: &StreamHead,
                      described: Option<&StreamHead>,
                      runs_generation: Option<u64>| {
        let metadata = head.metadata.clone();
        match rules::retention(stream, head, described, now) {
            Retention::AllButTombstone => {
                floors.insert(
                    stream.as_str().to_owned(),
                    StreamFloor {
                        floor: Floor::AllButTombstone,
                        metadata,
                        runs_generation,
                    },
                );
            }
            Retention::Below {
                keep_from,
                last,
                expiry: Some(search),
            } => searches.push((
                stream.clone(),
                keep_from,
                last,
                search,
                metadata,
                runs_generation,
            )),
            Retention::Below {
                keep_from,
                expiry: None,
                ..
            } if keep_from > 0 => {
                floors.insert(
                    stream.as_str().to_owned(),
                    StreamFloor {
                        floor: Floor::Below(keep_from),
                        metadata,
                        runs_generation,
                    },
                );
            }
            Retention::Below { .. } => {}
        }
    };
    let tail_only = {
        let index = shared.index.read();
        match index.dropped_runs() {
            Some(runs) => Some((
                Arc::clone(runs),
                index.runs_generation(),
                index
                    .streams()
                    .map(|(stream, _)| stream.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )),
            None => {
                for (stream, entry) in index.streams() {
                    let head = memory_head(Some(entry));
                    let described = stream
                        .described_stream()
                        .map(|described| memory_head(index.stream(&described)));
                    decide(stream, &head, described.as_ref(), None);
                }
                None
            }
        }
    };
    if let Some((runs, generation, in_memory)) = tail_only {
        let mut candidates: std::collections::HashSet<String> = in_memory.into_iter().collect();
        for run in runs.runs() {
            for entry in run.scan()? {
                let entry = entry?;
                if entry.kind == crate::run_file::KIND_STREAM
                    && (entry.tombstone.is_some()
                        || entry.metadata.is_some()
                        || entry.key.first() == Some(&b'$'))
                {
                    candidates.insert(String::from_utf8_lossy(&entry.key).into_owned());
                }
            }
        }
        for name in candidates {
            let stream = stream_name(&name)?;
            let head = stream_head(shared, &stream)?;
            let described = stream
                .described_stream()
                .map(|described| stream_head(shared, &described))
                .transpose()?;
            decide(&stream, &head, described.as_ref(), Some(generation));
        }
    }
    // `$maxAge`: the same binary search a read runs, one event read per probe, no lock.
    let reader = LogReader::new(&shared.segments);
    for (stream, keep_from, last, mut search, metadata, runs_generation) in searches {
        while let Some(revision) = search.next_probe() {
            let created = match crate::index_lookup::position_of(shared, &stream, revision)? {
                Some(position) => reader
                    .read_event_if_present(position)?
                    .map(|event| event.created),
                None => None,
            };
            search.observe(revision, created);
        }
        let keep_from = Retention::keep_from_after(keep_from, last, Some(&search));
        if keep_from > 0 {
            floors.insert(
                stream.as_str().to_owned(),
                StreamFloor {
                    floor: Floor::Below(keep_from),
                    metadata,
                    runs_generation,
                },
            );
        }
    }
    Ok(floors)
}

/// The name of a stream the index holds (a `$$` name may be two bytes longer than a name
/// a caller may give).
fn stream_name(name: &str) -> Result<StreamName> {
    match name.strip_prefix("$$") {
        Some(described) if !described.is_empty() => {
            Ok(StreamName::new(described)?.metadata_stream())
        }
        _ => StreamName::new(name),
    }
}

enum Outcome {
    Unchanged,
    Deferred,
    Rewritten {
        events_removed: u64,
        frame_bytes_removed: u64,
    },
}

/// Pauses so that the scavenge works `percent` of the time.
struct Throttle {
    percent: u32,
    since: Instant,
}

impl Throttle {
    fn new(percent: u8) -> Self {
        Self {
            percent: u32::from(percent.clamp(1, 100)),
            since: Instant::now(),
        }
    }

    fn pause(&mut self) {
        if self.percent < 100 {
            let worked = self.since.elapsed();
            std::thread::sleep(worked * (100 - self.percent) / self.percent);
        }
        self.since = Instant::now();
    }
}

/// Copies segment `segment_index` without its removable records and swaps the copy in,
/// when there is anything to remove.
fn scavenge_segment(
    shared: &Shared,
    segment_index: u64,
    floors: &HashMap<String, StreamFloor>,
    boundaries: &[u64],
    on_chunk: &mut dyn FnMut(u64),
) -> Result<Outcome> {
    let segments = &shared.segments;
    let size_bytes = segments.size_bytes();
    let base = segments.segment_start(segment_index);
    // First pass: is there anything new to remove?
    let mut affected: Vec<String> = Vec::new();
    let mut events_removed = 0u64;
    let mut frame_bytes_removed = 0u64;
    // Progress: the first pass is the first half of the segment's work, the copy the other.
    let mut last_reported = 0u64;
    walk_segment(segments, segment_index, &mut |offset, item| {
        if offset >= last_reported + CHUNK_BYTES {
            last_reported = offset;
            on_chunk(offset / 2);
        }
        if let Item::Event {
            stream,
            revision,
            frame,
        } = item
            && floors
                .get(stream)
                .is_some_and(|floor| floor.removes(revision))
        {
            events_removed += 1;
            frame_bytes_removed += frame.len() as u64;
            if affected.last().is_none_or(|last| last != stream) {
                affected.push(stream.to_owned());
            }
        }
        Ok(())
    })?;
    if events_removed == 0 {
        return Ok(Outcome::Unchanged);
    }
    affected.sort_unstable();
    affected.dedup();
    let log_dir = segments.log_dir();
    let path = log_dir.join(scavenge_file_name(segment_index));
    let mut copy = Copy::create(path.clone(), size_bytes)?;
    copy.keep(
        0,
        &encode_segment_header_of_version(segment_index, size_bytes, FORMAT_VERSION_SCAVENGED),
    )?;
    let mut last_reported = 0u64;
    walk_segment(segments, segment_index, &mut |offset, item| {
        if offset >= last_reported + CHUNK_BYTES {
            last_reported = offset;
            on_chunk(size_bytes / 2 + offset / 2);
        }
        match item {
            Item::Event {
                stream,
                revision,
                frame,
            } => {
                let range = offset..offset + frame.len() as u64;
                if floors
                    .get(stream)
                    .is_some_and(|floor| floor.removes(revision))
                {
                    copy.remove(range, boundaries, base)?;
                } else {
                    copy.keep(offset, frame)?;
                }
            }
            Item::Skip(len) => copy.remove(offset..offset + len, boundaries, base)?,
            Item::Padding(len) => {
                // Only its head and trailer: its body is zeros, which the hole reads as.
                copy.end_run()?;
                let head = segments.read(base + offset, FRAME_MIN_BYTES)?;
                copy.keep(offset, &head)?;
                let tail = segments.read(base + offset + len - 8, 8)?;
                copy.keep(offset + len - 8, &tail)?;
            }
        }
        Ok(())
    })?;
    // The tail of a closed store (`Reach::WithTail`): past the log's end the copy gets
    // zeros, not a hole, so that later appends write into allocated blocks, as in a new
    // segment (their `fdatasync` then has no block allocation to journal).
    let log_end = shared.durable_end.load(Ordering::Acquire);
    if (base..base + size_bytes).contains(&log_end) {
        copy.zeros(log_end - base..size_bytes)?;
    }
    let file = copy.finish()?;
    let final_path = log_dir.join(segment_file_name(segment_index));
    {
        // Under the index's read lock: metadata published since the floors were decided
        // (which could make a removed event readable again) defers the segment; none can
        // be published until the swap is done.
        // With memory holding only the tail, a change since the floors is in memory
        // unless runs were published since (which may have dropped it from memory), and
        // metadata memory does not hold came from the runs.
        let index = shared.index.read();
        let changed = affected.iter().any(|stream| {
            let Some(floor) = floors.get(stream) else {
                return true;
            };
            if floor
                .runs_generation
                .is_some_and(|generation| generation != index.runs_generation())
            {
                return true;
            }
            let now = index
                .stream(stream.as_str())
                .and_then(|entry| entry.metadata.clone());
            match (now, &floor.metadata) {
                (None, None) => false,
                (Some(now), Some(then)) => !Arc::ptr_eq(&now, then) && now != *then,
                (None, Some(_)) => floor.runs_generation.is_none(),
                (Some(_), None) => true,
            }
        });
        if changed {
            drop(index);
            let _ = std::fs::remove_file(&path);
            return Ok(Outcome::Deferred);
        }
        std::fs::rename(&path, &final_path)
            .map_err(|error| Error::io(format!("renaming {}", path.display()), error))?;
        segments.replace_scavenged(segment_index, file);
    }
    sync_dir(log_dir)?;
    Ok(Outcome::Rewritten {
        events_removed,
        frame_bytes_removed,
    })
}

/// One thing a segment holds.
enum Item<'a> {
    Event {
        stream: &'a str,
        revision: u64,
        frame: &'a [u8],
    },
    /// A skip frame of this many bytes (an earlier scavenge).
    Skip(u64),
    /// The padding that closes the segment, of this many bytes.
    Padding(u64),
}

/// Visits the frames of a sealed segment in order, with their offsets in the segment.
fn walk_segment(
    segments: &Segments,
    segment_index: u64,
    visit: &mut dyn FnMut(u64, Item<'_>) -> Result<()>,
) -> Result<()> {
    let size_bytes = segments.size_bytes();
    let base = segments.segment_start(segment_index);
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset + FRAME_MIN_BYTES as u64 <= size_bytes {
        let chunk = segments.read(
            base + offset,
            to_usize(CHUNK_BYTES.min(size_bytes - offset)),
        )?;
        let mut at = 0usize;
        while at < chunk.len() {
            let room = to_usize(size_bytes - offset - at as u64);
            let frame_offset = offset + at as u64;
            let frame = match frame_length(&chunk[at..], room) {
                Ok(len) => chunk.slice(at..at + len),
                Err(FrameError::Skip(len)) => {
                    visit(frame_offset, Item::Skip(len as u64))?;
                    at += len;
                    continue;
                }
                Err(FrameError::Incomplete { .. }) if at > 0 => break,
                Err(FrameError::Incomplete { needed }) => {
                    segments.read(base + frame_offset, needed)?
                }
                // Nothing written after this (a segment closed without padding).
                Err(FrameError::Empty) => return Ok(()),
                Err(FrameError::Invalid(reason)) => {
                    return Err(Error::Corrupt {
                        detail: format!(
                            "the frame at {} {reason}; scavenging stopped",
                            segments.describe(base + frame_offset)
                        ),
                    });
                }
            };
            match decode_frame(&frame, frame.len()) {
                Ok((Frame::Event(event), len)) => {
                    visit(
                        frame_offset,
                        Item::Event {
                            stream: event.stream,
                            revision: event.revision,
                            frame: &frame,
                        },
                    )?;
                    at += len;
                }
                Ok((Frame::Padding, len)) => {
                    visit(frame_offset, Item::Padding(len as u64))?;
                    return Ok(());
                }
                Err(_) => {
                    return Err(Error::Corrupt {
                        detail: format!(
                            "the frame at {} is damaged; scavenging stopped",
                            segments.describe(base + frame_offset)
                        ),
                    });
                }
            }
        }
        offset += at as u64;
    }
    Ok(())
}

/// The run of removed records (a skip frame) of a scavenged segment that `position` lies
/// strictly inside, if any: a `$all` position that pointed at a removed event.
pub(crate) fn skip_run_containing(
    segments: &Segments,
    position: u64,
) -> Result<Option<Range<u64>>> {
    let segment_index = segments.segment_of(position);
    let base = segments.segment_start(segment_index);
    let mut found = None;
    let target = position - base;
    let result = walk_segment(segments, segment_index, &mut |offset, item| {
        let len = match item {
            Item::Event { frame, .. } => frame.len() as u64,
            Item::Skip(len) => {
                if offset < target && target < offset + len {
                    found = Some(base + offset..base + offset + len);
                }
                len
            }
            Item::Padding(len) => len,
        };
        if offset + len > target {
            // Past the position: stop the walk.
            return Err(Error::Closed);
        }
        Ok(())
    });
    match result {
        Ok(()) | Err(Error::Closed) => Ok(found),
        Err(error) => Err(error),
    }
}
