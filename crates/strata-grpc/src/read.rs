//! `Streams.Read`: stream and `$all` reads (paged, any length) and catch-up subscriptions
//! with filters, checkpoints and `caught_up`. Each call runs as one task writing into a
//! bounded channel: a slow client holds back only its own task, which ends when the
//! client goes away.

use std::sync::Arc;

use strata_auth::LoginWatch;
use strata_core::{
    AllSlice, Direction, Error, EventFilter, EventStore, FilterTarget, PageBudget, Position,
    ReadAllOptions, ReadFrom, ReadStreamOptions, RecordedEvent, Revision, StreamName, StreamSlice,
    event_bytes,
    system_streams::{ResolvedEvent, ResolvedSlice, resolve_links},
};
use tonic::{Request, Response, Status};

use crate::convert::{UuidFormat, invalid, stream_identifier, stream_name};
use crate::errors::{read_all_invalid_position, to_status};
use crate::proto::event_store::client::streams::read_req::options::{
    self, AllOptions, CountOption, FilterOption, ReadDirection, StreamOption, StreamOptions,
    all_options, filter_options, stream_options, uuid_option,
};
use crate::proto::event_store::client::streams::read_resp::{self, Content};
use crate::proto::event_store::client::streams::{ReadReq, read_req};
use crate::proto::event_store::client::{AllStreamPosition, Empty};
use crate::read_answer::ReadAnswer;
use crate::read_answers::{Answers, ReadAnswers};
use crate::subscribe::{SubscriptionSlot, SubscriptionSlots, subscribe};

/// Events read from the store per page, at most.
const PAGE_EVENTS_MAX: usize = 1_024;

/// Bytes of events a page aims at: pages ask for fewer events when events are large.
const PAGE_BYTES_TARGET: usize = 4 * 1024 * 1024;

/// Events a filtered read looks at per read of the store when the client leaves the window
/// to the server (`count`), as the reference server.
const FILTER_WINDOW_DEFAULT: u32 = 32;

/// What one Read call asks for, checked.
pub(crate) struct ReadPlan {
    pub(crate) target: Target,
    pub(crate) direction: Direction,
    /// `None` for a subscription.
    count: Option<u64>,
    pub(crate) filter: Option<EventFilter>,
    /// Filtered reads: events looked at per read of the store (the filter's window).
    window_events: usize,
    /// Filtered subscriptions: events looked at between checkpoints (window × multiplier).
    pub(crate) checkpoint_interval_events: usize,
    pub(crate) uuid_format: UuidFormat,
    /// Links (`$>`) come with the events they point at.
    pub(crate) resolve_links: bool,
    /// Clients at compatibility level 1 or more expect first/last position messages.
    positions_wanted: bool,
}

pub(crate) enum Target {
    Stream(StreamName, ReadFrom<Revision>),
    All(ReadFrom<Position>),
}

pub(crate) async fn read(
    store: &Arc<dyn EventStore>,
    login: LoginWatch,
    subscriptions: &SubscriptionSlots,
    request: Request<ReadReq>,
) -> Result<Response<ReadAnswers>, Status> {
    let connection = request
        .extensions()
        .get::<strata_core::ConnectionSubscriptions>()
        .cloned();
    let options = request
        .into_inner()
        .options
        .ok_or_else(|| invalid("the read has no options"))?;
    let plan = plan(options)?;
    // A subscription takes its slot before it is confirmed, or is refused.
    let slot = match plan.count {
        None => Some(subscriptions.take(connection.as_ref())?),
        Some(_) => None,
    };
    let (answers, stream) = if slot.is_some() {
        crate::read_answers::channel_with_budget(crate::subscribe::SUBSCRIPTION_ANSWER_BYTES)
    } else {
        crate::read_answers::channel()
    };
    let store = Arc::clone(store);
    tokio::spawn(async move {
        let outcome = tokio::select! {
            outcome = run(&store, plan, slot, login, &answers) => outcome,
            () = answers.closed() => Ok(()),
        };
        if let Err(status) = outcome {
            answers.fail(status).await;
        }
    });
    Ok(Response::new(stream))
}

