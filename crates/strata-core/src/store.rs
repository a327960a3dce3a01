//! The `EventStore` trait every backend implements, and the options of its reads.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use crate::dcb::{AppendCondition, Query, QuerySlice};
use crate::error::{Error, Result};
use crate::filter::{EventFilter, FilterTarget, WindowSlice};
use crate::limits::Limits;
use crate::metadata::{
    METADATA_EVENT_TYPE, StreamMetadata, TOMBSTONE_EVENT_TYPE, VersionedMetadata,
};
use crate::multi_append::{AppendPart, MultiAppendResult};
use crate::rules::{self, StreamHead};
use crate::system_streams::{IndexKey, IndexSlice, ResolvedSlice};
use crate::types::{
    AppendResult, ContentType, DeleteResult, Direction, EventId, ExpectedRevision, Position,
    ProposedEvent, RecordedEvent, Revision, StreamName, StreamState,
};

/// Where a read starts. `Start` and `End` mean the first and the last event whatever the
/// direction; `At` is inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom<T> {
    Start,
    End,
    At(T),
}

/// Options of a stream read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadStreamOptions {
    pub direction: Direction,
    pub from: ReadFrom<Revision>,
    pub max_count: usize,
}

impl ReadStreamOptions {
    pub fn forwards() -> Self {
        Self {
            direction: Direction::Forwards,
            from: ReadFrom::Start,
            max_count: usize::MAX,
        }
    }

    pub fn backwards() -> Self {
        Self {
            direction: Direction::Backwards,
            from: ReadFrom::End,
            max_count: usize::MAX,
        }
    }

    pub fn from_revision(mut self, revision: u64) -> Self {
        self.from = ReadFrom::At(Revision(revision));
        self
    }

    pub fn max_count(mut self, max_count: usize) -> Self {
        self.max_count = max_count;
        self
    }
}

/// What a stream read finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamSlice {
    /// The stream has no events, or was soft-deleted.
    NotFound,
    /// Visible events in the requested order, and the stream's last revision.
    Found {
        events: Vec<RecordedEvent>,
        last_revision: Revision,
    },
}

impl StreamSlice {
    /// The events read; none for a missing stream.
    pub fn into_events(self) -> Vec<RecordedEvent> {
        match self {
            StreamSlice::NotFound => Vec::new(),
            StreamSlice::Found { events, .. } => events,
        }
    }
}

/// Options of a read of `$all`. Forwards, `At(p)` includes the event at `p`; backwards,
/// it returns the events before `p`.
#[derive(Clone, Debug)]
pub struct ReadAllOptions {
    pub direction: Direction,
    pub from: ReadFrom<Position>,
    pub max_count: usize,
    pub filter: Option<EventFilter>,
}

impl ReadAllOptions {
    pub fn forwards() -> Self {
        Self {
            direction: Direction::Forwards,
            from: ReadFrom::Start,
            max_count: usize::MAX,
            filter: None,
        }
    }

    pub fn backwards() -> Self {
        Self {
            direction: Direction::Backwards,
            from: ReadFrom::End,
            max_count: usize::MAX,
            filter: None,
        }
    }

    pub fn from_position(mut self, position: Position) -> Self {
        self.from = ReadFrom::At(position);
        self
    }

    pub fn max_count(mut self, max_count: usize) -> Self {
        self.max_count = max_count;
        self
    }

    pub fn filter(mut self, filter: EventFilter) -> Self {
        self.filter = Some(filter);
        self
    }
}

/// A page of `$all`.
#[derive(Clone, Debug)]
pub struct AllSlice {
    /// Matching events in the requested order.
    pub events: Vec<RecordedEvent>,
    /// Where the next page in the same direction starts: forwards, the position after the
    /// last record looked at; backwards, the position of the last record looked at.
    pub next_position: Position,
    /// True when the read reached the end of the log (forwards: its durable end as of the
    /// read; backwards: its beginning).
    pub is_end: bool,
    /// Position of the last event the read looked at, matching the filter or not: where a
    /// filtered reader has checked everything up to (a checkpoint to resume after).
    pub last_examined: Option<Position>,
}

