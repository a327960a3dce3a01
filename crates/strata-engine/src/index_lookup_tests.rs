//! Lookups through the sorted runs: a store whose memory keeps only the tail
//! (`index_memory_tail_only`) answers every read and write check as a store whose memory
//! keeps every position, fed the same operations.

use std::path::Path;

use strata_core::{
    AppendCondition, AppendPart, Direction, EventFilter, EventStore, ExpectedRevision,
    FilterTarget, Position, ProposedEvent, Query, QueryItem, ReadAllOptions, ReadStreamOptions,
    StreamMetadata, StreamName,
};

use crate::config::Config;
use crate::format::SEGMENT_HEADER_BYTES;
use crate::index_saver::runs_dir;
use crate::run_file::{RunCheck, open_runs};
use crate::store::Store;

fn name(text: &str) -> StreamName {
    StreamName::new(text).unwrap()
}

fn config(tail_only: bool) -> Config {
    Config {
        index_memory_tail_only: tail_only,
        // Small, so that the cache turns over and old ids are checked in the log.
        index_head_cache_max: 8,
        recent_event_ids_max: 2,
        ..Config::small_for_tests()
    }
}

fn stream_names() -> Vec<String> {
    let mut names: Vec<String> = (0..24)
        .map(|number| format!("cat{}-{number}", number % 3))
        .collect();
    names.extend(["hot-1", "cat0", "$$cat0-3", "$$hot-1"].map(String::from));
    names
}

/// The same operations on any store: streams written over many index saves (each save
/// publishes a run, which a tail-only index then drops from memory), one hot stream in
/// every save, metadata set early and never again, a tombstone and a delete in old runs.
async fn fill(store: &Store) -> Vec<Vec<ProposedEvent>> {
    let mut sent = Vec::new();
    for batch in 0..5u64 {
        for number in 0..24u64 {
            if number % 4 != batch % 4 && batch > 0 {
                continue;
            }
            let keys = format!(
                r#"{{"$correlationId":"corr-{}","$tags":["t{}","all"]}}"#,
                number % 2,
                number % 3
            );
            let batch = vec![
                ProposedEvent::json(format!("Type{}", number % 2), "{}"),
                ProposedEvent::json("Type9", "{}").with_metadata(keys),
            ];
            sent.push(batch.clone());
            store
                .append(
                    &name(&format!("cat{}-{number}", number % 3)),
                    ExpectedRevision::Any,
                    batch,
                )
                .await
                .unwrap();
        }
        store
            .append(
                &name("hot-1"),
                ExpectedRevision::Any,
                (0..3).map(|_| ProposedEvent::json("Hot", "{}")).collect(),
            )
            .await
            .unwrap();
        if batch == 0 {
            let metadata = StreamMetadata {
                max_count: Some(1),
                ..StreamMetadata::default()
            };
            for stream in ["cat0-3", "hot-1"] {
                store
                    .set_stream_metadata(&name(stream), ExpectedRevision::Any, &metadata)
                    .await
                    .unwrap();
            }
            store
                .append(
                    &name("cat0"),
                    ExpectedRevision::NoStream,
                    vec![ProposedEvent::json("Type0", "{}")],
                )
                .await
                .unwrap();
        }
        if batch == 1 {
            store
                .tombstone_stream(&name("cat1-1"), ExpectedRevision::Any)
                .await
                .unwrap();
            store
                .delete_stream(&name("cat2-2"), ExpectedRevision::Any)
                .await
                .unwrap();
        }
        store.checkpoint_indexes().unwrap();
    }
    sent
}

