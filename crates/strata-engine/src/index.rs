//! The in-memory index: stream → positions by revision, tombstones, parsed metadata, and a
//! bounded cache of recent event ids for idempotent re-sends. The writer thread is its
//! only mutator; readers take the read lock briefly to copy positions out.

use std::sync::Arc;

use hashbrown::HashMap;
use strata_core::{StreamMetadata, StreamName};

use crate::format::TOMBSTONE_REVISION;
use crate::run_file::RunSet;
use crate::secondary::{RunKeys, SecondaryIndexes};

/// Stands for a revision whose event a scavenge removed, when the index was rebuilt from a
/// log that no longer holds it (an index kept since before the scavenge still holds the
/// old position, which reads as removed). Reads leave it out.
pub(crate) const REMOVED_POSITION: u64 = u64::MAX;

/// A stream's positions without the [`REMOVED_POSITION`] entries (always a prefix: a
/// scavenge removes the revisions below a floor).
pub(crate) fn live_positions(positions: &[u64]) -> &[u64] {
    &positions[positions.partition_point(|&position| position == REMOVED_POSITION)..]
}

pub(crate) struct StreamEntry {
    /// `positions[i]` is the log position of revision `first_revision + i`.
    pub positions: Vec<u64>,
    /// The revision of `positions[0]`: 0 unless the revisions before it were dropped into
    /// the sorted runs (`Config::index_memory_tail_only`).
    pub first_revision: u64,
    /// Where the entry's revisions end is known from memory (false for an entry made by a
    /// tombstone or metadata after older revisions went to the runs).
    pub revisions_known: bool,
    /// The tombstone and metadata here are the stream's whole story (nothing older of the
    /// stream was dropped into the runs).
    pub base_known: bool,
    /// The newest indexed log position when the metadata was set: the metadata is in the
    /// runs once they cover it.
    metadata_at: u64,
    pub tombstone_position: Option<u64>,
    /// Parsed from the last event of `$$stream`.
    pub metadata: Option<Arc<StreamMetadata>>,
    /// How many positions (and whether the tombstone and the metadata) are already in
    /// index files.
    pub checkpointed_events: usize,
    pub checkpointed_tombstone: bool,
    pub checkpointed_metadata: bool,
    /// Listed in `Index::dirty`.
    listed_dirty: bool,
}

impl Default for StreamEntry {
    fn default() -> Self {
        Self {
            positions: Vec::new(),
            first_revision: 0,
            revisions_known: true,
            base_known: true,
            metadata_at: 0,
            tombstone_position: None,
            metadata: None,
            checkpointed_events: 0,
            checkpointed_tombstone: false,
            checkpointed_metadata: false,
            listed_dirty: false,
        }
    }
}

impl StreamEntry {
    /// The last revision as memory knows it (the whole answer unless the index dropped
    /// older revisions into the runs: see `index_lookup`).
    pub(crate) fn last_revision(&self) -> Option<u64> {
        (self.first_revision + self.positions.len() as u64).checked_sub(1)
    }

    /// The revision after the last one memory holds, when memory knows it.
    pub(crate) fn end_revision(&self) -> Option<u64> {
        self.revisions_known
            .then(|| self.first_revision + self.positions.len() as u64)
    }

    /// Whether runs ending at `to` hold the entry's metadata (or it has none).
    pub(crate) fn metadata_covered(&self, to: u64) -> bool {
        self.metadata.is_none() || self.metadata_at < to
    }

    /// The position of `revision`, when memory holds it.
    pub(crate) fn position(&self, revision: u64) -> Option<u64> {
        let offset = revision.checked_sub(self.first_revision)?;
        self.positions.get(usize::try_from(offset).ok()?).copied()
    }
}

#[derive(Default)]
pub(crate) struct Index {
    streams: HashMap<StreamName, StreamEntry>,
    /// The sorted runs published by the index saver (a snapshot; lookups clone it).
    runs: Arc<RunSet>,
    /// Where the runs end when memory dropped what they cover (`None`: memory holds every
    /// position, the runs are a second copy).
    dropped_to: Option<u64>,
    /// The open counted index files the runs hold (`count_in_runs`): a stream the later
    /// files continue has its older revisions there, before `dropped_to` is set.
    counted_in_runs: bool,
    /// Streams that got a revision 0 (the stream count once entries are dropped).
    streams_started: u64,
    runs_generation: u64,
    /// Streams changed since the last index file.
    dirty: Vec<StreamName>,
    last_event_position: Option<u64>,
    events_total: u64,
    /// The tombstones of user streams by position (`EventStore::read_tombstones`).
    tombstones: std::collections::BTreeMap<u64, StreamName>,
    pub(crate) secondary: SecondaryIndexes,
}

