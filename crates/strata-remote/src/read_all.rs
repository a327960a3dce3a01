//! Reads of one stream and of `$all` over the client, with the paging the contract asks for.

use kurrentdb::{Client, ReadEvent, StreamPosition, SubscriptionFilter};
use strata_core::{
    AllSlice, Direction, Error, EventFilter, FilterTarget, Position, ReadAllOptions, ReadFrom,
    ReadStreamOptions, RecordedEvent, Result, Revision, StreamName, StreamSlice, StreamState,
};

use crate::convert::recorded;
use crate::errors::{from_client, probe_stream_state, to_core};

/// Reads one stream; the last revision comes from the server's `last_stream_position`.
pub(crate) async fn read_stream(
    client: &Client,
    stream: &StreamName,
    options: ReadStreamOptions,
) -> Result<StreamSlice> {
    let position = match options.from {
        ReadFrom::Start => StreamPosition::Start,
        ReadFrom::End => StreamPosition::End,
        ReadFrom::At(Revision(revision)) => StreamPosition::Position(revision),
    };
    let client_options = kurrentdb::ReadStreamOptions::default()
        .position(position)
        // A read of none still asks for one, to learn whether the stream exists.
        .max_count(options.max_count.max(1));
    let client_options = match options.direction {
        Direction::Forwards => client_options.forwards(),
        Direction::Backwards => client_options.backwards(),
    };
    let map = |error| to_core(error, stream, strata_core::ExpectedRevision::Any);
    let mut reading = match client.read_stream(stream.as_str(), &client_options).await {
        Ok(reading) => reading,
        Err(kurrentdb::Error::ResourceNotFound) => return Ok(StreamSlice::NotFound),
        Err(error) => return Err(map(error)),
    };
    let mut events = Vec::new();
    let mut last_revision = None;
    loop {
        match reading.next_read_event().await {
            Ok(Some(ReadEvent::Event(resolved))) => {
                events.extend(resolved.event.map(recorded));
            }
            Ok(Some(ReadEvent::LastStreamPosition(last))) => last_revision = Some(Revision(last)),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(StreamSlice::NotFound),
            Err(error) => return Err(map(error)),
        }
    }
    events.truncate(options.max_count);
    let last_revision = match last_revision {
        Some(last) => last,
        // A server that does not send it (no compatibility positions): ask the state.
        None => match probe_stream_state(client, stream).await? {
            StreamState::At(last) => last,
            StreamState::NoStream => return Ok(StreamSlice::NotFound),
            StreamState::Tombstoned => {
                return Err(Error::StreamDeleted {
                    stream: stream.clone(),
                });
            }
        },
    };
    Ok(StreamSlice::Found {
        events,
        last_revision,
    })
}

/// Position of the last record of `$all` (events, metadata and tombstones alike).
pub(crate) async fn last_event_position(client: &Client) -> Result<Option<Position>> {
    let last = fetch(client, Direction::Backwards, ReadFrom::End, 1, None).await?;
    Ok(last.first().map(|event| event.position))
}

/// The place just after the event at `position`: no record starts there, and reading from
/// it means "everything after that event" (see [`fetch`]).
fn just_after(position: Position) -> Position {
    Position(position.0.saturating_add(1))
}

/// One page of `$all` as the contract describes it.
pub(crate) async fn read_all(client: &Client, options: ReadAllOptions) -> Result<AllSlice> {
    match options.direction {
        Direction::Forwards => read_all_forwards(client, options).await,
        Direction::Backwards => read_all_backwards(client, options).await,
    }
}

async fn read_all_forwards(client: &Client, options: ReadAllOptions) -> Result<AllSlice> {
    let start = match options.from {
        ReadFrom::Start => Position::START,
        ReadFrom::At(position) => position,
        // Nothing lies past the end: the slice only says where the end is.
        ReadFrom::End => {
            let last = last_event_position(client).await?;
            return Ok(AllSlice {
                events: Vec::new(),
                next_position: last.map_or(Position::START, just_after),
                is_end: true,
                last_examined: None,
            });
        }
    };
    let wanted = options.max_count;
    if wanted == 0 {
        return Ok(AllSlice {
            events: Vec::new(),
            next_position: start,
            is_end: false,
            last_examined: None,
        });
    }
    // A filtered read learns the last record before it starts: everything up to it is looked
    // at when the read reaches the end, which is what a checkpoint must cover.
    let last_before = match &options.filter {
        Some(_) => last_event_position(client).await?,
        None => None,
    };
    let mut events = fetch(
        client,
        Direction::Forwards,
        options.from,
        wanted.saturating_add(1),
        options.filter.as_ref(),
    )
    .await?;
    if events.len() > wanted {
        let next_position = events[wanted].position;
        events.truncate(wanted);
        let last_examined = events.last().map(|event| event.position);
        return Ok(AllSlice {
            events,
            next_position,
            is_end: false,
            last_examined,
        });
    }
    let last_read = events.last().map(|event| event.position);
    let last_examined = last_read.max(last_before);
    Ok(AllSlice {
        events,
        next_position: last_examined.map_or(start, just_after).max(start),
        is_end: true,
        last_examined,
    })
}