/// What reads answer: every stream both ways and from a middle revision, its state, the
/// category stream and `$idx-` read of a category, and `$all` from an old position.
async fn answers(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    let events = |slice: strata_core::Result<strata_core::StreamSlice>| match slice {
        Ok(slice) => format!(
            "{:?}",
            slice
                .into_events()
                .iter()
                .map(|event| (event.stream.to_string(), event.revision, event.position))
                .collect::<Vec<_>>()
        ),
        Err(error) => error.to_string(),
    };
    for stream in stream_names() {
        let stream = name(&stream);
        for options in [
            ReadStreamOptions::forwards(),
            ReadStreamOptions::backwards(),
            ReadStreamOptions::forwards().from_revision(3),
        ] {
            out.push(format!(
                "{stream} {:?}: {}",
                options.direction,
                events(store.read_stream(&stream, options).await)
            ));
        }
        out.push(format!(
            "{stream} state: {:?}",
            store.stream_state(&stream).await.map_err(|e| e.to_string())
        ));
    }
    out.extend(secondary_answers(store).await);
    let tombstones = store
        .read_tombstones(None, Position(u64::MAX), 100)
        .await
        .map(|found| {
            found
                .iter()
                .map(|event| (event.stream.to_string(), event.position))
                .collect::<Vec<_>>()
        });
    out.push(format!("tombstones: {tombstones:?}"));
    for direction in [Direction::Forwards, Direction::Backwards] {
        let mut options = match direction {
            Direction::Forwards => ReadAllOptions::forwards(),
            Direction::Backwards => ReadAllOptions::backwards(),
        };
        options.max_count = 5;
        let first = store.read_all(options.clone()).await.unwrap();
        let middle = first.events[2].position;
        let from = store
            .read_all(options.from_position(middle))
            .await
            .map(|slice| {
                slice
                    .events
                    .iter()
                    .map(|event| event.position)
                    .collect::<Vec<_>>()
            })
            .map_err(|error| error.to_string());
        out.push(format!("$all {direction:?} from {middle:?}: {from:?}"));
    }
    out
}

/// The system streams served from the secondary indexes.
const SECONDARY_STREAMS: [&str; 9] = [
    "$ce-cat0",
    "$ce-cat1",
    "$et-Type0",
    "$et-Type9",
    "$et-Hot",
    "$streams",
    "$category-cat0",
    "$bc-corr-1",
    "$et-Missing",
];

/// What reads served from the secondary indexes answer: each system stream both ways
/// and from middle revisions, `$idx-` filtered `$all` read page by page both ways, and
/// DCB queries read page by page.
async fn secondary_answers(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for stream in SECONDARY_STREAMS {
        let stream = name(stream);
        let mut from_three_back = ReadStreamOptions::backwards().from_revision(5);
        from_three_back.max_count = 4;
        let mut from_three = ReadStreamOptions::forwards().from_revision(3);
        from_three.max_count = 7;
        for options in [
            ReadStreamOptions::forwards(),
            ReadStreamOptions::backwards(),
            from_three,
            from_three_back,
        ] {
            let answer = match store.read_stream(&stream, options).await {
                Ok(strata_core::StreamSlice::Found {
                    events,
                    last_revision,
                }) => format!(
                    "last {last_revision:?}: {:?}",
                    events
                        .iter()
                        .map(|event| (
                            event.revision.0,
                            event.position.0,
                            String::from_utf8_lossy(&event.data).into_owned()
                        ))
                        .collect::<Vec<_>>()
                ),
                Ok(strata_core::StreamSlice::NotFound) => "not found".to_owned(),
                Err(error) => error.to_string(),
            };
            out.push(format!("{stream} {options:?}: {answer}"));
        }
    }
    for prefix in [
        "$idx-ce-cat0",
        "$idx-et-Type9",
        "$idx-et-Type1",
        "$idx-ce-hot",
    ] {
        let filter =
            EventFilter::prefixes(FilterTarget::StreamName, vec![prefix.to_owned()]).unwrap();
        for direction in [Direction::Forwards, Direction::Backwards] {
            let mut options = match direction {
                Direction::Forwards => ReadAllOptions::forwards(),
                Direction::Backwards => ReadAllOptions::backwards(),
            };
            options.max_count = 3;
            options.filter = Some(filter.clone());
            let mut pages = Vec::new();
            let answer = loop {
                let slice = match store.read_all(options.clone()).await {
                    Ok(slice) => slice,
                    // A damaged run fails the read; the answer is the error.
                    Err(error) => break error.to_string(),
                };
                pages.push(
                    slice
                        .events
                        .iter()
                        .map(|event| event.position.0)
                        .collect::<Vec<_>>(),
                );
                if slice.is_end || pages.len() > 100 {
                    assert!(
                        pages.len() > 1,
                        "{prefix} {direction:?} reads in pages: {pages:?}"
                    );
                    break format!("{pages:?}");
                }
                options = options.from_position(slice.next_position);
            };
            out.push(format!("{prefix} {direction:?}: {answer}"));
        }
    }
    let queries = [
        Query::new([QueryItem::new(["Type9"], ["t1"])]),
        Query::new([QueryItem::new(Vec::<String>::new(), ["t0", "all"])]),
        Query::new([
            QueryItem::new(["Type0"], Vec::<String>::new()),
            QueryItem::new(["Hot"], Vec::<String>::new()),
        ]),
        Query::new([QueryItem::new(["Type0", "Type9"], ["t2", "all"])]),
    ];
    for query in queries {
        let mut after = None;
        let mut pages = Vec::new();
        let answer = loop {
            let slice = match store.read_query(&query, after, 4).await {
                Ok(slice) => slice,
                Err(error) => break error.to_string(),
            };
            pages.push(
                slice
                    .events
                    .iter()
                    .map(|event| event.position.0)
                    .collect::<Vec<_>>(),
            );
            if !slice.more || pages.len() > 100 {
                assert!(!pages[0].is_empty(), "{query:?} finds events");
                break format!("{pages:?}");
            }
            after = slice.last_position;
        };
        out.push(format!("query {query:?}: {answer}"));
    }
    out
}

