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

#[derive(Clone, Debug)]
enum Input {
    All,
    Stream(StreamName),
    Index(IndexKey),
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
        if !definition.categories.is_empty()
            && definition.by_stream
            && definition.handles_deleted_notifications
        {
            let key = IndexKey::EventType(strata_core::METADATA_EVENT_TYPE.to_owned());
            inputs.push((Input::Index(key.clone()), key.stream_name()));
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

    /// Up to `max` events after the cursors, in log order. With several inputs only events
    /// at or below `horizon` are taken.
    pub(crate) async fn read_batch(
        &self,
        store: &dyn EventStore,
        horizon: Option<Position>,
        max: usize,
    ) -> Result<Vec<SourceEvent>, Fault> {
        let Some(horizon) = horizon else {
            return Ok(Vec::new());
        };
        let mut merged = Vec::new();
        for index in 0..self.inputs.len() {
            let mut events = self.read_input(store, index, max).await?;
            events.retain(|event| event.event.position <= horizon);
            merged.extend(events);
        }
        merged.sort_by_key(|event| event.event.position);
        merged.truncate(max);
        Ok(merged)
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
