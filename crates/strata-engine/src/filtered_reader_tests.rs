//! Ordinary `$all` filters served from the index answer exactly as a scan of the log does.

use strata_core::{
    AllSlice, Direction, EventFilter, EventStore, ExpectedRevision, FilterTarget, ProposedEvent,
    ReadAllOptions, StreamMetadata, StreamName,
};

use crate::all_reader::{self, EXAMINED_EVENTS_MAX, Scanned};
use crate::config::Config;
use crate::index_file::{list_index_files, rewrite_without_rest_key};
use crate::store::Store;

fn name(text: &str) -> StreamName {
    StreamName::new(text).unwrap()
}

fn config(tail_only: bool) -> Config {
    Config {
        index_memory_tail_only: tail_only,
        ..Config::small_for_tests()
    }
}

async fn append(store: &Store, stream: &str, event_type: &str, data: &'static str) {
    store
        .append(
            &name(stream),
            ExpectedRevision::Any,
            vec![ProposedEvent::json(event_type, data)],
        )
        .await
        .unwrap();
}

/// Noise events (`Noise` in `noise-<n>`) around a few of every other sort: user streams
/// with and without a category, `$$` metadata, client-appended links, a system stream
/// holding user-like types, soft-deleted, tombstoned and truncated streams. With `saved`,
/// the index is checkpointed along the way (a tail-only index then reads the runs).
async fn fill(store: &Store, saved: bool) {
    for round in 0..6u64 {
        for noise in 0..150u64 {
            append(store, &format!("noise-{}", noise % 7), "Noise", "{}").await;
        }
        let order = format!("order-{}", round % 3);
        append(store, &order, "Placed", "{}").await;
        append(store, &order, "PlacedLate", "{}").await;
        append(store, &order, "Paid", "{}").await;
        if round % 2 == 0 {
            append(store, &order, "Shipped", "{}").await;
        }
        append(store, "orderless", "Placed", "{}").await;
        append(store, "loose", "Paid", "{}").await;
        append(store, "-odd", "Placed", "{}").await;
        append(store, "$mine", "Placed", "{}").await;
        append(store, &format!("links-{round}"), "$>", "0@order-0").await;
        append(store, "$mine-x", "$>", "1@order-0").await;
        if round == 1 {
            let metadata = StreamMetadata {
                max_count: Some(1),
                ..StreamMetadata::default()
            };
            store
                .set_stream_metadata(&name("order-1"), ExpectedRevision::Any, &metadata)
                .await
                .unwrap();
        }
        if round == 2 {
            append(store, "gone-1", "Placed", "{}").await;
            store
                .delete_stream(&name("gone-1"), ExpectedRevision::Any)
                .await
                .unwrap();
            append(store, "dead-1", "Paid", "{}").await;
            store
                .tombstone_stream(&name("dead-1"), ExpectedRevision::Any)
                .await
                .unwrap();
        }
        if saved {
            store.checkpoint_indexes().unwrap();
        }
    }
}

fn type_prefixes(prefixes: &[&str]) -> EventFilter {
    let prefixes = prefixes.iter().map(|prefix| (*prefix).to_owned()).collect();
    EventFilter::prefixes(FilterTarget::EventType, prefixes).unwrap()
}

fn stream_prefixes(prefixes: &[&str]) -> EventFilter {
    let prefixes = prefixes.iter().map(|prefix| (*prefix).to_owned()).collect();
    EventFilter::prefixes(FilterTarget::StreamName, prefixes).unwrap()
}

/// Filters the index serves (sparse enough to pass the cost guard).
fn served_filters() -> Vec<EventFilter> {
    vec![
        type_prefixes(&["Placed"]),
        type_prefixes(&["Pa", "Sh"]),
        type_prefixes(&["PlacedL"]),
        type_prefixes(&["$"]),
        type_prefixes(&["$>"]),
        type_prefixes(&["$met", "Shipped"]),
        type_prefixes(&["Nothing"]),
        EventFilter::regex(FilterTarget::EventType, "^Pl.*Late$").unwrap(),
        EventFilter::regex(FilterTarget::EventType, r"^\$").unwrap(),
        EventFilter::regex(FilterTarget::EventType, "aid").unwrap(),
        stream_prefixes(&["order-"]),
        stream_prefixes(&["order-1"]),
        stream_prefixes(&["order"]),
        stream_prefixes(&["ord", "lo"]),
        stream_prefixes(&["$$"]),
        stream_prefixes(&["$"]),
        stream_prefixes(&["$mine-"]),
        stream_prefixes(&["-"]),
        stream_prefixes(&["-o", "gone"]),
        stream_prefixes(&["dead-", "links"]),
    ]
}

