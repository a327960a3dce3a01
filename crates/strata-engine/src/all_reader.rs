//! Reads of `$all`: checking a caller's position, and scanning frames either way under a
//! bound on the events looked at and the bytes scanned, so that one call (a filter that
//! matches nothing included) never scans the whole log. Reads that may block on the disk go
//! through [`off_the_runtime`], so they never hold up the runtime's other tasks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use strata_core::{AllSlice, Direction, Error, Position, ReadAllOptions, ReadFrom, Result};

use crate::format::{
    Frame, FrameError, KIND_PADDING, KIND_SKIP, SEGMENT_HEADER_BYTES, StreamNameCache,
    decode_frame, frame_length,
};
use crate::log_reader::{Flow, LogReader, to_usize};
use crate::shared::Shared;

/// Events one read of `$all` looks at, at most, matching its filter or not.
pub(crate) const EXAMINED_EVENTS_MAX: usize = 65_536;

/// Events a page reserves room for up front, at most (a larger page grows as it fills).
const PAGE_EVENTS_RESERVED_MAX: usize = 4_096;

/// Bytes of frames one read of `$all` scans, at most (the frame that crosses the bound is
/// still taken, so a page always makes progress).
pub(crate) const SCANNED_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Runs `read`, which may block on the disk, without holding up the runtime's other tasks:
/// on a multi-thread runtime in place, after handing this worker's queued tasks to another
/// thread (`block_in_place`: no thread hop, where `spawn_blocking` doubled a stream read's
/// latency); on a current-thread runtime on the blocking pool; outside a runtime inline.
pub(crate) async fn off_the_runtime<T: Send + 'static>(
    read: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return read();
    };
    if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(read);
    }
    match runtime.spawn_blocking(read).await {
        Ok(outcome) => outcome,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // The runtime is shutting down.
        Err(_) => Err(Error::Closed),
    }
}

/// A page of `$all`, the number of events looked at for it and the number it moved past.
pub(crate) struct Scanned {
    pub(crate) slice: AllSlice,
    pub(crate) examined_count: usize,
    /// `strata_core::WindowSlice::passed_count`: `examined_count` for a scan; for a read
    /// served from the index, an estimate ([`events_in_span`]).
    pub(crate) passed_count: usize,
}

impl Scanned {
    /// A page served from the index, which moved from `start` to its `next_position`.
    pub(crate) fn served(
        shared: &Shared,
        slice: AllSlice,
        examined_count: usize,
        start: u64,
    ) -> Self {
        let passed_count = events_in_span(shared, start, slice.next_position.0).max(examined_count);
        Self {
            slice,
            examined_count,
            passed_count,
        }
    }
}

/// The newest event before `end` at or after `start`, for a served read that accounted
/// for every event up to `end`. The index says, unless it already holds a group past
/// `end` (the syncer files a group in the index before it moves the durable end): then the
/// log's last frame before `end` says.
pub(crate) fn newest_before(shared: &Shared, start: u64, end: u64) -> Result<Option<u64>> {
    let newest = match shared.index.read().last_event_position() {
        Some(newest) if newest >= end => {
            let mut found = None;
            LogReader::new(&shared.segments).scan_backward(end, &mut |position, _, _| {
                found = Some(position);
                Ok(Flow::Stop)
            })?;
            found
        }
        newest => newest,
    };
    Ok(newest.filter(|&newest| newest >= start && newest < end))
}

/// About how many events lie between the positions `a` and `b`: the span at the log's mean
/// bytes per event (the index counts the events; positions count bytes), and at least one
/// when the span is not empty. Subscriptions count it toward their checkpoints only.
pub(crate) fn events_in_span(shared: &Shared, a: u64, b: u64) -> usize {
    let span = a.abs_diff(b);
    if span == 0 {
        return 0;
    }
    let end = shared.durable_end.load(Ordering::Acquire).max(1);
    let events = shared.index.read().events_total();
    let estimate = u128::from(span) * u128::from(events) / u128::from(end);
    usize::try_from(estimate).unwrap_or(usize::MAX).max(1)
}

/// Reads a page of `$all` looking at no more than `examined_max` events.
pub(crate) fn read(
    shared: &Arc<Shared>,
    options: &ReadAllOptions,
    examined_max: usize,
) -> Result<Scanned> {
    read_bounded(shared, options, Bound::of(options, examined_max))
}

