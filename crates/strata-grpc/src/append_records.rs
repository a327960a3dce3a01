//! `kurrentdb.protocol.v2.streams.StreamsService.AppendRecords`: records naming their own
//! streams plus consistency checks on any stream, committed as one atomic multi-stream
//! append ([`strata_core::EventStore::append_multi`]), as the reference server (KurrentDB
//! 26.1) answers it:
//! - a check on a stream the request writes is that stream's expected revision; a written
//!   stream without a check is written with "any";
//! - a check on a stream the request does not write is a check-only part;
//! - a refusal reports every violated check (`AppendConsistencyViolationErrorDetails`); a
//!   written stream without a check counts after the checks, in the order of its first
//!   record, as the reference numbers it.
//!
//! Where Strata differs, by design of its contract (docs/MULTI_STREAM.md): records of one
//! stream are stored together at the place of the stream's first record (the reference keeps
//! the request's exact interleaving in the log), and an expected state of -5 ("deleted") is
//! refused as an invalid argument, because Strata's soft delete is stream metadata that a
//! commit cannot check atomically.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use strata_core::{
    AppendPart, Error, EventStore, ExpectedRevision, ProposedEvent, StreamName, StreamState,
};
use tonic::{Code, Response, Status};

use crate::append_session::{
    Totals, packed_detail, proposed_event, v2_error, v2_status, wire_number,
};
use crate::convert::invalid;
use crate::errors::to_status;
use crate::proto::kurrentdb::protocol::v2::streams::consistency_check::Type as CheckType;
use crate::proto::kurrentdb::protocol::v2::streams::errors::consistency_violation::{
    StreamStateViolation, Type as ViolationType,
};
use crate::proto::kurrentdb::protocol::v2::streams::errors::{
    AppendConsistencyViolationErrorDetails, ConsistencyViolation,
};
use crate::proto::kurrentdb::protocol::v2::streams::{
    AppendRecordsRequest, AppendRecordsResponse, ConsistencyCheck, StreamRevision,
};

/// The wire's expected states (`ExpectedStreamCondition` in the reference).
const NO_STREAM: i64 = -1;
const ANY: i64 = -2;
const EXISTS: i64 = -4;
const DELETED: i64 = -5;
const TOMBSTONED: i64 = -6;

/// The expected state of one stream the request names: a check, or a written stream's
/// implicit "any".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expected {
    Revision(ExpectedRevision),
    Tombstoned,
}

impl Expected {
    /// The wire's number for a valid expected state.
    fn parse(state: i64) -> Result<Self, String> {
        match state {
            ANY => Ok(Self::Revision(ExpectedRevision::Any)),
            NO_STREAM => Ok(Self::Revision(ExpectedRevision::NoStream)),
            EXISTS => Ok(Self::Revision(ExpectedRevision::StreamExists)),
            TOMBSTONED => Ok(Self::Tombstoned),
            DELETED => Err(
                "expected state -5 (deleted) is not supported by Strata: a soft delete is \
                 stream metadata that a commit cannot check atomically"
                    .to_owned(),
            ),
            revision => u64::try_from(revision)
                .map(|revision| Self::Revision(ExpectedRevision::Exact(revision)))
                .map_err(|_| format!("expected state {revision} is not valid")),
        }
    }

    fn wire(self) -> i64 {
        match self {
            Self::Revision(ExpectedRevision::Any) => ANY,
            Self::Revision(ExpectedRevision::NoStream) => NO_STREAM,
            Self::Revision(ExpectedRevision::StreamExists) => EXISTS,
            Self::Revision(ExpectedRevision::Exact(revision)) => wire_number(revision),
            Self::Tombstoned => TOMBSTONED,
        }
    }
}

/// The wire's number for an actual state.
fn actual_state(state: StreamState) -> i64 {
    match state {
        StreamState::NoStream => NO_STREAM,
        StreamState::At(revision) => wire_number(revision.0),
        StreamState::Tombstoned => TOMBSTONED,
    }
}

