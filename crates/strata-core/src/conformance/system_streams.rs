//! The system streams of [`crate::system_streams`] (`$ce-…`, `$et-…`, `$bc-…`, `$streams`,
//! `$category-…`) as a KurrentDB client reads them, links resolved, followed by
//! subscriptions, and the `$idx-` filtered reads of `$all`: the same answers on every
//! backend, whether it keeps indexes or scans.

use std::sync::Arc;

use crate::error::Error;
use crate::filter::{EventFilter, FilterTarget};
use crate::metadata::StreamMetadata;
use crate::store::{EventStore, ReadAllOptions, ReadFrom, ReadStreamOptions, StreamSlice};
use crate::subscription::{SubscribeFrom, SubscriptionItem, subscribe_to_all, subscribe_to_stream};
use crate::system_streams::{
    LINK_EVENT_TYPE, ResolvedEvent, STREAM_REFERENCE_EVENT_TYPE, category_of,
    read_stream_resolved_by_reading, resolve_link, resolve_links,
};
use crate::types::{
    ContentType, Direction, ExpectedRevision, Position, ProposedEvent, RecordedEvent,
};

use super::Backend;
use super::support::{
    SUBSCRIPTION_BUFFER_ITEMS, StoreChecks, event, events_until_caught_up, next_event, next_item,
    positions, revisions, stream,
};

/// Appenders in the catch-up race, and the appends each makes.
const RACE_WRITERS: usize = 4;
const RACE_APPENDS_PER_WRITER: usize = 30;

