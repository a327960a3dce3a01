//! AppendRecords over a real loopback connection: records naming their streams, checks on
//! streams written or not, every violated check reported, nothing written on a refusal.

use prost::Message as _;
use strata_core::{EventStore, ExpectedRevision, ProposedEvent, StreamName, StreamState};
use strata_engine::Config;
use tonic::Code;

use crate::append_records::{Expected, violates};
use crate::append_session_tests::{DETAILS, decoded, record};
use crate::proto::kurrentdb::protocol::v2::streams::consistency_check::{
    StreamStateCheck, Type as CheckType,
};
use crate::proto::kurrentdb::protocol::v2::streams::errors::AppendConsistencyViolationErrorDetails;
use crate::proto::kurrentdb::protocol::v2::streams::errors::consistency_violation::Type as ViolationType;
use crate::proto::kurrentdb::protocol::v2::streams::streams_service_client::StreamsServiceClient;
use crate::proto::kurrentdb::protocol::v2::streams::{
    AppendRecord, AppendRecordsRequest, AppendRecordsResponse, ConsistencyCheck,
};
use crate::test_server::{Running, all_events, serve};

fn to(stream: &str, event_type: &str) -> AppendRecord {
    let mut record = record(event_type, &[]);
    record.stream = Some(stream.to_owned());
    record
}

fn check(stream: &str, expected_state: i64) -> ConsistencyCheck {
    ConsistencyCheck {
        r#type: Some(CheckType::StreamState(StreamStateCheck {
            stream: stream.to_owned(),
            expected_state,
        })),
    }
}

async fn append_records(
    running: &Running,
    records: Vec<AppendRecord>,
    checks: Vec<ConsistencyCheck>,
) -> Result<AppendRecordsResponse, tonic::Status> {
    StreamsServiceClient::new(running.channel.clone())
        .append_records(AppendRecordsRequest { records, checks })
        .await
        .map(tonic::Response::into_inner)
}

async fn seed(running: &Running, stream: &str, count: usize) {
    let events = (0..count)
        .map(|_| ProposedEvent::json("Seeded", "{}"))
        .collect();
    running
        .store
        .append(
            &StreamName::new(stream).unwrap(),
            ExpectedRevision::Any,
            events,
        )
        .await
        .unwrap();
}

/// `(check index, stream, expected, actual)` of every violation a refusal reports.
fn violations(status: &tonic::Status) -> Vec<(i32, String, i64, i64)> {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let (reason, type_url, value) = decoded(status);
    assert_eq!(reason, "APPEND_CONSISTENCY_VIOLATION");
    assert_eq!(
        type_url,
        format!("{DETAILS}AppendConsistencyViolationErrorDetails")
    );
    AppendConsistencyViolationErrorDetails::decode(value.as_slice())
        .unwrap()
        .violations
        .into_iter()
        .map(|violation| match violation.r#type {
            Some(ViolationType::StreamState(state)) => (
                violation.check_index,
                state.stream,
                state.expected_state,
                state.actual_state,
            ),
            None => panic!("a violation without its type"),
        })
        .collect()
}

#[tokio::test]
async fn records_commit_with_checks_on_streams_not_written() {
    let running = serve(Config::small_for_tests()).await;
    seed(&running, "course-1", 3).await;
    let answer = append_records(
        &running,
        vec![
            to("account-a", "Debited"),
            to("account-b", "Credited"),
            to("account-a", "Noted"),
        ],
        vec![
            check("course-1", 2),
            check("student-1", -1),
            check("account-a", -1),
        ],
    )
    .await
    .unwrap();
    let all = all_events(&*running.store).await;
    assert_eq!(all.len(), 6);
    let written: Vec<(&str, &str)> = all[3..]
        .iter()
        .map(|event| (event.stream.as_str(), event.event_type.as_str()))
        .collect();
    assert_eq!(
        written,
        [
            ("account-a", "Debited"),
            ("account-a", "Noted"),
            ("account-b", "Credited")
        ],
        "a stream's records are stored together, at its first record's place"
    );
    let revisions: Vec<(String, i64)> = answer
        .revisions
        .into_iter()
        .map(|revision| (revision.stream, revision.revision))
        .collect();
    assert_eq!(
        revisions,
        [("account-a".to_owned(), 1), ("account-b".to_owned(), 0)]
    );
    assert_eq!(answer.position, all[5].position.0 as i64);
    assert_eq!(
        running
            .store
            .stream_state(&StreamName::new("student-1").unwrap())
            .await
            .unwrap(),
        StreamState::NoStream,
        "a check writes nothing"
    );
}

