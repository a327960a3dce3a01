//! Lookups of the secondary postings (`secondary`) through memory and the sorted runs.
//!
//! While memory holds every position (the default), a view copies what a read needs
//! from memory and the runs are never read. With `Config::index_memory_tail_only`, memory
//! holds a key's positions after the published runs (from its `first_revision`); the
//! revisions before it are read from the runs. The part of memory a read needs and a
//! snapshot of the runs are taken under the index's read lock; the runs are read after
//! it is released, in slices bounded by what the read asks for (a huge category is never
//! loaded whole), seeking a position by binary search within each run's record.

use std::ops::Range;
use std::sync::Arc;

use strata_core::{Query, Result};

use crate::run_file::{Run, RunRecord, RunSet};
use crate::secondary::{
    Kind, PostingList, first_revision_after_runs, query_positions as query_lists,
};
use crate::shared::Shared;

/// One key's postings as one read sees them.
pub(crate) struct PostingsView {
    kind: Kind,
    name: Box<str>,
    /// The runs holding revisions `[0, runs_end_revision)`; `None` when memory holds them.
    runs: Option<Arc<RunSet>>,
    runs_end_revision: u64,
    /// The positions of memory the read asked for: revisions from `tail_first_revision`.
    tail_first_revision: u64,
    tail: Vec<u64>,
    len: u64,
}

/// Picks which of memory's positions a view copies, given the revision of the first.
pub(crate) type Select<'a> = &'a dyn Fn(u64, &[u64]) -> Range<usize>;

/// A view of the postings of `kind`/`name`; `select` picks the part of memory it copies.
///
/// When memory does not know the revision of the key's first position (the key was made
/// while the runs held its older positions), the runs are counted after the read lock is
/// released, and the view is taken again under it if no runs were published meanwhile
/// (memory's positions of the key only grow at the end until then).
pub(crate) fn view(
    shared: &Shared,
    kind: Kind,
    name: &str,
    select: Select<'_>,
) -> Result<PostingsView> {
    // The runs' count of the key, with the runs generation it was read from.
    let mut counted: Option<(u64, u64)> = None;
    loop {
        let index = shared.index.read();
        let memory = index.secondary.positions(kind, name);
        let first_revision = match index.secondary.first_revision(kind, name) {
            Some(first_revision) => first_revision,
            None => match counted {
                Some((generation, runs_count)) if generation == index.runs_generation() => {
                    let runs_to = index.dropped_runs().and_then(|runs| runs.covers_to());
                    first_revision_after_runs(runs_count, memory, runs_to.unwrap_or(0))
                }
                _ => {
                    let generation = index.runs_generation();
                    let runs = index.dropped_runs().map(Arc::clone);
                    drop(index);
                    let runs_count = match runs {
                        Some(runs) => runs.end_revision(kind as u8, name.as_bytes())?,
                        None => 0,
                    };
                    counted = Some((generation, runs_count));
                    continue;
                }
            },
        };
        let range = select(first_revision, memory);
        let range = range.start.min(memory.len())..range.end.min(memory.len());
        let runs = index
            .dropped_runs()
            .filter(|_| first_revision > 0)
            .map(Arc::clone);
        return Ok(PostingsView {
            kind,
            name: name.into(),
            runs,
            runs_end_revision: first_revision,
            tail_first_revision: first_revision + range.start as u64,
            tail: memory[range.start..range.end.max(range.start)].to_vec(),
            len: first_revision + memory.len() as u64,
        });
    }
}

/// Selects memory's revisions within `window(len)` (`len`: the key's revision count).
pub(crate) fn select_revisions(
    window: impl Fn(u64) -> Range<u64>,
) -> impl Fn(u64, &[u64]) -> Range<usize> {
    move |first, memory| {
        let revisions = window(first + memory.len() as u64);
        let start = revisions.start.saturating_sub(first);
        let end = revisions.end.saturating_sub(first);
        to_usize(start)..to_usize(end)
    }
}

/// Selects up to `wanted` of memory's positions at or after `start`.
pub(crate) fn select_from_position(
    start: u64,
    wanted: usize,
) -> impl Fn(u64, &[u64]) -> Range<usize> {
    move |_, memory| {
        let low = memory.partition_point(|&position| position < start);
        low..low.saturating_add(wanted)
    }
}

/// Selects up to `wanted` of memory's positions before `start` (the last ones).
pub(crate) fn select_before_position(
    start: u64,
    wanted: usize,
) -> impl Fn(u64, &[u64]) -> Range<usize> {
    move |_, memory| {
        let high = memory.partition_point(|&position| position < start);
        high.saturating_sub(wanted)..high
    }
}

