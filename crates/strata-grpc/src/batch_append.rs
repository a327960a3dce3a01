//! `Streams.BatchAppend`: many appends over one bidirectional call. Chunks carry a
//! correlation id; the options come with the first chunk, `is_final` with the last; each
//! append gets one answer with its correlation id, success or a packed error. Appends of
//! one call run concurrently, so the store's group commit batches them.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use strata_core::{
    AppendResult, Error, EventId, EventStore, ExpectedRevision, ProposedEvent, StreamName,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tonic::codegen::tokio_stream::Stream;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::append::check_expected;
use crate::convert::{event_id, invalid, proposed_event, stream_identifier, stream_name};
use crate::errors::batch_error;
use crate::proto::event_store::client::streams::batch_append_req::options::ExpectedStreamPosition as WireExpected;
use crate::proto::event_store::client::streams::batch_append_resp::{self, success};
use crate::proto::event_store::client::streams::{
    BatchAppendReq, BatchAppendResp, batch_append_resp::ExpectedStreamPosition as EchoExpected,
};
use crate::proto::event_store::client::{AllStreamPosition, Uuid};

pub(crate) type BatchAnswers = Pin<Box<dyn Stream<Item = Result<BatchAppendResp, Status>> + Send>>;

/// Appends of one call that may be open (options seen, final chunk not yet) at once.
const OPEN_APPENDS_MAX: usize = 1_024;
/// Bytes of events all open appends of one call may hold, as multiples of the append
/// limit: one call can never make the server hold more than this.
const OPEN_APPEND_LIMITS_MAX: usize = 2;
/// Answers buffered before the call waits for the client to read them.
const ANSWERS_BUFFERED_MAX: usize = 1_024;

/// One append being assembled from its chunks.
struct OpenAppend {
    correlation_id: Uuid,
    stream: StreamName,
    expected: ExpectedRevision,
    events: Vec<ProposedEvent>,
    size_bytes: usize,
}

pub(crate) async fn batch_append(
    store: &Arc<dyn EventStore>,
    request: Request<Streaming<BatchAppendReq>>,
) -> Result<Response<BatchAnswers>, Status> {
    let chunks = request.into_inner();
    let (answers, receiver) = mpsc::channel(ANSWERS_BUFFERED_MAX);
    let store = Arc::clone(store);
    tokio::spawn(async move {
        if let Err(status) = run(&store, chunks, &answers).await {
            let _ = answers.send(Err(status)).await;
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
}

async fn run(
    store: &Arc<dyn EventStore>,
    mut chunks: Streaming<BatchAppendReq>,
    answers: &mpsc::Sender<Result<BatchAppendResp, Status>>,
) -> Result<(), Status> {
    let mut open: HashMap<EventId, OpenAppend> = HashMap::new();
    let mut running = JoinSet::new();
    while let Some(chunk) = chunks.message().await? {
        let key = event_id(chunk.correlation_id.as_ref())
            .map_err(|_| invalid("a batch append chunk has no valid correlation id"))?;
        if let Some(append) = take_chunk(store, &mut open, key, chunk)? {
            let (store, answers) = (Arc::clone(store), answers.clone());
            running.spawn(async move {
                let answer = finish(&store, append).await;
                let _ = answers.send(Ok(answer)).await;
            });
        }
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
    Ok(())
}

/// Adds a chunk to its append; returns the append when this was its final chunk.
fn take_chunk(
    store: &Arc<dyn EventStore>,
    open: &mut HashMap<EventId, OpenAppend>,
    key: EventId,
    chunk: BatchAppendReq,
) -> Result<Option<OpenAppend>, Status> {
    if !open.contains_key(&key) {
        let options = chunk
            .options
            .ok_or_else(|| invalid("the first chunk of a batch append must carry its options"))?;
        if open.len() >= OPEN_APPENDS_MAX {
            return Err(invalid(format!(
                "more than {OPEN_APPENDS_MAX} batch appends are open on one call"
            )));
        }
        let append = OpenAppend {
            correlation_id: chunk.correlation_id.clone().unwrap_or_default(),
            stream: stream_name(options.stream_identifier.as_ref())?,
            expected: match options.expected_stream_position {
                Some(WireExpected::StreamPosition(revision)) => ExpectedRevision::Exact(revision),
                Some(WireExpected::NoStream(())) => ExpectedRevision::NoStream,
                Some(WireExpected::Any(())) => ExpectedRevision::Any,
                Some(WireExpected::StreamExists(())) => ExpectedRevision::StreamExists,
                None => return Err(invalid("the batch append names no expected revision")),
            },
            events: Vec::new(),
            size_bytes: 0,
        };
        open.insert(key, append);
    }
    let Some(append) = open.get_mut(&key) else {
        unreachable!("inserted above");
    };
    let limit = store.limits().append_bytes_max;
    for message in chunk.proposed_messages {
        let event = proposed_event(
            message.id.as_ref(),
            &message.metadata,
            message.custom_metadata,
            message.data,
        )?;
        append.size_bytes = append.size_bytes.saturating_add(event.size_bytes());
        if append.size_bytes <= limit {
            append.events.push(event);
        }
    }
    let held_bytes: usize = open
        .values()
        .map(|append| append.size_bytes.min(limit))
        .sum();
    let held_bytes_max = limit.saturating_mul(OPEN_APPEND_LIMITS_MAX);
    if held_bytes > held_bytes_max {
        return Err(invalid(format!(
            "the open batch appends of this call hold {held_bytes} bytes, over the limit of \
             {held_bytes_max} bytes"
        )));
    }
    Ok(if chunk.is_final {
        open.remove(&key)
    } else {
        None
    })
}

async fn finish(store: &Arc<dyn EventStore>, append: OpenAppend) -> BatchAppendResp {
    let limit = store.limits().append_bytes_max;
    let outcome = if append.size_bytes > limit {
        Err(Error::AppendTooLarge {
            size: append.size_bytes,
            limit,
            unit: "bytes",
        })
    } else if append.events.is_empty() {
        check_expected(store, &append.stream, append.expected)
            .await
            .map(|revision| (revision, None))
    } else {
        store
            .append(&append.stream, append.expected, append.events)
            .await
            .map(
                |AppendResult {
                     current_revision,
                     position,
                 }| { (Some(current_revision.0), Some(position.0)) },
            )
    };
    BatchAppendResp {
        correlation_id: Some(append.correlation_id),
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
