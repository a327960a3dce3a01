//! Lookups of the stream index through memory and the sorted runs.
//!
//! While memory holds every position (the default), these answer from memory alone. With
//! `Config::index_memory_tail_only`, the index drops what each published run covers, and
//! memory holds only the log after the runs (the unindexed tail, plus the cut entries of
//! streams written on both sides): what memory lacks is read from the runs. A snapshot of
//! the runs and of the stream's tail is taken under the index's read lock, and the runs
//! are read after it is released. The heads read from the runs (where a stream's
//! revisions end, its tombstone and parsed metadata) are kept in a bounded cache, so that
//! the writer's expected-revision checks of a hot stream do not read a run per append.

use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;
use strata_core::rules::StreamHead;
use strata_core::{Result, StreamMetadata, StreamName};

use crate::index::{Index, REMOVED_POSITION, StreamEntry};
use crate::run_file::KIND_STREAM;
use crate::shared::Shared;

/// What the runs hold of a stream's head.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunsHead {
    /// The revision after the last one the runs hold (0 when none).
    pub end_revision: u64,
    pub tombstone: Option<u64>,
    pub metadata: Option<Arc<StreamMetadata>>,
}

/// The runs' heads of recently used streams, bounded: two generations, the older dropped
/// when the newer fills (as `RecentIds`). Each answer is tied to the runs it was read
/// from: one read from runs older than the published ones is not kept.
pub(crate) struct HeadCache {
    inner: Mutex<HeadCacheInner>,
}

struct HeadCacheInner {
    /// The runs generation (`Index::runs_generation`) the cached heads are true for.
    generation: u64,
    generation_capacity: usize,
    current: HashMap<StreamName, RunsHead>,
    previous: HashMap<StreamName, RunsHead>,
}