/// Writes events of two categories, a stream without category, and correlation ids;
/// returns `$all` afterwards.
async fn populate<S: StoreChecks + ?Sized>(store: &S) -> Vec<RecordedEvent> {
    let writes = [
        ("order-1", "OrderPlaced", Some("c-1")),
        ("cart-1", "ItemAdded", Some("c-1")),
        ("order-2", "OrderPlaced", None),
        ("order-1", "OrderShipped", Some("c-2")),
        ("order", "OrderPlaced", None),
        ("order-2-x", "OrderPaid", Some("c-1")),
        ("orderly-1", "OrderPlaced", None),
        ("order-1", "OrderPaid", None),
    ];
    for (n, (name, event_type, correlation)) in writes.into_iter().enumerate() {
        let mut proposed = event(event_type, n);
        if let Some(id) = correlation {
            proposed.metadata = format!(r#"{{"$correlationId":"{id}"}}"#).into();
        }
        store
            .append_ok(&stream(name), ExpectedRevision::Any, vec![proposed])
            .await;
    }
    store.all_events().await
}

/// Reads a system stream, panicking on error; `None` when it is not found.
async fn read_found<S: StoreChecks + ?Sized>(
    store: &S,
    name: &str,
    options: ReadStreamOptions,
) -> Option<(Vec<RecordedEvent>, u64)> {
    match store.read_stream_ok(&stream(name), options).await {
        StreamSlice::Found {
            events,
            last_revision,
        } => Some((events, last_revision.0)),
        StreamSlice::NotFound => None,
    }
}

/// Every link of a system stream, forwards.
async fn links_of<S: StoreChecks + ?Sized>(store: &S, name: &str) -> Vec<RecordedEvent> {
    read_found(store, name, ReadStreamOptions::forwards())
        .await
        .map(|(events, _)| events)
        .unwrap_or_default()
}

/// Panics unless resolving `links` together (as a read does, forwards and backwards) gives
/// what resolving each alone gives.
async fn assert_resolved_together_as_alone<S: StoreChecks + ?Sized>(
    store: &S,
    links: &[RecordedEvent],
) {
    let mut alone = Vec::new();
    for link in links {
        let resolved: ResolvedEvent = resolve_link(store, link.clone())
            .await
            .unwrap_or_else(|error| panic!("resolve {}: {error}", data_of(link)));
        alone.push((resolved.event, resolved.link));
    }
    for backwards in [false, true] {
        let mut page = links.to_vec();
        let mut expected = alone.clone();
        if backwards {
            page.reverse();
            expected.reverse();
        }
        let together: Vec<_> = resolve_links(store, page)
            .await
            .unwrap_or_else(|error| panic!("resolve the page: {error}"))
            .into_iter()
            .map(|resolved| (resolved.event, resolved.link))
            .collect();
        assert_eq!(
            together, expected,
            "resolved together (backwards: {backwards})"
        );
    }
}

fn link_data(target: &RecordedEvent) -> String {
    format!("{}@{}", target.revision, target.stream)
}

fn data_of(event: &RecordedEvent) -> String {
    String::from_utf8_lossy(&event.data).into_owned()
}

/// Panics unless `links` are the links of `name` to `targets`, numbered from `first`.
fn assert_links_to(links: &[RecordedEvent], name: &str, targets: &[RecordedEvent], first: u64) {
    let expected: Vec<_> = targets.iter().map(link_data).collect();
    let found: Vec<_> = links.iter().map(data_of).collect();
    assert_eq!(found, expected, "{name}: link data `<revision>@<stream>`");
    let dense: Vec<_> = (first..first + links.len() as u64).collect();
    assert_eq!(revisions(links), dense, "{name}: revisions dense");
    for (link, target) in links.iter().zip(targets) {
        assert_eq!(link.stream.as_str(), name, "a link lives in {name}");
        assert_eq!(link.event_type, LINK_EVENT_TYPE, "{name}: links are `$>`");
        assert_eq!(link.content_type, ContentType::Binary, "{name}: link data");
        assert_eq!(link.position, target.position, "{name}: a link's position");
    }
}

/// `$ce-<category>` holds a link to each event of the category's streams (the part of the
/// name before the first `-`), numbered densely in log order, read both ways with a start
/// and a count as any stream.
pub async fn category_stream_reads_forwards_and_backwards<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let all = populate(&*store).await;
    let orders: Vec<_> = all
        .iter()
        .filter(|event| category_of(event.stream.as_str()) == Some("order"))
        .cloned()
        .collect();
    assert_eq!(
        orders.len(),
        5,
        "the case writes 5 events in category order"
    );
    let (links, last) = read_found(&*store, "$ce-order", ReadStreamOptions::forwards())
        .await
        .unwrap_or_else(|| panic!("$ce-order is found"));
    assert_links_to(&links, "$ce-order", &orders, 0);
    assert_eq!(last, 4, "$ce-order: last revision");
    let metadata: serde_json::Value = serde_json::from_slice(&links[1].metadata)
        .unwrap_or_else(|error| panic!("a link's metadata is JSON: {error}"));
    assert_eq!(metadata["$o"], "order-2", "$o names the original stream");
    assert_eq!(metadata["$causedBy"], orders[1].id.to_string());

    let (page, last) = read_found(
        &*store,
        "$ce-order",
        ReadStreamOptions::forwards().from_revision(1).max_count(2),
    )
    .await
    .unwrap_or_else(|| panic!("$ce-order is found"));
    assert_links_to(&page, "$ce-order", &orders[1..3], 1);
    assert_eq!(last, 4, "a page reports the stream's last revision");

    let backwards = read_found(&*store, "$ce-order", ReadStreamOptions::backwards())
        .await
        .map(|(events, _)| events)
        .unwrap_or_default();
    let reversed: Vec<_> = links.iter().rev().cloned().collect();
    assert_eq!(backwards, reversed, "$ce-order backwards");
    let page = read_found(
        &*store,
        "$ce-order",
        ReadStreamOptions::backwards().from_revision(3).max_count(2),
    )
    .await
    .map(|(events, _)| events)
    .unwrap_or_default();
    assert_eq!(revisions(&page), vec![3, 2], "backwards from 3, two links");
    let past_end = read_found(
        &*store,
        "$ce-order",
        ReadStreamOptions::backwards()
            .from_revision(40)
            .max_count(1),
    )
    .await
    .map(|(events, _)| events)
    .unwrap_or_default();
    assert_eq!(revisions(&past_end), vec![4], "backwards from past the end");
    let after_end = read_found(
        &*store,
        "$ce-order",
        ReadStreamOptions::forwards().from_revision(5),
    )
    .await
    .map(|(events, _)| events);
    assert_eq!(after_end, Some(Vec::new()), "forwards from past the end");

    let carts = links_of(&*store, "$ce-cart").await;
    assert_eq!(carts.len(), 1, "$ce-cart");
    for missing in [
        "$ce-nothing",
        "$et-Nothing",
        "$bc-none",
        "$category-nothing",
    ] {
        assert!(
            read_found(&*store, missing, ReadStreamOptions::forwards())
                .await
                .is_none(),
            "{missing} is not found"
        );
    }
}