#[tokio::test]
async fn a_refusal_reports_every_violated_check_and_writes_nothing() {
    let running = serve(Config::small_for_tests()).await;
    seed(&running, "course-1", 1).await;
    seed(&running, "student-1", 2).await;
    seed(&running, "account-a", 1).await;
    let status = append_records(
        &running,
        vec![to("account-a", "Debited"), to("account-b", "Credited")],
        vec![
            check("course-1", 5),
            check("free-1", -2),
            check("student-1", -1),
            check("nobody-1", -4),
            check("account-a", -1),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(
        violations(&status),
        [
            (0, "course-1".to_owned(), 5, 0),
            (2, "student-1".to_owned(), -1, 1),
            (3, "nobody-1".to_owned(), -4, -1),
            (4, "account-a".to_owned(), -1, 0),
        ]
    );
    assert!(
        status
            .message()
            .contains("Stream 'course-1' is at revision 0, expected revision 5."),
        "{}",
        status.message()
    );
    assert_eq!(
        all_events(&*running.store).await.len(),
        4,
        "nothing written"
    );
}

#[tokio::test]
async fn tombstone_checks_and_a_tombstoned_target_without_a_check() {
    let running = serve(Config::small_for_tests()).await;
    let gone = StreamName::new("gone-1").unwrap();
    running
        .store
        .tombstone_stream(&gone, ExpectedRevision::Any)
        .await
        .unwrap();
    seed(&running, "live-1", 1).await;
    append_records(
        &running,
        vec![to("other-1", "E")],
        vec![check("gone-1", -6)],
    )
    .await
    .expect("a tombstone check holds on a tombstoned stream");

    let status = append_records(
        &running,
        vec![to("other-1", "E")],
        vec![check("live-1", -6), check("missing-1", -6)],
    )
    .await
    .unwrap_err();
    assert_eq!(
        violations(&status),
        [
            (0, "live-1".to_owned(), -6, 0),
            (1, "missing-1".to_owned(), -6, -1)
        ]
    );

    // The written stream without a check counts after the checks.
    let status = append_records(
        &running,
        vec![to("other-2", "E"), to("gone-1", "E")],
        vec![check("live-1", 0)],
    )
    .await
    .unwrap_err();
    assert_eq!(violations(&status), [(2, "gone-1".to_owned(), -2, -6)]);
    assert_eq!(
        running
            .store
            .stream_state(&StreamName::new("other-2").unwrap())
            .await
            .unwrap(),
        StreamState::NoStream
    );
}

#[tokio::test]
async fn a_resend_returns_the_original_result() {
    let running = serve(Config::small_for_tests()).await;
    let records = vec![to("pair-a", "A"), to("pair-b", "B")];
    let checks = vec![check("pair-a", -1), check("pair-b", -1)];
    let first = append_records(&running, records.clone(), checks.clone())
        .await
        .unwrap();
    let again = append_records(&running, records, checks).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(all_events(&*running.store).await.len(), 2);
}

#[tokio::test]
async fn invalid_requests_are_refused_with_clear_errors() {
    let running = serve(Config::small_for_tests()).await;
    let cases = [
        (Vec::new(), Vec::new(), "at least one record"),
        (
            vec![to("a-1", "E")],
            vec![check("b-1", -1), check("b-1", 0)],
            "only appear once",
        ),
        (vec![to("a-1", "E")], vec![check("b-1", -5)], "-5 (deleted)"),
        (vec![to("a-1", "E")], vec![check("b-1", -3)], "not valid"),
        (
            vec![to("a-1", "E")],
            vec![ConsistencyCheck { r#type: None }],
            "has no type",
        ),
        (vec![record("E", &[])], Vec::new(), "must name its stream"),
    ];
    for (records, checks, words) in cases {
        let status = append_records(&running, records, checks).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(words), "{status:?}");
    }
    assert!(all_events(&*running.store).await.is_empty());
}

#[test]
fn the_violation_matrix_for_the_states_strata_observes() {
    use strata_core::Revision;
    let at = |revision| StreamState::At(Revision(revision));
    let revision = |expected| Expected::Revision(expected);
    let cases = [
        (
            revision(ExpectedRevision::Any),
            StreamState::NoStream,
            false,
        ),
        (revision(ExpectedRevision::Any), at(3), false),
        (
            revision(ExpectedRevision::Any),
            StreamState::Tombstoned,
            true,
        ),
        (
            revision(ExpectedRevision::NoStream),
            StreamState::NoStream,
            false,
        ),
        (revision(ExpectedRevision::NoStream), at(0), true),
        (
            revision(ExpectedRevision::StreamExists),
            StreamState::NoStream,
            true,
        ),
        (revision(ExpectedRevision::StreamExists), at(0), false),
        (
            revision(ExpectedRevision::StreamExists),
            StreamState::Tombstoned,
            true,
        ),
        (revision(ExpectedRevision::Exact(2)), at(2), false),
        (revision(ExpectedRevision::Exact(2)), at(1), true),
        (
            revision(ExpectedRevision::Exact(2)),
            StreamState::NoStream,
            true,
        ),
        (Expected::Tombstoned, StreamState::Tombstoned, false),
        (Expected::Tombstoned, at(0), true),
        (Expected::Tombstoned, StreamState::NoStream, true),
    ];
    for (expected, actual, violated) in cases {
        assert_eq!(
            violates(expected, actual),
            violated,
            "{expected:?} {actual:?}"
        );
    }
}

#[tokio::test]
async fn server_features_list_append_records() {
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
            && method.method_name == "appendrecords"
    }));
}