impl Index {
    /// An empty index; `system_streams` says whether it keeps the secondary indexes.
    pub(crate) fn new(system_streams: bool) -> Self {
        Self {
            secondary: SecondaryIndexes::new(system_streams),
            ..Self::default()
        }
    }

    /// The entry of a stream, looked up by `StreamName` or by `&str`.
    pub(crate) fn stream<Name>(&self, stream: &Name) -> Option<&StreamEntry>
    where
        Name: std::hash::Hash + Eq + ?Sized,
        StreamName: std::borrow::Borrow<Name>,
    {
        self.streams.get(stream)
    }

    pub(crate) fn streams(&self) -> impl Iterator<Item = (&StreamName, &StreamEntry)> {
        self.streams.iter()
    }

    /// The number of streams: the entries when memory holds them all, else the streams
    /// that got a revision 0.
    pub(crate) fn stream_count(&self) -> usize {
        match self.dropped_to {
            None => self.streams.len(),
            Some(_) => usize::try_from(self.streams_started).unwrap_or(usize::MAX),
        }
    }

    /// The runs memory relies on, when it dropped what they cover.
    pub(crate) fn dropped_runs(&self) -> Option<&Arc<RunSet>> {
        self.dropped_to.map(|_| &self.runs)
    }

    /// Counts the runs published, so that a cache of their answers knows their age.
    pub(crate) fn runs_generation(&self) -> u64 {
        self.runs_generation
    }

    /// Publishes the runs the saver wrote (a snapshot of its set). The same runs again
    /// (the saver's first publish after an open that started from them) are no new
    /// generation: answers read from them stay true, and a scavenge that decided floors
    /// on them need not defer its segments.
    pub(crate) fn set_runs(&mut self, runs: Arc<RunSet>) {
        let same = self.runs_generation > 0 && self.runs.same_runs(&runs);
        self.runs = runs;
        if !same {
            self.runs_generation += 1;
        }
    }

    /// Drops from memory what the published runs cover (they end at `to`): positions
    /// below `to`, and whole entries whose tombstone and metadata they hold too. Calls
    /// `forgotten` with each entry dropped or cut, so that caches of the runs' heads can
    /// follow. Memory then holds the log after `to` (the unindexed tail).
    pub(crate) fn drop_covered(
        &mut self,
        to: u64,
        mut forgotten: impl FnMut(&StreamName, &StreamEntry, u64),
    ) {
        if self.runs.covers_to() != Some(to) {
            return;
        }
        self.dropped_to = Some(to);
        self.streams.retain(|name, entry| {
            let removed = entry.positions.len() - live_positions(&entry.positions).len();
            let covered = removed
                + live_positions(&entry.positions).partition_point(|&position| position < to);
            let tombstone_covered = entry
                .tombstone_position
                .is_none_or(|position| position < to);
            let metadata_covered = entry.metadata_covered(to);
            if covered == entry.positions.len() && tombstone_covered && metadata_covered {
                forgotten(name, entry, covered as u64);
                return false;
            }
            if covered == 0 {
                return true;
            }
            forgotten(name, entry, covered as u64);
            entry.positions.drain(..covered);
            entry.positions.shrink_to_fit();
            entry.first_revision += covered as u64;
            entry.checkpointed_events = entry.checkpointed_events.saturating_sub(covered);
            true
        });
        self.streams.shrink_to_fit();
        self.secondary.drop_covered(to);
        let dirty = std::mem::take(&mut self.dirty);
        self.dirty = dirty
            .into_iter()
            .filter(|name| self.streams.contains_key(name))
            .collect();
    }

    pub(crate) fn events_total(&self) -> u64 {
        self.events_total
    }

    /// Positions of the tombstones of user streams after `after` and at or before `up_to`,
    /// in log order, at most `max`.
    pub(crate) fn tombstones_between(
        &self,
        after: Option<u64>,
        up_to: u64,
        max: usize,
    ) -> Vec<u64> {
        use std::ops::Bound;
        if after.is_some_and(|after| after >= up_to) {
            return Vec::new();
        }
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.tombstones
            .range((from, Bound::Included(up_to)))
            .take(max)
            .map(|(&position, _)| position)
            .collect()
    }

