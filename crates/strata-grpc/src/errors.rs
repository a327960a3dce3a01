//! Strata errors as KurrentDB clients expect them, in one place: gRPC status codes with the
//! `exception` trailers for call errors, and packed `google.rpc.Status` for BatchAppend.

use prost::Message as _;
use strata_core::{Error, ExpectedRevision, StreamState};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::convert::stream_identifier;
use crate::proto::event_store::client as shared;
use crate::proto::google::rpc;

/// KurrentDB's numbers for expected versions (`-2` any, `-1` no stream, `-4` exists).
pub(crate) fn expected_version_number(expected: ExpectedRevision) -> i64 {
    match expected {
        ExpectedRevision::Any => -2,
        ExpectedRevision::NoStream => -1,
        ExpectedRevision::StreamExists => -4,
        ExpectedRevision::Exact(revision) => i64::try_from(revision).unwrap_or(i64::MAX),
    }
}

/// KurrentDB's numbers for a stream's actual version (`-1` no stream).
pub(crate) fn actual_version_number(actual: StreamState) -> i64 {
    match actual {
        StreamState::NoStream => -1,
        StreamState::At(revision) => i64::try_from(revision.0).unwrap_or(i64::MAX),
        StreamState::Tombstoned => i64::MAX,
    }
}

pub(crate) fn with_trailers(
    code: Code,
    message: String,
    trailers: &[(&'static str, String)],
) -> Status {
    let mut metadata = MetadataMap::new();
    for (key, value) in trailers {
        // A value that cannot be a header (control characters in a stream name) is left
        // out rather than failing the answer.
        if let Ok(value) = MetadataValue::try_from(value.as_str()) {
            metadata.insert(*key, value);
        }
    }
    Status::with_metadata(code, message, metadata)
}

/// The gRPC status for an error ending a call. Messages of the errors clients act on keep
/// the reference server's wording, which some clients parse.
pub(crate) fn to_status(error: Error) -> Status {
    let message = error.to_string();
    match error {
        Error::WrongExpectedRevision {
            stream,
            expected,
            actual,
        } => with_trailers(
            Code::FailedPrecondition,
            format!(
                "Operation failed due to WrongExpectedVersion. Stream: {stream}, \
                 Expected version: {}, Actual version: {}",
                expected_version_number(expected),
                actual_version_number(actual)
            ),
            &[
                ("exception", "wrong-expected-version".into()),
                ("stream-name", stream.to_string()),
                (
                    "expected-version",
                    expected_version_number(expected).to_string(),
                ),
                ("actual-version", actual_version_number(actual).to_string()),
            ],
        ),
        Error::StreamDeleted { stream } => with_trailers(
            Code::FailedPrecondition,
            format!("Event stream '{stream}' is deleted."),
            &[
                ("exception", "stream-deleted".into()),
                ("stream-name", stream.to_string()),
            ],
        ),
        Error::AppendTooLarge { limit, .. } => with_trailers(
            Code::InvalidArgument,
            message,
            &[
                ("exception", "maximum-append-size-exceeded".into()),
                ("maximum-append-size", limit.to_string()),
            ],
        ),
        Error::EventTooLarge { limit_bytes, .. } => with_trailers(
            Code::InvalidArgument,
            message,
            &[
                ("exception", "maximum-append-size-exceeded".into()),
                ("maximum-append-size", limit_bytes.to_string()),
            ],
        ),
        Error::InvalidStreamName { .. }
        | Error::InvalidEventType { .. }
        | Error::InvalidMetadata { .. }
        | Error::InvalidFilter { .. }
        | Error::InvalidArgument { .. } => Status::invalid_argument(message),
        Error::Poisoned { .. } | Error::Closed => Status::unavailable(message),
        Error::Corrupt { .. } => Status::data_loss(message),
        Error::AccessDenied { .. } => access_denied(),
        Error::AppendConditionFailed { found, .. } => with_trailers(
            Code::Aborted,
            message,
            &[
                ("exception", "append-condition-failed".into()),
                ("found-position", found.0.to_string()),
            ],
        ),
        Error::NotLeader { leader } => not_leader(leader.as_ref()),
        _ => Status::internal(message),
    }
}

/// The reference server's answer to a leader-only call on a follower (`NOT_FOUND`, "Leader
/// info available", the leader's endpoint in trailers): the official clients reconnect to
/// that endpoint and retry. Without a known leader, `UNAVAILABLE` (the clients rediscover).
pub(crate) fn not_leader(leader: Option<&strata_core::NodeAddress>) -> Status {
    match leader {
        Some(leader) => with_trailers(
            Code::NotFound,
            "Leader info available".to_owned(),
            &[
                ("exception", "not-leader".into()),
                ("leader-endpoint-host", leader.host.clone()),
                ("leader-endpoint-port", leader.port.to_string()),
            ],
        ),
        None => Status::unavailable("Server Is Not Ready: no cluster leader yet"),
    }
}

/// Access refused, as the reference server answers it.
pub(crate) fn access_denied() -> Status {
    with_trailers(
        Code::PermissionDenied,
        "Access Denied".to_owned(),
        &[("exception", "access-denied".into())],
    )
}

/// A read of `$all` from a position that is not an event's, as the reference server
/// answers it: `UNKNOWN` with the name of its internal result, which newer clients match.
pub(crate) fn read_all_invalid_position(filtered: bool) -> Status {
    let result = if filtered {
        "FilteredReadAllResult"
    } else {
        "ReadAllResult"
    };
    Status::unknown(format!("Unexpected {result}: InvalidPosition"))
}

/// A subscription to `$all` from a position that is not an event's, as the reference
/// server answers it.
pub(crate) fn subscription_invalid_position() -> Status {
    Status::invalid_argument("Trying to read from an invalid position.")
}

/// An error inside a BatchAppend answer: a `google.rpc.Status` whose detail packs the
/// KurrentDB error message, with the code the reference server uses for it.
pub(crate) fn batch_error(error: &Error) -> rpc::Status {
    let (code, type_name, value) = match error {
        Error::WrongExpectedRevision {
            expected, actual, ..
        } => (
            rpc::Code::AlreadyExists,
            "WrongExpectedVersion",
            wrong_expected_version_detail(*expected, *actual).encode_to_vec(),
        ),
        Error::StreamDeleted { stream } => (
            rpc::Code::NotFound,
            "StreamDeleted",
            shared::StreamDeleted {
                stream_identifier: Some(stream_identifier(stream)),
            }
            .encode_to_vec(),
        ),
        Error::AppendTooLarge { limit, .. } => (
            rpc::Code::InvalidArgument,
            "MaximumAppendSizeExceeded",
            shared::MaximumAppendSizeExceeded {
                max_append_size: u32::try_from(*limit).unwrap_or(u32::MAX),
            }
            .encode_to_vec(),
        ),
        Error::EventTooLarge { limit_bytes, .. } => (
            rpc::Code::InvalidArgument,
            "MaximumAppendSizeExceeded",
            shared::MaximumAppendSizeExceeded {
                max_append_size: u32::try_from(*limit_bytes).unwrap_or(u32::MAX),
            }
            .encode_to_vec(),
        ),
        Error::InvalidStreamName { .. }
        | Error::InvalidEventType { .. }
        | Error::InvalidMetadata { .. }
        | Error::InvalidFilter { .. }
        | Error::InvalidArgument { .. } => (
            rpc::Code::InvalidArgument,
            "BadRequest",
            shared::BadRequest {
                message: error.to_string(),
            }
            .encode_to_vec(),
        ),
        Error::AccessDenied { .. } => (
            rpc::Code::PermissionDenied,
            "AccessDenied",
            shared::AccessDenied {}.encode_to_vec(),
        ),
        _ => (
            rpc::Code::Internal,
            "Unknown",
            shared::Unknown {}.encode_to_vec(),
        ),
    };
    rpc::Status {
        code: code.into(),
        message: error.to_string(),
        details: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/event_store.client.{type_name}"),
            value,
        }),
    }
}

