//! `PersistentSubscriptions.Read` (bidirectional): the client sends its options, then acks
//! and nacks; the server answers a confirmation, then events with their retry counts. One
//! task per call moves events out and acks in; its bounded channel holds back only this
//! call, and the call ends when the client goes away or the group drops the consumer.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::future::Either;
use futures::stream::{self, StreamExt as _};
use strata_auth::{LoginWatch, Principal, Security};
use strata_core::{RecordedEvent, StreamName};
use strata_persistent::{
    CONSUMER_BUFFER_MAX, Consumer, ConsumerOptions, NackAction, PersistentEvent,
    PersistentSubscriptions, SubscriptionSource,
};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::Stream;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::access::{Access, auth_status};
use crate::convert::{
    UuidFormat, event_id, invalid, stream_identifier, system_metadata, wire_uuid,
};
use crate::persistent::settings::{group_name, source};
use crate::persistent::status::persistent_status;
use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::persistent_subscriptions::read_req::nack::Action;
use crate::proto::event_store::client::persistent_subscriptions::read_req::options::{
    StreamOption, uuid_option,
};
use crate::proto::event_store::client::persistent_subscriptions::read_req::{self, Ack, Nack};
use crate::proto::event_store::client::persistent_subscriptions::read_resp::{
    self, Content, ReadEvent, read_event,
};
use crate::proto::event_store::client::persistent_subscriptions::{ReadReq, ReadResp};

/// The stream of answers of one Read call.
pub(crate) type ReadAnswers = Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send>>;

/// Pages of answers buffered per call before the task waits for the client.
const PAGES_BUFFERED_MAX: usize = 16;
/// Events sent per page (one channel message, one task wake-up).
const PAGE_EVENTS_MAX: usize = 256;

type Answers = mpsc::Sender<Result<Vec<ReadResp>, Status>>;

pub(crate) async fn read(
    manager: &Arc<PersistentSubscriptions>,
    access: &Access,
    request: Request<Streaming<ReadReq>>,
) -> Result<Response<ReadAnswers>, Status> {
    let principal = access.principal(&request).await?;
    let authorization = request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let connection_name = request
        .metadata()
        .get("connection-name")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut inbound = request.into_inner();
    let first = inbound
        .message()
        .await?
        .ok_or_else(|| invalid("the call ended before its options"))?;
    let Some(read_req::Content::Options(options)) = first.content else {
        return Err(invalid("the first message of a Read must be its options"));
    };
    let subscription_source = match &options.stream_option {
        Some(StreamOption::StreamIdentifier(stream)) => source(Some(stream), false)?,
        Some(StreamOption::All(Empty {})) => source(None, true)?,
        None => return Err(invalid("the request names neither a stream nor $all")),
    };
    let read_stream = match &subscription_source {
        SubscriptionSource::Stream(stream) => stream.clone(),
        SubscriptionSource::All => {
            StreamName::new(strata_auth::ALL_STREAM).map_err(|error| invalid(error.to_string()))?
        }
    };
    if principal.is_anonymous() && access.security().is_enabled() {
        return Err(crate::errors::access_denied());
    }
    access
        .security()
        .authorize(&principal, strata_auth::StreamOperation::Read, &read_stream)
        .await
        .map_err(auth_status)?;
    let group = group_name(options.group_name)?;
    let format = match options.uuid_option.and_then(|option| option.content) {
        Some(uuid_option::Content::String(Empty {})) => UuidFormat::String,
        Some(uuid_option::Content::Structured(Empty {})) | None => UuidFormat::Structured,
    };
    let buffer_size = usize::try_from(options.buffer_size)
        .unwrap_or(1)
        .clamp(1, CONSUMER_BUFFER_MAX);
    let consumer_options = ConsumerOptions {
        buffer_size,
        name: connection_name,
    };
    let consumer = manager
        .connect(&subscription_source, &group, consumer_options)
        .await
        .map_err(persistent_status)?;
    let login = access
        .security()
        .watch_login(authorization.as_deref(), &principal);
    let reader = Reader {
        security: Arc::clone(access.security()),
        principal,
        of_all: subscription_source == SubscriptionSource::All,
        format,
    };
    let (answers, receiver) = mpsc::channel(PAGES_BUFFERED_MAX);
    tokio::spawn(async move {
        if let Err(status) = serve(consumer, inbound, &answers, reader, login).await {
            let _ = answers.send(Err(status)).await;
        }
    });
    let answers = ReceiverStream::new(receiver).flat_map(|page| match page {
        Ok(page) => Either::Left(stream::iter(page.into_iter().map(Ok))),
        Err(status) => Either::Right(stream::iter(std::iter::once(Err(status)))),
    });
    Ok(Response::new(Box::pin(answers)))
}

/// Who reads one Read call's events, and how.
struct Reader {
    security: Arc<Security>,
    principal: Principal,
    /// A `$all` group: its events come from streams the reader may not be allowed to read.
    of_all: bool,
    format: UuidFormat,
}

