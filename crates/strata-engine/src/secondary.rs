//! Secondary indexes: the positions of the events under each category, event type,
//! correlation id, and of each stream's first event (`strata_core::system_streams`). They
//! serve `$ce-…`, `$et-…`, `$bc-…`, `$streams` and `$category-…` reads and `$idx-` filtered
//! `$all` reads. Like the stream index they live in memory, are saved in the index files
//! and are filled by the syncer as groups are published. With
//! `Config::index_memory_tail_only`, memory keeps only the keys with positions after the
//! published runs, and only those positions; `postings_lookup` reads the rest from the
//! runs, which also say how many revisions a key has before memory's.

use std::sync::Arc;

use hashbrown::HashMap;
use strata_core::system_streams::{IndexKey, LINK_EVENT_TYPE, category_of, correlation_id};

/// The positions under one key, ascending (log order): `positions[i]` is index revision
/// `first_revision + i`.
pub(crate) struct Postings {
    pub positions: Vec<u64>,
    /// The revision of `positions[0]`: 0 unless positions before it were dropped into the
    /// sorted runs (`Config::index_memory_tail_only`). `None` when the runs say it: the
    /// key was made while the runs held older parts of the index, and an append does not
    /// read the runs to learn how many positions they hold of it
    /// ([`first_revision_after_runs`]).
    pub first_revision: Option<u64>,
    /// How many positions are already in index files.
    checkpointed: usize,
    /// Listed in `SecondaryIndexes::dirty`.
    listed_dirty: bool,
}

impl Postings {
    fn new(first_revision: Option<u64>) -> Self {
        Self {
            positions: Vec::new(),
            first_revision,
            checkpointed: 0,
            listed_dirty: false,
        }
    }
}

/// The revision of a key's first position in memory (`memory`) when memory does not
/// know it: the runs hold `runs_count` positions of the key and cover the log up to
/// `runs_to`, and memory holds every position of the key from where it dropped what runs
/// covered (at or before `runs_to`), so the positions of memory before `runs_to` are the
/// runs' last ones.
pub(crate) fn first_revision_after_runs(runs_count: u64, memory: &[u64], runs_to: u64) -> u64 {
    let in_both = memory.partition_point(|&position| position < runs_to) as u64;
    runs_count.saturating_sub(in_both)
}

/// What the secondary indexes need of a run of consecutive events of one stream: each
/// event's type, and the correlation ids some carry (by index in the run). Empty types for
/// records that are indexed under nothing (system streams, tombstones).
#[derive(Default, Clone, Debug)]
pub(crate) struct RunKeys {
    pub event_types: Vec<Arc<str>>,
    pub correlations: Vec<(usize, Arc<str>)>,
    /// The DCB tags some events carry (`$tags`), by index in the run.
    pub tags: Vec<(usize, Arc<str>)>,
}

impl RunKeys {
    /// Room for the keys of `events` events (the vectors otherwise grow step by step,
    /// copying, in every run of the writer).
    pub(crate) fn with_capacity(events: usize) -> RunKeys {
        RunKeys {
            event_types: Vec::with_capacity(events),
            ..RunKeys::default()
        }
    }

    /// The keys of one event.
    pub(crate) fn of_event(
        names: &mut KeyNames,
        stream: &str,
        revision: u64,
        event_type: &str,
        metadata: &[u8],
    ) -> RunKeys {
        let mut keys = RunKeys::default();
        keys.push(names, stream, revision, event_type, metadata);
        keys
    }

    /// Adds the next event of the run. Records of system streams and tombstones are
    /// indexed under nothing: their runs stay empty.
    pub(crate) fn push(
        &mut self,
        names: &mut KeyNames,
        stream: &str,
        revision: u64,
        event_type: &str,
        metadata: &[u8],
    ) {
        if revision == crate::format::TOMBSTONE_REVISION || !is_indexed_stream(stream) {
            return;
        }
        let at = self.event_types.len();
        let read = names.metadata_keys(metadata);
        if let Some(id) = &read.correlation {
            if self.correlations.capacity() == 0 {
                // Ids come mostly on every event of a run or on none.
                self.correlations
                    .reserve(self.event_types.capacity().saturating_sub(at).max(1));
            }
            self.correlations.push((at, id.clone()));
        }
        self.tags
            .extend(read.tags.iter().map(|tag| (at, tag.clone())));
        self.event_types.push(names.intern(event_type));
    }
}

/// User streams, and the metadata streams of user streams (`$$S`), are indexed; other
/// system streams are not.
fn is_indexed_stream(stream: &str) -> bool {
    match stream.strip_prefix("$$") {
        Some(described) => !described.is_empty() && !described.starts_with('$'),
        None => !stream.starts_with('$'),
    }
}

