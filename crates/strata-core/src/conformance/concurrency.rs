//! Concurrent writers: optimistic concurrency picks exactly one winner per revision, and
//! batches stay whole under contention.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Error;
use crate::store::EventStore;
use crate::types::{ExpectedRevision, RecordedEvent, Revision, StreamName, StreamState};

use super::Backend;
use super::support::{
    StoreChecks, assert_strictly_increasing, event, events, positions, revisions, stream,
};

/// Writers racing for the revisions of one stream.
const CONTENDERS: usize = 16;

/// Events the contended stream ends with.
const CONTENDED_EVENTS: u64 = 96;

/// One contender: reads the state, appends with that exact revision, repeats until the
/// stream is full. Returns the revisions it won.
async fn contend<S: EventStore>(store: Arc<S>, name: StreamName, contender: usize) -> Vec<u64> {
    let mut won = Vec::new();
    loop {
        let expected = match store.state_ok(&name).await {
            StreamState::NoStream => ExpectedRevision::NoStream,
            StreamState::At(Revision(last)) if last + 1 >= CONTENDED_EVENTS => return won,
            StreamState::At(Revision(last)) => ExpectedRevision::Exact(last),
            StreamState::Tombstoned => panic!("{name} was never tombstoned"),
        };
        let proposed = vec![event("Contended", contender)];
        match store.append(&name, expected, proposed).await {
            Ok(result) => won.push(result.current_revision.0),
            Err(Error::WrongExpectedRevision { .. }) => tokio::task::yield_now().await,
            Err(error) => panic!("contender {contender} on {name} with {expected}: {error}"),
        }
    }
}

/// Many writers appending with `Exact` to one stream: one wins each revision, and the
/// stream ends with consecutive revisions and one event per success.
pub async fn concurrent_exact_appends_have_one_winner_per_revision<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let contended = stream("concurrency_exact-1");
    let tasks: Vec<_> = (0..CONTENDERS)
        .map(|contender| tokio::spawn(contend(Arc::clone(&store), contended.clone(), contender)))
        .collect();
    let mut won = Vec::new();
    for task in tasks {
        won.extend(
            task.await
                .unwrap_or_else(|error| panic!("a contender failed: {error}")),
        );
    }
    won.sort_unstable();
    assert_eq!(
        won,
        (0..CONTENDED_EVENTS).collect::<Vec<_>>(),
        "exactly one winner per revision"
    );
    let read = store.stream_events(&contended).await;
    assert_eq!(
        revisions(&read),
        (0..CONTENDED_EVENTS).collect::<Vec<_>>(),
        "consecutive revisions"
    );
    assert_strictly_increasing(&positions(&read), "the contended stream");
    let mut ids: Vec<_> = read.iter().map(|event| event.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), read.len(), "no event is stored twice");
    assert_eq!(
        store.all_events().await.len(),
        read.len(),
        "$all holds each success once"
    );
}

/// Concurrent multi-event appends to several streams: every batch lands whole, with
/// consecutive revisions and adjacent in `$all`.
pub async fn concurrent_batches_stay_whole<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let tasks: Vec<_> = (0..8)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let name = stream(&format!("concurrency_batches-{}", writer % 3));
                for _ in 0..10 {
                    store
                        .append_ok(&name, ExpectedRevision::Any, events(4))
                        .await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await
            .unwrap_or_else(|error| panic!("a writer failed: {error}"));
    }
    let all = store.all_events().await;
    assert_eq!(all.len(), 8 * 10 * 4, "every event is in $all");
    assert_strictly_increasing(&positions(&all), "$all");
    let mut per_stream: HashMap<&str, Vec<&RecordedEvent>> = HashMap::new();
    for event in &all {
        per_stream
            .entry(event.stream.as_str())
            .or_default()
            .push(event);
    }
    for (name, events) in &per_stream {
        let revisions: Vec<_> = events.iter().map(|event| event.revision.0).collect();
        let expected: Vec<_> = (0..events.len() as u64).collect();
        assert_eq!(
            revisions, expected,
            "{name}: consecutive revisions in $all order"
        );
    }
    for chunk in all.chunks(4) {
        let same_batch = chunk.iter().all(|event| event.stream == chunk[0].stream)
            && chunk[0].revision.0 % 4 == 0;
        assert!(
            same_batch,
            "a batch of 4 is adjacent in $all: {:?}",
            revisions(chunk)
        );
    }
}

/// Readers racing a writer of 5-event batches never see part of a batch.
pub async fn readers_never_see_a_partial_batch<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let name = stream("concurrency_partial-1");
    let writer = {
        let store = Arc::clone(&store);
        let name = name.clone();
        tokio::spawn(async move {
            for _ in 0..30 {
                store
                    .append_ok(&name, ExpectedRevision::Any, events(5))
                    .await;
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let read = store.stream_events(&name).await;
        assert_eq!(
            read.len() % 5,
            0,
            "a read saw {} events: part of a batch",
            read.len()
        );
        let all = store.all_events().await;
        assert_eq!(
            all.len() % 5,
            0,
            "a $all read saw {} events: part of a batch",
            all.len()
        );
        reads += 1;
        tokio::task::yield_now().await;
    }
    writer
        .await
        .unwrap_or_else(|error| panic!("the writer failed: {error}"));
    assert_eq!(store.stream_events(&name).await.len(), 150);
}