/// Selects memory's positions after `after`.
pub(crate) fn select_after(after: Option<u64>) -> impl Fn(u64, &[u64]) -> Range<usize> {
    move |_, memory| {
        let low = after.map_or(0, |after| {
            memory.partition_point(|&position| position <= after)
        });
        low..memory.len()
    }
}

impl PostingsView {
    /// How many revisions the key has.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    fn key(&self) -> &[u8] {
        self.name.as_bytes()
    }

    fn runs_key(&self) -> RunsKey<'_> {
        RunsKey {
            kind: self.kind as u8,
            key: self.key(),
            end_revision: self.runs_end_revision,
        }
    }

    /// The positions of revisions `revisions` (those memory holds must have been selected).
    pub(crate) fn revisions(&self, revisions: Range<u64>) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        if let Some(runs) = &self.runs {
            let runs_to = revisions.end.min(self.runs_end_revision);
            if revisions.start < runs_to {
                out = runs.positions(self.kind as u8, self.key(), revisions.start, runs_to)?;
            }
        }
        let tail_end = self.tail_first_revision + self.tail.len() as u64;
        let start = revisions.start.max(self.tail_first_revision);
        let end = revisions.end.min(tail_end);
        if start < end {
            let offset = self.tail_first_revision;
            out.extend_from_slice(&self.tail[to_usize(start - offset)..to_usize(end - offset)]);
        }
        Ok(out)
    }

    /// Up to `wanted` positions at or after `start`, ascending (memory's selected with
    /// [`select_from_position`]).
    pub(crate) fn at_or_after_position(&self, start: u64, wanted: usize) -> Result<Vec<u64>> {
        let mut out = match &self.runs {
            Some(runs) => runs_from_position(runs, self.runs_key(), start, wanted)?,
            None => Vec::new(),
        };
        let low = self.tail.partition_point(|&position| position < start);
        let room = wanted.saturating_sub(out.len());
        out.extend(self.tail[low..].iter().take(room));
        Ok(out)
    }

    /// Up to `wanted` positions before `start`, ascending (memory's selected with
    /// [`select_before_position`]).
    pub(crate) fn before_position(&self, start: u64, wanted: usize) -> Result<Vec<u64>> {
        let high = self.tail.partition_point(|&position| position < start);
        let from_tail = &self.tail[high.saturating_sub(wanted)..high];
        let room = wanted - from_tail.len();
        let mut out = match &self.runs {
            Some(runs) if room > 0 => runs_before_position(runs, self.runs_key(), start, room)?,
            _ => Vec::new(),
        };
        out.extend_from_slice(from_tail);
        Ok(out)
    }
}

impl PostingList for &PostingsView {
    type Error = strata_core::Error;

    fn len(&self) -> u64 {
        self.len
    }

    fn after(&self, after: Option<u64>, limit: usize) -> Result<Vec<u64>> {
        PostingList::after(*self, after, limit)
    }

    fn contains(&self, position: u64) -> Result<bool> {
        PostingList::contains(*self, position)
    }
}

impl PostingList for PostingsView {
    type Error = strata_core::Error;

    fn len(&self) -> u64 {
        self.len
    }

    fn after(&self, after: Option<u64>, limit: usize) -> Result<Vec<u64>> {
        match after {
            Some(u64::MAX) => Ok(Vec::new()),
            Some(after) => self.at_or_after_position(after + 1, limit),
            None => self.at_or_after_position(0, limit),
        }
    }

    fn contains(&self, position: u64) -> Result<bool> {
        if self.tail.binary_search(&position).is_ok() {
            return Ok(true);
        }
        match &self.runs {
            Some(runs) => runs_contain(runs, self.runs_key(), position),
            None => Ok(false),
        }
    }
}

