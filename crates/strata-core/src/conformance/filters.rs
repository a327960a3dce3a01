//! Filtered reads of `$all`: prefixes and regexes on stream names and event types.

use crate::filter::{EventFilter, FilterTarget};
use crate::metadata::{METADATA_EVENT_TYPE, StreamMetadata};
use crate::store::{EventStore, ReadAllOptions};
use crate::types::{ExpectedRevision, RecordedEvent};

use super::Backend;
use super::support::{StoreChecks, assert_strictly_increasing, event, positions, stream};

/// The exclude-system-events regex the Python client sends by default.
const PYTHON_CLIENT_DEFAULT_EXCLUDE: &str = r"^(?!(\$.+$|PersistentConfig\d+$|Result$))";

/// Writes a mix of streams, event types and one metadata event; returns `$all`.
async fn populate<S: StoreChecks + ?Sized>(store: &S) -> Vec<RecordedEvent> {
    let writes = [
        ("order-1", "OrderPlaced"),
        ("cart-1", "ItemAdded"),
        ("order-2", "OrderPlaced"),
        ("order-1", "OrderShipped"),
        ("user-7", "UserRegistered"),
        ("cart-1", "ItemRemoved"),
        ("orderly-1", "Result"),
        ("user-7", "PersistentConfig1"),
    ];
    for (n, (name, event_type)) in writes.into_iter().enumerate() {
        store
            .append_ok(
                &stream(name),
                ExpectedRevision::Any,
                vec![event(event_type, n)],
            )
            .await;
    }
    let metadata = StreamMetadata {
        max_count: Some(5),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&stream("order-1"), ExpectedRevision::Any, &metadata)
        .await
        .unwrap_or_else(|error| panic!("set metadata of order-1: {error}"));
    store.all_events().await
}

/// Reads `$all` with `filter` and checks it returns exactly the events `keep` selects.
async fn check_filter<S: StoreChecks + ?Sized>(
    store: &S,
    all: &[RecordedEvent],
    filter: EventFilter,
    keep: impl Fn(&RecordedEvent) -> bool,
    what: &str,
) {
    let expected: Vec<_> = all.iter().filter(|event| keep(event)).cloned().collect();
    assert!(
        !expected.is_empty(),
        "{what}: the case must select something"
    );
    let slice = store
        .read_all_ok(ReadAllOptions::forwards().filter(filter.clone()))
        .await;
    assert_eq!(
        positions(&slice.events),
        positions(&expected),
        "{what}, forwards"
    );
    assert!(
        slice.is_end,
        "{what}: an unbounded filtered read reaches the end"
    );
    let slice = store
        .read_all_ok(ReadAllOptions::backwards().filter(filter))
        .await;
    let reversed: Vec<_> = expected.iter().rev().cloned().collect();
    assert_eq!(
        positions(&slice.events),
        positions(&reversed),
        "{what}, backwards"
    );
}

fn filter(result: crate::Result<EventFilter>) -> EventFilter {
    result.unwrap_or_else(|error| panic!("the case's filter is valid: {error}"))
}

/// Stream-name and event-type prefix filters select matching events only.
pub async fn read_all_filtered_by_prefix<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let all = populate(&*store).await;
    let by_stream = filter(EventFilter::prefixes(
        FilterTarget::StreamName,
        vec!["order-".into(), "cart".into()],
    ));
    check_filter(
        &*store,
        &all,
        by_stream,
        |event| {
            event.stream.as_str().starts_with("order-") || event.stream.as_str().starts_with("cart")
        },
        "stream prefixes order- and cart",
    )
    .await;
    let by_type = filter(EventFilter::prefixes(
        FilterTarget::EventType,
        vec!["Order".into()],
    ));
    check_filter(
        &*store,
        &all,
        by_type,
        |event| event.event_type.starts_with("Order"),
        "event type prefix Order",
    )
    .await;
}

/// Stream-name and event-type regex filters match anywhere in the field.
pub async fn read_all_filtered_by_regex<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let all = populate(&*store).await;
    let by_stream = filter(EventFilter::regex(
        FilterTarget::StreamName,
        r"^(cart|user)-\d+$",
    ));
    check_filter(
        &*store,
        &all,
        by_stream,
        |event| ["cart-1", "user-7"].contains(&event.stream.as_str()),
        "stream regex ^(cart|user)-\\d+$",
    )
    .await;
    let by_type = filter(EventFilter::regex(FilterTarget::EventType, "Item"));
    check_filter(
        &*store,
        &all,
        by_type,
        |event| event.event_type.contains("Item"),
        "event type regex Item",
    )
    .await;
}

