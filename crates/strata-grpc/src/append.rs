//! `Streams.Append`: options first, then one proposed message per event. A wrong expected
//! revision is an answer in the body, not a gRPC error.

use std::sync::Arc;

use strata_core::{Error, EventStore, ExpectedRevision, ProposedEvent, StreamName, StreamState};
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{invalid, proposed_event, stream_name};
use crate::errors::to_status;
use crate::proto::event_store::client::Empty;
use crate::proto::event_store::client::streams::append_req::options::ExpectedStreamRevision;
use crate::proto::event_store::client::streams::append_resp::{
    self, success, wrong_expected_version,
};
use crate::proto::event_store::client::streams::{AppendReq, AppendResp, append_req};

pub(crate) async fn append(
    store: &Arc<dyn EventStore>,
    request: Request<Streaming<AppendReq>>,
) -> Result<Response<AppendResp>, Status> {
    let mut messages = request.into_inner();
    let first = messages
        .message()
        .await?
        .ok_or_else(|| invalid("the append is empty"))?;
    let Some(append_req::Content::Options(options)) = first.content else {
        return Err(invalid("an append starts with its options"));
    };
    let stream = stream_name(options.stream_identifier.as_ref())?;
    let expected = expected_revision(options.expected_stream_revision)?;
    let events = read_events(store, &mut messages).await?;
    if events.is_empty() {
        return check_only(store, &stream, expected)
            .await
            .map(Response::new);
    }
    let answer = match store.append(&stream, expected, events).await {
        Ok(result) => success(Some(result.current_revision.0), Some(result.position.0)),
        Err(Error::WrongExpectedRevision {
            expected, actual, ..
        }) => wrong_expected_version(expected, actual),
        Err(error) => return Err(to_status(error)),
    };
    Ok(Response::new(answer))
}

/// What the server holds per proposed event beyond its data, metadata and type: the id,
/// the event's fields and the wire message around it. Charged against the append byte
/// limit, so that an append of empty events is not free.
pub(crate) const PROPOSED_EVENT_OVERHEAD_BYTES: usize = 128;

/// What a proposed event weighs against the append byte limit over gRPC.
pub(crate) fn proposed_bytes(event: &ProposedEvent) -> usize {
    event.size_bytes() + PROPOSED_EVENT_OVERHEAD_BYTES
}

/// Reads the proposed messages, checking each as it arrives and refusing an append over
/// the store's event-count or byte limit as soon as it is known to be over (before the
/// rest arrives).
async fn read_events(
    store: &Arc<dyn EventStore>,
    messages: &mut Streaming<AppendReq>,
) -> Result<Vec<ProposedEvent>, Status> {
    let limits = store.limits();
    let mut events = Vec::new();
    let mut size_bytes = 0usize;
    while let Some(message) = messages.message().await? {
        if events.len() >= limits.append_events_max {
            return Err(to_status(Error::AppendTooLarge {
                size: events.len() + 1,
                limit: limits.append_events_max,
                unit: "events",
            }));
        }
        let Some(append_req::Content::ProposedMessage(proposed)) = message.content else {
            return Err(invalid(
                "only the first message of an append may carry options",
            ));
        };
        let event = proposed_event(
            proposed.id.as_ref(),
            proposed.metadata,
            proposed.custom_metadata,
            proposed.data,
        )?;
        size_bytes = size_bytes.saturating_add(proposed_bytes(&event));
        if size_bytes > limits.append_bytes_max {
            return Err(to_status(Error::AppendTooLarge {
                size: size_bytes,
                limit: limits.append_bytes_max,
                unit: "bytes",
            }));
        }
        events.push(event);
    }
    Ok(events)
}

pub(crate) fn expected_revision(
    option: Option<ExpectedStreamRevision>,
) -> Result<ExpectedRevision, Status> {
    match option {
        Some(ExpectedStreamRevision::Revision(revision)) => Ok(ExpectedRevision::Exact(revision)),
        Some(ExpectedStreamRevision::NoStream(Empty {})) => Ok(ExpectedRevision::NoStream),
        Some(ExpectedStreamRevision::Any(Empty {})) => Ok(ExpectedRevision::Any),
        Some(ExpectedStreamRevision::StreamExists(Empty {})) => Ok(ExpectedRevision::StreamExists),
        None => Err(invalid("the append options name no expected revision")),
    }
}