#[tokio::test]
async fn the_crate_client_appends_records_with_checks() {
    use crate::client::{Client, ClientError, StreamCheck};
    let running = serve(Config::small_for_tests()).await;
    let client = Client::connect(&format!("kdb://{}?tls=false", running.address))
        .await
        .unwrap();
    let (a, b) = (
        StreamName::new("pair-a").unwrap(),
        StreamName::new("pair-b").unwrap(),
    );
    let records = vec![
        (
            a.clone(),
            ProposedEvent::json("A", "{}").with_metadata(r#"{"user":"ann"}"#),
        ),
        (b.clone(), ProposedEvent::json("B", "{}")),
    ];
    let check = StreamCheck {
        stream: a.clone(),
        expected: ExpectedRevision::NoStream,
    };
    let answer = client
        .append_records(records.clone(), vec![check.clone()])
        .await
        .unwrap();
    let all = all_events(&*running.store).await;
    assert_eq!(
        answer.revisions,
        [
            (a.clone(), strata_core::Revision(0)),
            (b, strata_core::Revision(0))
        ]
    );
    assert_eq!(answer.position, all[1].position);
    assert_eq!(&all[0].metadata[..], br#"{"user":"ann"}"#);
    let fresh = vec![(a, ProposedEvent::json("A", "{}"))];
    match client.append_records(fresh, vec![check]).await {
        Err(ClientError::Rpc { status, .. }) => {
            assert_eq!(status.code(), Code::FailedPrecondition);
        }
        other => panic!("a violated check is refused, not {other:?}"),
    }
}