/// What a page says, events by their position, stream, type and data.
fn describe(slice: &AllSlice) -> String {
    let events: Vec<String> = slice
        .events
        .iter()
        .map(|event| {
            format!(
                "{}:{}@{}:{}:{:?}",
                event.position.0,
                event.stream.as_str(),
                event.revision.0,
                event.event_type,
                event.data
            )
        })
        .collect();
    format!(
        "{events:?} next {} end {}",
        slice.next_position.0, slice.is_end
    )
}

fn options(direction: Direction, filter: &EventFilter, max_count: usize) -> ReadAllOptions {
    let options = match direction {
        Direction::Forwards => ReadAllOptions::forwards(),
        Direction::Backwards => ReadAllOptions::backwards(),
    };
    options.filter(filter.clone()).max_count(max_count)
}

/// Reads every page either way, by `read`, and says what each held.
fn pages(
    mut options: ReadAllOptions,
    mut read: impl FnMut(&ReadAllOptions) -> Scanned,
) -> Vec<String> {
    let mut pages = Vec::new();
    loop {
        let scanned = read(&options);
        pages.push(describe(&scanned.slice));
        if scanned.slice.is_end || pages.len() > 10_000 {
            return pages;
        }
        options = options.from_position(scanned.slice.next_position);
    }
}

/// Every served filter, page by page both ways with several page sizes, answers as the
/// scan does: the same events, `next_position` and end on every page.
fn assert_pages_match_the_scan(store: &Store) {
    let shared = &store.shared;
    for filter in served_filters() {
        for direction in [Direction::Forwards, Direction::Backwards] {
            for max_count in [1, 3, 7, 10_000] {
                let options = options(direction, &filter, max_count);
                let by_index = pages(options.clone(), |options| {
                    all_reader::read(shared, options, usize::MAX).unwrap()
                });
                let by_scan = pages(options, |options| {
                    all_reader::read_by_scan(shared, options, usize::MAX).unwrap()
                });
                assert_eq!(by_index, by_scan, "{filter:?} {direction:?} {max_count}");
            }
        }
    }
}

/// Windows of a few events each: together they return what the scan returns, and no
/// window's checkpoint or next position passes an event a later window returns.
fn assert_windows_cover_the_scan(store: &Store) {
    let shared = &store.shared;
    for filter in served_filters() {
        for direction in [Direction::Forwards, Direction::Backwards] {
            let all = all_reader::read_by_scan(
                shared,
                &options(direction, &filter, usize::MAX),
                EXAMINED_EVENTS_MAX,
            )
            .unwrap()
            .slice
            .events;
            let mut options = options(direction, &filter, usize::MAX);
            let mut seen = Vec::new();
            let mut marks = Vec::new();
            loop {
                let window = all_reader::read(shared, &options, 3).unwrap();
                assert!(window.examined_count <= 3);
                seen.extend(window.slice.events.iter().map(|event| event.position));
                marks.push((
                    seen.len(),
                    window.slice.last_examined,
                    window.slice.next_position,
                ));
                if window.slice.is_end {
                    break;
                }
                options = options.from_position(window.slice.next_position);
            }
            let wanted: Vec<_> = all.iter().map(|event| event.position).collect();
            assert_eq!(seen, wanted, "{filter:?} {direction:?}");
            for (taken, checkpoint, next) in marks {
                for later in &seen[taken..] {
                    match direction {
                        Direction::Forwards => {
                            assert!(checkpoint.is_none_or(|mark| mark < *later), "{filter:?}");
                            assert!(next <= *later, "{filter:?}");
                        }
                        Direction::Backwards => {
                            assert!(checkpoint.is_none_or(|mark| mark > *later), "{filter:?}");
                            assert!(next > *later, "{filter:?}");
                        }
                    }
                }
            }
        }
    }
}

async fn check_store(tail_only: bool, saved: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(tail_only)).unwrap();
    fill(&store, saved).await;
    assert_pages_match_the_scan(&store);
    assert_windows_cover_the_scan(&store);
    store.close();
    drop(store);
    // Reopened: the catalog and the rest key come back from the files, runs and log.
    let store = Store::open(dir.path(), config(tail_only)).unwrap();
    assert_pages_match_the_scan(&store);
    store.close();
}

