//! `Streams.BatchAppend`: many appends over one bidirectional call. Chunks carry a
//! correlation id; the options come with the first chunk, `is_final` with the last; each
//! append gets one answer with its correlation id, success or a packed error. Appends of
//! one call run concurrently, so the store's group commit batches them.
//!
//! What one call may make the server hold is bounded: appends open at once, appends handed
//! to the store at once (the call reads no further chunk until one finishes), and the
//! bytes of all their events. Each proposed message is checked as its chunk arrives; an
//! append over a limit, with a bad message, or past its deadline is answered at once and
//! the rest of its chunks are dropped.
//!
//! Deadlines (`deadline`, a duration from when the options arrive, or `deadline_21_10_0`,
//! an absolute time) hold until the append is handed to the store: an append whose
//! deadline passes while it is assembled, while it waits for room, or just before the
//! hand-off is answered DEADLINE_EXCEEDED and never written. An append already handed to
//! the store is answered with its outcome, however late.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use strata_core::{
    AppendResult, Error, EventId, EventStore, ExpectedRevision, ProposedEvent, StreamName,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::codegen::tokio_stream::Stream;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::append::{check_expected, proposed_bytes};
use crate::convert::{event_id, invalid, proposed_event, stream_identifier, stream_name};
use crate::errors::{batch_error, batch_timeout};
use crate::proposed_message::ProposedMessage;
use crate::proto::event_store::client::streams::batch_append_req;
use crate::proto::event_store::client::streams::batch_append_req::options::{
    DeadlineOption, ExpectedStreamPosition as WireExpected,
};
use crate::proto::event_store::client::streams::batch_append_resp::{self, success};
use crate::proto::event_store::client::streams::{
    BatchAppendReq, BatchAppendResp, batch_append_resp::ExpectedStreamPosition as EchoExpected,
};
use crate::proto::event_store::client::{AllStreamPosition, Uuid};

pub(crate) type BatchAnswers = Pin<Box<dyn Stream<Item = Result<BatchAppendResp, Status>> + Send>>;

/// Appends of one call that may be open (options seen, final chunk not yet) at once.
const OPEN_APPENDS_MAX: usize = 1_024;
/// Appends of one call handed to the store and not answered yet, at most.
pub(crate) const IN_FLIGHT_APPENDS_MAX: usize = 256;
/// Bytes of events all appends of one call (open and in flight) may hold, as multiples of
/// the append limit: one call can never make the server hold more than this.
const HELD_APPEND_LIMITS_MAX: usize = 2;
/// Answers buffered before the call waits for the client to read them.
const ANSWERS_BUFFERED_MAX: usize = 1_024;
/// Deadlines further away than this are no deadline (clients send far-future times for
/// "none").
const DEADLINE_HORIZON: Duration = Duration::from_secs(365 * 24 * 60 * 60);

type Answers = mpsc::Sender<Result<BatchAppendResp, Status>>;

/// One append being assembled from its chunks.
struct OpenAppend {
    correlation_id: Uuid,
    stream: StreamName,
    expected: ExpectedRevision,
    deadline: Option<Instant>,
    events: Vec<ProposedEvent>,
    /// Events' bytes plus the per-event overhead.
    size_bytes: usize,
    /// This append's share of the call's byte budget (KiB permits).
    held: Option<OwnedSemaphorePermit>,
    /// Answered already (refused or past its deadline): its later chunks are dropped.
    answered: bool,
}

