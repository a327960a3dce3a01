//! `Streams.Read`: stream and `$all` reads (paged, any length) and catch-up subscriptions
//! with filters, checkpoints and `caught_up`. Each call runs as one task writing into a
//! bounded channel: a slow client holds back only its own task, which ends when the
//! client goes away.

use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use futures::future::Either;
use futures::stream::{self, StreamExt as _};
use strata_core::{
    Direction, EventFilter, EventId, EventStore, FilterTarget, Position, ReadAllOptions, ReadFrom,
    ReadStreamOptions, RecordedEvent, Revision, SUBSCRIPTION_BUFFER_DEFAULT, StreamName,
    StreamSlice, SubscribeFrom, Subscription, SubscriptionItem, subscribe_to_all,
    subscribe_to_stream,
};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::Stream;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert::{UuidFormat, invalid, recorded_event, stream_identifier, stream_name};
use crate::errors::to_status;
use crate::proto::event_store::client::streams::read_req::options::{
    self, AllOptions, CountOption, FilterOption, ReadDirection, StreamOption, StreamOptions,
    all_options, filter_options, stream_options, uuid_option,
};
use crate::proto::event_store::client::streams::read_resp::{self, Content, read_event};
use crate::proto::event_store::client::streams::{ReadReq, ReadResp, read_req};
use crate::proto::event_store::client::{AllStreamPosition, Empty};

/// The stream of answers of one Read call.
pub(crate) type ReadAnswers = Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send>>;

/// Pages of answers buffered per call before the reading task waits for the client (a page
/// is one store page of events, or one single answer).
const PAGES_BUFFERED_MAX: usize = 16;
/// Events read from the store per page.
const PAGE_EVENTS_MAX: usize = 1_024;

/// Answers travel to the response stream a page at a time: one channel message (and one
/// task wake-up) per page, not per event.
type Answers = mpsc::Sender<Result<Vec<ReadResp>, Status>>;

/// What one Read call asks for, checked.
struct ReadPlan {
    target: Target,
    direction: Direction,
    /// `None` for a subscription.
    count: Option<u64>,
    filter: Option<EventFilter>,
    uuid_format: UuidFormat,
    /// Clients at compatibility level 1 or more expect first/last position messages.
    positions_wanted: bool,
}

enum Target {
    Stream(StreamName, ReadFrom<Revision>),
    All(ReadFrom<Position>),
}

pub(crate) async fn read(
    store: &Arc<dyn EventStore>,
    request: Request<ReadReq>,
) -> Result<Response<ReadAnswers>, Status> {
    let options = request
        .into_inner()
        .options
        .ok_or_else(|| invalid("the read has no options"))?;
    let plan = plan(options)?;
    let (answers, receiver) = mpsc::channel(PAGES_BUFFERED_MAX);
    let store = Arc::clone(store);
    tokio::spawn(async move {
        let outcome = tokio::select! {
            outcome = run(&store, plan, &answers) => outcome,
            () = answers.closed() => Ok(()),
        };
        if let Err(status) = outcome {
            let _ = answers.send(Err(status)).await;
        }
    });
    let answers = ReceiverStream::new(receiver).flat_map(|page| match page {
        Ok(page) => Either::Left(stream::iter(page.into_iter().map(Ok))),
        Err(status) => Either::Right(stream::iter(std::iter::once(Err(status)))),
    });
    Ok(Response::new(Box::pin(answers)))
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
    let filter = match options.filter_option {
        Some(FilterOption::Filter(filter)) => Some(event_filter(filter)?),
        Some(FilterOption::NoFilter(Empty {})) | None => None,
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
        uuid_format,
        positions_wanted,
    })
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

async fn run(store: &Arc<dyn EventStore>, plan: ReadPlan, answers: &Answers) -> Result<(), Status> {
    match (plan.count, &plan.target) {
        (Some(count), Target::Stream(stream, from)) => {
            read_stream(store, stream, *from, count, &plan, answers).await
        }
        (Some(count), Target::All(from)) => read_all(store, *from, count, &plan, answers).await,
        (None, _) => subscribe(store, &plan, answers).await,
    }
}

async fn send(answers: &Answers, content: Content) -> Result<(), Status> {
    send_page(answers, vec![content]).await
}

async fn send_page(answers: &Answers, page: Vec<Content>) -> Result<(), Status> {
    let page = page
        .into_iter()
        .map(|content| ReadResp {
            content: Some(content),
        })
        .collect();
    answers
        .send(Ok(page))
        .await
        // The client went away: nothing to tell it, and the task ends.
        .map_err(|_| Status::cancelled("the client went away"))
}