/// A store of event streams and of the global log `$all`.
///
/// Every backend passes the conformance kit in [`crate::conformance`].
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// The limits this store enforces.
    fn limits(&self) -> Limits;

    /// Appends `events` atomically to `stream` if the stream is where `expected` says.
    /// Re-sending events whose ids are already at that place returns the original result
    /// and writes nothing.
    ///
    /// # Errors
    /// [`Error::WrongExpectedRevision`], [`Error::StreamDeleted`], limit and validation
    /// errors, and storage errors.
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<AppendResult>;

    /// Appends to several streams as one transaction: every writing part becomes visible
    /// together, at consecutive positions, or none does. Each part is decided as an append
    /// of it alone would be ([`crate::rules::plan_multi_append`]); a part without events
    /// only checks its expected revision against the state before the request. Re-sending
    /// the whole request returns the original result and writes nothing. The limits apply
    /// to the sum of the parts. Every Strata backend implements it; the default refuses.
    ///
    /// # Errors
    /// The first failing part's error ([`Error::WrongExpectedRevision`],
    /// [`Error::StreamDeleted`]), [`Error::InvalidArgument`] for a request without events
    /// or writing a stream twice, limit and validation errors, [`Error::Unsupported`] from
    /// a backend that cannot, and storage errors.
    async fn append_multi(&self, parts: Vec<AppendPart>) -> Result<MultiAppendResult> {
        let _ = parts;
        Err(Error::Unsupported {
            operation: "multi-stream appends",
        })
    }

    /// A conditional (DCB) append: appends `parts` as [`EventStore::append_multi`] does,
    /// unless an event matching `condition.query` is in the log after `condition.after`
    /// (docs/DCB.md). The check and the append are one step of the store's write order, so
    /// of two conditional appends whose events match each other's queries, decided on the
    /// same position, exactly one succeeds. A re-send of an appended request returns the
    /// original result without evaluating the condition. The engine, PostgreSQL and the
    /// reference store implement it; the default refuses (remote stores).
    ///
    /// # Errors
    /// [`Error::AppendConditionFailed`] naming the first matching event found; an invalid
    /// query ([`Error::InvalidArgument`]); otherwise as [`EventStore::append_multi`].
    async fn append_conditional(
        &self,
        parts: Vec<AppendPart>,
        condition: AppendCondition,
    ) -> Result<MultiAppendResult> {
        let _ = (parts, condition);
        Err(Error::Unsupported {
            operation: "conditional (DCB) appends",
        })
    }

    /// Reads, forwards in log order, up to `max_count` events matching `query` after
    /// `after` (from the start when `None`). The default is served by the secondary
    /// indexes ([`EventStore::read_index`] of each item's first tag, or of its types): per
    /// driving key a binary search finds the first entry after `after`, then pages of
    /// entries are read and checked against the query; the log is never scanned.
    ///
    /// # Errors
    /// An invalid query ([`Error::InvalidArgument`]); storage errors.
    async fn read_query(
        &self,
        query: &Query,
        after: Option<Position>,
        max_count: usize,
    ) -> Result<QuerySlice> {
        read_query_by_index(self, query, after, max_count).await
    }

    /// Reads visible events of one stream (metadata max age, max count and `$tb` applied).
    ///
    /// # Errors
    /// [`Error::StreamDeleted`] for a tombstoned stream; storage errors.
    async fn read_stream(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<StreamSlice>;

    /// Reads `stream` as [`EventStore::read_stream`] does, each link resolved as
    /// [`crate::system_streams::resolve_links`] resolves it. A backend that builds a
    /// system stream's links from the events they point at may hand those events over
    /// instead of reading them again; the default reads, then resolves
    /// ([`crate::system_streams::read_stream_resolved_by_reading`]), and every override
    /// answers as it does.
    ///
    /// # Errors
    /// As [`EventStore::read_stream`].
    async fn read_stream_resolved(
        &self,
        stream: &StreamName,
        options: ReadStreamOptions,
    ) -> Result<ResolvedSlice> {
        crate::system_streams::read_stream_resolved_by_reading(self, stream, options).await
    }

    /// Reads a page of the global log. A backend may bound the work of one call: a page
    /// that is not the end may then hold fewer than `max_count` events (even none, when a
    /// filter matched nothing); the next page starts at `next_position`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a position that is not an event's; storage errors.
    async fn read_all(&self, options: ReadAllOptions) -> Result<AllSlice>;

    /// Like [`EventStore::read_all`], looking at no more than `examined_max` events
    /// (matching the filter or not), and saying how many it looked at: filtered readers
    /// bound their work with it and place checkpoints by events examined. The default
    /// reads without the filter and filters here; backends override it to filter cheaper.
    ///
    /// # Errors
    /// As [`EventStore::read_all`], and [`Error::InvalidFilter`] when the filter's regex
    /// exceeds its backtracking limit.
    async fn read_all_window(
        &self,
        options: ReadAllOptions,
        examined_max: usize,
    ) -> Result<WindowSlice> {
        crate::filter::read_all_window_by_filtering(self, options, examined_max).await
    }

    /// Reads the secondary index `key` (see [`crate::system_streams`]): the events under it
    /// by index revision, dense from 0 in log order, with `options` applied as to a stream.
    /// Events no longer visible in their own stream (deleted, truncated, expired) keep their
    /// place. The default scans `$all`; backends that keep the indexes override it.
    ///
    /// # Errors
    /// Storage errors.
    async fn read_index(&self, key: &IndexKey, options: ReadStreamOptions) -> Result<IndexSlice> {
        crate::system_streams::read_index_by_scanning(self, key, options).await
    }

    /// The tombstones of user streams (their `$streamDeleted` records) after `after` and at
    /// or before `up_to`, in log order, at most `max`. The default scans `$all` filtered on
    /// the tombstone's type; backends that know their tombstones override it with a read of
    /// those alone.
    ///
    /// # Errors
    /// Storage errors.
    async fn read_tombstones(
        &self,
        after: Option<Position>,
        up_to: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        read_tombstones_by_scanning(self, after, up_to, max).await
    }

    /// The state a concurrency check would see.
    ///
    /// # Errors
    /// Storage errors.
    async fn stream_state(&self, stream: &StreamName) -> Result<StreamState>;

    /// Soft-deletes a stream: its events are hidden (metadata `$tb` past the last event)
    /// and appending again revives it with the next revision.
    ///
    /// # Errors
    /// [`Error::WrongExpectedRevision`], [`Error::StreamDeleted`], storage errors.
    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult>;

    /// Tombstones a stream: it can never be read or written again.
    ///
    /// # Errors
    /// [`Error::WrongExpectedRevision`], [`Error::StreamDeleted`], storage errors.
    async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<DeleteResult>;

    /// Position of the last event in `$all`, if any.
    ///
    /// # Errors
    /// Storage errors.
    async fn last_position(&self) -> Result<Option<Position>>;

    /// Watches the durable end of the log: the value changes after each commit.
    fn watch_log_end(&self) -> watch::Receiver<Position>;

    /// The metadata of `stream` (empty when none was written).
    ///
    /// # Errors
    /// [`Error::StreamDeleted`] when `stream` is tombstoned; storage errors.
    async fn stream_metadata(&self, stream: &StreamName) -> Result<VersionedMetadata> {
        if self.stream_state(stream).await? == StreamState::Tombstoned {
            return Err(Error::StreamDeleted {
                stream: stream.clone(),
            });
        }
        let metadata_stream = stream.metadata_stream();
        let last = self
            .read_stream(
                &metadata_stream,
                ReadStreamOptions::backwards().max_count(1),
            )
            .await?
            .into_events();
        Ok(VersionedMetadata::from_last_event(stream, last.first()))
    }

    /// Writes new metadata for `stream`; `expected` is checked against `$$stream`. The rules
    /// of an append to `$$stream` apply ([`crate::rules`]): writing the metadata of a
    /// soft-deleted stream undeletes it with its old events still hidden, and the metadata
    /// of a tombstoned stream is refused unless `$$stream` already has events.
    ///
    /// # Errors
    /// [`Error::WrongExpectedRevision`] on `$$stream`, [`Error::StreamDeleted`] (see
    /// above), [`Error::InvalidArgument`] for a metadata stream; storage errors.
    async fn set_stream_metadata(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        metadata: &StreamMetadata,
    ) -> Result<AppendResult> {
        if stream.is_metadata_stream() {
            return Err(Error::InvalidArgument {
                reason: format!("{stream} is a metadata stream and has no metadata of its own"),
            });
        }
        let event = ProposedEvent {
            id: EventId::new_random(),
            event_type: METADATA_EVENT_TYPE.into(),
            content_type: ContentType::Json,
            data: Bytes::from(metadata.to_json()),
            metadata: Bytes::new(),
        };
        self.append(&stream.metadata_stream(), expected, vec![event])
            .await
    }

    /// Checks `expected` against `stream` as an append would, and writes nothing (what
    /// KurrentDB answers to an append of no events). Returns the stream's last revision.
    /// The default gathers the heads with [`EventStore::stream_state`] and
    /// [`EventStore::stream_metadata`] and applies [`crate::rules::check_expected`].
    ///
    /// # Errors
    /// [`Error::WrongExpectedRevision`], [`Error::StreamDeleted`], storage errors.
    async fn check_expected_revision(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
    ) -> Result<Option<Revision>> {
        let mut heads = HashMap::new();
        for consulted in rules::streams_consulted(stream) {
            let head = stream_head(self, &consulted).await?;
            heads.insert(consulted, head);
        }
        rules::check_expected(&heads, stream, expected)
    }
}