impl HeadCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(HeadCacheInner {
                generation: 0,
                generation_capacity: (capacity / 2).max(1),
                current: HashMap::new(),
                previous: HashMap::new(),
            }),
        }
    }

    fn get(&self, stream: &StreamName) -> Option<RunsHead> {
        let mut inner = self.inner.lock();
        if let Some(head) = inner.current.get(stream) {
            return Some(head.clone());
        }
        let head = inner.previous.remove(stream)?;
        inner.insert(stream.clone(), head.clone());
        Some(head)
    }

    fn insert(&self, generation: u64, stream: &StreamName, head: RunsHead) {
        let mut inner = self.inner.lock();
        if inner.generation == generation {
            inner.insert(stream.clone(), head);
        }
    }

    /// Follows the index dropping what new runs (of `generation`) cover: `forget` is
    /// called with each stream memory dropped or cut; its cached head is updated from
    /// what memory held, or removed when that cannot be told.
    pub(crate) fn follow_drop(&self, generation: u64, index: &mut Index, to: u64) {
        let mut inner = self.inner.lock();
        inner.generation = generation;
        index.drop_covered(to, |stream, entry, covered| {
            let old = inner
                .current
                .remove(stream)
                .or_else(|| inner.previous.remove(stream));
            let base = if entry.base_known {
                Some(RunsHead::default())
            } else {
                old
            };
            if let Some(base) = base {
                let head = moved_head(base, entry, covered, to);
                inner.insert(stream.clone(), head);
            }
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.current.len() + inner.previous.len()
    }
}

impl HeadCacheInner {
    fn insert(&mut self, stream: StreamName, head: RunsHead) {
        if self.current.len() >= self.generation_capacity && !self.current.contains_key(&stream) {
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
        }
        self.current.insert(stream, head);
    }
}

/// The runs' head once they also hold the first `covered` revisions of `entry`, and its
/// tombstone and metadata when they are before `to`.
fn moved_head(base: RunsHead, entry: &StreamEntry, covered: u64, to: u64) -> RunsHead {
    RunsHead {
        end_revision: if entry.revisions_known {
            base.end_revision.max(entry.first_revision + covered)
        } else {
            base.end_revision
        },
        tombstone: entry
            .tombstone_position
            .filter(|&position| position < to)
            .or(base.tombstone),
        metadata: entry
            .metadata
            .clone()
            .filter(|_| entry.metadata_covered(to))
            .or(base.metadata),
    }
}

/// A stream's head as memory has it (the whole answer while memory holds every position).
pub(crate) fn memory_head(entry: Option<&StreamEntry>) -> StreamHead {
    entry.map_or_else(StreamHead::default, |entry| StreamHead {
        last_revision: entry.last_revision(),
        tombstoned: entry.tombstone_position.is_some(),
        metadata: entry.metadata.clone(),
    })
}

/// What a lookup copies of a stream's tail under the read lock.
struct Tail {
    end_revision: Option<u64>,
    has_positions: bool,
    tombstone: Option<u64>,
    metadata: Option<Arc<StreamMetadata>>,
}

/// A stream's head as the index has it (published groups only): its last revision, whether
/// it is tombstoned, its metadata.
pub(crate) fn stream_head(shared: &Shared, stream: &StreamName) -> Result<StreamHead> {
    let (tail, runs, generation) = {
        let index = shared.index.read();
        let entry = index.stream(stream);
        let Some(runs) = index.dropped_runs() else {
            return Ok(memory_head(entry));
        };
        if let Some(entry) = entry
            && entry.base_known
            && entry.revisions_known
        {
            return Ok(memory_head(Some(entry)));
        }
        let tail = entry.map(|entry| Tail {
            end_revision: entry.end_revision(),
            has_positions: !entry.positions.is_empty(),
            tombstone: entry.tombstone_position,
            metadata: entry.metadata.clone(),
        });
        (tail, Arc::clone(runs), index.runs_generation())
    };
    // Events in the tail mean no tombstone before them; metadata in the tail is the newest.
    if let Some(tail) = &tail
        && let Some(end) = tail.end_revision
        && (tail.has_positions || tail.tombstone.is_some())
        && tail.metadata.is_some()
    {
        return Ok(StreamHead {
            last_revision: end.checked_sub(1),
            tombstoned: tail.tombstone.is_some(),
            metadata: tail.metadata.clone(),
        });
    }
    let base = match shared.head_cache.get(stream) {
        Some(base) => base,
        None => {
            let head = runs
                .head(KIND_STREAM, stream.as_str().as_bytes())?
                .unwrap_or_default();
            let base = RunsHead {
                end_revision: head.end_revision,
                tombstone: head.tombstone,
                metadata: head
                    .metadata
                    .map(|json| Arc::new(StreamMetadata::from_json_or_default(stream, &json))),
            };
            shared.head_cache.insert(generation, stream, base.clone());
            base
        }
    };
    let end = tail
        .as_ref()
        .and_then(|tail| tail.end_revision)
        .unwrap_or(0)
        .max(base.end_revision);
    let tombstone = tail
        .as_ref()
        .and_then(|tail| tail.tombstone)
        .or(base.tombstone);
    Ok(StreamHead {
        last_revision: end.checked_sub(1),
        tombstoned: tombstone.is_some(),
        metadata: tail.and_then(|tail| tail.metadata).or(base.metadata),
    })
}

/// A stream's tombstone position, if it has one.
pub(crate) fn tombstone_position(shared: &Shared, stream: &StreamName) -> Result<Option<u64>> {
    let runs = {
        let index = shared.index.read();
        let entry = index.stream(stream);
        if let Some(position) = entry.and_then(|entry| entry.tombstone_position) {
            return Ok(Some(position));
        }
        match index.dropped_runs() {
            Some(runs) if entry.is_none_or(|entry| !entry.base_known) => Arc::clone(runs),
            _ => return Ok(None),
        }
    };
    Ok(runs
        .head(KIND_STREAM, stream.as_str().as_bytes())?
        .and_then(|head| head.tombstone))
}

/// The positions of revisions `[from, to)` of `stream` that exist, ascending by revision;
/// a revision a scavenge removed reads as [`REMOVED_POSITION`] (as in memory).
pub(crate) fn positions(
    shared: &Shared,
    stream: &StreamName,
    revisions: std::ops::Range<u64>,
) -> Result<Vec<u64>> {
    let (from, to) = (revisions.start, revisions.end);
    let (tail_first, tail, runs) = {
        let index = shared.index.read();
        let entry = index.stream(stream);
        let tail_first = entry
            .filter(|entry| entry.revisions_known)
            .map(|entry| entry.first_revision);
        let tail = entry.map_or_else(Vec::new, |entry| {
            if !entry.revisions_known {
                return Vec::new();
            }
            let len = entry.positions.len() as u64;
            let start = from.max(entry.first_revision) - entry.first_revision;
            let end = to.saturating_sub(entry.first_revision).min(len);
            if start >= end {
                Vec::new()
            } else {
                entry.positions[to_usize(start)..to_usize(end)].to_vec()
            }
        });
        let runs = match index.dropped_runs() {
            Some(runs) if tail_first.is_none_or(|first| from < first) => Arc::clone(runs),
            _ => return Ok(tail),
        };
        (tail_first, tail, runs)
    };
    let runs_to = tail_first.map_or(to, |first| to.min(first));
    let mut out = Vec::new();
    if let Some((first_held, held)) =
        runs.revisions(KIND_STREAM, stream.as_str().as_bytes(), from, runs_to)?
    {
        // Revisions below the first the runs hold were removed by a scavenge.
        let removed = first_held.min(runs_to).saturating_sub(from);
        out.extend(std::iter::repeat_n(REMOVED_POSITION, to_usize(removed)));
        out.extend(held);
    }
    out.extend(tail);
    Ok(out)
}

/// The position of `revision` of `stream`, if the index has it.
pub(crate) fn position_of(
    shared: &Shared,
    stream: &StreamName,
    revision: u64,
) -> Result<Option<u64>> {
    Ok(
        positions(shared, stream, revision..revision.saturating_add(1))?
            .first()
            .copied()
            .filter(|&position| position != REMOVED_POSITION),
    )
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

#[cfg(test)]
#[path = "index_lookup_tests.rs"]
mod tests;
