//! AppendSession over a real loopback connection: one atomic commit for the session, and
//! the v2 error details clients decode.

use std::collections::HashMap;

use prost::Message as _;
use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName};
use strata_engine::Config;
use tonic::Code;

use crate::proto::kurrentdb::protocol::v2::streams::errors as details;
use crate::proto::kurrentdb::protocol::v2::streams::streams_service_client::StreamsServiceClient;
use crate::proto::kurrentdb::protocol::v2::streams::{
    AppendRecord, AppendRequest, AppendSessionResponse, SchemaFormat, SchemaInfo,
};
use crate::test_server::{Running, all_events, serve};

pub(crate) fn record(event_type: &str, properties: &[(&str, &str)]) -> AppendRecord {
    AppendRecord {
        record_id: Some(uuid::Uuid::new_v4().to_string()),
        properties: properties
            .iter()
            .map(|(key, value)| {
                let value = prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue((*value).to_owned())),
                };
                ((*key).to_owned(), value)
            })
            .collect::<HashMap<_, _>>(),
        schema: Some(SchemaInfo {
            format: SchemaFormat::Json as i32,
            name: event_type.to_owned(),
            id: None,
        }),
        data: br#"{"amount":5}"#.to_vec().into(),
        stream: None,
    }
}

fn request(stream: &str, expected: Option<i64>, records: Vec<AppendRecord>) -> AppendRequest {
    AppendRequest {
        stream: stream.to_owned(),
        records,
        expected_revision: expected,
    }
}

async fn session(
    running: &Running,
    requests: Vec<AppendRequest>,
) -> Result<AppendSessionResponse, tonic::Status> {
    let mut client = StreamsServiceClient::new(running.channel.clone());
    client
        .append_session(futures::stream::iter(requests))
        .await
        .map(tonic::Response::into_inner)
}

/// The packed details of a v2 error: `(reason, detail type, detail bytes)`.
pub(crate) fn decoded(status: &tonic::Status) -> (String, String, Vec<u8>) {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RichStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(message, repeated, tag = "3")]
        details: Vec<prost_types::Any>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct ErrorInfo {
        #[prost(string, tag = "1")]
        reason: String,
        #[prost(string, tag = "2")]
        domain: String,
    }
    let rich = RichStatus::decode(status.details()).expect("grpc-status-details-bin");
    assert_eq!(rich.code, status.code() as i32);
    assert_eq!(
        rich.details[0].type_url,
        "type.googleapis.com/google.rpc.ErrorInfo"
    );
    let info = ErrorInfo::decode(rich.details[0].value.as_slice()).unwrap();
    assert_eq!(info.domain, "streams");
    let (type_url, value) = rich
        .details
        .get(1)
        .map(|detail| (detail.type_url.clone(), detail.value.clone()))
        .unwrap_or_default();
    (info.reason, type_url, value)
}

pub(crate) const DETAILS: &str = "type.googleapis.com/kurrentdb.protocol.v2.streams.errors.";

#[tokio::test]
async fn a_session_commits_every_stream_at_consecutive_positions() {
    let running = serve(Config::small_for_tests()).await;
    let answer = session(
        &running,
        vec![
            request(
                "account-a",
                Some(-1),
                vec![record("Debited", &[("user", "ann")]), record("Noted", &[])],
            ),
            request("account-b", None, vec![record("Credited", &[])]),
        ],
    )
    .await
    .unwrap();
    let all = all_events(&*running.store).await;
    assert_eq!(all.len(), 3);
    let streams: Vec<&str> = all.iter().map(|event| event.stream.as_str()).collect();
    assert_eq!(streams, ["account-a", "account-a", "account-b"]);
    assert_eq!(answer.position, all[2].position.0 as i64);
    let output: Vec<(String, i64, Option<i64>)> = answer
        .output
        .into_iter()
        .map(|part| (part.stream, part.stream_revision, part.position))
        .collect();
    assert_eq!(
        output,
        [
            ("account-a".to_owned(), 1, Some(all[1].position.0 as i64)),
            ("account-b".to_owned(), 0, Some(all[2].position.0 as i64)),
        ]
    );
    assert_eq!(all[0].event_type, "Debited");
    assert_eq!(all[0].content_type, strata_core::ContentType::Json);
    assert_eq!(
        &all[0].metadata[..],
        br#"{"user":"ann"}"#,
        "properties become JSON metadata"
    );
}

