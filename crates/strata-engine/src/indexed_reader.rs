//! `$all` reads whose filter names a secondary index (`$idx-ce-<category>`,
//! `$idx-et-<type>`, KurrentDB 25.1): the matching positions come from the indexes, merged
//! in log order, and only those events are read — no scan. Only the page's positions are
//! taken from each list (through the runs when memory holds only the tail). As KurrentDB's, such a read
//! returns the events of user streams whose type does not start with `$`; `$idx-ce-c` also
//! takes the stream named `c` (a name without `-` is a category of its own).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use strata_core::system_streams::IndexKey;
use strata_core::{AllSlice, Direction, Position, ReadAllOptions, Result};

use crate::all_reader::{EXAMINED_EVENTS_MAX, Scanned, newest_before, start_of};
use crate::index::live_positions;
use crate::log_reader::LogReader;
use crate::postings_lookup::{runs_near, select_before_position, select_from_position, view};
use crate::run_file::KIND_STREAM;
use crate::secondary::Kind;
use crate::shared::Shared;

/// Reads a page of `$all` holding the events under `key`, looking at up to `examined_max`.
pub(crate) fn read(
    shared: &Shared,
    options: &ReadAllOptions,
    key: &IndexKey,
    examined_max: usize,
) -> Result<Scanned> {
    // The durable end first: every position before it is already in the index (the syncer
    // updates the index before it moves the end), and positions after it are left out.
    let end = shared.durable_end.load(Ordering::Acquire);
    let start = start_of(shared, options.from, end)?;
    let wanted = options
        .max_count
        .min(examined_max.clamp(1, EXAMINED_EVENTS_MAX));
    let taken_max = wanted.saturating_add(1);
    let mut lists: Vec<Vec<u64>> = Vec::new();
    let dollar_type = matches!(key, IndexKey::EventType(name) if name.starts_with('$'));
    if !dollar_type {
        lists.push(postings_near(
            shared,
            key,
            options.direction,
            start,
            taken_max,
        )?);
    }
    if let IndexKey::Category(category) = key {
        lists.push(category_stream(
            shared,
            category,
            options.direction,
            start,
            taken_max,
        )?);
    }
    let lists: Vec<&[u64]> = lists.iter().map(Vec::as_slice).collect();
    let mut positions = match options.direction {
        Direction::Forwards => merge_forwards(&lists, start, end, taken_max),
        Direction::Backwards => merge_backwards(&lists, start, taken_max),
    };
    let more = positions.len() > wanted;
    let following = if more { positions.pop() } else { None };
    // Every position before `end` was in the index when the lists were taken.
    let newest_event = if options.direction == Direction::Forwards && following.is_none() {
        newest_before(shared, start, end)?
    } else {
        None
    };
    let mut ascending = positions.clone();
    if options.direction == Direction::Backwards {
        ascending.reverse();
    }
    let mut events = LogReader::new(&shared.segments).read_events(&ascending)?;
    events.retain(|event| !event.event_type.starts_with('$'));
    if options.direction == Direction::Backwards {
        events.reverse();
    }
    let last_taken = positions.last().copied();
    let slice = match (options.direction, following) {
        (Direction::Forwards, Some(next)) => AllSlice {
            events,
            next_position: Position(next),
            is_end: false,
            last_examined: last_taken.map(Position),
        },
        // Every event up to the end was accounted for: a checkpoint may move to the newest.
        (Direction::Forwards, None) => AllSlice {
            events,
            next_position: Position(end.max(start)),
            is_end: true,
            last_examined: newest_event.or(last_taken).map(Position),
        },
        (Direction::Backwards, _) => AllSlice {
            events,
            next_position: Position(last_taken.unwrap_or(start)),
            is_end: following.is_none(),
            last_examined: last_taken.map(Position),
        },
    };
    Ok(Scanned::served(shared, slice, positions.len(), start))
}

/// Up to `wanted` positions of `key` from `start` (at or after it forwards, before it
/// backwards), ascending: read through the runs when memory holds only the tail.
fn postings_near(
    shared: &Shared,
    key: &IndexKey,
    direction: Direction,
    start: u64,
    wanted: usize,
) -> Result<Vec<u64>> {
    let (kind, name) = Kind::of(key);
    match direction {
        Direction::Forwards => {
            let select = select_from_position(start, wanted);
            view(shared, kind, name, &select)?.at_or_after_position(start, wanted)
        }
        Direction::Backwards => {
            let select = select_before_position(start, wanted);
            view(shared, kind, name, &select)?.before_position(start, wanted)
        }
    }
}