#[tokio::test]
async fn filtered_reads_of_a_whole_index_answer_as_the_scan() {
    check_store(false, true).await;
}

#[tokio::test]
async fn filtered_reads_through_the_runs_answer_as_the_scan() {
    check_store(true, true).await;
}

#[tokio::test]
async fn filtered_reads_of_an_unsaved_index_answer_as_the_scan() {
    check_store(true, false).await;
}

/// Events looked at by one window as large as the bound allows.
fn examined(store: &Store, filter: EventFilter) -> usize {
    let options = ReadAllOptions::forwards().filter(filter);
    all_reader::read(&store.shared, &options, EXAMINED_EVENTS_MAX)
        .unwrap()
        .examined_count
}

/// A sparse filter looks only at its keys' events; one whose keys hold most of the log
/// (or that no key can serve) scans it all.
#[tokio::test]
async fn sparse_filters_are_served_from_the_index_and_the_cost_guard_scans() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    fill(&store, true).await;
    let total = store
        .read_all(ReadAllOptions::forwards())
        .await
        .unwrap()
        .events
        .len();
    assert!(total > 700);
    // Shipped: 3 events, and the rest key's (about 60).
    let shipped = examined(&store, type_prefixes(&["Shipped"]));
    assert!(shipped < total / 8, "{shipped} of {total}");
    let orders = examined(&store, stream_prefixes(&["order-"]));
    assert!(orders < total / 8, "{orders} of {total}");
    // Noise is most of the log: the guard scans.
    assert_eq!(examined(&store, type_prefixes(&["Noise"])), total);
    assert_eq!(
        examined(&store, EventFilter::exclude_system_events()),
        total
    );
    // No key serves a stream regex or an empty prefix.
    let regex = EventFilter::regex(FilterTarget::StreamName, "^order-").unwrap();
    assert_eq!(examined(&store, regex), total);
    assert_eq!(examined(&store, type_prefixes(&["Shipped", ""])), total);
    store.close();
}

/// Index files written before the rest key existed make the open rebuild the index from
/// the log; filtered reads then still answer as the scan.
#[tokio::test]
async fn index_files_without_the_rest_key_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    fill(&store, true).await;
    store.close();
    drop(store);
    let files = list_index_files(&dir.path().join("index")).unwrap();
    assert!(files.len() > 1);
    for (_, path) in &files {
        rewrite_without_rest_key(path);
    }
    // Runs written before the rest key held none either: the open rebuilds them from the
    // files.
    std::fs::remove_dir_all(crate::index_saver::runs_dir(dir.path())).unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    assert_pages_match_the_scan(&store);
    let shipped = examined(&store, type_prefixes(&["Shipped"]));
    assert!(shipped < 100, "{shipped}");
    store.close();
}

/// After a scavenge removed the events of a soft-deleted stream and of a truncated one,
/// the keys still list their positions: the index path skips them as the scan does.
#[tokio::test]
async fn filtered_reads_after_a_scavenge_answer_as_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    let bulk = "x".repeat(8 * 1024);
    let bulk = format!("{{\"pad\":\"{bulk}\"}}");
    let bulk: &'static str = Box::leak(bulk.into_boxed_str());
    for round in 0..300u64 {
        append(&store, "bulk-1", "Placed", bulk).await;
        append(&store, "bulkless", "Paid", bulk).await;
        if round % 50 == 0 {
            fill_round(&store).await;
        }
    }
    store
        .delete_stream(&name("bulk-1"), ExpectedRevision::Any)
        .await
        .unwrap();
    let metadata = StreamMetadata {
        truncate_before: Some(250),
        ..StreamMetadata::default()
    };
    store
        .set_stream_metadata(&name("bulkless"), ExpectedRevision::Any, &metadata)
        .await
        .unwrap();
    store.checkpoint_indexes().unwrap();
    let report = store
        .scavenge(strata_core::ScavengeOptions::default())
        .unwrap();
    assert!(report.events_removed > 0, "{report:?}");
    assert_pages_match_the_scan(&store);
    assert_windows_cover_the_scan(&store);
    store.close();
}

/// A few events of the sorts `fill` writes.
async fn fill_round(store: &Store) {
    append(store, "order-9", "Placed", "{}").await;
    append(store, "order-9", "Shipped", "{}").await;
    append(store, "orderless", "Placed", "{}").await;
    append(store, "$mine", "Paid", "{}").await;
    append(store, "links-9", "$>", "0@order-9").await;
}