/// Whether `actual` breaks `expected`, as the reference's result matrix has it for the
/// states Strata can observe (a soft-deleted stream is at its last revision here).
pub(crate) fn violates(expected: Expected, actual: StreamState) -> bool {
    match (expected, actual) {
        (Expected::Tombstoned, actual) => actual != StreamState::Tombstoned,
        (_, StreamState::Tombstoned) => true,
        (Expected::Revision(ExpectedRevision::Any), _) => false,
        (Expected::Revision(ExpectedRevision::NoStream), actual) => actual != StreamState::NoStream,
        (Expected::Revision(ExpectedRevision::StreamExists), actual) => {
            actual == StreamState::NoStream
        }
        (Expected::Revision(ExpectedRevision::Exact(revision)), actual) => {
            actual != StreamState::At(strata_core::Revision(revision))
        }
    }
}

/// One stream the request names, at its check index.
struct Entry {
    stream: StreamName,
    expected: Expected,
    events: Vec<ProposedEvent>,
}

/// The request as parts to commit: every named stream at its index, and the written ones
/// in the order of their first records.
struct Plan {
    entries: Vec<Entry>,
    written: Vec<usize>,
}

pub(crate) async fn append_records(
    store: &Arc<dyn EventStore>,
    request: AppendRecordsRequest,
) -> Result<Response<AppendRecordsResponse>, Status> {
    let mut plan = plan(store, request)?;
    let mut violations = Vec::new();
    // A tombstone is final: a stream tombstoned now stays so, and a check expecting it
    // holds without being part of the commit.
    for (index, entry) in plan.entries.iter().enumerate() {
        if entry.expected == Expected::Tombstoned {
            let state = store.stream_state(&entry.stream).await.map_err(to_status)?;
            if !entry.events.is_empty() || state != StreamState::Tombstoned {
                violations.push(violation(index, entry, actual_state(state)));
            }
        }
    }
    if !violations.is_empty() {
        return Err(consistency_violation(violations));
    }
    let checks: Vec<AppendPart> = plan
        .entries
        .iter()
        .filter(|entry| entry.events.is_empty())
        .filter_map(|entry| match entry.expected {
            Expected::Revision(expected) => Some(AppendPart::check(entry.stream.clone(), expected)),
            Expected::Tombstoned => None,
        })
        .collect();
    let mut parts = Vec::with_capacity(plan.written.len() + checks.len());
    for &index in &plan.written {
        let entry = &mut plan.entries[index];
        let Expected::Revision(expected) = entry.expected else {
            unreachable!("a written stream expecting a tombstone was refused above")
        };
        parts.push(AppendPart::write(
            entry.stream.clone(),
            expected,
            std::mem::take(&mut entry.events),
        ));
    }
    parts.extend(checks);
    match store.append_multi(parts).await {
        Ok(result) => Ok(Response::new(AppendRecordsResponse {
            revisions: result
                .parts
                .into_iter()
                .map(|(stream, appended)| StreamRevision {
                    stream: stream.as_str().to_owned(),
                    revision: wire_number(appended.current_revision.0),
                })
                .collect(),
            position: wire_number(result.position.0),
        })),
        Err(error @ (Error::WrongExpectedRevision { .. } | Error::StreamDeleted { .. })) => {
            Err(refused(store, &plan.entries, error).await)
        }
        Err(other) => Err(v2_status(store, other).await),
    }
}