fn plan(options: read_req::Options) -> Result<ReadPlan, Status> {
    let direction = match ReadDirection::try_from(options.read_direction) {
        Ok(ReadDirection::Forwards) => Direction::Forwards,
        Ok(ReadDirection::Backwards) => Direction::Backwards,
        Err(_) => return Err(invalid("unknown read direction")),
    };
    let target = match options.stream_option {
        Some(StreamOption::Stream(stream)) => stream_target(stream)?,
        Some(StreamOption::All(all)) => Target::All(all_from(all)?),
        None => return Err(invalid("the read names neither a stream nor $all")),
    };
    let count = match options.count_option {
        Some(CountOption::Count(count)) => Some(count),
        Some(CountOption::Subscription(_)) => None,
        None => return Err(invalid("the read gives neither a count nor a subscription")),
    };
    let (filter, window_events, checkpoint_interval_events) = match options.filter_option {
        Some(FilterOption::Filter(filter)) => {
            let (window, interval) = filter_window(&filter, count.is_none())?;
            (Some(event_filter(filter)?), window, interval)
        }
        Some(FilterOption::NoFilter(Empty {})) | None => (None, 0, 0),
    };
    if filter.is_some() && matches!(target, Target::Stream(..)) {
        return Err(invalid("filters apply to $all only"));
    }
    let uuid_format = match options.uuid_option.and_then(|option| option.content) {
        Some(uuid_option::Content::String(Empty {})) => UuidFormat::String,
        Some(uuid_option::Content::Structured(Empty {})) | None => UuidFormat::Structured,
    };
    let positions_wanted = options
        .control_option
        .is_some_and(|control| control.compatibility >= 1);
    Ok(ReadPlan {
        target,
        direction,
        count,
        filter,
        window_events,
        checkpoint_interval_events,
        uuid_format,
        resolve_links: options.resolve_links,
        positions_wanted,
    })
}

/// The filter's window (events looked at per read of the store: `max`, or the reference
/// server's 32 for `count`) and, for a subscription, its checkpoint interval: window ×
/// `checkpointIntervalMultiplier` events looked at.
fn filter_window(
    filter: &options::FilterOptions,
    subscription: bool,
) -> Result<(usize, usize), Status> {
    let window = match filter.window {
        Some(filter_options::Window::Max(0)) => {
            return Err(invalid("the filter window `max` must be at least 1"));
        }
        Some(filter_options::Window::Max(max)) => max,
        Some(filter_options::Window::Count(Empty {})) | None => FILTER_WINDOW_DEFAULT,
    };
    let multiplier = filter.checkpoint_interval_multiplier;
    if subscription && multiplier == 0 {
        return Err(invalid(
            "the filter's checkpointIntervalMultiplier must be at least 1",
        ));
    }
    let to_usize = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
    let interval = u64::from(window) * u64::from(multiplier.max(1));
    Ok((to_usize(u64::from(window)), to_usize(interval)))
}

fn stream_target(stream: StreamOptions) -> Result<Target, Status> {
    let name = stream_name(stream.stream_identifier.as_ref())?;
    let from = match stream.revision_option {
        Some(stream_options::RevisionOption::Revision(revision)) => {
            ReadFrom::At(Revision(revision))
        }
        Some(stream_options::RevisionOption::Start(Empty {})) => ReadFrom::Start,
        Some(stream_options::RevisionOption::End(Empty {})) => ReadFrom::End,
        None => return Err(invalid("the stream read gives no revision")),
    };
    Ok(Target::Stream(name, from))
}

fn all_from(all: AllOptions) -> Result<ReadFrom<Position>, Status> {
    match all.all_option {
        Some(all_options::AllOption::Position(position)) => {
            Ok(ReadFrom::At(Position(position.commit_position)))
        }
        Some(all_options::AllOption::Start(Empty {})) => Ok(ReadFrom::Start),
        Some(all_options::AllOption::End(Empty {})) => Ok(ReadFrom::End),
        None => Err(invalid("the $all read gives no position")),
    }
}

/// A KurrentDB filter: prefixes when any are given, else the regex (.NET syntax).
fn event_filter(filter: options::FilterOptions) -> Result<EventFilter, Status> {
    let (target, expression) = match filter.filter {
        Some(filter_options::Filter::StreamIdentifier(expression)) => {
            (FilterTarget::StreamName, expression)
        }
        Some(filter_options::Filter::EventType(expression)) => {
            (FilterTarget::EventType, expression)
        }
        None => {
            return Err(invalid(
                "the filter names neither stream names nor event types",
            ));
        }
    };
    let filter = if expression.prefix.is_empty() {
        EventFilter::regex(target, &expression.regex)
    } else {
        EventFilter::prefixes(target, expression.prefix)
    };
    filter.map_err(to_status)
}

