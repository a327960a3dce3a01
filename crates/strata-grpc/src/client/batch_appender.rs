//! Appends over one `BatchAppend` call: each append is one final chunk with a fresh
//! correlation id; one task reads the answers and hands each to the append that waits for
//! it, so any number of tasks can append through the same call at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prost::Message as _;
use strata_core::{
    EventId, ExpectedRevision, Position, ProposedEvent, Revision, StreamName, StreamState,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::Streaming;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use super::{Appended, ClientError, Streams, proposed_parts};
use crate::convert::{UuidFormat, event_id, stream_identifier, wire_uuid};
use crate::proto::event_store::client::WrongExpectedVersion;
use crate::proto::event_store::client::streams::batch_append_req::options::ExpectedStreamPosition;
use crate::proto::event_store::client::streams::batch_append_resp::{self, success};
use crate::proto::event_store::client::streams::{
    BatchAppendReq, BatchAppendResp, batch_append_req,
};
use crate::proto::event_store::client::wrong_expected_version::CurrentStreamRevisionOption;

const OPERATION: &str = "BatchAppend";
/// Chunks queued for the call before an append waits to send.
const CHUNKS_QUEUED_MAX: usize = 64;
/// The detail type the server packs a wrong expected revision in.
const WRONG_EXPECTED_VERSION_TYPE_URL: &str =
    "type.googleapis.com/event_store.client.WrongExpectedVersion";

type Answer = Result<Appended, ClientError>;

/// Appends waiting for their answer, by correlation id; `closed` once the call ended.
#[derive(Default)]
struct Waiting {
    by_correlation: HashMap<EventId, (StreamName, ExpectedRevision, oneshot::Sender<Answer>)>,
    closed: Option<String>,
}

/// One open `BatchAppend` call. Dropping it ends the call.
pub struct BatchAppender {
    chunks: mpsc::Sender<BatchAppendReq>,
    waiting: Arc<Mutex<Waiting>>,
    format: UuidFormat,
    answers: JoinHandle<()>,
}

impl std::fmt::Debug for BatchAppender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchAppender").finish_non_exhaustive()
    }
}

impl Drop for BatchAppender {
    fn drop(&mut self) {
        self.answers.abort();
    }
}

impl BatchAppender {
    pub(super) async fn open(
        mut streams: Streams,
        format: UuidFormat,
    ) -> Result<BatchAppender, ClientError> {
        let (chunks, receiver) = mpsc::channel(CHUNKS_QUEUED_MAX);
        let answers = streams
            .batch_append(ReceiverStream::new(receiver))
            .await
            .map_err(|status| ClientError::rpc(OPERATION, status))?
            .into_inner();
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let answers = tokio::spawn(hand_out(answers, Arc::clone(&waiting)));
        Ok(BatchAppender {
            chunks,
            waiting,
            format,
            answers,
        })
    }