/// Shares allocations among the runs' keys: one per event type, and the keys read from
/// the last metadata. The events of one command mostly carry the same metadata, and
/// reading `$correlationId` out of it (a JSON parse) is the dearest part of an event's
/// keys: the same bytes are not read twice in a row.
#[derive(Default)]
pub(crate) struct KeyNames {
    names: hashbrown::HashSet<Arc<str>>,
    /// The type interned last: consecutive events mostly share it, and comparing spares
    /// hashing the name.
    last: Option<Arc<str>>,
    /// The keys of the last metadata read, when it was at most
    /// [`METADATA_REMEMBERED_BYTES_MAX`] bytes.
    last_metadata: Option<MetadataKeys>,
    /// The keys of metadata too long to remember, or of metadata without keys.
    scratch: MetadataKeys,
}

/// The keys one event's metadata gives: `strata_core::system_streams::correlation_id` and
/// `strata_core::tags_of` of `metadata`.
#[derive(Default)]
struct MetadataKeys {
    metadata: Vec<u8>,
    correlation: Option<Arc<str>>,
    tags: Vec<Arc<str>>,
}

impl MetadataKeys {
    fn read(metadata: &[u8]) -> MetadataKeys {
        MetadataKeys {
            metadata: Vec::new(),
            correlation: correlation_id(metadata).map(Arc::from),
            tags: strata_core::tags_of(metadata)
                .into_iter()
                .map(Arc::from)
                .collect(),
        }
    }
}

/// Distinct event types kept for sharing; types beyond it are allocated each time.
const TYPE_NAMES_MAX: usize = 65_536;

/// Longest metadata whose keys [`KeyNames`] remembers (and copies to compare the next).
const METADATA_REMEMBERED_BYTES_MAX: usize = 4_096;

impl KeyNames {
    pub(crate) fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(last) = &self.last
            && **last == *name
        {
            return last.clone();
        }
        let shared = match self.names.get(name) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = Arc::from(name);
                if self.names.len() < TYPE_NAMES_MAX {
                    self.names.insert(shared.clone());
                }
                shared
            }
        };
        self.last = Some(shared.clone());
        shared
    }

    /// The correlation id and tags of `metadata`.
    fn metadata_keys(&mut self, metadata: &[u8]) -> &MetadataKeys {
        // The same bytes as the last metadata read (which held a `$`): its keys. Checked
        // first, as most events repeat their predecessor's metadata.
        if self
            .last_metadata
            .as_ref()
            .is_some_and(|last| last.metadata == metadata)
        {
            return self
                .last_metadata
                .as_ref()
                .unwrap_or_else(|| unreachable!("compared above"));
        }
        // Both keys start with `$`: metadata without one (most, or none at all) has
        // neither, as the searches of `correlation_id` and `tags_of` find.
        if !metadata.contains(&b'$') {
            if self.scratch.correlation.is_some() || !self.scratch.tags.is_empty() {
                self.scratch = MetadataKeys::default();
            }
            return &self.scratch;
        }
        let mut read = MetadataKeys::read(metadata);
        if metadata.len() > METADATA_REMEMBERED_BYTES_MAX {
            self.scratch = read;
            return &self.scratch;
        }
        // The last metadata's bytes make room for these (no allocation per command).
        let mut bytes = self
            .last_metadata
            .take()
            .map(|last| last.metadata)
            .unwrap_or_default();
        bytes.clear();
        bytes.extend_from_slice(metadata);
        read.metadata = bytes;
        self.last_metadata.insert(read)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(crate) enum Kind {
    Category = 1,
    EventType = 2,
    Correlation = 3,
    StreamStarts = 4,
    CategoryStreams = 5,
    Tag = 6,
    /// Engine-internal, named "": the events `$all` returns that lack an event-type key or
    /// a category key (events of system streams, tombstones, links of user streams,
    /// events of user streams without a category). With the category and event-type
    /// keys it lets ordinary `$all` filters be served from the index (`filtered_reader`).
    Rest = 7,
}

const ALL_KINDS: [Kind; 7] = [
    Kind::Category,
    Kind::EventType,
    Kind::Correlation,
    Kind::StreamStarts,
    Kind::CategoryStreams,
    Kind::Tag,
    Kind::Rest,
];

/// The name of the single key of [`Kind::Rest`].
pub(crate) const REST_NAME: &str = "";

/// Names kept per kind in a [`Catalog`]; past it the kind is marked overflowed.
pub(crate) const CATALOG_NAMES_MAX: usize = 65_536;

/// The names of one kind's keys (categories or event types) as far as the store has
/// seen them, so a prefix or a regex can be turned into keys (the runs, sorted by hash,
/// cannot be listed). Names may outlive their events (a scavenge): harmless.
#[derive(Default)]
pub(crate) struct Catalog {
    names: hashbrown::HashSet<Arc<str>>,
    /// More names than [`CATALOG_NAMES_MAX`] were seen: the list is incomplete.
    overflowed: bool,
}

impl Catalog {
    fn add(&mut self, name: &str) {
        if self.overflowed || self.names.contains(name) {
            return;
        }
        if self.names.len() >= CATALOG_NAMES_MAX {
            self.overflowed = true;
            self.names = hashbrown::HashSet::new();
            return;
        }
        self.names.insert(Arc::from(name));
    }

    /// Every name seen, or `None` when there were too many to keep.
    pub(crate) fn names(&self) -> Option<impl Iterator<Item = &str> + '_> {
        (!self.overflowed).then(|| self.names.iter().map(|name| &**name))
    }
}