/// Validates the request and sorts its records by stream. Errors as the reference's
/// validator and size checks answer them.
fn plan(store: &Arc<dyn EventStore>, request: AppendRecordsRequest) -> Result<Plan, Status> {
    if request.records.is_empty() {
        return Err(invalid(
            "Append records request must contain at least one record.",
        ));
    }
    let mut entries = Vec::with_capacity(request.checks.len() + 1);
    let mut index_of = HashMap::new();
    for (index, check) in request.checks.into_iter().enumerate() {
        let ConsistencyCheck {
            r#type: Some(CheckType::StreamState(check)),
        } = check
        else {
            return Err(invalid(format!("consistency check {index} has no type")));
        };
        let stream = StreamName::new(&check.stream)
            .map_err(|error| invalid(format!("consistency check {index}: {error}")))?;
        let expected = Expected::parse(check.expected_state)
            .map_err(|reason| invalid(format!("consistency check {index}: {reason}")))?;
        if index_of.insert(stream.clone(), entries.len()).is_some() {
            return Err(invalid(
                "Each stream can only appear once in consistency checks.",
            ));
        }
        entries.push(Entry {
            stream,
            expected,
            events: Vec::new(),
        });
    }
    let limits = store.limits();
    let mut totals = Totals::default();
    let mut written = Vec::new();
    for mut record in request.records {
        let name = record.stream.take().unwrap_or_default();
        if name.is_empty() {
            return Err(invalid(
                "every record of AppendRecords must name its stream",
            ));
        }
        let stream = StreamName::new(&name).map_err(|error| invalid(error.to_string()))?;
        let event = proposed_event(record)?;
        totals.add(&limits, &stream, &event)?;
        let index = *index_of.entry(stream.clone()).or_insert_with(|| {
            entries.push(Entry {
                stream,
                expected: Expected::Revision(ExpectedRevision::Any),
                events: Vec::new(),
            });
            entries.len() - 1
        });
        if entries[index].events.is_empty() {
            written.push(index);
        }
        entries[index].events.push(event);
    }
    Ok(Plan { entries, written })
}

fn violation(index: usize, entry: &Entry, actual: i64) -> ConsistencyViolation {
    ConsistencyViolation {
        check_index: i32::try_from(index).unwrap_or(i32::MAX),
        r#type: Some(ViolationType::StreamState(StreamStateViolation {
            stream: entry.stream.as_str().to_owned(),
            expected_state: entry.expected.wire(),
            actual_state: actual,
        })),
    }
}

/// The answer to a commit refused for a stream's state: the refusing stream as the store
/// saw it, and every other named stream whose state, read just after, breaks its check.
async fn refused(store: &Arc<dyn EventStore>, entries: &[Entry], error: Error) -> Status {
    let (failed, failed_actual) = match &error {
        Error::WrongExpectedRevision { stream, actual, .. } => {
            (stream.clone(), actual_state(*actual))
        }
        Error::StreamDeleted { stream } => {
            // Strata refuses a soft-deleted stream only when it must exist.
            let tombstoned = matches!(
                store.stream_state(stream).await,
                Ok(StreamState::Tombstoned)
            );
            (
                stream.clone(),
                if tombstoned { TOMBSTONED } else { DELETED },
            )
        }
        _ => unreachable!("only state refusals are mapped to violations"),
    };
    let mut violations = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if entry.stream == failed {
            violations.push(violation(index, entry, failed_actual));
        } else if let Ok(state) = store.stream_state(&entry.stream).await
            && violates(entry.expected, state)
        {
            violations.push(violation(index, entry, actual_state(state)));
        }
    }
    consistency_violation(violations)
}

fn consistency_violation(violations: Vec<ConsistencyViolation>) -> Status {
    let mut message = String::from("Append failed due to consistency violations.\n");
    for violation in &violations {
        if let Some(ViolationType::StreamState(state)) = &violation.r#type {
            let _ = write!(message, "\n - {}", describe(state));
        }
    }
    v2_error(
        Code::FailedPrecondition,
        "APPEND_CONSISTENCY_VIOLATION",
        message,
        Some(packed_detail(
            "AppendConsistencyViolationErrorDetails",
            &AppendConsistencyViolationErrorDetails { violations },
        )),
    )
}

/// One violation in the reference's words.
fn describe(violation: &StreamStateViolation) -> String {
    let stream = &violation.stream;
    let expected = violation.expected_state;
    let actual = violation.actual_state;
    let what = match actual {
        NO_STREAM => "does not exist".to_owned(),
        DELETED => "is deleted".to_owned(),
        TOMBSTONED => "is tombstoned".to_owned(),
        revision => format!("is at revision {revision}"),
    };
    match expected {
        revision if revision >= 0 => {
            format!("Stream '{stream}' {what}, expected revision {revision}.")
        }
        NO_STREAM if actual >= 0 => {
            format!("Stream '{stream}' already exists at revision {actual}.")
        }
        TOMBSTONED => format!("Stream '{stream}' {what}, explicitly expected tombstoned."),
        _ => format!("Stream '{stream}' {what}."),
    }
}