/// `$et-<type>`, `$bc-<correlation id>`, `$streams` and `$category-<category>` as the
/// standard projections write them.
pub async fn event_type_correlation_and_stream_lists<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let metadata = StreamMetadata {
        max_count: Some(10),
        ..StreamMetadata::default()
    };
    let all = populate(&*store).await;
    store
        .set_stream_metadata(&stream("cart-1"), ExpectedRevision::Any, &metadata)
        .await
        .unwrap_or_else(|error| panic!("set metadata of cart-1: {error}"));
    let all_after = store.all_events().await;
    let select = |keep: &dyn Fn(&RecordedEvent) -> bool| -> Vec<RecordedEvent> {
        all.iter().filter(|event| keep(event)).cloned().collect()
    };

    let placed = select(&|event| event.event_type == "OrderPlaced");
    assert_eq!(placed.len(), 4, "the case writes 4 OrderPlaced");
    assert_links_to(
        &links_of(&*store, "$et-OrderPlaced").await,
        "$et-OrderPlaced",
        &placed,
        0,
    );
    let backwards = read_found(
        &*store,
        "$et-OrderPlaced",
        ReadStreamOptions::backwards().max_count(3),
    )
    .await
    .map(|(events, _)| events)
    .unwrap_or_default();
    assert_eq!(revisions(&backwards), vec![3, 2, 1], "$et- backwards");

    let correlated = select(&|event| {
        String::from_utf8_lossy(&event.metadata).contains(r#""$correlationId":"c-1""#)
    });
    assert_eq!(correlated.len(), 3, "the case correlates 3 events with c-1");
    assert_links_to(
        &links_of(&*store, "$bc-c-1").await,
        "$bc-c-1",
        &correlated,
        0,
    );

    let mut firsts: Vec<RecordedEvent> = all_after
        .iter()
        .filter(|event| event.revision.0 == 0)
        .filter(|event| {
            let name = event.stream.as_str();
            !name.starts_with('$')
                || name
                    .strip_prefix("$$")
                    .is_some_and(|described| !described.starts_with('$'))
        })
        .cloned()
        .collect();
    firsts.sort_by_key(|event| event.position);
    assert!(
        firsts
            .iter()
            .any(|event| event.stream.as_str() == "$$cart-1"),
        "$streams lists the metadata streams of user streams"
    );
    assert_links_to(&links_of(&*store, "$streams").await, "$streams", &firsts, 0);

    let references = links_of(&*store, "$category-order").await;
    let order_streams: Vec<_> = firsts
        .iter()
        .filter(|event| category_of(event.stream.as_str()) == Some("order"))
        .map(|event| event.stream.as_str().to_owned())
        .collect();
    assert_eq!(
        references.iter().map(data_of).collect::<Vec<_>>(),
        order_streams,
        "$category-order names each stream of the category once"
    );
    assert!(
        references
            .iter()
            .all(|reference| reference.event_type == STREAM_REFERENCE_EVENT_TYPE),
        "$category- holds `$@` references"
    );
    assert_eq!(
        revisions(&references),
        (0..references.len() as u64).collect::<Vec<_>>()
    );
}