/// Entries of an index read per page by [`read_query_by_index`].
const QUERY_PAGE_ENTRIES: usize = 256;

/// [`EventStore::read_query`] served by [`EventStore::read_index`]; backends use it as is.
///
/// # Errors
/// An invalid query; storage errors.
pub async fn read_query_by_index<S: EventStore + ?Sized>(
    store: &S,
    query: &Query,
    after: Option<Position>,
    max_count: usize,
) -> Result<QuerySlice> {
    let query = query.clone().validated()?;
    let mut drivers: Vec<IndexKey> = Vec::new();
    for item in &query.items {
        let keys: Vec<IndexKey> = match item.tags.first() {
            Some(tag) => vec![IndexKey::Tag(tag.clone())],
            None => item
                .types
                .iter()
                .cloned()
                .map(IndexKey::EventType)
                .collect(),
        };
        for key in keys {
            if !drivers.contains(&key) {
                drivers.push(key);
            }
        }
    }
    let mut found: Vec<RecordedEvent> = Vec::new();
    let mut more = false;
    for key in &drivers {
        let (events, key_more) = matching_under_key(store, key, &query, after, max_count).await?;
        more |= key_more;
        found.extend(events);
    }
    found.sort_by_key(|event| event.position);
    found.dedup_by_key(|event| event.position);
    if found.len() > max_count {
        found.truncate(max_count);
        more = true;
    }
    let last_position = found.last().map(|event| event.position).or(after);
    Ok(QuerySlice {
        events: found,
        last_position,
        more,
    })
}