/// Conditional (DCB) appends checked through the runs: one that a published event
/// contradicts is refused, naming it; one after it is taken.
async fn conditional_answers(store: &Store) -> Vec<String> {
    let query = Query::new([QueryItem::new(["Type9"], ["t2"])]);
    let part = || AppendPart {
        stream: name("dcb-1"),
        expected: ExpectedRevision::Any,
        events: vec![ProposedEvent::json("Decided", "{}")],
    };
    let mut out = Vec::new();
    let refused = store
        .append_conditional(vec![part()], AppendCondition::new(query.clone(), None))
        .await;
    out.push(format!("{:?}", refused.map(|result| result.position)));
    let newest = store
        .read_query(&query, None, 1_000)
        .await
        .unwrap()
        .last_position;
    let taken = store
        .append_conditional(vec![part()], AppendCondition::new(query, newest))
        .await;
    out.push(format!("{:?}", taken.map(|result| result.position)));
    out
}

/// How many stream entries the in-memory index holds.
fn entries_in_memory(store: &Store) -> usize {
    store.shared.index.read().streams().count()
}

/// How many secondary positions the in-memory index holds.
fn secondary_positions_in_memory(store: &Store) -> usize {
    store
        .shared
        .index
        .read()
        .secondary
        .iter()
        .map(|(_, _, postings)| postings.positions.len())
        .sum()
}

/// What the open counts instead of loading: events, streams, the newest position, the user
/// streams' tombstones, and where each secondary key's revisions end (as reads see it:
/// memory's keys and, when memory dropped them, the runs').
fn counts(store: &Store) -> String {
    let mut names: std::collections::BTreeSet<(u8, String)> = {
        let index = store.shared.index.read();
        index
            .secondary
            .iter()
            .map(|(kind, name, _)| (kind as u8, name.to_owned()))
            .collect()
    };
    let runs = store.shared.index.read().dropped_runs().cloned();
    for run in runs.iter().flat_map(|runs| runs.runs().to_vec()) {
        for entry in run.scan().unwrap() {
            let entry = entry.unwrap();
            if entry.kind != crate::run_file::KIND_STREAM {
                names.insert((entry.kind, String::from_utf8(entry.key).unwrap()));
            }
        }
    }
    let keys: Vec<String> = names
        .into_iter()
        .map(|(kind, name)| {
            let kind = crate::secondary::Kind::from_byte(kind).unwrap();
            let none: crate::postings_lookup::Select<'_> = &|_, _| 0..0;
            let end = crate::postings_lookup::view(&store.shared, kind, &name, none)
                .unwrap()
                .len();
            format!("{kind:?} {name}: {end}")
        })
        .collect();
    let index = store.shared.index.read();
    format!(
        "events {}, streams {}, newest {:?}, tombstones {:?}, keys {keys:?}",
        index.events_total(),
        index.stream_count(),
        index.last_event_position(),
        index.tombstones_between(None, u64::MAX, usize::MAX),
    )
}

/// The summaries of the index files of a closed store.
fn summaries(data_dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(data_dir.join("index-summaries"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "sum"))
        .collect();
    found.sort();
    found
}