impl Kind {
    pub(crate) fn from_byte(byte: u8) -> Option<Kind> {
        ALL_KINDS.into_iter().find(|kind| *kind as u8 == byte)
    }

    pub(crate) fn of(key: &IndexKey) -> (Kind, &str) {
        match key {
            IndexKey::Category(name) => (Kind::Category, name),
            IndexKey::EventType(name) => (Kind::EventType, name),
            IndexKey::Correlation(name) => (Kind::Correlation, name),
            IndexKey::StreamStarts => (Kind::StreamStarts, ""),
            IndexKey::CategoryStreams(name) => (Kind::CategoryStreams, name),
            IndexKey::Tag(name) => (Kind::Tag, name),
        }
    }
}

/// What one key adds to the next index file.
pub(crate) struct UnsavedPostings {
    pub kind: Kind,
    pub name: Arc<str>,
    /// The index revision of `positions[0]` (how many positions the key had before);
    /// `None` when the runs say it (the saver counts them before it writes its run).
    pub first_revision: Option<u64>,
    pub positions: Vec<u64>,
}

/// A key's name: borrowed (a new key allocates its own) or already shared (a new key
/// shares it: the writer's interned event types and correlation ids).
#[derive(Clone, Copy)]
enum KeyName<'a> {
    Borrowed(&'a str),
    Shared(&'a Arc<str>),
}

impl KeyName<'_> {
    fn as_str(&self) -> &str {
        match self {
            KeyName::Borrowed(name) => name,
            KeyName::Shared(name) => name,
        }
    }

    fn to_shared(self) -> Arc<str> {
        match self {
            KeyName::Borrowed(name) => Arc::from(name),
            KeyName::Shared(name) => Arc::clone(name),
        }
    }
}

/// The postings of `name` in `map`, made empty (from `first_revision`) if missing, with
/// the key's shared name.
fn postings_entry<'map>(
    map: &'map mut HashMap<Arc<str>, Postings>,
    name: KeyName<'_>,
    first_revision: Option<u64>,
) -> (&'map Arc<str>, &'map mut Postings) {
    if !map.contains_key(name.as_str()) {
        map.insert(name.to_shared(), Postings::new(first_revision));
    }
    map.get_key_value_mut(name.as_str())
        .unwrap_or_else(|| unreachable!("inserted above"))
}

pub(crate) struct SecondaryIndexes {
    /// False when the store keeps no secondary indexes (`Config::system_streams`).
    enabled: bool,
    /// One map per kind; `StreamStarts` and `Rest` have the single name "".
    maps: [HashMap<Arc<str>, Postings>; 7],
    /// The names of the categories and of the event types ever filed or loaded.
    categories: Catalog,
    event_types: Catalog,
    /// Keys changed since the last index file.
    dirty: Vec<(Kind, Arc<str>)>,
    /// The sorted runs hold older positions than memory's (memory dropped what they
    /// cover, or the open counted index files the runs hold): a key memory lacks may have
    /// positions there.
    older_in_runs: bool,
}

impl Default for SecondaryIndexes {
    fn default() -> Self {
        Self::new(true)
    }
}

impl SecondaryIndexes {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            maps: Default::default(),
            categories: Catalog::default(),
            event_types: Catalog::default(),
            dirty: Vec::new(),
            older_in_runs: false,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    fn map(&self, kind: Kind) -> &HashMap<Arc<str>, Postings> {
        &self.maps[kind as usize - 1]
    }

    /// The names seen of `kind`'s keys: categories and event types only (`None` for the
    /// other kinds).
    pub(crate) fn catalog(&self, kind: Kind) -> Option<&Catalog> {
        match kind {
            Kind::Category => Some(&self.categories),
            Kind::EventType => Some(&self.event_types),
            _ => None,
        }
    }

    /// Notes that a key of `kind` named `name` exists (an index file or its summary lists it).
    pub(crate) fn note_name(&mut self, kind: Kind, name: &str) {
        match kind {
            Kind::Category => self.categories.add(name),
            Kind::EventType => self.event_types.add(name),
            _ => {}
        }
    }