/// A link resolves to the event it points at, with the link; links a client appends
/// itself resolve too; a link to nothing comes back without its event; data that names no
/// revision is no link at all.
pub async fn links_resolve_to_their_targets<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let all = populate(&*store).await;
    for link in links_of(&*store, "$ce-order").await {
        let resolved = resolve_link(&*store, link.clone())
            .await
            .unwrap_or_else(|error| panic!("resolve {}: {error}", data_of(&link)));
        let target = resolved
            .event
            .unwrap_or_else(|| panic!("{} resolves", data_of(&link)));
        assert_eq!(link_data(&target), data_of(&link), "the link's target");
        assert!(all.contains(&target), "the target as stored");
        assert_eq!(resolved.link, Some(link));
    }
    let own = stream("links-1");
    let written = [
        ProposedEvent::binary(LINK_EVENT_TYPE, "1@order-1"),
        ProposedEvent::binary(LINK_EVENT_TYPE, "9@order-1"),
        ProposedEvent::binary(LINK_EVENT_TYPE, "0@never-1"),
        ProposedEvent::binary(LINK_EVENT_TYPE, "abc"),
        ProposedEvent::binary(LINK_EVENT_TYPE, "5"),
    ];
    store
        .append_ok(&own, ExpectedRevision::NoStream, written.to_vec())
        .await;
    let links = store.stream_events(&own).await;
    let order_1 = store.stream_events(&stream("order-1")).await;
    let mut outcomes = Vec::new();
    for link in &links {
        let resolved = resolve_link(&*store, link.clone())
            .await
            .unwrap_or_else(|error| panic!("resolve {}: {error}", data_of(link)));
        outcomes.push((resolved.event, resolved.link));
    }
    assert_eq!(
        outcomes[0],
        (Some(order_1[1].clone()), Some(links[0].clone())),
        "a client's link resolves"
    );
    assert_eq!(outcomes[1], (None, Some(links[1].clone())), "no such event");
    assert_eq!(
        outcomes[2],
        (None, Some(links[2].clone())),
        "no such stream"
    );
    assert_eq!(
        outcomes[3],
        (Some(links[3].clone()), None),
        "data naming no revision: the event as read"
    );
    assert_eq!(
        outcomes[4],
        (None, Some(links[4].clone())),
        "no stream named"
    );

    // Links in runs of consecutive revisions, both ways, past the stream's end, broken by
    // other streams, by data naming no revision and by a stream that never was.
    let runs = stream("links-2");
    let written: Vec<_> = [
        "0@order-1",
        "1@order-1",
        "2@order-1",
        "3@order-1",
        "2@order-1",
        "1@order-1",
        "0@order-2",
        "abc",
        "1@order-2",
        "0@never-1",
        "1@never-1",
        "0@order-1",
    ]
    .into_iter()
    .map(|data| ProposedEvent::binary(LINK_EVENT_TYPE, data))
    .collect();
    store
        .append_ok(&runs, ExpectedRevision::NoStream, written)
        .await;
    assert_resolved_together_as_alone(&*store, &store.stream_events(&runs).await).await;
    assert_resolved_together_as_alone(&*store, &links_of(&*store, "$ce-order").await).await;

    // `$ce-links` links to a link point where that link points.
    let category = links_of(&*store, "$ce-links").await;
    assert_eq!(
        category.iter().map(data_of).collect::<Vec<_>>()[..links.len()],
        links.iter().map(data_of).collect::<Vec<_>>()[..],
        "a category link to a link carries that link's data"
    );
    let plain = resolve_link(&*store, order_1[0].clone())
        .await
        .unwrap_or_else(|error| panic!("resolve a plain event: {error}"));
    assert_eq!(
        (plain.event, plain.link),
        (Some(order_1[0].clone()), None),
        "an event that is no link comes back as it is"
    );
}

