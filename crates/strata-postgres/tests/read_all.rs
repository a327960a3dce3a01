//! `$all` reads on PostgreSQL: each read looks at a bounded window of positions, whatever
//! the filter, returns a checkpoint that resumes exactly after it, matches prefixes
//! literally, and stops at its byte budget. Sparse prefix filters are served from the
//! indexes instead (`read_all_filters_from_indexes`): their pages skip to the next match.

mod support;

use std::sync::Arc;

use strata_core::{
    AllSlice, Bytes, EventFilter, EventStore, ExpectedRevision, FilterTarget, Position,
    ProposedEvent, ReadAllOptions, RecordedEvent, StreamName,
};
use strata_postgres::PostgresStore;
use support::TestSchema;

const WINDOW_EVENTS: u64 = 50;

async fn open(schema: &TestSchema, window: u64, page_bytes: usize) -> Arc<PostgresStore> {
    let mut config = schema.config();
    config.read_all_examined_events_max = window;
    config.read_all_page_bytes_max = page_bytes;
    PostgresStore::open(config).await.expect("opens")
}

/// The same store with every filter read by windows of the log.
async fn open_windows_only(schema: &TestSchema, window: u64) -> Arc<PostgresStore> {
    let mut config = schema.config();
    config.read_all_examined_events_max = window;
    config.read_all_filters_from_indexes = false;
    PostgresStore::open(config).await.expect("opens")
}

/// Every page of `options` to its end: (events, last examined, next, end).
async fn pages(
    store: &PostgresStore,
    mut options: ReadAllOptions,
) -> Vec<(Vec<u64>, Option<u64>, u64, bool)> {
    let mut pages = Vec::new();
    loop {
        let slice = read(store, options.clone()).await;
        let examined = slice.last_examined.map(|position| position.0);
        pages.push((
            positions(&slice.events),
            examined,
            slice.next_position.0,
            slice.is_end,
        ));
        if slice.is_end {
            return pages;
        }
        options = options.from_position(slice.next_position);
    }
}

async fn append(store: &PostgresStore, stream: &str, events: Vec<ProposedEvent>) {
    let stream = StreamName::new(stream).expect("valid");
    store
        .append(&stream, ExpectedRevision::Any, events)
        .await
        .expect("appends");
}

async fn read(store: &PostgresStore, options: ReadAllOptions) -> AllSlice {
    store.read_all(options).await.expect("reads $all")
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.position.0).collect()
}

