//! `kurrentdb.protocol.v2.streams.StreamsService.AppendSession`: a client stream of one
//! request per stream, committed as one atomic multi-stream append
//! ([`strata_core::EventStore::append_multi`]) when the client ends it. The service's
//! other call, AppendRecords, is in `append_records.rs` and shares the helpers here. Errors carry the v2
//! details (a `google.rpc.ErrorInfo`, then the error's own message) as the reference server
//! sends them.

use std::collections::HashSet;
use std::sync::Arc;

use prost::Message as _;
use strata_core::{
    AppendPart, Bytes, ContentType, Error, EventId, EventStore, ExpectedRevision, Limits,
    ProposedEvent, StreamName, StreamState,
};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::access::Access;
use crate::convert::invalid;
use crate::errors::{actual_version_number, expected_version_number, to_status};
use crate::proto::kurrentdb::protocol::v2::streams::errors as details;
use crate::proto::kurrentdb::protocol::v2::streams::streams_service_server::StreamsService;
use crate::proto::kurrentdb::protocol::v2::streams::{
    AppendRecord, AppendRecordsRequest, AppendRecordsResponse, AppendRequest, AppendResponse,
    AppendSessionResponse, SchemaFormat,
};

pub(crate) struct StreamsV2Service {
    pub(crate) access: Access,
}

#[tonic::async_trait]
impl StreamsService for StreamsV2Service {
    async fn append_session(
        &self,
        request: Request<Streaming<AppendRequest>>,
    ) -> Result<Response<AppendSessionResponse>, Status> {
        let store = self.access.store(&request).await?;
        append_session(&store, request).await
    }

    async fn append_records(
        &self,
        request: Request<AppendRecordsRequest>,
    ) -> Result<Response<AppendRecordsResponse>, Status> {
        let store = self.access.store(&request).await?;
        crate::append_records::append_records(&store, request.into_inner()).await
    }
}

async fn append_session(
    store: &Arc<dyn EventStore>,
    request: Request<Streaming<AppendRequest>>,
) -> Result<Response<AppendSessionResponse>, Status> {
    let limits = store.limits();
    let mut messages = request.into_inner();
    let mut parts = Vec::new();
    let mut streams = HashSet::new();
    let mut totals = Totals::default();
    while let Some(message) = messages.message().await? {
        let stream =
            StreamName::new(&message.stream).map_err(|error| invalid(error.to_string()))?;
        if !streams.insert(stream.clone()) {
            return Err(already_in_session(&stream));
        }
        if message.records.is_empty() {
            return Err(invalid(format!(
                "the append request for stream '{stream}' has no records"
            )));
        }
        let expected = expected_revision(message.expected_revision)?;
        let mut events = Vec::with_capacity(message.records.len());
        for record in message.records {
            let event = proposed_event(record)?;
            totals.add(&limits, &stream, &event)?;
            events.push(event);
        }
        parts.push(AppendPart::write(stream, expected, events));
    }
    if parts.is_empty() {
        return Err(v2_error(
            Code::FailedPrecondition,
            "APPEND_SESSION_NO_REQUESTS",
            "An append session was completed without any append requests.".to_owned(),
            None,
        ));
    }
    match store.append_multi(parts).await {
        Ok(result) => Ok(Response::new(AppendSessionResponse {
            output: result
                .parts
                .into_iter()
                .map(|(stream, appended)| AppendResponse {
                    stream: stream.as_str().to_owned(),
                    stream_revision: wire_number(appended.current_revision.0),
                    position: Some(wire_number(appended.position.0)),
                })
                .collect(),
            position: wire_number(result.position.0),
        })),
        Err(error) => Err(v2_status(store, error).await),
    }
}

/// The session's running sums, checked as records arrive: one record over the event limit,
/// or the session over the append limits, ends it before the rest is read.
#[derive(Default)]
pub(crate) struct Totals {
    events: usize,
    bytes: usize,
}