/// The runs of a closed store chain from the log's start to its end.
fn assert_runs_cover_the_log(store: &Store, data_dir: &Path) {
    let durable_end = store
        .shared
        .durable_end
        .load(std::sync::atomic::Ordering::Acquire);
    let (runs, dropped) =
        open_runs(&runs_dir(data_dir), SEGMENT_HEADER_BYTES, RunCheck::Whole).unwrap();
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(runs.covers_to(), Some(durable_end));
}

#[tokio::test]
async fn a_tail_only_index_answers_as_a_whole_one() {
    let (whole_dir, tail_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = Store::open(whole_dir.path(), config(false)).unwrap();
    let tail = Store::open(tail_dir.path(), config(true)).unwrap();
    let sent_whole = fill(&whole).await;
    let sent_tail = fill(&tail).await;

    // Everything is in runs: memory dropped it all, and the whole index kept it all.
    assert_eq!(entries_in_memory(&tail), 0);
    assert!(entries_in_memory(&whole) > 24);
    assert_eq!(tail.stream_count(), whole.stream_count());
    let expected = answers(&whole).await;
    assert_eq!(answers(&tail).await, expected);
    assert!(tail.shared.head_cache.len() <= 8);
    assert_eq!(secondary_positions_in_memory(&tail), 0);
    assert!(secondary_positions_in_memory(&whole) > 100);
    let conditional = conditional_answers(&whole).await;
    assert!(conditional[0].contains("Err"), "{conditional:?}");
    assert!(conditional[1].contains("Ok"), "{conditional:?}");
    assert_eq!(conditional_answers(&tail).await, conditional);

    // Writes check expected revisions and re-sends through the runs.
    for (store, sent) in [(&whole, &sent_whole), (&tail, &sent_tail)] {
        let wrong = store
            .append(
                &name("cat0-0"),
                ExpectedRevision::Exact(0),
                vec![ProposedEvent::json("Type0", "{}")],
            )
            .await;
        assert!(wrong.is_err(), "{wrong:?}");
        let refused = store
            .append(
                &name("cat1-1"),
                ExpectedRevision::Any,
                vec![ProposedEvent::json("Type0", "{}")],
            )
            .await;
        assert!(refused.is_err(), "tombstoned: {refused:?}");
        // The first batch of cat0-0, sent again where it was written (ids long forgotten
        // by the recent-id table): recognised from the stored events.
        let again = store
            .append(&name("cat0-0"), ExpectedRevision::NoStream, sent[0].clone())
            .await
            .unwrap();
        assert_eq!(again.current_revision.0, 1);
        let hot = store
            .append(
                &name("hot-1"),
                ExpectedRevision::Exact(14),
                vec![ProposedEvent::json("Hot", "{}")],
            )
            .await
            .unwrap();
        assert_eq!(hot.current_revision.0, 15);
        store
            .append(
                &name("cat2-2"),
                ExpectedRevision::Any,
                vec![ProposedEvent::json("Type0", "{}")],
            )
            .await
            .unwrap();
    }
    // A stream written on both sides of the runs' end reads whole.
    let expected = answers(&whole).await;
    assert_eq!(answers(&tail).await, expected);
    assert!(entries_in_memory(&tail) >= 2, "the tail is in memory");
    // A scavenge with memory holding only the tail removes what the whole one removes,
    // and no answer changes.
    let removed = [&whole, &tail].map(|store| {
        let estimate = store.estimate_reclaimable_bytes().unwrap();
        let report = store.scavenge(crate::ScavengeOptions::default()).unwrap();
        (estimate, report.events_removed, report.frame_bytes_removed)
    });
    assert_eq!(removed[0], removed[1]);
    assert_eq!(answers(&whole).await, expected);
    assert_eq!(answers(&tail).await, expected);

    // The runs directory removed under the running store: written again from the open
    // runs at the next save.
    std::fs::remove_dir_all(runs_dir(tail_dir.path())).unwrap();
    for store in [&whole, &tail] {
        store
            .append(
                &name("cat0-0"),
                ExpectedRevision::Any,
                vec![ProposedEvent::json("Type1", "{}")],
            )
            .await
            .unwrap();
        store.checkpoint_indexes().unwrap();
    }
    let expected = answers(&whole).await;
    assert_eq!(answers(&tail).await, expected);

    // Reopened: the runs cover every index file, whose stream records are only counted;
    // nothing is loaded into memory, and the counts are the same.
    whole.close();
    tail.close();
    assert_runs_cover_the_log(&tail, tail_dir.path());
    let (events, streams) = (tail.event_count(), tail.stream_count());
    let whole_counts = counts(&whole);
    drop((whole, tail));
    let whole = Store::open(whole_dir.path(), config(false)).unwrap();
    assert_eq!(
        counts(&whole),
        whole_counts,
        "a whole reopen counts the same"
    );
    whole.close();
    let tail = Store::open(tail_dir.path(), config(true)).unwrap();
    assert_eq!(entries_in_memory(&tail), 0);
    assert_eq!(secondary_positions_in_memory(&tail), 0);
    assert_eq!((tail.event_count(), tail.stream_count()), (events, streams));
    assert_eq!(counts(&tail), whole_counts);
    assert_eq!(answers(&tail).await, expected);
    tail.close();
    assert_runs_cover_the_log(&tail, tail_dir.path());
    drop(tail);

    // The open counts the covered index files from their summaries alone: with every
    // index file's body damaged (header and trailing checksum kept), it counts the same.
    let index_files = crate::index_file::list_index_files(&tail_dir.path().join("index")).unwrap();
    assert_eq!(summaries(tail_dir.path()).len(), index_files.len());
    let originals: Vec<Vec<u8>> = index_files
        .iter()
        .map(|(_, path)| std::fs::read(path).unwrap())
        .collect();
    for ((_, path), original) in index_files.iter().zip(&originals) {
        let mut bytes = original.clone();
        let middle = 40 + (bytes.len() - 44) / 2;
        bytes[middle] ^= 0x08;
        std::fs::write(path, bytes).unwrap();
    }
    let tail = Store::open(tail_dir.path(), config(true)).unwrap();
    assert_eq!(counts(&tail), whole_counts);
    assert_eq!(entries_in_memory(&tail), 0, "not rebuilt from the log");
    assert_eq!(answers(&tail).await, expected);
    tail.close();
    drop(tail);
    for ((_, path), original) in index_files.iter().zip(&originals) {
        std::fs::write(path, original).unwrap();
    }

    // A store written before the summaries (none), a damaged summary and a stale one (of
    // another file): the open reads those index files through, counts the same, and
    // writes their summaries again.
    for damage in ["missing", "damaged", "stale"] {
        let found = summaries(tail_dir.path());
        assert_eq!(found.len(), index_files.len(), "{damage}");
        match damage {
            "missing" => found
                .iter()
                .for_each(|path| std::fs::remove_file(path).unwrap()),
            "damaged" => {
                let mut bytes = std::fs::read(&found[0]).unwrap();
                bytes[60] ^= 0x01;
                std::fs::write(&found[0], bytes).unwrap();
            }
            _ => {
                std::fs::copy(&found[0], found.last().unwrap()).unwrap();
            }
        }
        let tail = Store::open(tail_dir.path(), config(true)).unwrap();
        assert_eq!(counts(&tail), whole_counts, "{damage}");
        assert_eq!(entries_in_memory(&tail), 0);
        tail.close();
        drop(tail);
        for (_, path) in &index_files {
            let summary = crate::index_summary::read_summary(path);
            let expected = crate::index_file::summarize(&std::fs::read(path).unwrap()).unwrap();
            assert_eq!(summary, Some(expected), "{damage}: written again");
        }
    }
}

/// Opens a tail-only store after `damage` to its runs: the index files the runs no longer
/// cover are loaded, the runs rebuilt from them, memory dropped again, and the answers
/// are those of a store that kept every position.
async fn reopened_after(damage: impl FnOnce(&Path)) {
    let (whole_dir, tail_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = Store::open(whole_dir.path(), config(false)).unwrap();
    let tail = Store::open(tail_dir.path(), config(true)).unwrap();
    fill(&whole).await;
    fill(&tail).await;
    // A tail the runs do not cover yet, replayed at the open.
    for store in [&whole, &tail] {
        store
            .append(
                &name("cat0-0"),
                ExpectedRevision::Exact(3),
                vec![ProposedEvent::json("Type0", "{}")],
            )
            .await
            .unwrap();
    }
    let expected = answers(&whole).await;
    let whole_counts = counts(&whole);
    tail.close();
    drop(tail);
    let index_files = crate::index_file::list_index_files(&tail_dir.path().join("index")).unwrap();
    damage(tail_dir.path());
    let tail = Store::open(tail_dir.path(), config(true)).unwrap();
    assert_eq!(
        crate::index_file::list_index_files(&tail_dir.path().join("index")).unwrap(),
        index_files,
        "the open used the index files (a stream they continue from the runs is no reason \
         to rebuild the index from the log)"
    );
    assert_eq!(counts(&tail), whole_counts);
    assert_eq!(answers(&tail).await, expected);
    tail.checkpoint_indexes().unwrap();
    assert_eq!(entries_in_memory(&tail), 0);
    assert_eq!(secondary_positions_in_memory(&tail), 0);
    assert_eq!(counts(&tail), whole_counts);
    assert_eq!(answers(&tail).await, expected);
    tail.append(
        &name("cat0-0"),
        ExpectedRevision::Exact(4),
        vec![ProposedEvent::json("Type0", "{}")],
    )
    .await
    .unwrap();
    tail.close();
    assert_runs_cover_the_log(&tail, tail_dir.path());
}

fn newest_run(data_dir: &Path) -> std::path::PathBuf {
    let mut runs: Vec<_> = std::fs::read_dir(runs_dir(data_dir))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    runs.sort();
    runs.pop().unwrap()
}

#[tokio::test]
async fn a_tail_only_open_rebuilds_a_lost_newest_run() {
    reopened_after(|dir| std::fs::remove_file(newest_run(dir)).unwrap()).await;
}

#[tokio::test]
async fn a_tail_only_open_rebuilds_a_corrupted_run() {
    // Damage in the trailer or fences, which the open checks.
    reopened_after(|dir| {
        let path = newest_run(dir);
        let mut bytes = std::fs::read(&path).unwrap();
        let near_end = bytes.len() - 30;
        bytes[near_end] ^= 0x40;
        std::fs::write(path, bytes).unwrap();
    })
    .await;
}

/// Damage in a block the open does not read, done under the serving store, is found by
/// the first read of it: that read rebuilds the run in its place from the index files,
/// and it and every other read answer as the whole index (never from the damaged block,
/// never an error); the rebuilt run checks whole, and the store opens on it again.
#[tokio::test]
async fn a_run_damaged_while_serving_is_rebuilt_and_no_read_fails() {
    let (whole_dir, tail_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = Store::open(whole_dir.path(), config(false)).unwrap();
    let tail = Store::open(tail_dir.path(), config(true)).unwrap();
    fill(&whole).await;
    fill(&tail).await;
    let expected = answers(&whole).await;
    assert_eq!(entries_in_memory(&tail), 0);
    // The first directory block of the biggest run, rewritten in place (the store holds
    // the file open): every lookup in that run reads it.
    let path = std::fs::read_dir(runs_dir(tail_dir.path()))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let original = std::fs::read(&path).unwrap();
    let mut bytes = original.clone();
    let trailer = bytes.len() - crate::run_file::RUN_TRAILER_BYTES as usize;
    let directory = u64::from_le_bytes(bytes[trailer + 32..trailer + 40].try_into().unwrap());
    bytes[directory as usize + 3] ^= 0x10;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes))
        .unwrap();

    assert_eq!(answers(&tail).await, expected);
    assert_eq!(
        secondary_answers(&tail).await,
        secondary_answers(&whole).await
    );
    let rebuilt = crate::run_file::Run::open_to_check(&path).unwrap();
    rebuilt.check_whole().unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        original,
        "rebuilt as it was written"
    );
    tail.close();
    assert_runs_cover_the_log(&tail, tail_dir.path());
    drop(tail);

    let tail = Store::open(tail_dir.path(), config(true)).unwrap();
    assert_eq!(answers(&tail).await, expected);
    tail.close();
    assert_runs_cover_the_log(&tail, tail_dir.path());
}