pub(crate) async fn batch_append(
    store: &Arc<dyn EventStore>,
    request: Request<Streaming<BatchAppendReq>>,
) -> Result<Response<BatchAnswers>, Status> {
    let chunks = request.into_inner();
    let (answers, receiver) = mpsc::channel(ANSWERS_BUFFERED_MAX);
    let call = Call::new(Arc::clone(store), answers.clone());
    tokio::spawn(async move {
        if let Err(status) = call.run(chunks).await {
            let _ = answers.send(Err(status)).await;
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
}

/// The state of one BatchAppend call.
struct Call {
    store: Arc<dyn EventStore>,
    answers: Answers,
    open: HashMap<EventId, OpenAppend>,
    /// Deadlines of open appends, soonest first.
    deadlines: BTreeSet<(Instant, EventId)>,
    in_flight: Arc<Semaphore>,
    held_kib: Arc<Semaphore>,
    held_bytes_max: usize,
    running: JoinSet<()>,
}

impl Call {
    fn new(store: Arc<dyn EventStore>, answers: Answers) -> Self {
        let held_bytes_max = store
            .limits()
            .append_bytes_max
            .saturating_mul(HELD_APPEND_LIMITS_MAX);
        // Each append rounds its share up to whole KiB: room for that on top.
        let held_kib_max = (held_bytes_max / 1024 + OPEN_APPENDS_MAX + IN_FLIGHT_APPENDS_MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            store,
            answers,
            open: HashMap::new(),
            deadlines: BTreeSet::new(),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT_APPENDS_MAX)),
            held_kib: Arc::new(Semaphore::new(held_kib_max)),
            held_bytes_max,
            running: JoinSet::new(),
        }
    }

    async fn run(mut self, mut chunks: Streaming<BatchAppendReq>) -> Result<(), Status> {
        loop {
            let soonest = self.deadlines.first().map(|(at, _)| *at);
            let chunk = tokio::select! {
                chunk = chunks.message() => chunk?,
                () = sleep_until(soonest) => {
                    self.expire(Instant::now()).await;
                    continue;
                }
            };
            let Some(chunk) = chunk else {
                break;
            };
            self.take(chunk).await?;
            while self.running.try_join_next().is_some() {}
        }
        while self.running.join_next().await.is_some() {}
        Ok(())
    }

    /// Adds a chunk to its append, and hands the append to the store on its final chunk.
    async fn take(&mut self, chunk: BatchAppendReq) -> Result<(), Status> {
        let key = event_id(chunk.correlation_id.as_ref())
            .map_err(|_| invalid("a batch append chunk has no valid correlation id"))?;
        let received = Instant::now();
        if !self.open.contains_key(&key) {
            self.open_append(key, &chunk, received)?;
            if self.open[&key].deadline.is_some_and(|at| at <= received) {
                self.answer_timeout(key).await;
            }
        }
        self.add_events(key, chunk.proposed_messages).await?;
        if chunk.is_final {
            self.hand_off(key).await;
        }
        Ok(())
    }

    fn open_append(
        &mut self,
        key: EventId,
        chunk: &BatchAppendReq,
        received: Instant,
    ) -> Result<(), Status> {
        let options = chunk
            .options
            .as_ref()
            .ok_or_else(|| invalid("the first chunk of a batch append must carry its options"))?;
        if self.open.len() >= OPEN_APPENDS_MAX {
            return Err(invalid(format!(
                "more than {OPEN_APPENDS_MAX} batch appends are open on one call"
            )));
        }
        let deadline = deadline_of(options.deadline_option.as_ref(), received);
        let append = OpenAppend {
            correlation_id: chunk.correlation_id.clone().unwrap_or_default(),
            stream: stream_name(options.stream_identifier.as_ref())?,
            expected: expected_of(options)?,
            deadline,
            events: Vec::new(),
            size_bytes: 0,
            held: None,
            answered: false,
        };
        if let Some(at) = deadline {
            self.deadlines.insert((at, key));
        }
        self.open.insert(key, append);
        Ok(())
    }

    /// Checks the chunk's messages and the append's limits, then takes the events into the
    /// call's byte budget (waiting for appends in flight to free room).
    async fn add_events(
        &mut self,
        key: EventId,
        messages: Vec<ProposedMessage>,
    ) -> Result<(), Status> {
        if self.open[&key].answered || messages.is_empty() {
            return Ok(());
        }
        let mut added = Vec::with_capacity(messages.len());
        for message in messages {
            match proposed_event(
                message.id.as_ref(),
                message.metadata,
                message.custom_metadata,
                message.data,
            ) {
                Ok(event) => added.push(event),
                Err(status) => {
                    let reason = status.message().to_owned();
                    self.refuse(key, Error::InvalidArgument { reason }).await;
                    return Ok(());
                }
            }
        }
        let limits = self.store.limits();
        let append = &self.open[&key];
        let count = append.events.len() + added.len();
        if count > limits.append_events_max {
            let error = too_large(count, limits.append_events_max, "events");
            self.refuse(key, error).await;
            return Ok(());
        }
        let size_bytes = append.size_bytes + added.iter().map(proposed_bytes).sum::<usize>();
        if size_bytes > limits.append_bytes_max {
            let error = too_large(size_bytes, limits.append_bytes_max, "bytes");
            self.refuse(key, error).await;
            return Ok(());
        }
        self.check_open_bytes(size_bytes - append.size_bytes)?;
        let more_kib = size_bytes.div_ceil(1024) - append.size_bytes.div_ceil(1024);
        let permit = Arc::clone(&self.held_kib)
            .acquire_many_owned(u32::try_from(more_kib).unwrap_or(u32::MAX))
            .await
            .map_err(|_| Status::internal("the call's byte budget closed"))?;
        let Some(append) = self.open.get_mut(&key) else {
            unreachable!("the append is open: nothing removed it while waiting");
        };
        match &mut append.held {
            Some(held) => held.merge(permit),
            None => append.held = Some(permit),
        }
        append.events.extend(added);
        append.size_bytes = size_bytes;
        Ok(())
    }

    /// Open appends alone may not hold more than the call's budget: they would never let
    /// go of it.
    fn check_open_bytes(&self, more_bytes: usize) -> Result<(), Status> {
        let held_bytes = self
            .open
            .values()
            .map(|append| append.size_bytes)
            .sum::<usize>()
            + more_bytes;
        if held_bytes > self.held_bytes_max {
            return Err(invalid(format!(
                "the open batch appends of this call hold {held_bytes} bytes, over the limit \
                 of {} bytes",
                self.held_bytes_max
            )));
        }
        Ok(())
    }

    /// The final chunk arrived: hands the append to the store unless it was answered or
    /// its deadline passes first.
    async fn hand_off(&mut self, key: EventId) {
        let Some(mut append) = self.open.remove(&key) else {
            return;
        };
        if let Some(at) = append.deadline {
            self.deadlines.remove(&(at, key));
        }
        if append.answered {
            return;
        }
        let slot = Arc::clone(&self.in_flight).acquire_owned();
        let slot = match append.deadline {
            Some(at) => tokio::time::timeout_at(at, slot).await.ok(),
            None => Some(slot.await),
        };
        let Some(Ok(slot)) = slot else {
            let _ = self.answers.send(Ok(timeout_answer(&append))).await;
            return;
        };
        let (store, answers) = (Arc::clone(&self.store), self.answers.clone());
        self.running.spawn(async move {
            let held = append.held.take();
            let answer = if append.deadline.is_some_and(|at| at <= Instant::now()) {
                timeout_answer(&append)
            } else {
                finish(&store, append).await
            };
            drop((slot, held));
            let _ = answers.send(Ok(answer)).await;
        });
    }

    /// Answers every open append whose deadline is at or before `now`.
    async fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.remove(&(at, key));
            if self.open.get(&key).is_some_and(|append| !append.answered) {
                self.answer_timeout(key).await;
            }
        }
    }

    async fn answer_timeout(&mut self, key: EventId) {
        if let Some(append) = self.open.get_mut(&key) {
            drop_events(append);
            let answer = timeout_answer(append);
            let _ = self.answers.send(Ok(answer)).await;
        }
    }

    /// Answers the append with `error` now; its later chunks are dropped.
    async fn refuse(&mut self, key: EventId, error: Error) {
        if let Some(append) = self.open.get_mut(&key) {
            drop_events(append);
            let answer = answer_of(append, Err(error));
            let _ = self.answers.send(Ok(answer)).await;
        }
    }
}