impl Totals {
    pub(crate) fn add(
        &mut self,
        limits: &Limits,
        stream: &StreamName,
        event: &ProposedEvent,
    ) -> Result<(), Status> {
        event.validate_type().map_err(to_status)?;
        let size = event.size_bytes();
        if size > limits.event_bytes_max {
            return Err(record_size_exceeded(
                stream,
                event.id,
                size,
                limits.event_bytes_max,
            ));
        }
        self.events += 1;
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > limits.append_bytes_max {
            return Err(transaction_size_exceeded(
                self.bytes,
                limits.append_bytes_max,
            ));
        }
        if self.events > limits.append_events_max {
            return Err(to_status(Error::AppendTooLarge {
                size: self.events,
                limit: limits.append_events_max,
                unit: "events",
            }));
        }
        Ok(())
    }
}

/// The wire's expected revision: absent or -2 any, -1 no stream, -4 exists, else exact.
fn expected_revision(value: Option<i64>) -> Result<ExpectedRevision, Status> {
    match value {
        None | Some(-2) => Ok(ExpectedRevision::Any),
        Some(-1) => Ok(ExpectedRevision::NoStream),
        Some(-4) => Ok(ExpectedRevision::StreamExists),
        Some(revision) => u64::try_from(revision)
            .map(ExpectedRevision::Exact)
            .map_err(|_| invalid(format!("expected revision {revision} is not valid"))),
    }
}

/// A record as an event: the schema name is its type, a JSON schema format makes it JSON,
/// and its properties become its metadata, a JSON object.
pub(crate) fn proposed_event(record: AppendRecord) -> Result<ProposedEvent, Status> {
    let id = match record.record_id.as_deref() {
        None | Some("") => EventId::new_random(),
        Some(text) => ::uuid::Uuid::parse_str(text)
            .map(EventId)
            .map_err(|error| invalid(format!("record id {text:?} is not a UUID: {error}")))?,
    };
    let schema = record
        .schema
        .ok_or_else(|| invalid(format!("record {id} has no schema (its event type)")))?;
    let content_type = if schema.format == SchemaFormat::Json as i32 {
        ContentType::Json
    } else {
        ContentType::Binary
    };
    let metadata = if record.properties.is_empty() {
        Bytes::new()
    } else {
        let object: serde_json::Map<String, serde_json::Value> = record
            .properties
            .into_iter()
            .map(|(key, value)| (key, json_value(value)))
            .collect();
        Bytes::from(serde_json::Value::Object(object).to_string())
    };
    Ok(ProposedEvent {
        id,
        event_type: schema.name.into(),
        content_type,
        data: record.data,
        metadata,
    })
}

fn json_value(value: prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(flag)) => serde_json::Value::Bool(flag),
        Some(Kind::NumberValue(number)) => serde_json::Number::from_f64(number)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Some(Kind::StringValue(text)) => serde_json::Value::String(text),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.into_iter().map(json_value).collect())
        }
        Some(Kind::StructValue(object)) => serde_json::Value::Object(
            object
                .fields
                .into_iter()
                .map(|(key, value)| (key, json_value(value)))
                .collect(),
        ),
    }
}

pub(crate) fn wire_number(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `google.rpc.Status` with every detail (the v1 protocol's copy holds one).
#[derive(Clone, PartialEq, prost::Message)]
struct RichStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// `google.rpc.ErrorInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct ErrorInfo {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
}

fn pack(type_name: &str, value: Vec<u8>) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value,
    }
}

pub(crate) fn packed_detail<M: prost::Message>(name: &str, message: &M) -> prost_types::Any {
    pack(
        &format!("kurrentdb.protocol.v2.streams.errors.{name}"),
        message.encode_to_vec(),
    )
}

/// A v2 streams error: `code` with `ErrorInfo { reason, domain: "streams" }` and `detail`.
pub(crate) fn v2_error(
    code: Code,
    reason: &str,
    message: String,
    detail: Option<prost_types::Any>,
) -> Status {
    let info = ErrorInfo {
        reason: reason.to_owned(),
        domain: "streams".to_owned(),
    };
    let mut packed = vec![pack("google.rpc.ErrorInfo", info.encode_to_vec())];
    packed.extend(detail);
    let status = RichStatus {
        code: code as i32,
        message: message.clone(),
        details: packed,
    };
    Status::with_details(code, message, status.encode_to_vec().into())
}

