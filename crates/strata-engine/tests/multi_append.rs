//! A multi-stream append is one transaction: a crash that tears it anywhere (even between
//! two of its parts, every frame of the first part whole) leaves none of it visible, and
//! the same request can then be sent again and is written whole.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_core::{
    AppendPart, EventStore, ExpectedRevision, ProposedEvent, ReadAllOptions, ReadStreamOptions,
    RecordedEvent, Revision, StreamName, StreamState,
};
use strata_engine::{Config, Store, verify};
use tempfile::TempDir;

fn config() -> Config {
    Config::small_for_tests()
}

fn segment_path(dir: &Path, position: u64) -> PathBuf {
    dir.join("log").join(format!(
        "{:010}.seg",
        position / config().segment_size_bytes
    ))
}

/// What a crash leaves: no clean-shutdown marker and no index file.
fn remove_clean_marker_and_index_files(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("CLEAN"));
    for entry in std::fs::read_dir(dir.join("index")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
}

fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

fn event(number: usize) -> ProposedEvent {
    ProposedEvent::json(
        "Moved",
        format!(r#"{{"number":{number},"pad":"{}"}}"#, "p".repeat(300)),
    )
}

async fn read_stream(store: &Store, name: &StreamName) -> Vec<RecordedEvent> {
    store
        .read_stream(name, ReadStreamOptions::forwards())
        .await
        .unwrap()
        .into_events()
}

async fn read_all(store: &Store) -> Vec<RecordedEvent> {
    store
        .read_all(ReadAllOptions::forwards())
        .await
        .unwrap()
        .events
}

/// Where the torn write ends, relative to the frames of the multi-stream append.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Every frame of the first part is whole; the second part is gone.
    BetweenParts,
    /// Every frame but the commit frame (the second part's last) is whole.
    BeforeCommit,
}

async fn check_torn_multi_append(cut: Cut) {
    let dir = TempDir::new().unwrap();
    let (debit, credit) = (stream("account-a"), stream("account-b"));
    let store = Store::open(dir.path(), config()).unwrap();
    for number in 0..10 {
        for name in [&debit, &credit] {
            store
                .append(name, ExpectedRevision::Any, vec![event(number)])
                .await
                .unwrap();
        }
    }
    let kept = read_all(&store).await;
    let parts = vec![
        AppendPart::write(
            debit.clone(),
            ExpectedRevision::Exact(9),
            vec![event(10), event(11)],
        ),
        AppendPart::write(
            credit.clone(),
            ExpectedRevision::Exact(9),
            vec![event(12), event(13)],
        ),
    ];
    let result = store.append_multi(parts.clone()).await.unwrap();
    let written = read_all(&store).await[kept.len()..].to_vec();
    assert_eq!(written.len(), 4);
    store.close();
    drop(store);

    let cut_at = match cut {
        Cut::BetweenParts => written[2].position.0,
        Cut::BeforeCommit => written[3].position.0,
    };
    remove_clean_marker_and_index_files(dir.path());
    let file = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), cut_at))
        .unwrap();
    file.set_len(cut_at % config().segment_size_bytes).unwrap();
    drop(file);

    let store = Store::open(dir.path(), config())
        .unwrap_or_else(|error| panic!("{cut:?}: a torn tail must not stop the open: {error}"));
    assert_eq!(
        read_all(&store).await,
        kept,
        "{cut:?}: nothing of the torn append is seen"
    );
    for name in [&debit, &credit] {
        assert_eq!(read_stream(&store, name).await.len(), 10, "{cut:?}: {name}");
        assert_eq!(
            store.stream_state(name).await.unwrap(),
            StreamState::At(Revision(9)),
            "{cut:?}: {name}"
        );
    }
    let again = store
        .append_multi(parts)
        .await
        .unwrap_or_else(|error| panic!("{cut:?}: sending the request again: {error}"));
    assert_eq!(again, result, "{cut:?}: written again at the same places");
    let placed = |events: &[RecordedEvent]| -> Vec<_> {
        events
            .iter()
            .map(|event| {
                (
                    event.id,
                    event.stream.clone(),
                    event.revision,
                    event.position,
                )
            })
            .collect()
    };
    assert_eq!(
        placed(&read_all(&store).await[kept.len()..]),
        placed(&written),
        "{cut:?}"
    );
    store.close();
    drop(store);
    let report = verify(dir.path(), &mut |_| {}).unwrap();
    assert!(
        report.is_ok() && !report.torn_tail,
        "{cut:?}: verify:\n{report}"
    );
}

#[tokio::test]
async fn a_multi_stream_append_torn_by_a_crash_is_not_seen_in_part() {
    for cut in [Cut::BetweenParts, Cut::BeforeCommit] {
        check_torn_multi_append(cut).await;
    }
}

/// Parts, their revisions and positions survive a clean reopen (index files) and a replay
/// of the log (no index files).
#[tokio::test]
async fn a_multi_stream_append_survives_reopen_and_replay() {
    let dir = TempDir::new().unwrap();
    let names = [stream("order-1"), stream("stock-1"), stream("$$order-1")];
    let store = Store::open(dir.path(), config()).unwrap();
    let parts = vec![
        AppendPart::write(
            names[0].clone(),
            ExpectedRevision::NoStream,
            vec![event(0), event(1)],
        ),
        AppendPart::write(names[1].clone(), ExpectedRevision::Any, vec![event(2)]),
        AppendPart::write(
            names[2].clone(),
            ExpectedRevision::NoStream,
            vec![ProposedEvent::json("$metadata", r#"{"$maxCount":1}"#)],
        ),
    ];
    let result = store.append_multi(parts).await.unwrap();
    let before = read_all(&store).await;
    store.close();
    drop(store);
    for replay in [false, true] {
        if replay {
            remove_clean_marker_and_index_files(dir.path());
        }
        let store: Arc<Store> = Store::open(dir.path(), config()).unwrap();
        assert_eq!(read_all(&store).await, before, "replay {replay}");
        let orders = read_stream(&store, &names[0]).await;
        assert_eq!(
            orders.len(),
            1,
            "replay {replay}: the metadata written with it applies"
        );
        assert_eq!(orders[0].position, result.parts[0].1.position);
        store.close();
    }
}
