//! Served filtered reads give, page by page, what the window path gives with a window as
//! long as the log; they are really served (the keys' events only, by index scans); and
//! an existing schema gets the indexes by its migration.

use strata_core::{
    Bytes, EventFilter, EventStore, ExpectedRevision, FilterTarget, Position, ProposedEvent,
    ReadAllOptions, ReadFrom, StreamMetadata, StreamName,
};

use super::*;
use crate::connect::{Role, connect};
use crate::store::PostgresStore;
use crate::test_schema::TestSchema;

fn name(stream: &str) -> StreamName {
    StreamName::new(stream).expect("valid")
}

fn event(event_type: &str, data_bytes: usize) -> ProposedEvent {
    ProposedEvent::binary(event_type.to_owned(), Bytes::from(vec![b'x'; data_bytes]))
}

async fn append(store: &PostgresStore, stream: &str, events: Vec<ProposedEvent>) {
    store
        .append(&name(stream), ExpectedRevision::Any, events)
        .await
        .expect("appends");
}

/// User streams with and without `-` (one named like a category, one starting with `-`),
/// `$$` metadata, client-appended links, a system stream holding user-like types,
/// soft-deleted, tombstoned and truncated streams, types with `LIKE` metacharacters and
/// non-ASCII letters, events of several sizes.
async fn fill(store: &PostgresStore) {
    let types = [
        "OrderPlaced",
        "OrderPaid",
        "Order_Shipped",
        "Order%Lost",
        "CustomerAdded",
        "Shipped",
        "Ordé",
        "order-lowercase",
    ];
    let streams = [
        "order-1",
        "order-2",
        "order",
        "orderx",
        "order-x-1",
        "customer-1",
        "cust",
        "-dash",
        "ordé-1",
        "invoice-7",
    ];
    for round in 0..6usize {
        for (at, stream) in streams.iter().enumerate() {
            if round > 2 && *stream == "customer-1" {
                continue; // tombstoned
            }
            let events = (0..1 + (round + at) % 3)
                .map(|offset| {
                    let event_type = types[(round * 3 + at + offset) % types.len()];
                    event(event_type, 10 + (round * 97 + at * 31) % 300)
                })
                .collect();
            append(store, stream, events).await;
        }
        append(
            store,
            "$system-x",
            vec![event("OrderPlaced", 5), event("$custom", 5)],
        )
        .await;
        append(
            store,
            "order-links",
            vec![ProposedEvent::binary("$>", "0@order-1")],
        )
        .await;
        if round == 2 {
            store
                .delete_stream(&name("order-2"), ExpectedRevision::Any)
                .await
                .expect("soft deletes");
            store
                .tombstone_stream(&name("customer-1"), ExpectedRevision::Any)
                .await
                .expect("tombstones");
            let metadata = StreamMetadata {
                truncate_before: Some(3),
                ..StreamMetadata::default()
            };
            store
                .set_stream_metadata(&name("orderx"), ExpectedRevision::Any, &metadata)
                .await
                .expect("truncates");
        }
    }
}

fn filters() -> Vec<EventFilter> {
    let types = |prefixes: &[&str]| {
        EventFilter::prefixes(
            FilterTarget::EventType,
            prefixes.iter().map(|&prefix| prefix.to_owned()).collect(),
        )
        .expect("valid")
    };
    let streams = |prefixes: &[&str]| {
        EventFilter::prefixes(
            FilterTarget::StreamName,
            prefixes.iter().map(|&prefix| prefix.to_owned()).collect(),
        )
        .expect("valid")
    };
    let regex =
        |pattern: &str| EventFilter::regex(FilterTarget::EventType, pattern).expect("valid");
    vec![
        types(&["OrderPlaced"]),
        types(&["Order"]),
        types(&["Order_"]),
        types(&["Order%"]),
        types(&["Ord"]),
        types(&["Shipped", "Customer"]),
        types(&["Nothing"]),
        types(&["order-"]),
        regex("^Order(Placed|Paid)$"),
        regex("Shipped"),
        regex("é"),
        regex("^[A-C]"),
        streams(&["order-1"]),
        streams(&["order-"]),
        streams(&["order"]),
        streams(&["ord"]),
        streams(&["cust", "invoice-"]),
        streams(&["order-x-"]),
        streams(&["nothing"]),
        streams(&["ordé"]),
    ]
}