/// A merge that finds a run damaged (the saver reads it whole) has it rebuilt and merges
/// again: the runs go on covering the log, and every read answers as the whole index.
#[tokio::test]
async fn a_merge_that_finds_a_run_damaged_goes_on_with_its_rebuild() {
    let (whole_dir, tail_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = Store::open(whole_dir.path(), config(false)).unwrap();
    let tail = Store::open(tail_dir.path(), config(true)).unwrap();
    fill(&whole).await;
    fill(&tail).await;
    // The first record of the newest run, damaged in place; no read touches it before
    // the merge below.
    let path = newest_run(tail_dir.path());
    let run = crate::run_file::Run::open_to_check(&path).unwrap();
    let size = run.position_count.max(run.key_count);
    drop(run);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[crate::run_file::RUN_HEADER_BYTES as usize + 9] ^= 0x02;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes))
        .unwrap();
    // A run as large as it: the save merges the two.
    for store in [&whole, &tail] {
        for number in 0..size {
            store
                .append(
                    &name(&format!("new{}-{number}", number % 2)),
                    ExpectedRevision::Any,
                    vec![ProposedEvent::json("Type0", "{}")],
                )
                .await
                .unwrap();
        }
        store.checkpoint_indexes().unwrap();
    }
    // The saver went on (a stopped one publishes nothing, and memory keeps the tail).
    assert_eq!(entries_in_memory(&tail), 0);
    assert!(
        !newest_run(tail_dir.path()).ends_with(path.file_name().unwrap()),
        "merged"
    );
    assert_eq!(answers(&tail).await, answers(&whole).await);
    tail.close();
    assert_runs_cover_the_log(&tail, tail_dir.path());
}