    /// Appends `events` to `stream`, if it is as `expected`, as one append of the call.
    ///
    /// # Errors
    /// [`ClientError::WrongExpectedRevision`] when the stream is not as expected,
    /// [`ClientError::BatchAppendRefused`] for any other refusal of this append (the call
    /// goes on), [`ClientError::BatchAppendClosed`] when the call has ended.
    pub async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> Result<Appended, ClientError> {
        let correlation = EventId::new_random();
        let (answer_sender, answer) = oneshot::channel();
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(reason) = &waiting.closed {
                return Err(ClientError::BatchAppendClosed {
                    reason: reason.clone(),
                });
            }
            waiting
                .by_correlation
                .insert(correlation, (stream.clone(), expected, answer_sender));
        }
        let chunk = BatchAppendReq {
            correlation_id: Some(wire_uuid(correlation, self.format)),
            options: Some(batch_append_req::Options {
                stream_identifier: Some(stream_identifier(stream)),
                expected_stream_position: Some(batch_expected(expected)),
                deadline_option: None,
            }),
            proposed_messages: events
                .into_iter()
                .map(|event| {
                    let (id, metadata, custom_metadata, data) = proposed_parts(event, self.format);
                    crate::proposed_message::ProposedMessage {
                        id: Some(id),
                        metadata,
                        custom_metadata,
                        data,
                    }
                })
                .collect(),
            is_final: true,
        };
        if self.chunks.send(chunk).await.is_err() {
            self.lock().by_correlation.remove(&correlation);
            return Err(self.closed_error());
        }
        answer.await.unwrap_or_else(|_| Err(self.closed_error()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn closed_error(&self) -> ClientError {
        ClientError::BatchAppendClosed {
            reason: self
                .lock()
                .closed
                .clone()
                .unwrap_or_else(|| "the call ended".to_owned()),
        }
    }
}

/// Reads answers until the call ends, then fails every append still waiting.
async fn hand_out(mut answers: Streaming<BatchAppendResp>, waiting: Arc<Mutex<Waiting>>) {
    let reason = loop {
        match answers.message().await {
            Ok(Some(answer)) => {
                if let Err(reason) = hand_one(answer, &waiting) {
                    break reason;
                }
            }
            Ok(None) => break "the server ended the call".to_owned(),
            Err(status) => break ClientError::rpc(OPERATION, status).to_string(),
        }
    };
    let mut waiting = waiting.lock().unwrap_or_else(PoisonError::into_inner);
    waiting.closed = Some(reason.clone());
    for (_, (_, _, sender)) in waiting.by_correlation.drain() {
        let _ = sender.send(Err(ClientError::BatchAppendClosed {
            reason: reason.clone(),
        }));
    }
}

/// Hands one answer to its append; an answer for no waiting append breaks the protocol.
fn hand_one(answer: BatchAppendResp, waiting: &Mutex<Waiting>) -> Result<(), String> {
    let correlation = event_id(answer.correlation_id.as_ref())
        .map_err(|_| "an answer has no valid correlation id".to_owned())?;
    let entry = waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .by_correlation
        .remove(&correlation);
    let Some((stream, expected, sender)) = entry else {
        return Err(format!(
            "an answer names correlation id {correlation}, which no append is waiting for"
        ));
    };
    let outcome = match answer.result {
        Some(batch_append_resp::Result::Success(success)) => Ok(appended(&success)),
        Some(batch_append_resp::Result::Error(status)) => Err(refusal(stream, expected, status)),
        None => Err(ClientError::protocol(OPERATION, "an answer has no result")),
    };
    // The append may have been given up (its task cancelled); nobody is left to tell.
    let _ = sender.send(outcome);
    Ok(())
}

fn refusal(
    stream: StreamName,
    expected: ExpectedRevision,
    status: crate::proto::google::rpc::Status,
) -> ClientError {
    let wrong = status
        .details
        .as_ref()
        .filter(|detail| detail.type_url == WRONG_EXPECTED_VERSION_TYPE_URL)
        .and_then(|detail| WrongExpectedVersion::decode(detail.value.as_slice()).ok());
    match wrong {
        Some(wrong) => ClientError::WrongExpectedRevision {
            stream,
            expected,
            actual: match wrong.current_stream_revision_option {
                Some(CurrentStreamRevisionOption::CurrentStreamRevision(revision)) => {
                    StreamState::At(Revision(revision))
                }
                _ => StreamState::NoStream,
            },
        },
        None => ClientError::BatchAppendRefused {
            stream,
            code: status.code,
            message: status.message,
        },
    }
}

fn batch_expected(expected: ExpectedRevision) -> ExpectedStreamPosition {
    match expected {
        ExpectedRevision::Any => ExpectedStreamPosition::Any(()),
        ExpectedRevision::NoStream => ExpectedStreamPosition::NoStream(()),
        ExpectedRevision::StreamExists => ExpectedStreamPosition::StreamExists(()),
        ExpectedRevision::Exact(revision) => ExpectedStreamPosition::StreamPosition(revision),
    }
}

fn appended(success: &batch_append_resp::Success) -> Appended {
    Appended {
        current_revision: match success.current_revision_option {
            Some(success::CurrentRevisionOption::CurrentRevision(revision)) => {
                Some(Revision(revision))
            }
            _ => None,
        },
        position: match &success.position_option {
            Some(success::PositionOption::Position(position)) => {
                Some(Position(position.commit_position))
            }
            _ => None,
        },
    }
}
