//! Reading a query's sources: `$all`, streams, and categories through the secondary index
//! (never through link events).
//!
//! A batch is deterministic: with several inputs, only events at or below the log's end as
//! seen before the batch (the horizon) are taken, merged by position, so a re-run from the
//! same cursors sees the same events in the same order as the first run did.

use std::collections::BTreeMap;

use strata_core::system_streams::{IndexKey, link_event, resolve_link};
use strata_core::{
    EventStore, Position, ReadAllOptions, ReadFrom, ReadStreamOptions, RecordedEvent, StreamName,
};

use crate::engine::QueryDefinition;
use crate::error::Fault;

/// Where a cursor starts reading `$all`: the key under which it is checkpointed.
const ALL_KEY: &str = "$all";
/// The key of the tombstone scan's cursor.
const TOMBSTONES_KEY: &str = "$tombstones";

/// The reference's refusal of `$deleted` without `foreachStream()` (its `ReaderStrategy`).
pub(crate) const DELETED_NEEDS_FOREACH_STREAM: &str =
    "Deleted stream notifications are only supported with foreachStream()";

#[derive(Clone, Debug)]
enum Input {
    All,
    Stream(StreamName),
    Index(IndexKey),
    /// The tombstones of user streams (`EventStore::read_tombstones`: a read of the store's
    /// tombstones where it keeps them, else a filtered scan of `$all`). Its cursor is the
    /// position up to which they were looked for.
    Tombstones,
}

/// A batch of source events, in log order, and how far the tombstone scan looked.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub events: Vec<SourceEvent>,
    /// The tombstone scan's input and the position up to which it looked at `$all` for
    /// this batch: its cursor once the batch is processed.
    pub scanned: Option<(usize, u64)>,
    /// Every source event at or below the horizon is in the batch: the run has caught up
    /// with the log as seen before the read.
    pub complete: bool,
}

/// An event read from an input, with the input's cursor once it is processed.
#[derive(Clone, Debug)]
pub(crate) struct SourceEvent {
    pub input: usize,
    pub cursor_after: u64,
    pub event: RecordedEvent,
    /// Metadata of the link this event shows through (`$ce-…`), or empty.
    pub link_metadata: String,
    /// Read only to move the cursor on: no handler sees it.
    pub skip: bool,
    /// For a user-written link (`$>`) read from a `fromStream` source: the event it points
    /// at, which the handlers see (`event` stays the link: its position orders the batch
    /// and marks the outputs).
    pub resolved: Option<RecordedEvent>,
}

impl SourceEvent {
    /// The event the handlers see: a resolved link's target, else the event read.
    pub(crate) fn handled(&self) -> &RecordedEvent {
        self.resolved.as_ref().unwrap_or(&self.event)
    }
}

/// The inputs of a query and how far each has been processed.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    inputs: Vec<(Input, String)>,
    /// Per input: `$all`, the position of the last processed event; a stream or an index,
    /// the next revision. Absent: from the start.
    cursors: Vec<Option<u64>>,
    include_links: bool,
}

impl Source {
    pub(crate) fn new(definition: &QueryDefinition) -> Result<Self, Fault> {
        let mut inputs = Vec::new();
        if definition.all {
            inputs.push((Input::All, ALL_KEY.to_owned()));
        }
        for stream in &definition.streams {
            let name = StreamName::new(stream).map_err(|error| Fault::InvalidQuery {
                reason: format!("fromStream({stream:?}): {error}"),
            })?;
            inputs.push((Input::Stream(name), stream.clone()));
        }
        for category in &definition.categories {
            let key = IndexKey::Category(category.clone());
            inputs.push((Input::Index(key.clone()), key.stream_name()));
        }
        // `fromCategory(c).foreachStream()` with a `$deleted` handler: the category index has
        // no metadata events, so soft deletes come from `$et-$metadata` (the metadata events
        // of user streams), in log order with the category's events.
        // Tombstones are in no index: they come from the store's own list of them
        // (`read_tombstones`; the reference learns of them from its `$ce-` stream, where
        // `$by_category` links them).
        if definition.handles_deleted_notifications && !definition.by_stream {
            return Err(Fault::InvalidQuery {
                reason: DELETED_NEEDS_FOREACH_STREAM.into(),
            });
        }
        if !definition.categories.is_empty()
            && definition.by_stream
            && definition.handles_deleted_notifications
        {
            let key = IndexKey::EventType(strata_core::METADATA_EVENT_TYPE.to_owned());
            inputs.push((Input::Index(key.clone()), key.stream_name()));
            inputs.push((Input::Tombstones, TOMBSTONES_KEY.to_owned()));
        }
        if definition.all && inputs.len() > 1 {
            return Err(Fault::InvalidQuery {
                reason: "fromAll() cannot be combined with other sources".into(),
            });
        }
        Ok(Self {
            cursors: vec![None; inputs.len()],
            inputs,
            include_links: definition.include_links,
        })
    }