#[tokio::test]
async fn a_tail_only_open_rebuilds_a_removed_runs_directory() {
    reopened_after(|dir| std::fs::remove_dir_all(runs_dir(dir)).unwrap()).await;
}

/// Reads racing the drops: while streams are appended to and each save publishes runs
/// (memory dropping what they cover), every read of a stream, and of the category and
/// event-type streams served from the secondary postings, returns its revisions dense
/// from 0, never fewer than an earlier read saw, and a stream's state agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_racing_the_drops_see_every_revision() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        durability: crate::config::Durability::None,
        ..config(true)
    };
    let store = Store::open(dir.path(), config).unwrap();
    let streams: Vec<StreamName> = (0..12).map(|n| name(&format!("race-{n}"))).collect();
    let mut read_names = streams.clone();
    read_names.extend([name("$ce-race"), name("$et-E")]);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|reader| {
            let (store, streams, done) = (store.clone(), read_names.clone(), done.clone());
            tokio::spawn(async move {
                let mut seen = vec![0usize; streams.len()];
                let mut reads = 0u64;
                let mut turn = reader;
                while !done.load(std::sync::atomic::Ordering::Acquire) || reads < 50 {
                    turn = (turn + 1) % streams.len();
                    let stream = &streams[turn];
                    let events = match store
                        .read_stream(stream, ReadStreamOptions::forwards())
                        .await
                        .unwrap()
                    {
                        strata_core::StreamSlice::Found { events, .. } => events,
                        strata_core::StreamSlice::NotFound => Vec::new(),
                    };
                    let revisions: Vec<u64> = events.iter().map(|event| event.revision.0).collect();
                    let dense: Vec<u64> = (0..revisions.len() as u64).collect();
                    assert_eq!(revisions, dense, "{stream}");
                    assert!(revisions.len() >= seen[turn], "{stream} went back");
                    seen[turn] = revisions.len();
                    if stream.is_system() {
                        reads += 1;
                        continue;
                    }
                    let state = store.stream_state(stream).await.unwrap();
                    if let strata_core::StreamState::At(revision) = state {
                        assert!(revision.0 + 1 >= revisions.len() as u64, "{stream}");
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for round in 0..40u64 {
        for (number, stream) in streams.iter().enumerate() {
            if (round + number as u64).is_multiple_of(3) {
                continue;
            }
            store
                .append(
                    stream,
                    ExpectedRevision::Any,
                    vec![
                        ProposedEvent::json("E", "{}"),
                        ProposedEvent::json("E", "{}"),
                    ],
                )
                .await
                .unwrap();
        }
        if round % 4 == 3 {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.checkpoint_indexes().unwrap())
                .await
                .unwrap();
        }
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    for reader in readers {
        assert!(reader.await.unwrap() >= 50);
    }
    assert!(store.shared.index.read().dropped_runs().is_some());
}