/// The Python client's default filter excludes `$metadata` and its reserved types.
pub async fn read_all_filtered_by_client_default_exclude<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let all = populate(&*store).await;
    assert!(
        all.iter()
            .any(|event| event.event_type == METADATA_EVENT_TYPE),
        "$all holds the $metadata event"
    );
    let exclude = filter(EventFilter::regex(
        FilterTarget::EventType,
        PYTHON_CLIENT_DEFAULT_EXCLUDE,
    ));
    check_filter(
        &*store,
        &all,
        exclude,
        |event| {
            !event.event_type.starts_with('$')
                && !["Result", "PersistentConfig1"].contains(&event.event_type.as_str())
        },
        "the Python client's default exclude regex",
    )
    .await;
}

/// A filtered read with max count returns that many matches; paging reaches them all.
pub async fn read_all_filtered_paging<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let all = populate(&*store).await;
    let orders = filter(EventFilter::prefixes(
        FilterTarget::StreamName,
        vec!["order".into()],
    ));
    let expected: Vec<_> = all
        .iter()
        .filter(|event| event.stream.as_str().starts_with("order"))
        .cloned()
        .collect();
    let mut options = ReadAllOptions::forwards().filter(orders).max_count(2);
    let mut paged = Vec::new();
    for _ in 0..=all.len() {
        let slice = store.read_all_ok(options.clone()).await;
        assert!(
            slice.events.len() <= 2,
            "a page holds at most max count events"
        );
        paged.extend(slice.events);
        if slice.is_end {
            break;
        }
        options = options.from_position(slice.next_position);
    }
    assert_strictly_increasing(&positions(&paged), "filtered pages");
    assert_eq!(
        positions(&paged),
        positions(&expected),
        "filtered paging reaches every match"
    );
}

/// A filter that matches nothing still pages to the end of `$all`, moving forwards.
pub async fn read_all_filter_matching_nothing_reaches_the_end<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let all = populate(&*store).await;
    let nothing = filter(EventFilter::prefixes(
        FilterTarget::StreamName,
        vec!["no-such-stream".into()],
    ));
    let mut options = ReadAllOptions::forwards().filter(nothing).max_count(2);
    let mut previous = None;
    for _ in 0..=all.len() {
        let slice = store.read_all_ok(options.clone()).await;
        assert!(
            slice.events.is_empty(),
            "nothing matches, got {:?}",
            slice.events
        );
        if slice.is_end {
            return;
        }
        assert!(
            previous.is_none_or(|previous| slice.next_position > previous),
            "an unfinished filtered page must move forwards"
        );
        previous = Some(slice.next_position);
        options = options.from_position(slice.next_position);
    }
    panic!("paging a filter that matches nothing never reached the end");
}

/// A regex that exceeds its backtracking limit on an event's field fails the read with
/// `InvalidFilter` rather than skip an event it cannot decide on, on every backend.
pub async fn read_all_regex_over_its_backtracking_limit_fails_the_read<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let near_miss = format!("{}!", "a".repeat(64));
    store
        .append_ok(&stream("ok"), ExpectedRevision::Any, vec![event("E", 0)])
        .await;
    store
        .append_ok(
            &stream(&near_miss),
            ExpectedRevision::Any,
            vec![event("E", 1)],
        )
        .await;
    // Two ways to match each character, one through a lookahead: exponential on a near miss.
    let catastrophic = filter(EventFilter::regex(
        FilterTarget::StreamName,
        r"^((?=a)a|a)+$",
    ));
    for options in [ReadAllOptions::forwards(), ReadAllOptions::backwards()] {
        let result = store.read_all(options.filter(catastrophic.clone())).await;
        match result {
            Err(crate::Error::InvalidFilter { reason }) => assert!(
                reason.contains("backtracking steps"),
                "the error says why: {reason}"
            ),
            other => panic!("expected InvalidFilter, got {other:?}"),
        }
    }
}