/// Up to `wanted` positions of the stream named as the category itself from `start`,
/// ascending: memory's part of it, and what the runs hold near `start` (never the whole
/// stream, which may be huge).
fn category_stream(
    shared: &Shared,
    category: &str,
    direction: Direction,
    start: u64,
    wanted: usize,
) -> Result<Vec<u64>> {
    let Ok(name) = strata_core::StreamName::new(category) else {
        return Ok(Vec::new());
    };
    // Memory's part of the stream, and where the runs' part ends (revisions below
    // memory's first), when memory dropped older revisions into the runs.
    let (tail, runs) = {
        let index = shared.index.read();
        let entry = index.stream(&name);
        let live = entry.map_or(&[][..], |entry| live_positions(&entry.positions));
        let tail = near(live, direction, start, wanted).to_vec();
        let runs_end_revision = match entry {
            Some(entry) if entry.revisions_known => entry.first_revision,
            _ => u64::MAX,
        };
        match index.dropped_runs() {
            Some(runs) if runs_end_revision > 0 => {
                (tail, Some((Arc::clone(runs), runs_end_revision)))
            }
            _ => (tail, None),
        }
    };
    let Some((runs, end_revision)) = runs else {
        return Ok(tail);
    };
    // The runs hold the stream's older revisions, so positions before memory's.
    let forwards = direction == Direction::Forwards;
    let room = if forwards {
        wanted
    } else {
        wanted.saturating_sub(tail.len())
    };
    if room == 0 {
        return Ok(tail);
    }
    let key = name.as_str().as_bytes();
    let mut positions = runs_near(&runs, KIND_STREAM, key, end_revision, forwards, start, room)?;
    positions.extend(tail);
    if forwards {
        positions.truncate(wanted);
    }
    Ok(positions)
}

/// The part of the ascending `positions` a read from `start` needs.
fn near(positions: &[u64], direction: Direction, start: u64, wanted: usize) -> &[u64] {
    let at = positions.partition_point(|&position| position < start);
    match direction {
        Direction::Forwards => &positions[at..positions.len().min(at.saturating_add(wanted))],
        Direction::Backwards => &positions[at.saturating_sub(wanted)..at],
    }
}

/// Up to `wanted` positions in `[start, end)` from the ascending `lists`, ascending and
/// without repeats (an event may be under several keys).
pub(crate) fn merge_forwards(lists: &[&[u64]], start: u64, end: u64, wanted: usize) -> Vec<u64> {
    let mut cursors: Vec<usize> = lists
        .iter()
        .map(|list| list.partition_point(|&position| position < start))
        .collect();
    let mut merged = Vec::new();
    while merged.len() < wanted {
        let next = lists
            .iter()
            .zip(&cursors)
            .filter_map(|(list, &at)| list.get(at).copied())
            .filter(|&position| position < end)
            .min();
        let Some(next) = next else { break };
        merged.push(next);
        for (list, at) in lists.iter().zip(cursors.iter_mut()) {
            if list.get(*at) == Some(&next) {
                *at += 1;
            }
        }
    }
    merged
}

/// Up to `wanted` positions before `start` from the ascending `lists`, descending and
/// without repeats.
pub(crate) fn merge_backwards(lists: &[&[u64]], start: u64, wanted: usize) -> Vec<u64> {
    // Each cursor is one past the next position to take.
    let mut cursors: Vec<usize> = lists
        .iter()
        .map(|list| list.partition_point(|&position| position < start))
        .collect();
    let mut merged = Vec::new();
    while merged.len() < wanted {
        let next = lists
            .iter()
            .zip(&cursors)
            .filter_map(|(list, &at)| at.checked_sub(1).map(|at| list[at]))
            .max();
        let Some(next) = next else { break };
        merged.push(next);
        for (list, at) in lists.iter().zip(cursors.iter_mut()) {
            if *at > 0 && list[*at - 1] == next {
                *at -= 1;
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_are_ordered_bounded_and_without_repeats() {
        let a: &[u64] = &[64, 128, 320, 512];
        let b: &[u64] = &[128, 256, 600];
        assert_eq!(
            merge_forwards(&[a, b], 100, 600, 10),
            vec![128, 256, 320, 512]
        );
        assert_eq!(merge_forwards(&[a, b], 0, 1_000, 3), vec![64, 128, 256]);
        assert_eq!(merge_backwards(&[a, b], 512, 10), vec![320, 256, 128, 64]);
        assert_eq!(merge_backwards(&[a, b], 1_000, 2), vec![600, 512]);
        assert!(merge_forwards(&[], 0, 1_000, 5).is_empty());
    }
}
