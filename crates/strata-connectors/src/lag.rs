//! Lag in events: how many events a connector would still publish after the last one it
//! handled, counted by reading its source forwards (at most [`LAG_EVENTS_COUNT_MAX`]).

use strata_core::{
    EventFilter, EventStore, FilterTarget, Position, ReadAllOptions, ReadFrom, StreamName,
    StreamState,
};

use crate::definition::Source;
use crate::error::{Error, Result};

/// Lag in events is counted up to this many; a connector further behind reports this.
pub const LAG_EVENTS_COUNT_MAX: u64 = 10_000;

/// Events of `source` after `cursor` (a position, or a revision for a stream source;
/// `None`: from the start), at most [`LAG_EVENTS_COUNT_MAX`].
pub(crate) async fn lag_events(
    store: &dyn EventStore,
    id: &str,
    source: &Source,
    cursor: Option<u64>,
) -> Result<u64> {
    let filter = match source {
        Source::Stream { stream } => {
            let stream = StreamName::new(stream)?;
            let last = match store.stream_state(&stream).await? {
                StreamState::At(revision) => revision.0,
                StreamState::NoStream | StreamState::Tombstoned => return Ok(0),
            };
            let behind = match cursor {
                Some(handled) => last.saturating_sub(handled),
                None => last + 1,
            };
            return Ok(behind.min(LAG_EVENTS_COUNT_MAX));
        }
        Source::All { filter: None } => None,
        Source::All { filter: Some(spec) } => {
            Some(
                spec.to_filter()
                    .map_err(|reason| Error::InvalidDefinition {
                        id: id.to_owned(),
                        reason,
                    })?,
            )
        }
        Source::Category { category } => Some(EventFilter::prefixes(
            FilterTarget::StreamName,
            vec![category.clone()],
        )?),
    };
    let mut from = cursor.map_or(ReadFrom::Start, |cursor| ReadFrom::At(Position(cursor)));
    let mut count = 0;
    loop {
        let page = store
            .read_all(ReadAllOptions {
                from,
                max_count: 1_024,
                filter: filter.clone(),
                ..ReadAllOptions::forwards()
            })
            .await?;
        count += page
            .events
            .iter()
            .filter(|event| cursor.is_none_or(|cursor| event.position.0 > cursor))
            .filter(|event| !event.stream.is_system())
            .filter(|event| match source {
                Source::Category { category } => event.stream.category() == category,
                _ => true,
            })
            .count() as u64;
        if page.is_end
            || count >= LAG_EVENTS_COUNT_MAX
            || page.next_position.0 == from_position(from)
        {
            return Ok(count.min(LAG_EVENTS_COUNT_MAX));
        }
        from = ReadFrom::At(page.next_position);
    }
}

fn from_position(from: ReadFrom<Position>) -> u64 {
    match from {
        ReadFrom::At(position) => position.0,
        ReadFrom::Start | ReadFrom::End => u64::MAX,
    }
}