    pub(crate) fn last_event_position(&self) -> Option<u64> {
        self.last_event_position
    }

    /// A new entry: whole unless memory dropped older parts of streams into the runs;
    /// then an entry made by a tombstone or metadata reads where the stream's revisions
    /// end from the runs (rare: a cold stream's metadata or tombstone), so that what is
    /// saved of it continues the stream.
    fn new_entry(&self, stream: &StreamName, first_revision: Option<u64>) -> StreamEntry {
        if self.dropped_to.is_none() {
            return StreamEntry::default();
        }
        let (first_revision, revisions_known) = match first_revision {
            Some(revision) => (revision, true),
            None => match self
                .runs
                .head(crate::run_file::KIND_STREAM, stream.as_str().as_bytes())
            {
                Ok(head) => (head.map_or(0, |head| head.end_revision), true),
                Err(error) => {
                    tracing::warn!(%error, %stream, "cannot read a stream's head from the index runs");
                    (0, false)
                }
            },
        };
        StreamEntry {
            first_revision,
            revisions_known,
            base_known: false,
            ..StreamEntry::default()
        }
    }

    fn entry_mut(&mut self, stream: &StreamName) -> &mut StreamEntry {
        self.entry_at(stream, None)
    }

    /// The entry of `stream`, made (starting at `first_revision` when given) if missing.
    fn entry_at(&mut self, stream: &StreamName, first_revision: Option<u64>) -> &mut StreamEntry {
        if !self.streams.contains_key(stream) {
            let entry = self.new_entry(stream, first_revision);
            self.streams.insert(stream.clone(), entry);
        }
        let entry = self
            .streams
            .get_mut(stream)
            .unwrap_or_else(|| unreachable!("inserted above"));
        if !entry.listed_dirty {
            entry.listed_dirty = true;
            self.dirty.push(stream.clone());
        }
        entry
    }

    /// Records an event at `revision`; revisions arrive in order per stream.
    pub(crate) fn add_event(&mut self, stream: &StreamName, revision: u64, position: u64) {
        self.last_event_position = Some(position);
        self.events_total += 1;
        if revision == TOMBSTONE_REVISION {
            self.entry_mut(stream).tombstone_position = Some(position);
            if !stream.is_system() {
                self.tombstones.insert(position, stream.clone());
            }
            return;
        }
        if revision == 0 {
            self.streams_started += 1;
        }
        let entry = self.entry_at(stream, Some(revision));
        debug_assert_eq!(
            entry.first_revision + entry.positions.len() as u64,
            revision,
            "revisions are dense"
        );
        entry.positions.push(position);
    }

    /// Records consecutive revisions from `first_revision` of one stream, and indexes them
    /// under `keys` in the secondary indexes.
    pub(crate) fn add_events(
        &mut self,
        stream: &StreamName,
        first_revision: u64,
        positions: &[u64],
        keys: &RunKeys,
    ) {
        let Some(&last_position) = positions.last() else {
            return;
        };
        self.secondary
            .add_run(stream.as_str(), first_revision, positions, keys);
        if first_revision == TOMBSTONE_REVISION {
            self.add_event(stream, first_revision, last_position);
            return;
        }
        self.last_event_position = Some(last_position);
        self.events_total += positions.len() as u64;
        if first_revision == 0 {
            self.streams_started += 1;
        }
        let entry = self.entry_at(stream, Some(first_revision));
        debug_assert_eq!(
            entry.first_revision + entry.positions.len() as u64,
            first_revision,
            "revisions of a stream are dense"
        );
        entry.positions.extend_from_slice(positions);
    }

    /// Fills the revisions of `stream` below `revision` that it lacks with
    /// [`REMOVED_POSITION`]: a replay found them removed by a scavenge.
    pub(crate) fn mark_removed_below(&mut self, stream: &StreamName, revision: u64) {
        let entry = self.entry_mut(stream);
        let missing = revision.saturating_sub(entry.first_revision + entry.positions.len() as u64);
        entry.positions.extend(std::iter::repeat_n(
            REMOVED_POSITION,
            usize::try_from(missing).unwrap_or(usize::MAX),
        ));
    }

