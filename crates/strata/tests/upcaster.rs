//! Upcasters: events stored in an old shape are read in the current one.

mod common;

use common::{Counter, CounterEvent, CountingStore};
use serde_json::json;
use strata::{
    Bytes, Error, EventShape, EventStore, ExpectedRevision, ProposedEvent, Repository, StreamName,
    Upcasters, decode_event,
};
use strata_core::ReadStreamOptions;

/// Version 1 was `Incremented { amount }`; version 2 is `Added { by }`.
fn upcasters() -> Upcasters {
    Upcasters::new().register("Incremented", 1, |data| {
        let amount = data
            .get("amount")
            .cloned()
            .ok_or_else(|| "no amount".to_owned())?;
        Ok(EventShape::new("Added", 2, json!({ "by": amount })))
    })
}

#[tokio::test]
async fn events_stored_in_an_old_shape_are_read_in_the_new_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let stream = StreamName::new("counter-old").expect("name");
    let old_events = vec![
        // Written before the toolkit stored versions: no metadata means version 1.
        ProposedEvent::json("Incremented", r#"{"amount":3}"#),
        ProposedEvent::json("Incremented", r#"{"amount":4}"#)
            .with_metadata(Bytes::from_static(br#"{"schemaVersion":1}"#)),
    ];
    store
        .append(&stream, ExpectedRevision::NoStream, old_events)
        .await
        .expect("append old shapes");

    let counters =
        Repository::<Counter, CountingStore>::new(store.clone()).with_upcasters(upcasters());
    counters.execute("old", &5).await.expect("new command");
    let counter = counters.load("old").await.expect("load").into_aggregate();
    assert_eq!(counter.value, 12);
    assert_eq!(counter.additions, 3);

    let stored = store
        .read_stream(&stream, ReadStreamOptions::forwards())
        .await
        .expect("read")
        .into_events();
    assert_eq!(
        stored[0].event_type, "Incremented",
        "stored events never change"
    );
    assert_eq!(stored[2].event_type, "Added");
    let newest: CounterEvent = decode_event(&stored[2], &upcasters()).expect("decode");
    assert_eq!(newest, CounterEvent::Added { by: 5 });
}

#[tokio::test]
async fn an_old_shape_without_an_upcaster_is_an_error_naming_the_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = CountingStore::open(dir.path());
    let stream = StreamName::new("counter-bare").expect("name");
    let old = ProposedEvent::json("Incremented", r#"{"amount":3}"#);
    store
        .append(&stream, ExpectedRevision::NoStream, vec![old])
        .await
        .expect("append");
    let counters = Repository::<Counter, CountingStore>::new(store);
    match counters.load("bare").await {
        Err(Error::Decode {
            stream,
            event_type,
            schema_version,
            ..
        }) => {
            assert_eq!(stream.as_str(), "counter-bare");
            assert_eq!(event_type, "Incremented");
            assert_eq!(schema_version, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
}
