//! `strata serve` driven by the official Rust client (`kurrentdb` crate), black box: every test
//! starts its own server process on a free loopback port with its own data directory.
//!
//! Where the reference server (KurrentDB) has a specific answer — error codes, which revision a
//! conflict reports, which side of a position a read starts — the tests assert that answer, so
//! that code written against KurrentDB keeps working.

#[expect(
    dead_code,
    reason = "the shared support module serves several test crates"
)]
mod support;

#[path = "kurrentdb_rust_client/appends.rs"]
mod appends;
#[path = "kurrentdb_rust_client/lifecycle.rs"]
mod lifecycle;
#[path = "kurrentdb_rust_client/limits.rs"]
mod limits;
#[path = "kurrentdb_rust_client/operations.rs"]
mod operations;
#[path = "kurrentdb_rust_client/persistent.rs"]
mod persistent;
#[path = "kurrentdb_rust_client/projections.rs"]
mod projections;
#[path = "kurrentdb_rust_client/reads.rs"]
mod reads;
#[path = "kurrentdb_rust_client/reference_answers.rs"]
mod reference_answers;
#[path = "kurrentdb_rust_client/round_trip.rs"]
mod round_trip;
#[path = "kurrentdb_rust_client/subscriptions.rs"]
mod subscriptions;
#[path = "kurrentdb_rust_client/system_streams.rs"]
mod system_streams;
#[path = "kurrentdb_rust_client/tls.rs"]
mod tls;

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use kurrentdb::{
    AppendToStreamOptions, BatchAppendOptions, Client, CurrentRevision, DeleteStreamOptions, Error,
    EventData, Position, ReadAllOptions, ReadStreamOptions, RecordedEvent, StreamMetadata,
    StreamMetadataResult, StreamPosition, StreamState, SubscribeToAllOptions,
    SubscribeToStreamOptions, Subscription, SubscriptionEvent, SubscriptionFilter,
    TombstoneStreamOptions, WriteResult,
};
use serde_json::{Value, json};
use support::{Server, within};
use uuid::Uuid;

fn new_ids(count: usize) -> Vec<Uuid> {
    (0..count).map(|_| Uuid::new_v4()).collect()
}

/// JSON events `{"n": i}` of one type, with the given ids in order.
fn events_with_ids(event_type: &str, ids: &[Uuid]) -> Vec<EventData> {
    ids.iter()
        .enumerate()
        .map(|(n, id)| {
            EventData::json(event_type, &json!({ "n": n }))
                .expect("json payload")
                .id(*id)
        })
        .collect()
}

fn state(expected: StreamState) -> AppendToStreamOptions {
    AppendToStreamOptions::default().stream_state(expected)
}

async fn try_append(
    client: &Client,
    stream: &str,
    expected: StreamState,
    events: Vec<EventData>,
) -> kurrentdb::Result<WriteResult> {
    within(
        &format!("append to {stream}"),
        client.append_to_stream(stream, &state(expected), events),
    )
    .await
}

async fn append(
    client: &Client,
    stream: &str,
    expected: StreamState,
    events: Vec<EventData>,
) -> WriteResult {
    try_append(client, stream, expected, events)
        .await
        .unwrap_or_else(|error| panic!("Append to {stream} at {expected:?} fails: {error:?}"))
}

/// Appends `count` fresh events and returns their ids.
async fn append_new(
    client: &Client,
    stream: &str,
    expected: StreamState,
    count: usize,
) -> Vec<Uuid> {
    let ids = new_ids(count);
    append(client, stream, expected, events_with_ids("Numbered", &ids)).await;
    ids
}

async fn try_read_stream(
    client: &Client,
    stream: &str,
    options: &ReadStreamOptions,
) -> kurrentdb::Result<Vec<RecordedEvent>> {
    within(&format!("read {stream}"), async {
        let mut reader = client.read_stream(stream, options).await?;
        let mut events = Vec::new();
        while let Some(resolved) = reader.next().await? {
            events.push(resolved.event.expect("a read event carries its event"));
        }
        Ok(events)
    })
    .await
}