/// A subscription to `$ce-<category>` from the start delivers every link once, in order,
/// while appends race it through catch-up into live; one from the end sees only new links.
pub async fn category_subscription_catches_up_under_concurrent_appends<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let category = "$ce-race";
    for writer in 0..RACE_WRITERS {
        store
            .append_ok(
                &stream(&format!("race-{writer}")),
                ExpectedRevision::Any,
                vec![event("Raced", 0), event("Raced", 1)],
            )
            .await;
    }
    let mut from_start = subscribe_to_stream(
        Arc::clone(&store),
        stream(category),
        SubscribeFrom::Start,
        SUBSCRIPTION_BUFFER_ITEMS,
    );
    let mut from_end = subscribe_to_stream(
        Arc::clone(&store),
        stream(category),
        SubscribeFrom::End,
        SUBSCRIPTION_BUFFER_ITEMS,
    );
    let history = events_until_caught_up(&mut from_end, "$ce-race from the end").await;
    assert_eq!(history, Vec::new(), "from the end: no history");
    let writers: Vec<_> = (0..RACE_WRITERS)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let own = stream(&format!("race-{writer}"));
                let other = stream(&format!("other-{writer}"));
                for append in 0..RACE_APPENDS_PER_WRITER {
                    store
                        .append_ok(&own, ExpectedRevision::Any, vec![event("Raced", append)])
                        .await;
                    store
                        .append_ok(&other, ExpectedRevision::Any, vec![event("Other", append)])
                        .await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer
            .await
            .unwrap_or_else(|error| panic!("a writer failed: {error}"));
    }
    let stored = links_of(&*store, category).await;
    let expected_count = RACE_WRITERS * (2 + RACE_APPENDS_PER_WRITER);
    assert_eq!(stored.len(), expected_count, "{category} links every event");
    let mut seen = Vec::new();
    while seen.len() < stored.len() {
        if let SubscriptionItem::Event(link) = next_item(&mut from_start, "$ce-race race").await {
            seen.push(link);
        }
    }
    assert_eq!(seen, stored, "every link once, in order, no gap");
    let mut live = Vec::new();
    while live.len() < stored.len() - 2 * RACE_WRITERS {
        live.push(next_event(&mut from_end, "$ce-race from the end").await);
    }
    assert_eq!(
        live,
        stored[2 * RACE_WRITERS..],
        "from the end: the links written after it started"
    );
}

/// Deleting, tombstoning or truncating a stream removes none of its links: they stay where
/// they are and resolve to no event, as in KurrentDB.
pub async fn links_of_deleted_and_truncated_streams_stay_and_resolve_to_nothing<B: Backend>(
    backend: &B,
) {
    let store = backend.fresh().await;
    for name in ["gone-1", "gone-2", "gone-3", "gone-4"] {
        store
            .append_ok(
                &stream(name),
                ExpectedRevision::NoStream,
                vec![event("Kept", 0), event("Kept", 1)],
            )
            .await;
    }
    let before = links_of(&*store, "$ce-gone").await;
    assert_eq!(before.len(), 8);
    store
        .delete_stream(&stream("gone-1"), ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("delete gone-1: {error}"));
    store
        .tombstone_stream(&stream("gone-2"), ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("tombstone gone-2: {error}"));
    let metadata = StreamMetadata {
        max_count: Some(1),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&stream("gone-3"), ExpectedRevision::Any, &metadata)
        .await
        .unwrap_or_else(|error| panic!("set metadata of gone-3: {error}"));
    let after = links_of(&*store, "$ce-gone").await;
    assert_eq!(
        after[..before.len()],
        before[..],
        "the links stay where they were"
    );
    assert_eq!(
        after.len(),
        before.len(),
        "no link is added for a delete (KurrentDB's `$deleted` markers are not modelled)"
    );
    let mut resolved_events = Vec::new();
    for link in &after {
        let resolved = resolve_link(&*store, link.clone())
            .await
            .unwrap_or_else(|error| panic!("resolve {}: {error}", data_of(link)));
        assert_eq!(resolved.link.as_ref(), Some(link), "the link comes back");
        resolved_events.push(resolved.event.map(|event| link_data(&event)));
    }
    let expected: Vec<Option<String>> = [
        None,                    // gone-1, soft-deleted
        None,                    //
        None,                    // gone-2, tombstoned
        None,                    //
        None,                    // gone-3, beyond $maxCount 1
        Some("1@gone-3".into()), //
        Some("0@gone-4".into()), // untouched
        Some("1@gone-4".into()), //
    ]
    .to_vec();
    assert_eq!(resolved_events, expected, "what each link resolves to");
    assert_resolved_together_as_alone(&*store, &after).await;
}