    /// The cursors by input key, as a checkpoint stores them.
    pub(crate) fn cursors(&self) -> BTreeMap<String, u64> {
        self.inputs
            .iter()
            .zip(&self.cursors)
            .filter_map(|((_, key), cursor)| cursor.map(|cursor| (key.clone(), cursor)))
            .collect()
    }

    pub(crate) fn restore(&mut self, cursors: &BTreeMap<String, u64>) {
        for ((_, key), cursor) in self.inputs.iter().zip(self.cursors.iter_mut()) {
            *cursor = cursors.get(key).copied();
        }
    }

    pub(crate) fn advance(&mut self, event: &SourceEvent) {
        self.cursors[event.input] = Some(event.cursor_after);
    }

    /// Moves the tombstone scan's cursor to where a processed batch looked.
    pub(crate) fn advance_scan(&mut self, scanned: Option<(usize, u64)>) {
        if let Some((input, position)) = scanned {
            let cursor = &mut self.cursors[input];
            *cursor = Some(cursor.map_or(position, |cursor| cursor.max(position)));
        }
    }

    /// Up to `max` events after the cursors, in log order. With several inputs only events
    /// at or below `horizon` are taken.
    pub(crate) async fn read_batch(
        &self,
        store: &dyn EventStore,
        horizon: Option<Position>,
        max: usize,
    ) -> Result<Batch, Fault> {
        let Some(horizon) = horizon else {
            return Ok(Batch::default());
        };
        let mut merged = Vec::new();
        // The batch ends at or before the last event of an input that filled its read: the
        // tombstone scan need not look further.
        let mut limit = horizon;
        let mut scan = None;
        for index in 0..self.inputs.len() {
            if matches!(self.inputs[index].0, Input::Tombstones) {
                scan = Some(index);
                continue;
            }
            let mut events = self.read_input(store, index, max).await?;
            events.retain(|event| event.event.position <= horizon);
            if events.len() >= max
                && let Some(last) = events.last()
            {
                limit = limit.min(last.event.position);
            }
            merged.extend(events);
        }
        let mut scanned = None;
        if let Some(index) = scan {
            let (tombstones, looked_to) = self.read_tombstones(store, index, limit, max).await?;
            // Past where the scan looked, a tombstone may precede the other inputs' events.
            merged.retain(|event| event.event.position <= looked_to);
            merged.extend(tombstones);
            scanned = Some((index, looked_to));
        }
        merged.sort_by_key(|event| event.event.position);
        let mut complete = limit == horizon
            && scanned.is_none_or(|(_, looked_to): (usize, Position)| looked_to == horizon);
        if merged.len() > max {
            complete = false;
            merged.truncate(max);
            if let (Some((index, looked_to)), Some(last)) = (scanned, merged.last()) {
                scanned = Some((index, looked_to.min(last.event.position)));
            }
        }
        Ok(Batch {
            events: merged,
            scanned: scanned.map(|(index, looked_to)| (index, looked_to.0)),
            complete,
        })
    }

    /// The tombstones of user streams after the scan's cursor, up to `limit` and at most
    /// `max`; and the position up to which they were looked for (every tombstone up to it is
    /// in the answer).
    async fn read_tombstones(
        &self,
        store: &dyn EventStore,
        index: usize,
        limit: Position,
        max: usize,
    ) -> Result<(Vec<SourceEvent>, Position), Fault> {
        let cursor = self.cursors[index];
        if cursor.is_some_and(|cursor| cursor >= limit.0) {
            return Ok((Vec::new(), limit));
        }
        let tombstones = store
            .read_tombstones(cursor.map(Position), limit, max)
            .await?;
        let looked_to = match tombstones.last() {
            Some(last) if tombstones.len() >= max => last.position,
            _ => limit,
        };
        let out = tombstones
            .into_iter()
            .map(|event| SourceEvent {
                input: index,
                cursor_after: event.position.0,
                event,
                link_metadata: String::new(),
                // Only the `$deleted` handler hears of it.
                skip: true,
                resolved: None,
            })
            .collect();
        Ok((out, looked_to))
    }