async fn read_all_backwards(client: &Client, options: ReadAllOptions) -> Result<AllSlice> {
    let wanted = options.max_count;
    let start = match options.from {
        ReadFrom::At(position) => position,
        ReadFrom::Start => Position::START,
        ReadFrom::End => Position::END,
    };
    if wanted == 0 || options.from == ReadFrom::Start {
        return Ok(AllSlice {
            events: Vec::new(),
            next_position: start,
            is_end: options.from == ReadFrom::Start,
            last_examined: None,
        });
    }
    let mut events = fetch(
        client,
        Direction::Backwards,
        options.from,
        wanted.saturating_add(1),
        options.filter.as_ref(),
    )
    .await?;
    let is_end = events.len() <= wanted;
    events.truncate(wanted);
    let last_examined = events.last().map(|event| event.position);
    Ok(AllSlice {
        next_position: last_examined.unwrap_or(Position::START),
        events,
        is_end,
        last_examined,
    })
}

/// Up to `count` events of `$all` from `from`, with the server's inclusive (forwards) or
/// exclusive (backwards) start. A position the server refuses because no record starts
/// there is the "just after" of the event before it ([`just_after`]); it is read from that
/// event, which is then left out (forwards) or added (backwards).
async fn fetch(
    client: &Client,
    direction: Direction,
    from: ReadFrom<Position>,
    count: usize,
    filter: Option<&EventFilter>,
) -> Result<Vec<RecordedEvent>> {
    match fetch_exact(client, direction, from, count, filter).await {
        Err(Error::InvalidArgument { reason }) => {
            let ReadFrom::At(position) = from else {
                return Err(Error::InvalidArgument { reason });
            };
            let Some(before) = position.0.checked_sub(1).map(Position) else {
                return Err(Error::InvalidArgument { reason });
            };
            match direction {
                Direction::Forwards => {
                    let mut events = fetch_exact(
                        client,
                        direction,
                        ReadFrom::At(before),
                        count.saturating_add(1),
                        filter,
                    )
                    .await?;
                    events.retain(|event| event.position >= position);
                    events.truncate(count);
                    Ok(events)
                }
                Direction::Backwards => {
                    let at_before =
                        fetch_exact(client, Direction::Forwards, ReadFrom::At(before), 1, filter)
                            .await?
                            .into_iter()
                            .filter(|event| event.position == before);
                    let older = fetch_exact(
                        client,
                        direction,
                        ReadFrom::At(before),
                        count.saturating_sub(1),
                        filter,
                    )
                    .await?;
                    Ok(at_before.chain(older).take(count).collect())
                }
            }
        }
        other => other,
    }
}

/// Up to `count` events exactly as the server reads them.
async fn fetch_exact(
    client: &Client,
    direction: Direction,
    from: ReadFrom<Position>,
    count: usize,
    filter: Option<&EventFilter>,
) -> Result<Vec<RecordedEvent>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let position = match from {
        ReadFrom::Start => StreamPosition::Start,
        ReadFrom::End => StreamPosition::End,
        ReadFrom::At(Position(position)) => StreamPosition::Position(kurrentdb::Position {
            commit: position,
            prepare: position,
        }),
    };
    let mut options = kurrentdb::ReadAllOptions::default()
        .position(position)
        .max_count(count);
    options = match direction {
        Direction::Forwards => options.forwards(),
        Direction::Backwards => options.backwards(),
    };
    if let Some(filter) = filter {
        options = options.filter(subscription_filter(filter));
    }
    let mut reading = client.read_all(&options).await.map_err(from_client)?;
    let mut events = Vec::new();
    while let Some(resolved) = reading.next().await.map_err(from_client)? {
        events.extend(resolved.event.map(recorded));
    }
    Ok(events)
}

/// A Strata filter as the client sends it.
pub(crate) fn subscription_filter(filter: &EventFilter) -> SubscriptionFilter {
    let client_filter = match filter.target() {
        FilterTarget::StreamName => SubscriptionFilter::on_stream_name(),
        FilterTarget::EventType => SubscriptionFilter::on_event_type(),
    };
    match (filter.prefix_list(), filter.regex_pattern()) {
        (Some(prefixes), _) => prefixes
            .iter()
            .fold(client_filter, |client_filter, prefix| {
                client_filter.add_prefix(prefix)
            }),
        (None, Some(pattern)) => client_filter.regex(pattern),
        (None, None) => client_filter,
    }
}
