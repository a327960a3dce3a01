//! `$all` reads with an ordinary filter — event-type prefixes or regex, stream-name
//! prefixes — served from the secondary indexes instead of a scan of the log.
//!
//! The category and event-type keys do not hold every event `$all` returns, so a read
//! also takes the rest key (`Kind::Rest`: every event that lacks a category or an event
//! type key). The keys a filter needs come from the catalog of names (`Catalog`):
//! - event-type prefixes: each known type with a matching prefix, and the rest;
//! - an event-type regex: each known type the regex matches, and the rest;
//! - stream-name prefixes: for a prefix with a `-` after its first character, the
//!   category before the `-`; for a prefix without `-` (not starting with `$`), each known
//!   category it begins; and the rest (which holds the system streams and the streams
//!   without a category).
//!
//! The keys' positions are merged in log order and only those events are read; the
//! filter keeps those it accepts (a category or the rest holds more than it wants). A page
//! holds the same events as a scan's, and its `next_position` is where the scan's would
//! be. Anything else scans: a stream-name regex, an empty prefix, a `$idx-` prefix beside
//! others, a catalog that overflowed, and filters whose keys hold more than an eighth of
//! the log (a scan reads sequentially and costs less then).

use std::sync::atomic::Ordering;

use strata_core::{
    AllSlice, Direction, EventFilter, FilterTarget, Position, ReadAllOptions, RecordedEvent, Result,
};

use crate::all_reader::{Scanned, newest_before, start_of};
use crate::format::SEGMENT_HEADER_BYTES;
use crate::indexed_reader::{merge_backwards, merge_forwards};
use crate::log_reader::LogReader;
use crate::postings_lookup::{select_before_position, select_from_position, view};
use crate::secondary::{Kind, REST_NAME, SecondaryIndexes};
use crate::shared::Shared;

/// A read is served from the index only when its keys hold at most this share of the
/// log's events (1 / `COST_GUARD_DIVISOR`).
pub(crate) const COST_GUARD_DIVISOR: u64 = 8;

/// Candidates taken per round at first, and at most (the rounds double in between).
const ROUND_MIN: usize = 16;
const ROUND_MAX: usize = 4_096;

/// The keys whose events include every event `filter` accepts, or `None` when the filter
/// must scan. Every list ends with the rest key.
pub(crate) fn keys_of(
    filter: &EventFilter,
    secondary: &SecondaryIndexes,
) -> Option<Vec<(Kind, String)>> {
    let mut keys: Vec<(Kind, String)> = Vec::new();
    let names = |kind: Kind| secondary.catalog(kind).and_then(|catalog| catalog.names());
    match (filter.target(), filter.prefix_list()) {
        (FilterTarget::EventType, Some(prefixes)) => {
            if prefixes.iter().any(String::is_empty) {
                return None;
            }
            for name in names(Kind::EventType)? {
                if prefixes
                    .iter()
                    .any(|prefix| name.starts_with(prefix.as_str()))
                {
                    keys.push((Kind::EventType, name.to_owned()));
                }
            }
        }
        (FilterTarget::EventType, None) => {
            for name in names(Kind::EventType)? {
                // A regex that gives up on a name: let the scan say so if an event has it.
                if filter.try_matches_field(name).ok()? {
                    keys.push((Kind::EventType, name.to_owned()));
                }
            }
        }
        (FilterTarget::StreamName, Some(prefixes)) => {
            for prefix in prefixes {
                if prefix.is_empty() || prefix.starts_with("$idx-") {
                    return None;
                }
                if prefix.starts_with('$') {
                    // Only system streams: the rest holds them all.
                    continue;
                }
                match prefix.find('-') {
                    // A stream starting with `-` has no category: in the rest.
                    Some(0) => {}
                    Some(at) => keys.push((Kind::Category, prefix[..at].to_owned())),
                    None => {
                        for name in names(Kind::Category)? {
                            if name.starts_with(prefix.as_str()) {
                                keys.push((Kind::Category, name.to_owned()));
                            }
                        }
                    }
                }
            }
        }
        (FilterTarget::StreamName, None) => return None,
    }
    keys.sort_unstable();
    keys.dedup();
    keys.push((Kind::Rest, REST_NAME.to_owned()));
    Some(keys)
}