/// A page read from any position a client may hold (each event's, each
/// segment's start, the log's end) either way, answers as the scan does, in a log of
/// several segments (large events fill them, the events of `fill_round` among them).
#[tokio::test]
async fn pages_from_every_position_answer_as_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(true)).unwrap();
    let bulk = format!("{{\"pad\":\"{}\"}}", "x".repeat(60 * 1024));
    let bulk: &'static str = Box::leak(bulk.into_boxed_str());
    for round in 0..50u64 {
        append(&store, "bulk-1", "Noise", bulk).await;
        append(&store, "bulkless", "Noise", bulk).await;
        if round % 5 == 0 {
            fill_round(&store).await;
            store.checkpoint_indexes().unwrap();
        }
    }
    let shared = &store.shared;
    let segment_bytes = shared.segments.size_bytes();
    let mut positions: Vec<u64> = store
        .read_all(ReadAllOptions::forwards().max_count(usize::MAX))
        .await
        .unwrap()
        .events
        .iter()
        .map(|event| event.position.0)
        .collect();
    let end = shared
        .durable_end
        .load(std::sync::atomic::Ordering::Acquire);
    assert!(end > 3 * segment_bytes, "{end}");
    positions.extend((1..=end / segment_bytes).map(|segment| segment * segment_bytes));
    positions.push(end);
    positions.sort_unstable();
    positions.dedup();
    let filters = [
        type_prefixes(&["Placed"]),
        type_prefixes(&["$"]),
        stream_prefixes(&["order-"]),
        stream_prefixes(&["$"]),
        EventFilter::regex(FilterTarget::EventType, "aid").unwrap(),
    ];
    for filter in &filters {
        for direction in [Direction::Forwards, Direction::Backwards] {
            for max_count in [1, 2] {
                for &position in &positions {
                    let options = options(direction, filter, max_count)
                        .from_position(strata_core::Position(position));
                    let by_index = all_reader::read(shared, &options, usize::MAX)
                        .map(|scanned| describe(&scanned.slice));
                    let by_scan = all_reader::read_by_scan(shared, &options, usize::MAX)
                        .map(|scanned| describe(&scanned.slice));
                    assert_eq!(
                        format!("{by_index:?}"),
                        format!("{by_scan:?}"),
                        "{filter:?} {direction:?} {max_count} from {position}"
                    );
                }
            }
        }
    }
    store.close();
}

/// Review (rev2): a served forwards window that reaches the durable end while the index
/// already holds a newer group (the syncer publishes the index first, the durable end just
/// after) still checkpoints at the last event before the end, as when no append is under
/// way: else a live subscription with a sparse filter never checkpoints under steady
/// appends.
#[tokio::test]
async fn a_served_window_checkpoints_at_the_end_while_a_newer_group_is_published() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), config(false)).unwrap();
    append(&store, "wanted-1", "Wanted", "{}").await;
    for noise in 0..200u64 {
        append(&store, &format!("noise-{}", noise % 7), "Noise", "{}").await;
    }
    let shared = &store.shared;
    let end = shared.durable_end.load(Ordering::Acquire);
    let last_before_end = store
        .read_all(ReadAllOptions::backwards().max_count(1))
        .await
        .unwrap()
        .events[0]
        .position;
    append(&store, "noise-0", "Noise", "{}").await;
    let published = shared.durable_end.load(Ordering::Acquire);
    // The moment between the syncer's two steps: the index holds the newest group, the
    // durable end is still the one before it.
    // An ordinary prefix (filtered_reader.rs) and a `$idx-` one (indexed_reader.rs).
    for prefix in ["wanted-", "$idx-ce-wanted"] {
        shared.durable_end.store(end, Ordering::Release);
        let options = options(Direction::Forwards, &stream_prefixes(&[prefix]), 100);
        let window = all_reader::read(shared, &options, EXAMINED_EVENTS_MAX);
        shared.durable_end.store(published, Ordering::Release);
        let window = window.unwrap().slice;
        assert_eq!(window.events.len(), 1, "{prefix}");
        assert_eq!(
            window.next_position.0, end,
            "{prefix}: served up to the end"
        );
        assert_eq!(
            window.last_examined,
            Some(last_before_end),
            "{prefix}: the checkpoint moves past the events the index let the read skip"
        );
    }
    store.close();
}