#[tokio::test]
async fn a_conflict_fails_the_session_with_revision_conflict_details() {
    let running = serve(Config::small_for_tests()).await;
    let existing = StreamName::new("account-b").unwrap();
    running
        .store
        .append(
            &existing,
            ExpectedRevision::NoStream,
            vec![ProposedEvent::json("Opened", "{}")],
        )
        .await
        .unwrap();
    let status = session(
        &running,
        vec![
            request("account-a", Some(-1), vec![record("Debited", &[])]),
            request("account-b", Some(7), vec![record("Credited", &[])]),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let (reason, type_url, value) = decoded(&status);
    assert_eq!(reason, "STREAM_REVISION_CONFLICT");
    assert_eq!(
        type_url,
        format!("{DETAILS}StreamRevisionConflictErrorDetails")
    );
    let conflict = details::StreamRevisionConflictErrorDetails::decode(value.as_slice()).unwrap();
    assert_eq!(
        (
            conflict.stream.as_str(),
            conflict.expected_revision,
            conflict.actual_revision
        ),
        ("account-b", 7, 0)
    );
    assert_eq!(
        all_events(&*running.store).await.len(),
        1,
        "nothing of the session was written"
    );
}

#[tokio::test]
async fn a_tombstoned_stream_a_repeated_stream_and_an_empty_session_are_refused() {
    let running = serve(Config::small_for_tests()).await;
    let gone = StreamName::new("gone-1").unwrap();
    running
        .store
        .tombstone_stream(&gone, ExpectedRevision::Any)
        .await
        .unwrap();
    let status = session(
        &running,
        vec![request("gone-1", None, vec![record("E", &[])])],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let (reason, type_url, _) = decoded(&status);
    assert_eq!(reason, "STREAM_TOMBSTONED");
    assert_eq!(type_url, format!("{DETAILS}StreamTombstonedErrorDetails"));

    let status = session(
        &running,
        vec![
            request("twice-1", None, vec![record("E", &[])]),
            request("twice-1", None, vec![record("E", &[])]),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let (reason, type_url, value) = decoded(&status);
    assert_eq!(reason, "STREAM_ALREADY_IN_APPEND_SESSION");
    assert_eq!(
        type_url,
        format!("{DETAILS}StreamAlreadyInAppendSessionErrorDetails")
    );
    let repeated =
        details::StreamAlreadyInAppendSessionErrorDetails::decode(value.as_slice()).unwrap();
    assert_eq!(repeated.stream, "twice-1");

    let status = session(&running, Vec::new()).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(decoded(&status).0, "APPEND_SESSION_NO_REQUESTS");
    assert_eq!(
        all_events(&*running.store).await.len(),
        1,
        "only the tombstone is stored"
    );
}

#[tokio::test]
async fn a_session_over_the_limits_is_refused_with_size_details() {
    let running = serve(Config::small_for_tests()).await;
    let limits = running.store.limits();
    let mut big = record("Big", &[]);
    big.data = vec![b'x'; limits.event_bytes_max + 1].into();
    let status = session(&running, vec![request("big-1", None, vec![big])])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let (reason, _, value) = decoded(&status);
    assert_eq!(reason, "APPEND_RECORD_SIZE_EXCEEDED");
    let exceeded = details::AppendRecordSizeExceededErrorDetails::decode(value.as_slice()).unwrap();
    assert_eq!(exceeded.stream, "big-1");
    assert_eq!(exceeded.max_size as usize, limits.event_bytes_max);

    // Records each within the event limit, together over the append limit.
    let mut requests = Vec::new();
    let per_record = limits.event_bytes_max - 16;
    let count = limits.append_bytes_max / per_record + 1;
    for index in 0..count {
        let mut sized = record("Sized", &[]);
        sized.data = vec![b'y'; per_record].into();
        requests.push(request(&format!("sum-{index}"), None, vec![sized]));
    }
    let status = session(&running, requests).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(decoded(&status).0, "APPEND_TRANSACTION_SIZE_EXCEEDED");
    assert!(all_events(&*running.store).await.is_empty());
}

#[tokio::test]
async fn server_features_list_append_session() {
    use crate::proto::event_store::client::Empty;
    use crate::proto::event_store::client::server_features::server_features_client::ServerFeaturesClient;
    let running = serve(Config::small_for_tests()).await;
    let methods = ServerFeaturesClient::new(running.channel.clone())
        .get_supported_methods(Empty {})
        .await
        .unwrap()
        .into_inner();
    assert!(methods.methods.iter().any(|method| {
        method.service_name == "kurrentdb.protocol.v2.streams.streamsservice"
            && method.method_name == "appendsession"
    }));
}