/// The BatchAppend answer for an append whose deadline passed before it was handed to the
/// store (nothing was written): `DEADLINE_EXCEEDED` with the `Timeout` detail, as the
/// reference server answers.
pub(crate) fn batch_timeout() -> rpc::Status {
    rpc::Status {
        code: rpc::Code::DeadlineExceeded.into(),
        message: "Timeout: the append's deadline passed before it was written; nothing was \
                  written"
            .to_owned(),
        details: Some(prost_types::Any {
            type_url: "type.googleapis.com/event_store.client.Timeout".to_owned(),
            value: shared::Timeout {}.encode_to_vec(),
        }),
    }
}

fn wrong_expected_version_detail(
    expected: ExpectedRevision,
    actual: StreamState,
) -> shared::WrongExpectedVersion {
    use shared::wrong_expected_version::{
        CurrentStreamRevisionOption as Current, ExpectedStreamPositionOption as Expected,
    };
    shared::WrongExpectedVersion {
        current_stream_revision_option: Some(match actual {
            StreamState::At(revision) => Current::CurrentStreamRevision(revision.0),
            StreamState::NoStream | StreamState::Tombstoned => Current::CurrentNoStream(()),
        }),
        expected_stream_position_option: Some(match expected {
            ExpectedRevision::Any => Expected::ExpectedAny(()),
            ExpectedRevision::NoStream => Expected::ExpectedNoStream(()),
            ExpectedRevision::StreamExists => Expected::ExpectedStreamExists(()),
            ExpectedRevision::Exact(revision) => Expected::ExpectedStreamPosition(revision),
        }),
    }
}

#[cfg(test)]
mod tests {
    use strata_core::{Revision, StreamName};

    use super::*;

    #[test]
    fn wrong_expected_revision_carries_the_trailers_clients_read() {
        let status = to_status(Error::WrongExpectedRevision {
            stream: StreamName::new("order-1").unwrap(),
            expected: ExpectedRevision::Exact(3),
            actual: StreamState::At(Revision(5)),
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        let trailers = status.metadata();
        assert_eq!(trailers.get("exception").unwrap(), "wrong-expected-version");
        assert_eq!(trailers.get("stream-name").unwrap(), "order-1");
        assert_eq!(trailers.get("expected-version").unwrap(), "3");
        assert_eq!(trailers.get("actual-version").unwrap(), "5");
    }

    #[test]
    fn batch_errors_pack_the_kurrentdb_detail() {
        let error = Error::StreamDeleted {
            stream: StreamName::new("gone").unwrap(),
        };
        let status = batch_error(&error);
        assert_eq!(status.code, i32::from(rpc::Code::NotFound));
        let details = status.details.unwrap();
        assert_eq!(
            details.type_url,
            "type.googleapis.com/event_store.client.StreamDeleted"
        );
        let decoded = shared::StreamDeleted::decode(details.value.as_slice()).unwrap();
        assert_eq!(
            decoded.stream_identifier.unwrap().stream_name.as_ref(),
            b"gone"
        );
    }
}
