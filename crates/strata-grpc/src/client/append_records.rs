//! [`Client::append_records`]: the v2 `AppendRecords` call, an atomic append to several
//! streams with consistency checks (what `multi_append_bench` drives).

use strata_core::{ContentType, ExpectedRevision, Position, ProposedEvent, Revision, StreamName};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::{Authorization, Client, ClientError};
use crate::proto::kurrentdb::protocol::v2::streams::consistency_check::{
    StreamStateCheck, Type as CheckType,
};
use crate::proto::kurrentdb::protocol::v2::streams::streams_service_client::StreamsServiceClient;
use crate::proto::kurrentdb::protocol::v2::streams::{
    AppendRecord, AppendRecordsRequest, ConsistencyCheck, SchemaFormat, SchemaInfo,
};

pub(crate) type StreamsV2 = StreamsServiceClient<InterceptedService<Channel, Authorization>>;

/// A consistency check: `stream` must be as `expected` for the append to happen. A check
/// on a stream the call writes is that stream's expected revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCheck {
    pub stream: StreamName,
    pub expected: ExpectedRevision,
}

/// What a successful `AppendRecords` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordsAppended {
    /// Each stream written and its last revision, in the order of its first record.
    pub revisions: Vec<(StreamName, Revision)>,
    /// The position of the call's last event.
    pub position: Position,
}

impl Client {
    /// Appends `records` (each to its stream) in one atomic `AppendRecords` call, if every
    /// check holds. The event's metadata must be empty or a JSON object: it travels as the
    /// record's properties.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] when the server refuses the call (a violated check is
    /// `FAILED_PRECONDITION` with the violations in its details),
    /// [`ClientError::Protocol`] for metadata that is not a JSON object or an answer of the
    /// wrong shape.
    pub async fn append_records(
        &self,
        records: Vec<(StreamName, ProposedEvent)>,
        checks: Vec<StreamCheck>,
    ) -> Result<RecordsAppended, ClientError> {
        const OPERATION: &str = "AppendRecords";
        let records = records
            .into_iter()
            .map(|(stream, event)| record(stream, event))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| ClientError::protocol(OPERATION, reason))?;
        let checks = checks
            .into_iter()
            .map(|check| ConsistencyCheck {
                r#type: Some(CheckType::StreamState(StreamStateCheck {
                    stream: check.stream.as_str().to_owned(),
                    expected_state: expected_state(check.expected),
                })),
            })
            .collect();
        let answer = self
            .streams_v2
            .clone()
            .append_records(AppendRecordsRequest { records, checks })
            .await
            .map_err(|status| ClientError::rpc(OPERATION, status))?
            .into_inner();
        let number = |value: i64, what: &str| {
            u64::try_from(value).map_err(|_| {
                ClientError::protocol(OPERATION, format!("{what} {value} is negative"))
            })
        };
        let mut revisions = Vec::with_capacity(answer.revisions.len());
        for revision in answer.revisions {
            let stream = StreamName::new(&revision.stream)
                .map_err(|error| ClientError::protocol(OPERATION, error.to_string()))?;
            revisions.push((stream, Revision(number(revision.revision, "revision")?)));
        }
        Ok(RecordsAppended {
            revisions,
            position: Position(number(answer.position, "position")?),
        })
    }
}

fn expected_state(expected: ExpectedRevision) -> i64 {
    crate::errors::expected_version_number(expected)
}

fn record(stream: StreamName, event: ProposedEvent) -> Result<AppendRecord, String> {
    let properties = if event.metadata.is_empty() {
        Default::default()
    } else {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&event.metadata)
                .map_err(|_| format!("the metadata of event {} is not a JSON object", event.id))?;
        object
            .into_iter()
            .map(|(key, value)| (key, to_value(value)))
            .collect()
    };
    let format = match event.content_type {
        ContentType::Json => SchemaFormat::Json,
        ContentType::Binary => SchemaFormat::Bytes,
    };
    Ok(AppendRecord {
        record_id: Some(event.id.to_string()),
        properties,
        schema: Some(SchemaInfo {
            format: format as i32,
            name: event.event_type.into(),
            id: None,
        }),
        data: event.data,
        stream: Some(stream.as_str().to_owned()),
    })
}

fn to_value(value: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(flag) => Kind::BoolValue(flag),
        serde_json::Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(text) => Kind::StringValue(text),
        serde_json::Value::Array(values) => Kind::ListValue(prost_types::ListValue {
            values: values.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(object) => Kind::StructValue(prost_types::Struct {
            fields: object
                .into_iter()
                .map(|(key, value)| (key, to_value(value)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}