    /// The postings of `key`, if any event is under it.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &IndexKey) -> Option<&Postings> {
        let (kind, name) = Kind::of(key);
        self.map(kind).get(name)
    }

    /// Every key with its postings.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Kind, &str, &Postings)> {
        ALL_KINDS.into_iter().flat_map(move |kind| {
            self.map(kind)
                .iter()
                .map(move |(name, postings)| (kind, &**name, postings))
        })
    }

    /// The positions memory holds under a key of `kind` named `name` (none when nothing is
    /// under it): revisions from [`SecondaryIndexes::first_revision`].
    pub(crate) fn positions(&self, kind: Kind, name: &str) -> &[u64] {
        self.map(kind)
            .get(name)
            .map_or(&[], |postings| postings.positions.as_slice())
    }

    /// The revision of the first position memory holds under a key: 0 when memory holds
    /// them all (or nothing is under the key) and the runs hold none; `None` when the runs
    /// must say it ([`first_revision_after_runs`]).
    pub(crate) fn first_revision(&self, kind: Kind, name: &str) -> Option<u64> {
        match self.map(kind).get(name) {
            Some(postings) => postings.first_revision,
            None => (!self.older_in_runs).then_some(0),
        }
    }

    /// How many keys memory holds (with `Config::index_memory_tail_only`, those with
    /// positions after the published runs).
    #[cfg(test)]
    pub(crate) fn key_count(&self) -> usize {
        self.maps.iter().map(HashMap::len).sum()
    }

    /// The keys whose first revision in memory the runs must say.
    pub(crate) fn keys_after_runs(&self) -> Vec<(Kind, Arc<str>)> {
        ALL_KINDS
            .into_iter()
            .flat_map(|kind| {
                self.map(kind)
                    .iter()
                    .filter(|(_, postings)| postings.first_revision.is_none())
                    .map(move |(name, _)| (kind, name.clone()))
            })
            .collect()
    }

    /// Marks that the sorted runs hold older positions than memory's: from now on a key
    /// memory lacks starts at a revision the runs say.
    pub(crate) fn expect_older_in_runs(&mut self) {
        self.older_in_runs = true;
    }

    /// Drops the positions before `to` (published runs hold them), and the keys left
    /// with none: the runs say where their revisions stand.
    pub(crate) fn drop_covered(&mut self, to: u64) {
        self.older_in_runs = true;
        for map in &mut self.maps {
            map.retain(|_, postings| {
                let covered = postings
                    .positions
                    .partition_point(|&position| position < to);
                if covered == 0 {
                    return !postings.positions.is_empty();
                }
                postings.positions.drain(..covered);
                if postings.positions.is_empty() {
                    return false;
                }
                postings.positions.shrink_to_fit();
                postings.first_revision = postings
                    .first_revision
                    .map(|first_revision| first_revision + covered as u64);
                postings.checkpointed = postings.checkpointed.saturating_sub(covered);
                true
            });
            map.shrink_to_fit();
        }
        let maps = &self.maps;
        self.dirty
            .retain(|(kind, name)| maps[*kind as usize - 1].contains_key(name));
    }

    /// The postings of a key, made empty if missing.
    fn postings_entry(&mut self, kind: Kind, name: &str) -> &mut Postings {
        if !self.map(kind).contains_key(name) {
            self.note_name(kind, name);
        }
        let first_revision = (!self.older_in_runs).then_some(0);
        postings_entry(
            &mut self.maps[kind as usize - 1],
            KeyName::Borrowed(name),
            first_revision,
        )
        .1
    }

    /// The postings of a key about to gain positions (listed for the next index file); a
    /// new key shares a name already shared instead of allocating its own.
    fn postings_named(&mut self, kind: Kind, name: KeyName<'_>) -> &mut Postings {
        let name_str = name.as_str();
        if !self.map(kind).contains_key(name_str) {
            self.note_name(kind, name_str);
        }
        let first_revision = (!self.older_in_runs).then_some(0);
        let (key, postings) =
            postings_entry(&mut self.maps[kind as usize - 1], name, first_revision);
        if !postings.listed_dirty {
            postings.listed_dirty = true;
            self.dirty.push((kind, key.clone()));
        }
        postings
    }

    /// Appends `positions` (ascending, not empty) to the postings of one key.
    fn add_positions(&mut self, kind: Kind, name: &str, positions: impl Iterator<Item = u64>) {
        self.add_named(kind, KeyName::Borrowed(name), positions);
    }

    /// [`SecondaryIndexes::add_positions`] of a name that may already be shared. Room for
    /// them is made at once: a new key (a new correlation id, most often) otherwise grows
    /// its vector step by step.
    fn add_named(&mut self, kind: Kind, name: KeyName<'_>, positions: impl Iterator<Item = u64>) {
        let (low, high) = positions.size_hint();
        let postings = &mut self.postings_named(kind, name).positions;
        postings.reserve(high.unwrap_or(low));
        postings.extend(positions);
    }

    /// Indexes a run of consecutive events of `stream` from `first_revision` (the rules of
    /// `strata_core::system_streams::index_keys`), and files under [`Kind::Rest`] the
    /// records that lack a category or an event-type key. Each key is looked up once per
    /// run of events that share it, not once per event.
    pub(crate) fn add_run(
        &mut self,
        stream: &str,
        first_revision: u64,
        positions: &[u64],
        keys: &RunKeys,
    ) {
        if !self.enabled || positions.is_empty() {
            return;
        }
        if keys.event_types.len() != positions.len() || !is_indexed_stream(stream) {
            // Records of system streams and tombstones: under no category or type.
            self.add_positions(Kind::Rest, REST_NAME, positions.iter().copied());
            return;
        }
        let system = stream.starts_with('$');
        let category = category_of(stream);
        let is_link = |event_type: &Arc<str>| &**event_type == LINK_EVENT_TYPE;
        if category.is_none() {
            self.add_positions(Kind::Rest, REST_NAME, positions.iter().copied());
        } else {
            let links = || {
                positions
                    .iter()
                    .zip(&keys.event_types)
                    .filter(|(_, event_type)| is_link(event_type))
                    .map(|(&position, _)| position)
            };
            if links().next().is_some() {
                self.add_positions(Kind::Rest, REST_NAME, links());
            }
        }
        let events = || positions.iter().copied().zip(&keys.event_types);
        if let Some(category) = category {
            let indexed = || {
                events()
                    .filter(|(_, event_type)| !(system && is_link(event_type)))
                    .map(|(position, _)| position)
            };
            if indexed().next().is_some() {
                self.add_positions(Kind::Category, category, indexed());
            }
        }
        let mut from = 0;
        while from < positions.len() {
            let event_type = &keys.event_types[from];
            let to = from
                + keys.event_types[from..]
                    .iter()
                    .take_while(|other| Arc::ptr_eq(other, event_type) || *other == event_type)
                    .count();
            if !is_link(event_type) {
                self.add_named(
                    Kind::EventType,
                    KeyName::Shared(event_type),
                    positions[from..to].iter().copied(),
                );
            }
            from = to;
        }
        if first_revision == 0 && !(system && is_link(&keys.event_types[0])) {
            self.add_positions(Kind::StreamStarts, "", std::iter::once(positions[0]));
            if let Some(category) = category {
                self.add_positions(
                    Kind::CategoryStreams,
                    category,
                    std::iter::once(positions[0]),
                );
            }
        }
        // Consecutive events of a command mostly share their id: one lookup per stretch.
        let filed = |offset: usize| {
            let event_type = keys.event_types.get(offset)?;
            let position = positions.get(offset)?;
            (&**event_type != LINK_EVENT_TYPE && !system).then_some(*position)
        };
        let correlations = &keys.correlations;
        let mut from = 0;
        while from < correlations.len() {
            let id = &correlations[from].1;
            let to = from
                + correlations[from..]
                    .iter()
                    .take_while(|(_, other)| Arc::ptr_eq(other, id) || other == id)
                    .count();
            let stretch = || {
                correlations[from..to]
                    .iter()
                    .filter_map(|(at, _)| filed(*at))
            };
            if stretch().next().is_some() {
                self.add_named(Kind::Correlation, KeyName::Shared(id), stretch());
            }
            from = to;
        }
        for (offset, tag) in &keys.tags {
            if let (Some(&position), Some(event_type)) =
                (positions.get(*offset), keys.event_types.get(*offset))
                && &**event_type != LINK_EVENT_TYPE
                && !system
            {
                self.postings_named(Kind::Tag, KeyName::Shared(tag))
                    .positions
                    .push(position);
            }
        }
    }

    /// Positions after `after` of events that match `query`, from memory alone (every
    /// position is there unless `Config::index_memory_tail_only`; see `postings_lookup`).
    pub(crate) fn query_positions(
        &self,
        query: &strata_core::Query,
        after: Option<u64>,
        limit: usize,
    ) -> Vec<u64> {
        let list = |kind: Kind, name: &str| self.positions(kind, name);
        match query_positions(query, after, limit, list) {
            Ok(found) => found,
            Err(never) => match never {},
        }
    }

    /// Adds positions loaded from an index file (already saved). Returns false when they
    /// do not follow the key's last position (the file does not belong after the others).
    pub(crate) fn load(&mut self, kind: Kind, name: &str, positions: &[u64]) -> bool {
        if !self.enabled {
            return false;
        }
        let postings = self.postings_entry(kind, name);
        let ascending = positions.windows(2).all(|pair| pair[0] < pair[1]);
        let follows = match (postings.positions.last(), positions.first()) {
            (Some(last), Some(first)) => last < first,
            _ => true,
        };
        if !ascending || !follows {
            return false;
        }
        postings.positions.extend_from_slice(positions);
        postings.checkpointed = postings.positions.len();
        true
    }

    /// Takes the keys changed since the last call, with their unsaved positions.
    pub(crate) fn take_unsaved(&mut self) -> Vec<UnsavedPostings> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut unsaved = Vec::with_capacity(dirty.len());
        for (kind, name) in dirty {
            let Some(postings) = self.maps[kind as usize - 1].get_mut(&name) else {
                continue;
            };
            postings.listed_dirty = false;
            let first_revision = postings
                .first_revision
                .map(|first_revision| first_revision + postings.checkpointed as u64);
            let positions = postings.positions[postings.checkpointed..].to_vec();
            postings.checkpointed = postings.positions.len();
            if !positions.is_empty() {
                unsaved.push(UnsavedPostings {
                    kind,
                    name,
                    first_revision,
                    positions,
                });
            }
        }
        unsaved
    }
}