fn prefix(target: FilterTarget, prefixes: &[&str]) -> EventFilter {
    let prefixes = prefixes.iter().map(|&prefix| prefix.to_owned()).collect();
    EventFilter::prefixes(target, prefixes).expect("a valid filter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_matches_nothing_looks_at_one_window_per_read() {
    let schema = TestSchema::new();
    let served = open(&schema, WINDOW_EVENTS, usize::MAX).await;
    let events = (0..120)
        .map(|_| ProposedEvent::json("Other", "{}"))
        .collect();
    append(&served, "other-1", events).await;
    // Served from the indexes, the prefixes find nothing in one read and checkpoint at
    // the newest event (forwards) or the first (backwards).
    for filter in [
        prefix(FilterTarget::StreamName, &["nothing-"]),
        prefix(FilterTarget::EventType, &["Nothing"]),
    ] {
        let forwards = ReadAllOptions::forwards()
            .filter(filter.clone())
            .max_count(10);
        assert_eq!(
            pages(&served, forwards).await,
            vec![(vec![], Some(120), 121, true)]
        );
        let backwards = ReadAllOptions::backwards().filter(filter).max_count(10);
        assert_eq!(
            pages(&served, backwards).await,
            vec![(vec![], Some(1), 1, true)]
        );
    }
    served.close().await;
    let store = open_windows_only(&schema, WINDOW_EVENTS).await;
    let filters = [
        prefix(FilterTarget::StreamName, &["nothing-"]),
        prefix(FilterTarget::EventType, &["Nothing"]),
        EventFilter::regex(FilterTarget::StreamName, "^nothing-").expect("compiles"),
    ];
    for filter in filters {
        let mut options = ReadAllOptions::forwards()
            .filter(filter.clone())
            .max_count(10);
        let mut checkpoints = Vec::new();
        loop {
            let slice = read(&store, options.clone()).await;
            assert!(slice.events.is_empty(), "{filter:?} matches nothing");
            checkpoints.push((slice.last_examined, slice.next_position, slice.is_end));
            if slice.is_end {
                break;
            }
            options = options.from_position(slice.next_position);
        }
        let expected = vec![
            (Some(Position(50)), Position(51), false),
            (Some(Position(100)), Position(101), false),
            (Some(Position(120)), Position(121), true),
        ];
        assert_eq!(checkpoints, expected, "forwards, {filter:?}");

        let mut options = ReadAllOptions::backwards()
            .filter(filter.clone())
            .max_count(10);
        let mut checkpoints = Vec::new();
        loop {
            let slice = read(&store, options.clone()).await;
            assert!(slice.events.is_empty(), "{filter:?} matches nothing");
            checkpoints.push((slice.last_examined, slice.next_position, slice.is_end));
            if slice.is_end {
                break;
            }
            options = options.from_position(slice.next_position);
        }
        let expected = vec![
            (Some(Position(71)), Position(71), false),
            (Some(Position(21)), Position(21), false),
            (Some(Position(1)), Position(1), true),
        ];
        assert_eq!(checkpoints, expected, "backwards, {filter:?}");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_pages_resume_after_their_checkpoint_and_reach_every_match() {
    let schema = TestSchema::new();
    let store = open_windows_only(&schema, WINDOW_EVENTS).await;
    // Matches at 1..=3, 61..=63, 118..=120; everything else in between.
    let placed = || {
        (0..3)
            .map(|_| ProposedEvent::json("Placed", "{}"))
            .collect()
    };
    append(&store, "order-1", placed()).await;
    let filler: Vec<_> = (0..57)
        .map(|_| ProposedEvent::json("Other", "{}"))
        .collect();
    append(&store, "other-1", filler.clone()).await;
    append(&store, "order-2", placed()).await;
    append(&store, "other-2", filler[..54].to_vec()).await;
    append(&store, "order-3", placed()).await;
    let filters = [
        prefix(FilterTarget::StreamName, &["order-"]),
        prefix(FilterTarget::EventType, &["Pla"]),
        EventFilter::regex(FilterTarget::StreamName, "^order-").expect("compiles"),
    ];
    for filter in filters {
        let mut options = ReadAllOptions::forwards()
            .filter(filter.clone())
            .max_count(2);
        let mut pages = Vec::new();
        loop {
            let slice = read(&store, options.clone()).await;
            let examined = slice.last_examined.map(|position| position.0);
            pages.push((positions(&slice.events), examined));
            if slice.is_end {
                break;
            }
            options = options.from_position(slice.next_position);
        }
        let expected: Vec<(Vec<u64>, Option<u64>)> = vec![
            (vec![1, 2], Some(2)),
            (vec![3], Some(52)),
            (vec![61, 62], Some(62)),
            (vec![63], Some(112)),
            (vec![118, 119], Some(119)),
            (vec![120], Some(120)),
        ];
        assert_eq!(pages, expected, "{filter:?}");
    }
    // Served from the indexes, a page skips to the next match; the checkpoints still
    // never pass a match a later page returns.
    let served = open(&schema, WINDOW_EVENTS, usize::MAX).await;
    for filter in [
        prefix(FilterTarget::StreamName, &["order-"]),
        prefix(FilterTarget::EventType, &["Pla"]),
    ] {
        let options = ReadAllOptions::forwards()
            .filter(filter.clone())
            .max_count(2);
        let expected = vec![
            (vec![1, 2], Some(2), 3, false),
            (vec![3, 61], Some(61), 62, false),
            (vec![62, 63], Some(63), 64, false),
            (vec![118, 119], Some(119), 120, false),
            (vec![120], Some(120), 121, true),
        ];
        assert_eq!(pages(&served, options).await, expected, "{filter:?}");
    }
    served.close().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_filters_match_like_metacharacters_literally() {
    let schema = TestSchema::new();
    let store = open(&schema, WINDOW_EVENTS, usize::MAX).await;
    for stream in ["a_b-1", "axb-1", "a%c-1", "abc-1", r"a\d-1"] {
        append(&store, stream, vec![ProposedEvent::json("Type_1", "{}")]).await;
    }
    append(&store, "z-1", vec![ProposedEvent::json("TypeX1", "{}")]).await;
    let cases: [(FilterTarget, &str, &[&str]); 5] = [
        (FilterTarget::StreamName, "a_", &["a_b-1"]),
        (FilterTarget::StreamName, "a%", &["a%c-1"]),
        (FilterTarget::StreamName, r"a\", &[r"a\d-1"]),
        (
            FilterTarget::StreamName,
            "",
            &["a_b-1", "axb-1", "a%c-1", "abc-1", r"a\d-1", "z-1"],
        ),
        (
            FilterTarget::EventType,
            "Type_",
            &["a_b-1", "axb-1", "a%c-1", "abc-1", r"a\d-1"],
        ),
    ];
    for (target, wanted_prefix, streams) in cases {
        let options = ReadAllOptions::forwards().filter(prefix(target, &[wanted_prefix]));
        let slice = read(&store, options).await;
        let found: Vec<&str> = slice.events.iter().map(|e| e.stream.as_str()).collect();
        assert_eq!(found, streams, "{target:?} prefix {wanted_prefix:?}");
        assert!(slice.is_end);
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_all_stops_at_its_byte_budget() {
    const PAGE_BYTES: usize = 2_500;
    let schema = TestSchema::new();
    let store = open(&schema, WINDOW_EVENTS, PAGE_BYTES).await;
    let event = |bytes: usize| ProposedEvent::binary("Sized", Bytes::from(vec![1u8; bytes]));
    for _ in 0..5 {
        append(&store, "sized-1", vec![event(1_000)]).await;
    }
    append(&store, "sized-1", vec![event(3 * PAGE_BYTES)]).await;
    append(&store, "sized-1", vec![event(1_000)]).await;
    let mut pages = Vec::new();
    let mut options = ReadAllOptions::forwards().max_count(100);
    loop {
        let slice = read(&store, options.clone()).await;
        pages.push(positions(&slice.events));
        if slice.is_end {
            break;
        }
        options = options.from_position(slice.next_position);
    }
    let expected: Vec<Vec<u64>> = vec![vec![1, 2], vec![3, 4], vec![5], vec![6], vec![7]];
    assert_eq!(
        pages, expected,
        "forwards pages of at most {PAGE_BYTES} bytes"
    );
    let slice = read(&store, ReadAllOptions::backwards().max_count(100)).await;
    assert_eq!(
        positions(&slice.events),
        vec![7],
        "the larger event waits its own page"
    );
    assert_eq!(slice.next_position, Position(7));
    assert!(!slice.is_end);
    store.close().await;
}

/// `$idx-all` (the index of every event of a user stream, KurrentDB 25.1) selects what
/// `EventFilter::try_matches` selects, as on the engine and in subscriptions
/// (`read_all_window`, which filter each event). It names no index key, so a read took the
/// window path, whose `LIKE '$idx-all%'` matched no stream: every page came back empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_index_prefix_selects_every_user_event() {
    let schema = TestSchema::new();
    let store = open(&schema, 10_000, usize::MAX).await;
    append(&store, "order-1", vec![ProposedEvent::json("Placed", "{}")]).await;
    append(&store, "cart", vec![ProposedEvent::json("Added", "{}")]).await;
    append(
        &store,
        "invoice-1",
        vec![ProposedEvent::json("$Sent", "{}")],
    )
    .await;
    let everything = read(&store, ReadAllOptions::forwards()).await;
    let filter = prefix(FilterTarget::StreamName, &["$idx-all"]);
    let expected: Vec<u64> = everything
        .events
        .iter()
        .filter(|event| filter.try_matches(event).expect("a prefix filter"))
        .map(|event| event.position.0)
        .collect();
    assert_eq!(expected.len(), 2);
    for options in [
        ReadAllOptions::forwards(),
        ReadAllOptions::forwards().max_count(1),
    ] {
        let found: Vec<u64> = pages(&store, options.filter(filter.clone()))
            .await
            .into_iter()
            .flat_map(|(events, ..)| events)
            .collect();
        assert_eq!(found, expected);
    }
    let window = store
        .read_all_window(ReadAllOptions::forwards().filter(filter), 10_000)
        .await
        .expect("reads a window");
    assert_eq!(
        positions(&window.slice.events),
        expected,
        "subscriptions agree"
    );
    store.close().await;
}