    /// Sets a stream's metadata; the next index file saves it.
    pub(crate) fn set_metadata(&mut self, stream: &StreamName, metadata: Arc<StreamMetadata>) {
        let at = self.last_event_position.unwrap_or(0);
        let entry = self.entry_mut(stream);
        entry.metadata = Some(metadata);
        entry.metadata_at = at;
        entry.checkpointed_metadata = false;
    }

    /// Sets metadata loaded from an index file (already saved).
    pub(crate) fn load_metadata(&mut self, stream: &str, metadata: Arc<StreamMetadata>) {
        if !self.streams.contains_key(stream) {
            self.streams
                .insert(StreamName::from_stored(stream), StreamEntry::default());
        }
        if let Some(entry) = self.streams.get_mut(stream) {
            entry.metadata = Some(metadata);
            entry.checkpointed_metadata = true;
        }
    }

    /// Adds the counts of an index file the runs hold, without loading it (a user
    /// stream's tombstone is kept: `tombstones` stays whole in memory).
    pub(crate) fn count_in_runs(
        &mut self,
        streams_started: u64,
        events: u64,
        newest_position: Option<u64>,
        tombstones: &[(u64, String)],
    ) {
        for (position, stream) in tombstones {
            self.tombstones
                .insert(*position, StreamName::from_stored(stream));
        }
        self.secondary.expect_older_in_runs();
        self.counted_in_runs = true;
        self.streams_started += streams_started;
        self.events_total += events;
        self.last_event_position = self.last_event_position.max(newest_position);
    }

    /// Starts from runs that hold the streams up to `to` (the open counted, not loaded,
    /// the index files they cover).
    pub(crate) fn start_after_runs(&mut self, runs: Arc<RunSet>, to: u64) {
        self.set_runs(runs);
        self.dropped_to = Some(to);
    }

    /// The revision the next event of `stream` must have (reading the runs when memory
    /// holds nothing of the stream and dropped older parts).
    pub(crate) fn next_revision(&self, stream: &StreamName) -> strata_core::Result<u64> {
        if let Some(entry) = self.streams.get(stream)
            && let Some(end) = entry.end_revision()
        {
            return Ok(end);
        }
        if self.dropped_to.is_none() {
            return Ok(0);
        }
        Ok(self
            .runs
            .head(crate::run_file::KIND_STREAM, stream.as_str().as_bytes())?
            .map_or(0, |head| head.end_revision))
    }

    /// Makes room for `additional` more streams.
    pub(crate) fn reserve_streams(&mut self, additional: usize) {
        let _ = self.streams.try_reserve(additional);
    }

    /// Adds positions loaded from an index file. Returns false when they do not continue
    /// the stream where it stands (the file does not belong after the previous ones).
    pub(crate) fn load_positions(
        &mut self,
        stream: &str,
        first_revision: u64,
        positions: &[u64],
        tombstone_position: Option<u64>,
    ) -> bool {
        if !self.streams.contains_key(stream) {
            // Older revisions may be in the runs (an open after runs that end earlier).
            let mut entry = StreamEntry::default();
            if self.dropped_to.is_some() || self.counted_in_runs {
                entry.first_revision = first_revision;
                entry.base_known = false;
            }
            self.streams.insert(StreamName::from_stored(stream), entry);
        }
        let Some(entry) = self.streams.get_mut(stream) else {
            unreachable!("inserted above");
        };
        if entry.first_revision + entry.positions.len() as u64 != first_revision {
            return false;
        }
        if first_revision == 0 && !positions.is_empty() {
            self.streams_started += 1;
        }
        if entry.positions.is_empty() {
            entry.positions = positions.to_vec();
        } else {
            entry.positions.extend_from_slice(positions);
        }
        entry.checkpointed_events = entry.positions.len();
        if tombstone_position.is_some() {
            entry.tombstone_position = tombstone_position;
            entry.checkpointed_tombstone = true;
        }
        if let Some(position) = tombstone_position
            && !stream.starts_with('$')
        {
            self.tombstones
                .insert(position, StreamName::from_stored(stream));
        }
        self.events_total += positions.len() as u64 + u64::from(tombstone_position.is_some());
        let newest = positions.last().copied().max(tombstone_position);
        self.last_event_position = self.last_event_position.max(newest);
        true
    }