/// Serves a read; `slot` is the subscription slot a read without a count took.
async fn run(
    store: &Arc<dyn EventStore>,
    plan: ReadPlan,
    slot: Option<SubscriptionSlot>,
    login: LoginWatch,
    answers: &Answers,
) -> Result<(), Status> {
    match (plan.count, &plan.target, slot) {
        (Some(count), Target::Stream(stream, from), _) => {
            read_stream(store, stream, *from, count, &plan, answers).await
        }
        (Some(count), Target::All(from), _) => read_all(store, *from, count, &plan, answers).await,
        (None, _, Some(slot)) => subscribe(store, &plan, &slot, login, answers).await,
        (None, _, None) => Err(Status::internal("a subscription without its slot")),
    }
}

/// Sends a page of events, links resolved when the read asks for it, weighed by their bytes.
async fn send_events(
    store: &Arc<dyn EventStore>,
    answers: &Answers,
    events: Vec<RecordedEvent>,
    plan: &ReadPlan,
) -> Result<(), Status> {
    let (page, bytes) = if plan.resolve_links {
        let resolved = resolve_links(&**store, events).await.map_err(to_status)?;
        let bytes = resolved.iter().map(resolved_bytes).sum();
        (ReadAnswer::events(&resolved, plan.uuid_format), bytes)
    } else {
        let bytes = events.iter().map(event_bytes).sum();
        let page = ReadAnswer::plain_events(&events, plan.uuid_format);
        // The events' buffers go now, not after the page is queued.
        drop(events);
        (page, bytes)
    };
    answers.send_page(page, bytes).await
}

/// Bytes of an event and of the link it came through.
pub(crate) fn resolved_bytes(resolved: &ResolvedEvent) -> usize {
    resolved.event.as_ref().map_or(0, event_bytes) + resolved.link.as_ref().map_or(0, event_bytes)
}

async fn read_stream(
    store: &Arc<dyn EventStore>,
    stream: &StreamName,
    from: ReadFrom<Revision>,
    count: u64,
    plan: &ReadPlan,
    answers: &Answers,
) -> Result<(), Status> {
    let mut from = from;
    let mut remaining = count;
    let mut last_revision = None;
    let mut page = PageBudget::new(PAGE_EVENTS_MAX, PAGE_BYTES_TARGET);
    while remaining > 0 {
        let options = ReadStreamOptions {
            direction: plan.direction,
            from,
            max_count: usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(page.events()),
        };
        let Some((events, last)) = read_stream_page(store, stream, options, plan).await? else {
            if last_revision.is_none() {
                let not_found = read_resp::StreamNotFound {
                    stream_identifier: Some(stream_identifier(stream)),
                };
                return answers.send(Content::StreamNotFound(not_found)).await;
            }
            break;
        };
        last_revision = Some(last);
        page.observe_largest(events.largest_read_bytes());
        let page_full = events.len() == options.max_count;
        let Some(final_revision) = events.final_revision() else {
            break;
        };
        from = match plan.direction {
            Direction::Forwards => ReadFrom::At(Revision(final_revision + 1)),
            Direction::Backwards if final_revision == 0 => {
                remaining = 0;
                ReadFrom::Start
            }
            Direction::Backwards => ReadFrom::At(Revision(final_revision - 1)),
        };
        remaining = remaining.saturating_sub(events.len() as u64);
        events.send(answers, plan).await?;
        if !page_full {
            break;
        }
    }
    if plan.positions_wanted
        && let Some(last) = last_revision
    {
        answers.send(Content::LastStreamPosition(last.0)).await?;
    }
    Ok(())
}

/// A page of a stream read: the events read, with the events their links point at when
/// the read resolves links.
enum StreamPage {
    Plain(Vec<RecordedEvent>),
    Resolved(Vec<ResolvedEvent>),
}

