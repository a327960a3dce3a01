//! The in-memory index: stream → positions by revision, tombstones, parsed metadata, and a
//! bounded cache of recent event ids for idempotent re-sends. The writer thread is its
//! only mutator; readers take the read lock briefly to copy positions out.

use std::sync::Arc;

use hashbrown::HashMap;
use strata_core::{StreamMetadata, StreamName};

use crate::format::TOMBSTONE_REVISION;
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

#[derive(Default)]
pub(crate) struct StreamEntry {
    /// `positions[r]` is the log position of revision `r`.
    pub positions: Vec<u64>,
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

impl StreamEntry {
    pub(crate) fn last_revision(&self) -> Option<u64> {
        (self.positions.len() as u64).checked_sub(1)
    }
}

#[derive(Default)]
pub(crate) struct Index {
    streams: HashMap<StreamName, StreamEntry>,
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

    pub(crate) fn stream_count(&self) -> usize {
        self.streams.len()
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

    fn entry_mut(&mut self, stream: &StreamName) -> &mut StreamEntry {
        if !self.streams.contains_key(stream) {
            self.streams.insert(stream.clone(), StreamEntry::default());
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
        let entry = self.entry_mut(stream);
        debug_assert_eq!(
            entry.positions.len() as u64,
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
        let entry = self.entry_mut(stream);
        debug_assert_eq!(
            entry.positions.len() as u64,
            first_revision,
            "revisions of a stream are dense"
        );
        entry.positions.extend_from_slice(positions);
    }

    /// Fills the revisions of `stream` below `revision` that it lacks with
    /// [`REMOVED_POSITION`]: a replay found them removed by a scavenge.
    pub(crate) fn mark_removed_below(&mut self, stream: &StreamName, revision: u64) {
        let entry = self.entry_mut(stream);
        let missing = revision.saturating_sub(entry.positions.len() as u64);
        entry.positions.extend(std::iter::repeat_n(
            REMOVED_POSITION,
            usize::try_from(missing).unwrap_or(usize::MAX),
        ));
    }

    /// Sets a stream's metadata; the next index file saves it.
    pub(crate) fn set_metadata(&mut self, stream: &StreamName, metadata: Arc<StreamMetadata>) {
        let entry = self.entry_mut(stream);
        entry.metadata = Some(metadata);
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
            self.streams
                .insert(StreamName::from_stored(stream), StreamEntry::default());
        }
        let Some(entry) = self.streams.get_mut(stream) else {
            unreachable!("inserted above");
        };
        if entry.positions.len() as u64 != first_revision {
            return false;
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
    pub(crate) fn run_entry_between(
        &self,
        kind: u8,
        name: &str,
        from: u64,
        to: u64,
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
            let (low, positions) = slice(self.secondary.positions(kind, name));
            return (!positions.is_empty()).then(|| RunEntry {
                kind: kind as u8,
                key: name.as_bytes().to_vec(),
                first_revision: low as u64,
                positions,
                ..RunEntry::default()
            });
        }
        let entry = self.streams.get(name)?;
        let live = live_positions(&entry.positions);
        let removed = entry.positions.len() - live.len();
        let (low, positions) = slice(live);
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
            let first_revision = entry.checkpointed_events as u64;
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

/// Recent event ids, bounded: two generations, the older dropped when the newer fills.
/// Re-sends with `Any` are recognised only while their ids are here, as in KurrentDB.
pub(crate) struct RecentIds {
    stream_hasher: hashbrown::DefaultHashBuilder,
    generation_capacity: usize,
    current: HashMap<u128, IdEntry>,
    previous: HashMap<u128, IdEntry>,
}

impl RecentIds {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            stream_hasher: hashbrown::DefaultHashBuilder::default(),
            generation_capacity: (capacity / 2).max(1),
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    pub(crate) fn stream_hash(&self, stream: &StreamName) -> u64 {
        use std::hash::BuildHasher;
        self.stream_hasher.hash_one(stream)
    }

    pub(crate) fn insert(&mut self, id: u128, entry: IdEntry) {
        if self.current.len() >= self.generation_capacity {
            // The oldest generation's table becomes the new current one, emptied but with
            // its room kept (made once, at the first turn): a table grown from empty again
            // would rehash all it holds at every doubling.
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
            self.current.reserve(self.generation_capacity);
        }
        self.current.insert(id, entry);
    }

    pub(crate) fn get(&self, id: u128) -> Option<&IdEntry> {
        self.current.get(&id).or_else(|| self.previous.get(&id))
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
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// docs/ENGINE.md ("Memory") states these sizes; change the docs with them.
    #[test]
    fn the_sizes_the_memory_formula_uses() {
        assert_eq!(std::mem::size_of::<(StreamName, StreamEntry)>(), 80);
        assert_eq!(std::mem::size_of::<(u128, IdEntry)>(), 48);
    }
}