/// Reads a page of `$all` holding up to `wanted` events `filter` accepts, looking at up to
/// `examined_max` of the keys' events, or `None` when the read must scan.
pub(crate) fn read(
    shared: &Shared,
    options: &ReadAllOptions,
    filter: &EventFilter,
    examined_max: usize,
    wanted: usize,
) -> Result<Option<Scanned>> {
    // The durable end first: every event before it is already in the index, so the keys
    // taken next (the catalog's names) cover every event the read may return.
    let end = shared.durable_end.load(Ordering::Acquire);
    let (keys, events_total) = {
        let index = shared.index.read();
        if !index.secondary.enabled() {
            return Ok(None);
        }
        match keys_of(filter, &index.secondary) {
            Some(keys) => (keys, index.events_total()),
            None => return Ok(None),
        }
    };
    let start = start_of(shared, options.from, end)?;
    let forwards = options.direction == Direction::Forwards;
    if wanted == 0 || (forwards && start >= end) {
        return Ok(None);
    }
    let mut page = Page {
        events: Vec::new(),
        examined_count: 0,
        last_examined: None,
        full: false,
    };
    let mut cursor = start;
    let mut round = wanted.clamp(ROUND_MIN, ROUND_MAX);
    let mut first_round = true;
    let exhausted = loop {
        let take = round.min(examined_max - page.examined_count);
        let (lists, keys_total) = lists(shared, &keys, options.direction, cursor, take)?;
        if first_round && keys_total > events_total / COST_GUARD_DIVISOR {
            return Ok(None);
        }
        first_round = false;
        let lists: Vec<&[u64]> = lists.iter().map(Vec::as_slice).collect();
        let mut candidates = if forwards {
            merge_forwards(&lists, cursor, end, take)
        } else {
            merge_backwards(&lists, cursor, take)
        };
        let Some(&last) = candidates.last() else {
            break true;
        };
        let fewer = candidates.len() < take;
        cursor = if forwards { last + 1 } else { last };
        if !forwards {
            candidates.reverse();
        }
        let mut events = LogReader::new(&shared.segments).read_events_if_present(&candidates)?;
        if !forwards {
            events.reverse();
        }
        if page.take(filter, events, wanted, examined_max)? {
            break false;
        }
        if fewer {
            break true;
        }
        round = (round * 2).min(ROUND_MAX);
    };
    let slice = if forwards {
        match (exhausted, page.last_examined) {
            (false, Some(last)) => {
                // Where the scan stops: just after the last event looked at.
                let head = shared.segments.read(last, 4)?;
                let frame_len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
                let next = last + u64::from(frame_len);
                AllSlice {
                    events: page.events,
                    next_position: Position(next),
                    is_end: next >= end,
                    last_examined: Some(Position(last)),
                }
            }
            _ => {
                // Every event up to the end was accounted for: a checkpoint may move to
                // the newest.
                let newest = newest_before(shared, start, end)?;
                AllSlice {
                    events: page.events,
                    next_position: Position(end),
                    is_end: true,
                    last_examined: newest.or(page.last_examined).map(Position),
                }
            }
        }
    } else {
        match (exhausted, page.last_examined) {
            (false, Some(last)) => AllSlice {
                events: page.events,
                next_position: Position(last),
                is_end: last <= SEGMENT_HEADER_BYTES,
                last_examined: Some(Position(last)),
            },
            _ => AllSlice {
                events: page.events,
                next_position: Position(start.min(SEGMENT_HEADER_BYTES)),
                is_end: true,
                last_examined: page.last_examined.map(Position),
            },
        }
    };
    Ok(Some(Scanned::served(
        shared,
        slice,
        page.examined_count,
        start,
    )))
}

/// What a read has gathered.
struct Page {
    events: Vec<RecordedEvent>,
    examined_count: usize,
    last_examined: Option<u64>,
    full: bool,
}

impl Page {
    /// Looks at a round's events in the read's order (`None`: removed by a scavenge, not
    /// looked at); true when the page is full or its work is spent.
    fn take(
        &mut self,
        filter: &EventFilter,
        events: Vec<Option<RecordedEvent>>,
        wanted: usize,
        examined_max: usize,
    ) -> Result<bool> {
        for event in events.into_iter().flatten() {
            self.examined_count += 1;
            self.last_examined = Some(event.position.0);
            if filter.try_matches(&event)? {
                self.events.push(event);
                self.full = self.events.len() >= wanted;
            }
            if self.full || self.examined_count >= examined_max {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Up to `take` positions of each key from `cursor` (at or after it forwards, before it
/// backwards), ascending, and how many positions the keys hold in all.
fn lists(
    shared: &Shared,
    keys: &[(Kind, String)],
    direction: Direction,
    cursor: u64,
    take: usize,
) -> Result<(Vec<Vec<u64>>, u64)> {
    let mut lists = Vec::with_capacity(keys.len());
    let mut total = 0u64;
    for (kind, name) in keys {
        let list = match direction {
            Direction::Forwards => {
                let select = select_from_position(cursor, take);
                let view = view(shared, *kind, name, &select)?;
                total += view.len();
                view.at_or_after_position(cursor, take)?
            }
            Direction::Backwards => {
                let select = select_before_position(cursor, take);
                let view = view(shared, *kind, name, &select)?;
                total += view.len();
                view.before_position(cursor, take)?
            }
        };
        lists.push(list);
    }
    Ok((lists, total))
}

#[cfg(test)]
#[path = "filtered_reader_tests.rs"]
mod tests;