/// A system stream read with its links resolved in one call
/// ([`EventStore::read_stream_resolved`]) answers as reading the stream, then resolving its
/// links: across windows in both directions, over targets that are plain, soft-deleted,
/// tombstoned, beyond `$maxCount`, truncated, under `$maxAge`, in a metadata stream, and
/// links themselves; the runs broken by interleaved streams.
pub async fn resolved_reads_equal_reading_then_resolving<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    for round in 0..3 {
        for name in ["mix-1", "mix-2", "mix-3", "mix-4", "mix-5", "mix-6"] {
            let events = (0..=round).map(|n| event("Mixed", n)).collect();
            store
                .append_ok(&stream(name), ExpectedRevision::Any, events)
                .await;
        }
        let link = ProposedEvent::binary(LINK_EVENT_TYPE, format!("{round}@mix-1"));
        store
            .append_ok(&stream("mix-links"), ExpectedRevision::Any, vec![link])
            .await;
    }
    store
        .delete_stream(&stream("mix-2"), ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("delete mix-2: {error}"));
    store
        .tombstone_stream(&stream("mix-3"), ExpectedRevision::Any)
        .await
        .unwrap_or_else(|error| panic!("tombstone mix-3: {error}"));
    let metadata = [
        (
            "mix-4",
            StreamMetadata {
                max_count: Some(2),
                ..StreamMetadata::default()
            },
        ),
        (
            "mix-5",
            StreamMetadata {
                truncate_before: Some(3),
                ..StreamMetadata::default()
            },
        ),
        (
            "mix-6",
            StreamMetadata {
                max_age: Some(std::time::Duration::from_secs(3_600)),
                ..StreamMetadata::default()
            },
        ),
    ];
    for (name, metadata) in metadata {
        store
            .set_stream_metadata(&stream(name), ExpectedRevision::Any, &metadata)
            .await
            .unwrap_or_else(|error| panic!("set metadata of {name}: {error}"));
    }
    let names = [
        "$ce-mix",
        "$ce-$$mix",
        "$et-Mixed",
        "$et-$>",
        "$et-$metadata",
        "$streams",
        "$category-mix",
    ];
    for name in names {
        let len = links_of(&*store, name).await.len();
        if matches!(name, "$ce-mix" | "$et-Mixed") {
            assert!(len > 0, "{name} holds links");
        }
        let mut windows = vec![
            ReadStreamOptions::forwards(),
            ReadStreamOptions::backwards(),
        ];
        for max_count in [1, 2, 3, 5, 8] {
            for from in [0, 1, 4, len.saturating_sub(1), len + 1] {
                for options in [
                    ReadStreamOptions::forwards(),
                    ReadStreamOptions::backwards(),
                ] {
                    windows.push(options.from_revision(from as u64).max_count(max_count));
                }
            }
        }
        for options in windows {
            let described = format!("{name} {options:?}");
            let together = store
                .read_stream_resolved(&stream(name), options)
                .await
                .unwrap_or_else(|error| panic!("{described}, resolved: {error}"));
            let apart = read_stream_resolved_by_reading(&*store, &stream(name), options)
                .await
                .unwrap_or_else(|error| panic!("{described}, read then resolved: {error}"));
            assert_eq!(together, apart, "{described}");
        }
    }
}