/// Up to `max_count` events under `key` after `after` that match `query`; true when the
/// key may hold more.
async fn matching_under_key<S: EventStore + ?Sized>(
    store: &S,
    key: &IndexKey,
    query: &Query,
    after: Option<Position>,
    max_count: usize,
) -> Result<(Vec<RecordedEvent>, bool)> {
    let last = store
        .read_index(key, ReadStreamOptions::backwards().max_count(1))
        .await?;
    let Some(last_revision) = last.last_revision else {
        return Ok((Vec::new(), false));
    };
    let position_at = async |revision: u64| -> Result<Option<Position>> {
        let slice = store
            .read_index(
                key,
                ReadStreamOptions::forwards()
                    .from_revision(revision)
                    .max_count(1),
            )
            .await?;
        Ok(slice.events.first().map(|indexed| indexed.event.position))
    };
    // The first revision whose event is after `after` (entries are in log order).
    let mut low = 0;
    if let Some(after) = after {
        let mut high = last_revision + 1;
        while low < high {
            let middle = low + (high - low) / 2;
            match position_at(middle).await? {
                Some(position) if position > after => high = middle,
                _ => low = middle + 1,
            }
        }
    }
    let mut events = Vec::new();
    let mut revision = low;
    while revision <= last_revision {
        let page = store
            .read_index(
                key,
                ReadStreamOptions::forwards()
                    .from_revision(revision)
                    .max_count(QUERY_PAGE_ENTRIES),
            )
            .await?;
        if page.events.is_empty() {
            break;
        }
        for indexed in page.events {
            revision = indexed.index_revision + 1;
            if after.is_some_and(|after| indexed.event.position <= after) {
                continue;
            }
            if query.matches(&indexed.event) {
                if events.len() == max_count {
                    return Ok((events, true));
                }
                events.push(indexed.event);
            }
        }
    }
    Ok((events, false))
}

