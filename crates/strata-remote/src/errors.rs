//! The client's errors as Strata's, in one place.

use kurrentdb::{AppendToStreamOptions, Client, CurrentRevision, EventData};
use strata_core::{Error, ExpectedRevision, Result, Revision, StreamName, StreamState};

/// gRPC status codes (`google.rpc.Code`) the mapping tells apart.
const INVALID_ARGUMENT: i32 = 3;
const FAILED_PRECONDITION: i32 = 9;

/// Why [`crate::RemoteStore::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error(
        "{url:?} is not a usable connection string ({reason}); write it as \
         kdb://HOST:PORT?tls=false"
    )]
    InvalidUrl { url: String, reason: String },

    #[error(
        "no Strata server answers at {url} ({reason}); start one with `strata serve`, or \
         check the host, the port and ?tls=false"
    )]
    Unreachable { url: String, reason: String },
}

/// Maps an error of a call on `stream` made with `expected`.
pub(crate) fn to_core(
    error: kurrentdb::Error,
    stream: &StreamName,
    expected: ExpectedRevision,
) -> Error {
    match error {
        kurrentdb::Error::WrongExpectedVersion { current, .. } => Error::WrongExpectedRevision {
            stream: stream.clone(),
            expected,
            actual: actual_state(current),
        },
        kurrentdb::Error::ResourceDeleted => Error::StreamDeleted {
            stream: stream.clone(),
        },
        // Deletes report a conflict as a status whose trailers the client drops; the
        // message keeps the reference server's wording, which carries the actual version.
        kurrentdb::Error::Grpc { code, message } if code as i32 == FAILED_PRECONDITION => {
            match actual_version_in(&message) {
                Some(actual) => Error::WrongExpectedRevision {
                    stream: stream.clone(),
                    expected,
                    actual,
                },
                None => transport(kurrentdb::Error::Grpc { code, message }),
            }
        }
        other => from_client(other),
    }
}

/// Maps an error that concerns no particular stream.
pub(crate) fn from_client(error: kurrentdb::Error) -> Error {
    match error {
        kurrentdb::Error::Grpc { code, message } if code as i32 == INVALID_ARGUMENT => {
            invalid_argument(message)
        }
        // The client folds UNAUTHENTICATED and PERMISSION_DENIED into one error.
        kurrentdb::Error::AccessDenied => Error::AccessDenied {
            operation: "the call".to_owned(),
            stream: "(as the server answered)".to_owned(),
        },
        // How the server (as the reference server) answers a read of `$all` from a position
        // that is not an event's: `UNKNOWN`, "Unexpected [Filtered]ReadAllResult:
        // InvalidPosition".
        kurrentdb::Error::ServerError(message) if message.contains(INVALID_POSITION) => {
            Error::InvalidArgument {
                reason: format!("the position is not an event's ({INVALID_POSITION})"),
            }
        }
        other => transport(other),
    }
}

/// An `INVALID_ARGUMENT` answer: the server words a refused filter as
/// [`Error::InvalidFilter`] displays it.
fn invalid_argument(message: String) -> Error {
    match message.strip_prefix(INVALID_FILTER) {
        Some(reason) => Error::InvalidFilter {
            reason: reason.to_owned(),
        },
        None => Error::InvalidArgument { reason: message },
    }
}

/// How the server's message for a refused filter begins (`Error::InvalidFilter`'s display).
const INVALID_FILTER: &str = "invalid filter: ";

/// The end of the message of a read of `$all` from a position that is not an event's.
const INVALID_POSITION: &str = "ReadAllResult: InvalidPosition";

fn transport(error: kurrentdb::Error) -> Error {
    Error::io(
        "talking to the Strata server",
        std::io::Error::other(error.to_string()),
    )
}

fn actual_state(current: CurrentRevision) -> StreamState {
    match current {
        CurrentRevision::Current(revision) => StreamState::At(Revision(revision)),
        CurrentRevision::NoStream => StreamState::NoStream,
    }
}

/// The actual version in "... Actual version: N": -1 no stream, i64::MAX tombstoned.
fn actual_version_in(message: &str) -> Option<StreamState> {
    let (_, rest) = message.split_once("Actual version: ")?;
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    match digits.parse::<i64>().ok()? {
        -1 => Some(StreamState::NoStream),
        i64::MAX => Some(StreamState::Tombstoned),
        revision => u64::try_from(revision)
            .ok()
            .map(|revision| StreamState::At(Revision(revision))),
    }
}

/// The state a concurrency check sees, asked of the server the protocol's way: an append of
/// no events with an expected revision no stream can be at (2^64 - 1), which writes nothing
/// and answers with the actual state.
pub(crate) async fn probe_stream_state(
    client: &Client,
    stream: &StreamName,
) -> Result<StreamState> {
    let options = AppendToStreamOptions::default()
        .stream_state(kurrentdb::StreamState::StreamRevision(u64::MAX));
    match client
        .append_to_stream(stream.as_str(), &options, Vec::<EventData>::new())
        .await
    {
        // No stream can be at 2^64 - 1: a server that accepts the probe (KurrentDB reads
        // the revision as -1, "no stream") does not answer the question.
        Ok(_) => Err(Error::io(
            format!("asking the server for the state of stream {stream}"),
            std::io::Error::other(
                "the server accepted a check no stream can pass; it is not a Strata server \
                 this adapter can ask for a stream's state",
            ),
        )),
        Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => Ok(actual_state(current)),
        Err(kurrentdb::Error::ResourceDeleted) => Ok(StreamState::Tombstoned),
        Err(other) => Err(from_client(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actual_version_is_read_from_the_reference_wording() {
        let message = "Operation failed due to WrongExpectedVersion. Stream: order-1, \
                       Expected version: 3, Actual version: 7";
        assert_eq!(
            actual_version_in(message),
            Some(StreamState::At(Revision(7)))
        );
        assert_eq!(
            actual_version_in("... Actual version: -1"),
            Some(StreamState::NoStream)
        );
        assert_eq!(actual_version_in("something else"), None);
    }

    #[test]
    fn a_refused_filter_comes_back_as_invalid_filter() {
        let reason = "the regex exceeded 10000 backtracking steps";
        let message = Error::InvalidFilter {
            reason: reason.to_owned(),
        }
        .to_string();
        assert!(
            matches!(invalid_argument(message), Error::InvalidFilter { reason: got } if got == reason)
        );
        assert!(matches!(
            invalid_argument("bad revision".to_owned()),
            Error::InvalidArgument { .. }
        ));
    }
}