    /// Every key of the index (streams, then secondary keys) as a run's kind and name,
    /// for [`Index::run_entry_between`].
    pub(crate) fn run_keys(&self) -> Vec<(u8, Arc<str>)> {
        self.streams
            .keys()
            .map(|name| (crate::run_file::KIND_STREAM, Arc::from(name.as_str())))
            .chain(
                self.secondary
                    .iter()
                    .map(|(kind, name, _)| (kind as u8, Arc::from(name))),
            )
            .collect()
    }

    /// What the index holds of one key in log range `[from, to)`, as a run's entry: its
    /// positions in the range, a tombstone in it, and a stream's metadata when its
    /// metadata stream has an event in it (the metadata known now, which later runs set
    /// again if it changed after `to`). `None` when the range holds nothing of the key.
    /// Rebuilds runs that were lost or damaged, from an index that covers the range.
    /// `runs_count` gives how many positions of a secondary key the runs ending at `from`
    /// hold, for the keys whose revisions memory does not know
    /// ([`SecondaryIndexes::keys_after_runs`]).
    pub(crate) fn run_entry_between(
        &self,
        kind: u8,
        name: &str,
        from: u64,
        to: u64,
        runs_count: impl Fn(crate::secondary::Kind, &str) -> u64,
    ) -> Option<crate::run_file::RunEntry> {
        use crate::run_file::{KIND_STREAM, RunEntry};
        let in_range = |position: u64| (from..to).contains(&position);
        let slice = |positions: &[u64]| {
            let low = positions.partition_point(|&position| position < from);
            let high = positions.partition_point(|&position| position < to);
            (low, positions[low..high].to_vec())
        };
        if kind != KIND_STREAM {
            let kind = crate::secondary::Kind::from_byte(kind)?;
            let memory = self.secondary.positions(kind, name);
            let (low, positions) = slice(memory);
            let first_revision = self
                .secondary
                .first_revision(kind, name)
                .unwrap_or_else(|| {
                    crate::secondary::first_revision_after_runs(
                        runs_count(kind, name),
                        memory,
                        from,
                    )
                });
            return (!positions.is_empty()).then(|| RunEntry {
                kind: kind as u8,
                key: name.as_bytes().to_vec(),
                first_revision: first_revision + low as u64,
                positions,
                ..RunEntry::default()
            });
        }
        let entry = self.streams.get(name)?;
        let live = live_positions(&entry.positions);
        let removed = entry.positions.len() - live.len();
        let (low, positions) = slice(live);
        let removed = removed + usize::try_from(entry.first_revision).unwrap_or(usize::MAX);
        let tombstone = entry
            .tombstone_position
            .filter(|&position| in_range(position));
        let metadata = entry
            .metadata
            .as_ref()
            .filter(|_| {
                self.streams
                    .get(format!("$${name}").as_str())
                    .is_some_and(|meta| {
                        let live = live_positions(&meta.positions);
                        let low = live.partition_point(|&position| position < from);
                        live.get(low).is_some_and(|&position| position < to)
                    })
            })
            .map(|metadata| metadata.to_json());
        // A stream whose every event a scavenge removed still says where its revisions
        // end (a record without positions).
        let all_removed = live.is_empty() && removed > 0;
        if positions.is_empty() && tombstone.is_none() && metadata.is_none() && !all_removed {
            return None;
        }
        Some(RunEntry {
            kind: KIND_STREAM,
            key: name.as_bytes().to_vec(),
            first_revision: (removed + low) as u64,
            positions,
            tombstone,
            metadata,
        })
    }

    /// Takes the streams changed since the last call, with what is not yet saved.
    pub(crate) fn take_unsaved(&mut self) -> Vec<UnsavedStream> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut unsaved = Vec::with_capacity(dirty.len());
        for stream in dirty {
            let Some(entry) = self.streams.get_mut(&stream) else {
                continue;
            };
            entry.listed_dirty = false;
            let first_revision = entry.first_revision + entry.checkpointed_events as u64;
            let positions = entry.positions[entry.checkpointed_events..].to_vec();
            let tombstone_position = entry
                .tombstone_position
                .filter(|_| !entry.checkpointed_tombstone);
            let metadata = entry
                .metadata
                .clone()
                .filter(|_| !entry.checkpointed_metadata);
            entry.checkpointed_events = entry.positions.len();
            entry.checkpointed_tombstone = entry.tombstone_position.is_some();
            entry.checkpointed_metadata = entry.metadata.is_some();
            if positions.is_empty() && tombstone_position.is_none() && metadata.is_none() {
                continue;
            }
            unsaved.push(UnsavedStream {
                stream,
                first_revision,
                positions,
                tombstone_position,
                metadata,
            });
        }
        unsaved
    }
}