/// Positions after `after` of events that match `query`, ascending, at most `limit`; the
/// log is not read. `list(kind, name)` gives a key's postings. Each item is driven by its
/// shortest tag list (the other tags and the types are looked up by binary search) or,
/// without tags, by its types' lists.
pub(crate) fn query_positions<List, Failure>(
    query: &strata_core::Query,
    after: Option<u64>,
    limit: usize,
    mut list: impl FnMut(Kind, &str) -> List,
) -> Result<Vec<u64>, Failure>
where
    List: PostingList<Error = Failure>,
{
    let mut found: Vec<u64> = Vec::new();
    for item in &query.items {
        let types: Vec<List> = item
            .types
            .iter()
            .map(|name| list(Kind::EventType, name))
            .collect();
        if item.tags.is_empty() {
            for list in &types {
                found.extend(list.after(after, limit)?);
            }
            continue;
        }
        let mut tags: Vec<List> = item.tags.iter().map(|name| list(Kind::Tag, name)).collect();
        tags.sort_by_key(PostingList::len);
        let (driving, others) = tags.split_first().unwrap_or_else(|| unreachable!());
        let mut taken = 0;
        let mut from = after;
        // Slices grow from small: a condition check mostly needs the first few.
        let mut slice_len = 64;
        'driving: while taken < limit {
            let slice = driving.after(from, slice_len)?;
            slice_len = (slice_len * 2).min(POSTINGS_SLICE_MAX);
            let Some(&last) = slice.last() else { break };
            for position in slice {
                if taken == limit {
                    break 'driving;
                }
                let mut carries_tags = true;
                for other in others {
                    if !other.contains(position)? {
                        carries_tags = false;
                        break;
                    }
                }
                let mut has_type = types.is_empty();
                for list in &types {
                    if has_type {
                        break;
                    }
                    has_type = list.contains(position)?;
                }
                if carries_tags && has_type {
                    found.push(position);
                    taken += 1;
                }
            }
            from = Some(last);
        }
    }
    found.sort_unstable();
    found.dedup();
    found.truncate(limit);
    Ok(found)
}

