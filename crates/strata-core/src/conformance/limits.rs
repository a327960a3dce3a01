//! Limits and validation: input over a bound is a typed error and writes nothing.

use bytes::Bytes;

use crate::error::Error;
use crate::limits::{EVENT_TYPE_BYTES_MAX, STREAM_NAME_BYTES_MAX};
use crate::store::EventStore;
use crate::types::{ExpectedRevision, ProposedEvent, StreamName, StreamState};

use super::Backend;
use super::support::{StoreChecks, event, events, stream};

/// Largest `append_events_max` the kit tests by building one append over it.
const APPEND_EVENTS_TESTED_MAX: usize = 100_000;

/// A binary event of exactly `size_bytes` as the limits count it.
fn event_of_size(size_bytes: usize, shared: &Bytes) -> ProposedEvent {
    let event_type = "Sized";
    let data = shared.slice(..size_bytes - event_type.len());
    ProposedEvent::binary(event_type, data)
}

/// An event over the event limit is refused with `EventTooLarge`, even inside a batch of
/// valid events; an event exactly at the limit is accepted.
pub async fn event_over_the_limit_is_refused<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let event_bytes_max = store.limits().event_bytes_max;
    let shared = Bytes::from(vec![7u8; event_bytes_max + 1]);
    let big = stream("limits_event-1");
    let too_large = event_of_size(event_bytes_max + 1, &shared);
    let too_large_id = too_large.id;
    let batch = vec![event("Small", 0), too_large, event("Small", 1)];
    let result = store.append(&big, ExpectedRevision::Any, batch).await;
    match result {
        Err(Error::EventTooLarge { event_id, .. }) => {
            assert_eq!(event_id, too_large_id, "EventTooLarge names the event");
        }
        other => {
            panic!("an event over {event_bytes_max} bytes: wanted EventTooLarge, got {other:?}")
        }
    }
    assert_eq!(
        store.state_ok(&big).await,
        StreamState::NoStream,
        "nothing was written"
    );
    assert!(store.all_events().await.is_empty(), "nothing reached $all");

    let at_limit = event_of_size(event_bytes_max, &shared);
    store
        .append_ok(&big, ExpectedRevision::NoStream, vec![at_limit.clone()])
        .await;
    let read = store.stream_events(&big).await;
    assert_eq!(read.len(), 1, "an event at the limit is stored");
    assert_eq!(read[0].data, at_limit.data, "and read back whole");
}

/// An append whose events together exceed the append limit is refused.
pub async fn append_over_the_limit_is_refused<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let limits = store.limits();
    let event_size = limits.event_bytes_max.min(limits.append_bytes_max);
    let count = limits.append_bytes_max / event_size + 1;
    let shared = Bytes::from(vec![1u8; event_size]);
    let batch: Vec<_> = (0..count)
        .map(|_| event_of_size(event_size, &shared))
        .collect();
    let big = stream("limits_append-1");
    let result = store.append(&big, ExpectedRevision::Any, batch).await;
    assert!(
        matches!(result, Err(Error::AppendTooLarge { .. })),
        "{count} events of {event_size} bytes over {} bytes: wanted AppendTooLarge, got {result:?}",
        limits.append_bytes_max
    );
    assert_eq!(
        store.state_ok(&big).await,
        StreamState::NoStream,
        "nothing was written"
    );

    if limits.append_events_max < APPEND_EVENTS_TESTED_MAX {
        let batch = events(limits.append_events_max + 1);
        let result = store.append(&big, ExpectedRevision::Any, batch).await;
        assert!(
            matches!(result, Err(Error::AppendTooLarge { .. })),
            "{} events: wanted AppendTooLarge, got {result:?}",
            limits.append_events_max + 1
        );
        assert!(store.all_events().await.is_empty(), "nothing reached $all");
    }
}

/// Empty and over-long event types are refused with `InvalidEventType`.
pub async fn invalid_event_type_is_refused<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("limits_event_type-1");
    let long_type = "T".repeat(EVENT_TYPE_BYTES_MAX + 1);
    for event_type in [String::new(), long_type] {
        let batch = vec![
            event("Valid", 0),
            ProposedEvent::json(event_type.clone(), "{}"),
        ];
        let result = store.append(&orders, ExpectedRevision::Any, batch).await;
        assert!(
            matches!(result, Err(Error::InvalidEventType { .. })),
            "event type of {} bytes: wanted InvalidEventType, got {result:?}",
            event_type.len()
        );
    }
    assert_eq!(
        store.state_ok(&orders).await,
        StreamState::NoStream,
        "nothing was written"
    );
}

/// Empty, over-long and NUL-carrying stream names are refused; the longest valid name works.
pub async fn invalid_stream_names_are_refused<B: Backend>(backend: &B) {
    let too_long = "s".repeat(STREAM_NAME_BYTES_MAX + 1);
    for name in ["", too_long.as_str(), "with\0nul"] {
        let result = StreamName::new(name);
        assert!(
            matches!(result, Err(Error::InvalidStreamName { .. })),
            "stream name of {} bytes: wanted InvalidStreamName, got {result:?}",
            name.len()
        );
    }
    let store = backend.fresh().await;
    let longest = stream(&"s".repeat(STREAM_NAME_BYTES_MAX));
    store
        .append_ok(&longest, ExpectedRevision::NoStream, events(1))
        .await;
    assert_eq!(
        store.stream_events(&longest).await.len(),
        1,
        "the longest name works"
    );
    let unicode = stream("заказ-🦀-1");
    store
        .append_ok(&unicode, ExpectedRevision::NoStream, events(1))
        .await;
    let read = store.stream_events(&unicode).await;
    assert_eq!(
        read.first().map(|event| &event.stream),
        Some(&unicode),
        "UTF-8 names"
    );
}

/// Writing metadata for a metadata stream is refused.
pub async fn metadata_of_a_metadata_stream_is_refused<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let metadata_stream = stream("limits_metadata-1").metadata_stream();
    let result = store
        .set_stream_metadata(&metadata_stream, ExpectedRevision::Any, &Default::default())
        .await;
    assert!(
        matches!(result, Err(Error::InvalidArgument { .. })),
        "metadata of {metadata_stream}: wanted InvalidArgument, got {result:?}"
    );
}

/// An event type containing NUL is refused (PostgreSQL's text cannot hold it), with an
/// `InvalidEventType` naming the reason, and writes nothing.
pub async fn event_type_with_nul_is_refused<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("limits_type_nul-1");
    let batch = vec![event("Fine", 0), event("Bad\0Type", 1)];
    let result = store.append(&orders, ExpectedRevision::Any, batch).await;
    assert!(
        matches!(&result, Err(Error::InvalidEventType { reason, .. }) if reason.contains("NUL")),
        "an event type with NUL: wanted InvalidEventType, got {result:?}"
    );
    assert_eq!(store.state_ok(&orders).await, StreamState::NoStream);
    assert!(store.all_events().await.is_empty(), "nothing reached $all");
}