/// What one stream adds to the next index file.
pub(crate) struct UnsavedStream {
    pub stream: StreamName,
    pub first_revision: u64,
    pub positions: Vec<u64>,
    pub tombstone_position: Option<u64>,
    /// The stream's metadata, when it changed since the last file.
    pub metadata: Option<Arc<StreamMetadata>>,
}

/// Where an event id was written. The stream is kept as a hash keyed per process (no
/// allocation, no reference count); together with the 128-bit id a false match is out of
/// reach even for a client choosing names on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdEntry {
    pub stream_hash: u64,
    pub revision: u64,
    pub position: u64,
}

/// How many generations' worth of ids `RecentIds` holds at most in its newer generation
/// while the id files lag.
const RECENT_IDS_GROWTH_MAX: usize = 8;

/// Recent event ids: two generations, the older dropped when the newer fills. Without the
/// event id index, re-sends with `Any` are recognised only while their ids are here, as
/// in KurrentDB. With it (`forget_only_below`), a generation is dropped only once the id
/// files cover its newest position, so that no id is in neither: until then the current
/// generation grows past its size (up to [`RECENT_IDS_GROWTH_MAX`] times).
pub(crate) struct RecentIds {
    stream_hasher: hashbrown::DefaultHashBuilder,
    generation_capacity: usize,
    current: HashMap<u128, IdEntry>,
    previous: HashMap<u128, IdEntry>,
    /// The newest position in each generation.
    current_newest: Option<u64>,
    previous_newest: Option<u64>,
    /// Where the id files end, when they back these ids.
    files_cover_to: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl RecentIds {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            stream_hasher: hashbrown::DefaultHashBuilder::default(),
            generation_capacity: (capacity / 2).max(1),
            current: HashMap::new(),
            previous: HashMap::new(),
            current_newest: None,
            previous_newest: None,
            files_cover_to: None,
        }
    }

    /// From now on a generation is forgotten only once `covered_to` (where the id files
    /// end) is past its newest position.
    pub(crate) fn forget_only_below(
        &mut self,
        covered_to: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) {
        self.files_cover_to = Some(covered_to);
    }

    pub(crate) fn stream_hash(&self, stream: &StreamName) -> u64 {
        use std::hash::BuildHasher;
        self.stream_hasher.hash_one(stream)
    }

    /// Whether the older generation may be forgotten: once the id files cover it, or
    /// when the newer one grew to [`RECENT_IDS_GROWTH_MAX`] generations while the files
    /// lag (a bound on memory; re-sends of the forgotten ids are then recognised once the
    /// files reach them).
    fn may_forget_previous(&self) -> bool {
        match (&self.files_cover_to, self.previous_newest) {
            (Some(covered_to), Some(newest)) => {
                let covered = newest < covered_to.load(std::sync::atomic::Ordering::Acquire);
                if !covered
                    && self.current.len() >= self.generation_capacity * RECENT_IDS_GROWTH_MAX
                {
                    tracing::warn!(
                        ids = self.current.len(),
                        "the event id files lag far behind the recent ids: the oldest are forgotten before the files cover them"
                    );
                    return true;
                }
                covered
            }
            _ => true,
        }
    }

    pub(crate) fn insert(&mut self, id: u128, entry: IdEntry) {
        if self.current.len() >= self.generation_capacity && self.may_forget_previous() {
            // The oldest generation's table becomes the new current one, emptied but with
            // its room kept (made once, at the first turn): a table grown from empty again
            // would rehash all it holds at every doubling.
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
            self.current.reserve(self.generation_capacity);
            self.previous_newest = self.current_newest.take();
        }
        self.current_newest = self.current_newest.max(Some(entry.position));
        self.current.insert(id, entry);
    }

    pub(crate) fn get(&self, id: u128) -> Option<&IdEntry> {
        self.current.get(&id).or_else(|| self.previous.get(&id))
    }

    /// How many ids are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> StreamName {
        StreamName::new(text).unwrap()
    }

    #[test]
    fn unsaved_positions_are_taken_once() {
        let mut index = Index::default();
        index.add_event(&name("a"), 0, 64);
        index.add_event(&name("a"), 1, 128);
        index.add_event(&name("b"), 0, 192);
        let mut first = index.take_unsaved();
        first.sort_by(|x, y| x.stream.cmp(&y.stream));
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].positions, vec![64, 128]);
        assert!(index.take_unsaved().is_empty());
        index.add_event(&name("a"), 2, 256);
        index.add_event(&name("a"), TOMBSTONE_REVISION, 320);
        let second = index.take_unsaved();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].first_revision, 2);
        assert_eq!(second[0].positions, vec![256]);
        assert_eq!(second[0].tombstone_position, Some(320));
    }

    #[test]
    fn loaded_positions_must_continue_the_stream() {
        let mut index = Index::default();
        assert!(index.load_positions("a", 0, &[64, 128], None));
        assert!(!index.load_positions("a", 5, &[900], None));
        assert!(index.load_positions("a", 2, &[900], None));
        assert_eq!(index.stream(&name("a")).unwrap().last_revision(), Some(2));
        assert!(index.take_unsaved().is_empty());
    }

    #[test]
    fn recent_ids_forget_the_oldest_generation() {
        let mut ids = RecentIds::new(4);
        let stream_hash = ids.stream_hash(&name("s"));
        let entry = |revision| IdEntry {
            stream_hash,
            revision,
            position: revision * 64,
        };
        for id in 0..6u128 {
            ids.insert(id, entry(id as u64));
        }
        assert!(ids.get(0).is_none());
        assert_eq!(ids.get(5).map(|found| found.revision), Some(5));
    }

    /// The default's generations each fit a table of 2^19 buckets (48-byte entries:
    /// ≈ 26 MB a table), also once the tables have turned over.
    #[test]
    fn recent_ids_of_the_default_size_stay_in_tables_of_half_a_million_buckets() {
        let max = crate::config::RECENT_EVENT_IDS_DEFAULT;
        assert_eq!(max, crate::Config::default().recent_event_ids_max);
        let mut ids = RecentIds::new(max);
        for id in 0..(max as u64 * 3 / 2) {
            let entry = IdEntry {
                stream_hash: 0,
                revision: id,
                position: id,
            };
            ids.insert(u128::from(id), entry);
        }
        assert!(ids.len() >= max / 2);
        assert!(
            ids.current.capacity() <= 458_752,
            "{}",
            ids.current.capacity()
        );
        assert!(
            ids.previous.capacity() <= 458_752,
            "{}",
            ids.previous.capacity()
        );
    }

    #[test]
    fn recent_ids_keep_a_generation_until_the_id_files_cover_it() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let covered_to = Arc::new(AtomicU64::new(0));
        let mut ids = RecentIds::new(4);
        ids.forget_only_below(Arc::clone(&covered_to));
        let stream_hash = ids.stream_hash(&name("s"));
        let entry = |revision: u64| IdEntry {
            stream_hash,
            revision,
            position: 64 + revision * 64,
        };
        for id in 0..10u128 {
            ids.insert(id, entry(id as u64));
        }
        assert_eq!(
            ids.len(),
            10,
            "nothing is forgotten before the files cover it"
        );
        // The files now cover ids 0 and 1 only: the older generation (0, 1) goes at the
        // next turn, the grown one (2..=9) stays until covered too.
        covered_to.store(64 + 2 * 64, Ordering::Release);
        ids.insert(10, entry(10));
        assert!(ids.get(0).is_none() && ids.get(1).is_none());
        assert!((2..=10).all(|id| ids.get(id).is_some()));
        ids.insert(11, entry(11));
        assert!(ids.get(2).is_some(), "not covered yet");
        covered_to.store(u64::MAX, Ordering::Release);
        ids.insert(12, entry(12));
        assert!(ids.get(2).is_none() && ids.get(12).is_some());
        // Files that never catch up: memory is bounded all the same.
        covered_to.store(0, Ordering::Release);
        for id in 100..400u128 {
            ids.insert(id, entry(id as u64));
        }
        assert!(
            ids.len() <= 2 * 2 * RECENT_IDS_GROWTH_MAX,
            "{} ids",
            ids.len()
        );
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// docs/ENGINE.md ("Memory") states these sizes; change the docs with them.
    #[test]
    fn the_sizes_the_memory_formula_uses() {
        assert_eq!(std::mem::size_of::<(StreamName, StreamEntry)>(), 96);
        assert_eq!(std::mem::size_of::<(u128, IdEntry)>(), 48);
    }
}