/// Forgets an answered append's events (and its share of the byte budget).
fn drop_events(append: &mut OpenAppend) {
    append.answered = true;
    append.events = Vec::new();
    append.size_bytes = 0;
    append.held = None;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn too_large(size: usize, limit: usize, unit: &'static str) -> Error {
    Error::AppendTooLarge { size, limit, unit }
}

fn expected_of(options: &batch_append_req::Options) -> Result<ExpectedRevision, Status> {
    match options.expected_stream_position {
        Some(WireExpected::StreamPosition(revision)) => Ok(ExpectedRevision::Exact(revision)),
        Some(WireExpected::NoStream(())) => Ok(ExpectedRevision::NoStream),
        Some(WireExpected::Any(())) => Ok(ExpectedRevision::Any),
        Some(WireExpected::StreamExists(())) => Ok(ExpectedRevision::StreamExists),
        None => Err(invalid("the batch append names no expected revision")),
    }
}

/// When an append must be handed to the store by: `deadline` counts from when its options
/// arrived, `deadline_21_10_0` is a UTC time. `None` for no deadline.
fn deadline_of(option: Option<&DeadlineOption>, received: Instant) -> Option<Instant> {
    let remaining = match option? {
        DeadlineOption::Deadline(duration) => {
            if duration.seconds < 0 || duration.nanos < 0 {
                Duration::ZERO
            } else {
                Duration::try_from(*duration).ok()?
            }
        }
        DeadlineOption::Deadline21100(timestamp) => {
            let at = SystemTime::try_from(*timestamp).ok()?;
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
    };
    if remaining > DEADLINE_HORIZON {
        return None;
    }
    received.checked_add(remaining)
}

fn timeout_answer(append: &OpenAppend) -> BatchAppendResp {
    let mut answer = answer_of(append, Ok((None, None)));
    answer.result = Some(batch_append_resp::Result::Error(batch_timeout()));
    answer
}

async fn finish(store: &Arc<dyn EventStore>, mut append: OpenAppend) -> BatchAppendResp {
    let events = std::mem::take(&mut append.events);
    let outcome = if events.is_empty() {
        check_expected(store, &append.stream, append.expected)
            .await
            .map(|revision| (revision, None))
    } else {
        store
            .append(&append.stream, append.expected, events)
            .await
            .map(
                |AppendResult {
                     current_revision,
                     position,
                 }| { (Some(current_revision.0), Some(position.0)) },
            )
    };
    answer_of(&append, outcome)
}

fn answer_of(
    append: &OpenAppend,
    outcome: Result<(Option<u64>, Option<u64>), Error>,
) -> BatchAppendResp {
    BatchAppendResp {
        correlation_id: Some(append.correlation_id.clone()),
        result: Some(match outcome {
            Ok((revision, position)) => {
                batch_append_resp::Result::Success(success_of(revision, position))
            }
            Err(error) => batch_append_resp::Result::Error(batch_error(&error)),
        }),
        stream_identifier: Some(stream_identifier(&append.stream)),
        expected_stream_position: Some(match append.expected {
            ExpectedRevision::Exact(revision) => EchoExpected::StreamPosition(revision),
            ExpectedRevision::NoStream => EchoExpected::NoStream(()),
            ExpectedRevision::Any => EchoExpected::Any(()),
            ExpectedRevision::StreamExists => EchoExpected::StreamExists(()),
        }),
    }
}

fn success_of(revision: Option<u64>, position: Option<u64>) -> batch_append_resp::Success {
    batch_append_resp::Success {
        current_revision_option: Some(match revision {
            Some(revision) => success::CurrentRevisionOption::CurrentRevision(revision),
            None => success::CurrentRevisionOption::NoStream(()),
        }),
        position_option: Some(match position {
            Some(position) => success::PositionOption::Position(AllStreamPosition {
                commit_position: position,
                prepare_position: position,
            }),
            None => success::PositionOption::NoPosition(()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_count_from_receipt_or_are_absolute_and_far_ones_are_none() {
        let received = Instant::now();
        let relative = DeadlineOption::Deadline(prost_types::Duration {
            seconds: 2,
            nanos: 0,
        });
        assert_eq!(
            deadline_of(Some(&relative), received),
            Some(received + Duration::from_secs(2))
        );
        let negative = DeadlineOption::Deadline(prost_types::Duration {
            seconds: -1,
            nanos: 0,
        });
        assert_eq!(deadline_of(Some(&negative), received), Some(received));
        let past = DeadlineOption::Deadline21100(prost_types::Timestamp {
            seconds: 0,
            nanos: 0,
        });
        assert_eq!(deadline_of(Some(&past), received), Some(received));
        // The Rust client sends its deadline as a duration since the epoch: decades.
        let since_epoch = DeadlineOption::Deadline(prost_types::Duration {
            seconds: 1_700_000_000,
            nanos: 0,
        });
        assert_eq!(deadline_of(Some(&since_epoch), received), None);
        assert_eq!(deadline_of(None, received), None);
    }
}
