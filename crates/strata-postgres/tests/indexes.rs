//! Secondary indexes on PostgreSQL (`index_entries`): `$ce-`, `$et-`, `$bc-`, `$streams` and
//! `$category-` reads and `$idx-` filtered `$all` reads answer from the table exactly as
//! the scanning reference (`read_index_by_scanning`, a filter applied to every event)
//! does, on a new store and on one upgraded from schema version 1.

mod support;

use std::sync::Arc;

use strata_core::system_streams::{IndexKey, read_index_by_scanning};
use strata_core::{
    Direction, EventFilter, EventStore, ExpectedRevision, FilterTarget, Position, ProposedEvent,
    ReadAllOptions, ReadStreamOptions, RecordedEvent, StreamMetadata, StreamName,
};
use strata_postgres::PostgresStore;
use support::{TestSchema, test_url};

fn name(stream: &str) -> StreamName {
    StreamName::new(stream).expect("valid")
}

async fn append(store: &PostgresStore, stream: &str, events: Vec<ProposedEvent>) {
    store
        .append(&name(stream), ExpectedRevision::Any, events)
        .await
        .expect("appends");
}

fn event(event_type: &str) -> ProposedEvent {
    ProposedEvent::json(event_type, "{}")
}

fn correlated(event_type: &str, id: &str) -> ProposedEvent {
    event(event_type).with_metadata(format!(r#"{{"$correlationId":"{id}"}}"#))
}

/// Events under every kind of key: categories, a stream named like a category, a stream
/// without one, correlation ids, a link, a `$`-typed event, metadata records (set, and
/// written by a soft delete), and a stream revived after its soft delete.
async fn fill(store: &PostgresStore) {
    append(
        store,
        "order-1",
        vec![correlated("Placed", "c-1"), correlated("Paid", "c-1")],
    )
    .await;
    append(store, "invoice-1", vec![correlated("Issued", "c-1")]).await;
    append(store, "order-2", vec![event("Placed")]).await;
    append(store, "order", vec![event("Placed"), event("Renamed")]).await;
    append(store, "single", vec![event("Placed")]).await;
    append(
        store,
        "order-3",
        vec![
            event("Placed"),
            ProposedEvent::binary("$>", "0@order-1"),
            event("$custom"),
        ],
    )
    .await;
    let metadata = StreamMetadata {
        max_count: Some(10),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&name("order-1"), ExpectedRevision::Any, &metadata)
        .await
        .expect("sets metadata");
    store
        .delete_stream(&name("order-2"), ExpectedRevision::Any)
        .await
        .expect("soft deletes");
    append(store, "order-2", vec![event("Shipped")]).await;
    append(store, "invoice-2", vec![correlated("Issued", "c-2")]).await;
}

fn keys() -> Vec<IndexKey> {
    vec![
        IndexKey::Category("order".into()),
        IndexKey::Category("invoice".into()),
        IndexKey::Category("nothing".into()),
        IndexKey::EventType("Placed".into()),
        IndexKey::EventType("Issued".into()),
        IndexKey::EventType("$metadata".into()),
        IndexKey::EventType("$custom".into()),
        IndexKey::Correlation("c-1".into()),
        IndexKey::Correlation("c-2".into()),
        IndexKey::StreamStarts,
        IndexKey::CategoryStreams("order".into()),
        IndexKey::CategoryStreams("invoice".into()),
    ]
}

fn windows() -> Vec<ReadStreamOptions> {
    let forwards = ReadStreamOptions::forwards();
    let backwards = ReadStreamOptions::backwards();
    vec![
        forwards,
        forwards.from_revision(1).max_count(2),
        forwards.from_revision(3),
        forwards.from_revision(100),
        backwards,
        backwards.max_count(1),
        backwards.from_revision(2).max_count(2),
        backwards.from_revision(100).max_count(3),
    ]
}

/// Every key, read in every window, as the scanning reference reads it.
async fn assert_indexes_match_scanning(store: &PostgresStore) {
    for key in keys() {
        for options in windows() {
            let indexed = store
                .read_index(&key, options)
                .await
                .expect("reads the index");
            let scanned = read_index_by_scanning(store, &key, options)
                .await
                .expect("scans");
            assert_eq!(indexed, scanned, "{key:?} read with {options:?}");
        }
    }
}

fn link_data(events: &[RecordedEvent]) -> Vec<String> {
    events
        .iter()
        .map(|event| String::from_utf8(event.data.to_vec()).expect("utf-8"))
        .collect()
}

async fn read_stream(
    store: &PostgresStore,
    stream: &str,
    options: ReadStreamOptions,
) -> Vec<String> {
    let slice = store
        .read_stream(&name(stream), options)
        .await
        .expect("reads");
    link_data(&slice.into_events())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_reads_match_the_scanning_reference() {
    let schema = TestSchema::new();
    let store = PostgresStore::open(schema.config()).await.expect("opens");
    fill(&store).await;
    assert_indexes_match_scanning(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_streams_read_as_links_both_ways() {
    let schema = TestSchema::new();
    let store = PostgresStore::open(schema.config()).await.expect("opens");
    fill(&store).await;
    let forwards = ReadStreamOptions::forwards();
    let backwards = ReadStreamOptions::backwards();
    // order-3's link is listed where it points; its `$custom` event is in the category too.
    let order = vec![
        "0@order-1",
        "1@order-1",
        "0@order-2",
        "0@order-3",
        "0@order-1",
        "2@order-3",
        "1@order-2",
    ];
    assert_eq!(read_stream(&store, "$ce-order", forwards).await, order);
    let mut reversed = order.clone();
    reversed.reverse();
    assert_eq!(read_stream(&store, "$ce-order", backwards).await, reversed);
    assert_eq!(
        read_stream(&store, "$et-Issued", forwards).await,
        vec!["0@invoice-1", "0@invoice-2"]
    );
    assert_eq!(
        read_stream(&store, "$bc-c-1", backwards.max_count(2)).await,
        vec!["0@invoice-1", "1@order-1"]
    );
    assert_eq!(
        read_stream(&store, "$streams", forwards).await,
        vec![
            "0@order-1",
            "0@invoice-1",
            "0@order-2",
            "0@order",
            "0@single",
            "0@order-3",
            "0@$$order-1",
            "0@$$order-2",
            "0@invoice-2",
        ]
    );
    assert_eq!(
        read_stream(&store, "$category-order", backwards).await,
        vec!["order-3", "order-2", "order-1"]
    );
    let missing = store
        .read_stream(&name("$ce-nothing"), forwards)
        .await
        .expect("reads");
    assert!(
        matches!(missing, strata_core::StreamSlice::NotFound),
        "an empty index reads as a stream that does not exist"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_go_under_no_key() {
    let schema = TestSchema::new();
    let store = PostgresStore::open(schema.config()).await.expect("opens");
    append(&store, "order-1", vec![event("Placed")]).await;
    store
        .tombstone_stream(&name("order-1"), ExpectedRevision::Any)
        .await
        .expect("tombstones");
    append(&store, "order-2", vec![event("Placed")]).await;
    let category = store
        .read_index(
            &IndexKey::Category("order".into()),
            ReadStreamOptions::forwards(),
        )
        .await
        .expect("reads");
    let streams: Vec<&str> = category
        .events
        .iter()
        .map(|indexed| indexed.event.stream.as_str())
        .collect();
    assert_eq!(streams, vec!["order-1", "order-2"]);
    assert_eq!(category.last_revision, Some(1));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_dense_index_revisions() {
    let schema = TestSchema::new();
    let store = PostgresStore::open(schema.config()).await.expect("opens");
    let appends = (0..40).map(|n| {
        let store = Arc::clone(&store);
        async move {
            let stream = format!("order-{}", n % 7);
            let events = vec![correlated("Placed", "c-1"), event("Paid")];
            append(&store, &stream, events).await;
        }
    });
    futures::future::join_all(appends).await;
    let category = store
        .read_index(
            &IndexKey::Category("order".into()),
            ReadStreamOptions::forwards(),
        )
        .await
        .expect("reads");
    assert_eq!(category.events.len(), 80);
    assert_indexes_match_scanning(&store).await;
    store.close().await;
}

/// Every event of `$all` the filter selects, read in pages of `page` with `read_all`
/// (`window: None`) or `read_all_window`, in `direction`; checks that each page's
/// checkpoint covers what it returned.
async fn read_filtered(
    store: &PostgresStore,
    filter: &EventFilter,
    direction: Direction,
    page: usize,
    window: Option<usize>,
) -> Vec<u64> {
    let mut options = match direction {
        Direction::Forwards => ReadAllOptions::forwards(),
        Direction::Backwards => ReadAllOptions::backwards(),
    }
    .filter(filter.clone())
    .max_count(page);
    let mut positions = Vec::new();
    for _ in 0..1_000 {
        let slice = match window {
            None => store.read_all(options.clone()).await.expect("reads $all"),
            Some(examined_max) => {
                let window = store
                    .read_all_window(options.clone(), examined_max)
                    .await
                    .expect("reads $all");
                assert!(window.examined_count <= examined_max);
                window.slice
            }
        };
        assert!(slice.events.len() <= page);
        if let (Some(last), Some(examined)) = (slice.events.last(), slice.last_examined) {
            match direction {
                Direction::Forwards => assert!(examined >= last.position),
                Direction::Backwards => assert!(examined <= last.position),
            }
        }
        positions.extend(slice.events.iter().map(|event| event.position.0));
        if slice.is_end {
            return positions;
        }
        options = options.from_position(slice.next_position);
    }
    panic!("{filter:?} read {direction:?} never reached the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_filtered_all_reads_select_what_the_filter_matches() {
    let schema = TestSchema::new();
    let store = PostgresStore::open(schema.config()).await.expect("opens");
    fill(&store).await;
    let everything = store
        .read_all(ReadAllOptions::forwards())
        .await
        .expect("reads $all");
    assert!(everything.is_end);
    for prefix in [
        "$idx-ce-order",
        "$idx-ce-invoice",
        "$idx-et-Placed",
        "$idx-et-$metadata",
        "$idx-ce-none",
    ] {
        let filter = EventFilter::prefixes(FilterTarget::StreamName, vec![prefix.to_owned()])
            .expect("valid");
        assert!(filter.index_key().is_some(), "{prefix} names an index");
        let expected: Vec<u64> = everything
            .events
            .iter()
            .filter(|event| filter.matches(event))
            .map(|event| event.position.0)
            .collect();
        let mut reversed = expected.clone();
        reversed.reverse();
        for (page, window) in [
            (100, None),
            (2, None),
            (1, None),
            (3, Some(2)),
            (100, Some(100)),
        ] {
            let forwards = read_filtered(&store, &filter, Direction::Forwards, page, window).await;
            assert_eq!(
                forwards, expected,
                "{prefix} forwards, pages of {page}, {window:?}"
            );
            let backwards =
                read_filtered(&store, &filter, Direction::Backwards, page, window).await;
            assert_eq!(
                backwards, reversed,
                "{prefix} backwards, pages of {page}, {window:?}"
            );
        }
    }
    // A page that reaches the end may move a checkpoint to the newest event.
    let filter = EventFilter::prefixes(FilterTarget::StreamName, vec!["$idx-ce-order".into()])
        .expect("valid");
    let last = everything.events.last().expect("events").position;
    let slice = store
        .read_all(ReadAllOptions::forwards().filter(filter.clone()))
        .await
        .expect("reads");
    assert!(slice.is_end);
    assert_eq!(slice.last_examined, Some(last));
    assert_eq!(slice.next_position, Position(last.0 + 1));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_store_is_backfilled_from_its_log() {
    let schema = TestSchema::new();
    let config = schema.config();
    let store = PostgresStore::open(config.clone()).await.expect("opens");
    fill(&store).await;
    store.close().await;
    drop(store);
    // Back to schema version 1: the tables it had, with the events already in them.
    let (client, connection) = tokio_postgres::connect(&test_url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP TABLE {schema}.index_entries; DROP TABLE {schema}.cluster_nodes;
             DROP TABLE {schema}.cluster_leader; UPDATE {schema}.strata_schema SET version = 1",
            schema = schema.name
        ))
        .await
        .expect("downgrades");
    drop(client);
    let _ = connection.await;

    let store = PostgresStore::open(config).await.expect("migrates");
    assert_eq!(
        read_stream(&store, "$ce-invoice", ReadStreamOptions::forwards()).await,
        vec!["0@invoice-1", "0@invoice-2"]
    );
    assert_indexes_match_scanning(&store).await;
    // Appends after the backfill continue each key's revisions.
    append(&store, "invoice-3", vec![correlated("Issued", "c-2")]).await;
    assert_eq!(
        read_stream(
            &store,
            "$ce-invoice",
            ReadStreamOptions::backwards().max_count(1)
        )
        .await,
        vec!["0@invoice-3"]
    );
    assert_indexes_match_scanning(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_read_as_the_scanning_reference_finds_them() {
    let schema = TestSchema::new();
    let store = PostgresStore::open(schema.config()).await.expect("opens");
    for stream in ["order-1", "order-2", "cart-1", "order-3"] {
        append(&store, stream, vec![event("Placed")]).await;
    }
    for stream in ["order-2", "cart-1", "$system-1"] {
        store
            .tombstone_stream(&name(stream), ExpectedRevision::Any)
            .await
            .expect("tombstones");
    }
    append(&store, "order-3", vec![event("Shipped")]).await;
    let end = store.last_position().await.expect("reads").expect("events");
    let listed = |events: Vec<RecordedEvent>| {
        events
            .into_iter()
            .map(|event| {
                (
                    event.stream.as_str().to_owned(),
                    event.position,
                    event.event_type,
                )
            })
            .collect::<Vec<_>>()
    };
    let all = listed(store.read_tombstones(None, end, 10).await.expect("reads"));
    let streams: Vec<&str> = all.iter().map(|(stream, _, _)| stream.as_str()).collect();
    // A system stream's tombstone is not listed.
    assert_eq!(streams, ["order-2", "cart-1"]);
    for (after, up_to, max) in [
        (None, end, 10),
        (None, end, 1),
        (Some(all[0].1), end, 10),
        (None, all[0].1, 10),
        (Some(all[1].1), end, 10),
    ] {
        let kept = store
            .read_tombstones(after, up_to, max)
            .await
            .expect("reads");
        let scanned = strata_core::read_tombstones_by_scanning(&*store, after, up_to, max)
            .await
            .expect("scans");
        assert_eq!(listed(kept), listed(scanned), "{after:?} {up_to:?} {max}");
    }
    store.close().await;
}