impl Reader {
    /// The answers for `events`. Of a `$all` group, events of streams the reader may not
    /// read are left out and acked, so the group moves on past them.
    async fn page(
        &self,
        consumer: &Consumer,
        events: Vec<PersistentEvent>,
    ) -> Result<Vec<Content>, Status> {
        if !self.of_all || !self.security.is_enabled() || self.principal.is_admin() {
            return Ok(events
                .iter()
                .map(|event| event_content(event, self.format))
                .collect());
        }
        let mut verdicts: HashMap<StreamName, bool> = HashMap::new();
        let mut page = Vec::with_capacity(events.len());
        let mut hidden = Vec::new();
        for event in &events {
            let stream = &event.original().stream;
            let readable = match verdicts.get(stream) {
                Some(readable) => *readable,
                None => {
                    let readable = self
                        .security
                        .may_read(&self.principal, stream)
                        .await
                        .map_err(auth_status)?;
                    verdicts.insert(stream.clone(), readable);
                    readable
                }
            };
            if readable {
                page.push(event_content(event, self.format));
            } else {
                hidden.push(event.ack_id());
            }
        }
        if !hidden.is_empty() {
            consumer.ack(hidden).await.map_err(persistent_status)?;
        }
        Ok(page)
    }
}

/// Moves events out and acks in until either side ends, or the reader's user can no longer
/// log in. Returning ends the call (and drops the consumer, whose unacknowledged events go
/// to others).
async fn serve(
    mut consumer: Consumer,
    mut inbound: Streaming<ReadReq>,
    answers: &Answers,
    reader: Reader,
    mut login: LoginWatch,
) -> Result<(), Status> {
    let confirmation = read_resp::SubscriptionConfirmation {
        subscription_id: consumer.subscription_id(),
    };
    send(
        answers,
        vec![Content::SubscriptionConfirmation(confirmation)],
    )
    .await?;
    loop {
        tokio::select! {
            delivery = consumer.next() => {
                let first = delivery.map_err(persistent_status)?;
                let (events, ended) = page_after(&mut consumer, first);
                let page = reader.page(&consumer, events).await?;
                if !page.is_empty() {
                    send(answers, page).await?;
                }
                if let Some(error) = ended {
                    return Err(persistent_status(error));
                }
            }
            message = inbound.message() => match message {
                Ok(Some(message)) => settle(&consumer, message).await?,
                // The client closed its side or went away.
                Ok(None) | Err(_) => return Ok(()),
            },
            () = login.revoked() => return Err(crate::errors::access_denied()),
            () = answers.closed() => return Ok(()),
        }
    }
}

/// `first` and whatever else is already waiting, up to a page; and the error that ended the
/// consumer, if it ended.
fn page_after(
    consumer: &mut Consumer,
    first: PersistentEvent,
) -> (Vec<PersistentEvent>, Option<strata_persistent::Error>) {
    let mut page = vec![first];
    while page.len() < PAGE_EVENTS_MAX {
        match consumer.try_next() {
            Some(Ok(event)) => page.push(event),
            Some(Err(error)) => return (page, Some(error)),
            None => break,
        }
    }
    (page, None)
}

async fn send(answers: &Answers, page: Vec<Content>) -> Result<(), Status> {
    let page = page
        .into_iter()
        .map(|content| ReadResp {
            content: Some(content),
        })
        .collect();
    answers
        .send(Ok(page))
        .await
        .map_err(|_| Status::cancelled("the client went away"))
}

/// Applies an ack or a nack from the client.
async fn settle(consumer: &Consumer, message: ReadReq) -> Result<(), Status> {
    let outcome = match message.content {
        Some(read_req::Content::Ack(Ack { ids, .. })) => consumer.ack(event_ids(&ids)?).await,
        Some(read_req::Content::Nack(Nack { ids, action, .. })) => {
            let action = match Action::try_from(action) {
                Ok(Action::Park) => NackAction::Park,
                Ok(Action::Skip) => NackAction::Skip,
                Ok(Action::Stop) => NackAction::Stop,
                Ok(Action::Retry | Action::Unknown) | Err(_) => NackAction::Retry,
            };
            consumer.nack(event_ids(&ids)?, action).await
        }
        Some(read_req::Content::Options(_)) => {
            return Err(invalid("options may be sent only once per Read"));
        }
        None => return Ok(()),
    };
    outcome.map_err(persistent_status)
}

fn event_ids(
    ids: &[crate::proto::event_store::client::Uuid],
) -> Result<Vec<strata_core::EventId>, Status> {
    ids.iter().map(|id| event_id(Some(id))).collect()
}

/// A delivery as KurrentDB sends it: the event (unset for a link whose target is gone) and
/// the link, both at the position of what was read (the link's, if any).
fn event_content(delivery: &PersistentEvent, format: UuidFormat) -> Content {
    let position = delivery.original().position.0;
    let wire = |event: &RecordedEvent| recorded_event(event, position, format);
    Content::Event(ReadEvent {
        event: delivery.event.as_ref().map(wire),
        link: delivery.link.as_ref().map(wire),
        position: Some(read_event::Position::CommitPosition(position)),
        count: Some(read_event::Count::RetryCount(
            i32::try_from(delivery.retry_count).unwrap_or(i32::MAX),
        )),
    })
}

fn recorded_event(
    event: &RecordedEvent,
    position: u64,
    format: UuidFormat,
) -> read_event::RecordedEvent {
    read_event::RecordedEvent {
        id: Some(wire_uuid(event.id, format)),
        stream_identifier: Some(stream_identifier(&event.stream)),
        stream_revision: event.revision.0,
        prepare_position: position,
        commit_position: position,
        metadata: system_metadata(event),
        custom_metadata: event.metadata.clone(),
        data: event.data.clone(),
    }
}