fn event_page(events: &[RecordedEvent], format: UuidFormat) -> Vec<Content> {
    events
        .iter()
        .map(|event| event_content(event, format))
        .collect()
}

fn event_content(event: &RecordedEvent, format: UuidFormat) -> Content {
    Content::Event(read_resp::ReadEvent {
        event: Some(recorded_event(event, format)),
        link: None,
        position: Some(read_event::Position::CommitPosition(event.position.0)),
    })
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
    while remaining > 0 {
        let options = ReadStreamOptions {
            direction: plan.direction,
            from,
            max_count: usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(PAGE_EVENTS_MAX),
        };
        let (events, last) = match store
            .read_stream(stream, options)
            .await
            .map_err(to_status)?
        {
            StreamSlice::NotFound if last_revision.is_none() => {
                let not_found = read_resp::StreamNotFound {
                    stream_identifier: Some(stream_identifier(stream)),
                };
                return send(answers, Content::StreamNotFound(not_found)).await;
            }
            StreamSlice::NotFound => break,
            StreamSlice::Found {
                events,
                last_revision,
            } => (events, last_revision),
        };
        last_revision = Some(last);
        let page_full = events.len() == options.max_count;
        let Some(final_event) = events.last() else {
            break;
        };
        from = match plan.direction {
            Direction::Forwards => ReadFrom::At(Revision(final_event.revision.0 + 1)),
            Direction::Backwards if final_event.revision.0 == 0 => {
                remaining = 0;
                ReadFrom::Start
            }
            Direction::Backwards => ReadFrom::At(Revision(final_event.revision.0 - 1)),
        };
        remaining = remaining.saturating_sub(events.len() as u64);
        send_page(answers, event_page(&events, plan.uuid_format)).await?;
        if !page_full {
            break;
        }
    }
    if plan.positions_wanted
        && let Some(last) = last_revision
    {
        send(answers, Content::LastStreamPosition(last.0)).await?;
    }
    Ok(())
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
    while remaining > 0 {
        let options = ReadAllOptions {
            direction: plan.direction,
            from,
            max_count: usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(PAGE_EVENTS_MAX),
            filter: plan.filter.clone(),
        };
        let slice = store.read_all(options).await.map_err(to_status)?;
        remaining = remaining.saturating_sub(slice.events.len() as u64);
        if !slice.events.is_empty() {
            send_page(answers, event_page(&slice.events, plan.uuid_format)).await?;
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
        send(answers, Content::LastAllStreamPosition(position)).await?;
    }
    Ok(())
}

async fn subscribe(
    store: &Arc<dyn EventStore>,
    plan: &ReadPlan,
    answers: &Answers,
) -> Result<(), Status> {
    if plan.direction == Direction::Backwards {
        return Err(invalid("subscriptions read forwards only"));
    }
    let mut subscription = match &plan.target {
        Target::Stream(stream, from) => subscribe_to_stream(
            Arc::clone(store),
            stream.clone(),
            subscribe_from(*from),
            SUBSCRIPTION_BUFFER_DEFAULT,
        ),
        Target::All(from) => subscribe_to_all(
            Arc::clone(store),
            subscribe_from(*from),
            plan.filter.clone(),
            SUBSCRIPTION_BUFFER_DEFAULT,
        ),
    };
    let confirmation = read_resp::SubscriptionConfirmation {
        subscription_id: EventId::new_random().to_string(),
    };
    send(answers, Content::Confirmation(confirmation)).await?;
    follow(&mut subscription, plan, answers).await
}

/// A subscription's start: a given revision or position is exclusive, as clients expect.
fn subscribe_from<T>(from: ReadFrom<T>) -> SubscribeFrom<T> {
    match from {
        ReadFrom::Start => SubscribeFrom::Start,
        ReadFrom::End => SubscribeFrom::End,
        ReadFrom::At(place) => SubscribeFrom::After(place),
    }
}

async fn follow(
    subscription: &mut Subscription,
    plan: &ReadPlan,
    answers: &Answers,
) -> Result<(), Status> {
    while let Some(item) = subscription.next().await {
        let content = match item.map_err(to_status)? {
            SubscriptionItem::Event(event) => event_content(&event, plan.uuid_format),
            SubscriptionItem::CaughtUp => Content::CaughtUp(read_resp::CaughtUp {
                timestamp: Some(prost_types::Timestamp::from(SystemTime::now())),
                stream_revision: None,
                position: None,
            }),
            SubscriptionItem::Checkpoint(position) => Content::Checkpoint(read_resp::Checkpoint {
                commit_position: position.0,
                prepare_position: position.0,
                timestamp: Some(prost_types::Timestamp::from(SystemTime::now())),
            }),
        };
        send(answers, content).await?;
    }
    Err(Status::unavailable("the store closed"))
}