/// An append of no events only checks the expected revision, as in KurrentDB.
async fn check_only(
    store: &Arc<dyn EventStore>,
    stream: &StreamName,
    expected: ExpectedRevision,
) -> Result<AppendResp, Status> {
    match check_expected(store, stream, expected).await {
        Ok(revision) => Ok(success(revision, None)),
        Err(Error::WrongExpectedRevision {
            expected, actual, ..
        }) => Ok(wrong_expected_version(expected, actual)),
        Err(error) => Err(to_status(error)),
    }
}

/// Checks `expected` against the stream without writing, by the same rules as an append;
/// the stream's last revision when it passes.
pub(crate) async fn check_expected(
    store: &Arc<dyn EventStore>,
    stream: &StreamName,
    expected: ExpectedRevision,
) -> Result<Option<u64>, Error> {
    let revision = store.check_expected_revision(stream, expected).await?;
    Ok(revision.map(|revision| revision.0))
}

fn success(current_revision: Option<u64>, position: Option<u64>) -> AppendResp {
    AppendResp {
        result: Some(append_resp::Result::Success(append_resp::Success {
            current_revision_option: Some(match current_revision {
                Some(revision) => success::CurrentRevisionOption::CurrentRevision(revision),
                None => success::CurrentRevisionOption::NoStream(Empty {}),
            }),
            position_option: Some(match position {
                Some(position) => success::PositionOption::Position(append_resp::Position {
                    commit_position: position,
                    prepare_position: position,
                }),
                None => success::PositionOption::NoPosition(Empty {}),
            }),
        })),
    }
}

/// Both the current and the legacy (20.6.0) fields, as the reference server fills them.
fn wrong_expected_version(expected: ExpectedRevision, actual: StreamState) -> AppendResp {
    use wrong_expected_version::{
        CurrentRevisionOption, CurrentRevisionOption2060, ExpectedRevisionOption,
        ExpectedRevisionOption2060,
    };
    let current = match actual {
        StreamState::At(revision) => Some(revision.0),
        StreamState::NoStream | StreamState::Tombstoned => None,
    };
    AppendResp {
        result: Some(append_resp::Result::WrongExpectedVersion(
            append_resp::WrongExpectedVersion {
                current_revision_option_20_6_0: Some(match current {
                    Some(revision) => CurrentRevisionOption2060::CurrentRevision2060(revision),
                    None => CurrentRevisionOption2060::NoStream2060(Empty {}),
                }),
                expected_revision_option_20_6_0: Some(match expected {
                    ExpectedRevision::Exact(revision) => {
                        ExpectedRevisionOption2060::ExpectedRevision2060(revision)
                    }
                    ExpectedRevision::StreamExists => {
                        ExpectedRevisionOption2060::StreamExists2060(Empty {})
                    }
                    ExpectedRevision::Any | ExpectedRevision::NoStream => {
                        ExpectedRevisionOption2060::Any2060(Empty {})
                    }
                }),
                current_revision_option: Some(match current {
                    Some(revision) => CurrentRevisionOption::CurrentRevision(revision),
                    None => CurrentRevisionOption::CurrentNoStream(Empty {}),
                }),
                expected_revision_option: Some(match expected {
                    ExpectedRevision::Exact(revision) => {
                        ExpectedRevisionOption::ExpectedRevision(revision)
                    }
                    ExpectedRevision::Any => ExpectedRevisionOption::ExpectedAny(Empty {}),
                    ExpectedRevision::StreamExists => {
                        ExpectedRevisionOption::ExpectedStreamExists(Empty {})
                    }
                    ExpectedRevision::NoStream => {
                        ExpectedRevisionOption::ExpectedNoStream(Empty {})
                    }
                }),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_event_overhead_covers_what_the_server_holds_for_an_empty_event() {
        assert!(std::mem::size_of::<ProposedEvent>() <= PROPOSED_EVENT_OVERHEAD_BYTES);
        let empty = ProposedEvent::binary("E", strata_core::Bytes::new());
        assert_eq!(proposed_bytes(&empty), 1 + PROPOSED_EVENT_OVERHEAD_BYTES);
    }
}
