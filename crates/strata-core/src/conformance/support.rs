//! Helpers shared by the cases: building events, appending and reading with clear panics.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::store::{EventStore, ReadAllOptions, ReadStreamOptions, StreamSlice};
use crate::subscription::{Subscription, SubscriptionItem};
use crate::types::{
    AppendResult, ExpectedRevision, ProposedEvent, RecordedEvent, StreamName, StreamState,
};

/// Longest a case waits for one subscription item before it declares the item lost.
pub(crate) const ITEM_WAIT_MAX: Duration = Duration::from_secs(5);

/// Subscription buffer the cases use: small, so catch-up and appends overlap.
pub(crate) const SUBSCRIPTION_BUFFER_ITEMS: usize = 16;

/// A stream name the case knows to be valid.
pub(crate) fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap_or_else(|error| panic!("stream name {name:?}: {error}"))
}

/// A JSON event of `event_type` carrying `n`.
pub(crate) fn event(event_type: &str, n: usize) -> ProposedEvent {
    ProposedEvent::json(event_type, format!(r#"{{"n":{n}}}"#))
}

/// `count` JSON events of type `Tested`, with fresh ids.
pub(crate) fn events(count: usize) -> Vec<ProposedEvent> {
    (0..count).map(|n| event("Tested", n)).collect()
}

pub(crate) fn revisions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.revision.0).collect()
}

pub(crate) fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.position.0).collect()
}

pub(crate) fn ids(events: &[RecordedEvent]) -> Vec<crate::types::EventId> {
    events.iter().map(|event| event.id).collect()
}

pub(crate) fn proposed_ids(events: &[ProposedEvent]) -> Vec<crate::types::EventId> {
    events.iter().map(|event| event.id).collect()
}

/// Panics unless `positions` strictly increase.
pub(crate) fn assert_strictly_increasing(positions: &[u64], what: &str) {
    for pair in positions.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{what}: positions must strictly increase, got {} then {} in {positions:?}",
            pair[0],
            pair[1]
        );
    }
}

/// Panics unless `result` is a wrong-expected-revision error with these fields.
pub(crate) fn assert_wrong_expected<T: Debug>(
    result: Result<T>,
    stream: &StreamName,
    expected: ExpectedRevision,
    actual: StreamState,
) {
    match result {
        Err(Error::WrongExpectedRevision {
            stream: error_stream,
            expected: error_expected,
            actual: error_actual,
        }) => {
            assert_eq!(
                &error_stream, stream,
                "wrong expected revision names the stream"
            );
            assert_eq!(
                error_expected, expected,
                "wrong expected revision echoes `expected`"
            );
            assert_eq!(
                error_actual, actual,
                "wrong expected revision on {stream} (expected {expected}) reports the actual state"
            );
        }
        other => panic!(
            "{stream} with expected {expected}: wanted WrongExpectedRevision (actual {actual}), got {other:?}"
        ),
    }
}

/// Panics unless `result` is a stream-deleted error for `stream`.
pub(crate) fn assert_stream_deleted<T: Debug>(result: Result<T>, stream: &StreamName, what: &str) {
    match result {
        Err(Error::StreamDeleted {
            stream: error_stream,
        }) => assert_eq!(
            &error_stream, stream,
            "{what}: StreamDeleted names the stream"
        ),
        other => panic!("{what} on {stream}: wanted StreamDeleted, got {other:?}"),
    }
}

/// The next item of `subscription`; panics when it errs, ends, or takes too long.
pub(crate) async fn next_item(subscription: &mut Subscription, what: &str) -> SubscriptionItem {
    match tokio::time::timeout(ITEM_WAIT_MAX, subscription.next()).await {
        Ok(Some(Ok(item))) => item,
        Ok(Some(Err(error))) => panic!("{what}: the subscription failed: {error}"),
        Ok(None) => panic!("{what}: the subscription ended"),
        Err(_) => panic!("{what}: no subscription item within {ITEM_WAIT_MAX:?}"),
    }
}

/// The next event of `subscription`, skipping checkpoints; panics on `CaughtUp`.
pub(crate) async fn next_event(subscription: &mut Subscription, what: &str) -> RecordedEvent {
    loop {
        match next_item(subscription, what).await {
            SubscriptionItem::Event(event) => return event,
            SubscriptionItem::Checkpoint(_) => continue,
            SubscriptionItem::CaughtUp => panic!("{what}: wanted an event, got CaughtUp"),
        }
    }
}

/// Events up to the `CaughtUp` marker; panics if an event follows a missing marker.
pub(crate) async fn events_until_caught_up(
    subscription: &mut Subscription,
    what: &str,
) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    loop {
        match next_item(subscription, what).await {
            SubscriptionItem::Event(event) => events.push(event),
            SubscriptionItem::Checkpoint(_) => {}
            SubscriptionItem::CaughtUp => return events,
        }
    }
}

/// Checks the cases run against every store, panicking with context on failure.
#[async_trait]
pub(crate) trait StoreChecks: EventStore {
    /// Appends and panics on any error.
    async fn append_ok(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<ProposedEvent>,
    ) -> AppendResult {
        let count = events.len();
        match self.append(stream, expected, events).await {
            Ok(result) => result,
            Err(error) => panic!(
                "append of {count} events to {stream} with expected {expected} failed: {error}"
            ),
        }
    }

    /// Reads a stream with `options`, panicking on error.
    async fn read_stream_ok(&self, stream: &StreamName, options: ReadStreamOptions) -> StreamSlice {
        match self.read_stream(stream, options).await {
            Ok(slice) => slice,
            Err(error) => panic!("read of {stream} with {options:?} failed: {error}"),
        }
    }

    /// Visible events of a stream, forwards; none when it is not found.
    async fn stream_events(&self, stream: &StreamName) -> Vec<RecordedEvent> {
        self.read_stream_ok(stream, ReadStreamOptions::forwards())
            .await
            .into_events()
    }

    /// Reads `$all` with `options`, panicking on error.
    async fn read_all_ok(&self, options: ReadAllOptions) -> crate::store::AllSlice {
        let shown = format!("{options:?}");
        match self.read_all(options).await {
            Ok(slice) => slice,
            Err(error) => panic!("read of $all with {shown} failed: {error}"),
        }
    }

    /// Every event of `$all`, forwards.
    async fn all_events(&self) -> Vec<RecordedEvent> {
        self.read_all_ok(ReadAllOptions::forwards()).await.events
    }

    /// The state of a stream, panicking on error.
    async fn state_ok(&self, stream: &StreamName) -> StreamState {
        match self.stream_state(stream).await {
            Ok(state) => state,
            Err(error) => panic!("stream_state of {stream} failed: {error}"),
        }
    }
}

impl<S: EventStore + ?Sized> StoreChecks for S {}
