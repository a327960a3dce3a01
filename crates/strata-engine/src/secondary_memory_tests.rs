//! Secondary keys in a tail-only index: memory holds only the keys with positions in the
//! unindexed tail (correlation ids and tags, one per command in real applications, would
//! otherwise grow without bound), and every read answers as an index that keeps them all.

use strata_core::{
    Direction, EventFilter, EventStore, ExpectedRevision, FilterTarget, ProposedEvent,
    ReadAllOptions, ReadStreamOptions, StreamName,
};

use crate::config::Config;
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

/// How many secondary keys memory holds.
fn keys_in_memory(store: &Store) -> usize {
    store.shared.index.read().secondary.key_count()
}

/// The `number`-th event: a new correlation id and tag every 3 events, 4 event types.
fn event(number: u64) -> ProposedEvent {
    let keys = format!(
        r#"{{"$correlationId":"c-{}","$tags":["t-{}"]}}"#,
        number / 3,
        number / 3
    );
    ProposedEvent::json(format!("T{}", number % 4), "{}").with_metadata(keys)
}

/// Events numbered `from..to`: in streams `order-0` to `order-9` and, every 4th, in the
/// stream named as the category itself (`order`, which grows large).
async fn write(store: &Store, from: u64, to: u64) {
    for number in from..to {
        let stream = if number % 4 == 0 {
            "order".to_owned()
        } else {
            format!("order-{}", number % 10)
        };
        store
            .append(&name(&stream), ExpectedRevision::Any, vec![event(number)])
            .await
            .unwrap();
    }
}

/// Appends `count` events after `from` in batches, each batch saved (a run published,
/// which a tail-only index then drops from memory).
async fn write_saved(store: &Store, from: u64, count: u64) {
    for batch in 0..count / 60 {
        write(store, from + batch * 60, from + (batch + 1) * 60).await;
        store.checkpoint_indexes().unwrap();
    }
}

fn stream_options() -> Vec<ReadStreamOptions> {
    let mut middle_forwards = ReadStreamOptions::forwards().from_revision(97);
    middle_forwards.max_count = 40;
    let mut middle_backwards = ReadStreamOptions::backwards().from_revision(130);
    middle_backwards.max_count = 50;
    let mut first_two = ReadStreamOptions::forwards();
    first_two.max_count = 2;
    vec![
        ReadStreamOptions::forwards(),
        ReadStreamOptions::backwards(),
        middle_forwards,
        middle_backwards,
        first_two,
    ]
}

/// Every read of the secondary indexes a client makes, as text: `$bc-`, `$ce-`, `$et-`,
/// `$streams`, `$category-` both ways and from the middle, and `$idx-` filtered `$all`
/// reads in pages, from the start, the end and a middle position.
async fn answers(store: &Store, correlations: &[u64]) -> Vec<String> {
    let mut streams: Vec<String> = correlations
        .iter()
        .map(|id| format!("$bc-c-{id}"))
        .collect();
    streams.extend(
        [
            "$ce-order",
            "$et-T1",
            "$et-T0",
            "$streams",
            "$category-order",
        ]
        .map(String::from),
    );
    let mut out = Vec::new();
    for stream in &streams {
        for options in stream_options() {
            let answer = match store.read_stream(&name(stream), options).await {
                Ok(strata_core::StreamSlice::Found {
                    events,
                    last_revision,
                }) => format!(
                    "last {last_revision:?}: {:?}",
                    events
                        .iter()
                        .map(|event| (event.revision.0, event.position.0, event.data.clone()))
                        .collect::<Vec<_>>()
                ),
                Ok(strata_core::StreamSlice::NotFound) => "not found".to_owned(),
                Err(error) => error.to_string(),
            };
            out.push(format!("{stream} {options:?}: {answer}"));
        }
    }
    let middle = store.read_all(ReadAllOptions::forwards()).await.unwrap();
    let middle = middle.events[middle.events.len() / 2].position;
    for prefix in ["$idx-ce-order", "$idx-et-T2"] {
        let filter =
            EventFilter::prefixes(FilterTarget::StreamName, vec![prefix.to_owned()]).unwrap();
        for (direction, from_middle) in [
            (Direction::Forwards, false),
            (Direction::Backwards, false),
            (Direction::Forwards, true),
            (Direction::Backwards, true),
        ] {
            let mut options = match direction {
                Direction::Forwards => ReadAllOptions::forwards(),
                Direction::Backwards => ReadAllOptions::backwards(),
            };
            if from_middle {
                options = options.from_position(middle);
            }
            options.max_count = 7;
            options.filter = Some(filter.clone());
            let mut pages = Vec::new();
            loop {
                let slice = store.read_all(options.clone()).await.unwrap();
                pages.push(
                    slice
                        .events
                        .iter()
                        .map(|event| (event.position.0, event.stream.to_string()))
                        .collect::<Vec<_>>(),
                );
                if slice.is_end || pages.len() > 1_000 {
                    break;
                }
                options = options.from_position(slice.next_position);
            }
            out.push(format!("{prefix} {direction:?} {from_middle}: {pages:?}"));
        }
    }
    out
}