/// How many positions a query reads of a driving list at a time, at most.
pub(crate) const POSTINGS_SLICE_MAX: usize = 4_096;

/// A key's postings as a query reads them: in memory, or through the runs.
pub(crate) trait PostingList {
    type Error;
    /// How many positions the key has (its revision count).
    fn len(&self) -> u64;
    /// Up to `limit` positions after `after`, ascending.
    fn after(&self, after: Option<u64>, limit: usize) -> Result<Vec<u64>, Self::Error>;
    fn contains(&self, position: u64) -> Result<bool, Self::Error>;
}

impl PostingList for &[u64] {
    type Error = std::convert::Infallible;

    fn len(&self) -> u64 {
        <[u64]>::len(self) as u64
    }

    fn after(&self, after: Option<u64>, limit: usize) -> Result<Vec<u64>, Self::Error> {
        let start = after.map_or(0, |after| {
            self.partition_point(|&position| position <= after)
        });
        Ok(self[start..].iter().take(limit).copied().collect())
    }

    fn contains(&self, position: u64) -> Result<bool, Self::Error> {
        Ok(self.binary_search(&position).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use strata_core::system_streams::index_keys;

    use super::*;

    fn run(types: &[&str]) -> RunKeys {
        RunKeys {
            event_types: types.iter().map(|name| Arc::from(*name)).collect(),
            correlations: Vec::new(),
            tags: Vec::new(),
        }
    }

    fn positions(indexes: &SecondaryIndexes, key: &IndexKey) -> Vec<u64> {
        indexes
            .get(key)
            .map_or_else(Vec::new, |postings| postings.positions.clone())
    }

    /// Each key of `expected` holds its positions, and the named keys nothing more.
    fn assert_holds_exactly(indexes: &SecondaryIndexes, expected: &HashMap<IndexKey, Vec<u64>>) {
        for (key, wanted) in expected {
            assert_eq!(&positions(indexes, key), wanted, "{key:?}");
        }
        let total: usize = indexes
            .iter()
            .filter(|(kind, _, _)| *kind != Kind::Rest)
            .map(|(_, _, postings)| postings.positions.len())
            .sum();
        assert_eq!(total, expected.values().map(Vec::len).sum::<usize>());
    }

    /// The engine indexes exactly what `strata_core::system_streams::index_keys` says.
    #[test]
    fn runs_are_indexed_as_the_core_rules_say() {
        let mut indexes = SecondaryIndexes::default();
        let mut keys = run(&["Placed", "$>", "Paid"]);
        keys.correlations.push((2, Arc::from("c-1")));
        indexes.add_run("order-1", 0, &[64, 128, 192], &keys);
        indexes.add_run("order-1", 3, &[256], &run(&["Shipped"]));
        indexes.add_run("$$order-1", 0, &[320], &run(&["$metadata"]));
        indexes.add_run("loose", 0, &[384], &run(&["Placed"]));
        indexes.add_run("$users", 0, &[448], &run(&["$User"]));
        let events: [(&str, u64, &str, &[u8], u64); 6] = [
            ("order-1", 0, "Placed", b"", 64),
            ("order-1", 1, "$>", b"", 128),
            ("order-1", 2, "Paid", br#"{"$correlationId":"c-1"}"#, 192),
            ("order-1", 3, "Shipped", b"", 256),
            ("$$order-1", 0, "$metadata", b"", 320),
            ("loose", 0, "Placed", b"", 384),
        ];
        let mut expected: HashMap<IndexKey, Vec<u64>> = HashMap::new();
        for (stream, revision, event_type, metadata, position) in events {
            for key in index_keys(stream, revision, event_type, metadata) {
                expected.entry(key).or_default().push(position);
            }
        }
        assert!(!expected.is_empty());
        assert_holds_exactly(&indexes, &expected);
    }

    /// A run is filed key by key (one lookup per stretch of one event type); what each
    /// key holds must still be what the rules give event by event, in log order.
    #[test]
    fn runs_with_stretches_of_types_and_links_are_indexed_as_the_core_rules_say() {
        let mut indexes = SecondaryIndexes::default();
        let mut key_names = KeyNames::default();
        let mut keys = RunKeys::default();
        let run_types = ["A", "A", "$>", "B", "B", "A", "$>"];
        for (revision, event_type) in run_types.iter().enumerate() {
            keys.push(&mut key_names, "cart-7", revision as u64, event_type, b"");
        }
        let run_positions: Vec<u64> = (0..run_types.len() as u64).map(|n| 64 + n * 64).collect();
        indexes.add_run("cart-7", 0, &run_positions, &keys);
        indexes.add_run("$$cart-7", 0, &[1_000, 1_064], &run(&["$>", "$metadata"]));
        indexes.add_run("cart-7", 7, &[1_128, 1_192], &run(&["B", "A"]));
        indexes.add_run("cart-8", 3, &[1_256], &run(&["$>"]));
        let mut events: Vec<(&str, u64, &str, u64)> = run_types
            .iter()
            .enumerate()
            .map(|(revision, event_type)| {
                (
                    "cart-7",
                    revision as u64,
                    *event_type,
                    run_positions[revision],
                )
            })
            .collect();
        events.extend([
            ("$$cart-7", 0, "$>", 1_000),
            ("$$cart-7", 1, "$metadata", 1_064),
            ("cart-7", 7, "B", 1_128),
            ("cart-7", 8, "A", 1_192),
            ("cart-8", 3, "$>", 1_256),
        ]);
        let mut expected: HashMap<IndexKey, Vec<u64>> = HashMap::new();
        for (stream, revision, event_type, position) in events {
            for key in index_keys(stream, revision, event_type, b"") {
                expected.entry(key).or_default().push(position);
            }
        }
        assert_holds_exactly(&indexes, &expected);
    }

    /// Correlation ids are filed a stretch at a time: links in a stretch, ids that come
    /// back after another, and system streams must still give what the rules give.
    #[test]
    fn stretches_of_one_correlation_id_are_indexed_as_the_core_rules_say() {
        let one: &[u8] = br#"{"$correlationId":"c-1"}"#;
        let two: &[u8] = br#"{"$correlationId":"c-2"}"#;
        type Events<'a> = &'a [(&'a str, &'a [u8])];
        let runs: [(&str, Events); 2] = [
            (
                "order-1",
                &[
                    ("A", one),
                    ("$>", one),
                    ("B", one),
                    ("C", two),
                    ("D", one),
                    ("E", b""),
                ],
            ),
            ("$$order-1", &[("$metadata", one), ("$>", one)]),
        ];
        let mut indexes = SecondaryIndexes::default();
        let mut names = KeyNames::default();
        let mut expected: HashMap<IndexKey, Vec<u64>> = HashMap::new();
        let mut position = 64;
        for (stream, events) in runs {
            let mut keys = RunKeys::default();
            let mut run_positions = Vec::new();
            for (revision, (event_type, metadata)) in events.iter().enumerate() {
                keys.push(&mut names, stream, revision as u64, event_type, metadata);
                for key in index_keys(stream, revision as u64, event_type, metadata) {
                    expected.entry(key).or_default().push(position);
                }
                run_positions.push(position);
                position += 64;
            }
            indexes.add_run(stream, 0, &run_positions, &keys);
        }
        assert_eq!(
            expected.get(&IndexKey::Correlation("c-1".into())),
            Some(&vec![64, 192, 320])
        );
        assert_holds_exactly(&indexes, &expected);
    }

    /// The keys remembered from the last metadata are those `correlation_id` and
    /// `tags_of` give for every event, whether the metadata repeats, changes, has no `$`,
    /// or is too long to remember.
    #[test]
    fn keys_read_from_repeated_metadata_are_the_core_rules_keys() {
        let long = format!(
            r#"{{"$correlationId":"long","pad":"{}"}}"#,
            "x".repeat(METADATA_REMEMBERED_BYTES_MAX)
        );
        let cases: Vec<&[u8]> = vec![
            br#"{"$correlationId":"c-1"}"#,
            br#"{"$correlationId":"c-1"}"#,
            b"",
            br#"{"$correlationId":"c-1"}"#,
            br#"{"$correlationId":"c-2","$tags":["a","b","a"]}"#,
            br#"{"$correlationId":"c-2","$tags":["a","b","a"]}"#,
            br#"{"$correlation\u0049d":"escaped"}"#,
            br#"{"note":"no key"}"#,
            br#"{"$correlationId":""}"#,
            br#"{"$correlationId":"c-2"} trailing"#,
            long.as_bytes(),
            long.as_bytes(),
            br#"{"$tags":["t"]}"#,
            br#"{"$correlationId":"c-1"}"#,
        ];
        let mut names = KeyNames::default();
        let mut keys = RunKeys::default();
        for (revision, metadata) in cases.iter().enumerate() {
            keys.push(&mut names, "order-1", revision as u64, "Placed", metadata);
        }
        for (at, metadata) in cases.iter().enumerate() {
            let correlation: Vec<&str> = keys
                .correlations
                .iter()
                .filter(|(offset, _)| *offset == at)
                .map(|(_, id)| &**id)
                .collect();
            let expected = correlation_id(metadata);
            assert_eq!(
                correlation,
                expected.as_deref().into_iter().collect::<Vec<_>>(),
                "{at}"
            );
            let tags: Vec<&str> = keys
                .tags
                .iter()
                .filter(|(offset, _)| *offset == at)
                .map(|(_, tag)| &**tag)
                .collect();
            assert_eq!(tags, strata_core::tags_of(metadata), "{at}");
        }
        assert!(!keys.correlations.is_empty() && !keys.tags.is_empty());
    }

    #[test]
    fn unsaved_positions_are_taken_once_and_loads_must_follow() {
        let mut indexes = SecondaryIndexes::default();
        indexes.add_run("order-1", 0, &[64, 128], &run(&["A", "B"]));
        let unsaved = indexes.take_unsaved();
        let category: Vec<_> = unsaved
            .iter()
            .filter(|postings| postings.kind == Kind::Category)
            .collect();
        assert_eq!(category.len(), 1);
        assert_eq!(category[0].positions, vec![64, 128]);
        assert!(indexes.take_unsaved().is_empty());

        let mut loaded = SecondaryIndexes::default();
        assert!(loaded.load(Kind::Category, "order", &[64, 128]));
        assert!(!loaded.load(Kind::Category, "order", &[100]), "goes back");
        assert!(!loaded.load(Kind::EventType, "A", &[9, 3]), "not ascending");
        assert!(loaded.load(Kind::Category, "order", &[200]));
        assert!(
            loaded.take_unsaved().is_empty(),
            "loaded positions are saved"
        );
    }
}