fn read_bounded(shared: &Shared, options: &ReadAllOptions, bound: Bound) -> Result<Scanned> {
    if let Some(filter) = &options.filter
        && shared.config.system_streams
    {
        if let Some(key) = filter.index_key() {
            return crate::indexed_reader::read(shared, options, &key, bound.examined_max);
        }
        if let Some(scanned) =
            crate::filtered_reader::read(shared, options, filter, bound.examined_max, bound.wanted)?
        {
            return Ok(scanned);
        }
    }
    scan(shared, options, bound)
}

/// As [`read`], always by a scan of the log (tests compare the index's answers with it).
#[cfg(test)]
pub(crate) fn read_by_scan(
    shared: &Shared,
    options: &ReadAllOptions,
    examined_max: usize,
) -> Result<Scanned> {
    scan(shared, options, Bound::of(options, examined_max))
}

fn scan(shared: &Shared, options: &ReadAllOptions, bound: Bound) -> Result<Scanned> {
    let end = shared.durable_end.load(Ordering::Acquire);
    let reader = AllReader { shared };
    match options.direction {
        Direction::Forwards => reader.forwards(options, end, bound),
        Direction::Backwards => reader.backwards(options, end, bound),
    }
}

#[derive(Clone, Copy)]
struct Bound {
    examined_max: usize,
    scanned_bytes_max: u64,
    /// Matching events wanted.
    wanted: usize,
}

impl Bound {
    /// A page of `options` looking at no more than `examined_max` events.
    fn of(options: &ReadAllOptions, examined_max: usize) -> Self {
        Self {
            examined_max: examined_max.clamp(1, EXAMINED_EVENTS_MAX),
            scanned_bytes_max: SCANNED_BYTES_MAX,
            wanted: options.max_count,
        }
    }
}

/// Collects the events of one scan and decides when it stops.
struct Page<'a> {
    options: &'a ReadAllOptions,
    bound: Bound,
    events: Vec<strata_core::RecordedEvent>,
    examined_count: usize,
    scanned_bytes: u64,
    last_examined: Option<Position>,
    names: StreamNameCache,
}

impl<'a> Page<'a> {
    fn new(options: &'a ReadAllOptions, bound: Bound) -> Self {
        // Room for the events a page may take, so the vector never grows (each growth
        // copied every event gathered so far); a filtered page reserves no more than its
        // window.
        let events_expected = bound
            .wanted
            .min(bound.examined_max)
            .min(PAGE_EVENTS_RESERVED_MAX);
        Self {
            options,
            bound,
            events: Vec::with_capacity(events_expected),
            examined_count: 0,
            scanned_bytes: 0,
            last_examined: None,
            names: StreamNameCache::default(),
        }
    }

    /// Looks at one event frame; `Stop` when the page is full or its work is spent.
    fn visit(
        &mut self,
        position: u64,
        event: &crate::format::EventFrame<'_>,
        frame: &Bytes,
    ) -> Result<Flow> {
        self.examined_count += 1;
        self.scanned_bytes += frame.len() as u64;
        self.last_examined = Some(Position(position));
        match &self.options.filter {
            None => {
                let recorded = event.to_recorded(frame, position, &mut self.names);
                self.events.push(recorded);
            }
            Some(filter) => {
                if filter.try_matches_parts(event.stream, event.event_type)? {
                    // A copy of the frame alone: a rare match must not keep the whole scan
                    // buffer alive.
                    let own = Bytes::copy_from_slice(frame);
                    self.events
                        .push(event.to_recorded(&own, position, &mut self.names));
                }
            }
        }
        Ok(if self.stopped_early() {
            Flow::Stop
        } else {
            Flow::Continue
        })
    }

    /// True when the page is full or its work is spent.
    fn stopped_early(&self) -> bool {
        self.events.len() >= self.bound.wanted
            || self.examined_count >= self.bound.examined_max
            || self.scanned_bytes >= self.bound.scanned_bytes_max
    }
}

/// Where a `$all` read starts, either way; a caller's position is checked.
pub(crate) fn start_of(shared: &Shared, from: ReadFrom<Position>, end: u64) -> Result<u64> {
    match from {
        ReadFrom::Start => Ok(0),
        ReadFrom::End => Ok(end),
        ReadFrom::At(position) if position.0 >= end => Ok(end),
        ReadFrom::At(position) => AllReader { shared }.check_position(position.0, end),
    }
}

struct AllReader<'a> {
    shared: &'a Shared,
}