/// Positions after `after` of events that match `query` (published ones: the index
/// holds no other), ascending, at most `limit`. With memory holding every position it
/// answers under the read lock; otherwise each key's view is read after it.
pub(crate) fn query_positions(
    shared: &Shared,
    query: &Query,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<u64>> {
    {
        let index = shared.index.read();
        if index.dropped_runs().is_none() {
            return Ok(index.secondary.query_positions(query, after, limit));
        }
    }
    let select = select_after(after);
    // Each key's view is taken first: taking one may read the runs, which may fail. A
    // query names few keys: a list is enough.
    let mut views: Vec<(Kind, &str, PostingsView)> = Vec::new();
    for item in &query.items {
        let types = item
            .types
            .iter()
            .map(|name| (Kind::EventType, name.as_str()));
        let tags = item.tags.iter().map(|name| (Kind::Tag, name.as_str()));
        for (kind, name) in types.chain(tags) {
            if !views
                .iter()
                .any(|(seen, seen_name, _)| (*seen, *seen_name) == (kind, name))
            {
                views.push((kind, name, view(shared, kind, name, &select)?));
            }
        }
    }
    query_lists(query, after, limit, |kind, name| {
        views
            .iter()
            .find(|(seen, seen_name, _)| *seen == kind && *seen_name == name)
            .map(|(_, _, view)| view)
            .unwrap_or_else(|| unreachable!("every key of the query has a view"))
    })
}

/// Up to `wanted` positions of a key of the runs (`kind`, `key`) at or after `start`
/// (forwards) or before it (backwards), ascending, among its revisions below
/// `end_revision` (memory holds those from there): only the runs around `start` are read,
/// and in each the key's positions by binary search.
pub(crate) fn runs_near(
    runs: &RunSet,
    kind: u8,
    key: &[u8],
    end_revision: u64,
    forwards: bool,
    start: u64,
    wanted: usize,
) -> Result<Vec<u64>> {
    let key = RunsKey {
        kind,
        key,
        end_revision,
    };
    if forwards {
        runs_from_position(runs, key, start, wanted)
    } else {
        runs_before_position(runs, key, start, wanted)
    }
}

/// A key as the runs hold it, with the revision memory starts at: positions of the runs
/// from there on are memory's too (runs published but not yet dropped) and left out.
struct RunsKey<'a> {
    kind: u8,
    key: &'a [u8],
    end_revision: u64,
}

impl RunsKey<'_> {
    /// The record of the key in `run`, and how many of its positions are before
    /// `end_revision`.
    fn record(&self, run: &Run) -> Result<Option<(RunRecord, u64)>> {
        Ok(run.get(self.kind, self.key)?.map(|record| {
            let count = self
                .end_revision
                .saturating_sub(record.first_revision)
                .min(record.count);
            (record, count)
        }))
    }
}

/// Up to `wanted` positions of a key at or after `start` in the runs, ascending.
fn runs_from_position(
    runs: &RunSet,
    key: RunsKey<'_>,
    start: u64,
    wanted: usize,
) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for run in runs.runs() {
        if out.len() >= wanted {
            break;
        }
        if run.covers_to <= start {
            continue;
        }
        let Some((record, count)) = key.record(run)? else {
            continue;
        };
        let from = if run.covers_from >= start {
            0
        } else {
            first_at_or_after(run, &record, start)?
        };
        let take = count.saturating_sub(from).min((wanted - out.len()) as u64);
        out.extend(run.positions(&record, from, from + take)?);
    }
    Ok(out)
}

/// Up to `wanted` positions of a key before `start` in the runs (the last ones), ascending.
fn runs_before_position(
    runs: &RunSet,
    key: RunsKey<'_>,
    start: u64,
    wanted: usize,
) -> Result<Vec<u64>> {
    let mut slices: Vec<Vec<u64>> = Vec::new();
    let mut taken = 0;
    for run in runs.runs().iter().rev() {
        if taken >= wanted {
            break;
        }
        if run.covers_from >= start {
            continue;
        }
        let Some((record, count)) = key.record(run)? else {
            continue;
        };
        let end = if run.covers_to <= start {
            count
        } else {
            first_at_or_after(run, &record, start)?.min(count)
        };
        let take = end.min((wanted - taken) as u64);
        let slice = run.positions(&record, end - take, end)?;
        taken += slice.len();
        slices.push(slice);
    }
    Ok(slices.into_iter().rev().flatten().collect())
}

/// Whether the runs hold `position` under a key (only the run covering it is read).
fn runs_contain(runs: &RunSet, key: RunsKey<'_>, position: u64) -> Result<bool> {
    let all = runs.runs();
    let at = all.partition_point(|run| run.covers_to <= position);
    let Some(run) = all.get(at).filter(|run| run.covers_from <= position) else {
        return Ok(false);
    };
    let Some((record, _)) = key.record(run)? else {
        return Ok(false);
    };
    let index = first_at_or_after(run, &record, position)?;
    Ok(run.positions(&record, index, index + 1)?.first() == Some(&position))
}

/// The index in `record` of its first position at or after `position`, by binary search
/// (one read of a position per step).
fn first_at_or_after(run: &Run, record: &RunRecord, position: u64) -> Result<u64> {
    let (mut low, mut high) = (0, record.count);
    while low < high {
        let middle = low + (high - low) / 2;
        let found = run.positions(record, middle, middle + 1)?;
        match found.first() {
            Some(&at) if at < position => low = middle + 1,
            _ => high = middle,
        }
    }
    Ok(low)
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

#[cfg(test)]
#[path = "secondary_memory_tests.rs"]
mod tests;