async fn read_stream(
    client: &Client,
    stream: &str,
    options: &ReadStreamOptions,
) -> Vec<RecordedEvent> {
    try_read_stream(client, stream, options)
        .await
        .unwrap_or_else(|error| panic!("Read of {stream} fails: {error:?}"))
}

async fn read_all(client: &Client, options: &ReadAllOptions) -> Vec<RecordedEvent> {
    within("read $all", async {
        let mut reader = client.read_all(options).await?;
        let mut events = Vec::new();
        while let Some(resolved) = reader.next().await? {
            events.push(resolved.event.expect("a read event carries its event"));
        }
        Ok::<_, Error>(events)
    })
    .await
    .unwrap_or_else(|error| panic!("Read of $all fails: {error:?}"))
}

fn revisions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.revision).collect()
}

fn ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|event| event.id).collect()
}

fn with_prefix<'a>(events: &'a [RecordedEvent], prefix: &str) -> Vec<&'a RecordedEvent> {
    events
        .iter()
        .filter(|event| event.stream_id().starts_with(prefix))
        .collect()
}

fn ids_of(events: &[&RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|event| event.id).collect()
}

fn assert_wrong_expected_version(
    result: kurrentdb::Result<WriteResult>,
    expected: StreamState,
    current: CurrentRevision,
) {
    match result {
        Err(Error::WrongExpectedVersion {
            expected: got_expected,
            current: got_current,
        }) => assert_eq!(
            (got_expected, got_current),
            (expected, current),
            "WrongExpectedVersion carries (expected, current)"
        ),
        other => panic!(
            "Append (Streams.Append) should answer wrong_expected_version {{ expected: \
             {expected:?}, current: {current:?} }}, got {other:?}"
        ),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: kurrentdb::Result<T>, what: &str) {
    match result {
        Err(Error::ResourceNotFound) => {}
        other => panic!("{what}: expected stream_not_found (ResourceNotFound), got {other:?}"),
    }
}

fn assert_deleted<T: std::fmt::Debug>(result: kurrentdb::Result<T>, what: &str) {
    match result {
        Err(Error::ResourceDeleted) => {}
        other => panic!(
            "{what}: expected FailedPrecondition with trailer exception=stream-deleted \
             (ResourceDeleted), got {other:?}"
        ),
    }
}

/// gRPC status codes by number (the client's `tonic` is not ours to name).
const CODE_NOT_FOUND: i32 = 5;
const CODE_ALREADY_EXISTS: i32 = 6;
const CODE_FAILED_PRECONDITION: i32 = 9;

fn assert_grpc_code<T: std::fmt::Debug>(result: kurrentdb::Result<T>, code: i32, what: &str) {
    match result {
        Err(Error::Grpc { code: got, message }) => {
            let got_number: i32 = got.into();
            assert_eq!(
                got_number, code,
                "{what}: expected gRPC status code {code}, got {got:?} ({message})"
            );
        }
        other => panic!("{what}: expected gRPC status code {code}, got {other:?}"),
    }
}

fn seconds_since_epoch_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

async fn next_message(subscription: &mut Subscription, what: &str) -> SubscriptionEvent {
    within(what, subscription.next_subscription_event())
        .await
        .unwrap_or_else(|error| panic!("{what}: the subscription fails: {error:?}"))
}

/// Waits for the subscription's confirmation, which must be its first message.
async fn expect_confirmation(subscription: &mut Subscription) {
    match next_message(subscription, "subscription confirmation").await {
        SubscriptionEvent::Confirmed(id) => assert!(!id.is_empty(), "empty subscription id"),
        other => panic!("A subscription's first message must be its confirmation, got {other:?}"),
    }
}

fn event_of(message: SubscriptionEvent) -> Option<RecordedEvent> {
    match message {
        SubscriptionEvent::EventAppeared(resolved) => Some(
            resolved
                .event
                .expect("a subscription event carries its event"),
        ),
        _ => None,
    }
}