impl AllReader<'_> {
    fn log(&self) -> LogReader<'_> {
        LogReader::new(&self.shared.segments)
    }

    /// Checks that a caller's `$all` position is where a frame starts: the end, a segment
    /// start, the padding that closes a segment, or an event the index knows at exactly
    /// that position. Nothing larger than an event is read to find out, and bytes inside an
    /// event's data can never pass for a frame. In a scavenged segment, a position inside a
    /// run of removed records starts at the run's end (the next survivor either way).
    /// Returns where the read starts.
    fn check_position(&self, position: u64, end: u64) -> Result<u64> {
        let segments = &self.shared.segments;
        if position == end || position % segments.size_bytes() <= SEGMENT_HEADER_BYTES {
            return Ok(position);
        }
        let invalid = || Error::InvalidArgument {
            reason: format!("position {position} is not the position of an event in the log"),
        };
        if !position.is_multiple_of(8) {
            return Err(invalid());
        }
        let segment_end = segments.segment_start(segments.segment_of(position) + 1);
        let head = segments.read(position, 16)?;
        let frame_len = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
        if segments.is_scavenged(segments.segment_of(position)) {
            if head[8] == KIND_SKIP {
                return match frame_length(&head, to_usize(segment_end - position)) {
                    Err(FrameError::Skip(_)) => Ok(position),
                    _ => Err(invalid()),
                };
            }
            if frame_len == 0 {
                return match crate::scavenge::skip_run_containing(segments, position)? {
                    Some(run) => Ok(run.end),
                    None => Err(invalid()),
                };
            }
        }
        if head[8] == KIND_PADDING {
            let trailer = segments.read(segment_end - 4, 4)?;
            let trailer_len = u64::from(u32::from_le_bytes([
                trailer[0], trailer[1], trailer[2], trailer[3],
            ]));
            let closes_segment = position + frame_len == segment_end && trailer_len == frame_len;
            return if closes_segment {
                Ok(position)
            } else {
                Err(invalid())
            };
        }
        let frame_bytes_max = self.shared.config.limits.event_bytes_max as u64 + 64 * 1024;
        if frame_len > frame_bytes_max || position + frame_len > end {
            return Err(invalid());
        }
        let frame = segments.read(position, to_usize(frame_len))?;
        let Ok((Frame::Event(event), _)) = decode_frame(&frame, frame.len()) else {
            return Err(invalid());
        };
        let in_memory = {
            let index = self.shared.index.read();
            index.dropped_runs().is_none().then(|| {
                index.stream(event.stream).is_some_and(|entry| {
                    entry.position(event.revision) == Some(position)
                        || entry.tombstone_position == Some(position)
                })
            })
        };
        let indexed = match in_memory {
            Some(indexed) => indexed,
            None => {
                let stream = strata_core::StreamName::from_stored(event.stream);
                crate::index_lookup::position_of(self.shared, &stream, event.revision)?
                    == Some(position)
                    || crate::index_lookup::tombstone_position(self.shared, &stream)?
                        == Some(position)
            }
        };
        if indexed {
            Ok(position)
        } else {
            Err(invalid())
        }
    }

    fn start_of(&self, from: ReadFrom<Position>, end: u64) -> Result<u64> {
        start_of(self.shared, from, end)
    }

    fn forwards(&self, options: &ReadAllOptions, end: u64, bound: Bound) -> Result<Scanned> {
        let start = self.start_of(options.from, end)?;
        if start >= end || options.max_count == 0 {
            return Ok(Scanned {
                slice: AllSlice {
                    events: Vec::new(),
                    next_position: Position(start.min(end)),
                    is_end: start >= end,
                    last_examined: None,
                },
                examined_count: 0,
                passed_count: 0,
            });
        }
        let mut page = Page::new(options, bound);
        let next = self
            .log()
            .scan_forward(start, end, &mut |position, event, frame| {
                page.visit(position, event, frame)
            })?;
        Ok(Scanned {
            slice: AllSlice {
                events: page.events,
                next_position: Position(next),
                is_end: next >= end,
                last_examined: page.last_examined,
            },
            examined_count: page.examined_count,
            passed_count: page.examined_count,
        })
    }

    fn backwards(&self, options: &ReadAllOptions, end: u64, bound: Bound) -> Result<Scanned> {
        let start = self.start_of(options.from, end)?;
        if options.max_count == 0 {
            return Ok(Scanned {
                slice: AllSlice {
                    events: Vec::new(),
                    next_position: Position(start),
                    is_end: false,
                    last_examined: None,
                },
                examined_count: 0,
                passed_count: 0,
            });
        }
        let mut page = Page::new(options, bound);
        let next = self
            .log()
            .scan_backward(start, &mut |position, event, frame| {
                page.visit(position, event, frame)
            })?;
        let is_end = !page.stopped_early() || next <= SEGMENT_HEADER_BYTES;
        Ok(Scanned {
            slice: AllSlice {
                events: page.events,
                next_position: Position(next),
                is_end,
                last_examined: page.last_examined,
            },
            examined_count: page.examined_count,
            passed_count: page.examined_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use strata_core::{
        EventFilter, EventStore, ExpectedRevision, FilterTarget, ProposedEvent, StreamName,
    };

    use super::*;
    use crate::{Config, Store};

    /// `count` events of `type`, one append each, on `stream`.
    async fn write(store: &Store, stream: &str, event_type: &str, count: usize) {
        let stream = StreamName::new(stream).unwrap();
        for _ in 0..count {
            let event = ProposedEvent::json(event_type, "{}");
            store
                .append(&stream, ExpectedRevision::Any, vec![event])
                .await
                .unwrap();
        }
    }

    fn bound(examined_max: usize, scanned_bytes_max: u64) -> Bound {
        Bound {
            examined_max,
            scanned_bytes_max,
            wanted: usize::MAX,
        }
    }

    #[tokio::test]
    async fn a_filter_that_matches_nothing_stops_after_the_examined_bound_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
        write(&store, "noise-1", "Noise", 25).await;
        // A stream-name regex: no index serves it, the read scans.
        let nothing = EventFilter::regex(FilterTarget::StreamName, "^order-").unwrap();
        let all = store
            .read_all(ReadAllOptions::forwards())
            .await
            .unwrap()
            .events;
        let mut options = ReadAllOptions::forwards().filter(nothing);
        let mut pages = Vec::new();
        loop {
            let scanned = read_bounded(&store.shared, &options, bound(10, u64::MAX)).unwrap();
            assert!(scanned.slice.events.is_empty());
            pages.push((scanned.examined_count, scanned.slice.last_examined));
            if scanned.slice.is_end {
                break;
            }
            options = options.from_position(scanned.slice.next_position);
        }
        let examined: Vec<usize> = pages.iter().map(|(count, _)| *count).collect();
        assert_eq!(
            examined,
            vec![10, 10, 5],
            "three bounded pages cover the log"
        );
        let last: Vec<Position> = pages.iter().filter_map(|(_, last)| *last).collect();
        assert_eq!(
            last,
            vec![all[9].position, all[19].position, all[24].position],
            "each page says how far it looked"
        );
        store.close();
    }

    #[tokio::test]
    async fn a_read_stops_after_the_scanned_bytes_bound_either_way_and_always_progresses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
        write(&store, "bulk-1", "Bulk", 8).await;
        let all = store
            .read_all(ReadAllOptions::forwards())
            .await
            .unwrap()
            .events;
        for direction in [Direction::Forwards, Direction::Backwards] {
            let mut options = match direction {
                Direction::Forwards => ReadAllOptions::forwards(),
                Direction::Backwards => ReadAllOptions::backwards(),
            };
            let mut seen = Vec::new();
            loop {
                // One byte: every page stops after its first frame.
                let scanned = read_bounded(&store.shared, &options, bound(usize::MAX, 1)).unwrap();
                assert_eq!(
                    scanned.slice.events.len(),
                    1,
                    "{direction:?}: one event a page"
                );
                seen.extend(scanned.slice.events.iter().map(|event| event.position));
                if scanned.slice.is_end {
                    break;
                }
                options = options.from_position(scanned.slice.next_position);
            }
            let mut expected: Vec<Position> = all.iter().map(|event| event.position).collect();
            if direction == Direction::Backwards {
                expected.reverse();
            }
            assert_eq!(seen, expected, "{direction:?}: every event once, in order");
        }
        store.close();
    }

    #[tokio::test]
    async fn read_all_window_reports_what_it_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Config::small_for_tests()).unwrap();
        write(&store, "noise-1", "Noise", 6).await;
        write(&store, "order-1", "Placed", 1).await;
        write(&store, "noise-1", "Noise", 6).await;
        // A stream-name regex: no index serves it, the read scans.
        let orders = EventFilter::regex(FilterTarget::StreamName, "^order-").unwrap();
        let first = store
            .read_all_window(ReadAllOptions::forwards().filter(orders.clone()), 4)
            .await
            .unwrap();
        assert_eq!(first.examined_count, 4);
        assert!(first.slice.events.is_empty() && !first.slice.is_end);
        let second = store
            .read_all_window(
                ReadAllOptions::forwards()
                    .filter(orders)
                    .from_position(first.slice.next_position),
                4,
            )
            .await
            .unwrap();
        assert_eq!(second.examined_count, 4);
        assert_eq!(second.slice.events.len(), 1);
        assert_eq!(second.slice.events[0].stream.as_str(), "order-1");
        store.close();
    }
}
