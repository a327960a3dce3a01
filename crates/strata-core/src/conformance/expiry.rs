//! `$maxAge` bounds the revisions a read visits before its count applies: expired events,
//! however many, never hide the live ones after them. Time is moved with a
//! [`ManualClock`], never waited for.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::ManualClock;
use crate::metadata::StreamMetadata;
use crate::store::{EventStore, ReadStreamOptions, StreamSlice};
use crate::subscription::{SubscribeFrom, subscribe_to_stream};
use crate::types::{ExpectedRevision, Revision, StreamName, StreamState};

use super::Backend;
use super::support::{
    SUBSCRIPTION_BUFFER_ITEMS, StoreChecks, events, events_until_caught_up, next_event, revisions,
    stream,
};

const MAX_AGE: Duration = Duration::from_secs(60);

/// Expired events written before the live ones: more than two pages of a subscription.
const EXPIRED_EVENTS: u64 = 1_100;

/// Events per append while filling the stream (within every backend's append limit).
const EVENTS_PER_APPEND: usize = 220;

const LIVE_EVENTS: u64 = 5;

/// A stream with `$maxAge` of [`MAX_AGE`], [`EXPIRED_EVENTS`] written one `$maxAge` ago
/// and [`LIVE_EVENTS`] written now.
async fn expired_then_live<S: EventStore + ?Sized>(
    store: &S,
    clock: &ManualClock,
    stream: &StreamName,
) {
    let metadata = StreamMetadata {
        max_age: Some(MAX_AGE),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(stream, ExpectedRevision::NoStream, &metadata)
        .await
        .unwrap_or_else(|error| panic!("metadata of {stream}: {error}"));
    let mut written = 0;
    while written < EXPIRED_EVENTS {
        store
            .append_ok(stream, ExpectedRevision::Any, events(EVENTS_PER_APPEND))
            .await;
        written += EVENTS_PER_APPEND as u64;
    }
    clock.advance(MAX_AGE + Duration::from_secs(1));
    store
        .append_ok(stream, ExpectedRevision::Any, events(LIVE_EVENTS as usize))
        .await;
}

async fn read_revisions<S: StoreChecks + ?Sized>(
    store: &S,
    stream: &StreamName,
    options: ReadStreamOptions,
) -> Vec<u64> {
    match store.read_stream_ok(stream, options).await {
        StreamSlice::Found {
            events,
            last_revision,
        } => {
            assert_eq!(
                last_revision,
                Revision(EXPIRED_EVENTS + LIVE_EVENTS - 1),
                "a read reports the stream's last revision"
            );
            revisions(&events)
        }
        StreamSlice::NotFound => panic!("{stream} read with {options:?} is found"),
    }
}

/// `$maxAge` hides events older than it; the stream's last revision is still reported.
pub async fn metadata_max_age_hides_expired_events<B: Backend>(backend: &B) {
    let clock = ManualClock::starting_now();
    let store = backend.fresh_with_clock(clock.clock()).await;
    let orders = stream("metadata_max_age-1");
    let metadata = StreamMetadata {
        max_age: Some(MAX_AGE),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&orders, ExpectedRevision::Any, &metadata)
        .await
        .unwrap_or_else(|error| panic!("metadata of {orders}: {error}"));
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(2))
        .await;
    clock.advance(MAX_AGE);
    let young = store.stream_events(&orders).await;
    assert_eq!(
        revisions(&young),
        vec![0, 1],
        "events exactly $maxAge old are visible"
    );
    clock.advance(Duration::from_secs(1));
    let slice = store
        .read_stream_ok(&orders, ReadStreamOptions::backwards())
        .await;
    let StreamSlice::Found {
        events: expired,
        last_revision,
    } = slice
    else {
        panic!("a stream whose events all expired is still found");
    };
    assert!(
        expired.is_empty(),
        "events older than $maxAge are hidden: {expired:?}"
    );
    assert_eq!(
        last_revision,
        Revision(1),
        "the last revision is still reported"
    );
    assert_eq!(store.state_ok(&orders).await, StreamState::At(Revision(1)));
}

/// Reads either way, from anywhere, with any count, see the live events after a long run of
/// expired ones, as if the expired ones were not there.
pub async fn max_age_expired_events_never_hide_live_ones_from_reads<B: Backend>(backend: &B) {
    let clock = ManualClock::starting_now();
    let store = backend.fresh_with_clock(clock.clock()).await;
    let orders = stream("max_age_reads-1");
    expired_then_live(&*store, &clock, &orders).await;
    let live: Vec<u64> = (EXPIRED_EVENTS..EXPIRED_EVENTS + LIVE_EVENTS).collect();
    let forwards = ReadStreamOptions::forwards();
    let backwards = ReadStreamOptions::backwards();
    let cases = [
        (forwards, live.clone()),
        (forwards.max_count(2), live[..2].to_vec()),
        (forwards.from_revision(3).max_count(3), live[..3].to_vec()),
        (
            forwards.from_revision(EXPIRED_EVENTS + 1),
            live[1..].to_vec(),
        ),
        (backwards, live.iter().rev().copied().collect()),
        (backwards.max_count(3), vec![live[4], live[3], live[2]]),
        (
            backwards.from_revision(EXPIRED_EVENTS + 2),
            vec![live[2], live[1], live[0]],
        ),
        (backwards.from_revision(EXPIRED_EVENTS - 1), Vec::new()),
    ];
    for (options, wanted) in cases {
        assert_eq!(
            read_revisions(&*store, &orders, options).await,
            wanted,
            "read with {options:?}"
        );
    }
}

/// A catch-up subscription to a stream whose first pages expired delivers the live events
/// and catches up, then follows new events.
pub async fn max_age_expired_events_never_stall_a_stream_subscription<B: Backend>(backend: &B) {
    let clock = ManualClock::starting_now();
    let store = backend.fresh_with_clock(clock.clock()).await;
    let orders = stream("max_age_subscription-1");
    expired_then_live(&*store, &clock, &orders).await;
    let mut subscription = subscribe_to_stream(
        Arc::clone(&store),
        orders.clone(),
        SubscribeFrom::Start,
        SUBSCRIPTION_BUFFER_ITEMS,
    );
    let history = events_until_caught_up(&mut subscription, "after expired events").await;
    let live: Vec<u64> = (EXPIRED_EVENTS..EXPIRED_EVENTS + LIVE_EVENTS).collect();
    assert_eq!(revisions(&history), live, "the live events, then CaughtUp");
    store
        .append_ok(&orders, ExpectedRevision::Any, events(1))
        .await;
    let next = next_event(&mut subscription, "the event written after catching up").await;
    assert_eq!(next.revision, Revision(EXPIRED_EVENTS + LIVE_EVENTS));
}