    async fn read_input(
        &self,
        store: &dyn EventStore,
        index: usize,
        max: usize,
    ) -> Result<Vec<SourceEvent>, Fault> {
        let cursor = self.cursors[index];
        match &self.inputs[index].0 {
            Input::All => self.read_all(store, index, cursor, max).await,
            // Read by `read_tombstones`, bounded by the other inputs.
            Input::Tombstones => Ok(Vec::new()),
            Input::Stream(stream) => {
                let options = ReadStreamOptions::forwards()
                    .from_revision(cursor.unwrap_or(0))
                    .max_count(max);
                let events = match store.read_stream(stream, options).await {
                    Ok(slice) => slice.into_events(),
                    Err(strata_core::Error::StreamDeleted { .. }) => Vec::new(),
                    Err(error) => return Err(error.into()),
                };
                let mut out = Vec::with_capacity(events.len());
                for event in events {
                    let mut source = SourceEvent {
                        input: index,
                        cursor_after: event.revision.0 + 1,
                        skip: false,
                        event,
                        link_metadata: String::new(),
                        resolved: None,
                    };
                    // As the reference reads a stream source: links resolved (unless
                    // `$includeLinks`), a link whose target is gone passed over.
                    if is_link(&source.event) && !self.include_links {
                        let link = resolve_link(store, source.event.clone()).await?;
                        match link.event {
                            Some(target) if link.link.is_some() => {
                                source.link_metadata =
                                    String::from_utf8_lossy(&source.event.metadata).into_owned();
                                source.resolved = Some(target);
                            }
                            // Data that names no revision: no link, delivered as it is.
                            Some(_) => {}
                            None => source.skip = true,
                        }
                    }
                    out.push(source);
                }
                Ok(out)
            }
            Input::Index(key) => {
                let options = ReadStreamOptions::forwards()
                    .from_revision(cursor.unwrap_or(0))
                    .max_count(max);
                let slice = store.read_index(key, options).await?;
                let shown_in = StreamName::from_stored(&key.stream_name());
                Ok(slice
                    .events
                    .into_iter()
                    .map(|indexed| {
                        let link = link_event(&shown_in, indexed.index_revision, &indexed.event);
                        SourceEvent {
                            input: index,
                            cursor_after: indexed.index_revision + 1,
                            link_metadata: String::from_utf8_lossy(&link.metadata).into_owned(),
                            // `$et-$metadata` only tells of deletes: no handler sees it.
                            skip: matches!(key, IndexKey::EventType(_)),
                            event: indexed.event,
                            resolved: None,
                        }
                    })
                    .collect())
            }
        }
    }

    /// `$all` after the last processed position. System streams' events (the projections'
    /// own outputs among them) and, unless `$includeLinks`, link events are passed over.
    async fn read_all(
        &self,
        store: &dyn EventStore,
        index: usize,
        cursor: Option<u64>,
        max: usize,
    ) -> Result<Vec<SourceEvent>, Fault> {
        let mut from = match cursor {
            Some(position) => ReadFrom::At(Position(position)),
            None => ReadFrom::Start,
        };
        let mut out = Vec::new();
        while out.len() < max {
            let mut options = ReadAllOptions::forwards().max_count(max - out.len() + 1);
            options.from = from;
            let page = store.read_all(options).await?;
            for event in page.events {
                if cursor.is_some_and(|last| event.position.0 <= last) {
                    continue;
                }
                let skip = event.stream.is_system() || (is_link(&event) && !self.include_links);
                out.push(SourceEvent {
                    input: index,
                    cursor_after: event.position.0,
                    event,
                    link_metadata: String::new(),
                    skip,
                    resolved: None,
                });
            }
            if page.is_end {
                break;
            }
            from = ReadFrom::At(page.next_position);
        }
        out.truncate(max);
        Ok(out)
    }
}

fn is_link(event: &RecordedEvent) -> bool {
    event.event_type == strata_core::system_streams::LINK_EVENT_TYPE
}