fn already_in_session(stream: &StreamName) -> Status {
    v2_error(
        Code::Aborted,
        "STREAM_ALREADY_IN_APPEND_SESSION",
        format!(
            "Stream '{stream}' already has a different group of messages in this session. \
             Appends for the same stream must currently be grouped together and not \
             interleaved with appends for other streams."
        ),
        Some(packed_detail(
            "StreamAlreadyInAppendSessionErrorDetails",
            &details::StreamAlreadyInAppendSessionErrorDetails {
                stream: stream.as_str().to_owned(),
            },
        )),
    )
}

fn wire_size(size: usize) -> i32 {
    i32::try_from(size).unwrap_or(i32::MAX)
}

fn record_size_exceeded(stream: &StreamName, id: EventId, size: usize, max_size: usize) -> Status {
    v2_error(
        Code::InvalidArgument,
        "APPEND_RECORD_SIZE_EXCEEDED",
        format!(
            "The size of record {id} ({size} bytes) exceeds the maximum allowed size of \
             {max_size} bytes by {} bytes",
            size - max_size
        ),
        Some(packed_detail(
            "AppendRecordSizeExceededErrorDetails",
            &details::AppendRecordSizeExceededErrorDetails {
                stream: stream.as_str().to_owned(),
                record_id: id.to_string(),
                size: wire_size(size),
                max_size: wire_size(max_size),
            },
        )),
    )
}

fn transaction_size_exceeded(size: usize, max_size: usize) -> Status {
    v2_error(
        Code::Aborted,
        "APPEND_TRANSACTION_SIZE_EXCEEDED",
        format!(
            "Transaction size ({size} bytes) exceeded the maximum allowed size of {max_size} \
             bytes by {} bytes.",
            size - max_size
        ),
        Some(packed_detail(
            "AppendTransactionSizeExceededErrorDetails",
            &details::AppendTransactionSizeExceededErrorDetails {
                size: wire_size(size),
                max_size: wire_size(max_size),
            },
        )),
    )
}

/// The v2 answer to a store error; errors the v2 protocol has no detail for keep their v1
/// status.
pub(crate) async fn v2_status(store: &Arc<dyn EventStore>, error: Error) -> Status {
    match error {
        Error::WrongExpectedRevision {
            stream,
            expected,
            actual,
        } => {
            let expected = expected_version_number(expected);
            let actual = actual_version_number(actual);
            v2_error(
                Code::FailedPrecondition,
                "STREAM_REVISION_CONFLICT",
                format!(
                    "Append failed due to a revision conflict on stream '{stream}'. Expected \
                     revision: {expected}. Actual revision: {actual}."
                ),
                Some(packed_detail(
                    "StreamRevisionConflictErrorDetails",
                    &details::StreamRevisionConflictErrorDetails {
                        stream: stream.as_str().to_owned(),
                        expected_revision: expected,
                        actual_revision: actual,
                    },
                )),
            )
        }
        // Strata refuses a soft-deleted stream only for `StreamExists`: the reference calls
        // that deleted, and a tombstoned stream tombstoned.
        Error::StreamDeleted { stream } => {
            let tombstoned = matches!(
                store.stream_state(&stream).await,
                Ok(StreamState::Tombstoned)
            );
            let name = stream.as_str().to_owned();
            if tombstoned {
                v2_error(
                    Code::FailedPrecondition,
                    "STREAM_TOMBSTONED",
                    format!(
                        "Stream '{stream}' has been tombstoned. It has been permanently removed \
                         from the system and cannot be restored."
                    ),
                    Some(packed_detail(
                        "StreamTombstonedErrorDetails",
                        &details::StreamTombstonedErrorDetails { stream: name },
                    )),
                )
            } else {
                v2_error(
                    Code::FailedPrecondition,
                    "STREAM_DELETED",
                    format!(
                        "Stream '{stream}' has been soft deleted. It will not be visible in the \
                         stream list, until it is restored by appending to it again."
                    ),
                    Some(packed_detail(
                        "StreamDeletedErrorDetails",
                        &details::StreamDeletedErrorDetails { stream: name },
                    )),
                )
            }
        }
        Error::AppendTooLarge {
            size,
            limit,
            unit: "bytes",
        } => transaction_size_exceeded(size, limit),
        other => to_status(other),
    }
}