/// A stream's head as the contract's reads report it.
async fn stream_head<S: EventStore + ?Sized>(store: &S, stream: &StreamName) -> Result<StreamHead> {
    let last_revision = match store.stream_state(stream).await? {
        StreamState::Tombstoned => {
            return Ok(StreamHead {
                tombstoned: true,
                ..StreamHead::default()
            });
        }
        StreamState::At(revision) => Some(revision.0),
        StreamState::NoStream => None,
    };
    let metadata = match store.stream_metadata(stream).await {
        Ok(versioned) => versioned.revision.map(|_| Arc::new(versioned.metadata)),
        // `$$S` of a tombstoned `S` (its own metadata lives in `$$$$S`) reads as deleted.
        Err(Error::StreamDeleted { .. }) => None,
        Err(error) => return Err(error),
    };
    Ok(StreamHead {
        last_revision,
        tombstoned: false,
        metadata,
    })
}

/// [`EventStore::read_tombstones`] by a scan of `$all` filtered on the tombstone's type.
///
/// # Errors
/// Storage errors.
pub async fn read_tombstones_by_scanning<S: EventStore + ?Sized>(
    store: &S,
    after: Option<Position>,
    up_to: Position,
    max: usize,
) -> Result<Vec<RecordedEvent>> {
    let mut out = Vec::new();
    if max == 0 || after.is_some_and(|after| after >= up_to) {
        return Ok(out);
    }
    let filter = EventFilter::prefixes(
        FilterTarget::EventType,
        vec![TOMBSTONE_EVENT_TYPE.to_owned()],
    )?;
    let mut from = after.map_or(ReadFrom::Start, ReadFrom::At);
    loop {
        let mut options = ReadAllOptions::forwards()
            .max_count(max - out.len() + 1)
            .filter(filter.clone());
        options.from = from;
        let page = store.read_all(options).await?;
        for event in page.events {
            if after.is_some_and(|after| event.position <= after) {
                continue;
            }
            if event.position > up_to {
                return Ok(out);
            }
            if event.event_type != TOMBSTONE_EVENT_TYPE || event.stream.is_system() {
                continue;
            }
            out.push(event);
            if out.len() >= max {
                return Ok(out);
            }
        }
        if page.is_end || page.last_examined.is_some_and(|last| last >= up_to) {
            return Ok(out);
        }
        from = ReadFrom::At(page.next_position);
    }
}