/// A reader connection on the test schema, as the store's readers have.
async fn reader(config: &PostgresConfig) -> ReaderConnection {
    let client = connect(config, Role::Reader, None).await.expect("connects");
    ReaderConnection::prepare(client, config.clock.clone())
        .await
        .expect("prepares")
}

/// Every page of a read, from its start until its end.
async fn pages(
    reader: &ReaderConnection,
    config: &PostgresConfig,
    options: ReadAllOptions,
) -> Vec<(Vec<u64>, Position, bool, Option<Position>)> {
    let mut pages = Vec::new();
    let mut options = options;
    for _ in 0..2_000 {
        let slice = reader.read_all(&options, config).await.expect("reads");
        pages.push((
            slice.events.iter().map(|event| event.position.0).collect(),
            slice.next_position,
            slice.is_end,
            slice.last_examined,
        ));
        if slice.is_end {
            return pages;
        }
        options = options.from_position(slice.next_position);
    }
    panic!("no end after 2,000 pages");
}

#[test]
fn plans_name_the_keys_a_filter_needs() {
    let streams = |prefixes: &[&str]| {
        plan_of(
            &EventFilter::prefixes(
                FilterTarget::StreamName,
                prefixes.iter().map(|&prefix| prefix.to_owned()).collect(),
            )
            .expect("valid"),
        )
    };
    assert_eq!(
        streams(&["order-1", "cust"]),
        Some(Plan {
            column: Column::StreamHead,
            listed: Some(Names::Prefixed(vec!["cust".to_owned()])),
            exact: vec!["order".to_owned()],
        })
    );
    for scanned in [&["$all"][..], &["-x"], &["order-", ""]] {
        assert_eq!(streams(scanned), None, "{scanned:?}");
    }
    let stream_regex = EventFilter::regex(FilterTarget::StreamName, "^order").expect("valid");
    assert_eq!(plan_of(&stream_regex), None);
    let system_types =
        EventFilter::prefixes(FilterTarget::EventType, vec!["$".to_owned()]).expect("valid");
    assert_eq!(plan_of(&system_types), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_pages_are_the_pages_of_a_window_as_long_as_the_log() {
    let schema = TestSchema::new();
    let mut served_config = schema.config();
    served_config.read_all_examined_events_max = 1_000_000;
    // Every filter served, however much of this small log it selects.
    served_config.filter_index_share_divisor = 1;
    served_config.read_all_page_bytes_max = 700;
    let store = PostgresStore::open(served_config.clone())
        .await
        .expect("opens");
    fill(&store).await;
    // Four readers, each comparing a quarter of the filters.
    let filters = filters();
    let mut comparisons = Vec::new();
    for quarter in filters.chunks(filters.len().div_ceil(4)) {
        let (quarter, served_config) = (quarter.to_vec(), served_config.clone());
        comparisons.push(tokio::spawn(async move {
            compare_pages(&served_config, &quarter).await
        }));
    }
    let mut served_pages = 0;
    for comparison in comparisons {
        served_pages += comparison.await.expect("compares");
    }
    assert!(served_pages > 1_000, "{served_pages} pages compared");
    store.close().await;
}

/// Compares every page of each filter, both ways, 1, 3, 7 and 10,000 events a page;
/// returns how many pages.
async fn compare_pages(served_config: &PostgresConfig, filters: &[EventFilter]) -> usize {
    let mut window_config = served_config.clone();
    window_config.read_all_filters_from_indexes = false;
    let reader = reader(served_config).await;
    let mut served_pages = 0;
    for filter in filters {
        for max_count in [1, 3, 7, 10_000] {
            for backwards in [false, true] {
                let start = if backwards {
                    ReadAllOptions::backwards()
                } else {
                    ReadAllOptions::forwards()
                };
                let options = start.max_count(max_count).filter(filter.clone());
                let cursor = if backwards { u64::MAX } else { 1 };
                assert!(
                    reader
                        .read_all_served(&options, served_config, filter, cursor, usize::MAX)
                        .await
                        .expect("reads")
                        .is_some(),
                    "{filter:?} is served"
                );
                let served = pages(&reader, served_config, options.clone()).await;
                let window = pages(&reader, &window_config, options).await;
                assert_eq!(
                    served, window,
                    "{filter:?}, {max_count} a page, backwards: {backwards}"
                );
                served_pages += served.len();
            }
        }
    }
    served_pages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_windows_return_every_match_and_never_checkpoint_past_one() {
    let schema = TestSchema::new();
    let mut served_config = schema.config();
    served_config.filter_index_share_divisor = 1;
    let served = PostgresStore::open(served_config.clone())
        .await
        .expect("opens");
    fill(&served).await;
    let mut window_config = served_config.clone();
    window_config.read_all_filters_from_indexes = false;
    let windows_only = PostgresStore::open(window_config).await.expect("opens");
    for filter in filters() {
        let mut found = Vec::new();
        for (store, is_served) in [(&served, true), (&windows_only, false)] {
            let mut options = ReadAllOptions::forwards()
                .max_count(2)
                .filter(filter.clone());
            let mut events = Vec::new();
            let mut checkpoints = Vec::new();
            let mut skipped = 0;
            for _ in 0..1_000 {
                let cursor = match options.from {
                    ReadFrom::At(position) => position.0.max(1),
                    _ => 1,
                };
                let window = store
                    .read_all_window(options.clone(), 3)
                    .await
                    .expect("reads");
                assert!(window.examined_count <= 3, "{filter:?}");
                // Positions are dense: a window moved past the events up to its next one,
                // whether it looked at them or the index let it skip them.
                assert_eq!(
                    window.passed_count as u64,
                    window.slice.next_position.0 - cursor,
                    "{filter:?}"
                );
                skipped += window.passed_count - window.examined_count;
                events.extend(window.slice.events.iter().map(|event| event.position.0));
                checkpoints.push((events.len(), window.slice.last_examined));
                if window.slice.is_end {
                    break;
                }
                options = options.from_position(window.slice.next_position);
            }
            // Every event returned after a checkpoint lies past it.
            for (returned_before, checkpoint) in &checkpoints {
                if let Some(checkpoint) = checkpoint {
                    assert!(
                        events[*returned_before..]
                            .iter()
                            .all(|&position| position > checkpoint.0),
                        "{filter:?}"
                    );
                }
            }
            // Served windows skip the events of other keys; windows of the log skip none.
            assert_eq!(skipped > 0, is_served, "{filter:?}");
            found.push(events);
        }
        assert_eq!(found[0], found[1], "{filter:?}");
    }
    served.close().await;
    windows_only.close().await;
}

/// A filter that kept the window path keeps it, without its keys listed, for
/// `DECLINED_FOR` on that connection; then its keys are listed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_filter_keeps_the_window_path_for_a_while_then_is_looked_at_again() {
    let schema = TestSchema::new();
    let config = schema.config();
    let store = PostgresStore::open(config.clone()).await.expect("opens");
    append(&store, "dense-1", vec![event("Dense", 10); 20]).await;
    let reader = reader(&config).await;
    let dense =
        EventFilter::prefixes(FilterTarget::EventType, vec!["Den".to_owned()]).expect("valid");
    let options = ReadAllOptions::forwards()
        .max_count(100)
        .filter(dense.clone());
    let served = async |reader: &ReaderConnection| {
        reader
            .read_all_served(&options, &config, &dense, 1, usize::MAX)
            .await
            .expect("reads")
            .is_some()
    };
    assert!(!served(&reader).await, "all of the log: the window path");
    append(&store, "other-1", vec![event("Other", 10); 400]).await;
    assert!(!served(&reader).await, "declined a moment ago");
    let fresh = self::reader(&config).await;
    assert!(
        served(&fresh).await,
        "a connection that did not decline it serves it"
    );
    tokio::time::sleep(DECLINED_FOR + Duration::from_millis(100)).await;
    assert!(served(&reader).await, "listed again once the time is up");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_filter_looks_at_its_keys_events_only_by_index_scans() {
    let schema = TestSchema::new();
    let config = schema.config();
    let store = PostgresStore::open(config.clone()).await.expect("opens");
    for batch in 0..20 {
        let events = (0..1_000)
            .map(|at| {
                let event_type = if at % 100 == 7 { "Rare" } else { "Common" };
                event(event_type, 20)
            })
            .collect();
        append(&store, &format!("bulk-{batch}"), events).await;
    }
    append(&store, "rare-1", vec![event("Common", 20); 150]).await;
    let reader = reader(&config).await;
    reader
        .client
        .batch_execute("ANALYZE events; ANALYZE index_entries")
        .await
        .expect("analyzes");
    let rare =
        EventFilter::prefixes(FilterTarget::EventType, vec!["Rar".to_owned()]).expect("valid");
    let options = ReadAllOptions::forwards()
        .max_count(10_000)
        .filter(rare.clone());
    let (slice, examined) = reader
        .read_all_served(&options, &config, &rare, 1, usize::MAX)
        .await
        .expect("reads")
        .expect("served: 1% of the log");
    assert_eq!(slice.events.len(), 200);
    assert_eq!(examined, 200, "only the key's events are looked at");
    assert!(slice.is_end);
    let streams =
        EventFilter::prefixes(FilterTarget::StreamName, vec!["rare".to_owned()]).expect("valid");
    let (slice, examined) = reader
        .read_all_served(
            &options.clone().filter(streams.clone()),
            &config,
            &streams,
            1,
            usize::MAX,
        )
        .await
        .expect("reads")
        .expect("served: under 1% of the log");
    assert_eq!((slice.events.len(), examined), (150, 150));
    // A filter selecting most of the log keeps the window path.
    let common =
        EventFilter::prefixes(FilterTarget::EventType, vec!["Com".to_owned()]).expect("valid");
    assert!(
        reader
            .read_all_served(&options, &config, &common, 1, usize::MAX)
            .await
            .expect("reads")
            .is_none()
    );
    // Both plans PostgreSQL may use, the first executions' and the generic one, scan the
    // indexes, never the table.
    for (column, key, index) in [
        (Column::EventType, "Rare", "events_event_type_position"),
        (Column::StreamHead, "rare", "events_stream_head_position"),
    ] {
        for plan_cache_mode in ["force_custom_plan", "force_generic_plan"] {
            for forwards in [true, false] {
                let sql = candidates_sql(column, forwards);
                let arguments = format!("ARRAY['{key}'], 1001, 15000, 100");
                let plan = explain(&config, plan_cache_mode, &sql, &arguments).await;
                assert!(!plan.contains("Seq Scan"), "{plan_cache_mode}: {plan}");
                assert!(plan.contains(index), "{plan_cache_mode}: {plan}");
            }
            let arguments = format!("'{}', 100", &key[..2]);
            let plan = explain(&config, plan_cache_mode, &names_sql(column), &arguments).await;
            assert!(!plan.contains("Seq Scan"), "{plan_cache_mode}: {plan}");
            assert!(plan.contains(index), "{plan_cache_mode}: {plan}");
        }
    }
    store.close().await;
}

/// The plan of `sql` executed with `arguments` under `plan_cache_mode`.
/// On a connection of its own, which no other statement uses.
async fn explain(
    config: &PostgresConfig,
    plan_cache_mode: &str,
    sql: &str,
    arguments: &str,
) -> String {
    let client = connect(config, Role::Migration, None)
        .await
        .expect("connects");
    client
        .batch_execute(&format!(
            "SET plan_cache_mode = {plan_cache_mode}; PREPARE explained AS {sql}"
        ))
        .await
        .expect("prepares");
    let rows = client
        .query(&format!("EXPLAIN EXECUTE explained({arguments})"), &[])
        .await
        .expect("explains");
    rows.iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_schema_gets_the_filter_indexes_by_its_migration() {
    let schema = TestSchema::new();
    let config = schema.config();
    let store = PostgresStore::open(config.clone()).await.expect("opens");
    append(&store, "order-1", vec![event("Placed", 3)]).await;
    store.close().await;
    drop(store);
    let client = connect(&config, Role::Migration, None)
        .await
        .expect("connects");
    client
        .batch_execute(
            "DROP INDEX events_event_type_position; DROP INDEX events_stream_head_position;
             UPDATE strata_schema SET version = 3",
        )
        .await
        .expect("downgrades");
    let store = PostgresStore::open(config.clone()).await.expect("migrates");
    let rows = client
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema()
                 AND indexname LIKE 'events\\_%\\_position' ORDER BY 1",
            &[],
        )
        .await
        .expect("lists indexes");
    let names: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(
        names,
        vec!["events_event_type_position", "events_stream_head_position"]
    );
    let version: i32 = client
        .query_one("SELECT version FROM strata_schema", &[])
        .await
        .expect("reads the version")
        .get(0);
    assert_eq!(version, crate::schema::SCHEMA_VERSION);
    store.close().await;
}