/// Nothing is stored for system streams served from indexes: appends, deletes and
/// metadata writes to them are refused.
pub async fn writes_to_system_streams_are_refused<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    populate(&*store).await;
    let refused = |what: &str, outcome: Result<(), Error>| match outcome {
        Err(Error::InvalidArgument { .. }) => {}
        other => panic!("{what}: wanted InvalidArgument, got {other:?}"),
    };
    for name in [
        "$ce-order",
        "$et-OrderPlaced",
        "$streams",
        "$bc-c-1",
        "$category-order",
    ] {
        let target = stream(name);
        let appended = store
            .append(&target, ExpectedRevision::Any, vec![event("Forged", 0)])
            .await;
        refused(&format!("append to {name}"), appended.map(|_| ()));
    }
    let category = stream("$ce-order");
    refused(
        "delete $ce-order",
        store
            .delete_stream(&category, ExpectedRevision::Any)
            .await
            .map(|_| ()),
    );
    refused(
        "tombstone $ce-order",
        store
            .tombstone_stream(&category, ExpectedRevision::Any)
            .await
            .map(|_| ()),
    );
    refused(
        "metadata of $ce-order",
        store
            .set_stream_metadata(&category, ExpectedRevision::Any, &StreamMetadata::default())
            .await
            .map(|_| ()),
    );
    assert_eq!(
        links_of(&*store, "$ce-order").await.len(),
        5,
        "$ce-order is unchanged"
    );
}

/// What a `$idx-ce-<category>` / `$idx-et-<type>` / `$idx-all` filter selects, by
/// definition: events of user streams whose type does not start with `$`, of the category
/// (a stream without `-` being its own), of the type, or all of them.
fn index_selects(prefix: &str, event: &RecordedEvent) -> bool {
    let name = event.stream.as_str();
    if name.starts_with('$') || event.event_type.starts_with('$') {
        return false;
    }
    if let Some(category) = prefix.strip_prefix("$idx-ce-") {
        category_of(name).unwrap_or(name) == category
    } else if let Some(event_type) = prefix.strip_prefix("$idx-et-") {
        event.event_type == event_type
    } else {
        prefix == "$idx-all"
    }
}

/// Reads `$all` with `filter` page by page (`page` events at most), returning the events.
async fn read_pages<S: StoreChecks + ?Sized>(
    store: &S,
    filter: &EventFilter,
    direction: Direction,
    page: usize,
) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut from = ReadFrom::Start;
    if direction == Direction::Backwards {
        from = ReadFrom::End;
    }
    for _ in 0..1_000 {
        let options = ReadAllOptions {
            direction,
            from,
            max_count: page,
            filter: Some(filter.clone()),
        };
        let slice = store.read_all_ok(options).await;
        assert!(slice.events.len() <= page, "a page holds at most max_count");
        events.extend(slice.events);
        if slice.is_end {
            return events;
        }
        from = ReadFrom::At(slice.next_position);
    }
    panic!("paging through $all with {filter:?} never reached the end");
}