/// A page of `stream` and the stream's last revision; `None` when the stream is not found.
/// A read resolving links asks the store for the targets with the page
/// ([`EventStore::read_stream_resolved`]), which may hand over the events a system stream's
/// links were built from instead of reading them again.
async fn read_stream_page(
    store: &Arc<dyn EventStore>,
    stream: &StreamName,
    options: ReadStreamOptions,
    plan: &ReadPlan,
) -> Result<Option<(StreamPage, Revision)>, Status> {
    if plan.resolve_links {
        let slice = store
            .read_stream_resolved(stream, options)
            .await
            .map_err(to_status)?;
        return Ok(match slice {
            ResolvedSlice::NotFound => None,
            ResolvedSlice::Found {
                events,
                last_revision,
            } => Some((StreamPage::Resolved(events), last_revision)),
        });
    }
    let slice = store
        .read_stream(stream, options)
        .await
        .map_err(to_status)?;
    Ok(match slice {
        StreamSlice::NotFound => None,
        StreamSlice::Found {
            events,
            last_revision,
        } => Some((StreamPage::Plain(events), last_revision)),
    })
}

impl StreamPage {
    fn len(&self) -> usize {
        match self {
            Self::Plain(events) => events.len(),
            Self::Resolved(events) => events.len(),
        }
    }

    /// Revision of the page's last event read (the link, for a resolved one).
    fn final_revision(&self) -> Option<u64> {
        match self {
            Self::Plain(events) => events.last().map(|event| event.revision.0),
            Self::Resolved(events) => events.last().map(|event| event.original().revision.0),
        }
    }

    /// Bytes of the page's largest event read (links weighed, not their targets), as
    /// [`PageBudget::observe`] weighs a page.
    fn largest_read_bytes(&self) -> usize {
        match self {
            Self::Plain(events) => events.iter().map(event_bytes).max(),
            Self::Resolved(events) => events
                .iter()
                .map(|event| event_bytes(event.original()))
                .max(),
        }
        .unwrap_or(0)
    }

    /// Sends the page's answers, weighed by their bytes.
    async fn send(self, answers: &Answers, plan: &ReadPlan) -> Result<(), Status> {
        let (page, bytes) = match self {
            Self::Plain(events) => {
                let bytes = events.iter().map(event_bytes).sum();
                (ReadAnswer::plain_events(&events, plan.uuid_format), bytes)
            }
            Self::Resolved(events) => {
                let bytes = events.iter().map(resolved_bytes).sum();
                (ReadAnswer::events(&events, plan.uuid_format), bytes)
            }
        };
        answers.send_page(page, bytes).await
    }
}

async fn read_all(
    store: &Arc<dyn EventStore>,
    from: ReadFrom<Position>,
    count: u64,
    plan: &ReadPlan,
    answers: &Answers,
) -> Result<(), Status> {
    let mut from = from;
    let mut remaining = count;
    let mut page = PageBudget::new(PAGE_EVENTS_MAX, PAGE_BYTES_TARGET);
    while remaining > 0 {
        let options = ReadAllOptions {
            direction: plan.direction,
            from,
            max_count: usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(page.events()),
            filter: plan.filter.clone(),
        };
        let slice = read_all_page(store, options, plan).await?;
        page.observe(&slice.events);
        remaining = remaining.saturating_sub(slice.events.len() as u64);
        if !slice.events.is_empty() {
            send_events(store, answers, slice.events, plan).await?;
        }
        if slice.is_end {
            break;
        }
        from = ReadFrom::At(slice.next_position);
    }
    if plan.positions_wanted {
        let last = store.watch_log_end().borrow().0;
        let position = AllStreamPosition {
            commit_position: last,
            prepare_position: last,
        };
        answers
            .send(Content::LastAllStreamPosition(position))
            .await?;
    }
    Ok(())
}

/// One page of a `$all` read; a filtered one looks at no more events than the window. A
/// start that is not an event's position is answered as the reference server does.
async fn read_all_page(
    store: &Arc<dyn EventStore>,
    options: ReadAllOptions,
    plan: &ReadPlan,
) -> Result<AllSlice, Status> {
    let filtered = options.filter.is_some();
    let read = if filtered {
        store
            .read_all_window(options, plan.window_events)
            .await
            .map(|window| window.slice)
    } else {
        store.read_all(options).await
    };
    read.map_err(|error| match error {
        Error::InvalidArgument { .. } => read_all_invalid_position(filtered),
        error => to_status(error),
    })
}
