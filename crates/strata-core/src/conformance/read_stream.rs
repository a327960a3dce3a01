//! Reads of one stream: directions, starting revisions, counts, missing streams.

use bytes::Bytes;

use crate::store::{ReadFrom, ReadStreamOptions, StreamSlice};
use crate::types::{ContentType, ExpectedRevision, ProposedEvent, Revision, StreamName};

use super::Backend;
use super::support::{StoreChecks, events, revisions, stream};

/// Reads `stream` with `options` and returns the revisions read and the last revision.
async fn read_revisions<S: StoreChecks + ?Sized>(
    store: &S,
    stream: &StreamName,
    options: ReadStreamOptions,
) -> (Vec<u64>, Revision) {
    match store.read_stream_ok(stream, options).await {
        StreamSlice::Found {
            events,
            last_revision,
        } => (revisions(&events), last_revision),
        StreamSlice::NotFound => panic!("{stream} read with {options:?} was not found"),
    }
}

/// Events come back with every field as appended, plus stream, revision and position.
pub async fn read_stream_returns_events_as_appended<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("read_fields-1");
    let json = ProposedEvent::json("OrderPlaced", r#"{"total":10}"#).with_metadata(r#"{"by":"a"}"#);
    let binary = ProposedEvent::binary("Blob", Bytes::from_static(&[0, 1, 2, 255]));
    let result = store
        .append_ok(
            &orders,
            ExpectedRevision::NoStream,
            vec![json.clone(), binary.clone()],
        )
        .await;
    let read = store.stream_events(&orders).await;
    assert_eq!(read.len(), 2);
    for (recorded, proposed) in read.iter().zip([&json, &binary]) {
        assert_eq!(recorded.stream, orders);
        assert_eq!(recorded.id, proposed.id, "id");
        assert_eq!(recorded.event_type, proposed.event_type, "event type");
        assert_eq!(recorded.content_type, proposed.content_type, "content type");
        assert_eq!(recorded.data, proposed.data, "data");
        assert_eq!(recorded.metadata, proposed.metadata, "metadata");
        assert!(recorded.created.0 > 0, "created is a real timestamp");
    }
    assert_eq!(read[1].content_type, ContentType::Binary);
    assert_eq!(read[1].position, result.position);
    let all = store.all_events().await;
    assert_eq!(all, read, "$all returns the same recorded events");
}

/// Forwards reads start at the first event or at a revision (inclusive) and honour max count.
pub async fn read_stream_forwards<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("read_forwards-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(10))
        .await;
    let forwards = ReadStreamOptions::forwards();
    let (all, last) = read_revisions(&*store, &orders, forwards).await;
    assert_eq!(all, (0..10).collect::<Vec<_>>(), "from the start");
    assert_eq!(last, Revision(9), "last revision");
    let (from_four, _) = read_revisions(&*store, &orders, forwards.from_revision(4)).await;
    assert_eq!(
        from_four,
        (4..10).collect::<Vec<_>>(),
        "from revision 4, inclusive"
    );
    let (first_three, last) = read_revisions(&*store, &orders, forwards.max_count(3)).await;
    assert_eq!(first_three, vec![0, 1, 2], "max count 3");
    assert_eq!(last, Revision(9), "last revision with max count");
    let options = forwards.from_revision(8).max_count(5);
    let (tail, _) = read_revisions(&*store, &orders, options).await;
    assert_eq!(tail, vec![8, 9], "max count past the end");
}

/// Backwards reads start at the last event or at a revision (inclusive).
pub async fn read_stream_backwards<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("read_backwards-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(10))
        .await;
    let backwards = ReadStreamOptions::backwards();
    let (all, last) = read_revisions(&*store, &orders, backwards).await;
    assert_eq!(all, (0..10).rev().collect::<Vec<_>>(), "from the end");
    assert_eq!(last, Revision(9));
    let (from_five, _) = read_revisions(&*store, &orders, backwards.from_revision(5)).await;
    assert_eq!(
        from_five,
        vec![5, 4, 3, 2, 1, 0],
        "from revision 5, inclusive"
    );
    let (newest, _) = read_revisions(&*store, &orders, backwards.max_count(2)).await;
    assert_eq!(newest, vec![9, 8], "max count 2 from the end");
    let options = backwards.from_revision(1).max_count(5);
    let (head, _) = read_revisions(&*store, &orders, options).await;
    assert_eq!(head, vec![1, 0], "max count past the beginning");
}

/// A stream without events is not found, in both directions.
pub async fn read_missing_stream_is_not_found<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    store
        .append_ok(
            &stream("read_missing-other"),
            ExpectedRevision::Any,
            events(1),
        )
        .await;
    let missing = stream("read_missing-1");
    for options in [
        ReadStreamOptions::forwards(),
        ReadStreamOptions::backwards(),
    ] {
        assert_eq!(
            store.read_stream_ok(&missing, options).await,
            StreamSlice::NotFound,
            "read of a missing stream with {options:?}"
        );
    }
}

/// Forwards from the end or past the last revision finds the stream but no events.
pub async fn read_stream_forwards_from_end_is_empty<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let orders = stream("read_from_end-1");
    store
        .append_ok(&orders, ExpectedRevision::NoStream, events(3))
        .await;
    let mut options = ReadStreamOptions::forwards();
    options.from = ReadFrom::End;
    let (from_end, last) = read_revisions(&*store, &orders, options).await;
    assert!(
        from_end.is_empty(),
        "forwards from the end reads nothing, got {from_end:?}"
    );
    assert_eq!(last, Revision(2));
    let past_end = ReadStreamOptions::forwards().from_revision(3);
    let (past, _) = read_revisions(&*store, &orders, past_end).await;
    assert!(
        past.is_empty(),
        "forwards past the last revision reads nothing, got {past:?}"
    );
}