/// `$all` filtered by a `$idx-ce-…`, `$idx-et-…` or `$idx-all` stream prefix returns exactly the events
/// the definition selects, both ways, paged through `next_position`, and in windows whose
/// `last_examined` checkpoints never pass an event not yet returned; a subscription with
/// the filter catches up and goes live.
pub async fn index_filtered_all_reads_equal_the_definition<B: Backend>(backend: &B) {
    let store = backend.fresh().await;
    let metadata = StreamMetadata {
        max_count: Some(3),
        ..StreamMetadata::default()
    };
    populate(&*store).await;
    store
        .set_stream_metadata(&stream("order-1"), ExpectedRevision::Any, &metadata)
        .await
        .unwrap_or_else(|error| panic!("set metadata of order-1: {error}"));
    store
        .append_ok(
            &stream("order-9"),
            ExpectedRevision::Any,
            vec![ProposedEvent::binary(LINK_EVENT_TYPE, "0@order-1")],
        )
        .await;
    for prefix in [
        "$idx-ce-order",
        "$idx-et-OrderPlaced",
        "$idx-ce-cart",
        "$idx-all",
    ] {
        let all = store.all_events().await;
        let filter = EventFilter::prefixes(FilterTarget::StreamName, vec![prefix.to_owned()])
            .unwrap_or_else(|error| panic!("{prefix} is a valid filter: {error}"));
        let expected: Vec<_> = all
            .iter()
            .filter(|event| index_selects(prefix, event))
            .cloned()
            .collect();
        assert!(!expected.is_empty(), "{prefix}: the case selects something");
        let reversed: Vec<_> = expected.iter().rev().cloned().collect();
        for page in [1, 2, 100] {
            let forwards = read_pages(&*store, &filter, Direction::Forwards, page).await;
            assert_eq!(forwards, expected, "{prefix} forwards, pages of {page}");
            let backwards = read_pages(&*store, &filter, Direction::Backwards, page).await;
            assert_eq!(backwards, reversed, "{prefix} backwards, pages of {page}");
        }
        check_windows(&*store, &filter, &expected, prefix).await;
        let mut subscription = subscribe_to_all(
            Arc::clone(&store),
            SubscribeFrom::Start,
            Some(filter),
            SUBSCRIPTION_BUFFER_ITEMS,
        );
        let history = events_until_caught_up(&mut subscription, prefix).await;
        assert_eq!(history, expected, "{prefix}: a subscription's history");
        let fresh = store
            .append_ok(
                &stream("order-3"),
                ExpectedRevision::Any,
                vec![event("OrderPlaced", 0), event("CartOpened", 1)],
            )
            .await;
        if prefix != "$idx-ce-cart" {
            let live = next_event(&mut subscription, prefix).await;
            assert_eq!(live.stream.as_str(), "order-3", "{prefix}: live");
            assert!(live.position <= fresh.position);
        }
    }
}

/// Windows of `$all` with `filter` (3 events looked at each) return `expected` in order,
/// and no window's `last_examined` passes a selected event that a later window returns.
async fn check_windows<S: StoreChecks + ?Sized>(
    store: &S,
    filter: &EventFilter,
    expected: &[RecordedEvent],
    what: &str,
) {
    let mut seen: Vec<RecordedEvent> = Vec::new();
    let mut checkpoint: Option<Position> = None;
    let mut from = ReadFrom::Start;
    for _ in 0..10_000 {
        let options = ReadAllOptions::forwards().filter(filter.clone());
        let options = ReadAllOptions { from, ..options };
        let window = store
            .read_all_window(options, 3)
            .await
            .unwrap_or_else(|error| panic!("{what}: window read failed: {error}"));
        for event in &window.slice.events {
            if let Some(checkpoint) = checkpoint {
                assert!(
                    event.position > checkpoint,
                    "{what}: {} at {} was behind an earlier checkpoint {checkpoint}",
                    event.stream,
                    event.position
                );
            }
        }
        seen.extend(window.slice.events.iter().cloned());
        if let Some(examined) = window.slice.last_examined {
            assert!(
                checkpoint.is_none_or(|before| examined >= before),
                "{what}: checkpoints move forwards"
            );
            assert!(
                seen.last().is_none_or(|last| examined >= last.position),
                "{what}: the checkpoint covers the events returned"
            );
            checkpoint = Some(examined);
        }
        if window.slice.is_end {
            assert_eq!(
                positions(&seen),
                positions(expected),
                "{what}: windows return the selected events"
            );
            return;
        }
        from = ReadFrom::At(window.slice.next_position);
    }
    panic!("{what}: windows never reached the end");
}