#[tokio::test]
async fn a_tail_only_index_keeps_only_the_tails_keys_and_answers_as_a_whole_one() {
    let (whole_dir, tail_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = Store::open(whole_dir.path(), config(false)).unwrap();
    let tail = Store::open(tail_dir.path(), config(true)).unwrap();
    for store in [&whole, &tail] {
        write_saved(store, 0, 600).await;
    }
    // Old ids (in the runs only), ids on a run boundary, and ids of the tail.
    let correlations = [0, 1, 19, 20, 100, 199, 200, 201, 202];
    assert_eq!(keys_in_memory(&tail), 0, "the runs hold every key");
    assert!(keys_in_memory(&whole) > 400);
    assert_eq!(
        answers(&tail, &correlations).await,
        answers(&whole, &correlations).await
    );

    // A tail: events 600..606 carry ids 200 to 201, in `order-*` and `order`, types T0-T3.
    for store in [&whole, &tail] {
        write(store, 600, 606).await;
    }
    // Category, 4 types, 2 ids, 2 tags, and the rest key (the stream `order` has no
    // category).
    assert_eq!(keys_in_memory(&tail), 10);
    let expected = answers(&whole, &correlations).await;
    assert_eq!(answers(&tail, &correlations).await, expected);

    // Reopened: the close saved the tail, so the runs hold every key, counted, not loaded.
    whole.close();
    tail.close();
    drop((whole, tail));
    let whole = Store::open(whole_dir.path(), config(false)).unwrap();
    let tail = Store::open(tail_dir.path(), config(true)).unwrap();
    assert_eq!(keys_in_memory(&tail), 0);
    assert_eq!(answers(&whole, &correlations).await, expected);
    assert_eq!(answers(&tail, &correlations).await, expected);

    // The tail saved: its keys leave memory. Keys written again go on from the runs'
    // count of them (the category, the types, the old id 1); id 202 is new.
    for store in [&whole, &tail] {
        store.checkpoint_indexes().unwrap();
        write(store, 606, 608).await;
        let old_id =
            ProposedEvent::json("T2", "{}").with_metadata(r#"{"$correlationId":"c-1"}"#.to_owned());
        store
            .append(&name("order-1"), ExpectedRevision::Any, vec![old_id])
            .await
            .unwrap();
    }
    // The category, T2, T3, ids 202 and 1, tag 202.
    assert_eq!(keys_in_memory(&tail), 6);
    let expected = answers(&whole, &correlations).await;
    assert_eq!(answers(&tail, &correlations).await, expected);
    for store in [&whole, &tail] {
        store.checkpoint_indexes().unwrap();
    }
    assert_eq!(keys_in_memory(&tail), 0);
    assert_eq!(answers(&tail, &correlations).await, expected);
}
